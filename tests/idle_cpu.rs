//! With call polling opted in, the runtime thread polls for a moment around
//! calls (so a call costs no more than a raw etcd-client call), and a client
//! nobody calls still uses no CPU: once calls stop, the polling stops too.
//! (Polling is off by default; this is the harsher case.) One test per binary, so the
//! only runtime thread in the process is this client's.

mod common;

use std::time::{Duration, Instant};

use common::*;
use os_lively::Service;

/// CPU time of every thread of this process named `name` so far
/// (`/proc/self/task/*/schedstat`: nanoseconds on CPU).
fn cpu_of(name: &str) -> Duration {
    let mut total = 0u64;
    let tasks = std::fs::read_dir("/proc/self/task").expect("read /proc/self/task");
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Duration::from_nanos(total)
}

#[test]
fn a_client_stops_using_cpu_when_calls_stop() {
    let etcd = Etcd::start();
    let ns = namespace("idlecpu");
    // The runtime polls around calls (opted in), and stops when they stop.
    let mut cfg = config(&etcd.endpoints(), &ns, 30);
    cfg.call_polling(Duration::from_millis(1));
    let client = os_lively::Client::connect(&cfg).expect("connect");
    let uuid = client
        .update(&Service::new("idle", "host-1"))
        .expect("register");
    let busy_from = Instant::now();
    while busy_from.elapsed() < Duration::from_millis(300) {
        assert!(client.is_up(&uuid).expect("is_up"));
    }
    assert!(
        cpu_of("lively-rt") > Duration::ZERO,
        "no runtime thread found by name"
    );
    // Calls have stopped: over a whole second (the polling after the last
    // call included) the runtime thread may wake for keepalives (every 10 s
    // here), not poll.
    let before = cpu_of("lively-rt");
    let window = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_of("lively-rt") - before;
    let elapsed = window.elapsed();
    assert!(
        used < elapsed / 50,
        "the idle runtime thread used {used:?} of CPU in {elapsed:?}"
    );
    // And calls still answer after it went to sleep.
    assert!(client.is_up(&uuid).expect("is_up after idling"));
}
