//! Every read and write of service records as etcd transactions.
//!
//! A write is one transaction guarded by compares on everything it read, so a
//! half-written service is impossible; a lost compare is retried from a fresh
//! read a bounded number of times, then reported as a conflict.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse,
};

use crate::auth::Auth;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{Keys, ParsedKey};
use crate::log_once;
use crate::record::{Service, Status, decode_stored};
use crate::steer::Steering;

/// How often a write is retried after losing a compare to a concurrent writer.
const MAX_WRITE_ATTEMPTS: usize = 8;
/// etcd's default `--max-txn-ops` is 128; two reads per service.
const READ_BATCH: usize = 60;
/// Above this many candidates from an index, one range scan of every record
/// is cheaper than (concurrent) batches of point reads.
const SCAN_THRESHOLD: usize = 4000;

/// A record together with whether the service is alive now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The stored record.
    pub service: Service,
    /// True when the record says UP *and* its lease-bound UP key exists.
    pub up: bool,
}

/// Which services [`Client::list`](crate::Client::list) returns; every field
/// set narrows the result (all unset lists everything in the namespace).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this uuid.
    pub uuid: Option<String>,
    /// Only this type.
    pub service_type: Option<String>,
    /// Only this host.
    pub host: Option<String>,
    /// Only this region.
    pub region: Option<String>,
    /// Only services whose *effective* status is this.
    pub status: Option<Status>,
}

impl Filter {
    /// Everything in the namespace.
    pub fn all() -> Filter {
        Filter::default()
    }
    /// Narrows to one uuid.
    pub fn uuid(mut self, uuid: &str) -> Filter {
        self.uuid = Some(uuid.to_string());
        self
    }
    /// Narrows to one type.
    pub fn service_type(mut self, service_type: &str) -> Filter {
        self.service_type = Some(service_type.to_string());
        self
    }
    /// Narrows to one host.
    pub fn host(mut self, host: &str) -> Filter {
        self.host = Some(host.to_string());
        self
    }
    /// Narrows to one region.
    pub fn region(mut self, region: &str) -> Filter {
        self.region = Some(region.to_string());
        self
    }
    /// Narrows to one effective status.
    pub fn status(mut self, status: Status) -> Filter {
        self.status = Some(status);
        self
    }

    /// Validates and normalizes the fields that become key segments.
    pub(crate) fn validated(&self) -> Result<Filter> {
        let mut f = self.clone();
        if let Some(u) = &f.uuid {
            f.uuid = Some(crate::record::normalize_uuid(u)?);
        }
        for (what, v) in [
            ("type", &f.service_type),
            ("host", &f.host),
            ("region", &f.region),
        ] {
            if let Some(v) = v {
                crate::record::check_segment(what, v, false)?;
            }
        }
        Ok(f)
    }

    /// True when `info` passes every field of the filter.
    pub fn matches(&self, info: &ServiceInfo) -> bool {
        let effective = if info.up { Status::Up } else { Status::Down };
        self.matches_record(&info.service) && self.status.is_none_or(|st| st == effective)
    }

    /// True when `s` passes every field of the filter but the status.
    pub(crate) fn matches_record(&self, s: &Service) -> bool {
        self.uuid.as_ref().is_none_or(|u| *u == s.uuid)
            && self
                .service_type
                .as_ref()
                .is_none_or(|t| *t == s.service_type)
            && self.host.as_ref().is_none_or(|h| *h == s.host)
            && self.region.as_ref().is_none_or(|r| *r == s.region)
    }
}

/// The result of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    pub uuid: String,
    /// False when nothing needed to change.
    pub wrote: bool,
    /// `Some(end of the maintenance window)` (0: none) when the record is
    /// forced down after the write.
    pub held: Option<u64>,
}

/// Which lease a write binds the UP key to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bind {
    /// This client's lease: it owns the service.
    Ours(i64),
    /// The lease of the service's owner, as recorded in its DOWN key when
    /// it was forced down (no UP key if none is recorded).
    Owner,
    /// No UP key: a DOWN write, or lifting a service whose owner is gone
    /// (its owner's client puts the UP key back when it next checks).
    Nothing,
}

/// What the heartbeat learned when it checked a service it owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rebind {
    /// The UP key is on our lease already.
    Ours,
    /// The UP key was missing (or on our previous lease) and is now on ours.
    Restored,
    /// Forced down by an operator until the given end of its maintenance
    /// window (0: until `up()`): still ours, to lift then.
    Held(u64),
    /// The service is no longer ours to keep up: deleted, declared down, or
    /// taken over by another process.
    Disowned,
}

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

/// A service's keys as last seen: record, UP, DOWN and type/host index.
#[derive(Debug, Clone)]
struct Snapshot {
    rec: Seen,
    up: Seen,
    down: Seen,
    type_hosts: BTreeMap<String, Seen>,
}

/// Bound on remembered snapshots (beyond it the memory is dropped, costing
/// only a read per write).
const MAX_SNAPSHOTS: usize = 100_000;

impl Store {
    pub(crate) fn new(kv: KvClient, keys: Keys, auth: Auth, steering: Steering) -> Store {
        Store {
            kv: kv.max_decoding_message_size(MAX_RESPONSE_BYTES),
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

    /// The cluster's current revision (a linearizable read).
    pub(crate) async fn revision(&self) -> Result<i64> {
        let resp = self
            .range(self.keys.root(), GetOptions::new().with_count_only())
            .await
            .map_err(|e| Error::etcd("reading the current revision", e))?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// True when the service is UP: one count-only get of its UP key.
    ///
    /// Every writer keeps "the UP key exists ⇔ the record says UP and is not
    /// forced down" (ours in one transaction; the original library deletes
    /// the UP key whenever the status leaves UP), so the key alone answers
    /// and the record need not be read (README, "What UP means").
    pub(crate) async fn is_up(&self, uuid: &str) -> Result<bool> {
        let up = self.keys.status(Status::Up, uuid);
        let resp = self
            .range(up, GetOptions::new().with_count_only())
            .await
            .map_err(|e| Error::etcd("is_up", e))?;
        Ok(resp.count() > 0)
    }

    /// The uuid registered for `type`/`host`, if any.
    pub(crate) async fn uuid_for(&self, service_type: &str, host: &str) -> Result<Option<String>> {
        let key = self.keys.type_host(service_type, host);
        // A plain get, not a one-get transaction: it is the cheaper request.
        let resp = self
            .range(key.as_str(), GetOptions::new())
            .await
            .map_err(|e| Error::etcd("lookup by type and host", e))?;
        match resp.kvs().first() {
            Some(kv) => {
                let uuid = String::from_utf8_lossy(kv.value()).to_string();
                match crate::record::normalize_uuid(&uuid) {
                    Ok(u) => Ok(Some(u)),
                    Err(_) => Err(Error::new(
                        ErrorKind::CorruptRecord,
                        format!("{key}: value {uuid:?} is not a uuid"),
                    )),
                }
            }
            _ => Ok(None),
        }
    }

    /// The record and its liveness.
    pub(crate) async fn get(&self, uuid: &str) -> Result<Option<ServiceInfo>> {
        let record = self.keys.record(uuid);
        let up = self.keys.status(Status::Up, uuid);
        let seen = self.read("get", &[&record, &up]).await?;
        let (Some(rec), Some(upk)) = (seen.first(), seen.get(1)) else {
            return Err(Error::new(
                ErrorKind::Internal,
                "get: short transaction response",
            ));
        };
        if !rec.exists() {
            return Ok(None);
        }
        let service = decode_stored(record.as_bytes(), &rec.value)?;
        let up = service.status == Status::Up && upk.exists();
        Ok(Some(ServiceInfo { service, up }))
    }

    /// Creates or updates `desired` (already validated) for its owner; the
    /// UP key is bound as `bind` says. A forced DOWN whose window has not
    /// ended stays (see [`crate::maintenance`]). `fresh`: the uuid was just
    /// generated, so nothing of it can exist and the first attempt writes
    /// without reading (its compares still check that).
    pub(crate) async fn update(
        &self,
        desired: &Service,
        bind: Bind,
        fresh: bool,
    ) -> Result<Written> {
        if fresh {
            let th = self.keys.type_host(&desired.service_type, &desired.host);
            self.remember(
                &desired.uuid,
                Snapshot {
                    rec: Seen::default(),
                    up: Seen::default(),
                    down: Seen::default(),
                    type_hosts: BTreeMap::from([(th, Seen::default())]),
                },
            );
        }
        let want = desired.clone();
        let now = crate::maintenance::now_secs();
        self.write(
            &desired.uuid,
            Some((&desired.service_type, &desired.host)),
            bind,
            |old, _| Ok(Some(crate::maintenance::owner_record(old, &want, now))),
        )
        .await
    }

    /// Forces a service down with a maintenance note and window.
    pub(crate) async fn down(
        &self,
        uuid: &str,
        note: &str,
        start: u64,
        end: u64,
    ) -> Result<Written> {
        self.write(uuid, None, Bind::Nothing, |old, _| {
            let mut s = old.cloned().ok_or_else(|| not_found(uuid))?;
            s.status = Status::Down;
            s.forced_down = true;
            s.maintenance_note = note.to_string();
            s.maintenance_start = start;
            s.maintenance_end = end;
            // An operator's DOWN is not a missed heartbeat: the owner's next
            // check-in must not lift it.
            s.heartbeat_missed = false;
            Ok(Some(s))
        })
        .await
    }

    /// Read-modify-write of an existing service in one guarded transaction
    /// (see [`Store::write`]), binding an UP record to `lease` (0: none);
    /// used by the heartbeat deadline enforcement.
    pub(crate) async fn rewrite(
        &self,
        uuid: &str,
        lease: i64,
        make: impl Fn(Option<&Service>, i64) -> Result<Option<Service>>,
    ) -> Result<Written> {
        let bind = if lease != 0 {
            Bind::Ours(lease)
        } else {
            Bind::Nothing
        };
        self.write(uuid, None, bind, make).await
    }

    /// Lifts a forced DOWN, binding the UP key as `bind` says. With
    /// `due = Some(now)`, only if its maintenance window has ended by then
    /// (the owner's timer); with `None`, unconditionally (`up()`). Writes
    /// nothing for a service that is not forced down.
    pub(crate) async fn lift(&self, uuid: &str, bind: Bind, due: Option<u64>) -> Result<Written> {
        self.write(uuid, None, bind, |old, _| {
            let old = old.ok_or_else(|| not_found(uuid))?;
            let ended = due.is_none_or(|now| crate::maintenance::window_over(old, now));
            Ok((old.forced_down && ended).then(|| crate::maintenance::lifted(old)))
        })
        .await
    }

    /// Read-modify-write of one service in a single guarded transaction.
    /// `type_host_hint` lets the first read fetch the target type/host index.
    /// `make` gets the record and the lease its UP key is on (0 when there
    /// is none) and returns the record to write, or `None` for nothing; it
    /// runs again on every retry.
    async fn write(
        &self,
        uuid: &str,
        type_host_hint: Option<(&str, &str)>,
        bind: Bind,
        make: impl Fn(Option<&Service>, i64) -> Result<Option<Service>>,
    ) -> Result<Written> {
        let k = &self.keys;
        let record_key = k.record(uuid);
        let up_key = k.status(Status::Up, uuid);
        let down_key = k.status(Status::Down, uuid);
        for attempt in 0..MAX_WRITE_ATTEMPTS {
            let remembered = if attempt == 0 {
                self.remembered(uuid)
            } else {
                None
            };
            let from_memory = remembered.is_some();
            let Snapshot {
                rec,
                up,
                down,
                mut type_hosts,
            } = match remembered {
                Some(s) => s,
                None => {
                    let mut read_keys = vec![record_key.clone(), up_key.clone(), down_key.clone()];
                    if let Some((t, h)) = type_host_hint {
                        read_keys.push(k.type_host(t, h));
                    }
                    let refs: Vec<&str> = read_keys.iter().map(String::as_str).collect();
                    let mut seen = self.read("update: read", &refs).await?;
                    let rec = seen.remove(0);
                    let up = seen.remove(0);
                    let down = seen.remove(0);
                    let mut type_hosts: BTreeMap<String, Seen> = BTreeMap::new();
                    if let (Some((t, h)), Some(s)) = (type_host_hint, seen.pop()) {
                        type_hosts.insert(k.type_host(t, h), s);
                    }
                    Snapshot {
                        rec,
                        up,
                        down,
                        type_hosts,
                    }
                }
            };
            let old = if rec.exists() {
                Some(decode_stored(record_key.as_bytes(), &rec.value)?)
            } else {
                None
            };
            let up_lease = if up.exists() { up.lease } else { 0 };
            let Some(new) = make(old.as_ref(), up_lease)? else {
                return Ok(Written {
                    uuid: uuid.to_string(),
                    wrote: false,
                    held: None,
                });
            };
            let held = new.forced_down.then_some(new.maintenance_end);
            // The UP key's lease, and what the DOWN key records: the lease
            // of the owner of a forced-down service, so that up() can make
            // it UP again at once.
            let lease = match bind {
                Bind::Ours(id) => id,
                Bind::Owner => recorded_owner(&down),
                Bind::Nothing => 0,
            };
            let down_value = if new.forced_down {
                let owner = match bind {
                    Bind::Ours(id) if id != 0 => id,
                    _ if up.exists() && up.lease != 0 => up.lease,
                    _ => recorded_owner(&down),
                };
                if owner != 0 {
                    format!("{owner:x}")
                } else {
                    String::new()
                }
            } else {
                String::new()
            };
            let new_th = k.type_host(&new.service_type, &new.host);
            let old_th = old.as_ref().map(|o| k.type_host(&o.service_type, &o.host));
            // Fetch any type/host index the first read could not know about.
            let missing: Vec<String> = [Some(new_th.clone()), old_th.clone()]
                .into_iter()
                .flatten()
                .filter(|key| !type_hosts.contains_key(key))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            if !missing.is_empty() {
                let refs: Vec<&str> = missing.iter().map(String::as_str).collect();
                for (key, s) in missing
                    .iter()
                    .zip(self.read("update: read index", &refs).await?)
                {
                    type_hosts.insert(key.clone(), s);
                }
            }
            let th = &type_hosts[&new_th];
            if th.exists() && th.value != uuid.as_bytes() {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "type {:?} on host {:?} is already registered as uuid {}",
                        new.service_type,
                        new.host,
                        String::from_utf8_lossy(&th.value)
                    ),
                ));
            }

            let mut compares = vec![
                rec.unchanged(&record_key),
                up.unchanged(&up_key),
                down.unchanged(&down_key),
            ];
            let mut ops = Vec::new();
            let changed = old.as_ref() != Some(&new);
            let encoded = if changed { new.to_bytes() } else { Vec::new() };
            if changed {
                ops.push(TxnOp::put(record_key.as_str(), encoded.clone(), None));
                if !new.region.is_empty() {
                    ops.push(TxnOp::put(k.region(&new.region, uuid), "", None));
                }
            }
            if !th.exists() {
                compares.push(th.unchanged(&new_th));
                ops.push(TxnOp::put(new_th.as_str(), uuid, None));
            }
            if let (Some(o), Some(old_th)) = (&old, &old_th) {
                let ots = &type_hosts[old_th];
                if *old_th != new_th && ots.exists() && ots.value == uuid.as_bytes() {
                    compares.push(ots.unchanged(old_th));
                    ops.push(TxnOp::delete(old_th.as_str(), None));
                }
                if !o.region.is_empty() && o.region != new.region {
                    ops.push(TxnOp::delete(k.region(&o.region, uuid), None));
                }
            }
            match new.status {
                Status::Up => {
                    // Bind the UP key to this client's lease unless it already
                    // is: a restarted daemon takes over from its dead self.
                    if ops_put_up(&new, &up, lease) {
                        ops.push(TxnOp::put(
                            up_key.as_str(),
                            "",
                            Some(PutOptions::new().with_lease(lease)),
                        ));
                    }
                    if down.exists() {
                        ops.push(TxnOp::delete(down_key.as_str(), None));
                    }
                }
                Status::Down => {
                    if up.exists() {
                        ops.push(TxnOp::delete(up_key.as_str(), None));
                    }
                    // The Python library bound DOWN keys to a lease; ours are durable.
                    if puts_down(&down, &down_value) {
                        ops.push(TxnOp::put(down_key.as_str(), down_value.as_str(), None));
                    }
                }
            }
            if ops.is_empty() {
                if from_memory {
                    // Nothing to do by our memory; someone else may have
                    // changed it (forced it down, say), so look before
                    // deciding that nothing needs writing.
                    continue;
                }
                self.remember(
                    uuid,
                    Snapshot {
                        rec,
                        up,
                        down,
                        type_hosts,
                    },
                );
                return Ok(Written {
                    uuid: uuid.to_string(),
                    wrote: false,
                    held,
                });
            }
            let puts_up = ops_put_up(&new, &up, lease);
            let resp = self
                .txn("update: write", Txn::new().when(compares).and_then(ops))
                .await?;
            if !resp.succeeded() {
                self.forget(uuid);
                continue;
            }
            // Every key this transaction wrote now has its revision.
            let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
            let written = |value: &[u8], lease: i64| Seen {
                mod_revision: rev,
                lease,
                value: value.to_vec(),
            };
            let rec = if changed { written(&encoded, 0) } else { rec };
            let (up, down) = match new.status {
                Status::Up if puts_up => (written(b"", lease), Seen::default()),
                Status::Up => (up, Seen::default()),
                Status::Down if puts_down(&down, &down_value) => {
                    (Seen::default(), written(down_value.as_bytes(), 0))
                }
                Status::Down => (Seen::default(), down),
            };
            // Only the index the record now names matters for the next write.
            let th = match type_hosts.remove(&new_th) {
                Some(th) if th.exists() => th,
                _ => written(uuid.as_bytes(), 0),
            };
            let type_hosts = BTreeMap::from([(new_th, th)]);
            self.remember(
                uuid,
                Snapshot {
                    rec,
                    up,
                    down,
                    type_hosts,
                },
            );
            return Ok(Written {
                uuid: uuid.to_string(),
                wrote: true,
                held,
            });
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!("service {uuid}: concurrent writers won {MAX_WRITE_ATTEMPTS} times in a row"),
        ))
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, HashMap<String, Snapshot>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remembered(&self, uuid: &str) -> Option<Snapshot> {
        self.memory().get(uuid).cloned()
    }

    fn remember(&self, uuid: &str, snapshot: Snapshot) {
        let mut m = self.memory();
        if m.len() >= MAX_SNAPSHOTS && !m.contains_key(uuid) {
            m.clear();
        }
        m.insert(uuid.to_string(), snapshot);
    }

    pub(crate) fn forget(&self, uuid: &str) {
        self.memory().remove(uuid);
    }

    /// Removes the record and every index key in one transaction. Returns
    /// false when there was nothing to delete.
    pub(crate) async fn delete(&self, uuid: &str) -> Result<bool> {
        self.forget(uuid);
        let k = &self.keys;
        let record_key = k.record(uuid);
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let seen = self.read("delete: read", &[&record_key]).await?;
            let Some(rec) = seen.first().filter(|s| s.exists()) else {
                return Ok(false);
            };
            // A corrupt record is still deletable: that is how an operator
            // cleans it up. Its indexes are then found by scanning below.
            let old = decode_stored(record_key.as_bytes(), &rec.value).ok();
            let mut compares = vec![rec.unchanged(&record_key)];
            let mut ops = vec![
                TxnOp::delete(record_key.as_str(), None),
                TxnOp::delete(k.status(Status::Up, uuid), None),
                TxnOp::delete(k.status(Status::Down, uuid), None),
            ];
            if let Some(o) = &old {
                let th = k.type_host(&o.service_type, &o.host);
                let seen = self.read("delete: read index", &[&th]).await?;
                if let Some(s) = seen
                    .first()
                    .filter(|s| s.exists() && s.value == uuid.as_bytes())
                {
                    compares.push(s.unchanged(&th));
                    ops.push(TxnOp::delete(th.as_str(), None));
                }
                if !o.region.is_empty() {
                    ops.push(TxnOp::delete(k.region(&o.region, uuid), None));
                }
            }
            let resp = self
                .txn("delete", Txn::new().when(compares).and_then(ops))
                .await?;
            if resp.succeeded() {
                return Ok(true);
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!("service {uuid}: concurrent writers won {MAX_WRITE_ATTEMPTS} times in a row"),
        ))
    }

    /// Services matching `filter`, through the narrowest index every writer
    /// keeps complete, all read at one revision.
    ///
    /// A region alone is answered from the records, not from the region
    /// index: the Python library writes no per-uuid region keys, and its
    /// `delete` removes the one key it shares with every other service it
    /// registered in that region, so only the records know the region of
    /// its survivors.
    pub(crate) async fn list(&self, filter: &Filter) -> Result<Vec<ServiceInfo>> {
        let mut restarts = 0;
        loop {
            let mut at = self.pinned("list");
            match self.list_at(&mut at, filter).await {
                Err(e) if at.start_over(&e, &mut restarts) => continue,
                Err(e) => return Err(e),
                Ok(mut found) => {
                    found.retain(|i| filter.matches(i));
                    return Ok(found);
                }
            }
        }
    }

    async fn list_at(&self, at: &mut Pinned<'_>, filter: &Filter) -> Result<Vec<ServiceInfo>> {
        let k = &self.keys;
        let candidates: Option<Vec<String>> = if let Some(u) = &filter.uuid {
            Some(vec![u.clone()])
        } else if let (Some(t), Some(h)) = (&filter.service_type, &filter.host) {
            let key = k.type_host(t, h);
            let mut uuids = Vec::new();
            if let Some(kv) = at.get(&key).await? {
                index_value(&kv, &mut uuids);
            }
            Some(uuids)
        } else if let Some(t) = &filter.service_type {
            let mut uuids = Vec::new();
            at.prefix(&k.type_prefix(t), false, |kv| index_value(kv, &mut uuids))
                .await?;
            Some(uuids)
        } else if filter.status == Some(Status::Up) {
            let mut uuids = Vec::new();
            at.prefix(&k.status_prefix(Status::Up), true, |kv| {
                match k.parse(kv.key()) {
                    Some(ParsedKey::Status(Status::Up, u)) => uuids.push(u),
                    _ => log_once::skipped_key(kv.key()),
                }
            })
            .await?;
            Some(uuids)
        } else {
            None
        };
        // The caller keeps only what matches the filter, so a scan in place
        // of many candidates needs no further narrowing here.
        match candidates {
            Some(uuids) if uuids.len() <= SCAN_THRESHOLD => at.records(&uuids).await,
            _ => self.scan_in(at).await,
        }
    }

    /// Every record in the namespace with its liveness, at one revision,
    /// and that revision. `page_timeout` bounds each etcd call (background
    /// work has no caller whose deadline would).
    pub(crate) async fn scan_at(
        &self,
        page_timeout: Option<Duration>,
    ) -> Result<(Vec<ServiceInfo>, i64)> {
        let mut restarts = 0;
        loop {
            let mut at = self.pinned("list: scan");
            at.page_timeout = page_timeout;
            match self.scan_in(&mut at).await {
                Err(e) if at.start_over(&e, &mut restarts) => continue,
                r => return r.map(|found| (found, at.revision)),
            }
        }
    }

    /// The UP keys, then every record, page by page at `at`'s revision.
    async fn scan_in(&self, at: &mut Pinned<'_>) -> Result<Vec<ServiceInfo>> {
        let k = &self.keys;
        let mut up = HashSet::new();
        at.prefix(&k.status_prefix(Status::Up), true, |kv| {
            match k.parse(kv.key()) {
                Some(ParsedKey::Status(Status::Up, u)) => {
                    up.insert(u);
                }
                _ => log_once::skipped_key(kv.key()),
            }
        })
        .await?;
        let mut out = Vec::new();
        at.prefix(&k.records_prefix(), false, |kv| {
            if !matches!(k.parse(kv.key()), Some(ParsedKey::Record(_))) {
                log_once::skipped_key(kv.key());
                return;
            }
            match decode_stored(kv.key(), kv.value()) {
                Ok(service) => {
                    let alive = service.status == Status::Up && up.contains(&service.uuid);
                    out.push(ServiceInfo { service, up: alive });
                }
                Err(_) => log_once::skipped_key(kv.key()),
            }
        })
        .await?;
        Ok(out)
    }

    /// Starts a read made of several etcd calls that form one snapshot:
    /// the first answer pins its revision and every later call asks for
    /// that revision, so a read of any size is consistent and no single
    /// response grows with the fleet. Run it in a loop with
    /// [`Pinned::start_over`], which restarts it at a fresh revision if etcd
    /// compacts the pinned one meanwhile.
    fn pinned<'s>(&'s self, context: &'s str) -> Pinned<'s> {
        Pinned {
            store: self,
            context,
            revision: 0,
            compacted: false,
            page_timeout: None,
        }
    }

    /// One transaction reading the records and UP keys of `uuids` at
    /// `revision` (0: the newest); also returns the revision read.
    async fn read_batch(
        &self,
        uuids: &[String],
        revision: i64,
    ) -> Result<(Vec<ServiceInfo>, i64), etcd_client::Error> {
        let k = &self.keys;
        let mut ops = Vec::with_capacity(uuids.len() * 2);
        for u in uuids {
            ops.push(TxnOp::get(
                k.record(u),
                Some(GetOptions::new().with_revision(revision)),
            ));
            ops.push(TxnOp::get(
                k.status(Status::Up, u),
                Some(GetOptions::new().with_count_only().with_revision(revision)),
            ));
        }
        let txn = Txn::new().and_then(ops);
        let resp = resilient(&self.auth, &self.steering, "reading", || {
            let mut kv = self.kv.clone();
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await?;
        let mut out = Vec::with_capacity(uuids.len());
        for pair in resp.op_responses().chunks(2) {
            let [TxnOpResponse::Get(rec), TxnOpResponse::Get(up)] = pair else {
                continue;
            };
            let Some(kv) = rec.kvs().first() else {
                continue;
            };
            match decode_stored(kv.key(), kv.value()) {
                Ok(service) => {
                    let up = service.status == Status::Up && up.count() > 0;
                    out.push(ServiceInfo { service, up });
                }
                Err(_) => log_once::skipped_key(kv.key()),
            }
        }
        Ok((out, resp.header().map(|h| h.revision()).unwrap_or(0)))
    }

    /// [`Store::rebind_up`] for many services: batches of reads, then one
    /// guarded transaction per batch putting back every missing UP key; a
    /// batch whose transaction loses a compare falls back to one service at
    /// a time. After a re-grant of a client owning thousands of services
    /// this is a few dozen round trips instead of two per service.
    pub(crate) async fn rebind_many(
        &self,
        uuids: &[String],
        lease: i64,
        previous_lease: i64,
    ) -> Result<Vec<(String, Rebind)>> {
        let k = &self.keys;
        let mut out = Vec::with_capacity(uuids.len());
        for chunk in uuids.chunks(READ_BATCH) {
            let mut keys = Vec::with_capacity(chunk.len() * 2);
            for u in chunk {
                self.forget(u);
                keys.push(k.record(u));
                keys.push(k.status(Status::Up, u));
            }
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let seen = self.read("keepalive: check UP keys", &refs).await?;
            let mut compares = Vec::new();
            let mut puts = Vec::new();
            let mut restoring = Vec::new();
            for (u, pair) in chunk.iter().zip(seen.chunks(2)) {
                let [rec, up] = pair else { continue };
                let record_key = k.record(u);
                let up_key = k.status(Status::Up, u);
                let stored = if rec.exists() {
                    decode_stored(record_key.as_bytes(), &rec.value).ok()
                } else {
                    None
                };
                let verdict = if let Some(s) = stored.as_ref().filter(|s| s.forced_down) {
                    Rebind::Held(s.maintenance_end)
                } else if stored.is_none_or(|s| s.status != Status::Up) {
                    Rebind::Disowned
                } else if up.exists() && up.lease == lease {
                    Rebind::Ours
                } else if up.exists() && (previous_lease == 0 || up.lease != previous_lease) {
                    Rebind::Disowned
                } else {
                    compares.push(rec.unchanged(&record_key));
                    compares.push(up.unchanged(&up_key));
                    puts.push(TxnOp::put(
                        up_key.as_str(),
                        "",
                        Some(PutOptions::new().with_lease(lease)),
                    ));
                    restoring.push(u.clone());
                    continue;
                };
                out.push((u.clone(), verdict));
            }
            if restoring.is_empty() {
                continue;
            }
            let resp = self
                .txn(
                    "keepalive: restore UP keys",
                    Txn::new().when(compares).and_then(puts),
                )
                .await?;
            if resp.succeeded() {
                out.extend(restoring.into_iter().map(|u| (u, Rebind::Restored)));
            } else {
                for u in restoring {
                    let verdict = self.rebind_up(&u, lease, previous_lease).await?;
                    out.push((u, verdict));
                }
            }
        }
        Ok(out)
    }

    /// Makes sure the UP key of a service this client owns is on `lease`.
    /// `previous_lease` is a lease of ours that expired: a key still on it is
    /// ours to move.
    pub(crate) async fn rebind_up(
        &self,
        uuid: &str,
        lease: i64,
        previous_lease: i64,
    ) -> Result<Rebind> {
        self.forget(uuid);
        let record_key = self.keys.record(uuid);
        let up_key = self.keys.status(Status::Up, uuid);
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let seen = self
                .read("keepalive: check UP key", &[&record_key, &up_key])
                .await?;
            let (Some(rec), Some(up)) = (seen.first(), seen.get(1)) else {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "short transaction response",
                ));
            };
            if !rec.exists() {
                return Ok(Rebind::Disowned);
            }
            match decode_stored(record_key.as_bytes(), &rec.value) {
                Ok(s) if s.forced_down => return Ok(Rebind::Held(s.maintenance_end)),
                Ok(s) if s.status == Status::Up => {}
                _ => return Ok(Rebind::Disowned),
            }
            if up.exists() && up.lease == lease {
                return Ok(Rebind::Ours);
            }
            if up.exists() && (previous_lease == 0 || up.lease != previous_lease) {
                return Ok(Rebind::Disowned);
            }
            let txn = Txn::new()
                .when([rec.unchanged(&record_key), up.unchanged(&up_key)])
                .and_then([TxnOp::put(
                    up_key.as_str(),
                    "",
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            if self
                .txn("keepalive: restore UP key", txn)
                .await?
                .succeeded()
            {
                return Ok(Rebind::Restored);
            }
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!("service {uuid}: UP key kept changing while restoring it"),
        ))
    }
}

/// Keys per page of a prefix read that returns values. A record is at most
/// about 5.3 KiB with its key (three 255-byte segments and a 4 KiB note), so
/// a page is at most about 11 MiB whatever the records hold (typically
/// 300 KiB), however large the fleet.
const PAGE_VALUES: i64 = 2000;
/// Keys per page of a keys-only read (a key is at most about 700 bytes).
const PAGE_KEYS: i64 = 5000;
/// The largest response the store accepts (gRPC's default is 4 MiB): room
/// for the largest possible page.
pub(crate) const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Times a pinned read starts over at a fresh revision because etcd
/// compacted the one it was pinned to while it was paging.
const COMPACTED_RESTARTS: u32 = 3;

/// Reads that together form one snapshot (see [`Store::pinned`]): the first
/// answer pins its revision and every later call asks for that revision.
pub(crate) struct Pinned<'s> {
    store: &'s Store,
    context: &'s str,
    /// 0 until the first answer.
    revision: i64,
    /// The last failure was etcd refusing the pinned revision as compacted.
    compacted: bool,
    /// A deadline for each call, when no caller's deadline bounds the read.
    page_timeout: Option<Duration>,
}

impl Pinned<'_> {
    fn pin(&mut self, revision: i64) {
        if self.revision == 0 {
            self.revision = revision;
        }
    }

    /// After the read failed with `e`: true when it should start over at a
    /// fresh revision, because etcd compacted the pinned one (at most
    /// [`COMPACTED_RESTARTS`] times).
    fn start_over(&self, e: &Error, restarts: &mut u32) -> bool {
        if !self.compacted || *restarts >= COMPACTED_RESTARTS {
            return false;
        }
        *restarts += 1;
        log::info!(
            "os-lively: {}: revision {} was compacted while reading it; starting over at a fresh revision: {e}",
            self.context,
            self.revision
        );
        true
    }

    /// Awaits one etcd call of the read within the page timeout, noting
    /// whether a failure means the pinned revision was compacted.
    async fn call<T>(
        &mut self,
        call: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match bounded(self.page_timeout, call).await {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(self.failed(e)),
            None => Err(self.timed_out()),
        }
    }

    fn failed(&mut self, e: etcd_client::Error) -> Error {
        // OUT_OF_RANGE for a read at a pinned revision: it was compacted.
        self.compacted = self.revision != 0
            && matches!(&e, etcd_client::Error::GRpcStatus(s) if s.code() == tonic::Code::OutOfRange);
        Error::etcd(self.context, e)
    }

    fn timed_out(&self) -> Error {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "{}: no answer from etcd within {:?}",
                self.context,
                self.page_timeout.unwrap_or_default()
            ),
        )
    }

    /// Every key under `prefix` in key order, read in pages of a bounded
    /// number of keys (each continuing after the previous page's last key),
    /// all at the pinned revision. `each` sees every key once.
    pub(crate) async fn prefix(
        &mut self,
        prefix: &str,
        keys_only: bool,
        mut each: impl FnMut(&KeyValue),
    ) -> Result<()> {
        let end = prefix_end(prefix.as_bytes());
        let limit = if keys_only { PAGE_KEYS } else { PAGE_VALUES };
        let mut from = prefix.as_bytes().to_vec();
        loop {
            let mut opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(limit)
                .with_revision(self.revision);
            if keys_only {
                opts = opts.with_keys_only();
            }
            let store = self.store;
            let resp = self.call(store.range(from.clone(), opts)).await?;
            self.pin(resp.header().map(|h| h.revision()).unwrap_or(0));
            let kvs = resp.kvs();
            kvs.iter().for_each(&mut each);
            match kvs.last() {
                Some(last) if resp.more() => {
                    // The smallest key after `last`.
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(()),
            }
        }
    }

    /// One key at the pinned revision.
    pub(crate) async fn get(&mut self, key: &str) -> Result<Option<KeyValue>> {
        let opts = GetOptions::new().with_revision(self.revision);
        let store = self.store;
        let mut r = self
            .call(store.range(key.as_bytes().to_vec(), opts))
            .await?;
        self.pin(r.header().map(|h| h.revision()).unwrap_or(0));
        Ok(r.take_kvs().into_iter().next())
    }

    /// Records and liveness of `uuids` at the pinned revision, read in
    /// batched transactions that run concurrently (the first alone when no
    /// revision is pinned yet, so it pins one for the others).
    pub(crate) async fn records(&mut self, uuids: &[String]) -> Result<Vec<ServiceInfo>> {
        let mut chunks = uuids.chunks(READ_BATCH);
        let mut out = Vec::with_capacity(uuids.len());
        if self.revision == 0 {
            let Some(first) = chunks.next() else {
                return Ok(out);
            };
            let store = self.store;
            let (part, rev) = self.call(store.read_batch(first, 0)).await?;
            self.pin(rev);
            out.extend(part);
        }
        let mut batches = tokio::task::JoinSet::new();
        for (i, chunk) in chunks.enumerate() {
            let store = self.store.clone();
            let chunk = chunk.to_vec();
            let (revision, limit) = (self.revision, self.page_timeout);
            batches.spawn(async move {
                let read = bounded(limit, store.read_batch(&chunk, revision)).await;
                (i, read)
            });
        }
        let mut parts = Vec::with_capacity(batches.len());
        while let Some(joined) = batches.join_next().await {
            let (i, part) = joined
                .map_err(|e| Error::new(ErrorKind::Internal, format!("{}: {e}", self.context)))?;
            match part {
                Some(Ok((p, _))) => parts.push((i, p)),
                Some(Err(e)) => return Err(self.failed(e)),
                None => return Err(self.timed_out()),
            }
        }
        parts.sort_by_key(|(i, _)| *i);
        out.extend(parts.into_iter().flat_map(|(_, p)| p));
        Ok(out)
    }
}

/// Awaits `call` within `limit` (if any); `None` when it ran out.
async fn bounded<T>(
    limit: Option<Duration>,
    call: impl std::future::Future<Output = T>,
) -> Option<T> {
    match limit {
        Some(t) => tokio::time::timeout(t, call).await.ok(),
        None => Some(call.await),
    }
}

/// The end of the key range holding every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes: every key from `prefix` on.
    vec![0]
}

/// Collects the uuid a type/host index key holds as its value.
fn index_value(kv: &KeyValue, uuids: &mut Vec<String>) {
    match std::str::from_utf8(kv.value())
        .ok()
        .and_then(|v| crate::record::normalize_uuid(v).ok())
    {
        Some(u) => uuids.push(u),
        None => log_once::skipped_key(kv.key()),
    }
}

/// Runs an etcd call, retrying briefly on failures a healthy cluster gets
/// over in milliseconds (a leader change; a member without a leader that
/// endpoint steering is about to drop). Writes are safe to retry: each is
/// guarded by compares, so one that did commit loses its compare on the
/// retry and the next read finds nothing left to do.
///
/// Such failures, and calls left unanswered for long, are also what endpoint
/// steering waits for before it probes the members.
async fn resilient<T, F, Fut>(
    auth: &Auth,
    steering: &Steering,
    what: &str,
    call: F,
) -> Result<T, etcd_client::Error>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let mut delay = Duration::from_millis(25);
    let mut attempt = 1;
    loop {
        match steering.watching(what, auth.retry(&call)).await {
            Err(e) if is_momentary(&e) => {
                steering.suspect(&format!("{what}: {e}"));
                if attempt >= MOMENTARY_ATTEMPTS {
                    return Err(e);
                }
                tokio::time::sleep(delay).await;
                delay *= 3;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Attempts of a call that fails momentarily (see [`resilient`]).
const MOMENTARY_ATTEMPTS: u32 = 3;

/// Decided by the gRPC code, never by the message: UNAVAILABLE is what etcd
/// answers for a leader change, a member without a leader, a request timed
/// out in raft, and what tonic reports when it cannot connect; UNKNOWN is
/// how tonic reports a connection that broke under a call. Everything else
/// (load shedding, quota, auth, bad requests) goes to the caller at once.
fn is_momentary(e: &etcd_client::Error) -> bool {
    use tonic::Code;
    match e {
        etcd_client::Error::GRpcStatus(s) => matches!(s.code(), Code::Unavailable | Code::Unknown),
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// True when a write of a DOWN record (re)writes the DOWN key with `value`:
/// it is missing, lease-bound as the Python library wrote it (ours are
/// durable), or records another owner.
fn puts_down(down: &Seen, value: &str) -> bool {
    !down.exists() || down.lease != 0 || down.value != value.as_bytes()
}

/// True when a write of `new` puts the UP key (on `lease`; 0: none).
fn ops_put_up(new: &Service, up: &Seen, lease: i64) -> bool {
    new.status == Status::Up && lease != 0 && (!up.exists() || up.lease != lease)
}

/// The owner's lease recorded in a forced-down service's DOWN key (lease
/// id in hex), or 0 (none recorded, or a Python-written DOWN key).
fn recorded_owner(down: &Seen) -> i64 {
    if !down.exists() || down.lease != 0 {
        return 0;
    }
    std::str::from_utf8(&down.value)
        .ok()
        .and_then(|v| i64::from_str_radix(v, 16).ok())
        .unwrap_or(0)
}

fn not_found(uuid: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("service {uuid} does not exist"),
    )
}

fn seen(kv: &KeyValue) -> Seen {
    Seen {
        mod_revision: kv.mod_revision(),
        lease: kv.lease(),
        value: kv.value().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    fn grpc(code: Code, message: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(Status::new(code, message))
    }

    #[test]
    fn retries_are_decided_by_grpc_code_not_text() {
        for (code, message, retry) in [
            (Code::Unavailable, "etcdserver: leader changed", true),
            (Code::Unavailable, "etcdserver: request timed out", true),
            (Code::Unavailable, "etcdserver: no leader", true),
            (Code::Unknown, "transport error", true),
            // Texts that once decided, under codes that must not retry.
            (Code::InvalidArgument, "leader changed", false),
            (Code::FailedPrecondition, "connection closed", false),
            (
                Code::ResourceExhausted,
                "etcdserver: too many requests",
                false,
            ),
            (
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
                false,
            ),
            (
                Code::PermissionDenied,
                "etcdserver: permission denied",
                false,
            ),
            (
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
                false,
            ),
        ] {
            assert_eq!(
                is_momentary(&grpc(code, message)),
                retry,
                "{code:?} {message}"
            );
        }
    }

    #[test]
    fn prefix_end_covers_exactly_the_prefix() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
