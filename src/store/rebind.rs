//! The owner's checks that the UP keys of the services a client holds are
//! on its current lease, putting back those that are not, and the marks of
//! a clean close.

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::{CLOSED_MARK, Current, Put, Store};
use crate::error::Result;
use crate::record::{Service, Status, decode_stored};

/// What became of a service the owner's check asked to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rebound {
    /// The decision wrote nothing.
    Kept,
    /// Its UP key was put back on our lease, as the decision said.
    Restored,
    /// The decision wants a write other than an UP key put back, or the
    /// batch lost a compare: its own transition must judge it.
    Alone,
}

/// Services marked per close transaction (each a nested transaction of two
/// operations; etcd's default `--max-txn-ops` is 128).
const CLOSE_BATCH: usize = 40;
/// Services checked per read transaction: three reads each (record, UP
/// key, DOWN key) within etcd's default `--max-txn-ops` of 128.
const REBIND_READ_BATCH: usize = 40;
/// Records read per transaction by [`Store::records`].
const SURVEY_READ_BATCH: usize = 120;

/// The owner's decision for one service of a batch: what to write
/// (`None`: nothing), given its uuid, record and keys.
pub(crate) type Judge<'a> =
    &'a (dyn Fn(&str, Option<&Service>, &Current) -> Option<Put> + Send + Sync);

impl Store {
    /// Checks many services the owner holds UP, in batches of reads, and
    /// executes what `judge` decides for each: where that is their UP key
    /// put back on `lease` (the record unchanged), one guarded transaction
    /// per batch does it; anything else is left to the service's own
    /// transition ([`Rebound::Alone`]). After a re-grant of a client owning
    /// thousands of services this is a few dozen round trips instead of two
    /// per service. The rules (ownership, closed marks, deadlines) are the
    /// decision's; this only executes.
    pub(crate) async fn rebind_many(
        &self,
        uuids: &[String],
        lease: i64,
        judge: Judge<'_>,
    ) -> Result<Vec<(String, Rebound)>> {
        let k = &self.keys;
        let mut out = Vec::with_capacity(uuids.len());
        for chunk in uuids.chunks(REBIND_READ_BATCH) {
            let mut keys = Vec::with_capacity(chunk.len() * 3);
            for u in chunk {
                self.forget(u);
                keys.push(k.record(u));
                keys.push(k.status(Status::Up, u));
                keys.push(k.status(Status::Down, u));
            }
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let seen = self.read("keepalive: check UP keys", &refs).await?;
            let mut compares = Vec::new();
            let mut ops = Vec::new();
            let mut restoring = Vec::new();
            for (u, three) in chunk.iter().zip(seen.chunks(3)) {
                let [rec, up, down] = three else { continue };
                let record_key = k.record(u);
                let up_key = k.status(Status::Up, u);
                let down_key = k.status(Status::Down, u);
                let stored = if rec.exists() {
                    match decode_stored(record_key.as_bytes(), &rec.value) {
                        Ok(s) => Some(s),
                        Err(_) => {
                            out.push((u.clone(), Rebound::Alone));
                            continue;
                        }
                    }
                } else {
                    None
                };
                let cur = self.current(up, down, false, lease).await?;
                let rebound = match judge(u, stored.as_ref(), &cur) {
                    None => Rebound::Kept,
                    Some(p)
                        if p.up_lease == lease
                            && p.record.status == Status::Up
                            && stored.as_ref() == Some(&p.record) =>
                    {
                        compares.push(rec.unchanged(&record_key));
                        compares.push(up.unchanged(&up_key));
                        compares.push(down.unchanged(&down_key));
                        ops.push(TxnOp::put(
                            up_key.as_str(),
                            "",
                            Some(PutOptions::new().with_lease(lease)),
                        ));
                        if down.exists() {
                            ops.push(TxnOp::delete(down_key.as_str(), None));
                        }
                        restoring.push(u.clone());
                        continue;
                    }
                    Some(_) => Rebound::Alone,
                };
                out.push((u.clone(), rebound));
            }
            if restoring.is_empty() {
                continue;
            }
            let resp = self
                .txn(
                    "keepalive: restore UP keys",
                    Txn::new().when(compares).and_then(ops),
                )
                .await?;
            let rebound = if resp.succeeded() {
                Rebound::Restored
            } else {
                Rebound::Alone
            };
            out.extend(restoring.into_iter().map(|u| (u, rebound)));
        }
        Ok(out)
    }

    /// The records of `uuids` (`None`: none, or one that does not
    /// decode), read in batches of one transaction each.
    pub(crate) async fn records(&self, uuids: &[String]) -> Result<Vec<Option<Service>>> {
        let mut out = Vec::with_capacity(uuids.len());
        for chunk in uuids.chunks(SURVEY_READ_BATCH) {
            let keys: Vec<String> = chunk.iter().map(|u| self.keys.record(u)).collect();
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            let seen = self.read("keepalive: read held records", &refs).await?;
            for (key, s) in keys.iter().zip(seen) {
                out.push(if s.exists() {
                    decode_stored(key.as_bytes(), &s.value).ok()
                } else {
                    None
                });
            }
        }
        Ok(out)
    }

    /// A clean close's marks: for each of `uuids` whose UP key is still on
    /// `lease`, the UP key deleted and the DOWN key written as closed (or
    /// whose DOWN key names `lease`, that key written as closed), in
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
                    let down_key = k.status(Status::Down, u);
                    // A hold (or a miss) whose DOWN key names us: the mark
                    // replaces our name, so that no later up() binds an UP
                    // key to the lease being revoked.
                    let named = TxnOp::txn(
                        Txn::new()
                            .when([Compare::value(
                                down_key.as_str(),
                                CompareOp::Equal,
                                format!("{lease:x}"),
                            )])
                            .and_then([TxnOp::put(down_key.as_str(), CLOSED_MARK, None)]),
                    );
                    TxnOp::txn(
                        Txn::new()
                            .when([Compare::lease(up_key.as_str(), CompareOp::Equal, lease)])
                            .and_then([
                                TxnOp::delete(up_key.as_str(), None),
                                TxnOp::put(down_key.as_str(), CLOSED_MARK, None),
                            ])
                            .or_else([named]),
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
