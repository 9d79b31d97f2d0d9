//! A good citizen inside someone else's process: nothing the host does to
//! stderr stops the library's runtime (`tests/panics.rs`: nor does a panic
//! in one of its background tasks).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use os_lively::Service;

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
