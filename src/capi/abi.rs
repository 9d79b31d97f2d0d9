//! Symbol versions: how the six functions taking caller-filled structs
//! changed layout without a new soname.
//!
//! Before those structs carried their size, `lively_client_update` and
//! friends read size-less layouts, and programs linked then reference the
//! names without a symbol version. The dynamic linker binds such a
//! reference to the oldest version of a name, `LIVELY_0`: the shims below,
//! which read the frozen old layout, convert it and call today's function.
//! Programs built against today's header record the default version
//! `LIVELY_0.1`, and `dlsym` (ctypes, cffi) returns it too. The version
//! nodes are declared in `src/capi/os_lively.map`.
//!
//! Both versions are small assembly trampolines (a tail jump), defined in
//! one `global_asm!` block: `.symver` needs the aliased symbol defined in
//! the same object file, and rustc does not promise to put a function and
//! an asm block in the same codegen unit. Today's functions are exported
//! by Rust as `<name>__abi1` (cbindgen's header names them `<name>`: see
//! `header_is_current` in tests/c_api.rs); the public name is the
//! trampoline's, which rustc's own export list does not mention, so the
//! version script gives it `LIVELY_0.1`.
//!
//! On Linux x86_64 and aarch64. Elsewhere (no symbol versions, or no
//! trampoline written yet) plain Rust wrappers export the public names.

use std::ffi::{c_char, c_void};

use super::client::{lively_client, lively_stats};
use super::result::lively_result;
use super::service::{lively_bool, lively_filter, lively_service};
use super::subscription::{
    lively_event_callback, lively_release_callback, lively_subscribe_options, lively_subscription,
};
use super::view::lively_view;

/// `lively_service` as it was: no size, output-only fields inline.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct lively_service_v0 {
    pub uuid: *const c_char,
    pub service_type: *const c_char,
    pub host: *const c_char,
    pub status: u32,
    pub region: *const c_char,
    pub maintenance_start: u64,
    pub maintenance_end: u64,
    pub maintenance_note: *const c_char,
    pub heartbeat_ms: u64,
    pub heartbeat_missed: lively_bool,
    pub forced_down: lively_bool,
    pub exclusive: lively_bool,
}

/// `lively_filter` as it was.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct lively_filter_v0 {
    pub uuid: *const c_char,
    pub service_type: *const c_char,
    pub host: *const c_char,
    pub region: *const c_char,
    pub has_status: lively_bool,
    pub status: u32,
}

/// `lively_subscribe_options` as it was.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct lively_subscribe_options_v0 {
    pub snapshot: lively_bool,
    pub queue_capacity: usize,
}

/// `lively_stats` as it was: today's counters without the size.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct lively_stats_v0 {
    pub keepalives_sent: u64,
    pub keepalives_failed: u64,
    pub reconnects: u64,
    pub lease_regrants: u64,
    pub up_keys_restored: u64,
    pub events_delivered: u64,
    pub resyncs: u64,
    pub heartbeats_missed: u64,
    pub lease_id: i64,
    pub lease_granted_ttl: i64,
    pub lease_ttl_remaining: i64,
    pub log_lines_dropped: u64,
    pub registrations_lost: u64,
}

/// Today's filter from an old one (NULL stays NULL: "everything").
///
/// # Safety
/// `p` is NULL or a readable old filter.
unsafe fn filter(p: *const lively_filter_v0) -> Option<lively_filter> {
    // SAFETY: per the function's contract.
    unsafe { p.as_ref() }.map(|f| lively_filter {
        uuid: f.uuid,
        service_type: f.service_type,
        host: f.host,
        region: f.region,
        has_status: f.has_status,
        status: f.status,
        ..lively_filter::default()
    })
}

/// # Safety
/// `p` is NULL or readable old options.
unsafe fn options(p: *const lively_subscribe_options_v0) -> Option<lively_subscribe_options> {
    // SAFETY: per the function's contract.
    unsafe { p.as_ref() }.map(|o| lively_subscribe_options {
        snapshot: o.snapshot,
        queue_capacity: o.queue_capacity,
        ..lively_subscribe_options::default()
    })
}

fn ptr<T>(v: &Option<T>) -> *const T {
    v.as_ref().map_or(std::ptr::null(), |v| v as *const T)
}

pub(crate) extern "C" fn client_update_v0(
    client: *const lively_client,
    service: *const lively_service_v0,
    uuid_out: *mut c_char,
    uuid_out_len: usize,
) -> lively_result {
    // SAFETY: the old contract: NULL or a readable old record.
    let service = unsafe { service.as_ref() }.map(|s| lively_service {
        uuid: s.uuid,
        service_type: s.service_type,
        host: s.host,
        status: s.status,
        region: s.region,
        maintenance_start: s.maintenance_start,
        maintenance_end: s.maintenance_end,
        maintenance_note: s.maintenance_note,
        heartbeat_ms: s.heartbeat_ms,
        exclusive: s.exclusive,
        ..lively_service::default()
    });
    lively_client::lively_client_update(client, ptr(&service), uuid_out, uuid_out_len)
}

pub(crate) extern "C" fn client_list_v0(
    client: *const lively_client,
    filter_v0: *const lively_filter_v0,
    out: *mut *mut super::service::lively_service_list,
) -> lively_result {
    // SAFETY: the old contract.
    let f = unsafe { filter(filter_v0) };
    lively_client::lively_client_list(client, ptr(&f), out)
}

pub(crate) extern "C" fn view_list_v0(
    view: *const lively_view,
    filter_v0: *const lively_filter_v0,
    out: *mut *mut super::service::lively_service_list,
) -> lively_result {
    // SAFETY: the old contract.
    let f = unsafe { filter(filter_v0) };
    lively_view::lively_view_list(view, ptr(&f), out)
}

pub(crate) extern "C" fn client_stats_v0(
    client: *const lively_client,
    out: *mut lively_stats_v0,
) -> lively_result {
    if out.is_null() {
        // Today's function reports the NULL (and sets the last error).
        return lively_client::lively_client_stats(client, std::ptr::null_mut());
    }
    let mut s = lively_stats::default();
    let rc = lively_client::lively_client_stats(client, &mut s);
    if rc == lively_result::Ok {
        // SAFETY: non-NULL and writable per the old contract.
        if let Some(out) = unsafe { out.as_mut() } {
            *out = lively_stats_v0 {
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
            };
        }
    }
    rc
}

#[allow(clippy::too_many_arguments)]
pub(crate) extern "C" fn client_subscribe_v0(
    client: *const lively_client,
    filter_v0: *const lively_filter_v0,
    opts_v0: *const lively_subscribe_options_v0,
    callback: lively_event_callback,
    userdata: *mut c_void,
    release: lively_release_callback,
    out: *mut *mut lively_subscription,
) -> lively_result {
    // SAFETY: the old contract.
    let (f, o) = unsafe { (filter(filter_v0), options(opts_v0)) };
    lively_subscription::lively_client_subscribe(
        client,
        ptr(&f),
        ptr(&o),
        callback,
        userdata,
        release,
        out,
    )
}

pub(crate) extern "C" fn client_subscribe_pull_v0(
    client: *const lively_client,
    filter_v0: *const lively_filter_v0,
    opts_v0: *const lively_subscribe_options_v0,
    out: *mut *mut lively_subscription,
) -> lively_result {
    // SAFETY: the old contract.
    let (f, o) = unsafe { (filter(filter_v0), options(opts_v0)) };
    lively_subscription::lively_client_subscribe_pull(client, ptr(&f), ptr(&o), out)
}

/// The public names, each with today's function (`__abi1`) and its
/// `LIVELY_0` shim; `$jump`/`$plt` spell a tail call on the architecture.
#[allow(unused_macros)]
macro_rules! versioned {
    ($jump:literal, $plt:literal; $($name:literal => $v0:ident),* $(,)?) => {
        std::arch::global_asm!(
            ".pushsection .text.lively_abi,\"ax\",@progbits",
            $(
                // Today's: the public name, versioned LIVELY_0.1 by the map.
                concat!(".globl ", $name),
                concat!(".type ", $name, ", @function"),
                concat!($name, ":"),
                concat!($jump, " ", $name, "__abi1", $plt),
                concat!(".size ", $name, ", . - ", $name),
                // The old layout's: a global helper symbol (outside
                // `lively_*`, so the map's `local: *` keeps it unexported)
                // aliased as name@LIVELY_0.
                concat!(".globl __abi0_", $name),
                concat!(".type __abi0_", $name, ", @function"),
                concat!("__abi0_", $name, ":"),
                concat!($jump, " {", stringify!($v0), "}", $plt),
                concat!(".size __abi0_", $name, ", . - __abi0_", $name),
                concat!(".symver __abi0_", $name, ", ", $name, "@LIVELY_0"),
            )*
            ".popsection",
            $($v0 = sym $v0,)*
        );
    };
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
versioned! { "jmp", "@PLT";
    "lively_client_update" => client_update_v0,
    "lively_client_list" => client_list_v0,
    "lively_view_list" => view_list_v0,
    "lively_client_stats" => client_stats_v0,
    "lively_client_subscribe" => client_subscribe_v0,
    "lively_client_subscribe_pull" => client_subscribe_pull_v0,
}

#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
versioned! { "b", "";
    "lively_client_update" => client_update_v0,
    "lively_client_list" => client_list_v0,
    "lively_view_list" => view_list_v0,
    "lively_client_stats" => client_stats_v0,
    "lively_client_subscribe" => client_subscribe_v0,
    "lively_client_subscribe_pull" => client_subscribe_pull_v0,
}

/// Elsewhere the public names are plain Rust wrappers around today's
/// functions (no older binaries to serve without symbol versions).
///
/// (The header declares these from the `__abi1` functions.)
/// cbindgen:ignore
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
mod unversioned {
    use super::*;
    use crate::capi::service::lively_service_list;

    #[unsafe(no_mangle)]
    extern "C" fn lively_client_update(
        client: *const lively_client,
        service: *const lively_service,
        uuid_out: *mut c_char,
        uuid_out_len: usize,
    ) -> lively_result {
        lively_client::lively_client_update(client, service, uuid_out, uuid_out_len)
    }

    #[unsafe(no_mangle)]
    extern "C" fn lively_client_list(
        client: *const lively_client,
        filter: *const lively_filter,
        out: *mut *mut lively_service_list,
    ) -> lively_result {
        lively_client::lively_client_list(client, filter, out)
    }

    #[unsafe(no_mangle)]
    extern "C" fn lively_view_list(
        view: *const lively_view,
        filter: *const lively_filter,
        out: *mut *mut lively_service_list,
    ) -> lively_result {
        lively_view::lively_view_list(view, filter, out)
    }

    #[unsafe(no_mangle)]
    extern "C" fn lively_client_stats(
        client: *const lively_client,
        out: *mut lively_stats,
    ) -> lively_result {
        lively_client::lively_client_stats(client, out)
    }

    #[unsafe(no_mangle)]
    extern "C" fn lively_client_subscribe(
        client: *const lively_client,
        filter: *const lively_filter,
        opts: *const lively_subscribe_options,
        callback: lively_event_callback,
        userdata: *mut c_void,
        release: lively_release_callback,
        out: *mut *mut lively_subscription,
    ) -> lively_result {
        lively_subscription::lively_client_subscribe(
            client, filter, opts, callback, userdata, release, out,
        )
    }

    #[unsafe(no_mangle)]
    extern "C" fn lively_client_subscribe_pull(
        client: *const lively_client,
        filter: *const lively_filter,
        opts: *const lively_subscribe_options,
        out: *mut *mut lively_subscription,
    ) -> lively_result {
        lively_subscription::lively_client_subscribe_pull(client, filter, opts, out)
    }
}
