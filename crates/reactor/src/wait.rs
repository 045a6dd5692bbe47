//! Waiting on fds the caller does not own: `wait_readable`, `wait_writable`,
//! `wait_priority` and `notify_closing`.
//!
//! # Why this is harder than it looks
//!
//! An epoll instance does not remember fd *numbers*; it remembers pairs of
//! (fd number, open file description). `epoll_ctl(fd)` looks the number up in the fd
//! table at the time of the call to find the description, and the pair is the key.
//! The registration lives as long as the *description* lives, not as long as the
//! number: `close(fd)` only removes it if that was the last reference to the
//! description. Three consequences bite every runtime that waits on fds it does not
//! own:
//!
//! 1. **Closed while registered, number reused.** A task waits on fd 7, someone closes
//!    fd 7 without telling us, and a new socket gets number 7. If we believe "7 is
//!    registered" and call `EPOLL_CTL_MOD`, the kernel answers `ENOENT` (the pair
//!    (7, new socket) is unknown). A runtime that caches "registered" and never
//!    retries breaks here.
//! 2. **Dup'ed, then closed.** fd 7 is registered and `dup`ed to fd 9; fd 7 is closed.
//!    The description lives on through fd 9, so the registration (7, description)
//!    stays in the interest list and keeps reporting events tagged "7" — forever,
//!    and we can no longer remove it: `EPOLL_CTL_DEL` needs the number 7 to name that
//!    description, and it does not any more (`EBADF`, or a different file). With a
//!    level-triggered registration on a readable or hung-up file that is a busy loop
//!    (`epoll_wait` returns at once, every time).
//! 3. **Error and hang-up bits cannot be masked.** The kernel adds `EPOLLERR | EPOLLHUP`
//!    to every `ADD` and `MOD`, so "modify to zero interest" still reports a hang-up on
//!    every wait, level-triggered.
//!
//! # The discipline (Trio's, in Rust)
//!
//! * **`EPOLLONESHOT` always.** After one report the kernel disarms the registration
//!   (its mask becomes empty, *including* ERR/HUP), so a stale registration — case 2 —
//!   can fire at most once more and then sits silent: no busy loop, whatever happens to
//!   the fd afterwards. The price is one `epoll_ctl` per wait, which is why owned fds use
//!   the persistent path in [`crate::registration`] instead.
//! * **`MOD` first, `ADD` on `ENOENT`.** We never trust a cache of "is this number
//!   registered": every arm tries `EPOLL_CTL_MOD` and falls back to `EPOLL_CTL_ADD`. If
//!   the number now names a different file (case 1), `MOD` fails with `ENOENT` and `ADD`
//!   registers the new file, so it works at once. If the old description is still alive
//!   through a dup (case 2), its registration stays in the kernel, disarmed, until that
//!   last dup is closed; it is harmless, and at most one stale event carrying this fd's
//!   token reaches us (a spurious wake-up, which callers must tolerate anyway: they
//!   retry their read and wait again). If that stale report meets a waiter on the *new*
//!   file, it wakes spuriously and, should it not wait again, leaves the new file's
//!   one-shot registration armed with nobody behind it; that too fires at most once and
//!   is ignored (no entry in the table), so the bound "at most one report per arm" holds.
//! * **After a wake the fd stays in the interest list, disarmed.** We do not `DEL` after
//!   an event: the next wait on the same number re-arms it with one `MOD` (cheap), and if
//!   the caller closes the fd in between the kernel drops the registration itself. The
//!   stale-after-wake entry is "cleaned up" by the next use of the number: `MOD` re-arms it
//!   (same file) or gets `ENOENT` and `ADD`s the new file.
//! * **Cancellation `DEL`s.** Dropping a pending wait leaves no armed registration. We
//!   cannot "modify to zero" (hazard 3: ERR/HUP stay armed), so when the last waiter on
//!   an fd goes away while the registration is still armed we `EPOLL_CTL_DEL` it. That
//!   is safe because the dropped future held a `BorrowedFd`: the number still names the
//!   file we registered.
//! * **One reader, one writer, one priority waiter per fd.** A second waiter for the
//!   same direction gets [`Error::BusyResource`] at once instead of silently stealing or
//!   sharing the wake-up; two readers racing on one fd is a bug in the caller.
//!   Likewise an fd number that has a persistent [`crate::Registration`] in this reactor
//!   is refused: a one-shot `MOD` would hijack that registration. (The other way round
//!   works: registering an fd persistently takes over the disarmed leftover of earlier
//!   borrowed waits with `MOD` when `ADD` says `EEXIST`.)
//! * **`EPOLLERR`/`EPOLLHUP` wake everybody.** Both directions will see the error when
//!   they retry their syscall, so waking only one would leave the other waiting forever.
//! * **`notify_closing(fd)` before closing.** Every waiter wakes with
//!   [`Error::Closed`] and the registration is deleted while the number still names the
//!   right file. Closing through greenfd types does this for you; closing behind our back
//!   falls back to the guarantees above (no busy loop, number reuse works).
//!
//! # Alternatives rejected
//!
//! * Persistent level- or edge-triggered registrations for borrowed fds (what most
//!   runtimes do): cheaper per wait, but a dup'ed-then-closed fd either busy-loops
//!   (level) or its registration can never be removed and collides with number reuse
//!   (edge, `EEXIST` on `ADD`).
//! * `DEL` after every wake: one more syscall per wait, and racy against an unnotified
//!   close (the `DEL` may hit a new file that reused the number).
//! * Keying by anything but the fd number: epoll gives us only the 64-bit token we
//!   chose, and the caller gives us only a number; the (number, description) ambiguity is
//!   resolved by `MOD`/`ADD` at arm time, not by bookkeeping.

use crate::error::Error;
use crate::poller::{Interest, Mode, Ready};
use crate::reactor::{Reactor, State};
use rustix::io::Errno;
use std::future::Future;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// Which way a borrowed-fd waiter waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `EPOLLIN` (and `EPOLLRDHUP`).
    Read,
    /// `EPOLLOUT`.
    Write,
    /// `EPOLLPRI`.
    Priority,
}

impl Direction {
    /// The interest this direction arms.
    fn interest(self) -> Interest {
        match self {
            Direction::Read => Interest::READABLE,
            Direction::Write => Interest::WRITABLE,
            Direction::Priority => Interest::PRIORITY,
        }
    }

    /// Whether a report ends a wait in this direction; ERR and HUP end all of them.
    fn woken_by(self, ready: Ready) -> bool {
        // HUP (both halves) is the only report that sets WRITE_CLOSED.
        let always = Ready::ERROR | Ready::WRITE_CLOSED;
        ready.intersects(
            always
                | match self {
                    Direction::Read => Ready::READABLE | Ready::READ_CLOSED,
                    Direction::Write => Ready::WRITABLE,
                    Direction::Priority => Ready::PRIORITY,
                },
        )
    }
}

/// One pending wait, shared between its future and the reactor's table.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// Whom to wake, and the outcome once the reactor ended the wait; one lock, so
    /// "finish and take the waker" and "check the outcome or store a waker" never
    /// interleave.
    inner: Mutex<SlotInner>,
}

/// The mutable part of a [`Slot`].
#[derive(Debug, Default)]
struct SlotInner {
    /// Whom to wake.
    waker: Option<Waker>,
    /// Set by the reactor when the wait ends; taken by the future.
    outcome: Option<Result<(), Error>>,
}

impl Slot {
    /// The slot's state (a panic elsewhere cannot leave it inconsistent: every update is
    /// a single assignment).
    fn lock(&self) -> MutexGuard<'_, SlotInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ends the wait with `outcome` and returns the waker to call (after the reactor
    /// has released its state).
    fn finish(&self, outcome: Result<(), Error>) -> Option<Waker> {
        let mut inner = self.lock();
        inner.outcome = Some(outcome);
        inner.waker.take()
    }
}

/// The waiters on one fd number and what the kernel currently has armed for it.
#[derive(Debug, Default)]
pub(crate) struct FdWaiters {
    /// The reader, writer and priority waiter, indexed by `Direction as usize`.
    slots: [Option<Arc<Slot>>; 3],
    /// The interest armed in the kernel; empty once a one-shot report disarmed it.
    armed: Interest,
}

impl FdWaiters {
    /// The interest the current waiters need armed.
    fn wanted(&self) -> Interest {
        let mut wanted = Interest::empty();
        for (slot, dir) in self.slots.iter().zip(DIRECTIONS) {
            if slot.is_some() {
                wanted |= dir.interest();
            }
        }
        wanted
    }

    /// How many tasks wait in `dir` (0 or 1).
    pub(crate) fn waiting(&self, dir: Direction) -> usize {
        usize::from(self.slots[dir as usize].is_some())
    }

    /// Whether the kernel registration is armed.
    pub(crate) fn is_armed(&self) -> bool {
        !self.armed.is_empty()
    }
}

/// All directions, in slot order.
const DIRECTIONS: [Direction; 3] = [Direction::Read, Direction::Write, Direction::Priority];

/// The token of a borrowed-fd registration: the fd number itself (tokens with the top
/// bit set belong to persistent registrations and the waker).
fn token(fd: RawFd) -> u64 {
    fd as u32 as u64
}

/// Brings the kernel registration of `fd` in line with its waiters (Trio's
/// `_update_registrations`). On failure every waiter of the fd is finished with the
/// error (their wakers are pushed to `wake`) and the entry is dropped.
pub(crate) fn update(
    reactor: &Reactor,
    state: &mut State,
    fd: BorrowedFd<'_>,
    wake: &mut Vec<Waker>,
) {
    let raw = fd.as_raw_fd();
    let Some(waiters) = state.fds.get_mut(&raw) else {
        return;
    };
    let wanted = waiters.wanted();
    if wanted != waiters.armed {
        let poller = reactor.poller();
        let result = if wanted.is_empty() {
            // Cancellation with the registration still armed: MOD cannot mask ERR/HUP,
            // so delete. The number still names our file (the waiter held a borrow); if
            // the fd was closed behind our back the kernel already dropped it.
            match poller.delete(fd) {
                Err(e) if matches!(Errno::from_io_error(&e), Some(Errno::NOENT | Errno::BADF)) => {
                    Ok(())
                }
                other => other,
            }
        } else {
            match poller.modify(fd, token(raw), wanted, Mode::Oneshot) {
                Err(e) if Errno::from_io_error(&e) == Some(Errno::NOENT) => {
                    poller.add(fd, token(raw), wanted, Mode::Oneshot)
                }
                other => other,
            }
        };
        match result {
            Ok(()) => waiters.armed = wanted,
            Err(e) => {
                let errno = Errno::from_io_error(&e);
                if let Some(waiters) = state.fds.remove(&raw) {
                    for slot in waiters.slots.into_iter().flatten() {
                        let err = match errno {
                            Some(errno) => Error::Io(errno.into()),
                            None => Error::Io(std::io::Error::new(e.kind(), e.to_string())),
                        };
                        wake.extend(slot.finish(Err(err)));
                    }
                }
                return;
            }
        }
    }
    if wanted.is_empty() {
        state.fds.remove(&raw);
    }
}

/// Handles one kernel report for a borrowed fd: the one-shot registration is now
/// disarmed; finish the waiters the bits concern and re-arm for the rest.
pub(crate) fn dispatch(
    reactor: &Reactor,
    state: &mut State,
    raw: RawFd,
    ready: Ready,
    wake: &mut Vec<Waker>,
) {
    let Some(waiters) = state.fds.get_mut(&raw) else {
        // A report for a number nobody waits on: a wait that already ended. One-shot
        // means the kernel has disarmed it; nothing to do.
        return;
    };
    waiters.armed = Interest::empty();
    for (slot, dir) in waiters.slots.iter_mut().zip(DIRECTIONS) {
        if dir.woken_by(ready)
            && let Some(s) = slot.take()
        {
            wake.extend(s.finish(Ok(())));
        }
    }
    // SAFETY: the number is only passed to epoll_ctl. Any waiter still in the table holds
    // a `BorrowedFd` for it, so it names their file; if someone closed it behind our back
    // the kernel answers EBADF/ENOENT, which `update` handles.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };
    update(reactor, state, fd, wake);
}

/// Implements `notify_closing`: finishes every waiter on `fd` with `Closed` and removes
/// the registration.
pub(crate) fn notify_closing(
    reactor: &Reactor,
    state: &mut State,
    fd: BorrowedFd<'_>,
    wake: &mut Vec<Waker>,
) -> Result<(), Error> {
    let raw = fd.as_raw_fd();
    if let Some(waiters) = state.fds.remove(&raw) {
        for slot in waiters.slots.into_iter().flatten() {
            wake.extend(slot.finish(Err(Error::Closed)));
        }
    }
    // Delete even if nobody waits: a disarmed registration from an earlier wait may
    // still be in the interest list, and now the number still names the right file.
    match reactor.poller().delete(fd) {
        Ok(()) => Ok(()),
        Err(e) if Errno::from_io_error(&e) == Some(Errno::NOENT) => Ok(()),
        Err(e) => Err(Error::Io(e)),
    }
}

/// A future that resolves when a borrowed fd is ready in one direction.
///
/// Created by [`Reactor::wait_readable`], [`Reactor::wait_writable`] and
/// [`Reactor::wait_priority`]. Resolves to `Ok(())` when the kernel reports the
/// direction ready (or an error/hang-up: retry your syscall to see it), to
/// [`Error::Closed`] after `notify_closing`, to [`Error::BusyResource`] at once if
/// another task waits in the same direction. Dropping it cancels the wait and disarms
/// the fd. Polling it again after it returned gives `Ok(())` again.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct WaitFd<'fd> {
    /// The reactor whose epoll instance we arm.
    reactor: Reactor,
    /// The fd; the borrow guarantees the number names the same file until we are dropped.
    fd: BorrowedFd<'fd>,
    /// Which direction.
    dir: Direction,
    /// Our slot in the reactor's table once armed.
    slot: Option<Arc<Slot>>,
    /// Whether the future already returned.
    done: bool,
}

impl<'fd> WaitFd<'fd> {
    /// A wait on `fd` in `dir`; nothing happens until it is polled.
    pub(crate) fn new(reactor: Reactor, fd: BorrowedFd<'fd>, dir: Direction) -> Self {
        WaitFd {
            reactor,
            fd,
            dir,
            slot: None,
            done: false,
        }
    }

    /// Arms the wait on first poll.
    fn start(&mut self, waker: &Waker) -> Poll<Result<(), Error>> {
        let reactor = self.reactor.clone();
        let mut wake = Vec::new();
        let result = {
            let mut state = reactor.state_mut();
            if state.owned.contains_key(&self.fd.as_raw_fd()) {
                tracing::trace!(
                    fd = self.fd.as_raw_fd(),
                    "wait: fd has a persistent registration"
                );
                return Poll::Ready(Err(Error::BusyResource));
            }
            let waiters = state.fds.entry(self.fd.as_raw_fd()).or_default();
            let slot_ref = &mut waiters.slots[self.dir as usize];
            if slot_ref.is_some() {
                tracing::trace!(fd = self.fd.as_raw_fd(), dir = ?self.dir, "wait: busy");
                return Poll::Ready(Err(Error::BusyResource));
            }
            let slot = Arc::new(Slot::default());
            slot.lock().waker = Some(waker.clone());
            *slot_ref = Some(Arc::clone(&slot));
            update(&reactor, &mut state, self.fd, &mut wake);
            // If arming failed, `update` finished our slot with the error.
            let outcome = slot.lock().outcome.take();
            match outcome {
                Some(outcome) => Poll::Ready(outcome),
                None => {
                    self.slot = Some(slot);
                    Poll::Pending
                }
            }
        };
        // Other waiters on the same fd, finished by a failed arm.
        wake.into_iter()
            .filter(|w| !w.will_wake(waker))
            .for_each(Waker::wake);
        if result.is_pending() {
            reactor.ensure_driven();
        }
        result
    }
}

impl Future for WaitFd<'_> {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(Ok(()));
        }
        let result = match &this.slot {
            None => this.start(cx.waker()),
            Some(slot) => {
                let mut inner = slot.lock();
                match inner.outcome.take() {
                    Some(outcome) => Poll::Ready(outcome),
                    None => {
                        let old = if inner
                            .waker
                            .as_ref()
                            .is_some_and(|w| w.will_wake(cx.waker()))
                        {
                            None
                        } else {
                            inner.waker.replace(cx.waker().clone())
                        };
                        drop(inner);
                        // Dropped outside the lock: a waker's drop may run arbitrary code.
                        drop(old);
                        Poll::Pending
                    }
                }
            }
        };
        if result.is_ready() {
            this.slot = None;
            this.done = true;
        }
        result
    }
}

impl Drop for WaitFd<'_> {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else {
            return;
        };
        if slot.lock().outcome.is_some() {
            return; // already finished and removed by the reactor
        }
        let mut wake = Vec::new();
        {
            let reactor = self.reactor.clone();
            let mut state = reactor.state_mut();
            let raw = self.fd.as_raw_fd();
            if let Some(waiters) = state.fds.get_mut(&raw) {
                let mine = &mut waiters.slots[self.dir as usize];
                if mine.as_ref().is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                    *mine = None;
                }
            }
            tracing::trace!(fd = raw, dir = ?self.dir, "wait cancelled");
            update(&reactor, &mut state, self.fd, &mut wake);
        }
        wake.into_iter().for_each(Waker::wake);
    }
}
