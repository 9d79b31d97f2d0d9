//! A good citizen inside someone else's process: nothing the host does to
//! stderr stops the library's runtime, and a panic in one of its background
//! tasks is caught, counted and recovered from (or, when it keeps coming,
//! fails calls loudly and makes views Stale) — never a silent frozen answer.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use os_lively::{ErrorKind, Service, SubscribeOptions};

const CHILD: &str = "OSLIVELY_CITIZEN_CHILD";
const TTL: u64 = 3;

/// The daemon the stderr test runs as a child process (this test binary,
/// this test alone): the C API's default log sink (stderr) installed, a
/// thread flooding warnings into it, one registered service. It prints its
/// uuid on stdout and then lives until killed.
#[test]
fn citizen_child_daemon() {
    let Ok(endpoint) = std::env::var(CHILD) else {
        return; // only as a child
    };
    // As Python and most network daemons do: EPIPE instead of death.
    // SAFETY: setting a signal disposition before any thread of ours runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // The C API's logger with its default sink: warnings to stderr.
    let r = os_lively::capi::lively_set_log_callback(None, std::ptr::null_mut(), 0);
    assert_eq!(r, os_lively::capi::lively_result::Ok);
    let ns = std::env::var("OSLIVELY_CITIZEN_NS").unwrap();
    let client = connect(&[endpoint], &ns, TTL);
    let uuid = client
        .update(&Service::new("citizen", "host-1"))
        .expect("register");
    std::thread::spawn(|| {
        loop {
            for _ in 0..1000 {
                log::warn!(target: "os_lively::flood", "a chatty host fills its stderr");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    println!("READY {uuid}");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// How the host treats the child's stderr.
#[derive(Clone, Copy, Debug)]
enum Stderr {
    /// A pipe nobody reads: writes block once it is full.
    Stalled,
    /// A pipe whose reader is gone: writes fail with EPIPE.
    Closed,
}

fn stderr_never_stops_keepalives(mode: Stderr) {
    let mut etcd = Etcd::start();
    let ns = namespace("citizen");
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "citizen_child_daemon", "--nocapture"])
        .env(CHILD, etcd.endpoint())
        .env("OSLIVELY_CITIZEN_NS", &ns)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child daemon");
    let stderr = child.stderr.take().unwrap();
    let _kept = match mode {
        Stderr::Stalled => Some(stderr),
        Stderr::Closed => {
            drop(stderr);
            None
        }
    };
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let uuid = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(u) = line.strip_prefix("READY ") {
                    break u.to_string();
                }
            }
            other => {
                let _ = child.kill();
                panic!("the child daemon did not start: {other:?}");
            }
        }
    };
    let client = connect(&etcd.endpoints(), &ns, TTL);
    // etcd flaps: the runtime logs warnings exactly now, into a stderr
    // that blocks or fails.
    for _ in 0..2 {
        etcd.restart();
        assert!(
            wait_until(Duration::from_secs(15), || client
                .is_up(&uuid)
                .unwrap_or(false)),
            "{mode:?}: the service did not come back after etcd restarted"
        );
    }
    // Longer than two TTLs: a runtime stuck in a write would have let the
    // lease expire by now.
    let from = Instant::now();
    while from.elapsed() < Duration::from_secs(2 * TTL + 1) {
        match client.is_up(&uuid) {
            Ok(true) => {}
            other => {
                let _ = child.kill();
                panic!("{mode:?}: the child's service read {other:?}: its keepalives stopped");
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_stderr_nobody_reads_never_stops_keepalives() {
    stderr_never_stops_keepalives(Stderr::Stalled);
}

#[test]
fn a_closed_stderr_with_sigpipe_ignored_never_stops_keepalives() {
    stderr_never_stops_keepalives(Stderr::Closed);
}

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
