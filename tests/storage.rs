//! Integration tests of `acgs::kernel::storage` against real backends: SQLite in a temporary
//! directory always, and PostgreSQL too when `ACGS_TEST_DATABASE_URL` names a server where the
//! test may `CREATE DATABASE` (each test gets a fresh database, dropped at the end).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use acgs::kernel::storage::{Db, Migration, StorageConfig, StorageError, Value, migrations_from_dir};
use acgs::params;
use include_dir::{Dir, DirEntry, File};

struct Backend {
    label: &'static str,
    config: StorageConfig,
    _dir: Option<tempfile::TempDir>,
    pg: Option<PgDatabase>,
}

struct PgDatabase {
    admin_url: String,
    name: String,
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{host_part}/{name}{query}")
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to ACGS_TEST_DATABASE_URL");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn sqlite_backend() -> Backend {
    let dir = tempfile::tempdir().expect("tempdir");
    Backend {
        label: "sqlite",
        config: StorageConfig::Sqlite { data_dir: dir.path().join("data") },
        _dir: Some(dir),
        pg: None,
    }
}

async fn postgres_backend(admin_url: &str, pool_size: usize) -> Backend {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let name = format!("acgs_test_{}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst), nanos);
    admin(admin_url).await.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("CREATE DATABASE");
    Backend {
        label: "postgres",
        config: StorageConfig::Postgres { url: with_database(admin_url, &name), pool_size },
        _dir: None,
        pg: Some(PgDatabase { admin_url: admin_url.to_owned(), name }),
    }
}

/// SQLite, plus PostgreSQL when `ACGS_TEST_DATABASE_URL` is set.
async fn backends(pool_size: usize) -> Vec<Backend> {
    let mut out = vec![sqlite_backend()];
    if let Ok(url) = std::env::var("ACGS_TEST_DATABASE_URL")
        && !url.trim().is_empty()
    {
        out.push(postgres_backend(&url, pool_size).await);
    }
    out
}

impl Backend {
    async fn open(&self, service: &str) -> Db {
        Db::open(service, &self.config).await.unwrap_or_else(|e| panic!("{}: open: {e}", self.label))
    }

    async fn finish(self) {
        if let Some(pg) = self.pg {
            let _ = admin(&pg.admin_url)
                .await
                .batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", pg.name))
                .await;
        }
    }
}

const ITEMS: Migration = Migration {
    version: 1,
    name: "create_items",
    sql: "CREATE TABLE items (
            id BIGINT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            data BLOB,
            flag BIGINT NOT NULL DEFAULT 0
          );
          -- a comment mentioning BLOB and $1
          CREATE INDEX items_by_flag ON items (flag);",
};
const VALS: Migration = Migration {
    version: 2,
    name: "create_vals",
    sql: "CREATE TABLE vals (id BIGINT PRIMARY KEY, i BIGINT, t TEXT, b BLOB);",
};
const COUNTERS: Migration = Migration {
    version: 3,
    name: "create_counters",
    sql: "CREATE TABLE counters (k TEXT PRIMARY KEY, n BIGINT NOT NULL);
          INSERT INTO counters (k, n) VALUES ('c', 0);",
};

fn schema() -> Vec<Migration> {
    vec![ITEMS, VALS, COUNTERS]
}

async fn count(db: &Db, table: &str) -> i64 {
    db.query_opt(&format!("SELECT COUNT(*) FROM {table}"), &[])
        .await
        .expect("count")
        .expect("a row")
        .get_i64(0)
        .expect("an integer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once() {
    for b in backends(4).await {
        let l = b.label;
        let db = b.open("auth").await;
        // Given out of order; applied in version order.
        let applied = db.migrate(&[VALS, ITEMS]).await.expect("migrate");
        assert_eq!(applied, vec![1, 2], "{l}");
        assert_eq!(db.migrate(&[ITEMS, VALS]).await.expect("again"), Vec::<i64>::new(), "{l}");
        assert_eq!(db.migrate(&schema()).await.expect("third"), vec![3], "{l}");
        let rows = db
            .query("SELECT version, name, applied_at FROM _migrations ORDER BY version", &[])
            .await
            .expect("_migrations");
        let names: Vec<(i64, String)> =
            rows.iter().map(|r| (r.get_i64(0).expect("v"), r.get_string(1).expect("n"))).collect();
        assert_eq!(
            names,
            vec![(1, "create_items".to_owned()), (2, "create_vals".to_owned()), (3, "create_counters".to_owned())],
            "{l}"
        );
        assert!(rows[0].get_i64(2).expect("applied_at") > 1_600_000_000, "{l}");
        assert_eq!(count(&db, "counters").await, 1, "{l}");

        // A failing migration is rolled back as a whole and not recorded.
        let broken =
            Migration { version: 4, name: "broken", sql: "CREATE TABLE half (id BIGINT); CREATE TABLE broken (" };
        match db.migrate(&[ITEMS, broken]).await {
            Err(StorageError::Migration { version: 4, name, .. }) => assert_eq!(name, "broken"),
            other => panic!("{l}: expected a migration error, got {other:?}"),
        }
        assert!(db.query("SELECT * FROM half", &[]).await.is_err(), "{l}");
        assert_eq!(count(&db, "_migrations").await, 3, "{l}");

        // Duplicate versions are refused up front.
        let dup = Migration { version: 1, name: "other", sql: "SELECT 1" };
        assert!(matches!(db.migrate(&[ITEMS, dup]).await, Err(StorageError::Migration { version: 1, .. })), "{l}");

        // A second service is separate (its own file / schema).
        let other = b.open("policy").await;
        assert_eq!(other.migrate(&[ITEMS]).await.expect("other"), vec![1], "{l}");
        assert_eq!(count(&other, "items").await, 0, "{l}");
        drop((db, other));
        b.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrate_applies_each_version_once() {
    for b in backends(4).await {
        let l = b.label;
        let handles = [b.open("auth").await, b.open("auth").await, b.open("auth").await];
        let tasks: Vec<_> =
            handles.iter().cloned().map(|db| tokio::spawn(async move { db.migrate(&schema()).await })).collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.expect("join").expect("migrate"));
        }
        all.sort_unstable();
        assert_eq!(all, vec![1, 2, 3], "{l}");
        assert_eq!(count(&handles[0], "_migrations").await, 3, "{l}");
        assert_eq!(count(&handles[1], "counters").await, 1, "{l}");
        drop(handles);
        b.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_value_kind_round_trips() {
    for b in backends(4).await {
        let l = b.label;
        let db = b.open("auth").await;
        db.migrate(&schema()).await.expect("migrate");
        let rows: Vec<Vec<Value>> = vec![
            vec![Value::Int(1), Value::Int(i64::MAX), Value::Text("héllo ✓".into()), Value::Blob(vec![0, 1, 2, 255])],
            vec![Value::Int(2), Value::Int(i64::MIN), Value::Text(String::new()), Value::Blob(Vec::new())],
            vec![Value::Int(3), Value::Null, Value::Null, Value::Null],
            vec![
                Value::Int(4),
                Value::Int(0),
                Value::Text("it's $1 'quoted' -- not a comment".into()),
                Value::Blob(b"\0".to_vec()),
            ],
        ];
        for row in &rows {
            let n = db
                .execute("INSERT INTO vals (id, i, t, b) VALUES ($1, $2, $3, $4)", row)
                .await
                .unwrap_or_else(|e| panic!("{l}: insert {row:?}: {e}"));
            assert_eq!(n, 1, "{l}");
        }
        // From conversions, including None for every column type and a bool.
        let n = db
            .execute(
                "INSERT INTO vals (id, i, t, b) VALUES ($1, $2, $3, $4)",
                &params![5i32, true, &"owned".to_string(), &b"xy"[..]],
            )
            .await
            .expect("insert 5");
        assert_eq!(n, 1, "{l}");
        db.execute(
            "INSERT INTO vals (id, i, t, b) VALUES ($1, $2, $3, $4)",
            &params![6u32, None::<i64>, None::<String>, None::<Vec<u8>>],
        )
        .await
        .expect("insert 6");

        let got: Vec<Vec<Value>> = db
            .query("SELECT id, i, t, b FROM vals WHERE id <= $1 ORDER BY id", &params![4])
            .await
            .expect("select")
            .into_iter()
            .map(|r| r.into_values())
            .collect();
        assert_eq!(got, rows, "{l}");

        let five = db
            .query_opt("SELECT i, t, b FROM vals WHERE id = $1", &params![5])
            .await
            .expect("select 5")
            .expect("row 5");
        assert_eq!(five.len(), 3, "{l}");
        assert!(five.get_bool(0).expect("bool"), "{l}");
        assert_eq!(five.get_str(1).expect("str"), "owned", "{l}");
        assert_eq!(five.get_blob(2).expect("blob"), b"xy", "{l}");

        let six = db
            .query_opt("SELECT i, t, b FROM vals WHERE id = $1", &params![6])
            .await
            .expect("select 6")
            .expect("row 6");
        assert_eq!(six.get_opt_i64(0).expect("opt i64"), None, "{l}");
        assert_eq!(six.get_opt_str(1).expect("opt str"), None, "{l}");
        assert!(matches!(six.get_i64(0), Err(StorageError::Column { index: 0, .. })), "{l}");
        assert!(matches!(six.get_str(1), Err(StorageError::Column { index: 1, .. })), "{l}");

        assert!(db.query_opt("SELECT id FROM vals WHERE id = $1", &params![99]).await.expect("none").is_none(), "{l}");

        // Aggregates and comparisons read back as integers on both backends.
        let agg = db
            .query_opt("SELECT COUNT(*), SUM(i), MAX(i) = $1 FROM vals WHERE id IN (1, 2)", &params![i64::MAX])
            .await
            .expect("aggregate")
            .expect("row");
        assert_eq!(agg.get_i64(0).expect("count"), 2, "{l}");
        assert_eq!(agg.get_i64(1).expect("sum"), -1, "{l}");
        assert!(agg.get_bool(2).expect("cmp"), "{l}");
        drop(db);
        b.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholders_in_any_order_and_reused() {
    for b in backends(4).await {
        let l = b.label;
        let db = b.open("auth").await;
        db.migrate(&schema()).await.expect("migrate");
        let row = db.query_opt("SELECT $2, $1, $2", &params!["a", "b"]).await.expect("select").expect("row");
        assert_eq!(row.values(), &[Value::Text("b".into()), Value::Text("a".into()), Value::Text("b".into())], "{l}");
        // A `$1` inside a literal is text, not a placeholder.
        let row = db.query_opt("SELECT '$1 and $2', $1", &params!["x"]).await.expect("literal").expect("row");
        assert_eq!(row.get_str(0).expect("0"), "$1 and $2", "{l}");
        assert_eq!(row.get_str(1).expect("1"), "x", "{l}");

        db.execute("INSERT INTO vals (id, i, t) VALUES ($2, $1, $3)", &params![10, 1, "one"])
            .await
            .expect("insert reordered");
        db.execute("INSERT INTO vals (id, i, t) VALUES ($1, $1, $2)", &params![7, "seven"])
            .await
            .expect("insert reused");
        let row = db.query_opt("SELECT i, t FROM vals WHERE id = $1", &params![1]).await.expect("q").expect("row");
        assert_eq!(row.get_i64(0).expect("i"), 10, "{l}");
        let row = db
            .query_opt("SELECT t FROM vals WHERE id = $1 AND i = $1 AND t = $2", &params![7, "seven"])
            .await
            .expect("q")
            .expect("row");
        assert_eq!(row.get_str(0).expect("t"), "seven", "{l}");

        // Wrong number of parameters: an error, not a panic.
        assert!(
            matches!(
                db.query("SELECT id FROM vals WHERE id = $1", &params![1, 2]).await,
                Err(StorageError::Database(_))
            ),
            "{l}"
        );
        assert!(
            matches!(db.execute("DELETE FROM vals WHERE id = $2", &params![1]).await, Err(StorageError::Database(_))),
            "{l}"
        );
        drop(db);
        b.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unique_violation_and_upserts() {
    for b in backends(4).await {
        let l = b.label;
        let db = b.open("auth").await;
        db.migrate(&schema()).await.expect("migrate");
        let insert = "INSERT INTO items (id, name, data) VALUES ($1, $2, $3)";
        db.execute(insert, &params![1, "a", vec![1u8]]).await.expect("first");
        match db.execute(insert, &params![1, "b", None::<Vec<u8>>]).await {
            Err(StorageError::UniqueViolation(_)) => {}
            other => panic!("{l}: primary key: {other:?}"),
        }
        match db.execute(insert, &params![2, "a", None::<Vec<u8>>]).await {
            Err(StorageError::UniqueViolation(_)) => {}
            other => panic!("{l}: unique column: {other:?}"),
        }
        let n = db
            .execute("INSERT INTO items (id, name) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING", &params![1, "ignored"])
            .await
            .expect("do nothing");
        assert_eq!(n, 0, "{l}");
        let n = db
            .execute(
                "INSERT INTO items (id, name, flag) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET flag = excluded.flag",
                &params![1, "ignored", 7],
            )
            .await
            .expect("do update");
        assert_eq!(n, 1, "{l}");
        let row = db
            .query_opt("SELECT name, flag FROM items WHERE id = $1", &params![1])
            .await
            .expect("select")
            .expect("row");
        assert_eq!(row.get_str(0).expect("name"), "a", "{l}");
        assert_eq!(row.get_i64(1).expect("flag"), 7, "{l}");

        // RETURNING through query (a write, on SQLite routed to the writer) and execute.
        let row = db
            .query_opt("INSERT INTO items (id, name) VALUES ($1, $2) RETURNING id, flag", &params![2, "b"])
            .await
            .expect("returning")
            .expect("row");
        assert_eq!(row.get_i64(0).expect("id"), 2, "{l}");
        assert_eq!(row.get_i64(1).expect("flag"), 0, "{l}");
        let n =
            db.execute("UPDATE items SET flag = flag + 1 RETURNING id", &params![]).await.expect("update returning");
        assert_eq!(n, 2, "{l}");
        assert_eq!(count(&db, "items").await, 2, "{l}");

        // Inside a transaction: the violation surfaces and nothing is committed.
        let result: Result<(), StorageError> = db
            .transaction(|tx| {
                Box::pin(async move {
                    tx.execute(insert, &params![3, "c", None::<Vec<u8>>]).await?;
                    tx.execute(insert, &params![4, "c", None::<Vec<u8>>]).await?;
                    Ok(())
                })
            })
            .await;
        assert!(matches!(result, Err(StorageError::UniqueViolation(_))), "{l}: {result:?}");
        assert_eq!(count(&db, "items").await, 2, "{l}");
        drop(db);
        b.finish().await;
    }
}

#[derive(Debug)]
enum AppError {
    Storage(StorageError),
    Refused,
}

impl From<StorageError> for AppError {
    fn from(e: StorageError) -> Self {
        AppError::Storage(e)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_commit_roll_back_and_cancel() {
    for b in backends(2).await {
        let l = b.label;
        let db = b.open("auth").await;
        db.migrate(&schema()).await.expect("migrate");
        let insert = "INSERT INTO items (id, name) VALUES ($1, $2)";

        // Commit; the transaction sees its own writes; a value comes out.
        let seen: i64 = db
            .transaction(|tx| {
                Box::pin(async move {
                    tx.execute(insert, &params![1, "a"]).await?;
                    tx.execute(insert, &params![2, "b"]).await?;
                    let row = tx.query_opt("SELECT COUNT(*) FROM items", &[]).await?;
                    let n = row.map(|r| r.get_i64(0)).transpose()?.unwrap_or(0);
                    Ok::<_, StorageError>(n)
                })
            })
            .await
            .expect("commit");
        assert_eq!(seen, 2, "{l}");
        assert_eq!(count(&db, "items").await, 2, "{l}");

        // Rollback on Err.
        let result: Result<(), AppError> = db
            .transaction(|tx| {
                Box::pin(async move {
                    tx.execute(insert, &params![3, "c"]).await?;
                    Err(AppError::Refused)
                })
            })
            .await;
        assert!(matches!(result, Err(AppError::Refused)), "{l}: {result:?}");
        assert_eq!(count(&db, "items").await, 2, "{l}");

        // A failed statement aborts the transaction even if the closure swallows the error.
        let result: Result<(), AppError> = db
            .transaction(|tx| {
                Box::pin(async move {
                    tx.execute(insert, &params![4, "d"]).await?;
                    let dup = tx.execute(insert, &params![4, "d"]).await;
                    assert!(matches!(dup, Err(StorageError::UniqueViolation(_))));
                    let after = tx.query("SELECT 1", &[]).await;
                    assert!(matches!(after, Err(StorageError::Database(_))));
                    Ok(())
                })
            })
            .await;
        assert!(matches!(result, Err(AppError::Storage(StorageError::Database(_)))), "{l}: {result:?}");
        assert_eq!(count(&db, "items").await, 2, "{l}");

        // Rollback when the future is dropped mid-way (three times: a pool of two must not
        // be left with connections inside a transaction).
        for round in 0..3 {
            let pending = db.transaction(|tx| {
                Box::pin(async move {
                    tx.execute(insert, &params![10 + round, format!("dropped{round}")]).await?;
                    futures::future::pending::<()>().await;
                    Ok::<_, StorageError>(())
                })
            });
            let timed_out = tokio::time::timeout(Duration::from_millis(200), pending).await;
            assert!(timed_out.is_err(), "{l}: the transaction should hang");
            assert_eq!(count(&db, "items").await, 2, "{l}: round {round}");
        }
        // The store is still usable, the dropped ids are free again.
        db.transaction(|tx| {
            Box::pin(async move {
                tx.execute(insert, &params![10, "again"]).await?;
                Ok::<_, StorageError>(())
            })
        })
        .await
        .expect("after cancel");
        assert_eq!(count(&db, "items").await, 3, "{l}");
        if l == "postgres" {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let row = db
                .query_opt(
                    "SELECT COUNT(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
                    &[],
                )
                .await
                .expect("pg_stat_activity")
                .expect("row");
            assert_eq!(row.get_i64(0).expect("n"), 0, "{l}: idle in transaction");
        }

        // Concurrent transactions serialise correctly.
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move {
                    db.transaction(|tx| {
                        Box::pin(async move {
                            let n = tx
                                .query_opt("SELECT n FROM counters WHERE k = $1", &params!["c"])
                                .await?
                                .map(|r| r.get_i64(0))
                                .transpose()?
                                .unwrap_or(0);
                            tx.execute("UPDATE counters SET n = $1 WHERE k = $2 AND n = $3", &params![n + 1, "c", n])
                                .await
                        })
                    })
                    .await
                })
            })
            .collect();
        let mut updated = 0;
        for task in tasks {
            updated += task.await.expect("join").expect("increment");
        }
        let n = db
            .query_opt("SELECT n FROM counters WHERE k = $1", &params!["c"])
            .await
            .expect("counter")
            .expect("row")
            .get_i64(0)
            .expect("n");
        assert_eq!(n, i64::try_from(updated).expect("small"), "{l}");
        if l == "sqlite" {
            // BEGIN IMMEDIATE serialises read-modify-write completely.
            assert_eq!(n, 10, "{l}");
        }
        drop(db);
        b.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_see_committed_writes() {
    for b in backends(4).await {
        let l = b.label;
        let db = b.open("auth").await;
        db.migrate(&schema()).await.expect("migrate");
        for i in 0..60i64 {
            db.execute("INSERT INTO items (id, name) VALUES ($1, $2)", &params![i, format!("n{i}")])
                .await
                .expect("insert");
            assert_eq!(count(&db, "items").await, i + 1, "{l}");
            if i % 10 == 0 {
                db.transaction(|tx| {
                    Box::pin(
                        async move { tx.execute("UPDATE items SET flag = $1 WHERE id = $2", &params![1, i]).await },
                    )
                })
                .await
                .expect("tx");
                let flag = db
                    .query_opt("SELECT flag FROM items WHERE id = $1", &params![i])
                    .await
                    .expect("read")
                    .expect("row")
                    .get_i64(0)
                    .expect("flag");
                assert_eq!(flag, 1, "{l}");
            }
        }
        // Many readers at once (more than the SQLite reader pool).
        let reads = futures::future::join_all((0..12).map(|_| count(&db, "items"))).await;
        assert!(reads.iter().all(|&n| n == 60), "{l}: {reads:?}");
        db.ping().await.expect("ping");
        assert_eq!(db.backend(), l);
        drop(db);
        b.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sql_is_an_error_not_a_panic() {
    for b in backends(4).await {
        let l = b.label;
        let db = b.open("auth").await;
        db.migrate(&schema()).await.expect("migrate");
        for sql in
            ["SELEC 1", "SELECT * FROM no_such_table", "INSERT INTO items (nope) VALUES (1)", "SELECT 'unterminated"]
        {
            match db.query(sql, &[]).await {
                Err(StorageError::Database(_)) => {}
                other => panic!("{l}: query {sql:?}: {other:?}"),
            }
            match db.execute(sql, &[]).await {
                Err(StorageError::Database(_)) => {}
                other => panic!("{l}: execute {sql:?}: {other:?}"),
            }
        }
        // NOT NULL is a database error, not a unique violation.
        assert!(
            matches!(
                db.execute("INSERT INTO items (id, name) VALUES ($1, $2)", &params![1, None::<String>]).await,
                Err(StorageError::Database(_))
            ),
            "{l}"
        );
        // Fractions have no Value: a column error, on both backends.
        assert!(matches!(db.query("SELECT 1.5", &[]).await, Err(StorageError::Column { index: 0, .. })), "{l}");
        // Reading a text column as an integer.
        let row = db.query_opt("SELECT 'x'", &[]).await.expect("select").expect("row");
        assert!(matches!(row.get_i64(0), Err(StorageError::Column { index: 0, .. })), "{l}");
        assert!(row.get_i64(5).is_err(), "{l}");
        // Still healthy afterwards.
        db.ping().await.expect("ping");
        drop(db);
        b.finish().await;
    }
}

#[tokio::test]
async fn bad_service_names_are_refused() {
    let b = sqlite_backend();
    for name in ["", "Auth", "../x", "a;b", "a b"] {
        assert!(matches!(Db::open(name, &b.config).await, Err(StorageError::Open(_))), "{name:?}");
    }
}

#[tokio::test]
async fn unreachable_postgres_is_unavailable() {
    let config = StorageConfig::Postgres { url: "postgres://nobody:nothing@127.0.0.1:1/nothing".into(), pool_size: 2 };
    match Db::open("auth", &config).await {
        Err(StorageError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let config = StorageConfig::Postgres { url: "not a url at all=".into(), pool_size: 2 };
    assert!(matches!(Db::open("auth", &config).await, Err(StorageError::Open(_))));
}

#[cfg(unix)]
#[tokio::test]
async fn sqlite_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("nested").join("data");
    let db = Db::open("auth", &StorageConfig::Sqlite { data_dir: data_dir.clone() }).await.expect("open");
    db.migrate(&schema()).await.expect("migrate");
    db.execute("INSERT INTO items (id, name) VALUES ($1, $2)", &params![1, "a"]).await.expect("insert");
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
    };
    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(mode(&data_dir.join("auth.db")), 0o600);
    assert_eq!(mode(&data_dir.join("auth.db-wal")), 0o600);
    let journal: String =
        db.query_opt("PRAGMA journal_mode", &[]).await.expect("pragma").expect("row").get_string(0).expect("mode");
    assert_eq!(journal, "wal");
}

static GOOD_DIR: Dir<'static> = Dir::new(
    "migrations/auth",
    &[
        DirEntry::File(File::new("migrations/auth/0002_add_flag.sql", b"ALTER TABLE t ADD COLUMN flag BIGINT;")),
        DirEntry::File(File::new("migrations/auth/0001_create_t.sql", b"CREATE TABLE t (id BIGINT PRIMARY KEY);")),
        DirEntry::File(File::new("migrations/auth/.gitkeep", b"")),
    ],
);

#[test]
fn migrations_load_from_an_embedded_dir() {
    let loaded = migrations_from_dir(&GOOD_DIR).expect("load");
    let summary: Vec<(i64, &str)> = loaded.iter().map(|m| (m.version, m.name)).collect();
    assert_eq!(summary, vec![(1, "create_t"), (2, "add_flag")]);
    assert_eq!(loaded[0].sql, "CREATE TABLE t (id BIGINT PRIMARY KEY);");

    static BAD_NAMES: [&str; 6] = [
        "migrations/x/create.sql",
        "migrations/x/0001.sql",
        "migrations/x/0001_.sql",
        "migrations/x/00a1_x.sql",
        "migrations/x/0001_x.txt",
        "migrations/x/99999999999999999999_x.sql",
    ];
    for name in BAD_NAMES {
        let entries: &'static [DirEntry<'static>] =
            Box::leak(vec![DirEntry::File(File::new(name, b"SELECT 1;"))].into_boxed_slice());
        let dir: &'static Dir<'static> = Box::leak(Box::new(Dir::new("migrations/x", entries)));
        assert!(matches!(migrations_from_dir(dir), Err(StorageError::Migration { .. })), "{name}");
    }

    static DUPLICATE: Dir<'static> = Dir::new(
        "m",
        &[
            DirEntry::File(File::new("m/0001_a.sql", b"SELECT 1;")),
            DirEntry::File(File::new("m/1_b.sql", b"SELECT 1;")),
        ],
    );
    assert!(matches!(migrations_from_dir(&DUPLICATE), Err(StorageError::Migration { version: 1, .. })));

    static NOT_UTF8: Dir<'static> = Dir::new("m", &[DirEntry::File(File::new("m/0001_a.sql", &[0xff, 0xfe]))]);
    assert!(matches!(migrations_from_dir(&NOT_UTF8), Err(StorageError::Migration { version: 1, .. })));
}

#[test]
fn database_url_rewrite_for_tests() {
    assert_eq!(with_database("postgres://u:p@h:5432/postgres", "x"), "postgres://u:p@h:5432/x");
    assert_eq!(with_database("postgres://u:p@h/postgres?sslmode=disable", "x"), "postgres://u:p@h/x?sslmode=disable");
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}
