//! A fleet of 100,000 services (opt-in: `BENCH_SCALE=1`, or
//! `BENCH_SCALE=<services>`; `BENCH_ONLY=fleet` alone).

use super::*;

/// Clients registering the fleet, and threads per client.
pub(crate) const FLEET_CLIENTS: usize = 10;
pub(crate) const FLEET_THREADS: usize = 4;

/// Every key under `prefix` read with raw etcd-client the way os-lively
/// reads it (pages of `limit` keys at the first page's revision), since one
/// unpaged response of a large fleet passes gRPC's 4 MiB limit. Returns the
/// number of keys.
pub(crate) fn raw_paged(raw: &mut Raw, prefix: &str, keys_only: bool, limit: i64) -> usize {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1; // our prefixes end in '/'
    }
    let mut from = prefix.as_bytes().to_vec();
    let mut revision = 0;
    let mut n = 0;
    let mut kv = raw.c.kv_client().max_decoding_message_size(16 << 20);
    loop {
        let mut opts = GetOptions::new()
            .with_range(end.clone())
            .with_limit(limit)
            .with_revision(revision);
        if keys_only {
            opts = opts.with_keys_only();
        }
        let resp = raw
            .rt
            .block_on(kv.get(from.clone(), Some(opts)))
            .expect("raw paged range");
        if revision == 0 {
            revision = resp.header().map_or(0, |h| h.revision());
        }
        n += resp.kvs().len();
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return n,
        }
    }
}

/// `n` services registered from [`FLEET_CLIENTS`] clients, then every read
/// that once failed past ~18,000: list all and by each filter (beside the
/// raw paged reads they need), a view loaded and synced, and a
/// subscription's snapshot; with the view's and the subscription's memory
/// per service.
pub(crate) fn fleet_rows(n: usize, endpoint: &str, raw: &mut Raw, rows: &mut Vec<Row>) {
    let mut cfg = config(endpoint);
    cfg.namespace("fleet")
        .expect("namespace")
        .status_ttl(Duration::from_secs(60))
        .request_timeout(Duration::from_secs(60));
    // 1,000 services per region at 100,000, as issue 21 measures it.
    let regions = 100;
    let types = 20;
    let service = |i: usize| {
        Service::new(&format!("type-{}", i % types), &format!("host-{i:06}"))
            .with_region(&format!("r{}", i % regions))
    };
    let clients: Vec<Client> = (0..FLEET_CLIENTS)
        .map(|_| Client::connect(&cfg).expect("connect"))
        .collect();
    let start = Instant::now();
    std::thread::scope(|s| {
        for (c, client) in clients.iter().enumerate() {
            for t in 0..FLEET_THREADS {
                let slot = c * FLEET_THREADS + t;
                s.spawn(move || {
                    for i in (slot..n).step_by(FLEET_CLIENTS * FLEET_THREADS) {
                        client.update(&service(i)).expect("fleet update");
                    }
                });
            }
        }
    });
    let took = start.elapsed();
    let row = Row::text(
        &format!(
            "fleet: register {n} services ({FLEET_CLIENTS} clients × {FLEET_THREADS} threads)"
        ),
        format!(
            "{}, {:.0}/s",
            fmt_t(took.as_secs_f64()),
            n as f64 / took.as_secs_f64()
        ),
        "-",
        "-".into(),
    );
    progress(&row);
    rows.push(row);

    let reader = Client::connect(&cfg).expect("connect");
    let r = root(&cfg);
    let (records, up) = (format!("{r}by-uuid/"), format!("{r}by-status/UP/"));
    // Each list beside the raw reads it needs at least, timed alternately.
    let mut list_row = |name: &str,
                        filter: Filter,
                        expect: usize,
                        target: Option<f64>,
                        raw_read: &mut dyn FnMut(&mut Raw)| {
        let mut lively = Vec::new();
        let mut base = Vec::new();
        for round in 0..3 {
            let l = || {
                timed(|| {
                    let got = reader.list(&filter).expect("fleet list");
                    assert_eq!(got.len(), expect, "{name}: wrong count");
                })
            };
            if round % 2 == 0 {
                lively.push(secs(l()));
                base.push(secs(timed(|| raw_read(raw))));
            } else {
                base.push(secs(timed(|| raw_read(raw))));
                lively.push(secs(l()));
            }
        }
        let m = Measured {
            ratios: lively.iter().zip(&base).map(|(l, b)| l / b).collect(),
            lively,
            raw: base,
        };
        let row = Row::ratio(&format!("fleet: list {name} ({expect})"), &m, target);
        progress(&row);
        rows.push(row);
    };
    let scan = |raw: &mut Raw| {
        raw_paged(raw, &up, true, 5000);
        raw_paged(raw, &records, false, 2000);
    };
    list_row("all", Filter::all(), n, None, &mut { scan });
    list_row(
        "status=UP",
        Filter::all().status(os_lively::Status::Up),
        n,
        None,
        &mut { scan },
    );
    // The first list of a region reads every record and takes the census
    // (see src/store/census.rs) that the lists after it rely on for 60 s.
    let census = Instant::now();
    reader
        .list(&Filter::all().region("r3"))
        .expect("fleet region list");
    let census = census.elapsed();
    list_row(
        "region, beside the raw index + records",
        Filter::all().region("r3"),
        (0..n).filter(|i| i % regions == 3).count(),
        Some(1.3),
        &mut |raw: &mut Raw| {
            raw_region_list(raw, &r, "r3");
        },
    );
    // An index and the records and UP keys it names, in concurrent batches.
    let type_prefix = format!("{r}by-type-host/type-7/");
    list_row(
        "type",
        Filter::all().service_type("type-7"),
        (0..n).filter(|i| i % types == 7).count(),
        None,
        &mut |raw: &mut Raw| {
            raw_index_list(raw, &r, &type_prefix, true);
        },
    );
    let one = format!("{r}by-type-host/type-7/host-000007");
    list_row(
        "type+host",
        Filter::all().service_type("type-7").host("host-000007"),
        1,
        None,
        &mut |raw: &mut Raw| {
            raw_index_list(raw, &r, &one, true);
        },
    );

    let row = Row::text(
        "fleet: the first list of a region, which reads every record and takes the census",
        fmt_t(census.as_secs_f64()),
        "-",
        "-".into(),
    );
    progress(&row);
    rows.push(row);

    // A view: load + sync time, and its live heap per service.
    let before = live_bytes();
    let t = Instant::now();
    let view = reader.view().expect("fleet view");
    view.sync(Duration::from_secs(120))
        .expect("fleet view sync");
    let took = t.elapsed();
    let view_bytes = (live_bytes() - before).max(0) as f64 / n as f64;
    assert_eq!(view.len(), n);
    let raw_t = timed(|| scan(raw));
    let row = Row::text(
        "fleet: view() + sync",
        format!(
            "{} (raw paged read of records and UP keys: {}), {view_bytes:.0} B/service",
            fmt_t(took.as_secs_f64()),
            fmt_t(raw_t.as_secs_f64())
        ),
        "≤ 300 B/service",
        verdict(view_bytes <= 300.0),
    );
    progress(&row);
    rows.push(row);

    // A subscription with a snapshot of everything: time to its last
    // snapshot event, and what it keeps per service afterwards.
    let before = live_bytes();
    let t = Instant::now();
    let sub = reader
        .subscribe(
            &Filter::all(),
            &SubscribeOptions {
                snapshot: true,
                queue_capacity: n + 1024,
            },
        )
        .expect("fleet subscribe");
    let mut got = 0;
    while got < n {
        match sub
            .recv_timeout(Duration::from_secs(60))
            .expect("fleet events")
        {
            Some(e) if e.kind == EventKind::Existing => got += 1,
            Some(_) => {}
            None => panic!("fleet snapshot stopped after {got} of {n} events"),
        }
    }
    let took = t.elapsed();
    let sub_bytes = (live_bytes() - before).max(0) as f64 / n as f64;
    let row = Row::text(
        "fleet: subscribe with snapshot, all received",
        format!(
            "{}, {sub_bytes:.0} B/service kept by the subscription",
            fmt_t(took.as_secs_f64())
        ),
        "-",
        "-".into(),
    );
    progress(&row);
    rows.push(row);
    drop(sub);
    drop(view);
    drop(reader);
    for c in clients {
        let _ = c.close();
    }
}
