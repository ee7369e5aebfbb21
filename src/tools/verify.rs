//! `acgs verify`: check the integrity log as an outside auditor would, with nothing but the log's
//! public key, and say either `valid: …` or exactly which check failed, expected against got.
//!
//! One subcommand, three checks:
//!
//! * **One entry.** Offline: `--key KEY --checkpoint FILE --entry FILE --proof FILE` (the files
//!   as `GET /api/v1/log/checkpoint`, `/entries/{index}` and `/proof/inclusion` serve them).
//!   Online: `--log URL --index N`; with `--log`, any of the three files may still be given and
//!   only what is missing is fetched (`--log URL --entry FILE` proves *your copy* of an entry is in
//!   the log; `--log URL --checkpoint FILE --index N` checks against a checkpoint you kept). The
//!   checkpoint must be a C2SP signed note carrying a valid signature by the key, for the key's
//!   origin; the leaf hash is recomputed from the entry's leaf bytes, never taken from the entry;
//!   the RFC 9162 inclusion proof must lead from it to the checkpoint's root at its tree size.
//! * **The whole log**, `--audit URL`: verify the latest checkpoint, page through every entry it
//!   covers, recompute each leaf hash (and compare it with the one served) and the root from
//!   scratch. With `--checkpoint OLD` (a checkpoint kept from an earlier run), also prove the log
//!   still extends it, twice: the log's consistency proof must verify, *and* the old root must be
//!   recomputed from the walked entries. `--save-checkpoint FILE` keeps the verified checkpoint
//!   for the next run, so a cron job can chain audits.
//! * **A data directory**, `--audit-dir DIR`: [`Log::verify_all`] on `DIR/integrity.redb` (every
//!   leaf, stored subtree hash and the root recomputed), and with `--checkpoint` the root that
//!   checkpoint signs. The service must be stopped: redb locks the file.
//!
//! The key: `--key` takes the verifier key string (`<name>+<hex id>+<base64 key>`) or a file
//! holding it. Online without `--key`, the key the log serves is used, with a warning: that shows
//! the log agrees with itself, not that it is the log you mean (trust on first use). Pin the key.
//!
//! Exit codes: 0 valid; 1 invalid (lines starting `invalid:` name the check that failed);
//! 2 the command line, a key or an input file is wrong; 3 no verdict: the log could not be asked
//! (unreachable, a non-2xx answer, a malformed response) or the data dir is in use.
//!
//! Only `--key`, `--log` and `--timeout` have environment twins (`ACGS_VERIFY_KEY`,
//! `ACGS_VERIFY_LOG`, `ACGS_VERIFY_TIMEOUT`): they describe *which* log and key to trust; the
//! other flags name what to check in one run, where a value left in the environment would
//! silently change the question.
//!
//! Hashes, proofs and signatures are the library's (`merkle`, `note`, `log`): this module fetches,
//! decodes and reports.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::StreamExt;
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::parse_duration;
use crate::kernel::error::chain as error_chain;
use crate::services::integrity::KEY_FILE;
use crate::services::integrity::log::{self, AuditEvent, Log, LogError, MAX_PAGE};
use crate::services::integrity::merkle::{self, Hash, RootBuilder, SubtreeSource, VerifyError};
use crate::services::integrity::note::{self, Checkpoint, NoteError, NoteSigner, NoteVerifier};

const EXAMPLES: &str = "\
Examples:
  acgs verify --log http://127.0.0.1:8002 --index 3 --key KEY
  acgs verify --key key.txt --checkpoint checkpoint.txt --entry entry.json --proof proof.json
  acgs verify --audit http://127.0.0.1:8002 --key KEY --save-checkpoint last.txt
  acgs verify --audit URL --key KEY --checkpoint last.txt --save-checkpoint last.txt
  acgs verify --audit-dir ./acgs-data --checkpoint last.txt --key KEY

Exit codes: 0 valid, 1 invalid, 2 bad command line or input file, 3 the log could not be checked.";

/// Verify an entry of the integrity log against a signed checkpoint, or audit the whole log.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct VerifyArgs {
    /// The log's checkpoint key, `<name>+<hex id>+<base64 key>` as GET /api/v1/log/public-key
    /// serves it, or a file holding it. Without it, online checks use the key the log serves
    /// (and say so): pin it for a check that does not trust the log.
    #[arg(long, env = "ACGS_VERIFY_KEY", value_name = "KEY|FILE")]
    pub key: Option<String>,

    /// The integrity service's URL (http://127.0.0.1:8002): fetch whatever --checkpoint, --entry
    /// and --proof do not give.
    #[arg(long = "log", env = "ACGS_VERIFY_LOG", value_name = "URL")]
    pub log: Option<String>,

    /// The entry to verify, fetched from --log (or the index the --entry file must have).
    #[arg(long, value_name = "N")]
    pub index: Option<u64>,

    /// A signed checkpoint (the note GET /api/v1/log/checkpoint serves). With --audit or
    /// --audit-dir: one you kept earlier, which the log must still extend.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,

    /// An entry as GET /api/v1/log/entries/{index} serves it (JSON with base64 `leaf`).
    #[arg(long, value_name = "FILE")]
    pub entry: Option<PathBuf>,

    /// An inclusion proof as GET /api/v1/log/proof/inclusion serves it (JSON), for the
    /// checkpoint's tree size.
    #[arg(long, value_name = "FILE")]
    pub proof: Option<PathBuf>,

    /// Re-walk the whole log at URL (or --log) against its latest checkpoint: every leaf hash and
    /// the root recomputed.
    #[arg(long, value_name = "URL", num_args = 0..=1)]
    pub audit: Option<Option<String>>,

    /// Audit the log file of a data directory directly (stop the service first).
    #[arg(long, value_name = "DIR", conflicts_with = "audit")]
    pub audit_dir: Option<PathBuf>,

    /// After a valid --audit, write the checkpoint it verified to FILE (pass it as --checkpoint
    /// next time).
    #[arg(long, value_name = "FILE")]
    pub save_checkpoint: Option<PathBuf>,

    /// Time-out of each request to the log; units ms, s, m, h.
    #[arg(
        long,
        env = "ACGS_VERIFY_TIMEOUT",
        default_value = "30s",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub timeout: Duration,
}

/// The answer of a check that could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    Invalid,
}

/// Why no verdict could be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CannotVerify {
    /// The command line, a key or an input file is wrong (exit 2).
    Usage(String),
    /// The log could not be asked, answered something unusable, or the data dir is in use (exit 3).
    Unavailable(String),
}

impl std::fmt::Display for CannotVerify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CannotVerify::Usage(m) | CannotVerify::Unavailable(m) => f.write_str(m),
        }
    }
}

fn usage(m: impl Into<String>) -> CannotVerify {
    CannotVerify::Usage(m.into())
}

fn unavailable(m: impl Into<String>) -> CannotVerify {
    CannotVerify::Unavailable(m.into())
}

/// At most this many `invalid:` lines from an audit; the rest are counted.
const MAX_LISTED: usize = 50;
/// Pages an audit has in flight at once.
const PAGES_IN_FLIGHT: usize = 4;
/// How often an audit reports progress on stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Runs the check the flags ask for and prints its verdict on stdout.
pub async fn run(args: VerifyArgs) -> Result<Verdict, CannotVerify> {
    let one_entry_flags =
        [("--entry", args.entry.is_some()), ("--proof", args.proof.is_some()), ("--index", args.index.is_some())];
    if let Some(dir) = &args.audit_dir {
        refuse("--audit-dir", &one_entry_flags)?;
        refuse("--audit-dir", &[("--save-checkpoint", args.save_checkpoint.is_some())])?;
        return audit_dir(dir, args.checkpoint.as_deref(), args.key.as_deref()).await;
    }
    if let Some(audit) = &args.audit {
        refuse("--audit", &one_entry_flags)?;
        let url = match audit.as_deref().or(args.log.as_deref()) {
            Some(url) => url,
            None => return Err(usage("--audit needs the log's URL: --audit URL (or --log URL, ACGS_VERIFY_LOG)")),
        };
        return audit_log(url, &args).await;
    }
    refuse("verifying one entry", &[("--save-checkpoint (it goes with --audit)", args.save_checkpoint.is_some())])?;
    verify_entry(&args).await
}

fn refuse(mode: &str, flags: &[(&str, bool)]) -> Result<(), CannotVerify> {
    match flags.iter().find(|(_, given)| *given) {
        Some((flag, _)) => Err(usage(format!("{flag} cannot be used with {mode}"))),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// One entry

async fn verify_entry(args: &VerifyArgs) -> Result<Verdict, CannotVerify> {
    let client = args.log.as_deref().map(|url| LogClient::new(url, args.timeout)).transpose()?;
    if client.is_none() {
        let missing: Vec<&str> = [
            ("--checkpoint FILE", args.checkpoint.is_none()),
            ("--entry FILE", args.entry.is_none()),
            ("--proof FILE", args.proof.is_none()),
            ("--key KEY", args.key.is_none()),
        ]
        .into_iter()
        .filter_map(|(flag, missing)| missing.then_some(flag))
        .collect();
        if !missing.is_empty() {
            return Err(usage(format!(
                "verifying an entry offline needs {}; or give --log URL to fetch what is missing \
                 (or audit: --audit URL, --audit-dir DIR)",
                missing.join(", ")
            )));
        }
    } else if args.entry.is_none() && args.index.is_none() {
        return Err(usage("which entry? give --index N (or --entry FILE)"));
    }
    // Read every file before asking the log anything: a typo fails at once.
    let checkpoint_file = args.checkpoint.as_deref().map(|p| read_file("--checkpoint", p)).transpose()?;
    let entry_file = args.entry.as_deref().map(|p| read_json::<EntryJson>("--entry", p)).transpose()?;
    let proof_file = args.proof.as_deref().map(|p| read_json::<ProofJson>("--proof", p)).transpose()?;
    let key = resolve_key(args.key.as_deref(), client.as_ref()).await?;

    // 1. The checkpoint: a signed note by the key.
    let (cp_text, cp_source) = match (checkpoint_file, &client) {
        (Some(text), _) => (text, Source::file(args.checkpoint.as_deref())),
        (None, Some(c)) => (c.get_ok("/checkpoint").await?, Source::Log(c.url("/checkpoint"))),
        (None, None) => return Err(usage("--checkpoint FILE is needed")),
    };
    let cp = match verify_signed(&cp_text, &key.verifier) {
        Ok(cp) => cp,
        Err(why) => return Ok(invalid(&format!("checkpoint ({cp_source}): {why}"))),
    };

    // 2. The entry: its leaf hash recomputed from its bytes.
    let (entry, entry_source) = match (entry_file, &client, args.index) {
        (Some(entry), _, _) => (entry, Source::file(args.entry.as_deref())),
        (None, Some(c), Some(index)) => {
            let path = format!("/entries/{index}");
            let (status, body) = c.get(&path).await?;
            if status == StatusCode::NOT_FOUND {
                return Ok(invalid(&format!("entry: the log has no entry {index} ({})", error_message(&body))));
            }
            let body = c.check_status(&path, status, body)?;
            (c.parse_json(&path, &body)?, Source::Log(c.url(&path)))
        }
        _ => return Err(usage("which entry? give --index N (or --entry FILE)")),
    };
    if let Some(index) = args.index
        && entry.index != index
    {
        return Ok(invalid(&format!(
            "entry: you asked about entry {index}, but the entry ({entry_source}) is entry {}",
            entry.index
        )));
    }
    let entry = check_entry(entry, &entry_source)?;
    if let Some(problem) = &entry.problem {
        return Ok(invalid(&format!("entry ({entry_source}): {problem}")));
    }
    let index = entry.index;

    // 3. The inclusion proof, for the checkpoint's tree size.
    let (proof, proof_source) = match (proof_file, &client) {
        (Some(proof), _) => (proof, Source::file(args.proof.as_deref())),
        (None, Some(c)) => {
            if index >= cp.size {
                let message = format!("entry {index} is not in the tree the checkpoint signs ({} entries)", cp.size);
                return match cp_source {
                    Source::File(_) => Ok(invalid(&format!("proof: {message}"))),
                    Source::Log(_) => Err(unavailable(format!(
                        "{message} yet: the log signs a new checkpoint at most once per \
                         integrity.checkpoint_interval_ms; try again in a moment"
                    ))),
                };
            }
            let path = format!("/proof/inclusion?index={index}&tree_size={}", cp.size);
            (c.get_json::<ProofJson>(&path).await?, Source::Log(c.url(&path)))
        }
        (None, None) => return Err(usage("--proof FILE is needed")),
    };
    if proof.index != index {
        return Ok(invalid(&format!(
            "proof ({proof_source}): it is for entry {}, but the entry is {index}",
            proof.index
        )));
    }
    if proof.tree_size != cp.size {
        return Ok(invalid(&format!(
            "proof ({proof_source}): it is for tree size {}, but the checkpoint signs tree size {}; \
             fetch /api/v1/log/proof/inclusion?index={index}&tree_size={}",
            proof.tree_size, cp.size, cp.size
        )));
    }
    if let Some(stated) = &proof.leaf_hash {
        let stated =
            decode_hash(stated).ok_or_else(|| proof_source.malformed("`leaf_hash` is not the base64 of 32 bytes"))?;
        if stated != entry.leaf_hash {
            return Ok(invalid(&format!(
                "proof ({proof_source}): it is for leaf hash {}, but the entry's leaf bytes hash to {}",
                b64(&stated),
                b64(&entry.leaf_hash)
            )));
        }
    }
    let hashes = decode_hashes(&proof.hashes, &proof_source)?;
    match merkle::root_from_inclusion_proof(&entry.leaf_hash, index, cp.size, &hashes) {
        Ok(root) if root == cp.root => {}
        Ok(root) => {
            return Ok(invalid(&format!(
                "proof ({proof_source}): entry {index}'s leaf hash and proof lead to root {}, but the checkpoint signs \
                 root {} for tree size {}",
                b64(&root),
                b64(&cp.root),
                cp.size
            )));
        }
        Err(VerifyError::IndexOutOfRange { .. }) => {
            return Ok(invalid(&format!(
                "proof ({proof_source}): entry {index} is not in the tree the checkpoint signs ({} entries)",
                cp.size
            )));
        }
        Err(e) => {
            return Ok(invalid(&format!(
                "proof ({proof_source}): {e}: it has {} hashes, entry {index} in a tree of {} needs {}",
                hashes.len(),
                cp.size,
                inclusion_proof_len(index, cp.size)
            )));
        }
    }

    println!("valid: entry {index} is in the log at tree size {} (root {})", cp.size, b64(&cp.root));
    println!("  checkpoint  {}, {} entries, signed by {} ({cp_source})", cp.origin, cp.size, key.describe());
    println!("  key         {}", key.provenance);
    println!("  leaf hash   {}, recomputed from the entry's {} leaf bytes", b64(&entry.leaf_hash), entry.leaf.len());
    println!("  event       {}", describe_event(&entry.leaf));
    Ok(Verdict::Valid)
}

fn invalid(why: &str) -> Verdict {
    println!("invalid: {why}");
    Verdict::Invalid
}

/// The number of hashes in an inclusion proof of `index` in a tree of `size` leaves.
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    struct Zeros;
    impl SubtreeSource for Zeros {
        type Error = std::convert::Infallible;
        fn subtree(&self, _: u32, _: u64) -> Result<Hash, Self::Error> {
            Ok([0; 32])
        }
    }
    merkle::inclusion_proof(&Zeros, index, size).map_or(0, |p| p.len())
}

/// One line about the event a leaf encodes.
fn describe_event(leaf: &[u8]) -> String {
    match serde_json::from_slice::<AuditEvent>(leaf) {
        Ok(e) => {
            let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(e.at_ms) * 1_000_000)
                .ok()
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                .unwrap_or_else(|| format!("{} ms", e.at_ms));
            format!("{} on {} by {} at {at} (event {})", e.kind, e.subject, e.actor, e.event_id)
        }
        Err(_) => "(the leaf bytes are not an audit event)".to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// The whole log, over HTTP

async fn audit_log(url: &str, args: &VerifyArgs) -> Result<Verdict, CannotVerify> {
    let client = LogClient::new(url, args.timeout)?;
    let old_text = args.checkpoint.as_deref().map(|p| read_file("--checkpoint", p)).transpose()?;
    let key = resolve_key(args.key.as_deref(), Some(&client)).await?;
    let cp_text = client.get_ok("/checkpoint").await?;
    let cp = match verify_signed(&cp_text, &key.verifier) {
        Ok(cp) => cp,
        Err(why) => return Ok(invalid(&format!("checkpoint ({}): {why}", client.url("/checkpoint")))),
    };
    let old_source = Source::file(args.checkpoint.as_deref());
    let old = match old_text.map(|text| verify_signed(&text, &key.verifier)) {
        None => None,
        Some(Ok(old)) if old.origin == cp.origin => Some(old),
        Some(Ok(old)) => {
            return Ok(invalid(&format!(
                "checkpoint ({old_source}): it is for origin {:?}, the log's for {:?}",
                old.origin, cp.origin
            )));
        }
        Some(Err(why)) => return Ok(invalid(&format!("checkpoint ({old_source}): {why}"))),
    };

    let started = Instant::now();
    let mut last_progress = started;
    if cp.size > 10 * MAX_PAGE as u64 {
        eprintln!("acgs: auditing {} entries of {}", cp.size, cp.origin);
    }
    let mut problems: Vec<String> = Vec::new();
    let mut tree = RootBuilder::new();
    let mut old_root = old.as_ref().filter(|o| o.size == 0).map(|_| merkle::empty_root());
    let pages = (0..cp.size).step_by(MAX_PAGE).map(|from| (from, (cp.size - from).min(MAX_PAGE as u64)));
    let client_ref = &client;
    let mut pages = futures::stream::iter(pages)
        .map(|(from, limit)| async move {
            let path = format!("/entries?from={from}&limit={limit}");
            client_ref.get_json::<PageJson>(&path).await.map(|page| (from, limit, path, page))
        })
        .buffered(PAGES_IN_FLIGHT);
    'walk: while let Some(page) = pages.next().await {
        let (from, limit, path, page) = page?;
        let source = Source::Log(client.url(&path));
        for e in page.entries.into_iter().take(usize::try_from(limit).unwrap_or(MAX_PAGE)) {
            let expected = tree.size();
            if e.index != expected {
                problems.push(format!("walk: asked for entry {expected}, the log served entry {} ({source})", e.index));
                break 'walk;
            }
            let e = check_entry(e, &source)?;
            match e.problem {
                Some(p) => problems.push(p),
                None if serde_json::from_slice::<AuditEvent>(&e.leaf).is_err() => {
                    problems.push(format!("entry {expected}: its leaf bytes are not an audit event"))
                }
                None => {}
            }
            tree.push(e.leaf_hash);
            if old.as_ref().is_some_and(|o| o.size == tree.size()) {
                old_root = Some(tree.root());
            }
        }
        if tree.size() != from + limit {
            problems.push(format!(
                "walk: the log served entries up to {} only, but its checkpoint signs {} entries ({source})",
                tree.size(),
                cp.size
            ));
            break;
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            eprintln!("acgs: audited {} of {} entries", tree.size(), cp.size);
            last_progress = Instant::now();
        }
    }
    drop(pages);
    if tree.size() == cp.size {
        let root = tree.root();
        if root != cp.root {
            problems.push(format!(
                "root: the {} entries the log serves hash to root {}, but its checkpoint signs {}",
                cp.size,
                b64(&root),
                b64(&cp.root)
            ));
        }
    }
    if let Some(old) = &old {
        if old.size > cp.size {
            problems.push(format!(
                "history: your checkpoint ({old_source}) signs {} entries, but the log's latest signs only {}: \
                 entries were removed, or this is another log",
                old.size, cp.size
            ));
        } else {
            if let Some(recomputed) = old_root
                && recomputed != old.root
            {
                problems.push(format!(
                    "history: the log's first {} entries hash to root {}, but your checkpoint ({old_source}) signs \
                     {}: the log was rewritten since",
                    old.size,
                    b64(&recomputed),
                    b64(&old.root)
                ));
            }
            let path = format!("/proof/consistency?from={}&to={}", old.size, cp.size);
            let proof = client.get_json::<ConsistencyJson>(&path).await?;
            let source = Source::Log(client.url(&path));
            if (proof.from, proof.to) != (old.size, cp.size) {
                return Err(source.malformed(format!("a proof from {} to {} was served", proof.from, proof.to)));
            }
            let hashes = decode_hashes(&proof.hashes, &source)?;
            if let Err(e) = merkle::verify_consistency(old.size, cp.size, &hashes, &old.root, &cp.root) {
                problems.push(format!(
                    "consistency: the log's proof from your checkpoint (size {}) to its latest (size {}) does not \
                     verify: {e}",
                    old.size, cp.size
                ));
            }
        }
    }

    if !problems.is_empty() {
        for p in problems.iter().take(MAX_LISTED) {
            println!("invalid: {p}");
        }
        if problems.len() > MAX_LISTED {
            println!("invalid: … and {} more", problems.len() - MAX_LISTED);
        }
        println!(
            "  audited {} of {} entries of {} against its checkpoint (root {}), key {} ({})",
            tree.size(),
            cp.size,
            cp.origin,
            b64(&cp.root),
            key.describe(),
            key.provenance
        );
        return Ok(Verdict::Invalid);
    }
    println!(
        "valid: all {} entries of {} re-hashed to the root its checkpoint signs (root {})",
        cp.size,
        cp.origin,
        b64(&cp.root)
    );
    if let Some(old) = &old {
        println!(
            "  extends your checkpoint of {} entries ({old_source}): the consistency proof verifies and the old \
             root was recomputed from the entries",
            old.size
        );
    }
    println!("  checkpoint  signed by {}; key {}", key.describe(), key.provenance);
    println!("  walked in {:.1}s", started.elapsed().as_secs_f64());
    if let Some(path) = &args.save_checkpoint {
        write_file(path, &cp_text)?;
        println!("  saved the checkpoint to {} (pass it as --checkpoint next time)", path.display());
    }
    Ok(Verdict::Valid)
}

// ---------------------------------------------------------------------------------------------
// A data directory, directly

async fn audit_dir(dir: &Path, checkpoint: Option<&Path>, key: Option<&str>) -> Result<Verdict, CannotVerify> {
    let (file, data_dir) = if dir.is_file() {
        (dir.to_path_buf(), dir.parent().map(Path::to_path_buf).unwrap_or_default())
    } else {
        (dir.join(log::LOG_FILE), dir.to_path_buf())
    };
    if !file.is_file() {
        return Err(usage(format!(
            "--audit-dir {}: no integrity log there ({} does not exist)",
            dir.display(),
            file.display()
        )));
    }
    let signed = match checkpoint {
        None => None,
        Some(path) => {
            let text = read_file("--checkpoint", path)?;
            let key = match key {
                Some(arg) => Key { verifier: key_from_arg(arg)?, provenance: "given with --key".into() },
                None => data_dir_key(&data_dir)?,
            };
            match verify_signed(&text, &key.verifier) {
                Ok(cp) => Some((cp, key)),
                Err(why) => return Ok(invalid(&format!("checkpoint ({}): {why}", path.display()))),
            }
        }
    };
    let wanted = signed.as_ref().map(|(cp, _)| cp.size);
    let path = file.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let log = Log::open_file(&path)?;
        let verified = log.verify_all();
        let root_at = match (&verified, wanted) {
            (Ok(v), Some(size)) if size <= v.size => Some(log.root(size)?),
            _ => None,
        };
        Ok::<_, LogError>((verified, root_at))
    })
    .await
    .map_err(|e| unavailable(format!("auditing {}: {e}", file.display())))?;
    let (verified, root_at) = outcome.map_err(|e| match e {
        LogError::Storage(m) if m.contains("already open") => unavailable(format!(
            "{} is in use by another process: stop the integrity service first (redb locks the file), \
             or audit the running log with --audit URL",
            file.display()
        )),
        e => unavailable(format!("{}: {e}", file.display())),
    })?;
    let verified = match verified {
        Ok(v) => v,
        Err(LogError::Corrupt(why)) => return Ok(invalid(&format!("{}: {why}", file.display()))),
        Err(e) => return Err(unavailable(format!("{}: {e}", file.display()))),
    };
    if let Some((cp, key)) = &signed {
        let root_at = match root_at {
            Some(root) => root,
            None => {
                return Ok(invalid(&format!(
                    "history: your checkpoint signs {} entries, but {} holds only {}: entries were removed",
                    cp.size,
                    file.display(),
                    verified.size
                )));
            }
        };
        if root_at != cp.root {
            return Ok(invalid(&format!(
                "history: the first {} entries of {} hash to root {}, but your checkpoint signs {}: the log was \
                 rewritten since (key {}, {})",
                cp.size,
                file.display(),
                b64(&root_at),
                b64(&cp.root),
                key.describe(),
                key.provenance
            )));
        }
    }
    println!(
        "valid: {}: all {} entries re-hashed; every stored subtree hash and the root (root {}) recompute",
        file.display(),
        verified.size,
        b64(&verified.root)
    );
    match &signed {
        Some((cp, key)) => println!(
            "  and its first {} entries hash to the root your checkpoint signs (key {}, {})",
            cp.size,
            key.describe(),
            key.provenance
        ),
        None => println!(
            "  the file is self-consistent; pass --checkpoint with a checkpoint you kept to show it is the log \
             that was signed"
        ),
    }
    Ok(Verdict::Valid)
}

/// The verifier of the data dir's own signing key.
fn data_dir_key(data_dir: &Path) -> Result<Key, CannotVerify> {
    let path = data_dir.join(KEY_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| usage(format!("{}: {e} (or give the log's public key with --key)", path.display())))?;
    let signer = NoteSigner::from_private_key(text.trim()).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    Ok(Key {
        verifier: signer.verifier(),
        provenance: format!("derived from the data dir's own {KEY_FILE}: pass --key to check against a copy you trust"),
    })
}

// ---------------------------------------------------------------------------------------------
// Keys, checkpoints, entries

/// The key checkpoints must be signed by, and where it came from.
struct Key {
    verifier: NoteVerifier,
    provenance: String,
}

impl Key {
    /// `name+id`, enough to compare by eye.
    fn describe(&self) -> String {
        format!("{}+{}", self.verifier.name(), hex::encode(self.verifier.key_id()))
    }
}

async fn resolve_key(arg: Option<&str>, client: Option<&LogClient>) -> Result<Key, CannotVerify> {
    match (arg, client) {
        (Some(arg), _) => Ok(Key { verifier: key_from_arg(arg)?, provenance: "given with --key".into() }),
        (None, Some(c)) => {
            let text = c.get_ok("/public-key").await?;
            let verifier = NoteVerifier::parse(text.trim())
                .map_err(|e| unavailable(format!("GET {}: not a note verifier key: {e}", c.url("/public-key"))))?;
            eprintln!(
                "acgs: warning: no --key: using the key the log itself serves ({verifier}); that shows the log \
                 agrees with itself, not that it is the log you trust. Pin the key with --key or ACGS_VERIFY_KEY"
            );
            Ok(Key { verifier, provenance: "fetched from the log itself (not pinned: pass --key)".into() })
        }
        (None, None) => Err(usage("--key KEY is needed (the log's key: GET /api/v1/log/public-key)")),
    }
}

/// `--key`: the key itself, or a file holding it.
fn key_from_arg(arg: &str) -> Result<NoteVerifier, CannotVerify> {
    let path = Path::new(arg);
    let (text, what) = if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(|e| usage(format!("--key {arg}: {e}")))?;
        (text, format!("--key {arg}"))
    } else if !arg.contains('+') {
        return Err(usage(format!(
            "--key {arg}: no such file, and not a key (<name>+<hex id>+<base64 key>, as GET \
             /api/v1/log/public-key serves it)"
        )));
    } else {
        (arg.to_string(), "--key".to_string())
    };
    let text = text.trim();
    if text.starts_with("PRIVATE+KEY+") {
        return Err(usage(format!(
            "{what} is a private signing key; give its public key (GET /api/v1/log/public-key) instead"
        )));
    }
    NoteVerifier::parse(text)
        .map_err(|e| usage(format!("{what}: not a checkpoint key (<name>+<hex id>+<base64 Ed25519 key>): {e}")))
}

/// Verifies a signed checkpoint by `key`, for `key`'s origin (acgs names its checkpoint key
/// after the log's origin). The reason in words on failure.
fn verify_signed(text: &str, key: &NoteVerifier) -> Result<Checkpoint, String> {
    let cp = note::verify_checkpoint(text, key, None).map_err(|e| match e {
        NoteError::BadSignature { .. } => {
            format!("{e}: the note's text (origin, tree size or root) or its signature was changed")
        }
        NoteError::UnknownKey { .. } => format!("{e}: it was signed by another key, or the key line was changed"),
        e => e.to_string(),
    })?;
    if cp.origin != key.name() {
        return Err(format!(
            "it is for origin {:?}, but the key is {:?}'s (acgs names the key after the log's origin)",
            cp.origin,
            key.name()
        ));
    }
    Ok(cp)
}

/// An entry as the log serves it.
#[derive(Debug, Deserialize)]
struct EntryJson {
    index: u64,
    leaf: String,
    #[serde(default)]
    leaf_hash: Option<String>,
    #[serde(default)]
    event: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct PageJson {
    entries: Vec<EntryJson>,
}

#[derive(Debug, Deserialize)]
struct ProofJson {
    index: u64,
    tree_size: u64,
    #[serde(default)]
    leaf_hash: Option<String>,
    hashes: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ConsistencyJson {
    from: u64,
    to: u64,
    hashes: Vec<String>,
}

/// An entry with its leaf hash recomputed, and what is wrong with it, if anything.
struct CheckedEntry {
    index: u64,
    leaf: Vec<u8>,
    leaf_hash: Hash,
    problem: Option<String>,
}

/// Decodes an entry, recomputes its leaf hash, and compares it with the one it states and its
/// `event` with what its leaf encodes (the leaf is what the log signs; `event` is a view of it).
fn check_entry(e: EntryJson, source: &Source) -> Result<CheckedEntry, CannotVerify> {
    let index = e.index;
    let leaf = B64.decode(&e.leaf).map_err(|_| source.malformed(format!("entry {index}: `leaf` is not base64")))?;
    let leaf_hash = merkle::leaf_hash(&leaf);
    let mut problem = None;
    if let Some(stated) = &e.leaf_hash {
        let stated = decode_hash(stated)
            .ok_or_else(|| source.malformed(format!("entry {index}: `leaf_hash` is not the base64 of 32 bytes")))?;
        if stated != leaf_hash {
            problem = Some(format!(
                "entry {index}: its leaf bytes hash to {}, but its leaf_hash is {}",
                b64(&leaf_hash),
                b64(&stated)
            ));
        }
    }
    if let (None, Some(event)) = (&problem, &e.event)
        && serde_json::from_slice::<Value>(&leaf).ok().as_ref() != Some(event)
    {
        problem = Some(format!(
            "entry {index}: its `event` is not what its leaf bytes encode (the leaf is what the log signs)"
        ));
    }
    Ok(CheckedEntry { index, leaf, leaf_hash, problem })
}

fn b64(h: &Hash) -> String {
    B64.encode(h)
}

fn decode_hash(s: &str) -> Option<Hash> {
    B64.decode(s).ok()?.try_into().ok()
}

fn decode_hashes(hashes: &[String], source: &Source) -> Result<Vec<Hash>, CannotVerify> {
    hashes
        .iter()
        .enumerate()
        .map(|(i, h)| {
            decode_hash(h).ok_or_else(|| source.malformed(format!("`hashes[{i}]` is not the base64 of 32 bytes")))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Files and the log over HTTP

/// Where a piece of evidence came from: a file (a malformed one is the caller's mistake, exit 2)
/// or the log (a malformed answer means no verdict, exit 3).
enum Source {
    File(PathBuf),
    Log(String),
}

impl Source {
    fn file(path: Option<&Path>) -> Source {
        Source::File(path.map(Path::to_path_buf).unwrap_or_default())
    }

    fn malformed(&self, what: impl std::fmt::Display) -> CannotVerify {
        match self {
            Source::File(p) => usage(format!("{}: {what}", p.display())),
            Source::Log(url) => unavailable(format!("GET {url}: {what}")),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Log(url) => write!(f, "from {url}"),
        }
    }
}

fn read_file(flag: &str, path: &Path) -> Result<String, CannotVerify> {
    std::fs::read_to_string(path).map_err(|e| usage(format!("{flag} {}: {e}", path.display())))
}

fn read_json<T: DeserializeOwned>(flag: &str, path: &Path) -> Result<T, CannotVerify> {
    let text = read_file(flag, path)?;
    serde_json::from_str(&text)
        .map_err(|e| usage(format!("{flag} {}: not the JSON the log serves for it: {e}", path.display())))
}

/// Writes `text` to `path` through a temporary file in the same directory, so a reader never
/// sees half a checkpoint.
fn write_file(path: &Path, text: &str) -> Result<(), CannotVerify> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| usage(format!("--save-checkpoint {}: {e}", path.display())))
}

/// The log's public GETs.
struct LogClient {
    /// `scheme://host:port[/prefix]`, without a trailing slash.
    base: String,
    http: reqwest::Client,
}

impl LogClient {
    /// Accepts the service's URL with or without a trailing `/` or `/api/v1/log`.
    fn new(url: &str, timeout: Duration) -> Result<LogClient, CannotVerify> {
        let base = url.trim().trim_end_matches('/');
        let base = base.strip_suffix("/api/v1/log").unwrap_or(base);
        let parsed = reqwest::Url::parse(base).map_err(|e| usage(format!("invalid log URL {url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(usage(format!("invalid log URL {url:?}: the scheme must be http or https")));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("acgs-verify/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| unavailable(format!("building the HTTP client: {}", error_chain(&e))))?;
        Ok(LogClient { base: base.to_string(), http })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v1/log{path}", self.base)
    }

    /// One GET: its status and body, or why there was none.
    async fn get(&self, path: &str) -> Result<(StatusCode, String), CannotVerify> {
        let url = self.url(path);
        let response = self.http.get(&url).send().await.map_err(|e| {
            // reqwest's first line repeats the URL ("error sending request for url (…)").
            let chain = error_chain(&e);
            let prefix = format!("error sending request for url ({url}): ");
            unavailable(format!("GET {url}: {}", chain.strip_prefix(&prefix).unwrap_or(&chain)))
        })?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| unavailable(format!("GET {url}: reading the answer: {}", error_chain(&e))))?;
        Ok((status, body))
    }

    fn check_status(&self, path: &str, status: StatusCode, body: String) -> Result<String, CannotVerify> {
        if status.is_success() {
            Ok(body)
        } else {
            Err(unavailable(format!("GET {} answered {status}: {}", self.url(path), error_message(&body))))
        }
    }

    async fn get_ok(&self, path: &str) -> Result<String, CannotVerify> {
        let (status, body) = self.get(path).await?;
        self.check_status(path, status, body)
    }

    fn parse_json<T: DeserializeOwned>(&self, path: &str, body: &str) -> Result<T, CannotVerify> {
        serde_json::from_str(body)
            .map_err(|e| unavailable(format!("GET {}: not the JSON expected: {e}", self.url(path))))
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, CannotVerify> {
        let body = self.get_ok(path).await?;
        self.parse_json(path, &body)
    }
}

/// The message of an acgs error body, or the start of whatever else was answered.
fn error_message(body: &str) -> String {
    if let Some(m) = serde_json::from_str::<Value>(body).ok().as_ref().and_then(|v| v["error"]["message"].as_str()) {
        return m.to_string();
    }
    let line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None if line.is_empty() => "(empty body)".to_string(),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_lengths() {
        assert_eq!(inclusion_proof_len(0, 1), 0);
        assert_eq!(inclusion_proof_len(0, 8), 3);
        assert_eq!(inclusion_proof_len(5, 6), 2);
        assert_eq!(inclusion_proof_len(6, 6), 0);
    }

    #[test]
    fn log_urls_are_normalised_and_checked() {
        let t = Duration::from_secs(1);
        for url in ["http://h:8002", "http://h:8002/", "http://h:8002/api/v1/log", "http://h:8002/api/v1/log/"] {
            assert_eq!(LogClient::new(url, t).expect(url).url("/checkpoint"), "http://h:8002/api/v1/log/checkpoint");
        }
        assert!(matches!(LogClient::new("ftp://h", t), Err(CannotVerify::Usage(_))));
        assert!(matches!(LogClient::new("not a url", t), Err(CannotVerify::Usage(_))));
    }

    #[test]
    fn keys_are_read_from_the_flag_or_a_file_and_private_keys_are_refused() {
        let signer =
            NoteSigner::new("acgs.local/log", ed25519_dalek::SigningKey::from_bytes(&[5; 32])).expect("signer");
        let vkey = signer.verifier_key();
        assert_eq!(key_from_arg(&vkey).expect("string").to_string(), vkey);
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("key.txt");
        std::fs::write(&file, format!("{vkey}\n")).expect("write");
        assert_eq!(key_from_arg(file.to_str().expect("utf8")).expect("file").to_string(), vkey);
        let err = key_from_arg(&signer.private_key()).expect_err("private");
        assert!(err.to_string().contains("private signing key"), "{err}");
        let err = key_from_arg("/no/such/file").expect_err("missing");
        assert!(err.to_string().contains("no such file"), "{err}");
        assert!(matches!(key_from_arg("a+b+c"), Err(CannotVerify::Usage(_))));
    }

    #[test]
    fn error_messages_are_one_line() {
        assert_eq!(error_message(r#"{"error":{"code":"not_found","message":"no"}}"#), "no");
        assert_eq!(
            error_message("<html>\n<body>bad gateway</body>\n</html>"),
            "<html> <body>bad gateway</body> </html>"
        );
        assert_eq!(error_message(""), "(empty body)");
        assert!(error_message(&"x".repeat(500)).ends_with('…'));
    }

    #[test]
    fn entries_are_checked_against_their_leaf() {
        let leaf = br#"{"a":1}"#;
        let ok = EntryJson {
            index: 2,
            leaf: B64.encode(leaf),
            leaf_hash: Some(b64(&merkle::leaf_hash(leaf))),
            event: Some(serde_json::json!({"a": 1})),
        };
        let src = Source::File(PathBuf::from("e.json"));
        assert!(check_entry(ok, &src).expect("decodes").problem.is_none());
        let wrong_hash = EntryJson { index: 2, leaf: B64.encode(leaf), leaf_hash: Some(b64(&[0; 32])), event: None };
        assert!(check_entry(wrong_hash, &src).expect("decodes").problem.expect("problem").contains("hash to"));
        let wrong_event =
            EntryJson { index: 2, leaf: B64.encode(leaf), leaf_hash: None, event: Some(serde_json::json!({"a": 2})) };
        assert!(check_entry(wrong_event, &src).expect("decodes").problem.expect("problem").contains("`event`"));
        let not_b64 = EntryJson { index: 2, leaf: "!!".into(), leaf_hash: None, event: None };
        assert!(matches!(check_entry(not_b64, &src), Err(CannotVerify::Usage(_))));
    }
}
