//! Routing the library's `log` records to a C callback, or to stderr.

use std::ffi::{c_char, c_void};
use std::sync::{Once, RwLock};

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

/// Receives one log message. `message` is valid only during the call. Called
/// from any thread (including library threads), possibly concurrently.
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
        let sink = *SINK.read().unwrap_or_else(|p| p.into_inner());
        match sink {
            Some(sink) => {
                let msg = to_cstring(&record.args().to_string());
                let level = lively_log_level::from_level(record.level());
                // SAFETY: the caller's callback, with a message valid for the call.
                unsafe { (sink.callback)(sink.userdata, level, msg.as_ptr()) };
            }
            None => {
                if record.level() <= log::Level::Warn {
                    eprintln!("os-lively {}: {}", record.level(), record.args());
                }
            }
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
/// Ownership: `userdata` is passed to every call; the library never frees
/// it. After this returns, a message already being delivered on another
/// thread may still reach the previous callback.
/// Thread safety: thread-safe. `callback` must be thread-safe: it is called
/// from library threads, possibly concurrently, and must not call
/// `lively_set_log_callback()`.
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
        assert_eq!(
            lively_set_log_callback(None, std::ptr::null_mut(), 0),
            lively_result::Ok
        );
        log::warn!(target: "os_lively::test", "to stderr now");
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
