//! A robust epoll IO manager.
//!
//! Making a file descriptor *cooperative* means: set it non-blocking, and when a
//! syscall says `EAGAIN`, park the task until epoll says the fd is ready. That is easy
//! for fds the runtime owns and surprisingly hard for fds it merely borrows, which can
//! be closed, `dup`ed or have their number reused behind its back; runtimes that get
//! this wrong busy-loop or leak registrations. This crate provides both paths:
//!
//! * [`Reactor::wait_readable`] / [`wait_writable`](Reactor::wait_writable) /
//!   [`wait_priority`](Reactor::wait_priority) for *borrowed* fds, with Trio's
//!   one-shot discipline (the design essay heads `src/wait.rs`), plus
//!   [`Reactor::notify_closing`];
//! * [`Reactor::register`] → [`Registration`], a persistent edge-triggered
//!   registration for *owned* fds, with tokio-style readiness + tick in one atomic word
//!   and no syscall per wait;
//! * [`Waker`] for cross-thread wake-ups (coalesced eventfd writes) and
//!   [`Reactor::statistics`].
//!
//! The reactor is shared across threads and its futures are `Send`: they work inside
//! `tokio::spawn`, on smol, and on `greenfd-rt`, whose executor drives the
//! [global](Reactor::global) reactor when idle; with no executor attached, a fallback
//! thread parks in `epoll_wait` for it (started only when a task first parks). A
//! reactor made with [`Reactor::new`] is driven by its owner through [`Reactor::turn`];
//! its epoll fd is itself pollable ([`AsFd`](std::os::fd::AsFd)), so it nests into other
//! event loops.
//!
//! ```
//! use greenfd_reactor::Reactor;
//! use std::io::Write;
//! use std::os::fd::AsFd;
//! use std::os::unix::net::UnixStream;
//! use std::pin::pin;
//! use std::task::{Context, Poll, Waker};
//!
//! let reactor = Reactor::new()?;
//! let (mut a, b) = UnixStream::pair()?;
//! let mut wait = pin!(reactor.wait_readable(b.as_fd()));
//! let mut cx = Context::from_waker(Waker::noop());
//! assert!(wait.as_mut().poll(&mut cx).is_pending());
//! a.write_all(b"hello")?;
//! reactor.turn(None)?; // the executor's job: wakes the waiting task
//! assert!(matches!(wait.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod poller;
mod reactor;
mod registration;
mod wait;
mod waker;

pub use error::Error;
pub use poller::{EventBuffer, Interest, Mode, PollEvent, Poller, Ready};
pub use reactor::{Candidate, Driver, ExecutorAttachment, Reactor, Statistics};
pub use registration::{ReadyEvent, Registration};
pub use wait::{Direction, WaitFd};
pub use waker::Waker;
