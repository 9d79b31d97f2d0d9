//! The invariant `is_up(uuid)` stands on: a UP key exists only for a record
//! that says UP and is not forced down. (The converse need not hold: a record
//! UP without its UP key is a service whose lease ended, DOWN either way.)
//!
//! Random sequences of every kind of write (ours from two clients, an
//! operator's down/up, deletes, a lost lease, a lapsed heartbeat deadline,
//! and the original Python library's writes) against a real etcd, with the
//! whole namespace read at one revision after every step. A failing run
//! prints its seed; `OSLIVELY_INVARIANT_SEED=<seed>` replays it.

mod common;

use std::time::Duration;

use common::*;
use etcd_client::{PutOptions, Txn, TxnOp};
use os_lively::{Client, Service, Status};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TTL: u64 = 2;
const UUIDS: usize = 4;
const STEPS: usize = 60;
const RUNS: usize = 3;

fn uuid(i: usize) -> String {
    format!("{:032x}", 0xabc0 + i)
}

fn host(i: usize) -> String {
    format!("h{i}")
}

/// Every UP key in the namespace names a record that is UP and not forced
/// down, all read at one revision.
fn check(raw: &Raw, root: &str, step: &str) {
    let kvs = raw.get_prefix(&format!("{root}/"));
    let record = |u: &str| {
        let key = format!("{root}/by-uuid/{u}");
        kvs.iter().find(|kv| kv.key == key)
    };
    let up_prefix = format!("{root}/by-status/UP/");
    for kv in kvs.iter().filter(|kv| kv.key.starts_with(&up_prefix)) {
        let u = &kv.key[up_prefix.len()..];
        let rec =
            record(u).unwrap_or_else(|| panic!("after {step}: UP key of {u} without a record"));
        let s = Service::from_bytes(&rec.value).expect("a record that decodes");
        assert!(
            s.status == Status::Up && !s.forced_down,
            "after {step}: UP key of {u} but the record says {:?} (forced_down {})",
            s.status,
            s.forced_down
        );
    }
}

/// What the original Python library writes for an update: the record, its
/// type/host and uuid-less region keys, and the status key for its status
/// bound to its lease, the other status key deleted.
fn python_update(raw: &Raw, root: &str, i: usize, status: Status, lease: i64) {
    let u = uuid(i);
    let s = Service {
        uuid: u.clone(),
        service_type: "nova".into(),
        host: host(i),
        status,
        region: "py".into(),
        ..Default::default()
    };
    let (put, del) = match status {
        Status::Up => ("UP", "DOWN"),
        Status::Down => ("DOWN", "UP"),
    };
    let ops = vec![
        TxnOp::put(format!("{root}/by-uuid/{u}"), s.to_bytes(), None),
        TxnOp::put(
            format!("{root}/by-type-host/nova/{}", host(i)),
            u.clone(),
            None,
        ),
        TxnOp::put(format!("{root}/by-region/py"), "", None),
        TxnOp::put(
            format!("{root}/by-status/{put}/{u}"),
            "",
            Some(PutOptions::new().with_lease(lease)),
        ),
        TxnOp::delete(format!("{root}/by-status/{del}/{u}"), None),
    ];
    let mut c = raw.client();
    raw.block_on(async move { c.txn(Txn::new().and_then(ops)).await })
        .expect("python-style write");
}

/// The original library's delete: every key of the service.
fn python_delete(raw: &Raw, root: &str, i: usize) {
    let u = uuid(i);
    for key in [
        format!("{root}/by-uuid/{u}"),
        format!("{root}/by-type-host/nova/{}", host(i)),
        format!("{root}/by-status/UP/{u}"),
        format!("{root}/by-status/DOWN/{u}"),
    ] {
        raw.delete(&key);
    }
}

fn run(etcd: &Etcd, seed: u64) {
    let ns = namespace("invariant");
    let root = format!("{ns}/services");
    let raw = etcd.raw();
    let py_lease = raw.grant(60);
    let clients: Vec<Client> = (0..2)
        .map(|_| connect(&etcd.endpoints(), &ns, TTL))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    for n in 0..STEPS {
        let i = rng.random_range(0..UUIDS);
        let c = &clients[rng.random_range(0..clients.len())];
        let u = uuid(i);
        let region = ["r1", "r2"][rng.random_range(0..2)];
        let step = match rng.random_range(0..11) {
            0..=2 => {
                let status = if rng.random_bool(0.8) {
                    Status::Up
                } else {
                    Status::Down
                };
                let mut s = Service::new("nova", &host(i))
                    .with_region(region)
                    .with_uuid(&u);
                s.status = status;
                // Conflicts and the like are answers, not invariant breaks.
                let _ = c.update(&s);
                format!("update {u} {status:?} in {region}")
            }
            3 => {
                let s = Service::new("nova", &host(i))
                    .with_region(region)
                    .with_uuid(&u)
                    .with_heartbeat(Duration::from_millis(200));
                let _ = c.update(&s);
                // Never checked in again: it lapses while the steps go on.
                format!("update {u} with a 200 ms heartbeat deadline")
            }
            4 => {
                let _ = c.down(&u, "maintenance", 0, 0);
                format!("down {u}")
            }
            5 => {
                let _ = c.up(&u);
                format!("up {u}")
            }
            6 => {
                let _ = c.delete(&u);
                format!("delete {u}")
            }
            7 => {
                let lease = c.stats().lease_id;
                if lease != 0 {
                    // Not found is fine: revoked by an earlier step, and
                    // the client has not re-granted yet.
                    let mut l = raw.client();
                    let _ = raw.block_on(async move { l.lease_revoke(lease).await });
                }
                format!("lease {lease:x} revoked behind the client's back")
            }
            8 => {
                let status = if rng.random_bool(0.5) {
                    Status::Up
                } else {
                    Status::Down
                };
                python_update(&raw, &root, i, status, py_lease);
                format!("python update {u} {status:?}")
            }
            9 => {
                python_delete(&raw, &root, i);
                format!("python delete {u}")
            }
            _ => {
                // Background work (deadlines, re-grants, restores) happens
                // meanwhile; the invariant must hold through it too.
                std::thread::sleep(Duration::from_millis(rng.random_range(50..400)));
                "a pause".to_string()
            }
        };
        check(&raw, &root, &format!("step {n} ({step}), seed {seed}"));
    }
    for c in clients {
        let _ = c.close();
    }
    check(&raw, &root, &format!("close, seed {seed}"));
}

#[test]
fn a_up_key_only_ever_names_a_record_that_is_up_and_not_forced_down() {
    let etcd = Etcd::start();
    let seeds: Vec<u64> = match std::env::var("OSLIVELY_INVARIANT_SEED") {
        Ok(s) => vec![s.parse().expect("OSLIVELY_INVARIANT_SEED: a number")],
        Err(_) => (0..RUNS).map(|_| rand::random()).collect(),
    };
    for seed in seeds {
        println!("invariant run, seed {seed}");
        run(&etcd, seed);
    }
}
