//! Storage: one small SQL interface over two real backends, SQLite (embedded default, one file
//! per service) and PostgreSQL (distributed, one schema per service).
//!
//! Services write their SQL once and it runs unchanged on both backends. [`Db`] is the handle
//! (cheap to clone), [`Tx`] a transaction, [`Value`] / [`Row`] the parameter and result types,
//! [`Migration`] an embedded schema change.
//!
//! # SQL dialect rules
//!
//! * **Placeholders** are written `$1, $2, …` (PostgreSQL style). They may appear in any order
//!   and be reused (`WHERE a = $2 OR b = $2 AND c = $1`). On SQLite every `$N` outside string
//!   literals, quoted identifiers and comments is rewritten to `?N`, which SQLite binds by
//!   number. The number of parameters passed must equal the highest `$N` used.
//! * **Types**: only `BIGINT` (Rust `i64`), `TEXT` and `BLOB`. Booleans are stored as `BIGINT`
//!   0/1 ([`Value::from(bool)`](Value), [`Row::get_bool`]). In migrations the word `BLOB`
//!   (any case, outside literals) is replaced with `BYTEA` on PostgreSQL, so do not use `blob`
//!   as an identifier. Outside migrations write SQL that needs no type name at all, or `BIGINT`
//!   / `TEXT` (for example `CAST($1 AS BIGINT)`; `::` casts are PostgreSQL only).
//! * `INSERT … ON CONFLICT (…) DO NOTHING` / `DO UPDATE SET x = excluded.x` and `RETURNING`
//!   work on both; use them rather than `INSERT OR REPLACE` / `INSERT IGNORE`.
//! * Aggregates: `COUNT(*)` is `BIGINT` on both. `SUM(bigint)` is `NUMERIC` on PostgreSQL; whole
//!   numbers are read back as [`Value::Int`], anything fractional is an error (there is no float
//!   [`Value`]), so `CAST(… AS BIGINT)` where it matters. Comparisons such as `a = b` read back as
//!   `Int` 0/1 on both (PostgreSQL `BOOL` is mapped to 0/1).
//! * Write time as `BIGINT` (Unix seconds or milliseconds computed in Rust), not
//!   `CURRENT_TIMESTAMP`/`now()`, whose types differ between the backends.
//! * Migration files may hold several statements; one statement per [`Db::execute`] /
//!   [`Db::query`] call.
//!
//! # Errors
//!
//! A UNIQUE / PRIMARY KEY violation is [`StorageError::UniqueViolation`] on both backends
//! (callers turn it into 409); connection problems and pool time-outs are
//! [`StorageError::Unavailable`]; bad SQL and everything else the database rejects is
//! [`StorageError::Database`]. Nothing here panics on bad input.
//!
//! # Concurrency
//!
//! * SQLite: WAL mode; one writer connection behind a tokio mutex (used by [`Db::execute`], by
//!   statements that write even when sent through [`Db::query`], and by transactions, which run
//!   `BEGIN IMMEDIATE … COMMIT`), plus up to four read connections, opened lazily, for
//!   [`Db::query`] / [`Db::query_opt`] outside transactions, so reads do not queue behind writes
//!   and always see committed data. SQLite calls are short and run inline on the async worker
//!   thread (no `spawn_blocking`); a call only blocks for long if another *process* holds the
//!   write lock (bounded by `busy_timeout` = 5 s).
//! * PostgreSQL: a deadpool pool whose connections all have `search_path = acgs_<service>`.
//!   Migrations are serialised across processes by `pg_advisory_xact_lock` keyed by the schema.
//!
//! A transaction whose future is dropped (cancelled) is rolled back: on SQLite at once, on
//! PostgreSQL by a spawned task before the connection goes back to the pool (or the connection
//! is discarded when no runtime is available).

mod migrate;
mod postgres;
mod sqlite;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;

pub use migrate::{Migration, migrations_from_dir};

/// A parameter or column value. SQL uses only BIGINT (i64), TEXT, BLOB (BYTEA on PostgreSQL);
/// booleans are stored as BIGINT 0/1.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// SQL NULL (binds as NULL for any column type).
    Null,
    /// BIGINT.
    Int(i64),
    /// TEXT.
    Text(String),
    /// BLOB / BYTEA.
    Blob(Vec<u8>),
}

impl Value {
    /// A short name of the variant, for error messages.
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "integer",
            Value::Text(_) => "text",
            Value::Blob(_) => "blob",
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(i64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<&String> for Value {
    fn from(v: &String) -> Self {
        Value::Text(v.clone())
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Blob(v.to_vec())
    }
}

impl From<&Vec<u8>> for Value {
    fn from(v: &Vec<u8>) -> Self {
        Value::Blob(v.clone())
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        match v {
            Some(v) => v.into(),
            None => Value::Null,
        }
    }
}

/// Builds a `Vec<Value>` from anything `Into<Value>`: `params![id, name, None::<i64>]`.
#[macro_export]
macro_rules! params {
    () => {
        ::std::vec::Vec::<$crate::kernel::storage::Value>::new()
    };
    ($($value:expr),+ $(,)?) => {
        ::std::vec![$($crate::kernel::storage::Value::from($value)),+]
    };
}

/// One result row, columns by position.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    pub(crate) fn new(values: Vec<Value>) -> Self {
        Row { values }
    }

    /// The raw value of column `idx`.
    pub fn get(&self, idx: usize) -> Result<&Value, StorageError> {
        self.values.get(idx).ok_or_else(|| StorageError::Column {
            index: idx,
            reason: format!("no such column (row has {})", self.values.len()),
        })
    }

    fn wrong(&self, idx: usize, want: &str, got: &Value) -> StorageError {
        StorageError::Column { index: idx, reason: format!("expected {want}, found {}", got.kind()) }
    }

    /// A non-NULL integer.
    pub fn get_i64(&self, idx: usize) -> Result<i64, StorageError> {
        match self.get(idx)? {
            Value::Int(v) => Ok(*v),
            other => Err(self.wrong(idx, "integer", other)),
        }
    }

    /// An integer or NULL.
    pub fn get_opt_i64(&self, idx: usize) -> Result<Option<i64>, StorageError> {
        match self.get(idx)? {
            Value::Int(v) => Ok(Some(*v)),
            Value::Null => Ok(None),
            other => Err(self.wrong(idx, "integer or NULL", other)),
        }
    }

    /// A non-NULL integer read as a boolean (non-zero is true).
    pub fn get_bool(&self, idx: usize) -> Result<bool, StorageError> {
        self.get_i64(idx).map(|v| v != 0)
    }

    /// A non-NULL text, borrowed.
    pub fn get_str(&self, idx: usize) -> Result<&str, StorageError> {
        match self.get(idx)? {
            Value::Text(v) => Ok(v),
            other => Err(self.wrong(idx, "text", other)),
        }
    }

    /// A text or NULL, borrowed.
    pub fn get_opt_str(&self, idx: usize) -> Result<Option<&str>, StorageError> {
        match self.get(idx)? {
            Value::Text(v) => Ok(Some(v)),
            Value::Null => Ok(None),
            other => Err(self.wrong(idx, "text or NULL", other)),
        }
    }

    /// A non-NULL text, owned.
    pub fn get_string(&self, idx: usize) -> Result<String, StorageError> {
        self.get_str(idx).map(str::to_owned)
    }

    /// A non-NULL blob, borrowed.
    pub fn get_blob(&self, idx: usize) -> Result<&[u8], StorageError> {
        match self.get(idx)? {
            Value::Blob(v) => Ok(v),
            other => Err(self.wrong(idx, "blob", other)),
        }
    }

    /// A blob or NULL, borrowed.
    pub fn get_opt_blob(&self, idx: usize) -> Result<Option<&[u8]>, StorageError> {
        match self.get(idx)? {
            Value::Blob(v) => Ok(Some(v)),
            Value::Null => Ok(None),
            other => Err(self.wrong(idx, "blob or NULL", other)),
        }
    }

    /// All values, in column order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// The values, by value.
    pub fn into_values(self) -> Vec<Value> {
        self.values
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Everything storage can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A UNIQUE or PRIMARY KEY constraint was violated (SQLite SQLITE_CONSTRAINT_UNIQUE /
    /// _PRIMARYKEY, PostgreSQL 23505). Callers turn this into 409.
    #[error("unique constraint violated: {0}")]
    UniqueViolation(String),
    /// A column could not be read as asked (missing, NULL, wrong type, unsupported type).
    #[error("column {index}: {reason}")]
    Column { index: usize, reason: String },
    /// The store could not be opened (bad service name, bad URL, file system).
    #[error("cannot open storage: {0}")]
    Open(String),
    /// A migration failed (its transaction was rolled back).
    #[error("migration {version} ({name}) failed: {reason}")]
    Migration { version: i64, name: String, reason: String },
    /// The database cannot be reached right now: pool time-out, connection refused or lost,
    /// database locked by another process for longer than the busy time-out.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else the database rejected (bad SQL, wrong parameter count, other constraints).
    #[error("database error: {0}")]
    Database(String),
}

/// Which backend and where. Built by the config layer.
#[derive(Debug, Clone)]
pub enum StorageConfig {
    /// One SQLite file per service: `<data_dir>/<service>.db`, WAL mode.
    Sqlite { data_dir: PathBuf },
    /// One PostgreSQL database, one schema per service: `acgs_<service>`.
    Postgres { url: String, pool_size: usize },
}

enum Backend {
    Sqlite(sqlite::SqliteDb),
    Postgres(postgres::PgDb),
}

/// A handle on one service's store. Cheap to clone (an `Arc` inside).
#[derive(Clone)]
pub struct Db {
    inner: Arc<Backend>,
    /// Woken after a commit that wrote to the audit outbox, so its relay delivers at once.
    outbox_written: Arc<tokio::sync::Notify>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db").field("backend", &self.backend()).finish_non_exhaustive()
    }
}

/// Checks a service name: lowercase ASCII letters, digits and `_`, starting with a letter, at
/// most 48 characters. It becomes a file name and a schema name, so nothing else is allowed.
fn check_service(service: &str) -> Result<(), StorageError> {
    let ok = !service.is_empty()
        && service.len() <= 48
        && service.as_bytes()[0].is_ascii_lowercase()
        && service.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StorageError::Open(format!(
            "bad service name {service:?}: use lowercase letters, digits and '_', starting with a letter"
        )))
    }
}

impl Db {
    /// Opens (creating if needed) the store for `service` (a lowercase name like "auth").
    ///
    /// SQLite: creates `data_dir` (mode 0700) and `<service>.db` (mode 0600), WAL mode.
    /// PostgreSQL: a pool of `pool_size` connections with `search_path = acgs_<service>`; the
    /// schema is created if missing. Connection failures are [`StorageError::Unavailable`].
    pub async fn open(service: &str, config: &StorageConfig) -> Result<Db, StorageError> {
        check_service(service)?;
        let backend = match config {
            StorageConfig::Sqlite { data_dir } => Backend::Sqlite(sqlite::SqliteDb::open(service, data_dir)?),
            StorageConfig::Postgres { url, pool_size } => {
                Backend::Postgres(postgres::PgDb::open(service, url, *pool_size).await?)
            }
        };
        Ok(Db { inner: Arc::new(backend), outbox_written: Arc::new(tokio::sync::Notify::new()) })
    }

    /// Applies the not-yet-applied `migrations` in version order, each in its own transaction,
    /// recorded in `_migrations(version, name, applied_at)`. Safe to run from several processes
    /// at once. Returns the versions applied by this call.
    pub async fn migrate(&self, migrations: &[Migration]) -> Result<Vec<i64>, StorageError> {
        migrate::run(self, migrations).await
    }

    /// Runs one statement; returns the number of rows affected (rows returned, for a statement
    /// with `RETURNING`).
    pub async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StorageError> {
        match &*self.inner {
            Backend::Sqlite(db) => db.execute(sql, params).await,
            Backend::Postgres(db) => db.execute(sql, params).await,
        }
    }

    /// Runs one statement and returns all its rows.
    pub async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StorageError> {
        match &*self.inner {
            Backend::Sqlite(db) => db.query(sql, params).await,
            Backend::Postgres(db) => db.query(sql, params).await,
        }
    }

    /// Runs one statement and returns its first row, if any.
    pub async fn query_opt(&self, sql: &str, params: &[Value]) -> Result<Option<Row>, StorageError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    /// Begins a transaction (`BEGIN IMMEDIATE` on SQLite, so it holds the write lock from the
    /// start). Finish it with [`Tx::commit`]; dropping it uncommitted rolls it back. Keep it short:
    /// do slow work (password hashing, network calls) before beginning.
    ///
    /// ```text
    /// let mut tx = db.begin().await?;
    /// tx.execute("INSERT INTO t (k) VALUES ($1)", &params![1]).await?;
    /// audit::record(&mut tx, &event).await?;
    /// tx.commit().await?;
    /// ```
    pub async fn begin(&self) -> Result<Tx, StorageError> {
        self.begin_locked(false).await
    }

    /// [`Db::begin`]; with `lock`, also takes the migration lock (PostgreSQL advisory lock keyed
    /// by the schema; on SQLite the write lock taken by `BEGIN IMMEDIATE` already serialises).
    pub(crate) async fn begin_locked(&self, lock: bool) -> Result<Tx, StorageError> {
        let inner = match &*self.inner {
            Backend::Sqlite(db) => TxInner::Sqlite(db.begin().await?),
            Backend::Postgres(db) => TxInner::Postgres(Box::new(db.begin(lock).await?)),
        };
        Ok(Tx { inner, failed: None, outbox_written: self.outbox_written.clone(), wrote_outbox: false })
    }

    /// Runs `f` in one transaction: commit on `Ok`, rollback on `Err`, and rollback when the
    /// returned future is dropped before it finishes.
    ///
    /// ```text
    /// db.transaction(|tx| Box::pin(async move {
    ///     tx.execute("INSERT INTO t (k) VALUES ($1)", &params![1]).await?;
    ///     Ok::<_, StorageError>(())
    /// })).await?;
    /// ```
    pub async fn transaction<R, E, F>(&self, f: F) -> Result<R, E>
    where
        F: for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Result<R, E>> + Send,
        E: From<StorageError> + Send,
        R: Send,
    {
        let mut tx = self.begin().await?;
        let result = f(&mut tx).await;
        match result {
            Ok(value) => {
                tx.commit().await?;
                Ok(value)
            }
            Err(err) => {
                tx.rollback().await;
                Err(err)
            }
        }
    }

    /// Cheap liveness check for /ready (`SELECT 1`).
    pub async fn ping(&self) -> Result<(), StorageError> {
        let row = self.query_opt("SELECT 1", &[]).await?;
        match row {
            Some(row) if row.get_i64(0)? == 1 => Ok(()),
            _ => Err(StorageError::Database("SELECT 1 returned no 1".into())),
        }
    }

    /// Notified after each commit of a transaction that wrote to the audit outbox (see
    /// [`Tx::note_outbox_write`]); the outbox relay waits on it.
    pub(crate) fn outbox_written(&self) -> Arc<tokio::sync::Notify> {
        self.outbox_written.clone()
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match &*self.inner {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

enum TxInner {
    Sqlite(sqlite::SqliteTx),
    Postgres(Box<postgres::PgTx>),
}

/// An open transaction, handed to the closure of [`Db::transaction`]. Its reads see its own
/// writes. It is `Send`.
///
/// Once a statement in it has failed (anything but a [`StorageError::Column`] read error), the
/// transaction is aborted on both backends: later statements fail and it is rolled back even if
/// the closure returns `Ok` (PostgreSQL behaves so natively; SQLite is made to match). Use
/// `ON CONFLICT` instead of catching a [`StorageError::UniqueViolation`] inside a transaction.
pub struct Tx {
    inner: TxInner,
    failed: Option<String>,
    outbox_written: Arc<tokio::sync::Notify>,
    wrote_outbox: bool,
}

impl fmt::Debug for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match self.inner {
            TxInner::Sqlite(_) => "sqlite",
            TxInner::Postgres(_) => "postgres",
        };
        f.debug_struct("Tx").field("backend", &backend).field("failed", &self.failed).finish_non_exhaustive()
    }
}

impl Tx {
    /// Marks this transaction as one that wrote to the audit outbox: its commit wakes the relay.
    pub(crate) fn note_outbox_write(&mut self) {
        self.wrote_outbox = true;
    }

    fn check(&self) -> Result<(), StorageError> {
        match &self.failed {
            Some(first) => Err(StorageError::Database(format!("transaction aborted by an earlier error ({first})"))),
            None => Ok(()),
        }
    }

    fn note<T>(&mut self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(err) = &result
            && !matches!(err, StorageError::Column { .. })
            && self.failed.is_none()
        {
            self.failed = Some(err.to_string());
        }
        result
    }

    /// Runs one statement; returns the number of rows affected.
    pub async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StorageError> {
        self.check()?;
        let result = match &mut self.inner {
            TxInner::Sqlite(tx) => tx.execute(sql, params),
            TxInner::Postgres(tx) => tx.execute(sql, params).await,
        };
        self.note(result)
    }

    /// Runs one statement and returns all its rows.
    pub async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StorageError> {
        self.check()?;
        let result = match &mut self.inner {
            TxInner::Sqlite(tx) => tx.query(sql, params),
            TxInner::Postgres(tx) => tx.query(sql, params).await,
        };
        self.note(result)
    }

    /// Runs one statement and returns its first row, if any.
    pub async fn query_opt(&mut self, sql: &str, params: &[Value]) -> Result<Option<Row>, StorageError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    /// Runs several statements without parameters (migration files).
    pub(crate) async fn batch(&mut self, sql: &str) -> Result<(), StorageError> {
        self.check()?;
        let result = match &mut self.inner {
            TxInner::Sqlite(tx) => tx.batch(sql),
            TxInner::Postgres(tx) => tx.batch(&blob_to_bytea(sql)).await,
        };
        self.note(result)
    }

    /// Commits; if a statement failed earlier, rolls back instead and says so.
    pub async fn commit(mut self) -> Result<(), StorageError> {
        if let Some(first) = self.failed.clone() {
            self.rollback().await;
            return Err(StorageError::Database(format!(
                "transaction rolled back: an earlier statement failed ({first})"
            )));
        }
        match &mut self.inner {
            TxInner::Sqlite(tx) => tx.commit()?,
            TxInner::Postgres(tx) => tx.commit().await?,
        }
        if self.wrote_outbox {
            self.outbox_written.notify_one();
        }
        Ok(())
    }

    pub(crate) async fn rollback(&mut self) {
        match &mut self.inner {
            TxInner::Sqlite(tx) => tx.rollback(),
            TxInner::Postgres(tx) => tx.rollback().await,
        }
    }
}

/// Splits SQL into segments, each either code (`true`) or a string literal, quoted identifier
/// or comment (`false`), so rewrites touch code only. Unterminated literals run to the end.
fn sql_segments(sql: &str) -> Vec<(bool, &str)> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let end = match bytes[i] {
            q @ (b'\'' | b'"') => {
                // Quoted; a doubled quote is an escaped quote.
                let mut j = i + 1;
                loop {
                    match bytes.get(j) {
                        None => break j,
                        Some(&c) if c == q => {
                            if bytes.get(j + 1) == Some(&q) {
                                j += 2;
                            } else {
                                break j + 1;
                            }
                        }
                        Some(_) => j += 1,
                    }
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => match bytes[i..].iter().position(|&c| c == b'\n') {
                Some(p) => i + p + 1,
                None => bytes.len(),
            },
            b'/' if bytes.get(i + 1) == Some(&b'*') => match sql[i + 2..].find("*/") {
                Some(p) => i + 2 + p + 2,
                None => bytes.len(),
            },
            _ => {
                i += 1;
                continue;
            }
        };
        if start < i {
            out.push((true, &sql[start..i]));
        }
        out.push((false, &sql[i..end]));
        start = end;
        i = end;
    }
    if start < bytes.len() {
        out.push((true, &sql[start..]));
    }
    out
}

/// Rewrites `$N` placeholders (outside literals and comments) to SQLite's `?N`.
fn dollar_to_question(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    for (code, seg) in sql_segments(sql) {
        if !code {
            out.push_str(seg);
            continue;
        }
        let bytes = seg.as_bytes();
        let mut last = 0;
        for i in 0..bytes.len() {
            if bytes[i] == b'$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                // `x$1` would be part of an identifier in PostgreSQL; leave it alone.
                let in_word = i > 0 && is_word_byte(bytes[i - 1]);
                if !in_word {
                    out.push_str(&seg[last..i]);
                    out.push('?');
                    last = i + 1;
                }
            }
        }
        out.push_str(&seg[last..]);
    }
    out
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// Replaces the word `BLOB` (any case, outside literals and comments) with `BYTEA`.
fn blob_to_bytea(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    for (code, seg) in sql_segments(sql) {
        if !code {
            out.push_str(seg);
            continue;
        }
        let bytes = seg.as_bytes();
        let mut last = 0;
        let mut i = 0;
        while i < bytes.len() {
            if is_word_byte(bytes[i]) {
                let start = i;
                while i < bytes.len() && is_word_byte(bytes[i]) {
                    i += 1;
                }
                if seg[start..i].eq_ignore_ascii_case("blob") {
                    out.push_str(&seg[last..start]);
                    out.push_str("BYTEA");
                    last = i;
                }
            } else {
                i += 1;
            }
        }
        out.push_str(&seg[last..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_rewrite_outside_literals() {
        assert_eq!(
            dollar_to_question("SELECT $2, '$1', \"a$1\", $1 -- $3\n, $10 /* $4 */"),
            "SELECT ?2, '$1', \"a$1\", ?1 -- $3\n, ?10 /* $4 */"
        );
        assert_eq!(dollar_to_question("SELECT 'it''s $1', $1"), "SELECT 'it''s $1', ?1");
        assert_eq!(dollar_to_question("SELECT a$1, $"), "SELECT a$1, $");
        assert_eq!(dollar_to_question("SELECT 'open $1"), "SELECT 'open $1");
    }

    #[test]
    fn blob_becomes_bytea_as_a_word() {
        assert_eq!(
            blob_to_bytea("CREATE TABLE t (a BLOB, b blob NOT NULL, blobs TEXT, c TEXT DEFAULT 'BLOB');"),
            "CREATE TABLE t (a BYTEA, b BYTEA NOT NULL, blobs TEXT, c TEXT DEFAULT 'BLOB');"
        );
    }

    #[test]
    fn service_names() {
        assert!(check_service("auth").is_ok());
        assert!(check_service("policy_2").is_ok());
        for bad in ["", "Auth", "1x", "a-b", "a;drop", "../x"] {
            assert!(check_service(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn row_getters() {
        let row = Row::new(vec![Value::Int(7), Value::Null, Value::Text("x".into()), Value::Blob(vec![1])]);
        assert_eq!(row.get_i64(0).ok(), Some(7));
        assert!(row.get_bool(0).unwrap_or(false));
        assert_eq!(row.get_opt_i64(1).ok(), Some(None));
        assert!(matches!(row.get_i64(1), Err(StorageError::Column { index: 1, .. })));
        assert_eq!(row.get_str(2).ok(), Some("x"));
        assert_eq!(row.get_blob(3).ok(), Some(&[1u8][..]));
        assert!(matches!(row.get_str(9), Err(StorageError::Column { index: 9, .. })));
        assert_eq!(
            crate::params![1, "a", None::<i64>, true, vec![0u8]],
            vec![Value::Int(1), Value::Text("a".into()), Value::Null, Value::Int(1), Value::Blob(vec![0])]
        );
        assert!(crate::params![].is_empty());
    }
}
