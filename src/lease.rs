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
//! send on our own timer, treat a missing answer as a broken stream, and
//! reconnect with jittered backoff.
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

    /// The heartbeat: keepalive every TTL/3, reconnect on silence, re-grant
    /// when the lease is gone, and start the check that restores UP keys
    /// deleted by hand. Runs until `stop` turns true.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // Nothing to keep alive before the first UP registration.
        while self.id() == 0 {
            tokio::select! {
                _ = self.granted.notified() => {}
                _ = stop.changed() => return,
            }
        }
        let mut stream: Option<KeepAlive> = None;
        let mut backoff = Backoff::new(
            Duration::from_millis(50),
            self.period().max(Duration::from_millis(200)),
        );
        let mut failing = false;
        // The revision of the last answer that gave one, and how many
        // answers in a row moved it.
        let mut last_revision: Option<i64> = None;
        let mut moved = 0u32;
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
            // Half a period: a blackholed member is noticed (and left, the
            // endpoint steering having evicted it) about TTL/2 after the last
            // good keepalive, well before the lease is at risk.
            let deadline = (self.period() / 2)
                .max(Duration::from_millis(300))
                .min(self.request_timeout);
            // An answer this late already makes endpoint steering look, so
            // its verdict is in by about the time the deadline passes.
            let late = deadline / 3;
            let sent = Instant::now();
            let waited = tokio::select! {
                beat = self.beat(&mut stream, id, deadline, late, &steering) => Waited::Beat(beat),
                // A member left rotation while we waited: the stream may be
                // on it, so do not wait out the deadline.
                Ok(()) = reroutes.changed() => Waited::Rerouted,
                r = stop.changed() => {
                    if r.is_err() || *stop.borrow() {
                        return;
                    }
                    continue;
                }
            };
            let answered = Instant::now();
            let beat = match waited {
                Waited::Beat(beat) => beat,
                Waited::Rerouted => {
                    // Unanswered so far, and its member may be the one left:
                    // counted as failed, and reopened elsewhere at once.
                    reroutes.mark_unchanged();
                    stream = None;
                    Counters::bump(&self.counters.keepalives_failed);
                    failing = true;
                    continue;
                }
            };
            match beat {
                Ok(Beat::Alive { ttl, revision }) => {
                    Counters::bump(&self.counters.keepalives_sent);
                    if let Some(ttl) = ttl {
                        self.counters
                            .lease_ttl_remaining
                            .store(ttl, Ordering::Relaxed);
                    }
                    if failing {
                        Counters::bump(&self.counters.reconnects);
                        log::warn!("os-lively: keepalive stream for lease {id:x} re-opened");
                    }
                    failing = false;
                    backoff.reset();
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
                    // Paced from the answer, never from other work. An answer
                    // comes at once from etcd, but etcd's gRPC proxy answers
                    // only when its own keepalive of the lease comes back
                    // (every TTL/3, on a 500 ms tick): paced from the answer,
                    // ours follows its cadence and is answered within that
                    // tick, instead of drifting until one misses its deadline.
                    let next = sent.max(answered) + self.period();
                    tokio::select! {
                        _ = tokio::time::sleep_until(next) => {}
                        r = stop.changed() => {
                            if r.is_err() || *stop.borrow() {
                                return;
                            }
                        }
                    }
                }
                Ok(Beat::Gone) => {
                    stream = None;
                    if let Err(e) = self.regrant(id).await {
                        self.reauthenticate_if_stale(&e).await;
                        Counters::bump(&self.counters.keepalives_failed);
                        log::warn!(
                            "os-lively: replacing expired lease {id:x} failed, will retry: {e}"
                        );
                        if sleep_or_stop(backoff.next_delay(), &mut stop).await {
                            return;
                        }
                    }
                }
                Err(e) => {
                    stream = None;
                    steering.suspect(&format!("keepalive for lease {id:x}: {e}"));
                    self.reauthenticate_if_stale(&e).await;
                    Counters::bump(&self.counters.keepalives_failed);
                    if !failing {
                        log::warn!(
                            "os-lively: keepalive for lease {id:x} failed, reconnecting: {e}"
                        );
                    }
                    failing = true;
                    if sleep_or_stop(backoff.next_delay(), &mut stop).await {
                        return;
                    }
                }
            }
        }
    }

    /// One keepalive on the open stream, or opening one (which sends the
    /// first keepalive and waits for its answer), within `deadline`; an
    /// answer later than `late` makes endpoint steering look.
    async fn beat(
        &self,
        stream: &mut Option<KeepAlive>,
        id: i64,
        deadline: Duration,
        late: Duration,
        steering: &Steering,
    ) -> Result<Beat> {
        let exchange = async {
            match stream {
                Some((sid, keeper, responses)) if *sid == id => {
                    keeper
                        .keep_alive()
                        .await
                        .map_err(|e| Error::etcd("keepalive: sending", e))?;
                    match responses.message().await {
                        Ok(Some(resp)) if resp.ttl() <= 0 => Ok(Beat::Gone),
                        Ok(Some(resp)) => Ok(Beat::Alive {
                            ttl: Some(resp.ttl()),
                            revision: resp.header().map(|h| h.revision()),
                        }),
                        Ok(None) => Err(Error::new(
                            ErrorKind::Unavailable,
                            "keepalive: etcd closed the stream",
                        )),
                        Err(e) => Err(Error::etcd("keepalive: receiving", e)),
                    }
                }
                _ => match self.client.clone().keep_alive(id).await {
                    Ok((keeper, responses)) => {
                        *stream = Some((id, keeper, responses));
                        Ok(Beat::Alive {
                            ttl: None,
                            revision: None,
                        })
                    }
                    Err(e) if e.to_string().contains("lease not found") => Ok(Beat::Gone),
                    Err(e) => Err(Error::etcd("keepalive: opening the stream", e)),
                },
            }
        };
        let watched = async {
            let mut exchange = std::pin::pin!(exchange);
            tokio::select! {
                r = &mut exchange => return r,
                _ = tokio::time::sleep(late) => {}
            }
            steering.suspect(&format!(
                "keepalive for lease {id:x} unanswered after {late:?}"
            ));
            exchange.await
        };
        match timeout(deadline, watched).await {
            Ok(r) => r,
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!("keepalive: no answer within {deadline:?}"),
            )),
        }
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

type KeepAlive = (i64, LeaseKeeper, LeaseKeepAliveStream);

enum Waited {
    Beat(Result<Beat>),
    Rerouted,
}

enum Beat {
    /// The lease is alive; remaining TTL and the store's revision when the
    /// answer said so.
    Alive {
        ttl: Option<i64>,
        revision: Option<i64>,
    },
    /// etcd says the lease does not exist any more.
    Gone,
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
/// the new lease.
pub(crate) async fn with_live_lease<T, F, Fut>(lease: &Arc<Lease>, f: F) -> Result<T>
where
    F: Fn(i64) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let id = lease.ensure().await?;
    match f(id).await {
        Err(e) if e.message().contains("requested lease not found") => {
            lease.regrant(id).await?;
            f(lease.id()).await
        }
        other => other,
    }
}
