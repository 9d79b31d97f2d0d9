//! Test certificates generated at test time: a CA, a server certificate for
//! 127.0.0.1, a client certificate, an expired client certificate, and an
//! unrelated CA.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub expired_cert: PathBuf,
    pub expired_key: PathBuf,
    pub other_ca: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().expect("ca key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.distinguished_name.push(DnType::CommonName, name);
    let pem = params.self_signed(&key).expect("self-sign").pem();
    (params, key, pem)
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).expect("write pem");
    p
}

impl Pki {
    pub fn generate() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let (ca_params, ca_key, ca_pem) = ca("os-lively test CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf =
            |sans: Vec<String>, cn: &str, eku: Vec<ExtendedKeyUsagePurpose>, expired: bool| {
                let key = KeyPair::generate().expect("key");
                let mut p = CertificateParams::new(sans).expect("params");
                p.distinguished_name.push(DnType::CommonName, cn);
                p.extended_key_usages = eku;
                if expired {
                    p.not_before = rcgen::date_time_ymd(2001, 1, 1);
                    p.not_after = rcgen::date_time_ymd(2002, 1, 1);
                }
                let cert = p.signed_by(&key, &issuer).expect("sign");
                (cert.pem(), key.serialize_pem())
            };
        let server = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            "etcd",
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            false,
        );
        let client = leaf(
            vec!["client".into()],
            "client",
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            false,
        );
        let expired = leaf(
            vec!["client".into()],
            "client",
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            true,
        );
        let (_, _, other_pem) = ca("some other CA");
        Pki {
            ca: write(d, "ca.pem", &ca_pem),
            server_cert: write(d, "server.pem", &server.0),
            server_key: write(d, "server-key.pem", &server.1),
            client_cert: write(d, "client.pem", &client.0),
            client_key: write(d, "client-key.pem", &client.1),
            expired_cert: write(d, "expired.pem", &expired.0),
            expired_key: write(d, "expired-key.pem", &expired.1),
            other_ca: write(d, "other-ca.pem", &other_pem),
            dir,
        }
    }

    /// etcd serving TLS with this PKI's server certificate.
    pub fn server_files(&self, client_cert_auth: bool) -> crate::common::TlsFiles {
        crate::common::TlsFiles {
            cert: self.server_cert.clone(),
            key: self.server_key.clone(),
            ca: self.ca.clone(),
            client_cert_auth,
        }
    }
}

/// An EC key pair (PEM private, PEM public) for etcd's JWT tokens.
pub fn jwt_keys(dir: &Path) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().expect("jwt key");
    (
        write(dir, "jwt.key", &key.serialize_pem()),
        write(dir, "jwt.pub", &key.public_key_pem()),
    )
}
