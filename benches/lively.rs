//! os-lively against a raw `etcd-client` baseline, on an etcd of its own.
//!
//! `cargo bench --bench lively` (or `scripts/bench.sh`). `BENCH_QUICK=1` for a
//! ~30 s smoke run; `BENCH_ONLY=idle` for the idle-client rows alone,
//! `BENCH_ONLY=view` for the scale and view rows alone, `BENCH_ONLY=remote`
//! for the remote-call rows (hand-off, reads, writes, notification, region
//! list), `BENCH_ONLY=fleet` for the 100,000-service fleet rows alone,
//! `BENCH_ONLY=citizen` for the CPU-per-call, runtime-stall and
//! subscription-memory rows alone (100,000 services unless BENCH_SCALE
//! says otherwise). The etcd binary is
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

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use etcd_client::{EventType, GetOptions, PutOptions, Txn, TxnOp, WatchOptions};
use os_lively::{Client, Config, DownReason, EventKind, Filter, Service, SubscribeOptions};

#[path = "lively/citizen.rs"]
mod citizen;

/// Counts heap allocations per thread, so the view rows can show that its
/// is-up path allocates nothing, and the bytes live on the heap in the whole
/// process, so they can show what the view's copy keeps (RSS also counts
/// what the allocator keeps after the load's transient buffers are freed).
struct CountingAlloc;

thread_local! {
    static ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Heap bytes allocated and not yet freed, by every thread: the view and
/// fleet rows measure a view's and a subscription's memory with it (RSS
/// keeps pages that transient buffers used).
static LIVE_BYTES: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

// SAFETY: forwards to the system allocator; the counter is a const-initialized
// thread-local without a destructor, so touching it never allocates.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
        LIVE_BYTES.fetch_add(layout.size() as i64, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

/// Bytes the process has allocated and not freed (requested sizes, without
/// the allocator's own per-block overhead).
fn live_heap() -> i64 {
    LIVE_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocs_here() -> u64 {
    ALLOCS.with(|c| c.get())
}

/// Status TTL of every client in this benchmark (and of the CLI).
const TTL: Duration = Duration::from_secs(2);
/// os-lively key namespace; raw-only keys live under [`RAW_PREFIX`].
const NAMESPACE: &str = "bench";
const RAW_PREFIX: &str = "/rawbench/";
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------

struct Params {
    quick: bool,
    /// Rounds of every interleaved comparison.
    rounds: usize,
    /// Iterations per round: reads, writes, notifications, list.
    reads: usize,
    writes: usize,
    notifies: usize,
    lists: usize,
    /// Repetitions of each crash-detection measurement.
    crashes: usize,
    /// Services registered by the scale test.
    scale: usize,
    /// Threads sharing one client in the scale test.
    scale_threads: usize,
}

impl Params {
    fn from_env() -> Params {
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        if quick {
            Params {
                quick,
                rounds: 3,
                reads: 100,
                writes: 40,
                notifies: 30,
                lists: 5,
                crashes: 3,
                scale: 2_000,
                scale_threads: 16,
            }
        } else {
            Params {
                quick,
                rounds: 5,
                reads: 300,
                writes: 300,
                notifies: 100,
                lists: 20,
                crashes: 10,
                scale: 10_000,
                scale_threads: 16,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// etcd on loopback (a compact version of tests/common/etcd.rs)
// ---------------------------------------------------------------------------

fn etcd_bin() -> String {
    match std::env::var("ETCD_BIN") {
        Ok(b) if !b.is_empty() => b,
        _ => "etcd".to_owned(),
    }
}

fn free_port() -> u16 {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `GET /health` on the client port says `"health":"true"`.
fn etcd_healthy(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let body = String::from_utf8_lossy(&buf);
    body.starts_with("HTTP/1.1 200") && body.contains("\"health\":\"true\"")
}

/// A single-member etcd; dropping it SIGKILLs it and removes its data dir.
struct Etcd {
    // Field order: kill the process before removing its directory.
    child: Child,
    dir: tempfile::TempDir,
    endpoint: String,
    /// Every client URL it listens on (`endpoint` is the first).
    endpoints: Vec<String>,
    port: u16,
}

impl Etcd {
    fn start() -> Etcd {
        Self::start_listening(1)
    }

    /// Listening on `urls` client URLs: one member that a client sees as
    /// `urls` endpoints.
    fn start_listening(urls: usize) -> Etcd {
        let mut last = String::new();
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("os-lively-bench-")
                .tempdir()
                .expect("temp dir");
            let cports: Vec<u16> = (0..urls).map(|_| free_port()).collect();
            let (cport, pport) = (cports[0], free_port());
            let mut all = cports.clone();
            all.push(pport);
            all.sort_unstable();
            all.dedup();
            if all.len() != urls + 1 {
                continue;
            }
            let endpoints: Vec<String> = cports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect();
            let curl = endpoints.join(",");
            let purl = format!("http://127.0.0.1:{pport}");
            let log = File::create(dir.path().join("etcd.log")).expect("etcd log");
            let mut cmd = Command::new(etcd_bin());
            cmd.args([
                "--name=bench".to_string(),
                format!("--data-dir={}", dir.path().join("data").display()),
                format!("--listen-client-urls={curl}"),
                format!("--advertise-client-urls={curl}"),
                format!("--listen-peer-urls={purl}"),
                format!("--initial-advertise-peer-urls={purl}"),
                format!("--initial-cluster=bench={purl}"),
                "--heartbeat-interval=50".into(),
                "--election-timeout=500".into(),
                "--logger=zap".into(),
                "--log-level=error".into(),
                "--log-outputs=stderr".into(),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
            // etcd reads ETCD_* variables as flags (ETCD_BIN included).
            for (k, _) in std::env::vars_os() {
                let k = k.to_string_lossy().into_owned();
                if k.starts_with("ETCD_") && k != "ETCD_UNSUPPORTED_ARCH" {
                    cmd.env_remove(k);
                }
            }
            let child = cmd.spawn().unwrap_or_else(|e| {
                panic!(
                    "cannot run etcd {:?} (set ETCD_BIN or put etcd on PATH): {e}",
                    etcd_bin()
                )
            });
            let mut etcd = Etcd {
                child,
                dir,
                endpoint: endpoints[0].clone(),
                endpoints,
                port: cport,
            };
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if etcd_healthy(cport) {
                    return etcd;
                }
                if matches!(etcd.child.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
                    last = std::fs::read_to_string(etcd.dir.path().join("etcd.log"))
                        .unwrap_or_default();
                    break; // dropping `etcd` kills it; retry with fresh ports
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("etcd did not start; last output:\n{last}");
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Raw etcd-client baseline
// ---------------------------------------------------------------------------

/// etcd-client on a current-thread runtime driven by `block_on` here.
struct Raw {
    rt: tokio::runtime::Runtime,
    c: etcd_client::Client,
}

fn current_thread_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

impl Raw {
    fn connect(endpoint: &str) -> Raw {
        let rt = current_thread_rt();
        let c = rt
            .block_on(etcd_client::Client::connect([endpoint], None))
            .expect("raw connect");
        Raw { rt, c }
    }

    fn get(&mut self, key: &str) -> etcd_client::GetResponse {
        self.rt.block_on(self.c.get(key, None)).expect("raw get")
    }

    fn put(&mut self, key: &str, value: Vec<u8>) -> i64 {
        let r = self
            .rt
            .block_on(self.c.put(key, value, None))
            .expect("raw put");
        r.header().map_or(0, |h| h.revision())
    }

    fn prefix(&mut self, prefix: &str) -> etcd_client::GetResponse {
        self.rt
            .block_on(self.c.get(prefix, Some(GetOptions::new().with_prefix())))
            .expect("raw range")
    }

    /// The store's current revision.
    fn revision(&mut self) -> i64 {
        self.get("/").header().map_or(0, |h| h.revision())
    }
}

/// Events of a raw prefix watch on its own connection and thread:
/// (key, is_put, when received).
type RawEvent = (String, bool, Instant);

fn spawn_raw_watcher(endpoint: String, prefix: String) -> mpsc::Receiver<RawEvent> {
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        current_thread_rt().block_on(async move {
            let mut c = etcd_client::Client::connect([endpoint], None)
                .await
                .expect("raw watch connect");
            let mut stream = c
                .watch(prefix, Some(WatchOptions::new().with_prefix()))
                .await
                .expect("raw watch");
            let mut ready = Some(ready_tx);
            while let Ok(Some(resp)) = stream.message().await {
                let now = Instant::now();
                if let Some(r) = ready.take() {
                    let _ = r.send(()); // first message: watch created
                }
                for ev in resp.events() {
                    let key = ev
                        .kv()
                        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
                        .unwrap_or_default();
                    if tx
                        .send((key, ev.event_type() == EventType::Put, now))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        })
    });
    ready_rx.recv_timeout(WAIT).expect("raw watch ready");
    rx
}

// ---------------------------------------------------------------------------
// Statistics and the table
// ---------------------------------------------------------------------------

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s
}

fn median(v: &[f64]) -> f64 {
    let s = sorted(v);
    if s.is_empty() {
        return f64::NAN;
    }
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn p99(v: &[f64]) -> f64 {
    let s = sorted(v);
    if s.is_empty() {
        return f64::NAN;
    }
    let i = ((s.len() as f64 * 0.99).ceil() as usize).clamp(1, s.len()) - 1;
    s[i]
}

/// A duration in seconds, human-scaled; signed values keep their sign.
fn fmt_t(s: f64) -> String {
    if s.is_nan() {
        return "-".into();
    }
    let a = s.abs();
    if a >= 1.0 {
        format!("{s:.3} s")
    } else if a >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else if a >= 1e-6 {
        format!("{:.1} µs", s * 1e6)
    } else {
        format!("{:.0} ns", s * 1e9)
    }
}

/// Interleaved samples of os-lively and its raw baseline, per round.
struct Measured {
    lively: Vec<f64>,
    raw: Vec<f64>,
    ratios: Vec<f64>,
}

impl Measured {
    /// `lively` and `raw` hold `rounds` consecutive rounds of equal length.
    fn from_samples(lively: Vec<f64>, raw: Vec<f64>, rounds: usize) -> Measured {
        let per = (lively.len() / rounds.max(1)).max(1);
        let ratios = lively
            .chunks(per)
            .zip(raw.chunks(per))
            .map(|(l, r)| median(l) / median(r))
            .collect();
        Measured {
            lively,
            raw,
            ratios,
        }
    }

    fn ratio(&self) -> f64 {
        median(&self.ratios)
    }

    fn spread(&self) -> String {
        let s = sorted(&self.ratios);
        match (s.first(), s.last()) {
            (Some(a), Some(b)) => format!("{a:.2}–{b:.2}"),
            _ => "-".into(),
        }
    }
}

/// Runs `rounds` × `iters` iterations; each calls `lively(i)` and `raw(i)`
/// (alternating which goes first), each returning the duration to record.
fn interleave(
    rounds: usize,
    iters: usize,
    warmup: usize,
    mut lively: impl FnMut(usize) -> Duration,
    mut raw: impl FnMut(usize) -> Duration,
) -> Measured {
    for i in 0..warmup {
        lively(i);
        raw(i);
    }
    let (mut l, mut r) = (Vec::new(), Vec::new());
    let mut i = warmup;
    for _ in 0..rounds {
        for _ in 0..iters {
            if i % 2 == 0 {
                l.push(secs(lively(i)));
                r.push(secs(raw(i)));
            } else {
                r.push(secs(raw(i)));
                l.push(secs(lively(i)));
            }
            i += 1;
        }
    }
    Measured::from_samples(l, r, rounds)
}

fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    let t = Instant::now();
    std::hint::black_box(f());
    t.elapsed()
}

struct Row {
    name: String,
    med: String,
    p99: String,
    raw_med: String,
    raw_p99: String,
    ratio: String,
    spread: String,
    target: String,
    met: String,
}

impl Row {
    /// A comparison row judged on the median ratio.
    fn ratio(name: &str, m: &Measured, target: Option<f64>) -> Row {
        let ratio = m.ratio();
        Row {
            name: name.into(),
            med: fmt_t(median(&m.lively)),
            p99: fmt_t(p99(&m.lively)),
            raw_med: fmt_t(median(&m.raw)),
            raw_p99: fmt_t(p99(&m.raw)),
            ratio: format!("{ratio:.2}×"),
            spread: m.spread(),
            target: target.map_or("-".into(), |t| format!("≤ {t:.2}×")),
            met: target.map_or("-".into(), |t| verdict(ratio <= t)),
        }
    }

    fn text(name: &str, med: String, target: &str, met: String) -> Row {
        Row {
            name: name.into(),
            med,
            p99: "-".into(),
            raw_med: "-".into(),
            raw_p99: "-".into(),
            ratio: "-".into(),
            spread: "-".into(),
            target: target.into(),
            met,
        }
    }

    fn cells(&self) -> [&str; 9] {
        [
            &self.name,
            &self.med,
            &self.p99,
            &self.raw_med,
            &self.raw_p99,
            &self.ratio,
            &self.spread,
            &self.target,
            &self.met,
        ]
    }
}

fn verdict(ok: bool) -> String {
    if ok { "yes".into() } else { "NO".into() }
}

fn print_table(rows: &[Row]) {
    let head = [
        "measurement",
        "median",
        "p99",
        "raw median",
        "raw p99",
        "ratio",
        "ratio spread",
        "target",
        "met",
    ];
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.cells().iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = w[i] - c.chars().count();
                if i == 0 {
                    format!("{c}{}", " ".repeat(pad))
                } else {
                    format!("{}{c}", " ".repeat(pad))
                }
            })
            .collect();
        println!("| {} |", parts.join(" | "));
    };
    line(&head);
    let sep: Vec<String> = w.iter().map(|n| "-".repeat(*n)).collect();
    println!("|-{}-|", sep.join("-|-"));
    for r in rows {
        line(&r.cells());
    }
}

fn progress(row: &Row) {
    eprintln!(
        "bench: {:<40} median {:>10}  p99 {:>10}  raw {:>10}  ratio {:>7} ({})",
        row.name, row.med, row.p99, row.raw_med, row.ratio, row.spread
    );
}

// ---------------------------------------------------------------------------
// Machine
// ---------------------------------------------------------------------------

fn machine(etcd: &Etcd) -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let version = Command::new(etcd_bin())
        .arg("--version")
        .env_remove("ETCD_BIN")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .find(|l| l.starts_with("etcd Version:"))
                .map(|l| l.trim_start_matches("etcd Version:").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let fs = Command::new("df")
        .arg("--output=fstype")
        .arg(etcd.dir.path())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    format!("machine: nproc={nproc}, CPU: {cpu}, etcd {version} (data dir on {fs})")
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------

fn config(endpoint: &str) -> Config {
    let mut cfg = Config::new();
    cfg.endpoints(&[endpoint])
        .expect("endpoints")
        .namespace(NAMESPACE)
        .expect("namespace")
        .status_ttl(TTL);
    cfg
}

fn root(cfg: &Config) -> String {
    format!("{}/services/", cfg.get_namespace())
}

/// Scale: 10,000 services from one client (shared by threads), one lease,
/// RSS; then `list` of one region vs a raw range read of its index.
/// Returns the client, to keep its services UP for the rest of the run.
fn scale_rows(
    p: &Params,
    endpoint: &str,
    raw: &mut Raw,
    rss_start: u64,
    rows: &mut Vec<Row>,
) -> Client {
    let cfg = config(endpoint);
    let client = Client::connect(&cfg).expect("connect");
    let rss_connected = rss_kib();
    let regions = 10;
    let start = Instant::now();
    let uuids = std::thread::scope(|s| {
        let handles: Vec<_> = (0..p.scale_threads)
            .map(|t| {
                let client = client.clone();
                s.spawn(move || {
                    (t..p.scale)
                        .step_by(p.scale_threads)
                        .map(|i| {
                            let svc = Service::new("bench-scale", &format!("host-{i:05}"))
                                .with_region(&format!("r{}", i % regions));
                            let u = client.update(&svc).expect("scale update");
                            (u, Instant::now())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("scale thread"))
            .collect::<Vec<_>>()
    });
    let elapsed = start.elapsed();
    // Throughput of the first and the last tenth, to see it change with N.
    let mut done: Vec<f64> = uuids.iter().map(|(_, t)| secs(*t - start)).collect();
    done.sort_by(|a, b| a.total_cmp(b));
    let tenth = (done.len() / 10).max(1);
    let first_rate = tenth as f64 / done[tenth - 1];
    let last_rate = tenth as f64 / (done[done.len() - 1] - done[done.len() - 1 - tenth]);
    let uuids: Vec<String> = uuids.into_iter().map(|(u, _)| u).collect();
    let rss_after = rss_kib();
    let stats = client.stats();
    // Readers grant no lease: the first registration granted this one.
    let lease = stats.lease_id;
    // One lease: every UP key of these services carries the client's lease.
    let up = raw.prefix(&format!("{}by-status/UP/", root(&cfg)));
    let wanted: std::collections::HashSet<&str> = uuids.iter().map(String::as_str).collect();
    let mut leases = std::collections::BTreeSet::new();
    let mut up_keys = 0;
    for kv in up.kvs() {
        let key = String::from_utf8_lossy(kv.key());
        if let Some(u) = key.rsplit('/').next() {
            if wanted.contains(u) {
                up_keys += 1;
                leases.insert(kv.lease());
            }
        }
    }
    let one_lease = leases.len() == 1
        && leases.contains(&lease)
        && stats.lease_id == lease
        && stats.lease_regrants == 0
        && up_keys == p.scale;
    let rate = p.scale as f64 / elapsed.as_secs_f64();
    let name = format!(
        "register {} services ({} threads, 1 client)",
        p.scale, p.scale_threads
    );
    let row = Row::text(
        &name,
        format!(
            "{} total, {rate:.0}/s (first 10%: {first_rate:.0}/s, last 10%: {last_rate:.0}/s)",
            fmt_t(elapsed.as_secs_f64())
        ),
        "< 5 s",
        verdict(elapsed < Duration::from_secs(5)),
    );
    progress(&row);
    rows.push(row);
    rows.push(Row::text(
        "  …leases used by their UP keys",
        format!("{} lease(s), {up_keys} UP keys", leases.len()),
        "1 lease",
        verdict(one_lease),
    ));
    let abs = mib(rss_after);
    rows.push(Row::text(
        "  …process RSS start/connected/after",
        format!(
            "{:.1} / {:.1} / {abs:.1} MiB (client +{:.1} MiB)",
            mib(rss_start),
            mib(rss_connected),
            mib(rss_after.saturating_sub(rss_start))
        ),
        "< 30 MB",
        verdict(abs * 1.048_576 < 30.0),
    ));

    // list one region (scale/regions services) vs a raw range of its index.
    let region = "r3";
    let expect = (0..p.scale).filter(|i| i % regions == 3).count();
    let got = client.list(&Filter::all().region(region)).expect("list");
    assert_eq!(got.len(), expect, "list by region returned a wrong count");
    let r = root(&cfg);
    assert_eq!(raw_region_list(raw, &r, region), expect);
    let m = interleave(
        p.rounds,
        p.lists,
        2,
        |_| timed(|| client.list(&Filter::all().region(region)).expect("list")),
        |_| timed(|| raw_region_list(raw, &r, region)),
    );
    let row = Row::ratio(
        &format!(
            "list region ({expect} of {} svcs) vs raw index + records",
            p.scale
        ),
        &m,
        Some(1.3),
    );
    progress(&row);
    rows.push(row);
    client
}

/// A region listed with raw etcd-client the way a careful user would: the
/// region index (keys only), then every record and UP key it names, in
/// concurrent transactions of 60 services (two gets each) at the index's
/// revision. Returns how many records it read.
fn raw_region_list(raw: &mut Raw, root: &str, region: &str) -> usize {
    raw_index_list(raw, root, &format!("{root}by-region/{region}/"), false)
}

/// What [`raw_region_list`] does, for any index under `prefix`: the uuid is
/// the key's last segment, or with `uuid_in_value` the value (type/host).
fn raw_index_list(raw: &mut Raw, root: &str, prefix: &str, uuid_in_value: bool) -> usize {
    let c = raw.c.clone();
    raw.rt.block_on(async move {
        let mut kv = c.kv_client();
        let mut opts = GetOptions::new().with_prefix();
        if !uuid_in_value {
            opts = opts.with_keys_only();
        }
        let index = kv.get(prefix, Some(opts)).await.expect("raw index range");
        let revision = index.header().map_or(0, |h| h.revision());
        let uuids: Vec<String> = index
            .kvs()
            .iter()
            .filter_map(|kv| {
                if uuid_in_value {
                    return Some(String::from_utf8_lossy(kv.value()).into_owned());
                }
                let key = String::from_utf8_lossy(kv.key());
                key.rsplit('/').next().map(str::to_owned)
            })
            .collect();
        let mut batches = tokio::task::JoinSet::new();
        for chunk in uuids.chunks(60) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .flat_map(|u| {
                    [
                        TxnOp::get(
                            format!("{root}by-uuid/{u}"),
                            Some(GetOptions::new().with_revision(revision)),
                        ),
                        TxnOp::get(
                            format!("{root}by-status/UP/{u}"),
                            Some(GetOptions::new().with_count_only().with_revision(revision)),
                        ),
                    ]
                })
                .collect();
            let mut kv = c.kv_client();
            batches.spawn(async move { kv.txn(Txn::new().and_then(ops)).await });
        }
        let mut records = 0;
        while let Some(r) = batches.join_next().await {
            let resp = r.expect("raw batch task").expect("raw batch txn");
            records += resp
                .op_responses()
                .iter()
                .filter(|op| matches!(op, etcd_client::TxnOpResponse::Get(g) if g.count() > 0 && !g.kvs().is_empty()))
                .count();
        }
        records
    })
}

/// Per-call times of `call(thread, n)` on `threads` threads at once, from
/// `blocks` blocks of 100 calls per thread (an `Instant` per call would cost
/// as much as the call), and the allocations those threads made.
fn per_call_in_threads(
    threads: usize,
    blocks: usize,
    call: impl Fn(usize, usize) + Sync,
) -> (Vec<f64>, u64) {
    const BLOCK: usize = 100;
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let call = &call;
                s.spawn(move || {
                    let mut samples = Vec::with_capacity(blocks);
                    let a0 = allocs_here();
                    for b in 0..blocks {
                        let start = Instant::now();
                        for i in 0..BLOCK {
                            call(t, b * BLOCK + i);
                        }
                        samples.push(secs(start.elapsed()) / BLOCK as f64);
                    }
                    (samples, allocs_here() - a0)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut allocs = 0;
        for h in hs {
            let (v, a) = h.join().expect("measuring thread");
            all.extend(v);
            allocs += a;
        }
        (all, allocs)
    })
}

/// The local view over the scale test's services: memory per service, and
/// is-up latency from 1, 2 and 8 reader threads beside the raw get it
/// replaces.
fn view_rows(p: &Params, client: &Client, raw: &mut Raw, rows: &mut Vec<Row>) {
    let before = rss_kib();
    let heap_before = live_heap();
    let view = client.view().expect("view");
    view.sync(WAIT).expect("view sync");
    let after = rss_kib();
    let heap = (live_heap() - heap_before).max(0) as u64;
    let n = view.len().max(1);
    let rss_per = after.saturating_sub(before) * 1024 / n as u64;
    rows.push(Row::text(
        "view: memory for the copy",
        format!(
            "{n} services, +{:.1} MiB RSS (~{rss_per} B/service), heap kept +{:.1} MiB (~{} B/service)",
            mib(after.saturating_sub(before)),
            mib(heap / 1024),
            heap / n as u64
        ),
        "≤ 300 B/service (heap)",
        // Judged on the heap kept: RSS also moves with what the allocator
        // returns to the OS (the view trims it after a load), so it can
        // even shrink.
        verdict(heap / n as u64 <= 300),
    ));
    let uuids: Vec<String> = view
        .list(&Filter::all())
        .expect("view list")
        .into_iter()
        .take(1000)
        .map(|i| i.service.uuid)
        .collect();
    let blocks = if p.quick { 200 } else { 2000 };
    let measure = |threads: usize| {
        per_call_in_threads(threads, blocks, |t, n| {
            let u = &uuids[(t * 7919 + n) % uuids.len()];
            std::hint::black_box(view.is_up(u).expect("view is_up"));
        })
    };
    let record = format!("{}by-uuid/{}", root(client.config()), uuids[0]);
    let raw_samples: Vec<f64> = (0..200).map(|_| secs(timed(|| raw.get(&record)))).collect();
    for threads in [1, 2, 8] {
        let (samples, allocs) = measure(threads);
        let m = Measured {
            ratios: vec![median(&samples) / median(&raw_samples)],
            lively: samples,
            raw: raw_samples.clone(),
        };
        let mut row = Row::ratio(
            &format!("view is_up, {threads} reader thread(s) vs raw get"),
            &m,
            None,
        );
        row.ratio = format!("{:.5}×", m.ratio());
        row.target = "≤ 100 ns, p99 < 1 µs".into();
        row.met = verdict(median(&m.lively) <= 100e-9 && p99(&m.lively) < 1e-6 && allocs == 0);
        row.spread = format!("{allocs} allocs");
        progress(&row);
        rows.push(row);
    }
}

fn read_rows(p: &Params, lively: &Client, raw: &mut Raw, rows: &mut Vec<Row>) {
    let r = root(lively.config());
    let uuid = lively
        .update(&Service::new("bench-read", "host-1").with_region("rr"))
        .expect("register");
    assert!(lively.is_up(&uuid).expect("is_up"));
    let record = format!("{r}by-uuid/{uuid}");
    let m = interleave(
        p.rounds,
        p.reads,
        50,
        |_| timed(|| assert!(lively.is_up(&uuid).expect("is_up"))),
        |_| timed(|| raw.get(&record)),
    );
    // Call polling is off by default (CPU first; see the CPU rows): a
    // remote call pays the runtime thread's wake-up, which the opt-in
    // polling row below keeps near a raw call.
    let row = Row::ratio("is_up(uuid) vs raw get (default)", &m, Some(1.30));
    progress(&row);
    rows.push(row);
    // The same request as the library's (a count-only get of the UP key),
    // raw: what is left is the library's own cost.
    let up_key = format!("{r}by-status/UP/{uuid}");
    let m = interleave(
        p.rounds,
        p.reads,
        50,
        |_| timed(|| assert!(lively.is_up(&uuid).expect("is_up"))),
        |_| {
            timed(|| {
                let opts = GetOptions::new().with_count_only();
                raw.rt
                    .block_on(raw.c.get(up_key.as_str(), Some(opts)))
                    .expect("raw count-only get")
            })
        },
    );
    let row = Row::ratio("  …is_up vs raw count-only get of the UP key", &m, None);
    progress(&row);
    rows.push(row);
    let m = interleave(
        p.rounds,
        p.reads,
        50,
        |_| {
            timed(|| {
                assert!(
                    lively
                        .is_up_by_type_host("bench-read", "host-1")
                        .expect("is_up_by_type_host")
                )
            })
        },
        |_| timed(|| raw.get(&record)),
    );
    let row = Row::ratio("is_up_by_type_host vs raw get", &m, Some(2.1));
    progress(&row);
    rows.push(row);
}

fn update_rows(p: &Params, lively: &Client, raw: &mut Raw, rows: &mut Vec<Row>) {
    let r = root(lively.config());
    let lease = raw
        .rt
        .block_on(raw.c.lease_grant(60, None))
        .expect("raw lease")
        .id();
    // A changed record whose indexes stay (a new maintenance note each
    // time), and a changed region (the key layout's region index moves too).
    for (what, moves) in [("record", false), ("region", true)] {
        let host = format!("host-{what}");
        let uuid = lively
            .update(&Service::new("bench-changed", &host).with_region("ra"))
            .expect("register");
        let change = |i: usize| {
            let mut s = Service::new("bench-changed", &host).with_uuid(&uuid);
            if moves {
                s = s.with_region(if i % 2 == 0 { "rb" } else { "ra" });
            } else {
                s = s.with_region("ra");
                s.maintenance_note = format!("note {i}");
            }
            s
        };
        let m = interleave(
            p.rounds,
            p.writes,
            10,
            |i| timed(|| lively.update(&change(i)).expect("update changed")),
            |i| {
                let bytes = change(i).to_bytes();
                let key = format!("{RAW_PREFIX}changed");
                timed(|| raw.put(&key, bytes))
            },
        );
        let row = Row::ratio(
            &format!("update (changed {what}) vs raw put"),
            &m,
            Some(1.3),
        );
        progress(&row);
        rows.push(row);
        // The same request raw: the guarded transaction (record, UP and
        // DOWN key compares) with the same writes; what is left is ours.
        let mut floor = RawTxn::new(raw, what, lease);
        let m = interleave(
            p.rounds,
            p.writes / 2,
            10,
            |i| timed(|| lively.update(&change(i)).expect("update changed")),
            |i| {
                let bytes = change(i).to_bytes();
                timed(|| floor.changed(raw, bytes, moves.then_some(i % 2 == 0)))
            },
        );
        let writes = if moves { 3 } else { 1 };
        let row = Row::ratio(
            &format!("  …same vs raw txn: 3 compares, {writes} write(s)"),
            &m,
            None,
        );
        progress(&row);
        rows.push(row);
    }

    // An unchanged service: no write at all, timed against a raw get.
    let svc = Service::new("bench-same", "host-1").with_region("rs");
    let uuid = lively.update(&svc).expect("register");
    let svc = svc.with_uuid(&uuid);
    let record = format!("{r}by-uuid/{uuid}");
    let before = raw.revision();
    let m = interleave(
        p.rounds,
        p.writes,
        10,
        |_| timed(|| lively.update(&svc).expect("update unchanged")),
        |_| timed(|| raw.get(&record)),
    );
    let writes = raw.revision() - before;
    let row = Row::ratio("update (unchanged) vs raw get", &m, None);
    progress(&row);
    rows.push(row);
    let calls = (p.rounds * p.writes + 10) as i64;
    rows.push(Row::text(
        "  …etcd writes by unchanged updates",
        format!("{writes} writes in {calls} calls"),
        "0 writes",
        verdict(writes == 0),
    ));
    // New services, last: each one adds to the services this client owns.
    let new_svc = |i: usize| Service::new("bench-new", &format!("host-{i:06}")).with_region("rn");
    let m = interleave(
        p.rounds,
        p.writes,
        10,
        |i| timed(|| lively.update(&new_svc(i)).expect("update new")),
        |i| {
            let bytes = new_svc(i).to_bytes();
            let key = format!("{RAW_PREFIX}new/{i:06}");
            timed(|| raw.put(&key, bytes))
        },
    );
    let row = Row::ratio("update (new service) vs raw put", &m, Some(1.3));
    progress(&row);
    rows.push(row);
    let new_later = |i: usize| new_svc(i + 1_000_000);
    let mut new_floor = RawTxn::new(raw, "new", lease);
    let m = interleave(
        p.rounds,
        p.writes / 2,
        10,
        |i| timed(|| lively.update(&new_later(i)).expect("update new")),
        |i| {
            let bytes = new_later(i).to_bytes();
            timed(|| new_floor.create(raw, i, bytes))
        },
    );
    let row = Row::ratio("  …same vs raw txn: 4 compares, 4 puts", &m, None);
    progress(&row);
    rows.push(row);
}

/// The transactions os-lively sends for an update, written with raw
/// etcd-client on keys of its own: the floor for the same request.
struct RawTxn {
    dir: String,
    lease: i64,
    /// Mod revisions of the record and the UP key as last written.
    rec: i64,
    up: i64,
}

impl RawTxn {
    fn new(raw: &mut Raw, name: &str, lease: i64) -> RawTxn {
        let dir = format!("{RAW_PREFIX}floor/{name}/");
        let up_key = format!("{dir}up");
        let up = raw
            .rt
            .block_on(
                raw.c
                    .put(up_key, "", Some(PutOptions::new().with_lease(lease))),
            )
            .expect("raw up key")
            .header()
            .map_or(0, |h| h.revision());
        let rec = raw.put(&format!("{dir}rec"), Vec::new());
        RawTxn {
            dir,
            lease,
            rec,
            up,
        }
    }

    /// A changed record: compares on the record, UP and DOWN keys, the
    /// record put, and with `Some(flip)` the region index moved.
    fn changed(&mut self, raw: &mut Raw, record: Vec<u8>, region: Option<bool>) {
        use etcd_client::{Compare, CompareOp};
        let d = &self.dir;
        let compares = [
            Compare::mod_revision(format!("{d}rec"), CompareOp::Equal, self.rec),
            Compare::mod_revision(format!("{d}up"), CompareOp::Equal, self.up),
            Compare::mod_revision(format!("{d}down"), CompareOp::Equal, 0),
        ];
        let mut ops = vec![TxnOp::put(format!("{d}rec"), record, None)];
        if let Some(flip) = region {
            let (to, from) = if flip { ("rb", "ra") } else { ("ra", "rb") };
            ops.push(TxnOp::put(format!("{d}region/{to}/u"), "", None));
            ops.push(TxnOp::delete(format!("{d}region/{from}/u"), None));
        }
        let resp = raw
            .rt
            .block_on(raw.c.txn(Txn::new().when(compares).and_then(ops)))
            .expect("raw txn");
        assert!(resp.succeeded(), "raw floor txn lost its compares");
        self.rec = resp.header().map_or(0, |h| h.revision());
    }

    /// A new service: four absent keys compared, then the record, its
    /// type/host and region index keys, and its UP key on the lease.
    fn create(&mut self, raw: &mut Raw, i: usize, record: Vec<u8>) {
        use etcd_client::{Compare, CompareOp};
        let d = &self.dir;
        let keys = [
            format!("{d}new/rec/{i}"),
            format!("{d}new/up/{i}"),
            format!("{d}new/down/{i}"),
            format!("{d}new/th/{i}"),
        ];
        let compares: Vec<Compare> = keys
            .iter()
            .map(|k| Compare::mod_revision(k.as_str(), CompareOp::Equal, 0))
            .collect();
        let ops = vec![
            TxnOp::put(keys[0].as_str(), record, None),
            TxnOp::put(keys[3].as_str(), "u", None),
            TxnOp::put(format!("{d}new/region/{i}"), "", None),
            TxnOp::put(
                keys[1].as_str(),
                "",
                Some(PutOptions::new().with_lease(self.lease)),
            ),
        ];
        let resp = raw
            .rt
            .block_on(raw.c.txn(Txn::new().when(compares).and_then(ops)))
            .expect("raw txn");
        assert!(resp.succeeded(), "raw floor txn lost its compares");
    }
}

/// What the library callback saw: (uuid, kind, reason, when entered).
type Seen = (String, EventKind, Option<DownReason>, Instant);

fn wait_event(
    rx: &mpsc::Receiver<Seen>,
    what: impl Fn(&Seen) -> bool,
    timeout: Duration,
) -> Option<Seen> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match rx.recv_timeout(left) {
            Ok(ev) if what(&ev) => return Some(ev),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

fn wait_raw(
    rx: &mpsc::Receiver<RawEvent>,
    key: &str,
    put: bool,
    timeout: Duration,
) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match rx.recv_timeout(left) {
            Ok((k, p, t)) if k == key && p == put => return Some(t),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

fn drain<T>(rx: &mpsc::Receiver<T>) {
    while rx.try_recv().is_ok() {}
}

/// Notification latency: writer's `update()` called → subscriber's callback
/// entered, vs raw put called → raw watch event received.
fn notify_rows(
    p: &Params,
    endpoint: &str,
    events: &mpsc::Receiver<Seen>,
    raw: &mut Raw,
    raw_events: &mpsc::Receiver<RawEvent>,
    rows: &mut Vec<Row>,
) {
    let writer = Client::connect(&config(endpoint)).expect("connect writer");
    let uuid = writer
        .update(&Service::new("bench-notify", "host-1").with_region("ra"))
        .expect("register");
    // A changed record (a new note each time), and a changed region.
    let svc = |i: usize| {
        let mut s = Service::new("bench-notify", "host-1")
            .with_uuid(&uuid)
            .with_region("ra");
        s.maintenance_note = format!("note {i}");
        s
    };
    let moved = |i: usize| {
        Service::new("bench-notify", "host-1")
            .with_uuid(&uuid)
            .with_region(if i % 2 == 0 { "rb" } else { "ra" })
    };
    let raw_key = format!("{RAW_PREFIX}watch/notify");
    for (name, target, change) in [
        (
            "notify: update() (changed record) → callback",
            Some(1.2),
            &svc as &dyn Fn(usize) -> Service,
        ),
        ("  …update() (changed region) → callback", None, &moved),
    ] {
        let m = interleave(
            p.rounds,
            p.notifies,
            5,
            |i| {
                let s = change(i);
                drain(events);
                let t0 = Instant::now();
                writer.update(&s).expect("update");
                let (_, _, _, t) =
                    wait_event(events, |e| e.0 == uuid, WAIT).expect("no notification");
                t - t0
            },
            |i| {
                let bytes = change(i).to_bytes();
                drain(raw_events);
                let t0 = Instant::now();
                raw.put(&raw_key, bytes);
                let t = wait_raw(raw_events, &raw_key, true, WAIT).expect("no raw watch event");
                t - t0
            },
        );
        let row = Row::ratio(name, &m, target);
        progress(&row);
        rows.push(row);
    }
    // The notification path alone: the same single raw put of the record
    // (from another connection) → callback, vs raw put → raw watch event.
    let mut raw2 = Raw::connect(endpoint);
    let record = format!("{}by-uuid/{uuid}", root(writer.config()));
    let m = interleave(
        p.rounds,
        p.notifies,
        5,
        |i| {
            // A fresh note each time, so every put is a change.
            let mut s = svc(i);
            s.maintenance_note = format!("raw put {i}");
            let bytes = s.to_bytes();
            drain(events);
            let t0 = Instant::now();
            raw2.put(&record, bytes);
            let (_, _, _, t) = wait_event(events, |e| e.0 == uuid, WAIT).expect("no notification");
            t - t0
        },
        |i| {
            let bytes = svc(i).to_bytes();
            drain(raw_events);
            let t0 = Instant::now();
            raw.put(&raw_key, bytes);
            let t = wait_raw(raw_events, &raw_key, true, WAIT).expect("no raw watch event");
            t - t0
        },
    );
    let row = Row::ratio("  …raw put of the record → callback", &m, None);
    progress(&row);
    rows.push(row);
    drop(writer);
}

fn cli_path() -> PathBuf {
    if let Ok(p) = std::env::var("OSLIVELY_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    target.join("release").join("oslively")
}

/// Crash detection: SIGKILL a registered `oslively register` → DOWN
/// (expired) event, minus the TTL; raw floor: a lease whose keepalives stop
/// at a random phase → the key's delete event, minus the TTL.
fn crash_rows(
    p: &Params,
    endpoint: &str,
    events: &mpsc::Receiver<Seen>,
    raw: &mut Raw,
    raw_events: &mpsc::Receiver<RawEvent>,
    rows: &mut Vec<Row>,
) -> Vec<f64> {
    let interval_ms = TTL.as_millis() as u64 / 3;
    let ttl = TTL.as_secs_f64();
    let cli = cli_path();
    let mut lively = Vec::new();
    let mut note = String::new();
    if cli.exists() {
        for rep in 0..p.crashes {
            let mut child = Command::new(&cli)
                .args(["register", "-o", "table", "--type", "bench-crash", "--host"])
                .arg(format!("host-{}-{rep}", std::process::id()))
                .env("OSLIVELY_ETCD_ENDPOINTS", endpoint)
                .env("OSLIVELY_ETCD_KEY_NAMESPACE", NAMESPACE)
                .env("OSLIVELY_STATUS_TTL", TTL.as_secs().to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn oslively");
            let mut line = String::new();
            BufReader::new(child.stdout.take().expect("stdout"))
                .read_line(&mut line)
                .expect("read uuid");
            let uuid = line
                .trim()
                .strip_prefix("uuid ")
                .unwrap_or_else(|| panic!("oslively printed {line:?}"))
                .to_string();
            // Kill at a random phase of its keepalive cycle.
            std::thread::sleep(Duration::from_millis(
                interval_ms + rand::random::<u64>() % interval_ms,
            ));
            drain(events);
            let t_kill = Instant::now();
            child.kill().expect("SIGKILL");
            let _ = child.wait();
            let ev = wait_event(
                events,
                |e| e.0 == uuid && e.1 == EventKind::Down,
                TTL * 3 + WAIT,
            )
            .expect("no DOWN event after SIGKILL");
            if ev.2 != Some(DownReason::Expired) {
                note = format!(" (reason {:?}!)", ev.2);
            }
            lively.push(secs(ev.3 - t_kill) - ttl);
        }
    }
    let mut base = Vec::new();
    for rep in 0..p.crashes {
        let key = format!("{RAW_PREFIX}watch/crash-{rep}");
        let rt = &raw.rt;
        let c = &mut raw.c;
        let id = rt
            .block_on(c.lease_grant(TTL.as_secs() as i64, None))
            .expect("grant")
            .id();
        rt.block_on(c.put(key.as_str(), "", Some(PutOptions::new().with_lease(id))))
            .expect("put");
        let (mut keeper, mut stream) = rt.block_on(c.lease_keep_alive(id)).expect("keepalive");
        rt.block_on(async {
            keeper.keep_alive().await.expect("keepalive");
            stream.message().await.expect("keepalive answer");
        });
        std::thread::sleep(Duration::from_millis(rand::random::<u64>() % interval_ms));
        drain(raw_events);
        let t_stop = Instant::now();
        drop((keeper, stream));
        let t = wait_raw(raw_events, &key, false, TTL * 3 + WAIT).expect("no raw delete");
        base.push(secs(t - t_stop) - ttl);
    }
    let row = if lively.is_empty() {
        Row::text(
            "crash → DOWN, minus TTL",
            format!("n/a ({} not built)", cli.display()),
            "p99 ≤ +0.300 s",
            "n/a".into(),
        )
    } else {
        let worst = p99(&lively);
        Row {
            name: format!("crash → DOWN event, minus TTL ({} reps)", lively.len()),
            med: fmt_t(median(&lively)),
            p99: fmt_t(worst),
            raw_med: fmt_t(median(&base)),
            raw_p99: fmt_t(p99(&base)),
            ratio: format!("{:+.0} ms", (median(&lively) - median(&base)) * 1e3),
            spread: format!(
                "{}…{}",
                fmt_t(sorted(&lively)[0]),
                fmt_t(*sorted(&lively).last().unwrap_or(&f64::NAN))
            ),
            target: "p99 ≤ +0.300 s".into(),
            met: format!("{}{note}", verdict(worst <= 0.3)),
        }
    };
    progress(&row);
    rows.push(row);
    lively
}

/// Heartbeat deadlines. (a) A check-in's cost: no I/O, so per-call time
/// from blocks of 100 calls, 1 and 8 threads, heap allocations counted.
/// (b) A missed deadline → DOWN (missed) event at another client, minus
/// D, over at least 10 repetitions (the owner stops at a random phase),
/// against the lease-expiry path of this same run (`expiry`: SIGKILL →
/// DOWN event, minus the TTL, from [`crash_rows`]).
fn heartbeat_rows(
    p: &Params,
    endpoint: &str,
    events: &mpsc::Receiver<Seen>,
    raw: &mut Raw,
    expiry: &[f64],
    rows: &mut Vec<Row>,
) {
    let owner = Client::connect(&config(endpoint)).expect("connect");
    let d = Duration::from_secs(1);
    let host = format!("host-{}", std::process::id());
    let uuid = owner
        .update(&Service::new("bench-heartbeat", &host).with_heartbeat(d))
        .expect("register with a heartbeat");
    let blocks = if p.quick { 200 } else { 2000 };
    let record = format!("{}by-uuid/{uuid}", root(owner.config()));
    let raw_samples: Vec<f64> = (0..200).map(|_| secs(timed(|| raw.get(&record)))).collect();
    for threads in [1, 8] {
        let (samples, allocs) = per_call_in_threads(threads, blocks, |_, _| {
            owner.heartbeat(&uuid).expect("check-in");
        });
        let m = Measured {
            ratios: vec![median(&samples) / median(&raw_samples)],
            lively: samples,
            raw: raw_samples.clone(),
        };
        let mut row = Row::ratio(
            &format!("heartbeat check-in, {threads} thread(s) vs raw get"),
            &m,
            None,
        );
        row.ratio = format!("{:.5}×", m.ratio());
        row.target = "≤ 50 ns, 0 allocs".into();
        row.met = verdict(median(&m.lively) <= 50e-9 && allocs == 0);
        row.spread = format!("{allocs} allocs");
        progress(&row);
        rows.push(row);
    }

    let mut missed = Vec::new();
    let mut back = Vec::new();
    let mut note = String::new();
    // At least 10 repetitions, also in quick mode (each takes about D).
    for _ in 0..p.crashes.max(10) {
        // Check in every 10 ms for a random while, then stop.
        let run = Duration::from_millis(100 + rand::random::<u64>() % 300);
        let t0 = Instant::now();
        let mut last = t0;
        drain(events);
        while t0.elapsed() < run {
            owner.heartbeat(&uuid).expect("check-in");
            last = Instant::now();
            std::thread::sleep(Duration::from_millis(10));
        }
        let ev = wait_event(events, |e| e.0 == uuid && e.1 == EventKind::Down, d + WAIT)
            .expect("no DOWN event after the owner stopped checking in");
        if ev.2 != Some(DownReason::Missed) {
            note = format!(" (reason {:?}!)", ev.2);
        }
        missed.push(secs(ev.3 - last) - d.as_secs_f64());
        let t_back = Instant::now();
        owner.heartbeat(&uuid).expect("check-in");
        let ev = wait_event(events, |e| e.0 == uuid && e.1 == EventKind::Up, WAIT)
            .expect("no UP event after the check-in");
        back.push(secs(ev.3 - t_back));
    }
    let worst = p99(&missed);
    let row = Row {
        name: format!(
            "missed deadline → DOWN event, minus D ({} reps) vs lease expiry minus TTL",
            missed.len()
        ),
        med: fmt_t(median(&missed)),
        p99: fmt_t(worst),
        raw_med: if expiry.is_empty() {
            "n/a".into()
        } else {
            fmt_t(median(expiry))
        },
        raw_p99: if expiry.is_empty() {
            "n/a".into()
        } else {
            fmt_t(p99(expiry))
        },
        ratio: if expiry.is_empty() {
            "-".into()
        } else {
            format!("{:.2}×", worst / p99(expiry))
        },
        spread: format!(
            "{}…{}",
            fmt_t(sorted(&missed)[0]),
            fmt_t(*sorted(&missed).last().unwrap_or(&f64::NAN))
        ),
        target: "p99 ≤ +0.100 s".into(),
        met: format!("{}{note}", verdict(worst <= 0.1)),
    };
    progress(&row);
    rows.push(row);
    rows.push(Row::text(
        "check-in after a miss → UP event",
        format!("median {}, p99 {}", fmt_t(median(&back)), fmt_t(p99(&back))),
        "-",
        "-".into(),
    ));
    let _ = owner.close();
}

// The C ABI, called through its exported symbols exactly as C would (the
// functions live in private modules of `os_lively::capi`). Handles are
// opaque pointers (`lively_config *`, `lively_client *`); results are
// `lively_result` (`repr(u32)`, 0 = OK).
unsafe extern "C" {
    fn lively_config_new() -> *mut std::ffi::c_void;
    fn lively_config_free(config: *mut std::ffi::c_void);
    fn lively_config_set_endpoints(
        config: *mut std::ffi::c_void,
        endpoints: *const std::ffi::c_char,
    ) -> u32;
    fn lively_config_set_namespace(
        config: *mut std::ffi::c_void,
        name: *const std::ffi::c_char,
    ) -> u32;
    fn lively_config_set_status_ttl(config: *mut std::ffi::c_void, s: u64) -> u32;
    fn lively_client_connect(
        config: *const std::ffi::c_void,
        out: *mut *const std::ffi::c_void,
    ) -> u32;
    fn lively_client_is_up(
        client: *const std::ffi::c_void,
        uuid: *const std::ffi::c_char,
        up: *mut bool,
    ) -> u32;
    fn lively_client_free(client: *const std::ffi::c_void);
}

/// FFI overhead: `lively_client_is_up` vs `Client::is_up`, (a) with the
/// etcd round trip, (b) on a path without I/O (a malformed uuid, refused
/// before any I/O by both), which isolates the wrapper's own cost (an upper
/// bound: the error path also records the thread's last-error message).
fn ffi_rows(p: &Params, endpoint: &str, lively: &Client, rows: &mut Vec<Row>) {
    use std::ffi::CString;
    let uuid = lively
        .update(&Service::new("bench-ffi", "host-1"))
        .expect("register");
    let c_ep = CString::new(endpoint).expect("endpoint");
    let c_ns = CString::new(NAMESPACE).expect("namespace");
    let c_uuid = CString::new(uuid.as_str()).expect("uuid");
    let bad = "not-a-uuid";
    let c_bad = CString::new(bad).expect("bad uuid");
    // SAFETY: the documented C contract: a fresh config, NUL-terminated
    // strings that outlive the calls, an out pointer to a local.
    let client = unsafe {
        let cfg = lively_config_new();
        assert!(!cfg.is_null(), "lively_config_new");
        assert_eq!(lively_config_set_endpoints(cfg, c_ep.as_ptr()), 0);
        assert_eq!(lively_config_set_namespace(cfg, c_ns.as_ptr()), 0);
        assert_eq!(lively_config_set_status_ttl(cfg, TTL.as_secs()), 0);
        let mut client = std::ptr::null();
        assert_eq!(lively_client_connect(cfg, &mut client), 0, "connect");
        lively_config_free(cfg);
        client
    };
    let ffi_is_up = |u: &CString| {
        let mut up = false;
        // SAFETY: live client handle, NUL-terminated uuid, local out.
        let rc = unsafe { lively_client_is_up(client, u.as_ptr(), &mut up) };
        (rc, up)
    };
    assert_eq!(ffi_is_up(&c_uuid), (0, true), "lively_client_is_up");
    let m = interleave(
        p.rounds,
        p.reads,
        50,
        |_| timed(|| assert_eq!(ffi_is_up(&c_uuid), (0, true))),
        |_| timed(|| assert!(lively.is_up(&uuid).expect("is_up"))),
    );
    let diff = median(&m.lively) - median(&m.raw);
    let mut row = Row::ratio("FFI is_up vs Rust is_up (round trip)", &m, None);
    row.ratio = format!("{:+.1} µs", diff * 1e6);
    row.raw_med = format!("{} (Rust)", row.raw_med);
    progress(&row);
    rows.push(row);
    // No I/O: per-call times are sub-µs, so time batches of 100 calls.
    let batch = 100;
    let m = interleave(
        p.rounds,
        p.reads * 2,
        100,
        |_| {
            timed(|| {
                for _ in 0..batch {
                    assert_ne!(ffi_is_up(&c_bad).0, 0);
                }
            }) / batch
        },
        |_| {
            timed(|| {
                for _ in 0..batch {
                    assert!(lively.is_up(std::hint::black_box(bad)).is_err());
                }
            }) / batch
        },
    );
    let diff = median(&m.lively) - median(&m.raw);
    let mut row = Row::ratio("FFI vs Rust, no I/O (bad uuid), per call", &m, None);
    row.ratio = format!("{:+.2} µs", diff * 1e6);
    row.raw_med = format!("{} (Rust)", row.raw_med);
    row.target = "< 1 µs/call".into();
    row.met = verdict(diff < 1e-6);
    progress(&row);
    rows.push(row);
    // SAFETY: the handle from connect, freed once, no other user.
    unsafe { lively_client_free(client) };
}

/// etcd's own counters, summed over every method: `grpc_server_handled_total`
/// (calls completed) and `grpc_server_msg_received_total` (every message
/// received, stream messages such as keepalives included).
fn grpc_counters(port: u16) -> (f64, f64) {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("metrics");
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    s.write_all(req.as_bytes()).expect("metrics request");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    let sum = |name: &str| -> f64 {
        body.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (
        sum("grpc_server_handled_total"),
        sum("grpc_server_msg_received_total"),
    )
}

/// What an idle registered client costs etcd, counted by etcd itself: one
/// service registered, three endpoints (one member listening on three
/// client URLs), TTL 60 s, nothing else asked. The baseline, on an etcd of
/// its own over the same window: raw etcd-client keeping one lease alive
/// every TTL/3 with one key on it.
fn idle_rows(p: &Params, rows: &mut Vec<Row>) {
    const IDLE_TTL: Duration = Duration::from_secs(60);
    // Whole keepalive periods (20 s) or nearly: a shorter window rounds the
    // baseline's one keepalive per period to zero or one.
    let window = if p.quick {
        Duration::from_secs(40)
    } else {
        Duration::from_secs(60)
    };
    let ours = Etcd::start_listening(3);
    let theirs = Etcd::start();
    let mut cfg = Config::new();
    cfg.endpoints(&ours.endpoints)
        .expect("endpoints")
        .namespace(NAMESPACE)
        .expect("namespace")
        .status_ttl(IDLE_TTL);
    let client = Client::connect(&cfg).expect("connect");
    client
        .update(&Service::new("idle", "h1"))
        .expect("register");
    // The raw baseline: a lease, a key on it, a keepalive every TTL/3.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let raw_ep = theirs.endpoint.clone();
    let raw_thread = std::thread::spawn(move || {
        let rt = current_thread_rt();
        rt.block_on(async move {
            let mut c = etcd_client::Client::connect([raw_ep], None)
                .await
                .expect("raw connect");
            let lease = c
                .lease_grant(IDLE_TTL.as_secs() as i64, None)
                .await
                .expect("grant");
            c.put(
                format!("{RAW_PREFIX}idle"),
                "",
                Some(PutOptions::new().with_lease(lease.id())),
            )
            .await
            .expect("put");
            let (mut keeper, mut responses) =
                c.lease_keep_alive(lease.id()).await.expect("keepalive");
            // Opening the stream sent the first keepalive and took its answer.
            loop {
                tokio::time::sleep(IDLE_TTL / 3).await;
                if stop_rx.try_recv().is_ok() || keeper.keep_alive().await.is_err() {
                    return;
                }
                let _ = responses.message().await;
            }
        });
    });
    // Past registration, connection set-up and the first keepalive after
    // the registration (whose check of the lease's keys is a one-off).
    std::thread::sleep(IDLE_TTL / 3 + Duration::from_secs(2));
    let (ours0, theirs0) = (grpc_counters(ours.port), grpc_counters(theirs.port));
    std::thread::sleep(window);
    let (ours1, theirs1) = (grpc_counters(ours.port), grpc_counters(theirs.port));
    let _ = stop_tx.send(());
    drop(client);
    drop(raw_thread); // detached: ends at its next keepalive, or with the process
    let per_min = |a: f64, b: f64| (b - a) * 60.0 / window.as_secs_f64();
    let (calls, raw_calls) = (per_min(ours0.0, ours1.0), per_min(theirs0.0, theirs1.0));
    let (msgs, raw_msgs) = (per_min(ours0.1, ours1.1), per_min(theirs0.1, theirs1.1));
    // "About its keepalives": at most one message more per keepalive.
    let target = 2.0 * raw_msgs.max(3.0);
    for (name, v, raw, t) in [
        (
            "idle client, 3 endpoints, TTL 60 s: etcd calls/min",
            calls,
            raw_calls,
            None,
        ),
        (
            "idle client, 3 endpoints, TTL 60 s: etcd messages/min",
            msgs,
            raw_msgs,
            Some(target),
        ),
    ] {
        let row = Row {
            name: name.into(),
            med: format!("{v:.1}"),
            p99: "-".into(),
            raw_med: format!("{raw:.1}"),
            raw_p99: "-".into(),
            ratio: if raw > 0.0 {
                format!("{:.2}×", v / raw)
            } else {
                "-".into()
            },
            spread: format!("over {} s", window.as_secs()),
            target: t.map_or("-".into(), |t| format!("≤ {t:.0}/min")),
            met: t.map_or("-".into(), |t| verdict(v <= t)),
        };
        progress(&row);
        rows.push(row);
    }
}

/// The hand-off every blocking call pays on top of its etcd round trip:
/// `Client::ping` (no I/O) back to back, and isolated calls (2 ms apart, so
/// the runtime thread has gone to sleep in between).
fn handoff_rows(p: &Params, lively: &Client, rows: &mut Vec<Row>) {
    let n = if p.quick { 2_000 } else { 20_000 };
    let mut hot: Vec<f64> = (0..n)
        .map(|_| secs(timed(|| lively.ping().expect("ping"))))
        .collect();
    let mut cold: Vec<f64> = (0..n / 50)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(2));
            secs(timed(|| lively.ping().expect("ping")))
        })
        .collect();
    hot.sort_by(f64::total_cmp);
    cold.sort_by(f64::total_cmp);
    // The goal is the hand-off itself; an isolated call also wakes the
    // runtime thread from sleep (polling stops 1 ms after a call, so an
    // idle client costs no CPU), which no hand-off avoids.
    for (name, v, goal) in [
        (
            "hand-off, no I/O (Client::ping), back to back, call polling on",
            &hot,
            true,
        ),
        ("  …isolated (2 ms apart: the runtime asleep)", &cold, false),
    ] {
        let med = median(v);
        let mut row = if goal {
            Row::text(name, fmt_t(med), "≤ 10 µs median", verdict(med <= 10e-6))
        } else {
            Row::text(name, fmt_t(med), "-", "-".into())
        };
        row.p99 = fmt_t(p99(v));
        progress(&row);
        rows.push(row);
    }
}

fn main() {
    let rss_start = rss_kib();
    let p = Params::from_env();
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

// ---------------------------------------------------------------------------
// A fleet of 100,000 (opt-in: BENCH_SCALE=1, or BENCH_SCALE=<services>)
// ---------------------------------------------------------------------------

/// Clients registering the fleet, and threads per client.
const FLEET_CLIENTS: usize = 10;
const FLEET_THREADS: usize = 4;

/// Services of the fleet section, if `BENCH_SCALE` asks for it.
fn fleet_size() -> Option<usize> {
    match std::env::var("BENCH_SCALE").ok()?.trim() {
        "" | "0" => None,
        "1" => Some(100_000),
        n => n.parse().ok().filter(|n| *n > 0),
    }
}

fn live_bytes() -> i64 {
    LIVE_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Every key under `prefix` read with raw etcd-client the way os-lively
/// reads it (pages of `limit` keys at the first page's revision), since one
/// unpaged response of a large fleet passes gRPC's 4 MiB limit. Returns the
/// number of keys.
fn raw_paged(raw: &mut Raw, prefix: &str, keys_only: bool, limit: i64) -> usize {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1; // our prefixes end in '/'
    }
    let mut from = prefix.as_bytes().to_vec();
    let mut revision = 0;
    let mut n = 0;
    let mut kv = raw.c.kv_client().max_decoding_message_size(16 << 20);
    loop {
        let mut opts = GetOptions::new()
            .with_range(end.clone())
            .with_limit(limit)
            .with_revision(revision);
        if keys_only {
            opts = opts.with_keys_only();
        }
        let resp = raw
            .rt
            .block_on(kv.get(from.clone(), Some(opts)))
            .expect("raw paged range");
        if revision == 0 {
            revision = resp.header().map_or(0, |h| h.revision());
        }
        n += resp.kvs().len();
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return n,
        }
    }
}

/// `n` services registered from [`FLEET_CLIENTS`] clients, then every read
/// that once failed past ~18,000: list all and by each filter (beside the
/// raw paged reads they need), a view loaded and synced, and a
/// subscription's snapshot; with the view's and the subscription's memory
/// per service.
fn fleet_rows(n: usize, endpoint: &str, raw: &mut Raw, rows: &mut Vec<Row>) {
    let mut cfg = config(endpoint);
    cfg.namespace("fleet")
        .expect("namespace")
        .status_ttl(Duration::from_secs(60))
        .request_timeout(Duration::from_secs(60));
    let regions = 10;
    let types = 20;
    let service = |i: usize| {
        Service::new(&format!("type-{}", i % types), &format!("host-{i:06}"))
            .with_region(&format!("r{}", i % regions))
    };
    let clients: Vec<Client> = (0..FLEET_CLIENTS)
        .map(|_| Client::connect(&cfg).expect("connect"))
        .collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for (c, client) in clients.iter().enumerate() {
            for t in 0..FLEET_THREADS {
                let slot = c * FLEET_THREADS + t;
                s.spawn(move || {
                    for i in (slot..n).step_by(FLEET_CLIENTS * FLEET_THREADS) {
                        client.update(&service(i)).expect("fleet update");
                    }
                });
            }
        }
    });
    let took = start.elapsed();
    let row = Row::text(
        &format!(
            "fleet: register {n} services ({FLEET_CLIENTS} clients × {FLEET_THREADS} threads)"
        ),
        format!(
            "{}, {:.0}/s",
            fmt_t(took.as_secs_f64()),
            n as f64 / took.as_secs_f64()
        ),
        "-",
        "-".into(),
    );
    progress(&row);
    rows.push(row);

    let reader = Client::connect(&cfg).expect("connect");
    let r = root(&cfg);
    let (records, up) = (format!("{r}by-uuid/"), format!("{r}by-status/UP/"));
    // Each list beside the raw reads it needs at least, timed alternately.
    let mut list_row =
        |name: &str, filter: Filter, expect: usize, raw_read: &mut dyn FnMut(&mut Raw)| {
            let mut lively = Vec::new();
            let mut base = Vec::new();
            for round in 0..3 {
                let l = || {
                    timed(|| {
                        let got = reader.list(&filter).expect("fleet list");
                        assert_eq!(got.len(), expect, "{name}: wrong count");
                    })
                };
                if round % 2 == 0 {
                    lively.push(secs(l()));
                    base.push(secs(timed(|| raw_read(raw))));
                } else {
                    base.push(secs(timed(|| raw_read(raw))));
                    lively.push(secs(l()));
                }
            }
            let m = Measured {
                ratios: lively.iter().zip(&base).map(|(l, b)| l / b).collect(),
                lively,
                raw: base,
            };
            let row = Row::ratio(&format!("fleet: list {name} ({expect})"), &m, None);
            progress(&row);
            rows.push(row);
        };
    let scan = |raw: &mut Raw| {
        raw_paged(raw, &up, true, 5000);
        raw_paged(raw, &records, false, 2000);
    };
    list_row("all", Filter::all(), n, &mut { scan });
    list_row(
        "status=UP",
        Filter::all().status(os_lively::Status::Up),
        n,
        &mut { scan },
    );
    list_row(
        "region",
        Filter::all().region("r3"),
        (0..n).filter(|i| i % regions == 3).count(),
        &mut { scan },
    );
    // An index and the records and UP keys it names, in concurrent batches.
    let type_prefix = format!("{r}by-type-host/type-7/");
    list_row(
        "type",
        Filter::all().service_type("type-7"),
        (0..n).filter(|i| i % types == 7).count(),
        &mut |raw: &mut Raw| {
            raw_index_list(raw, &r, &type_prefix, true);
        },
    );
    let one = format!("{r}by-type-host/type-7/host-000007");
    list_row(
        "type+host",
        Filter::all().service_type("type-7").host("host-000007"),
        1,
        &mut |raw: &mut Raw| {
            raw_index_list(raw, &r, &one, true);
        },
    );

    // A view: load + sync time, and its live heap per service.
    let before = live_bytes();
    let t = Instant::now();
    let view = reader.view().expect("fleet view");
    view.sync(Duration::from_secs(120))
        .expect("fleet view sync");
    let took = t.elapsed();
    let view_bytes = (live_bytes() - before).max(0) as f64 / n as f64;
    assert_eq!(view.len(), n);
    let raw_t = timed(|| scan(raw));
    let row = Row::text(
        "fleet: view() + sync",
        format!(
            "{} (raw paged read of records and UP keys: {}), {view_bytes:.0} B/service",
            fmt_t(took.as_secs_f64()),
            fmt_t(raw_t.as_secs_f64())
        ),
        "≤ 300 B/service",
        verdict(view_bytes <= 300.0),
    );
    progress(&row);
    rows.push(row);

    // A subscription with a snapshot of everything: time to its last
    // snapshot event, and what it keeps per service afterwards.
    let before = live_bytes();
    let t = Instant::now();
    let sub = reader
        .subscribe(
            &Filter::all(),
            &SubscribeOptions {
                snapshot: true,
                queue_capacity: n + 1024,
            },
        )
        .expect("fleet subscribe");
    let mut got = 0;
    while got < n {
        match sub
            .recv_timeout(Duration::from_secs(60))
            .expect("fleet events")
        {
            Some(e) if e.kind == EventKind::Existing => got += 1,
            Some(_) => {}
            None => panic!("fleet snapshot stopped after {got} of {n} events"),
        }
    }
    let took = t.elapsed();
    let sub_bytes = (live_bytes() - before).max(0) as f64 / n as f64;
    let row = Row::text(
        "fleet: subscribe with snapshot, all received",
        format!(
            "{}, {sub_bytes:.0} B/service kept by the subscription",
            fmt_t(took.as_secs_f64())
        ),
        "-",
        "-".into(),
    );
    progress(&row);
    rows.push(row);
    drop(sub);
    drop(view);
    drop(reader);
    for c in clients {
        let _ = c.close();
    }
}
