//! Shared by the rt test binaries: the runtime harness (one test body, run under
//! greenfd-rt, tokio multi-thread, tokio current-thread and smol) and network-namespace
//! helpers for the TUN/TAP tests.

#![allow(dead_code)] // each test binary uses a subset

use futures_lite::future::{self, poll_once};
use greenfd_rt::reactor::Reactor;
use std::future::Future;
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;

#[allow(unused_imports)] // each test binary uses a subset
pub use greenfd_test_support::{ip, private_netns};

/// Where a test body runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rt {
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
pub const RUNTIMES: [Rt; 4] = [Rt::Greenfd, Rt::TokioMulti, Rt::TokioCurrent, Rt::Smol];

/// One test at a time: they read the global reactor's counters.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Aborts the process if not dropped within `secs`: a hang becomes a failure.
pub struct Watchdog(Arc<AtomicBool>);

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
pub fn run<Fut>(rt: Rt, body: impl FnOnce(Rt) -> Fut)
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
pub struct Done {
    /// Set once.
    flag: AtomicBool,
    /// The waiting task.
    waker: Mutex<Option<Waker>>,
}

impl Done {
    pub fn set(&self) {
        self.flag.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().unwrap().take() {
            w.wake();
        }
    }

    pub fn wait(self: Arc<Self>) -> impl Future<Output = ()> + Send {
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
pub fn spawn_on(
    rt: Rt,
    task: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = ()> {
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
pub fn sleep(d: Duration) -> impl Future<Output = ()> + Send {
    let done = Arc::new(Done::default());
    let t = Arc::clone(&done);
    std::thread::spawn(move || {
        std::thread::sleep(d);
        t.set();
    });
    done.wait()
}

/// Runs `f` on another thread after `delay`, without blocking the caller.
pub fn later(delay: Duration, f: impl FnOnce() + Send + 'static) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        f();
    })
}

pub fn global() -> Reactor {
    Reactor::global().unwrap()
}

/// The kernel mask of `fd` in the global reactor's epoll (report bits only), if any.
pub fn armed_bits(fd: RawFd) -> Option<u32> {
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
pub fn fill(s: &UnixStream) {
    s.set_nonblocking(true).unwrap();
    let buf = [0u8; 65536];
    while (&*s).write(&buf).is_ok() {}
}

/// Polls `f` once with the current task's waker.
pub async fn is_pending<F: Future + Unpin>(f: &mut F) -> bool {
    poll_once(f).await.is_none()
}

/// A handle on the calling thread's network namespace, for threads that must act in it.
pub fn this_netns() -> OwnedFd {
    std::fs::File::open("/proc/thread-self/ns/net")
        .unwrap()
        .into()
}

/// Runs `ip ARGS` inside the namespace `ns` (from a helper thread that enters it), so
/// a test body on any runtime thread can reconfigure the test's namespace.
pub fn ip_in(ns: &OwnedFd, args: &[&str]) {
    let ns = ns.try_clone().unwrap();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .unwrap();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ip(&args);
    })
    .join()
    .unwrap();
}

/// An IPv4/UDP packet (UDP checksum 0: "none").
pub fn udp_packet(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) -> Vec<u8> {
    let total = (20 + 8 + payload.len()) as u16;
    let mut p = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
    p[2..4].copy_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&src.0.octets());
    p.extend_from_slice(&dst.0.octets());
    let sum = greenfd_rt::internet_checksum(&p);
    p[10..12].copy_from_slice(&sum.to_be_bytes());
    p.extend_from_slice(&src.1.to_be_bytes());
    p.extend_from_slice(&dst.1.to_be_bytes());
    p.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

/// The UDP payload of an IPv4 packet to `port`, if it is one.
pub fn udp_payload_to(packet: &[u8], port: u16) -> Option<&[u8]> {
    if packet.len() < 28 || packet[0] >> 4 != 4 || packet[9] != 17 {
        return None;
    }
    let ihl = usize::from(packet[0] & 0xf) * 4;
    let udp = packet.get(ihl..)?;
    (udp.len() >= 8 && u16::from_be_bytes([udp[2], udp[3]]) == port).then(|| &udp[8..])
}
