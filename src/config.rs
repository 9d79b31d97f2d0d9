//! Connection and liveness settings: defaults, `OSLIVELY_*` environment
//! variables, and in-code overrides.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// Environment variable names, shared with the original Python os-lively.
pub mod env {
    /// etcd host name or address (default `localhost`).
    pub const HOST: &str = "OSLIVELY_ETCD_HOST";
    /// etcd client port (default 2379).
    pub const PORT: &str = "OSLIVELY_ETCD_PORT";
    /// Comma-separated endpoint list for a cluster; overrides host and port.
    pub const ENDPOINTS: &str = "OSLIVELY_ETCD_ENDPOINTS";
    /// Seconds to wait for the first connection (default 5).
    pub const CONNECT_TIMEOUT: &str = "OSLIVELY_ETCD_CONNECT_TIMEOUT";
    /// Seconds each call may take (default 5).
    pub const REQUEST_TIMEOUT: &str = "OSLIVELY_ETCD_REQUEST_TIMEOUT";
    /// Key namespace, `""` or a name (default `""`).
    pub const NAMESPACE: &str = "OSLIVELY_ETCD_KEY_NAMESPACE";
    /// Seconds a service stays UP after its process stops keeping it alive (default 60).
    pub const STATUS_TTL: &str = "OSLIVELY_STATUS_TTL";
    /// etcd user name for authentication.
    pub const USER: &str = "OSLIVELY_ETCD_USER";
    /// etcd password for authentication.
    pub const PASSWORD: &str = "OSLIVELY_ETCD_PASSWORD";
    /// PEM file of the CA that signed etcd's server certificate; enables TLS.
    pub const CA_FILE: &str = "OSLIVELY_ETCD_CA_FILE";
    /// PEM client certificate for mutual TLS (with `OSLIVELY_ETCD_KEY_FILE`).
    pub const CERT_FILE: &str = "OSLIVELY_ETCD_CERT_FILE";
    /// PEM private key of the client certificate.
    pub const KEY_FILE: &str = "OSLIVELY_ETCD_KEY_FILE";
    /// Server name to verify in etcd's certificate, when it differs from the
    /// endpoint's host.
    pub const TLS_SERVER_NAME: &str = "OSLIVELY_ETCD_TLS_SERVER_NAME";
    /// Microseconds the runtime thread keeps polling after a call (see
    /// [`Config::call_polling`](crate::Config::call_polling)); `0` turns it
    /// off. Specific to this library.
    pub const CALL_POLLING_US: &str = "OSLIVELY_CALL_POLLING_US";
}

/// Longest namespace we accept; keys must stay well below etcd's limits.
const MAX_NAMESPACE_LEN: usize = 128;
/// etcd rejects lease TTLs above this (9000000000 s); we stay far below.
const MAX_TTL_SECS: u64 = 365 * 24 * 3600;
/// The longest call polling accepted: beyond a slow etcd write it only
/// burns CPU.
pub(crate) const MAX_CALL_POLLING: Duration = Duration::from_millis(100);

/// Settings for [`Client::connect`](crate::Client::connect).
///
/// Build one with [`Config::new`] (defaults) or [`Config::from_env`], then
/// override with the setters, which chain:
///
/// ```no_run
/// # use std::time::Duration;
/// let mut config = os_lively::Config::from_env()?;
/// config.namespace("prod")?.status_ttl(Duration::from_secs(10));
/// let client = os_lively::Client::connect(&config)?;
/// # Ok::<(), os_lively::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    endpoints: Vec<String>,
    namespace: String,
    status_ttl: Duration,
    connect_timeout: Duration,
    request_timeout: Duration,
    call_polling: Duration,
    user: Option<(String, String)>,
    tls: Option<Tls>,
    release_memory: bool,
}

/// TLS settings: paths to PEM files, read at connect time.
#[derive(Clone, PartialEq, Eq, Default)]
pub(crate) struct Tls {
    pub ca_file: Option<std::path::PathBuf>,
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
    pub server_name: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            endpoints: vec!["http://localhost:2379".to_string()],
            namespace: String::new(),
            status_ttl: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            // Off: a host's CPU comes before a call's latency (issue #20).
            call_polling: Duration::ZERO,
            user: None,
            tls: None,
            // Off: malloc_trim is process-wide, the host's business.
            release_memory: false,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password never appears; the user name is not a secret.
        f.debug_struct("Config")
            .field("endpoints", &self.endpoints)
            .field("namespace", &self.namespace)
            .field("status_ttl", &self.status_ttl)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("call_polling", &self.call_polling)
            .field("release_memory", &self.release_memory)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("password", &self.user.as_ref().map(|_| "<hidden>"))
            .field(
                "tls_ca_file",
                &self.tls.as_ref().and_then(|t| t.ca_file.as_ref()),
            )
            .field(
                "tls_cert_file",
                &self.tls.as_ref().and_then(|t| t.cert_file.as_ref()),
            )
            // The key's path is not secret, but say only whether one is set.
            .field(
                "tls_key_file",
                &self.tls.as_ref().map(|t| t.key_file.is_some()),
            )
            .finish()
    }
}

impl Config {
    /// Longest status TTL accepted: a year (`OSLIVELY_STATUS_TTL` and
    /// `lively_config_set_status_ttl` refuse more; [`Config::status_ttl`]
    /// clamps to it).
    pub const MAX_STATUS_TTL: Duration = Duration::from_secs(MAX_TTL_SECS);
    /// Longest connect or request timeout accepted: a day
    /// (`OSLIVELY_ETCD_CONNECT_TIMEOUT`, `OSLIVELY_ETCD_REQUEST_TIMEOUT` and
    /// the C setters refuse more; the Rust setters clamp to it).
    pub const MAX_TIMEOUT: Duration = Duration::from_secs(86400);

    /// The defaults: `http://localhost:2379`, no namespace, 60 s TTL, 5 s
    /// connect and request timeouts, no call polling, no authentication.
    pub fn new() -> Config {
        Config::default()
    }

    /// Defaults overridden by the `OSLIVELY_*` environment variables (see
    /// [`mod@env`]). A variable that is set but invalid — not valid UTF-8,
    /// unparsable, or out of range — is an [`ErrorKind::Config`] error
    /// naming it; it is never ignored.
    pub fn from_env() -> Result<Config> {
        Config::from_raw_lookup(|name| std::env::var_os(name))
    }

    /// Like [`Config::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config> {
        Config::from_raw_lookup(|name| lookup(name).map(std::ffi::OsString::from))
    }

    /// Like [`Config::from_env`], reading variables through `lookup` as
    /// the OS gives them (so a value that is not UTF-8 is reported).
    pub fn from_raw_lookup(lookup: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Config> {
        let mut first_bad = None;
        let mut lookup = |name: &str| -> Option<String> {
            match lookup(name)?.into_string() {
                Ok(v) => Some(v),
                Err(_) => {
                    if first_bad.is_none() {
                        first_bad = Some(name.to_string());
                    }
                    None
                }
            }
        };
        // Every variable is read up front, so one that is not UTF-8 fails
        // before any other is interpreted (the value is not echoed: it may
        // be a password).
        let names = [
            env::HOST,
            env::PORT,
            env::ENDPOINTS,
            env::CONNECT_TIMEOUT,
            env::REQUEST_TIMEOUT,
            env::NAMESPACE,
            env::STATUS_TTL,
            env::USER,
            env::PASSWORD,
            env::CA_FILE,
            env::CERT_FILE,
            env::KEY_FILE,
            env::TLS_SERVER_NAME,
            env::CALL_POLLING_US,
        ];
        let values: Vec<(&str, Option<String>)> = names.iter().map(|n| (*n, lookup(n))).collect();
        if let Some(name) = first_bad {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{name} is set but is not valid UTF-8"),
            ));
        }
        let lookup = |name: &str| -> Option<String> {
            values
                .iter()
                .find(|(n, _)| *n == name)
                .and_then(|(_, v)| v.clone())
        };
        let mut config = Config::default();
        let host = lookup(env::HOST);
        let port = lookup(env::PORT);
        if host.is_some() || port.is_some() {
            let host = host.unwrap_or_else(|| "localhost".to_string());
            check_host(env::HOST, &host)?;
            let port = match port {
                Some(p) => p
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| bad(env::PORT, &p, "a port number 1-65535"))?,
                None => 2379,
            };
            config.endpoints = vec![format!("http://{host}:{port}")];
        }
        if let Some(list) = lookup(env::ENDPOINTS) {
            let endpoints: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            config
                .endpoints(&endpoints)
                .map_err(|e| rename(e, env::ENDPOINTS))?;
        }
        if let Some(v) = lookup(env::CONNECT_TIMEOUT) {
            config.connect_timeout = parse_secs(env::CONNECT_TIMEOUT, &v)?;
        }
        if let Some(v) = lookup(env::REQUEST_TIMEOUT) {
            config.request_timeout = parse_secs(env::REQUEST_TIMEOUT, &v)?;
        }
        if let Some(v) = lookup(env::CALL_POLLING_US) {
            let us = v
                .trim()
                .parse::<u64>()
                .ok()
                .map(Duration::from_micros)
                .filter(|d| *d <= MAX_CALL_POLLING)
                .ok_or_else(|| {
                    bad(
                        env::CALL_POLLING_US,
                        &v,
                        "whole microseconds, 0 (off) to 100000",
                    )
                })?;
            config.call_polling = us;
        }
        if let Some(v) = lookup(env::NAMESPACE) {
            config
                .namespace(&v)
                .map_err(|e| rename(e, env::NAMESPACE))?;
        }
        if let Some(v) = lookup(env::STATUS_TTL) {
            let secs = v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|s| (1..=MAX_TTL_SECS).contains(s))
                .ok_or_else(|| {
                    bad(
                        env::STATUS_TTL,
                        &v,
                        &format!("whole seconds from 1 to {MAX_TTL_SECS}"),
                    )
                })?;
            config.status_ttl = Duration::from_secs(secs);
        }
        if let Some(ca) = lookup(env::CA_FILE) {
            config
                .tls_ca_file(&ca)
                .map_err(|e| rename(e, env::CA_FILE))?;
        }
        match (lookup(env::CERT_FILE), lookup(env::KEY_FILE)) {
            (Some(cert), Some(key)) => {
                check_path("client certificate", &cert).map_err(|e| rename(e, env::CERT_FILE))?;
                check_path("client key", &key).map_err(|e| rename(e, env::KEY_FILE))?;
                config
                    .tls_client_cert(&cert, &key)
                    .map_err(|e| rename(e, env::CERT_FILE))?;
            }
            (None, None) => {}
            _ => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "{} and {} must be set together",
                        env::CERT_FILE,
                        env::KEY_FILE
                    ),
                ));
            }
        }
        if let Some(name) = lookup(env::TLS_SERVER_NAME) {
            config
                .tls_server_name(&name)
                .map_err(|e| rename(e, env::TLS_SERVER_NAME))?;
        }
        match (lookup(env::USER), lookup(env::PASSWORD)) {
            (Some(user), Some(password)) => {
                config
                    .user(&user, &password)
                    .map_err(|e| rename(e, env::USER))?;
            }
            (Some(_), None) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{} is set but {} is not", env::USER, env::PASSWORD),
                ));
            }
            (None, Some(_)) => {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!("{} is set but {} is not", env::PASSWORD, env::USER),
                ));
            }
            (None, None) => {}
        }
        Ok(config)
    }

    /// Sets the etcd endpoints (`host:port` or `http://host:port`); more than
    /// one for a cluster.
    pub fn endpoints<S: AsRef<str>>(&mut self, endpoints: &[S]) -> Result<&mut Config> {
        if endpoints.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                "endpoints: the list is empty",
            ));
        }
        let mut parsed = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            parsed.push(normalize_endpoint(e.as_ref())?);
        }
        self.endpoints = parsed;
        Ok(self)
    }

    /// Sets the key namespace: `""` (none) or a name such as `"prod"`; keys
    /// then live under `/prod/services/...`.
    ///
    /// The same string gives the same keys as in the original Python
    /// library, which shares the namespace with us: leading slashes are
    /// dropped, anything else is kept, so `"prod/"` puts keys under
    /// `/prod//services/...` (not under `/prod/services/...`).
    pub fn namespace(&mut self, namespace: &str) -> Result<&mut Config> {
        let name = namespace.trim_start_matches('/');
        if name.len() > MAX_NAMESPACE_LEN
            || name.contains('\0')
            || name.chars().any(char::is_control)
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "namespace {namespace:?}: must be at most {MAX_NAMESPACE_LEN} bytes without NUL or control characters"
                ),
            ));
        }
        // The original tests the string as given: "/" is a namespace too.
        self.namespace = if namespace.is_empty() {
            String::new()
        } else {
            format!("/{name}")
        };
        Ok(self)
    }

    /// Sets how long a service stays UP after its process stops keeping its
    /// lease alive. Whole seconds (etcd's lease unit), from 1 s to
    /// [`Config::MAX_STATUS_TTL`] (a year): a fraction is rounded up and a value
    /// outside is clamped (the environment variable and the C setter refuse
    /// it instead). etcd raises a TTL below its own minimum (1.5 × election
    /// timeout) silently, and the client then uses the TTL etcd granted.
    pub fn status_ttl(&mut self, ttl: Duration) -> &mut Config {
        let secs = ttl.as_secs_f64().ceil().clamp(1.0, MAX_TTL_SECS as f64);
        self.status_ttl = Duration::from_secs(secs as u64);
        self
    }

    /// Sets how long [`Client::connect`](crate::Client::connect) waits for
    /// etcd: from 1 ms to [`Config::MAX_TIMEOUT`] (a day), clamped.
    pub fn connect_timeout(&mut self, timeout: Duration) -> &mut Config {
        self.connect_timeout = timeout.clamp(Duration::from_millis(1), Config::MAX_TIMEOUT);
        self
    }

    /// Sets how long each call may take before it fails with a timeout:
    /// from 1 ms to [`Config::MAX_TIMEOUT`] (a day), clamped.
    pub fn request_timeout(&mut self, timeout: Duration) -> &mut Config {
        self.request_timeout = timeout.clamp(Duration::from_millis(1), Config::MAX_TIMEOUT);
        self
    }

    /// Sets how long the client's runtime thread keeps polling for work
    /// after a call started or ended, instead of sleeping (default: off;
    /// at most 100 ms).
    ///
    /// An opt-in for latency at the cost of CPU. Waking a sleeping thread
    /// costs tens of microseconds on a virtual machine, and a call crosses
    /// to the runtime thread and back: without polling an etcd read costs
    /// about 1.2× a raw `etcd-client` read on a 2-vCPU VM, with 1 ms of it
    /// about 1.05×. But a caller making a call every few milliseconds then
    /// keeps the runtime thread spinning between calls: several times the
    /// CPU of a raw client (the benchmark's CPU rows). It is off by default
    /// because the library runs inside someone else's process; hot paths
    /// read from a [`View`](crate::View), which makes no calls at all.
    pub fn call_polling(&mut self, polling: Duration) -> &mut Config {
        self.call_polling = polling.min(MAX_CALL_POLLING);
        self
    }

    /// Sets whether the library gives freed heap back to the system
    /// (glibc's `malloc_trim(0)`) after each full read of the namespace (a
    /// view's or subscription's first load, a re-read after a compaction);
    /// default: off.
    ///
    /// Such a read decodes every record once, several times the size of
    /// the copy kept, and glibc keeps what was freed for reuse, so the
    /// process stays that large (at 100,000 services, tens of MB). Trimming
    /// returns it, but it walks and locks every malloc arena of the whole
    /// process, the host's included, and takes milliseconds at that size:
    /// the host's business, so the library does it only when asked. The
    /// trim is process-wide, and so is the choice: once a client that asked
    /// has connected, full reads of every client of the process trim. It
    /// never runs on the runtime thread. No effect outside glibc.
    pub fn release_memory(&mut self, release: bool) -> &mut Config {
        self.release_memory = release;
        self
    }

    /// Whether freed memory is given back after full reads (see
    /// [`Config::release_memory`]).
    pub fn get_release_memory(&self) -> bool {
        self.release_memory
    }

    /// Authenticates as `user` with `password`.
    pub fn user(&mut self, user: &str, password: &str) -> Result<&mut Config> {
        if user.is_empty() || user.contains('\0') {
            return Err(Error::new(
                ErrorKind::Config,
                format!("user {user:?}: must be non-empty without NUL"),
            ));
        }
        self.user = Some((user.to_string(), password.to_string()));
        Ok(self)
    }

    /// Verifies etcd's server certificate against the CA in `path` (PEM) and
    /// switches every endpoint to `https://`.
    pub fn tls_ca_file(&mut self, path: &str) -> Result<&mut Config> {
        let p = check_path("CA file", path)?;
        self.tls.get_or_insert_with(Tls::default).ca_file = Some(p);
        Ok(self)
    }

    /// Presents a client certificate and key (PEM files) for mutual TLS.
    pub fn tls_client_cert(&mut self, cert_path: &str, key_path: &str) -> Result<&mut Config> {
        let cert = check_path("client certificate", cert_path)?;
        let key = check_path("client key", key_path)?;
        let tls = self.tls.get_or_insert_with(Tls::default);
        tls.cert_file = Some(cert);
        tls.key_file = Some(key);
        Ok(self)
    }

    /// The name to verify in etcd's certificate, when it differs from the
    /// endpoints' host (for example when connecting by IP address).
    pub fn tls_server_name(&mut self, name: &str) -> Result<&mut Config> {
        check_host("TLS server name", name)?;
        self.tls.get_or_insert_with(Tls::default).server_name = Some(name.to_string());
        Ok(self)
    }

    /// True when TLS is configured.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub(crate) fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// The endpoints as `http://host:port`, or `https://` when TLS is on.
    pub fn get_endpoints(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .map(|e| {
                let hostport = e
                    .trim_start_matches("http://")
                    .trim_start_matches("https://");
                if self.tls.is_some() {
                    format!("https://{hostport}")
                } else {
                    format!("http://{hostport}")
                }
            })
            .collect()
    }
    /// The namespace prefix: `""` or `"/"` followed by the name as given
    /// without its leading slashes.
    pub fn get_namespace(&self) -> &str {
        &self.namespace
    }
    /// The requested status TTL.
    pub fn get_status_ttl(&self) -> Duration {
        self.status_ttl
    }
    /// The connect timeout.
    pub fn get_connect_timeout(&self) -> Duration {
        self.connect_timeout
    }
    /// The per-call timeout.
    pub fn get_request_timeout(&self) -> Duration {
        self.request_timeout
    }
    /// How long the runtime thread polls after a call (zero: off).
    pub fn get_call_polling(&self) -> Duration {
        self.call_polling
    }
    /// The user name, if authentication is configured.
    pub fn get_user(&self) -> Option<&str> {
        self.user.as_ref().map(|(u, _)| u.as_str())
    }
    pub(crate) fn credentials(&self) -> Option<(&str, &str)> {
        self.user.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }
}

fn bad(name: &str, value: &str, expected: &str) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("{name}={value:?}: expected {expected}"),
    )
}

fn rename(e: Error, var: &str) -> Error {
    Error::new(ErrorKind::Config, format!("{var}: {}", e.message()))
}

fn check_path(what: &str, path: &str) -> Result<std::path::PathBuf> {
    if path.is_empty() || path.contains('\0') {
        return Err(Error::new(
            ErrorKind::Config,
            format!("{what} path {path:?}: must be non-empty without NUL"),
        ));
    }
    Ok(std::path::PathBuf::from(path))
}

fn parse_secs(name: &str, value: &str) -> Result<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= Config::MAX_TIMEOUT.as_secs_f64())
        .map(Duration::from_secs_f64)
        .ok_or_else(|| bad(name, value, "seconds, greater than 0 and at most 86400"))
}

fn check_host(name: &str, host: &str) -> Result<()> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
    if ok {
        Ok(())
    } else {
        Err(bad(name, host, "a host name or IP address"))
    }
}

fn normalize_endpoint(endpoint: &str) -> Result<String> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .unwrap_or(endpoint);
    let scheme = if endpoint.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    let rest = rest.trim_end_matches('/');
    let invalid = || {
        Error::new(
            ErrorKind::Config,
            format!("endpoint {endpoint:?}: expected host:port or http://host:port"),
        )
    };
    let (host, port) = rest.rsplit_once(':').ok_or_else(invalid)?;
    check_host("endpoint", host).map_err(|_| invalid())?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(invalid)?;
    Ok(format!("{scheme}://{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_original_library() {
        let c = from(&[]).unwrap();
        assert_eq!(c.get_endpoints(), ["http://localhost:2379"]);
        assert_eq!(c.get_namespace(), "");
        assert_eq!(c.get_status_ttl(), Duration::from_secs(60));
        assert_eq!(c.get_connect_timeout(), Duration::from_secs(5));
        assert_eq!(c.get_call_polling(), Duration::ZERO);
    }

    #[test]
    fn environment_overrides() {
        let c = from(&[
            (env::HOST, "10.0.0.1"),
            (env::PORT, "1234"),
            (env::NAMESPACE, "prod"),
            (env::STATUS_TTL, "7"),
            (env::CONNECT_TIMEOUT, "0.5"),
            (env::CALL_POLLING_US, "0"),
        ])
        .unwrap();
        assert_eq!(c.get_call_polling(), Duration::ZERO);
        assert_eq!(c.get_endpoints(), ["http://10.0.0.1:1234"]);
        assert_eq!(c.get_namespace(), "/prod");
        assert_eq!(c.get_status_ttl(), Duration::from_secs(7));
        assert_eq!(c.get_connect_timeout(), Duration::from_millis(500));
        let c = from(&[(env::ENDPOINTS, "a:1, http://b:2")]).unwrap();
        assert_eq!(c.get_endpoints(), ["http://a:1", "http://b:2"]);
        let c = from(&[(env::ENDPOINTS, "a:1"), (env::CA_FILE, "/ca.pem")]).unwrap();
        assert_eq!(c.get_endpoints(), ["https://a:1"]);
        assert!(
            from(&[(env::CERT_FILE, "/c.pem")])
                .unwrap_err()
                .to_string()
                .contains(env::KEY_FILE)
        );
    }

    #[test]
    fn bad_values_name_the_variable_and_value() {
        for (var, val) in [
            (env::PORT, "70000"),
            (env::PORT, "x"),
            (env::STATUS_TTL, "0"),
            (env::STATUS_TTL, "-3"),
            (env::CONNECT_TIMEOUT, "soon"),
            (env::REQUEST_TIMEOUT, "NaN"),
            (env::ENDPOINTS, "nohostport"),
            (env::HOST, "bad host"),
            (env::NAMESPACE, "a\0b"),
            (env::CALL_POLLING_US, "100001"),
            (env::CALL_POLLING_US, "1ms"),
        ] {
            let err = from(&[(var, val)]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{var}={val}");
            assert!(err.to_string().contains(var), "{err} should name {var}");
        }
        let err = from(&[(env::USER, "root")]).unwrap_err();
        assert!(err.to_string().contains(env::PASSWORD));
    }

    /// Every variable that is set but not UTF-8 is an error naming it (the
    /// value is not echoed: it may be a password), never ignored.
    #[test]
    fn a_variable_that_is_not_utf8_is_an_error_naming_it() {
        use std::os::unix::ffi::OsStringExt;
        let all = [
            env::HOST,
            env::PORT,
            env::ENDPOINTS,
            env::CONNECT_TIMEOUT,
            env::REQUEST_TIMEOUT,
            env::NAMESPACE,
            env::STATUS_TTL,
            env::USER,
            env::PASSWORD,
            env::CA_FILE,
            env::CERT_FILE,
            env::KEY_FILE,
            env::TLS_SERVER_NAME,
            env::CALL_POLLING_US,
        ];
        for var in all {
            let err = Config::from_raw_lookup(|k| {
                if k == var {
                    Some(std::ffi::OsString::from_vec(b"bin\xffpw".to_vec()))
                } else if k == env::USER || k == env::PASSWORD {
                    Some("alice".into()) // so a bad password is not "unset"
                } else {
                    None
                }
            })
            .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Config, "{var}");
            assert!(err.to_string().contains(var), "{err} should name {var}");
            assert!(err.to_string().contains("UTF-8"), "{err}");
            assert!(!err.to_string().contains("pw"), "{err} echoes the value");
        }
    }

    #[test]
    fn out_of_range_values_name_the_variable_and_the_bounds() {
        let err = from(&[(env::STATUS_TTL, "31536001")]).unwrap_err();
        assert!(err.to_string().contains("31536000"), "{err}");
        assert!(from(&[(env::STATUS_TTL, "31536000")]).is_ok());
        let err = from(&[(env::REQUEST_TIMEOUT, "86401")]).unwrap_err();
        assert!(err.to_string().contains("86400"), "{err}");
        let err = from(&[(env::USER, ""), (env::PASSWORD, "x")]).unwrap_err();
        assert!(err.to_string().contains(env::USER), "{err}");
        let err = from(&[(env::CERT_FILE, "/c.pem"), (env::KEY_FILE, "")]).unwrap_err();
        assert!(err.to_string().contains(env::KEY_FILE), "{err}");
        // The Rust setters clamp to the documented bounds.
        let mut c = Config::new();
        c.status_ttl(Duration::from_secs(u64::MAX))
            .request_timeout(Duration::MAX)
            .connect_timeout(Duration::ZERO);
        assert_eq!(c.get_status_ttl(), Config::MAX_STATUS_TTL);
        assert_eq!(c.get_request_timeout(), Config::MAX_TIMEOUT);
        assert_eq!(c.get_connect_timeout(), Duration::from_millis(1));
    }

    #[test]
    fn debug_hides_the_password() {
        let mut c = Config::new();
        c.user("alice", "s3cret-pw").unwrap();
        let dbg = format!("{c:?}");
        assert!(dbg.contains("alice"));
        assert!(!dbg.contains("s3cret-pw"));
        c.tls_client_cert("/etc/c.pem", "/etc/secret-key.pem")
            .unwrap();
        assert!(!format!("{c:?}").contains("secret-key"));
    }

    #[test]
    fn namespace_gives_the_python_librarys_keys() {
        // Python: "/" + ns.lstrip("/") + "/services" when ns != "".
        let mut c = Config::new();
        for (given, prefix) in [
            ("", ""),
            ("x", "/x"),
            ("/x", "/x"),
            ("//x", "/x"),
            ("x/", "/x/"),
            ("/x/", "/x/"),
            ("a/b", "/a/b"),
            ("/", "/"),
        ] {
            assert_eq!(
                c.namespace(given).unwrap().get_namespace(),
                prefix,
                "{given:?}"
            );
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any value in any variable is accepted or refused with a
        /// configuration error naming that variable; never a panic.
        #[test]
        fn any_environment_value_is_handled(which in 0usize..10, value in ".{0,64}") {
            let names = [env::HOST, env::PORT, env::ENDPOINTS, env::CONNECT_TIMEOUT, env::REQUEST_TIMEOUT, env::NAMESPACE, env::STATUS_TTL, env::CA_FILE, env::TLS_SERVER_NAME, env::CALL_POLLING_US];
            let name = names[which];
            let v = value.clone();
            match Config::from_lookup(|k| (k == name).then(|| v.clone())) {
                Ok(_) => {}
                Err(e) => {
                    prop_assert_eq!(e.kind(), ErrorKind::Config);
                    prop_assert!(e.to_string().contains(name), "{} does not name {}", e, name);
                }
            }
        }
    }
}
