//! Keeps the runtime thread awake for a moment around blocking calls.
//!
//! An idle runtime thread sleeps in `epoll_wait`. Waking it, for a caller's
//! request or for etcd's answer, is cheap on bare metal; on a virtual
//! machine its CPU is often halted, and each wake costs the hypervisor tens
//! of microseconds. On a 2-vCPU VM a call that does no I/O took ~65 µs back
//! to back and a 250 µs etcd read 1.27× a raw one; kept awake, 3–5 µs and
//! 1.01×. So, when the user opts in
//! ([`Config::call_polling`](crate::Config::call_polling); off by default,
//! since a caller making a call every few milliseconds would keep the
//! runtime spinning between them, several times a raw client's CPU), while
//! calls come and for the configured moment after the last one started or
//! ended (the benchmark's opt-in rows use 1 ms, about a loopback etcd
//! write), a task keeps the runtime polling instead of sleeping:
//! each turn yields to tokio, which polls epoll without blocking, and then
//! yields the CPU, so any other thread that wants it gets it. The moment a
//! turn finds it was kept waiting (the machine is busy, or a task ran
//! long), it stops, and the runtime sleeps as before. Background work alone
//! (keepalives, watches) never warms it: an idle client stays idle.
//!
//! The caller itself just sleeps on its channel: a caller that also polled
//! took CPU from etcd and made writes slower on a small machine.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// A turn that took longer than this means other threads want this CPU
/// (or a task ran long): stop polling. Not shorter: with etcd on the same
/// 2 vCPUs, 50 µs stopped the polling during most writes (the update floor
/// row went from 1.11× to 1.06× of the same raw transaction at 200 µs).
const BUSY_GAP: Duration = Duration::from_micros(200);

/// When calls last started or ended, and the task that keeps the runtime
/// awake after them.
pub(crate) struct Warmth {
    /// How long the runtime stays awake after a touch; zero: never.
    warm_for: Duration,
    base: Instant,
    /// Nanoseconds after `base` of the last touch.
    last: AtomicU64,
    /// True while the task is asleep (waiting for a touch).
    asleep: AtomicBool,
    wake: Notify,
}

impl Warmth {
    pub(crate) fn new(warm_for: Duration) -> Arc<Warmth> {
        Arc::new(Warmth {
            warm_for,
            base: Instant::now(),
            last: AtomicU64::new(0),
            asleep: AtomicBool::new(true),
            wake: Notify::new(),
        })
    }

    /// Marks call activity: the runtime stays awake `warm_for` from now.
    /// Called on the runtime thread, so waking the task costs no system call.
    pub(crate) fn touch(&self) {
        if self.warm_for.is_zero() {
            return;
        }
        self.last
            .store(self.nanos(Instant::now()), Ordering::Relaxed);
        if self.asleep.swap(false, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    fn since_touch(&self, now: Instant) -> Duration {
        Duration::from_nanos(
            self.nanos(now)
                .saturating_sub(self.last.load(Ordering::Relaxed)),
        )
    }

    /// The task: runs for the runtime's lifetime.
    pub(crate) async fn keep_warm(self: Arc<Self>) {
        // A restart after a panic may find the flag left awake: a touch
        // would then never wake this task.
        self.asleep.store(true, Ordering::Release);
        loop {
            self.wake.notified().await;
            super::supervise::checkpoint("call-polling");
            let mut prev = Instant::now();
            loop {
                let now = Instant::now();
                let idle = self.since_touch(now) > self.warm_for;
                let busy = now - prev > BUSY_GAP;
                if idle || busy {
                    self.asleep.store(true, Ordering::Release);
                    // A touch between the check and the store found us
                    // awake and did not wake us: look once more.
                    if busy || self.since_touch(Instant::now()) > self.warm_for {
                        break;
                    }
                    self.asleep.store(false, Ordering::Release);
                }
                tokio::task::yield_now().await;
                std::thread::yield_now();
                prev = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a current-thread runtime with `warmth`'s task beside it.
    fn with_task<T>(warmth: &Arc<Warmth>, f: impl std::future::Future<Output = T>) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let task = tokio::spawn(warmth.clone().keep_warm());
            let out = f.await;
            task.abort();
            out
        })
    }

    /// Waits (yielding to the task) until `warmth` is asleep or awake.
    async fn until_asleep(warmth: &Warmth, asleep: bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if warmth.asleep.load(Ordering::Acquire) == asleep {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        false
    }

    #[test]
    fn a_touch_keeps_the_runtime_awake_and_it_sleeps_again_after() {
        let warmth = Warmth::new(Duration::from_millis(20));
        with_task(&warmth, async {
            warmth.touch();
            assert!(!warmth.asleep.load(Ordering::Acquire));
            assert!(
                until_asleep(&warmth, true).await,
                "never went back to sleep"
            );
            // And a later touch wakes it again.
            warmth.touch();
            assert!(!warmth.asleep.load(Ordering::Acquire));
            assert!(until_asleep(&warmth, true).await);
        });
    }

    #[test]
    fn zero_polling_never_wakes_the_task() {
        let warmth = Warmth::new(Duration::ZERO);
        with_task(&warmth, async {
            for _ in 0..10 {
                warmth.touch();
                tokio::task::yield_now().await;
                assert!(warmth.asleep.load(Ordering::Acquire));
            }
        });
    }
}
