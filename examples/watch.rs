//! Prints every up/down change in the namespace (or of one TYPE).
//!
//! ```sh
//! OSLIVELY_ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --example watch -- [TYPE]
//! ```

mod common;

use os_lively::{Filter, SubscribeOptions};

fn main() {
    let filter = match std::env::args().nth(1) {
        Some(t) => Filter::all().service_type(&t),
        None => Filter::all(),
    };
    let client = common::connect();
    let options = SubscribeOptions {
        snapshot: true,
        ..SubscribeOptions::default()
    };
    let sub = client
        .subscribe(&filter, &options)
        .unwrap_or_else(|e| common::fail("subscribe", e));
    for event in &sub {
        let reason = event
            .reason
            .map(|r| format!(" ({r:?})"))
            .unwrap_or_default();
        println!(
            "{:?} {} {} {}{reason} @{}",
            event.kind, event.uuid, event.service_type, event.host, event.revision
        );
    }
}
