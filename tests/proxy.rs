//! The library through etcd's gRPC proxy (`etcd grpc-proxy`), the way a
//! large fleet runs it: the proxy is the clients' only endpoint.
//!
//! etcd 3.4's proxy answers a lease keepalive only when its own keepalive
//! of that lease comes back (every TTL/3, on a 500 ms tick), and drops
//! watch progress requests without a word; the library copes with both
//! (keepalives paced from the answer; a quiet watch checked by reading
//! etcd, never by writing). These
//! tests run every path through it: writes (transactions), reads, leases
//! (grant, keepalive, TimeToLive, revoke), the watch (events, quiet
//! streams, sync, compaction), heartbeats, maintenance, authentication,
//! and a small fleet through member restarts and a crash. One etcd
//! member where the test needs no more: the file runs in well under a
//! minute on two busy cores.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use os_lively::{
    Client, DownReason, Event, EventKind, Filter, Service, Status, SubscribeOptions, Subscription,
    View,
};

/// At least 4 s through the proxy: the proxy answers a keepalive up to
/// 500 ms (its tick) after it arrives, and the keepalive's deadline is a
/// sixth of the TTL.
const TTL: u64 = 4;

fn ttl() -> Duration {
    Duration::from_secs(TTL)
}

fn opts() -> SubscribeOptions {
    SubscribeOptions::default()
}

/// The next event about `uuid` (others skipped), or a panic naming it.
fn expect(sub: &Subscription, kind: EventKind, reason: Option<DownReason>, uuid: &str) -> Event {
    let e = next_about(sub, uuid, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no {kind:?} {reason:?} event for {uuid}"));
    assert_eq!((e.kind, e.reason), (kind, reason), "{e:?}");
    e
}

#[test]
fn registers_and_reads_through_the_grpc_proxy() {
    let cluster = Cluster::start(3);
    let proxy = GrpcProxy::start(&cluster.endpoints());
    let ns = namespace("grpcproxy");
    let client = connect(&[proxy.endpoint()], &ns, 5);
    let uuid = client.update(&Service::new("nova", "h1")).unwrap();
    assert!(client.is_up(&uuid).unwrap());
    assert!(proxy.metric("etcd_server_has_leader").is_some());
}

/// Every write and every kind of event through the proxy: transactions,
/// maintenance down and up, a missed heartbeat, an UP key deleted by hand
/// and restored by the owner's check (a TimeToLive with keys), and close
/// revoking the lease.
#[test]
fn every_write_and_event_through_the_proxy() {
    let cluster = Cluster::start(1);
    let proxy = GrpcProxy::start(&cluster.endpoints());
    let ns = namespace("proxypaths");
    let eps = [proxy.endpoint()];
    let owner = connect(&eps, &ns, TTL);
    let watcher = connect(&eps, &ns, TTL);
    let sub = watcher.subscribe(&Filter::all(), &opts()).unwrap();

    let uuid = owner.update(&Service::new("nova", "h1")).unwrap();
    expect(&sub, EventKind::Registered, None, &uuid);
    owner
        .update(
            &Service::new("nova", "h1")
                .with_region("r2")
                .with_uuid(&uuid),
        )
        .unwrap();
    let e = expect(&sub, EventKind::Updated, None, &uuid);
    assert_eq!(e.region, "r2");

    owner.down(&uuid, "disk swap", 0, 0).unwrap();
    expect(&sub, EventKind::Down, Some(DownReason::Forced), &uuid);
    assert!(!watcher.is_up(&uuid).unwrap());
    owner.up(&uuid).unwrap();
    expect(&sub, EventKind::Up, Some(DownReason::Lifted), &uuid);
    assert!(watcher.is_up(&uuid).unwrap());

    let d = Duration::from_millis(1500);
    let beat = owner
        .update(&Service::new("beat", "h1").with_heartbeat(d))
        .unwrap();
    expect(&sub, EventKind::Registered, None, &beat);
    let t = Instant::now();
    expect(&sub, EventKind::Down, Some(DownReason::Missed), &beat);
    assert!(t.elapsed() < d + DEADLINE_SLACK + Duration::from_secs(1));
    owner.heartbeat(&beat).unwrap();
    expect(&sub, EventKind::Up, None, &beat);

    // The owner's check lists its lease's keys (TimeToLive) and puts back
    // an UP key deleted by hand.
    let raw = cluster.raw();
    let before = owner.stats().up_keys_restored;
    raw.delete(&format!("{ns}/services/by-status/UP/{uuid}"));
    assert!(
        wait_until(ttl() * 3, || owner.stats().up_keys_restored > before),
        "UP key not restored: {:?}",
        owner.stats()
    );
    // Seen as a DOWN (the key is gone as if expired), then UP again.
    expect(&sub, EventKind::Down, Some(DownReason::Expired), &uuid);
    expect(&sub, EventKind::Up, None, &uuid);
    assert!(watcher.is_up(&uuid).unwrap());

    let stats = owner.stats();
    assert_eq!(stats.lease_regrants, 0, "{stats:?}");
    assert!(stats.keepalives_sent > 0, "{stats:?}");
    owner.close().unwrap();
    // Revoked: DOWN at once, not after the TTL.
    let t = Instant::now();
    loop {
        let e = next_about(&sub, &uuid, Duration::from_secs(5)).expect("closed");
        if e.kind == EventKind::Down {
            assert_eq!(e.reason, Some(DownReason::Closed), "{e:?}");
            break;
        }
    }
    assert!(t.elapsed() < ttl(), "DOWN after {:?}", t.elapsed());
    assert!(!watcher.is_up(&beat).unwrap());
    println!("through the proxy: owner {stats:?}");
}

/// etcd 3.4's proxy drops progress requests: a quiet watch is not declared
/// dead over and over, and a view's sync still reaches etcd's revision when
/// it moved outside the namespace, by reading etcd (nothing is written: no
/// progress mark).
#[test]
fn a_quiet_watch_through_the_proxy_stays_up_and_sync_works() {
    let cluster = Cluster::start(1);
    let proxy = GrpcProxy::start(&cluster.endpoints());
    let ns = namespace("proxyquiet");
    let eps = [proxy.endpoint()];
    let owner = connect(&eps, &ns, TTL);
    let uuid = owner.update(&Service::new("quiet", "h1")).unwrap();
    let watcher = connect(&eps, &ns, TTL);
    let view = watcher.view().unwrap();
    let raw = cluster.raw();

    // etcd's revision moves, the namespace's does not: only progress (or
    // a read of the namespace) tells the view it is current.
    raw.put("/elsewhere/k", b"1");
    let t = Instant::now();
    view.sync(Duration::from_secs(10)).expect("sync");
    let first_sync = t.elapsed();
    assert!(view.is_up(&uuid).unwrap());

    // Quiet periods (a quarter of the TTL) pass without the stream being
    // reopened.
    let settled = watcher.stats().reconnects;
    assert_eq!(settled, 0, "{:?}", watcher.stats());
    let t = Instant::now();
    let mut syncs = Vec::new();
    while t.elapsed() < ttl() {
        raw.put("/elsewhere/k", b"2");
        let s = Instant::now();
        view.sync(Duration::from_secs(5)).expect("sync");
        syncs.push(s.elapsed());
        assert!(view.is_connected());
        assert!(view.is_up(&uuid).unwrap());
        std::thread::sleep(Duration::from_millis(300));
    }
    // Readers never write: no progress mark (older versions wrote one).
    assert!(raw.get(&format!("{ns}/services/progress")).is_none());
    assert_eq!(
        watcher.stats().reconnects,
        settled,
        "the quiet watch was reopened: {:?}",
        watcher.stats()
    );
    assert_eq!(view.list(&Filter::all()).unwrap().len(), 1);
    println!(
        "quiet watch through the proxy: first sync {first_sync:?}, then {:?}; reconnects {settled}",
        syncs.iter().max()
    );
}

/// Behind the proxy no progress request can show a stream is alive: a
/// stream that stops hearing (made deaf by a test hook, as one whose
/// member stopped sending) while the namespace changes is found by reading
/// etcd and reopened, and the change reaches the subscriber and the view.
#[test]
fn a_silent_stream_behind_the_proxy_is_left_once_the_namespace_changes() {
    let cluster = Cluster::start(1);
    let proxy = GrpcProxy::start(&cluster.endpoints());
    let ns = namespace("proxysilent");
    let owner = connect(&cluster.endpoints(), &ns, TTL);
    let uuid = owner.update(&Service::new("silent", "h1")).unwrap();
    let watcher = connect(&[proxy.endpoint()], &ns, TTL);
    let sub = watcher.subscribe(&Filter::all(), &opts()).unwrap();
    let view = watcher.view().unwrap();
    assert!(wait_until(ttl(), || view.is_up(&uuid).unwrap_or(false)));
    // A quiet spell first: the quiet stream is not reopened.
    std::thread::sleep(ttl() / 2);
    assert_eq!(watcher.stats().reconnects, 0, "{:?}", watcher.stats());
    os_lively::deafen_watch(&ns);
    assert!(
        wait_until(ttl(), || !os_lively::deafen_pending()),
        "the watch never took the hook"
    );
    let t = Instant::now();
    owner.down(&uuid, "while the stream is deaf", 0, 0).unwrap();
    expect(&sub, EventKind::Down, Some(DownReason::Forced), &uuid);
    let took = t.elapsed();
    assert!(wait_until(ttl(), || matches!(view.is_up(&uuid), Ok(false))));
    assert_eq!(watcher.stats().reconnects, 1, "{:?}", watcher.stats());
    println!("a deaf stream behind the proxy: the change arrived after {took:?} (TTL {TTL} s)");
    // Within one check period (at most TTL/2) and a quiet period (TTL/4)
    // to wait for the stream, and the reopening.
    assert!(took < ttl() + Duration::from_secs(2), "{took:?}");
}

/// A watcher that comes back after the proxy was down while etcd compacted
/// past its revision re-lists and tells its subscribers the differences.
#[test]
fn compaction_while_the_proxy_is_down_resyncs_through_it() {
    let cluster = Cluster::start(1);
    let mut proxy = GrpcProxy::start(&cluster.endpoints());
    let ns = namespace("proxycompact");
    let watcher = connect(&[proxy.endpoint()], &ns, TTL);
    let direct = connect(&cluster.endpoints(), &ns, TTL);
    let kept = direct.update(&Service::new("kept", "h1")).unwrap();
    let gone = direct.update(&Service::new("gone", "h1")).unwrap();
    let view = watcher.view().unwrap();
    let sub = watcher.subscribe(&Filter::all(), &opts()).unwrap();
    assert!(wait_until(ttl(), || view.is_up(&gone).unwrap_or(false)));

    proxy.stop();
    direct
        .down(&gone, "gone while the proxy was down", 0, 0)
        .unwrap();
    let new = direct.update(&Service::new("new", "h1")).unwrap();
    let raw = cluster.raw();
    raw.compact(raw.revision());
    proxy.start_again();

    let mut seen: HashMap<String, Event> = HashMap::new();
    let deadline = Instant::now() + ttl() * 4;
    while seen.len() < 2 && Instant::now() < deadline {
        if let Some(e) = sub.recv_timeout(Duration::from_millis(200)).unwrap() {
            if e.kind != EventKind::Resync {
                seen.insert(e.uuid.clone(), e);
            }
        }
    }
    let down = seen
        .get(&gone)
        .expect("no event for the forced-down service");
    assert_eq!(down.new_status, Some(Status::Down), "{down:?}");
    let up = seen.get(&new).expect("no event for the new service");
    assert_eq!(up.new_status, Some(Status::Up), "{up:?}");
    assert!(!seen.contains_key(&kept), "{seen:?}");
    assert!(watcher.stats().resyncs >= 1, "{:?}", watcher.stats());
    assert!(wait_until(ttl(), || view.is_up(&new).unwrap_or(false)));
    assert!(!view.is_up(&gone).unwrap());
    assert!(view.is_up(&kept).unwrap());
}

/// user/password through the proxy: it passes each client's token on for
/// calls and keepalives; watches are checked against the user's
/// permissions by the proxy.
#[test]
fn authentication_through_the_proxy() {
    // Tokens expire after 2 s idle: renewed through the proxy too.
    let cluster = Cluster::start_with(
        1,
        EtcdOpts {
            auth_token: Some("simple".into()),
            extra_args: vec!["--auth-token-ttl=2".into()],
            ..Default::default()
        },
    );
    let ns = namespace("proxyauth");
    let raw = cluster.raw();
    let mut c = raw.client();
    let prefix = format!("{ns}/services/");
    let prefix2 = prefix.clone();
    raw.block_on(async move {
        c.user_add("root", "rootpw", None).await.unwrap();
        c.user_grant_role("root", "root").await.unwrap();
        c.role_add("lively").await.unwrap();
        c.role_grant_permission(
            "lively",
            etcd_client::Permission::read_write(prefix).with_prefix(),
        )
        .await
        .unwrap();
        c.user_add("svc", "svc-secret-pw", None).await.unwrap();
        c.user_grant_role("svc", "lively").await.unwrap();
        c.role_add("reader").await.unwrap();
        c.role_grant_permission(
            "reader",
            etcd_client::Permission::read(prefix2).with_prefix(),
        )
        .await
        .unwrap();
        c.user_add("ro", "ro-secret-pw", None).await.unwrap();
        c.user_grant_role("ro", "reader").await.unwrap();
        c.auth_enable().await.unwrap();
    });
    let proxy = GrpcProxy::start(&cluster.endpoints());
    let user = |name: &str, password: &str| {
        let mut cfg = config(&[proxy.endpoint()], &ns, TTL);
        cfg.user(name, password).unwrap();
        Client::connect(&cfg).unwrap()
    };
    let owner = user("svc", "svc-secret-pw");
    let watcher = user("svc", "svc-secret-pw");
    // A read-only user watches as any other (a quiet watch is checked by
    // reading etcd; tests/readers.rs counts what it costs).
    let reader = user("ro", "ro-secret-pw");
    let read_sub = reader.subscribe(&Filter::all(), &opts()).unwrap();
    let sub = watcher.subscribe(&Filter::all(), &opts()).unwrap();
    let view = watcher.view().unwrap();
    let uuid = owner.update(&Service::new("t", "h")).unwrap();
    expect(&sub, EventKind::Registered, None, &uuid);
    view.sync(Duration::from_secs(10)).expect("sync");
    assert!(view.is_up(&uuid).unwrap());
    // Keepalives with the user's token: still UP after 1.5 TTLs, and the
    // idle watcher's token (2 s), expired meanwhile, is renewed.
    std::thread::sleep(ttl() * 3 / 2);
    assert!(watcher.is_up(&uuid).unwrap());
    let other = owner.update(&Service::new("t", "h2")).unwrap();
    expect(&sub, EventKind::Registered, None, &other);
    expect(&read_sub, EventKind::Registered, None, &uuid);
    expect(&read_sub, EventKind::Registered, None, &other);
    assert!(reader.is_up(&other).unwrap());
    assert_eq!(owner.stats().lease_regrants, 0, "{:?}", owner.stats());
    owner.close().unwrap();
    expect(&sub, EventKind::Down, Some(DownReason::Closed), &uuid);
    expect(&read_sub, EventKind::Down, Some(DownReason::Closed), &uuid);
    assert_eq!(
        reader.stats().reconnects,
        0,
        "the read-only watcher's quiet watch was reopened: {:?}",
        reader.stats()
    );

    let mut wrong = config(&[proxy.endpoint()], &ns, TTL);
    wrong.user("svc", "not-the-password").unwrap();
    let err = Client::connect(&wrong).map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), os_lively::ErrorKind::Auth, "{err}");
}

/// Two proxies as the endpoints: endpoint steering's probes (Maintenance
/// Status) go through a proxy and report its cluster's leader; when one
/// proxy dies, the client's keepalive, calls and watch move to the other
/// with no false DOWN.
#[test]
fn two_proxies_one_killed_the_client_moves_to_the_other() {
    let cluster = Cluster::start(1);
    let mut first = GrpcProxy::start(&cluster.endpoints());
    let second = GrpcProxy::start(&cluster.endpoints());
    let ns = namespace("proxypair");
    let eps = vec![first.endpoint(), second.endpoint()];
    let client = connect(&eps, &ns, TTL);
    let uuid = client.update(&Service::new("pair", "h1")).unwrap();
    let sub = client.subscribe(&Filter::all(), &opts()).unwrap();
    let observer = connect(&[second.endpoint()], &ns, TTL);

    // Keepalives answered late by the proxy (up to its 500 ms tick) raise
    // a suspicion, and endpoint steering probes each proxy (a Status call
    // forwarded to etcd): a cost of several proxy endpoints, counted here
    // from the proxies' metrics once the watch has settled.
    let statuses = |p: &GrpcProxy| status_calls(&p.metrics_text());
    // The count can see a probe: one Status call of our own shows in it.
    let seen = statuses(&first);
    let raw = Raw::connect(&[first.endpoint()]);
    let mut c = raw.client();
    raw.block_on(async move { c.status().await })
        .expect("Status through the proxy");
    assert!(
        wait_until(Duration::from_secs(5), || statuses(&first) > seen),
        "the proxy's metrics do not count Status calls"
    );
    std::thread::sleep(ttl());
    let before = statuses(&first) + statuses(&second);
    std::thread::sleep(ttl());
    let probes = statuses(&first) + statuses(&second) - before;
    println!("two proxies: {probes} Status calls in a TTL (3 keepalives)");
    // Steering probes only on a suspicion, one round (a Status call to each
    // endpoint) per suspicion. Here the client's only traffic is its
    // keepalive, every TTL/3: at most 4 answers fall in a TTL, each raising
    // at most two suspicions (answered late, then past its deadline). More
    // means probing without cause, the flood a fleet turns into a storm.
    let bound = (eps.len() * 2 * 4) as f64;
    assert!(
        probes <= bound,
        "{probes} Status calls in a TTL with both proxies healthy (bound {bound})"
    );

    first.stop();
    let t = Instant::now();
    let mut false_down = 0;
    while t.elapsed() < ttl() + Duration::from_secs(1) {
        if !observer.is_up(&uuid).unwrap() {
            false_down += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(false_down, 0, "the service was seen DOWN");
    let other = client.update(&Service::new("pair", "h2")).unwrap();
    expect(&sub, EventKind::Registered, None, &other);
    let stats = client.stats();
    assert_eq!(stats.lease_regrants, 0, "{stats:?}");
    assert!(observer.is_up(&other).unwrap());
}

/// A daemon frozen (SIGSTOP) rather than killed keeps its connection
/// open, and etcd 3.4's proxy keeps its lease alive for one more TTL after
/// the last keepalive it answered: DOWN about 2 x TTL after the freeze, not
/// one TTL as with a direct connection (or a crash, which closes it).
#[test]
fn a_frozen_daemon_behind_the_proxy_goes_down_within_two_ttls() {
    let cluster = Cluster::start(1);
    let proxy = GrpcProxy::start(&cluster.endpoints());
    let ns = namespace("proxyfrozen");
    let mut daemon = Daemons::ready(Daemons::spawn(&proxy.endpoint(), &ns, 0, 1));
    let uuid = daemon.uuids[0].clone();
    let watcher = connect(&[proxy.endpoint()], &ns, TTL);
    let sub = watcher.subscribe(&Filter::all(), &opts()).unwrap();
    assert!(watcher.is_up(&uuid).unwrap());
    let frozen_at = Instant::now();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.child.id() as libc::pid_t, libc::SIGSTOP) };
    let e = next_about(&sub, &uuid, ttl() * 3).expect("no DOWN for the frozen daemon");
    let took = frozen_at.elapsed();
    assert_eq!(
        (e.kind, e.reason),
        (EventKind::Down, Some(DownReason::Expired))
    );
    println!("frozen daemon behind the proxy: DOWN after {took:?} (TTL {TTL} s)");
    assert!(took <= ttl() * 2 + Duration::from_secs(2), "{took:?}");
    daemon.kill();
}

/// The proxy's etcd member cut off from its peers: the proxy's watch
/// stays open on it and hears nothing more. A daemon registered through
/// the rest of the cluster crashes; a view behind the proxy must not keep
/// answering UP for it: DOWN or Stale, never a false UP.
#[test]
fn a_view_behind_a_proxy_whose_member_is_cut_off_never_answers_a_false_up() {
    let cluster = Cluster::start_with(
        3,
        EtcdOpts {
            peer_proxies: true,
            ..Default::default()
        },
    );
    let proxy = GrpcProxy::start(&[cluster.member_ref(0).endpoint()]);
    let ns = namespace("proxycutoff");
    let majority = format!(
        "{},{}",
        cluster.member_ref(1).endpoint(),
        cluster.member_ref(2).endpoint()
    );
    let mut daemon = Daemons::ready(Daemons::spawn(&majority, &ns, 0, 1));
    let uuid = daemon.uuids[0].clone();
    let watcher = connect(&[proxy.endpoint()], &ns, TTL);
    let view = watcher.view().unwrap();
    assert!(wait_until(ttl(), || view.is_up(&uuid).unwrap_or(false)));

    cluster.isolate(0);
    let killed_at = Instant::now();
    daemon.kill();
    // The lease expires on the majority about a TTL after the kill; a view
    // may take up to its staleness bound (the TTL) more to say it cannot
    // tell.
    let limit = ttl() * 2 + Duration::from_secs(3);
    let settled = wait_until(limit, || !matches!(view.is_up(&uuid), Ok(true)));
    let answer = view.is_up(&uuid);
    println!(
        "cut-off proxy member: the view answers {answer:?} {:?} after the kill; watcher {:?}",
        killed_at.elapsed(),
        watcher.stats()
    );
    assert!(
        settled,
        "the view still answers UP {limit:?} after the crash"
    );
    // And it stays that way.
    for _ in 0..10 {
        assert!(!matches!(view.is_up(&uuid), Ok(true)), "false UP");
        std::thread::sleep(ttl() / 10);
    }
    cluster.rejoin(0);
}

/// Maintenance.Status calls a proxy served, from its metrics.
fn status_calls(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("grpc_server_handled_total{") && l.contains("grpc_method=\"Status\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What every watcher saw of each service.
#[derive(Default)]
struct Seen {
    /// DOWN events per uuid (subscriptions), with when they arrived.
    downs: HashMap<String, Vec<(Instant, DownReason)>>,
    /// A view answered DOWN for a uuid (views), first time.
    view_down: HashMap<String, Instant>,
}

/// A daemon process of the fleet test: the test binary run again with
/// `OSLIVELY_PROXY_FLEET_CHILD` set (this test does nothing without it).
/// It connects its clients through the proxy, each registering one
/// service, prints their uuids, and lives until its stdin closes (then it
/// closes them) or it is killed (a crash: nothing revoked).
#[test]
fn fleet_child() {
    let Ok(spec) = std::env::var(FLEET_CHILD) else {
        return;
    };
    let [endpoint, ns, first, count] = spec.split('|').collect::<Vec<_>>()[..] else {
        panic!("bad {FLEET_CHILD}: {spec:?}");
    };
    let (first, count): (usize, usize) = (first.parse().unwrap(), count.parse().unwrap());
    let clients: Vec<Client> = (first..first + count)
        .map(|i| {
            let eps: Vec<String> = endpoint.split(',').map(str::to_string).collect();
            let client = connect(&eps, ns, TTL);
            let uuid = client
                .update(&Service::new("daemon", &format!("host-{i}")))
                .unwrap();
            println!("uuid {uuid}");
            client
        })
        .collect();
    println!("ready");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    for c in clients {
        let _ = c.close();
    }
}

const FLEET_CHILD: &str = "OSLIVELY_PROXY_FLEET_CHILD";

/// One daemon process of [`fleet_child`]; killed (SIGKILL) on drop.
struct Daemons {
    child: std::process::Child,
    uuids: Vec<String>,
}

impl Daemons {
    fn spawn(endpoint: &str, ns: &str, first: usize, count: usize) -> std::process::Child {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "fleet_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(FLEET_CHILD, format!("{endpoint}|{ns}|{first}|{count}"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawning a daemon process")
    }

    /// Reads the child's uuids until it says it is ready.
    fn ready(mut child: std::process::Child) -> Daemons {
        use std::io::BufRead;
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut uuids = Vec::new();
        for line in out.lines() {
            let line = line.unwrap();
            // The first may follow libtest's "test fleet_child ... ".
            if let Some((_, u)) = line.split_once("uuid ") {
                uuids.push(u.trim().to_string());
            } else if line.ends_with("ready") {
                return Daemons { child, uuids };
            }
        }
        panic!("a daemon process ended before it was ready");
    }

    /// A crash: SIGKILL, nothing revoked.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The acceptance test at small scale: 50 clients, each registering one
/// daemon (in 5 processes of 10), and 10 watchers (5 views, 5
/// subscriptions), all through one proxy in front of a 3-member cluster.
/// Each member is restarted in turn: no watcher sees a false DOWN and no
/// registration is lost. Then one process of 10 clients is killed: every
/// watcher sees exactly those 10 DOWN (expired), within the TTL and some
/// slack.
#[test]
fn a_small_fleet_through_the_proxy_survives_member_restarts_and_sees_a_crash() {
    const PROCESSES: usize = 5;
    const PER_PROCESS: usize = 10;
    let mut cluster = Cluster::start(3);
    let proxy = GrpcProxy::start(&cluster.endpoints());
    let ns = namespace("proxyfleet");
    let eps = vec![proxy.endpoint()];

    let started = Instant::now();
    let children: Vec<_> = (0..PROCESSES)
        .map(|p| Daemons::spawn(&proxy.endpoint(), &ns, p * PER_PROCESS, PER_PROCESS))
        .collect();
    let mut daemons: Vec<Daemons> = children.into_iter().map(Daemons::ready).collect();
    let uuids: Vec<String> = daemons.iter().flat_map(|d| d.uuids.clone()).collect();
    assert_eq!(uuids.len(), PROCESSES * PER_PROCESS);
    println!(
        "{} clients registered through the proxy in {:?}",
        uuids.len(),
        started.elapsed()
    );

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut watchers: Vec<Client> = Vec::new();
    let mut views: Vec<View> = Vec::new();
    let mut threads = Vec::new();
    for i in 0..10 {
        let client = connect(&eps, &ns, TTL);
        if i % 2 == 0 {
            let view = client.view().unwrap();
            assert!(wait_until(Duration::from_secs(10), || {
                uuids.iter().all(|u| view.is_up(u).unwrap_or(false))
            }));
            views.push(view);
        } else {
            let sub = client.subscribe(&Filter::all(), &opts()).unwrap();
            let (seen, stop) = (seen.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Some(e) = sub.recv_timeout(Duration::from_millis(100)).unwrap() {
                        if e.kind == EventKind::Down {
                            let mut s = seen.lock().unwrap();
                            s.downs
                                .entry(e.uuid.clone())
                                .or_default()
                                .push((Instant::now(), e.reason.unwrap()));
                        }
                    }
                }
            }));
        }
        watchers.push(client);
    }
    // The views are polled all along: any uuid answered DOWN is noted.
    {
        let (seen, stop, views, uuids) = (seen.clone(), stop.clone(), views.clone(), uuids.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for v in &views {
                    for u in &uuids {
                        if let Ok(false) = v.is_up(u) {
                            seen.lock()
                                .unwrap()
                                .view_down
                                .entry(u.clone())
                                .or_insert_with(Instant::now);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }));
    }

    // Each member in turn: stopped, then started again once the others
    // have a leader. A leader among them moves the leases.
    let restarts = Instant::now();
    for i in 0..3 {
        cluster.member(i).stop();
        assert!(
            cluster.wait_leader(Duration::from_secs(10)).is_some(),
            "no leader without member {i}"
        );
        // Long enough for keepalives and watches to move off it.
        std::thread::sleep(ttl() / 4);
        cluster.member(i).start_again();
    }
    // A TTL after the last restart: whatever was lost would show by now.
    std::thread::sleep(ttl() + Duration::from_secs(1));
    let restarts_took = restarts.elapsed();
    {
        let s = seen.lock().unwrap();
        assert!(
            s.downs.is_empty(),
            "false DOWN at a subscriber: {:?}",
            s.downs
        );
        assert!(
            s.view_down.is_empty(),
            "false DOWN at a view: {:?}",
            s.view_down
        );
    }
    let direct = cluster.raw();
    let up_keys: HashSet<String> = direct
        .keys(&format!("{ns}/services/by-status/UP/"))
        .into_iter()
        .filter_map(|k| k.rsplit('/').next().map(str::to_string))
        .collect();
    for u in &uuids {
        assert!(up_keys.contains(u), "registration {u} lost");
    }

    // The crash: one process of 10 clients dies without a word.
    let crashed: Vec<String> = daemons[0].uuids.clone();
    let killed_at = Instant::now();
    daemons[0].kill();
    let limit = ttl() + Duration::from_secs(2);
    let everyone_saw = wait_until(limit + Duration::from_secs(2), || {
        let s = seen.lock().unwrap();
        crashed
            .iter()
            .all(|u| s.downs.get(u).is_some_and(|d| d.len() == 5) && s.view_down.contains_key(u))
    });
    // A while more: nothing else goes DOWN.
    std::thread::sleep(ttl() / 2);
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    let s = seen.lock().unwrap();
    let mut slowest = Duration::ZERO;
    for u in &crashed {
        let downs = s.downs.get(u).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(downs.len(), 5, "{u}: each subscriber once: {downs:?}");
        for (at, reason) in downs {
            assert_eq!(*reason, DownReason::Expired);
            slowest = slowest.max(*at - killed_at);
        }
        let at = s.view_down.get(u).expect("a view never saw the crash");
        slowest = slowest.max(*at - killed_at);
    }
    assert!(everyone_saw, "not every watcher saw the crash");
    assert!(
        slowest <= limit,
        "DOWN seen {slowest:?} after the kill (TTL {TTL} s)"
    );
    let extra: Vec<_> = s
        .downs
        .keys()
        .chain(s.view_down.keys())
        .filter(|u| !crashed.contains(u))
        .collect();
    assert!(extra.is_empty(), "false DOWN: {extra:?}");
    for v in &views {
        for u in &uuids[PER_PROCESS..] {
            assert!(v.is_up(u).unwrap(), "{u} DOWN at a view");
        }
    }
    let reconnects: Vec<u64> = watchers.iter().map(|w| w.stats().reconnects).collect();
    println!(
        "fleet through the proxy: member restarts {restarts_took:?} without a false DOWN; crash seen by all 10 watchers within {slowest:?} (TTL {TTL} s); watcher reconnects {reconnects:?}"
    );
}
