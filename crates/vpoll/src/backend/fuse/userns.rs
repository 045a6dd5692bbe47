//! The user-namespace route: FUSE for any user where unprivileged user namespaces work.
//!
//! A FUSE filesystem may be mounted by the owner of a user namespace (`FS_USERNS_MOUNT`).
//! The process itself cannot enter one (`unshare(CLONE_NEWUSER)` refuses a multithreaded
//! process, and would change its credentials for good), so a short-lived helper does it:
//!
//! 1. the process forks; the child `unshare`s `CLONE_NEWUSER | CLONE_NEWNS`, writes
//!    `deny` to `/proc/self/setgroups`, maps itself with `uid_map` `"0 <uid> 1"` and
//!    `gid_map` `"0 <gid> 1"`;
//! 2. it opens `/dev/fuse` itself (a file opened outside the namespace makes
//!    `FSCONFIG_CMD_CREATE` fail with EINVAL: the connection's namespace is the opener's);
//! 3. `fsopen("fuse")`, `fsconfig` `fd`, `rootmode=40000`, `user_id=0`, `group_id=0`,
//!    create, `fsmount`: a mount that is never attached anywhere;
//! 4. it sends the mount fd and the `/dev/fuse` fd back over `SCM_RIGHTS` and exits.
//!
//! The process then serves the connection and opens files with `openat(mount_fd, …)`.
//! No `allow_other`: with it the kernel lets in only openers inside the helper's (dead)
//! namespace, and the process's own `openat` fails with EACCES. Without it, the opener's
//! uid, euid, suid and gids must equal the mapped ids, which holds for the process and
//! its forked children (not for a child that changed its credentials).
//!
//! The child of a fork in a multithreaded process may only make async-signal-safe calls:
//! everything it needs (paths, map lines, option strings) is built before the fork, and
//! the child makes raw system calls only (no allocation, no lock, no Rust I/O); on failure
//! it reports the failing step and errno over the socket.

use super::mount::{Connection, DEV_FUSE, Root, open_dev, recv_fds};
use super::{THIS, unavailable};
use crate::Result;
use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// How long the helper may take before it is killed and the route reported broken
/// (it needs well under a millisecond).
const HELPER_TIMEOUT: Duration = Duration::from_secs(10);

/// The helper's steps, in order, as reported when one fails.
const STEPS: [&str; 9] = [
    "unshare(CLONE_NEWUSER|CLONE_NEWNS)",
    "write /proc/self/setgroups",
    "write /proc/self/uid_map",
    "write /proc/self/gid_map",
    "open /dev/fuse",
    "fsopen(\"fuse\")",
    "fsconfig",
    "fsmount",
    "sendmsg(SCM_RIGHTS)",
];

/// `fsopen` flag: the fs context fd is close-on-exec.
const FSOPEN_CLOEXEC: libc::c_uint = 1;
/// `fsconfig` command: set a string parameter.
const FSCONFIG_SET_STRING: libc::c_uint = 1;
/// `fsconfig` command: create the superblock.
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
/// `fsmount` flag: the mount fd is close-on-exec.
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
/// `MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC`.
const MOUNT_ATTRS: libc::c_uint = 0x2 | 0x4 | 0x8;

/// Everything the helper child uses, prepared before the fork (no allocation after it).
struct Plan {
    /// `/proc/self/setgroups`, `uid_map`, `gid_map` with what to write to each.
    writes: [(CString, CString); 3],
    /// `/dev/fuse`.
    dev: CString,
    /// Filesystem type.
    fstype: CString,
    /// `fsconfig` string parameters besides `fd` (which the child formats itself).
    params: [(CString, CString); 4],
    /// The key `fd`.
    fd_key: CString,
}

impl Plan {
    /// The plan for the calling process's ids.
    fn new() -> Plan {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let c = |s: &str| CString::new(s).expect("no NUL in constant strings");
        Plan {
            writes: [
                (c("/proc/self/setgroups"), c("deny")),
                (c("/proc/self/uid_map"), c(&format!("0 {uid} 1"))),
                (c("/proc/self/gid_map"), c(&format!("0 {gid} 1"))),
            ],
            dev: c(DEV_FUSE),
            fstype: c("fuse"),
            params: [
                (c("source"), c("greenfd-vpoll")),
                (c("rootmode"), c("40000")),
                (c("user_id"), c("0")),
                (c("group_id"), c("0")),
            ],
            fd_key: c("fd"),
        }
    }
}

/// Why the route cannot work here, when the kernel's settings say so plainly.
fn refused_by_settings() -> Option<String> {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned());
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Some("user namespaces are disabled (user.max_user_namespaces = 0)".into());
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1")
        && !has_cap_sys_admin()
    {
        return Some(
            "AppArmor restricts unprivileged user namespaces \
             (kernel.apparmor_restrict_unprivileged_userns = 1)"
                .into(),
        );
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0")
        && !has_cap_sys_admin()
    {
        return Some(
            "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)"
                .into(),
        );
    }
    None
}

/// Whether the calling thread holds `CAP_SYS_ADMIN` (then namespace sysctls do not apply).
fn has_cap_sys_admin() -> bool {
    rustix::thread::capabilities(None).is_ok_and(|c| {
        c.effective
            .contains(rustix::thread::CapabilitySet::SYS_ADMIN)
    })
}

/// Gets a connection through a helper child in a new user namespace.
pub(super) fn connect() -> Result<Connection> {
    // The same check the helper would fail, with a plainer reason.
    drop(open_dev()?);
    if let Some(why) = refused_by_settings() {
        return Err(unavailable(THIS, format!("the userns route: {why}")));
    }
    let plan = Plan::new();
    let (ours, theirs) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| unavailable(THIS, format!("socketpair for the userns helper: {e}")))?;
    let theirs_raw = theirs.as_raw_fd();
    // SAFETY: the child runs only `helper`, which makes raw async-signal-safe system calls
    // on memory prepared before the fork, and ends with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        let e = std::io::Error::last_os_error();
        return Err(unavailable(THIS, format!("fork of the userns helper: {e}")));
    }
    if pid == 0 {
        helper(&plan, theirs_raw);
    }
    drop(theirs);
    let got = receive(&ours);
    if got.is_err() {
        // SAFETY: `pid` is our own child; killing it ends a helper that hangs.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    reap(pid);
    let (mount, dev) = got?;
    tracing::trace!(?mount, ?dev, "vpoll fuse: userns helper passed its mount");
    Ok(Connection {
        dev,
        root: Root::Detached(mount),
        owner: (0, 0),
    })
}

/// Waits for the helper to exit (it exits right after sending).
fn reap(pid: libc::pid_t) {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child with a valid status pointer.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // ECHILD: the program reaps children itself (or ignores SIGCHLD); fine.
            return;
        }
    }
}

/// Reads the helper's answer: (mount fd, `/dev/fuse` fd), or the step that failed.
fn receive(sock: &OwnedFd) -> Result<(OwnedFd, OwnedFd)> {
    use rustix::event::{PollFd, PollFlags, poll};
    let mut fds = [PollFd::new(sock, PollFlags::IN)];
    let timeout = rustix::time::Timespec {
        tv_sec: HELPER_TIMEOUT.as_secs() as _,
        tv_nsec: 0,
    };
    match super::super::retry(|| poll(&mut fds, Some(&timeout))) {
        Ok(0) => {
            return Err(unavailable(
                THIS,
                "the userns helper did not answer within 10 s",
            ));
        }
        Ok(_) => {}
        Err(e) => return Err(unavailable(THIS, format!("poll on the userns helper: {e}"))),
    }
    let mut word = [0u8; 8];
    // Room for one SCM_RIGHTS message with two fds (aligned as cmsghdr needs).
    let mut control = [0u64; 8];
    let (n, mut passed) = recv_fds(sock, &mut word, &mut control, 0)
        .map_err(|e| unavailable(THIS, format!("recvmsg from the userns helper: {e}")))?;
    if n == 0 && passed.is_empty() {
        return Err(unavailable(
            THIS,
            "the userns helper died without an answer",
        ));
    }
    if passed.len() == 2 {
        let dev = passed.pop().expect("two fds");
        let mount = passed.pop().expect("two fds");
        return Ok((mount, dev));
    }
    let step = u32::from_ne_bytes([word[0], word[1], word[2], word[3]]) as usize;
    let errno = i32::from_ne_bytes([word[4], word[5], word[6], word[7]]);
    let e = std::io::Error::from_raw_os_error(errno);
    let what = STEPS.get(step).copied().unwrap_or("an unknown step");
    let hint = match (step, errno) {
        (0..=3, libc::EPERM | libc::EACCES | libc::ENOSPC | libc::EINVAL) => {
            ": unprivileged user namespaces are refused here \
             (sysctl, AppArmor or a container's seccomp profile)"
        }
        (4, _) => ": /dev/fuse is not accessible",
        (5..=7, libc::EPERM) => ": this kernel does not allow FUSE mounts in user namespaces",
        _ => "",
    };
    Err(unavailable(
        THIS,
        format!("the userns route failed at {what}: {e}{hint}"),
    ))
}

/// Writes `n` in decimal, NUL-terminated, into `buf`; returns it as a C string.
/// Async-signal-safe (no allocation).
fn decimal(mut n: u32, buf: &mut [u8; 12]) -> &CStr {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[i] = digits[len - 1 - i];
    }
    buf[len] = 0;
    CStr::from_bytes_until_nul(&buf[..=len]).unwrap_or(c"0")
}

/// The helper child: builds the mount and sends it over `sock`, then `_exit`s.
/// Only raw, async-signal-safe system calls on memory prepared before the fork.
fn helper(plan: &Plan, sock: RawFd) -> ! {
    /// Reports `step` failed with the current errno and exits.
    fn fail(sock: RawFd, step: u32) -> ! {
        // SAFETY: __errno_location is this thread's errno; reading it is async-signal-safe.
        let errno = unsafe { *libc::__errno_location() };
        let mut word = [0u8; 8];
        word[..4].copy_from_slice(&step.to_ne_bytes());
        word[4..].copy_from_slice(&errno.to_ne_bytes());
        // SAFETY: write and _exit are async-signal-safe; `word` is a live buffer.
        unsafe {
            libc::write(sock, word.as_ptr().cast(), word.len());
            libc::_exit(1)
        }
    }
    // SAFETY: every call in this block is a raw system call on pointers to live,
    // NUL-terminated strings or stack buffers; none allocates or takes a lock.
    unsafe {
        if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0 {
            fail(sock, 0);
        }
        for (i, (path, data)) in plan.writes.iter().enumerate() {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            let len = data.as_bytes().len();
            if fd < 0 || libc::write(fd, data.as_ptr().cast(), len) != len as isize {
                fail(sock, 1 + i as u32);
            }
            libc::close(fd);
        }
        let dev = libc::open(plan.dev.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if dev < 0 {
            fail(sock, 4);
        }
        let fs = libc::syscall(libc::SYS_fsopen, plan.fstype.as_ptr(), FSOPEN_CLOEXEC) as i32;
        if fs < 0 {
            fail(sock, 5);
        }
        let set = |key: &CStr, value: &CStr| {
            libc::syscall(
                libc::SYS_fsconfig,
                fs,
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            ) == 0
        };
        let mut num = [0u8; 12];
        if !set(&plan.fd_key, decimal(dev as u32, &mut num)) {
            fail(sock, 6);
        }
        for (k, v) in &plan.params {
            if !set(k, v) {
                fail(sock, 6);
            }
        }
        let create = libc::syscall(
            libc::SYS_fsconfig,
            fs,
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        );
        if create != 0 {
            fail(sock, 6);
        }
        let mnt = libc::syscall(libc::SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTRS) as i32;
        if mnt < 0 {
            fail(sock, 7);
        }
        // One byte of data with an SCM_RIGHTS message carrying [mount fd, dev fd].
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        let mut control = [0u64; 8];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        let fds = [mnt, dev];
        let data_len = std::mem::size_of_val(&fds) as u32;
        msg.msg_controllen = libc::CMSG_SPACE(data_len) as usize;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(data_len) as usize;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr().cast::<u8>(),
            libc::CMSG_DATA(cmsg),
            data_len as usize,
        );
        if libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) < 0 {
            fail(sock, 8);
        }
        libc::_exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_formats_without_allocating() {
        let mut buf = [0u8; 12];
        assert_eq!(decimal(0, &mut buf), c"0");
        assert_eq!(decimal(7, &mut buf), c"7");
        assert_eq!(decimal(1234, &mut buf), c"1234");
        assert_eq!(decimal(u32::MAX, &mut buf), c"4294967295");
    }
}
