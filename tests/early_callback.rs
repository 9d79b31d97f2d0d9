//! A C callback reaches its own subscription from the first event on: no
//! callback starts before `lively_client_subscribe()` has written `*out`
//! (issue 24, item 10), so the first snapshot event may cancel it.

mod common;

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use os_lively::Service;
use os_lively::capi::{
    lively_client, lively_event, lively_result, lively_subscribe_options, lively_subscription,
};

/// What the callback's userdata points to: the slot `lively_client_subscribe`
/// writes the handle to, as a C caller would pass `&ctx->sub`.
struct Ctx {
    sub: UnsafeCell<*mut lively_subscription>,
    events: AtomicUsize,
    saw_null: AtomicUsize,
    cancelled: AtomicUsize,
}

unsafe extern "C" fn on_event(userdata: *mut c_void, _event: *const lively_event) {
    // SAFETY: userdata is the test's `Ctx`, alive until after the free.
    let ctx = unsafe { &*(userdata as *const Ctx) };
    ctx.events.fetch_add(1, Ordering::SeqCst);
    // SAFETY: written by lively_client_subscribe before the first callback
    // (the property under test); read-only here.
    let sub = unsafe { std::ptr::read_volatile(ctx.sub.get()) };
    if sub.is_null() {
        ctx.saw_null.fetch_add(1, Ordering::SeqCst);
        return;
    }
    if ctx.cancelled.fetch_add(1, Ordering::SeqCst) == 0 {
        assert_eq!(
            lively_subscription::lively_subscription_cancel(sub),
            lively_result::Ok
        );
    }
}

#[test]
fn the_first_snapshot_event_can_cancel_its_subscription() {
    let etcd = Etcd::start();
    let ns = namespace("early_callback");
    let owner = connect(&etcd.endpoints(), &ns, 5);
    for i in 0..20 {
        owner
            .update(&Service::new("svc", &format!("h{i}")))
            .expect("update");
    }
    let client = c_connect(&etcd.endpoints(), &ns, 5);
    for round in 0..10 {
        let ctx = Box::new(Ctx {
            sub: UnsafeCell::new(null_mut()),
            events: AtomicUsize::new(0),
            saw_null: AtomicUsize::new(0),
            cancelled: AtomicUsize::new(0),
        });
        let opts = lively_subscribe_options {
            snapshot: true.into(),
            queue_capacity: 0,
            ..lively_subscribe_options::default()
        };
        assert_eq!(
            lively_subscription::lively_client_subscribe(
                client,
                null(),
                &opts,
                Some(on_event),
                &*ctx as *const Ctx as *mut c_void,
                None,
                ctx.sub.get(),
            ),
            lively_result::Ok
        );
        assert!(
            wait_until(Duration::from_secs(10), || ctx
                .events
                .load(Ordering::SeqCst)
                >= 1),
            "round {round}: no event"
        );
        // SAFETY: the handle written by lively_client_subscribe.
        let sub = unsafe { *ctx.sub.get() };
        // Freeing outside a callback waits for a running one to return.
        lively_subscription::lively_subscription_free(sub);
        assert_eq!(
            ctx.saw_null.load(Ordering::SeqCst),
            0,
            "round {round}: a callback ran before *out was written"
        );
        assert_eq!(ctx.cancelled.load(Ordering::SeqCst), 1, "round {round}");
        assert!(
            ctx.events.load(Ordering::SeqCst) < 20,
            "round {round}: cancelled on the first event, yet {} arrived",
            ctx.events.load(Ordering::SeqCst)
        );
    }
    lively_client::lively_client_free(client);
}
