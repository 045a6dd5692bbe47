//! Which I/O driver runs an engine's loop: epoll readiness or io_uring completions.

use std::fmt;
use std::str::FromStr;

/// The I/O driver of an engine ([`Config::io`](crate::Config::io)).
///
/// Both drivers run the same connection table, framing, handler calls, backpressure
/// and shutdown; they differ only in how bytes move between sockets and buffers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IoDriver {
    /// io_uring when the kernel has every operation the driver needs, else epoll (the
    /// reason is logged).
    #[default]
    Auto,
    /// Edge-triggered epoll: `epoll_wait`, then `recv` and `sendmsg` per connection.
    Epoll,
    /// io_uring: multishot accept, multishot recv into a provided-buffer ring, and
    /// every connection's `sendmsg` submitted in one `io_uring_enter` per loop turn.
    Uring,
}

impl IoDriver {
    /// The name `--io` takes (`auto`, `epoll`, `uring`).
    pub fn as_str(self) -> &'static str {
        match self {
            IoDriver::Auto => "auto",
            IoDriver::Epoll => "epoll",
            IoDriver::Uring => "uring",
        }
    }

    /// Whether io_uring can run here; `Err` says what is missing. Probed once per
    /// process (a throwaway ring: opcodes, features, a provided-buffer ring).
    pub fn uring_support() -> Result<(), String> {
        crate::uring::support()
    }
}

impl fmt::Display for IoDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An I/O driver name that is none of `auto`, `epoll`, `uring`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown I/O driver {0:?} (expected auto, epoll or uring)")]
pub struct UnknownDriver(pub String);

impl FromStr for IoDriver {
    type Err = UnknownDriver;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(IoDriver::Auto),
            "epoll" => Ok(IoDriver::Epoll),
            "uring" | "io_uring" | "io-uring" => Ok(IoDriver::Uring),
            other => Err(UnknownDriver(other.to_owned())),
        }
    }
}
