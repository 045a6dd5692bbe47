//! Readiness sources, taps and coalescing event queues with race-free lifetimes.
//!
//! A user-space device — a virtual NIC, a pipe between tasks, a timer wheel, a vpoll fd —
//! has readiness that many waiters care about, and the hard part is not the bits but the
//! lifetimes: a waiter registers on a source while another thread closes it, a queue is
//! dropped while a producer fires into it, a tap is dropped while its event is in flight.
//! This crate gives each party one clear rule:
//!
//! * A [`Source`] holds a readiness mask ([`Events`], the `EPOLL*` bits). [`Source::set`],
//!   [`add`](Source::add) and [`clear`](Source::clear) deliver the bits that rose to every
//!   [`Subscription`]. Closing (or dropping) the source wakes every tap with HUP.
//! * A [`Subscription`] (a *tap* on the source) is one registration: a filter, a token and
//!   a sink. Subscriptions are identified by
//!   object identity, never by a descriptor number or token, so a reused token or fd cannot
//!   alias a dead registration. A tap holds its source alive while registered and is
//!   deregistered exactly once, by [`Subscription::close`] or `Drop`, and only if registration
//!   succeeded. Registering reports the source's current state at once, so there is no
//!   lost wake-up between "check the level" and "register".
//! * Registration and deregistration edit the source's table under its lock; firing copies
//!   a pointer to the table under the lock and delivers after releasing it. No sink is ever
//!   called with a table locked.
//! * An [`EventQueue`] is one consumer's inbox: events coalesce per tap (bits OR'd until
//!   read), dirty taps sit in a bounded ring, and a full ring sets an overflow flag that
//!   makes the next read rescan every tap — memory stays bounded and nothing is lost.
//!   [`EventQueue::wait`] reads a batch; the queue's descriptor (an eventfd or a vpoll fd)
//!   is readable while events are pending, so the queue nests into epoll, tokio, Python or
//!   the greenfd reactor.
//! * A [`VpollSink`] mirrors a source's level into a vpoll fd, so an outside event loop,
//!   even in another process that inherited the fd, waits on a user-space source directly.
//!
//! # Lifetime rules
//!
//! 1. A registered tap keeps its source's state alive; the source's table keeps the tap's
//!    shared state alive; a queue's member table keeps a tap's shared state alive until the
//!    tap deregisters or the queue handle is dropped. Nothing points back strongly from a source to a handle,
//!    so no cycle outlives the handles.
//! 2. Deregistration happens exactly once, only after a successful registration: `close`
//!    consumes the handle, `Drop` runs only if `close` did not, and both pass one flag that
//!    only a successful registration sets. A failed registration undoes its queue
//!    membership itself.
//! 3. Once deregistration returns, the queue reports no event for that tap: a firer still
//!    walking an older table snapshot may mark it dirty, but a dead tap is dropped unread.
//! 4. Closing a source empties its table and delivers HUP to every tap that was in it; a
//!    tap dropped afterwards leaves the (empty) table alone, and registering after close
//!    fails with [`Error::SourceClosed`].
//! 5. Dropping a queue while producers fire into it is safe: deliveries to a dropped queue
//!    are discarded, its descriptor closes with the handle, and taps may still be dropped.
//!
//! The concurrent paths (register vs fire, register vs close, fire vs close, close vs drop
//! of a tap, drop vs register into the freed slot, drop of a queue while firing, overflow
//! vs read, a blocked reader vs a firer) are checked with `loom` in `tests/loom.rs`; the
//! crate's locks and atomics come from one internal `sync` module that swaps in loom's
//! types under `cfg(loom)`, and the queue's descriptor (the only syscalls) is compiled out
//! there. The crate has no `unsafe` code, so use-after-free is excluded by construction;
//! loom additionally fails a model on a leaked reference or a lost wake-up (deadlock).
//!
//! ```
//! use greenfd_taps::{Event, EventQueue, Events, Source};
//! use std::time::Duration;
//!
//! let nic = Source::new(Events::OUT);            // a device that can send now
//! let queue = EventQueue::new()?;
//! let tap = nic.subscribe(&queue, Events::IN | Events::OUT, 7)?;
//!
//! let mut events = Vec::new();
//! queue.try_wait(&mut events)?;                  // the level at registration
//! assert_eq!(events, [Event { token: 7, events: Events::OUT }]);
//!
//! events.clear();
//! std::thread::scope(|s| {
//!     s.spawn(|| nic.add(Events::IN));           // a packet arrives on another thread
//!     queue.wait(&mut events, Some(Duration::from_secs(10)))
//! })?;
//! assert_eq!(events, [Event { token: 7, events: Events::IN }]);
//!
//! nic.close();                                   // the device goes away
//! events.clear();
//! queue.try_wait(&mut events)?;
//! assert_eq!(events, [Event { token: 7, events: Events::HUP }]);
//! tap.close();                                   // deregistration after close is a no-op
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod error;
#[cfg(not(loom))]
mod notify;
mod queue;
#[cfg(not(loom))]
mod sink;
mod slots;
mod source;
mod sync;
mod tap;

pub use error::{Error, Result};
pub use greenfd_vpoll::Events;
pub use queue::{DEFAULT_CAPACITY, Event, EventQueue, Pollable, QueueBuilder, QueueStats};
#[cfg(not(loom))]
pub use sink::VpollSink;
pub use source::{Source, Subscription};

/// Checks an internal invariant in debug and loom builds (release builds trust it).
macro_rules! invariant {
    ($cond:expr, $msg:literal) => {
        if cfg!(any(debug_assertions, loom)) {
            assert!($cond, $msg);
        }
    };
}
pub(crate) use invariant;
