//! What can go wrong: why a connection ended, why a send was refused, why the engine
//! could not start or stopped.

use crate::framing::FrameError;
use rustix::io::Errno;
use std::io;
use std::net::SocketAddr;

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DisconnectReason {
    /// The peer closed its end (after its remaining output was flushed).
    #[error("peer closed the connection")]
    PeerClosed,
    /// The peer reset the connection (`ECONNRESET`/`EPIPE`).
    #[error("connection reset by peer")]
    Reset,
    /// The peer sent a frame the framing rejected.
    #[error("invalid frame: {0}")]
    Invalid(FrameError),
    /// The handler asked for the connection to be closed.
    #[error("closed by the server")]
    Closed,
    /// A reply did not fit in the connection's output bound.
    #[error("output bound exceeded")]
    OutputOverflow,
    /// The engine is shutting down.
    #[error("engine shutdown")]
    Shutdown,
    /// Another socket error.
    #[error("socket error: {0}")]
    Io(io::ErrorKind),
}

/// Why [`EngineHandle::send`](crate::EngineHandle::send) (or [`Ctx::send`](crate::Ctx::send)) refused bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The connection's queued output would exceed [`Config::max_output`](crate::Config::max_output); retry after
    /// the peer reads (the `EAGAIN` of the engine).
    #[error("the connection's output buffer is full")]
    Full,
    /// No such connection (it closed, or never existed).
    #[error("no such connection")]
    Closed,
    /// The engine has stopped.
    #[error("the engine is shut down")]
    Shutdown,
}

/// Errors of binding and running an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Creating, binding or listening on the socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The failing syscall's error.
        source: io::Error,
    },
    /// The reactor itself failed (epoll or eventfd).
    #[error("reactor error: {0}")]
    Io(#[from] io::Error),
    /// An engine thread panicked (its handler, most likely).
    #[error("engine thread panicked")]
    Panicked,
}

/// The disconnect reason for a failed `recv`/`send`.
pub(crate) fn io_reason(e: Errno) -> DisconnectReason {
    if e == Errno::CONNRESET || e == Errno::PIPE {
        DisconnectReason::Reset
    } else {
        DisconnectReason::Io(io::Error::from(e).kind())
    }
}
