//! Backend dispatch: one module per mechanism, one small interface between them.
//!
//! Each backend module provides the same free functions:
//! `probe`, `create`, `owns`, `ctl`, `events`, `close`.

use crate::{Backend, Error, Events, Op, Result};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};

mod device;
mod emulated;
#[cfg(feature = "fuse")]
mod fuse;
mod kernel;
mod registry;

/// Runs a system call again while a signal interrupts it (EINTR): a handler installed
/// without `SA_RESTART` must not turn into a spurious error of ours.
pub(crate) fn retry<T>(mut call: impl FnMut() -> rustix::io::Result<T>) -> rustix::io::Result<T> {
    loop {
        match call() {
            Err(rustix::io::Errno::INTR) => continue,
            result => return result,
        }
    }
}

/// What poll(2) reports for `fd` now (zero timeout), as [`Events`].
pub(crate) fn poll_now(fd: BorrowedFd<'_>) -> Result<Events> {
    let mut fds = [PollFd::new(
        &fd,
        PollFlags::IN | PollFlags::PRI | PollFlags::OUT | PollFlags::RDHUP,
    )];
    retry(|| poll(&mut fds, Some(&Timespec::default())))?;
    if fds[0].revents().contains(PollFlags::NVAL) {
        return Err(Error::NotVpoll);
    }
    Ok(Events::from_bits_truncate(u32::from(
        fds[0].revents().bits(),
    )))
}

/// `close(2)` that reports its error (dropping an `OwnedFd` ignores it).
pub(crate) fn close_checked(fd: OwnedFd) -> Result<()> {
    use std::os::fd::IntoRawFd;
    close_raw(fd.into_raw_fd())
}

/// `close(2)` of a descriptor given by number, reporting its error.
pub(crate) fn close_raw(fd: RawFd) -> Result<()> {
    // SAFETY: callers pass a descriptor they own and never use again.
    if unsafe { libc::close(fd) } == 0 {
        Ok(())
    } else {
        Err(Error::Io(std::io::Error::last_os_error()))
    }
}

/// Builds the error for a backend that cannot be used.
pub(crate) fn unavailable(backend: Backend, reason: impl Into<String>) -> Error {
    Error::Unavailable {
        backend: backend.name(),
        reason: reason.into(),
    }
}

pub(crate) fn probe(b: Backend) -> Result<()> {
    match b {
        Backend::Kernel => kernel::probe(),
        Backend::Device => device::probe(),
        #[cfg(feature = "fuse")]
        Backend::Fuse => fuse::probe(),
        #[cfg(not(feature = "fuse"))]
        Backend::Fuse => Err(unavailable(b, "built without the `fuse` feature")),
        Backend::Emulated => emulated::probe(),
    }
}

pub(crate) fn create(b: Backend, init: Events, cloexec: bool) -> Result<OwnedFd> {
    match b {
        Backend::Kernel => kernel::create(init, cloexec),
        Backend::Device => device::create(init, cloexec),
        #[cfg(feature = "fuse")]
        Backend::Fuse => fuse::create(init, cloexec),
        #[cfg(not(feature = "fuse"))]
        Backend::Fuse => Err(unavailable(b, "built without the `fuse` feature")),
        Backend::Emulated => emulated::create(init, cloexec),
    }
}

pub(crate) fn ctl(b: Backend, fd: BorrowedFd<'_>, op: Op, events: Events) -> Result<()> {
    tracing::trace!(fd = ?fd, %b, ?op, ?events, "vpoll ctl");
    match b {
        Backend::Kernel => kernel::ctl(fd, op, events),
        Backend::Device => device::ctl(fd, op, events),
        #[cfg(feature = "fuse")]
        Backend::Fuse => fuse::ctl(fd, op, events),
        #[cfg(not(feature = "fuse"))]
        Backend::Fuse => Err(Error::NotVpoll),
        Backend::Emulated => emulated::ctl(fd, op, events),
    }
}

pub(crate) fn events(b: Backend, fd: BorrowedFd<'_>) -> Result<Events> {
    match b {
        Backend::Kernel => kernel::events(fd),
        Backend::Device => device::events(fd),
        #[cfg(feature = "fuse")]
        Backend::Fuse => fuse::events(fd),
        #[cfg(not(feature = "fuse"))]
        Backend::Fuse => Err(Error::NotVpoll),
        Backend::Emulated => emulated::events(fd),
    }
}

pub(crate) fn close(b: Backend, fd: OwnedFd) -> Result<()> {
    match b {
        Backend::Kernel => kernel::close(fd),
        Backend::Device => device::close(fd),
        #[cfg(feature = "fuse")]
        Backend::Fuse => fuse::close(fd),
        #[cfg(not(feature = "fuse"))]
        Backend::Fuse => Ok(drop(fd)),
        Backend::Emulated => emulated::close(fd),
    }
}

/// Which backend serves `fd`; [`Error::NotVpoll`] if none claims it.
pub(crate) fn identify(fd: BorrowedFd<'_>) -> Result<Backend> {
    #[cfg(feature = "fuse")]
    if fuse::owns(fd) {
        return Ok(Backend::Fuse);
    }
    if emulated::owns(fd) {
        return Ok(Backend::Emulated);
    }
    if device::owns(fd) {
        return Ok(Backend::Device);
    }
    if kernel::owns(fd) {
        return Ok(Backend::Kernel);
    }
    Err(Error::NotVpoll)
}
