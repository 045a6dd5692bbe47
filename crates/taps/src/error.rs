//! Errors of sources, taps and queues.

use std::io;

/// Result of taps operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a taps operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source was closed before the tap could be registered.
    #[error("source is closed")]
    SourceClosed,
    /// A queue was asked for a ring of zero entries.
    #[error("event queue ring capacity must be at least 1")]
    ZeroCapacity,
    /// Creating or driving a vpoll fd failed.
    #[error(transparent)]
    Vpoll(#[from] greenfd_vpoll::Error),
    /// A system call failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Error::Io(e.into())
    }
}
