//! A user-space TCP proxy on 127.0.0.1 in front of an etcd port, so a test
//! can break one path to etcd while etcd itself stays healthy.
//!
//! Faults (each can be undone with [`Proxy::heal`]):
//! * [`Proxy::blackhole`] — connections stay open but nothing is forwarded
//!   either way; new connections are accepted and hang. Bytes are held, not
//!   lost (like a network partition: TCP retransmits once it heals).
//! * [`Proxy::drop_connections`] — closes every proxied connection now.
//! * [`Proxy::refuse`] — new connections are closed at once.
//! * [`Proxy::cut`] — both of the above.
//! * [`Proxy::delay`] — every chunk is forwarded after a delay (chunks
//!   wait for each other: a slow link).
//! * [`Proxy::answer_late`] — every chunk etcd sends is forwarded a fixed
//!   time after it arrived, without limiting throughput: an etcd that
//!   answers everything late (requests reach it on time).
//! * [`Proxy::blackhole_from`] — like `blackhole`, but only for connections
//!   that a [`Classifier`] attributed to one source (see
//!   [`Proxy::start_classified`]); undone by [`Proxy::heal_from`] or `heal`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Says which source (0..64) opened a connection, given its remote address
/// and the proxy's listening port; `None` when it cannot tell.
pub type Classifier = Arc<dyn Fn(SocketAddr, u16) -> Option<usize> + Send + Sync>;

#[derive(Default)]
struct Shared {
    refuse: AtomicBool,
    blackhole: AtomicBool,
    /// Bit `i` set: connections classified as source `i` are blackholed.
    blocked_sources: AtomicU64,
    delay_ms: AtomicU64,
    /// Held this long (ms) after arriving: chunks from etcd to the client.
    answer_late_ms: AtomicU64,
    stop: AtomicBool,
    /// Bytes forwarded (both directions).
    bytes: AtomicU64,
    /// Connections accepted.
    accepted: AtomicU64,
    conns: Mutex<Vec<TcpStream>>,
}

impl Shared {
    fn conns(&self) -> std::sync::MutexGuard<'_, Vec<TcpStream>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn held(&self, source: Option<usize>) -> bool {
        self.blackhole.load(Ordering::SeqCst)
            || source.is_some_and(|s| self.blocked_sources.load(Ordering::SeqCst) & (1 << s) != 0)
    }

    /// Waits while blackholed (for this connection's `source`); false if
    /// the proxy is stopping.
    fn wait_open(&self, source: Option<usize>) -> bool {
        while self.held(source) {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        !self.stop.load(Ordering::SeqCst)
    }
}

pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`
    /// (`http://127.0.0.1:port` or `127.0.0.1:port`).
    pub fn start(upstream: &str) -> Proxy {
        Self::start_inner(upstream, None)
    }

    /// Like [`Proxy::start`], and every accepted connection is attributed
    /// to a source by `classify` (called once per connection, before
    /// anything is forwarded), so [`Proxy::blackhole_from`] can hold the
    /// traffic of one source only.
    pub fn start_classified(upstream: &str, classify: Classifier) -> Proxy {
        Self::start_inner(upstream, Some(classify))
    }

    fn start_inner(upstream: &str, classify: Option<Classifier>) -> Proxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new(Shared::default());
        let sh = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if sh.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if sh.refuse.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                sh.accepted.fetch_add(1, Ordering::SeqCst);
                if let Ok(c) = client.try_clone() {
                    sh.conns().push(c);
                }
                let sh = sh.clone();
                let upstream = upstream.clone();
                let classify = classify.clone();
                // Connect upstream off the accept thread: while blackholed a
                // new connection just hangs.
                std::thread::spawn(move || {
                    let source = classify.and_then(|f| f(client.peer_addr().ok()?, port));
                    if !sh.wait_open(source) {
                        return;
                    }
                    let Ok(server) = TcpStream::connect(&upstream) else {
                        let _ = client.shutdown(Shutdown::Both);
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    if let Ok(s) = server.try_clone() {
                        sh.conns().push(s);
                    }
                    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                        return;
                    };
                    pipe(sh.clone(), c2, s2, source, false);
                    pipe(sh, server, client, source, true);
                });
            }
        });
        Proxy { port, shared }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops forwarding (both ways, on every connection, old and new)
    /// without closing anything.
    pub fn blackhole(&self) {
        self.shared.blackhole.store(true, Ordering::SeqCst);
    }

    /// Closes every proxied connection (new ones are still accepted unless
    /// refused).
    pub fn drop_connections(&self) {
        for c in self.shared.conns().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Stops forwarding, both ways, on the connections attributed to
    /// `source` (< 64) by this proxy's classifier, old and new, without
    /// closing anything. No effect on a proxy started without one.
    pub fn blackhole_from(&self, source: usize) {
        assert!(source < 64, "source {source} out of range");
        self.shared
            .blocked_sources
            .fetch_or(1 << source, Ordering::SeqCst);
    }

    /// Undoes [`Proxy::blackhole_from`] for `source`.
    pub fn heal_from(&self, source: usize) {
        assert!(source < 64, "source {source} out of range");
        self.shared
            .blocked_sources
            .fetch_and(!(1 << source), Ordering::SeqCst);
    }

    /// Closes new connections at once.
    pub fn refuse(&self) {
        self.shared.refuse.store(true, Ordering::SeqCst);
    }

    /// Forwards every chunk after `d` (zero: no delay).
    pub fn delay(&self, d: Duration) {
        self.shared
            .delay_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Forwards every chunk etcd sends `d` after it arrived (zero: at
    /// once), in order, without limiting throughput: every answer (and
    /// every HTTP/2 ping acknowledgement) is `d` late, and requests reach
    /// etcd on time.
    pub fn answer_late(&self, d: Duration) {
        self.shared
            .answer_late_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.refuse();
        self.drop_connections();
    }

    /// Undoes every fault: accepts, forwards, no delay.
    pub fn heal(&self) {
        self.shared.refuse.store(false, Ordering::SeqCst);
        self.shared.delay_ms.store(0, Ordering::SeqCst);
        self.shared.answer_late_ms.store(0, Ordering::SeqCst);
        self.shared.blocked_sources.store(0, Ordering::SeqCst);
        self.shared.blackhole.store(false, Ordering::SeqCst);
    }

    /// Bytes forwarded so far (both directions).
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut();
        let _ = TcpStream::connect_timeout(
            &format!("127.0.0.1:{}", self.port).parse().expect("addr"),
            Duration::from_millis(200),
        );
    }
}

/// Forwards `from` to `to` until either closes. Chunks read go through a
/// queue to a writer thread of their own, so a chunk held back (see
/// [`Proxy::answer_late`], when `to_client`) never stops the next one from
/// being read.
fn pipe(
    sh: Arc<Shared>,
    mut from: TcpStream,
    mut to: TcpStream,
    source: Option<usize>,
    to_client: bool,
) {
    let (tx, rx) = std::sync::mpsc::channel::<(std::time::Instant, Vec<u8>)>();
    let writer_sh = sh.clone();
    let writer_from = from.try_clone();
    std::thread::spawn(move || {
        for (due, chunk) in rx {
            let now = std::time::Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if writer_sh.stop.load(Ordering::SeqCst) || to.write_all(&chunk).is_err() {
                break;
            }
            writer_sh
                .bytes
                .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        }
        let _ = to.shutdown(Shutdown::Both);
        if let Ok(from) = writer_from {
            let _ = from.shutdown(Shutdown::Both);
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let arrived = std::time::Instant::now();
            // Hold the chunk while blackholed (nothing is lost).
            if !sh.wait_open(source) {
                break;
            }
            let delay = sh.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                std::thread::sleep(Duration::from_millis(delay));
            }
            let late = if to_client {
                Duration::from_millis(sh.answer_late_ms.load(Ordering::SeqCst))
            } else {
                Duration::ZERO
            };
            let due = arrived + late;
            if tx.send((due, buf[..n].to_vec())).is_err() {
                break;
            }
        }
        // The writer forwards what is queued, then closes both ends.
    });
}
