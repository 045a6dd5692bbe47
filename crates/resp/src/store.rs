//! The key space: shards of a hash map, each behind its own mutex, shared by every
//! engine of a [`Group`](greenfd_engine::Group). A command locks only the shards of the
//! keys it names (in index order, so two commands never wait on each other in a
//! cycle); commands over the whole key space, and transactions, lock every shard.
//!
//! Values are shared buffers ([`Bytes`]): a reply references a stored value instead of
//! copying it. Keys with a time to live are also kept in an ordered set by deadline, so
//! expiry is lazy (a key past its deadline is removed when touched) and active
//! ([`Db::expire_cycle`] removes what is due without scanning the rest).

use bytes::Bytes;
use std::cell::Cell;
use std::cmp::Ordering as CmpOrdering;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (redis' clock for expiry).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A score with a total order (NaN never gets stored).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Score(pub(crate) f64);

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.0.total_cmp(&other.0)
    }
}

/// A sorted set: members by score (then by member), and each member's score.
#[derive(Debug, Default)]
pub(crate) struct ZSet {
    /// Ordered by (score, member).
    pub(crate) order: BTreeSet<(Score, Bytes)>,
    /// Each member's score.
    pub(crate) scores: HashMap<Bytes, f64>,
}

impl ZSet {
    /// Sets `member`'s score; returns its previous score.
    pub(crate) fn insert(&mut self, member: Bytes, score: f64) -> Option<f64> {
        let old = self.scores.insert(member.clone(), score);
        if let Some(old) = old {
            self.order.remove(&(Score(old), member.clone()));
        }
        self.order.insert((Score(score), member));
        old
    }

    /// Removes the lowest-scored member.
    pub(crate) fn pop_min(&mut self) -> Option<(Bytes, f64)> {
        let (score, member) = self.order.pop_first()?;
        self.scores.remove(&member);
        Some((member, score.0))
    }

    /// Members in the set.
    pub(crate) fn len(&self) -> usize {
        self.scores.len()
    }
}

/// A stored value.
#[derive(Debug)]
pub(crate) enum Value {
    /// A string.
    Str(Bytes),
    /// A list.
    List(VecDeque<Bytes>),
    /// A set.
    Set(HashSet<Bytes>),
    /// A hash.
    Hash(HashMap<Bytes, Bytes>),
    /// A sorted set.
    ZSet(ZSet),
}

impl Value {
    /// The name TYPE answers.
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Hash(_) => "hash",
            Value::ZSet(_) => "zset",
        }
    }

    /// Whether a collection lost its last element (redis then deletes the key).
    pub(crate) fn is_empty_collection(&self) -> bool {
        match self {
            Value::Str(_) => false,
            Value::List(l) => l.is_empty(),
            Value::Set(s) => s.is_empty(),
            Value::Hash(h) => h.is_empty(),
            Value::ZSet(z) => z.len() == 0,
        }
    }
}

/// A key's value and deadline.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The value.
    pub(crate) value: Value,
    /// When it expires (ms since the epoch), if ever.
    pub(crate) expires: Option<u64>,
}

/// One shard of the key space.
#[derive(Debug, Default)]
pub(crate) struct Shard {
    /// Keys and their entries.
    map: HashMap<Bytes, Entry>,
    /// Keys with a deadline, by deadline.
    deadlines: BTreeSet<(u64, Bytes)>,
}

impl Shard {
    /// The live entry of `key` (one past its deadline is removed first).
    pub(crate) fn get(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        if self.deadlines.is_empty() {
            // No key has a deadline: one lookup.
            return self.map.get_mut(key);
        }
        let expired = self
            .map
            .get(key)
            .is_some_and(|e| e.expires.is_some_and(|t| t <= now));
        if expired {
            self.remove(key);
            return None;
        }
        self.map.get_mut(key)
    }

    /// Stores `value` under `key` with deadline `expires`, replacing any entry.
    pub(crate) fn insert(&mut self, key: &[u8], value: Value, expires: Option<u64>) {
        if self.deadlines.is_empty() && expires.is_none() {
            // No deadline to keep in step: replace in place, or add with one copy.
            if let Some(entry) = self.map.get_mut(key) {
                *entry = Entry { value, expires };
            } else {
                self.map
                    .insert(Bytes::copy_from_slice(key), Entry { value, expires });
            }
            return;
        }
        let key = self.key_bytes(key);
        if let Some(old) = self.map.get(&key).and_then(|e| e.expires) {
            self.deadlines.remove(&(old, key.clone()));
        }
        if let Some(t) = expires {
            self.deadlines.insert((t, key.clone()));
        }
        self.map.insert(key, Entry { value, expires });
    }

    /// The stored key equal to `key` (shared), or a new copy.
    fn key_bytes(&self, key: &[u8]) -> Bytes {
        self.map
            .get_key_value(key)
            .map_or_else(|| Bytes::copy_from_slice(key), |(k, _)| k.clone())
    }

    /// Removes `key`; returns its entry.
    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let (k, entry) = self.map.remove_entry(key)?;
        if let Some(t) = entry.expires {
            self.deadlines.remove(&(t, k));
        }
        Some(entry)
    }

    /// Changes `key`'s deadline (the key must exist).
    pub(crate) fn set_expiry(&mut self, key: &[u8], expires: Option<u64>) {
        let k = self.key_bytes(key);
        let Some(entry) = self.map.get_mut(key) else {
            return;
        };
        if let Some(old) = entry.expires {
            self.deadlines.remove(&(old, k.clone()));
        }
        entry.expires = expires;
        if let Some(t) = expires {
            self.deadlines.insert((t, k));
        }
    }

    /// Removes `key` if its collection became empty.
    pub(crate) fn drop_if_empty(&mut self, key: &[u8]) {
        if self
            .map
            .get(key)
            .is_some_and(|e| e.value.is_empty_collection())
        {
            self.remove(key);
        }
    }

    /// Keys not past their deadline.
    pub(crate) fn live_keys(&self, now: u64) -> impl Iterator<Item = (&Bytes, &Entry)> {
        self.map
            .iter()
            .filter(move |(_, e)| e.expires.is_none_or(|t| t > now))
    }

    /// Number of keys (some may be past their deadline and not removed yet).
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Keys with a deadline.
    pub(crate) fn volatile(&self) -> usize {
        self.deadlines.len()
    }

    /// Removes up to `limit` keys whose deadline has passed; returns how many.
    fn expire_due(&mut self, now: u64, limit: usize) -> usize {
        let mut n = 0;
        while n < limit {
            match self.deadlines.first() {
                Some((t, _)) if *t <= now => {}
                _ => break,
            }
            if let Some((_, key)) = self.deadlines.pop_first() {
                self.map.remove(&key);
                n += 1;
            }
        }
        n
    }

    /// Takes everything out (for FLUSHALL), leaving the shard empty.
    fn take(&mut self) -> Shard {
        std::mem::take(self)
    }
}

/// The key/value store behind [`RespServer`](crate::RespServer).
#[derive(Debug)]
pub struct Db {
    /// Key-space shards, chosen by key hash.
    shards: Box<[Mutex<Shard>]>,
    /// Hashes keys to shards (and orders SCAN).
    hasher: RandomState,
    /// The next CLIENT ID.
    next_client: AtomicU64,
    /// Open connections over every engine (INFO).
    pub(crate) clients: AtomicU64,
}

/// Keys removed by one shard's share of an expiry cycle at most (bounds the pause).
const EXPIRE_PER_CYCLE: usize = 2000;

impl Db {
    /// An empty store with `shards` independently locked shards (1 for one thread).
    pub fn new(shards: usize) -> Arc<Db> {
        Arc::new(Db {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            hasher: RandomState::new(),
            next_client: AtomicU64::new(1),
            clients: AtomicU64::new(0),
        })
    }

    /// A new connection's CLIENT ID (unique over the store's engines).
    pub(crate) fn new_client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// The shard index of `key`.
    fn shard_of(&self, key: &[u8]) -> usize {
        if self.shards.len() == 1 {
            0
        } else {
            (self.hasher.hash_one(key) % self.shards.len() as u64) as usize
        }
    }

    /// The SCAN order of `key` (a hash, stable while the process runs).
    pub(crate) fn scan_order(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Locks shard `i`.
    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // A poisoned shard only means a handler panicked mid-command; the map itself
        // is still a valid map.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Locks the shards of `keys`, in index order.
    pub(crate) fn lock_keys<'a>(&'a self, keys: impl Iterator<Item = &'a [u8]>) -> Keys<'a> {
        // The common case, every key in one shard, allocates nothing.
        let mut first = None;
        let mut others = Vec::new();
        for i in keys.map(|k| self.shard_of(k)) {
            match first {
                None => first = Some(i),
                Some(f) if f == i => {}
                Some(_) => others.push(i),
            }
        }
        let now = Cell::new(0);
        let Some(first) = first else {
            return Keys {
                db: self,
                one: None,
                all: Vec::new(),
                now,
            };
        };
        if others.is_empty() {
            return Keys {
                db: self,
                one: Some((first, self.lock(first))),
                all: Vec::new(),
                now,
            };
        }
        others.push(first);
        others.sort_unstable();
        others.dedup();
        Keys {
            db: self,
            one: None,
            all: others.into_iter().map(|i| (i, self.lock(i))).collect(),
            now,
        }
    }

    /// Locks every shard, in index order.
    pub(crate) fn lock_all(&self) -> Keys<'_> {
        Keys {
            db: self,
            one: None,
            all: (0..self.shards.len()).map(|i| (i, self.lock(i))).collect(),
            now: Cell::new(0),
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).len()).sum()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every key.
    pub fn clear(&self) {
        let mut keys = self.lock_all();
        drop(keys.flush());
    }

    /// Removes keys whose deadline has passed (at most a few thousand per shard per
    /// call, so a cycle never stalls the engines for long); returns how many.
    pub fn expire_cycle(&self) -> usize {
        let now = now_ms();
        (0..self.shards.len())
            .map(|i| self.lock(i).expire_due(now, EXPIRE_PER_CYCLE))
            .sum()
    }

    /// Runs [`Db::expire_cycle`] every `every` on a background thread, which ends
    /// when the store is dropped.
    pub fn start_active_expiry(self: &Arc<Db>, every: Duration) -> std::io::Result<()> {
        let weak: Weak<Db> = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("greenfd-resp-expiry".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    match weak.upgrade() {
                        Some(db) => {
                            db.expire_cycle();
                        }
                        None => return,
                    }
                }
            })?;
        Ok(())
    }
}

/// The shards one command holds, and the time it runs at.
pub(crate) struct Keys<'a> {
    /// The store.
    pub(crate) db: &'a Db,
    /// The one shard of a single-shard command.
    one: Option<(usize, MutexGuard<'a, Shard>)>,
    /// The shards of a multi-shard command (sorted by index), or all of them.
    all: Vec<(usize, MutexGuard<'a, Shard>)>,
    /// The command's clock (ms since the epoch), read on first use (0: not yet), so
    /// a command on keys without deadlines never reads the clock.
    now: Cell<u64>,
}

/// What a command's key was in a shard that is not locked (a bug, never input).
const UNLOCKED: &str = "key outside the command's declared keys";

impl<'a> Keys<'a> {
    /// The command's instant: one for all its keys.
    pub(crate) fn now(&self) -> u64 {
        if self.now.get() == 0 {
            self.now.set(now_ms());
        }
        self.now.get()
    }

    /// The locked shard holding `key`, or `None` (a bug in a command's key spec).
    pub(crate) fn shard(&mut self, key: &[u8]) -> Option<&mut Shard> {
        let i = self.db.shard_of(key);
        if let Some((j, guard)) = self.one.as_mut()
            && *j == i
        {
            return Some(&mut **guard);
        }
        if self.all.len() == self.db.shards.len() {
            return self.all.get_mut(i).map(|(_, g)| &mut **g);
        }
        let at = self.all.binary_search_by_key(&i, |(j, _)| *j).ok()?;
        Some(&mut *self.all[at].1)
    }

    /// The live entry of `key`.
    pub(crate) fn get(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let volatile = self.shard(key)?.volatile() > 0;
        let now = if volatile { self.now() } else { 0 };
        self.shard(key)?.get(key, now)
    }

    /// Stores a value, replacing any entry (and its deadline, unless kept).
    pub(crate) fn insert(&mut self, key: &[u8], value: Value, expires: Option<u64>) {
        match self.shard(key) {
            Some(s) => s.insert(key, value, expires),
            None => tracing::error!("{UNLOCKED}"),
        }
    }

    /// Removes a key; returns its entry if it was live.
    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let entry = self.shard(key)?.remove(key)?;
        let live = entry.expires.is_none_or(|t| t > self.now());
        live.then_some(entry)
    }

    /// Changes a live key's deadline.
    pub(crate) fn set_expiry(&mut self, key: &[u8], expires: Option<u64>) {
        if let Some(s) = self.shard(key) {
            s.set_expiry(key, expires);
        }
    }

    /// Removes `key` if its collection became empty.
    pub(crate) fn drop_if_empty(&mut self, key: &[u8]) {
        if let Some(s) = self.shard(key) {
            s.drop_if_empty(key);
        }
    }

    /// Every locked shard.
    pub(crate) fn shards(&mut self) -> impl Iterator<Item = &mut Shard> {
        self.one
            .iter_mut()
            .map(|(_, g)| &mut **g)
            .chain(self.all.iter_mut().map(|(_, g)| &mut **g))
    }

    /// Empties every locked shard; returns the old contents (drop them where the
    /// cost belongs: here for SYNC, on another thread for ASYNC).
    pub(crate) fn flush(&mut self) -> Vec<Shard> {
        self.shards().map(Shard::take).collect()
    }
}
