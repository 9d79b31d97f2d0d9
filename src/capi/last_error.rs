//! The exported functions that read status codes and messages: the C face
//! of [`super::result`], behind the panic guard like every other.

use std::ffi::c_char;

use super::result::{last_error_ptr, lively_result};

/// The message of the last failed `lively_*` call on the calling thread
/// (`""` if none failed yet). Successful calls leave it unchanged.
///
/// Ownership: the library owns the string; it stays valid until the next
/// failing `lively_*` call on the same thread. Do not free it.
/// Thread safety: thread-safe; each thread has its own message.
#[unsafe(no_mangle)]
pub extern "C" fn lively_last_error() -> *const c_char {
    lively_guard!({ last_error_ptr() })
}

/// A fixed English text for a status code (`"unknown code"` for a number
/// this version does not define).
///
/// Ownership: static storage; never free it.
/// Thread safety: thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn lively_result_str(code: u32) -> *const c_char {
    lively_guard!({
        match lively_result::from_u32(code) {
            Some(r) => r.text().as_ptr().cast(),
            None => c"unknown code".as_ptr(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capi::result::set_last_error;
    use std::ffi::CStr;

    fn s(p: *const c_char) -> String {
        unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string()
    }

    #[test]
    fn codes_round_trip_and_have_texts() {
        for n in 0..200u32 {
            if let Some(r) = lively_result::from_u32(n) {
                assert_eq!(r as u32, n);
                assert!(!s(lively_result_str(n)).is_empty());
            } else {
                assert_eq!(s(lively_result_str(n)), "unknown code");
            }
        }
        assert_eq!(s(lively_result_str(0)), "ok");
        assert_eq!(s(lively_result_str(101)), "NULL parameter");
    }

    #[test]
    fn last_error_is_per_thread() {
        set_last_error("here");
        assert_eq!(s(lively_last_error()), "here");
        std::thread::spawn(|| assert_eq!(s(lively_last_error()), ""))
            .join()
            .unwrap();
    }

    #[test]
    fn guard_turns_a_panic_into_a_code() {
        let r: lively_result = lively_guard!({ panic!("boom") });
        assert_eq!(r, lively_result::Panic);
        assert!(s(lively_last_error()).contains("boom"));
        let p: *const u8 = lively_guard!({ panic!("boom") });
        assert!(p.is_null());
    }
}
