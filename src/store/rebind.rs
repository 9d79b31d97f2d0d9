//! The owner's checks that the UP keys of the services a client holds are
//! on its current lease, putting back those that are not, and the marks of
//! a clean close.

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::{CLOSED_MARK, MAX_WRITE_ATTEMPTS, Store};
use crate::error::{Error, ErrorKind, Result};
use crate::record::{Service, Status, decode_stored};

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
    /// The record was deleted.
    Gone,
    /// Its UP key is on another live lease: another client took it over.
    Moved,
    /// The record says DOWN, not forced (`missed`: for a heartbeat miss).
    Down { missed: bool },
}

/// True when the DOWN key is a clean close's mark and the UP key is not on
/// our lease: our UP writes delete the DOWN key, so another client took
/// the service over and then closed; putting our UP key back would be a
/// false UP.
fn closed_by_other(down: &super::Seen, up: &super::Seen, lease: i64) -> bool {
    down.exists()
        && down.lease == 0
        && down.value == super::CLOSED_MARK
        && !(up.exists() && up.lease == lease)
}

/// The verdict on a service whose record is not UP on a lease of ours.
fn verdict_of(stored: Option<&Service>) -> Option<Rebind> {
    match stored {
        None => Some(Rebind::Gone),
        Some(s) if s.forced_down => Some(Rebind::Held(s.maintenance_end)),
        Some(s) if s.status != Status::Up => Some(Rebind::Down {
            missed: s.heartbeat_missed,
        }),
        Some(_) => None,
    }
}

/// Services marked per close transaction (each a nested transaction of two
/// operations; etcd's default `--max-txn-ops` is 128).
const CLOSE_BATCH: usize = 40;
/// Services checked per read transaction: three reads each (record, UP
/// key, DOWN key) within etcd's default `--max-txn-ops` of 128.
const REBIND_READ_BATCH: usize = 40;

impl Store {
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
        for chunk in uuids.chunks(REBIND_READ_BATCH) {
            let mut keys = Vec::with_capacity(chunk.len() * 2);
            for u in chunk {
                self.forget(u);
                keys.push(k.record(u));
                keys.push(k.status(Status::Up, u));
                keys.push(k.status(Status::Down, u));
            }
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let seen = self.read("keepalive: check UP keys", &refs).await?;
            let mut compares = Vec::new();
            let mut puts = Vec::new();
            let mut restoring = Vec::new();
            for (u, three) in chunk.iter().zip(seen.chunks(3)) {
                let [rec, up, down] = three else { continue };
                let record_key = k.record(u);
                let up_key = k.status(Status::Up, u);
                let stored = if rec.exists() {
                    decode_stored(record_key.as_bytes(), &rec.value).ok()
                } else {
                    None
                };
                let verdict = if let Some(v) = verdict_of(stored.as_ref()) {
                    v
                } else if closed_by_other(down, up, lease) {
                    Rebind::Moved
                } else if up.exists() && up.lease == lease {
                    Rebind::Ours
                } else if up.exists() && (previous_lease == 0 || up.lease != previous_lease) {
                    Rebind::Moved
                } else {
                    compares.push(rec.unchanged(&record_key));
                    compares.push(up.unchanged(&up_key));
                    compares.push(down.unchanged(&k.status(Status::Down, u)));
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
        let down_key = self.keys.status(Status::Down, uuid);
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let seen = self
                .read(
                    "keepalive: check UP key",
                    &[&record_key, &up_key, &down_key],
                )
                .await?;
            let (Some(rec), Some(up), Some(down)) = (seen.first(), seen.get(1), seen.get(2)) else {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "short transaction response",
                ));
            };
            let stored = if rec.exists() {
                decode_stored(record_key.as_bytes(), &rec.value).ok()
            } else {
                None
            };
            if let Some(v) = verdict_of(stored.as_ref()) {
                return Ok(v);
            }
            if closed_by_other(down, up, lease) {
                return Ok(Rebind::Moved);
            }
            if up.exists() && up.lease == lease {
                return Ok(Rebind::Ours);
            }
            if up.exists() && (previous_lease == 0 || up.lease != previous_lease) {
                return Ok(Rebind::Moved);
            }
            let txn = Txn::new()
                .when([
                    rec.unchanged(&record_key),
                    up.unchanged(&up_key),
                    down.unchanged(&down_key),
                ])
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

    /// A clean close's marks: for each of `uuids` whose UP key is still on
    /// `lease`, the UP key deleted and the DOWN key written as closed, in
    /// one revision per batch, so watchers see reason `closed` rather than
    /// `expired`. Best effort: the revoke that follows takes them DOWN
    /// anyway.
    pub(crate) async fn mark_closed(&self, uuids: &[String], lease: i64) -> Result<()> {
        let k = &self.keys;
        for chunk in uuids.chunks(CLOSE_BATCH) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .map(|u| {
                    let up_key = k.status(Status::Up, u);
                    TxnOp::txn(
                        Txn::new()
                            .when([Compare::lease(up_key.as_str(), CompareOp::Equal, lease)])
                            .and_then([
                                TxnOp::delete(up_key.as_str(), None),
                                TxnOp::put(k.status(Status::Down, u), CLOSED_MARK, None),
                            ]),
                    )
                })
                .collect();
            for u in chunk {
                self.forget(u);
            }
            self.txn("close: marking services closed", Txn::new().and_then(ops))
                .await?;
        }
        Ok(())
    }
}
