//! Remote calls against their raw baseline: the hand-off, reads, writes
//! (with the raw transactions they send), and the C ABI's overhead.

use super::*;

pub(crate) fn read_rows(p: &Params, lively: &Client, raw: &mut Raw, rows: &mut Vec<Row>) {
    let r = root(lively.config());
    let uuid = lively
        .update(&Service::new("bench-read", "host-1").with_region("rr"))
        .expect("register");
    assert!(lively.is_up(&uuid).expect("is_up"));
    let record = format!("{r}by-uuid/{uuid}");
    let m = interleave(
        p.rounds,
        p.reads,
        50,
        |_| timed(|| assert!(lively.is_up(&uuid).expect("is_up"))),
        |_| timed(|| raw.get(&record)),
    );
    // Call polling is off by default (CPU first; see the CPU rows): a
    // remote call pays the runtime thread's wake-up, which the opt-in
    // polling row below keeps near a raw call.
    let row = Row::ratio("is_up(uuid) vs raw get (default)", &m, Some(1.30));
    progress(&row);
    rows.push(row);
    // The same request as the library's (a count-only get of the UP key),
    // raw: what is left is the library's own cost.
    let up_key = format!("{r}by-status/UP/{uuid}");
    let m = interleave(
        p.rounds,
        p.reads,
        50,
        |_| timed(|| assert!(lively.is_up(&uuid).expect("is_up"))),
        |_| {
            timed(|| {
                let opts = GetOptions::new().with_count_only();
                raw.rt
                    .block_on(raw.c.get(up_key.as_str(), Some(opts)))
                    .expect("raw count-only get")
            })
        },
    );
    let row = Row::ratio("  …is_up vs raw count-only get of the UP key", &m, None);
    progress(&row);
    rows.push(row);
    let m = interleave(
        p.rounds,
        p.reads,
        50,
        |_| {
            timed(|| {
                assert!(
                    lively
                        .is_up_by_type_host("bench-read", "host-1")
                        .expect("is_up_by_type_host")
                )
            })
        },
        |_| timed(|| raw.get(&record)),
    );
    let row = Row::ratio("is_up_by_type_host vs raw get", &m, Some(2.1));
    progress(&row);
    rows.push(row);
}

pub(crate) fn update_rows(p: &Params, lively: &Client, raw: &mut Raw, rows: &mut Vec<Row>) {
    let r = root(lively.config());
    let lease = raw
        .rt
        .block_on(raw.c.lease_grant(60, None))
        .expect("raw lease")
        .id();
    // A changed record whose indexes stay (a new maintenance note each
    // time), and a changed region (the key layout's region index moves too).
    for (what, moves) in [("record", false), ("region", true)] {
        let host = format!("host-{what}");
        let uuid = lively
            .update(&Service::new("bench-changed", &host).with_region("ra"))
            .expect("register");
        let change = |i: usize| {
            let mut s = Service::new("bench-changed", &host).with_uuid(&uuid);
            if moves {
                s = s.with_region(if i % 2 == 0 { "rb" } else { "ra" });
            } else {
                s = s.with_region("ra");
                s.maintenance_note = format!("note {i}");
            }
            s
        };
        let m = interleave(
            p.rounds,
            p.writes,
            10,
            |i| timed(|| lively.update(&change(i)).expect("update changed")),
            |i| {
                let bytes = change(i).to_bytes();
                let key = format!("{RAW_PREFIX}changed");
                timed(|| raw.put(&key, bytes))
            },
        );
        let row = Row::ratio(
            &format!("update (changed {what}) vs raw put"),
            &m,
            Some(1.3),
        );
        progress(&row);
        rows.push(row);
        // The same request raw: the guarded transaction (record, UP and
        // DOWN key compares) with the same writes; what is left is ours.
        let mut floor = RawTxn::new(raw, what, lease);
        let m = interleave(
            p.rounds,
            p.writes / 2,
            10,
            |i| timed(|| lively.update(&change(i)).expect("update changed")),
            |i| {
                let bytes = change(i).to_bytes();
                timed(|| floor.changed(raw, bytes, moves.then_some(i % 2 == 0)))
            },
        );
        let writes = if moves { 3 } else { 1 };
        let row = Row::ratio(
            &format!("  …same vs raw txn: 3 compares, {writes} write(s)"),
            &m,
            None,
        );
        progress(&row);
        rows.push(row);
    }

    // An unchanged service: no write at all, timed against a raw get.
    let svc = Service::new("bench-same", "host-1").with_region("rs");
    let uuid = lively.update(&svc).expect("register");
    let svc = svc.with_uuid(&uuid);
    let record = format!("{r}by-uuid/{uuid}");
    let before = raw.revision();
    let m = interleave(
        p.rounds,
        p.writes,
        10,
        |_| timed(|| lively.update(&svc).expect("update unchanged")),
        |_| timed(|| raw.get(&record)),
    );
    let writes = raw.revision() - before;
    let row = Row::ratio("update (unchanged) vs raw get", &m, None);
    progress(&row);
    rows.push(row);
    let calls = (p.rounds * p.writes + 10) as i64;
    rows.push(Row::text(
        "  …etcd writes by unchanged updates",
        format!("{writes} writes in {calls} calls"),
        "0 writes",
        verdict(writes == 0),
    ));
    // New services, last: each one adds to the services this client owns.
    let new_svc = |i: usize| Service::new("bench-new", &format!("host-{i:06}")).with_region("rn");
    let m = interleave(
        p.rounds,
        p.writes,
        10,
        |i| timed(|| lively.update(&new_svc(i)).expect("update new")),
        |i| {
            let bytes = new_svc(i).to_bytes();
            let key = format!("{RAW_PREFIX}new/{i:06}");
            timed(|| raw.put(&key, bytes))
        },
    );
    let row = Row::ratio("update (new service) vs raw put", &m, Some(1.3));
    progress(&row);
    rows.push(row);
    let new_later = |i: usize| new_svc(i + 1_000_000);
    let mut new_floor = RawTxn::new(raw, "new", lease);
    let m = interleave(
        p.rounds,
        p.writes / 2,
        10,
        |i| timed(|| lively.update(&new_later(i)).expect("update new")),
        |i| {
            let bytes = new_later(i).to_bytes();
            timed(|| new_floor.create(raw, i, bytes))
        },
    );
    let row = Row::ratio("  …same vs raw txn: 4 compares, 4 puts", &m, None);
    progress(&row);
    rows.push(row);
}

/// The transactions os-lively sends for an update, written with raw
/// etcd-client on keys of its own: the floor for the same request.
pub(crate) struct RawTxn {
    dir: String,
    lease: i64,
    /// Mod revisions of the record and the UP key as last written.
    rec: i64,
    up: i64,
}

impl RawTxn {
    fn new(raw: &mut Raw, name: &str, lease: i64) -> RawTxn {
        let dir = format!("{RAW_PREFIX}floor/{name}/");
        let up_key = format!("{dir}up");
        let up = raw
            .rt
            .block_on(
                raw.c
                    .put(up_key, "", Some(PutOptions::new().with_lease(lease))),
            )
            .expect("raw up key")
            .header()
            .map_or(0, |h| h.revision());
        let rec = raw.put(&format!("{dir}rec"), Vec::new());
        RawTxn {
            dir,
            lease,
            rec,
            up,
        }
    }

    /// A changed record: compares on the record, UP and DOWN keys, the
    /// record put, and with `Some(flip)` the region index moved.
    fn changed(&mut self, raw: &mut Raw, record: Vec<u8>, region: Option<bool>) {
        use etcd_client::{Compare, CompareOp};
        let d = &self.dir;
        let compares = [
            Compare::mod_revision(format!("{d}rec"), CompareOp::Equal, self.rec),
            Compare::mod_revision(format!("{d}up"), CompareOp::Equal, self.up),
            Compare::mod_revision(format!("{d}down"), CompareOp::Equal, 0),
        ];
        let mut ops = vec![TxnOp::put(format!("{d}rec"), record, None)];
        if let Some(flip) = region {
            let (to, from) = if flip { ("rb", "ra") } else { ("ra", "rb") };
            ops.push(TxnOp::put(format!("{d}region/{to}/u"), "", None));
            ops.push(TxnOp::delete(format!("{d}region/{from}/u"), None));
        }
        let resp = raw
            .rt
            .block_on(raw.c.txn(Txn::new().when(compares).and_then(ops)))
            .expect("raw txn");
        assert!(resp.succeeded(), "raw floor txn lost its compares");
        self.rec = resp.header().map_or(0, |h| h.revision());
    }

    /// A new service: four absent keys compared, then the record, its
    /// type/host and region index keys, and its UP key on the lease.
    fn create(&mut self, raw: &mut Raw, i: usize, record: Vec<u8>) {
        use etcd_client::{Compare, CompareOp};
        let d = &self.dir;
        let keys = [
            format!("{d}new/rec/{i}"),
            format!("{d}new/up/{i}"),
            format!("{d}new/down/{i}"),
            format!("{d}new/th/{i}"),
        ];
        let compares: Vec<Compare> = keys
            .iter()
            .map(|k| Compare::mod_revision(k.as_str(), CompareOp::Equal, 0))
            .collect();
        let ops = vec![
            TxnOp::put(keys[0].as_str(), record, None),
            TxnOp::put(keys[3].as_str(), "u", None),
            TxnOp::put(format!("{d}new/region/{i}"), "", None),
            TxnOp::put(
                keys[1].as_str(),
                "",
                Some(PutOptions::new().with_lease(self.lease)),
            ),
        ];
        let resp = raw
            .rt
            .block_on(raw.c.txn(Txn::new().when(compares).and_then(ops)))
            .expect("raw txn");
        assert!(resp.succeeded(), "raw floor txn lost its compares");
    }
}

// The C ABI, called through its exported symbols exactly as C would (the
// functions live in private modules of `os_lively::capi`). Handles are
// opaque pointers (`lively_config *`, `lively_client *`); results are
// `lively_result` (`repr(u32)`, 0 = OK).
unsafe extern "C" {
    fn lively_config_new() -> *mut std::ffi::c_void;
    fn lively_config_free(config: *mut std::ffi::c_void);
    fn lively_config_set_endpoints(
        config: *mut std::ffi::c_void,
        endpoints: *const std::ffi::c_char,
    ) -> u32;
    fn lively_config_set_namespace(
        config: *mut std::ffi::c_void,
        name: *const std::ffi::c_char,
    ) -> u32;
    fn lively_config_set_status_ttl(config: *mut std::ffi::c_void, s: u64) -> u32;
    fn lively_client_connect(
        config: *const std::ffi::c_void,
        out: *mut *const std::ffi::c_void,
    ) -> u32;
    fn lively_client_is_up(
        client: *const std::ffi::c_void,
        uuid: *const std::ffi::c_char,
        up: *mut bool,
    ) -> u32;
    fn lively_client_free(client: *const std::ffi::c_void);
}

/// FFI overhead: `lively_client_is_up` vs `Client::is_up`, (a) with the
/// etcd round trip, (b) on a path without I/O (a malformed uuid, refused
/// before any I/O by both), which isolates the wrapper's own cost (an upper
/// bound: the error path also records the thread's last-error message).
pub(crate) fn ffi_rows(p: &Params, endpoint: &str, lively: &Client, rows: &mut Vec<Row>) {
    use std::ffi::CString;
    let uuid = lively
        .update(&Service::new("bench-ffi", "host-1"))
        .expect("register");
    let c_ep = CString::new(endpoint).expect("endpoint");
    let c_ns = CString::new(NAMESPACE).expect("namespace");
    let c_uuid = CString::new(uuid.as_str()).expect("uuid");
    let bad = "not-a-uuid";
    let c_bad = CString::new(bad).expect("bad uuid");
    // SAFETY: the documented C contract: a fresh config, NUL-terminated
    // strings that outlive the calls, an out pointer to a local.
    let client = unsafe {
        let cfg = lively_config_new();
        assert!(!cfg.is_null(), "lively_config_new");
        assert_eq!(lively_config_set_endpoints(cfg, c_ep.as_ptr()), 0);
        assert_eq!(lively_config_set_namespace(cfg, c_ns.as_ptr()), 0);
        assert_eq!(lively_config_set_status_ttl(cfg, TTL.as_secs()), 0);
        let mut client = std::ptr::null();
        assert_eq!(lively_client_connect(cfg, &mut client), 0, "connect");
        lively_config_free(cfg);
        client
    };
    let ffi_is_up = |u: &CString| {
        let mut up = false;
        // SAFETY: live client handle, NUL-terminated uuid, local out.
        let rc = unsafe { lively_client_is_up(client, u.as_ptr(), &mut up) };
        (rc, up)
    };
    assert_eq!(ffi_is_up(&c_uuid), (0, true), "lively_client_is_up");
    let m = interleave(
        p.rounds,
        p.reads,
        50,
        |_| timed(|| assert_eq!(ffi_is_up(&c_uuid), (0, true))),
        |_| timed(|| assert!(lively.is_up(&uuid).expect("is_up"))),
    );
    let diff = median(&m.lively) - median(&m.raw);
    let mut row = Row::ratio("FFI is_up vs Rust is_up (round trip)", &m, None);
    row.ratio = format!("{:+.1} µs", diff * 1e6);
    row.raw_med = format!("{} (Rust)", row.raw_med);
    progress(&row);
    rows.push(row);
    // No I/O: per-call times are sub-µs, so time batches of 100 calls.
    let batch = 100;
    let m = interleave(
        p.rounds,
        p.reads * 2,
        100,
        |_| {
            timed(|| {
                for _ in 0..batch {
                    assert_ne!(ffi_is_up(&c_bad).0, 0);
                }
            }) / batch
        },
        |_| {
            timed(|| {
                for _ in 0..batch {
                    assert!(lively.is_up(std::hint::black_box(bad)).is_err());
                }
            }) / batch
        },
    );
    let diff = median(&m.lively) - median(&m.raw);
    let mut row = Row::ratio("FFI vs Rust, no I/O (bad uuid), per call", &m, None);
    row.ratio = format!("{:+.2} µs", diff * 1e6);
    row.raw_med = format!("{} (Rust)", row.raw_med);
    row.target = "< 1 µs/call".into();
    row.met = verdict(diff < 1e-6);
    progress(&row);
    rows.push(row);
    // SAFETY: the handle from connect, freed once, no other user.
    unsafe { lively_client_free(client) };
}

/// The hand-off every blocking call pays on top of its etcd round trip:
/// `Client::ping` (no I/O) back to back, and isolated calls (2 ms apart, so
/// the runtime thread has gone to sleep in between).
pub(crate) fn handoff_rows(p: &Params, lively: &Client, rows: &mut Vec<Row>) {
    let n = if p.quick { 2_000 } else { 20_000 };
    let mut hot: Vec<f64> = (0..n)
        .map(|_| secs(timed(|| lively.ping().expect("ping"))))
        .collect();
    let mut cold: Vec<f64> = (0..n / 50)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(2));
            secs(timed(|| lively.ping().expect("ping")))
        })
        .collect();
    hot.sort_by(f64::total_cmp);
    cold.sort_by(f64::total_cmp);
    // The goal is the hand-off itself; an isolated call also wakes the
    // runtime thread from sleep (polling stops 1 ms after a call, so an
    // idle client costs no CPU), which no hand-off avoids.
    for (name, v, goal) in [
        (
            "hand-off, no I/O (Client::ping), back to back, call polling on",
            &hot,
            true,
        ),
        ("  …isolated (2 ms apart: the runtime asleep)", &cold, false),
    ] {
        let med = median(v);
        let mut row = if goal {
            Row::text(name, fmt_t(med), "≤ 10 µs median", verdict(med <= 10e-6))
        } else {
            Row::text(name, fmt_t(med), "-", "-".into())
        };
        row.p99 = fmt_t(p99(v));
        progress(&row);
        rows.push(row);
    }
}
