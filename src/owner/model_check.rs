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
//! The daemons decide with the real functions: [`phase::decide`] for every
//! transition, [`phase::may_take`] and [`sticky::owner_record`] for the
//! owner's update, [`phase::lifted_by_other`] and [`phase::phase_of`].
//! What the store does around them (which keys a guarded write puts or
//! deletes, the UP-key check of `rebind.rs`, an operator's `down`, close's
//! marks) is modelled here from `store/writes.rs` and `store/rebind.rs`:
//! those are executions, not decisions, except `rebind_up`'s verdict,
//! which is a private copy of the store's (see [`rebind_verdict`]).
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

use stateright::{Checker, Model, Property};

use super::phase::{self, Event, Facts, Phase};
use crate::record::{Service, Status};
use crate::sticky;
use crate::store::{Current, Taking};

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
        s.maintenance_note = if self.forced { "op".into() } else { String::new() };
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
    /// The owner's lease, as our writes record it while held or missed.
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Ev {
    Check,
    Lift,
}

impl Ev {
    fn event(self) -> Event {
        match self {
            Ev::Check => Event::Check,
            Ev::Lift => Event::Lift,
        }
    }
}

/// A daemon's operation between its read and its commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    /// The owner's `update()`; `made`: its cell was made for it.
    Update { up: bool, made: bool },
    /// One decision on `ev`, from the phase and wish it started with.
    Judge { ev: Ev, phase: P, wants_up: bool },
    /// The keepalive check's restore of a missing UP key.
    Rebind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Pending {
    op: Op,
    /// The keys as the transaction leaves them.
    after: Keys,
    /// The lease its put names (0: none).
    puts: i64,
    /// The phase the decision chose.
    next: Option<P>,
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
    previous: i64,
    grants: usize,
    /// Its cell for the service (`None`: none).
    cell: Option<P>,
    wants_up: bool,
    /// Its heartbeat deadline passed since its last check-in.
    overdue: bool,
    /// A decision of its own saw the deadline passed (so it knows).
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
    /// The UP key moved from one daemon's live lease to the other's
    /// (saturating at 2).
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
    Other,
    Daemon(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Action {
    Update(usize, bool),
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
    /// Check the properties today's decision breaks (see the ignored tests).
    known_broken: bool,
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
        let owner_alive = (probe && k.up.is_none() && owner != 0 && owner != ours)
            .then(|| Self::alive(w, owner));
        Current {
            up_lease: k.up.unwrap_or(0),
            down_owner: owner,
            closed: k.down
                == Some(DownKey {
                    val: DownVal::Closed,
                    lease: 0,
                }),
            down_lease: k.down.map_or(0, |d| d.lease),
            owner_alive,
        }
    }

    /// The keys a guarded write of `new` leaves (`Store::write`): the UP
    /// key on `lease` (0: none put), the DOWN key naming the owner.
    fn image(k: &Keys, new: &Service, lease: i64, ours: Option<i64>) -> Keys {
        let new = Rec::of(new);
        let mut after = *k;
        after.rec = Some(new);
        if new.up {
            if lease != 0 {
                after.up = Some(lease);
            }
            after.down = None;
        } else {
            let owner = if new.forced || new.missed {
                match (ours, k.up) {
                    (Some(id), _) if id != 0 => id,
                    (_, Some(l)) if l != 0 => l,
                    _ => k.recorded_owner(),
                }
            } else {
                0
            };
            after.up = None;
            after.down = Some(DownKey {
                val: if owner != 0 {
                    DownVal::Owner(owner)
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
    /// it loses its compare, and nobody's phase is current any more.
    fn put(w: &mut World, after: Keys, force: bool) {
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
                if before.up == Some(other) && Self::alive(w, other) {
                    w.seen.moves = (w.seen.moves + 1).min(2);
                }
            }
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
        Self::put(w, after, false);
    }

    /// A new lease for daemon `d` (`None`: close began, or none left).
    fn grant(w: &mut World, d: usize) -> Option<i64> {
        let dm = &w.d[d];
        if dm.closing || dm.grants >= LEASES[d].len() {
            return None;
        }
        let id = LEASES[d][dm.grants];
        let old = dm.lease;
        w.leases[id as usize] = 1;
        let dm = &mut w.d[d];
        dm.grants += 1;
        if old != 0 {
            dm.previous = old;
        }
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

    /// Reads and decides operation `op` for daemon `d`: either done at
    /// once (nothing to write) or pending its commit.
    fn start(&self, w: &mut World, d: usize, op: Op) {
        match op {
            Op::Update { up, made } => self.start_update(w, d, up, made),
            Op::Judge {
                ev,
                phase,
                wants_up,
            } => Self::start_judge(w, d, ev, phase.0, wants_up),
            Op::Rebind => Self::start_rebind(w, d),
        }
    }

    fn start_update(&self, w: &mut World, d: usize, up: bool, made: bool) {
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
        let ours = if up { id } else { w.d[d].lease };
        if phase::may_take(&want, Taking::Itself, &cur, ours).is_err() {
            return Self::fail_update(w, d, made);
        }
        let old = w.keys.rec.map(Rec::service);
        let new = sticky::owner_record(old.as_ref(), &want, Self::now(w));
        let after = Self::image(&w.keys, &new, id, up.then_some(id));
        let pending = Pending {
            op: Op::Update { up, made },
            after,
            puts: if after.up == Some(id) && w.keys.up != Some(id) {
                id
            } else {
                0
            },
            next: Some(P(phase::phase_of(&new))),
            valid: true,
        };
        if after == w.keys {
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

    fn start_judge(w: &mut World, d: usize, ev: Ev, phase: Phase, wants_up: bool) {
        let id = if wants_up {
            match Self::ensure(w, d) {
                Some(id) => id,
                None => {
                    w.d[d].pending = None;
                    return;
                }
            }
        } else {
            0
        };
        let dm = &w.d[d];
        let facts = Facts {
            ours: if wants_up { id } else { dm.lease },
            previous: dm.previous,
            overdue: dm.overdue,
            now: Self::now(w),
        };
        let cur = Self::current(w, true, id);
        let old = w.keys.rec.map(Rec::service);
        let (write, next) = phase::decide(phase, wants_up, ev.event(), old.as_ref(), &cur, &facts);
        let after = match &write {
            Some(s) => Self::image(&w.keys, s, id, wants_up.then_some(id)),
            None => w.keys,
        };
        let pending = Pending {
            op: Op::Judge {
                ev,
                phase: P(phase),
                wants_up,
            },
            after,
            puts: if after.up == Some(id) && w.keys.up != Some(id) {
                id
            } else {
                0
            },
            next: Some(P(next)),
            valid: true,
        };
        if after == w.keys {
            Self::finish(w, d, pending);
        } else {
            w.d[d].pending = Some(pending);
        }
    }

    fn start_rebind(w: &mut World, d: usize) {
        let dm = &w.d[d];
        match rebind_verdict(&w.keys, dm.lease, dm.previous) {
            Verdict::Ours => {
                let dm = &mut w.d[d];
                dm.pending = None;
                dm.enter(Phase::Up);
            }
            Verdict::Restore => {
                let mut after = w.keys;
                after.up = Some(dm.lease);
                w.d[d].pending = Some(Pending {
                    op: Op::Rebind,
                    after,
                    puts: dm.lease,
                    next: Some(P(Phase::Up)),
                    valid: true,
                });
            }
            // Forced down, deleted, taken over, DOWN: the decision says.
            Verdict::Judge => {
                let (phase, wants_up) = (dm.phase().unwrap_or(Phase::Up), dm.wants_up);
                Self::start_judge(w, d, Ev::Check, phase, wants_up);
            }
        }
    }

    /// The operation's transaction succeeded (or wrote nothing): what the
    /// owner does after it.
    fn finish(w: &mut World, d: usize, p: Pending) {
        let dm = &mut w.d[d];
        dm.pending = None;
        match p.op {
            Op::Update { up, .. } => {
                // `after_update`: an update is a check-in.
                dm.wants_up = up;
                dm.overdue = false;
                dm.judged = false;
                if dm.cell.is_none() {
                    dm.cell = Some(P(Phase::Up));
                }
                if let Some(n) = p.next {
                    dm.enter(n.0);
                }
            }
            Op::Judge { ev, .. } => {
                // Its decision took effect: it knows whether it is overdue.
                if dm.overdue {
                    dm.judged = true;
                }
                let next = p.next.map(|n| n.0);
                dm.enter(next.unwrap_or(Phase::Up));
                if ev == Ev::Lift && matches!(next, Some(Phase::Lost(_))) {
                    // Not ours any more: lifted as by any client.
                    Self::lift_by_other(w);
                }
            }
            Op::Rebind => dm.enter(Phase::Up),
        }
    }

    fn commit(&self, w: &mut World, d: usize) {
        let Some(p) = w.d[d].pending else { return };
        if !p.valid {
            // Lost a compare: decide again from a fresh read.
            w.d[d].pending = None;
            return self.start(w, d, p.op);
        }
        if p.puts != 0 && !Self::alive(w, p.puts) {
            // "requested lease not found": our lease, re-granted and tried
            // again (`with_live_lease`); the check's restore just fails.
            w.d[d].pending = None;
            if matches!(p.op, Op::Rebind) || p.puts != w.d[d].lease {
                return;
            }
            if Self::grant(w, d).is_some() {
                self.start(w, d, p.op);
            } else if let Op::Update { made, .. } = p.op {
                Self::fail_update(w, d, made);
            }
            return;
        }
        let before = w.keys.rec;
        Self::put(w, p.after, false);
        let after = w.keys.rec;
        if before.is_some_and(|r| r.forced) && after.is_some_and(|r| !r.forced) {
            w.seen.lifted = true;
            if before.is_some_and(|r| r.window) && w.clock_over {
                w.seen.window_lifted = true;
            }
        }
        Self::finish(w, d, p);
    }

    /// An operator's `up()` through a client that does not hold it.
    fn lift_by_other(w: &mut World) {
        let Some(old) = w.keys.rec.map(Rec::service) else {
            return;
        };
        let cur = Self::current(w, true, 0);
        let Some(new) = phase::lifted_by_other(&old) else {
            return;
        };
        let lease = if cur.owner_alive == Some(true) {
            cur.down_owner
        } else {
            0
        };
        let after = Self::image(&w.keys, &new, lease, None);
        Self::put(w, after, false);
    }

    /// An operator's `down()` (`Store::down`).
    fn op_down(w: &mut World, window: bool) {
        let Some(mut s) = w.keys.rec.map(Rec::service) else {
            return;
        };
        if !s.forced_down {
            s.owner_down = s.status == Status::Down && !s.heartbeat_missed;
        }
        s.status = Status::Down;
        s.forced_down = true;
        s.maintenance_note = "op".into();
        s.maintenance_end = if window { END } else { 0 };
        let after = Self::image(&w.keys, &s, 0, None);
        Self::put(w, after, false);
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
        Self::put(w, after, true);
    }

    /// May daemon `d` start something of its own now.
    fn idle(w: &World, d: usize) -> bool {
        let dm = &w.d[d];
        dm.alive && !dm.closing && dm.pending.is_none()
    }

    /// The steps that fairness keeps running: timers, checks, re-grants,
    /// commits, and a dead process's lease expiring.
    fn progress(w: &World, out: &mut Vec<Action>) {
        for d in DAEMONS {
            let dm = &w.d[d];
            if dm.alive && dm.pending.is_some() {
                out.push(Action::Commit(d));
            }
            if Self::idle(w, d) {
                if dm.lease != 0 && !Self::alive(w, dm.lease) && dm.grants < LEASES[d].len() {
                    out.push(Action::Regrant(d));
                }
                // The timer judges an UP service when its deadline passed;
                // the others are judged by the timer or the checks.
                let judged = match dm.phase() {
                    Some(Phase::Up) => dm.overdue,
                    Some(Phase::Missed | Phase::Held { .. } | Phase::Down) => true,
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

    /// The state after `a`, `None` when it changes nothing.
    fn step(&self, last: &World, a: Action) -> Option<World> {
        let mut w = last.clone();
        match a {
            Action::Update(d, up) => {
                let made = w.d[d].cell.is_none();
                if made {
                    w.d[d].cell = Some(P(Phase::Lost(phase::Lost::Deleted)));
                }
                w.d[d].updates_left -= 1;
                self.start(&mut w, d, Op::Update { up, made });
            }
            Action::Judge(d) => {
                let dm = &w.d[d];
                let (phase, wants_up) = (dm.phase()?, dm.wants_up);
                Self::start_judge(&mut w, d, Ev::Check, phase, wants_up);
            }
            Action::Rebind(d) => Self::start_rebind(&mut w, d),
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
                    let prev = std::mem::replace(&mut p.0, Phase::Closing);
                    let keyed = matches!(prev, Phase::Up | Phase::Held { .. } | Phase::Missed);
                    if locked && keyed {
                        dm.marked = true;
                        if dm.lease != 0 && w.keys.up == Some(dm.lease) {
                            let mut after = w.keys;
                            after.up = None;
                            after.down = Some(DownKey {
                                val: DownVal::Closed,
                                lease: 0,
                            });
                            Self::put(&mut w, after, false);
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
                Self::op_down(&mut w, window);
                if let Via::Daemon(d) = via {
                    let rec = w.keys.rec.map(Rec::service);
                    let dm = &mut w.d[d];
                    if dm.owning() {
                        if let Some(r) = rec {
                            dm.enter(phase::phase_of(&r));
                        }
                    }
                }
            }
            Action::OpUp { via } => {
                w.ops_left -= 1;
                match via {
                    Via::Daemon(d) if matches!(w.d[d].phase(), Some(Phase::Held { .. })) => {
                        let dm = &w.d[d];
                        let (phase, wants_up) = (dm.phase()?, dm.wants_up);
                        Self::start_judge(&mut w, d, Ev::Lift, phase, wants_up);
                    }
                    _ => Self::lift_by_other(&mut w),
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
                Self::put(&mut w, after, true);
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

/// `rebind_up`'s verdict on a service held UP whose UP key is not on our
/// lease (copied from `store/rebind.rs`, where it is private: the check
/// restores a missing UP key without asking the decision).
enum Verdict {
    Ours,
    Restore,
    Judge,
}

fn rebind_verdict(k: &Keys, lease: i64, previous: i64) -> Verdict {
    match k.rec {
        None => return Verdict::Judge,
        Some(r) if r.forced || !r.up => return Verdict::Judge,
        _ => {}
    }
    let closed = k.down
        == Some(DownKey {
            val: DownVal::Closed,
            lease: 0,
        });
    if closed && k.up != Some(lease) {
        return Verdict::Judge;
    }
    match k.up {
        Some(l) if l == lease => Verdict::Ours,
        Some(l) if previous == 0 || l != previous => Verdict::Judge,
        _ => Verdict::Restore,
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
            previous: 0,
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
        let mut p = vec![
            Property::always("never a false UP", |_, w: &World| false_up(w).is_none()),
            Property::always(
                "never two holders that both believe they own",
                |m: &Owners, w: &World| m.settle(w).is_some_and(|s| !two_holders(&s)),
            ),
            Property::always("close is final", |_, w: &World| !w.seen.up_after_close),
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
            Property::sometimes("a takeover from a live holder", |_, w: &World| w.seen.moves >= 1),
            Property::sometimes("a forced DOWN lifted by its owner", |_, w: &World| w.seen.lifted),
            Property::sometimes("a window lifted at its end", |_, w: &World| {
                w.seen.window_lifted
            }),
            Property::sometimes("a missed deadline recorded", |_, w: &World| {
                w.keys.rec.is_some_and(|r| r.missed)
            }),
            Property::sometimes("a close marked", |_, w: &World| {
                w.keys.down.is_some_and(|d| d.val == DownVal::Closed)
            }),
        ];
        if self.known_broken {
            p = vec![
                Property::always("a conflict between two live holders flips at most once", |_, w: &World| {
                    w.seen.moves <= 1
                }),
                Property::always(
                    "a live daemon that wants UP is not left DOWN when nobody holds it",
                    |m: &Owners, w: &World| m.settle(w).is_some_and(|s| !orphaned(&s)),
                ),
            ];
        }
        p
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
    if dm.cell.is_some_and(|p| p.0 == Phase::Closing) {
        return Some("UP for a closed client");
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
/// operator, the Python library's down, its owner's own DOWN), no lease
/// holds it, and yet a live daemon wants it UP.
fn orphaned(w: &World) -> bool {
    let Some(r) = w.keys.rec else { return false };
    let on_purpose = r.forced || r.owner_down || (!r.up && !r.missed && !r.beat);
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

/// The budgets CI checks: every step kind at least once, within 60 s of a
/// debug build on one core.
fn owners(b_exclusive: bool) -> Owners {
    let env = |k: &str, d: u8| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    Owners {
        b_exclusive,
        env: env("MCHECK_ENV", 4),
        updates: env("MCHECK_UPDATES", 2),
        misses: env("MCHECK_MISSES", 1),
        ops: env("MCHECK_OPS", 2),
        py: env("MCHECK_PY", 1),
        expiries: env("MCHECK_EXPIRIES", 1),
        crashes: env("MCHECK_CRASHES", 1),
        closes: env("MCHECK_CLOSES", 1),
        known_broken: false,
    }
}

/// Runs the check; panics with the path of the first property broken.
fn check(model: Owners, min_states: usize) {
    let started = Instant::now();
    let label = format!("{model:?}");
    let depth_limit: usize = std::env::var("MCHECK_DEPTH").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut b = model.checker().threads(1);
    if depth_limit > 0 {
        b = b.target_max_depth(depth_limit);
    }
    let checker = b.spawn_bfs().join();
    let states = checker.unique_state_count();
    let depth = checker.max_depth();
    println!(
        "model_check: {states} states ({} generated), depth {depth}, {:?}: {label}",
        checker.state_count(),
        started.elapsed()
    );
    let model = checker.model();
    let mut broken = Vec::new();
    for (name, path) in checker.discoveries() {
        let prop = model.properties().into_iter().find(|p| p.name == name);
        if prop.is_some_and(|p| p.expectation != stateright::Expectation::Sometimes) {
            let mut trail = String::new();
            for (s, a) in path.into_vec() {
                trail.push_str(&format!("  {s}\n"));
                if let Some(a) = a {
                    trail.push_str(&format!("    -> {a:?}\n"));
                }
            }
            if let Some(end) = model.settle(&checker.discovery(name).unwrap().last_state().clone()) {
                trail.push_str(&format!("  settled: {end}\n"));
            }
            println!("property {name:?} broken:\n{trail}");
            broken.push(name);
        }
    }
    assert!(broken.is_empty(), "properties broken: {broken:?}");
    checker.assert_properties();
    assert!(
        states >= min_states,
        "the model shrank: {states} states, expected at least {min_states}"
    );
}

#[test]
fn the_owners_decision_keeps_every_property() {
    check(owners(false), 1);
}

#[test]
fn the_owners_decision_keeps_every_property_with_an_exclusive_daemon() {
    check(owners(true), 1);
}
