//! What the owner does with the lease's events: after a keepalive, check
//! that the services it holds UP still have their UP keys on its lease (and
//! learn of operators' downs and lifts, deletions and takeovers); after a
//! re-grant, put them back on the new lease.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::decide::{Event, Verdict, agrees, decide};
use super::{Cell, Owner, Phase};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::ParsedKey;
use crate::lease::LeaseEvent;
use crate::record::Service;
use crate::stats::Counters;
use crate::store::{Current, Put, Rebound};

/// Keepalives between checks that run whatever the revision says, in case
/// a deletion slipped past the revision check (an answer from a lagging
/// member), while the last check failed or found something to put right:
/// about every 3 TTLs (those keepalives check anyway).
const FULL_CHECK_EVERY: u32 = 9;
/// The same once a check found everything in place: about every 12 TTLs.
/// An idle daemon then costs etcd its keepalives and one `TimeToLive` per
/// 36 of them (1.03×), not one per 9 (1.11×, measured with 2,000 daemons at
/// TTL 10), whether the rest of the cluster is quiet or busy.
const IDLE_FULL_CHECK_EVERY: u32 = 36;
/// A keepalive whose revision moved since the last clean check says that
/// something was written somewhere in the cluster, perhaps a deletion of
/// one of our UP keys: checked at once after a quiet spell, so a UP key
/// deleted by hand in a quiet cluster is back within one keepalive period.
/// But beside a neighbour writing all the time every keepalive says so,
/// and checking each would double what an idle daemon costs etcd (2.0×
/// its keepalives, `tests/counts.rs`; issue 29 asks ≤ 1.05×). So while the
/// revision keeps moving, the check runs at the 1st, 2nd, 4th and 8th such
/// keepalive in a row, then only at the full checks: there, a UP key
/// deleted by hand is back within 12 TTLs.
const BUSY_CHECKS_UP_TO: u32 = 8;
/// Services held DOWN (by their owner or an operator) have no key on the
/// lease to tell of an operator's hold, lift or delete: a check whose
/// revision moved reads their records, this many per read transaction
/// (etcd's default `--max-txn-ops` is 128), so that however many there
/// are, a change is noticed within a check or two (about one TTL), for a
/// read per this many services rather than one each; only those whose
/// record changed are judged one by one.
const SURVEY_BATCH: usize = 120;
/// Held services up to which one `TimeToLive` call lists the lease's keys;
/// above it its answer could pass the 4 MiB decode limit, so the UP keys
/// are read in pages instead.
const LEASE_LIST_MAX: usize = 10_000;
/// Services re-bound per guarded transaction.
const REBIND_BATCH: usize = 60;

impl Owner {
    pub(super) fn on_lease(self: Arc<Self>, ev: LeaseEvent) {
        match ev {
            LeaseEvent::Alive {
                id,
                revision,
                moved,
            } => {
                self.note_lease(id);
                if self.regrant_pending.load(Ordering::Acquire) {
                    // A re-grant's check did not finish: its work (every
                    // hold's recorded owner, every UP key) is not skipped.
                    self.clone().after_regrant(id);
                    return;
                }
                let n = self.since_full_check.fetch_add(1, Ordering::Relaxed) + 1;
                let clean = self.clean_revision.load(Ordering::Relaxed);
                let settled = clean != 0;
                let idle = settled && revision == Some(clean);
                let full = n
                    >= if settled {
                        IDLE_FULL_CHECK_EVERY
                    } else {
                        FULL_CHECK_EVERY
                    };
                // Moved since the last clean check: at once after a quiet
                // spell (`moved` 0: the same revision as the answer before,
                // 1: the first that moved), then backing off.
                let written = !idle
                    && (moved == 0 || (moved.is_power_of_two() && moved <= BUSY_CHECKS_UP_TO));
                if !(full || !settled || written) {
                    return;
                }
                let Ok(one) = self.checking.clone().try_lock_owned() else {
                    return; // a check is running
                };
                if full {
                    self.since_full_check.store(0, Ordering::Relaxed);
                }
                let health = self.health.clone();
                crate::runtime::supervise::spawn_logged("UP-key check", health, async move {
                    let _one = one;
                    if let Err(e) = self.check(id, false).await {
                        self.clean_revision.store(0, Ordering::Relaxed);
                        log::debug!("os-lively: checking UP keys failed: {e}");
                        self.lease.reauthenticate_if_stale(&e).await;
                    }
                });
            }
            LeaseEvent::Regranted { id, .. } => {
                self.note_lease(id);
                self.regrant_pending.store(true, Ordering::Release);
                self.after_regrant(id);
            }
        }
    }

    /// The check after a re-grant: every UP key and every hold's recorded
    /// owner onto the new lease. Until one succeeds, each keepalive starts
    /// it again (two losses in a row never skip it).
    fn after_regrant(self: Arc<Self>, id: i64) {
        self.clean_revision.store(0, Ordering::Relaxed);
        let Ok(one) = self.checking.clone().try_lock_owned() else {
            return; // a check is running; the next keepalive tries again
        };
        let health = self.health.clone();
        crate::runtime::supervise::spawn_logged("re-registration", health, async move {
            let _one = one;
            match self.check(id, true).await {
                Ok(()) => {
                    if self.lease.id() == id {
                        self.regrant_pending.store(false, Ordering::Release);
                    }
                }
                Err(e) => {
                    log::warn!("os-lively: re-registering on lease {id:x} failed, will retry: {e}");
                    self.lease.reauthenticate_if_stale(&e).await;
                }
            }
        });
    }

    /// Finds the held services whose keys disagree with their phase and
    /// brings each in line. `regranted`: the lease was replaced, so every
    /// UP key and every hold's recorded owner needs our new lease. The
    /// services held DOWN are read in batches (see [`SURVEY_BATCH`]).
    async fn check(&self, id: i64, regranted: bool) -> Result<()> {
        if self.check_open().is_err() {
            return Ok(());
        }
        let held: Vec<(Arc<Cell>, Phase)> = self
            .cells()
            .values()
            .map(|c| (c.clone(), c.held().phase))
            .filter(|(c, p)| {
                matches!(
                    p,
                    Phase::Up | Phase::Missed | Phase::Held { .. } | Phase::Down
                ) || (p.may_retake() && c.held().wants_up)
            })
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        let keyed = held
            .iter()
            .filter(|(_, p)| p.holds() && !matches!(p, Phase::Down))
            .count();
        let (on_lease, revision) = if regranted {
            // Nothing can be on a lease granted a moment ago.
            (BTreeSet::new(), 0)
        } else if keyed <= LEASE_LIST_MAX {
            let (ttl, revision, raw) = self.lease.keys_on(id).await?;
            // etcd says -1 for a lease gone; 0 is one with less than a
            // second left (it rounds down), which at a TTL of 1 s is every
            // answer: taken for gone, no check ever came out clean, and an
            // idle daemon sent a `TimeToLive` with every keepalive.
            if ttl < 0 {
                // Gone: the next keepalive finds out and re-grants.
                return Ok(());
            }
            let keys = self.store.keys();
            let on: BTreeSet<String> = raw
                .iter()
                .filter_map(|k| match keys.parse(k) {
                    Some(ParsedKey::Status(_, uuid)) => Some(uuid),
                    _ => None,
                })
                .collect();
            (on, revision)
        } else {
            self.store.up_keys_on(id).await?
        };
        // UP services whose key is not on our lease; holds whose UP key is
        // (someone lifted them), or, after a re-grant, every hold (its DOWN
        // key names the dead lease); missed services, which have no UP key
        // to tell us that an operator held, lifted or deleted them.
        // Services held DOWN have no key on the lease: an operator's down
        // (with a window to lift at its end) or up() on one shows only in
        // its record, read when the revision moved.
        let mut rebind = Vec::new();
        let mut judge = Vec::new();
        let mut survey = Vec::new();
        let mut retake = Vec::new();
        for (cell, phase) in held {
            let on = on_lease.contains(&cell.uuid);
            match phase {
                Phase::Up if !on => rebind.push(cell),
                Phase::Held { .. } if on || regranted => judge.push(cell),
                Phase::Missed => judge.push(cell),
                Phase::Held { .. } | Phase::Down => survey.push(cell),
                // Taken from us: ours again once its holder is gone.
                Phase::Lost(_) => retake.push(cell),
                _ => {}
            }
        }
        self.survey(survey).await?;
        for cell in retake {
            if let Ok(_op) = cell.op.try_lock() {
                self.reconcile(&cell).await?;
            }
        }
        if rebind.is_empty() && judge.is_empty() {
            self.clean_revision.store(revision, Ordering::Relaxed);
            return Ok(());
        }
        // Look again at the next keepalive, whatever the revision.
        self.clean_revision.store(0, Ordering::Relaxed);
        let mut restored = Vec::new();
        let ev = if regranted {
            Event::Regranted
        } else {
            Event::Check
        };
        for chunk in rebind.chunks(REBIND_BATCH) {
            // A service whose own transition runs is judged by it.
            let locked: Vec<_> = chunk
                .iter()
                .filter_map(|c| c.op.try_lock().ok().map(|g| (c, g)))
                .collect();
            let uuids: Vec<String> = locked.iter().map(|(c, _)| c.uuid.clone()).collect();
            let states: HashMap<&str, (Phase, bool)> = locked
                .iter()
                .map(|(c, _)| {
                    let h = c.held();
                    (c.uuid.as_str(), (h.phase, h.wants_up))
                })
                .collect();
            let decided: Mutex<HashMap<String, Phase>> = Mutex::default();
            // The one decision, per service; the store executes it.
            let judge = |uuid: &str, old: Option<&Service>, cur: &Current| -> Option<Put> {
                let (phase, wants_up) = *states.get(uuid)?;
                let (verdict, next) = decide(phase, wants_up, old, cur, &ev, &self.facts(uuid, id));
                decided
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(uuid.to_string(), next);
                match verdict {
                    Verdict::Write(p) => Some(p),
                    _ => None,
                }
            };
            let rebound = tokio::time::timeout(
                self.request_timeout,
                self.store.rebind_many(&uuids, id, &judge),
            )
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "checking UP keys: restoring took longer than {:?}",
                        self.request_timeout
                    ),
                )
            })??;
            let decided = decided.into_inner().unwrap_or_else(|p| p.into_inner());
            for (uuid, how) in rebound {
                let Some((cell, _)) = locked.iter().find(|(c, _)| c.uuid == uuid) else {
                    continue;
                };
                let next = decided.get(&uuid).copied();
                match (how, next) {
                    (Rebound::Restored, Some(next)) => {
                        Counters::bump(&self.counters.up_keys_restored);
                        restored.push(uuid);
                        self.enter(cell, next);
                    }
                    (Rebound::Kept, Some(next)) => self.enter(cell, next),
                    _ => {
                        self.reconcile(cell).await?;
                    }
                }
            }
        }
        for cell in judge {
            if let Ok(_op) = cell.op.try_lock() {
                let next = self.reconcile(&cell).await?;
                log::trace!("os-lively: checked {}: {next:?}", cell.uuid);
            }
        }
        match restored.len() {
            0 => {}
            1..=10 => log::warn!(
                "os-lively: UP again (UP key put back on lease {id:x}): {}",
                restored.join(", ")
            ),
            n => log::warn!("os-lively: {n} services UP again (UP keys put back on lease {id:x})"),
        }
        Ok(())
    }

    /// Reads the records of services held DOWN, in batches, and judges
    /// those whose record no longer says what their phase does (an
    /// operator's hold, lift or window, a delete, a takeover).
    async fn survey(&self, cells: Vec<Arc<Cell>>) -> Result<()> {
        for chunk in cells.chunks(SURVEY_BATCH) {
            let uuids: Vec<String> = chunk.iter().map(|c| c.uuid.clone()).collect();
            let records = self.store.records(&uuids).await?;
            for (cell, record) in chunk.iter().zip(records) {
                let phase = cell.held().phase;
                let same = record.as_ref().is_some_and(|r| agrees(phase, r));
                if same {
                    continue;
                }
                if let Ok(_op) = cell.op.try_lock() {
                    self.reconcile(cell).await?;
                }
            }
        }
        Ok(())
    }
}
