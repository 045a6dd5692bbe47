//! Cross-thread wake latency: another thread signals, a task on the runtime's thread
//! runs and acknowledges; the signalling thread measures the round trip.
//!
//! Both runtimes run the same executor-agnostic [`Signal`] future, so the figure
//! compares their cross-thread wake paths (greenfd: eventfd `Waker`; tokio: its
//! driver's unpark), not two different channel implementations.
//!
//! [`fd_round_trip_us`] measures the readiness path instead: another thread writes a
//! byte into a socket and the task reading it runs, through greenfd's `Async` on
//! greenfd-rt, greenfd's `Async` inside a tokio task (greenfd's fallback thread drives
//! its reactor and wakes the tokio task: one more thread hop than tokio's own), and
//! tokio's `UnixStream`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// A one-slot cross-thread signal: `notify` from any thread, `wait` in a task.
#[derive(Default)]
pub struct Signal {
    /// Set by `notify`, consumed by the waiting task.
    flag: AtomicBool,
    /// The waiting task's waker.
    waker: Mutex<Option<Waker>>,
}

impl Signal {
    /// Sets the flag and wakes the waiting task, if any.
    pub fn notify(&self) {
        self.flag.store(true, Ordering::Release);
        let waker = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Completes once the flag is set, consuming it.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        SignalWait { signal: self }
    }
}

/// The future of [`Signal::wait`].
struct SignalWait<'a> {
    /// The signal waited on.
    signal: &'a Signal,
}

impl Future for SignalWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.flag.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        *self.signal.waker.lock().unwrap_or_else(|p| p.into_inner()) = Some(cx.waker().clone());
        // Re-check: a notify between the first check and storing the waker found no waker.
        if self.signal.flag.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// Which runtime hosts the waiting task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// `greenfd_rt::block_on`.
    Greenfd,
    /// tokio `current_thread`.
    Tokio,
}

/// Mean of `rounds` signal → task runs → ack round trips, in µs.
pub fn round_trip_us(runtime: Runtime, rounds: u64) -> io::Result<f64> {
    let signal = Arc::new(Signal::default());
    let acked = Arc::new(AtomicU64::new(0));
    let task = {
        let (signal, acked) = (Arc::clone(&signal), Arc::clone(&acked));
        async move {
            for i in 1..=rounds {
                signal.wait().await;
                acked.store(i, Ordering::Release);
            }
        }
    };
    let thread = std::thread::Builder::new()
        .name(format!("{runtime:?}-wake"))
        .spawn(move || -> io::Result<()> {
            match runtime {
                Runtime::Greenfd => greenfd_rt::block_on(task),
                Runtime::Tokio => tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .map(|rt| rt.block_on(task)),
            }
        })?;
    time_round_trips(
        rounds,
        &acked,
        thread,
        "wake never reached the task",
        || {
            signal.notify();
            Ok(())
        },
    )
}

/// The measuring side of both benches: for each round `i` in `1..=rounds`, `trigger`
/// starts it and it ends when the task running on `thread` has stored `i` into
/// `acked`. Returns the mean round trip in µs once `thread` has ended; a round that
/// does not end within 60 s, or a runtime thread that ends early, is an error `lost`.
fn time_round_trips(
    rounds: u64,
    acked: &AtomicU64,
    thread: std::thread::JoinHandle<io::Result<()>>,
    lost: &str,
    mut trigger: impl FnMut() -> io::Result<()>,
) -> io::Result<f64> {
    // Let the task reach its first wait, so the first round measures a sleeping runtime.
    std::thread::sleep(Duration::from_millis(20));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut total = Duration::ZERO;
    for i in 1..=rounds {
        let start = Instant::now();
        trigger()?;
        while acked.load(Ordering::Acquire) < i {
            // A thread that ended stored its last ack first: look again before giving up.
            let ended = thread.is_finished() && acked.load(Ordering::Acquire) < i;
            if Instant::now() > deadline || ended {
                return Err(io::Error::new(io::ErrorKind::TimedOut, lost));
            }
            std::hint::spin_loop();
        }
        total += start.elapsed();
        // Give the runtime time to go back to sleep in epoll_wait: we measure wake-ups
        // of a parked runtime, not of one still spinning down.
        let park = Instant::now();
        while park.elapsed() < Duration::from_micros(50) {
            std::hint::spin_loop();
        }
    }
    thread
        .join()
        .map_err(|_| io::Error::other("runtime thread panicked"))??;
    Ok(total.as_secs_f64() * 1e6 / rounds as f64)
}

/// Who waits for the fd in [`fd_round_trip_us`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdWaiter {
    /// `greenfd_rt::Async` on `greenfd_rt::block_on` (the executor drives the reactor).
    Greenfd,
    /// `greenfd_rt::Async` in a task of tokio's current-thread runtime (greenfd's
    /// fallback thread drives the reactor and wakes the tokio task).
    GreenfdInTokio,
    /// `greenfd_rt::Async` in a task of tokio's current-thread runtime, with greenfd's
    /// reactor nested in tokio's (its epoll fd watched by an `AsyncFd`, turned by a tokio
    /// task): no fallback thread, no extra thread hop.
    GreenfdNestedInTokio,
    /// `tokio::net::UnixStream` on tokio's current-thread runtime.
    Tokio,
}

/// The global reactor's epoll fd, as tokio's `AsyncFd` wants it.
struct NestedReactor(greenfd_rt::reactor::Reactor);

impl std::os::fd::AsRawFd for NestedReactor {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

/// Drives greenfd's global reactor from a tokio task: whenever its epoll fd is readable,
/// one non-blocking turn wakes the greenfd futures the reports concern. The reactor is
/// attached as driven by an executor meanwhile, so its fallback thread stands aside.
// tokio's only non-deprecated way to watch a foreign fd is its `unsafe` registration
// (an fd-validity contract, like FFI); this one place in the crate allows it.
#[allow(unsafe_code)]
async fn drive_in_tokio(reactor: greenfd_rt::reactor::Reactor) -> io::Result<()> {
    let _attached = reactor.attach_executor();
    // SAFETY: `NestedReactor` holds a handle to the reactor, which keeps its epoll fd open
    // and unchanged for as long as the `AsyncFd` owns it.
    let fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(
            NestedReactor(reactor.clone()),
            tokio::io::Interest::READABLE,
        )
    }?;
    loop {
        let mut ready = fd.readable().await?;
        if let Some(mut driver) = reactor.try_lock_driver() {
            // One turn takes up to 1024 reports: far more than this bench produces.
            driver.turn(Some(Duration::ZERO))?;
        }
        ready.clear_ready();
    }
}

/// Mean of `rounds` "another thread writes one byte into a socket → the task reading it
/// runs → ack" round trips, in µs: the wake path of a readiness report.
pub fn fd_round_trip_us(waiter: FdWaiter, rounds: u64) -> io::Result<f64> {
    let (tx, rx) = std::os::unix::net::UnixStream::pair()?;
    rx.set_nonblocking(true)?;
    let acked = Arc::new(AtomicU64::new(0));
    let acks = Arc::clone(&acked);
    let thread = std::thread::Builder::new()
        .name(format!("{waiter:?}-fd-wake"))
        .spawn(move || -> io::Result<()> {
            let greenfd_acks = Arc::clone(&acks);
            let greenfd_loop = move |rx| async move {
                use futures_lite::AsyncReadExt;
                let mut rx = greenfd_rt::Async::new(rx)?;
                let mut b = [0u8; 1];
                for i in 1..=rounds {
                    rx.read_exact(&mut b).await?;
                    greenfd_acks.store(i, Ordering::Release);
                }
                Ok::<_, io::Error>(())
            };
            let tokio_rt = || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
            };
            match waiter {
                FdWaiter::Greenfd => greenfd_rt::block_on(greenfd_loop(rx))?,
                FdWaiter::GreenfdInTokio => tokio_rt()?.block_on(async {
                    tokio::spawn(greenfd_loop(rx))
                        .await
                        .map_err(io::Error::other)?
                }),
                FdWaiter::GreenfdNestedInTokio => tokio_rt()?.block_on(async {
                    let reactor = greenfd_rt::reactor::Reactor::global()?;
                    let driver = tokio::spawn(drive_in_tokio(reactor));
                    let result = tokio::spawn(greenfd_loop(rx))
                        .await
                        .map_err(io::Error::other)?;
                    driver.abort();
                    result
                }),
                FdWaiter::Tokio => tokio_rt()?.block_on(async {
                    use tokio::io::AsyncReadExt;
                    let mut rx = tokio::net::UnixStream::from_std(rx)?;
                    let mut b = [0u8; 1];
                    for i in 1..=rounds {
                        rx.read_exact(&mut b).await?;
                        acks.store(i, Ordering::Release);
                    }
                    Ok(())
                }),
            }
        })?;
    time_round_trips(
        rounds,
        &acked,
        thread,
        "the byte never reached the task",
        || std::io::Write::write_all(&mut &tx, b"x"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_runtimes_complete_every_round() {
        for rt in [Runtime::Greenfd, Runtime::Tokio] {
            assert!(round_trip_us(rt, 200).unwrap() > 0.0);
        }
    }

    #[test]
    fn every_fd_waiter_completes_every_round() {
        for w in [
            FdWaiter::Greenfd,
            FdWaiter::GreenfdInTokio,
            FdWaiter::GreenfdNestedInTokio,
            FdWaiter::Tokio,
        ] {
            assert!(fd_round_trip_us(w, 200).unwrap() > 0.0);
        }
    }
}
