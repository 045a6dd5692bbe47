//! The [`Reactor`] handle: one epoll instance, its waiters, and `turn`, which processes
//! kernel reports and wakes tasks.
//!
//! # Sharing and driving
//!
//! A reactor is shared by every thread (`Send + Sync`, an `Arc` inside): its futures are
//! `Send`, so they run inside `tokio::spawn` on a multi-thread runtime as well as on
//! greenfd-rt's executor. Someone has to *drive* it, i.e. call `epoll_wait` and wake
//! the tasks the reports concern; at most one thread does so at a time (it holds the
//! [`Driver`]). smol's async-io is the model:
//!
//! * an executor that wants IO (greenfd-rt's `block_on`) attaches itself
//!   ([`Reactor::attach_executor`]) and drives the reactor whenever it has nothing to
//!   run, blocking in `epoll_wait` instead of sleeping elsewhere. Wakes it issues to its
//!   own tasks during that turn stay on its thread and cost no syscall;
//! * otherwise (a task in tokio or smol) the [global](Reactor::global) reactor starts
//!   one fallback driver thread, the first time a task parks on it while no executor
//!   is attached. That thread parks in `epoll_wait(-1)` (never spins), steps aside
//!   while an executor is attached (it is interrupted through the eventfd and then
//!   waits on a condition variable), and resumes when the last one detaches;
//! * a reactor made with [`Reactor::new`] has no fallback thread: its owner drives it
//!   with [`Reactor::turn`] (or nests its fd into another event loop).
//!
//! To save the fallback thread's hop under another runtime, nest the reactor into it:
//! attach ([`Reactor::attach_executor`]) from a task of that runtime, watch the epoll
//! fd ([`AsFd`]) for readability with the runtime's own fd watcher, and on each report
//! take [`Reactor::try_lock_driver`] and `turn(Some(Duration::ZERO))` (greenfd-bench's
//! `wake` scenario does this with tokio's `AsyncFd`).
//!
//! Limits, by design: while an executor is attached it alone drives, turning the reactor
//! at every iteration of its loop (blocking only when idle), so tasks of other runtimes
//! waiting on the same reactor are served at that pace; a task that blocks the
//! executor's thread delays them as it delays the executor's own tasks. Handing the
//! driver to the fallback thread whenever the executor is busy would cost a
//! cross-thread wake per loop iteration on the single-threaded hot path. A task of
//! another runtime is woken by the driving thread, one thread hop more than that
//! runtime's own reactor. The fallback thread does not survive `fork`: a child that
//! uses the global reactor from another runtime needs an executor to drive it.
//!
//! Locks: the driver lock (held across `epoll_wait`), then the state lock (tables,
//! held briefly, never across a syscall that blocks or a waker call), then a waiter's
//! slot lock. Wakers are always called with no lock of the state held.
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
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::Thread;
use std::time::Duration;

/// Token of the cross-thread waker.
const WAKER_TOKEN: u64 = u64::MAX;
/// Top bit: the token is a persistent registration's key.
const PERSISTENT: u64 = 1 << 63;
/// Kernel reports one turn can take.
const EVENTS_PER_TURN: usize = 1024;

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
    /// `epoll_wait` calls made by turns so far.
    pub turns: u64,
    /// Kernel reports processed by turns so far (the eventfd's included).
    pub reports: u64,
    /// Reports of the cross-thread waker's eventfd so far: each one cost a `write` by a
    /// waker, this report and a `read` to drain it.
    pub wakeup_reports: u64,
    /// `write(2)`s to the cross-thread waker's eventfd so far.
    pub wakeup_writes: u64,
    /// Executors attached (driving the reactor when idle).
    pub executors: usize,
    /// Whether the fallback driver thread has been started.
    pub fallback_driver: bool,
}

/// The reactor's mutable tables.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Waiters on borrowed fds, by fd number.
    pub(crate) fds: IntMap<RawFd, FdWaiters>,
    /// Persistent registrations, by token.
    registrations: IntMap<u64, Arc<ScheduledIo>>,
    /// Fd numbers owned by a persistent registration, with its token; borrowed-fd waits
    /// on them are refused (a one-shot `MOD` would hijack the persistent registration).
    pub(crate) owned: IntMap<RawFd, u64>,
    /// The next persistent key (never reused, so a late report can't reach a new owner).
    next_key: u64,
}

/// A map keyed by fd numbers or registration keys. Neither is chosen by an outside
/// party (the kernel hands out the lowest free fd numbers, keys count up), so a
/// multiplicative hash replaces SipHash on the per-report lookups.
pub(crate) type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// Fibonacci hashing of one integer key.
#[derive(Debug, Default)]
pub(crate) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write_i32(&mut self, n: i32) {
        self.write_u64(u64::from(n as u32));
    }
}

/// What the driver owns across `epoll_wait`: reused buffers, so a turn never allocates.
#[derive(Debug)]
struct DriverState {
    /// Kernel reports.
    events: EventBuffer,
    /// Wakers collected under the state lock, called after it is released.
    wake: Vec<std::task::Waker>,
}

/// Who drives the reactor.
#[derive(Debug, Default)]
struct Driving {
    /// Whether a fallback thread may be started (the global reactor).
    fallback_allowed: bool,
    /// Executors attached: while any is, the fallback thread stands aside.
    executors: AtomicUsize,
    /// Whether the fallback thread was started (it then lives as long as the process).
    fallback_started: AtomicBool,
    /// Where the fallback thread waits while executors are attached.
    fallback_lock: Mutex<()>,
    /// Signalled when the last executor detaches.
    fallback_cv: Condvar,
    /// Threads parked until the driver lock is released.
    candidates: Mutex<Vec<Thread>>,
    /// `candidates.len()`, readable without the lock.
    candidate_count: AtomicUsize,
}

/// What a handle points to.
#[derive(Debug)]
struct Inner {
    /// The epoll instance.
    poller: Poller,
    /// Cross-thread wake-up, registered edge-triggered under `WAKER_TOKEN` (a report
    /// costs no `read`: see [`Waker::reset`]).
    waker: Arc<Waker>,
    /// Waiters and registrations.
    state: Mutex<State>,
    /// Held by the one thread that turns the reactor.
    driver: Mutex<DriverState>,
    /// Who drives.
    driving: Driving,
    /// `epoll_wait` calls.
    turns: AtomicU64,
    /// Reports processed.
    reports: AtomicU64,
    /// Eventfd reports processed.
    wakeup_reports: AtomicU64,
}

/// A handle to an epoll reactor shared across threads; clones share it.
#[derive(Clone, Debug)]
pub struct Reactor {
    /// Shared reactor state.
    inner: Arc<Inner>,
}

/// The process-wide reactor, once created.
static GLOBAL: OnceLock<Reactor> = OnceLock::new();
/// Serialises the creation of [`GLOBAL`] (creation can fail, e.g. `EMFILE`, and is
/// retried by the next caller).
static GLOBAL_INIT: Mutex<()> = Mutex::new(());

impl Reactor {
    /// Creates an epoll instance with its cross-thread waker registered. Its owner
    /// drives it with [`Reactor::turn`]; no fallback thread is ever started for it.
    pub fn new() -> io::Result<Reactor> {
        Reactor::build(false)
    }

    /// The process-wide reactor that greenfd-rt's executor and `Async` use: driven by
    /// an attached executor when one runs, else by a fallback thread started the first
    /// time a task parks on it. Created on first use; fails only if that creation fails
    /// (and a later call tries again).
    pub fn global() -> io::Result<Reactor> {
        if let Some(r) = GLOBAL.get() {
            return Ok(r.clone());
        }
        let _init = GLOBAL_INIT.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = GLOBAL.get() {
            return Ok(r.clone());
        }
        let reactor = Reactor::build(true)?;
        Ok(GLOBAL.get_or_init(|| reactor).clone())
    }

    /// Creates the epoll instance and its waker.
    fn build(fallback_allowed: bool) -> io::Result<Reactor> {
        let poller = Poller::new()?;
        let waker = Arc::new(Waker::new()?);
        poller.add(waker.as_fd(), WAKER_TOKEN, Interest::READABLE, Mode::Edge)?;
        Ok(Reactor {
            inner: Arc::new(Inner {
                poller,
                waker,
                state: Mutex::new(State::default()),
                driver: Mutex::new(DriverState {
                    events: EventBuffer::with_capacity(EVENTS_PER_TURN),
                    wake: Vec::new(),
                }),
                driving: Driving {
                    fallback_allowed,
                    ..Driving::default()
                },
                turns: AtomicU64::new(0),
                reports: AtomicU64::new(0),
                wakeup_reports: AtomicU64::new(0),
            }),
        })
    }

    /// Whether two handles share one reactor.
    pub fn ptr_eq(&self, other: &Reactor) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
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

    /// Drives the reactor once: waits for kernel reports (at most `timeout`; `None`
    /// blocks, `Some(ZERO)` polls), records them, and wakes the tasks they concern.
    /// Returns how many tasks it woke. A signal interrupting the wait counts as an empty
    /// turn. Blocks first while another thread drives (see [`Reactor::try_lock_driver`]).
    pub fn turn(&self, timeout: Option<Duration>) -> io::Result<usize> {
        self.lock_driver().turn(timeout)
    }

    /// Becomes the driver, waiting while another thread is.
    pub fn lock_driver(&self) -> Driver<'_> {
        Driver {
            reactor: self,
            state: Some(
                self.inner
                    .driver
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            ),
        }
    }

    /// Becomes the driver unless another thread is (an executor that gets `None` parks
    /// on its own; see [`Reactor::enlist`]).
    pub fn try_lock_driver(&self) -> Option<Driver<'_>> {
        let state = match self.inner.driver.try_lock() {
            Ok(state) => state,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(Driver {
            reactor: self,
            state: Some(state),
        })
    }

    /// Registers this thread as waiting for the driver: until the returned guard is
    /// dropped, every release of the driver lock unparks it (`std::thread::unpark`).
    /// Enlist, then [`try_lock_driver`](Reactor::try_lock_driver) once more, then park:
    /// a release either precedes that try (which then succeeds) or sees the enlistment.
    pub fn enlist(&self) -> Candidate<'_> {
        let d = &self.inner.driving;
        lock(&d.candidates).push(std::thread::current());
        d.candidate_count.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        Candidate { reactor: self }
    }

    /// Attaches an executor that drives the reactor whenever it is idle (greenfd-rt's
    /// `block_on` does). While any is attached the fallback thread stands aside; the
    /// guard detaches on drop.
    pub fn attach_executor(&self) -> ExecutorAttachment {
        let d = &self.inner.driving;
        d.executors.fetch_add(1, Ordering::SeqCst);
        if d.fallback_started.load(Ordering::SeqCst) {
            // Interrupt the fallback thread's epoll_wait so it hands the driver over.
            self.notify();
        }
        ExecutorAttachment {
            reactor: self.clone(),
        }
    }

    /// Interrupts the thread blocked in `epoll_wait` on this reactor, if any (one
    /// coalesced eventfd `write`).
    pub fn notify(&self) {
        if let Err(e) = self.inner.waker.wake() {
            tracing::warn!(error = %e, "cannot wake the reactor");
        }
    }

    /// Called by a task that parks: makes sure someone will drive the reactor. Costs two
    /// atomic loads once a driver exists.
    pub(crate) fn ensure_driven(&self) {
        let d = &self.inner.driving;
        if d.fallback_allowed
            && d.executors.load(Ordering::SeqCst) == 0
            && !d.fallback_started.load(Ordering::Acquire)
        {
            self.start_fallback();
        }
    }

    /// Starts the fallback driver thread (once).
    fn start_fallback(&self) {
        let d = &self.inner.driving;
        if d.fallback_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let reactor = self.clone();
        let spawned = std::thread::Builder::new()
            .name("greenfd-reactor".into())
            .spawn(move || reactor.fallback_loop());
        match spawned {
            Ok(_) => tracing::debug!("fallback reactor driver started"),
            Err(e) => {
                d.fallback_started.store(false, Ordering::Release);
                tracing::warn!(error = %e, "cannot start the fallback reactor driver");
            }
        }
    }

    /// The fallback thread: drives while no executor is attached, parks otherwise.
    fn fallback_loop(self) {
        let d = &self.inner.driving;
        loop {
            {
                let mut guard = lock(&d.fallback_lock);
                while d.executors.load(Ordering::SeqCst) > 0 {
                    guard = d
                        .fallback_cv
                        .wait(guard)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
            let mut driver = self.lock_driver();
            // An executor that attached after the check above wrote the eventfd, so this
            // wait returns at once and the loop stands aside.
            if d.executors.load(Ordering::SeqCst) > 0 {
                continue;
            }
            if let Err(e) = driver.turn(None) {
                tracing::warn!(error = %e, "fallback reactor turn failed");
                drop(driver);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    /// Processes one `epoll_wait` with the driver lock held.
    fn turn_locked(
        &self,
        driver: &mut DriverState,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        let DriverState { events, wake } = driver;
        match self.inner.poller.wait(events, timeout) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e),
        }
        // Only the driver writes the counters (we hold the driver lock): a plain load
        // and store, no locked read-modify-write on the hot path.
        bump(&self.inner.turns, 1);
        bump(&self.inner.reports, events.len() as u64);
        if !events.is_empty() {
            let mut state = self.state_mut();
            for ev in events.iter() {
                if ev.token == WAKER_TOKEN {
                    bump(&self.inner.wakeup_reports, 1);
                    self.inner.waker.reset();
                } else if ev.token & PERSISTENT != 0 {
                    if let Some(io) = state.registrations.get(&ev.token) {
                        io.set_readiness(&ev, wake);
                    }
                } else {
                    wait::dispatch(self, &mut state, ev.token as RawFd, ev.ready, wake);
                }
            }
        }
        let n = wake.len();
        wake.drain(..).for_each(std::task::Waker::wake);
        Ok(n)
    }

    /// What the reactor is waiting for right now.
    pub fn statistics(&self) -> Statistics {
        let state = self.state_mut();
        let d = &self.inner.driving;
        let mut stats = Statistics {
            turns: self.inner.turns.load(Ordering::Relaxed),
            reports: self.inner.reports.load(Ordering::Relaxed),
            wakeup_reports: self.inner.wakeup_reports.load(Ordering::Relaxed),
            wakeup_writes: self.inner.waker.writes(),
            executors: d.executors.load(Ordering::Relaxed),
            fallback_driver: d.fallback_started.load(Ordering::Relaxed),
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

    /// The tables (never held across a waker call or a blocking syscall).
    pub(crate) fn state_mut(&self) -> MutexGuard<'_, State> {
        lock(&self.inner.state)
    }

    /// Adds a persistent registration's state for fd number `fd`; returns its token.
    /// Refuses (`BusyResource`) a number that borrowed-fd waits or another persistent
    /// registration are using: one owner per fd number in this reactor.
    pub(crate) fn insert_registration(
        &self,
        io: Arc<ScheduledIo>,
        fd: RawFd,
    ) -> Result<u64, Error> {
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
        let removed = {
            let mut state = self.state_mut();
            if state.owned.get(&fd) == Some(&key) {
                state.owned.remove(&fd);
            }
            state.registrations.remove(&key)
        };
        // Dropped after the lock: the last reference drops stored wakers, whose drop
        // may run other code that uses this reactor.
        drop(removed);
    }
}

impl AsFd for Reactor {
    /// The epoll fd: readable when a report is pending, so the reactor nests into
    /// another event loop (epoll, tokio's `AsyncFd`, Python's `select.epoll`).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.poller.as_fd()
    }
}

/// Adds `n` to a counter only the driver writes (readers may see it a little late).
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// Locks `m`; every critical section in this crate leaves its data consistent at each
/// step, so a panic elsewhere (poisoning) does not make the data unusable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The right to turn a reactor: at most one thread holds it. Releasing it unparks the
/// threads [enlisted](Reactor::enlist) to take over.
#[derive(Debug)]
pub struct Driver<'a> {
    /// The reactor driven.
    reactor: &'a Reactor,
    /// The driver lock; `None` only during drop.
    state: Option<MutexGuard<'a, DriverState>>,
}

impl Driver<'_> {
    /// One turn (see [`Reactor::turn`]).
    pub fn turn(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let state = self.state.as_mut().expect("present until drop");
        self.reactor.turn_locked(state, timeout)
    }
}

impl Drop for Driver<'_> {
    fn drop(&mut self) {
        drop(self.state.take());
        // Pairs with `enlist`: either the candidate's retry sees the lock free, or we
        // see the candidate.
        fence(Ordering::SeqCst);
        let d = &self.reactor.inner.driving;
        if d.candidate_count.load(Ordering::SeqCst) > 0 {
            for t in lock(&d.candidates).iter() {
                t.unpark();
            }
        }
    }
}

/// A thread waiting to drive (see [`Reactor::enlist`]); dropping it withdraws.
#[derive(Debug)]
pub struct Candidate<'a> {
    /// The reactor.
    reactor: &'a Reactor,
}

impl Drop for Candidate<'_> {
    fn drop(&mut self) {
        let d = &self.reactor.inner.driving;
        let me = std::thread::current().id();
        let mut list = lock(&d.candidates);
        if let Some(i) = list.iter().position(|t| t.id() == me) {
            list.swap_remove(i);
            d.candidate_count.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// An executor's attachment to a reactor (see [`Reactor::attach_executor`]).
#[derive(Debug)]
pub struct ExecutorAttachment {
    /// The reactor attached to.
    reactor: Reactor,
}

impl Drop for ExecutorAttachment {
    fn drop(&mut self) {
        let d = &self.reactor.inner.driving;
        if d.executors.fetch_sub(1, Ordering::SeqCst) != 1 {
            return;
        }
        if d.fallback_started.load(Ordering::SeqCst) {
            let _guard = lock(&d.fallback_lock);
            d.fallback_cv.notify_all();
        } else if d.fallback_allowed {
            // Tasks of other runtimes may still wait on this reactor: hand it over.
            let waiting = {
                let state = self.reactor.state_mut();
                !state.fds.is_empty() || !state.registrations.is_empty()
            };
            if waiting {
                self.reactor.start_fallback();
            }
        }
    }
}

/// Compile-time checks: handles and futures cross threads.
#[allow(dead_code)]
fn _assert_kinds() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Reactor>();
    send_sync::<Registration>();
    send_sync::<WaitFd<'static>>();
    send_sync::<Statistics>();
    send_sync::<ExecutorAttachment>();
}
