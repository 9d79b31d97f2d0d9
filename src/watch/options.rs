//! What a subscriber asks for.

/// How [`Client::subscribe`](crate::Client::subscribe) behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// First deliver an [`EventKind::Existing`](crate::EventKind::Existing) event for every matching
    /// service, then changes, with no gap between them.
    pub snapshot: bool,
    /// Events held for a slow consumer before it is resynced instead
    /// (at least 1).
    ///
    /// The bound holds on every path: the queue never holds more than this
    /// many events (below 3, up to 3: a `resync` and a deleted service's
    /// `down` and `removed`, never split). The snapshot's `existing` events
    /// and a resync's differences are made in chunks that fit, as the
    /// consumer takes events. Beyond its queue, a subscription that fell
    /// behind (or is being told its snapshot) keeps one snapshot of the
    /// shared model (its parts shared with the model until they change, so
    /// at most one more copy of it) and one copied shard of it (about 1/4096).
    pub queue_capacity: usize,
}

impl Default for SubscribeOptions {
    fn default() -> SubscribeOptions {
        SubscribeOptions {
            snapshot: false,
            queue_capacity: 1024,
        }
    }
}
