//! Readers never write (issue 29, item 3): an etcd user whose role may
//! only read the namespace watches, views, syncs, subscribes and lists,
//! directly and through etcd's gRPC proxy (3.4's drops watch progress
//! requests), and etcd shows no key written, no lease granted and no
//! write call from it.
//!
//! One three-member cluster: the owner (and the test's raw client) talk
//! to member 0, the direct reader only to member 1, the proxy only to
//! member 2, so member 1's and the proxy's `/metrics` count exactly what
//! each reader cost. About 15 s.

mod common;
#[path = "common/oracle.rs"]
mod oracle;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::metrics::Grpc;
use common::*;
use os_lively::{
    Client, DownReason, EventKind, Filter, Service, Status, SubscribeOptions, Subscription, View,
};

/// The watch checks a quiet stream every TTL/4 (0.5 s) at first, the old
/// progress mark's period.
const TTL: u64 = 2;

/// Every call that writes, or could: none may come from a reader.
const WRITES: [&str; 6] = [
    "Put",
    "DeleteRange",
    "LeaseGrant",
    "LeaseRevoke",
    "LeaseKeepAlive",
    "Compact",
];

struct Reader {
    name: &'static str,
    client: Client,
    view: View,
    sub: Subscription,
    /// What the subscription's events say: uuid -> effective status.
    told: BTreeMap<String, Status>,
    /// Counted at the proxy (else at member 1).
    via_proxy: bool,
}

impl Reader {
    fn connect(name: &'static str, endpoint: String, ns: &str, via_proxy: bool) -> Reader {
        let mut cfg = config(&[endpoint], ns, TTL);
        cfg.user("ro", "ro-secret-pw").unwrap();
        let client = Client::connect(&cfg).expect("a read-only user connects");
        let view = client.view().expect("a read-only user's view");
        let sub = client
            .subscribe(
                &Filter::all(),
                &SubscribeOptions {
                    snapshot: true,
                    ..Default::default()
                },
            )
            .expect("a read-only user's subscription");
        Reader {
            name,
            client,
            view,
            sub,
            told: BTreeMap::new(),
            via_proxy,
        }
    }

    /// Takes every queued event into `told`.
    fn drain(&mut self) {
        while let Some(e) = self.sub.try_recv().unwrap() {
            match e.kind {
                EventKind::Removed => {
                    self.told.remove(&e.uuid);
                }
                EventKind::Resync => {}
                _ => {
                    if let Some(s) = e.new_status {
                        self.told.insert(e.uuid.clone(), s);
                    }
                }
            }
        }
    }
}

/// What etcd holds, as uuid -> UP.
fn truth(raw: &Raw, ns: &str) -> BTreeMap<String, bool> {
    oracle::Snapshot::read(raw, ns).liveness()
}

fn as_status(up: bool) -> Status {
    if up { Status::Up } else { Status::Down }
}

fn uuids(list: Vec<os_lively::ServiceInfo>) -> BTreeMap<String, bool> {
    list.into_iter().map(|i| (i.service.uuid, i.up)).collect()
}

/// Asserts `d` (one reader's calls) holds no write.
#[track_caller]
fn no_writes(who: &str, what: &str, d: &Grpc) {
    for m in WRITES {
        assert_eq!(
            d.started(m) + d.received(m),
            0,
            "{who}: {m} during {what}: {d}"
        );
    }
}

#[test]
fn a_read_only_user_watches_views_syncs_subscribes_and_lists_without_writing() {
    let ns = namespace("readers");
    let cluster = Cluster::start_with(
        3,
        EtcdOpts {
            auth_token: Some("simple".into()),
            ..Default::default()
        },
    );
    let m = |i: usize| cluster.member_ref(i).endpoint();
    Raw::connect(&[m(0)]).enable_auth_with_owner_and_reader(&ns);
    let raw = Raw::connect_with_user(&[m(0)], "root", "rootpw");
    let proxy = GrpcProxy::start(&[m(2)]);
    let mut owner_cfg = config(&[m(0)], &ns, TTL);
    owner_cfg.user("svc", "svc-secret-pw").unwrap();
    let owner = Client::connect(&owner_cfg).unwrap();
    let east1 = owner
        .update(&Service::new("nova", "e1").with_region("east"))
        .unwrap();
    let east2 = owner
        .update(&Service::new("nova", "e2").with_region("east"))
        .unwrap();
    let west = owner
        .update(&Service::new("glance", "w1").with_region("west"))
        .unwrap();

    // What each reader cost etcd: the only client of member 1, or of the
    // proxy.
    let counted = |r: &Reader| {
        if r.via_proxy {
            Grpc::parse(&proxy.metrics_text())
        } else {
            Grpc::of(cluster.member_ref(1))
        }
    };
    let mut readers = vec![
        Reader::connect("direct", m(1), &ns, false),
        Reader::connect("proxy", proxy.endpoint(), &ns, true),
    ];
    for r in &readers {
        assert!(
            wait_until(Duration::from_secs(10), || [&east1, &east2, &west]
                .iter()
                .all(|u| r.view.is_up(u).unwrap_or(false))),
            "{}: the view never loaded",
            r.name
        );
    }

    // A quiet spell of twice the TTL (eight of the old mark's periods):
    // the views stay current and connected, and nothing is written.
    let quiet = Duration::from_secs(2 * TTL);
    let rev0 = raw.revision();
    let leases0: BTreeSet<i64> = raw.leases().into_iter().collect();
    let before: Vec<Grpc> = readers.iter().map(&counted).collect();
    let t = Instant::now();
    let mut reads = 0;
    while t.elapsed() < quiet {
        for r in &readers {
            assert_eq!(
                r.view.is_up(&east1).map_err(|e| e.to_string()),
                Ok(true),
                "{}: view after {:?} of quiet",
                r.name,
                t.elapsed()
            );
            reads += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (r, before) in readers.iter().zip(&before) {
        let d = counted(r).minus(before);
        eprintln!(
            "{}: {quiet:?} of quiet cost etcd {} (reconnects {})",
            r.name,
            d,
            r.client.stats().reconnects
        );
        no_writes(r.name, "a quiet spell", &d);
        assert_eq!(d.started("Txn"), 0, "{}: {d}", r.name);
        // (The proxy's own count of Watch streams includes its internal
        // ones; the client counts its reopenings.)
        assert_eq!(
            r.client.stats().reconnects,
            0,
            "{}: the quiet watch was reopened: {d}",
            r.name
        );
        // A check at most every quiet period (TTL/4), each one read at
        // most: the revision, asked whether or not the stream answered
        // the progress request (a member cut off from its peers answers
        // too, at its stale revision); the namespace's changes only when
        // etcd moved on, which it did not. Measured: 4 reads (and, direct,
        // 4 progress requests) in 4 s, the checks backing off from TTL/4
        // to TTL/2.
        let bound = (quiet.as_millis() / (TTL as u128 * 1000 / 4)) as u64 + 1;
        assert!(
            d.started("Range") <= bound,
            "{}: {} reads in {quiet:?} of quiet (bound {bound}): {d}",
            r.name,
            d.started("Range")
        );
        assert!(r.view.is_connected(), "{}", r.name);
        r.view.sync(Duration::from_secs(5)).expect("sync");
    }
    assert_eq!(
        raw.revision(),
        rev0,
        "something was written during the quiet spell"
    );
    assert!(reads > 0);

    // etcd's revision moves outside the namespace (another tenant): sync
    // still returns, through the proxy too, where progress requests go
    // unanswered.
    raw.put("/elsewhere/k", b"1");
    for r in &readers {
        let target = raw.revision();
        let t = Instant::now();
        r.view
            .sync(Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{}: sync: {e}", r.name));
        assert!(r.view.revision() >= target, "{}", r.name);
        eprintln!(
            "{}: sync in a quiet namespace of a busy etcd took {:?}",
            r.name,
            t.elapsed()
        );
    }

    // Every change is delivered.
    let gone = west.clone();
    owner.down(&east1, "disk swap", 0, 0).unwrap();
    let new = owner
        .update(&Service::new("nova", "e3").with_region("east"))
        .unwrap();
    owner.delete(&gone).unwrap();
    let expected: BTreeMap<String, Status> = truth(&raw, &ns)
        .into_iter()
        .map(|(u, up)| (u, as_status(up)))
        .collect();
    assert_eq!(expected.len(), 3, "{expected:?}");
    assert_eq!(expected.get(&east1), Some(&Status::Down));
    for r in &mut readers {
        assert!(
            wait_until(Duration::from_secs(10), || {
                r.drain();
                r.told == expected
            }),
            "{}: the subscription says {:?}, etcd {expected:?}",
            r.name,
            r.told
        );
        let v: BTreeMap<String, Status> = r
            .view
            .list(&Filter::all())
            .unwrap()
            .into_iter()
            .map(|i| (i.service.uuid, as_status(i.up)))
            .collect();
        assert_eq!(v, expected, "{}: view", r.name);
        let info = r.view.get(&east1).unwrap().expect("east1 in the view");
        assert_eq!(info.down_reason(), Some(DownReason::Forced));
    }

    // Every kind of list, and the point reads, with nothing written: the
    // owner is idle, so etcd's revision must not move.
    let rev1 = raw.revision();
    let before: Vec<Grpc> = readers.iter().map(&counted).collect();
    let all = truth(&raw, &ns);
    let only = |keep: &[&String]| -> BTreeMap<String, bool> {
        all.iter()
            .filter(|(u, _)| keep.contains(u))
            .map(|(u, up)| (u.clone(), *up))
            .collect()
    };
    for r in &readers {
        let c = &r.client;
        let lists = [
            ("all", Filter::all(), all.clone()),
            ("uuid", Filter::all().uuid(&east2), only(&[&east2])),
            (
                "type",
                Filter::all().service_type("nova"),
                only(&[&east1, &east2, &new]),
            ),
            (
                "type+host",
                Filter::all().service_type("nova").host("e2"),
                only(&[&east2]),
            ),
            (
                "region",
                Filter::all().region("east"),
                only(&[&east1, &east2, &new]),
            ),
            (
                "region (gone)",
                Filter::all().region("west"),
                BTreeMap::new(),
            ),
            (
                "status UP",
                Filter::all().status(Status::Up),
                only(&[&east2, &new]),
            ),
            (
                "status DOWN",
                Filter::all().status(Status::Down),
                only(&[&east1]),
            ),
        ];
        for (what, filter, want) in lists {
            assert_eq!(
                uuids(
                    c.list(&filter)
                        .unwrap_or_else(|e| panic!("{}: list {what}: {e}", r.name))
                ),
                want,
                "{}: list {what}",
                r.name
            );
            assert_eq!(
                uuids(r.view.list(&filter).unwrap()),
                want,
                "{}: view list {what}",
                r.name
            );
        }
        assert!(c.is_up(&east2).unwrap());
        assert!(!c.is_up(&east1).unwrap());
        assert!(c.is_up_by_type_host("nova", "e3").unwrap());
        assert_eq!(c.get(&gone).unwrap(), None);
        let got = c.get_by_type_host("nova", "e1").unwrap().expect("e1");
        assert_eq!(got.down_reason(), Some(DownReason::Forced));
    }
    assert_eq!(raw.revision(), rev1, "a read wrote");
    assert_eq!(
        raw.get(&format!("{ns}/os-lively/region-census")),
        None,
        "a reader's region list wrote the census"
    );
    assert_eq!(raw.get(&format!("{ns}/services/progress")), None);
    let leases: BTreeSet<i64> = raw.leases().into_iter().collect();
    assert_eq!(leases, leases0, "a reader granted a lease");
    for (r, before) in readers.iter().zip(&before) {
        let d = counted(r).minus(before);
        eprintln!("{}: every list and point read cost etcd {d}", r.name);
        no_writes(r.name, "lists and reads", &d);
        assert_eq!(r.client.granted_ttl(), Duration::ZERO, "{}", r.name);
    }

    // The owner (a registering client) may take the census its readers'
    // region lists then use.
    assert_eq!(
        uuids(owner.list(&Filter::all().region("east")).unwrap()).len(),
        3
    );
    assert!(raw.get(&format!("{ns}/os-lively/region-census")).is_some());
    for r in &readers {
        assert_eq!(
            uuids(r.client.list(&Filter::all().region("east")).unwrap()),
            only(&[&east1, &east2, &new]),
            "{}: region list under the owner's census",
            r.name
        );
    }
    drop(readers);
}
