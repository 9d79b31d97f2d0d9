//! A local view: every service of the namespace in process memory, kept
//! current by the client's shared watch, answering is-up, get and list
//! without a round trip.
//!
//! It is the same model the subscriptions are computed from, so a view and a
//! subscription never disagree about what happened.
//!
//! The view sits below the blocking client: it asks its [`Host`] (the
//! client, which makes views) the little it needs of the connection, and
//! never names the client's type.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::model::{Key, Model};
use crate::record::{Status, check_segment};
use crate::store::{Filter, ServiceInfo};
use crate::watch::Hub;

/// What a [`View`] does with reads while its watch is disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StalePolicy {
    /// Answer from the last known state; check [`View::is_connected`].
    Serve,
    /// Answer until the watch has been disconnected for `after`, then fail
    /// reads with [`ErrorKind::Stale`] until it reconnects.
    FailAfter(Duration),
}

/// A watch-backed in-process copy of every service in the namespace.
///
/// Reads never touch the network and never allocate on the is-up path. The
/// default [`StalePolicy`] is `FailAfter(status TTL)`: once the watch has been
/// cut off for a whole TTL any service may have expired unseen, so the view
/// stops vouching for liveness rather than lie.
///
/// Like every handle of a client, a view keeps the client's connection
/// alive while it lives, even after every [`Client`](crate::Client) clone is dropped;
/// [`Client::close`](crate::Client::close) ends it, and reads then return [`ErrorKind::Closed`].
/// In a child forked after the view was made, reads return
/// [`ErrorKind::Forked`] (the copy would be frozen at the fork).
#[derive(Clone)]
pub struct View {
    hub: Arc<Hub>,
    /// The connection: kept alive while the view lives.
    host: Arc<dyn Host>,
    policy: StalePolicy,
}

/// What a view needs of the connection that made it.
pub(crate) trait Host: Send + Sync {
    /// `Forked` in a forked child, `Closed` once closed.
    fn check_usable(&self) -> Result<()>;
    /// Why a background task was given up, if one was.
    fn task_failure(&self) -> Option<String>;
    /// etcd's current revision: one linearizable read, with the request
    /// timeout.
    fn etcd_revision(&self) -> Result<i64>;
}

impl View {
    /// A view of `hub`'s model (already loaded) for the connection `host`.
    pub(crate) fn new(hub: Arc<Hub>, host: Arc<dyn Host>, policy: StalePolicy) -> View {
        View { hub, host, policy }
    }

    /// Sets the staleness policy for reads from this handle.
    pub fn set_stale_policy(&mut self, policy: StalePolicy) -> &mut View {
        self.policy = policy;
        self
    }

    /// The staleness policy.
    pub fn stale_policy(&self) -> StalePolicy {
        self.policy
    }

    fn model(&self) -> Result<&Model> {
        self.host.check_usable()?;
        if let Some(why) = self.host.task_failure() {
            // Whatever the policy: nothing keeps the copy current any more.
            return Err(Error::new(ErrorKind::Stale, why));
        }
        if let StalePolicy::FailAfter(bound) = self.policy {
            if let Some(d) = self.hub.disconnected_for() {
                if d > bound {
                    return Err(Error::new(
                        ErrorKind::Stale,
                        format!(
                            "the view's watch has been disconnected for {d:.1?} (bound {bound:?}); last revision {}",
                            self.revision()
                        ),
                    ));
                }
            }
        }
        Ok(&self.hub.model)
    }

    /// True when the service exists, says UP and its lease is alive, as of
    /// [`View::revision`]. No allocation, no round trip.
    pub fn is_up(&self, uuid: &str) -> Result<bool> {
        let key = key_of(uuid)?;
        Ok(self.model()?.status_of(&key) == Some(Status::Up))
    }

    /// [`View::is_up`] for the service registered as `service_type` on `host`.
    pub fn is_up_by_type_host(&self, service_type: &str, host: &str) -> Result<bool> {
        check_segment("type", service_type, false)?;
        check_segment("host", host, false)?;
        let model = self.model()?;
        Ok(model
            .find_type_host(service_type, host)
            .is_some_and(|key| model.status_of(&key) == Some(Status::Up)))
    }

    /// The record and liveness of `uuid`, if known.
    pub fn get(&self, uuid: &str) -> Result<Option<ServiceInfo>> {
        let key = key_of(uuid)?;
        Ok(self.model()?.entry_of(&key).and_then(|e| e.info()))
    }

    /// [`View::get`] for the service registered as `service_type` on `host`.
    pub fn get_by_type_host(&self, service_type: &str, host: &str) -> Result<Option<ServiceInfo>> {
        check_segment("type", service_type, false)?;
        check_segment("host", host, false)?;
        let model = self.model()?;
        Ok(model
            .find_type_host(service_type, host)
            .and_then(|key| model.entry_of(&key))
            .and_then(|e| e.info()))
    }

    /// Services matching `filter`.
    pub fn list(&self, filter: &Filter) -> Result<Vec<ServiceInfo>> {
        let filter = filter.validated()?;
        let mut out: Vec<ServiceInfo> = self
            .model()?
            .snapshot()
            .entries()
            .filter_map(|(_, e)| e.info())
            .filter(|i| filter.matches(i))
            .collect();
        out.sort_by(|a, b| a.service.uuid.cmp(&b.service.uuid));
        Ok(out)
    }

    /// Number of services in the view.
    pub fn len(&self) -> usize {
        self.hub.model.len()
    }

    /// True when the view holds no service.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The etcd revision the view reflects: the last change the watch
    /// delivered, or a later revision at which a read of etcd found the
    /// namespace unchanged.
    pub fn revision(&self) -> i64 {
        self.hub.current_revision()
    }

    /// True while the view's watch is connected and caught up.
    pub fn is_connected(&self) -> bool {
        self.hub.is_connected()
    }

    /// Waits until the view reflects `revision`; [`ErrorKind::Timeout`] if it
    /// does not within `timeout` (`Duration::MAX` waits without limit),
    /// [`ErrorKind::Closed`] if the client closes meanwhile.
    pub fn wait_for_revision(&self, revision: i64, timeout: Duration) -> Result<()> {
        self.host.check_usable()?;
        if self.hub.wait_for_revision(revision, timeout) {
            Ok(())
        } else {
            // Closed while waiting: say so rather than time out.
            self.host.check_usable()?;
            Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "the view reached revision {} of {revision} within {timeout:?}",
                    self.revision()
                ),
            ))
        }
    }

    /// Read-your-writes: reads etcd's current revision (one round trip) and
    /// waits until the view reflects it, so every write this process has
    /// completed is visible. When the view is behind, its watch checks at
    /// once rather than after a quiet period: it asks etcd for a progress
    /// notification (a second round trip), and where that goes unanswered
    /// (etcd's gRPC proxy) reads which keys of the namespace changed since
    /// the last event (one or two more). So in a quiet namespace of a busy
    /// etcd, where no event of ours carries the newer revision, it returns
    /// within a few round trips. Nothing is written: a read-only user
    /// syncs as well as any.
    pub fn sync(&self, timeout: Duration) -> Result<()> {
        let rev = self.host.etcd_revision()?;
        self.wait_for_revision(rev, timeout)
    }
}

/// The model's key for `uuid` (any accepted spelling), without allocating.
fn key_of(uuid: &str) -> Result<Key> {
    Key::from_input(uuid).ok_or_else(|| {
        Error::invalid(format!(
            "uuid {uuid:?}: expected 32 hex digits (hyphens allowed)"
        ))
    })
}
