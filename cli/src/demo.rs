//! `oslively demo`: the main job end to end on a throwaway etcd that the demo
//! starts itself on free loopback ports and removes afterwards.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use os_lively::{Client, Config, Event, Filter, Service, SubscribeOptions};

/// Short, so the crash is noticed within seconds; etcd's minimum with the
/// demo's election timeout is 1 s.
const TTL_SECS: u64 = 3;

struct Etcd {
    child: Child,
    dir: PathBuf,
    endpoint: String,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn start_etcd() -> Result<Etcd, String> {
    let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| "etcd".to_string());
    let (client, peer) = (free_port()?, free_port()?);
    let dir = std::env::temp_dir().join(format!("oslively-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new(&bin)
        .args([
            "--name=demo",
            &format!("--data-dir={}", dir.join("data").display()),
            &format!("--listen-client-urls={client_url}"),
            &format!("--advertise-client-urls={client_url}"),
            &format!("--listen-peer-urls={peer_url}"),
            &format!("--initial-advertise-peer-urls={peer_url}"),
            &format!("--initial-cluster=demo={peer_url}"),
            "--heartbeat-interval=50",
            "--election-timeout=500",
            "--logger=zap",
            "--log-outputs=stderr",
            "--log-level=error",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {bin:?} (install etcd or set ETCD_BIN): {e}"))?;
    Ok(Etcd {
        child,
        dir,
        endpoint: client_url,
    })
}

fn config(endpoint: &str) -> Result<Config, String> {
    let mut c = Config::new();
    c.endpoints(&[endpoint])
        .and_then(|c| c.namespace("demo"))
        .map_err(|e| e.to_string())?
        .status_ttl(Duration::from_secs(TTL_SECS))
        .connect_timeout(Duration::from_secs(1));
    Ok(c)
}

/// A registering daemon in a child process (this binary's `register`).
struct Daemon {
    child: Child,
    name: String,
}

fn spawn_daemon(
    endpoint: &str,
    service_type: &str,
    host: &str,
    region: &str,
) -> Result<Daemon, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args([
            "register",
            "--output",
            "table",
            "--type",
            service_type,
            "--host",
            host,
            "--region",
            region,
        ])
        .env("OSLIVELY_ETCD_ENDPOINTS", endpoint)
        .env("OSLIVELY_ETCD_KEY_NAMESPACE", "demo")
        .env("OSLIVELY_STATUS_TTL", TTL_SECS.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if !line.starts_with("uuid ") {
        let _ = child.kill();
        return Err(format!("daemon {service_type}@{host} failed to register"));
    }
    Ok(Daemon {
        child,
        name: format!("{service_type}@{host}"),
    })
}

pub(crate) fn run(_args: &[String]) -> Result<ExitCode, String> {
    let t0 = Instant::now();
    let at = move || format!("[{:5.1}s]", t0.elapsed().as_secs_f64());
    let etcd = start_etcd()?;
    let cfg = config(&etcd.endpoint)?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let me = loop {
        match Client::connect(&cfg) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("etcd did not come up: {e}")),
        }
    };
    println!(
        "os-lively demo: a throwaway etcd on {} (namespace /demo, status TTL {TTL_SECS} s)",
        etcd.endpoint
    );
    println!("Services register and stay UP only while their process keeps its lease alive.\n");

    let watcher = Client::connect(&cfg).map_err(|e| e.to_string())?;
    let show = move |e: &Event| {
        let what = match (e.kind, e.reason) {
            (k, Some(r)) => format!(
                "{} ({})",
                format!("{k:?}").to_lowercase(),
                format!("{r:?}").to_lowercase()
            ),
            (k, _) => format!("{k:?}").to_lowercase(),
        };
        let st = |s: Option<os_lively::Status>| s.map(|s| s.as_str()).unwrap_or("-");
        println!(
            "{} watcher  event {:<14} {:<24} {:>4} -> {:<4}  rev {}",
            at(),
            what,
            format!("{}@{}", e.service_type, e.host),
            st(e.old_status),
            st(e.new_status),
            e.revision
        );
    };
    let _sub = watcher
        .subscribe_callback(&Filter::all(), &SubscribeOptions::default(), show)
        .map_err(|e| e.to_string())?;
    println!(
        "{} watcher  subscribed to every service (callback on a library thread)",
        at()
    );

    let sched = me
        .update(&Service::new("scheduler", "control-1").with_region("east"))
        .map_err(|e| e.to_string())?;
    println!(
        "{} this process registered scheduler@control-1 as {sched}",
        at()
    );
    let mut daemons = Vec::new();
    for (t, h, r) in [
        ("nova-compute", "host-7", "east"),
        ("nova-compute", "host-8", "west"),
        ("glance", "host-9", "west"),
    ] {
        let d = spawn_daemon(&etcd.endpoint, t, h, r)?;
        println!(
            "{} child    pid {} registered {}",
            at(),
            d.child.id(),
            d.name
        );
        daemons.push(d);
    }
    wait_for(&me, 4);

    let ask = |t: &str, h: &str| -> Result<(), String> {
        let up = me.is_up_by_type_host(t, h).map_err(|e| e.to_string())?;
        println!("{} is_up({t}, {h}) = {up}", at());
        Ok(())
    };
    ask("nova-compute", "host-7")?;
    let west = me
        .list(&Filter::all().region("west"))
        .map_err(|e| e.to_string())?;
    println!(
        "{} list(region=west): {}",
        at(),
        west.iter()
            .map(|i| format!(
                "{}@{} {}",
                i.service.service_type,
                i.service.host,
                if i.up { "UP" } else { "DOWN" }
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let victim = &mut daemons[0];
    println!(
        "\n{} SIGKILL {} (pid {}): it dies without a word; nobody calls anything",
        at(),
        victim.name,
        victim.child.id()
    );
    let killed = Instant::now();
    let _ = victim.child.kill();
    let _ = victim.child.wait();
    ask("nova-compute", "host-7")?;
    println!(
        "{} ...its lease is no longer kept alive; etcd expires it after the TTL",
        at()
    );
    let deadline = Instant::now() + Duration::from_secs(TTL_SECS + 5);
    while me
        .is_up_by_type_host("nova-compute", "host-7")
        .unwrap_or(true)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "{} DOWN {:.1} s after the kill (TTL {TTL_SECS} s)",
        at(),
        killed.elapsed().as_secs_f64()
    );
    ask("nova-compute", "host-7")?;
    let uuid_of = |t: &str, h: &str| -> Result<String, String> {
        Ok(me
            .get_by_type_host(t, h)
            .map_err(|e| e.to_string())?
            .map(|i| i.service.uuid)
            .unwrap_or_default())
    };
    let old_uuid = uuid_of("nova-compute", "host-7")?;
    println!(
        "\n{} restart nova-compute@host-7 the same way, without its uuid: identity is type+host",
        at()
    );
    daemons[0] = spawn_daemon(&etcd.endpoint, "nova-compute", "host-7", "east")?;
    let new_uuid = uuid_of("nova-compute", "host-7")?;
    println!(
        "{} same uuid as before: {} (UP at once, on the new process's lease)",
        at(),
        if new_uuid == old_uuid { "yes" } else { "NO" }
    );
    ask("nova-compute", "host-7")?;

    let glance = me
        .get_by_type_host("glance", "host-9")
        .map_err(|e| e.to_string())?
        .ok_or("glance vanished")?;
    println!(
        "\n{} down(glance@host-9, \"disk swap\"): forced down for maintenance, though its process lives",
        at()
    );
    me.down(&glance.service.uuid, "disk swap", 0, 0)
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(300));
    println!(
        "{} up(glance@host-9): the operator lifts it; UP again on its owner's lease",
        at()
    );
    me.up(&glance.service.uuid).map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(300));

    println!(
        "\n{} shutting down: each daemon closes its client, revoking its lease (DOWN at once, reason closed)",
        at()
    );
    for d in daemons.iter_mut() {
        d.child.stdin.take();
        let _ = d.child.wait();
    }
    me.close().map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(500));
    println!("{} done; the throwaway etcd is removed", at());
    drop(watcher);
    Ok(ExitCode::SUCCESS)
}

/// Waits (bounded) until `n` services are UP, so the output reads in order.
fn wait_for(client: &Client, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if client
            .list(&Filter::all().status(os_lively::Status::Up))
            .map(|l| l.len())
            .unwrap_or(0)
            >= n
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
