//! Background tasks that never die silently.
//!
//! The runtime's long-lived tasks (the lease's keepalives, the owner's
//! timer, the shared watch, endpoint steering) are spawned with nobody
//! awaiting them: a panic in one would end it with no error to anyone, and
//! the client would go on answering from a lease nobody renews or a model
//! nobody updates. So each runs under a supervisor that catches the panic,
//! logs it, counts it and starts the task again; a task that keeps
//! panicking is given up, and from then on every call fails and every view
//! read says Stale, naming the task — a loud failure instead of a frozen
//! answer. Short one-shot tasks are spawned through [`spawn_logged`], so
//! their panics are logged and counted too.
//!
//! Two quieter ways to stop are treated the same. A task that *returns*
//! while its client is not closing (its [`Terms`] say when a return is its
//! normal end) is logged and restarted, with a delay that doubles with each
//! failure in a row. A task that *hangs* (awaits something that never
//! comes) is noticed by its pace: a task with one is woken at least that
//! often once it has passed its loop's checkpoint (the lease by its
//! keepalive timer, the watch by its quiet-period timer), and every wake is
//! counted. The count is compared, with no timer of its own, where work
//! happens anyway: at each checkpoint of the client's other tasks and at
//! every call (on the caller's thread, so a runtime thread stuck in a
//! blocking call is noticed too). A task found silent longer than its pace
//! gets 100 ms to show it runs (a runtime stalled with its whole process,
//! stopped or suspended, runs its overdue timers at once when it runs
//! again); still silent, it fails the call with an error naming it (a
//! caller off any tokio runtime) and is aborted and restarted (as after a
//! panic: restarting the lease or the watch is safe at any await).
//! An idle client costs nothing more: a count per wake, no extra wakeup.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result};

/// A task that fails (panics, returns or hangs) this many times within
/// [`WINDOW`] is given up.
const MAX_PANICS: usize = 5;
const WINDOW: Duration = Duration::from_secs(60);
/// How long a task found silent may take to show it runs before it is
/// called hung: a runtime stalled with its whole process (stopped,
/// suspended) runs its overdue timers at once when it runs again.
const CONFIRM: Duration = Duration::from_millis(100);
/// Pause before the first restart in a row, doubled for each further one,
/// so a task that fails at once does not spin.
const RESTART_DELAY: Duration = Duration::from_millis(100);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(5);

/// What the supervisor knows of a task beyond its name.
pub(crate) struct Terms {
    /// True when the task's return is its normal end (its client is
    /// closing). Asked in the task itself, right as it returns, so nothing
    /// can change the answer in between.
    ended: Arc<dyn Fn() -> bool + Send + Sync>,
    /// The longest the task may go without being woken once it passed its
    /// checkpoint; `None`: it may wait for events indefinitely.
    pace: Option<Duration>,
}

impl Terms {
    /// A task that never ends by itself: any return is a failure.
    pub(crate) fn endless() -> Terms {
        Terms::until(|| false)
    }

    /// A task whose return is its normal end while `ended()` says so.
    pub(crate) fn until(ended: impl Fn() -> bool + Send + Sync + 'static) -> Terms {
        Terms {
            ended: Arc::new(ended),
            pace: None,
        }
    }

    /// The task is woken at least every `pace` once it passed its
    /// checkpoint: silent longer, it is hung.
    pub(crate) fn pace(mut self, pace: Duration) -> Terms {
        self.pace = Some(pace);
        self
    }
}

/// One paced task's signs of life, shared by its supervisor, the task
/// itself (through [`WATCHED`]) and whoever checks it.
struct Pulse {
    name: &'static str,
    pace: Duration,
    /// Times the task was polled (its current run).
    polls: AtomicU64,
    /// Passed its checkpoint since it was (re)started: from then on it
    /// keeps its pace.
    armed: AtomicBool,
    /// `polls` as a check last saw it, and when (ns after `Health::base`)
    /// a check saw it change.
    seen: AtomicU64,
    seen_at: AtomicU64,
    /// The run a restart was asked for (runs are numbered from 1), once per
    /// hang.
    restart_run: AtomicU64,
    /// `polls` when the restart was asked for.
    asked_polls: AtomicU64,
    run: AtomicU64,
    restart: Notify,
    /// Test hooks: stop polling the task (it hangs) or end it (it returns).
    frozen: AtomicBool,
    returning: AtomicBool,
}

impl Pulse {
    /// Asks the task's supervisor, once per hang, to confirm it and restart
    /// the task.
    fn request_restart(&self, quiet: Duration, polls: u64) {
        let run = self.run.load(Ordering::Acquire);
        if self.restart_run.swap(run, Ordering::AcqRel) != run {
            self.asked_polls.store(polls, Ordering::Release);
            log::warn!(
                "os-lively: background task {} has not run for {quiet:.1?} (it runs at least every {:?}): checking whether it hangs",
                self.name,
                self.pace
            );
            self.restart.notify_one();
        }
    }

    /// The task was found silent for longer than its pace: how long.
    fn silent_for(&self, now: u64) -> Option<Duration> {
        if !self.armed.load(Ordering::Acquire) {
            return None;
        }
        let polls = self.polls.load(Ordering::Relaxed);
        if self.seen.swap(polls, Ordering::AcqRel) != polls {
            self.seen_at.store(now, Ordering::Release);
            return None;
        }
        let quiet = Duration::from_nanos(now.saturating_sub(self.seen_at.load(Ordering::Acquire)));
        (quiet > self.pace).then_some(quiet)
    }
}

tokio::task_local! {
    /// The pulse of the supervised task being polled, for [`checkpoint`].
    static WATCHED: (Arc<Pulse>, Arc<Health>);
}

/// Whether the client's background tasks are all running.
pub(crate) struct Health {
    panics: AtomicU64,
    /// Set once, when a task was given up: why.
    failed: OnceLock<String>,
    /// The paced tasks.
    pulses: Mutex<Vec<Arc<Pulse>>>,
    base: std::time::Instant,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            panics: AtomicU64::new(0),
            failed: OnceLock::new(),
            pulses: Mutex::new(Vec::new()),
            base: std::time::Instant::now(),
        }
    }
}

impl Health {
    /// Panics caught in background tasks so far.
    pub(crate) fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// `Err` once a background task was given up, or while one is hung
    /// (its restart is asked for).
    pub(crate) fn check(&self) -> Result<()> {
        if let Some(why) = self.failed.get() {
            return Err(Error::new(ErrorKind::Internal, why.clone()));
        }
        let suspects = self.suspects();
        if suspects.is_empty() {
            return Ok(());
        }
        if tokio::runtime::Handle::try_current().is_ok() {
            // Waiting here could be what keeps the task from running: let
            // its supervisor judge (see `spawn_with`).
            for (p, quiet, polls) in &suspects {
                p.request_restart(*quiet, *polls);
            }
            return Ok(());
        }
        // A runtime that was stalled with the whole process (stopped,
        // suspended) runs its overdue timers the moment it runs again: a
        // moment for it before calling anything hung.
        let until = std::time::Instant::now() + CONFIRM;
        let mut hung = suspects;
        loop {
            hung.retain(|(p, _, polls)| p.polls.load(Ordering::Relaxed) == *polls);
            if hung.is_empty() {
                return Ok(());
            }
            if std::time::Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for (p, quiet, polls) in &hung {
            p.request_restart(*quiet, *polls);
        }
        let (p, quiet, _) = &hung[0];
        Err(Error::new(
            ErrorKind::Internal,
            format!(
                "the client's background task {} has not run for {quiet:.1?} (it runs at least every {:?}): it is hung and is being restarted; until it runs again this client cannot keep its services UP or its views current",
                p.name, p.pace
            ),
        ))
    }

    /// Why a background task was given up, if one was.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The paced tasks silent longer than their pace, for how long, and
    /// their poll count then.
    fn suspects(&self) -> Vec<(Arc<Pulse>, Duration, u64)> {
        let pulses = self.pulses.lock().unwrap_or_else(|p| p.into_inner());
        if pulses.is_empty() {
            return Vec::new();
        }
        let now = self.now();
        pulses
            .iter()
            .filter_map(|p| {
                let polls = p.polls.load(Ordering::Relaxed);
                p.silent_for(now).map(|quiet| (p.clone(), quiet, polls))
            })
            .collect()
    }

    /// Asks the supervisor of every task found silent to judge it (on the
    /// runtime thread, from a task's checkpoint: no wait).
    fn look(&self) {
        for (p, quiet, polls) in self.suspects() {
            p.request_restart(quiet, polls);
        }
    }

    /// Stops checking a task that ended (or was given up).
    fn forget(&self, pulse: &Arc<Pulse>) {
        self.pulses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|p| !Arc::ptr_eq(p, pulse));
    }

    fn caught(&self, task: &str, payload: &str) {
        self.panics.fetch_add(1, Ordering::Relaxed);
        log::error!("os-lively: background task {task} panicked: {payload}");
    }
}

/// The text of a panic's payload.
pub(crate) fn message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}

/// A supervised task's future: counts its polls and makes [`checkpoint`]
/// find its pulse.
struct Watched {
    inner: Pin<Box<dyn Future<Output = ()> + Send>>,
    pulse: Arc<Pulse>,
}

impl Future for Watched {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.pulse.frozen.load(Ordering::Relaxed) {
            // Hung (a test's doing): never polled, never woken again.
            return Poll::Pending;
        }
        self.pulse.polls.fetch_add(1, Ordering::Relaxed);
        let done = self.inner.as_mut().poll(cx);
        if self.pulse.returning.swap(false, Ordering::Relaxed) {
            return Poll::Ready(());
        }
        done
    }
}

/// How one run of a task ended.
enum End {
    /// Its normal end, or the runtime is shutting down.
    Done,
    Failed(String),
}

/// Runs the task `make()` builds on the current runtime, and builds and
/// runs it again each time it panics, returns while `terms` do not say it
/// ended, or hangs (see the module's doc), until it ends (or the runtime
/// shuts down). After [`MAX_PANICS`] such failures within [`WINDOW`] it is
/// given up and `health` fails. Must be called on the runtime.
pub(crate) fn spawn_supervised<F, Fut>(name: &'static str, health: Arc<Health>, make: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    spawn_with(name, health, Terms::endless(), make);
}

/// [`spawn_supervised`] with the task's [`Terms`].
pub(crate) fn spawn_with<F, Fut>(name: &'static str, health: Arc<Health>, terms: Terms, make: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let pulse = Arc::new(Pulse {
        name,
        pace: terms.pace.unwrap_or(Duration::MAX),
        polls: AtomicU64::new(0),
        armed: AtomicBool::new(false),
        seen: AtomicU64::new(0),
        seen_at: AtomicU64::new(0),
        restart_run: AtomicU64::new(0),
        asked_polls: AtomicU64::new(0),
        run: AtomicU64::new(0),
        restart: Notify::new(),
        frozen: AtomicBool::new(false),
        returning: AtomicBool::new(false),
    });
    if terms.pace.is_some() {
        health
            .pulses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(pulse.clone());
    }
    /// Stops the checks once the supervisor ends, however it ends (the
    /// runtime shutting down drops it).
    struct Forget(Arc<Health>, Arc<Pulse>);
    impl Drop for Forget {
        fn drop(&mut self) {
            self.0.forget(&self.1);
        }
    }
    tokio::spawn(async move {
        let _forget = Forget(health.clone(), pulse.clone());
        let mut recent: Vec<Instant> = Vec::new();
        loop {
            // A new run: silent until its checkpoint says it keeps pace.
            pulse.armed.store(false, Ordering::Release);
            pulse.frozen.store(false, Ordering::Relaxed);
            pulse.returning.store(false, Ordering::Relaxed);
            pulse
                .seen
                .store(pulse.polls.load(Ordering::Relaxed), Ordering::Release);
            pulse.seen_at.store(health.now(), Ordering::Release);
            let run_id = pulse.run.fetch_add(1, Ordering::AcqRel) + 1;
            let ended = terms.ended.clone();
            let task = WATCHED.scope((pulse.clone(), health.clone()), make());
            let watched = Watched {
                inner: Box::pin(task),
                pulse: pulse.clone(),
            };
            let mut run = tokio::spawn(async move {
                watched.await;
                ended()
            });
            let end = loop {
                tokio::select! {
                    r = &mut run => break match r {
                        Ok(true) => End::Done,
                        Ok(false) => End::Failed("returned while its client is open".to_string()),
                        Err(e) if e.is_panic() => {
                            let payload = message(e.into_panic());
                            health.caught(name, &payload);
                            End::Failed(format!("panicked: {payload}"))
                        }
                        // Cancelled: the runtime is shutting down.
                        Err(_) => End::Done,
                    },
                    _ = pulse.restart.notified() => {
                        // A request left over from an earlier run is not
                        // about this one.
                        if pulse.restart_run.load(Ordering::Acquire) != run_id {
                            continue;
                        }
                        // Found silent: hung unless it runs within a
                        // moment (after a stall of the whole process, the
                        // check may have run before the task's timer).
                        tokio::time::sleep(CONFIRM).await;
                        if pulse.polls.load(Ordering::Relaxed)
                            != pulse.asked_polls.load(Ordering::Acquire)
                        {
                            pulse.restart_run.store(0, Ordering::Release);
                            continue;
                        }
                        log::error!(
                            "os-lively: background task {name} has not run for longer than {:?}: hung; restarting it",
                            pulse.pace
                        );
                        run.abort();
                        break End::Failed(format!(
                            "hung: not run for longer than {:?}",
                            pulse.pace
                        ));
                    }
                }
            };
            let why = match end {
                End::Done => return,
                End::Failed(why) => why,
            };
            let now = Instant::now();
            recent.retain(|t| now.duration_since(*t) < WINDOW);
            recent.push(now);
            if recent.len() >= MAX_PANICS {
                let why = format!(
                    "the client's background task {name} failed {} times within {WINDOW:?} and was stopped (last: {why}); this client cannot keep its services UP or its views current: close it and connect a new one",
                    recent.len()
                );
                log::error!("os-lively: {why}");
                let _ = health.failed.set(why);
                return;
            }
            let shift = u32::try_from(recent.len() - 1).unwrap_or(u32::MAX).min(6);
            let delay = (RESTART_DELAY * (1u32 << shift)).min(MAX_RESTART_DELAY);
            log::warn!("os-lively: background task {name} {why}; restarting it in {delay:?}");
            tokio::time::sleep(delay).await;
        }
    });
}

/// Spawns a one-shot task whose panic, if any, is logged and counted
/// instead of vanishing with it. Must be called on the runtime.
pub(crate) fn spawn_logged<Fut>(name: &'static str, health: Arc<Health>, fut: Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let task = tokio::spawn(fut);
    tokio::spawn(async move {
        if let Err(e) = task.await {
            if e.is_panic() {
                health.caught(name, &message(e.into_panic()));
            }
        }
    });
}

/// True when a test asked the watch for a resync (with the `test-hooks`
/// feature; never otherwise).
#[inline]
pub(crate) fn resync_wanted() -> bool {
    #[cfg(feature = "test-hooks")]
    return hooks::resync_wanted();
    #[cfg(not(feature = "test-hooks"))]
    false
}

/// A place in a background task's loop: from its first pass on, a paced
/// task keeps its pace, and the client's other paced tasks are checked
/// (no timer of their own). With the `test-hooks` feature, a test can make
/// the task panic, return or hang here.
#[inline]
pub(crate) fn checkpoint(_task: &'static str) {
    let _ = WATCHED.try_with(|(pulse, health)| {
        if !pulse.armed.swap(true, Ordering::AcqRel) {
            pulse.seen_at.store(health.now(), Ordering::Release);
        }
        health.look();
        #[cfg(feature = "test-hooks")]
        match hooks::take_fault(_task) {
            Some(hooks::Fault::Hang) => pulse.frozen.store(true, Ordering::Relaxed),
            Some(hooks::Fault::Return) => pulse.returning.store(true, Ordering::Relaxed),
            None => {}
        }
    });
    #[cfg(feature = "test-hooks")]
    hooks::checkpoint(_task);
}

#[cfg(feature = "test-hooks")]
pub(crate) mod hooks {
    use std::sync::Mutex;

    static ARMED: Mutex<Vec<String>> = Mutex::new(Vec::new());

    /// Makes the next pass of background task `task` (in any client of
    /// this process) through its checkpoint panic, once per call.
    pub fn inject_panic(task: &str) {
        ARMED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task.to_string());
    }

    /// Makes the next pass of background task `task` through its
    /// checkpoint hang: from then on it is never polled again (as a task
    /// awaiting something that never comes), until its supervisor aborts
    /// and restarts it.
    pub fn inject_hang(task: &str) {
        inject_panic(&format!("{HANG}{task}"));
    }

    /// Makes the next pass of background task `task` through its
    /// checkpoint end the task, as if it had returned.
    pub fn inject_return(task: &str) {
        inject_panic(&format!("{RETURN}{task}"));
    }

    const HANG: &str = "hang:";
    const RETURN: &str = "return:";

    /// A fault a test asked for.
    pub(super) enum Fault {
        Hang,
        Return,
    }

    /// Consumes one hang or return asked for `task`.
    pub(super) fn take_fault(task: &str) -> Option<Fault> {
        if take(&format!("{HANG}{task}")) {
            Some(Fault::Hang)
        } else if take(&format!("{RETURN}{task}")) {
            Some(Fault::Return)
        } else {
            None
        }
    }

    /// Makes the next pass of the watch through its checkpoint act as if
    /// etcd had compacted past it: a full re-read and a resync of every
    /// subscriber, without a panic.
    pub fn inject_resync() {
        inject_panic(RESYNC);
    }

    const RESYNC: &str = "resync";

    /// Consumes one arming of `name`.
    fn take(name: &str) -> bool {
        let mut armed = ARMED.lock().unwrap_or_else(|p| p.into_inner());
        match armed.iter().position(|t| t == name) {
            Some(i) => {
                armed.swap_remove(i);
                true
            }
            None => false,
        }
    }

    pub(super) fn checkpoint(task: &'static str) {
        if take(task) {
            panic!("injected panic in {task}");
        }
    }

    pub(super) fn resync_wanted() -> bool {
        take(RESYNC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn on_runtime<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_panicking_task_is_restarted_and_counted() {
        let health = Arc::new(Health::default());
        let runs = Arc::new(AtomicUsize::new(0));
        on_runtime(async {
            let r = runs.clone();
            spawn_with("test", health.clone(), Terms::until(|| true), move || {
                let r = r.clone();
                async move {
                    if r.fetch_add(1, Ordering::SeqCst) < 2 {
                        panic!("boom");
                    }
                }
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while runs.load(Ordering::SeqCst) < 3 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        assert_eq!(health.panics(), 2);
        assert!(health.check().is_ok());
    }

    #[test]
    fn a_task_that_keeps_panicking_is_given_up_loudly() {
        let health = Arc::new(Health::default());
        on_runtime(async {
            spawn_supervised("doomed", health.clone(), || async { panic!("always") });
            let deadline = Instant::now() + Duration::from_secs(10);
            while health.check().is_ok() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let e = health.check().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(e.message().contains("doomed"), "{e}");
        assert_eq!(health.panics(), MAX_PANICS as u64);
    }

    #[test]
    fn a_task_that_returns_is_restarted_with_backoff_then_given_up() {
        let health = Arc::new(Health::default());
        let starts = Arc::new(Mutex::new(Vec::new()));
        on_runtime(async {
            let s = starts.clone();
            spawn_supervised("quitter", health.clone(), move || {
                s.lock().unwrap().push(Instant::now());
                async {}
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while health.check().is_ok() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let e = health.check().unwrap_err();
        assert!(e.message().contains("quitter"), "{e}");
        assert!(e.message().contains("returned"), "{e}");
        let starts = starts.lock().unwrap();
        assert_eq!(starts.len(), MAX_PANICS);
        // Each restart waits longer than the one before.
        let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps[0] >= RESTART_DELAY, "{gaps:?}");
        assert!(gaps.windows(2).all(|g| g[1] > g[0]), "{gaps:?}");
        assert_eq!(health.panics(), 0);
    }

    #[test]
    fn a_return_the_terms_expect_ends_the_task_quietly() {
        let health = Arc::new(Health::default());
        let runs = Arc::new(AtomicUsize::new(0));
        on_runtime(async {
            let r = runs.clone();
            spawn_with("done", health.clone(), Terms::until(|| true), move || {
                r.fetch_add(1, Ordering::SeqCst);
                async {}
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(health.check().is_ok());
    }

    #[test]
    fn a_hung_task_is_reported_and_restarted_and_an_idle_one_is_not() {
        let health = Arc::new(Health::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let idle_runs = Arc::new(AtomicUsize::new(0));
        let reported = on_runtime(async {
            // Waits for ever before its checkpoint: idle, not hung.
            let r = idle_runs.clone();
            spawn_with(
                "idle",
                health.clone(),
                Terms::until(|| true).pace(Duration::from_millis(50)),
                move || {
                    r.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>()
                },
            );
            // Passes its checkpoint, then waits for ever: hung.
            let r = runs.clone();
            spawn_with(
                "stuck",
                health.clone(),
                Terms::until(|| true).pace(Duration::from_millis(50)),
                move || {
                    r.fetch_add(1, Ordering::SeqCst);
                    async {
                        checkpoint("stuck");
                        std::future::pending::<()>().await
                    }
                },
            );
            // Checked from outside the runtime, as a caller's call does.
            let checker = {
                let health = health.clone();
                std::thread::spawn(move || {
                    let deadline = std::time::Instant::now() + Duration::from_secs(10);
                    while std::time::Instant::now() < deadline {
                        if let Err(e) = health.check() {
                            return Some(e);
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    None
                })
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && runs.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            checker.join().unwrap()
        });
        let e = reported.expect("the hang was never reported");
        assert_eq!(e.kind(), ErrorKind::Internal);
        assert!(
            e.message().contains("stuck") && e.message().contains("hung"),
            "{e}"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2, "not restarted");
        assert_eq!(idle_runs.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_paced_task_that_ended_is_not_reported_hung() {
        let health = Arc::new(Health::default());
        on_runtime(async {
            spawn_with(
                "finished",
                health.clone(),
                Terms::until(|| true).pace(Duration::from_millis(20)),
                || async { checkpoint("finished") },
            );
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(10)).await;
                assert!(health.check().is_ok());
            }
        });
        assert!(health.pulses.lock().unwrap().is_empty());
    }

    #[test]
    fn a_task_late_by_less_than_the_confirmation_is_not_hung() {
        let health = Arc::new(Health::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let errors = on_runtime(async {
            let r = runs.clone();
            // Its pace says 50 ms; it wakes every 90 ms: found silent, then
            // seen to run within the confirmation's 100 ms.
            spawn_with(
                "late",
                health.clone(),
                Terms::until(|| true).pace(Duration::from_millis(50)),
                move || {
                    r.fetch_add(1, Ordering::SeqCst);
                    async {
                        loop {
                            checkpoint("late");
                            tokio::time::sleep(Duration::from_millis(90)).await;
                        }
                    }
                },
            );
            let checker = {
                let health = health.clone();
                std::thread::spawn(move || {
                    let mut errors = 0;
                    for _ in 0..50 {
                        errors += usize::from(health.check().is_err());
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    errors
                })
            };
            while !checker.is_finished() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            checker.join().unwrap()
        });
        assert_eq!(errors, 0);
        assert_eq!(runs.load(Ordering::SeqCst), 1, "restarted");
    }
}
