//! The engine against real TCP sockets on loopback: framing across reads, bad clients,
//! cross-thread sends, backpressure, peer resets, shutdown, fd exhaustion. Every test
//! runs once per I/O driver (`<test>::epoll`, `<test>::uring`: `on_both_drivers!`).

use greenfd_engine::{
    Config, ConnId, Ctx, DisconnectReason, Echo, Engine, EngineError, Frame, Framing, Group,
    Handler, LengthPrefixed, Lines, Raw, SendError,
};
use rustix::event::epoll::EventFlags;
use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use greenfd_test_support::{
    CHILD_PATIENCE, IO_ENV, IoDriver, PATIENCE, Running, child_io, child_output, config_on,
    describe, epoll_on, epoll_wait, exhaust_fds, is_child, is_closed_by_server, on_both_drivers,
    tagged_lines, wait_until,
};

/// What a [`Recorder`] saw, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    Connect(ConnId),
    Message(ConnId, Vec<u8>),
    Disconnect(ConnId, DisconnectReason),
}

/// Reports every callback to the test, and echoes each frame back if asked to.
struct Recorder {
    tx: Sender<Seen>,
    echo: bool,
}

impl Recorder {
    fn report(&self, seen: Seen) {
        // A test that already has what it needs may have dropped its receiver.
        self.tx.send(seen).ok();
    }
}

impl Handler for Recorder {
    fn on_connect(&mut self, _ctx: &mut Ctx<'_>, id: ConnId) {
        self.report(Seen::Connect(id));
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, frame: Frame<'_>) {
        if self.echo {
            ctx.send(frame.bytes())
                .expect("echo fits in the output bound");
        }
        self.report(Seen::Message(id, frame.bytes().to_vec()));
    }
    fn on_disconnect(&mut self, _ctx: &mut Ctx<'_>, id: ConnId, reason: &DisconnectReason) {
        self.report(Seen::Disconnect(id, reason.clone()));
    }
}

fn recorder(echo: bool) -> (Recorder, Receiver<Seen>) {
    let (tx, rx) = mpsc::channel();
    (Recorder { tx, echo }, rx)
}

fn next(rx: &Receiver<Seen>) -> Seen {
    rx.recv_timeout(PATIENCE).expect("engine callback")
}

/// A frame split into single-byte reads, then many frames in one read.
fn split_and_batched<F: Framing + Clone + 'static>(io: IoDriver, framing: F) {
    let (rec, rx) = recorder(false);
    let engine = Running::start(framing.clone(), rec, config_on(io));
    let mut client = engine.connect();
    let Seen::Connect(id) = next(&rx) else {
        panic!("expected a connect")
    };

    let mut frame = Vec::new();
    framing.encode(b"one frame, many reads", &mut frame);
    let reads_before = engine.handle.stats().reads;
    for (i, b) in frame.iter().enumerate() {
        client.write_all(&[*b]).unwrap();
        // Wait until the engine has read this byte, so the next one is a new read.
        wait_until("the engine to read a byte", || {
            engine.handle.stats().bytes_in == i as u64 + 1
        });
    }
    assert_eq!(next(&rx), Seen::Message(id, frame.clone()));
    let reads = engine.handle.stats().reads - reads_before;
    assert_eq!(reads, frame.len() as u64, "one read per byte");

    let mut batch = Vec::new();
    let mut want = Vec::new();
    for i in 0..1000 {
        let start = batch.len();
        framing.encode(format!("frame {i}").as_bytes(), &mut batch);
        want.push(batch[start..].to_vec());
    }
    let reads_before = engine.handle.stats().reads;
    client.write_all(&batch).unwrap();
    for w in want {
        assert_eq!(next(&rx), Seen::Message(id, w));
    }
    let reads = engine.handle.stats().reads - reads_before;
    assert!(reads < 100, "1000 frames took {reads} reads");
    engine.stop();
}

fn lines_split_across_reads_and_batched_in_one_read(io: IoDriver) {
    split_and_batched(io, Lines::default());
}

fn length_prefixed_split_across_reads_and_batched_in_one_read(io: IoDriver) {
    split_and_batched(io, LengthPrefixed::u16());
    split_and_batched(io, LengthPrefixed::u32());
}

fn oversized_frame_disconnects_only_that_client_while_100_others_continue(io: IoDriver) {
    let config = config_on(io);
    let engine = Running::start(Lines { max: 1024 }, Echo, config);
    let mut clients: Vec<BufReader<TcpStream>> =
        (0..101).map(|_| BufReader::new(engine.connect())).collect();
    let round = |clients: &mut [BufReader<TcpStream>], tag: &str| {
        for (i, c) in clients.iter_mut().enumerate() {
            writeln!(c.get_mut(), "{tag} {i}").unwrap();
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let mut line = String::new();
            c.read_line(&mut line).unwrap();
            assert_eq!(line, format!("{tag} {i}\n"));
        }
    };
    round(&mut clients, "before");
    let mut bad = clients.remove(0).into_inner();
    bad.write_all(&[b'x'; 2000]).unwrap();
    assert!(is_closed_by_server(&mut bad));
    round(&mut clients, "after");
    let stats = engine.handle.stats();
    assert_eq!(stats.invalid_frames, 1);
    assert_eq!(stats.accepted, 101);
    assert_eq!(stats.closed, 1);
    engine.stop();
}

/// FNV-1a, so every message carries a checksum of its own header.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn ten_thousand_sends_from_four_threads_arrive_complete_and_in_order(io: IoDriver) {
    const CONNS: usize = 8;
    const THREADS: usize = 4;
    const PER_THREAD: usize = 2500;
    let (rec, rx) = recorder(false);
    let engine = Running::start(Lines::default(), rec, config_on(io));
    // Each client introduces itself so the test learns which id is whose.
    let mut ids = vec![None; CONNS];
    let mut readers = Vec::new();
    for (k, slot) in ids.iter_mut().enumerate() {
        let mut c = engine.connect();
        writeln!(c, "client {k}").unwrap();
        let Seen::Connect(id) = next(&rx) else {
            panic!("expected a connect")
        };
        assert_eq!(
            next(&rx),
            Seen::Message(id, format!("client {k}\n").into_bytes())
        );
        *slot = Some(id);
        readers.push(std::thread::spawn(move || {
            // Per sending thread: the next sequence number expected on this connection.
            let mut expect: Vec<usize> = (0..THREADS).map(|_| k).collect();
            let mut lines = BufReader::new(c).lines();
            let mut count = 0;
            while expect.iter().any(|&e| e < PER_THREAD) {
                let line = lines.next().expect("connection open").unwrap();
                let (body, sum) = line.rsplit_once(' ').unwrap();
                assert_eq!(sum.parse::<u64>().unwrap(), fnv(body.as_bytes()), "{line}");
                let mut parts = body.split(' ');
                let t: usize = parts.next().unwrap().parse().unwrap();
                let s: usize = parts.next().unwrap().parse().unwrap();
                assert_eq!(s, expect[t], "thread {t} out of order on connection {k}");
                expect[t] += CONNS;
                count += 1;
            }
            count
        }));
    }
    let ids: Vec<ConnId> = ids.into_iter().map(Option::unwrap).collect();
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let handle = engine.handle.clone();
            let ids = ids.clone();
            std::thread::spawn(move || {
                let mut full = 0;
                for s in 0..PER_THREAD {
                    let body = format!("{t} {s} {}", "x".repeat(s % 50));
                    let msg = format!("{body} {}\n", fnv(body.as_bytes()));
                    loop {
                        match handle.send(ids[s % CONNS], msg.as_bytes()) {
                            Ok(()) => break,
                            Err(SendError::Full) => {
                                full += 1;
                                std::thread::yield_now();
                            }
                            Err(e) => panic!("send: {e}"),
                        }
                    }
                }
                full
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let total: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert_eq!(total, THREADS * PER_THREAD);
    engine.stop();
}

fn slow_reader_gets_backpressure_and_queued_bytes_stay_bounded(io: IoDriver) {
    const BOUND: usize = 64 * 1024;
    let (rec, rx) = recorder(false);
    let config = Config {
        max_output: BOUND,
        ..config_on(io)
    };
    let engine = Running::start(Lines::default(), rec, config);
    let mut client = engine.connect();
    let Seen::Connect(id) = next(&rx) else {
        panic!("expected a connect")
    };
    // The client reads nothing until the engine refuses more.
    let mut accepted: u64 = 0;
    let mut chunks = 0u32;
    loop {
        let chunk: Vec<u8> = (0..1024u32)
            .map(|i| (chunks.wrapping_add(i) % 251) as u8)
            .collect();
        match engine.handle.send(id, chunk) {
            Ok(()) => {
                accepted += 1024;
                chunks += 1;
            }
            Err(SendError::Full) => break,
            Err(e) => panic!("send: {e}"),
        }
        let queued = engine.handle.queued(id).unwrap();
        assert!(queued <= BOUND, "{queued} bytes queued, bound {BOUND}");
        assert!(accepted < 1 << 30, "a non-reading peer never pushed back");
    }
    let stats = engine.handle.stats();
    assert!(stats.send_full >= 1);
    assert!(
        stats.peak_queued <= BOUND as u64,
        "peak {}",
        stats.peak_queued
    );
    // Now read everything: every accepted byte arrives, in order.
    let mut got = vec![0u8; accepted as usize];
    client.read_exact(&mut got).unwrap();
    for (c, chunk) in got.chunks(1024).enumerate() {
        for (i, &b) in chunk.iter().enumerate() {
            assert_eq!(b, ((c as u32).wrapping_add(i as u32) % 251) as u8);
        }
    }
    wait_until("the output to drain", || {
        engine.handle.queued(id) == Some(0)
    });
    engine.handle.send(id, &b"room again\n"[..]).unwrap();
    let mut line = [0u8; 11];
    client.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"room again\n");
    assert!(engine.handle.stats().peak_queued <= BOUND as u64);
    engine.stop();
}

fn pipelining_client_that_never_reads_is_paused_not_buffered(io: IoDriver) {
    const BOUND: usize = 64 * 1024;
    let config = Config {
        max_output: BOUND,
        ..config_on(io)
    };
    // Echoes of one frame must fit in the half of the bound left when reading pauses.
    let engine = Running::start(Raw { max: 8 * 1024 }, Echo, config);
    let client = engine.connect();
    client.set_nonblocking(true).unwrap();
    let mut written = Vec::new();
    let mut would_block_streak = 0;
    let mut n: u32 = 0;
    // Write until the whole path (engine paused, kernel buffers full) pushes back.
    while would_block_streak < 1000 {
        let chunk: Vec<u8> = (0..4096u32)
            .map(|i| (n.wrapping_add(i) % 253) as u8)
            .collect();
        match (&client).write(&chunk) {
            Ok(k) => {
                written.extend_from_slice(&chunk[..k]);
                n = n.wrapping_add(1);
                would_block_streak = 0;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                would_block_streak += 1;
                std::thread::yield_now();
            }
            Err(e) => panic!("write: {e}"),
        }
        assert!(written.len() < 256 << 20, "the engine never pushed back");
    }
    assert!(engine.handle.stats().peak_queued <= BOUND as u64);
    // Reading resumes the flow: everything comes back intact.
    client.set_nonblocking(false).unwrap();
    let mut got = vec![0u8; written.len()];
    (&client).read_exact(&mut got).unwrap();
    assert!(got == written, "echoed bytes differ");
    assert!(engine.handle.stats().peak_queued <= BOUND as u64);
    engine.stop();
}

fn peer_reset_mid_frame_is_reported_and_others_continue(io: IoDriver) {
    let (rec, rx) = recorder(true);
    let engine = Running::start(Lines::default(), rec, config_on(io));
    let mut other = engine.connect();
    let Seen::Connect(other_id) = next(&rx) else {
        panic!("expected a connect")
    };
    let victim = engine.connect();
    let Seen::Connect(victim_id) = next(&rx) else {
        panic!("expected a connect")
    };
    (&victim).write_all(b"half a fra").unwrap();
    wait_until("the partial frame to be read", || {
        engine.handle.stats().bytes_in == 10
    });
    // SO_LINGER 0: close sends RST instead of FIN.
    rustix::net::sockopt::set_socket_linger(&victim, Some(Duration::ZERO)).unwrap();
    drop(victim);
    assert_eq!(
        next(&rx),
        Seen::Disconnect(victim_id, DisconnectReason::Reset)
    );
    other.write_all(b"still here\n").unwrap();
    assert_eq!(next(&rx), Seen::Message(other_id, b"still here\n".to_vec()));
    let mut buf = [0u8; 11];
    other.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still here\n");
    engine.stop();
}

fn shutdown_disconnects_everyone_and_refuses_sends(io: IoDriver) {
    let (rec, rx) = recorder(false);
    let engine = Running::start(Lines::default(), rec, config_on(io));
    let mut clients: Vec<TcpStream> = (0..3).map(|_| engine.connect()).collect();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let Seen::Connect(id) = next(&rx) else {
            panic!("expected a connect")
        };
        ids.push(id);
    }
    engine.handle.send(ids[0], &b"bye\n"[..]).unwrap();
    let handle = engine.handle.clone();
    let addr = engine.addr;
    engine.stop();
    let mut gone: Vec<ConnId> = (0..3)
        .map(|_| match next(&rx) {
            Seen::Disconnect(id, DisconnectReason::Shutdown) => id,
            other => panic!("expected a shutdown disconnect, got {other:?}"),
        })
        .collect();
    gone.sort();
    ids.sort();
    assert_eq!(gone, ids);
    for c in &mut clients {
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty() || rest == b"bye\n");
    }
    assert_eq!(handle.send(ids[0], &b"late"[..]), Err(SendError::Shutdown));
    assert!(handle.is_stopped());
    assert_eq!(
        TcpStream::connect(addr).unwrap_err().kind(),
        ErrorKind::ConnectionRefused
    );
}

fn connection_limit_pauses_accept_until_a_connection_closes(io: IoDriver) {
    let (rec, rx) = recorder(true);
    let config = Config {
        max_connections: 2,
        ..config_on(io)
    };
    let engine = Running::start(Lines::default(), rec, config);
    let first = engine.connect();
    let mut second = engine.connect();
    let mut third = engine.connect();
    for _ in 0..2 {
        assert!(matches!(next(&rx), Seen::Connect(_)));
    }
    // The third waits in the backlog; its line is answered only after a slot frees up.
    third.write_all(b"third\n").unwrap();
    second.write_all(b"second\n").unwrap();
    let mut line = [0u8; 7];
    second.read_exact(&mut line).unwrap();
    assert_eq!(engine.handle.stats().accepted, 2);
    drop(first);
    let mut line = [0u8; 6];
    third.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"third\n");
    assert_eq!(engine.handle.stats().accepted, 3);
    engine.stop();
}

/// Tells every remaining connection when one leaves (replies sent from `on_disconnect`).
struct Farewell {
    conns: Vec<ConnId>,
}

impl Handler for Farewell {
    fn on_connect(&mut self, _ctx: &mut Ctx<'_>, id: ConnId) {
        self.conns.push(id);
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_>, _id: ConnId, frame: Frame<'_>) {
        ctx.send(frame.bytes()).unwrap();
    }
    fn on_disconnect(&mut self, ctx: &mut Ctx<'_>, id: ConnId, _reason: &DisconnectReason) {
        self.conns.retain(|&c| c != id);
        for &c in &self.conns {
            ctx.send_to(c, format!("{id} left\n").as_bytes()).unwrap();
        }
    }
}

fn replies_from_on_disconnect_go_out_without_another_event(io: IoDriver) {
    let engine = Running::start(
        Lines::default(),
        Farewell { conns: Vec::new() },
        config_on(io),
    );
    let leaver = engine.connect();
    let mut stayer = BufReader::new(engine.connect());
    // An echo proves both connections are registered before one leaves.
    stayer.get_mut().write_all(b"ready\n").unwrap();
    let mut line = String::new();
    stayer.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    drop(leaver);
    line.clear();
    stayer.read_line(&mut line).unwrap();
    assert!(line.ends_with(" left\n"), "{line:?}");
    engine.stop();
}

fn group_spreads_connections_over_reuseport_engines(io: IoDriver) {
    let group = Group::spawn(2, "127.0.0.1:0".parse().unwrap(), config_on(io), |_| {
        (Lines::default(), Echo)
    })
    .unwrap();
    let mut clients: Vec<BufReader<TcpStream>> = (0..32)
        .map(|_| {
            let s = TcpStream::connect(group.local_addr()).unwrap();
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            BufReader::new(s)
        })
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        writeln!(c.get_mut(), "hello {i}").unwrap();
        let mut line = String::new();
        c.read_line(&mut line).unwrap();
        assert_eq!(line, format!("hello {i}\n"));
    }
    let per_engine: Vec<u64> = group.handles().iter().map(|h| h.stats().accepted).collect();
    assert_eq!(per_engine.iter().sum::<u64>(), 32);
    // SO_REUSEPORT hashes connections over both listeners; all 32 on one has odds 2^-31.
    assert!(per_engine.iter().all(|&n| n > 0), "{per_engine:?}");
    group.shutdown_and_join().unwrap();
}

/// Panics on every message: an engine that dies in its handler.
struct Panics;

impl Handler for Panics {
    fn on_message(&mut self, _ctx: &mut Ctx<'_>, _id: ConnId, _frame: Frame<'_>) {
        panic!("handler fails on purpose");
    }
}

/// Whether `group`'s stop notifier is readable within `timeout` (zero: right now).
fn stop_reported(group: &Group, timeout: Duration) -> bool {
    let ep = epoll_on(group.stopped_fd(), 0, EventFlags::IN);
    !epoll_wait(&ep, timeout).is_empty()
}

fn group_stopped_fd_reports_an_engine_that_stops_or_panics(io: IoDriver) {
    let group = Group::spawn(2, "127.0.0.1:0".parse().unwrap(), config_on(io), |_| {
        (Lines::default(), Echo)
    })
    .unwrap();
    assert!(!stop_reported(&group, Duration::ZERO));
    // One engine stops; the other runs on, and the notifier says so at once.
    group.handles()[1].shutdown();
    assert!(
        stop_reported(&group, PATIENCE),
        "no report of a stopped engine"
    );
    assert!(group.handles()[1].is_stopped());
    assert!(!group.handles()[0].is_stopped());
    group.shutdown_and_join().unwrap();

    // A handler that panics ends its engine without returning: reported all the same.
    let group = Group::spawn(1, "127.0.0.1:0".parse().unwrap(), config_on(io), |_| {
        (Lines::default(), Panics)
    })
    .unwrap();
    let mut client = TcpStream::connect(group.local_addr()).unwrap();
    assert!(!stop_reported(&group, Duration::ZERO));
    client.write_all(b"boom\n").unwrap();
    assert!(
        stop_reported(&group, PATIENCE),
        "no report of a panicked engine"
    );
    assert!(matches!(group.join(), Err(EngineError::Panicked)));
}

/// Runs the test `name` of this binary in a child process and returns its stdout line
/// from `OK` on; panics if the child failed or never said `OK`.
fn ok_line_of_child(name: &str, io: IoDriver) -> String {
    let out = child_output(name, &[(IO_ENV, io.as_str())], CHILD_PATIENCE);
    assert!(
        out.status.success(),
        "child {name} failed: {}",
        describe(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    match tagged_lines(&stdout, "OK ").first() {
        Some(line) => (*line).to_owned(),
        None => panic!("child {name} did not say OK:\n{stdout}"),
    }
}

/// The EMFILE scenario runs in a child process (this test binary, re-executed) because
/// it lowers `RLIMIT_NOFILE` for the whole process.
fn emfile_pauses_accept_without_spinning_and_recovers(io: IoDriver) {
    eprintln!("{}", ok_line_of_child("emfile_child_process", io));
}

/// Runs in a child so that its epoll set is the only one in the process. On io_uring
/// it checks the opposite: no connection is ever in an epoll set.
fn epollout_is_registered_only_while_output_is_pending(io: IoDriver) {
    eprintln!("{}", ok_line_of_child("epollout_child_process", io));
}

/// Whether the kernel's epoll interest list holds `EPOLLOUT` for connection `id`, read
/// from `/proc/self/fdinfo` of every epoll fd in the process (`None`: not registered).
fn epollout_registered(id: ConnId) -> Option<bool> {
    let want = format!("{:x}", id.as_u64());
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let is_epoll = std::fs::read_link(entry.path())
            .is_ok_and(|t| t.to_string_lossy() == "anon_inode:[eventpoll]");
        if !is_epoll {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            entry.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        for line in info.lines().filter(|l| l.starts_with("tfd:")) {
            let field = |name: &str| {
                let mut words = line.split_whitespace();
                words.find(|w| *w == name)?;
                words.next().map(str::to_owned)
            };
            if field("data:").as_deref() == Some(want.as_str()) {
                let events = u32::from_str_radix(&field("events:")?, 16).ok()?;
                return Some(events & libc::EPOLLOUT as u32 != 0);
            }
        }
    }
    None
}

/// The child half of the EPOLLOUT test.
#[test]
fn epollout_child_process() {
    if !is_child("epollout_child_process") {
        return;
    }
    let io = child_io();
    // The io_uring driver puts no connection in an epoll set: EPOLLOUT is never armed,
    // and the output drains through the ring.
    let expect = |armed: bool| (io == IoDriver::Epoll).then_some(armed);
    let (rec, rx) = recorder(false);
    let engine = Running::start(Lines::default(), rec, config_on(io));
    let mut client = engine.connect();
    let Seen::Connect(id) = next(&rx) else {
        panic!("expected a connect")
    };
    assert_eq!(epollout_registered(id), expect(false), "idle connection");
    // Output the socket takes at once never arms EPOLLOUT.
    engine.handle.send(id, &b"hello\n"[..]).unwrap();
    let mut hello = [0u8; 6];
    client.read_exact(&mut hello).unwrap();
    wait_until("the output to drain", || {
        engine.handle.queued(id) == Some(0)
    });
    assert_eq!(
        epollout_registered(id),
        expect(false),
        "after a direct write"
    );
    // A peer that does not read: once the kernel refuses bytes, EPOLLOUT is armed.
    let mut total = 0usize;
    let chunk = vec![7u8; 16 * 1024];
    loop {
        match engine.handle.send(id, chunk.clone()) {
            Ok(()) => total += chunk.len(),
            Err(SendError::Full) => {
                if epollout_registered(id) == expect(true) {
                    break;
                }
                std::thread::yield_now();
            }
            Err(e) => panic!("send: {e}"),
        }
        assert!(
            total < 256 << 20,
            "EPOLLOUT never armed after {total} bytes"
        );
    }
    // The peer reads everything: the output drains through EPOLLOUT wake-ups, and
    // EPOLLOUT is removed again.
    let mut got = vec![0u8; total];
    client.read_exact(&mut got).unwrap();
    assert!(got.iter().all(|&b| b == 7));
    wait_until("EPOLLOUT to be removed", || {
        epollout_registered(id) == expect(false)
    });
    println!("OK epollout armed while {total} bytes were pending, removed after");
    engine.stop();
}

/// CPU time (user + system) this process has used.
fn cpu_time() -> Duration {
    // SAFETY: `rusage` is plain data that getrusage fills in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid, writable rusage.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage: {}", io::Error::last_os_error());
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The child half of the EMFILE test; does nothing unless run by it.
#[test]
fn emfile_child_process() {
    if !is_child("emfile_child_process") {
        return;
    }
    let io = child_io();
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let old = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(64),
            maximum: old.maximum,
        },
    )
    .unwrap();
    let engine = Running::start(Lines::default(), Echo, config_on(io));
    // Use up every fd, then free exactly one for the client.
    let mut hog = exhaust_fds();
    hog.pop();
    let mut client = TcpStream::connect(engine.addr).unwrap();
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    wait_until("accept to fail with EMFILE", || {
        engine.handle.stats().accept_pauses >= 1
    });
    let pauses_before = engine.handle.stats().accept_pauses;
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    // A measurement window, not a wait for readiness: the engine must stay quiet.
    std::thread::sleep(Duration::from_secs(1));
    let (cpu, wall) = (cpu_time() - cpu0, wall0.elapsed());
    let stats = engine.handle.stats();
    assert_eq!(stats.accepted, 0, "accepted at the fd limit?");
    let ratio = cpu.as_secs_f64() / wall.as_secs_f64();
    assert!(ratio < 0.2, "accept loop spun: {cpu:?} CPU in {wall:?}");
    // One retry per `accept_retry` (100 ms) at most, never a tight loop.
    let retries = stats.accept_pauses - pauses_before;
    assert!(retries <= 30, "{retries} accept retries in {wall:?}");
    // Free some fds: the pending client is accepted and served.
    hog.truncate(hog.len().saturating_sub(8));
    client.write_all(b"back\n").unwrap();
    let mut buf = [0u8; 5];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"back\n");
    assert_eq!(engine.handle.stats().accepted, 1);
    drop(hog);
    println!("OK emfile: cpu={cpu:?} wall={wall:?} retries={retries}");
    engine.stop();
}

/// With spin-before-park on, the engine still serves, and still sleeps when idle
/// (the spin is bounded: CPU over an idle second stays far below wall time).
fn busy_poll_serves_and_stays_bounded_when_idle(io: IoDriver) {
    let config = Config {
        busy_poll: Duration::from_micros(200),
        ..config_on(io)
    };
    let engine =
        Engine::bind_with("127.0.0.1:0".parse().unwrap(), Raw::default(), Echo, config).unwrap();
    let (addr, handle) = (engine.local_addr(), engine.handle());
    let reactor = std::thread::spawn(move || {
        let before = thread_cpu();
        let r = engine.run();
        (r, thread_cpu() - before)
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for _ in 0..100 {
        c.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
    }
    let idle = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let wall = idle.elapsed();
    handle.shutdown();
    let (result, cpu) = reactor.join().unwrap();
    result.unwrap();
    // A spin that never parked would burn the whole idle second.
    assert!(
        cpu < wall / 2,
        "engine thread used {cpu:?} CPU over an idle {wall:?}"
    );
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

on_both_drivers!(
    lines_split_across_reads_and_batched_in_one_read,
    length_prefixed_split_across_reads_and_batched_in_one_read,
    oversized_frame_disconnects_only_that_client_while_100_others_continue,
    ten_thousand_sends_from_four_threads_arrive_complete_and_in_order,
    slow_reader_gets_backpressure_and_queued_bytes_stay_bounded,
    pipelining_client_that_never_reads_is_paused_not_buffered,
    peer_reset_mid_frame_is_reported_and_others_continue,
    shutdown_disconnects_everyone_and_refuses_sends,
    connection_limit_pauses_accept_until_a_connection_closes,
    replies_from_on_disconnect_go_out_without_another_event,
    group_spreads_connections_over_reuseport_engines,
    group_stopped_fd_reports_an_engine_that_stops_or_panics,
    emfile_pauses_accept_without_spinning_and_recovers,
    epollout_is_registered_only_while_output_is_pending,
    busy_poll_serves_and_stays_bounded_when_idle,
);
