//! Self-test of the integration-test harness in `tests/common/` against real
//! etcd processes.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn namespace_and_wait_until() {
    let a = namespace("selftest");
    let b = namespace("selftest");
    assert_ne!(a, b);
    assert!(a.starts_with("/t-selftest-"), "{a}");
    assert_eq!(a.len(), "/t-selftest-".len() + 8, "{a}");
    assert!(namespace("a::b c").starts_with("/t-a__b_c-"));

    let t = Instant::now();
    assert!(!wait_until(Duration::from_millis(100), || false));
    assert!(t.elapsed() >= Duration::from_millis(100));
    let mut n = 0;
    assert!(wait_until(Duration::from_secs(5), || {
        n += 1;
        n == 3
    }));
}

#[test]
fn single_member_put_get() {
    let etcd = Etcd::start();
    assert!(etcd.is_running());
    assert!(etcd.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(etcd.endpoints(), vec![etcd.endpoint()]);

    let raw = Raw::connect(&etcd.endpoints());
    let ns = namespace("put_get");
    assert_eq!(raw.get(&format!("{ns}/a")), None);
    let rev0 = raw.revision();
    raw.put(&format!("{ns}/b"), b"2");
    raw.put(&format!("{ns}/a"), b"1");
    raw.put(&format!("{ns}/a"), b"1bis");
    let a = raw.get(&format!("{ns}/a")).expect("key a");
    assert_eq!(a.value, b"1bis");
    assert_eq!(a.value_str(), "1bis");
    assert_eq!(a.version, 2);
    assert_eq!(a.lease, 0);
    assert!(a.mod_revision > a.create_revision);
    assert_eq!(raw.revision(), rev0 + 3);
    assert_eq!(raw.keys(&ns), vec![format!("{ns}/a"), format!("{ns}/b")]);
    assert_eq!(raw.get_prefix(&ns).len(), 2);
    assert_eq!(raw.delete(&format!("{ns}/b")), 1);
    assert_eq!(raw.delete(&format!("{ns}/b")), 0);
    assert_eq!(raw.keys(&ns), vec![format!("{ns}/a")]);

    // Compaction works and the raw client is usable for advanced calls.
    raw.compact(raw.revision());
    let mut c = raw.client();
    let resp = raw.block_on(c.get(format!("{ns}/a"), None)).unwrap();
    assert_eq!(resp.kvs().len(), 1);
}

#[test]
fn lease_min_ttl_is_one_second() {
    let etcd = Etcd::start();
    let raw = etcd.raw();
    let ns = namespace("lease");
    let lease = raw.grant(1);
    let ttl = raw.lease_ttl(lease);
    assert!(
        (0..=1).contains(&ttl),
        "ttl {ttl}: fast-election flags not applied?"
    );
    raw.put_with_lease(&format!("{ns}/k"), b"v", lease);
    assert_eq!(raw.get(&format!("{ns}/k")).unwrap().lease, lease);
    assert!(wait_until(Duration::from_secs(5), || raw
        .get(&format!("{ns}/k"))
        .is_none()));
    assert_eq!(raw.lease_ttl(lease), -1);
    assert_eq!(raw.lease_ttl(0x1234_5678), -1);
}

#[test]
fn stop_kill_restart_keep_data() {
    let mut etcd = Etcd::start();
    let ep = etcd.endpoint();
    let ns = namespace("restart");
    let key = format!("{ns}/k");
    etcd.raw().put(&key, b"v1");

    etcd.stop();
    assert!(!etcd.is_running());
    assert!(!etcd.healthy());
    etcd.start_again();
    assert!(etcd.is_running());
    assert_eq!(etcd.endpoint(), ep, "restart must keep the client port");
    let raw = etcd.raw();
    assert_eq!(raw.get(&key).unwrap().value, b"v1");
    raw.put(&key, b"v2");

    etcd.kill();
    assert!(!etcd.is_running());
    etcd.restart();
    assert_eq!(etcd.raw().get(&key).unwrap().value, b"v2");

    // restart() on a running member = stop + start.
    etcd.restart();
    assert_eq!(etcd.raw().get(&key).unwrap().value, b"v2");
    // The original Raw client reconnects by itself.
    assert!(wait_until(Duration::from_secs(5), || raw
        .try_get(&key)
        .is_ok_and(|kv| kv.is_some())));
}

#[test]
fn pause_resume() {
    let etcd = Etcd::start();
    let ns = namespace("pause");
    let quick = Raw::connect_with_options(
        &etcd.endpoints(),
        etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(300))
            .with_timeout(Duration::from_millis(300)),
    );
    quick.put(&format!("{ns}/k"), b"v");

    etcd.pause();
    assert!(etcd.is_running() && etcd.is_paused());
    assert!(quick.try_get(&format!("{ns}/k")).is_err());

    etcd.resume();
    assert!(!etcd.is_paused());
    assert!(wait_until(Duration::from_secs(5), || quick
        .try_get(&format!("{ns}/k"))
        .is_ok_and(|kv| kv.is_some())));
}

#[test]
fn paused_member_is_killed_on_drop_and_stop() {
    let mut etcd = Etcd::start();
    etcd.pause();
    etcd.stop(); // must resume before SIGTERM, or this would hang
    assert!(!etcd.is_running());
    etcd.start_again();
    let pid = etcd.pid().unwrap();
    etcd.pause();
    let dir = etcd.dir().to_path_buf();
    drop(etcd);
    assert!(!dir.exists());
    // SAFETY: probing a pid with signal 0.
    let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    assert!(!alive, "etcd pid {pid} survived drop");
}

#[test]
fn parallel_starts_do_not_collide() {
    let handles: Vec<_> = (0..4).map(|_| std::thread::spawn(Etcd::start)).collect();
    let all: Vec<Etcd> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut eps: Vec<String> = all.iter().map(Etcd::endpoint).collect();
    eps.sort();
    eps.dedup();
    assert_eq!(eps.len(), 4);
    for e in &all {
        let raw = e.raw();
        raw.put("/x", e.endpoint().as_bytes());
        assert_eq!(raw.get("/x").unwrap().value, e.endpoint().as_bytes());
    }
}

#[test]
fn auth_enabled_member_restarts() {
    let mut etcd = Etcd::start_with(EtcdOpts {
        auth_token: Some("simple".into()),
        ..Default::default()
    });
    let raw = etcd.raw();
    let mut c = raw.client();
    raw.block_on(async {
        c.user_add("root", "rootpw", None).await.unwrap();
        c.user_grant_role("root", "root").await.unwrap();
        c.auth_enable().await.unwrap();
    });
    // Anonymous access is now refused...
    assert!(raw.try_put("/a", b"1").is_err());
    // ...but health checks (used by the harness) still pass across restarts.
    etcd.restart();
    let root = Raw::connect_with_user(&etcd.endpoints(), "root", "rootpw");
    root.put("/a", b"1");
    assert_eq!(root.get("/a").unwrap().value, b"1");
}

#[test]
fn cluster_survives_leader_kill() {
    let mut cluster = Cluster::start(3);
    assert_eq!(cluster.endpoints().len(), 3);
    let leader = cluster.leader_index().expect("a leader");
    let ns = namespace("cluster");

    let raw = cluster.raw();
    raw.put(&format!("{ns}/before"), b"1");

    cluster.member(leader).kill();
    assert!(!cluster.member_ref(leader).is_running());

    let rest: Vec<String> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| cluster.member_ref(i).endpoint())
        .collect();
    let survivors = Raw::connect_with_options(
        &rest,
        etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(500))
            .with_timeout(Duration::from_secs(1)),
    );
    assert!(
        wait_until(Duration::from_secs(10), || survivors
            .try_put(&format!("{ns}/after"), b"2")
            .is_ok()),
        "no put succeeded after killing leader m{leader}"
    );
    let new_leader = cluster
        .wait_leader(Duration::from_secs(5))
        .expect("new leader");
    assert_ne!(new_leader, leader);
    assert_eq!(survivors.keys(&ns).len(), 2);

    // The old leader rejoins with its data and catches up.
    cluster.member(leader).start_again();
    let old = Raw::connect(&cluster.member_ref(leader).endpoints());
    assert!(wait_until(Duration::from_secs(5), || old
        .try_get(&format!("{ns}/after"))
        .is_ok_and(|kv| kv.is_some())));

    // Pausing the current leader also triggers a re-election.
    let l = cluster.leader_index().expect("leader");
    cluster.member(l).pause();
    let mut other = None;
    assert!(wait_until(Duration::from_secs(10), || {
        other = cluster.leader_index();
        other.is_some_and(|o| o != l)
    }));
    cluster.member(l).resume();
}
