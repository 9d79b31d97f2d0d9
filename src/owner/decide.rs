//! One service's life, in one pure function: given the phase a client
//! holds it in, what its owner wants, what etcd holds (the record and its
//! keys) and an event, the write to make (if any) and the phase that
//! follows. [`decide`] does no I/O and reads no clock (time comes in as
//! [`Facts::now`]); the owner runs it inside the store's guarded write, so
//! the decision and the write see the same state, and the store only
//! executes what it chose ([`Put`], a delete, close's marks).
//!
//! Every path of the owner goes through it: the owner's update, check-ins,
//! deadlines, window ends, the periodic check and the UP-key restore,
//! lease loss and re-grant, an operator's down and up through this client
//! (whether it holds the service or not), delete and close.

use crate::error::{Error, ErrorKind};
use crate::record::{Service, Status};
use crate::sticky;
pub(crate) use crate::store::{Current, Put};

/// Where a held service stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not held by this client, never was: a first registration may take
    /// it over (once) from a live holder.
    New,
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
    /// No longer ours: we stop keeping it.
    Lost(Lost),
    /// Close began: no write for it from now on but close's own mark.
    Closing,
}

impl Phase {
    /// This client holds the service (keeps it as its owner wants).
    pub(crate) fn holds(self) -> bool {
        matches!(
            self,
            Phase::Up | Phase::Missed | Phase::Held { .. } | Phase::Down
        )
    }

    /// A live holder other than us means we were displaced: held by us
    /// until someone took it (our update then retakes it only when asked
    /// explicitly, so two live daemons do not take it from each other).
    /// Set DOWN by another writer counts too: whoever holds it now took it
    /// after us.
    fn was_ours(self) -> bool {
        self.holds() || matches!(self, Phase::Lost(Lost::Moved(_) | Lost::SetDown))
    }

    /// Lost, but ours again once no live lease holds it and its record
    /// asks for UP (re-registered after a delete, say, by a client that
    /// then died): a live owner that wants UP is never left DOWN.
    pub(crate) fn may_retake(self) -> bool {
        matches!(self, Phase::Lost(_))
    }
}

/// What happens to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event<'a> {
    /// The owner's `update()` with `want` (validated, its uuid the one
    /// written). `take_over`: retake it from a live holder that displaced
    /// us (asked explicitly; a first registration takes over anyway).
    Update { want: &'a Service, take_over: bool },
    /// The owner checked in after its record said missed.
    CheckIn,
    /// Its heartbeat deadline passed.
    Deadline,
    /// Its maintenance window's end passed.
    WindowEnd,
    /// The periodic check (after a keepalive): bring it in line with etcd,
    /// learning of operators' downs and lifts, deletions and takeovers.
    Check,
    /// Our lease was found gone (its keys went with it) and a new one
    /// replaced it ([`Facts::ours`]; the lost one is in [`Facts::before`]).
    Regranted,
    /// An operator's `down()` through this client.
    Down { note: &'a str, start: u64, end: u64 },
    /// An operator's `up()` through this client.
    Up,
    /// `delete()` through this client.
    Delete,
    /// The client closes.
    Close,
}

/// Why a service was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lost {
    /// Its record was deleted by someone else.
    Deleted,
    /// Another client took it over: the live lease holding it (its UP key,
    /// or the owner recorded in its DOWN key), 0 when not known (taken
    /// over and closed).
    Moved(i64),
    /// Someone else set its record DOWN (not an operator's hold).
    SetDown,
}

impl Lost {
    pub(crate) fn says(self) -> &'static str {
        match self {
            Lost::Deleted => "deleted by another client",
            Lost::Moved(_) => "taken over by another client",
            Lost::SetDown => "set DOWN by another client",
        }
    }
}

/// What the decision says to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Nothing to write.
    Keep,
    /// Write this (one guarded transaction).
    Write(Put),
    /// Delete the record and its keys.
    Delete,
    /// Close's mark: the UP key, if on our lease, replaced by a closed mark.
    MarkClosed,
    /// Refuse the call, writing nothing.
    Refuse(Refusal),
}

/// Why a call is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Close began.
    Closed,
    /// There is no such service.
    NotFound,
    /// An `exclusive` registration meets another live holder.
    Exclusive { holder: i64 },
    /// We held it and another live client took it over: our update
    /// retakes it only when asked explicitly (`take_over`).
    Displaced { holder: i64 },
}

impl Refusal {
    /// The error a call returns for this refusal of `uuid` (`svc`: what the
    /// owner asked for, if it was an update).
    pub(crate) fn error(self, uuid: &str, svc: Option<&Service>) -> Error {
        let what = match svc {
            Some(s) => format!(
                "type {:?} on host {:?} (uuid {uuid})",
                s.service_type, s.host
            ),
            None => format!("service {uuid}"),
        };
        match self {
            Refusal::Closed => Error::closed(),
            Refusal::NotFound => Error::new(
                ErrorKind::NotFound,
                format!("service {uuid} does not exist"),
            ),
            Refusal::Exclusive { holder } => Error::new(
                ErrorKind::Conflict,
                format!(
                    "{what} is held by another live client (lease {holder:x}); exclusive registrations do not take over"
                ),
            ),
            Refusal::Displaced { holder } => Error::new(
                ErrorKind::Conflict,
                format!(
                    "{what} was taken over by another live client (lease {holder:x}); this client no longer keeps it UP; take it over explicitly (take_over) to retake it"
                ),
            ),
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
    pub not_before: Option<tokio::time::Instant>,
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

/// What the decision knows besides the record: plain values, so that a
/// test (or a model checker) builds them directly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Our lease (0: none yet).
    pub ours: i64,
    /// Our leases before the current one (lost, re-granted; newest last):
    /// a key or a recorded owner naming one of them is ours, however many
    /// losses in a row there were.
    pub before: Vec<i64>,
    /// The service has a heartbeat deadline on this client and it passed.
    pub overdue: bool,
    /// Seconds since the epoch.
    pub now: u64,
}

impl Facts {
    /// `lease` is one of ours, now or before.
    pub(crate) fn is_ours(&self, lease: i64) -> bool {
        lease != 0 && (lease == self.ours || self.before.contains(&lease))
    }

    /// `lease` is another client's.
    fn foreign(&self, lease: i64) -> bool {
        lease != 0 && !self.is_ours(lease)
    }
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

/// True when `record` still says what `phase` (of a service held DOWN)
/// was decided from: nothing for the decision to look at again. A DOWN
/// record's missed flag is its owner's business, not a change.
pub(crate) fn agrees(phase: Phase, record: &Service) -> bool {
    match phase {
        Phase::Held { end, .. } => record.forced_down && record.maintenance_end == end,
        Phase::Down => record.status == Status::Down && !record.forced_down,
        p => phase_of(record) == p,
    }
}

/// The one transition: from `phase`, with the owner wanting UP or not
/// (`wants_up`, its last update), given what etcd holds (`old`, the record;
/// `cur`, its keys), on `ev`: what to do and the phase that follows.
pub(crate) fn decide(
    phase: Phase,
    wants_up: bool,
    old: Option<&Service>,
    cur: &Current,
    ev: &Event<'_>,
    f: &Facts,
) -> (Verdict, Phase) {
    if phase == Phase::Closing {
        // Close is final: its mark is the last write.
        let verdict = match ev {
            Event::Update { .. } | Event::Down { .. } | Event::Up | Event::Delete => {
                Verdict::Refuse(Refusal::Closed)
            }
            _ => Verdict::Keep,
        };
        return (verdict, Phase::Closing);
    }
    match *ev {
        Event::Update { want, take_over } => update(phase, old, cur, want, take_over, f),
        Event::Close => {
            let keyed = matches!(phase, Phase::Up | Phase::Held { .. } | Phase::Missed);
            // Held services too: an operator's up() may have put the UP key
            // on our lease a moment ago; the mark is guarded by the UP key
            // being on our lease.
            let verdict = if keyed {
                Verdict::MarkClosed
            } else {
                Verdict::Keep
            };
            (verdict, Phase::Closing)
        }
        Event::Delete => (Verdict::Delete, Phase::Lost(Lost::Deleted)),
        Event::Down { note, start, end } => operator_down(phase, old, cur, note, start, end, f),
        Event::Up => operator_up(phase, wants_up, old, cur, f),
        Event::CheckIn | Event::Deadline | Event::WindowEnd | Event::Check | Event::Regranted => {
            if phase.may_retake() {
                return retake(phase, wants_up, old, cur, f);
            }
            if !phase.holds() {
                return (Verdict::Keep, phase);
            }
            let (write, next) = reconcile(phase, wants_up, false, old, cur, f);
            (
                write.map_or(Verdict::Keep, |r| Verdict::Write(put(r, cur, f))),
                next,
            )
        }
    }
}

/// The write of `record` by its holder: its UP key on our lease, and a
/// DOWN record's DOWN key naming us (so that `up()` by any client knows
/// where an UP key goes, and `exclusive` knows it is held, even while its
/// owner itself set it DOWN).
fn put(record: Service, cur: &Current, f: &Facts) -> Put {
    let up_lease = if record.status == Status::Up {
        f.ours
    } else {
        0
    };
    let down_owner = if record.status == Status::Down {
        [f.ours, cur.up_lease, cur.down_owner]
            .into_iter()
            .find(|&l| l != 0)
            .unwrap_or(0)
    } else {
        0
    };
    Put {
        record,
        up_lease,
        down_owner,
        closed: false,
    }
}

/// A service another client took from us, whose owner still wants it UP
/// and checks in: once no live lease holds it (its holder crashed), ours
/// again, so a live owner is never stuck DOWN; while one lives, not ours.
fn retake(
    phase: Phase,
    wants_up: bool,
    old: Option<&Service>,
    cur: &Current,
    f: &Facts,
) -> (Verdict, Phase) {
    if !wants_up || f.overdue || old.is_none() || live_holder(cur, f).is_some() {
        return (Verdict::Keep, phase);
    }
    // Closed by the one that took it: a close mark holds nothing, and our
    // write replaces it.
    let cur = &Current {
        closed: false,
        ..*cur
    };
    match reconcile(Phase::Up, wants_up, false, old, cur, f) {
        (write, next) if next.holds() => (
            write.map_or(Verdict::Keep, |r| Verdict::Write(put(r, cur, f))),
            next,
        ),
        _ => (Verdict::Keep, phase),
    }
}

/// The owner's update.
fn update(
    phase: Phase,
    old: Option<&Service>,
    cur: &Current,
    want: &Service,
    take_over: bool,
    f: &Facts,
) -> (Verdict, Phase) {
    if let Some(holder) = live_holder(cur, f) {
        if want.exclusive {
            return (Verdict::Refuse(Refusal::Exclusive { holder }), phase);
        }
        // Two live daemons on one type+host: the one displaced learns it
        // here and does not take it back unless asked, so it flips at most
        // once (a first registration takes it over once).
        if phase.was_ours() && !take_over {
            return (Verdict::Refuse(Refusal::Displaced { holder }), phase);
        }
    }
    let record = sticky::owner_record(old, want, f.now);
    let next = phase_of(&record);
    (Verdict::Write(put(record, cur, f)), next)
}

/// An operator's `down()` through this client.
fn operator_down(
    phase: Phase,
    old: Option<&Service>,
    cur: &Current,
    note: &str,
    start: u64,
    end: u64,
    f: &Facts,
) -> (Verdict, Phase) {
    let Some(o) = old else {
        return (Verdict::Refuse(Refusal::NotFound), phase);
    };
    let mut s = o.clone();
    if !s.forced_down {
        // What the owner wants underneath, for the lift.
        s.owner_down = s.status == Status::Down && !s.heartbeat_missed;
    }
    s.status = Status::Down;
    s.forced_down = true;
    s.maintenance_note = note.to_string();
    s.maintenance_start = start;
    s.maintenance_end = end;
    // A missed heartbeat stays recorded under the hold, so that whoever
    // lifts it judges by the record. The DOWN key names the owner: another
    // live lease holding it (its UP key, or the live owner its DOWN key
    // names) even through a client that believes it holds it (it was
    // displaced, and learns it here), else us if we hold it, else the owner
    // recorded. A closed service stays closed: its mark names nobody.
    let theirs = if f.foreign(cur.up_lease) {
        Some(cur.up_lease)
    } else if cur.up_lease == 0 && f.foreign(cur.down_owner) && cur.owner_alive != Some(false) {
        Some(cur.down_owner)
    } else {
        None
    };
    let owner = match theirs {
        Some(l) => l,
        None if cur.closed => 0,
        None if phase.holds() && f.ours != 0 => f.ours,
        None if cur.up_lease != 0 => cur.up_lease,
        None => cur.down_owner,
    };
    let next = match theirs {
        Some(l) if phase.holds() => Phase::Lost(Lost::Moved(l)),
        _ if phase.holds() && !cur.closed => phase_of(&s),
        _ if phase.holds() => Phase::Lost(Lost::Moved(0)),
        _ => phase,
    };
    let put = Put {
        record: s,
        up_lease: 0,
        down_owner: owner,
        closed: cur.closed && theirs.is_none(),
    };
    (Verdict::Write(put), next)
}

/// An operator's `up()` through this client.
fn operator_up(
    phase: Phase,
    wants_up: bool,
    old: Option<&Service>,
    cur: &Current,
    f: &Facts,
) -> (Verdict, Phase) {
    let Some(o) = old else {
        return (Verdict::Refuse(Refusal::NotFound), phase);
    };
    if !o.forced_down {
        return (Verdict::Keep, phase);
    }
    if phase.holds() && !f.foreign(cur.down_owner) && !cur.closed {
        // Ours: judged by our own check-ins.
        let (write, next) = reconcile(phase, wants_up, true, old, cur, f);
        return (
            write.map_or(Verdict::Keep, |r| Verdict::Write(put(r, cur, f))),
            next,
        );
    }
    // Not ours (or no longer): judged by the record alone (a missed
    // heartbeat stays missed, DOWN, until its owner checks in); an UP
    // record's UP key goes on its recorded owner's lease if that lives.
    let next = if phase.holds() {
        Phase::Lost(Lost::Moved(cur.down_owner))
    } else {
        phase
    };
    let Some(l) = lifted_by_other(o) else {
        return (Verdict::Keep, next);
    };
    let alive = cur.owner_alive == Some(true) && !cur.closed;
    let put = Put {
        up_lease: if l.status == Status::Up && alive {
            cur.down_owner
        } else {
            0
        },
        down_owner: if l.status == Status::Down {
            cur.down_owner
        } else {
            0
        },
        // Lifted after its owner closed: still closed, not expired.
        closed: cur.closed,
        record: l,
    };
    (Verdict::Write(put), next)
}

/// Brings a held service in line with etcd: the record to write (`None`:
/// nothing) and the phase that follows. `lift`: an operator's up() through
/// this client.
fn reconcile(
    phase: Phase,
    wants_up: bool,
    lift: bool,
    old: Option<&Service>,
    cur: &Current,
    f: &Facts,
) -> (Option<Service>, Phase) {
    let Some(o) = old else {
        return (None, Phase::Lost(Lost::Deleted));
    };
    if cur.closed {
        // Taken over meanwhile (a hold or a DOWN shows no key on our
        // lease to tell us) and closed by its new holder.
        return (None, Phase::Lost(Lost::Moved(0)));
    }
    if o.forced_down {
        if f.foreign(cur.down_owner) {
            return (None, Phase::Lost(Lost::Moved(cur.down_owner)));
        }
        // The owner judges its own deadline by its check-ins, not by the
        // record (which it keeps saying the same for every other client;
        // another writer's record may not even carry the deadline).
        let missed = f.overdue;
        if lift || sticky::window_over(o, f.now) {
            // What the owner wants now, not what the record said when the
            // operator forced it (another writer's UP, say): an owner that
            // asked for DOWN stays DOWN.
            let mut o = o.clone();
            o.owner_down |= !wants_up;
            let l = sticky::lifted(&o, missed);
            let next = phase_of(&l);
            return (Some(l), next);
        }
        let held = Phase::Held {
            end: o.maintenance_end,
            missed,
        };
        // After a re-grant its DOWN key still names a dead lease of ours:
        // name the current one, so that up() makes it UP at once. A
        // deadline passed or met again while held: the record says so, for
        // whoever lifts it.
        if (f.ours != 0 && cur.down_owner != f.ours) || o.heartbeat_missed != missed {
            let mut s = o.clone();
            s.heartbeat_missed = missed;
            return (Some(s), held);
        }
        return (None, held);
    }
    if o.status == Status::Down {
        if o.heartbeat_missed {
            if f.foreign(cur.down_owner) && cur.owner_alive == Some(true) {
                // Another client's missed service (its DOWN key names its
                // owner): not ours to bring back.
                return (None, Phase::Lost(Lost::Moved(cur.down_owner)));
            }
            if !wants_up {
                // We set our copy DOWN; the miss is not ours to judge.
                return (None, Phase::Down);
            }
            if !f.overdue {
                let mut s = o.clone();
                s.status = Status::Up;
                s.heartbeat_missed = false;
                return (Some(s), Phase::Up);
            }
            // Its DOWN key names none or a dead lease of ours: name ours,
            // so that it is known to be held by a live lease.
            if f.ours != 0 && cur.down_owner != f.ours {
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
    if f.foreign(cur.up_lease) {
        return (None, Phase::Lost(Lost::Moved(cur.up_lease)));
    }
    if !wants_up {
        return (None, Phase::Lost(Lost::Moved(cur.up_lease)));
    }
    // Overdue by our own check-ins, whatever the record says of a deadline
    // (another writer's UP record may carry none).
    if f.overdue {
        let mut s = o.clone();
        s.status = Status::Down;
        s.heartbeat_missed = true;
        return (Some(s), Phase::Missed);
    }
    if f.ours != 0 && cur.up_lease == f.ours {
        return (None, Phase::Up);
    }
    // Its UP key is missing (or on a dead lease of ours): put it back on
    // ours.
    (Some(o.clone()), Phase::Up)
}

/// The live lease other than ours that holds a service, as its keys say:
/// its UP key's lease (a key on a lease exists only while the lease lives),
/// the lease its DOWN key is bound to (the Python library's), or the owner
/// its DOWN key records, when etcd said that lease lives.
pub(crate) fn live_holder(cur: &Current, f: &Facts) -> Option<i64> {
    if f.foreign(cur.up_lease) {
        Some(cur.up_lease)
    } else if f.foreign(cur.down_lease) {
        Some(cur.down_lease)
    } else if f.foreign(cur.down_owner) && cur.owner_alive == Some(true) {
        Some(cur.down_owner)
    } else {
        None
    }
}

/// Whether the owner's write may take the type+host back from `other`, the
/// uuid it is registered as, whose keys are `cur`: only when no live lease
/// holds that uuid (a registration nobody keeps alive, such as the original
/// library's with a fresh uuid); a live holder is a conflict naming it.
pub(crate) fn may_take_back(
    want: &Service,
    other: &str,
    cur: &Current,
    f: &Facts,
) -> crate::error::Result<()> {
    match live_holder(cur, f) {
        Some(lease) => Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "type {:?} on host {:?} is registered as uuid {other}, held by another live client (lease {lease:x}); update without a uuid to take it over",
                want.service_type, want.host
            ),
        )),
        None => Ok(()),
    }
}

/// An operator's lift by a client that does not hold the service: judged
/// by the record alone (a missed heartbeat stays missed, DOWN, until its
/// owner checks in); `None` for a service that is not forced down.
pub(crate) fn lifted_by_other(old: &Service) -> Option<Service> {
    old.forced_down
        .then(|| sticky::lifted(old, old.heartbeat_missed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn facts(overdue: bool) -> Facts {
        Facts {
            ours: 7,
            before: vec![5],
            overdue,
            now: 1000,
        }
    }

    /// The record a verdict writes (`None`: nothing), and the next phase.
    fn decide(
        phase: Phase,
        wants_up: bool,
        ev: Event<'_>,
        old: Option<&Service>,
        cur: &Current,
        f: &Facts,
    ) -> (Option<Service>, Phase) {
        match super::decide(phase, wants_up, old, cur, &ev, f) {
            (Verdict::Keep, next) => (None, next),
            (Verdict::Write(p), next) => (Some(p.record), next),
            (v, _) => panic!("unexpected {v:?}"),
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
            before: vec![],
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
        assert_eq!(next, Phase::Lost(Lost::Moved(0)));
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
        assert_eq!((w, next), (None, Phase::Lost(Lost::Moved(42))));
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
            (None, Phase::Lost(Lost::Moved(42)))
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
            Event::Up,
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
        let up = rec(Status::Up);
        for ev in [
            Event::Up,
            Event::Delete,
            Event::Update {
                want: &up,
                take_over: true,
            },
        ] {
            assert_eq!(
                super::decide(
                    Phase::Closing,
                    true,
                    Some(&up),
                    &cur(0, 0),
                    &ev,
                    &facts(false)
                ),
                (Verdict::Refuse(Refusal::Closed), Phase::Closing)
            );
        }
    }

    #[test]
    fn a_live_holder_is_any_live_lease_but_ours() {
        let mut want = Service::new("t", "h").exclusive();
        want.uuid = "u".into();
        let f = facts(false);
        let ev = Event::Update {
            want: &want,
            take_over: false,
        };
        let refused = |c: &Current| match super::decide(Phase::New, true, None, c, &ev, &f).0 {
            Verdict::Refuse(r) => Some(r),
            _ => None,
        };
        assert_eq!(refused(&cur(7, 0)), None, "our own UP key");
        assert_eq!(refused(&cur(5, 0)), None, "a lease of ours before");
        assert_eq!(refused(&cur(0, 0)), None, "nobody");
        assert_eq!(
            refused(&cur(42, 0)),
            Some(Refusal::Exclusive { holder: 42 })
        );
        let e = Refusal::Exclusive { holder: 42 }.error("u", Some(&want));
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.message().contains("2a"), "{e}");
        let mut held = cur(0, 42);
        assert_eq!(refused(&held), None, "a recorded owner not known to live");
        held.owner_alive = Some(false);
        assert_eq!(refused(&held), None, "a dead owner");
        held.owner_alive = Some(true);
        assert!(refused(&held).is_some());
        let mut python = cur(0, 0);
        python.down_lease = 42;
        assert!(refused(&python).is_some());
        // Taking the type+host back from another uuid: only from nobody.
        want.exclusive = false;
        assert!(may_take_back(&want, "b", &cur(0, 0), &f).is_ok());
        let e = may_take_back(&want, "b", &cur(42, 0), &f).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.message().contains("uuid b"), "{e}");
    }

    #[test]
    fn a_displaced_holder_retakes_only_when_asked() {
        let want = rec(Status::Up);
        let f = facts(false);
        let theirs = cur(42, 0);
        let upd = |phase, take_over| {
            super::decide(
                phase,
                true,
                Some(&want),
                &theirs,
                &Event::Update {
                    want: &want,
                    take_over,
                },
                &f,
            )
        };
        // A first registration takes it over (once).
        assert!(matches!(
            upd(Phase::New, false),
            (Verdict::Write(_), Phase::Up)
        ));
        // The one it took it from learns it and does not take it back.
        for phase in [
            Phase::Up,
            Phase::Lost(Lost::Moved(42)),
            Phase::Lost(Lost::SetDown),
            Phase::Missed,
        ] {
            assert_eq!(
                upd(phase, false).0,
                Verdict::Refuse(Refusal::Displaced { holder: 42 })
            );
        }
        match upd(Phase::Lost(Lost::Moved(42)), true) {
            (Verdict::Write(p), Phase::Up) => assert_eq!(p.up_lease, 7),
            other => panic!("{other:?}"),
        }
        // The holder died: nothing to refuse.
        assert!(matches!(
            super::decide(
                Phase::Lost(Lost::Moved(42)),
                true,
                Some(&want),
                &cur(0, 0),
                &Event::Update {
                    want: &want,
                    take_over: false
                },
                &f
            ),
            (Verdict::Write(_), Phase::Up)
        ));
    }

    #[test]
    fn a_displaced_owner_retakes_once_its_holder_is_gone() {
        let up = rec(Status::Up);
        let lost = Phase::Lost(Lost::Moved(42));
        // The holder's UP key went with its lease: ours again.
        match super::decide(
            lost,
            true,
            Some(&up),
            &cur(0, 0),
            &Event::Check,
            &facts(false),
        ) {
            (Verdict::Write(p), Phase::Up) => assert_eq!(p.up_lease, 7),
            other => panic!("{other:?}"),
        }
        // Not while it lives, nor for an owner that stopped checking in.
        assert_eq!(
            super::decide(
                lost,
                true,
                Some(&up),
                &cur(42, 0),
                &Event::Check,
                &facts(false)
            ),
            (Verdict::Keep, lost)
        );
        assert_eq!(
            super::decide(
                lost,
                true,
                Some(&up),
                &cur(0, 0),
                &Event::Check,
                &facts(true)
            ),
            (Verdict::Keep, lost)
        );
        // Its own DOWN, or a hold naming the dead holder: not ours to judge.
        let mut held = rec(Status::Down);
        held.forced_down = true;
        assert_eq!(
            super::decide(
                lost,
                true,
                Some(&held),
                &cur(0, 42),
                &Event::Check,
                &facts(false)
            ),
            (Verdict::Keep, lost)
        );
    }

    #[test]
    fn two_lease_losses_in_a_row_leave_a_hold_ours() {
        let mut forced = rec(Status::Down);
        forced.forced_down = true;
        // The hold names the lease before the one before.
        let f = Facts {
            ours: 9,
            before: vec![5, 7],
            overdue: false,
            now: 1000,
        };
        let held = Phase::Held {
            end: 0,
            missed: false,
        };
        let (v, next) = super::decide(held, true, Some(&forced), &cur(0, 5), &Event::Regranted, &f);
        assert_eq!(next, held);
        match v {
            Verdict::Write(p) => assert_eq!(p.down_owner, 9),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn an_owner_that_set_its_copy_down_does_not_judge_anothers_miss() {
        let mut missed = rec(Status::Down);
        missed.heartbeat = Some(Duration::from_secs(1));
        missed.heartbeat_missed = true;
        // The DOWN key names no owner (an older writer): still not ours.
        assert_eq!(
            decide(
                Phase::Down,
                false,
                Event::Check,
                Some(&missed),
                &cur(0, 0),
                &facts(false)
            ),
            (None, Phase::Down)
        );
    }

    #[test]
    fn an_operators_down_names_the_owner() {
        let up = rec(Status::Up);
        let ev = Event::Down {
            note: "n",
            start: 0,
            end: 0,
        };
        // Through a client that does not hold it: the UP key's lease.
        match super::decide(
            Phase::New,
            false,
            Some(&up),
            &cur(42, 0),
            &ev,
            &facts(false),
        ) {
            (Verdict::Write(p), Phase::New) => {
                assert_eq!(p.down_owner, 42);
                assert!(p.record.forced_down);
            }
            other => panic!("{other:?}"),
        }
        // Through its holder: ours.
        match super::decide(Phase::Up, true, Some(&up), &cur(7, 0), &ev, &facts(false)) {
            (Verdict::Write(p), Phase::Held { end: 0, .. }) => assert_eq!(p.down_owner, 7),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            super::decide(Phase::New, false, None, &cur(0, 0), &ev, &facts(false)).0,
            Verdict::Refuse(Refusal::NotFound)
        );
    }

    #[test]
    fn an_operators_down_names_the_live_holder_not_a_displaced_client() {
        let up = rec(Status::Up);
        let ev = Event::Down {
            note: "n",
            start: 0,
            end: 1000,
        };
        // We believe we hold it; its UP key is on another live lease.
        match super::decide(Phase::Up, true, Some(&up), &cur(42, 0), &ev, &facts(false)) {
            (Verdict::Write(p), Phase::Lost(Lost::Moved(42))) => {
                assert_eq!(p.down_owner, 42);
                assert!(!p.closed);
            }
            other => panic!("{other:?}"),
        }
        // A hold naming another live owner: that owner stays named.
        let mut held = rec(Status::Down);
        held.forced_down = true;
        let mut c = cur(0, 42);
        c.owner_alive = Some(true);
        match super::decide(
            Phase::Held {
                end: 0,
                missed: false,
            },
            true,
            Some(&held),
            &c,
            &ev,
            &facts(false),
        ) {
            (Verdict::Write(p), Phase::Lost(Lost::Moved(42))) => assert_eq!(p.down_owner, 42),
            other => panic!("{other:?}"),
        }
        // Its owner dead: ours.
        c.owner_alive = Some(false);
        match super::decide(
            Phase::Held {
                end: 0,
                missed: false,
            },
            true,
            Some(&held),
            &c,
            &ev,
            &facts(false),
        ) {
            (Verdict::Write(p), Phase::Held { .. }) => assert_eq!(p.down_owner, 7),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_close_mark_survives_a_down_and_a_lift() {
        let up = rec(Status::Up);
        let mut closed = cur(0, 0);
        closed.closed = true;
        let down = Event::Down {
            note: "n",
            start: 0,
            end: 0,
        };
        let (v, next) = super::decide(Phase::New, false, Some(&up), &closed, &down, &facts(false));
        assert_eq!(next, Phase::New);
        let Verdict::Write(p) = v else {
            panic!("{v:?}")
        };
        assert!(
            p.closed && p.down_owner == 0 && p.record.forced_down,
            "{p:?}"
        );
        let (v, _) = super::decide(
            Phase::New,
            false,
            Some(&p.record),
            &closed,
            &Event::Up,
            &facts(false),
        );
        let Verdict::Write(l) = v else {
            panic!("{v:?}")
        };
        assert!(l.closed, "still closed: {l:?}");
        assert_eq!(l.up_lease, 0, "no UP key for a closed service");
        assert!(!l.record.forced_down);
    }

    #[test]
    fn a_lift_keeps_the_owners_own_down() {
        // Forced while another writer's UP record stood (owner_down not
        // set); its owner asked for DOWN.
        let mut held = rec(Status::Down);
        held.forced_down = true;
        held.maintenance_end = 999;
        let (w, next) = decide(
            Phase::Down,
            false,
            Event::WindowEnd,
            Some(&held),
            &cur(0, 0),
            &facts(false),
        );
        assert_eq!(next, Phase::Down);
        let w = w.unwrap();
        assert_eq!((w.status, w.forced_down), (Status::Down, false));
    }

    #[test]
    fn a_lost_owner_retakes_once_nobody_holds_it() {
        let up = rec(Status::Up);
        let mut closed = cur(0, 0);
        closed.closed = true;
        for lost in [Lost::SetDown, Lost::Deleted, Lost::Moved(42)] {
            for c in [cur(0, 0), closed] {
                match super::decide(
                    Phase::Lost(lost),
                    true,
                    Some(&up),
                    &c,
                    &Event::Check,
                    &facts(false),
                ) {
                    (Verdict::Write(p), Phase::Up) => {
                        assert_eq!(p.up_lease, 7);
                        assert!(!p.closed);
                    }
                    other => panic!("{lost:?}: {other:?}"),
                }
            }
        }
        // Still DOWN by another writer: not ours to bring back.
        let down = rec(Status::Down);
        assert_eq!(
            super::decide(
                Phase::Lost(Lost::SetDown),
                true,
                Some(&down),
                &cur(0, 0),
                &Event::Check,
                &facts(false)
            ),
            (Verdict::Keep, Phase::Lost(Lost::SetDown))
        );
    }

    #[test]
    fn overdue_is_judged_by_check_ins_not_the_record() {
        // Another writer's UP record, with no deadline in it.
        let up = rec(Status::Up);
        let (w, next) = decide(
            Phase::Up,
            true,
            Event::Check,
            Some(&up),
            &cur(0, 0),
            &facts(true),
        );
        assert_eq!(next, Phase::Missed);
        let w = w.unwrap();
        assert_eq!((w.status, w.heartbeat_missed), (Status::Down, true));
    }

    #[test]
    fn an_owners_own_down_names_it() {
        let mut want = rec(Status::Down);
        want.uuid = "u".into();
        match super::decide(
            Phase::Up,
            true,
            Some(&rec(Status::Up)),
            &cur(7, 0),
            &Event::Update {
                want: &want,
                take_over: false,
            },
            &facts(false),
        ) {
            (Verdict::Write(p), Phase::Down) => assert_eq!(p.down_owner, 7),
            other => panic!("{other:?}"),
        }
    }

    /// The table of docs/design.md's "One service's life": every phase meets
    /// every event, from a typical state of etcd for that phase; each cell
    /// is "verdict next" (W write, K keep, R refuse, D delete, M mark
    /// closed).
    #[test]
    fn every_phase_meets_every_event() {
        let beat = |mut s: Service| {
            s.heartbeat = Some(Duration::from_secs(1));
            s
        };
        let up = beat(rec(Status::Up));
        let mut missed = beat(rec(Status::Down));
        missed.heartbeat_missed = true;
        let mut held = beat(rec(Status::Down));
        held.forced_down = true;
        held.maintenance_end = 2000;
        let down = rec(Status::Down);
        let held_phase = Phase::Held {
            end: 2000,
            missed: false,
        };
        // (phase, wants UP, record, keys)
        let rows: [(&str, Phase, bool, &Service, Current); 7] = [
            ("New", Phase::New, false, &up, cur(42, 0)),
            ("Up", Phase::Up, true, &up, cur(7, 0)),
            ("Missed", Phase::Missed, true, &missed, cur(0, 7)),
            ("Held", held_phase, true, &held, cur(0, 7)),
            ("Down", Phase::Down, false, &down, cur(0, 0)),
            ("Lost", Phase::Lost(Lost::Moved(42)), true, &up, cur(42, 0)),
            ("Closing", Phase::Closing, true, &up, cur(7, 0)),
        ];
        let want = rec(Status::Up);
        let events: [(&str, Event<'_>); 10] = [
            (
                "update",
                Event::Update {
                    want: &want,
                    take_over: false,
                },
            ),
            ("check-in", Event::CheckIn),
            ("deadline", Event::Deadline),
            ("window end", Event::WindowEnd),
            ("check", Event::Check),
            ("re-grant", Event::Regranted),
            (
                "down",
                Event::Down {
                    note: "n",
                    start: 0,
                    end: 0,
                },
            ),
            ("up", Event::Up),
            ("delete", Event::Delete),
            ("close", Event::Close),
        ];
        let expected: [[&str; 10]; 7] = [
            // update, check-in, deadline, window end, check, re-grant, down, up, delete, close
            [
                "W Up",
                "K New",
                "K New",
                "K New",
                "K New",
                "K New",
                "W New",
                "K New",
                "D Lost",
                "K Closing",
            ],
            [
                "W Up",
                "K Up",
                "W Missed",
                "K Up",
                "K Up",
                "W Up",
                "W Held",
                "K Up",
                "D Lost",
                "M Closing",
            ],
            [
                "W Up",
                "W Up",
                "K Missed",
                "W Up",
                "W Up",
                "W Up",
                "W Held",
                "K Missed",
                "D Lost",
                "M Closing",
            ],
            [
                "W Held",
                "K Held",
                "W Held",
                "W Up",
                "K Held",
                "W Held",
                "W Held",
                "W Up",
                "D Lost",
                "M Closing",
            ],
            [
                "W Up",
                "K Down",
                "K Down",
                "K Down",
                "K Down",
                "K Down",
                "W Held",
                "K Down",
                "D Lost",
                "K Closing",
            ],
            [
                "R Lost",
                "K Lost",
                "K Lost",
                "K Lost",
                "K Lost",
                "K Lost",
                "W Lost",
                "K Lost",
                "D Lost",
                "K Closing",
            ],
            [
                "R Closing",
                "K Closing",
                "K Closing",
                "K Closing",
                "K Closing",
                "K Closing",
                "R Closing",
                "R Closing",
                "R Closing",
                "K Closing",
            ],
        ];
        let name = |p: Phase| match p {
            Phase::New => "New",
            Phase::Up => "Up",
            Phase::Missed => "Missed",
            Phase::Held { .. } => "Held",
            Phase::Down => "Down",
            Phase::Lost(_) => "Lost",
            Phase::Closing => "Closing",
        };
        let mut wrong = Vec::new();
        for (r, (row, phase, wants_up, old, c)) in rows.iter().enumerate() {
            for (e, (ev_name, ev)) in events.iter().enumerate() {
                let mut f = facts(matches!(ev, Event::Deadline));
                let mut c = *c;
                if matches!(ev, Event::WindowEnd) {
                    f.now = 2000;
                }
                if matches!(ev, Event::Regranted) {
                    // Our lease 7 was lost (its keys with it) and 9 granted.
                    f.ours = 9;
                    f.before = vec![5, 7];
                    if c.up_lease == 7 {
                        c.up_lease = 0;
                    }
                }
                let (v, next) = super::decide(*phase, *wants_up, Some(old), &c, ev, &f);
                let v = match v {
                    Verdict::Keep => "K",
                    Verdict::Write(_) => "W",
                    Verdict::Refuse(_) => "R",
                    Verdict::Delete => "D",
                    Verdict::MarkClosed => "M",
                };
                let got = format!("{v} {}", name(next));
                if got != expected[r][e] {
                    wrong.push(format!(
                        "{row} × {ev_name}: {got}, expected {}",
                        expected[r][e]
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }
}
