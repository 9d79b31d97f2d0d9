//! `lively_view`: a watch-backed in-process copy of the namespace, answering
//! is-up, get and list without a round trip.

use std::ffi::c_char;
use std::time::Duration;

use super::client::lively_client;
use super::guard::{arg_out, arg_str};
use super::result::{Failure, lively_result};
use super::service::{lively_filter, lively_service_info, lively_service_list};
use crate::{StalePolicy, View};

/// A local view of every service in the client's namespace.
///
/// Created by `lively_view_new()`, released by `lively_view_free()`.
/// Thread-safe: many threads may read one view at once; reads never block
/// on the network and `lively_view_is_up()` does not allocate.
pub struct lively_view {
    _private: [u8; 0],
}

impl lively_view {
    /// # Safety
    /// `p` is NULL or a live handle from `lively_view_new`.
    unsafe fn get<'a>(p: *const lively_view) -> Result<&'a View, Failure> {
        // SAFETY: made by `Box::into_raw` of a `View` in `lively_view_new`.
        unsafe { p.cast::<View>().as_ref() }.ok_or_else(|| Failure::null("view"))
    }

    /// Creates a view of `client`'s namespace. The first view or
    /// subscription of a client starts its shared watch and waits (at most
    /// the request timeout) until the copy is loaded.
    ///
    /// `stale_after_ms`: reads fail with `LIVELY_RESULT_STALE` once the
    /// watch has been disconnected this long; 0 means the client's status
    /// TTL (the default: after a TTL unseen, any service may have expired),
    /// `UINT64_MAX` means never (serve the last known state; check
    /// `lively_view_is_connected()`).
    ///
    /// Ownership: on success `*out` receives a view the caller frees with
    /// `lively_view_free()`. It keeps the client's connection alive (see
    /// `lively_client`), even after `lively_client_free()`; after
    /// `lively_client_close()` its reads return `LIVELY_RESULT_CLOSED`, and
    /// in a child forked after it was made they return
    /// `LIVELY_RESULT_FORKED`.
    /// Thread safety: thread-safe.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_view_new(
        client: *const lively_client,
        stale_after_ms: u64,
        out: *mut *const lively_view,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle per the documented contract.
            let client = unsafe { lively_client::get(client) }?;
            let out = arg_out(out, "out")?;
            let mut view = client.view()?;
            match stale_after_ms {
                0 => {}
                u64::MAX => {
                    view.set_stale_policy(StalePolicy::Serve);
                }
                ms => {
                    view.set_stale_policy(StalePolicy::FailAfter(Duration::from_millis(ms)));
                }
            }
            let p = Box::into_raw(Box::new(view))
                .cast::<lively_view>()
                .cast_const();
            // SAFETY: `out` is non-NULL and writable.
            unsafe { out.write(p) };
            Ok(())
        })
    }

    /// Releases a view; if it was the connection's last handle, the
    /// connection closes (see `lively_client`). NULL is a no-op.
    ///
    /// In a child forked after the handle was made, freeing takes no lock
    /// and touches nothing the parent's threads own: that memory is left
    /// allocated, and the parent's connection is not closed.
    ///
    /// Ownership: takes `view`. Thread safety: no other thread may use the
    /// handle during or after the call.
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_view_free(view: *const lively_view) {
        lively_guard!({
            if !view.is_null() {
                // SAFETY: made by `Box::into_raw` in `lively_view_new`, freed once.
                drop(unsafe { Box::from_raw(view.cast::<View>().cast_mut()) });
            }
        })
    }

    /// Whether `uuid` is effectively UP as of `lively_view_revision()`.
    /// Unknown services are not UP.
    ///
    /// Ownership: `uuid` is borrowed; `*up` is written only on success.
    /// Thread safety: thread-safe; no allocation, no round trip.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_view_is_up(
        view: *const lively_view,
        uuid: *const c_char,
        up: *mut bool,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and string per the documented contract.
            let view = unsafe { lively_view::get(view) }?;
            let uuid = unsafe { arg_str(uuid, "uuid") }?;
            let up = arg_out(up, "up")?;
            let v = view.is_up(uuid)?;
            // SAFETY: non-NULL, writable.
            unsafe { up.write(v) };
            Ok(())
        })
    }

    /// Like `lively_view_is_up()`, naming the service by type and host.
    ///
    /// Ownership: strings are borrowed; `*up` is written only on success.
    /// Thread safety: thread-safe.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_view_is_up_by_type_host(
        view: *const lively_view,
        service_type: *const c_char,
        host: *const c_char,
        up: *mut bool,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and strings per the documented contract.
            let view = unsafe { lively_view::get(view) }?;
            let service_type = unsafe { arg_str(service_type, "service_type") }?;
            let host = unsafe { arg_str(host, "host") }?;
            let up = arg_out(up, "up")?;
            let v = view.is_up_by_type_host(service_type, host)?;
            // SAFETY: non-NULL, writable.
            unsafe { up.write(v) };
            Ok(())
        })
    }

    /// The record and liveness of `uuid`; `LIVELY_RESULT_NOT_FOUND` if the
    /// view does not know it.
    ///
    /// Ownership: on success `*out` receives an object freed with
    /// `lively_service_info_free()`.
    /// Thread safety: thread-safe.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_view_get(
        view: *const lively_view,
        uuid: *const c_char,
        out: *mut *mut lively_service_info,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and string per the documented contract.
            let view = unsafe { lively_view::get(view) }?;
            let uuid = unsafe { arg_str(uuid, "uuid") }?;
            let out = arg_out(out, "out")?;
            let info = view.get(uuid)?.ok_or_else(|| {
                Failure::new(
                    lively_result::NotFound,
                    format!("no service with uuid {uuid}"),
                )
            })?;
            // SAFETY: non-NULL, writable.
            unsafe { out.write(lively_service_info::boxed(&info)) };
            Ok(())
        })
    }

    /// Services matching `filter` (NULL: all), from the local copy.
    ///
    /// Ownership: on success `*out` receives a list freed with
    /// `lively_service_list_free()`.
    /// Thread safety: thread-safe.
    #[must_use]
    // Exported as `lively_view_list__abi1`; `lively_view_list` is its versioned alias (see
    // `capi::abi`).
    #[unsafe(export_name = "lively_view_list__abi1")]
    pub extern "C" fn lively_view_list(
        view: *const lively_view,
        filter: *const lively_filter,
        out: *mut *mut lively_service_list,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and filter per the documented contract.
            let view = unsafe { lively_view::get(view) }?;
            let filter = unsafe { lively_filter::to_rust(filter) }?;
            let out = arg_out(out, "out")?;
            let infos = view.list(&filter)?;
            // SAFETY: non-NULL, writable.
            unsafe { out.write(lively_service_list::boxed(&infos)) };
            Ok(())
        })
    }

    /// The etcd revision the view reflects (0 for a NULL handle).
    ///
    /// Thread safety: thread-safe.
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_view_revision(view: *const lively_view) -> i64 {
        lively_guard!({
            // SAFETY: handle per the documented contract.
            unsafe { lively_view::get(view) }.map_or(0, |v| v.revision())
        })
    }

    /// True while the view's watch is connected and caught up (false for a
    /// NULL handle).
    ///
    /// Thread safety: thread-safe.
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_view_is_connected(view: *const lively_view) -> bool {
        lively_guard!({
            // SAFETY: handle per the documented contract.
            unsafe { lively_view::get(view) }.is_ok_and(|v| v.is_connected())
        })
    }

    /// Read-your-writes: reads etcd's current revision and waits (at most
    /// `timeout_ms`) until the view reflects it. `LIVELY_RESULT_TIMEOUT` if
    /// it does not.
    ///
    /// Thread safety: thread-safe.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_view_sync(view: *const lively_view, timeout_ms: u64) -> lively_result {
        lively_call!({
            // SAFETY: handle per the documented contract.
            let view = unsafe { lively_view::get(view) }?;
            view.sync(Duration::from_millis(timeout_ms))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_handles_get_their_own_code() {
        let mut up = false;
        assert_eq!(
            lively_view::lively_view_is_up(std::ptr::null(), c"x".as_ptr(), &mut up),
            lively_result::NullParameter
        );
        assert_eq!(lively_view::lively_view_revision(std::ptr::null()), 0);
        assert!(!lively_view::lively_view_is_connected(std::ptr::null()));
        assert_eq!(
            lively_view::lively_view_sync(std::ptr::null(), 1),
            lively_result::NullParameter
        );
        let mut out = std::ptr::null();
        assert_eq!(
            lively_view::lively_view_new(std::ptr::null(), 0, &mut out),
            lively_result::NullParameter
        );
        lively_view::lively_view_free(std::ptr::null());
    }
}
