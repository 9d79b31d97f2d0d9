//! `/metrics`: the fleet as the view holds it, and this client's own
//! counters, written by `prometheus-client` (OpenMetrics text).
//!
//! Collectors encode straight from a list taken per scrape, so a scrape
//! builds no per-series map: at 100,000 services it is one list of the view
//! and one pass over it.
//!
//! Series per service carry `type`, `host` and `region` (type+host is a
//! service's identity); the uuid is only on `oslively_service_info`, the
//! info-metric pattern of kube-state-metrics' `kube_pod_info`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Bytes;

use os_lively::{ServiceInfo, Stats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::Shared;
use crate::output::why_down;

/// A label value escaped as the text format requires (prometheus-client
/// writes values as given): `\` → `\\`, `"` → `\"`, newline → `\n`.
#[derive(Debug, Clone, Copy)]
struct Esc<'a>(&'a str);

impl EncodeLabelValue for Esc<'_> {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let s = self.0;
        if !s.contains(['\\', '"', '\n']) {
            return encoder.write_str(s);
        }
        for c in s.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// FNV-1a: the dedup map hashes 100,000 short keys per scrape, where
/// SipHash's DoS resistance buys nothing (the keys are the fleet's own).
#[derive(Default, Clone, Copy)]
struct FnvHasher(u64);

impl std::hash::Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Fnv = std::hash::BuildHasherDefault<FnvHasher>;

/// Per-service series, from one list of the view.
#[derive(Debug)]
struct Fleet {
    /// Indexes into `all`, one per (type, host, region) label set.
    services: Vec<usize>,
    /// Every service, for the info metric (the uuid makes each unique).
    all: Vec<Arc<ServiceInfo>>,
    last_change: HashMap<String, f64>,
}

impl Fleet {
    /// `all` in the view's order (by uuid). No sort: a scrape is one pass.
    fn new(all: Vec<Arc<ServiceInfo>>, last_change: HashMap<String, f64>) -> Fleet {
        // Records the original library duplicated for one type+host would
        // repeat a label set, which makes Prometheus reject the whole
        // scrape: keep one per label set (an UP one if any).
        let mut first: HashMap<(&str, &str, &str), usize, Fnv> =
            HashMap::with_capacity_and_hasher(all.len(), Fnv::default());
        let mut dups = false;
        for (n, i) in all.iter().enumerate() {
            let s = &i.service;
            let key = (s.service_type.as_str(), s.host.as_str(), s.region.as_str());
            match first.entry(key) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(n);
                }
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    dups = true;
                    if i.up && !all[*o.get()].up {
                        o.insert(n);
                    }
                }
            }
        }
        let services: Vec<usize> = if dups {
            let keep: std::collections::HashSet<usize> = first.into_values().collect();
            (0..all.len()).filter(|n| keep.contains(n)).collect()
        } else {
            drop(first);
            (0..all.len()).collect()
        };
        Fleet {
            services,
            all,
            last_change,
        }
    }

    fn labels(i: &ServiceInfo) -> [(&'static str, Esc<'_>); 3] {
        [
            ("type", Esc(&i.service.service_type)),
            ("host", Esc(&i.service.host)),
            ("region", Esc(&i.service.region)),
        ]
    }

    /// One gauge per service, 0/1 from `f`.
    fn flag(
        &self,
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        f: impl Fn(&ServiceInfo) -> bool,
    ) -> Result<(), std::fmt::Error> {
        let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for i in self.services.iter().map(|&n| &self.all[n]) {
            let labels = Fleet::labels(i);
            ConstGauge::new(i64::from(f(i))).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// The per-service families, which a scrape encodes on two threads.
#[derive(Debug, Clone, Copy)]
enum Family {
    Up,
    Info,
    ForcedDown,
    HeartbeatMissed,
    LastChange,
    Counts,
}

/// Up + forced down, and the rest: about half the bytes each.
const HALVES: [&[Family]; 2] = [
    &[Family::Up, Family::ForcedDown],
    &[
        Family::Info,
        Family::HeartbeatMissed,
        Family::LastChange,
        Family::Counts,
    ],
];

impl Fleet {
    fn encode_family(
        &self,
        family: Family,
        encoder: &mut DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        match family {
            Family::Up => self.flag(
                encoder,
                "oslively_service_up",
                "1 when the service is UP: its record says UP and its lease lives",
                |i| i.up,
            ),
            Family::ForcedDown => self.flag(
                encoder,
                "oslively_service_forced_down",
                "1 while an operator holds the service DOWN (oslively down, maintenance)",
                |i| i.service.forced_down,
            ),
            Family::HeartbeatMissed => self.flag(
                encoder,
                "oslively_service_heartbeat_missed",
                "1 while the service is DOWN because its owner missed its heartbeat deadline",
                |i| i.service.heartbeat_missed,
            ),
            Family::Info => self.encode_info(encoder),
            Family::LastChange => self.encode_last_change(encoder),
            Family::Counts => self.encode_counts(encoder),
        }
    }

    fn encode_info(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut m = encoder.encode_descriptor(
                "oslively_service",
                "Each service's identity; the uuid is here only",
                None,
                MetricType::Info,
            )?;
            for i in &self.all {
                let labels = [
                    ("type", Esc(&i.service.service_type)),
                    ("host", Esc(&i.service.host)),
                    ("region", Esc(&i.service.region)),
                    ("uuid", Esc(&i.service.uuid)),
                ];
                m.encode_info(&labels)?;
            }
        }
        Ok(())
    }

    fn encode_last_change(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            let mut m = encoder.encode_descriptor(
                "oslively_service_last_change_timestamp",
                "When this exporter saw the service's last change (absent: none since it started)",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            for i in self.services.iter().map(|&n| &self.all[n]) {
                if let Some(t) = self.last_change.get(&i.service.uuid) {
                    let labels = Fleet::labels(i);
                    ConstGauge::new(*t).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }

    fn encode_counts(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        {
            // Counts by type, region and status (and why, for DOWN).
            let mut counts: HashMap<(&str, &str, &str, &str), i64> = HashMap::new();
            for i in &self.all {
                let (status, why) = match why_down(i) {
                    None => ("UP", ""),
                    Some(w) => ("DOWN", w),
                };
                *counts
                    .entry((&i.service.service_type, &i.service.region, status, why))
                    .or_default() += 1;
            }
            let mut m = encoder.encode_descriptor(
                "oslively_services",
                "Services by type, region, status and why (empty while UP)",
                None,
                MetricType::Gauge,
            )?;
            let mut counts: Vec<_> = counts.into_iter().collect();
            counts.sort_unstable();
            for ((ty, region, status, why), n) in counts {
                let labels = [
                    ("type", Esc(ty)),
                    ("region", Esc(region)),
                    ("status", Esc(status)),
                    ("why", Esc(why)),
                ];
                ConstGauge::new(n).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Some of a fleet's families, as one collector.
#[derive(Debug)]
struct Part {
    fleet: Arc<Fleet>,
    families: &'static [Family],
}

impl Collector for Part {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in self.families {
            self.fleet.encode_family(*f, &mut encoder)?;
        }
        Ok(())
    }
}

/// The serving client's own health.
#[derive(Debug)]
struct Own {
    stats: Stats,
    connected: bool,
    stale_seconds: f64,
    revision: i64,
    services: usize,
}

impl Collector for Own {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.stats;
        for (name, help, v) in [
            (
                "oslively_client_reconnects",
                "Watch and keepalive streams this exporter's client re-opened",
                s.reconnects,
            ),
            (
                "oslively_client_resyncs",
                "Re-lists after a compaction or an overflow",
                s.resyncs,
            ),
            (
                "oslively_client_events",
                "Events handed to this exporter's subscription",
                s.events_delivered,
            ),
            (
                "oslively_client_registrations_lost",
                "Registrations this client lost (a reader holds none: stays 0)",
                s.registrations_lost,
            ),
            (
                "oslively_client_task_panics",
                "Panics caught in this client's background tasks (each restarted): anything but 0 is a bug",
                s.task_panics,
            ),
            (
                "oslively_client_tls_reloads",
                "Changed TLS files loaded for new connections",
                s.tls_reloads,
            ),
            (
                "oslively_client_tls_files_refused",
                "Changed TLS files that did not load (the previous credentials stay in use)",
                s.tls_files_refused,
            ),
        ] {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        let g = |encoder: &mut DescriptorEncoder,
                 name: &str,
                 help: &str,
                 unit: Option<&Unit>,
                 v: f64| {
            let g = ConstGauge::new(v);
            g.encode(encoder.encode_descriptor(name, help, unit, g.metric_type())?)
        };
        g(
            &mut encoder,
            "oslively_view_connected",
            "1 while the view's watch is connected and caught up",
            None,
            f64::from(u8::from(self.connected)),
        )?;
        g(
            &mut encoder,
            "oslively_view_stale",
            "How long the view's watch has been disconnected (0 while connected)",
            Some(&Unit::Seconds),
            self.stale_seconds,
        )?;
        g(
            &mut encoder,
            "oslively_view_revision",
            "The etcd revision the view reflects",
            None,
            self.revision as f64,
        )?;
        g(
            &mut encoder,
            "oslively_view_services",
            "Services in the view",
            None,
            self.services as f64,
        )?;
        Ok(())
    }
}

/// One scrape: the OpenMetrics text in two parts (the fleet's families,
/// shared with the cache, then ours and `# EOF`), and whether the fleet's
/// part was the last scrape's (no event since).
pub(crate) fn render(shared: &Shared) -> Result<(Bytes, String, bool), String> {
    let revision = shared.view.revision();
    let (all, generation, last_change) = shared.all().map_err(|e| e.to_string())?;
    let own = Own {
        stats: shared.client.stats(),
        connected: shared.connected(),
        stale_seconds: shared.stale_seconds(),
        revision,
        services: all.len(),
    };
    let cached = generation.and_then(|g| {
        super::lock(&shared.fleet_text)
            .as_ref()
            .filter(|(at, _)| *at == g)
            .map(|(_, text)| text.clone())
    });
    let reused = cached.is_some();
    let fleet_text = match cached {
        Some(text) => text,
        None => {
            let text = Bytes::from(encode_fleet(&Arc::new(Fleet::new(all, last_change)))?);
            if let Some(g) = generation {
                *super::lock(&shared.fleet_text) = Some((g, text.clone()));
            }
            text
        }
    };
    Ok((fleet_text, finish(own)?, reused))
}

/// The fleet's families in two halves on two threads (each family stays
/// contiguous, as the format requires).
fn encode_fleet(fleet: &Arc<Fleet>) -> Result<String, String> {
    let half = |families: &'static [Family]| -> Result<String, std::fmt::Error> {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Part {
            fleet: fleet.clone(),
            families,
        }));
        // About 360 bytes per service in all.
        let mut out = String::with_capacity(4096 + fleet.all.len() * 200);
        prometheus_client::encoding::text::encode_registry(&mut out, &registry)?;
        Ok(out)
    };
    let (first, second) = std::thread::scope(|s| {
        let other = s.spawn(|| half(HALVES[1]));
        let first = half(HALVES[0]);
        (first, other.join())
    });
    let failed = |_| "encoding the metrics failed".to_string();
    let mut out = first.map_err(failed)?;
    let second = second
        .map_err(|_| "encoding the metrics panicked".to_string())?
        .map_err(failed)?;
    out.push_str(&second);
    Ok(out)
}

/// Our own families, then `# EOF` (after the fleet's text).
fn finish(own: Own) -> Result<String, String> {
    let mut out = String::with_capacity(4096);
    let mut registry = Registry::default();
    registry.register_collector(Box::new(own));
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .map_err(|_| "encoding the metrics failed".to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use os_lively::{Service, Status};

    fn info(ty: &str, host: &str, region: &str, up: bool) -> Arc<ServiceInfo> {
        let mut s = Service::new(ty, host).with_region(region);
        s.uuid = format!("{:032x}", crate::serve::metrics::tests::hash(ty, host));
        s.status = if up { Status::Up } else { Status::Down };
        Arc::new(ServiceInfo {
            service: s,
            up,
            closed: false,
        })
    }

    fn hash(a: &str, b: &str) -> u128 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (a, b).hash(&mut h);
        u128::from(h.finish())
    }

    fn text(fleet: Fleet) -> String {
        let own = Own {
            stats: Stats::default(),
            connected: true,
            stale_seconds: 0.0,
            revision: 1,
            services: fleet.all.len(),
        };
        encode_fleet(&Arc::new(fleet)).unwrap() + &finish(own).unwrap()
    }

    #[test]
    fn series_escaping_and_duplicates() {
        let mut dup = ServiceInfo::clone(&info("nova", "h1", "east", true));
        dup.service.uuid = "f".repeat(32);
        dup.up = false;
        let dup = Arc::new(dup);
        let odd = info("we\"ird\\", "h\n2", "", false);
        let out = text(Fleet::new(
            vec![info("nova", "h1", "east", true), dup, odd],
            HashMap::new(),
        ));
        assert!(
            out.contains("oslively_service_up{type=\"nova\",host=\"h1\",region=\"east\"} 1\n"),
            "{out}"
        );
        // The duplicate type+host appears once in per-service series, twice in info.
        assert_eq!(out.matches("oslively_service_up{type=\"nova\"").count(), 1);
        assert_eq!(
            out.matches("oslively_service_info{type=\"nova\"").count(),
            2
        );
        assert!(out.contains(r#"type="we\"ird\\",host="h\n2""#), "{out}");
        assert!(out.contains(
            "oslively_services{type=\"nova\",region=\"east\",status=\"DOWN\",why=\"expired\"} 1"
        ));
        assert!(out.ends_with("# EOF\n"));
    }

    /// The scrape's encoding alone at 100,000 services (the HTTP path with a
    /// real view is `cli/tests/serve.rs`'s ignored scrape test).
    #[test]
    #[ignore]
    fn encode_100k() {
        let all: Vec<Arc<ServiceInfo>> = (0..100_000)
            .map(|n| {
                info(
                    &format!("type-{}", n % 20),
                    &format!("host-{n}"),
                    &format!("region-{}", n % 5),
                    n % 7 != 0,
                )
            })
            .collect();
        let start = std::time::Instant::now();
        let fleet = Fleet::new(all, HashMap::new());
        let sorted = start.elapsed();
        let out = text(fleet);
        eprintln!(
            "encode 100k: {:?} ({sorted:?} dedup), {} bytes",
            start.elapsed(),
            out.len()
        );
    }
}
