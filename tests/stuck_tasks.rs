//! A background task that returns or hangs is noticed, reported and
//! restarted — never a client that goes on answering OK from a lease
//! nobody renews or a view nobody updates. Alone in its binary: the
//! injected faults are process-wide, and another test's client would catch
//! one meant for this one's.

mod common;

use std::time::{Duration, Instant};

use common::*;
use os_lively::{ErrorKind, Service};

const TTL: u64 = 2;

/// A client whose paced tasks are judged quickly: the lease's pace is
/// max(TTL, 2 s) + the request timeout (3 s here), the watch's twice the
/// request timeout + two quiet periods + 5 s (8 s here).
fn quick_client(endpoints: &[String], ns: &str) -> os_lively::Client {
    let mut cfg = config(endpoints, ns, TTL);
    cfg.request_timeout(Duration::from_secs(1));
    os_lively::Client::connect(&cfg).expect("connect")
}

/// Asserts `uuid` reads UP from `observer` for `span` (a lapsed lease shows
/// as DOWN within it).
fn stays_up(observer: &os_lively::Client, uuid: &str, span: Duration, what: &str) {
    let from = Instant::now();
    while from.elapsed() < span {
        assert!(
            observer.is_up(uuid).expect("is_up"),
            "{what}: DOWN {:?} in",
            from.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Registers `host` from `observer` and waits until `view` has it.
fn reaches_view(
    observer: &os_lively::Client,
    view: &os_lively::View,
    host: &str,
    wait: Duration,
) -> bool {
    let uuid = observer
        .update(&Service::new("stuck", host))
        .expect("register from the observer");
    wait_until(wait, || view.is_up(&uuid).unwrap_or(false))
}

#[test]
fn returned_and_hung_tasks_are_reported_and_restarted() {
    let etcd = Etcd::start();
    let ns = namespace("stuck");
    let observer = connect(&etcd.endpoints(), &ns, TTL);
    let client = quick_client(&etcd.endpoints(), &ns);
    let uuid = client
        .update(&Service::new("stuck", "host-1"))
        .expect("register");
    let view = client.view().expect("view");

    // 1. The lease and the watch return: both are restarted, keepalives go
    // on (UP for longer than two TTLs) and the view follows a change.
    os_lively::inject_return("lease");
    os_lively::inject_return("watch");
    stays_up(
        &observer,
        &uuid,
        Duration::from_secs(2 * TTL + 1),
        "after the lease returned",
    );
    // The watch returns at its checkpoint, after the change it was waiting
    // for (or its quiet period): the next change comes through its restart.
    assert!(reaches_view(
        &observer,
        &view,
        "host-2",
        Duration::from_secs(10)
    ));
    assert!(
        reaches_view(&observer, &view, "host-3", Duration::from_secs(10)),
        "the view missed a change after its watch returned"
    );
    client
        .ping()
        .expect("a restarted task leaves the client healthy");

    // 2. The lease hangs: calls report it, naming the task, and it is
    // restarted: the service is UP again (its lease re-granted if it
    // lapsed meanwhile) and calls succeed.
    let hung_at = Instant::now();
    os_lively::inject_hang("lease");
    let mut reported = None;
    while hung_at.elapsed() < Duration::from_secs(15) && reported.is_none() {
        if let Err(e) = client.ping() {
            reported = Some(e);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let e = reported.expect("a hung lease was never reported");
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
    assert!(
        e.message().contains("lease") && e.message().contains("hung"),
        "{e}"
    );
    assert!(
        wait_until(Duration::from_secs(15), || client.ping().is_ok()
            && observer.is_up(&uuid).unwrap_or(false)),
        "the hung lease was not restarted"
    );
    stays_up(
        &observer,
        &uuid,
        Duration::from_secs(2 * TTL + 1),
        "after the lease hung",
    );

    // 3. The watch hangs while nobody calls: the lease's own wakeups notice
    // it and it is restarted, so the view (read without any call) follows
    // changes again.
    os_lively::inject_hang("watch");
    // It hangs at its checkpoint, after the change it was waiting for.
    assert!(reaches_view(
        &observer,
        &view,
        "host-4",
        Duration::from_secs(10)
    ));
    assert!(
        reaches_view(&observer, &view, "host-5", Duration::from_secs(25)),
        "the view never saw a change after its watch hung"
    );

    // 4. A task that keeps returning is given up: calls fail naming it.
    drop(view);
    client.close().expect("close");
    let mut cfg = config(&etcd.endpoints(), &ns, TTL);
    cfg.call_polling(Duration::from_millis(1));
    let polling = os_lively::Client::connect(&cfg).expect("connect");
    let given_up = wait_until(Duration::from_secs(20), || {
        os_lively::inject_return("call-polling");
        match polling.ping() {
            Err(e) => e.message().contains("call-polling") && e.message().contains("stopped"),
            Ok(()) => false,
        }
    });
    assert!(
        given_up,
        "a task returning again and again was never given up"
    );
    let e = polling.ping().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
}
