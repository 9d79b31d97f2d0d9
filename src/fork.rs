//! A cheap test for "this handle was made in another process" (a child
//! forked after it was made).
//!
//! `getpid()` is a system call on every read (glibc stopped caching it), and
//! the view's `is_up` answers in about 100 ns; a fork generation bumped by a
//! `pthread_atfork` child handler costs one relaxed atomic load instead.

use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);
static INSTALL: Once = Once::new();
/// Set when the handler could not be installed: fall back to the pid.
static BY_PID: AtomicBool = AtomicBool::new(false);

extern "C" fn forked_child() {
    // Async-signal-safe: one atomic add, nothing else.
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// The process a handle was made in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    generation: u64,
    pid: u32,
}

impl Stamp {
    /// The current process.
    pub(crate) fn now() -> Stamp {
        INSTALL.call_once(|| {
            // SAFETY: registers a handler that only touches an atomic.
            let rc = unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
            if rc != 0 {
                BY_PID.store(true, Ordering::Relaxed);
            }
        });
        Stamp {
            generation: GENERATION.load(Ordering::Relaxed),
            pid: std::process::id(),
        }
    }

    /// True in a child forked after this stamp was taken.
    pub(crate) fn is_other_process(&self) -> bool {
        if BY_PID.load(Ordering::Relaxed) {
            return std::process::id() != self.pid;
        }
        GENERATION.load(Ordering::Relaxed) != self.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forked_child_is_another_process_and_the_parent_is_not() {
        let stamp = Stamp::now();
        assert!(!stamp.is_other_process());
        // SAFETY: the child only reads an atomic and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let code = if stamp.is_other_process() { 0 } else { 1 };
            // SAFETY: leaves the child at once, running no destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert!(!stamp.is_other_process());
    }
}
