//! The subscription registry: adding a subscription at the model's
//! revision (with its snapshot), and removing it.

use std::sync::{Arc, Condvar, Mutex};

use crate::event::EventKind;
use crate::store::Filter;

use super::diff::make_event;
use super::hub::Hub;
use super::options::SubscribeOptions;
use super::queue::{Queue, Sub};

impl Hub {
    /// Registers a subscription at the model's current revision; with
    /// `options.snapshot`, queues an `Existing` event for each service in
    /// its set first. Holds the hub lock only to take a snapshot of the
    /// model: the events are made after, from the snapshot.
    pub(super) fn register(&self, filter: Filter, options: &SubscribeOptions) -> Arc<Sub> {
        let sub = Arc::new(Sub {
            thread: Mutex::new(None),
            filter,
            capacity: options.queue_capacity.max(1),
            queue: Mutex::new(Queue::default()),
            cond: Condvar::new(),
            counters: self.counters.clone(),
        });
        let (existing, revision) = {
            let mut st = self.lock();
            if st.shut {
                // The client closed while this subscription was being made.
                sub.lock().cancelled = true;
                return sub;
            }
            st.subs.push(sub.clone());
            (
                options.snapshot.then(|| self.model.snapshot()),
                self.revision(),
            )
        };
        if let Some(existing) = existing {
            let events = existing
                .entries()
                .filter_map(|(key, entry)| {
                    let (Some(status), Some(record)) = (entry.effective(), &entry.record) else {
                        return None;
                    };
                    sub.filter.matches_record(record).then(|| {
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
                })
                .collect();
            // Live events queued meanwhile are later revisions: after these.
            sub.push_front(events);
        }
        sub
    }

    pub(super) fn unregister(&self, sub: &Arc<Sub>) {
        self.lock().subs.retain(|s| !Arc::ptr_eq(s, sub));
    }
}
