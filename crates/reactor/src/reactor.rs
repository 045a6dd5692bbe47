//! The [`Reactor`] handle: one epoll instance, its waiters, and `turn`, which an
//! executor calls to process kernel reports and wake tasks.
//!
//! # Sharing
//!
//! A reactor belongs to one thread: the handle is an `Rc` (cheap to clone into every
//! future, no locks on the wait path) and is `!Send`. The executor that owns the thread
//! (`greenfd-rt`) keeps it in a thread-local and calls [`Reactor::turn`] when it has
//! nothing to run. Other threads reach it only through [`Reactor::waker`], an
//! `Arc<Waker>` (eventfd) that interrupts `turn`.
//!
//! # Tokens
//!
//! Every registration carries a 64-bit token: a borrowed-fd wait uses the fd number
//! (below 2^32), a persistent [`Registration`] uses a never-reused key with the top bit
//! set, and the cross-thread waker uses `u64::MAX`.

use crate::error::Error;
use crate::poller::{EventBuffer, Interest, Mode, Poller};
use crate::registration::{Registration, ScheduledIo};
use crate::wait::{self, Direction, FdWaiters, WaitFd};
use crate::waker::Waker;
use std::cell::{BorrowMutError, RefCell, RefMut};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Token of the cross-thread waker.
const WAKER_TOKEN: u64 = u64::MAX;
/// Top bit: the token is a persistent registration's key.
const PERSISTENT: u64 = 1 << 63;

/// A snapshot of what the reactor is doing (Trio's `statistics()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statistics {
    /// Tasks in `wait_readable`.
    pub tasks_waiting_read: usize,
    /// Tasks in `wait_writable`.
    pub tasks_waiting_write: usize,
    /// Tasks in `wait_priority`.
    pub tasks_waiting_priority: usize,
    /// Borrowed fds whose one-shot registration is armed right now.
    pub armed_fds: usize,
    /// Live persistent registrations (owned fds).
    pub persistent_registrations: usize,
    /// `armed_fds + persistent_registrations`: fds that can produce a report.
    pub registered_fds: usize,
    /// The kernel interface: always `"epoll"`.
    pub backend: &'static str,
}

/// The reactor's mutable tables.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Waiters on borrowed fds, by fd number.
    pub(crate) fds: HashMap<RawFd, FdWaiters>,
    /// Persistent registrations, by token.
    registrations: HashMap<u64, Rc<ScheduledIo>>,
    /// Fd numbers owned by a persistent registration, with its token; borrowed-fd waits
    /// on them are refused (a one-shot `MOD` would hijack the persistent registration).
    pub(crate) owned: HashMap<RawFd, u64>,
    /// The next persistent key (never reused, so a late report can't reach a new owner).
    next_key: u64,
}

/// What a handle points to.
#[derive(Debug)]
struct Inner {
    /// The epoll instance.
    poller: Poller,
    /// Cross-thread wake-up, registered level-triggered under `WAKER_TOKEN`.
    waker: Arc<Waker>,
    /// Waiters and registrations.
    state: RefCell<State>,
    /// Reused event buffer for `turn`.
    events: RefCell<EventBuffer>,
}

/// A handle to a single-threaded epoll reactor; clones share it.
#[derive(Clone, Debug)]
pub struct Reactor {
    /// Shared reactor state.
    inner: Rc<Inner>,
}

impl Reactor {
    /// Creates an epoll instance with its cross-thread waker registered.
    pub fn new() -> io::Result<Reactor> {
        let poller = Poller::new()?;
        let waker = Arc::new(Waker::new()?);
        poller.add(waker.as_fd(), WAKER_TOKEN, Interest::READABLE, Mode::Level)?;
        Ok(Reactor {
            inner: Rc::new(Inner {
                poller,
                waker,
                state: RefCell::new(State::default()),
                events: RefCell::new(EventBuffer::with_capacity(1024)),
            }),
        })
    }

    /// The underlying epoll instance, for advanced users who want level-triggered,
    /// exclusive or raw registrations (use tokens below 2^31 that are not fd numbers you
    /// also wait on through this reactor; reports for unknown tokens are ignored).
    pub fn poller(&self) -> &Poller {
        &self.inner.poller
    }

    /// A waker other threads use to interrupt [`Reactor::turn`].
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.inner.waker)
    }

    /// Waits until `fd` is readable (or hung up / in error). See [`WaitFd`].
    pub fn wait_readable<'fd>(&self, fd: BorrowedFd<'fd>) -> WaitFd<'fd> {
        WaitFd::new(self.clone(), fd, Direction::Read)
    }

    /// Waits until `fd` is writable (or hung up / in error).
    pub fn wait_writable<'fd>(&self, fd: BorrowedFd<'fd>) -> WaitFd<'fd> {
        WaitFd::new(self.clone(), fd, Direction::Write)
    }

    /// Waits until `fd` has priority data (or is hung up / in error).
    pub fn wait_priority<'fd>(&self, fd: BorrowedFd<'fd>) -> WaitFd<'fd> {
        WaitFd::new(self.clone(), fd, Direction::Priority)
    }

    /// Tells the reactor `fd` is about to be closed: every task waiting on it wakes with
    /// [`Error::Closed`] and its registration is removed while the number still names
    /// the right file. Call it before closing any fd other tasks might wait on.
    pub fn notify_closing(&self, fd: BorrowedFd<'_>) -> Result<(), Error> {
        let mut wake = Vec::new();
        let result = {
            let mut state = self.state_mut();
            wait::notify_closing(self, &mut state, fd, &mut wake)
        };
        wake.into_iter().for_each(std::task::Waker::wake);
        result
    }

    /// Registers an owned fd persistently, edge-triggered, for reading, writing and
    /// priority data. See [`Registration`].
    pub fn register(&self, fd: BorrowedFd<'_>) -> Result<Registration, Error> {
        self.register_with(fd, Interest::all(), Mode::Edge)
    }

    /// Registers an owned fd with an explicit interest and mode (level, edge, one-shot,
    /// exclusive). With `Level` every turn re-reports a ready fd; with the one-shot modes
    /// call [`Registration::rearm`] after each report.
    pub fn register_with(
        &self,
        fd: BorrowedFd<'_>,
        interest: Interest,
        mode: Mode,
    ) -> Result<Registration, Error> {
        Registration::new(self, fd, interest, mode)
    }

    /// Waits for kernel reports (at most `timeout`; `None` blocks, `Some(ZERO)` polls),
    /// records them, and wakes the tasks they concern. Returns how many tasks it woke.
    /// A signal interrupting the wait counts as an empty turn.
    pub fn turn(&self, timeout: Option<Duration>) -> io::Result<usize> {
        let mut events = self.inner.events.borrow_mut();
        match self.inner.poller.wait(&mut events, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e),
        }
        let mut wake = Vec::new();
        {
            let mut state = self.state_mut();
            for ev in events.iter() {
                if ev.token == WAKER_TOKEN {
                    self.inner.waker.drain()?;
                } else if ev.token & PERSISTENT != 0 {
                    if let Some(io) = state.registrations.get(&ev.token) {
                        io.set_readiness(&ev, &mut wake);
                    }
                } else {
                    wait::dispatch(self, &mut state, ev.token as RawFd, ev.ready, &mut wake);
                }
            }
        }
        drop(events);
        let n = wake.len();
        wake.into_iter().for_each(std::task::Waker::wake);
        Ok(n)
    }

    /// What the reactor is waiting for right now.
    pub fn statistics(&self) -> Statistics {
        let state = self.inner.state.borrow();
        let mut stats = Statistics {
            tasks_waiting_read: 0,
            tasks_waiting_write: 0,
            tasks_waiting_priority: 0,
            armed_fds: 0,
            persistent_registrations: state.registrations.len(),
            registered_fds: 0,
            backend: "epoll",
        };
        for w in state.fds.values() {
            stats.tasks_waiting_read += w.waiting(Direction::Read);
            stats.tasks_waiting_write += w.waiting(Direction::Write);
            stats.tasks_waiting_priority += w.waiting(Direction::Priority);
            stats.armed_fds += usize::from(w.is_armed());
        }
        stats.registered_fds = stats.armed_fds + stats.persistent_registrations;
        stats
    }

    /// The tables, mutably (never held across a waker call).
    pub(crate) fn state_mut(&self) -> RefMut<'_, State> {
        self.inner.state.borrow_mut()
    }

    /// The tables, if not already borrowed (for `Drop`).
    pub(crate) fn try_state_mut(&self) -> Result<RefMut<'_, State>, BorrowMutError> {
        self.inner.state.try_borrow_mut()
    }

    /// Adds a persistent registration's state for fd number `fd`; returns its token.
    /// Refuses (`BusyResource`) a number that borrowed-fd waits or another persistent
    /// registration are using: one owner per fd number in this reactor.
    pub(crate) fn insert_registration(&self, io: Rc<ScheduledIo>, fd: RawFd) -> Result<u64, Error> {
        let mut state = self.state_mut();
        if state.owned.contains_key(&fd) || state.fds.contains_key(&fd) {
            return Err(Error::BusyResource);
        }
        let key = PERSISTENT | state.next_key;
        state.next_key += 1;
        state.registrations.insert(key, io);
        state.owned.insert(fd, key);
        Ok(key)
    }

    /// Forgets a persistent registration.
    pub(crate) fn remove_registration(&self, key: u64, fd: RawFd) {
        if let Ok(mut state) = self.try_state_mut() {
            state.registrations.remove(&key);
            if state.owned.get(&fd) == Some(&key) {
                state.owned.remove(&fd);
            }
        }
    }
}

impl AsFd for Reactor {
    /// The epoll fd: readable when a report is pending, so the reactor nests into
    /// another event loop (epoll, tokio's `AsyncFd`, Python's `select.epoll`).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.poller.as_fd()
    }
}
