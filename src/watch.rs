//! Subscriptions: one shared etcd watch per client over the namespace feeds
//! an in-memory model of every service; each change of the model becomes
//! events, filtered into each subscription's bounded queue.
//!
//! etcd-client's watch stream neither reconnects nor notices a dead
//! connection, so the watcher asks for progress when the stream is quiet,
//! reconnects with jittered backoff, and resumes after the last revision
//! seen. When that revision was compacted it re-reads everything and each
//! subscription gets a `Resync` plus the differences from what it was told.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use etcd_client::{EventType, WatchClient, WatchOptions, WatchResponse};
use tokio::sync::watch;
use tokio::time::timeout;

use crate::backoff::{Backoff, sleep_or_stop};
use crate::error::{Error, ErrorKind, Result};
use crate::event::{DownReason, Event, EventKind};
use crate::keys::ParsedKey;
use crate::log_once;
use crate::model::{Entry, Model};
use crate::record::{Service, Status, decode_stored};
use crate::stats::Counters;
use crate::store::{Filter, Store};

/// How [`Client::subscribe`](crate::Client::subscribe) behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOptions {
    /// First deliver an [`EventKind::Existing`] event for every matching
    /// service, then changes, with no gap between them.
    pub snapshot: bool,
    /// Events held for a slow consumer before it is resynced instead
    /// (at least 1).
    pub queue_capacity: usize,
}

impl Default for SubscribeOptions {
    fn default() -> SubscribeOptions {
        SubscribeOptions {
            snapshot: false,
            queue_capacity: 1024,
        }
    }
}

/// How long a quiet watch stream may stay silent before we ask etcd for a
/// progress notification, and again before we call the stream dead: a
/// quarter of the status TTL, within these bounds, so a dead stream is left
/// within about half a TTL and a DOWN is never held back much longer.
const QUIET_MIN: Duration = Duration::from_millis(250);
const QUIET_MAX: Duration = Duration::from_secs(2);

/// What a subscriber has been told about one service.
#[derive(Debug, Clone)]
struct Known {
    status: Status,
    service: Service,
}

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
    request_timeout: Duration,
    quiet: Duration,
    synced: watch::Sender<Readiness>,
    stop: watch::Sender<bool>,
}

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

/// One subscription's queue and cancellation state.
struct Sub {
    /// The dispatcher thread of a callback subscription, joined by the
    /// first cancel made outside it (so a C caller may unload the library).
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    filter: Filter,
    capacity: usize,
    queue: Mutex<Queue>,
    cond: Condvar,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<Event>,
    known: HashMap<String, Known>,
    /// Events were dropped; a resync is owed once the consumer catches up.
    overflowed: bool,
    cancelled: bool,
    /// A callback subscription's dispatcher thread, while it runs.
    dispatcher: Option<ThreadId>,
}

impl Hub {
    pub(crate) fn new(
        store: Store,
        watch: WatchClient,
        counters: Arc<Counters>,
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
            request_timeout,
            quiet: (status_ttl / 4).clamp(QUIET_MIN, QUIET_MAX),
            synced: watch::channel(Readiness::Starting).0,
            stop: watch::channel(false).0,
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
    pub(crate) fn wait_for_revision(&self, revision: i64, timeout: Duration) -> bool {
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
                tokio::spawn(self.clone().run());
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
        &self,
        resync: bool,
        attempts: Option<u32>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Loaded> {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let mut failures = 0u32;
        loop {
            let e = match self.store.scan_at(Some(self.request_timeout)).await {
                Ok((services, revision)) => {
                    let st = self.lock();
                    self.model.replace(services);
                    self.set_revision(revision);
                    if resync {
                        Counters::bump(&self.counters.resyncs);
                        log::warn!(
                            "os-lively: watch history compacted; re-listed the namespace at revision {revision} and resynced subscribers"
                        );
                        for sub in &st.subs {
                            sub.resync(&self.model, revision);
                        }
                    }
                    drop(st);
                    return Ok(Loaded::Yes);
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

    /// The watcher: load, watch from the next revision, apply, dispatch;
    /// reconnect and resume on any failure. Until it is ready, a failure
    /// repeated [`START_ATTEMPTS`] times ends it and goes to the callers
    /// waiting in `ensure_started`.
    async fn run(self: Arc<Hub>) {
        let mut stop = self.stop.subscribe();
        match self.load(false, Some(START_ATTEMPTS), &mut stop).await {
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
                        log::warn!(
                            "os-lively: watch broke at revision {}, resuming: {e}",
                            from - 1
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
        let mut asked_progress = false;
        loop {
            let wait = self
                .quiet
                .saturating_sub(last_heard.elapsed())
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
                msg = timeout(wait, stream.message()) => match msg {
                    Ok(Ok(Some(resp))) => {
                        last_heard = Instant::now();
                        asked_progress = false;
                        if resp.compact_revision() > 0 {
                            return Outcome::Compacted;
                        }
                        if resp.canceled() {
                            return Outcome::Broken(Error::new(ErrorKind::Unavailable, format!("etcd cancelled the watch: {}", resp.cancel_reason())));
                        }
                        backoff.reset();
                        self.set_connected(true);
                        // Ready for subscribers once the model is loaded
                        // and the watch that keeps it current is in place.
                        self.synced.send_if_modified(|r| {
                            !matches!(std::mem::replace(r, Readiness::Ready), Readiness::Ready)
                        });
                        self.apply(&resp);
                    }
                    Ok(Ok(None)) => return Outcome::Broken(Error::new(ErrorKind::Unavailable, "etcd closed the watch stream")),
                    Ok(Err(e)) => return Outcome::Broken(Error::etcd("watching", e)),
                    Err(_) => {
                        if asked_progress {
                            return Outcome::Broken(Error::new(ErrorKind::Timeout, format!("watch stream silent for {:?}", last_heard.elapsed())));
                        }
                        // A quiet stream may be a dead one: ask, and give it
                        // another quiet period to answer.
                        if stream.request_progress().await.is_err() {
                            return Outcome::Broken(Error::new(ErrorKind::Unavailable, "watch stream closed"));
                        }
                        asked_progress = true;
                        last_heard = Instant::now();
                    }
                },
            }
        }
    }

    /// Applies one watch response to the model, revision by revision, and
    /// dispatches the resulting events.
    fn apply(&self, resp: &WatchResponse) {
        let keys = self.store.keys();
        let st = self.lock();
        let events = resp.events();
        let mut i = 0;
        while i < events.len() {
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
            // Each service's changes in this revision land in one step, so a
            // view reader never sees a transaction half-applied.
            let mut touched: Vec<String> = Vec::with_capacity(changes.len());
            for (uuid, list) in changes {
                self.model.update(&uuid, |entry| {
                    for change in list {
                        match change {
                            Change::Record(r) => entry.record = r,
                            Change::UpKey(up) => entry.up_key = up,
                        }
                    }
                });
                touched.push(uuid);
            }
            for uuid in touched {
                let after = self.model.entry(&uuid).unwrap_or_default();
                for sub in &st.subs {
                    sub.offer(&uuid, &after, rev);
                }
            }
            self.set_revision(rev);
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

    /// Registers a subscription at the model's current revision.
    fn register(&self, filter: Filter, options: &SubscribeOptions) -> Arc<Sub> {
        let sub = Arc::new(Sub {
            thread: Mutex::new(None),
            filter,
            capacity: options.queue_capacity.max(1),
            queue: Mutex::new(Queue::default()),
            cond: Condvar::new(),
            counters: self.counters.clone(),
        });
        let mut st = self.lock();
        let revision = self.revision();
        if st.shut {
            // The client closed while this subscription was being made.
            sub.lock().cancelled = true;
            return sub;
        }
        {
            let mut q = sub.lock();
            for (uuid, entry) in &self.model.snapshot() {
                let (Some(status), Some(record)) = (entry.effective(), &entry.record) else {
                    continue;
                };
                if !sub.filter.matches_record(record) {
                    continue;
                }
                q.known.insert(
                    uuid.clone(),
                    Known {
                        status,
                        service: record.clone(),
                    },
                );
                if options.snapshot {
                    q.events.push_back(make_event(
                        EventKind::Existing,
                        None,
                        uuid,
                        None,
                        Some(status),
                        Some(record),
                        revision,
                    ));
                }
            }
        }
        st.subs.push(sub.clone());
        sub
    }

    fn unregister(&self, sub: &Arc<Sub>) {
        self.lock().subs.retain(|s| !Arc::ptr_eq(s, sub));
    }

    /// Owed resync for `sub`, computed from the model (hub lock first, then
    /// the queue: the same order as dispatch).
    fn settle(&self, sub: &Sub) {
        let _st = self.lock();
        sub.resync(&self.model, self.revision());
    }
}

/// One key change that matters to the model.
enum Change {
    Record(Option<Service>),
    UpKey(bool),
}

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

fn make_event(
    kind: EventKind,
    reason: Option<DownReason>,
    uuid: &str,
    old_status: Option<Status>,
    new_status: Option<Status>,
    service: Option<&Service>,
    revision: i64,
) -> Event {
    let s = service.cloned();
    Event {
        kind,
        reason,
        uuid: uuid.to_string(),
        service_type: s
            .as_ref()
            .map(|s| s.service_type.clone())
            .unwrap_or_default(),
        host: s.as_ref().map(|s| s.host.clone()).unwrap_or_default(),
        region: s.as_ref().map(|s| s.region.clone()).unwrap_or_default(),
        old_status,
        new_status,
        service: s,
        revision,
    }
}

/// The events that turn what a subscriber knows of a service, `old`
/// (effective status and record, or nothing: not in its set), into `new`.
/// `moved_to` is the service's record when it still exists outside the set.
/// Shared by live changes and resync differences, so both speak the same
/// language.
///
/// A subscription is a set: a service entering it (created, or changed so
/// that it now passes the filter) is `Registered`; one leaving it is
/// `Removed`, after a `Down` (`Deleted`) if it was deleted while UP, or with
/// reason `Moved` (and its new record) if a change took it out of the
/// filter, since it did not go down.
fn diff(
    uuid: &str,
    old: Option<(Status, &Service)>,
    new: Option<(Status, &Service)>,
    moved_to: Option<&Service>,
    revision: i64,
) -> Vec<Event> {
    match (old, new) {
        (None, None) => vec![],
        (Some((st, _)), None) if moved_to.is_some() => vec![make_event(
            EventKind::Removed,
            Some(DownReason::Moved),
            uuid,
            Some(st),
            None,
            moved_to,
            revision,
        )],
        (None, Some((st, s))) => vec![make_event(
            EventKind::Registered,
            None,
            uuid,
            None,
            Some(st),
            Some(s),
            revision,
        )],
        (Some((st, s)), None) => {
            let mut v = Vec::new();
            if st == Status::Up {
                v.push(make_event(
                    EventKind::Down,
                    Some(DownReason::Deleted),
                    uuid,
                    Some(Status::Up),
                    Some(Status::Down),
                    Some(s),
                    revision,
                ));
            }
            v.push(make_event(
                EventKind::Removed,
                None,
                uuid,
                Some(Status::Down),
                None,
                Some(s),
                revision,
            ));
            v
        }
        (Some((ost, os)), Some((nst, ns))) => {
            let event = |kind, reason| {
                vec![make_event(
                    kind,
                    reason,
                    uuid,
                    Some(ost),
                    Some(nst),
                    Some(ns),
                    revision,
                )]
            };
            match (ost, nst) {
                (Status::Up, Status::Down) if ns.status == Status::Down => {
                    // The owner's deadline enforcement marks its DOWN, so
                    // subscribers tell a hung main loop from an operator.
                    let reason = if ns.heartbeat_missed {
                        DownReason::Missed
                    } else {
                        DownReason::Forced
                    };
                    event(EventKind::Down, Some(reason))
                }
                (Status::Up, Status::Down) => event(EventKind::Down, Some(DownReason::Expired)),
                (Status::Down, Status::Up) if os.forced_down => {
                    event(EventKind::Up, Some(DownReason::Lifted))
                }
                (Status::Down, Status::Up) => event(EventKind::Up, None),
                _ if os != ns => event(EventKind::Updated, None),
                _ => vec![],
            }
        }
    }
}

impl Sub {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues the events that `after`, the new state of `uuid` in the
    /// model, means for this subscription's set, or records the overflow.
    fn offer(&self, uuid: &str, after: &Entry, revision: i64) {
        let mut q = self.lock();
        if q.cancelled || q.overflowed {
            return;
        }
        let events = {
            let old = q.known.get(uuid).map(|k| (k.status, &k.service));
            let now = after.effective().zip(after.record.as_ref());
            let new = now.filter(|(_, s)| self.filter.matches_record(s));
            let moved_to = now.filter(|_| new.is_none()).map(|(_, s)| s);
            diff(uuid, old, new, moved_to, revision)
        };
        for event in events {
            if q.events.len() >= self.capacity {
                q.overflowed = true;
                return;
            }
            self.push(&mut q, event);
        }
    }

    fn push(&self, q: &mut Queue, event: Event) {
        if !event.uuid.is_empty() {
            match (event.new_status, &event.service) {
                (Some(status), Some(service)) if self.filter.matches_record(service) => {
                    q.known.insert(
                        event.uuid.clone(),
                        Known {
                            status,
                            service: service.clone(),
                        },
                    );
                }
                _ => {
                    q.known.remove(&event.uuid);
                }
            }
        }
        q.events.push_back(event);
        Counters::bump(&self.counters.events_delivered);
        self.cond.notify_all();
    }

    /// Brings the subscriber from what it was told to `model`: a `Resync`
    /// event, then the differences (in the same terms as live changes).
    fn resync(&self, model: &Model, revision: i64) {
        let model = model.snapshot();
        let mut q = self.lock();
        if q.cancelled {
            return;
        }
        q.overflowed = false;
        let mut events = vec![make_event(
            EventKind::Resync,
            None,
            "",
            None,
            None,
            None,
            revision,
        )];
        // The set as it is now, and where known services outside it went.
        let mut current: HashMap<&str, (Status, &Service)> = HashMap::new();
        let mut outside: HashMap<&str, &Service> = HashMap::new();
        for (uuid, entry) in &model {
            if let (Some(st), Some(rec)) = (entry.effective(), &entry.record) {
                if self.filter.matches_record(rec) {
                    current.insert(uuid.as_str(), (st, rec));
                } else if q.known.contains_key(uuid) {
                    outside.insert(uuid.as_str(), rec);
                }
            }
        }
        for (uuid, known) in &q.known {
            events.extend(diff(
                uuid,
                Some((known.status, &known.service)),
                current.get(uuid.as_str()).copied(),
                outside.get(uuid.as_str()).copied(),
                revision,
            ));
        }
        for (uuid, now) in &current {
            if !q.known.contains_key(*uuid) {
                events.extend(diff(uuid, None, Some(*now), None, revision));
            }
        }
        Counters::bump(&self.counters.resyncs);
        for e in events {
            self.push(&mut q, e);
        }
    }

    fn cancel_queue(&self) {
        let mut q = self.lock();
        q.cancelled = true;
        self.cond.notify_all();
    }

    /// Waits for the next event until `deadline`. `Err(Closed)` once cancelled.
    fn pop(&self, hub: &Hub, deadline: Option<Instant>) -> Result<Option<Event>> {
        let mut q = self.lock();
        loop {
            if q.cancelled {
                return Err(Error::new(
                    ErrorKind::Closed,
                    "the subscription is cancelled",
                ));
            }
            if let Some(e) = q.events.pop_front() {
                let owe_resync = q.overflowed && q.events.len() < self.capacity / 2 + 1;
                drop(q);
                if owe_resync {
                    hub.settle(self);
                }
                return Ok(Some(e));
            }
            if q.overflowed {
                drop(q);
                hub.settle(self);
                q = self.lock();
                continue;
            }
            match deadline {
                None => q = self.cond.wait(q).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    q = self
                        .cond
                        .wait_timeout(q, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }
}

/// A live subscription. Events arrive in etcd revision order. Dropping it
/// cancels it.
///
/// Like every handle of a client, it keeps the client's connection alive
/// (lease, runtime thread, watch) while it lives, even after every
/// [`Client`](crate::Client) clone is dropped; [`Client::close`](crate::Client::close)
/// ends it (iteration ends, the callback stops and is dropped, reads return
/// [`ErrorKind::Closed`]). In a child forked after it was made, reads return
/// [`ErrorKind::Forked`].
pub struct Subscription {
    canceller: Canceller,
    pull: bool,
    /// Keeps the connection alive while this handle lives (dropped after
    /// the cancel in `Drop`).
    client: crate::Client,
}

/// Cancels a subscription from anywhere, including from inside its own
/// callback. Cheap to clone. Unlike a [`Subscription`], it does not keep
/// the client's connection alive.
#[derive(Clone)]
pub struct Canceller {
    sub: Arc<Sub>,
    hub: Weak<Hub>,
    /// The process that made the subscription: a forked child has none of
    /// its threads to wait for.
    made: crate::fork::Stamp,
}

impl Canceller {
    /// Stops the subscription. Called outside its callback, it returns only
    /// once no callback is running and none will start (the callback has
    /// been dropped, so whatever it owned is released). Called from inside
    /// the callback, the current callback finishes and no other starts.
    /// Idempotent.
    pub fn cancel(&self) {
        if self.made.is_other_process() {
            // A forked child: the dispatcher thread exists only in the
            // parent, so there is nothing to stop or wait for here.
            return;
        }
        if let Some(hub) = self.hub.upgrade() {
            hub.unregister(&self.sub);
        }
        let mut q = self.sub.lock();
        q.cancelled = true;
        self.sub.cond.notify_all();
        let me = std::thread::current().id();
        while q.dispatcher.is_some_and(|d| d != me) {
            q = self.sub.cond.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        let inside_callback = q.dispatcher == Some(me);
        drop(q);
        if !inside_callback {
            let thread = self
                .sub
                .thread
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(t) = thread {
                let _ = t.join();
            }
        }
    }

    /// True once cancelled (or the client closed).
    pub fn is_cancelled(&self) -> bool {
        self.sub.lock().cancelled
    }
}

impl Subscription {
    /// Waits up to `timeout` for the next event; `Ok(None)` on timeout,
    /// `Err(Closed)` once cancelled or the client closed. Only for
    /// subscriptions without a callback.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Event>> {
        self.pull_check()?;
        let hub = self.canceller.hub.upgrade().ok_or_else(Error::closed)?;
        // A timeout too large for an `Instant` (Duration::MAX) waits forever.
        let deadline = Instant::now().checked_add(timeout);
        self.canceller.sub.pop(&hub, deadline)
    }

    /// Waits for the next event; `Err(Closed)` once cancelled.
    pub fn recv(&self) -> Result<Event> {
        self.pull_check()?;
        let hub = self.canceller.hub.upgrade().ok_or_else(Error::closed)?;
        loop {
            if let Some(e) = self.canceller.sub.pop(&hub, None)? {
                return Ok(e);
            }
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Result<Option<Event>> {
        self.recv_timeout(Duration::ZERO)
    }

    fn pull_check(&self) -> Result<()> {
        // Checked first: in a forked child the queue is a frozen copy.
        self.client.check_forked()?;
        if self.pull {
            Ok(())
        } else {
            Err(Error::invalid(
                "this subscription delivers to its callback; it has no queue to read",
            ))
        }
    }

    /// Cancels; see [`Canceller::cancel`].
    pub fn cancel(&self) {
        self.canceller.cancel();
    }

    /// A handle that can cancel this subscription from any thread.
    pub fn canceller(&self) -> Canceller {
        self.canceller.clone()
    }

    /// Events queued and not yet consumed.
    pub fn pending(&self) -> usize {
        self.canceller.sub.lock().events.len()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.canceller.cancel();
    }
}

impl Iterator for &Subscription {
    type Item = Event;
    /// Blocks for the next event; ends when the subscription is cancelled.
    fn next(&mut self) -> Option<Event> {
        self.recv().ok()
    }
}

/// A boxed subscriber callback.
pub(crate) type Callback = Box<dyn FnMut(&Event) + Send + 'static>;

/// Registers a subscription on `hub` (already loaded) and, for a callback,
/// starts its dispatcher thread.
pub(crate) fn subscribe(
    owner: &crate::Client,
    hub: &Arc<Hub>,
    filter: Filter,
    options: &SubscribeOptions,
    callback: Option<Callback>,
) -> Result<Subscription> {
    if filter.status.is_some() {
        return Err(Error::invalid(
            "subscriptions filter by uuid, type, host or region; status changes are the events themselves",
        ));
    }
    let sub = hub.register(filter, options);
    let canceller = Canceller {
        sub: sub.clone(),
        hub: Arc::downgrade(hub),
        made: crate::fork::Stamp::now(),
    };
    let Some(mut callback) = callback else {
        return Ok(Subscription {
            canceller,
            pull: true,
            client: owner.clone(),
        });
    };
    let weak_hub = Arc::downgrade(hub);
    let thread_sub = sub.clone();
    let (started_tx, started_rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("lively-sub".into())
        .spawn(move || {
            let sub = thread_sub;
            sub.lock().dispatcher = Some(std::thread::current().id());
            let _ = started_tx.send(());
            while let Some(hub) = weak_hub.upgrade() {
                let next = sub.pop(&hub, None);
                drop(hub);
                match next {
                    Ok(Some(event)) => callback(&event),
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
            // Release what the callback owns before anyone waiting in cancel()
            // is told no callback runs any more.
            drop(callback);
            let mut q = sub.lock();
            q.cancelled = true;
            q.dispatcher = None;
            sub.cond.notify_all();
        });
    let spawned = spawned.map(|t| {
        *sub.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
    });
    if let Err(e) = spawned {
        hub.unregister(&sub);
        return Err(Error::new(
            ErrorKind::Internal,
            format!("spawning the subscription thread: {e}"),
        ));
    }
    let _ = started_rx.recv();
    Ok(Subscription {
        canceller,
        pull: false,
        client: owner.clone(),
    })
}
