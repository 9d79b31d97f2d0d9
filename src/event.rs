//! What subscribers are told: one event per change of a service, in etcd
//! revision order.

use crate::record::{Service, Status};

/// What happened to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Part of the initial snapshot: the service as it is when the
    /// subscription starts (only with [`SubscribeOptions::snapshot`](crate::SubscribeOptions)).
    Existing,
    /// The service entered the subscription's set: a new record appeared,
    /// or a change made an existing one pass the filter (say, it moved into
    /// the subscribed region). Either way `old_status` is `None`, as the
    /// subscriber knew nothing of it, and `new_status` its effective status.
    Registered,
    /// The service became effectively UP.
    Up,
    /// The service stopped being effectively UP; see [`DownReason`].
    Down,
    /// Fields other than the effective status changed.
    Updated,
    /// The service left the subscription's set: its record was deleted
    /// (after a `Down` with [`DownReason::Deleted`] if it was UP), or a
    /// change took it out of the filter (reason [`DownReason::Moved`]; no
    /// `Down` first, since it did not go down).
    Removed,
    /// The subscription fell behind (its queue overflowed, or the history it
    /// needed was compacted): the events that follow are the differences
    /// between what it was told and the current state.
    Resync,
}

/// Why a service went DOWN, why it left a subscription's set
/// ([`DownReason::Moved`]), or why it came back UP ([`DownReason::Lifted`]).
///
/// New reasons may be added: match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DownReason {
    /// An operator forced it DOWN ([`Client::down`](crate::Client::down),
    /// maintenance).
    Forced,
    /// Its UP key vanished while the record says UP: the registering
    /// process stopped keeping its lease alive (it died, or was cut off
    /// for longer than the TTL) — a crash, as opposed to
    /// [`DownReason::Closed`].
    Expired,
    /// Its record was deleted.
    Deleted,
    /// Its owner stopped checking in within its heartbeat deadline
    /// ([`Service::with_heartbeat`](crate::Service::with_heartbeat)): the
    /// process and its lease live on, but its main loop does not. The
    /// owner's client set the record DOWN (with `heartbeat_missed`); the
    /// next check-in brings it back UP.
    Missed,
    /// With [`EventKind::Removed`]: the service still exists, but a change
    /// moved it out of the subscription's filter (say, to another region),
    /// so it left the subscription's set. With [`EventKind::Updated`]:
    /// another client took the service over from a live holder (identity
    /// is type+host: a restarted daemon registering again); it stays UP.
    Moved,
    /// Carried by an [`EventKind::Up`]: a forced DOWN was lifted
    /// ([`Client::up`](crate::Client::up), or the end of its maintenance
    /// window) and the service is UP again in the same transaction.
    Lifted,
    /// Its registering client closed cleanly ([`Client::close`](crate::Client::close),
    /// or the last handle dropped): a shutdown, not a crash.
    Closed,
    /// Its owner set it DOWN itself (an update with status DOWN).
    Declared,
}

/// One change of one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// Why, for [`EventKind::Down`]; [`DownReason::Moved`] for a
    /// [`EventKind::Removed`] caused by a move out of the filter, or for an
    /// [`EventKind::Updated`] caused by a takeover;
    /// [`DownReason::Lifted`] for an [`EventKind::Up`] that ends a forced DOWN.
    pub reason: Option<DownReason>,
    /// The service's uuid (empty for [`EventKind::Resync`]).
    pub uuid: String,
    /// Its type (from the newest record known).
    pub service_type: String,
    /// Its host.
    pub host: String,
    /// Its region.
    pub region: String,
    /// Effective status before the change; `None` if it did not exist.
    pub old_status: Option<Status>,
    /// Effective status after the change; `None` if it no longer exists.
    pub new_status: Option<Status>,
    /// The record after the change; for `Removed`, the record before the
    /// deletion, or with [`DownReason::Moved`] the record as it is now
    /// (showing where it went).
    pub service: Option<Service>,
    /// The etcd revision of the change.
    pub revision: i64,
}
