//! Other processes: a forked child controls an inherited vpoll fd and the parent sees
//! it; the Emulated backend never raises SIGPIPE; Python's `select.epoll` and
//! `selectors` wait on a vpoll fd and see what the Rust side sets.

mod common;

use common::{assert_seen, make, representable, visible, wait_child};
use greenfd_test_support::{
    CHILD_PATIENCE, ThreadAlarm, backends, child_output, is_child, on_alarm_without_restart,
};
use greenfd_vpoll::{Backend, Builder, Events, Op, VpollFd, ctl_fd};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::process::{Command, Stdio};

/// Forks a child that applies `op` with `events` to `v` via `ctl_fd` and exits with
/// 0 on success, 1 on error; returns whether it succeeded.
fn ctl_in_forked_child(v: &VpollFd, op: Op, events: Events) -> bool {
    let fd = v.as_fd();
    // SAFETY: the child runs only ctl_fd (atomic loads and raw syscalls on the
    // inherited descriptors; no allocation or lock on its success path, and its
    // tracing call sites were registered by the parent's warm-up) and then `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = match ctl_fd(fd, op, events) {
            Ok(()) => 0,
            Err(_) => 1,
        };
        // SAFETY: leave the child without running the harness's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    let status = wait_child(pid);
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

#[test]
fn forked_child_controls_an_inherited_fd() {
    for b in backends() {
        let v = make(b, Events::empty());
        // Warm every path the child takes, in the parent.
        ctl_fd(v.as_fd(), Op::Add, Events::IN).unwrap();
        ctl_fd(v.as_fd(), Op::Del, Events::IN).unwrap();
        ctl_fd(v.as_fd(), Op::Add, Events::OUT).unwrap();
        ctl_fd(v.as_fd(), Op::Del, Events::OUT).unwrap();

        assert!(
            ctl_in_forked_child(&v, Op::Add, Events::IN | Events::OUT),
            "{b}"
        );
        assert_seen(&v, Events::IN | Events::OUT, "child ADD IN|OUT");
        // State is shared, not copied: the parent's ADD and the child's DEL meet.
        v.add(Events::IN).unwrap();
        assert!(ctl_in_forked_child(&v, Op::Del, Events::IN), "{b}");
        assert_seen(&v, Events::OUT, "parent ADD IN, child DEL IN");
        assert!(ctl_in_forked_child(&v, Op::Set, Events::PRI), "{b}");
        assert_seen(&v, visible(b, Events::PRI), "child SET PRI");
        assert!(ctl_in_forked_child(&v, Op::Set, Events::empty()), "{b}");
        assert_seen(&v, Events::empty(), "child SET empty");
        // The parent still controls it afterwards.
        v.add(Events::IN).unwrap();
        assert_seen(&v, Events::IN, "parent ADD IN after children");
    }
}

/// Child body: with SIGPIPE's default action (terminate), drive the Emulated backend
/// through every path that writes to a hung-up socket.
#[test]
fn sigpipe_child() {
    if !is_child("sigpipe_child") {
        return;
    }
    // SAFETY: restores the default disposition in this single-purpose child.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let v = make(Backend::Emulated, Events::OUT);
    // The C scenario: ADD IN, ADD IN, ADD OUT, ADD HUP.
    v.add(Events::IN).unwrap();
    v.add(Events::IN).unwrap();
    v.add(Events::OUT).unwrap();
    v.add(Events::HUP).unwrap();
    let hup = Events::HUP | Events::IN | Events::RDHUP | Events::OUT;
    assert_eq!(v.events().unwrap(), hup);
    // Removing OUT after HUP: libvpoll's emulator dies of SIGPIPE here.
    assert!(v.del(Events::OUT).is_err());
    assert!(v.del(Events::HUP | Events::IN | Events::RDHUP).is_err());
    v.add(Events::IN).unwrap();
    v.del(Events::IN).unwrap();
    assert!(v.add(Events::PRI).is_err());
    v.set(hup).unwrap();
    assert_eq!(v.events().unwrap(), hup);
    println!("sigpipe child ok");
}

#[test]
fn emulated_never_raises_sigpipe() {
    let out = child_output("sigpipe_child", &[], CHILD_PATIENCE);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("sigpipe child ok"),
        "{} (a signal here means SIGPIPE)\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn emulated_hup_is_seen_as_hup_in_rdhup() {
    let v = make(Backend::Emulated, Events::empty());
    v.add(Events::HUP).unwrap();
    assert_seen(&v, Events::HUP | Events::IN | Events::RDHUP, "ADD HUP");
    // ADD HUP again is idempotent; DEL IN clears only the caller's IN.
    v.add(Events::HUP | Events::IN).unwrap();
    v.del(Events::IN).unwrap();
    assert_seen(
        &v,
        Events::HUP | Events::IN | Events::RDHUP,
        "DEL IN after HUP",
    );
    assert!(v.del(Events::HUP).is_err());
    let w = make(Backend::Emulated, Events::OUT);
    w.add(Events::RDHUP).unwrap();
    assert_seen(&w, Events::RDHUP | Events::IN | Events::OUT, "ADD RDHUP");
    // OUT can still be cleared after RDHUP (the write direction is intact).
    w.del(Events::OUT).unwrap();
    assert_seen(&w, Events::RDHUP | Events::IN, "DEL OUT after RDHUP");
}

/// The Python epoll client: registers the inherited fd, then for each line on stdin
/// (the expected mask) waits — 10 s if something is expected, else 0 — and prints the
/// mask it saw.
const PY_EPOLL: &str = r#"
import select, sys
fd = int(sys.argv[1])
ep = select.epoll()
ep.register(fd, select.EPOLLIN | select.EPOLLOUT | select.EPOLLPRI | select.EPOLLRDHUP)
print("ready", flush=True)
for line in sys.stdin:
    timeout = 10 if int(line) else 0
    mask = 0
    for _, ev in ep.poll(timeout):
        mask |= ev
    print(mask & 0x201f, flush=True)
"#;

/// The Python selectors client: same protocol; prints selectors' READ(1)|WRITE(2).
const PY_SELECTORS: &str = r#"
import selectors, sys
fd = int(sys.argv[1])
sel = selectors.DefaultSelector()
sel.register(fd, selectors.EVENT_READ | selectors.EVENT_WRITE)
print("ready", flush=True)
for line in sys.stdin:
    timeout = 10 if int(line) else 0
    mask = 0
    for _, ev in sel.select(timeout):
        mask |= ev
    print(mask, flush=True)
"#;

/// What CPython's epoll-based selector reports for a poll mask `v` (it asks for
/// IN|OUT; any other bit counts as both READ and WRITE).
fn selectors_mask(v: Events) -> u32 {
    let r = v & (Events::IN | Events::OUT | Events::ERR | Events::HUP);
    let read = !(r - Events::OUT).is_empty();
    let write = !(r - Events::IN).is_empty();
    u32::from(read) | (u32::from(write) << 1)
}

/// Runs a Python client on a vpoll fd of backend `b`, stepping through masks.
fn python_client(b: Backend, script: &str, report: fn(Events) -> u32) {
    let v = Builder::new()
        .backend(b)
        .inherit_on_exec(true)
        .build()
        .unwrap();
    let mut child = match Command::new("python3")
        .args(["-c", script, &v.as_raw_fd().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipping: cannot run python3: {e}");
            return;
        }
    };
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || lines.next().expect("python exited early").unwrap();
    assert_eq!(next(), "ready");
    let steps = [
        Events::IN,
        Events::OUT,
        Events::IN | Events::OUT,
        Events::PRI,
        Events::empty(),
        Events::ERR,
        Events::RDHUP,
        Events::HUP,
    ];
    for logical in steps.into_iter().filter(|e| representable(b, *e)) {
        // Emulated's RDHUP/HUP are one-way; set them last (HUP after RDHUP is fine).
        if b == Backend::Emulated && logical.contains(Events::HUP) {
            v.add(logical).unwrap();
        } else {
            v.set(logical).unwrap();
        }
        let shown = visible(b, logical);
        let expect = report(shown);
        writeln!(stdin, "{expect}").unwrap();
        assert_eq!(next(), expect.to_string(), "{b}: python after {logical:?}");
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

#[test]
fn python_epoll_sees_the_events() {
    for b in backends() {
        python_client(b, PY_EPOLL, |v| v.bits());
    }
}

#[test]
fn python_selectors_sees_the_events() {
    for b in backends() {
        python_client(b, PY_SELECTORS, selectors_mask);
    }
}

#[test]
fn emulated_dup_shows_hup_once_the_original_is_closed() {
    // IN only: OUT is clear, so the peer holds the unread fill when it is closed.
    let v = make(Backend::Emulated, Events::IN);
    let dup = rustix::io::fcntl_dupfd_cloexec(&v, 0).unwrap();
    v.close().unwrap();
    let ep = common::epoll_watching(dup.as_fd(), false);
    let seen = common::epoll_once(&ep, common::SAFETY);
    assert_eq!(
        seen,
        Events::HUP | Events::IN | Events::RDHUP | Events::OUT | Events::ERR,
        "the peer is gone: hang-up; its unread fill no longer blocks OUT and resets (ERR)"
    );
}

/// Child body: SIGALRM every 20 µs at this thread, with a handler installed without
/// `SA_RESTART`, while every operation runs; none may fail with EINTR.
#[test]
fn eintr_child() {
    if !is_child("eintr_child") {
        return;
    }
    extern "C" fn on_alarm(_: libc::c_int) {
        HITS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    /// Signals delivered, to show the storm really hit this thread.
    static HITS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    // The handler only bumps an atomic (async-signal-safe); the timer signals only this
    // thread (SIGEV_THREAD_ID), so the harness's other thread never sees SIGALRM.
    on_alarm_without_restart(on_alarm);
    let _storm = ThreadAlarm::start(std::time::Duration::from_micros(20));
    for b in backends() {
        let v = make(b, Events::empty());
        for i in 0..3000u32 {
            let mask = [
                Events::IN,
                Events::OUT,
                Events::PRI,
                Events::IN | Events::OUT,
            ][i as usize % 4];
            v.set(mask)
                .unwrap_or_else(|e| panic!("{b} set {mask:?}: {e}"));
            assert_eq!(v.events().unwrap(), visible(b, mask), "{b}");
            v.del(mask)
                .unwrap_or_else(|e| panic!("{b} del {mask:?}: {e}"));
            v.add(Events::IN).unwrap();
            v.del(Events::IN).unwrap();
        }
        v.close().unwrap();
    }
    let hits = HITS.load(std::sync::atomic::Ordering::Relaxed);
    assert!(hits > 100, "only {hits} signals arrived");
    println!("eintr child ok ({hits} signals)");
}

#[test]
fn signals_without_sa_restart_never_surface_as_errors() {
    let out = child_output("eintr_child", &[], CHILD_PATIENCE);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("eintr child ok"),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
