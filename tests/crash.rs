//! Nothing acknowledged is lost: `acgs up` is killed with SIGKILL in the middle of 10,000
//! audited operations (machine clients created by eight concurrent callers). After a restart on
//! the same data dir, every operation acknowledged to its caller, and every one that committed
//! without an answer, has exactly one event in the integrity log; the log re-verifies from its
//! leaves and matches its signed checkpoint.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acgs::services::integrity::log::Log;
use acgs::services::integrity::note::{self, NoteVerifier};
use common::process::{Process, client, fresh_database_url, serial, start, storage_env, token};
use serde_json::{Value, json};

/// Operations attempted in all.
const OPERATIONS: usize = 10_000;
/// Concurrent callers.
const CALLERS: usize = 8;

/// Every entry of the log, paged.
fn log_entries(p: &Process) -> Vec<Value> {
    let mut all = Vec::new();
    loop {
        let url = p.url("integrity", &format!("/api/v1/log/entries?from={}&limit=1000", all.len()));
        let page: Value = client().get(url).send().expect("entries").json().expect("json");
        let entries = page["entries"].as_array().expect("entries").clone();
        if entries.is_empty() {
            return all;
        }
        all.extend(entries);
    }
}

/// Every machine client auth has stored, paged.
fn stored_clients(p: &Process, admin: &str) -> HashSet<String> {
    let mut ids = HashSet::new();
    loop {
        let url = p.url("auth", &format!("/api/v1/clients?limit=1000&offset={}", ids.len()));
        let page: Value = client().get(url).bearer_auth(admin).send().expect("clients").json().expect("json");
        let page = page.as_array().expect("list");
        if page.is_empty() {
            return ids;
        }
        ids.extend(page.iter().map(|c| c["client_id"].as_str().expect("id").to_string()));
    }
}

#[test]
fn sigkill_mid_load_loses_no_acknowledged_event_and_duplicates_none() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fresh_database_url();
    let (mut p, _) = start(&["up"], dir.path(), &storage_env(&db), 7);
    let admin = token(&p);
    let create_url = p.url("auth", "/api/v1/clients");

    // Kill at a point that depends on the run, somewhere in the middle third.
    let kill_after = OPERATIONS / 3 + (std::process::id() as usize % (OPERATIONS / 3));
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (acknowledged, next, url, admin) =
                (acknowledged.clone(), next.clone(), create_url.clone(), admin.clone());
            std::thread::spawn(move || {
                let http = client();
                let mut failures = 0;
                while next.fetch_add(1, Ordering::SeqCst) < OPERATIONS {
                    let sent =
                        http.post(&url).bearer_auth(&admin).json(&json!({"name": "load", "roles": ["agent"]})).send();
                    match sent {
                        Ok(r) if r.status() == 201 => {
                            let body: Value = r.json().expect("json");
                            let id = body["client_id"].as_str().expect("id").to_string();
                            acknowledged.lock().expect("lock").push(id);
                        }
                        // The process is gone: what was not answered was not acknowledged.
                        _ => {
                            failures += 1;
                            if failures > 3 {
                                return;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    while acknowledged.lock().expect("lock").len() < kill_after {
        assert!(started.elapsed() < Duration::from_secs(120), "the load did not get going");
        std::thread::sleep(Duration::from_millis(1));
    }
    p.child.kill().expect("SIGKILL");
    p.child.wait().expect("reaped");
    for caller in callers {
        caller.join().expect("caller");
    }
    let acknowledged: Vec<String> = acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() >= kill_after && acknowledged.len() < OPERATIONS, "killed mid-run");

    // Restart on the same data dir; the outboxes deliver what was committed but not yet logged.
    let (p, _) = start(&["up"], dir.path(), &storage_env(&db), 7);
    let admin = token(&p);
    let stored = stored_clients(&p, &admin);
    for id in &acknowledged {
        assert!(stored.contains(id), "acknowledged client {id} is stored");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let (entries, created) = loop {
        let entries = log_entries(&p);
        let mut created: HashMap<String, usize> = HashMap::new();
        for e in &entries {
            if e["event"]["kind"] == "auth.client.created" {
                let subject = e["event"]["subject"].as_str().expect("subject");
                *created.entry(subject.trim_start_matches("client:").to_string()).or_default() += 1;
            }
        }
        if stored.iter().all(|id| created.contains_key(id)) {
            break (entries, created);
        }
        assert!(Instant::now() < deadline, "{} stored clients still have no event", stored.len() - created.len());
        std::thread::sleep(Duration::from_millis(100));
    };
    // Exactly one event per stored change (the acknowledged ones among them), and no event for
    // a change that was not stored.
    for id in &stored {
        assert_eq!(created[id], 1, "client {id}: events in the log");
    }
    assert_eq!(created.len(), stored.len(), "every event belongs to a stored client");
    let ids: HashSet<&str> = entries.iter().map(|e| e["event"]["event_id"].as_str().expect("id")).collect();
    assert_eq!(ids.len(), entries.len(), "no event id twice in the log");

    // The log verifies: the served checkpoint signs it, and a full re-walk of the redb file
    // recomputes the same root.
    let key = client().get(p.url("integrity", "/api/v1/log/public-key")).send().expect("key").text().expect("text");
    let key = NoteVerifier::parse(key.trim()).expect("key");
    let size = entries.len() as u64;
    let checkpoint = loop {
        let text = client().get(p.url("integrity", "/api/v1/log/checkpoint")).send().expect("cp").text().expect("text");
        let cp = note::verify_checkpoint(&text, &key, None).expect("checkpoint verifies");
        if cp.size >= size {
            break cp;
        }
        assert!(Instant::now() < deadline, "no checkpoint of {size} entries");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut p = p;
    let (status, _) = p.terminate();
    assert!(status.success(), "{status:?}");
    let log = Log::open(dir.path()).expect("open the log");
    let verified = log.verify_all().expect("the log re-verifies from its leaves");
    assert!(verified.size >= checkpoint.size);
    assert_eq!(log.root(checkpoint.size).expect("root"), checkpoint.root, "the signed root is the log's");
    println!(
        "killed after {} acknowledged of {OPERATIONS}; {} stored; {} log entries",
        acknowledged.len(),
        stored.len(),
        verified.size
    );
}
