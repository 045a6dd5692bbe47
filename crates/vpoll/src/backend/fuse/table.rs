//! Per-file state shared by the server thread and the owning process's ctl fast path.
//!
//! Each vpoll file owns one [`Slot`]. The file's inode number (what `fstat` reports, and
//! also its FUSE file handle) is `generation << 32 | index`, so a caller that has only the
//! fd finds the slot with one `fstat` and no lock, and a stale number (a slot freed and
//! reused) never matches because the generation differs. Generations start at 1, so no
//! file ever gets inode 1, the FUSE root.
//!
//! Slots live in fixed-size chunks that are allocated on demand and never freed (memory
//! stays at the high-water mark), so a reader needs only an `Acquire` load of the chunk
//! pointer. Allocation and freeing go through a mutex; they are not on the ctl path.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};

/// Slots per chunk.
const CHUNK: usize = 1024;
/// Chunks at most: 4 Mi files open at once, far above any fd limit in practice.
const MAX_CHUNKS: usize = 4096;

/// The state of one vpoll file.
#[derive(Default)]
pub(super) struct Slot {
    /// Generation of the file that holds this slot; 0 while the slot is free.
    live: AtomicU32,
    /// Generation handed out last, so the next holder gets a fresh inode number.
    last_gen: AtomicU32,
    /// The current event mask: exactly what the server answers to FUSE `poll`.
    pub(super) mask: AtomicU32,
    /// The kernel's poll handle (`kh`) of the open file; 0 until its first poll.
    pub(super) kh: AtomicU64,
    /// Whether the file has been opened; a second open (e.g. via /proc/PID/fd) is refused
    /// so that one slot has one kernel file and one `kh`.
    pub(super) opened: AtomicBool,
}

/// A chunk of slots.
type Chunk = [Slot; CHUNK];

/// Allocation state, behind the table's mutex.
#[derive(Default)]
struct Alloc {
    /// Freed slot indices ready for reuse.
    free: Vec<u32>,
    /// Slots ever handed out (the next fresh index).
    len: u32,
}

/// All slots of the process's vpoll filesystem.
pub(super) struct Table {
    /// Lazily allocated chunks; null until first needed, then never changed.
    chunks: Box<[AtomicPtr<Chunk>]>,
    /// Free list and high-water mark.
    alloc: Mutex<Alloc>,
}

/// Splits an inode number into slot index and generation.
fn split(ino: u64) -> (usize, u32) {
    ((ino as u32) as usize, (ino >> 32) as u32)
}

impl Table {
    /// An empty table.
    pub(super) fn new() -> Self {
        Table {
            chunks: (0..MAX_CHUNKS)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            alloc: Mutex::new(Alloc::default()),
        }
    }

    /// The slot at `index`, if its chunk exists.
    fn slot_at(&self, index: usize) -> Option<&Slot> {
        let chunk = self.chunks.get(index / CHUNK)?.load(Ordering::Acquire);
        // SAFETY: a non-null chunk pointer comes from `Box::into_raw` in `alloc` and is
        // never freed or replaced, so it stays valid for the table's lifetime.
        let chunk = unsafe { chunk.as_ref() }?;
        Some(&chunk[index % CHUNK])
    }

    /// The live slot for inode `ino`, or `None` if that file no longer exists.
    pub(super) fn get(&self, ino: u64) -> Option<&Slot> {
        let (index, generation) = split(ino);
        let slot = self.slot_at(index)?;
        (generation != 0 && slot.live.load(Ordering::Acquire) == generation).then_some(slot)
    }

    /// Reserves a slot with `mask` set; returns the new file's inode number.
    pub(super) fn alloc(&self, mask: u32) -> Option<u64> {
        let mut a = self.alloc.lock().unwrap_or_else(|e| e.into_inner());
        let index = match a.free.pop() {
            Some(i) => i as usize,
            None => {
                let i = a.len as usize;
                let cell = self.chunks.get(i / CHUNK)?;
                if cell.load(Ordering::Acquire).is_null() {
                    let chunk: Box<Chunk> = Box::new(std::array::from_fn(|_| Slot::default()));
                    cell.store(Box::into_raw(chunk), Ordering::Release);
                }
                a.len += 1;
                i
            }
        };
        let slot = self.slot_at(index)?;
        let generation = match slot.last_gen.load(Ordering::Relaxed).wrapping_add(1) {
            0 => 1,
            g => g,
        };
        slot.last_gen.store(generation, Ordering::Relaxed);
        slot.mask.store(mask, Ordering::SeqCst);
        slot.kh.store(0, Ordering::SeqCst);
        slot.opened.store(false, Ordering::SeqCst);
        slot.live.store(generation, Ordering::Release);
        Some((u64::from(generation) << 32) | index as u64)
    }

    /// Frees the slot of inode `ino` if it is still live; safe to call twice.
    pub(super) fn free(&self, ino: u64) {
        let (index, generation) = split(ino);
        let Some(slot) = self.slot_at(index) else {
            return;
        };
        if generation == 0
            || slot
                .live
                .compare_exchange(generation, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            return;
        }
        slot.mask.store(0, Ordering::SeqCst);
        slot.kh.store(0, Ordering::SeqCst);
        let mut a = self.alloc.lock().unwrap_or_else(|e| e.into_inner());
        a.free.push(index as u32);
    }

    /// Number of live files (for tests and diagnostics).
    #[cfg(test)]
    pub(super) fn live(&self) -> usize {
        let a = self.alloc.lock().unwrap_or_else(|e| e.into_inner());
        a.len as usize - a.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_numbers_never_match() {
        let t = Table::new();
        let a = t.alloc(1).unwrap();
        assert_eq!(t.get(a).unwrap().mask.load(Ordering::SeqCst), 1);
        t.free(a);
        assert!(t.get(a).is_none());
        let b = t.alloc(4).unwrap();
        assert_eq!(a as u32, b as u32, "slot reused");
        assert_ne!(a, b, "but with a new generation");
        assert!(t.get(a).is_none());
        t.free(a);
        assert!(
            t.get(b).is_some(),
            "freeing the stale number left the new file alone"
        );
        assert_eq!(t.live(), 1);
    }

    #[test]
    fn never_inode_one_and_grows_past_a_chunk() {
        let t = Table::new();
        let inos: Vec<u64> = (0..CHUNK + 3).map(|i| t.alloc(i as u32).unwrap()).collect();
        assert!(inos.iter().all(|&i| i >> 32 != 0 && i != 1));
        for (i, &ino) in inos.iter().enumerate() {
            assert_eq!(t.get(ino).unwrap().mask.load(Ordering::SeqCst), i as u32);
        }
    }
}
