//! Counters an operator needs, updated lock-free from the runtime thread.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A snapshot of a client's counters, from [`Client::stats`](crate::Client::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Keepalive requests answered by etcd.
    pub keepalives_sent: u64,
    /// Keepalive requests that failed or went unanswered within their deadline.
    pub keepalives_failed: u64,
    /// Keepalive streams re-opened after a failure.
    pub reconnects: u64,
    /// Leases granted to replace one that expired (each re-registers the
    /// client's services).
    pub lease_regrants: u64,
    /// UP keys this client put back (after a re-grant, or after someone
    /// deleted one by hand).
    pub up_keys_restored: u64,
    /// Events handed to subscribers.
    pub events_delivered: u64,
    /// Subscription resyncs (re-list after compaction or overflow).
    pub resyncs: u64,
    /// Times this client took one of its services DOWN because its owner
    /// missed the heartbeat deadline.
    pub heartbeats_missed: u64,
    /// The current lease's id; 0 until the client's first UP registration
    /// grants one.
    pub lease_id: i64,
    /// TTL etcd granted to the current lease, in seconds.
    pub lease_granted_ttl: i64,
    /// Seconds left on the current lease at the last keepalive answer.
    pub lease_ttl_remaining: i64,
    /// Log messages dropped because the C log callback (process-wide, see
    /// `lively_set_log_callback()`) fell a whole queue behind. Counted for
    /// the process, not per client.
    pub log_lines_dropped: u64,
    /// Services this client stopped keeping UP because another client
    /// deleted them, forced them down or took them over (each is also
    /// logged at warning level).
    pub registrations_lost: u64,
    /// Panics caught in the client's background tasks (keepalives, the
    /// owner's timer, the watch, endpoint steering; each restarted) and in
    /// Rust subscription callbacks (the subscription goes on), each logged
    /// at error level.
    pub task_panics: u64,
    /// Times changed TLS files were loaded for new connections (the
    /// files are read again for every new connection to etcd).
    pub tls_reloads: u64,
    /// Versions of changed TLS files that did not load (each logged at
    /// warning level, naming the file); the previous credentials stay in use.
    pub tls_files_refused: u64,
}

/// Log lines the C log callback's queue had no room for (process-wide, as
/// the log callback is).
pub(crate) static LOG_LINES_DROPPED: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub keepalives_sent: AtomicU64,
    pub keepalives_failed: AtomicU64,
    pub reconnects: AtomicU64,
    pub lease_regrants: AtomicU64,
    pub up_keys_restored: AtomicU64,
    pub events_delivered: AtomicU64,
    pub resyncs: AtomicU64,
    pub heartbeats_missed: AtomicU64,
    pub lease_id: AtomicI64,
    pub lease_granted_ttl: AtomicI64,
    pub lease_ttl_remaining: AtomicI64,
    pub registrations_lost: AtomicU64,
    /// Panics caught in subscription callbacks (the runtime's own tasks'
    /// are counted by its supervisor).
    pub task_panics: AtomicU64,
    pub tls_reloads: AtomicU64,
    pub tls_files_refused: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let i = |c: &AtomicI64| c.load(Ordering::Relaxed);
        Stats {
            keepalives_sent: r(&self.keepalives_sent),
            keepalives_failed: r(&self.keepalives_failed),
            reconnects: r(&self.reconnects),
            lease_regrants: r(&self.lease_regrants),
            up_keys_restored: r(&self.up_keys_restored),
            events_delivered: r(&self.events_delivered),
            resyncs: r(&self.resyncs),
            heartbeats_missed: r(&self.heartbeats_missed),
            lease_id: i(&self.lease_id),
            lease_granted_ttl: i(&self.lease_granted_ttl),
            lease_ttl_remaining: i(&self.lease_ttl_remaining),
            log_lines_dropped: r(&LOG_LINES_DROPPED),
            registrations_lost: r(&self.registrations_lost),
            task_panics: r(&self.task_panics),
            tls_reloads: r(&self.tls_reloads),
            tls_files_refused: r(&self.tls_files_refused),
        }
    }
}
