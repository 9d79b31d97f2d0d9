//! The blocking API from a program that also runs tokio: every thread that
//! is not the library's own runtime thread may call it, including tokio's
//! blocking pool, `block_in_place`, and a current-thread runtime's own
//! thread; and `close()` from any of them really revokes the lease.

mod common;
#[path = "common/oracle.rs"]
mod oracle;

use std::time::Duration;

use common::*;
use oracle::*;
use os_lively::{Client, EventKind, Filter, Service, SubscribeOptions};

/// Long enough that a lease left behind by a skipped revoke is still there
/// when the test looks.
const TTL: u64 = 30;

/// What one round of calls left behind, checked outside the runtime.
struct Round {
    uuid: String,
    lease: i64,
}

/// Connects, registers, asks, subscribes, views and closes: the whole
/// blocking API, on whatever thread runs it.
fn every_call(endpoints: &[String], ns: &str, host: &str) -> Round {
    let client = Client::connect(&config(endpoints, ns, TTL)).expect("connect");
    let uuid = client
        .update(&Service::new("tokio-svc", host))
        .expect("update");
    // The first UP registration grants the lease: 0 before it.
    let lease = client.stats().lease_id;
    assert!(client.is_up(&uuid).expect("is_up"));
    let sub = client
        .subscribe(
            &Filter::all().uuid(&uuid),
            &SubscribeOptions {
                snapshot: true,
                ..SubscribeOptions::default()
            },
        )
        .expect("subscribe");
    let first = sub
        .recv_timeout(Duration::from_secs(10))
        .expect("recv")
        .expect("a snapshot event");
    assert_eq!(first.kind, EventKind::Existing);
    assert_eq!(first.uuid, uuid);
    let view = client.view().expect("view");
    view.sync(Duration::from_secs(10)).expect("view sync");
    assert!(view.is_up(&uuid).expect("view is_up"));
    drop(sub);
    drop(view);
    client.close().expect("close");
    Round { uuid, lease }
}

/// The lease is gone and another client sees the service DOWN at once (the
/// TTL is far away). Checked in etcd itself: the lease's TTL is -1 and the
/// UP key it carried is gone.
fn assert_revoked(etcd: &Etcd, ns: &str, round: &Round, how: &str) {
    assert_ne!(round.lease, 0, "{how}: no lease was granted to check");
    let raw = etcd.raw();
    assert_eq!(
        raw.lease_ttl(round.lease),
        -1,
        "{how}: close() left the lease alive"
    );
    assert_eq!(
        raw.get(&up_key(ns, &round.uuid)),
        None,
        "{how}: the UP key outlived close()"
    );
    assert!(
        raw.get(&format!("{ns}/services/by-uuid/{}", round.uuid))
            .is_some(),
        "{how}: the record is gone: the UP key's absence proves nothing"
    );
    let observer = connect(&etcd.endpoints(), ns, TTL);
    assert!(
        !observer.is_up(&round.uuid).unwrap(),
        "{how}: the service is still UP after close()"
    );
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn every_call_works_from_spawn_blocking() {
    let etcd = Etcd::start();
    let ns = namespace("tokio_spawn_blocking");
    let eps = etcd.endpoints();
    let n = ns.clone();
    let rt = multi_thread();
    let round = rt
        .block_on(rt.spawn_blocking(move || every_call(&eps, &n, "h1")))
        .expect("the blocking task panicked");
    drop(rt);
    assert_revoked(&etcd, &ns, &round, "spawn_blocking");
}

#[test]
fn every_call_works_from_block_in_place() {
    let etcd = Etcd::start();
    let ns = namespace("tokio_block_in_place");
    let eps = etcd.endpoints();
    let n = ns.clone();
    let rt = multi_thread();
    let round = rt
        .block_on(
            rt.spawn(async move { tokio::task::block_in_place(|| every_call(&eps, &n, "h1")) }),
        )
        .expect("the task panicked");
    drop(rt);
    assert_revoked(&etcd, &ns, &round, "block_in_place");
}

#[test]
fn every_call_works_on_a_current_thread_runtimes_own_thread() {
    // What `#[tokio::main(flavor = "current_thread")]` does: the main
    // thread runs the runtime and calls us from inside its context.
    let etcd = Etcd::start();
    let ns = namespace("tokio_main");
    let eps = etcd.endpoints();
    let rt = current_thread();
    let round = rt.block_on(async { every_call(&eps, &ns, "h1") });
    drop(rt);
    assert_revoked(&etcd, &ns, &round, "current-thread block_on");

    // Only entered (a runtime guard held), not inside block_on.
    let rt = current_thread();
    let guard = rt.enter();
    let round = every_call(&eps, &ns, "h2");
    drop(guard);
    drop(rt);
    assert_revoked(&etcd, &ns, &round, "runtime context entered");
}

#[test]
fn every_call_works_from_a_plain_thread_of_a_tokio_program() {
    let etcd = Etcd::start();
    let ns = namespace("tokio_plain");
    let eps = etcd.endpoints();
    let n = ns.clone();
    let rt = multi_thread();
    // The runtime runs work of its own meanwhile.
    let ticker = rt.spawn(async {
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let round = std::thread::spawn(move || every_call(&eps, &n, "h1"))
        .join()
        .expect("the plain thread panicked");
    ticker.abort();
    drop(rt);
    assert_revoked(&etcd, &ns, &round, "plain thread");
}

#[test]
fn close_from_inside_a_runtime_context_revokes_a_client_connected_elsewhere() {
    let etcd = Etcd::start();
    let ns = namespace("tokio_close");
    let rt = multi_thread();
    let mut rounds = Vec::new();
    for (i, how) in ["spawn_blocking", "block_in_place", "current-thread"]
        .into_iter()
        .enumerate()
    {
        let client = connect(&etcd.endpoints(), &ns, TTL);
        let uuid = client
            .update(&Service::new("closer", &format!("h{i}")))
            .unwrap();
        let lease = client.stats().lease_id;
        // The lease the UP key is bound to in etcd, so the check after
        // close() looks at the real one.
        let up = etcd.raw().get(&up_key(&ns, &uuid)).expect("an UP key");
        assert_eq!(up.lease, lease, "{how}: stats name another lease");
        let closed = match how {
            "spawn_blocking" => rt
                .block_on(rt.spawn_blocking(move || client.close()))
                .unwrap(),
            "block_in_place" => rt
                .block_on(
                    rt.spawn(async move { tokio::task::block_in_place(move || client.close()) }),
                )
                .unwrap(),
            _ => current_thread().block_on(async move { client.close() }),
        };
        assert!(closed.is_ok(), "{how}: close() failed: {closed:?}");
        rounds.push((how, Round { uuid, lease }));
    }
    drop(rt);
    for (how, round) in &rounds {
        assert_revoked(&etcd, &ns, round, how);
    }
}
