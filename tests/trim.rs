//! The library calls `malloc_trim` (process-wide: it walks and locks every
//! malloc arena of the host's process) only when the host asked
//! (`Config::release_memory`). Its own binary: this binary's own
//! `malloc_trim` counts the calls, and the opt-in is process-wide.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use os_lively::Service;

static TRIMS: AtomicUsize = AtomicUsize::new(0);

/// Takes the place of glibc's for the whole binary (the linker prefers a
/// definition in the executable to the shared C library's): counts calls.
#[unsafe(no_mangle)]
pub extern "C" fn malloc_trim(_pad: usize) -> std::ffi::c_int {
    TRIMS.fetch_add(1, Ordering::SeqCst);
    0
}

#[test]
fn malloc_trim_runs_only_when_the_host_asked() {
    let etcd = Etcd::start();
    let ns = namespace("trim");
    let writer = connect(&etcd.endpoints(), &ns, 5);
    for i in 0..20 {
        writer
            .update(&Service::new("trim", &format!("h{i}")))
            .expect("register");
    }
    // Not asked: a view's full load and a re-read after a (simulated)
    // compaction free the transient records without trimming.
    let client = connect(&etcd.endpoints(), &ns, 5);
    let view = client.view().expect("view");
    view.sync(Duration::from_secs(5)).expect("sync");
    assert_eq!(view.len(), 20);
    let resyncs = client.stats().resyncs;
    os_lively::inject_resync();
    assert!(
        wait_until(Duration::from_secs(15), || client.stats().resyncs > resyncs),
        "the re-read never happened"
    );
    view.sync(Duration::from_secs(5))
        .expect("sync after the re-read");
    assert_eq!(
        TRIMS.load(Ordering::SeqCst),
        0,
        "malloc_trim ran in the host's process without being asked"
    );
    drop(view);
    client.close().expect("close");

    // Asked: the full load gives freed memory back.
    let mut cfg = config(&etcd.endpoints(), &ns, 5);
    cfg.release_memory(true);
    let asked = os_lively::Client::connect(&cfg).expect("connect");
    let view = asked.view().expect("view");
    view.sync(Duration::from_secs(5)).expect("sync");
    assert!(
        wait_until(Duration::from_secs(5), || TRIMS.load(Ordering::SeqCst) >= 1),
        "malloc_trim never ran although asked"
    );
}
