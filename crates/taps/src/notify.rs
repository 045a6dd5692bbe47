//! The descriptor that makes an [`EventQueue`](crate::EventQueue) pollable.
//!
//! This is the only module that makes system calls for queues, so the loom build (which
//! cannot model syscalls) leaves it out and keeps the queue's in-process signalling.

use greenfd_vpoll::{Events, VpollFd};
use rustix::event::{EventfdFlags, eventfd};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// A level signal: readable between `raise` and `lower`.
#[derive(Debug)]
pub(crate) enum Notifier {
    /// A non-blocking eventfd whose counter is 1 while raised, 0 while lowered.
    EventFd(OwnedFd),
    /// A vpoll fd with IN set while raised.
    Vpoll(VpollFd),
}

impl Notifier {
    /// A lowered eventfd signal.
    pub(crate) fn eventfd() -> io::Result<Self> {
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        tracing::trace!(fd = fd.as_raw_fd(), "taps queue eventfd");
        Ok(Notifier::EventFd(fd))
    }

    /// A lowered vpoll signal on the best available backend.
    pub(crate) fn vpoll() -> greenfd_vpoll::Result<Self> {
        let v = VpollFd::new(Events::empty())?;
        tracing::trace!(fd = v.as_raw_fd(), backend = %v.backend(), "taps queue vpoll fd");
        Ok(Notifier::Vpoll(v))
    }

    /// Makes the descriptor readable; called only when it is lowered.
    pub(crate) fn raise(&self) -> io::Result<()> {
        match self {
            Notifier::EventFd(fd) => {
                tracing::trace!(fd = fd.as_raw_fd(), "taps queue raise: eventfd write");
                rustix::io::write(fd, &1u64.to_ne_bytes())?;
                Ok(())
            }
            Notifier::Vpoll(v) => {
                tracing::trace!(fd = v.as_raw_fd(), "taps queue raise: vpoll add IN");
                Ok(v.add(Events::IN)?)
            }
        }
    }

    /// Makes the descriptor unreadable; called only when it is raised.
    pub(crate) fn lower(&self) -> io::Result<()> {
        match self {
            Notifier::EventFd(fd) => {
                tracing::trace!(fd = fd.as_raw_fd(), "taps queue lower: eventfd read");
                let mut buf = [0u8; 8];
                match rustix::io::read(fd, &mut buf) {
                    Ok(_) | Err(rustix::io::Errno::AGAIN) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Notifier::Vpoll(v) => {
                tracing::trace!(fd = v.as_raw_fd(), "taps queue lower: vpoll del IN");
                Ok(v.del(Events::IN)?)
            }
        }
    }
}

impl AsFd for Notifier {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Notifier::EventFd(fd) => fd.as_fd(),
            Notifier::Vpoll(v) => v.as_fd(),
        }
    }
}
