//! Subscriptions: one shared etcd watch per client over the namespace feeds
//! an in-memory model of every service; each change of the model becomes
//! events, filtered into each subscription's bounded queue.
//!
//! etcd-client's watch stream neither reconnects nor notices a dead
//! connection, so the watcher asks for progress when the stream is quiet,
//! reconnects with jittered backoff, and resumes after the last revision
//! seen. When that revision was compacted it re-reads everything and each
//! subscription gets a `Resync` plus the differences from what it was told.
//!
//! [`hub`] keeps the shared watch and the model; [`diff`] turns a change of
//! the model into events; [`queue`] is each subscription's bounded queue;
//! [`subscription`] is the public handle and the callback dispatcher.

mod diff;
mod hub;
mod options;
mod queue;
mod subscription;

pub(crate) use hub::Hub;
pub use options::SubscribeOptions;
pub(crate) use subscription::{Callback, subscribe};
pub use subscription::{Canceller, Subscription};
