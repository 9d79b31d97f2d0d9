//! Registers a service and keeps it UP until Ctrl-C (or for SECONDS).
//!
//! ```sh
//! OSLIVELY_ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --example register -- nova-compute host-7 [SECONDS]
//! ```
//!
//! Kill it with SIGKILL and watchers see it go DOWN (`expired`) after the
//! status TTL; let it end and they see `closed` at once.

mod common;

use std::time::Duration;

use os_lively::Service;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(service_type), Some(host)) = (args.first(), args.get(1)) else {
        eprintln!("usage: register TYPE HOST [SECONDS]");
        std::process::exit(2);
    };
    let seconds = match args.get(2).map(|s| s.parse::<u64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => {
            eprintln!(
                "register: SECONDS must be a whole number, not {:?}",
                args[2]
            );
            std::process::exit(2);
        }
    };
    let client = common::connect();
    let uuid = client
        .update(&Service::new(service_type, host))
        .unwrap_or_else(|e| common::fail("update", e));
    println!("registered {service_type} on {host}: {uuid} (UP while this runs)");
    // The client's own thread keeps the lease alive: nothing to do here.
    match seconds {
        Some(s) => std::thread::sleep(Duration::from_secs(s)),
        None => loop {
            std::thread::park();
        },
    }
    client.close().unwrap_or_else(|e| common::fail("close", e));
    println!("closed: {uuid} is DOWN");
}
