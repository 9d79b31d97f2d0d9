//! Reads: point reads of one service, lists through the indexes, and the
//! paged reader pinned to one revision that large reads go through.

use std::collections::HashSet;
use std::time::Duration;

use etcd_client::{GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse};

use super::retry::resilient;
use super::{CLOSED_MARK, Filter, READ_BATCH, ServiceInfo, Store};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::ParsedKey;
use crate::log_once;
use crate::record::{Status, decode_stored};

/// Up to this many candidates from an index are read in (concurrent)
/// batches of point reads without asking how large the namespace is.
const SCAN_THRESHOLD: usize = 4000;
/// Beyond [`SCAN_THRESHOLD`], candidates are read point by point only while
/// they are under 1/`SCAN_SHARE` of the namespace's records: a point read
/// in a batch costs a few times what a record costs in a sequential scan.
const SCAN_SHARE: usize = 3;

impl Store {
    /// The cluster's current revision (a linearizable read): a count-only
    /// get of one key, the cheapest read etcd answers with its revision.
    pub(crate) async fn revision(&self) -> Result<i64> {
        let resp = self
            .range(self.keys.root(), GetOptions::new().with_count_only())
            .await
            .map_err(|e| Error::etcd("reading the current revision", e))?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Proves the endpoints, the credentials and a leader with one
    /// linearizable read, as a lease grant at connect used to (a client
    /// that only reads grants no lease).
    ///
    /// A user allowed to read only part of the namespace (say, the status
    /// index) is refused this read with PERMISSION_DENIED, which still
    /// proves all three: etcd checks the token, then waits for a leader to
    /// confirm the read, and only then checks the key's permission. Such a
    /// client connects; its calls are refused one by one.
    pub(crate) async fn probe(&self) -> Result<()> {
        match self
            .range(self.keys.root(), GetOptions::new().with_count_only())
            .await
        {
            Ok(_) => Ok(()),
            Err(etcd_client::Error::GRpcStatus(s)) if s.code() == tonic::Code::PermissionDenied => {
                Ok(())
            }
            Err(e) => Err(Error::etcd("reading the current revision", e)),
        }
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
        let down = self.keys.status(Status::Down, uuid);
        let seen = self.read("get", &[&record, &up, &down]).await?;
        let (Some(rec), Some(upk), Some(downk)) = (seen.first(), seen.get(1), seen.get(2)) else {
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
        let closed = !up && downk.exists() && downk.lease == 0 && downk.value == CLOSED_MARK;
        Ok(Some(ServiceInfo {
            service,
            up,
            closed,
        }))
    }

    /// Services matching `filter`, through the narrowest index every writer
    /// keeps complete, all read at one revision.
    ///
    /// A region alone goes through the region index only where a census
    /// vouches for it (see [`super::census`]): the Python library writes no
    /// per-uuid region keys, and its `delete` removes the one key it shares
    /// with every other service it registered in that region, so only the
    /// records know the region of its survivors.
    ///
    /// Only a `writer` (a client that registered, so holds a lease and
    /// writes anyway) may write the census; any other list writes nothing.
    pub(crate) async fn list(&self, filter: &Filter, writer: bool) -> Result<Vec<ServiceInfo>> {
        let mut restarts = 0;
        loop {
            let mut at = self.pinned("list");
            match self.list_at(&mut at, filter, writer).await {
                Err(e) if at.start_over(&e, &mut restarts) => continue,
                Err(e) => return Err(e),
                Ok(mut found) => {
                    found.retain(|i| filter.matches(i));
                    return Ok(found);
                }
            }
        }
    }

    async fn list_at(
        &self,
        at: &mut Pinned<'_>,
        filter: &Filter,
        writer: bool,
    ) -> Result<Vec<ServiceInfo>> {
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
        } else if let Some(region) = &filter.region {
            return self.list_region(at, region, writer).await;
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
            // Many candidates: point reads still win unless they are a large
            // part of the namespace (5,000 of 100,000 took 2 s by scan).
            Some(uuids) if uuids.len() * SCAN_SHARE < at.count(&k.records_prefix()).await? => {
                at.records(&uuids).await
            }
            // The candidates are the UP keys just read: the scan needs only
            // the records.
            Some(uuids)
                if filter.status == Some(Status::Up)
                    && filter.uuid.is_none()
                    && filter.service_type.is_none() =>
            {
                self.scan_records(at, uuids.into_iter().collect()).await
            }
            _ => self.scan_in(at).await,
        }
    }

    /// Every record in the namespace with its liveness, at one revision,
    /// that revision and how many keys the namespace held then (what the
    /// watch's checks compare with, see `watch::liveness`). `page_timeout`
    /// bounds each etcd call (background work has no caller whose
    /// deadline would).
    pub(crate) async fn scan_at(&self, page_timeout: Option<Duration>) -> Result<Scan> {
        let mut restarts = 0;
        loop {
            let mut at = self.pinned("list: scan");
            at.page_timeout = page_timeout;
            let read = match self.scan_in(&mut at).await {
                Ok(found) => at.count(self.keys.root()).await.map(|keys| (found, keys)),
                Err(e) => Err(e),
            };
            match read {
                Err(e) if at.start_over(&e, &mut restarts) => continue,
                r => {
                    return r.map(|(services, keys)| Scan {
                        services,
                        revision: at.revision,
                        keys: i64::try_from(keys).unwrap_or(i64::MAX),
                    });
                }
            }
        }
    }

    /// Whether any key of the namespace changed after revision `after`, as
    /// far as one range can tell: a key put since (keys only, at most one
    /// returned; etcd reads the namespace's keys to filter them), and the
    /// namespace's key count (etcd counts before filtering), which a
    /// delete moves. A key put and deleted again in between leaves no
    /// trace, nor does it change what the namespace holds.
    pub(crate) async fn changes_after(&self, after: i64) -> Result<Changes> {
        let root = self.keys.root();
        let resp = self
            .range(
                root,
                GetOptions::new()
                    .with_range(prefix_end(root.as_bytes()))
                    .with_keys_only()
                    .with_min_mod_revision(after + 1)
                    .with_limit(1),
            )
            .await
            .map_err(|e| Error::etcd("reading the namespace's changes", e))?;
        Ok(Changes {
            revision: resp.header().map(|h| h.revision()).unwrap_or(0),
            keys: resp.count(),
            changed: !resp.kvs().is_empty(),
        })
    }

    /// The UP keys, then every record, page by page at `at`'s revision.
    pub(super) async fn scan_in(&self, at: &mut Pinned<'_>) -> Result<Vec<ServiceInfo>> {
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
        let mut closed = HashSet::new();
        at.prefix(&k.status_prefix(Status::Down), false, |kv| {
            if let Some(ParsedKey::Status(Status::Down, u)) = k.parse(kv.key()) {
                if kv.lease() == 0 && kv.value() == CLOSED_MARK {
                    closed.insert(u);
                }
            }
        })
        .await?;
        let mut out = self.scan_records(at, up).await?;
        for info in &mut out {
            info.closed = !info.up && closed.contains(&info.service.uuid);
        }
        Ok(out)
    }

    /// Every record at `at`'s revision, page by page; UP where its uuid is
    /// in `up` (the UP keys read at the same revision).
    async fn scan_records(
        &self,
        at: &mut Pinned<'_>,
        up: HashSet<String>,
    ) -> Result<Vec<ServiceInfo>> {
        let k = &self.keys;
        let mut out = Vec::new();
        at.prefix(&k.records_prefix(), false, |kv| {
            if !matches!(k.parse(kv.key()), Some(ParsedKey::Record(_))) {
                log_once::skipped_key(kv.key());
                return;
            }
            match decode_stored(kv.key(), kv.value()) {
                Ok(service) => {
                    let alive = service.status == Status::Up && up.contains(&service.uuid);
                    out.push(ServiceInfo {
                        service,
                        up: alive,
                        closed: false,
                    });
                }
                Err(_) => log_once::skipped_key(kv.key()),
            }
        })
        .await?;
        Ok(out)
    }

    /// The uuids whose UP key is on `lease`, and the revision read: a
    /// paged keys-only read of every UP key of the namespace, for a client
    /// holding too many services for one `TimeToLive` answer.
    pub(crate) async fn up_keys_on(
        &self,
        lease: i64,
    ) -> Result<(std::collections::BTreeSet<String>, i64)> {
        let prefix = self.keys.status_prefix(Status::Up);
        let mut restarts = 0;
        loop {
            let mut at = self.pinned("checking UP keys");
            let mut found = std::collections::BTreeSet::new();
            let read = at
                .prefix(&prefix, true, |kv| {
                    if kv.lease() == lease {
                        if let Some(crate::keys::ParsedKey::Status(_, u)) =
                            self.keys.parse(kv.key())
                        {
                            found.insert(u);
                        }
                    }
                })
                .await;
            match read {
                Ok(()) => return Ok((found, at.revision)),
                Err(e) if at.start_over(&e, &mut restarts) => continue,
                Err(e) => return Err(e),
            }
        }
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
                    out.push(ServiceInfo {
                        service,
                        up,
                        closed: false,
                    });
                }
                Err(_) => log_once::skipped_key(kv.key()),
            }
        }
        Ok((out, resp.header().map(|h| h.revision()).unwrap_or(0)))
    }
}

/// A read of the whole namespace at one revision.
pub(crate) struct Scan {
    pub(crate) services: Vec<ServiceInfo>,
    pub(crate) revision: i64,
    /// Every key under the namespace's prefix at `revision`.
    pub(crate) keys: i64,
}

/// What [`Store::changes_after`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Changes {
    /// The revision read.
    pub(crate) revision: i64,
    /// Every key under the namespace's prefix then.
    pub(crate) keys: i64,
    /// A key was put after the revision asked about.
    pub(crate) changed: bool,
}

/// Keys per page of a prefix read that returns values. A record is at most
/// about 5.3 KiB with its key (three 255-byte segments and a 4 KiB note), so
/// a page is at most about 5.5 MiB whatever the records hold (typically
/// 150 KiB), however large the fleet. Not more: each page is decoded on the
/// runtime thread, and 2,000 records took it from its keepalives for up to
/// 35 ms on a loaded 2-core machine.
const PAGE_VALUES: i64 = 1000;
/// Keys per page of a keys-only read (a key is at most about 700 bytes).
pub(super) const PAGE_KEYS: i64 = 5000;
/// The largest response the store accepts (gRPC's default is 4 MiB): room
/// for the largest possible page.
pub(crate) const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Times a pinned read starts over at a fresh revision because etcd
/// compacted the one it was pinned to while it was paging.
const COMPACTED_RESTARTS: u32 = 3;

/// Reads that together form one snapshot (see [`Store::pinned`]): the first
/// answer pins its revision and every later call asks for that revision.
pub(super) struct Pinned<'s> {
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
        each: impl FnMut(&KeyValue),
    ) -> Result<()> {
        self.prefix_from(prefix, prefix.as_bytes().to_vec(), keys_only, each)
            .await
    }

    /// [`Pinned::prefix`] from the key `from` on (a read that has the
    /// keys before it already).
    pub(super) async fn prefix_from(
        &mut self,
        prefix: &str,
        mut from: Vec<u8>,
        keys_only: bool,
        mut each: impl FnMut(&KeyValue),
    ) -> Result<()> {
        let end = prefix_end(prefix.as_bytes());
        let limit = if keys_only { PAGE_KEYS } else { PAGE_VALUES };
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

    /// How many keys are under `prefix` at the pinned revision (one
    /// count-only range: etcd counts in its index, no values are read).
    pub(crate) async fn count(&mut self, prefix: &str) -> Result<usize> {
        let opts = GetOptions::new()
            .with_range(prefix_end(prefix.as_bytes()))
            .with_count_only()
            .with_revision(self.revision);
        let store = self.store;
        let resp = self
            .call(store.range(prefix.as_bytes().to_vec(), opts))
            .await?;
        self.pin(resp.header().map(|h| h.revision()).unwrap_or(0));
        Ok(usize::try_from(resp.count()).unwrap_or(usize::MAX))
    }

    /// The revision the read is pinned to (0 before its first answer).
    pub(super) fn revision(&self) -> i64 {
        self.revision
    }

    /// One read-only transaction; its ops should ask for
    /// [`Pinned::revision`] (0 before the first answer, which pins it).
    pub(super) async fn read_txn(&mut self, ops: Vec<TxnOp>) -> Result<etcd_client::TxnResponse> {
        let store = self.store;
        let resp = self
            .call(resilient(&store.auth, &store.steering, "reading", || {
                let mut kv = store.kv.clone();
                let txn = Txn::new().and_then(ops.clone());
                async move { kv.txn(txn).await }
            }))
            .await?;
        self.pin(resp.header().map(|h| h.revision()).unwrap_or(0));
        Ok(resp)
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
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_covers_exactly_the_prefix() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
