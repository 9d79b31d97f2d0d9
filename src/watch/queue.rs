//! Each subscription's bounded queue: offer, overflow, resync, pop.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, EventKind};
use crate::model::{Entry, Model};
use crate::record::{Service, Status};
use crate::stats::Counters;
use crate::store::Filter;

use super::diff::{Hint, diff, make_event};

/// What a subscriber has been told about one service.
#[derive(Debug, Clone)]
pub(super) struct Known {
    pub(super) status: Status,
    pub(super) service: Service,
}

/// One subscription's queue and cancellation state.
pub(super) struct Sub {
    /// The dispatcher thread of a callback subscription, joined by the
    /// first cancel made outside it (so a C caller may unload the library).
    pub(super) thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(super) filter: Filter,
    pub(super) capacity: usize,
    pub(super) queue: Mutex<Queue>,
    pub(super) cond: Condvar,
    pub(super) counters: Arc<Counters>,
}

#[derive(Default)]
pub(super) struct Queue {
    pub(super) events: VecDeque<Event>,
    pub(super) known: HashMap<String, Known>,
    /// Events were dropped; a resync is owed once the consumer catches up.
    overflowed: bool,
    pub(super) cancelled: bool,
    /// A callback subscription's dispatcher thread, while it runs.
    pub(super) dispatcher: Option<ThreadId>,
}

impl Sub {
    pub(super) fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues the events that `after`, the new state of `uuid` in the
    /// model, means for this subscription's set, or records the overflow.
    pub(super) fn offer(&self, uuid: &str, after: &Entry, hint: Hint, revision: i64) {
        let mut q = self.lock();
        if q.cancelled || q.overflowed {
            return;
        }
        let events = {
            let old = q.known.get(uuid).map(|k| (k.status, &k.service));
            let now = after.effective().zip(after.record.as_ref());
            let new = now.filter(|(_, s)| self.filter.matches_record(s));
            let moved_to = now.filter(|_| new.is_none()).map(|(_, s)| s);
            diff(uuid, old, new, moved_to, hint, revision)
        };
        for event in events {
            if q.events.len() >= self.capacity {
                q.overflowed = true;
                return;
            }
            self.push(&mut q, event);
        }
    }

    fn push(&self, q: &mut Queue, event: Event) {
        if !event.uuid.is_empty() {
            match (event.new_status, &event.service) {
                (Some(status), Some(service)) if self.filter.matches_record(service) => {
                    q.known.insert(
                        event.uuid.clone(),
                        Known {
                            status,
                            service: service.clone(),
                        },
                    );
                }
                _ => {
                    q.known.remove(&event.uuid);
                }
            }
        }
        q.events.push_back(event);
        Counters::bump(&self.counters.events_delivered);
        self.cond.notify_all();
    }

    /// Brings the subscriber from what it was told to `model`: a `Resync`
    /// event, then the differences (in the same terms as live changes).
    pub(super) fn resync(&self, model: &Model, revision: i64) {
        let model = model.snapshot();
        let mut q = self.lock();
        if q.cancelled {
            return;
        }
        q.overflowed = false;
        let mut events = vec![make_event(
            EventKind::Resync,
            None,
            "",
            None,
            None,
            None,
            revision,
        )];
        // The set as it is now, and where known services outside it went.
        let mut current: HashMap<&str, (Status, &Service)> = HashMap::new();
        let mut outside: HashMap<&str, &Service> = HashMap::new();
        for (uuid, entry) in &model {
            if let (Some(st), Some(rec)) = (entry.effective(), &entry.record) {
                if self.filter.matches_record(rec) {
                    current.insert(uuid.as_str(), (st, rec));
                } else if q.known.contains_key(uuid) {
                    outside.insert(uuid.as_str(), rec);
                }
            }
        }
        for (uuid, known) in &q.known {
            events.extend(diff(
                uuid,
                Some((known.status, &known.service)),
                current.get(uuid.as_str()).copied(),
                outside.get(uuid.as_str()).copied(),
                Hint::default(),
                revision,
            ));
        }
        for (uuid, now) in &current {
            if !q.known.contains_key(*uuid) {
                events.extend(diff(
                    uuid,
                    None,
                    Some(*now),
                    None,
                    Hint::default(),
                    revision,
                ));
            }
        }
        Counters::bump(&self.counters.resyncs);
        for e in events {
            self.push(&mut q, e);
        }
    }

    pub(super) fn cancel_queue(&self) {
        let mut q = self.lock();
        q.cancelled = true;
        self.cond.notify_all();
    }

    /// Waits for the next event until `deadline`. `Err(Closed)` once cancelled.
    /// `settle` computes an owed resync (the hub's, passed in so the queue
    /// does not depend on the hub that feeds it).
    pub(super) fn pop(
        &self,
        settle: &dyn Fn(&Sub),
        deadline: Option<Instant>,
    ) -> Result<Option<Event>> {
        let mut q = self.lock();
        loop {
            if q.cancelled {
                return Err(Error::new(
                    ErrorKind::Closed,
                    "the subscription is cancelled",
                ));
            }
            if let Some(e) = q.events.pop_front() {
                let owe_resync = q.overflowed && q.events.len() < self.capacity / 2 + 1;
                drop(q);
                if owe_resync {
                    settle(self);
                }
                return Ok(Some(e));
            }
            if q.overflowed {
                drop(q);
                settle(self);
                q = self.lock();
                continue;
            }
            match deadline {
                None => q = self.cond.wait(q).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    q = self
                        .cond
                        .wait_timeout(q, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }
}
