//! The reactor's Trio scenarios and the `Async`/TUN paths, with the same test bodies run
//! under greenfd-rt, tokio (multi-thread, inside `tokio::spawn`), tokio current-thread
//! and smol. Under greenfd-rt the executor drives the global reactor; under the others
//! its fallback thread does.
//!
//! The tests share the global reactor's counters, so they take a lock and run one at a
//! time; each body runs under a watchdog that fails the test instead of hanging.

use futures_lite::future::{self, poll_once, zip};
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use greenfd_rt::reactor::{Error, Reactor};
use greenfd_rt::{Async, TapDevice, TunDevice};
use std::future::Future;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;

/// Where a test body runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rt {
    /// `greenfd_rt::block_on`.
    Greenfd,
    /// `tokio::spawn` on a two-worker multi-thread runtime.
    TokioMulti,
    /// `tokio::spawn` on a current-thread runtime.
    TokioCurrent,
    /// `smol::spawn` (smol's global executor threads), awaited from `smol::block_on`.
    Smol,
}

/// Every runtime, in the order the tests run them.
const RUNTIMES: [Rt; 4] = [Rt::Greenfd, Rt::TokioMulti, Rt::TokioCurrent, Rt::Smol];

/// One test at a time: they read the global reactor's counters.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Aborts the process if not dropped within `secs`: a hang becomes a failure.
struct Watchdog(Arc<AtomicBool>);

impl Watchdog {
    fn new(what: String, secs: u64) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let d = Arc::clone(&done);
        std::thread::spawn(move || {
            for _ in 0..secs * 10 {
                std::thread::sleep(Duration::from_millis(100));
                if d.load(Ordering::Acquire) {
                    return;
                }
            }
            eprintln!("watchdog: {what} did not finish within {secs} s");
            std::process::abort();
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Runs `body` to completion on `rt` (inside a spawned task where the runtime has
/// spawn), failing the test if it panics or takes more than 30 s.
fn run<Fut>(rt: Rt, body: impl FnOnce(Rt) -> Fut)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    eprintln!("-- {rt:?}");
    let _watchdog = Watchdog::new(format!("{rt:?}"), 30);
    let task = body(rt);
    match rt {
        Rt::Greenfd => greenfd_rt::block_on(task).unwrap(),
        Rt::TokioMulti => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap()
            .block_on(async { tokio::spawn(task).await.unwrap() }),
        Rt::TokioCurrent => tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async { tokio::spawn(task).await.unwrap() }),
        Rt::Smol => smol::block_on(smol::spawn(task)),
    }
}

/// A one-shot completion flag any thread can set, awaitable anywhere.
#[derive(Default)]
struct Done {
    /// Set once.
    flag: AtomicBool,
    /// The waiting task.
    waker: Mutex<Option<Waker>>,
}

impl Done {
    fn set(&self) {
        self.flag.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }

    fn wait(self: Arc<Self>) -> impl Future<Output = ()> + Send {
        future::poll_fn(move |cx| {
            if self.flag.load(Ordering::Acquire) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.flag.load(Ordering::Acquire) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// Spawns `task` on `rt` (the runtime the caller runs on) and returns a future of its
/// completion: real concurrency, on other worker threads where the runtime has them.
fn spawn_on(rt: Rt, task: impl Future<Output = ()> + Send + 'static) -> impl Future<Output = ()> {
    let done = Arc::new(Done::default());
    let d = Arc::clone(&done);
    let wrapped = async move {
        task.await;
        d.set();
    };
    match rt {
        Rt::Greenfd => drop(greenfd_rt::spawn(wrapped)),
        Rt::TokioMulti | Rt::TokioCurrent => drop(tokio::spawn(wrapped)),
        Rt::Smol => smol::spawn(wrapped).detach(),
    }
    done.wait()
}

/// A runtime-agnostic sleep: a helper thread wakes the task (so the reactor's driver,
/// not a timer of the runtime, is what idles meanwhile).
fn sleep(d: Duration) -> impl Future<Output = ()> + Send {
    let done = Arc::new(Done::default());
    let t = Arc::clone(&done);
    std::thread::spawn(move || {
        std::thread::sleep(d);
        t.set();
    });
    done.wait()
}

/// Runs `f` on another thread after `delay`, without blocking the caller.
fn later(delay: Duration, f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        f();
    })
}

fn global() -> Reactor {
    Reactor::global().unwrap()
}

/// The kernel mask of `fd` in the global reactor's epoll (report bits only), if any.
fn armed_bits(fd: RawFd) -> Option<u32> {
    let path = format!("/proc/self/fdinfo/{}", global().as_fd().as_raw_fd());
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().find_map(|l| {
        let mut it = l.strip_prefix("tfd:")?.split_whitespace();
        let n: RawFd = it.next()?.parse().ok()?;
        assert_eq!(it.next()?, "events:");
        let ev = u32::from_str_radix(it.next()?, 16).ok()?;
        (n == fd).then_some(ev & 0xffff)
    })
}

/// Fills `s`'s send buffer so a writer has to wait.
fn fill(s: &UnixStream) {
    s.set_nonblocking(true).unwrap();
    let buf = [0u8; 65536];
    while (&*s).write(&buf).is_ok() {}
}

/// Polls `f` once with the current task's waker.
async fn is_pending<F: Future + Unpin>(f: &mut F) -> bool {
    poll_once(f).await.is_none()
}

#[test]
fn a_second_waiter_gets_busy_resource_at_once() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            let (_a, b) = UnixStream::pair().unwrap();
            let r = global();
            let mut first = Box::pin(r.wait_readable(b.as_fd()));
            assert!(is_pending(&mut first).await);
            assert!(matches!(
                r.wait_readable(b.as_fd()).await,
                Err(Error::BusyResource)
            ));
            // Another direction is not busy.
            assert!(r.wait_writable(b.as_fd()).await.is_ok());
            drop(first);
            assert_eq!(armed_bits(b.as_raw_fd()), None, "cancelled wait deleted");
        });
    }
}

#[test]
fn notify_closing_from_another_thread_wakes_reader_and_writer_with_closed() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            let (_a, b) = UnixStream::pair().unwrap();
            fill(&b);
            let b = Arc::new(b);
            let r = global();
            let closer = {
                let (r, b) = (r.clone(), Arc::clone(&b));
                later(Duration::from_millis(50), move || {
                    r.notify_closing(b.as_fd()).unwrap()
                })
            };
            let (read, write) = zip(r.wait_readable(b.as_fd()), r.wait_writable(b.as_fd())).await;
            assert!(matches!(read, Err(Error::Closed)), "{read:?}");
            assert!(matches!(write, Err(Error::Closed)), "{write:?}");
            closer.join().unwrap();
            assert_eq!(armed_bits(b.as_raw_fd()), None, "registration removed");
        });
    }
}

#[test]
fn hangup_wakes_reader_and_writer() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            let (a, b) = UnixStream::pair().unwrap();
            fill(&b);
            let r = global();
            let hang_up = later(Duration::from_millis(50), move || drop(a));
            let (read, write) = zip(r.wait_readable(b.as_fd()), r.wait_writable(b.as_fd())).await;
            assert!(read.is_ok() && write.is_ok(), "{read:?} {write:?}");
            hang_up.join().unwrap();
        });
    }
}

#[test]
fn error_wakes_reader_and_writer() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            // The write end of a full pipe: closing the read end raises EPOLLERR on it.
            let (rd, wr_end) = rustix::pipe::pipe().unwrap();
            rustix::fs::fcntl_setfl(&wr_end, rustix::fs::OFlags::NONBLOCK).unwrap();
            while rustix::io::write(&wr_end, &[0u8; 65536]).is_ok() {}
            let r = global();
            let close = later(Duration::from_millis(50), move || drop(rd));
            let (read, write) = zip(
                r.wait_readable(wr_end.as_fd()),
                r.wait_writable(wr_end.as_fd()),
            )
            .await;
            assert!(read.is_ok() && write.is_ok(), "{read:?} {write:?}");
            close.join().unwrap();
        });
    }
}

/// Replaces the file behind `target` with `with` (dup2): an unnotified close of the old
/// file and reuse of its number in one step.
fn reuse_number(with: &OwnedFd, target: RawFd) {
    // SAFETY: the test owns `target`; taking ownership briefly lets dup2 replace it, and
    // `into_raw_fd` gives the number back without closing it.
    let mut t = unsafe { OwnedFd::from_raw_fd(target) };
    rustix::io::dup2(with, &mut t).unwrap();
    let _ = t.into_raw_fd();
}

#[test]
fn a_number_reused_after_an_unnotified_close_works_at_once() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            let r = global();
            let (mut a, b) = UnixStream::pair().unwrap();
            let raw = b.into_raw_fd();
            // SAFETY: `raw` stays open (its file is replaced, never closed) until the end.
            let fd = unsafe { BorrowedFd::borrow_raw(raw) };
            let w = later(Duration::from_millis(20), move || {
                a.write_all(b"x").unwrap()
            });
            r.wait_readable(fd).await.unwrap();
            w.join().unwrap();
            assert_eq!(armed_bits(raw), Some(0), "stays registered, disarmed");
            let (mut c, d) = UnixStream::pair().unwrap();
            reuse_number(&OwnedFd::from(d), raw);
            let w = later(Duration::from_millis(20), move || {
                c.write_all(b"y").unwrap()
            });
            r.wait_readable(fd).await.unwrap(); // MOD said ENOENT, ADD worked
            w.join().unwrap();
            // SAFETY: we own `raw` and nothing uses it after this.
            drop(unsafe { OwnedFd::from_raw_fd(raw) });
        });
    }
}

#[test]
fn a_dup_closed_while_registered_never_busy_loops() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            let r = global();
            let (mut a, b) = UnixStream::pair().unwrap();
            // A dup is registered (armed), closed behind our back while the original keeps
            // the file alive, and its waiter cancelled: that kernel entry can no longer be
            // removed by number.
            let dup_raw = b.try_clone().unwrap().into_raw_fd();
            // SAFETY: `dup_raw` is open until the close below; the wait is dropped after.
            let dup_fd = unsafe { BorrowedFd::borrow_raw(dup_raw) };
            let mut on_dup = Box::pin(r.wait_readable(dup_fd));
            assert!(is_pending(&mut on_dup).await);
            // SAFETY: closing a number we own (the unnotified close this test is about).
            drop(unsafe { OwnedFd::from_raw_fd(dup_raw) });
            drop(on_dup);
            // Permanently readable and hung up: a level-triggered stale entry would now
            // report on every epoll_wait.
            a.write_all(b"data").unwrap();
            drop(a);
            r.wait_readable(b.as_fd()).await.unwrap();
            let before = r.statistics();
            sleep(Duration::from_millis(300)).await;
            let after = r.statistics();
            let turns = after.turns - before.turns;
            eprintln!("{turns} turns over an idle 300 ms");
            // Idle, the driver turns for the sleep's wake-up and little else; a busy loop
            // would turn tens of thousands of times.
            assert!(turns < 50, "busy loop: {turns} turns while idle");
            r.wait_readable(b.as_fd()).await.unwrap();
        });
    }
}

#[test]
fn cancellation_leaves_no_armed_registration() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            let r = global();
            let (_a, b) = UnixStream::pair().unwrap();
            fill(&b);
            {
                let mut rd = Box::pin(r.wait_readable(b.as_fd()));
                let mut wr = Box::pin(r.wait_writable(b.as_fd()));
                let mut pr = Box::pin(r.wait_priority(b.as_fd()));
                assert!(is_pending(&mut rd).await);
                assert!(is_pending(&mut wr).await);
                assert!(is_pending(&mut pr).await);
                let bits = armed_bits(b.as_raw_fd()).expect("registered");
                assert_ne!(bits & libc::EPOLLIN as u32, 0);
                assert_ne!(bits & libc::EPOLLOUT as u32, 0);
                assert_ne!(bits & libc::EPOLLPRI as u32, 0);
            }
            assert_eq!(
                armed_bits(b.as_raw_fd()),
                None,
                "nothing left in the kernel"
            );
            let mut rd = Box::pin(r.wait_readable(b.as_fd()));
            assert!(is_pending(&mut rd).await);
            {
                let mut wr = Box::pin(r.wait_writable(b.as_fd()));
                assert!(is_pending(&mut wr).await);
            }
            let bits = armed_bits(b.as_raw_fd()).unwrap();
            assert_eq!(bits & libc::EPOLLOUT as u32, 0, "writer's interest gone");
            assert_ne!(bits & libc::EPOLLIN as u32, 0, "reader still armed");
        });
    }
}

#[test]
fn async_sockets_stream_a_megabyte_both_ways_between_tasks() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |rt| async move {
            const LEN: usize = 1 << 20;
            let (a, b) = UnixStream::pair().unwrap();
            let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
            // The echo runs as its own task (another thread under tokio multi-thread and
            // smol): both sides block on backpressure many times over.
            let echo = spawn_on(rt, async move {
                let mut buf = vec![0u8; 8192];
                let mut total = 0;
                while total < LEN {
                    let n = b.read(&mut buf).await.unwrap();
                    assert!(n > 0, "early end of stream");
                    b.write_all(&buf[..n]).await.unwrap();
                    total += n;
                }
            });
            let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
            // Send through a dup (its own registration) while reading through `a`.
            let send = {
                let data = data.clone();
                let mut w = Async::new(a.get_ref().try_clone().unwrap()).unwrap();
                async move { w.write_all(&data).await.unwrap() }
            };
            let recv = async {
                let mut back = vec![0u8; LEN];
                a.read_exact(&mut back).await.unwrap();
                back
            };
            let ((), back) = zip(send, recv).await;
            echo.await;
            assert!(back == data, "echoed bytes differ");
        });
    }
}

#[test]
fn a_same_thread_wake_costs_no_eventfd_round_trip() {
    let _s = serial();
    // greenfd-rt only: its executor is the driver, and the tasks its turns wake live on
    // its thread.
    greenfd_rt::block_on(async {
        let r = greenfd_rt::current_reactor().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
        const ROUNDS: u64 = 200;
        let pong = greenfd_rt::spawn(async move {
            let mut buf = [0u8; 1];
            for _ in 0..ROUNDS {
                b.read_exact(&mut buf).await.unwrap();
                b.write_all(&buf).await.unwrap();
            }
        });
        let before = r.statistics();
        let mut buf = [0u8; 1];
        for _ in 0..ROUNDS {
            a.write_all(b"p").await.unwrap();
            a.read_exact(&mut buf).await.unwrap();
        }
        let after = r.statistics();
        pong.await.unwrap();
        let writes = after.wakeup_writes - before.wakeup_writes;
        let eventfd_reports = after.wakeup_reports - before.wakeup_reports;
        let reports = after.reports - before.reports;
        eprintln!(
            "{ROUNDS} ping-pongs: {reports} reports, {eventfd_reports} eventfd reports, \
             {writes} eventfd writes"
        );
        // Every wake here is issued by the executor's own turn: no eventfd write, no
        // eventfd report; each round is two socket reports (one per side).
        assert_eq!(writes, 0, "a same-thread wake wrote the eventfd");
        assert_eq!(eventfd_reports, 0, "a same-thread wake was read back");
        assert!(
            reports <= 2 * ROUNDS + 2,
            "{reports} reports for {ROUNDS} rounds"
        );
    })
    .unwrap();
}

// ---- TUN ----

/// Moves the calling thread (only) into a fresh network namespace; `Err` says why not.
fn private_netns() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("not root".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Err("no /dev/net/tun".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Err("`ip` missing (apt-get install iproute2)".into());
    }
    // SAFETY: only CLONE_NEWNET: it changes this thread's network namespace and shares
    // nothing less.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
        .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))
}

/// Runs `ip ARGS` and checks it worked.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Internet checksum.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4/UDP packet (UDP checksum 0: "none").
fn udp_packet(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let total = (20 + 8 + payload.len()) as u16;
    let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src.0.octets());
    p.extend_from_slice(&dst.0.octets());
    let sum = checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&src.1.to_be_bytes());
    p.extend_from_slice(&dst.1.to_be_bytes());
    p.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// The UDP payload of an IPv4 packet to `port`, if it is one.
fn udp_payload_to(packet: &[u8], port: u16) -> Option<&[u8]> {
    if packet.len() < 28 || packet[0] >> 4 != 4 || packet[9] != 17 {
        return None;
    }
    let ihl = usize::from(packet[0] & 0xf) * 4;
    let udp = packet.get(ihl..)?;
    (udp.len() >= 8 && u16::from_be_bytes([udp[2], udp[3]]) == port).then(|| &udp[8..])
}

#[test]
fn a_tun_device_sends_and_receives_concurrently_through_a_shared_reference() {
    let _s = serial();
    if let Err(why) = private_netns() {
        eprintln!("skip: {why}");
        return;
    }
    for (i, rt) in RUNTIMES.into_iter().enumerate() {
        // Device and addresses are set up on this thread, which is in the namespace; the
        // runtime's threads only do IO on the fds.
        let name = format!("grt{i}");
        let tun = Arc::new(TunDevice::new(&name).unwrap());
        let (ours, peer) = (
            Ipv4Addr::new(10, 79, i as u8, 1),
            Ipv4Addr::new(10, 79, i as u8, 2),
        );
        ip(&["addr", "add", &format!("{ours}/24"), "dev", &name]);
        ip(&["link", "set", &name, "up"]);
        let sock = UdpSocket::bind((ours, 7000)).unwrap();
        run(rt, move |rt| async move {
            const N: u16 = 20;
            // Reader task: packets the kernel routes to the peer come out of the device.
            let reader = {
                let tun = Arc::clone(&tun);
                spawn_on(rt, async move {
                    let mut seen = 0;
                    let mut buf = [0u8; 2048];
                    while seen < N {
                        let n = tun.recv(&mut buf).await.unwrap();
                        if let Some(p) = udp_payload_to(&buf[..n], 9000) {
                            assert_eq!(p, format!("out{seen}").as_bytes());
                            seen += 1;
                        }
                    }
                })
            };
            // Meanwhile this task sends through the same device (&self) and the kernel
            // delivers to our socket.
            let sock = Async::new(sock).unwrap();
            let mut buf = [0u8; 64];
            for k in 0..N {
                let pkt = udp_packet((peer, 9000), (ours, 7000), format!("in{k}").as_bytes());
                tun.send(&pkt).await.unwrap();
                let n = sock.read_with(|s| s.recv(&mut buf)).await.unwrap();
                assert_eq!(&buf[..n], format!("in{k}").as_bytes());
                sock.write_with(|s| s.send_to(format!("out{k}").as_bytes(), (peer, 9000)))
                    .await
                    .unwrap();
            }
            reader.await;
        });
        // The device went away with its last fd, inside the body.
    }
}

#[test]
fn borrowed_reads_of_a_socket_see_data_written_by_another_thread() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            let r = global();
            let (mut a, b) = UnixStream::pair().unwrap();
            b.set_nonblocking(true).unwrap();
            let writer = std::thread::spawn(move || {
                for i in 0..50u8 {
                    a.write_all(&[i]).unwrap();
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while got.len() < 50 {
                match (&b).read(&mut buf) {
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        r.wait_readable(b.as_fd()).await.unwrap()
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            writer.join().unwrap();
            assert_eq!(got, (0..50).collect::<Vec<u8>>());
        });
    }
}

#[test]
fn two_taps_one_task_each_a_stalled_device_never_delays_the_other() {
    let _s = serial();
    if let Err(why) = private_netns() {
        eprintln!("skip: {why}");
        return;
    }
    const N: usize = 20;
    for (i, rt) in RUNTIMES.into_iter().enumerate() {
        let mut devices = Vec::new();
        let mut senders = Vec::new();
        for side in 0..2u8 {
            let name = format!("gtap{i}{side}");
            devices.push(TapDevice::new(&name).unwrap());
            let net = 80 + 2 * i as u8 + side;
            ip(&["addr", "add", &format!("10.{net}.0.1/24"), "dev", &name]);
            ip(&["link", "set", &name, "up"]);
            // A static neighbour: datagrams leave as Ethernet frames at once (no ARP).
            ip(&[
                "neigh",
                "add",
                &format!("10.{net}.0.2"),
                "lladdr",
                "02:00:00:00:00:02",
                "dev",
                &name,
            ]);
            let sock = UdpSocket::bind((Ipv4Addr::new(10, net, 0, 1), 0)).unwrap();
            senders.push((sock, Ipv4Addr::new(10, net, 0, 2)));
        }
        // Every frame is queued in the kernel before the runtime starts: the stalled
        // device's fd stays readable throughout.
        for (sock, peer) in &senders {
            for k in 0..N {
                sock.send_to(format!("f{k}").as_bytes(), (*peer, 9000))
                    .unwrap();
            }
        }
        let busy = devices.pop().unwrap();
        let stalled = devices.pop().unwrap();
        run(rt, move |rt| async move {
            let gate = Arc::new(Done::default());
            let progress = Arc::new(Mutex::new(Vec::<(&'static str, usize)>::new()));
            /// Reads `N` UDP frames to port 9000 in order; after the first, `stall_on`
            /// (if any) must open before the device is read again.
            async fn serve(
                tap: TapDevice,
                who: &'static str,
                stall_on: Option<Arc<Done>>,
                progress: Arc<Mutex<Vec<(&'static str, usize)>>>,
            ) {
                let mut buf = [0u8; 2048];
                let mut seen = 0;
                while seen < N {
                    let n = tap.recv(&mut buf).await.unwrap();
                    let Some(p) = buf.get(14..n).and_then(|ip| udp_payload_to(ip, 9000)) else {
                        continue; // e.g. IPv6 router solicitations
                    };
                    assert_eq!(p, format!("f{seen}").as_bytes(), "{who}");
                    seen += 1;
                    progress.lock().unwrap().push((who, seen));
                    if seen == 1 {
                        if let Some(gate) = &stall_on {
                            Arc::clone(gate).wait().await;
                        }
                    }
                }
            }
            let a = spawn_on(
                rt,
                serve(
                    stalled,
                    "stalled",
                    Some(Arc::clone(&gate)),
                    Arc::clone(&progress),
                ),
            );
            let b = spawn_on(rt, serve(busy, "busy", None, Arc::clone(&progress)));
            b.await;
            // The busy device was served completely while the stalled one sat after its
            // first frame (its fd readable all along).
            let stalled_so_far = progress
                .lock()
                .unwrap()
                .iter()
                .filter(|(w, _)| *w == "stalled")
                .count();
            assert!(stalled_so_far <= 1, "the stalled task ran past its stall");
            gate.set();
            a.await;
            let log = progress.lock().unwrap().clone();
            let count = |who| log.iter().filter(|(w, _)| *w == who).count();
            assert_eq!((count("busy"), count("stalled")), (N, N), "{log:?}");
            let last_busy = log.iter().rposition(|(w, _)| *w == "busy").unwrap();
            let second_stalled = log.iter().position(|e| *e == ("stalled", 2)).unwrap();
            assert!(
                last_busy < second_stalled,
                "the busy device finished before the stalled one resumed: {log:?}"
            );
        });
    }
}
