//! The C log callback runs on a thread of its own: a daemon's logger that
//! blocks (syslog back-pressure, a mutex held by a thread inside a
//! `lively_*` call) delays no keepalive, and what cannot wait is dropped and
//! counted. Its own test binary: the log callback is process-wide.

mod common;

use std::ffi::{CStr, c_char, c_void};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use os_lively::Service;
use os_lively::capi::{lively_log_level, lively_result, lively_set_log_callback};

const TTL: u64 = 2;

/// The callback blocks while the clock is before this (ms since the epoch).
static BLOCK_UNTIL_MS: AtomicU64 = AtomicU64::new(0);
static CALLS: AtomicU64 = AtomicU64::new(0);
/// Set if the callback ever ran on a thread that keeps leases alive.
static ON_RUNTIME_THREAD: AtomicBool = AtomicBool::new(false);
static MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

unsafe extern "C" fn blocking_logger(_: *mut c_void, _: lively_log_level, msg: *const c_char) {
    CALLS.fetch_add(1, Ordering::SeqCst);
    if std::thread::current().name() == Some("lively-rt") {
        ON_RUNTIME_THREAD.store(true, Ordering::SeqCst);
    }
    let msg = unsafe { CStr::from_ptr(msg) }
        .to_string_lossy()
        .into_owned();
    if let Ok(mut m) = MESSAGES.lock() {
        m.push(msg);
    }
    while now_ms() < BLOCK_UNTIL_MS.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_log_callback_blocking_for_three_ttls_causes_no_false_down() {
    let etcd = Etcd::start();
    let ns = namespace("log_block");
    let raw = etcd.raw();
    assert_eq!(
        lively_set_log_callback(Some(blocking_logger), std::ptr::null_mut(), 2),
        lively_result::Ok
    );
    let daemon = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = daemon.update(&Service::new("logger", "h1")).unwrap();
    // The daemon's watch runs on its runtime thread and logs a warning
    // there for a key it does not understand.
    let _view = daemon.view().unwrap();
    let observer = connect(&etcd.endpoints(), &ns, TTL);
    assert!(observer.is_up(&uuid).unwrap());

    let block = Duration::from_secs(3 * TTL);
    BLOCK_UNTIL_MS.store(now_ms() + block.as_millis() as u64, Ordering::SeqCst);
    let calls = CALLS.load(Ordering::SeqCst);
    raw.put(&format!("{ns}/services/not-a-known-index/x"), b"junk");
    assert!(
        wait_until(Duration::from_secs(5), || CALLS.load(Ordering::SeqCst)
            > calls),
        "the runtime's warning never reached the callback"
    );
    // The logger now blocks. The service must stay UP throughout, and for a
    // TTL after (a keepalive missed during the block would show as DOWN).
    let blocked_at = Instant::now();
    let end = blocked_at + block + Duration::from_secs(TTL);
    let mut polls = 0;
    while Instant::now() < end {
        assert!(
            observer.is_up(&uuid).unwrap(),
            "false DOWN {:?} after the log callback started blocking",
            blocked_at.elapsed()
        );
        polls += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(polls > 10, "polled only {polls} times");
    assert_eq!(daemon.stats().lease_regrants, 0, "the lease was lost");
    assert!(!ON_RUNTIME_THREAD.load(Ordering::SeqCst));

    // A flood while the callback blocks: bounded, dropped, counted.
    BLOCK_UNTIL_MS.store(now_ms() + 60_000, Ordering::SeqCst);
    let calls = CALLS.load(Ordering::SeqCst);
    log::warn!(target: "os_lively::test", "first of the flood");
    assert!(wait_until(Duration::from_secs(5), || CALLS
        .load(Ordering::SeqCst)
        > calls));
    let started = Instant::now();
    for i in 0..3000 {
        log::warn!(target: "os_lively::test", "flood {i}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "logging waited for the blocked callback"
    );
    let dropped = daemon.stats().log_lines_dropped;
    assert!(
        (3000 - 1024 - 1..=3000).contains(&dropped),
        "dropped {dropped} of 3000 with a queue of 1024"
    );
    BLOCK_UNTIL_MS.store(0, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(20), || MESSAGES
            .lock()
            .unwrap()
            .iter()
            .any(|m| m.contains("log message(s) dropped"))),
        "the drop was not reported once the callback caught up"
    );
    assert_eq!(
        lively_set_log_callback(None, std::ptr::null_mut(), 0),
        lively_result::Ok
    );
}
