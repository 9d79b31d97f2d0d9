//! Subscriptions: one shared etcd watch per client over the namespace feeds
//! an in-memory model of every service; each change of the model becomes
//! events, filtered into each subscription's bounded queue.
//!
//! etcd-client's watch stream neither reconnects nor notices a dead
//! connection, so the watcher checks a quiet stream by reading etcd (never
//! by writing: a read-only user watches as well as any), reconnects with
//! jittered backoff, and resumes after the last revision seen. When that
//! revision was compacted it re-reads everything and each subscription
//! gets a `Resync` plus the differences from what it was told.
//!
//! One job per file: [`hub`] holds the shared state (model, revisions,
//! connected, ready); [`stream`] keeps the watch stream open and reopens
//! it; [`liveness`] tells a quiet stream from a dead one; [`load`] reads
//! the namespace; [`apply`] applies events to the model; [`registry`]
//! adds and removes subscriptions; [`catchup`] catches up one that fell
//! behind; [`diff`] turns a change of the model into events; [`queue`] is
//! each subscription's bounded queue; [`subscription`] is the public
//! handle and the callback dispatcher. None of them knows the blocking
//! client: a subscription keeps its connection alive through an opaque
//! handle the client gives it.

mod apply;
mod catchup;
mod diff;
mod hub;
mod liveness;
mod load;
mod options;
mod queue;
mod registry;
mod stream;
mod subscription;

pub(crate) use hub::Hub;
pub use options::SubscribeOptions;
#[cfg(feature = "test-hooks")]
pub use stream::hooks::{deafen_pending, deafen_watch};
pub(crate) use subscription::{Callback, subscribe};
pub use subscription::{Canceller, Subscription};
