//! The key space: shards of a hash map, each behind its own mutex, shared by every
//! engine of a [`Group`](greenfd_engine::Group). The lock a request takes is almost
//! never contended.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

/// One shard of the key space.
pub(crate) type Shard = HashMap<Vec<u8>, Vec<u8>>;

/// The key/value store behind [`RespServer`](crate::RespServer).
#[derive(Debug)]
pub struct Db {
    /// Key-space shards, chosen by key hash.
    shards: Box<[Mutex<Shard>]>,
    /// Hashes keys to shards.
    hasher: RandomState,
}

impl Db {
    /// An empty store with `shards` independently locked shards (1 for one thread).
    pub fn new(shards: usize) -> Arc<Db> {
        Arc::new(Db {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            hasher: RandomState::new(),
        })
    }

    /// Locks the shard holding `key`.
    pub(crate) fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        let i = if self.shards.len() == 1 {
            0
        } else {
            (self.hasher.hash_one(key) % self.shards.len() as u64) as usize
        };
        // A poisoned shard only means a handler panicked mid-command; the map itself
        // is still a valid map.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every key.
    pub fn clear(&self) {
        for s in self.shards.iter() {
            s.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }
}
