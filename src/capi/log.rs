//! Routing the library's `log` records to a C callback, or to stderr.
//!
//! A C daemon's logger may block (syslog back-pressure, a mutex held by a
//! thread that is inside a `lively_*` call), and so may stderr (a pipe
//! nobody reads); a write to a closed stderr fails (EPIPE, where the host
//! ignores SIGPIPE, as Python and most network daemons do). Run on the
//! thread that keeps leases alive, either would delay keepalives into a
//! false DOWN, and `eprintln!` would panic that thread. So every record, for
//! the callback or for stderr alike, goes through a bounded queue to a
//! thread of its own (`lively-log`); when the sink falls a whole queue
//! behind, further records are dropped and counted, never waited for, and a
//! failed stderr write is counted as dropped, never a panic. A forked child
//! (which inherits no thread but the one that forked) starts a log thread
//! of its own on its first record, so its lines are delivered too.

use std::ffi::{c_char, c_void};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Once, RwLock};

use crate::stats::LOG_LINES_DROPPED;

use super::guard::to_cstring;
use super::result::{Failure, lively_result};

/// Severity of a log message (the `log` crate's levels).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lively_log_level {
    /// Something failed.
    Error = 1,
    /// Something needs attention (lease re-grants, reconnects, resyncs,
    /// skipped corrupt keys are always logged at this level).
    Warn = 2,
    /// Normal but notable.
    Info = 3,
    /// For debugging.
    Debug = 4,
    /// Very verbose.
    Trace = 5,
}

impl lively_log_level {
    fn from_level(l: log::Level) -> lively_log_level {
        match l {
            log::Level::Error => lively_log_level::Error,
            log::Level::Warn => lively_log_level::Warn,
            log::Level::Info => lively_log_level::Info,
            log::Level::Debug => lively_log_level::Debug,
            log::Level::Trace => lively_log_level::Trace,
        }
    }

    fn filter_from_u32(v: u32) -> Option<log::LevelFilter> {
        Some(match v {
            0 => log::LevelFilter::Off,
            1 => log::LevelFilter::Error,
            2 => log::LevelFilter::Warn,
            3 => log::LevelFilter::Info,
            4 => log::LevelFilter::Debug,
            5 => log::LevelFilter::Trace,
            _ => return None,
        })
    }
}

/// Receives one log message. `message` is valid only during the call.
/// Called on a library thread of its own, one message at a time, in the
/// order they were logged; never on a thread that keeps leases alive, so a
/// callback that blocks delays only later messages (see
/// `lively_set_log_callback()`).
/// Must not throw or unwind: a C++ exception (or `longjmp`) leaving the
/// callback crosses Rust frames and aborts the process; catch everything
/// inside it (the C++ header `os_lively.hpp` does).
pub type lively_log_callback = Option<
    unsafe extern "C" fn(userdata: *mut c_void, level: lively_log_level, message: *const c_char),
>;

#[derive(Clone, Copy)]
struct Sink {
    callback: unsafe extern "C" fn(*mut c_void, lively_log_level, *const c_char),
    userdata: *mut c_void,
}

// SAFETY: the documented contract of `lively_set_log_callback()`: the
// callback and userdata may be used from any thread.
unsafe impl Send for Sink {}
unsafe impl Sync for Sink {}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);
static INIT: Once = Once::new();

/// Messages waiting for the callback beyond this many are dropped (and
/// counted): a bound on memory while a callback blocks.
pub(crate) const LOG_QUEUE_CAPACITY: usize = 1024;

/// One record on its way to the callback.
struct Line {
    level: log::Level,
    message: String,
}

/// The queue to the log thread of the process it was made in.
struct Route {
    made: crate::fork::Stamp,
    /// `None`: the thread could not start.
    tx: Option<SyncSender<Line>>,
}

/// The current route, leaked: a forked child replaces the parent's (whose
/// thread does not exist in the child) and never touches it again, not even
/// to drop it (its channel's locks may have been held by a parent thread at
/// the fork).
static ROUTE: AtomicPtr<Route> = AtomicPtr::new(std::ptr::null_mut());
/// Records queued and records handled by the log thread (for `drain`).
static QUEUED: AtomicU64 = AtomicU64::new(0);
static HANDLED: AtomicU64 = AtomicU64::new(0);

/// The queue to this process's log thread, starting the thread on first
/// use, and again in a forked child: after `fork()` only the forking thread
/// exists, so lines sent to the parent's thread would wait for ever.
fn queue() -> Option<&'static SyncSender<Line>> {
    let current = ROUTE.load(Ordering::Acquire);
    // SAFETY: a route is leaked once published, never freed.
    if let Some(route) = unsafe { current.as_ref() } {
        if !route.made.is_other_process() {
            return route.tx.as_ref();
        }
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(LOG_QUEUE_CAPACITY);
    let fresh = Box::into_raw(Box::new(Route {
        made: crate::fork::Stamp::now(),
        tx: std::thread::Builder::new()
            .name("lively-log".into())
            .spawn(move || deliver_forever(rx))
            .ok()
            .map(|_| tx),
    }));
    match ROUTE.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: just published, never freed.
        Ok(_) => unsafe { &*fresh }.tx.as_ref(),
        Err(won) => {
            // Another thread started one first: ours ends when its sender
            // is dropped here.
            // SAFETY: `fresh` was never published.
            drop(unsafe { Box::from_raw(fresh) });
            // SAFETY: published, never freed.
            unsafe { &*won }.tx.as_ref()
        }
    }
}

/// Queues `line` for the log thread, or counts it dropped.
fn enqueue(line: Line) {
    let sent = match queue() {
        Some(tx) => match tx.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        },
        None => false,
    };
    if sent {
        QUEUED.fetch_add(1, Ordering::AcqRel);
    } else {
        LOG_LINES_DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// The log thread: hands each line to the callback installed when it is
/// delivered (or to stderr once none is), and reports drops once it has
/// caught up.
fn deliver_forever(rx: Receiver<Line>) {
    let mut reported = 0u64;
    for line in rx {
        deliver(line.level, &line.message);
        HANDLED.fetch_add(1, Ordering::AcqRel);
        let dropped = LOG_LINES_DROPPED.load(Ordering::Relaxed);
        if dropped > reported {
            let message = format!(
                "{} log message(s) dropped: the log sink fell {LOG_QUEUE_CAPACITY} messages behind or failed",
                dropped - reported
            );
            deliver(log::Level::Warn, &message);
            // Read after the report: a report that itself failed (a dead
            // stderr) is not reported in turn.
            reported = LOG_LINES_DROPPED.load(Ordering::Relaxed);
        }
    }
}

/// A message without the `os-lively: ` its text may start with: each sink
/// names the library once (stderr's `os-lively WARN: ` prefix, the host's
/// logger name), never twice.
fn unprefixed(message: &str) -> &str {
    message.strip_prefix("os-lively: ").unwrap_or(message)
}

fn deliver(level: log::Level, message: &str) {
    let sink = *SINK.read().unwrap_or_else(|p| p.into_inner());
    match sink {
        Some(sink) => {
            let msg = to_cstring(message);
            let level = lively_log_level::from_level(level);
            // A panic must not end the log thread (none should happen: the
            // callback is C), so it is caught and the line forgotten.
            let _ = std::panic::catch_unwind(|| {
                // SAFETY: the caller's callback, with a message valid for the call.
                unsafe { (sink.callback)(sink.userdata, level, msg.as_ptr()) };
            });
        }
        None => {
            if level <= log::Level::Warn {
                write_stderr(level, message);
            }
        }
    }
}

/// Writes one line to stderr; a failure (EPIPE, EAGAIN on a non-blocking
/// descriptor, a closed descriptor) counts the line as dropped.
fn write_stderr(level: log::Level, message: &str) {
    use std::io::Write;
    let line = format!("os-lively {level}: {message}\n");
    if std::io::stderr().lock().write_all(line.as_bytes()).is_err() {
        LOG_LINES_DROPPED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Waits (at most `timeout`) until every line queued so far was handled.
#[cfg(test)]
pub(crate) fn drain(timeout: std::time::Duration) -> bool {
    let target = QUEUED.load(Ordering::Acquire);
    let deadline = std::time::Instant::now() + timeout;
    while HANDLED.load(Ordering::Acquire) < target {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    true
}

struct CLogger;

static LOGGER: CLogger = CLogger;

impl CLogger {
    /// Our own records at any level; other crates' (transport) only from
    /// warnings up, so a debug callback is not flooded by HTTP/2 frames.
    fn wanted(meta: &log::Metadata<'_>) -> bool {
        meta.level() <= log::Level::Warn || meta.target().starts_with("os_lively")
    }
}

impl log::Log for CLogger {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.level() <= log::max_level() && CLogger::wanted(meta)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let has_sink = SINK.read().unwrap_or_else(|p| p.into_inner()).is_some();
        if has_sink || record.level() <= log::Level::Warn {
            // Never write here, to the callback or to stderr: this may be
            // the runtime thread.
            let message = record.args().to_string();
            enqueue(Line {
                level: record.level(),
                message: unprefixed(&message).to_string(),
            });
        }
    }

    fn flush(&self) {}
}

/// Installs the C-facing logger once (unless the host program installed
/// another `log` logger first): warnings and errors to stderr by default.
pub(crate) fn ensure_logger() {
    INIT.call_once(|| {
        if log::set_logger(&LOGGER).is_ok() {
            log::set_max_level(log::LevelFilter::Warn);
        }
    });
}

/// Routes the library's log messages up to `max_level` (a
/// `lively_log_level`, or 0 for none) to `callback`. With `callback` NULL,
/// messages go back to the default: warnings and errors on stderr, nothing
/// on stdout.
///
/// `callback` runs on a library thread of its own (`lively-log`), one
/// message at a time, never on a thread that keeps leases alive: it may
/// block (syslog back-pressure, a mutex held by a thread inside a
/// `lively_*` call) without delaying keepalives. While it blocks, up to
/// 1024 messages wait in a queue; later ones are dropped, counted in
/// `lively_stats.log_lines_dropped`, and reported by a warning once the
/// callback catches up.
///
/// Ownership: `userdata` is passed to every call; the library never frees
/// it. Each message goes to the callback installed when it is delivered;
/// after this returns, a message already being delivered may still reach
/// the previous callback.
/// Thread safety: thread-safe. `callback` is called from a library
/// thread and must not call `lively_set_log_callback()`.
#[must_use]
#[unsafe(no_mangle)]
pub extern "C" fn lively_set_log_callback(
    callback: lively_log_callback,
    userdata: *mut c_void,
    max_level: u32,
) -> lively_result {
    lively_call!({
        ensure_logger();
        let filter = lively_log_level::filter_from_u32(max_level).ok_or_else(|| {
            Failure::invalid(format!("max_level: {max_level} is not a lively_log_level"))
        })?;
        let sink = callback.map(|callback| Sink { callback, userdata });
        *SINK.write().unwrap_or_else(|p| p.into_inner()) = sink;
        log::set_max_level(if sink.is_some() {
            filter
        } else {
            log::LevelFilter::Warn
        });
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    static SEEN: std::sync::Mutex<Vec<(u32, String)>> = std::sync::Mutex::new(Vec::new());

    unsafe extern "C" fn record(ud: *mut c_void, level: lively_log_level, msg: *const c_char) {
        assert_eq!(ud as usize, 7);
        let msg = unsafe { std::ffi::CStr::from_ptr(msg) }
            .to_string_lossy()
            .into_owned();
        // Delivered on the log thread, never on the thread that logged.
        let msg = match std::thread::current().name() {
            Some("lively-log") => msg,
            other => format!("{msg} (on thread {other:?})"),
        };
        SEEN.lock().unwrap().push((level as u32, msg));
    }

    #[test]
    fn records_reach_the_callback_by_level_and_target() {
        assert_eq!(
            lively_set_log_callback(Some(record), 7 as *mut c_void, 3),
            lively_result::Ok
        );
        log::warn!(target: "os_lively::test", "lease re-granted");
        log::info!(target: "os_lively::test", "info line");
        log::debug!(target: "os_lively::test", "too verbose");
        log::info!(target: "h2::codec", "transport chatter");
        assert!(drain(std::time::Duration::from_secs(10)));
        assert_eq!(
            lively_set_log_callback(None, std::ptr::null_mut(), 0),
            lively_result::Ok
        );
        log::warn!(target: "os_lively::test", "to stderr now");
        assert!(drain(std::time::Duration::from_secs(10)));
        let seen = SEEN.lock().unwrap().clone();
        let ours: Vec<_> = seen
            .iter()
            .filter(|(_, m)| !m.contains("transport"))
            .collect();
        assert!(
            ours.contains(&&(2, "lease re-granted".to_string())),
            "{seen:?}"
        );
        assert!(ours.contains(&&(3, "info line".to_string())), "{seen:?}");
        assert!(
            !seen.iter().any(|(_, m)| m == "too verbose"
                || m == "transport chatter"
                || m == "to stderr now")
        );
    }

    #[test]
    fn bad_levels_are_refused() {
        assert_eq!(
            lively_set_log_callback(None, std::ptr::null_mut(), 9),
            lively_result::InvalidArgument
        );
    }
}
