//! Issue 30, findings 1, 2, 6 and 9, and the library bugs the real-etcd model
//! test found (refusals from memory, exclusive vs an own DOWN, closed after a
//! lift): the owner's rules where another client (an operator, a second
//! daemon, the original Python library) meets it, and close. Each test
//! failed on the code before the fix; each checks etcd's keys with a raw
//! client, not with the library.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use etcd_client::{EventType, WatchOptions};
use os_lively::{ErrorKind, Service, Status};

const TTL: u64 = 3;

fn record(raw: &Raw, ns: &str, uuid: &str) -> Option<Service> {
    raw.get(&format!("{ns}/services/by-uuid/{uuid}"))
        .map(|kv| Service::from_bytes(&kv.value).expect("a record that decodes"))
}

fn up_key(raw: &Raw, ns: &str, uuid: &str) -> Option<RawKv> {
    raw.get(&format!("{ns}/services/by-status/UP/{uuid}"))
}

fn down_key(raw: &Raw, ns: &str, uuid: &str) -> Option<RawKv> {
    raw.get(&format!("{ns}/services/by-status/DOWN/{uuid}"))
}

/// Samples `f` every 20 ms for `span`; the first sample where it is false.
fn always_for(span: Duration, mut f: impl FnMut() -> bool) -> Result<(), Duration> {
    let start = Instant::now();
    while start.elapsed() < span {
        if !f() {
            return Err(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Finding 1: a heartbeat service whose main loop hangs goes DOWN (missed);
/// an operator's down then up from another client must not make it UP,
/// not even for a moment: its owner has not checked in. When the owner
/// checks in again, it is UP.
#[test]
fn an_operators_up_from_another_client_never_makes_a_missed_service_up() {
    let etcd = Etcd::start();
    let ns = namespace("missedup");
    let raw = etcd.raw();
    let owner = connect(&etcd.endpoints(), &ns, TTL);
    let operator = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = owner
        .update(&Service::new("t", "h").with_heartbeat(Duration::from_millis(300)))
        .unwrap();
    // The main loop hangs: no check-in.
    assert!(
        wait_until(Duration::from_secs(5), || record(&raw, &ns, &uuid)
            .is_some_and(|s| s.heartbeat_missed)
            && up_key(&raw, &ns, &uuid).is_none()),
        "DOWN (missed)"
    );
    operator.down(&uuid, "look", 0, 0).unwrap();
    // The owner has seen the hold (its DOWN key names the owner's lease),
    // so a lift knows where an UP key would go.
    let owner_lease = format!("{:x}", owner.stats().lease_id);
    assert!(
        wait_until(Duration::from_secs(2 * TTL), || down_key(&raw, &ns, &uuid)
            .is_some_and(|kv| kv.value_str() == owner_lease)),
        "the hold names the owner: {:?}",
        down_key(&raw, &ns, &uuid)
    );
    operator.up(&uuid).unwrap();
    // Longer than the owner's check period (TTL/3): no sample sees it UP.
    let verdict = always_for(Duration::from_millis(1500), || {
        up_key(&raw, &ns, &uuid).is_none()
    });
    assert_eq!(verdict, Ok(()), "UP key on the hung daemon's lease");
    let rec = record(&raw, &ns, &uuid).unwrap();
    assert_eq!(rec.status, Status::Down);
    assert!(rec.heartbeat_missed, "still missed: {rec:?}");
    assert!(!rec.forced_down, "the hold is lifted: {rec:?}");
    assert!(!operator.is_up(&uuid).unwrap());
    // The main loop lives again: UP on the owner's lease.
    let ticking = Arc::new(AtomicBool::new(true));
    let ticker = {
        let (c, u, t) = (owner.clone(), uuid.clone(), ticking.clone());
        std::thread::spawn(move || {
            while t.load(Ordering::SeqCst) {
                let _ = c.heartbeat(&u);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    assert!(
        wait_until(Duration::from_secs(5), || up_key(&raw, &ns, &uuid)
            .is_some_and(|kv| kv.lease == owner.stats().lease_id)),
        "UP again after check-ins"
    );
    ticking.store(false, Ordering::SeqCst);
    ticker.join().unwrap();
}

/// Finding 1, the other order: the hold comes first, then the main loop
/// hangs while held; a lift from another client leaves it DOWN (missed).
#[test]
fn a_service_that_hangs_while_held_stays_down_when_another_client_lifts_it() {
    let etcd = Etcd::start();
    let ns = namespace("heldhang");
    let raw = etcd.raw();
    let owner = connect(&etcd.endpoints(), &ns, TTL);
    let operator = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = owner
        .update(&Service::new("t", "h").with_heartbeat(Duration::from_millis(400)))
        .unwrap();
    operator.down(&uuid, "look", 0, 0).unwrap();
    // The main loop hangs while held, for several deadlines (the owner's
    // record says missed once it noticed; the lift must be right either
    // way).
    wait_until(Duration::from_secs(TTL), || {
        record(&raw, &ns, &uuid).is_some_and(|s| s.forced_down && s.heartbeat_missed)
    });
    operator.up(&uuid).unwrap();
    let verdict = always_for(Duration::from_millis(1500), || {
        up_key(&raw, &ns, &uuid).is_none()
    });
    assert_eq!(verdict, Ok(()), "UP key on the hung daemon's lease");
    assert!(record(&raw, &ns, &uuid).unwrap().heartbeat_missed);
}

/// Finding 2: `exclusive` refuses a takeover while the holder is held or
/// missed (no UP key, its lease alive), naming the holder; once the
/// holder's lease is gone it succeeds.
#[test]
fn exclusive_refuses_while_the_holder_lives_whatever_its_phase() {
    let etcd = Etcd::start();
    let ns = namespace("exclheld");
    let raw = etcd.raw();
    let holder = connect(&etcd.endpoints(), &ns, TTL);
    let operator = connect(&etcd.endpoints(), &ns, TTL);
    let rival = connect(&etcd.endpoints(), &ns, TTL);
    // Held by an operator.
    let held = holder.update(&Service::new("t", "held")).unwrap();
    operator.down(&held, "swap", 0, 0).unwrap();
    let err = rival
        .update(&Service::new("t", "held").exclusive())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let lease = format!("{:x}", holder.stats().lease_id);
    assert!(err.message().contains(&lease), "names the holder: {err}");
    let rec = record(&raw, &ns, &held).unwrap();
    assert!(rec.forced_down, "nothing written: {rec:?}");
    assert!(up_key(&raw, &ns, &held).is_none());
    // Missed: the main loop hangs.
    let missed = holder
        .update(&Service::new("t", "missed").with_heartbeat(Duration::from_millis(300)))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || record(&raw, &ns, &missed)
            .is_some_and(|s| s.heartbeat_missed)),
        "missed"
    );
    let err = rival
        .update(&Service::new("t", "missed").exclusive())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.message().contains(&lease), "names the holder: {err}");
    assert!(record(&raw, &ns, &missed).unwrap().heartbeat_missed);
    // The holder's process ends: its lease is gone, the takeover is allowed.
    holder.close().unwrap();
    assert_eq!(
        rival
            .update(&Service::new("t", "missed").exclusive())
            .unwrap(),
        missed
    );
    assert_eq!(
        up_key(&raw, &ns, &missed).map(|kv| kv.lease),
        Some(rival.stats().lease_id)
    );
    assert_eq!(
        rival
            .update(&Service::new("t", "held").exclusive())
            .unwrap(),
        held
    );
    assert!(record(&raw, &ns, &held).unwrap().forced_down, "still held");
}

/// The UP- and DOWN-key changes under `prefix` since `from` (replayed from
/// etcd's history): (revision, put?, key, value).
fn history(raw: &Raw, prefix: &str, from: i64) -> Vec<(i64, bool, String, String)> {
    let end = raw.revision();
    let mut client = raw.client();
    raw.block_on(async move {
        let mut stream = client
            .watch(
                prefix,
                Some(WatchOptions::new().with_prefix().with_start_revision(from)),
            )
            .await
            .expect("watch");
        let mut out = Vec::new();
        let mut last = 0;
        while last < end {
            let Ok(Some(resp)) = tokio::time::timeout(Duration::from_secs(5), stream.message())
                .await
                .expect("history in time")
            else {
                break;
            };
            for e in resp.events() {
                let Some(kv) = e.kv() else { continue };
                last = last.max(kv.mod_revision());
                out.push((
                    kv.mod_revision(),
                    e.event_type() == EventType::Put,
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    String::from_utf8_lossy(kv.value()).into_owned(),
                ));
            }
            if !resp.created()
                && resp.events().is_empty()
                && resp.header().is_some_and(|h| h.revision() >= end)
            {
                break;
            }
        }
        out
    })
}

/// Finding 6, first half: close is final. Writers keep changing the
/// services while the client closes; after a service's close mark no UP
/// key of it is ever put again.
#[test]
fn no_up_key_is_put_after_a_close_mark() {
    let etcd = Etcd::start();
    let ns = namespace("closefinal");
    let raw = etcd.raw();
    let mut puts_after_mark = Vec::new();
    for round in 0..8 {
        let from = raw.revision() + 1;
        let client = connect(&etcd.endpoints(), &ns, 30);
        let uuids: Vec<String> = (0..24)
            .map(|i| {
                client
                    .update(&Service::new("t", &format!("{round}-{i}")))
                    .unwrap()
            })
            .collect();
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let c = client.clone();
                let uuids = uuids.clone();
                std::thread::spawn(move || {
                    for n in 0usize.. {
                        let i = (n * 4 + w) % uuids.len();
                        let s = Service::new("t", &format!("{round}-{i}"))
                            .with_uuid(&uuids[i])
                            .with_region(&format!("r{}", n % 2));
                        if c.update(&s).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(150));
        client.close().unwrap();
        for w in writers {
            w.join().unwrap();
        }
        let status = format!("{ns}/services/by-status/");
        let mut marked = std::collections::HashSet::new();
        for (rev, put, key, value) in history(&raw, &status, from) {
            let Some(rest) = key.strip_prefix(&status) else {
                continue;
            };
            let (which, uuid) = rest.split_once('/').unwrap();
            if which == "DOWN" && put && value == "closed" {
                marked.insert(uuid.to_string());
            } else if which == "UP" && put && marked.contains(uuid) {
                puts_after_mark.push((round, rev, uuid.to_string()));
            }
        }
        assert!(!marked.is_empty(), "round {round}: close marked nothing");
        assert!(raw.keys(&format!("{ns}/services/by-status/UP/")).is_empty());
    }
    assert!(
        puts_after_mark.is_empty(),
        "UP keys put after their close mark: {puts_after_mark:?}"
    );
}

/// Finding 6, second half: close is bounded and does not give up on the
/// revoke while etcd is slow: with every round trip taking most of a
/// request timeout, close still revokes the lease (its services DOWN at
/// once, not a TTL later) and returns within its stated bound (three
/// request timeouts).
#[test]
fn close_revokes_through_a_slow_etcd_within_its_bound() {
    let etcd = Etcd::start();
    let ns = namespace("closeslow");
    let raw = etcd.raw();
    let proxy = Proxy::start(&etcd.endpoint());
    let request_timeout = Duration::from_secs(1);
    let mut cfg = config(&[proxy.endpoint()], &ns, 30);
    cfg.request_timeout(request_timeout);
    let client = os_lively::Client::connect(&cfg).unwrap();
    let uuids: Vec<String> = (0..3)
        .map(|i| client.update(&Service::new("t", &format!("h{i}"))).unwrap())
        .collect();
    let lease = client.stats().lease_id;
    proxy.delay(Duration::from_millis(300));
    let started = Instant::now();
    let result = client.close();
    let took = started.elapsed();
    proxy.heal();
    println!("close through a slow etcd: {result:?} in {took:?}");
    assert!(
        took < 3 * request_timeout + Duration::from_millis(500),
        "close took {took:?}"
    );
    assert!(result.is_ok(), "close: {result:?} after {took:?}");
    for u in &uuids {
        assert!(up_key(&raw, &ns, u).is_none(), "{u} still UP after close");
    }
    assert!(raw.lease_ttl(lease) <= 0, "lease {lease:x} still alive");
}

/// Finding 9: identity is type+host. The original Python library
/// registering the same type+host under a fresh uuid (DOWN, as it writes a
/// registration nobody keeps alive) does not lock our owner out: its
/// `update(uuid)` takes the type+host back under its own uuid (the stale
/// duplicate removed). A Python registration UP on a live lease is a live
/// holder: a conflict naming it, until that lease is gone.
#[test]
fn a_python_registration_with_a_fresh_uuid_does_not_lock_the_owner_out() {
    let etcd = Etcd::start();
    let ns = namespace("pyfresh");
    let raw = etcd.raw();
    let owner = connect(&etcd.endpoints(), &ns, TTL);
    let ours = owner.update(&Service::new("t", "h")).unwrap();
    let fresh = "0123456789abcdef0123456789abcdef";
    python_register(&raw, &ns, "t", "h", fresh, "r");
    let th = format!("{ns}/services/by-type-host/t/h");
    assert_eq!(raw.get(&th).unwrap().value_str(), fresh);
    assert_eq!(
        owner
            .update(&Service::new("t", "h").with_uuid(&ours))
            .unwrap(),
        ours
    );
    assert_eq!(raw.get(&th).unwrap().value_str(), ours, "the index is ours");
    assert_eq!(
        up_key(&raw, &ns, &ours).map(|kv| kv.lease),
        Some(owner.stats().lease_id)
    );
    assert!(record(&raw, &ns, fresh).is_none(), "the duplicate is gone");
    assert!(down_key(&raw, &ns, fresh).is_none());
    // Again, UP on a lease the Python process keeps alive.
    let py_lease = raw.grant(30);
    let again = "fedcba9876543210fedcba9876543210";
    python_register(&raw, &ns, "t", "h", again, "r");
    let mut s = record(&raw, &ns, again).unwrap();
    s.status = Status::Up;
    raw.put(&format!("{ns}/services/by-uuid/{again}"), &s.to_bytes());
    raw.delete(&format!("{ns}/services/by-status/DOWN/{again}"));
    raw.put_with_lease(
        &format!("{ns}/services/by-status/UP/{again}"),
        b"",
        py_lease,
    );
    let err = owner
        .update(&Service::new("t", "h").with_uuid(&ours))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.message().contains(again), "names the holder: {err}");
    assert_eq!(raw.get(&th).unwrap().value_str(), again, "nothing written");
    raw.revoke(py_lease);
    assert_eq!(
        owner
            .update(&Service::new("t", "h").with_uuid(&ours))
            .unwrap(),
        ours
    );
    assert_eq!(raw.get(&th).unwrap().value_str(), ours);
    assert!(record(&raw, &ns, again).is_none());
}

/// Finding 3: two live non-exclusive daemons on one type+host, both
/// calling `update()` on an interval (the original library's usage). The
/// second takes it over once; the first learns it from its next `update()`
/// and `heartbeat()` (Conflict naming the holder's lease), writes nothing,
/// and takes it back only when the holder is gone or it asks explicitly
/// (`take_over`). Before: they took it from each other at every update.
#[test]
fn two_live_daemons_on_one_type_host_flip_at_most_once() {
    let etcd = Etcd::start();
    let ns = namespace("flipflop");
    let raw = etcd.raw();
    let first = connect(&etcd.endpoints(), &ns, TTL);
    let svc = Service::new("t", "h").with_heartbeat(Duration::from_secs(60));
    let uuid = first.update(&svc).unwrap();
    let th = ["--type", "t", "--host", "h"];
    let mut second = Registrant::start(&etcd.endpoints(), &ns, TTL, &th);
    assert_eq!(second.uuid, uuid, "identity is type+host");
    let theirs = up_key(&raw, &ns, &uuid).expect("UP").lease;
    assert_ne!(theirs, first.stats().lease_id, "taken over once");
    let from = raw.revision() + 1;
    let named = format!("lease {theirs:x}");
    // Both keep updating for 2 s.
    let until = Instant::now() + Duration::from_secs(2);
    let mut refused = 0;
    while Instant::now() < until {
        second.update();
        match first.update(&svc) {
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
                assert!(e.message().contains(&named), "names the holder: {e}");
                refused += 1;
            }
            Ok(u) => panic!("the displaced daemon took {u} back"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(refused >= 5, "{refused} updates");
    let e = first.heartbeat(&uuid).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.message().contains(&named), "{e}");
    // A last write under the prefix, so the history has an end to reach.
    raw.put(&format!("{ns}/services/by-status/end"), b"");
    let flips: Vec<_> = history(&raw, &format!("{ns}/services/by-status/"), from)
        .into_iter()
        .filter(|(_, _, key, _)| key.ends_with(&uuid))
        .collect();
    assert!(flips.is_empty(), "UP/DOWN keys changed: {flips:?}");
    assert_eq!(up_key(&raw, &ns, &uuid).unwrap().lease, theirs);
    assert_eq!(first.stats().registrations_lost, 1);

    // The holder crashes: the first, alive and updating, gets it back once
    // the holder's lease is gone (not stuck DOWN).
    second.kill();
    let mine = first.stats().lease_id;
    assert!(
        wait_until(Duration::from_secs(3 * TTL), || {
            first.update(&svc).is_ok()
                && up_key(&raw, &ns, &uuid).is_some_and(|kv| kv.lease == mine)
        }),
        "UP on the live daemon's lease after the holder died"
    );
    assert!(first.heartbeat(&uuid).is_ok());

    // Taken over again: retaken only when asked explicitly.
    let mut third = Registrant::start(&etcd.endpoints(), &ns, TTL, &th);
    let theirs = up_key(&raw, &ns, &uuid).unwrap().lease;
    assert_ne!(theirs, mine);
    assert_eq!(first.update(&svc).unwrap_err().kind(), ErrorKind::Conflict);
    assert_eq!(first.take_over(&svc).unwrap(), uuid);
    assert_eq!(up_key(&raw, &ns, &uuid).unwrap().lease, mine);
    assert!(first.heartbeat(&uuid).is_ok());
    third.kill();
}

/// Finding 4: two lease losses in a row, the second before the owner put
/// its holds on its second lease (etcd stalls right after the re-grant,
/// longer than a request timeout and the TTL). Before, the owner
/// remembered one previous lease and did not start the re-grant's check
/// again: holds still naming the first lease counted as taken over, lost
/// for good (an operator's lift then left them DOWN). Each hold must end up
/// naming the owner's current lease, and a lift makes each UP.
#[test]
fn two_lease_losses_in_a_row_never_leave_a_held_service_stuck_down() {
    const N: usize = 10;
    let etcd = Etcd::start();
    let ns = namespace("twoloss");
    let raw = etcd.raw();
    let owner = connect(&etcd.endpoints(), &ns, TTL);
    let operator = connect(&etcd.endpoints(), &ns, TTL);
    let uuids: Vec<String> = (0..N)
        .map(|i| owner.update(&Service::new("t", &format!("h{i}"))).unwrap())
        .collect();
    for u in &uuids {
        operator.down(u, "swap", 0, 0).unwrap();
    }
    let first = owner.stats().lease_id;
    let first_hex = format!("{first:x}");
    assert!(
        wait_until(Duration::from_secs(2 * TTL), || uuids.iter().all(|u| {
            down_key(&raw, &ns, u).is_some_and(|kv| kv.value_str() == first_hex)
        })),
        "every hold names the owner's lease"
    );
    raw.revoke(first);
    // etcd stalls as soon as it granted the new lease, so that the lease
    // expires and the owner's check on it times out.
    let until = Instant::now() + Duration::from_secs(2 * TTL);
    let second = loop {
        if let Some(l) = raw.leases().into_iter().find(|&l| l != first) {
            break l;
        }
        assert!(Instant::now() < until, "no new lease granted");
        std::thread::sleep(Duration::from_millis(1));
    };
    etcd.pause();
    std::thread::sleep(Duration::from_millis(TTL * 1000 + 1500));
    etcd.resume();
    let mut current = 0;
    let ok = wait_until(Duration::from_secs(4 * TTL), || {
        current = owner.stats().lease_id;
        let hex = format!("{current:x}");
        current != first
            && current != second
            && uuids
                .iter()
                .all(|u| down_key(&raw, &ns, u).is_some_and(|kv| kv.value_str() == hex))
    });
    let stale = uuids
        .iter()
        .filter(|u| {
            down_key(&raw, &ns, u).is_none_or(|kv| kv.value_str() != format!("{current:x}"))
        })
        .count();
    assert!(ok, "{stale} holds do not name the current lease");
    assert_eq!(owner.stats().registrations_lost, 0);
    for u in &uuids {
        operator.up(u).unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(2 * TTL), || uuids.iter().all(|u| {
            up_key(&raw, &ns, u).is_some_and(|kv| kv.lease == owner.stats().lease_id)
        })),
        "every lifted service UP on the owner's lease"
    );
}

/// Finding 5: a missed record whose DOWN key names no owner (an older
/// writer's) is not judged missed by a client that set its own copy DOWN:
/// that client stays DOWN, counts no missed heartbeat and does not look at
/// it again and again.
#[test]
fn a_client_that_set_its_copy_down_does_not_judge_an_ownerless_miss() {
    let etcd = Etcd::start();
    let ns = namespace("ownerless");
    let raw = etcd.raw();
    let client = connect(&etcd.endpoints(), &ns, TTL);
    // One service UP: the client has a lease, whose keepalives run checks.
    client.update(&Service::new("t", "up")).unwrap();
    let mut svc = Service::new("t", "h");
    svc.status = Status::Down;
    let uuid = client.update(&svc).unwrap();
    // Another writer records a missed heartbeat, naming no owner.
    let mut missed = record(&raw, &ns, &uuid).unwrap();
    missed.heartbeat = Some(Duration::from_secs(1));
    missed.heartbeat_missed = true;
    raw.put(&format!("{ns}/services/by-uuid/{uuid}"), &missed.to_bytes());
    raw.put(&format!("{ns}/services/by-status/DOWN/{uuid}"), b"");
    // Several checks (the revision moved): each would have judged it.
    let until = Instant::now() + Duration::from_secs(2 * TTL);
    while Instant::now() < until {
        raw.put(&format!("{ns}/elsewhere"), b"x");
        std::thread::sleep(Duration::from_millis(300));
    }
    let stats = client.stats();
    assert_eq!(stats.heartbeats_missed, 0, "judged missed: {stats:?}");
    assert!(up_key(&raw, &ns, &uuid).is_none());
    assert!(
        record(&raw, &ns, &uuid).unwrap().heartbeat_missed,
        "not ours to change"
    );
}

/// Finding 8: with more than 16 services held DOWN, an operator's change
/// (a delete; a hold with a window) is noticed within about one TTL, not
/// at the full checks (12 TTLs when idle).
#[test]
fn many_services_held_down_are_still_watched_within_a_ttl() {
    const N: usize = 40;
    const TTL: u64 = 2;
    let etcd = Etcd::start();
    let ns = namespace("survey");
    let raw = etcd.raw();
    let owner = connect(&etcd.endpoints(), &ns, TTL);
    let operator = connect(&etcd.endpoints(), &ns, TTL);
    // One service UP: the owner has a lease, whose keepalives run checks.
    owner.update(&Service::new("t", "up")).unwrap();
    let uuids: Vec<String> = (0..N)
        .map(|i| {
            let mut s = Service::new("t", &format!("h{i}"));
            s.status = Status::Down;
            owner.update(&s).unwrap()
        })
        .collect();
    // Settled: a check found everything in place.
    std::thread::sleep(Duration::from_secs(1));
    let start = Instant::now();
    assert!(operator.delete(&uuids[0]).unwrap());
    assert!(
        wait_until(Duration::from_secs(2 * TTL), || owner
            .stats()
            .registrations_lost
            == 1),
        "the delete noticed within 2 TTL"
    );
    let noticed = start.elapsed();
    // A hold with a window: lifted by the owner when it ends.
    let end = now_secs() + 2;
    operator.down(&uuids[N - 1], "short", 0, end).unwrap();
    assert!(
        wait_until(Duration::from_secs(2 + 2 * TTL), || record(
            &raw,
            &ns,
            &uuids[N - 1]
        )
        .is_some_and(|s| !s.forced_down)),
        "the window's end lifted it"
    );
    let rec = record(&raw, &ns, &uuids[N - 1]).unwrap();
    assert_eq!(rec.status, Status::Down, "its owner's own DOWN underneath");
    assert!(now_secs() >= end);
    eprintln!("delete noticed after {noticed:?}");
}

/// Finding 3, the other half: a daemon displaced by another live one that
/// only checks in (no further `update()`) is UP again on its own lease once
/// the holder crashes: a live owner that wants UP is never stuck DOWN.
#[test]
fn a_displaced_daemon_that_checks_in_is_up_again_when_the_holder_crashes() {
    let etcd = Etcd::start();
    let ns = namespace("retake");
    let raw = etcd.raw();
    let first = connect(&etcd.endpoints(), &ns, TTL);
    let svc = Service::new("t", "h").with_heartbeat(Duration::from_secs(2));
    let uuid = first.update(&svc).unwrap();
    let mut second =
        Registrant::start(&etcd.endpoints(), &ns, TTL, &["--type", "t", "--host", "h"]);
    assert_eq!(second.uuid, uuid);
    let ticking = Arc::new(AtomicBool::new(true));
    let ticker = {
        let (c, u, t) = (first.clone(), uuid.clone(), ticking.clone());
        std::thread::spawn(move || {
            while t.load(Ordering::SeqCst) {
                // Conflict while the other holds it: the daemon keeps going.
                let _ = c.heartbeat(&u);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    assert!(wait_until(Duration::from_secs(TTL), || first
        .heartbeat(&uuid)
        .is_err_and(|e| e.kind() == ErrorKind::Conflict)));
    second.kill();
    let mine = first.stats().lease_id;
    assert!(
        wait_until(Duration::from_secs(3 * TTL), || up_key(&raw, &ns, &uuid)
            .is_some_and(|kv| kv.lease == mine)),
        "UP again on the live daemon's lease"
    );
    assert!(first.heartbeat(&uuid).is_ok());
    ticking.store(false, Ordering::SeqCst);
    ticker.join().unwrap();
}

/// Library bug 6 (found by tests/model.rs): a client that forced down and
/// lifted another process's exclusive service remembered the UP key its
/// lift put on that process's lease; once that process died, its own
/// exclusive registration was refused ("held by another live client",
/// naming the dead lease) from that memory for as long as it lasted.
/// Failed before the fix (Conflict for over 10 s). About 4 s.
#[test]
fn an_exclusive_registration_after_a_lift_is_not_refused_by_a_dead_holder() {
    let etcd = Etcd::start();
    let ns = namespace("liftdead");
    let raw = etcd.raw();
    let mut child = Registrant::start(
        &etcd.endpoints(),
        &ns,
        TTL,
        &["--type", "t", "--host", "hc", "--exclusive"],
    );
    let uuid = child.uuid.clone();
    let a = connect(&etcd.endpoints(), &ns, TTL);
    a.down(&uuid, "look", 0, 0).unwrap();
    a.up(&uuid).unwrap();
    assert!(
        wait_until(Duration::from_secs(TTL), || up_key(&raw, &ns, &uuid)
            .is_some()),
        "UP again on the child's lease"
    );
    child.kill();
    // etcd drops the child's lease, and its UP key with it.
    assert!(
        wait_until(Duration::from_secs(3 * TTL), || up_key(&raw, &ns, &uuid)
            .is_none()),
        "the dead child's UP key expired"
    );
    assert!(down_key(&raw, &ns, &uuid).is_none());
    let got = a.update(&Service::new("t", "hc").exclusive());
    assert_eq!(got.as_deref().ok(), Some(uuid.as_str()), "{got:?}");
    assert_eq!(
        up_key(&raw, &ns, &uuid).map(|kv| kv.lease),
        Some(a.stats().lease_id)
    );
}

/// Library bug 7 (found by tests/model.rs): an owner that set its own
/// service DOWN still holds it (its lease lives), so an `exclusive`
/// registration elsewhere is refused; before the fix the DOWN key named
/// nobody and the exclusive registration took it over. Failed before the
/// fix (Ok). Under 1 s.
#[test]
fn exclusive_refuses_a_live_owners_own_down() {
    let etcd = Etcd::start();
    let ns = namespace("excldown");
    let raw = etcd.raw();
    let c0 = connect(&etcd.endpoints(), &ns, TTL);
    let c1 = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = c0.update(&Service::new("t", "h1")).unwrap();
    let mut down = Service::new("t", "h1");
    down.status = Status::Down;
    c0.update(&down).unwrap();
    let lease = format!("{:x}", c0.stats().lease_id);
    assert_eq!(
        down_key(&raw, &ns, &uuid).map(|kv| kv.value_str()),
        Some(lease.clone()),
        "the DOWN key names its owner"
    );
    let err = c1.update(&Service::new("t", "h1").exclusive()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.message().contains(&lease), "names the holder: {err}");
    let rec = record(&raw, &ns, &uuid).unwrap();
    assert_eq!(rec.status, Status::Down, "nothing written: {rec:?}");
    // Its owner gone, the exclusive registration takes it.
    c0.close().unwrap();
    assert_eq!(
        c1.update(&Service::new("t", "h1").exclusive()).unwrap(),
        uuid
    );
}

/// Library bug 8 (found by tests/model.rs): a service its owner closed
/// reads `Closed`; an operator's down makes it `Forced`, and a lift by
/// any client leaves it `Closed` again (nobody keeps it UP), not
/// `Expired`, and binds no UP key. Failed before the fix (`Expired`).
/// Under 1 s.
#[test]
fn a_closed_service_stays_closed_through_a_down_and_a_lift() {
    use os_lively::DownReason;
    let etcd = Etcd::start();
    let ns = namespace("closedlift");
    let raw = etcd.raw();
    let owner = connect(&etcd.endpoints(), &ns, TTL);
    let operator = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = owner.update(&Service::new("t", "h")).unwrap();
    owner.close().unwrap();
    let reason = |c: &os_lively::Client| c.get(&uuid).unwrap().unwrap().down_reason();
    assert_eq!(reason(&operator), Some(DownReason::Closed));
    operator.down(&uuid, "look", 0, 0).unwrap();
    assert_eq!(reason(&operator), Some(DownReason::Forced));
    operator.up(&uuid).unwrap();
    assert_eq!(reason(&operator), Some(DownReason::Closed));
    assert!(up_key(&raw, &ns, &uuid).is_none());
    let rec = record(&raw, &ns, &uuid).unwrap();
    assert!(!rec.forced_down, "lifted: {rec:?}");
}
