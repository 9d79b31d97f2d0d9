//! The heartbeat-deadline acceptance check, shared by the Rust, C and CLI
//! tests: an owner (a child process) stops checking in; another client, a
//! view and a subscriber see its service DOWN (missed) within D + 0.3 s
//! while a service without a deadline stays UP; the owner resumes and the
//! service is UP again with exactly one `up` event.

use std::time::{Duration, Instant};

use os_lively::{DownReason, Event, EventKind, Filter, Service, Status, SubscribeOptions};

use super::{Etcd, connect, wait_until};

/// The goal is D + 0.3 s; a loaded shared machine gets this much more in
/// the assertion (the measured values are printed).
pub const DEADLINE_SLACK: Duration = Duration::from_millis(700);

/// How long each observer took to see the DOWN, after the owner stopped.
#[derive(Debug)]
pub struct Seen {
    pub client: Duration,
    pub view: Duration,
    pub subscriber: Duration,
}

/// Waits for the next event about `uuid`, skipping others.
pub fn next_about(sub: &os_lively::Subscription, uuid: &str, within: Duration) -> Option<Event> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match sub.recv_timeout(left).unwrap() {
            Some(e) if e.uuid == uuid => return Some(e),
            Some(_) => {}
            None => return None,
        }
    }
}

/// Runs the acceptance check on `worker` (deadline `d`), whose owner's
/// check-ins `stop()` stops and `resume()` resumes; `plain` (if any) has no
/// deadline and must stay UP throughout.
pub fn missed_then_back(
    etcd: &Etcd,
    ns: &str,
    worker: &str,
    plain: Option<&str>,
    d: Duration,
    stop: impl FnOnce(),
    resume: impl FnOnce(),
) -> Seen {
    let observer = connect(&etcd.endpoints(), ns, 3);
    let view = observer.view().unwrap();
    let sub = observer
        .subscribe(&Filter::all(), &SubscribeOptions::default())
        .unwrap();
    let plain_up = |v: &os_lively::View| plain.is_none_or(|p| v.is_up(p).unwrap());
    assert!(wait_until(Duration::from_secs(5), || {
        view.is_up(worker).unwrap() && plain_up(&view)
    }));
    assert!(observer.is_up(worker).unwrap());
    let rec = observer.get(worker).unwrap().unwrap().service;
    assert_eq!(rec.heartbeat, Some(d), "the record states its deadline");

    stop();
    let stopped = Instant::now();
    let limit = d + Duration::from_millis(300) + DEADLINE_SLACK;
    let (mut at_client, mut at_view, mut at_sub) = (None, None, None);
    let mut down_event = None;
    while (at_client.is_none() || at_view.is_none() || at_sub.is_none())
        && stopped.elapsed() < limit + Duration::from_secs(1)
    {
        if at_sub.is_none() {
            if let Some(e) = sub.recv_timeout(Duration::from_millis(5)).unwrap() {
                assert!(
                    Some(e.uuid.as_str()) != plain,
                    "no event for the other service: {e:?}"
                );
                if e.uuid == worker {
                    at_sub = Some(stopped.elapsed());
                    down_event = Some(e);
                }
            }
        } else {
            std::thread::sleep(Duration::from_millis(5));
        }
        if at_view.is_none() && !view.is_up(worker).unwrap() {
            at_view = Some(stopped.elapsed());
        }
        if at_client.is_none() && !observer.is_up(worker).unwrap() {
            at_client = Some(stopped.elapsed());
        }
        assert!(plain_up(&view), "the service without a deadline stays UP");
    }
    eprintln!(
        "missed deadline (D = {d:?}) seen DOWN after: client {at_client:?}, view {at_view:?}, subscriber {at_sub:?} (goal D + 300 ms)"
    );
    let mut got = Vec::new();
    for (who, at) in [
        ("another client", at_client),
        ("a view", at_view),
        ("a subscriber", at_sub),
    ] {
        let at = at.unwrap_or_else(|| panic!("{who} never saw the DOWN"));
        assert!(
            at >= d - Duration::from_millis(100),
            "{who}: too early, {at:?}"
        );
        assert!(at <= limit, "{who}: {at:?} > {limit:?}");
        got.push(at);
    }
    let e = down_event.unwrap();
    assert_eq!(
        (e.kind, e.reason),
        (EventKind::Down, Some(DownReason::Missed))
    );
    // Stored as the original library reads it: status DOWN (field 4).
    let raw = etcd.raw();
    let stored = raw.get(&format!("{ns}/services/by-uuid/{worker}")).unwrap();
    let s = Service::from_bytes(&stored.value).unwrap();
    assert_eq!((s.status, s.heartbeat_missed), (Status::Down, true));
    assert!(
        raw.get(&format!("{ns}/services/by-status/DOWN/{worker}"))
            .is_some()
    );
    assert!(
        raw.get(&format!("{ns}/services/by-status/UP/{worker}"))
            .is_none()
    );

    // Still DOWN, one event only, while the loop stays stopped; the other
    // service is UP throughout.
    let more = next_about(&sub, worker, Duration::from_millis(1500));
    assert!(more.is_none(), "{more:?}");
    assert!(plain.is_none_or(|p| observer.is_up(p).unwrap()));

    resume();
    let resumed = Instant::now();
    let up = next_about(&sub, worker, Duration::from_secs(5)).expect("an up event");
    eprintln!("check-in resumed → UP event after {:?}", resumed.elapsed());
    assert_eq!((up.kind, up.reason), (EventKind::Up, None));
    assert!(observer.is_up(worker).unwrap());
    assert!(wait_until(Duration::from_secs(2), || view
        .is_up(worker)
        .unwrap()));
    let s = observer.get(worker).unwrap().unwrap().service;
    assert_eq!((s.status, s.heartbeat_missed), (Status::Up, false));
    // Exactly one `up` event: nothing more while the loop runs.
    let more = next_about(&sub, worker, Duration::from_secs(2));
    assert!(more.is_none(), "{more:?}");
    assert!(plain.is_none_or(|p| observer.is_up(p).unwrap()));
    Seen {
        client: got[0],
        view: got[1],
        subscriber: got[2],
    }
}
