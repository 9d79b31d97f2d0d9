//! What the CLI's test files share: the `oslively` binary pointed at a test
//! etcd, a child's output lines on a channel, and `oslively register` as a
//! daemon.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::common::Etcd;

/// The status TTL every CLI test runs with.
pub const TTL: u64 = 2;

/// The `oslively` binary with only this test's OSLIVELY_* settings.
pub fn oslively(etcd: &Etcd, ns: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oslively"));
    for (k, _) in std::env::vars() {
        if k.starts_with("OSLIVELY_") {
            c.env_remove(k);
        }
    }
    c.env("OSLIVELY_ETCD_ENDPOINTS", etcd.endpoints().join(","))
        .env("OSLIVELY_ETCD_KEY_NAMESPACE", ns)
        .env("OSLIVELY_STATUS_TTL", TTL.to_string())
        .stdin(Stdio::null());
    c
}

/// Lines of `out`, as they arrive, on a channel.
pub fn line_reader(out: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// `oslively register` as a child: a daemon that stays UP while it lives;
/// killed (and reaped) when dropped.
pub struct Daemon {
    pub child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    pub uuid: String,
}

impl Daemon {
    pub fn start(etcd: &Etcd, ns: &str, args: &[&str]) -> Daemon {
        let mut child = oslively(etcd, ns)
            .args(["register", "-o", "json"])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn register");
        let stdin = child.stdin.take().unwrap();
        let lines = line_reader(child.stdout.take().unwrap());
        let first = lines
            .recv_timeout(Duration::from_secs(15))
            .expect("register printed its uuid");
        let v: Value = serde_json::from_str(&first).expect("JSON line");
        let uuid = v["uuid"].as_str().expect("uuid field").to_string();
        assert_eq!(uuid.len(), 32);
        Daemon {
            child,
            stdin,
            lines,
            uuid,
        }
    }

    /// Asks the daemon to register again (its check-in).
    #[allow(dead_code)] // not every test file checks in
    pub fn update(&mut self) {
        writeln!(self.stdin, "update").unwrap();
        self.stdin.flush().unwrap();
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("an answer to update");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["updated"], self.uuid.as_str());
    }

    /// SIGKILL: it dies without a word (no lease revoke); when it died.
    #[allow(dead_code)] // not every test file kills one
    pub fn kill(&mut self) -> Instant {
        self.child.kill().expect("SIGKILL");
        let at = Instant::now();
        let _ = self.child.wait();
        at
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
