//! TLS client settings built from the configured PEM files.

use etcd_client::{Certificate, Identity, TlsOptions};

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};

/// The TLS options for `config`, or `None` when TLS is off. Files are read
/// here, at connect time, so a rotated certificate is picked up by the next
/// client; errors name the file, never its contents.
pub(crate) fn options(config: &Config) -> Result<Option<TlsOptions>> {
    let Some(tls) = config.tls() else {
        return Ok(None);
    };
    let mut opts = TlsOptions::new();
    if let Some(ca) = &tls.ca_file {
        opts = opts.ca_certificate(Certificate::from_pem(read(ca, "CA file")?));
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            opts = opts.identity(Identity::from_pem(
                read(cert, "client certificate")?,
                read(key, "client key")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(Error::new(
                ErrorKind::Config,
                "a client certificate needs its key, and a key its certificate",
            ));
        }
    }
    if let Some(name) = &tls.server_name {
        opts = opts.domain_name(name.clone());
    }
    Ok(Some(opts))
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::new(ErrorKind::Config, format!("{what} {}: {e}", path.display())))?;
    if !bytes.starts_with(b"-----BEGIN") && !String::from_utf8_lossy(&bytes).contains("-----BEGIN")
    {
        return Err(Error::new(
            ErrorKind::Config,
            format!("{what} {}: not a PEM file", path.display()),
        ));
    }
    Ok(bytes)
}
