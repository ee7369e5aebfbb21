//! SQLite backend: one file per service (`<data_dir>/<service>.db`, 0600, in a 0700 directory),
//! WAL mode, one writer connection behind a tokio mutex and up to four lazily opened read
//! connections.
//!
//! Calls run inline on the async worker thread: they are short, the writer mutex keeps writers
//! of this process from waiting on each other inside SQLite, and `busy_timeout` (5 s) bounds the
//! wait when another process holds the write lock. Statements are prepared with
//! `prepare_cached`. Page caches are kept small (`cache_size`) because seven services share one
//! process.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, ffi};
use tokio::sync::{Mutex, OwnedMutexGuard, Semaphore};

use super::{Row, StorageError, Value, dollar_to_question};

/// Read connections at most.
const READERS: usize = 4;
/// How long a statement waits for a lock held by another connection or process.
const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);
/// Page cache of the writer, KiB (negative `cache_size`).
const WRITER_CACHE_KIB: i64 = 1024;
/// Page cache of each reader, KiB.
const READER_CACHE_KIB: i64 = 512;

pub(super) struct SqliteDb {
    writer: Arc<Mutex<Connection>>,
    path: PathBuf,
    idle_readers: std::sync::Mutex<Vec<Connection>>,
    reader_permits: Semaphore,
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Int(v) => ValueRef::Integer(*v),
            Value::Text(v) => ValueRef::Text(v.as_bytes()),
            Value::Blob(v) => ValueRef::Blob(v),
        }))
    }
}

pub(super) fn map_err(err: rusqlite::Error) -> StorageError {
    if let rusqlite::Error::SqliteFailure(failure, message) = &err {
        let text = message.clone().unwrap_or_else(|| err.to_string());
        if matches!(failure.extended_code, ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY) {
            return StorageError::UniqueViolation(text);
        }
        if matches!(failure.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) {
            return StorageError::Unavailable(text);
        }
        return StorageError::Database(text);
    }
    StorageError::Database(err.to_string())
}

fn open_err(path: &Path, what: &str, err: impl std::fmt::Display) -> StorageError {
    StorageError::Open(format!("{}: {what}: {err}", path.display()))
}

/// Creates `dir` (and missing parents) with mode 0700 when it does not exist.
fn create_dir(dir: &Path) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| open_err(dir, "cannot create data directory", e))
}

/// Creates the database file with mode 0600 if it does not exist (SQLite gives the `-wal` and
/// `-shm` files the same mode).
fn create_file(path: &Path) -> Result<(), StorageError> {
    let mut options = fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop).map_err(|e| open_err(path, "cannot create database file", e))
}

fn open_writer(path: &Path) -> Result<Connection, StorageError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_err(path, "open", e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| open_err(path, "busy_timeout", e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
        .map_err(|e| open_err(path, "journal_mode", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(open_err(path, "journal_mode", format!("WAL refused ({mode})")));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-{WRITER_CACHE_KIB}; \
         PRAGMA journal_size_limit=16777216;"
    ))
    .map_err(|e| open_err(path, "pragmas", e))?;
    Ok(conn)
}

fn open_reader(path: &Path) -> Result<Connection, StorageError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(map_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
    conn.execute_batch(&format!(
        "PRAGMA query_only=ON; PRAGMA foreign_keys=ON; PRAGMA cache_size=-{READER_CACHE_KIB};"
    ))
    .map_err(map_err)?;
    Ok(conn)
}

/// Rolls back a transaction somebody left open on the writer (for example a raw `BEGIN` sent
/// through `execute`), so it cannot swallow later writes.
fn ensure_autocommit(conn: &Connection) {
    if !conn.is_autocommit() {
        tracing::warn!("sqlite writer was left inside a transaction; rolling it back");
        if let Err(err) = conn.execute_batch("ROLLBACK") {
            tracing::warn!(%err, "rollback of a stale sqlite transaction failed");
        }
    }
}

fn prepare<'c>(
    conn: &'c Connection,
    sql: &str,
    params: &[Value],
) -> Result<rusqlite::CachedStatement<'c>, StorageError> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    let expected = stmt.parameter_count();
    if expected != params.len() {
        return Err(StorageError::Database(format!("statement takes {expected} parameters, {} given", params.len())));
    }
    for (i, value) in params.iter().enumerate() {
        stmt.raw_bind_parameter(i + 1, value).map_err(map_err)?;
    }
    Ok(stmt)
}

fn column_value(index: usize, value: ValueRef<'_>) -> Result<Value, StorageError> {
    Ok(match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Int(v),
        ValueRef::Real(v) => {
            // Only whole numbers (AVG over integers, arithmetic); mirrors PostgreSQL NUMERIC.
            if v.is_finite() && v.fract() == 0.0 && (-9.2e18..=9.2e18).contains(&v) {
                Value::Int(v as i64)
            } else {
                return Err(StorageError::Column {
                    index,
                    reason: format!("REAL value {v} is not supported; CAST it to BIGINT or TEXT"),
                });
            }
        }
        ValueRef::Text(v) => match std::str::from_utf8(v) {
            Ok(s) => Value::Text(s.to_owned()),
            Err(e) => {
                return Err(StorageError::Column { index, reason: format!("TEXT is not UTF-8: {e}") });
            }
        },
        ValueRef::Blob(v) => Value::Blob(v.to_vec()),
    })
}

fn rows_of(mut stmt: rusqlite::CachedStatement<'_>) -> Result<Vec<Row>, StorageError> {
    let columns = stmt.column_count();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(map_err)? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(column_value(i, row.get_ref(i).map_err(map_err)?)?);
        }
        out.push(Row::new(values));
    }
    Ok(out)
}

fn execute_on(conn: &Connection, sql: &str, params: &[Value]) -> Result<u64, StorageError> {
    let mut stmt = prepare(conn, sql, params)?;
    if stmt.column_count() == 0 {
        stmt.raw_execute().map(|n| n as u64).map_err(map_err)
    } else {
        // RETURNING (or a SELECT): PostgreSQL reports the rows returned; so do we.
        let mut rows = stmt.raw_query();
        let mut n = 0u64;
        while rows.next().map_err(map_err)?.is_some() {
            n += 1;
        }
        Ok(n)
    }
}

fn query_on(conn: &Connection, sql: &str, params: &[Value]) -> Result<Vec<Row>, StorageError> {
    rows_of(prepare(conn, sql, params)?)
}

/// Runs a query on a read connection; `Ok(None)` when the statement writes and so belongs on
/// the writer.
fn query_on_reader(conn: &Connection, sql: &str, params: &[Value]) -> Result<Option<Vec<Row>>, StorageError> {
    let stmt = prepare(conn, sql, params)?;
    if !stmt.readonly() {
        stmt.discard();
        return Ok(None);
    }
    rows_of(stmt).map(Some)
}

impl SqliteDb {
    pub(super) fn open(service: &str, data_dir: &Path) -> Result<SqliteDb, StorageError> {
        create_dir(data_dir)?;
        let path = data_dir.join(format!("{service}.db"));
        create_file(&path)?;
        let writer = open_writer(&path)?;
        Ok(SqliteDb {
            writer: Arc::new(Mutex::new(writer)),
            path,
            idle_readers: std::sync::Mutex::new(Vec::new()),
            reader_permits: Semaphore::new(READERS),
        })
    }

    pub(super) async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StorageError> {
        let sql = dollar_to_question(sql);
        let conn = self.writer.lock().await;
        ensure_autocommit(&conn);
        execute_on(&conn, &sql, params)
    }

    pub(super) async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StorageError> {
        let sql = dollar_to_question(sql);
        let read = {
            let _permit = self.reader_permits.acquire().await.map_err(|e| StorageError::Unavailable(e.to_string()))?;
            let conn = self.take_reader()?;
            let result = query_on_reader(&conn, &sql, params);
            self.put_reader(conn);
            result?
        };
        match read {
            Some(rows) => Ok(rows),
            None => {
                let conn = self.writer.lock().await;
                ensure_autocommit(&conn);
                query_on(&conn, &sql, params)
            }
        }
    }

    fn take_reader(&self) -> Result<Connection, StorageError> {
        let idle = self.idle_readers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).pop();
        match idle {
            Some(conn) => Ok(conn),
            None => open_reader(&self.path),
        }
    }

    fn put_reader(&self, conn: Connection) {
        self.idle_readers.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(conn);
    }

    pub(super) async fn begin(&self) -> Result<SqliteTx, StorageError> {
        let conn = Arc::clone(&self.writer).lock_owned().await;
        ensure_autocommit(&conn);
        conn.execute_batch("BEGIN IMMEDIATE").map_err(map_err)?;
        Ok(SqliteTx { conn, open: true })
    }
}

/// A transaction on the writer connection; holds the writer mutex until dropped. Rolled back on
/// drop unless committed.
pub(super) struct SqliteTx {
    conn: OwnedMutexGuard<Connection>,
    open: bool,
}

impl SqliteTx {
    pub(super) fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StorageError> {
        execute_on(&self.conn, &dollar_to_question(sql), params)
    }

    pub(super) fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StorageError> {
        query_on(&self.conn, &dollar_to_question(sql), params)
    }

    pub(super) fn batch(&mut self, sql: &str) -> Result<(), StorageError> {
        self.conn.execute_batch(sql).map_err(map_err)
    }

    pub(super) fn commit(&mut self) -> Result<(), StorageError> {
        self.conn.execute_batch("COMMIT").map_err(map_err)?;
        self.open = false;
        Ok(())
    }

    pub(super) fn rollback(&mut self) {
        if self.open {
            self.open = false;
            if !self.conn.is_autocommit()
                && let Err(err) = self.conn.execute_batch("ROLLBACK")
            {
                tracing::warn!(%err, "sqlite rollback failed");
            }
        }
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        self.rollback();
    }
}
