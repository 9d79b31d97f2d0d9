//! The client's lease: granted on the first UP registration (a client that
//! only reads never costs a grant or a revoke), kept alive in the
//! background, and replaced when it is found gone.
//!
//! The lease knows nothing of services: it tells the owner registry
//! (`src/owner/`) what happened to it through [`LeaseEvent`]s (alive at
//! a revision, re-granted), and the owner decides what each held service
//! needs.
//!
//! etcd-client's `keep_alive()` gives one stream with no timer and no
//! reconnect, and queuing a request on a dead stream succeeds silently; so we
//! send on our own timer and reconnect with jittered backoff. A lease is
//! lost only when it is: etcd says so (TTL 0, lease not found). A late
//! answer is not a failure (etcd's gRPC proxy answers on its own cadence, a
//! loaded etcd seconds late); the stream is reopened when it broke, when a
//! member left rotation, or after a whole TTL without an answer.
//!
//! The keepalive's timer never waits on other work: events go through an
//! unbounded channel, and what the owner does with them runs in tasks of
//! its own.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd_client::{LeaseClient, LeaseKeepAliveStream, LeaseKeeper, LeaseTimeToLiveOptions};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, timeout};

use crate::auth::Auth;
use crate::backoff::{Backoff, sleep_or_stop};
use crate::error::{Error, ErrorKind, Result};
use crate::stats::Counters;
use crate::steer::Steering;
use crate::store::Store;

/// What the lease tells the owner registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseEvent {
    /// A keepalive was answered: the lease `id` is alive, and the store was
    /// at `revision` (when the answer said so). `moved`: answers in a row,
    /// this one included, whose revision was not the one before's (0: the
    /// same; an answer without one counts as the first that moved).
    Alive {
        id: i64,
        revision: Option<i64>,
        moved: u32,
    },
    /// The lease `dead` was found gone and `id` granted in its place: the
    /// keys that were bound to `dead` are gone too.
    Regranted { dead: i64, id: i64 },
}

/// The lease state shared by the keepalive task and the calls that register
/// services.
pub(crate) struct Lease {
    client: LeaseClient,
    store: Store,
    state: Mutex<State>,
    /// Serializes grants, re-grants and the start of close: a call and the
    /// keepalive may both find the lease gone, and only one new lease must
    /// result; none after close began.
    regrant: tokio::sync::Mutex<()>,
    counters: Arc<Counters>,
    requested_ttl: i64,
    request_timeout: Duration,
    events: mpsc::UnboundedSender<LeaseEvent>,
    /// Signalled when the first lease is granted (the keepalive waits).
    granted: tokio::sync::Notify,
}

struct State {
    /// 0 until the first UP registration grants a lease.
    id: i64,
    /// Our lease that expired; UP keys still bound to it are ours to move.
    previous: i64,
    granted_ttl: i64,
    /// Close began: no grant, no re-grant.
    closing: bool,
}

impl Lease {
    /// Shows a newly granted lease in the stats.
    fn count_granted(&self, id: i64, granted: i64) {
        self.counters.lease_id.store(id, Ordering::Relaxed);
        self.counters
            .lease_granted_ttl
            .store(granted, Ordering::Relaxed);
        self.counters
            .lease_ttl_remaining
            .store(granted, Ordering::Relaxed);
    }

    /// The client's lease state, with no lease granted yet ([`Lease::ensure`]
    /// grants it).
    pub(crate) fn new(
        client: LeaseClient,
        store: Store,
        requested_ttl: i64,
        request_timeout: Duration,
        counters: Arc<Counters>,
    ) -> (Arc<Lease>, mpsc::UnboundedReceiver<LeaseEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        let lease = Arc::new(Lease {
            client,
            store,
            state: Mutex::new(State {
                id: 0,
                previous: 0,
                granted_ttl: 0,
                closing: false,
            }),
            regrant: tokio::sync::Mutex::new(()),
            counters,
            requested_ttl,
            request_timeout,
            events,
            granted: tokio::sync::Notify::new(),
        });
        (lease, rx)
    }

    fn closed_error() -> Error {
        Error::new(
            ErrorKind::Closed,
            "the client is closing: no lease is granted after close()",
        )
    }

    /// Close begins: no grant or re-grant from now on, so no key can be
    /// bound to a lease that close would not revoke. Returns the lease to
    /// revoke (0: none was granted).
    pub(crate) async fn begin_close(&self) -> i64 {
        let _one_at_a_time = self.regrant.lock().await;
        let mut st = self.state();
        st.closing = true;
        st.id
    }

    /// The lease id, granting the client's first lease if none is yet.
    pub(crate) async fn ensure(&self) -> Result<i64> {
        let id = self.id();
        if id != 0 {
            return Ok(id);
        }
        let _one_at_a_time = self.regrant.lock().await;
        if self.state().closing {
            return Err(Lease::closed_error());
        }
        let id = self.id();
        if id != 0 {
            return Ok(id);
        }
        let (id, granted) = grant(&self.client, self.requested_ttl, self.request_timeout).await?;
        {
            let mut st = self.state();
            st.id = id;
            st.granted_ttl = granted;
        }
        self.count_granted(id, granted);
        self.granted.notify_one();
        Ok(id)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state is plain data, valid even if a holder panicked.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current lease id.
    pub(crate) fn id(&self) -> i64 {
        self.state().id
    }

    /// The TTL etcd granted, in seconds.
    pub(crate) fn granted_ttl(&self) -> i64 {
        self.state().granted_ttl
    }

    /// How often keepalives are sent: a third of the granted TTL.
    pub(crate) fn period(&self) -> Duration {
        Duration::from_millis((self.granted_ttl().max(1) as u64 * 1000) / 3)
    }

    /// Our lease that expired before the current one (0: none).
    pub(crate) fn previous(&self) -> i64 {
        self.state().previous
    }

    /// Replaces the lease `dead` (found gone) with a new one, and tells the
    /// owner, which puts back what the services it holds need (in the
    /// background: the caller's keepalive or write need not wait for
    /// thousands of them). A no-op if someone already replaced it;
    /// [`ErrorKind::Closed`] once close began.
    pub(crate) async fn regrant(self: &Arc<Self>, dead: i64) -> Result<()> {
        let _one_at_a_time = self.regrant.lock().await;
        if self.state().closing {
            return Err(Lease::closed_error());
        }
        if self.id() != dead {
            return Ok(());
        }
        let (id, granted) = grant(&self.client, self.requested_ttl, self.request_timeout).await?;
        {
            let mut st = self.state();
            st.previous = dead;
            st.id = id;
            st.granted_ttl = granted;
        }
        Counters::bump(&self.counters.lease_regrants);
        self.count_granted(id, granted);
        log::warn!(
            "os-lively: lease {dead:x} expired (this client was cut off from etcd for longer than its TTL); granted lease {id:x}"
        );
        let _ = self.events.send(LeaseEvent::Regranted { dead, id });
        Ok(())
    }

    /// The heartbeat: a keepalive every TTL/3 on one stream, answers taken
    /// as they come, the stream reopened (with jittered backoff) only when
    /// it is dead, the lease re-granted only when etcd says it is gone.
    /// Runs until `stop` turns true.
    ///
    /// A late answer is not a failure. etcd's gRPC proxy answers a
    /// keepalive only when its own keepalive of the lease comes back (every
    /// TTL/3, on a 500 ms tick), and a slow etcd answers seconds late; a
    /// client that called such answers failures and reopened its stream
    /// added a stream, a first keepalive and a probe round each time, the
    /// load that feeds on itself (issue 29). So the stream is left only when
    /// its transport says it broke, when steering took a member out of
    /// rotation (the stream may be on it), or when a whole TTL passed since
    /// etcd last answered (the lease is in doubt: a new stream's first
    /// answer tells alive or gone). A late answer only makes endpoint
    /// steering look, which is how a blackholed member is left within
    /// about TTL/2.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // Nothing to keep alive before the first UP registration.
        while self.id() == 0 {
            tokio::select! {
                _ = self.granted.notified() => {}
                _ = stop.changed() => return,
            }
        }
        let mut stream: Option<Stream> = None;
        let mut backoff = Backoff::new(
            Duration::from_millis(50),
            self.period().max(Duration::from_millis(200)),
        );
        let mut failing = false;
        // The revision of the last answer that gave one, and how many
        // answers in a row moved it.
        let mut last_revision: Option<i64> = None;
        let mut moved = 0u32;
        // When etcd last said the lease was alive: the lease cannot have
        // expired before a TTL after it.
        let mut last_answer = Instant::now();
        // How long answers have been taking (the slowest lately, decaying
        // by an eighth per answer): an answer no later than twice that is
        // no news (a slow etcd, the gRPC proxy's cadence) and raises no
        // suspicion, so steering probes once when answers turn slow, not
        // at every keepalive while they stay slow.
        let mut slow = Duration::ZERO;
        let steering = self.store.steering().clone();
        let mut reroutes = self.store.reroutes();
        reroutes.mark_unchanged();
        loop {
            if *stop.borrow() {
                return;
            }
            crate::runtime::supervise::checkpoint("lease");
            if reroutes.has_changed().unwrap_or(false) {
                // A member left rotation: the stream may be on it.
                reroutes.mark_unchanged();
                stream = None;
            }
            let id = self.id();
            let period = self.period();
            let ttl = period * 3;
            // An answer this late makes endpoint steering look, so a
            // blackholed member is out of rotation, and the stream moved,
            // within TTL/18 + steering's probe timeout (TTL/6) of the
            // keepalive it swallowed: about TTL/4.
            let late = (period / 6).clamp(Duration::from_millis(100), Duration::from_secs(2));
            let open = match stream.as_mut() {
                Some(s) if s.id == id => s,
                _ => {
                    // Opening sends the first keepalive and waits for its
                    // answer: through the proxy that may take TTL/3 + 0.5 s,
                    // and from a slow etcd seconds. Given up (and counted a
                    // failure) only when the lease would be in doubt anyway.
                    // At least long enough for the proxy's cadence.
                    let now = Instant::now();
                    let least = period + late.max(Duration::from_secs(1));
                    let give_up = (last_answer + ttl)
                        .max(now + least)
                        .min(now + self.request_timeout.max(least));
                    let sent = Instant::now();
                    let opened = tokio::select! {
                        r = self.open(id, give_up, late, &steering) => Some(r),
                        Ok(()) = reroutes.changed() => {
                            reroutes.mark_unchanged();
                            None
                        }
                        r = stop.changed() => {
                            if r.is_err() || *stop.borrow() {
                                return;
                            }
                            continue;
                        }
                    };
                    match opened {
                        None => {
                            // Rerouted while opening: try again elsewhere.
                            continue;
                        }
                        Some(Ok(Opened::Alive(s))) => {
                            last_answer = Instant::now();
                            if failing {
                                Counters::bump(&self.counters.reconnects);
                                log::warn!(
                                    "os-lively: keepalive stream for lease {id:x} re-opened"
                                );
                            }
                            failing = false;
                            backoff.reset();
                            Counters::bump(&self.counters.keepalives_sent);
                            moved = 1;
                            let _ = self.events.send(LeaseEvent::Alive {
                                id,
                                revision: None,
                                moved,
                            });
                            stream = Some(Stream {
                                next: sent + period,
                                unanswered: None,
                                ..*s
                            });
                            continue;
                        }
                        Some(Ok(Opened::Gone)) => {
                            if self.replace(id, &mut backoff, &mut stop).await {
                                return;
                            }
                            continue;
                        }
                        Some(Err(e)) => {
                            if self
                                .failed(id, &e, &mut failing, &mut backoff, &steering, &mut stop)
                                .await
                            {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            // The stream is dead if etcd has not answered for a whole TTL
            // while keepalives were waiting for an answer.
            let dead_at = open.unanswered.map(|_| last_answer + ttl);
            let suspect_after = (slow * 2).max(late).min(ttl / 2);
            let suspect_at = open
                .unanswered
                .filter(|_| !open.suspected)
                .map(|s| s + suspect_after);
            let got = tokio::select! {
                _ = tokio::time::sleep_until(open.next) => Got::Due,
                msg = open.responses.message() => Got::Answer(msg),
                _ = sleep_until_some(suspect_at) => Got::Late,
                _ = sleep_until_some(dead_at) => Got::Silent,
                Ok(()) = reroutes.changed() => {
                    reroutes.mark_unchanged();
                    Got::Rerouted
                }
                r = stop.changed() => {
                    if r.is_err() || *stop.borrow() {
                        return;
                    }
                    continue;
                }
            };
            match got {
                Got::Due => {
                    let now = Instant::now();
                    if let Err(e) = open.keeper.keep_alive().await {
                        let e = Error::etcd("keepalive: sending", e);
                        stream = None;
                        if self
                            .failed(id, &e, &mut failing, &mut backoff, &steering, &mut stop)
                            .await
                        {
                            return;
                        }
                        continue;
                    }
                    open.unanswered.get_or_insert(now);
                    // Paced from the schedule, never from answers or other
                    // work: one keepalive per period, however late the
                    // answers (a stream that fell behind by more than a
                    // period does not send a burst to catch up).
                    open.next = (open.next + period).max(now + period / 2);
                }
                Got::Late => {
                    open.suspected = true;
                    steering.suspect(&format!(
                        "keepalive for lease {id:x} unanswered after {suspect_after:?}"
                    ));
                }
                Got::Answer(Ok(Some(resp))) if resp.ttl() <= 0 => {
                    stream = None;
                    if self.replace(id, &mut backoff, &mut stop).await {
                        return;
                    }
                }
                Got::Answer(Ok(Some(resp))) => {
                    last_answer = Instant::now();
                    if let Some(sent) = open.unanswered.take() {
                        slow = (last_answer - sent).max(slow - slow / 8);
                    }
                    open.suspected = false;
                    Counters::bump(&self.counters.keepalives_sent);
                    self.counters
                        .lease_ttl_remaining
                        .store(resp.ttl(), Ordering::Relaxed);
                    if failing {
                        Counters::bump(&self.counters.reconnects);
                        log::warn!("os-lively: keepalive stream for lease {id:x} re-opened");
                    }
                    failing = false;
                    backoff.reset();
                    let revision = resp.header().map(|h| h.revision());
                    moved = match (revision, last_revision) {
                        (Some(now), Some(before)) if now == before => 0,
                        (Some(_), _) => moved.saturating_add(1),
                        (None, _) => 1,
                    };
                    last_revision = revision.or(last_revision);
                    let _ = self.events.send(LeaseEvent::Alive {
                        id,
                        revision,
                        moved,
                    });
                }
                Got::Answer(other) => {
                    let e = match other {
                        Err(e) => Error::etcd("keepalive: receiving", e),
                        _ => {
                            Error::new(ErrorKind::Unavailable, "keepalive: etcd closed the stream")
                        }
                    };
                    stream = None;
                    if self
                        .failed(id, &e, &mut failing, &mut backoff, &steering, &mut stop)
                        .await
                    {
                        return;
                    }
                }
                Got::Silent => {
                    stream = None;
                    let e = Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "keepalive: no answer from etcd for {ttl:?} (the lease's TTL); reopening the stream"
                        ),
                    );
                    if self
                        .failed(id, &e, &mut failing, &mut backoff, &steering, &mut stop)
                        .await
                    {
                        return;
                    }
                }
                Got::Rerouted => {
                    // Its member may be the one left: reopened elsewhere at
                    // once. A keepalive still unanswered counts as failed.
                    if open.unanswered.is_some() {
                        Counters::bump(&self.counters.keepalives_failed);
                        failing = true;
                    }
                    stream = None;
                }
            }
        }
    }

    /// Opens a keepalive stream for lease `id` (which sends the first
    /// keepalive and waits for its answer), giving up at `give_up`; an
    /// answer later than `late` makes endpoint steering look.
    async fn open(
        &self,
        id: i64,
        give_up: Instant,
        late: Duration,
        steering: &Steering,
    ) -> Result<Opened> {
        let opening = async {
            match self.client.clone().keep_alive(id).await {
                Ok((keeper, responses)) => Ok(Opened::Alive(Box::new(Stream {
                    id,
                    keeper,
                    responses,
                    next: Instant::now(),
                    unanswered: None,
                    suspected: false,
                }))),
                // etcd-client's word for a first answer with TTL <= 0:
                // etcd says the lease is gone.
                Err(etcd_client::Error::LeaseKeepAliveError(m)) if m == "lease not found" => {
                    Ok(Opened::Gone)
                }
                Err(etcd_client::Error::GRpcStatus(s)) if s.code() == tonic::Code::NotFound => {
                    Ok(Opened::Gone)
                }
                Err(e) => Err(Error::etcd("keepalive: opening the stream", e)),
            }
        };
        let start = Instant::now();
        let mut opening = std::pin::pin!(opening);
        tokio::select! {
            r = &mut opening => return r,
            _ = tokio::time::sleep(late) => {}
        }
        steering.suspect(&format!(
            "keepalive stream for lease {id:x} not open after {late:?}"
        ));
        match tokio::time::timeout_at(give_up, opening).await {
            Ok(r) => r,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "keepalive: opening the stream: no answer within {:?}",
                    give_up.saturating_duration_since(start)
                ),
            )),
        }
    }

    /// etcd said lease `id` is gone: replaces it, backing off when that
    /// fails. True if asked to stop meanwhile.
    async fn replace(
        self: &Arc<Self>,
        id: i64,
        backoff: &mut Backoff,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        if let Err(e) = self.regrant(id).await {
            self.reauthenticate_if_stale(&e).await;
            Counters::bump(&self.counters.keepalives_failed);
            log::warn!("os-lively: replacing expired lease {id:x} failed, will retry: {e}");
            return sleep_or_stop(backoff.next_delay(), stop).await;
        }
        false
    }

    /// The stream failed (`e`): counted, logged once per outage, a
    /// suspicion raised, and a jittered backoff before it is reopened.
    /// True if asked to stop meanwhile.
    async fn failed(
        &self,
        id: i64,
        e: &Error,
        failing: &mut bool,
        backoff: &mut Backoff,
        steering: &Steering,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        steering.suspect(&format!("keepalive for lease {id:x}: {e}"));
        self.reauthenticate_if_stale(e).await;
        Counters::bump(&self.counters.keepalives_failed);
        if !*failing {
            log::warn!("os-lively: keepalive for lease {id:x} failed, reconnecting: {e}");
        }
        *failing = true;
        sleep_or_stop(backoff.next_delay(), stop).await
    }

    /// A keepalive stream or lease call that failed for an expired or
    /// invalidated token gets a new one before the next attempt.
    pub(crate) async fn reauthenticate_if_stale(&self, e: &Error) {
        if Auth::is_stale_token(e.message()) {
            if let Err(e) = self.store.auth().refresh().await {
                log::warn!("os-lively: re-authenticating failed: {e}");
            }
        }
    }
}

impl Lease {
    /// The keys bound to lease `id`, its remaining TTL (0 or less: gone)
    /// and the store's revision, in one `TimeToLive` call (its answer grows
    /// with the keys: callers use it only for a bounded number).
    pub(crate) async fn keys_on(&self, id: i64) -> Result<(i64, i64, Vec<Vec<u8>>)> {
        let mut client = self.client.clone();
        let resp = match timeout(
            self.request_timeout,
            client.time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())),
        )
        .await
        {
            Ok(r) => r.map_err(|e| Error::etcd("checking UP keys: listing the lease's keys", e))?,
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "checking UP keys: listing the lease's keys timed out",
                ));
            }
        };
        if resp.ttl() > 0 {
            self.counters
                .lease_ttl_remaining
                .store(resp.ttl(), Ordering::Relaxed);
        }
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok((resp.ttl(), revision, resp.keys().to_vec()))
    }
}

/// An open keepalive stream and where its schedule stands.
struct Stream {
    /// The lease it keeps alive.
    id: i64,
    keeper: LeaseKeeper,
    responses: LeaseKeepAliveStream,
    /// When the next keepalive is due.
    next: Instant,
    /// When the oldest keepalive not answered yet was sent.
    unanswered: Option<Instant>,
    /// Steering was told about the answer outstanding.
    suspected: bool,
}

enum Opened {
    Alive(Box<Stream>),
    /// etcd says the lease does not exist any more.
    Gone,
}

/// What the keepalive loop woke up for.
enum Got {
    /// The next keepalive is due.
    Due,
    Answer(std::result::Result<Option<etcd_client::LeaseKeepAliveResponse>, etcd_client::Error>),
    /// An answer is later than steering's probe timeout.
    Late,
    /// No answer for a whole TTL.
    Silent,
    /// A member was taken out of rotation.
    Rerouted,
}

/// Sleeps until `at`, or for ever when there is no `at`.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Grants a lease, trying again (three times in all) when the request
/// failed momentarily: with several endpoints the balancer may have picked
/// a dead member that steering has not taken out yet. A lease granted
/// whose answer was lost expires unused after its TTL.
async fn grant(client: &LeaseClient, ttl: i64, request_timeout: Duration) -> Result<(i64, i64)> {
    let mut delay = Duration::from_millis(25);
    let mut attempt = 1;
    loop {
        match grant_once(client, ttl, request_timeout).await {
            Err(e) if e.kind() == ErrorKind::Unavailable && attempt < 3 => {
                log::debug!("os-lively: granting a lease failed, trying again: {e}");
                tokio::time::sleep(delay).await;
                delay *= 3;
                attempt += 1;
            }
            other => return other,
        }
    }
}

async fn grant_once(
    client: &LeaseClient,
    ttl: i64,
    request_timeout: Duration,
) -> Result<(i64, i64)> {
    let mut client = client.clone();
    match timeout(request_timeout, client.grant(ttl, None)).await {
        Ok(Ok(resp)) => {
            if resp.ttl() != ttl {
                log::info!(
                    "os-lively: etcd granted a TTL of {} s (asked for {ttl} s)",
                    resp.ttl()
                );
            }
            Ok((resp.id(), resp.ttl()))
        }
        Ok(Err(e)) => Err(Error::etcd("granting a lease", e)),
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("granting a lease took longer than {request_timeout:?}"),
        )),
    }
}

/// Runs `f` on the client's lease (granting the first one if none yet); if
/// it fails because the lease was gone, re-grants and runs it once more on
/// the new lease. Gone is etcd's NOT_FOUND on a call naming the lease
/// (`requested lease not found`), decided by the gRPC code, not the text.
pub(crate) async fn with_live_lease<T, F, Fut>(lease: &Arc<Lease>, f: F) -> Result<T>
where
    F: Fn(i64) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let id = lease.ensure().await?;
    match f(id).await {
        Err(e) if e.lease_gone() => {
            lease.regrant(id).await?;
            f(lease.id()).await
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    #[test]
    fn a_lease_gone_is_told_by_the_grpc_code_through_every_context() {
        // What `with_live_lease` re-grants on: etcd's NOT_FOUND, kept
        // through the contexts the store and the owner add.
        let gone = Error::etcd(
            "update: writing",
            etcd_client::Error::GRpcStatus(Status::new(
                Code::NotFound,
                "etcdserver: requested lease not found",
            )),
        )
        .context("update");
        assert_eq!(gone.grpc_code(), Some(Code::NotFound));
        // The text alone decides nothing.
        let text = Error::new(ErrorKind::Unavailable, "requested lease not found");
        assert_eq!(text.grpc_code(), None);
        let other = Error::etcd(
            "update: writing",
            etcd_client::Error::GRpcStatus(Status::new(Code::Unavailable, "lease not found")),
        );
        assert_ne!(other.grpc_code(), Some(Code::NotFound));
    }
}
