//! Persistent, edge-triggered registrations for fds greenfd owns: no syscall per wait.
//!
//! The one-shot discipline of [`crate::wait`] costs an `epoll_ctl` per wait; that is
//! the price of robustness for fds we do not own. For fds we *do* own (an
//! [`Async`](https://docs.rs/greenfd-rt) socket, a TAP device) we know when they are
//! closed, so we register once, edge-triggered, and keep the kernel's reports in a
//! readiness word, as tokio's `ScheduledIo` does:
//!
//! ```text
//!  bit 31        bits 8..24         bits 0..6
//! [shutdown] ... [tick (16 bits)] .. [readiness: R W RC WC PRI ERR]
//! ```
//!
//! The reactor ORs reported bits in and bumps the tick. A task that got `EAGAIN` clears
//! the bits it saw — but only if the tick is still the one it saw: if an event arrived
//! between its check and its clear (a newer tick), clearing would lose that edge and the
//! task would sleep forever. Closed and error bits are sticky: once the peer hung up, it
//! stays hung up.

use crate::error::Error;
use crate::poller::{Interest, Mode, PollEvent, Ready};
use crate::reactor::Reactor;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

impl Ready {
    /// The bits that end a wait for `interest`.
    fn for_interest(interest: Interest) -> Ready {
        let mut r = Ready::ERROR;
        if interest.contains(Interest::READABLE) {
            r |= Ready::READABLE | Ready::READ_CLOSED;
        }
        if interest.contains(Interest::WRITABLE) {
            r |= Ready::WRITABLE | Ready::WRITE_CLOSED;
        }
        if interest.contains(Interest::PRIORITY) {
            r |= Ready::PRIORITY | Ready::READ_CLOSED;
        }
        r
    }
}

/// The directions with a waiter slot each, in slot order (read, write, priority).
const DIRECTIONS: [Interest; 3] = [Interest::READABLE, Interest::WRITABLE, Interest::PRIORITY];

/// The waiter slot of a wait for `interest`: write if it includes writable, else
/// priority if it includes priority, else read.
fn waiter_slot(interest: Interest) -> usize {
    if interest.contains(Interest::WRITABLE) {
        1
    } else if interest.contains(Interest::PRIORITY) {
        2
    } else {
        0
    }
}

/// Where the tick lives in the readiness word.
const TICK_SHIFT: u32 = 8;
/// The tick's width.
const TICK_MASK: usize = 0xffff;
/// Set once the registration is shut down; every wait then ends with `Closed`.
const SHUTDOWN: usize = 1 << 31;

/// Readiness seen by a task: the bits, and the tick that lets it clear them safely.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadyEvent {
    /// The tick at the time of the check.
    tick: u16,
    /// The bits the task waited for that were set.
    pub ready: Ready,
}

/// Readiness word and waiters of one registration (tokio's `ScheduledIo`).
///
/// The word is updated first and the waiters locked second by the reactor; a poller
/// stores its waker under the lock and then re-reads the word. Whichever takes the lock
/// second sees the other's write, so a report racing with a poll on another thread is
/// never lost.
#[derive(Debug, Default)]
pub(crate) struct ScheduledIo {
    /// Readiness bits | tick << 8 | shutdown bit.
    word: AtomicUsize,
    /// The tasks waiting in each direction (read, write, priority).
    waiters: Mutex<[Option<Waker>; 3]>,
}

impl ScheduledIo {
    /// Records a kernel report: OR the bits in, bump the tick; returns wakers to call.
    pub(crate) fn set_readiness(&self, ev: &PollEvent, wake: &mut Vec<Waker>) {
        let ready = ev.ready;
        let mut cur = self.word.load(Ordering::Acquire);
        loop {
            let tick = ((cur >> TICK_SHIFT) & TICK_MASK).wrapping_add(1) & TICK_MASK;
            let new = (cur & SHUTDOWN)
                | (tick << TICK_SHIFT)
                | usize::from((Ready::from_bits_truncate(cur as u8) | ready).bits());
            match self
                .word
                .compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        self.wake_matching(ready, wake);
    }

    /// The waiters (every update is a single assignment, so a poisoned lock is fine).
    fn waiters(&self) -> MutexGuard<'_, [Option<Waker>; 3]> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Collects the wakers of the directions `ready` concerns.
    fn wake_matching(&self, ready: Ready, wake: &mut Vec<Waker>) {
        let mut waiters = self.waiters();
        for (i, interest) in DIRECTIONS.into_iter().enumerate() {
            if ready.intersects(Ready::for_interest(interest)) {
                wake.extend(waiters[i].take());
            }
        }
    }

    /// Marks the registration shut down and returns every waiter's waker.
    pub(crate) fn shutdown(&self, wake: &mut Vec<Waker>) {
        self.word.fetch_or(SHUTDOWN, Ordering::AcqRel);
        wake.extend(self.waiters().iter_mut().filter_map(Option::take));
    }

    /// Ready if any bit for `interest` is set; otherwise remembers the waker in the
    /// direction's slot.
    fn poll_ready(
        &self,
        cx: &mut Context<'_>,
        interest: Interest,
    ) -> Poll<Result<ReadyEvent, Error>> {
        if let Some(ready) = self.check(interest) {
            return Poll::Ready(ready);
        }
        let mut waiters = self.waiters();
        let slot = &mut waiters[waiter_slot(interest)];
        let old = if slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            None
        } else {
            slot.replace(cx.waker().clone())
        };
        // Re-check under the lock: a report that landed after the first check and took
        // the (old or absent) waker before we stored ours is seen here.
        let again = self.check(interest);
        drop(waiters);
        drop(old); // outside the lock: a waker's drop may run arbitrary code
        match again {
            Some(ready) => Poll::Ready(ready),
            None => Poll::Pending,
        }
    }

    /// The readiness for `interest` now, if the wait is over.
    fn check(&self, interest: Interest) -> Option<Result<ReadyEvent, Error>> {
        let cur = self.word.load(Ordering::Acquire);
        if cur & SHUTDOWN != 0 {
            return Some(Err(Error::Closed));
        }
        let ready = Ready::from_bits_truncate(cur as u8) & Ready::for_interest(interest);
        (!ready.is_empty()).then_some(Ok(ReadyEvent {
            tick: ((cur >> TICK_SHIFT) & TICK_MASK) as u16,
            ready,
        }))
    }

    /// Clears the bits of `event` unless a newer report arrived since (tick changed).
    /// Closed and error bits are never cleared.
    fn clear_readiness(&self, event: ReadyEvent) {
        let clear = event.ready - (Ready::READ_CLOSED | Ready::WRITE_CLOSED | Ready::ERROR);
        let mut cur = self.word.load(Ordering::Acquire);
        loop {
            if ((cur >> TICK_SHIFT) & TICK_MASK) as u16 != event.tick {
                return;
            }
            let new = cur & !usize::from(clear.bits());
            match self
                .word
                .compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }
}

/// A persistent registration of an owned fd; waits cost no syscall.
///
/// Create with [`Reactor::register`]. Call [`Registration::deregister`] before closing
/// the fd (greenfd's `Async` does); dropping the registration only forgets it on our
/// side (a later report for it is ignored, and closing the fd removes it from the
/// kernel).
#[derive(Debug)]
pub struct Registration {
    /// The reactor that delivers reports.
    reactor: Reactor,
    /// Readiness and waiters, shared with the reactor's table.
    io: Arc<ScheduledIo>,
    /// Our key in the reactor's table (never reused).
    key: u64,
    /// The fd number: for tracing, and to release the number in the reactor's table.
    fd: RawFd,
    /// The interest and mode registered.
    interest: Interest,
    /// How the kernel reports readiness.
    mode: Mode,
}

impl Registration {
    /// Registers `fd` with the reactor (called by [`Reactor::register_with`]).
    pub(crate) fn new(
        reactor: &Reactor,
        fd: BorrowedFd<'_>,
        interest: Interest,
        mode: Mode,
    ) -> Result<Registration, Error> {
        let io = Arc::new(ScheduledIo::default());
        let raw = fd.as_raw_fd();
        let key = reactor.insert_registration(Arc::clone(&io), raw)?;
        let poller = reactor.poller();
        let added = match poller.add(fd, key, interest, mode) {
            // A disarmed one-shot registration left by an earlier borrowed-fd wait on
            // this file (see `crate::wait`): take it over.
            Err(e) if rustix::io::Errno::from_io_error(&e) == Some(rustix::io::Errno::EXIST) => {
                poller.modify(fd, key, interest, mode)
            }
            other => other,
        };
        if let Err(e) = added {
            reactor.remove_registration(key, raw);
            return Err(Error::Io(e));
        }
        Ok(Registration {
            reactor: reactor.clone(),
            io,
            key,
            fd: fd.as_raw_fd(),
            interest,
            mode,
        })
    }

    /// Polls for read readiness (data, end of stream, error).
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<Result<ReadyEvent, Error>> {
        self.poll_ready(cx, Interest::READABLE)
    }

    /// Polls for write readiness (room, hang-up, error).
    pub fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<Result<ReadyEvent, Error>> {
        self.poll_ready(cx, Interest::WRITABLE)
    }

    /// Polls for priority readiness.
    pub fn poll_priority_ready(&self, cx: &mut Context<'_>) -> Poll<Result<ReadyEvent, Error>> {
        self.poll_ready(cx, Interest::PRIORITY)
    }

    /// Polls one direction; a task that parks makes sure someone drives the reactor.
    fn poll_ready(
        &self,
        cx: &mut Context<'_>,
        interest: Interest,
    ) -> Poll<Result<ReadyEvent, Error>> {
        let poll = self.io.poll_ready(cx, interest);
        if poll.is_pending() {
            self.reactor.ensure_driven();
        }
        poll
    }

    /// Waits until readable.
    pub async fn readable(&self) -> Result<ReadyEvent, Error> {
        poll_fn(|cx| self.poll_read_ready(cx)).await
    }

    /// Waits until writable.
    pub async fn writable(&self) -> Result<ReadyEvent, Error> {
        poll_fn(|cx| self.poll_write_ready(cx)).await
    }

    /// Forgets the readiness in `event` after the syscall said `EAGAIN`, unless a newer
    /// report arrived meanwhile.
    pub fn clear_readiness(&self, event: ReadyEvent) {
        self.io.clear_readiness(event);
    }

    /// Runs `op` if the direction is ready; on `WouldBlock` clears the readiness it
    /// used and polls again. The building block of non-blocking `read`/`write`.
    pub fn poll_io<R>(
        &self,
        cx: &mut Context<'_>,
        interest: Interest,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            let ev = match self.poll_ready(cx, interest) {
                Poll::Ready(Ok(ev)) => ev,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.into())),
                Poll::Pending => return Poll::Pending,
            };
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.clear_readiness(ev),
                other => return Poll::Ready(other),
            }
        }
    }

    /// Re-arms a `Oneshot`/`EdgeOneshot` registration after its report (advanced use).
    pub fn rearm(&self, fd: BorrowedFd<'_>) -> Result<(), Error> {
        self.reactor
            .poller()
            .modify(fd, self.key, self.interest, self.mode)?;
        Ok(())
    }

    /// Removes `fd` from the kernel's interest list and wakes every waiter with
    /// `Closed`. Call before closing the fd.
    pub fn deregister(self, fd: BorrowedFd<'_>) -> Result<(), Error> {
        tracing::trace!(fd = self.fd, key = self.key, "deregister");
        let result = self.reactor.poller().delete(fd);
        drop(self); // wakes waiters, forgets the key
        match result {
            Err(e) if rustix::io::Errno::from_io_error(&e) == Some(rustix::io::Errno::NOENT) => {
                Ok(())
            }
            other => other.map_err(Error::Io),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.reactor.remove_registration(self.key, self.fd);
        let mut wake = Vec::new();
        self.io.shutdown(&mut wake);
        wake.into_iter().for_each(Waker::wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wait for one direction parks in that direction's slot, the slot a report for
    /// it wakes (`wake_matching` walks `DIRECTIONS` in slot order).
    #[test]
    fn each_direction_waits_in_the_slot_its_reports_wake() {
        for (i, direction) in DIRECTIONS.into_iter().enumerate() {
            assert_eq!(waiter_slot(direction), i, "{direction:?}");
        }
    }
}
