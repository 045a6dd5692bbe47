//! Errors of vpoll operations.

use std::io;

/// Result of vpoll operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a vpoll operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The requested backend cannot be used here (the message says why).
    #[error("vpoll backend {backend} unavailable: {reason}")]
    Unavailable {
        /// The backend's name.
        backend: &'static str,
        /// Why it is unavailable.
        reason: String,
    },
    /// No backend at all is available.
    #[error("no vpoll backend available ({0})")]
    NoBackend(String),
    /// `GREENFD_VPOLL_BACKEND` or a parse named no known backend.
    #[error(
        "unknown vpoll backend {0:?} (expected {names})",
        names = crate::names::one_of(&crate::Backend::NAMES)
    )]
    UnknownBackend(String),
    /// `GREENFD_VPOLL_FUSE_ROUTE` or a parse named no known FUSE route.
    #[error(
        "unknown FUSE route {0:?} (expected {names})",
        names = crate::names::one_of(&[&crate::FuseRoute::NAMES[..], &[crate::route::LEGACY]].concat())
    )]
    UnknownRoute(String),
    /// The descriptor is not a vpoll fd (maps to EBADF in the C ABI).
    #[error("file descriptor is not a vpoll fd")]
    NotVpoll,
    /// An invalid op, flag or event bit (maps to EINVAL in the C ABI).
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    /// A system call failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Error {
    /// The errno the C ABI reports for this error.
    pub fn raw_os_error(&self) -> i32 {
        match self {
            Error::Unavailable { .. }
            | Error::NoBackend(_)
            | Error::UnknownBackend(_)
            | Error::UnknownRoute(_) => libc::ENODEV,
            Error::NotVpoll => libc::EBADF,
            Error::Invalid(_) => libc::EINVAL,
            Error::Io(e) => e.raw_os_error().unwrap_or(libc::EIO),
        }
    }
}

impl From<rustix::io::Errno> for Error {
    fn from(e: rustix::io::Errno) -> Self {
        Error::Io(e.into())
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            other => io::Error::from_raw_os_error(other.raw_os_error()),
        }
    }
}
