//! The current TLS credentials: the files are read again for each new
//! connection; a version that does not load keeps the last good one.

use std::sync::{Arc, Mutex};

use tokio_rustls::rustls::ClientConfig;

use super::Contents;
use crate::config::Tls;
use crate::error::Result;
use crate::stats::Counters;

/// A client's TLS credentials, as of the last version of its files that
/// loaded. Shared by every connection of one client (and its probes).
pub(crate) struct Credentials {
    files: Tls,
    counters: Arc<Counters>,
    /// Held only to compare and swap, never across I/O or an await.
    state: Mutex<State>,
}

struct State {
    contents: Contents,
    config: Arc<ClientConfig>,
    /// The last version refused (or the error reading it), so a bad file
    /// is warned about and counted once, not on every reconnect attempt.
    refused: Option<std::result::Result<Contents, String>>,
}

impl Credentials {
    /// Loads the files once, strictly: at connect, a bad file is the
    /// caller's error (naming the file), not something to fall back from.
    pub(crate) fn load(files: &Tls, counters: Arc<Counters>) -> Result<Arc<Credentials>> {
        let contents = Contents::read(files)?;
        let config = Arc::new(contents.client_config(files)?);
        Ok(Arc::new(Credentials {
            files: files.clone(),
            counters,
            state: Mutex::new(State {
                contents,
                config,
                refused: None,
            }),
        }))
    }

    /// The name to check in the server's certificate, when configured.
    pub(crate) fn server_name(&self) -> Option<&str> {
        self.files.server_name.as_deref()
    }

    /// The credentials for a new connection: the files as they are now if
    /// they changed and load; otherwise the last good ones. A version that
    /// does not load is logged at warning level naming the file, and
    /// counted, once.
    ///
    /// Reads the files on a blocking thread: a stuck file system must not
    /// hold up the runtime thread's keepalives.
    pub(crate) async fn for_new_connection(self: &Arc<Self>) -> Arc<ClientConfig> {
        let me = self.clone();
        match tokio::task::spawn_blocking(move || me.refresh()).await {
            Ok(config) => config,
            // The runtime is shutting down: any credentials will do.
            Err(_) => self.current(),
        }
    }

    fn current(&self) -> Arc<ClientConfig> {
        self.lock().config.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn refresh(&self) -> Arc<ClientConfig> {
        let read = Contents::read(&self.files);
        if let Ok(contents) = &read {
            let mut state = self.lock();
            if *contents == state.contents {
                state.refused = None;
                return state.config.clone();
            }
        }
        // Built outside the lock: parsing is the slow part.
        let built = read
            .as_ref()
            .map_err(|e| e.to_string())
            .and_then(|c| c.client_config(&self.files).map_err(|e| e.to_string()));
        let mut state = self.lock();
        match built {
            Ok(config) => {
                let config = Arc::new(config);
                if let Ok(contents) = read {
                    state.contents = contents;
                }
                state.config = config.clone();
                state.refused = None;
                Counters::bump(&self.counters.tls_reloads);
                log::info!("os-lively: TLS files changed; new connections use the new credentials");
                config
            }
            Err(why) => {
                let key = read.map_err(|e| e.to_string());
                if state.refused.as_ref() != Some(&key) {
                    Counters::bump(&self.counters.tls_files_refused);
                    log::warn!(
                        "os-lively: TLS files changed but do not load ({why}); keeping the previous credentials"
                    );
                    state.refused = Some(key);
                }
                state.config.clone()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    /// A CA certificate (PEM); any self-signed certificate will do.
    fn ca_pem(name: &str) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn changed_files_are_adopted_and_a_bad_version_is_refused_once() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ca_pem("first")).unwrap();
        let files = Tls {
            ca_file: Some(ca.clone()),
            ..Tls::default()
        };
        let counters = Arc::new(Counters::default());
        let creds = Credentials::load(&files, counters.clone()).unwrap();
        let first = creds.refresh();
        assert!(Arc::ptr_eq(&first, &creds.refresh()), "unchanged: reused");

        std::fs::write(&ca, "garbage\n").unwrap();
        assert!(
            Arc::ptr_eq(&first, &creds.refresh()),
            "bad: the old one kept"
        );
        assert!(Arc::ptr_eq(&first, &creds.refresh()));
        assert_eq!(counters.tls_files_refused.load(Ordering::Relaxed), 1);

        std::fs::remove_file(&ca).unwrap();
        assert!(Arc::ptr_eq(&first, &creds.refresh()), "missing: kept");
        assert_eq!(counters.tls_files_refused.load(Ordering::Relaxed), 2);

        std::fs::write(&ca, ca_pem("second")).unwrap();
        let second = creds.refresh();
        assert!(!Arc::ptr_eq(&first, &second), "good and changed: adopted");
        assert_eq!(counters.tls_reloads.load(Ordering::Relaxed), 1);
        assert_eq!(counters.tls_files_refused.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn the_first_load_names_the_bad_file() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("client.pem");
        let key = dir.path().join("client-key.pem");
        std::fs::write(&cert, ca_pem("not a client")).unwrap();
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let files = Tls {
            cert_file: Some(cert),
            key_file: Some(key.clone()),
            ..Tls::default()
        };
        let err = Credentials::load(&files, Arc::default()).err().unwrap();
        assert!(
            err.to_string().contains(&key.display().to_string()),
            "{err}"
        );
    }
}
