//! Applying the watch's events to the model, one revision (one
//! transaction) at a time, and handing each subscription its events.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use etcd_client::{EventType, WatchResponse};

use crate::keys::ParsedKey;
use crate::log_once;
use crate::model::Snapshot;
use crate::record::{Service, Status, decode_stored};
use crate::store::CLOSED_MARK;

use super::diff::Hint;
use super::hub::Hub;
use super::liveness::progress_revision;
use super::queue::{Staged, Touched};

/// Events applied between two yields of the runtime thread.
const YIELD_EVERY: usize = 128;

/// One key change that matters to the model.
enum Change {
    Record(Option<Service>),
    UpKey(bool),
    /// The DOWN key changed; true when written as a clean close's mark.
    ClosedMark(bool),
}

impl Hub {
    /// Applies one watch response to the model, revision by revision, and
    /// dispatches the resulting events.
    ///
    /// The hub lock is taken per revision, and the runtime thread yields
    /// every [`YIELD_EVERY`] events, so the catch-up after a resync (a
    /// thousand revisions in one response) never keeps a keepalive waiting.
    pub(super) async fn apply(&self, resp: &WatchResponse) {
        let keys = self.store.keys();
        // Written by versions before 0.2 behind etcd's gRPC proxy; not a
        // service, and nothing to log.
        let mark_key = keys.progress_mark();
        let events = resp.events();
        let mut i = 0;
        let mut since_yield = 0;
        while i < events.len() {
            if since_yield >= YIELD_EVERY {
                since_yield = 0;
                tokio::task::yield_now().await;
            }
            let first = i;
            let st = self.lock();
            let rev = events[i].kv().map(|kv| kv.mod_revision()).unwrap_or(0);
            // The changes of one revision (one transaction) are applied
            // together, so a service is never seen half-written.
            let mut changes: Vec<(String, Vec<Change>)> = Vec::new();
            let mut slot: HashMap<String, usize> = HashMap::new();
            // Keys created minus keys deleted in this revision: the
            // namespace's key count a liveness check compares with etcd's.
            let mut created: i64 = 0;
            while i < events.len() && events[i].kv().map(|kv| kv.mod_revision()).unwrap_or(0) == rev
            {
                let ev = &events[i];
                i += 1;
                let Some(kv) = ev.kv() else { continue };
                match ev.event_type() {
                    EventType::Put if kv.version() == 1 => created += 1,
                    EventType::Delete => created -= 1,
                    EventType::Put => {}
                }
                if kv.key() == mark_key.as_bytes() {
                    continue;
                }
                let (uuid, change) = match keys.parse(kv.key()) {
                    Some(ParsedKey::Record(uuid)) => match ev.event_type() {
                        EventType::Put => match decode_stored(kv.key(), kv.value()) {
                            Ok(s) => (uuid, Change::Record(Some(s))),
                            Err(_) => {
                                log_once::skipped_key(kv.key());
                                continue;
                            }
                        },
                        EventType::Delete => (uuid, Change::Record(None)),
                    },
                    Some(ParsedKey::Status(Status::Up, uuid)) => {
                        (uuid, Change::UpKey(ev.event_type() == EventType::Put))
                    }
                    Some(ParsedKey::Status(Status::Down, uuid)) => (
                        uuid,
                        Change::ClosedMark(
                            ev.event_type() == EventType::Put
                                && kv.lease() == 0
                                && kv.value() == CLOSED_MARK,
                        ),
                    ),
                    Some(_) => continue,
                    None => {
                        log_once::skipped_key(kv.key());
                        continue;
                    }
                };
                // A lease revocation deletes thousands of keys in one
                // revision: find each service's slot by hash, not by scan.
                match slot.get(&uuid) {
                    Some(&at) => changes[at].1.push(change),
                    None => {
                        slot.insert(uuid.clone(), changes.len());
                        changes.push((uuid, vec![change]));
                    }
                }
            }
            // Each subscription's events come from each service's entry
            // before and after this revision; the model takes the revision
            // only once every subscription has its events staged (or fell
            // behind from the model as it was before), and the events are
            // queued only after, so a view read on an event sees it.
            let touched: Vec<Touched> = changes
                .into_iter()
                .map(|(uuid, list)| {
                    let before = self.model.entry(&uuid).unwrap_or_default();
                    let mut after = before.clone();
                    let mut hint = Hint::default();
                    for change in &list {
                        match change {
                            Change::Record(r) => after.record = r.clone(),
                            Change::UpKey(up) => {
                                after.up_key = *up;
                                if *up {
                                    after.closed = false;
                                }
                            }
                            Change::ClosedMark(closed) => {
                                hint.closed |= *closed;
                                after.closed = *closed;
                            }
                        }
                    }
                    // Our writes put an UP key only where it is missing or on
                    // another lease: a put over a present one is a takeover.
                    hint.moved =
                        before.up_key && list.iter().any(|c| matches!(c, Change::UpKey(true)));
                    Touched {
                        uuid,
                        before,
                        after,
                        hint,
                    }
                })
                .collect();
            let mut before_rev: Option<Snapshot> = None;
            let mut staged = Vec::new();
            for sub in &st.subs {
                match sub.stage(&touched, rev) {
                    Staged::Events(events) => staged.push((sub, events)),
                    Staged::Nothing => {}
                    Staged::Overflow => {
                        let told = before_rev.get_or_insert_with(|| self.model.snapshot());
                        sub.fall_behind(told.clone());
                    }
                }
            }
            for t in touched {
                self.model.put(&t.uuid, t.after);
            }
            for (sub, events) in staged {
                sub.push_all(events);
            }
            self.keys.fetch_add(created, Ordering::AcqRel);
            self.set_revision(rev);
            drop(st);
            since_yield += i - first;
        }
        // A periodic progress notification says everything up to the
        // header's revision has been delivered; an answer to a progress
        // request or a "created" response does not (see
        // `liveness::progress_revision`).
        if let Some(h) = resp.header() {
            if events.is_empty() {
                if let Some(rev) = progress_revision(resp.watch_id(), resp.created(), h.revision())
                {
                    self.set_revision(rev);
                }
            }
        }
    }
}
