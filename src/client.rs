//! The blocking client: every public call validates its input on the caller's
//! thread, then hands one future to the runtime thread and waits for it with
//! the request timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_client::ConnectOptions;
use tokio::sync::watch;

use crate::auth::Auth;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::keys::Keys;
use crate::lease::Lease;
use crate::owner::Owner;
use crate::record::{Service, check_segment, normalize_uuid};
use crate::runtime::{Runtime, Terms};
use crate::stats::{Counters, Stats};
use crate::steer::Steering;
use crate::store::{Filter, ServiceInfo, Store};
use crate::tls::Credentials;
use crate::view::{StalePolicy, View};
use crate::watch::{Callback, Hub, SubscribeOptions, Subscription};

/// A connection to etcd that registers services and answers liveness
/// questions. Cheap to clone (clones share one connection, lease and runtime
/// thread) and safe to use from many threads at once.
///
/// Services registered UP through a client stay UP while the client lives:
/// its runtime thread keeps one lease alive for all of them.
///
/// One lifetime rule for every handle: each clone, each [`View`](crate::View)
/// and each [`Subscription`] keeps the connection alive. When the last of
/// them is dropped the connection closes quietly; [`Client::close`] closes
/// it for all of them at once. Either way the lease is revoked, so this
/// client's services go DOWN at once.
///
/// In a child forked after it connected, every handle answers
/// [`ErrorKind::Forked`](crate::ErrorKind::Forked); dropping one there
/// takes no lock and leaves what the parent's threads own allocated.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) rt: Runtime,
    hub: Arc<Hub>,
    pub(crate) store: Store,
    lease: Arc<Lease>,
    owner: Arc<Owner>,
    pub(crate) config: Config,
    pub(crate) counters: Arc<Counters>,
    stop_heartbeat: watch::Sender<bool>,
    closed: AtomicBool,
    /// The result of the one close, once it has run.
    close_outcome: std::sync::Mutex<Option<Result<()>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.inner.config.get_endpoints())
            .field("namespace", &self.inner.config.get_namespace())
            .field("lease", &format_args!("{:x}", self.inner.lease.id()))
            .finish()
    }
}

impl Client {
    /// Connects to etcd and checks that it answers (one read). Waits at most
    /// the configured connect timeout; the error names the endpoints.
    ///
    /// The client's lease is granted on its first UP registration: a client
    /// that only reads (is-up, get, list, subscribe) costs no lease grant
    /// or revoke.
    pub fn connect(config: &Config) -> Result<Client> {
        let rt = Runtime::start(config.get_call_polling())?;
        if config.get_release_memory() {
            crate::model::allow_release();
        }
        let counters = Arc::new(Counters::default());
        let cfg = config.clone();
        let ctr = counters.clone();
        let health = rt.health().clone();
        let endpoints = config.get_endpoints().join(",");
        let (etcd, store, lease, lease_events) = rt.call(
            &format!("connecting to {endpoints}"),
            config.get_connect_timeout(),
            async move {
                let steering = Steering::new(cfg.get_status_ttl());
                let etcd = connect_etcd(&cfg, &steering, health, &ctr).await?;
                let auth = Auth::new(&etcd, cfg.credentials().is_some());
                let store = Store::new(
                    etcd.kv_client(),
                    etcd.lease_client(),
                    Keys::new(cfg.get_namespace()),
                    auth,
                    steering,
                );
                store.probe().await?;
                let (lease, events) = Lease::new(
                    etcd.lease_client(),
                    store.clone(),
                    cfg.get_status_ttl().as_secs() as i64,
                    cfg.get_request_timeout(),
                    ctr,
                );
                Ok((etcd, store, lease, events))
            },
        )?;
        let hub = Hub::new(
            store.clone(),
            etcd.watch_client(),
            counters.clone(),
            rt.health().clone(),
            config.get_request_timeout(),
            config.get_status_ttl(),
        );
        let (stop_heartbeat, stop_rx) = watch::channel(false);
        let owner = Owner::new(
            store.clone(),
            lease.clone(),
            counters.clone(),
            rt.health().clone(),
            config.get_request_timeout(),
        );
        let lease_events = Arc::new(tokio::sync::Mutex::new(lease_events));
        // Both end when told to stop; any other return is a failure. The
        // lease, once it keeps a lease alive, is woken every TTL/3 and each
        // call it waits for has the request timeout: silent longer, it hangs.
        let stopped = |rx: &watch::Receiver<bool>| {
            let rx = rx.clone();
            move || *rx.borrow()
        };
        {
            let (owner, stop_rx) = (owner.clone(), stop_rx.clone());
            rt.spawn_supervised("owner", Terms::until(stopped(&stop_rx)), move || {
                owner.clone().run(lease_events.clone(), stop_rx.clone())
            });
        }
        {
            let lease = lease.clone();
            let pace =
                config.get_status_ttl().max(Duration::from_secs(2)) + config.get_request_timeout();
            rt.spawn_supervised(
                "lease",
                Terms::until(stopped(&stop_rx)).pace(pace),
                move || lease.clone().run(stop_rx.clone()),
            );
        }
        Ok(Client {
            inner: Arc::new(Inner {
                rt,
                hub,
                store,
                lease,
                owner,
                config: config.clone(),
                counters,
                stop_heartbeat,
                closed: AtomicBool::new(false),
                close_outcome: std::sync::Mutex::new(None),
            }),
        })
    }

    /// A local view of the namespace. The first view (or subscription) of a
    /// client starts its shared watch and waits until the copy is loaded.
    pub fn view(&self) -> Result<View> {
        let hub = self.inner.hub.clone();
        self.call("view", async move { hub.ensure_started().await })?;
        Ok(View::new(
            self.inner.hub.clone(),
            Arc::new(self.clone()),
            StalePolicy::FailAfter(self.config().get_status_ttl()),
        ))
    }

    /// Why a background task was given up, if one was.
    pub(crate) fn task_failure(&self) -> Option<&str> {
        self.inner.rt.health().failure()
    }

    /// `Forked` in a child forked after this client connected.
    pub(crate) fn check_forked(&self) -> Result<()> {
        self.inner.rt.check_forked()
    }

    /// `Forked` in a forked child, `Closed` once the client is closed: what
    /// a handle that answers without a round trip (a view) checks first.
    pub(crate) fn check_usable(&self) -> Result<()> {
        self.check_forked()?;
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        Ok(())
    }

    /// Runs `fut` on the runtime thread with the request timeout.
    pub(crate) fn call<T, F>(&self, what: &str, fut: F) -> Result<T>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        // A background task was given up: no answer can be trusted.
        self.inner
            .rt
            .health()
            .check()
            .map_err(|e| e.context(what))?;
        self.inner
            .rt
            .call(what, self.inner.config.get_request_timeout(), fut)
    }

    /// Creates or updates a service record and its index keys in one
    /// transaction, and returns its uuid.
    ///
    /// **Identity is type+host**, as in the original library. Without a
    /// uuid (`service.uuid` empty), a type+host that is already registered
    /// is taken over under its uuid, which is returned: a daemon restarted
    /// without saved state gets its service back, UP on this client's
    /// lease at once, whether the old record is DOWN or still UP on a dead
    /// process's lease. A live client displaced this way loses the service
    /// (it logs a warning and counts it in `registrations_lost`; watchers
    /// see reason [`DownReason::Moved`](crate::DownReason::Moved)).
    /// [`Service::exclusive`] refuses instead, with
    /// [`ErrorKind::Conflict`](crate::ErrorKind::Conflict), while another
    /// holder's lease lives. A uuid that is given but differs from the one
    /// registered for the type+host is a conflict. Without a registered
    /// type+host, a uuid is generated.
    ///
    /// A service with status UP is bound to this client's lease and stays UP
    /// while the client lives (the first UP registration grants the lease).
    /// A service an operator forced DOWN ([`Client::down`]) stays DOWN: the
    /// update changes its other fields, and this client lifts it when the
    /// maintenance window ends (or [`Client::up`] does). An unchanged record
    /// writes nothing unless its UP key is not on this client's lease yet.
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument)
    /// (writing nothing) for a bad field.
    ///
    /// With a heartbeat deadline ([`Service::with_heartbeat`]) and status
    /// UP, the call counts as a check-in and (re)starts the deadline; a
    /// service this client took DOWN for a missed deadline comes back UP.
    /// An update that does not mention a deadline keeps the one the service
    /// has; [`Service::without_heartbeat`] removes it.
    ///
    /// Two live clients on one type+host do not take it from each other:
    /// once another live client took over a service this client held, this
    /// client's `update()` (and [`Client::heartbeat`]) fails with
    /// [`ErrorKind::Conflict`](crate::ErrorKind::Conflict) naming the
    /// holder's lease, writing nothing, until the holder's lease is gone or
    /// [`Client::take_over`] asks explicitly.
    pub fn update(&self, service: &Service) -> Result<String> {
        self.write_owned("update", service, false)
    }

    /// Like [`Client::update`], but retakes the service from a live client
    /// that took it over from this one (the explicit ask: `update()` then
    /// fails instead, so two daemons do not flip it back and forth).
    /// [`Service::exclusive`] still refuses while another holder lives.
    pub fn take_over(&self, service: &Service) -> Result<String> {
        self.write_owned("take_over", service, true)
    }

    fn write_owned(&self, what: &str, service: &Service, take_over: bool) -> Result<String> {
        let svc = service.validated()?;
        // A uuid we just generated cannot exist yet: write without reading.
        let fresh = service.uuid.is_empty();
        let owner = self.inner.owner.clone();
        self.call(what, async move {
            owner
                .update(svc, fresh, fresh, take_over)
                .await
                .map(|w| w.uuid)
        })
    }

    /// Checks in for `uuid`, a service this client registered with a
    /// heartbeat deadline ([`Service::with_heartbeat`]): its owner is
    /// alive. Call it from the daemon's main loop at least every deadline.
    ///
    /// Local to the process: no round trip, no allocation, tens of
    /// nanoseconds; safe from any thread. A service this client took DOWN
    /// for a missed deadline is brought back UP by the runtime thread (one
    /// transaction) after this returns; one forced down by an operator
    /// stays DOWN. Fails with [`ErrorKind::NotFound`](crate::ErrorKind::NotFound)
    /// if `uuid` has no deadline on this client,
    /// [`ErrorKind::Closed`](crate::ErrorKind::Closed) after `close()`, and
    /// [`ErrorKind::Forked`](crate::ErrorKind::Forked) in a child forked
    /// after the client was made.
    pub fn heartbeat(&self, uuid: &str) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::closed());
        }
        // A child forked after the client was made would check in to a copy
        // nobody enforces: say so (one atomic load, not a system call).
        self.inner.rt.check_forked()?;
        self.inner.owner.check_in(uuid)
    }

    /// Like [`Client::update`], from a serialized protobuf `Service`.
    pub fn update_bytes(&self, bytes: &[u8]) -> Result<String> {
        self.update(&Service::from_bytes(bytes)?)
    }

    /// True when the service exists, says UP, and its lease is alive. False
    /// for unknown services. One round trip.
    pub fn is_up(&self, uuid: &str) -> Result<bool> {
        let uuid = normalize_uuid(uuid)?;
        let store = self.inner.store.clone();
        self.call("is_up", async move { store.is_up(&uuid).await })
    }

    /// [`Client::is_up`] for the service registered as `service_type` on `host`.
    pub fn is_up_by_type_host(&self, service_type: &str, host: &str) -> Result<bool> {
        check_segment("type", service_type, false)?;
        check_segment("host", host, false)?;
        let (t, h) = (service_type.to_string(), host.to_string());
        let store = self.inner.store.clone();
        self.call("is_up_by_type_host", async move {
            match store.uuid_for(&t, &h).await? {
                Some(uuid) => store.is_up(&uuid).await,
                None => Ok(false),
            }
        })
    }

    /// The record of `uuid` and whether it is alive now; `None` if unknown.
    pub fn get(&self, uuid: &str) -> Result<Option<ServiceInfo>> {
        let uuid = normalize_uuid(uuid)?;
        let store = self.inner.store.clone();
        self.call("get", async move { store.get(&uuid).await })
    }

    /// [`Client::get`] for the service registered as `service_type` on `host`.
    pub fn get_by_type_host(&self, service_type: &str, host: &str) -> Result<Option<ServiceInfo>> {
        check_segment("type", service_type, false)?;
        check_segment("host", host, false)?;
        let (t, h) = (service_type.to_string(), host.to_string());
        let store = self.inner.store.clone();
        self.call("get_by_type_host", async move {
            match store.uuid_for(&t, &h).await? {
                Some(uuid) => store.get(&uuid).await,
                None => Ok(None),
            }
        })
    }

    /// Services matching `filter`, read through the narrowest index. Keys in
    /// the namespace that do not decode are skipped (and logged once), never
    /// failing the whole list.
    pub fn list(&self, filter: &Filter) -> Result<Vec<ServiceInfo>> {
        let filter = filter.validated()?;
        let store = self.inner.store.clone();
        // Only a client that registered (it holds a lease, so it writes
        // anyway) may write the region census: a reader never writes.
        let writer = self.inner.lease.id() != 0;
        self.call("list", async move { store.list(&filter, writer).await })
    }

    /// Forces a service DOWN for maintenance: status DOWN, `forced_down`,
    /// the note and the window (seconds since the epoch, 0 for none)
    /// recorded, its UP key removed and its DOWN key written, in one
    /// transaction.
    ///
    /// Sticky: the owner's [`Client::update`] changes the other fields but
    /// the service stays DOWN, until [`Client::up`] lifts it or, with a
    /// nonzero `maintenance_end`, that time passes (the owner's live client
    /// lifts it then; a window that ends before the owner notices the down,
    /// at most a third of its TTL later, is lifted when it notices).
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) if the uuid is
    /// unknown; [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument)
    /// if the end has already passed or comes before the start.
    pub fn down(
        &self,
        uuid: &str,
        note: &str,
        maintenance_start: u64,
        maintenance_end: u64,
    ) -> Result<()> {
        let uuid = normalize_uuid(uuid)?;
        if note.len() > crate::record::MAX_NOTE_LEN || note.contains('\0') {
            return Err(Error::invalid(format!(
                "maintenance note: at most {} bytes and no NUL",
                crate::record::MAX_NOTE_LEN
            )));
        }
        if maintenance_end != 0 {
            let now = crate::sticky::now_secs();
            if maintenance_end <= now {
                return Err(Error::invalid(format!(
                    "maintenance end {maintenance_end} has passed (now {now}): it would be lifted at once"
                )));
            }
            if maintenance_start > maintenance_end {
                return Err(Error::invalid(format!(
                    "maintenance start {maintenance_start} is after its end {maintenance_end}"
                )));
            }
        }
        let note = note.to_string();
        let owner = self.inner.owner.clone();
        self.call("down", async move {
            owner
                .down(&uuid, &note, maintenance_start, maintenance_end)
                .await
        })
    }

    /// Lifts a forced DOWN ([`Client::down`]): the record says UP again, its
    /// maintenance note and window are cleared, and, when its owner is
    /// alive, it is UP at once: the UP key goes on the owner's lease in the
    /// same transaction (subscribers see [`EventKind::Up`](crate::EventKind::Up)
    /// with [`DownReason::Lifted`](crate::DownReason::Lifted)). A no-op for
    /// a service that is not forced down;
    /// [`ErrorKind::NotFound`](crate::ErrorKind::NotFound) if the uuid is
    /// unknown.
    pub fn up(&self, uuid: &str) -> Result<()> {
        let uuid = normalize_uuid(uuid)?;
        let owner = self.inner.owner.clone();
        self.call("up", async move { owner.up(&uuid).await })
    }

    /// Removes a service's record and every index key in one transaction.
    /// Returns false if there was no such service.
    pub fn delete(&self, uuid: &str) -> Result<bool> {
        let uuid = normalize_uuid(uuid)?;
        let owner = self.inner.owner.clone();
        self.call("delete", async move { owner.delete(&uuid).await })
    }

    /// Subscribes to changes of the services matching `filter` (by uuid,
    /// type, host and/or region; not by status). Read events with
    /// [`Subscription::recv_timeout`] or iterate `&subscription`.
    pub fn subscribe(&self, filter: &Filter, options: &SubscribeOptions) -> Result<Subscription> {
        self.subscribe_inner(filter, options, None)
    }

    /// Subscribes with a callback, run on a library thread of this
    /// subscription's own, one event at a time, never on the thread that
    /// keeps leases alive: a slow callback delays only its own events.
    pub fn subscribe_callback<F>(
        &self,
        filter: &Filter,
        options: &SubscribeOptions,
        callback: F,
    ) -> Result<Subscription>
    where
        F: FnMut(&crate::Event) + Send + 'static,
    {
        self.subscribe_inner(filter, options, Some(Box::new(callback)))
    }

    fn subscribe_inner(
        &self,
        filter: &Filter,
        options: &SubscribeOptions,
        callback: Option<Callback>,
    ) -> Result<Subscription> {
        let filter = filter.validated()?;
        if options.queue_capacity == 0 {
            return Err(Error::invalid("queue_capacity must be at least 1"));
        }
        let hub = self.inner.hub.clone();
        self.call("subscribe", async move { hub.ensure_started().await })?;
        crate::watch::subscribe(
            Box::new(self.clone()),
            &self.inner.hub,
            filter,
            options,
            callback,
        )
    }

    /// Counters for operators: keepalives, reconnects, lease re-grants, the
    /// current lease and its remaining TTL.
    pub fn stats(&self) -> Stats {
        let mut stats = self.inner.counters.snapshot();
        stats.task_panics += self.inner.rt.health().panics();
        stats
    }

    /// Asks the client's runtime thread to answer, without any etcd I/O.
    ///
    /// A daemon's own watchdog can use it to check that the library's thread
    /// is alive and not stuck; it also measures the cost of the hand-off every
    /// blocking call pays on top of its round trip to etcd.
    pub fn ping(&self) -> Result<()> {
        self.call("ping", async { Ok(()) })
    }

    /// The TTL etcd granted to this client's lease (etcd raises a TTL below
    /// its minimum); zero before its first UP registration grants one.
    pub fn granted_ttl(&self) -> Duration {
        Duration::from_secs(self.inner.lease.granted_ttl().max(0) as u64)
    }

    /// The configuration this client was connected with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Closes the connection for every handle: marks its UP services closed
    /// and revokes its lease (they go DOWN now, not after the TTL, and
    /// watchers see [`DownReason::Closed`](crate::DownReason::Closed), not
    /// `Expired`; no lease is granted after close began, so a write still
    /// in flight cannot bring one back), ends its subscriptions
    /// (iteration ends; callbacks stop and are dropped), makes its views
    /// and clones return [`ErrorKind::Closed`](crate::ErrorKind::Closed),
    /// and stops its runtime thread. Works from any thread but the
    /// runtime's own. Returns the revoke's error, if any; the client is
    /// closed either way, and a second close returns the first one's result.
    ///
    /// Final and bounded: a write in flight for a service ends before its
    /// close mark, and nothing of this client is written for it after;
    /// close returns within three request timeouts (one for writes in
    /// flight and the marks, two in which a failed or slow revoke is tried
    /// again). If the revoke did not succeed by then, the error says so and
    /// the services go DOWN when the lease expires (at most its TTL later).
    pub fn close(self) -> Result<()> {
        self.inner.close()
    }
}

impl crate::view::Host for Client {
    fn check_usable(&self) -> Result<()> {
        Client::check_usable(self)
    }

    fn task_failure(&self) -> Option<String> {
        Client::task_failure(self).map(str::to_string)
    }

    fn etcd_revision(&self) -> Result<i64> {
        let store = self.inner.store.clone();
        self.call("view sync", async move { store.revision().await })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // In a forked child, what the connection holds (its locks, channels
        // and tasks) belongs to the parent's threads, any of which may have
        // held a lock at the fork: dropping it could wait forever. Leak one
        // reference so the connection is never torn down here.
        if self.inner.rt.is_forked_copy() {
            std::mem::forget(self.inner.clone());
        }
    }
}

impl Inner {
    /// Closes once; every later (or concurrent) close waits for that one
    /// and returns its result, so no caller is told Ok before the lease is
    /// really revoked.
    fn close(&self) -> Result<()> {
        if let Err(e) = self.rt.check_forked() {
            // Before any lock: a parent's thread may have held one at the
            // fork. The lease is the parent's, and the parent lives on: a
            // child must not revoke it, and cannot (no runtime thread here).
            return Err(Error::new(
                e.kind(),
                "close() in a forked child: the parent's lease is left alone; the child must connect its own client",
            ));
        }
        let mut outcome = self.close_outcome.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = &*outcome {
            return r.clone();
        }
        self.closed.store(true, Ordering::Release);
        let _ = self.stop_heartbeat.send(true);
        self.hub.shutdown();
        let owner = self.owner.clone();
        let result = if self.rt.on_runtime_thread() {
            // Waiting here would stall the revoke itself: run it on the
            // runtime and stop the runtime after it, without waiting.
            self.rt.stop_after(async move {
                let _ = owner.close().await;
            });
            Err(Error::new(
                crate::ErrorKind::WouldDeadlock,
                "close() on the library's runtime thread: the lease revoke was started, not awaited",
            ))
        } else {
            // The owner bounds close itself; the margin only lets its own
            // timeout, which says what it gave up on, answer first.
            let bound = crate::owner::close_bound(self.config.get_request_timeout());
            self.rt
                .call("close", bound + Duration::from_millis(250), async move {
                    owner.close().await
                })
        };
        self.rt.stop();
        *outcome = Some(result.clone());
        result
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Unreachable in a forked child (see `Drop for Client`), and if it
        // were reached, `close` takes no lock there.
        let _ = self.close();
    }
}

async fn connect_etcd(
    cfg: &Config,
    steering: &Steering,
    health: Arc<crate::runtime::Health>,
    counters: &Arc<Counters>,
) -> Result<etcd_client::Client> {
    // No per-request timeout here: tonic would apply it to whole streams
    // (watch, keepalive). Every call gets its own deadline instead. HTTP/2
    // pings find dead connections; etcd's default minimum ping interval is
    // 5 s, so pinging more often gets the connection closed.
    //
    // require_leader: a member cut off from its peers answers "no leader" at
    // once (instead of hanging or serving a stale view), and closes our
    // watch when it loses its leader, so the watcher moves elsewhere.
    let keep_alive = (Duration::from_secs(10), Duration::from_secs(5));
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(cfg.get_connect_timeout())
        .with_keep_alive(keep_alive.0, keep_alive.1)
        .with_keep_alive_while_idle(true)
        .with_require_leader(true);
    if let Some((user, password)) = cfg.credentials() {
        // Auto refresh covers "invalid auth token" at the start of a call;
        // crate::auth covers the rest.
        opts = opts.with_user(user, password).with_auto_token_refresh(true);
    }
    let endpoints = cfg.get_endpoints().to_vec();
    // With TLS the files are read again for every new connection, so a
    // long-lived client follows certificate rotation.
    let tls = match cfg.tls() {
        Some(files) => Some(Credentials::load(files, counters.clone())?),
        None => None,
    };
    let client = match &tls {
        Some(credentials) => {
            let settings = crate::tls::channel::Settings {
                connect_timeout: cfg.get_connect_timeout(),
                keep_alive: Some(keep_alive),
            };
            crate::tls::channel::connect(&endpoints, opts, credentials.clone(), settings).await
        }
        None => etcd_client::Client::connect(&endpoints, Some(opts)).await,
    }
    .map_err(|e| Error::etcd("connecting", e))?;
    steering.start(
        client.clone(),
        endpoints,
        cfg.get_status_ttl(),
        cfg.get_connect_timeout(),
        tls,
        health,
    );
    Ok(client)
}

/// `Client` must stay shareable across threads: a compile-time check.
const _: fn() = || {
    fn is<T: Send + Sync>() {}
    is::<Client>();
    is::<crate::View>();
    is::<crate::Subscription>();
};
