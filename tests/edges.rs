//! Edge values at the API's borders: timeouts of `Duration::MAX` wait
//! without limit instead of panicking, and `bool` fields of C structs are
//! read as the bytes they are and validated (the exported fns, called
//! directly).

mod common;

use std::ffi::CStr;
use std::ptr::{null, null_mut};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use os_lively::capi::{
    lively_bool, lively_client, lively_event, lively_filter, lively_last_error, lively_result,
    lively_subscribe_options, lively_subscription, lively_view,
};
use os_lively::{EventKind, Filter, Service, SubscribeOptions};

const TTL: u64 = 5;

/// Runs `f` on a thread and returns its result, or panics after `limit`.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .expect("no answer in time (or the call panicked)")
}

#[test]
fn waits_of_duration_max_wait_without_limit() {
    let etcd = Etcd::start();
    let ns = namespace("edge_max");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let sub = client
        .subscribe(&Filter::all(), &SubscribeOptions::default())
        .unwrap();
    let view = client.view().unwrap();
    let rev = view.revision();
    let waiting_sub = std::thread::spawn(move || sub.recv_timeout(Duration::MAX));
    let v = view.clone();
    let waiting_view = std::thread::spawn(move || v.wait_for_revision(rev + 1, Duration::MAX));
    std::thread::sleep(Duration::from_millis(200)); // let both start waiting
    let uuid = client.update(&Service::new("t", "h")).unwrap();
    let e = waiting_sub
        .join()
        .expect("recv_timeout(Duration::MAX) panicked")
        .unwrap()
        .expect("an event, not a timeout");
    assert_eq!(
        (e.kind, e.uuid.as_str()),
        (EventKind::Registered, uuid.as_str())
    );
    waiting_view
        .join()
        .expect("wait_for_revision(_, Duration::MAX) panicked")
        .unwrap();
    // The same borders through the C API: UINT64_MAX milliseconds.
    let c = c_connect(&etcd.endpoints(), &ns, TTL);
    let mut pull = null_mut();
    assert_eq!(
        lively_subscription::lively_client_subscribe_pull(c, null(), null(), &mut pull),
        lively_result::Ok
    );
    let mut cview = null();
    assert_eq!(
        lively_view::lively_view_new(c, 0, &mut cview),
        lively_result::Ok
    );
    let (p, v) = (pull as usize, cview as usize);
    let next = std::thread::spawn(move || {
        let mut ev: *mut lively_event = null_mut();
        let rc = lively_subscription::lively_subscription_next(
            p as *const lively_subscription,
            u64::MAX,
            &mut ev,
        );
        let got = !ev.is_null();
        lively_subscription::lively_event_free(ev);
        (rc, got)
    });
    std::thread::sleep(Duration::from_millis(200));
    client.update(&Service::new("t", "h2")).unwrap();
    assert_eq!(next.join().unwrap(), (lively_result::Ok, true));
    let synced = within(Duration::from_secs(20), move || {
        lively_view::lively_view_sync(v as *const lively_view, u64::MAX)
    });
    assert_eq!(synced, lively_result::Ok);
    lively_subscription::lively_subscription_free(pull);
    lively_view::lively_view_free(cview);
    lively_client::lively_client_free(c);
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(lively_last_error()) }
        .to_string_lossy()
        .into_owned()
}

unsafe extern "C" fn never(_: *mut std::ffi::c_void, _: *const lively_event) {}

#[test]
fn c_bool_fields_other_than_0_or_1_are_refused_by_name() {
    let etcd = Etcd::start();
    let ns = namespace("edge_bool");
    let c = c_connect(&etcd.endpoints(), &ns, TTL);
    let filter = |has_status: u8| lively_filter {
        uuid: null(),
        service_type: null(),
        host: null(),
        region: null(),
        has_status: lively_bool(has_status),
        status: 0,
        ..lively_filter::default()
    };
    let options = |snapshot: u8| lively_subscribe_options {
        snapshot: lively_bool(snapshot),
        queue_capacity: 0,
        ..lively_subscribe_options::default()
    };

    let mut list = null_mut();
    for byte in [2u8, 0xff] {
        assert_eq!(
            lively_client::lively_client_list(c, &filter(byte), &mut list),
            lively_result::InvalidArgument
        );
        assert!(list.is_null());
        let msg = last_error();
        assert!(
            msg.contains("filter.has_status") && msg.contains(&byte.to_string()),
            "{msg}"
        );
    }
    // 0 and 1 still mean what they say.
    assert_eq!(
        lively_client::lively_client_list(c, &filter(0), &mut list),
        lively_result::Ok
    );
    os_lively::capi::lively_service_list::lively_service_list_free(list);
    let mut list = null_mut();
    assert_eq!(
        lively_client::lively_client_list(c, &filter(1), &mut list),
        lively_result::Ok
    );
    os_lively::capi::lively_service_list::lively_service_list_free(list);

    let mut sub = null_mut();
    assert_eq!(
        lively_subscription::lively_client_subscribe_pull(c, null(), &options(2), &mut sub),
        lively_result::InvalidArgument
    );
    assert!(
        last_error().contains("options.snapshot"),
        "{}",
        last_error()
    );
    assert_eq!(
        lively_subscription::lively_client_subscribe(
            c,
            null(),
            &options(7),
            Some(never),
            null_mut(),
            None,
            &mut sub
        ),
        lively_result::InvalidArgument
    );
    assert!(
        last_error().contains("options.snapshot"),
        "{}",
        last_error()
    );
    assert!(sub.is_null());
    assert_eq!(
        lively_subscription::lively_client_subscribe_pull(c, null(), &options(1), &mut sub),
        lively_result::Ok
    );
    lively_subscription::lively_subscription_free(sub);
    lively_client::lively_client_free(c);
}
