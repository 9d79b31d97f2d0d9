//! Reading the whole namespace into the model: at start, and again when
//! the watch's history was compacted (a resync).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::backoff::{Backoff, sleep_or_stop};
use crate::error::{Error, ErrorKind, Result};
use crate::stats::Counters;
use crate::store::Scan;

use super::hub::Hub;

/// Whether a load replaced the model.
pub(super) enum Loaded {
    Yes,
    /// The client is closing.
    Stopped,
}

impl Hub {
    /// Reads the whole namespace and replaces the model; every subscription
    /// is told the differences. Retries with backoff, at most `attempts`
    /// times when given (then the last error is returned); failures are
    /// logged at warning level.
    pub(super) async fn load(
        self: &Arc<Self>,
        resync: bool,
        attempts: Option<u32>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<Loaded> {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let mut failures = 0u32;
        loop {
            let e = match self.store.scan_at(Some(self.request_timeout)).await {
                Ok(scan) => {
                    let revision = scan.revision;
                    // Building 100,000 entries, and freeing the old ones,
                    // takes long enough to delay keepalives: off the runtime
                    // thread. The watch is down meanwhile, so nothing else
                    // writes the model.
                    let hub = self.clone();
                    let swapped = tokio::task::spawn_blocking(move || {
                        hub.swap_in(scan, resync);
                    })
                    .await;
                    if let Err(e) = swapped {
                        // Only a panic (or the runtime shutting down) gets here.
                        Error::new(
                            ErrorKind::Internal,
                            format!("rebuilding the model failed: {e}"),
                        )
                    } else {
                        if resync {
                            Counters::bump(&self.counters.resyncs);
                            log::warn!(
                                "os-lively: watch history compacted; re-listed the namespace at revision {revision} and resynced subscribers"
                            );
                        }
                        return Ok(Loaded::Yes);
                    }
                }
                Err(e) => e,
            };
            failures += 1;
            if attempts.is_some_and(|n| failures >= n) {
                return Err(e);
            }
            // Every failure of a bounded load; the first and every tenth of
            // an endless one (a resync), so a long outage stays visible
            // without flooding the log.
            if attempts.is_some() || failures % 10 == 1 {
                log::warn!(
                    "os-lively: reading the namespace for views and subscriptions failed (attempt {failures}), retrying: {e}"
                );
            }
            if sleep_or_stop(backoff.next_delay(), stop).await {
                return Ok(Loaded::Stopped);
            }
        }
    }

    /// Replaces the model with a full re-read; on a resync, every
    /// subscription that was keeping up falls behind from the model as it
    /// was, so each catches up by the differences (on its own consumer's
    /// thread). Blocking work: never on the runtime thread.
    fn swap_in(&self, scan: Scan, resync: bool) {
        let st = self.lock();
        if resync {
            let before = self.model.snapshot();
            for sub in &st.subs {
                sub.fall_behind(before.clone());
            }
        }
        self.model.replace(scan.services);
        self.keys.store(scan.keys, Ordering::Release);
        self.set_revision(scan.revision);
        drop(st);
        crate::model::release_freed_memory();
    }
}
