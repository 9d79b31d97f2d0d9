//! Notification, crash detection and heartbeat deadlines: a change or a
//! death → the subscriber's callback, against a raw watch.

use super::*;

/// What the library callback saw: (uuid, kind, reason, when entered).
pub(crate) type Seen = (String, EventKind, Option<DownReason>, Instant);

pub(crate) fn wait_event(
    rx: &mpsc::Receiver<Seen>,
    what: impl Fn(&Seen) -> bool,
    timeout: Duration,
) -> Option<Seen> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match rx.recv_timeout(left) {
            Ok(ev) if what(&ev) => return Some(ev),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

pub(crate) fn wait_raw(
    rx: &mpsc::Receiver<RawEvent>,
    key: &str,
    put: bool,
    timeout: Duration,
) -> Option<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match rx.recv_timeout(left) {
            Ok((k, p, t)) if k == key && p == put => return Some(t),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

pub(crate) fn drain<T>(rx: &mpsc::Receiver<T>) {
    while rx.try_recv().is_ok() {}
}

/// Notification latency: writer's `update()` called → subscriber's callback
/// entered, vs raw put called → raw watch event received.
pub(crate) fn notify_rows(
    p: &Params,
    endpoint: &str,
    events: &mpsc::Receiver<Seen>,
    raw: &mut Raw,
    raw_events: &mpsc::Receiver<RawEvent>,
    rows: &mut Vec<Row>,
) {
    let writer = Client::connect(&config(endpoint)).expect("connect writer");
    let uuid = writer
        .update(&Service::new("bench-notify", "host-1").with_region("ra"))
        .expect("register");
    // A changed record (a new note each time), and a changed region.
    let svc = |i: usize| {
        let mut s = Service::new("bench-notify", "host-1")
            .with_uuid(&uuid)
            .with_region("ra");
        s.maintenance_note = format!("note {i}");
        s
    };
    let moved = |i: usize| {
        Service::new("bench-notify", "host-1")
            .with_uuid(&uuid)
            .with_region(if i % 2 == 0 { "rb" } else { "ra" })
    };
    let raw_key = format!("{RAW_PREFIX}watch/notify");
    for (name, target, change) in [
        (
            "notify: update() (changed record) → callback",
            Some(1.2),
            &svc as &dyn Fn(usize) -> Service,
        ),
        ("  …update() (changed region) → callback", None, &moved),
    ] {
        let m = interleave(
            p.rounds,
            p.notifies,
            5,
            |i| {
                let s = change(i);
                drain(events);
                let t0 = Instant::now();
                writer.update(&s).expect("update");
                let (_, _, _, t) =
                    wait_event(events, |e| e.0 == uuid, WAIT).expect("no notification");
                t - t0
            },
            |i| {
                let bytes = change(i).to_bytes();
                drain(raw_events);
                let t0 = Instant::now();
                raw.put(&raw_key, bytes);
                let t = wait_raw(raw_events, &raw_key, true, WAIT).expect("no raw watch event");
                t - t0
            },
        );
        let row = Row::ratio(name, &m, target);
        progress(&row);
        rows.push(row);
    }
    // The notification path alone: the same single raw put of the record
    // (from another connection) → callback, vs raw put → raw watch event.
    let mut raw2 = Raw::connect(endpoint);
    let record = format!("{}by-uuid/{uuid}", root(writer.config()));
    let m = interleave(
        p.rounds,
        p.notifies,
        5,
        |i| {
            // A fresh note each time, so every put is a change.
            let mut s = svc(i);
            s.maintenance_note = format!("raw put {i}");
            let bytes = s.to_bytes();
            drain(events);
            let t0 = Instant::now();
            raw2.put(&record, bytes);
            let (_, _, _, t) = wait_event(events, |e| e.0 == uuid, WAIT).expect("no notification");
            t - t0
        },
        |i| {
            let bytes = svc(i).to_bytes();
            drain(raw_events);
            let t0 = Instant::now();
            raw.put(&raw_key, bytes);
            let t = wait_raw(raw_events, &raw_key, true, WAIT).expect("no raw watch event");
            t - t0
        },
    );
    let row = Row::ratio("  …raw put of the record → callback", &m, None);
    progress(&row);
    rows.push(row);
    drop(writer);
}

pub(crate) fn cli_path() -> PathBuf {
    if let Ok(p) = std::env::var("OSLIVELY_BIN") {
        return PathBuf::from(p);
    }
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    target.join("release").join("oslively")
}

/// Crash detection: SIGKILL a registered `oslively register` → DOWN
/// (expired) event, minus the TTL; raw floor: a lease whose keepalives stop
/// at a random phase → the key's delete event, minus the TTL.
pub(crate) fn crash_rows(
    p: &Params,
    endpoint: &str,
    events: &mpsc::Receiver<Seen>,
    raw: &mut Raw,
    raw_events: &mpsc::Receiver<RawEvent>,
    rows: &mut Vec<Row>,
) -> Vec<f64> {
    let interval_ms = TTL.as_millis() as u64 / 3;
    let ttl = TTL.as_secs_f64();
    let cli = cli_path();
    let mut lively = Vec::new();
    let mut note = String::new();
    if cli.exists() {
        for rep in 0..p.crashes {
            let mut child = Command::new(&cli)
                .args(["register", "-o", "table", "--type", "bench-crash", "--host"])
                .arg(format!("host-{}-{rep}", std::process::id()))
                .env("OSLIVELY_ETCD_ENDPOINTS", endpoint)
                .env("OSLIVELY_ETCD_KEY_NAMESPACE", NAMESPACE)
                .env("OSLIVELY_STATUS_TTL", TTL.as_secs().to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn oslively");
            let mut line = String::new();
            BufReader::new(child.stdout.take().expect("stdout"))
                .read_line(&mut line)
                .expect("read uuid");
            let uuid = line
                .trim()
                .strip_prefix("uuid ")
                .unwrap_or_else(|| panic!("oslively printed {line:?}"))
                .to_string();
            // Kill at a random phase of its keepalive cycle.
            std::thread::sleep(Duration::from_millis(
                interval_ms + rand::random::<u64>() % interval_ms,
            ));
            drain(events);
            let t_kill = Instant::now();
            child.kill().expect("SIGKILL");
            let _ = child.wait();
            let ev = wait_event(
                events,
                |e| e.0 == uuid && e.1 == EventKind::Down,
                TTL * 3 + WAIT,
            )
            .expect("no DOWN event after SIGKILL");
            if ev.2 != Some(DownReason::Expired) {
                note = format!(" (reason {:?}!)", ev.2);
            }
            lively.push(secs(ev.3 - t_kill) - ttl);
        }
    }
    let mut base = Vec::new();
    for rep in 0..p.crashes {
        let key = format!("{RAW_PREFIX}watch/crash-{rep}");
        let rt = &raw.rt;
        let c = &mut raw.c;
        let id = rt
            .block_on(c.lease_grant(TTL.as_secs() as i64, None))
            .expect("grant")
            .id();
        rt.block_on(c.put(key.as_str(), "", Some(PutOptions::new().with_lease(id))))
            .expect("put");
        let (mut keeper, mut stream) = rt.block_on(c.lease_keep_alive(id)).expect("keepalive");
        rt.block_on(async {
            keeper.keep_alive().await.expect("keepalive");
            stream.message().await.expect("keepalive answer");
        });
        std::thread::sleep(Duration::from_millis(rand::random::<u64>() % interval_ms));
        drain(raw_events);
        let t_stop = Instant::now();
        drop((keeper, stream));
        let t = wait_raw(raw_events, &key, false, TTL * 3 + WAIT).expect("no raw delete");
        base.push(secs(t - t_stop) - ttl);
    }
    let row = if lively.is_empty() {
        Row::text(
            "crash → DOWN, minus TTL",
            format!("n/a ({} not built)", cli.display()),
            "p99 ≤ +0.300 s",
            "n/a".into(),
        )
    } else {
        let worst = p99(&lively);
        Row {
            name: format!("crash → DOWN event, minus TTL ({} reps)", lively.len()),
            med: fmt_t(median(&lively)),
            p99: fmt_t(worst),
            raw_med: fmt_t(median(&base)),
            raw_p99: fmt_t(p99(&base)),
            ratio: format!("{:+.0} ms", (median(&lively) - median(&base)) * 1e3),
            spread: format!(
                "{}…{}",
                fmt_t(sorted(&lively)[0]),
                fmt_t(*sorted(&lively).last().unwrap_or(&f64::NAN))
            ),
            target: "p99 ≤ +0.300 s".into(),
            met: format!("{}{note}", verdict(worst <= 0.3)),
        }
    };
    progress(&row);
    rows.push(row);
    lively
}

/// Heartbeat deadlines. (a) A check-in's cost: no I/O, so per-call time
/// from blocks of 100 calls, 1 and 8 threads, heap allocations counted.
/// (b) A missed deadline → DOWN (missed) event at another client, minus
/// D, over at least 10 repetitions (the owner stops at a random phase),
/// against the lease-expiry path of this same run (`expiry`: SIGKILL →
/// DOWN event, minus the TTL, from [`crash_rows`]).
pub(crate) fn heartbeat_rows(
    p: &Params,
    endpoint: &str,
    events: &mpsc::Receiver<Seen>,
    raw: &mut Raw,
    expiry: &[f64],
    rows: &mut Vec<Row>,
) {
    let owner = Client::connect(&config(endpoint)).expect("connect");
    let d = Duration::from_secs(1);
    let host = format!("host-{}", std::process::id());
    let uuid = owner
        .update(&Service::new("bench-heartbeat", &host).with_heartbeat(d))
        .expect("register with a heartbeat");
    let blocks = if p.quick { 200 } else { 2000 };
    let record = format!("{}by-uuid/{uuid}", root(owner.config()));
    let raw_samples: Vec<f64> = (0..200).map(|_| secs(timed(|| raw.get(&record)))).collect();
    for threads in [1, 8] {
        let (samples, allocs) = per_call_in_threads(threads, blocks, |_, _| {
            owner.heartbeat(&uuid).expect("check-in");
        });
        let m = Measured {
            ratios: vec![median(&samples) / median(&raw_samples)],
            lively: samples,
            raw: raw_samples.clone(),
        };
        let mut row = Row::ratio(
            &format!("heartbeat check-in, {threads} thread(s) vs raw get"),
            &m,
            None,
        );
        row.ratio = format!("{:.5}×", m.ratio());
        row.target = "≤ 50 ns, 0 allocs".into();
        row.met = verdict(median(&m.lively) <= 50e-9 && allocs == 0);
        row.spread = format!("{allocs} allocs");
        progress(&row);
        rows.push(row);
    }

    let mut missed = Vec::new();
    let mut back = Vec::new();
    let mut note = String::new();
    // At least 10 repetitions, also in quick mode (each takes about D).
    for _ in 0..p.crashes.max(10) {
        // Check in every 10 ms for a random while, then stop.
        let run = Duration::from_millis(100 + rand::random::<u64>() % 300);
        let t0 = Instant::now();
        let mut last = t0;
        drain(events);
        while t0.elapsed() < run {
            owner.heartbeat(&uuid).expect("check-in");
            last = Instant::now();
            std::thread::sleep(Duration::from_millis(10));
        }
        let ev = wait_event(events, |e| e.0 == uuid && e.1 == EventKind::Down, d + WAIT)
            .expect("no DOWN event after the owner stopped checking in");
        if ev.2 != Some(DownReason::Missed) {
            note = format!(" (reason {:?}!)", ev.2);
        }
        missed.push(secs(ev.3 - last) - d.as_secs_f64());
        let t_back = Instant::now();
        owner.heartbeat(&uuid).expect("check-in");
        let ev = wait_event(events, |e| e.0 == uuid && e.1 == EventKind::Up, WAIT)
            .expect("no UP event after the check-in");
        back.push(secs(ev.3 - t_back));
    }
    let worst = p99(&missed);
    let row = Row {
        name: format!(
            "missed deadline → DOWN event, minus D ({} reps) vs lease expiry minus TTL",
            missed.len()
        ),
        med: fmt_t(median(&missed)),
        p99: fmt_t(worst),
        raw_med: if expiry.is_empty() {
            "n/a".into()
        } else {
            fmt_t(median(expiry))
        },
        raw_p99: if expiry.is_empty() {
            "n/a".into()
        } else {
            fmt_t(p99(expiry))
        },
        ratio: if expiry.is_empty() {
            "-".into()
        } else {
            format!("{:.2}×", worst / p99(expiry))
        },
        spread: format!(
            "{}…{}",
            fmt_t(sorted(&missed)[0]),
            fmt_t(*sorted(&missed).last().unwrap_or(&f64::NAN))
        ),
        target: "p99 ≤ +0.100 s".into(),
        met: format!("{}{note}", verdict(worst <= 0.1)),
    };
    progress(&row);
    rows.push(row);
    rows.push(Row::text(
        "check-in after a miss → UP event",
        format!("median {}, p99 {}", fmt_t(median(&back)), fmt_t(p99(&back))),
        "-",
        "-".into(),
    ));
    let _ = owner.close();
}
