//! The owner's decision, model-checked exhaustively (issue 30, item 3).
//!
//! An abstract etcd holding one service's keys (its record, its UP key on a
//! lease, its DOWN key with the owner it records), leases that expire at
//! any moment or are revoked, two daemons holding the same type+host (one
//! uuid), an operator (down with and without a window, up; through another
//! client or through a daemon's own client), the original Python library
//! writing the same uuid (its UP registration on its own lease, its
//! non-sticky DOWN, its delete) and a reader asking `is_up` as the library
//! does (the UP key exists). stateright explores every interleaving of
//! their steps within the budgets below.
//!
//! Every decision is the real one, [`decide`] (`src/owner/decide.rs`):
//! the daemons' updates (with and without `take_over`), their timers and
//! checks, the keepalive check's batch restore, close, and the operator's
//! down and up, through a daemon's client or through one that holds
//! nothing (phase `New`). What the model adds is what the store executes:
//! which keys a [`Put`] leaves, the guarded commit, close's mark, and the
//! lease a write must name (`with_live_lease`).
//!
//! A daemon's write is two steps, as in the store: it reads and decides
//! (the plan is what the transaction will put and delete), then commits;
//! any write to the service's keys in between (or a lease expiring under
//! them) makes the commit lose its compare, and it decides again from a
//! fresh read, with the phase and wish it started from. A put naming a
//! lease that died meanwhile is refused (our own lease: re-granted and
//! tried again). What is not guarded is what the decision knows besides
//! etcd: the owner's check-ins and whether a recorded owner's lease lives.
//!
//! Liveness is checked as an `always` property of every reachable state:
//! under fairness (the environment stops — no more operator, Python,
//! crash or expiry steps; the window's end passes; every live daemon
//! checks in; a crashed daemon's lease expires; every daemon's timer,
//! check, re-grant and pending commit keep running), running those to a
//! fixpoint must reach the goal. stateright's own `eventually` is only
//! judged at terminal states and misses cycles, which this model has.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use stateright::{Checker, Expectation, Model, Property};

use super::decide::{Current, Event, Facts, Lost, Phase, Put, Verdict, decide, phase_of};
use crate::record::{Service, Status};

/// The maintenance window's end (seconds); the clock reads one before it
/// until it passes.
const END: u64 = 1000;
/// The leases each daemon may hold, in the order it is granted them (a
/// first grant and one re-grant), and the Python library's.
const LEASES: [[i64; 2]; 2] = [[1, 3], [2, 4]];
const PY_LEASE: i64 = 5;
const DAEMONS: [usize; 2] = [0, 1];

/// A record, as far as the decision reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Rec {
    up: bool,
    forced: bool,
    /// Forced down with a window ending at [`END`] (else until `up()`).
    window: bool,
    /// Has a heartbeat deadline.
    beat: bool,
    missed: bool,
    owner_down: bool,
}

impl Rec {
    fn service(self) -> Service {
        let mut s = Service::new("t", "h").with_uuid("u");
        s.status = if self.up { Status::Up } else { Status::Down };
        s.forced_down = self.forced;
        s.maintenance_end = if self.window { END } else { 0 };
        s.maintenance_note = if self.forced {
            "op".into()
        } else {
            String::new()
        };
        s.heartbeat = self.beat.then_some(Duration::from_secs(1));
        s.heartbeat_missed = self.missed;
        s.owner_down = self.owner_down;
        s
    }

    fn of(s: &Service) -> Rec {
        assert!(
            s.maintenance_end == 0 || s.maintenance_end == END,
            "a window the model never wrote: {s:?}"
        );
        Rec {
            up: s.status == Status::Up,
            forced: s.forced_down,
            window: s.maintenance_end == END,
            beat: s.heartbeat.is_some(),
            missed: s.heartbeat_missed,
            owner_down: s.owner_down,
        }
    }
}

/// What a DOWN key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum DownVal {
    Empty,
    /// The owner's lease, as our writes record it in every DOWN key.
    Owner(i64),
    /// A clean close's mark.
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct DownKey {
    val: DownVal,
    /// The lease it is bound to (the Python library's); 0: durable.
    lease: i64,
}

const CLOSED: DownKey = DownKey {
    val: DownVal::Closed,
    lease: 0,
};

/// The service's keys in etcd.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Keys {
    rec: Option<Rec>,
    /// The lease the UP key is on.
    up: Option<i64>,
    down: Option<DownKey>,
}

impl Keys {
    /// The owner a DOWN key records (`recorded_owner` in the store).
    fn recorded_owner(&self) -> i64 {
        match self.down {
            Some(DownKey {
                val: DownVal::Owner(l),
                lease: 0,
            }) => l,
            _ => 0,
        }
    }
}

/// A phase, hashable for the model's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct P(Phase);

impl Hash for P {
    fn hash<H: Hasher>(&self, h: &mut H) {
        // By its Debug form: follows any phase the decision grows.
        format!("{:?}", self.0).hash(h);
    }
}

/// The events a daemon's client decides on, besides its owner's update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Ev {
    /// The timer (deadline, check-in, window end) or the periodic check.
    Check,
    /// An operator's `down()` through this client.
    Down { window: bool },
    /// An operator's `up()` through this client.
    Up,
}

impl Ev {
    fn event(self) -> Event<'static> {
        match self {
            Ev::Check => Event::Check,
            Ev::Down { window } => Event::Down {
                note: "op",
                start: 0,
                end: if window { END } else { 0 },
            },
            Ev::Up => Event::Up,
        }
    }
}

/// A daemon's operation between its read and its commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    /// The owner's `update()`; `made`: its cell was made for it.
    Update {
        up: bool,
        take_over: bool,
        made: bool,
    },
    /// One decision on `ev` (`run_decision`), from the phase and wish it
    /// started with (a retry decides again from them).
    Run { ev: Ev, phase: P, wants_up: bool },
    /// The keepalive check's batch restore of a missing UP key.
    Rebind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Pending {
    op: Op,
    /// The keys as the transaction leaves them.
    after: Keys,
    /// The lease its put names (0: none), and whether it is ours (its
    /// loss is then an error, for a re-grant).
    puts: i64,
    own: bool,
    /// The phase the decision chose.
    next: P,
    /// The decision knew the deadline had passed.
    saw_overdue: bool,
    /// Nothing it read changed since (its compares hold).
    valid: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Daemon {
    /// Its process runs (a crash stops it; its lease lives on until it
    /// expires).
    alive: bool,
    /// Close began: no transition, no grant.
    closing: bool,
    /// Its close marked the service (nothing may put it back on its lease).
    marked: bool,
    lease: i64,
    grants: usize,
    /// Its cell for the service (`None`: none).
    cell: Option<P>,
    wants_up: bool,
    /// Its heartbeat deadline passed since its last check-in.
    overdue: bool,
    /// A decision of its own that took effect saw the deadline passed.
    judged: bool,
    pending: Option<Pending>,
    updates_left: u8,
    misses_left: u8,
}

impl Daemon {
    fn phase(&self) -> Option<Phase> {
        self.cell.map(|p| p.0)
    }

    fn owning(&self) -> bool {
        matches!(
            self.phase(),
            Some(Phase::Up | Phase::Missed | Phase::Held { .. })
        )
    }

    fn enter(&mut self, next: Phase) {
        if let Some(p) = &mut self.cell {
            if p.0 != Phase::Closing {
                p.0 = next;
            }
        }
    }
}

/// What has happened (for the `sometimes` properties and the flips).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Seen {
    /// A forced DOWN was lifted by a daemon's decision.
    lifted: bool,
    /// A window was lifted at its end by its owner.
    window_lifted: bool,
    /// The UP key moved from one daemon's live lease to the other's, not
    /// asked explicitly (saturating at 2).
    moves: u8,
    /// An UP key was put on a lease whose daemon had marked it closed.
    up_after_close: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct World {
    keys: Keys,
    /// Per lease id: 0 never granted, 1 alive, 2 gone.
    leases: [u8; 6],
    /// The window's end passed.
    clock_over: bool,
    d: [Daemon; 2],
    /// The Python library's last write said UP.
    py_up: bool,
    /// Environment steps left (any kind).
    env_left: u8,
    ops_left: u8,
    py_left: u8,
    expiries_left: u8,
    crashes_left: u8,
    closes_left: u8,
    seen: Seen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Via {
    /// A client that holds nothing (the command line).
    Other,
    Daemon(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Action {
    Update(usize, bool),
    TakeOver(usize),
    Judge(usize),
    Rebind(usize),
    Commit(usize),
    Regrant(usize),
    CheckIn(usize),
    Deadline(usize),
    Crash(usize),
    Close(usize),
    Revoke(usize),
    OpDown { window: bool, via: Via },
    OpUp { via: Via },
    WindowEnds,
    PyUp,
    PyDown,
    PyDelete,
    Expire(i64),
}

/// The model's budgets and which properties it checks.
#[derive(Clone, Debug)]
struct Owners {
    /// Daemon B registers `exclusive`.
    b_exclusive: bool,
    /// Environment steps in all (each kind also has its own budget).
    env: u8,
    updates: u8,
    misses: u8,
    ops: u8,
    py: u8,
    expiries: u8,
    crashes: u8,
    closes: u8,
}

impl Owners {
    fn alive(w: &World, l: i64) -> bool {
        l != 0 && w.leases[l as usize] == 1
    }

    fn daemon_of(l: i64) -> Option<usize> {
        DAEMONS.into_iter().find(|&d| LEASES[d].contains(&l))
    }

    fn now(w: &World) -> u64 {
        if w.clock_over { END } else { END - 1 }
    }

    /// What a write's decision sees of the keys (`Store::current`).
    fn current(w: &World, probe: bool, ours: i64) -> Current {
        let k = &w.keys;
        let owner = k.recorded_owner();
        let owner_alive =
            (probe && k.up.is_none() && owner != 0 && owner != ours).then(|| Self::alive(w, owner));
        Current {
            up_lease: k.up.unwrap_or(0),
            down_owner: owner,
            closed: k.down == Some(CLOSED),
            down_lease: k.down.map_or(0, |d| d.lease),
            owner_alive,
        }
    }

    /// What daemon `d` knows besides etcd, deciding with lease `ours`.
    fn facts(w: &World, d: Option<usize>, ours: i64) -> Facts {
        let Some(d) = d else {
            return Facts {
                now: Self::now(w),
                ..Facts::default()
            };
        };
        let dm = &w.d[d];
        Facts {
            ours,
            before: LEASES[d][..dm.grants]
                .iter()
                .copied()
                .filter(|&l| l != ours)
                .collect(),
            overdue: dm.overdue,
            now: Self::now(w),
        }
    }

    /// The keys a guarded write of `put` leaves (`Store::write` executing
    /// it).
    fn image(k: &Keys, put: &Put) -> Keys {
        let new = Rec::of(&put.record);
        let mut after = *k;
        after.rec = Some(new);
        if put.closed {
            after.down = Some(CLOSED);
            if !new.up || put.up_lease == 0 {
                after.up = None;
            } else {
                after.up = Some(put.up_lease);
            }
        } else if new.up {
            if put.up_lease != 0 {
                after.up = Some(put.up_lease);
            }
            after.down = None;
        } else {
            after.up = None;
            after.down = Some(DownKey {
                val: if put.down_owner != 0 {
                    DownVal::Owner(put.down_owner)
                } else {
                    DownVal::Empty
                },
                lease: 0,
            });
        }
        after
    }

    /// Writes `after` (`force`: a put of the same value still counts, as
    /// the Python library's unguarded puts do): every read taken before
    /// it loses its compare. `explicit`: a takeover the owner asked for.
    fn put(w: &mut World, after: Keys, force: bool, explicit: bool) {
        let before = w.keys;
        if after == before && !force {
            return;
        }
        if let Some(l) = after.up.filter(|_| after.up != before.up) {
            if let Some(d) = Self::daemon_of(l) {
                if w.d[d].marked {
                    w.seen.up_after_close = true;
                }
                let other = w.d[1 - d].lease;
                if !explicit && before.up == Some(other) && Self::alive(w, other) {
                    w.seen.moves = (w.seen.moves + 1).min(2);
                }
            }
        }
        let was = before.rec;
        if was.is_some_and(|r| r.forced) && after.rec.is_some_and(|r| !r.forced) {
            w.seen.lifted = true;
            if was.is_some_and(|r| r.window) && w.clock_over {
                w.seen.window_lifted = true;
            }
        }
        if after.rec.is_none() {
            // Deleted: registering it again is a new conflict.
            w.seen.moves = 0;
        }
        w.keys = after;
        for d in &mut w.d {
            if let Some(p) = &mut d.pending {
                p.valid = false;
            }
        }
    }

    fn expire(w: &mut World, l: i64) {
        w.leases[l as usize] = 2;
        let mut after = w.keys;
        if after.up == Some(l) {
            after.up = None;
        }
        if after.down.is_some_and(|d| d.lease == l) {
            after.down = None;
        }
        Self::put(w, after, false, false);
    }

    /// A new lease for daemon `d` (`None`: close began, or none left).
    fn grant(w: &mut World, d: usize) -> Option<i64> {
        let dm = &w.d[d];
        if dm.closing || dm.grants >= LEASES[d].len() {
            return None;
        }
        let id = LEASES[d][dm.grants];
        w.leases[id as usize] = 1;
        let dm = &mut w.d[d];
        dm.grants += 1;
        dm.lease = id;
        Some(id)
    }

    /// `with_live_lease`'s `ensure`: the lease it has (perhaps gone
    /// unnoticed), or a first grant.
    fn ensure(w: &mut World, d: usize) -> Option<i64> {
        match w.d[d].lease {
            0 => Self::grant(w, d),
            id => Some(id),
        }
    }

    /// Reads and decides operation `op` for daemon `d`: done at once when
    /// there is nothing to write, else pending its commit.
    fn start(&self, w: &mut World, d: usize, op: Op) {
        w.d[d].pending = None;
        let old = w.keys.rec.map(Rec::service);
        let (verdict, next, own_lease, saw_overdue) = match op {
            Op::Update {
                up,
                take_over,
                made,
            } => {
                let id = if up {
                    match Self::ensure(w, d) {
                        Some(id) => id,
                        None => return Self::fail_update(w, d, made),
                    }
                } else {
                    0
                };
                let mut want = Service::new("t", "h").with_uuid("u");
                want.status = if up { Status::Up } else { Status::Down };
                want.heartbeat = Some(Duration::from_secs(1));
                want.exclusive = d == 1 && self.b_exclusive;
                let cur = Self::current(w, want.exclusive, id);
                let facts = Self::facts(w, Some(d), if up { id } else { w.d[d].lease });
                let phase = w.d[d].phase().unwrap_or(Phase::New);
                let ev = Event::Update {
                    want: &want,
                    take_over,
                };
                let (v, next) = decide(phase, true, old.as_ref(), &cur, &ev, &facts);
                if let Verdict::Refuse(_) = v {
                    // Displaced: the cell learns it.
                    if let (Phase::Lost(_), Some(true)) = (next, w.d[d].phase().map(|p| p.holds()))
                    {
                        w.d[d].enter(next);
                    }
                    return Self::fail_update(w, d, made);
                }
                (v, next, id, false)
            }
            Op::Run {
                ev,
                phase,
                wants_up,
            } => {
                // Ours, or ours until displaced (`run_decision`).
                let was = phase.0.holds() || phase.0.may_retake();
                let own = was && wants_up && !matches!(ev, Ev::Down { .. });
                let id = if own {
                    match Self::ensure(w, d) {
                        Some(id) => id,
                        None => return,
                    }
                } else {
                    0
                };
                let cur = Self::current(w, !matches!(ev, Ev::Down { .. }), id);
                let facts = Self::facts(w, Some(d), if own { id } else { w.d[d].lease });
                // Only the timer's and the checks' decisions are about the
                // deadline.
                let saw = facts.overdue && ev == Ev::Check;
                let (v, next) = decide(phase.0, wants_up, old.as_ref(), &cur, &ev.event(), &facts);
                (v, next, id, saw)
            }
            Op::Rebind => {
                let dm = &w.d[d];
                let (id, phase, wants_up) =
                    (dm.lease, dm.phase().unwrap_or(Phase::New), dm.wants_up);
                let cur = Self::current(w, false, id);
                let facts = Self::facts(w, Some(d), id);
                let (v, next) = decide(phase, wants_up, old.as_ref(), &cur, &Event::Check, &facts);
                match v {
                    Verdict::Write(p)
                        if p.up_lease == id
                            && p.record.status == Status::Up
                            && old.as_ref() == Some(&p.record) =>
                    {
                        // Restored in the batch: the UP key alone.
                        let mut after = w.keys;
                        after.up = Some(id);
                        after.down = None;
                        w.d[d].pending = Some(Pending {
                            op,
                            after,
                            puts: id,
                            own: false,
                            next: P(next),
                            saw_overdue: facts.overdue,
                            valid: true,
                        });
                        return;
                    }
                    Verdict::Write(_) => {
                        // Left to the service's own transition.
                        let op = Op::Run {
                            ev: Ev::Check,
                            phase: P(phase),
                            wants_up,
                        };
                        return self.start(w, d, op);
                    }
                    _ => (Verdict::Keep, next, id, facts.overdue),
                }
            }
        };
        let mut pending = Pending {
            op,
            after: w.keys,
            puts: 0,
            own: false,
            next: P(next),
            saw_overdue,
            valid: true,
        };
        match verdict {
            Verdict::Write(p) => {
                pending.after = Self::image(&w.keys, &p);
                if pending.after.up != w.keys.up {
                    pending.puts = p.up_lease;
                    pending.own = p.up_lease == own_lease;
                }
            }
            // The call fails, writing nothing.
            Verdict::Refuse(_) => return,
            Verdict::Keep | Verdict::Delete | Verdict::MarkClosed => {}
        }
        if pending.after == w.keys {
            Self::finish(w, d, pending);
        } else {
            w.d[d].pending = Some(pending);
        }
    }

    fn fail_update(w: &mut World, d: usize, made: bool) {
        let dm = &mut w.d[d];
        dm.pending = None;
        if made {
            dm.cell = None;
        }
    }

    /// The operation's transaction succeeded (or wrote nothing): what the
    /// owner does after it.
    fn finish(w: &mut World, d: usize, p: Pending) {
        let record = w.keys.rec.map(Rec::service);
        let dm = &mut w.d[d];
        dm.pending = None;
        if p.saw_overdue && dm.overdue {
            dm.judged = true;
        }
        match p.op {
            Op::Update { up, .. } => {
                // `after_update`: an update is a check-in.
                dm.wants_up = up;
                dm.overdue = false;
                dm.judged = false;
                dm.enter(record.as_ref().map_or(Phase::Lost(Lost::Deleted), phase_of));
            }
            Op::Run { .. } | Op::Rebind => dm.enter(p.next.0),
        }
    }

    fn commit(&self, w: &mut World, d: usize) {
        let Some(p) = w.d[d].pending else { return };
        if !p.valid {
            // Lost a compare: decide again from a fresh read (the batch
            // restore leaves it to the service's own transition).
            let op = match p.op {
                Op::Rebind => Op::Run {
                    ev: Ev::Check,
                    phase: P(w.d[d].phase().unwrap_or(Phase::New)),
                    wants_up: w.d[d].wants_up,
                },
                op => op,
            };
            return self.start(w, d, op);
        }
        if p.puts != 0 && !Self::alive(w, p.puts) {
            w.d[d].pending = None;
            if matches!(p.op, Op::Rebind) {
                // The check fails; the next one looks again.
                return;
            }
            if !p.own {
                // Another lease named (an owner that died since it was
                // asked): decide again from a fresh read.
                return self.start(w, d, p.op);
            }
            // "requested lease not found": our lease, re-granted and tried
            // again (`with_live_lease`).
            if Self::grant(w, d).is_some() {
                self.start(w, d, p.op);
            } else if let Op::Update { made, .. } = p.op {
                Self::fail_update(w, d, made);
            }
            return;
        }
        let explicit = matches!(
            p.op,
            Op::Update {
                take_over: true,
                ..
            }
        );
        Self::put(w, p.after, false, explicit);
        Self::finish(w, d, p);
    }

    /// An operator's call through a client that holds nothing (no lease):
    /// the same decision from phase `New`, in one step.
    fn by_other(w: &mut World, ev: Ev) {
        let old = w.keys.rec.map(Rec::service);
        let cur = Self::current(w, !matches!(ev, Ev::Down { .. }), 0);
        let (v, _) = decide(
            Phase::New,
            false,
            old.as_ref(),
            &cur,
            &ev.event(),
            &Self::facts(w, None, 0),
        );
        if let Verdict::Write(p) = v {
            // A lease it names lives: it was just asked.
            let after = Self::image(&w.keys, &p);
            Self::put(w, after, false, false);
        }
    }

    fn py_write(w: &mut World, up: bool) {
        let rec = Rec {
            up,
            forced: false,
            window: false,
            beat: false,
            missed: false,
            owner_down: false,
        };
        let after = Keys {
            rec: Some(rec),
            up: up.then_some(PY_LEASE),
            down: (!up).then_some(DownKey {
                val: DownVal::Empty,
                lease: PY_LEASE,
            }),
        };
        w.py_up = up;
        Self::put(w, after, true, false);
    }

    /// May daemon `d` start something of its own now.
    fn idle(w: &World, d: usize) -> bool {
        let dm = &w.d[d];
        dm.alive && !dm.closing && dm.pending.is_none()
    }

    /// The steps that fairness keeps running: timers, checks, re-grants,
    /// commits, and a closing client's revoke.
    fn progress(w: &World, out: &mut Vec<Action>) {
        for d in DAEMONS {
            let dm = &w.d[d];
            if dm.alive && dm.pending.is_some() {
                out.push(Action::Commit(d));
            }
            // The lease's task re-grants, whatever the service's lock.
            if dm.alive
                && !dm.closing
                && dm.lease != 0
                && !Self::alive(w, dm.lease)
                && dm.grants < LEASES[d].len()
            {
                out.push(Action::Regrant(d));
            }
            if Self::idle(w, d) {
                // The timer judges an UP service when its deadline passed;
                // the others are judged by the timer or the checks.
                let judged = match dm.phase() {
                    Some(Phase::Up) => dm.overdue,
                    Some(Phase::Missed | Phase::Held { .. } | Phase::Down) => true,
                    // A displaced owner that wants UP is checked too.
                    Some(p) if p.may_retake() => dm.wants_up,
                    _ => false,
                };
                if judged {
                    out.push(Action::Judge(d));
                }
                if dm.phase() == Some(Phase::Up)
                    && Self::alive(w, dm.lease)
                    && w.keys.up != Some(dm.lease)
                {
                    out.push(Action::Rebind(d));
                }
            }
            if dm.closing && Self::alive(w, dm.lease) {
                out.push(Action::Revoke(d));
            }
        }
    }

    /// Runs the fair steps to a fixpoint after the environment stopped;
    /// `None`: no fixpoint within the bound (a livelock).
    fn settle(&self, w: &World) -> Option<World> {
        let mut w = w.clone();
        w.clock_over = true;
        for d in DAEMONS {
            if w.d[d].alive {
                w.d[d].overdue = false;
                w.d[d].judged = false;
            } else {
                let l = w.d[d].lease;
                if Self::alive(&w, l) {
                    Self::expire(&mut w, l);
                }
            }
        }
        let mut acts = Vec::new();
        for _ in 0..40 {
            acts.clear();
            Self::progress(&w, &mut acts);
            let mut changed = false;
            for a in acts.drain(..) {
                if let Some(n) = self.step(&w, a) {
                    w = n;
                    changed = true;
                }
            }
            if !changed {
                return Some(w);
            }
        }
        None
    }

    fn update(&self, w: &mut World, d: usize, up: bool, take_over: bool) {
        let made = w.d[d].cell.is_none();
        if made {
            w.d[d].cell = Some(P(Phase::New));
        }
        w.d[d].updates_left -= 1;
        self.start(
            w,
            d,
            Op::Update {
                up,
                take_over,
                made,
            },
        );
    }

    fn run(&self, w: &mut World, d: usize, ev: Ev) {
        let dm = &w.d[d];
        let Some(phase) = dm.phase() else { return };
        let op = Op::Run {
            ev,
            phase: P(phase),
            wants_up: dm.wants_up,
        };
        self.start(w, d, op);
    }

    /// The state after `a`, `None` when it changes nothing.
    fn step(&self, last: &World, a: Action) -> Option<World> {
        let mut w = last.clone();
        match a {
            Action::Update(d, up) => self.update(&mut w, d, up, false),
            Action::TakeOver(d) => self.update(&mut w, d, true, true),
            Action::Judge(d) => self.run(&mut w, d, Ev::Check),
            Action::Rebind(d) => self.start(&mut w, d, Op::Rebind),
            Action::Commit(d) => self.commit(&mut w, d),
            Action::Regrant(d) => {
                Self::grant(&mut w, d);
            }
            Action::CheckIn(d) => {
                w.d[d].overdue = false;
                w.d[d].judged = false;
            }
            Action::Deadline(d) => {
                w.d[d].overdue = true;
                w.d[d].misses_left -= 1;
            }
            Action::Crash(d) => {
                w.crashes_left -= 1;
                w.d[d].alive = false;
                w.d[d].pending = None;
            }
            Action::Close(d) => {
                w.closes_left -= 1;
                let dm = &mut w.d[d];
                dm.closing = true;
                // Its lock is free unless a write is in flight, which
                // close waits for no longer than a request timeout.
                let locked = dm.pending.is_none();
                if let Some(p) = &mut dm.cell {
                    let (verdict, next) = decide(
                        p.0,
                        dm.wants_up,
                        None,
                        &Current::default(),
                        &Event::Close,
                        &Facts::default(),
                    );
                    p.0 = next;
                    if locked && verdict == Verdict::MarkClosed && dm.lease != 0 {
                        dm.marked = true;
                        // `mark_closed`: the UP key on our lease, or else a
                        // DOWN key naming us, becomes the mark.
                        if w.keys.up == Some(dm.lease) || w.keys.recorded_owner() == dm.lease {
                            let mut after = w.keys;
                            after.up = None;
                            after.down = Some(CLOSED);
                            Self::put(&mut w, after, false, false);
                        }
                    }
                }
            }
            Action::Revoke(d) => {
                let l = w.d[d].lease;
                Self::expire(&mut w, l);
            }
            Action::OpDown { window, via } => {
                w.ops_left -= 1;
                match via {
                    Via::Daemon(d) => self.run(&mut w, d, Ev::Down { window }),
                    Via::Other => Self::by_other(&mut w, Ev::Down { window }),
                }
            }
            Action::OpUp { via } => {
                w.ops_left -= 1;
                match via {
                    Via::Daemon(d) => self.run(&mut w, d, Ev::Up),
                    Via::Other => Self::by_other(&mut w, Ev::Up),
                }
            }
            Action::WindowEnds => w.clock_over = true,
            Action::PyUp => {
                w.py_left -= 1;
                w.leases[PY_LEASE as usize] = 1;
                Self::py_write(&mut w, true);
            }
            Action::PyDown => {
                w.py_left -= 1;
                w.leases[PY_LEASE as usize] = 1;
                Self::py_write(&mut w, false);
            }
            Action::PyDelete => {
                w.py_left -= 1;
                w.py_up = false;
                let after = Keys {
                    rec: None,
                    up: None,
                    down: None,
                };
                Self::put(&mut w, after, true, false);
            }
            Action::Expire(l) => {
                if Self::daemon_of(l).is_none_or(|d| w.d[d].alive) {
                    w.expiries_left -= 1;
                }
                Self::expire(&mut w, l);
            }
        }
        (w != *last).then_some(w)
    }
}

/// A step of the environment (counted against the budget), not one that
/// fairness keeps running.
fn environment(a: Action, w: &World) -> bool {
    match a {
        Action::Judge(_)
        | Action::Rebind(_)
        | Action::Commit(_)
        | Action::Regrant(_)
        | Action::Revoke(_)
        | Action::WindowEnds => false,
        Action::Expire(l) => Owners::daemon_of(l).is_none_or(|d| w.d[d].alive),
        _ => true,
    }
}

impl Model for Owners {
    type State = World;
    type Action = Action;

    fn init_states(&self) -> Vec<World> {
        let daemon = |d: usize| Daemon {
            alive: true,
            closing: false,
            marked: false,
            lease: if d == 0 { LEASES[0][0] } else { 0 },
            grants: usize::from(d == 0),
            cell: (d == 0).then_some(P(Phase::Up)),
            wants_up: d == 0,
            overdue: false,
            judged: false,
            pending: None,
            updates_left: self.updates,
            misses_left: self.misses,
        };
        let mut leases = [0; 6];
        leases[LEASES[0][0] as usize] = 1;
        vec![World {
            // Daemon A registered UP with a heartbeat deadline; B not yet.
            keys: Keys {
                rec: Some(Rec {
                    up: true,
                    forced: false,
                    window: false,
                    beat: true,
                    missed: false,
                    owner_down: false,
                }),
                up: Some(LEASES[0][0]),
                down: None,
            },
            leases,
            clock_over: false,
            d: [daemon(0), daemon(1)],
            py_up: false,
            env_left: self.env,
            ops_left: self.ops,
            py_left: self.py,
            expiries_left: self.expiries,
            crashes_left: self.crashes,
            closes_left: self.closes,
            seen: Seen::default(),
        }]
    }

    fn actions(&self, w: &World, out: &mut Vec<Action>) {
        Self::progress(w, out);
        for d in DAEMONS {
            let dm = &w.d[d];
            if Self::idle(w, d) && dm.updates_left > 0 {
                out.push(Action::Update(d, true));
                out.push(Action::Update(d, false));
                out.push(Action::TakeOver(d));
            }
            if dm.alive && dm.cell.is_some() {
                if dm.overdue {
                    out.push(Action::CheckIn(d));
                } else if dm.misses_left > 0 {
                    out.push(Action::Deadline(d));
                }
            }
            if dm.alive && w.crashes_left > 0 {
                out.push(Action::Crash(d));
            }
            if dm.alive && !dm.closing && w.closes_left > 0 {
                out.push(Action::Close(d));
            }
        }
        if w.ops_left > 0 && w.keys.rec.is_some() {
            let mut vias = vec![Via::Other];
            vias.extend(
                DAEMONS
                    .into_iter()
                    .filter(|&d| Self::idle(w, d) && w.d[d].cell.is_some())
                    .map(Via::Daemon),
            );
            for via in vias {
                if !w.clock_over {
                    out.push(Action::OpDown { window: true, via });
                }
                out.push(Action::OpDown { window: false, via });
                out.push(Action::OpUp { via });
            }
        }
        if !w.clock_over {
            out.push(Action::WindowEnds);
        }
        if w.py_left > 0 && w.leases[PY_LEASE as usize] != 2 {
            out.push(Action::PyUp);
            out.push(Action::PyDown);
            out.push(Action::PyDelete);
        }
        for l in 1..w.leases.len() as i64 {
            if !Self::alive(w, l) {
                continue;
            }
            let dead_owner = Self::daemon_of(l).is_some_and(|d| !w.d[d].alive);
            if dead_owner || w.expiries_left > 0 {
                out.push(Action::Expire(l));
            }
        }
        if w.env_left == 0 {
            out.retain(|&a| !environment(a, w));
        }
    }

    fn next_state(&self, last: &World, a: Action) -> Option<World> {
        let mut w = self.step(last, a)?;
        if environment(a, last) {
            w.env_left -= 1;
        }
        Some(w)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("close is final", |_, w: &World| !w.seen.up_after_close),
            Property::always(
                "a live daemon that wants UP is not left DOWN when nobody holds it",
                |m: &Owners, w: &World| m.settle(w).is_some_and(|s| !orphaned(&s)),
            ),
            Property::always("never a false UP", |_, w: &World| false_up(w).is_none()),
            Property::always(
                "never two holders that both believe they own",
                |m: &Owners, w: &World| m.settle(w).is_some_and(|s| !two_holders(&s)),
            ),
            Property::always(
                "a conflict between two live holders flips at most once",
                |_, w: &World| w.seen.moves <= 1,
            ),
            Property::always("every window lifts", |m: &Owners, w: &World| {
                m.settle(w).is_some_and(|s| window_lifted(&s))
            }),
            Property::always(
                "a live owner that wants UP and checks in is not stuck DOWN",
                |m: &Owners, w: &World| m.settle(w).is_some_and(|s| owners_up(&s)),
            ),
            Property::sometimes("UP on daemon B's lease", |_, w: &World| {
                w.keys.up.is_some() && w.keys.up == Some(w.d[1].lease)
            }),
            Property::sometimes("a takeover from a live holder", |_, w: &World| {
                w.seen.moves >= 1
            }),
            Property::sometimes("a forced DOWN lifted", |_, w: &World| w.seen.lifted),
            Property::sometimes("a window lifted at its end", |_, w: &World| {
                w.seen.window_lifted
            }),
            Property::sometimes("a missed deadline recorded", |_, w: &World| {
                w.keys.rec.is_some_and(|r| r.missed)
            }),
            Property::sometimes("a close marked", |_, w: &World| w.keys.down == Some(CLOSED)),
        ]
    }
}

/// Why the reader's UP is false (`None`: it is not, or it sees DOWN). UP
/// must be held by a live lease of an actor that wants it UP: a daemon not
/// closing that has not judged itself missed (a deadline that passed but
/// has not been acted on yet is within "D + one transaction"), and whose
/// own judgement of these keys, if any, is UP; or the Python library whose
/// last write said UP. And the record must say UP, not forced (the
/// invariant every writer keeps).
fn false_up(w: &World) -> Option<&'static str> {
    let l = w.keys.up?;
    let Some(r) = w.keys.rec else {
        return Some("an UP key without a record");
    };
    if !r.up || r.forced {
        return Some("an UP key for a record that is not UP");
    }
    if l == PY_LEASE {
        return (!w.py_up).then_some("the Python library did not ask for UP");
    }
    let Some(d) = Owners::daemon_of(l) else {
        return Some("an UP key on nobody's lease");
    };
    let dm = &w.d[d];
    if l != dm.lease {
        return Some("an UP key on a daemon's old lease");
    }
    if dm.marked {
        // (A close that timed out waiting for a write in flight leaves it
        // unmarked: the revoke takes it DOWN, by design.)
        return Some("UP for a client whose close marked it");
    }
    if !dm.wants_up {
        return Some("UP for a daemon that asked for DOWN");
    }
    if dm.overdue && dm.judged {
        return Some("UP for a daemon known to have missed its deadline");
    }
    None
}

/// After settling (each daemon judged the keys as they are): both live
/// daemons believe they own the service.
fn two_holders(w: &World) -> bool {
    DAEMONS.into_iter().all(|d| {
        let dm = &w.d[d];
        dm.alive && !dm.closing && dm.owning()
    })
}

/// After settling: no live owner still holds a window that ended.
fn window_lifted(w: &World) -> bool {
    let ended = w.keys.rec.is_some_and(|r| r.forced && r.window);
    !ended
        || !DAEMONS.into_iter().any(|d| {
            let dm = &w.d[d];
            dm.alive && !dm.closing && matches!(dm.phase(), Some(Phase::Held { .. }))
        })
}

/// After settling: every live daemon that believes it owns the service and
/// wants it UP has it UP on its lease, unless an operator holds it until
/// `up()`.
fn owners_up(w: &World) -> bool {
    let held = w.keys.rec.is_some_and(|r| r.forced && !r.window);
    held || DAEMONS.into_iter().all(|d| {
        let dm = &w.d[d];
        !(dm.alive && !dm.closing && dm.wants_up && dm.owning())
            || (w.keys.up == Some(dm.lease) && Owners::alive(w, dm.lease))
    })
}

/// After settling: the record exists, nobody holds it DOWN on purpose (an
/// operator, the Python library's down, an owner's own DOWN), no live
/// lease holds it UP, and yet a live daemon wants it UP.
fn orphaned(w: &World) -> bool {
    let Some(r) = w.keys.rec else { return false };
    // A plain DOWN record: an owner's own DOWN or the Python library's.
    let on_purpose = r.forced || r.owner_down || (!r.up && !r.missed);
    let held = w.keys.up.is_some_and(|l| Owners::alive(w, l));
    !on_purpose
        && !held
        && DAEMONS.into_iter().any(|d| {
            let dm = &w.d[d];
            dm.alive && !dm.closing && dm.wants_up && dm.cell.is_some()
        })
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "etcd {:?} leases {:?}", self.keys, self.leases)?;
        for (i, d) in self.d.iter().enumerate() {
            write!(
                f,
                " | {}: {:?} lease {} wants_up {} overdue {} alive {}",
                ["A", "B"][i],
                d.phase(),
                d.lease,
                d.wants_up,
                d.overdue,
                d.alive
            )?;
        }
        Ok(())
    }
}

/// The budgets CI checks (every kind of step can happen; each path has at
/// most `env` of them). `OSLIVELY_MCHECK_<BUDGET>` (ENV, UPDATES, MISSES,
/// OPS, PY, EXPIRIES, CRASHES, CLOSES) raises one to look further, and
/// `OSLIVELY_MCHECK_DEPTH` stops at a depth.
fn owners(b_exclusive: bool, env_steps: u8) -> Owners {
    let env = |k: &str, d: u8| {
        std::env::var(format!("OSLIVELY_MCHECK_{k}"))
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    Owners {
        b_exclusive,
        env: env("ENV", env_steps),
        updates: env("UPDATES", 2),
        misses: env("MISSES", 1),
        ops: env("OPS", 2),
        py: env("PY", 1),
        expiries: env("EXPIRIES", 1),
        crashes: env("CRASHES", 1),
        closes: env("CLOSES", 1),
    }
}

/// Explores every state within the budgets (one thread, breadth first),
/// prints how many and how deep, and fails with the path to the first
/// state that breaks each `always` property (and names each `sometimes`
/// property never met).
fn check(model: Owners, min_states: usize) {
    let started = Instant::now();
    let label = format!("{model:?}");
    let defaults = std::env::vars().all(|(k, _)| !k.starts_with("OSLIVELY_MCHECK_"));
    let depth: usize = std::env::var("OSLIVELY_MCHECK_DEPTH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut builder = model.checker().threads(1);
    if depth > 0 {
        builder = builder.target_max_depth(depth);
    }
    let checker = builder.spawn_bfs().join();
    let states = checker.unique_state_count();
    println!(
        "model_check: {states} states ({} generated), depth {}, {:?}: {label}",
        checker.state_count(),
        checker.max_depth(),
        started.elapsed()
    );
    let model = checker.model();
    let mut broken = Vec::new();
    for (name, path) in checker.discoveries() {
        let prop = model.properties().into_iter().find(|p| p.name == name);
        if prop.is_none_or(|p| p.expectation == Expectation::Sometimes) {
            continue;
        }
        let mut trail = String::new();
        let last = path.last_state().clone();
        for (s, a) in path.into_vec() {
            trail.push_str(&format!("  {s}\n"));
            if let Some(a) = a {
                trail.push_str(&format!("    -> {a:?}\n"));
            }
        }
        match model.settle(&last) {
            Some(end) => trail.push_str(&format!("  settled: {end}\n")),
            None => trail.push_str("  settled: no fixpoint (a livelock)\n"),
        }
        println!("property {name:?} broken:\n{trail}");
        broken.push(name);
    }
    assert!(broken.is_empty(), "properties broken: {broken:?}");
    checker.assert_properties();
    if defaults {
        assert!(
            states >= min_states,
            "the model shrank: {states} states, expected at least {min_states}"
        );
    }
}

#[test]
fn the_owners_decision_keeps_every_property() {
    check(owners(false, 4), MIN_STATES.0);
}

#[test]
fn the_owners_decision_keeps_every_property_with_an_exclusive_daemon() {
    check(owners(true, 4), MIN_STATES.1);
}

/// States explored with the default budgets (without and with an
/// exclusive daemon), less a margin: fewer means the model shrank.
const MIN_STATES: (usize, usize) = (450_000, 150_000);
