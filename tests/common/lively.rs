//! Helpers that connect os-lively clients and registering child processes to
//! a test etcd.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use std::ffi::CString;

use os_lively::capi::{lively_client, lively_config, lively_result};
use os_lively::{Client, Config};

/// A config for `endpoints` in namespace `ns` with a short TTL.
pub fn config(endpoints: &[String], ns: &str, ttl_secs: u64) -> Config {
    let mut c = Config::new();
    c.endpoints(endpoints)
        .expect("endpoints")
        .namespace(ns)
        .expect("namespace")
        .status_ttl(Duration::from_secs(ttl_secs))
        .connect_timeout(Duration::from_secs(5))
        .request_timeout(Duration::from_secs(3));
    c
}

/// Connects a client.
pub fn connect(endpoints: &[String], ns: &str, ttl_secs: u64) -> Client {
    Client::connect(&config(endpoints, ns, ttl_secs)).expect("connect")
}

/// Connects a client through the C API, as a C program would.
pub fn c_connect(endpoints: &[String], ns: &str, ttl_secs: u64) -> *const lively_client {
    let cfg = lively_config::lively_config_new();
    let eps = CString::new(endpoints.join(",")).expect("endpoints");
    let ns = CString::new(ns).expect("namespace");
    assert_eq!(
        lively_config::lively_config_set_endpoints(cfg, eps.as_ptr()),
        lively_result::Ok
    );
    assert_eq!(
        lively_config::lively_config_set_namespace(cfg, ns.as_ptr()),
        lively_result::Ok
    );
    assert_eq!(
        lively_config::lively_config_set_status_ttl(cfg, ttl_secs),
        lively_result::Ok
    );
    let mut client = std::ptr::null();
    assert_eq!(
        lively_client::lively_client_connect(cfg, &mut client),
        lively_result::Ok
    );
    lively_config::lively_config_free(cfg);
    client
}

/// A child process running `oslively register`: a daemon that registered
/// itself and stays UP until killed or its stdin is closed.
pub struct Registrant {
    pub child: Child,
    pub uuid: String,
    stdin: Option<ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Registrant {
    /// Starts the child and waits until it printed its uuid.
    pub fn start(endpoints: &[String], ns: &str, ttl_secs: u64, args: &[&str]) -> Registrant {
        let mut child = Command::new(super::oslively_bin())
            .args(["register", "--output", "table"])
            .args(args)
            .env("OSLIVELY_ETCD_ENDPOINTS", endpoints.join(","))
            .env("OSLIVELY_ETCD_KEY_NAMESPACE", ns)
            .env("OSLIVELY_STATUS_TTL", ttl_secs.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn oslively register");
        let stdin = child.stdin.take();
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read uuid line");
        let uuid = line
            .trim()
            .strip_prefix("uuid ")
            .unwrap_or_else(|| panic!("child did not register: {line:?}"))
            .to_string();
        Registrant {
            child,
            uuid,
            stdin,
            stdout,
        }
    }

    /// Asks the child to call `update()` again with its unchanged record.
    pub fn update(&mut self) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(b"update\n").expect("write");
        stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read");
        assert_eq!(line.trim(), "updated");
    }

    /// Takes the child's stdin, to feed it lines from elsewhere.
    pub fn take_stdin(&mut self) -> ChildStdin {
        self.stdin.take().expect("stdin open")
    }

    /// SIGKILL: the process dies without a word.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes stdin: the child closes its client and exits cleanly.
    pub fn finish(&mut self) {
        self.stdin.take();
        let _ = self.child.wait();
    }
}

impl Drop for Registrant {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the original Python library writes when it registers a DOWN
/// service in `region` under namespace `ns`: the record, the type/host
/// key, a DOWN key, and the region key without the uuid that all its
/// services of the region share.
pub fn python_register(
    raw: &super::Raw,
    ns: &str,
    service_type: &str,
    host: &str,
    uuid: &str,
    region: &str,
) {
    let root = format!("{ns}/services");
    // The record's protobuf bytes written out by hand, fields in number
    // order as Python's protobuf writes them, so neither the library's
    // encoder nor the one it is built from makes them.
    let mut record = Vec::new();
    for (field, text) in [(1u8, uuid), (2, service_type), (3, host)] {
        wire_string(&mut record, field, text);
    }
    record.extend([4 << 3, 1]); // status = DOWN (a varint)
    wire_string(&mut record, 10, region);
    raw.put(&format!("{root}/by-uuid/{uuid}"), &record);
    raw.put(
        &format!("{root}/by-type-host/{service_type}/{host}"),
        uuid.as_bytes(),
    );
    raw.put(&format!("{root}/by-status/DOWN/{uuid}"), b"");
    raw.put(&format!("{root}/by-region/{region}"), b"");
}

/// Appends protobuf field `field` (wire type 2, length-delimited) holding
/// `text`; short strings and field numbers below 16 only, as used here.
fn wire_string(out: &mut Vec<u8>, field: u8, text: &str) {
    assert!(field < 16 && text.len() < 128, "a one-byte key and length");
    out.push((field << 3) | 2);
    out.push(text.len() as u8);
    out.extend_from_slice(text.as_bytes());
}
