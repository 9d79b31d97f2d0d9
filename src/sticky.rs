//! The rules a write follows when it meets an operator's hold or a
//! heartbeat deadline: pure functions of records, shared by the store (which
//! writes them) and the owner registry (which decides when to write).
//!
//! A forced DOWN is an operator's decision (`down()`), so the owner's
//! `update()` or check-in must not undo it: the record keeps `forced_down`,
//! status DOWN and the operator's window and note, while the owner's other
//! fields (region, type, host) still change, and what the owner wants
//! underneath (UP, or DOWN: `owner_down`) is kept for the lift. Only `up()`
//! lifts it, or the window's end passing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::record::{Service, Status};

/// Seconds since the epoch, as maintenance windows are written.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// True when `s`'s maintenance window has an end and it has passed.
pub(crate) fn window_over(s: &Service, now: u64) -> bool {
    s.maintenance_end != 0 && s.maintenance_end <= now
}

/// What an owner's write stores, given what is stored (`old`) and what the
/// owner wants (`desired`): the owner's record, except that a forced DOWN
/// whose window has not ended stays, with the operator's window and note.
///
/// A desired record without a heartbeat deadline (`None`) keeps the one
/// stored; `Some(ZERO)` removes it.
pub(crate) fn owner_record(old: Option<&Service>, desired: &Service, now: u64) -> Service {
    let mut new = desired.clone();
    new.forced_down = false;
    new.owner_down = false;
    new.heartbeat_missed = false;
    new.heartbeat = match desired.heartbeat {
        None => old.and_then(|o| o.heartbeat),
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
    };
    if let Some(o) = old.filter(|o| o.forced_down && !window_over(o, now)) {
        new.owner_down = desired.status == Status::Down;
        new.status = Status::Down;
        new.forced_down = true;
        new.maintenance_start = o.maintenance_start;
        new.maintenance_end = o.maintenance_end;
        new.maintenance_note = o.maintenance_note.clone();
    }
    new
}

/// `old` with its forced DOWN lifted, maintenance cleared: what its owner
/// wants underneath: UP, or DOWN if the owner set it DOWN meanwhile
/// (`owner_down`), or DOWN for a missed heartbeat when `overdue` (the
/// owner's deadline passed while it was held).
pub(crate) fn lifted(old: &Service, overdue: bool) -> Service {
    let (status, heartbeat_missed) = if old.owner_down {
        (Status::Down, false)
    } else if overdue {
        (Status::Down, true)
    } else {
        (Status::Up, false)
    };
    Service {
        status,
        heartbeat_missed,
        forced_down: false,
        owner_down: false,
        maintenance_start: 0,
        maintenance_end: 0,
        maintenance_note: String::new(),
        ..old.clone()
    }
}

/// How long from now until `end` (seconds since the epoch), saturating: an
/// end far in the future (up to `u64::MAX`) is a long wait, never a panic.
pub(crate) fn until(end: u64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    Duration::from_secs(end).saturating_sub(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forced(end: u64) -> Service {
        Service {
            uuid: "u".into(),
            service_type: "t".into(),
            host: "h".into(),
            status: Status::Down,
            region: "east".into(),
            maintenance_start: 10,
            maintenance_end: end,
            maintenance_note: "disk".into(),
            forced_down: true,
            heartbeat: None,
            heartbeat_missed: false,
            owner_down: false,
            exclusive: false,
        }
    }

    #[test]
    fn an_owner_write_keeps_a_forced_down_until_its_window_ends() {
        let mut desired = Service::new("t", "h2").with_region("west");
        desired.uuid = "u".into();
        desired.forced_down = true; // ignored: only down() sets it
        let kept = owner_record(Some(&forced(100)), &desired, 99);
        assert_eq!(kept.status, Status::Down);
        assert!(kept.forced_down);
        assert_eq!(kept.host, "h2", "the owner's other fields change");
        assert_eq!(kept.region, "west");
        assert_eq!(
            (kept.maintenance_start, kept.maintenance_end),
            (10, 100),
            "the operator's window stays"
        );
        assert_eq!(kept.maintenance_note, "disk");
        // No end: held until up().
        assert!(owner_record(Some(&forced(0)), &desired, u64::MAX).forced_down);
        // The window is over: the owner's record as it is.
        let after = owner_record(Some(&forced(100)), &desired, 100);
        assert_eq!((after.status, after.forced_down), (Status::Up, false));
        // Not forced: the owner's record, never forced by its own say.
        assert!(!owner_record(None, &desired, 0).forced_down);
    }

    #[test]
    fn lifting_clears_the_maintenance() {
        let l = lifted(&forced(100), false);
        assert_eq!((l.status, l.forced_down), (Status::Up, false));
        assert_eq!((l.maintenance_start, l.maintenance_end), (0, 0));
        assert_eq!(l.maintenance_note, "");
        assert_eq!((l.host.as_str(), l.region.as_str()), ("h", "east"));
    }
}

#[cfg(test)]
mod more_tests {
    use super::*;

    #[test]
    fn a_lift_gives_back_what_the_owner_wants_underneath() {
        let mut desired = Service::new("t", "h");
        desired.uuid = "u".into();
        desired.status = Status::Down;
        let mut held = Service {
            forced_down: true,
            status: Status::Down,
            maintenance_end: 100,
            ..desired.clone()
        };
        held = owner_record(Some(&held), &desired, 50);
        assert!(held.forced_down && held.owner_down);
        let l = lifted(&held, false);
        assert_eq!(
            (l.status, l.forced_down, l.owner_down),
            (Status::Down, false, false),
            "an owner's own DOWN survives the lift"
        );
        let mut beat = held.clone();
        beat.owner_down = false;
        beat.heartbeat = Some(Duration::from_secs(1));
        let l = lifted(&beat, true);
        assert_eq!((l.status, l.heartbeat_missed), (Status::Down, true));
        assert_eq!(lifted(&beat, false).status, Status::Up);
    }

    #[test]
    fn an_update_keeps_the_heartbeat_deadline_unless_removed() {
        let mut old = Service::new("t", "h");
        old.heartbeat = Some(Duration::from_secs(2));
        let plain = Service::new("t", "h").with_region("r");
        assert_eq!(
            owner_record(Some(&old), &plain, 0).heartbeat,
            Some(Duration::from_secs(2))
        );
        let mut removing = plain.clone();
        removing.heartbeat = Some(Duration::ZERO);
        assert_eq!(owner_record(Some(&old), &removing, 0).heartbeat, None);
    }

    #[test]
    fn waits_saturate_instead_of_panicking() {
        assert!(until(u64::MAX) > Duration::from_secs(1 << 40));
        assert_eq!(until(0), Duration::ZERO);
    }
}
