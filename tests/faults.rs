//! Fault injection against real etcd: leader kills, blackholed and dropped
//! connections (through the harness's TCP proxy), lost quorum, a frozen etcd,
//! a member cut off from its peers but not from its clients.
//!
//! Every test checks what subscribers saw against a reference history read
//! with a raw etcd watch from the test's start revision (no compaction):
//! ordered, unique, none missing, one transaction never split, and no DOWN
//! that is not a real deletion of an UP key. Tests run one at a time (they
//! are timing-sensitive and a 3-member cluster with 500 ms elections does
//! not like sharing 2 cores with another one).

mod common;
#[path = "common/oracle.rs"]
mod oracle;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use oracle::*;
use os_lively::{Client, DownReason, ErrorKind, Event, EventKind, Filter, Service, Status};

const TTL: u64 = 2;
/// The harness's request timeout (see `common::config`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Slack for a blocking call's hand-off to the runtime thread and back.
const CALL_SLACK: Duration = Duration::from_millis(500);

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    // Every test starts here, before any client exists: the capture is
    // the process's logger, not the library's default one.
    warnings();
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn ttl() -> Duration {
    Duration::from_secs(TTL)
}

/// The library's warnings, kept for tests that must know what endpoint
/// steering did (and echoed to stderr as the library's default would).
struct Warnings {
    lines: Mutex<Vec<String>>,
}

impl log::Log for Warnings {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        meta.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!("{}", record.args());
        eprintln!("{} {line}", record.level());
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }
    fn flush(&self) {}
}

static WARNINGS: Warnings = Warnings {
    lines: Mutex::new(Vec::new()),
};
/// Whether [`WARNINGS`] is the process's logger (false if another was
/// installed first: then nothing is captured).
static CAPTURING: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Installs the capture (once per test process) and returns it.
fn warnings() -> &'static Warnings {
    CAPTURING.get_or_init(|| {
        let ok = log::set_logger(&WARNINGS).is_ok();
        log::set_max_level(log::LevelFilter::Warn);
        ok
    });
    &WARNINGS
}

impl Warnings {
    /// Lines logged so far (an index to read from later).
    fn len(&self) -> usize {
        assert_eq!(
            CAPTURING.get(),
            Some(&true),
            "another logger was installed first: the library's warnings are not captured"
        );
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Steering's last verdict on the endpoint at `addr` among the lines
    /// from `from` on: `Some(true)` in rotation, `Some(false)` avoided,
    /// `None` if it said nothing about it.
    fn in_rotation(&self, from: usize, addr: &str) -> Option<bool> {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        lines[from.min(lines.len())..]
            .iter()
            .rfind(|l| l.contains("etcd endpoint") && l.contains(addr))
            .map(|l| l.ends_with("using it"))
    }
}

// ---------------------------------------------------------------------------
// Subscriber side: collect every event a subscription delivers.
// ---------------------------------------------------------------------------

struct Collector {
    events: Arc<Mutex<Vec<(Instant, Event)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    fn start(client: &Client) -> Collector {
        let sub = client
            .subscribe(&Filter::all(), &Default::default())
            .expect("subscribe");
        let events: Arc<Mutex<Vec<(Instant, Event)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (ev, st) = (events.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match sub.recv_timeout(Duration::from_millis(50)) {
                    Ok(Some(e)) => ev.lock().unwrap().push((Instant::now(), e)),
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
        });
        Collector {
            events,
            stop,
            thread: Some(thread),
        }
    }

    fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// When the first event of `kind` for `uuid` arrived.
    fn arrival(&self, kind: EventKind, uuid: &str) -> Option<Instant> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .find(|(_, e)| e.kind == kind && e.uuid == uuid)
            .map(|(t, _)| *t)
    }

    fn count(&self, kind: EventKind, uuid: &str) -> usize {
        self.events()
            .iter()
            .filter(|e| e.kind == kind && e.uuid == uuid)
            .count()
    }

    fn wait_for(&self, kind: EventKind, uuid: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.arrival(kind, uuid).is_some())
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------
// Reference side: the true history, and the events it implies.
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct RefChange {
    revision: i64,
    key: String,
    put: bool,
    value: Vec<u8>,
}

/// Every change under `ns` from revision `from` to now, read with a raw
/// watch straight from etcd.
fn history(raw: &Raw, ns: &str, from: i64) -> Vec<RefChange> {
    let until = raw.revision();
    let mut client = raw.client();
    let prefix = format!("{ns}/");
    raw.block_on(async move {
        let mut stream = client
            .watch(
                prefix,
                Some(
                    etcd_client::WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(from),
                ),
            )
            .await
            .expect("reference watch");
        let mut out = Vec::new();
        let mut caught_up = false;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            assert!(
                Instant::now() < deadline,
                "reference watch did not catch up"
            );
            match tokio::time::timeout(Duration::from_millis(300), stream.message()).await {
                Ok(Ok(Some(resp))) => {
                    assert_eq!(resp.compact_revision(), 0, "history was compacted");
                    for e in resp.events() {
                        let kv = e.kv().expect("kv");
                        out.push(RefChange {
                            revision: kv.mod_revision(),
                            key: String::from_utf8_lossy(kv.key()).into_owned(),
                            put: e.event_type() == etcd_client::EventType::Put,
                            value: kv.value().to_vec(),
                        });
                    }
                    if resp.header().is_some_and(|h| h.revision() >= until) {
                        caught_up = true;
                    }
                }
                Ok(other) => panic!("reference watch ended: {other:?}"),
                Err(_) if caught_up => break,
                Err(_) => {
                    let _ = stream.request_progress().await;
                }
            }
        }
        out
    })
}

#[derive(Default, Clone)]
struct RefEntry {
    record: Option<Vec<u8>>,
    up_key: bool,
}

impl RefEntry {
    fn effective(&self) -> Option<Status> {
        self.record.as_ref().map(|r| {
            let s = Service::from_bytes(r).expect("record decodes");
            if s.status == Status::Up && self.up_key {
                Status::Up
            } else {
                Status::Down
            }
        })
    }
}

type Key3 = (EventKind, String, i64);

/// The events a subscription over everything must deliver for `hist`,
/// applying each revision (one transaction) as a whole.
fn expected_events(ns: &str, hist: &[RefChange]) -> Vec<Key3> {
    let rec_prefix = format!("{ns}/services/by-uuid/");
    let up_prefix = format!("{ns}/services/by-status/UP/");
    let mut model: HashMap<String, RefEntry> = HashMap::new();
    let mut out = Vec::new();
    let mut i = 0;
    while i < hist.len() {
        let rev = hist[i].revision;
        let mut touched: Vec<(String, RefEntry)> = Vec::new();
        while i < hist.len() && hist[i].revision == rev {
            let c = &hist[i];
            i += 1;
            let (uuid, is_record) = if let Some(u) = c.key.strip_prefix(&rec_prefix) {
                (u.to_string(), true)
            } else if let Some(u) = c.key.strip_prefix(&up_prefix) {
                (u.to_string(), false)
            } else {
                continue;
            };
            if !touched.iter().any(|(u, _)| *u == uuid) {
                touched.push((uuid.clone(), model.get(&uuid).cloned().unwrap_or_default()));
            }
            let e = model.entry(uuid).or_default();
            if is_record {
                e.record = c.put.then(|| c.value.clone());
            } else {
                e.up_key = c.put;
            }
        }
        for (uuid, before) in touched {
            let after = model.get(&uuid).cloned().unwrap_or_default();
            match (before.effective(), after.effective()) {
                (None, None) => {}
                (None, Some(_)) => out.push((EventKind::Registered, uuid, rev)),
                (Some(st), None) => {
                    if st == Status::Up {
                        out.push((EventKind::Down, uuid.clone(), rev));
                    }
                    out.push((EventKind::Removed, uuid, rev));
                }
                (Some(Status::Up), Some(Status::Down)) => out.push((EventKind::Down, uuid, rev)),
                (Some(Status::Down), Some(Status::Up)) => out.push((EventKind::Up, uuid, rev)),
                (Some(_), Some(_)) => {
                    if before.record != after.record {
                        out.push((EventKind::Updated, uuid, rev));
                    }
                }
            }
        }
    }
    out
}

/// Checks what a subscriber saw against the reference; returns the number
/// of DOWN events the subscriber reported that are not real deletions of an
/// UP key (false DOWNs). Panics on any difference.
fn check_against_reference(who: &str, seen: &[Event], expected: &[Key3]) -> usize {
    let got: Vec<Key3> = seen
        .iter()
        .map(|e| (e.kind, e.uuid.clone(), e.revision))
        .collect();
    let resyncs = got.iter().filter(|k| k.0 == EventKind::Resync).count();
    let false_downs = got
        .iter()
        .filter(|k| k.0 == EventKind::Down && !expected.contains(k))
        .count();
    let mut sorted = got.clone();
    sorted.sort_by_key(|k| k.2);
    let mut uniq = got.clone();
    uniq.sort_by(|a, b| (a.2, &a.1, a.0 as u8).cmp(&(b.2, &b.1, b.0 as u8)));
    uniq.dedup();
    let missing: Vec<&Key3> = expected.iter().filter(|k| !got.contains(k)).collect();
    let extra: Vec<&Key3> = got.iter().filter(|k| !expected.contains(k)).collect();
    println!(
        "{who}: {} events, expected {}; missing {}, extra {}, duplicated {}, out of order {}, resyncs {resyncs}, false DOWNs {false_downs}",
        got.len(),
        expected.len(),
        missing.len(),
        extra.len(),
        got.len() - uniq.len(),
        sorted != got,
    );
    assert_eq!(resyncs, 0, "{who}: unexpected resync: {seen:#?}");
    assert_eq!(false_downs, 0, "{who}: false DOWN: {got:?} vs {expected:?}");
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{who}: missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(got, expected, "{who}: order or duplicates differ");
    false_downs
}

// ---------------------------------------------------------------------------
// Small helpers.
// ---------------------------------------------------------------------------

/// Registers `svc`, retrying transient errors until `timeout`.
fn register(client: &Client, svc: &Service, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        match client.update(svc) {
            Ok(u) => return u,
            Err(e) if e.is_transient() && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("registering {svc:?}: {e}"),
        }
    }
}

/// Statistics of blocking calls made in the background during a fault.
#[derive(Debug, Default, Clone)]
struct CallLog {
    ok: usize,
    false_down: usize,
    errors: Vec<(ErrorKind, String)>,
    slowest: Duration,
}

/// Calls `is_up` on every uuid from `client` in a loop until stopped.
struct Poller {
    log: Arc<Mutex<CallLog>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Poller {
    fn start(client: &Client, uuids: &[String]) -> Poller {
        let log: Arc<Mutex<CallLog>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s, c, uuids) = (log.clone(), stop.clone(), client.clone(), uuids.to_vec());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                for u in &uuids {
                    let t = Instant::now();
                    let r = c.is_up(u);
                    let took = t.elapsed();
                    let mut log = l.lock().unwrap();
                    log.slowest = log.slowest.max(took);
                    match r {
                        Ok(true) => log.ok += 1,
                        Ok(false) => log.false_down += 1,
                        Err(e) => log.errors.push((e.kind(), e.to_string())),
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Poller {
            log,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> CallLog {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.log.lock().unwrap().clone()
    }
}

/// Records when each successful keepalive of `client` happened.
struct KeepaliveSampler {
    beats: Arc<Mutex<Vec<Instant>>>,
    failures: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl KeepaliveSampler {
    fn start(client: &Client) -> KeepaliveSampler {
        let beats: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let failures: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (b, f, s, c) = (
            beats.clone(),
            failures.clone(),
            stop.clone(),
            client.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut last = c.stats();
            while !s.load(Ordering::SeqCst) {
                let now = c.stats();
                if now.keepalives_sent != last.keepalives_sent {
                    b.lock().unwrap().push(Instant::now());
                }
                if now.keepalives_failed != last.keepalives_failed {
                    f.lock().unwrap().push(Instant::now());
                }
                last = now;
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        KeepaliveSampler {
            beats,
            failures,
            stop,
            thread: Some(thread),
        }
    }

    fn first_after(&self, t: Instant) -> Option<Instant> {
        self.beats.lock().unwrap().iter().copied().find(|b| *b > t)
    }

    fn first_failure_after(&self, t: Instant) -> Option<Instant> {
        self.failures
            .lock()
            .unwrap()
            .iter()
            .copied()
            .find(|b| *b > t)
    }

    fn max_gap_between(&self, from: Instant, to: Instant) -> Duration {
        let beats = self.beats.lock().unwrap();
        let mut prev = beats.iter().copied().rev().find(|b| *b <= from);
        let mut gap = Duration::ZERO;
        for b in beats.iter().copied().filter(|b| *b > from && *b <= to) {
            if let Some(p) = prev {
                gap = gap.max(b - p);
            }
            prev = Some(b);
        }
        gap
    }
}

impl Drop for KeepaliveSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn live_endpoints(cluster: &Cluster) -> Vec<String> {
    cluster
        .members()
        .iter()
        .filter(|m| m.is_running() && !m.is_paused())
        .map(|m| m.endpoint())
        .collect()
}

// ---------------------------------------------------------------------------
// 1. Leader killed.
// ---------------------------------------------------------------------------

#[test]
fn leader_killed_calls_keep_working_and_nobody_sees_a_false_down() {
    let _g = serial();
    let mut cluster = Cluster::start(3);
    let ns = namespace("leader-kill");
    let start = cluster.raw().revision();
    let eps = cluster.endpoints();
    let owner = connect(&eps, &ns, TTL);
    let reader = connect(&eps, &ns, TTL);
    let col = Collector::start(&reader);
    let uuids: Vec<String> = (0..3)
        .map(|i| register(&owner, &Service::new("svc", &format!("h{i}")), ttl()))
        .collect();
    for u in &uuids {
        assert!(col.wait_for(EventKind::Registered, u, Duration::from_secs(5)));
    }
    let poller = Poller::start(&reader, &uuids);
    std::thread::sleep(Duration::from_millis(300));

    let leader = cluster.leader_index().expect("leader");
    cluster.member(leader).kill();
    let killed = Instant::now();
    // Writes keep working too: the owner registers one more service.
    let t = Instant::now();
    let late = register(&owner, &Service::new("svc", "late"), REQUEST_TIMEOUT * 2);
    let write_latency = t.elapsed();
    assert!(cluster.wait_leader(Duration::from_secs(10)).is_some());
    // Run through two TTLs (a lease refreshed on the new leader would
    // expire by then if keepalives had stopped).
    std::thread::sleep((ttl() * 2 + Duration::from_millis(500)).saturating_sub(killed.elapsed()));
    let log = poller.finish();
    assert!(col.wait_for(EventKind::Registered, &late, Duration::from_secs(5)));
    for u in &uuids {
        assert!(reader.is_up(u).unwrap(), "{u} not UP after the failover");
    }
    println!(
        "leader kill: is_up calls ok {}, false DOWN {}, errors {} {:?}, slowest {:?}; a write right after the kill took {write_latency:?}; owner stats {:?}",
        log.ok,
        log.false_down,
        log.errors.len(),
        log.errors.iter().take(3).collect::<Vec<_>>(),
        log.slowest,
        owner.stats()
    );
    assert_eq!(log.false_down, 0, "a live service read DOWN");
    assert!(
        log.slowest <= REQUEST_TIMEOUT + CALL_SLACK,
        "a call took {:?}",
        log.slowest
    );
    assert!(
        log.errors
            .iter()
            .all(|(k, _)| matches!(k, ErrorKind::Unavailable | ErrorKind::Timeout))
    );
    assert!(
        log.errors.len() * 10 <= log.ok,
        "too many failed calls: {:?}",
        log.errors
    );
    assert_eq!(
        owner.stats().lease_regrants,
        0,
        "the owner's lease was lost"
    );

    let raw = Raw::connect(&live_endpoints(&cluster));
    let expected = expected_events(&ns, &history(&raw, &ns, start));
    check_against_reference("leader kill: subscriber", &col.events(), &expected);
    assert!(expected.iter().all(|k| k.0 == EventKind::Registered));
}

// ---------------------------------------------------------------------------
// 2. One member of a healthy cluster blackholed.
// ---------------------------------------------------------------------------

#[test]
fn a_blackholed_member_is_left_within_half_a_ttl_and_nothing_is_lost() {
    let _g = serial();
    let cluster = Cluster::start(3);
    let ns = namespace("blackhole-member");
    let start = cluster.raw().revision();
    let proxies: Vec<Proxy> = cluster
        .endpoints()
        .iter()
        .map(|e| Proxy::start(e))
        .collect();
    let via: Vec<String> = proxies.iter().map(Proxy::endpoint).collect();
    let client = connect(&via, &ns, TTL);
    let other = connect(&cluster.endpoints(), &ns, TTL);
    let col = Collector::start(&client);
    let mine = register(&client, &Service::new("svc", "mine"), ttl());
    assert!(col.wait_for(EventKind::Registered, &mine, Duration::from_secs(5)));

    // Make the keepalive and watch streams live on member 0: break the
    // paths to the other two until both streams work again, then heal them.
    proxies[1].cut();
    proxies[2].cut();
    let marker = register(&other, &Service::new("svc", "marker"), ttl());
    assert!(col.wait_for(EventKind::Registered, &marker, Duration::from_secs(10)));
    let k = client.stats().keepalives_sent;
    assert!(wait_until(ttl() * 2, || client.stats().keepalives_sent >= k + 2));
    proxies[1].heal();
    proxies[2].heal();
    // Let the client put them back in rotation.
    std::thread::sleep(Duration::from_millis(800));
    let sampler = KeepaliveSampler::start(&client);
    let observer = Poller::start(&other, std::slice::from_ref(&mine));
    let own_calls = Poller::start(&client, std::slice::from_ref(&mine));
    std::thread::sleep(Duration::from_millis(700));

    let before = client.stats();
    proxies[0].blackhole();
    let t0 = Instant::now();
    let during = register(&other, &Service::new("svc", "during"), ttl());
    assert!(
        col.wait_for(EventKind::Registered, &during, ttl() * 3),
        "the subscription did not resume while member 0 was blackholed"
    );
    let watch_moved = col.arrival(EventKind::Registered, &during).unwrap() - t0;
    std::thread::sleep((ttl() * 3).saturating_sub(t0.elapsed()));
    let t1 = Instant::now();
    proxies[0].heal();
    let observed = observer.finish();
    let own = own_calls.finish();
    let keepalive_moved = sampler.first_after(t0).map(|t| t - t0);
    // The move itself: from the keepalive found unanswered to the next one
    // answered by another member.
    let switch = sampler
        .first_failure_after(t0)
        .and_then(|f| sampler.first_after(f).map(|t| t - f));
    let max_gap = sampler.max_gap_between(t0, t1);
    let after = client.stats();
    println!(
        "blackholed member: keepalive moved after {keepalive_moved:?} (switch after the unanswered keepalive {switch:?}, max gap between keepalives {max_gap:?}), subscription resumed after {watch_moved:?}; keepalive failures {}; observer is_up ok {} false DOWN {} errors {}; the client's own is_up ok {} false DOWN {} errors {} slowest {:?}",
        after.keepalives_failed - before.keepalives_failed,
        observed.ok,
        observed.false_down,
        observed.errors.len(),
        own.ok,
        own.false_down,
        own.errors.len(),
        own.slowest,
    );
    let keepalive_moved = keepalive_moved.expect("no keepalive after the blackhole");
    assert!(
        keepalive_moved <= ttl() / 2 + Duration::from_millis(250),
        "keepalives took {keepalive_moved:?} to move off the blackholed member"
    );
    assert!(
        after.keepalives_failed > before.keepalives_failed,
        "keepalive was not on member 0"
    );
    assert_eq!(after.lease_regrants, 0, "the lease was lost");
    assert_eq!(
        observed.false_down, 0,
        "another client saw the service DOWN"
    );
    assert_eq!(own.false_down, 0);
    assert!(own.slowest <= REQUEST_TIMEOUT + CALL_SLACK);

    let after_heal = register(&other, &Service::new("svc", "after"), ttl());
    assert!(col.wait_for(EventKind::Registered, &after_heal, Duration::from_secs(5)));
    let raw = cluster.raw();
    let expected = expected_events(&ns, &history(&raw, &ns, start));
    check_against_reference("blackholed member: subscriber", &col.events(), &expected);
}

// ---------------------------------------------------------------------------
// 3. The only endpoint blackholed for 3 TTLs.
// ---------------------------------------------------------------------------

#[test]
fn a_blackholed_single_endpoint_goes_down_then_re_registers_exactly_once() {
    let _g = serial();
    let etcd = Etcd::start();
    let ns = namespace("blackhole-single");
    let raw = etcd.raw();
    let start = raw.revision();
    let proxy = Proxy::start(&etcd.endpoint());
    let client = connect(&[proxy.endpoint()], &ns, TTL);
    let observer = connect(&etcd.endpoints(), &ns, TTL);
    let mine_col = Collector::start(&client);
    let obs_col = Collector::start(&observer);
    let uuid = register(&client, &Service::new("svc", "cut-off"), ttl());
    assert!(obs_col.wait_for(EventKind::Registered, &uuid, Duration::from_secs(5)));
    assert!(mine_col.wait_for(EventKind::Registered, &uuid, Duration::from_secs(5)));

    proxy.blackhole();
    let t0 = Instant::now();
    assert!(
        obs_col.wait_for(EventKind::Down, &uuid, ttl() + Duration::from_secs(3)),
        "others did not see the cut-off service DOWN"
    );
    let down_after = obs_col.arrival(EventKind::Down, &uuid).unwrap() - t0;
    assert!(!observer.is_up(&uuid).unwrap());
    std::thread::sleep((ttl() * 3).saturating_sub(t0.elapsed()));
    proxy.heal();
    let healed = Instant::now();
    assert!(
        obs_col.wait_for(EventKind::Up, &uuid, Duration::from_secs(10)),
        "the service did not come back UP"
    );
    let up_after = obs_col.arrival(EventKind::Up, &uuid).unwrap() - healed;
    assert!(mine_col.wait_for(EventKind::Up, &uuid, Duration::from_secs(10)));
    // Give a second re-grant every chance to (wrongly) happen.
    std::thread::sleep(ttl() + Duration::from_millis(500));
    let stats = client.stats();
    println!(
        "blackholed single endpoint: others saw DOWN {down_after:?} after the cut, UP {up_after:?} after the heal; client stats {stats:?}"
    );
    assert_eq!(
        stats.lease_regrants, 1,
        "re-registered {} times",
        stats.lease_regrants
    );
    assert_eq!(stats.up_keys_restored, 1);
    assert!(observer.is_up(&uuid).unwrap());
    for (who, col) in [("cut-off client", &mine_col), ("observer", &obs_col)] {
        assert_eq!(col.count(EventKind::Down, &uuid), 1, "{who}");
        assert_eq!(col.count(EventKind::Up, &uuid), 1, "{who}");
        let downs: Vec<Event> = col
            .events()
            .into_iter()
            .filter(|e| e.kind == EventKind::Down)
            .collect();
        assert_eq!(downs[0].reason, Some(DownReason::Expired), "{who}");
    }
    let expected = expected_events(&ns, &history(&raw, &ns, start));
    // The observer's own lease is alive throughout; only `uuid` flips.
    check_against_reference(
        "single endpoint: cut-off client",
        &mine_col.events(),
        &expected,
    );
    check_against_reference("single endpoint: observer", &obs_col.events(), &expected);
}

// ---------------------------------------------------------------------------
// 5. Quorum lost.
// ---------------------------------------------------------------------------

#[test]
fn without_quorum_calls_fail_fast_and_everything_recovers_by_itself() {
    let _g = serial();
    let mut cluster = Cluster::start(3);
    let ns = namespace("quorum");
    let start = cluster.raw().revision();
    let eps = cluster.endpoints();
    let owner = connect(&eps, &ns, TTL);
    let reader = connect(&eps, &ns, TTL);
    let col = Collector::start(&reader);
    let uuid = register(&owner, &Service::new("svc", "keeps"), ttl());
    assert!(col.wait_for(EventKind::Registered, &uuid, Duration::from_secs(5)));

    let leader = cluster.leader_index().expect("leader");
    let victims: Vec<usize> = vec![leader, (leader + 1) % 3];
    for &v in &victims {
        cluster.member(v).kill();
    }
    let lost = Instant::now();
    let mut kinds: HashMap<String, usize> = HashMap::new();
    let mut slowest = Duration::ZERO;
    let mut calls = 0;
    while lost.elapsed() < ttl() * 2 {
        let t = Instant::now();
        let r1 = reader.is_up(&uuid).map(|_| ());
        slowest = slowest.max(t.elapsed());
        let t = Instant::now();
        let r2 = owner
            .update(&Service::new("svc", &format!("during-{calls}")))
            .map(|_| ());
        slowest = slowest.max(t.elapsed());
        for r in [r1, r2] {
            calls += 1;
            let k = match r {
                Ok(()) => "ok".to_string(),
                Err(e) => {
                    assert!(e.is_transient(), "not transient: {e}");
                    format!("{:?}", e.kind())
                }
            };
            *kinds.entry(k).or_default() += 1;
        }
    }
    println!("quorum lost: {calls} calls, outcomes {kinds:?}, slowest {slowest:?}");
    assert!(
        slowest <= REQUEST_TIMEOUT + CALL_SLACK,
        "a call hung: {slowest:?}"
    );

    cluster.member(victims[0]).start_again_nowait();
    cluster.member(victims[1]).start_again();
    assert!(cluster.wait_leader(Duration::from_secs(10)).is_some());
    let back = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || reader
            .is_up(&uuid)
            .unwrap_or(false)),
        "the registration did not recover"
    );
    let after = register(
        &owner,
        &Service::new("svc", "after"),
        Duration::from_secs(10),
    );
    assert!(
        col.wait_for(EventKind::Registered, &after, Duration::from_secs(10)),
        "the subscription did not recover"
    );
    println!(
        "quorum back: recovered in {:?}; owner stats {:?}",
        back.elapsed(),
        owner.stats()
    );
    // Wait out a TTL: the registration must stay UP by itself.
    std::thread::sleep(ttl() + Duration::from_millis(500));
    assert!(reader.is_up(&uuid).unwrap());
    assert!(reader.is_up(&after).unwrap());
    let raw = cluster.raw();
    let expected = expected_events(&ns, &history(&raw, &ns, start));
    check_against_reference("quorum: subscriber", &col.events(), &expected);
}

// ---------------------------------------------------------------------------
// 6. A single etcd frozen for longer than the TTL.
// ---------------------------------------------------------------------------

#[test]
fn a_frozen_etcd_expires_every_lease_and_each_client_re_registers_once() {
    let _g = serial();
    let etcd = Etcd::start();
    let ns = namespace("frozen");
    let raw = etcd.raw();
    let start = raw.revision();
    let clients: Vec<Client> = (0..3)
        .map(|_| connect(&etcd.endpoints(), &ns, TTL))
        .collect();
    let observer = connect(&etcd.endpoints(), &ns, TTL);
    let col = Collector::start(&observer);
    let uuids: Vec<String> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| register(c, &Service::new("svc", &format!("h{i}")), ttl()))
        .collect();
    for u in &uuids {
        assert!(col.wait_for(EventKind::Registered, u, Duration::from_secs(5)));
    }
    let leases: Vec<i64> = clients.iter().map(|c| c.stats().lease_id).collect();

    etcd.pause();
    std::thread::sleep(ttl() * 2 + Duration::from_millis(500));
    etcd.resume();
    let resumed = Instant::now();
    for (i, c) in clients.iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(10), || c.stats().lease_regrants >= 1),
            "client {i} did not re-grant"
        );
    }
    for u in &uuids {
        assert!(
            col.wait_for(EventKind::Up, u, Duration::from_secs(10)),
            "{u} not UP again"
        );
    }
    println!(
        "frozen etcd: all services UP again {:?} after resume",
        resumed.elapsed()
    );
    std::thread::sleep(ttl() + Duration::from_millis(500));
    for (i, c) in clients.iter().enumerate() {
        let s = c.stats();
        assert_eq!(s.lease_regrants, 1, "client {i}: {s:?}");
        assert_eq!(s.up_keys_restored, 1, "client {i}: {s:?}");
        assert_ne!(s.lease_id, leases[i]);
        assert_eq!(raw.lease_ttl(leases[i]), -1, "old lease {i} still alive");
        assert!(observer.is_up(&uuids[i]).unwrap());
    }
    for u in &uuids {
        assert_eq!(col.count(EventKind::Down, u), 1);
        assert_eq!(col.count(EventKind::Up, u), 1);
    }
    let expected = expected_events(&ns, &history(&raw, &ns, start));
    check_against_reference("frozen etcd: observer", &col.events(), &expected);
}

// ---------------------------------------------------------------------------
// 7. Leader killed while a registering process is already dead.
// ---------------------------------------------------------------------------

#[test]
fn down_after_a_leader_kill_arrives_within_two_ttls_plus_an_election() {
    let _g = serial();
    let mut cluster = Cluster::start(3);
    let ns = namespace("dead-then-leader");
    let start = cluster.raw().revision();
    let eps = cluster.endpoints();
    let observer = connect(&eps, &ns, TTL);
    let col = Collector::start(&observer);
    let mut child = Registrant::start(&eps, &ns, TTL, &["--type", "t", "--host", "h"]);
    assert!(col.wait_for(EventKind::Registered, &child.uuid, Duration::from_secs(5)));
    // Let a keepalive land so the lease is near its full TTL.
    std::thread::sleep(Duration::from_millis(700));

    child.kill();
    let t0 = Instant::now();
    let leader = cluster.leader_index().expect("leader");
    cluster.member(leader).kill();
    let worst = ttl() * 2 + Duration::from_millis(500);
    assert!(
        col.wait_for(EventKind::Down, &child.uuid, worst + Duration::from_secs(3)),
        "no DOWN within {:?}",
        worst + Duration::from_secs(3)
    );
    let latency = col.arrival(EventKind::Down, &child.uuid).unwrap() - t0;
    println!(
        "leader kill with a dead registrant: DOWN after {latency:?} (TTL {TTL} s; documented worst case 2 x TTL + election timeout = {worst:?})"
    );
    // Allow the lessor's 500 ms check and the watch hop on top.
    assert!(latency <= worst + Duration::from_secs(1), "{latency:?}");
    let e = col
        .events()
        .into_iter()
        .find(|e| e.kind == EventKind::Down)
        .unwrap();
    assert_eq!(e.reason, Some(DownReason::Expired));
    let raw = Raw::connect(&live_endpoints(&cluster));
    let expected = expected_events(&ns, &history(&raw, &ns, start));
    check_against_reference(
        "leader kill, dead registrant: observer",
        &col.events(),
        &expected,
    );
}

// ---------------------------------------------------------------------------
// 8. Connections dropped in the middle of registrations.
// ---------------------------------------------------------------------------

#[test]
fn registrations_retried_through_dropped_connections_are_idempotent() {
    let _g = serial();
    let etcd = Etcd::start();
    let ns = namespace("drops");
    let raw = etcd.raw();
    let start = raw.revision();
    let proxy = Arc::new(Proxy::start(&etcd.endpoint()));
    let client = connect(&[proxy.endpoint()], &ns, TTL);
    let observer = connect(&etcd.endpoints(), &ns, TTL);
    let col = Collector::start(&observer);

    // Slow the path so a drop often lands between a request reaching etcd
    // and its answer reaching the client (the write committed, the client
    // does not know).
    proxy.delay(Duration::from_millis(5));
    let stop = Arc::new(AtomicBool::new(false));
    let dropper = {
        let (p, s) = (proxy.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            let mut drops = 0;
            while !s.load(Ordering::SeqCst) {
                // 30..130 ms apart: often in the middle of a transaction,
                // yet leaving a retry room to get through.
                std::thread::sleep(Duration::from_millis(30 + (n * 37) % 100));
                p.drop_connections();
                drops += 1;
                n += 1;
            }
            drops
        })
    };
    let mut uuids = Vec::new();
    let mut failures = 0;
    for i in 0..20 {
        let uuid = uuid::Uuid::new_v4().simple().to_string();
        let svc = Service::new("reg", &format!("h{i}")).with_uuid(&uuid);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match client.update(&svc) {
                Ok(u) => {
                    assert_eq!(u, uuid);
                    break;
                }
                Err(e) if e.is_transient() && Instant::now() < deadline => failures += 1,
                Err(e) => panic!("registration {i} failed for good: {e}"),
            }
        }
        uuids.push(uuid);
    }
    stop.store(true, Ordering::SeqCst);
    let drops = dropper.join().unwrap();
    proxy.heal();
    // Past the TTL, keys bound to any lease other than the live one are gone.
    std::thread::sleep(ttl() + Duration::from_millis(1000));
    let stats = client.stats();
    println!(
        "dropped connections: {drops} drops, {failures} failed attempts retried, client stats {stats:?}"
    );
    let lease = stats.lease_id;
    for u in &uuids {
        assert!(observer.is_up(u).unwrap(), "{u} not UP");
        let up = raw
            .get(&format!("{ns}/services/by-status/UP/{u}"))
            .expect("UP key");
        assert_eq!(up.lease, lease, "UP key of {u} on an old lease");
        let rec = raw.get(&format!("{ns}/services/by-uuid/{u}")).unwrap();
        assert_eq!(rec.version, 1, "record of {u} written more than once");
        assert_eq!(col.count(EventKind::Registered, u), 1);
    }
    let up_keys = raw.keys(&format!("{ns}/services/by-status/UP/"));
    assert_eq!(up_keys.len(), uuids.len(), "{up_keys:?}");
    assert_eq!(
        raw.keys(&format!("{ns}/services/by-uuid/")).len(),
        uuids.len()
    );
    let expected = expected_events(&ns, &history(&raw, &ns, start));
    assert_eq!(
        expected.len(),
        uuids.len(),
        "more than one UP per registration: {expected:?}"
    );
    check_against_reference("dropped connections: observer", &col.events(), &expected);
}

// ---------------------------------------------------------------------------
// 9. Many clients reconnecting after an outage spread their retries.
// ---------------------------------------------------------------------------

#[test]
fn two_hundred_clients_spread_their_reconnects_after_an_outage() {
    let _g = serial();
    let mut etcd = Etcd::start();
    let ns = namespace("stampede");
    const N: usize = 200;
    // Each registers a service: a client that registered nothing holds no
    // lease and sends no keepalives.
    let (clients, uuids): (Vec<Client>, Vec<String>) = (0..N)
        .map(|i| {
            let c = connect(&etcd.endpoints(), &ns, TTL);
            let u = c
                .update(&Service::new("stampede", &format!("h{i}")))
                .unwrap();
            (c, u)
        })
        .unzip();
    etcd.kill();
    // Long enough for every client to have failed a few times and backed
    // off to its cap; short enough for the leases to survive.
    std::thread::sleep(Duration::from_millis(1500));
    let clients = Arc::new(clients);
    let before: Vec<u64> = clients.iter().map(|c| c.stats().keepalives_sent).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (clients, stop) = (clients.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut first: Vec<Option<Instant>> = vec![None; N];
            while !stop.load(Ordering::SeqCst) && first.iter().any(Option::is_none) {
                for (i, c) in clients.iter().enumerate() {
                    if first[i].is_none() && c.stats().keepalives_sent > before[i] {
                        first[i] = Some(Instant::now());
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            first
        })
    };
    let spawned = Instant::now();
    etcd.start_again();
    let healthy = spawned.elapsed();
    std::thread::sleep(ttl() * 2);
    stop.store(true, Ordering::SeqCst);
    let first = sampler.join().unwrap();
    let back = first.iter().flatten().count();
    let mut times: Vec<Duration> = first.iter().flatten().map(|t| *t - spawned).collect();
    times.sort();
    assert!(!times.is_empty(), "no client reconnected");
    let pct = |p: usize| times[(times.len() - 1) * p / 100];
    println!(
        "reconnect spread of {N} clients after an outage: {back} back; etcd healthy {healthy:?} after its restart; first keepalive after the restart: min {:?}, p10 {:?}, p50 {:?}, p90 {:?}, max {:?} (spread {:?}, p10-p90 {:?})",
        pct(0),
        pct(10),
        pct(50),
        pct(90),
        pct(100),
        pct(100) - pct(0),
        pct(90) - pct(10)
    );
    assert_eq!(
        back, N,
        "only {back} of {N} clients reconnected within 2 TTLs"
    );
    assert!(
        pct(90) - pct(10) >= Duration::from_millis(100),
        "reconnects bunched together: p10 {:?} p90 {:?}",
        pct(10),
        pct(90)
    );
    let regrants: Vec<u64> = clients.iter().map(|c| c.stats().lease_regrants).collect();
    println!("stampede: lease re-grants {}", regrants.iter().sum::<u64>());
    // etcd kept the leases (a restart renews them all), but the outage
    // (1.5 s and the restart) is about the TTL: a client whose full TTL
    // passed since its last answer judges its lease lost and may re-grant,
    // once. A second re-grant in one outage is a client granting leases it
    // does not keep.
    assert!(
        regrants.iter().all(|r| *r <= 1),
        "a client re-granted more than once in one outage: {regrants:?}"
    );
    // Re-granted or not, every service is UP in etcd (the oracle), its UP
    // key on its client's current lease.
    let snap = Snapshot::read(&etcd.raw(), &ns);
    for (c, u) in clients.iter().zip(&uuids) {
        let lease = c.stats().lease_id;
        assert!(snap.is_up(u), "{u} is not UP after the outage");
        assert_eq!(
            snap.up_leases.get(u),
            Some(&lease),
            "{u}: its UP key is not on its client's lease"
        );
    }
}

// ---------------------------------------------------------------------------
// 10. A member cut off from its peers, still reachable by clients.
// ---------------------------------------------------------------------------

/// A raw etcd watch on one member, from a given revision, recording when
/// each change arrived: the reference for what the majority saw, and when.
struct RefWatch {
    changes: Arc<Mutex<Vec<(Instant, RefChange)>>>,
    failure: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    ns: String,
}

impl RefWatch {
    fn start(endpoint: &str, ns: &str, from: i64) -> RefWatch {
        let raw = Raw::connect(&[endpoint.to_string()]);
        let changes: Arc<Mutex<Vec<(Instant, RefChange)>>> = Arc::default();
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (ch, fail, st) = (changes.clone(), failure.clone(), stop.clone());
        let prefix = format!("{ns}/");
        let thread = std::thread::spawn(move || {
            let mut client = raw.client();
            let result: Result<(), String> = raw.block_on(async move {
                let opts = etcd_client::WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(from);
                let mut stream = client
                    .watch(prefix, Some(opts))
                    .await
                    .map_err(|e| format!("reference watch: {e}"))?;
                while !st.load(Ordering::SeqCst) {
                    match tokio::time::timeout(Duration::from_millis(100), stream.message()).await {
                        Ok(Ok(Some(resp))) => {
                            let now = Instant::now();
                            if resp.compact_revision() != 0 || resp.canceled() {
                                return Err(format!("reference watch ended: {resp:?}"));
                            }
                            let mut ch = ch.lock().unwrap();
                            for e in resp.events() {
                                let Some(kv) = e.kv() else { continue };
                                ch.push((
                                    now,
                                    RefChange {
                                        revision: kv.mod_revision(),
                                        key: String::from_utf8_lossy(kv.key()).into_owned(),
                                        put: e.event_type() == etcd_client::EventType::Put,
                                        value: kv.value().to_vec(),
                                    },
                                ));
                            }
                        }
                        Ok(other) => return Err(format!("reference watch ended: {other:?}")),
                        Err(_) => {}
                    }
                }
                Ok(())
            });
            if let Err(e) = result {
                *fail.lock().unwrap() = Some(e);
            }
        });
        RefWatch {
            changes,
            failure,
            stop,
            thread: Some(thread),
            ns: ns.to_string(),
        }
    }

    fn changes(&self) -> Vec<RefChange> {
        self.changes
            .lock()
            .unwrap()
            .iter()
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// The first DOWN of `uuid` the reference saw: its revision, and when
    /// the reference received it.
    fn down(&self, uuid: &str) -> Option<(i64, Instant)> {
        if let Some(e) = self.failure.lock().unwrap().as_ref() {
            panic!("{e}");
        }
        let rev = expected_events(&self.ns, &self.changes())
            .into_iter()
            .find(|(k, u, _)| *k == EventKind::Down && u == uuid)?
            .2;
        let arrived = self
            .changes
            .lock()
            .unwrap()
            .iter()
            .find(|(_, c)| c.revision == rev)?
            .0;
        Some((rev, arrived))
    }

    fn wait_down(&self, uuid: &str, timeout: Duration) -> Option<(i64, Instant)> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.down(uuid);
            found.is_some()
        });
        found
    }
}

impl Drop for RefWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One liveness read made in the background.
#[derive(Debug, Clone)]
struct Read {
    /// Index into the sampler's uuids.
    which: usize,
    started: Instant,
    took: Duration,
    /// The view's revision just before the read (0 for a client read).
    revision: i64,
    outcome: Result<bool, (ErrorKind, String)>,
}

/// Reads the liveness of every uuid every `pause`, in the background, until
/// finished: `read(uuid)` returns the revision the answer is at least as
/// new as (0 if unknown) and the answer. Up to `in_flight` rounds of reads
/// run at once, each on its own thread, so reads keep starting on schedule
/// while some wait out a call stuck on an unresponsive member.
struct ReadSampler {
    log: Arc<Mutex<Vec<Read>>>,
    busy: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ReadSampler {
    fn start<F>(uuids: &[String], pause: Duration, in_flight: usize, read: F) -> ReadSampler
    where
        F: Fn(&str) -> (i64, Result<bool, (ErrorKind, String)>) + Send + Sync + 'static,
    {
        let log: Arc<Mutex<Vec<Read>>> = Arc::default();
        let busy = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, b, s) = (log.clone(), busy.clone(), stop.clone());
        let uuids: Arc<Vec<String>> = Arc::new(uuids.to_vec());
        let read = Arc::new(read);
        let round = move |l: &Mutex<Vec<Read>>, uuids: &[String], read: &F| {
            for (which, u) in uuids.iter().enumerate() {
                let started = Instant::now();
                let (revision, outcome) = read(u);
                let took = started.elapsed();
                l.lock().unwrap().push(Read {
                    which,
                    started,
                    took,
                    revision,
                    outcome,
                });
            }
        };
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if in_flight <= 1 {
                    round(&l, &uuids, &read);
                } else if b.load(Ordering::SeqCst) < in_flight {
                    b.fetch_add(1, Ordering::SeqCst);
                    let (l, b, uuids, read) = (l.clone(), b.clone(), uuids.clone(), read.clone());
                    std::thread::spawn(move || {
                        round(&l, &uuids, &read);
                        b.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                std::thread::sleep(pause);
            }
        });
        ReadSampler {
            log,
            busy,
            stop,
            thread: Some(thread),
        }
    }

    /// Reads made so far.
    fn reads(&self) -> Vec<Read> {
        self.log.lock().unwrap().clone()
    }

    /// Stops starting reads, waits for those under way, returns them all.
    fn finish(mut self) -> Vec<Read> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        assert!(
            wait_until(REQUEST_TIMEOUT * 2, || self.busy.load(Ordering::SeqCst)
                == 0),
            "reads still under way"
        );
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl Drop for ReadSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Makes `client`'s watch (and keepalive) streams live on member `x`: its
/// paths to the other members (`via[j]`, a proxy in front of member j's
/// client port) are cut until its subscription delivers a registration
/// made after the cut, then healed. Streams stay where they are once
/// opened, so the watch is left on `x`.
fn pin_streams(via: &[Proxy], x: usize, col: &Collector, writer: &Client, label: &str) {
    let log_from = warnings().len();
    for (j, p) in via.iter().enumerate() {
        if j != x {
            p.cut();
        }
    }
    let marker = register(writer, &Service::new("pin", label), ttl());
    assert!(
        col.wait_for(EventKind::Registered, &marker, ttl() * 3),
        "{label}: the subscription did not come back through member {x}"
    );
    let accepted: Vec<u64> = via.iter().map(Proxy::accepted).collect();
    for (j, p) in via.iter().enumerate() {
        if j != x {
            p.heal();
        }
    }
    // A client that took the healed members out of rotation probes them
    // until they are back: every TTL/10 at first, at doubling intervals up
    // to 32 times that, each drawn between half and one and a half of it
    // (src/steer.rs). So it puts each back within 48 × TTL/10 of the heal
    // plus a probe's timeout (TTL/6), and reconnects. One that never
    // noticed the cut (its streams already lived on `x`, no call went
    // through a cut path) has nothing to reconnect: it probes them on its
    // first sign of trouble, which is what the rest of the test measures.
    // The port and the space after it, so port 1234 never matches 12345.
    let addr = |p: &Proxy| format!("127.0.0.1:{} ", p.port());
    let avoided: Vec<usize> = (0..via.len())
        .filter(|j| *j != x && warnings().in_rotation(log_from, &addr(&via[*j])) == Some(false))
        .collect();
    let bound = ttl() * 48 / 10 + ttl() / 6 + Duration::from_secs(1);
    let back = wait_until(bound, || {
        avoided.iter().all(|j| {
            warnings().in_rotation(log_from, &addr(&via[*j])) == Some(true)
                && via[*j].accepted() > accepted[*j]
        })
    });
    println!(
        "{label}: members taken out of rotation during the cut: {avoided:?}; back within {bound:?}: {back}"
    );
    assert!(
        back,
        "{label}: members {avoided:?} were avoided and not back within {bound:?} of the heal"
    );
}

/// A member cut off from its peers (its peer traffic blackholed both ways)
/// stays reachable by clients, serving an old state with no leader. Client
/// A's watch is made to live on it; then, on the majority, a registrant is
/// killed (its service expires) and another service is forced DOWN. Twice,
/// once for each follower.
///
/// Asserted: A's subscription delivers both DOWNs within TTL + 3 s of the
/// cut, once each and in order (the final check against the reference
/// history); no `A.is_up` call started after the reference watch (on a
/// majority member) received a DOWN answers UP; A's view never answers UP
/// at a revision that includes the DOWN, nor after A's subscription
/// delivered it. The view may still answer from the state before the DOWN
/// until its watch leaves the cut-off member: that window is measured and
/// printed ("still at the pre-DOWN state ... for ..."), not asserted zero.
#[test]
fn a_member_cut_off_from_its_peers_is_left_and_no_read_reports_a_dead_service_up() {
    let _g = serial();
    let cluster = Cluster::start_with(
        3,
        EtcdOpts {
            peer_proxies: true,
            ..Default::default()
        },
    );
    let ns = namespace("peer-partition");
    let start = cluster.raw().revision();
    // Client A reaches member i through `via[i]`, so the test can make its
    // watch live on the member it is about to cut off.
    let via: Vec<Proxy> = cluster
        .endpoints()
        .iter()
        .map(|e| Proxy::start(e))
        .collect();
    let via_eps: Vec<String> = via.iter().map(Proxy::endpoint).collect();
    let a = connect(&via_eps, &ns, TTL);
    let a_col = Collector::start(&a);
    // A registers a service of its own, so it holds a lease: its keepalives
    // are what notice a cut path and steer it (a client that only reads
    // grants no lease and finds a cut path at its next call).
    let own = a
        .update(&Service::new("reader", "a"))
        .expect("register A's own service");
    assert!(a_col.wait_for(EventKind::Registered, &own, Duration::from_secs(5)));
    let view = a.view().expect("view");
    let mut forced_all = Vec::new();
    let mut expired_all = Vec::new();
    let mut isolated: Vec<usize> = Vec::new();

    // Each round cuts off a member that is not the leader, a different one
    // the second time.
    for round in 0..2 {
        let leader = cluster
            .wait_leader(Duration::from_secs(10))
            .expect("leader");
        let x = (0..3)
            .find(|i| *i != leader && !isolated.contains(i))
            .or_else(|| (0..3).find(|i| *i != leader))
            .unwrap();
        isolated.push(x);
        let majority: Vec<usize> = (0..3).filter(|i| *i != x).collect();
        let maj_eps: Vec<String> = majority
            .iter()
            .map(|i| cluster.member_ref(*i).endpoint())
            .collect();
        let label = format!("round {round} (member {x} cut off, leader {leader})");
        let reference = RefWatch::start(&maj_eps[0], &ns, start);
        let b = connect(&maj_eps, &ns, TTL);
        let host = format!("r{round}");
        let mut child =
            Registrant::start(&maj_eps, &ns, TTL, &["--type", "daemon", "--host", &host]);
        let expired = child.uuid.clone();
        let forced = register(&b, &Service::new("svc", &format!("forced-{round}")), ttl());
        for u in [&expired, &forced] {
            assert!(a_col.wait_for(EventKind::Registered, u, Duration::from_secs(5)));
        }
        pin_streams(&via, x, &a_col, &b, &format!("pin-{round}"));

        let uuids = vec![expired.clone(), forced.clone()];
        // A's calls: a round of reads every 20 ms, however long some take.
        let ac = a.clone();
        let client_reads = ReadSampler::start(&uuids, Duration::from_millis(20), 64, move |u| {
            (0, ac.is_up(u).map_err(|e| (e.kind(), e.to_string())))
        });
        let v = view.clone();
        let view_reads = ReadSampler::start(&uuids, Duration::from_millis(5), 1, move |u| {
            let rev = v.revision();
            (rev, v.is_up(u).map_err(|e| (e.kind(), e.to_string())))
        });
        // Both services read UP from A's calls and view before the cut.
        let saw_up = |s: &ReadSampler, which: usize| {
            s.reads()
                .iter()
                .any(|r| r.which == which && r.outcome == Ok(true))
        };
        assert!(
            wait_until(Duration::from_secs(5), || (0..2).all(|w| saw_up(
                &view_reads,
                w
            ) && saw_up(
                &client_reads,
                w
            ))),
            "{label}: not read UP before the cut"
        );
        let before_cut: Vec<Read> = client_reads
            .reads()
            .into_iter()
            .chain(view_reads.reads())
            .collect();
        assert!(
            before_cut.iter().all(|r| r.outcome != Ok(false)),
            "{label}: read DOWN before the cut: {before_cut:?}"
        );
        let errors_before_cut: Vec<&(ErrorKind, String)> = before_cut
            .iter()
            .filter_map(|r| r.outcome.as_ref().err())
            .collect();
        if !errors_before_cut.is_empty() {
            println!("peer partition {label}: failed reads before the cut: {errors_before_cut:?}");
        }

        cluster.isolate(x);
        let t0 = Instant::now();
        child.kill();
        let deadline = Instant::now() + REQUEST_TIMEOUT * 2;
        loop {
            match b.down(&forced, "maintenance", 0, 0) {
                Ok(()) => break,
                Err(e) if e.is_transient() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => panic!("{label}: forcing DOWN: {e}"),
            }
        }
        // The harness did cut it off: it loses its leader.
        assert!(
            wait_until(Duration::from_secs(3), || cluster
                .member_ref(x)
                .has_leader()
                == Some(false)),
            "{label}: member {x} still has a leader"
        );
        let leaderless = t0.elapsed();
        let bound = ttl() + Duration::from_secs(3);
        let mut downs = Vec::new();
        for (what, u) in [("expired", &expired), ("forced", &forced)] {
            let (rev, seen_ref) = reference
                .wait_down(u, bound.saturating_sub(t0.elapsed()))
                .unwrap_or_else(|| panic!("{label}: the majority never saw {what} DOWN"));
            assert!(
                a_col.wait_for(EventKind::Down, u, bound.saturating_sub(t0.elapsed())),
                "{label}: A did not see {what} DOWN within {bound:?} of the cut; A's stats {:?}",
                a.stats()
            );
            let seen_a = a_col.arrival(EventKind::Down, u).unwrap();
            downs.push((what, rev, seen_ref, seen_a));
        }
        // Keep watching the reads a while longer with the member still cut off.
        let last_down = downs.iter().map(|d| d.3).max().unwrap();
        std::thread::sleep(
            (last_down + Duration::from_secs(1)).saturating_duration_since(Instant::now()),
        );
        let cut_for = t0.elapsed();
        cluster.rejoin(x);
        let healed = Instant::now();
        assert!(
            wait_until(Duration::from_secs(10), || cluster
                .member_ref(x)
                .has_leader()
                == Some(true)),
            "{label}: member {x} did not rejoin"
        );
        let after = register(
            &b,
            &Service::new("svc", &format!("after-{round}")),
            Duration::from_secs(10),
        );
        assert!(
            a_col.wait_for(EventKind::Registered, &after, Duration::from_secs(10)),
            "{label}: A's subscription did not carry on after the heal"
        );
        // Everyone converges: A's view and calls, and the cut-off member.
        view.sync(Duration::from_secs(5)).expect("view sync");
        let on_x = connect(&[cluster.member_ref(x).endpoint()], &ns, TTL);
        assert!(
            wait_until(Duration::from_secs(10), || on_x
                .is_up(&after)
                .unwrap_or(false)),
            "{label}: member {x} did not catch up"
        );
        for u in [&expired, &forced] {
            assert!(!view.is_up(u).unwrap(), "{label}");
            assert!(!a.is_up(u).unwrap(), "{label}");
            assert!(!on_x.is_up(u).unwrap(), "{label}");
        }
        assert!(view.is_up(&after).unwrap() && a.is_up(&after).unwrap());
        let converged = healed.elapsed();
        let client_log = client_reads.finish();
        let view_log = view_reads.finish();

        // Judge every read against the reference.
        let mut report = Vec::new();
        for (which, (what, rev, seen_ref, seen_a)) in downs.iter().enumerate() {
            let mine = |log: &[Read]| -> Vec<Read> {
                log.iter().filter(|r| r.which == which).cloned().collect()
            };
            let (cl, vl) = (mine(&client_log), mine(&view_log));
            // A linearizable read started after the majority committed the
            // DOWN must not say UP.
            let false_up: Vec<&Read> = cl
                .iter()
                .filter(|r| r.started > *seen_ref && r.outcome == Ok(true))
                .collect();
            // The view never says UP at a revision that includes the DOWN,
            // nor once the subscription (same model) has delivered it.
            let contradicting: Vec<&Read> = vl
                .iter()
                .filter(|r| r.outcome == Ok(true) && (r.revision >= *rev || r.started > *seen_a))
                .collect();
            // Reads of the view still reflecting the state before the DOWN
            // (stale, not contradicting: its revision predates the DOWN).
            let stale: Vec<&Read> = vl
                .iter()
                .filter(|r| r.started > *seen_ref && r.outcome == Ok(true))
                .collect();
            let stale_for = stale
                .iter()
                .map(|r| r.started - *seen_ref)
                .max()
                .unwrap_or_default();
            if *what == "forced" {
                // The scenario did happen: A's watch was on the cut-off
                // member, so its view lagged the majority's forced DOWN
                // (one on a majority member follows within milliseconds).
                assert!(
                    vl.iter()
                        .any(|r| r.started > *seen_ref + Duration::from_millis(100)
                            && r.revision < *rev),
                    "{label}: A's watch was not on member {x} when it was cut off"
                );
            }
            let errors = cl.iter().filter(|r| r.outcome.is_err()).count();
            let mut messages: Vec<String> = cl
                .iter()
                .filter_map(|r| r.outcome.as_ref().err())
                .map(|(k, m)| format!("{k:?}: {m}"))
                .collect();
            messages.sort();
            messages.dedup();
            // Meanwhile A's own calls (linearizable reads) already said DOWN.
            let calls_down_before_view = cl
                .iter()
                .filter(|r| r.started > *seen_ref && r.started < *seen_a && r.outcome == Ok(false))
                .count();
            let slowest = cl.iter().map(|r| r.took).max().unwrap_or_default();
            report.push(format!(
                "{what}: majority DOWN {:?} after the cut, A's DOWN {:?} after the cut ({:?} after the majority); A.is_up {} reads, false UP {}, errors {errors} {messages:?}, slowest {slowest:?}, DOWN before A's view knew {calls_down_before_view}; view {} reads, contradicting {}, still at the pre-DOWN state {} for {stale_for:?} after the majority's DOWN",
                *seen_ref - t0,
                *seen_a - t0,
                seen_a.saturating_duration_since(*seen_ref),
                cl.len(),
                false_up.len(),
                vl.len(),
                contradicting.len(),
                stale.len(),
            ));
            assert!(
                false_up.is_empty(),
                "{label}: A.is_up said UP after the majority saw {what} DOWN: {false_up:?}"
            );
            assert!(
                contradicting.is_empty(),
                "{label}: A's view said UP at or after {what}'s DOWN: {contradicting:?}"
            );
            assert!(
                slowest <= REQUEST_TIMEOUT + CALL_SLACK,
                "{label}: an is_up call hung for {slowest:?}"
            );
            assert!(
                cl.iter().all(|r| matches!(
                    r.outcome,
                    Ok(_) | Err((ErrorKind::Unavailable | ErrorKind::Timeout, _))
                )),
                "{label}: unexpected errors"
            );
        }
        println!(
            "peer partition {label}: member {x} leaderless {leaderless:?} after the cut, cut off for {cut_for:?}, converged {converged:?} after the heal; A's stats {:?}\n  {}",
            a.stats(),
            report.join("\n  ")
        );
        let a_down = |u: &str| {
            a_col
                .events()
                .into_iter()
                .find(|e| e.kind == EventKind::Down && e.uuid == u)
        };
        assert_eq!(a_down(&expired).unwrap().reason, Some(DownReason::Expired));
        assert_eq!(a_down(&forced).unwrap().reason, Some(DownReason::Forced));
        // The live reference agrees with the history read afterwards.
        let hist = history(&cluster.raw(), &ns, start);
        let seen = reference.changes();
        assert_eq!(
            seen.iter()
                .map(|c| (c.revision, &c.key, c.put))
                .collect::<Vec<_>>(),
            hist[..seen.len()]
                .iter()
                .map(|c| (c.revision, &c.key, c.put))
                .collect::<Vec<_>>(),
            "{label}: the reference watch missed changes"
        );
        b.close().expect("close b");
        expired_all.push(expired);
        forced_all.push(forced);
    }

    // After both rounds: every event once, in order, none missing.
    let raw = cluster.raw();
    let expected = expected_events(&ns, &history(&raw, &ns, start));
    check_against_reference("peer partition: A", &a_col.events(), &expected);
    for u in expired_all.iter().chain(&forced_all) {
        assert_eq!(a_col.count(EventKind::Down, u), 1, "{u}");
    }
}

// ---------------------------------------------------------------------------
// Slow background work never delays the keepalive.
// ---------------------------------------------------------------------------

/// The heal (listing the lease's keys, then restoring the missing UP keys
/// in guarded transactions) is made slow: 600 UP keys deleted by hand, and
/// every chunk through the only path to etcd delayed, so restoring them
/// takes longer than the TTL. The keepalives must go on meanwhile (the
/// heal runs beside them, not between them): no keepalive gap near the TTL,
/// no lease lost, and a service whose UP key nobody touched never seen
/// DOWN. Before the fix the heal ran between two keepalives: the lease
/// expired and every service went DOWN.
#[test]
fn slow_heal_work_never_delays_a_keepalive() {
    const N: usize = 600;
    let _g = serial();
    let etcd = Etcd::start();
    let ns = namespace("slow-heal");
    let raw = etcd.raw();
    let proxy = Proxy::start(&etcd.endpoint());
    let client = connect(&[proxy.endpoint()], &ns, TTL);
    let observer = connect(&etcd.endpoints(), &ns, TTL);
    let sentinel = register(&client, &Service::new("svc", "sentinel"), ttl());
    let uuids: Vec<String> = (0..N)
        .map(|i| {
            client
                .update(&Service::new("bulk", &format!("h{i}")))
                .expect("register")
        })
        .collect();
    let col = Collector::start(&observer);
    assert!(observer.is_up(&sentinel).unwrap());
    // Let a heal find everything in place first.
    let k = client.stats().keepalives_sent;
    assert!(wait_until(ttl() * 2, || client.stats().keepalives_sent >= k + 2));

    let before = client.stats();
    let sampler = KeepaliveSampler::start(&client);
    let watcher = Poller::start(&observer, std::slice::from_ref(&sentinel));
    // Every chunk, each way, waits 50 ms: a round trip takes ~100 ms, well
    // within the keepalive's deadline (TTL/6), while restoring 600 keys
    // (10 batches of a read and a write) takes ~2 s.
    proxy.delay(Duration::from_millis(50));
    let t0 = Instant::now();
    // In a few transactions (etcd allows 128 operations in one), so the
    // keys are gone at once.
    let mut kv = raw.client().kv_client();
    for chunk in uuids.chunks(120) {
        let ops: Vec<etcd_client::TxnOp> = chunk
            .iter()
            .map(|u| etcd_client::TxnOp::delete(format!("{ns}/services/by-status/UP/{u}"), None))
            .collect();
        raw.block_on(kv.txn(etcd_client::Txn::new().and_then(ops)))
            .expect("deleting UP keys");
    }
    let restored = wait_until(Duration::from_secs(20), || {
        client.stats().up_keys_restored >= before.up_keys_restored + N as u64
    });
    let heal_took = t0.elapsed();
    // And a few keepalives past it.
    std::thread::sleep(ttl());
    let t1 = Instant::now();
    proxy.heal();
    let observed = watcher.finish();
    let after = client.stats();
    let max_gap = sampler.max_gap_between(t0, t1);
    println!(
        "slow heal: {N} UP keys restored in {heal_took:?}; max gap between keepalives {max_gap:?}; keepalives failed {}, lease re-grants {}; observer is_up ok {} false DOWN {} errors {}",
        after.keepalives_failed - before.keepalives_failed,
        after.lease_regrants - before.lease_regrants,
        observed.ok,
        observed.false_down,
        observed.errors.len(),
    );
    assert!(restored, "UP keys not restored: {after:?}");
    assert!(
        heal_took > ttl() / 2,
        "the heal was not slow ({heal_took:?}): the test proves nothing"
    );
    assert_eq!(
        after.lease_regrants, before.lease_regrants,
        "the lease was lost"
    );
    assert!(
        max_gap < ttl() * 3 / 4,
        "keepalives {max_gap:?} apart while the heal ran (TTL {TTL} s)"
    );
    assert_eq!(observed.false_down, 0, "the sentinel was seen DOWN");
    assert_eq!(col.count(EventKind::Down, &sentinel), 0);
    for u in uuids.iter().take(10) {
        assert!(observer.is_up(u).unwrap(), "{u} not UP again");
    }
}
