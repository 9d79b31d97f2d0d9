//! What the owner does with the lease's events: after a keepalive, check
//! that the services it holds UP still have their UP keys on its lease (and
//! learn of operators' downs and lifts, deletions and takeovers); after a
//! re-grant, put them back on the new lease.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Cell, Owner, Phase};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::ParsedKey;
use crate::lease::LeaseEvent;
use crate::stats::Counters;
use crate::store::Rebind;

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
/// Services held DOWN (by their owner or an operator) that a check whose
/// revision moved reads again, looking for an operator's hold or lift: no
/// key of theirs is on the lease to tell. More than this are read only at
/// the full checks, so a busy etcd does not cost a read each per keepalive.
const SURVEY_MAX: usize = 16;
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
                    if let Err(e) = self.check(id, false, full).await {
                        self.clean_revision.store(0, Ordering::Relaxed);
                        log::debug!("os-lively: checking UP keys failed: {e}");
                        self.lease.reauthenticate_if_stale(&e).await;
                    }
                });
            }
            LeaseEvent::Regranted { id, .. } => {
                self.clean_revision.store(0, Ordering::Relaxed);
                let health = self.health.clone();
                crate::runtime::supervise::spawn_logged("re-registration", health, async move {
                    let _one = self.checking.clone().lock_owned().await;
                    if let Err(e) = self.check(id, true, true).await {
                        // The check at the next keepalives finds what is left.
                        log::warn!(
                            "os-lively: re-registering on lease {id:x} failed, will retry: {e}"
                        );
                        self.lease.reauthenticate_if_stale(&e).await;
                    }
                });
            }
        }
    }

    /// Finds the held services whose keys disagree with their phase and
    /// brings each in line. `regranted`: the lease was replaced, so every
    /// UP key and every hold's recorded owner needs our new lease. `full`:
    /// also read every service held DOWN, however many (see [`SURVEY_MAX`]).
    async fn check(&self, id: i64, regranted: bool, full: bool) -> Result<()> {
        if self.check_open().is_err() {
            return Ok(());
        }
        let held: Vec<(Arc<Cell>, Phase)> = self
            .cells()
            .values()
            .map(|c| (c.clone(), c.held().phase))
            .filter(|(_, p)| {
                matches!(
                    p,
                    Phase::Up | Phase::Missed | Phase::Held { .. } | Phase::Down
                )
            })
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        let keyed = held
            .iter()
            .filter(|(_, p)| !matches!(p, Phase::Down))
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
        for (cell, phase) in held {
            let on = on_lease.contains(&cell.uuid);
            match phase {
                Phase::Up if !on => rebind.push(cell),
                Phase::Held { .. } if on || regranted => judge.push(cell),
                Phase::Missed => judge.push(cell),
                Phase::Held { .. } | Phase::Down => survey.push(cell),
                _ => {}
            }
        }
        if full || survey.len() <= SURVEY_MAX {
            for cell in survey {
                if let Ok(_op) = cell.op.try_lock() {
                    self.reconcile(&cell).await?;
                }
            }
        }
        if rebind.is_empty() && judge.is_empty() {
            self.clean_revision.store(revision, Ordering::Relaxed);
            return Ok(());
        }
        // Look again at the next keepalive, whatever the revision.
        self.clean_revision.store(0, Ordering::Relaxed);
        let mut restored = Vec::new();
        for chunk in rebind.chunks(REBIND_BATCH) {
            // A service whose own transition runs is judged by it.
            let locked: Vec<_> = chunk
                .iter()
                .filter_map(|c| c.op.try_lock().ok().map(|g| (c, g)))
                .collect();
            let uuids: Vec<String> = locked.iter().map(|(c, _)| c.uuid.clone()).collect();
            let verdicts = tokio::time::timeout(
                self.request_timeout,
                self.store.rebind_many(&uuids, id, self.lease.previous()),
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
            for (uuid, verdict) in verdicts {
                let Some((cell, _)) = locked.iter().find(|(c, _)| c.uuid == uuid) else {
                    continue;
                };
                match verdict {
                    Rebind::Ours => self.enter(cell, Phase::Up),
                    Rebind::Restored => {
                        Counters::bump(&self.counters.up_keys_restored);
                        restored.push(uuid);
                        self.enter(cell, Phase::Up);
                    }
                    // Forced down, deleted, taken over, a deadline: the one
                    // decision says what it means.
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
}
