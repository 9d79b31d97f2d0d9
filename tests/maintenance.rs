//! Sticky maintenance (an operator's down() holds through the owner's
//! updates until up() or the window's end) and lazy leases (a client that
//! only reads costs no lease), against a real etcd.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use os_lively::{DownReason, ErrorKind, EventKind, Filter, Service, Status, SubscribeOptions};

const TTL: u64 = 2;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn next_event(sub: &os_lively::Subscription) -> os_lively::Event {
    sub.recv_timeout(Duration::from_secs(10))
        .unwrap()
        .expect("an event within 10 s")
}

#[test]
fn an_operators_down_holds_through_the_owners_updates_until_up() {
    let etcd = Etcd::start();
    let ns = namespace("sticky");
    let raw = etcd.raw();
    let owner = connect(&etcd.endpoints(), &ns, TTL);
    let operator = connect(&etcd.endpoints(), &ns, TTL);
    let svc = Service::new("nova", "h1").with_region("east");
    let uuid = owner.update(&svc).unwrap();
    let svc = svc.with_uuid(&uuid);
    let sub = operator
        .subscribe(&Filter::all().uuid(&uuid), &SubscribeOptions::default())
        .unwrap();
    let up_key = format!("{ns}/services/by-status/UP/{uuid}");
    let down_key = format!("{ns}/services/by-status/DOWN/{uuid}");

    operator.down(&uuid, "disk swap", 0, 0).unwrap();
    let e = next_event(&sub);
    assert_eq!(
        (e.kind, e.reason),
        (EventKind::Down, Some(DownReason::Forced))
    );
    assert!(e.service.as_ref().unwrap().forced_down);

    // The owner keeps updating (unchanged, then a new region) and its
    // keepalive keeps checking, for more than a TTL: it stays DOWN.
    for i in 0..6 {
        let region = if i < 3 { "east" } else { "west" };
        owner.update(&svc.clone().with_region(region)).unwrap();
        assert!(!operator.is_up(&uuid).unwrap(), "update {i} lifted it");
        assert!(raw.get(&up_key).is_none(), "UP key back after update {i}");
        std::thread::sleep(Duration::from_millis(TTL * 1000 / 6));
    }
    let info = operator.get(&uuid).unwrap().unwrap();
    assert!(!info.up);
    assert_eq!(info.service.status, Status::Down);
    assert!(info.service.forced_down);
    assert_eq!(info.service.region, "west", "other fields still change");
    assert_eq!(info.service.maintenance_note, "disk swap");
    let e = next_event(&sub);
    assert_eq!((e.kind, e.region.as_str()), (EventKind::Updated, "west"));
    assert_eq!(
        raw.get(&down_key).unwrap().value_str(),
        format!("{:x}", owner.stats().lease_id),
        "the DOWN key records the owner's lease"
    );

    // up() from the operator: UP at once, on the owner's lease.
    operator.up(&uuid).unwrap();
    assert!(operator.is_up(&uuid).unwrap());
    assert_eq!(raw.get(&up_key).unwrap().lease, owner.stats().lease_id);
    assert!(raw.get(&down_key).is_none());
    let info = operator.get(&uuid).unwrap().unwrap();
    assert!(!info.service.forced_down);
    assert_eq!(info.service.maintenance_note, "", "lifting clears the note");
    let e = next_event(&sub);
    assert_eq!(
        (e.kind, e.reason),
        (EventKind::Up, Some(DownReason::Lifted))
    );
    assert_eq!(
        (e.old_status, e.new_status),
        (Some(Status::Down), Some(Status::Up))
    );
    // Lifting what is not forced down is a no-op; an unknown uuid is not found.
    operator.up(&uuid).unwrap();
    assert_eq!(
        operator
            .up("0123456789abcdef0123456789abcdef")
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    // The owner still keeps it UP.
    owner.update(&svc.clone().with_region("west")).unwrap();
    assert!(operator.is_up(&uuid).unwrap());
}

#[test]
fn the_end_of_the_maintenance_window_lifts_it_on_time() {
    let etcd = Etcd::start();
    let ns = namespace("window");
    let owner = connect(&etcd.endpoints(), &ns, TTL);
    let operator = connect(&etcd.endpoints(), &ns, TTL);
    let svc = Service::new("nova", "h1");
    let uuid = owner.update(&svc).unwrap();
    let svc = svc.with_uuid(&uuid);
    let sub = operator
        .subscribe(&Filter::all().uuid(&uuid), &SubscribeOptions::default())
        .unwrap();
    let end = now() + 4;
    operator.down(&uuid, "reboot", now(), end).unwrap();
    // DOWN until the end, though the owner keeps updating.
    while now() + 1 < end {
        owner.update(&svc).unwrap();
        assert!(!operator.is_up(&uuid).unwrap(), "lifted before its end");
        std::thread::sleep(Duration::from_millis(200));
    }
    // UP by the owner's timer right after the end (generous for a loaded
    // machine, but well below the 60 s a TTL-paced check would take).
    assert!(
        wait_until(Duration::from_secs(4), || operator.is_up(&uuid).unwrap()),
        "not lifted at the end of its window"
    );
    assert!(now() >= end, "lifted before its end");
    let mut kinds = Vec::new();
    while let Some(e) = sub.recv_timeout(Duration::from_millis(500)).unwrap() {
        kinds.push((e.kind, e.reason));
    }
    assert_eq!(
        kinds,
        vec![
            (EventKind::Down, Some(DownReason::Forced)),
            (EventKind::Up, Some(DownReason::Lifted))
        ]
    );
    let info = operator.get(&uuid).unwrap().unwrap();
    assert!(!info.service.forced_down);
    assert_eq!(info.service.maintenance_end, 0);
}

#[test]
fn up_without_a_living_owner_lifts_but_leaves_it_down() {
    let etcd = Etcd::start();
    let ns = namespace("orphan");
    let owner = connect(&etcd.endpoints(), &ns, TTL);
    let operator = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = owner.update(&Service::new("nova", "h1")).unwrap();
    operator.down(&uuid, "", 0, 0).unwrap();
    owner.close().unwrap();
    operator.up(&uuid).unwrap();
    let info = operator.get(&uuid).unwrap().unwrap();
    assert_eq!(
        (info.service.status, info.service.forced_down, info.up),
        (Status::Up, false, false),
        "the record says UP, but nobody keeps it alive"
    );
}

#[test]
fn bad_maintenance_windows_are_refused_and_write_nothing() {
    let etcd = Etcd::start();
    let ns = namespace("badwindow");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = client.update(&Service::new("nova", "h1")).unwrap();
    let rev = etcd.raw().revision();
    for (start, end) in [(0, 1), (0, now() - 5), (now() + 100, now() + 50)] {
        assert_eq!(
            client.down(&uuid, "", start, end).unwrap_err().kind(),
            ErrorKind::InvalidArgument,
            "{start}..{end}"
        );
    }
    assert_eq!(etcd.raw().revision(), rev);
    assert!(client.is_up(&uuid).unwrap());
}

#[test]
fn a_client_that_only_reads_grants_no_lease() {
    let etcd = Etcd::start();
    let ns = namespace("lazylease");
    let raw = etcd.raw();
    let owner = connect(&etcd.endpoints(), &ns, TTL);
    assert_eq!(raw.leases().len(), 0, "connecting grants nothing");
    let uuid = owner.update(&Service::new("nova", "h1")).unwrap();
    assert_eq!(raw.leases(), vec![owner.stats().lease_id]);

    let reader = connect(&etcd.endpoints(), &ns, TTL);
    assert!(reader.is_up(&uuid).unwrap());
    assert!(reader.is_up_by_type_host("nova", "h1").unwrap());
    assert!(reader.get(&uuid).unwrap().is_some());
    assert_eq!(reader.list(&Filter::all()).unwrap().len(), 1);
    let sub = reader
        .subscribe(
            &Filter::all(),
            &SubscribeOptions {
                snapshot: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(sub.recv_timeout(Duration::from_secs(5)).unwrap().is_some());
    // Operator writes that bind nothing need no lease either.
    reader.down(&uuid, "n", 0, 0).unwrap();
    reader.up(&uuid).unwrap();
    assert!(reader.is_up(&uuid).unwrap());
    // A declared-DOWN registration neither.
    let mut down = Service::new("nova", "h2");
    down.status = Status::Down;
    reader.update(&down).unwrap();
    assert_eq!(reader.stats().lease_id, 0);
    assert_eq!(reader.granted_ttl(), Duration::ZERO);
    drop(sub);
    reader.close().unwrap();
    assert_eq!(
        raw.leases(),
        vec![owner.stats().lease_id],
        "the reader granted (and revoked) nothing"
    );
    // The first UP registration grants it.
    let late = connect(&etcd.endpoints(), &ns, TTL);
    late.update(&Service::new("nova", "h3")).unwrap();
    assert_eq!(raw.leases().len(), 2);
    assert!(late.granted_ttl() >= Duration::from_secs(1));
}
