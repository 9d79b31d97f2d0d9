//! A subscription's queue never holds more than its capacity, on every
//! path: a snapshot of many services, live changes it has no room for, and
//! the re-read after a compaction are told in chunks as the subscriber
//! takes events, and it still ends up knowing exactly what etcd holds.
//! Its own binary: the injected re-read is process-wide.

mod common;
#[path = "common/oracle.rs"]
mod oracle;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use oracle::{Snapshot, Truth};
use os_lively::{Event, EventKind, Filter, Service, Status, SubscribeOptions};

const TTL: u64 = 5;
const CAPACITY: usize = 40;

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

/// Each service as etcd holds it, decoded and judged by the test's oracle.
fn truth(raw: &Raw, ns: &str) -> HashMap<String, Truth> {
    Snapshot::read(raw, ns).services.into_iter().collect()
}

/// Registers `n` services named `prefix-i` from 4 threads.
fn register(client: &os_lively::Client, prefix: &str, n: usize) -> Vec<String> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(4)
                        .map(|i| {
                            client
                                .update(&Service::new("bounded", &format!("{prefix}-{i}")))
                                .expect("register")
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// Takes events until the subscriber knows what etcd holds, checking the
/// queue's bound after each; returns the kinds seen.
fn drain_to_truth(
    sub: &os_lively::Subscription,
    model: &mut HashMap<String, Truth>,
    raw: &Raw,
    ns: &str,
) -> Vec<EventKind> {
    let want = truth(raw, ns);
    let mut kinds = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while *model != want && Instant::now() < deadline {
        assert!(
            sub.pending() <= CAPACITY,
            "the queue holds {} events, capacity {CAPACITY}",
            sub.pending()
        );
        if let Some(e) = sub.recv_timeout(Duration::from_millis(200)).unwrap() {
            kinds.push(e.kind);
            apply(model, &e);
        }
    }
    let missing: Vec<_> = want.keys().filter(|u| !model.contains_key(*u)).collect();
    let extra: Vec<_> = model.keys().filter(|u| !want.contains_key(*u)).collect();
    assert!(
        *model == want,
        "the subscriber's state is not etcd's: {} missing, {} extra, {} differ",
        missing.len(),
        extra.len(),
        want.iter()
            .filter(|(u, t)| model.get(*u).is_some_and(|m| m != *t))
            .count()
    );
    kinds
}

#[test]
fn snapshots_overflows_and_resyncs_stay_within_the_queue_capacity() {
    let etcd = Etcd::start();
    let ns = namespace("bounded");
    let raw = etcd.raw();
    let writer = connect(&etcd.endpoints(), &ns, TTL);
    let uuids = register(&writer, "h", 400);

    // A snapshot of 400 services into a queue of 40.
    let reader = connect(&etcd.endpoints(), &ns, TTL);
    let sub = reader
        .subscribe(
            &Filter::all(),
            &SubscribeOptions {
                snapshot: true,
                queue_capacity: CAPACITY,
            },
        )
        .expect("subscribe");
    assert!(
        sub.pending() <= CAPACITY,
        "a snapshot of 400 queued {} events at once (capacity {CAPACITY})",
        sub.pending()
    );
    assert!(reader.stats().events_delivered <= CAPACITY as u64);
    // Changes while the snapshot is being told come after it.
    for u in &uuids[..30] {
        writer.down(u, "", 0, 0).expect("down");
    }
    let mut model = HashMap::new();
    let kinds = drain_to_truth(&sub, &mut model, &raw, &ns);
    let existing = kinds.iter().filter(|k| **k == EventKind::Existing).count();
    assert_eq!(existing, 400, "every service once as existing");
    let first_other = kinds.iter().position(|k| *k != EventKind::Existing);
    assert!(
        first_other.is_none_or(|i| i >= 400),
        "a change came before the snapshot ended: {kinds:?}"
    );

    // Live changes it has no room for: it falls behind and is told the
    // differences in chunks.
    for u in &uuids[30..130] {
        writer.down(u, "", 0, 0).expect("down");
    }
    for u in &uuids[130..170] {
        writer.delete(u).expect("delete");
    }
    register(&writer, "late", 60);
    assert!(sub.pending() <= CAPACITY, "queue grew to {}", sub.pending());
    let kinds = drain_to_truth(&sub, &mut model, &raw, &ns);
    assert!(
        kinds.contains(&EventKind::Resync),
        "overflow must be announced"
    );

    // A full re-read (as after a compaction) with changes the subscriber
    // has not taken yet.
    for u in &uuids[170..300] {
        writer.down(u, "", 0, 0).expect("down");
    }
    let resyncs = reader.stats().resyncs;
    os_lively::inject_resync();
    assert!(
        wait_until(Duration::from_secs(15), || reader.stats().resyncs > resyncs),
        "the re-read never happened"
    );
    for u in &uuids[300..340] {
        writer.delete(u).expect("delete");
    }
    assert!(sub.pending() <= CAPACITY, "queue grew to {}", sub.pending());
    drain_to_truth(&sub, &mut model, &raw, &ns);
}
