//! The shared state of one client's namespace watch: the model, the
//! revisions it reflects, whether it is connected, whether it is ready.
//!
//! The work on that state is split by job: [`super::stream`] keeps the
//! watch stream open, [`super::liveness`] tells a quiet stream from a dead
//! one, [`super::load`] reads the namespace, [`super::apply`] applies
//! changes, [`super::registry`] and [`super::catchup`] serve subscriptions.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use etcd_client::WatchClient;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::runtime::Health;
use crate::runtime::supervise::{Terms, spawn_with};
use crate::stats::Counters;
use crate::store::Store;

use super::queue::Sub;

/// How long a watch stream may stay silent before the watcher checks that
/// it is still current: a quarter of the status TTL, within these bounds.
const QUIET_MIN: Duration = Duration::from_millis(250);
const QUIET_MAX: Duration = Duration::from_secs(2);

/// The largest watch response accepted: one revision deleting about
/// 600,000 keys.
const MAX_WATCH_RESPONSE_BYTES: usize = 64 << 20;

/// The shared state of every subscription and view of one client.
pub(crate) struct Hub {
    state: Mutex<HubState>,
    /// Every service in the namespace; written only under `state`'s lock.
    pub(crate) model: Model,
    /// The etcd revision up to which the watch delivered every change
    /// (and the model applied it); the stream resumes after it. Written
    /// only under `state`'s lock.
    revision: AtomicI64,
    /// How many keys the namespace held at `revision` (every key under
    /// its prefix, understood or not), kept by the watch's events: what a
    /// liveness check compares etcd's count with. Written with `revision`.
    pub(super) keys: AtomicI64,
    /// A revision at which a read of etcd showed the namespace exactly as
    /// the model has it (see [`super::liveness`]): a view is current up to
    /// it even when no event of the namespace carried it. Never a point to
    /// resume the stream from (a service registered and removed in
    /// between leaves no trace in that read).
    verified: AtomicI64,
    /// Signalled whenever `revision` or `verified` moves (for
    /// `wait_for_revision`).
    revision_moved: (Mutex<()>, Condvar),
    connected: AtomicBool,
    /// When the watch was last lost, in microseconds after `born`; 0 while
    /// connected. An atomic, because every view read checks it.
    disconnected_since_us: AtomicU64,
    born: Instant,
    pub(super) store: Store,
    pub(super) watch: WatchClient,
    pub(super) counters: Arc<Counters>,
    /// The supervisor's verdict on the client's background tasks, the
    /// watch among them.
    health: Arc<Health>,
    pub(super) request_timeout: Duration,
    pub(super) status_ttl: Duration,
    pub(super) quiet: Duration,
    synced: watch::Sender<Readiness>,
    pub(super) stop: watch::Sender<bool>,
    /// Asks the watcher to check now that the model is current (a view's
    /// `sync` waiting in a quiet namespace of a busy etcd).
    pub(super) check_wanted: tokio::sync::Notify,
    /// The endpoint was seen ignoring watch progress requests (etcd 3.4's
    /// gRPC proxy drops them): the watcher's checks read etcd at once
    /// instead of waiting for an answer first. Only the watcher changes it.
    pub(super) progress_ignored: AtomicBool,
}

/// Whether the hub can serve views and subscriptions.
#[derive(Clone)]
enum Readiness {
    /// Loading the namespace and opening the watch.
    Starting,
    /// Loaded and watching (for good: later outages make views stale, and
    /// the watcher recovers on its own).
    Ready,
    /// Starting failed; the next `ensure_started` starts over.
    Failed(Error),
}

#[derive(Default)]
pub(super) struct HubState {
    started: bool,
    /// Set by `shutdown`: a subscription registered later starts cancelled.
    pub(super) shut: bool,
    pub(super) subs: Vec<Arc<Sub>>,
}

impl Hub {
    pub(crate) fn new(
        store: Store,
        watch: WatchClient,
        counters: Arc<Counters>,
        health: Arc<Health>,
        request_timeout: Duration,
        status_ttl: Duration,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            state: Mutex::new(HubState::default()),
            model: Model::new(),
            revision: AtomicI64::new(0),
            keys: AtomicI64::new(0),
            verified: AtomicI64::new(0),
            revision_moved: (Mutex::new(()), Condvar::new()),
            connected: AtomicBool::new(false),
            disconnected_since_us: AtomicU64::new(1),
            born: Instant::now(),
            store,
            // One lease revocation deletes every UP key on it in a single
            // revision, which etcd sends as one response: about 100 bytes a
            // key, far past gRPC's default 4 MiB for a client owning 100,000.
            watch: watch.max_decoding_message_size(MAX_WATCH_RESPONSE_BYTES),
            counters,
            health,
            request_timeout,
            status_ttl,
            quiet: (status_ttl / 4).clamp(QUIET_MIN, QUIET_MAX),
            synced: watch::channel(Readiness::Starting).0,
            stop: watch::channel(false).0,
            check_wanted: tokio::sync::Notify::new(),
            progress_ignored: AtomicBool::new(false),
        })
    }

    /// The etcd revision up to which the watch delivered every change.
    pub(crate) fn revision(&self) -> i64 {
        self.revision.load(Ordering::Acquire)
    }

    /// The revision the model is known to reflect: the watch's, or a later
    /// one a read of etcd vouched for.
    pub(crate) fn current_revision(&self) -> i64 {
        self.revision().max(self.verified.load(Ordering::Acquire))
    }

    pub(super) fn set_revision(&self, revision: i64) {
        // Single writer (the watcher, under the hub lock): load-then-store is safe.
        if revision > self.revision() {
            self.revision.store(revision, Ordering::Release);
            self.notify_moved();
        }
    }

    /// A read of etcd at `revision` found the namespace as the model has it.
    pub(super) fn set_verified(&self, revision: i64) {
        if self.verified.fetch_max(revision, Ordering::AcqRel) < revision {
            self.notify_moved();
        }
    }

    fn notify_moved(&self) {
        let _guard = self.revision_moved.0.lock();
        self.revision_moved.1.notify_all();
    }

    /// Waits until the model reflects at least `revision`; false on timeout.
    /// If it does not yet, asks the watcher to check at once: in a quiet
    /// namespace of a busy etcd no event carries the revision, and the
    /// periodic check comes only after a quiet period.
    pub(crate) fn wait_for_revision(&self, revision: i64, timeout: Duration) -> bool {
        if self.current_revision() < revision {
            self.check_wanted.notify_one();
        }
        let mut asked = Instant::now();
        // A timeout too large for an `Instant` (Duration::MAX) waits forever.
        let deadline = Instant::now().checked_add(timeout);
        let mut guard = self
            .revision_moved
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        while self.current_revision() < revision {
            let now = Instant::now();
            // Shut down (client closed): the revision will not move again.
            if *self.stop.borrow() || deadline.is_some_and(|d| now >= d) {
                return false;
            }
            // Asked again every quiet period: the check the first request
            // started may have ended before etcd's revision got this far.
            if now.duration_since(asked) >= self.quiet {
                asked = now;
                self.check_wanted.notify_one();
            }
            let left = deadline.map_or(Duration::MAX, |d| d - now);
            guard = self
                .revision_moved
                .1
                .wait_timeout(guard, left.min(Duration::from_millis(50)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// True while the watch stream is open and known current.
    pub(crate) fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// How long the watch has been disconnected; `None` while connected.
    pub(crate) fn disconnected_for(&self) -> Option<Duration> {
        match self.disconnected_since_us.load(Ordering::Acquire) {
            0 => None,
            us => Some(
                self.born
                    .elapsed()
                    .saturating_sub(Duration::from_micros(us)),
            ),
        }
    }

    pub(super) fn set_connected(&self, connected: bool) {
        if self.connected.swap(connected, Ordering::AcqRel) != connected {
            let since = if connected {
                0
            } else {
                (self.born.elapsed().as_micros() as u64).max(1)
            };
            self.disconnected_since_us.store(since, Ordering::Release);
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the shared watcher on first use and waits until its model is
    /// loaded and its watch is open, or until starting failed (the error is
    /// returned, and the next call starts over). Runs on the runtime thread.
    pub(crate) async fn ensure_started(self: &Arc<Hub>) -> Result<()> {
        let mut readiness = self.synced.subscribe();
        {
            let mut st = self.lock();
            if !std::mem::replace(&mut st.started, true) {
                self.synced.send_replace(Readiness::Starting);
                let (hub, h) = (self.clone(), self.clone());
                // Ends when stopped, or when starting failed (the next call
                // starts it again); woken at least every four quiet periods
                // once it watches (the liveness check's longest back-off),
                // each call it waits for bounded by the request timeout:
                // silent far longer, it hangs.
                let terms = Terms::until(move || *h.stop.borrow() || !h.is_ready())
                    .pace(self.request_timeout * 2 + self.quiet * 4 + Duration::from_secs(5));
                spawn_with("watch", self.health.clone(), terms, move || {
                    hub.clone().run()
                });
            }
        }
        let state = readiness
            .wait_for(|r| !matches!(r, Readiness::Starting))
            .await
            .map_err(|_| Error::closed())?;
        match &*state {
            Readiness::Failed(e) => Err(e.clone()),
            _ => Ok(()),
        }
    }

    /// Gives up starting: waiters get `e`, the next `ensure_started` tries
    /// again.
    pub(super) fn start_failed(&self, e: Error) {
        let mut st = self.lock();
        st.started = false;
        self.synced.send_replace(Readiness::Failed(e));
    }

    /// Ready for subscribers: the model is loaded and the watch that keeps
    /// it current is in place.
    pub(super) fn set_ready(&self) {
        self.synced.send_if_modified(|r| {
            !matches!(std::mem::replace(r, Readiness::Ready), Readiness::Ready)
        });
    }

    pub(super) fn is_ready(&self) -> bool {
        matches!(*self.synced.borrow(), Readiness::Ready)
    }

    /// Stops the watcher and cancels every subscription.
    pub(crate) fn shutdown(&self) {
        let _ = self.stop.send(true);
        let subs = {
            let mut st = self.lock();
            st.shut = true;
            std::mem::take(&mut st.subs)
        };
        for sub in subs {
            sub.cancel_queue();
        }
    }
}
