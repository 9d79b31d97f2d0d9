//! `lively_config`: connection settings, built and then handed to
//! `lively_client_connect`.

use std::ffi::c_char;
use std::time::Duration;

use super::guard::{arg_out, arg_str};
use super::result::{Failure, lively_result};
use crate::Config;

/// Connection settings (endpoints, namespace, TTL, timeouts, credentials).
///
/// Every setter refuses a value it cannot use with one code per kind of
/// mistake: a NULL pointer is `LIVELY_RESULT_NULL_PARAMETER`, a string that
/// is not UTF-8 `LIVELY_RESULT_INVALID_UTF8`, and any other bad value (an
/// empty endpoint list, a TTL of 0 or above a year, a timeout of 0 or above
/// a day) `LIVELY_RESULT_CONFIG`; a refused value leaves the config as it
/// was. Limits: status TTL 1 to 31536000 s; connect and request timeouts 1
/// to 86400000 ms; call polling 0 to 100000 µs; namespace at most 128
/// bytes without control characters; host names at most 253 bytes.
///
/// Created by `lively_config_new()` or `lively_config_from_env()`, released
/// by `lively_config_free()`. Not thread-safe: do not change one config from
/// two threads at once. `lively_client_connect()` copies it, so it may be
/// freed right after connecting.
pub struct lively_config {
    _private: [u8; 0],
}

impl lively_config {
    fn boxed(config: Config) -> *mut lively_config {
        Box::into_raw(Box::new(config)).cast()
    }

    /// Borrows the `Config` behind a handle.
    ///
    /// # Safety
    /// `p` is NULL or a live handle from `lively_config_new`/`_from_env`.
    pub(crate) unsafe fn get<'a>(p: *const lively_config) -> Result<&'a Config, Failure> {
        // SAFETY: the handle was made by `boxed` from a `Config`.
        unsafe { p.cast::<Config>().as_ref() }.ok_or_else(|| Failure::null("config"))
    }

    /// # Safety
    /// As [`lively_config::get`], and not used by another thread meanwhile.
    unsafe fn get_mut<'a>(p: *mut lively_config) -> Result<&'a mut Config, Failure> {
        // SAFETY: as `get`; exclusive per the documented contract.
        unsafe { p.cast::<Config>().as_mut() }.ok_or_else(|| Failure::null("config"))
    }

    /// A new configuration with the defaults: `http://localhost:2379`, no
    /// namespace, 60 s status TTL, 5 s connect and request timeouts, no
    /// authentication.
    ///
    /// Ownership: the caller owns the result and frees it with
    /// `lively_config_free()`. Returns NULL only if the library panicked.
    /// Thread safety: thread-safe.
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_config_new() -> *mut lively_config {
        lively_guard!({
            super::log::ensure_logger();
            lively_config::boxed(Config::new())
        })
    }

    /// The defaults overridden by the `OSLIVELY_*` environment variables
    /// (`OSLIVELY_ETCD_HOST`, `OSLIVELY_ETCD_PORT`,
    /// `OSLIVELY_ETCD_KEY_NAMESPACE`, `OSLIVELY_STATUS_TTL`, ...). A variable
    /// that is set but invalid (not UTF-8, unparsable, out of range) fails
    /// with `LIVELY_RESULT_CONFIG` naming it; none is ever ignored. Ranges
    /// as for the setters (`OSLIVELY_STATUS_TTL` 1 to 31536000 whole
    /// seconds; `OSLIVELY_ETCD_CONNECT_TIMEOUT` and
    /// `OSLIVELY_ETCD_REQUEST_TIMEOUT` seconds above 0, at most 86400).
    ///
    /// Ownership: on success `*out` receives a config the caller frees with
    /// `lively_config_free()`; on failure `*out` is untouched.
    /// Thread safety: thread-safe (reads the environment).
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_config_from_env(out: *mut *mut lively_config) -> lively_result {
        lively_call!({
            super::log::ensure_logger();
            let out = arg_out(out, "out")?;
            let config = Config::from_env()?;
            // SAFETY: `out` is non-NULL and points to writable storage.
            unsafe { out.write(lively_config::boxed(config)) };
            Ok(())
        })
    }

    /// Frees a configuration. NULL is a no-op.
    ///
    /// Ownership: takes `config`; do not use it afterwards. Clients already
    /// connected with it are unaffected.
    /// Thread safety: not with other uses of the same config.
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_config_free(config: *mut lively_config) {
        lively_guard!({
            if !config.is_null() {
                // SAFETY: made by `boxed`, freed once per the contract.
                drop(unsafe { Box::from_raw(config.cast::<Config>()) });
            }
        })
    }

    /// Sets the etcd endpoints from a comma-separated list, e.g.
    /// `"http://10.0.0.1:2379,http://10.0.0.2:2379"` (a bare `host:port`
    /// gets `http://`). Spaces around entries are ignored.
    ///
    /// Ownership: `endpoints` is only read during the call.
    /// Thread safety: not with other uses of the same config.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_config_set_endpoints(
        config: *mut lively_config,
        endpoints: *const c_char,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and string per the documented contract.
            let config = unsafe { lively_config::get_mut(config) }?;
            let list = unsafe { arg_str(endpoints, "endpoints") }?;
            let list: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            config.endpoints(&list)?;
            Ok(())
        })
    }

    /// Sets the etcd endpoints from an array of `count` strings.
    ///
    /// Ownership: the array and its strings are only read during the call.
    /// Thread safety: not with other uses of the same config.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_config_set_endpoints_array(
        config: *mut lively_config,
        endpoints: *const *const c_char,
        count: usize,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle per the documented contract.
            let config = unsafe { lively_config::get_mut(config) }?;
            if endpoints.is_null() {
                return Err(Failure::null("endpoints"));
            }
            let mut list = Vec::with_capacity(count);
            for i in 0..count {
                // SAFETY: `endpoints` points to `count` string pointers.
                let p = unsafe { *endpoints.add(i) };
                list.push(unsafe { arg_str(p, "endpoints[i]") }?);
            }
            config.endpoints(&list)?;
            Ok(())
        })
    }

    /// Sets the key namespace (`""` for none, or a name such as `"prod"`;
    /// keys then live under `/prod/services/...`).
    ///
    /// Ownership: `name` is only read during the call.
    /// Thread safety: not with other uses of the same config.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_config_set_namespace(
        config: *mut lively_config,
        name: *const c_char,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and string per the documented contract.
            let config = unsafe { lively_config::get_mut(config) }?;
            let ns = unsafe { arg_str(name, "name") }?;
            config.namespace(ns)?;
            Ok(())
        })
    }

    /// Sets the status TTL in seconds: how long after a registering process
    /// dies its services stay UP. From 1 to 31536000 (a year); outside is
    /// `LIVELY_RESULT_CONFIG`. etcd raises a TTL below its minimum.
    ///
    /// Thread safety: not with other uses of the same config.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_config_set_status_ttl(
        config: *mut lively_config,
        seconds: u64,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle per the documented contract.
            let config = unsafe { lively_config::get_mut(config) }?;
            let max = Config::MAX_STATUS_TTL.as_secs();
            if seconds == 0 || seconds > max {
                return Err(Failure::config(format!(
                    "status TTL {seconds} s: must be from 1 to {max} seconds"
                )));
            }
            config.status_ttl(Duration::from_secs(seconds));
            Ok(())
        })
    }

    /// Sets how long `lively_client_connect()` waits, in milliseconds, from
    /// 1 to 86400000 (a day); outside is `LIVELY_RESULT_CONFIG`.
    ///
    /// Thread safety: not with other uses of the same config.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_config_set_connect_timeout_ms(
        config: *mut lively_config,
        milliseconds: u64,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle per the documented contract.
            let config = unsafe { lively_config::get_mut(config) }?;
            check_timeout_ms("connect timeout", milliseconds)?;
            config.connect_timeout(Duration::from_millis(milliseconds));
            Ok(())
        })
    }

    /// Sets how long the client's runtime thread keeps polling after a
    /// call, in microseconds (default 0: off; above 100000 is
    /// `LIVELY_RESULT_CONFIG`). An opt-in: polling brings a call's latency
    /// close to a raw etcd call's on a virtual machine, where waking a
    /// sleeping thread is slow, but a caller making calls every few
    /// milliseconds then keeps the runtime thread busy between them,
    /// several times a raw client's CPU. Hot paths read from a view.
    ///
    /// Thread safety: not with other uses of the same config.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_config_set_call_polling_us(
        config: *mut lively_config,
        microseconds: u64,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle per the documented contract.
            let config = unsafe { lively_config::get_mut(config) }?;
            let polling = Duration::from_micros(microseconds);
            if polling > crate::config::MAX_CALL_POLLING {
                return Err(Failure::config(format!(
                    "call polling {microseconds} µs: at most 100000 microseconds"
                )));
            }
            config.call_polling(polling);
            Ok(())
        })
    }

    /// Sets whether the library gives freed heap back to the system
    /// (glibc's `malloc_trim(0)`) after each full read of the namespace
    /// (a view's or subscription's first load, a re-read after a
    /// compaction): `true` on, `false` off (the default). The trim is
    /// process-wide (it walks every malloc arena of the host's process),
    /// so once a client configured with it connects, every client's full
    /// reads trim.
    ///
    /// Thread safety: not with other uses of the same config.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_config_set_release_memory(
        config: *mut lively_config,
        release: bool,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle per the documented contract.
            let config = unsafe { lively_config::get_mut(config) }?;
            config.release_memory(release);
            Ok(())
        })
    }

    /// Sets how long each call waits for etcd, in milliseconds, from 1 to
    /// 86400000 (a day); outside is `LIVELY_RESULT_CONFIG`.
    ///
    /// Thread safety: not with other uses of the same config.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_config_set_request_timeout_ms(
        config: *mut lively_config,
        milliseconds: u64,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle per the documented contract.
            let config = unsafe { lively_config::get_mut(config) }?;
            check_timeout_ms("request timeout", milliseconds)?;
            config.request_timeout(Duration::from_millis(milliseconds));
            Ok(())
        })
    }

    /// Sets etcd user/password authentication. The password is never
    /// logged.
    ///
    /// Ownership: both strings are copied.
    /// Thread safety: not with other uses of the same config.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_config_set_user(
        config: *mut lively_config,
        user: *const c_char,
        password: *const c_char,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and strings per the documented contract.
            let config = unsafe { lively_config::get_mut(config) }?;
            let user = unsafe { arg_str(user, "user") }?;
            let password = unsafe { arg_str(password, "password") }?;
            config.user(user, password)?;
            Ok(())
        })
    }

    /// Verifies etcd's server certificate against the CA in the PEM file
    /// `path` and switches every endpoint to `https://`.
    ///
    /// Ownership: `path` is copied (the file is read at connect time).
    /// Thread safety: not with other uses of the same config.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_config_set_tls_ca_file(
        config: *mut lively_config,
        path: *const c_char,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and string per the documented contract.
            let config = unsafe { lively_config::get_mut(config) }?;
            let path = unsafe { arg_str(path, "path") }?;
            config.tls_ca_file(path)?;
            Ok(())
        })
    }

    /// Presents a client certificate and key (PEM files) for mutual TLS.
    ///
    /// Ownership: both paths are copied (the files are read at connect time).
    /// Thread safety: not with other uses of the same config.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_config_set_tls_client_cert(
        config: *mut lively_config,
        cert_path: *const c_char,
        key_path: *const c_char,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and strings per the documented contract.
            let config = unsafe { lively_config::get_mut(config) }?;
            let cert = unsafe { arg_str(cert_path, "cert_path") }?;
            let key = unsafe { arg_str(key_path, "key_path") }?;
            config.tls_client_cert(cert, key)?;
            Ok(())
        })
    }

    /// The name to verify in etcd's certificate when it differs from the
    /// endpoints' host (for example when connecting by IP address).
    ///
    /// Ownership: `name` is copied.
    /// Thread safety: not with other uses of the same config.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_config_set_tls_server_name(
        config: *mut lively_config,
        name: *const c_char,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and string per the documented contract.
            let config = unsafe { lively_config::get_mut(config) }?;
            let name = unsafe { arg_str(name, "name") }?;
            config.tls_server_name(name)?;
            Ok(())
        })
    }
}

fn check_timeout_ms(what: &str, milliseconds: u64) -> Result<(), Failure> {
    let max = Config::MAX_TIMEOUT.as_millis();
    if milliseconds == 0 || u128::from(milliseconds) > max {
        return Err(Failure::config(format!(
            "{what} {milliseconds} ms: must be from 1 to {max} ms"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_and_bad_values() {
        use lively_result as R;
        lively_config::lively_config_free(std::ptr::null_mut());
        assert_eq!(
            lively_config::lively_config_from_env(std::ptr::null_mut()),
            R::NullParameter
        );
        assert_eq!(
            lively_config::lively_config_set_endpoints(std::ptr::null_mut(), c"x".as_ptr()),
            R::NullParameter
        );
        let cfg = lively_config::lively_config_new();
        assert!(!cfg.is_null());
        assert_eq!(
            lively_config::lively_config_set_endpoints(cfg, std::ptr::null()),
            R::NullParameter
        );
        let bad = b"http://\xff:1\0";
        assert_eq!(
            lively_config::lively_config_set_endpoints(cfg, bad.as_ptr().cast()),
            R::InvalidUtf8
        );
        // One code per kind of mistake: every bad value is CONFIG.
        assert_eq!(
            lively_config::lively_config_set_endpoints(cfg, c"".as_ptr()),
            R::Config
        );
        for ttl in [0, 31_536_001, 1 << 59, 1 << 63, u64::MAX] {
            assert_eq!(
                lively_config::lively_config_set_status_ttl(cfg, ttl),
                R::Config,
                "{ttl}"
            );
        }
        assert_eq!(
            lively_config::lively_config_set_status_ttl(cfg, 31_536_000),
            R::Ok
        );
        for ms in [0, 86_400_001, u64::MAX] {
            assert_eq!(
                lively_config::lively_config_set_connect_timeout_ms(cfg, ms),
                R::Config
            );
            assert_eq!(
                lively_config::lively_config_set_request_timeout_ms(cfg, ms),
                R::Config
            );
        }
        assert_eq!(
            lively_config::lively_config_set_call_polling_us(cfg, 100_001),
            R::Config
        );
        assert_eq!(lively_config::lively_config_set_status_ttl(cfg, 7), R::Ok);
        assert_eq!(
            lively_config::lively_config_set_endpoints(cfg, c"127.0.0.1:1, 127.0.0.1:2".as_ptr()),
            R::Ok
        );
        let list = [c"127.0.0.1:3".as_ptr(), std::ptr::null()];
        assert_eq!(
            lively_config::lively_config_set_endpoints_array(cfg, list.as_ptr(), 2),
            R::NullParameter
        );
        assert_eq!(
            lively_config::lively_config_set_endpoints_array(cfg, list.as_ptr(), 1),
            R::Ok
        );
        assert_eq!(
            lively_config::lively_config_set_user(cfg, c"u".as_ptr(), std::ptr::null()),
            R::NullParameter
        );
        assert_eq!(
            lively_config::lively_config_set_tls_ca_file(cfg, std::ptr::null()),
            R::NullParameter
        );
        assert_eq!(
            lively_config::lively_config_set_tls_client_cert(
                cfg,
                c"c.pem".as_ptr(),
                std::ptr::null()
            ),
            R::NullParameter
        );
        assert_eq!(
            lively_config::lively_config_set_tls_server_name(cfg, bad.as_ptr().cast()),
            R::InvalidUtf8
        );
        assert_eq!(
            lively_config::lively_config_set_tls_server_name(cfg, c"etcd.example".as_ptr()),
            R::Ok
        );
        let c = unsafe { lively_config::get(cfg) }.unwrap();
        assert!(c.uses_tls());
        assert_eq!(c.get_status_ttl(), Duration::from_secs(7));
        assert_eq!(c.get_endpoints().len(), 1);
        lively_config::lively_config_free(cfg);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use std::ffi::CString;

    proptest! {
        /// Any bytes a C caller passes as a string (invalid UTF-8, control
        /// characters, huge lengths; a C string cannot hold a NUL) get a
        /// status code, never a panic, and a refused value changes nothing.
        #[test]
        fn any_c_string_in_any_setter_gets_a_code(
            bytes in proptest::collection::vec(1u8..=255, 0..600),
            huge in 0usize..3,
            which in 0usize..6,
        ) {
            let mut bytes = bytes;
            if huge == 0 {
                bytes = bytes.repeat(200);
            }
            let s = CString::new(bytes).expect("no NUL by construction");
            let cfg = lively_config::lively_config_new();
            let before = format!("{:?}", unsafe { lively_config::get(cfg) }.ok().cloned());
            let rc = match which {
                0 => lively_config::lively_config_set_endpoints(cfg, s.as_ptr()),
                1 => lively_config::lively_config_set_namespace(cfg, s.as_ptr()),
                2 => lively_config::lively_config_set_user(cfg, s.as_ptr(), s.as_ptr()),
                3 => lively_config::lively_config_set_tls_ca_file(cfg, s.as_ptr()),
                4 => lively_config::lively_config_set_tls_client_cert(cfg, s.as_ptr(), s.as_ptr()),
                _ => lively_config::lively_config_set_tls_server_name(cfg, s.as_ptr()),
            };
            prop_assert!(matches!(
                rc,
                lively_result::Ok | lively_result::InvalidUtf8 | lively_result::Config
            ), "{:?}", rc);
            if rc != lively_result::Ok {
                let after = format!("{:?}", unsafe { lively_config::get(cfg) }.ok().cloned());
                prop_assert_eq!(before, after, "a refused value changed the config");
            }
            lively_config::lively_config_free(cfg);
        }
    }
}
