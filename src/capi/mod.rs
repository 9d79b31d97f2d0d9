//! The C ABI: opaque handles, status codes and `extern "C"` functions, turned
//! into `include/os_lively.h` by cbindgen.
//!
//! Conventions (see `DESIGN.md`, "C ABI conventions"):
//! - every fallible function returns a [`lively_result`]; outputs go through
//!   trailing pointers written only on success;
//! - [`lively_last_error`] gives the calling thread's last failure message;
//! - every exported body runs inside `lively_guard!`, so no panic crosses
//!   the boundary; NULL and invalid UTF-8 get their own codes;
//! - integers from C that name an enum value are validated, never transmuted;
//! - `*_free(NULL)` is a no-op; memory returned by the library has its own
//!   `*_free`.
//!
//! The exported functions are safe `extern "C" fn`s that take raw pointers
//! (the rustls-ffi pattern): their contract is the C header's, and every
//! pointer is checked for NULL before use. Hence the
//! `not_unsafe_ptr_arg_deref` allowance below.
#![allow(non_camel_case_types, clippy::not_unsafe_ptr_arg_deref)]

mod cstr;
#[macro_use]
mod guard;
mod abi;
mod client;
mod config;
mod last_error;
mod log;
mod result;
mod service;
mod sized;
mod subscription;
mod version;
mod view;

pub use client::{lively_client, lively_stats};
pub use config::lively_config;
pub use last_error::{lively_last_error, lively_result_str};
pub use log::{lively_log_callback, lively_log_level, lively_set_log_callback};
pub use result::lively_result;
pub use service::{
    LIVELY_STATUS_NONE, LIVELY_UUID_BUF_LEN, lively_bool, lively_filter, lively_service,
    lively_service_info, lively_service_list, lively_service_record, lively_status,
    lively_string_free,
};
pub use subscription::{
    lively_down_reason, lively_event, lively_event_callback, lively_event_kind,
    lively_release_callback, lively_subscribe_options, lively_subscription,
};
pub use version::{
    LIVELY_VERSION_MAJOR, LIVELY_VERSION_MINOR, LIVELY_VERSION_NUMBER, LIVELY_VERSION_PATCH,
    lively_version, lively_version_number,
};
pub use view::lively_view;
