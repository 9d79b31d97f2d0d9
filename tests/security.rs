//! TLS, authentication that survives token expiry and auth-store changes,
//! and secrets kept out of output — against real etcd processes.

mod common;

use std::time::{Duration, Instant};

use common::*;
use os_lively::{Client, Config, ErrorKind, EventKind, Filter, Service, Status, SubscribeOptions};

const TTL: u64 = 2;

fn tls_config(etcd: &Etcd, ns: &str, ca: &std::path::Path) -> Config {
    let mut c = config(&etcd.endpoints(), ns, TTL);
    c.tls_ca_file(ca.to_str().unwrap())
        .unwrap()
        .connect_timeout(Duration::from_secs(2));
    c
}

#[test]
fn tls_with_a_ca_and_mutual_tls_work_end_to_end() {
    let pki = Pki::generate();
    let etcd = Etcd::start_with(EtcdOpts {
        tls: Some(pki.server_files(true)),
        ..Default::default()
    });
    assert!(etcd.endpoint().starts_with("https://"));
    let ns = namespace("mtls");
    let mut cfg = tls_config(&etcd, &ns, &pki.ca);
    cfg.tls_client_cert(
        pki.client_cert.to_str().unwrap(),
        pki.client_key.to_str().unwrap(),
    )
    .unwrap();
    let client = Client::connect(&cfg).unwrap();
    let sub = client
        .subscribe(&Filter::all(), &SubscribeOptions::default())
        .unwrap();
    let uuid = client.update(&Service::new("t", "h")).unwrap();
    assert!(client.is_up(&uuid).unwrap());
    let e = sub
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .expect("event over TLS");
    assert_eq!(e.kind, EventKind::Registered);
    // Keepalives over TLS keep it up past the TTL.
    std::thread::sleep(Duration::from_secs(TTL + 1));
    assert!(client.is_up(&uuid).unwrap());
}

#[test]
fn tls_failures_are_clear_errors_naming_the_endpoint_within_the_connect_timeout() {
    let pki = Pki::generate();
    let etcd = Etcd::start_with(EtcdOpts {
        tls: Some(pki.server_files(true)),
        ..Default::default()
    });
    let ns = namespace("tlsbad");
    let hostport = etcd.endpoint().trim_start_matches("https://").to_string();
    let with_client = |ca: &std::path::Path, cert: Option<(&std::path::Path, &std::path::Path)>| {
        let mut c = tls_config(&etcd, &ns, ca);
        if let Some((cert, key)) = cert {
            c.tls_client_cert(cert.to_str().unwrap(), key.to_str().unwrap())
                .unwrap();
        }
        c
    };
    let mut plain = config(&etcd.endpoints(), &ns, TTL);
    plain
        .endpoints(&[format!("http://{hostport}")])
        .unwrap()
        .connect_timeout(Duration::from_secs(2));
    let cases = [
        (
            "wrong CA",
            with_client(&pki.other_ca, Some((&pki.client_cert, &pki.client_key))),
        ),
        ("no client certificate", with_client(&pki.ca, None)),
        (
            "expired client certificate",
            with_client(&pki.ca, Some((&pki.expired_cert, &pki.expired_key))),
        ),
        ("plain text against TLS", plain),
    ];
    for (name, cfg) in cases {
        let t = Instant::now();
        let err = Client::connect(&cfg).expect_err(name);
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "{name}: took {:?}",
            t.elapsed()
        );
        assert!(
            err.to_string().contains(&hostport),
            "{name}: error does not name the endpoint: {err}"
        );
    }
    let mut missing = config(&etcd.endpoints(), &ns, TTL);
    missing.tls_ca_file("/nonexistent/ca.pem").unwrap();
    let err = Client::connect(&missing).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.to_string().contains("/nonexistent/ca.pem"));
}

/// Enables auth with root/rootpw and a user `svc` whose role grants only the
/// namespace's prefix.
fn enable_auth(raw: &Raw, ns: &str) {
    let mut c = raw.client();
    let prefix = format!("{ns}/services/");
    raw.block_on(async move {
        c.user_add("root", "rootpw", None).await.unwrap();
        c.user_grant_role("root", "root").await.unwrap();
        c.role_add("lively").await.unwrap();
        c.role_grant_permission(
            "lively",
            etcd_client::Permission::read_write(prefix.clone()).with_prefix(),
        )
        .await
        .unwrap();
        c.user_add("svc", "svc-secret-pw", None).await.unwrap();
        c.user_grant_role("svc", "lively").await.unwrap();
        c.auth_enable().await.unwrap();
    });
}

fn user_config(etcd: &Etcd, ns: &str, password: &str) -> Config {
    let mut c = config(&etcd.endpoints(), ns, TTL);
    c.user("svc", password).unwrap();
    c
}

/// Registers, subscribes, idles for `idle`, then proves every path still
/// works: a call, the keepalive (service still UP) and the watch.
fn survives_idle(etcd: &Etcd, ns: &str, idle: Duration) -> Duration {
    let client = Client::connect(&user_config(etcd, ns, "svc-secret-pw")).unwrap();
    let uuid = client.update(&Service::new("t", "h")).unwrap();
    let sub = client
        .subscribe(&Filter::all(), &SubscribeOptions::default())
        .unwrap();
    let observer = Client::connect(&user_config(etcd, ns, "svc-secret-pw")).unwrap();
    std::thread::sleep(idle);
    let t = Instant::now();
    assert!(client.is_up(&uuid).unwrap(), "call after idling");
    let first_call = t.elapsed();
    assert!(observer.is_up(&uuid).unwrap(), "keepalives continued");
    let other = observer.update(&Service::new("t", "h2")).unwrap();
    let e = sub
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .expect("watch still delivers");
    assert_eq!(e.uuid, other);
    first_call
}

/// The first call after the token expired re-authenticates and retries
/// once (DESIGN.md): the refused call, one Authenticate (a bcrypt check on
/// etcd's side, tens of milliseconds) and the retry, three loopback round
/// trips. A second is ample on a loaded 2-core machine and a third of the
/// request timeout (3 s), so a call that waited out a deadline before
/// re-authenticating, or retried more than once with backoff, fails.
fn assert_first_call_bounded(took: Duration) {
    assert!(
        took < Duration::from_secs(1),
        "the first call after the token expired took {took:?}"
    );
}

#[test]
fn simple_tokens_expiring_while_idle_are_renewed() {
    let etcd = Etcd::start_with(EtcdOpts {
        auth_token: Some("simple".into()),
        extra_args: vec!["--auth-token-ttl=2".into()],
        ..Default::default()
    });
    let ns = namespace("simpletoken");
    enable_auth(&etcd.raw(), &ns);
    let took = survives_idle(&etcd, &ns, Duration::from_secs(3 * 2));
    eprintln!("first call after 3x simple-token TTL idle took {took:?}");
    assert_first_call_bounded(took);
}

#[test]
fn jwt_tokens_expiring_are_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = jwt_keys(dir.path());
    let etcd = Etcd::start_with(EtcdOpts {
        auth_token: Some(format!(
            "jwt,pub-key={},priv-key={},sign-method=ES256,ttl=2s",
            public.display(),
            key.display()
        )),
        ..Default::default()
    });
    let ns = namespace("jwt");
    enable_auth(&etcd.raw(), &ns);
    let took = survives_idle(&etcd, &ns, Duration::from_secs(3 * 2));
    eprintln!("first call after 3x jwt TTL took {took:?}");
    assert_first_call_bounded(took);
}

#[test]
fn a_role_change_while_registered_and_subscribed_is_survived() {
    let etcd = Etcd::start_with(EtcdOpts {
        auth_token: Some("simple".into()),
        ..Default::default()
    });
    let ns = namespace("rolechange");
    let raw = etcd.raw();
    enable_auth(&raw, &ns);
    let client = Client::connect(&user_config(&etcd, &ns, "svc-secret-pw")).unwrap();
    let uuid = client.update(&Service::new("t", "h")).unwrap();
    let sub = client
        .subscribe(&Filter::all(), &SubscribeOptions::default())
        .unwrap();
    let admin = Raw::connect_with_user(&etcd.endpoints(), "root", "rootpw");
    let mut c = admin.client();
    admin.block_on(async move {
        // Any user or role change bumps the auth revision and invalidates
        // every token issued before it.
        c.role_add("unrelated").await.unwrap();
        c.user_add("someone", "pw", None).await.unwrap();
    });
    assert!(
        client.is_up(&uuid).unwrap(),
        "read after the auth store changed"
    );
    client
        .update(&Service::new("t", "h").with_region("moved").with_uuid(&uuid))
        .expect("write after the auth store changed");
    let observer = Client::connect(&user_config(&etcd, &ns, "svc-secret-pw")).unwrap();
    let moved = sub
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .expect("watch after the role change");
    assert_eq!(
        (moved.kind, moved.uuid.as_str()),
        (EventKind::Updated, uuid.as_str())
    );
    let other = observer.update(&Service::new("t", "h2")).unwrap();
    let e = sub
        .recv_timeout(Duration::from_secs(5))
        .unwrap()
        .expect("watch after the role change");
    assert_eq!(e.uuid, other);
    std::thread::sleep(Duration::from_secs(TTL + 1));
    assert!(
        observer.is_up(&uuid).unwrap(),
        "keepalives continued after the role change"
    );
    client.close().unwrap();
    assert!(
        !observer.is_up(&uuid).unwrap(),
        "revoking works with namespace-only permissions"
    );
}

#[test]
fn a_wrong_password_is_an_auth_error_not_a_retry_loop_and_is_never_printed() {
    let etcd = Etcd::start_with(EtcdOpts {
        auth_token: Some("simple".into()),
        ..Default::default()
    });
    let ns = namespace("badpw");
    enable_auth(&etcd.raw(), &ns);
    let cfg = user_config(&etcd, &ns, "Wr0ng-Pa55word");
    let t = Instant::now();
    let err = Client::connect(&cfg).unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(err.kind(), ErrorKind::Auth, "{err}");
    for shown in [err.to_string(), format!("{err:?}"), format!("{cfg:?}")] {
        assert!(
            !shown.contains("Wr0ng-Pa55word"),
            "password leaked: {shown}"
        );
    }
    let good = Client::connect(&user_config(&etcd, &ns, "svc-secret-pw")).unwrap();
    assert!(!format!("{good:?}").contains("svc-secret-pw"));
}

#[test]
fn hostile_keys_and_records_in_the_namespace_are_skipped_never_fatal() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config as PtConfig, TestRunner};
    let etcd = Etcd::start();
    let ns = namespace("hostile");
    let raw = etcd.raw();
    let client = common::connect(&etcd.endpoints(), &ns, TTL);
    let good = client
        .update(&Service::new("t", "good").with_region("r"))
        .unwrap();
    let view = client.view().unwrap();
    let sub = client
        .subscribe(
            &Filter::all(),
            &SubscribeOptions {
                snapshot: false,
                queue_capacity: 100_000,
            },
        )
        .unwrap();
    let suffixes = prop_oneof![
        Just("by-uuid/".to_string()),
        Just("by-type-host/".to_string()),
        Just("by-region/".to_string()),
        Just("by-status/UP/".to_string()),
        Just("".to_string()),
    ];
    let strategy = (
        suffixes,
        "[a-f0-9/]{0,40}|.{0,20}",
        proptest::collection::vec(any::<u8>(), 0..64),
    );
    let mut runner = TestRunner::new(PtConfig {
        cases: 64,
        ..PtConfig::default()
    });
    runner
        .run(&strategy, |(index, tail, value)| {
            let key = format!("{ns}/services/{index}{tail}");
            raw.put(&key, &value);
            let listed = client
                .list(&Filter::all())
                .expect("list must survive hostile keys");
            prop_assert!(listed.iter().any(|i| i.service.uuid == good));
            prop_assert!(client.list(&Filter::all().region("r")).is_ok());
            prop_assert!(client.is_up(&good).unwrap());
            Ok(())
        })
        .unwrap();
    view.sync(Duration::from_secs(5)).unwrap();
    assert!(view.is_up(&good).unwrap());
    while sub.try_recv().unwrap().is_some() {}
    // The watch is still alive after all that.
    let other = client.update(&Service::new("t", "after")).unwrap();
    let mut seen = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !seen && Instant::now() < deadline {
        if let Some(e) = sub.recv_timeout(Duration::from_millis(200)).unwrap() {
            seen = e.uuid == other;
        }
    }
    assert!(seen, "subscription died on hostile keys");
}

#[test]
fn a_status_list_is_the_first_call_after_the_auth_store_changed() {
    let etcd = Etcd::start_with(EtcdOpts {
        auth_token: Some("simple".into()),
        ..Default::default()
    });
    let ns = namespace("listreauth");
    let raw = etcd.raw();
    enable_auth(&raw, &ns);
    let client = Client::connect(&user_config(&etcd, &ns, "svc-secret-pw")).unwrap();
    let uuid = client.update(&Service::new("t", "h")).unwrap();
    let admin = Raw::connect_with_user(&etcd.endpoints(), "root", "rootpw");
    let mut c = admin.client();
    admin.block_on(async move {
        c.role_add("unrelated").await.unwrap();
    });
    // The UP index read goes through the same re-authentication as every
    // other read.
    let up = client
        .list(&Filter::all().status(Status::Up))
        .expect("list by status after the auth store changed");
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].service.uuid, uuid);
}

#[test]
fn a_view_that_cannot_load_returns_the_error_instead_of_timing_out() {
    let etcd = Etcd::start_with(EtcdOpts {
        auth_token: Some("simple".into()),
        ..Default::default()
    });
    let ns = namespace("viewdenied");
    let raw = etcd.raw();
    enable_auth(&raw, &ns);
    // A user who may read only the status index, not the records.
    let admin = Raw::connect_with_user(&etcd.endpoints(), "root", "rootpw");
    let mut c = admin.client();
    let status_prefix = format!("{ns}/services/by-status/");
    admin.block_on(async move {
        c.role_add("statuses").await.unwrap();
        c.role_grant_permission(
            "statuses",
            etcd_client::Permission::read(status_prefix).with_prefix(),
        )
        .await
        .unwrap();
        c.user_add("narrow", "narrow-pw", None).await.unwrap();
        c.user_grant_role("narrow", "statuses").await.unwrap();
    });
    let mut cfg = config(&etcd.endpoints(), &ns, TTL);
    cfg.user("narrow", "narrow-pw").unwrap();
    cfg.request_timeout(Duration::from_secs(10));
    let client = Client::connect(&cfg).unwrap();
    for attempt in 0..2 {
        let t = Instant::now();
        let err = client.view().err().expect("a view without read access");
        assert_eq!(err.kind(), ErrorKind::Auth, "attempt {attempt}: {err}");
        assert!(
            t.elapsed() < Duration::from_secs(8),
            "attempt {attempt}: took {:?}, as if retrying until the deadline",
            t.elapsed()
        );
        let err = client
            .subscribe(&Filter::all(), &SubscribeOptions::default())
            .err()
            .expect("a subscription without read access");
        assert_eq!(err.kind(), ErrorKind::Auth, "attempt {attempt}: {err}");
    }
}

/// Warnings the library logged (every test's: match on something unique).
fn warnings() -> &'static std::sync::Mutex<Vec<String>> {
    struct Capture(std::sync::Mutex<Vec<String>>);
    impl log::Log for Capture {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.level() <= log::Level::Warn
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                let line = r.args().to_string();
                eprintln!("{} {line}", r.level());
                self.0.lock().unwrap().push(line);
            }
        }
        fn flush(&self) {}
    }
    static CAPTURE: std::sync::OnceLock<&'static Capture> = std::sync::OnceLock::new();
    let capture = CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Default::default())));
        log::set_logger(c).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Warn);
        c
    });
    &capture.0
}

/// Replaces `dst` with `src`'s contents the way rotation tools do: write
/// beside it, then rename over it (a reader sees the old or the new file).
fn replace_file(dst: &std::path::Path, contents: &[u8]) {
    let tmp = dst.with_extension("new");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, dst).unwrap();
}

/// A client's own copies of its CA, certificate and key, so they can be
/// rotated under it.
struct ClientFiles {
    _dir: tempfile::TempDir,
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

impl ClientFiles {
    fn from(pki: &Pki) -> ClientFiles {
        let dir = tempfile::tempdir().unwrap();
        let files = ClientFiles {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("client.pem"),
            key: dir.path().join("client-key.pem"),
            _dir: dir,
        };
        files.rotate_to(pki);
        files
    }

    fn rotate_to(&self, pki: &Pki) {
        replace_file(&self.ca, &std::fs::read(&pki.ca).unwrap());
        replace_file(&self.cert, &std::fs::read(&pki.client_cert).unwrap());
        replace_file(&self.key, &std::fs::read(&pki.client_key).unwrap());
    }

    fn config(&self, etcd: &Etcd, ns: &str) -> Config {
        let mut c = tls_config(etcd, ns, &self.ca);
        c.tls_client_cert(self.cert.to_str().unwrap(), self.key.to_str().unwrap())
            .unwrap();
        c
    }
}

/// Restarts `etcd` serving (and trusting only) `new`'s CA, on the same
/// ports and data: its command line names the files of `served`, rewritten.
fn restart_with_new_ca(etcd: &mut Etcd, served: &Pki, new: &Pki) {
    etcd.stop();
    for (dst, src) in [
        (&served.ca, &new.ca),
        (&served.server_cert, &new.server_cert),
        (&served.server_key, &new.server_key),
    ] {
        replace_file(dst, &std::fs::read(src).unwrap());
    }
    etcd.start_again();
}

#[test]
fn a_running_client_follows_certificate_rotation_to_a_new_ca() {
    let old = Pki::generate();
    let new = Pki::generate();
    let mut etcd = Etcd::start_with(EtcdOpts {
        tls: Some(old.server_files(true)),
        ..Default::default()
    });
    let ns = namespace("rotate");
    let files = ClientFiles::from(&old);
    let client = Client::connect(&files.config(&etcd, &ns)).unwrap();
    let uuids: Vec<String> = ["a", "b"]
        .iter()
        .map(|h| client.update(&Service::new("rotated", h)).unwrap())
        .collect();

    // The rotation: new client files (new CA, new certificate and key),
    // then etcd restarted trusting only the new CA.
    files.rotate_to(&new);
    restart_with_new_ca(&mut etcd, &old, &new);

    // Someone who only knows the new files sees the services UP: the
    // running client reconnected with the new credentials by itself.
    let observer = Client::connect(&files.config(&etcd, &ns)).expect("new files work");
    let all_up = || uuids.iter().all(|u| observer.is_up(u).unwrap_or(false));
    assert!(
        wait_until(Duration::from_secs(20), all_up),
        "the rotated client's services are not UP; its stats: {:?}",
        client.stats()
    );
    // And they stay UP: its keepalives get through (well past the TTL).
    let until = Instant::now() + Duration::from_secs(2 * TTL + 1);
    while Instant::now() < until {
        assert!(all_up(), "a service fell DOWN after the rotation");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        client.is_up(&uuids[0]).unwrap(),
        "the client's own calls work"
    );
    let stats = client.stats();
    assert!(stats.tls_reloads >= 1, "{stats:?}");
    assert_eq!(stats.tls_files_refused, 0, "{stats:?}");
}

#[test]
fn a_bad_new_certificate_file_keeps_the_old_credentials_and_says_so() {
    let warnings = warnings();
    let pki = Pki::generate();
    let mut etcd = Etcd::start_with(EtcdOpts {
        tls: Some(pki.server_files(true)),
        ..Default::default()
    });
    let ns = namespace("badrotate");
    let files = ClientFiles::from(&pki);
    let client = Client::connect(&files.config(&etcd, &ns)).unwrap();
    let uuid = client.update(&Service::new("kept", "h")).unwrap();

    // A botched rotation, then a reconnect (etcd restarted, same PKI).
    replace_file(&files.cert, b"this is not a certificate\n");
    etcd.restart();

    let observer = {
        let mut c = tls_config(&etcd, &ns, &pki.ca);
        c.tls_client_cert(
            pki.client_cert.to_str().unwrap(),
            pki.client_key.to_str().unwrap(),
        )
        .unwrap();
        Client::connect(&c).unwrap()
    };
    assert!(
        wait_until(Duration::from_secs(20), || client.stats().tls_files_refused
            >= 1),
        "the bad file was not noticed: {:?}",
        client.stats()
    );
    // Still connected with the old credentials: calls work, the service
    // stays UP past the TTL.
    let until = Instant::now() + Duration::from_secs(2 * TTL + 1);
    while Instant::now() < until {
        assert!(client.is_up(&uuid).unwrap(), "the client's own call");
        assert!(observer.is_up(&uuid).unwrap(), "the service is UP");
        std::thread::sleep(Duration::from_millis(200));
    }
    let stats = client.stats();
    assert_eq!(
        stats.tls_files_refused, 1,
        "one bad version, counted once: {stats:?}"
    );
    assert_eq!(stats.tls_reloads, 0, "{stats:?}");
    let cert = files.cert.display().to_string();
    assert!(
        warnings
            .lock()
            .unwrap()
            .iter()
            .any(|w| w.contains(&cert) && w.contains("keeping the previous credentials")),
        "no warning naming {cert}"
    );
}

#[test]
fn over_tls_a_dead_endpoint_in_the_list_is_steered_around() {
    // Under TLS the balancer is ours (each member is connected with the
    // current files): steering must still take a dead member out of it.
    let warnings = warnings();
    let pki = Pki::generate();
    let etcd = Etcd::start_with(EtcdOpts {
        tls: Some(pki.server_files(true)),
        ..Default::default()
    });
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ns = namespace("tlsdead");
    let mut cfg = tls_config(&etcd, &ns, &pki.ca);
    cfg.endpoints(&[etcd.endpoint(), format!("https://127.0.0.1:{dead}")])
        .unwrap()
        .tls_client_cert(
            pki.client_cert.to_str().unwrap(),
            pki.client_key.to_str().unwrap(),
        )
        .unwrap();
    let client = Client::connect(&cfg).expect("connects through the live member");
    let uuid = client.update(&Service::new("steered", "h")).unwrap();
    // Once the dead member is out, every call answers.
    assert!(wait_until(Duration::from_secs(10), || (0..20)
        .all(|_| client.is_up(&uuid).unwrap_or(false))));
    let until = Instant::now() + Duration::from_secs(2 * TTL + 1);
    while Instant::now() < until {
        assert!(client.is_up(&uuid).unwrap(), "a call failed after steering");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(client.stats().lease_regrants, 0, "{:?}", client.stats());
    let out = format!("127.0.0.1:{dead} does not answer; avoiding it");
    assert!(
        warnings.lock().unwrap().iter().any(|w| w.contains(&out)),
        "the dead member was not taken out"
    );
}
