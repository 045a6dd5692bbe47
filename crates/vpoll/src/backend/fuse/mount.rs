//! Mounting the process's vpoll filesystem, detaching it at once, and starting its server.

use super::server::Server;
use super::{Global, Shared, THIS, Table, unavailable};
use crate::Result;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

/// Where the FUSE device lives.
const DEV_FUSE: &str = "/dev/fuse";

/// The `/dev/fuse` fd owned by the server session (closed in a forked child), or -1.
static SERVER_FD: AtomicI32 = AtomicI32::new(-1);
/// Our duplicate of it for notifications (closed in a forked child), or -1.
static NOTIFY_FD: AtomicI32 = AtomicI32::new(-1);

/// Opens `/dev/fuse`, with a reason fit for [`crate::Error::Unavailable`] on failure.
fn open_dev() -> Result<OwnedFd> {
    rustix::fs::open(DEV_FUSE, OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| unavailable(THIS, format!("cannot open {DEV_FUSE}: {e}")))
}

/// Checks what mounting needs: `/dev/fuse` opens, and we are root or hold `CAP_SYS_ADMIN`.
pub(super) fn check_permissions() -> Result<()> {
    drop(open_dev()?);
    let caps = rustix::thread::capabilities(None)
        .map_err(|e| unavailable(THIS, format!("cannot read capabilities: {e}")))?;
    if !caps
        .effective
        .contains(rustix::thread::CapabilitySet::SYS_ADMIN)
    {
        return Err(unavailable(
            THIS,
            "mounting FUSE needs root or CAP_SYS_ADMIN (fusermount3 is not used)",
        ));
    }
    Ok(())
}

/// Runs in the child after `fork`: drops the child's copies of `/dev/fuse`, so the
/// connection ends when the parent (the only server) does. Async-signal-safe: two
/// `close` syscalls and atomic stores.
extern "C" fn after_fork_in_child() {
    for fd in [&SERVER_FD, &NOTIFY_FD] {
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

/// A mount point being set up; `Drop` detaches the mount (if any) and removes the dir.
struct MountPoint {
    /// The private directory.
    path: PathBuf,
    /// Whether something is mounted on it.
    mounted: bool,
}

impl MountPoint {
    /// Creates a fresh private directory under the temp dir.
    fn create() -> Result<MountPoint> {
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
            rustix::mount::unmount(&self.path, UnmountFlags::DETACH)
                .map_err(|e| unavailable(THIS, format!("cannot detach the mount: {e}")))?;
            tracing::trace!(path = %self.path.display(), "vpoll fuse: umount2(MNT_DETACH)");
        }
        rustix::fs::rmdir(&self.path).map_err(|e| {
            unavailable(
                THIS,
                format!("cannot remove mount point {}: {e}", self.path.display()),
            )
        })
    }

    /// The directory.
    fn path(&self) -> &Path {
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

/// Mounts a fresh vpoll filesystem, starts its server thread and detaches it.
pub(super) fn mount() -> Result<Global> {
    let dev = open_dev()?;
    let mut point = MountPoint::create()?;
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    // allow_other: any process the fd reaches (a child that dropped privileges, an fd
    // passed over a socket) may use it; the mount itself is reachable through fds only.
    let data = format!(
        "fd={},rootmode=40755,user_id={uid},group_id={gid},allow_other",
        dev.as_raw_fd()
    );
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

    let notify = dev
        .try_clone()
        .map_err(|e| unavailable(THIS, format!("cannot duplicate the /dev/fuse fd: {e}")))?;
    let shared: &'static Shared = Box::leak(Box::new(Shared {
        table: Table::new(),
        notify,
    }));
    let server_raw = dev.as_raw_fd();
    let session = fuser::Session::from_fd(
        Server { shared, uid, gid },
        dev,
        fuser::SessionACL::All,
        fuser::Config::default(),
    )
    .map_err(|e| unavailable(THIS, format!("FUSE handshake failed: {e}")))?;
    SERVER_FD.store(server_raw, Ordering::SeqCst);
    NOTIFY_FD.store(shared.notify.as_raw_fd(), Ordering::SeqCst);
    register_fork_handler();
    std::thread::Builder::new()
        .name("greenfd-vpoll-fuse".into())
        .spawn(move || {
            let result = session.run();
            // The session closed its fd; a forked child must not close that number now.
            SERVER_FD.store(-1, Ordering::SeqCst);
            tracing::debug!(?result, "vpoll fuse: server stopped");
        })
        .map_err(|e| unavailable(THIS, format!("cannot start the FUSE server thread: {e}")))?;

    // The root's attributes (st_dev) come from the server, which now runs.
    let dir = rustix::fs::open(
        point.path(),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| unavailable(THIS, format!("cannot open the mount's root: {e}")))?;
    let st = rustix::fs::fstat(&dir)
        .map_err(|e| unavailable(THIS, format!("cannot stat the mount's root: {e}")))?;
    point.remove()?;
    Ok(Global {
        shared,
        dir,
        #[allow(clippy::unnecessary_cast)]
        dev: st.st_dev as u64,
        pid: rustix::process::getpid().as_raw_nonzero().get(),
    })
}
