//! `acgs verify` as an auditor runs it: the real binary against a real `acgs serve integrity` on
//! port 0 over a temporary data dir. The log is filled through the library before the service
//! starts (so every test knows every entry and the first checkpoint already covers them), and is
//! damaged with redb directly while the service is stopped, as someone with the file would.
//!
//! Covered: one entry online and offline, each single change (note text, root line, signature,
//! leaf, proof hash, index, tree size, key) reported as invalid with its reason and exit 1; bad
//! input exit 2; an unreachable or wrong URL exit 3; `--audit URL` and `--audit-dir` on a healthy
//! log, after a changed leaf (named by index), after a leaf changed together with its stored hash
//! (caught by the root), and against an older checkpoint of a log that was rewritten.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use acgs::services::integrity::log::{AuditEvent, ENTRIES, LOG_FILE, Log};
use acgs::services::integrity::merkle;
use acgs::services::integrity::note::NoteSigner;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use redb::ReadableTable;
use serde_json::{Value, json};

use common::process::{BIN, Process, start};

fn event(i: u64, tag: &str) -> AuditEvent {
    AuditEvent {
        event_id: format!("event-{tag}-{i:04}"),
        service: "test".into(),
        kind: "test.thing.done".into(),
        subject: format!("thing:{i}"),
        actor: "tester".into(),
        at_ms: 1_700_000_000_000 + i as i64,
        data: json!({ "n": i, "tag": tag }),
    }
}

/// Appends events `range` (tagged `tag`) to the log in `dir` through the library.
fn append(dir: &Path, range: std::ops::Range<u64>, tag: &str) {
    let events: Vec<AuditEvent> = range.map(|i| event(i, tag)).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let log = Log::open(dir).expect("open the log");
    rt.block_on(log.append_batch(&events)).expect("append");
    drop(log);
}

/// A running `acgs serve integrity`, and its URL.
struct Service {
    process: Process,
    url: String,
}

fn serve(dir: &Path) -> Service {
    let (process, _) = start(&["serve", "integrity"], dir, &[("ACGS_INTEGRITY_CHECKPOINT_INTERVAL_MS", "50")], 1);
    let url = process.url("integrity", "");
    Service { process, url }
}

impl Service {
    fn get(&self, path: &str) -> String {
        let response = reqwest::blocking::get(format!("{}/api/v1/log{path}", self.url)).expect("GET");
        assert!(response.status().is_success(), "GET {path}: {}", response.status());
        response.text().expect("body")
    }

    /// SIGTERM, and wait until the process has gone (and with it redb's lock on the file).
    fn stop(mut self) {
        let (status, _) = self.process.terminate();
        assert!(status.success(), "{status:?}");
    }
}

/// The outcome of one `acgs verify`.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn valid(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected valid: {self:#?}");
        assert!(self.stdout.starts_with("valid: "), "{self:#?}");
        self
    }

    /// Exit `code`, and every needle somewhere in stdout (1) or stderr (2, 3).
    #[track_caller]
    fn fails(&self, code: i32, needles: &[&str]) -> &Self {
        assert_eq!(self.code, Some(code), "expected exit {code}: {self:#?}");
        let text = if code == 1 { &self.stdout } else { &self.stderr };
        if code == 1 {
            assert!(self.stdout.starts_with("invalid: "), "{self:#?}");
        } else {
            assert_eq!(self.stderr.trim_end().lines().count(), 1, "one line: {self:#?}");
        }
        for needle in needles {
            assert!(text.contains(needle), "expected {needle:?}: {self:#?}");
        }
        self
    }
}

fn verify_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(BIN);
    command.arg("verify").args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("acgs verify runs");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn verify(args: &[&str]) -> Run {
    verify_env(args, &[])
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

fn write_json(dir: &Path, name: &str, value: &Value) -> String {
    write(dir, name, &serde_json::to_string_pretty(value).expect("json"))
}

/// Decodes a base64 value, lets `change` alter the bytes, and encodes them again.
fn rebase64(v: &Value, change: impl FnOnce(&mut [u8])) -> Value {
    let mut bytes = B64.decode(v.as_str().expect("base64 string")).expect("base64");
    change(&mut bytes);
    json!(B64.encode(bytes))
}

/// Changes leaf `index` in the stopped log's redb file (and, if `rehash`, its stored leaf hash
/// too, as a careful forger would).
fn tamper(dir: &Path, index: u64, rehash: bool, change: impl FnOnce(&mut [u8])) {
    let db = redb::Database::open(dir.join(LOG_FILE)).expect("open the redb file");
    let txn = db.begin_write().expect("write transaction");
    {
        let mut entries = txn.open_table(ENTRIES).expect("entries");
        let (mut hashes, mut leaf) = {
            let row = entries.get(index).expect("read").expect("stored");
            let (hashes, leaf) = row.value();
            (hashes.to_vec(), leaf.to_vec())
        };
        change(&mut leaf);
        if rehash {
            // The row's first hash is the entry's own leaf hash.
            hashes[..32].copy_from_slice(&merkle::leaf_hash(&leaf));
        }
        entries.insert(index, (hashes.as_slice(), leaf.as_slice())).expect("insert");
    }
    txn.commit().expect("commit");
}

/// Changes the case of the first letter of "tester" in a leaf: still valid JSON, another event.
fn change_actor(leaf: &mut [u8]) {
    let at = leaf.windows(6).position(|w| w == b"tester").expect("actor in the leaf");
    leaf[at] = b'T';
}

#[test]
fn one_entry_online_and_offline_and_exactly_what_failed() {
    let data = tempfile::tempdir().expect("tempdir");
    let files = tempfile::tempdir().expect("tempdir");
    let f = files.path();
    append(data.path(), 0..6, "a");
    let service = serve(data.path());
    let url = service.url.as_str();
    let key = service.get("/public-key").trim().to_string();
    let key_file = write(f, "key.txt", &format!("{key}\n"));

    // Online, with the key pinned, from the flag or its environment twin.
    let run = verify(&["--log", url, "--index", "3", "--key", &key]);
    run.valid();
    assert!(run.stdout.starts_with("valid: entry 3 is in the log at tree size 6 (root "), "{run:#?}");
    assert!(run.stdout.contains("given with --key") && run.stdout.contains("thing:3"), "{run:#?}");
    verify_env(&["--index", "0"], &[("ACGS_VERIFY_LOG", url), ("ACGS_VERIFY_KEY", &key_file)]).valid();
    verify(&["--log", &format!("{url}/api/v1/log/"), "--index", "5", "--key", &key]).valid();
    // Without a key: valid, but it says the key came from the log itself.
    let run = verify(&["--log", url, "--index", "3"]);
    run.valid();
    assert!(run.stderr.contains("warning: no --key"), "{run:#?}");
    assert!(run.stdout.contains("fetched from the log itself"), "{run:#?}");

    // Offline, from saved files.
    let checkpoint = service.get("/checkpoint");
    let entry: Value = serde_json::from_str(&service.get("/entries/3")).expect("entry");
    let proof: Value = serde_json::from_str(&service.get("/proof/inclusion?index=3&tree_size=6")).expect("proof");
    let cp_file = write(f, "checkpoint.txt", &checkpoint);
    let entry_file = write_json(f, "entry.json", &entry);
    let proof_file = write_json(f, "proof.json", &proof);
    let offline = |cp: &str, entry: &str, proof: &str, key: &str| {
        verify(&["--key", key, "--checkpoint", cp, "--entry", entry, "--proof", proof])
    };
    offline(&cp_file, &entry_file, &proof_file, &key_file).valid();
    offline(&cp_file, &entry_file, &proof_file, &key).valid();

    // A changed byte in the note's text, its root line, its size line or its signature.
    let lines: Vec<&str> = checkpoint.split('\n').collect();
    let origin_changed = checkpoint.replacen("acgs.local/log\n", "acgs.local/lag\n", 1);
    let mut root = lines.clone();
    let changed_root = rebase64(&json!(lines[2]), |b| b[7] ^= 1);
    root[2] = changed_root.as_str().expect("string");
    let root_changed = root.join("\n");
    let size_changed = checkpoint.replacen("\n6\n", "\n7\n", 1);
    let sig_line = lines.iter().find(|l| l.starts_with('\u{2014}')).expect("signature line");
    let (name, sig) = sig_line.rsplit_once(' ').expect("name and signature");
    let changed_sig = rebase64(&json!(sig), |b| b[20] ^= 0x80);
    let sig_changed = checkpoint.replace(sig_line, &format!("{name} {}", changed_sig.as_str().expect("string")));
    for (label, text) in
        [("origin", origin_changed), ("root", root_changed), ("size", size_changed), ("sig", sig_changed)]
    {
        assert_ne!(text, checkpoint, "{label}");
        let cp = write(f, &format!("cp-{label}.txt"), &text);
        offline(&cp, &entry_file, &proof_file, &key_file).fails(1, &["invalid: checkpoint", "does not verify"]);
    }

    // Another log's key (same name, other key) finds no signature of its own.
    let other = NoteSigner::new("acgs.local/log", ed25519_dalek::SigningKey::from_bytes(&[9; 32])).expect("signer");
    offline(&cp_file, &entry_file, &proof_file, &other.verifier_key()).fails(1, &["no signature by key"]);
    verify(&["--log", url, "--index", "3", "--key", &other.verifier_key()]).fails(1, &["invalid: checkpoint"]);

    // A changed leaf byte: its recomputed hash is not the one the entry states …
    let mut leaf_changed = entry.clone();
    leaf_changed["leaf"] = rebase64(&entry["leaf"], change_actor);
    let bad_entry = write_json(f, "entry-leaf.json", &leaf_changed);
    offline(&cp_file, &bad_entry, &proof_file, &key_file)
        .fails(1, &["invalid: entry", "entry 3: its leaf bytes hash to"]);
    verify(&["--log", url, "--entry", &bad_entry, "--key", &key]).fails(1, &["leaf bytes hash to"]);
    // … nor the one the proof is for, nor does it lead to the root once nothing states a hash.
    leaf_changed.as_object_mut().expect("object").retain(|k, _| k == "index" || k == "leaf");
    let bare = write_json(f, "entry-bare.json", &leaf_changed);
    offline(&cp_file, &bare, &proof_file, &key_file).fails(1, &["invalid: proof", "it is for leaf hash"]);
    let mut bare_proof = proof.clone();
    bare_proof.as_object_mut().expect("object").remove("leaf_hash");
    let bare_proof_file = write_json(f, "proof-bare.json", &bare_proof);
    offline(&cp_file, &bare, &bare_proof_file, &key_file).fails(1, &["invalid: proof", "lead to root", "signs root"]);
    // The displayed event is not the leaf.
    let mut event_changed = entry.clone();
    event_changed["event"]["actor"] = json!("someone else");
    let file = write_json(f, "entry-event.json", &event_changed);
    offline(&cp_file, &file, &proof_file, &key_file).fails(1, &["`event` is not what its leaf bytes encode"]);

    // A changed proof hash, a missing one.
    let mut hash_changed = proof.clone();
    hash_changed["hashes"][1] = rebase64(&proof["hashes"][1], |b| b[0] ^= 1);
    let file = write_json(f, "proof-hash.json", &hash_changed);
    offline(&cp_file, &entry_file, &file, &key_file).fails(1, &["invalid: proof", "lead to root"]);
    let mut short = proof.clone();
    short["hashes"].as_array_mut().expect("hashes").pop();
    let file = write_json(f, "proof-short.json", &short);
    offline(&cp_file, &entry_file, &file, &key_file)
        .fails(1, &["wrong number of hashes", "it has 2 hashes", "needs 3"]);

    // Wrong index: in one file only, in both, or not the one asked about.
    let mut wrong = entry.clone();
    wrong["index"] = json!(4);
    let file = write_json(f, "entry-index.json", &wrong);
    offline(&cp_file, &file, &proof_file, &key_file).fails(1, &["it is for entry 3, but the entry is 4"]);
    let mut wrong_proof = proof.clone();
    wrong_proof["index"] = json!(2);
    wrong["index"] = json!(2);
    let (e, p) = (write_json(f, "e2.json", &wrong), write_json(f, "p2.json", &wrong_proof));
    offline(&cp_file, &e, &p, &key_file).fails(1, &["entry 2's leaf hash and proof lead to root"]);
    let run = verify(&[
        "--key",
        &key_file,
        "--checkpoint",
        &cp_file,
        "--entry",
        &entry_file,
        "--proof",
        &proof_file,
        "--index",
        "4",
    ]);
    run.fails(1, &["you asked about entry 4", "is entry 3"]);
    verify(&["--log", url, "--index", "99", "--key", &key]).fails(1, &["the log has no entry 99"]);

    // A proof for another tree size.
    let other_size: Value = serde_json::from_str(&service.get("/proof/inclusion?index=3&tree_size=5")).expect("proof");
    let file = write_json(f, "proof-size.json", &other_size);
    offline(&cp_file, &entry_file, &file, &key_file).fails(1, &["tree size 5, but the checkpoint signs tree size 6"]);

    // With the log: your own entry file, or a checkpoint you kept.
    verify(&["--log", url, "--entry", &entry_file, "--key", &key]).valid();
    verify(&["--log", url, "--checkpoint", &cp_file, "--index", "1", "--key", &key]).valid();

    // The caller's mistakes: exit 2, one line.
    let missing = f.join("missing.json").display().to_string();
    offline(&cp_file, &missing, &proof_file, &key_file).fails(2, &["--entry", "missing.json"]);
    let not_json = write(f, "not.json", "{ nope");
    offline(&cp_file, &not_json, &proof_file, &key_file).fails(2, &["not.json", "not the JSON the log serves"]);
    offline(&cp_file, &entry_file, &proof_file, "not-a-key").fails(2, &["--key not-a-key", "no such file"]);
    offline(&cp_file, &entry_file, &proof_file, "a+b+c").fails(2, &["not a checkpoint key"]);
    let private = data.path().join("integrity-note.key").display().to_string();
    offline(&cp_file, &entry_file, &proof_file, &private).fails(2, &["private signing key"]);
    verify(&["--key", &key, "--checkpoint", &cp_file, "--entry", &entry_file]).fails(2, &["--proof FILE"]);
    verify(&["--log", url, "--key", &key]).fails(2, &["--index N"]);
    verify(&["--log", url, "--index", "1", "--save-checkpoint", "x"]).fails(2, &["--save-checkpoint"]);
    verify(&["--log", "ftp://example", "--index", "1"]).fails(2, &["scheme"]);

    // No verdict: the log cannot be reached, or answers something else: exit 3, one line.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let nowhere = format!("http://127.0.0.1:{port}");
    verify(&["--log", &nowhere, "--index", "1", "--key", &key]).fails(3, &["cannot verify", &nowhere, "refused"]);
    verify(&["--log", &format!("{url}/elsewhere"), "--index", "1"]).fails(3, &["/elsewhere/api/v1/log", "404"]);
    service.stop();
}

#[test]
fn audit_walks_the_whole_log_and_names_a_leaf_changed_in_the_redb_file() {
    let data = tempfile::tempdir().expect("tempdir");
    let files = tempfile::tempdir().expect("tempdir");
    let dir = data.path().display().to_string();
    append(data.path(), 0..8, "a");
    let service = serve(data.path());
    let url = service.url.clone();
    let key = service.get("/public-key").trim().to_string();
    let first = files.path().join("first.txt").display().to_string();

    // Healthy: valid, and the verified checkpoint is kept for next time.
    let run = verify(&["--audit", &url, "--key", &key, "--save-checkpoint", &first]);
    run.valid();
    assert!(run.stdout.starts_with("valid: all 8 entries of acgs.local/log re-hashed"), "{run:#?}");
    assert_eq!(std::fs::read_to_string(&first).expect("saved"), service.get("/checkpoint"));
    verify_env(&["--audit"], &[("ACGS_VERIFY_LOG", &url), ("ACGS_VERIFY_KEY", &key)]).valid();
    verify(&["--audit-dir", &dir]).fails(3, &["in use by another process", "stop the integrity service"]);
    service.stop();
    verify(&["--audit-dir", &dir]).valid();
    verify(&["--audit-dir", &dir, "--checkpoint", &first, "--key", &key]).valid();
    let run = verify(&["--audit-dir", &dir, "--checkpoint", &first]);
    run.valid();
    assert!(run.stdout.contains("derived from the data dir's own integrity-note.key"), "{run:#?}");

    // The log grows; it still extends the kept checkpoint.
    append(data.path(), 8..13, "a");
    let service = serve(data.path());
    let run = verify(&["--audit", &service.url, "--key", &key, "--checkpoint", &first]);
    run.valid();
    assert!(run.stdout.contains("all 13 entries") && run.stdout.contains("extends your checkpoint of 8"), "{run:#?}");
    service.stop();

    // One byte of leaf 3 changed in the file (still a valid event): named by index.
    tamper(data.path(), 3, false, change_actor);
    let service = serve(data.path());
    let run = verify(&["--audit", &service.url, "--key", &key]);
    run.fails(1, &["invalid: entry 3: its leaf bytes hash to", "invalid: root: the 13 entries"]);
    assert!(!run.stdout.contains("entry 4") && !run.stdout.contains("entry 2"), "only entry 3: {run:#?}");
    let run = verify(&["--audit", &service.url, "--key", &key, "--checkpoint", &first]);
    run.fails(1, &["invalid: entry 3", "invalid: history: the log's first 8 entries hash to root"]);
    service.stop();
    verify(&["--audit-dir", &dir]).fails(1, &["integrity.redb", "entry 3: its leaf bytes hash to"]);

    // Leaf 5 no longer JSON at all: still served (event null), both damaged entries named.
    tamper(data.path(), 5, false, |leaf| leaf[0] = b'[');
    let service = serve(data.path());
    let damaged: Value = serde_json::from_str(&service.get("/entries/5")).expect("served as stored");
    assert!(damaged["event"].is_null() && damaged["leaf"].is_string(), "{damaged}");
    verify(&["--audit", &service.url, "--key", &key]).fails(1, &["invalid: entry 3:", "invalid: entry 5:"]);
    service.stop();
}

#[test]
fn the_root_catches_a_leaf_rewritten_with_its_hash_and_an_old_checkpoint_catches_a_rewritten_log() {
    let data = tempfile::tempdir().expect("tempdir");
    let files = tempfile::tempdir().expect("tempdir");
    let dir = data.path().display().to_string();
    append(data.path(), 0..8, "a");
    let service = serve(data.path());
    let key = service.get("/public-key").trim().to_string();
    let kept = files.path().join("kept.txt").display().to_string();
    verify(&["--audit", &service.url, "--key", &key, "--save-checkpoint", &kept]).valid();
    service.stop();

    // Leaf 6 and its stored leaf hash rewritten together: each entry looks fine on its own, but
    // the entries no longer hash to the root the checkpoint signs.
    tamper(data.path(), 6, true, change_actor);
    let service = serve(data.path());
    let run = verify(&["--audit", &service.url, "--key", &key]);
    run.fails(1, &["invalid: root: the 8 entries the log serves hash to root"]);
    assert!(!run.stdout.contains("invalid: entry"), "{run:#?}");
    service.stop();
    verify(&["--audit-dir", &dir]).fails(1, &["subtree (level 1, index 3) recomputes to"]);

    // A whole other history signed with the same key (a rewrite that recomputed every hash, or a
    // split view): self-consistent, so only a checkpoint kept from before shows it.
    let forged = tempfile::tempdir().expect("tempdir");
    std::fs::copy(data.path().join("integrity-note.key"), forged.path().join("integrity-note.key")).expect("copy key");
    append(forged.path(), 0..10, "b");
    let service = serve(forged.path());
    verify(&["--audit", &service.url, "--key", &key]).valid();
    verify(&["--audit", &service.url, "--key", &key, "--checkpoint", &kept]).fails(
        1,
        &["invalid: history: the log's first 8 entries hash to root", "invalid: consistency: the log's proof from your checkpoint (size 8) to its latest (size 10) does not verify"],
    );
    // Verifying one entry against the kept checkpoint fails too.
    verify(&["--log", &service.url, "--index", "2", "--key", &key, "--checkpoint", &kept])
        .fails(1, &["invalid: proof", "entry 2's leaf hash and proof lead to root"]);
    service.stop();
    let forged_dir = forged.path().display().to_string();
    verify(&["--audit-dir", &forged_dir, "--checkpoint", &kept, "--key", &key])
        .fails(1, &["invalid: history: the first 8 entries", "the log was rewritten"]);

    // A log shorter than the kept checkpoint: entries were removed.
    let short = tempfile::tempdir().expect("tempdir");
    std::fs::copy(data.path().join("integrity-note.key"), short.path().join("integrity-note.key")).expect("copy key");
    append(short.path(), 0..3, "a");
    let service = serve(short.path());
    verify(&["--audit", &service.url, "--key", &key, "--checkpoint", &kept])
        .fails(1, &["signs 8 entries, but the log's latest signs only 3"]);
    // A checkpoint signed by another key is refused before anything else.
    let other = NoteSigner::new("acgs.local/log", ed25519_dalek::SigningKey::from_bytes(&[9; 32])).expect("signer");
    verify(&["--audit", &service.url, "--key", &other.verifier_key()]).fails(1, &["invalid: checkpoint"]);
    service.stop();

    // Usage.
    verify(&["--audit"]).fails(2, &["--audit needs the log's URL"]);
    verify(&["--audit", "http://127.0.0.1:1", "--index", "2"]).fails(2, &["--index cannot be used with --audit"]);
    let nowhere: PathBuf = files.path().join("nothing-here");
    verify(&["--audit-dir", &nowhere.display().to_string()]).fails(2, &["no integrity log there"]);
}

#[test]
fn help_names_the_modes_the_environment_twins_and_the_exit_codes() {
    let out = Command::new(BIN).args(["verify", "--help"]).output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["--audit", "--audit-dir", "ACGS_VERIFY_KEY", "ACGS_VERIFY_LOG", "ACGS_VERIFY_TIMEOUT", "Exit codes"]
    {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}
