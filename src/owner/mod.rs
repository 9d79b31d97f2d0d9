//! One owner per service: what a client holds for each service it
//! registered — the owner's wish, the phase (UP on our lease, missed,
//! held by an operator, set DOWN, lost), the heartbeat deadline — in one
//! registry, changed only by the transitions here, which run on the
//! runtime thread, one at a time per service, each with the write it needs.
//!
//! The lease, the deadline timer and the maintenance timer do not call each
//! other: the lease sends [`LeaseEvent`]s, the timer (one task) finds the
//! services whose deadline or window is due, and each of them is judged by
//! the same decision ([`decide::decide`]) inside the guarded write, so their
//! combinations (heartbeat × maintenance × takeover × lease loss × close)
//! are designed in one place.

mod beat;
mod check;
mod decide;
#[cfg(test)]
mod model_check;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::lease::{Lease, LeaseEvent, with_live_lease};
use crate::record::{Service, Status};
use crate::stats::Counters;
use crate::sticky;
use crate::store::{Current, Put, Store, Written};
use beat::Beats;
use decide::{Event, Facts, Held, Lost, Phase, Verdict, decide, phase_of};

/// How long the timer sleeps with nothing due (anything new wakes it).
const IDLE: Duration = Duration::from_secs(3600);
/// Bounds of the retry delay after a failed transition.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Past leases of ours remembered: far more re-grants than a client makes
/// before every hold naming an old one was rewritten.
const MAX_LEASES_REMEMBERED: usize = 64;

/// One held service.
struct Cell {
    uuid: String,
    /// Serializes this service's transitions with their writes.
    op: tokio::sync::Mutex<()>,
    held: Mutex<Held>,
    /// A timer-started transition is running.
    busy: AtomicBool,
}

impl Cell {
    fn held(&self) -> MutexGuard<'_, Held> {
        // Plain data, valid even if a holder panicked.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The registry of the services one client holds.
pub(crate) struct Owner {
    store: Store,
    lease: Arc<Lease>,
    counters: Arc<Counters>,
    /// Where panics of the transitions and checks it spawns are counted.
    health: Arc<crate::runtime::Health>,
    request_timeout: Duration,
    cells: Mutex<HashMap<String, Arc<Cell>>>,
    /// The cells the timer looks at: those with a heartbeat deadline or a
    /// hold that ends (a client holding 100,000 plain services scans none).
    timed: Mutex<HashMap<String, Arc<Cell>>>,
    beats: Beats,
    /// Close began: every transition refuses, no grant happens.
    closing: AtomicBool,
    /// Wakes the timer: a changed phase or deadline, a check-in after a miss.
    wake: Notify,
    /// Held by the task checking UP keys: one at a time.
    checking: Arc<tokio::sync::Mutex<()>>,
    /// The revision at which the last check found every UP key in place (0:
    /// it did not); while keepalive answers carry it, nothing was deleted.
    clean_revision: AtomicI64,
    /// Keepalives since the last check that ran whatever the revision said.
    since_full_check: AtomicU32,
    /// Every lease this client held, oldest first (see [`Facts::before`]).
    leases: Mutex<Vec<i64>>,
    /// A re-grant's check has not yet succeeded on the current lease.
    regrant_pending: AtomicBool,
}

impl Owner {
    pub(crate) fn new(
        store: Store,
        lease: Arc<Lease>,
        counters: Arc<Counters>,
        health: Arc<crate::runtime::Health>,
        request_timeout: Duration,
    ) -> Arc<Owner> {
        Arc::new(Owner {
            store,
            lease,
            counters,
            health,
            request_timeout,
            cells: Mutex::default(),
            timed: Mutex::default(),
            beats: Beats::default(),
            closing: AtomicBool::new(false),
            wake: Notify::new(),
            checking: Arc::default(),
            clean_revision: AtomicI64::new(0),
            since_full_check: AtomicU32::new(0),
            leases: Mutex::default(),
            regrant_pending: AtomicBool::new(false),
        })
    }

    fn cells(&self) -> MutexGuard<'_, HashMap<String, Arc<Cell>>> {
        self.cells.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn timed(&self) -> MutexGuard<'_, HashMap<String, Arc<Cell>>> {
        self.timed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts `cell` in or out of the timer's set for `phase`; true when it
    /// is in the set before or after (the timer must look again).
    fn retime(&self, cell: &Arc<Cell>, phase: Phase) -> bool {
        let timed = self.beats.get(&cell.uuid).is_some()
            || matches!(phase, Phase::Held { end, .. } if end != 0);
        let mut set = self.timed();
        if timed {
            set.insert(cell.uuid.clone(), cell.clone());
            true
        } else {
            set.remove(&cell.uuid).is_some()
        }
    }

    fn cell(&self, uuid: &str) -> Option<Arc<Cell>> {
        self.cells().get(uuid).cloned()
    }

    /// The cell of `uuid`, made (in phase `New`, wanting nothing) if new;
    /// true when it was made.
    fn cell_or_new(&self, uuid: &str) -> (Arc<Cell>, bool) {
        let mut cells = self.cells();
        if let Some(c) = cells.get(uuid) {
            return (c.clone(), false);
        }
        let c = Arc::new(Cell {
            uuid: uuid.to_string(),
            op: tokio::sync::Mutex::new(()),
            held: Mutex::new(Held::new(Phase::New, false)),
            busy: AtomicBool::new(false),
        });
        cells.insert(uuid.to_string(), c.clone());
        (c, true)
    }

    fn forget(&self, cell: &Arc<Cell>) {
        let mut cells = self.cells();
        if cells.get(&cell.uuid).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            cells.remove(&cell.uuid);
        }
        drop(cells);
        self.beats.remove(&cell.uuid);
        self.timed().remove(&cell.uuid);
    }

    fn check_open(&self) -> Result<()> {
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        Ok(())
    }

    /// [`Owner::check_open`] for a cell whose `op` lock is held: a write
    /// that got its lock after close began writes nothing.
    fn check_cell_open(&self, cell: &Cell) -> Result<()> {
        self.check_open()?;
        if cell.held().phase == Phase::Closing {
            return Err(Error::closed());
        }
        Ok(())
    }

    /// Moves `cell` to `next`, with what each change means for operators:
    /// counters, logs, the check-in slot's missed flag. Nothing leaves
    /// `Closing`.
    fn enter(&self, cell: &Arc<Cell>, next: Phase) {
        let prev = {
            let mut h = cell.held();
            let prev = h.phase;
            if prev == Phase::Closing {
                return;
            }
            h.phase = next;
            h.failures = 0;
            h.not_before = None;
            prev
        };
        if let Some(b) = self.beats.get(&cell.uuid) {
            // A check-in must wake the timer whenever the record says missed.
            let missed = matches!(next, Phase::Missed | Phase::Held { missed: true, .. });
            b.missed.store(missed, Ordering::SeqCst);
            // A displaced daemon learns it from its next check-in.
            b.set_taken_by(match next {
                Phase::Lost(Lost::Moved(holder)) => Some(holder),
                _ => None,
            });
        }
        let uuid = &cell.uuid;
        match (prev, next) {
            (p, n) if p == n => {}
            (Phase::Held { missed: false, .. }, Phase::Held { missed: true, .. }) => {
                Counters::bump(&self.counters.heartbeats_missed);
                log::warn!(
                    "os-lively: service {uuid} missed its heartbeat deadline while held by an operator; a lift leaves it DOWN until its owner checks in"
                );
            }
            (_, Phase::Missed) => {
                Counters::bump(&self.counters.heartbeats_missed);
                let period = self.beats.get(uuid).map(|b| b.period()).unwrap_or_default();
                log::warn!(
                    "os-lively: service {uuid} missed its heartbeat deadline (no check-in for {period:?}); it is DOWN until its owner checks in again"
                );
            }
            (Phase::Lost(_) | Phase::New, _) => {}
            (_, Phase::Lost(why)) => {
                Counters::bump(&self.counters.registrations_lost);
                log::warn!(
                    "os-lively: service {uuid} is no longer registered by this client ({}), so no longer kept UP",
                    why.says()
                );
            }
            (Phase::Missed, Phase::Up) => {
                log::info!("os-lively: service {uuid} checked in again; UP")
            }
            (Phase::Held { .. }, Phase::Up) => {
                log::info!("os-lively: service {uuid}: maintenance lifted; UP again")
            }
            _ => {}
        }
        if self.retime(cell, next) {
            self.wake.notify_one();
        }
    }

    /// The facts the decision needs now.
    fn facts(&self, uuid: &str, ours: i64) -> Facts {
        Facts {
            ours,
            before: self.before(ours),
            overdue: self.beats.overdue(uuid),
            now: sticky::now_secs(),
        }
    }

    /// Brings `cell` in line with etcd by the one decision, in one guarded
    /// write; its `op` lock must be held.
    async fn reconcile(&self, cell: &Arc<Cell>) -> Result<Phase> {
        self.transition(cell, Event::Check).await
    }

    /// Our leases before `ours`, oldest first: every lease this client
    /// held (a hold or a key naming any of them is ours).
    fn before(&self, ours: i64) -> Vec<i64> {
        let mut v = self
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let previous = self.lease.previous();
        if previous != 0 && !v.contains(&previous) {
            v.push(previous);
        }
        v.retain(|&l| l != ours);
        v
    }

    /// Remembers `id` as a lease of ours.
    fn note_lease(&self, id: i64) {
        if id == 0 {
            return;
        }
        let mut v = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        if !v.contains(&id) {
            if v.len() >= MAX_LEASES_REMEMBERED {
                v.remove(0);
            }
            v.push(id);
        }
    }

    /// The phase and wish of `uuid` on this client (`New` if it holds no
    /// cell for it).
    fn state_of(&self, cell: Option<&Arc<Cell>>) -> (Phase, bool) {
        cell.map_or((Phase::New, false), |c| {
            let h = c.held();
            (h.phase, h.wants_up)
        })
    }

    /// The one decision on `ev` for `uuid` (its `cell`, if this client
    /// holds one, whose `op` lock must be held), executed by the store in
    /// one guarded write; the phase that follows (entered by the cell).
    async fn run_decision(
        &self,
        uuid: &str,
        cell: Option<&Arc<Cell>>,
        ev: Event<'_>,
    ) -> Result<Phase> {
        let (phase, wants_up) = self.state_of(cell);
        let decided: Mutex<Option<Phase>> = Mutex::new(None);
        let make = |ours: i64| {
            let decided = &decided;
            move |old: Option<&Service>, cur: &Current| -> Result<Option<Put>> {
                self.note_lease(ours);
                let (verdict, next) =
                    decide(phase, wants_up, old, cur, &ev, &self.facts(uuid, ours));
                *decided.lock().unwrap_or_else(|p| p.into_inner()) = Some(next);
                match verdict {
                    Verdict::Write(p) => Ok(Some(p)),
                    Verdict::Refuse(r) => Err(r.error(uuid, None)),
                    Verdict::Keep | Verdict::Delete | Verdict::MarkClosed => Ok(None),
                }
            }
        };
        // Every decision may need to know whether a recorded owner lives
        // (an operator's down names the live holder).
        let probe = true;
        let ours_or_was = phase.holds() || phase.may_retake();
        let result = if ours_or_was && wants_up && !matches!(ev, Event::Down { .. }) {
            // The write may put the UP key on our lease: it needs a live one.
            with_live_lease(&self.lease, |id| {
                self.store.rewrite(uuid, id, probe, make(id))
            })
            .await
        } else {
            self.store
                .rewrite(uuid, 0, probe, make(self.lease.id()))
                .await
        };
        let next = decided
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(phase);
        result?;
        if let Some(c) = cell {
            self.enter(c, next);
        }
        Ok(next)
    }

    /// The one decision on `ev` for `cell`, with the write it needs, in one
    /// guarded write; its `op` lock must be held.
    async fn transition(&self, cell: &Arc<Cell>, ev: Event<'_>) -> Result<Phase> {
        self.check_cell_open(cell)?;
        self.run_decision(&cell.uuid, Some(cell), ev).await
    }

    /// The owner's update: validated `svc` written for this client (its UP
    /// key on our lease), taking over the type+host's record when `adopt`;
    /// `take_over`: retake it from a live client that displaced us.
    pub(crate) async fn update(
        &self,
        svc: Service,
        fresh: bool,
        adopt: bool,
        take_over: bool,
    ) -> Result<Written> {
        self.check_open()?;
        let (cell, made) = self.cell_or_new(&svc.uuid);
        let guard = cell.op.lock().await;
        // The phase each uuid was decided into (the adopted one's too).
        let decided: Mutex<Option<(String, Phase)>> = Mutex::new(None);
        let decide_for = |ours: i64| {
            let (svc, cell, decided) = (&svc, &cell, &decided);
            move |uuid: &str, old: Option<&Service>, cur: &Current| -> Result<Option<Put>> {
                self.note_lease(ours);
                let adopted;
                let (phase, want) = if uuid == svc.uuid {
                    (cell.held().phase, svc)
                } else {
                    let mut a = svc.clone();
                    a.uuid = uuid.to_string();
                    adopted = a;
                    (self.state_of(self.cell(uuid).as_ref()).0, &adopted)
                };
                let ev = Event::Update { want, take_over };
                let (verdict, next) = decide(phase, true, old, cur, &ev, &self.facts(uuid, ours));
                *decided.lock().unwrap_or_else(|p| p.into_inner()) = Some((uuid.to_string(), next));
                match verdict {
                    Verdict::Write(p) => Ok(Some(p)),
                    Verdict::Refuse(r) => Err(r.error(uuid, Some(want))),
                    Verdict::Keep | Verdict::Delete | Verdict::MarkClosed => Ok(None),
                }
            }
        };
        let take_back = |ours: i64| {
            let svc = &svc;
            move |other: &str, cur: &Current| {
                decide::may_take_back(svc, other, cur, &self.facts(other, ours))
            }
        };
        let result = match self.check_cell_open(&cell) {
            Err(e) => Err(e),
            // Nothing to bind: no lease needed.
            Ok(()) if svc.status == Status::Down => {
                let id = self.lease.id();
                self.store
                    .update(&svc, 0, fresh, adopt, &decide_for(id), &take_back(id))
                    .await
            }
            Ok(()) => {
                with_live_lease(&self.lease, |id| {
                    let (svc, decide_for, take_back) = (&svc, &decide_for, &take_back);
                    async move {
                        self.store
                            .update(svc, id, fresh, adopt, &decide_for(id), &take_back(id))
                            .await
                    }
                })
                .await
            }
        };
        let w = match result {
            Ok(w) => w,
            Err(e) => {
                // A refused or failed first registration leaves nothing
                // behind: no slot, no check, no "lost" for a uuid never held.
                drop(guard);
                if made {
                    self.forget(&cell);
                }
                let learned = decided.lock().unwrap_or_else(|p| p.into_inner()).take();
                // Displaced: the cell of the uuid it decided on learns it
                // (and so does the next check-in).
                if let Some((uuid, Phase::Lost(lost))) = learned {
                    if let Some(c) = self
                        .cell(&uuid)
                        .filter(|c| !(made && Arc::ptr_eq(c, &cell)))
                    {
                        let _op = c.op.lock().await;
                        if c.held().phase.holds() {
                            self.enter(&c, Phase::Lost(lost));
                        }
                    }
                }
                return Err(e);
            }
        };
        if w.uuid == svc.uuid {
            self.after_update(&cell, &w, &svc);
            drop(guard);
        } else {
            // Adopted the type+host's uuid: the generated one was never held.
            drop(guard);
            if made {
                self.forget(&cell);
            }
            let (adopted, _) = self.cell_or_new(&w.uuid);
            let _op = adopted.op.lock().await;
            // Close began meanwhile: its mark is the last word.
            self.check_cell_open(&adopted)?;
            self.after_update(&adopted, &w, &svc);
        }
        Ok(w)
    }

    /// What an owner's write means for the service's cell.
    fn after_update(&self, cell: &Arc<Cell>, w: &Written, svc: &Service) {
        let record = w.record.as_ref();
        match record.and_then(|r| r.heartbeat) {
            Some(d) => self.beats.set(&w.uuid, d),
            None => self.beats.remove(&w.uuid),
        }
        cell.held().wants_up = svc.status == Status::Up;
        self.enter(cell, record.map_or(Phase::Lost(Lost::Deleted), phase_of));
        if w.displaced != 0 {
            log::warn!(
                "os-lively: service {} ({} on {}) taken over from lease {:x}, which was still alive",
                w.uuid,
                svc.service_type,
                svc.host,
                w.displaced
            );
        }
    }

    /// A check-in for `uuid`; local, no round trip.
    pub(crate) fn check_in(&self, uuid: &str) -> Result<()> {
        if self.beats.check_in(uuid)? {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// An operator's `down()` through this client, by the one decision.
    pub(crate) async fn down(&self, uuid: &str, note: &str, start: u64, end: u64) -> Result<()> {
        let cell = self.cell(uuid);
        let _op = match &cell {
            Some(c) => Some(c.op.lock().await),
            None => None,
        };
        let ev = Event::Down { note, start, end };
        self.run_decision(uuid, cell.as_ref(), ev).await?;
        Ok(())
    }

    /// An operator's `up()` through this client, by the one decision: a
    /// service this client holds is judged by its own check-ins (UP on our
    /// lease, or DOWN for a missed deadline); one held by another client
    /// by its record (a missed heartbeat stays missed), its UP key on its
    /// recorded owner's lease when that lease lives (etcd is asked), else
    /// none until its owner puts it back.
    pub(crate) async fn up(&self, uuid: &str) -> Result<()> {
        let cell = self.cell(uuid);
        let _op = match &cell {
            Some(c) => Some(c.op.lock().await),
            None => None,
        };
        self.run_decision(uuid, cell.as_ref(), Event::Up).await?;
        Ok(())
    }

    /// Deletes a service; this client holds nothing of it afterwards.
    pub(crate) async fn delete(&self, uuid: &str) -> Result<bool> {
        let cell = self.cell(uuid);
        let _op = match &cell {
            Some(c) => Some(c.op.lock().await),
            None => None,
        };
        let (phase, wants_up) = self.state_of(cell.as_ref());
        let facts = self.facts(uuid, self.lease.id());
        match decide(
            phase,
            wants_up,
            None,
            &Current::default(),
            &Event::Delete,
            &facts,
        )
        .0
        {
            Verdict::Refuse(r) => return Err(r.error(uuid, None)),
            Verdict::Delete => {}
            v => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!("delete {uuid}: decided {v:?}"),
                ));
            }
        }
        let deleted = self.store.delete(uuid).await?;
        if let Some(c) = &cell {
            self.forget(c);
        }
        Ok(deleted)
    }

    /// Close: no transition or grant from now on; the services UP on our
    /// lease are marked closed (watchers see reason `closed`, not
    /// `expired`), then the lease is revoked, so they are DOWN at once.
    ///
    /// Final: each service's `op` lock is taken before its mark (a write in
    /// flight ends first) and it enters `Closing`, which no transition
    /// leaves, so nothing of ours is written for it after its mark.
    /// Bounded: waiting for writes in flight and marking take at most one
    /// request timeout (a service whose write does not end by then is not
    /// marked: the revoke takes it DOWN, as `expired`); the revoke is tried
    /// again, with backoff, for up to two more (see [`close_bound`]).
    pub(crate) async fn close(&self) -> Result<()> {
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
        let marks_by = Instant::now() + self.request_timeout;
        // A check running now ends first; later ones see `closing` and stop.
        let _check = tokio::time::timeout_at(marks_by, self.checking.lock()).await;
        let id = self.lease.begin_close().await;
        let cells: Vec<Arc<Cell>> = self.cells().values().cloned().collect();
        let mut guards = Vec::with_capacity(cells.len());
        let mut up = Vec::new();
        for c in &cells {
            let guard = tokio::time::timeout_at(marks_by, c.op.lock()).await.ok();
            let (verdict, next) = {
                let mut h = c.held();
                let decided = decide(
                    h.phase,
                    h.wants_up,
                    None,
                    &Current::default(),
                    &Event::Close,
                    &Facts::default(),
                );
                h.phase = decided.1;
                decided
            };
            debug_assert_eq!(next, Phase::Closing);
            if guard.is_some() && verdict == Verdict::MarkClosed {
                up.push(c.uuid.clone());
            }
            guards.push(guard);
        }
        if id == 0 {
            return Ok(());
        }
        if !up.is_empty() {
            // Best effort: the revoke that follows takes them DOWN whatever
            // happens here.
            match tokio::time::timeout_at(marks_by, self.store.mark_closed(&up, id)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::debug!("os-lively: close: marking services closed: {e}"),
                Err(_) => log::debug!("os-lively: close: marking services closed timed out"),
            }
        }
        self.revoke_within(id, Instant::now() + 2 * self.request_timeout)
            .await
    }

    /// Revokes lease `id`, trying again with backoff until `by`: a slow or
    /// briefly unreachable etcd does not leave the services UP for a TTL.
    async fn revoke_within(&self, id: i64, by: Instant) -> Result<()> {
        let mut delay = Duration::from_millis(50);
        loop {
            // One attempt may take all the time left: a slow etcd answers
            // late, and giving up on an answer to ask again only adds load.
            let e = match tokio::time::timeout_at(by, self.store.revoke_lease(id)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "close: revoking lease {id:x} did not succeed within {:?}; its services go DOWN when it expires",
                            2 * self.request_timeout
                        ),
                    ));
                }
            };
            if e.kind() == ErrorKind::Auth || Instant::now() + delay >= by {
                return Err(e);
            }
            log::debug!("os-lively: close: revoking lease {id:x} failed, trying again: {e}");
            tokio::time::sleep(delay / 2 + crate::backoff::jitter(delay / 2)).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    /// The owner's task on the runtime thread: the deadline and maintenance
    /// timer, and the lease's events. Runs until `stop` turns true.
    /// The receiver is shared so that a restart (see `runtime::supervise`)
    /// takes up the same events.
    pub(crate) async fn run(
        self: Arc<Self>,
        events: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<LeaseEvent>>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut events = events.lock().await;
        loop {
            if *stop.borrow() || self.closing.load(Ordering::Acquire) {
                return;
            }
            crate::runtime::supervise::checkpoint("owner");
            let next = self.start_due();
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = self.wake.notified() => {}
                Some(ev) = events.recv() => self.clone().on_lease(ev),
                _ = stop.changed() => return,
            }
        }
    }

    /// Starts a transition for every service whose deadline, check-in or
    /// window end is due; returns when the next one is.
    fn start_due(self: &Arc<Self>) -> Instant {
        let now_ns = self.beats.now_ns();
        let now = Instant::now();
        let wall = sticky::now_secs();
        let mut next = now + IDLE;
        let cells: Vec<Arc<Cell>> = self.timed().values().cloned().collect();
        for cell in cells {
            if cell.busy.load(Ordering::Acquire) {
                continue;
            }
            let (phase, not_before) = {
                let h = cell.held();
                (h.phase, h.not_before)
            };
            let beat = self.beats.get(&cell.uuid);
            // When the deadline passes, or now if it was met again after a
            // miss (the record says missed, the owner checked in since).
            let beat_due = |b: &beat::Beat, missed: bool| {
                if !missed {
                    Some(self.beats.instant(b.due_ns()))
                } else if now_ns < b.due_ns() {
                    Some(now)
                } else {
                    None
                }
            };
            let due = match (phase, &beat) {
                (Phase::Up, Some(b)) => beat_due(b, false).map(|d| (d, Event::Deadline)),
                (Phase::Missed, Some(b)) => beat_due(b, true).map(|d| (d, Event::CheckIn)),
                (Phase::Held { end, missed }, b) => {
                    let window = (end != 0).then(|| {
                        if end > wall && sticky::until(end).is_zero() {
                            // The wall clock says not yet (whole seconds):
                            // look again soon.
                            now + Duration::from_millis(200)
                        } else {
                            now + sticky::until(end).min(IDLE)
                        }
                    });
                    // While held, the record follows the deadline too, so
                    // that a lift by any client judges it right.
                    let deadline = b.as_ref().and_then(|b| beat_due(b, missed));
                    let deadline_ev = if missed {
                        Event::CheckIn
                    } else {
                        Event::Deadline
                    };
                    match (window, deadline) {
                        (Some(w), Some(d)) if d < w => Some((d, deadline_ev)),
                        (Some(w), _) => Some((w, Event::WindowEnd)),
                        (None, d) => d.map(|d| (d, deadline_ev)),
                    }
                }
                _ => None,
            };
            let Some((mut due, ev)) = due else { continue };
            if let Some(nb) = not_before {
                due = due.max(nb);
            }
            if due <= now {
                if cell
                    .busy
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    crate::runtime::supervise::spawn_logged(
                        "owner transition",
                        self.health.clone(),
                        self.clone().settle(cell, ev),
                    );
                }
            } else {
                next = next.min(due);
            }
        }
        next
    }

    /// A timer-started transition for `cell`.
    async fn settle(self: Arc<Self>, cell: Arc<Cell>, ev: Event<'static>) {
        if self.check_open().is_ok() {
            let _op = cell.op.lock().await;
            // Closed while it waited for the lock: nothing left to keep.
            if let Err(e) = self.transition(&cell, ev).await.or_else(|e| {
                if e.kind() == ErrorKind::Closed {
                    Ok(Phase::Closing)
                } else {
                    Err(e)
                }
            }) {
                let mut h = cell.held();
                let n = h.failures;
                h.failures = n.saturating_add(1);
                let delay = (RETRY_MIN * 2u32.saturating_pow(n.min(10))).min(RETRY_MAX);
                h.not_before = Some(Instant::now() + delay);
                drop(h);
                if n == 0 {
                    log::warn!(
                        "os-lively: service {}: keeping it as its owner wants failed, will retry: {e}",
                        cell.uuid
                    );
                }
            }
        }
        cell.busy.store(false, Ordering::Release);
        self.wake.notify_one();
    }
}

/// The longest [`Owner::close`] takes: a request timeout to let writes in
/// flight end and mark the services closed, two more to revoke the lease.
pub(crate) fn close_bound(request_timeout: Duration) -> Duration {
    request_timeout * 3
}
