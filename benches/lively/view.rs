//! Scale and the local view: 10,000 services from one client (one lease,
//! RSS, a region listed), then the view's memory and is-up latency.

use super::*;

/// Scale: 10,000 services from one client (shared by threads), one lease,
/// RSS; then `list` of one region vs a raw range read of its index.
/// Returns the client, to keep its services UP for the rest of the run.
pub(crate) fn scale_rows(
    p: &Params,
    endpoint: &str,
    raw: &mut Raw,
    rss_start: u64,
    rows: &mut Vec<Row>,
) -> Client {
    let cfg = config(endpoint);
    let client = Client::connect(&cfg).expect("connect");
    let rss_connected = rss_kib();
    let regions = 10;
    let start = Instant::now();
    let uuids = std::thread::scope(|s| {
        let handles: Vec<_> = (0..p.scale_threads)
            .map(|t| {
                let client = client.clone();
                s.spawn(move || {
                    (t..p.scale)
                        .step_by(p.scale_threads)
                        .map(|i| {
                            let svc = Service::new("bench-scale", &format!("host-{i:05}"))
                                .with_region(&format!("r{}", i % regions));
                            let u = client.update(&svc).expect("scale update");
                            (u, Instant::now())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("scale thread"))
            .collect::<Vec<_>>()
    });
    let elapsed = start.elapsed();
    // Throughput of the first and the last tenth, to see it change with N.
    let mut done: Vec<f64> = uuids.iter().map(|(_, t)| secs(*t - start)).collect();
    done.sort_by(|a, b| a.total_cmp(b));
    let tenth = (done.len() / 10).max(1);
    let first_rate = tenth as f64 / done[tenth - 1];
    let last_rate = tenth as f64 / (done[done.len() - 1] - done[done.len() - 1 - tenth]);
    let uuids: Vec<String> = uuids.into_iter().map(|(u, _)| u).collect();
    let rss_after = rss_kib();
    let stats = client.stats();
    // Readers grant no lease: the first registration granted this one.
    let lease = stats.lease_id;
    // One lease: every UP key of these services carries the client's lease.
    let up = raw.prefix(&format!("{}by-status/UP/", root(&cfg)));
    let wanted: std::collections::HashSet<&str> = uuids.iter().map(String::as_str).collect();
    let mut leases = std::collections::BTreeSet::new();
    let mut up_keys = 0;
    for kv in up.kvs() {
        let key = String::from_utf8_lossy(kv.key());
        if let Some(u) = key.rsplit('/').next() {
            if wanted.contains(u) {
                up_keys += 1;
                leases.insert(kv.lease());
            }
        }
    }
    let one_lease = leases.len() == 1
        && leases.contains(&lease)
        && stats.lease_id == lease
        && stats.lease_regrants == 0
        && up_keys == p.scale;
    let rate = p.scale as f64 / elapsed.as_secs_f64();
    let name = format!(
        "register {} services ({} threads, 1 client)",
        p.scale, p.scale_threads
    );
    let row = Row::text(
        &name,
        format!(
            "{} total, {rate:.0}/s (first 10%: {first_rate:.0}/s, last 10%: {last_rate:.0}/s)",
            fmt_t(elapsed.as_secs_f64())
        ),
        "< 5 s",
        verdict(elapsed < Duration::from_secs(5)),
    );
    progress(&row);
    rows.push(row);
    rows.push(Row::text(
        "  …leases used by their UP keys",
        format!("{} lease(s), {up_keys} UP keys", leases.len()),
        "1 lease",
        verdict(one_lease),
    ));
    let abs = mib(rss_after);
    rows.push(Row::text(
        "  …process RSS start/connected/after",
        format!(
            "{:.1} / {:.1} / {abs:.1} MiB (client +{:.1} MiB)",
            mib(rss_start),
            mib(rss_connected),
            mib(rss_after.saturating_sub(rss_start))
        ),
        "< 30 MB",
        verdict(abs * 1.048_576 < 30.0),
    ));

    // list one region (scale/regions services) vs a raw range of its index.
    let region = "r3";
    let expect = (0..p.scale).filter(|i| i % regions == 3).count();
    let got = client.list(&Filter::all().region(region)).expect("list");
    assert_eq!(got.len(), expect, "list by region returned a wrong count");
    let r = root(&cfg);
    assert_eq!(raw_region_list(raw, &r, region), expect);
    let m = interleave(
        p.rounds,
        p.lists,
        2,
        |_| timed(|| client.list(&Filter::all().region(region)).expect("list")),
        |_| timed(|| raw_region_list(raw, &r, region)),
    );
    let row = Row::ratio(
        &format!(
            "list region ({expect} of {} svcs) vs raw index + records",
            p.scale
        ),
        &m,
        Some(1.3),
    );
    progress(&row);
    rows.push(row);
    client
}

/// A region listed with raw etcd-client the way a careful user would: the
/// region index (keys only), then every record and UP key it names, in
/// concurrent transactions of 60 services (two gets each) at the index's
/// revision. Returns how many records it read.
pub(crate) fn raw_region_list(raw: &mut Raw, root: &str, region: &str) -> usize {
    raw_index_list(raw, root, &format!("{root}by-region/{region}/"), false)
}

/// The local view over the scale test's services: memory per service, and
/// is-up latency from 1, 2 and 8 reader threads beside the raw get it
/// replaces.
pub(crate) fn view_rows(p: &Params, client: &Client, raw: &mut Raw, rows: &mut Vec<Row>) {
    let before = rss_kib();
    let heap_before = live_heap();
    let view = client.view().expect("view");
    view.sync(WAIT).expect("view sync");
    let after = rss_kib();
    let heap = (live_heap() - heap_before).max(0) as u64;
    let n = view.len().max(1);
    let rss_per = after.saturating_sub(before) * 1024 / n as u64;
    rows.push(Row::text(
        "view: memory for the copy",
        format!(
            "{n} services, +{:.1} MiB RSS (~{rss_per} B/service), heap kept +{:.1} MiB (~{} B/service)",
            mib(after.saturating_sub(before)),
            mib(heap / 1024),
            heap / n as u64
        ),
        "≤ 300 B/service (heap)",
        // Judged on the heap kept: RSS also moves with what the allocator
        // returns to the OS (the view trims it after a load), so it can
        // even shrink.
        verdict(heap / n as u64 <= 300),
    ));
    let uuids: Vec<String> = view
        .list(&Filter::all())
        .expect("view list")
        .into_iter()
        .take(1000)
        .map(|i| i.service.uuid)
        .collect();
    let blocks = if p.quick { 200 } else { 2000 };
    let measure = |threads: usize| {
        per_call_in_threads(threads, blocks, |t, n| {
            let u = &uuids[(t * 7919 + n) % uuids.len()];
            std::hint::black_box(view.is_up(u).expect("view is_up"));
        })
    };
    let record = format!("{}by-uuid/{}", root(client.config()), uuids[0]);
    let raw_samples: Vec<f64> = (0..200).map(|_| secs(timed(|| raw.get(&record)))).collect();
    for threads in [1, 2, 8] {
        let (samples, allocs) = measure(threads);
        let m = Measured {
            ratios: vec![median(&samples) / median(&raw_samples)],
            lively: samples,
            raw: raw_samples.clone(),
        };
        let mut row = Row::ratio(
            &format!("view is_up, {threads} reader thread(s) vs raw get"),
            &m,
            None,
        );
        row.ratio = format!("{:.5}×", m.ratio());
        row.target = "≤ 100 ns, p99 < 1 µs".into();
        row.met = verdict(median(&m.lively) <= 100e-9 && p99(&m.lively) < 1e-6 && allocs == 0);
        row.spread = format!("{allocs} allocs");
        progress(&row);
        rows.push(row);
    }
}
