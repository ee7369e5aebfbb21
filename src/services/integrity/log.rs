//! The append-only audit log: RFC 9162 Merkle tree over audit events in one redb file
//! (`<data_dir>/integrity.redb`, mode 0600).
//!
//! # Storage
//!
//! | table | key → value |
//! |---|---|
//! | `entries` | index → the exact leaf bytes (the event's canonical JSON) |
//! | `event_ids` | event id → index (appends are deduplicated by event id) |
//! | `subjects` | subject → indices (multimap) |
//! | `nodes` | `level << 56 \| index` → hash of that complete subtree (level 0 = leaf hash) |
//! | `meta` | `"size"` → number of entries |
//!
//! Every complete subtree's hash is stored when it completes, so any root or proof of any tree
//! size is O(log n) look-ups, and nothing is ever rewritten.
//!
//! # Writes
//!
//! One writer thread owns all writes. [`Log::append`] and [`Log::append_batch`] prepare the leaf
//! (canonical JSON, leaf hash) on the caller's task, send it on a channel and wait; the writer
//! drains everything queued (up to [`MAX_GROUP`] events), applies it in one redb write transaction
//! committed with immediate durability (fsync), and only then answers each caller. An event whose
//! id is already in the log (or earlier in the same group) appends nothing: the caller gets the
//! existing index with `duplicate: true`. If a commit fails, every caller of that group gets the
//! error and nothing of the group is in the log.
//!
//! # Reads
//!
//! Reads are short B-tree look-ups on a redb read snapshot, run inline on the caller's thread (as
//! the kernel's SQLite reads are); they never wait for the writer. Each call reads one snapshot,
//! so a proof and the size it is checked against always agree.
//!
//! Dropping the last clone of a [`Log`] closes the channel, lets the writer finish what is queued
//! and waits for it, then closes the file.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, MultimapTableDefinition, ReadOnlyTable, ReadTransaction, ReadableTable, ReadableTableMetadata,
    TableDefinition, WriteTransaction,
};
use tokio::sync::{mpsc, oneshot};

use super::merkle::{self, Hash, ProofError, SubtreeSource};

/// The log's file name inside the data directory.
pub const LOG_FILE: &str = "integrity.redb";
/// The most entries one read returns ([`Log::entries`], [`Log::search`]).
pub const MAX_PAGE: usize = 1000;
/// The most events one group commit takes from the queue.
pub const MAX_GROUP: usize = 16_384;
/// The longest accepted event id, subject, service, kind and actor, in bytes.
pub const MAX_FIELD: usize = 512;

/// The log's tables, public so tools (and tests) can inspect the file with redb directly.
pub const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
pub const EVENT_IDS: TableDefinition<&str, u64> = TableDefinition::new("event_ids");
pub const SUBJECTS: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("subjects");
pub const NODES: TableDefinition<u64, &[u8; 32]> = TableDefinition::new("nodes");
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SIZE_KEY: &str = "size";

/// The key of complete subtree `(level, index)` in [`NODES`].
pub fn node_key(level: u32, index: u64) -> u64 {
    (u64::from(level) << 56) | index
}

/// One audit event: the content of one log entry (defined in the kernel, where every service's
/// outbox records it).
pub use crate::kernel::audit::AuditEvent;

/// Refuses events the log will not store.
fn check(event: &AuditEvent) -> Result<(), LogError> {
    for (name, v) in [
        ("event_id", &event.event_id),
        ("service", &event.service),
        ("kind", &event.kind),
        ("subject", &event.subject),
        ("actor", &event.actor),
    ] {
        if v.len() > MAX_FIELD {
            return Err(LogError::InvalidEvent(format!("{name} is longer than {MAX_FIELD} bytes")));
        }
    }
    if event.event_id.is_empty() {
        return Err(LogError::InvalidEvent("event_id is empty".into()));
    }
    Ok(())
}

/// The outcome of one append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub index: u64,
    pub leaf_hash: Hash,
    /// The event id was already in the log; nothing was appended and `index` is the existing one.
    pub duplicate: bool,
}

/// One stored entry: its exact leaf bytes and their leaf hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    pub leaf: Vec<u8>,
    pub leaf_hash: Hash,
}

impl Entry {
    /// The event the leaf bytes encode.
    pub fn event(&self) -> Result<AuditEvent, serde_json::Error> {
        serde_json::from_slice(&self.leaf)
    }
}

/// What a full re-walk of the log found when everything matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub size: u64,
    pub root: Hash,
}

/// Log errors. The first four are the caller's mistake (4xx); the rest are ours (5xx).
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("index {index} is out of range: the tree has {size} entries")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree size {tree_size} is beyond the log, which has {size} entries")]
    TreeSizeBeyondLog { tree_size: u64, size: u64 },
    #[error("consistency proof from size {from} to the smaller size {to}")]
    FromAfterTo { from: u64, to: u64 },
    #[error("invalid audit event: {0}")]
    InvalidEvent(String),
    #[error("integrity log storage: {0}")]
    Storage(String),
    #[error("the integrity log is closed")]
    Closed,
    #[error("the integrity log is corrupt: {0}")]
    Corrupt(String),
}

impl LogError {
    /// True for the caller's mistakes (answer 4xx), false for failures of ours (5xx).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Self::IndexOutOfRange { .. }
                | Self::TreeSizeBeyondLog { .. }
                | Self::FromAfterTo { .. }
                | Self::InvalidEvent(_)
        )
    }
}

fn storage(e: impl std::fmt::Display) -> LogError {
    LogError::Storage(e.to_string())
}

/// A prepared leaf, as the writer receives it.
struct Prepared {
    event_id: String,
    subject: String,
    leaf: Vec<u8>,
    leaf_hash: Hash,
}

struct Request {
    items: Vec<Prepared>,
    reply: oneshot::Sender<Result<Vec<Appended>, LogError>>,
}

/// The append-only log. Cheap to clone; all clones share one file and one writer.
#[derive(Clone)]
pub struct Log {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    path: PathBuf,
    tx: Option<mpsc::Sender<Request>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("path", &self.inner.path).finish()
    }
}

impl Log {
    /// Open (or create) `<data_dir>/integrity.redb`.
    pub fn open(data_dir: &Path) -> Result<Log, LogError> {
        Self::open_file(&data_dir.join(LOG_FILE))
    }

    /// Open (or create) the log in exactly this file (created with mode 0600).
    pub fn open_file(path: &Path) -> Result<Log, LogError> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts.open(path).map_err(|e| storage(format!("opening {}: {e}", path.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(storage)?;
        }
        let db = Database::builder().create_file(file).map_err(|e| storage(format!("{}: {e}", path.display())))?;
        let db = Arc::new(db);
        let state = {
            let txn = db.begin_write().map_err(storage)?;
            // Create every table so reads never meet a missing one.
            txn.open_table(ENTRIES).map_err(storage)?;
            txn.open_table(EVENT_IDS).map_err(storage)?;
            txn.open_multimap_table(SUBJECTS).map_err(storage)?;
            txn.open_table(NODES).map_err(storage)?;
            txn.open_table(META).map_err(storage)?;
            txn.commit().map_err(storage)?;
            TreeState::load(&db)?
        };
        let (tx, rx) = mpsc::channel(4096);
        let writer_db = db.clone();
        let writer = std::thread::Builder::new()
            .name("integrity-log-writer".into())
            .spawn(move || run_writer(&writer_db, rx, state))
            .map_err(storage)?;
        Ok(Log { inner: Arc::new(Inner { db, path: path.to_path_buf(), tx: Some(tx), writer: Some(writer) }) })
    }

    /// The file this log lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Append one event (group-committed, durable when this returns).
    pub async fn append(&self, event: &AuditEvent) -> Result<Appended, LogError> {
        let item = prepare(event)?;
        let mut out = self.send(vec![item]).await?;
        out.pop().ok_or(LogError::Closed)
    }

    /// Append several events in order, in one commit; one [`Appended`] per event, in order.
    pub async fn append_batch(&self, events: &[AuditEvent]) -> Result<Vec<Appended>, LogError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let items = events.iter().map(prepare).collect::<Result<Vec<_>, _>>()?;
        self.send(items).await
    }

    async fn send(&self, items: Vec<Prepared>) -> Result<Vec<Appended>, LogError> {
        let tx = self.inner.tx.as_ref().ok_or(LogError::Closed)?;
        let (reply, rx) = oneshot::channel();
        tx.send(Request { items, reply }).await.map_err(|_| LogError::Closed)?;
        rx.await.map_err(|_| LogError::Closed)?
    }

    fn read(&self) -> Result<Snapshot, LogError> {
        let txn = self.inner.db.begin_read().map_err(storage)?;
        Snapshot::new(&txn)
    }

    /// The number of entries.
    pub fn size(&self) -> Result<u64, LogError> {
        Ok(self.read()?.size)
    }

    /// The current size and root, from one snapshot (what a checkpoint signs).
    pub fn head(&self) -> Result<(u64, Hash), LogError> {
        let s = self.read()?;
        let root = s.root(s.size)?;
        Ok((s.size, root))
    }

    /// Entry `index`.
    pub fn entry(&self, index: u64) -> Result<Entry, LogError> {
        let s = self.read()?;
        if index >= s.size {
            return Err(LogError::IndexOutOfRange { index, size: s.size });
        }
        s.entry(index)
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) entries from `from` on. `from` equal to the size gives
    /// an empty page; beyond it is an error.
    pub fn entries(&self, from: u64, limit: usize) -> Result<Vec<Entry>, LogError> {
        let s = self.read()?;
        if from > s.size {
            return Err(LogError::IndexOutOfRange { index: from, size: s.size });
        }
        let end = from.saturating_add(limit.min(MAX_PAGE) as u64).min(s.size);
        (from..end).map(|i| s.entry(i)).collect()
    }

    /// Up to `limit` (at most [`MAX_PAGE`]) entries about `subject`, oldest first.
    pub fn search(&self, subject: &str, limit: usize) -> Result<Vec<Entry>, LogError> {
        let s = self.read()?;
        let indices = s.subjects.get(subject).map_err(storage)?;
        let mut out = Vec::new();
        for i in indices.take(limit.min(MAX_PAGE)) {
            out.push(s.entry(i.map_err(storage)?.value())?);
        }
        Ok(out)
    }

    /// The root of the tree of the first `tree_size` entries.
    pub fn root(&self, tree_size: u64) -> Result<Hash, LogError> {
        let s = self.read()?;
        s.check_size(tree_size)?;
        s.root(tree_size)
    }

    /// The inclusion proof of entry `index` in the tree of the first `tree_size` entries.
    pub fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, LogError> {
        let s = self.read()?;
        s.check_size(tree_size)?;
        merkle::inclusion_proof(&s, index, tree_size).map_err(proof_error)
    }

    /// The consistency proof from the tree of `from` entries to the tree of `to` entries.
    pub fn consistency_proof(&self, from: u64, to: u64) -> Result<Vec<Hash>, LogError> {
        let s = self.read()?;
        if from > to {
            return Err(LogError::FromAfterTo { from, to });
        }
        s.check_size(to)?;
        merkle::consistency_proof(&s, from, to).map_err(proof_error)
    }

    /// Re-walk every stored leaf, recompute every leaf hash, every complete subtree and the root
    /// from scratch, and compare with what is stored. Any difference is [`LogError::Corrupt`]
    /// naming the first place it was found. Compare the returned root with a signed checkpoint to
    /// detect a rewrite of the whole file.
    pub fn verify_all(&self) -> Result<Verified, LogError> {
        let txn = self.inner.db.begin_read().map_err(storage)?;
        let s = Snapshot::new(&txn)?;
        let entries_len = s.entries.len().map_err(storage)?;
        if entries_len != s.size {
            return Err(LogError::Corrupt(format!("{entries_len} entries stored but the size is {}", s.size)));
        }
        let mut tree = TreeState::default();
        for (expected, row) in (0u64..).zip(s.entries.iter().map_err(storage)?) {
            let (k, v) = row.map_err(storage)?;
            if k.value() != expected {
                return Err(LogError::Corrupt(format!("entry {expected} is missing")));
            }
            let computed = merkle::leaf_hash(v.value());
            let mut mismatch = None;
            tree.push(computed, |level, idx, hash| {
                if mismatch.is_some() {
                    return Ok(());
                }
                let stored = s.node(level, idx)?;
                if stored != *hash {
                    mismatch = Some(if level == 0 {
                        format!("entry {idx}: its leaf bytes hash to {} but the tree holds {}", hex(hash), hex(&stored))
                    } else {
                        format!(
                            "subtree (level {level}, index {idx}) recomputes to {} but {} is stored",
                            hex(hash),
                            hex(&stored)
                        )
                    });
                }
                Ok(())
            })?;
            if let Some(m) = mismatch {
                return Err(LogError::Corrupt(m));
            }
        }
        let root = tree.root();
        if tree.size != s.size {
            return Err(LogError::Corrupt(format!("{} entries walked but the size is {}", tree.size, s.size)));
        }
        Ok(Verified { size: s.size, root })
    }
}

fn hex(h: &Hash) -> String {
    hex::encode(h)
}

fn proof_error(e: ProofError<LogError>) -> LogError {
    match e {
        ProofError::IndexOutOfRange { index, size } => LogError::IndexOutOfRange { index, size },
        ProofError::FromAfterTo { from, to } => LogError::FromAfterTo { from, to },
        ProofError::Source(e) => e,
    }
}

fn prepare(event: &AuditEvent) -> Result<Prepared, LogError> {
    check(event)?;
    let leaf = event.leaf_bytes().map_err(|e| LogError::InvalidEvent(e.to_string()))?;
    let leaf_hash = merkle::leaf_hash(&leaf);
    Ok(Prepared { event_id: event.event_id.clone(), subject: event.subject.clone(), leaf, leaf_hash })
}

/// One read snapshot with its tables open.
struct Snapshot {
    size: u64,
    entries: ReadOnlyTable<u64, &'static [u8]>,
    nodes: ReadOnlyTable<u64, &'static [u8; 32]>,
    subjects: redb::ReadOnlyMultimapTable<&'static str, u64>,
}

impl Snapshot {
    fn new(txn: &ReadTransaction) -> Result<Snapshot, LogError> {
        let meta = txn.open_table(META).map_err(storage)?;
        let size = meta.get(SIZE_KEY).map_err(storage)?.map(|v| v.value()).unwrap_or(0);
        Ok(Snapshot {
            size,
            entries: txn.open_table(ENTRIES).map_err(storage)?,
            nodes: txn.open_table(NODES).map_err(storage)?,
            subjects: txn.open_multimap_table(SUBJECTS).map_err(storage)?,
        })
    }

    fn check_size(&self, tree_size: u64) -> Result<(), LogError> {
        if tree_size > self.size {
            return Err(LogError::TreeSizeBeyondLog { tree_size, size: self.size });
        }
        Ok(())
    }

    fn node(&self, level: u32, index: u64) -> Result<Hash, LogError> {
        match self.nodes.get(node_key(level, index)).map_err(storage)? {
            Some(v) => Ok(*v.value()),
            None => Err(LogError::Corrupt(format!("subtree (level {level}, index {index}) is not stored"))),
        }
    }

    fn entry(&self, index: u64) -> Result<Entry, LogError> {
        let leaf = match self.entries.get(index).map_err(storage)? {
            Some(v) => v.value().to_vec(),
            None => return Err(LogError::Corrupt(format!("entry {index} is not stored"))),
        };
        Ok(Entry { index, leaf, leaf_hash: self.node(0, index)? })
    }

    fn root(&self, tree_size: u64) -> Result<Hash, LogError> {
        merkle::root(self, tree_size)
    }
}

impl SubtreeSource for Snapshot {
    type Error = LogError;
    fn subtree(&self, level: u32, index: u64) -> Result<Hash, LogError> {
        self.node(level, index)
    }
}

/// The right edge of the tree: `frontier[l]` is the hash of complete subtree
/// `(l, (size >> l) - 1)` whenever bit `l` of `size` is set.
#[derive(Clone)]
struct TreeState {
    size: u64,
    frontier: [Hash; 64],
}

impl Default for TreeState {
    fn default() -> Self {
        TreeState { size: 0, frontier: [[0; 32]; 64] }
    }
}

impl TreeState {
    fn load(db: &Database) -> Result<TreeState, LogError> {
        let txn = db.begin_read().map_err(storage)?;
        let s = Snapshot::new(&txn)?;
        let mut state = TreeState { size: s.size, ..TreeState::default() };
        for level in 0..64u32 {
            if (s.size >> level) & 1 == 1 {
                state.frontier[level as usize] = s.node(level, (s.size >> level) - 1)?;
            }
        }
        Ok(state)
    }

    /// Add a leaf; `emit` sees every complete subtree this completes, the leaf first.
    fn push(
        &mut self,
        leaf: Hash,
        mut emit: impl FnMut(u32, u64, &Hash) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        let mut index = self.size;
        let mut level = 0u32;
        let mut hash = leaf;
        emit(level, index, &hash)?;
        while index & 1 == 1 {
            hash = merkle::node_hash(&self.frontier[level as usize], &hash);
            level += 1;
            index >>= 1;
            emit(level, index, &hash)?;
        }
        self.frontier[level as usize] = hash;
        self.size += 1;
        Ok(())
    }

    fn root(&self) -> Hash {
        let mut root: Option<Hash> = None;
        for level in 0..64 {
            if (self.size >> level) & 1 == 1 {
                let left = &self.frontier[level];
                root = Some(match root {
                    None => *left,
                    Some(right) => merkle::node_hash(left, &right),
                });
            }
        }
        root.unwrap_or_else(merkle::empty_root)
    }
}

fn run_writer(db: &Database, mut rx: mpsc::Receiver<Request>, mut state: TreeState) {
    while let Some(first) = rx.blocking_recv() {
        let mut count = first.items.len();
        let mut group = vec![first];
        while count < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => {
                    count += r.items.len();
                    group.push(r);
                }
                Err(_) => break,
            }
        }
        let mut next = state.clone();
        match commit_group(db, &mut next, &group) {
            Ok(results) => {
                state = next;
                for (req, res) in group.into_iter().zip(results) {
                    let _ = req.reply.send(Ok(res));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "integrity log: group commit failed");
                let msg = e.to_string();
                for req in group {
                    let _ = req.reply.send(Err(LogError::Storage(msg.clone())));
                }
                // The transaction was not committed; the in-memory edge is still the stored one.
            }
        }
    }
}

fn commit_group(db: &Database, state: &mut TreeState, group: &[Request]) -> Result<Vec<Vec<Appended>>, LogError> {
    let txn: WriteTransaction = db.begin_write().map_err(storage)?;
    let mut results = Vec::with_capacity(group.len());
    {
        let mut entries = txn.open_table(ENTRIES).map_err(storage)?;
        let mut ids = txn.open_table(EVENT_IDS).map_err(storage)?;
        let mut subjects = txn.open_multimap_table(SUBJECTS).map_err(storage)?;
        let mut nodes = txn.open_table(NODES).map_err(storage)?;
        let mut meta = txn.open_table(META).map_err(storage)?;
        for req in group {
            let mut out = Vec::with_capacity(req.items.len());
            for item in &req.items {
                let existing = ids.get(item.event_id.as_str()).map_err(storage)?.map(|v| v.value());
                if let Some(index) = existing {
                    let leaf_hash = match nodes.get(node_key(0, index)).map_err(storage)? {
                        Some(v) => *v.value(),
                        None => return Err(LogError::Corrupt(format!("leaf hash of entry {index} is not stored"))),
                    };
                    out.push(Appended { index, leaf_hash, duplicate: true });
                    continue;
                }
                let index = state.size;
                if index >= 1 << 56 {
                    return Err(LogError::Storage("the log is full".into()));
                }
                entries.insert(index, item.leaf.as_slice()).map_err(storage)?;
                ids.insert(item.event_id.as_str(), index).map_err(storage)?;
                subjects.insert(item.subject.as_str(), index).map_err(storage)?;
                state.push(item.leaf_hash, |level, idx, hash| {
                    nodes.insert(node_key(level, idx), hash).map(|_| ()).map_err(storage)
                })?;
                out.push(Appended { index, leaf_hash: item.leaf_hash, duplicate: false });
            }
            results.push(out);
        }
        meta.insert(SIZE_KEY, state.size).map_err(storage)?;
    }
    txn.commit().map_err(storage)?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: &str, subject: &str) -> AuditEvent {
        AuditEvent {
            event_id: id.into(),
            service: "auth".into(),
            kind: "auth.login.failure".into(),
            subject: subject.into(),
            actor: "user:1".into(),
            at_ms: 1_700_000_000_000,
            data: json!({"z": 1, "a": {"y": [true, null], "b": "x"}}),
        }
    }

    #[test]
    fn canonical_json_sorts_keys_without_whitespace() {
        let bytes = event("e1", "user:7").leaf_bytes().unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"actor":"user:1","at_ms":1700000000000,"data":{"a":{"b":"x","y":[true,null]},"z":1},"event_id":"e1","kind":"auth.login.failure","service":"auth","subject":"user:7"}"#
        );
    }

    #[tokio::test]
    async fn append_read_dedup_search() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path()).unwrap();
        assert_eq!(log.size().unwrap(), 0);
        assert_eq!(log.head().unwrap(), (0, merkle::empty_root()));
        let a = log.append(&event("e1", "user:1")).await.unwrap();
        assert_eq!((a.index, a.duplicate), (0, false));
        let b = log.append(&event("e2", "user:2")).await.unwrap();
        assert_eq!(b.index, 1);
        let again = log.append(&event("e1", "user:1")).await.unwrap();
        assert_eq!(again, Appended { index: 0, leaf_hash: a.leaf_hash, duplicate: true });
        let batch = log.append_batch(&[event("e3", "user:1"), event("e3", "user:1"), event("e2", "x")]).await.unwrap();
        assert_eq!(
            batch.iter().map(|a| (a.index, a.duplicate)).collect::<Vec<_>>(),
            [(2, false), (2, true), (1, true)]
        );
        assert_eq!(log.size().unwrap(), 3);
        let e = log.entry(0).unwrap();
        assert_eq!(e.leaf, event("e1", "user:1").leaf_bytes().unwrap());
        assert_eq!(e.leaf_hash, merkle::leaf_hash(&e.leaf));
        assert_eq!(e.event().unwrap(), event("e1", "user:1"));
        assert!(matches!(log.entry(3), Err(LogError::IndexOutOfRange { index: 3, size: 3 })));
        assert_eq!(log.entries(1, 10).unwrap().len(), 2);
        assert!(log.entries(3, 10).unwrap().is_empty());
        assert!(log.entries(4, 10).is_err());
        let found: Vec<u64> = log.search("user:1", 10).unwrap().iter().map(|e| e.index).collect();
        assert_eq!(found, [0, 2]);
        assert!(log.search("nobody", 10).unwrap().is_empty());
        assert!(matches!(log.root(4), Err(LogError::TreeSizeBeyondLog { tree_size: 4, size: 3 })));
        assert!(matches!(log.inclusion_proof(3, 3), Err(LogError::IndexOutOfRange { .. })));
        assert!(matches!(log.consistency_proof(3, 2), Err(LogError::FromAfterTo { .. })));
        assert!(matches!(log.append(&event("", "s")).await, Err(LogError::InvalidEvent(_))));
        let v = log.verify_all().unwrap();
        assert_eq!((v.size, v.root), log.head().unwrap());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(log.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
