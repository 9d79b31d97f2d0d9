//! Error messages name the operation once and say the cause (the gRPC
//! status and etcd's or the transport's message), the same in Rust and C
//! (issue 24, item 6).

mod common;

use std::ffi::{CStr, CString};
use std::time::{Duration, Instant};

use common::*;
use os_lively::ErrorKind;
use os_lively::capi::{lively_client, lively_last_error, lively_result};

/// No context appears twice in a row (`is_up: is_up:`).
fn assert_no_repeat(message: &str) {
    let parts: Vec<&str> = message.split(": ").collect();
    for w in parts.windows(2) {
        assert_ne!(w[0], w[1], "repeated {:?} in {message:?}", w[0]);
    }
    for what in ["is_up", "close", "update"] {
        assert!(
            message.matches(&format!("{what}:")).count() <= 1,
            "{what} repeated in {message:?}"
        );
    }
}

#[test]
fn a_call_to_a_dead_etcd_says_why_once() {
    let mut etcd = Etcd::start();
    let ns = namespace("messages_dead");
    let client = connect(&etcd.endpoints(), &ns, 5);
    let c_client = c_connect(&etcd.endpoints(), &ns, 5);
    let uuid = client
        .update(&os_lively::Service::new("svc", "h"))
        .expect("update");
    etcd.kill();

    // The Rust error.
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = loop {
        match client.is_up(&uuid) {
            Err(e) if e.kind() == ErrorKind::Unavailable => break e,
            Err(e) if e.kind() == ErrorKind::Timeout => break e,
            other => assert!(Instant::now() < deadline, "still answering: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = err.to_string();
    assert_no_repeat(&text);
    assert!(text.contains("is_up"), "{text}");
    if err.kind() == ErrorKind::Unavailable {
        assert!(
            text.contains("gRPC status") || text.contains("transport error"),
            "no cause in {text:?}"
        );
        assert!(
            text.to_lowercase().contains("connect") || text.to_lowercase().contains("refused"),
            "the refused connection is not named in {text:?}"
        );
    }

    // The same wording through the C API.
    let id = CString::new(uuid.as_str()).unwrap();
    let mut up = false;
    // SAFETY: a live client handle, valid strings and out-pointer.
    let rc = lively_client::lively_client_is_up(c_client, id.as_ptr(), &mut up);
    assert!(
        matches!(rc, lively_result::Unavailable | lively_result::Timeout),
        "{rc:?}"
    );
    // SAFETY: the thread's last error, valid until the next call.
    let c_text = unsafe { CStr::from_ptr(lively_last_error()) }
        .to_string_lossy()
        .into_owned();
    assert_no_repeat(&c_text);
    assert!(c_text.contains("is_up"), "{c_text}");

    // close: the revoke cannot reach etcd; its error names close once.
    if let Err(e) = client.close() {
        assert_no_repeat(&e.to_string());
    }
    lively_client::lively_client_free(c_client);
}
