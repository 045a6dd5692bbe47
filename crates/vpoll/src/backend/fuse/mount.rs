//! Getting a FUSE connection by one of the three routes, detaching it at once, and
//! starting its server.
//!
//! Every route ends in a [`Connection`]: a `/dev/fuse` fd bound to a mount, and the mount's
//! root (a detached mount fd, or a private directory still mounted on). [`mount`] starts
//! the server on it, opens the root as an `O_PATH` fd and detaches the directory, so that
//! whatever way the process ends no mount remains.

use super::server::Server;
use super::{Global, Shared, THIS, Table, unavailable};
use crate::{FuseRoute, Result};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

/// Where the FUSE device lives.
pub(super) const DEV_FUSE: &str = "/dev/fuse";

/// Per route: the server session's `/dev/fuse` fd while it is still in the shared fd table
/// (closed in a forked child), or -1.
static SERVER_FD: [AtomicI32; 3] = [const { AtomicI32::new(-1) }; 3];
/// Per route: our clone of it for notifications (closed in a forked child), or -1.
static NOTIFY_FD: [AtomicI32; 3] = [const { AtomicI32::new(-1) }; 3];

/// Opens `/dev/fuse`, with a reason fit for [`crate::Error::Unavailable`] on failure.
pub(super) fn open_dev() -> Result<OwnedFd> {
    rustix::fs::open(DEV_FUSE, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
        let who = format!(
            "uid {} gid {}",
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw()
        );
        let why = match rustix::fs::stat(DEV_FUSE) {
            Ok(st) if e == Errno::ACCESS || e == Errno::PERM => format!(
                "{DEV_FUSE} is not readable and writable by {who} (mode {:04o}, owner {}:{}); \
                 stock distributions ship it 0666",
                st.st_mode & 0o7777,
                st.st_uid,
                st.st_gid
            ),
            _ => format!("cannot open {DEV_FUSE} as {who}: {e}"),
        };
        unavailable(THIS, why)
    })
}

/// Whether the calling thread holds `CAP_SYS_ADMIN` (what the direct route needs).
fn has_sys_admin() -> bool {
    rustix::thread::capabilities(None).is_ok_and(|c| {
        c.effective
            .contains(rustix::thread::CapabilitySet::SYS_ADMIN)
    })
}

/// Runs in the child after `fork`: forgets the cached pid (so the child never takes the
/// parent's fast path) and drops the child's copies of `/dev/fuse`, so the connection ends
/// when the parent (the only server) does. Async-signal-safe: `close` syscalls and atomic
/// stores.
extern "C" fn after_fork_in_child() {
    super::PID.store(0, Ordering::SeqCst);
    for fd in SERVER_FD.iter().chain(NOTIFY_FD.iter()) {
        let raw = fd.swap(-1, Ordering::SeqCst);
        if raw >= 0 {
            // SAFETY: `raw` is a /dev/fuse fd this process inherited from its parent; the
            // child has no other user of it (its server thread was not forked).
            unsafe { libc::close(raw) };
        }
    }
}

/// Registers [`after_fork_in_child`] once per process.
fn register_fork_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: the handler is a plain `extern "C" fn` that stays valid forever.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(after_fork_in_child)) };
        if rc != 0 {
            tracing::warn!(
                rc,
                "vpoll fuse: pthread_atfork failed; forked children keep /dev/fuse open"
            );
        }
    });
}

/// How a mount on a directory is taken off it.
#[derive(Clone, Debug)]
pub(super) enum Detach {
    /// `umount2(MNT_DETACH)` (root).
    Syscall,
    /// `fusermount3 -u -z -q DIR` (the setuid helper at this path).
    Fusermount(PathBuf),
}

/// A mount point being set up; `Drop` detaches the mount (if any) and removes the dir.
pub(super) struct MountPoint {
    /// The private directory (mode 0700).
    path: PathBuf,
    /// Whether something is mounted on it.
    pub(super) mounted: bool,
    /// How to take the mount off.
    detach: Detach,
}

impl MountPoint {
    /// Creates a fresh private directory (mode 0700) under the temp dir.
    pub(super) fn create(detach: Detach) -> Result<MountPoint> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let pid = rustix::process::getpid().as_raw_nonzero().get();
        let base = std::env::temp_dir();
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let seq = SEQ.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!("greenfd-vpoll.{pid}.{seq}.{nanos:08x}"));
            match rustix::fs::mkdir(&path, Mode::RWXU) {
                Ok(()) => {
                    return Ok(MountPoint {
                        path,
                        mounted: false,
                        detach,
                    });
                }
                Err(Errno::EXIST) => continue,
                Err(e) => {
                    return Err(unavailable(
                        THIS,
                        format!("cannot create mount point {}: {e}", path.display()),
                    ));
                }
            }
        }
    }

    /// Detaches the mount and removes the directory.
    fn remove(&mut self) -> Result<()> {
        if std::mem::take(&mut self.mounted) {
            match &self.detach {
                Detach::Syscall => rustix::mount::unmount(&self.path, UnmountFlags::DETACH)
                    .map_err(|e| unavailable(THIS, format!("cannot detach the mount: {e}")))?,
                Detach::Fusermount(bin) => super::fusermount::unmount(bin, &self.path)?,
            }
            tracing::trace!(path = %self.path.display(), "vpoll fuse: mount detached");
        }
        rustix::fs::rmdir(&self.path).map_err(|e| {
            unavailable(
                THIS,
                format!("cannot remove mount point {}: {e}", self.path.display()),
            )
        })
    }

    /// The directory.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for MountPoint {
    fn drop(&mut self) {
        if self.mounted || self.path.exists() {
            let _ = self.remove();
        }
    }
}

/// `FUSE_DEV_IOC_CLONE` (`_IOR(229, 0, uint32_t)`): attaches a fresh `/dev/fuse` file to
/// the connection of the fd passed in.
const FUSE_DEV_IOC_CLONE: libc::c_ulong = 0x8004_e500;
/// `CLOSE_RANGE_UNSHARE`: give the calling thread a private fd table before closing.
const CLOSE_RANGE_UNSHARE: libc::c_uint = 1 << 1;

/// A second `/dev/fuse` file on the connection of `dev` (for notifications from any
/// thread): a separate kernel file, so its lifetime is independent of the server's.
fn clone_dev(dev: &OwnedFd) -> Result<OwnedFd> {
    let clone = open_dev()?;
    let mut source = dev.as_raw_fd() as u32;
    // SAFETY: FUSE_DEV_IOC_CLONE reads one u32 (the source fd) through a valid pointer.
    let rc = unsafe { libc::ioctl(clone.as_raw_fd(), FUSE_DEV_IOC_CLONE, &mut source) };
    if rc == -1 {
        let e = std::io::Error::last_os_error();
        return Err(unavailable(THIS, format!("FUSE_DEV_IOC_CLONE failed: {e}")));
    }
    Ok(clone)
}

/// Gives the calling thread (the server) a private fd table that holds only `keep`.
///
/// This is what makes exit safe while a request is being served: `exit_group` kills the
/// server thread, its private table is released, closing its `/dev/fuse` file ends every
/// request it had read but not answered, and the threads waiting for them can exit. With
/// a shared table the waiting thread itself would keep that file open forever.
fn isolate_fd_table(keep: i32) -> std::io::Result<()> {
    let keep = keep as libc::c_uint;
    // The first call must carry CLOSE_RANGE_UNSHARE: without it, it would close the fds of
    // the whole process. If it fails (kernel before 5.9), nothing was closed.
    let ranges = if keep == 0 {
        vec![(1, libc::c_uint::MAX, CLOSE_RANGE_UNSHARE)]
    } else {
        vec![
            (0, keep - 1, CLOSE_RANGE_UNSHARE),
            (keep + 1, libc::c_uint::MAX, 0),
        ]
    };
    for (first, last, flags) in ranges {
        // SAFETY: close_range only closes descriptors, and only in this thread's private
        // table (the first call unshares it), whose fds nothing else uses.
        let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
        if rc == -1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Where a new connection's files are reached from.
pub(super) enum Root {
    /// A mount fd (`fsmount`) that was never attached anywhere.
    Detached(OwnedFd),
    /// A private directory the filesystem is mounted on, to be detached once its root
    /// fd is open.
    OnDir(MountPoint),
}

/// A FUSE connection a route produced, before its server runs.
pub(super) struct Connection {
    /// The `/dev/fuse` fd bound to the mount (the server reads it).
    pub(super) dev: OwnedFd,
    /// The mount's root.
    pub(super) root: Root,
    /// Owner (uid, gid) the files report, as seen from the connection's user namespace.
    pub(super) owner: (u32, u32),
}

/// Options of a mount made by this process, as (key, value) pairs (`None`: a flag).
fn mount_options(dev: &OwnedFd, uid: u32, gid: u32) -> Vec<(&'static str, Option<String>)> {
    vec![
        ("fd", Some(dev.as_raw_fd().to_string())),
        ("rootmode", Some("40755".into())),
        ("user_id", Some(uid.to_string())),
        ("group_id", Some(gid.to_string())),
        // Any process the fd reaches (a child that dropped privileges, an fd passed over
        // a socket) may use it; the mount itself is reachable through fds only. Root only:
        // the unprivileged routes cannot have it (see the userns module).
        ("allow_other", None),
    ]
}

/// Creates the filesystem with the new mount API and returns its (detached) root, or the
/// errno if the API is missing or refuses.
fn mount_detached(dev: &OwnedFd, uid: u32, gid: u32) -> rustix::io::Result<OwnedFd> {
    use rustix::mount::{
        FsMountFlags, FsOpenFlags, MountAttrFlags, fsconfig_create, fsconfig_set_flag,
        fsconfig_set_string, fsmount, fsopen,
    };
    let fs = fsopen("fuse", FsOpenFlags::FSOPEN_CLOEXEC)?;
    fsconfig_set_string(&fs, "source", "greenfd-vpoll")?;
    for (key, value) in mount_options(dev, uid, gid) {
        match value {
            Some(v) => fsconfig_set_string(&fs, key, v.as_str())?,
            None => fsconfig_set_flag(&fs, key)?,
        }
    }
    fsconfig_create(&fs)?;
    let root = fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )?;
    tracing::trace!(?root, "vpoll fuse: fsmount (never attached)");
    Ok(root)
}

/// Mounts the filesystem with `mount(2)` on a fresh private directory.
fn mount_on_dir(dev: &OwnedFd, uid: u32, gid: u32) -> Result<MountPoint> {
    let mut point = MountPoint::create(Detach::Syscall)?;
    let data = mount_options(dev, uid, gid)
        .into_iter()
        .map(|(k, v)| v.map_or_else(|| k.to_owned(), |v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(",");
    let data = CString::new(data).map_err(|_| unavailable(THIS, "bad mount options"))?;
    rustix::mount::mount(
        "greenfd-vpoll",
        point.path(),
        "fuse",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        data.as_c_str(),
    )
    .map_err(|e| {
        let hint = if e == Errno::PERM {
            " (needs root or CAP_SYS_ADMIN)"
        } else {
            ""
        };
        unavailable(
            THIS,
            format!(
                "mounting FUSE on {} failed: {e}{hint}",
                point.path().display()
            ),
        )
    })?;
    point.mounted = true;
    tracing::trace!(path = %point.path().display(), "vpoll fuse: mounted");
    Ok(point)
}

/// The direct route (root or `CAP_SYS_ADMIN`).
///
/// Preferred: the new mount API (`fsopen`/`fsmount`, Linux 5.2+), whose mount is never
/// attached to any path, so nothing can ever be left behind or seen in `mountinfo`.
/// Fallback (or forced by `GREENFD_VPOLL_FUSE_ROUTE=legacy`): `mount(2)` on a private temp
/// dir, detached with `umount2(MNT_DETACH)` as soon as an `O_PATH` fd of its root is open.
fn direct(legacy: bool) -> Result<Connection> {
    let mut dev = open_dev()?;
    if !has_sys_admin() {
        return Err(unavailable(
            THIS,
            "the direct route needs root or CAP_SYS_ADMIN",
        ));
    }
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    let root = if legacy {
        Root::OnDir(mount_on_dir(&dev, uid, gid)?)
    } else {
        match mount_detached(&dev, uid, gid) {
            Ok(root) => Root::Detached(root),
            Err(e) => {
                tracing::debug!(%e, "vpoll fuse: new mount API unusable, using mount(2)");
                // A fresh device file: a half-done attempt may have claimed the first.
                dev = open_dev()?;
                Root::OnDir(mount_on_dir(&dev, uid, gid)?)
            }
        }
    };
    Ok(Connection {
        dev,
        root,
        owner: (uid, gid),
    })
}

/// Mounts a fresh vpoll filesystem by `route`, starts its server thread and returns it
/// with its root open and nothing attached anywhere.
pub(super) fn mount(route: FuseRoute, legacy: bool) -> Result<Global> {
    let conn = match route {
        FuseRoute::Direct => direct(legacy)?,
        FuseRoute::Userns => super::userns::connect()?,
        FuseRoute::Fusermount => super::fusermount::connect()?,
    };
    serve(conn, route)
}

/// Starts the server thread of `conn` and opens its root.
fn serve(conn: Connection, route: FuseRoute) -> Result<Global> {
    let Connection { dev, root, owner } = conn;
    let notify = clone_dev(&dev)?;
    let slot = route.index();
    NOTIFY_FD[slot].store(notify.as_raw_fd(), Ordering::SeqCst);
    let server_raw = dev.as_raw_fd();
    register_fork_handler();
    let shared: &'static Shared = Box::leak(Box::new(Shared {
        table: Table::new(),
        notify,
        dead: AtomicBool::new(false),
    }));
    let session = fuser::Session::from_fd(
        Server {
            shared,
            dev: server_raw,
            uid: owner.0,
            gid: owner.1,
        },
        dev,
        fuser::SessionACL::All,
        fuser::Config::default(),
    )
    .map_err(|e| unavailable(THIS, format!("FUSE handshake failed: {e}")))?;
    let (isolated_tx, isolated_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("greenfd-vpoll-fuse-{route}"))
        .spawn(move || {
            // Nothing below may use another fd: this thread (and the fuser thread it
            // starts) will see only the session's /dev/fuse file.
            let isolated = isolate_fd_table(server_raw);
            let _ = isolated_tx.send(isolated);
            let result = session.run();
            shared.dead.store(true, Ordering::Release);
            // Without a private table the session just closed the shared number.
            SERVER_FD[slot].store(-1, Ordering::SeqCst);
            tracing::debug!(?result, %route, "vpoll fuse: server stopped");
        })
        .map_err(|e| unavailable(THIS, format!("cannot start the FUSE server thread: {e}")))?;
    // Only now that the session's fd surely stays open: a fork handler that closed a
    // stale number in the child could close an unrelated file.
    SERVER_FD[slot].store(server_raw, Ordering::SeqCst);
    match isolated_rx.recv() {
        Ok(Ok(())) => {
            // The server has its own copy; ours must go so that only the server thread
            // holds that file. Forget the number first: a fork now must not close it
            // after it has been reused.
            SERVER_FD[slot].store(-1, Ordering::SeqCst);
            // SAFETY: `server_raw` in this (shared) table is an alias no Rust object owns
            // any more: the session's OwnedFd lives in the server thread's private table.
            unsafe { libc::close(server_raw) };
        }
        Ok(Err(e)) => tracing::warn!(
            %e,
            "vpoll fuse: no private fd table for the server (close_range); \
             a process that exits while a request is in flight may hang"
        ),
        Err(_) => return Err(unavailable(THIS, "the FUSE server thread died at start")),
    }

    let dir = match root {
        Root::Detached(root) => root,
        Root::OnDir(point) => open_and_detach(point)?,
    };
    // The root's attributes (st_dev) come from the server, which now runs.
    let st = rustix::fs::fstat(&dir)
        .map_err(|e| unavailable(THIS, format!("cannot stat the mount's root: {e}")))?;
    tracing::debug!(%route, "vpoll fuse: filesystem ready");
    Ok(Global {
        shared,
        dir,
        #[allow(clippy::unnecessary_cast)]
        dev: st.st_dev as u64,
        pid: super::pid(),
        route,
    })
}

/// Opens an `O_PATH` fd of the mount's root, then detaches the mount and removes the dir.
fn open_and_detach(mut point: MountPoint) -> Result<OwnedFd> {
    let dir = rustix::fs::open(
        point.path(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| unavailable(THIS, format!("cannot open the mount's root: {e}")))?;
    point.remove()?;
    Ok(dir)
}

/// Receives one message on `sock` (`recvmsg` with `MSG_CMSG_CLOEXEC | flags`, retried on
/// EINTR): its data into `data`, its ancillary data into `control`. Returns the bytes
/// received and the fds its `SCM_RIGHTS` messages passed, now owned by this process.
/// How the fusermount3 and user-namespace routes get their fds from a helper process.
pub(super) fn recv_fds(
    sock: &OwnedFd,
    data: &mut [u8],
    control: &mut [u64],
    flags: libc::c_int,
) -> std::io::Result<(usize, Vec<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(control);
    let n = loop {
        // SAFETY: `msg` points at live buffers of the stated sizes.
        let n =
            unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC | flags) };
        if n >= 0 {
            break n as usize;
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    };
    let mut passed = Vec::new();
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, within
    // `msg_controllen`; SCM_RIGHTS data is an array of fds now owned by this process.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let len = (*cmsg).cmsg_len - libc::CMSG_LEN(0) as usize;
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    passed.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n, passed))
}
