//! TLS to etcd with credentials that may rotate under a running client.
//!
//! A daemon lives for months; its certificates for weeks (cert-manager and
//! Vault rotate them in place). Credentials read once at connect would be
//! presented again on every reconnect, long after they expired. So the PEM
//! files are read again for every new connection ([`reload`]), through a
//! connector of our own under etcd-client's balancer ([`channel`]): nothing
//! that holds an etcd client (store, lease, watch hub, steering) needs to
//! know, since each new connection simply carries the current files.

pub(crate) mod channel;
mod reload;

pub(crate) use reload::Credentials;

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};

use crate::config::Tls;
use crate::error::{Error, ErrorKind, Result};

/// gRPC needs HTTP/2, negotiated by ALPN.
const ALPN_H2: &[u8] = b"h2";

/// One version of the configured files, as read from disk.
#[derive(Clone, PartialEq, Eq)]
struct Contents {
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl Contents {
    /// Reads every configured file; the error names the file, never its
    /// contents.
    fn read(files: &Tls) -> Result<Contents> {
        let ca = match &files.ca_file {
            Some(p) => Some(read(p, "CA file")?),
            None => None,
        };
        let identity = match (&files.cert_file, &files.key_file) {
            (Some(cert), Some(key)) => {
                Some((read(cert, "client certificate")?, read(key, "client key")?))
            }
            (None, None) => None,
            _ => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "a client certificate needs its key, and a key its certificate",
                ));
            }
        };
        Ok(Contents { ca, identity })
    }

    /// The rustls configuration these contents make; the error names the
    /// file at fault.
    fn client_config(&self, files: &Tls) -> Result<ClientConfig> {
        let provider = crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(crypto::ring::default_provider()));
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::new(ErrorKind::Config, format!("TLS: {e}")))?;
        let mut roots = RootCertStore::empty();
        if let (Some(ca), Some(path)) = (&self.ca, &files.ca_file) {
            for cert in certificates(ca, path, "CA file")? {
                roots
                    .add(cert)
                    .map_err(|e| bad(path, "CA file", &e.to_string()))?;
            }
        }
        let builder = builder.with_root_certificates(roots);
        let mut config = match (&self.identity, &files.cert_file, &files.key_file) {
            (Some((cert, key)), Some(cert_path), Some(key_path)) => {
                let chain = certificates(cert, cert_path, "client certificate")?;
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| bad(key_path, "client key", &e.to_string()))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    Error::new(
                        ErrorKind::Config,
                        format!(
                            "client certificate {} with key {}: {e}",
                            cert_path.display(),
                            key_path.display()
                        ),
                    )
                })?
            }
            _ => builder.with_no_client_auth(),
        };
        config.alpn_protocols.push(ALPN_H2.to_vec());
        Ok(config)
    }
}

fn certificates(pem: &[u8], path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(path, what, &e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(path, what, "no certificate in it"));
    }
    Ok(certs)
}

fn bad(path: &Path, what: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("{what} {}: {why}", path.display()),
    )
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| bad(path, what, &e.to_string()))?;
    if !bytes.starts_with(b"-----BEGIN") && !String::from_utf8_lossy(&bytes).contains("-----BEGIN")
    {
        return Err(bad(path, what, "not a PEM file"));
    }
    Ok(bytes)
}
