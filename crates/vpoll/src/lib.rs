//! Synthetic-event file descriptors.
//!
//! A [`VpollFd`] is a file descriptor whose readiness a program sets by hand. It can be
//! registered with epoll, poll, select, tokio or Python like any socket, so user-space
//! devices, virtual network stacks and libraries become waitable objects.
//!
//! Four backends share one small interface (`backend::*`), chosen in one place
//! ([`Builder::build`]) in this order of preference:
//!
//! 1. [`Backend::Kernel`]: `eventfd(EFD_VPOLL)` from the vpoll kernel patch.
//! 2. [`Backend::Device`]: `/dev/vpoll` from the vpoll kernel module.
//! 3. [`Backend::Fuse`]: an in-process FUSE filesystem whose `poll` answers are the
//!    exact mask; full fidelity on an unpatched kernel.
//! 4. [`Backend::Emulated`]: a socketpair; IN/OUT exact, PRI is seen as PRI|IN, RDHUP
//!    as RDHUP|IN, HUP as HUP|IN|RDHUP; RDHUP and HUP cannot be cleared and ERR cannot
//!    be set (those requests fail with [`Error::Invalid`]). State lives in the kernel's
//!    socket objects, so a forked child can control an inherited fd.
//!
//! The environment variable `GREENFD_VPOLL_BACKEND=kernel|device|fuse|emulated` forces
//! one backend; if it is unavailable, creation fails with [`Error::Unavailable`].
//!
//! The Fuse backend works for every user: root mounts directly, any other user through a
//! user namespace or the setuid `fusermount3` ([`FuseRoute`]; `GREENFD_VPOLL_FUSE_ROUTE`
//! or [`Builder::fuse_route`] forces one). Where no route works, automatic choice falls
//! back to the Emulated backend, and [`Backend::probe`] / [`FuseRoute::probe`] say why.
//!
//! ```
//! use greenfd_vpoll::{Events, VpollFd};
//! use std::os::fd::AsFd;
//!
//! let v = VpollFd::new(Events::empty())?;
//! v.add(Events::IN)?;
//! let fd = v.as_fd();
//! let mut fds = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
//! rustix::event::poll(&mut fds, None)?;
//! assert!(fds[0].revents().contains(rustix::event::PollFlags::IN));
//! v.del(Events::IN)?;
//! assert_eq!(v.events()?, Events::empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backend;
mod error;
mod events;
mod names;
mod route;

pub use error::{Error, Result};
pub use events::{Events, Op};
pub use route::{FUSE_ROUTE_ENV, FuseRoute};

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Environment variable that forces one backend.
pub const BACKEND_ENV: &str = "GREENFD_VPOLL_BACKEND";

/// Which mechanism delivers a [`VpollFd`]'s readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `eventfd(2)` with the `EFD_VPOLL` flag (vpoll kernel patch).
    Kernel,
    /// `/dev/vpoll` character device (vpoll kernel module).
    Device,
    /// A file on this process's private FUSE filesystem.
    Fuse,
    /// A socketpair whose peer end carries the state.
    Emulated,
}

names::named_enum! {
    Backend, "backend", "GREENFD_VPOLL_BACKEND", UnknownBackend;
    Kernel => "kernel",
    Device => "device",
    Fuse => "fuse",
    Emulated => "emulated",
}

impl Backend {
    /// Checks whether this backend can be used here; the error says why not. For
    /// [`Backend::Fuse`] this mounts the process's filesystem by the route
    /// `GREENFD_VPOLL_FUSE_ROUTE` forces, or the first that works.
    pub fn probe(self) -> Result<()> {
        backend::probe(self, None)
    }
}

/// Chooses a backend and the initial state of a new [`VpollFd`].
#[derive(Clone, Debug, Default)]
pub struct Builder {
    /// A backend chosen by the caller, overriding the environment and the probe order.
    backend: Option<Backend>,
    /// Events the fd reports from the moment it exists.
    init: Events,
    /// Whether the fd stays open across `exec`.
    inherit_on_exec: bool,
    /// The FUSE route chosen by the caller, overriding `GREENFD_VPOLL_FUSE_ROUTE`.
    fuse_route: Option<FuseRoute>,
}

impl Builder {
    /// A builder with no events set, close-on-exec, and automatic backend choice.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forces a backend (takes precedence over `GREENFD_VPOLL_BACKEND`).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Forces how the Fuse backend's filesystem is mounted, when that backend serves the
    /// fd (takes precedence over `GREENFD_VPOLL_FUSE_ROUTE`); it does not choose the
    /// backend. If the route does not work here, [`build`](Self::build) fails with
    /// [`Error::Unavailable`].
    pub fn fuse_route(mut self, route: FuseRoute) -> Self {
        self.fuse_route = Some(route);
        self
    }

    /// Events set from creation on.
    pub fn events(mut self, init: Events) -> Self {
        self.init = init;
        self
    }

    /// Keeps the fd open across `exec` (default: close-on-exec).
    pub fn inherit_on_exec(mut self, inherit: bool) -> Self {
        self.inherit_on_exec = inherit;
        self
    }

    /// The backend [`build`](Self::build) would use: the explicit one, else the
    /// environment's, else the first that probes available.
    pub fn resolve_backend(&self) -> Result<Backend> {
        if let Some(b) = self.backend {
            backend::probe(b, self.fuse_route)?;
            return Ok(b);
        }
        if let Some(forced) = std::env::var_os(BACKEND_ENV) {
            let forced = forced.to_string_lossy();
            if !forced.trim().is_empty() {
                let b: Backend = forced.parse()?;
                backend::probe(b, self.fuse_route)?;
                return Ok(b);
            }
        }
        best_backend_with(self.fuse_route)
    }

    /// Creates the fd.
    pub fn build(&self) -> Result<VpollFd> {
        let backend = self.resolve_backend()?;
        let (fd, key) =
            backend::create(backend, self.init, !self.inherit_on_exec, self.fuse_route)?;
        tracing::trace!(fd = fd.as_raw_fd(), %backend, init = ?self.init, "vpoll create");
        Ok(VpollFd {
            fd: Some(fd),
            backend,
            key,
        })
    }
}

/// The first backend, in order of preference, that is available here.
pub fn best_backend() -> Result<Backend> {
    best_backend_with(None)
}

/// [`best_backend`], probing Fuse by `route` if given.
fn best_backend_with(route: Option<FuseRoute>) -> Result<Backend> {
    let mut reasons = Vec::new();
    for b in Backend::ALL {
        match backend::probe(b, route) {
            Ok(()) => return Ok(b),
            Err(e) => reasons.push(format!("{b}: {e}")),
        }
    }
    Err(Error::NoBackend(reasons.join("; ")))
}

/// A file descriptor whose readiness is set by hand.
#[derive(Debug)]
pub struct VpollFd {
    /// The pollable descriptor handed to epoll, poll, select; `None` only while
    /// `close` or `From<VpollFd> for OwnedFd` moves it out.
    fd: Option<OwnedFd>,
    /// What the backend learnt about `fd` at creation (the Fuse file's device and inode),
    /// so that `ctl` need not ask the kernel again.
    key: backend::Key,
    /// The backend that serves `fd`.
    backend: Backend,
}

impl VpollFd {
    /// Creates a vpoll fd with the best available backend and `init` events set.
    pub fn new(init: Events) -> Result<Self> {
        Builder::new().events(init).build()
    }

    /// Sets `events` in addition to those already set.
    pub fn add(&self, events: Events) -> Result<()> {
        self.ctl(Op::Add, events)
    }

    /// Clears `events`.
    pub fn del(&self, events: Events) -> Result<()> {
        self.ctl(Op::Del, events)
    }

    /// Replaces the whole mask with `events`.
    pub fn set(&self, events: Events) -> Result<()> {
        self.ctl(Op::Set, events)
    }

    /// Applies `op` with `events`.
    pub fn ctl(&self, op: Op, events: Events) -> Result<()> {
        backend::ctl_keyed(self.backend, self.key, self.as_fd(), op, events)
    }

    /// The events `poll(2)` reports for this fd now.
    pub fn events(&self) -> Result<Events> {
        backend::events(self.backend, self.as_fd())
    }

    /// The backend that serves this fd.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The route of the FUSE filesystem that serves this fd (`None` for other backends).
    pub fn fuse_route(&self) -> Option<FuseRoute> {
        match self.backend {
            Backend::Fuse => backend::route_of(self.as_fd()),
            _ => None,
        }
    }

    /// Closes the fd, reporting errors that `Drop` would ignore.
    pub fn close(mut self) -> Result<()> {
        match self.fd.take() {
            Some(fd) => backend::close(self.backend, fd),
            None => Ok(()),
        }
    }
}

impl AsFd for VpollFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.fd {
            Some(fd) => fd.as_fd(),
            // Only `close` and `into` take the fd, and both consume `self`.
            None => unreachable!("VpollFd used after its fd was moved out"),
        }
    }
}

impl AsRawFd for VpollFd {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl From<VpollFd> for OwnedFd {
    /// The descriptor stays a vpoll fd: [`ctl_fd`] and [`close_fd`] still work on it.
    /// Close it with [`close_fd`]: dropping the `OwnedFd` closes only the descriptor,
    /// and a backend's private state (the Emulated backend's peer socket) then stays
    /// open until the process exits.
    fn from(mut v: VpollFd) -> OwnedFd {
        v.fd.take()
            .expect("VpollFd always holds its fd until consumed")
    }
}

impl Drop for VpollFd {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            // Errors on close are unreportable here; `close` is the reporting variant.
            let _ = backend::close(self.backend, fd);
        }
    }
}

/// Applies `op` to a vpoll fd known only by descriptor (the C ABI, or a forked child
/// that inherited it). Fails with [`Error::NotVpoll`] (EBADF) if it is not one.
///
/// In a forked child of a multithreaded process this takes no lock and allocates
/// nothing on success (lock-free tables, atomics and raw syscalls), so it is usable
/// between `fork` and `_exit`/`exec`.
///
/// Cost: the system call that does the work plus at most one to recognise the fd (a
/// socket cookie or an `fstat`), so it suits a hot path (it is what `vpoll_ctl` runs).
pub fn ctl_fd(fd: BorrowedFd<'_>, op: Op, events: Events) -> Result<()> {
    backend::ctl_any(fd, op, events)
}

/// The FUSE route new Fuse fds use when no [`Builder::fuse_route`] is given:
/// `GREENFD_VPOLL_FUSE_ROUTE`'s, else the first of [`FuseRoute::ALL`] that works here
/// (mounting its filesystem, as the first such fd would). The error lists why each
/// route failed.
pub fn fuse_route() -> Result<FuseRoute> {
    backend::chosen_route()
}

/// The current events of a vpoll fd known only by descriptor.
pub fn events_fd(fd: BorrowedFd<'_>) -> Result<Events> {
    let backend = backend::identify(fd)?;
    backend::events(backend, fd)
}

/// Which backend serves `fd`, or [`Error::NotVpoll`].
pub fn backend_of(fd: BorrowedFd<'_>) -> Result<Backend> {
    backend::identify(fd)
}

/// Closes descriptor `fd` if it is a vpoll fd, releasing backend state tied to it; any
/// other descriptor is left open and the call fails with [`Error::NotVpoll`] (what
/// `vpoll_close` needs: one identification, then the close).
///
/// # Safety
///
/// The caller owns `fd`: on success it is closed, and no one may use the number after.
pub unsafe fn close_raw_fd(fd: RawFd) -> Result<()> {
    if fd < 0 {
        return Err(Error::NotVpoll);
    }
    // SAFETY: a borrow for the identification only; a closed number fails with EBADF.
    let b = backend::identify(unsafe { BorrowedFd::borrow_raw(fd) })?;
    // SAFETY: `fd` is open (just identified) and the caller hands its ownership to us.
    backend::close(b, unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Closes a vpoll fd known only by descriptor, releasing backend state tied to it.
/// A descriptor that is not a vpoll fd is closed too, and the call fails with
/// [`Error::NotVpoll`].
pub fn close_fd(fd: OwnedFd) -> Result<()> {
    match backend::identify(fd.as_fd()) {
        Ok(b) => backend::close(b, fd),
        Err(e) => Err(e),
    }
}
