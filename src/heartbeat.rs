//! The client's lease: granted at connect, kept alive in the background, and
//! replaced (with every owned service re-registered) when it is found gone.
//!
//! etcd-client's `keep_alive()` gives one stream with no timer and no
//! reconnect, and queuing a request on a dead stream succeeds silently; so we
//! send on our own timer, treat a missing answer as a broken stream, and
//! reconnect with jittered backoff.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd_client::{LeaseClient, LeaseKeepAliveStream, LeaseKeeper, LeaseTimeToLiveOptions};
use tokio::sync::watch;
use tokio::time::timeout;

use crate::auth::Auth;
use crate::backoff::{Backoff, sleep_or_stop};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::ParsedKey;
use crate::stats::Counters;
use crate::store::{Rebind, Store};

/// The lease state shared by the heartbeat task and the calls that register
/// services.
pub(crate) struct Lease {
    client: LeaseClient,
    store: Store,
    state: Mutex<State>,
    /// Serializes re-grants: a call and the heartbeat may both find the lease
    /// gone, and only one new lease must result.
    regrant: tokio::sync::Mutex<()>,
    counters: Arc<Counters>,
    requested_ttl: i64,
    request_timeout: Duration,
}

struct State {
    id: i64,
    /// Our lease that expired; UP keys still bound to it are ours to move.
    previous: i64,
    granted_ttl: i64,
    /// Services this client registered UP and keeps UP.
    owned: BTreeSet<String>,
}

impl Lease {
    /// Grants the client's first lease.
    pub(crate) async fn grant(
        client: LeaseClient,
        store: Store,
        requested_ttl: i64,
        request_timeout: Duration,
        counters: Arc<Counters>,
    ) -> Result<Arc<Lease>> {
        let (id, granted) = grant(&client, requested_ttl, request_timeout).await?;
        counters
            .lease_id
            .store(id, std::sync::atomic::Ordering::Relaxed);
        counters
            .lease_granted_ttl
            .store(granted, std::sync::atomic::Ordering::Relaxed);
        counters
            .lease_ttl_remaining
            .store(granted, std::sync::atomic::Ordering::Relaxed);
        Ok(Arc::new(Lease {
            client,
            store,
            state: Mutex::new(State {
                id,
                previous: 0,
                granted_ttl: granted,
                owned: BTreeSet::new(),
            }),
            regrant: tokio::sync::Mutex::new(()),
            counters,
            requested_ttl,
            request_timeout,
        }))
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

    /// Records that this client keeps `uuid` UP.
    pub(crate) fn own(&self, uuid: &str) {
        self.state().owned.insert(uuid.to_string());
    }

    /// Records that this client no longer keeps `uuid` UP.
    pub(crate) fn disown(&self, uuid: &str) {
        self.state().owned.remove(uuid);
    }

    /// True when this client keeps `uuid` UP.
    pub(crate) fn owns(&self, uuid: &str) -> bool {
        self.state().owned.contains(uuid)
    }

    pub(crate) fn owned(&self) -> Vec<String> {
        self.state().owned.iter().cloned().collect()
    }

    /// Replaces the lease `dead` (found gone) with a new one and re-binds the
    /// UP keys of every owned service. A no-op if someone already replaced it.
    pub(crate) async fn regrant(&self, dead: i64) -> Result<()> {
        let _one_at_a_time = self.regrant.lock().await;
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
        self.counters
            .lease_id
            .store(id, std::sync::atomic::Ordering::Relaxed);
        self.counters
            .lease_granted_ttl
            .store(granted, std::sync::atomic::Ordering::Relaxed);
        self.counters
            .lease_ttl_remaining
            .store(granted, std::sync::atomic::Ordering::Relaxed);
        let owned = self.owned();
        log::warn!(
            "os-lively: lease {dead:x} expired (this client was cut off from etcd for longer than its TTL); granted lease {id:x} and re-registering {} service(s)",
            owned.len()
        );
        self.rebind(&owned, id, dead).await
    }

    /// Puts back the UP keys of `uuids` on `lease`, dropping the services
    /// that were deleted, forced down or taken over meanwhile.
    async fn rebind(&self, uuids: &[String], lease: i64, previous: i64) -> Result<()> {
        let verdicts = self.store.rebind_many(uuids, lease, previous).await?;
        let mut restored = Vec::new();
        for (uuid, verdict) in verdicts {
            match verdict {
                Rebind::Ours => {}
                Rebind::Restored => {
                    Counters::bump(&self.counters.up_keys_restored);
                    restored.push(uuid);
                }
                Rebind::Disowned => {
                    log::info!(
                        "os-lively: service {uuid} was deleted, forced down or taken over; no longer keeping it UP"
                    );
                    self.disown(&uuid);
                }
            }
        }
        match restored.len() {
            0 => {}
            1..=10 => log::warn!(
                "os-lively: UP again (UP key put back on lease {lease:x}): {}",
                restored.join(", ")
            ),
            n => {
                log::warn!("os-lively: {n} services UP again (UP keys put back on lease {lease:x})")
            }
        }
        Ok(())
    }

    /// Revokes the lease, so every service this client keeps UP goes DOWN now.
    pub(crate) async fn revoke(&self) -> Result<()> {
        let id = self.id();
        let revoke = self.store.auth().retry(|| {
            let mut client = self.client.clone();
            async move { client.revoke(id).await }
        });
        match timeout(self.request_timeout, revoke).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.to_string().contains("lease not found") => Ok(()),
            Ok(Err(e)) => Err(Error::etcd("close: revoking the lease", e)),
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                "close: revoking the lease timed out",
            )),
        }
    }

    /// The heartbeat: keepalive every TTL/3, reconnect on silence, re-grant
    /// when the lease is gone, and restore UP keys deleted by hand. Runs until
    /// `stop` turns true.
    pub(crate) async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut stream: Option<(i64, LeaseKeeper, LeaseKeepAliveStream)> = None;
        let mut backoff = Backoff::new(
            Duration::from_millis(50),
            self.period().max(Duration::from_millis(200)),
        );
        let mut failing = false;
        let mut reroutes = self.store.reroutes();
        reroutes.mark_unchanged();
        loop {
            if *stop.borrow() {
                return;
            }
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
            let beat = match &mut stream {
                Some((sid, keeper, responses)) if *sid == id => {
                    send_and_wait(keeper, responses, deadline).await
                }
                _ => match timeout(deadline, self.client.clone().keep_alive(id)).await {
                    Ok(Ok((keeper, responses))) => {
                        if failing {
                            Counters::bump(&self.counters.reconnects);
                            log::warn!("os-lively: keepalive stream for lease {id:x} re-opened");
                        }
                        stream = Some((id, keeper, responses));
                        Ok(Beat::Alive(None))
                    }
                    Ok(Err(e)) if e.to_string().contains("lease not found") => Ok(Beat::Gone),
                    Ok(Err(e)) => Err(Error::etcd("keepalive: opening the stream", e)),
                    Err(_) => Err(Error::new(
                        ErrorKind::Timeout,
                        "keepalive: opening the stream timed out",
                    )),
                },
            };
            match beat {
                Ok(Beat::Alive(ttl)) => {
                    Counters::bump(&self.counters.keepalives_sent);
                    if let Some(ttl) = ttl {
                        self.counters
                            .lease_ttl_remaining
                            .store(ttl, std::sync::atomic::Ordering::Relaxed);
                    }
                    failing = false;
                    backoff.reset();
                    if let Err(e) = self.heal(id).await {
                        log::debug!("os-lively: checking UP keys failed: {e}");
                        self.reauthenticate_if_stale(&e).await;
                    }
                    if sleep_or_stop(self.period(), &mut stop).await {
                        return;
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

    /// A keepalive stream or lease call that failed for an expired or
    /// invalidated token gets a new one before the next attempt.
    async fn reauthenticate_if_stale(&self, e: &Error) {
        if Auth::is_stale_token(e.message()) {
            if let Err(e) = self.store.auth().refresh().await {
                log::warn!("os-lively: re-authenticating failed: {e}");
            }
        }
    }

    /// Puts back any owned service's UP key that vanished from our lease
    /// (deleted by hand). One `TimeToLive` call lists every key on the lease.
    async fn heal(&self, id: i64) -> Result<()> {
        let owned = self.owned();
        if owned.is_empty() {
            return Ok(());
        }
        let mut client = self.client.clone();
        let resp = match timeout(
            self.request_timeout,
            client.time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys())),
        )
        .await
        {
            Ok(r) => r.map_err(|e| Error::etcd("keepalive: listing the lease's keys", e))?,
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    "keepalive: listing the lease's keys timed out",
                ));
            }
        };
        if resp.ttl() <= 0 {
            return self.regrant(id).await;
        }
        self.counters
            .lease_ttl_remaining
            .store(resp.ttl(), std::sync::atomic::Ordering::Relaxed);
        let on_lease: BTreeSet<String> = resp
            .keys()
            .iter()
            .filter_map(|k| match self.store.keys().parse(k) {
                Some(ParsedKey::Status(_, uuid)) => Some(uuid),
                _ => None,
            })
            .collect();
        let missing: Vec<String> = owned
            .into_iter()
            .filter(|u| !on_lease.contains(u))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let previous = self.state().previous;
        self.rebind(&missing, id, previous).await
    }
}

enum Beat {
    /// The lease is alive; remaining TTL when the answer said so.
    Alive(Option<i64>),
    /// etcd says the lease does not exist any more.
    Gone,
}

async fn send_and_wait(
    keeper: &mut LeaseKeeper,
    responses: &mut LeaseKeepAliveStream,
    deadline: Duration,
) -> Result<Beat> {
    let exchange = async {
        keeper
            .keep_alive()
            .await
            .map_err(|e| Error::etcd("keepalive: sending", e))?;
        match responses.message().await {
            Ok(Some(resp)) if resp.ttl() <= 0 => Ok(Beat::Gone),
            Ok(Some(resp)) => Ok(Beat::Alive(Some(resp.ttl()))),
            Ok(None) => Err(Error::new(
                ErrorKind::Unavailable,
                "keepalive: etcd closed the stream",
            )),
            Err(e) => Err(Error::etcd("keepalive: receiving", e)),
        }
    };
    match timeout(deadline, exchange).await {
        Ok(r) => r,
        Err(_) => Err(Error::new(
            ErrorKind::Timeout,
            format!("keepalive: no answer within {deadline:?}"),
        )),
    }
}

async fn grant(client: &LeaseClient, ttl: i64, request_timeout: Duration) -> Result<(i64, i64)> {
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

/// Runs `f`; if it fails because the lease was gone, re-grants and runs it
/// once more on the new lease.
pub(crate) async fn with_live_lease<T, F, Fut>(lease: &Lease, f: F) -> Result<T>
where
    F: Fn(i64) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let id = lease.id();
    match f(id).await {
        Err(e) if e.message().contains("requested lease not found") => {
            lease.regrant(id).await?;
            f(lease.id()).await
        }
        other => other,
    }
}
