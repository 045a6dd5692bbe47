//! A lock-free, per-process table of the vpoll fds this process created.
//!
//! Some backends keep a private descriptor next to the one the user holds (the
//! Emulated backend's socketpair peer) or cannot tell their fds from ordinary ones
//! by looking (a vpoll eventfd looks like any eventfd). They record each fd here,
//! keyed by descriptor number and verified by the fd's inode, so that:
//!
//! * a reused descriptor number is never confused with the vpoll fd that had it (the
//!   identity differs: each backend records one that is never reused while the fd
//!   lives, a socket cookie or an inode number);
//! * a forked child, which inherits this table and the descriptors, can look fds
//!   up without taking a lock that another thread of the parent may have held at
//!   the moment of `fork` (a lookup is a few atomic loads, no allocation);
//! * a `dup`ed descriptor is still found, by a slower scan for its inode.
//!
//! Layout: a fixed top-level array of lazily allocated chunks, each a run of slots.
//! A chunk is allocated once, published with a compare-exchange and never freed,
//! so readers need no lock and no reclamation scheme.

use std::alloc::{Layout, alloc_zeroed};
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, Ordering};

/// Slots per chunk (a chunk is 16 bytes per slot).
const CHUNK: usize = 1 << 12;
/// Chunks in the top-level array: together they cover descriptor numbers below 2^30
/// (the default `nr_open` is 2^20); a higher number makes creation fail with EMFILE.
const CHUNKS: usize = 1 << 18;

/// One descriptor number's record.
struct Slot {
    /// Identity of the vpoll fd that had this number when it was recorded; 0 = empty.
    ino: AtomicU64,
    /// The backend's private companion descriptor (-1 if it has none).
    peer: AtomicI32,
}

/// A run of `CHUNK` slots.
struct Chunk {
    /// The slots, indexed by `fd % CHUNK`.
    slots: [Slot; CHUNK],
}

/// The top-level array; null entries are chunks not allocated yet.
static TABLE: [AtomicPtr<Chunk>; CHUNKS] = [const { AtomicPtr::new(std::ptr::null_mut()) }; CHUNKS];

/// What the table knows about one vpoll fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The identity (socket cookie or inode) of the vpoll fd.
    pub(crate) ino: u64,
    /// The companion descriptor, or -1.
    pub(crate) peer: RawFd,
}

/// The chunk and index for `fd`, if `fd` is a valid descriptor number.
fn position(fd: RawFd) -> Option<(usize, usize)> {
    let n = usize::try_from(fd).ok()?;
    let (c, i) = (n / CHUNK, n % CHUNK);
    (c < CHUNKS).then_some((c, i))
}

/// The slot for `fd` if its chunk exists.
fn slot(fd: RawFd) -> Option<&'static Slot> {
    let (c, i) = position(fd)?;
    let chunk = TABLE[c].load(Ordering::Acquire);
    // SAFETY: non-null chunk pointers come only from `slot_or_alloc`, point to a
    // zero-initialised `Chunk` (all-zero atomics are valid) and are never freed.
    unsafe { chunk.as_ref() }.map(|chunk| &chunk.slots[i])
}

/// The slot for `fd`, allocating its chunk if needed.
fn slot_or_alloc(fd: RawFd) -> Option<&'static Slot> {
    if let Some(s) = slot(fd) {
        return Some(s);
    }
    let (c, _) = position(fd)?;
    let layout = Layout::new::<Chunk>();
    // SAFETY: `Chunk` has a non-zero size; all-zero bytes are a valid `Chunk`
    // (atomics of 0). A null return is handled below.
    let fresh = unsafe { alloc_zeroed(layout) }.cast::<Chunk>();
    if fresh.is_null() {
        return None;
    }
    if let Err(_existing) = TABLE[c].compare_exchange(
        std::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        // Another thread published this chunk first; ours was never shared.
        // SAFETY: `fresh` was allocated above with `layout` and nobody else saw it.
        unsafe { std::alloc::dealloc(fresh.cast(), layout) };
    }
    slot(fd)
}

/// The inode number of `fd`: the identity of an fd that is not a socket.
pub(crate) fn inode(fd: BorrowedFd<'_>) -> rustix::io::Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_ino)
}

/// The socket cookie of `fd`: a 64-bit identity the kernel never reuses, and cheaper
/// to read than an inode. Fails (ENOTSOCK) for anything that is not a socket.
pub(crate) fn cookie(fd: BorrowedFd<'_>) -> rustix::io::Result<u64> {
    rustix::net::sockopt::socket_cookie(fd)
}

/// Records `fd` (with identity `ino`, never 0) and its companion `peer`. Returns the companion
/// of a stale record that had this number (its vpoll fd was closed without
/// [`remove`]), which the caller should close.
pub(crate) fn insert(fd: RawFd, ino: u64, peer: RawFd) -> Option<Option<RawFd>> {
    let s = slot_or_alloc(fd)?;
    // Invalidate first so a concurrent reader never pairs the new inode with the
    // old companion; publish the inode last.
    let old_ino = s.ino.swap(0, Ordering::AcqRel);
    let old_peer = s.peer.swap(peer, Ordering::AcqRel);
    s.ino.store(ino, Ordering::Release);
    Some((old_ino != 0 && old_peer >= 0).then_some(old_peer))
}

/// The record for descriptor number `fd`, not verified against the fd's inode.
/// Only for callers that know `fd` is the recorded vpoll fd (it is owned by a
/// `VpollFd`, or was just verified with [`find`]).
pub(crate) fn get(fd: RawFd) -> Option<Entry> {
    let s = slot(fd)?;
    loop {
        let ino = s.ino.load(Ordering::Acquire);
        if ino == 0 {
            return None;
        }
        let peer = s.peer.load(Ordering::Acquire);
        // A changed inode means a concurrent insert/remove: read again.
        if s.ino.load(Ordering::Acquire) == ino {
            return Some(Entry { ino, peer });
        }
    }
}

/// The backend that recorded descriptor number `fd`, if any (not verified: the number
/// may have been closed and reused since; check the identity before trusting it).
pub(crate) fn hint(fd: RawFd) -> Option<crate::Backend> {
    get(fd).map(|e| {
        if e.peer >= 0 {
            crate::Backend::Emulated
        } else {
            crate::Backend::Kernel
        }
    })
}

/// The record of `fd`, whose identity is `ino`, among those `kind` accepts: by its
/// own number first, else by a scan for the same identity (a `dup` of a recorded fd).
pub(crate) fn find(fd: BorrowedFd<'_>, ino: u64, kind: impl Fn(&Entry) -> bool) -> Option<Entry> {
    let ok = |e: &Entry| e.ino == ino && kind(e);
    if let Some(e) = get(fd.as_raw_fd()).filter(ok) {
        return Some(e);
    }
    scan(ok)
}

/// The first record `ok` accepts, by a linear scan of the allocated chunks.
fn scan(ok: impl Fn(&Entry) -> bool) -> Option<Entry> {
    for (c, chunk) in TABLE.iter().enumerate() {
        let chunk = chunk.load(Ordering::Acquire);
        if chunk.is_null() {
            continue;
        }
        for i in 0..CHUNK {
            let fd = (c * CHUNK + i) as RawFd;
            if let Some(e) = get(fd).filter(&ok) {
                return Some(e);
            }
        }
    }
    None
}

/// Forgets the record of `fd` if it still has identity `ino`; returns it.
pub(crate) fn remove(fd: RawFd, ino: u64) -> Option<Entry> {
    let s = slot(fd)?;
    s.ino
        .compare_exchange(ino, 0, Ordering::AcqRel, Ordering::Acquire)
        .ok()?;
    let peer = s.peer.swap(-1, Ordering::AcqRel);
    Some(Entry { ino, peer })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn insert_get_remove() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let ino = cookie(a.as_fd()).unwrap();
        let fd = a.as_raw_fd();
        let any = |_: &Entry| true;
        assert_eq!(insert(fd, ino, b.as_raw_fd()), Some(None));
        let expect = Entry {
            ino,
            peer: b.as_raw_fd(),
        };
        assert_eq!(find(a.as_fd(), ino, any), Some(expect));
        assert_eq!(find(a.as_fd(), ino, |e| e.peer < 0), None);
        // The peer socket has another identity, so it is not mistaken for `a`.
        let b_id = cookie(b.as_fd()).unwrap();
        assert_ne!(b_id, ino);
        assert_eq!(find(b.as_fd(), b_id, any), None);
        // A dup shares the socket, so its cookie, and is found by a scan.
        let dup = rustix::io::dup(&a).unwrap();
        assert_eq!(cookie(dup.as_fd()).unwrap(), ino);
        assert_eq!(find(dup.as_fd(), ino, any), Some(expect));
        assert_eq!(remove(fd, ino + 1), None);
        assert_eq!(remove(fd, ino), Some(expect));
        assert_eq!(find(a.as_fd(), ino, any), None);
    }

    #[test]
    fn huge_and_negative_numbers_are_rejected() {
        assert!(position(-1).is_none());
        assert!(position(i32::MAX).is_none());
        assert!(position((CHUNK * CHUNKS - 1) as RawFd).is_some());
        assert!(get(-1).is_none());
    }
}
