//! Heartbeat deadlines (main-loop liveness) against a real etcd: a service
//! with a deadline goes DOWN for everyone when its owner stops checking in,
//! though the process and its lease live on, and comes back UP on the next
//! check-in; a service without one is not affected.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use os_lively::{DownReason, ErrorKind, EventKind, Filter, Service, Status, SubscribeOptions};

const TTL: u64 = 3;
const D: Duration = Duration::from_secs(2);
const CHILD_ENV: &str = "OSLIVELY_TEST_HEARTBEAT_CHILD";

/// Not a test of its own: the daemon the acceptance test runs as a child
/// process (this test binary re-executed with `CHILD_ENV` set). One client,
/// two services: "worker" with a 2 s deadline, "plain" without. Its main
/// loop checks in every 50 ms while running; stdin "stop" / "resume"
/// stop and resume the loop (the process and its lease live on).
#[test]
fn child_daemon() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (endpoints, ns) = spec.split_once(' ').expect("endpoints and namespace");
    let endpoints: Vec<String> = endpoints.split(',').map(str::to_string).collect();
    let client = connect(&endpoints, ns, TTL);
    let worker = client
        .update(&Service::new("worker", "child").with_heartbeat(D))
        .unwrap();
    let plain = client.update(&Service::new("plain", "child")).unwrap();
    let running = Arc::new(AtomicBool::new(true));
    let r = running.clone();
    let c = client.clone();
    let w = worker.clone();
    std::thread::spawn(move || {
        loop {
            if r.load(Ordering::SeqCst) {
                c.heartbeat(&w).unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    println!("uuids {worker} {plain}");
    std::io::stdout().flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        match line.as_deref() {
            Ok("stop") => running.store(false, Ordering::SeqCst),
            Ok("resume") => running.store(true, Ordering::SeqCst),
            _ => break,
        }
        println!("ok");
        std::io::stdout().flush().unwrap();
    }
}

struct Daemon {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl Daemon {
    fn start(etcd: &Etcd, ns: &str) -> (Daemon, String, String) {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_daemon", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, format!("{} {ns}", etcd.endpoints().join(",")))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let mut daemon = Daemon {
            child,
            stdin: stdin.unwrap(),
            stdout: BufReader::new(stdout.unwrap()),
        };
        loop {
            let mut line = String::new();
            assert!(
                daemon.stdout.read_line(&mut line).unwrap() > 0,
                "child exited"
            );
            // libtest may print "test child_daemon ... " first on the line.
            if let Some((_, rest)) = line.trim().split_once("uuids ") {
                let (w, p) = rest.split_once(' ').unwrap();
                let (w, p) = (w.to_string(), p.to_string());
                return (daemon, w, p);
            }
        }
    }

    fn say(&mut self, what: &str) {
        writeln!(self.stdin, "{what}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ok");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checks in for `uuid` every 25 ms until dropped, so waits longer than
/// the deadline do not miss it.
struct Beating(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Beating {
    fn start(client: &os_lively::Client, uuid: &str) -> Beating {
        let on = Arc::new(AtomicBool::new(true));
        let (c, u, o) = (client.clone(), uuid.to_string(), on.clone());
        let t = std::thread::spawn(move || {
            while o.load(Ordering::SeqCst) {
                c.heartbeat(&u).unwrap();
                std::thread::sleep(Duration::from_millis(25));
            }
        });
        Beating(on, Some(t))
    }
}

impl Drop for Beating {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_hung_main_loop_goes_down_for_everyone_and_comes_back_on_check_in() {
    let etcd = Etcd::start();
    let ns = namespace("hung-loop");
    let (daemon, worker, plain) = Daemon::start(&etcd, &ns);
    let daemon = std::cell::RefCell::new(daemon);
    missed_then_back(
        &etcd,
        &ns,
        &worker,
        Some(&plain),
        D,
        || daemon.borrow_mut().say("stop"),
        || daemon.borrow_mut().say("resume"),
    );
}

#[test]
fn the_cli_checks_in_per_stdin_line() {
    let etcd = Etcd::start();
    let ns = namespace("cli-heartbeat");
    let plain = Registrant::start(
        &etcd.endpoints(),
        &ns,
        TTL,
        &["--type", "plain", "--host", "h"],
    );
    let reg = Registrant::start(
        &etcd.endpoints(),
        &ns,
        TTL,
        &["--type", "worker", "--host", "h", "--heartbeat", "2"],
    );
    let reg = std::sync::Mutex::new(reg);
    let beating = Arc::new(AtomicBool::new(true));
    // The pipeline's loop: a line every 50 ms while beating.
    let feeder = {
        let beating = beating.clone();
        let stdin = reg.lock().unwrap().take_stdin();
        std::thread::spawn(move || {
            let mut stdin = stdin;
            loop {
                if beating.load(Ordering::SeqCst)
                    && writeln!(stdin).and_then(|_| stdin.flush()).is_err()
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let worker = reg.lock().unwrap().uuid.clone();
    missed_then_back(
        &etcd,
        &ns,
        &worker,
        Some(&plain.uuid),
        D,
        || beating.store(false, Ordering::SeqCst),
        || beating.store(true, Ordering::SeqCst),
    );
    reg.lock().unwrap().kill();
    let _ = feeder.join();
}

#[test]
fn check_ins_from_many_threads_while_the_deadline_fires_end_up() {
    let etcd = Etcd::start();
    let ns = namespace("many-threads");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let d = Duration::from_millis(150);
    let uuid = client
        .update(&Service::new("w", "h").with_heartbeat(d))
        .unwrap();
    let sub = client
        .subscribe(&Filter::all().uuid(&uuid), &SubscribeOptions::default())
        .unwrap();
    // Eight threads check in with pauses around the deadline, so DOWN and
    // UP transitions keep racing with check-ins.
    let stop = Arc::new(AtomicBool::new(false));
    let paused = Arc::new(AtomicBool::new(false));
    let beats = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..8u64)
        .map(|i| {
            let (c, u, stop, beats) = (client.clone(), uuid.clone(), stop.clone(), beats.clone());
            let paused = paused.clone();
            std::thread::spawn(move || {
                let mut n = i;
                while !stop.load(Ordering::SeqCst) {
                    if paused.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    c.heartbeat(&u).unwrap();
                    beats.fetch_add(1, Ordering::Relaxed);
                    n = n
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    // Mostly quick beats, sometimes a pause past the deadline.
                    let pause = if (n >> 33) % 40 == 0 {
                        220
                    } else {
                        (n >> 40) % 3
                    };
                    std::thread::sleep(Duration::from_millis(pause));
                }
            })
        })
        .collect();
    // All threads pause together now and then, so the deadline does fire.
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(200));
        // Pause all for about D, so the deadline fires just as (or just
        // before) eight threads resume checking in.
        paused.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(130 + n % 5 * 10));
        paused.store(false, Ordering::SeqCst);
        n += 1;
    }
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    // Silent now: the deadline fires for sure; then one check-in.
    assert!(wait_until(Duration::from_secs(5), || !client
        .is_up(&uuid)
        .unwrap()));
    client.heartbeat(&uuid).unwrap();
    assert!(wait_until(Duration::from_secs(5), || client
        .is_up(&uuid)
        .unwrap()));
    // Keep checking in: it must stay UP.
    let beating = Beating::start(&client, &uuid);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(25));
        assert!(client.get(&uuid).unwrap().unwrap().up);
    }
    // Events alternate DOWN (missed) / UP, one per transition, and match
    // the miss counter.
    let mut downs = 0;
    let mut last = Status::Up;
    while let Some(e) = sub.recv_timeout(Duration::from_millis(300)).unwrap() {
        match e.kind {
            EventKind::Down => {
                assert_eq!(last, Status::Up, "two DOWNs in a row");
                assert_eq!(e.reason, Some(DownReason::Missed));
                last = Status::Down;
                downs += 1;
            }
            EventKind::Up => {
                assert_eq!(last, Status::Down, "two UPs in a row");
                last = Status::Up;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    drop(beating);
    assert_eq!(last, Status::Up);
    assert!(downs >= 1);
    assert_eq!(client.stats().heartbeats_missed, downs);
    eprintln!(
        "{} check-ins from 8 threads, {downs} missed deadlines",
        beats.load(Ordering::Relaxed)
    );
}

#[test]
fn a_check_in_while_the_down_transaction_is_in_flight_ends_up() {
    let etcd = Etcd::start();
    let ns = namespace("in-flight");
    let proxy = Proxy::start(&etcd.endpoint());
    let client = connect(&[proxy.endpoint()], &ns, 10);
    let observer = connect(&etcd.endpoints(), &ns, TTL);
    let d = Duration::from_millis(500);
    let uuid = client
        .update(&Service::new("w", "h").with_heartbeat(d))
        .unwrap();
    let sub = observer
        .subscribe(&Filter::all().uuid(&uuid), &SubscribeOptions::default())
        .unwrap();
    let mut raced = false;
    for attempt in 0..5 {
        let beating = Beating::start(&client, &uuid);
        assert!(wait_until(Duration::from_secs(5), || observer
            .is_up(&uuid)
            .unwrap()));
        while sub
            .recv_timeout(Duration::from_millis(200))
            .unwrap()
            .is_some()
        {}
        drop(beating);
        // Every byte takes 300 ms each way: the DOWN transaction is in
        // flight for at least that long once it leaves.
        proxy.delay(Duration::from_millis(300));
        client.heartbeat(&uuid).unwrap();
        let last = Instant::now();
        std::thread::sleep(d.saturating_sub(Duration::from_millis(20)));
        let bytes = proxy.bytes();
        // The deadline passes and the client sends its transaction: check
        // in as soon as the proxy sees it.
        while proxy.bytes() == bytes && last.elapsed() < d + Duration::from_secs(1) {
            std::thread::sleep(Duration::from_micros(200));
        }
        client.heartbeat(&uuid).unwrap();
        proxy.delay(Duration::ZERO);
        let beating = Beating::start(&client, &uuid);
        // Ends UP, whatever happened in between.
        assert!(wait_until(Duration::from_secs(10), || observer
            .is_up(&uuid)
            .unwrap()));
        let mut kinds = Vec::new();
        while let Some(e) = sub.recv_timeout(Duration::from_millis(700)).unwrap() {
            kinds.push((e.kind, e.reason));
        }
        assert!(observer.is_up(&uuid).unwrap(), "stays UP: {kinds:?}");
        drop(beating);
        match kinds.as_slice() {
            [] => eprintln!("attempt {attempt}: the check-in came before the DOWN was sent"),
            [
                (EventKind::Down, Some(DownReason::Missed)),
                (EventKind::Up, None),
            ] => {
                raced = true;
                break;
            }
            other => panic!("unexpected events {other:?}"),
        }
    }
    assert!(raced, "never caught the DOWN transaction in flight");
    assert_eq!(client.stats().heartbeats_missed, 1);
}

#[test]
fn check_ins_are_refused_for_services_without_a_deadline_and_after_close() {
    let etcd = Etcd::start();
    let ns = namespace("refused");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let plain = client.update(&Service::new("p", "h")).unwrap();
    assert_eq!(
        client.heartbeat(&plain).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        client.heartbeat("nope").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let err = client
        .update(&Service::new("q", "h").with_heartbeat(Duration::from_millis(5)))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("heartbeat"), "{err}");
    let hb = client
        .update(&Service::new("w", "h").with_heartbeat(D))
        .unwrap();
    // The hyphenated form finds the same service.
    let hyphenated = format!(
        "{}-{}-{}-{}-{}",
        &hb[..8],
        &hb[8..12],
        &hb[12..16],
        &hb[16..20],
        &hb[20..]
    );
    client.heartbeat(&hyphenated.to_uppercase()).unwrap();
    // An update that does not mention the deadline keeps it (changing the
    // region must not silently drop hang detection).
    client
        .update(&Service::new("w", "h").with_uuid(&hb).with_region("r2"))
        .unwrap();
    client.heartbeat(&hb).unwrap();
    assert_eq!(
        client.get(&hb).unwrap().unwrap().service.heartbeat,
        Some(D),
        "still stored"
    );
    // Re-registered removing the deadline: no more check-ins, and no DOWN.
    client
        .update(&Service::new("w", "h").with_uuid(&hb).without_heartbeat())
        .unwrap();
    assert_eq!(
        client.heartbeat(&hb).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    std::thread::sleep(D + Duration::from_millis(500));
    assert!(client.is_up(&hb).unwrap());
    let c2 = client.clone();
    client.close().unwrap();
    assert_eq!(c2.heartbeat(&hb).unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn update_counts_as_a_check_in_and_an_unchanged_record_writes_nothing() {
    let etcd = Etcd::start();
    let ns = namespace("update-checks-in");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let raw = etcd.raw();
    let d = Duration::from_millis(1500);
    let svc = Service::new("w", "h").with_heartbeat(d);
    let uuid = client.update(&svc).unwrap();
    let svc = svc.with_uuid(&uuid);
    let key = format!("{ns}/services/by-uuid/{uuid}");
    let rev = raw.get(&key).unwrap().mod_revision;
    // update() every D/10 for 2 D keeps it UP and writes nothing.
    let t0 = Instant::now();
    while t0.elapsed() < d * 2 {
        client.update(&svc).unwrap();
        assert!(client.is_up(&uuid).unwrap());
        std::thread::sleep(d / 10);
    }
    assert_eq!(client.stats().heartbeats_missed, 0);
    assert_eq!(raw.get(&key).unwrap().mod_revision, rev, "nothing written");
    // Missed: DOWN; the next update() brings it back UP.
    assert!(wait_until(Duration::from_secs(5), || !client
        .is_up(&uuid)
        .unwrap()));
    client.update(&svc).unwrap();
    assert!(client.is_up(&uuid).unwrap(), "UP when update() returns");
    let s = client.get(&uuid).unwrap().unwrap().service;
    assert!(!s.heartbeat_missed);
}

#[test]
fn an_operators_down_sticks_through_check_ins() {
    let etcd = Etcd::start();
    let ns = namespace("operator-down");
    let client = connect(&etcd.endpoints(), &ns, TTL);
    let operator = connect(&etcd.endpoints(), &ns, TTL);
    let d = Duration::from_millis(300);
    let uuid = client
        .update(&Service::new("w", "h").with_heartbeat(d))
        .unwrap();
    // Missed first, then forced down by an operator: check-ins do not lift it.
    assert!(wait_until(Duration::from_secs(5), || !client
        .is_up(&uuid)
        .unwrap()));
    operator.down(&uuid, "disk swap", 0, 0).unwrap();
    for _ in 0..40 {
        client.heartbeat(&uuid).unwrap();
        std::thread::sleep(Duration::from_millis(25));
    }
    assert!(!client.is_up(&uuid).unwrap());
    let s = client.get(&uuid).unwrap().unwrap().service;
    assert_eq!(s.maintenance_note, "disk swap");
    assert!(!s.heartbeat_missed);
}
