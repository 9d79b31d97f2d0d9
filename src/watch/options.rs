//! What a subscriber asks for.

/// How [`Client::subscribe`](crate::Client::subscribe) behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// First deliver an [`EventKind::Existing`](crate::EventKind::Existing) event for every matching
    /// service, then changes, with no gap between them.
    pub snapshot: bool,
    /// Events held for a slow consumer before it is resynced instead
    /// (at least 1).
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
