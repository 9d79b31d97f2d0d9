//! etcd's own gRPC proxy (`etcd grpc-proxy start`, from the same etcd
//! binary) on 127.0.0.1, in front of a [`super::Cluster`] or an
//! [`super::Etcd`]: what a large fleet puts between its daemons and etcd,
//! because it merges identical watches and lease keep-alive streams.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::etcd::{Port, etcd_bin, free_port};
use super::wait_until;

/// How long the proxy may take to answer through to etcd.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// One running `etcd grpc-proxy`; killed on drop.
pub struct GrpcProxy {
    listen: Port,
    metrics: Port,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// `grpc-proxy start` and its flags but the ports and the data dir.
    args: Vec<String>,
}

impl GrpcProxy {
    /// Starts a proxy in front of `endpoints` (`http://127.0.0.1:port`
    /// URLs, as [`super::Cluster::endpoints`] gives them) and waits until a
    /// read through it reaches etcd.
    pub fn start(endpoints: &[String]) -> GrpcProxy {
        Self::start_with(endpoints, &[])
    }

    /// Like [`GrpcProxy::start`], with extra `etcd grpc-proxy start` flags.
    pub fn start_with(endpoints: &[String], extra_args: &[&str]) -> GrpcProxy {
        let dir = tempfile::Builder::new()
            .prefix("oslively-grpc-proxy-")
            .tempdir()
            .expect("grpc-proxy temp dir");
        let upstream: Vec<String> = endpoints
            .iter()
            .map(|e| e.trim_start_matches("http://").to_string())
            .collect();
        let mut args = vec![
            "grpc-proxy".to_string(),
            "start".to_string(),
            format!("--endpoints={}", upstream.join(",")),
        ];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let mut proxy = GrpcProxy {
            listen: free_port(),
            metrics: free_port(),
            child: None,
            dir,
            args,
        };
        proxy.start_again();
        proxy
    }

    /// Starts the proxy again (after [`GrpcProxy::stop`]) on the same
    /// ports, and waits until a read through it reaches etcd.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "grpc-proxy already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("proxy.log"))
            .expect("grpc-proxy log");
        let mut cmd = Command::new(etcd_bin());
        cmd.args(&self.args)
            .arg(format!("--listen-addr=127.0.0.1:{}", self.listen.port))
            .arg(format!(
                "--advertise-client-url=127.0.0.1:{}",
                self.listen.port
            ))
            .arg(format!(
                "--metrics-addr=http://127.0.0.1:{}",
                self.metrics.port
            ))
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup grpc-proxy log"))
            .stderr(log);
        // etcd reads ETCD_* variables as flags.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {:?} grpc-proxy: {e}", etcd_bin()));
        self.child = Some(child);
        let ready = wait_until(START_TIMEOUT, || {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "etcd grpc-proxy exited during startup ({status}):\n{}",
                    self.log()
                );
            }
            self.metric("etcd_server_has_leader").is_some() && self.reaches_etcd()
        });
        assert!(ready, "etcd grpc-proxy not ready:\n{}", self.log());
    }

    /// Kills the proxy (SIGKILL): its clients' connections drop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// True while the proxy process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The proxy's client URL: the only endpoint a client behind it is given.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.listen.port)
    }

    /// The proxy's own `/metrics` (its `--metrics-addr`), as text.
    pub fn metrics_text(&self) -> String {
        http_get(self.metrics.port, "/metrics").unwrap_or_default()
    }

    /// One un-labelled metric's value, or the sum over its labelled series.
    pub fn metric(&self, name: &str) -> Option<f64> {
        metric_sum(&self.metrics_text(), name)
    }

    /// The proxy's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }

    /// Pid of the proxy process (0 when stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    fn reaches_etcd(&self) -> bool {
        let endpoint = self.endpoint();
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    let opts = etcd_client::ConnectOptions::new()
                        .with_connect_timeout(Duration::from_secs(1))
                        .with_timeout(Duration::from_secs(2));
                    match etcd_client::Client::connect([endpoint], Some(opts)).await {
                        // An etcd error (auth enabled: "user name is
                        // empty") is an answer from etcd too.
                        Ok(mut c) => match c.get("grpc-proxy-probe", None).await {
                            Ok(_) => true,
                            Err(e) => e.to_string().contains("etcdserver:"),
                        },
                        Err(_) => false,
                    }
                })
            })
            .join()
            .unwrap_or(false)
        })
    }
}

impl Drop for GrpcProxy {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- etcd grpc-proxy output ---\n{}", self.log());
        }
    }
}

/// The sum of every series of `name` in a Prometheus text exposition.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
        if let Some(v) = value {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// A minimal HTTP GET on loopback; the body, or `None`.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    // HTTP/1.0: the answer comes whole, never chunked.
    let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    if !(text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200")) {
        return None;
    }
    text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}
