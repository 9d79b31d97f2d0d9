//! The phases of a held service and the one decision that moves them: given
//! what the owner wants and what etcd holds now, what (if anything) to
//! write and which phase follows. Pure: the owner runs it inside the
//! guarded write, so the decision and the write see the same state.

use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result};
use crate::record::{Service, Status};
use crate::sticky;
use crate::store::{Current, Taking};

/// Where a held service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Record UP, its UP key on our lease.
    Up,
    /// Its heartbeat deadline passed: record DOWN (`heartbeat_missed`),
    /// still ours; a check-in brings it back.
    Missed,
    /// An operator forced it DOWN until `end` (seconds since the epoch; 0:
    /// until `up()`); still ours, lifted then. `missed`: its heartbeat
    /// deadline passed while held, and its record says so, so that a lift
    /// by any client leaves it DOWN (missed) until its owner checks in.
    Held { end: u64, missed: bool },
    /// Its owner set it DOWN itself: nothing to keep alive.
    Down,
    /// No longer ours: we stop keeping it; an owner update takes it back.
    Lost(Lost),
    /// Close began: no write for it from now on but close's own mark.
    Closing,
}

/// What moves a held service besides the owner's own update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// The timer (a deadline, a check-in after a miss, a window's end) or
    /// the periodic check: bring the service in line with etcd.
    Check,
    /// An operator's `up()` through this client.
    Lift,
}

/// Why a service was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lost {
    /// Its record was deleted by someone else.
    Deleted,
    /// Another client took it over (its UP key, or the owner recorded in
    /// its DOWN key, is another live lease).
    Moved,
    /// Someone else set its record DOWN (not an operator's hold).
    SetDown,
}

impl Lost {
    pub(crate) fn says(self) -> &'static str {
        match self {
            Lost::Deleted => "deleted by another client",
            Lost::Moved => "taken over by another client",
            Lost::SetDown => "set DOWN by another client",
        }
    }
}

/// What a client holds for one service besides its phase.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub phase: Phase,
    /// The owner's last update asked for UP.
    pub wants_up: bool,
    /// No timer-started transition before this (after a failure).
    pub not_before: Option<Instant>,
    pub failures: u32,
}

impl Held {
    pub(crate) fn new(phase: Phase, wants_up: bool) -> Held {
        Held {
            phase,
            wants_up,
            not_before: None,
            failures: 0,
        }
    }
}

/// What the decision knows besides the record.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts {
    /// Our lease (0: none yet).
    pub ours: i64,
    /// Our lease before the last re-grant (0: none).
    pub previous: i64,
    /// The service has a heartbeat deadline on this client and it passed.
    pub overdue: bool,
    /// Seconds since the epoch.
    pub now: u64,
}

/// The phase a record written by us means.
pub(crate) fn phase_of(s: &Service) -> Phase {
    if s.forced_down {
        Phase::Held {
            end: s.maintenance_end,
            missed: s.heartbeat_missed,
        }
    } else if s.status == Status::Up {
        Phase::Up
    } else if s.heartbeat_missed {
        Phase::Missed
    } else {
        Phase::Down
    }
}

/// The one transition: from the phase we are in, what the owner wants and
/// what etcd holds (`old`, `cur`), on `ev`, the record to write (`None`:
/// nothing) and the phase that follows.
pub(crate) fn decide(
    phase: Phase,
    wants_up: bool,
    ev: Event,
    old: Option<&Service>,
    cur: &Current,
    f: &Facts,
) -> (Option<Service>, Phase) {
    let foreign = |l: i64| l != 0 && l != f.ours && l != f.previous;
    if phase == Phase::Closing {
        // Close is final: its mark is the last write.
        return (None, Phase::Closing);
    }
    let Some(o) = old else {
        return (None, Phase::Lost(Lost::Deleted));
    };
    if cur.closed {
        // Taken over meanwhile (a hold or a DOWN shows no key on our
        // lease to tell us) and closed by its new holder.
        return (None, Phase::Lost(Lost::Moved));
    }
    if o.forced_down {
        if foreign(cur.down_owner) {
            return (None, Phase::Lost(Lost::Moved));
        }
        // The owner judges its own deadline by its check-ins, not by the
        // record (which it keeps saying the same for every other client).
        let missed = f.overdue && o.heartbeat.is_some();
        if ev == Event::Lift || sticky::window_over(o, f.now) {
            let l = sticky::lifted(o, missed);
            let next = phase_of(&l);
            return (Some(l), next);
        }
        let held = Phase::Held {
            end: o.maintenance_end,
            missed,
        };
        // After a re-grant its DOWN key still names the dead lease: name
        // ours, so that up() makes it UP at once. A deadline passed or met
        // again while held: the record says so, for whoever lifts it.
        if (f.ours != 0 && cur.down_owner != f.ours) || o.heartbeat_missed != missed {
            let mut s = o.clone();
            s.heartbeat_missed = missed;
            return (Some(s), held);
        }
        return (None, held);
    }
    if o.status == Status::Down {
        if o.heartbeat_missed {
            if foreign(cur.down_owner) && cur.owner_alive == Some(true) {
                // Another live client's missed service (its DOWN key names
                // its owner): not ours to bring back.
                return (None, Phase::Lost(Lost::Moved));
            }
            if wants_up && !f.overdue {
                let mut s = o.clone();
                s.status = Status::Up;
                s.heartbeat_missed = false;
                return (Some(s), Phase::Up);
            }
            // After a re-grant its DOWN key names the dead lease: name ours,
            // so that it is known to be held by a live lease.
            if wants_up && f.ours != 0 && cur.down_owner != f.ours {
                return (Some(o.clone()), Phase::Missed);
            }
            return (None, Phase::Missed);
        }
        if phase == Phase::Down || !wants_up {
            return (None, Phase::Down);
        }
        return (None, Phase::Lost(Lost::SetDown));
    }
    // The record says UP.
    if foreign(cur.up_lease) || !wants_up {
        return (None, Phase::Lost(Lost::Moved));
    }
    if f.overdue && o.heartbeat.is_some() {
        let mut s = o.clone();
        s.status = Status::Down;
        s.heartbeat_missed = true;
        return (Some(s), Phase::Missed);
    }
    if f.ours != 0 && cur.up_lease == f.ours {
        return (None, Phase::Up);
    }
    // Its UP key is missing (or on our dead lease): put it back on ours.
    (Some(o.clone()), Phase::Up)
}

/// The live lease other than ours that holds a service, as its keys say:
/// its UP key's lease (a key on a lease exists only while the lease lives),
/// the lease its DOWN key is bound to (the Python library's), or the owner
/// its DOWN key records, when etcd said that lease lives.
pub(crate) fn live_holder(cur: &Current, ours: i64) -> Option<i64> {
    let other = |l: i64| l != 0 && l != ours;
    if other(cur.up_lease) {
        Some(cur.up_lease)
    } else if other(cur.down_lease) {
        Some(cur.down_lease)
    } else if other(cur.down_owner) && cur.owner_alive == Some(true) {
        Some(cur.down_owner)
    } else {
        None
    }
}

/// The owner's write of `want` on lease `ours` may take what its keys
/// (`cur`) hold: an `exclusive` registration refuses while another
/// holder's lease lives, whatever its phase (UP, held, missed, DOWN).
/// Identity is type+host: the type+host registered as another uuid is
/// taken back under ours only when no live lease holds that uuid (a
/// registration nobody keeps alive, such as the original library's with a
/// fresh uuid); a live holder is a conflict naming it.
pub(crate) fn may_take(want: &Service, taking: Taking<'_>, cur: &Current, ours: i64) -> Result<()> {
    let holder = live_holder(cur, ours);
    match (taking, holder) {
        (Taking::Itself, Some(lease)) if want.exclusive => Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "type {:?} on host {:?} (uuid {}) is held by another live client (lease {lease:x}); exclusive registrations do not take over",
                want.service_type, want.host, want.uuid
            ),
        )),
        (Taking::Back(other), Some(lease)) => Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "type {:?} on host {:?} is registered as uuid {other}, held by another live client (lease {lease:x}); update without a uuid to take it over",
                want.service_type, want.host
            ),
        )),
        _ => Ok(()),
    }
}

/// An operator's lift by a client that does not hold the service: judged
/// by the record alone (a missed heartbeat stays missed, DOWN, until its
/// owner checks in); `None` for a service that is not forced down.
pub(crate) fn lifted_by_other(old: &Service) -> Option<Service> {
    old.forced_down
        .then(|| sticky::lifted(old, old.heartbeat_missed && old.heartbeat.is_some()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn facts(overdue: bool) -> Facts {
        Facts {
            ours: 7,
            previous: 5,
            overdue,
            now: 1000,
        }
    }

    fn rec(status: Status) -> Service {
        let mut s = Service::new("t", "h");
        s.uuid = "u".into();
        s.status = status;
        s
    }

    fn cur(up_lease: i64, down_owner: i64) -> Current {
        Current {
            up_lease,
            down_owner,
            closed: false,
            down_lease: 0,
            owner_alive: None,
        }
    }

    #[test]
    fn a_hold_taken_over_and_closed_by_another_client_is_lost_not_lifted() {
        let o = rec(Status::Up);
        let mut c = cur(0, 0);
        c.closed = true;
        let f = Facts {
            ours: 7,
            previous: 0,
            overdue: false,
            now: 100,
        };
        let (write, next) = decide(
            Phase::Held {
                end: 0,
                missed: false,
            },
            true,
            Event::Check,
            Some(&o),
            &c,
            &f,
        );
        assert!(write.is_none());
        assert_eq!(next, Phase::Lost(Lost::Moved));
    }

    #[test]
    fn a_missed_service_forced_down_then_lifted_comes_back_up() {
        // The heartbeat × maintenance defect: missed, then forced with a
        // window, check-ins resume, the window ends.
        let mut forced = rec(Status::Down);
        forced.heartbeat = Some(Duration::from_secs(1));
        forced.forced_down = true;
        forced.maintenance_end = 999;
        let (w, next) = decide(
            Phase::Held {
                end: 999,
                missed: false,
            },
            true,
            Event::Check,
            Some(&forced),
            &cur(0, 7),
            &facts(false),
        );
        assert_eq!(next, Phase::Up);
        assert_eq!(w.unwrap().status, Status::Up);
        // Still not checking in when the window ends: DOWN (missed).
        let (w, next) = decide(
            Phase::Held {
                end: 999,
                missed: false,
            },
            true,
            Event::Check,
            Some(&forced),
            &cur(0, 7),
            &facts(true),
        );
        assert_eq!(next, Phase::Missed);
        assert!(w.unwrap().heartbeat_missed);
    }

    #[test]
    fn a_stale_holder_never_wins_the_lift_after_a_takeover() {
        let mut forced = rec(Status::Down);
        forced.forced_down = true;
        forced.maintenance_end = 999;
        let (w, next) = decide(
            Phase::Held {
                end: 999,
                missed: false,
            },
            true,
            Event::Check,
            Some(&forced),
            &cur(0, 42),
            &facts(false),
        );
        assert_eq!((w, next), (None, Phase::Lost(Lost::Moved)));
    }

    #[test]
    fn a_held_service_names_our_new_lease_after_a_regrant() {
        let mut forced = rec(Status::Down);
        forced.forced_down = true;
        let (w, next) = decide(
            Phase::Held {
                end: 0,
                missed: false,
            },
            true,
            Event::Check,
            Some(&forced),
            &cur(0, 5),
            &facts(false),
        );
        assert_eq!(
            next,
            Phase::Held {
                end: 0,
                missed: false
            }
        );
        assert_eq!(w.as_ref(), Some(&forced), "rewritten as it is, naming us");
    }

    #[test]
    fn up_records_are_kept_taken_down_or_lost() {
        let up = rec(Status::Up);
        let f = facts(false);
        assert_eq!(
            decide(Phase::Up, true, Event::Check, Some(&up), &cur(7, 0), &f),
            (None, Phase::Up)
        );
        assert_eq!(
            decide(Phase::Up, true, Event::Check, Some(&up), &cur(0, 0), &f),
            (Some(up.clone()), Phase::Up)
        );
        assert_eq!(
            decide(Phase::Up, true, Event::Check, Some(&up), &cur(42, 0), &f),
            (None, Phase::Lost(Lost::Moved))
        );
        assert_eq!(
            decide(Phase::Up, true, Event::Check, None, &cur(0, 0), &f),
            (None, Phase::Lost(Lost::Deleted))
        );
        let mut beat = up.clone();
        beat.heartbeat = Some(Duration::from_secs(1));
        let (w, next) = decide(
            Phase::Up,
            true,
            Event::Check,
            Some(&beat),
            &cur(7, 0),
            &facts(true),
        );
        assert_eq!(next, Phase::Missed);
        assert_eq!(w.unwrap().status, Status::Down);
    }

    #[test]
    fn an_owners_own_down_is_kept() {
        let down = rec(Status::Down);
        assert_eq!(
            decide(
                Phase::Down,
                false,
                Event::Check,
                Some(&down),
                &cur(0, 0),
                &facts(false)
            ),
            (None, Phase::Down)
        );
        assert_eq!(
            decide(
                Phase::Up,
                true,
                Event::Check,
                Some(&down),
                &cur(0, 0),
                &facts(false)
            ),
            (None, Phase::Lost(Lost::SetDown))
        );
    }

    #[test]
    fn a_deadline_passed_or_met_while_held_is_written_into_the_hold() {
        let mut held = rec(Status::Down);
        held.heartbeat = Some(Duration::from_secs(1));
        held.forced_down = true;
        let c = cur(0, 7);
        let (w, next) = decide(
            Phase::Held {
                end: 0,
                missed: false,
            },
            true,
            Event::Check,
            Some(&held),
            &c,
            &facts(true),
        );
        assert_eq!(
            next,
            Phase::Held {
                end: 0,
                missed: true
            }
        );
        let w = w.expect("the record says missed");
        assert!(w.forced_down && w.heartbeat_missed);
        // Checked in again, still held: the record says so.
        let (w, next) = decide(next, true, Event::Check, Some(&w), &c, &facts(false));
        assert_eq!(
            next,
            Phase::Held {
                end: 0,
                missed: false
            }
        );
        assert!(!w.unwrap().heartbeat_missed);
        // Nothing changed: nothing written.
        assert_eq!(
            decide(next, true, Event::Check, Some(&held), &c, &facts(false)),
            (None, next)
        );
    }

    #[test]
    fn a_lift_judges_by_the_owners_check_ins_or_else_by_the_record() {
        let mut held = rec(Status::Down);
        held.heartbeat = Some(Duration::from_secs(1));
        held.forced_down = true;
        held.heartbeat_missed = true;
        // Any other client: the record says missed, so DOWN (missed).
        let l = lifted_by_other(&held).unwrap();
        assert_eq!(
            (l.status, l.heartbeat_missed, l.forced_down),
            (Status::Down, true, false)
        );
        // The owner knows it checked in since: UP.
        let (w, next) = decide(
            Phase::Held {
                end: 0,
                missed: true,
            },
            true,
            Event::Lift,
            Some(&held),
            &cur(0, 7),
            &facts(false),
        );
        assert_eq!(next, Phase::Up);
        assert_eq!(w.unwrap().status, Status::Up);
        // Not forced: nothing for another client to lift.
        assert!(lifted_by_other(&rec(Status::Up)).is_none());
    }

    #[test]
    fn closing_is_final() {
        for old in [Some(rec(Status::Up)), Some(rec(Status::Down)), None] {
            assert_eq!(
                decide(
                    Phase::Closing,
                    true,
                    Event::Check,
                    old.as_ref(),
                    &cur(0, 0),
                    &facts(true)
                ),
                (None, Phase::Closing)
            );
        }
    }

    #[test]
    fn a_live_holder_is_any_live_lease_but_ours() {
        let mut want = Service::new("t", "h").exclusive();
        want.uuid = "u".into();
        let ok = |c: &Current| may_take(&want, Taking::Itself, c, 7);
        assert!(ok(&cur(7, 0)).is_ok(), "our own UP key");
        assert!(ok(&cur(0, 0)).is_ok(), "nobody");
        let e = ok(&cur(42, 0)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.message().contains("2a"), "{e}");
        let mut held = cur(0, 42);
        assert!(ok(&held).is_ok(), "a recorded owner not known to live");
        held.owner_alive = Some(false);
        assert!(ok(&held).is_ok(), "a dead owner");
        held.owner_alive = Some(true);
        assert_eq!(ok(&held).unwrap_err().kind(), ErrorKind::Conflict);
        let mut python = cur(0, 0);
        python.down_lease = 42;
        assert_eq!(ok(&python).unwrap_err().kind(), ErrorKind::Conflict);
        // Not exclusive: takes over its own uuid from anyone.
        want.exclusive = false;
        assert!(may_take(&want, Taking::Itself, &cur(42, 0), 7).is_ok());
        // Taking the type+host back from another uuid: only from nobody.
        assert!(may_take(&want, Taking::Back("b"), &cur(0, 0), 7).is_ok());
        let e = may_take(&want, Taking::Back("b"), &cur(42, 0), 7).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.message().contains("uuid b"), "{e}");
    }
}
