//! The Kernel backend: `eventfd(2)` with `EFD_VPOLL`, from the vpoll kernel patch.
//!
//! The kernel keeps the mask; a `write` of the 8-byte control word ([`Op::encode`]:
//! op in the high 32 bits, events in the low 32) changes it, and `poll` reports it
//! exactly. The initial mask is the eventfd's initial value. Kernels without the patch
//! reject the flag with EINVAL, so the probe result says exactly that.
//!
//! A vpoll eventfd looks like any other eventfd from outside, so the fds this process
//! creates are recorded in the [`registry`](super::registry) (verified by inode);
//! `owns` never claims an eventfd it did not record (its fdinfo carries no vpoll mark,
//! and a control word written to a plain eventfd would corrupt its counter). A forked
//! child inherits the record; a program started with `exec` that inherited the fd can
//! still control it by writing the control word itself, as the kernel protocol allows.

use super::{close_checked, poll_now, registry, retry, unavailable};
use crate::{Backend, Error, Events, Op, Result};
use rustix::event::{EventfdFlags, eventfd};
use rustix::io::Errno;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;

const THIS: Backend = Backend::Kernel;

/// `EFD_VPOLL` from the vpoll kernel patch.
const EFD_VPOLL: u32 = 1 << 1;

/// The probe's outcome, computed once: the kernel does not change under a process.
static PROBE: OnceLock<std::result::Result<(), String>> = OnceLock::new();

/// The eventfd flags for a vpoll eventfd.
fn flags(cloexec: bool) -> EventfdFlags {
    let mut f = EventfdFlags::from_bits_retain(EFD_VPOLL);
    if cloexec {
        f |= EventfdFlags::CLOEXEC;
    }
    f
}

pub(crate) fn probe() -> Result<()> {
    PROBE
        .get_or_init(|| match retry(|| eventfd(0, flags(true))) {
            Ok(fd) => {
                drop(fd);
                Ok(())
            }
            Err(Errno::INVAL) => Err(
                "eventfd(EFD_VPOLL) failed with EINVAL: this kernel lacks the vpoll patch".into(),
            ),
            Err(e) => Err(format!("eventfd(EFD_VPOLL) failed: {e}")),
        })
        .clone()
        .map_err(|why| unavailable(THIS, why))
}

pub(crate) fn create(init: Events, cloexec: bool) -> Result<OwnedFd> {
    probe()?;
    let fd = retry(|| eventfd(init.bits(), flags(cloexec)))?;
    let ino = registry::inode(fd.as_fd())?;
    if registry::insert(fd.as_raw_fd(), ino, -1).is_none() {
        return Err(Error::Io(Errno::MFILE.into()));
    }
    tracing::trace!(fd = fd.as_raw_fd(), ?init, "kernel vpoll create");
    Ok(fd)
}

/// Whether `fd`, whose inode number is `ino`, is a vpoll eventfd this process recorded
/// (under its own number, or a `dup` of one).
pub(crate) fn owns_ino(fd: BorrowedFd<'_>, ino: u64) -> bool {
    PROBE.get().is_some_and(|p| p.is_ok()) && registry::find(fd, ino, |e| e.peer < 0).is_some()
}

/// Whether `fd` is the Kernel fd the registry recorded under its number: one `fstat`.
pub(crate) fn verify(fd: BorrowedFd<'_>) -> rustix::io::Result<bool> {
    let Some(e) = registry::get(fd.as_raw_fd()).filter(|e| e.peer < 0) else {
        return Ok(false);
    };
    Ok(registry::inode(fd)? == e.ino)
}

pub(crate) fn ctl(fd: BorrowedFd<'_>, op: Op, events: Events) -> Result<()> {
    let word = op.encode(events).to_ne_bytes();
    match retry(|| rustix::io::write(fd, &word))? {
        8 => Ok(()),
        _ => Err(Error::Io(Errno::IO.into())),
    }
}

pub(crate) fn events(fd: BorrowedFd<'_>) -> Result<Events> {
    poll_now(fd)
}

pub(crate) fn close(fd: OwnedFd) -> Result<()> {
    if let Ok(ino) = registry::inode(fd.as_fd()) {
        registry::remove(fd.as_raw_fd(), ino);
    }
    close_checked(fd)
}
