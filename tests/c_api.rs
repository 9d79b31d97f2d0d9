//! The C ABI end to end: the committed header is current, the shared
//! library exports only `lively_*`, and the C, C++ and Python examples
//! (built with the Makefile against this build's `libos_lively.so`) work
//! against a real etcd — also under valgrind.

mod common;

use std::path::{Path, PathBuf};

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Regenerates the header with the cbindgen library and compares it with
/// `include/os_lively.h`; `UPDATE_HEADER=1` rewrites the committed file.
#[test]
fn header_is_current() {
    let dir = manifest_dir();
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("src/capi/mod.rs"))
        .generate()
        .expect("cbindgen failed");
    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("os_lively.h");
    bindings.write_to_file(&fresh);
    // The functions with two symbol versions are exported by Rust as
    // `<name>__abi1`; C calls them by `<name>` (src/capi/abi.rs).
    let fresh = std::fs::read_to_string(&fresh)
        .unwrap()
        .replace("__abi1(", "(");
    let committed_path = dir.join("include/os_lively.h");
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if std::env::var_os("UPDATE_HEADER").is_some() {
        std::fs::create_dir_all(committed_path.parent().unwrap()).unwrap();
        std::fs::write(&committed_path, &fresh).unwrap();
        return;
    }
    assert!(
        fresh == committed,
        "include/os_lively.h is stale: run `UPDATE_HEADER=1 cargo test --test c_api header_is_current` \
         (or `make -C examples-c header`) and commit the result"
    );
}

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use common::*;

/// Builds the examples and the C tests once, with `-Wall -Wextra -Werror`,
/// through the examples' Makefile, into `target/<profile>/c-api/`.
fn build() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let lib = lib_dir();
        let out = lib.parent().expect("target dir").join("c-api");
        let status = Command::new("make")
            .arg("-s")
            .arg("-C")
            .arg(manifest_dir().join("examples-c"))
            .arg(format!("LIB_DIR={}", lib.display()))
            .arg(format!("OUT={}", out.display()))
            .arg("tests")
            .status()
            .expect("run make");
        assert!(status.success(), "building the C examples and tests failed");
        out
    })
}

/// A command for a built program, pointed at `etcd` and namespace `ns`.
fn program(name: &str, etcd: &Etcd, ns: &str, ttl: u64) -> Command {
    let mut cmd = Command::new(build().join(name));
    lively_env(&mut cmd, etcd, ns, ttl);
    cmd
}

fn lively_env(cmd: &mut Command, etcd: &Etcd, ns: &str, ttl: u64) {
    cmd.env("OSLIVELY_ETCD_ENDPOINTS", etcd.endpoints().join(","))
        .env("OSLIVELY_ETCD_KEY_NAMESPACE", ns)
        .env("OSLIVELY_STATUS_TTL", ttl.to_string())
        .env_remove("OSLIVELY_ETCD_HOST")
        .env_remove("OSLIVELY_ETCD_PORT");
}

fn show(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Lines a child prints, read on a thread so waits can time out.
fn lines(child: &mut Child) -> Receiver<String> {
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
    rx
}

/// Waits for a line for which `want` is true; panics (with what was seen)
/// after `timeout`.
fn expect_line(
    rx: &Receiver<String>,
    timeout: Duration,
    what: &str,
    want: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if want(&line) => return line,
            Ok(line) => seen.push(line),
            Err(_) => panic!("no line {what} within {timeout:?}; saw {seen:#?}"),
        }
    }
}

/// Sends SIGTERM and waits for a clean exit.
fn terminate(child: &mut Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait");
    assert!(status.success(), "exited with {status:?}");
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn shared_library_exports_only_lively_symbols_and_has_soname() {
    let so = lib_dir().join("libos_lively.so");
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&so)
        .output()
        .expect("run nm");
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    // Versioned names print as `name@@LIVELY_0.1` / `name@LIVELY_0`.
    let symbols: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(|s| s.split('@').next().unwrap_or(s))
        .collect();
    assert!(symbols.len() > 30, "too few exports: {symbols:?}");
    let foreign: Vec<&&str> = symbols
        .iter()
        .filter(|s| !s.starts_with("lively_"))
        .collect();
    assert!(foreign.is_empty(), "exports outside lively_*: {foreign:?}");
    for f in [
        "lively_client_connect",
        "lively_client_subscribe",
        "lively_version",
    ] {
        assert!(symbols.contains(&f), "{f} not exported");
    }
    let out = Command::new("readelf")
        .arg("-d")
        .arg(&so)
        .output()
        .expect("run readelf");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Library soname: [libos_lively.so.0]"),
        "no soname: {text}"
    );
}

/// The functions whose structs gained `struct_size`: each has the old
/// layout's shim as `LIVELY_0` and today's function as the default
/// `LIVELY_0.1` (src/capi/abi_v0.rs, src/capi/os_lively.map).
const VERSIONED: [&str; 6] = [
    "lively_client_update",
    "lively_client_list",
    "lively_client_stats",
    "lively_client_subscribe",
    "lively_client_subscribe_pull",
    "lively_view_list",
];

#[test]
fn sized_struct_functions_have_old_and_new_symbol_versions() {
    let out = Command::new("objdump")
        .arg("-T")
        .arg(lib_dir().join("libos_lively.so"))
        .output()
        .expect("run objdump");
    assert!(out.status.success(), "{}", show(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let has = |version: &str, name: &str| {
        text.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.last() == Some(&name) && f.len() >= 2 && f[f.len() - 2] == version
        })
    };
    for name in VERSIONED {
        assert!(
            has("LIVELY_0.1", name),
            "{name}@@LIVELY_0.1 missing:\n{text}"
        );
        assert!(has("(LIVELY_0)", name), "{name}@LIVELY_0 missing:\n{text}");
    }
}

/// A program built against the ABI before `struct_size` (tests/c/old_abi.c:
/// a copy of that header's structs) works against today's library. It is
/// linked as it was then: against a library with the same soname whose
/// symbols carry no version (a stub with every exported name), so its
/// references are unversioned and bind to the `LIVELY_0` shims at run time.
#[test]
fn a_program_built_against_the_old_layout_works() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(lib_dir().join("libos_lively.so"))
        .output()
        .expect("run nm");
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter_map(|s| s.split('@').next())
        .filter(|s| s.starts_with("lively_"))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    let stub: String = names
        .iter()
        .map(|n| format!("void {n}(void) {{}}\n"))
        .collect();
    std::fs::write(dir.path().join("stub.c"), stub).unwrap();
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("run the compiler");
        assert!(out.status.success(), "{cmd:?}: {}", show(&out));
    };
    run(Command::new("cc")
        .args(["-shared", "-fPIC", "-Wl,-soname,libos_lively.so.0", "-o"])
        .arg(dir.path().join("libos_lively.so"))
        .arg(dir.path().join("stub.c")));
    let exe = dir.path().join("old_abi");
    run(Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(manifest_dir().join("tests/c/old_abi.c"))
        .arg(format!("-L{}", dir.path().display()))
        .arg("-los_lively"));
    let dump = Command::new("objdump")
        .arg("-T")
        .arg(&exe)
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.lines()
            .any(|l| l.ends_with(" lively_client_update") && !l.contains("LIVELY_0")),
        "the old program should reference lively_client_update unversioned:\n{dump}"
    );
    let etcd = Etcd::start();
    let mut cmd = Command::new(&exe);
    // Today's library under the soname the program asks for.
    cmd.env("LD_LIBRARY_PATH", build().join("lib"));
    lively_env(&mut cmd, &etcd, &namespace("old_abi"), SMOKE_TTL);
    let out = cmd.output().expect("run old_abi");
    assert!(out.status.success(), "{}", show(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("old-abi ok"));
}

/// TTL for the smoke programs, which never wait for an expiry: long enough
/// that keepalives stay on time under valgrind on a loaded machine.
const SMOKE_TTL: u64 = 15;

#[test]
fn c_smoke() {
    let etcd = Etcd::start();
    let out = program("smoke", &etcd, &namespace("c_smoke"), SMOKE_TTL)
        .output()
        .expect("run smoke");
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn c_bad_input() {
    let etcd = Etcd::start();
    let out = program("bad-input", &etcd, &namespace("c_bad_input"), SMOKE_TTL)
        .output()
        .expect("run bad-input");
    assert!(out.status.success(), "{}", show(&out));
}

/// Both C test programs under valgrind: no invalid access, no leak.
#[test]
fn c_programs_under_valgrind() {
    if Command::new("valgrind").arg("--version").output().is_err() {
        // The test command (scripts/test.sh) sets this, and scripts/setup.sh
        // installs valgrind: there, a missing valgrind is a failure, not a
        // pass that checked nothing.
        assert!(
            std::env::var("OSLIVELY_REQUIRE_VALGRIND").as_deref() != Ok("1"),
            "valgrind is not installed (or not on PATH) and OSLIVELY_REQUIRE_VALGRIND=1: \
             install it (scripts/setup.sh does) or unset the variable to skip"
        );
        eprintln!("valgrind not installed; skipping (OSLIVELY_REQUIRE_VALGRIND=1 makes this fail)");
        return;
    }
    let etcd = Etcd::start();
    for (name, ns) in [("smoke", "vg_smoke"), ("bad-input", "vg_bad_input")] {
        let mut cmd = Command::new("valgrind");
        cmd.args([
            "--error-exitcode=1",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,possible",
            "--quiet",
        ])
        .arg(format!(
            "--suppressions={}",
            manifest_dir().join("tests/c/valgrind.supp").display()
        ))
        .arg(build().join(name));
        lively_env(&mut cmd, &etcd, &namespace(ns), SMOKE_TTL);
        // Connecting under valgrind on a loaded machine (the whole c_api
        // target at once, on 2 shared cores) can take longer than the
        // default 5 s; what is checked here is memory, not speed.
        cmd.env("OSLIVELY_ETCD_CONNECT_TIMEOUT", "60");
        let out = cmd.output().expect("run valgrind");
        assert!(
            out.status.success(),
            "{name} under valgrind: {}",
            show(&out)
        );
    }
}

/// The README story in C: a C daemon registers; Python (ctypes) and the C
/// is-up command see it UP; C and C++ watchers see it go DOWN (expired)
/// when the daemon is SIGKILLed.
#[test]
fn daemon_python_and_watchers() {
    let etcd = Etcd::start();
    let ns = namespace("c_daemon");
    let ttl = 2;

    let mut daemon = KillOnDrop(
        program("lively-daemon", &etcd, &ns, ttl)
            .args(["c-daemon", "host-1"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn daemon"),
    );
    let daemon_out = lines(&mut daemon.0);
    let line = expect_line(&daemon_out, Duration::from_secs(10), "uuid", |l| {
        l.starts_with("uuid ")
    });
    let uuid = line.trim_start_matches("uuid ").to_string();
    assert_eq!(uuid.len(), 32);

    // Python through ctypes.
    let python = |args: &[&str]| {
        let mut cmd = Command::new("python3");
        cmd.arg(manifest_dir().join("examples-c/query.py"))
            .arg("--lib")
            .arg(lib_dir().join("libos_lively.so"))
            .args(args);
        lively_env(&mut cmd, &etcd, &ns, ttl);
        cmd.output().expect("run python3")
    };
    let out = python(&["is-up", &uuid]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "up");
    let out = python(&["list"]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{uuid} c-daemon host-1 up")
    );
    let out = python(&["version"]);
    let v = env!("CARGO_PKG_VERSION");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{v} {v}")
    );

    // The C is-up command.
    let out = program("lively-is-up", &etcd, &ns, ttl)
        .args(["c-daemon", "host-1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // Watchers in C++ and C.
    let mut watchers = Vec::new();
    for name in ["lively-watch-cxx", "lively-watch"] {
        let mut child = KillOnDrop(
            program(name, &etcd, &ns, ttl)
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn watcher"),
        );
        let rx = lines(&mut child.0);
        expect_line(&rx, Duration::from_secs(10), "EXISTING", |l| {
            l.starts_with(&format!("EXISTING {uuid} c-daemon host-1"))
        });
        watchers.push((name, child, rx));
    }

    let killed = Instant::now();
    let _ = daemon.0.kill();
    let _ = daemon.0.wait();
    for (name, _, rx) in &watchers {
        let line = expect_line(rx, Duration::from_secs(ttl + 8), "DOWN expired", |l| {
            l.starts_with(&format!("DOWN {uuid} "))
        });
        assert!(line.contains(" expired "), "{name}: {line}");
    }
    eprintln!(
        "DOWN seen {:?} after SIGKILL (TTL {ttl} s)",
        killed.elapsed()
    );

    let out = program("lively-is-up", &etcd, &ns, ttl)
        .arg(&uuid)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "down");
    let out = python(&["is-up", &uuid]);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));

    for (_, mut child, _) in watchers {
        terminate(&mut child.0);
    }
}

/// A daemon stopped by SIGTERM closes its client: DOWN at once, not after
/// the TTL.
#[test]
fn daemon_close_takes_service_down_at_once() {
    let etcd = Etcd::start();
    let ns = namespace("c_daemon_close");
    let mut daemon = KillOnDrop(
        program("lively-daemon", &etcd, &ns, 30)
            .args(["closer", "host-1"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn daemon"),
    );
    let rx = lines(&mut daemon.0);
    let uuid = expect_line(&rx, Duration::from_secs(10), "uuid", |l| {
        l.starts_with("uuid ")
    })
    .trim_start_matches("uuid ")
    .to_string();
    let client = connect(&etcd.endpoints(), &ns, 30);
    assert!(client.is_up(&uuid).unwrap());
    terminate(&mut daemon.0);
    assert!(
        !client.is_up(&uuid).unwrap(),
        "still UP after a clean close"
    );
}

/// tests/c/heartbeat.c running: its two uuids, and its stdin to drive it.
struct HeartbeatProgram {
    child: KillOnDrop,
    stdin: Option<std::process::ChildStdin>,
    rx: Receiver<String>,
    worker: String,
    plain: String,
}

impl HeartbeatProgram {
    fn start(etcd: &Etcd, ns: &str) -> HeartbeatProgram {
        let mut child = program("heartbeat", etcd, ns, 3)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run heartbeat");
        let stdin = child.stdin.take().expect("piped stdin");
        let rx = lines(&mut child);
        let child = KillOnDrop(child);
        let line = expect_line(&rx, Duration::from_secs(20), "uuids", |l| {
            l.starts_with("uuids ")
        });
        let mut parts = line.split_whitespace().skip(1);
        let worker = parts.next().expect("worker uuid").to_string();
        let plain = parts.next().expect("plain uuid").to_string();
        HeartbeatProgram {
            child,
            stdin: Some(stdin),
            rx,
            worker,
            plain,
        }
    }

    /// Sends a line ("stop", "resume") and waits for its "ok".
    fn say(&mut self, what: &str) {
        use std::io::Write;
        let s = self.stdin.as_mut().expect("stdin open");
        writeln!(s, "{what}").expect("write");
        s.flush().expect("flush");
        expect_line(&self.rx, Duration::from_secs(5), "ok", |l| l == "ok");
    }

    /// EOF: the program checks its stats, closes, and must exit 0.
    fn finish(mut self) {
        self.stdin.take();
        let status = self.child.0.wait().expect("wait");
        assert!(status.success(), "heartbeat.c exited with {status:?}");
    }
}

/// The heartbeat deadline from C (tests/c/heartbeat.c): one client, a
/// service with `heartbeat_ms = 2000` and one without; the C main loop
/// stops checking in and the first goes DOWN (missed) for another client,
/// a view and a subscriber within D + 0.3 s while the second stays UP; it
/// resumes and the first is UP again, one `up` event.
#[test]
fn c_heartbeat_deadline() {
    let etcd = Etcd::start();
    let ns = namespace("c_heartbeat");
    let p = std::cell::RefCell::new(HeartbeatProgram::start(&etcd, &ns));
    let (worker, plain) = {
        let p = p.borrow();
        (p.worker.clone(), p.plain.clone())
    };
    missed_then_back(
        &etcd,
        &ns,
        &worker,
        Some(&plain),
        Duration::from_secs(2),
        || p.borrow_mut().say("stop"),
        || p.borrow_mut().say("resume"),
    );
    p.into_inner().finish();
}

/// The two scenarios of "one owner per service" from C (tests/c/heartbeat.c
/// registers without a saved uuid): a daemon killed with SIGKILL and
/// started again the same way gets the same uuid back, UP at once and
/// still UP after the dead process's TTL; then its main loop stalls
/// (DOWN, missed), an operator holds it DOWN with a window, check-ins
/// resume, and the window's end brings it UP again.
#[test]
fn c_restart_without_uuid_and_heartbeat_through_maintenance() {
    let etcd = Etcd::start();
    let ns = namespace("c_owner");
    let operator = connect(&etcd.endpoints(), &ns, 3);
    let mut first = HeartbeatProgram::start(&etcd, &ns);
    let worker = first.worker.clone();
    assert!(operator.is_up(&worker).unwrap());
    let _ = first.child.0.kill();
    let _ = first.child.0.wait();
    let mut second = HeartbeatProgram::start(&etcd, &ns);
    assert_eq!(second.worker, worker, "the same type+host, the same uuid");
    assert!(operator.is_up(&worker).unwrap(), "UP at once");
    std::thread::sleep(Duration::from_millis(4000));
    assert!(
        operator.is_up(&worker).unwrap(),
        "still UP after the dead one's TTL"
    );

    second.say("stop");
    assert!(
        wait_until(Duration::from_secs(5), || !operator.is_up(&worker).unwrap()),
        "missed"
    );
    let end = now_secs() + 3;
    operator.down(&worker, "fix", 0, end).unwrap();
    second.say("resume");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!operator.is_up(&worker).unwrap(), "held by the operator");
    assert!(
        wait_until(Duration::from_secs(8), || operator.is_up(&worker).unwrap()),
        "UP again at the window's end"
    );
    second.finish();
}

/// Builds a C++ program against `include/os_lively.hpp` with `cxx`, warnings
/// as errors, under AddressSanitizer and UndefinedBehaviorSanitizer.
fn build_cxx_sanitized(cxx: &str, source: &Path, out: &Path) -> std::process::Child {
    let lib = build().join("lib");
    Command::new(cxx)
        .args([
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-Wpedantic",
            "-g",
            "-O1",
        ])
        .args(["-fsanitize=address,undefined", "-fno-sanitize-recover=all"])
        .arg("-fno-omit-frame-pointer")
        .arg("-I")
        .arg(manifest_dir().join("include"))
        .arg("-o")
        .arg(out)
        .arg(source)
        .arg(format!("-L{}", lib.display()))
        .arg("-los_lively")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-lpthread")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {cxx}: {e}"))
}

/// The C++ header with g++ and clang++: tests/c/cpp_api.cpp (a callback
/// that throws is caught, reported, and the daemon lives on; NUL-holding
/// strings are refused and reach etcd in no form; a callback cancels its
/// own subscription on its first event) and the rewritten
/// examples-c/watch.cpp, each under ASan and UBSan (LeakSanitizer
/// included: nothing leaks).
#[test]
fn cpp_header_with_gcc_and_clang_under_sanitizers() {
    let dir = tempfile::tempdir().unwrap();
    let mut builds = Vec::new();
    for cxx in ["g++", "clang++"] {
        for (src, name) in [
            ("tests/c/cpp_api.cpp", "cpp-api"),
            ("examples-c/watch.cpp", "watch-cxx"),
        ] {
            let exe = dir.path().join(format!("{name}-{cxx}"));
            let child = build_cxx_sanitized(cxx, &manifest_dir().join(src), &exe);
            builds.push((format!("{cxx} {src}"), child, exe));
        }
    }
    let mut exes = Vec::new();
    for (what, child, exe) in builds {
        let out = child.wait_with_output().expect("wait for the compiler");
        assert!(out.status.success(), "{what}: {}", show(&out));
        exes.push(exe);
    }
    let etcd = Etcd::start();
    let raw = Raw::connect(&etcd.endpoints());
    for cxx in ["g++", "clang++"] {
        // The API test, with the throwing callbacks.
        let mut cmd = Command::new(dir.path().join(format!("cpp-api-{cxx}")));
        let ns = namespace(&format!("cpp_{cxx}"));
        lively_env(&mut cmd, &etcd, &ns, SMOKE_TTL);
        let out = cmd.output().expect("run cpp-api");
        assert!(out.status.success(), "cpp-api ({cxx}): {}", show(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("cpp-api ok"));
        // Every name it passed with a NUL in it contains "nul": had one
        // been cut at the NUL and sent, etcd would hold "cpp-nul",
        // "host-nul", "r-nul" in a key or the note "nul" in a record.
        let kvs = raw.get_prefix(&format!("{ns}/"));
        assert!(
            kvs.iter()
                .any(|kv| kv.key.contains("/by-type-host/cpp-test/host-1")),
            "cpp-api registered nothing? {:?}",
            kvs.iter().map(|kv| &kv.key).collect::<Vec<_>>()
        );
        for kv in &kvs {
            assert!(
                !kv.key.contains("nul") && !kv.value.windows(3).any(|w| w == b"nul"),
                "a NUL-holding argument reached etcd cut short ({cxx}): {} = {:?}",
                kv.key,
                String::from_utf8_lossy(&kv.value)
            );
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(
                "os_lively.hpp: a lively::Client::subscribe callback threw a non-std::exception"
            ),
            "the default report of a throwing callback is missing ({cxx}): {stderr}"
        );

        // The example: sees a C daemon register, then stops cleanly.
        let ns = namespace(&format!("cpp_watch_{cxx}"));
        let mut watch = Command::new(dir.path().join(format!("watch-cxx-{cxx}")));
        lively_env(&mut watch, &etcd, &ns, SMOKE_TTL);
        let mut watch = KillOnDrop(
            watch
                .arg("cxx-watched")
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn watch"),
        );
        let seen = lines(&mut watch.0);
        let _daemon = KillOnDrop(
            program("lively-daemon", &etcd, &ns, SMOKE_TTL)
                .args(["cxx-watched", "host-1"])
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn daemon"),
        );
        expect_line(&seen, Duration::from_secs(20), "REGISTERED", |l| {
            (l.starts_with("REGISTERED ") || l.starts_with("EXISTING "))
                && l.contains(" cxx-watched host-1 ")
        });
        terminate(&mut watch.0);
    }
}

/// Discarding what a call returns is a bug the compiler must catch: a
/// `Subscription` dropped at once (`client.subscribe({}, cb);`) cancels
/// at once and delivers nothing; a discarded query answers nobody. Each
/// such line fails to compile under `-Werror` with g++ and clang++, and
/// the same program keeping every result compiles (so the failures are
/// the discards, not the program). About 4 s.
#[test]
fn cpp_discarded_results_do_not_compile() {
    let discarded = [
        "client.subscribe({}, [](const lively::Event&) {});",
        "client.subscribe({}, [](const lively::Event&, lively::CurrentSubscription&) {}, true);",
        "client.is_up(\"0123456789abcdef0123456789abcdef\");",
        "client.is_up(\"type\", \"host\");",
        "client.get(\"0123456789abcdef0123456789abcdef\");",
        "client.list();",
        "view.is_up(\"0123456789abcdef0123456789abcdef\");",
        "view.list();",
        "lively::Config::from_env();",
    ];
    let program = |keep: bool| {
        let mut src = String::from(
            "#include \"os_lively.hpp\"\nvoid f(const lively::Client& client, const lively::View& view) {\n",
        );
        for (i, line) in discarded.iter().enumerate() {
            if keep {
                src.push_str(&format!("  auto kept{i} = {line}\n  (void)kept{i};\n"));
            } else {
                src.push_str(&format!("  {line}\n"));
            }
        }
        src.push_str("  (void)client;\n  (void)view;\n}\n");
        src
    };
    let dir = tempfile::tempdir().unwrap();
    let (bad, good) = (dir.path().join("discard.cpp"), dir.path().join("keep.cpp"));
    std::fs::write(&bad, program(false)).unwrap();
    std::fs::write(&good, program(true)).unwrap();
    let compile = |cxx: &str, src: &Path| {
        Command::new(cxx)
            .args([
                "-std=c++17",
                "-fsyntax-only",
                "-Wall",
                "-Wextra",
                "-Werror",
                "-Wpedantic",
            ])
            .arg("-I")
            .arg(manifest_dir().join("include"))
            .arg(src)
            .output()
            .unwrap_or_else(|e| panic!("running {cxx}: {e}"))
    };
    for cxx in ["g++", "clang++"] {
        let out = compile(cxx, &good);
        assert!(out.status.success(), "{cxx}, results kept: {}", show(&out));
        let out = compile(cxx, &bad);
        assert!(!out.status.success(), "{cxx} accepted discarded results");
        let stderr = String::from_utf8_lossy(&out.stderr);
        // One diagnostic per discarding line (the function body starts on
        // line 3).
        for (i, line) in discarded.iter().enumerate() {
            let at = format!("discard.cpp:{}:", i + 3);
            assert!(
                stderr
                    .lines()
                    .any(|l| l.contains(&at) && l.contains("error")),
                "{cxx}: no error for discarding `{line}` ({at}):\n{stderr}"
            );
        }
    }
}

/// What the C and C++ headers and the CMake package say about the library
/// matches the library: the default endpoint (src/config.rs) and where
/// cargo-c installs the CMake package (Cargo.toml's install.data, under
/// `<prefix>/share/`).
#[test]
fn header_and_cmake_comments_state_the_real_defaults() {
    let dir = manifest_dir();
    let endpoint = os_lively::Config::default().get_endpoints()[0].clone();
    for header in ["include/os_lively.h", "include/os_lively.hpp"] {
        let text = std::fs::read_to_string(dir.join(header)).unwrap();
        assert!(
            text.contains(endpoint.as_str()),
            "{header} does not name the default endpoint {endpoint}"
        );
        assert!(
            !text.contains("127.0.0.1:2379"),
            "{header} names 127.0.0.1:2379; the default is {endpoint}"
        );
    }
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(r#"{ from = "cmake/os_lively-config.cmake", to = "cmake/os_lively" }"#),
        "Cargo.toml no longer installs the CMake package to <prefix>/share/cmake/os_lively"
    );
    let cmake = std::fs::read_to_string(dir.join("cmake/os_lively-config.cmake")).unwrap();
    let comment: String = cmake
        .lines()
        .take_while(|l| l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        comment.contains("<prefix>/share/cmake/os_lively/"),
        "the CMake config's comment does not name its install folder:\n{comment}"
    );
    assert!(
        !comment.contains("share/os_lively/cmake") && !comment.contains("lib/cmake/os_lively"),
        "the CMake config's comment names a wrong install folder:\n{comment}"
    );
}
