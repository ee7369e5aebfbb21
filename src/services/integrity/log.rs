//! The append-only audit log: RFC 9162 Merkle tree over audit events in one redb file
//! (`<data_dir>/integrity.redb`, mode 0600).
//!
//! # Storage
//!
//! | table | key → value |
//! |---|---|
//! | `entries` | index → (hashes, the exact leaf bytes: the event's canonical JSON) |
//! | `event_uuids` | event id → index, for ids in the canonical UUID form (as the 128-bit number) |
//! | `event_ids` | event id → index (its UTF-8 bytes), for every other id |
//! | `subjects` | (epoch, subject bytes) → the epoch's entries about the subject |
//! | `meta` | `"size"` → number of entries; `"format"` → [`FORMAT`]; `"subject_epoch"`, `"subjects_indexed"` (below) |
//!
//! The hashes of entry `i` are those of the complete subtrees whose last leaf it is, level 0 (its
//! own leaf hash) first: subtree `(l, i >> l)` for `l = 0 ..= trailing_ones(i)`, 32 bytes each.
//! So every complete subtree's hash is stored once, in the row of the entry that completes it
//! ([`subtree_row`]), any root or proof of any tree size is O(log n) look-ups, and nothing is
//! ever rewritten. One row per entry (with the two index rows) is what an append costs: redb's
//! price is per row, far more than per byte.
//!
//! The subject index is written an epoch at a time: once the log passes the end of an epoch
//! (`subject_epoch` entries, [`SUBJECT_EPOCH`] in new files), the commit that does so writes one
//! row per subject of that epoch — its entries as 16-bit big-endian offsets from the epoch's
//! first index, ascending — and moves `subjects_indexed` to the epoch's end. Those rows are
//! always appended after every existing key, so the index costs a few sequential rows per epoch
//! instead of one insert per entry at a place that depends on the subject. The subjects of the
//! entries past `subjects_indexed` are kept in memory, added before each group commit, and read
//! from the entries again when the log is opened: the index is derived data, while the entries
//! and the dedup keys are written and made durable with every append.
//!
//! A file in the first layout (leaf bytes alone in `entries`, every subtree in a `nodes` table,
//! text keys) is converted in one transaction when it is opened; stored hashes are carried over
//! as they are, never recomputed, so damage stays visible to [`Log::verify_all`].
//!
//! # Writes
//!
//! One writer thread owns all writes. [`Log::append`] and [`Log::append_batch`] prepare the leaf
//! (canonical JSON, leaf hash, dedup key) on the caller's task, send it on a channel and wait; the
//! writer takes everything queued (up to [`MAX_GROUP`] events: whatever arrived while the
//! previous group was being committed), applies it in one redb write transaction committed with
//! immediate durability (fsync), and only then answers each caller. An event whose id is already
//! in the log (or earlier in the same group) appends nothing: the caller gets the existing index
//! with `duplicate: true`. If a commit fails, every caller of that group gets the error and
//! nothing of the group is in the log.
//!
//! # Reads
//!
//! Reads are short B-tree look-ups on a redb read snapshot, run inline on the caller's thread (as
//! the kernel's SQLite reads are); they never wait for the writer. Each call reads one snapshot,
//! so a proof and the size it is checked against always agree. A search takes the entries past
//! its snapshot's `subjects_indexed` (and below its size) from memory.
//!
//! Dropping the last clone of a [`Log`] closes the channel, lets the writer finish what is queued
//! and waits for it, then closes the file.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
    WriteTransaction,
};
use tokio::sync::{mpsc, oneshot};

use super::merkle::{self, Hash, ProofError, SubtreeSource};

/// The log's file name inside the data directory.
pub const LOG_FILE: &str = "integrity.redb";
/// The most entries one read returns ([`Log::entries`], [`Log::search`]).
pub const MAX_PAGE: usize = 1000;
/// Events prepared between two yields of [`Log::append_batch`].
const PREPARE_SLICE: usize = 256;
/// The most events one group commit takes from the queue.
pub const MAX_GROUP: usize = 16_384;
/// The longest accepted event id, subject, service, kind and actor, in bytes.
pub const MAX_FIELD: usize = 512;

/// The log's tables, public so tools (and tests) can inspect the file with redb directly.
pub const ENTRIES: TableDefinition<u64, (&[u8], &[u8])> = TableDefinition::new("entries");
pub const EVENT_UUIDS: TableDefinition<u128, u64> = TableDefinition::new("event_uuids");
pub const EVENT_IDS: TableDefinition<&[u8], u64> = TableDefinition::new("event_ids");
pub const SUBJECTS: TableDefinition<(u64, &[u8]), &[u8]> = TableDefinition::new("subjects");
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const SIZE_KEY: &str = "size";
const FORMAT_KEY: &str = "format";
const SUBJECT_EPOCH_KEY: &str = "subject_epoch";
const SUBJECTS_INDEXED_KEY: &str = "subjects_indexed";
/// Entries per epoch of the subject index in a new file (at most 2^16: offsets are 16-bit).
pub const SUBJECT_EPOCH: u64 = 1 << 16;
/// The storage layout this code writes (`meta["format"]`).
pub const FORMAT: u64 = 2;

/// The entry whose row holds the hash of complete subtree `(level, index)`: its last leaf,
/// `((index + 1) << level) - 1`. `None` if that is beyond any possible index.
pub fn subtree_row(level: u32, index: u64) -> Option<u64> {
    let end = index.checked_add(1)?;
    if level >= 64 || end > u64::MAX >> level {
        return None;
    }
    Some((end << level) - 1)
}

/// How many subtree hashes entry `index`'s row holds: one per complete subtree it is the last
/// leaf of.
pub fn hashes_in_row(index: u64) -> usize {
    index.trailing_ones() as usize + 1
}

/// The key an event id is deduplicated by: the canonical (lowercase, hyphenated) UUID form as its
/// 128-bit number, any other id as its bytes. Both are exact: distinct ids never share a key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IdKey {
    Uuid(u128),
    Text(Vec<u8>),
}

impl IdKey {
    fn of(id: &str) -> IdKey {
        if id.len() == 36 && !id.bytes().any(|b| b.is_ascii_uppercase()) {
            // At 36 characters only the hyphenated form parses; lowercase makes it the one text
            // of that number.
            if let Ok(u) = uuid::Uuid::try_parse(id) {
                return IdKey::Uuid(u.as_u128());
            }
        }
        IdKey::Text(id.as_bytes().to_vec())
    }
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
    id: IdKey,
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
    pending: Arc<RwLock<Pending>>,
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
        Self::open_with(path, SUBJECT_EPOCH)
    }

    /// [`Log::open_file`], with `epoch` entries per subject-index epoch if the file is new.
    fn open_with(path: &Path, epoch: u64) -> Result<Log, LogError> {
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
        {
            let txn = db.begin_write().map_err(storage)?;
            if txn.list_tables().map_err(storage)?.any(|t| t.name() == v1::NODES.name()) {
                v1::convert(&txn, epoch)?;
            }
            // Create every table so reads never meet a missing one.
            txn.open_table(ENTRIES).map_err(storage)?;
            txn.open_table(EVENT_UUIDS).map_err(storage)?;
            txn.open_table(EVENT_IDS).map_err(storage)?;
            txn.open_table(SUBJECTS).map_err(storage)?;
            {
                let mut meta = txn.open_table(META).map_err(storage)?;
                let format = meta.get(FORMAT_KEY).map_err(storage)?.map(|v| v.value());
                match format {
                    None => {
                        meta.insert(FORMAT_KEY, FORMAT).map_err(storage)?;
                    }
                    Some(FORMAT) => {}
                    Some(other) => {
                        return Err(storage(format!(
                            "{} has storage format {other}; this acgs reads format {FORMAT}",
                            path.display()
                        )));
                    }
                }
                if meta.get(SUBJECT_EPOCH_KEY).map_err(storage)?.is_none() {
                    meta.insert(SUBJECT_EPOCH_KEY, epoch).map_err(storage)?;
                }
            }
            txn.commit().map_err(storage)?;
        }
        let (state, subjects) = {
            let txn = db.begin_read().map_err(storage)?;
            let s = Snapshot::new(&txn)?;
            (TreeState::load(&s)?, SubjectIndex::load(&s)?)
        };
        let pending = Arc::new(RwLock::new(subjects.pending));
        let (tx, rx) = mpsc::channel(4096);
        let writer = Writer {
            db: db.clone(),
            state,
            epoch: subjects.epoch,
            indexed: subjects.indexed,
            pending: pending.clone(),
        };
        let writer = std::thread::Builder::new()
            .name("integrity-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(storage)?;
        Ok(Log { inner: Arc::new(Inner { db, path: path.to_path_buf(), pending, tx: Some(tx), writer: Some(writer) }) })
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
        // Serialising and hashing a large batch takes milliseconds of CPU: done a slice at a
        // time, yielding between slices, so that the requests sharing this runtime thread (the
        // decisions a batch comes from) are not held up behind it.
        let mut items = Vec::with_capacity(events.len());
        for (i, slice) in events.chunks(PREPARE_SLICE).enumerate() {
            if i > 0 {
                tokio::task::yield_now().await;
            }
            for event in slice {
                items.push(prepare(event)?);
            }
        }
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
        let limit = limit.min(MAX_PAGE);
        let key = subject.as_bytes();
        loop {
            let s = self.read()?;
            let (epoch, indexed) = (s.meta(SUBJECT_EPOCH_KEY)?, s.meta(SUBJECTS_INDEXED_KEY)?);
            if epoch == 0 {
                return Err(LogError::Corrupt("the subject index has no epoch size".into()));
            }
            let mut indices = Vec::new();
            for e in 0..indexed / epoch {
                if indices.len() >= limit {
                    break;
                }
                let Some(row) = s.subjects.get((e, key)).map_err(storage)? else { continue };
                let offsets = row.value();
                if offsets.len() % 2 != 0 {
                    return Err(LogError::Corrupt(format!(
                        "the subject index row of epoch {e} is {} bytes",
                        offsets.len()
                    )));
                }
                for pair in offsets.chunks_exact(2).take(limit - indices.len()) {
                    let offset = u64::from(u16::from_be_bytes([pair[0], pair[1]]));
                    if offset >= epoch {
                        return Err(LogError::Corrupt(format!("the subject index of epoch {e} names offset {offset}")));
                    }
                    indices.push(e * epoch + offset);
                }
            }
            if indices.len() < limit {
                let pending = self.inner.pending.read().unwrap_or_else(std::sync::PoisonError::into_inner);
                if pending.from > indexed {
                    // An epoch was indexed after this snapshot was taken: take a newer one.
                    continue;
                }
                if let Some(list) = pending.postings.get(key) {
                    let after = list.partition_point(|&i| i < indexed);
                    indices
                        .extend(list[after..].iter().copied().take_while(|&i| i < s.size).take(limit - indices.len()));
                }
            }
            return indices.into_iter().map(|i| s.entry(i)).collect();
        }
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
            let (hashes, leaf) = v.value();
            if hashes.len() != 32 * hashes_in_row(expected) {
                return Err(LogError::Corrupt(format!(
                    "entry {expected} holds {} bytes of subtree hashes, not {}",
                    hashes.len(),
                    32 * hashes_in_row(expected)
                )));
            }
            let computed = merkle::leaf_hash(leaf);
            let mut mismatch = None;
            tree.push(computed, |level, idx, hash| {
                if mismatch.is_some() {
                    return Ok(());
                }
                let at = 32 * level as usize;
                let stored = &hashes[at..at + 32];
                if stored != hash {
                    mismatch = Some(if level == 0 {
                        format!("entry {idx}: its leaf bytes hash to {} but the tree holds {}", hex(hash), hex(stored))
                    } else {
                        format!(
                            "subtree (level {level}, index {idx}) recomputes to {} but {} is stored",
                            hex(hash),
                            hex(stored)
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

fn hex(h: &[u8]) -> String {
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
    Ok(Prepared { id: IdKey::of(&event.event_id), subject: event.subject.clone(), leaf, leaf_hash })
}

/// Hash `level` of an entry's row of subtree hashes.
fn stored_hash(hashes: &[u8], level: u32) -> Option<Hash> {
    let at = 32 * level as usize;
    hashes.get(at..at + 32)?.try_into().ok()
}

/// One read snapshot with its tables open.
struct Snapshot {
    size: u64,
    meta: ReadOnlyTable<&'static str, u64>,
    entries: ReadOnlyTable<u64, (&'static [u8], &'static [u8])>,
    subjects: ReadOnlyTable<(u64, &'static [u8]), &'static [u8]>,
}

impl Snapshot {
    fn new(txn: &ReadTransaction) -> Result<Snapshot, LogError> {
        let meta = txn.open_table(META).map_err(storage)?;
        let size = meta.get(SIZE_KEY).map_err(storage)?.map(|v| v.value()).unwrap_or(0);
        Ok(Snapshot {
            size,
            meta,
            entries: txn.open_table(ENTRIES).map_err(storage)?,
            subjects: txn.open_table(SUBJECTS).map_err(storage)?,
        })
    }

    /// A number from `meta` (0 if absent).
    fn meta(&self, key: &str) -> Result<u64, LogError> {
        Ok(self.meta.get(key).map_err(storage)?.map(|v| v.value()).unwrap_or(0))
    }

    fn check_size(&self, tree_size: u64) -> Result<(), LogError> {
        if tree_size > self.size {
            return Err(LogError::TreeSizeBeyondLog { tree_size, size: self.size });
        }
        Ok(())
    }

    fn node(&self, level: u32, index: u64) -> Result<Hash, LogError> {
        let missing = || LogError::Corrupt(format!("subtree (level {level}, index {index}) is not stored"));
        let row = subtree_row(level, index).ok_or_else(missing)?;
        let value = self.entries.get(row).map_err(storage)?.ok_or_else(missing)?;
        let (hashes, _) = value.value();
        stored_hash(hashes, level).ok_or_else(missing)
    }

    fn entry(&self, index: u64) -> Result<Entry, LogError> {
        let Some(value) = self.entries.get(index).map_err(storage)? else {
            return Err(LogError::Corrupt(format!("entry {index} is not stored")));
        };
        let (hashes, leaf) = value.value();
        let leaf_hash = stored_hash(hashes, 0)
            .ok_or_else(|| LogError::Corrupt(format!("leaf hash of entry {index} is not stored")))?;
        Ok(Entry { index, leaf: leaf.to_vec(), leaf_hash })
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
    fn load(s: &Snapshot) -> Result<TreeState, LogError> {
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

/// The subjects of the entries the `subjects` table does not hold yet: those from `from` (the
/// stored `subjects_indexed`) on, plus, while a group is being committed, that group's (a reader
/// takes only indices below its snapshot's size, and a failed commit takes them out again).
#[derive(Debug, Default)]
struct Pending {
    from: u64,
    /// Subject → its entries, ascending.
    postings: HashMap<Vec<u8>, Vec<u64>>,
}

impl Pending {
    fn add(&mut self, subject: &[u8], index: u64) {
        match self.postings.get_mut(subject) {
            Some(list) => list.push(index),
            None => {
                self.postings.insert(subject.to_vec(), vec![index]);
            }
        }
    }

    /// Drops every index at or past `end` (after a failed commit).
    fn truncate(&mut self, end: u64) {
        self.postings.retain(|_, list| {
            list.truncate(list.partition_point(|&i| i < end));
            !list.is_empty()
        });
    }

    /// Drops every index before `to`, now in the table.
    fn indexed(&mut self, to: u64) {
        self.from = to;
        self.postings.retain(|_, list| {
            list.drain(..list.partition_point(|&i| i < to));
            !list.is_empty()
        });
    }
}

/// The subject index's state as opened.
struct SubjectIndex {
    epoch: u64,
    indexed: u64,
    pending: Pending,
}

impl SubjectIndex {
    /// Reads the epoch and the indexed end from `meta`, and the subjects of the entries after it
    /// from their leaves.
    fn load(s: &Snapshot) -> Result<SubjectIndex, LogError> {
        let epoch = s.meta(SUBJECT_EPOCH_KEY)?;
        if !epoch.is_power_of_two() || epoch > 1 << 16 {
            return Err(LogError::Corrupt(format!("the subject index epoch is {epoch} entries")));
        }
        let indexed = s.meta(SUBJECTS_INDEXED_KEY)?;
        if indexed % epoch != 0 || indexed > s.size {
            return Err(LogError::Corrupt(format!("the subject index ends at {indexed}, in a log of {}", s.size)));
        }
        #[derive(serde::Deserialize)]
        struct Subject {
            subject: String,
        }
        let mut pending = Pending { from: indexed, postings: HashMap::new() };
        for row in s.entries.range(indexed..s.size).map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            match serde_json::from_slice::<Subject>(v.value().1) {
                Ok(e) => pending.add(e.subject.as_bytes(), k.value()),
                Err(e) => tracing::warn!(
                    index = k.value(),
                    error = %e,
                    "integrity log: an unreadable leaf is left out of the subject index"
                ),
            }
        }
        Ok(SubjectIndex { epoch, indexed, pending })
    }
}

/// The writer thread's state: the only writer of the file.
struct Writer {
    db: Arc<Database>,
    /// The right edge of the stored tree.
    state: TreeState,
    epoch: u64,
    /// The stored `subjects_indexed`.
    indexed: u64,
    pending: Arc<RwLock<Pending>>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut count = first.items.len();
            let mut group = vec![first];
            // Whatever arrived while the previous group was committing goes in this one.
            while count < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => {
                        count += r.items.len();
                        group.push(r);
                    }
                    Err(_) => break,
                }
            }
            let mut next = self.state.clone();
            match self.commit_group(&mut next, &group) {
                Ok((results, indexed)) => {
                    self.state = next;
                    if indexed > self.indexed {
                        self.indexed = indexed;
                        self.pending_mut().indexed(indexed);
                    }
                    for (req, res) in group.into_iter().zip(results) {
                        let _ = req.reply.send(Ok(res));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "integrity log: group commit failed");
                    // Nothing was committed: the stored edge and index are as before the group.
                    self.pending_mut().truncate(self.state.size);
                    let msg = e.to_string();
                    for req in group {
                        let _ = req.reply.send(Err(LogError::Storage(msg.clone())));
                    }
                }
            }
        }
    }

    fn pending_mut(&self) -> std::sync::RwLockWriteGuard<'_, Pending> {
        self.pending.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `group` in one durable transaction; the answers per request, and where the subject
    /// index now ends.
    fn commit_group(&self, state: &mut TreeState, group: &[Request]) -> Result<(Vec<Vec<Appended>>, u64), LogError> {
        let txn: WriteTransaction = self.db.begin_write().map_err(storage)?;
        let mut results = Vec::with_capacity(group.len());
        let mut indexed = self.indexed;
        {
            let mut entries = txn.open_table(ENTRIES).map_err(storage)?;
            let mut uuids = txn.open_table(EVENT_UUIDS).map_err(storage)?;
            let mut ids = txn.open_table(EVENT_IDS).map_err(storage)?;
            let mut meta = txn.open_table(META).map_err(storage)?;
            let mut hashes = Vec::with_capacity(64 * 32);
            let mut added: Vec<(&[u8], u64)> = Vec::new();
            for req in group {
                let mut out = Vec::with_capacity(req.items.len());
                for item in &req.items {
                    let index = state.size;
                    // One look-up for both the dedup check and the new key: the insert answers
                    // the index already stored, which is then put back.
                    let existing = match &item.id {
                        IdKey::Uuid(u) => {
                            let old = uuids.insert(*u, index).map_err(storage)?.map(|v| v.value());
                            if let Some(old) = old {
                                uuids.insert(*u, old).map_err(storage)?;
                            }
                            old
                        }
                        IdKey::Text(t) => {
                            let old = ids.insert(t.as_slice(), index).map_err(storage)?.map(|v| v.value());
                            if let Some(old) = old {
                                ids.insert(t.as_slice(), old).map_err(storage)?;
                            }
                            old
                        }
                    };
                    if let Some(existing) = existing {
                        let leaf_hash = entries
                            .get(existing)
                            .map_err(storage)?
                            .and_then(|v| stored_hash(v.value().0, 0))
                            .ok_or_else(|| LogError::Corrupt(format!("leaf hash of entry {existing} is not stored")))?;
                        out.push(Appended { index: existing, leaf_hash, duplicate: true });
                        continue;
                    }
                    hashes.clear();
                    state.push(item.leaf_hash, |_, _, hash| {
                        hashes.extend_from_slice(hash);
                        Ok(())
                    })?;
                    entries.insert(index, (hashes.as_slice(), item.leaf.as_slice())).map_err(storage)?;
                    added.push((item.subject.as_bytes(), index));
                    out.push(Appended { index, leaf_hash: item.leaf_hash, duplicate: false });
                }
                results.push(out);
            }
            {
                let mut pending = self.pending_mut();
                for (subject, index) in added {
                    pending.add(subject, index);
                }
            }
            let complete = state.size / self.epoch * self.epoch;
            if complete > indexed {
                self.index_subjects(&txn, indexed, complete)?;
                meta.insert(SUBJECTS_INDEXED_KEY, complete).map_err(storage)?;
                indexed = complete;
            }
            meta.insert(SIZE_KEY, state.size).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok((results, indexed))
    }

    /// Writes the subject index rows of the epochs in `[from, to)` (whole epochs) from memory.
    fn index_subjects(&self, txn: &WriteTransaction, from: u64, to: u64) -> Result<(), LogError> {
        let pending = self.pending.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut rows: Vec<(u64, &[u8], Vec<u8>)> = Vec::new();
        for (subject, list) in &pending.postings {
            let start = list.partition_point(|&i| i < from);
            let end = list.partition_point(|&i| i < to);
            for &i in &list[start..end] {
                let (e, offset) = (i / self.epoch, (i % self.epoch) as u16);
                match rows.last_mut() {
                    Some((last, s, offsets)) if *last == e && *s == subject.as_slice() => {
                        offsets.extend_from_slice(&offset.to_be_bytes())
                    }
                    _ => rows.push((e, subject, offset.to_be_bytes().to_vec())),
                }
            }
        }
        // In key order: every row lands after the table's last key.
        rows.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut table = txn.open_table(SUBJECTS).map_err(storage)?;
        for (e, subject, offsets) in &rows {
            table.insert((*e, *subject), offsets.as_slice()).map_err(storage)?;
        }
        Ok(())
    }
}

/// The first storage layout, converted when a file in it is opened.
mod v1 {
    use redb::{
        MultimapTableDefinition, ReadableMultimapTable, ReadableTable, ReadableTableMetadata, TableDefinition,
        WriteTransaction,
    };

    use super::{
        ENTRIES, EVENT_IDS, EVENT_UUIDS, IdKey, LogError, META, SUBJECT_EPOCH_KEY, SUBJECTS, SUBJECTS_INDEXED_KEY,
        hashes_in_row, storage,
    };

    pub const ENTRIES_V1: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
    pub const EVENT_IDS_V1: TableDefinition<&str, u64> = TableDefinition::new("event_ids");
    pub const SUBJECTS_V1: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("subjects");
    pub const NODES: TableDefinition<u64, &[u8; 32]> = TableDefinition::new("nodes");
    // The first layout's tables whose names the current layout reuses are moved here first.
    const OLD_ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries.v1");
    const OLD_IDS: TableDefinition<&str, u64> = TableDefinition::new("event_ids.v1");
    const OLD_SUBJECTS: MultimapTableDefinition<&str, u64> = MultimapTableDefinition::new("subjects.v1");

    /// The key of complete subtree `(level, index)` in the first layout's `nodes` table.
    pub fn node_key(level: u32, index: u64) -> u64 {
        (u64::from(level) << 56) | index
    }

    /// Rewrites a first-layout file in the current layout inside `txn` (committed by the caller
    /// with the rest of opening, so a crash leaves the file as it was), with subject-index epochs
    /// of `epoch` entries. Stored hashes are moved, not recomputed; a missing one stops the
    /// conversion.
    pub fn convert(txn: &WriteTransaction, epoch: u64) -> Result<(), LogError> {
        tracing::info!("integrity log: converting the file to the current storage layout");
        txn.rename_table(ENTRIES_V1, OLD_ENTRIES).map_err(storage)?;
        txn.rename_table(EVENT_IDS_V1, OLD_IDS).map_err(storage)?;
        txn.rename_multimap_table(SUBJECTS_V1, OLD_SUBJECTS).map_err(storage)?;
        {
            let old_entries = txn.open_table(OLD_ENTRIES).map_err(storage)?;
            let nodes = txn.open_table(NODES).map_err(storage)?;
            let mut entries = txn.open_table(ENTRIES).map_err(storage)?;
            let mut hashes = Vec::with_capacity(64 * 32);
            for row in old_entries.iter().map_err(storage)? {
                let (k, v) = row.map_err(storage)?;
                let index = k.value();
                hashes.clear();
                for level in 0..hashes_in_row(index) as u32 {
                    let Some(h) = nodes.get(node_key(level, index >> level)).map_err(storage)? else {
                        return Err(LogError::Corrupt(format!(
                            "converting the log: subtree (level {level}, index {}) is not stored",
                            index >> level
                        )));
                    };
                    hashes.extend_from_slice(h.value());
                }
                entries.insert(index, (hashes.as_slice(), v.value())).map_err(storage)?;
            }
            let old_ids = txn.open_table(OLD_IDS).map_err(storage)?;
            let mut uuids = txn.open_table(EVENT_UUIDS).map_err(storage)?;
            let mut ids = txn.open_table(EVENT_IDS).map_err(storage)?;
            for row in old_ids.iter().map_err(storage)? {
                let (k, v) = row.map_err(storage)?;
                match IdKey::of(k.value()) {
                    IdKey::Uuid(u) => uuids.insert(u, v.value()).map_err(storage)?,
                    IdKey::Text(t) => ids.insert(t.as_slice(), v.value()).map_err(storage)?,
                };
            }
            // The complete epochs into the subject index; the rest is read from the leaves when
            // the log opens.
            let indexed = old_entries.len().map_err(storage)? / epoch * epoch;
            let old_subjects = txn.open_multimap_table(OLD_SUBJECTS).map_err(storage)?;
            let mut subjects = txn.open_table(SUBJECTS).map_err(storage)?;
            for row in old_subjects.iter().map_err(storage)? {
                let (k, values) = row.map_err(storage)?;
                let mut current: Option<(u64, Vec<u8>)> = None;
                for v in values {
                    let i = v.map_err(storage)?.value();
                    if i >= indexed {
                        break;
                    }
                    let (e, offset) = (i / epoch, (i % epoch) as u16);
                    match &mut current {
                        Some((ce, offsets)) if *ce == e => offsets.extend_from_slice(&offset.to_be_bytes()),
                        _ => {
                            if let Some((ce, offsets)) = current.take() {
                                subjects.insert((ce, k.value().as_bytes()), offsets.as_slice()).map_err(storage)?;
                            }
                            current = Some((e, offset.to_be_bytes().to_vec()));
                        }
                    }
                }
                if let Some((ce, offsets)) = current {
                    subjects.insert((ce, k.value().as_bytes()), offsets.as_slice()).map_err(storage)?;
                }
            }
            let mut meta = txn.open_table(META).map_err(storage)?;
            meta.insert(SUBJECT_EPOCH_KEY, epoch).map_err(storage)?;
            meta.insert(SUBJECTS_INDEXED_KEY, indexed).map_err(storage)?;
        }
        txn.delete_table(OLD_ENTRIES).map_err(storage)?;
        txn.delete_table(OLD_IDS).map_err(storage)?;
        txn.delete_multimap_table(OLD_SUBJECTS).map_err(storage)?;
        txn.delete_table(NODES).map_err(storage)?;
        Ok(())
    }
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

    #[test]
    fn dedup_keys_are_exact() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(IdKey::of(&id.to_string()), IdKey::Uuid(id.as_u128()));
        // Every other spelling of that UUID is another id, kept as its text.
        let upper = id.to_string().to_uppercase();
        let simple = id.simple().to_string();
        let braced = id.braced().to_string();
        for other in [upper.as_str(), simple.as_str(), braced.as_str(), "e1", "", "ü"] {
            assert_eq!(IdKey::of(other), IdKey::Text(other.as_bytes().to_vec()), "{other}");
        }
        let almost = format!("{}g", &id.to_string()[..35]);
        assert_eq!(IdKey::of(&almost), IdKey::Text(almost.as_bytes().to_vec()));
    }

    #[test]
    fn each_subtree_lives_in_the_row_of_its_last_leaf() {
        assert_eq!(subtree_row(0, 5), Some(5));
        assert_eq!(subtree_row(1, 0), Some(1));
        assert_eq!(subtree_row(3, 2), Some(23));
        assert_eq!(subtree_row(63, 0), Some((1 << 63) - 1));
        assert_eq!(subtree_row(63, 1), None, "its last leaf would be the 2^64th");
        assert_eq!(subtree_row(64, 0), None);
        assert_eq!(subtree_row(1, u64::MAX), None);
        let mut tree = TreeState::default();
        for i in 0..300u64 {
            let mut emitted = Vec::new();
            tree.push(merkle::leaf_hash(&i.to_be_bytes()), |level, index, _| {
                emitted.push(subtree_row(level, index));
                Ok(())
            })
            .unwrap();
            assert_eq!(emitted, vec![Some(i); hashes_in_row(i)]);
        }
    }

    #[tokio::test]
    async fn uuid_and_text_ids_deduplicate_apart() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path()).unwrap();
        let id = uuid::Uuid::now_v7().to_string();
        let upper = id.to_uppercase();
        let out = log
            .append_batch(&[event(&id, "s"), event(&upper, "s"), event(&id, "s"), event(&upper, "s")])
            .await
            .unwrap();
        assert_eq!(
            out.iter().map(|a| (a.index, a.duplicate)).collect::<Vec<_>>(),
            [(0, false), (1, false), (0, true), (1, true)]
        );
        assert_eq!(log.verify_all().unwrap().size, 2);
    }

    /// Writes a log of `n` events in the first storage layout, as the first version did.
    fn write_v1(path: &std::path::Path, events: &[AuditEvent], drop_node: Option<(u32, u64)>) -> Hash {
        let db = Database::create(path).unwrap();
        let txn = db.begin_write().unwrap();
        let mut tree = TreeState::default();
        {
            let mut entries = txn.open_table(v1::ENTRIES_V1).unwrap();
            let mut ids = txn.open_table(v1::EVENT_IDS_V1).unwrap();
            let mut subjects = txn.open_multimap_table(v1::SUBJECTS_V1).unwrap();
            let mut nodes = txn.open_table(v1::NODES).unwrap();
            let mut meta = txn.open_table(META).unwrap();
            for (i, e) in (0u64..).zip(events) {
                let leaf = e.leaf_bytes().unwrap();
                entries.insert(i, leaf.as_slice()).unwrap();
                ids.insert(e.event_id.as_str(), i).unwrap();
                subjects.insert(e.subject.as_str(), i).unwrap();
                tree.push(merkle::leaf_hash(&leaf), |level, index, hash| {
                    if drop_node != Some((level, index)) {
                        nodes.insert(v1::node_key(level, index), hash).unwrap();
                    }
                    Ok(())
                })
                .unwrap();
            }
            meta.insert(SIZE_KEY, tree.size).unwrap();
        }
        txn.commit().unwrap();
        tree.root()
    }

    #[tokio::test]
    async fn a_first_layout_file_is_converted_with_its_stored_hashes() {
        // Epochs larger than the log (nothing indexed yet) and smaller (9 epochs indexed).
        for epoch in [SUBJECT_EPOCH, 4] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(LOG_FILE);
            let mut events: Vec<AuditEvent> =
                (0..37).map(|i| event(&uuid::Uuid::now_v7().to_string(), &format!("user:{}", i % 4))).collect();
            events[5].event_id = "not-a-uuid".into();
            let root = write_v1(&path, &events, None);
            let log = Log::open_with(&path, epoch).unwrap();
            assert_eq!(log.head().unwrap(), (37, root));
            assert_eq!(log.verify_all().unwrap(), Verified { size: 37, root });
            for (i, e) in (0u64..).zip(&events) {
                assert_eq!(log.entry(i).unwrap().event().unwrap(), *e);
            }
            let found: Vec<u64> = log.search("user:1", 100).unwrap().iter().map(|e| e.index).collect();
            assert_eq!(found, (1..37).step_by(4).collect::<Vec<u64>>());
            let again =
                log.append_batch(&[events[5].clone(), events[30].clone(), event("new", "user:1")]).await.unwrap();
            assert_eq!(
                again.iter().map(|a| (a.index, a.duplicate)).collect::<Vec<_>>(),
                [(5, true), (30, true), (37, false)]
            );
            assert_eq!(log.verify_all().unwrap().size, 38);
            assert_eq!(log.search("user:1", 100).unwrap().last().unwrap().index, 37);
            drop(log);
            let db = Database::open(&path).unwrap();
            let txn = db.begin_read().unwrap();
            let names: Vec<String> = txn.list_tables().unwrap().map(|t| t.name().to_string()).collect();
            assert!(!names.iter().any(|n| n == "nodes" || n.ends_with(".v1")), "{names:?}");
            let meta = txn.open_table(META).unwrap();
            assert_eq!(meta.get(FORMAT_KEY).unwrap().unwrap().value(), FORMAT);
            assert_eq!(meta.get(SUBJECT_EPOCH_KEY).unwrap().unwrap().value(), epoch);
            assert_eq!(meta.get(SUBJECTS_INDEXED_KEY).unwrap().unwrap().value(), 38 / epoch * epoch);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn search_is_complete_across_epochs_while_appending_and_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOG_FILE);
        let events: Vec<AuditEvent> =
            (0..3_000).map(|i| event(&format!("e{i}"), &format!("s{}", (i * 7) % 5))).collect();
        let log = Log::open_with(&path, 8).unwrap();
        // A reader searching while groups commit and epochs are indexed: every answer is all the
        // entries about the subject up to the last one it names, oldest first.
        let reader = {
            let log = log.clone();
            tokio::task::spawn_blocking(move || {
                let mut searches = 0;
                loop {
                    let done = log.size().unwrap() == 3_000;
                    let found: Vec<u64> = log.search("s3", MAX_PAGE).unwrap().iter().map(|e| e.index).collect();
                    let last = found.last().map_or(0, |i| i + 1);
                    let mut want = Vec::new();
                    for from in (0..last).step_by(MAX_PAGE) {
                        let page = log.entries(from, MAX_PAGE).unwrap();
                        want.extend(
                            page.iter()
                                .filter(|e| e.index < last && e.event().unwrap().subject == "s3")
                                .map(|e| e.index),
                        );
                    }
                    assert_eq!(found, want, "a search skipped an entry");
                    searches += 1;
                    if done {
                        return searches;
                    }
                }
            })
        };
        let mut tasks = Vec::new();
        for chunk in events.chunks(300) {
            let (log, chunk) = (log.clone(), chunk.to_vec());
            tasks.push(tokio::spawn(async move {
                for part in chunk.chunks(7) {
                    log.append_batch(part).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(reader.await.unwrap() > 1);
        // Entries were appended in whatever order the tasks ran: expected by what was stored.
        let stored: Vec<String> = (0..3_000).map(|i| log.entry(i).unwrap().event().unwrap().subject).collect();
        let check = |log: &Log| {
            for s in ["s0", "s1", "s2", "s3", "s4"] {
                let want: Vec<u64> = (0..3_000u64).filter(|&i| stored[i as usize] == s).collect();
                let found: Vec<u64> = log.search(s, MAX_PAGE).unwrap().iter().map(|e| e.index).collect();
                assert_eq!(found, want[..want.len().min(MAX_PAGE)], "{s}");
                let few: Vec<u64> = log.search(s, 3).unwrap().iter().map(|e| e.index).collect();
                assert_eq!(few, want[..3], "{s}");
            }
            assert!(log.search("nobody", 10).unwrap().is_empty());
        };
        check(&log);
        drop(log);
        let log = Log::open_with(&path, SUBJECT_EPOCH).unwrap();
        check(&log);
        assert_eq!(log.verify_all().unwrap().size, 3_000);
        drop(log);
        let db = Database::open(&path).unwrap();
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        assert_eq!(meta.get(SUBJECT_EPOCH_KEY).unwrap().unwrap().value(), 8, "a file keeps its epoch");
        assert_eq!(meta.get(SUBJECTS_INDEXED_KEY).unwrap().unwrap().value(), 3_000);
    }

    #[test]
    fn a_first_layout_file_missing_a_hash_is_refused_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let events: Vec<AuditEvent> = (0..8).map(|i| event(&format!("e{i}"), "s")).collect();
        let path = dir.path().join(LOG_FILE);
        write_v1(&path, &events, Some((1, 2)));
        let before = std::fs::read(&path).unwrap();
        let err = Log::open(dir.path()).unwrap_err();
        assert!(matches!(&err, LogError::Corrupt(m) if m.contains("subtree (level 1, index 2)")), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "nothing written");
    }
}
