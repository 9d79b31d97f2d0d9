//! `oslively`: a small command-line front end to the library.
//!
//! ```text
//! oslively register --type T --host H [--region R] [--uuid U] [--heartbeat SECONDS]
//!     registers and stays UP until stdin closes or the process is killed;
//!     prints "uuid <uuid>" once registered. With --heartbeat, each line on
//!     stdin is a check-in and the service is UP only while one arrives at
//!     least every SECONDS: `while work; do echo; done | oslively register ...`
//! oslively is-up (<uuid> | --type T --host H)   exit 0 if UP, 1 if not
//! oslively list [--uuid U] [--type T] [--host H] [--region R] [--status UP|DOWN]
//! oslively watch [--type T] [--host H] [--region R] [--uuid U]
//!     prints every event (with a snapshot first) until killed
//! oslively down <uuid> [note]
//! oslively delete <uuid>
//! oslively demo        the guided tour on a throwaway etcd (see README)
//! ```
//! Connection settings come from the `OSLIVELY_*` environment variables.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use os_lively::{Client, Config, Filter, Service, Status};

mod demo;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        eprintln!("usage: oslively (register|is-up|list|watch|down|delete|demo) ...");
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let result = match cmd.as_str() {
        "demo" => demo::run(rest),
        "register" => register(rest),
        "is-up" => is_up(rest),
        "list" => list(rest),
        "watch" => watch(rest),
        "down" => down(rest),
        "delete" => delete(rest),
        other => Err(format!("unknown command {other:?}")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("oslively {cmd}: {e}");
            ExitCode::from(2)
        }
    }
}

/// `--name value` pairs and positional arguments.
fn parse(args: &[String]) -> Result<(HashMap<String, String>, Vec<String>), String> {
    let mut flags = HashMap::new();
    let mut positional = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(name) = a.strip_prefix("--") {
            let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            flags.insert(name.to_string(), v.clone());
        } else {
            positional.push(a.clone());
        }
    }
    Ok((flags, positional))
}

fn connect() -> Result<Client, String> {
    let config = Config::from_env().map_err(|e| e.to_string())?;
    Client::connect(&config).map_err(|e| e.to_string())
}

fn register(args: &[String]) -> Result<ExitCode, String> {
    let (flags, _) = parse(args)?;
    let get = |k: &str| flags.get(k).cloned().unwrap_or_default();
    let client = connect()?;
    let heartbeat = heartbeat_flag(flags.get("heartbeat"))?;
    let service = Service::new(&get("type"), &get("host"))
        .with_region(&get("region"))
        .with_uuid(&get("uuid"))
        .with_heartbeat(heartbeat.unwrap_or(Duration::ZERO));
    let uuid = client.update(&service).map_err(|e| e.to_string())?;
    println!("uuid {uuid}");
    let _ = std::io::stdout().flush();
    // Stay registered until our parent closes stdin (or kills us).
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        match line.as_deref() {
            Ok("update") => {
                client
                    .update(&service.clone().with_uuid(&uuid))
                    .map_err(|e| e.to_string())?;
                println!("updated");
                let _ = std::io::stdout().flush();
            }
            Ok(_) if heartbeat.is_some() => client.heartbeat(&uuid).map_err(|e| e.to_string())?,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    client.close().map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// `register --heartbeat SECONDS` (fractions allowed): the service's
/// heartbeat deadline; each line then read on stdin is a check-in.
fn heartbeat_flag(value: Option<&String>) -> Result<Option<Duration>, String> {
    let Some(v) = value else { return Ok(None) };
    match v.parse::<f64>().map(Duration::try_from_secs_f64) {
        Ok(Ok(d)) if !d.is_zero() => Ok(Some(d)),
        _ => Err(format!(
            "--heartbeat {v:?}: expected a number of seconds above 0"
        )),
    }
}

fn is_up(args: &[String]) -> Result<ExitCode, String> {
    let (flags, pos) = parse(args)?;
    let client = connect()?;
    let up = match pos.first() {
        Some(uuid) => client.is_up(uuid),
        None => client.is_up_by_type_host(
            flags.get("type").map(String::as_str).unwrap_or(""),
            flags.get("host").map(String::as_str).unwrap_or(""),
        ),
    }
    .map_err(|e| e.to_string())?;
    println!("{}", if up { "UP" } else { "DOWN" });
    Ok(if up {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The `--uuid/--type/--host/--region` narrowing shared by list and watch.
fn filter_from(flags: &HashMap<String, String>) -> Filter {
    Filter {
        uuid: flags.get("uuid").cloned(),
        service_type: flags.get("type").cloned(),
        host: flags.get("host").cloned(),
        region: flags.get("region").cloned(),
        status: None,
    }
}

fn list(args: &[String]) -> Result<ExitCode, String> {
    let (flags, _) = parse(args)?;
    let mut filter = filter_from(&flags);
    filter.status = match flags.get("status").map(String::as_str) {
        None => None,
        Some("UP") | Some("up") => Some(Status::Up),
        Some("DOWN") | Some("down") => Some(Status::Down),
        Some(other) => return Err(format!("--status {other:?}: expected UP or DOWN")),
    };
    let client = connect()?;
    for info in client.list(&filter).map_err(|e| e.to_string())? {
        let s = &info.service;
        println!(
            "{} {:<4} {} {} {}",
            s.uuid,
            if info.up { "UP" } else { "DOWN" },
            s.service_type,
            s.host,
            s.region
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn watch(args: &[String]) -> Result<ExitCode, String> {
    let (flags, _) = parse(args)?;
    let filter = filter_from(&flags);
    let client = connect()?;
    let options = os_lively::SubscribeOptions {
        snapshot: true,
        ..Default::default()
    };
    let sub = client
        .subscribe(&filter, &options)
        .map_err(|e| e.to_string())?;
    let show = |s: Option<Status>| s.map(Status::as_str).unwrap_or("-");
    for e in &sub {
        let reason = e
            .reason
            .map(|r| format!(" ({})", format!("{r:?}").to_lowercase()))
            .unwrap_or_default();
        println!(
            "{} {}{} {} {}@{} {} -> {}",
            e.revision,
            format!("{:?}", e.kind).to_lowercase(),
            reason,
            e.uuid,
            e.service_type,
            e.host,
            show(e.old_status),
            show(e.new_status)
        );
        let _ = std::io::stdout().flush();
    }
    Ok(ExitCode::SUCCESS)
}

fn down(args: &[String]) -> Result<ExitCode, String> {
    let (_, pos) = parse(args)?;
    let uuid = pos.first().ok_or("down needs a uuid")?;
    let note = pos.get(1).map(String::as_str).unwrap_or("");
    connect()?
        .down(uuid, note, 0, 0)
        .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

fn delete(args: &[String]) -> Result<ExitCode, String> {
    let (_, pos) = parse(args)?;
    let uuid = pos.first().ok_or("delete needs a uuid")?;
    let deleted = connect()?.delete(uuid).map_err(|e| e.to_string())?;
    Ok(if deleted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
