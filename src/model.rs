//! The in-memory copy of every service in the namespace, fed by the watch.
//!
//! One writer (the watcher on the runtime thread) and many readers (views on
//! any thread). The services are spread over shards, each behind its own
//! read-write lock, so readers of different services never touch the same
//! lock and a reader never allocates.
//!
//! The copy is kept small, because a view holds every service of the fleet:
//! a service is keyed by its uuid's 16 bytes, and a record with only the
//! usual fields (uuid, type, host, region, status) is kept as one string
//! holding type, host and region; any other record (a maintenance window or
//! note, a field this version does not know by name) is kept whole. The
//! type/host index holds only a hash and the uuid, checked against the
//! service's own record on every lookup.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::record::{Service, Status};
use crate::store::ServiceInfo;

/// Many, so that the first write to a shard after a snapshot copies little
/// (about 25 services of 100,000): with 256, a revision of 600 changes
/// after a resync copied most of the model on the runtime thread (62 ms).
const SHARDS: usize = 4096;

/// A multiply-xor hash taking eight bytes at a time: the keys are uuids and
/// short type/host names, where SipHash's flood resistance buys nothing
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

/// A stored uuid (32 lowercase hex digits) as the 16 bytes it spells: half
/// the size of its text and no allocation of its own.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Key([u8; 16]);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // One write (arrays also hash their length).
        state.write(&self.0);
    }
}

impl Key {
    /// The key of a uuid in stored form; `None` for any other text, so
    /// [`Key::hex`] gives back exactly what was parsed.
    pub(crate) fn parse(uuid: &str) -> Option<Key> {
        let b = uuid.as_bytes();
        if b.len() != 32 {
            return None;
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut out = [0u8; 16];
        for (i, o) in out.iter_mut().enumerate() {
            *o = nibble(b[2 * i])? << 4 | nibble(b[2 * i + 1])?;
        }
        Some(Key(out))
    }

    /// The key of any accepted uuid spelling: 32 hex digits or the
    /// hyphenated 8-4-4-4-12 form, any case. No allocation.
    pub(crate) fn from_input(uuid: &str) -> Option<Key> {
        if let Some(k) = Key::parse(uuid) {
            return Some(k);
        }
        // `Uuid::try_parse` also takes braced and URN forms; the API does not.
        if uuid.len() != 32 && uuid.len() != 36 {
            return None;
        }
        uuid::Uuid::try_parse(uuid).ok().map(|u| Key(*u.as_bytes()))
    }

    /// The stored form: 32 lowercase hex digits.
    pub(crate) fn hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(32);
        for b in self.0 {
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 15)] as char);
        }
        s
    }

    fn shard(&self) -> usize {
        // Shard by hash, not by leading digits: time-based uuids (v1, v7)
        // share their first bytes.
        let mut h = Quick::default();
        self.hash(&mut h);
        shard_bits(h.finish())
    }
}

/// One service as the model's users see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    pub record: Option<Service>,
    pub up_key: bool,
    /// Its DOWN key is a clean close's mark: DOWN because its client closed.
    pub closed: bool,
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
            closed: self.closed && st == Status::Down,
        })
    }
}

/// Flags of a [`Slot`].
const HAS_RECORD: u8 = 1;
const SAYS_UP: u8 = 2;
const UP_KEY: u8 = 4;
const CLOSED: u8 = 8;

/// One service as the model stores it.
#[derive(Clone, PartialEq)]
struct Slot {
    /// Type, host and region, one after the other (empty when `full` holds
    /// the record, or there is none).
    names: Box<str>,
    /// The whole record, when it has more than the fields above.
    full: Option<Box<Service>>,
    type_len: u16,
    host_len: u16,
    flags: u8,
}

impl Slot {
    fn new(key: &Key, entry: Entry) -> Slot {
        let mut slot = Slot {
            names: Box::default(),
            full: None,
            type_len: 0,
            host_len: 0,
            flags: if entry.up_key { UP_KEY } else { 0 } | if entry.closed { CLOSED } else { 0 },
        };
        let Some(mut s) = entry.record else {
            return slot;
        };
        slot.flags |= HAS_RECORD;
        if s.status == Status::Up {
            slot.flags |= SAYS_UP;
        }
        // Take the usual fields out; if nothing but defaults is left, the
        // record is fully described by them (checked by comparison, so a
        // field added to `Service` later is kept, not lost).
        let uuid = std::mem::take(&mut s.uuid);
        let service_type = std::mem::take(&mut s.service_type);
        let host = std::mem::take(&mut s.host);
        let region = std::mem::take(&mut s.region);
        let status = std::mem::take(&mut s.status);
        let lean = s == Service::default()
            && Key::parse(&uuid) == Some(*key)
            && service_type.len() <= usize::from(u16::MAX)
            && host.len() <= usize::from(u16::MAX);
        if lean {
            let mut names = String::with_capacity(service_type.len() + host.len() + region.len());
            names.push_str(&service_type);
            names.push_str(&host);
            names.push_str(&region);
            slot.names = names.into_boxed_str();
            slot.type_len = service_type.len() as u16;
            slot.host_len = host.len() as u16;
        } else {
            s.uuid = uuid;
            s.service_type = service_type;
            s.host = host;
            s.region = region;
            s.status = status;
            slot.full = Some(Box::new(s));
        }
        slot
    }

    fn up_key(&self) -> bool {
        self.flags & UP_KEY != 0
    }

    /// Effective status; `None` when there is no record.
    fn effective(&self) -> Option<Status> {
        match self.flags & (HAS_RECORD | SAYS_UP | UP_KEY) {
            f if f & HAS_RECORD == 0 => None,
            f if f == HAS_RECORD | SAYS_UP | UP_KEY => Some(Status::Up),
            _ => Some(Status::Down),
        }
    }

    /// Type and host, without allocating.
    fn type_host(&self) -> Option<(&str, &str)> {
        if self.flags & HAS_RECORD == 0 {
            return None;
        }
        if let Some(s) = &self.full {
            return Some((&s.service_type, &s.host));
        }
        let (t, rest) = self.names.split_at(usize::from(self.type_len));
        Some((t, &rest[..usize::from(self.host_len)]))
    }

    fn entry(&self, key: &Key) -> Entry {
        let record = match (&self.full, self.flags & HAS_RECORD != 0) {
            (_, false) => None,
            (Some(s), true) => Some((**s).clone()),
            (None, true) => {
                let (t, rest) = self.names.split_at(usize::from(self.type_len));
                let (h, r) = rest.split_at(usize::from(self.host_len));
                Some(Service {
                    uuid: key.hex(),
                    service_type: t.to_string(),
                    host: h.to_string(),
                    region: r.to_string(),
                    status: if self.flags & SAYS_UP != 0 {
                        Status::Up
                    } else {
                        Status::Down
                    },
                    ..Service::default()
                })
            }
        };
        Entry {
            record,
            up_key: self.up_key(),
            closed: self.flags & CLOSED != 0,
        }
    }
}

/// The services registered under one type/host hash: almost always one.
enum Candidates {
    One(Key),
    Many(Box<[Key]>),
}

impl Candidates {
    fn as_slice(&self) -> &[Key] {
        match self {
            Candidates::One(k) => std::slice::from_ref(k),
            Candidates::Many(v) => v,
        }
    }

    /// `self` plus `key` (last), or `self` with `key` gone (`None` if
    /// nothing is left).
    fn with(&self, key: Key, present: bool) -> Option<Candidates> {
        let mut keys: Vec<Key> = self
            .as_slice()
            .iter()
            .copied()
            .filter(|k| *k != key)
            .collect();
        if present {
            keys.push(key);
        }
        match keys.as_slice() {
            [] => None,
            [one] => Some(Candidates::One(*one)),
            _ => Some(Candidates::Many(keys.into_boxed_slice())),
        }
    }
}

type Shard = FastMap<Key, Slot>;
/// Type/host hash → uuids whose record had that type and host when indexed.
type TypeHostShard = FastMap<u64, Candidates>;

pub(crate) struct Model {
    shards: Box<[RwLock<Arc<Shard>>]>,
    type_host: Box<[RwLock<TypeHostShard>]>,
    /// Bumped by every write: equal generations, equal contents.
    generation: AtomicU64,
}

/// The whole model at one moment, sharing its shards with the model until
/// the model writes to them.
#[derive(Clone)]
pub(crate) struct Snapshot {
    shards: Arc<[Arc<Shard>]>,
}

impl Snapshot {
    /// Every service, as (key, entry) pairs.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (Key, Entry)> + '_ {
        self.shards
            .iter()
            .flat_map(|shard| shard.iter().map(|(k, slot)| (*k, slot.entry(k))))
    }

    /// True when both are the same snapshot (not merely equal contents).
    pub(crate) fn same(&self, other: &Snapshot) -> bool {
        Arc::ptr_eq(&self.shards, &other.shards)
    }

    /// The services that may differ between `self` and `other`, in shard
    /// order: each key of a shard the two do not share, with its shard's
    /// index and its entry in each (`None`: not there). Shards both still
    /// share are skipped without a look.
    pub(crate) fn indexed_changes<'a>(
        &'a self,
        other: &'a Snapshot,
    ) -> impl Iterator<Item = (usize, Key, Option<Entry>, Option<Entry>)> + 'a {
        self.shards
            .iter()
            .zip(other.shards.iter())
            .enumerate()
            .filter(|(_, (a, b))| !Arc::ptr_eq(a, b))
            .flat_map(|(i, (a, b))| {
                // A full re-read replaces every shard: compare the slots
                // (cheap, no allocation) and make entries only of those
                // that differ.
                let before = a.iter().filter_map(move |(k, slot)| {
                    let now = b.get(k);
                    (now != Some(slot))
                        .then(|| (i, *k, Some(slot.entry(k)), now.map(|s| s.entry(k))))
                });
                let added = b
                    .iter()
                    .filter(|(k, _)| !a.contains_key(k))
                    .map(move |(k, slot)| (i, *k, None, Some(slot.entry(k))));
                before.chain(added)
            })
    }

    /// A model with nothing in it.
    pub(crate) fn empty() -> Snapshot {
        let empty = Arc::new(Shard::default());
        Snapshot {
            shards: (0..SHARDS).map(|_| empty.clone()).collect(),
        }
    }

    /// What one told `self` knows once also told, in shard order, the
    /// changes to `to` of every shard before `shard` and those of `keys`
    /// in `shard`: `to`'s shards up to there (shared, not copied), one
    /// shard copied and patched, `self`'s after.
    pub(crate) fn advanced(&self, to: &Snapshot, shard: usize, keys: &[Key]) -> Snapshot {
        let shards = (0..self.shards.len())
            .map(|i| {
                if i < shard {
                    to.shards[i].clone()
                } else if i == shard && !keys.is_empty() {
                    let mut patched: Shard = (*self.shards[i]).clone();
                    for k in keys {
                        match to.shards[i].get(k) {
                            Some(slot) => {
                                patched.insert(*k, slot.clone());
                            }
                            None => {
                                patched.remove(k);
                            }
                        }
                    }
                    Arc::new(patched)
                } else {
                    self.shards[i].clone()
                }
            })
            .collect();
        Snapshot { shards }
    }
}

fn type_host_hash(service_type: &str, host: &str) -> u64 {
    let mut h = Quick::default();
    service_type.hash(&mut h);
    host.hash(&mut h);
    h.finish()
}

fn th_shard(hash: u64) -> usize {
    shard_bits(hash)
}

/// The shard of a hash, from bits the maps inside a shard do not use
/// (hashbrown takes its bucket from the low bits and its tag from the top
/// seven), so the keys of one shard still spread over its buckets.
fn shard_bits(hash: u64) -> usize {
    (hash >> 40) as usize % SHARDS
}

/// Adds (`present`) or removes `key` under `hash`.
fn index_set(idx: &mut TypeHostShard, hash: u64, key: Key, present: bool) {
    let next = match idx.get(&hash) {
        None if present => Some(Candidates::One(key)),
        None => return,
        Some(Candidates::One(k)) if *k == key && present => return,
        Some(c) => c.with(key, present),
    };
    match next {
        Some(c) => {
            idx.insert(hash, c);
        }
        None => {
            idx.remove(&hash);
        }
    }
}

impl Model {
    pub(crate) fn new() -> Model {
        // One empty shard shared by all until written (writes copy on
        // write): a client that never watches keeps no 4,096 allocations
        // (about 256 KiB, measured per idle daemon in the fleet benchmark).
        let empty = Arc::new(Shard::default());
        Model {
            shards: (0..SHARDS).map(|_| RwLock::new(empty.clone())).collect(),
            type_host: (0..SHARDS).map(|_| RwLock::default()).collect(),
            generation: AtomicU64::new(0),
        }
    }

    fn read(&self, key: &Key) -> RwLockReadGuard<'_, Arc<Shard>> {
        self.shards[key.shard()]
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, key: &Key) -> RwLockWriteGuard<'_, Arc<Shard>> {
        self.shards[key.shard()]
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Changes with every write (see [`Snapshot`]).
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The whole model as it is now: one `Arc` clone per shard.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            shards: self
                .shards
                .iter()
                .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).clone())
                .collect(),
        }
    }

    fn write_index(&self, hash: u64) -> RwLockWriteGuard<'_, TypeHostShard> {
        self.type_host[th_shard(hash)]
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Effective status of `uuid` (stored form); `None` if unknown.
    #[cfg(test)]
    fn status(&self, uuid: &str) -> Option<Status> {
        self.status_of(&Key::parse(uuid)?)
    }

    /// Effective status of the service with `key`; `None` if unknown.
    pub(crate) fn status_of(&self, key: &Key) -> Option<Status> {
        self.read(key).get(key).and_then(Slot::effective)
    }

    pub(crate) fn entry(&self, uuid: &str) -> Option<Entry> {
        self.entry_of(&Key::parse(uuid)?)
    }

    pub(crate) fn entry_of(&self, key: &Key) -> Option<Entry> {
        self.read(key).get(key).map(|s| s.entry(key))
    }

    /// The service registered as `service_type` on `host`, without
    /// allocating. If several records claim the pair (a stale record the
    /// index keys disagree with), the one indexed last wins.
    pub(crate) fn find_type_host(&self, service_type: &str, host: &str) -> Option<Key> {
        let hash = type_host_hash(service_type, host);
        let idx = self.type_host[th_shard(hash)]
            .read()
            .unwrap_or_else(|p| p.into_inner());
        // The hash only narrows the search: each candidate's own record
        // says whether it really has this type and host.
        idx.get(&hash)?.as_slice().iter().rev().copied().find(|k| {
            self.read(k)
                .get(k)
                .and_then(Slot::type_host)
                .is_some_and(|th| th == (service_type, host))
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// Replaces everything (after a full re-read). Each shard's new contents
    /// are built aside and swapped in at once, so a reader sees a service as
    /// it was before the re-read or as it is after, never missing.
    pub(crate) fn replace(&self, services: Vec<ServiceInfo>) {
        let mut shards: Vec<Shard> = (0..SHARDS).map(|_| Shard::default()).collect();
        let mut index: Vec<TypeHostShard> = (0..SHARDS).map(|_| TypeHostShard::default()).collect();
        for info in services {
            // Records are keyed by their uuid field, which the writers keep
            // equal to the key's; one spelled otherwise is normalized.
            let key = Key::parse(&info.service.uuid).or_else(|| {
                crate::record::normalize_uuid(&info.service.uuid)
                    .ok()
                    .and_then(|u| Key::parse(&u))
            });
            let Some(key) = key else {
                log::debug!(
                    "os-lively: record with uuid {:?} left out of the view",
                    info.service.uuid
                );
                continue;
            };
            let slot = Slot::new(
                &key,
                Entry {
                    up_key: info.up,
                    closed: info.closed,
                    record: Some(info.service),
                },
            );
            if let Some((t, h)) = slot.type_host() {
                let hash = type_host_hash(t, h);
                index_set(&mut index[th_shard(hash)], hash, key, true);
            }
            shards[key.shard()].insert(key, slot);
        }
        // The old contents are dropped after each lock is released.
        for (lock, mut fresh) in self.shards.iter().zip(shards) {
            fresh.shrink_to_fit();
            let mut fresh = Arc::new(fresh);
            std::mem::swap(
                &mut *lock.write().unwrap_or_else(|p| p.into_inner()),
                &mut fresh,
            );
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
        for (lock, mut fresh) in self.type_host.iter().zip(index) {
            fresh.shrink_to_fit();
            std::mem::swap(
                &mut *lock.write().unwrap_or_else(|p| p.into_inner()),
                &mut fresh,
            );
        }
    }

    /// Applies `change` to `uuid`'s entry and returns the entry before it.
    #[cfg(test)]
    pub(crate) fn update(&self, uuid: &str, change: impl FnOnce(&mut Entry)) -> Entry {
        let Some(key) = Key::parse(uuid) else {
            // The watch parses keys before they get here; nothing else is
            // a service the model could hold.
            return Entry::default();
        };
        let before = self.entry_of(&key).unwrap_or_default();
        let mut after = before.clone();
        change(&mut after);
        self.set(key, after);
        before
    }

    /// Sets `uuid`'s entry (stored form; anything else is ignored, as the
    /// watch parses keys before they get here).
    pub(crate) fn put(&self, uuid: &str, after: Entry) {
        if let Some(key) = Key::parse(uuid) {
            self.set(key, after);
        }
    }

    fn set(&self, key: Key, after: Entry) {
        let keep = after.record.is_some() || after.up_key;
        let slot = Slot::new(&key, after);
        let new_th = slot.type_host().map(|(t, h)| type_host_hash(t, h));
        let old_th = {
            let mut guard = self.write(&key);
            // Copies the shard first if a snapshot still shares it.
            let shard = Arc::make_mut(&mut *guard);
            let old = if keep {
                shard.insert(key, slot)
            } else {
                shard.remove(&key)
            };
            old.and_then(|o| o.type_host().map(|(t, h)| type_host_hash(t, h)))
        };
        self.generation.fetch_add(1, Ordering::AcqRel);
        if old_th == new_th {
            return;
        }
        if let Some(hash) = old_th {
            index_set(&mut self.write_index(hash), hash, key, false);
        }
        if let Some(hash) = new_th {
            index_set(&mut self.write_index(hash), hash, key, true);
        }
    }
}

/// Set once a client asked for [`release_freed_memory`]
/// ([`Config::release_memory`](crate::Config::release_memory)).
static RELEASE_ASKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Lets [`release_freed_memory`] trim from now on (the host opted in).
pub(crate) fn allow_release() {
    RELEASE_ASKED.store(true, Ordering::Relaxed);
}

/// Gives freed memory back to the system after a full re-read, when the
/// host asked for it: its response and decoded records were transient and
/// several times the size of the copy kept, and glibc holds freed memory
/// for reuse, so a view's process would stay that large. Only when asked:
/// `malloc_trim` walks and locks every arena of the host's whole process.
/// Slow at scale: never on the runtime thread.
pub(crate) fn release_freed_memory() {
    if !RELEASE_ASKED.load(Ordering::Relaxed) {
        return;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; no pointer is touched.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn type_host_index_follows_moves_and_deletes() {
        let m = Model::new();
        let mut s = Service::new("t", "h1");
        s.uuid = U.into();
        m.update(U, |e| {
            e.record = Some(s.clone());
            e.up_key = true;
        });
        assert_eq!(m.status(U), Some(Status::Up));
        assert_eq!(
            m.find_type_host("t", "h1").map(|k| k.hex()).as_deref(),
            Some(U)
        );
        s.host = "h2".into();
        m.update(U, |e| e.record = Some(s.clone()));
        assert!(m.find_type_host("t", "h1").is_none());
        assert!(m.find_type_host("t", "h2").is_some());
        m.update(U, |e| e.up_key = false);
        assert_eq!(m.status(U), Some(Status::Down));
        m.update(U, |e| e.record = None);
        assert_eq!(m.status(U), None);
        assert!(m.find_type_host("t", "h2").is_none());
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn records_come_back_exactly_as_stored() {
        let m = Model::new();
        let lean = Service::new("nova", "h1").with_region("east").with_uuid(U);
        let mut full = lean.clone();
        full.status = Status::Down;
        full.maintenance_start = 1;
        full.maintenance_end = 2;
        full.maintenance_note = "disk".into();
        // A uuid field spelled otherwise than its key is kept as written.
        let mut odd = lean.clone();
        odd.uuid = U.to_uppercase();
        for record in [lean, full, odd, Service::default()] {
            m.update(U, |e| {
                e.record = Some(record.clone());
                e.up_key = true;
            });
            assert_eq!(m.entry(U).and_then(|e| e.record), Some(record));
        }
        // An UP key whose record is not there (yet) is remembered.
        m.update(U, |e| e.record = None);
        assert_eq!(
            m.entry(U),
            Some(Entry {
                record: None,
                up_key: true,
                closed: false,
            })
        );
        assert_eq!(m.status(U), None);
    }

    #[test]
    fn several_records_claiming_one_type_and_host_are_told_apart() {
        let m = Model::new();
        let v = "fedcba9876543210fedcba9876543210";
        for u in [U, v] {
            m.update(u, |e| e.record = Some(Service::new("t", "h").with_uuid(u)));
        }
        assert_eq!(
            m.find_type_host("t", "h").map(|k| k.hex()).as_deref(),
            Some(v)
        );
        m.update(v, |e| e.record = None);
        assert_eq!(
            m.find_type_host("t", "h").map(|k| k.hex()).as_deref(),
            Some(U)
        );
        m.update(U, |e| e.record = None);
        assert!(m.find_type_host("t", "h").is_none());
    }

    #[test]
    fn replace_swaps_everything_in() {
        let m = Model::new();
        m.update(U, |e| {
            e.record = Some(Service::new("old", "h").with_uuid(U))
        });
        let v = "fedcba9876543210fedcba9876543210";
        m.replace(vec![ServiceInfo {
            closed: false,
            service: Service::new("new", "h").with_uuid(v),
            up: true,
        }]);
        assert_eq!(m.status(U), None);
        assert_eq!(m.status(v), Some(Status::Up));
        assert!(m.find_type_host("old", "h").is_none());
        assert!(m.find_type_host("new", "h").is_some());
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn keys_parse_only_the_stored_form() {
        assert_eq!(Key::parse(U).map(|k| k.hex()).as_deref(), Some(U));
        let hyphenated = "01234567-89AB-cdef-0123-456789abcdef";
        assert_eq!(Key::from_input(hyphenated), Key::parse(U));
        assert_eq!(Key::from_input(&U.to_uppercase()), Key::parse(U));
        assert!(Key::from_input(&format!("{{{hyphenated}}}")).is_none());
        for bad in [
            &U.to_uppercase(),
            &U[1..],
            "0123456789abcdef0123456789abcdeg",
            "",
        ] {
            assert!(Key::parse(bad).is_none(), "{bad}");
        }
    }
}
