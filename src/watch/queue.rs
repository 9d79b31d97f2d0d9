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
//!
//! No path queues more than the capacity: a new subscription's `Existing`
//! events and a resync's differences are made in chunks that fit the room
//! left, on the consumer's thread as it takes events, in shard order; what
//! the subscriber was told after a chunk is the model's shards up to the
//! chunk's end and its old ones after (see [`Snapshot::advanced`]). Memory
//! per subscription is thus the capacity's events plus, while it is behind,
//! the snapshot it was told (its shards shared with the model until they
//! change) and one copied shard.

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
    /// While a new subscription is told the services that existed when it
    /// subscribed: the model then and its revision. What lies between
    /// `behind` and it is told as `Existing` events; then `behind` is it,
    /// and the changes since follow as differences.
    existing: Option<(Snapshot, i64)>,
    /// A `Resync` event is owed before the next differences if there are
    /// any: the changes made while a subscription was told what existed
    /// reach it as differences, not one by one.
    resync_if_changed: bool,
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

    /// Starts a new subscription behind, from nothing: it is told `model`
    /// (the model when it subscribed, at `revision`) as `Existing` events,
    /// then the changes since. Before it is registered, so no live event
    /// comes first.
    pub(super) fn tell_existing(&self, model: Snapshot, revision: i64) {
        let mut q = self.lock();
        q.behind = Some(Snapshot::empty());
        q.existing = Some((model, revision));
    }

    /// The events that take a subscriber from `told` toward `to`, in shard
    /// order, at most `room` of them: the events, and what it was told
    /// after them (`to` itself when they are all of them). `existing`: the
    /// subscription is being told what existed (every change is a service
    /// `told` lacks), as `Existing` events. No lock held: only shards the
    /// two do not share are compared.
    fn chunk(
        &self,
        told: &Snapshot,
        to: &Snapshot,
        room: usize,
        revision: i64,
        existing: bool,
    ) -> (Vec<Event>, Snapshot) {
        let mut events = Vec::new();
        let mut shard = 0;
        let mut keys = Vec::new();
        let mut taken = false;
        for (i, key, before, after) in told.indexed_changes(to) {
            let next = if existing {
                after
                    .as_ref()
                    .and_then(|e| seen(&self.filter, e))
                    .map(|(status, record)| {
                        make_event(
                            EventKind::Existing,
                            None,
                            &key.hex(),
                            None,
                            Some(status),
                            Some(record),
                            revision,
                        )
                    })
                    .into_iter()
                    .collect()
            } else {
                events_for(
                    &self.filter,
                    &key.hex(),
                    before.as_ref(),
                    after.as_ref(),
                    Hint::default(),
                    revision,
                )
            };
            // A service's events are never split; the first always goes
            // (`room` is zero only for an empty queue owing a resync).
            if taken && events.len() + next.len() > room {
                let told = if i == shard {
                    told.advanced(to, shard, &keys)
                } else {
                    told.advanced(to, i, &[])
                };
                return (events, told);
            }
            if i != shard {
                shard = i;
                keys.clear();
            }
            taken = true;
            keys.push(key);
            events.extend(next);
        }
        (events, to.clone())
    }

    /// What the subscriber was told, the model it is told as existing if
    /// any, and the room left in the queue for a chunk (a `Resync` owed
    /// takes a place); `None` when cancelled, caught up, or full.
    #[allow(clippy::type_complexity)]
    fn room(&self) -> Option<(Snapshot, Option<(Snapshot, i64)>, usize)> {
        let q = self.lock();
        if q.cancelled {
            return None;
        }
        let told = q.behind.clone()?;
        let free = self.capacity.saturating_sub(q.events.len());
        if free == 0 {
            return None;
        }
        let room = free.saturating_sub(usize::from(q.resync_owed || q.resync_if_changed));
        Some((told, q.existing.clone(), room))
    }

    /// Catches the subscriber up after it fell behind (or tells a new one
    /// what existed), as far as its queue has room: the differences between
    /// what it was told and the model (`now()`: a snapshot, the model's
    /// generation and revision), computed without the hub's lock (`lock()`)
    /// in a few rounds, each covering only the shards that changed during
    /// the one before. A round that tells it everything while the model
    /// stood still takes it back to live events, under the lock, so no live
    /// event slips between; if the model never stands still, the last round
    /// runs under the lock.
    pub(super) fn settle<G>(
        &self,
        now: &dyn Fn() -> (Snapshot, u64, i64),
        generation: &dyn Fn() -> u64,
        lock: &dyn Fn() -> G,
    ) {
        const ROUNDS: usize = 3;
        for _ in 0..ROUNDS {
            let Some((told, existing, room)) = self.room() else {
                return;
            };
            if let Some((model, revision)) = existing {
                let (events, next) = self.chunk(&told, &model, room, revision, true);
                let done = next.same(&model);
                if !self.commit_existing(&told, events, next) || !done {
                    return;
                }
                continue;
            }
            let (model, seen, revision) = {
                let _st = lock();
                now()
            };
            let (events, next) = self.chunk(&told, &model, room, revision, false);
            if !next.same(&model) {
                // No room for the rest: the next pop goes on from here.
                self.commit(&told, events, revision, Some(next));
                return;
            }
            let st = lock();
            if generation() == seen {
                self.commit(&told, events, revision, None);
                return;
            }
            drop(st);
            if !self.commit(&told, events, revision, Some(next)) {
                return;
            }
        }
        let _st = lock();
        let Some((told, None, room)) = self.room() else {
            return;
        };
        let (model, _, revision) = now();
        let (events, next) = self.chunk(&told, &model, room, revision, false);
        let caught_up = next.same(&model);
        self.commit(&told, events, revision, (!caught_up).then_some(next));
    }

    /// Queues `events` (a chunk of the differences from `told`), after a
    /// `Resync` event if one is still owed. With `next` `None` the
    /// subscriber is caught up and takes live events again; otherwise it
    /// stays behind, at `next`. False (and nothing queued) when `told` is
    /// no longer what it was told: another thread caught it up meanwhile.
    fn commit(
        &self,
        told: &Snapshot,
        events: Vec<Event>,
        revision: i64,
        next: Option<Snapshot>,
    ) -> bool {
        let mut q = self.lock();
        if q.cancelled {
            return false;
        }
        if !q.behind.as_ref().is_some_and(|b| b.same(told)) {
            return false;
        }
        let changed = q.resync_if_changed && !events.is_empty();
        if q.resync_owed || changed {
            q.resync_owed = false;
            q.resync_if_changed = false;
            Counters::bump(&self.counters.resyncs);
            let resync = make_event(EventKind::Resync, None, "", None, None, None, revision);
            self.push(&mut q, resync);
        }
        for event in events {
            self.push(&mut q, event);
        }
        if next.is_none() {
            q.resync_if_changed = false;
        }
        q.behind = next;
        true
    }

    /// Queues a chunk of `Existing` events; once `next` is the whole model
    /// it subscribed to, the changes since come next.
    fn commit_existing(&self, told: &Snapshot, events: Vec<Event>, next: Snapshot) -> bool {
        let mut q = self.lock();
        if q.cancelled || !q.behind.as_ref().is_some_and(|b| b.same(told)) {
            return false;
        }
        for event in events {
            self.push(&mut q, event);
        }
        if q.existing.as_ref().is_some_and(|(m, _)| m.same(&next)) {
            q.existing = None;
            q.resync_if_changed = true;
        }
        q.behind = Some(next);
        true
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
