//! The shared harness: parameters, an etcd of its own on loopback, the raw
//! etcd-client baseline, heap counting, statistics and the table.

use super::*;

/// Counts heap allocations per thread, so the view rows can show that its
/// is-up path allocates nothing, and the bytes live on the heap in the whole
/// process, so they can show what the view's copy keeps (RSS also counts
/// what the allocator keeps after the load's transient buffers are freed).
pub(crate) struct CountingAlloc;

thread_local! {
    static ALLOCS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Heap bytes allocated and not yet freed, by every thread: the view and
/// fleet rows measure a view's and a subscription's memory with it (RSS
/// keeps pages that transient buffers used).
pub(crate) static LIVE_BYTES: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

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
pub(crate) fn live_heap() -> i64 {
    LIVE_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}

#[global_allocator]
pub(crate) static GLOBAL: CountingAlloc = CountingAlloc;

pub(crate) fn allocs_here() -> u64 {
    ALLOCS.with(|c| c.get())
}

/// Status TTL of every client in this benchmark (and of the CLI).
pub(crate) const TTL: Duration = Duration::from_secs(2);
/// os-lively key namespace; raw-only keys live under [`RAW_PREFIX`].
pub(crate) const NAMESPACE: &str = "bench";
pub(crate) const RAW_PREFIX: &str = "/rawbench/";
pub(crate) const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------

pub(crate) struct Params {
    pub(crate) quick: bool,
    /// Rounds of every interleaved comparison.
    pub(crate) rounds: usize,
    /// Iterations per round: reads, writes, notifications, list.
    pub(crate) reads: usize,
    pub(crate) writes: usize,
    pub(crate) notifies: usize,
    pub(crate) lists: usize,
    /// Repetitions of each crash-detection measurement.
    pub(crate) crashes: usize,
    /// Services registered by the scale test.
    pub(crate) scale: usize,
    /// Threads sharing one client in the scale test.
    pub(crate) scale_threads: usize,
}

impl Params {
    pub(crate) fn from_env() -> Params {
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

pub(crate) fn etcd_bin() -> String {
    match std::env::var("ETCD_BIN") {
        Ok(b) if !b.is_empty() => b,
        _ => "etcd".to_owned(),
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// `GET /health` on the client port says `"health":"true"`.
pub(crate) fn etcd_healthy(port: u16) -> bool {
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
pub(crate) struct Etcd {
    // Field order: kill the process before removing its directory.
    pub(crate) child: Child,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) endpoint: String,
    /// Every client URL it listens on (`endpoint` is the first).
    pub(crate) endpoints: Vec<String>,
    pub(crate) port: u16,
}

impl Etcd {
    pub(crate) fn start() -> Etcd {
        Self::start_listening(1)
    }

    /// Listening on `urls` client URLs: one member that a client sees as
    /// `urls` endpoints.
    pub(crate) fn start_listening(urls: usize) -> Etcd {
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
pub(crate) struct Raw {
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) c: etcd_client::Client,
}

pub(crate) fn current_thread_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

impl Raw {
    pub(crate) fn connect(endpoint: &str) -> Raw {
        let rt = current_thread_rt();
        let c = rt
            .block_on(etcd_client::Client::connect([endpoint], None))
            .expect("raw connect");
        Raw { rt, c }
    }

    pub(crate) fn get(&mut self, key: &str) -> etcd_client::GetResponse {
        self.rt.block_on(self.c.get(key, None)).expect("raw get")
    }

    pub(crate) fn put(&mut self, key: &str, value: Vec<u8>) -> i64 {
        let r = self
            .rt
            .block_on(self.c.put(key, value, None))
            .expect("raw put");
        r.header().map_or(0, |h| h.revision())
    }

    pub(crate) fn prefix(&mut self, prefix: &str) -> etcd_client::GetResponse {
        self.rt
            .block_on(self.c.get(prefix, Some(GetOptions::new().with_prefix())))
            .expect("raw range")
    }

    /// The store's current revision.
    pub(crate) fn revision(&mut self) -> i64 {
        self.get("/").header().map_or(0, |h| h.revision())
    }
}

/// Events of a raw prefix watch on its own connection and thread:
/// (key, is_put, when received).
pub(crate) type RawEvent = (String, bool, Instant);

pub(crate) fn spawn_raw_watcher(endpoint: String, prefix: String) -> mpsc::Receiver<RawEvent> {
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

pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

pub(crate) fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s
}

pub(crate) fn median(v: &[f64]) -> f64 {
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

pub(crate) fn p99(v: &[f64]) -> f64 {
    let s = sorted(v);
    if s.is_empty() {
        return f64::NAN;
    }
    let i = ((s.len() as f64 * 0.99).ceil() as usize).clamp(1, s.len()) - 1;
    s[i]
}

/// A duration in seconds, human-scaled; signed values keep their sign.
pub(crate) fn fmt_t(s: f64) -> String {
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
pub(crate) struct Measured {
    pub(crate) lively: Vec<f64>,
    pub(crate) raw: Vec<f64>,
    pub(crate) ratios: Vec<f64>,
}

impl Measured {
    /// `lively` and `raw` hold `rounds` consecutive rounds of equal length.
    pub(crate) fn from_samples(lively: Vec<f64>, raw: Vec<f64>, rounds: usize) -> Measured {
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

    pub(crate) fn ratio(&self) -> f64 {
        median(&self.ratios)
    }

    pub(crate) fn spread(&self) -> String {
        let s = sorted(&self.ratios);
        match (s.first(), s.last()) {
            (Some(a), Some(b)) => format!("{a:.2}–{b:.2}"),
            _ => "-".into(),
        }
    }
}

/// Runs `rounds` × `iters` iterations; each calls `lively(i)` and `raw(i)`
/// (alternating which goes first), each returning the duration to record.
pub(crate) fn interleave(
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

pub(crate) fn timed<T>(f: impl FnOnce() -> T) -> Duration {
    let t = Instant::now();
    std::hint::black_box(f());
    t.elapsed()
}

pub(crate) struct Row {
    pub(crate) name: String,
    pub(crate) med: String,
    pub(crate) p99: String,
    pub(crate) raw_med: String,
    pub(crate) raw_p99: String,
    pub(crate) ratio: String,
    pub(crate) spread: String,
    pub(crate) target: String,
    pub(crate) met: String,
}

impl Row {
    /// A comparison row judged on the median ratio.
    pub(crate) fn ratio(name: &str, m: &Measured, target: Option<f64>) -> Row {
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

    pub(crate) fn text(name: &str, med: String, target: &str, met: String) -> Row {
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

    pub(crate) fn cells(&self) -> [&str; 9] {
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

pub(crate) fn verdict(ok: bool) -> String {
    if ok { "yes".into() } else { "NO".into() }
}

pub(crate) fn print_table(rows: &[Row]) {
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

pub(crate) fn progress(row: &Row) {
    eprintln!(
        "bench: {:<40} median {:>10}  p99 {:>10}  raw {:>10}  ratio {:>7} ({})",
        row.name, row.med, row.p99, row.raw_med, row.ratio, row.spread
    );
}

// ---------------------------------------------------------------------------
// Machine
// ---------------------------------------------------------------------------

pub(crate) fn machine(etcd: &Etcd) -> String {
    machine_at(etcd.dir.path())
}

/// The machine line, with the file system of `data_dir`.
pub(crate) fn machine_at(data_dir: &std::path::Path) -> String {
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
        .arg(data_dir)
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

pub(crate) fn rss_kib() -> u64 {
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

pub(crate) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------
// Rows
// ---------------------------------------------------------------------------

pub(crate) fn config(endpoint: &str) -> Config {
    let mut cfg = Config::new();
    cfg.endpoints(&[endpoint])
        .expect("endpoints")
        .namespace(NAMESPACE)
        .expect("namespace")
        .status_ttl(TTL)
        // The view row's RSS is the copy kept, not what glibc holds for
        // reuse after the load: the trim is opt-in.
        .release_memory(true);
    cfg
}

pub(crate) fn root(cfg: &Config) -> String {
    format!("{}/services/", cfg.get_namespace())
}

/// What [`raw_region_list`] does, for any index under `prefix`: the uuid is
/// the key's last segment, or with `uuid_in_value` the value (type/host).
pub(crate) fn raw_index_list(
    raw: &mut Raw,
    root: &str,
    prefix: &str,
    uuid_in_value: bool,
) -> usize {
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
pub(crate) fn per_call_in_threads(
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

/// etcd's own counters, summed over every method: `grpc_server_handled_total`
/// (calls completed) and `grpc_server_msg_received_total` (every message
/// received, stream messages such as keepalives included).
pub(crate) fn grpc_counters(port: u16) -> (f64, f64) {
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

/// Services of the fleet section, if `BENCH_SCALE` asks for it.
pub(crate) fn fleet_size() -> Option<usize> {
    match std::env::var("BENCH_SCALE").ok()?.trim() {
        "" | "0" => None,
        "1" => Some(100_000),
        n => n.parse().ok().filter(|n| *n > 0),
    }
}

pub(crate) fn live_bytes() -> i64 {
    LIVE_BYTES.load(std::sync::atomic::Ordering::Relaxed)
}
