//! The library version, as macros for compile time and functions for run
//! time. The macros are literals (cbindgen copies them into the header); a
//! test checks them against `Cargo.toml`.

use std::ffi::c_char;

/// Major version of the library (and of the ABI: the soname is
/// `libos_lively.so.<major>`).
pub const LIVELY_VERSION_MAJOR: u32 = 0;
/// Minor version.
pub const LIVELY_VERSION_MINOR: u32 = 1;
/// Patch version.
pub const LIVELY_VERSION_PATCH: u32 = 0;
/// The version as one number, `(major << 16) | (minor << 8) | patch`
/// (0x000100 is 0.1.0), for `#if LIVELY_VERSION_NUMBER >= 0x000100`.
pub const LIVELY_VERSION_NUMBER: u32 = 0x000100;

/// `major.minor.patch` of the library actually loaded.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

fn part(s: &str) -> u32 {
    s.parse().unwrap_or(0)
}

/// The loaded library's version string, e.g. `"0.1.0"`.
///
/// Ownership: static storage; never free it.
/// Thread safety: thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn lively_version() -> *const c_char {
    lively_guard!({ VERSION.as_ptr().cast() })
}

/// The loaded library's version as `(major << 16) | (minor << 8) | patch`;
/// compare with `LIVELY_VERSION_NUMBER` from the header you compiled with.
///
/// Thread safety: thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn lively_version_number() -> u32 {
    lively_guard!({
        (part(env!("CARGO_PKG_VERSION_MAJOR")) << 16)
            | (part(env!("CARGO_PKG_VERSION_MINOR")) << 8)
            | part(env!("CARGO_PKG_VERSION_PATCH"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_constants_match_cargo() {
        assert_eq!(
            LIVELY_VERSION_NUMBER,
            (LIVELY_VERSION_MAJOR << 16) | (LIVELY_VERSION_MINOR << 8) | LIVELY_VERSION_PATCH
        );
        assert_eq!(LIVELY_VERSION_NUMBER, lively_version_number());
        let s = unsafe { std::ffi::CStr::from_ptr(lively_version()) };
        assert_eq!(
            s.to_str().unwrap(),
            format!("{LIVELY_VERSION_MAJOR}.{LIVELY_VERSION_MINOR}.{LIVELY_VERSION_PATCH}")
        );
    }
}
