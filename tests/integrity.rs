//! The integrity service over HTTP, against the real services on port 0: appending as a service
//! or admin only, entries with their exact leaf bytes, inclusion and consistency proofs checked
//! with the independent RFC 9162 verifier in `tests/common/rfc9162.rs`, the signed checkpoint
//! verified with the published key and its root recomputed from the entries, and bad input
//! answered 4xx with nothing appended.
//!
//! The auth service records its own events (logins, users created) in the same log, so the tests
//! find their events by the indices the log answered and check proofs over whatever the log holds.

mod common;

use std::time::Duration;

use acgs::kernel::service::ServiceName;
use acgs::services::integrity::note::{self, NoteVerifier};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use common::rfc9162 as rfc;
use common::{TestApp, error_code, spawn_services};
use serde_json::{Value, json};

const ORIGIN: &str = "acgs.local/log";

fn event(i: u64, subject: &str) -> Value {
    json!({
        "event_id": format!("00000000-0000-7000-8000-{i:012}"),
        "service": "test",
        "kind": "test.thing.done",
        "subject": subject,
        "actor": "tester",
        "at_ms": 1_700_000_000_000i64 + i as i64,
        "data": {"n": i, "z": [1, {"b": 2, "a": 1}]},
    })
}

fn h(v: &Value) -> rfc::H {
    let bytes = B64.decode(v.as_str().expect("base64 string")).expect("base64");
    bytes.try_into().expect("32 bytes")
}

fn hashes(v: &Value) -> Vec<rfc::H> {
    v.as_array().expect("hashes array").iter().map(h).collect()
}

/// Auth and integrity only.
async fn start() -> TestApp {
    spawn_services(&[ServiceName::Auth, ServiceName::Integrity], |c| c.integrity.checkpoint_interval_ms = 20).await
}

fn log(app: &TestApp, path: &str) -> String {
    app.url(ServiceName::Integrity, &format!("/api/v1/log{path}"))
}

async fn get_json(app: &TestApp, path: &str) -> Value {
    let response = app.get(&log(app, path), None).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.expect("json")
}

async fn post(app: &TestApp, token: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = app.http.post(log(app, "/entries")).json(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("POST")
}

async fn verifier(app: &TestApp) -> NoteVerifier {
    let response = app.get(&log(app, "/public-key"), None).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().expect("ascii").starts_with("text/plain"));
    NoteVerifier::parse(response.text().await.expect("text").trim()).expect("verifier key parses")
}

async fn checkpoint_text(app: &TestApp) -> String {
    let response = app.get(&log(app, "/checkpoint"), None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain; charset=utf-8");
    response.text().await.expect("text")
}

/// Waits until the served checkpoint signs `size` entries; returns its text.
async fn checkpoint_of_size(app: &TestApp, key: &NoteVerifier, size: u64) -> String {
    for _ in 0..200 {
        let text = checkpoint_text(app).await;
        let cp = note::verify_checkpoint(&text, key, Some(ORIGIN)).expect("checkpoint verifies");
        if cp.size == size {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no checkpoint of size {size} within 5 s");
}

async fn all_entries(app: &TestApp) -> Vec<Value> {
    get_json(app, "/entries?limit=1000").await["entries"].as_array().expect("entries").clone()
}

/// How many entries the tests themselves appended (service `test`).
async fn test_entries(app: &TestApp) -> usize {
    all_entries(app).await.iter().filter(|e| e["event"]["service"] == "test").count()
}

/// Waits until every event written so far has reached the log and the served checkpoint signs
/// all of it; returns the checkpoint's text and the entries.
async fn settled(app: &TestApp, key: &NoteVerifier) -> (String, Vec<Value>) {
    let mut last = usize::MAX;
    for _ in 0..200 {
        let text = checkpoint_text(app).await;
        let cp = note::verify_checkpoint(&text, key, Some(ORIGIN)).expect("checkpoint verifies");
        let entries = all_entries(app).await;
        if entries.len() as u64 == cp.size && entries.len() == last {
            return (text, entries);
        }
        last = entries.len();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the log did not settle within 10 s");
}

fn indices(out: &Value) -> Vec<(u64, bool)> {
    out["appended"]
        .as_array()
        .expect("appended")
        .iter()
        .map(|a| (a["index"].as_u64().expect("index"), a["duplicate"].as_bool().expect("duplicate")))
        .collect()
}

#[tokio::test]
async fn append_fetch_prove_and_verify_the_checkpoint() {
    let app = start().await;
    let key = verifier(&app).await;

    // A checkpoint exists from the start and signs a prefix of the log.
    let first = checkpoint_text(&app).await;
    let cp = note::verify_checkpoint(&first, &key, Some(ORIGIN)).expect("verifies");
    let leaves_now: Vec<rfc::H> = all_entries(&app)
        .await
        .iter()
        .map(|e| rfc::leaf(&B64.decode(e["leaf"].as_str().expect("leaf")).expect("base64")))
        .collect();
    assert_eq!(cp.root, rfc::mth(&leaves_now[..cp.size as usize]));

    // Appending takes the service or admin role.
    let body = json!({ "events": (0..5).map(|i| event(i, if i % 2 == 0 { "user:even" } else { "user:odd" })).collect::<Vec<_>>() });
    assert_eq!(error_code(post(&app, None, &body).await).await.0, 401);
    let admin = app.admin_token().await;
    app.create_user(&admin, "agent007", "agent-password-123", &["agent"]).await;
    let (agent, _) = app.tokens("agent007", "agent-password-123").await;
    assert_eq!(error_code(post(&app, Some(&agent), &body).await).await.0, 403);
    assert_eq!(test_entries(&app).await, 0, "refused requests appended nothing");

    let response = post(&app, Some(&admin), &body).await;
    assert_eq!(response.status(), 200);
    let out: Value = response.json().await.expect("json");
    let first_five = indices(&out);
    for (i, a) in out["appended"].as_array().expect("appended").iter().enumerate() {
        assert_eq!(a["event_id"], event(i as u64, "")["event_id"]);
    }
    assert!(first_five.iter().all(|(_, dup)| !dup));
    assert!(first_five.windows(2).all(|w| w[0].0 < w[1].0), "indices increase: {first_five:?}");
    let at: Vec<u64> = first_five.iter().map(|(i, _)| *i).collect();
    // Redelivery is deduplicated; a new event gets a new index.
    let again = json!({ "events": [event(1, "user:odd"), event(3, "user:odd"), event(5, "user:odd")] });
    let got = indices(&post(&app, Some(&admin), &again).await.json().await.expect("json"));
    assert_eq!(&got[..2], &[(at[1], true), (at[3], true)]);
    let (sixth, dup) = got[2];
    assert!(!dup && sixth > at[4]);

    // Every entry carries its exact leaf bytes; the leaf hash is recomputable.
    let (text, entries) = settled(&app, &key).await;
    let n = entries.len() as u64;
    let mut leaves = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let leaf = B64.decode(e["leaf"].as_str().expect("leaf")).expect("base64");
        assert_eq!(rfc::leaf(&leaf), h(&e["leaf_hash"]), "leaf hash of entry {i}");
        let parsed: Value = serde_json::from_slice(&leaf).expect("leaf is JSON");
        assert_eq!(parsed, e["event"]);
        assert_eq!(e["index"], i as u64);
        leaves.push(rfc::leaf(&leaf));
    }
    for (i, &index) in at.iter().enumerate() {
        assert_eq!(entries[index as usize]["event"]["event_id"], event(i as u64, "")["event_id"]);
    }
    let third = at[3];
    assert_eq!(get_json(&app, &format!("/entries/{third}")).await, entries[third as usize]);
    let next = get_json(&app, &format!("/entries?from={}&limit=1", third + 1)).await["entries"].clone();
    assert_eq!(next, json!([entries[third as usize + 1]]));
    assert_eq!(get_json(&app, &format!("/entries?from={n}")).await["entries"], json!([]));
    // The auth service's own events are in the log too.
    assert!(entries.iter().any(|e| e["event"]["kind"] == "auth.user.created"), "auth events are logged");

    // Search by subject.
    let odd = get_json(&app, "/search?subject=user:odd").await;
    let odd: Vec<u64> =
        odd["entries"].as_array().expect("entries").iter().map(|e| e["index"].as_u64().expect("i")).collect();
    assert_eq!(odd, vec![at[1], at[3], sixth]);
    assert_eq!(get_json(&app, "/search?subject=user:even&limit=2").await["entries"].as_array().expect("e").len(), 2);
    assert_eq!(get_json(&app, "/search?subject=nobody").await["entries"], json!([]));

    // The checkpoint verifies with the published key, and its root is the entries' root.
    let cp = note::verify_checkpoint(&text, &key, Some(ORIGIN)).expect("verifies");
    assert_eq!(cp.root, rfc::mth(&leaves));
    let mut forged = text.clone().into_bytes();
    forged[ORIGIN.len() + 1] = b'7'; // the size line
    assert!(note::verify_checkpoint(&String::from_utf8(forged).expect("utf8"), &key, Some(ORIGIN)).is_err());

    // Inclusion proofs, for every entry in every tree size.
    for tree_size in 1..=n {
        let root = rfc::mth(&leaves[..tree_size as usize]);
        for i in 0..tree_size {
            let p = get_json(&app, &format!("/proof/inclusion?index={i}&tree_size={tree_size}")).await;
            assert_eq!((p["index"].as_u64(), p["tree_size"].as_u64()), (Some(i), Some(tree_size)));
            let leaf = h(&p["leaf_hash"]);
            assert_eq!(leaf, leaves[i as usize]);
            let path = hashes(&p["hashes"]);
            assert!(rfc::verify_inclusion(i, tree_size, &leaf, &path, &root), "inclusion {i} in {tree_size}");
            assert!(!rfc::verify_inclusion(i, tree_size, &leaf, &path, &rfc::mth(&leaves[..1])) || tree_size == 1);
        }
    }
    // Consistency proofs between every pair of sizes.
    for to in 0..=n {
        for from in 0..=to {
            let p = get_json(&app, &format!("/proof/consistency?from={from}&to={to}")).await;
            assert_eq!((p["from"].as_u64(), p["to"].as_u64()), (Some(from), Some(to)));
            let ok = rfc::verify_consistency(
                from,
                to,
                &rfc::mth(&leaves[..from as usize]),
                &rfc::mth(&leaves[..to as usize]),
                &hashes(&p["hashes"]),
            );
            assert!(ok, "consistency {from} -> {to}");
        }
    }

    // Metrics.
    let metrics = app.get(&app.url(ServiceName::Integrity, "/metrics"), None).await.text().await.expect("text");
    assert!(metrics.lines().any(|l| l == format!("acgs_log_entries {n}")), "{metrics}");
    assert!(metrics.lines().any(|l| l == format!("acgs_log_appends_total {n}")), "{metrics}");
}

#[tokio::test]
async fn bad_input_is_a_4xx_and_appends_nothing() {
    let app = start().await;
    let admin = app.admin_token().await;
    let key = verifier(&app).await;
    let body = json!({ "events": [event(0, "s"), event(1, "s"), event(2, "s")] });
    assert_eq!(post(&app, Some(&admin), &body).await.status(), 200);
    let (_, entries) = settled(&app, &key).await;
    let n = entries.len();

    let cases: Vec<(String, u16, String)> = vec![
        (format!("/entries/{n}"), 404, format!("{n} is out of range")),
        ("/entries/999999999".into(), 404, String::new()),
        ("/entries/abc".into(), 400, String::new()),
        (format!("/entries?from={}", n + 1), 400, format!("{n} entries")),
        ("/entries?limit=0".into(), 400, "limit".into()),
        ("/entries?limit=5000".into(), 400, "limit".into()),
        ("/entries?from=-1".into(), 400, String::new()),
        ("/entries?frm=1".into(), 400, String::new()),
        (format!("/proof/inclusion?index=0&tree_size={}", n + 1), 400, format!("has {n} entries")),
        (format!("/proof/inclusion?index={n}&tree_size={n}"), 400, "out of range".into()),
        ("/proof/inclusion?index=0".into(), 400, String::new()),
        ("/proof/consistency?from=3&to=2".into(), 400, "smaller".into()),
        (format!("/proof/consistency?from=1&to={}", n + 1), 400, format!("has {n} entries")),
        ("/search".into(), 400, String::new()),
        ("/search?subject=s&limit=0".into(), 400, "limit".into()),
        ("/search?subject=s&limit=1001".into(), 400, "limit".into()),
    ];
    for (path, status, needle) in &cases {
        let (path, needle) = (path.as_str(), needle.as_str());
        let response = app.get(&log(&app, path), None).await;
        let text = response.text().await.expect("text");
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"));
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{path}: {message:?} does not say {needle:?}");
        let response = app.get(&log(&app, path), None).await;
        assert_eq!(error_code(response).await.0, *status, "{path}: {text}");
    }

    // Malformed or refused bodies: 4xx, and nothing appended (all or nothing).
    let too_long = "x".repeat(600);
    let mut bad_event = event(9, "s");
    bad_event["subject"] = json!(too_long);
    let mut no_id = event(10, "s");
    no_id["event_id"] = json!("");
    let mut missing = event(11, "s");
    missing.as_object_mut().expect("object").remove("kind");
    let bodies = [
        json!({}),
        json!({ "events": "nope" }),
        json!({ "events": [event(5, "s")], "extra": 1 }),
        json!({ "events": [event(6, "s"), bad_event] }),
        json!({ "events": [event(7, "s"), no_id] }),
        json!({ "events": [event(8, "s"), missing] }),
        json!({ "events": (100..1101).map(|i| event(i, "s")).collect::<Vec<_>>() }),
    ];
    for body in &bodies {
        let (status, _) = error_code(post(&app, Some(&admin), body).await).await;
        assert!((400..500).contains(&status), "{status} for {body}");
    }
    let response = app
        .http
        .post(log(&app, "/entries"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("POST");
    assert!(response.status().is_client_error());
    assert_eq!(test_entries(&app).await, 3, "nothing was appended by a bad request");
    assert_eq!(all_entries(&app).await.len(), n, "nothing at all was appended");
}

#[tokio::test]
async fn the_key_survives_a_restart_and_the_log_keeps_growing() {
    let mut app = start().await;
    let key = verifier(&app).await;
    let admin = app.admin_token().await;
    assert_eq!(post(&app, Some(&admin), &json!({ "events": [event(0, "s")] })).await.status(), 200);
    let (_, before) = settled(&app, &key).await;
    app.restart().await;
    let again = verifier(&app).await;
    assert_eq!(again.to_string(), key.to_string(), "the same key after restart");
    checkpoint_of_size(&app, &again, before.len() as u64).await;
    let admin = app.admin_token().await;
    assert_eq!(post(&app, Some(&admin), &json!({ "events": [event(1, "s")] })).await.status(), 200);
    let (_, after) = settled(&app, &again).await;
    assert_eq!(&after[..before.len()], &before[..], "the log kept its entries over the restart");
    assert_eq!(after.iter().filter(|e| e["event"]["service"] == "test").count(), 2);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(app.dir.path().join("integrity-note.key")).expect("key file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn submitted_checkpoints_are_checked_and_forgeries_refused() {
    use acgs::services::integrity::note::{Checkpoint, NoteSigner};
    let app = start().await;
    let key = verifier(&app).await;
    let admin = app.admin_token().await;
    assert_eq!(post(&app, Some(&admin), &json!({ "events": [event(0, "s")] })).await.status(), 200);
    let (old, _) = settled(&app, &key).await;
    assert_eq!(post(&app, Some(&admin), &json!({ "events": [event(1, "s"), event(2, "s")] })).await.status(), 200);
    let (_, entries) = settled(&app, &key).await;
    let leaves: Vec<rfc::H> =
        entries.iter().map(|e| rfc::leaf(&B64.decode(e["leaf"].as_str().expect("leaf")).expect("b64"))).collect();
    let submit = |body: String| {
        let url = log(&app, "/checkpoint/verify");
        let http = app.http.clone();
        async move { http.post(url).header("content-type", "text/plain").body(body).send().await.expect("POST") }
    };

    // An old checkpoint of this log: valid, with the consistency proof to the current head.
    let response = submit(old.clone()).await;
    assert_eq!(response.status(), 200);
    let check: Value = response.json().await.expect("json");
    let old_cp = note::verify_checkpoint(&old, &key, Some(ORIGIN)).expect("verifies");
    assert_eq!(check["size"], old_cp.size);
    assert_eq!(check["current_size"], entries.len() as u64);
    assert_eq!(h(&check["current_root"]), rfc::mth(&leaves));
    assert!(rfc::verify_consistency(
        old_cp.size,
        entries.len() as u64,
        &old_cp.root,
        &rfc::mth(&leaves),
        &hashes(&check["consistency"])
    ));

    // Forgeries and garbage: 4xx, each with a reason.
    let mut flipped_root = old.clone().into_bytes();
    let root_at = old.find('\n').expect("line") + 1 + old_cp.size.to_string().len() + 1;
    flipped_root[root_at] = if flipped_root[root_at] == b'A' { b'B' } else { b'A' };
    let stranger = NoteSigner::new(ORIGIN, ed25519_dalek::SigningKey::from_bytes(&[7; 32])).expect("signer");
    let by_stranger = stranger.sign_checkpoint(&Checkpoint::new(ORIGIN, old_cp.size, old_cp.root)).expect("sign");
    // With the log's own key (read from its data dir): a root this log never had, a size it
    // does not have, another origin.
    let key_text = std::fs::read_to_string(app.dir.path().join("integrity-note.key")).expect("key file");
    let own = NoteSigner::from_private_key(key_text.trim()).expect("own key");
    let wrong_root = own.sign_checkpoint(&Checkpoint::new(ORIGIN, old_cp.size, [9; 32])).expect("sign");
    let too_big = own.sign_checkpoint(&Checkpoint::new(ORIGIN, 1_000_000, [9; 32])).expect("sign");
    let cases: Vec<(String, u16, &str)> = vec![
        (String::from_utf8(flipped_root).expect("utf8"), 422, "did not sign"),
        (by_stranger, 422, "did not sign"),
        ("not a note at all".into(), 400, "malformed"),
        (String::new(), 400, "malformed"),
        ("x".repeat(20_000), 400, "at most"),
        (wrong_root, 409, "this log's is"),
        (too_big, 400, "entries"),
    ];
    for (body, status, needle) in cases {
        let response = submit(body.clone()).await;
        let code = response.status().as_u16();
        let text = response.text().await.expect("text");
        assert_eq!(code, status, "{body:.60}: {text}");
        assert!(text.contains(needle), "{body:.60}: {text} does not say {needle:?}");
    }
    assert_eq!(all_entries(&app).await.len(), entries.len(), "checking checkpoints stores nothing");
}
