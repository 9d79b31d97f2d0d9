//! One lifetime rule for every handle, the same in Rust and C: a client
//! clone, a view and a subscription each keep the connection (lease,
//! runtime thread, watch) alive; `close()` on the client ends it for all.
//! And after `fork()`, every handle the child inherited says `Forked`
//! instead of answering from a frozen copy.

mod common;
#[path = "common/oracle.rs"]
mod oracle;

use std::ffi::{CString, c_void};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use common::*;
use oracle::*;
use os_lively::capi::{
    lively_client, lively_event, lively_result, lively_subscription, lively_view,
};
use os_lively::{Client, ErrorKind, EventKind, Filter, Service, SubscribeOptions};

const TTL: u64 = 2;

/// True if `observer` sees `uuid` UP at every poll for `span`.
fn up_throughout(observer: &Client, uuid: &str, span: Duration) -> bool {
    let end = Instant::now() + span;
    while Instant::now() < end {
        if !observer.is_up(uuid).unwrap() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// The lease `uuid`'s UP key is bound to in etcd (0 if it has none).
fn up_lease(etcd: &Etcd, ns: &str, uuid: &str) -> i64 {
    etcd.raw().get(&up_key(ns, uuid)).map_or(0, |kv| kv.lease)
}

/// Down right away (not after the TTL): the lease was revoked. Checked in
/// etcd itself (the lease's TTL is -1, its UP key gone), then as a reader
/// sees it.
fn assert_down_at_once(
    etcd: &Etcd,
    ns: &str,
    observer: &Client,
    uuid: &str,
    lease: i64,
    what: &str,
) {
    assert_ne!(lease, 0, "{what}: no lease was granted to check");
    let raw = etcd.raw();
    assert_eq!(raw.lease_ttl(lease), -1, "{what}: lease still alive");
    assert_eq!(
        raw.get(&up_key(ns, uuid)),
        None,
        "{what}: UP key still there"
    );
    assert!(!observer.is_up(uuid).unwrap(), "{what}: still UP");
}

#[test]
fn a_subscription_of_a_temporary_client_works() {
    let etcd = Etcd::start();
    let ns = namespace("life_temp_sub");
    let cfg = config(&etcd.endpoints(), &ns, TTL);
    let sub = Client::connect(&cfg)
        .unwrap()
        .subscribe(&Filter::all(), &SubscribeOptions::default())
        .unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let cb = Client::connect(&cfg)
        .unwrap()
        .subscribe_callback(&Filter::all(), &SubscribeOptions::default(), move |_| {
            s.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let writer = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = writer.update(&Service::new("t", "h")).unwrap();
    let e = sub
        .recv_timeout(Duration::from_secs(10))
        .expect("the subscription is alive")
        .expect("an event");
    assert_eq!(
        (e.kind, e.uuid.as_str()),
        (EventKind::Registered, uuid.as_str())
    );
    assert!(wait_until(Duration::from_secs(10), || seen
        .load(Ordering::SeqCst)
        > 0));
    drop(cb);
}

#[test]
fn a_view_or_subscription_keeps_the_connection_after_the_last_client_clone_drops() {
    let etcd = Etcd::start();
    let ns = namespace("life_keep");
    let observer = connect(&etcd.endpoints(), &ns, TTL);
    for handle in ["view", "subscription"] {
        let client = connect(&etcd.endpoints(), &ns, TTL);
        let uuid = client.update(&Service::new("keep", handle)).unwrap();
        // Granted by the first UP registration, and the one in etcd.
        let lease = client.stats().lease_id;
        assert_eq!(up_lease(&etcd, &ns, &uuid), lease, "{handle}: stats' lease");
        let view = (handle == "view").then(|| client.view().unwrap());
        let sub = (handle == "subscription").then(|| {
            client
                .subscribe(&Filter::all(), &SubscribeOptions::default())
                .unwrap()
        });
        drop(client);
        // Kept alive past two TTLs: the lease lives while the handle does.
        assert!(
            up_throughout(&observer, &uuid, Duration::from_secs(2 * TTL + 1)),
            "{handle}: the service went DOWN while the {handle} lived"
        );
        if let Some(view) = &view {
            view.sync(Duration::from_secs(5)).unwrap();
            assert!(view.is_up(&uuid).unwrap());
        }
        if let Some(sub) = &sub {
            observer.update(&Service::new("other", handle)).unwrap();
            let e = sub.recv_timeout(Duration::from_secs(10)).unwrap();
            assert!(e.is_some(), "the subscription still gets events");
        }
        // The last handle gone: the connection ends, the lease is revoked.
        drop(view);
        drop(sub);
        assert_down_at_once(&etcd, &ns, &observer, &uuid, lease, handle);
    }
}

#[test]
fn close_ends_the_connection_for_every_handle() {
    let etcd = Etcd::start();
    let ns = namespace("life_close");
    let observer = connect(&etcd.endpoints(), &ns, TTL);
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = client.update(&Service::new("closing", "h1")).unwrap();
    let lease = client.stats().lease_id;
    assert_eq!(up_lease(&etcd, &ns, &uuid), lease, "stats' lease");
    let view = client.view().unwrap();
    let pull = Arc::new(
        client
            .subscribe(&Filter::all(), &SubscribeOptions::default())
            .unwrap(),
    );
    // The callback owns this guard: it is dropped (the Rust "release") once
    // the callback will not run again.
    struct Released(Arc<AtomicBool>);
    impl Drop for Released {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let released = Arc::new(AtomicBool::new(false));
    let guard = Released(released.clone());
    let callback = client
        .subscribe_callback(&Filter::all(), &SubscribeOptions::default(), move |_| {
            let _ = &guard;
        })
        .unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let p = pull.clone();
    let iterating = std::thread::spawn(move || {
        for _ in &*p {}
        let _ = done_tx.send(());
    });
    let other_clone = client.clone();

    client.close().unwrap();
    assert_down_at_once(&etcd, &ns, &observer, &uuid, lease, "close");
    assert_eq!(view.is_up(&uuid).unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(
        view.list(&Filter::all()).unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert_eq!(
        view.sync(Duration::from_secs(1)).unwrap_err().kind(),
        ErrorKind::Closed
    );
    done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("iterating the subscription did not end after close()");
    iterating.join().unwrap();
    assert_eq!(
        pull.recv_timeout(Duration::ZERO).unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert!(
        wait_until(Duration::from_secs(10), || released.load(Ordering::SeqCst)),
        "the callback subscription was not released"
    );
    assert_eq!(
        other_clone.is_up(&uuid).unwrap_err().kind(),
        ErrorKind::Closed
    );
    assert_eq!(
        other_clone.view().err().map(|e| e.kind()),
        Some(ErrorKind::Closed)
    );
    assert_eq!(
        other_clone
            .subscribe(&Filter::all(), &SubscribeOptions::default())
            .err()
            .map(|e| e.kind()),
        Some(ErrorKind::Closed)
    );
    // Closing again (from another clone) reports the same, and does not hang.
    assert!(other_clone.close().is_ok());
    drop(callback);
}

// ---- the same rule through the C API ----

fn c_view(client: *const lively_client) -> *const lively_view {
    let mut view = null();
    assert_eq!(
        lively_view::lively_view_new(client, 0, &mut view),
        lively_result::Ok
    );
    view
}

fn c_pull(client: *const lively_client) -> *mut lively_subscription {
    let mut pull = null_mut();
    assert_eq!(
        lively_subscription::lively_client_subscribe_pull(client, null(), null(), &mut pull),
        lively_result::Ok
    );
    pull
}

fn c_register(client: *const lively_client, host: &str) -> String {
    let mut s = os_lively::capi::lively_service::default();
    let host = CString::new(host).unwrap();
    s.service_type = c"c-life".as_ptr();
    s.host = host.as_ptr();
    let mut buf = [0 as std::ffi::c_char; os_lively::capi::LIVELY_UUID_BUF_LEN];
    assert_eq!(
        lively_client::lively_client_update(client, &s, buf.as_mut_ptr(), buf.len()),
        lively_result::Ok
    );
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_str()
        .unwrap()
        .to_string()
}

fn c_lease(client: *const lively_client) -> i64 {
    let mut st = os_lively::capi::lively_stats::default();
    assert_eq!(
        lively_client::lively_client_stats(client, &mut st),
        lively_result::Ok
    );
    st.lease_id
}

fn c_view_is_up(view: *const lively_view, uuid: &str) -> Result<bool, lively_result> {
    let u = CString::new(uuid).unwrap();
    let mut up = false;
    match lively_view::lively_view_is_up(view, u.as_ptr(), &mut up) {
        lively_result::Ok => Ok(up),
        rc => Err(rc),
    }
}

/// Waits up to `ms` for an event of a pull subscription; the code on error.
fn c_next(sub: *const lively_subscription, ms: u64) -> Result<bool, lively_result> {
    let mut ev: *mut lively_event = null_mut();
    match lively_subscription::lively_subscription_next(sub, ms, &mut ev) {
        lively_result::Ok => {
            let got = !ev.is_null();
            lively_subscription::lively_event_free(ev);
            Ok(got)
        }
        rc => Err(rc),
    }
}

unsafe extern "C" fn count_event(userdata: *mut c_void, _e: *const lively_event) {
    let n = unsafe { &*(userdata as *const AtomicUsize) };
    n.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn count_release(userdata: *mut c_void) {
    let n = unsafe { &*(userdata as *const AtomicUsize) };
    n.fetch_add(1000, Ordering::SeqCst);
}

#[test]
fn c_handles_keep_the_connection_until_the_last_is_freed() {
    let etcd = Etcd::start();
    let ns = namespace("life_c_keep");
    let observer = connect(&etcd.endpoints(), &ns, TTL);
    let client = c_connect(&etcd.endpoints(), &ns, TTL);
    let uuid = c_register(client, "h1");
    let lease = c_lease(client);
    assert_eq!(
        up_lease(&etcd, &ns, &uuid),
        lease,
        "lively_client_stats' lease"
    );
    let view = c_view(client);
    let pull = c_pull(client);
    lively_client::lively_client_free(client);
    lively_view::lively_view_free(view);
    // The pull subscription is the last handle: still UP, still told.
    assert!(
        up_throughout(&observer, &uuid, Duration::from_secs(2 * TTL + 1)),
        "the service went DOWN while a subscription handle lived"
    );
    observer.update(&Service::new("other", "h2")).unwrap();
    assert_eq!(
        c_next(pull, 10_000),
        Ok(true),
        "the subscription still gets events"
    );
    lively_subscription::lively_subscription_free(pull);
    assert_down_at_once(&etcd, &ns, &observer, &uuid, lease, "last C handle freed");
}

#[test]
fn c_close_ends_every_handle() {
    let etcd = Etcd::start();
    let ns = namespace("life_c_close");
    let observer = connect(&etcd.endpoints(), &ns, TTL);
    let client = c_connect(&etcd.endpoints(), &ns, TTL);
    let uuid = c_register(client, "h1");
    let lease = c_lease(client);
    assert_eq!(
        up_lease(&etcd, &ns, &uuid),
        lease,
        "lively_client_stats' lease"
    );
    let view = c_view(client);
    assert_eq!(c_view_is_up(view, &uuid), Ok(true));
    let pull = c_pull(client);
    let calls = Box::new(AtomicUsize::new(0));
    let mut cb = null_mut();
    assert_eq!(
        lively_subscription::lively_client_subscribe(
            client,
            null(),
            null(),
            Some(count_event),
            &*calls as *const AtomicUsize as *mut c_void,
            Some(count_release),
            &mut cb
        ),
        lively_result::Ok
    );

    assert_eq!(
        lively_client::lively_client_close(client),
        lively_result::Ok
    );
    assert_down_at_once(&etcd, &ns, &observer, &uuid, lease, "lively_client_close");
    assert_eq!(c_view_is_up(view, &uuid), Err(lively_result::Closed));
    assert_eq!(c_next(pull, 0), Err(lively_result::Closed));
    assert!(
        wait_until(Duration::from_secs(10), || calls.load(Ordering::SeqCst)
            >= 1000),
        "the release callback did not run after close"
    );
    lively_subscription::lively_subscription_free(cb);
    lively_subscription::lively_subscription_free(pull);
    lively_view::lively_view_free(view);
    lively_client::lively_client_free(client);
    assert_eq!(calls.load(Ordering::SeqCst) / 1000, 1, "released once");
}

// ---- fork ----

/// Runs `child` in a forked child and returns the bytes it wrote (within
/// 20 s; a child that hangs is killed and the test fails).
fn in_forked_child(child: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
    let mut fds = [0i32; 2];
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        unsafe { libc::close(fds[0]) };
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(child))
            .unwrap_or_else(|_| b"panic".to_vec());
        unsafe {
            libc::write(fds[1], out.as_ptr().cast(), out.len());
            libc::_exit(0);
        }
    }
    unsafe { libc::close(fds[1]) };
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: fds[0],
            events: libc::POLLIN,
            revents: 0,
        };
        let ready = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) };
        if ready <= 0 {
            unsafe { libc::kill(pid, libc::SIGKILL) };
            break;
        }
        let mut buf = [0u8; 256];
        let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    unsafe {
        libc::close(fds[0]);
        libc::waitpid(pid, null_mut(), 0);
    }
    out
}

fn forked_mark<T>(r: os_lively::Result<T>) -> u8 {
    match r {
        Err(e) if e.kind() == ErrorKind::Forked => b'F',
        Err(_) => b'E',
        Ok(_) => b'A', // answered from the parent's frozen copy
    }
}

#[test]
fn after_fork_views_and_subscriptions_say_forked() {
    let etcd = Etcd::start();
    let ns = namespace("life_fork");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let uuid = client.update(&Service::new("forker", "h1")).unwrap();
    let hb = client
        .update(&Service::new("forker", "h2").with_heartbeat(Duration::from_secs(30)))
        .unwrap();
    let view = client.view().unwrap();
    view.sync(Duration::from_secs(5)).unwrap();
    let sub = client
        .subscribe(&Filter::all(), &SubscribeOptions::default())
        .unwrap();
    // The same through the C API.
    let c = c_connect(&etcd.endpoints(), &ns, TTL);
    let mut cview = null();
    assert_eq!(
        lively_view::lively_view_new(c, 0, &mut cview),
        lively_result::Ok
    );
    let mut cpull = null_mut();
    assert_eq!(
        lively_subscription::lively_client_subscribe_pull(c, null(), null(), &mut cpull),
        lively_result::Ok
    );
    assert_eq!(c_view_is_up(cview, &uuid), Ok(true));

    let (cv, cp) = (cview as usize, cpull as usize);
    let marks = in_forked_child(|| {
        let cview = cv as *const lively_view;
        let cpull = cp as *const lively_subscription;
        let code = |r: lively_result| {
            if r == lively_result::Forked {
                b'F'
            } else {
                b'?'
            }
        };
        vec![
            forked_mark(client.is_up(&uuid)),
            forked_mark(client.heartbeat(&hb)),
            forked_mark(view.is_up(&uuid)),
            forked_mark(view.get(&uuid)),
            forked_mark(view.list(&Filter::all())),
            forked_mark(view.wait_for_revision(1, Duration::ZERO)),
            forked_mark(sub.recv_timeout(Duration::ZERO)),
            forked_mark(sub.try_recv()),
            c_view_is_up(cview, &uuid).map_or_else(code, |_| b'A'),
            c_next(cpull, 0).map_or_else(code, |_| b'A'),
        ]
    });
    assert_eq!(
        String::from_utf8_lossy(&marks),
        "FFFFFFFFFF",
        "in the child, client (is_up, heartbeat), view (is_up, get, list, wait), subscription (recv, try_recv), C view, C subscription"
    );
    // The parent is unaffected.
    assert!(view.is_up(&uuid).unwrap());
    assert_eq!(c_view_is_up(cview, &uuid), Ok(true));
    assert!(sub.try_recv().is_ok());
    lively_subscription::lively_subscription_free(cpull);
    lively_view::lively_view_free(cview);
    lively_client::lively_client_free(c);
}

/// In a forked child, closes and frees every handle it inherited (C client,
/// view, pull and callback subscriptions; Rust client and view) and reports
/// `ok`; anything else (or a hang, killed after 20 s) is returned as is.
fn free_all_in_child(handles: [usize; 4], rust: (Client, os_lively::View)) -> Vec<u8> {
    in_forked_child(move || {
        let [c, cview, cpull, ccb] = handles;
        let c = c as *const lively_client;
        if lively_client::lively_client_close(c) != lively_result::Forked {
            return b"close in the child did not say Forked".to_vec();
        }
        lively_subscription::lively_subscription_free(cpull as *mut lively_subscription);
        lively_subscription::lively_subscription_free(ccb as *mut lively_subscription);
        lively_view::lively_view_free(cview as *const lively_view);
        lively_client::lively_client_free(c);
        drop(rust);
        b"ok".to_vec()
    })
}

#[test]
fn freeing_inherited_handles_in_a_forked_child_takes_no_lock() {
    let etcd = Etcd::start();
    let ns = namespace("life_fork_free");
    let c = c_connect(&etcd.endpoints(), &ns, TTL);
    c_register(c, "forker");
    let mut cview = null();
    assert_eq!(
        lively_view::lively_view_new(c, 0, &mut cview),
        lively_result::Ok
    );
    let cpull = c_pull(c);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut ccb = null_mut();
    assert_eq!(
        lively_subscription::lively_client_subscribe(
            c,
            null(),
            null(),
            Some(count_event),
            &*calls as *const AtomicUsize as *mut c_void,
            Some(count_release),
            &mut ccb
        ),
        lively_result::Ok
    );
    let handles = [c as usize, cview as usize, cpull as usize, ccb as usize];
    let rust = connect(&etcd.endpoints(), &ns, TTL);
    let rust_view = rust.view().unwrap();

    // Fork while the parent's threads keep the locks of both clients busy:
    // the runtime threads apply a stream of events to their hubs and hand
    // them to the subscriptions, and two threads subscribe and cancel in a
    // loop (each subscribe snapshots the hub's model under its lock).
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, endpoints, ns) = (stop.clone(), etcd.endpoints(), ns.clone());
        std::thread::spawn(move || {
            let w = connect(&endpoints, &ns, TTL);
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let s =
                    Service::new("busy", &format!("h{}", i % 200)).with_region(&format!("r{i}"));
                let _ = w.update(&s);
                i += 1;
            }
        })
    };
    let c_churner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let s = c_pull(handles[0] as *const lively_client);
                lively_subscription::lively_subscription_free(s);
            }
        })
    };
    let rust_churner = {
        let (stop, client) = (stop.clone(), rust.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                drop(client.subscribe(&Filter::all(), &SubscribeOptions::default()));
            }
        })
    };
    for round in 0..40 {
        let out = free_all_in_child(handles, (rust.clone(), rust_view.clone()));
        assert_eq!(
            String::from_utf8_lossy(&out),
            "ok",
            "round {round}: the child did not finish freeing its inherited handles"
        );
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    c_churner.join().unwrap();
    rust_churner.join().unwrap();
    assert!(calls.load(Ordering::SeqCst) > 0, "events flowed meanwhile");

    // The parent's handles are still its own, and work.
    assert_eq!(c_next(cpull, 0).map(|_| ()), Ok(()));
    lively_subscription::lively_subscription_free(cpull);
    lively_subscription::lively_subscription_free(ccb);
    lively_view::lively_view_free(cview);
    lively_client::lively_client_free(c);
    assert_eq!(
        calls.load(Ordering::SeqCst) / 1000,
        1,
        "released once, in the parent"
    );
}
