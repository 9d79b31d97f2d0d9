//! Heartbeat deadlines: main-loop liveness for the services that ask for it.
//!
//! A service registered with [`Service::with_heartbeat`](crate::Service::with_heartbeat)
//! stays UP only while its owner checks in at least every D. A check-in is
//! local: it stores a timestamp in the service's slot (found in a map read
//! under a read lock; no allocation, no round trip). The runtime thread runs
//! one timer task per client that wakes at the earliest due time; when a
//! slot is overdue it takes the service DOWN in one guarded transaction
//! (record DOWN with `heartbeat_missed`, UP key deleted, DOWN key written),
//! so every reader, view and subscriber sees it at once, and subscribers get
//! [`DownReason::Missed`](crate::DownReason::Missed). The next check-in
//! brings it back UP in one transaction.
//!
//! One transition per service runs at a time (the slot's `busy` flag); after
//! each, the slot is judged again, so a check-in that lands while the DOWN
//! transaction is in flight ends UP, never stuck DOWN. All atomics are
//! SeqCst: a check-in stores its time then reads the phase; a transition
//! stores the phase (then clears `busy`) then reads the time. One of them
//! sees the other, so no check-in is lost.
//!
//! Only a record that says UP with its UP key on this client's lease (or
//! missing) is taken down, and only a record this client marked
//! `heartbeat_missed` is lifted: an operator's DOWN, a deleted service or
//! one taken over by another process is left alone (the slot goes dormant
//! and looks again every D).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::error::{Error, ErrorKind, Result};
use crate::heartbeat::{Lease, with_live_lease};
use crate::model::Quick;
use crate::record::{Service, Status};
use crate::stats::Counters;
use crate::store::Store;

/// The record is as the owner wants it (UP while checking in).
const ACTIVE: u8 = 0;
/// This client took the service DOWN for a missed deadline; a check-in
/// lifts it.
const MISSED: u8 = 1;
/// Not ours to enforce now (forced down, deleted, owned by another
/// process): looked at again every D.
const DORMANT: u8 = 2;

/// How long the timer sleeps with nothing due (it is woken for new slots).
const IDLE: Duration = Duration::from_secs(3600);
/// Bounds of the retry delay after a failed transition.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// One service's deadline.
struct Slot {
    uuid: String,
    period_ns: AtomicU64,
    /// The last check-in, in nanoseconds after [`Deadlines::epoch`].
    last_ns: AtomicU64,
    phase: AtomicU8,
    /// A transition task runs for this slot.
    busy: AtomicBool,
    /// No transition before this time (after a failure, or while dormant).
    not_before_ns: AtomicU64,
    failures: AtomicU32,
    /// Removed from the map (the owner dropped the deadline): never act.
    retired: AtomicBool,
}

impl Slot {
    fn overdue(&self, now: u64) -> bool {
        now >= self
            .last_ns
            .load(SeqCst)
            .saturating_add(self.period_ns.load(SeqCst))
    }

    fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns.load(SeqCst))
    }

    /// When this slot needs a transition (a time at or before `now`
    /// means now); `None` while nothing can be due until something wakes
    /// the timer.
    fn due(&self, now: u64) -> Option<u64> {
        if self.busy.load(SeqCst) || self.retired.load(SeqCst) {
            return None; // the running transition looks again when done
        }
        let t = match self.phase.load(SeqCst) {
            ACTIVE => self
                .last_ns
                .load(SeqCst)
                .saturating_add(self.period_ns.load(SeqCst)),
            // Waits for a check-in, which wakes the timer (`check_in`).
            MISSED if self.overdue(now) => return None,
            // Checked in again (MISSED), or dormant: at `not_before`.
            _ => 0,
        };
        Some(t.max(self.not_before_ns.load(SeqCst)))
    }
}

/// What a transition found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Outcome {
    /// Nothing decided (the closure never ran).
    Unknown,
    /// Wrote the DOWN record.
    TookDown,
    /// The record is DOWN for a miss already.
    AlreadyMissed,
    /// A check-in arrived before the write: nothing to do.
    CheckedIn,
    /// Wrote the UP record (or put back its UP key).
    Lifted,
    /// The record is UP on this client's lease already.
    AlreadyUp,
    /// Not this client's to enforce now.
    NotOurs,
}

impl Outcome {
    fn from_u8(v: u8) -> Outcome {
        [
            Outcome::Unknown,
            Outcome::TookDown,
            Outcome::AlreadyMissed,
            Outcome::CheckedIn,
            Outcome::Lifted,
            Outcome::AlreadyUp,
            Outcome::NotOurs,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(Outcome::Unknown)
    }
}

type SlotMap = HashMap<String, Arc<Slot>, BuildHasherDefault<Quick>>;

/// The heartbeat deadlines of one client's services.
pub(crate) struct Deadlines {
    slots: RwLock<SlotMap>,
    epoch: Instant,
    /// Wakes the timer: a new or changed slot, a check-in of a missed
    /// service, a transition that left work behind.
    wake: Notify,
    store: Store,
    lease: Arc<Lease>,
    counters: Arc<Counters>,
}

impl Deadlines {
    pub(crate) fn new(store: Store, lease: Arc<Lease>, counters: Arc<Counters>) -> Arc<Deadlines> {
        Arc::new(Deadlines {
            slots: RwLock::default(),
            epoch: Instant::now(),
            wake: Notify::new(),
            store,
            lease,
            counters,
        })
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn read(&self) -> RwLockReadGuard<'_, SlotMap> {
        // The map holds plain data, valid even if a holder panicked.
        self.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, SlotMap> {
        self.slots.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A check-in: the owner of `uuid` is alive. Local, no allocation (for
    /// a uuid in either form); `NotFound` if `uuid` has no deadline here.
    pub(crate) fn check_in(&self, uuid: &str) -> Result<()> {
        let mut buf = [0u8; 32];
        let key = canonical(uuid, &mut buf)?;
        let now = self.now_ns();
        let slots = self.read();
        let Some(slot) = slots.get(key) else {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "service {key} has no heartbeat deadline on this client (register it with a heartbeat first)"
                ),
            ));
        };
        slot.last_ns.store(now, SeqCst);
        if slot.phase.load(SeqCst) == MISSED {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Sets (or refreshes) `uuid`'s deadline and counts as a check-in; from
    /// `update()` with status UP, before its write.
    pub(crate) fn set(&self, uuid: &str, period: Duration) {
        let now = self.now_ns();
        let period_ns = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        let mut slots = self.write();
        match slots.get(uuid) {
            Some(slot) => {
                slot.period_ns.store(period_ns, SeqCst);
                slot.last_ns.store(now, SeqCst);
                // The update may have changed what etcd says: look again.
                slot.not_before_ns.store(0, SeqCst);
            }
            None => {
                slots.insert(
                    uuid.to_string(),
                    Arc::new(Slot {
                        uuid: uuid.to_string(),
                        period_ns: AtomicU64::new(period_ns),
                        last_ns: AtomicU64::new(now),
                        phase: AtomicU8::new(ACTIVE),
                        busy: AtomicBool::new(false),
                        not_before_ns: AtomicU64::new(0),
                        failures: AtomicU32::new(0),
                        retired: AtomicBool::new(false),
                    }),
                );
            }
        }
        drop(slots);
        self.wake.notify_one();
    }

    /// Drops `uuid`'s deadline (declared DOWN, re-registered without one,
    /// deleted). A transition in flight for it stops acting.
    pub(crate) fn remove(&self, uuid: &str) {
        if let Some(slot) = self.write().remove(uuid) {
            slot.retired.store(true, SeqCst);
        }
    }

    /// True when `uuid` has a deadline on this client.
    pub(crate) fn has(&self, uuid: &str) -> bool {
        self.read().contains_key(uuid)
    }

    /// The timer: sleeps until the earliest due slot (or a wake-up), then
    /// starts a transition for each slot that needs one. Runs until `stop`.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let now = self.now_ns();
            let mut next = now.saturating_add(IDLE.as_nanos() as u64);
            let mut start = Vec::new();
            for slot in self.read().values() {
                match slot.due(now) {
                    Some(t) if t <= now => start.push(slot.clone()),
                    Some(t) => next = next.min(t),
                    None => {}
                }
            }
            for slot in start {
                if slot
                    .busy
                    .compare_exchange(false, true, SeqCst, SeqCst)
                    .is_ok()
                {
                    tokio::spawn(self.clone().settle(slot));
                }
            }
            let sleep = Duration::from_nanos(next.saturating_sub(self.now_ns()));
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Brings `slot`'s record in line with its check-ins, one transaction
    /// at a time, until nothing is left to do (or a transition failed and
    /// waits for its retry time).
    async fn settle(self: Arc<Self>, slot: Arc<Slot>) {
        loop {
            if slot.retired.load(SeqCst) {
                break;
            }
            let now = self.now_ns();
            let overdue = slot.overdue(now);
            let take_down = match slot.phase.load(SeqCst) {
                ACTIVE if overdue => true,
                MISSED if !overdue && now >= slot.not_before_ns.load(SeqCst) => false,
                DORMANT if now >= slot.not_before_ns.load(SeqCst) => {
                    // Someone else changed it: judge from a fresh read.
                    self.store.forget(&slot.uuid);
                    overdue
                }
                _ => break,
            };
            let result = if take_down {
                self.take_down(&slot).await
            } else {
                self.bring_up(&slot).await
            };
            match result {
                Ok(outcome) => {
                    slot.failures.store(0, SeqCst);
                    if !self.apply(&slot, outcome) {
                        break;
                    }
                }
                Err(e) => {
                    let n = slot.failures.fetch_add(1, SeqCst);
                    if n == 0 {
                        log::warn!(
                            "os-lively: service {}: heartbeat deadline enforcement failed, will retry: {e}",
                            slot.uuid
                        );
                    }
                    let delay = (RETRY_MIN * 2u32.saturating_pow(n.min(10))).min(RETRY_MAX);
                    slot.not_before_ns
                        .store(self.now_ns() + delay.as_nanos() as u64, SeqCst);
                    break;
                }
            }
        }
        slot.busy.store(false, SeqCst);
        // The timer skipped this slot while busy: have it look again (also
        // for a check-in that came after our last look).
        self.wake.notify_one();
    }

    /// Records what a transition found; false to stop settling this slot.
    fn apply(&self, slot: &Slot, outcome: Outcome) -> bool {
        let uuid = &slot.uuid;
        let (phase, more) = match outcome {
            Outcome::TookDown => {
                Counters::bump(&self.counters.heartbeats_missed);
                self.lease.disown(uuid);
                log::warn!(
                    "os-lively: service {uuid} missed its heartbeat deadline (no check-in for {:?}); it is DOWN until its owner checks in again",
                    slot.period()
                );
                (MISSED, true)
            }
            Outcome::AlreadyMissed => (MISSED, true),
            Outcome::CheckedIn | Outcome::AlreadyUp => (ACTIVE, true),
            Outcome::Lifted => {
                log::info!("os-lively: service {uuid} checked in again; UP");
                (ACTIVE, true)
            }
            Outcome::NotOurs | Outcome::Unknown => (DORMANT, false),
        };
        let not_before = if phase == DORMANT {
            let wait = slot.period().max(Duration::from_secs(1));
            self.now_ns().saturating_add(wait.as_nanos() as u64)
        } else {
            0
        };
        slot.not_before_ns.store(not_before, SeqCst);
        slot.phase.store(phase, SeqCst);
        more
    }

    /// One guarded transaction: the record DOWN with `heartbeat_missed`, its
    /// UP key deleted and DOWN key written, if it still says UP on our lease
    /// and the slot is still overdue.
    async fn take_down(&self, slot: &Slot) -> Result<Outcome> {
        let outcome = AtomicU8::new(Outcome::Unknown as u8);
        let ours = self.lease.id();
        let decide = |old: Option<&Service>, up_lease: i64| {
            let (verdict, new) = match old {
                _ if slot.retired.load(SeqCst) => (Outcome::NotOurs, None),
                None => (Outcome::NotOurs, None),
                Some(o) if o.status == Status::Down && o.heartbeat_missed => {
                    (Outcome::AlreadyMissed, None)
                }
                Some(o) if o.status == Status::Down || o.heartbeat.is_none() => {
                    (Outcome::NotOurs, None)
                }
                Some(_) if up_lease != 0 && up_lease != ours => (Outcome::NotOurs, None),
                Some(_) if !slot.overdue(self.now_ns()) => (Outcome::CheckedIn, None),
                Some(o) => {
                    let mut s = o.clone();
                    s.status = Status::Down;
                    s.heartbeat_missed = true;
                    (Outcome::TookDown, Some(s))
                }
            };
            outcome.store(verdict as u8, SeqCst);
            Ok(new)
        };
        self.store.rewrite(&slot.uuid, 0, decide).await?;
        Ok(Outcome::from_u8(outcome.load(SeqCst)))
    }

    /// One guarded transaction: the record UP again, its UP key on our
    /// lease, if this client took it down for a miss (or its UP key is
    /// missing). Never lifts a DOWN set by anyone else.
    async fn bring_up(&self, slot: &Slot) -> Result<Outcome> {
        let outcome = AtomicU8::new(Outcome::Unknown as u8);
        // Owned before the write, so a lease re-grant racing with it
        // re-registers this service too.
        self.lease.own(&slot.uuid);
        let written = with_live_lease(&self.lease, |lease| {
            let outcome = &outcome;
            async move {
                let decide = |old: Option<&Service>, up_lease: i64| {
                    let (verdict, new) = match old {
                        _ if slot.retired.load(SeqCst) => (Outcome::NotOurs, None),
                        None => (Outcome::NotOurs, None),
                        Some(o) if o.status == Status::Up && up_lease == lease => {
                            (Outcome::AlreadyUp, None)
                        }
                        // Our UP key vanished: put it back (the record is unchanged).
                        Some(o) if o.status == Status::Up && up_lease == 0 => {
                            (Outcome::Lifted, Some(o.clone()))
                        }
                        Some(o) if o.status == Status::Down && o.heartbeat_missed => {
                            let mut s = o.clone();
                            s.status = Status::Up;
                            s.heartbeat_missed = false;
                            (Outcome::Lifted, Some(s))
                        }
                        Some(_) => (Outcome::NotOurs, None),
                    };
                    outcome.store(verdict as u8, SeqCst);
                    Ok(new)
                };
                self.store.rewrite(&slot.uuid, lease, decide).await
            }
        })
        .await;
        let verdict = Outcome::from_u8(outcome.load(SeqCst));
        match (&written, verdict) {
            (Ok(_), Outcome::Lifted | Outcome::AlreadyUp) => self.lease.own(&slot.uuid),
            _ => self.lease.disown(&slot.uuid),
        }
        written.map(|_| verdict)
    }
}

/// `uuid` as 32 lowercase hex digits, without allocating: itself when it
/// already is, else normalized into `buf`.
fn canonical<'a>(uuid: &'a str, buf: &'a mut [u8; 32]) -> Result<&'a str> {
    let b = uuid.as_bytes();
    if b.len() == 32 && b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return Ok(uuid);
    }
    match uuid::Uuid::try_parse(uuid) {
        Ok(u) if uuid.len() == 32 || uuid.len() == 36 => Ok(u.simple().encode_lower(buf)),
        _ => Err(crate::record::normalize_uuid(uuid)
            .err()
            .unwrap_or_else(|| Error::invalid(format!("uuid {uuid:?}: expected 32 hex digits")))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_uuid_forms_without_allocation() {
        let want = "3b059e33bbc44bc8b0d37df6e8d70223";
        let mut buf = [0u8; 32];
        assert_eq!(canonical(want, &mut buf).unwrap(), want);
        assert_eq!(
            canonical("3B059E33-BBC4-4BC8-B0D3-7DF6E8D70223", &mut buf).unwrap(),
            want
        );
        for bad in ["", "xyz", "{3b059e33-bbc4-4bc8-b0d3-7df6e8d70223}"] {
            assert_eq!(
                canonical(bad, &mut buf).unwrap_err().kind(),
                ErrorKind::InvalidArgument
            );
        }
    }
}
