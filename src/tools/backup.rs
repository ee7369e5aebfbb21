//! `acgs backup` and `acgs restore`: the whole deployment's state in one file, and back.
//!
//! A backup holds every table of every service with storage (auth, constitution, consensus —
//! their outboxes included, so events not yet delivered are delivered after a restore), each
//! read in one snapshot transaction, then the integrity log: the latest signed checkpoint, the
//! note verifier key, the signing key file when the data dir has it, and every leaf up to the
//! checkpoint's size, taken last so it covers at least what the tables' events describe. The
//! log comes from the redb file of a stopped deployment, or from a running one over HTTP
//! (`--log URL`: the public GETs; the file is locked while the service runs).
//!
//! Format: JSON lines (header, one line per table, the key, the checkpoint, leaves in chunks of
//! 1,000), written 0600 because it holds password hashes and signing keys.
//!
//! `acgs restore` first checks the log — the checkpoint's signature with the backup's key (or
//! `--key`), every leaf hashed into the checkpoint's root — and refuses the backup if anything
//! fails, before it writes anything. It then refuses a target that already holds data, creates
//! the stores (SQLite in `--data-dir`, or PostgreSQL with `--database-url`: a backup from either
//! restores into either), inserts every row, and rebuilds the log leaf by leaf, checking that
//! the new root equals the signed one.

use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value as Json, json};

use crate::config::Config;
use crate::embedded;
use crate::kernel::service::ServiceName;
use crate::kernel::storage::{Db, Value};
use crate::services::integrity::log::Log;
use crate::services::integrity::merkle::{RootBuilder, leaf_hash};
use crate::services::integrity::note::{self, NoteVerifier};
use crate::services::integrity::{KEY_FILE, key_path};

const FORMAT: &str = "acgs-backup";
const VERSION: u64 = 1;
const LEAF_CHUNK: usize = 1_000;
/// The services that keep tables.
const STORES: [ServiceName; 3] = [ServiceName::Auth, ServiceName::Constitution, ServiceName::Consensus];

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub config: crate::cli::ConfigArgs,
    /// The file to write (refused if it exists).
    #[arg(short = 'o', long, env = "ACGS_BACKUP_FILE", value_name = "FILE")]
    pub output: PathBuf,
    /// Read the integrity log from this running service (http://127.0.0.1:8002) instead of the
    /// redb file in the data dir.
    #[arg(long, env = "ACGS_BACKUP_LOG_URL", value_name = "URL")]
    pub log: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub config: crate::cli::ConfigArgs,
    /// The backup file.
    #[arg(long = "from", env = "ACGS_RESTORE_FILE", value_name = "FILE")]
    pub input: PathBuf,
    /// The note verifier key the backup's checkpoint must verify with [default: the key in the
    /// backup].
    #[arg(long, env = "ACGS_RESTORE_KEY", value_name = "KEY")]
    pub key: Option<String>,
}

/// Writes a backup of the deployment `config` describes. A backup that fails half-way is
/// removed: a file at the output path is always a complete backup.
pub async fn backup(config: &Config, args: &BackupArgs) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let written = write_backup(config, args, file).await;
    if written.is_err() {
        let _ = std::fs::remove_file(&args.output);
    }
    written
}

async fn write_backup(config: &Config, args: &BackupArgs, file: std::fs::File) -> anyhow::Result<()> {
    let mut out = BufWriter::new(file);
    let storage = config.storage();
    write_line(&mut out, json!({ "format": FORMAT, "version": VERSION, "created_at_ms": now_ms() }))?;
    let mut tables = 0;
    for service in STORES {
        let db = Db::open(service.as_str(), &storage).await.with_context(|| format!("{service}: opening storage"))?;
        for (table, columns, rows) in dump(&db).await.with_context(|| format!("{service}: reading its tables"))? {
            let rows: Vec<Json> = rows.iter().map(|r| Json::Array(r.iter().map(to_json).collect())).collect();
            write_line(
                &mut out,
                json!({ "store": service.as_str(), "table": table, "columns": columns, "rows": rows }),
            )?;
            tables += 1;
        }
    }
    let key_file = key_path(&config.data_dir);
    let signing_key = match std::fs::read_to_string(&key_file) {
        Ok(key) => Some(key),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "acgs: warning: no {KEY_FILE} in {} — the restored log will sign new checkpoints with a new key",
                config.data_dir.display()
            );
            None
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", key_file.display())),
    };
    let (checkpoint, public_key, leaves) = match &args.log {
        Some(url) => log_over_http(url).await?,
        None => log_from_file(config)?,
    };
    if let Some(key) = &signing_key {
        check_signing_key(key, &public_key)
            .with_context(|| format!("{} does not belong to this log", key_file.display()))?;
        write_line(&mut out, json!({ "integrity_key": key }))?;
    }
    // The same check restore makes, so that a backup that would not restore is never written.
    let signed = note::verify_checkpoint(&checkpoint, &NoteVerifier::parse(&public_key)?, None)
        .context("the log's checkpoint does not verify with its own key")?;
    let mut builder = RootBuilder::new();
    for leaf in &leaves {
        builder.push(leaf_hash(leaf));
    }
    anyhow::ensure!(
        builder.size() == signed.size && builder.root() == signed.root,
        "the log's {} entries do not hash to the root its checkpoint signs: no backup written",
        builder.size()
    );
    let size = leaves.len();
    write_line(&mut out, json!({ "checkpoint": checkpoint, "public_key": public_key }))?;
    for chunk in leaves.chunks(LEAF_CHUNK) {
        write_line(&mut out, json!({ "leaves": chunk.iter().map(|l| B64.encode(l)).collect::<Vec<_>>() }))?;
    }
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    println!("backup {}: {tables} tables, {size} log entries (checkpoint size {size})", args.output.display());
    Ok(())
}

/// The signing key must be the private half of the key the log's checkpoints verify with, or the
/// restored log would sign checkpoints nobody holding the old key can check.
fn check_signing_key(private: &str, public: &str) -> anyhow::Result<()> {
    let derived = note::NoteSigner::from_private_key(private.trim())?.verifier_key();
    anyhow::ensure!(
        derived == public.trim(),
        "it signs as {derived}, and the log's checkpoints verify with {}",
        public.trim()
    );
    Ok(())
}

fn write_line(out: &mut impl Write, value: Json) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, &value)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Every table of a store but `_migrations`, in creation order: (name, columns, rows), read in
/// one snapshot.
async fn dump(db: &Db) -> anyhow::Result<Vec<(String, Vec<String>, Vec<Vec<Value>>)>> {
    let postgres = db.backend() == "postgres";
    let mut tx = db.begin().await?;
    if postgres {
        tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", &[]).await?;
    }
    let names = if postgres {
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' ORDER BY c.oid"
    } else {
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY rowid"
    };
    let mut out = Vec::new();
    for row in tx.query(names, &[]).await? {
        let table = row.get_string(0)?;
        if table == "_migrations" || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let columns: Vec<String> = if postgres {
            tx.query(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() \
                 AND table_name = $1 ORDER BY ordinal_position",
                &[Value::from(table.as_str())],
            )
            .await?
            .iter()
            .map(|r| r.get_string(0))
            .collect::<Result<_, _>>()?
        } else {
            tx.query(&format!("SELECT name FROM pragma_table_info('{table}') ORDER BY cid"), &[])
                .await?
                .iter()
                .map(|r| r.get_string(0))
                .collect::<Result<_, _>>()?
        };
        let list = columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
        let rows = tx.query(&format!("SELECT {list} FROM {table}"), &[]).await?;
        out.push((table, columns, rows.into_iter().map(|r| r.into_values()).collect()));
    }
    tx.commit().await?;
    Ok(out)
}

/// (checkpoint text, verifier key, every leaf up to the checkpoint's size) from the redb file.
fn log_from_file(config: &Config) -> anyhow::Result<(String, String, Vec<Vec<u8>>)> {
    let log = Log::open(&config.data_dir).with_context(
        || "cannot open the integrity log (while acgs runs it holds the file: pass --log http://127.0.0.1:8002)",
    )?;
    let signer = note::NoteSigner::from_private_key(
        std::fs::read_to_string(key_path(&config.data_dir)).context("reading the log's signing key")?.trim(),
    )?;
    let (size, root) = log.head()?;
    let checkpoint = signer.sign_checkpoint(&note::Checkpoint::new(signer.name(), size, root))?;
    let mut leaves = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    while (leaves.len() as u64) < size {
        let page = log.entries(leaves.len() as u64, LEAF_CHUNK)?;
        if page.is_empty() {
            bail!("the log ends at {} entries, before its head of {size}", leaves.len());
        }
        leaves.extend(page.into_iter().map(|e| e.leaf));
    }
    Ok((checkpoint, signer.verifier_key(), leaves))
}

/// The same from a running integrity service.
async fn log_over_http(url: &str) -> anyhow::Result<(String, String, Vec<Vec<u8>>)> {
    let base = url.trim_end_matches('/');
    let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
    let text = |path: &'static str| {
        let http = http.clone();
        async move {
            let url = format!("{base}{path}");
            let response = http.get(&url).send().await.with_context(|| format!("GET {url}"))?;
            anyhow::ensure!(response.status().is_success(), "GET {url}: status {}", response.status());
            Ok::<_, anyhow::Error>(response.text().await?)
        }
    };
    let public_key = text("/api/v1/log/public-key").await?.trim().to_string();
    let checkpoint = text("/api/v1/log/checkpoint").await?;
    let verifier = NoteVerifier::parse(&public_key)?;
    let size = note::verify_checkpoint(&checkpoint, &verifier, None).context("the served checkpoint")?.size;
    let mut leaves: Vec<Vec<u8>> = Vec::new();
    while (leaves.len() as u64) < size {
        let want = (size - leaves.len() as u64).min(LEAF_CHUNK as u64);
        let url = format!("{base}/api/v1/log/entries?from={}&limit={want}", leaves.len());
        let page: Json =
            http.get(&url).send().await?.error_for_status()?.json().await.with_context(|| format!("GET {url}"))?;
        let entries = page["entries"].as_array().with_context(|| format!("GET {url}: no entries"))?;
        if entries.is_empty() {
            bail!("GET {url}: the log ends at {} entries, before its checkpoint's {size}", leaves.len());
        }
        for e in entries.iter().take(usize::try_from(want).unwrap_or(usize::MAX)) {
            let leaf = e["leaf"].as_str().with_context(|| format!("GET {url}: an entry without its leaf"))?;
            leaves.push(B64.decode(leaf)?);
        }
    }
    Ok((checkpoint, public_key, leaves))
}

/// Restores a backup into the stores and data dir `config` describes.
pub async fn restore(config: &Config, args: &RestoreArgs) -> anyhow::Result<()> {
    // 1. The log must verify before anything is written.
    let mut checkpoint = None;
    let mut verifier_key = String::new();
    let mut signing_key = None;
    let mut builder = RootBuilder::new();
    let mut header = false;
    for line in lines(&args.input)? {
        let line = line?;
        if !header {
            anyhow::ensure!(
                line["format"] == FORMAT && line["version"] == VERSION,
                "{} is not an acgs backup of format version {VERSION}",
                args.input.display()
            );
            header = true;
        } else if let Some(text) = line["checkpoint"].as_str() {
            let key = match &args.key {
                Some(key) => key.clone(),
                None => line["public_key"].as_str().context("the backup has no public key")?.to_string(),
            };
            let verifier = NoteVerifier::parse(&key).context("the verifier key")?;
            let cp = note::verify_checkpoint(text, &verifier, None)
                .map_err(|e| anyhow::anyhow!("the backup's checkpoint does not verify: {e}"))?;
            checkpoint = Some(cp);
            verifier_key = key;
        } else if let Some(key) = line["integrity_key"].as_str() {
            signing_key = Some(key.to_string());
        } else if let Some(leaves) = line["leaves"].as_array() {
            for leaf in leaves {
                builder.push(leaf_hash(&B64.decode(leaf.as_str().context("a leaf that is not text")?)?));
            }
        }
    }
    anyhow::ensure!(header, "{} is empty", args.input.display());
    let checkpoint = checkpoint.context("the backup has no checkpoint")?;
    if let Some(key) = &signing_key {
        check_signing_key(key, &verifier_key).context("the backup's signing key does not belong to its log")?;
    }
    anyhow::ensure!(
        builder.size() == checkpoint.size && builder.root() == checkpoint.root,
        "the backup's log does not verify: its {} leaves do not hash to the root its checkpoint signs for {} entries",
        builder.size(),
        checkpoint.size
    );

    // 2. The stores: created, empty, filled.
    let storage = config.storage();
    let mut stores = Vec::new();
    for service in STORES {
        let db = Db::open(service.as_str(), &storage).await.with_context(|| format!("{service}: opening storage"))?;
        // Checked before migrating: a store that holds data is refused untouched.
        for (table, _, rows) in dump(&db).await? {
            anyhow::ensure!(
                rows.is_empty(),
                "{service}: table {table} already holds data; restore into an empty target"
            );
        }
        db.migrate(&embedded::migrations(service)?).await.with_context(|| format!("{service}: migrating"))?;
        stores.push((service, db));
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let log = Log::open(&config.data_dir).context("opening the new integrity log")?;
    anyhow::ensure!(log.size()? == 0, "the integrity log in {} is not empty", config.data_dir.display());

    let mut tables = 0;
    let mut appended = 0u64;
    for line in lines(&args.input)? {
        let line = line?;
        if let Some(store) = line["store"].as_str() {
            let (_, db) = stores
                .iter()
                .find(|(s, _)| s.as_str() == store)
                .with_context(|| format!("the backup names an unknown store {store:?}"))?;
            load_table(db, &line).await.with_context(|| {
                format!(
                    "{store}: table {} (the restore stopped part-way: empty the target — a new data dir or \
                     database — before trying again)",
                    line["table"]
                )
            })?;
            tables += 1;
        } else if let Some(key) = line["integrity_key"].as_str() {
            let path = key_path(&config.data_dir);
            crate::services::auth::write_secret_file(&path, key)
                .with_context(|| format!("writing {}", path.display()))?;
        } else if let Some(leaves) = line["leaves"].as_array() {
            let mut events = Vec::with_capacity(leaves.len());
            let mut hashes = Vec::with_capacity(leaves.len());
            for leaf in leaves {
                let bytes = B64.decode(leaf.as_str().unwrap_or_default())?;
                hashes.push(leaf_hash(&bytes));
                events.push(serde_json::from_slice(&bytes).context("a leaf that is not an audit event")?);
            }
            log.append_batch(&events).await?;
            for (i, hash) in hashes.iter().enumerate() {
                let entry = log.entry(appended + i as u64)?;
                anyhow::ensure!(
                    entry.leaf_hash == *hash,
                    "entry {} did not restore byte for byte",
                    appended + i as u64
                );
            }
            appended += events.len() as u64;
        }
    }
    anyhow::ensure!(
        log.root(checkpoint.size)? == checkpoint.root,
        "the restored log's root differs from the signed checkpoint's"
    );
    println!(
        "restored {}: {tables} tables, {appended} log entries; the log's root for {} entries equals the backup's signed checkpoint",
        args.input.display(),
        checkpoint.size
    );
    Ok(())
}

async fn load_table(db: &Db, line: &Json) -> anyhow::Result<()> {
    let table = line["table"].as_str().context("no table name")?;
    anyhow::ensure!(table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "bad table name {table:?}");
    let columns: Vec<&str> =
        line["columns"].as_array().context("no columns")?.iter().filter_map(Json::as_str).collect();
    anyhow::ensure!(
        columns.iter().all(|c| c.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')),
        "bad column names"
    );
    let list = columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ");
    let marks = (1..=columns.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
    let sql = format!("INSERT INTO {table} ({list}) VALUES ({marks})");
    let mut tx = db.begin().await?;
    for row in line["rows"].as_array().context("no rows")? {
        let values: Vec<Value> =
            row.as_array().context("a row that is not a list")?.iter().map(from_json).collect::<Result<_, _>>()?;
        anyhow::ensure!(
            values.len() == columns.len(),
            "a row of {} values for {} columns",
            values.len(),
            columns.len()
        );
        tx.execute(&sql, &values).await?;
    }
    tx.commit().await?;
    Ok(())
}

fn to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Int(i) => json!(i),
        Value::Text(s) => json!(s),
        Value::Blob(b) => json!({ "base64": B64.encode(b) }),
    }
}

fn from_json(value: &Json) -> anyhow::Result<Value> {
    Ok(match value {
        Json::Null => Value::Null,
        Json::Number(n) => Value::Int(n.as_i64().context("a number that is not a 64-bit integer")?),
        Json::String(s) => Value::Text(s.clone()),
        Json::Object(o) => {
            Value::Blob(B64.decode(o.get("base64").and_then(Json::as_str).context("a blob without base64")?)?)
        }
        other => bail!("an unexpected value {other}"),
    })
}

fn lines(path: &Path) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Json>>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(std::io::BufReader::new(file).lines().enumerate().map(|(i, line)| {
        let line = line?;
        serde_json::from_str(&line).with_context(|| format!("line {} of the backup is not JSON", i + 1))
    }))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
