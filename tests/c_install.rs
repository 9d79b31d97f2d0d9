//! Installing the C library the way C users do: `cargo cinstall` (cargo-c)
//! into a prefix, then a pkg-config project and a CMake project
//! (`find_package(os_lively CONFIG)`, shared and static targets) built
//! against that prefix and run against a real etcd.
//!
//! Needs `cargo-cinstall` (scripts/setup.sh installs cargo-c), `cmake`,
//! `pkg-config`, `cc` and `c++`. Without cargo-c the test prints SKIPPED,
//! unless OSLIVELY_REQUIRE_CARGO_C=1 (scripts/test.sh sets it).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

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

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

/// Where the library landed: `lib/` or cargo-c's multiarch `lib/<triple>/`.
fn libdir(prefix: &Path) -> PathBuf {
    let lib = prefix.join("lib");
    if lib.join("libos_lively.so").exists() {
        return lib;
    }
    std::fs::read_dir(&lib)
        .expect("read <prefix>/lib")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("libos_lively.so").exists())
        .unwrap_or_else(|| panic!("no libos_lively.so under {}", lib.display()))
}

#[test]
fn cargo_cinstall_then_pkg_config_and_cmake_consumers() {
    if !have("cargo-cinstall") {
        assert!(
            std::env::var_os("OSLIVELY_REQUIRE_CARGO_C").is_none(),
            "cargo-cinstall not installed (scripts/setup.sh installs cargo-c)"
        );
        eprintln!("SKIPPED: cargo-cinstall not installed (cargo install cargo-c)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("prefix");
    // Its own target directory: cargo-c builds with an explicit target
    // triple (its own directory layout), and the outer `cargo test` may
    // still hold its target directory's lock. The dev profile keeps the
    // build short; the installation logic is the same as with --release.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target"))
        .join("cinstall");
    run(Command::new(env!("CARGO"))
        .current_dir(manifest_dir())
        .args(["cinstall", "--profile", "dev", "--prefix"])
        .arg(&prefix)
        .arg("--target-dir")
        .arg(&target));

    // What cargo cinstall put there.
    let lib = libdir(&prefix);
    for header in ["os_lively.h", "os_lively.hpp"] {
        assert_eq!(
            std::fs::read(prefix.join("include").join(header)).unwrap(),
            std::fs::read(manifest_dir().join("include").join(header)).unwrap(),
            "installed {header} differs from include/{header}"
        );
    }
    let v = env!("CARGO_PKG_VERSION");
    assert!(lib.join(format!("libos_lively.so.{v}")).is_file());
    assert!(lib.join("libos_lively.a").is_file());
    let dynamic = run(Command::new("readelf")
        .arg("-d")
        .arg(lib.join("libos_lively.so")));
    assert!(
        String::from_utf8_lossy(&dynamic.stdout).contains("Library soname: [libos_lively.so.0]"),
        "{}",
        show(&dynamic)
    );
    let versions = run(Command::new("objdump")
        .arg("-T")
        .arg(lib.join("libos_lively.so")));
    assert!(
        String::from_utf8_lossy(&versions.stdout).contains("LIVELY_0.1  lively_client_update"),
        "the version script did not apply: {}",
        show(&versions)
    );
    let pc_dir = lib.join("pkgconfig");
    let pc = std::fs::read_to_string(pc_dir.join("os-lively.pc")).unwrap();
    assert!(pc.contains(&format!("Version: {v}")), "{pc}");
    assert!(
        prefix
            .join("share/cmake/os_lively/os_lively-config.cmake")
            .is_file()
    );

    let etcd = Etcd::start();
    let env = |cmd: &mut Command, ns: &str| {
        cmd.env("OSLIVELY_ETCD_ENDPOINTS", etcd.endpoints().join(","))
            .env("OSLIVELY_ETCD_KEY_NAMESPACE", namespace(ns))
            .env_remove("OSLIVELY_ETCD_HOST")
            .env_remove("OSLIVELY_ETCD_PORT");
    };
    let consumer = manifest_dir().join("tests/consumer");

    // pkg-config: cc $(pkg-config --cflags --libs os-lively).
    let flags = run(Command::new("pkg-config")
        .env("PKG_CONFIG_PATH", &pc_dir)
        .args(["--cflags", "--libs", "os-lively"]));
    let flags = String::from_utf8_lossy(&flags.stdout).to_string();
    let exe = tmp.path().join("pkg-consumer");
    run(Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(consumer.join("main.c"))
        .args(flags.split_whitespace())
        .arg(format!("-Wl,-rpath,{}", lib.display())));
    let mut cmd = Command::new(&exe);
    env(&mut cmd, "consumer_pkg");
    let out = run(&mut cmd);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("consumer ok {v}")));

    // CMake: find_package(os_lively CONFIG REQUIRED), shared and static.
    let build = tmp.path().join("cmake-build");
    run(Command::new("cmake")
        .arg("-S")
        .arg(&consumer)
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display())));
    run(Command::new("cmake").arg("--build").arg(&build));
    for (name, says) in [
        ("consumer", "consumer ok"),
        ("consumer-cxx", "consumer-cxx ok"),
        ("consumer-static", "consumer ok"),
    ] {
        let mut cmd = Command::new(build.join(name));
        env(&mut cmd, &format!("consumer_{}", name.replace('-', "_")));
        let out = run(&mut cmd);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(says),
            "{name}: {}",
            show(&out)
        );
    }
    // A version the installed package cannot satisfy is refused.
    let too_new = tmp.path().join("too-new");
    std::fs::create_dir_all(&too_new).unwrap();
    std::fs::write(
        too_new.join("CMakeLists.txt"),
        "cmake_minimum_required(VERSION 3.16)\nproject(t C)\nfind_package(os_lively 1.0 CONFIG REQUIRED)\n",
    )
    .unwrap();
    let out = Command::new("cmake")
        .arg("-S")
        .arg(&too_new)
        .arg("-B")
        .arg(too_new.join("build"))
        .arg(format!("-DCMAKE_PREFIX_PATH={}", prefix.display()))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "os_lively 1.0 should not be found: {}",
        show(&out)
    );
}
