//! Backend dispatch: one module per mechanism, one small interface between them.
//!
//! Each backend module provides the same free functions: `probe`, `create`, `ctl`,
//! `events`, `close`, and a way to recognise its fds (`owns`, `owns_stat`, `owns_ino`,
//! `verify`) that [`identify`] combines so that recognising any fd costs at most one
//! system call in the common case.

use crate::{Backend, Error, Events, FuseRoute, Op, Result};
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

/// Whether backend `b` works here; for Fuse, by `route` (`None`: the environment's or
/// automatic choice).
pub(crate) fn probe(b: Backend, route: Option<FuseRoute>) -> Result<()> {
    match b {
        Backend::Kernel => kernel::probe(),
        Backend::Device => device::probe(),
        #[cfg(feature = "fuse")]
        Backend::Fuse => fuse::probe(route),
        #[cfg(not(feature = "fuse"))]
        Backend::Fuse => {
            let _ = route;
            Err(unavailable(b, "built without the `fuse` feature"))
        }
        Backend::Emulated => emulated::probe(),
    }
}

/// Whether FUSE route `r` works here.
pub(crate) fn probe_route(r: FuseRoute) -> Result<()> {
    #[cfg(feature = "fuse")]
    return fuse::probe_route(r);
    #[cfg(not(feature = "fuse"))]
    return Err(unavailable(
        Backend::Fuse,
        format!("{r}: built without the `fuse` feature"),
    ));
}

/// The FUSE route new fds use when none is forced through the builder.
pub(crate) fn chosen_route() -> Result<FuseRoute> {
    #[cfg(feature = "fuse")]
    return fuse::chosen_route();
    #[cfg(not(feature = "fuse"))]
    return Err(unavailable(
        Backend::Fuse,
        "built without the `fuse` feature",
    ));
}

/// The FUSE route whose filesystem (of this process) serves `fd`.
pub(crate) fn route_of(fd: BorrowedFd<'_>) -> Option<FuseRoute> {
    #[cfg(feature = "fuse")]
    return fuse::route_of(fd);
    #[cfg(not(feature = "fuse"))]
    return {
        let _ = fd;
        None
    };
}

/// What a backend learnt about an fd it created, kept by its `VpollFd` so that control
/// operations need not ask the kernel again: the Fuse file's (device, inode).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Key(Option<(u64, u64)>);

pub(crate) fn create(
    b: Backend,
    init: Events,
    cloexec: bool,
    route: Option<FuseRoute>,
) -> Result<(OwnedFd, Key)> {
    let plain = |fd| (fd, Key::default());
    match b {
        Backend::Kernel => kernel::create(init, cloexec).map(plain),
        Backend::Device => device::create(init, cloexec).map(plain),
        #[cfg(feature = "fuse")]
        Backend::Fuse => {
            fuse::create(init, cloexec, route).map(|(fd, dev, ino)| (fd, Key(Some((dev, ino)))))
        }
        #[cfg(not(feature = "fuse"))]
        Backend::Fuse => {
            let _ = route;
            Err(unavailable(b, "built without the `fuse` feature"))
        }
        Backend::Emulated => emulated::create(init, cloexec).map(plain),
    }
}

/// [`ctl`] for an fd whose creation gave `key`: the Fuse backend then skips its `fstat`.
pub(crate) fn ctl_keyed(
    b: Backend,
    key: Key,
    fd: BorrowedFd<'_>,
    op: Op,
    events: Events,
) -> Result<()> {
    match (b, key.0) {
        #[cfg(feature = "fuse")]
        (Backend::Fuse, Some((dev, ino))) => fuse::ctl_key(fd, dev, ino, op, events),
        _ => ctl(b, fd, op, events),
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
///
/// At most two system calls, usually one: the per-process registry names the Emulated and
/// Kernel fds this process created by number (no system call), verified by one
/// `getsockopt(SO_COOKIE)` or `fstat`; anything else takes one `fstat`, whose file type
/// says which backend can own it (a `dup` of an Emulated fd needs its cookie too).
pub(crate) fn identify(fd: BorrowedFd<'_>) -> Result<Backend> {
    identify_stat(fd).map(|(b, _)| b)
}

/// [`identify`], also returning the `fstat` it made, if any.
fn identify_stat(fd: BorrowedFd<'_>) -> Result<(Backend, Option<rustix::fs::Stat>)> {
    use rustix::fs::FileType;
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    if let Some(b) = registry::hint(raw) {
        let verified = match b {
            Backend::Emulated => emulated::verify(fd),
            _ => kernel::verify(fd),
        };
        match verified {
            Ok(true) => return Ok((b, None)),
            Err(rustix::io::Errno::BADF) => return Err(Error::NotVpoll),
            // A stale record: the number now names another file.
            _ => {}
        }
    }
    let st = rustix::fs::fstat(fd).map_err(|e| match e {
        rustix::io::Errno::BADF => Error::NotVpoll,
        e => Error::Io(e.into()),
    })?;
    #[allow(clippy::unnecessary_cast)]
    let backend = match FileType::from_raw_mode(st.st_mode as _) {
        #[cfg(feature = "fuse")]
        FileType::RegularFile if fuse::owns(fd, &fuse::FileId::of(&st)) => Backend::Fuse,
        FileType::CharacterDevice if device::owns_stat(&st) => Backend::Device,
        FileType::Socket if emulated::owns(fd) => Backend::Emulated,
        // An eventfd is an anonymous inode, without a file type.
        _ if kernel::owns_ino(fd, st.st_ino as u64) => Backend::Kernel,
        _ => return Err(Error::NotVpoll),
    };
    Ok((backend, Some(st)))
}

/// Applies `op` to a descriptor known only by number: identification plus the one system
/// call that does the work (see [`identify`]).
pub(crate) fn ctl_any(fd: BorrowedFd<'_>, op: Op, events: Events) -> Result<()> {
    match identify_stat(fd)? {
        #[cfg(feature = "fuse")]
        (Backend::Fuse, Some(st)) => fuse::ctl_id(fd, &fuse::FileId::of(&st), op, events),
        (b, _) => ctl(b, fd, op, events),
    }
}
