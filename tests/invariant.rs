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
#[path = "common/oracle.rs"]
mod oracle;

use std::time::Duration;

use common::*;
use etcd_client::{PutOptions, Txn, TxnOp};
use oracle::*;
use os_lively::{Client, ErrorKind, Service, Status};
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
/// down, all read at one revision and decoded by the test's own oracle.
fn check(raw: &Raw, ns: &str, step: &str) {
    let snap = Snapshot::read(raw, ns);
    assert!(
        snap.skipped.is_empty(),
        "after {step}: records that do not decode: {:?}",
        snap.skipped
    );
    for u in &snap.up_keys {
        let rec = snap
            .services
            .get(u)
            .unwrap_or_else(|| panic!("after {step}: UP key of {u} without a record"));
        assert!(
            rec.record_up && !rec.forced_down,
            "after {step}: UP key of {u} but the record says UP={} (forced_down {})",
            rec.record_up,
            rec.forced_down
        );
    }
}

/// What the original Python library writes for an update: the record, its
/// type/host and uuid-less region keys, and the status key for its status
/// bound to its lease, the other status key deleted.
fn python_update(raw: &Raw, root: &str, i: usize, status: Status, lease: i64) {
    use prost::Message;
    let u = uuid(i);
    // Encoded by the test's own protobuf, as Python's would be.
    let s = oracle::pb::Service {
        uuid: u.clone(),
        r#type: "nova".into(),
        host: host(i),
        status: match status {
            Status::Up => oracle::pb::Status::Up as i32,
            Status::Down => oracle::pb::Status::Down as i32,
        },
        region: "py".into(),
        ..Default::default()
    };
    let (put, del) = match status {
        Status::Up => ("UP", "DOWN"),
        Status::Down => ("DOWN", "UP"),
    };
    let ops = vec![
        TxnOp::put(format!("{root}/by-uuid/{u}"), s.encode_to_vec(), None),
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

/// What the steps of one kind did.
#[derive(Debug, Default, Clone)]
struct Tally {
    tried: u32,
    /// Did what they asked (a write that happened).
    ok: u32,
    /// Refused as they should be: `down`/`up` of a uuid with no record
    /// (NotFound), `delete` of one (false), a revoke of a lease etcd
    /// already dropped.
    refused: u32,
    /// Anything else, with the step and the answer.
    wrong: Vec<String>,
}

/// Steps by kind, in the order they are drawn.
const KINDS: [&str; 7] = [
    "update",
    "update with a deadline",
    "down",
    "up",
    "delete",
    "lease revoked",
    "python write",
];

impl Tally {
    /// Counts one step: `ok` if it did what it asked, else `refused` if the
    /// refusal was right, else `answer` goes to `wrong`.
    fn count(&mut self, ok: bool, refused: bool, answer: impl FnOnce() -> String) {
        self.tried += 1;
        if ok {
            self.ok += 1;
        } else if refused {
            self.refused += 1;
        } else {
            self.wrong.push(answer());
        }
    }
}

/// Whether `uuid` has a record, by the test's own oracle.
fn exists(raw: &Raw, ns: &str, uuid: &str) -> bool {
    Snapshot::read(raw, ns).services.contains_key(uuid)
}

/// `result` in a `wrong` entry.
fn answer<T: std::fmt::Debug>(step: &str, result: &os_lively::Result<T>) -> String {
    match result {
        Ok(v) => format!("{step}: Ok({v:?})"),
        Err(e) => format!("{step}: {:?}: {e}", e.kind()),
    }
}

/// The right refusal for an operation on a uuid with no record.
fn not_found<T>(result: &os_lively::Result<T>) -> bool {
    matches!(result, Err(e) if e.kind() == ErrorKind::NotFound)
}

/// Whether `result` is the refusal of an update by a client another live
/// client took the service from: a Conflict naming the holder's lease,
/// which etcd (not the library) says is alive and is not this client's.
fn displaced_by_live_lease<T>(raw: &Raw, c: &Client, result: &os_lively::Result<T>) -> bool {
    let Err(e) = result else { return false };
    if e.kind() != ErrorKind::Conflict {
        return false;
    }
    let msg = e.to_string();
    let Some(rest) = msg.split("another live client (lease ").nth(1) else {
        return false;
    };
    let hex: String = rest
        .chars()
        .take_while(|ch| ch.is_ascii_hexdigit())
        .collect();
    let Ok(holder) = i64::from_str_radix(&hex, 16) else {
        return false;
    };
    holder != c.stats().lease_id && raw.lease_ttl(holder) > 0
}

/// One history; returns what each kind of step did.
fn run(etcd: &Etcd, seed: u64) -> Vec<Tally> {
    let ns = namespace("invariant");
    let root = format!("{ns}/services");
    let raw = etcd.raw();
    let py_lease = raw.grant(60);
    let clients: Vec<Client> = (0..2)
        .map(|_| connect(&etcd.endpoints(), &ns, TTL))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tallies = vec![Tally::default(); KINDS.len()];
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
                let step = format!("update {u} {status:?} in {region}");
                // Not exclusive, and uuid and type+host fixed per host: it
                // adopts, or takes over once; a client another live client
                // took it from is refused (issue 30: a conflict flips at
                // most once), rightly only if the lease it names lives.
                let r = c.update(&s);
                let displaced = displaced_by_live_lease(&raw, c, &r);
                tallies[0].count(r.is_ok(), displaced, || answer(&step, &r));
                step
            }
            3 => {
                let s = Service::new("nova", &host(i))
                    .with_region(region)
                    .with_uuid(&u)
                    .with_heartbeat(Duration::from_millis(200));
                let step = format!("update {u} with a 200 ms heartbeat deadline");
                let r = c.update(&s);
                let displaced = displaced_by_live_lease(&raw, c, &r);
                tallies[1].count(r.is_ok(), displaced, || answer(&step, &r));
                // Never checked in again: it lapses while the steps go on.
                step
            }
            4 => {
                let step = format!("down {u}");
                let existed = exists(&raw, &ns, &u);
                let r = c.down(&u, "maintenance", 0, 0);
                tallies[2].count(r.is_ok() && existed, !existed && not_found(&r), || {
                    answer(&format!("{step} (record: {existed})"), &r)
                });
                step
            }
            5 => {
                let step = format!("up {u}");
                let existed = exists(&raw, &ns, &u);
                let r = c.up(&u);
                tallies[3].count(r.is_ok() && existed, !existed && not_found(&r), || {
                    answer(&format!("{step} (record: {existed})"), &r)
                });
                step
            }
            6 => {
                let step = format!("delete {u}");
                let existed = exists(&raw, &ns, &u);
                let r = c.delete(&u);
                tallies[4].count(
                    existed && matches!(r, Ok(true)),
                    !existed && matches!(r, Ok(false)),
                    || answer(&format!("{step} (record: {existed})"), &r),
                );
                step
            }
            7 => {
                let lease = c.stats().lease_id;
                let step = format!("lease {lease:x} revoked behind the client's back");
                if lease != 0 {
                    let alive = raw.lease_ttl(lease) > 0;
                    let mut l = raw.client();
                    let r = raw.block_on(async move { l.lease_revoke(lease).await });
                    // Not found is right only for a lease an earlier step
                    // revoked, before the client re-granted.
                    tallies[5].count(r.is_ok() && alive, !alive && r.is_err(), || {
                        format!("{step} (alive: {alive}): {r:?}")
                    });
                }
                step
            }
            8 => {
                let status = if rng.random_bool(0.5) {
                    Status::Up
                } else {
                    Status::Down
                };
                python_update(&raw, &root, i, status, py_lease);
                tallies[6].count(true, false, String::new);
                format!("python update {u} {status:?}")
            }
            9 => {
                python_delete(&raw, &root, i);
                tallies[6].count(true, false, String::new);
                format!("python delete {u}")
            }
            _ => {
                // Background work (deadlines, re-grants, restores) happens
                // meanwhile; the invariant must hold through it too.
                std::thread::sleep(Duration::from_millis(rng.random_range(50..400)));
                "a pause".to_string()
            }
        };
        check(&raw, &ns, &format!("step {n} ({step}), seed {seed}"));
    }
    for c in clients {
        c.close().expect("close");
    }
    check(&raw, &ns, &format!("close, seed {seed}"));
    tallies
}

/// The seeds run by default: fixed, so a run is reproducible;
/// `OSLIVELY_INVARIANT_SEED=<seed>` runs one other.
const SEEDS: [u64; RUNS] = [0x1ee7, 0x5eed, 0xc0ffee];

#[test]
fn a_up_key_only_ever_names_a_record_that_is_up_and_not_forced_down() {
    let etcd = Etcd::start();
    let chosen = std::env::var("OSLIVELY_INVARIANT_SEED").ok();
    let seeds: Vec<u64> = match &chosen {
        Some(s) => vec![s.parse().expect("OSLIVELY_INVARIANT_SEED: a number")],
        None => SEEDS.to_vec(),
    };
    let mut total = vec![Tally::default(); KINDS.len()];
    for seed in &seeds {
        let seed = *seed;
        let replay = format!("replay with OSLIVELY_INVARIANT_SEED={seed}");
        let tallies = std::panic::catch_unwind(|| run(&etcd, seed)).unwrap_or_else(|p| {
            eprintln!("invariant run failed, seed {seed}: {replay}");
            std::panic::resume_unwind(p)
        });
        for (kind, t) in tallies.into_iter().enumerate() {
            println!(
                "seed {seed}: {}: {} tried, {} ok, {} refused rightly, {} wrong",
                KINDS[kind],
                t.tried,
                t.ok,
                t.refused,
                t.wrong.len()
            );
            // A write that failed where it should have succeeded leaves
            // the invariant checked on a namespace the history never
            // built. A loaded machine may time out a call or exhaust a
            // compare's retries against the other client's background
            // writes now and then: at most one step in ten.
            assert!(
                t.wrong.len() * 10 <= t.tried as usize,
                "seed {seed}: {} of {} {} steps did not do what they asked ({replay}): {:#?}",
                t.wrong.len(),
                t.tried,
                KINDS[kind],
                t.wrong
            );
            let sum = &mut total[kind];
            sum.tried += t.tried;
            sum.ok += t.ok;
            sum.refused += t.refused;
        }
    }
    if chosen.is_none() {
        // The default seeds run every kind of step, and each succeeds
        // often enough that the history is made of real writes.
        for (kind, t) in total.iter().enumerate() {
            assert!(
                t.ok >= 3,
                "the default seeds ran only {} successful {} steps of {}",
                t.ok,
                KINDS[kind],
                t.tried
            );
        }
    }
}
