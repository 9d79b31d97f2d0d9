//! The core library against a real etcd: registration, queries, index keys,
//! lease-kept liveness, self-healing, and failure behaviour.

mod common;

use std::time::{Duration, Instant};

use common::*;
use os_lively::{ErrorKind, Filter, Service, Status};

const TTL: u64 = 2;
/// A maintenance end far in the future (2096).
const FAR: u64 = 4_000_000_000;

fn keys_of(raw: &Raw, ns: &str) -> Vec<String> {
    raw.keys(&format!("{ns}/services/"))
        .into_iter()
        .map(|k| k[ns.len()..].to_string())
        .collect()
}

#[test]
fn register_list_move_down_delete_leave_exactly_the_designed_keys() {
    let etcd = Etcd::start();
    let ns = namespace("keys");
    let raw = etcd.raw();
    let client = connect(&etcd.endpoints(), &ns, TTL);

    let uuid = client
        .update(&Service::new("nova-compute", "host-1").with_region("r1"))
        .unwrap();
    assert_eq!(uuid.len(), 32);
    assert_eq!(
        keys_of(&raw, &ns),
        vec![
            format!("/services/by-region/r1/{uuid}"),
            format!("/services/by-status/UP/{uuid}"),
            "/services/by-type-host/nova-compute/host-1".to_string(),
            format!("/services/by-uuid/{uuid}"),
        ]
    );
    let up = raw
        .get(&format!("{ns}/services/by-status/UP/{uuid}"))
        .unwrap();
    assert_eq!(
        up.lease,
        client.stats().lease_id,
        "UP key is on the client's lease"
    );
    assert_eq!(
        raw.get(&format!("{ns}/services/by-type-host/nova-compute/host-1"))
            .unwrap()
            .value_str(),
        uuid
    );
    let rec = raw.get(&format!("{ns}/services/by-uuid/{uuid}")).unwrap();
    assert_eq!(rec.lease, 0, "the record is durable");
    let decoded = Service::from_bytes(&rec.value).unwrap();
    assert_eq!(decoded.uuid, uuid);
    assert_eq!(decoded.status, Status::Up);

    assert!(client.is_up(&uuid).unwrap());
    assert!(client.is_up_by_type_host("nova-compute", "host-1").unwrap());
    let info = client
        .get_by_type_host("nova-compute", "host-1")
        .unwrap()
        .unwrap();
    assert!(info.up);
    assert_eq!(info.service.region, "r1");

    // A second service to make the filters mean something.
    let other = client
        .update(&Service::new("glance", "host-2").with_region("r2"))
        .unwrap();
    let uuids = |f: Filter| {
        let mut v: Vec<String> = client
            .list(&f)
            .unwrap()
            .into_iter()
            .map(|i| i.service.uuid)
            .collect();
        v.sort();
        v
    };
    let mut both = vec![uuid.clone(), other.clone()];
    both.sort();
    assert_eq!(uuids(Filter::all()), both);
    assert_eq!(uuids(Filter::all().region("r1")), vec![uuid.clone()]);
    assert_eq!(
        uuids(Filter::all().service_type("glance")),
        vec![other.clone()]
    );
    assert_eq!(uuids(Filter::all().host("host-1")), vec![uuid.clone()]);
    assert_eq!(
        uuids(Filter::all().service_type("nova-compute").host("host-1")),
        vec![uuid.clone()]
    );
    assert_eq!(uuids(Filter::all().uuid(&uuid)), vec![uuid.clone()]);
    assert_eq!(uuids(Filter::all().status(Status::Up)), both);
    assert_eq!(
        uuids(Filter::all().status(Status::Down)),
        Vec::<String>::new()
    );
    assert_eq!(
        uuids(Filter::all().region("r1").service_type("glance")),
        Vec::<String>::new()
    );

    // Move region and host: old index keys go, new ones come, in one write.
    let moved = Service::new("nova-compute", "host-9")
        .with_region("r2")
        .with_uuid(&uuid);
    client.update(&moved).unwrap();
    let keys = keys_of(&raw, &ns);
    assert!(keys.contains(&format!("/services/by-region/r2/{uuid}")));
    assert!(!keys.contains(&format!("/services/by-region/r1/{uuid}")));
    assert!(keys.contains(&"/services/by-type-host/nova-compute/host-9".to_string()));
    assert!(!keys.contains(&"/services/by-type-host/nova-compute/host-1".to_string()));
    assert!(!client.is_up_by_type_host("nova-compute", "host-1").unwrap());
    assert!(client.is_up_by_type_host("nova-compute", "host-9").unwrap());

    // Forced down: record says DOWN with the note, UP key gone, DOWN key durable.
    client.down(&uuid, "disk replacement", 100, FAR).unwrap();
    assert!(!client.is_up(&uuid).unwrap());
    let info = client.get(&uuid).unwrap().unwrap();
    assert_eq!(info.service.status, Status::Down);
    assert_eq!(info.service.maintenance_note, "disk replacement");
    assert_eq!(
        (info.service.maintenance_start, info.service.maintenance_end),
        (100, FAR)
    );
    assert!(info.service.forced_down);
    assert!(
        raw.get(&format!("{ns}/services/by-status/UP/{uuid}"))
            .is_none()
    );
    assert_eq!(
        raw.get(&format!("{ns}/services/by-status/DOWN/{uuid}"))
            .unwrap()
            .lease,
        0
    );
    assert_eq!(
        uuids(Filter::all().status(Status::Down)),
        vec![uuid.clone()]
    );
    // A forced-down service is not put back by the heartbeat.
    std::thread::sleep(Duration::from_millis(TTL * 1000 / 3 + 500));
    assert!(
        !client.is_up(&uuid).unwrap(),
        "a forced-down service must stay down"
    );

    // The owner's update does not lift it (sticky); up() does. Then
    // delete: every key of that uuid disappears.
    client.update(&moved).unwrap();
    assert!(!client.is_up(&uuid).unwrap(), "update lifted a forced DOWN");
    client.up(&uuid).unwrap();
    assert!(client.is_up(&uuid).unwrap());
    assert!(
        raw.get(&format!("{ns}/services/by-status/DOWN/{uuid}"))
            .is_none()
    );
    assert!(client.delete(&uuid).unwrap());
    assert!(
        !client.delete(&uuid).unwrap(),
        "deleting twice reports nothing deleted"
    );
    assert!(
        keys_of(&raw, &ns)
            .iter()
            .all(|k| !k.contains(&uuid) && !k.contains("host-9"))
    );
    assert!(client.get(&uuid).unwrap().is_none());
    assert!(!client.is_up(&uuid).unwrap());
    assert_eq!(
        client.down(&uuid, "", 0, 0).unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn identity_is_type_and_host_a_registration_without_uuid_takes_it_over() {
    let etcd = Etcd::start();
    let ns = namespace("conflict");
    let first_client = connect(&etcd.endpoints(), &ns, TTL);
    let first = first_client.update(&Service::new("api", "h")).unwrap();
    // A second process registers the same type+host without a uuid: it gets
    // the same uuid, UP on its own lease; the first holder loses it.
    let second_client = connect(&etcd.endpoints(), &ns, TTL);
    let again = second_client.update(&Service::new("api", "h")).unwrap();
    assert_eq!(again, first);
    let raw = etcd.raw();
    assert_eq!(raw.keys(&format!("{ns}/services/by-uuid/")).len(), 1);
    assert_eq!(
        raw.get(&format!("{ns}/services/by-status/UP/{first}"))
            .map(|kv| kv.lease),
        Some(second_client.stats().lease_id)
    );
    assert!(
        wait_until(Duration::from_secs(10), || first_client
            .stats()
            .registrations_lost
            == 1),
        "the displaced holder counts the loss"
    );
    // The displaced holder's close does not take it DOWN.
    first_client.close().unwrap();
    assert!(second_client.is_up(&first).unwrap());
    // A uuid given that differs from the registered one is a conflict, and
    // exclusive refuses while the other holder's lease lives.
    let third = connect(&etcd.endpoints(), &ns, TTL);
    let before = raw.revision();
    let other = "00000000000000000000000000000001";
    let err = third
        .update(&Service::new("api", "h").with_uuid(other))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.to_string().contains(&first), "{err}");
    let err = third
        .update(&Service::new("api", "h").exclusive())
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(raw.revision(), before, "a conflict writes nothing");
    assert_eq!(third.stats().registrations_lost, 0, "nothing was held");
    assert!(second_client.is_up(&first).unwrap());
}

#[test]
fn invalid_input_is_refused_and_writes_nothing() {
    let etcd = Etcd::start();
    let ns = namespace("invalid");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let raw = etcd.raw();
    let before = raw.revision();
    let long = "x".repeat(os_lively::MAX_SEGMENT_LEN + 1);
    let bad = [
        Service::new("", "h"),
        Service::new("t", ""),
        Service::new("a/b", "h"),
        Service::new("t", "h/../x"),
        Service::new("t\0", "h"),
        Service::new("t", "h").with_region("r/1"),
        Service::new(&long, "h"),
        Service::new("t", "h").with_uuid("not-a-uuid"),
        Service::new("t", "h").with_uuid("3b059e33bbc44bc8b0d37df6e8d7022g"),
    ];
    for s in &bad {
        let err = client.update(s).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{s:?}: {err}");
    }
    for u in ["", "x", "../../etc", "3b059e33bbc44bc8b0d37df6e8d70223/x"] {
        assert_eq!(
            client.is_up(u).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            client.get(u).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            client.delete(u).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            client.down(u, "n", 0, 0).unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
    assert_eq!(
        client.is_up_by_type_host("a/b", "h").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        client
            .list(&Filter::all().region("a/b"))
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        client.update_bytes(b"\xff\xff\xff").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(raw.revision(), before, "invalid input must not write");
    assert!(raw.keys(&ns).is_empty());
}

#[test]
fn hyphenated_uuids_are_accepted_and_stored_plain() {
    let etcd = Etcd::start();
    let ns = namespace("hyphen");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = client
        .update(&Service::new("t", "h").with_uuid("3B059E33-BBC4-4BC8-B0D3-7DF6E8D70223"))
        .unwrap();
    assert_eq!(uuid, "3b059e33bbc44bc8b0d37df6e8d70223");
    assert!(
        client
            .is_up("3b059e33-bbc4-4bc8-b0d3-7df6e8d70223")
            .unwrap()
    );
}

#[test]
fn corrupt_and_foreign_keys_are_errors_or_skipped_never_panics() {
    let etcd = Etcd::start();
    let ns = namespace("corrupt");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let raw = etcd.raw();
    let good = client
        .update(&Service::new("t", "good").with_region("r"))
        .unwrap();
    let bad = "0123456789abcdef0123456789abcdef";
    raw.put(
        &format!("{ns}/services/by-uuid/{bad}"),
        b"\xff\xfe\x01garbage",
    );
    raw.put(&format!("{ns}/services/by-uuid/not-a-uuid"), b"");
    raw.put(&format!("{ns}/services/by-status/UP/{bad}"), b"");
    raw.put(&format!("{ns}/services/by-region/r/junk"), b"");
    raw.put(&format!("{ns}/services/something-else/x"), b"");
    let err = client.get(bad).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::CorruptRecord);
    assert!(
        err.to_string()
            .contains(&format!("{ns}/services/by-uuid/{bad}")),
        "{err}"
    );
    let listed: Vec<String> = client
        .list(&Filter::all())
        .unwrap()
        .into_iter()
        .map(|i| i.service.uuid)
        .collect();
    assert_eq!(listed, vec![good.clone()]);
    let listed: Vec<String> = client
        .list(&Filter::all().region("r"))
        .unwrap()
        .into_iter()
        .map(|i| i.service.uuid)
        .collect();
    assert_eq!(listed, vec![good]);
    // An operator can still delete the corrupt record.
    assert!(client.delete(bad).unwrap());
}

#[test]
fn records_written_by_the_python_library_read_correctly() {
    let etcd = Etcd::start();
    let ns = namespace("python");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let raw = etcd.raw();
    // What os-lively (Python) writes: region index without the uuid, and a
    // DOWN key bound to a lease.
    let up_uuid = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let down_uuid = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    let lease = raw.grant(60);
    let rec = |u: &str, st: Status| Service {
        uuid: u.into(),
        service_type: "nova".into(),
        host: u[..4].into(),
        status: st,
        region: "east".into(),
        ..Default::default()
    };
    raw.put(
        &format!("{ns}/services/by-uuid/{up_uuid}"),
        &rec(up_uuid, Status::Up).to_bytes(),
    );
    raw.put(
        &format!("{ns}/services/by-type-host/nova/aaaa"),
        up_uuid.as_bytes(),
    );
    raw.put_with_lease(&format!("{ns}/services/by-status/UP/{up_uuid}"), b"", lease);
    raw.put(&format!("{ns}/services/by-region/east"), b"");
    raw.put(
        &format!("{ns}/services/by-uuid/{down_uuid}"),
        &rec(down_uuid, Status::Down).to_bytes(),
    );
    raw.put_with_lease(
        &format!("{ns}/services/by-status/DOWN/{down_uuid}"),
        b"",
        lease,
    );
    assert!(client.is_up(up_uuid).unwrap());
    assert!(client.is_up_by_type_host("nova", "aaaa").unwrap());
    assert!(!client.is_up(down_uuid).unwrap());
    let mut east: Vec<String> = client
        .list(&Filter::all().region("east"))
        .unwrap()
        .into_iter()
        .map(|i| i.service.uuid)
        .collect();
    east.sort();
    assert_eq!(east, vec![up_uuid.to_string(), down_uuid.to_string()]);
    // Our update of a Python record takes it over cleanly.
    client.update(&rec(down_uuid, Status::Up)).unwrap();
    assert!(client.is_up(down_uuid).unwrap());
    assert!(
        raw.get(&format!("{ns}/services/by-status/DOWN/{down_uuid}"))
            .is_none()
    );
    // The Python library wrote no per-uuid region key; ours is written now.
    assert!(
        raw.get(&format!("{ns}/services/by-region/east/{down_uuid}"))
            .is_some()
    );
}

#[test]
fn region_lists_find_survivors_after_the_python_library_deletes_a_region_neighbour() {
    let etcd = Etcd::start();
    let ns = namespace("pydelete");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let raw = etcd.raw();
    let root = format!("{ns}/services");
    // Two services the Python library registered in "east": each wrote the
    // same uuid-less region key.
    let python = |u: &str, host: &str| python_register(&raw, &ns, "nova", host, u, "east");
    let doomed = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let survivor = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    python(doomed, "p1");
    python(survivor, "p2");
    let ours = client
        .update(&Service::new("nova", "r1").with_region("east"))
        .unwrap();
    client
        .update(&Service::new("nova", "r2").with_region("west"))
        .unwrap();
    // The Python library's delete of the first: record, type/host, both
    // status keys, and the region key it shares with the survivor.
    for key in [
        format!("{root}/by-uuid/{doomed}"),
        format!("{root}/by-type-host/nova/p1"),
        format!("{root}/by-region/east"),
        format!("{root}/by-status/UP/{doomed}"),
        format!("{root}/by-status/DOWN/{doomed}"),
    ] {
        raw.delete(&key);
    }
    let mut east: Vec<String> = client
        .list(&Filter::all().region("east"))
        .unwrap()
        .into_iter()
        .map(|i| i.service.uuid)
        .collect();
    east.sort();
    let mut want = vec![survivor.to_string(), ours];
    want.sort();
    assert_eq!(east, want, "region list after the Python delete");
    let down_east = client
        .list(&Filter::all().region("east").status(Status::Down))
        .unwrap();
    assert_eq!(down_east.len(), 1);
    assert_eq!(down_east[0].service.uuid, survivor);
}

#[test]
fn a_full_database_is_no_space_not_unavailable_and_reads_still_work() {
    let etcd = Etcd::start_with(EtcdOpts {
        extra_args: vec!["--quota-backend-bytes=1048576".into()],
        ..Default::default()
    });
    let ns = namespace("nospace");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = client.update(&Service::new("t", "h")).unwrap();
    let raw = etcd.raw();
    let filler = vec![b'x'; 200_000];
    let full = (0..50).any(|i| raw.try_put(&format!("{ns}/filler/{i}"), &filler).is_err());
    assert!(full, "etcd never reached its 1 MiB quota");
    let err = client.update(&Service::new("t", "h2")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NoSpace, "{err}");
    assert!(!err.is_transient(), "an operator must free space");
    assert!(client.is_up(&uuid).unwrap(), "reads still work");
}

#[test]
fn a_killed_registrant_goes_down_for_everyone_within_ttl_plus_2s() {
    let etcd = Etcd::start();
    let ns = namespace("kill");
    let observer = connect(&etcd.endpoints(), &ns, TTL);
    let mut child = Registrant::start(
        &etcd.endpoints(),
        &ns,
        TTL,
        &["--type", "nova", "--host", "h1"],
    );
    assert!(observer.is_up(&child.uuid).unwrap());
    child.kill();
    let killed = Instant::now();
    assert!(
        observer.is_up(&child.uuid).unwrap(),
        "UP until the TTL runs out"
    );
    assert!(
        wait_until(Duration::from_secs(TTL + 2), || !observer
            .is_up(&child.uuid)
            .unwrap()),
        "still UP {:?} after SIGKILL",
        killed.elapsed()
    );
    let info = observer.get(&child.uuid).unwrap().unwrap();
    assert!(!info.up);
    assert_eq!(
        info.service.status,
        Status::Up,
        "the record is kept; only liveness is gone"
    );
}

#[test]
fn unchanged_updates_write_nothing_and_keep_the_service_up_past_3_ttl() {
    let etcd = Etcd::start();
    let ns = namespace("unchanged");
    let raw = etcd.raw();
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let svc = Service::new("t", "h");
    let uuid = client.update(&svc).unwrap();
    let svc = svc.with_uuid(&uuid);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3 * TTL + 1) {
        let rev = raw.revision();
        client.update(&svc).unwrap();
        assert_eq!(raw.revision(), rev, "an unchanged update must not write");
        assert!(
            client.is_up(&uuid).unwrap(),
            "DOWN after {:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_restarted_daemon_with_its_saved_uuid_takes_over_its_up_key() {
    let etcd = Etcd::start();
    let ns = namespace("restart");
    let raw = etcd.raw();
    let observer = connect(&etcd.endpoints(), &ns, TTL);
    let mut first = Registrant::start(&etcd.endpoints(), &ns, TTL, &["--type", "d", "--host", "h"]);
    let uuid = first.uuid.clone();
    let dead_lease = raw
        .get(&format!("{ns}/services/by-status/UP/{uuid}"))
        .unwrap()
        .lease;
    first.kill();
    let second = Registrant::start(
        &etcd.endpoints(),
        &ns,
        TTL,
        &["--type", "d", "--host", "h", "--uuid", &uuid],
    );
    assert_eq!(second.uuid, uuid);
    let now_lease = raw
        .get(&format!("{ns}/services/by-status/UP/{uuid}"))
        .unwrap()
        .lease;
    assert_ne!(
        now_lease, dead_lease,
        "the UP key must move to the living process's lease"
    );
    // Well past the dead lease's expiry, still UP.
    assert!(wait_until(Duration::from_secs(TTL + 2), || raw
        .lease_ttl(dead_lease)
        < 0));
    assert!(observer.is_up(&uuid).unwrap());
}

#[test]
fn an_up_key_deleted_by_hand_comes_back_within_a_keepalive_period() {
    let etcd = Etcd::start();
    let ns = namespace("heal");
    let raw = etcd.raw();
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = client.update(&Service::new("t", "h")).unwrap();
    let up_key = format!("{ns}/services/by-status/UP/{uuid}");
    assert_eq!(raw.delete(&up_key), 1);
    let deleted = Instant::now();
    assert!(
        wait_until(Duration::from_millis(TTL * 1000 / 3 + 1000), || raw
            .get(&up_key)
            .is_some()),
        "UP key not restored"
    );
    assert_eq!(raw.get(&up_key).unwrap().lease, client.stats().lease_id);
    assert!(deleted.elapsed() < Duration::from_millis(TTL * 1000 / 3 + 1000));
    assert_eq!(client.stats().up_keys_restored, 1);
    // A deleted record is not restored.
    client.delete(&uuid).unwrap();
    std::thread::sleep(Duration::from_millis(TTL * 1000 / 3 + 300));
    assert!(raw.get(&up_key).is_none());
}

#[test]
fn close_makes_services_down_at_once() {
    let etcd = Etcd::start();
    let ns = namespace("close");
    let observer = connect(&etcd.endpoints(), &ns, 30);
    let client = connect(&etcd.endpoints(), &ns, 30);
    let uuid = client.update(&Service::new("t", "h")).unwrap();
    assert!(observer.is_up(&uuid).unwrap());
    let closed = Instant::now();
    client.close().unwrap();
    assert!(
        !observer.is_up(&uuid).unwrap(),
        "DOWN right after close, not after the 30 s TTL"
    );
    assert!(closed.elapsed() < Duration::from_secs(2));
}

#[test]
fn dropping_the_last_clone_revokes_too() {
    let etcd = Etcd::start();
    let ns = namespace("drop");
    let observer = connect(&etcd.endpoints(), &ns, 30);
    let client = connect(&etcd.endpoints(), &ns, 30);
    let clone = client.clone();
    let uuid = client.update(&Service::new("t", "h")).unwrap();
    drop(client);
    assert!(
        clone.is_up(&uuid).unwrap(),
        "a clone keeps the client alive"
    );
    drop(clone);
    assert!(!observer.is_up(&uuid).unwrap());
}

#[test]
fn sixteen_threads_share_one_client() {
    let etcd = Etcd::start();
    let ns = namespace("threads");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    std::thread::scope(|s| {
        for t in 0..16 {
            let client = client.clone();
            s.spawn(move || {
                let svc = Service::new("worker", &format!("h{t}"));
                let uuid = client.update(&svc).unwrap();
                let svc = svc.with_uuid(&uuid);
                for i in 0..1000 {
                    match i % 5 {
                        0 => assert!(client.is_up(&uuid).unwrap()),
                        1 => assert!(client.get(&uuid).unwrap().unwrap().up),
                        2 => assert!(
                            client
                                .is_up_by_type_host("worker", &format!("h{t}"))
                                .unwrap()
                        ),
                        3 => {
                            client.update(&svc).unwrap();
                        }
                        _ => assert_eq!(client.list(&Filter::all().uuid(&uuid)).unwrap().len(), 1),
                    }
                }
            });
        }
    });
    assert_eq!(
        client
            .list(&Filter::all().status(Status::Up))
            .unwrap()
            .len(),
        16
    );
}

#[test]
fn with_etcd_stopped_every_call_fails_within_its_timeout() {
    let mut etcd = Etcd::start();
    let ns = namespace("stopped");
    let mut cfg = config(&etcd.endpoints(), &ns, TTL);
    cfg.request_timeout(Duration::from_secs(1));
    let client = os_lively::Client::connect(&cfg).unwrap();
    let uuid = client.update(&Service::new("t", "h")).unwrap();
    etcd.stop();
    let limit = Duration::from_millis(1600);
    type Call<'a> = Box<dyn Fn() -> Option<ErrorKind> + 'a>;
    let calls: Vec<(&str, Call)> = vec![
        (
            "is_up",
            Box::new(|| client.is_up(&uuid).err().map(|e| e.kind())),
        ),
        (
            "get",
            Box::new(|| client.get(&uuid).err().map(|e| e.kind())),
        ),
        (
            "list",
            Box::new(|| client.list(&Filter::all()).err().map(|e| e.kind())),
        ),
        (
            "update",
            Box::new(|| {
                client
                    .update(&Service::new("t", "h2"))
                    .err()
                    .map(|e| e.kind())
            }),
        ),
        (
            "down",
            Box::new(|| client.down(&uuid, "", 0, 0).err().map(|e| e.kind())),
        ),
        (
            "delete",
            Box::new(|| client.delete(&uuid).err().map(|e| e.kind())),
        ),
    ];
    for (name, call) in calls {
        let t = Instant::now();
        let kind = call();
        assert!(
            matches!(
                kind,
                Some(ErrorKind::Unavailable) | Some(ErrorKind::Timeout)
            ),
            "{name}: {kind:?}"
        );
        assert!(t.elapsed() < limit, "{name} took {:?}", t.elapsed());
    }
    let t = Instant::now();
    let mut cfg2 = config(&etcd.endpoints(), &ns, TTL);
    cfg2.connect_timeout(Duration::from_secs(1));
    let err = os_lively::Client::connect(&cfg2).unwrap_err();
    assert!(t.elapsed() < limit, "connect took {:?}", t.elapsed());
    assert!(
        err.to_string().contains(&etcd.endpoint()),
        "error names the endpoint: {err}"
    );
}

#[test]
fn a_paused_etcd_expires_the_lease_and_the_client_re_registers_exactly_once() {
    let etcd = Etcd::start();
    let ns = namespace("pause");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let a = client.update(&Service::new("t", "a")).unwrap();
    let b = client.update(&Service::new("t", "b")).unwrap();
    let first_lease = client.stats().lease_id;
    etcd.pause();
    std::thread::sleep(Duration::from_secs(TTL + 2));
    etcd.resume();
    let observer = connect(&etcd.endpoints(), &ns, TTL);
    assert!(
        wait_until(Duration::from_secs(3 * TTL + 5), || {
            client.stats().lease_regrants >= 1
                && observer.is_up(&a).unwrap()
                && observer.is_up(&b).unwrap()
        }),
        "services did not come back: {:?}",
        client.stats()
    );
    // Give the heartbeat a few more periods: nothing may happen twice.
    std::thread::sleep(Duration::from_secs(TTL));
    let stats = client.stats();
    assert_eq!(stats.lease_regrants, 1, "{stats:?}");
    assert_eq!(
        stats.up_keys_restored, 2,
        "one re-put per service: {stats:?}"
    );
    assert_ne!(stats.lease_id, first_lease);
    assert!(observer.is_up(&a).unwrap() && observer.is_up(&b).unwrap());
}

#[test]
fn keepalives_resume_after_etcd_restarts_without_user_action() {
    let mut etcd = Etcd::start();
    let ns = namespace("etcdrestart");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = client.update(&Service::new("t", "h")).unwrap();
    for outage in [Duration::from_millis(300), Duration::from_secs(TTL + 1)] {
        etcd.kill();
        std::thread::sleep(outage);
        etcd.start_again();
        let sent = client.stats().keepalives_sent;
        assert!(
            wait_until(Duration::from_secs(3 * TTL + 5), || client
                .stats()
                .keepalives_sent
                > sent + 2),
            "keepalives did not resume after a {outage:?} outage: {:?}",
            client.stats()
        );
        // etcd restores leases on restart with a fresh TTL: the service
        // never reads DOWN once etcd answers again.
        let observer = connect(&etcd.endpoints(), &ns, TTL);
        let until = Instant::now() + Duration::from_secs(TTL + 1);
        while Instant::now() < until {
            assert!(
                observer.is_up(&uuid).unwrap(),
                "DOWN after a {outage:?} outage"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    assert!(client.stats().reconnects >= 2, "{:?}", client.stats());
    assert_eq!(
        client.stats().lease_regrants,
        0,
        "the lease survived: {:?}",
        client.stats()
    );
}

#[test]
fn writes_from_memory_never_override_what_another_client_did() {
    let etcd = Etcd::start();
    let ns = namespace("memory");
    let raw = etcd.raw();
    let owner = connect(&etcd.endpoints(), &ns, TTL);
    let operator = connect(&etcd.endpoints(), &ns, TTL);
    let svc = Service::new("t", "h").with_region("r1");
    let uuid = owner.update(&svc).unwrap();
    let svc = svc.with_uuid(&uuid);
    // Someone else forces it down: the owner's unchanged update must look,
    // see the forced DOWN, and leave it DOWN (an operator's decision).
    operator.down(&uuid, "maintenance", 0, 0).unwrap();
    owner.update(&svc).unwrap();
    assert!(!operator.is_up(&uuid).unwrap());
    operator.up(&uuid).unwrap();
    assert!(operator.is_up(&uuid).unwrap());
    // Someone else changes the record: the owner's next change must not be
    // written against the stale revision it remembers.
    operator.down(&uuid, "again", 0, 0).unwrap();
    let moved = svc.clone().with_region("r2");
    owner.update(&moved).unwrap();
    let info = operator.get(&uuid).unwrap().unwrap();
    assert!(!info.up, "still forced down");
    assert_eq!(info.service.region, "r2");
    assert_eq!(
        info.service.maintenance_note, "again",
        "the operator's note stays"
    );
    operator.up(&uuid).unwrap();
    let info = operator.get(&uuid).unwrap().unwrap();
    assert!(info.up);
    assert_eq!(info.service.maintenance_note, "", "lifting clears it");
    assert!(
        raw.get(&format!("{ns}/services/by-region/r1/{uuid}"))
            .is_none()
    );
    assert!(
        raw.get(&format!("{ns}/services/by-status/DOWN/{uuid}"))
            .is_none()
    );
    // And a uuid generated for a type+host already registered becomes that
    // uuid (identity is type+host), even though the first attempt writes
    // without reading: still one record.
    assert_eq!(owner.update(&Service::new("t", "h")).unwrap(), uuid);
    assert_eq!(raw.keys(&format!("{ns}/services/by-uuid/")).len(), 1);
}

#[test]
fn hundreds_of_services_come_back_together_after_a_lease_is_lost() {
    let etcd = Etcd::start();
    let ns = namespace("regrantmany");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let n = 300;
    let uuids: Vec<String> = (0..n)
        .map(|i| client.update(&Service::new("t", &format!("h{i}"))).unwrap())
        .collect();
    etcd.pause();
    std::thread::sleep(Duration::from_secs(TTL + 2));
    etcd.resume();
    let resumed = Instant::now();
    let observer = connect(&etcd.endpoints(), &ns, TTL);
    assert!(
        wait_until(Duration::from_secs(3 * TTL + 5), || {
            observer
                .list(&Filter::all().status(Status::Up))
                .unwrap()
                .len()
                == n
        }),
        "not every service came back: {:?}",
        client.stats()
    );
    let took = resumed.elapsed();
    let stats = client.stats();
    assert_eq!(stats.lease_regrants, 1, "{stats:?}");
    assert_eq!(
        stats.up_keys_restored, n as u64,
        "one re-put per service: {stats:?}"
    );
    assert!(uuids.iter().all(|u| observer.is_up(u).unwrap()));
    eprintln!("{n} services UP again {took:?} after etcd resumed");
}

/// Warnings logged by the library in this test process (all tests).
static WARNINGS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

unsafe extern "C" fn keep_warning(
    _: *mut std::ffi::c_void,
    level: os_lively::capi::lively_log_level,
    msg: *const std::ffi::c_char,
) {
    if level as u32 <= os_lively::capi::lively_log_level::Warn as u32 {
        // SAFETY: the library passes a NUL-terminated string valid for the call.
        let msg = unsafe { std::ffi::CStr::from_ptr(msg) }.to_string_lossy();
        WARNINGS.lock().unwrap().push(msg.into_owned());
    }
}

fn warned_about(uuid: &str) -> bool {
    WARNINGS.lock().unwrap().iter().any(|m| m.contains(uuid))
}

#[test]
fn a_client_learns_that_another_deleted_or_took_over_its_service() {
    assert_eq!(
        os_lively::capi::lively_set_log_callback(
            Some(keep_warning),
            std::ptr::null_mut(),
            os_lively::capi::lively_log_level::Warn as u32
        ),
        os_lively::capi::lively_result::Ok
    );
    let etcd = Etcd::start();
    let ns = namespace("lost");
    let raw = etcd.raw();
    let owner = connect(&etcd.endpoints(), &ns, TTL);
    let other = connect(&etcd.endpoints(), &ns, TTL);
    let deleted = owner.update(&Service::new("t", "deleted")).unwrap();
    let taken = owner.update(&Service::new("t", "taken")).unwrap();
    let held = owner.update(&Service::new("t", "held")).unwrap();
    let kept = owner.update(&Service::new("t", "kept")).unwrap();
    assert_eq!(owner.stats().registrations_lost, 0);

    assert!(other.delete(&deleted).unwrap());
    // Another process re-registers the uuid: its UP key moves to that lease.
    other
        .update(&Service::new("t", "taken").with_uuid(&taken))
        .unwrap();
    // An operator's forced DOWN is not a loss: the owner holds it, to lift.
    other.down(&held, "maintenance", 0, 0).unwrap();
    let period = Duration::from_millis(TTL * 1000 / 3);
    assert!(
        wait_until(period * 2 + Duration::from_secs(2), || owner
            .stats()
            .registrations_lost
            == 2),
        "the owner did not notice: {:?}",
        owner.stats()
    );
    assert!(
        wait_until(Duration::from_secs(2), || warned_about(&deleted)
            && warned_about(&taken)),
        "no warning names both services: {:?}",
        WARNINGS.lock().unwrap()
    );
    assert!(!warned_about(&kept));
    assert!(!warned_about(&held));
    // Dropped for good: later checks neither restore nor count them again.
    std::thread::sleep(period * 2);
    assert_eq!(owner.stats().registrations_lost, 2);
    assert!(
        raw.get(&format!("{ns}/services/by-uuid/{deleted}"))
            .is_none()
    );
    assert!(!other.is_up(&held).unwrap());
    assert!(other.is_up(&kept).unwrap());
    // Lifted, it is UP again on its owner's lease at once.
    other.up(&held).unwrap();
    assert!(other.is_up(&held).unwrap());

    // The owner registering it again makes it its own again: UP, and kept
    // UP (its UP key deleted by hand comes back).
    owner
        .update(&Service::new("t", "deleted").with_uuid(&deleted))
        .unwrap();
    assert!(other.is_up(&deleted).unwrap());
    let up_key = format!("{ns}/services/by-status/UP/{deleted}");
    assert_eq!(raw.delete(&up_key), 1);
    assert!(
        wait_until(period + Duration::from_secs(1), || raw
            .get(&up_key)
            .is_some()),
        "the re-registered service was not kept UP"
    );
}

/// An owner's `update()` racing with another client deleting its service:
/// whichever lands last wins, and if the owner's write leaves the service
/// UP, the owner keeps it UP (it is not dropped by a check that read the
/// service gone just before the write).
#[test]
fn an_update_racing_with_a_delete_by_another_client_leaves_no_orphaned_up_service() {
    let etcd = Etcd::start();
    let ns = namespace("lost-race");
    let raw = etcd.raw();
    let owner = connect(&etcd.endpoints(), &ns, TTL);
    let other = connect(&etcd.endpoints(), &ns, TTL);
    let svc = Service::new("t", "racy");
    let uuid = owner.update(&svc).unwrap();
    let svc = svc.with_uuid(&uuid);
    // Many rounds spread over several keepalive periods, so the owner's
    // checks read the record at every point of the race.
    let until = Instant::now() + Duration::from_millis(TTL * 1000);
    while Instant::now() < until {
        other.delete(&uuid).unwrap();
        owner.update(&svc).unwrap();
    }
    assert!(other.is_up(&uuid).unwrap());
    // Let any check that was running finish, then see who keeps it UP.
    let period = Duration::from_millis(TTL * 1000 / 3);
    std::thread::sleep(period * 2);
    let up_key = format!("{ns}/services/by-status/UP/{uuid}");
    assert_eq!(raw.delete(&up_key), 1, "not UP after the race");
    assert!(
        wait_until(period + Duration::from_secs(1), || raw
            .get(&up_key)
            .is_some()),
        "UP after the race, but no client keeps it UP: {:?}",
        owner.stats()
    );
}

fn region_uuids(client: &os_lively::Client, region: &str) -> Vec<String> {
    let mut found: Vec<String> = client
        .list(&Filter::all().region(region))
        .unwrap()
        .into_iter()
        .map(|i| i.service.uuid)
        .collect();
    found.sort();
    found
}

/// The census that lets region lists go through the region index (a key
/// of our own outside `services/`, on a short lease) and every way the
/// Python library can make that index incomplete after it was taken.
#[test]
fn region_lists_use_the_index_under_a_census_and_still_see_the_python_library() {
    let etcd = Etcd::start();
    let ns = namespace("census");
    let raw = etcd.raw();
    let root = format!("{ns}/services");
    let census_key = format!("{ns}/os-lively/region-census");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let mut east = vec![
        client
            .update(&Service::new("nova", "e1").with_region("east"))
            .unwrap(),
        client
            .update(&Service::new("nova", "e2").with_region("east"))
            .unwrap(),
    ];
    client
        .update(&Service::new("nova", "w1").with_region("west"))
        .unwrap();
    east.sort();
    // A reader (a client that registered nothing) lists by reading every
    // record, and writes no census: readers never write.
    let reader = connect(&etcd.endpoints(), &ns, TTL);
    assert_eq!(region_uuids(&reader, "east"), east);
    assert!(raw.get(&census_key).is_none(), "a reader wrote the census");
    // A registering client's first list reads every record and, the index
    // being complete, takes the census: on a lease, outside the keys the
    // Python library reads and deletes.
    assert_eq!(region_uuids(&client, "east"), east);
    let census = raw.get(&census_key).expect("census taken");
    assert_ne!(census.lease, 0, "the census lives on a lease");
    assert_eq!(region_uuids(&client, "east"), east);

    // The Python library registers a service in east after the census: its
    // uuid-less region key is newer than the census.
    let python = |u: &str, host: &str| python_register(&raw, &ns, "nova", host, u, "east");
    let py = "cccccccccccccccccccccccccccccccc".to_string();
    python(&py, "p1");
    let mut with_py = east.clone();
    with_py.push(py.clone());
    with_py.sort();
    assert_eq!(region_uuids(&client, "east"), with_py);
    // West is not affected by east's Python key.
    assert_eq!(region_uuids(&client, "west").len(), 1);

    // The Python library deletes one of ours (it reads our records): it
    // deletes the shared region key but not our per-uuid one. The survivors
    // are still listed, the deleted one is not.
    let gone = east[0].clone();
    for key in [
        format!("{root}/by-uuid/{gone}"),
        format!("{root}/by-type-host/nova/e1"),
        format!("{root}/by-type-host/nova/e2"),
        format!("{root}/by-region/east"),
        format!("{root}/by-status/UP/{gone}"),
        format!("{root}/by-status/DOWN/{gone}"),
    ] {
        raw.delete(&key);
    }
    assert!(
        raw.get(&format!("{root}/by-region/east/{gone}")).is_some(),
        "the Python delete leaves our index key behind"
    );
    let mut survivors: Vec<String> = with_py.into_iter().filter(|u| *u != gone).collect();
    survivors.sort();
    assert_eq!(region_uuids(&client, "east"), survivors);

    // A new client (its census attempts are its own) lists east: the index
    // misses the Python survivor, so no census is taken, and a census that
    // expired is not renewed.
    raw.delete(&census_key);
    let other = connect(&etcd.endpoints(), &ns, TTL);
    assert_eq!(region_uuids(&other, "east"), survivors);
    assert!(
        raw.get(&census_key).is_none(),
        "no census while a record the Python library wrote is not in the index"
    );
    // Once we take that service over (an update of ours indexes it), the
    // next census clears the key the Python delete left and is taken.
    let mut taken = Service {
        uuid: py.clone(),
        service_type: "nova".into(),
        host: "p1".into(),
        status: Status::Down,
        region: "east".into(),
        ..Default::default()
    };
    taken.status = Status::Up;
    other.update(&taken).unwrap();
    // A new registering client (only those take a census).
    let third = connect(&etcd.endpoints(), &ns, TTL);
    third.update(&Service::new("lister", "l1")).unwrap();
    assert_eq!(region_uuids(&third, "east"), survivors);
    assert!(raw.get(&census_key).is_some(), "census taken");
    assert!(
        raw.get(&format!("{root}/by-region/east/{gone}")).is_none(),
        "the census clears index keys whose record is gone"
    );
    assert_eq!(region_uuids(&third, "east"), survivors);

    // The documented limit, which also shows the index answers: a record of
    // east with neither our index key nor the Python library's region key
    // (what it leaves after registering two services and deleting one,
    // both after the census) is missed while the census lives, and found
    // once it is gone.
    let hidden = "dddddddddddddddddddddddddddddddd".to_string();
    python(&hidden, "p9");
    raw.delete(&format!("{root}/by-region/east"));
    assert_eq!(region_uuids(&third, "east"), survivors);
    raw.delete(&census_key);
    let mut all = survivors.clone();
    all.push(hidden);
    all.sort();
    assert_eq!(region_uuids(&third, "east"), all);
}
