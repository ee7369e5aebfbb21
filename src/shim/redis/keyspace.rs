//! The sixteen databases in memory: keys, values, expiry times, and the record of what changed
//! since the last commit to redb ([`super::storage`]).
//!
//! Every database is a B-tree ordered by a 63-bit hash of the key (the standard library's SipHash with its fixed keys) and
//! then by the key's bytes. The hash order is what `SCAN` walks: a cursor is the hash position to
//! resume from, so a key present for a whole iteration is returned exactly once however the
//! database changes in between, and equal hashes only cost a byte comparison (no hash-flooding
//! slowdown). Keys with a time to live are also in an index ordered by expiry time, so the
//! active expiry sweep finds the expired ones without scanning, and `INFO`'s `avg_ttl` is exact.
//!
//! Expiry times are absolute milliseconds since the Unix epoch. A key whose time has come is
//! gone for every command (lazy expiry: the lookup deletes it) and is deleted by the sweep
//! within about 100 ms if nobody asks.
//!
//! Everything here runs under the store's one lock; nothing blocks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

use bytes::Bytes;

/// How many databases there are (`SELECT 0` to `SELECT 15`).
pub const DATABASES: usize = 16;

/// A key with its hash position (what `SCAN` orders by).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    position: u64,
    bytes: Bytes,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.position);
    }
}

impl Key {
    /// A key for `bytes`, sharing them (for look-ups).
    pub fn new(bytes: Bytes) -> Key {
        Key { position: position(&bytes), bytes }
    }

    /// A key that owns a copy of `bytes` (for storing: never keep a request buffer alive).
    pub fn owned(bytes: &[u8]) -> Key {
        Key::new(Bytes::copy_from_slice(bytes))
    }

    /// The smallest key at `position` (where a `SCAN` cursor resumes).
    pub fn at(position: u64) -> Key {
        Key { position, bytes: Bytes::new() }
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn position(&self) -> u64 {
        self.position
    }
}

/// The key's position: a stable 63-bit hash (so cursors fit below 2^63 and `0` can end a scan).
fn position(bytes: &[u8]) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish() >> 1
}

/// A value of one of the supported types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(Bytes),
    List(VecDeque<Bytes>),
    Set(HashSet<Bytes>),
    Hash(HashMap<Bytes, Bytes>),
}

impl Value {
    /// The name `TYPE` answers.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Set(_) => "set",
            Value::Hash(_) => "hash",
        }
    }
}

/// A stored value and its expiry time (ms since the epoch; 0 = none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Value,
    pub expires_at: u64,
}

impl Entry {
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now
    }
}

/// One database.
#[derive(Debug, Default)]
pub struct Db {
    pub map: BTreeMap<Key, Entry>,
    /// `(expires_at, key)` for every key with a time to live.
    pub expires: BTreeSet<(u64, Key)>,
    /// The sum of the `expires_at` in `expires` (for `avg_ttl`).
    expires_sum: u128,
}

impl Db {
    fn index(&mut self, key: &Key, old: u64, new: u64) {
        if old == new {
            return;
        }
        if old != 0 {
            self.expires.remove(&(old, key.clone()));
            self.expires_sum -= u128::from(old);
        }
        if new != 0 {
            self.expires.insert((new, key.clone()));
            self.expires_sum += u128::from(new);
        }
    }

    /// The average remaining time to live in ms of the keys that have one (0 if none).
    pub fn avg_ttl(&self, now: u64) -> u64 {
        let n = self.expires.len() as u128;
        if n == 0 {
            return 0;
        }
        u64::try_from((self.expires_sum / n).saturating_sub(u128::from(now))).unwrap_or(u64::MAX)
    }
}

/// What changed since the last commit: the keys to write (their current value, or a delete),
/// and the databases emptied before them.
#[derive(Debug, Default)]
pub struct Dirty {
    pub keys: HashSet<(u8, Key)>,
    /// Bit `n`: database `n` was emptied (`FLUSHDB`/`FLUSHALL`); clear its table first.
    pub cleared: u16,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.cleared == 0
    }

    /// Takes back a batch whose commit failed (newer changes to the same keys are already here).
    pub fn merge(&mut self, older: Dirty) {
        self.cleared |= older.cleared;
        self.keys.extend(older.keys);
    }
}

/// Counters `INFO` reports.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyspaceStats {
    pub hits: u64,
    pub misses: u64,
    pub expired: u64,
}

/// All sixteen databases and the bookkeeping around them.
#[derive(Debug)]
pub struct Keyspace {
    pub dbs: Vec<Db>,
    dirty: Dirty,
    /// Whether changes are recorded for a commit (false in memory-only mode).
    track: bool,
    /// The commit generation that changes made now belong to.
    generation: u64,
    /// Bumped by every change (a command compares before and after to know if it wrote).
    changes: u64,
    pub stats: KeyspaceStats,
    /// Set while the last commit failed: commands that write are refused meanwhile.
    pub persist_error: Option<String>,
}

impl Keyspace {
    pub fn new(track: bool) -> Keyspace {
        Keyspace {
            dbs: (0..DATABASES).map(|_| Db::default()).collect(),
            dirty: Dirty::default(),
            track,
            generation: 1,
            changes: 0,
            stats: KeyspaceStats::default(),
            persist_error: None,
        }
    }

    /// The generation changes made now will be committed with.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A counter that moves whenever anything changes.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// How many keys wait for the next commit.
    pub fn pending(&self) -> usize {
        self.dirty.keys.len()
    }

    /// Hands the changes so far to a commit, which will be generation [`Self::generation`]
    /// (returned with them); later changes belong to the next one.
    pub fn take_dirty(&mut self) -> (u64, Dirty) {
        let generation = self.generation;
        self.generation += 1;
        (generation, std::mem::take(&mut self.dirty))
    }

    /// Takes back the changes of a commit that failed.
    pub fn restore_dirty(&mut self, older: Dirty) {
        self.dirty.merge(older);
    }

    /// Records that `key` of `db` changed (its current state is what the next commit writes).
    pub fn mark(&mut self, db: usize, key: &Key) {
        self.changes += 1;
        if self.track {
            self.dirty.keys.insert((db as u8, key.clone()));
        }
    }

    /// The live entry of `key`, deleting it first if it has expired (lazy expiry).
    pub fn lookup(&mut self, db: usize, key: &Key, now: u64) -> Option<&mut Entry> {
        let expired = self.dbs[db].map.get(key).is_some_and(|e| e.is_expired(now));
        if expired {
            self.remove(db, key);
            self.stats.expired += 1;
        }
        self.dbs[db].map.get_mut(key)
    }

    /// [`Self::lookup`] that counts a keyspace hit or miss (for commands that read values).
    pub fn read(&mut self, db: usize, key: &Key, now: u64) -> Option<&mut Entry> {
        let found = self.lookup(db, key, now).is_some();
        if found {
            self.stats.hits += 1;
        } else {
            self.stats.misses += 1;
        }
        self.dbs[db].map.get_mut(key)
    }

    /// Stores `value` under `key` with expiry `expires_at` (0 = none), replacing what was there.
    pub fn insert(&mut self, db: usize, key: Key, value: Value, expires_at: u64) {
        let d = &mut self.dbs[db];
        let old = d.map.get(&key).map_or(0, |e| e.expires_at);
        d.index(&key, old, expires_at);
        d.map.insert(key.clone(), Entry { value, expires_at });
        self.mark(db, &key);
    }

    /// Deletes `key`; returns what it held (expired or not).
    pub fn remove(&mut self, db: usize, key: &Key) -> Option<Entry> {
        let d = &mut self.dbs[db];
        let entry = d.map.remove(key)?;
        d.index(key, entry.expires_at, 0);
        self.mark(db, key);
        Some(entry)
    }

    /// Sets (or with 0 removes) the expiry of an existing key; false if there is no such key.
    pub fn set_expiry(&mut self, db: usize, key: &Key, expires_at: u64) -> bool {
        let d = &mut self.dbs[db];
        let Some(entry) = d.map.get_mut(key) else { return false };
        let old = std::mem::replace(&mut entry.expires_at, expires_at);
        d.index(key, old, expires_at);
        self.mark(db, key);
        true
    }

    /// Empties database `db`; returns its old contents (for the caller to drop outside the lock).
    pub fn clear(&mut self, db: usize) -> Db {
        self.changes += 1;
        if self.track {
            self.dirty.keys.retain(|(d, _)| usize::from(*d) != db);
            self.dirty.cleared |= 1 << db;
        }
        std::mem::take(&mut self.dbs[db])
    }

    /// Deletes up to `limit` expired keys (the active sweep); returns how many.
    pub fn sweep(&mut self, now: u64, limit: usize) -> usize {
        let mut removed = 0;
        for db in 0..DATABASES {
            while removed < limit {
                let Some((at, key)) = self.dbs[db].expires.first().cloned() else { break };
                if at > now {
                    break;
                }
                self.remove(db, &key);
                self.stats.expired += 1;
                removed += 1;
            }
        }
        removed
    }

    /// Puts an entry read from storage back (no change is recorded).
    pub fn load(&mut self, db: usize, key: Key, entry: Entry) {
        let d = &mut self.dbs[db];
        d.index(&key, 0, entry.expires_at);
        d.map.insert(key, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::owned(s.as_bytes())
    }

    #[test]
    fn expiry_is_lazy_and_swept() {
        let mut ks = Keyspace::new(true);
        ks.insert(0, key("a"), Value::Str(Bytes::from_static(b"1")), 1_000);
        ks.insert(0, key("b"), Value::Str(Bytes::from_static(b"2")), 2_000);
        ks.insert(0, key("c"), Value::Str(Bytes::from_static(b"3")), 0);
        assert_eq!(ks.dbs[0].avg_ttl(500), 1000);
        assert!(ks.lookup(0, &key("a"), 999).is_some());
        assert!(ks.lookup(0, &key("a"), 1_000).is_none(), "expired at its time");
        assert_eq!(ks.dbs[0].map.len(), 2);
        assert_eq!(ks.sweep(5_000, 10), 1);
        assert_eq!(ks.dbs[0].map.len(), 1);
        assert!(ks.dbs[0].expires.is_empty());
        assert_eq!(ks.stats.expired, 2);
        assert_eq!(ks.dbs[0].avg_ttl(0), 0);
    }

    #[test]
    fn changes_are_recorded_per_generation_and_restored_after_a_failed_commit() {
        let mut ks = Keyspace::new(true);
        ks.insert(0, key("a"), Value::Str(Bytes::new()), 0);
        ks.insert(3, key("b"), Value::Str(Bytes::new()), 0);
        let (generation, dirty) = ks.take_dirty();
        assert_eq!(generation, 1);
        assert_eq!(dirty.keys.len(), 2);
        assert_eq!(ks.generation(), 2);
        ks.clear(3);
        ks.insert(0, key("c"), Value::Str(Bytes::new()), 0);
        ks.restore_dirty(dirty);
        let (_, dirty) = ks.take_dirty();
        assert_eq!(dirty.cleared, 1 << 3);
        assert_eq!(dirty.keys.len(), 3);
        // Memory-only: nothing is recorded.
        let mut ks = Keyspace::new(false);
        ks.insert(0, key("a"), Value::Str(Bytes::new()), 0);
        assert!(ks.take_dirty().1.is_empty());
        assert_eq!(ks.changes(), 1);
    }

    #[test]
    fn positions_are_stable_and_below_2_63() {
        assert_eq!(key("abc").position(), key("abc").position());
        assert_ne!(key("abc").position(), key("abd").position());
        assert!((0..1000).all(|i| key(&i.to_string()).position() < 1 << 63));
        assert!(Key::at(5) < key("x") || Key::at(5).position() > key("x").position());
    }
}
