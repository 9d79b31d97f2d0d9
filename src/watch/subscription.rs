//! The public subscription handle, its canceller and options, and the
//! callback dispatcher thread.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::event::Event;
use crate::stats::Counters;
use crate::store::Filter;

use super::hub::Hub;
use super::options::SubscribeOptions;
use super::queue::Sub;

/// A live subscription. Events arrive in etcd revision order. Dropping it
/// cancels it.
///
/// Like every handle of a client, it keeps the client's connection alive
/// (lease, runtime thread, watch) while it lives, even after every
/// [`Client`](crate::Client) clone is dropped; [`Client::close`](crate::Client::close)
/// ends it (iteration ends, the callback stops and is dropped, reads return
/// [`ErrorKind::Closed`]). In a child forked after it was made, reads return
/// [`ErrorKind::Forked`].
pub struct Subscription {
    canceller: Canceller,
    pull: bool,
    /// Keeps the connection alive while this handle lives (dropped after
    /// the cancel in `Drop`).
    _keep: KeepAlive,
}

/// Whatever keeps a client's connection alive (a clone of the client),
/// held without knowing its type: the watch layer sits below the blocking
/// client and must not depend on it.
pub(crate) type KeepAlive = Box<dyn std::any::Any + Send + Sync>;

/// Cancels a subscription from anywhere, including from inside its own
/// callback. Cheap to clone. Unlike a [`Subscription`], it does not keep
/// the client's connection alive.
#[derive(Clone)]
pub struct Canceller {
    sub: Arc<Sub>,
    hub: Weak<Hub>,
    /// The process that made the subscription: a forked child has none of
    /// its threads to wait for.
    made: crate::fork::Stamp,
}

impl Canceller {
    /// Stops the subscription. Called outside its callback, it returns only
    /// once no callback is running and none will start (the callback has
    /// been dropped, so whatever it owned is released). Called from inside
    /// the callback, the current callback finishes and no other starts.
    /// Idempotent.
    pub fn cancel(&self) {
        if self.made.is_other_process() {
            // A forked child: the dispatcher thread exists only in the
            // parent, so there is nothing to stop or wait for here.
            return;
        }
        if let Some(hub) = self.hub.upgrade() {
            hub.unregister(&self.sub);
        }
        let mut q = self.sub.lock();
        q.cancelled = true;
        self.sub.cond.notify_all();
        let me = std::thread::current().id();
        while q.dispatcher.is_some_and(|d| d != me) {
            q = self.sub.cond.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        let inside_callback = q.dispatcher == Some(me);
        drop(q);
        if !inside_callback {
            let thread = self
                .sub
                .thread
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take();
            if let Some(t) = thread {
                let _ = t.join();
            }
        }
    }

    /// True once cancelled (or the client closed).
    pub fn is_cancelled(&self) -> bool {
        self.sub.lock().cancelled
    }
}

impl Subscription {
    /// Waits up to `timeout` for the next event; `Ok(None)` on timeout,
    /// `Err(Closed)` once cancelled or the client closed. Only for
    /// subscriptions without a callback.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Event>> {
        self.pull_check()?;
        let hub = self.canceller.hub.upgrade().ok_or_else(Error::closed)?;
        // A timeout too large for an `Instant` (Duration::MAX) waits forever.
        let deadline = Instant::now().checked_add(timeout);
        self.canceller.sub.pop(&|sub| hub.settle(sub), deadline)
    }

    /// Waits for the next event; `Err(Closed)` once cancelled.
    pub fn recv(&self) -> Result<Event> {
        self.pull_check()?;
        let hub = self.canceller.hub.upgrade().ok_or_else(Error::closed)?;
        loop {
            if let Some(e) = self.canceller.sub.pop(&|sub| hub.settle(sub), None)? {
                return Ok(e);
            }
        }
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Result<Option<Event>> {
        self.recv_timeout(Duration::ZERO)
    }

    fn pull_check(&self) -> Result<()> {
        // Checked first: in a forked child the queue is a frozen copy.
        if self.canceller.made.is_other_process() {
            return Err(Error::new(
                ErrorKind::Forked,
                "this subscription was created before fork(); the child must connect its own client",
            ));
        }
        if self.pull {
            Ok(())
        } else {
            Err(Error::invalid(
                "this subscription delivers to its callback; it has no queue to read",
            ))
        }
    }

    /// Cancels; see [`Canceller::cancel`].
    pub fn cancel(&self) {
        self.canceller.cancel();
    }

    /// A handle that can cancel this subscription from any thread.
    pub fn canceller(&self) -> Canceller {
        self.canceller.clone()
    }

    /// Events queued and not yet consumed.
    pub fn pending(&self) -> usize {
        self.canceller.sub.lock().events.len()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if self.canceller.made.is_other_process() {
            // A forked child: the queue and its thread handle belong to the
            // parent's threads; leak them rather than tear them down (the
            // client's own Drop leaks the connection likewise).
            std::mem::forget(self.canceller.sub.clone());
            return;
        }
        self.canceller.cancel();
    }
}

impl Iterator for &Subscription {
    type Item = Event;
    /// Blocks for the next event; ends when the subscription is cancelled.
    fn next(&mut self) -> Option<Event> {
        self.recv().ok()
    }
}

/// A boxed subscriber callback.
pub(crate) type Callback = Box<dyn FnMut(&Event) + Send + 'static>;

/// Registers a subscription on `hub` (already loaded) and, for a callback,
/// starts its dispatcher thread; `keep` keeps the connection alive while
/// the handle lives.
pub(crate) fn subscribe(
    keep: KeepAlive,
    hub: &Arc<Hub>,
    filter: Filter,
    options: &SubscribeOptions,
    callback: Option<Callback>,
) -> Result<Subscription> {
    if filter.status.is_some() {
        return Err(Error::invalid(
            "subscriptions filter by uuid, type, host or region; status changes are the events themselves",
        ));
    }
    let sub = hub.register(filter, options);
    let canceller = Canceller {
        sub: sub.clone(),
        hub: Arc::downgrade(hub),
        made: crate::fork::Stamp::now(),
    };
    let Some(mut callback) = callback else {
        return Ok(Subscription {
            canceller,
            pull: true,
            _keep: keep,
        });
    };
    let weak_hub = Arc::downgrade(hub);
    let thread_sub = sub.clone();
    let (started_tx, started_rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("lively-sub".into())
        .spawn(move || {
            let sub = thread_sub;
            sub.lock().dispatcher = Some(std::thread::current().id());
            let _ = started_tx.send(());
            while let Some(hub) = weak_hub.upgrade() {
                let next = sub.pop(&|s| hub.settle(s), None);
                drop(hub);
                match next {
                    Ok(Some(event)) => {
                        // A panicking callback must not end the dispatcher
                        // silently: every later event would be lost.
                        let run = std::panic::AssertUnwindSafe(|| callback(&event));
                        if let Err(p) = std::panic::catch_unwind(run) {
                            Counters::bump(&sub.counters.task_panics);
                            log::error!(
                                "os-lively: a subscription callback panicked on the event for {:?}; it keeps receiving events: {}",
                                event.uuid,
                                crate::runtime::supervise::message(p)
                            );
                        }
                    }
                    Ok(None) => {}
                    Err(_) => break,
                }
            }
            // Release what the callback owns before anyone waiting in cancel()
            // is told no callback runs any more.
            drop(callback);
            let mut q = sub.lock();
            q.cancelled = true;
            q.dispatcher = None;
            sub.cond.notify_all();
        });
    let spawned = spawned.map(|t| {
        *sub.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(t);
    });
    if let Err(e) = spawned {
        hub.unregister(&sub);
        return Err(Error::new(
            ErrorKind::Internal,
            format!("spawning the subscription thread: {e}"),
        ));
    }
    let _ = started_rx.recv();
    Ok(Subscription {
        canceller,
        pull: false,
        _keep: keep,
    })
}
