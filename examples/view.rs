//! A local, watch-fed view: lists the services and their liveness once a
//! second, each read answered without a round trip to etcd.
//!
//! ```sh
//! OSLIVELY_ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --example view -- [ROUNDS]
//! ```

mod common;

use std::time::Duration;

use os_lively::Filter;

fn main() {
    let rounds = match std::env::args().nth(1).map(|s| s.parse::<u64>()) {
        None => u64::MAX,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("view: ROUNDS must be a whole number");
            std::process::exit(2);
        }
    };
    let client = common::connect();
    let view = client.view().unwrap_or_else(|e| common::fail("view", e));
    view.sync(Duration::from_secs(10))
        .unwrap_or_else(|e| common::fail("sync", e));
    for round in 0..rounds {
        if round > 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
        let services = view
            .list(&Filter::all())
            .unwrap_or_else(|e| common::fail("list", e));
        println!("revision {}: {} services", view.revision(), services.len());
        for s in services {
            let state = if s.up { "UP" } else { "DOWN" };
            println!(
                "  {} {} {} {state}",
                s.service.uuid, s.service.service_type, s.service.host
            );
        }
    }
}
