//! The Fuse backend: each vpoll fd is an open file on this process's own FUSE filesystem.
//!
//! Why FUSE: a FUSE file's readiness is whatever its server answers to the kernel's `poll`
//! request, so every bit (PRI, ERR, HUP alone, RDHUP) reaches epoll, poll and select exactly,
//! on an unpatched kernel and without a module.
//!
//! - **One filesystem per process and route**, mounted lazily by the first `create` (or
//!   probe) and served by a dedicated thread, and never left mounted anywhere. Three routes
//!   ([`FuseRoute`]) get the connection, tried in this order unless one is forced
//!   (`GREENFD_VPOLL_FUSE_ROUTE` or [`Builder::fuse_route`](crate::Builder::fuse_route)):
//!   1. *direct* (root or `CAP_SYS_ADMIN`, [`mount`]): `fsopen`/`fsmount` create the mount
//!      detached; without the new mount API (or with `GREENFD_VPOLL_FUSE_ROUTE=legacy`) it
//!      is mounted on a private temp dir, an `O_PATH` fd of its root is kept,
//!      `umount2(MNT_DETACH)` runs at once and the dir is removed;
//!   2. *userns* (any user, [`userns`]): a helper child mounts inside a new user and mount
//!      namespace and passes the detached mount back; nothing is ever attached;
//!   3. *fusermount* (any user, [`fusermount`]): the setuid `fusermount3` mounts on a
//!      private dir, then `fusermount3 -u -z` detaches it once its root fd is open (a few
//!      milliseconds of visibility, once per process: see that module for the window).
//!
//!   Either way files are opened with `openat` on the root fd, and whatever way the process
//!   ends (exit, panic, SIGKILL) no mount remains. A route that fails is not retried by
//!   the process; the reasons are what `greenfd probe` prints.
//! - **State in shared memory** ([`table`]): one slot per file, found from the fd by `fstat`
//!   (the inode number encodes slot and generation; `st_dev` names our mount). A `VpollFd`
//!   remembers its file's device and inode from creation, so its own ctl needs no `fstat`
//!   ([`ctl_key`]); an fd known only by number (`ctl_fd`, the C ABI) pays one.
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

mod fusermount;
mod mount;
mod server;
mod table;
mod userns;

use super::unavailable;
use crate::FuseRoute;
use crate::{Backend, Error, Events, Op, Result};
use rustix::event::{PollFd, PollFlags};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU8, AtomicU64, Ordering};
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

/// The mounted filesystem of one process, for one route.
pub(super) struct Global {
    /// Slots and notification fd, also referenced by the server thread.
    shared: &'static Shared,
    /// `O_PATH` fd (or detached mount fd) of the mount's root, where files are opened.
    dir: OwnedFd,
    /// `st_dev` of the mount: a file with this device is one of ours.
    dev: u64,
    /// The process that mounted it; after a fork the child must not use its state.
    pid: i32,
    /// How it was mounted.
    route: FuseRoute,
}

/// This process's filesystem per route, once mounted (a forked child sees its parent's,
/// and ignores them). Pointers come from `Box::leak` and are never freed.
static GLOBALS: [AtomicPtr<Global>; 3] = [const { AtomicPtr::new(std::ptr::null_mut()) }; 3];
/// Serializes mounting.
static MOUNTING: Mutex<()> = Mutex::new(());
/// Why each route failed, once it did: a process asks the system once per route.
static FAILED: Mutex<[Option<String>; 3]> = Mutex::new([None, None, None]);
/// The route automatic choice settled on (its index + 1), 0 before the first choice.
static AUTO: AtomicU8 = AtomicU8::new(0);

/// The filesystem mounted for `route`, by whichever process (the parent's after a fork).
fn global(route: usize) -> Option<&'static Global> {
    // SAFETY: GLOBALS holds null or pointers from `Box::leak`, never freed.
    unsafe { GLOBALS[route].load(Ordering::Acquire).as_ref() }
}

/// The calling process's own filesystem for `route`, if mounted.
fn current(route: FuseRoute) -> Option<&'static Global> {
    global(route.index()).filter(|g| g.pid == pid())
}

/// The calling process's own filesystem whose device is `dev`.
fn current_by_dev(dev: u64) -> Option<&'static Global> {
    (0..GLOBALS.len())
        .filter_map(global)
        .find(|g| g.dev == dev)
        .filter(|g| g.pid == pid())
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

/// Fails if `g`'s server has stopped.
fn alive(g: &'static Global) -> Result<&'static Global> {
    if g.shared.dead.load(Ordering::Acquire) {
        return Err(unavailable(
            THIS,
            format!(
                "this process's FUSE connection ({} route) was aborted; its vpoll fds report ERR",
                g.route
            ),
        ));
    }
    Ok(g)
}

/// The calling process's filesystem for `route`, mounting it on first use.
fn mounted(route: FuseRoute, legacy: bool) -> Result<&'static Global> {
    if let Some(g) = current(route) {
        return alive(g);
    }
    let _lock = MOUNTING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(g) = current(route) {
        return alive(g);
    }
    let i = route.index();
    if let Some(why) = &FAILED.lock().unwrap_or_else(|e| e.into_inner())[i] {
        return Err(unavailable(THIS, why.clone()));
    }
    match mount::mount(route, legacy) {
        Ok(g) => {
            let g: &'static Global = Box::leak(Box::new(g));
            GLOBALS[i].store(std::ptr::from_ref(g).cast_mut(), Ordering::Release);
            Ok(g)
        }
        Err(e) => {
            let why = match &e {
                Error::Unavailable { reason, .. } => reason.clone(),
                other => other.to_string(),
            };
            tracing::debug!(%route, %why, "vpoll fuse: route unavailable");
            FAILED.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(why);
            Err(e)
        }
    }
}

/// The filesystem new fds go to: `route` if given, else the one `GREENFD_VPOLL_FUSE_ROUTE`
/// forces, else the first route (in [`FuseRoute::ALL`] order) that works here.
fn resolve(route: Option<FuseRoute>) -> Result<&'static Global> {
    let env = crate::route::from_env()?;
    if let Some(r) = route {
        return mounted(r, r == FuseRoute::Direct && env.legacy_mount);
    }
    if let Some(r) = env.route {
        return mounted(r, env.legacy_mount);
    }
    if let Some(r) = AUTO.load(Ordering::Acquire).checked_sub(1) {
        return mounted(FuseRoute::ALL[usize::from(r)], false);
    }
    let mut reasons = Vec::new();
    for r in FuseRoute::ALL {
        match mounted(r, false) {
            Ok(g) => {
                AUTO.store(r.index() as u8 + 1, Ordering::Release);
                return Ok(g);
            }
            Err(Error::Unavailable { reason, .. }) => reasons.push(format!("{r}: {reason}")),
            Err(e) => reasons.push(format!("{r}: {e}")),
        }
    }
    Err(unavailable(
        THIS,
        format!("no FUSE route works here ({})", reasons.join("; ")),
    ))
}

/// Whether `route` works here (mounting its filesystem if needed).
pub(crate) fn probe_route(route: FuseRoute) -> Result<()> {
    // A bad GREENFD_VPOLL_FUSE_ROUTE is reported by the automatic choice; a route asked
    // for by name only needs to know whether `legacy` is set.
    let legacy =
        route == FuseRoute::Direct && crate::route::from_env().is_ok_and(|c| c.legacy_mount);
    mounted(route, legacy).map(drop)
}

/// The route new fds use when none is forced through the builder.
pub(crate) fn chosen_route() -> Result<FuseRoute> {
    resolve(None).map(|g| g.route)
}

/// The route whose filesystem (of this process) serves `fd`, if any.
pub(crate) fn route_of(fd: BorrowedFd<'_>) -> Option<FuseRoute> {
    let id = file_id(fd).ok()?;
    current_by_dev(id.dev).map(|g| g.route)
}

/// The fields of `fstat` this backend looks at, in fixed types on every architecture.
#[derive(Clone, Copy)]
pub(crate) struct FileId {
    /// Device of the filesystem.
    dev: u64,
    /// Inode number: `generation << 32 | slot` for our files.
    ino: u64,
    /// Whether it is a regular file.
    regular: bool,
    /// Whether its mtime and ctime are the vpoll marker.
    marked: bool,
}

impl FileId {
    /// The fields of a `fstat` result.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    pub(crate) fn of(st: &rustix::fs::Stat) -> FileId {
        let marker =
            |sec: i64, nsec: u64| sec == MARKER_SEC as i64 && nsec == u64::from(MARKER_NSEC);
        FileId {
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            regular: FileType::from_raw_mode(st.st_mode as _) == FileType::RegularFile,
            marked: marker(st.st_mtime as i64, st.st_mtime_nsec as u64)
                && marker(st.st_ctime as i64, st.st_ctime_nsec as u64),
        }
    }
}

/// `fstat` of `fd`, reduced to [`FileId`]; async-signal-safe.
fn file_id(fd: BorrowedFd<'_>) -> rustix::io::Result<FileId> {
    Ok(FileId::of(&rustix::fs::fstat(fd)?))
}

/// Whether the file is on a FUSE filesystem; async-signal-safe.
#[allow(clippy::unnecessary_cast)]
fn on_fuse(fd: BorrowedFd<'_>) -> bool {
    rustix::fs::fstatfs(fd).is_ok_and(|s| s.f_type as u64 == FUSE_SUPER_MAGIC)
}

/// Devices of other processes' vpoll filesystems already confirmed with `fstatfs` (fds
/// inherited across `exec` or passed over a socket), so that later calls need only the
/// `fstat`. 0 = free entry; when full, later devices are confirmed each time.
static FOREIGN: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

/// Whether `id` (of `fd`) is a vpoll file of any process's server.
fn is_vpoll(fd: BorrowedFd<'_>, id: &FileId) -> bool {
    if !id.regular || id.ino >> 32 == 0 {
        return false;
    }
    // In a forked child these are the parent's filesystems, whose files the child
    // inherited: still ours to recognise.
    if (0..GLOBALS.len())
        .filter_map(global)
        .any(|g| g.dev == id.dev)
    {
        return true;
    }
    if !id.marked {
        return false;
    }
    if FOREIGN.iter().any(|d| d.load(Ordering::Relaxed) == id.dev) {
        return true;
    }
    if !on_fuse(fd) {
        return false;
    }
    for d in &FOREIGN {
        if d.compare_exchange(0, id.dev, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            break;
        }
    }
    true
}

/// The slot of `id` if the calling process owns the filesystem it lives on.
fn owned_slot(id: &FileId) -> Option<(&'static Shared, &'static Slot)> {
    if !id.regular {
        return None;
    }
    let g = current_by_dev(id.dev)?;
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

/// Usable if this process's filesystem is mounted, or can be by the route
/// `GREENFD_VPOLL_FUSE_ROUTE` forces (or the first that works): the first probe mounts it
/// (as the first `create` would), so the answer is exact rather than a guess from
/// permissions. Each route states its usual refusals plainly.
pub(crate) fn probe(route: Option<FuseRoute>) -> Result<()> {
    resolve(route).map(drop)
}

/// Creates a vpoll file with `init` set and opens it, on `route`'s filesystem (`None`: the
/// environment's or automatic choice). Returns the fd with its device and inode number.
pub(crate) fn create(
    init: Events,
    cloexec: bool,
    route: Option<FuseRoute>,
) -> Result<(OwnedFd, u64, u64)> {
    check_bits(init)?;
    let g = resolve(route)?;
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
            tracing::trace!(?fd, ino, route = %g.route, "vpoll fuse: openat");
            Ok((fd, g.dev, ino))
        }
        Err(e) => {
            // If the open got as far as OPEN, RELEASE frees the slot too; `free` is idempotent.
            g.shared.table.free(ino);
            Err(Error::Io(e.into()))
        }
    }
}

/// Whether `fd`, whose `fstat` gave `id`, is a vpoll file (of this process's server, or
/// of another's).
pub(crate) fn owns(fd: BorrowedFd<'_>, id: &FileId) -> bool {
    is_vpoll(fd, id)
}

/// Applies `op`: through shared memory in the owning process, through the fd elsewhere.
///
/// The path through the fd is async-signal-safe: `fstat`, atomics and `write(2)` only.
pub(crate) fn ctl(fd: BorrowedFd<'_>, op: Op, events: Events) -> Result<()> {
    let id = file_id(fd).map_err(|e| match e {
        Errno::BADF => Error::NotVpoll,
        e => Error::Io(e.into()),
    })?;
    ctl_id(fd, &id, op, events)
}

/// [`ctl`] for an fd this process created as file `ino` on device `dev` (what its
/// `VpollFd` remembers): no `fstat` while the file is this process's own and alive;
/// otherwise (a `VpollFd` copied into a forked child) the checked path through the fd.
pub(crate) fn ctl_key(
    fd: BorrowedFd<'_>,
    dev: u64,
    ino: u64,
    op: Op,
    events: Events,
) -> Result<()> {
    let id = FileId {
        dev,
        ino,
        regular: true,
        marked: true,
    };
    match owned_slot(&id) {
        Some((shared, slot)) => {
            check_bits(events)?;
            if shared.dead.load(Ordering::Acquire) {
                return Err(Error::Io(Errno::NOTCONN.into()));
            }
            Shared::apply(shared.notify.as_fd(), slot, op, events).map_err(Error::Io)
        }
        None => ctl(fd, op, events),
    }
}

/// [`ctl`] with the fd's `fstat` already done: one system call (the notification or the
/// control word), none at all when no poller waits.
pub(crate) fn ctl_id(fd: BorrowedFd<'_>, id: &FileId, op: Op, events: Events) -> Result<()> {
    check_bits(events)?;
    if let Some((shared, slot)) = owned_slot(id) {
        if shared.dead.load(Ordering::Acquire) {
            return Err(Error::Io(Errno::NOTCONN.into()));
        }
        return Shared::apply(shared.notify.as_fd(), slot, op, events).map_err(Error::Io);
    }
    if !is_vpoll(fd, id) {
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
