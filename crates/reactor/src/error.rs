//! The reactor's typed errors.

use std::io;

/// Why a wait (or a registration) ended without the fd becoming ready.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another task already waits for the same direction on this fd (one reader, one
    /// writer and one priority waiter per fd), or the fd number is owned by a persistent
    /// registration in this reactor (borrowed waits and registrations do not mix).
    #[error(
        "the fd is busy: another task waits in this direction, or it has a persistent registration"
    )]
    BusyResource,
    /// `notify_closing` was called for the fd (or its owner is closing it) while this
    /// task waited.
    #[error("the fd was closed while a task waited on it")]
    Closed,
    /// The kernel refused the registration (e.g. `EBADF`, or `EPERM` for a regular file).
    #[error("epoll: {0}")]
    Io(#[from] io::Error),
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            Error::BusyResource => io::Error::new(io::ErrorKind::ResourceBusy, e),
            Error::Closed => io::Error::new(io::ErrorKind::NotConnected, e),
        }
    }
}
