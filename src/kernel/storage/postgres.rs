//! PostgreSQL backend: a deadpool pool on one database, every connection with
//! `search_path = acgs_<service>` (set as a startup option), schema created on open.
//!
//! [`Value`]s are bound by the type the server inferred for each placeholder (`Int` → INT8,
//! INT4 and INT2 range-checked, BOOL, OID; `Text` → TEXT, VARCHAR, NAME, …; `Blob` → BYTEA;
//! `Null` → NULL for the common types listed in `null_arg`). Columns are read by their type
//! (INT2/4/8, OID → `Int`; BOOL → `Int` 0/1; whole NUMERIC → `Int`; text types → `Text`;
//! BYTEA → `Blob`; NULL → `Null`). Statements are prepared once per connection
//! (`prepare_cached`). Connections use no TLS (`NoTls`).

use std::error::Error as StdError;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use deadpool_postgres::{ClientWrapper, Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::{NoTls, Statement};

use super::{Row, StorageError, Value};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct PgDb {
    pool: Pool,
    lock_key: i64,
}

/// FNV-1a of the schema name: the key of the advisory lock that serialises migrations.
fn lock_key(schema: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in "acgs-migrate:".bytes().chain(schema.bytes()) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

fn map_err(err: tokio_postgres::Error) -> StorageError {
    if let Some(db) = err.as_db_error() {
        let mut text = db.message().to_owned();
        if let Some(detail) = db.detail() {
            text.push_str(": ");
            text.push_str(detail);
        }
        if *db.code() == SqlState::UNIQUE_VIOLATION {
            return StorageError::UniqueViolation(text);
        }
        let code = db.code().code();
        if code.starts_with("08") || matches!(code, "53300" | "57P01" | "57P02" | "57P03") {
            return StorageError::Unavailable(text);
        }
        return StorageError::Database(format!("{text} (SQLSTATE {code})"));
    }
    let mut text = err.to_string();
    let mut io = false;
    let mut source = err.source();
    while let Some(cause) = source {
        io |= cause.is::<std::io::Error>();
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    if err.is_closed() || io { StorageError::Unavailable(text) } else { StorageError::Database(text) }
}

fn map_pool_err(err: PoolError) -> StorageError {
    match err {
        PoolError::Backend(e) => match map_err(e) {
            StorageError::Database(text) | StorageError::UniqueViolation(text) => StorageError::Unavailable(text),
            other => other,
        },
        other => StorageError::Unavailable(format!("connection pool: {other}")),
    }
}

/// A parameter converted to the Rust type that matches the server's inferred type.
enum Arg<'a> {
    I64(Option<i64>),
    I32(Option<i32>),
    I16(Option<i16>),
    I8(Option<i8>),
    U32(Option<u32>),
    Bool(Option<bool>),
    Text(Option<&'a str>),
    Bytes(Option<&'a [u8]>),
    F64(Option<f64>),
    F32(Option<f32>),
    Time(Option<SystemTime>),
    Inet(Option<IpAddr>),
}

impl Arg<'_> {
    fn as_dyn(&self) -> &(dyn ToSql + Sync) {
        match self {
            Arg::I64(v) => v,
            Arg::I32(v) => v,
            Arg::I16(v) => v,
            Arg::I8(v) => v,
            Arg::U32(v) => v,
            Arg::Bool(v) => v,
            Arg::Text(v) => v,
            Arg::Bytes(v) => v,
            Arg::F64(v) => v,
            Arg::F32(v) => v,
            Arg::Time(v) => v,
            Arg::Inet(v) => v,
        }
    }
}

/// A typed NULL for `ty`.
fn null_arg(ty: &Type) -> Option<Arg<'static>> {
    let arg = match *ty {
        Type::INT8 => Arg::I64(None),
        Type::INT4 => Arg::I32(None),
        Type::INT2 => Arg::I16(None),
        Type::CHAR => Arg::I8(None),
        Type::OID => Arg::U32(None),
        Type::BOOL => Arg::Bool(None),
        Type::BYTEA => Arg::Bytes(None),
        Type::FLOAT8 => Arg::F64(None),
        Type::FLOAT4 => Arg::F32(None),
        Type::TIMESTAMP | Type::TIMESTAMPTZ => Arg::Time(None),
        Type::INET => Arg::Inet(None),
        _ if <&str as ToSql>::accepts(ty) => Arg::Text(None),
        _ => return None,
    };
    Some(arg)
}

fn arg<'a>(n: usize, value: &'a Value, ty: &Type) -> Result<Arg<'a>, StorageError> {
    let mismatch = || StorageError::Database(format!("parameter ${n}: cannot bind {} to {ty}", value.kind()));
    let range = || StorageError::Database(format!("parameter ${n}: value out of range for {ty}"));
    Ok(match value {
        Value::Null => null_arg(ty).ok_or_else(mismatch)?,
        Value::Int(v) => match *ty {
            Type::INT8 => Arg::I64(Some(*v)),
            Type::INT4 => Arg::I32(Some(i32::try_from(*v).map_err(|_| range())?)),
            Type::INT2 => Arg::I16(Some(i16::try_from(*v).map_err(|_| range())?)),
            Type::OID => Arg::U32(Some(u32::try_from(*v).map_err(|_| range())?)),
            Type::BOOL => Arg::Bool(Some(*v != 0)),
            _ => return Err(mismatch()),
        },
        Value::Text(v) if <&str as ToSql>::accepts(ty) => Arg::Text(Some(v)),
        Value::Blob(v) if *ty == Type::BYTEA => Arg::Bytes(Some(v)),
        Value::Text(_) | Value::Blob(_) => return Err(mismatch()),
    })
}

fn args<'a>(stmt: &Statement, params: &'a [Value]) -> Result<Vec<Arg<'a>>, StorageError> {
    let types = stmt.params();
    if types.len() != params.len() {
        return Err(StorageError::Database(format!(
            "statement takes {} parameters, {} given",
            types.len(),
            params.len()
        )));
    }
    params.iter().zip(types).enumerate().map(|(i, (value, ty))| arg(i + 1, value, ty)).collect()
}

/// Any column, raw: decoded by [`column_value`].
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A NUMERIC in binary form, if it is a whole number in `i64` range.
fn numeric_to_i64(raw: &[u8]) -> Option<i64> {
    let word = |i: usize| -> Option<u16> { Some(u16::from_be_bytes([*raw.get(2 * i)?, *raw.get(2 * i + 1)?])) };
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(i16::from_be_bytes(word(1)?.to_be_bytes()));
    let sign = word(2)?;
    if raw.len() != 8 + 2 * ndigits || !(sign == 0 || sign == 0x4000) {
        return None; // malformed, NaN or infinity
    }
    let digit = |k: usize| word(4 + k).map(i128::from);
    let mut acc: i128 = 0;
    // Integer part: base-10000 digit groups 0..=weight (groups past ndigits are zero).
    for k in 0..=weight.max(-1) {
        let k = usize::try_from(k).ok()?;
        let d = if k < ndigits { digit(k)? } else { 0 };
        acc = acc.checked_mul(10_000)?.checked_add(d)?;
        if acc > i128::from(i64::MAX) + 1 {
            return None;
        }
    }
    // Fractional groups must all be zero.
    let first_fraction = usize::try_from(weight + 1).unwrap_or(0);
    for k in first_fraction..ndigits {
        if digit(k)? != 0 {
            return None;
        }
    }
    if sign == 0x4000 {
        acc = -acc;
    }
    i64::try_from(acc).ok()
}

fn column_value(index: usize, ty: &Type, raw: Option<&[u8]>) -> Result<Value, StorageError> {
    let Some(raw) = raw else {
        return Ok(Value::Null);
    };
    let bad = |reason: String| StorageError::Column { index, reason };
    let decode = |e: Box<dyn StdError + Sync + Send>| bad(format!("cannot decode {ty}: {e}"));
    Ok(match *ty {
        Type::INT8 => Value::Int(i64::from_sql(ty, raw).map_err(decode)?),
        Type::INT4 => Value::Int(i64::from(i32::from_sql(ty, raw).map_err(decode)?)),
        Type::INT2 => Value::Int(i64::from(i16::from_sql(ty, raw).map_err(decode)?)),
        Type::CHAR => Value::Int(i64::from(i8::from_sql(ty, raw).map_err(decode)?)),
        Type::OID => Value::Int(i64::from(u32::from_sql(ty, raw).map_err(decode)?)),
        Type::BOOL => Value::Int(i64::from(bool::from_sql(ty, raw).map_err(decode)?)),
        Type::BYTEA => Value::Blob(raw.to_vec()),
        // `SELECT f()` of a function returning void.
        Type::VOID => Value::Null,
        Type::NUMERIC => Value::Int(numeric_to_i64(raw).ok_or_else(|| {
            bad("NUMERIC value is not a whole number in BIGINT range; CAST it to BIGINT or TEXT".into())
        })?),
        _ if <&str as FromSql>::accepts(ty) => {
            Value::Text(<&str as FromSql>::from_sql(ty, raw).map_err(decode)?.to_owned())
        }
        _ => {
            return Err(bad(format!("unsupported column type {ty}; CAST it to BIGINT or TEXT")));
        }
    })
}

fn rows_of(rows: Vec<tokio_postgres::Row>) -> Result<Vec<Row>, StorageError> {
    rows.iter()
        .map(|row| {
            row.columns()
                .iter()
                .enumerate()
                .map(|(i, column)| {
                    let raw: Raw<'_> =
                        row.try_get(i).map_err(|e| StorageError::Column { index: i, reason: e.to_string() })?;
                    column_value(i, column.type_(), raw.0)
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Row::new)
        })
        .collect()
}

async fn execute_on(client: &ClientWrapper, sql: &str, params: &[Value]) -> Result<u64, StorageError> {
    let stmt = client.prepare_cached(sql).await.map_err(map_err)?;
    let args = args(&stmt, params)?;
    let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(Arg::as_dyn).collect();
    client.execute(&stmt, &refs).await.map_err(map_err)
}

async fn query_on(client: &ClientWrapper, sql: &str, params: &[Value]) -> Result<Vec<Row>, StorageError> {
    let stmt = client.prepare_cached(sql).await.map_err(map_err)?;
    let args = args(&stmt, params)?;
    let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(Arg::as_dyn).collect();
    let rows = client.query(&stmt, &refs).await.map_err(map_err)?;
    rows_of(rows)
}

impl PgDb {
    pub(super) async fn open(service: &str, url: &str, pool_size: usize) -> Result<PgDb, StorageError> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e| StorageError::Open(format!("bad PostgreSQL URL: {e}")))?;
        let schema = format!("acgs_{service}");
        let options = match config.get_options() {
            Some(existing) if !existing.trim().is_empty() => {
                format!("{existing} -c search_path={schema}")
            }
            _ => format!("-c search_path={schema}"),
        };
        config.options(&options);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name(format!("acgs-{service}"));
        }
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StorageError::Open(format!("connection pool: {e}")))?;
        let db = PgDb { pool, lock_key: lock_key(&schema) };
        db.create_schema(&schema).await?;
        Ok(db)
    }

    /// Creates the schema unless it exists (checked first, so a role without CREATE on the
    /// database can use a schema made for it), under the advisory lock so that concurrent
    /// opens do not race.
    async fn create_schema(&self, schema: &str) -> Result<(), StorageError> {
        let exists = "SELECT 1 FROM pg_namespace WHERE nspname = $1";
        let found = self.query(exists, &[Value::from(schema)]).await?;
        if !found.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin(true).await?;
        if tx.query(exists, &[Value::from(schema)]).await?.is_empty() {
            // `schema` is `acgs_` + a checked service name: safe to splice.
            tx.batch(&format!("CREATE SCHEMA {schema}")).await?;
        }
        tx.commit().await
    }

    async fn client(&self) -> Result<Object, StorageError> {
        self.pool.get().await.map_err(map_pool_err)
    }

    pub(super) async fn execute(&self, sql: &str, params: &[Value]) -> Result<u64, StorageError> {
        let client = self.client().await?;
        execute_on(&client, sql, params).await
    }

    pub(super) async fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StorageError> {
        let client = self.client().await?;
        query_on(&client, sql, params).await
    }

    /// `BEGIN`, and with `lock` the advisory transaction lock of this schema.
    pub(super) async fn begin(&self, lock: bool) -> Result<PgTx, StorageError> {
        // Built before BEGIN is sent, so that a cancelled BEGIN is still rolled back on drop.
        let mut tx = PgTx { client: Some(self.client().await?), open: true };
        tx.batch("BEGIN").await?;
        if lock {
            tx.query("SELECT pg_advisory_xact_lock($1)", &[Value::Int(self.lock_key)]).await?;
        }
        Ok(tx)
    }
}

/// A transaction on one pooled connection. Dropped while open, it is rolled back by a spawned
/// task before the connection returns to the pool (or the connection is discarded).
pub(super) struct PgTx {
    client: Option<Object>,
    open: bool,
}

impl PgTx {
    fn client(&self) -> Result<&ClientWrapper, StorageError> {
        self.client.as_deref().ok_or_else(|| StorageError::Unavailable("transaction connection is gone".into()))
    }

    pub(super) async fn execute(&mut self, sql: &str, params: &[Value]) -> Result<u64, StorageError> {
        execute_on(self.client()?, sql, params).await
    }

    pub(super) async fn query(&mut self, sql: &str, params: &[Value]) -> Result<Vec<Row>, StorageError> {
        query_on(self.client()?, sql, params).await
    }

    pub(super) async fn batch(&mut self, sql: &str) -> Result<(), StorageError> {
        self.client()?.batch_execute(sql).await.map_err(map_err)
    }

    pub(super) async fn commit(&mut self) -> Result<(), StorageError> {
        self.batch("COMMIT").await?;
        self.open = false;
        Ok(())
    }

    pub(super) async fn rollback(&mut self) {
        if !self.open {
            return;
        }
        if let Err(err) = self.batch("ROLLBACK").await {
            tracing::warn!(%err, "postgres rollback failed; discarding the connection");
            if let Some(client) = self.client.take() {
                drop(Object::take(client));
            }
        }
        self.open = false;
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let Some(client) = self.client.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    let result = client.batch_execute("ROLLBACK").await;
                    if let Err(err) = result {
                        tracing::warn!(%err, "postgres rollback of a dropped transaction failed");
                        drop(Object::take(client));
                    }
                });
            }
            // No runtime to roll back on: close the connection, the server rolls back.
            Err(_) => drop(Object::take(client)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::numeric_to_i64;

    fn numeric(weight: i16, sign: u16, digits: &[u16]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(digits.len() as u16).to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        for d in digits {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out
    }

    #[test]
    fn numeric_whole_numbers() {
        assert_eq!(numeric_to_i64(&numeric(0, 0, &[])), Some(0));
        assert_eq!(numeric_to_i64(&numeric(0, 0, &[42])), Some(42));
        assert_eq!(numeric_to_i64(&numeric(1, 0x4000, &[12, 3456])), Some(-123_456));
        assert_eq!(numeric_to_i64(&numeric(2, 0, &[5])), Some(500_000_000));
        assert_eq!(numeric_to_i64(&numeric(0, 0, &[1, 5000])), None); // 1.5
        assert_eq!(numeric_to_i64(&numeric(-1, 0, &[5000])), None); // 0.5
        assert_eq!(numeric_to_i64(&numeric(0, 0, &[7, 0])), Some(7)); // 7.0000
        assert_eq!(numeric_to_i64(&numeric(0, 0xC000, &[])), None); // NaN
        // i64::MAX = 922 3372 0368 5477 5807
        assert_eq!(numeric_to_i64(&numeric(4, 0, &[922, 3372, 368, 5477, 5807])), Some(i64::MAX));
        assert_eq!(numeric_to_i64(&numeric(4, 0x4000, &[922, 3372, 368, 5477, 5808])), Some(i64::MIN));
        assert_eq!(numeric_to_i64(&numeric(4, 0, &[922, 3372, 368, 5477, 5808])), None);
        assert_eq!(numeric_to_i64(&numeric(9, 0, &[1])), None);
    }
}
