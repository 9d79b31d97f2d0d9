//! `oslively serve` against a real etcd, a real Prometheus and a real
//! browser:
//!
//! - the routes (metrics series and values, the JSON API, SSE, healthz 200
//!   then 503 while etcd is down, 4xx for bad requests), and the CLI's
//!   STATUS with its why, commands by --type/--host, the help heading;
//! - Debian's `prometheus` scrapes the exporter and answers
//!   `oslively_service_up == 0` with a service the test SIGKILLed, within
//!   TTL + two scrape intervals; `promtool` checks the example rules;
//! - Debian's `chromium` (through `chromedriver`, WebDriver) shows a killed
//!   service's row turn DOWN without a reload within TTL + 1 s, and leaves
//!   screenshots under `target/tmp/serve-artifacts/`.
//!
//! Prometheus and chromium tests skip (with a message) when their binaries
//! are missing, unless OSLIVELY_REQUIRE_E2E=1 (scripts/test.sh sets it after
//! installing them).

#[path = "../../tests/common/mod.rs"]
mod common;
mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use harness::*;
use serde_json::{Value, json};

fn run(etcd: &Etcd, ns: &str, args: &[&str]) -> (i32, String, String) {
    let out = oslively(etcd, ns)
        .args(args)
        .output()
        .expect("run oslively");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A child process killed (and reaped) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `oslively serve --listen 127.0.0.1:0`, and the address it bound.
fn serve(etcd: &Etcd, ns: &str) -> (Proc, String) {
    let mut child = oslively(etcd, ns)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let lines = line_reader(child.stdout.take().unwrap());
    let proc = Proc(child);
    let first = lines
        .recv_timeout(Duration::from_secs(30))
        .expect("serve printed its address");
    let addr = first
        .strip_prefix("listening on http://")
        .and_then(|a| a.strip_suffix('/'))
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    (proc, addr)
}

struct Resp {
    status: u16,
    headers: String,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read the headers, then the body by its length (chromedriver keeps the
    // connection open despite `Connection: close`), chunks, or to the end.
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let split = loop {
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        let n = s.read(&mut buf).expect("read the response headers");
        assert!(n > 0, "connection closed before the headers: {raw:?}");
        raw.extend_from_slice(&buf[..n]);
    };
    let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
    let lower = headers.to_ascii_lowercase();
    let mut rest = raw[split + 4..].to_vec();
    let length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = lower.contains("transfer-encoding: chunked");
    loop {
        let done = match length {
            Some(len) => rest.len() >= len,
            None if chunked => rest.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the body of {method} {path}: {e}"),
        }
    }
    if chunked {
        rest = dechunk(&rest);
    }
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&rest).into_owned(),
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..eol])
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
}

fn get(addr: &str, path: &str) -> Resp {
    http(addr, "GET", path, None)
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `name` on PATH; `None` (test skipped) unless OSLIVELY_REQUIRE_E2E=1.
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("OSLIVELY_REQUIRE_E2E").as_deref() != Ok("1"),
            "{name} is not installed (scripts/setup.sh installs it)"
        );
        eprintln!("SKIPPED: {name} is not installed (scripts/setup.sh installs it)");
    }
    found
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The sample of `name{labels}` in an OpenMetrics text, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[test]
fn serve_routes_status_why_and_commands_by_type_host() {
    let mut etcd = Etcd::start();
    let ns = namespace("serve");
    let _a = Daemon::start(
        &etcd,
        &ns,
        &["--type", "nova", "--host", "h1", "--region", "east"],
    );
    let mut b = Daemon::start(
        &etcd,
        &ns,
        &["--type", "nova", "--host", "h2", "--region", "east"],
    );
    let c = Daemon::start(
        &etcd,
        &ns,
        &["--type", "glance", "--host", "h3", "--region", "west"],
    );
    // A heartbeat of 1 s that never comes: DOWN (missed) after a second.
    let d = Daemon::start(
        &etcd,
        &ns,
        &["--type", "cinder", "--host", "h4", "--heartbeat", "1s"],
    );
    let (_serve, addr) = serve(&etcd, &ns);

    // Every series, for every service.
    let m = get(&addr, "/metrics");
    assert_eq!(m.status, 200, "{}", m.body);
    assert!(
        m.headers.contains("application/openmetrics-text"),
        "{}",
        m.headers
    );
    assert!(m.body.ends_with("# EOF\n"));
    assert_eq!(
        sample(
            &m.body,
            r#"oslively_service_up{type="nova",host="h1",region="east"}"#
        ),
        Some(1.0),
        "{}",
        m.body
    );
    assert_eq!(
        sample(
            &m.body,
            &format!(
                r#"oslively_service_info{{type="glance",host="h3",region="west",uuid="{}"}}"#,
                c.uuid
            )
        ),
        Some(1.0)
    );
    for series in [
        r#"oslively_service_forced_down{type="glance",host="h3",region="west"}"#,
        r#"oslively_service_heartbeat_missed{type="nova",host="h1",region="east"}"#,
        "oslively_client_reconnects_total",
        "oslively_client_resyncs_total",
        "oslively_client_registrations_lost_total",
        "oslively_view_stale_seconds",
    ] {
        assert_eq!(sample(&m.body, series), Some(0.0), "{series}:\n{}", m.body);
    }
    // Its subscription's snapshot: one event per service, counted.
    assert_eq!(sample(&m.body, "oslively_client_events_total"), Some(4.0));
    assert_eq!(sample(&m.body, "oslively_view_connected"), Some(1.0));
    assert_eq!(sample(&m.body, "oslively_view_services"), Some(4.0));

    // An SSE client sees events as they happen (watch -o json documents).
    let mut sse = TcpStream::connect(&addr).unwrap();
    sse.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        sse,
        "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();

    // A SIGKILL: DOWN (expired) once its lease runs out; the heartbeat
    // one: DOWN (missed); an operator's down by type/host: DOWN (forced).
    b.kill();
    let (code, out, err) = run(
        &etcd,
        &ns,
        &[
            "down",
            "--type",
            "glance",
            "--host",
            "h3",
            "--note",
            "disk swap",
            "-o",
            "json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({ "uuid": c.uuid, "action": "down" })
    );
    let table = || run(&etcd, &ns, &["list", "-o", "table"]).1;
    let want = ["DOWN (expired)", "DOWN (missed)", "DOWN (forced)"];
    assert!(
        wait_until(Duration::from_secs(TTL + 10), || {
            let t = table();
            want.iter().all(|w| t.contains(w))
        }),
        "{}",
        table()
    );
    let t = table();
    let row = |host: &str| -> String {
        t.lines()
            .find(|l| l.split_whitespace().nth(4) == Some(host) || l.contains(&format!(" {host} ")))
            .unwrap_or_else(|| panic!("no row for {host}:\n{t}"))
            .to_string()
    };
    assert!(row("h1").contains(" UP "), "{t}");
    assert!(row("h2").contains("DOWN (expired)"), "{t}");
    assert!(row("h3").contains("DOWN (forced)"), "{t}");
    assert!(row("h4").contains("DOWN (missed)"), "{t}");

    // The same whys in JSON, from the CLI and from the exporter.
    let (_, out, _) = run(
        &etcd,
        &ns,
        &["get", "--type", "cinder", "--host", "h4", "-o", "json"],
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["status"].as_str(), v["why"].as_str()),
        (Some("DOWN"), Some("missed"))
    );
    assert!(wait_until(Duration::from_secs(5), || {
        let r = get(&addr, "/api/services");
        let all: Value = serde_json::from_str(&r.body).unwrap();
        let why = |host: &str| {
            all.as_array()
                .unwrap()
                .iter()
                .find(|s| s["host"] == host)
                .map(|s| s["why"].clone())
        };
        why("h1") == Some(Value::Null)
            && why("h2") == Some(json!("expired"))
            && why("h3") == Some(json!("forced"))
            && why("h4") == Some(json!("missed"))
    }));
    let r = get(&addr, "/api/services?type=glance&status=down");
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    let v = &v.as_array().unwrap()[0];
    assert_eq!(
        (
            v["uuid"].as_str(),
            v["maintenance_note"].as_str(),
            v["forced_down"].as_bool()
        ),
        (Some(c.uuid.as_str()), Some("disk swap"), Some(true))
    );
    assert_eq!(v.as_object().unwrap().len(), 13, "{v}");
    let m = get(&addr, "/metrics").body;
    assert_eq!(
        sample(
            &m,
            r#"oslively_service_up{type="nova",host="h2",region="east"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"oslively_service_forced_down{type="glance",host="h3",region="west"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"oslively_service_heartbeat_missed{type="cinder",host="h4",region=""}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"oslively_services{type="nova",region="east",status="DOWN",why="expired"}"#
        ),
        Some(1.0),
        "{m}"
    );
    let changed = sample(
        &m,
        r#"oslively_service_last_change_timestamp_seconds{type="nova",host="h2",region="east"}"#,
    )
    .expect("a last change for the killed service");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - 60.0..=now + 1.0).contains(&changed),
        "{changed} vs {now}"
    );

    // The SSE stream carried the down (expired) event with its why.
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.contains("\"reason\":\"expired\"") && Instant::now() < deadline {
        let mut buf = [0u8; 4096];
        if let Ok(n) = sse.read(&mut buf) {
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(got.contains("text/event-stream"), "{got}");
    let line = got
        .lines()
        .find(|l| l.starts_with("data:") && l.contains("\"reason\":\"expired\""))
        .unwrap_or_else(|| panic!("no expired event over SSE:\n{got}"));
    let e: Value = serde_json::from_str(line.trim_start_matches("data:").trim()).unwrap();
    assert_eq!(
        (e["event"].as_str(), e["host"].as_str(), e["why"].as_str()),
        (Some("down"), Some("h2"), Some("expired"))
    );
    drop(sse);

    // up and delete by type/host.
    let (code, _, err) = run(&etcd, &ns, &["up", "--type", "glance", "--host", "h3"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        run(&etcd, &ns, &["is-up", "--type", "glance", "--host", "h3"]).0,
        0
    );
    let (code, _, err) = run(&etcd, &ns, &["delete", "--type", "nova", "--host", "h2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        run(&etcd, &ns, &["get", "--type", "nova", "--host", "h2"]).0,
        1
    );
    let (code, _, err) = run(&etcd, &ns, &["down", "--type", "nova", "--host", "nope"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no service registered"), "{err}");
    assert_eq!(run(&etcd, &ns, &["up", "--type", "nova"]).0, 2);

    // Read-only; bad requests get 4xx, never a crash.
    for (method, path, want) in [
        ("POST", "/metrics", 405),
        ("DELETE", "/api/services", 405),
        ("PUT", "/", 405),
        ("GET", "/nope", 404),
        ("GET", "/api/services?colour=red", 400),
        ("GET", "/api/services?status=sideways", 400),
        ("GET", "/api/services?type=a%2Fb", 400),
        ("GET", "/api/services?type=%ZZ", 400),
        ("GET", "/api/events?snapshot=maybe", 400),
        ("GET", "/metrics?x", 400),
        ("GET", "/%00", 404),
    ] {
        let r = http(&addr, method, path, Some("{}"));
        assert_eq!(r.status, want, "{method} {path}: {}", r.body);
    }
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"NONSENSE\r\n\r\n").unwrap();
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    assert!(String::from_utf8_lossy(&sink).starts_with("HTTP/1.1 4") || sink.is_empty());

    // The page and its assets come from the binary.
    let page = get(&addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.headers.contains("text/html") && page.body.contains("assets/app.js"));
    assert!(get(&addr, "/assets/app.js").body.contains("EventSource"));
    assert_eq!(get(&addr, "/assets/app.css").status, 200);

    // healthz: 200 while synced, 503 while etcd is gone, 200 again after.
    assert_eq!(get(&addr, "/healthz").status, 200);
    etcd.stop();
    assert!(
        wait_until(Duration::from_secs(20), || get(&addr, "/healthz").status
            == 503),
        "healthz stayed 200 with etcd stopped"
    );
    let m = get(&addr, "/metrics").body;
    assert_eq!(sample(&m, "oslively_view_connected"), Some(0.0));
    assert!(
        get(&addr, "/api/services").status == 200,
        "the last known state is served"
    );
    etcd.start_again();
    assert!(
        wait_until(Duration::from_secs(30), || get(&addr, "/healthz").status
            == 200),
        "healthz did not recover"
    );
    drop(d);
}

#[test]
fn help_lists_connection_flags_under_their_own_heading() {
    for args in [&["--help"][..], &["list", "--help"], &["serve", "--help"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_oslively"))
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let at = text
            .find("\nConnection:\n")
            .unwrap_or_else(|| panic!("{args:?}: no Connection heading:\n{text}"));
        let (before, after) = text.split_at(at);
        assert!(
            before.contains("--output") && !after.contains("--output"),
            "{args:?}: --output belongs with the command's options:\n{text}"
        );
        for flag in [
            "--endpoints",
            "--namespace",
            "--user",
            "--cacert",
            "--dial-timeout",
        ] {
            assert!(
                after.contains(flag) && !before.contains(flag),
                "{args:?} {flag}:\n{text}"
            );
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_oslively"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("127.0.0.1:9478"));
}

/// The HTTP server stack and prometheus-client are the CLI's: the library's
/// own dependencies name none of them, so its dependents never compile them
/// for it. (`tower`, `hyper-util` and `http` are named by the library's TLS
/// connector, but the gRPC transport compiles them anyway.)
#[test]
fn the_library_does_not_depend_on_the_exporter_crates() {
    let manifest = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let deps = manifest
        .split("\n[")
        .filter(|section| {
            section.starts_with("dependencies]") || section.starts_with("build-dependencies]")
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(!deps.is_empty(), "no [dependencies] in the root Cargo.toml");
    for krate in ["axum", "hyper", "prometheus-client", "tokio-stream", "clap"] {
        assert!(
            !deps
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{krate} "))
                    || l.trim_start().starts_with(&format!("{krate}="))),
            "the library depends on {krate}"
        );
    }
}

#[test]
fn promtool_checks_the_example_rules() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let rules = repo().join("docs/prometheus/oslively-alerts.yml");
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn prometheus_sees_a_killed_service_down() {
    let Some(prometheus) = tool("prometheus") else {
        return;
    };
    const SCRAPE: u64 = 1;
    let etcd = Etcd::start();
    let ns = namespace("serveprom");
    let _a = Daemon::start(&etcd, &ns, &["--type", "nova", "--host", "alive"]);
    let mut b = Daemon::start(&etcd, &ns, &["--type", "nova", "--host", "victim"]);
    let (_serve, addr) = serve(&etcd, &ns);

    let dir = tempfile::tempdir().unwrap();
    let rules = repo().join("docs/prometheus/oslively-alerts.yml");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: {SCRAPE}s\n  evaluation_interval: {SCRAPE}s\n\
             rule_files: [{rules:?}]\n\
             scrape_configs:\n  - job_name: oslively\n    static_configs:\n      - targets: [{addr:?}]\n"
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let prom = Proc(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("log")).unwrap(),
            ))
            .spawn()
            .expect("start prometheus"),
    );
    let query = |q: &str| -> Vec<Value> {
        let mut path = String::from("/api/v1/query?query=");
        for b in q.bytes() {
            if b.is_ascii_alphanumeric() || b == b'_' {
                path.push(b as char);
            } else {
                path.push_str(&format!("%{b:02X}"));
            }
        }
        let Ok(_) = TcpStream::connect(&web) else {
            return vec![];
        };
        let r = get(&web, &path);
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    };
    let hosts = |rs: &[Value]| -> Vec<String> {
        let mut h: Vec<String> = rs
            .iter()
            .filter_map(|r| r["metric"]["host"].as_str().map(String::from))
            .collect();
        h.sort();
        h
    };
    // Prometheus scrapes both as UP, and loaded the example rules.
    assert!(
        wait_until(Duration::from_secs(60), || hosts(&query(
            "oslively_service_up == 1"
        )) == ["alive", "victim"]),
        "prometheus never scraped both services UP; its log:\n{}",
        std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
    );
    let rules_loaded = get(&web, "/api/v1/rules").body;
    assert!(
        rules_loaded.contains("OsLivelyServiceDown")
            && !rules_loaded.contains("\"health\":\"err\""),
        "{rules_loaded}"
    );

    let killed = b.kill();
    let mut seen = None;
    let bound = Duration::from_secs(TTL + 2 * SCRAPE);
    wait_until(bound + Duration::from_secs(10), || {
        if hosts(&query("oslively_service_up == 0")) == ["victim"] {
            seen = Some(killed.elapsed());
            true
        } else {
            false
        }
    });
    let seen = seen.expect("oslively_service_up == 0 never returned the killed service");
    eprintln!("prometheus: DOWN {seen:?} after SIGKILL (TTL {TTL} s, scrape every {SCRAPE} s)");
    assert!(seen <= bound, "seen after {seen:?}, bound {bound:?}");
    assert_eq!(hosts(&query("oslively_service_up == 1")), ["alive"]);
    drop(prom);
}

/// A WebDriver session on chromedriver driving headless chromium.
struct Browser {
    addr: String,
    session: String,
    _driver: Proc,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(chromedriver: &Path, chromium: &Path, width: u32, height: u32) -> Browser {
        let port = free_port();
        let driver = Proc(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        let addr = format!("127.0.0.1:{port}");
        assert!(
            wait_until(Duration::from_secs(20), || TcpStream::connect(&addr)
                .is_ok()
                && get(&addr, "/status").body.contains("\"ready\":true")),
            "chromedriver did not start"
        );
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({ "capabilities": { "alwaysMatch": { "goog:chromeOptions": {
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", format!("--user-data-dir={}", profile.path().display()),
                     format!("--window-size={width},{height}")]
        }}}});
        let r = http(&addr, "POST", "/session", Some(&caps.to_string()));
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {}", r.body))
            .to_string();
        Browser {
            addr,
            session,
            _driver: driver,
            _profile: profile,
        }
    }

    fn call(&self, method: &str, what: &str, body: Value) -> Value {
        let path = format!("/session/{}/{what}", self.session);
        let body = (!body.is_null()).then(|| body.to_string());
        let r = http(&self.addr, method, &path, body.as_deref());
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        assert_eq!(r.status, 200, "{method} {what}: {}", r.body);
        v["value"].clone()
    }

    fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "execute/sync",
            json!({ "script": script, "args": [] }),
        )
    }

    fn screenshot(&self, to: &Path) {
        use base64::Engine;
        let png = self.call("GET", "screenshot", Value::Null);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 PNG"))
            .unwrap();
        std::fs::write(to, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            &self.addr,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

#[test]
fn browser_row_turns_down_live() {
    let (Some(chromedriver), Some(chromium)) = (tool("chromedriver"), tool("chromium")) else {
        return;
    };
    let etcd = Etcd::start();
    let ns = namespace("servebrowser");
    let mut daemons = Vec::new();
    for (ty, host, region) in [
        ("nova-compute", "compute-1", "east"),
        ("nova-compute", "compute-2", "east"),
        ("nova-compute", "compute-3", "west"),
        ("glance", "image-1", "east"),
        ("cinder", "volume-1", "west"),
    ] {
        daemons.push(Daemon::start(
            &etcd,
            &ns,
            &["--type", ty, "--host", host, "--region", region],
        ));
    }
    let (code, _, err) = run(
        &etcd,
        &ns,
        &[
            "down",
            "--type",
            "glance",
            "--host",
            "image-1",
            "--note",
            "disk swap",
            "--end",
            "+2h",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let _missed = Daemon::start(
        &etcd,
        &ns,
        &[
            "--type",
            "cinder",
            "--host",
            "volume-2",
            "--region",
            "west",
            "--heartbeat",
            "1s",
        ],
    );
    let (_serve, addr) = serve(&etcd, &ns);

    let browser = Browser::start(&chromedriver, &chromium, 1280, 900);
    browser.call("POST", "url", json!({ "url": format!("http://{addr}/") }));
    let victim = daemons[1].uuid.clone();
    let status = |uuid: &str| -> Value {
        browser.js(&format!(
            "const r = document.querySelector('tr[data-uuid=\"{uuid}\"]'); \
             return r ? [r.dataset.status, r.querySelector('.pill').textContent, window.__marker || 0] : null;"
        ))
    };
    assert!(
        wait_until(Duration::from_secs(20), || status(&victim)[0] == "UP"),
        "the page never showed the victim UP: {}",
        status(&victim)
    );
    assert!(wait_until(Duration::from_secs(10), || status(
        &_missed.uuid
    )[1] == "DOWN (missed)"));
    // A mark that a reload would erase.
    browser.js("window.__marker = 42; return 1;");

    let killed = daemons[1].kill();
    let mut seen = None;
    let bound = Duration::from_secs(TTL + 1);
    wait_until(bound + Duration::from_secs(10), || {
        let s = status(&victim);
        if s[0] == "DOWN" {
            seen = Some((killed.elapsed(), s));
            true
        } else {
            false
        }
    });
    let (after, s) = seen.expect("the row never turned DOWN");
    eprintln!("browser: row DOWN {after:?} after SIGKILL (TTL {TTL} s)");
    assert_eq!(
        s,
        json!(["DOWN", "DOWN (expired)", 42]),
        "reloaded, or the wrong why"
    );
    assert!(after <= bound, "DOWN after {after:?}, bound {bound:?}");
    let counts = browser.js(
        "return [document.getElementById('n-total').textContent, \
         document.getElementById('n-up').textContent, document.getElementById('n-down').textContent]",
    );
    assert_eq!(counts, json!(["6", "3", "3"]));
    let events = browser.js("return document.getElementById('events').textContent");
    assert!(
        events.as_str().unwrap_or("").contains("down (expired)"),
        "{events}"
    );

    // Artifacts: the page on a laptop and on a phone.
    let dir = artifacts();
    browser.screenshot(&dir.join("status-page.png"));
    browser.call(
        "POST",
        "window/rect",
        json!({ "width": 400, "height": 860 }),
    );
    browser.screenshot(&dir.join("status-page-phone.png"));
    eprintln!("screenshots in {}", dir.display());
}

/// `/metrics` at 100,000 services: time and bytes per scrape. Several
/// minutes (most of it writing the fleet); run with
/// `cargo test --release -p oslively-cli --test serve scrape_100k -- --ignored --nocapture`.
#[test]
#[ignore]
fn scrape_100k() {
    let n: usize = std::env::var("OSLIVELY_SCRAPE_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let etcd = Etcd::start_with(EtcdOpts {
        extra_args: vec!["--quota-backend-bytes=4294967296".into()],
        ..Default::default()
    });
    let ns = namespace("scrape");
    let raw = Raw::connect(&etcd.endpoints());
    let lease = raw.grant(600);
    let mut kv = raw.client();
    let start = Instant::now();
    let batch = 32; // 4 puts each: 128 ops per transaction, etcd's default limit.
    for first in (0..n).step_by(batch) {
        let mut ops = Vec::new();
        for i in first..(first + batch).min(n) {
            let uuid = format!("{i:032x}");
            let ty = format!("type-{}", i % 20);
            let host = format!("host-{i}");
            let region = format!("region-{}", i % 5);
            let mut s = os_lively::Service::new(&ty, &host).with_region(&region);
            s.uuid = uuid.clone();
            let up = i % 10 != 0;
            if !up {
                s.status = os_lively::Status::Down;
            }
            use etcd_client::{PutOptions, TxnOp};
            ops.push(TxnOp::put(
                format!("{ns}/services/by-uuid/{uuid}"),
                s.to_bytes(),
                None,
            ));
            ops.push(TxnOp::put(
                format!("{ns}/services/by-type-host/{ty}/{host}"),
                uuid.clone(),
                None,
            ));
            ops.push(TxnOp::put(
                format!("{ns}/services/by-region/{region}/{uuid}"),
                "",
                None,
            ));
            let (status, opts) = if up {
                ("UP", Some(PutOptions::new().with_lease(lease)))
            } else {
                ("DOWN", None)
            };
            ops.push(TxnOp::put(
                format!("{ns}/services/by-status/{status}/{uuid}"),
                "",
                opts,
            ));
        }
        raw.block_on(kv.txn(etcd_client::Txn::new().and_then(ops)))
            .expect("txn");
    }
    eprintln!("wrote {n} services in {:?}", start.elapsed());
    let (_serve, addr) = serve(&etcd, &ns);
    let loaded = Instant::now();
    assert!(wait_until(Duration::from_secs(300), || {
        sample(&get(&addr, "/metrics").body, "oslively_view_services") == Some(n as f64)
    }));
    eprintln!("view loaded within {:?}", loaded.elapsed());
    // Fresh scrapes (an event since the last one: everything encoded) and
    // reused ones (no event: the fleet's text is the last scrape's). Between
    // fresh ones, a raw write changes one service's note.
    let scrape = || -> (Duration, f64, bool, usize) {
        let t = Instant::now();
        let r = get(&addr, "/metrics");
        let took = t.elapsed();
        assert_eq!(r.status, 200);
        // Server-Timing: render;dur=<ms>;desc="fresh"|"reused".
        let timing = r
            .headers
            .to_ascii_lowercase()
            .lines()
            .find_map(|l| {
                l.strip_prefix("server-timing: render;dur=")
                    .map(str::to_string)
            })
            .expect("a Server-Timing header");
        let ms: f64 = timing
            .split(';')
            .next()
            .and_then(|v| v.trim().parse().ok())
            .expect("a duration");
        (took, ms, timing.contains("reused"), r.body.len())
    };
    let mut fresh = Vec::new();
    let mut reused = Vec::new();
    let mut bytes = 0;
    let record_key = format!("{ns}/services/by-uuid/{:032x}", 1);
    for round in 0..7 {
        let mut s = os_lively::Service::new("type-1", "host-1").with_region("region-1");
        s.uuid = format!("{:032x}", 1);
        s.maintenance_note = format!("round {round}");
        raw.put(&record_key, &s.to_bytes());
        // The first scrape that sees the change encodes everything.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (took, ms, was_reused, len) = scrape();
            bytes = len;
            if was_reused {
                reused.push((took, ms));
            } else {
                fresh.push((took, ms));
                break;
            }
            assert!(Instant::now() < deadline, "no fresh scrape after a change");
        }
        let (took, ms, was_reused, _) = scrape();
        if was_reused {
            reused.push((took, ms));
        }
    }
    let report = |what: &str, v: &mut Vec<(Duration, f64)>| {
        if v.is_empty() {
            return;
        }
        v.sort_by(|a, b| a.1.total_cmp(&b.1));
        let mut ends: Vec<Duration> = v.iter().map(|x| x.0).collect();
        ends.sort();
        eprintln!(
            "{what} scrape at {n} services ({} samples): building the text {:.0} ms median \
             ({:.0}..{:.0}); whole request {:?} median ({:?}..{:?})",
            v.len(),
            v[v.len() / 2].1,
            v[0].1,
            v[v.len() - 1].1,
            ends[ends.len() / 2],
            ends[0],
            ends[ends.len() - 1],
        );
    };
    report("fresh", &mut fresh);
    report("reused", &mut reused);
    eprintln!("{bytes} bytes ({} B/service)", bytes / n);
}
