//! A forked child's log lines reach the callback and stderr: `fork()` keeps
//! only the forking thread, so the parent's log thread is not there to
//! deliver them. Its own binary: the log sink is process-wide, and forking
//! beside other tests' threads is best avoided.

use std::ffi::{CStr, c_char, c_void};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use os_lively::capi::{lively_log_level, lively_result, lively_set_log_callback};

/// Where the callback writes each message (a pipe's write end), one line each.
static OUT: AtomicI32 = AtomicI32::new(-1);

unsafe extern "C" fn to_pipe(_: *mut c_void, _: lively_log_level, msg: *const c_char) {
    let mut line = unsafe { CStr::from_ptr(msg) }.to_bytes().to_vec();
    line.push(b'\n');
    let fd = OUT.load(Ordering::SeqCst);
    // SAFETY: writes a buffer we own to a descriptor we opened.
    unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
}

fn pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: a two-element array for pipe(2).
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

/// Reads `fd` until a line containing `want` arrives (true) or 10 s pass.
fn read_until(fd: i32, want: &str) -> (bool, String) {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if String::from_utf8_lossy(&got).contains(want) {
            return (true, String::from_utf8_lossy(&got).into_owned());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (false, String::from_utf8_lossy(&got).into_owned());
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd we own.
        if unsafe { libc::poll(&mut pfd, 1, left.as_millis() as i32) } <= 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: reads into a buffer we own.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return (false, String::from_utf8_lossy(&got).into_owned());
        }
        got.extend_from_slice(&buf[..n as usize]);
    }
}

/// Forks a child that runs `child` and then waits (at most 20 s) to be
/// killed; returns its pid.
fn fork_child(child: impl FnOnce()) -> libc::pid_t {
    // SAFETY: the child runs `child` (logging) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        child();
        std::thread::sleep(Duration::from_secs(20));
        // SAFETY: leaves the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    pid
}

fn reap(pid: libc::pid_t) {
    // SAFETY: our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

#[test]
fn a_forked_child_logs_to_the_callback_and_to_stderr() {
    // The parent's log thread runs before the fork, as in a daemon that
    // logged something and then forked its workers.
    let (rd, wr) = pipe();
    OUT.store(wr, Ordering::SeqCst);
    assert_eq!(
        lively_set_log_callback(Some(to_pipe), std::ptr::null_mut(), 2),
        lively_result::Ok
    );
    log::warn!(target: "os_lively::test", "from the parent");
    let (seen, got) = read_until(rd, "from the parent");
    assert!(seen, "the parent's line never arrived: {got:?}");

    let pid = fork_child(|| {
        log::warn!(target: "os_lively::test", "from the child to the callback");
    });
    let (seen, got) = read_until(rd, "from the child to the callback");
    reap(pid);
    assert!(
        seen,
        "the forked child's line never reached the callback: {got:?}"
    );

    // The default sink, stderr: the child's stderr is a pipe we read.
    assert_eq!(
        lively_set_log_callback(None, std::ptr::null_mut(), 0),
        lively_result::Ok
    );
    log::warn!(target: "os_lively::test", "parent to stderr");
    let (err_rd, err_wr) = pipe();
    let pid = fork_child(|| {
        // SAFETY: points the child's stderr at the pipe.
        unsafe { libc::dup2(err_wr, 2) };
        log::warn!(target: "os_lively::test", "from the child to stderr");
    });
    let (seen, got) = read_until(err_rd, "from the child to stderr");
    reap(pid);
    assert!(
        seen,
        "the forked child's line never reached stderr: {got:?}"
    );
}
