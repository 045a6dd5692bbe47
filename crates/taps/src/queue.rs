//! Per-consumer coalescing event queues.
//!
//! A queue is a bounded ring of *dirty taps*, not of events: a tap that fires a million
//! times before the consumer reads is one ring entry whose pending bits are the OR of all
//! deliveries (see `tap.rs`). The ring therefore never needs more entries than there are
//! taps; a smaller ring that fills up sets `overflowed` instead of growing, and the next
//! read rescans the queue's member table, which holds every tap feeding it. Memory is
//! `O(ring capacity + taps)` whatever the firing rate, and no readiness is ever dropped.
//!
//! The queue is pollable: its descriptor (an eventfd, or a vpoll fd) is readable exactly
//! while the ring is non-empty or overflowed. It is raised by the push that makes the queue
//! non-empty and lowered by the read that finds it empty, both under the queue lock, so an
//! outside loop (epoll, tokio, Python) that waits on the fd and then calls
//! [`EventQueue::try_wait`] never misses an event. In-process [`EventQueue::wait`] callers
//! block on a condition variable signalled at the same transitions.

use crate::error::{Error, Result};
use crate::slots::Slots;
use crate::sync::{Arc, Condvar, Mutex, lock};
use crate::tap::{Sink, TapShared};
use greenfd_vpoll::Events;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

#[cfg(not(loom))]
use crate::notify::Notifier;
#[cfg(not(loom))]
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

/// Ring capacity of [`EventQueue::new`].
pub const DEFAULT_CAPACITY: usize = 1024;

/// One readiness report: the tap's token and the bits asserted since the last read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// The token given when the tap was registered.
    pub token: u64,
    /// Readiness bits (within the tap's filter, plus ERR/HUP) asserted since the last read.
    pub events: Events,
}

/// What kind of descriptor makes an [`EventQueue`] pollable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pollable {
    /// An eventfd (always available).
    #[default]
    EventFd,
    /// A [`greenfd_vpoll::VpollFd`] raised with IN (needs a vpoll backend).
    Vpoll,
}

/// Sizes and counters of a queue, for monitoring and for tests that bound memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Dirty-tap entries in the ring now.
    pub ring_len: usize,
    /// Entries the ring may hold (its configured capacity).
    pub ring_capacity: usize,
    /// Entries the ring's buffer has allocated (never grows past the first allocation).
    pub ring_allocated: usize,
    /// Taps feeding the queue now.
    pub members: usize,
    /// Slots in the member table (live taps plus free slots awaiting reuse).
    pub member_slots: usize,
    /// Pushes that found the ring full.
    pub overflows: u64,
    /// Reads that rescanned the member table after an overflow.
    pub rescans: u64,
    /// Whether the queue's descriptor (or condition) is raised.
    pub signalled: bool,
}

/// Builds an [`EventQueue`] with a chosen ring capacity and descriptor kind.
#[derive(Clone, Debug)]
pub struct QueueBuilder {
    /// Ring entries before overflow forces a rescan.
    capacity: usize,
    /// Descriptor that makes the queue pollable.
    pollable: Pollable,
}

impl Default for QueueBuilder {
    fn default() -> Self {
        QueueBuilder {
            capacity: DEFAULT_CAPACITY,
            pollable: Pollable::EventFd,
        }
    }
}

impl QueueBuilder {
    /// Ring capacity (at least 1); a full ring falls back to a rescan, never to loss.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The descriptor kind that makes the queue pollable.
    pub fn pollable(mut self, pollable: Pollable) -> Self {
        self.pollable = pollable;
        self
    }

    /// Creates the queue.
    pub fn build(&self) -> Result<EventQueue> {
        if self.capacity == 0 {
            return Err(Error::ZeroCapacity);
        }
        // Under loom the descriptor (the queue's only syscalls) is compiled out.
        #[cfg(not(loom))]
        let fd = std::sync::Arc::new(match self.pollable {
            Pollable::EventFd => Notifier::eventfd()?,
            Pollable::Vpoll => Notifier::vpoll()?,
        });
        let state = QueueState {
            ring: VecDeque::with_capacity(self.capacity),
            capacity: self.capacity,
            overflowed: false,
            members: Slots::default(),
            signalled: false,
            closed: false,
            overflows: 0,
            rescans: 0,
            #[cfg(not(loom))]
            notifier: Some(std::sync::Arc::clone(&fd)),
            fd_error: None,
        };
        Ok(EventQueue {
            core: Arc::new(QueueCore {
                state: Mutex::new(state),
                ready: Condvar::new(),
            }),
            #[cfg(not(loom))]
            fd,
        })
    }
}

/// The part of a queue that taps point at; it outlives the user's handle while they do.
pub(crate) struct QueueCore {
    /// Ring, member table and signal, all under one lock that no other lock nests in.
    state: Mutex<QueueState>,
    /// Wakes in-process [`EventQueue::wait`] callers at the empty → non-empty transition.
    ready: Condvar,
}

/// Everything behind the queue lock.
struct QueueState {
    /// Dirty taps, oldest first; never longer than `capacity`.
    ring: VecDeque<Arc<TapShared>>,
    /// Ring entries allowed.
    capacity: usize,
    /// A push found the ring full: the next read must rescan `members`.
    overflowed: bool,
    /// Every tap feeding this queue, at the slot fixed when it was enrolled.
    members: Slots<TapShared>,
    /// The descriptor/condition is raised (ring non-empty or overflowed since last read).
    signalled: bool,
    /// The user's handle is gone: deliveries are dropped and members released.
    closed: bool,
    /// Pushes that found the ring full.
    overflows: u64,
    /// Reads that rescanned.
    rescans: u64,
    /// The descriptor to raise and lower; `None` once the handle is dropped.
    #[cfg(not(loom))]
    notifier: Option<std::sync::Arc<Notifier>>,
    /// A raise that failed in a firer's thread, reported by the next read.
    fd_error: Option<std::io::Error>,
}

impl QueueState {
    /// Raises the queue's signal if it is down; called with the lock held.
    fn raise(&mut self, ready: &Condvar) {
        if self.signalled {
            return;
        }
        self.signalled = true;
        #[cfg(not(loom))]
        if let Some(n) = &self.notifier
            && let Err(e) = n.raise()
        {
            self.fd_error.get_or_insert(e);
        }
        ready.notify_all();
    }

    /// Lowers the signal if nothing is left to read.
    fn settle(&mut self) -> std::io::Result<()> {
        if !self.signalled || !self.ring.is_empty() || self.overflowed {
            return Ok(());
        }
        self.signalled = false;
        #[cfg(not(loom))]
        if let Some(n) = &self.notifier {
            n.lower()?;
        }
        Ok(())
    }

    /// Moves every pending readiness into `out`; returns how many events it added.
    fn drain(&mut self, out: &mut Vec<Event>) -> usize {
        let before = out.len();
        let mut collect = |tap: &TapShared| {
            if let Some(events) = tap.take() {
                out.push(Event {
                    token: tap.token,
                    events,
                });
            }
        };
        if self.overflowed {
            // Every tap whose QUEUED bit is set is in the ring or was turned away by a
            // full ring; scanning all members finds both, so the ring can be discarded.
            self.overflowed = false;
            self.rescans += 1;
            self.ring.clear();
            self.members.iter().for_each(|t| collect(t));
        } else {
            // `drain` keeps the ring's allocation: its size stays fixed for the queue's life.
            self.ring.drain(..).for_each(|t| collect(&t));
        }
        out.len() - before
    }
}

/// A consumer's queue of readiness events from any number of taps.
///
/// Coalescing: a tap that fires many times between reads is reported once, with the OR of
/// the bits. Batch reads: [`wait`](Self::wait) appends every pending event to a vector.
/// Pollable: [`AsFd`] gives a descriptor that is readable while events are pending.
pub struct EventQueue {
    /// The shared core; taps hold it too.
    core: Arc<QueueCore>,
    /// The descriptor handed out by `as_fd` (the core's state holds the other reference,
    /// which it drops when this handle is dropped, so the fd closes with the handle).
    #[cfg(not(loom))]
    fd: std::sync::Arc<Notifier>,
}

impl std::fmt::Debug for EventQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventQueue")
            .field("stats", &self.stats())
            .finish()
    }
}

impl EventQueue {
    /// A queue with a 1 024-entry ring, pollable through an eventfd.
    pub fn new() -> Result<Self> {
        QueueBuilder::default().build()
    }

    /// A builder to choose the ring capacity and the descriptor kind.
    pub fn builder() -> QueueBuilder {
        QueueBuilder::default()
    }

    /// Appends pending events to `out`, blocking up to `timeout` (`None`: forever) until
    /// there is at least one. Returns how many were appended (0 on timeout).
    ///
    /// Fails only if raising or lowering the queue's descriptor failed; events already
    /// consumed are then still in `out`.
    pub fn wait(&self, out: &mut Vec<Event>, timeout: Option<Duration>) -> Result<usize> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut st = lock(&self.core.state);
        loop {
            let n = st.drain(out);
            let settled = st.settle();
            if let Some(e) = st.fd_error.take() {
                return Err(e.into());
            }
            settled?;
            if n > 0 {
                return Ok(n);
            }
            // No deadline: no timeout, or one too far in the future to represent.
            st = match deadline {
                None => self.core.ready.wait(st).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(0);
                    }
                    self.core
                        .ready
                        .wait_timeout(st, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// Appends pending events to `out` without blocking; for loops that poll the fd.
    ///
    /// May return 0 after the fd was readable: the only dirty taps were deregistered
    /// before this read. The fd is lowered all the same.
    pub fn try_wait(&self, out: &mut Vec<Event>) -> Result<usize> {
        self.wait(out, Some(Duration::ZERO))
    }

    /// Sizes and counters of the queue now.
    pub fn stats(&self) -> QueueStats {
        let st = lock(&self.core.state);
        QueueStats {
            ring_len: st.ring.len(),
            ring_capacity: st.capacity,
            ring_allocated: st.ring.capacity(),
            members: st.members.len(),
            member_slots: st.members.capacity(),
            overflows: st.overflows,
            rescans: st.rescans,
            signalled: st.signalled,
        }
    }

    /// The shared core, for registering taps.
    pub(crate) fn core(&self) -> &Arc<QueueCore> {
        &self.core
    }
}

#[cfg(not(loom))]
impl AsFd for EventQueue {
    /// The queue's descriptor: readable while events are pending.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(not(loom))]
impl AsRawFd for EventQueue {
    /// The queue's descriptor number (for loops that take numbers, like Python's).
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl Drop for EventQueue {
    fn drop(&mut self) {
        // Releasing the members breaks the core → tap → core cycle; taps still registered
        // on sources keep the (closed) core alive and their deliveries become no-ops.
        let (ring, members) = {
            let mut st = lock(&self.core.state);
            st.closed = true;
            #[cfg(not(loom))]
            {
                st.notifier = None;
            }
            (
                std::mem::take(&mut st.ring),
                std::mem::take(&mut st.members),
            )
        };
        // Dropped outside the lock: the last reference to a tap may go here.
        drop((ring, members));
    }
}

/// Enrolls a new tap in the queue's member table and returns it.
pub(crate) fn enroll(core: &Arc<QueueCore>, token: u64, filter: Events) -> Arc<TapShared> {
    let mut st = lock(&core.state);
    let (_, tap) = st.members.insert_with(|slot| {
        let sink = Sink::Queue {
            core: Arc::clone(core),
            slot,
        };
        Arc::new(TapShared::new(token, filter, sink))
    });
    tap
}

/// Removes a retired tap from the member table (no-op once the queue is closed).
pub(crate) fn forget(core: &QueueCore, slot: usize, tap: &Arc<TapShared>) {
    let removed = {
        let mut st = lock(&core.state);
        if st.closed {
            return;
        }
        st.members.remove(slot, tap)
    };
    drop(removed);
}

/// Puts a tap whose QUEUED bit the caller just set onto the ring (or flags overflow).
pub(crate) fn push(core: &QueueCore, tap: &Arc<TapShared>) {
    let mut st = lock(&core.state);
    if st.closed {
        return;
    }
    if st.ring.len() < st.capacity {
        st.ring.push_back(Arc::clone(tap));
    } else {
        st.overflowed = true;
        st.overflows += 1;
    }
    st.raise(&core.ready);
}
