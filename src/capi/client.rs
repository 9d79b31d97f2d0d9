//! `lively_client`: a thread-safe connection to etcd.

use std::ffi::c_char;
use std::sync::Arc;

use super::config::lively_config;
use super::guard::{arg_bytes, arg_out, arg_str, opt_str};
use super::result::{Failure, lively_result};
use super::service::{
    LIVELY_UUID_BUF_LEN, lively_filter, lively_service, lively_service_info, lively_service_list,
};
use super::sized::{SizedStruct, write_sized};
use crate::{Client, Stats};

/// A connection to etcd that registers services and answers liveness
/// questions.
///
/// Created by `lively_client_connect()`, released by `lively_client_free()`.
/// Thread-safe: one handle may be used from many threads at once (but not
/// freed while another thread still uses it). Services registered UP
/// through it stay UP while its connection lives.
///
/// Lifetime rule, the same for every handle: the client handle, each
/// `lively_view` and each `lively_subscription` made from it keep the
/// connection (lease, library thread, watch) alive. Freeing the last of
/// them closes it quietly; `lively_client_close()` closes it for all of
/// them at once. Either way the lease is revoked, so the client's services
/// go DOWN at once; afterwards its subscriptions end (callbacks stop,
/// release callbacks run, `lively_subscription_next()` returns
/// `LIVELY_RESULT_CLOSED`) and its views return `LIVELY_RESULT_CLOSED`.
/// Every handle must still be freed by its owner.
pub struct lively_client {
    _private: [u8; 0],
}

/// Counters for operators, from `lively_client_stats()`.
///
/// Initialize it with `LIVELY_STATS_INIT` before the call: the library
/// writes at most `struct_size` bytes, so a caller built before a counter
/// was appended keeps working; afterwards `struct_size` is the number of
/// bytes written.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lively_stats {
    /// `sizeof(lively_stats)` as the caller compiled it (set by
    /// `LIVELY_STATS_INIT`); less is `LIVELY_RESULT_INVALID_ARGUMENT`.
    pub struct_size: usize,
    /// Keepalive requests answered by etcd.
    pub keepalives_sent: u64,
    /// Keepalive requests that failed or went unanswered in time.
    pub keepalives_failed: u64,
    /// Keepalive streams re-opened after a failure.
    pub reconnects: u64,
    /// Leases granted to replace one that expired.
    pub lease_regrants: u64,
    /// UP keys this client put back.
    pub up_keys_restored: u64,
    /// Events handed to subscribers.
    pub events_delivered: u64,
    /// Subscription resyncs (re-list after compaction or overflow).
    pub resyncs: u64,
    /// Times this client took a service DOWN because its owner missed the
    /// heartbeat deadline.
    pub heartbeats_missed: u64,
    /// The current lease's id; 0 until the client's first UP registration
    /// grants one.
    pub lease_id: i64,
    /// TTL etcd granted to the current lease, in seconds.
    pub lease_granted_ttl: i64,
    /// Seconds left on the current lease at the last keepalive answer.
    pub lease_ttl_remaining: i64,
    /// Log messages dropped because the log callback (process-wide, see
    /// `lively_set_log_callback()`) fell a whole queue behind; counted for
    /// the process, not per client.
    pub log_lines_dropped: u64,
    /// Services this client stopped keeping UP because another client
    /// deleted them, forced them down or took them over (each is also
    /// logged at warning level).
    pub registrations_lost: u64,
    /// Times changed TLS files were loaded for new connections (the files
    /// are read again for every new connection to etcd).
    pub tls_reloads: u64,
    /// Versions of changed TLS files that did not load (each logged at
    /// warning level, naming the file); the previous credentials stay in
    /// use.
    pub tls_files_refused: u64,
    /// Panics caught in the client's background tasks (each restarted) and
    /// in subscription callbacks, each logged at error level. Anything but
    /// 0 is a bug to report.
    pub task_panics: u64,
}

// SAFETY: repr(C), `struct_size` first, every field valid when zero.
unsafe impl SizedStruct for lively_stats {
    const NAME: &'static str = "lively_stats";
    const MIN_SIZE: usize = std::mem::size_of::<lively_stats>();
}

impl Default for lively_stats {
    /// `LIVELY_STATS_INIT`: the size set, every counter zero.
    fn default() -> lively_stats {
        lively_stats::from(Stats::default())
    }
}

impl From<Stats> for lively_stats {
    fn from(s: Stats) -> lively_stats {
        lively_stats {
            struct_size: std::mem::size_of::<lively_stats>(),
            keepalives_sent: s.keepalives_sent,
            keepalives_failed: s.keepalives_failed,
            reconnects: s.reconnects,
            lease_regrants: s.lease_regrants,
            up_keys_restored: s.up_keys_restored,
            events_delivered: s.events_delivered,
            resyncs: s.resyncs,
            heartbeats_missed: s.heartbeats_missed,
            lease_id: s.lease_id,
            lease_granted_ttl: s.lease_granted_ttl,
            lease_ttl_remaining: s.lease_ttl_remaining,
            log_lines_dropped: s.log_lines_dropped,
            registrations_lost: s.registrations_lost,
            tls_reloads: s.tls_reloads,
            tls_files_refused: s.tls_files_refused,
            task_panics: s.task_panics,
        }
    }
}

/// Checks a caller's uuid buffer before any work is done (NULL: not wanted).
fn check_uuid_buf(buf: *mut c_char, len: usize) -> Result<(), Failure> {
    if !buf.is_null() && len < LIVELY_UUID_BUF_LEN {
        return Err(Failure::invalid(format!(
            "uuid buffer: {len} bytes, need LIVELY_UUID_BUF_LEN ({LIVELY_UUID_BUF_LEN})"
        )));
    }
    Ok(())
}

/// Writes `uuid` and a NUL into a buffer checked by [`check_uuid_buf`].
fn write_uuid(buf: *mut c_char, len: usize, uuid: &str) {
    if buf.is_null() {
        return;
    }
    let n = uuid.len().min(len - 1);
    // SAFETY: `buf` has `len` writable bytes per the caller's contract.
    unsafe {
        std::ptr::copy_nonoverlapping(uuid.as_ptr().cast::<c_char>(), buf, n);
        *buf.add(n) = 0;
    }
}

impl lively_client {
    /// Borrows the `Client` behind a handle.
    ///
    /// # Safety
    /// `p` is NULL or a live handle from `lively_client_connect`.
    pub(crate) unsafe fn get<'a>(p: *const lively_client) -> Result<&'a Client, Failure> {
        // SAFETY: made by `Arc::into_raw` of a `Client` in `connect`.
        unsafe { p.cast::<Client>().as_ref() }.ok_or_else(|| Failure::null("client"))
    }

    /// Connects to etcd with `config` and checks that it answers (the
    /// client's lease is granted on its first UP registration, so a client
    /// that only reads costs none); waits at most the connect timeout. On failure `lively_last_error()` names
    /// the endpoints.
    ///
    /// Ownership: `config` is copied (free it whenever you like). On success
    /// `*out` receives a client the caller frees with `lively_client_free()`;
    /// on failure `*out` is untouched.
    /// Thread safety: thread-safe. The client starts a library thread that
    /// keeps its lease alive. After `fork()`, a child must connect its own
    /// client (calls on the parent's return `LIVELY_RESULT_FORKED`).
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_client_connect(
        config: *const lively_config,
        out: *mut *const lively_client,
    ) -> lively_result {
        lively_call!({
            super::log::ensure_logger();
            // SAFETY: handle per the documented contract.
            let config = unsafe { lively_config::get(config) }?;
            let out = arg_out(out, "out")?;
            let client = Client::connect(config)?;
            let p = Arc::into_raw(Arc::new(client)).cast::<lively_client>();
            // SAFETY: `out` is non-NULL and writable.
            unsafe { out.write(p) };
            Ok(())
        })
    }

    /// Closes the client's connection for every handle: revokes its lease
    /// (its services go DOWN at once, not after the TTL), ends its
    /// subscriptions (no callback starts after this returns, outside a
    /// callback; release callbacks run; pull subscriptions return
    /// `LIVELY_RESULT_CLOSED`), makes its views return
    /// `LIVELY_RESULT_CLOSED`, and stops its thread. Returns the revoke's
    /// error, if any; the client is closed either way and later calls on it
    /// return `LIVELY_RESULT_CLOSED`. Closing twice is OK (the second call
    /// returns the first one's result).
    ///
    /// Ownership: the handle stays allocated; free it with
    /// `lively_client_free()`.
    /// Thread safety: thread-safe; calls racing with close may fail with
    /// `LIVELY_RESULT_CLOSED`.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_client_close(client: *const lively_client) -> lively_result {
        lively_call!({
            // SAFETY: handle per the documented contract.
            let client = unsafe { lively_client::get(client) }?;
            client.clone().close()?;
            Ok(())
        })
    }

    /// Frees a client handle. If it was the connection's last handle (no
    /// view or subscription of it is left), the connection closes quietly,
    /// as with `lively_client_close()`: its services go DOWN at once. While
    /// a view or subscription lives, the connection (and the lease keeping
    /// its services UP) lives on; call `lively_client_close()` first to end
    /// it for all of them. NULL is a no-op.
    ///
    /// In a child forked after the handle was made, freeing takes no lock
    /// and touches nothing the parent's threads own: that memory is left
    /// allocated, and the parent's connection is not closed.
    ///
    /// Ownership: takes `client`; do not use it afterwards.
    /// Thread safety: no other thread may use this handle during or after
    /// the call.
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_client_free(client: *const lively_client) {
        lively_guard!({
            if !client.is_null() {
                // SAFETY: made by `Arc::into_raw` in `connect`, freed once.
                drop(unsafe { Arc::from_raw(client.cast::<Client>()) });
            }
        })
    }

    /// Creates or updates a service record and its indexes in one
    /// transaction. A service with status UP is bound to this client's
    /// lease and stays UP while the client lives.
    ///
    /// Identity is type+host: with an empty or NULL `service->uuid`, a
    /// type+host already registered is taken over under its uuid (written
    /// to `uuid_out`), UP on this client's lease at once; so a daemon that
    /// restarts without saved state gets its service back. A live client
    /// displaced this way loses it (watchers see an UPDATED event with
    /// reason MOVED). With `service->exclusive` the call fails with
    /// `LIVELY_RESULT_CONFLICT` instead while another client's lease holds
    /// it. Otherwise a uuid is generated.
    ///
    /// `uuid_out` (may be NULL) receives the uuid, NUL-terminated;
    /// `uuid_out_len` must then be at least `LIVELY_UUID_BUF_LEN`, else
    /// `LIVELY_RESULT_INVALID_ARGUMENT` before anything is written.
    /// Fails with `LIVELY_RESULT_CONFLICT` when a given uuid differs from
    /// the type+host's, and `LIVELY_RESULT_INVALID_ARGUMENT` for a bad field.
    ///
    /// Ownership: `service` and its strings are borrowed for the call;
    /// `uuid_out` is the caller's.
    /// Thread safety: thread-safe.
    #[must_use]
    // Exported as `lively_client_update__abi1`; `lively_client_update` is its versioned alias (see
    // `capi::abi`).
    #[unsafe(export_name = "lively_client_update__abi1")]
    pub extern "C" fn lively_client_update(
        client: *const lively_client,
        service: *const lively_service,
        uuid_out: *mut c_char,
        uuid_out_len: usize,
    ) -> lively_result {
        write_service(client, service, uuid_out, uuid_out_len, Client::update)
    }

    /// Like `lively_client_update()`, but retakes the service from a live
    /// client that took it over from this one. Once another live client
    /// took over a service this client held, `lively_client_update()` (and
    /// `lively_client_heartbeat()`) fail with `LIVELY_RESULT_CONFLICT`
    /// naming the holder's lease, so that two daemons do not take it from
    /// each other at every update; this is the explicit ask. With
    /// `service->exclusive` it still refuses while another holder lives.
    ///
    /// Ownership: `service` and its strings are borrowed for the call;
    /// `uuid_out` is the caller's.
    /// Thread safety: thread-safe.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_client_take_over(
        client: *const lively_client,
        service: *const lively_service,
        uuid_out: *mut c_char,
        uuid_out_len: usize,
    ) -> lively_result {
        write_service(client, service, uuid_out, uuid_out_len, Client::take_over)
    }

    /// Like `lively_client_update()`, with the record given as a serialized
    /// protobuf `oslively.Service` message (`proto/os_lively/service.proto`)
    /// of `len` bytes.
    ///
    /// Ownership: `bytes` is borrowed for the call.
    /// Thread safety: thread-safe.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_client_update_bytes(
        client: *const lively_client,
        bytes: *const u8,
        len: usize,
        uuid_out: *mut c_char,
        uuid_out_len: usize,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and buffer per the documented contract.
            let client = unsafe { lively_client::get(client) }?;
            let bytes = unsafe { arg_bytes(bytes, len, "bytes") }?;
            check_uuid_buf(uuid_out, uuid_out_len)?;
            let uuid = client.update_bytes(bytes)?;
            write_uuid(uuid_out, uuid_out_len, &uuid);
            Ok(())
        })
    }

    /// Whether the service `uuid` is effectively UP now: its record says UP
    /// and its registering process is alive. An unknown uuid is not UP
    /// (`*up = false`, `LIVELY_RESULT_OK`).
    ///
    /// Ownership: `uuid` is borrowed; `*up` is written only on success.
    /// Thread safety: thread-safe.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_client_is_up(
        client: *const lively_client,
        uuid: *const c_char,
        up: *mut bool,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and string per the documented contract.
            let client = unsafe { lively_client::get(client) }?;
            let uuid = unsafe { arg_str(uuid, "uuid") }?;
            let up = arg_out(up, "up")?;
            let v = client.is_up(uuid)?;
            // SAFETY: non-NULL, writable.
            unsafe { up.write(v) };
            Ok(())
        })
    }

    /// Like `lively_client_is_up()`, naming the service by type and host.
    ///
    /// Ownership: the strings are borrowed; `*up` is written only on success.
    /// Thread safety: thread-safe.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_client_is_up_by_type_host(
        client: *const lively_client,
        service_type: *const c_char,
        host: *const c_char,
        up: *mut bool,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and strings per the documented contract.
            let client = unsafe { lively_client::get(client) }?;
            let service_type = unsafe { arg_str(service_type, "service_type") }?;
            let host = unsafe { arg_str(host, "host") }?;
            let up = arg_out(up, "up")?;
            let v = client.is_up_by_type_host(service_type, host)?;
            // SAFETY: non-NULL, writable.
            unsafe { up.write(v) };
            Ok(())
        })
    }

    /// Reads one service's record and effective status.
    /// `LIVELY_RESULT_NOT_FOUND` if there is no such service.
    ///
    /// Ownership: on success `*out` receives an object the caller frees with
    /// `lively_service_info_free()`.
    /// Thread safety: thread-safe.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_client_get(
        client: *const lively_client,
        uuid: *const c_char,
        out: *mut *mut lively_service_info,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and string per the documented contract.
            let client = unsafe { lively_client::get(client) }?;
            let uuid = unsafe { arg_str(uuid, "uuid") }?;
            let out = arg_out(out, "out")?;
            let info = client.get(uuid)?.ok_or_else(|| {
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

    /// Like `lively_client_get()`, naming the service by type and host.
    ///
    /// Ownership: as `lively_client_get()`.
    /// Thread safety: thread-safe.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_client_get_by_type_host(
        client: *const lively_client,
        service_type: *const c_char,
        host: *const c_char,
        out: *mut *mut lively_service_info,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and strings per the documented contract.
            let client = unsafe { lively_client::get(client) }?;
            let service_type = unsafe { arg_str(service_type, "service_type") }?;
            let host = unsafe { arg_str(host, "host") }?;
            let out = arg_out(out, "out")?;
            let info = client
                .get_by_type_host(service_type, host)?
                .ok_or_else(|| {
                    Failure::new(
                        lively_result::NotFound,
                        format!("no service of type {service_type} on host {host}"),
                    )
                })?;
            // SAFETY: non-NULL, writable.
            unsafe { out.write(lively_service_info::boxed(&info)) };
            Ok(())
        })
    }

    /// Lists the services matching `filter` (NULL: every service in the
    /// namespace). Keys that do not decode are skipped and logged.
    ///
    /// Ownership: `filter` is borrowed; on success `*out` receives a list
    /// the caller frees with `lively_service_list_free()`.
    /// Thread safety: thread-safe.
    #[must_use]
    // Exported as `lively_client_list__abi1`; `lively_client_list` is its versioned alias (see
    // `capi::abi`).
    #[unsafe(export_name = "lively_client_list__abi1")]
    pub extern "C" fn lively_client_list(
        client: *const lively_client,
        filter: *const lively_filter,
        out: *mut *mut lively_service_list,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and filter per the documented contract.
            let client = unsafe { lively_client::get(client) }?;
            let filter = unsafe { lively_filter::to_rust(filter) }?;
            let out = arg_out(out, "out")?;
            let infos = client.list(&filter)?;
            // SAFETY: non-NULL, writable.
            unsafe { out.write(lively_service_list::boxed(&infos)) };
            Ok(())
        })
    }

    /// Forces a service DOWN for maintenance: status DOWN, `note` (NULL for
    /// none) and the window (seconds since the epoch, 0 for none) recorded,
    /// its UP key removed, in one transaction. Sticky: its owner's updates
    /// keep it DOWN until `lively_client_up()` or, with a nonzero
    /// `maintenance_end`, until that time passes (the owner's live client
    /// lifts it then). `LIVELY_RESULT_NOT_FOUND` if the uuid is unknown;
    /// `LIVELY_RESULT_INVALID_ARGUMENT` if the end is in the past or before
    /// the start.
    ///
    /// Ownership: strings are borrowed for the call.
    /// Thread safety: thread-safe.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_client_down(
        client: *const lively_client,
        uuid: *const c_char,
        note: *const c_char,
        maintenance_start: u64,
        maintenance_end: u64,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and strings per the documented contract.
            let client = unsafe { lively_client::get(client) }?;
            let uuid = unsafe { arg_str(uuid, "uuid") }?;
            let note = unsafe { opt_str(note, "note") }?.unwrap_or("");
            client.down(uuid, note, maintenance_start, maintenance_end)?;
            Ok(())
        })
    }

    /// Checks in for `uuid`, a service this client registered with a
    /// heartbeat deadline (`lively_service.heartbeat_ms`): its owner is
    /// alive. Call it from the daemon's main loop at least every deadline.
    /// Local to the process (no round trip, no allocation); a service this
    /// client took DOWN for a missed deadline is brought back UP by the
    /// library thread just after. `LIVELY_RESULT_NOT_FOUND` if `uuid` has
    /// no deadline on this client: it was not registered through this
    /// client with `heartbeat_ms`, or it was registered (or last updated)
    /// with status DOWN, which drops the deadline.
    ///
    /// Ownership: `uuid` is borrowed.
    /// Thread safety: thread-safe.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_client_heartbeat(
        client: *const lively_client,
        uuid: *const c_char,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and string per the documented contract.
            let client = unsafe { lively_client::get(client) }?;
            let uuid = unsafe { arg_str(uuid, "uuid") }?;
            client.heartbeat(uuid)?;
            Ok(())
        })
    }

    /// Lifts a forced DOWN (`lively_client_down()`): the record says UP
    /// again, its maintenance note and window are cleared, and, when its
    /// owner is alive, it is UP at once (on the owner's lease). A no-op for
    /// a service that is not forced down; `LIVELY_RESULT_NOT_FOUND` if the
    /// uuid is unknown.
    ///
    /// Ownership: `uuid` is borrowed.
    /// Thread safety: thread-safe.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_client_up(
        client: *const lively_client,
        uuid: *const c_char,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and string per the documented contract.
            let client = unsafe { lively_client::get(client) }?;
            let uuid = unsafe { arg_str(uuid, "uuid") }?;
            client.up(uuid)?;
            Ok(())
        })
    }

    /// Removes a service's record and index keys in one transaction.
    /// `*deleted` (may be NULL) is set to false if there was no such
    /// service.
    ///
    /// Ownership: `uuid` is borrowed.
    /// Thread safety: thread-safe.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_client_delete(
        client: *const lively_client,
        uuid: *const c_char,
        deleted: *mut bool,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle and string per the documented contract.
            let client = unsafe { lively_client::get(client) }?;
            let uuid = unsafe { arg_str(uuid, "uuid") }?;
            let v = client.delete(uuid)?;
            if !deleted.is_null() {
                // SAFETY: non-NULL, writable.
                unsafe { deleted.write(v) };
            }
            Ok(())
        })
    }

    /// Copies the client's counters into `*out` (initialized with
    /// `LIVELY_STATS_INIT`): keepalives, reconnects, lease re-grants, events
    /// delivered, resyncs, and the current lease and its remaining TTL.
    /// Does not talk to etcd.
    ///
    /// Ownership: `*out` is the caller's.
    /// Thread safety: thread-safe.
    #[must_use]
    // Exported as `lively_client_stats__abi1`; `lively_client_stats` is its versioned alias (see
    // `capi::abi`).
    #[unsafe(export_name = "lively_client_stats__abi1")]
    pub extern "C" fn lively_client_stats(
        client: *const lively_client,
        out: *mut lively_stats,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle per the documented contract.
            let client = unsafe { lively_client::get(client) }?;
            let out = arg_out(out, "out")?;
            // SAFETY: non-NULL, writable for its declared size.
            unsafe { write_sized(out, client.stats().into()) }?;
            Ok(())
        })
    }
}

/// `lively_client_update()` and `lively_client_take_over()`: the same
/// arguments and checks, and `write` (the Rust call) between them.
fn write_service(
    client: *const lively_client,
    service: *const lively_service,
    uuid_out: *mut c_char,
    uuid_out_len: usize,
    write: fn(&Client, &crate::Service) -> crate::Result<String>,
) -> lively_result {
    lively_call!({
        // SAFETY: handles and strings per the documented contract.
        let client = unsafe { lively_client::get(client) }?;
        let service = unsafe { lively_service::from_c(service, "service") }?;
        check_uuid_buf(uuid_out, uuid_out_len)?;
        let uuid = write(client, &service)?;
        write_uuid(uuid_out, uuid_out_len, &uuid);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lively_client as C;
    use lively_result as R;
    use std::ptr::{null, null_mut};

    #[test]
    fn null_handles_are_refused() {
        let mut up = false;
        assert_eq!(
            C::lively_client_is_up(null(), c"x".as_ptr(), &mut up),
            R::NullParameter
        );
        assert_eq!(
            C::lively_client_is_up_by_type_host(null(), null(), null(), null_mut()),
            R::NullParameter
        );
        assert_eq!(
            C::lively_client_update(null(), null(), null_mut(), 0),
            R::NullParameter
        );
        assert_eq!(
            C::lively_client_update_bytes(null(), null(), 0, null_mut(), 0),
            R::NullParameter
        );
        assert_eq!(
            C::lively_client_take_over(null(), null(), null_mut(), 0),
            R::NullParameter
        );
        assert_eq!(
            C::lively_client_get(null(), null(), null_mut()),
            R::NullParameter
        );
        assert_eq!(
            C::lively_client_get_by_type_host(null(), null(), null(), null_mut()),
            R::NullParameter
        );
        assert_eq!(
            C::lively_client_list(null(), null(), null_mut()),
            R::NullParameter
        );
        assert_eq!(
            C::lively_client_down(null(), null(), null(), 0, 0),
            R::NullParameter
        );
        assert_eq!(C::lively_client_up(null(), null()), R::NullParameter);
        assert_eq!(
            C::lively_client_delete(null(), null(), null_mut()),
            R::NullParameter
        );
        assert_eq!(C::lively_client_stats(null(), null_mut()), R::NullParameter);
        assert_eq!(
            C::lively_client_heartbeat(null(), c"x".as_ptr()),
            R::NullParameter
        );
        assert_eq!(C::lively_client_close(null()), R::NullParameter);
        assert_eq!(
            C::lively_client_connect(null(), null_mut()),
            R::NullParameter
        );
        C::lively_client_free(null());
        let msg = unsafe { std::ffi::CStr::from_ptr(super::super::lively_last_error()) };
        assert!(msg.to_str().unwrap().contains("NULL parameter"));
    }

    #[test]
    fn uuid_buffers() {
        assert!(check_uuid_buf(null_mut(), 0).is_ok());
        let mut small = [0 as c_char; 8];
        assert!(check_uuid_buf(small.as_mut_ptr(), small.len()).is_err());
        let mut buf = [1 as c_char; LIVELY_UUID_BUF_LEN];
        write_uuid(buf.as_mut_ptr(), buf.len(), &"a".repeat(32));
        assert_eq!(buf[32], 0);
        assert_eq!(buf[31], b'a' as c_char);
    }
}
