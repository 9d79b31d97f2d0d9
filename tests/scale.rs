//! Past the old size limit: 25,000 services (a single unpaged response of
//! them passed gRPC's 4 MiB limit at about 18,000) list, load into a view and
//! snapshot into a subscription, every prefix read consistent at one
//! revision even while etcd writes and compacts underneath it.

mod common;
#[path = "common/oracle.rs"]
mod oracle;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use etcd_client::{PutOptions, Txn, TxnOp};
use oracle::*;
use os_lively::{Client, EventKind, Filter, Service, Status, SubscribeOptions};

const FLEET: usize = 25_000;
/// Services written per transaction (four keys each).
const PER_TXN: usize = 1_000;
/// Every fifth service is registered DOWN, the rest UP.
const DOWN_EVERY: usize = 5;
/// Uuids sorting first and last in the namespace (our fleet's uuids start
/// with "1".."e"), so a read that is not one snapshot would see both or
/// neither while a writer moves one token between them.
const TOKEN_FIRST: &str = "00000000000000000000000000000000";
const TOKEN_LAST: &str = "ffffffffffffffffffffffffffffffff";

fn uuid_of(i: usize) -> String {
    format!("1{i:031x}")
}

fn service_of(i: usize) -> Service {
    Service {
        uuid: uuid_of(i),
        // One type of 5,000 services: more candidates than a list reads
        // point by point unasked, a small enough part of the fleet that it
        // still does.
        service_type: if i % 5 == 1 {
            "type-big".into()
        } else {
            format!("type-{}", i % 10)
        },
        host: format!("host-{i}"),
        region: format!("region-{}", i % 7),
        status: if i % DOWN_EVERY == 0 {
            Status::Down
        } else {
            Status::Up
        },
        ..Default::default()
    }
}

/// `s` as etcd stores it, encoded by the test's own protobuf (the oracle's),
/// not the library's: a list that reads it back right decodes for real.
fn record_of(s: &Service) -> Vec<u8> {
    use prost::Message;
    oracle::pb::Service {
        uuid: s.uuid.clone(),
        r#type: s.service_type.clone(),
        host: s.host.clone(),
        status: match s.status {
            Status::Up => oracle::pb::Status::Up as i32,
            Status::Down => oracle::pb::Status::Down as i32,
        },
        region: s.region.clone(),
        ..Default::default()
    }
    .encode_to_vec()
}

/// What a list must say of fleet member `s`: its record, UP if it
/// registered UP (its UP key is on a live lease).
fn truth_of(s: &Service) -> Truth {
    Truth {
        uuid: s.uuid.clone(),
        service_type: s.service_type.clone(),
        host: s.host.clone(),
        region: s.region.clone(),
        record_up: s.status == Status::Up,
        up: s.status == Status::Up,
        maintenance_start: 0,
        maintenance_end: 0,
        maintenance_note: String::new(),
        heartbeat_ms: 0,
        heartbeat_missed: false,
        forced_down: false,
        owner_down: false,
    }
}

fn token(uuid: &str) -> Service {
    Service {
        uuid: uuid.into(),
        service_type: "token".into(),
        host: "token".into(),
        status: Status::Down,
        ..Default::default()
    }
}

/// Writes the fleet exactly as os-lively lays it out, a few big
/// transactions at a time (etcd started with raised request limits), plus
/// one token record at the start of the key space.
fn register_fleet(raw: &Raw, ns: &str) {
    let lease = raw.grant(600);
    let mut c = raw.client();
    let ns = ns.to_string();
    raw.block_on(async move {
        let root = format!("{ns}/services");
        for start in (0..FLEET).step_by(PER_TXN) {
            let mut ops = Vec::new();
            for i in start..(start + PER_TXN).min(FLEET) {
                let s = service_of(i);
                let u = &s.uuid;
                ops.push(TxnOp::put(
                    format!("{root}/by-uuid/{u}"),
                    record_of(&s),
                    None,
                ));
                ops.push(TxnOp::put(
                    format!("{root}/by-type-host/{}/{}", s.service_type, s.host),
                    u.as_str(),
                    None,
                ));
                ops.push(TxnOp::put(
                    format!("{root}/by-region/{}/{u}", s.region),
                    "",
                    None,
                ));
                ops.push(match s.status {
                    Status::Up => TxnOp::put(
                        format!("{root}/by-status/UP/{u}"),
                        "",
                        Some(PutOptions::new().with_lease(lease)),
                    ),
                    Status::Down => TxnOp::put(format!("{root}/by-status/DOWN/{u}"), "", None),
                });
            }
            c.txn(Txn::new().and_then(ops)).await.expect("bulk write");
        }
        c.put(
            format!("{root}/by-uuid/{TOKEN_FIRST}"),
            record_of(&token(TOKEN_FIRST)),
            None,
        )
        .await
        .expect("token");
    });
}

/// Moves the token record between the first and the last uuid of the
/// namespace, one transaction per move, until stopped: at every revision
/// exactly one token exists.
fn start_token_mover(raw: &Raw, ns: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let mut c = raw.client();
    let root = format!("{ns}/services/by-uuid");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    std::thread::spawn(move || {
        rt.block_on(async move {
            let mut moves = 0u64;
            let mut at_first = true;
            while !stop.load(Ordering::Relaxed) {
                let (from, to) = if at_first {
                    (TOKEN_FIRST, TOKEN_LAST)
                } else {
                    (TOKEN_LAST, TOKEN_FIRST)
                };
                c.txn(Txn::new().and_then([
                    TxnOp::delete(format!("{root}/{from}"), None),
                    TxnOp::put(format!("{root}/{to}"), record_of(&token(to)), None),
                ]))
                .await
                .expect("move token");
                at_first = !at_first;
                moves += 1;
                // Often enough to land inside every paged read, not so
                // often that it crowds out the reads themselves.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            moves
        })
    })
}

fn tokens(list: &[os_lively::ServiceInfo]) -> usize {
    list.iter()
        .filter(|i| i.service.service_type == "token")
        .count()
}

/// Captures the library's log lines, to see a read start over after a
/// compaction.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(format!("{}", record.args()));
        }
    }
    fn flush(&self) {}
}

fn captured() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
        let _ = log::set_logger(c);
        log::set_max_level(log::LevelFilter::Info);
        c
    })
}

fn restarts_logged() -> usize {
    captured()
        .0
        .lock()
        .map(|l| {
            l.iter()
                .filter(|m| m.contains("starting over at a fresh revision"))
                .count()
        })
        .unwrap_or(0)
}

fn big_etcd() -> Etcd {
    Etcd::start_with(EtcdOpts {
        extra_args: vec![
            format!("--max-txn-ops={}", PER_TXN * 4),
            "--max-request-bytes=10485760".into(),
        ],
        ..Default::default()
    })
}

fn uuids(list: &[os_lively::ServiceInfo]) -> HashSet<String> {
    list.iter().map(|i| i.service.uuid.clone()).collect()
}

#[test]
fn twenty_five_thousand_services_list_view_and_subscribe_at_one_revision() {
    captured();
    let etcd = big_etcd();
    let ns = namespace("scale");
    let raw = etcd.raw();
    let t = Instant::now();
    register_fleet(&raw, &ns);
    eprintln!("registered {FLEET} services in {:?}", t.elapsed());
    let mut cfg = config(&etcd.endpoints(), &ns, 10);
    cfg.request_timeout(Duration::from_secs(20));
    let client = Client::connect(&cfg).unwrap();

    // Every filter, checked against the fleet's own definition.
    let expect = |f: &dyn Fn(&Service) -> bool| -> HashSet<String> {
        (0..FLEET)
            .map(service_of)
            .filter(|s| f(s))
            .map(|s| s.uuid)
            .collect()
    };
    let t = Instant::now();
    let all = client.list(&Filter::all()).unwrap();
    eprintln!("list all: {:?}", t.elapsed());
    assert_eq!(all.len(), FLEET + 1, "every service and the token");
    assert_eq!(
        all.iter().filter(|i| i.up).count(),
        FLEET - FLEET / DOWN_EVERY
    );
    // Every record as written, field by field.
    let mut want: std::collections::HashMap<String, Truth> = (0..FLEET)
        .map(|i| (uuid_of(i), truth_of(&service_of(i))))
        .collect();
    want.insert(TOKEN_FIRST.into(), truth_of(&token(TOKEN_FIRST)));
    for item in &all {
        assert_eq!(
            Some(&Truth::of(&item.service, item.up)),
            want.get(&item.service.uuid),
            "listed wrong"
        );
    }
    let cases: Vec<(Filter, HashSet<String>)> = vec![
        (
            Filter::all().service_type("type-3"),
            expect(&|s| s.service_type == "type-3"),
        ),
        (
            Filter::all().service_type("type-big"),
            expect(&|s| s.service_type == "type-big"),
        ),
        (
            Filter::all().service_type("type-3").host("host-13"),
            expect(&|s| s.host == "host-13"),
        ),
        (
            Filter::all().region("region-4"),
            expect(&|s| s.region == "region-4"),
        ),
        (
            Filter::all().status(Status::Up),
            expect(&|s| s.status == Status::Up),
        ),
        (
            Filter::all().status(Status::Down),
            expect(&|s| s.status == Status::Down),
        ),
        (
            Filter::all().uuid(&uuid_of(42)),
            expect(&|s| s.uuid == uuid_of(42)),
        ),
    ];
    for (filter, want) in &cases {
        let t = Instant::now();
        let mut got = uuids(&client.list(filter).unwrap());
        eprintln!("list {filter:?}: {:?}", t.elapsed());
        got.remove(TOKEN_FIRST);
        assert_eq!(got.len(), want.len(), "{filter:?}");
        assert!(got == *want, "{filter:?}: wrong services");
    }

    // A view loads all of them and answers from memory.
    let t = Instant::now();
    let view = client.view().unwrap();
    view.sync(Duration::from_secs(20)).unwrap();
    eprintln!("view + sync: {:?}", t.elapsed());
    assert_eq!(view.len(), FLEET + 1);
    assert!(view.is_up(&uuid_of(1)).unwrap());
    assert!(!view.is_up(&uuid_of(DOWN_EVERY)).unwrap());

    // A subscription's snapshot has every service, then live changes.
    let t = Instant::now();
    let sub = client
        .subscribe(
            &Filter::all(),
            &SubscribeOptions {
                snapshot: true,
                queue_capacity: FLEET * 2,
            },
        )
        .unwrap();
    let mut existing = 0;
    while existing < FLEET + 1 {
        let e = sub
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .expect("snapshot event");
        assert_eq!(e.kind, EventKind::Existing);
        existing += 1;
    }
    eprintln!("subscribe with snapshot: {:?}", t.elapsed());
    let fresh = client.update(&Service::new("late", "h")).unwrap();
    let e = sub
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("live event after the snapshot");
    assert_eq!(
        (e.kind, e.uuid.as_str()),
        (EventKind::Registered, fresh.as_str())
    );
    drop(sub);

    // One snapshot: while a writer moves the token from the first key to
    // the last and back, a paged read sees exactly one token.
    let stop = Arc::new(AtomicBool::new(false));
    let mover = start_token_mover(&raw, &ns, stop.clone());
    for round in 0..2 {
        let list = client.list(&Filter::all()).unwrap();
        assert_eq!(tokens(&list), 1, "round {round}: not one revision");
        let down = client.list(&Filter::all().status(Status::Down)).unwrap();
        assert_eq!(
            tokens(&down),
            1,
            "round {round}: DOWN list not one revision"
        );
    }

    // etcd compacting the pinned revision mid-read: the read starts over
    // at a fresh revision and still answers one consistent snapshot.
    let t = Instant::now();
    client.list(&Filter::all()).unwrap();
    let one_list = t.elapsed();
    let before = restarts_logged();
    for attempt in 0..6 {
        let lister = {
            let client = client.clone();
            std::thread::spawn(move || client.list(&Filter::all()))
        };
        std::thread::sleep(one_list / 3);
        // Logical compaction: older revisions are refused as soon as it
        // returns (the physical one can take long on a loaded machine).
        let rev = raw.revision();
        let mut c = raw.client();
        raw.block_on(async move { c.compact(rev, None).await })
            .expect("compact");
        let list = lister.join().unwrap().expect("list across a compaction");
        assert_eq!(tokens(&list), 1, "attempt {attempt}: not one revision");
        assert_eq!(list.len(), FLEET + 2);
        if restarts_logged() > before {
            break;
        }
    }
    assert!(
        restarts_logged() > before,
        "no compaction landed mid-read in 6 attempts"
    );
    stop.store(true, Ordering::Relaxed);
    let moves = mover.join().unwrap();
    eprintln!("token moved {moves} times during the reads");
}
