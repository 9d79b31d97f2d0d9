//! Connection flags, named as etcdctl names them, each falling back to its
//! `OSLIVELY_*` environment variable.

use std::io::{BufRead, Write};

use clap::Args;
use os_lively::{Client, Config, env};

use crate::Failure;

/// Listed under their own heading in every command's --help.
#[derive(Args)]
#[command(next_help_heading = "Connection")]
pub(crate) struct Conn {
    /// etcd endpoints, comma-separated [env: OSLIVELY_ETCD_ENDPOINTS, else OSLIVELY_ETCD_HOST/PORT]
    #[arg(long, global = true, value_name = "URLS")]
    endpoints: Option<String>,
    /// Key namespace [env: OSLIVELY_ETCD_KEY_NAMESPACE]
    #[arg(long, global = true, value_name = "NAME")]
    namespace: Option<String>,
    /// etcd user, NAME[:PASSWORD]; the password otherwise comes from OSLIVELY_ETCD_PASSWORD or a prompt [env: OSLIVELY_ETCD_USER]
    #[arg(long, global = true, value_name = "NAME[:PASSWORD]")]
    user: Option<String>,
    /// CA certificate (PEM) verifying etcd; enables TLS [env: OSLIVELY_ETCD_CA_FILE]
    #[arg(long, global = true, value_name = "FILE")]
    cacert: Option<String>,
    /// Client certificate (PEM) for mutual TLS [env: OSLIVELY_ETCD_CERT_FILE]
    #[arg(long, global = true, value_name = "FILE")]
    cert: Option<String>,
    /// Client certificate's private key (PEM) [env: OSLIVELY_ETCD_KEY_FILE]
    #[arg(long, global = true, value_name = "FILE")]
    key: Option<String>,
    /// Time to connect, e.g. 5s, 500ms [env: OSLIVELY_ETCD_CONNECT_TIMEOUT, seconds]
    #[arg(long, global = true, value_name = "DURATION", value_parser = crate::time::parse_duration_secs)]
    dial_timeout: Option<String>,
    /// Time each call may take [env: OSLIVELY_ETCD_REQUEST_TIMEOUT, seconds]
    #[arg(long, global = true, value_name = "DURATION", value_parser = crate::time::parse_duration_secs)]
    command_timeout: Option<String>,
    /// Seconds a registered service stays UP after its process dies [env: OSLIVELY_STATUS_TTL]
    #[arg(long, global = true, value_name = "SECONDS")]
    ttl: Option<String>,
}

impl Conn {
    /// The flag standing for an environment variable, when it was given.
    fn flag_for(&self, var: &str) -> Option<(&'static str, String)> {
        let (flag, v) = match var {
            env::ENDPOINTS => ("--endpoints", &self.endpoints),
            env::NAMESPACE => ("--namespace", &self.namespace),
            env::CA_FILE => ("--cacert", &self.cacert),
            env::CERT_FILE => ("--cert", &self.cert),
            env::KEY_FILE => ("--key", &self.key),
            env::CONNECT_TIMEOUT => ("--dial-timeout", &self.dial_timeout),
            env::REQUEST_TIMEOUT => ("--command-timeout", &self.command_timeout),
            env::STATUS_TTL => ("--ttl", &self.ttl),
            env::USER => ("--user", &self.user),
            _ => return None,
        };
        v.clone().map(|v| (flag, v))
    }

    /// The configuration: flags first, then the environment, then defaults.
    pub(crate) fn config(&self) -> Result<Config, Failure> {
        let mut user = None;
        let mut password = std::env::var(env::PASSWORD).ok();
        if let Some(u) = self.user.clone().or_else(|| std::env::var(env::USER).ok()) {
            let (name, pw) = match u.split_once(':') {
                Some((n, p)) => (n.to_string(), Some(p.to_string())),
                None => (u, None),
            };
            if name.is_empty() {
                return Err(Failure::usage("--user: the user name is empty"));
            }
            if let Some(pw) = pw {
                password = Some(pw);
            }
            if password.is_none() {
                password = Some(prompt_password(&name)?);
            }
            user = Some(name);
        }
        let lookup = |var: &str| -> Option<String> {
            match var {
                env::USER => user.clone(),
                env::PASSWORD => user.as_ref().and(password.clone()),
                // --endpoints replaces host and port from the environment.
                env::HOST | env::PORT if self.endpoints.is_some() => None,
                _ => self
                    .flag_for(var)
                    .map(|(_, v)| v)
                    .or_else(|| std::env::var(var).ok()),
            }
        };
        Config::from_lookup(lookup).map_err(|e| {
            // Name the flag rather than the variable it stood in for.
            let mut message = e.message().to_string();
            for var in [
                env::ENDPOINTS,
                env::NAMESPACE,
                env::CA_FILE,
                env::CERT_FILE,
                env::KEY_FILE,
                env::CONNECT_TIMEOUT,
                env::REQUEST_TIMEOUT,
                env::STATUS_TTL,
            ] {
                if let Some((flag, _)) = self.flag_for(var) {
                    message = message.replace(var, flag);
                }
            }
            Failure::usage(message)
        })
    }

    pub(crate) fn connect(&self) -> Result<Client, Failure> {
        let config = self.config()?;
        Ok(Client::connect(&config)?)
    }
}

/// Reads a password from the terminal without echoing it.
fn prompt_password(user: &str) -> Result<String, Failure> {
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .map_err(|_| {
            Failure::usage(format!(
                "--user {user}: no password given (NAME:PASSWORD or {}) and no terminal to ask on",
                env::PASSWORD
            ))
        })?;
    let mut out = &tty;
    let _ = write!(out, "Password for {user}: ");
    let _ = out.flush();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&tty);
    // SAFETY: termios is plain data; fd is open for the whole block.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            None
        } else {
            let saved = t;
            t.c_lflag &= !libc::ECHO;
            libc::tcsetattr(fd, libc::TCSANOW, &t);
            Some(saved)
        }
    };
    let mut line = String::new();
    let read = std::io::BufReader::new(&tty).read_line(&mut line);
    if let Some(saved) = saved {
        // SAFETY: restores the settings read above on the same fd.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    let _ = writeln!(out);
    read.map_err(|e| Failure::usage(format!("reading the password: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
