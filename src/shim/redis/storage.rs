//! Where the keys live: the [`Keyspace`] in memory, behind one lock, and — with a data
//! directory — a copy in one redb file (`<data-dir>/redis.redb`, mode 0600, directory 0700)
//! that is loaded at start and kept up to date by group commits.
//!
//! # Tables
//!
//! | table | key → value |
//! |---|---|
//! | `db0` … `db15` | key bytes → a record: type byte (0 string, 1 list, 2 set, 3 hash), expiry time (u64 LE, ms since the epoch, 0 = none), then the value (a string's bytes; for the others each element, or field then value, as a u64 LE length and its bytes) |
//! | `meta` | `"format"` → 1 |
//!
//! # Writes: group commit
//!
//! Commands change the keyspace in memory and record which keys they changed. One writer
//! thread takes everything recorded so far (one *generation*), reads those keys' current values
//! under the lock (a string value is shared, not copied), then writes them (or deletes them) in
//! one redb write transaction committed with immediate durability (fsync), outside the lock. A
//! `FLUSHDB`/`FLUSHALL` empties the database's table first in the same transaction.
//!
//! It commits when asked and at least every `commit_interval` (1 s) while anything is pending.
//! With [`Fsync::Always`] (the default) a connection that changed something asks for a commit
//! and sends its replies only once that generation is on disk: an acknowledged write survives
//! a crash, and concurrent writers share each fsync (a pipeline waits once, after its last
//! command). With [`Fsync::EverySec`] replies go out at once and a crash loses at most the last
//! second of writes (Redis's `appendfsync everysec`). Reads never wait.
//!
//! A commit that fails (disk full, I/O error) is retried at the next interval with everything
//! since; meanwhile the store reports the error ([`Keyspace::persist_error`]): commands that
//! write are refused with `-MISCONF`, and connections waiting for that generation are closed
//! without their replies (their writes stay in memory and are retried).
//!
//! Without a data directory ([`Store::memory`]) nothing is written anywhere and nothing waits.

use std::fs::{DirBuilder, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use tokio::sync::watch;

use super::keyspace::{DATABASES, Dirty, Entry, Key, Keyspace, Value};

/// The store's file name inside the data directory.
pub const DB_FILE: &str = "redis.redb";
/// The record format this code writes and reads.
const FORMAT: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// One table per database, `db0` to `db15`.
pub const TABLES: [TableDefinition<&[u8], &[u8]>; DATABASES] = [
    TableDefinition::new("db0"),
    TableDefinition::new("db1"),
    TableDefinition::new("db2"),
    TableDefinition::new("db3"),
    TableDefinition::new("db4"),
    TableDefinition::new("db5"),
    TableDefinition::new("db6"),
    TableDefinition::new("db7"),
    TableDefinition::new("db8"),
    TableDefinition::new("db9"),
    TableDefinition::new("db10"),
    TableDefinition::new("db11"),
    TableDefinition::new("db12"),
    TableDefinition::new("db13"),
    TableDefinition::new("db14"),
    TableDefinition::new("db15"),
];

/// When a write is on disk relative to its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fsync {
    /// The reply waits for the commit (group-committed): an acknowledged write survives a crash.
    Always,
    /// Replies at once; committed within a second (a crash loses at most that second).
    #[value(name = "everysec")]
    EverySec,
}

impl Fsync {
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
        }
    }
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoreError(String);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How the commits are going, for `INFO persistence` and for waiters.
#[derive(Debug, Clone, Default)]
pub struct Durable {
    /// The last generation on disk (everything changed up to it is).
    pub committed: u64,
    /// The last generation whose commit failed.
    pub failed: u64,
    /// Commits that wrote something.
    pub commits: u64,
    /// When the last commit succeeded (ms since the epoch; the load at start counts).
    pub last_success_ms: u64,
    /// Keys written by the last commit.
    pub last_keys: u64,
    /// How long the last commit took, in µs.
    pub last_micros: u64,
    /// The last failure, while it lasts.
    pub error: Option<String>,
}

#[derive(Debug, Default)]
struct Wake {
    requested: bool,
    stop: bool,
}

struct Persister {
    path: PathBuf,
    fsync: Fsync,
    wake: Arc<(Mutex<Wake>, Condvar)>,
    durable: watch::Receiver<Durable>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Persister {
    fn request(&self) {
        let (state, cv) = &*self.wake;
        lock(state).requested = true;
        cv.notify_one();
    }

    fn stop(&self) {
        let (state, cv) = &*self.wake;
        lock(state).stop = true;
        cv.notify_one();
        if let Some(writer) = lock(&self.writer).take()
            && writer.join().is_err()
        {
            tracing::error!("redis shim: the storage writer panicked");
        }
    }
}

/// The keyspace and, with a data directory, its redb copy.
pub struct Store {
    keyspace: Arc<Mutex<Keyspace>>,
    persist: Option<Persister>,
}

impl Store {
    /// A store kept in memory only.
    pub fn memory() -> Store {
        Store { keyspace: Arc::new(Mutex::new(Keyspace::new(false))), persist: None }
    }

    /// Opens (or creates) `<dir>/redis.redb`, loads every live key, deletes the expired ones
    /// from the file, and starts the writer.
    pub fn open(dir: &Path, fsync: Fsync, commit_interval: Duration) -> Result<Store, StoreError> {
        create_dir(dir)?;
        let path = dir.join(DB_FILE);
        let db = open_file(&path)?;
        let fail = |what: &str, e: &dyn std::fmt::Display| StoreError(format!("{}: {what}: {e}", path.display()));
        let mut keyspace = Keyspace::new(true);
        let now = now_ms();
        let mut expired: Vec<(usize, Vec<u8>)> = Vec::new();
        {
            let txn = db.begin_write().map_err(|e| fail("opening", &e))?;
            {
                let mut meta = txn.open_table(META).map_err(|e| fail("opening", &e))?;
                let format = meta.get("format").map_err(|e| fail("reading", &e))?.map(|v| v.value());
                match format {
                    None => {
                        meta.insert("format", FORMAT).map_err(|e| fail("writing", &e))?;
                    }
                    Some(FORMAT) => {}
                    Some(other) => {
                        return Err(fail("format", &format!("version {other} is not one this acgs reads ({FORMAT})")));
                    }
                }
            }
            for (n, table) in TABLES.iter().enumerate() {
                let table = txn.open_table(*table).map_err(|e| fail("opening", &e))?;
                for row in table.iter().map_err(|e| fail("reading", &e))? {
                    let (key, record) = row.map_err(|e| fail("reading", &e))?;
                    let entry = decode(record.value()).ok_or_else(|| {
                        fail("reading", &format!("db{n}: the record of key {:?} is damaged", show(key.value())))
                    })?;
                    if entry.is_expired(now) {
                        expired.push((n, key.value().to_vec()));
                    } else {
                        keyspace.load(n, Key::owned(key.value()), entry);
                    }
                }
            }
            for (n, key) in &expired {
                let mut table = txn.open_table(TABLES[*n]).map_err(|e| fail("opening", &e))?;
                table.remove(key.as_slice()).map_err(|e| fail("writing", &e))?;
            }
            txn.commit().map_err(|e| fail("committing", &e))?;
        }
        let keys: usize = keyspace.dbs.iter().map(|d| d.map.len()).sum();
        tracing::info!(path = %path.display(), keys, expired = expired.len(), "redis shim: store loaded");
        keyspace.stats.expired = expired.len() as u64;

        let keyspace = Arc::new(Mutex::new(keyspace));
        let wake = Arc::new((Mutex::new(Wake::default()), Condvar::new()));
        let (tx, rx) = watch::channel(Durable { last_success_ms: now, ..Durable::default() });
        let writer = {
            let (keyspace, wake) = (keyspace.clone(), wake.clone());
            let path = path.clone();
            std::thread::Builder::new()
                .name("redis-shim-writer".into())
                .spawn(move || run_writer(&db, &path, &keyspace, &wake, &tx, commit_interval))
                .map_err(|e| StoreError(format!("starting the storage writer: {e}")))?
        };
        let persist = Persister { path, fsync, wake, durable: rx, writer: Mutex::new(Some(writer)) };
        Ok(Store { keyspace, persist: Some(persist) })
    }

    /// The keyspace, locked.
    pub fn lock(&self) -> MutexGuard<'_, Keyspace> {
        lock(&self.keyspace)
    }

    /// The file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        self.persist.as_ref().map(|p| p.path.as_path())
    }

    /// The fsync policy, when there is a file.
    pub fn fsync(&self) -> Option<Fsync> {
        self.persist.as_ref().map(|p| p.fsync)
    }

    /// Whether replies to writes wait for their commit.
    pub fn replies_wait(&self) -> bool {
        self.fsync() == Some(Fsync::Always)
    }

    /// How the commits are going (None in memory-only mode).
    pub fn durable(&self) -> Option<Durable> {
        self.persist.as_ref().map(|p| p.durable.borrow().clone())
    }

    /// Asks for a commit now and waits until `generation` is on disk; `Err` if its commit failed
    /// or the store closed. Immediate in memory-only mode.
    pub async fn wait_durable(&self, generation: u64) -> Result<(), String> {
        let Some(p) = &self.persist else { return Ok(()) };
        let mut rx = p.durable.clone();
        if rx.borrow().committed >= generation {
            return Ok(());
        }
        p.request();
        let durable = rx
            .wait_for(|d| d.committed >= generation || d.failed >= generation)
            .await
            .map_err(|_| "the store has closed".to_string())?;
        if durable.committed >= generation {
            Ok(())
        } else {
            Err(durable.error.clone().unwrap_or_else(|| "the commit failed".to_string()))
        }
    }

    /// Commits everything changed so far and waits for it (`SAVE`).
    pub async fn save(&self) -> Result<(), String> {
        let generation = self.lock().generation();
        self.wait_durable(generation).await
    }

    /// Asks for a commit soon without waiting (`BGSAVE`).
    pub fn request_commit(&self) {
        if let Some(p) = &self.persist {
            p.request();
        }
    }

    /// Commits what is pending and stops the writer (blocking; call once at shutdown).
    pub fn close(&self) {
        if let Some(p) = &self.persist {
            p.stop();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

/// A key's state as read under the lock, encoded outside it.
enum Snapshot {
    Absent,
    Str(u64, Bytes),
    Encoded(Vec<u8>),
}

impl Snapshot {
    fn of(entry: Option<&Entry>) -> Snapshot {
        match entry {
            None => Snapshot::Absent,
            Some(Entry { value: Value::Str(s), expires_at }) => Snapshot::Str(*expires_at, s.clone()),
            Some(entry) => Snapshot::Encoded(encode(entry)),
        }
    }
}

fn run_writer(
    db: &Database,
    path: &Path,
    keyspace: &Mutex<Keyspace>,
    wake: &(Mutex<Wake>, Condvar),
    tx: &watch::Sender<Durable>,
    interval: Duration,
) {
    loop {
        let stop = {
            let (state, cv) = wake;
            let mut w = lock(state);
            if !w.requested && !w.stop {
                w = cv.wait_timeout(w, interval).unwrap_or_else(PoisonError::into_inner).0;
            }
            w.requested = false;
            w.stop
        };
        commit_pending(db, path, keyspace, tx);
        if stop {
            break;
        }
    }
}

/// One group commit of everything pending.
fn commit_pending(db: &Database, path: &Path, keyspace: &Mutex<Keyspace>, tx: &watch::Sender<Durable>) {
    let (generation, dirty, records) = {
        let mut ks = lock(keyspace);
        let (generation, dirty) = ks.take_dirty();
        let records: Vec<(u8, Key, Snapshot)> = dirty
            .keys
            .iter()
            .map(|(n, key)| (*n, key.clone(), Snapshot::of(ks.dbs[usize::from(*n)].map.get(key))))
            .collect();
        (generation, dirty, records)
    };
    if dirty.is_empty() {
        tx.send_modify(|d| d.committed = generation);
        return;
    }
    let started = std::time::Instant::now();
    match write(db, &dirty, &records) {
        Ok(()) => {
            let recovered = {
                let mut ks = lock(keyspace);
                ks.persist_error.take().is_some()
            };
            if recovered {
                tracing::info!(path = %path.display(), "redis shim: commits succeed again");
            }
            tx.send_modify(|d| {
                d.committed = generation;
                d.commits += 1;
                d.last_success_ms = now_ms();
                d.last_keys = records.len() as u64;
                d.last_micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                d.error = None;
            });
        }
        Err(e) => {
            let message = format!("{}: {e}", path.display());
            tracing::error!(error = %message, "redis shim: commit failed; writes are refused until one succeeds");
            {
                let mut ks = lock(keyspace);
                ks.restore_dirty(dirty);
                ks.persist_error = Some(message.clone());
            }
            tx.send_modify(|d| {
                d.failed = generation;
                d.error = Some(message);
            });
        }
    }
}

fn write(db: &Database, dirty: &Dirty, records: &[(u8, Key, Snapshot)]) -> Result<(), String> {
    fn err(e: impl Into<redb::Error>) -> String {
        e.into().to_string()
    }
    let mut txn = db.begin_write().map_err(err)?;
    txn.set_durability(Durability::Immediate);
    for (n, table) in TABLES.iter().enumerate() {
        if dirty.cleared & (1 << n) != 0 {
            txn.delete_table(*table).map_err(err)?;
        }
    }
    let mut tables = Vec::with_capacity(DATABASES);
    for table in TABLES {
        tables.push(txn.open_table(table).map_err(err)?);
    }
    let mut record = Vec::new();
    for (n, key, snapshot) in records {
        let table = &mut tables[usize::from(*n)];
        match snapshot {
            Snapshot::Absent => {
                table.remove(key.bytes().as_ref()).map_err(err)?;
            }
            Snapshot::Str(expires_at, s) => {
                record.clear();
                record.push(0);
                record.extend_from_slice(&expires_at.to_le_bytes());
                record.extend_from_slice(s);
                table.insert(key.bytes().as_ref(), record.as_slice()).map_err(err)?;
            }
            Snapshot::Encoded(bytes) => {
                table.insert(key.bytes().as_ref(), bytes.as_slice()).map_err(err)?;
            }
        }
    }
    drop(tables);
    txn.commit().map_err(err)?;
    Ok(())
}

/// A record for `entry` (see the module docs).
pub fn encode(entry: &Entry) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    let mut out = Vec::new();
    let kind = match &entry.value {
        Value::Str(_) => 0,
        Value::List(_) => 1,
        Value::Set(_) => 2,
        Value::Hash(_) => 3,
    };
    out.push(kind);
    out.extend_from_slice(&entry.expires_at.to_le_bytes());
    match &entry.value {
        Value::Str(s) => out.extend_from_slice(s),
        Value::List(items) => items.iter().for_each(|i| put(&mut out, i)),
        Value::Set(items) => items.iter().for_each(|i| put(&mut out, i)),
        Value::Hash(fields) => fields.iter().for_each(|(f, v)| {
            put(&mut out, f);
            put(&mut out, v);
        }),
    }
    out
}

/// The entry in a record; `None` if it is not one this code wrote.
pub fn decode(record: &[u8]) -> Option<Entry> {
    fn items(mut rest: &[u8]) -> Option<Vec<Bytes>> {
        let mut out = Vec::new();
        while !rest.is_empty() {
            let (len, tail) = rest.split_first_chunk::<8>()?;
            let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
            if len > tail.len() {
                return None;
            }
            out.push(Bytes::copy_from_slice(&tail[..len]));
            rest = &tail[len..];
        }
        Some(out)
    }
    let (&kind, rest) = record.split_first()?;
    let (expires, payload) = rest.split_first_chunk::<8>()?;
    let expires_at = u64::from_le_bytes(*expires);
    let value = match kind {
        0 => Value::Str(Bytes::copy_from_slice(payload)),
        1 => Value::List(items(payload)?.into()),
        2 => Value::Set(items(payload)?.into_iter().collect()),
        3 => {
            let items = items(payload)?;
            if !items.len().is_multiple_of(2) {
                return None;
            }
            let mut pairs = items.into_iter();
            let mut map = std::collections::HashMap::new();
            while let (Some(f), Some(v)) = (pairs.next(), pairs.next()) {
                map.insert(f, v);
            }
            Value::Hash(map)
        }
        _ => return None,
    };
    Some(Entry { value, expires_at })
}

/// A key for messages: printable as text, else hex.
fn show(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => s.chars().take(100).collect(),
        _ => hex::encode(&key[..key.len().min(50)]),
    }
}

/// Creates `dir` (and missing parents) with mode 0700 when it does not exist.
fn create_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| StoreError(format!("cannot create data directory {}: {e}", dir.display())))
}

/// Opens (or creates with mode 0600) the redb file.
fn open_file(path: &Path) -> Result<Database, StoreError> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let file = opts.open(path).map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
    Database::builder()
        // Everything is in memory already: the cache only serves the writes.
        .set_cache_size(64 * 1024 * 1024)
        .create_file(file)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                StoreError(format!("{} is in use by another process", path.display()))
            }
            other => StoreError(format!("cannot open {}: {other}", path.display())),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet, VecDeque};

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn records_round_trip_and_damage_is_detected() {
        let entries = [
            Entry { value: Value::Str(b("hello")), expires_at: 0 },
            Entry { value: Value::Str(Bytes::new()), expires_at: 123 },
            Entry { value: Value::List(VecDeque::from([b("a"), b(""), b("c")])), expires_at: 7 },
            Entry { value: Value::Set(HashSet::from([b("x"), b("y")])), expires_at: 0 },
            Entry { value: Value::Hash(HashMap::from([(b("f"), b("v")), (b("g"), b(""))])), expires_at: 9 },
        ];
        for entry in &entries {
            let record = encode(entry);
            assert_eq!(decode(&record).as_ref(), Some(entry));
            if !matches!(entry.value, Value::Str(_)) && record.len() > 9 {
                assert!(decode(&record[..record.len() - 1]).is_none(), "{entry:?}");
            }
        }
        assert!(decode(b"").is_none());
        assert!(decode(&[9, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
        assert!(decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255]).is_none());
    }

    #[tokio::test]
    async fn commits_survive_reopening_and_expired_keys_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), Fsync::Always, Duration::from_secs(1)).unwrap();
            let generation = {
                let mut ks = store.lock();
                ks.insert(0, Key::owned(b"kept"), Value::Str(b("v")), 0);
                ks.insert(2, Key::owned(b"soon"), Value::Str(b("v")), now_ms() + 150);
                ks.insert(5, Key::owned(b"gone"), Value::Str(b("v")), 0);
                ks.clear(5);
                ks.generation()
            };
            store.wait_durable(generation).await.unwrap();
            let durable = store.durable().unwrap();
            assert!(durable.committed >= generation && durable.commits >= 1, "{durable:?}");
            // A second store on the same directory is refused while this one runs.
            let err = Store::open(dir.path(), Fsync::Always, Duration::from_secs(1)).err().unwrap();
            assert!(err.to_string().contains("in use"), "{err}");
            store.close();
        }
        std::thread::sleep(Duration::from_millis(200));
        let store = Store::open(dir.path(), Fsync::EverySec, Duration::from_secs(1)).unwrap();
        let mut ks = store.lock();
        let now = now_ms();
        assert!(ks.lookup(0, &Key::owned(b"kept"), now).is_some());
        assert!(ks.dbs[2].map.is_empty(), "expired while stopped");
        assert!(ks.dbs[5].map.is_empty());
        assert_eq!(ks.stats.expired, 1);
    }
}
