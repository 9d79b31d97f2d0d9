//! A panic in one of the library's background tasks is caught, counted and
//! recovered from (or, when it keeps coming, fails calls loudly and makes
//! views Stale) — never a silent frozen answer. Alone in its binary: the
//! injected panics are process-wide, and another test's client would catch
//! one meant for this one's.

mod common;

use std::time::{Duration, Instant};

use common::*;
use os_lively::{ErrorKind, Service, SubscribeOptions};

const TTL: u64 = 3;

/// Every background task gets one injected panic: each is caught, counted
/// and restarted, and the client goes on telling the truth. Then the watch
/// keeps panicking: it is given up, calls fail naming it, views say Stale.
/// One test: the injected panics are process-wide.
#[test]
fn a_panic_in_any_background_task_is_caught_and_the_task_restarted() {
    let etcd = Etcd::start();
    let ns = namespace("panics");
    // Two spellings of one member, so endpoint steering runs too; call
    // polling opted in, so its task runs.
    let port = etcd.member().client_port();
    let endpoints = vec![
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
    ];
    let mut cfg = config(&endpoints, &ns, TTL);
    cfg.call_polling(Duration::from_millis(1));
    let tasks = ["lease", "owner", "watch", "steering", "call-polling"];
    for task in tasks {
        os_lively::inject_panic(task);
    }
    let client = os_lively::Client::connect(&cfg).expect("connect");
    let uuid = client
        .update(&Service::new("panicky", "host-1"))
        .expect("register");
    let view = client.view().expect("view");
    let sub = client
        .subscribe(&os_lively::Filter::default(), &SubscribeOptions::default())
        .expect("subscribe");
    assert!(
        wait_until(Duration::from_secs(30), || {
            let _ = client.is_up(&uuid); // wakes the call polling
            client.stats().task_panics >= tasks.len() as u64
        }),
        "panics caught: {} of {}",
        client.stats().task_panics,
        tasks.len()
    );
    assert_eq!(client.stats().task_panics, tasks.len() as u64);
    // Keepalives go on: UP for longer than two TTLs.
    let from = Instant::now();
    while from.elapsed() < Duration::from_secs(2 * TTL + 1) {
        assert!(client.is_up(&uuid).expect("is_up"), "the lease lapsed");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The owner's transitions and the watch go on: another client's change
    // reaches the view and the subscription.
    let other = connect(&etcd.endpoints(), &ns, TTL);
    let second = other
        .update(&Service::new("panicky", "host-2"))
        .expect("second");
    view.sync(Duration::from_secs(5)).expect("view sync");
    assert!(view.is_up(&second).unwrap());
    assert!(
        next_about(&sub, &second, Duration::from_secs(10)).is_some(),
        "the subscription missed the second service"
    );
    client.down(&uuid, "test", 0, 0).expect("down");
    view.sync(Duration::from_secs(5)).expect("view sync");
    assert!(!view.is_up(&uuid).unwrap());
    drop(sub);
    drop(view);
    client.close().expect("close");

    // A watch that keeps panicking is given up, loudly.
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let view = client.view().expect("view");
    for _ in 0..5 {
        os_lively::inject_panic("watch");
    }
    assert!(
        wait_until(Duration::from_secs(30), || view.is_up(&second).is_err()),
        "the view kept answering after its watch was given up"
    );
    let e = view.is_up(&second).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Stale, "{e}");
    assert!(e.message().contains("watch"), "{e}");
    let e = client.is_up(&second).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
    assert!(e.message().contains("watch"), "{e}");
    // Closing still works (and revokes what it holds).
    let _ = client.close();
}
