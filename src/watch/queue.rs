//! Each subscription's bounded queue: stage, push, overflow, resync, pop.
//!
//! A subscription keeps no copy of what it was told. While it keeps up, what
//! it knows of a service is the hub's model as it was before each change
//! (filtered), so each change's events come from the model's entry before
//! and after it. When its queue has no room for a revision's events, it
//! keeps instead a [`Snapshot`] of the model from before that revision
//! (shards shared with the model until they change) and stops taking
//! events; once its consumer catches up, the difference between that
//! snapshot and the model is computed on the consumer's thread and queued
//! after a `Resync` event.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::event::{Event, EventKind};
use crate::model::{Entry, Snapshot};
use crate::record::{Service, Status};
use crate::stats::Counters;
use crate::store::Filter;

use super::diff::{Hint, diff, make_event};

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
    /// `Some`: events were dropped; what the subscriber was told is this
    /// snapshot of the model, and a resync is owed once it catches up.
    behind: Option<Snapshot>,
    /// A `Resync` event is owed before the next differences (set when the
    /// subscription fell behind, cleared when the first difference lands).
    resync_owed: bool,
    pub(super) cancelled: bool,
    /// A callback subscription's dispatcher thread, while it runs.
    pub(super) dispatcher: Option<ThreadId>,
}

/// One service changed by a revision: its entry before and after, and what
/// its keys said beyond them.
pub(super) struct Touched {
    pub uuid: String,
    pub before: Entry,
    pub after: Entry,
    pub hint: Hint,
}

/// What a subscription makes of a revision.
pub(super) enum Staged {
    /// These events, to push once the model holds the revision.
    Events(Vec<Event>),
    /// Nothing for it (not in its set, cancelled, or already behind).
    Nothing,
    /// No room: it falls behind from the model as it was before.
    Overflow,
}

/// The service as a subscription with `filter` sees it: effective status
/// and record, or nothing (not in its set).
fn seen<'a>(filter: &Filter, entry: &'a Entry) -> Option<(Status, &'a Service)> {
    entry
        .effective()
        .zip(entry.record.as_ref())
        .filter(|(_, s)| filter.matches_record(s))
}

/// The events that take a subscriber from `before` to `after` of `uuid`.
fn events_for(
    filter: &Filter,
    uuid: &str,
    before: Option<&Entry>,
    after: Option<&Entry>,
    hint: Hint,
    revision: i64,
) -> Vec<Event> {
    let old = before.and_then(|e| seen(filter, e));
    let now = after.and_then(|e| e.effective().zip(e.record.as_ref()));
    let new = now.filter(|(_, s)| filter.matches_record(s));
    let moved_to = now.filter(|_| new.is_none()).map(|(_, s)| s);
    diff(uuid, old, new, moved_to, hint, revision)
}

impl Sub {
    pub(super) fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What a revision's changes mean for this subscription. All of a
    /// revision's events go in, or none: a subscriber never holds half a
    /// transaction.
    pub(super) fn stage(&self, touched: &[Touched], revision: i64) -> Staged {
        let q = self.lock();
        if q.cancelled || q.behind.is_some() {
            return Staged::Nothing;
        }
        let events: Vec<Event> = touched
            .iter()
            .flat_map(|t| {
                events_for(
                    &self.filter,
                    &t.uuid,
                    Some(&t.before),
                    Some(&t.after),
                    t.hint,
                    revision,
                )
            })
            .collect();
        if events.is_empty() {
            Staged::Nothing
        } else if q.events.len() + events.len() > self.capacity {
            Staged::Overflow
        } else {
            Staged::Events(events)
        }
    }

    /// Queues staged events (room was checked by [`Sub::stage`]; the
    /// consumer can only have made more since).
    pub(super) fn push_all(&self, events: Vec<Event>) {
        let mut q = self.lock();
        if q.cancelled {
            return;
        }
        for event in events {
            self.push(&mut q, event);
        }
    }

    /// Falls behind: from now on the subscriber knows `told` (the model
    /// before the revision it had no room for) until it resyncs.
    pub(super) fn fall_behind(&self, told: Snapshot) {
        let mut q = self.lock();
        if q.cancelled || q.behind.is_some() {
            return;
        }
        q.behind = Some(told);
        q.resync_owed = true;
        // A consumer waiting on an empty queue resyncs now.
        self.cond.notify_all();
    }

    /// What the subscriber was told, while it is behind.
    pub(super) fn behind(&self) -> Option<Snapshot> {
        self.lock().behind.clone()
    }

    /// The events that take a subscriber from `told` to `now` (no lock
    /// held: only shards the two do not share are compared).
    pub(super) fn differences(&self, told: &Snapshot, now: &Snapshot, revision: i64) -> Vec<Event> {
        told.changes(now)
            .flat_map(|(key, before, after)| {
                events_for(
                    &self.filter,
                    &key.hex(),
                    before.as_ref(),
                    after.as_ref(),
                    Hint::default(),
                    revision,
                )
            })
            .collect()
    }

    /// Queues `events` (the [`Sub::differences`] from `told`), after a
    /// `Resync` event if one is still owed. With `next` `None` the
    /// subscriber is caught up and takes live events again; otherwise it
    /// stays behind, at `next`. False (and nothing queued) when `told` is
    /// no longer what it was told: another thread caught it up meanwhile.
    pub(super) fn commit(
        &self,
        told: &Snapshot,
        events: Vec<Event>,
        revision: i64,
        next: Option<Snapshot>,
    ) -> bool {
        let mut q = self.lock();
        if q.cancelled {
            return true;
        }
        if !q.behind.as_ref().is_some_and(|b| b.same(told)) {
            return false;
        }
        if q.resync_owed {
            q.resync_owed = false;
            Counters::bump(&self.counters.resyncs);
            let resync = make_event(EventKind::Resync, None, "", None, None, None, revision);
            self.push(&mut q, resync);
        }
        for event in events {
            self.push(&mut q, event);
        }
        q.behind = next;
        true
    }

    /// Puts events before everything queued (a new subscription's existing
    /// services, computed after it was registered).
    pub(super) fn push_front(&self, events: Vec<Event>) {
        let mut q = self.lock();
        if q.cancelled {
            return;
        }
        for event in events.into_iter().rev() {
            q.events.push_front(event);
            Counters::bump(&self.counters.events_delivered);
        }
        self.cond.notify_all();
    }

    fn push(&self, q: &mut Queue, event: Event) {
        q.events.push_back(event);
        Counters::bump(&self.counters.events_delivered);
        self.cond.notify_all();
    }

    pub(super) fn cancel_queue(&self) {
        let mut q = self.lock();
        q.cancelled = true;
        self.cond.notify_all();
    }

    /// Waits for the next event until `deadline`. `Err(Closed)` once cancelled.
    /// `settle` catches a subscriber that fell behind up (the hub's, passed
    /// in so the queue does not depend on the hub that feeds it).
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
                let owe_resync = q.behind.is_some() && q.events.len() < self.capacity / 2 + 1;
                drop(q);
                if owe_resync {
                    settle(self);
                }
                return Ok(Some(e));
            }
            if q.behind.is_some() {
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
