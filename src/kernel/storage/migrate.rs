//! Embedded migrations: files `NNNN_name.sql` in a service's `migrations/<service>` directory,
//! applied in version order, each in its own transaction, and recorded in
//! `_migrations(version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`.
//!
//! Concurrency: on PostgreSQL every migration transaction first takes
//! `pg_advisory_xact_lock(<key of the schema>)` and re-checks `_migrations`, so several
//! processes can migrate at once and each version runs exactly once; on SQLite
//! `BEGIN IMMEDIATE` takes the database's write lock, which does the same.
//!
//! A file may hold several statements. SQLite ignores `PRAGMA foreign_keys` inside a
//! transaction, so migrations cannot switch it off. Applied migrations are never edited: a
//! version already recorded under another name is logged as a warning and skipped.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Db, StorageError, Value};

/// An embedded migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The `NNNN` of the file name; applied in increasing order.
    pub version: i64,
    /// The `name` of the file name (without `.sql`).
    pub name: &'static str,
    /// The statements. `BLOB` becomes `BYTEA` on PostgreSQL.
    pub sql: &'static str,
}

/// Loads the migrations of a service from an include_dir directory: files named
/// `NNNN_name.sql`, returned sorted by `NNNN`. Files starting with `.` are ignored;
/// subdirectories are not read. A badly named file, a non-UTF-8 file or a duplicate version is
/// an error ([`StorageError::Migration`] with version 0 when the version cannot be read).
pub fn migrations_from_dir(dir: &include_dir::Dir<'static>) -> Result<Vec<Migration>, StorageError> {
    let mut out = Vec::new();
    for file in dir.files() {
        let path = file.path();
        let file_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if file_name.starts_with('.') {
            continue;
        }
        let bad = |version: i64, reason: &str| StorageError::Migration {
            version,
            name: path.display().to_string(),
            reason: reason.to_owned(),
        };
        let expected = "expected a file name like 0001_create_users.sql";
        let stem = file_name.strip_suffix(".sql").ok_or_else(|| bad(0, expected))?;
        let (number, name) = stem.split_once('_').ok_or_else(|| bad(0, expected))?;
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
            return Err(bad(0, expected));
        }
        let version: i64 = number.parse().map_err(|_| bad(0, "version number out of range"))?;
        let sql = file.contents_utf8().ok_or_else(|| bad(version, "file is not UTF-8"))?;
        out.push(Migration { version, name, sql });
    }
    out.sort_by_key(|m| m.version);
    check_versions(&out)?;
    Ok(out)
}

fn check_versions(sorted: &[Migration]) -> Result<(), StorageError> {
    for pair in sorted.windows(2) {
        if pair[0].version == pair[1].version {
            return Err(StorageError::Migration {
                version: pair[1].version,
                name: pair[1].name.to_owned(),
                reason: format!("version also used by {:?}", pair[0].name),
            });
        }
    }
    Ok(())
}

fn failed(m: &Migration) -> impl Fn(StorageError) -> StorageError + '_ {
    move |err| StorageError::Migration { version: m.version, name: m.name.to_owned(), reason: err.to_string() }
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)).unwrap_or(0)
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS _migrations (\
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

pub(super) async fn run(db: &Db, migrations: &[Migration]) -> Result<Vec<i64>, StorageError> {
    let mut sorted = migrations.to_vec();
    sorted.sort_by_key(|m| m.version);
    check_versions(&sorted)?;

    let bookkeeping = |err: StorageError| StorageError::Migration {
        version: 0,
        name: "_migrations".to_owned(),
        reason: err.to_string(),
    };
    let mut tx = db.begin_locked(true).await.map_err(bookkeeping)?;
    tx.batch(CREATE_TABLE).await.map_err(bookkeeping)?;
    tx.commit().await.map_err(bookkeeping)?;

    let applied: HashMap<i64, String> = db
        .query("SELECT version, name FROM _migrations", &[])
        .await
        .map_err(bookkeeping)?
        .iter()
        .map(|row| Ok((row.get_i64(0)?, row.get_string(1)?)))
        .collect::<Result<_, StorageError>>()
        .map_err(bookkeeping)?;

    let mut done = Vec::new();
    for m in &sorted {
        if let Some(name) = applied.get(&m.version) {
            if name != m.name {
                tracing::warn!(
                    version = m.version,
                    recorded = %name,
                    embedded = m.name,
                    "migration version recorded under another name; skipped"
                );
            }
            continue;
        }
        let mut tx = db.begin_locked(true).await.map_err(failed(m))?;
        // Another process may have applied it while we waited for the lock.
        let again = tx
            .query_opt("SELECT name FROM _migrations WHERE version = $1", &[Value::Int(m.version)])
            .await
            .map_err(failed(m))?;
        if again.is_some() {
            tx.rollback().await;
            continue;
        }
        tx.batch(m.sql).await.map_err(failed(m))?;
        tx.execute(
            "INSERT INTO _migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[Value::Int(m.version), Value::from(m.name), Value::Int(now_secs())],
        )
        .await
        .map_err(failed(m))?;
        tx.commit().await.map_err(failed(m))?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        done.push(m.version);
    }
    Ok(done)
}
