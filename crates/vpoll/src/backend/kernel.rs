//! The kernel backend (not implemented yet: always unavailable).

use super::unavailable;
use crate::{Backend, Error, Events, Op, Result};
use std::os::fd::{BorrowedFd, OwnedFd};

const THIS: Backend = Backend::Kernel;

pub(crate) fn probe() -> Result<()> {
    Err(unavailable(THIS, "not implemented yet"))
}

pub(crate) fn create(_init: Events, _cloexec: bool) -> Result<OwnedFd> {
    Err(unavailable(THIS, "not implemented yet"))
}

pub(crate) fn owns(_fd: BorrowedFd<'_>) -> bool {
    false
}

pub(crate) fn ctl(_fd: BorrowedFd<'_>, _op: Op, _events: Events) -> Result<()> {
    Err(Error::NotVpoll)
}

pub(crate) fn events(_fd: BorrowedFd<'_>) -> Result<Events> {
    Err(Error::NotVpoll)
}

pub(crate) fn close(fd: OwnedFd) -> Result<()> {
    drop(fd);
    Ok(())
}
