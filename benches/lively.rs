//! os-lively against a raw `etcd-client` baseline, on an etcd of its own.
//!
//! `cargo bench --bench lively` (or `scripts/bench.sh`). `BENCH_QUICK=1` for a
//! ~30 s smoke run; `BENCH_ONLY=idle` for the idle-client rows alone,
//! `BENCH_ONLY=view` for the scale and view rows alone, `BENCH_ONLY=remote`
//! for the remote-call rows (hand-off, reads, writes, notification, region
//! list), `BENCH_ONLY=fleet` for the 100,000-service fleet rows alone,
//! `BENCH_ONLY=citizen` for the CPU-per-call, runtime-stall and
//! subscription-memory rows alone (100,000 services unless BENCH_SCALE
//! says otherwise), `BENCH_ONLY=fleet-clients` for N daemon clients and M
//! watchers on a three-member etcd and through `etcd grpc-proxy`
//! (`FLEET_CLIENTS`, `FLEET_WATCHERS`, `FLEET_QUICK=1`: see
//! `benches/lively/fleet_clients.rs`). The etcd binary is
//! `$ETCD_BIN`, else `etcd` on PATH.
//!
//! Method: every measured os-lively call is interleaved with its raw
//! baseline in the same loop (alternating which goes first), against the
//! same etcd, in several rounds. Per round, ratio = median(os-lively) /
//! median(raw); the table shows the median of those per-round ratios and
//! their spread (min–max), plus the os-lively and raw median and p99 over
//! all rounds. The raw baseline is `etcd_client::Client` on a tokio
//! current-thread runtime driven by `block_on` on the bench thread, which is
//! what a user of raw etcd-client calling it synchronously would write.
//!
//! Layout: this file is `main` (which sections run); each section is a
//! module under `benches/lively/`: `calls` (hand-off, reads, writes, FFI),
//! `view` (scale and the local view), `notify` (notification, crash,
//! heartbeat), `idle`, `fleet` (the 100,000-service rows), `citizen`; the
//! shared `harness` holds etcd, the raw baseline, the statistics and the
//! table.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use etcd_client::{EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use os_lively::{Client, Config, DownReason, EventKind, Filter, Service, SubscribeOptions};

// The sections, one module each (under benches/lively/, named by path so
// cargo does not take them for benches of their own).
// The integration tests' harness: etcd clusters, `etcd grpc-proxy`.
#[path = "lively/calls.rs"]
mod calls;
#[path = "lively/citizen.rs"]
mod citizen;
// The integration tests' harness: etcd clusters, `etcd grpc-proxy`.
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "lively/fleet.rs"]
mod fleet;
#[path = "lively/fleet_clients.rs"]
mod fleet_clients;
#[path = "lively/harness.rs"]
mod harness;
#[path = "lively/idle.rs"]
mod idle;
#[path = "lively/notify.rs"]
mod notify;
#[path = "lively/view.rs"]
mod view;

use calls::*;
use fleet::*;
use harness::*;
use idle::*;
use notify::*;
use view::*;

fn main() {
    // A daemon process of the fleet-clients section (this binary, run again).
    if let Ok(spec) = std::env::var(fleet_clients::CHILD_ENV) {
        fleet_clients::child_main(&spec);
        return;
    }
    let rss_start = rss_kib();
    let p = Params::from_env();
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "fleet-clients") {
        let t = Instant::now();
        let mut rows = Vec::new();
        let (machine, notes) = fleet_clients::fleet_client_rows(&mut rows);
        println!();
        println!("{machine}");
        println!("fleet-clients ({:.0} s)", t.elapsed().as_secs_f64());
        print_table(&rows);
        for n in notes {
            println!("- {n}");
        }
        return;
    }
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "idle") {
        let mut rows = Vec::new();
        idle_rows(&p, &mut rows);
        print_table(&rows);
        return;
    }
    let t_all = Instant::now();
    let etcd = Etcd::start();
    let machine = machine(&etcd);
    eprintln!("bench: {machine}");
    eprintln!(
        "bench: etcd at {}, {} mode",
        etcd.endpoint,
        if p.quick { "quick" } else { "full" }
    );
    let mut raw = Raw::connect(&etcd.endpoint);
    let mut rows = Vec::new();
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "fleet") {
        // The fleet section alone (BENCH_ONLY=fleet; 100,000 services unless
        // BENCH_SCALE says otherwise).
        fleet_rows(
            fleet_size().unwrap_or(100_000),
            &etcd.endpoint,
            &mut raw,
            &mut rows,
        );
        print_table(&rows);
        return;
    }

    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "citizen" || v == "stall") {
        if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "citizen") {
            citizen::cpu_rows(&p, &etcd.endpoint, &mut rows);
        }
        citizen::stall_rows(
            fleet_size().unwrap_or(100_000),
            &etcd.endpoint,
            &mut raw,
            &mut rows,
        );
        print_table(&rows);
        return;
    }

    // First, so the RSS figures are the client's and not earlier phases'.
    let scale_client = scale_rows(&p, &etcd.endpoint, &mut raw, rss_start, &mut rows);
    let remote_only = std::env::var("BENCH_ONLY").is_ok_and(|v| v == "remote");
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "view") {
        // The scale and view rows alone (BENCH_ONLY=view), for work on the view.
        view_rows(&p, &scale_client, &mut raw, &mut rows);
        print_table(&rows);
        return;
    }

    let lively = Client::connect(&config(&etcd.endpoint)).expect("connect");
    {
        // The hand-off itself, with the runtime thread kept awake (the
        // opt-in call polling): the default pays a wake-up on top.
        let mut cfg = config(&etcd.endpoint);
        cfg.call_polling(Duration::from_millis(1));
        let polled = Client::connect(&cfg).expect("connect");
        handoff_rows(&p, &polled, &mut rows);
    }
    citizen::cpu_rows(&p, &etcd.endpoint, &mut rows);
    read_rows(&p, &lively, &mut raw, &mut rows);
    update_rows(&p, &lively, &mut raw, &mut rows);

    let (tx, events) = mpsc::channel::<Seen>();
    let _sub = lively
        .subscribe_callback(
            &Filter::all(),
            &SubscribeOptions::default(),
            move |e: &os_lively::Event| {
                let now = Instant::now();
                let _ = tx.send((e.uuid.clone(), e.kind, e.reason, now));
            },
        )
        .expect("subscribe");
    let raw_events = spawn_raw_watcher(etcd.endpoint.clone(), format!("{RAW_PREFIX}watch/"));
    notify_rows(
        &p,
        &etcd.endpoint,
        &events,
        &mut raw,
        &raw_events,
        &mut rows,
    );
    if remote_only {
        // The remote-call rows alone (BENCH_ONLY=remote): hand-off, reads,
        // writes, notification and the region list.
        print_table(&rows);
        return;
    }
    let expiry = crash_rows(
        &p,
        &etcd.endpoint,
        &events,
        &mut raw,
        &raw_events,
        &mut rows,
    );
    heartbeat_rows(&p, &etcd.endpoint, &events, &mut raw, &expiry, &mut rows);
    ffi_rows(&p, &etcd.endpoint, &lively, &mut rows);
    // After the call rows: the view starts its client's namespace watch,
    // which would decode every os-lively write on the same 2 CPUs (and no
    // raw write) while they are measured.
    view_rows(&p, &scale_client, &mut raw, &mut rows);
    drop(scale_client);
    idle_rows(&p, &mut rows);
    if let Some(n) = fleet_size() {
        fleet_rows(n, &etcd.endpoint, &mut raw, &mut rows);
        citizen::stall_rows(n, &etcd.endpoint, &mut raw, &mut rows);
    }

    println!();
    println!("{machine}");
    println!(
        "rounds={} reads/round={} writes/round={} notifies/round={} crash reps={} ({} mode, {:.0} s)",
        p.rounds,
        p.reads,
        p.writes,
        p.notifies,
        p.crashes,
        if p.quick { "quick" } else { "full" },
        t_all.elapsed().as_secs_f64()
    );
    print_table(&rows);
    println!(
        "ratio = median over rounds of median(os-lively)/median(raw); spread = min–max of the per-round ratios."
    );
    println!(
        "crash rows: time from SIGKILL (raw: last keepalive stopped) to the DOWN/delete event, minus the {} s TTL; the ratio column is the difference of medians, the spread column min…max.",
        TTL.as_secs()
    );
    println!(
        "heartbeat rows: check-in cost per call (no I/O), raw get for scale; missed deadline: time from the last check-in to the DOWN (missed) event at another client, minus D = 1 s; raw columns = the lease-expiry path above (SIGKILL → DOWN, minus TTL); ratio = p99 / p99."
    );
    drop(_sub);
    drop(lively);
    drop(etcd);
}
