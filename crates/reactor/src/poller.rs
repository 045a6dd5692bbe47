//! The thin syscall layer: one epoll instance, typed interest and modes.
//!
//! Everything above this module (borrowed-fd waits, persistent registrations, the
//! engine) talks to the kernel only through [`Poller`], so every `epoll_ctl` and
//! `epoll_wait` is in one place and traced at one level.

use bitflags::bitflags;
use rustix::event::epoll::{self, EventData, EventFlags};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

bitflags! {
    /// What a registration waits for.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Interest: u8 {
        /// Data to read, or the peer hung up its writing half.
        const READABLE = 1 << 0;
        /// Room to write.
        const WRITABLE = 1 << 1;
        /// Urgent/priority data (`EPOLLPRI`).
        const PRIORITY = 1 << 2;
    }
}

/// How the kernel reports readiness for a registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Reported on every wait while ready.
    Level,
    /// Reported once per transition to ready (`EPOLLET`).
    Edge,
    /// Reported once, then disarmed until re-armed with `modify` (`EPOLLONESHOT`).
    Oneshot,
    /// Edge-triggered and one-shot.
    EdgeOneshot,
    /// Level-triggered, and only one of several epoll instances waiting on the same fd
    /// is woken (`EPOLLEXCLUSIVE`; `add` only, the kernel refuses it for `modify`).
    Exclusive,
    /// Edge-triggered with `EPOLLEXCLUSIVE`.
    EdgeExclusive,
}

/// The epoll bits for `interest` in `mode`: the one place that decides which kernel
/// bits mean readable, writable and priority.
pub(crate) fn epoll_flags(interest: Interest, mode: Mode) -> EventFlags {
    let mut flags = EventFlags::empty();
    if interest.contains(Interest::READABLE) {
        flags |= EventFlags::IN | EventFlags::RDHUP;
    }
    if interest.contains(Interest::WRITABLE) {
        flags |= EventFlags::OUT;
    }
    if interest.contains(Interest::PRIORITY) {
        flags |= EventFlags::PRI;
    }
    flags
        | match mode {
            Mode::Level => EventFlags::empty(),
            Mode::Edge => EventFlags::ET,
            Mode::Oneshot => EventFlags::ONESHOT,
            Mode::EdgeOneshot => EventFlags::ET | EventFlags::ONESHOT,
            Mode::Exclusive => EventFlags::EXCLUSIVE,
            Mode::EdgeExclusive => EventFlags::ET | EventFlags::EXCLUSIVE,
        }
}

bitflags! {
    /// Readiness: what a kernel report said about an fd, and what a persistent
    /// registration remembers between reports.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Ready: u8 {
        /// Data to read (`EPOLLIN`).
        const READABLE = 1 << 0;
        /// Room to write (`EPOLLOUT`).
        const WRITABLE = 1 << 1;
        /// The peer closed its writing half, or both halves (`EPOLLRDHUP`/`EPOLLHUP`).
        const READ_CLOSED = 1 << 2;
        /// Writing would fail: both halves hung up (`EPOLLHUP`).
        const WRITE_CLOSED = 1 << 3;
        /// Priority data (`EPOLLPRI`).
        const PRIORITY = 1 << 4;
        /// An error is pending on the fd (`EPOLLERR`).
        const ERROR = 1 << 5;
    }
}

impl Ready {
    /// The readiness a kernel report's bits mean.
    pub(crate) fn from_flags(f: EventFlags) -> Ready {
        let mut r = Ready::empty();
        if f.contains(EventFlags::IN) {
            r |= Ready::READABLE;
        }
        if f.contains(EventFlags::OUT) {
            r |= Ready::WRITABLE;
        }
        if f.intersects(EventFlags::RDHUP | EventFlags::HUP) {
            r |= Ready::READ_CLOSED;
        }
        if f.contains(EventFlags::HUP) {
            r |= Ready::WRITE_CLOSED;
        }
        if f.contains(EventFlags::PRI) {
            r |= Ready::PRIORITY;
        }
        if f.contains(EventFlags::ERR) {
            r |= Ready::ERROR;
        }
        r
    }
}

/// One readiness report from [`Poller::wait`], an entry of an [`EventBuffer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollEvent {
    /// The token given at registration.
    pub token: u64,
    /// What the kernel reported.
    pub ready: Ready,
}

impl PollEvent {
    /// Data (or end of stream) to read.
    pub fn is_readable(&self) -> bool {
        self.ready
            .intersects(Ready::READABLE | Ready::READ_CLOSED | Ready::ERROR)
    }

    /// Room to write (or an error/hang-up a write would report).
    pub fn is_writable(&self) -> bool {
        self.ready
            .intersects(Ready::WRITABLE | Ready::WRITE_CLOSED | Ready::ERROR)
    }

    /// Priority data.
    pub fn is_priority(&self) -> bool {
        self.ready.contains(Ready::PRIORITY)
    }

    /// An error condition (`EPOLLERR`).
    pub fn is_error(&self) -> bool {
        self.ready.contains(Ready::ERROR)
    }

    /// Both directions hung up (`EPOLLHUP`).
    pub fn is_hangup(&self) -> bool {
        self.ready.contains(Ready::WRITE_CLOSED)
    }

    /// The peer closed its writing half (`EPOLLRDHUP`), or both (`EPOLLHUP`).
    pub fn is_read_closed(&self) -> bool {
        self.ready.contains(Ready::READ_CLOSED)
    }
}

/// A reusable buffer for [`Poller::wait`].
pub struct EventBuffer {
    /// Raw kernel records; reused across waits so a wait never allocates.
    buf: Vec<epoll::Event>,
}

impl EventBuffer {
    /// A buffer that receives at most `capacity` events per wait.
    pub fn with_capacity(capacity: usize) -> Self {
        EventBuffer {
            buf: Vec::with_capacity(capacity.max(1)),
        }
    }

    /// The events of the last wait.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = PollEvent> + '_ {
        self.buf.iter().map(|e| PollEvent {
            token: e.data.u64(),
            ready: Ready::from_flags(e.flags),
        })
    }

    /// How many events the last wait returned.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether the last wait returned nothing (timeout).
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The most events one wait can return.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

// SAFETY: the records are plain kernel data. rustix types their 64-bit payload as a
// union that may hold a pointer, which makes them `!Send`, but greenfd only ever stores
// `u64` tokens in it (`EventData::new_u64`) and never dereferences it; moving the
// buffer to another thread moves integers.
unsafe impl Send for EventBuffer {}

impl std::fmt::Debug for EventBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// An epoll instance.
#[derive(Debug)]
pub struct Poller {
    /// The epoll fd; itself pollable, so a `Poller` nests into another loop.
    epoll: OwnedFd,
}

impl Poller {
    /// Creates an epoll instance (close-on-exec).
    pub fn new() -> io::Result<Poller> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        tracing::trace!(epoll_fd = epoll.as_raw_fd(), "epoll_create");
        Ok(Poller { epoll })
    }

    /// Registers `fd` with `token`.
    pub fn add(
        &self,
        fd: BorrowedFd<'_>,
        token: u64,
        interest: Interest,
        mode: Mode,
    ) -> io::Result<()> {
        self.add_raw(fd, token, epoll_flags(interest, mode))
    }

    /// Registers `fd` with raw epoll bits.
    fn add_raw(&self, fd: BorrowedFd<'_>, token: u64, flags: EventFlags) -> io::Result<()> {
        tracing::trace!(
            epoll_fd = self.epoll.as_raw_fd(),
            fd = fd.as_raw_fd(),
            token,
            ?flags,
            "epoll add"
        );
        epoll::add(&self.epoll, fd, EventData::new_u64(token), flags)?;
        Ok(())
    }

    /// Changes the interest, mode or token of a registered `fd` (also re-arms a one-shot).
    pub fn modify(
        &self,
        fd: BorrowedFd<'_>,
        token: u64,
        interest: Interest,
        mode: Mode,
    ) -> io::Result<()> {
        self.modify_raw(fd, token, epoll_flags(interest, mode))
    }

    /// Disarms a registered `fd` without removing it from the interest list: it reports
    /// nothing until the next `modify` (only the kernel's `EPOLLERR`/`EPOLLHUP` remain,
    /// which a level-triggered caller must be ready for).
    pub fn disarm(&self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        self.modify_raw(fd, token, EventFlags::empty())
    }

    /// Changes a registration to raw epoll bits.
    fn modify_raw(&self, fd: BorrowedFd<'_>, token: u64, flags: EventFlags) -> io::Result<()> {
        tracing::trace!(
            epoll_fd = self.epoll.as_raw_fd(),
            fd = fd.as_raw_fd(),
            token,
            ?flags,
            "epoll modify"
        );
        epoll::modify(&self.epoll, fd, EventData::new_u64(token), flags)?;
        Ok(())
    }

    /// Removes `fd` from the interest list.
    pub fn delete(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        tracing::trace!(
            epoll_fd = self.epoll.as_raw_fd(),
            fd = fd.as_raw_fd(),
            "epoll delete"
        );
        epoll::delete(&self.epoll, fd)?;
        Ok(())
    }

    /// Waits for events; `None` blocks, `Some(ZERO)` polls. Returns how many arrived.
    /// EINTR is returned as an error (`ErrorKind::Interrupted`) so the caller decides.
    pub fn wait(&self, events: &mut EventBuffer, timeout: Option<Duration>) -> io::Result<usize> {
        events.buf.clear();
        let ts = timeout.map(|d| rustix::time::Timespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(d.subsec_nanos()),
        });
        let capacity = events.buf.capacity();
        let n = epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut events.buf),
            ts.as_ref(),
        )?;
        debug_assert!(n <= capacity);
        tracing::trace!(epoll_fd = self.epoll.as_raw_fd(), n, "epoll wait");
        Ok(n)
    }
}

impl AsFd for Poller {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn level_edge_and_oneshot_report_as_documented() {
        let poller = Poller::new().unwrap();
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut events = EventBuffer::with_capacity(8);
        poller
            .add(b.as_fd(), 7, Interest::READABLE, Mode::Level)
            .unwrap();
        a.write_all(b"x").unwrap();
        for _ in 0..2 {
            assert_eq!(poller.wait(&mut events, Some(Duration::ZERO)).unwrap(), 1);
            let ev = events.iter().next().unwrap();
            assert_eq!(ev.token, 7);
            assert!(ev.is_readable() && !ev.is_writable());
        }
        poller
            .modify(b.as_fd(), 8, Interest::READABLE, Mode::Edge)
            .unwrap();
        assert_eq!(poller.wait(&mut events, Some(Duration::ZERO)).unwrap(), 1);
        assert_eq!(poller.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
        poller
            .modify(b.as_fd(), 9, Interest::READABLE, Mode::Oneshot)
            .unwrap();
        assert_eq!(poller.wait(&mut events, Some(Duration::ZERO)).unwrap(), 1);
        assert_eq!(poller.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
        poller.disarm(b.as_fd(), 9).unwrap();
        assert_eq!(poller.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
        poller.delete(b.as_fd()).unwrap();
        assert!(poller.delete(b.as_fd()).is_err());
    }

    #[test]
    fn hangup_is_readable_and_writable() {
        let poller = Poller::new().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let mut events = EventBuffer::with_capacity(8);
        poller
            .add(
                b.as_fd(),
                1,
                Interest::READABLE | Interest::WRITABLE,
                Mode::Level,
            )
            .unwrap();
        drop(a);
        poller
            .wait(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        let ev = events.iter().next().unwrap();
        assert!(ev.is_hangup() && ev.is_read_closed() && ev.is_readable() && ev.is_writable());
    }
}
