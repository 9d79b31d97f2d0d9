//! The etcd connection every example uses, from the environment.

use os_lively::{Client, Config};

/// Connects to the etcd named by `OSLIVELY_ETCD_ENDPOINTS` (e.g.
/// `127.0.0.1:2379`; the other `OSLIVELY_*` variables apply too), or
/// exits with a message saying how to name one.
pub fn connect() -> Client {
    if std::env::var_os("OSLIVELY_ETCD_ENDPOINTS").is_none() {
        eprintln!(
            "set OSLIVELY_ETCD_ENDPOINTS to an etcd endpoint, e.g.\n  \
             OSLIVELY_ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --example {}",
            example_name()
        );
        std::process::exit(2);
    }
    let config = Config::from_env().unwrap_or_else(|e| fail("configuration", e));
    Client::connect(&config).unwrap_or_else(|e| fail("connect", e))
}

/// Prints `what: error` and exits 1.
pub fn fail(what: &str, e: os_lively::Error) -> ! {
    eprintln!("{}: {what}: {e}", example_name());
    std::process::exit(1)
}

fn example_name() -> String {
    std::env::args()
        .next()
        .and_then(|p| {
            std::path::Path::new(&p)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "example".into())
}
