//! Check-ins: the owner's main loop says it is alive. A check-in is local:
//! it stores a timestamp in the service's slot, found in a map read under a
//! read lock (no allocation, no round trip); the owner's timer decides what
//! a passed deadline means.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::model::Quick;

/// One service's deadline.
pub(crate) struct Beat {
    period_ns: AtomicU64,
    /// The last check-in, in nanoseconds after [`Beats::epoch`].
    last_ns: AtomicU64,
    /// The service is DOWN for a missed deadline: a check-in wakes the
    /// owner's timer to bring it back.
    pub(crate) missed: AtomicBool,
    /// Another live client took the service over: its lease (`NOT_TAKEN`:
    /// none), named by the next check-in's error.
    taken_by: AtomicI64,
}

/// [`Beat::taken_by`] when the service is not taken over.
const NOT_TAKEN: i64 = -1;

impl Beat {
    /// Records that another client (lease `holder`) took the service over,
    /// or (`None`) that it is ours again.
    pub(crate) fn set_taken_by(&self, holder: Option<i64>) {
        self.taken_by.store(holder.unwrap_or(NOT_TAKEN), SeqCst);
    }

    pub(crate) fn period(&self) -> Duration {
        Duration::from_nanos(self.period_ns.load(SeqCst))
    }

    /// When the deadline passes (nanoseconds after the epoch).
    pub(crate) fn due_ns(&self) -> u64 {
        self.last_ns
            .load(SeqCst)
            .saturating_add(self.period_ns.load(SeqCst))
    }
}

type SlotMap = HashMap<String, Arc<Beat>, BuildHasherDefault<Quick>>;

/// The heartbeat deadlines of one client's services.
pub(crate) struct Beats {
    slots: RwLock<SlotMap>,
    epoch: Instant,
}

impl Default for Beats {
    fn default() -> Beats {
        Beats {
            slots: RwLock::default(),
            epoch: Instant::now(),
        }
    }
}

impl Beats {
    pub(crate) fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `ns` nanoseconds after the epoch.
    pub(crate) fn instant(&self, ns: u64) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.epoch + Duration::from_nanos(ns))
    }

    fn read(&self) -> RwLockReadGuard<'_, SlotMap> {
        // Plain data, valid even if a holder panicked.
        self.slots.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, SlotMap> {
        self.slots.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A check-in for `uuid` (either uuid form, no allocation). Returns
    /// true when the service is DOWN for a miss (the timer must look);
    /// `NotFound` if it has no deadline here.
    pub(crate) fn check_in(&self, uuid: &str) -> Result<bool> {
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
        let holder = slot.taken_by.load(SeqCst);
        if holder != NOT_TAKEN {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "service {key} was taken over by another live client (lease {holder:x}); this client no longer keeps it UP; take it over explicitly (take_over) to retake it"
                ),
            ));
        }
        Ok(slot.missed.load(SeqCst))
    }

    /// Sets `uuid`'s deadline to `period`, counting as a check-in.
    pub(crate) fn set(&self, uuid: &str, period: Duration) {
        let now = self.now_ns();
        let period_ns = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        let mut slots = self.write();
        match slots.get(uuid) {
            Some(slot) => {
                slot.period_ns.store(period_ns, SeqCst);
                slot.last_ns.store(now, SeqCst);
            }
            None => {
                slots.insert(
                    uuid.to_string(),
                    Arc::new(Beat {
                        period_ns: AtomicU64::new(period_ns),
                        last_ns: AtomicU64::new(now),
                        missed: AtomicBool::new(false),
                        taken_by: AtomicI64::new(NOT_TAKEN),
                    }),
                );
            }
        }
    }

    /// Drops `uuid`'s deadline.
    pub(crate) fn remove(&self, uuid: &str) {
        self.write().remove(uuid);
    }

    pub(crate) fn get(&self, uuid: &str) -> Option<Arc<Beat>> {
        self.read().get(uuid).cloned()
    }

    /// True when `uuid` has a deadline here and it has passed.
    pub(crate) fn overdue(&self, uuid: &str) -> bool {
        self.get(uuid).is_some_and(|b| self.now_ns() >= b.due_ns())
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
