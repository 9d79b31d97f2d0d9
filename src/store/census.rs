//! Lists of one region: through the region index where it can answer, by
//! reading every record where it cannot.
//!
//! Our writers put `by-region/<region>/<uuid>` in the same transaction as
//! the record, so for what os-lively writes the index is complete. The
//! Python library writes only `by-region/<region>` (no uuid), and its
//! `delete` removes that key, which every service it registered in the
//! region shares: only the records know the region of the survivors. So
//! the index is trusted only under a *census*: a key of our own, outside
//! `services/` (which the Python library never touches), that says "at
//! revision P a full scan found every record with a region in the index,
//! and no index key without its record". It lives on a lease of
//! [`CENSUS_TTL`], so whatever a census cannot see is seen within that long.
//!
//! A list of region R trusts the index when the census lives, R's uuid-less
//! key (which the Python library writes with every record of R) was not
//! written after P, and every uuid the index names has a record (a Python
//! `delete` leaves our key of a record it deletes behind). Otherwise it
//! reads every record, as it always did, and takes a new census from that
//! scan when the scan shows the index complete.
//!
//! Only a client that registered services (it holds a lease, so it
//! writes anyway) takes a census: a reader's list never writes, and a
//! namespace with no registering client listing regions reads every
//! record for them. The census is shared: any writer's census serves
//! every reader's lists for its [`CENSUS_TTL`].
//!
//! What no read short of a full scan can see: the Python library
//! registering a service in R after the census and then deleting another
//! service of R also registered after it (that removes the uuid-less key).
//! Such a survivor is missing from R's lists until the census expires.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse,
};

use super::reads::{PAGE_KEYS, Pinned, prefix_end};
use super::retry::resilient;
use super::{READ_BATCH, ServiceInfo, Store};
use crate::error::{Error, ErrorKind, Result};
use crate::keys::ParsedKey;

/// How long a census vouches for the region index: the longest a service
/// the Python library registered can be missing from a region's list, and
/// how often a namespace's region lists pay one full scan.
pub(crate) const CENSUS_TTL: Duration = Duration::from_secs(60);

impl Store {
    /// The services whose record says region `region`, at `at`'s revision,
    /// with the UP state of each (see the module documentation).
    pub(super) async fn list_region(
        &self,
        at: &mut Pinned<'_>,
        region: &str,
        writer: bool,
    ) -> Result<Vec<ServiceInfo>> {
        if let Some(uuids) = self.trusted_region_index(at, region).await? {
            let found = at.records(&uuids).await?;
            // A uuid without its record: a key the Python library's delete
            // left behind; the census that cleared those is out of date.
            if found.len() == uuids.len() {
                return Ok(found);
            }
        }
        let found = self.scan_in(at).await?;
        // A reader never writes: without a writer's census its region
        // lists read every record.
        if writer && self.census_due() {
            match self.take_census(at, &found).await {
                Ok(true) => log::debug!(
                    "os-lively: region index census taken at revision {}",
                    at.revision()
                ),
                Ok(false) => log::debug!(
                    "os-lively: region index incomplete at revision {} (records the Python library wrote): region lists read every record",
                    at.revision()
                ),
                Err(e) => log::info!(
                    "os-lively: cannot take a census of the region index ({e}); region lists read every record"
                ),
            }
        }
        Ok(found)
    }

    /// The uuids the region index names for `region`, if a census vouches
    /// for it; `None` when the records must be read instead.
    async fn trusted_region_index(
        &self,
        at: &mut Pinned<'_>,
        region: &str,
    ) -> Result<Option<Vec<String>>> {
        let k = &self.keys;
        let prefix = k.region_prefix(region);
        // One round trip, as the raw read of the index alone: the census,
        // the Python library's key of the region, and the first page of
        // the index.
        let opts = || GetOptions::new().with_revision(at.revision());
        let ops = vec![
            TxnOp::get(k.census(), Some(opts())),
            TxnOp::get(k.legacy_region(region), Some(opts())),
            TxnOp::get(
                prefix.as_str(),
                Some(
                    opts()
                        .with_range(prefix_end(prefix.as_bytes()))
                        .with_keys_only()
                        .with_limit(PAGE_KEYS),
                ),
            ),
        ];
        let resp = match at.read_txn(ops).await {
            Ok(resp) => resp,
            // A user allowed only `services/` cannot read the census: its
            // region lists read every record.
            Err(e) if e.kind() == ErrorKind::Auth => return Ok(None),
            Err(e) => return Err(e),
        };
        let answers = resp.op_responses();
        let [
            TxnOpResponse::Get(census),
            TxnOpResponse::Get(legacy),
            TxnOpResponse::Get(page),
        ] = answers.as_slice()
        else {
            return Err(Error::new(
                ErrorKind::Internal,
                "list: short transaction response",
            ));
        };
        let census = census
            .kvs()
            .first()
            .and_then(|kv| std::str::from_utf8(kv.value()).ok()?.parse::<i64>().ok());
        let Some(census) = census else {
            return Ok(None);
        };
        if legacy
            .kvs()
            .first()
            .is_some_and(|kv| kv.mod_revision() > census)
        {
            return Ok(None);
        }
        let mut uuids = Vec::new();
        let mut each = |kv: &KeyValue| match k.parse(kv.key()) {
            Some(ParsedKey::Region(_, Some(u))) => uuids.push(u),
            _ => crate::log_once::skipped_key(kv.key()),
        };
        page.kvs().iter().for_each(&mut each);
        if let (Some(last), true) = (page.kvs().last(), page.more()) {
            let mut from = last.key().to_vec();
            from.push(0);
            at.prefix_from(&prefix, from, true, each).await?;
        }
        Ok(Some(uuids))
    }

    /// True at most once per [`CENSUS_TTL`] per client, so a namespace
    /// whose index cannot be vouched for does not pay for a census attempt
    /// on every list.
    fn census_due(&self) -> bool {
        let mut last = match self.census_tried.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        let due = last.is_none_or(|t| t.elapsed() >= CENSUS_TTL);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    /// Given `found`, every record at `at`'s revision: clears index keys
    /// whose record is gone, and writes the census if every record with a
    /// region is in the index. False when it is not (nothing written).
    async fn take_census(&self, at: &mut Pinned<'_>, found: &[ServiceInfo]) -> Result<bool> {
        let k = &self.keys;
        let mut indexed: HashMap<String, Vec<(String, i64)>> = HashMap::new();
        at.prefix(&k.region_root(), true, |kv| {
            if let Some(ParsedKey::Region(region, Some(u))) = k.parse(kv.key()) {
                indexed
                    .entry(u)
                    .or_default()
                    .push((region, kv.mod_revision()));
            }
        })
        .await?;
        for info in found {
            let s = &info.service;
            let listed = indexed
                .get(&s.uuid)
                .is_some_and(|keys| keys.iter().any(|(r, _)| *r == s.region));
            if !s.region.is_empty() && !listed {
                return Ok(false);
            }
        }
        // A record that does not decode is in no list; its index keys are
        // not dangling, so every record key counts, not only `found`.
        let mut records = HashSet::new();
        at.prefix(&k.records_prefix(), true, |kv| {
            if let Some(ParsedKey::Record(u)) = k.parse(kv.key()) {
                records.insert(u);
            }
        })
        .await?;
        let dangling: Vec<(String, String, i64)> = indexed
            .into_iter()
            .filter(|(u, _)| !records.contains(u))
            .flat_map(|(u, keys)| keys.into_iter().map(move |(r, rev)| (u.clone(), r, rev)))
            .collect();
        for batch in dangling.chunks(READ_BATCH) {
            let mut compares = Vec::with_capacity(batch.len() * 2);
            let mut deletes = Vec::with_capacity(batch.len());
            for (u, region, rev) in batch {
                let key = k.region(region, u);
                compares.push(Compare::version(k.record(u), CompareOp::Equal, 0));
                compares.push(Compare::mod_revision(key.as_str(), CompareOp::Equal, *rev));
                deletes.push(TxnOp::delete(key, None));
            }
            let resp = self
                .txn(
                    "clearing region index keys of deleted records",
                    Txn::new().when(compares).and_then(deletes),
                )
                .await?;
            if !resp.succeeded() {
                // A record came back meanwhile: a later census decides.
                return Ok(false);
            }
        }
        let lease = resilient(&self.auth, &self.steering, "census lease", || {
            let mut leases = self.leases.clone();
            async move { leases.grant(CENSUS_TTL.as_secs() as i64, None).await }
        })
        .await
        .map_err(|e| Error::etcd("granting the region census lease", e))?;
        let census = at.revision().to_string();
        self.txn(
            "writing the region census",
            Txn::new().and_then([TxnOp::put(
                k.census(),
                census,
                Some(PutOptions::new().with_lease(lease.id())),
            )]),
        )
        .await?;
        Ok(true)
    }
}
