//! The watch stream's protocol: open it after the revision the model
//! reflects, apply what it delivers, check it when it is quiet (see
//! [`super::liveness`]), and reopen it with backoff when it breaks or its
//! history was compacted.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use etcd_client::WatchOptions;
use tokio::sync::watch;
use tokio::time::timeout;

use crate::backoff::{Backoff, sleep_or_stop};
use crate::error::{Error, ErrorKind, Result};
use crate::runtime::supervise::{checkpoint, resync_wanted};
use crate::stats::Counters;
use crate::store::Changes;

use super::hub::Hub;
use super::liveness::{Check, PROGRESS_ANSWER_ID, Pacing, Step};
use super::load::Loaded;

/// How many times the first load (and the first watch) of a hub is tried
/// before `view()` / `subscribe()` report the failure; the next call starts
/// over.
const START_ATTEMPTS: u32 = 3;

enum Outcome {
    Stopped,
    Compacted,
    Broken(Error),
}

/// A read of etcd a check is waiting for.
enum Answer {
    Revision(Result<i64>),
    Changes(Result<Changes>),
}

type Probe = std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send>>;

impl Hub {
    /// The watcher: load, watch from the next revision, apply, dispatch;
    /// reconnect and resume on any failure. Until it is ready, a failure
    /// repeated [`START_ATTEMPTS`] times ends it and goes to the callers
    /// waiting in `ensure_started`.
    pub(super) async fn run(self: Arc<Hub>) {
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
        let mut pacing = Pacing::new(self.quiet, self.status_ttl);
        // Since when the stream has said nothing and no check found news.
        let mut quiet_since = Instant::now();
        // A random part of the check period, drawn anew whenever the
        // stream speaks: the watchers of a namespace all hear its last
        // event at once, and would all read etcd at the same moment.
        let mut spread = crate::backoff::jitter(self.quiet / 2);
        let mut check: Option<Check> = None;
        let mut probe: Option<Probe> = None;
        // The first stream follows a fresh read of the namespace: its
        // creation is enough to call the view current. A stream reopened
        // after a loss must show it moves first (an event, a progress
        // notification, a check that finds the model current): through
        // etcd's gRPC proxy, a new stream is "created" by the proxy itself
        // even when the etcd member behind it is cut off from the cluster
        // and will never send anything, and a view counting that as
        // connected would answer from its old copy for ever (a crashed
        // service UP) instead of going Stale.
        let needs_proof = self.is_ready();
        // A test made this stream deaf: it drops whatever arrives, as a
        // stream whose member stopped sending would (feature `test-hooks`).
        let mut deaf = false;
        loop {
            checkpoint("watch");
            if resync_wanted() {
                return Outcome::Compacted;
            }
            deaf |= hooks::take_deafen(self.store.keys().root());
            let now = Instant::now();
            let due = match &check {
                Some(c) => c.wake(now),
                None => quiet_since + pacing.interval() + spread,
            };
            let wait = due
                .saturating_duration_since(now)
                .max(Duration::from_millis(10));
            let step = tokio::select! {
                r = stop.changed() => {
                    if r.is_err() || *stop.borrow() {
                        return Outcome::Stopped;
                    }
                    None
                }
                Ok(()) = reroutes.changed() => {
                    return Outcome::Broken(Error::new(
                        ErrorKind::Unavailable,
                        "a member was taken out of rotation; moving the watch",
                    ));
                }
                _ = self.check_wanted.notified() => match check.as_mut() {
                    Some(c) => Some(c.hurry(Instant::now())),
                    None => match self.start_check(&mut stream, true).await {
                        Ok((c, step)) => {
                            check = Some(c);
                            Some(step)
                        }
                        Err(e) => return Outcome::Broken(e),
                    },
                },
                answer = async { probe.as_mut().expect("guarded").await }, if probe.is_some() => {
                    probe = None;
                    let now = Instant::now();
                    check.as_mut().map(|c| match answer {
                        Answer::Revision(Ok(etcd)) => c.on_revision(
                            etcd,
                            self.revision(),
                            self.keys.load(Ordering::Acquire),
                        ),
                        Answer::Changes(Ok(changes)) => {
                            c.on_changes(&changes, self.keys.load(Ordering::Acquire), now)
                        }
                        Answer::Revision(Err(e)) | Answer::Changes(Err(e)) => {
                            log::debug!("os-lively: the watch's check could not read etcd: {e}");
                            c.on_error(now)
                        }
                    })
                }
                msg = timeout(wait, stream.message()) => match msg {
                    Ok(Ok(Some(_))) if deaf => None,
                    Ok(Ok(Some(resp))) => {
                        quiet_since = Instant::now();
                        spread = crate::backoff::jitter(self.quiet / 2);
                        if resp.compact_revision() > 0 {
                            return Outcome::Compacted;
                        }
                        if resp.canceled() {
                            return Outcome::Broken(Error::new(ErrorKind::Unavailable, format!("etcd cancelled the watch: {}", resp.cancel_reason())));
                        }
                        backoff.reset();
                        let mut step = None;
                        if resp.created() {
                            if needs_proof {
                                // Prove it now rather than after a quiet
                                // period: a view is Stale meanwhile.
                                match self.start_check(&mut stream, true).await {
                                    Ok((c, s)) => {
                                        check = Some(c);
                                        step = Some(s);
                                    }
                                    Err(e) => return Outcome::Broken(e),
                                }
                            } else {
                                self.set_connected(true);
                            }
                        } else if resp.events().is_empty() {
                            // A progress notification or the answer to our
                            // request. An answer proves the stream alive but
                            // names no revision the model may take, nor that
                            // its member still has a leader (see
                            // `liveness`): the check goes on to read etcd,
                            // and only its end marks the view connected.
                            self.progress_ignored.store(false, Ordering::Release);
                            if resp.watch_id() == PROGRESS_ANSWER_ID {
                                if let Some(c) = check.as_mut() {
                                    step = Some(c.on_progress_answer(Instant::now()));
                                }
                            } else {
                                // etcd's periodic notification, in order
                                // with the events.
                                self.set_connected(true);
                                pacing.idle();
                                check = None;
                                probe = None;
                            }
                        } else {
                            // Events: alive, and whatever a check was
                            // waiting for is delivered.
                            self.set_connected(true);
                            check = None;
                            probe = None;
                            pacing.active();
                        }
                        self.set_ready();
                        self.apply(&resp).await;
                        step
                    }
                    Ok(Ok(None)) => return Outcome::Broken(Error::new(ErrorKind::Unavailable, "etcd closed the watch stream")),
                    Ok(Err(e)) => return Outcome::Broken(Error::etcd("watching", e)),
                    Err(_) => match check.as_mut() {
                        Some(c) => Some(c.on_timer(Instant::now())),
                        None => match self.start_check(&mut stream, false).await {
                            Ok((c, s)) => {
                                check = Some(c);
                                Some(s)
                            }
                            Err(e) => return Outcome::Broken(e),
                        },
                    },
                },
            };
            match step {
                None | Some(Step::WaitUntil(_)) => {}
                Some(Step::ReadRevision) => {
                    let (store, limit) = (self.store.clone(), self.request_timeout);
                    probe = Some(Box::pin(async move {
                        Answer::Revision(bounded(limit, store.revision()).await)
                    }));
                }
                Some(Step::ReadChanges { from, .. }) => {
                    let (store, limit) = (self.store.clone(), self.request_timeout);
                    probe = Some(Box::pin(async move {
                        Answer::Changes(bounded(limit, store.changes_after(from)).await)
                    }));
                }
                Some(Step::Current(revision)) => {
                    if check
                        .as_ref()
                        .is_some_and(|c| c.progress_overdue(Instant::now()))
                    {
                        self.progress_unanswered();
                    }
                    check = None;
                    self.set_verified(revision);
                    self.set_connected(true);
                    quiet_since = Instant::now();
                    pacing.idle();
                }
                Some(Step::Dead(why)) => {
                    return Outcome::Broken(Error::new(ErrorKind::Timeout, why));
                }
            }
        }
    }

    /// Starts a check of a quiet stream: a progress request, and a read
    /// of etcd if it goes unanswered (at once when `hurry`, or when the
    /// endpoint is known to ignore progress requests).
    async fn start_check(
        &self,
        stream: &mut etcd_client::WatchStream,
        hurry: bool,
    ) -> Result<(Check, Step)> {
        if stream.request_progress().await.is_err() {
            return Err(Error::new(ErrorKind::Unavailable, "watch stream closed"));
        }
        let now = Instant::now();
        let wait = !hurry && !self.progress_ignored.load(Ordering::Acquire);
        let mut check = Check::new(now, self.quiet, true, wait);
        let step = check.on_timer(now);
        Ok((check, step))
    }

    /// A progress request went unanswered while a read of etcd found the
    /// model current: the endpoint ignores them (etcd 3.4's gRPC proxy).
    fn progress_unanswered(&self) {
        if !self.progress_ignored.swap(true, Ordering::AcqRel) {
            log::info!(
                "os-lively: the etcd endpoint does not answer watch progress requests (etcd 3.4's gRPC proxy drops them); a quiet watch is checked by reading etcd's revision instead"
            );
        }
    }
}

/// Awaits `call` within `limit`; a timeout is an error.
async fn bounded<T>(
    limit: Duration,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match timeout(limit, call).await {
        Ok(r) => r,
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("no answer from etcd within {limit:?}"),
        )),
    }
}

/// Test-only (feature `test-hooks`): a watch stream that stops hearing.
#[cfg(feature = "test-hooks")]
pub mod hooks {
    use std::sync::Mutex;

    /// The namespace whose watch stream is to go deaf.
    static DEAFEN: Mutex<Option<String>> = Mutex::new(None);

    fn armed() -> std::sync::MutexGuard<'static, Option<String>> {
        DEAFEN.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the watch stream open now on namespace `namespace` (as
    /// configured, e.g. `/t-x`) drop everything that arrives on it from its
    /// next turn on, as a stream whose etcd member stopped sending would;
    /// a stream opened after is not affected.
    pub fn deafen_watch(namespace: &str) {
        *armed() = Some(format!("{namespace}/services/"));
    }

    /// True until a watch stream took the [`deafen_watch`] arming.
    pub fn deafen_pending() -> bool {
        armed().is_some()
    }

    pub(super) fn take_deafen(root: &str) -> bool {
        let mut armed = armed();
        if armed.as_deref() == Some(root) {
            *armed = None;
            return true;
        }
        false
    }
}

#[cfg(not(feature = "test-hooks"))]
mod hooks {
    pub(super) fn take_deafen(_root: &str) -> bool {
        false
    }
}
