//! `lively_subscription`: up/down notifications, by callback or pulled.

use std::cell::RefCell;
use std::ffi::{CString, c_void};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use super::client::lively_client;
use super::guard::{arg_out, to_cstring};
use super::result::{Failure, lively_result};
use super::service::{
    LIVELY_STATUS_NONE, ServiceStrings, lively_bool, lively_filter, lively_service_record,
    lively_status,
};
use super::sized::{SizedStruct, read_sized};
use crate::{Canceller, DownReason, Event, EventKind, SubscribeOptions, Subscription};

/// What happened to a service.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lively_event_kind {
    /// Part of the initial snapshot (only with `snapshot` set).
    Existing = 0,
    /// The service entered the subscription's set: a new record appeared,
    /// or a change made an existing one pass the filter (say, it moved into
    /// the subscribed region). `old_status` is NONE either way.
    Registered = 1,
    /// The service became effectively UP.
    Up = 2,
    /// The service stopped being effectively UP; see `reason`.
    Down = 3,
    /// Fields other than the effective status changed.
    Updated = 4,
    /// The service left the subscription's set: its record was deleted
    /// (after a DOWN with reason DELETED if it was UP), or a change took it
    /// out of the filter (reason MOVED, no DOWN first).
    Removed = 5,
    /// The subscription fell behind; the events that follow are the
    /// differences between what it was told and the current state.
    Resync = 6,
}

/// Why a service went DOWN, why it left a subscription's set
/// (`LIVELY_DOWN_REASON_MOVED` with a REMOVED event), or, for an UP event,
/// `LIVELY_DOWN_REASON_LIFTED` when it ends a forced DOWN;
/// `LIVELY_DOWN_REASON_NONE` for other events.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum lively_down_reason {
    /// Not a DOWN event.
    None = 0,
    /// An operator forced it DOWN (`lively_client_down()`, maintenance).
    Forced = 1,
    /// Its registering process stopped keeping its lease alive (it died, or
    /// was cut off for longer than the TTL): a crash, not a clean close.
    Expired = 2,
    /// Its record was deleted.
    Deleted = 3,
    /// Its owner missed its heartbeat deadline (`heartbeat_ms`): the
    /// process lives, its main loop does not check in. The next
    /// `lively_client_heartbeat()` brings it back UP.
    Missed = 4,
    /// With `LIVELY_EVENT_KIND_REMOVED`: the service still exists, but a
    /// change moved it out of the subscription's filter (say, to another
    /// region), so it left the subscription's set. With
    /// `LIVELY_EVENT_KIND_UPDATED`: another client took the service over
    /// from a live holder (identity is type+host); it stays UP.
    Moved = 5,
    /// An UP event: a forced DOWN was lifted (`lively_client_up()`, or the
    /// end of its maintenance window).
    Lifted = 6,
    /// Its registering client closed cleanly (`lively_client_close()` or
    /// the last handle freed): a shutdown, not a crash.
    Closed = 7,
    /// Its owner set it DOWN itself (an update with status DOWN).
    Declared = 8,
}

/// One change of one service.
///
/// Ownership: in a callback, the event and all its strings are valid only
/// during the call (copy what you keep). From `lively_subscription_next()`
/// the caller owns it and frees it with `lively_event_free()`.
#[repr(C)]
#[derive(Debug)]
pub struct lively_event {
    /// A `lively_event_kind` value.
    pub kind: lively_event_kind,
    /// A `lively_down_reason` value (NONE unless `kind` is DOWN, or REMOVED
    /// because the service moved out of the filter: MOVED).
    pub reason: lively_down_reason,
    /// The service's uuid (`""` for RESYNC).
    pub uuid: *const std::ffi::c_char,
    /// Its type.
    pub service_type: *const std::ffi::c_char,
    /// Its host.
    pub host: *const std::ffi::c_char,
    /// Its region (`""` for none).
    pub region: *const std::ffi::c_char,
    /// Effective status before the change: a `lively_status` value, or
    /// `LIVELY_STATUS_NONE` if the service did not exist.
    pub old_status: i32,
    /// Effective status after the change, or `LIVELY_STATUS_NONE` if it no
    /// longer exists.
    pub new_status: i32,
    /// The record after the change; for REMOVED, the record before the
    /// deletion, or with reason MOVED the record as it is now. NULL if none.
    pub service: *const lively_service_record,
    /// The etcd revision of the change.
    pub revision: i64,
}

/// Called for each event, on a library thread (one call at a time per
/// subscription; never on the thread that keeps leases alive). It may call
/// any `lively_*` function. To stop its own subscription it calls
/// `lively_subscription_cancel_current()`, which needs nothing but the
/// calling thread; it may also call `lively_subscription_cancel()` and
/// `lively_subscription_free()` of its own subscription: the first call
/// starts only after `lively_client_subscribe()` has written `*out`, so a
/// callback that finds `*out` through its userdata (pass `&ctx->sub` as
/// `out`) always sees its subscription, from the first event on (the
/// snapshot's included). `event` is valid only during the call.
/// Must not throw or unwind: a C++ exception (or `longjmp`) leaving the
/// callback crosses Rust frames and aborts the process; catch everything
/// inside it (the C++ header `os_lively.hpp` does).
pub type lively_event_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, event: *const lively_event)>;

/// Called exactly once with the subscription's `userdata` after its last
/// callback has returned, once the subscription is cancelled or freed;
/// possibly on a library thread, possibly after `lively_subscription_free()`
/// returned. Use it to free `userdata`.
/// Must not throw or unwind: a C++ exception (or `longjmp`) leaving the
/// callback crosses Rust frames and aborts the process; catch everything
/// inside it (the C++ header `os_lively.hpp` does).
pub type lively_release_callback = Option<unsafe extern "C" fn(userdata: *mut c_void)>;

/// Subscription options; `LIVELY_SUBSCRIBE_OPTIONS_INIT` (size set, the
/// rest zero) gives the defaults, as does NULL.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct lively_subscribe_options {
    /// `sizeof(lively_subscribe_options)` as the caller compiled it (set by
    /// `LIVELY_SUBSCRIBE_OPTIONS_INIT`); anything else is
    /// `LIVELY_RESULT_INVALID_ARGUMENT`.
    pub struct_size: usize,
    /// First deliver an EXISTING event for every matching service, then
    /// the changes, with no gap between them. A value other than 0 or 1 is
    /// `LIVELY_RESULT_INVALID_ARGUMENT`.
    pub snapshot: lively_bool,
    /// Events held for a slow consumer before it is resynced instead
    /// (0: the default, 1024).
    pub queue_capacity: usize,
}

// SAFETY: repr(C), `struct_size` first, every field valid when zero.
unsafe impl SizedStruct for lively_subscribe_options {
    const NAME: &'static str = "lively_subscribe_options";
    const MIN_SIZE: usize = std::mem::size_of::<lively_subscribe_options>();
}

impl Default for lively_subscribe_options {
    /// `LIVELY_SUBSCRIBE_OPTIONS_INIT`: the size set, the defaults.
    fn default() -> lively_subscribe_options {
        lively_subscribe_options {
            struct_size: std::mem::size_of::<lively_subscribe_options>(),
            snapshot: lively_bool::FALSE,
            queue_capacity: 0,
        }
    }
}

/// A live subscription. Created by `lively_client_subscribe()` or
/// `lively_client_subscribe_pull()`, released by
/// `lively_subscription_free()` (which cancels it). Thread-safe.
pub struct lively_subscription {
    _private: [u8; 0],
}

/// Strings and record behind a `lively_event` view; heap buffers, so the
/// view's pointers stay valid when this moves.
struct EventData {
    uuid: CString,
    service_type: CString,
    host: CString,
    region: CString,
    service: Option<(ServiceStrings, Box<lively_service_record>)>,
}

fn status_code(s: Option<crate::Status>) -> i32 {
    s.map_or(LIVELY_STATUS_NONE, |s| lively_status::code(s) as i32)
}

impl EventData {
    fn new(e: &Event) -> EventData {
        EventData {
            uuid: to_cstring(&e.uuid),
            service_type: to_cstring(&e.service_type),
            host: to_cstring(&e.host),
            region: to_cstring(&e.region),
            service: e.service.as_ref().map(|s| {
                let strings = ServiceStrings::new(s);
                let view = Box::new(lively_service_record::borrowing(&strings, s));
                (strings, view)
            }),
        }
    }

    fn view(&self, e: &Event) -> lively_event {
        lively_event {
            kind: match e.kind {
                EventKind::Existing => lively_event_kind::Existing,
                EventKind::Registered => lively_event_kind::Registered,
                EventKind::Up => lively_event_kind::Up,
                EventKind::Down => lively_event_kind::Down,
                EventKind::Updated => lively_event_kind::Updated,
                EventKind::Removed => lively_event_kind::Removed,
                EventKind::Resync => lively_event_kind::Resync,
            },
            reason: match e.reason {
                None => lively_down_reason::None,
                Some(DownReason::Forced) => lively_down_reason::Forced,
                Some(DownReason::Expired) => lively_down_reason::Expired,
                Some(DownReason::Deleted) => lively_down_reason::Deleted,
                Some(DownReason::Missed) => lively_down_reason::Missed,
                Some(DownReason::Moved) => lively_down_reason::Moved,
                Some(DownReason::Lifted) => lively_down_reason::Lifted,
                Some(DownReason::Closed) => lively_down_reason::Closed,
                Some(DownReason::Declared) => lively_down_reason::Declared,
            },
            uuid: self.uuid.as_ptr(),
            service_type: self.service_type.as_ptr(),
            host: self.host.as_ptr(),
            region: self.region.as_ptr(),
            old_status: status_code(e.old_status),
            new_status: status_code(e.new_status),
            service: self.service.as_ref().map_or(std::ptr::null(), |(_, v)| {
                &**v as *const lively_service_record
            }),
            revision: e.revision,
        }
    }
}

/// An event handed to C by `lively_subscription_next()`; the view comes
/// first so a `*mut OwnedEvent` is a `*mut lively_event`.
#[repr(C)]
struct OwnedEvent {
    event: lively_event,
    _data: EventData,
}

const PENDING: u8 = 0;
const ARMED: u8 = 1;
const DROPPED: u8 = 2;
const ABANDONED: u8 = 3;

/// The C callback, its userdata and release function, moved into the Rust
/// callback closure. Dropping it (after the last callback) releases the
/// userdata, but only once subscribing succeeded: on failure the caller
/// keeps ownership of its userdata.
struct CallbackCtx {
    callback: unsafe extern "C" fn(*mut c_void, *const lively_event),
    userdata: *mut c_void,
    release: lively_release_callback,
    state: Arc<AtomicU8>,
    gate: Arc<Gate>,
    passed: AtomicBool,
    /// Set before the gate opens, so every callback can cancel its own
    /// subscription (`lively_subscription_cancel_current()`).
    canceller: Arc<OnceLock<Canceller>>,
}

thread_local! {
    /// The subscription whose callback runs on this thread, if one does:
    /// what `lively_subscription_cancel_current()` cancels. A stack in
    /// effect (each delivery restores what it found), though one thread
    /// runs one subscription's callbacks.
    static CURRENT: RefCell<Option<Canceller>> = const { RefCell::new(None) };
}

/// Makes a subscription the calling thread's current one for a callback's
/// duration; restores the previous one when dropped (a panic's included).
struct Current(Option<Canceller>);

impl Current {
    fn enter(c: Option<Canceller>) -> Current {
        Current(CURRENT.with(|cur| cur.replace(c)))
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|cur| *cur.borrow_mut() = previous);
    }
}

/// Holds callbacks back until `lively_client_subscribe()` has written
/// `*out` (or failed): opened once, never closed again. Its mutex orders
/// the write of `*out` before the first callback's reads.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.opened.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        while !*open {
            open = self.opened.wait(open).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Opens the gate when dropped: on every path out of
/// `lively_client_subscribe()`, a panic's included.
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

// SAFETY: the documented contract of `lively_client_subscribe()`: the
// callback, release function and userdata may be used from a library
// thread, and the library calls them one at a time.
unsafe impl Send for CallbackCtx {}

impl CallbackCtx {
    fn deliver(&self, e: &Event) {
        if !self.passed.load(Ordering::Relaxed) {
            self.gate.wait();
            self.passed.store(true, Ordering::Relaxed);
        }
        if self.state.load(Ordering::Acquire) == ABANDONED {
            return; // subscribing failed: the userdata stays the caller's
        }
        let _current = Current::enter(self.canceller.get().cloned());
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let data = EventData::new(e);
            let view = data.view(e);
            // SAFETY: the caller's callback, with a view valid for the call.
            unsafe { (self.callback)(self.userdata, &view) };
        }));
    }
}

impl Drop for CallbackCtx {
    fn drop(&mut self) {
        if self.state.swap(DROPPED, Ordering::AcqRel) == ARMED {
            if let Some(release) = self.release {
                // SAFETY: per the contract, called once after the last callback.
                unsafe { release(self.userdata) };
            }
        }
    }
}

fn read_options(p: *const lively_subscribe_options) -> Result<SubscribeOptions, Failure> {
    let mut o = SubscribeOptions::default();
    // SAFETY: NULL or a valid options struct per the documented contract.
    if let Some(opts) = unsafe { read_sized(p) }? {
        o.snapshot = opts.snapshot.read("options.snapshot")?;
        if opts.queue_capacity > 0 {
            o.queue_capacity = opts.queue_capacity;
        }
    }
    Ok(o)
}

fn boxed(sub: Subscription) -> *mut lively_subscription {
    Box::into_raw(Box::new(sub)).cast()
}

/// # Safety
/// `p` is NULL or a live subscription handle.
unsafe fn get<'a>(p: *const lively_subscription) -> Result<&'a Subscription, Failure> {
    // SAFETY: made by `boxed` from a `Subscription`.
    unsafe { p.cast::<Subscription>().as_ref() }.ok_or_else(|| Failure::null("subscription"))
}

impl lively_subscription {
    /// Subscribes to changes of the services matching `filter` (NULL:
    /// every service in the namespace). `callback` is called for each
    /// event, in etcd revision order, on a library thread, one call at a
    /// time; events are not lost or duplicated across reconnects.
    ///
    /// `options` may be NULL (defaults). `release` may be NULL; if given,
    /// it is called exactly once with `userdata` after the last callback
    /// returned (see `lively_release_callback`). If this function fails,
    /// neither is ever called and `userdata` stays the caller's.
    ///
    /// Ownership: `filter` and `options` are copied. On success `*out`
    /// receives a subscription the caller frees with
    /// `lively_subscription_free()`. It keeps the client's connection
    /// alive (see `lively_client`), even after `lively_client_free()`, and
    /// ends when the client is closed with `lively_client_close()`. In a
    /// child forked after it was made, `lively_subscription_next()` returns
    /// `LIVELY_RESULT_FORKED`. A filter with `has_status` set
    /// is `LIVELY_RESULT_INVALID_ARGUMENT`: status changes are the events.
    /// Thread safety: thread-safe; `callback`, `release` and `userdata`
    /// must be usable from a library thread.
    #[must_use]
    // Exported as `lively_client_subscribe__abi1`; `lively_client_subscribe` is its versioned alias (see
    // `capi::abi`).
    #[unsafe(export_name = "lively_client_subscribe__abi1")]
    pub extern "C" fn lively_client_subscribe(
        client: *const lively_client,
        filter: *const lively_filter,
        opts: *const lively_subscribe_options,
        callback: lively_event_callback,
        userdata: *mut c_void,
        release: lively_release_callback,
        out: *mut *mut lively_subscription,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handles and filter per the documented contract.
            let client = unsafe { lively_client::get(client) }?;
            let filter = unsafe { lively_filter::to_rust(filter) }?;
            let callback = callback.ok_or_else(|| Failure::null("callback"))?;
            let out = arg_out(out, "out")?;
            let opts = read_options(opts)?;
            let state = Arc::new(AtomicU8::new(PENDING));
            let gate = Arc::new(Gate::default());
            let _open = OpenOnDrop(gate.clone());
            let canceller = Arc::new(OnceLock::new());
            let ctx = CallbackCtx {
                callback,
                userdata,
                release,
                state: state.clone(),
                gate,
                passed: AtomicBool::new(false),
                canceller: canceller.clone(),
            };
            let result = client.subscribe_callback(&filter, &opts, move |e: &Event| ctx.deliver(e));
            match result {
                Ok(sub) => {
                    // Before the gate opens (`_open`, on return).
                    let _ = canceller.set(sub.canceller());
                    if state
                        .compare_exchange(PENDING, ARMED, Ordering::AcqRel, Ordering::Acquire)
                        .is_err()
                    {
                        // The subscription already ended and dropped the
                        // callback before we armed it: release here.
                        if let Some(release) = release {
                            // SAFETY: per the contract, once, after the last callback.
                            unsafe { release(userdata) };
                        }
                    }
                    // SAFETY: non-NULL, writable.
                    unsafe { out.write(boxed(sub)) };
                    Ok(())
                }
                Err(e) => {
                    state.store(ABANDONED, Ordering::Release);
                    Err(e.into())
                }
            }
        })
    }

    /// Subscribes like `lively_client_subscribe()`, but events queue until
    /// pulled with `lively_subscription_next()` (no callback thread).
    ///
    /// Ownership: as `lively_client_subscribe()`.
    /// Thread safety: thread-safe.
    #[must_use]
    // Exported as `lively_client_subscribe_pull__abi1`; `lively_client_subscribe_pull` is its versioned alias (see
    // `capi::abi`).
    #[unsafe(export_name = "lively_client_subscribe_pull__abi1")]
    pub extern "C" fn lively_client_subscribe_pull(
        client: *const lively_client,
        filter: *const lively_filter,
        opts: *const lively_subscribe_options,
        out: *mut *mut lively_subscription,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handles and filter per the documented contract.
            let client = unsafe { lively_client::get(client) }?;
            let filter = unsafe { lively_filter::to_rust(filter) }?;
            let out = arg_out(out, "out")?;
            let sub = client.subscribe(&filter, &read_options(opts)?)?;
            // SAFETY: non-NULL, writable.
            unsafe { out.write(boxed(sub)) };
            Ok(())
        })
    }

    /// Waits up to `timeout_ms` for the next event of a pull subscription.
    /// On success `*event` is the event, or NULL if none arrived in time.
    /// `LIVELY_RESULT_CLOSED` once the subscription is cancelled;
    /// `LIVELY_RESULT_INVALID_ARGUMENT` for a callback subscription.
    ///
    /// Ownership: the caller frees a non-NULL `*event` with
    /// `lively_event_free()`.
    /// Thread safety: thread-safe.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_subscription_next(
        subscription: *const lively_subscription,
        timeout_ms: u64,
        event: *mut *mut lively_event,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle per the documented contract.
            let sub = unsafe { get(subscription) }?;
            let out = arg_out(event, "event")?;
            let next = sub.recv_timeout(Duration::from_millis(timeout_ms))?;
            let p = match next {
                None => std::ptr::null_mut(),
                Some(e) => {
                    let data = EventData::new(&e);
                    let view = data.view(&e);
                    Box::into_raw(Box::new(OwnedEvent {
                        event: view,
                        _data: data,
                    }))
                    .cast::<lively_event>()
                }
            };
            // SAFETY: non-NULL, writable.
            unsafe { out.write(p) };
            Ok(())
        })
    }

    /// Frees an event returned by `lively_subscription_next()`. NULL is a
    /// no-op. Never pass the event given to a callback.
    ///
    /// Ownership: takes `event`.
    /// Thread safety: thread-safe (for different events).
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_event_free(event: *mut lively_event) {
        lively_guard!({
            if !event.is_null() {
                // SAFETY: made as a boxed `OwnedEvent` in `next`, freed once.
                drop(unsafe { Box::from_raw(event.cast::<OwnedEvent>()) });
            }
        })
    }

    /// Cancels a subscription: once this returns (outside its callback) no
    /// further callback starts, so the callback's userdata may be freed
    /// (unless a release callback does that). Cancelling twice is OK.
    ///
    /// Ownership: the handle stays allocated; free it with
    /// `lively_subscription_free()`.
    /// Thread safety: thread-safe; may be called from inside the callback.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_subscription_cancel(
        subscription: *const lively_subscription,
    ) -> lively_result {
        lively_call!({
            // SAFETY: handle per the documented contract.
            let sub = unsafe { get(subscription) }?;
            sub.cancel();
            Ok(())
        })
    }

    /// Cancels the subscription whose callback is running on the calling
    /// thread, from inside that callback. It needs no handle: a callback
    /// stops its own subscription without being given it, from its very
    /// first call on (a snapshot event's included). The current call
    /// finishes; no further call starts, and the release callback runs
    /// once it has returned. The handle stays allocated: free it with
    /// `lively_subscription_free()` as usual (outside the callback, or
    /// inside it). Cancelling twice is OK.
    ///
    /// Outside a subscription callback (another thread, or no callback
    /// running) it changes nothing and returns
    /// `LIVELY_RESULT_INVALID_ARGUMENT`.
    ///
    /// Thread safety: acts on the calling thread's running callback only.
    #[must_use]
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_subscription_cancel_current() -> lively_result {
        lively_call!({
            let current = CURRENT.with(|cur| cur.borrow().clone());
            let canceller = current.ok_or_else(|| {
                Failure::invalid(
                    "lively_subscription_cancel_current: not called from inside a subscription callback",
                )
            })?;
            canceller.cancel();
            Ok(())
        })
    }

    /// Cancels (see `lively_subscription_cancel()`) and frees a
    /// subscription; if it was the connection's last handle, the
    /// connection closes (see `lively_client`). NULL is a no-op.
    ///
    /// In a child forked after the handle was made, freeing takes no lock
    /// and touches nothing the parent's threads own: that memory is left
    /// allocated, and the parent's connection is not closed.
    ///
    /// Ownership: takes `subscription`; do not use it afterwards.
    /// Thread safety: no other thread may use the handle during or after
    /// the call; may be called from inside the subscription's own callback.
    #[unsafe(no_mangle)]
    pub extern "C" fn lively_subscription_free(subscription: *mut lively_subscription) {
        lively_guard!({
            if !subscription.is_null() {
                // SAFETY: made by `boxed`, freed once per the contract.
                drop(unsafe { Box::from_raw(subscription.cast::<Subscription>()) });
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lively_result as R;
    use lively_subscription as S;
    use std::ptr::{null, null_mut};

    #[test]
    fn nulls() {
        assert_eq!(
            S::lively_client_subscribe(null(), null(), null(), None, null_mut(), None, null_mut()),
            R::NullParameter
        );
        assert_eq!(
            S::lively_client_subscribe_pull(null(), null(), null(), null_mut()),
            R::NullParameter
        );
        assert_eq!(
            S::lively_subscription_next(null(), 0, null_mut()),
            R::NullParameter
        );
        assert_eq!(S::lively_subscription_cancel(null()), R::NullParameter);
        // No callback runs on this thread: nothing to cancel.
        assert_eq!(S::lively_subscription_cancel_current(), R::InvalidArgument);
        S::lively_subscription_free(null_mut());
        S::lively_event_free(null_mut());
    }

    #[test]
    fn event_views_point_into_their_data() {
        let e = Event {
            kind: EventKind::Down,
            reason: Some(DownReason::Expired),
            uuid: "u".into(),
            service_type: "t".into(),
            host: "h".into(),
            region: String::new(),
            old_status: Some(crate::Status::Up),
            new_status: None,
            service: Some(crate::Service::new("t", "h")),
            revision: 9,
        };
        let data = EventData::new(&e);
        let v = data.view(&e);
        assert_eq!(v.kind, lively_event_kind::Down);
        assert_eq!(v.reason, lively_down_reason::Expired);
        assert_eq!(v.old_status, 0);
        assert_eq!(v.new_status, LIVELY_STATUS_NONE);
        let host = unsafe { std::ffi::CStr::from_ptr((*v.service).host) };
        assert_eq!(host.to_str().unwrap(), "h");
    }
}
