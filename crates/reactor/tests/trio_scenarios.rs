//! Trio's epoll scenarios against real kernel objects: busy waiters, notify_closing,
//! unnotified closes, dups, cancellation, HUP/ERR, persistent registrations, nesting.
//!
//! Here a private reactor is turned by hand and polled with recording wakers, so each
//! step is observed exactly. The same scenarios as tasks on the shared reactor, under
//! greenfd-rt, tokio (multi-thread and current-thread) and smol, are in
//! `crates/rt/tests/runtimes.rs`.

use greenfd_reactor::{Error, Reactor};
use std::future::Future;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// A waker that records whether it was woken.
#[derive(Default)]
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

impl Flag {
    fn waker() -> (Arc<Flag>, Waker) {
        let f = Arc::new(Flag::default());
        (Arc::clone(&f), Waker::from(f))
    }
    fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

fn poll_once<F: Future>(f: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(waker))
}

/// Turns the reactor until `flag` is woken; fails (not hangs) after 10 s.
fn turn_until(reactor: &Reactor, flag: &Flag) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !flag.take() {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no wake-up within 10 s");
        reactor.turn(Some(left)).unwrap();
    }
}

/// The registrations in the epoll instance: (target fd, event mask) from /proc fdinfo.
fn epoll_entries(reactor: &Reactor) -> Vec<(RawFd, u32)> {
    let path = format!("/proc/self/fdinfo/{}", reactor.as_fd().as_raw_fd());
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("tfd:")?;
            let mut it = rest.split_whitespace();
            let fd = it.next()?.parse().ok()?;
            assert_eq!(it.next()?, "events:");
            let ev = u32::from_str_radix(it.next()?, 16).ok()?;
            Some((fd, ev))
        })
        .collect()
}

/// The kernel mask of `fd`'s registration, if any; only report bits (no mode bits).
fn armed_bits(reactor: &Reactor, fd: RawFd) -> Option<u32> {
    epoll_entries(reactor)
        .into_iter()
        .find(|e| e.0 == fd)
        .map(|e| e.1 & 0xffff)
}

/// Fills `s`'s send buffer so a writer has to wait.
fn fill(s: &UnixStream) {
    s.set_nonblocking(true).unwrap();
    let buf = [0u8; 65536];
    while (&*s).write(&buf).is_ok() {}
}

#[test]
fn second_reader_gets_busy_resource_at_once() {
    let reactor = Reactor::new().unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    let (f1, w1) = Flag::waker();
    let mut r1 = pin!(reactor.wait_readable(b.as_fd()));
    assert!(poll_once(r1.as_mut(), &w1).is_pending());
    let mut r2 = pin!(reactor.wait_readable(b.as_fd()));
    assert!(matches!(
        poll_once(r2.as_mut(), &w1),
        Poll::Ready(Err(Error::BusyResource))
    ));
    // A writer on the same fd is a different direction: allowed, and ready at once.
    let (fw, ww) = Flag::waker();
    let mut w = pin!(reactor.wait_writable(b.as_fd()));
    assert!(poll_once(w.as_mut(), &ww).is_pending());
    turn_until(&reactor, &fw);
    assert!(matches!(poll_once(w.as_mut(), &ww), Poll::Ready(Ok(()))));
    let s = reactor.statistics();
    assert_eq!((s.tasks_waiting_read, s.tasks_waiting_write), (1, 0));
    // The writer's wake re-armed the reader: it still gets its data.
    a.write_all(b"x").unwrap();
    turn_until(&reactor, &f1);
    assert!(matches!(poll_once(r1.as_mut(), &w1), Poll::Ready(Ok(()))));
    // Once the first reader finished, a new reader is welcome.
    let mut r3 = pin!(reactor.wait_readable(b.as_fd()));
    let (f3, w3) = Flag::waker();
    assert!(poll_once(r3.as_mut(), &w3).is_pending());
    turn_until(&reactor, &f3);
    assert!(matches!(poll_once(r3.as_mut(), &w3), Poll::Ready(Ok(()))));
}

#[test]
fn notify_closing_wakes_reader_and_writer_with_closed() {
    let reactor = Reactor::new().unwrap();
    let (_a, b) = UnixStream::pair().unwrap();
    fill(&b);
    let (fr, wr) = Flag::waker();
    let (fw, ww) = Flag::waker();
    let mut r = pin!(reactor.wait_readable(b.as_fd()));
    let mut w = pin!(reactor.wait_writable(b.as_fd()));
    assert!(poll_once(r.as_mut(), &wr).is_pending());
    assert!(poll_once(w.as_mut(), &ww).is_pending());
    let s = reactor.statistics();
    assert_eq!(
        (s.tasks_waiting_read, s.tasks_waiting_write, s.armed_fds),
        (1, 1, 1)
    );
    assert!(armed_bits(&reactor, b.as_raw_fd()).is_some());
    reactor.notify_closing(b.as_fd()).unwrap();
    assert!(fr.take() && fw.take(), "both waiters woken");
    assert!(matches!(
        poll_once(r.as_mut(), &wr),
        Poll::Ready(Err(Error::Closed))
    ));
    assert!(matches!(
        poll_once(w.as_mut(), &ww),
        Poll::Ready(Err(Error::Closed))
    ));
    let s = reactor.statistics();
    assert_eq!(
        (
            s.tasks_waiting_read,
            s.tasks_waiting_write,
            s.registered_fds
        ),
        (0, 0, 0)
    );
    assert_eq!(
        armed_bits(&reactor, b.as_raw_fd()),
        None,
        "registration removed"
    );
}

/// Replaces the file behind `target` with `with` (dup2): an unnotified close of the
/// old file and reuse of its number, in one atomic step (no race with other tests'
/// fd allocation).
fn reuse_number(with: &OwnedFd, target: RawFd) {
    // SAFETY: the test owns `target`; taking ownership briefly lets dup2 replace it, and
    // `into_raw_fd` gives the number back without closing it.
    let mut t = unsafe { OwnedFd::from_raw_fd(target) };
    rustix::io::dup2(with, &mut t).unwrap();
    let _ = t.into_raw_fd();
}

#[test]
fn fd_closed_while_registered_and_number_reused_works_at_once() {
    let reactor = Reactor::new().unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    let raw = b.into_raw_fd();
    // SAFETY: `raw` stays open (its file is replaced, never closed) until the end.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };

    // 1. A wait that completed leaves the registration disarmed in the kernel.
    let (f, w) = Flag::waker();
    let mut r = pin!(reactor.wait_readable(fd));
    assert!(poll_once(r.as_mut(), &w).is_pending());
    a.write_all(b"x").unwrap();
    turn_until(&reactor, &f);
    assert!(matches!(poll_once(r.as_mut(), &w), Poll::Ready(Ok(()))));
    assert_eq!(
        armed_bits(&reactor, raw),
        Some(0),
        "stays in the interest list, disarmed"
    );

    // The number now names a new socket; the old one is closed behind our back.
    let (mut c, d) = UnixStream::pair().unwrap();
    reuse_number(&OwnedFd::from(d), raw);
    let mut r = pin!(reactor.wait_readable(fd));
    assert!(
        poll_once(r.as_mut(), &w).is_pending(),
        "MOD gave ENOENT, ADD worked"
    );
    c.write_all(b"y").unwrap();
    turn_until(&reactor, &f);
    assert!(matches!(poll_once(r.as_mut(), &w), Poll::Ready(Ok(()))));

    // 2. Closed while a task is still waiting: the waiter is cancelled cleanly, and the
    //    reused number works at once.
    let mut r = Box::pin(reactor.wait_readable(fd));
    let mut buf = [0u8; 1];
    let mut dd = UnixStream::from(fd.try_clone_to_owned().unwrap());
    dd.read_exact(&mut buf).unwrap();
    drop(dd);
    assert!(poll_once(r.as_mut(), &w).is_pending());
    let (mut e, g) = UnixStream::pair().unwrap();
    reuse_number(&OwnedFd::from(g), raw);
    drop(r); // DEL on the new file: ENOENT, ignored
    let s = reactor.statistics();
    assert_eq!((s.tasks_waiting_read, s.armed_fds), (0, 0));
    let mut r = pin!(reactor.wait_readable(fd));
    assert!(poll_once(r.as_mut(), &w).is_pending());
    e.write_all(b"z").unwrap();
    turn_until(&reactor, &f);
    assert!(matches!(poll_once(r.as_mut(), &w), Poll::Ready(Ok(()))));
    // SAFETY: we own `raw` and nothing uses it after this.
    drop(unsafe { OwnedFd::from_raw_fd(raw) });
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage writes into the zeroed struct we pass; RUSAGE_THREAD is valid.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    assert_eq!(rc, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[test]
fn dup_closed_while_registered_does_not_busy_loop() {
    let reactor = Reactor::new().unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    // The literal case: the original stays registered while a dup is closed.
    let (f, w) = Flag::waker();
    let mut orig = pin!(reactor.wait_readable(b.as_fd()));
    assert!(poll_once(orig.as_mut(), &w).is_pending());
    drop(b.try_clone().unwrap());

    // The hard case: a dup is registered (armed), then closed behind our back while the
    // original keeps the file alive, and its waiter is cancelled. The kernel entry
    // (dup number, file) can no longer be removed by number.
    let dup_raw = b.try_clone().unwrap().into_raw_fd();
    // SAFETY: `dup_raw` is open until the close below; the future is dropped right after.
    let dup_fd = unsafe { BorrowedFd::borrow_raw(dup_raw) };
    let (fd_flag, wd) = Flag::waker();
    let mut on_dup = Box::pin(reactor.wait_readable(dup_fd));
    assert!(poll_once(on_dup.as_mut(), &wd).is_pending());
    // SAFETY: closing a number we own; the waiter on it is dropped just after (the
    // unnotified close this test is about).
    drop(unsafe { OwnedFd::from_raw_fd(dup_raw) });
    drop(on_dup);

    // Make the file permanently readable and hung up: a level-triggered stale entry
    // would now report on every epoll_wait.
    a.write_all(b"data").unwrap();
    drop(a);
    turn_until(&reactor, &f);
    assert!(matches!(poll_once(orig.as_mut(), &w), Poll::Ready(Ok(()))));
    assert!(!fd_flag.take(), "the cancelled waiter is never woken");

    let wall = Instant::now();
    let cpu = thread_cpu();
    let mut turns = 0u32;
    while wall.elapsed() < Duration::from_secs(1) {
        reactor.turn(Some(Duration::from_millis(100))).unwrap();
        turns += 1;
    }
    let (cpu, wall) = (thread_cpu() - cpu, wall.elapsed());
    let fraction = cpu.as_secs_f64() / wall.as_secs_f64();
    eprintln!(
        "dup test: {turns} turns, cpu {cpu:?} over wall {wall:?} = {:.2}%",
        fraction * 100.0
    );
    assert!(
        fraction < 0.2,
        "busy loop: {:.1}% CPU over {wall:?} ({turns} turns)",
        fraction * 100.0
    );

    // The next wait on the still-open original works.
    let mut again = pin!(reactor.wait_readable(b.as_fd()));
    assert!(poll_once(again.as_mut(), &w).is_pending());
    turn_until(&reactor, &f);
    assert!(matches!(poll_once(again.as_mut(), &w), Poll::Ready(Ok(()))));
}

#[test]
fn cancellation_leaves_no_armed_registration() {
    let reactor = Reactor::new().unwrap();
    let (_a, b) = UnixStream::pair().unwrap();
    fill(&b);
    let (_, w) = Flag::waker();
    {
        let mut r = pin!(reactor.wait_readable(b.as_fd()));
        let mut wr = pin!(reactor.wait_writable(b.as_fd()));
        let mut p = pin!(reactor.wait_priority(b.as_fd()));
        assert!(poll_once(r.as_mut(), &w).is_pending());
        assert!(poll_once(wr.as_mut(), &w).is_pending());
        assert!(poll_once(p.as_mut(), &w).is_pending());
        let bits = armed_bits(&reactor, b.as_raw_fd()).expect("registered");
        assert_ne!(bits & libc::EPOLLIN as u32, 0);
        assert_ne!(bits & libc::EPOLLOUT as u32, 0);
        assert_ne!(bits & libc::EPOLLPRI as u32, 0);
        let s = reactor.statistics();
        assert_eq!(
            (
                s.tasks_waiting_read,
                s.tasks_waiting_write,
                s.tasks_waiting_priority
            ),
            (1, 1, 1)
        );
    }
    let s = reactor.statistics();
    assert_eq!(
        (
            s.tasks_waiting_read,
            s.tasks_waiting_write,
            s.tasks_waiting_priority,
            s.armed_fds
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(
        armed_bits(&reactor, b.as_raw_fd()),
        None,
        "no registration left in the kernel"
    );
    // Partial cancellation re-arms only what is still wanted.
    let mut r = pin!(reactor.wait_readable(b.as_fd()));
    assert!(poll_once(r.as_mut(), &w).is_pending());
    {
        let mut wr = pin!(reactor.wait_writable(b.as_fd()));
        assert!(poll_once(wr.as_mut(), &w).is_pending());
    }
    let bits = armed_bits(&reactor, b.as_raw_fd()).unwrap();
    assert_eq!(bits & libc::EPOLLOUT as u32, 0, "writer's interest gone");
    assert_ne!(bits & libc::EPOLLIN as u32, 0, "reader still armed");
}

#[test]
fn hangup_wakes_reader_and_writer() {
    let reactor = Reactor::new().unwrap();
    let (a, b) = UnixStream::pair().unwrap();
    fill(&b);
    let (fr, wr) = Flag::waker();
    let (fw, ww) = Flag::waker();
    let mut r = pin!(reactor.wait_readable(b.as_fd()));
    let mut w = pin!(reactor.wait_writable(b.as_fd()));
    assert!(poll_once(r.as_mut(), &wr).is_pending());
    assert!(poll_once(w.as_mut(), &ww).is_pending());
    drop(a);
    turn_until(&reactor, &fr);
    assert!(fw.take(), "writer woken by the same HUP report");
    assert!(matches!(poll_once(r.as_mut(), &wr), Poll::Ready(Ok(()))));
    assert!(matches!(poll_once(w.as_mut(), &ww), Poll::Ready(Ok(()))));
}

#[test]
fn error_wakes_reader_and_writer() {
    let reactor = Reactor::new().unwrap();
    // The write end of a full pipe: writable never, readable never; closing the read
    // end raises EPOLLERR on it.
    let (rd, wr_end) = rustix::pipe::pipe().unwrap();
    rustix::fs::fcntl_setfl(&wr_end, rustix::fs::OFlags::NONBLOCK).unwrap();
    while rustix::io::write(&wr_end, &[0u8; 65536]).is_ok() {}
    let (fr, wr) = Flag::waker();
    let (fw, ww) = Flag::waker();
    let mut r = pin!(reactor.wait_readable(wr_end.as_fd()));
    let mut w = pin!(reactor.wait_writable(wr_end.as_fd()));
    assert!(poll_once(r.as_mut(), &wr).is_pending());
    assert!(poll_once(w.as_mut(), &ww).is_pending());
    drop(rd);
    turn_until(&reactor, &fw);
    assert!(fr.take(), "reader woken by the same ERR report");
    assert!(matches!(poll_once(r.as_mut(), &wr), Poll::Ready(Ok(()))));
    assert!(matches!(poll_once(w.as_mut(), &ww), Poll::Ready(Ok(()))));
}

#[test]
fn bad_fd_is_an_io_error_not_a_hang() {
    let reactor = Reactor::new().unwrap();
    let file = std::fs::File::open("/proc/self/status").unwrap();
    let (_, w) = Flag::waker();
    let mut r = pin!(reactor.wait_readable(file.as_fd()));
    match poll_once(r.as_mut(), &w) {
        Poll::Ready(Err(Error::Io(e))) => assert_eq!(e.raw_os_error(), Some(libc::EPERM)),
        other => panic!("expected EPERM, got {other:?}"),
    }
    assert_eq!(reactor.statistics().tasks_waiting_read, 0);
}

#[test]
fn persistent_registration_clears_readiness_only_at_the_same_tick() {
    let reactor = Reactor::new().unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    let reg = reactor.register(b.as_fd()).unwrap();
    assert_eq!(reactor.statistics().persistent_registrations, 1);
    let (f, w) = Flag::waker();
    let mut cx = Context::from_waker(&w);
    // The kernel reports the initial state of an edge-triggered ADD on the first turn.
    assert!(
        reg.poll_write_ready(&mut cx).is_pending(),
        "nothing known before a turn"
    );
    turn_until(&reactor, &f);
    assert!(
        reg.poll_write_ready(&mut cx).is_ready(),
        "writable after the first report"
    );
    assert!(reg.poll_read_ready(&mut cx).is_pending());
    a.write_all(b"1").unwrap();
    turn_until(&reactor, &f);
    let Poll::Ready(Ok(ev1)) = reg.poll_read_ready(&mut cx) else {
        panic!("readable")
    };
    // A newer report arrives before the task clears what it saw.
    a.write_all(b"2").unwrap();
    reactor.turn(Some(Duration::from_secs(10))).unwrap();
    reg.clear_readiness(ev1);
    let Poll::Ready(Ok(ev2)) = reg.poll_read_ready(&mut cx) else {
        panic!("a stale clear must not lose the newer edge")
    };
    assert_ne!(ev1, ev2);
    reg.clear_readiness(ev2);
    assert!(
        reg.poll_read_ready(&mut cx).is_pending(),
        "a current clear takes effect"
    );
    // Hang-up is sticky.
    drop(a);
    turn_until(&reactor, &f);
    let Poll::Ready(Ok(ev)) = reg.poll_read_ready(&mut cx) else {
        panic!("hup")
    };
    reg.clear_readiness(ev);
    assert!(
        reg.poll_read_ready(&mut cx).is_ready(),
        "READ_CLOSED is never cleared"
    );
    reg.deregister(b.as_fd()).unwrap();
    assert_eq!(reactor.statistics().persistent_registrations, 0);
    assert_eq!(armed_bits(&reactor, b.as_raw_fd()), None);
}

#[test]
fn waker_interrupts_turn_from_another_thread() {
    let reactor = Reactor::new().unwrap();
    let waker = reactor.waker();
    let t = std::thread::spawn(move || {
        for _ in 0..100 {
            waker.wake().unwrap();
        }
    });
    // Blocks until the other thread's first wake; a lost wake would hang here, so the
    // safety-net timeout makes that a failure instead.
    let start = Instant::now();
    reactor.turn(Some(Duration::from_secs(30))).unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "woken, not timed out"
    );
    t.join().unwrap();
}

#[test]
fn python_epoll_can_wait_on_the_reactor_fd() {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    if Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_err()
    {
        eprintln!("skip: python3 not found");
        return;
    }
    let reactor = Reactor::new().unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    let (_, w) = Flag::waker();
    let mut r = pin!(reactor.wait_readable(b.as_fd()));
    assert!(poll_once(r.as_mut(), &w).is_pending());
    let epfd = reactor.as_fd().as_raw_fd();
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(
            "import select, sys\n\
             outer = select.epoll()\n\
             outer.register(3, select.EPOLLIN)\n\
             print('waiting', flush=True)\n\
             ev = outer.poll(20)\n\
             print('ready' if ev else 'timeout', flush=True)\n",
        )
        .stdout(Stdio::piped());
    // SAFETY: between fork and exec only dup2/fcntl run (async-signal-safe); they put
    // the reactor's epoll fd at 3 without close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself would keep close-on-exec set, so clear the flag instead.
            let rc = if epfd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(epfd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut line = [0u8; 8];
    out.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"waiting\n");
    a.write_all(b"x").unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        rest.trim(),
        "ready",
        "python saw the reactor's epoll fd become readable"
    );
}

#[test]
fn tokio_can_wait_on_the_reactor_fd() {
    use std::os::fd::RawFd;
    use tokio::io::unix::AsyncFd;
    /// The reactor's epoll fd number, for tokio's `AsRawFd` bound.
    struct EpollFd(RawFd);
    impl std::os::fd::AsRawFd for EpollFd {
        fn as_raw_fd(&self) -> RawFd {
            self.0
        }
    }
    let reactor = Reactor::new().unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    let (_, w) = Flag::waker();
    let mut r = pin!(reactor.wait_readable(b.as_fd()));
    assert!(poll_once(r.as_mut(), &w).is_pending());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        // SAFETY: the epoll fd outlives `outer`, which is deregistered (dropped) at the
        // end of this block, before the reactor is used or closed again.
        let outer = unsafe {
            AsyncFd::register_with_interest(
                EpollFd(reactor.as_fd().as_raw_fd()),
                tokio::io::Interest::READABLE,
            )
        }
        .unwrap();
        a.write_all(b"x").unwrap();
        let guard = tokio::time::timeout(Duration::from_secs(10), outer.readable())
            .await
            .expect("tokio saw the epoll fd readable")
            .unwrap();
        drop(guard);
        // Deregister from tokio before the fd is used again by us.
        drop(outer);
    });
    // Our own turn then delivers the report to the waiting future.
    let (f, w2) = Flag::waker();
    assert!(poll_once(r.as_mut(), &w2).is_pending());
    turn_until(&reactor, &f);
    assert!(matches!(poll_once(r.as_mut(), &w2), Poll::Ready(Ok(()))));
}

#[test]
fn borrowed_waits_and_persistent_registrations_do_not_hijack_each_other() {
    let reactor = Reactor::new().unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    let (f, w) = Flag::waker();
    // A completed borrowed wait leaves a disarmed registration behind ...
    let mut r = pin!(reactor.wait_readable(b.as_fd()));
    assert!(poll_once(r.as_mut(), &w).is_pending());
    a.write_all(b"1").unwrap();
    turn_until(&reactor, &f);
    assert!(matches!(poll_once(r.as_mut(), &w), Poll::Ready(Ok(()))));
    assert_eq!(armed_bits(&reactor, b.as_raw_fd()), Some(0));
    // ... which a persistent registration takes over (ADD says EEXIST, MOD works).
    let reg = reactor.register(b.as_fd()).unwrap();
    let mut cx = Context::from_waker(&w);
    assert!(reg.poll_read_ready(&mut cx).is_pending());
    turn_until(&reactor, &f);
    assert!(
        reg.poll_read_ready(&mut cx).is_ready(),
        "the pending byte is reported"
    );
    // A borrowed wait on the owned fd would turn it one-shot: refused.
    let mut r2 = pin!(reactor.wait_readable(b.as_fd()));
    assert!(matches!(
        poll_once(r2.as_mut(), &w),
        Poll::Ready(Err(Error::BusyResource))
    ));
    reg.deregister(b.as_fd()).unwrap();
    // While a borrowed wait is pending, registering the fd is refused.
    let (_c, d) = UnixStream::pair().unwrap();
    let mut r3 = pin!(reactor.wait_readable(d.as_fd()));
    assert!(poll_once(r3.as_mut(), &w).is_pending());
    assert!(matches!(
        reactor.register(d.as_fd()),
        Err(Error::BusyResource)
    ));
}
