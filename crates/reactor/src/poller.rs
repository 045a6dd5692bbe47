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
pub fn epoll_flags(interest: Interest, mode: Mode) -> EventFlags {
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

/// One readiness report from [`Poller::wait`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The token given at registration.
    pub token: u64,
    /// The raw epoll bits the kernel reported.
    pub flags: EventFlags,
}

impl Event {
    /// Data (or end of stream) to read.
    pub fn is_readable(&self) -> bool {
        self.flags
            .intersects(EventFlags::IN | EventFlags::RDHUP | EventFlags::HUP | EventFlags::ERR)
    }

    /// Room to write (or an error/hang-up a write would report).
    pub fn is_writable(&self) -> bool {
        self.flags
            .intersects(EventFlags::OUT | EventFlags::HUP | EventFlags::ERR)
    }

    /// Priority data.
    pub fn is_priority(&self) -> bool {
        self.flags.contains(EventFlags::PRI)
    }

    /// An error condition (`EPOLLERR`).
    pub fn is_error(&self) -> bool {
        self.flags.contains(EventFlags::ERR)
    }

    /// Both directions hung up (`EPOLLHUP`).
    pub fn is_hangup(&self) -> bool {
        self.flags.contains(EventFlags::HUP)
    }

    /// The peer closed its writing half (`EPOLLRDHUP`).
    pub fn is_read_closed(&self) -> bool {
        self.flags.intersects(EventFlags::RDHUP | EventFlags::HUP)
    }
}

/// A reusable buffer for [`Poller::wait`].
pub struct Events {
    /// Raw kernel records; reused across waits so a wait never allocates.
    buf: Vec<epoll::Event>,
}

impl Events {
    /// A buffer that receives at most `capacity` events per wait.
    pub fn with_capacity(capacity: usize) -> Self {
        Events {
            buf: Vec::with_capacity(capacity.max(1)),
        }
    }

    /// The events of the last wait.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Event> + '_ {
        self.buf.iter().map(|e| Event {
            token: e.data.u64(),
            flags: e.flags,
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

impl std::fmt::Debug for Events {
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

    /// Registers `fd` with raw epoll bits (for callers that need bits `Interest` lacks).
    pub fn add_raw(&self, fd: BorrowedFd<'_>, token: u64, flags: EventFlags) -> io::Result<()> {
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

    /// Changes a registration to raw epoll bits; `EventFlags::empty()` disarms it
    /// without removing it.
    pub fn modify_raw(&self, fd: BorrowedFd<'_>, token: u64, flags: EventFlags) -> io::Result<()> {
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
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
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
        let mut events = Events::with_capacity(8);
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
        poller
            .modify_raw(b.as_fd(), 9, EventFlags::empty())
            .unwrap();
        assert_eq!(poller.wait(&mut events, Some(Duration::ZERO)).unwrap(), 0);
        poller.delete(b.as_fd()).unwrap();
        assert!(poller.delete(b.as_fd()).is_err());
    }

    #[test]
    fn hangup_is_readable_and_writable() {
        let poller = Poller::new().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let mut events = Events::with_capacity(8);
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
