//! Helpers shared by the vpoll integration tests: which backends to run, what each
//! backend shows for a mask, and the three ways to ask the kernel (epoll, poll, select).
#![allow(dead_code)]

use greenfd_vpoll::{Backend, Builder, Events, VpollFd};
use rustix::event::{PollFd, PollFlags, Timespec, epoll};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// The safety-net timeout for waits that must succeed (a bug fails instead of hanging).
pub const SAFETY: Duration = Duration::from_secs(10);

/// A fresh fd of backend `b` with `init` set.
pub fn make(b: Backend, init: Events) -> VpollFd {
    Builder::new()
        .backend(b)
        .events(init)
        .build()
        .unwrap_or_else(|e| panic!("{b}: create with {init:?}: {e}"))
}

/// Whether backend `b` can show `logical` at all (Emulated cannot signal ERR).
pub fn representable(b: Backend, logical: Events) -> bool {
    b != Backend::Emulated || !logical.contains(Events::ERR)
}

/// What poll(2) shows on backend `b` when `logical` is set: exact everywhere except
/// Emulated, which documents PRI → PRI|IN, RDHUP → RDHUP|IN, HUP → HUP|IN|RDHUP.
pub fn visible(b: Backend, logical: Events) -> Events {
    let mut v = logical;
    if b == Backend::Emulated {
        if v.intersects(Events::PRI | Events::RDHUP | Events::HUP) {
            v |= Events::IN;
        }
        if v.contains(Events::HUP) {
            v |= Events::RDHUP;
        }
    }
    v
}

/// The six event bits, in order.
pub const BITS: [Events; 6] = [
    Events::IN,
    Events::PRI,
    Events::OUT,
    Events::ERR,
    Events::HUP,
    Events::RDHUP,
];

/// Mask number `n` (0..64) as a combination of [`BITS`].
pub fn combo(n: usize) -> Events {
    BITS.iter()
        .enumerate()
        .filter(|(i, _)| n & (1 << i) != 0)
        .fold(Events::empty(), |acc, (_, b)| acc | *b)
}

/// Every combination of the six event bits.
pub fn all_masks() -> impl Iterator<Item = Events> {
    (0..64).map(combo)
}

/// The interest mask that asks epoll for every bit.
fn epoll_interest() -> epoll::EventFlags {
    epoll::EventFlags::IN
        | epoll::EventFlags::PRI
        | epoll::EventFlags::OUT
        | epoll::EventFlags::RDHUP
}

/// A new epoll instance watching `fd` for every bit, edge-triggered if `et`.
pub fn epoll_watching(fd: BorrowedFd<'_>, et: bool) -> OwnedFd {
    let mut flags = epoll_interest();
    if et {
        flags |= epoll::EventFlags::ET;
    }
    greenfd_test_support::epoll_on(fd, 7, flags)
}

/// One `epoll_wait` on `ep`: the events reported (empty on timeout).
pub fn epoll_once(ep: &OwnedFd, timeout: Duration) -> Events {
    let evs = greenfd_test_support::epoll_wait(ep, timeout);
    assert!(evs.len() <= 1, "one fd registered, {} events", evs.len());
    evs.first().map_or(Events::empty(), |&(data, flags)| {
        assert_eq!(data, 7);
        Events::from_bits_truncate(flags.bits())
    })
}

/// What poll(2) reports for `fd` (zero timeout), limited to the vpoll bits.
pub fn poll_events(fd: BorrowedFd<'_>) -> Events {
    let mut fds = [PollFd::new(
        &fd,
        PollFlags::IN | PollFlags::PRI | PollFlags::OUT | PollFlags::RDHUP,
    )];
    rustix::event::poll(&mut fds, Some(&Timespec::default())).expect("poll");
    Events::from_bits_truncate(u32::from(fds[0].revents().bits()))
}

/// What select(2) reports for `fd` (zero timeout): (read, write, except).
pub fn select_sets(fd: BorrowedFd<'_>) -> (bool, bool, bool) {
    let raw = fd.as_raw_fd();
    assert!(
        (raw as usize) < libc::FD_SETSIZE,
        "fd {raw} too large for select"
    );
    // SAFETY: fd_set is plain data for which all-zero is the empty set, FD_SET/ISSET
    // stay within it because raw < FD_SETSIZE, and select only reads/writes the sets
    // and the timeval we pass.
    unsafe {
        let mut r: libc::fd_set = std::mem::zeroed();
        let mut w: libc::fd_set = std::mem::zeroed();
        let mut x: libc::fd_set = std::mem::zeroed();
        libc::FD_SET(raw, &mut r);
        libc::FD_SET(raw, &mut w);
        libc::FD_SET(raw, &mut x);
        let mut tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        let n = libc::select(raw + 1, &mut r, &mut w, &mut x, &mut tv);
        assert!(n >= 0, "select: {}", std::io::Error::last_os_error());
        (
            libc::FD_ISSET(raw, &r),
            libc::FD_ISSET(raw, &w),
            libc::FD_ISSET(raw, &x),
        )
    }
}

/// The select sets the kernel derives from a poll mask (fs/select.c POLLIN_SET etc.).
pub fn expected_select(v: Events) -> (bool, bool, bool) {
    (
        v.intersects(Events::IN | Events::HUP | Events::ERR),
        v.intersects(Events::OUT | Events::ERR),
        v.contains(Events::PRI),
    )
}

/// Asserts that epoll (level- and edge-triggered), poll, select and `events()` all
/// report exactly `expect` for `v`.
pub fn assert_seen(v: &VpollFd, expect: Events, what: &str) {
    let b = v.backend();
    assert_eq!(v.events().unwrap(), expect, "{b}: events() after {what}");
    assert_eq!(poll_events(v.as_fd()), expect, "{b}: poll after {what}");
    assert_eq!(
        select_sets(v.as_fd()),
        expected_select(expect),
        "{b}: select after {what} (mask {expect:?})"
    );
    let wait = if expect.is_empty() {
        Duration::ZERO
    } else {
        SAFETY
    };
    let lt = epoll_watching(v.as_fd(), false);
    assert_eq!(epoll_once(&lt, wait), expect, "{b}: epoll LT after {what}");
    // Level-triggered: reported again while it holds.
    assert_eq!(
        epoll_once(&lt, Duration::ZERO),
        expect,
        "{b}: epoll LT again after {what}"
    );
    let et = epoll_watching(v.as_fd(), true);
    assert_eq!(epoll_once(&et, wait), expect, "{b}: epoll ET after {what}");
    // Edge-triggered: nothing new until the state changes.
    assert_eq!(
        epoll_once(&et, Duration::ZERO),
        Events::empty(),
        "{b}: epoll ET second wait after {what}"
    );
}

/// Waits (bounded by [`SAFETY`]) for child `pid` to exit; returns its wait status.
/// Kills it and panics if it does not exit in time, so a hung child fails the test.
pub fn wait_child(pid: libc::pid_t) -> libc::c_int {
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).expect("pid"),
        rustix::process::PidfdFlags::empty(),
    )
    .expect("pidfd_open");
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let ts = Timespec::try_from(SAFETY).expect("timeout");
    let n = rustix::event::poll(&mut fds, Some(&ts)).expect("poll pidfd");
    if n == 0 {
        // SAFETY: plain syscalls on a child we forked and have not reaped.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        panic!("child {pid} did not exit within {SAFETY:?}");
    }
    let mut status = 0;
    // SAFETY: `pid` is our exited, unreaped child; `status` is a valid out pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid, "waitpid: {}", std::io::Error::last_os_error());
    status
}
