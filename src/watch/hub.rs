//! The shared namespace watch: loading the model, watching, applying changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use etcd_client::{EventType, WatchClient, WatchOptions, WatchResponse};
use tokio::sync::watch;
use tokio::time::timeout;

use crate::backoff::{Backoff, sleep_or_stop};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::ParsedKey;
use crate::log_once;
use crate::model::{Model, Snapshot};
use crate::record::{Service, Status, decode_stored};
use crate::runtime::Health;
use crate::runtime::supervise::{Terms, checkpoint, resync_wanted, spawn_with};
use crate::stats::Counters;
use crate::store::{CLOSED_MARK, Filter, Store};

use super::diff::Hint;
use super::options::SubscribeOptions;
use super::queue::{Queue, Staged, Sub, Touched};

/// How long a quiet watch stream may stay silent before we ask etcd for a
/// progress notification, and again before we call the stream dead: a
/// quarter of the status TTL, within these bounds, so a dead stream is left
/// within about half a TTL and a DOWN is never held back much longer.
const QUIET_MIN: Duration = Duration::from_millis(250);
const QUIET_MAX: Duration = Duration::from_secs(2);

/// The shared state of every subscription of one client.
pub(crate) struct Hub {
    state: Mutex<HubState>,
    /// Every service in the namespace; written only under `state`'s lock.
    pub(crate) model: Model,
    /// The etcd revision `model` reflects; written only under `state`'s lock.
    revision: AtomicI64,
    /// Signalled whenever `revision` moves (for `wait_for_revision`).
    revision_moved: (Mutex<()>, Condvar),
    connected: AtomicBool,
    /// When the watch was last lost, in microseconds after `born`; 0 while
    /// connected. An atomic, because every view read checks it.
    disconnected_since_us: AtomicU64,
    born: Instant,
    store: Store,
    watch: WatchClient,
    counters: Arc<Counters>,
    /// The supervisor's verdict on the client's background tasks, the
    /// watch among them.
    health: Arc<Health>,
    request_timeout: Duration,
    quiet: Duration,
    synced: watch::Sender<Readiness>,
    stop: watch::Sender<bool>,
    /// Asks the watcher to request a progress notification now (a view's
    /// `sync` waiting in a quiet namespace of a busy etcd).
    progress_wanted: tokio::sync::Notify,
    /// What the watcher learned about progress requests on this client's
    /// endpoint; only the watcher changes it.
    progress: Mutex<ProgressSupport>,
}

/// Whether the endpoint answers watch progress requests.
///
/// etcd answers them; etcd 3.4's gRPC proxy drops them without a word
/// (and sends no periodic progress either: etcd's own interval is ten
/// minutes). Through it, a quiet stream would look dead after every quiet
/// period, and a view behind etcd's revision would never catch up in a
/// quiet namespace. So a progress request unanswered on a stream that was
/// then declared dead makes the next quiet stream check write the progress
/// mark too (see [`Store::put_progress_mark`]): when the mark's event
/// arrives and the progress answer does not, the endpoint ignores progress
/// requests, and the mark replaces them for the rest of the client's life.
#[derive(Default)]
struct ProgressSupport {
    /// A stream was declared dead with a progress request unanswered:
    /// maybe it was dead, maybe the endpoint ignores the requests.
    doubt: bool,
    /// Confirmed: the endpoint ignores progress requests; the watcher
    /// writes the mark instead.
    unsupported: bool,
    /// Writing the mark was refused (a user without write permission on
    /// its key): the watcher cannot use it.
    mark_refused: bool,
}

/// Events applied between two yields of the runtime thread.
const YIELD_EVERY: usize = 128;

/// The largest watch response accepted: one revision deleting about
/// 600,000 keys.
const MAX_WATCH_RESPONSE_BYTES: usize = 64 << 20;

/// How many times the first load (and the first watch) of a hub is tried
/// before `view()` / `subscribe()` report the failure; the next call starts
/// over.
const START_ATTEMPTS: u32 = 3;

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
struct HubState {
    started: bool,
    /// Set by `shutdown`: a subscription registered later starts cancelled.
    shut: bool,
    subs: Vec<Arc<Sub>>,
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
            quiet: (status_ttl / 4).clamp(QUIET_MIN, QUIET_MAX),
            synced: watch::channel(Readiness::Starting).0,
            stop: watch::channel(false).0,
            progress_wanted: tokio::sync::Notify::new(),
            progress: Mutex::new(ProgressSupport::default()),
        })
    }

    /// The etcd revision the model reflects.
    pub(crate) fn revision(&self) -> i64 {
        self.revision.load(Ordering::Acquire)
    }

    fn set_revision(&self, revision: i64) {
        // Single writer (the watcher, under the hub lock): load-then-store is safe.
        if revision > self.revision() {
            self.revision.store(revision, Ordering::Release);
            let _guard = self.revision_moved.0.lock();
            self.revision_moved.1.notify_all();
        }
    }

    /// Waits until the model reflects at least `revision`; false on timeout.
    /// If it does not yet, asks etcd for a progress notification at once:
    /// in a quiet namespace of a busy etcd, no event would carry the
    /// revision, and the periodic request comes only after a quiet period.
    pub(crate) fn wait_for_revision(&self, revision: i64, timeout: Duration) -> bool {
        if self.revision() < revision {
            self.progress_wanted.notify_one();
        }
        let mut asked = Instant::now();
        // A timeout too large for an `Instant` (Duration::MAX) waits forever.
        let deadline = Instant::now().checked_add(timeout);
        let mut guard = self
            .revision_moved
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        while self.revision() < revision {
            let now = Instant::now();
            // Shut down (client closed): the revision will not move again.
            if *self.stop.borrow() || deadline.is_some_and(|d| now >= d) {
                return false;
            }
            // Asked again every quiet period: the stream the first request
            // went to may have been replaced, or the endpoint may have
            // turned out to ignore progress requests (then the watcher
            // answers with the progress mark).
            if now.duration_since(asked) >= self.quiet {
                asked = now;
                self.progress_wanted.notify_one();
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

    /// True while the watch stream is open and caught up.
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

    fn set_connected(&self, connected: bool) {
        if self.connected.swap(connected, Ordering::AcqRel) != connected {
            let since = if connected {
                0
            } else {
                (self.born.elapsed().as_micros() as u64).max(1)
            };
            self.disconnected_since_us.store(since, Ordering::Release);
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
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
                // starts it again); woken at least every quiet period once
                // it watches, each call it waits for bounded by the request
                // timeout: silent far longer, it hangs.
                let terms = Terms::until(move || *h.stop.borrow() || !h.is_ready())
                    .pace(self.request_timeout * 2 + self.quiet * 2 + Duration::from_secs(5));
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
    fn start_failed(&self, e: Error) {
        let mut st = self.lock();
        st.started = false;
        self.synced.send_replace(Readiness::Failed(e));
    }

    fn is_ready(&self) -> bool {
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

    /// Reads the whole namespace and replaces the model; every subscription
    /// is told the differences. Retries with backoff, at most `attempts`
    /// times when given (then the last error is returned); failures are
    /// logged at warning level.
    async fn load(
        self: &Arc<Self>,
        resync: bool,
        attempts: Option<u32>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Loaded> {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let mut failures = 0u32;
        loop {
            let e = match self.store.scan_at(Some(self.request_timeout)).await {
                Ok((services, revision)) => {
                    // Building 100,000 entries, and freeing the old ones,
                    // takes long enough to delay keepalives: off the runtime
                    // thread. The watch is down meanwhile, so nothing else
                    // writes the model.
                    let hub = self.clone();
                    let swapped = tokio::task::spawn_blocking(move || {
                        hub.swap_in(services, revision, resync);
                    })
                    .await;
                    if let Err(e) = swapped {
                        // Only a panic (or the runtime shutting down) gets here.
                        Error::new(
                            ErrorKind::Internal,
                            format!("rebuilding the model failed: {e}"),
                        )
                    } else {
                        if resync {
                            Counters::bump(&self.counters.resyncs);
                            log::warn!(
                                "os-lively: watch history compacted; re-listed the namespace at revision {revision} and resynced subscribers"
                            );
                        }
                        return Ok(Loaded::Yes);
                    }
                }
                Err(e) => e,
            };
            failures += 1;
            if attempts.is_some_and(|n| failures >= n) {
                return Err(e);
            }
            // Every failure of a bounded load; the first and every tenth of
            // an endless one (a resync), so a long outage stays visible
            // without flooding the log.
            if attempts.is_some() || failures % 10 == 1 {
                log::warn!(
                    "os-lively: reading the namespace for views and subscriptions failed (attempt {failures}), retrying: {e}"
                );
            }
            if sleep_or_stop(backoff.next_delay(), stop).await {
                return Ok(Loaded::Stopped);
            }
        }
    }

    /// Replaces the model with a full re-read; on a resync, every
    /// subscription that was keeping up falls behind from the model as it
    /// was, so each catches up by the differences (on its own consumer's
    /// thread). Blocking work: never on the runtime thread.
    fn swap_in(&self, services: Vec<crate::store::ServiceInfo>, revision: i64, resync: bool) {
        let st = self.lock();
        if resync {
            let before = self.model.snapshot();
            for sub in &st.subs {
                sub.fall_behind(before.clone());
            }
        }
        self.model.replace(services);
        self.set_revision(revision);
        drop(st);
        crate::model::release_freed_memory();
    }

    /// The watcher: load, watch from the next revision, apply, dispatch;
    /// reconnect and resume on any failure. Until it is ready, a failure
    /// repeated [`START_ATTEMPTS`] times ends it and goes to the callers
    /// waiting in `ensure_started`.
    async fn run(self: Arc<Hub>) {
        let mut stop = self.stop.subscribe();
        // Restarted after a panic (see `runtime::supervise`): the stream
        // is gone, and events may have been half applied, so views are
        // stale until the model is read again and subscribers resynced.
        self.set_connected(false);
        let restarted = self.is_ready();
        match self.load(restarted, Some(START_ATTEMPTS), &mut stop).await {
            Ok(Loaded::Yes) => {}
            Ok(Loaded::Stopped) => return self.start_failed(Error::closed()),
            Err(e) => {
                log::warn!(
                    "os-lively: reading the namespace for views and subscriptions failed {START_ATTEMPTS} times; giving up: {e}"
                );
                return self.start_failed(e);
            }
        }
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let mut failures = 0u32;
        loop {
            let from = self.revision() + 1;
            let outcome = self.watch_from(from, &mut stop, &mut backoff).await;
            self.set_connected(false);
            match outcome {
                Outcome::Stopped => {
                    if !self.is_ready() {
                        self.start_failed(Error::closed());
                    }
                    return;
                }
                Outcome::Compacted => match self.load(true, None, &mut stop).await {
                    Ok(Loaded::Yes) => {}
                    _ => return,
                },
                Outcome::Broken(e) => {
                    if crate::auth::Auth::is_stale_token(e.message()) {
                        if let Err(e) = self.store.auth().refresh().await {
                            log::warn!("os-lively: re-authenticating the watch failed: {e}");
                        }
                    }
                    // The stream may have been on a dead or leaderless
                    // member: let endpoint steering look.
                    self.store
                        .steering()
                        .suspect(&format!("the watch broke: {e}"));
                    failures += 1;
                    if !self.is_ready() && failures >= START_ATTEMPTS {
                        log::warn!(
                            "os-lively: opening the watch failed {failures} times; giving up: {e}"
                        );
                        return self.start_failed(e);
                    }
                    if failures == 1 {
                        // The revision seen last, not the one the stream
                        // started from: events up to it were delivered.
                        let seen = self.revision();
                        log::warn!(
                            "os-lively: watch broke after revision {seen}; resuming from {}: {e}",
                            seen + 1
                        );
                    }
                    Counters::bump(&self.counters.reconnects);
                    if sleep_or_stop(backoff.next_delay(), &mut stop).await {
                        if !self.is_ready() {
                            self.start_failed(Error::closed());
                        }
                        return;
                    }
                    continue;
                }
            }
            failures = 0;
        }
    }

    async fn watch_from(
        &self,
        from: i64,
        stop: &mut watch::Receiver<bool>,
        backoff: &mut Backoff,
    ) -> Outcome {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_progress_notify();
        let root = self.store.keys().root().to_string();
        let mut client = self.watch.clone();
        let mut stream = match timeout(self.request_timeout, client.watch(root, Some(opts))).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Outcome::Broken(Error::etcd("opening the watch", e)),
            Err(_) => {
                return Outcome::Broken(Error::new(
                    ErrorKind::Timeout,
                    "opening the watch timed out",
                ));
            }
        };
        let mut reroutes = self.store.reroutes();
        reroutes.mark_unchanged();
        let mut last_heard = Instant::now();
        // A random part of the quiet period, drawn anew whenever the stream
        // speaks: the watchers of a namespace all hear its last event at
        // once, and through an endpoint that ignores progress requests each
        // would write the progress mark at the same moment (200 watchers
        // wrote 567 marks a minute, and every mark moved the revision that
        // makes each daemon check its UP keys). Spread out, the first mark
        // reaches the others before they are due.
        let mut spread = crate::backoff::jitter(self.quiet / 2);
        // The stream was asked to show it is alive (a progress request, the
        // progress mark, or both) and must say anything within a quiet
        // period.
        let mut asked: Option<Asked> = None;
        // The progress mark being written, and the revision of the last
        // one written.
        let mut mark_put: Option<MarkPut> = None;
        let mut mark_rev = 0i64;
        let mark_key = self.store.progress_mark_key();
        // The first stream follows a fresh read of the namespace: its
        // creation is enough to call the view current. A stream reopened
        // after a loss must show it moves first (an event, a progress
        // notification, the mark): through etcd's gRPC proxy, a new stream
        // is "created" by the proxy itself even when the etcd member behind
        // it is cut off from the cluster and will never send anything, and
        // a view counting that as connected would answer from its old copy
        // for ever (a crashed service UP) instead of going Stale.
        let needs_proof = self.is_ready();
        loop {
            checkpoint("watch");
            if resync_wanted() {
                return Outcome::Compacted;
            }
            let due = match &asked {
                Some(a) => a.at + self.quiet,
                None => last_heard + self.quiet + spread,
            };
            let wait = due
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10));
            tokio::select! {
                r = stop.changed() => {
                    if r.is_err() || *stop.borrow() {
                        return Outcome::Stopped;
                    }
                }
                Ok(()) = reroutes.changed() => {
                    return Outcome::Broken(Error::new(
                        ErrorKind::Unavailable,
                        "a member was taken out of rotation; moving the watch",
                    ));
                }
                _ = self.progress_wanted.notified() => {
                    // The answer moves the revision even when no event is
                    // ours; it also counts as hearing from the stream.
                    match self.ask(&mut stream, &mut mark_put).await {
                        Ok(a) => {
                            asked.get_or_insert(a);
                        }
                        Err(e) => return Outcome::Broken(e),
                    }
                }
                r = async { mark_put.as_mut().expect("guarded").await }, if mark_put.is_some() => {
                    mark_put = None;
                    match r {
                        Ok(rev) => mark_rev = rev,
                        Err(e) => self.mark_failed(&e),
                    }
                }
                msg = timeout(wait, stream.message()) => match msg {
                    Ok(Ok(Some(resp))) => {
                        last_heard = Instant::now();
                        spread = crate::backoff::jitter(self.quiet / 2);
                        if resp.compact_revision() > 0 {
                            return Outcome::Compacted;
                        }
                        if resp.canceled() {
                            return Outcome::Broken(Error::new(ErrorKind::Unavailable, format!("etcd cancelled the watch: {}", resp.cancel_reason())));
                        }
                        if resp.events().is_empty() && !resp.created() {
                            // A progress notification: the endpoint answers.
                            if let Some(a) = asked.as_mut() {
                                a.progress_answered = true;
                            }
                            self.progress_lock().doubt = false;
                        }
                        backoff.reset();
                        if resp.created() && needs_proof {
                            // Through an endpoint known to ignore progress
                            // requests, the mark is the only proof: ask now
                            // rather than after a quiet period.
                            if self.progress_lock().unsupported {
                                match self.ask(&mut stream, &mut mark_put).await {
                                    Ok(a) => asked = Some(a),
                                    Err(e) => return Outcome::Broken(e),
                                }
                            }
                        } else {
                            self.set_connected(true);
                        }
                        // Ready for subscribers once the model is loaded
                        // and the watch that keeps it current is in place.
                        self.synced.send_if_modified(|r| {
                            !matches!(std::mem::replace(r, Readiness::Ready), Readiness::Ready)
                        });
                        self.apply(&resp, &mark_key).await;
                    }
                    Ok(Ok(None)) => return Outcome::Broken(Error::new(ErrorKind::Unavailable, "etcd closed the watch stream")),
                    Ok(Err(e)) => return Outcome::Broken(Error::etcd("watching", e)),
                    Err(_) => {
                        if let Some(a) = asked.take() {
                            if last_heard <= a.at {
                                if a.progress && !a.mark {
                                    self.progress_lock().doubt = true;
                                }
                                return Outcome::Broken(Error::new(ErrorKind::Timeout, format!("watch stream silent for {:?}", last_heard.elapsed())));
                            }
                            // It spoke: alive. If it was the mark's event
                            // and not the progress answer, the endpoint
                            // ignores progress requests.
                            if a.progress && a.mark && !a.progress_answered && mark_rev > 0 && self.revision() >= mark_rev {
                                self.progress_unsupported();
                            }
                            continue;
                        }
                        // A quiet stream may be a dead one: ask, and give it
                        // another quiet period to answer.
                        match self.ask(&mut stream, &mut mark_put).await {
                            Ok(a) => asked = Some(a),
                            Err(e) => return Outcome::Broken(e),
                        }
                    }
                },
            }
        }
    }

    fn progress_lock(&self) -> MutexGuard<'_, ProgressSupport> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the stream to show how far it has come: a progress request,
    /// unless the endpoint is known to ignore them; the progress mark too
    /// when it does, or may (a stream was found silent after a progress
    /// request), and the mark can be written.
    async fn ask(
        &self,
        stream: &mut etcd_client::WatchStream,
        mark_put: &mut Option<MarkPut>,
    ) -> Result<Asked> {
        let (progress, mark) = {
            let p = self.progress_lock();
            (
                !p.unsupported || p.mark_refused,
                (p.unsupported || p.doubt) && !p.mark_refused,
            )
        };
        if progress && stream.request_progress().await.is_err() {
            return Err(Error::new(ErrorKind::Unavailable, "watch stream closed"));
        }
        if mark && mark_put.is_none() {
            let store = self.store.clone();
            *mark_put = Some(Box::pin(async move { store.put_progress_mark().await }));
        }
        Ok(Asked {
            at: Instant::now(),
            progress,
            mark,
            progress_answered: false,
        })
    }

    /// The endpoint ignores progress requests: the mark replaces them.
    fn progress_unsupported(&self) {
        let mut p = self.progress_lock();
        if !std::mem::replace(&mut p.unsupported, true) {
            log::warn!(
                "os-lively: the etcd endpoint ignores watch progress requests (etcd 3.4's gRPC proxy does); the watch writes {} instead when its stream is quiet",
                self.store.progress_mark_key()
            );
        }
    }

    /// Writing the mark failed; refused for good on a permission error.
    fn mark_failed(&self, e: &Error) {
        if e.kind() == ErrorKind::Auth || e.message().contains("permission denied") {
            let mut p = self.progress_lock();
            if !std::mem::replace(&mut p.mark_refused, true) {
                log::warn!(
                    "os-lively: cannot write the watch's progress mark {} ({e}); through an endpoint that ignores progress requests (etcd 3.4's gRPC proxy), a quiet watch is reopened every {:?} and a view's sync waits for the namespace's next event: grant this user write permission on that key",
                    self.store.progress_mark_key(),
                    self.quiet * 2
                );
            }
        } else {
            log::debug!("os-lively: writing the watch's progress mark failed: {e}");
        }
    }

    /// Applies one watch response to the model, revision by revision, and
    /// dispatches the resulting events.
    ///
    /// The hub lock is taken per revision, and the runtime thread yields
    /// every [`YIELD_EVERY`] events, so the catch-up after a resync (a
    /// thousand revisions in one response) never keeps a keepalive waiting.
    async fn apply(&self, resp: &WatchResponse, mark_key: &str) {
        let keys = self.store.keys();
        let events = resp.events();
        let mut i = 0;
        let mut since_yield = 0;
        while i < events.len() {
            if since_yield >= YIELD_EVERY {
                since_yield = 0;
                tokio::task::yield_now().await;
            }
            let first = i;
            let st = self.lock();
            let rev = events[i].kv().map(|kv| kv.mod_revision()).unwrap_or(0);
            // The changes of one revision (one transaction) are applied
            // together, so a service is never seen half-written.
            let mut changes: Vec<(String, Vec<Change>)> = Vec::new();
            let mut slot: HashMap<String, usize> = HashMap::new();
            while i < events.len() && events[i].kv().map(|kv| kv.mod_revision()).unwrap_or(0) == rev
            {
                let ev = &events[i];
                i += 1;
                let Some(kv) = ev.kv() else { continue };
                if kv.key() == mark_key.as_bytes() {
                    // Progress only: its revision is applied below.
                    continue;
                }
                let (uuid, change) = match keys.parse(kv.key()) {
                    Some(ParsedKey::Record(uuid)) => match ev.event_type() {
                        EventType::Put => match decode_stored(kv.key(), kv.value()) {
                            Ok(s) => (uuid, Change::Record(Some(s))),
                            Err(_) => {
                                log_once::skipped_key(kv.key());
                                continue;
                            }
                        },
                        EventType::Delete => (uuid, Change::Record(None)),
                    },
                    Some(ParsedKey::Status(Status::Up, uuid)) => {
                        (uuid, Change::UpKey(ev.event_type() == EventType::Put))
                    }
                    Some(ParsedKey::Status(Status::Down, uuid)) => (
                        uuid,
                        Change::ClosedMark(
                            ev.event_type() == EventType::Put
                                && kv.lease() == 0
                                && kv.value() == CLOSED_MARK,
                        ),
                    ),
                    Some(_) => continue,
                    None => {
                        log_once::skipped_key(kv.key());
                        continue;
                    }
                };
                // A lease revocation deletes thousands of keys in one
                // revision: find each service's slot by hash, not by scan.
                match slot.get(&uuid) {
                    Some(&at) => changes[at].1.push(change),
                    None => {
                        slot.insert(uuid.clone(), changes.len());
                        changes.push((uuid, vec![change]));
                    }
                }
            }
            // Each subscription's events come from each service's entry
            // before and after this revision; the model takes the revision
            // only once every subscription has its events staged (or fell
            // behind from the model as it was before), and the events are
            // queued only after, so a view read on an event sees it.
            let touched: Vec<Touched> = changes
                .into_iter()
                .map(|(uuid, list)| {
                    let before = self.model.entry(&uuid).unwrap_or_default();
                    let mut after = before.clone();
                    let mut hint = Hint::default();
                    for change in &list {
                        match change {
                            Change::Record(r) => after.record = r.clone(),
                            Change::UpKey(up) => {
                                after.up_key = *up;
                                if *up {
                                    after.closed = false;
                                }
                            }
                            Change::ClosedMark(closed) => {
                                hint.closed |= *closed;
                                after.closed = *closed;
                            }
                        }
                    }
                    // Our writes put an UP key only where it is missing or on
                    // another lease: a put over a present one is a takeover.
                    hint.moved =
                        before.up_key && list.iter().any(|c| matches!(c, Change::UpKey(true)));
                    Touched {
                        uuid,
                        before,
                        after,
                        hint,
                    }
                })
                .collect();
            let mut before_rev: Option<Snapshot> = None;
            let mut staged = Vec::new();
            for sub in &st.subs {
                match sub.stage(&touched, rev) {
                    Staged::Events(events) => staged.push((sub, events)),
                    Staged::Nothing => {}
                    Staged::Overflow => {
                        let told = before_rev.get_or_insert_with(|| self.model.snapshot());
                        sub.fall_behind(told.clone());
                    }
                }
            }
            for t in touched {
                self.model.put(&t.uuid, t.after);
            }
            for (sub, events) in staged {
                sub.push_all(events);
            }
            self.set_revision(rev);
            drop(st);
            since_yield += i - first;
        }
        // A progress notification (or an event batch) says everything up to
        // the header's revision has been seen.
        // A "created" response's header is the store's revision, not progress:
        // catch-up events may still be on their way.
        if let Some(h) = resp.header() {
            if events.is_empty() && !resp.created() {
                self.set_revision(h.revision());
            }
        }
    }

    /// Registers a subscription at the model's current revision; with
    /// `options.snapshot`, it is told an `Existing` event for each service
    /// in its set first, in chunks its queue holds (the first queued here).
    /// Holds the hub lock only to take a snapshot of the model: the events
    /// are made after, from the snapshot.
    pub(super) fn register(&self, filter: Filter, options: &SubscribeOptions) -> Arc<Sub> {
        let sub = Arc::new(Sub {
            thread: Mutex::new(None),
            filter,
            capacity: options.queue_capacity.max(1),
            queue: Mutex::new(Queue::default()),
            cond: Condvar::new(),
            counters: self.counters.clone(),
        });
        {
            let mut st = self.lock();
            if st.shut {
                // The client closed while this subscription was being made.
                sub.lock().cancelled = true;
                return sub;
            }
            if options.snapshot {
                // Told on its consumer's thread, in chunks its queue holds.
                sub.tell_existing(self.model.snapshot(), self.revision());
            }
            st.subs.push(sub.clone());
        }
        if options.snapshot {
            // The first chunk now, as far as the queue holds.
            self.settle(&sub);
        }
        sub
    }

    pub(super) fn unregister(&self, sub: &Arc<Sub>) {
        self.lock().subs.retain(|s| !Arc::ptr_eq(s, sub));
    }

    /// Catches `sub` up after it fell behind, or tells a new one what
    /// existed, as far as its queue has room (see [`Sub::settle`]).
    pub(super) fn settle(&self, sub: &Sub) {
        sub.settle(
            &|| {
                (
                    self.model.snapshot(),
                    self.model.generation(),
                    self.revision(),
                )
            },
            &|| self.model.generation(),
            &|| self.lock(),
        );
    }
}

/// One key change that matters to the model.
enum Change {
    Record(Option<Service>),
    UpKey(bool),
    /// The DOWN key changed; true when written as a clean close's mark.
    ClosedMark(bool),
}

/// What the watcher asked its stream, and when.
struct Asked {
    at: Instant,
    /// A progress request was sent.
    progress: bool,
    /// The progress mark is (being) written.
    mark: bool,
    /// A progress notification arrived since.
    progress_answered: bool,
}

type MarkPut = std::pin::Pin<Box<dyn std::future::Future<Output = Result<i64>> + Send>>;

/// Whether a load replaced the model.
enum Loaded {
    Yes,
    /// The client is closing.
    Stopped,
}

enum Outcome {
    Stopped,
    Compacted,
    Broken(Error),
}
