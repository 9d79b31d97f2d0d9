//! What the commands print: aligned tables for people, JSON with stable
//! field names for programs (documented in docs/operators.md).

use os_lively::{Event, EventKind, Service, ServiceInfo, Status};
use serde_json::{Value, json};

use crate::time;

/// `-o table|json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns with a header
    Table,
    /// JSON: one document, or one line per event for watch
    Json,
}

impl Format {
    /// Table on a terminal, JSON when piped.
    pub(crate) fn default_for_stdout() -> Format {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(1) } == 1 {
            Format::Table
        } else {
            Format::Json
        }
    }

    pub(crate) fn registered(self, uuid: &str) -> String {
        match self {
            Format::Table => format!("uuid {uuid}"),
            Format::Json => json!({ "uuid": uuid }).to_string(),
        }
    }

    pub(crate) fn updated(self, uuid: &str) -> String {
        match self {
            Format::Table => "updated".to_string(),
            Format::Json => json!({ "updated": uuid }).to_string(),
        }
    }

    pub(crate) fn is_up(self, up: bool) -> String {
        match self {
            Format::Table => status_word(up).to_string(),
            Format::Json => json!({ "up": up }).to_string(),
        }
    }

    /// After down, up, delete.
    pub(crate) fn done(self, uuid: &str, action: &str) -> String {
        match self {
            Format::Table => format!("{uuid} {action}"),
            Format::Json => json!({ "uuid": uuid, "action": action }).to_string(),
        }
    }

    pub(crate) fn service(self, info: &ServiceInfo) -> String {
        match self {
            Format::Table => table(std::slice::from_ref(info)),
            Format::Json => pretty(&info_json(info)),
        }
    }

    pub(crate) fn services(self, infos: &[ServiceInfo]) -> String {
        match self {
            Format::Table => table(infos),
            Format::Json => pretty(&Value::Array(infos.iter().map(info_json).collect())),
        }
    }

    /// One line per event (NDJSON with `Json`).
    pub(crate) fn event(self, e: &Event) -> String {
        match self {
            Format::Table => {
                let what = match e.reason {
                    Some(r) => format!("{} ({})", kind_name(e.kind), reason_name(r)),
                    None => kind_name(e.kind).to_string(),
                };
                format!(
                    "{:<8} {:<18} {:<32} {} {} -> {}",
                    e.revision,
                    what,
                    if e.uuid.is_empty() { "-" } else { &e.uuid },
                    if e.service_type.is_empty() {
                        "-".to_string()
                    } else {
                        format!("{}@{}", e.service_type, e.host)
                    },
                    opt_status(e.old_status),
                    opt_status(e.new_status)
                )
            }
            Format::Json => event_json(e).to_string(),
        }
    }
}

/// An event as `watch -o json` prints it (and `serve`'s `/api/events` sends it).
pub(crate) fn event_json(e: &Event) -> Value {
    json!({
        "event": kind_name(e.kind),
        "reason": e.reason.map(reason_name),
        "uuid": e.uuid,
        "type": e.service_type,
        "host": e.host,
        "region": e.region,
        "old_status": e.old_status.map(Status::as_str),
        "new_status": e.new_status.map(Status::as_str),
        "revision": e.revision,
        "service": e.service.as_ref().map(record_json),
    })
}

/// Why a service is DOWN, from what its [`ServiceInfo`] tells; `None` while
/// it is UP. `forced` (an operator's down or maintenance), `missed` (its
/// heartbeat deadline passed), `down` (its record says DOWN: its owner set
/// it so), `closed` (its client shut down cleanly), `expired` (its record
/// says UP but its lease is gone: a crash).
pub(crate) fn why_down(info: &ServiceInfo) -> Option<&'static str> {
    match info.down_reason()? {
        os_lively::DownReason::Declared => Some("down"),
        r => Some(reason_name(r)),
    }
}

/// STATUS in tables: `UP`, `DOWN (why)`, or plain `DOWN` when the record
/// itself says DOWN.
pub(crate) fn status_text(info: &ServiceInfo) -> String {
    match why_down(info) {
        None => "UP".to_string(),
        Some("down") => "DOWN".to_string(),
        Some(why) => format!("DOWN ({why})"),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn status_word(up: bool) -> &'static str {
    if up { "UP" } else { "DOWN" }
}

fn opt_status(s: Option<Status>) -> &'static str {
    s.map(Status::as_str).unwrap_or("-")
}

fn kind_name(k: EventKind) -> &'static str {
    match k {
        EventKind::Existing => "existing",
        EventKind::Registered => "registered",
        EventKind::Up => "up",
        EventKind::Down => "down",
        EventKind::Updated => "updated",
        EventKind::Removed => "removed",
        EventKind::Resync => "resync",
    }
}

pub(crate) fn reason_name(r: os_lively::DownReason) -> &'static str {
    // The wildcard keeps this compiling when the library adds reasons
    // (`Closed`, `Declared`); they show as "other" until named here.
    #[allow(unreachable_patterns)]
    match r {
        os_lively::DownReason::Forced => "forced",
        os_lively::DownReason::Expired => "expired",
        os_lively::DownReason::Deleted => "deleted",
        os_lively::DownReason::Lifted => "lifted",
        os_lively::DownReason::Missed => "missed",
        os_lively::DownReason::Moved => "moved",
        os_lively::DownReason::Closed => "closed",
        os_lively::DownReason::Declared => "declared",
        _ => "other",
    }
}

/// The record's own fields; `record_status` is what it declares.
fn record_json(s: &Service) -> Value {
    json!({
        "uuid": s.uuid,
        "type": s.service_type,
        "host": s.host,
        "region": s.region,
        "record_status": s.status.as_str(),
        "forced_down": s.forced_down,
        "maintenance_start": s.maintenance_start,
        "maintenance_end": s.maintenance_end,
        "maintenance_note": s.maintenance_note,
        "heartbeat_ms": s.heartbeat.map_or(0, |d| d.as_millis() as u64),
        "heartbeat_missed": s.heartbeat_missed,
    })
}

/// The record plus `status` (UP only when it says UP and its lease lives)
/// and `why` (see [`why_down`]; null while UP).
pub(crate) fn info_json(info: &ServiceInfo) -> Value {
    let mut v = record_json(&info.service);
    if let Value::Object(m) = &mut v {
        m.insert("status".into(), json!(status_word(info.up)));
        m.insert("why".into(), json!(why_down(info)));
    }
    v
}

fn window(s: &Service) -> String {
    let at = |t: u64| {
        if t == 0 { String::new() } else { time::show(t) }
    };
    if s.maintenance_start == 0 && s.maintenance_end == 0 {
        "-".to_string()
    } else {
        format!("{}..{}", at(s.maintenance_start), at(s.maintenance_end))
    }
}

fn table(infos: &[ServiceInfo]) -> String {
    let header = [
        "UUID",
        "STATUS",
        "TYPE",
        "HOST",
        "REGION",
        "MAINTENANCE",
        "NOTE",
    ];
    let rows: Vec<[String; 7]> = infos
        .iter()
        .map(|i| {
            let s = &i.service;
            let status = status_text(i);
            let dash = |v: &str| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    v.to_string()
                }
            };
            [
                s.uuid.clone(),
                status,
                s.service_type.clone(),
                s.host.clone(),
                dash(&s.region),
                window(s),
                dash(&s.maintenance_note),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out
    };
    let mut out = vec![line(header.to_vec())];
    for r in &rows {
        out.push(line(r.iter().map(String::as_str).collect()));
    }
    out.join("\n")
}
