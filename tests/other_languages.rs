//! Daemons in Go and Node.js through the same C ABI: `examples/go` (cgo,
//! Debian's golang-go) is built and `examples/node` (koffi from npm, with
//! its package-lock.json) installed against this build's
//! `libos_lively.so`, then each runs against a real etcd. For each
//! language, a daemon registered by that language's example is killed
//! with SIGKILL and that language's subscription callback reports
//! `down (expired)`; a daemon stopped by SIGTERM closes its client and
//! the callback reports `down (closed)`. etcd's own keys are the oracle
//! for what the daemons registered. Bad input (a NUL byte in a string,
//! a '/' in a key segment) is refused with a message naming it and
//! writes nothing. In Node.js, closing a subscription while its callback
//! waits in koffi's queue resolves after that event instead of
//! deadlocking (tests/node/close_in_flight.js).
//!
//! Without `go` or `node`/`npm` a test prints SKIPPED, unless
//! OSLIVELY_REQUIRE_FFI=1 (scripts/test.sh sets it; scripts/setup.sh
//! installs them), when it fails instead.
//!
//! Against etcd the Go test takes about 3 s and the Node.js one about
//! 5 s (TTL 2 s), plus the build: `go vet` + `go build` about 6 s, 20 s
//! the first time (the cgo runtime; cached under target/ afterwards), and
//! `npm ci` 4-8 s.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::*;

/// Short, so a crash reaches the callbacks quickly: etcd (the harness's,
/// with fast elections) accepts it.
const TTL: u64 = 2;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", show(&out));
    out
}

/// Whether `tool` can run here. A missing tool skips the test, or fails
/// it when OSLIVELY_REQUIRE_FFI=1.
fn usable(tool: &str, version_arg: &str) -> bool {
    if Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        return true;
    }
    assert!(
        std::env::var("OSLIVELY_REQUIRE_FFI").as_deref() != Ok("1"),
        "`{tool}` is not installed and OSLIVELY_REQUIRE_FFI=1 (scripts/setup.sh installs it)"
    );
    eprintln!("SKIPPED: `{tool}` is not installed (scripts/setup.sh installs it)");
    false
}

/// `target/<profile>/other-languages/`, with `lib/` holding the soname
/// link the programs load (`libos_lively.so.0`, which cargo does not
/// create) and the link-time name, both to this build's library.
fn out_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let lib = lib_dir();
        let profile = if lib.ends_with("deps") {
            lib.parent().expect("target/<profile>")
        } else {
            &lib
        };
        let out = profile.join("other-languages");
        let so_dir = out.join("lib");
        std::fs::create_dir_all(&so_dir).expect("create other-languages/lib");
        for (name, target) in [
            ("libos_lively.so.0", lib.join("libos_lively.so")),
            ("libos_lively.so", PathBuf::from("libos_lively.so.0")),
        ] {
            let link = so_dir.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link)
                .unwrap_or_else(|e| panic!("link {} -> {}: {e}", link.display(), target.display()));
        }
        out
    })
}

fn so_dir() -> PathBuf {
    out_dir().join("lib")
}

/// Builds examples/go into `other-languages/lively-go` with Debian's Go:
/// no network (GOPROXY=off: the module has no dependencies), the build
/// cache under target/ unless GOCACHE is set. `go vet` first: its cgo
/// check flags Go pointers passed to C.
fn build_go() -> PathBuf {
    let src = manifest_dir().join("examples/go");
    let out = out_dir().join("lively-go");
    let go = |args: &[&str]| {
        let mut cmd = Command::new("go");
        cmd.args(args)
            .current_dir(&src)
            .env("CGO_ENABLED", "1")
            .env(
                "CGO_LDFLAGS",
                format!("-L{0} -Wl,-rpath,{0}", so_dir().display()),
            )
            .env("GOPROXY", "off")
            .env("GOTOOLCHAIN", "local")
            .env("GOWORK", "off")
            .env("GOFLAGS", "-mod=readonly");
        for (var, dir) in [("GOCACHE", "go-cache"), ("GOPATH", "go-path")] {
            if std::env::var_os(var).is_none() {
                cmd.env(var, out_dir().join(dir));
            }
        }
        cmd
    };
    let started = Instant::now();
    run(&mut go(&["vet", "./..."]));
    run(go(&["build", "-o"]).arg(&out).arg("."));
    eprintln!("go vet + go build: {:?}", started.elapsed());
    out
}

/// Installs examples/node (its sources and package-lock.json) into
/// `other-languages/node/` with `npm ci`, so node_modules never lands in
/// the source tree; returns the path of its cli.js.
fn install_node() -> PathBuf {
    let src = manifest_dir().join("examples/node");
    let dir = out_dir().join("node");
    std::fs::create_dir_all(&dir).expect("create other-languages/node");
    for f in ["package.json", "package-lock.json", "lively.js", "cli.js"] {
        std::fs::copy(src.join(f), dir.join(f))
            .unwrap_or_else(|e| panic!("copy examples/node/{f}: {e}"));
    }
    std::fs::copy(
        manifest_dir().join("tests/node/close_in_flight.js"),
        dir.join("close_in_flight.js"),
    )
    .expect("copy tests/node/close_in_flight.js");
    let started = Instant::now();
    run(Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefer-offline"])
        .current_dir(&dir));
    eprintln!("npm ci: {:?}", started.elapsed());
    dir.join("cli.js")
}

/// One language's example program, pointed at an etcd and namespace.
struct Example {
    lang: &'static str,
    program: PathBuf,
    args: Vec<PathBuf>,
    endpoints: String,
    ns: String,
}

impl Example {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).args(args);
        self.env(&mut cmd);
        cmd
    }

    /// Points `cmd` at this example's etcd, namespace, TTL and library.
    fn env(&self, cmd: &mut Command) {
        cmd.env("OSLIVELY_ETCD_ENDPOINTS", &self.endpoints)
            .env("OSLIVELY_ETCD_KEY_NAMESPACE", &self.ns)
            .env("OSLIVELY_STATUS_TTL", TTL.to_string())
            .env("OSLIVELY_LIB", so_dir().join("libos_lively.so.0"))
            .env_remove("OSLIVELY_ETCD_HOST")
            .env_remove("OSLIVELY_ETCD_PORT");
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("{}: run {args:?}: {e}", self.lang))
    }

    /// Starts a long-running mode with its stdout read line by line.
    fn spawn(&self, args: &[&str]) -> Running {
        self.spawn_command(self.command(args), &args.join(" "))
    }

    fn spawn_command(&self, mut cmd: Command, what: &str) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: spawn {what}: {e}", self.lang));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            what: format!("{} {what}", self.lang),
            child,
            lines: rx,
        }
    }
}

/// A running example; killed when dropped.
struct Running {
    what: String,
    child: Child,
    lines: Receiver<String>,
}

impl Running {
    /// Waits for a line for which `want` is true; panics with what was
    /// seen after `timeout`.
    fn expect(&self, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if want(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "{}: no expected line within {timeout:?}; saw {seen:#?}",
                    self.what
                ),
            }
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and a clean exit within `timeout`.
    fn terminate(&mut self, timeout: Duration) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.exits_cleanly(timeout);
    }

    /// A clean exit within `timeout`.
    fn exits_cleanly(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "{}: exited with {status:?}", self.what);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: still running after {timeout:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The whole story for one language's example; `while_up` runs once the
/// first daemon is registered and seen (its uuid, type and host).
fn crash_and_close_reach_the_callback(
    ex: &Example,
    etcd: &Etcd,
    while_up: impl FnOnce(&str, &str, &str),
) {
    let started = Instant::now();
    let raw = etcd.raw();
    let ns = &ex.ns;
    let lang = ex.lang;
    let service_type = format!("{lang}-daemon");

    // Bad input: refused with the binding's or the library's message
    // naming it, and nothing written.
    let out = ex.output(&["bad-input"]);
    assert!(out.status.success(), "{lang} bad-input: {}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = |prefix: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{lang} bad-input: no line {prefix:?} in {stdout}"))
            .to_string()
    };
    let nul = line("refused \"typ\\");
    assert!(
        nul.contains("invalid argument") && nul.contains("NUL byte at offset 3"),
        "{lang}: {nul}"
    );
    let slash = line("refused \"typ/evil\"");
    assert!(
        slash.contains("invalid argument") && slash.contains("typ/evil"),
        "{lang}: the library's message, read on the failing call's thread: {slash}"
    );
    line("is-up typ host-1 down");
    assert!(
        raw.keys(&format!("{ns}/")).is_empty(),
        "{lang}: bad input wrote {:?}",
        raw.keys(&format!("{ns}/"))
    );

    // A daemon registers; etcd holds its record and its UP key on a lease.
    let mut daemon = ex.spawn(&["daemon", &service_type, "host-1"]);
    let uuid = daemon
        .expect(Duration::from_secs(20), |l| l.starts_with("uuid "))
        .trim_start_matches("uuid ")
        .to_string();
    assert_eq!(uuid.len(), 32, "{lang}: {uuid}");
    daemon.expect(Duration::from_secs(5), |l| {
        l == format!("is-up {service_type} host-1 up")
    });
    assert_eq!(
        raw.get(&format!("{ns}/services/by-type-host/{service_type}/host-1"))
            .map(|kv| kv.value_str()),
        Some(uuid.clone()),
        "{lang}: the type+host index"
    );
    let up_key = format!("{ns}/services/by-status/UP/{uuid}");
    let up = raw
        .get(&up_key)
        .unwrap_or_else(|| panic!("{lang}: no UP key"));
    assert_ne!(up.lease, 0, "{lang}: the UP key is on a lease");

    let out = ex.output(&["is-up", &service_type, "host-1"]);
    assert_eq!(out.status.code(), Some(0), "{lang} is-up: {}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "up");

    // A watcher in the same language sees it through its callback.
    let mut watcher = ex.spawn(&["watch", &service_type]);
    watcher.expect(Duration::from_secs(20), |l| {
        l == format!("existing up {uuid} {service_type} host-1")
    });
    while_up(&uuid, &service_type, "host-1");

    // SIGKILL: no clean close, so only the lease's expiry tells.
    let killed = Instant::now();
    daemon.kill();
    watcher.expect(Duration::from_secs(TTL + 10), |l| {
        l == format!("down (expired) {uuid} {service_type} host-1")
    });
    let crash_seen = killed.elapsed();
    assert!(
        raw.get(&up_key).is_none(),
        "{lang}: the UP key outlived the lease"
    );
    let out = ex.output(&["is-up", &service_type, "host-1"]);
    assert_eq!(out.status.code(), Some(1), "{lang} is-up: {}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "down");

    // SIGTERM: the daemon closes its client, DOWN at once (closed).
    let mut second = ex.spawn(&["daemon", &service_type, "host-2"]);
    let uuid2 = second
        .expect(Duration::from_secs(20), |l| l.starts_with("uuid "))
        .trim_start_matches("uuid ")
        .to_string();
    second.expect(Duration::from_secs(5), |l| {
        l == format!("is-up {service_type} host-2 up")
    });
    watcher.expect(Duration::from_secs(10), |l| {
        l == format!("registered {uuid2} {service_type} host-2")
    });
    let stopped = Instant::now();
    second.terminate(Duration::from_secs(10));
    watcher.expect(Duration::from_secs(TTL + 10), |l| {
        l == format!("down (closed) {uuid2} {service_type} host-2")
    });
    let close_seen = stopped.elapsed();

    // The watcher frees its subscription and exits cleanly.
    watcher.terminate(Duration::from_secs(10));
    eprintln!(
        "{lang}: SIGKILL seen as down (expired) after {crash_seen:?} (TTL {TTL} s), \
         SIGTERM as down (closed) after {close_seen:?}; {:?} in all",
        started.elapsed()
    );
}

#[test]
fn go_daemon_killed_reaches_the_go_callback_as_down_expired() {
    if !usable("go", "version") {
        return;
    }
    let program = build_go();
    let etcd = Etcd::start();
    crash_and_close_reach_the_callback(
        &Example {
            lang: "go",
            program,
            args: Vec::new(),
            endpoints: etcd.endpoints().join(","),
            ns: namespace("go"),
        },
        &etcd,
        |_, _, _| {},
    );
}

#[test]
fn node_daemon_killed_reaches_the_node_callback_as_down_expired() {
    if !usable("node", "--version") || !usable("npm", "--version") {
        return;
    }
    let cli = install_node();
    let etcd = Etcd::start();
    let ex = Example {
        lang: "node",
        program: PathBuf::from("node"),
        args: vec![cli.clone()],
        endpoints: etcd.endpoints().join(","),
        ns: namespace("node"),
    };
    crash_and_close_reach_the_callback(&ex, &etcd, |uuid, service_type, host| {
        // Closing while a callback waits in koffi's queue: through
        // `.async` it resolves, after the event in flight (tests/node/).
        let mut cmd = Command::new("node");
        cmd.arg(cli.with_file_name("close_in_flight.js"))
            .arg(service_type);
        ex.env(&mut cmd);
        let mut run = ex.spawn_command(cmd, "close_in_flight.js");
        run.expect(Duration::from_secs(20), |l| {
            l == format!("event existing {uuid} {service_type} {host}")
        });
        run.expect(Duration::from_secs(12), |l| l == "closed after 1 events");
        run.exits_cleanly(Duration::from_secs(10));
    });
}
