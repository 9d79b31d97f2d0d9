//! Integration-test harness: real etcd processes on loopback, a raw etcd
//! client for inspecting state, and small polling helpers.
//!
//! Use from an integration test with `mod common;` and `use common::*;`.
//!
//! * [`Etcd`] — one etcd member (fresh temp data dir, free loopback ports,
//!   fast elections so the minimum lease TTL is 1 s).
//! * [`Cluster`] — N members forming one cluster; each is a [`Member`] with
//!   the same stop/kill/restart/pause/resume controls as [`Etcd`].
//! * [`GrpcProxy`] — `etcd grpc-proxy` in front of an etcd or a cluster.
//! * [`Raw`] — a plain `etcd-client` with its own tokio runtime, for
//!   synchronous inspection of etcd state.
//! * [`namespace`] — a unique key prefix per test and run.
//! * [`wait_until`] — poll a condition with a deadline (never sleep-and-hope).
//! * `oracle.rs` — what etcd holds for a namespace, decoded and judged UP
//!   without the library, to check the library against. Not a module of
//!   this one (the CLI's tests share this harness, and the oracle needs the
//!   protobuf the library's build script generates): a test that uses it
//!   declares `#[path = "common/oracle.rs"] mod oracle;` beside `mod common;`.
//!
//! The etcd binary is taken from `$ETCD_BIN`, else `etcd` on `PATH`.
#![allow(dead_code, unused_imports)]

mod deadline;
mod etcd;
mod grpc_proxy;
mod lively;
pub mod metrics;
mod pki;
mod proxy;
mod raw;

pub use deadline::{DEADLINE_SLACK, missed_then_back, next_about};
pub use etcd::{Cluster, Etcd, EtcdOpts, Member, TlsFiles};
pub use grpc_proxy::{GrpcProxy, http_get, metric_sum};
pub use lively::{Registrant, c_connect, config, connect, python_register};
pub use pki::{Pki, jwt_keys};
pub use proxy::Proxy;
pub use raw::{Raw, RawKv};

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A fresh pseudo-random `u64` (std only: per-process random hasher seed,
/// wall clock, pid, thread and a process-wide counter).
pub(crate) fn random_u64() -> u64 {
    static SEED: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = SEED
        .get_or_init(std::collections::hash_map::RandomState::new)
        .build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write(format!("{:?}", std::thread::current().id()).as_bytes());
    h.finish()
}

/// A key prefix unique per test and per run: `"/t-<test>-<8 hex>"`.
///
/// Characters of `test` other than `[A-Za-z0-9_-]` are replaced by `_`
/// (so `module_path!()`-style names are fine).
pub fn namespace(test: &str) -> String {
    let clean: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("/t-{}-{:08x}", clean, random_u64() as u32)
}

/// Where this build's `libos_lively.so` is: the test binary lives in
/// `target/<profile>/deps/`, and that is where `cargo test` writes the
/// fresh cdylib (the copy in `target/<profile>/` is refreshed only by
/// `cargo build`, so it may be stale).
pub fn lib_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("target/<profile>/deps").to_path_buf();
    let dir = if deps.join("libos_lively.so").exists() {
        deps
    } else {
        deps.parent().expect("target/<profile>").to_path_buf()
    };
    assert!(
        dir.join("libos_lively.so").exists(),
        "no libos_lively.so in {}",
        dir.display()
    );
    dir
}

/// The `oslively` binary (workspace member `cli/`). Its own tests get it
/// from cargo; the library's tests build it once per test process (a no-op
/// when it is fresh), so `cargo test --test core` never runs a stale one.
pub fn oslively_bin() -> std::path::PathBuf {
    if let Some(bin) = option_env!("CARGO_BIN_EXE_oslively") {
        return bin.into();
    }
    // scripts/test.sh names the binary its nextest build made: a `cargo
    // build` here, with the library's features as the CLI alone asks for
    // them, would rebuild libos_lively.so under the C tests running beside.
    if let Some(bin) = std::env::var_os("OSLIVELY_BIN") {
        return bin.into();
    }
    static BUILT: OnceLock<std::path::PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            // target/<profile>/deps/<test> -> target/<profile>/oslively
            let exe = std::env::current_exe().expect("current_exe");
            let profile_dir = exe
                .parent()
                .and_then(|deps| deps.parent())
                .expect("test binary under target/<profile>/deps")
                .to_path_buf();
            let mut cargo = std::process::Command::new(env!("CARGO"));
            cargo
                .args([
                    "build",
                    "--quiet",
                    "-p",
                    "oslively-cli",
                    "--bin",
                    "oslively",
                ])
                .current_dir(env!("CARGO_MANIFEST_DIR"));
            if profile_dir.ends_with("release") {
                cargo.arg("--release");
            }
            let status = cargo.status().expect("running cargo build -p oslively-cli");
            assert!(status.success(), "cargo build -p oslively-cli failed");
            profile_dir.join("oslively")
        })
        .clone()
}

/// Poll `f` every ~20 ms until it returns `true` (→ `true`) or `timeout`
/// elapses (→ `false`). `f` is always called at least once, and once more at
/// the deadline.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20).min(deadline - now));
    }
}

/// Seconds since the epoch, as maintenance windows are written.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}
