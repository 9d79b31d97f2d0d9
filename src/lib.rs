//! os-lively: which services of a fleet are alive, kept in etcd v3.
//!
//! Daemons register themselves with [`Client::update`] and stay UP while their
//! client keeps its lease alive; other programs ask [`Client::is_up`],
//! [`Client::list`] services, or subscribe to changes. The API is blocking:
//! one internal single-threaded tokio runtime per client does the I/O.
//!
//! ```no_run
//! use os_lively::{Client, Config, Service};
//! let client = Client::connect(&Config::from_env()?)?;
//! let uuid = client.update(&Service::new("nova-compute", "host-7"))?;
//! assert!(client.is_up(&uuid)?);
//! # Ok::<(), os_lively::Error>(())
//! ```

mod auth;
mod backoff;
pub mod capi;
mod client;
mod config;
mod error;
mod event;
mod fork;
mod keys;
mod lease;
mod log_once;
mod model;
mod owner;
mod record;
mod runtime;
mod stats;
mod steer;
mod sticky;
mod store;
mod tls;
mod view;
mod watch;

pub use client::Client;
pub use config::{Config, env};
pub use error::{Error, ErrorKind, Result};
pub use event::{DownReason, Event, EventKind};
pub use record::{
    MAX_HEARTBEAT, MAX_NOTE_LEN, MAX_SEGMENT_LEN, MIN_HEARTBEAT, Service, Status, normalize_uuid,
    pb,
};
pub use stats::Stats;
pub use store::{Filter, ServiceInfo};
pub use view::{StalePolicy, View};
pub use watch::{Canceller, SubscribeOptions, Subscription};

/// Test-only (feature `test-hooks`): makes the next pass of a background
/// task (`"lease"`, `"owner"`, `"watch"`, `"steering"`, `"call-polling"`)
/// through its checkpoint panic, hang or return, in any client of the
/// process.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub use runtime::supervise::hooks::{inject_hang, inject_panic, inject_resync, inject_return};
/// Test-only (feature `test-hooks`): makes the watch stream open now drop
/// what arrives on it, as a silent stream would.
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
pub use watch::{deafen_pending, deafen_watch};
