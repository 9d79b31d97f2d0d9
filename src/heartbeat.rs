//! The client's lease: granted on the first UP registration (a client that
//! only reads never costs a grant or a revoke), kept alive in the
//! background, and replaced (with every owned service re-registered) when
//! it is found gone.
//!
//! etcd-client's `keep_alive()` gives one stream with no timer and no
//! reconnect, and queuing a request on a dead stream succeeds silently; so we
//! send on our own timer, treat a missing answer as a broken stream, and
//! reconnect with jittered backoff.
//!
//! The keepalive's timer never waits on other work: checking and restoring
//! UP keys (the heal) and re-registering after a re-grant run as tasks of
//! their own, one at a time, each etcd call within the request timeout.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use etcd_client::{LeaseClient, LeaseKeepAliveStream, LeaseKeeper, LeaseTimeToLiveOptions};
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

use crate::auth::Auth;
use crate::backoff::{Backoff, sleep_or_stop};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::ParsedKey;
use crate::maintenance::Maintenance;
use crate::stats::Counters;
use crate::steer::Steering;
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
    /// Held by the task checking or restoring UP keys: one at a time.
    rebinding: Arc<tokio::sync::Mutex<()>>,
    /// The revision at which the last heal found every owned UP key on our
    /// lease; 0 when it did not (or none ran). While keepalive answers carry
    /// the same revision nothing was deleted, so the heal is skipped.
    clean_revision: AtomicI64,
    /// Set when the heal must run at the next keepalive whatever the
    /// revision says (a safety net, every [`FULL_HEAL_EVERY`] keepalives).
    heal_due: AtomicBool,
    counters: Arc<Counters>,
    requested_ttl: i64,
    request_timeout: Duration,
    /// Timers lifting owned services whose maintenance window ends.
    maintenance: Arc<Maintenance>,
    /// Signalled when the first lease is granted (the keepalive waits).
    granted: tokio::sync::Notify,
}

/// Keepalives between heals run whatever the revision says, in case a
/// deletion slipped past the revision check (say, an answer from a lagging
/// member): about every 3 TTLs, one `TimeToLive` call.
const FULL_HEAL_EVERY: u32 = 9;

/// Services re-bound per guarded transaction (and per deadline).
const REBIND_BATCH: usize = 60;

struct State {
    /// 0 until the first UP registration grants a lease.
    id: i64,
    /// Our lease that expired; UP keys still bound to it are ours to move.
    previous: i64,
    granted_ttl: i64,
    /// Services this client registered UP and keeps UP.
    owned: Owned,
}

/// The services a client keeps UP, each with the generation of its latest
/// `own`: a check that decides to drop a service drops it only if nobody
/// re-owned it since the check read the set (an `update()` racing with it).
#[derive(Default)]
struct Owned {
    map: BTreeMap<String, u64>,
    generation: u64,
}

impl Owned {
    fn own(&mut self, uuid: &str) {
        self.generation += 1;
        self.map.insert(uuid.to_string(), self.generation);
    }

    fn disown(&mut self, uuid: &str) {
        self.map.remove(uuid);
    }

    /// Drops `uuid` if it is still owned at `generation`; true if dropped.
    fn disown_at(&mut self, uuid: &str, generation: u64) -> bool {
        if self.map.get(uuid) == Some(&generation) {
            self.map.remove(uuid);
            true
        } else {
            false
        }
    }

    fn contains(&self, uuid: &str) -> bool {
        self.map.contains_key(uuid)
    }

    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every owned service with its generation.
    fn snapshot(&self) -> Vec<(String, u64)> {
        self.map.iter().map(|(u, g)| (u.clone(), *g)).collect()
    }
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
        maintenance: Arc<Maintenance>,
    ) -> Arc<Lease> {
        Arc::new(Lease {
            client,
            store,
            state: Mutex::new(State {
                id: 0,
                previous: 0,
                granted_ttl: 0,
                owned: Owned::default(),
            }),
            regrant: tokio::sync::Mutex::new(()),
            rebinding: Arc::new(tokio::sync::Mutex::new(())),
            clean_revision: AtomicI64::new(0),
            heal_due: AtomicBool::new(false),
            counters,
            requested_ttl,
            request_timeout,
            maintenance,
            granted: tokio::sync::Notify::new(),
        })
    }

    /// The lease id, granting the client's first lease if none is yet.
    pub(crate) async fn ensure(&self) -> Result<i64> {
        let id = self.id();
        if id != 0 {
            return Ok(id);
        }
        let _one_at_a_time = self.regrant.lock().await;
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

    /// Records that this client keeps `uuid` UP. Called before a write
    /// that puts it UP (so a re-grant racing with the write re-registers it)
    /// and again after it, so a check that read the service before the
    /// write does not drop it.
    pub(crate) fn own(&self, uuid: &str) {
        self.state().owned.own(uuid);
    }

    /// Records that this client no longer keeps `uuid` UP.
    pub(crate) fn disown(&self, uuid: &str) {
        self.state().owned.disown(uuid);
    }

    /// True when this client keeps `uuid` UP.
    pub(crate) fn owns(&self, uuid: &str) -> bool {
        self.state().owned.contains(uuid)
    }

    /// Replaces the lease `dead` (found gone) with a new one, and starts
    /// re-binding the UP keys of every owned service in the background (the
    /// caller's keepalives or write need not wait for thousands of them). A
    /// no-op if someone already replaced it.
    pub(crate) async fn regrant(self: &Arc<Self>, dead: i64) -> Result<()> {
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
        self.clean_revision.store(0, Ordering::Relaxed);
        Counters::bump(&self.counters.lease_regrants);
        self.count_granted(id, granted);
        let owned = self.state().owned.snapshot();
        log::warn!(
            "os-lively: lease {dead:x} expired (this client was cut off from etcd for longer than its TTL); granted lease {id:x} and re-registering {} service(s)",
            owned.len()
        );
        let me = self.clone();
        tokio::spawn(async move {
            let _one = me.rebinding.lock().await;
            if let Err(e) = me.rebind(&owned, id, dead).await {
                // The heal at the next keepalives finds what is missing.
                me.clean_revision.store(0, Ordering::Relaxed);
                log::warn!("os-lively: re-registering on lease {id:x} failed, will retry: {e}");
                me.reauthenticate_if_stale(&e).await;
            }
        });
        Ok(())
    }

    /// Puts back the UP keys of `uuids` on `lease`, dropping the services
    /// that were deleted, forced down or taken over meanwhile (unless
    /// re-owned since `uuids` was read). Each batch within the request
    /// timeout: nothing here may hang on a silent member.
    async fn rebind(&self, uuids: &[(String, u64)], lease: i64, previous: i64) -> Result<()> {
        let mut restored = Vec::new();
        let mut lost = Vec::new();
        let mut result = Ok(());
        for chunk in uuids.chunks(REBIND_BATCH) {
            let generation: HashMap<&str, u64> =
                chunk.iter().map(|(u, g)| (u.as_str(), *g)).collect();
            let names: Vec<String> = chunk.iter().map(|(u, _)| u.clone()).collect();
            let verdicts = match timeout(
                self.request_timeout,
                self.store.rebind_many(&names, lease, previous),
            )
            .await
            {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    result = Err(e);
                    break;
                }
                Err(_) => {
                    result = Err(Error::new(
                        ErrorKind::Timeout,
                        format!(
                            "keepalive: restoring UP keys took longer than {:?}",
                            self.request_timeout
                        ),
                    ));
                    break;
                }
            };
            for (uuid, verdict) in verdicts {
                match verdict {
                    Rebind::Ours => {}
                    // Still ours, forced down by an operator: lifted at the
                    // end of its window (or by up()).
                    Rebind::Held(end) => self.maintenance.hold(&uuid, end),
                    Rebind::Restored => {
                        Counters::bump(&self.counters.up_keys_restored);
                        restored.push(uuid);
                    }
                    Rebind::Disowned => {
                        let g = generation.get(uuid.as_str()).copied().unwrap_or(0);
                        if self.state().owned.disown_at(&uuid, g) {
                            self.maintenance.release(&uuid);
                            Counters::bump(&self.counters.registrations_lost);
                            lost.push(uuid);
                        }
                    }
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
        match lost.len() {
            0 => {}
            1..=10 => log::warn!(
                "os-lively: no longer registered by this client (deleted, forced down or taken over by another client), so no longer kept UP: {}",
                lost.join(", ")
            ),
            n => log::warn!(
                "os-lively: {n} services no longer registered by this client (deleted, forced down or taken over by another client), so no longer kept UP"
            ),
        }
        result
    }

    /// Revokes the lease, so every service this client keeps UP goes DOWN now.
    /// A client that never registered anything UP has none to revoke.
    pub(crate) async fn revoke(&self) -> Result<()> {
        let id = self.id();
        if id == 0 {
            return Ok(());
        }
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
        let mut since_full_heal = 0u32;
        let steering = self.store.steering().clone();
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
                    since_full_heal += 1;
                    if since_full_heal >= FULL_HEAL_EVERY {
                        since_full_heal = 0;
                        self.heal_due.store(true, Ordering::Relaxed);
                    }
                    self.start_heal(id, revision);
                    // Paced from the send, never from other work.
                    let next = sent + self.period();
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

    /// Starts the heal in a task of its own, unless one is running or
    /// nothing can be missing: nothing owned, or no new revision since the
    /// last heal that found everything in place (deleting a key bumps it).
    fn start_heal(self: &Arc<Self>, id: i64, revision: Option<i64>) {
        if self.state().owned.is_empty() {
            return;
        }
        let clean = self.clean_revision.load(Ordering::Relaxed);
        let due = self.heal_due.load(Ordering::Relaxed);
        if !due && clean != 0 && revision == Some(clean) {
            return;
        }
        let Ok(one) = self.rebinding.clone().try_lock_owned() else {
            return; // a heal or re-registration is running
        };
        self.heal_due.store(false, Ordering::Relaxed);
        let me = self.clone();
        tokio::spawn(async move {
            let _one = one;
            if let Err(e) = me.heal(id).await {
                me.clean_revision.store(0, Ordering::Relaxed);
                log::debug!("os-lively: checking UP keys failed: {e}");
                me.reauthenticate_if_stale(&e).await;
            }
        });
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
    /// (deleted by hand), and drops the services deleted, forced down or
    /// taken over by another client. One `TimeToLive` call lists every key
    /// on the lease.
    async fn heal(&self, id: i64) -> Result<()> {
        let owned = self.state().owned.snapshot();
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
            // Gone: the next keepalive finds out and re-grants.
            self.clean_revision.store(0, Ordering::Relaxed);
            return Ok(());
        }
        self.counters
            .lease_ttl_remaining
            .store(resp.ttl(), Ordering::Relaxed);
        let on_lease: BTreeSet<String> = resp
            .keys()
            .iter()
            .filter_map(|k| match self.store.keys().parse(k) {
                Some(ParsedKey::Status(_, uuid)) => Some(uuid),
                _ => None,
            })
            .collect();
        let missing: Vec<(String, u64)> = owned
            .into_iter()
            .filter(|(u, _)| !on_lease.contains(u))
            .collect();
        if missing.is_empty() {
            let revision = resp.header().map_or(0, |h| h.revision());
            self.clean_revision.store(revision, Ordering::Relaxed);
            return Ok(());
        }
        // Check again at the next keepalive, whatever the revision.
        self.clean_revision.store(0, Ordering::Relaxed);
        let previous = self.state().previous;
        self.rebind(&missing, id, previous).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_does_not_drop_a_service_re_owned_after_it_read_the_set() {
        let mut owned = Owned::default();
        owned.own("a");
        owned.own("b");
        let read = owned.snapshot();
        let gen_of = |u: &str| read.iter().find(|(x, _)| x == u).unwrap().1;
        // update("a") wrote UP meanwhile (it owns before and after its write).
        owned.own("a");
        assert!(!owned.disown_at("a", gen_of("a")));
        assert!(owned.contains("a"));
        // Nobody touched "b": the check drops it.
        assert!(owned.disown_at("b", gen_of("b")));
        assert!(!owned.contains("b"));
        // Dropped once: a second verdict counts nothing.
        assert!(!owned.disown_at("b", gen_of("b")));
        owned.disown("a");
        assert!(owned.is_empty());
    }
}
