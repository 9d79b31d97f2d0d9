//! Under stress, slower but never false (issue 29, items 1, 2 and 5):
//!
//! * through etcd's gRPC proxy, each member of the cluster paused for half
//!   the TTL in turn: no live service seen DOWN by any watcher, no lease
//!   re-granted, and every watcher sees the same events;
//! * etcd answering 2 s late: no false DOWN, and what each client costs
//!   etcd a minute (counted by etcd's own `/metrics`) stays within 1.2× of
//!   its calm cost: late answers bring no reconnections, retries or probe
//!   rounds that feed on themselves.
//!
//! "False DOWN" is judged against etcd's own history, read raw: every
//! daemon lives throughout, so any deletion of a UP key, and any `down`
//! event, is false.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::metrics::Grpc;
use common::*;
use os_lively::{Client, Event, EventKind, Filter, Service, SubscribeOptions};

/// A subscription's events, collected on a thread of their own.
struct Watcher {
    events: Arc<Mutex<Vec<Event>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    client: Client,
}

impl Watcher {
    fn start(endpoints: &[String], ns: &str, ttl: u64) -> Watcher {
        let client = connect(endpoints, ns, ttl);
        let sub = client
            .subscribe(&Filter::all(), &SubscribeOptions::default())
            .expect("subscribe");
        let events: Arc<Mutex<Vec<Event>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (e, s) = (events.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                if let Ok(Some(ev)) = sub.recv_timeout(Duration::from_millis(100)) {
                    e.lock().unwrap().push(ev);
                }
            }
        });
        Watcher {
            events,
            stop,
            thread: Some(thread),
            client,
        }
    }

    fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    fn saw(&self, kind: EventKind, uuid: &str) -> bool {
        self.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.kind == kind && e.uuid == uuid)
    }

    /// (kind, uuid, revision) of every event from revision `from` on.
    fn sequence(&self, from: i64) -> Vec<(EventKind, String, i64)> {
        self.events()
            .into_iter()
            .filter(|e| e.revision >= from)
            .map(|e| (e.kind, e.uuid, e.revision))
            .collect()
    }

    fn downs(&self) -> Vec<Event> {
        self.events()
            .into_iter()
            .filter(|e| e.kind == EventKind::Down)
            .collect()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The UP keys of `ns` etcd deleted from revision `from` to now (a lease
/// that expired deletes its keys), read with a raw watch straight from
/// etcd.
fn up_keys_deleted(raw: &Raw, ns: &str, from: i64) -> Vec<String> {
    let until = raw.revision();
    let mut client = raw.client();
    let prefix = format!("{ns}/services/by-status/UP/");
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
        let mut deleted = Vec::new();
        let mut seen = 0usize;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "reference watch did not catch up"
            );
            match tokio::time::timeout(Duration::from_millis(500), stream.message()).await {
                // The creation's answer carries the current revision
                // before any of the history: not a sign of catching up.
                Ok(Ok(Some(resp))) if resp.created() => {}
                Ok(Ok(Some(resp))) => {
                    assert_eq!(resp.compact_revision(), 0, "history was compacted");
                    seen += resp.events().len();
                    for e in resp.events() {
                        if e.event_type() == etcd_client::EventType::Delete {
                            let kv = e.kv().expect("kv");
                            deleted.push(String::from_utf8_lossy(kv.key()).into_owned());
                        }
                    }
                    if resp.header().is_some_and(|h| h.revision() >= until) {
                        eprintln!("reference: {seen} UP-key events from {from} to {until}");
                        return deleted;
                    }
                }
                Ok(other) => panic!("reference watch ended: {other:?}"),
                // Quiet: the history is in (etcd sends it at once). etcd
                // answers a progress request at once with its current
                // revision, caught up or not, so it is asked only now.
                Err(_) => {
                    let _ = stream.request_progress().await;
                }
            }
        }
    })
}

/// Registers one service per client and waits until every watcher saw
/// each registered.
fn register_all(daemons: &[Client], watchers: &[Watcher], within: Duration) -> Vec<String> {
    let uuids: Vec<String> = daemons
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.update(&Service::new("stress", &format!("h{i}")))
                .expect("register")
        })
        .collect();
    for (w, watcher) in watchers.iter().enumerate() {
        assert!(
            wait_until(within, || uuids
                .iter()
                .all(|u| watcher.saw(EventKind::Registered, u))),
            "watcher {w} did not see every registration"
        );
    }
    uuids
}

/// A change every watcher must see: written by `writer`, then awaited.
fn marker(writer: &Client, watchers: &[Watcher], name: &str, within: Duration) -> String {
    let uuid = writer
        .update(&Service::new("marker", name))
        .expect("marker");
    for (w, watcher) in watchers.iter().enumerate() {
        assert!(
            wait_until(within, || watcher.saw(EventKind::Registered, &uuid)),
            "watcher {w} did not see marker {name}"
        );
    }
    uuid
}

#[test]
fn each_member_paused_for_half_the_ttl_behind_the_grpc_proxy_makes_no_false_down() {
    const DAEMONS: usize = 8;
    const WATCHERS: usize = 3;
    // OSLIVELY_STRESS_TTL and OSLIVELY_STRESS_PAUSE_MS explore other
    // margins (the run was TTL 4, 3 s pauses: see docs/operators.md
    // for why that is the proxy's limit).
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let ttl_secs = env("OSLIVELY_STRESS_TTL").unwrap_or(6);
    let pause = Duration::from_millis(env("OSLIVELY_STRESS_PAUSE_MS").unwrap_or(ttl_secs * 500));
    let t0 = Instant::now();
    let cluster = Cluster::start(3);
    cluster
        .wait_leader(Duration::from_secs(10))
        .expect("a leader");
    let proxy = GrpcProxy::start(&cluster.endpoints());
    let via = vec![proxy.endpoint()];
    let ns = namespace("stress-pause");
    let raw = cluster.raw();
    let watchers: Vec<Watcher> = (0..WATCHERS)
        .map(|_| Watcher::start(&via, &ns, ttl_secs))
        .collect();
    let daemons: Vec<Client> = (0..DAEMONS).map(|_| connect(&via, &ns, ttl_secs)).collect();
    let uuids = register_all(&daemons, &watchers, Duration::from_secs(15));
    // Every daemon past its first keep-alives through the proxy.
    for d in &daemons {
        let k = d.stats().keepalives_sent;
        assert!(
            wait_until(Duration::from_secs(3 * ttl_secs), || d
                .stats()
                .keepalives_sent
                > k),
            "a daemon's keep-alive never came back through the proxy: {:?}",
            d.stats()
        );
    }
    let start = raw.revision() + 1;
    let before: Vec<_> = daemons.iter().map(|d| d.stats()).collect();

    for i in 0..cluster.len() {
        let m = cluster.member_ref(i);
        m.pause();
        std::thread::sleep(pause);
        m.resume();
        // Back in the cluster (a leader again, wherever it is) before the
        // next member pauses: one member out at a time, quorum intact.
        assert!(
            wait_until(Duration::from_secs(10), || m.has_leader() == Some(true)),
            "member {i} did not rejoin after its pause"
        );
        // Everything the pause set in motion on the proxy's side comes
        // due within a TTL of the resume (its keep-alives of each lease
        // every TTL/3, its own deadline of a TTL).
        std::thread::sleep(Duration::from_secs(2));
    }
    // Whatever a pause could still cause shows within a TTL of the last
    // resume (the issue saw false DOWNs 7 s after a resume at TTL 4).
    std::thread::sleep(Duration::from_secs(ttl_secs + 1));
    let end = marker(&daemons[0], &watchers, "end", Duration::from_secs(15));

    let deleted = up_keys_deleted(&raw, &ns, start);
    let after: Vec<_> = daemons.iter().map(|d| d.stats()).collect();
    let regrants: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.lease_regrants - b.lease_regrants)
        .sum();
    let failed: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.keepalives_failed - b.keepalives_failed)
        .sum();
    let downs: Vec<usize> = watchers.iter().map(|w| w.downs().len()).collect();
    eprintln!(
        "{DAEMONS} daemons, {WATCHERS} watchers behind the gRPC proxy, each of 3 members paused {pause:?} at TTL {ttl_secs}: \
         UP keys deleted {}, DOWN events per watcher {downs:?}, lease re-grants {regrants}, keep-alive failures {failed}; {:?} in all",
        deleted.len(),
        t0.elapsed()
    );
    assert!(
        deleted.is_empty(),
        "live services' UP keys were deleted (their leases expired): {deleted:?}"
    );
    for (w, watcher) in watchers.iter().enumerate() {
        assert!(
            watcher.downs().is_empty(),
            "watcher {w} saw live services DOWN: {:?}",
            watcher.downs()
        );
    }
    assert_eq!(regrants, 0, "leases were re-granted: {after:?}");
    // The same sequence at every watcher, the marker's registration last.
    let first = watchers[0].sequence(start);
    assert!(
        first
            .iter()
            .any(|(k, u, _)| *k == EventKind::Registered && *u == end)
    );
    for (w, watcher) in watchers.iter().enumerate().skip(1) {
        assert_eq!(
            watcher.sequence(start),
            first,
            "watcher {w} saw other events than watcher 0"
        );
    }
    for u in &uuids {
        assert!(watchers[0].client.is_up(u).expect("is_up"), "{u} is not UP");
    }
}

#[test]
fn etcd_answering_two_seconds_late_costs_no_more_calls_and_makes_no_false_down() {
    const TTL: u64 = 10;
    const DAEMONS: usize = 8;
    let late = Duration::from_secs(2);
    // A keep-alive every 3.33 s: each window is 8 of those periods, so each
    // daemon sends 8 in each (a window of a fractional number of periods
    // counts 7 or 8 by phase alone, and the daemons registered together
    // share their phase: up to 14% apart with no change at all).
    // The issue asks for 60 s of late answers; 4 s of onset and 27 s of
    // steady state keep the suite's time under 90 s and still show the
    // property: what fed on itself came back at every keep-alive (a
    // stream reopened for each late answer, a probe round for each), 8
    // times per daemon in the window.
    let window = Duration::from_millis(TTL * 1000 / 3 * 8);
    let t0 = Instant::now();
    let cluster = Cluster::start(3);
    cluster
        .wait_leader(Duration::from_secs(10))
        .expect("a leader");
    let proxies: Vec<Proxy> = cluster
        .endpoints()
        .iter()
        .map(|e| Proxy::start(e))
        .collect();
    let via: Vec<String> = proxies.iter().map(Proxy::endpoint).collect();
    let ns = namespace("stress-late");
    let raw = cluster.raw();
    // The watcher reads etcd directly: what is measured is the daemons'
    // cost through the late answers, and a watcher behind them would add
    // writes of its own (the watch's progress mark, issue 29 item 3) that
    // every daemon's UP-key check answers.
    let watchers = vec![Watcher::start(&cluster.endpoints(), &ns, TTL)];
    let daemons: Vec<Client> = (0..DAEMONS).map(|_| connect(&via, &ns, TTL)).collect();
    register_all(&daemons, &watchers, Duration::from_secs(15));
    // Settled: each daemon past the UP-key checks that follow its own and
    // the others' registrations.
    for d in &daemons {
        let k = d.stats().keepalives_sent;
        assert!(wait_until(Duration::from_secs(4 * TTL), || d
            .stats()
            .keepalives_sent
            > k));
    }
    let start = raw.revision() + 1;
    let before_stats: Vec<_> = daemons.iter().map(|d| d.stats()).collect();

    // Calm.
    let a = Grpc::of_all(cluster.members());
    std::thread::sleep(window);
    let calm = Grpc::of_all(cluster.members()).minus(&a);

    // Every answer 2 s late. The first late answers raise one suspicion per
    // client, and steering probes every member once (a Status each, found
    // slow, nothing changed): the onset, counted apart. What must not grow
    // is the steady rate: the window starts once the first late answers
    // are in.
    for p in &proxies {
        p.answer_late(late);
    }
    let onset_from = Grpc::of_all(cluster.members());
    std::thread::sleep(Duration::from_secs(4));
    let b = Grpc::of_all(cluster.members());
    let onset = b.minus(&onset_from);
    std::thread::sleep(window);
    let stressed = Grpc::of_all(cluster.members()).minus(&b);
    for p in &proxies {
        p.heal();
    }
    let end = marker(&daemons[0], &watchers, "end", Duration::from_secs(15));
    let deleted = up_keys_deleted(&raw, &ns, start);
    let after_stats: Vec<_> = daemons.iter().map(|d| d.stats()).collect();
    let regrants: u64 = after_stats
        .iter()
        .zip(&before_stats)
        .map(|(a, b)| a.lease_regrants - b.lease_regrants)
        .sum();
    let failed: u64 = after_stats
        .iter()
        .zip(&before_stats)
        .map(|(a, b)| a.keepalives_failed - b.keepalives_failed)
        .sum();
    // The daemons' calls: everything but the direct watcher's watch.
    let per_minute = |g: &Grpc| g.calls_except(&["Watch"]) as f64 * 60.0 / window.as_secs_f64();
    let (calm_d, late_d) = (per_minute(&calm), per_minute(&stressed));
    eprintln!(
        "{DAEMONS} daemons, TTL {TTL}, answers {late:?} late: {calm_d:.0} calls/min calm, {late_d:.0} late ({:.2}x); \
         onset {} calls ({onset}); keep-alive failures {failed}, re-grants {regrants}, UP keys deleted {}; {:?} in all\n  calm: {calm}\n  late: {stressed}",
        late_d / calm_d,
        onset.calls(),
        deleted.len(),
        t0.elapsed()
    );
    assert!(deleted.is_empty(), "UP keys deleted: {deleted:?}");
    assert!(
        watchers[0].downs().is_empty(),
        "the watcher saw live services DOWN: {:?}",
        watchers[0].downs()
    );
    assert!(watchers[0].saw(EventKind::Registered, &end));
    assert_eq!(regrants, 0, "leases were re-granted");
    assert_eq!(failed, 0, "late answers were taken for failures");
    assert!(
        late_d <= calm_d * 1.2,
        "the daemons cost etcd {late_d:.0} calls a minute while it answered {late:?} late, {calm_d:.0} calm ({stressed} vs {calm})"
    );
    // The onset: at most one probe round (a Status per member) per client.
    assert!(
        onset.handled("Status") <= 3 * DAEMONS as u64,
        "steering probed more than once per client as answers turned late: {onset}"
    );
}
