//! Every read and write of service records as etcd transactions.
//!
//! A write is one transaction guarded by compares on everything it read, so a
//! half-written service is impossible; a lost compare is retried from a fresh
//! read a bounded number of times, then reported as a conflict.
//!
//! The store is split by concern: [`filter`] (what a list asks for and
//! returns), [`reads`] (point reads, lists and the paged reader pinned to one
//! revision), [`census`] (lists of one region through the region index,
//! where a census vouches for it), [`writes`] (the guarded write
//! transactions and the snapshots they remember), [`rebind`] (the
//! heartbeat's UP-key checks) and [`retry`] (the retry of momentary
//! failures every etcd call goes through).

mod census;
mod filter;
mod reads;
mod rebind;
mod retry;
mod writes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, KvClient, LeaseClient, Txn, TxnOp, TxnOpResponse,
};

use crate::auth::Auth;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::Keys;
use crate::record::Service;
use crate::steer::Steering;

pub use filter::{Filter, ServiceInfo};
use reads::MAX_RESPONSE_BYTES;
pub(crate) use reads::{Changes, Scan};
pub(crate) use rebind::Rebound;
use retry::resilient;
pub(crate) use writes::CLOSED_MARK;
use writes::Snapshot;

/// How often a write is retried after losing a compare to a concurrent writer.
const MAX_WRITE_ATTEMPTS: usize = 8;
/// etcd's default `--max-txn-ops` is 128; two reads per service.
const READ_BATCH: usize = 60;

/// The result of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    pub uuid: String,
    /// False when nothing needed to change.
    pub wrote: bool,
    /// `Some(end of the maintenance window)` (0: none) when the record is
    /// forced down after the write.
    pub held: Option<u64>,
    /// The record as stored after the write (`None`: there is none).
    pub record: Option<Service>,
    /// The other lease the UP key was on before this write moved it to
    /// ours (a live holder displaced); 0 when none.
    pub displaced: i64,
}

/// What a write's decision sees of a service's keys besides its record.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Current {
    /// The lease its UP key is on; 0 when it has none.
    pub up_lease: i64,
    /// The owner's lease recorded in its DOWN key when it was forced down
    /// (0: none recorded).
    pub down_owner: i64,
    /// Its DOWN key is a clean close's mark. Every write of ours replaces
    /// the DOWN key, so while we hold the service, a mark means another
    /// client took it over and then closed.
    pub closed: bool,
    /// The lease its DOWN key is bound to, as the Python library writes it
    /// (0: none; ours are durable). A key on a lease exists only while the
    /// lease lives.
    pub down_lease: i64,
    /// Whether the lease recorded in `down_owner` is alive, asked of etcd
    /// when the write needs to know (`None`: not asked, or none recorded).
    pub owner_alive: Option<bool>,
}

/// A write the owner's decision chose, for the store to execute as one
/// guarded transaction: the record, which lease its UP key goes on and
/// which owner its DOWN key names. The store only executes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Put {
    pub record: Service,
    /// The lease an UP record's UP key goes on (0: no UP key).
    pub up_lease: i64,
    /// The owner a DOWN record's DOWN key names (0: none).
    pub down_owner: i64,
    /// The DOWN key stays (or becomes) a clean close's mark, whatever the
    /// record says: a service closed by its owner and then forced down or
    /// lifted by an operator still reads `closed`, not `expired`, and names
    /// no owner for `up()` to bind.
    pub closed: bool,
}

/// A service's keys that a write of another uuid replaces: the stale
/// duplicate registration of the same type+host (see [`Store::update`]).
#[derive(Debug, Clone)]
pub(crate) struct Superseded {
    uuid: String,
    rec: Seen,
    up: Seen,
    down: Seen,
    region: Option<String>,
}

/// The owner's decision for a write of its own service: given the uuid
/// about to be written (its own, or the one the type+host names when
/// adopting), the record and the [`Current`] state of its keys, the
/// [`Put`] to execute (`None`: nothing) or the error to return. The store
/// asks, the owner decides.
pub(crate) type Decide<'a> =
    &'a (dyn Fn(&str, Option<&Service>, &Current) -> Result<Option<Put>> + Send + Sync);

/// The owner's judgement of taking the type+host back from another uuid
/// (named), whose keys are [`Current`]: go ahead or the error to return.
pub(crate) type TakeBack<'a> = &'a (dyn Fn(&str, &Current) -> Result<()> + Send + Sync);

/// One key as read, or its absence.
#[derive(Debug, Clone, Default)]
struct Seen {
    mod_revision: i64,
    lease: i64,
    value: Vec<u8>,
}

impl Seen {
    fn exists(&self) -> bool {
        self.mod_revision != 0
    }

    /// A compare that holds only if the key is still exactly as we read it.
    fn unchanged(&self, key: &str) -> Compare {
        if self.exists() {
            Compare::mod_revision(key, CompareOp::Equal, self.mod_revision)
        } else {
            Compare::version(key, CompareOp::Equal, 0)
        }
    }
}

/// Service records in one namespace of one etcd cluster.
#[derive(Clone)]
pub(crate) struct Store {
    kv: KvClient,
    /// For the region census's short-lived lease only; the client's own
    /// lease is [`crate::lease`]'s.
    leases: LeaseClient,
    /// When this client last tried to take a region census.
    census_tried: Arc<Mutex<Option<std::time::Instant>>>,
    keys: Keys,
    auth: Auth,
    /// The state this client last saw or wrote for each service it writes,
    /// so the next change is one guarded transaction with no read first.
    /// Only a hint: the compares reject it if anything changed meanwhile.
    last: Arc<Mutex<HashMap<String, Snapshot>>>,
    /// Endpoint steering: told when a call suggests a member is wrong, and
    /// tells long-lived streams (keepalive, watch) when one was left.
    steering: Steering,
}

impl Store {
    pub(crate) fn new(
        kv: KvClient,
        leases: LeaseClient,
        keys: Keys,
        auth: Auth,
        steering: Steering,
    ) -> Store {
        Store {
            kv: kv.max_decoding_message_size(MAX_RESPONSE_BYTES),
            leases,
            census_tried: Arc::default(),
            keys,
            auth,
            last: Arc::default(),
            steering,
        }
    }

    /// Changes whenever a member is taken out of rotation; streams opened
    /// before should be reopened.
    pub(crate) fn reroutes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.steering.reroutes()
    }

    /// Endpoint steering, for the calls made outside the store (leases,
    /// watches) to raise their suspicions.
    pub(crate) fn steering(&self) -> &Steering {
        &self.steering
    }

    pub(crate) fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Re-authentication for calls made outside the store (leases, watches).
    pub(crate) fn auth(&self) -> &Auth {
        &self.auth
    }

    /// A guarded write that names leases: `None` when etcd refused it
    /// because one of them is gone (gRPC NOT_FOUND, the only code a
    /// transaction answers for "requested lease not found"), so that the
    /// caller decides again from a fresh read.
    ///
    /// With `our_lease` the lease is this client's: its loss is an error for
    /// the caller, which re-grants ([`crate::lease::with_live_lease`]).
    async fn txn_leased(
        &self,
        context: &str,
        txn: Txn,
        our_lease: bool,
    ) -> Result<Option<etcd_client::TxnResponse>> {
        let resp = resilient(&self.auth, &self.steering, context, || {
            let mut kv = self.kv.clone();
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await;
        match resp {
            Ok(r) => Ok(Some(r)),
            Err(etcd_client::Error::GRpcStatus(s))
                if s.code() == tonic::Code::NotFound && !our_lease =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::etcd(context, e)),
        }
    }

    /// Revokes lease `id`, without a deadline of its own (the caller sets
    /// one): Ok also when etcd says it is already gone (gRPC NOT_FOUND).
    pub(crate) async fn revoke_lease(&self, id: i64) -> Result<()> {
        let resp = resilient(&self.auth, &self.steering, "revoking the lease", || {
            let mut leases = self.leases.clone();
            async move { leases.revoke(id).await }
        })
        .await;
        match resp {
            Ok(_) => Ok(()),
            Err(etcd_client::Error::GRpcStatus(s)) if s.code() == tonic::Code::NotFound => Ok(()),
            Err(e) => Err(Error::etcd(&format!("close: revoking lease {id:x}"), e)),
        }
    }

    /// True when lease `id` is alive (a `TimeToLive` call).
    pub(crate) async fn lease_alive(&self, id: i64) -> Result<bool> {
        let resp = resilient(
            &self.auth,
            &self.steering,
            "asking whether a lease lives",
            || {
                let mut leases = self.leases.clone();
                async move { leases.time_to_live(id, None).await }
            },
        )
        .await;
        match resp {
            Ok(r) => Ok(r.ttl() > 0),
            Err(etcd_client::Error::GRpcStatus(s)) if s.code() == tonic::Code::NotFound => {
                Ok(false)
            }
            Err(e) => Err(Error::etcd(
                &format!("asking whether lease {id:x} lives"),
                e,
            )),
        }
    }

    async fn txn(&self, context: &str, txn: Txn) -> Result<etcd_client::TxnResponse> {
        resilient(&self.auth, &self.steering, context, || {
            let mut kv = self.kv.clone();
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await
        .map_err(|e| Error::etcd(context, e))
    }

    async fn range(
        &self,
        key: impl Into<Vec<u8>>,
        opts: GetOptions,
    ) -> Result<etcd_client::GetResponse, etcd_client::Error> {
        let key: Vec<u8> = key.into();
        resilient(&self.auth, &self.steering, "reading", || {
            let mut kv = self.kv.clone();
            let key = key.clone();
            let opts = opts.clone();
            async move { kv.get(key, Some(opts)).await }
        })
        .await
    }

    /// Point-reads `keys` in one transaction (one revision).
    async fn read(&self, context: &str, keys: &[&str]) -> Result<Vec<Seen>> {
        let ops: Vec<TxnOp> = keys.iter().map(|k| TxnOp::get(*k, None)).collect();
        let resp = self.txn(context, Txn::new().and_then(ops)).await?;
        let seen: Vec<Seen> = resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().map(seen).unwrap_or_default(),
                _ => Seen::default(),
            })
            .collect();
        // Callers index the answers by position: never trust a short one.
        if seen.len() != keys.len() {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "{context}: etcd answered {} of {} reads",
                    seen.len(),
                    keys.len()
                ),
            ));
        }
        Ok(seen)
    }
}

fn seen(kv: &KeyValue) -> Seen {
    Seen {
        mod_revision: kv.mod_revision(),
        lease: kv.lease(),
        value: kv.value().to_vec(),
    }
}
