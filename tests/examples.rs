//! The runnable examples (`examples/`): `register` keeps a service UP that
//! `view` then lists, and without an endpoint they say how to name one.
//! (`cargo test` builds the examples; this runs them.)

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn example(name: &str) -> Command {
    let deps = std::env::current_exe().expect("current_exe");
    let dir: PathBuf = deps
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>")
        .join("examples");
    Command::new(dir.join(name))
}

#[test]
fn register_then_view_lists_it_up() {
    let etcd = Etcd::start();
    let ns = namespace("examples");
    let env = |cmd: &mut Command| {
        cmd.env("OSLIVELY_ETCD_ENDPOINTS", etcd.endpoints().join(","))
            .env("OSLIVELY_ETCD_KEY_NAMESPACE", &ns);
    };
    let mut register = example("register");
    env(&mut register);
    let mut register = register
        .args(["example-svc", "host-9", "30"])
        .stdout(Stdio::null())
        .spawn()
        .expect("run register");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut view = example("view");
        env(&mut view);
        let out = view.arg("1").output().expect("run view");
        let text = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && text.contains("example-svc host-9 UP") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "view never listed the service: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = register.kill();
    let _ = register.wait();
}

#[test]
fn examples_without_an_endpoint_say_how_to_name_one() {
    for name in ["register", "watch", "view"] {
        let mut cmd = example(name);
        if name == "register" {
            cmd.args(["t", "h"]);
        }
        let out = cmd
            .env_remove("OSLIVELY_ETCD_ENDPOINTS")
            .output()
            .expect("run example");
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("OSLIVELY_ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --example"),
            "{name}: {err}"
        );
    }
}
