//! SIGINT and SIGTERM as a file descriptor, for the commands that stop cleanly.
//!
//! The signals are blocked in the calling thread (and so in every thread it starts
//! later) and read from a `signalfd`: no handler ever runs inside an event loop, and no
//! reply in flight is torn in half by a signal.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};

/// The signals that stop a command.
const STOP_SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// Blocks SIGINT/SIGTERM in this thread (and every thread it spawns later) and returns
/// a non-blocking signalfd that reports them.
pub fn stop_signal_fd() -> io::Result<OwnedFd> {
    // SAFETY: `sigset_t` is plain data; sigemptyset initialises it before any use.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t.
    unsafe { libc::sigemptyset(&mut set) };
    for sig in STOP_SIGNALS {
        // SAFETY: `set` is initialised and `sig` is a valid signal number.
        unsafe { libc::sigaddset(&mut set, sig) };
    }
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    // SAFETY: -1 asks for a new signalfd; `set` is initialised.
    let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    tracing::trace!(fd, "signalfd");
    // SAFETY: signalfd returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one pending signal from `fd` and returns its number; `WouldBlock` when none is
/// pending.
pub fn read_signal(fd: BorrowedFd<'_>) -> io::Result<u32> {
    let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
    let n = rustix::io::read(fd.as_fd(), &mut info)?;
    if n < info.len() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("short signalfd read: {n} bytes"),
        ));
    }
    // `ssi_signo` is the record's first field.
    Ok(u32::from_ne_bytes([info[0], info[1], info[2], info[3]]))
}
