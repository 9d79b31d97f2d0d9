//! etcd's own gRPC counters, per method, from the `/metrics` every member
//! serves on its client URL: calls handled, streams started and stream
//! messages received. A count taken as the difference of two snapshots is
//! what etcd saw, whatever the library believes it sent.

use std::collections::BTreeMap;
use std::fmt;

use super::{Member, http_get};

/// Which of etcd's gRPC counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counter {
    /// `grpc_server_handled_total`: calls (unary or stream) that ended.
    Handled,
    /// `grpc_server_started_total`: calls (unary or stream) that began.
    Started,
    /// `grpc_server_msg_received_total`: messages a client sent, each
    /// keep-alive on a `LeaseKeepAlive` stream one.
    Received,
}

impl Counter {
    const ALL: [Counter; 3] = [Counter::Handled, Counter::Started, Counter::Received];

    fn metric(self) -> &'static str {
        match self {
            Counter::Handled => "grpc_server_handled_total",
            Counter::Started => "grpc_server_started_total",
            Counter::Received => "grpc_server_msg_received_total",
        }
    }
}

/// A snapshot (or a difference of two) of etcd's gRPC counters, by counter,
/// method (`Range`, `Txn`, `LeaseKeepAlive`, `Status`, `Watch`, ...) and
/// call type (`unary`, `bidi_stream`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Grpc(BTreeMap<(Counter, String, String), f64>);

impl Grpc {
    /// The counters of the member listening on `port` (its plain-HTTP
    /// client or metrics port). Panics if it does not answer: a count the
    /// test cannot read must not pass as zero.
    #[track_caller]
    pub fn scrape(port: u16) -> Grpc {
        let text = http_get(port, "/metrics")
            .unwrap_or_else(|| panic!("etcd on port {port} did not serve /metrics"));
        Grpc::parse(&text)
    }

    /// The counters of `member`, read on its client port.
    #[track_caller]
    pub fn of(member: &Member) -> Grpc {
        Grpc::scrape(member.client_port())
    }

    /// The counters of every member in `members`, summed.
    #[track_caller]
    pub fn of_all(members: &[Member]) -> Grpc {
        members
            .iter()
            .map(Grpc::of)
            .fold(Grpc::default(), |a, b| a.plus(&b))
    }

    /// The gRPC counters of a Prometheus text exposition.
    pub fn parse(text: &str) -> Grpc {
        let mut g = Grpc::default();
        for line in text.lines() {
            for counter in Counter::ALL {
                let Some(rest) = line.strip_prefix(counter.metric()) else {
                    continue;
                };
                let Some((labels, value)) = rest.strip_prefix('{').and_then(|r| r.rsplit_once(' '))
                else {
                    continue;
                };
                let Ok(value) = value.parse::<f64>() else {
                    continue;
                };
                let method = label(labels, "grpc_method").unwrap_or_default();
                let kind = label(labels, "grpc_type").unwrap_or_default();
                *g.0.entry((counter, method, kind)).or_default() += value;
            }
        }
        g
    }

    fn plus(&self, other: &Grpc) -> Grpc {
        let mut sum = self.clone();
        for (k, v) in &other.0 {
            *sum.0.entry(k.clone()).or_default() += v;
        }
        sum
    }

    /// What happened between `earlier` and this snapshot.
    pub fn minus(&self, earlier: &Grpc) -> Grpc {
        Grpc(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - earlier.0.get(k).copied().unwrap_or(0.0)))
                .filter(|(_, v)| *v != 0.0)
                .collect(),
        )
    }

    fn sum(&self, keep: impl Fn(Counter, &str, &str) -> bool) -> u64 {
        let total: f64 = self
            .0
            .iter()
            .filter(|((c, m, t), _)| keep(*c, m, t))
            .map(|(_, v)| v)
            .sum();
        total.round() as u64
    }

    /// Calls of `method` that ended.
    pub fn handled(&self, method: &str) -> u64 {
        self.sum(|c, m, _| c == Counter::Handled && m == method)
    }

    /// Calls (or streams) of `method` that began.
    pub fn started(&self, method: &str) -> u64 {
        self.sum(|c, m, _| c == Counter::Started && m == method)
    }

    /// Messages received on `method`'s streams (or unary requests).
    pub fn received(&self, method: &str) -> u64 {
        self.sum(|c, m, _| c == Counter::Received && m == method)
    }

    /// Streams of `method` open at this snapshot (started, not ended).
    pub fn open(&self, method: &str) -> u64 {
        self.started(method).saturating_sub(self.handled(method))
    }

    /// What a client cost etcd, methods in `except` left out: every unary
    /// call begun, every stream opened and every message sent on a stream
    /// (a unary call's one request is the call itself).
    pub fn calls_except(&self, except: &[&str]) -> u64 {
        self.sum(|c, m, t| {
            !except.contains(&m)
                && match c {
                    Counter::Started => true,
                    Counter::Received => t != "unary",
                    Counter::Handled => false,
                }
        })
    }

    /// [`Grpc::calls_except`] with nothing left out.
    pub fn calls(&self) -> u64 {
        self.calls_except(&[])
    }
}

impl fmt::Display for Grpc {
    /// The nonzero counts, one method at a time: `Range 2, LeaseKeepAlive
    /// 1 stream + 3 msgs`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut by_method: BTreeMap<&str, (u64, u64, bool)> = BTreeMap::new();
        for ((c, m, t), v) in &self.0 {
            let e = by_method.entry(m).or_default();
            e.2 |= t != "unary";
            match c {
                Counter::Started => e.0 += v.round() as u64,
                Counter::Received if t != "unary" => e.1 += v.round() as u64,
                _ => {}
            }
        }
        let parts: Vec<String> = by_method
            .iter()
            .filter(|(_, (s, r, _))| *s + *r > 0)
            .map(|(m, (s, r, stream))| {
                if *stream {
                    format!("{m} {s} stream(s) + {r} msg(s)")
                } else {
                    format!("{m} {s}")
                }
            })
            .collect();
        if parts.is_empty() {
            write!(f, "nothing")
        } else {
            write!(f, "{}", parts.join(", "))
        }
    }
}

/// The value of `name="..."` in a Prometheus label set.
fn label(labels: &str, name: &str) -> Option<String> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let len = labels[start..].find('"')?;
    Some(labels[start..start + len].to_owned())
}
