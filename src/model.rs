//! The in-memory copy of every service in the namespace, fed by the watch.
//!
//! One writer (the watcher on the runtime thread) and many readers (views on
//! any thread). The services are spread over shards, each behind its own
//! read-write lock, so readers of different services never touch the same
//! lock and a reader never allocates.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::record::{Service, Status};
use crate::store::ServiceInfo;

const SHARDS: usize = 64;

/// A multiply-xor hash taking eight bytes at a time: the keys are short
/// uuids and type/host names, where SipHash's flood resistance buys nothing
/// (only etcd's contents reach these maps) and costs much of an is-up.
#[derive(Default, Clone, Copy)]
pub(crate) struct Quick(u64);

impl Hasher for Quick {
    fn finish(&self) -> u64 {
        // Final avalanche, so the low bits hashbrown uses depend on every byte.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = (h ^ u64::from_le_bytes(w)).wrapping_mul(K).rotate_left(29);
        }
        for b in chunks.remainder() {
            h = (h ^ u64::from(*b)).wrapping_mul(K).rotate_left(29);
        }
        self.0 = h;
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Quick>>;

/// One service as the model knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    pub record: Option<Service>,
    pub up_key: bool,
}

impl Entry {
    /// Effective status; `None` when there is no record.
    pub(crate) fn effective(&self) -> Option<Status> {
        self.record.as_ref().map(|r| {
            if r.status == Status::Up && self.up_key {
                Status::Up
            } else {
                Status::Down
            }
        })
    }

    pub(crate) fn info(&self) -> Option<ServiceInfo> {
        let st = self.effective()?;
        Some(ServiceInfo {
            service: self.record.clone()?,
            up: st == Status::Up,
        })
    }
}

type TypeHostIndex = FastMap<String, FastMap<String, String>>;

pub(crate) struct Model {
    shards: Box<[RwLock<FastMap<String, Entry>>]>,
    type_host: Box<[RwLock<TypeHostIndex>]>,
}

impl Model {
    pub(crate) fn new() -> Model {
        Model {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            type_host: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }

    fn shard_of(uuid: &str) -> usize {
        // Stored uuids are random hex: their first digits spread evenly.
        let b = uuid.as_bytes();
        let v =
            b.first().copied().unwrap_or(0) as usize * 31 + b.get(1).copied().unwrap_or(0) as usize;
        v % SHARDS
    }

    fn type_host_shard(service_type: &str, host: &str) -> usize {
        let mut h = Quick::default();
        service_type.hash(&mut h);
        host.hash(&mut h);
        (h.finish() as usize) % SHARDS
    }

    fn read(&self, uuid: &str) -> RwLockReadGuard<'_, FastMap<String, Entry>> {
        self.shards[Self::shard_of(uuid)]
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, uuid: &str) -> RwLockWriteGuard<'_, FastMap<String, Entry>> {
        self.shards[Self::shard_of(uuid)]
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Effective status of `uuid` (normalized); `None` if unknown.
    pub(crate) fn status(&self, uuid: &str) -> Option<Status> {
        self.read(uuid).get(uuid).and_then(Entry::effective)
    }

    pub(crate) fn entry(&self, uuid: &str) -> Option<Entry> {
        self.read(uuid).get(uuid).cloned()
    }

    /// Calls `f` with the uuid registered for `type`/`host`, without
    /// allocating.
    pub(crate) fn with_type_host<T>(
        &self,
        service_type: &str,
        host: &str,
        f: impl FnOnce(&str) -> T,
    ) -> Option<T> {
        let shard = self.type_host[Self::type_host_shard(service_type, host)]
            .read()
            .unwrap_or_else(|p| p.into_inner());
        shard
            .get(service_type)
            .and_then(|hosts| hosts.get(host))
            .map(|u| f(u))
    }

    /// Every service, as (uuid, entry) pairs.
    pub(crate) fn snapshot(&self) -> Vec<(String, Entry)> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.read().unwrap_or_else(|p| p.into_inner());
            out.extend(shard.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        out
    }

    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// Replaces everything (after a full re-read).
    pub(crate) fn replace(&self, services: Vec<ServiceInfo>) {
        for shard in self.shards.iter() {
            shard.write().unwrap_or_else(|p| p.into_inner()).clear();
        }
        for shard in self.type_host.iter() {
            shard.write().unwrap_or_else(|p| p.into_inner()).clear();
        }
        for info in services {
            let uuid = info.service.uuid.clone();
            self.set(
                &uuid,
                Entry {
                    up_key: info.up,
                    record: Some(info.service),
                },
            );
        }
    }

    /// Applies `change` to `uuid`'s entry and returns the entry before it.
    pub(crate) fn update(&self, uuid: &str, change: impl FnOnce(&mut Entry)) -> Entry {
        let before = self.entry(uuid).unwrap_or_default();
        let mut after = before.clone();
        change(&mut after);
        self.set(uuid, after);
        before
    }

    fn set(&self, uuid: &str, after: Entry) {
        let old_record = {
            let mut shard = self.write(uuid);
            let old = shard.get(uuid).and_then(|e| e.record.clone());
            if after.record.is_none() && !after.up_key {
                shard.remove(uuid);
            } else {
                shard.insert(uuid.to_string(), after.clone());
            }
            old
        };
        let old_th = old_record
            .as_ref()
            .map(|r| (r.service_type.as_str(), r.host.as_str()));
        let new_th = after
            .record
            .as_ref()
            .map(|r| (r.service_type.as_str(), r.host.as_str()));
        if old_th == new_th {
            return;
        }
        if let Some((t, h)) = old_th {
            let mut idx = self.type_host[Self::type_host_shard(t, h)]
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(hosts) = idx.get_mut(t) {
                if hosts.get(h).is_some_and(|u| u == uuid) {
                    hosts.remove(h);
                }
                if hosts.is_empty() {
                    idx.remove(t);
                }
            }
        }
        if let Some((t, h)) = new_th {
            let mut idx = self.type_host[Self::type_host_shard(t, h)]
                .write()
                .unwrap_or_else(|p| p.into_inner());
            idx.entry(t.to_string())
                .or_default()
                .insert(h.to_string(), uuid.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_host_index_follows_moves_and_deletes() {
        let m = Model::new();
        let u = "0123456789abcdef0123456789abcdef";
        let mut s = Service::new("t", "h1");
        s.uuid = u.into();
        m.update(u, |e| {
            e.record = Some(s.clone());
            e.up_key = true;
        });
        assert_eq!(m.status(u), Some(Status::Up));
        assert_eq!(
            m.with_type_host("t", "h1", str::to_string).as_deref(),
            Some(u)
        );
        s.host = "h2".into();
        m.update(u, |e| e.record = Some(s.clone()));
        assert!(m.with_type_host("t", "h1", |_| ()).is_none());
        assert!(m.with_type_host("t", "h2", |_| ()).is_some());
        m.update(u, |e| e.up_key = false);
        assert_eq!(m.status(u), Some(Status::Down));
        m.update(u, |e| e.record = None);
        assert_eq!(m.status(u), None);
        assert!(m.with_type_host("t", "h2", |_| ()).is_none());
        assert_eq!(m.len(), 0);
    }
}
