//! Sticky maintenance: the rule that keeps an operator's forced DOWN through
//! its owner's writes, and the owner's timer that lifts it when the
//! maintenance window ends.
//!
//! A forced DOWN is an operator's decision (`down()`), so the owner's
//! `update()` or check-in must not undo it: the record keeps `forced_down`,
//! status DOWN and the operator's window and note, while the owner's other
//! fields (region, type, host) still change. Only `up()` lifts it, or the
//! window's end passing: the owner's client (the one that keeps the service
//! UP) holds a timer per forced service and lifts it then, binding the UP
//! key to its lease in the same transaction.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, watch};

use crate::error::ErrorKind;
use crate::heartbeat::{Lease, with_live_lease};
use crate::record::{Service, Status};
use crate::store::{Bind, Store};

/// Seconds since the epoch, as maintenance windows are written.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// True when `s`'s maintenance window has an end and it has passed.
pub(crate) fn window_over(s: &Service, now: u64) -> bool {
    s.maintenance_end != 0 && s.maintenance_end <= now
}

/// What an owner's write stores, given what is stored (`old`) and what the
/// owner wants (`desired`): the owner's record, except that a forced DOWN
/// whose window has not ended stays, with the operator's window and note.
pub(crate) fn owner_record(old: Option<&Service>, desired: &Service, now: u64) -> Service {
    let mut new = desired.clone();
    new.forced_down = false;
    if let Some(o) = old.filter(|o| o.forced_down && !window_over(o, now)) {
        new.status = Status::Down;
        new.forced_down = true;
        new.maintenance_start = o.maintenance_start;
        new.maintenance_end = o.maintenance_end;
        new.maintenance_note = o.maintenance_note.clone();
    }
    new
}

/// `old` with its forced DOWN lifted: UP again, maintenance cleared.
pub(crate) fn lifted(old: &Service) -> Service {
    Service {
        status: Status::Up,
        forced_down: false,
        maintenance_start: 0,
        maintenance_end: 0,
        maintenance_note: String::new(),
        ..old.clone()
    }
}

/// How soon a failed lift is tried again.
const RETRY: Duration = Duration::from_secs(1);

/// The owner's timers: for each forced-down service this client owns, the
/// end of its maintenance window.
#[derive(Default)]
pub(crate) struct Maintenance {
    due: Mutex<BTreeMap<String, u64>>,
    wake: Notify,
}

impl Maintenance {
    fn due(&self) -> MutexGuard<'_, BTreeMap<String, u64>> {
        // Plain data, valid even if a holder panicked.
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An owned service is forced down until `end` (seconds since the
    /// epoch; 0: until `up()`, so no timer).
    pub(crate) fn hold(&self, uuid: &str, end: u64) {
        {
            let mut due = self.due();
            if end == 0 {
                due.remove(uuid);
            } else if due.insert(uuid.to_string(), end) == Some(end) {
                return;
            }
        }
        self.wake.notify_one();
    }

    /// Forgets `uuid`'s timer (lifted, deleted, no longer ours).
    pub(crate) fn release(&self, uuid: &str) {
        self.due().remove(uuid);
    }

    /// The timer task on the runtime thread: sleeps until the earliest end,
    /// lifts every service due, until `stop` turns true.
    pub(crate) async fn run(
        self: Arc<Self>,
        lease: Arc<Lease>,
        store: Store,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            if *stop.borrow() {
                return;
            }
            let next = self.due().values().min().copied();
            // Idle: a long sleep; any new hold wakes it.
            let wait = next.map_or(Duration::from_secs(3600), |end| {
                (UNIX_EPOCH + Duration::from_secs(end))
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
            });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.wake.notified() => continue,
                _ = stop.changed() => return,
            }
            let now = now_secs();
            let due: Vec<(String, u64)> = self
                .due()
                .iter()
                .filter(|(_, end)| **end <= now)
                .map(|(u, e)| (u.clone(), *e))
                .collect();
            for (uuid, end) in due {
                if !lease.owns(&uuid) {
                    self.release(&uuid);
                    continue;
                }
                let s = store.clone();
                let u = uuid.clone();
                let lifted = with_live_lease(&lease, |id| {
                    let s = s.clone();
                    let u = u.clone();
                    async move { s.lift(&u, Bind::Ours(id), Some(now)).await }
                })
                .await;
                match lifted {
                    Ok(_) => {
                        log::info!("os-lively: maintenance of {uuid} ended; UP again");
                        self.release_if(&uuid, end);
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => self.release_if(&uuid, end),
                    Err(e) => {
                        log::warn!(
                            "os-lively: lifting {uuid} at the end of its maintenance failed, will retry: {e}"
                        );
                        self.due().insert(uuid, now_secs() + RETRY.as_secs().max(1));
                    }
                }
            }
        }
    }

    /// Forgets `uuid`'s timer unless it was re-armed for another end.
    fn release_if(&self, uuid: &str, end: u64) {
        let mut due = self.due();
        if due.get(uuid) == Some(&end) {
            due.remove(uuid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forced(end: u64) -> Service {
        Service {
            uuid: "u".into(),
            service_type: "t".into(),
            host: "h".into(),
            status: Status::Down,
            region: "east".into(),
            maintenance_start: 10,
            maintenance_end: end,
            maintenance_note: "disk".into(),
            forced_down: true,
            heartbeat: None,
            heartbeat_missed: false,
        }
    }

    #[test]
    fn an_owner_write_keeps_a_forced_down_until_its_window_ends() {
        let mut desired = Service::new("t", "h2").with_region("west");
        desired.uuid = "u".into();
        desired.forced_down = true; // ignored: only down() sets it
        let kept = owner_record(Some(&forced(100)), &desired, 99);
        assert_eq!(kept.status, Status::Down);
        assert!(kept.forced_down);
        assert_eq!(kept.host, "h2", "the owner's other fields change");
        assert_eq!(kept.region, "west");
        assert_eq!(
            (kept.maintenance_start, kept.maintenance_end),
            (10, 100),
            "the operator's window stays"
        );
        assert_eq!(kept.maintenance_note, "disk");
        // No end: held until up().
        assert!(owner_record(Some(&forced(0)), &desired, u64::MAX).forced_down);
        // The window is over: the owner's record as it is.
        let after = owner_record(Some(&forced(100)), &desired, 100);
        assert_eq!((after.status, after.forced_down), (Status::Up, false));
        // Not forced: the owner's record, never forced by its own say.
        assert!(!owner_record(None, &desired, 0).forced_down);
    }

    #[test]
    fn lifting_clears_the_maintenance() {
        let l = lifted(&forced(100));
        assert_eq!((l.status, l.forced_down), (Status::Up, false));
        assert_eq!((l.maintenance_start, l.maintenance_end), (0, 0));
        assert_eq!(l.maintenance_note, "");
        assert_eq!((l.host.as_str(), l.region.as_str()), ("h", "east"));
    }
}
