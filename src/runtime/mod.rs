//! The one thread that runs the client's single-threaded tokio runtime, and
//! the blocking hand-off of futures to it.
//!
//! Callers never see async: each call spawns its future on the runtime thread
//! and waits on a plain channel with a deadline; the runtime stays awake for
//! a moment around calls (see [`warm`]). The runtime also drives the
//! heartbeat and watches on its own, so keepalives continue while the caller
//! does nothing.

use std::future::Future;
use std::sync::Mutex;
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::error::{Error, ErrorKind, Result};

pub(crate) mod supervise;
mod warm;

pub(crate) use supervise::{Health, Terms};

/// Extra wait on the caller side beyond the runtime-side deadline, so the
/// runtime's own timeout (which cancels the work) normally answers first.
const HANDOFF_SLACK: Duration = Duration::from_millis(250);

pub(crate) struct Runtime {
    handle: tokio::runtime::Handle,
    thread_id: ThreadId,
    made: crate::fork::Stamp,
    warmth: std::sync::Arc<warm::Warmth>,
    health: std::sync::Arc<Health>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Runtime {
    /// Starts the runtime thread and returns once the runtime is running.
    /// `polling`: how long the thread stays awake after a call (see
    /// [`warm`]; zero: never).
    pub(crate) fn start(polling: Duration) -> Result<Runtime> {
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let warmth = warm::Warmth::new(polling);
        let health = std::sync::Arc::new(Health::default());
        let (task_warmth, task_health) = (warmth.clone(), health.clone());
        let thread = std::thread::Builder::new()
            .name("lively-rt".to_string())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                {
                    let _on = rt.enter();
                    supervise::spawn_supervised("call-polling", task_health, move || {
                        task_warmth.clone().keep_warm()
                    });
                }
                let _ = ready_tx.send(Ok(rt.handle().clone()));
                // Runs every spawned task until asked to stop (or every
                // owner is gone and the sender dropped).
                let _ = rt.block_on(stop_rx);
                // Dropping the runtime cancels what is left; the client
                // revoked its lease before asking us to stop.
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("spawning the runtime thread: {e}"),
                )
            })?;
        let thread_id = thread.thread().id();
        let handle = match ready_rx.recv() {
            Ok(Ok(handle)) => handle,
            Ok(Err(e)) => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!("building the runtime: {e}"),
                ));
            }
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "the runtime thread died while starting",
                ));
            }
        };
        Ok(Runtime {
            handle,
            thread_id,
            made: crate::fork::Stamp::now(),
            warmth,
            health,
            stop: Mutex::new(Some(stop_tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Refuses calls that cannot work: from a forked child, or from our own
    /// runtime thread (the only thread whose blocking wait would stall the
    /// work it waits for).
    ///
    /// Any other thread may wait, including threads inside another tokio
    /// runtime's context: tokio's blocking pool, `block_in_place`, and a
    /// current-thread runtime's own thread (`#[tokio::main]`). Our runtime
    /// runs on a thread of its own, so their waiting cannot deadlock it;
    /// `Handle::try_current()` would refuse exactly the threads a tokio
    /// program should call us from.
    pub(crate) fn check_caller(&self) -> Result<()> {
        self.check_forked()?;
        if std::thread::current().id() == self.thread_id {
            return Err(Error::new(
                ErrorKind::WouldDeadlock,
                "a blocking os-lively call was made on the library's runtime thread",
            ));
        }
        Ok(())
    }

    /// `Forked` in a child process forked after the runtime started: the
    /// runtime thread, and what it keeps current, exist only in the parent.
    pub(crate) fn check_forked(&self) -> Result<()> {
        if self.made.is_other_process() {
            return Err(Error::new(
                ErrorKind::Forked,
                "this client was created before fork(); the child must connect its own client",
            ));
        }
        Ok(())
    }

    /// True in a child forked after the runtime started: no lock, no
    /// system call.
    pub(crate) fn is_forked_copy(&self) -> bool {
        self.made.is_other_process()
    }

    /// Whether every background task still runs (see [`supervise`]).
    pub(crate) fn health(&self) -> &std::sync::Arc<Health> {
        &self.health
    }

    /// Runs the task `make()` builds on the runtime under a supervisor that
    /// restarts it when it panics, returns before `terms` say it ended, or
    /// hangs (see [`supervise`]).
    pub(crate) fn spawn_supervised<F, Fut>(&self, name: &'static str, terms: Terms, make: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let _on = self.handle.enter();
        supervise::spawn_with(name, self.health.clone(), terms, make);
    }

    /// Runs `fut` on the runtime thread and waits for it at most `limit`.
    pub(crate) fn call<T, F>(&self, what: &str, limit: Duration, fut: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        self.check_caller()?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let warmth = self.warmth.clone();
        let task = self.handle.spawn(async move {
            warmth.touch();
            let r = match tokio::time::timeout(limit, fut).await {
                Ok(r) => r,
                Err(_) => Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no answer from etcd within {limit:?}"),
                )),
            };
            warmth.touch();
            let _ = tx.send(r);
        });
        match rx.recv_timeout(limit + HANDOFF_SLACK) {
            Ok(r) => r.map_err(|e| e.context(what)),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                task.abort();
                Err(Error::new(
                    ErrorKind::Timeout,
                    format!("{what}: no answer within {limit:?}"),
                ))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Error::new(
                ErrorKind::Closed,
                format!("{what}: the client's runtime thread has stopped"),
            )),
        }
    }

    /// True on the runtime thread itself.
    pub(crate) fn on_runtime_thread(&self) -> bool {
        std::thread::current().id() == self.thread_id
    }

    /// Runs `fut` on the runtime, then stops the runtime, without waiting:
    /// for a close made on the runtime thread itself.
    pub(crate) fn stop_after<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.lock().ok().and_then(|mut s| s.take());
        self.handle.spawn(async move {
            fut.await;
            if let Some(tx) = stop {
                let _ = tx.send(());
            }
        });
    }

    /// Stops the runtime thread and waits for it (unless called on it, or in
    /// a forked child where the thread does not exist).
    pub(crate) fn stop(&self) {
        if let Ok(mut stop) = self.stop.lock() {
            if let Some(tx) = stop.take() {
                let _ = tx.send(());
            }
        }
        if self.on_runtime_thread() || self.made.is_other_process() {
            return;
        }
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // A forked child has no runtime thread; its stop channel's waker
        // would schedule on the parent's runtime, whose locks a parent's
        // thread may have held at the fork.
        if self.made.is_other_process() {
            return;
        }
        self.stop();
    }
}
