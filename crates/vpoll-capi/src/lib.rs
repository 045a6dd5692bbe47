//! libvpoll's C ABI on greenfd-vpoll: `libvpoll.so.0`, `libvpoll.a`, `vpoll.h`, `vpoll.pc`.
//!
//! [libvpoll](https://github.com/rd235/libvpoll-eventfd) gives C programs file descriptors
//! whose poll/epoll readiness they set by hand. Its full fidelity needs a patched kernel or
//! an out-of-tree module; without them it falls back to a socketpair emulator that, for
//! example, reports a hang-up as `EPOLLHUP|EPOLLIN|EPOLLRDHUP` (`2011`). This crate exports
//! the same three functions with the same header, SONAME and pkg-config name, backed by
//! greenfd-vpoll, so an unmodified libvpoll program gets greenfd's best backend (the FUSE
//! one reports every bit exactly on a stock kernel, for every user: root mounts directly, other
//! users through a user namespace or `fusermount3`). `GREENFD_VPOLL_BACKEND` forces a
//! backend and `GREENFD_VPOLL_FUSE_ROUTE` a FUSE route; the man pages vpoll(3),
//! vpoll_create(3), vpoll_ctl(3) and vpoll_close(3) (in `man/`) describe it all.
//!
//! # Install
//!
//! ```text
//! scripts/install-capi.sh --prefix /usr/local [--release]
//! ```
//!
//! builds this crate (release profile) and lays out
//! `PREFIX/include/vpoll.h`, `PREFIX/lib/libvpoll.so.0` (SONAME `libvpoll.so.0`, stripped,
//! exporting exactly the three functions) with the development link `libvpoll.so`,
//! `PREFIX/lib/libvpoll.a` (without debug info), `PREFIX/lib/pkgconfig/vpoll.pc` and
//! `PREFIX/share/man/man3/vpoll{,_create,_ctl,_close}.3`.
//! A program then builds with `cc prog.c $(pkg-config --cflags --libs vpoll)`, or with the
//! library linked in statically:
//!
//! ```text
//! cc prog.c $(pkg-config --cflags vpoll) PREFIX/lib/libvpoll.a $(pkg-config --variable=libs_private vpoll)
//! ```
//!
//! where `libs_private` (also `Libs.private`) names the system libraries the Rust runtime
//! inside `libvpoll.a` needs, as rustc reports them.
//!
//! # Semantics, where libvpoll leaves room
//!
//! * `vpoll_create(init_events, flags)`: `flags` may only hold `FD_CLOEXEC` (1); other bits
//!   give `EINVAL` (libvpoll ignores them silently). Unlike libvpoll's kernel mode,
//!   `init_events` is honoured.
//! * `vpoll_ctl(fd, op, events)`: an unknown `op` gives `EINVAL`; a descriptor that is not
//!   a vpoll fd gives `EBADF`. The `epoll_ctl` input flags (bits 28–31: `EPOLLEXCLUSIVE`,
//!   `EPOLLWAKEUP`, `EPOLLONESHOT`, `EPOLLET`) give `EINVAL`, as the `EFD_VPOLL` kernel patch
//!   does. Other bits that greenfd cannot deliver (anything but `EPOLLIN`, `EPOLLPRI`,
//!   `EPOLLOUT`, `EPOLLERR`, `EPOLLHUP`, `EPOLLRDHUP`) give `EINVAL` for ADD and SET, and are
//!   ignored by DEL, so deleting exactly what `epoll_wait` reported always works.
//! * A request the chosen backend cannot represent gives `EINVAL` and changes nothing (the
//!   emulated backend, for example, cannot clear a hang-up once set; libvpoll's reference
//!   program ignores `vpoll_ctl`'s result for that final DEL).
//! * `vpoll_create` fails with `ENODEV` when no backend is available, or when
//!   `GREENFD_VPOLL_BACKEND` names an unknown or unavailable one.
//! * `vpoll_close(fd)`: a descriptor that is not a vpoll fd gives `EBADF` and stays open.
//! * Cost: `vpoll_ctl` makes the system call that does the work plus at most one that
//!   recognises the descriptor (greenfd-vpoll keeps a per-number record of the fds this
//!   process created, verified by socket cookie or inode, so a reused number is never
//!   mistaken for a vpoll fd); a closed number fails that check with `EBADF`.
//! * No Rust panic crosses the ABI: it becomes `-1` with `errno = EIO`.
//! * With the emulated backend a hang-up reads as `EPOLLHUP|EPOLLIN|EPOLLRDHUP`, as with
//!   libvpoll's emulator.
//!
//! # Example
//!
//! The functions are callable from Rust too (this crate is also an rlib):
//!
//! ```
//! use vpoll::{VPOLL_CTL_ADDEVENTS, VPOLL_CTL_DELEVENTS, vpoll_close, vpoll_create, vpoll_ctl};
//! # if greenfd_vpoll::best_backend().is_err() { return; }
//! let fd = vpoll_create(0, libc::FD_CLOEXEC);
//! assert!(fd >= 0);
//! assert_eq!(vpoll_ctl(fd, VPOLL_CTL_ADDEVENTS, libc::EPOLLIN as u32), 0);
//! let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
//! // SAFETY: one valid pollfd, as poll(2) requires.
//! assert_eq!(unsafe { libc::poll(&mut pfd, 1, 10_000) }, 1);
//! assert_eq!(vpoll_ctl(fd, VPOLL_CTL_DELEVENTS, libc::EPOLLIN as u32), 0);
//! assert_eq!(vpoll_ctl(fd, 42, 0), -1); // unknown op: EINVAL
//! assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EINVAL));
//! assert_eq!(vpoll_close(fd), 0);
//! ```

use greenfd_vpoll::{Builder, Error, Events, Op, Result, close_raw_fd, ctl_fd};
use std::ffi::c_int;
use std::os::fd::{BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// `vpoll_ctl` op: set `events` in addition to those already pending.
pub const VPOLL_CTL_ADDEVENTS: c_int = 1;
/// `vpoll_ctl` op: clear `events` from the pending set.
pub const VPOLL_CTL_DELEVENTS: c_int = 2;
/// `vpoll_ctl` op: make `events` the whole pending set.
pub const VPOLL_CTL_SETEVENTS: c_int = 3;

/// Creates a vpoll file descriptor reporting `init_events`; `flags` may be 0 or
/// `FD_CLOEXEC`. Returns the descriptor, or -1 with `errno` set.
#[unsafe(no_mangle)]
pub extern "C" fn vpoll_create(init_events: u32, flags: c_int) -> c_int {
    ffi_call("vpoll_create", || create(init_events, flags))
}

/// Applies `op` (`VPOLL_CTL_ADDEVENTS`, `_DELEVENTS`, `_SETEVENTS`) with the `EPOLL*` bits
/// `events` to vpoll fd `fd`. Returns 0, or -1 with `errno` set.
#[unsafe(no_mangle)]
pub extern "C" fn vpoll_ctl(fd: c_int, op: c_int, events: u32) -> c_int {
    ffi_call("vpoll_ctl", || ctl(fd, op, events).map(|()| 0))
}

/// Closes vpoll fd `fd` and releases what its backend holds for it. Returns 0, or -1
/// with `errno` set.
#[unsafe(no_mangle)]
pub extern "C" fn vpoll_close(fd: c_int) -> c_int {
    ffi_call("vpoll_close", || close(fd).map(|()| 0))
}

/// The only `vpoll_create` flag (libvpoll takes `FD_CLOEXEC`, not `O_CLOEXEC`).
const CREATE_FLAGS: c_int = libc::FD_CLOEXEC;

/// The `epoll_ctl(2)` input flags (`EPOLLEXCLUSIVE`, `EPOLLWAKEUP`, `EPOLLONESHOT`,
/// `EPOLLET`): never readiness states; the `EFD_VPOLL` kernel patch rejects them.
const EPOLL_INPUT_FLAGS: u32 = 0xf000_0000;

/// Runs one ABI call: maps an error to -1 and `errno`, and a panic to -1 and `EIO`.
fn ffi_call(name: &'static str, f: impl FnOnce() -> Result<c_int>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::trace!(call = name, error = %e, "vpoll C ABI error");
            set_errno(e.raw_os_error());
            -1
        }
        Err(_) => {
            tracing::trace!(call = name, "vpoll C ABI panic caught");
            set_errno(libc::EIO);
            -1
        }
    }
}

/// Sets the calling thread's `errno`, as a C function reports its error.
fn set_errno(errno: c_int) {
    // SAFETY: `__errno_location` returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() = errno };
}

/// `vpoll_create` on Rust types.
fn create(init_events: u32, flags: c_int) -> Result<c_int> {
    if flags & !CREATE_FLAGS != 0 {
        return Err(Error::Invalid(
            "vpoll_create flags may only hold FD_CLOEXEC",
        ));
    }
    let init = settable_events(init_events)?;
    let v = Builder::new()
        .events(init)
        .inherit_on_exec(flags & libc::FD_CLOEXEC == 0)
        .build()?;
    Ok(OwnedFd::from(v).into_raw_fd())
}

/// `vpoll_ctl` on Rust types.
fn ctl(fd: RawFd, op: c_int, events: u32) -> Result<()> {
    let op = u32::try_from(op)
        .ok()
        .and_then(Op::from_raw)
        .ok_or(Error::Invalid("unknown vpoll_ctl op"))?;
    let events = match op {
        Op::Add | Op::Set => settable_events(events)?,
        // Bits greenfd cannot set are never set, so clearing them is a no-op.
        Op::Del => no_input_flags(events).map(Events::from_bits_truncate)?,
    };
    // No check that `fd` is open first: identifying it fails with EBADF on a closed
    // number, so `ctl_fd` makes at most one system call besides the one that does the work.
    with_number(fd, |fd| ctl_fd(fd, op, events))
}

/// `vpoll_close` on Rust types.
fn close(fd: RawFd) -> Result<()> {
    // A descriptor that is not ours stays open: closing it would pull it from under its owner.
    // SAFETY: `vpoll_close` hands the ownership of `fd` to us; it is closed only if it is a
    // vpoll fd.
    unsafe { close_raw_fd(fd) }
}

/// `events` if every bit is one greenfd can deliver, else `EINVAL`.
fn settable_events(events: u32) -> Result<Events> {
    Events::from_bits(no_input_flags(events)?).ok_or(Error::Invalid(
        "events outside EPOLLIN|EPOLLPRI|EPOLLOUT|EPOLLERR|EPOLLHUP|EPOLLRDHUP",
    ))
}

/// `events` unless it holds an `epoll_ctl` input flag.
fn no_input_flags(events: u32) -> Result<u32> {
    if events & EPOLL_INPUT_FLAGS != 0 {
        return Err(Error::Invalid(
            "EPOLLET/EPOLLONESHOT/EPOLLWAKEUP/EPOLLEXCLUSIVE are not events",
        ));
    }
    Ok(events)
}

/// Runs `f` on a descriptor number from the C caller (`EBADF` for a negative one). `f`
/// must fail with [`Error::NotVpoll`] (`EBADF`) on a number that is not open, as the
/// identification in `greenfd-vpoll` does.
fn with_number<T>(fd: RawFd, f: impl FnOnce(BorrowedFd<'_>) -> Result<T>) -> Result<T> {
    if fd < 0 {
        return Err(Error::NotVpoll);
    }
    // SAFETY: the C caller keeps the number as it is during this call, as for any system
    // call on it; a closed number only makes the system calls on it fail with EBADF, and
    // the borrow ends when `f` returns.
    f(unsafe { BorrowedFd::borrow_raw(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    #[test]
    fn constants_match_libvpoll_and_vpoll_ops() {
        assert_eq!(Op::from_raw(VPOLL_CTL_ADDEVENTS as u32), Some(Op::Add));
        assert_eq!(Op::from_raw(VPOLL_CTL_DELEVENTS as u32), Some(Op::Del));
        assert_eq!(Op::from_raw(VPOLL_CTL_SETEVENTS as u32), Some(Op::Set));
        assert_eq!(CREATE_FLAGS, 1);
    }

    #[test]
    fn event_validation() {
        let all = (Events::all()).bits();
        assert_eq!(settable_events(all).unwrap(), Events::all());
        assert!(settable_events(libc::EPOLLRDNORM as u32).is_err());
        assert!(settable_events(libc::EPOLLET as u32 | 1).is_err());
        assert!(no_input_flags(libc::EPOLLONESHOT as u32).is_err());
        assert_eq!(no_input_flags(0x0fff_ffff).unwrap(), 0x0fff_ffff);
    }

    #[test]
    fn errors_set_errno_and_return_minus_one() {
        let r = ffi_call("t", || Err(Error::Invalid("x")));
        assert_eq!(r, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EINVAL)
        );
        let r = ffi_call("t", || panic!("boom"));
        assert_eq!(r, -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EIO)
        );
    }

    #[test]
    fn bad_descriptors_are_ebadf_and_stay_open() {
        assert_eq!(vpoll_ctl(-1, VPOLL_CTL_ADDEVENTS, 1), -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EBADF)
        );
        let (r, w) = rustix_pipe();
        assert_eq!(vpoll_ctl(r, VPOLL_CTL_ADDEVENTS, 1), -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EBADF)
        );
        assert_eq!(vpoll_close(w), -1);
        assert_eq!(
            std::io::Error::last_os_error().raw_os_error(),
            Some(libc::EBADF)
        );
        // SAFETY: F_GETFD on a number we own.
        let flags = unsafe { libc::fcntl(w, libc::F_GETFD) };
        assert!(flags >= 0, "fd was closed");
        // SAFETY: both are open pipe ends this test owns.
        drop(unsafe { (OwnedFd::from_raw_fd(r), OwnedFd::from_raw_fd(w)) });
    }

    /// A pipe as two raw descriptors the test owns.
    fn rustix_pipe() -> (RawFd, RawFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        (fds[0], fds[1])
    }
}
