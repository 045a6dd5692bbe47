//! The FUSE filesystem served by the process's server thread.
//!
//! The root directory holds one regular file per vpoll fd, named by its inode number in
//! decimal; names exist only so `create` can `openat` them (entries are never cached).
//! Requests answered:
//! - `lookup`/`getattr`: attributes with a long attribute TTL (so `fstat` on a vpoll fd
//!   never reaches the server) and the marker times of [`super::MARKER_SEC`].
//! - `open`: `FOPEN_NOFLUSH` (closing never waits for the server: the exit hazard in
//!   the backend's module docs), direct I/O, non-seekable stream; a second open of the same file is refused.
//! - `poll`: the exact mask; the kernel's poll handle is kept so changes can be notified.
//! - `write`: the 8-byte control word `op << 32 | events` (the ctl path of a process that
//!   does not own the state, e.g. a forked child); `read`: the 8-byte mask.
//! - `flush`: `ENOSYS` (second guard against the exit deadlock); `release`: frees the slot.

use super::{MARKER_NSEC, MARKER_SEC, Shared, WORD};
use crate::{Events, Op};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, PollEvents, PollFlags, PollNotifier, ReplyAttr, ReplyData, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyPoll, ReplyWrite, Request, WriteFlags,
};
use std::ffi::OsStr;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

/// How long the kernel may cache attributes: effectively forever, they never change.
const ATTR_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Entries are not cached, so a closed file's dentry and inode go away at once.
const ENTRY_TTL: Duration = Duration::ZERO;

/// The filesystem: a view of the shared slot table.
pub(super) struct Server {
    /// Slots and the notification channel, shared with the ctl fast path.
    pub(super) shared: &'static Shared,
    /// The session's `/dev/fuse` fd, the only fd in the server thread's private table: where
    /// the server writes its notifications.
    pub(super) dev: RawFd,
    /// Owner of every file (the mounting process's effective uid).
    pub(super) uid: u32,
    /// Group of every file.
    pub(super) gid: u32,
}

impl Server {
    /// Attributes of a file or of the root.
    fn attr(&self, ino: u64, kind: FileType) -> FileAttr {
        let marker = SystemTime::UNIX_EPOCH + Duration::new(MARKER_SEC, MARKER_NSEC);
        let (perm, nlink, size) = match kind {
            FileType::Directory => (0o755, 2, 0),
            _ => (0o600, 1, WORD as u64),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: 0,
            atime: marker,
            mtime: marker,
            ctime: marker,
            crtime: marker,
            kind,
            perm,
            nlink,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

impl Filesystem for Server {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let ino = name.to_str().and_then(|s| s.parse::<u64>().ok());
        match ino {
            Some(ino) if parent == INodeNo::ROOT && self.shared.table.get(ino).is_some() => {
                let attr = self.attr(ino, FileType::RegularFile);
                reply.entry_with_ttls(&ATTR_TTL, &ENTRY_TTL, &attr, Generation(0));
            }
            _ => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT {
            reply.attr(&ATTR_TTL, &self.attr(ino.0, FileType::Directory));
        } else if self.shared.table.get(ino.0).is_some() {
            reply.attr(&ATTR_TTL, &self.attr(ino.0, FileType::RegularFile));
        } else {
            reply.error(Errno::ENOENT);
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.shared.table.get(ino.0) {
            Some(slot) if !slot.opened.swap(true, Ordering::SeqCst) => reply.opened(
                FileHandle(ino.0),
                FopenFlags::FOPEN_NOFLUSH
                    | FopenFlags::FOPEN_DIRECT_IO
                    | FopenFlags::FOPEN_NONSEEKABLE
                    | FopenFlags::FOPEN_STREAM,
            ),
            Some(_) => reply.error(Errno::EBUSY),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.shared.table.get(fh.0) {
            Some(_) if (size as usize) < WORD => reply.error(Errno::EINVAL),
            Some(slot) => {
                let mask = u64::from(slot.mask.load(Ordering::SeqCst));
                reply.data(&mask.to_ne_bytes());
            }
            None => reply.error(Errno::EBADF),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some(slot) = self.shared.table.get(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let word = <[u8; WORD]>::try_from(data).ok().map(u64::from_ne_bytes);
        let Some((op, events)) = word.and_then(Op::decode) else {
            return reply.error(Errno::EINVAL);
        };
        tracing::trace!(ino = fh.0, ?op, ?events, "vpoll fuse: ctl via write");
        // SAFETY: requests are served only inside `Session::run`, which owns `dev` open.
        let dev = unsafe { BorrowedFd::borrow_raw(self.dev) };
        match Shared::apply(dev, slot, op, events) {
            Ok(()) => reply.written(WORD as u32),
            Err(e) => reply.error(Errno::from_i32(e.raw_os_error().unwrap_or(libc::EIO))),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        tracing::trace!(ino = fh.0, "vpoll fuse: release");
        self.shared.table.free(fh.0);
        reply.ok();
    }

    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        let Some(slot) = self.shared.table.get(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        // Publish the handle before reading the mask, and a ctl changes the mask before
        // reading the handle (both SeqCst): either this answer sees the new mask or the
        // ctl sees the handle and notifies. The kernel queued the waiter before asking.
        slot.kh.store(ph.handle().0, Ordering::SeqCst);
        let mask = slot.mask.load(Ordering::SeqCst) & Events::all().bits();
        reply.poll(PollEvents::from_bits_retain(mask));
    }
}
