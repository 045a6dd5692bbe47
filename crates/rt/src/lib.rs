//! Green file descriptors: a small cooperative executor where every fd is cooperative.
//!
//! A program that does a blocking `read` on a TAP device inside a cooperative scheduler
//! freezes every other task. `greenfd-rt` makes fds cooperative instead: [`Async<T>`]
//! sets `O_NONBLOCK`, and when a syscall says `EAGAIN` the task parks until the reactor
//! ([`greenfd_reactor`]) reports the fd ready. Regular files, which epoll refuses, go to
//! a small blocking pool. [`TunDevice`] and [`TapDevice`] are packet fds built on the same
//! machinery.
//!
//! The executor is single-threaded: [`block_on`] runs a future and every task
//! [`spawn`]ed from it on the calling thread, with [`sleep`]/[`timeout`] timers, and
//! drives the process-wide reactor ([`reactor::Reactor::global`]), blocking in
//! `epoll_wait` when nothing is runnable. Tasks may be woken from any thread.
//! Borrowed-fd waits (Trio's discipline) are available through [`current_reactor`] or
//! `Reactor::global()`.
//!
//! [`Async<T>`], [`TapDevice`], [`TunDevice`] and the reactor's waits are `Send` and work
//! in any executor: inside `tokio::spawn` (multi-thread or current-thread) or on smol,
//! a fallback thread drives the reactor while no greenfd-rt executor is running. The
//! timers ([`sleep`], [`timeout`]) and [`spawn`] belong to greenfd-rt's executor.
//!
//! ```
//! use futures_lite::{AsyncReadExt, AsyncWriteExt};
//! use greenfd_rt::{Async, block_on, spawn};
//! use std::os::unix::net::UnixStream;
//!
//! let echoed = block_on(async {
//!     let (a, b) = UnixStream::pair()?;
//!     let (mut a, mut b) = (Async::new(a)?, Async::new(b)?);
//!     let echo = spawn(async move {
//!         let mut buf = [0u8; 5];
//!         b.read_exact(&mut buf).await?;
//!         b.write_all(&buf).await?;
//!         Ok::<_, std::io::Error>(())
//!     });
//!     a.write_all(b"hello").await?;
//!     let mut back = [0u8; 5];
//!     a.read_exact(&mut back).await?;
//!     echo.await.expect("not cancelled")?;
//!     Ok::<_, std::io::Error>(back)
//! })??;
//! assert_eq!(&echoed, b"hello");
//! # Ok::<(), std::io::Error>(())
//! ```

mod async_fd;
mod blocking;
mod executor;
mod time;
mod tun;

pub use async_fd::Async;
pub use blocking::{IDLE_TIMEOUT, MAX_THREADS, Unblock, unblock};
pub use executor::{
    JoinError, JoinHandle, NoRuntime, block_on, current_reactor, spawn, task_count, try_spawn,
};
pub use greenfd_reactor as reactor;
pub use time::{Elapsed, Sleep, Timeout, sleep, timeout};
pub use tun::{DeviceError, TapDevice, TunDevice, internet_checksum};

/// Compile-time checks: the IO types and their futures cross threads, so they run
/// inside `tokio::spawn` on a multi-thread runtime.
#[allow(dead_code)]
fn _assert_kinds() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<Async<std::os::unix::net::UnixStream>>();
    send_sync::<TapDevice>();
    send_sync::<TunDevice>();
    send_sync::<DeviceError>();
    let (tap, tun): (&TapDevice, &TunDevice) = (unreachable_ref(), unreachable_ref());
    let mut buf = [0u8; 1];
    send(&tap.recv(&mut buf));
    send(&tap.send(&[]));
    send(&tun.recv(&mut buf));
    let a: &Async<std::os::unix::net::UnixStream> = unreachable_ref();
    send(&a.readable());
    send(&a.writable());
    send(&a.read_with(|_| Ok(())));
}

/// Never called: gives `_assert_kinds` a typed reference without building a value.
#[allow(dead_code)]
fn unreachable_ref<T>() -> &'static T {
    unreachable!("compile-time check only")
}
