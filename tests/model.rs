//! The model-based test across features: random sequences of what users,
//! operators and faults do — owner updates (UP/DOWN, with and without a
//! uuid, with, keeping or removing a heartbeat deadline, `exclusive` or
//! not), check-ins and stalls, operator down (with and without a window,
//! from a reader or through the owner's own client) and up, deletes,
//! window ends, takeovers by another client, region moves, daemons in
//! child processes (`oslively register`, `--exclusive` or not) that crash
//! (SIGKILL: no close), what the original Python library writes (its
//! registrations, UP on its own lease, its updates and its non-sticky
//! DOWN, its uuid-less region key, its process dying, and its delete of
//! one of ours, which removes that shared key and leaves our per-uuid
//! one), lease loss (revoked by hand), an etcd restart, clean closes, and
//! a panic in one of a client's background tasks (caught and the task
//! restarted: nothing may show) — over three clients and three services,
//! checked after each step against a reference model of what a user
//! should see: `is_up`, `get` and the DOWN reason of every DOWN service
//! from a reader, lists by region, type, host and status, a view, the
//! state a subscriber builds from its events (and the reason of each DOWN
//! it sees), and the state a slow subscriber with a two-event queue builds
//! (it falls behind and catches up by resyncs).
//!
//! Besides the checks after each step, an invariant is sampled all the
//! time from another thread while steps run: once a write that makes a
//! service DOWN has returned, no reader (`is_up`, a list by status, a view
//! after `sync`) says it is UP until a write that may make it UP has
//! begun. A second test runs two daemons updating one type+host on
//! intervals (one in a child process), operators acting meanwhile, and a
//! crash of the holder, under the same sampler.
//!
//! Seeded random sequences (not proptest's shrinking: each case runs
//! against a real etcd and takes seconds); a failure prints the seed and
//! the steps so far. CI runs a fixed set of seeds; `OSLIVELY_MODEL_CASES=N`
//! runs N more (seeded from the clock, printed), `OSLIVELY_MODEL_STEPS`
//! sets the steps per case, `OSLIVELY_MODEL_SEED` runs one seed.
//! Two live clients on one type+host flip it at most once (issue 30,
//! finding 3): the model knows which client holds each service and which
//! were displaced; a displaced client's update fails with Conflict naming
//! the holder and writes nothing, `take_over` retakes it, and once the
//! holder's lease is gone a displaced client that still wants it UP takes
//! it back by itself.
//!
//! `OSLIVELY_MODEL_PENDING=<gate>,<gate>` (or `all`) also generates and
//! asserts what today's code does not meet yet, one gate per defect being
//! fixed in src/owner or src/store (see [`pending`]).

mod common;
#[path = "common/oracle.rs"]
mod oracle;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use etcd_client::{PutOptions, Txn, TxnOp};
use os_lively::{
    Client, DownReason, ErrorKind, Event, EventKind, Filter, Service, Status, SubscribeOptions,
    View,
};
use prost::Message;

const TTL: u64 = 2;
/// The heartbeat deadline of the services that have one.
const BEAT: Duration = Duration::from_millis(700);
/// How long a step may take to show: the longest is a lease revoked by hand
/// (found at the next keepalive, TTL/3, then re-granted and re-bound), a
/// crash (TTL and etcd's 500 ms expiry sweep), or a restart of etcd.
const SETTLE: Duration = Duration::from_secs(8);
const SERVICES: usize = 3;
const CLIENTS: usize = 3;
/// The holder "the original Python library's process": its UP and DOWN
/// keys on a lease the test keeps alive (and revokes for its crash).
const PY: usize = CLIENTS;
/// The holder "a daemon in a child process" (`oslively register`).
const PROC: usize = CLIENTS + 1;

/// Rules this test once gated while src/owner was being fixed, now met
/// and always asserted: `operator-exclusive` (an operator's down and up of
/// another process's exclusive service never leaves a Conflict against a
/// dead lease), `closed-reason` (DOWN (closed) survives a down and a lift),
/// `displaced-down` (a displaced client's plain update never takes the
/// service from a live holder that has it DOWN), `set-down-retake` (a
/// client that saw another set its service DOWN does not retake it from a
/// live holder without `take_over`).
const MET: [&str; 4] = [
    "operator-exclusive",
    "closed-reason",
    "displaced-down",
    "set-down-retake",
];

/// Gates asserted only when named in `OSLIVELY_MODEL_PENDING`
/// (comma-separated; `all` or `1` for every one):
/// - `own-down`: the model counts a client that set its service DOWN as
///   its holder even when that client holds no lease (after its lease was
///   lost and nothing of it needed one), and expects an `exclusive`
///   registration to be refused; the library refuses only while a holder's
///   lease lives (issue 30's rule), so this gate's expectation is the
///   model's to settle, not the library's (seed 5, step 25).
fn pending(gate: &str) -> bool {
    MET.contains(&gate)
        || std::env::var("OSLIVELY_MODEL_PENDING").is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .any(|g| g == gate || g == "all" || g == "1")
        })
}

/// A small deterministic generator (xorshift64*): the seed is the case.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

#[derive(Debug, Clone)]
enum Step {
    Update {
        client: usize,
        svc: usize,
        up: bool,
        with_uuid: bool,
        beat: Beat,
        region: usize,
        exclusive: bool,
        /// `take_over` instead of `update`: retake it from a live holder
        /// that displaced this client.
        take_over: bool,
    },
    /// The Python library writes the service: a registration (a fresh
    /// uuid) or an update of one it holds, UP (its UP key on its lease) or
    /// its non-sticky DOWN (the DOWN key on its lease).
    PythonWrite {
        svc: usize,
        up: bool,
    },
    /// The Python process dies: its lease is revoked.
    PythonCrash,
    /// The Python library deletes the service (one that we wrote last).
    PythonDelete {
        svc: usize,
    },
    /// A daemon in a child process registers the service.
    Spawn {
        svc: usize,
        exclusive: bool,
    },
    /// That child is killed (SIGKILL: no close, its lease runs out).
    Crash {
        svc: usize,
    },
    Stall {
        svc: usize,
    },
    Resume {
        svc: usize,
    },
    OperatorDown {
        svc: usize,
        window: bool,
        via_owner: bool,
    },
    OperatorUp {
        svc: usize,
        via_owner: bool,
    },
    Delete {
        svc: usize,
    },
    WindowEnds,
    LoseLease {
        client: usize,
        /// Revoked again as soon as the client has its next lease (issue
        /// 30, finding 4: two losses in a row).
        twice: bool,
    },
    Close {
        client: usize,
    },
    RestartEtcd,
    /// The next pass of a background task (of whichever client gets there
    /// first) through its checkpoint panics.
    Panic {
        task: &'static str,
    },
}

impl Step {
    /// The services whose UP may begin with this step: the invariant
    /// sampler stops holding them DOWN before it starts.
    fn may_raise(&self) -> Vec<usize> {
        match self {
            Step::Update { svc, up: true, .. }
            | Step::PythonWrite { svc, up: true }
            | Step::Spawn { svc, .. }
            | Step::Resume { svc }
            | Step::OperatorUp { svc, .. } => vec![*svc],
            Step::WindowEnds => (0..SERVICES).collect(),
            _ => vec![],
        }
    }

    /// True when the step's own write takes services DOWN before it
    /// returns (the rest go DOWN by a timer: a deadline, a lease running
    /// out).
    fn downs_when_it_returns(&self) -> bool {
        matches!(
            self,
            Step::Update { up: false, .. }
                | Step::PythonWrite { up: false, .. }
                | Step::PythonCrash
                | Step::PythonDelete { .. }
                | Step::OperatorDown { .. }
                | Step::Delete { .. }
                | Step::Close { .. }
        )
    }
}

#[derive(Debug, Clone, Copy)]
enum Beat {
    Keep,
    Set,
    Remove,
}

/// What a user should see of one service (one type+host).
#[derive(Debug, Clone, Default)]
struct Svc {
    uuid: Option<String>,
    exists: bool,
    /// Who wrote it last and holds it (identity is type+host: the last
    /// registrant holds it): a client's index, [`PY`] or [`PROC`].
    owner: Option<usize>,
    wants_up: bool,
    heartbeat: bool,
    /// The owner's main loop checks in.
    pulsing: bool,
    /// An operator holds it DOWN, until this wall-clock second (0: until up()).
    forced: Option<u64>,
    region: &'static str,
    /// The Python library wrote it last.
    python: bool,
    /// Why it went DOWN when its holder went away (closed, crashed).
    lost: Option<DownReason>,
    /// The writers (clients and [`PROC`]) whose registration of this uuid
    /// is theirs or was taken from them by a live holder: all but the
    /// owner are displaced, and their update fails while that holder lives.
    was: BTreeSet<usize>,
    /// Writers that held this uuid and may or may not count as displaced
    /// (they saw it deleted or set DOWN by another at a moment nobody
    /// observes): the generator makes their updates `take_over`.
    ever: BTreeSet<usize>,
    /// Each writer's last own write of it: wants UP, has a deadline.
    wants: BTreeMap<usize, (bool, bool)>,
    /// An operator forced it DOWN after its holder closed (gate
    /// `closed-reason`).
    closed_forced: bool,
}

impl Svc {
    /// The displaced writers that take it back by themselves once its
    /// holder's lease is gone: they want it UP and have no deadline of
    /// their own to miss (the test checks in only for the holder).
    fn retakers(&self) -> Vec<usize> {
        self.was
            .iter()
            .copied()
            .filter(|w| Some(*w) != self.owner && self.wants.get(w) == Some(&(true, false)))
            .collect()
    }

    /// True when the holder's lease going away would leave it to a race
    /// between displaced writers, or give it to one that keeps no deadline
    /// for a record that has one: the generator avoids that.
    fn retake_hazard(&self) -> bool {
        let n = self.retakers().len();
        // Writers whose standing nobody observes may take it back too.
        let unsure = self.ever.iter().any(|w| {
            !self.was.contains(w)
                && Some(*w) != self.owner
                && self.wants.get(w) == Some(&(true, false))
        });
        self.exists
            && self.forced.is_none()
            && self.wants_up
            && (unsure || (n > 0 && (n > 1 || self.heartbeat)))
    }

    /// True when its holder's lease lost and re-granted would race with a
    /// displaced writer's check, which finds no live holder meanwhile.
    fn loss_hazard(&self) -> bool {
        self.retake_hazard()
            || (self.exists && self.forced.is_none() && !self.retakers().is_empty())
    }

    /// Another holder than `me` lives: `Some(true)` when a write by `me`
    /// (`exclusive` or not) must see it held, `Some(false)` when it may not
    /// (its owner set it DOWN itself: gate `own-down`; DOWN for a missed
    /// deadline or an operator, for a plain update: gate `displaced-down`;
    /// the Python library's DOWN), `None` without one.
    fn other_holder(&self, me: usize, exclusive: bool) -> Option<bool> {
        if !self.exists || self.owner.is_none_or(|o| o == me) {
            return None;
        }
        let up = self.forced.is_none() && self.wants_up && (!self.heartbeat || self.pulsing);
        let named = if self.owner == Some(PY) {
            self.wants_up && self.forced.is_none()
        } else if up {
            true
        } else if !self.wants_up {
            pending("own-down")
        } else {
            exclusive || pending("displaced-down")
        };
        Some(named)
    }
}

const REGIONS: [&str; 2] = ["east", "west"];

struct Model {
    svcs: Vec<Svc>,
}

impl Model {
    fn expected_up(&self, s: &Svc) -> bool {
        s.exists
            && s.forced.is_none()
            && s.owner.is_some()
            && s.wants_up
            && (!s.heartbeat || s.pulsing)
    }

    /// Why a user is told it is DOWN (`get`'s `down_reason`); `None`
    /// while UP or without a record.
    fn expected_reason(&self, s: &Svc) -> Option<DownReason> {
        if !s.exists || self.expected_up(s) {
            None
        } else if s.forced.is_some() {
            Some(DownReason::Forced)
        } else if !s.wants_up {
            Some(DownReason::Declared)
        } else if s.owner.is_some() {
            Some(DownReason::Missed)
        } else {
            Some(s.lost.unwrap_or(DownReason::Expired))
        }
    }
}

/// Why a service whose holder goes away (`how`) is DOWN from then on: a
/// deadline its owner missed before stays the reason.
fn gone(s: &mut Svc, how: DownReason) {
    s.lost = Some(if s.heartbeat && !s.pulsing {
        DownReason::Missed
    } else {
        how
    });
    s.owner = None;
}

/// The holder of `s` went away (`how`: its lease expired, it closed).
/// A client it displaced that still wants it UP and keeps no deadline takes
/// it back by itself at its next check once no live lease holds it — unless
/// an operator holds it (its DOWN key names the dead holder) or a close
/// marked its UP key. The generator avoids the cases where more than one
/// could, or where the record has a deadline ([`Svc::retake_hazard`]).
fn holder_gone(s: &mut Svc, how: DownReason) {
    let retakers = s.retakers();
    if let [r] = retakers[..] {
        if how == DownReason::Expired && s.forced.is_none() && s.wants_up && !s.heartbeat {
            s.owner = Some(r);
            s.pulsing = true;
            s.lost = None;
            s.closed_forced = false;
            return;
        }
    }
    gone(s, how);
}

/// The clients' check-ins: every 100 ms each client checks in for the
/// uuids in its set (the owner's main loop, while not stalled).
struct Pulses {
    sets: Arc<Mutex<Vec<BTreeSet<String>>>>,
    stop: Arc<AtomicBool>,
}

fn gen_step(rng: &mut Rng, model: &Model, procs: &[Option<Daemon>]) -> Step {
    let svc = rng.below(SERVICES);
    let client = rng.below(CLIENTS);
    let has_forced_window = model
        .svcs
        .iter()
        .any(|s| matches!(s.forced, Some(e) if e > 0));
    let s = &model.svcs[svc];
    let python_holds = !s.exists || s.owner == Some(PY);
    // Services another live writer (a client or the child) holds UP: where
    // two live daemons contend (finding 3).
    let contested: Vec<usize> = (0..SERVICES)
        .filter(|i| {
            let s = &model.svcs[*i];
            s.owner.is_some_and(|o| o != PY) && model.expected_up(s)
        })
        .collect();
    match rng.below(100) {
        0..=9 if !contested.is_empty() => {
            let svc = contested[rng.below(contested.len())];
            contest(rng, model, svc)
        }
        22..=27 if python_holds => Step::PythonWrite {
            svc,
            up: rng.chance(70),
        },
        26..=27 if s.exists && !s.python => Step::PythonDelete { svc },
        28..=29 if model.svcs.iter().any(|s| s.owner == Some(PY)) => Step::PythonCrash,
        0..=29 => {
            // Often a client another holder displaced (finding 3).
            let displaced: Vec<usize> = s
                .was
                .iter()
                .copied()
                .filter(|w| *w < CLIENTS && s.owner != Some(*w))
                .collect();
            let client = if !displaced.is_empty() && rng.chance(50) {
                displaced[rng.below(displaced.len())]
            } else if rng.chance(70) {
                s.owner.filter(|o| *o < CLIENTS).unwrap_or(client)
            } else {
                client
            };
            // A displaced client sometimes asks explicitly; one whose
            // standing nobody can observe always does (its plain update
            // could go either way).
            let unsure = s.ever.contains(&client) && !s.was.contains(&client);
            let take_over = unsure
                || rng.chance(if s.was.contains(&client) && s.owner != Some(client) {
                    40
                } else {
                    10
                });
            Step::Update {
                take_over,
                client,
                svc,
                up: rng.chance(80),
                with_uuid: rng.chance(50),
                beat: match rng.below(4) {
                    0 => Beat::Set,
                    1 => Beat::Remove,
                    _ => Beat::Keep,
                },
                region: rng.below(REGIONS.len()),
                // Whether the Python library's lease makes it a live
                // holder is not this test's question.
                exclusive: rng.chance(25) && s.owner != Some(PY),
            }
        }
        30..=37 => Step::Stall { svc },
        38..=45 => Step::Resume { svc },
        46..=55 => Step::OperatorDown {
            svc,
            window: rng.chance(60),
            via_owner: rng.chance(40),
        },
        56..=63 => Step::OperatorUp {
            svc,
            via_owner: rng.chance(40),
        },
        64..=67 => Step::Delete { svc },
        68..=73 if has_forced_window => Step::WindowEnds,
        // A crash costs a TTL of waiting: rarer than a spawn.
        68..=75 if procs[svc].is_some() => Step::Stall { svc },
        76..=79 if procs[svc].is_some() && !holds_hazard(model, PROC) => Step::Crash { svc },
        68..=79 => Step::Spawn {
            svc,
            exclusive: rng.chance(40) && s.owner != Some(PY),
        },
        // A holder's lease lost while a displaced client waits to take the
        // service back is a race between its re-grant and their checks.
        80..=86
            if model
                .svcs
                .iter()
                .any(|s| s.owner == Some(client) && s.loss_hazard()) =>
        {
            Step::Stall { svc }
        }
        80..=86 => Step::LoseLease {
            client,
            twice: rng.chance(50),
        },
        87..=91 if holds_hazard(model, client) => Step::Stall { svc },
        87..=91 => Step::Close { client },
        92..=97 => Step::Panic {
            task: ["lease", "owner", "watch"][rng.below(3)],
        },
        _ => Step::RestartEtcd,
    }
}

/// An update of `svc`, held UP by a live writer, by another client: one it
/// displaced (a plain update, refused, or `take_over`), or else one that
/// takes it over and so displaces the holder.
fn contest(rng: &mut Rng, model: &Model, svc: usize) -> Step {
    let s = &model.svcs[svc];
    let displaced: Vec<usize> = s
        .was
        .iter()
        .copied()
        .filter(|w| *w < CLIENTS && s.owner != Some(*w))
        .collect();
    let (client, take_over) = if !displaced.is_empty() && rng.chance(70) {
        (displaced[rng.below(displaced.len())], rng.chance(35))
    } else {
        let others: Vec<usize> = (0..CLIENTS).filter(|c| s.owner != Some(*c)).collect();
        let c = others[rng.below(others.len())];
        // One whose standing nobody can observe asks explicitly.
        (c, s.ever.contains(&c) && !s.was.contains(&c))
    };
    Step::Update {
        client,
        svc,
        up: true,
        with_uuid: rng.chance(50),
        beat: if rng.chance(30) {
            Beat::Remove
        } else {
            Beat::Keep
        },
        region: rng.below(REGIONS.len()),
        exclusive: false,
        take_over,
    }
}

/// `who` holds a service whose displaced writers would race for it, or
/// take a deadline they do not keep, once `who`'s lease is gone.
fn holds_hazard(model: &Model, who: usize) -> bool {
    model
        .svcs
        .iter()
        .any(|s| s.owner == Some(who) && s.retake_hazard())
}

/// A daemon in a child process: `oslively register`, which registers one
/// service and keeps it UP until stdin closes ("update" lines register
/// again) or it is killed.
struct Daemon {
    child: Child,
    uuid: String,
    stdin: Option<ChildStdin>,
}

impl Daemon {
    /// Starts one; `Err((exit code, stderr))` if it did not register (an
    /// `--exclusive` refusal exits 3).
    fn start(endpoints: &[String], ns: &str, args: &[&str]) -> Result<Daemon, (i32, String)> {
        let mut child = Command::new(oslively_bin())
            .args(["register", "--output", "table"])
            .args(args)
            .env("OSLIVELY_ETCD_ENDPOINTS", endpoints.join(","))
            .env("OSLIVELY_ETCD_KEY_NAMESPACE", ns)
            .env("OSLIVELY_STATUS_TTL", TTL.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn oslively register");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        let _ = stdout.read_line(&mut line);
        let Some(uuid) = line.trim().strip_prefix("uuid ").map(str::to_string) else {
            let status = child.wait().expect("wait for oslively register");
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return Err((status.code().unwrap_or(-1), err));
        };
        // Drained, so "updated" lines never fill the pipe; stderr is
        // inherited by nobody (a displaced daemon's error is expected).
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = stdout.read_to_end(&mut sink);
        });
        if let Some(mut e) = child.stderr.take() {
            std::thread::spawn(move || {
                let mut sink = Vec::new();
                let _ = e.read_to_end(&mut sink);
            });
        }
        let stdin = child.stdin.take();
        Ok(Daemon { child, uuid, stdin })
    }

    /// SIGKILL: the process dies without a word (no close, no revoke).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the original Python library writes for an update: the record
/// (encoded here by the test's own protobuf, knowing none of our fields
/// after 22), its type/host and uuid-less region keys, and the status key
/// for its status bound to its lease, the other status key deleted — so
/// its DOWN does not stick: its next UP write simply overwrites it.
fn python_update(raw: &Raw, ns: &str, svc: usize, uuid: &str, region: &str, up: bool, lease: i64) {
    let root = format!("{ns}/services");
    let host = format!("h{svc}");
    let s = oracle::pb::Service {
        uuid: uuid.to_string(),
        r#type: "t".into(),
        host: host.clone(),
        status: if up {
            oracle::pb::Status::Up as i32
        } else {
            oracle::pb::Status::Down as i32
        },
        region: region.into(),
        ..Default::default()
    };
    let (put, del) = if up { ("UP", "DOWN") } else { ("DOWN", "UP") };
    let ops = vec![
        TxnOp::put(format!("{root}/by-uuid/{uuid}"), s.encode_to_vec(), None),
        TxnOp::put(format!("{root}/by-type-host/t/{host}"), uuid, None),
        TxnOp::put(format!("{root}/by-region/{region}"), "", None),
        TxnOp::put(
            format!("{root}/by-status/{put}/{uuid}"),
            "",
            Some(PutOptions::new().with_lease(lease)),
        ),
        TxnOp::delete(format!("{root}/by-status/{del}/{uuid}"), None),
    ];
    let mut c = raw.client();
    raw.block_on(async move { c.txn(Txn::new().and_then(ops)).await })
        .expect("python-style write");
}

/// One service the sampler holds DOWN: a write that made it DOWN has
/// returned, and none that may make it UP has begun since.
#[derive(Debug, Clone, Default)]
struct Latch {
    /// Changes whenever the latch is set or cleared, so a sample that
    /// straddles a change is not judged.
    stamp: u64,
    active: bool,
    uuid: String,
    /// The end of an operator's window (wall-clock seconds): its owner
    /// lifts it then, so the latch holds only until about a second before.
    until: Option<u64>,
    since: String,
}

/// Samples readers continuously in a thread, and records every UP answer
/// for a service that must be DOWN.
struct Sampler {
    latches: Arc<Mutex<Vec<Latch>>>,
    violations: Arc<Mutex<Vec<String>>>,
    samples: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    generation: u64,
}

impl Sampler {
    /// Starts sampling `n` services with its own client and view.
    fn start(endpoints: &[String], ns: &str, n: usize) -> Sampler {
        let reader = connect(endpoints, ns, TTL);
        let view = reader.view().expect("view");
        let latches = Arc::new(Mutex::new(vec![Latch::default(); n]));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let samples = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (latches, violations, samples, stop) = (
                latches.clone(),
                violations.clone(),
                samples.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    sample(&reader, &view, &latches, &violations);
                    samples.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Sampler {
            latches,
            violations,
            samples,
            stop,
            thread: Some(thread),
            generation: 0,
        }
    }

    /// Holds service `i` DOWN from now on (the write that took it DOWN
    /// has returned).
    fn latch(&mut self, i: usize, uuid: &str, until: Option<u64>, since: &str) {
        let mut l = self.latches.lock().unwrap();
        let cur = &l[i];
        if cur.active && cur.uuid == uuid && cur.until == until {
            return;
        }
        self.generation += 1;
        l[i] = Latch {
            stamp: self.generation,
            active: true,
            uuid: uuid.to_string(),
            until,
            since: since.to_string(),
        };
    }

    /// A write that may make service `i` UP begins.
    fn clear(&mut self, i: usize) {
        let mut l = self.latches.lock().unwrap();
        if l[i].active {
            self.generation += 1;
            l[i] = Latch {
                stamp: self.generation,
                ..Latch::default()
            };
        }
    }

    fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }

    fn samples(&self) -> u64 {
        self.samples.load(Ordering::Relaxed)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One sample: every latched service read by `is_up`, a list by status,
/// and the view after `sync`; an UP answer is a violation if the latch
/// held from before the reads began until after they ended. Errors (etcd
/// restarting) are no answer.
fn sample(reader: &Client, view: &View, latches: &Mutex<Vec<Latch>>, out: &Mutex<Vec<String>>) {
    let before = latches.lock().unwrap().clone();
    let held: Vec<(usize, String)> = before
        .iter()
        .enumerate()
        .filter(|(_, l)| l.active)
        .map(|(i, l)| (i, l.uuid.clone()))
        .collect();
    if held.is_empty() {
        return;
    }
    let mut claims: Vec<(usize, &str)> = Vec::new();
    for (i, u) in &held {
        if let Ok(true) = reader.is_up(u) {
            claims.push((*i, "is_up"));
        }
    }
    if let Ok(listed) = reader.list(&Filter::all().status(Status::Up)) {
        for info in listed {
            for (i, u) in &held {
                if info.service.uuid == *u {
                    claims.push((*i, "a list of status UP"));
                }
            }
        }
    }
    if view.sync(Duration::from_secs(2)).is_ok() {
        for (i, u) in &held {
            if let Ok(true) = view.is_up(u) {
                claims.push((*i, "the view after sync"));
            }
        }
    }
    let after = latches.lock().unwrap().clone();
    let now = now_secs();
    for (i, source) in claims {
        let (b, a) = (&before[i], &after[i]);
        if a.active && a.stamp == b.stamp && a.until.is_none_or(|end| now + 2 <= end) {
            out.lock().unwrap().push(format!(
                "service {i} ({}): {source} said UP after {} had returned",
                a.uuid, a.since
            ));
        }
    }
}

/// What a subscriber was told: uuid → status and the reason of its last DOWN.
type Told = Arc<Mutex<BTreeMap<String, (Status, Option<DownReason>)>>>;

struct World {
    ns: String,
    clients: Vec<Client>,
    reader: Client,
    view: View,
    /// What the subscriber has been told: uuid → status, and the reason of
    /// the last DOWN of each uuid.
    told: Told,
    _sub: os_lively::Subscription,
    /// What a slow subscriber with a two-event queue has been told.
    slow_told: Told,
    _slow: os_lively::Subscription,
    pulses: Pulses,
    /// The clients as the pulse thread sees them (closed ones replaced).
    shared: Arc<Mutex<Vec<Client>>>,
    /// Makes the uuids the Python library's registrations get unique.
    rng_salt: u64,
    /// The Python process's lease (revoked when it crashes, then a new one).
    py_lease: i64,
    /// The daemon in a child process of each service, while it runs.
    procs: Vec<Option<Daemon>>,
    sampler: Sampler,
    /// How often the rules of interest were met, printed per case so that
    /// a change of the generator that stops reaching them shows.
    tally: BTreeMap<&'static str, usize>,
    /// Last, so it is dropped after the clients: a client dropped while its
    /// etcd is gone spends its close bound (three request timeouts) trying
    /// to revoke, which made each seed's teardown take seconds.
    etcd: Etcd,
}

impl World {
    fn start(name: &str) -> World {
        let etcd = Etcd::start();
        let ns = namespace(name);
        let clients = (0..CLIENTS)
            .map(|_| connect(&etcd.endpoints(), &ns, TTL))
            .collect::<Vec<_>>();
        let reader = connect(&etcd.endpoints(), &ns, TTL);
        let view = reader.view().unwrap();
        let told: Told = Arc::default();
        let t = told.clone();
        let sub = reader
            .subscribe_callback(
                &Filter::default(),
                &SubscribeOptions::default(),
                move |e: &Event| {
                    let mut t = t.lock().unwrap();
                    match (e.kind, e.new_status) {
                        (EventKind::Removed, _) | (_, None) => {
                            t.remove(&e.uuid);
                        }
                        (EventKind::Resync, _) => {}
                        (EventKind::Down, Some(st)) => {
                            t.insert(e.uuid.clone(), (st, e.reason));
                        }
                        (_, Some(st)) => {
                            let reason = t.get(&e.uuid).and_then(|x| x.1);
                            t.insert(e.uuid.clone(), (st, reason));
                        }
                    }
                },
            )
            .unwrap();
        // Slow, with room for two events: it falls behind on any burst and
        // catches up by resyncs (differences from snapshots of the model).
        let slow_told: Told = Arc::default();
        let t = slow_told.clone();
        let small = SubscribeOptions {
            queue_capacity: 2,
            ..Default::default()
        };
        let slow = reader
            .subscribe_callback(&Filter::default(), &small, move |e: &Event| {
                std::thread::sleep(Duration::from_millis(15));
                let mut t = t.lock().unwrap();
                match (e.kind, e.new_status) {
                    (EventKind::Resync, _) => {}
                    (EventKind::Removed, _) | (_, None) => {
                        t.remove(&e.uuid);
                    }
                    (_, Some(st)) => {
                        t.insert(e.uuid.clone(), (st, None));
                    }
                }
            })
            .unwrap();
        let pulses = Pulses {
            sets: Arc::new(Mutex::new(vec![BTreeSet::new(); CLIENTS])),
            stop: Arc::default(),
        };
        let shared = Arc::new(Mutex::new(clients.clone()));
        // Long enough for any case: the Python process keeps it alive.
        let py_lease = etcd.raw().grant(3600);
        let sampler = Sampler::start(&etcd.endpoints(), &ns, SERVICES);
        World {
            ns,
            shared,
            clients,
            reader,
            view,
            told,
            _sub: sub,
            slow_told,
            _slow: slow,
            pulses,
            rng_salt: random_u64() >> 1,
            py_lease,
            procs: (0..SERVICES).map(|_| None).collect(),
            sampler,
            tally: BTreeMap::new(),
            etcd,
        }
    }

    fn start_pulses(&self) -> std::thread::JoinHandle<()> {
        let sets = self.pulses.sets.clone();
        let stop = self.pulses.stop.clone();
        let clients = self.shared.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let sets = sets.lock().unwrap().clone();
                let clients = clients.lock().unwrap().clone();
                for (c, set) in sets.iter().enumerate() {
                    for u in set {
                        let _ = clients[c].heartbeat(u);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    }

    /// The pulse sets as the model says: each owner checks in for the
    /// services with a deadline it holds while they are not stalled.
    fn sync_pulses(&self, model: &Model) {
        let mut sets = vec![BTreeSet::new(); CLIENTS];
        for s in &model.svcs {
            if let (Some(o), Some(u)) = (s.owner, &s.uuid) {
                if s.exists && s.pulsing && o < CLIENTS {
                    sets[o].insert(u.clone());
                }
            }
        }
        *self.pulses.sets.lock().unwrap() = sets;
    }

    /// Holds every service the model says is DOWN (`since`: the write
    /// that made it so, which has returned).
    fn latch_downs(&mut self, model: &Model, since: &str) {
        for (i, s) in model.svcs.iter().enumerate() {
            let Some(u) = &s.uuid else { continue };
            if model.expected_up(s) {
                continue;
            }
            // Only a live owner lifts a window when it ends.
            let until = match s.forced {
                Some(end) if end > 0 && s.owner.is_some_and(|o| o != PY) => Some(end),
                _ => None,
            };
            self.sampler.latch(i, u, until, since);
        }
    }
}

/// What etcd holds, for failure messages: keys with their leases and
/// those leases' remaining TTLs, records decoded, and whose lease is whose.
fn dump(raw: &Raw, ns: &str, leases: &[(String, i64)]) -> String {
    let mut out = String::from("leases:");
    for (who, l) in leases {
        out += &format!(" {who} {l:x};");
    }
    out += "\nkeys:";
    for kv in raw.get_prefix(&format!("{ns}/services/")) {
        let ttl = if kv.lease != 0 {
            raw.lease_ttl(kv.lease)
        } else {
            0
        };
        let value = if kv.key.contains("/by-uuid/") {
            format!("{:?}", oracle::pb::Service::decode(kv.value.as_slice()))
        } else {
            kv.value_str()
        };
        let key = kv.key.strip_prefix(ns).unwrap_or(&kv.key);
        out += &format!("\n  {key} lease {:x} (ttl {ttl}) = {value}", kv.lease);
    }
    out
}

impl World {
    fn dump(&self) -> String {
        let mut leases: Vec<(String, i64)> = (0..CLIENTS)
            .map(|c| (format!("client {c}"), self.clients[c].stats().lease_id))
            .collect();
        leases.push(("python".into(), self.py_lease));
        dump(&self.etcd.raw(), &self.ns, &leases)
    }
}

fn replace_client(world: &mut World, i: usize) {
    let fresh = connect(&world.etcd.endpoints(), &world.ns, TTL);
    world.clients[i] = fresh.clone();
    world.shared.lock().unwrap()[i] = fresh;
}

/// What etcd holds of one service, as far as a refused write could have
/// changed it: its record's fields an update sets, its type+host key, and
/// the leases its status keys are on or name.
#[derive(Debug, PartialEq)]
struct Held {
    record: Option<(String, u64)>,
    type_host: Option<String>,
    leases: BTreeSet<i64>,
}

fn held_keys(world: &World, svc: usize, uuid: &str) -> Held {
    let raw = world.etcd.raw();
    let root = format!("{}/services", world.ns);
    let record = raw
        .get(&format!("{root}/by-uuid/{uuid}"))
        .and_then(|kv| oracle::pb::Service::decode(kv.value.as_slice()).ok())
        .map(|r| (r.region, r.heartbeat_ms));
    let mut leases = BTreeSet::new();
    for st in ["UP", "DOWN"] {
        if let Some(kv) = raw.get(&format!("{root}/by-status/{st}/{uuid}")) {
            leases.insert(kv.lease);
            if let Ok(l) = i64::from_str_radix(&kv.value_str(), 16) {
                leases.insert(l);
            }
        }
    }
    leases.remove(&0);
    Held {
        record,
        type_host: raw
            .get(&format!("{root}/by-type-host/t/h{svc}"))
            .map(|kv| kv.value_str()),
        leases,
    }
}

/// A write refused with Conflict by another live holder: the error names
/// that holder's lease as etcd's keys name it, and nothing was written —
/// the record's fields, its type+host key and no key on `mine` (the
/// refused writer's lease; 0 for a child process).
fn refused(
    world: &World,
    svc: usize,
    uuid: &str,
    mine: i64,
    before: &Held,
    err: &str,
) -> Result<(), String> {
    let after = held_keys(world, svc, uuid);
    let named = before
        .leases
        .iter()
        .chain(&after.leases)
        .any(|l| *l != mine && err.contains(&format!("{l:x}")));
    if !named {
        return Err(format!(
            "the conflict does not name the holder's lease (keys name {:x?}): {err}",
            after.leases
        ));
    }
    if mine != 0 && after.leases.contains(&mine) {
        return Err(format!(
            "refused, yet a status key is on or names the writer's lease {mine:x}"
        ));
    }
    if (&after.record, &after.type_host) != (&before.record, &before.type_host) {
        return Err(format!(
            "refused, yet wrote: before {before:?}, after {after:?}"
        ));
    }
    Ok(())
}

/// Waits until client `o`, displaced by a takeover, has counted the loss
/// (`registrations_lost` past `before`).
fn noticed(world: &World, o: usize, before: u64) -> Result<(), String> {
    if wait_until(SETTLE, || {
        world.clients[o].stats().registrations_lost > before
    }) {
        Ok(())
    } else {
        Err(format!("client {o}, displaced, never counted the loss"))
    }
}

/// Applies `step` to the real system and the model; returns the reason a
/// subscriber must see for each service the step takes from UP to DOWN.
fn apply(
    world: &mut World,
    model: &mut Model,
    step: &Step,
) -> Result<Vec<(usize, DownReason)>, String> {
    let before: Vec<bool> = model.svcs.iter().map(|s| model.expected_up(s)).collect();
    let mut why: Option<DownReason> = None;
    match step {
        Step::Update {
            client,
            svc,
            up,
            with_uuid,
            beat,
            region,
            exclusive,
            take_over,
        } => {
            let s = &model.svcs[*svc];
            let mut service = Service::new("t", &format!("h{svc}")).with_region(REGIONS[*region]);
            if *with_uuid {
                if let Some(u) = &s.uuid {
                    service = service.with_uuid(u);
                }
            }
            if !up {
                service.status = Status::Down;
            }
            service = match beat {
                Beat::Keep => service,
                Beat::Set => service.with_heartbeat(BEAT),
                Beat::Remove => service.without_heartbeat(),
            };
            if *exclusive {
                service = service.exclusive();
            }
            // A live client displaced while UP: the takeover settles only
            // when it has noticed, so that what it does next is judged from
            // its new standing.
            let displaced = s
                .owner
                .filter(|o| *o < CLIENTS && *o != *client && model.expected_up(s));
            let lost_before = displaced.map(|o| world.clients[o].stats().registrations_lost);
            // Refused while another holder lives: an exclusive registration
            // whatever the holder's phase, and a plain update of a client
            // that holder displaced (issue 30, finding 3). `Some(false)`:
            // either answer is right.
            let me_displaced = s.was.contains(client) && !take_over;
            let me_unsure = s.ever.contains(client) && !s.was.contains(client) && !take_over;
            let refuse = match s.other_holder(*client, *exclusive) {
                Some(named) if *exclusive || me_displaced => Some(named),
                Some(_) if me_unsure => Some(false),
                _ => None,
            };
            let uuid_before = s.uuid.clone().filter(|_| s.exists);
            let keys = uuid_before.as_ref().map(|u| held_keys(world, *svc, u));
            let c = &world.clients[*client];
            let r = if *take_over {
                c.take_over(&service)
            } else {
                c.update(&service)
            };
            match (refuse, &r, &uuid_before, &keys) {
                (Some(_), Err(e), Some(u), Some(keys)) if e.kind() == ErrorKind::Conflict => {
                    let mine = c.stats().lease_id;
                    refused(world, *svc, u, mine, keys, e.message())?;
                    // A holder in this process: its own lease, by name.
                    if let Some(o) = s.owner.filter(|o| *o < CLIENTS) {
                        let theirs = format!("{:x}", world.clients[o].stats().lease_id);
                        if !e.message().contains(&theirs) {
                            return Err(format!(
                                "the conflict does not name client {o}'s lease {theirs}: {e}"
                            ));
                        }
                    }
                    // The way out, for a displaced client.
                    if !*exclusive && !e.message().contains("take_over") {
                        return Err(format!("the conflict does not say take_over: {e}"));
                    }
                    let what = if *exclusive {
                        "exclusive refused"
                    } else {
                        "displaced refused"
                    };
                    *world.tally.entry(what).or_default() += 1;
                    return Ok(vec![]);
                }
                (Some(false), Ok(_), _, _) => *world.tally.entry("gated: taken").or_default() += 1,
                (None, _, _, _) => {}
                (Some(_), other, _, _) => {
                    return Err(format!(
                        "{} of client {client} (exclusive {exclusive}) while {:?} holds it (displaced: {:?}): {other:?}",
                        if *take_over { "take_over" } else { "update" },
                        s.owner,
                        s.was
                    ));
                }
            }
            let uuid = r.map_err(|e| format!("update: {e}"))?;
            if *take_over && s.owner.is_some_and(|o| o != *client) && s.exists {
                *world.tally.entry("taken over explicitly").or_default() += 1;
                // It holds it again: its UP key on this client's lease.
                if *up && s.forced.is_none() {
                    let mine = world.clients[*client].stats().lease_id;
                    let key = oracle::up_key(&world.ns, &uuid);
                    let on = world.etcd.raw().get(&key).map(|kv| kv.lease);
                    if on != Some(mine) {
                        return Err(format!(
                            "take_over by client {client}: its UP key is on {on:x?}, not {mine:x}"
                        ));
                    }
                }
            }
            if let (Some(o), Some(n)) = (displaced, lost_before) {
                noticed(world, o, n)?;
            }
            let s = &mut model.svcs[*svc];
            if let Some(u) = &s.uuid {
                if s.exists && *u != uuid {
                    return Err(format!("update returned {uuid}, the type+host is {u}"));
                }
            }
            if !s.exists {
                s.forced = None;
                s.heartbeat = false;
            }
            if s.uuid.as_deref() != Some(uuid.as_str()) {
                s.was.clear();
                s.ever.clear();
                s.wants.clear();
            }
            s.uuid = Some(uuid);
            s.exists = true;
            s.python = false;
            s.lost = None;
            s.closed_forced = false;
            s.region = REGIONS[*region];
            s.owner = Some(*client);
            s.wants_up = *up;
            match beat {
                Beat::Keep => {}
                Beat::Set => s.heartbeat = true,
                Beat::Remove => s.heartbeat = false,
            }
            s.was.insert(*client);
            s.ever.insert(*client);
            s.wants.insert(*client, (*up, s.heartbeat));
            if !up && !pending("set-down-retake") {
                // The others it displaced may see it set DOWN before they
                // see it moved: their standing is nobody's to observe.
                let others: Vec<usize> = s.was.iter().copied().filter(|w| w != client).collect();
                for w in others {
                    s.was.remove(&w);
                }
            }
            // An update is a check-in; its main loop runs.
            s.pulsing = true;
            if let Some(end) = s.forced {
                if end != 0 && end <= now_secs() {
                    s.forced = None;
                }
            }
            why = Some(DownReason::Declared);
        }
        Step::PythonWrite { svc, up } => {
            let raw = world.etcd.raw();
            let s = &model.svcs[*svc];
            let (uuid, region) = match (&s.uuid, s.exists) {
                (Some(u), true) => (u.clone(), s.region),
                _ => {
                    let u = format!("{:016x}{:016x}", world.rng_salt, *svc as u64 + 1);
                    world.rng_salt = world.rng_salt.wrapping_add(1);
                    (u, REGIONS[*svc % REGIONS.len()])
                }
            };
            if !s.exists && !up {
                // Its registration as the other tests write it (the DOWN
                // key on no lease).
                python_register(&raw, &world.ns, "t", &format!("h{svc}"), &uuid, region);
            } else {
                python_update(&raw, &world.ns, *svc, &uuid, region, *up, world.py_lease);
            }
            // The original knows no hold: its write replaces the record.
            model.svcs[*svc] = Svc {
                uuid: Some(uuid),
                exists: true,
                owner: Some(PY),
                wants_up: *up,
                region,
                python: true,
                ..Svc::default()
            };
            why = Some(DownReason::Declared);
        }
        Step::PythonCrash => {
            let raw = world.etcd.raw();
            raw.revoke(world.py_lease);
            world.py_lease = raw.grant(3600);
            for s in &mut model.svcs {
                if s.owner == Some(PY) {
                    gone(s, DownReason::Expired);
                }
            }
            why = Some(DownReason::Expired);
        }
        Step::PythonDelete { svc } => {
            let s = &mut model.svcs[*svc];
            let Some(u) = s.uuid.clone() else {
                return Ok(vec![]);
            };
            let raw = world.etcd.raw();
            let root = format!("{}/services", world.ns);
            for key in [
                format!("{root}/by-uuid/{u}"),
                format!("{root}/by-type-host/t/h{svc}"),
                format!("{root}/by-region/{}", s.region),
                format!("{root}/by-status/UP/{u}"),
                format!("{root}/by-status/DOWN/{u}"),
            ] {
                raw.delete(&key);
            }
            // The uuid is kept: the sampler and the reads go on asking.
            // Those that held it may see it deleted, or re-registered
            // under the same uuid and so moved, at a moment nobody sees.
            let ever = s.ever.union(&s.was).copied().collect();
            *s = Svc {
                uuid: Some(u),
                ever,
                ..Svc::default()
            };
            why = Some(DownReason::Deleted);
        }
        Step::Spawn { svc, exclusive } => {
            let host = format!("h{svc}");
            let region = REGIONS[*svc % REGIONS.len()];
            let mut args = vec!["--type", "t", "--host", &host, "--region", region];
            if *exclusive {
                args.push("--exclusive");
            }
            let s = &model.svcs[*svc];
            let displaced = s.owner.filter(|o| *o < CLIENTS && model.expected_up(s));
            let lost_before = displaced.map(|o| world.clients[o].stats().registrations_lost);
            let uuid_before = s.uuid.clone().filter(|_| s.exists);
            let keys = uuid_before.as_ref().map(|u| held_keys(world, *svc, u));
            let r = Daemon::start(&world.etcd.endpoints(), &world.ns, &args);
            let holder = model.svcs[*svc].other_holder(PROC, true);
            if let (true, Some(named)) = (*exclusive, holder) {
                let s = &model.svcs[*svc];
                match r {
                    Err((3, err)) => {
                        if let (Some(u), Some(keys)) = (&uuid_before, &keys) {
                            refused(world, *svc, u, 0, keys, &err)?;
                        }
                        *world.tally.entry("exclusive refused").or_default() += 1;
                        return Ok(vec![]);
                    }
                    Ok(_) if !named => {}
                    Err((code, err)) => {
                        return Err(format!(
                            "register --exclusive while {:?} holds it: exit {code}: {err}",
                            s.owner
                        ));
                    }
                    Ok(d) => {
                        return Err(format!(
                            "register --exclusive while {:?} holds it registered {}",
                            s.owner, d.uuid
                        ));
                    }
                }
            }
            let s = &mut model.svcs[*svc];
            let d = r.map_err(|(code, err)| format!("register: exit {code}: {err}"))?;
            if let (Some(o), Some(n)) = (displaced, lost_before) {
                noticed(world, o, n)?;
            }
            if s.exists && s.uuid.as_deref() != Some(d.uuid.as_str()) {
                return Err(format!(
                    "register returned {}, the type+host is {:?}",
                    d.uuid, s.uuid
                ));
            }
            if !s.exists {
                s.forced = None;
                s.heartbeat = false;
            }
            if s.uuid.as_deref() != Some(d.uuid.as_str()) {
                s.was.clear();
                s.ever.clear();
                s.wants.clear();
            }
            s.uuid = Some(d.uuid.clone());
            s.exists = true;
            s.python = false;
            s.lost = None;
            s.closed_forced = false;
            s.region = region;
            s.owner = Some(PROC);
            s.wants_up = true;
            s.was.insert(PROC);
            s.ever.insert(PROC);
            s.wants.insert(PROC, (true, s.heartbeat));
            // A deadline it keeps (the update does not mention one) is
            // missed: the child never checks in.
            s.pulsing = false;
            if let Some(end) = s.forced {
                if end != 0 && end <= now_secs() {
                    s.forced = None;
                }
            }
            world.procs[*svc] = Some(d);
            why = Some(DownReason::Missed);
        }
        Step::Crash { svc } => {
            if let Some(mut d) = world.procs[*svc].take() {
                // Its lease, as its keys name it: the UP key's, or the
                // owner its DOWN key records.
                let raw = world.etcd.raw();
                let root = format!("{}/services/by-status", world.ns);
                let lease = raw
                    .get(&format!("{root}/UP/{}", d.uuid))
                    .map(|kv| kv.lease)
                    .or_else(|| {
                        let kv = raw.get(&format!("{root}/DOWN/{}", d.uuid))?;
                        i64::from_str_radix(&kv.value_str(), 16).ok()
                    })
                    .filter(|l| {
                        *l != 0
                            && *l != world.py_lease
                            && world.clients.iter().all(|c| c.stats().lease_id != *l)
                    });
                d.kill();
                // The process is gone; its holding ends when etcd expires
                // its lease, a TTL later: what the steps after a crash see.
                if let Some(l) = lease {
                    if !wait_until(SETTLE, || raw.lease_ttl(l) < 0) {
                        return Err(format!("the crashed child's lease {l:x} lives on"));
                    }
                }
            }
            let s = &mut model.svcs[*svc];
            s.was.remove(&PROC);
            s.ever.remove(&PROC);
            s.wants.remove(&PROC);
            if s.owner == Some(PROC) {
                holder_gone(s, DownReason::Expired);
                if s.owner.is_some() {
                    *world.tally.entry("retaken by itself").or_default() += 1;
                }
            }
            why = Some(DownReason::Expired);
        }
        Step::Stall { svc } => {
            model.svcs[*svc].pulsing = false;
            why = Some(DownReason::Missed);
        }
        Step::Resume { svc } => {
            let s = &mut model.svcs[*svc];
            // Only a client's main loop checks in.
            if s.owner.is_none_or(|o| o < CLIENTS) {
                s.pulsing = true;
            }
        }
        Step::OperatorDown {
            svc,
            window,
            via_owner,
        } => {
            let s = &mut model.svcs[*svc];
            let end = if *window { now_secs() + 2 } else { 0 };
            let who = match s.owner {
                Some(o) if *via_owner && o < CLIENTS => &world.clients[o],
                _ => &world.reader,
            };
            let r = match &s.uuid {
                Some(u) => who.down(u, "model", 0, end),
                None => return Ok(vec![]),
            };
            match r {
                Ok(()) if s.exists => {
                    s.forced = Some(end);
                    // The DOWN key's closed mark is rewritten: gate
                    // `closed-reason`.
                    s.closed_forced |= s.owner.is_none() && s.lost == Some(DownReason::Closed);
                }
                Err(e) if !s.exists && e.kind() == ErrorKind::NotFound => {}
                other => return Err(format!("down: {other:?} (exists: {})", s.exists)),
            }
            why = Some(DownReason::Forced);
        }
        Step::OperatorUp { svc, via_owner } => {
            let s = &mut model.svcs[*svc];
            let Some(u) = &s.uuid else { return Ok(vec![]) };
            let who = match s.owner {
                Some(o) if *via_owner && o < CLIENTS => &world.clients[o],
                _ => &world.reader,
            };
            match who.up(u) {
                Ok(()) if s.exists => s.forced = None,
                Err(e) if !s.exists && e.kind() == ErrorKind::NotFound => {}
                other => return Err(format!("up: {other:?} (exists: {})", s.exists)),
            }
        }
        Step::Delete { svc } => {
            let s = &mut model.svcs[*svc];
            let Some(u) = s.uuid.clone() else {
                return Ok(vec![]);
            };
            let deleted = world
                .reader
                .delete(&u)
                .map_err(|e| format!("delete: {e}"))?;
            if deleted != s.exists {
                return Err(format!(
                    "delete said {deleted}, model says exists {}",
                    s.exists
                ));
            }
            // Those that held it may see it deleted, or re-registered
            // under the same uuid and so moved, at a moment nobody sees.
            let ever = s.ever.union(&s.was).copied().collect();
            *s = Svc {
                uuid: Some(u),
                ever,
                ..Svc::default()
            };
            why = Some(DownReason::Deleted);
        }
        Step::WindowEnds => {
            let last = model
                .svcs
                .iter()
                .filter_map(|s| s.forced.filter(|e| *e > 0))
                .max()
                .unwrap_or(0);
            while now_secs() < last {
                std::thread::sleep(Duration::from_millis(100));
            }
            // What the owners do then is in `lift_due`.
        }
        Step::LoseLease { client, twice } => {
            let raw = world.etcd.raw();
            let lease = world.clients[*client].stats().lease_id;
            // A lease revoked by the step before may still be the one the
            // client reports (it has not noticed yet): already gone is fine.
            let revoke = |l: i64| {
                let mut c = raw.client();
                let _ = raw.block_on(async move { c.lease_revoke(l).await });
            };
            if lease != 0 {
                revoke(lease);
                let next = || {
                    let l = world.clients[*client].stats().lease_id;
                    (l != 0 && l != lease).then_some(l)
                };
                if *twice && wait_until(Duration::from_secs(3), || next().is_some()) {
                    if let Some(l) = next() {
                        revoke(l);
                    }
                }
            }
            // Comes back by itself: the model does not change. Settled once
            // the client's keys name its new lease: until then a service it
            // holds DOWN (forced, missed) names a dead lease, and an
            // `exclusive` registration rightly finds no live holder.
            let root = format!("{}/services/by-status", world.ns);
            let rebound = || {
                let cur = world.clients[*client].stats().lease_id;
                let alive = || cur != 0 && raw.lease_ttl(cur) > 0;
                // UP on it, or DOWN naming it (a window may end meanwhile).
                let names = |u: &str| {
                    raw.get(&format!("{root}/UP/{u}")).map(|kv| kv.lease) == Some(cur)
                        || raw
                            .get(&format!("{root}/DOWN/{u}"))
                            .map(|kv| kv.value_str())
                            == Some(format!("{cur:x}"))
                };
                model.svcs.iter().all(|s| match (&s.uuid, s.owner) {
                    (Some(u), Some(o)) if s.exists && o == *client && s.wants_up => {
                        alive() && names(u)
                    }
                    _ => true,
                })
            };
            if !wait_until(SETTLE, rebound) {
                return Err(format!(
                    "client {client}'s services never named its new lease after the loss: {:?}",
                    model
                        .svcs
                        .iter()
                        .map(|s| (s.owner, &s.was, &s.ever, &s.wants))
                        .collect::<Vec<_>>()
                ));
            }
        }
        Step::Close { client } => {
            world.clients[*client]
                .clone()
                .close()
                .map_err(|e| format!("close: {e}"))?;
            for s in &mut model.svcs {
                if s.owner == Some(*client) {
                    holder_gone(s, DownReason::Closed);
                }
                // A new client takes its place: it never held anything.
                s.was.remove(client);
                s.ever.remove(client);
                s.wants.remove(client);
            }
            replace_client(world, *client);
            why = Some(DownReason::Closed);
        }
        Step::RestartEtcd => world.etcd.restart(),
        Step::Panic { task } => os_lively::inject_panic(task),
    }
    world.sync_pulses(model);
    let mut reasons = Vec::new();
    for (i, s) in model.svcs.iter().enumerate() {
        if before[i] && !model.expected_up(s) && s.exists {
            if let Some(r) = why {
                reasons.push((i, r));
            }
        }
    }
    Ok(reasons)
}

/// A window that has ended is lifted by the owner's live client (nobody
/// else lifts it, and the Python library knows no windows): what a user
/// should see from then on.
fn lift_due(model: &mut Model) {
    let now = now_secs();
    for s in &mut model.svcs {
        if matches!(s.forced, Some(e) if e > 0 && e <= now) && s.owner.is_some_and(|o| o != PY) {
            s.forced = None;
        }
    }
}

/// Waits until every reader agrees with the model; the disagreement if
/// they do not within [`SETTLE`].
fn settled(
    world: &World,
    model: &mut Model,
    reasons: &[(usize, DownReason)],
) -> Result<(), String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        lift_due(model);
        match disagreement(world, model, reasons) {
            None => return Ok(()),
            Some(d) if Instant::now() >= deadline => return Err(d),
            Some(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Which of the model's services (by index) a list's filter passes.
type Keep<'a> = Box<dyn Fn(usize, &Svc) -> bool + 'a>;

/// `uuid → up` of a list, or why the list failed.
fn listed(
    found: os_lively::Result<Vec<os_lively::ServiceInfo>>,
    what: &str,
) -> Result<BTreeMap<String, bool>, String> {
    match found {
        Ok(found) => Ok(found.into_iter().map(|i| (i.service.uuid, i.up)).collect()),
        Err(e) => Err(format!("{what} failed: {e}")),
    }
}

fn disagreement(world: &World, model: &Model, reasons: &[(usize, DownReason)]) -> Option<String> {
    let told = world.told.lock().unwrap().clone();
    let slow_told = world.slow_told.lock().unwrap().clone();
    for (i, s) in model.svcs.iter().enumerate() {
        let Some(uuid) = &s.uuid else { continue };
        let want = model.expected_up(s);
        let is_up = match world.reader.is_up(uuid) {
            Ok(v) => v,
            Err(e) => return Some(format!("service {i}: is_up failed: {e}")),
        };
        if is_up != want {
            return Some(format!("service {i}: is_up {is_up}, model {want} ({s:?})"));
        }
        match world.reader.get(uuid) {
            Ok(Some(info)) if s.exists && info.up == want => {
                if info.service.forced_down != s.forced.is_some() {
                    return Some(format!(
                        "service {i}: get says forced_down {}, model {:?}",
                        info.service.forced_down, s.forced
                    ));
                }
                let reason = model.expected_reason(s);
                let closed_as_expired = s.closed_forced
                    && !pending("closed-reason")
                    && reason == Some(DownReason::Closed)
                    && info.down_reason() == Some(DownReason::Expired);
                if info.down_reason() != reason && !closed_as_expired {
                    return Some(format!(
                        "service {i}: get says DOWN for {:?}, model {reason:?} ({s:?})",
                        info.down_reason()
                    ));
                }
            }
            Ok(None) if !s.exists => {}
            other => return Some(format!("service {i}: get {other:?}, model {s:?}")),
        }
        match world.view.is_up(uuid) {
            Ok(v) if v == want => {}
            other => return Some(format!("service {i}: view.is_up {other:?}, model {want}")),
        }
        let heard = told.get(uuid).map(|(st, _)| *st);
        let expect = s
            .exists
            .then_some(if want { Status::Up } else { Status::Down });
        if heard != expect {
            return Some(format!(
                "service {i}: the subscriber was told {heard:?}, model {expect:?}"
            ));
        }
        let slow = slow_told.get(uuid).map(|(st, _)| *st);
        if slow != expect {
            return Some(format!(
                "service {i}: the slow subscriber was told {slow:?}, model {expect:?}"
            ));
        }
    }
    // Lists by region, type, host and effective status, each against the
    // model's services that pass the same filter.
    let mut filters: Vec<(String, Filter, Keep<'_>)> = Vec::new();
    for region in REGIONS {
        filters.push((
            format!("region {region}"),
            Filter::all().region(region),
            Box::new(move |_, s: &Svc| s.region == region),
        ));
    }
    filters.push((
        "type t".into(),
        Filter::all().service_type("t"),
        Box::new(|_, _| true),
    ));
    for h in 0..SERVICES {
        filters.push((
            format!("host h{h}"),
            Filter::all().host(&format!("h{h}")),
            Box::new(move |i, _| i == h),
        ));
    }
    for (st, up) in [(Status::Up, true), (Status::Down, false)] {
        filters.push((
            format!("type t, status {st:?}"),
            Filter::all().service_type("t").status(st),
            Box::new(move |_, s: &Svc| model.expected_up(s) == up),
        ));
    }
    for (what, filter, keep) in &filters {
        let expected: BTreeMap<String, bool> = model
            .svcs
            .iter()
            .enumerate()
            .filter(|(i, s)| s.exists && keep(*i, s))
            .filter_map(|(_, s)| Some((s.uuid.clone()?, model.expected_up(s))))
            .collect();
        for (who, found) in [
            ("list", world.reader.list(filter)),
            ("the view's list", world.view.list(filter)),
        ] {
            let what = format!("{who} of {what}");
            match listed(found, &what) {
                Ok(got) if got == expected => {}
                Ok(got) => return Some(format!("{what}: {got:?}, model {expected:?}")),
                Err(e) => return Some(e),
            }
        }
    }
    for (i, r) in reasons {
        let Some(uuid) = &model.svcs[*i].uuid else {
            continue;
        };
        let said = told.get(uuid).and_then(|(_, r)| *r);
        if said != Some(*r) {
            return Some(format!(
                "service {i}: the subscriber's DOWN said {said:?}, expected {r:?}"
            ));
        }
    }
    None
}

fn run_case(seed: u64, steps: usize) {
    let mut world = World::start(&format!("model{seed}"));
    let pulse = world.start_pulses();
    let mut model = Model {
        svcs: vec![Svc::default(); SERVICES],
    };
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut done: Vec<Step> = Vec::new();
    let mut restarted = false;
    let started = Instant::now();
    let mut time_by_kind: BTreeMap<String, Duration> = BTreeMap::new();
    let fail = |world: &World, done: &[Step], d: String| -> ! {
        world.pulses.stop.store(true, Ordering::Relaxed);
        let state = if world.etcd.is_running() {
            world.dump()
        } else {
            String::new()
        };
        panic!(
            "seed {seed}: disagreement after {} steps: {d}\nsteps: {done:#?}\n{state}",
            done.len()
        );
    };
    for _ in 0..steps {
        let mut step = gen_step(&mut rng, &model, &world.procs);
        if matches!(step, Step::RestartEtcd) {
            if restarted {
                step = Step::Resume {
                    svc: rng.below(SERVICES),
                };
            }
            restarted = true;
        }
        done.push(step.clone());
        if std::env::var_os("OSLIVELY_MODEL_LOG").is_some() {
            eprintln!("{:?} STEP {step:?}", Instant::now());
        }
        for i in step.may_raise() {
            world.sampler.clear(i);
        }
        let label = format!("step {} ({step:?})", done.len());
        let began = Instant::now();
        let outcome = apply(&mut world, &mut model, &step).and_then(|reasons| {
            if step.downs_when_it_returns() {
                world.latch_downs(&model, &label);
            }
            settled(&world, &mut model, &reasons)
        });
        if let Err(d) = outcome {
            fail(&world, &done, d);
        }
        let kind = format!("{step:?}");
        let kind = kind.split([' ', '{']).next().unwrap_or("").to_string();
        *time_by_kind.entry(kind).or_default() += began.elapsed();
        world.latch_downs(&model, &format!("{label}, settled"));
        let v = world.sampler.violations();
        if !v.is_empty() {
            fail(&world, &done, format!("invariant: {v:#?}"));
        }
    }
    world.pulses.stop.store(true, Ordering::Relaxed);
    let _ = pulse.join();
    let mut slowest: Vec<_> = time_by_kind.into_iter().collect();
    slowest.sort_by_key(|(_, d)| std::cmp::Reverse(*d));
    slowest.truncate(4);
    eprintln!(
        "model: seed {seed}: {steps} steps, 0 disagreements, {} invariant samples, {} ms (most: {slowest:?}; {:?})",
        world.sampler.samples(),
        started.elapsed().as_millis(),
        world.tally
    );
}

/// Seeds chosen once and kept, so CI runs the same sequences every time.
const CI_SEEDS: [u64; 6] = [1, 2, 3, 4, 5, 6];

struct StderrLog;
impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        eprintln!("{:?} {} {}", Instant::now(), r.level(), r.args());
    }
    fn flush(&self) {}
}

fn env_num(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn random_sequences_across_features_match_the_model() {
    if std::env::var_os("OSLIVELY_MODEL_LOG").is_some() {
        let _ = log::set_logger(&StderrLog);
        log::set_max_level(log::LevelFilter::Trace);
    }
    let steps = env_num("OSLIVELY_MODEL_STEPS").unwrap_or(40) as usize;
    if let Some(seed) = env_num("OSLIVELY_MODEL_SEED") {
        run_case(seed, steps);
        return;
    }
    for seed in CI_SEEDS {
        run_case(seed, steps);
    }
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    for i in 0..env_num("OSLIVELY_MODEL_CASES").unwrap_or(0) {
        let seed = base.wrapping_add(i);
        eprintln!("model: extra case, seed {seed}");
        run_case(seed, steps);
    }
}

/// Events one subscriber heard, in order: kind and reason.
type Heard = Arc<Mutex<Vec<(EventKind, Option<DownReason>)>>>;

/// The last UP or DOWN event heard, with its reason.
fn last_flip(heard: &Heard) -> Option<(EventKind, Option<DownReason>)> {
    heard
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(k, _)| matches!(k, EventKind::Up | EventKind::Down))
        .copied()
}

/// The steps of a concurrent scenario so far, to print with a failure.
struct Script {
    name: String,
    done: Vec<String>,
    started: Instant,
}

impl Script {
    fn step(&mut self, what: impl Into<String>) {
        let what = what.into();
        if std::env::var_os("OSLIVELY_MODEL_LOG").is_some() {
            eprintln!("{:?} {}: {what}", Instant::now(), self.name);
        }
        self.done.push(format!(
            "{:>6} ms  {what}",
            self.started.elapsed().as_millis()
        ));
    }

    #[track_caller]
    fn check(&self, ok: bool, what: impl std::fmt::Display) {
        if !ok {
            panic!("{}: {what}\nsteps:\n{}", self.name, self.done.join("\n"));
        }
    }
}

/// What one `update` said: the uuid, or the error's kind and message.
type Answer = Result<String, (ErrorKind, String)>;

/// Calls `update` on an interval from a thread, as the original's users
/// did, and keeps every answer.
struct Updater {
    answers: Arc<Mutex<Vec<Answer>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Updater {
    fn start(client: &Client, service: Service, every: Duration) -> Updater {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (client, answers, stop) = (client.clone(), answers.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = client
                        .update(&service)
                        .map_err(|e| (e.kind(), e.message().to_string()));
                    answers.lock().unwrap().push(r);
                    std::thread::sleep(every);
                }
            })
        };
        Updater {
            answers,
            stop,
            thread: Some(thread),
        }
    }

    fn answers(&self) -> Vec<Answer> {
        self.answers.lock().unwrap().clone()
    }

    fn finish(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Updater {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Feeds "update" lines to a child daemon on an interval (it registers
/// again on each), until stopped or the child is gone.
fn feed(mut stdin: ChildStdin, every: Duration, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if stdin
                .write_all(b"update\n")
                .and_then(|_| stdin.flush())
                .is_err()
            {
                return;
            }
            std::thread::sleep(every);
        }
    });
}

/// Two daemons on one type+host updating on intervals — one in this
/// process (client `a`), one a child process (`oslively register`, fed
/// "update" lines) — operators forcing it DOWN and lifting it (with and
/// without a window, from a reader and through a daemon's own client)
/// while both write, then a crash of the child (SIGKILL) and a clean close
/// of the survivor; every sample of the readers meanwhile keeps the
/// invariant. With `exclusive`, the second registrant is refused while the
/// first lives (its lease, whatever its phase), and takes over only after
/// the crash.
fn contend(seed: u64, exclusive: bool) {
    const EVERY: Duration = Duration::from_millis(200);
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut sc = Script {
        name: format!("contend seed {seed} (exclusive: {exclusive})"),
        done: Vec::new(),
        started: Instant::now(),
    };
    let etcd = Etcd::start();
    let raw = etcd.raw();
    let eps = etcd.endpoints();
    let ns = namespace(&format!("contend{seed}"));
    let reader = connect(&eps, &ns, TTL);
    let mut sampler = Sampler::start(&eps, &ns, 1);
    let heard: Heard = Arc::default();
    let h = heard.clone();
    let _sub = reader
        .subscribe_callback(
            &Filter::all().service_type("t").host("hc"),
            &SubscribeOptions::default(),
            move |e: &Event| h.lock().unwrap().push((e.kind, e.reason)),
        )
        .unwrap();
    let a = connect(&eps, &ns, TTL);
    let mut service = Service::new("t", "hc").with_region("east");
    let mut args = vec!["--type", "t", "--host", "hc", "--region", "east"];
    if exclusive {
        service = service.exclusive();
        args.push("--exclusive");
    }
    let dump = |a: &Client| dump(&raw, &ns, &[("a".to_string(), a.stats().lease_id)]);
    let up_lease = |uuid: &str| {
        raw.get(&oracle::up_key(&ns, uuid))
            .map(|kv| kv.lease)
            .unwrap_or(0)
    };

    // Who registers first: the in-process daemon, or (exclusive) the child,
    // so that the child's crash is the holder's.
    let (uuid, mut b) = if exclusive {
        sc.step("child registers --exclusive");
        let b = Daemon::start(&eps, &ns, &args).expect("the first exclusive registrant");
        sc.step("a: update, exclusive");
        let r = a.update(&service);
        sc.check(
            matches!(&r, Err(e) if e.kind() == ErrorKind::Conflict),
            format!("a second exclusive registrant while the first lives: {r:?}"),
        );
        (b.uuid.clone(), b)
    } else {
        sc.step("a: update");
        let uuid = a.update(&service).expect("a registers");
        sc.step("child registers (takes it over)");
        let b = Daemon::start(&eps, &ns, &args).expect("the child registers");
        sc.check(
            b.uuid == uuid,
            format!("the child got {}, a {uuid}", b.uuid),
        );
        (uuid, b)
    };
    let service = service.with_uuid(&uuid);
    sc.check(
        wait_until(SETTLE, || {
            reader.is_up(&uuid).unwrap_or(false) && up_lease(&uuid) != a.stats().lease_id
        }),
        "UP, held by the child",
    );
    if !exclusive {
        // a learns it was displaced at its next check: from then on an
        // operator acting through a's client acts for another's service.
        sc.check(
            wait_until(SETTLE, || a.stats().registrations_lost > 0),
            "a counts the loss",
        );
    }
    let moved_before = heard
        .lock()
        .unwrap()
        .iter()
        .filter(|e| *e == &(EventKind::Updated, Some(DownReason::Moved)))
        .count();
    let lost_before = a.stats().registrations_lost;
    sc.step("both update every 200 ms");
    let mut updater = Updater::start(&a, service.clone(), EVERY);
    let stop_feed = Arc::new(AtomicBool::new(false));
    feed(b.stdin.take().expect("stdin"), EVERY, stop_feed.clone());

    for round in 0..3 {
        let window = rng.chance(50);
        let end = if window { now_secs() + 2 } else { 0 };
        // Through a's client while a does not hold it: on today's code a
        // client that forced down and lifted a service another live
        // process holds exclusively keeps refusing its own exclusive
        // update after that holder crashed ("held by another live client"
        // naming the dead lease, with no key on it left): gate
        // `operator-exclusive`.
        let via_a = rng.chance(50) && (!exclusive || pending("operator-exclusive"));
        sc.step(format!(
            "round {round}: down (window: {window}, through a's client: {via_a})"
        ));
        let who = if via_a { &a } else { &reader };
        let r = who.down(&uuid, "contend", 0, end);
        sc.check(r.is_ok(), format!("down: {r:?}"));
        sampler.latch(
            0,
            &uuid,
            window.then_some(end),
            &format!("round {round}: down"),
        );
        sc.check(
            wait_until(SETTLE, || {
                matches!(reader.get(&uuid), Ok(Some(i)) if i.down_reason() == Some(DownReason::Forced))
                    && last_flip(&heard) == Some((EventKind::Down, Some(DownReason::Forced)))
            }),
            format!(
                "DOWN (forced) for readers and the subscriber: get {:?}, heard {:?}",
                reader.get(&uuid).map(|i| i.map(|i| i.down_reason())),
                last_flip(&heard)
            ),
        );
        // The daemons go on writing while it is held; the sampler watches.
        let hold = Duration::from_millis(300 + rng.below(600) as u64);
        std::thread::sleep(hold);
        if window {
            sc.step("waiting for the window's end");
            while now_secs() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
        } else {
            let via_a = rng.chance(50) && (!exclusive || pending("operator-exclusive"));
            sc.step(format!("up (through a's client: {via_a})"));
            sampler.clear(0);
            let who = if via_a { &a } else { &reader };
            let r = who.up(&uuid);
            sc.check(r.is_ok(), format!("up: {r:?}"));
        }
        sc.check(
            wait_until(SETTLE, || {
                reader.is_up(&uuid).unwrap_or(false)
                    && last_flip(&heard) == Some((EventKind::Up, Some(DownReason::Lifted)))
            }),
            format!(
                "UP again (lifted): is_up {:?}, heard {:?}",
                reader.is_up(&uuid),
                last_flip(&heard)
            ),
        );
        sampler.clear(0);
    }
    if exclusive {
        sc.step("a third registrant, exclusive");
        let r = Daemon::start(&eps, &ns, &args);
        sc.check(
            matches!(r, Err((3, _))),
            format!(
                "a third exclusive registrant exits 3: {:?}",
                r.as_ref().map(|d| &d.uuid)
            ),
        );
        let answers = updater.answers();
        sc.check(
            answers
                .iter()
                .all(|r| matches!(r, Err((ErrorKind::Conflict, _)))),
            format!("every exclusive update of a refused while the child lives: {answers:?}"),
        );
    }
    // An operator's window, during which a's plain update retakes it, is
    // in every round: gate `displaced-down`.
    if exclusive || pending("displaced-down") {
        // Issue 30, finding 3: two live holders flip at most once, and the
        // displaced one learns it from its next update (an error naming
        // the holder) instead of taking it back.
        let moved = heard
            .lock()
            .unwrap()
            .iter()
            .filter(|e| *e == &(EventKind::Updated, Some(DownReason::Moved)))
            .count();
        sc.check(
            moved - moved_before <= 1,
            format!("{} moved events while both lived", moved - moved_before),
        );
        let lost = a.stats().registrations_lost - lost_before;
        sc.check(lost <= 1, format!("a lost it {lost} times"));
        let answers = updater.answers();
        sc.check(
            answers
                .iter()
                .skip(1)
                .all(|r| matches!(r, Err((ErrorKind::Conflict, _)))),
            format!("a's updates after it was displaced: {answers:?}"),
        );
    }

    sc.step("the child is killed (SIGKILL)");
    let heard_before = heard.lock().unwrap().len();
    b.kill();
    // The survivor, alive and updating, holds it within a TTL or so.
    sc.check(
        wait_until(SETTLE, || {
            reader.is_up(&uuid).unwrap_or(false) && up_lease(&uuid) == a.stats().lease_id
        }),
        format!(
            "UP on a's lease after the holder crashed: is_up {:?}, a's answers {:?}\n{}",
            reader.is_up(&uuid),
            updater.answers().iter().rev().take(3).collect::<Vec<_>>(),
            dump(&a)
        ),
    );
    let downs: Vec<_> = heard.lock().unwrap()[heard_before..]
        .iter()
        .filter(|(k, _)| *k == EventKind::Down)
        .copied()
        .collect();
    sc.check(
        downs
            .iter()
            .all(|e| *e == (EventKind::Down, Some(DownReason::Expired))),
        format!("a DOWN after a crash is expired: {downs:?}"),
    );
    sc.step("a closes");
    stop_feed.store(true, Ordering::Relaxed);
    updater.finish();
    let r = a.clone().close();
    sc.check(r.is_ok(), format!("close: {r:?}"));
    sampler.latch(0, &uuid, None, "a's close");
    sc.check(
        wait_until(SETTLE, || {
            matches!(reader.get(&uuid), Ok(Some(i)) if i.down_reason() == Some(DownReason::Closed))
                && last_flip(&heard) == Some((EventKind::Down, Some(DownReason::Closed)))
        }),
        format!(
            "DOWN (closed): get {:?}, heard {:?}",
            reader.get(&uuid).map(|i| i.map(|i| i.down_reason())),
            last_flip(&heard)
        ),
    );
    let v = sampler.violations();
    sc.check(v.is_empty(), format!("invariant: {v:#?}"));
    eprintln!(
        "model: {}: {} invariant samples, {} ms",
        sc.name,
        sampler.samples(),
        sc.started.elapsed().as_millis()
    );
}

#[test]
fn two_daemons_on_one_type_host_operators_and_a_crash_keep_the_invariant() {
    contend(1, false);
    contend(2, true);
    for i in 0..env_num("OSLIVELY_MODEL_CASES").unwrap_or(0) {
        let seed = random_u64();
        eprintln!("model: extra contend case, seed {seed}");
        contend(seed, i % 2 == 1);
    }
}

/// The defect that the model found first, as a plain sequence: a service
/// with a heartbeat deadline misses it, an operator forces it down with a
/// window, check-ins resume, the window ends: it must be UP again.
#[test]
fn heartbeat_then_maintenance_then_window_end_is_up_again() {
    let etcd = Etcd::start();
    let ns = namespace("hbmaint");
    let owner = connect(&etcd.endpoints(), &ns, TTL);
    let operator = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = owner
        .update(&Service::new("t", "h").with_heartbeat(BEAT))
        .unwrap();
    assert!(
        wait_until(BEAT * 4, || !operator.is_up(&uuid).unwrap()),
        "no check-in: DOWN (missed)"
    );
    operator.down(&uuid, "fix", 0, now_secs() + 2).unwrap();
    // Check-ins resume while it is held.
    let stop = Arc::new(AtomicBool::new(false));
    let beat = {
        let (owner, uuid, stop) = (owner.clone(), uuid.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                owner.heartbeat(&uuid).unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    assert!(!operator.is_up(&uuid).unwrap(), "held DOWN by the operator");
    assert!(
        wait_until(Duration::from_secs(6), || operator.is_up(&uuid).unwrap()),
        "UP again when the window ends"
    );
    stop.store(true, Ordering::Relaxed);
    beat.join().unwrap();
}
