//! The Fuse backend: each vpoll fd is an open file on this process's own FUSE filesystem.
//!
//! Why FUSE: a FUSE file's readiness is whatever its server answers to the kernel's `poll`
//! request, so every bit (PRI, ERR, HUP alone, RDHUP) reaches epoll, poll and select exactly,
//! on an unpatched kernel and without a module. The design (DESIGN §2, backend 3):
//!
//! - **One filesystem per process**, mounted lazily by the first `create` (or probe) and
//!   served by a dedicated thread, and never left mounted anywhere: with the new mount API
//!   (`fsopen`/`fsmount`) the mount is created detached; otherwise it is mounted on a
//!   private temp dir, an `O_PATH` fd of its root is kept, `umount2(MNT_DETACH)` runs at
//!   once and the dir is removed (`GREENFD_VPOLL_FUSE_MOUNT=legacy` forces this path).
//!   Either way files are opened with `openat` on the root fd, whatever way the process
//!   ends nothing remains, and the mount never shows in `/proc/*/mountinfo` for longer
//!   than that fallback's instant.
//! - **State in shared memory** ([`table`]): one slot per file, found from the fd by `fstat`
//!   (the inode number encodes slot and generation; `st_dev` names our mount).
//! - **Fast path** in the owning process: ctl updates the slot's mask with one atomic op and
//!   the calling thread writes a `FUSE_NOTIFY_POLL` for the file's poll handle to
//!   `/dev/fuse` itself: one syscall, no round trip, no lock, no allocation. As with the
//!   kernel's `EFD_VPOLL`, every op wakes the pollers (so edge-triggered epoll sees each
//!   op that leaves bits set), except one that leaves the mask empty (the usual DEL):
//!   epoll and poll re-poll the file before they report it, so that wake-up is useless.
//! - **Through the fd** everywhere else: a process that does not own the state (a forked
//!   child, or a process the fd was passed to) `write`s the 8-byte control word
//!   `op << 32 | events` to the fd and the server applies it. That path is async-signal-safe
//!   (`fstat`, atomics, `write`), as the child of a multithreaded fork requires.
//! - **Recognising a vpoll fd** ([`owns`]): a regular file on our mount's device; or, for
//!   fds that came from another process's server (inherited across `exec`, passed over a
//!   socket), a regular file on a FUSE filesystem whose times are the marker
//!   [`MARKER_SEC`]/[`MARKER_NSEC`] and whose inode number has generation bits. `fstat`
//!   is answered from the kernel's attribute cache, so this costs one cheap syscall.
//! - **Exit hazards.** A process that serves its own files can hang at exit in two ways,
//!   both reproduced by the tests when their guard is removed:
//!   1. `exit_group` kills the server thread, then closing a file sends FLUSH and waits
//!      forever. Guard: files are opened with `FOPEN_NOFLUSH` (FLUSH is also answered
//!      `ENOSYS`); RELEASE, which frees the slot, is asynchronous in the kernel.
//!   2. A request the server had read but not answered when it was killed (a `poll` from
//!      an `epoll_wait` in another thread, say) waits uninterruptibly until the server's
//!      `/dev/fuse` file is released, which the waiting thread itself prevents as long as
//!      it shares the fd table. Guard: the server thread gets a private fd table holding
//!      only its `/dev/fuse` file (`close_range(CLOSE_RANGE_UNSHARE)`); when it dies that
//!      file is released and the kernel ends its in-flight requests. Callers notify through
//!      a second file cloned onto the same connection (`FUSE_DEV_IOC_CLONE`).
//!
//!   A forked child drops its copy of `/dev/fuse` (`pthread_atfork`), so when the parent
//!   dies the connection is aborted and the child's ctl fails (`ENOTCONN`) instead of
//!   waiting for a server that is gone.
//!
//! Limits: a forked child that creates vpoll fds mounts its own filesystem (allowed only if
//! the fork left no lock held, as always after fork in a multithreaded process); a child
//! made by a raw `clone` syscall (no fork handlers) must `exec` before using vpoll fds.
//! The server thread serves every request of the process, one at a time; it never blocks.

mod mount;
mod server;
mod table;

use super::unavailable;
use crate::{Backend, Error, Events, Op, Result};
use rustix::event::{PollFd, PollFlags};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering};
use table::{Slot, Table};

/// This backend, for error messages.
const THIS: Backend = Backend::Fuse;

/// Size of the control word written to, and the mask read from, a vpoll file.
const WORD: usize = 8;
/// Modification time (seconds) of every vpoll file: with the FUSE filesystem magic it marks
/// a vpoll file of another process's server (an fd inherited across `exec` or passed over
/// a socket), which must then be controlled through the fd.
const MARKER_SEC: u64 = 0x5650_4f4c;
/// Nanoseconds part of the marker time.
const MARKER_NSEC: u32 = 0x0766_7064;
const _: () = assert!(MARKER_NSEC < 1_000_000_000, "not a valid nanosecond count");
/// `statfs.f_type` of every FUSE filesystem.
const FUSE_SUPER_MAGIC: u64 = 0x6573_5546;
/// `FUSE_NOTIFY_POLL`: the notification code that wakes a file's pollers.
const FUSE_NOTIFY_POLL: i32 = 1;

/// State shared by the server thread and the ctl fast path.
struct Shared {
    /// One slot per vpoll file.
    table: Table,
    /// A clone of the `/dev/fuse` file in the shared fd table, for `FUSE_NOTIFY_POLL` writes
    /// from the ctl fast path (the server thread uses its own fd).
    notify: OwnedFd,
    /// Set when the server stopped (its connection was aborted, e.g. through
    /// `/sys/fs/fuse/connections/N/abort`): ctl then fails instead of updating a mask that
    /// no poll will ever read again.
    dead: AtomicBool,
}

impl Shared {
    /// Applies `op` to a file's mask and wakes its pollers if anything may have become ready,
    /// writing the notification to `dev` (a `/dev/fuse` fd valid in the caller's fd table).
    fn apply(dev: BorrowedFd<'_>, slot: &Slot, op: Op, events: Events) -> std::io::Result<()> {
        let bits = events.bits();
        let now = match op {
            Op::Add => slot.mask.fetch_or(bits, Ordering::SeqCst) | bits,
            Op::Del => slot.mask.fetch_and(!bits, Ordering::SeqCst) & !bits,
            Op::Set => {
                slot.mask.swap(bits, Ordering::SeqCst);
                bits
            }
        };
        // Like the kernel's EFD_VPOLL, every op wakes the pollers with the resulting mask,
        // so edge-triggered epoll reports any op that leaves bits set. An empty mask needs
        // no wake-up: nothing becomes ready, and every poller re-polls the file before it
        // reports it (so the ADD→wait→DEL cycle pays one notification, not two).
        if now == 0 {
            return Ok(());
        }
        // 0 means the file was never polled, so nobody waits for it (see `Server::poll`).
        match slot.kh.load(Ordering::SeqCst) {
            0 => Ok(()),
            kh => notify_poll(dev, kh),
        }
    }
}

/// Writes one `FUSE_NOTIFY_POLL` message for poll handle `kh` to `/dev/fuse`.
fn notify_poll(dev: BorrowedFd<'_>, kh: u64) -> std::io::Result<()> {
    // struct fuse_out_header { u32 len; i32 error (= notify code); u64 unique (= 0) }
    // followed by struct fuse_notify_poll_wakeup_out { u64 kh }.
    let mut msg = [0u8; 24];
    msg[0..4].copy_from_slice(&24u32.to_ne_bytes());
    msg[4..8].copy_from_slice(&FUSE_NOTIFY_POLL.to_ne_bytes());
    msg[16..24].copy_from_slice(&kh.to_ne_bytes());
    loop {
        match rustix::io::write(dev, &msg) {
            Ok(_) => return Ok(()),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The mounted filesystem of one process.
struct Global {
    /// Slots and notification fd, also referenced by the server thread.
    shared: &'static Shared,
    /// `O_PATH` fd of the detached mount's root, where files are opened.
    dir: OwnedFd,
    /// `st_dev` of the mount: a file with this device is one of ours.
    dev: u64,
    /// The process that mounted it; after a fork the child must not use its state.
    pid: i32,
}

/// This process's filesystem, once mounted (a forked child sees its parent's, and ignores it).
static GLOBAL: AtomicPtr<Global> = AtomicPtr::new(std::ptr::null_mut());
/// Serializes mounting.
static MOUNTING: Mutex<()> = Mutex::new(());

/// The calling process's own mounted filesystem, if any.
fn current() -> Option<&'static Global> {
    // SAFETY: GLOBAL is null or a pointer from `Box::leak`, never freed.
    let g = unsafe { GLOBAL.load(Ordering::Acquire).as_ref() }?;
    (g.pid == pid()).then_some(g)
}

/// This process's id, cached: `getpid` is a real syscall (~0.3 µs here) and the ctl fast
/// path needs it every time. The `fork` handler of [`mount`] clears the cache in the child.
/// (A child made by a raw `clone` syscall, without fork handlers, must `exec` before it
/// uses vpoll fds, as such children must anyway.)
static PID: AtomicI32 = AtomicI32::new(0);

/// The calling process's id.
fn pid() -> i32 {
    match PID.load(Ordering::Relaxed) {
        0 => {
            let p = rustix::process::getpid().as_raw_nonzero().get();
            PID.store(p, Ordering::Relaxed);
            p
        }
        p => p,
    }
}

/// The calling process's filesystem, mounting it on first use.
fn current_or_mount() -> Result<&'static Global> {
    if let Some(g) = current() {
        if g.shared.dead.load(Ordering::Acquire) {
            return Err(unavailable(
                THIS,
                "this process's FUSE connection was aborted; its vpoll fds report ERR",
            ));
        }
        return Ok(g);
    }
    let _lock = MOUNTING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(g) = current() {
        return Ok(g);
    }
    let g: &'static Global = Box::leak(Box::new(mount::mount()?));
    GLOBAL.store(std::ptr::from_ref(g).cast_mut(), Ordering::Release);
    Ok(g)
}

/// The fields of `fstat` this backend looks at, in fixed types on every architecture.
#[derive(Clone, Copy)]
struct FileId {
    /// Device of the filesystem.
    dev: u64,
    /// Inode number: `generation << 32 | slot` for our files.
    ino: u64,
    /// Whether it is a regular file.
    regular: bool,
    /// Whether its mtime and ctime are the vpoll marker.
    marked: bool,
}

/// `fstat` of `fd`, reduced to [`FileId`]; async-signal-safe.
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn file_id(fd: BorrowedFd<'_>) -> rustix::io::Result<FileId> {
    let st = rustix::fs::fstat(fd)?;
    let marker = |sec: i64, nsec: u64| sec == MARKER_SEC as i64 && nsec == u64::from(MARKER_NSEC);
    Ok(FileId {
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        regular: FileType::from_raw_mode(st.st_mode as _) == FileType::RegularFile,
        marked: marker(st.st_mtime as i64, st.st_mtime_nsec as u64)
            && marker(st.st_ctime as i64, st.st_ctime_nsec as u64),
    })
}

/// Whether the file is on a FUSE filesystem; async-signal-safe.
#[allow(clippy::unnecessary_cast)]
fn on_fuse(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstatfs(fd).is_ok_and(|s| s.f_type as u64 == FUSE_SUPER_MAGIC)
}

/// Whether `id` (of `fd`) is a vpoll file of any process's server.
fn is_vpoll(fd: BorrowedFd<'_>, id: &FileId) -> bool {
    if !id.regular || id.ino >> 32 == 0 {
        return false;
    }
    // SAFETY: GLOBAL is null or a pointer from `Box::leak`, never freed. In a forked child it
    // is the parent's filesystem, whose files the child inherited: still ours to recognise.
    if let Some(g) = unsafe { GLOBAL.load(Ordering::Acquire).as_ref() } {
        if id.dev == g.dev {
            return true;
        }
    }
    id.marked && on_fuse(fd)
}

/// The slot of `id` if the calling process owns the filesystem it lives on.
fn owned_slot(id: &FileId) -> Option<(&'static Shared, &'static Slot)> {
    let g = current()?;
    if id.dev != g.dev || !id.regular {
        return None;
    }
    let slot = g.shared.table.get(id.ino)?;
    Some((g.shared, slot))
}

/// Rejects event bits that are not in [`Events`] (the server would refuse them too).
fn check_bits(events: Events) -> Result<()> {
    if events.bits() & !Events::all().bits() != 0 {
        return Err(Error::Invalid("unknown event bits"));
    }
    Ok(())
}

/// Usable if this process's filesystem is mounted, or can be: the first probe mounts it
/// (as the first `create` would), so the answer is exact rather than a guess from
/// permissions. Cheap checks (`/dev/fuse` opens, root or `CAP_SYS_ADMIN`) come first so
/// the usual reasons are stated plainly.
pub(crate) fn probe() -> Result<()> {
    if current().is_none() {
        mount::check_permissions()?;
    }
    current_or_mount().map(|_| ())
}

/// Creates a vpoll file with `init` set and opens it.
pub(crate) fn create(init: Events, cloexec: bool) -> Result<OwnedFd> {
    check_bits(init)?;
    let g = current_or_mount()?;
    let Some(ino) = g.shared.table.alloc(init.bits()) else {
        return Err(Error::Io(Errno::NFILE.into()));
    };
    let mut flags = OFlags::RDWR | OFlags::NOCTTY;
    if cloexec {
        flags |= OFlags::CLOEXEC;
    }
    let name = ino.to_string();
    match rustix::fs::openat(&g.dir, name.as_str(), flags, Mode::empty()) {
        Ok(fd) => {
            tracing::trace!(?fd, ino, "vpoll fuse: openat");
            Ok(fd)
        }
        Err(e) => {
            // If the open got as far as OPEN, RELEASE frees the slot too; `free` is idempotent.
            g.shared.table.free(ino);
            Err(Error::Io(e.into()))
        }
    }
}

/// Whether `fd` is a vpoll file (of this process's server, or of another's).
pub(crate) fn owns(fd: BorrowedFd<'_>) -> bool {
    file_id(fd).is_ok_and(|id| is_vpoll(fd, &id))
}

/// Applies `op`: through shared memory in the owning process, through the fd elsewhere.
///
/// The path through the fd is async-signal-safe: `fstat`, atomics and `write(2)` only.
pub(crate) fn ctl(fd: BorrowedFd<'_>, op: Op, events: Events) -> Result<()> {
    check_bits(events)?;
    let id = file_id(fd).map_err(|e| match e {
        Errno::BADF => Error::NotVpoll,
        e => Error::Io(e.into()),
    })?;
    if let Some((shared, slot)) = owned_slot(&id) {
        if shared.dead.load(Ordering::Acquire) {
            return Err(Error::Io(Errno::NOTCONN.into()));
        }
        return Shared::apply(shared.notify.as_fd(), slot, op, events).map_err(Error::Io);
    }
    if !is_vpoll(fd, &id) {
        return Err(Error::NotVpoll);
    }
    let word = op.encode(events).to_ne_bytes();
    loop {
        return match rustix::io::write(fd, &word) {
            Ok(WORD) => Ok(()),
            Ok(_) => Err(Error::Io(Errno::IO.into())),
            Err(Errno::INTR) => continue,
            Err(Errno::INVAL) => Err(Error::Invalid("control word refused by the vpoll server")),
            Err(e) => Err(Error::Io(e.into())),
        };
    }
}

/// What poll(2) reports for `fd` now: asked of poll(2) itself (one round trip to the
/// server), so that it is exact even when the connection is gone (then it is ERR).
pub(crate) fn events(fd: BorrowedFd<'_>) -> Result<Events> {
    let id = file_id(fd).map_err(|e| Error::Io(e.into()))?;
    if !is_vpoll(fd, &id) {
        return Err(Error::NotVpoll);
    }
    let all = PollFlags::IN
        | PollFlags::PRI
        | PollFlags::OUT
        | PollFlags::ERR
        | PollFlags::HUP
        | PollFlags::RDHUP;
    let mut fds = [PollFd::new(&fd, all)];
    loop {
        match rustix::event::poll(&mut fds, Some(&rustix::time::Timespec::default())) {
            Ok(_) => break,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(Error::Io(e.into())),
        }
    }
    Ok(Events::from_bits_truncate(u32::from(
        fds[0].revents().bits(),
    )))
}

/// Closes the fd; the server frees the file's state when the kernel sends RELEASE (after
/// the last copy, in any process, is closed).
pub(crate) fn close(fd: OwnedFd) -> Result<()> {
    use std::os::fd::IntoRawFd;
    let raw = fd.into_raw_fd();
    // SAFETY: `raw` was just released from an OwnedFd, so we own it and close it once.
    // rustix has no fallible close; libc reports the error we must not swallow.
    if unsafe { libc::close(raw) } == -1 {
        return Err(Error::Io(std::io::Error::last_os_error()));
    }
    Ok(())
}
