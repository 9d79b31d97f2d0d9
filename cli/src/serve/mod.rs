//! `oslively serve`: what operators look at. One process, fed by a view (the
//! state) and a subscription (the events) of one read-only client, so no
//! request costs an etcd round trip:
//!
//! - `/metrics`: Prometheus / OpenMetrics text (`metrics.rs`);
//! - `/`: a live status page (`assets/`), updated over Server-Sent Events;
//! - `/api/services` (JSON, the CLI's field names), `/api/events` (SSE, one
//!   `watch -o json` document per message);
//! - `/healthz`: 200 while the view is connected and caught up, else 503.
//!
//! Read-only: every route answers GET (and HEAD) only; anything else is a
//! 4xx. It binds loopback unless `--listen` says otherwise; TLS and
//! authentication belong to a reverse proxy in front (see docs/operators.md).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Args;
use os_lively::{
    Client, EventKind, Filter, ServiceInfo, StalePolicy, Status, SubscribeOptions, View,
};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::conn::Conn;
use crate::output::{event_json, info_json, why_down};
use crate::{EXIT_ETCD, Failure, Outcome};

mod metrics;

pub(crate) const AFTER_HELP: &str = "Examples:\n  oslively serve                          # http://127.0.0.1:9478/\n  \
    oslively serve --listen 0.0.0.0:9478    # every interface: put a proxy with TLS and auth in front\n\n\
    Routes (GET only): /  /metrics  /api/services  /api/events (SSE)  /healthz\n\
    The process reads etcd through one watch; requests never reach etcd.";

/// Events the page shows on load ("the last events").
const RECENT: usize = 100;
/// Messages an SSE client may fall behind before it is told to reload.
const SSE_BUFFER: usize = 4096;

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// Address and port to listen on; the default answers this machine only
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9478")]
    listen: SocketAddr,
}

/// What every request reads; written by the event thread and the health task.
pub(crate) struct Shared {
    view: View,
    client: Client,
    /// The last events, newest last, as sent over SSE.
    recent: Mutex<VecDeque<Arc<str>>>,
    /// When each service last changed, as seen by this process (seconds since
    /// the epoch); services unchanged since start have none.
    last_change: Mutex<HashMap<String, f64>>,
    /// Every service by uuid, kept from the subscription (its snapshot, then
    /// its events), shared by reference: a scrape takes it in one pass of
    /// pointer copies instead of a list of the view, which copies every
    /// record.
    tracked: Mutex<Tracked>,
    /// The last scrape's fleet families and the `Tracked::generation` they
    /// show: an unchanged fleet is not encoded again.
    pub(crate) fleet_text: Mutex<Option<(u64, axum::body::Bytes)>>,
    /// SSE messages: (event name, JSON data); the name "" is the default.
    tx: broadcast::Sender<(&'static str, Arc<str>)>,
    /// Since when the view has been disconnected; None while connected.
    stale_since: Mutex<Option<Instant>>,
}

/// Every service by uuid, and a count of the events applied to it.
#[derive(Default)]
struct Tracked {
    services: BTreeMap<String, Arc<ServiceInfo>>,
    generation: u64,
}

/// A poisoned lock only means a panicking thread held it; the data (plain
/// maps and queues) is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Shared {
    fn connected(&self) -> bool {
        self.view.is_connected()
    }

    /// Seconds the view has been disconnected (0 while connected).
    pub(crate) fn stale_seconds(&self) -> f64 {
        lock(&self.stale_since).map_or(0.0, |t| t.elapsed().as_secs_f64())
    }

    /// One subscription event: remembered, timestamped, broadcast.
    fn on_event(&self, e: &os_lively::Event) {
        let now = unix_now();
        {
            // Services and their last changes move together under this
            // lock, so a scrape never pairs a generation with older times.
            let mut tracked = lock(&self.tracked);
            tracked.generation += 1;
            match (e.kind, &e.service, e.new_status) {
                (EventKind::Removed, _, _) => {
                    tracked.services.remove(&e.uuid);
                }
                (_, Some(service), Some(status)) => {
                    let info = ServiceInfo {
                        service: service.clone(),
                        up: status == Status::Up,
                        // A snapshot cannot tell; a DOWN event says so.
                        closed: e.kind == EventKind::Down
                            && e.reason == Some(os_lively::DownReason::Closed),
                    };
                    tracked.services.insert(e.uuid.clone(), Arc::new(info));
                }
                _ => {}
            }
            if e.kind == EventKind::Existing {
                // The subscription's snapshot: state, not news.
                return;
            }
            if !e.uuid.is_empty() {
                let mut changes = lock(&self.last_change);
                if e.kind == EventKind::Removed {
                    changes.remove(&e.uuid);
                } else {
                    changes.insert(e.uuid.clone(), now);
                }
            }
        }
        let mut v = event_json(e);
        if let Value::Object(m) = &mut v {
            m.insert("time".into(), json!(now));
            // The service's state after the event, with its why, so the page
            // needs no rules of its own.
            m.insert("why".into(), json!(event_why(e)));
        }
        let text: Arc<str> = v.to_string().into();
        {
            let mut recent = lock(&self.recent);
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(text.clone());
        }
        // No receiver (no page open) is fine.
        let _ = self.tx.send(("", text));
    }

    fn services(&self, filter: &Filter) -> Result<Vec<ServiceInfo>, os_lively::Error> {
        let mut found = self.view.list(filter)?;
        found.sort_by(|x, y| {
            (&x.service.service_type, &x.service.region, &x.service.host).cmp(&(
                &y.service.service_type,
                &y.service.region,
                &y.service.host,
            ))
        });
        Ok(found)
    }

    pub(crate) fn last_changes(&self) -> HashMap<String, f64> {
        lock(&self.last_change).clone()
    }

    /// Every service, by uuid, and when they came from the subscription's
    /// copy, its generation: from that copy when it holds as many as the
    /// view (it may trail by an event or two), else (while its snapshot is
    /// still arriving) from the view. Last changes ride along.
    #[allow(clippy::type_complexity)]
    pub(crate) fn all(
        &self,
    ) -> Result<(Vec<Arc<ServiceInfo>>, Option<u64>, HashMap<String, f64>), os_lively::Error> {
        {
            let tracked = lock(&self.tracked);
            if tracked.services.len() == self.view.len() {
                return Ok((
                    tracked.services.values().cloned().collect(),
                    Some(tracked.generation),
                    self.last_changes(),
                ));
            }
        }
        let all = self.view.list(&Filter::all())?;
        Ok((
            all.into_iter().map(Arc::new).collect(),
            None,
            self.last_changes(),
        ))
    }
}

/// Why the service is DOWN (or `lifted` when an event brought it back UP)
/// after an event; null while UP for any other reason.
fn event_why(e: &os_lively::Event) -> Option<&'static str> {
    match e.new_status {
        Some(Status::Up) => (e.reason == Some(os_lively::DownReason::Lifted)).then_some("lifted"),
        Some(Status::Down) => match (e.kind, e.reason) {
            (EventKind::Down, Some(r)) => Some(crate::output::reason_name(r)),
            _ => e.service.as_ref().and_then(|s| {
                why_down(&ServiceInfo {
                    service: s.clone(),
                    up: false,
                    closed: false,
                })
            }),
        },
        None => None,
    }
}

pub(crate) fn run(conn: &Conn, args: ServeArgs) -> Outcome {
    // A reader: it never registers anything, so it grants no lease.
    let client = conn.connect()?;
    let mut view = client.view()?;
    // Serve the last known state while cut off; /healthz and the page say so.
    view.set_stale_policy(StalePolicy::Serve);
    // With a snapshot, to keep `tracked`; room for a whole fleet's snapshot.
    let options = SubscribeOptions {
        snapshot: true,
        queue_capacity: 1 << 18,
    };
    let sub = client.subscribe(&Filter::all(), &options)?;
    let (tx, _) = broadcast::channel(SSE_BUFFER);
    let shared = Arc::new(Shared {
        view,
        client: client.clone(),
        recent: Mutex::new(VecDeque::with_capacity(RECENT)),
        last_change: Mutex::new(HashMap::new()),
        tracked: Mutex::new(Tracked::default()),
        fleet_text: Mutex::new(None),
        tx,
        stale_since: Mutex::new(None),
    });
    {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("serve-events".into())
            .spawn(move || {
                for e in &sub {
                    shared.on_event(&e);
                }
            })
            .map_err(|e| Failure {
                code: EXIT_ETCD,
                message: format!("starting the event thread: {e}"),
            })?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("serve-http")
        .enable_all()
        .build()
        .map_err(|e| Failure {
            code: EXIT_ETCD,
            message: format!("starting the HTTP runtime: {e}"),
        })?;
    let result = runtime.block_on(serve(shared, args.listen));
    let closed = client.close();
    result?;
    closed?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(shared: Arc<Shared>, listen: SocketAddr) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Failure {
            code: EXIT_ETCD,
            message: format!("--listen {listen}: {e}"),
        })?;
    let bound = listener.local_addr().unwrap_or(listen);
    // The tests (and scripts) read this line to find an ephemeral port.
    crate::print(&format!("listening on http://{bound}/"));
    tokio::spawn(watch_health(shared.clone()));
    let app = router(shared);
    let server = axum::serve(listener, app);
    tokio::select! {
        r = server => r.map_err(|e| Failure { code: EXIT_ETCD, message: format!("serving: {e}") }),
        () = stop_signal() => Ok(()),
    }
}

/// SIGINT or SIGTERM: stop (open SSE streams would hold a graceful stop).
async fn stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

/// Tracks when the view lost its watch, and tells the pages when that changes.
async fn watch_health(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut was = true;
    loop {
        tick.tick().await;
        let now = shared.connected();
        {
            let mut since = lock(&shared.stale_since);
            match (now, *since) {
                (true, Some(_)) => *since = None,
                (false, None) => *since = Some(Instant::now()),
                _ => {}
            }
        }
        if now != was {
            was = now;
            let _ = shared
                .tx
                .send(("health", health_json(&shared).to_string().into()));
        }
    }
}

fn health_json(shared: &Shared) -> Value {
    json!({
        "connected": shared.connected(),
        "revision": shared.view.revision(),
        "stale_seconds": shared.stale_seconds(),
    })
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
        .route("/metrics", get(metrics_route))
        .route("/api/services", get(api_services))
        .route("/api/events", get(api_events))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .layer(axum::middleware::map_response(common_headers))
        .with_state(shared)
}

async fn common_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    r
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such page")
}

fn error(code: StatusCode, message: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// The query `?a=b&c=d`, decoded; only the `allowed` names are accepted.
/// The error is the 400 answer's text.
fn parse_query(raw: Option<&str>, allowed: &[&str]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (percent_decode(k), percent_decode(v)) else {
            return Err("bad percent-encoding in the query".to_string());
        };
        if !allowed.contains(&k.as_str()) {
            return Err(if allowed.is_empty() {
                format!("unknown parameter {k:?} (this route takes none)")
            } else {
                format!("unknown parameter {k:?} (known: {})", allowed.join(", "))
            });
        }
        out.push((k, v));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

const PAGE: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

async fn app_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

async fn app_css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS).into_response()
}

async fn metrics_route(State(shared): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    if let Err(m) = parse_query(q.as_deref(), &[]) {
        return error(StatusCode::BAD_REQUEST, &m);
    }
    // O(fleet) work: off the async workers.
    let started = Instant::now();
    match tokio::task::spawn_blocking(move || metrics::render(&shared)).await {
        Ok(Ok((fleet, own, reused))) => (
            [
                (
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8".to_string(),
                ),
                // How long the exposition took to build, in milliseconds,
                // and whether the fleet's part was reused (no event since
                // the last scrape).
                (
                    header::HeaderName::from_static("server-timing"),
                    format!(
                        "render;dur={:.1};desc=\"{}\"",
                        started.elapsed().as_secs_f64() * 1e3,
                        if reused { "reused" } else { "fresh" }
                    ),
                ),
                (
                    header::CONTENT_LENGTH,
                    (fleet.len() + own.len()).to_string(),
                ),
            ],
            // Two chunks: the (possibly cached) fleet's text is not copied.
            axum::body::Body::from_stream(tokio_stream::iter([
                Ok::<_, Infallible>(fleet),
                Ok(axum::body::Bytes::from(own)),
            ])),
        )
            .into_response(),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the scrape failed"),
    }
}

async fn api_services(State(shared): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let params = match parse_query(q.as_deref(), &["type", "host", "region", "status", "uuid"]) {
        Ok(p) => p,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let mut filter = Filter::all();
    for (k, v) in params {
        match k.as_str() {
            "type" => filter.service_type = Some(v),
            "host" => filter.host = Some(v),
            "region" => filter.region = Some(v),
            "uuid" => filter.uuid = Some(v),
            _ => match crate::parse_status(&v) {
                Ok(s) => filter.status = Some(s),
                Err(m) => return error(StatusCode::BAD_REQUEST, &format!("status: {m}")),
            },
        }
    }
    let revision = shared.view.revision();
    let result = tokio::task::spawn_blocking(move || {
        shared
            .services(&filter)
            .map(|found| Value::Array(found.iter().map(info_json).collect()).to_string())
    })
    .await;
    match result {
        Ok(Ok(body)) => (
            [
                (header::CONTENT_TYPE, "application/json".to_string()),
                (
                    header::HeaderName::from_static("x-oslively-revision"),
                    revision.to_string(),
                ),
            ],
            body,
        )
            .into_response(),
        Ok(Err(e)) if e.kind() == os_lively::ErrorKind::InvalidArgument => {
            error(StatusCode::BAD_REQUEST, e.message())
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.message()),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "listing failed"),
    }
}

/// SSE: each message's data is one event as `watch -o json` prints it (plus
/// `time` and `why`). With `?snapshot=1` the stream starts with an event
/// named `snapshot` (every service, the last events, the view's health),
/// which the page renders from; `health` events follow when the view's
/// connection changes; `lagged` means messages were dropped: reconnect.
async fn api_events(State(shared): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Response {
    let params = match parse_query(q.as_deref(), &["snapshot"]) {
        Ok(p) => p,
        Err(m) => return error(StatusCode::BAD_REQUEST, &m),
    };
    let mut snapshot = false;
    for (_, v) in params {
        snapshot = match v.as_str() {
            "1" | "true" | "" => true,
            "0" | "false" => false,
            _ => return error(StatusCode::BAD_REQUEST, "snapshot: expected 1 or 0"),
        };
    }
    // Subscribe before reading the view, so nothing falls between.
    let rx = shared.tx.subscribe();
    let first = if snapshot {
        let s = shared.clone();
        let built = tokio::task::spawn_blocking(move || -> Result<String, String> {
            let revision = s.view.revision();
            let services = s.services(&Filter::all()).map_err(|e| e.to_string())?;
            let recent: Vec<Value> = lock(&s.recent)
                .iter()
                .filter_map(|t| serde_json::from_str(t).ok())
                .collect();
            Ok(json!({
                "revision": revision,
                "health": health_json(&s),
                "services": services.iter().map(info_json).collect::<Vec<_>>(),
                "events": recent,
            })
            .to_string())
        })
        .await;
        match built {
            Ok(Ok(text)) => Some(SseEvent::default().event("snapshot").data(text)),
            Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, &e),
            Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "snapshot failed"),
        }
    } else {
        None
    };
    let live = BroadcastStream::new(rx).map(|m| {
        Ok::<_, Infallible>(match m {
            Ok(("", data)) => SseEvent::default().data(&*data),
            Ok((name, data)) => SseEvent::default().event(name).data(&*data),
            Err(BroadcastStreamRecvError::Lagged(n)) => SseEvent::default()
                .event("lagged")
                .data(json!({ "dropped": n }).to_string()),
        })
    });
    let stream = tokio_stream::iter(first.map(Ok)).chain(live);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let body = health_json(&shared).to_string();
    let code = if shared.connected() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
