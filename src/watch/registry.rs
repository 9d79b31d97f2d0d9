//! The subscription registry: adding a subscription at the model's
//! revision (with its snapshot), and removing it.

use std::sync::{Arc, Condvar, Mutex};

use crate::store::Filter;

use super::hub::Hub;
use super::options::SubscribeOptions;
use super::queue::{Queue, Sub};

impl Hub {
    /// Registers a subscription at the model's current revision; with
    /// `options.snapshot`, it is told an `Existing` event for each service
    /// in its set first, in chunks its queue holds (the first queued here).
    /// Holds the hub lock only to take a snapshot of the model: the events
    /// are made after, from the snapshot.
    pub(super) fn register(&self, filter: Filter, options: &SubscribeOptions) -> Arc<Sub> {
        let sub = Arc::new(Sub {
            thread: Mutex::new(None),
            filter,
            capacity: options.queue_capacity.max(1),
            queue: Mutex::new(Queue::default()),
            cond: Condvar::new(),
            counters: self.counters.clone(),
        });
        {
            let mut st = self.lock();
            if st.shut {
                // The client closed while this subscription was being made.
                sub.lock().cancelled = true;
                return sub;
            }
            if options.snapshot {
                // Told on its consumer's thread, in chunks its queue holds.
                sub.tell_existing(self.model.snapshot(), self.revision());
            }
            st.subs.push(sub.clone());
        }
        if options.snapshot {
            // The first chunk now, as far as the queue holds.
            self.settle(&sub);
        }
        sub
    }

    pub(super) fn unregister(&self, sub: &Arc<Sub>) {
        self.lock().subs.retain(|s| !Arc::ptr_eq(s, sub));
    }
}
