//! Endpoint steering: keeps dead and leaderless members out of the client's
//! balancer, probing the members only when something says one is wrong.
//!
//! etcd-client balances over every endpoint at random (tower p2c with a
//! constant load) and never evicts one: a member that accepts connections
//! but does not answer (blackholed, frozen) or refuses them (killed) keeps
//! getting a share of calls, keepalive and watch streams. Probing every
//! member all the time finds those, but costs etcd a call per member every
//! few hundred milliseconds for every client of the fleet: an idle client
//! would send etcd far more than its keepalives. So the client's own traffic
//! is the health check, and the probes run only when it raises a suspicion
//! ([`Steering::suspect`]):
//! * a keepalive answered late or not at all (the heartbeat);
//! * a call failing with "no leader" (every call and stream requires a
//!   leader) or a transport error, or still unanswered after the probe
//!   timeout (the store);
//! * a watch stream broken (the hub);
//! * a connection whose HTTP/2 keepalive pings go unanswered is closed by
//!   the transport, which fails the calls and streams on it: one of the
//!   above.
//!
//! A probe round sends each endpoint a `Status` call on a connection of its
//! own (no credentials: Status needs none), within the probe timeout;
//! endpoints that do not answer, or answer without a leader, are removed
//! from the balancer. While any endpoint is out, rounds probe only the
//! endpoints that are out, so one is put back once it answers with a
//! leader: the first `clamp(TTL/10, 150 ms, 1 s)` after the round that took
//! it out, then at doubling intervals up to 32 times that, each drawn at
//! random between half and one and a half of it. Without the backoff and
//! the jitter, a fleet of 2,000 clients probed every member every second in
//! step while one restarted (1,840 `Status` calls a second), and the
//! restarted member never became healthy under that load. A new suspicion
//! still brings a round of every endpoint within one period, unless full
//! rounds in a row changed nothing: then each waits twice as long as the
//! one before (jittered, up to 64 periods), because while every member
//! answers slowly every slow call suspects them all, and a round per
//! suspicion would add a `Status` per member to each (issue 29: no load
//! that feeds on itself). A quiet spell of 64 periods starts afresh. When
//! all are back, probing stops until the next suspicion. The
//! balancer is never left empty: with no healthy member every answering one
//! (or, failing that, every one) stays in.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use etcd_client::ConnectOptions;
use tokio::sync::{Notify, watch};

/// The client's handle on its endpoint steering: raise suspicions, and
/// learn when a member was taken out of rotation. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Steering {
    shared: Arc<Shared>,
}

struct Shared {
    suspect: Notify,
    /// Bumped whenever a member is taken out of rotation, so long-lived
    /// streams (keepalive, watch) opened before leave it too.
    reroutes: watch::Sender<u64>,
    /// Probe rounds run so far (for tests and the log).
    rounds: AtomicU64,
    /// Set when the steering task first started: a restart (after a panic)
    /// cannot know which endpoints its predecessor took out of rotation.
    started: std::sync::atomic::AtomicBool,
    /// A call still unanswered after this long raises a suspicion.
    slow: Duration,
}

impl Steering {
    /// A steering handle for a client with status TTL `ttl`. Nothing probes
    /// until [`Steering::start`] runs.
    pub(crate) fn new(ttl: Duration) -> Steering {
        let (reroutes, _) = watch::channel(0u64);
        Steering {
            shared: Arc::new(Shared {
                suspect: Notify::new(),
                reroutes,
                rounds: AtomicU64::new(0),
                started: std::sync::atomic::AtomicBool::new(false),
                slow: probe_timeout(ttl),
            }),
        }
    }

    /// Changes whenever a member is taken out of rotation: streams opened
    /// before should be reopened.
    pub(crate) fn reroutes(&self) -> watch::Receiver<u64> {
        self.shared.reroutes.subscribe()
    }

    /// Something suggests a member is dead or without a leader: probe them
    /// all (at most one round per probing period; suspicions raised during
    /// a round lead to one more round, not one each).
    pub(crate) fn suspect(&self, why: &str) {
        log::debug!("os-lively: checking the etcd endpoints: {why}");
        self.shared.suspect.notify_one();
    }

    /// Runs `call`, raising a suspicion if it is still unanswered after the
    /// probe timeout (a call hanging on a blackholed member gets no error
    /// until its own deadline).
    pub(crate) async fn watching<F: std::future::Future>(&self, what: &str, call: F) -> F::Output {
        let mut call = std::pin::pin!(call);
        tokio::select! {
            out = &mut call => return out,
            _ = tokio::time::sleep(self.shared.slow) => {}
        }
        self.suspect(&format!("{what}: no answer within {:?}", self.shared.slow));
        call.await
    }

    /// Probe rounds run so far.
    #[cfg(test)]
    pub(crate) fn rounds(&self) -> u64 {
        self.shared.rounds.load(Ordering::Relaxed)
    }

    /// Starts steering `client` over `endpoints` (nothing to do for one).
    pub(crate) fn start(
        &self,
        client: etcd_client::Client,
        endpoints: Vec<String>,
        ttl: Duration,
        connect_timeout: Duration,
        tls: Option<Arc<crate::tls::Credentials>>,
        health: std::sync::Arc<crate::runtime::Health>,
    ) {
        if endpoints.len() < 2 {
            return;
        }
        let timeout = probe_timeout(ttl);
        let probe = Probe {
            connect_timeout: connect_timeout.min(timeout),
            tls,
        };
        let shared = self.shared.clone();
        crate::runtime::supervise::spawn_supervised("steering", health, move || {
            steer(
                shared.clone(),
                client.clone(),
                endpoints.clone(),
                probe_period(ttl),
                timeout,
                probe.clone(),
            )
        });
    }
}

/// How long a probe may take; also how long a call may go unanswered
/// before it raises a suspicion. A sixth of the TTL (the keepalive's own
/// deadline), so a member is judged within TTL/2 of the keepalive that found
/// it silent.
fn probe_timeout(ttl: Duration) -> Duration {
    (ttl / 6).clamp(Duration::from_millis(300), Duration::from_secs(2))
}

/// The pace of probe rounds while a member is out of rotation (or new
/// suspicions keep coming).
fn probe_period(ttl: Duration) -> Duration {
    (ttl / 10).clamp(Duration::from_millis(150), Duration::from_secs(1))
}

async fn steer(
    shared: Arc<Shared>,
    client: etcd_client::Client,
    endpoints: Vec<String>,
    every: Duration,
    probe_timeout: Duration,
    probe: Probe,
) {
    let mut probes = Vec::with_capacity(endpoints.len());
    for ep in &endpoints {
        // Without credentials, connecting does no I/O.
        match probe.connect(ep).await {
            Ok(c) => probes.push(c),
            Err(e) => {
                log::warn!("os-lively: cannot probe endpoint {ep}, not steering: {e}");
                return;
            }
        }
    }
    if shared.started.swap(true, Ordering::AcqRel) {
        // Restarted: put every endpoint back, so "all in rotation" is true
        // again; the next suspicion's round takes bad ones out.
        for ep in &endpoints {
            if client.add_endpoint(ep).await.is_err() {
                return;
            }
        }
    }
    let mut active = vec![true; endpoints.len()];
    // A round of every endpoint (after a suspicion), or of those out only.
    let mut full = false;
    let mut backoff = every;
    // Full rounds in a row that changed nothing, and when the last began.
    let mut fruitless = 0u32;
    let mut last_full: Option<tokio::time::Instant> = None;
    loop {
        crate::runtime::supervise::checkpoint("steering");
        if active.iter().all(|a| *a) && !full {
            // Everything in rotation: nothing to do until someone suspects.
            shared.suspect.notified().await;
            full = true;
            // While every member answers slowly, each slow call suspects
            // them all, and a round at each would add a Status per member
            // to every such call: the load that feeds on itself. So full
            // rounds that changed nothing space the next ones out, doubling
            // (jittered) up to `MAX_FRUITLESS_BACKOFF` periods; a quiet
            // spell that long starts afresh, so the first suspicion after
            // calm is probed at once.
            if let Some(last) = last_full {
                if last.elapsed() >= every * MAX_FRUITLESS_BACKOFF {
                    fruitless = 0;
                } else if fruitless > 0 {
                    tokio::time::sleep_until(last + jittered(fruitless_gap(every, fruitless)))
                        .await;
                }
            }
        }
        let round = tokio::time::Instant::now();
        let was_full = full;
        let mut changed = false;
        shared.rounds.fetch_add(1, Ordering::Relaxed);
        // Endpoints in rotation and not probed count as good: nothing
        // suspected them since the round that judged them.
        let probed: Vec<bool> = active.iter().map(|a| full || !a).collect();
        let health = probe_some(&probes, &probed, probe_timeout).await;
        let want: Vec<bool> = if health.contains(&Health::Good) {
            health.iter().map(|h| *h == Health::Good).collect()
        } else if health.contains(&Health::NoLeader) {
            health.iter().map(|h| *h != Health::Dead).collect()
        } else {
            vec![true; endpoints.len()]
        };
        // Add before removing, so the balancer is never empty.
        for (i, ep) in endpoints.iter().enumerate() {
            if want[i] && !active[i] {
                if client.add_endpoint(ep).await.is_err() {
                    return; // the client is gone
                }
                log::warn!("os-lively: etcd endpoint {ep} answers again; using it");
                active[i] = true;
                changed = true;
            }
        }
        for (i, ep) in endpoints.iter().enumerate() {
            if !want[i] && active[i] {
                if client.remove_endpoint(ep).await.is_err() {
                    return;
                }
                log::warn!(
                    "os-lively: etcd endpoint {ep} {}; avoiding it",
                    if health[i] == Health::NoLeader {
                        "has no leader"
                    } else {
                        "does not answer"
                    }
                );
                active[i] = false;
                changed = true;
                // Streams opened before (watch, keepalive) may still be on
                // it: a member without a leader keeps serving an open watch
                // from its stale revision. Tell them to reopen elsewhere.
                shared.reroutes.send_modify(|n| *n += 1);
            }
        }
        if was_full {
            last_full = Some(round);
            fruitless = if changed {
                0
            } else {
                fruitless.saturating_add(1)
            };
        }
        backoff = if full {
            every
        } else {
            (backoff * 2).min(every * MAX_BACKOFF)
        };
        // At most one round per period, however many suspicions arrive; a
        // suspicion makes the next round a full one, at once after that.
        tokio::time::sleep_until(round + every).await;
        if active.iter().all(|a| *a) {
            // A suspicion meanwhile left its permit: the wait above ends at once.
            full = false;
            continue;
        }
        // A suspicion makes the next round a full one, no sooner than the
        // fruitless rounds' spacing allows.
        let full_from = match last_full {
            Some(last) if fruitless > 0 => last + jittered(fruitless_gap(every, fruitless)),
            _ => round,
        };
        full = tokio::select! {
            _ = tokio::time::sleep_until(round + jittered(backoff)) => false,
            _ = async {
                tokio::time::sleep_until(full_from).await;
                shared.suspect.notified().await
            } => true,
        };
    }
}

/// The longest wait between rounds while an endpoint is out, in probe
/// periods: 32 s at a TTL of 10 s or more, so a member out for long costs
/// each client about two `Status` calls a minute beside its 18 keepalives
/// (1.1×; at 8 periods it was 7.5, 1.4×: issue 29, no load that feeds on
/// itself). A member back is put back in rotation within 48 periods.
const MAX_BACKOFF: u32 = 32;

/// The longest wait between full rounds that changed nothing, in probe
/// periods (64 s at a TTL of 10 s or more): at most about one round of
/// `Status` calls a minute per client while etcd is slow everywhere.
const MAX_FRUITLESS_BACKOFF: u32 = 64;

/// The spacing of full rounds after `fruitless` of them in a row changed
/// nothing: `every` doubled that many times, at most
/// [`MAX_FRUITLESS_BACKOFF`] periods.
fn fruitless_gap(every: Duration, fruitless: u32) -> Duration {
    every
        .saturating_mul(1u32 << fruitless.min(16))
        .min(every * MAX_FRUITLESS_BACKOFF)
}

/// `d` times a random factor between 0.5 and 1.5: clients of a fleet that
/// lost a member at the same moment do not probe it in step.
fn jittered(d: Duration) -> Duration {
    d / 2 + crate::backoff::jitter(d)
}

/// Probes the endpoints whose `probed` is true; the others count as good.
async fn probe_some(
    probes: &[etcd_client::Client],
    probed: &[bool],
    probe_timeout: Duration,
) -> Vec<Health> {
    let mut set = tokio::task::JoinSet::new();
    for (i, p) in probes.iter().enumerate() {
        if !probed.get(i).copied().unwrap_or(true) {
            continue;
        }
        let mut p = p.clone();
        set.spawn(async move {
            let health = match tokio::time::timeout(probe_timeout, p.status()).await {
                Ok(Ok(s)) if s.leader() != 0 => Health::Good,
                Ok(Ok(_)) => Health::NoLeader,
                _ => Health::Dead,
            };
            (i, health)
        });
    }
    let mut health: Vec<Health> = (0..probes.len())
        .map(|i| {
            if probed.get(i).copied().unwrap_or(true) {
                Health::Dead
            } else {
                Health::Good
            }
        })
        .collect();
    while let Some(r) = set.join_next().await {
        if let Ok((i, h)) = r {
            health[i] = h;
        }
    }
    health
}

/// How probes connect: like the client, with its current TLS credentials.
#[derive(Clone)]
struct Probe {
    connect_timeout: Duration,
    tls: Option<Arc<crate::tls::Credentials>>,
}

impl Probe {
    async fn connect(&self, endpoint: &str) -> Result<etcd_client::Client, etcd_client::Error> {
        let opts = ConnectOptions::new().with_connect_timeout(self.connect_timeout);
        match &self.tls {
            Some(credentials) => {
                let settings = crate::tls::channel::Settings {
                    connect_timeout: self.connect_timeout,
                    keep_alive: None,
                };
                crate::tls::channel::connect(
                    &[endpoint.to_string()],
                    opts,
                    credentials.clone(),
                    settings,
                )
                .await
            }
            None => etcd_client::Client::connect([endpoint], Some(opts)).await,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Good,
    NoLeader,
    Dead,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_timing_scales_with_the_ttl_within_bounds() {
        let s = Duration::from_secs;
        assert_eq!(probe_timeout(s(2)), s(2) / 6);
        assert_eq!(probe_timeout(s(60)), s(2));
        assert_eq!(
            probe_timeout(Duration::from_millis(500)),
            Duration::from_millis(300)
        );
        assert_eq!(probe_period(s(2)), Duration::from_millis(200));
        assert_eq!(probe_period(s(60)), s(1));
    }

    #[test]
    fn fruitless_full_rounds_are_spaced_out_doubling_to_a_cap() {
        let p = Duration::from_millis(200);
        assert_eq!(fruitless_gap(p, 1), p * 2);
        assert_eq!(fruitless_gap(p, 3), p * 8);
        assert_eq!(fruitless_gap(p, 6), p * MAX_FRUITLESS_BACKOFF);
        assert_eq!(fruitless_gap(p, 40), p * MAX_FRUITLESS_BACKOFF);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_call_raises_a_suspicion_and_still_answers() {
        // The shortest TTL: a call is slow after 300 ms.
        let st = Steering::new(Duration::from_millis(500));
        let fast = st.watching("fast", async { 1 }).await;
        assert_eq!(fast, 1);
        let slow = st
            .watching("slow", async {
                tokio::time::sleep(Duration::from_millis(400)).await;
                2
            })
            .await;
        assert_eq!(slow, 2);
        // The stored permit: the steering task would wake at once.
        tokio::time::timeout(Duration::from_millis(1), st.shared.suspect.notified())
            .await
            .expect("no suspicion raised by the slow call");
        assert_eq!(st.rounds(), 0);
    }
}
