//! An oracle that is not the library: what etcd holds for a namespace, read
//! with the raw client ([`Raw`]) and decoded with the generated protobuf,
//! with UP derived exactly as DESIGN.md defines it. Tests compare the
//! library's lists, views and events against this, so a decoding or
//! UP-derivation bug that the library's reads and watches share cannot
//! agree with itself and pass.
//!
//! The original Python library's quirks do not change the answer: its
//! region key without a uuid and its DOWN key bound to a lease are index
//! keys the oracle does not consult (a service's region is its record's,
//! and DOWN is anything that is not UP).
//!
//! Nothing here calls the library's read, list or decode functions; the
//! only library type used is the public record, to project the library's
//! answers into the oracle's terms ([`Truth::of`]).

// Each test that declares this module uses a part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};

use etcd_client::GetOptions;
use prost::Message;

use crate::common::Raw;

/// The protobuf types generated from `proto/os_lively/service.proto` by the
/// crate's build script, compiled again here so the decoding under test is
/// not the decoding that checks it.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/oslively.rs"));
}

/// Keys read per request: the namespace is read page by page, every page at
/// the first page's revision, so the snapshot is one revision however big.
const PAGE: i64 = 1000;

/// One service as etcd holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truth {
    pub uuid: String,
    pub service_type: String,
    pub host: String,
    pub region: String,
    /// The record's status field says UP (an unknown value is not UP).
    pub record_up: bool,
    /// DESIGN.md's UP: the record says UP *and* `by-status/UP/<uuid>`
    /// exists.
    pub up: bool,
    pub maintenance_start: u64,
    pub maintenance_end: u64,
    pub maintenance_note: String,
    pub heartbeat_ms: u64,
    pub heartbeat_missed: bool,
    pub forced_down: bool,
    pub owner_down: bool,
}

impl Truth {
    /// The library's answer for one service (its record and whether it
    /// says UP) in the oracle's terms, for comparing. Only public fields
    /// are read; nothing is decoded.
    pub fn of(s: &os_lively::Service, up: bool) -> Truth {
        Truth {
            uuid: s.uuid.clone(),
            service_type: s.service_type.clone(),
            host: s.host.clone(),
            region: s.region.clone(),
            record_up: s.status == os_lively::Status::Up,
            up,
            maintenance_start: s.maintenance_start,
            maintenance_end: s.maintenance_end,
            maintenance_note: s.maintenance_note.clone(),
            heartbeat_ms: s
                .heartbeat
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            heartbeat_missed: s.heartbeat_missed,
            forced_down: s.forced_down,
            owner_down: s.owner_down,
        }
    }
}

/// A namespace's services at one revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The store revision every key was read at.
    pub revision: i64,
    /// Every service with a record, by uuid.
    pub services: BTreeMap<String, Truth>,
    /// Uuids with a UP key (bound to a live lease, or it would be gone),
    /// record or not.
    pub up_keys: BTreeSet<String>,
    /// The lease each UP key is bound to, by uuid.
    pub up_leases: BTreeMap<String, i64>,
    /// Keys under `by-uuid/` that are not a service record (do not decode,
    /// or name another uuid than their key), as `key: why`.
    pub skipped: Vec<String>,
}

impl Snapshot {
    /// Reads every key under `<ns>/services/` at one revision.
    #[track_caller]
    pub fn read(raw: &Raw, ns: &str) -> Snapshot {
        let root = format!("{ns}/services/");
        let kvs = read_prefix(raw, &root);
        let mut snap = Snapshot {
            revision: kvs.0,
            ..Default::default()
        };
        let records = format!("{root}by-uuid/");
        let up = format!("{root}by-status/UP/");
        for (key, _, lease) in &kvs.1 {
            if let Some(u) = key.strip_prefix(&up) {
                snap.up_keys.insert(u.to_string());
                snap.up_leases.insert(u.to_string(), *lease);
            }
        }
        for (key, value, _) in &kvs.1 {
            let Some(u) = key.strip_prefix(&records) else {
                continue;
            };
            let rec = match pb::Service::decode(value.as_slice()) {
                Ok(rec) => rec,
                Err(e) => {
                    snap.skipped.push(format!("{key}: {e}"));
                    continue;
                }
            };
            if rec.uuid != u {
                snap.skipped
                    .push(format!("{key}: record of uuid {:?}", rec.uuid));
                continue;
            }
            let record_up = rec.status == pb::Status::Up as i32;
            snap.services.insert(
                u.to_string(),
                Truth {
                    uuid: rec.uuid,
                    service_type: rec.r#type,
                    host: rec.host,
                    region: rec.region,
                    record_up,
                    up: record_up && snap.up_keys.contains(u),
                    maintenance_start: rec.maintenance_start,
                    maintenance_end: rec.maintenance_end,
                    maintenance_note: rec.maintenance_note,
                    heartbeat_ms: rec.heartbeat_ms,
                    heartbeat_missed: rec.heartbeat_missed,
                    forced_down: rec.forced_down,
                    owner_down: rec.owner_down,
                },
            );
        }
        snap
    }

    /// Whether each service is UP, by uuid.
    pub fn liveness(&self) -> BTreeMap<String, bool> {
        self.services
            .iter()
            .map(|(u, t)| (u.clone(), t.up))
            .collect()
    }

    /// Whether `uuid` is UP (false if it has no record).
    pub fn is_up(&self, uuid: &str) -> bool {
        self.services.get(uuid).is_some_and(|t| t.up)
    }
}

/// Every `(key, value, lease)` under `prefix` at one revision, sorted by
/// key, and that revision.
#[track_caller]
fn read_prefix(raw: &Raw, prefix: &str) -> (i64, Vec<(String, Vec<u8>, i64)>) {
    let mut c = raw.client();
    let prefix = prefix.as_bytes().to_vec();
    let end = prefix_end(&prefix);
    raw.block_on(async move {
        let mut out = Vec::new();
        let mut from = prefix.clone();
        let mut revision = 0;
        loop {
            let mut opts = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if revision != 0 {
                opts = opts.with_revision(revision);
            }
            let resp = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                c.get(from.clone(), Some(opts)),
            )
            .await
            .expect("oracle read timed out")
            .expect("oracle read");
            if revision == 0 {
                revision = resp.header().expect("a response header").revision();
            }
            for kv in resp.kvs() {
                out.push((
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.value().to_vec(),
                    kv.lease(),
                ));
            }
            match (resp.more(), resp.kvs().last()) {
                (true, Some(last)) => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => break,
            }
        }
        (revision, out)
    })
}

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The key that says `uuid` is UP in namespace `ns`.
pub fn up_key(ns: &str, uuid: &str) -> String {
    format!("{ns}/services/by-status/UP/{uuid}")
}
