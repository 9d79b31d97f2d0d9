//! Status codes, the thread-local last-error message, and their texts.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{CString, c_char};

use crate::{Error, ErrorKind};

/// The status every fallible `lively_*` function returns.
///
/// Values are stable: a code keeps its number forever; retired numbers are
/// never reused. `LIVELY_RESULT_OK` is 0, so `if (rc)` tests for failure.
/// Codes 1-99 mirror the Rust `ErrorKind`s; 100 and up come from the C
/// boundary itself.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lively_result {
    /// Success.
    Ok = 0,
    /// An argument (uuid, type, host, region, enum value, buffer size) is invalid.
    InvalidArgument = 1,
    /// The named service does not exist.
    NotFound = 2,
    /// A write lost against concurrent writers, or the type+host pair
    /// belongs to another uuid.
    Conflict = 3,
    /// A record stored in etcd could not be decoded.
    CorruptRecord = 4,
    /// etcd could not be reached or refused the request; retry later.
    Unavailable = 5,
    /// The call did not finish within its deadline; retry later.
    Timeout = 6,
    /// etcd rejected the credentials.
    Auth = 7,
    /// The client was closed, or its runtime thread is gone.
    Closed = 8,
    /// The call would block the thread that drives the client (e.g. a
    /// blocking call from the library's own runtime thread).
    WouldDeadlock = 9,
    /// The client was created before `fork()`; the child must connect its own.
    Forked = 10,
    /// A configuration value is invalid.
    Config = 11,
    /// An unexpected internal failure.
    Internal = 12,
    /// A local view's watch has been disconnected longer than its
    /// staleness bound; it no longer vouches for liveness.
    Stale = 13,
    /// etcd is shedding load ("too many requests"); retry later with backoff.
    TooManyRequests = 14,
    /// etcd's database reached its space quota ("database space
    /// exceeded"): writes fail until an operator compacts, defragments and
    /// disarms the NOSPACE alarm. Reads still work.
    NoSpace = 15,
    /// The library panicked; the message is in `lively_last_error()`. The
    /// handle involved should be freed.
    Panic = 100,
    /// A required pointer argument was NULL.
    NullParameter = 101,
    /// A string argument was not valid UTF-8.
    InvalidUtf8 = 102,
    /// An error this version of the C layer has no dedicated code for.
    Unknown = 103,
}

impl lively_result {
    /// The code for a Rust error kind.
    pub(crate) fn from_kind(kind: ErrorKind) -> lively_result {
        match kind {
            ErrorKind::InvalidArgument => lively_result::InvalidArgument,
            ErrorKind::NotFound => lively_result::NotFound,
            ErrorKind::Conflict => lively_result::Conflict,
            ErrorKind::CorruptRecord => lively_result::CorruptRecord,
            ErrorKind::Unavailable => lively_result::Unavailable,
            ErrorKind::Timeout => lively_result::Timeout,
            ErrorKind::Auth => lively_result::Auth,
            ErrorKind::Closed => lively_result::Closed,
            ErrorKind::WouldDeadlock => lively_result::WouldDeadlock,
            ErrorKind::Forked => lively_result::Forked,
            ErrorKind::Config => lively_result::Config,
            ErrorKind::Internal => lively_result::Internal,
            ErrorKind::Stale => lively_result::Stale,
            ErrorKind::TooManyRequests => lively_result::TooManyRequests,
            ErrorKind::NoSpace => lively_result::NoSpace,
            #[allow(unreachable_patterns)] // ErrorKind is non_exhaustive
            _ => lively_result::Unknown,
        }
    }

    /// Validates an integer from C; never transmutes.
    pub(crate) fn from_u32(code: u32) -> Option<lively_result> {
        use lively_result::*;
        Some(match code {
            0 => Ok,
            1 => InvalidArgument,
            2 => NotFound,
            3 => Conflict,
            4 => CorruptRecord,
            5 => Unavailable,
            6 => Timeout,
            7 => Auth,
            8 => Closed,
            9 => WouldDeadlock,
            10 => Forked,
            11 => Config,
            12 => Internal,
            13 => Stale,
            14 => TooManyRequests,
            15 => NoSpace,
            100 => Panic,
            101 => NullParameter,
            102 => InvalidUtf8,
            103 => Unknown,
            _ => return None,
        })
    }

    /// The fixed text of a code, NUL-terminated.
    pub(crate) fn text(self) -> &'static str {
        use lively_result::*;
        match self {
            Ok => "ok\0",
            InvalidArgument => "invalid argument\0",
            NotFound => "not found\0",
            Conflict => "conflict\0",
            CorruptRecord => "corrupt record\0",
            Unavailable => "etcd unavailable\0",
            Timeout => "timed out\0",
            Auth => "authentication failed\0",
            Closed => "client closed\0",
            WouldDeadlock => "call would deadlock\0",
            Forked => "client used after fork\0",
            Config => "invalid configuration\0",
            Internal => "internal error\0",
            Stale => "view is stale\0",
            TooManyRequests => "etcd: too many requests\0",
            NoSpace => "etcd: database space exceeded\0",
            Panic => "panic in os-lively\0",
            NullParameter => "NULL parameter\0",
            InvalidUtf8 => "invalid UTF-8\0",
            Unknown => "unknown error\0",
        }
    }
}

/// A failure on its way out of an exported function: its code and the
/// detail that becomes `lively_last_error()`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: lively_result,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: lively_result, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn null(name: &str) -> Failure {
        Failure::new(
            lively_result::NullParameter,
            format!("NULL parameter: {name}"),
        )
    }

    pub(crate) fn utf8(name: &str) -> Failure {
        Failure::new(lively_result::InvalidUtf8, format!("invalid UTF-8: {name}"))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Failure {
        Failure::new(lively_result::InvalidArgument, message)
    }

    /// A configuration value out of range (every `lively_config_*` setter
    /// and `lively_config_from_env` report those as `LIVELY_RESULT_CONFIG`).
    pub(crate) fn config(message: impl Into<String>) -> Failure {
        Failure::new(lively_result::Config, message)
    }

    /// Records the message as the thread's last error and returns the code.
    pub(crate) fn record(self) -> lively_result {
        set_last_error(&self.message);
        self.code
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::new(lively_result::from_kind(e.kind()), e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_last_error(message: &str) {
    let c = super::cstr::to_cstring(message);
    let _ = LAST_ERROR.try_with(|slot| *slot.borrow_mut() = c);
}

/// Converts a body's outcome into its status code.
pub(crate) fn finish(r: Result<(), Failure>) -> lively_result {
    match r {
        Ok(()) => lively_result::Ok,
        Err(f) => f.record(),
    }
}

/// Records a caught panic as the thread's last error.
pub(crate) fn record_panic(payload: Box<dyn Any + Send>) {
    let detail = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    };
    set_last_error(&format!("panic in os-lively: {detail}"));
    // Dropping a payload whose Drop panics would abort; leak it instead.
    std::mem::forget(payload);
}

/// The calling thread's last failure message, valid until its next
/// failure (`""` if none failed yet).
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR
        .try_with(|slot| slot.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_distinct_code() {
        let kinds = [
            ErrorKind::InvalidArgument,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::CorruptRecord,
            ErrorKind::Unavailable,
            ErrorKind::Timeout,
            ErrorKind::Auth,
            ErrorKind::Closed,
            ErrorKind::WouldDeadlock,
            ErrorKind::Forked,
            ErrorKind::Config,
            ErrorKind::Internal,
            ErrorKind::Stale,
        ];
        let codes: std::collections::HashSet<u32> = kinds
            .iter()
            .map(|k| lively_result::from_kind(*k) as u32)
            .collect();
        assert_eq!(codes.len(), kinds.len());
        assert!(!codes.contains(&0));
        assert!(codes.iter().all(|c| *c < 100));
    }
}
