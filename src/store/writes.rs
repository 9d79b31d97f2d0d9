//! Writes: each one guarded transaction over everything it read, with the
//! state last seen of each service remembered so the next write need not
//! read first.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use etcd_client::{PutOptions, Txn, TxnOp};

use super::{Current, Decide, MAX_WRITE_ATTEMPTS, Put, Seen, Store, Superseded, TakeBack, Written};
use crate::error::{Error, ErrorKind, Result};
use crate::record::{Service, Status, decode_stored};

/// A service's keys as last seen: record, UP, DOWN and type/host index.
#[derive(Debug, Clone)]
pub(super) struct Snapshot {
    rec: Seen,
    up: Seen,
    down: Seen,
    type_hosts: BTreeMap<String, Seen>,
    /// This process wrote the region index key of the record's region
    /// (trivially true without a region), so a change that keeps the region
    /// need not write it again.
    region_indexed: bool,
}

/// Bound on remembered snapshots (beyond it the memory is dropped, costing
/// only a read per write).
const MAX_SNAPSHOTS: usize = 100_000;

impl Store {
    /// Creates or updates `desired` (already validated) for its owner, as
    /// `decide` says (`ours`: the owner's lease, 0: none needed).
    /// `fresh`: the uuid was just
    /// generated, so nothing of it can exist and the first attempt writes
    /// without reading (its compares still check that).
    ///
    /// Identity is type+host: with `adopt` (the caller gave no uuid), a
    /// type+host already registered under another uuid is taken over under
    /// that uuid, in one more transaction; without it, the type+host is
    /// taken back under `desired.uuid` (the other uuid's keys removed in
    /// the same transaction) if `take_back` allows it. With
    /// `desired.exclusive` the write asks etcd whether the lease recorded
    /// in its DOWN key lives.
    pub(crate) async fn update(
        &self,
        desired: &Service,
        ours: i64,
        fresh: bool,
        adopt: bool,
        decide: Decide<'_>,
        take_back: TakeBack<'_>,
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
                    region_indexed: false,
                },
            );
        }
        let mut other = match self.update_as(desired, ours, decide, None).await? {
            Wrote::Done(w) => return Ok(w),
            Wrote::TypeHostTaken(other) if adopt => {
                let mut adopted = desired.clone();
                adopted.uuid = other;
                return match self.update_as(&adopted, ours, decide, None).await? {
                    Wrote::Done(w) => Ok(w),
                    // Taken again meanwhile, by a third uuid: say so.
                    Wrote::TypeHostTaken(third) => Err(taken(desired, &third)),
                };
            }
            Wrote::TypeHostTaken(other) => other,
        };
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let (cur, stale) = self.superseded(&other).await?;
            take_back(&other, &cur)?;
            match self.update_as(desired, ours, decide, Some(&stale)).await? {
                Wrote::Done(w) => {
                    log::warn!(
                        "os-lively: type {:?} on host {:?} was registered as uuid {other} by a registration nobody keeps alive; taken back as {} (uuid {other} removed)",
                        desired.service_type,
                        desired.host,
                        w.uuid
                    );
                    return Ok(w);
                }
                Wrote::TypeHostTaken(next) => other = next,
            }
        }
        Err(taken(desired, &other))
    }

    /// The keys of `other`, a uuid the type+host index names instead of
    /// ours, and what they say: whether its UP key, its lease-bound DOWN
    /// key or the owner its DOWN key records is a live lease.
    async fn superseded(&self, other: &str) -> Result<(Current, Superseded)> {
        let k = &self.keys;
        let record_key = k.record(other);
        let mut seen = self
            .read(
                "update: read the type+host's other uuid",
                &[
                    &record_key,
                    &k.status(Status::Up, other),
                    &k.status(Status::Down, other),
                ],
            )
            .await?;
        let down = seen.pop().unwrap_or_default();
        let up = seen.pop().unwrap_or_default();
        let rec = seen.pop().unwrap_or_default();
        let region = if rec.exists() {
            decode_stored(record_key.as_bytes(), &rec.value)
                .ok()
                .map(|s| s.region)
                .filter(|r| !r.is_empty())
        } else {
            None
        };
        let cur = self.current(&up, &down, true, 0).await?;
        Ok((
            cur,
            Superseded {
                uuid: other.to_string(),
                rec,
                up,
                down,
                region,
            },
        ))
    }

    /// What a write's decision sees of a service's keys; with `probe`,
    /// whether the owner its DOWN key records (other than `ours`) lives.
    pub(super) async fn current(
        &self,
        up: &Seen,
        down: &Seen,
        probe: bool,
        ours: i64,
    ) -> Result<Current> {
        let owner = recorded_owner(down);
        let owner_alive = if probe && !up.exists() && owner != 0 && owner != ours {
            Some(self.lease_alive(owner).await?)
        } else {
            None
        };
        Ok(Current {
            up_lease: if up.exists() { up.lease } else { 0 },
            down_owner: owner,
            closed: down.exists() && down.lease == 0 && down.value == CLOSED_MARK,
            down_lease: if down.exists() { down.lease } else { 0 },
            owner_alive,
        })
    }

    async fn update_as(
        &self,
        desired: &Service,
        ours: i64,
        decide: Decide<'_>,
        supersede: Option<&Superseded>,
    ) -> Result<Wrote> {
        let uuid = desired.uuid.as_str();
        self.write(
            uuid,
            Some((&desired.service_type, &desired.host)),
            ours,
            // Always: a plain update by a displaced client must know too
            // whether the holder its DOWN key names lives (a missed or
            // held service has no UP key to say so). It costs a lease
            // lookup only when there is no UP key and the DOWN key names
            // another client.
            true,
            supersede,
            |old, cur| decide(uuid, old, cur),
        )
        .await
    }

    /// Read-modify-write of an existing service in one guarded transaction
    /// (see [`Store::write`]): `make` decides from the record and the
    /// [`Current`] state of its keys (`probe`: with whether the owner its
    /// DOWN key records lives); `ours`: this client's lease when the write
    /// may bind to it (its loss is then an error, for a re-grant).
    pub(crate) async fn rewrite(
        &self,
        uuid: &str,
        ours: i64,
        probe: bool,
        make: impl Fn(Option<&Service>, &Current) -> Result<Option<Put>>,
    ) -> Result<Written> {
        self.write(uuid, None, ours, probe, None, make)
            .await
            .and_then(done)
    }

    /// Read-modify-write of one service in a single guarded transaction.
    /// `type_host_hint` lets the first read fetch the target type/host index.
    /// `make` gets the record and the [`Current`] state of its keys and
    /// returns the [`Put`] to execute, or `None` for nothing; it runs again
    /// on every retry. `ours`: this client's lease (0: none), whose loss is
    /// an error for the caller. `probe`: ask etcd whether the owner the
    /// DOWN key records lives ([`Current::owner_alive`]). `supersede`: the
    /// type+host may name that other uuid, whose keys this write removes.
    async fn write(
        &self,
        uuid: &str,
        type_host_hint: Option<(&str, &str)>,
        ours: i64,
        probe: bool,
        supersede: Option<&Superseded>,
        make: impl Fn(Option<&Service>, &Current) -> Result<Option<Put>>,
    ) -> Result<Wrote> {
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
                region_indexed,
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
                    // A record read, not written, by us (another process's,
                    // or the Python library's, which writes no per-uuid
                    // region key): its next change writes the key.
                    Snapshot {
                        rec,
                        up,
                        down,
                        type_hosts,
                        region_indexed: false,
                    }
                }
            };
            let old = if rec.exists() {
                Some(decode_stored(record_key.as_bytes(), &rec.value)?)
            } else {
                None
            };
            let current = self.current(&up, &down, probe, ours).await?;
            let Some(Put {
                record: new,
                up_lease: lease,
                down_owner,
                closed,
            }) = (match make(old.as_ref(), &current) {
                // A refusal judged from memory (a key on a lease that has
                // died since, say): judge again from what etcd holds.
                Err(_) if from_memory => continue,
                decided => decided?,
            })
            else {
                if from_memory {
                    // Nothing to do by our memory; someone else may have
                    // changed it: decide again from what etcd holds.
                    continue;
                }
                return Ok(Wrote::Done(Written {
                    uuid: uuid.to_string(),
                    wrote: false,
                    held: None,
                    record: old,
                    displaced: 0,
                }));
            };
            let held = new.forced_down.then_some(new.maintenance_end);
            // The DOWN key names the owner the decision chose.
            let down_value = if closed {
                String::from_utf8_lossy(CLOSED_MARK).into_owned()
            } else if down_owner != 0 && new.status == Status::Down {
                format!("{down_owner:x}")
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
            let taking_back = supersede.filter(|s| th.exists() && th.value == s.uuid.as_bytes());
            if th.exists() && th.value != uuid.as_bytes() && taking_back.is_none() {
                self.forget(uuid);
                return Ok(Wrote::TypeHostTaken(
                    String::from_utf8_lossy(&th.value).into_owned(),
                ));
            }

            let mut compares = vec![
                rec.unchanged(&record_key),
                up.unchanged(&up_key),
                down.unchanged(&down_key),
            ];
            let mut ops = Vec::new();
            if let Some(s) = taking_back {
                // The type+host back under our uuid, and the other uuid's
                // keys gone, only if they are as judged.
                compares.push(th.unchanged(&new_th));
                ops.push(TxnOp::put(new_th.as_str(), uuid, None));
                for (seen, key) in [
                    (&s.rec, k.record(&s.uuid)),
                    (&s.up, k.status(Status::Up, &s.uuid)),
                    (&s.down, k.status(Status::Down, &s.uuid)),
                ] {
                    compares.push(seen.unchanged(&key));
                    if seen.exists() {
                        ops.push(TxnOp::delete(key, None));
                    }
                }
                if let Some(r) = &s.region {
                    ops.push(TxnOp::delete(k.region(r, &s.uuid), None));
                }
                self.forget(&s.uuid);
            }
            let changed = old.as_ref() != Some(&new);
            let encoded = if changed { new.to_bytes() } else { Vec::new() };
            // The region key only when it may be missing: a change that
            // keeps a region this process indexed writes the record alone.
            let same_region = old.as_ref().is_some_and(|o| o.region == new.region);
            let puts_region = changed && !new.region.is_empty() && !(region_indexed && same_region);
            if changed {
                ops.push(TxnOp::put(record_key.as_str(), encoded.clone(), None));
            }
            if puts_region {
                ops.push(TxnOp::put(k.region(&new.region, uuid), "", None));
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
                    if closed {
                        if puts_down(&down, &down_value) {
                            ops.push(TxnOp::put(down_key.as_str(), down_value.as_str(), None));
                        }
                    } else if down.exists() {
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
                let kept = Snapshot {
                    rec,
                    up,
                    down,
                    type_hosts,
                    region_indexed,
                };
                return Ok(Wrote::Done(self.settled(uuid, kept, false, held, old, 0)));
            }
            let puts_up = ops_put_up(&new, &up, lease);
            let displaced = if puts_up && up.exists() && up.lease != 0 {
                up.lease
            } else {
                0
            };
            let resp = self
                .txn_leased(
                    "update: write",
                    Txn::new().when(compares).and_then(ops),
                    lease != 0 && lease == ours,
                )
                .await?;
            let Some(resp) = resp.filter(|r| r.succeeded()) else {
                // Lost a compare, or a lease it names is gone (the owner
                // an operator's lift binds to died since it was asked):
                // decide again from what etcd holds.
                self.forget(uuid);
                if let Some(s) = taking_back {
                    // The other uuid's keys may have changed: judged again.
                    return Ok(Wrote::TypeHostTaken(s.uuid.clone()));
                }
                continue;
            };
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
                Some(th) if th.exists() && taking_back.is_none() => th,
                _ => written(uuid.as_bytes(), 0),
            };
            let type_hosts = BTreeMap::from([(new_th, th)]);
            // A changed record's region key is now written (or was already);
            // an unchanged one's is as known before.
            let region_indexed = changed || region_indexed;
            let now = Snapshot {
                rec,
                up,
                down,
                type_hosts,
                region_indexed,
            };
            return Ok(Wrote::Done(self.settled(
                uuid,
                now,
                true,
                held,
                Some(new),
                displaced,
            )));
        }
        Err(Error::new(
            ErrorKind::Conflict,
            format!("service {uuid}: concurrent writers won {MAX_WRITE_ATTEMPTS} times in a row"),
        ))
    }

    /// Remembers `snapshot` as the service's state for its next write, and
    /// says what this write did.
    fn settled(
        &self,
        uuid: &str,
        snapshot: Snapshot,
        wrote: bool,
        held: Option<u64>,
        record: Option<Service>,
        displaced: i64,
    ) -> Written {
        self.remember(uuid, snapshot);
        Written {
            uuid: uuid.to_string(),
            wrote,
            held,
            record,
            displaced,
        }
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

/// The owner's lease recorded in a DOWN key our writes made (lease
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

/// What a write did, or that the type+host it wanted names another uuid.
enum Wrote {
    Done(Written),
    TypeHostTaken(String),
}

/// The value of a DOWN key written by a clean close: the service's UP key
/// went in the same transaction, so watchers tell a shutdown from a crash.
pub(crate) const CLOSED_MARK: &[u8] = b"closed";

/// Writes that name their service never meet another's type+host.
fn done(w: Wrote) -> Result<Written> {
    match w {
        Wrote::Done(w) => Ok(w),
        Wrote::TypeHostTaken(other) => Err(Error::new(
            ErrorKind::Internal,
            format!("a write without a type+host met uuid {other}'s"),
        )),
    }
}

fn taken(desired: &Service, other: &str) -> Error {
    Error::new(
        ErrorKind::Conflict,
        format!(
            "type {:?} on host {:?} is already registered as uuid {other} (update without a uuid to take it over)",
            desired.service_type, desired.host
        ),
    )
}
