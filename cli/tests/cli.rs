//! The `oslively` binary against a real etcd: every command, both output
//! formats (JSON parsed field by field), exit codes, bad flags and values,
//! `watch -o json` lines as events happen, and sticky maintenance.

#[path = "../../tests/common/mod.rs"]
mod common;
mod harness;

use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use harness::*;
use os_lively::{Filter, Service, Status};
use serde_json::Value;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `oslively` aimed at `etcd` and `ns` through the environment.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.stdout))
    }
}

fn run(etcd: &Etcd, ns: &str, args: &[&str]) -> Out {
    let out = oslively(etcd, ns)
        .args(args)
        .output()
        .expect("run oslively");
    Out {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn keys(raw: &Raw, ns: &str) -> Vec<String> {
    raw.keys(&format!("{ns}/"))
}

#[test]
fn help_version_and_usage_errors_exit_2_and_write_nothing() {
    let etcd = Etcd::start();
    let ns = namespace("cliusage");
    let raw = etcd.raw();
    let out = run(&etcd, &ns, &["--help"]);
    assert_eq!(out.code, 0);
    for cmd in [
        "register",
        "is-up",
        "get",
        "list",
        "watch",
        "down",
        "up",
        "delete",
        "completions",
    ] {
        assert!(out.stdout.contains(cmd), "--help lacks {cmd}");
        let sub = run(&etcd, &ns, &[cmd, "--help"]);
        assert_eq!(sub.code, 0, "{cmd} --help");
        assert!(
            sub.stdout.contains("Example"),
            "{cmd} --help has no example"
        );
    }
    for flag in [
        "--endpoints",
        "--user",
        "--cacert",
        "--dial-timeout",
        "--ttl",
    ] {
        assert!(out.stdout.contains(flag), "--help lacks {flag}");
    }
    let v = run(&etcd, &ns, &["--version"]);
    assert_eq!((v.code, v.stdout.trim()), (0, "oslively 0.1.0"));

    let uuid = "3b059e33bbc44bc8b0d37df6e8d70223";
    let cases: &[(&[&str], &str)] = &[
        (&["list", "--tpye", "x"], "--type"),
        (&["lst"], "list"),
        (&["is-up"], "<UUID>"),
        (&["is-up", "--type", "t"], "--host"),
        (&["get", "not-a-uuid"], "32 hex digits"),
        (&["list", "--status", "SIDEWAYS"], "UP or DOWN"),
        (&["down", uuid, "--end", "yesterday"], "+DURATION"),
        (&["down", uuid, "--end", "1"], "has passed"),
        (
            &["down", uuid, "--start", "+2h", "--end", "+1h"],
            "after --end",
        ),
        (&["register", "--type", "a/b", "--host", "h"], "type"),
        (
            &["register", "--type", "t", "--host", "h", "--uuid", "xyz"],
            "uuid",
        ),
        (&["list", "--dial-timeout", "0s"], "greater than 0"),
        (&["list", "--ttl", "forever"], "--ttl"),
        (&["list", "--namespace", "a\tb"], "--namespace"),
        (&["list", "-o", "yaml"], "table"),
        (&["completions", "cmd.exe"], "bash"),
    ];
    for (args, says) in cases {
        let out = run(&etcd, &ns, args);
        assert_eq!(out.code, 2, "{args:?} -> {out:?}", out = out.stderr);
        assert!(
            out.stderr.contains(says),
            "{args:?}: message does not mention {says:?}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty(), "{args:?} printed {:?}", out.stdout);
    }
    assert!(
        keys(&raw, &ns).is_empty(),
        "a refused command wrote something"
    );

    // Unreachable etcd: exit 3, naming the endpoint.
    let out = run(
        &etcd,
        &ns,
        &[
            "list",
            "--endpoints",
            "http://127.0.0.1:1",
            "--dial-timeout",
            "1s",
        ],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("127.0.0.1:1"), "{}", out.stderr);
}

#[test]
fn every_command_in_table_and_json() {
    let etcd = Etcd::start();
    let ns = namespace("clicmds");
    let mut daemon = Daemon::start(
        &etcd,
        &ns,
        &["--type", "nova", "--host", "h1", "--region", "east"],
    );
    let uuid = daemon.uuid.clone();
    let lib = connect(&etcd.endpoints(), &ns, TTL);
    let mut parked = Service::new("glance", "h2");
    parked.status = Status::Down;
    let other = lib.update(&parked).unwrap();

    // is-up: by uuid and by type/host, both formats.
    let out = run(&etcd, &ns, &["is-up", &uuid, "-o", "table"]);
    assert_eq!((out.code, out.stdout.trim()), (0, "UP"));
    let out = run(
        &etcd,
        &ns,
        &["is-up", "--type", "nova", "--host", "h1", "-o", "json"],
    );
    assert_eq!(out.code, 0);
    assert_eq!(out.json(), serde_json::json!({ "up": true }));
    let out = run(&etcd, &ns, &["is-up", &other, "-o", "json"]);
    assert_eq!((out.code, out.json()["up"].as_bool()), (1, Some(false)));

    // get: every documented field.
    let out = run(&etcd, &ns, &["get", &uuid, "-o", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v = out.json();
    assert_eq!(v["uuid"], uuid.as_str());
    assert_eq!(v["type"], "nova");
    assert_eq!(v["host"], "h1");
    assert_eq!(v["region"], "east");
    assert_eq!(v["status"], "UP");
    assert_eq!(v["record_status"], "UP");
    assert_eq!(v["forced_down"], false);
    assert_eq!(v["maintenance_start"], 0);
    assert_eq!(v["maintenance_end"], 0);
    assert_eq!(v["maintenance_note"], "");
    assert_eq!(v["heartbeat_ms"], 0);
    assert_eq!(v["heartbeat_missed"], false);
    assert_eq!(v["why"], Value::Null);
    assert_eq!(v.as_object().unwrap().len(), 13, "undocumented fields: {v}");
    let out = run(
        &etcd,
        &ns,
        &["get", "--type", "glance", "--host", "h2", "-o", "json"],
    );
    let v = out.json();
    assert_eq!(
        (v["uuid"].as_str(), v["status"].as_str()),
        (Some(other.as_str()), Some("DOWN"))
    );
    assert_eq!(v["record_status"], "DOWN");

    // Table: a header, columns aligned.
    let out = run(&etcd, &ns, &["get", &uuid, "-o", "table"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    for col in [
        "UUID",
        "STATUS",
        "TYPE",
        "HOST",
        "REGION",
        "MAINTENANCE",
        "NOTE",
    ] {
        assert!(lines[0].contains(col), "header lacks {col}: {}", lines[0]);
    }
    assert!(lines[1].starts_with(&uuid) && lines[1].contains("UP"));

    // list: everything, then every filter.
    let out = run(&etcd, &ns, &["list", "-o", "json"]);
    let all = out.json();
    let all = all.as_array().expect("a JSON array");
    assert_eq!(all.len(), 2);
    let uuids = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["list", "-o", "json"];
        a.extend_from_slice(args);
        let out = run(&etcd, &ns, &a);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        out.json()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["uuid"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(uuids(&["--status", "UP"]), vec![uuid.clone()]);
    assert_eq!(uuids(&["--status", "down"]), vec![other.clone()]);
    assert_eq!(uuids(&["--region", "east"]), vec![uuid.clone()]);
    assert_eq!(uuids(&["--type", "glance"]), vec![other.clone()]);
    assert_eq!(uuids(&["--host", "h1"]), vec![uuid.clone()]);
    assert_eq!(
        uuids(&["--type", "nova", "--host", "h1"]),
        vec![uuid.clone()]
    );
    assert_eq!(uuids(&["--uuid", &other]), vec![other.clone()]);
    assert!(uuids(&["--region", "west"]).is_empty());
    let out = run(&etcd, &ns, &["list", "-o", "table"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    let at = lines[0].find("STATUS").unwrap();
    for row in &lines[1..] {
        assert!(
            row[at..].starts_with("UP") || row[at..].starts_with("DOWN"),
            "STATUS column misaligned:\n{}",
            out.stdout
        );
    }

    // down --note: sticky through the daemon's check-ins; start defaults to now.
    let before = now();
    let out = run(
        &etcd,
        &ns,
        &[
            "down",
            &uuid,
            "--note",
            "disk swap",
            "--end",
            "+1h",
            "-o",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.json(),
        serde_json::json!({ "uuid": uuid, "action": "down" })
    );
    for _ in 0..3 {
        daemon.update();
        assert_eq!(run(&etcd, &ns, &["is-up", &uuid]).code, 1);
    }
    let v = run(&etcd, &ns, &["get", &uuid, "-o", "json"]).json();
    assert_eq!(v["status"], "DOWN");
    assert_eq!(v["record_status"], "DOWN");
    assert_eq!(v["forced_down"], true);
    assert_eq!(v["maintenance_note"], "disk swap");
    let start = v["maintenance_start"].as_u64().unwrap();
    let end = v["maintenance_end"].as_u64().unwrap();
    assert!(
        start >= before && start <= now(),
        "start {start} is not now"
    );
    assert!(
        (3590..=3610).contains(&(end - start)),
        "end {end} is not +1h"
    );
    let out = run(&etcd, &ns, &["list", "--status", "DOWN", "-o", "table"]);
    assert!(out.stdout.contains("DOWN (forced)") && out.stdout.contains("disk swap"));

    // up lifts it, at once.
    let out = run(&etcd, &ns, &["up", &uuid, "-o", "table"]);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, format!("{uuid} up").as_str())
    );
    assert_eq!(run(&etcd, &ns, &["is-up", &uuid]).code, 0);
    let v = run(&etcd, &ns, &["get", &uuid, "-o", "json"]).json();
    assert_eq!(
        (v["forced_down"].as_bool(), v["maintenance_note"].as_str()),
        (Some(false), Some(""))
    );

    // delete; then everything about it is "not found" (exit 1).
    let out = run(&etcd, &ns, &["delete", &other, "-o", "json"]);
    assert_eq!(out.code, 0);
    assert_eq!(out.json()["action"], "delete");
    for args in [
        vec!["delete", other.as_str()],
        vec!["get", other.as_str()],
        vec!["is-up", other.as_str()],
        vec!["up", other.as_str()],
        vec!["down", other.as_str()],
    ] {
        let out = run(&etcd, &ns, &args);
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
    }
    let out = run(&etcd, &ns, &["get", "--type", "x", "--host", "y"]);
    assert_eq!(out.code, 1);

    // Completions for every shell clap_complete knows.
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = run(&etcd, &ns, &["completions", shell]);
        assert_eq!(out.code, 0);
        assert!(out.stdout.contains("oslively"), "{shell}");
    }
}

#[test]
fn watch_json_lines_arrive_as_events_happen() {
    let etcd = Etcd::start();
    let ns = namespace("cliwatchjson");
    let lib = connect(&etcd.endpoints(), &ns, TTL);
    let before = lib
        .update(&Service::new("t", "before").with_region("r"))
        .unwrap();
    let mut child = oslively(&etcd, &ns)
        .args(["watch", "--snapshot", "-o", "json", "--type", "t"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = line_reader(child.stdout.take().unwrap());
    let next = || -> Value {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("an event line within 10 s");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    let e = next();
    assert_eq!(e["event"], "existing");
    assert_eq!(e["uuid"], before.as_str());
    assert_eq!(e["reason"], Value::Null);
    assert_eq!(e["new_status"], "UP");
    assert_eq!(e["region"], "r");
    assert_eq!(e["service"]["record_status"], "UP");
    let mut last_rev = e["revision"].as_i64().unwrap();

    // Each change shows up while the watcher runs, not at its end.
    let mut step =
        |what: &dyn Fn() -> String, event: &str, reason: Value, old: Value, new: Value| {
            let started = Instant::now();
            let uuid = what();
            let e = next();
            assert_eq!(e["event"], event, "{e}");
            assert_eq!(e["reason"], reason, "{e}");
            assert_eq!(e["uuid"], uuid.as_str());
            assert_eq!((&e["old_status"], &e["new_status"]), (&old, &new), "{e}");
            assert_eq!(e["type"], "t");
            let rev = e["revision"].as_i64().unwrap();
            assert!(rev > last_rev, "revisions go up");
            last_rev = rev;
            assert!(started.elapsed() < Duration::from_secs(10));
            e
        };
    let after = lib.update(&Service::new("t", "after")).unwrap();
    let a = after.clone();
    let e = step(
        &|| a.clone(),
        "registered",
        Value::Null,
        Value::Null,
        "UP".into(),
    );
    assert_eq!(e["host"], "after");
    let e = step(
        &|| {
            lib.down(&after, "maint", 0, 0).unwrap();
            after.clone()
        },
        "down",
        "forced".into(),
        "UP".into(),
        "DOWN".into(),
    );
    assert_eq!(e["service"]["forced_down"], true);
    assert_eq!(e["service"]["maintenance_note"], "maint");
    step(
        &|| {
            lib.up(&after).unwrap();
            after.clone()
        },
        "up",
        "lifted".into(),
        "DOWN".into(),
        "UP".into(),
    );
    step(
        &|| {
            lib.delete(&after).unwrap();
            after.clone()
        },
        "down",
        "deleted".into(),
        "UP".into(),
        "DOWN".into(),
    );
    let e = next();
    assert_eq!(
        (e["event"].as_str(), e["new_status"].clone()),
        (Some("removed"), Value::Null)
    );
    // Other types are filtered out.
    lib.update(&Service::new("other", "h")).unwrap();
    assert!(lines.recv_timeout(Duration::from_millis(700)).is_err());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_maintenance_end_set_from_the_cli_lifts_it_on_time() {
    let etcd = Etcd::start();
    let ns = namespace("cliwindow");
    let mut daemon = Daemon::start(&etcd, &ns, &["--type", "nova", "--host", "h1"]);
    let uuid = daemon.uuid.clone();
    let out = run(
        &etcd,
        &ns,
        &["down", &uuid, "--note", "reboot", "--end", "+4s"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let end = run(&etcd, &ns, &["get", &uuid, "-o", "json"]).json()["maintenance_end"]
        .as_u64()
        .unwrap();
    while now() + 1 < end {
        daemon.update();
        assert_eq!(run(&etcd, &ns, &["is-up", &uuid]).code, 1, "lifted early");
    }
    assert!(
        wait_until(Duration::from_secs(5), || run(
            &etcd,
            &ns,
            &["is-up", &uuid]
        )
        .code
            == 0),
        "the owner did not lift it at the end of its window"
    );
    assert!(now() >= end);
}

#[test]
fn reading_commands_grant_no_lease() {
    let etcd = Etcd::start();
    let ns = namespace("clilease");
    let raw = etcd.raw();
    let lib = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = lib.update(&Service::new("t", "h")).unwrap();
    let leases = raw.leases();
    assert_eq!(leases.len(), 1);
    for args in [
        vec!["is-up", uuid.as_str()],
        vec!["get", uuid.as_str()],
        vec!["list"],
        vec!["list", "--status", "UP"],
        vec!["down", uuid.as_str()],
        vec!["up", uuid.as_str()],
    ] {
        let out = run(&etcd, &ns, &args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
    let mut watch = oslively(&etcd, &ns)
        .args(["watch", "--snapshot", "-o", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = line_reader(watch.stdout.take().unwrap());
    assert!(lines.recv_timeout(Duration::from_secs(10)).is_ok());
    assert_eq!(raw.leases(), leases, "a reader granted a lease");
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(raw.leases(), leases);
    assert_eq!(
        lib.list(&Filter::all().status(Status::Up)).unwrap().len(),
        1
    );
}

/// `oslively man`: oslively(1) mentions every subcommand `--help` lists,
/// and `oslively man DIR` writes a page for each (what
/// scripts/install-cli.sh installs into share/man/man1).
#[test]
fn man_pages_cover_every_subcommand() {
    let bin = env!("CARGO_BIN_EXE_oslively");
    let help = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    // The "Commands:" section: "  name  about" lines up to a blank line.
    let subcommands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|name| name != "help")
        .collect();
    assert!(
        subcommands.len() >= 10,
        "subcommands from --help: {subcommands:?}\n{help}"
    );

    let page = std::process::Command::new(bin).arg("man").output().unwrap();
    assert!(page.status.success());
    let page = String::from_utf8_lossy(&page.stdout).replace("\\-", "-");
    assert!(page.contains(".TH oslively 1"), "{page}");
    for name in &subcommands {
        assert!(
            page.contains(&format!("oslively-{name}(1)")),
            "oslively(1) lacks {name}"
        );
    }
    assert!(
        !page.contains("oslively-man(1)"),
        "the hidden man subcommand is listed"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(bin)
        .arg("man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in &subcommands {
        let sub = std::fs::read_to_string(dir.path().join(format!("oslively-{name}.1")))
            .unwrap_or_else(|e| panic!("oslively-{name}.1: {e}"));
        assert!(sub.contains(&format!(".TH oslively-{name} 1")), "{sub}");
    }
    assert!(dir.path().join("oslively.1").is_file());
}
