//! A table of taps with stable slot indices, used by sources and by queues.
//!
//! A tap learns its slot when it is inserted and gives it back to be removed; removal
//! checks the entry is that very `Arc` (object identity), so a slot reused by a newer tap
//! can never be removed in the old tap's name.

use crate::sync::Arc;

/// `Arc<T>` entries at stable indices, with free slots reused before the table grows.
pub(crate) struct Slots<T> {
    /// The entries; `None` marks a free slot.
    entries: Vec<Option<Arc<T>>>,
    /// Free indices of `entries`.
    free: Vec<usize>,
    /// Occupied entries.
    live: usize,
}

impl<T> Clone for Slots<T> {
    fn clone(&self) -> Self {
        Slots {
            entries: self.entries.clone(),
            free: self.free.clone(),
            live: self.live,
        }
    }
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots {
            entries: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }
}

impl<T> Slots<T> {
    /// Stores the entry `make` builds for the slot it is given; returns the slot and the
    /// entry.
    pub(crate) fn insert_with(&mut self, make: impl FnOnce(usize) -> Arc<T>) -> (usize, Arc<T>) {
        let slot = self.free.pop().unwrap_or_else(|| {
            self.entries.push(None);
            self.entries.len() - 1
        });
        let item = make(slot);
        self.entries[slot] = Some(Arc::clone(&item));
        self.live += 1;
        (slot, item)
    }

    /// Removes `item` from `slot` if it is there, returning it (to be dropped by the
    /// caller outside its lock).
    pub(crate) fn remove(&mut self, slot: usize, item: &Arc<T>) -> Option<Arc<T>> {
        match self.entries.get_mut(slot) {
            Some(entry) if entry.as_ref().is_some_and(|t| Arc::ptr_eq(t, item)) => {
                self.free.push(slot);
                self.live -= 1;
                entry.take()
            }
            _ => {
                crate::invariant!(false, "tap removed twice or from a foreign slot");
                None
            }
        }
    }

    /// The occupied entries.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<T>> {
        self.entries.iter().flatten()
    }

    /// How many entries are occupied.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// How many slots exist (occupied or free).
    pub(crate) fn capacity(&self) -> usize {
        self.entries.len()
    }
}
