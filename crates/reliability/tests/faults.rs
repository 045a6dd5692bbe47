//! Fault injection across the toolkit. Each fault ends in a clear error for the affected
//! party only, and everything else keeps working with nothing lost. Faults that change
//! the whole process (a lowered fd limit, a signal storm, `fork`, an aborted FUSE
//! connection) run in a re-executed child of this test binary. The tests with an engine
//! run on both of its I/O drivers (`<test>::epoll`, `<test>::uring`).

mod common;
use common::{PATIENCE, Running};

use greenfd_engine::{
    Config, ConnId, Ctx, DisconnectReason, Echo, Engine, Frame, Handler, LengthPrefixed, Lines,
};
use greenfd_reactor::Reactor;
use greenfd_reliability::{Rng, fnv1a, is_root, open_fds, set_nofile};
use greenfd_test_support::{
    CHILD_ENV, CHILD_PATIENCE, IO_ENV, IoDriver, ThreadAlarm, child_command, child_io, config_on,
    epoll_on, epoll_wait, exhaust_fds, ip, is_child, on_alarm_without_restart, on_both_drivers,
    private_netns, run_child_on, run_with_timeout, tagged_lines, user_space_backends, wait_until,
    which,
};
use greenfd_vpoll::{Backend, Builder, Events, Op, VpollFd};
use rustix::event::epoll;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Sender};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The user-space vpoll backends available here; fails if there is none at all (Emulated
/// needs nothing but a socketpair).
fn required_backends() -> Vec<Backend> {
    let all = user_space_backends();
    assert!(!all.is_empty(), "no user-space vpoll backend at all");
    all
}

/// Echoes every frame and reports disconnect reasons.
struct Reporter {
    /// Where disconnects go.
    tx: Sender<(ConnId, DisconnectReason)>,
}

impl Handler for Reporter {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, _id: ConnId, frame: Frame<'_>) {
        if ctx.send(frame.bytes()).is_err() {
            ctx.close();
        }
    }
    fn on_disconnect(&mut self, _ctx: &mut Ctx<'_>, id: ConnId, reason: &DisconnectReason) {
        self.tx.send((id, reason.clone())).ok();
    }
}

/// A checksummed length-prefixed frame: `len u32 | conn u32 | seq u64 | bytes | fnv u64`.
fn checked_frame(rng: &mut Rng, conn: u32, seq: u64, max_body: usize) -> Vec<u8> {
    let n = rng.index(max_body + 1);
    let mut payload = Vec::with_capacity(20 + n);
    payload.extend_from_slice(&conn.to_be_bytes());
    payload.extend_from_slice(&seq.to_be_bytes());
    payload.extend_from_slice(&rng.bytes(n));
    let sum = fnv1a(&payload);
    payload.extend_from_slice(&sum.to_be_bytes());
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&payload);
    frame
}

/// Reads one checked frame and verifies its checksum, connection and sequence number;
/// returns its size.
fn read_checked(s: &mut TcpStream, conn: u32, seq: u64) -> std::io::Result<usize> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut payload)?;
    let (body, sum) = payload.split_at(payload.len() - 8);
    assert_eq!(
        fnv1a(body).to_be_bytes(),
        sum,
        "checksum mismatch on conn {conn}"
    );
    assert_eq!(
        &body[..4],
        &conn.to_be_bytes(),
        "frame of another connection"
    );
    assert_eq!(
        &body[4..12],
        &seq.to_be_bytes(),
        "frame lost or reordered on conn {conn}"
    );
    Ok(4 + payload.len())
}

/// A client that connects, waits at `go` (if any), sends `frames` checked frames (a
/// window of them in flight) and verifies every echo; returns the bytes verified.
fn checked_client(
    addr: SocketAddr,
    conn: u32,
    frames: u64,
    seed: u64,
    go: Option<&std::sync::Barrier>,
) -> u64 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.set_nodelay(true).unwrap();
    if let Some(go) = go {
        go.wait();
    }
    let mut rng = Rng::new(seed);
    let (mut sent, mut got, mut bytes) = (0u64, 0u64, 0u64);
    while got < frames {
        while sent < frames && sent - got < 8 {
            s.write_all(&checked_frame(&mut rng, conn, sent, 2048))
                .unwrap();
            sent += 1;
        }
        bytes += read_checked(&mut s, conn, got).unwrap() as u64;
        got += 1;
        PROGRESS[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    bytes
}

// ---------------------------------------------------------------------------------------
// EMFILE: a lowered RLIMIT_NOFILE.

/// With the fd table full, every call that needs a new fd fails with a clear EMFILE
/// (vpoll on each backend, the C ABI, a new reactor, a new runtime), while everything
/// created before keeps working; the engine pauses accepting, keeps serving its
/// connection, and serves the pending client once fds are free.
fn emfile_fails_new_fds_clearly_and_spares_existing_ones(io: IoDriver) {
    let out = run_child_on("emfile_child", io, CHILD_PATIENCE);
    for l in tagged_lines(&out, "OK ") {
        eprintln!("{l}");
    }
    assert!(out.contains("OK emfile"), "{out}");
}

/// The child half of the EMFILE test.
#[test]
fn emfile_child() {
    if !is_child("emfile_child") {
        return;
    }
    let io = child_io();
    let backends = required_backends();
    // Created before the limit: all of these must keep working under it.
    let old_vpolls: Vec<VpollFd> = backends
        .iter()
        .map(|&b| Builder::new().backend(b).build().unwrap())
        .collect();
    let (tx, rx) = mpsc::channel();
    let engine = Running::start(Lines::default(), Reporter { tx }, config_on(io));
    let mut old_client = engine.connect();
    old_client.write_all(b"before\n").unwrap();
    let mut buf = [0u8; 7];
    old_client.read_exact(&mut buf).unwrap();
    let reactor = Reactor::new().unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let reg = reactor.register(b.as_fd()).unwrap();
    let queue = greenfd_taps::EventQueue::new().unwrap();
    let source = greenfd_taps::Source::new(Events::empty());
    let tap = source.subscribe(&queue, Events::IN, 9).unwrap();

    let limit = open_fds().unwrap() as u64 + 8;
    assert_eq!(set_nofile(limit).unwrap(), limit);
    let mut hog = exhaust_fds();
    // Every new fd fails with EMFILE, as a typed error.
    for &backend in &backends {
        let err = Builder::new().backend(backend).build().unwrap_err();
        assert_eq!(err.raw_os_error(), libc::EMFILE, "{backend}: {err}");
        println!("OK {backend} create under EMFILE: {err}");
    }
    assert_eq!(vpoll::vpoll_create(0, libc::FD_CLOEXEC), -1);
    assert_eq!(
        std::io::Error::last_os_error().raw_os_error(),
        Some(libc::EMFILE)
    );
    let err = Reactor::new().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
    let err = greenfd_rt::block_on(async {}).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EMFILE), "{err}");
    let err = greenfd_taps::EventQueue::new().unwrap_err();
    let emfile = match &err {
        greenfd_taps::Error::Io(e) => e.raw_os_error() == Some(libc::EMFILE),
        greenfd_taps::Error::Vpoll(e) => e.raw_os_error() == libc::EMFILE,
        _ => false,
    };
    assert!(emfile, "EventQueue::new under EMFILE: {err:?}");
    // The queue made before still delivers.
    source.add(Events::IN);
    let mut events = Vec::new();
    queue.wait(&mut events, Some(PATIENCE)).unwrap();
    assert_eq!(
        events,
        [greenfd_taps::Event {
            token: 9,
            events: Events::IN
        }]
    );
    // What existed keeps working.
    for v in &old_vpolls {
        v.add(Events::IN).unwrap();
        assert!(v.events().unwrap().contains(Events::IN));
        v.del(Events::IN).unwrap();
    }
    a.write_all(b"x").unwrap();
    let deadline = Instant::now() + PATIENCE;
    let mut cx = Context::from_waker(Waker::noop());
    while !matches!(reg.poll_read_ready(&mut cx), Poll::Ready(Ok(_))) {
        assert!(Instant::now() < deadline, "registration never reported");
        reactor.turn(Some(Duration::from_millis(100))).unwrap();
    }
    // A new client takes our last fd; the engine cannot accept it and pauses.
    hog.pop();
    let mut new_client = engine.connect();
    wait_until("accept to fail with EMFILE", || {
        engine.handle.stats().accept_pauses >= 1
    });
    old_client.write_all(b"during\n").unwrap();
    old_client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"during\n");
    assert_eq!(engine.handle.stats().accepted, 1);
    // Fds come back: the pending client is served, creation works again.
    drop(hog);
    new_client.write_all(b"after!\n").unwrap();
    new_client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"after!\n");
    for &backend in &backends {
        Builder::new().backend(backend).build().unwrap();
    }
    assert!(
        rx.try_recv().is_err(),
        "a connection was dropped under EMFILE"
    );
    println!(
        "OK emfile: limit {limit}, accept paused {} times, old connection and fds kept working",
        engine.handle.stats().accept_pauses
    );
    reg.deregister(b.as_fd()).unwrap();
    tap.close();
    engine.stop();
}

// ---------------------------------------------------------------------------------------
// EINTR storm: SIGALRM every millisecond.

/// Signals delivered during the storm, per role (engine, rt, vpoll, other).
static HITS: [std::sync::atomic::AtomicU64; 4] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 4];

thread_local! {
    /// The storm role of this thread (index into [`HITS`]).
    static ROLE: std::cell::Cell<usize> = const { std::cell::Cell::new(3) };
}

/// The SIGALRM handler: counts the signal for the interrupted thread's role. Only
/// atomics and a const-initialized thread-local: async-signal-safe.
extern "C" fn on_alarm(_: libc::c_int) {
    let role = ROLE.with(|r| r.get());
    HITS[role].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Blocks or unblocks SIGALRM for the calling thread (new threads inherit the mask).
fn alarm_blocked(blocked: bool) {
    // SAFETY: plain sigset manipulation on a local set, then pthread_sigmask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGALRM);
        let how = if blocked {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        assert_eq!(libc::pthread_sigmask(how, &set, std::ptr::null_mut()), 0);
    }
}

/// Makes the calling thread a storm target with role `role`: SIGALRM unblocked and
/// delivered to this very thread every millisecond (see [`ThreadAlarm`]).
fn storm_target(role: usize) -> ThreadAlarm {
    ROLE.with(|r| r.set(role));
    alarm_blocked(false);
    ThreadAlarm::start(Duration::from_millis(1))
}

/// Signals the thread with role `role` has taken so far.
fn hits(role: usize) -> u64 {
    HITS[role].load(std::sync::atomic::Ordering::Relaxed)
}

/// Signals each storm target must take before its workload may stop.
const STORM_MIN_HITS: u64 = 100;

/// Progress of the storm's workloads (engine frames, rt bytes, vpoll cycles), for the
/// report printed if the child is slow.
static PROGRESS: [std::sync::atomic::AtomicU64; 3] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 3];

/// Environment variable naming the vpoll backends the storm child exercises.
const STORM_BACKENDS_ENV: &str = "GREENFD_STORM_BACKENDS";

/// Runs the storm child with vpoll on `backends` and its engine on `io`, and returns its
/// report line.
fn run_storm(backends: &[Backend], io: IoDriver) -> String {
    let names: Vec<&str> = backends.iter().map(|b| b.name()).collect();
    let mut cmd = child_command("eintr_storm_child").unwrap();
    cmd.env(STORM_BACKENDS_ENV, names.join(","))
        .env(IO_ENV, io.as_str());
    let out = run_with_timeout(&mut cmd, CHILD_PATIENCE).expect("storm child hung");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "storm child ({names:?}) failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = tagged_lines(&stdout, "OK storm");
    assert_eq!(ok.len(), 1, "{stdout}");
    ok[0].to_owned()
}

/// Under SIGALRM every millisecond (no `SA_RESTART`) aimed at each component's thread,
/// the engine, the runtime's reactor waits and timers, and vpoll ctl/events on every
/// available backend keep working and lose nothing: every echoed byte checksummed, every streamed byte in
/// order, every ADD seen by the reactor.
fn eintr_storm_loses_nothing(io: IoDriver) {
    eprintln!("{}", run_storm(&required_backends(), io));
}

/// The child half of the EINTR storm.
#[test]
fn eintr_storm_child() {
    if !is_child("eintr_storm_child") {
        return;
    }
    // Every thread starts with SIGALRM blocked; the targets unblock it for themselves.
    alarm_blocked(true);
    let wanted = std::env::var(STORM_BACKENDS_ENV).unwrap_or_default();
    let backends: Vec<Backend> = wanted
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|n| n.parse().unwrap())
        .collect();
    // Without SA_RESTART, so blocking syscalls in the targets fail with EINTR.
    on_alarm_without_restart(on_alarm);

    // Engine: its reactor thread takes the signals; clients (blocked) check every byte.
    let engine = {
        let engine = Engine::bind_with(
            "127.0.0.1:0".parse().unwrap(),
            LengthPrefixed::u32(),
            Echo,
            config_on(child_io()),
        )
        .unwrap();
        let (addr, handle) = (engine.local_addr(), engine.handle());
        let t = std::thread::spawn(move || {
            let _storm = storm_target(0);
            engine.run()
        });
        Running {
            addr,
            handle,
            thread: Some(t),
        }
    };
    let addr = engine.addr;
    let clients: Vec<JoinHandle<u64>> = (0..8u32)
        .map(|c| {
            std::thread::spawn(move || {
                let mut total = 0;
                let mut round = 0;
                while total == 0 || hits(0) < STORM_MIN_HITS {
                    total += checked_client(addr, c, 100, u64::from(c) << 32 | round, None);
                    round += 1;
                }
                total
            })
        })
        .collect();

    // The runtime: a task reads a byte stream from a pipe-like socket while a timer task
    // ticks; the writer (blocked) sends a known pattern.
    let rt = std::thread::spawn(|| {
        let storm = storm_target(1);
        let (r, mut w) = UnixStream::pair().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let writer = std::thread::spawn(move || {
            alarm_blocked(true);
            let mut pos = 0u64;
            let mut chunk = vec![0u8; 16 * 1024];
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                for b in chunk.iter_mut() {
                    *b = (pos.wrapping_mul(31) >> 3) as u8;
                    pos += 1;
                }
                if w.write_all(&chunk).is_err() {
                    break; // the reader has all it needs and closed its end
                }
            }
            pos
        });
        let (read, ticks) = greenfd_rt::block_on(async {
            let ticks = std::rc::Rc::new(std::cell::Cell::new(0u64));
            let ticker = greenfd_rt::spawn({
                let ticks = ticks.clone();
                async move {
                    loop {
                        greenfd_rt::sleep(Duration::from_millis(1)).await;
                        ticks.set(ticks.get() + 1);
                    }
                }
            });
            let mut r = greenfd_rt::Async::new(r).unwrap();
            let mut pos = 0u64;
            let mut buf = vec![0u8; 7000];
            while pos < (8 << 20) || hits(1) < STORM_MIN_HITS {
                let n = r.read(&mut buf).await.unwrap();
                assert!(n > 0);
                for &b in &buf[..n] {
                    assert_eq!(
                        b,
                        (pos.wrapping_mul(31) >> 3) as u8,
                        "byte {pos} lost or reordered"
                    );
                    pos += 1;
                }
                PROGRESS[1].fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            }
            ticker.cancel();
            (pos, ticks.get())
        })
        .unwrap();
        drop(storm);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(ticks > 0, "the timer task never ran");
        // The writer may be blocked on a full socket: its peer is gone once `r` dropped.
        let _ = writer.join();
        read
    });

    // vpoll: ADD IN → the runtime's reactor reports it → DEL IN, on every backend.
    let vp = std::thread::spawn(move || {
        let _storm = storm_target(2);
        let mut cycles = 0u64;
        greenfd_rt::block_on(async {
            let reactor = greenfd_rt::current_reactor().unwrap();
            let fds: Vec<VpollFd> = backends
                .iter()
                .map(|&b| Builder::new().backend(b).build().unwrap())
                .collect();
            while cycles < 2000 || hits(2) < STORM_MIN_HITS {
                for v in &fds {
                    v.add(Events::IN).unwrap();
                    reactor.wait_readable(v.as_fd()).await.unwrap();
                    assert!(v.events().unwrap().contains(Events::IN));
                    v.del(Events::IN).unwrap();
                    assert!(!v.events().unwrap().contains(Events::IN));
                    for op in [vpoll::VPOLL_CTL_ADDEVENTS, vpoll::VPOLL_CTL_DELEVENTS] {
                        let rv = vpoll::vpoll_ctl(v.as_raw_fd(), op, libc::EPOLLOUT as u32);
                        let err = std::io::Error::last_os_error();
                        assert_eq!(rv, 0, "{} vpoll_ctl({op}, OUT): {err}", v.backend());
                    }
                }
                cycles += 1;
                PROGRESS[2].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            for v in fds {
                v.close().unwrap();
            }
        })
        .unwrap();
        cycles
    });

    let monitor = std::thread::spawn(|| {
        let start = Instant::now();
        while start.elapsed() < CHILD_PATIENCE {
            std::thread::sleep(Duration::from_secs(2));
            let p = |i: usize| PROGRESS[i].load(std::sync::atomic::Ordering::Relaxed);
            eprintln!(
                "storm {:?}: hits {}/{}/{} frames {} rt bytes {} vpoll cycles {}",
                start.elapsed(),
                hits(0),
                hits(1),
                hits(2),
                p(0),
                p(1),
                p(2)
            );
        }
    });
    drop(monitor);
    let bytes: u64 = clients.into_iter().map(|c| c.join().unwrap()).sum();
    let rt_bytes = rt.join().unwrap();
    let cycles = vp.join().unwrap();
    engine.stop();
    let (h0, h1, h2) = (hits(0), hits(1), hits(2));
    assert!(h0 >= STORM_MIN_HITS && h1 >= STORM_MIN_HITS && h2 >= STORM_MIN_HITS);
    println!(
        "OK storm: signals engine={h0} rt={h1} vpoll={h2}; engine echoed {bytes} checked bytes, rt read {rt_bytes} bytes in order, {cycles} vpoll cycles on {wanted:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Peers that reset or half-close.

/// Clients that reset in the middle of a frame end with `Reset`, alone: eight clients
/// running alongside get every checksummed byte back in order.
fn peer_reset_mid_frame_ends_only_that_connection(io: IoDriver) {
    let (tx, rx) = mpsc::channel();
    let engine = Running::start(LengthPrefixed::u32(), Reporter { tx }, config_on(io));
    let addr = engine.addr;
    // Eight clients connect and wait while the victims reset, then exchange their frames
    // over the connections that lived through the resets.
    let go = std::sync::Arc::new(std::sync::Barrier::new(9));
    let good: Vec<JoinHandle<u64>> = (0..8u32)
        .map(|c| {
            let go = go.clone();
            std::thread::spawn(move || checked_client(addr, c, 300, u64::from(c), Some(&go)))
        })
        .collect();
    wait_until("the good clients to connect", || {
        engine.handle.stats().accepted == 8
    });
    for i in 0..5u32 {
        let mut victim = engine.connect();
        // A header promising 1000 bytes, then only 10 of them, read by the engine.
        victim.write_all(&1000u32.to_be_bytes()).unwrap();
        victim.write_all(&[i as u8; 10]).unwrap();
        wait_until("the partial frame to be read", || {
            engine.handle.stats().bytes_in == 14 * u64::from(i + 1)
        });
        rustix::net::sockopt::set_socket_linger(&victim, Some(Duration::ZERO)).unwrap();
        drop(victim); // RST
    }
    go.wait();
    let bytes: u64 = good.into_iter().map(|t| t.join().unwrap()).sum();
    let mut reasons = Vec::new();
    while reasons.len() < 13 {
        reasons.push(rx.recv_timeout(PATIENCE).expect("a disconnect").1);
    }
    let resets = reasons
        .iter()
        .filter(|r| **r == DisconnectReason::Reset)
        .count();
    let closed = reasons
        .iter()
        .filter(|r| **r == DisconnectReason::PeerClosed)
        .count();
    assert_eq!((resets, closed), (5, 8), "{reasons:?}");
    eprintln!("reset: 5 resets, 8 clean clients, {bytes} checked bytes echoed");
    engine.stop();
}

/// A flood: 600 clients connect at once to an engine limited to 64 connections. Accepting
/// pauses at the limit and resumes as connections close; every client is served its
/// checksummed echo, none is dropped.
fn connection_flood_beyond_the_limit_is_served_in_turn(io: IoDriver) {
    let engine = Engine::bind_with(
        "127.0.0.1:0".parse().unwrap(),
        LengthPrefixed::u32(),
        Echo,
        Config {
            max_connections: 64,
            ..config_on(io)
        },
    )
    .unwrap();
    let (addr, handle) = (engine.local_addr(), engine.handle());
    let server = std::thread::spawn(move || engine.run());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let served = rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let tasks: Vec<_> = (0..600u32)
            .map(|c| {
                tokio::spawn(async move {
                    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                    let frame = checked_frame(&mut Rng::new(u64::from(c)), c, 0, 512);
                    s.write_all(&frame).await.unwrap();
                    let mut back = vec![0u8; frame.len()];
                    s.read_exact(&mut back).await.unwrap();
                    assert_eq!(back, frame, "client {c}: echo differs");
                })
            })
            .collect();
        let mut served = 0;
        for t in tasks {
            tokio::time::timeout(PATIENCE, t)
                .await
                .expect("a client was never served")
                .unwrap();
            served += 1;
        }
        served
    });
    wait_until("every flood connection to close", || {
        handle.stats().closed == 600
    });
    let stats = handle.stats();
    assert_eq!((served, stats.accepted), (600, 600));
    handle.shutdown();
    server.join().unwrap().unwrap();
}

/// A client that half-closes after sending gets every reply, then end of stream; the
/// engine reports `PeerClosed` only after the replies are out.
fn half_closed_client_gets_every_reply_then_eof(io: IoDriver) {
    let (tx, rx) = mpsc::channel();
    let engine = Running::start(Lines::default(), Reporter { tx }, config_on(io));
    let mut c = engine.connect();
    let mut rng = Rng::new(11);
    let mut sent = Vec::new();
    for i in 0..2000 {
        let line: String = (0..rng.index(100))
            .map(|_| *rng.pick(b"abcdefghijklmnopqrstuvwxyz0123456789") as char)
            .collect();
        sent.extend_from_slice(format!("{i}:{line}\n").as_bytes());
    }
    // A reader thread: the replies may outgrow the socket buffers before we finish.
    let mut reader = c.try_clone().unwrap();
    let t = std::thread::spawn(move || {
        let mut all = Vec::new();
        reader.read_to_end(&mut all).map(|_| all)
    });
    c.write_all(&sent).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let got = t.join().unwrap().expect("read until end of stream");
    assert_eq!(
        fnv1a(&got),
        fnv1a(&sent),
        "replies differ ({} of {} bytes)",
        got.len(),
        sent.len()
    );
    let (_, reason) = rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!(reason, DisconnectReason::PeerClosed);
    engine.stop();
}

/// In the runtime, a task whose peer resets gets `ConnectionReset` from `read`, while
/// another task on the same loop finishes its checksummed exchange.
#[test]
fn rt_task_sees_reset_while_its_neighbour_finishes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let victim = TcpStream::connect(addr).unwrap();
    let (victim_srv, _) = listener.accept().unwrap();
    let mut peer = TcpStream::connect(addr).unwrap();
    peer.set_read_timeout(Some(PATIENCE)).unwrap();
    let (neighbour_srv, _) = listener.accept().unwrap();
    let sent = Rng::new(5).bytes(1 << 20);
    let sent2 = sent.clone();
    let echo_peer = std::thread::spawn(move || {
        peer.write_all(&sent2).unwrap();
        peer.shutdown(Shutdown::Write).unwrap();
        let mut back = Vec::new();
        peer.read_to_end(&mut back).unwrap();
        back
    });
    let (reset_err, echoed) = greenfd_rt::block_on(async move {
        use futures_lite::AsyncWriteExt;
        let mut v = greenfd_rt::Async::new(victim_srv).unwrap();
        let reader = greenfd_rt::spawn(async move {
            let mut buf = [0u8; 64];
            loop {
                match v.read(&mut buf).await {
                    Ok(0) => return None,
                    Ok(_) => continue,
                    Err(e) => return Some(e.kind()),
                }
            }
        });
        let mut n = greenfd_rt::Async::new(neighbour_srv).unwrap();
        let echo = greenfd_rt::spawn(async move {
            let mut all = 0usize;
            let mut buf = vec![0u8; 10_000];
            loop {
                let k = n.read(&mut buf).await.unwrap();
                if k == 0 {
                    break;
                }
                n.write_all(&buf[..k]).await.unwrap();
                all += k;
            }
            n.get_ref().shutdown(Shutdown::Write).unwrap();
            all
        });
        // The reset arrives while both tasks are parked.
        rustix::net::sockopt::set_socket_linger(&victim, Some(Duration::ZERO)).unwrap();
        drop(victim);
        let both = async { (reader.await.unwrap(), echo.await.unwrap()) };
        greenfd_rt::timeout(PATIENCE, both)
            .await
            .expect("a task never finished: the reset was not reported")
    })
    .unwrap();
    assert_eq!(reset_err, Some(ErrorKind::ConnectionReset));
    assert_eq!(echoed, sent.len());
    assert!(echo_peer.join().unwrap() == sent, "echo differs");
}

// ---------------------------------------------------------------------------------------
// A vpoll fd closed while another thread waits on it.

/// The documented way to close a vpoll fd others wait on: set HUP, then close. Waiters
/// in `epoll_wait` and `poll` on other threads wake with HUP on every backend, and the
/// closed fd leaves the epoll set (no stale report, no busy loop). (close(2) alone wakes
/// nobody on Linux, for any kind of fd: the kernel drops the registration silently.)
#[test]
fn hup_then_close_wakes_epoll_and_poll_waiters_in_other_threads() {
    for backend in required_backends() {
        let v = Builder::new().backend(backend).build().unwrap();
        let ep = epoll_on(v.as_fd(), 1, epoll::EventFlags::IN);
        let raw = v.as_raw_fd();
        let epoller = std::thread::spawn({
            let ep = ep.try_clone().unwrap();
            move || epoll_wait(ep.as_fd(), PATIENCE)
        });
        let poller = std::thread::spawn(move || {
            let mut p = libc::pollfd {
                fd: raw,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd; the fd stays open until this thread is joined.
            let n = unsafe { libc::poll(&mut p, 1, PATIENCE.as_millis() as i32) };
            (n, p.revents)
        });
        v.add(Events::HUP).unwrap();
        let got = epoller.join().unwrap();
        assert_eq!(got.len(), 1, "{backend}: epoll_wait timed out");
        assert!(
            got[0].1.contains(epoll::EventFlags::HUP),
            "{backend}: {got:?}"
        );
        let (n, revents) = poller.join().unwrap();
        assert!(
            n == 1 && revents & libc::POLLHUP != 0,
            "{backend}: poll {n} {revents:#x}"
        );
        v.close().unwrap();
        assert!(
            epoll_wait(ep.as_fd(), Duration::ZERO).is_empty(),
            "{backend}: the closed fd is still reported"
        );
    }
}

/// A runtime task waiting on a vpoll fd through the reactor wakes with `Closed` when the
/// fd's owner closes it (another thread asked for the close through a socket): no hang,
/// and the reactor keeps no wait or registration for it.
#[test]
fn reactor_waiter_on_a_vpoll_fd_wakes_with_closed() {
    for backend in required_backends() {
        let (mut ask, asked) = UnixStream::pair().unwrap();
        let runtime = std::thread::spawn(move || {
            greenfd_rt::block_on(async move {
                use futures_lite::AsyncReadExt;
                let reactor = greenfd_rt::current_reactor().unwrap();
                let v = Builder::new().backend(backend).build().unwrap();
                let mut asked = greenfd_rt::Async::new(asked).unwrap();
                let waiter = reactor.wait_readable(v.as_fd());
                let closer = async {
                    let mut b = [0u8; 1];
                    asked.read_exact(&mut b).await.unwrap();
                    reactor.notify_closing(v.as_fd()).unwrap();
                };
                let (result, ()) = futures_lite::future::zip(waiter, closer).await;
                v.close().unwrap();
                let stats = reactor.statistics();
                (
                    result.map_err(|e| e.to_string()),
                    stats.tasks_waiting_read,
                    stats.armed_fds,
                )
            })
            .unwrap()
        });
        ask.write_all(b"c").unwrap();
        // Bounded: a waiter that is never woken fails the test instead of hanging it.
        let deadline = Instant::now() + PATIENCE;
        while !runtime.is_finished() {
            assert!(
                Instant::now() < deadline,
                "{backend}: the waiting task never woke"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let (result, waiting, armed) = runtime.join().unwrap();
        assert!(
            matches!(&result, Err(e) if e.contains("closed")),
            "{backend}: {result:?}"
        );
        assert_eq!((waiting, armed), (0, 0), "{backend}: leftover wait");
    }
}

// ---------------------------------------------------------------------------------------
// fork with live registrations.

/// A child forked while the parent has an engine with a client, a reactor registration
/// and vpoll fds in an epoll set sets IN on every inherited vpoll fd (async-signal-safe
/// path), closes its copies of everything and exits 0; the parent sees the child's
/// events, and its registrations, connections and fds all keep working.
fn fork_with_live_registrations(io: IoDriver) {
    let out = run_child_on("fork_child", io, CHILD_PATIENCE);
    assert!(out.contains("OK fork"), "{out}");
    for l in tagged_lines(&out, "OK ") {
        eprintln!("{l}");
    }
}

/// The child half of the fork test (itself the forking parent).
#[test]
fn fork_child() {
    if !is_child("fork_child") {
        return;
    }
    let io = child_io();
    let (tx, rx) = mpsc::channel();
    let engine = Running::start(Lines::default(), Reporter { tx }, config_on(io));
    let mut client = engine.connect();
    client.write_all(b"one\n").unwrap();
    let mut buf = [0u8; 4];
    client.read_exact(&mut buf).unwrap();
    let reactor = Reactor::new().unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let reg = reactor.register(b.as_fd()).unwrap();
    let vpolls: Vec<VpollFd> = required_backends()
        .into_iter()
        .map(|bk| Builder::new().backend(bk).build().unwrap())
        .collect();
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
    for (i, v) in vpolls.iter().enumerate() {
        epoll::add(
            &ep,
            v.as_fd(),
            epoll::EventData::new_u64(i as u64),
            epoll::EventFlags::IN,
        )
        .unwrap();
    }
    let inherited: Vec<i32> = [client.as_raw_fd(), b.as_raw_fd(), ep.as_raw_fd()]
        .into_iter()
        .chain(vpolls.iter().map(|v| v.as_raw_fd()))
        .collect();
    // SAFETY: the child only calls the vpoll ctl path documented as async-signal-safe
    // (fstat, atomics, write/send), close(2) and _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let mut code = 0;
        for v in &vpolls {
            if greenfd_vpoll::ctl_fd(v.as_fd(), Op::Add, Events::IN).is_err() {
                code = 2;
            }
        }
        for &fd in &inherited {
            // SAFETY: closing the child's own copies of inherited descriptors.
            if unsafe { libc::close(fd) } != 0 {
                code = 3;
            }
        }
        // SAFETY: ends the child without running the parent's atexit handlers or destructors.
        unsafe { libc::_exit(code) };
    }
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        let mut status = 0;
        // SAFETY: waits for our own child, without blocking.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            break status;
        }
        assert!(Instant::now() < deadline, "forked child never exited");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status:#x}"
    );
    // The child's events arrived on every backend.
    let mut seen = vec![false; vpolls.len()];
    while seen.iter().any(|s| !s) {
        let evs = epoll_wait(ep.as_fd(), PATIENCE);
        assert!(
            !evs.is_empty(),
            "the child's ADD never reached epoll: {seen:?}"
        );
        for (i, flags) in evs {
            assert!(flags.contains(epoll::EventFlags::IN));
            seen[i as usize] = true;
        }
    }
    for v in &vpolls {
        v.del(Events::IN).unwrap();
        assert_eq!(v.events().unwrap() & Events::IN, Events::empty());
        v.add(Events::OUT).unwrap();
        assert!(v.events().unwrap().contains(Events::OUT));
    }
    // The reactor registration still reports.
    a.write_all(b"x").unwrap();
    let mut cx = Context::from_waker(Waker::noop());
    while !matches!(reg.poll_read_ready(&mut cx), Poll::Ready(Ok(_))) {
        assert!(
            Instant::now() < deadline,
            "registration never reported after fork"
        );
        reactor.turn(Some(Duration::from_millis(100))).unwrap();
    }
    // The engine kept the connection whose copy the child closed, and accepts new ones.
    client.write_all(b"two\n").unwrap();
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"two\n");
    let mut second = engine.connect();
    second.write_all(b"new\n").unwrap();
    second.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"new\n");
    assert!(
        rx.try_recv().is_err(),
        "a connection ended because of the fork"
    );
    reg.deregister(b.as_fd()).unwrap();
    println!(
        "OK fork: child exited 0, {} vpoll fds saw its ADD, registrations intact",
        vpolls.len()
    );
    engine.stop();
}

// ---------------------------------------------------------------------------------------
// The FUSE server's connection aborted under live vpoll fds.

/// Whether the FUSE abort scenario can run here; prints why not.
fn fuse_abort_possible(test: &str) -> bool {
    if let Err(e) = Backend::Fuse.probe() {
        eprintln!("skipping {test}: {e}");
        return false;
    }
    if !is_root() || which("unshare").is_none() || which("mount").is_none() {
        eprintln!(
            "skipping {test}: needs root, unshare(1) and mount(8) to reach /sys/fs/fuse/connections"
        );
        return false;
    }
    true
}

/// Runs the FUSE abort child in a private mount namespace (where it may mount fusectl)
/// and returns its `FACT` lines as (name, value).
fn fuse_abort_facts() -> Vec<(String, String)> {
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fuse_abort_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "fuse_abort_child");
    let out = run_with_timeout(&mut cmd, CHILD_PATIENCE).expect("the child hung after the abort");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "abort child failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    tagged_lines(&stdout, "FACT ")
        .into_iter()
        .filter_map(|l| {
            let (k, v) = l.strip_prefix("FACT ")?.split_once('=')?;
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// The value of fact `name`.
fn fact<'a>(facts: &'a [(String, String)], name: &str) -> &'a str {
    facts
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no fact {name} in {facts:?}"))
}

/// When the FUSE connection serving a process's vpoll fds is aborted
/// (`/sys/fs/fuse/connections/N/abort`), a thread blocked in poll(2) on one wakes with
/// ERR, epoll reports ERR, a new Fuse vpoll fd fails with a clear error, closing works,
/// and the process exits promptly.
#[test]
fn fuse_abort_wakes_waiters_with_err_and_the_process_exits() {
    if !fuse_abort_possible("fuse_abort_wakes_waiters_with_err_and_the_process_exits") {
        return;
    }
    let facts = fuse_abort_facts();
    eprintln!("{facts:?}");
    assert_eq!(fact(&facts, "waiter_revents_err"), "true");
    assert_eq!(fact(&facts, "epoll_err"), "true");
    assert_eq!(fact(&facts, "new_fd_fails"), "true");
    assert_eq!(fact(&facts, "close_ok"), "true");
    assert_eq!(fact(&facts, "emulated_still_works"), "true");
}

/// After the abort, `ctl` on a Fuse vpoll fd fails with ENOTCONN once the server has
/// noticed (the mask it would set means nothing any more), and `events()` reports ERR as
/// poll(2) does. (Both were bugs this suite found: ctl returned `Ok(())` and `events()`
/// the stale mask.)
#[test]
fn fuse_abort_makes_ctl_fail() {
    if !fuse_abort_possible("fuse_abort_makes_ctl_fail") {
        return;
    }
    let facts = fuse_abort_facts();
    eprintln!("{facts:?}");
    let enotconn = format!("Err({})", libc::ENOTCONN);
    assert_eq!(
        fact(&facts, "add_after_abort"),
        enotconn,
        "ctl on a dead connection"
    );
    assert_eq!(
        fact(&facts, "set_after_abort"),
        enotconn,
        "ctl on a dead connection"
    );
    assert!(
        fact(&facts, "events_after_abort").contains("ERR"),
        "events() hides the ERR poll(2) sees"
    );
}

/// The child half of the FUSE abort tests: runs the scenario and prints facts.
#[test]
fn fuse_abort_child() {
    if !is_child("fuse_abort_child") {
        return;
    }
    let v = Builder::new().backend(Backend::Fuse).build().unwrap();
    let other = Builder::new().backend(Backend::Emulated).build().unwrap();
    let ep = epoll_on(v.as_fd(), 1, epoll::EventFlags::IN);
    // The connection number is the minor of the mount's device.
    let minor = rustix::fs::minor(rustix::fs::fstat(&v).unwrap().st_dev);
    let conns = std::path::Path::new("/sys/fs/fuse/connections");
    if !conns.join(minor.to_string()).exists() {
        let st = std::process::Command::new("mount")
            .args(["-t", "fusectl", "fusectl"])
            .arg(conns)
            .status()
            .unwrap();
        assert!(st.success(), "mount fusectl: {st}");
    }
    let raw = v.as_raw_fd();
    let (ready_tx, ready_rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let mut p = libc::pollfd {
            fd: raw,
            events: libc::POLLIN,
            revents: 0,
        };
        ready_tx.send(()).unwrap();
        // SAFETY: one valid pollfd; the fd stays open until this thread is joined.
        let n = unsafe { libc::poll(&mut p, 1, PATIENCE.as_millis() as i32) };
        (n, p.revents)
    });
    ready_rx.recv().unwrap();
    std::fs::write(conns.join(minor.to_string()).join("abort"), "1").unwrap();
    let (n, revents) = waiter.join().unwrap();
    println!(
        "FACT waiter_revents_err={}",
        n == 1 && revents & libc::POLLERR != 0
    );
    let evs = epoll_wait(ep.as_fd(), PATIENCE);
    println!(
        "FACT epoll_err={}",
        evs.iter().any(|(_, f)| f.contains(epoll::EventFlags::ERR))
    );
    let show = |r: greenfd_vpoll::Result<()>| match r {
        Ok(()) => "Ok".to_owned(),
        Err(e) => format!("Err({})", e.raw_os_error()),
    };
    // The server notices the abort asynchronously; from then on ctl must fail.
    let deadline = Instant::now() + PATIENCE;
    let add = loop {
        match v.add(Events::IN) {
            Ok(()) if Instant::now() < deadline => std::thread::yield_now(),
            other => break other,
        }
    };
    println!("FACT add_after_abort={}", show(add));
    println!("FACT set_after_abort={}", show(v.set(Events::OUT)));
    println!("FACT events_after_abort={:?}", v.events());
    let new = Builder::new().backend(Backend::Fuse).build();
    println!("FACT new_fd_fails={}", new.is_err());
    println!("FACT new_fd_error={:?}", new.err());
    other.add(Events::IN).unwrap();
    println!(
        "FACT emulated_still_works={}",
        other.events().unwrap().contains(Events::IN)
    );
    println!(
        "FACT close_ok={}",
        v.close().is_ok() && other.close().is_ok()
    );
}

// ---------------------------------------------------------------------------------------
// A TAP device deleted while a task reads it.

/// Two TAP devices in a fresh namespace, a task reading each: deleting one wakes its
/// reader with `Vanished`; the other keeps receiving frames.
#[test]
fn tap_deleted_while_read_ends_only_its_reader() {
    let t = std::thread::spawn(|| {
        if let Err(why) = private_netns() {
            eprintln!("skipping tap_deleted_while_read_ends_only_its_reader: {why}");
            return;
        }
        greenfd_rt::block_on(async {
            use greenfd_rt::{DeviceError, TapDevice, spawn, timeout};
            let doomed = TapDevice::new("rel-doomed").unwrap();
            let alive = TapDevice::new("rel-alive").unwrap();
            ip(&["link", "set", "dev", "rel-doomed", "up"]);
            let doomed_reader = spawn(async move {
                let mut buf = [0u8; 2048];
                loop {
                    if let Err(e) = doomed.recv(&mut buf).await {
                        return e;
                    }
                }
            });
            futures_lite::future::yield_now().await;
            ip(&["link", "del", "rel-doomed"]);
            let err = timeout(PATIENCE, doomed_reader)
                .await
                .expect("reader woken")
                .unwrap();
            assert!(
                matches!(err, DeviceError::Vanished(ref n) if n == "rel-doomed"),
                "{err:?}"
            );
            // The other device: bringing it up makes the kernel send IPv6 link-local
            // chatter (MLD, router solicitation) on it, which its reader receives.
            ip(&["link", "set", "dev", "rel-alive", "up"]);
            let mut buf = [0u8; 2048];
            let n = timeout(PATIENCE, alive.recv(&mut buf))
                .await
                .expect("a frame on the surviving device")
                .unwrap();
            assert!(n >= 14, "an Ethernet frame");
        })
        .unwrap();
    });
    t.join().unwrap();
}

// ---------------------------------------------------------------------------------------
// Regressions of bugs this suite found.

/// The emulated backend documents that a request it cannot represent "gives EINVAL and
/// changes nothing". Clearing IN after PRI and a hang-up once broke that (the drain took
/// the urgent byte, could not send it again on a shut socket, and reported EINVAL with PRI
/// gone); found by `fuzz.rs::vpoll_c_abi_random_arguments_give_only_documented_errors`.
#[test]
fn emulated_refused_del_in_keeps_pri_after_hangup() {
    let v = Builder::new().backend(Backend::Emulated).build().unwrap();
    v.add(Events::PRI).unwrap();
    v.add(Events::HUP).unwrap();
    let before = v.events().unwrap();
    assert!(before.contains(Events::PRI | Events::HUP), "{before:?}");
    let r = v.del(Events::IN);
    let after = v.events().unwrap();
    assert!(
        r.is_ok() || after == before,
        "del(IN) failed with {r:?} and changed {before:?} into {after:?}"
    );
}

on_both_drivers!(
    emfile_fails_new_fds_clearly_and_spares_existing_ones,
    eintr_storm_loses_nothing,
    peer_reset_mid_frame_ends_only_that_connection,
    connection_flood_beyond_the_limit_is_served_in_turn,
    half_closed_client_gets_every_reply_then_eof,
    fork_with_live_registrations,
);
