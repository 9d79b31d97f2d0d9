//! Real etcd processes on 127.0.0.1 for integration tests.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::proxy::Classifier;
use super::{Proxy, Raw, random_u64, wait_until};

/// How long a member (or a whole cluster) may take to become healthy.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a SIGTERM'd etcd may take to exit before it is SIGKILLed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts with fresh ports when a first start loses a port race.
const START_ATTEMPTS: usize = 5;
/// Lines of etcd output shown in panic messages / on failing tests.
const TAIL_LINES: usize = 40;

/// Options for [`Etcd::start_with`].
#[derive(Debug, Clone, Default)]
pub struct EtcdOpts {
    /// Passed as `--auth-token=<value>` (e.g. `"simple"`, `"jwt,pub-key=..."`).
    pub auth_token: Option<String>,
    /// Appended verbatim to etcd's command line.
    pub extra_args: Vec<String>,
    /// Serve clients over TLS with these PEM files (health is then checked
    /// on a plain-HTTP metrics port).
    pub tls: Option<TlsFiles>,
    /// [`Cluster`] only: put a [`Proxy`] in front of each member's peer
    /// port. Members listen on their real peer ports but advertise (and
    /// find each other through) the proxies, so [`Cluster::isolate`] can cut
    /// one member off from its peers while clients still reach it.
    pub peer_proxies: bool,
}

/// Server-side TLS files for a member.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// Require client certificates signed by `ca`.
    pub client_cert_auth: bool,
}

pub(super) fn etcd_bin() -> String {
    match std::env::var("ETCD_BIN") {
        Ok(b) if !b.is_empty() => b,
        _ => "etcd".to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/// A loopback port reserved for this process: the port is free at pick time
/// and an exclusive `flock` on `$TMPDIR/os-lively-test-ports/<port>.lock` is
/// held for as long as this value lives, so concurrent test threads *and*
/// processes (nextest) never hand out the same port twice.
///
/// Ports are picked below the kernel's ephemeral range, so outgoing
/// connections (which take ephemeral local ports) cannot steal a port while
/// its member is stopped between `stop()` and `restart()`.
pub(super) struct Port {
    pub(super) port: u16,
    _lock: Option<File>,
}

fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

fn lock_port(port: u16) -> Option<Option<File>> {
    let dir = std::env::temp_dir().join("os-lively-test-ports");
    if std::fs::create_dir_all(&dir).is_err() {
        return Some(None); // cannot lock at all: rely on bind check + retries
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{port}.lock")))
        .ok()?;
    // SAFETY: plain flock(2) on a valid fd we own.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 { Some(Some(file)) } else { None }
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_ok()
}

pub(super) fn free_port() -> Port {
    let (eph_lo, _) = ephemeral_range();
    const LO: u16 = 12000;
    if eph_lo > LO + 2000 {
        let span = u64::from(eph_lo - LO);
        for _ in 0..2000 {
            let port = LO + (random_u64() % span) as u16;
            if let Some(lock) = lock_port(port) {
                if port_is_free(port) {
                    return Port { port, _lock: lock };
                }
            }
        }
    }
    // Fallback: let the kernel choose.
    loop {
        let l = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local_addr").port();
        drop(l);
        if let Some(lock) = lock_port(port) {
            return Port { port, _lock: lock };
        }
    }
}

// ---------------------------------------------------------------------------
// Member
// ---------------------------------------------------------------------------

/// Why a start attempt failed.
enum StartError {
    /// etcd could not bind one of its ports: retry with fresh ports.
    PortTaken(String),
    /// Anything else: give up.
    Fatal(String),
}

/// One etcd process (a single-member [`Etcd`] or one member of a
/// [`Cluster`]). Stopping/killing keeps its ports and data dir, so it can be
/// started again as the same member.
pub struct Member {
    name: String,
    client: Port,
    peer: Port,
    /// Plain-HTTP port serving /health when the client port speaks TLS.
    metrics: Option<Port>,
    scheme: &'static str,
    data_dir: PathBuf,
    log_path: PathBuf,
    args: Vec<String>,
    child: Mutex<Option<Child>>,
    /// Pid of the current process (0 when not running), shared with the
    /// peer proxies' classifier.
    pid_slot: Arc<AtomicU32>,
    paused: AtomicBool,
    /// Byte offset in the log file where the current run's output starts.
    log_offset: AtomicU64,
}

impl Member {
    /// `advertised_peer`: the port other members reach this one on (its
    /// own peer port, or the port of a proxy in front of it).
    #[allow(clippy::too_many_arguments)]
    fn new(
        base: &Path,
        name: &str,
        client: Port,
        peer: Port,
        advertised_peer: u16,
        initial_cluster: &str,
        token: &str,
        opts: &EtcdOpts,
        pid_slot: Arc<AtomicU32>,
    ) -> Member {
        let data_dir = base.join(format!("{name}.etcd"));
        let log_path = base.join(format!("{name}.log"));
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let metrics = opts.tls.as_ref().map(|_| free_port());
        let client_url = format!("{scheme}://127.0.0.1:{}", client.port);
        let peer_url = format!("http://127.0.0.1:{}", peer.port);
        let advertised_peer_url = format!("http://127.0.0.1:{advertised_peer}");
        let mut args: Vec<String> = vec![
            format!("--name={name}"),
            format!("--data-dir={}", data_dir.display()),
            format!("--listen-client-urls={client_url}"),
            format!("--advertise-client-urls={client_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={advertised_peer_url}"),
            format!("--initial-cluster={initial_cluster}"),
            format!("--initial-cluster-token={token}"),
            "--initial-cluster-state=new".into(),
            // Fast elections. Min lease TTL = ceil(1.5 * election timeout) =
            // ceil(750 ms) = 1 s.
            "--heartbeat-interval=50".into(),
            "--election-timeout=500".into(),
            // etcd 3.4 defaults to capnslog, which ignores --log-level.
            "--logger=zap".into(),
            "--log-level=warn".into(),
            "--log-outputs=stderr".into(),
        ];
        if let Some(t) = &opts.auth_token {
            args.push(format!("--auth-token={t}"));
        }
        if let (Some(tls), Some(m)) = (&opts.tls, &metrics) {
            args.push(format!("--cert-file={}", tls.cert.display()));
            args.push(format!("--key-file={}", tls.key.display()));
            args.push(format!("--trusted-ca-file={}", tls.ca.display()));
            if tls.client_cert_auth {
                args.push("--client-cert-auth".into());
            }
            args.push(format!("--listen-metrics-urls=http://127.0.0.1:{}", m.port));
        }
        args.extend(opts.extra_args.iter().cloned());
        Member {
            name: name.to_owned(),
            client,
            peer,
            metrics,
            scheme,
            data_dir,
            log_path,
            args,
            child: Mutex::new(None),
            pid_slot,
            paused: AtomicBool::new(false),
            log_offset: AtomicU64::new(0),
        }
    }

    /// Spawn the process (does not wait for health).
    fn spawn(&self) -> Result<(), StartError> {
        let mut child = self.child.lock().unwrap();
        if let Some(c) = child.as_mut() {
            if matches!(c.try_wait(), Ok(None)) {
                panic!("etcd member {} is already running", self.name);
            }
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log_path.display()));
        let offset = log.seek(SeekFrom::End(0)).unwrap_or(0);
        let _ = writeln!(log, "===== {} {} =====", etcd_bin(), self.args.join(" "));
        self.log_offset.store(offset, Ordering::SeqCst);
        let mut cmd = Command::new(etcd_bin());
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log);
        // etcd reads ETCD_* variables as flags (e.g. our own ETCD_BIN would
        // be reported as unrecognized); keep the environment clean.
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy().into_owned();
            if k.starts_with("ETCD_") && k != "ETCD_UNSUPPORTED_ARCH" {
                cmd.env_remove(k);
            }
        }
        let c = cmd.spawn().map_err(|e| {
            StartError::Fatal(format!(
                "cannot spawn etcd binary {:?} (set ETCD_BIN or put etcd on PATH): {e}",
                etcd_bin()
            ))
        })?;
        self.pid_slot.store(c.id(), Ordering::SeqCst);
        *child = Some(c);
        self.paused.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Exit status if the process has exited (reaping it), `None` if it is
    /// running or was never started.
    fn exited(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap();
        child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Classify an exit during startup.
    fn start_failure(&self, status: ExitStatus) -> StartError {
        let out = self.current_run_output();
        let msg = format!(
            "etcd member {} exited during startup ({status}); output:\n{}",
            self.name,
            tail(&out, TAIL_LINES)
        );
        if out.contains("address already in use") {
            StartError::PortTaken(msg)
        } else {
            StartError::Fatal(msg)
        }
    }

    /// `GET /health` on the client port returns `{"health":"true"}`.
    pub fn healthy(&self) -> bool {
        http_health(self.metrics.as_ref().map_or(self.client.port, |m| m.port))
    }

    /// Wait until healthy; error if the process exits or the deadline passes.
    fn wait_healthy(&self, timeout: Duration) -> Result<(), StartError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.exited() {
                return Err(self.start_failure(st));
            }
            if self.healthy() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartError::Fatal(format!(
                    "etcd member {} not healthy after {timeout:?}; output:\n{}",
                    self.name,
                    self.log_tail(TAIL_LINES)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_listening(&self, timeout: Duration) -> Result<(), StartError> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.client.port));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.exited() {
                return Err(self.start_failure(st));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartError::Fatal(format!(
                    "etcd member {} not listening after {timeout:?}; output:\n{}",
                    self.name,
                    self.log_tail(TAIL_LINES)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on our own child's pid (not yet reaped).
            unsafe {
                libc::kill(pid as libc::pid_t, sig);
            }
        }
    }

    /// `"http://127.0.0.1:<client port>"` (`https` with TLS).
    pub fn endpoint(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.client.port)
    }

    /// `vec![self.endpoint()]`.
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint()]
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client_port(&self) -> u16 {
        self.client.port
    }

    pub fn peer_port(&self) -> u16 {
        self.peer.port
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// File receiving etcd's stdout+stderr (appended across restarts).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Last `n` lines of etcd's output (all runs).
    pub fn log_tail(&self, n: usize) -> String {
        tail(
            &std::fs::read_to_string(&self.log_path).unwrap_or_default(),
            n,
        )
    }

    fn current_run_output(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            let _ = f.seek(SeekFrom::Start(self.log_offset.load(Ordering::SeqCst)));
            let mut buf = Vec::new();
            let _ = f.read_to_end(&mut buf);
            s = String::from_utf8_lossy(&buf).into_owned();
        }
        s
    }

    /// Pid of the live (possibly paused) process.
    pub fn pid(&self) -> Option<u32> {
        let mut child = self.child.lock().unwrap();
        let c = child.as_mut()?;
        matches!(c.try_wait(), Ok(None)).then(|| c.id())
    }

    /// The process exists and has not exited (a paused process counts as
    /// running).
    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    pub fn is_paused(&self) -> bool {
        self.is_running() && self.paused.load(Ordering::SeqCst)
    }

    /// Graceful stop: SIGTERM, wait (SIGKILL after 10 s). No-op if not
    /// running. A paused member is resumed first so it can handle SIGTERM.
    pub fn stop(&mut self) {
        self.terminate(libc::SIGTERM);
    }

    /// Crash: SIGKILL and wait. No-op if not running.
    pub fn kill(&mut self) {
        self.terminate(libc::SIGKILL);
    }

    fn terminate(&self, sig: libc::c_int) {
        let mut guard = self.child.lock().unwrap();
        let Some(child) = guard.as_mut() else { return };
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        let pid = child.id() as libc::pid_t;
        // SAFETY: signalling our own, not yet reaped child.
        unsafe {
            libc::kill(pid, libc::SIGCONT);
            libc::kill(pid, sig);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        self.pid_slot.store(0, Ordering::SeqCst);
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Start again after `stop()`/`kill()` on the same ports and data dir and
    /// wait until healthy (needs a quorum in a cluster). Panics if the member
    /// is still running or does not become healthy in 15 s.
    #[track_caller]
    pub fn start_again(&mut self) {
        if let Err(StartError::Fatal(m) | StartError::PortTaken(m)) =
            self.spawn().and_then(|()| self.wait_healthy(START_TIMEOUT))
        {
            panic!("{m}");
        }
    }

    /// Like [`Member::start_again`] but only waits until the client port
    /// accepts connections — for members that cannot become healthy yet
    /// (e.g. restarting a cluster member while quorum is lost).
    #[track_caller]
    pub fn start_again_nowait(&mut self) {
        if let Err(StartError::Fatal(m) | StartError::PortTaken(m)) = self
            .spawn()
            .and_then(|()| self.wait_listening(START_TIMEOUT))
        {
            panic!("{m}");
        }
    }

    /// Stop (SIGTERM) if running, then [`Member::start_again`].
    #[track_caller]
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Freeze the process (SIGSTOP): sockets stay open but nothing answers.
    pub fn pause(&self) {
        if self.is_running() {
            self.paused.store(true, Ordering::SeqCst);
            self.signal(libc::SIGSTOP);
        }
    }

    /// Unfreeze (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Whether this member knows a leader (its Status names one); `None`
    /// if it is not running, paused or not answering within ~1.5 s.
    pub fn has_leader(&self) -> Option<bool> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build tokio runtime");
        self.status(&rt).map(|(_, leader, _)| leader != 0)
    }

    /// Member id and whether this member currently believes it is the
    /// leader (with its raft term), via a raw Status call. `None` if not
    /// running, paused or not answering within ~1 s.
    fn status(&self, rt: &tokio::runtime::Runtime) -> Option<(u64, u64, u64)> {
        if !self.is_running() || self.paused.load(Ordering::SeqCst) {
            return None;
        }
        let ep = self.endpoint();
        rt.block_on(async move {
            let opts = etcd_client::ConnectOptions::new()
                .with_connect_timeout(Duration::from_millis(500))
                .with_timeout(Duration::from_secs(1));
            let fut = async {
                let mut c = etcd_client::Client::connect([ep], Some(opts)).await.ok()?;
                let st = c.status().await.ok()?;
                let id = st.header()?.member_id();
                Some((id, st.leader(), st.raft_term()))
            };
            tokio::time::timeout(Duration::from_millis(1500), fut)
                .await
                .ok()
                .flatten()
        })
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut guard = match self.child.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(child) = guard.as_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                // SAFETY: signalling our own, not yet reaped child.
                unsafe {
                    libc::kill(child.id() as libc::pid_t, libc::SIGCONT);
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Minimal HTTP/1.1 `GET /health` (etcd serves it on the client port).
fn http_health(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let req = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let body = String::from_utf8_lossy(&buf);
    body.starts_with("HTTP/1.1 200") && body.contains("\"health\":\"true\"")
}

/// Which member's process opened the loopback TCP connection that arrived
/// from `from` at local port `to_port`: the socket whose local end is `from`
/// and remote end `to_port` is looked up in /proc/net/tcp{,6}, and its inode
/// among the members' open file descriptors (Linux only; `None` elsewhere,
/// or when the owner is not a member).
fn connection_owner(from: SocketAddr, to_port: u16, pids: &[Arc<AtomicU32>]) -> Option<usize> {
    // The connecting side's socket exists before the connection is
    // accepted; retry briefly in case /proc lags.
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        let Some(inode) = socket_inode(from.port(), to_port) else {
            continue;
        };
        let needle = format!("socket:[{inode}]");
        return pids.iter().position(|pid| {
            let pid = pid.load(Ordering::SeqCst);
            pid != 0 && process_has_fd(pid, &needle)
        });
    }
    None
}

/// Inode of the TCP socket with local port `local` and remote port
/// `remote`. Ports in /proc/net/tcp are 4 hex digits after the ':'.
fn socket_inode(local: u16, remote: u16) -> Option<u64> {
    let port_of = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && port_of(f[1]) == Some(local) && port_of(f[2]) == Some(remote) {
                if let Ok(inode) = f[9].parse::<u64>() {
                    if inode != 0 {
                        return Some(inode);
                    }
                }
            }
        }
    }
    None
}

fn process_has_fd(pid: u32, link: &str) -> bool {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    dir.flatten().any(|e| {
        std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == std::ffi::OsStr::new(link))
    })
}

fn unique_token() -> String {
    format!("oslively-{}-{:016x}", std::process::id(), random_u64())
}

fn print_tail_if_panicking(m: &Member) {
    if std::thread::panicking() {
        eprintln!(
            "----- etcd {} ({}) output tail -----\n{}\n----- end etcd {} -----",
            m.name,
            m.endpoint(),
            m.log_tail(TAIL_LINES),
            m.name
        );
    }
}

// ---------------------------------------------------------------------------
// Etcd (single member)
// ---------------------------------------------------------------------------

/// A single-member etcd on 127.0.0.1 with a temp data dir.
///
/// Dropping it SIGKILLs the process and removes the data dir; if the test is
/// panicking, the tail of etcd's output is printed first.
pub struct Etcd {
    // Field order matters: kill the process before removing its directory.
    member: Member,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Start a fresh member and wait until healthy (≈0.3 s with etcd 3.4).
    #[track_caller]
    pub fn start() -> Etcd {
        Self::start_with(EtcdOpts::default())
    }

    #[track_caller]
    pub fn start_with(opts: EtcdOpts) -> Etcd {
        assert!(!opts.peer_proxies, "peer proxies need a Cluster");
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("os-lively-etcd-")
                .tempdir()
                .expect("create temp dir");
            let (client, peer) = (free_port(), free_port());
            let ic = format!("m0=http://127.0.0.1:{}", peer.port);
            let advertised = peer.port;
            let member = Member::new(
                dir.path(),
                "m0",
                client,
                peer,
                advertised,
                &ic,
                &unique_token(),
                &opts,
                Arc::default(),
            );
            let res = member
                .spawn()
                .and_then(|()| member.wait_healthy(START_TIMEOUT));
            match res {
                Ok(()) => return Etcd { member, dir },
                Err(StartError::PortTaken(m)) => last = m,
                Err(StartError::Fatal(m)) => panic!("{m}"),
            }
        }
        panic!("etcd failed to start after {START_ATTEMPTS} attempts; last:\n{last}");
    }

    pub fn endpoint(&self) -> String {
        self.member.endpoint()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.member.endpoints()
    }

    /// SIGTERM + wait.
    pub fn stop(&mut self) {
        self.member.stop()
    }

    /// SIGKILL + wait.
    pub fn kill(&mut self) {
        self.member.kill()
    }

    /// Stop if running, start on the same ports/data dir, wait healthy.
    #[track_caller]
    pub fn restart(&mut self) {
        self.member.restart()
    }

    /// Start after `stop()`/`kill()`, wait healthy. Panics if still running.
    #[track_caller]
    pub fn start_again(&mut self) {
        self.member.start_again()
    }

    /// SIGSTOP.
    pub fn pause(&self) {
        self.member.pause()
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.member.resume()
    }

    pub fn is_running(&self) -> bool {
        self.member.is_running()
    }

    pub fn is_paused(&self) -> bool {
        self.member.is_paused()
    }

    pub fn pid(&self) -> Option<u32> {
        self.member.pid()
    }

    /// Current `/health` verdict.
    pub fn healthy(&self) -> bool {
        self.member.healthy()
    }

    /// A [`Raw`] client connected to this member.
    pub fn raw(&self) -> Raw {
        Raw::connect(&self.endpoints())
    }

    pub fn member(&self) -> &Member {
        &self.member
    }

    pub fn member_mut(&mut self) -> &mut Member {
        &mut self.member
    }

    /// The temp dir holding the data dir (`m0.etcd`) and log (`m0.log`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_tail(&self, n: usize) -> String {
        self.member.log_tail(n)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        print_tail_if_panicking(&self.member);
        // Fields drop next: member (SIGCONT + SIGKILL + wait), then the dir.
    }
}

// ---------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------

/// An N-member etcd cluster on 127.0.0.1 (members `m0..m{n-1}`).
pub struct Cluster {
    // Field order matters: kill the processes before removing the directory.
    members: Vec<Member>,
    /// With [`EtcdOpts::peer_proxies`]: the proxy in front of each member's
    /// peer port (empty otherwise).
    peer_proxies: Vec<Proxy>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Start `n` members; wait until every member is healthy and a leader is
    /// known. Panics with the members' output after ~15 s.
    #[track_caller]
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, EtcdOpts::default())
    }

    #[track_caller]
    pub fn start_with(n: usize, opts: EtcdOpts) -> Cluster {
        assert!(n >= 1, "a cluster needs at least one member");
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(n, &opts) {
                Ok(c) => return c,
                Err(StartError::PortTaken(m)) => last = m,
                Err(StartError::Fatal(m)) => panic!("{m}"),
            }
        }
        panic!("etcd cluster failed to start after {START_ATTEMPTS} attempts; last:\n{last}");
    }

    fn try_start(n: usize, opts: &EtcdOpts) -> Result<Cluster, StartError> {
        let dir = tempfile::Builder::new()
            .prefix("os-lively-cluster-")
            .tempdir()
            .expect("create temp dir");
        let ports: Vec<(Port, Port)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let pids: Vec<Arc<AtomicU32>> = (0..n).map(|_| Arc::default()).collect();
        let peer_proxies: Vec<Proxy> = if opts.peer_proxies {
            assert!(n <= 64, "at most 64 members behind peer proxies");
            let owners = pids.clone();
            let classify: Classifier =
                Arc::new(move |from, to_port| connection_owner(from, to_port, &owners));
            ports
                .iter()
                .map(|(_, p)| {
                    Proxy::start_classified(&format!("127.0.0.1:{}", p.port), classify.clone())
                })
                .collect()
        } else {
            Vec::new()
        };
        let advertised: Vec<u16> = match peer_proxies.is_empty() {
            true => ports.iter().map(|(_, p)| p.port).collect(),
            false => peer_proxies.iter().map(Proxy::port).collect(),
        };
        let ic = advertised
            .iter()
            .enumerate()
            .map(|(i, p)| format!("m{i}=http://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let token = unique_token();
        let members: Vec<Member> = ports
            .into_iter()
            .zip(pids)
            .enumerate()
            .map(|(i, ((c, p), pid))| {
                let name = format!("m{i}");
                Member::new(
                    dir.path(),
                    &name,
                    c,
                    p,
                    advertised[i],
                    &ic,
                    &token,
                    opts,
                    pid,
                )
            })
            .collect();
        let cluster = Cluster {
            members,
            peer_proxies,
            dir,
        };
        for m in &cluster.members {
            m.spawn()?;
        }
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            for m in &cluster.members {
                if let Some(st) = m.exited() {
                    return Err(m.start_failure(st));
                }
            }
            if cluster.members.iter().all(Member::healthy) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(StartError::Fatal(format!(
                    "etcd cluster not healthy after {START_TIMEOUT:?}; outputs:\n{}",
                    cluster.log_tails(TAIL_LINES)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let leader = cluster.wait_leader(deadline.saturating_duration_since(Instant::now()));
        if leader.is_none() {
            return Err(StartError::Fatal(format!(
                "etcd cluster has no leader after {START_TIMEOUT:?}; outputs:\n{}",
                cluster.log_tails(TAIL_LINES)
            )));
        }
        Ok(cluster)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Client endpoints of all members (running or not).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    pub fn member(&mut self, i: usize) -> &mut Member {
        &mut self.members[i]
    }

    pub fn member_ref(&self, i: usize) -> &Member {
        &self.members[i]
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Index of the member that reports itself as leader (Status: `leader ==
    /// header.member_id`), asking every running, non-paused member. If
    /// several claim leadership (a stale leader), the highest raft term wins.
    pub fn leader_index(&self) -> Option<usize> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build tokio runtime");
        self.members
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.status(&rt).map(|s| (i, s)))
            .filter(|(_, (id, leader, _))| id == leader)
            .max_by_key(|(_, (_, _, term))| *term)
            .map(|(i, _)| i)
    }

    /// Poll [`Cluster::leader_index`] until some member leads.
    pub fn wait_leader(&self, timeout: Duration) -> Option<usize> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.leader_index();
            found.is_some()
        });
        found
    }

    /// A [`Raw`] client connected to all members.
    pub fn raw(&self) -> Raw {
        Raw::connect(&self.endpoints())
    }

    /// The proxy in front of member `i`'s peer port (with
    /// [`EtcdOpts::peer_proxies`]).
    pub fn peer_proxy(&self, i: usize) -> Option<&Proxy> {
        self.peer_proxies.get(i)
    }

    /// Cuts member `i` off from its peers, both ways, while clients still
    /// reach it: everything sent to its peer port is held, and so is
    /// everything its own process sends to the other members' peer ports
    /// (raft messages, lease forwarding, version probes). Bytes are held,
    /// not lost, as in a network partition. Needs
    /// [`EtcdOpts::peer_proxies`]. Undo with [`Cluster::rejoin`].
    pub fn isolate(&self, i: usize) {
        assert!(
            !self.peer_proxies.is_empty(),
            "isolate() needs a cluster started with EtcdOpts::peer_proxies"
        );
        self.peer_proxies[i].blackhole();
        for (j, p) in self.peer_proxies.iter().enumerate() {
            if j != i {
                p.blackhole_from(i);
            }
        }
    }

    /// Undoes [`Cluster::isolate`] for member `i`.
    pub fn rejoin(&self, i: usize) {
        assert!(
            !self.peer_proxies.is_empty(),
            "rejoin() needs a cluster started with EtcdOpts::peer_proxies"
        );
        for (j, p) in self.peer_proxies.iter().enumerate() {
            if j != i {
                p.heal_from(i);
            }
        }
        self.peer_proxies[i].heal();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Output tails of all members, labelled.
    pub fn log_tails(&self, n: usize) -> String {
        self.members
            .iter()
            .map(|m| format!("--- {} ---\n{}", m.name, m.log_tail(n)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &self.members {
            print_tail_if_panicking(m);
        }
    }
}
