//! The good-citizen rows (issue #20): what a caller's process pays in CPU
//! per call against a raw etcd-client call, with the default settings and
//! with call polling opted in; how long the runtime thread is kept from
//! its keepalives while subscribers overflow and a full resync runs at
//! 100,000 services; what each extra subscription keeps per service.

use super::*;

/// CPU time of the whole process so far (every thread: the caller's, the
/// runtime's, the raw client's), as a host's `getrusage` sees it.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct we pass; no pointer is kept.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Calls `call` every `every` (on an absolute schedule) `n` times; returns
/// the process CPU per call and each call's latency.
fn paced(every: Duration, n: usize, mut call: impl FnMut()) -> (f64, Vec<f64>) {
    let mut lat = Vec::with_capacity(n);
    let cpu0 = cpu_time();
    let start = Instant::now();
    for i in 0..n {
        let due = start + every * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        lat.push(secs(timed(&mut call)));
    }
    let cpu = cpu_time() - cpu0;
    (cpu.as_secs_f64() / n as f64, lat)
}

/// CPU per call and latency of a remote `is_up` made every 1, 10 and 100
/// ms: os-lively with its defaults, os-lively with call polling opted in
/// (1 ms), and a raw etcd-client get, one after the other in rounds.
pub(super) fn cpu_rows(p: &Params, endpoint: &str, rows: &mut Vec<Row>) {
    let mut cfg = config(endpoint);
    cfg.status_ttl(Duration::from_secs(60));
    let default = Client::connect(&cfg).expect("connect");
    let mut polling = cfg.clone();
    polling.call_polling(Duration::from_millis(1));
    let polled = Client::connect(&polling).expect("connect");
    let uuid = default
        .update(&Service::new("bench-cpu", "host-1"))
        .expect("register");
    let record = format!("{}by-uuid/{uuid}", root(&cfg));
    let mut raw = Raw::connect(endpoint);
    let rounds = if p.quick { 2 } else { 3 };
    for (every, calls) in [
        (Duration::from_millis(1), if p.quick { 500 } else { 2_000 }),
        (Duration::from_millis(10), if p.quick { 100 } else { 300 }),
        (Duration::from_millis(100), if p.quick { 15 } else { 40 }),
    ] {
        let (mut cpu_d, mut cpu_p, mut cpu_r) = (Vec::new(), Vec::new(), Vec::new());
        let (mut lat_d, mut lat_p, mut lat_r) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (c, l) = paced(every, calls, || {
                assert!(default.is_up(&uuid).expect("is_up"));
            });
            cpu_d.push(c);
            lat_d.extend(l);
            let (c, l) = paced(every, calls, || {
                raw.get(&record);
            });
            cpu_r.push(c);
            lat_r.extend(l);
            let (c, l) = paced(every, calls, || {
                assert!(polled.is_up(&uuid).expect("is_up"));
            });
            cpu_p.push(c);
            lat_p.extend(l);
        }
        let ms = every.as_millis();
        for (name, cpu, lat, target) in [
            (
                format!("CPU per is_up, one every {ms} ms (default)"),
                &cpu_d,
                &lat_d,
                Some(1.2),
            ),
            (
                "  …call polling 1 ms (opt-in)".to_string(),
                &cpu_p,
                &lat_p,
                None,
            ),
        ] {
            let ratios: Vec<f64> = cpu.iter().zip(&cpu_r).map(|(a, b)| a / b).collect();
            let ratio = median(&ratios);
            let row = Row {
                name: name.clone(),
                med: fmt_t(median(cpu)),
                p99: "-".into(),
                raw_med: fmt_t(median(&cpu_r)),
                raw_p99: "-".into(),
                ratio: format!("{ratio:.2}×"),
                spread: Measured {
                    lively: vec![],
                    raw: vec![],
                    ratios,
                }
                .spread(),
                target: target.map_or("-".into(), |t| format!("≤ {t:.2}×")),
                met: target.map_or("-".into(), |t| verdict(ratio <= t)),
            };
            progress(&row);
            rows.push(row);
            let m = Measured {
                ratios: vec![median(lat) / median(&lat_r)],
                lively: lat.clone(),
                raw: lat_r.clone(),
            };
            // Polling earns its place only if it keeps a call near a raw one.
            let goal = (name.contains("polling") && ms == 1).then_some(1.10);
            let row = Row::ratio(
                &format!("  …latency of that is_up (every {ms} ms)"),
                &m,
                goal,
            );
            progress(&row);
            rows.push(row);
        }
    }
}

/// At `n` services: the longest the runtime thread is kept from its work
/// (a ping's answer, and the gap between keepalives beyond their period)
/// while 8 subscribers with small queues and slow consumers overflow over
/// and over under a stream of changes, and a full resync (the watch task
/// restarted: a re-read of every service) runs every few seconds. Then the
/// heap each extra subscription keeps.
pub(super) fn stall_rows(n: usize, endpoint: &str, raw: &mut Raw, rows: &mut Vec<Row>) {
    let mut cfg = config(endpoint);
    cfg.namespace("citizen")
        .expect("namespace")
        .status_ttl(Duration::from_secs(3))
        .request_timeout(Duration::from_secs(60));
    // Fill the namespace fast: records written raw, in transactions.
    let r = root(&cfg);
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let ops: Vec<TxnOp> = (i..(i + 100).min(n))
            .map(|j| {
                let s = Service::new(&format!("t{}", j % 20), &format!("h{j:06}"));
                let uuid = format!("{:032x}", j as u128 + 1);
                let s = s.with_uuid(&uuid);
                TxnOp::put(format!("{r}by-uuid/{uuid}"), s.to_bytes(), None)
            })
            .collect();
        raw.rt
            .block_on(raw.c.txn(Txn::new().and_then(ops)))
            .expect("fill");
        i += 100;
    }
    eprintln!(
        "bench: citizen: {n} records written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let client = Client::connect(&cfg).expect("connect");
    let own = client
        .update(&Service::new("keeper", "host-k"))
        .expect("register");
    let view = client.view().expect("view");
    assert!(view.len() >= n);

    // Memory: extra subscriptions over the whole namespace, nothing queued.
    let before = live_bytes();
    let extra: Vec<_> = (0..8)
        .map(|_| {
            client
                .subscribe(&Filter::all(), &SubscribeOptions::default())
                .expect("subscribe")
        })
        .collect();
    let per_sub = (live_bytes() - before) as f64 / extra.len() as f64;
    drop(extra);
    let per_service = per_sub / n as f64;
    let row = Row::text(
        &format!("memory per extra subscription at {n} services"),
        format!("{per_service:.1} B/service ({:.0} KiB)", per_sub / 1024.0),
        "≤ 100 B/service",
        verdict(per_service <= 100.0),
    );
    progress(&row);
    rows.push(row);

    // Eight slow subscribers with room for 16 events each.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let small = SubscribeOptions {
        queue_capacity: 16,
        ..Default::default()
    };
    let subs: Vec<_> = (0..8)
        .map(|_| {
            client
                .subscribe_callback(&Filter::all(), &small, |_e: &os_lively::Event| {
                    std::thread::sleep(Duration::from_micros(300));
                })
                .expect("subscribe")
        })
        .collect();
    // A stream of changes: one record rewritten after another.
    let writer = {
        let (stop, endpoint, r) = (stop.clone(), endpoint.to_string(), r.clone());
        std::thread::spawn(move || {
            let mut raw = Raw::connect(&endpoint);
            let mut j = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let uuid = format!("{:032x}", (j % n) as u128 + 1);
                let s = Service::new(&format!("t{}", j % 20), &format!("h{:06}", j % n))
                    .with_uuid(&uuid)
                    .with_region(if j % 2 == 0 { "a" } else { "b" });
                raw.put(&format!("{r}by-uuid/{uuid}"), s.to_bytes());
                j += 1;
            }
        })
    };
    let window = Duration::from_secs(20);
    let t0 = Instant::now();
    let mut worst_ping = Duration::ZERO;
    let mut last_beat = (client.stats().keepalives_sent, Instant::now());
    let mut worst_gap = Duration::ZERO;
    let mut next_resync = t0 + Duration::from_secs(2);
    let mut resyncs = 0;
    while t0.elapsed() < window {
        if Instant::now() >= next_resync {
            // As after a compaction: a full re-read, the model rebuilt and
            // every subscriber resynced.
            os_lively::inject_resync();
            resyncs += 1;
            next_resync += Duration::from_secs(5);
        }
        worst_ping = worst_ping.max(timed(|| client.ping().expect("ping")));
        let beats = client.stats().keepalives_sent;
        if beats != last_beat.0 {
            worst_gap = worst_gap.max(last_beat.1.elapsed());
            last_beat = (beats, Instant::now());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().expect("writer");
    let st = client.stats();
    drop(subs);
    assert!(
        client.is_up(&own).expect("is_up"),
        "the keeper lost its lease"
    );
    let period = Duration::from_secs(1); // TTL 3 s / 3
    let late = worst_gap.saturating_sub(period);
    for (name, v) in [
        (
            format!(
                "runtime stall at {n}: longest ping, 8 overflowing subscribers + {resyncs} full resyncs"
            ),
            worst_ping,
        ),
        (
            "  …longest keepalive gap beyond its 1 s period".to_string(),
            late,
        ),
    ] {
        let row = Row::text(
            &name,
            fmt_t(v.as_secs_f64()),
            "≤ 50 ms",
            verdict(v <= Duration::from_millis(50)),
        );
        progress(&row);
        rows.push(row);
    }
    eprintln!(
        "bench: citizen: {} resyncs counted, {} events delivered, {} task panics",
        st.resyncs, st.events_delivered, st.task_panics
    );
    drop(view);
    let _ = client.close();
}
