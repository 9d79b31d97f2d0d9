//! What an idle registered client costs etcd (`BENCH_ONLY=idle`).

use super::*;

/// What an idle registered client costs etcd, counted by etcd itself: one
/// service registered, three endpoints (one member listening on three
/// client URLs), TTL 60 s, nothing else asked. The baseline, on an etcd of
/// its own over the same window: raw etcd-client keeping one lease alive
/// every TTL/3 with one key on it.
pub(crate) fn idle_rows(p: &Params, rows: &mut Vec<Row>) {
    const IDLE_TTL: Duration = Duration::from_secs(60);
    // Whole keepalive periods (20 s) or nearly: a shorter window rounds the
    // baseline's one keepalive per period to zero or one.
    let window = if p.quick {
        Duration::from_secs(40)
    } else {
        Duration::from_secs(60)
    };
    let ours = Etcd::start_listening(3);
    let theirs = Etcd::start();
    let mut cfg = Config::new();
    cfg.endpoints(&ours.endpoints)
        .expect("endpoints")
        .namespace(NAMESPACE)
        .expect("namespace")
        .status_ttl(IDLE_TTL);
    let client = Client::connect(&cfg).expect("connect");
    client
        .update(&Service::new("idle", "h1"))
        .expect("register");
    // The raw baseline: a lease, a key on it, a keepalive every TTL/3.
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let raw_ep = theirs.endpoint.clone();
    let raw_thread = std::thread::spawn(move || {
        let rt = current_thread_rt();
        rt.block_on(async move {
            let mut c = etcd_client::Client::connect([raw_ep], None)
                .await
                .expect("raw connect");
            let lease = c
                .lease_grant(IDLE_TTL.as_secs() as i64, None)
                .await
                .expect("grant");
            c.put(
                format!("{RAW_PREFIX}idle"),
                "",
                Some(PutOptions::new().with_lease(lease.id())),
            )
            .await
            .expect("put");
            let (mut keeper, mut responses) =
                c.lease_keep_alive(lease.id()).await.expect("keepalive");
            // Opening the stream sent the first keepalive and took its answer.
            loop {
                tokio::time::sleep(IDLE_TTL / 3).await;
                if stop_rx.try_recv().is_ok() || keeper.keep_alive().await.is_err() {
                    return;
                }
                let _ = responses.message().await;
            }
        });
    });
    // Past registration, connection set-up and the first keepalive after
    // the registration (whose check of the lease's keys is a one-off).
    std::thread::sleep(IDLE_TTL / 3 + Duration::from_secs(2));
    let (ours0, theirs0) = (grpc_counters(ours.port), grpc_counters(theirs.port));
    std::thread::sleep(window);
    let (ours1, theirs1) = (grpc_counters(ours.port), grpc_counters(theirs.port));
    let _ = stop_tx.send(());
    drop(client);
    drop(raw_thread); // detached: ends at its next keepalive, or with the process
    let per_min = |a: f64, b: f64| (b - a) * 60.0 / window.as_secs_f64();
    let (calls, raw_calls) = (per_min(ours0.0, ours1.0), per_min(theirs0.0, theirs1.0));
    let (msgs, raw_msgs) = (per_min(ours0.1, ours1.1), per_min(theirs0.1, theirs1.1));
    // "About its keepalives": at most one message more per keepalive.
    let target = 2.0 * raw_msgs.max(3.0);
    for (name, v, raw, t) in [
        (
            "idle client, 3 endpoints, TTL 60 s: etcd calls/min",
            calls,
            raw_calls,
            None,
        ),
        (
            "idle client, 3 endpoints, TTL 60 s: etcd messages/min",
            msgs,
            raw_msgs,
            Some(target),
        ),
    ] {
        let row = Row {
            name: name.into(),
            med: format!("{v:.1}"),
            p99: "-".into(),
            raw_med: format!("{raw:.1}"),
            raw_p99: "-".into(),
            ratio: if raw > 0.0 {
                format!("{:.2}×", v / raw)
            } else {
                "-".into()
            },
            spread: format!("over {} s", window.as_secs()),
            target: t.map_or("-".into(), |t| format!("≤ {t:.0}/min")),
            met: t.map_or("-".into(), |t| verdict(v <= t)),
        };
        progress(&row);
        rows.push(row);
    }
}
