//! Subscriptions against a real etcd: every event kind, resume across etcd
//! restarts checked against a raw reference watch, slow subscribers,
//! compaction, and cancellation.

mod common;
#[path = "common/oracle.rs"]
mod oracle;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use oracle::*;
use os_lively::{
    DownReason, Event, EventKind, Filter, Service, Status, SubscribeOptions, Subscription,
};

const TTL: u64 = 2;

fn opts() -> SubscribeOptions {
    SubscribeOptions::default()
}

/// The next event, or a panic naming what we waited for.
fn next(sub: &Subscription, what: &str) -> Event {
    sub.recv_timeout(Duration::from_secs(10))
        .expect("recv")
        .unwrap_or_else(|| panic!("no event while waiting for {what}"))
}

fn expect(sub: &Subscription, kind: EventKind, reason: Option<DownReason>, uuid: &str) -> Event {
    let e = next(sub, &format!("{kind:?}"));
    assert_eq!(
        (e.kind, e.reason, e.uuid.as_str()),
        (kind, reason, uuid),
        "{e:?}"
    );
    e
}

#[test]
fn every_event_kind_with_statuses_records_and_revisions() {
    let etcd = Etcd::start();
    let ns = namespace("kinds");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let sub = client.subscribe(&Filter::all(), &opts()).unwrap();

    let uuid = client
        .update(&Service::new("nova", "h1").with_region("r1"))
        .unwrap();
    let e = expect(&sub, EventKind::Registered, None, &uuid);
    assert_eq!((e.old_status, e.new_status), (None, Some(Status::Up)));
    assert_eq!(
        (e.service_type.as_str(), e.host.as_str(), e.region.as_str()),
        ("nova", "h1", "r1")
    );
    assert_eq!(e.service.as_ref().unwrap().uuid, uuid);
    let mut last_rev = e.revision;

    client
        .update(
            &Service::new("nova", "h1")
                .with_region("r2")
                .with_uuid(&uuid),
        )
        .unwrap();
    let e = expect(&sub, EventKind::Updated, None, &uuid);
    assert_eq!(e.region, "r2");
    assert_eq!(
        (e.old_status, e.new_status),
        (Some(Status::Up), Some(Status::Up))
    );
    assert!(e.revision > last_rev);
    last_rev = e.revision;

    client.down(&uuid, "maintenance", 1, 4_000_000_000).unwrap();
    let e = expect(&sub, EventKind::Down, Some(DownReason::Forced), &uuid);
    assert_eq!(
        (e.old_status, e.new_status),
        (Some(Status::Up), Some(Status::Down))
    );
    assert_eq!(e.service.as_ref().unwrap().maintenance_note, "maintenance");
    assert!(e.revision > last_rev);

    client.up(&uuid).unwrap();
    let e = expect(&sub, EventKind::Up, Some(DownReason::Lifted), &uuid);
    assert_eq!(
        (e.old_status, e.new_status),
        (Some(Status::Down), Some(Status::Up))
    );

    client.delete(&uuid).unwrap();
    let e = expect(&sub, EventKind::Down, Some(DownReason::Deleted), &uuid);
    let removed = expect(&sub, EventKind::Removed, None, &uuid);
    assert_eq!(
        removed.revision, e.revision,
        "one transaction, one revision"
    );
    assert_eq!(removed.new_status, None);

    // An unchanged update is not an event.
    let u2 = client.update(&Service::new("x", "y")).unwrap();
    expect(&sub, EventKind::Registered, None, &u2);
    client
        .update(&Service::new("x", "y").with_uuid(&u2))
        .unwrap();
    assert!(
        sub.recv_timeout(Duration::from_millis(500))
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_sigkilled_registrant_is_reported_down_expired_within_ttl_plus_2s() {
    let etcd = Etcd::start();
    let ns = namespace("expired");
    let watcher = connect(&etcd.endpoints(), &ns, TTL);
    let sub = watcher
        .subscribe(&Filter::all().service_type("nova"), &opts())
        .unwrap();
    let mut child = Registrant::start(
        &etcd.endpoints(),
        &ns,
        TTL,
        &["--type", "nova", "--host", "h"],
    );
    expect(&sub, EventKind::Registered, None, &child.uuid);
    child.kill();
    let killed = Instant::now();
    let e = sub
        .recv_timeout(Duration::from_secs(TTL + 2))
        .unwrap()
        .expect("no down event within TTL + 2 s");
    assert_eq!(
        (e.kind, e.reason),
        (EventKind::Down, Some(DownReason::Expired)),
        "{e:?}"
    );
    assert_eq!(e.uuid, child.uuid);
    assert!(killed.elapsed() < Duration::from_secs(TTL + 2));
}

#[test]
fn snapshot_then_changes_with_no_gap_and_filters_narrow() {
    let etcd = Etcd::start();
    let ns = namespace("snapshot");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let a = client
        .update(&Service::new("api", "h1").with_region("east"))
        .unwrap();
    let b = client
        .update(&Service::new("db", "h1").with_region("west"))
        .unwrap();
    client.down(&b, "", 0, 0).unwrap();
    let snap = client
        .subscribe(
            &Filter::all(),
            &SubscribeOptions {
                snapshot: true,
                ..opts()
            },
        )
        .unwrap();
    let mut existing = HashMap::new();
    for _ in 0..2 {
        let e = next(&snap, "snapshot");
        assert_eq!(e.kind, EventKind::Existing);
        existing.insert(e.uuid.clone(), e.new_status);
    }
    assert_eq!(existing[&a], Some(Status::Up));
    assert_eq!(existing[&b], Some(Status::Down));

    let by_uuid = client.subscribe(&Filter::all().uuid(&a), &opts()).unwrap();
    let by_type_host = client
        .subscribe(&Filter::all().service_type("db").host("h1"), &opts())
        .unwrap();
    let by_region = client
        .subscribe(&Filter::all().region("east"), &opts())
        .unwrap();
    let by_type = client
        .subscribe(&Filter::all().service_type("db"), &opts())
        .unwrap();

    client.down(&a, "", 0, 0).unwrap();
    client.up(&b).unwrap();
    expect(&snap, EventKind::Down, Some(DownReason::Forced), &a);
    expect(&snap, EventKind::Up, Some(DownReason::Lifted), &b);
    expect(&by_uuid, EventKind::Down, Some(DownReason::Forced), &a);
    expect(&by_region, EventKind::Down, Some(DownReason::Forced), &a);
    expect(&by_type_host, EventKind::Up, Some(DownReason::Lifted), &b);
    expect(&by_type, EventKind::Up, Some(DownReason::Lifted), &b);
    for (name, s) in [
        ("uuid", &by_uuid),
        ("type+host", &by_type_host),
        ("region", &by_region),
        ("type", &by_type),
    ] {
        assert!(
            s.recv_timeout(Duration::from_millis(300))
                .unwrap()
                .is_none(),
            "{name} got a foreign event"
        );
    }
    assert!(
        client
            .subscribe(&Filter::all().status(Status::Up), &opts())
            .is_err()
    );
}

/// Revisions at which the record of `uuid` changed, from a raw watch of the
/// whole history (no compaction happened).
fn reference_revisions(raw: &Raw, key: &str, from: i64) -> Vec<i64> {
    let mut client = raw.client();
    let key = key.to_string();
    raw.block_on(async move {
        let mut stream = client
            .watch(
                key,
                Some(etcd_client::WatchOptions::new().with_start_revision(from)),
            )
            .await
            .expect("watch");
        let mut revs = Vec::new();
        let current = {
            let mut kv = client.kv_client();
            kv.get("x", None)
                .await
                .expect("get")
                .header()
                .expect("header")
                .revision()
        };
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(5), stream.message()).await;
            let Ok(Ok(Some(resp))) = msg else { break };
            for e in resp.events() {
                revs.push(e.kv().expect("kv").mod_revision());
            }
            if resp.header().map(|h| h.revision()).unwrap_or(0) >= current
                && revs.last().is_some_and(|r| *r >= current - 1)
            {
                break;
            }
            if revs.len() >= 201 {
                break;
            }
        }
        revs
    })
}

#[test]
fn two_hundred_transitions_across_two_etcd_restarts_arrive_exactly_once_in_order() {
    let mut etcd = Etcd::start();
    let ns = namespace("restarts");
    let raw = etcd.raw();
    let writer = connect(&etcd.endpoints(), &ns, 10);
    let watcher = connect(&etcd.endpoints(), &ns, 10);
    let svc = Service::new("flappy", "h");
    let uuid = writer.update(&svc).unwrap();
    let sub = watcher
        .subscribe(&Filter::all().uuid(&uuid), &opts())
        .unwrap();
    let start_rev = raw.revision() + 1;
    let retry = |f: &dyn Fn() -> os_lively::Result<()>| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match f() {
                Ok(()) => return,
                Err(e) if e.is_transient() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => panic!("write failed: {e}"),
            }
        }
    };
    for i in 0..200 {
        if i == 70 || i == 140 {
            etcd.kill();
            etcd.start_again();
        }
        if i % 2 == 0 {
            retry(&|| writer.down(&uuid, "flap", 0, 0));
        } else {
            retry(&|| writer.up(&uuid));
        }
    }
    let mut got = Vec::new();
    while got.len() < 200 {
        let e = sub
            .recv_timeout(Duration::from_secs(15))
            .unwrap()
            .unwrap_or_else(|| panic!("stalled after {} events", got.len()));
        got.push(e);
    }
    assert!(
        sub.recv_timeout(Duration::from_millis(500))
            .unwrap()
            .is_none(),
        "an extra event arrived"
    );
    for (i, e) in got.iter().enumerate() {
        let want = if i % 2 == 0 {
            EventKind::Down
        } else {
            EventKind::Up
        };
        assert_eq!(e.kind, want, "event {i}: {e:?}");
    }
    let revs: Vec<i64> = got.iter().map(|e| e.revision).collect();
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "revisions not strictly increasing"
    );
    let reference = reference_revisions(&raw, &format!("{ns}/services/by-uuid/{uuid}"), start_rev);
    assert_eq!(revs, reference, "subscriber history differs from etcd's");
}

#[test]
fn a_callback_blocking_longer_than_the_ttl_delays_neither_keepalives_nor_other_subscriptions() {
    let etcd = Etcd::start();
    let ns = namespace("slowcb");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let observer = connect(&etcd.endpoints(), &ns, TTL);
    let mine = client.update(&Service::new("me", "h")).unwrap();
    let entered = Arc::new(AtomicBool::new(false));
    let e2 = entered.clone();
    let _slow = client
        .subscribe_callback(&Filter::all().service_type("trigger"), &opts(), move |_| {
            e2.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(2 * TTL + 1));
        })
        .unwrap();
    let fast_seen = Arc::new(AtomicUsize::new(0));
    let f2 = fast_seen.clone();
    let _fast = client
        .subscribe_callback(&Filter::all().service_type("other"), &opts(), move |_| {
            f2.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    observer.update(&Service::new("trigger", "h")).unwrap();
    assert!(wait_until(Duration::from_secs(5), || entered.load(Ordering::SeqCst)));
    let blocked = Instant::now();
    let mut n = 0;
    while blocked.elapsed() < Duration::from_secs(2 * TTL) {
        observer
            .update(&Service::new("other", &format!("h{n}")))
            .unwrap();
        n += 1;
        assert!(
            observer.is_up(&mine).unwrap(),
            "the blocked callback let the lease expire"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(wait_until(Duration::from_secs(3), || fast_seen
        .load(Ordering::SeqCst)
        == n));
}

/// Applies events to a model of uuid -> (effective status, record).
fn apply(model: &mut HashMap<String, Truth>, e: &Event) {
    match e.kind {
        EventKind::Resync => {}
        _ => match (e.new_status, &e.service) {
            (Some(st), Some(s)) => {
                model.insert(e.uuid.clone(), Truth::of(s, st == Status::Up));
            }
            _ => {
                model.remove(&e.uuid);
            }
        },
    }
}

/// Each service (record and effective status) as etcd holds it, decoded
/// and judged UP by the test's own oracle, not the library's list.
fn truth(raw: &Raw, ns: &str) -> HashMap<String, Truth> {
    let snap = Snapshot::read(raw, ns);
    assert!(
        snap.skipped.is_empty(),
        "records the oracle cannot read: {:?}",
        snap.skipped
    );
    snap.services.into_iter().collect()
}

#[test]
fn a_slow_subscriber_stays_bounded_gets_a_resync_and_converges() {
    let etcd = Etcd::start();
    let ns = namespace("slowsub");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let sub = client
        .subscribe(
            &Filter::all(),
            &SubscribeOptions {
                snapshot: true,
                queue_capacity: 8,
            },
        )
        .unwrap();
    let uuids: Vec<String> = (0..20)
        .map(|i| client.update(&Service::new("t", &format!("h{i}"))).unwrap())
        .collect();
    for round in 0..5 {
        for (i, u) in uuids.iter().enumerate() {
            if (i + round) % 3 == 0 {
                client.down(u, "", 0, 0).unwrap();
            } else {
                client.up(u).unwrap();
            }
        }
        assert!(sub.pending() <= 8, "queue grew to {}", sub.pending());
    }
    client.delete(&uuids[0]).unwrap();
    let mut model = HashMap::new();
    let mut resyncs = 0;
    let want = truth(&etcd.raw(), &ns);
    let deadline = Instant::now() + Duration::from_secs(10);
    while model != want && Instant::now() < deadline {
        if let Some(e) = sub.recv_timeout(Duration::from_millis(200)).unwrap() {
            if e.kind == EventKind::Resync {
                resyncs += 1;
            }
            apply(&mut model, &e);
        }
    }
    assert!(resyncs >= 1, "overflow must be announced");
    assert_eq!(model, want);
    assert!(client.stats().resyncs >= 1);
}

#[test]
fn compaction_while_disconnected_still_converges() {
    let etcd = Etcd::start();
    let ns = namespace("compact");
    let raw = etcd.raw();
    let proxy = Proxy::start(&etcd.endpoint());
    let writer = connect(&etcd.endpoints(), &ns, TTL);
    let watcher = connect(&[proxy.endpoint()], &ns, 30);
    let a = writer.update(&Service::new("t", "a")).unwrap();
    let sub = watcher
        .subscribe(
            &Filter::all(),
            &SubscribeOptions {
                snapshot: true,
                ..opts()
            },
        )
        .unwrap();
    let mut model = HashMap::new();
    apply(&mut model, &next(&sub, "snapshot"));
    proxy.cut();
    writer.down(&a, "", 0, 0).unwrap();
    let b = writer.update(&Service::new("t", "b")).unwrap();
    let c = writer.update(&Service::new("t", "c")).unwrap();
    writer.delete(&c).unwrap();
    raw.compact(raw.revision());
    proxy.heal();
    let want = truth(&raw, &ns);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut kinds = Vec::new();
    while model != want && Instant::now() < deadline {
        if let Some(e) = sub.recv_timeout(Duration::from_millis(200)).unwrap() {
            kinds.push(e.kind);
            apply(&mut model, &e);
        }
    }
    assert_eq!(model, want, "events seen: {kinds:?}");
    assert!(kinds.contains(&EventKind::Resync), "{kinds:?}");
    assert_eq!(model.get(&b).map(|t| t.up), Some(true));
}

#[test]
fn cancel_from_inside_the_callback_stops_delivery() {
    let etcd = Etcd::start();
    let ns = namespace("cancelin");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let calls = Arc::new(AtomicUsize::new(0));
    let slot: Arc<Mutex<Option<os_lively::Canceller>>> = Arc::default();
    let (c2, s2) = (calls.clone(), slot.clone());
    let sub = client
        .subscribe_callback(&Filter::all(), &opts(), move |_| {
            c2.fetch_add(1, Ordering::SeqCst);
            if let Some(c) = s2.lock().unwrap().as_ref() {
                c.cancel();
            }
        })
        .unwrap();
    *slot.lock().unwrap() = Some(sub.canceller());
    client.update(&Service::new("t", "1")).unwrap();
    assert!(wait_until(Duration::from_secs(5), || sub
        .canceller()
        .is_cancelled()));
    client.update(&Service::new("t", "2")).unwrap();
    client.update(&Service::new("t", "3")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn after_cancel_returns_no_callback_starts_so_userdata_may_be_freed() {
    let etcd = Etcd::start();
    let ns = namespace("cancelout");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let writer = connect(&etcd.endpoints(), &ns, TTL);
    let freed = Arc::new(AtomicBool::new(false));
    let violation = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let (f2, v2, n2) = (freed.clone(), violation.clone(), count.clone());
    let sub = client
        .subscribe_callback(&Filter::all(), &opts(), move |_| {
            if f2.load(Ordering::SeqCst) {
                v2.store(true, Ordering::SeqCst);
            }
            n2.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
        })
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let churn = std::thread::spawn(move || {
        let mut i = 0;
        while !s2.load(Ordering::SeqCst) {
            writer
                .update(&Service::new("t", &format!("h{}", i % 50)))
                .ok();
            i += 1;
        }
    });
    assert!(wait_until(Duration::from_secs(5), || count
        .load(Ordering::SeqCst)
        > 10));
    let canceller = sub.canceller();
    let t = std::thread::spawn(move || canceller.cancel());
    t.join().unwrap();
    freed.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    churn.join().unwrap();
    assert!(
        !violation.load(Ordering::SeqCst),
        "a callback ran after cancel returned"
    );
    drop(sub);
}

#[test]
fn closing_the_client_ends_its_subscriptions() {
    let etcd = Etcd::start();
    let ns = namespace("closesub");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let sub = client.subscribe(&Filter::all(), &opts()).unwrap();
    let reader = std::thread::spawn(move || sub.recv().map(|_| ()).unwrap_err().kind());
    std::thread::sleep(Duration::from_millis(200));
    client.close().unwrap();
    assert_eq!(reader.join().unwrap(), os_lively::ErrorKind::Closed);
}

#[test]
fn the_cli_watch_prints_the_snapshot_then_each_event() {
    use std::io::{BufRead, BufReader};
    let etcd = Etcd::start();
    let ns = namespace("cliwatch");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let before = client.update(&Service::new("t", "before")).unwrap();
    let mut child = std::process::Command::new(oslively_bin())
        .args(["watch", "--snapshot", "--output", "table"])
        .env("OSLIVELY_ETCD_ENDPOINTS", etcd.endpoints().join(","))
        .env("OSLIVELY_ETCD_KEY_NAMESPACE", &ns)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(
        first.contains("existing") && first.contains(&before),
        "{first}"
    );
    let after = client.update(&Service::new("t", "after")).unwrap();
    let next = lines.next().unwrap().unwrap();
    assert!(
        next.contains("registered") && next.contains(&after) && next.ends_with("- -> UP"),
        "{next}"
    );
    client.down(&after, "", 0, 0).unwrap();
    let down = lines.next().unwrap().unwrap();
    assert!(
        down.contains("down (forced)") && down.ends_with("UP -> DOWN"),
        "{down}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// A subscription is a set: a change that moves a service into the filter's
/// set arrives as `Registered` (old status none), one that moves it out as
/// `Removed` with reason `Moved` and the record as it is now.
#[test]
fn a_service_moving_across_the_filter_enters_and_leaves_the_set() {
    let etcd = Etcd::start();
    let ns = namespace("setlive");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let sub = client
        .subscribe(&Filter::all().region("r2"), &opts())
        .unwrap();
    let uuid = client
        .update(&Service::new("nova", "h1").with_region("r1"))
        .unwrap();
    let other = client
        .update(&Service::new("nova", "h2").with_region("r1"))
        .unwrap();

    let moved = |region: &str| {
        Service::new("nova", "h1")
            .with_region(region)
            .with_uuid(&uuid)
    };
    client.update(&moved("r2")).unwrap();
    let e = expect(&sub, EventKind::Registered, None, &uuid);
    assert_eq!((e.old_status, e.new_status), (None, Some(Status::Up)));
    assert_eq!(e.region, "r2");

    client.down(&uuid, "", 0, 0).unwrap();
    expect(&sub, EventKind::Down, Some(DownReason::Forced), &uuid);

    client.update(&moved("r1")).unwrap();
    let e = expect(&sub, EventKind::Removed, Some(DownReason::Moved), &uuid);
    assert_eq!(
        (e.old_status, e.new_status),
        (Some(Status::Down), None),
        "old status: what the subscriber knew"
    );
    assert_eq!(e.region, "r1", "the record says where it went");
    assert_eq!(e.service.as_ref().map(|s| s.region.as_str()), Some("r1"));

    // Changes outside the set are not events (lifting the forced DOWN, a
    // neighbour moving); a deletion inside it still is.
    client.up(&uuid).unwrap();
    client
        .update(
            &Service::new("nova", "h2")
                .with_region("r3")
                .with_uuid(&other),
        )
        .unwrap();
    client.update(&moved("r2")).unwrap();
    let e = expect(&sub, EventKind::Registered, None, &uuid);
    assert_eq!(e.new_status, Some(Status::Up));
    client.delete(&uuid).unwrap();
    expect(&sub, EventKind::Down, Some(DownReason::Deleted), &uuid);
    expect(&sub, EventKind::Removed, None, &uuid);
    assert!(
        sub.recv_timeout(Duration::from_millis(300))
            .unwrap()
            .is_none()
    );
}

/// Kind, reason, uuid, old and new status of an event.
type Seen = (
    EventKind,
    Option<DownReason>,
    String,
    Option<Status>,
    Option<Status>,
);

/// The same set semantics when the moves are only learnt from a re-list
/// (the history that held them was compacted while the watch was cut).
#[test]
fn moves_learnt_from_a_resync_enter_and_leave_the_set_as_live_ones_do() {
    let etcd = Etcd::start();
    let ns = namespace("setresync");
    let raw = etcd.raw();
    let proxy = Proxy::start(&etcd.endpoint());
    let writer = connect(&etcd.endpoints(), &ns, TTL);
    let watcher = connect(&[proxy.endpoint()], &ns, 30);
    let leaving = writer
        .update(&Service::new("t", "leaving").with_region("r2"))
        .unwrap();
    let entering = writer
        .update(&Service::new("t", "entering").with_region("r1"))
        .unwrap();
    let sub = watcher
        .subscribe(
            &Filter::all().region("r2"),
            &SubscribeOptions {
                snapshot: true,
                ..opts()
            },
        )
        .unwrap();
    expect(&sub, EventKind::Existing, None, &leaving);
    proxy.cut();
    assert!(wait_until(Duration::from_secs(10), || watcher
        .view()
        .map_or(true, |v| !v.is_connected())));
    writer
        .update(
            &Service::new("t", "leaving")
                .with_region("r1")
                .with_uuid(&leaving),
        )
        .unwrap();
    writer
        .update(
            &Service::new("t", "entering")
                .with_region("r2")
                .with_uuid(&entering),
        )
        .unwrap();
    raw.compact(raw.revision());
    proxy.heal();
    expect(&sub, EventKind::Resync, None, "");
    let mut got: Vec<Seen> = (0..2)
        .map(|_| {
            let e = next(&sub, "the differences");
            (e.kind, e.reason, e.uuid, e.old_status, e.new_status)
        })
        .collect();
    got.sort_by(|a, b| a.2.cmp(&b.2));
    let mut want = vec![
        (
            EventKind::Removed,
            Some(DownReason::Moved),
            leaving.clone(),
            Some(Status::Up),
            None,
        ),
        (
            EventKind::Registered,
            None,
            entering.clone(),
            None,
            Some(Status::Up),
        ),
    ];
    want.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(got, want);
    assert!(
        sub.recv_timeout(Duration::from_millis(300))
            .unwrap()
            .is_none()
    );
}

#[test]
fn snapshot_events_count_as_delivered() {
    let etcd = Etcd::start();
    let ns = namespace("snapcount");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    for h in ["a", "b", "c"] {
        client.update(&Service::new("t", h)).unwrap();
    }
    let before = client.stats().events_delivered;
    let sub = client
        .subscribe(
            &Filter::default(),
            &SubscribeOptions {
                snapshot: true,
                ..SubscribeOptions::default()
            },
        )
        .unwrap();
    assert_eq!(client.stats().events_delivered, before + 3);
    for _ in 0..3 {
        let e = sub.recv_timeout(Duration::from_secs(5)).unwrap().unwrap();
        assert_eq!(e.kind, EventKind::Existing);
    }
}
