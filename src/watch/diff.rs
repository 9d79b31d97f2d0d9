//! The events that turn what a subscriber knows of a service into what is
//! true now: set semantics shared by live changes and resyncs.

use crate::event::{DownReason, Event, EventKind};
use crate::record::{Service, Status};

/// What one revision's keys said beyond the record and UP key: why the
/// service changed, when the state alone cannot tell.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Hint {
    /// Its DOWN key was written as a clean close's mark (with its UP key
    /// deleted in the same transaction).
    pub closed: bool,
    /// Its UP key, present before, was put again: moved to another lease
    /// (a takeover).
    pub moved: bool,
}

pub(super) fn make_event(
    kind: EventKind,
    reason: Option<DownReason>,
    uuid: &str,
    old_status: Option<Status>,
    new_status: Option<Status>,
    service: Option<&Service>,
    revision: i64,
) -> Event {
    let s = service.cloned();
    Event {
        kind,
        reason,
        uuid: uuid.to_string(),
        service_type: s
            .as_ref()
            .map(|s| s.service_type.clone())
            .unwrap_or_default(),
        host: s.as_ref().map(|s| s.host.clone()).unwrap_or_default(),
        region: s.as_ref().map(|s| s.region.clone()).unwrap_or_default(),
        old_status,
        new_status,
        service: s,
        revision,
    }
}

/// The events that turn what a subscriber knows of a service, `old`
/// (effective status and record, or nothing: not in its set), into `new`.
/// `moved_to` is the service's record when it still exists outside the set.
/// Shared by live changes and resync differences, so both speak the same
/// language.
///
/// A subscription is a set: a service entering it (created, or changed so
/// that it now passes the filter) is `Registered`; one leaving it is
/// `Removed`, after a `Down` (`Deleted`) if it was deleted while UP, or with
/// reason `Moved` (and its new record) if a change took it out of the
/// filter, since it did not go down.
pub(super) fn diff(
    uuid: &str,
    old: Option<(Status, &Service)>,
    new: Option<(Status, &Service)>,
    moved_to: Option<&Service>,
    hint: Hint,
    revision: i64,
) -> Vec<Event> {
    match (old, new) {
        (None, None) => vec![],
        (Some((st, _)), None) if moved_to.is_some() => vec![make_event(
            EventKind::Removed,
            Some(DownReason::Moved),
            uuid,
            Some(st),
            None,
            moved_to,
            revision,
        )],
        (None, Some((st, s))) => vec![make_event(
            EventKind::Registered,
            None,
            uuid,
            None,
            Some(st),
            Some(s),
            revision,
        )],
        (Some((st, s)), None) => {
            let mut v = Vec::new();
            if st == Status::Up {
                v.push(make_event(
                    EventKind::Down,
                    Some(DownReason::Deleted),
                    uuid,
                    Some(Status::Up),
                    Some(Status::Down),
                    Some(s),
                    revision,
                ));
            }
            v.push(make_event(
                EventKind::Removed,
                None,
                uuid,
                Some(Status::Down),
                None,
                Some(s),
                revision,
            ));
            v
        }
        (Some((ost, os)), Some((nst, ns))) => {
            let event = |kind, reason| {
                vec![make_event(
                    kind,
                    reason,
                    uuid,
                    Some(ost),
                    Some(nst),
                    Some(ns),
                    revision,
                )]
            };
            match (ost, nst) {
                (Status::Up, Status::Down) if ns.status == Status::Down => {
                    // The owner's deadline enforcement marks its DOWN, so
                    // subscribers tell a hung main loop from an operator.
                    let reason = if ns.forced_down {
                        DownReason::Forced
                    } else if ns.heartbeat_missed {
                        DownReason::Missed
                    } else {
                        DownReason::Declared
                    };
                    event(EventKind::Down, Some(reason))
                }
                (Status::Up, Status::Down) if hint.closed => {
                    event(EventKind::Down, Some(DownReason::Closed))
                }
                (Status::Up, Status::Down) => event(EventKind::Down, Some(DownReason::Expired)),
                (Status::Up, Status::Up) if hint.moved => {
                    event(EventKind::Updated, Some(DownReason::Moved))
                }
                (Status::Down, Status::Up) if os.forced_down => {
                    event(EventKind::Up, Some(DownReason::Lifted))
                }
                (Status::Down, Status::Up) => event(EventKind::Up, None),
                _ if os != ns => event(EventKind::Updated, None),
                _ => vec![],
            }
        }
    }
}
