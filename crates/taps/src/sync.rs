//! The crate's synchronisation primitives, in one place so that `loom` can replace them.
//!
//! Under `cfg(loom)` every lock, condition variable, atomic and reference count that
//! carries the crate's lifetime protocol is loom's model type, so `tests/loom.rs` explores
//! the interleavings of register, fire, close and drop. Otherwise they are `std`'s.

#[cfg(loom)]
pub(crate) use loom::sync::{
    Arc, Condvar, Mutex, MutexGuard,
    atomic::{AtomicU32, AtomicU64, Ordering},
};
#[cfg(not(loom))]
pub(crate) use std::sync::{
    Arc, Condvar, Mutex, MutexGuard,
    atomic::{AtomicU32, AtomicU64, Ordering},
};

/// Copy-on-write snapshot of a tap table: a firer clones this pointer under the table
/// lock and walks the list after releasing it. Always `std`'s `Arc`, because loom's has no
/// `make_mut`; it is only ever cloned and mutated under the owning (modelled) mutex.
pub(crate) type Snapshot<T> = std::sync::Arc<T>;

/// Locks `m`, ignoring poisoning: every critical section in this crate leaves its state
/// consistent before anything that can panic, so a panic elsewhere must not wedge a queue.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
