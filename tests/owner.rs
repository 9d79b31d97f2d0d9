//! One owner per service: where features meet. Each test here failed on
//! the code before the owner registry (issue 19).

mod common;

use std::time::Duration;

use common::*;
use os_lively::{
    DownReason, ErrorKind, Event, EventKind, Filter, Service, Status, SubscribeOptions,
};

const TTL: u64 = 2;

/// The next event about `uuid` of `kind`, skipping others.
fn next_of(sub: &os_lively::Subscription, uuid: &str, kind: EventKind) -> Option<Event> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Some(e) = sub.recv_timeout(Duration::from_millis(200)).unwrap() {
            if e.uuid == uuid && e.kind == kind {
                return Some(e);
            }
        }
    }
    None
}

#[test]
fn a_daemon_killed_and_started_again_without_its_uuid_gets_its_service_back() {
    let etcd = Etcd::start();
    let ns = namespace("restart");
    let reader = connect(&etcd.endpoints(), &ns, TTL);
    let args = ["--type", "t", "--host", "h"];
    let mut first = Registrant::start(&etcd.endpoints(), &ns, TTL, &args);
    assert!(reader.is_up(&first.uuid).unwrap());
    first.kill();
    // Started again at once, the same way: no conflict, same uuid, UP.
    let second = Registrant::start(&etcd.endpoints(), &ns, TTL, &args);
    assert_eq!(second.uuid, first.uuid);
    assert!(reader.is_up(&second.uuid).unwrap());
    // Still UP after the dead process's lease ran out.
    std::thread::sleep(Duration::from_secs(TTL) + Duration::from_millis(1500));
    assert!(reader.is_up(&second.uuid).unwrap());
    // A clean exit, then a start again: the same.
    let mut second = second;
    second.finish();
    assert!(!reader.is_up(&second.uuid).unwrap());
    let third = Registrant::start(&etcd.endpoints(), &ns, TTL, &args);
    assert_eq!(third.uuid, first.uuid);
    assert!(reader.is_up(&third.uuid).unwrap());
    // --exclusive refuses while the holder lives.
    let out = std::process::Command::new(oslively_bin())
        .args(["register", "--exclusive"])
        .args(args)
        .env("OSLIVELY_ETCD_ENDPOINTS", etcd.endpoints().join(","))
        .env("OSLIVELY_ETCD_KEY_NAMESPACE", &ns)
        .env("OSLIVELY_STATUS_TTL", TTL.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(reader.is_up(&third.uuid).unwrap());
}

#[test]
fn an_operators_up_does_not_revive_what_its_owner_set_down() {
    let etcd = Etcd::start();
    let ns = namespace("ownerdown");
    let owner = connect(&etcd.endpoints(), &ns, TTL);
    let operator = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = owner.update(&Service::new("t", "h")).unwrap();
    operator.down(&uuid, "disk", 0, 0).unwrap();
    // The owner sets it DOWN itself while it is held.
    let mut down = Service::new("t", "h").with_uuid(&uuid);
    down.status = Status::Down;
    owner.update(&down).unwrap();
    operator.up(&uuid).unwrap();
    let info = operator.get(&uuid).unwrap().unwrap();
    assert!(!info.up);
    assert_eq!(info.service.status, Status::Down, "the owner's DOWN stays");
    assert!(!info.service.forced_down, "the hold is lifted");
    std::thread::sleep(Duration::from_secs(1));
    assert!(!operator.is_up(&uuid).unwrap());
}

#[test]
fn close_is_never_undone_by_writes_in_flight() {
    let etcd = Etcd::start();
    let ns = namespace("closerace");
    let raw = etcd.raw();
    for round in 0..3 {
        let client = connect(&etcd.endpoints(), &ns, 30);
        client
            .update(&Service::new("t", &format!("r{round}")))
            .unwrap();
        let writers: Vec<_> = (0..4)
            .map(|i| {
                let c = client.clone();
                std::thread::spawn(move || {
                    for n in 0.. {
                        let s = Service::new("w", &format!("{round}-{i}-{n}"));
                        if c.update(&s).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(50));
        client.close().unwrap();
        for w in writers {
            w.join().unwrap();
        }
        // Nothing of this client is UP, now or later: no lease survives.
        assert!(raw.keys(&format!("{ns}/services/by-status/UP/")).is_empty());
        std::thread::sleep(Duration::from_millis(300));
        assert!(raw.leases().is_empty(), "a lease granted after close");
        assert!(raw.keys(&format!("{ns}/services/by-status/UP/")).is_empty());
    }
}

#[test]
fn after_a_takeover_in_a_window_the_new_holder_wins_the_lift() {
    let etcd = Etcd::start();
    let ns = namespace("takelift");
    let stale = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = stale.update(&Service::new("t", "h")).unwrap();
    let operator = connect(&etcd.endpoints(), &ns, TTL);
    operator.down(&uuid, "swap", 0, now_secs() + 2).unwrap();
    let fresh = connect(&etcd.endpoints(), &ns, TTL);
    assert_eq!(fresh.update(&Service::new("t", "h")).unwrap(), uuid);
    assert!(!operator.is_up(&uuid).unwrap(), "still held");
    let raw = etcd.raw();
    let up_key = format!("{ns}/services/by-status/UP/{uuid}");
    assert!(
        wait_until(Duration::from_secs(6), || raw.get(&up_key).is_some()),
        "lifted at the window's end"
    );
    assert_eq!(raw.get(&up_key).unwrap().lease, fresh.stats().lease_id);
    // The stale holder never puts it on its own lease.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(raw.get(&up_key).unwrap().lease, fresh.stats().lease_id);
    assert!(operator.is_up(&uuid).unwrap());
}

#[test]
fn after_a_regrant_a_held_service_comes_up_at_once_when_lifted() {
    let etcd = Etcd::start();
    let ns = namespace("regrantheld");
    let owner = connect(&etcd.endpoints(), &ns, TTL);
    let operator = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = owner.update(&Service::new("t", "h")).unwrap();
    operator.down(&uuid, "", 0, 0).unwrap();
    let raw = etcd.raw();
    raw.revoke(owner.stats().lease_id);
    assert!(
        wait_until(Duration::from_secs(10), || owner.stats().lease_regrants
            == 1),
        "re-granted"
    );
    let new_lease = format!("{:x}", owner.stats().lease_id);
    let down_key = format!("{ns}/services/by-status/DOWN/{uuid}");
    assert!(
        wait_until(Duration::from_secs(5), || raw
            .get(&down_key)
            .is_some_and(|kv| kv.value_str() == new_lease)),
        "the hold names the new lease"
    );
    operator.up(&uuid).unwrap();
    assert!(operator.is_up(&uuid).unwrap(), "UP at once");
}

#[test]
fn a_refused_or_failed_registration_leaves_nothing_behind() {
    let mut etcd = Etcd::start();
    let ns = namespace("failedreg");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    client.update(&Service::new("keep", "h")).unwrap();
    etcd.stop();
    let uuid = "0123456789abcdef0123456789abcdef";
    let err = client
        .update(
            &Service::new("t", "h")
                .with_uuid(uuid)
                .with_heartbeat(Duration::from_millis(500)),
        )
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(
        client.heartbeat(uuid).unwrap_err().kind(),
        ErrorKind::NotFound,
        "no deadline slot for a registration that failed"
    );
    etcd.start_again();
    // A refused one (another uuid holds the type+host) is not a lost one.
    let other = connect(&etcd.endpoints(), &ns, TTL);
    let err = other
        .update(&Service::new("keep", "h").with_uuid(uuid))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    std::thread::sleep(Duration::from_secs(TTL));
    assert_eq!(other.stats().registrations_lost, 0);
    assert_eq!(client.stats().registrations_lost, 0);
}

#[test]
fn a_window_end_far_in_the_future_does_not_stop_other_lifts() {
    let etcd = Etcd::start();
    let ns = namespace("farend");
    let owner = connect(&etcd.endpoints(), &ns, TTL);
    let far = owner.update(&Service::new("t", "far")).unwrap();
    let near = owner.update(&Service::new("t", "near")).unwrap();
    owner.down(&far, "", 0, u64::MAX - 1).unwrap();
    owner.down(&near, "", 0, now_secs() + 2).unwrap();
    assert!(
        wait_until(Duration::from_secs(6), || owner.is_up(&near).unwrap()),
        "the near window is lifted"
    );
    assert!(!owner.is_up(&far).unwrap());
}

#[test]
fn watchers_tell_a_shutdown_a_crash_an_owners_down_and_a_takeover_apart() {
    let etcd = Etcd::start();
    let ns = namespace("reasons");
    let watcher = connect(&etcd.endpoints(), &ns, TTL);
    let sub = watcher
        .subscribe(&Filter::default(), &SubscribeOptions::default())
        .unwrap();
    let a = connect(&etcd.endpoints(), &ns, TTL);
    let declared = a.update(&Service::new("t", "declared")).unwrap();
    let closed = a.update(&Service::new("t", "closed")).unwrap();
    let moved = a.update(&Service::new("t", "moved")).unwrap();
    let mut down = Service::new("t", "declared");
    down.status = Status::Down;
    a.update(&down).unwrap();
    let e = next_of(&sub, &declared, EventKind::Down).expect("down");
    assert_eq!(e.reason, Some(DownReason::Declared));
    let b = connect(&etcd.endpoints(), &ns, TTL);
    assert_eq!(b.update(&Service::new("t", "moved")).unwrap(), moved);
    let e = next_of(&sub, &moved, EventKind::Updated).expect("takeover");
    assert_eq!(e.reason, Some(DownReason::Moved));
    assert_eq!(e.new_status, Some(Status::Up));
    let view = watcher.view().unwrap();
    a.close().unwrap();
    let e = next_of(&sub, &closed, EventKind::Down).expect("closed");
    assert_eq!(e.reason, Some(DownReason::Closed));
    // Readers tell them apart too: a point read, a full list, a view.
    let reason = |u: &str| watcher.get(u).unwrap().unwrap().down_reason();
    assert_eq!(reason(&closed), Some(DownReason::Closed));
    assert_eq!(reason(&declared), Some(DownReason::Declared));
    let listed = watcher.list(&Filter::default()).unwrap();
    let in_list = listed.iter().find(|i| i.service.uuid == closed).unwrap();
    assert_eq!(in_list.down_reason(), Some(DownReason::Closed));
    assert!(
        wait_until(Duration::from_secs(5), || view
            .get(&closed)
            .unwrap()
            .is_some_and(|i| i.down_reason() == Some(DownReason::Closed))),
        "the view says closed"
    );
    // A crash: the lease runs out (revoked by hand, as etcd does at expiry).
    let crashed = b.update(&Service::new("t", "crashed")).unwrap();
    etcd.raw().revoke(b.stats().lease_id);
    let e = next_of(&sub, &crashed, EventKind::Down).expect("expired");
    assert_eq!(e.reason, Some(DownReason::Expired));
    assert_eq!(
        watcher.get(&crashed).unwrap().unwrap().down_reason(),
        Some(DownReason::Expired)
    );
}

/// The heartbeat × maintenance scenario from the command line: `register
/// --heartbeat`, its lines stop (DOWN, missed), `oslively down --end +3s`,
/// the lines resume, the window ends: UP again.
#[test]
fn heartbeat_through_maintenance_from_the_command_line() {
    use std::io::Write;
    let etcd = Etcd::start();
    let ns = namespace("clihbmaint");
    let reader = connect(&etcd.endpoints(), &ns, TTL);
    let mut daemon = Registrant::start(
        &etcd.endpoints(),
        &ns,
        TTL,
        &["--type", "t", "--host", "h", "--heartbeat", "1"],
    );
    let uuid = daemon.uuid.clone();
    let mut stdin = daemon.take_stdin();
    assert!(reader.is_up(&uuid).unwrap());
    // No line for over a second: DOWN (missed).
    assert!(
        wait_until(Duration::from_secs(5), || !reader.is_up(&uuid).unwrap()),
        "missed"
    );
    let out = std::process::Command::new(oslively_bin())
        .args(["down", &uuid, "--note", "fix", "--end", "+3s"])
        .env("OSLIVELY_ETCD_ENDPOINTS", etcd.endpoints().join(","))
        .env("OSLIVELY_ETCD_KEY_NAMESPACE", &ns)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // The main loop lives again: a line every 200 ms.
    let feeder = std::thread::spawn(move || {
        for _ in 0..60 {
            if writeln!(stdin, "tick").and_then(|_| stdin.flush()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    std::thread::sleep(Duration::from_millis(600));
    assert!(!reader.is_up(&uuid).unwrap(), "held by the operator");
    assert!(
        wait_until(Duration::from_secs(8), || reader.is_up(&uuid).unwrap()),
        "UP again when the window ends"
    );
    daemon.kill();
    let _ = feeder.join();
}
