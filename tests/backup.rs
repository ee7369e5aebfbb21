//! `acgs backup` and `acgs restore` with the real binary: a backup of a running `acgs up` (log
//! over HTTP) restores into a new data dir (SQLite) and into PostgreSQL with the same users,
//! constitution versions and policy sets, and a log that re-verifies and still extends the
//! checkpoint taken before the backup. A backup of a stopped data dir (log from the redb file)
//! restores too. A changed leaf, a non-empty target, a missing file are refused and nothing is
//! written.

mod common;

use std::path::Path;

use acgs::services::integrity::note::NoteSigner;
use common::process::{Process, acgs, client, fresh_database_url, serial, start, storage_env, token};
use ed25519_dalek::SigningKey;
use serde_json::{Value, json};

const MEMBER_PASSWORD: &str = "a-long-council-password";

fn post(p: &Process, service: &str, path: &str, token: &str, body: Value) -> Value {
    let response = client()
        .post(p.url(service, path))
        .bearer_auth(token)
        .json(&body)
        .timeout(std::time::Duration::from_secs(120))
        .send()
        .expect("post");
    let status = response.status();
    let text = response.text().expect("body");
    assert!(status.is_success(), "POST {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("POST {path}: {e}: {text}"))
}

fn get(p: &Process, service: &str, path: &str, token: &str) -> Value {
    let response = client().get(p.url(service, path)).bearer_auth(token).send().expect("get");
    assert!(response.status().is_success(), "GET {path}: {}", response.status());
    response.json().expect("json")
}

fn login(p: &Process, username: &str, password: &str) -> String {
    let body: Value = client()
        .post(p.url("auth", "/api/v1/auth/token"))
        .form(&[("grant_type", "password"), ("username", username), ("password", password)])
        .send()
        .expect("token")
        .json()
        .expect("json");
    body["access_token"].as_str().unwrap_or_else(|| panic!("{username} cannot log in: {body}")).to_string()
}

/// Three council members ratify an amendment (constitution version 2), an admin's break-glass
/// activates policy set version 2, a machine client is created.
fn make_history(p: &Process, admin: &str) {
    let council: Vec<String> = ["ada", "bob", "cy"]
        .iter()
        .map(|name| {
            post(
                p,
                "auth",
                "/api/v1/users",
                admin,
                json!({"username": name, "password": MEMBER_PASSWORD, "roles": ["council"]}),
            );
            login(p, name, MEMBER_PASSWORD)
        })
        .collect();
    let principle = json!({
        "id": "explanations", "title": "Right to explanation", "category": "transparency", "priority": 70,
        "text": "Anyone affected by an automated decision can obtain the reasons for it.",
        "invariants": [{ "id": "explanations-inv", "kind": "always", "description": "Explanations are served.",
            "policy": "permit(principal, action == Acgs::Action::\"explain\", resource);" }]
    });
    let amendment = post(
        p,
        "constitution",
        "/api/v1/amendments",
        &council[0],
        json!({"title": "Explanations", "rationale": "r", "changes": [{"op": "add_principle", "principle": principle}]}),
    );
    let id = amendment["id"].as_str().expect("id");
    post(p, "constitution", &format!("/api/v1/amendments/{id}/open"), &council[0], json!(null));
    for (member, choice) in council.iter().zip(["approve", "approve", "abstain"]) {
        post(p, "constitution", &format!("/api/v1/amendments/{id}/votes"), member, json!({"choice": choice}));
    }
    let closed = post(p, "constitution", &format!("/api/v1/amendments/{id}/close"), &council[0], json!(null));
    assert_eq!(closed["status"], "ratified", "{closed}");
    let glass =
        post(p, "consensus", "/api/v1/policy-sets/break-glass", admin, json!({"reason": "drill", "rollback_to": 1}));
    assert_eq!(glass["version"], 2, "{glass}");
    post(p, "auth", "/api/v1/clients", admin, json!({"name": "build-agent", "roles": ["agent"]}));
}

/// What must survive: accounts (without the login-time fields), constitution versions with
/// their hashes, policy sets with their content hashes.
fn state(p: &Process, admin: &str) -> Value {
    let users: Vec<Value> = get(p, "auth", "/api/v1/users", admin)
        .as_array()
        .expect("users")
        .iter()
        .map(|u| json!([u["id"], u["username"], u["roles"], u["created_at"]]))
        .collect();
    let clients: Vec<Value> = get(p, "auth", "/api/v1/clients", admin)
        .as_array()
        .expect("clients")
        .iter()
        .map(|c| json!([c["client_id"], c["name"], c["roles"]]))
        .collect();
    json!({
        "users": users,
        "clients": clients,
        "versions": get(p, "constitution", "/api/v1/constitution/versions", admin),
        "hash": get(p, "constitution", "/api/v1/constitution/hash", admin),
        "policy_sets": get(p, "consensus", "/api/v1/policy-sets", admin),
        "active_set": get(p, "consensus", "/api/v1/policy-sets/active", admin)["version"],
    })
}

/// Runs `acgs ARGS` with the data dir and storage of a deployment.
fn run(args: &[&str], data_dir: &Path, database_url: &Option<String>) -> std::process::Output {
    let dir = data_dir.display().to_string();
    let mut env = vec![("ACGS_DATA_DIR", dir.as_str())];
    env.extend(storage_env(database_url));
    acgs(args, &env)
}

fn ok(output: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

fn refused(output: &std::process::Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
}

/// Starts `acgs up` on a restored target, checks that it holds `expected`, that ada's password
/// still works, and that its log re-verifies and extends `old_checkpoint`.
fn check_restored(target: &Path, database_url: &Option<String>, expected: &Value, key: &Path, old_checkpoint: &Path) {
    let (mut p, _) = start(&["up"], target, &storage_env(database_url), 7);
    let admin = token(&p);
    assert_eq!(&state(&p, &admin), expected);
    login(&p, "ada", MEMBER_PASSWORD);
    let audit = acgs(
        &[
            "verify",
            "--audit",
            &p.url("integrity", ""),
            "--key",
            &key.display().to_string(),
            "--checkpoint",
            &old_checkpoint.display().to_string(),
        ],
        &[],
    );
    ok(&audit);
    let (status, _) = p.terminate();
    assert!(status.success());
}

#[test]
fn a_running_deployment_backs_up_and_restores_with_its_log_verifying() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let (source, work) = (dir.path().join("source"), dir.path().join("work"));
    std::fs::create_dir_all(&work).expect("mkdir");
    let database = fresh_database_url();
    let solver = common::cedar::cvc5();
    let mut env = storage_env(&database);
    env.push(("ACGS_CVC5", &solver));
    let (mut p, _) = start(&["up"], &source, &env, 7);
    let admin = token(&p);
    make_history(&p, &admin);
    let expected = state(&p, &admin);

    // What an auditor kept before the backup: the key and a checkpoint.
    let key = work.join("log.key");
    let text = |path: &str| client().get(p.url("integrity", path)).send().expect("get").text().expect("text");
    std::fs::write(&key, text("/api/v1/log/public-key")).expect("key");
    let old = work.join("old-checkpoint");
    std::fs::write(&old, text("/api/v1/log/checkpoint")).expect("checkpoint");

    // The backup, while acgs up runs.
    let backup = work.join("backup.acgs");
    let log = p.url("integrity", "");
    let out = ok(&run(&["backup", "-o", &backup.display().to_string(), "--log", &log], &source, &database));
    assert!(out.contains("log entries"), "{out}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup).expect("backup file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the backup holds password hashes and keys");
    }
    // An existing file is never overwritten.
    refused(&run(&["backup", "-o", &backup.display().to_string(), "--log", &log], &source, &database), "cannot create");
    let (status, _) = p.terminate();
    assert!(status.success());
    let backup_arg = backup.display().to_string();

    // Into a new data dir on SQLite.
    let restored = dir.path().join("restored");
    let out = ok(&run(&["restore", "--from", &backup_arg], &restored, &None));
    assert!(out.contains("equals the backup's signed checkpoint"), "{out}");
    check_restored(&restored, &None, &expected, &key, &old);

    // Not over data that exists.
    refused(&run(&["restore", "--from", &backup_arg], &restored, &None), "already holds data");

    // A backup whose log does not hash to its signed checkpoint: refused before anything is written.
    let tampered = work.join("tampered.acgs");
    let mut lines: Vec<Value> = std::fs::read_to_string(&backup)
        .expect("read")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let leaves = lines.iter_mut().find_map(|l| l["leaves"].as_array_mut()).expect("a line of leaves");
    leaves[0] = json!(base64_of(br#"{"event_id":"forged"}"#));
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&tampered, text).expect("write");
    let nowhere = dir.path().join("nowhere");
    refused(&run(&["restore", "--from", &tampered.display().to_string()], &nowhere, &None), "does not verify");
    assert!(!nowhere.exists(), "a refused restore writes nothing");
    // Signed by another key than the one the operator trusts: refused.
    let origin = acgs::config::Config::defaults_only().integrity.origin;
    let other = NoteSigner::new(&origin, SigningKey::from_bytes(&[7; 32])).expect("signer").verifier_key();
    refused(&run(&["restore", "--from", &backup_arg, "--key", &other], &nowhere, &None), "does not verify");
    assert!(!nowhere.exists());
    refused(&run(&["restore", "--from", &work.join("missing").display().to_string()], &nowhere, &None), "cannot open");

    // A stopped data dir backs up from its redb file; with PostgreSQL, a backup from either store
    // restores into the other.
    let second = work.join("second.acgs");
    ok(&run(&["backup", "-o", &second.display().to_string()], &restored, &None));
    if std::env::var("ACGS_TEST_DATABASE_URL").is_ok_and(|v| !v.is_empty()) {
        // The running deployment's own backup, straight into PostgreSQL too.
        let target_db = fresh_database_url();
        let target = dir.path().join("restored-pg");
        ok(&run(&["restore", "--from", &backup_arg], &target, &target_db));
        check_restored(&target, &target_db, &expected, &key, &old);
        let target_db = fresh_database_url();
        let target = dir.path().join("restored-pg-from-sqlite");
        ok(&run(&["restore", "--from", &second.display().to_string()], &target, &target_db));
        check_restored(&target, &target_db, &expected, &key, &old);
    } else {
        let target = dir.path().join("restored-again");
        ok(&run(&["restore", "--from", &second.display().to_string()], &target, &None));
        check_restored(&target, &None, &expected, &key, &old);
    }
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
