//! Rust strings as C strings.

use std::ffi::CString;

/// Copies `s` into a C string, replacing any interior NUL (which our
/// validated strings never contain) so the conversion cannot fail.
pub(crate) fn to_cstring(s: &str) -> CString {
    match CString::new(s) {
        Ok(c) => c,
        Err(_) => CString::new(s.replace('\0', "\u{fffd}")).unwrap_or_default(),
    }
}
