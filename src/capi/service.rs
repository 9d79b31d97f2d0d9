//! The plain C structs for service records, filters and query results, and
//! their conversions.

use std::ffi::{CString, c_char};

use super::guard::{opt_str, to_cstring};
use super::result::Failure;
use super::sized::{SizedStruct, read_sized};
use crate::{Filter, Service, ServiceInfo, Status};

/// Size of a buffer that holds a uuid as returned by the library: 32
/// lowercase hex digits and the terminating NUL.
pub const LIVELY_UUID_BUF_LEN: usize = 33;

/// `old_status`/`new_status` of a `lively_event` when there is none (the
/// service did not exist before, or no longer exists).
pub const LIVELY_STATUS_NONE: i32 = -1;

/// A C `bool` in a struct the caller fills in, read as the byte it is.
///
/// A Rust `bool` may only hold 0 or 1, but a C caller can leave any byte
/// in a `bool` field (uninitialized memory, `memset`, a cast). Reading such
/// a byte as a Rust `bool` is undefined behaviour, so input structs hold
/// this byte instead; [`lively_bool::read`] accepts 0 and 1 and refuses
/// anything else with an invalid-argument error naming the field. The
/// header shows the field as `bool` (cbindgen.toml renames this type).
#[repr(transparent)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct lively_bool(pub u8);

impl lively_bool {
    /// The C `true`.
    pub const TRUE: lively_bool = lively_bool(1);
    /// The C `false`.
    pub const FALSE: lively_bool = lively_bool(0);

    /// The value of field `name`, validated.
    pub(crate) fn read(self, name: &str) -> Result<bool, Failure> {
        match self.0 {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(Failure::invalid(format!(
                "{name}: {v} is not a bool (0 or 1)"
            ))),
        }
    }
}

impl From<bool> for lively_bool {
    fn from(b: bool) -> lively_bool {
        lively_bool(u8::from(b))
    }
}

/// A service's declared status (values as in the protobuf record).
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lively_status {
    /// The service says it is working; it is effectively UP only while its
    /// registering client keeps its lease alive.
    Up = 0,
    /// Forced down (maintenance) or declared down.
    Down = 1,
}

impl lively_status {
    pub(crate) fn from_u32(v: u32, name: &str) -> Result<Status, Failure> {
        match v {
            0 => Ok(Status::Up),
            1 => Ok(Status::Down),
            _ => Err(Failure::invalid(format!(
                "{name}: {v} is not a lively_status (LIVELY_STATUS_UP or LIVELY_STATUS_DOWN)"
            ))),
        }
    }

    pub(crate) fn code(s: Status) -> u32 {
        match s {
            Status::Up => lively_status::Up as u32,
            Status::Down => lively_status::Down as u32,
        }
    }
}

/// A service record as the library hands it out (inside a
/// `lively_service_info` or a `lively_event`): every string is non-NULL
/// (possibly `""`) and owned by the enclosing object.
///
/// ABI: this layout is frozen under soname 0 (it is an element of
/// `lively_service_list.items`, so growing it would move every element for
/// an older caller); new record fields come with new versions of the
/// functions returning it (see "ABI policy" at the top of this header).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lively_service_record {
    /// 32 lowercase hex digits.
    pub uuid: *const c_char,
    /// What the service is, e.g. `"nova-compute"`.
    pub service_type: *const c_char,
    /// Where it runs, e.g. `"host-7"`.
    pub host: *const c_char,
    /// Declared status: a `lively_status` value.
    pub status: u32,
    /// Region, `""` for none.
    pub region: *const c_char,
    /// Maintenance window start, seconds since the epoch (0 for none).
    pub maintenance_start: u64,
    /// Maintenance window end, seconds since the epoch (0 for none).
    pub maintenance_end: u64,
    /// Why the service is down for maintenance.
    pub maintenance_note: *const c_char,
    /// Heartbeat deadline in milliseconds, 0 for none.
    pub heartbeat_ms: u64,
    /// True, with status DOWN, when the owner's client took the service
    /// down because it missed its heartbeat deadline.
    pub heartbeat_missed: bool,
    /// True while an operator's `lively_client_down()` holds the service
    /// DOWN (its owner's updates do not lift it; `lively_client_up()` or the
    /// end of the maintenance window does).
    pub forced_down: bool,
    /// Always false (kept so the layout stays what older callers read).
    pub exclusive: bool,
}

/// A service record as the owner asks for it: the input of
/// `lively_client_update()`.
///
/// Initialize it with `LIVELY_SERVICE_INIT`,
/// which sets `struct_size` and zeroes the rest: every field's zero is its
/// default, so a caller built against this header keeps working when later
/// versions append fields. The strings are borrowed for the call; `uuid`,
/// `region` and `maintenance_note` may be NULL (= empty; an empty uuid makes
/// the library take over the type+host's record or generate a uuid);
/// `service_type` and `host` are required; `status` must be a
/// `lively_status` value.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lively_service {
    /// `sizeof(lively_service)` as the caller compiled it (set by
    /// `LIVELY_SERVICE_INIT`); anything else is
    /// `LIVELY_RESULT_INVALID_ARGUMENT`.
    pub struct_size: usize,
    /// 32 hex digits (hyphenated form accepted); NULL or `""` for none.
    pub uuid: *const c_char,
    /// What the service is, e.g. `"nova-compute"`.
    pub service_type: *const c_char,
    /// Where it runs, e.g. `"host-7"`.
    pub host: *const c_char,
    /// Declared status: a `lively_status` value.
    pub status: u32,
    /// Region; NULL or `""` for none.
    pub region: *const c_char,
    /// Maintenance window start, seconds since the epoch (0 for none).
    pub maintenance_start: u64,
    /// Maintenance window end, seconds since the epoch (0 for none).
    pub maintenance_end: u64,
    /// Why the service is down for maintenance (NULL for none).
    pub maintenance_note: *const c_char,
    /// Heartbeat deadline in milliseconds: with one, the service is UP only
    /// while its owner also calls `lively_client_heartbeat()` at least this
    /// often (main-loop liveness; between 100 ms and a week). 0 keeps the
    /// deadline the service has (none for a new one);
    /// `LIVELY_HEARTBEAT_REMOVE` removes it.
    pub heartbeat_ms: u64,
    /// Refuse (`LIVELY_RESULT_CONFLICT`) to take the service over while
    /// another client's lease holds it, instead of taking it over (the
    /// default: identity is type+host, so a restarted daemon gets its
    /// service back without its saved uuid).
    pub exclusive: lively_bool,
}

/// `lively_service.heartbeat_ms` on input: remove the service's heartbeat
/// deadline (0 keeps it).
pub const LIVELY_HEARTBEAT_REMOVE: u64 = u64::MAX;

// SAFETY: repr(C), `struct_size` first, every field valid when zero.
unsafe impl SizedStruct for lively_service {
    const NAME: &'static str = "lively_service";
    const MIN_SIZE: usize = std::mem::size_of::<lively_service>();
}

impl Default for lively_service {
    /// `LIVELY_SERVICE_INIT`: the size set, everything else zero.
    fn default() -> lively_service {
        lively_service {
            struct_size: std::mem::size_of::<lively_service>(),
            uuid: std::ptr::null(),
            service_type: std::ptr::null(),
            host: std::ptr::null(),
            status: 0,
            region: std::ptr::null(),
            maintenance_start: 0,
            maintenance_end: 0,
            maintenance_note: std::ptr::null(),
            heartbeat_ms: 0,
            exclusive: lively_bool::FALSE,
        }
    }
}

impl lively_service {
    /// Reads a caller's record (`p` NULL is an error naming `name`).
    ///
    /// # Safety
    /// `p` is NULL or a record of its declared size whose non-NULL strings
    /// are NUL-terminated and valid for the call.
    pub(crate) unsafe fn from_c(p: *const lively_service, name: &str) -> Result<Service, Failure> {
        // SAFETY: per the function's contract.
        unsafe { read_sized(p)?.ok_or_else(|| Failure::null(name))?.read() }
    }

    /// Reads a C record (borrowed strings) into a `Service`.
    ///
    /// # Safety
    /// Every non-NULL string is NUL-terminated and valid for the call.
    pub(crate) unsafe fn read(&self) -> Result<Service, Failure> {
        // SAFETY: per the function's contract.
        unsafe {
            Ok(Service {
                uuid: opt_str(self.uuid, "service.uuid")?
                    .unwrap_or("")
                    .to_string(),
                service_type: opt_str(self.service_type, "service.service_type")?
                    .ok_or_else(|| Failure::null("service.service_type"))?
                    .to_string(),
                host: opt_str(self.host, "service.host")?
                    .ok_or_else(|| Failure::null("service.host"))?
                    .to_string(),
                status: lively_status::from_u32(self.status, "service.status")?,
                region: opt_str(self.region, "service.region")?
                    .unwrap_or("")
                    .to_string(),
                maintenance_start: self.maintenance_start,
                maintenance_end: self.maintenance_end,
                maintenance_note: opt_str(self.maintenance_note, "service.maintenance_note")?
                    .unwrap_or("")
                    .to_string(),
                heartbeat: match self.heartbeat_ms {
                    0 => None,
                    LIVELY_HEARTBEAT_REMOVE => Some(std::time::Duration::ZERO),
                    ms => Some(std::time::Duration::from_millis(ms)),
                },
                heartbeat_missed: false,
                // Only down() sets these; update() keeps what the store holds.
                forced_down: false,
                owner_down: false,
                exclusive: self.exclusive.read("service.exclusive")?,
            })
        }
    }
}

impl lively_service_record {
    /// A record whose strings point into `strings` (which must outlive it).
    pub(crate) fn borrowing(strings: &ServiceStrings, s: &Service) -> lively_service_record {
        lively_service_record {
            uuid: strings.uuid.as_ptr(),
            service_type: strings.service_type.as_ptr(),
            host: strings.host.as_ptr(),
            status: lively_status::code(s.status),
            region: strings.region.as_ptr(),
            maintenance_start: s.maintenance_start,
            maintenance_end: s.maintenance_end,
            maintenance_note: strings.maintenance_note.as_ptr(),
            heartbeat_ms: heartbeat_ms(s),
            heartbeat_missed: s.heartbeat_missed,
            forced_down: s.forced_down,
            exclusive: false,
        }
    }

    /// A record that owns its strings (released by [`lively_service_record::free_owned`]).
    fn owned(s: &Service) -> lively_service_record {
        let raw = |v: &str| to_cstring(v).into_raw() as *const c_char;
        lively_service_record {
            uuid: raw(&s.uuid),
            service_type: raw(&s.service_type),
            host: raw(&s.host),
            status: lively_status::code(s.status),
            region: raw(&s.region),
            maintenance_start: s.maintenance_start,
            maintenance_end: s.maintenance_end,
            maintenance_note: raw(&s.maintenance_note),
            heartbeat_ms: heartbeat_ms(s),
            heartbeat_missed: s.heartbeat_missed,
            forced_down: s.forced_down,
            exclusive: false,
        }
    }

    /// # Safety
    /// `self` was made by [`lively_service_record::owned`] and is freed once.
    unsafe fn free_owned(&mut self) {
        for p in [
            &mut self.uuid,
            &mut self.service_type,
            &mut self.host,
            &mut self.region,
            &mut self.maintenance_note,
        ] {
            if !p.is_null() {
                // SAFETY: made by `CString::into_raw` in `owned`.
                drop(unsafe { CString::from_raw(p.cast_mut()) });
                *p = std::ptr::null();
            }
        }
    }
}

fn heartbeat_ms(s: &Service) -> u64 {
    s.heartbeat
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Owned copies of a record's strings, for records lent to a callback.
pub(crate) struct ServiceStrings {
    uuid: CString,
    service_type: CString,
    host: CString,
    region: CString,
    maintenance_note: CString,
}

impl ServiceStrings {
    pub(crate) fn new(s: &Service) -> ServiceStrings {
        ServiceStrings {
            uuid: to_cstring(&s.uuid),
            service_type: to_cstring(&s.service_type),
            host: to_cstring(&s.host),
            region: to_cstring(&s.region),
            maintenance_note: to_cstring(&s.maintenance_note),
        }
    }
}

/// A record and whether the service is effectively UP now (record UP and
/// its lease-bound UP key present).
///
/// Ownership: returned by `lively_client_get()` (free with
/// `lively_service_info_free()`) or inside a `lively_service_list` (freed
/// with the list). Its strings belong to it; do not modify or free them.
#[repr(C)]
#[derive(Debug)]
pub struct lively_service_info {
    /// The stored record.
    pub service: lively_service_record,
    /// True when the service is effectively UP.
    pub up: bool,
}

impl lively_service_info {
    pub(crate) fn owned(info: &ServiceInfo) -> lively_service_info {
        lively_service_info {
            service: lively_service_record::owned(&info.service),
            up: info.up,
        }
    }

    pub(crate) fn boxed(info: &ServiceInfo) -> *mut lively_service_info {
        Box::into_raw(Box::new(lively_service_info::owned(info)))
    }

    /// Frees a `lively_service_info` returned by `lively_client_get()` or
    /// `lively_client_get_by_type_host()`. NULL is a no-op.
    ///
    /// Ownership: takes `info`; its strings become invalid. Never pass an
    /// element of a `lively_service_list`.
    /// Thread safety: thread-safe (for different objects).
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_service_info_free(info: *mut lively_service_info) {
        lively_guard!({
            if !info.is_null() {
                // SAFETY: made by `boxed`, freed once per the contract.
                let mut b = unsafe { Box::from_raw(info) };
                unsafe { b.service.free_owned() };
            }
        })
    }
}

/// An array of service infos returned by `lively_client_list()`.
///
/// Ownership: the caller frees it with `lively_service_list_free()`, which
/// frees every element and its strings. Do not modify it.
#[repr(C)]
#[derive(Debug)]
pub struct lively_service_list {
    /// `len` elements (not NULL, even when `len` is 0).
    pub items: *mut lively_service_info,
    /// Number of elements.
    pub len: usize,
}

impl lively_service_list {
    pub(crate) fn boxed(infos: &[ServiceInfo]) -> *mut lively_service_list {
        let items: Box<[lively_service_info]> =
            infos.iter().map(lively_service_info::owned).collect();
        let len = items.len();
        let items = Box::into_raw(items).cast::<lively_service_info>();
        Box::into_raw(Box::new(lively_service_list { items, len }))
    }

    /// Frees a list from `lively_client_list()` with all its elements.
    /// NULL is a no-op.
    ///
    /// Ownership: takes `list`; every pointer into it becomes invalid.
    /// Thread safety: thread-safe (for different objects).
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_service_list_free(list: *mut lively_service_list) {
        lively_guard!({
            if !list.is_null() {
                // SAFETY: made by `boxed`, freed once per the contract.
                let list = unsafe { Box::from_raw(list) };
                let mut items: Box<[lively_service_info]> = unsafe {
                    Box::from_raw(std::ptr::slice_from_raw_parts_mut(list.items, list.len))
                };
                for item in items.iter_mut() {
                    unsafe { item.service.free_owned() };
                }
            }
        })
    }
}

/// Which services `lively_client_list()` returns or a subscription
/// watches (subscriptions refuse `has_status`). Every non-NULL string
/// field narrows the result; a filter fresh from `LIVELY_FILTER_INIT`
/// (size set, the rest zero) matches everything, as does a NULL filter.
///
/// Ownership: borrowed for the call (subscriptions copy it).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lively_filter {
    /// `sizeof(lively_filter)` as the caller compiled it (set by
    /// `LIVELY_FILTER_INIT`); anything else is
    /// `LIVELY_RESULT_INVALID_ARGUMENT`.
    pub struct_size: usize,
    /// Only this uuid (NULL: any).
    pub uuid: *const c_char,
    /// Only this type (NULL: any).
    pub service_type: *const c_char,
    /// Only this host (NULL: any).
    pub host: *const c_char,
    /// Only this region (NULL: any).
    pub region: *const c_char,
    /// When true, only services whose effective status is `status`. A value
    /// other than 0 or 1 is `LIVELY_RESULT_INVALID_ARGUMENT`.
    pub has_status: lively_bool,
    /// A `lively_status` value; read only when `has_status` is true.
    pub status: u32,
}

// SAFETY: repr(C), `struct_size` first, every field valid when zero.
unsafe impl SizedStruct for lively_filter {
    const NAME: &'static str = "lively_filter";
    const MIN_SIZE: usize = std::mem::size_of::<lively_filter>();
}

impl Default for lively_filter {
    /// `LIVELY_FILTER_INIT`: the size set, everything else zero (all).
    fn default() -> lively_filter {
        lively_filter {
            struct_size: std::mem::size_of::<lively_filter>(),
            uuid: std::ptr::null(),
            service_type: std::ptr::null(),
            host: std::ptr::null(),
            region: std::ptr::null(),
            has_status: lively_bool::FALSE,
            status: 0,
        }
    }
}

impl lively_filter {
    /// Reads a C filter; NULL means "everything".
    ///
    /// # Safety
    /// `p` is NULL or a filter of its declared size whose non-NULL strings
    /// are NUL-terminated.
    pub(crate) unsafe fn to_rust(p: *const lively_filter) -> Result<Filter, Failure> {
        // SAFETY: per the function's contract.
        let Some(f) = (unsafe { read_sized(p) })? else {
            return Ok(Filter::all());
        };
        let own = |v: Option<&str>| v.map(str::to_string);
        // SAFETY: per the function's contract.
        unsafe {
            Ok(Filter {
                uuid: own(opt_str(f.uuid, "filter.uuid")?),
                service_type: own(opt_str(f.service_type, "filter.service_type")?),
                host: own(opt_str(f.host, "filter.host")?),
                region: own(opt_str(f.region, "filter.region")?),
                status: if f.has_status.read("filter.has_status")? {
                    Some(lively_status::from_u32(f.status, "filter.status")?)
                } else {
                    None
                },
            })
        }
    }
}

/// Frees a string the library returned as owned (documented as "free with
/// `lively_string_free()`"). NULL is a no-op.
///
/// Ownership: takes `s`.
/// Thread safety: thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn lively_string_free(s: *mut c_char) {
    lively_guard!({
        if !s.is_null() {
            // SAFETY: made by `CString::into_raw` in this library.
            drop(unsafe { CString::from_raw(s) });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_convert_and_validate() {
        let mut c = lively_service {
            uuid: std::ptr::null(),
            struct_size: std::mem::size_of::<lively_service>(),
            service_type: c"nova".as_ptr(),
            host: c"h1".as_ptr(),
            status: 1,
            region: std::ptr::null(),
            maintenance_start: 5,
            maintenance_end: 6,
            maintenance_note: c"note".as_ptr(),
            heartbeat_ms: 2500,
            exclusive: lively_bool::FALSE,
        };
        let s = unsafe { c.read() }.unwrap();
        assert_eq!(s.status, Status::Down);
        assert_eq!(s.heartbeat, Some(std::time::Duration::from_millis(2500)));
        assert!(!s.heartbeat_missed, "output only");
        assert_eq!(s.uuid, "");
        assert!(!s.forced_down, "forced_down is output only");
        assert_eq!(s.maintenance_note, "note");
        c.status = 7;
        assert!(unsafe { c.read() }.is_err());
        c.status = 0;
        c.host = std::ptr::null();
        assert_eq!(
            unsafe { c.read() }.unwrap_err().code,
            super::super::lively_result::NullParameter
        );
        let f = unsafe { lively_filter::to_rust(std::ptr::null()) }.unwrap();
        assert_eq!(f, Filter::all());
    }

    #[test]
    fn c_bools_are_bytes_validated_by_field_name() {
        assert!(!lively_bool(0).read("f").unwrap());
        assert!(lively_bool(1).read("f").unwrap());
        assert_eq!(lively_bool::from(true), lively_bool::TRUE);
        let e = lively_bool(2).read("filter.has_status").unwrap_err();
        assert_eq!(e.code, super::super::lively_result::InvalidArgument);
        assert!(e.message.contains("filter.has_status: 2"), "{}", e.message);
        assert_eq!(
            std::mem::size_of::<lively_bool>(),
            std::mem::size_of::<bool>()
        );
    }

    #[test]
    fn owned_lists_free_cleanly() {
        let info = ServiceInfo {
            service: Service::new("t", "h"),
            up: true,
            closed: false,
        };
        let list = lively_service_list::boxed(&[info.clone(), info.clone()]);
        assert_eq!(unsafe { (*list).len }, 2);
        lively_service_list::lively_service_list_free(list);
        let empty = lively_service_list::boxed(&[]);
        lively_service_list::lively_service_list_free(empty);
        lively_service_list::lively_service_list_free(std::ptr::null_mut());
        let one = lively_service_info::boxed(&info);
        lively_service_info::lively_service_info_free(one);
        lively_service_info::lively_service_info_free(std::ptr::null_mut());
        lively_string_free(std::ptr::null_mut());
    }
}
