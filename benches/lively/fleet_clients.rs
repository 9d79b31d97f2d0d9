//! The fleet as etcd sees it (`BENCH_ONLY=fleet-clients`, issue 21): N
//! daemons, each a real [`Client`] of its own (connection, lease, runtime
//! thread) registering one service with a 10 s TTL, and M watchers (half
//! local [`View`]s, half callback subscriptions, each on a client of its
//! own), on a three-member etcd on loopback; then the same again with every
//! client given only the endpoint of one `etcd grpc-proxy` in front of the
//! cluster.
//!
//! The daemons live in child processes (this bench binary run again with
//! [`CHILD_ENV`] set, `FLEET_PROCS` of them), so that killing one with
//! SIGKILL is a real crash: nothing revokes, nothing closes. The watchers
//! and the controlling client live in this process.
//!
//! ```sh
//! cargo build --release --bin oslively
//! BENCH_ONLY=fleet-clients cargo bench --bench lively
//! FLEET_CLIENTS=100 FLEET_WATCHERS=10 FLEET_QUICK=1 BENCH_ONLY=fleet-clients cargo bench --bench lively
//! ```
//!
//! Sizes: `FLEET_CLIENTS` (daemons, default 2000), `FLEET_WATCHERS`
//! (default 200), `FLEET_PROCS` (child processes holding the daemons,
//! default 10: killing one is the 10% crash), `FLEET_IDLE_SECS` (the idle
//! window, default 60; 30 with `FLEET_QUICK=1`: a multiple of 30 s, the
//! period of a client's full UP-key check), `FLEET_CHANGES` (changes
//! timed, default 20; 8 quick), `FLEET_SKIP_PROXY=1` (the direct rows
//! only).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::ChildStdin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::common::{Cluster, EtcdOpts, GrpcProxy, http_get};
use os_lively::View;

/// Set in a child process: `<first index>,<count>` of the daemons it runs.
pub(crate) const CHILD_ENV: &str = "OSLIVELY_BENCH_FLEET_CHILD";
const CHILD_ENDPOINTS: &str = "OSLIVELY_BENCH_FLEET_ENDPOINTS";
const CHILD_NAMESPACE: &str = "OSLIVELY_BENCH_FLEET_NAMESPACE";
/// Status TTL of every client of this section.
const FLEET_TTL: Duration = Duration::from_secs(10);
/// How long a connect or a call may take while thousands of clients start.
const FLEET_TIMEOUT: Duration = Duration::from_secs(60);
/// Threads a child connects and registers its daemons with.
const CHILD_THREADS: usize = 2;
/// Attempts at connecting and registering one daemon: at 2,000 the set-up
/// storm can leave a loaded cluster without a leader for a moment, and a
/// daemon that fails to start is restarted by its supervisor.
const CHILD_ATTEMPTS: usize = 10;
/// How long a restarted member may take to answer /health (a quorum read).
const RESTART_HEALTHY: Duration = Duration::from_secs(120);
/// The crash row's bound: every watcher sees each DOWN within TTL + 1 s.
const CRASH_SLACK: Duration = Duration::from_secs(1);

struct Sizes {
    clients: usize,
    watchers: usize,
    procs: usize,
    idle: Duration,
    changes: usize,
    proxy: bool,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Sizes {
    fn from_env() -> Sizes {
        let quick = std::env::var("FLEET_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let clients = env_usize("FLEET_CLIENTS", 2000).max(1);
        Sizes {
            clients,
            watchers: env_usize("FLEET_WATCHERS", 200).max(2),
            procs: env_usize("FLEET_PROCS", 10).clamp(1, clients),
            idle: Duration::from_secs(
                env_usize("FLEET_IDLE_SECS", if quick { 30 } else { 60 }) as u64
            ),
            changes: env_usize("FLEET_CHANGES", if quick { 8 } else { 20 }).max(1),
            proxy: !std::env::var("FLEET_SKIP_PROXY").is_ok_and(|v| !v.is_empty() && v != "0"),
        }
    }
}

fn fleet_config(endpoints: &[String], namespace: &str) -> Config {
    let mut cfg = Config::new();
    cfg.endpoints(endpoints)
        .expect("endpoints")
        .namespace(namespace)
        .expect("namespace")
        .status_ttl(FLEET_TTL)
        .connect_timeout(FLEET_TIMEOUT)
        .request_timeout(FLEET_TIMEOUT);
    cfg
}

/// Threads of this process.
fn threads_here() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Threads:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Raises this process's open-file limit to its hard limit (children and
/// the etcd processes started after inherit it): 2,000 clients of three
/// endpoints hold 6,000 connections.
pub(crate) fn raise_nofile() -> (u64, u64) {
    // SAFETY: getrlimit/setrlimit fill and read the struct we pass.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return (0, 0);
        }
        let before = lim.rlim_cur as u64;
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        (before, lim.rlim_max as u64)
    }
}

// ---------------------------------------------------------------------------
// The child: daemons that a SIGKILL crashes
// ---------------------------------------------------------------------------

/// The child process's main: connects its daemons (one client and one
/// service each), reports their uuids, then answers `stats`, `rss` and
/// `close` on stdin until it is closed or killed.
pub(crate) fn child_main(spec: &str) {
    raise_nofile();
    let (first, count) = spec
        .split_once(',')
        .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
        .expect("child spec <first>,<count>");
    let endpoints: Vec<String> = std::env::var(CHILD_ENDPOINTS)
        .expect("child endpoints")
        .split(',')
        .map(str::to_owned)
        .collect();
    let ns = std::env::var(CHILD_NAMESPACE).expect("child namespace");
    let cfg = fleet_config(&endpoints, &ns);
    let (rss0, threads0, heap0) = (rss_kib(), threads_here(), live_heap());
    let slots: Vec<Mutex<Option<(Client, String)>>> =
        (0..count).map(|_| Mutex::new(None)).collect();
    let failed = AtomicBool::new(false);
    let retries = AtomicU64::new(0);
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for t in 0..CHILD_THREADS {
            let (slots, cfg, failed, retries, first_error) =
                (&slots, &cfg, &failed, &retries, &first_error);
            s.spawn(move || {
                for i in (t..count).step_by(CHILD_THREADS) {
                    if failed.load(Ordering::Relaxed) {
                        return;
                    }
                    let host = format!("host-{:05}", first + i);
                    let mut r = Err(os_lively::Error::new(
                        os_lively::ErrorKind::Internal,
                        "no attempt",
                    ));
                    for attempt in 0..CHILD_ATTEMPTS {
                        r = Client::connect(cfg).and_then(|c| {
                            let uuid = c.update(&Service::new("daemon", &host))?;
                            Ok((c, uuid))
                        });
                        match &r {
                            Ok(_) => break,
                            Err(e) => {
                                retries.fetch_add(1, Ordering::Relaxed);
                                first_error
                                    .lock()
                                    .unwrap()
                                    .get_or_insert_with(|| format!("{host}: {e}"));
                                std::thread::sleep(Duration::from_millis(250 << attempt.min(4)));
                            }
                        }
                    }
                    match r {
                        Ok(v) => *slots[i].lock().unwrap() = Some(v),
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            println!("error daemon {host}: {e}");
                            return;
                        }
                    }
                }
            });
        }
    });
    if failed.load(Ordering::Relaxed) {
        std::process::exit(1);
    }
    let daemons: Vec<(Client, String)> = slots
        .into_iter()
        .map(|m| m.into_inner().unwrap().expect("daemon"))
        .collect();
    let mut out = std::io::stdout().lock();
    let retried = retries.load(Ordering::Relaxed);
    if retried > 0 {
        let why = first_error.into_inner().unwrap().unwrap_or_default();
        let _ = writeln!(out, "retried {retried} {}", why.replace('\n', " "));
    }
    for (i, (_, uuid)) in daemons.iter().enumerate() {
        let _ = writeln!(out, "up {} {uuid}", first + i);
    }
    let _ = writeln!(
        out,
        "ready {rss0} {threads0} {} {} {heap0} {}",
        rss_kib(),
        threads_here(),
        live_heap()
    );
    let _ = out.flush();
    drop(out);
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut out = std::io::stdout().lock();
        match line.trim() {
            "stats" => {
                let mut sum = [0u64; 6];
                for (c, _) in &daemons {
                    let s = c.stats();
                    for (acc, v) in sum.iter_mut().zip([
                        s.registrations_lost,
                        s.lease_regrants,
                        s.up_keys_restored,
                        s.reconnects,
                        s.keepalives_failed,
                        s.task_panics,
                    ]) {
                        *acc += v;
                    }
                }
                let s: Vec<String> = sum.iter().map(u64::to_string).collect();
                let _ = writeln!(out, "stats {}", s.join(" "));
            }
            "rss" => {
                let _ = writeln!(out, "rss {} {}", rss_kib(), threads_here());
            }
            "close" => {
                std::thread::scope(|s| {
                    for chunk in daemons.chunks(daemons.len().div_ceil(CHILD_THREADS).max(1)) {
                        s.spawn(move || {
                            for (c, _) in chunk {
                                let _ = c.clone().close();
                            }
                        });
                    }
                });
                let _ = writeln!(out, "closed");
                let _ = out.flush();
                std::process::exit(0);
            }
            other => {
                let _ = writeln!(out, "error unknown command {other:?}");
            }
        }
        let _ = out.flush();
    }
    // stdin closed (the bench ended or died): leave without revoking.
    std::process::exit(0);
}

/// One child process and the daemons it runs.
struct DaemonProc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
    /// (index, uuid) of its daemons.
    uuids: Vec<(usize, String)>,
    rss0: u64,
    threads0: u64,
    rss1: u64,
    threads1: u64,
    /// Live heap bytes before and after its clients connected.
    heap0: i64,
    heap1: i64,
    alive: bool,
    /// Connect/register attempts that failed and were retried, and the
    /// first failure.
    retried: u64,
    retry_error: String,
}

impl DaemonProc {
    fn spawn(first: usize, count: usize, endpoints: &[String], ns: &str) -> DaemonProc {
        let exe = std::env::current_exe().expect("current_exe");
        let mut child = Command::new(exe)
            .env(CHILD_ENV, format!("{first},{count}"))
            .env(CHILD_ENDPOINTS, endpoints.join(","))
            .env(CHILD_NAMESPACE, ns)
            .env_remove("BENCH_ONLY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a daemon process");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("child stdout"));
        DaemonProc {
            child,
            stdin,
            stdout,
            uuids: Vec::with_capacity(count),
            rss0: 0,
            threads0: 0,
            rss1: 0,
            threads1: 0,
            heap0: 0,
            heap1: 0,
            alive: true,
            retried: 0,
            retry_error: String::new(),
        }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        match self.stdout.read_line(&mut l) {
            Ok(n) if n > 0 => l.trim_end().to_owned(),
            _ => panic!(
                "daemon process {} ended: {:?}",
                self.child.id(),
                self.child.try_wait()
            ),
        }
    }

    /// Reads the child's uuids and its `ready` line.
    fn wait_ready(&mut self) {
        loop {
            let l = self.line();
            let mut w = l.split_whitespace();
            match w.next() {
                Some("up") => {
                    let i = w.next().and_then(|v| v.parse().ok()).expect("index");
                    let uuid = w.next().expect("uuid").to_owned();
                    self.uuids.push((i, uuid));
                }
                Some("retried") => {
                    self.retried = w.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                    self.retry_error = w.collect::<Vec<_>>().join(" ");
                }
                Some("ready") => {
                    let v: Vec<i64> = w.filter_map(|x| x.parse().ok()).collect();
                    (self.rss0, self.threads0, self.rss1, self.threads1) =
                        (v[0] as u64, v[1] as u64, v[2] as u64, v[3] as u64);
                    (self.heap0, self.heap1) = (v[4], v[5]);
                    return;
                }
                _ => panic!("daemon process {}: {l}", self.child.id()),
            }
        }
    }

    fn ask(&mut self, cmd: &str) -> String {
        let stdin = self.stdin.as_mut().expect("child stdin");
        writeln!(stdin, "{cmd}").expect("write to a daemon process");
        stdin.flush().expect("flush");
        self.line()
    }

    /// SIGKILL: a crash, nothing revoked.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.alive = false;
    }

    /// Closes every daemon client (revokes their leases) and waits.
    fn close(&mut self) {
        if self.alive {
            let _ = self.ask("close");
            let _ = self.child.wait();
            self.alive = false;
        }
    }
}

impl Drop for DaemonProc {
    fn drop(&mut self) {
        if self.alive {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// etcd's metrics
// ---------------------------------------------------------------------------

/// One Prometheus series: its labels and value.
type Series = (BTreeMap<String, String>, f64);

/// Every series of `name` in a text exposition.
fn series(text: &str, name: &str) -> Vec<Series> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, value) = if let Some(r) = rest.strip_prefix('{') {
            let Some((l, v)) = r.split_once('}') else {
                continue;
            };
            (l, v)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue;
        };
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        let mut map = BTreeMap::new();
        for kv in labels.split("\",") {
            if let Some((k, v)) = kv.split_once("=\"") {
                map.insert(k.trim().to_owned(), v.trim_end_matches('"').to_owned());
            }
        }
        out.push((map, v));
    }
    out
}

/// The gRPC counters of a set of `/metrics` texts, summed by
/// (metric, method, type).
#[derive(Default, Clone)]
struct Grpc(BTreeMap<(String, String, String), f64>);

impl Grpc {
    fn of(texts: &[String]) -> Grpc {
        let mut g = Grpc::default();
        for text in texts {
            for name in [
                "grpc_server_handled_total",
                "grpc_server_msg_received_total",
                "grpc_server_started_total",
            ] {
                for (labels, v) in series(text, name) {
                    let k = (
                        name.to_owned(),
                        labels.get("grpc_method").cloned().unwrap_or_default(),
                        labels.get("grpc_type").cloned().unwrap_or_default(),
                    );
                    *g.0.entry(k).or_default() += v;
                }
            }
        }
        g
    }

    fn sum(&self, name: &str, keep: impl Fn(&str, &str) -> bool) -> f64 {
        self.0
            .iter()
            .filter(|((n, m, t), _)| n == name && keep(m, t))
            .map(|(_, v)| v)
            .sum()
    }

    fn minus(&self, earlier: &Grpc) -> Grpc {
        Grpc(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v - earlier.0.get(k).copied().unwrap_or(0.0)))
                .collect(),
        )
    }

    /// Streams of `method` open now (started, not yet handled).
    fn open_streams(&self, method: &str) -> f64 {
        self.sum("grpc_server_started_total", |m, _| m == method)
            - self.sum("grpc_server_handled_total", |m, _| m == method)
    }
}

fn member_metrics(cluster: &Cluster) -> Vec<String> {
    cluster
        .members()
        .iter()
        .map(|m| http_get(m.client_port(), "/metrics").unwrap_or_default())
        .collect()
}

/// A gauge summed over every member.
fn member_gauge(cluster: &Cluster, name: &str) -> f64 {
    member_metrics(cluster)
        .iter()
        .flat_map(|t| series(t, name))
        .map(|(_, v)| v)
        .sum()
}

// ---------------------------------------------------------------------------
// The watchers
// ---------------------------------------------------------------------------

/// What a subscription's callback saw: (watcher, uuid, kind, reason,
/// revision, when).
type WatchSeen = (usize, String, EventKind, Option<DownReason>, i64, Instant);

/// M clients of their own, each with a view or a callback subscription of
/// the whole namespace.
struct Watchers {
    /// Watcher `w` is a view for `w < views.len()`, a subscription after.
    views: Vec<View>,
    subs: Vec<os_lively::Subscription>,
    clients: Vec<Client>,
    events: mpsc::Receiver<WatchSeen>,
    /// One thread per view waiting for a revision: targets in, (view,
    /// when it reached it) out.
    view_targets: Vec<mpsc::Sender<i64>>,
    view_reached: mpsc::Receiver<(usize, Instant)>,
    stop: Arc<AtomicBool>,
}

impl Watchers {
    fn start(m: usize, cfg: &Config) -> Watchers {
        let n_views = m.div_ceil(2);
        let (tx, events) = mpsc::channel::<WatchSeen>();
        type Made = (Client, Option<View>, Option<os_lively::Subscription>);
        let made: Vec<Mutex<Option<Made>>> = (0..m).map(|_| Mutex::new(None)).collect();
        std::thread::scope(|s| {
            for t in 0..4 {
                let (made, tx) = (&made, tx.clone());
                s.spawn(move || {
                    for w in (t..m).step_by(4) {
                        let client = Client::connect(cfg).expect("watcher connect");
                        let entry = if w < n_views {
                            let view = client.view().expect("watcher view");
                            (client, Some(view), None)
                        } else {
                            let tx = tx.clone();
                            let sub = client
                                .subscribe_callback(
                                    &Filter::all(),
                                    &SubscribeOptions::default(),
                                    move |e: &os_lively::Event| {
                                        let now = Instant::now();
                                        let _ = tx.send((
                                            w,
                                            e.uuid.clone(),
                                            e.kind,
                                            e.reason,
                                            e.revision,
                                            now,
                                        ));
                                    },
                                )
                                .expect("watcher subscribe");
                            (client, None, Some(sub))
                        };
                        *made[w].lock().unwrap() = Some(entry);
                    }
                });
            }
        });
        let (mut views, mut subs, mut clients) = (Vec::new(), Vec::new(), Vec::new());
        for slot in made {
            let (c, v, s) = slot.into_inner().unwrap().expect("watcher");
            clients.push(c);
            views.extend(v);
            subs.extend(s);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (reached_tx, view_reached) = mpsc::channel();
        let view_targets = views
            .iter()
            .enumerate()
            .map(|(w, view)| {
                let (target_tx, target_rx) = mpsc::channel::<i64>();
                let (view, reached_tx, stop) = (view.clone(), reached_tx.clone(), stop.clone());
                std::thread::spawn(move || {
                    while let Ok(rev) = target_rx.recv() {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        if view.wait_for_revision(rev, WAIT).is_ok() {
                            let _ = reached_tx.send((w, Instant::now()));
                        }
                    }
                });
                target_tx
            })
            .collect();
        Watchers {
            views,
            subs,
            clients,
            events,
            view_targets,
            view_reached,
            stop,
        }
    }

    fn len(&self) -> usize {
        self.views.len() + self.subs.len()
    }

    fn drain(&self) {
        while self.events.try_recv().is_ok() {}
        while self.view_reached.try_recv().is_ok() {}
    }

    fn close(self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.view_targets);
        drop(self.subs);
        drop(self.views);
        for c in self.clients {
            let _ = c.close();
        }
    }
}

// ---------------------------------------------------------------------------
// One run: direct or through the proxy
// ---------------------------------------------------------------------------

fn pct(v: &[f64], q: f64) -> f64 {
    let s = sorted(v);
    if s.is_empty() {
        return f64::NAN;
    }
    let i = ((s.len() as f64 * q).ceil() as usize).clamp(1, s.len()) - 1;
    s[i]
}

fn push(rows: &mut Vec<Row>, row: Row) {
    progress(&row);
    rows.push(row);
}

/// What the direct run measured, for the proxy run's comparisons.
#[derive(Default)]
struct Measures {
    watchers_server: f64,
    keepalive_streams: f64,
    watch_streams: f64,
    keepalive_started: f64,
}

/// Everything of one run: daemons, watchers, the rows. `proxy`: every
/// client is given only its endpoint.
fn run(
    sizes: &Sizes,
    cluster: &mut Cluster,
    proxy: Option<&GrpcProxy>,
    direct: Option<&Measures>,
    rows: &mut Vec<Row>,
    notes: &mut Vec<String>,
) -> Measures {
    let tag = if proxy.is_some() { "proxy" } else { "direct" };
    let endpoints = match proxy {
        Some(p) => vec![p.endpoint()],
        None => cluster.endpoints(),
    };
    let ns = format!("fleet-{tag}-{}", std::process::id());
    let cfg = fleet_config(&endpoints, &ns);
    let (n, m) = (sizes.clients, sizes.watchers);
    let raw = crate::common::Raw::connect(&cluster.endpoints());
    let up_prefix = format!("/{ns}/services/by-status/UP/");
    let before_setup = Grpc::of(&member_metrics(cluster));
    let started_at = Instant::now();

    // The daemons, in child processes.
    let per = n.div_ceil(sizes.procs);
    let mut procs: Vec<DaemonProc> = (0..n)
        .step_by(per)
        .map(|first| DaemonProc::spawn(first, per.min(n - first), &endpoints, &ns))
        .collect();
    for p in &mut procs {
        p.wait_ready();
    }
    let setup = started_at.elapsed();
    let retried: u64 = procs.iter().map(|p| p.retried).sum();
    if retried > 0 {
        let why = procs
            .iter()
            .find(|p| p.retried > 0)
            .map_or("", |p| p.retry_error.as_str());
        notes.push(format!(
            "{tag}: set-up: {retried} connect/register attempts failed and were retried (the first: {why})"
        ));
    }
    let up_keys = raw.keys(&up_prefix).len();
    eprintln!(
        "bench: fleet-clients {tag}: {n} daemons in {} processes registered in {} ({up_keys} UP keys)",
        procs.len(),
        fmt_t(setup.as_secs_f64())
    );
    assert_eq!(up_keys, n, "every daemon's UP key");
    let after_setup = Grpc::of(&member_metrics(cluster));

    // The controlling client: one probe service whose changes are timed.
    let control = Client::connect(&cfg).expect("control connect");
    let mut probe = Service::new("probe", "control").with_region("r0");
    let probe_uuid = control.update(&probe).expect("probe register");
    probe.uuid = probe_uuid.clone();

    // The watchers, in this process.
    let (rss_w0, thr_w0, heap_w0) = (rss_kib(), threads_here(), live_heap());
    let t = Instant::now();
    let watchers = Watchers::start(m, &cfg);
    let took_watchers = t.elapsed();
    let (rss_w1, thr_w1, heap_w1) = (rss_kib(), threads_here(), live_heap());
    for v in &watchers.views {
        v.sync(WAIT).expect("view sync");
        assert_eq!(v.len(), n + 1, "a view holds every service");
    }
    eprintln!(
        "bench: fleet-clients {tag}: {m} watchers started in {}",
        fmt_t(took_watchers.as_secs_f64())
    );
    // Past set-up: every daemon's first keepalive after registering, and the
    // watchers' first quiet period.
    std::thread::sleep(FLEET_TTL / 3 + Duration::from_secs(2));

    // 1. Idle load, counted by etcd (every member), and the streams open.
    let g0 = Grpc::of(&member_metrics(cluster));
    let proxy_g0 = proxy.map(|p| Grpc::of(&[p.metrics_text()]));
    eprintln!(
        "bench: fleet-clients {tag}: idle window of {} s",
        sizes.idle.as_secs()
    );
    std::thread::sleep(sizes.idle);
    let g1 = Grpc::of(&member_metrics(cluster));
    let proxy_g1 = proxy.map(|p| Grpc::of(&[p.metrics_text()]));
    let d = g1.minus(&g0);
    let per_min = 60.0 / sizes.idle.as_secs_f64();
    let unary = d.sum("grpc_server_handled_total", |_, t| t == "unary");
    let stream_msgs = d.sum("grpc_server_msg_received_total", |m, t| {
        t != "unary" && m != "Watch"
    });
    let keepalives = d.sum("grpc_server_msg_received_total", |m, _| {
        m == "LeaseKeepAlive"
    });
    let watch_msgs = d.sum("grpc_server_msg_received_total", |m, _| m == "Watch");
    let per_daemon = (unary + stream_msgs) * per_min / n as f64;
    let ka_per_daemon = keepalives * per_min / n as f64;
    let ratio = per_daemon / ka_per_daemon;
    let mut r = Row::text(
        &format!("fleet-clients {tag}: etcd calls+messages/min per idle daemon"),
        format!(
            "{per_daemon:.2} ({:.2} unary + {:.2} stream)",
            unary * per_min / n as f64,
            stream_msgs * per_min / n as f64
        ),
        "≤ 1.05× keep-alives",
        verdict(ratio <= 1.05),
    );
    r.raw_med = format!("{ka_per_daemon:.2} keep-alives");
    r.ratio = format!("{ratio:.3}×");
    r.spread = format!("over {} s", sizes.idle.as_secs());
    push(rows, r);
    let methods: Vec<String> =
        d.0.iter()
            .filter(|((name, _, _), v)| name == "grpc_server_msg_received_total" && **v > 0.0)
            .map(|((_, method, ty), v)| format!("{method}/{ty} {:.1}", v * per_min))
            .collect();
    let opened: Vec<String> =
        d.0.iter()
            .filter(|((name, _, t), v)| {
                name == "grpc_server_started_total" && t != "unary" && **v > 0.0
            })
            .map(|((_, method, ty), v)| format!("{method}/{ty} {:.1}", v * per_min))
            .collect();
    notes.push(format!(
        "{tag}: idle window {} s, etcd messages received per minute by method (all members): {}; streams opened per minute: {}",
        sizes.idle.as_secs(),
        methods.join(", "),
        if opened.is_empty() { "none".to_owned() } else { opened.join(", ") }
    ));
    let mut r = Row::text(
        &format!("  …watch messages/min per idle watcher ({tag})"),
        format!("{:.2}", watch_msgs * per_min / m as f64),
        "-",
        "-".into(),
    );
    r.spread = format!("over {} s", sizes.idle.as_secs());
    push(rows, r);
    if let (Some(a), Some(b)) = (&proxy_g0, &proxy_g1) {
        let pd = b.minus(a);
        let sent = pd.sum("grpc_server_handled_total", |_, t| t == "unary")
            + pd.sum("grpc_server_msg_received_total", |m, t| {
                t != "unary" && m != "Watch"
            });
        let by: Vec<String> =
            pd.0.iter()
                .filter(|((name, _, _), v)| name == "grpc_server_msg_received_total" && **v > 0.0)
                .map(|((_, method, ty), v)| format!("{method}/{ty} {:.1}", v * per_min))
                .collect();
        let opened: Vec<String> =
            pd.0.iter()
                .filter(|((name, _, t), v)| {
                    name == "grpc_server_started_total" && t != "unary" && **v > 0.0
                })
                .map(|((_, method, ty), v)| format!("{method}/{ty} {:.1}", v * per_min))
                .collect();
        notes.push(format!(
            "proxy: messages the proxy received per minute by method (from every client): {}; streams clients opened at the proxy per minute: {}",
            by.join(", "),
            if opened.is_empty() { "none".to_owned() } else { opened.join(", ") }
        ));
        let pka = pd.sum("grpc_server_msg_received_total", |m, _| {
            m == "LeaseKeepAlive"
        });
        notes.push(format!(
            "proxy: what the daemons sent the proxy (its own gRPC server counters): {:.2} calls+messages/min per daemon, {:.2} keep-alives",
            sent * per_min / n as f64,
            pka * per_min / n as f64
        ));
    }
    let keepalive_streams = g1.open_streams("LeaseKeepAlive");
    let watch_streams = g1.open_streams("Watch");
    let watchers_server = member_gauge(cluster, "etcd_debugging_mvcc_watcher_total");
    let keepalive_started = after_setup
        .minus(&before_setup)
        .sum("grpc_server_started_total", |mm, _| mm == "LeaseKeepAlive");
    let measures = Measures {
        watchers_server,
        keepalive_streams,
        watch_streams,
        keepalive_started,
    };
    match direct {
        None => {
            push(
                rows,
                Row::text(
                    &format!("  …etcd server-side watchers / streams open ({tag})"),
                    format!(
                        "{watchers_server:.0} watchers, {watch_streams:.0} watch streams, {keepalive_streams:.0} keep-alive streams ({keepalive_started:.0} opened by {n} daemons)"
                    ),
                    "-",
                    "-".into(),
                ),
            );
        }
        Some(dm) => {
            let mut r = Row::text(
                &format!("  …etcd server-side watchers for {m} watchers ({tag})"),
                format!("{watchers_server:.0}"),
                "a handful (≤ 10)",
                verdict(watchers_server <= 10.0),
            );
            r.raw_med = format!("{:.0} direct", dm.watchers_server);
            push(rows, r);
            let mut r = Row::text(
                &format!("  …keep-alive streams open at etcd for {n} daemons ({tag})"),
                format!(
                    "{keepalive_streams:.0} ({keepalive_started:.0} opened), {watch_streams:.0} watch streams"
                ),
                "merged (≪ daemons)",
                verdict(keepalive_streams * 10.0 <= n as f64),
            );
            r.raw_med = format!(
                "{:.0} ({:.0} opened), {:.0} watch streams direct",
                dm.keepalive_streams, dm.keepalive_started, dm.watch_streams
            );
            push(rows, r);
        }
    }

    // 2. One change → every watcher sees it.
    let mut lat = Vec::new();
    // (latency, change, watcher kind)
    let mut detail: Vec<(f64, usize, &str)> = Vec::new();
    let mut missing = 0usize;
    let mut other_writes = 0usize;
    let record_key = format!("/{ns}/services/by-uuid/{probe_uuid}");
    for k in 0..sizes.changes {
        watchers.drain();
        let r0 = raw.revision();
        for tx in &watchers.view_targets {
            let _ = tx.send(r0 + 1);
        }
        probe.region = format!("r{}", k + 1);
        let t0 = Instant::now();
        control.update(&probe).expect("probe change");
        let rev = raw.get(&record_key).map_or(0, |kv| kv.mod_revision);
        if rev != r0 + 1 {
            other_writes += 1;
        }
        let mut seen_views = HashSet::new();
        let mut seen_subs = HashSet::new();
        let deadline = Instant::now() + WAIT;
        while (seen_views.len() < watchers.views.len() || seen_subs.len() < watchers.subs.len())
            && Instant::now() < deadline
        {
            while let Ok((w, at)) = watchers.view_reached.try_recv() {
                if seen_views.insert(w) {
                    lat.push(secs(at - t0));
                    detail.push((secs(at - t0), k, "view"));
                }
            }
            match watchers.events.recv_timeout(Duration::from_millis(5)) {
                Ok((w, uuid, _, _, r, at))
                    if uuid == probe_uuid && r == rev && seen_subs.insert(w) =>
                {
                    lat.push(secs(at - t0));
                    detail.push((secs(at - t0), k, "callback"));
                }
                _ => {}
            }
        }
        missing += watchers.len() - seen_views.len() - seen_subs.len();
        std::thread::sleep(Duration::from_millis(200));
    }
    let (p50, p99v) = (pct(&lat, 0.5), pct(&lat, 0.99));
    let mut r = Row::text(
        &format!("fleet-clients {tag}: one change → every watcher ({m}: views + callbacks)"),
        fmt_t(p50),
        "p99 ≤ 50 ms, none missed",
        verdict(p99v <= 0.050 && missing == 0),
    );
    r.p99 = fmt_t(p99v);
    r.spread = format!("{} changes, {missing} missed", sizes.changes);
    push(rows, r);
    detail.sort_by(|a, b| b.0.total_cmp(&a.0));
    let worst: Vec<String> = detail
        .iter()
        .take(5)
        .map(|(l, k, kind)| format!("{} (change {k}, {kind})", fmt_t(*l)))
        .collect();
    let by_kind = |kind: &str| {
        let v: Vec<f64> = detail.iter().filter(|d| d.2 == kind).map(|d| d.0).collect();
        format!(
            "{kind}s p50 {} p99 {}",
            fmt_t(pct(&v, 0.5)),
            fmt_t(pct(&v, 0.99))
        )
    };
    notes.push(format!(
        "{tag}: change → watcher, timed from the update() call: {}, {}; slowest: {}",
        by_kind("view"),
        by_kind("callback"),
        worst.join(", ")
    ));
    if other_writes > 0 {
        notes.push(format!(
            "{tag}: {other_writes} of the timed changes were not the next revision (another write came between)"
        ));
    }

    // 3. 10% of the daemons crash at once (SIGKILL of their processes).
    let kill_procs = procs.len().div_ceil(10).max(1);
    let killed: HashSet<String> = procs[..kill_procs]
        .iter()
        .flat_map(|p| p.uuids.iter().map(|(_, u)| u.clone()))
        .collect();
    watchers.drain();
    let t_kill = Instant::now();
    for p in &mut procs[..kill_procs] {
        p.kill();
    }
    let bound = FLEET_TTL + CRASH_SLACK;
    // (watcher, uuid) → when it was seen DOWN.
    let mut down_at: HashMap<(usize, String), Instant> = HashMap::new();
    let mut extra = 0usize;
    let mut duplicate = 0usize;
    let mut wrong_reason = 0usize;
    // Resync events, and Up events of killed daemons, in the crash window:
    // what a duplicate DOWN came after.
    let (mut crash_resyncs, mut killed_ups) = (0usize, 0usize);
    let nv = watchers.views.len();
    let expected = killed.len() * watchers.len();
    let give_up = t_kill + bound + Duration::from_secs(5);
    while down_at.len() < expected && Instant::now() < give_up {
        while let Ok((w, uuid, kind, reason, _, at)) = watchers.events.try_recv() {
            match kind {
                EventKind::Resync => crash_resyncs += 1,
                EventKind::Up if killed.contains(&uuid) => killed_ups += 1,
                _ => {}
            }
            if kind != EventKind::Down {
                continue;
            }
            if !killed.contains(&uuid) {
                extra += 1;
            } else if down_at.insert((w, uuid), at).is_some() {
                duplicate += 1;
            }
            if reason != Some(DownReason::Expired) {
                wrong_reason += 1;
            }
        }
        for (w, view) in watchers.views.iter().enumerate() {
            for uuid in &killed {
                if !down_at.contains_key(&(w, uuid.clone()))
                    && matches!(view.is_up(uuid), Ok(false))
                {
                    down_at.insert((w, uuid.clone()), Instant::now());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // A moment more for extra or duplicate events, then the views' verdicts
    // on everyone else.
    std::thread::sleep(Duration::from_millis(500));
    while let Ok((w, uuid, kind, _, _, at)) = watchers.events.try_recv() {
        if kind == EventKind::Down {
            if !killed.contains(&uuid) {
                extra += 1;
            } else if down_at.insert((w, uuid), at).is_some() {
                // A first DOWN this late still counts (as late, below).
                duplicate += 1;
            }
        }
    }
    let alive: Vec<String> = procs[kill_procs..]
        .iter()
        .flat_map(|p| p.uuids.iter().map(|(_, u)| u.clone()))
        .collect();
    for view in &watchers.views {
        extra += alive
            .iter()
            .filter(|u| !matches!(view.is_up(u), Ok(true)))
            .count();
    }
    let delays: Vec<f64> = down_at.values().map(|at| secs(*at - t_kill)).collect();
    let late = delays.iter().filter(|d| **d > bound.as_secs_f64()).count();
    let missed = expected - down_at.len() + late;
    let mut r = Row::text(
        &format!(
            "fleet-clients {tag}: {} of {n} daemons SIGKILLed → DOWN at every watcher",
            killed.len()
        ),
        fmt_t(pct(&delays, 0.5)),
        &format!("≤ TTL + 1 s = {} s, 0 missed, 0 extra", bound.as_secs()),
        verdict(missed == 0 && extra == 0 && duplicate == 0),
    );
    r.p99 = fmt_t(pct(&delays, 0.99));
    r.raw_med = format!("max {}", fmt_t(pct(&delays, 1.0)));
    r.spread = format!("{missed} missed, {extra} extra, {duplicate} dup");
    push(rows, r);
    notes.push(format!(
        "{tag}: crash: {} DOWNs expected ({} killed × {} watchers, {nv} of them views polled every 10 ms), {} seen, {late} after the bound, {wrong_reason} with a reason other than expired; {crash_resyncs} resync and {killed_ups} UP events (of killed daemons) seen meanwhile",
        expected,
        killed.len(),
        watchers.len(),
        down_at.len()
    ));

    // 4. Each member restarted in turn: no false DOWN, no registration lost.
    watchers.drain();
    let watching = Arc::new(AtomicBool::new(true));
    let false_views = Arc::new(AtomicU64::new(0));
    let stale_reads = Arc::new(AtomicU64::new(0));
    let view_checker = {
        let (views, alive, watching, false_views, stale) = (
            watchers.views.clone(),
            alive.clone(),
            watching.clone(),
            false_views.clone(),
            stale_reads.clone(),
        );
        std::thread::spawn(move || {
            // A service counts as falsely DOWN once per view.
            let mut flagged: HashSet<(usize, usize)> = HashSet::new();
            while watching.load(Ordering::Relaxed) {
                for (w, view) in views.iter().enumerate() {
                    for (i, u) in alive.iter().enumerate() {
                        match view.is_up(u) {
                            Ok(true) => {}
                            Ok(false) => {
                                if flagged.insert((w, i)) {
                                    false_views.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(_) => {
                                stale.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let mut restart_took = Vec::new();
    let mut restart_failed: Option<String> = None;
    // Status calls (endpoint-steering probes) the other members answered
    // while each member was out, and for how long.
    let (mut status_calls, mut all_calls, mut outage) = (0.0, 0.0, Duration::ZERO);
    for i in 0..cluster.len() {
        // Stop (SIGTERM), start, and wait for health here: the harness's
        // `Member::restart` gives up after 15 s, and at 2,000 clients on 2
        // cores the quorum read behind /health took longer while every
        // client of the member reconnected elsewhere.
        let before = others_grpc(cluster, i);
        let t = Instant::now();
        cluster.member(i).stop();
        let stopped = t.elapsed();
        cluster.member(i).start_again_nowait();
        let healthy =
            crate::common::wait_until(RESTART_HEALTHY, || cluster.member_ref(i).healthy());
        let d = others_grpc(cluster, i).minus(&before);
        status_calls += d.sum("grpc_server_handled_total", |m, _| m == "Status");
        all_calls += d.sum("grpc_server_handled_total", |_, t| t == "unary");
        outage += t.elapsed();
        let line = format!(
            "m{i} stopped in {}, {} {} later",
            fmt_t(secs(stopped)),
            if healthy { "healthy" } else { "NOT healthy" },
            fmt_t(secs(t.elapsed() - stopped))
        );
        eprintln!("bench: fleet-clients {tag}: member {line}");
        restart_took.push(line);
        if !healthy {
            let tail = cluster.member_ref(i).log_tail(3).replace('\n', " / ");
            restart_failed = Some(format!(
                "m{i} not healthy {RESTART_HEALTHY:?} after its restart ({tail})"
            ));
            break;
        }
        std::thread::sleep(Duration::from_secs(3));
    }
    if restart_failed.is_some() {
        let back = crate::common::wait_until(RESTART_HEALTHY, || {
            cluster.members().iter().all(|m| m.healthy())
        });
        eprintln!("bench: fleet-clients {tag}: cluster healthy again: {back}");
    }
    let status_note = format!(
        "{tag}: while members were restarting ({} in all), the other members answered {status_calls:.0} Status calls ({:.0}/s; endpoint-steering probes) of {all_calls:.0} unary calls",
        fmt_t(secs(outage)),
        status_calls / outage.as_secs_f64().max(1e-9)
    );
    eprintln!("bench: {status_note}");
    notes.push(status_note);
    // A lease whose keep-alives were lost would expire within a TTL.
    std::thread::sleep(FLEET_TTL + Duration::from_secs(2));
    watching.store(false, Ordering::Relaxed);
    let _ = view_checker.join();
    let mut false_subs = 0usize;
    let mut resyncs = 0usize;
    while let Ok((_, _, kind, _, _, _)) = watchers.events.try_recv() {
        match kind {
            EventKind::Down => false_subs += 1,
            EventKind::Resync => resyncs += 1,
            _ => {}
        }
    }
    let false_down = false_subs + false_views.load(Ordering::Relaxed) as usize;
    // The cluster may still be failing (see the restart row): retry.
    let up_after = (0..30)
        .find_map(|_| {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                raw.keys(&up_prefix).len()
            }))
            .ok();
            if r.is_none() {
                std::thread::sleep(Duration::from_secs(2));
            }
            r
        })
        .unwrap_or(0);
    // The probe is UP too.
    let lost_keys = (alive.len() + 1).saturating_sub(up_after);
    let mut stats = [0u64; 6];
    for p in procs.iter_mut().filter(|p| p.alive) {
        let l = p.ask("stats");
        for (acc, v) in stats.iter_mut().zip(
            l.split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse::<u64>().ok()),
        ) {
            *acc += v;
        }
    }
    if let Some(why) = &restart_failed {
        push(
            rows,
            Row::text(
                &format!("fleet-clients {tag}: each member restarted in turn: cluster back"),
                why.clone(),
                "every member healthy",
                verdict(false),
            ),
        );
    }
    let mut r = Row::text(
        &format!("fleet-clients {tag}: each member restarted in turn: false DOWN at watchers"),
        format!(
            "{false_down} ({false_subs} events, {} view reads)",
            false_views.load(Ordering::Relaxed)
        ),
        "0",
        verdict(false_down == 0),
    );
    r.spread = format!("{} stale reads", stale_reads.load(Ordering::Relaxed));
    push(rows, r);
    let lost = lost_keys as u64 + stats[0];
    let mut r = Row::text(
        &format!("  …registrations lost ({tag})"),
        format!(
            "{lost} ({up_after} of {} UP keys, {} lost by clients, {} re-grants)",
            alive.len() + 1,
            stats[0],
            stats[1]
        ),
        "0",
        verdict(lost == 0),
    );
    r.spread = format!("{} reconnects", stats[3]);
    push(rows, r);
    notes.push(format!(
        "{tag}: restarts ({}): daemons' counters: registrations_lost {}, lease_regrants {}, up_keys_restored {}, reconnects {}, keepalives_failed {}, task_panics {}; watchers' resync events {resyncs}; view reads refused as stale {}",
        restart_took.join(", "),
        stats[0],
        stats[1],
        stats[2],
        stats[3],
        stats[4],
        stats[5],
        stale_reads.load(Ordering::Relaxed)
    ));

    // 5. Memory: per daemon client (the children's RSS before and after
    // their clients), per watcher (this process's).
    let started: Vec<&DaemonProc> = procs.iter().collect();
    let per_client: f64 = started
        .iter()
        .map(|p| (p.rss1.saturating_sub(p.rss0)) as f64 / p.uuids.len().max(1) as f64)
        .sum::<f64>()
        / started.len() as f64;
    let heap_per_client: f64 = started
        .iter()
        .map(|p| (p.heap1 - p.heap0).max(0) as f64 / p.uuids.len().max(1) as f64)
        .sum::<f64>()
        / started.len() as f64
        / 1024.0;
    let threads_per_client: f64 = started
        .iter()
        .map(|p| (p.threads1.saturating_sub(p.threads0)) as f64 / p.uuids.len().max(1) as f64)
        .sum::<f64>()
        / started.len() as f64;
    push(
        rows,
        Row::text(
            &format!("fleet-clients {tag}: memory per daemon client"),
            format!(
                "{per_client:.0} KiB RSS ({heap_per_client:.0} KiB heap), {threads_per_client:.2} threads"
            ),
            "-",
            "-".into(),
        ),
    );
    push(
        rows,
        Row::text(
            &format!("  …per watcher ({n} services in each view/model)"),
            format!(
                "{:.0} KiB RSS ({:.0} KiB heap), {:.2} threads",
                rss_w1.saturating_sub(rss_w0) as f64 / m as f64,
                (heap_w1 - heap_w0).max(0) as f64 / 1024.0 / m as f64,
                thr_w1.saturating_sub(thr_w0) as f64 / m as f64
            ),
            "-",
            "-".into(),
        ),
    );
    let children_rss: u64 = procs
        .iter_mut()
        .filter(|p| p.alive)
        .map(|p| {
            let l = p.ask("rss");
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    notes.push(format!(
        "{tag}: harness: this process (watchers, control, raw client) {:.1} MiB RSS, {} threads; {} daemon processes {:.1} MiB RSS in all (after the crash: {} alive), each {} threads at start with {per} clients; set-up {} (daemons), {} (watchers)",
        mib(rss_kib()),
        threads_here(),
        procs.len(),
        mib(children_rss),
        procs.iter().filter(|p| p.alive).count(),
        procs.first().map_or(0, |p| p.threads1),
        fmt_t(setup.as_secs_f64()),
        fmt_t(took_watchers.as_secs_f64())
    ));

    // Tear down: close everything (revokes), so the next run starts clean.
    watchers.close();
    let _ = control.close();
    for p in &mut procs {
        p.close();
    }
    measures
}

/// The gRPC counters of every member but `i`.
fn others_grpc(cluster: &Cluster, i: usize) -> Grpc {
    let texts: Vec<String> = cluster
        .members()
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, m)| http_get(m.client_port(), "/metrics").unwrap_or_default())
        .collect();
    Grpc::of(&texts)
}

/// The section: the direct run, then the proxy run.
pub(crate) fn fleet_client_rows(rows: &mut Vec<Row>) -> (String, Vec<String>) {
    let sizes = Sizes::from_env();
    let (nofile_before, nofile) = raise_nofile();
    let mut notes = vec![format!(
        "fleet-clients: {} daemons (one client, lease and service each, TTL {} s) in {} processes, {} watchers ({} views, {} callback subscriptions, one client each); open-file limit {nofile_before} → {nofile}",
        sizes.clients,
        FLEET_TTL.as_secs(),
        sizes.procs,
        sizes.watchers,
        sizes.watchers.div_ceil(2),
        sizes.watchers / 2
    )];
    // Twice etcd's defaults for heartbeat and election: the test harness's
    // fast elections (50/500 ms) are for fault tests, and at 2,000 clients
    // on 2 cores the default 100/1000 ms lost the leader during set-up.
    let mut cluster = Cluster::start_with(
        3,
        EtcdOpts {
            extra_args: vec![
                "--heartbeat-interval=200".into(),
                "--election-timeout=2000".into(),
            ],
            ..EtcdOpts::default()
        },
    );
    let machine = machine_at(cluster.dir());
    eprintln!("bench: {machine}");
    eprintln!(
        "bench: fleet-clients: cluster at {}",
        cluster.endpoints().join(",")
    );
    let direct = run(&sizes, &mut cluster, None, None, rows, &mut notes);
    let healthy = crate::common::wait_until(RESTART_HEALTHY, || {
        cluster.members().iter().all(|m| m.healthy())
    });
    if sizes.proxy && !healthy {
        notes.push(format!(
            "proxy run skipped: the cluster was not healthy {RESTART_HEALTHY:?} after the direct run"
        ));
    }
    if sizes.proxy && healthy {
        let proxy = GrpcProxy::start(&cluster.endpoints());
        eprintln!("bench: fleet-clients: grpc-proxy at {}", proxy.endpoint());
        run(
            &sizes,
            &mut cluster,
            Some(&proxy),
            Some(&direct),
            rows,
            &mut notes,
        );
    }
    (machine, notes)
}
