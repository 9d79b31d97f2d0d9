//! The panic boundary and pointer helpers. Every cast from a C pointer
//! happens here or in the handle helpers of each object's module.

use std::ffi::{CStr, c_char};

use super::result::{Failure, lively_result};

/// What an exported function returns when its body panicked.
pub(crate) trait PanicDefault {
    fn panic_value() -> Self;
}

impl PanicDefault for lively_result {
    fn panic_value() -> Self {
        lively_result::Panic
    }
}

impl<T> PanicDefault for *mut T {
    fn panic_value() -> Self {
        std::ptr::null_mut()
    }
}

impl<T> PanicDefault for *const T {
    fn panic_value() -> Self {
        std::ptr::null()
    }
}

impl PanicDefault for () {
    fn panic_value() -> Self {}
}

impl PanicDefault for u32 {
    fn panic_value() -> Self {
        0
    }
}

impl PanicDefault for i64 {
    fn panic_value() -> Self {
        0
    }
}

impl PanicDefault for bool {
    fn panic_value() -> Self {
        false
    }
}

/// Runs an exported function's body, catching a panic: the panic becomes
/// the calling thread's last error and the return type's
/// [`PanicDefault`] value (`LIVELY_RESULT_PANIC`, NULL, 0, nothing).
macro_rules! lively_guard {
    ($body:block) => {{
        match ::std::panic::catch_unwind(::std::panic::AssertUnwindSafe(|| $body)) {
            Ok(value) => value,
            Err(payload) => {
                $crate::capi::result::record_panic(payload);
                $crate::capi::guard::PanicDefault::panic_value()
            }
        }
    }};
}

/// `lively_guard!` for bodies written as `Result<(), Failure>` (so `?`
/// works): a failure is recorded as the thread's last error and returned
/// as its code.
macro_rules! lively_call {
    ($body:block) => {
        lively_guard!({
            let run = || -> ::std::result::Result<(), $crate::capi::result::Failure> { $body };
            $crate::capi::result::finish(run())
        })
    };
}

/// A required C string argument, borrowed for the call.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn arg_str<'a>(p: *const c_char, name: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::null(name));
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| Failure::utf8(name))
}

/// An optional C string argument: NULL is `None`.
///
/// # Safety
/// As [`arg_str`].
pub(crate) unsafe fn opt_str<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, Failure> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { arg_str(p, name) }.map(Some)
    }
}

/// A required output pointer: checked before any work is done, written
/// (with [`std::ptr::write`]) only on success.
pub(crate) fn arg_out<T>(p: *mut T, name: &str) -> Result<*mut T, Failure> {
    if p.is_null() {
        Err(Failure::null(name))
    } else {
        Ok(p)
    }
}

/// A byte buffer argument; `len == 0` accepts NULL.
///
/// # Safety
/// `p` points to `len` readable bytes valid for `'a` (or `len == 0`).
pub(crate) unsafe fn arg_bytes<'a>(
    p: *const u8,
    len: usize,
    name: &str,
) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(Failure::null(name));
    }
    // SAFETY: non-NULL, `len` bytes per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

pub(crate) use super::cstr::to_cstring;
