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

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::{Error, ErrorKind, Result};

/// A task that panics this many times within [`WINDOW`] is given up.
const MAX_PANICS: usize = 5;
const WINDOW: Duration = Duration::from_secs(60);
/// Pause before a restart, so a task that panics at once does not spin.
const RESTART_DELAY: Duration = Duration::from_millis(100);

/// Whether the client's background tasks are all running.
#[derive(Default)]
pub(crate) struct Health {
    panics: AtomicU64,
    /// Set once, when a task was given up: why.
    failed: OnceLock<String>,
}

impl Health {
    /// Panics caught in background tasks so far.
    pub(crate) fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// `Err` once a background task was given up.
    pub(crate) fn check(&self) -> Result<()> {
        match self.failed.get() {
            None => Ok(()),
            Some(why) => Err(Error::new(ErrorKind::Internal, why.clone())),
        }
    }

    /// Why a background task was given up, if one was.
    pub(crate) fn failure(&self) -> Option<&str> {
        self.failed.get().map(String::as_str)
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

/// Runs the task `make()` builds on the current runtime, and builds and
/// runs it again each time it panics, until it returns (or the runtime
/// shuts down). After [`MAX_PANICS`] panics within [`WINDOW`] it is given
/// up and `health` fails. Must be called on the runtime.
pub(crate) fn spawn_supervised<F, Fut>(name: &'static str, health: Arc<Health>, make: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut recent: Vec<Instant> = Vec::new();
        loop {
            let run = tokio::spawn(make());
            let payload = match run.await {
                Ok(()) => return,
                Err(e) if e.is_panic() => message(e.into_panic()),
                // Cancelled: the runtime is shutting down.
                Err(_) => return,
            };
            health.caught(name, &payload);
            let now = Instant::now();
            recent.retain(|t| now.duration_since(*t) < WINDOW);
            recent.push(now);
            if recent.len() >= MAX_PANICS {
                let why = format!(
                    "the client's background task {name} panicked {} times within {WINDOW:?} and was stopped (last: {payload}); this client cannot keep its services UP or its views current: close it and connect a new one",
                    recent.len()
                );
                log::error!("os-lively: {why}");
                let _ = health.failed.set(why);
                return;
            }
            log::warn!("os-lively: restarting background task {name}");
            tokio::time::sleep(RESTART_DELAY).await;
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

/// A place in a background task's loop where a test can make it panic
/// (with the `test-hooks` feature; nothing otherwise).
#[inline]
pub(crate) fn checkpoint(_task: &'static str) {
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
            spawn_supervised("test", health.clone(), move || {
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
}
