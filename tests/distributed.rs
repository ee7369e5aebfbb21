//! What only a distributed deployment has: replicas of a service behind one NATS bus, and the
//! loss of the infrastructure they share. Each service is its own `acgs serve` process (see
//! `common::distributed`); the flows every topology shares are in the other suites, run once
//! per topology by `per_topology!`.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use acgs::kernel::service::ServiceName;
use common::cedar::cvc5;
use common::{TestApp, Topology, process, spawn_in};
use serde_json::{Value, json};

const READ_PUBLIC: &str = r#"
@id("agents-read-public-datasets")
@principle("least-privilege")
permit(principal is Acgs::Agent, action == Acgs::Action::"read", resource is Acgs::Dataset)
  when { resource.classification == "public" && !context.irreversible };
"#;

fn agent_reads_public() -> Value {
    json!({
        "principal": { "type": "Acgs::Agent", "id": "a1" },
        "action": { "type": "Acgs::Action", "id": "read" },
        "resource": { "type": "Acgs::Dataset", "id": "d1" },
        "context": { "irreversible": false, "human_approved": false },
        "entities": [
            { "uid": { "type": "Acgs::Agent", "id": "a1" }, "parents": [],
              "attrs": { "owner": { "__entity": { "type": "Acgs::User", "id": "u1" } }, "trust_level": 50 } },
            { "uid": { "type": "Acgs::Dataset", "id": "d1" }, "parents": [], "attrs": { "classification": "public" } }
        ]
    })
}

async fn decide_at(app: &TestApp, base: &str, agent: &str) -> Value {
    let response = app
        .http
        .post(format!("{base}/api/v1/decide"))
        .bearer_auth(agent)
        .json(&agent_reads_public())
        .send()
        .await
        .expect("decide");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

async fn distributed() -> TestApp {
    let cvc5 = cvc5();
    spawn_in(Topology::Distributed, move |c| c.verification.cvc5 = cvc5).await
}

/// How many log entries have each subject starting with `prefix` (all pages of the log).
async fn subjects(app: &TestApp, prefix: &str) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    let mut from = 0;
    loop {
        let url = app.url(ServiceName::Integrity, &format!("/api/v1/log/entries?from={from}&limit=1000"));
        let page: Value = app.get(&url, None).await.json().await.expect("json");
        let entries = page["entries"].as_array().expect("entries");
        for e in entries {
            let subject = e["event"]["subject"].as_str().unwrap_or_default();
            if subject.starts_with(prefix) {
                *counts.entry(subject.to_string()).or_insert(0) += 1;
            }
        }
        if entries.len() < 1000 {
            return counts;
        }
        from += 1000;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_through_one_consensus_replica_is_used_by_the_other_within_a_second() {
    let _one_at_a_time = process::serial_async().await;
    let mut app = distributed().await;
    let admin = app.admin_token().await;
    let agent = app.client_token(&admin, "agent-one", &["agent"]).await;
    let replica = {
        let cluster = app.cluster.as_mut().expect("distributed");
        let addr = tokio::task::block_in_place(|| cluster.add_replica(ServiceName::Consensus));
        format!("http://{addr}")
    };
    let first = app.url(ServiceName::Consensus, "");
    assert_eq!(decide_at(&app, &replica, &agent).await["decision"], "deny");

    let active: Value = app
        .get(&app.url(ServiceName::Consensus, "/api/v1/policy-sets/active"), Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    let policies = format!("{}{READ_PUBLIC}", active["policies"].as_str().expect("policies"));
    let response = app
        .http
        .post(format!("{first}/api/v1/policy-sets/break-glass"))
        .bearer_auth(&admin)
        .json(&json!({ "reason": "replica test", "policies": policies }))
        .send()
        .await
        .expect("break-glass");
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap_or_default());
    let activated = Instant::now();
    loop {
        let decision = decide_at(&app, &replica, &agent).await;
        if decision["policy_set_version"] == 2 {
            assert_eq!(decision["decision"], "allow", "{decision}");
            break;
        }
        assert!(activated.elapsed() < Duration::from_secs(1), "the replica still decides with {decision}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nats_down_for_10_s_decisions_go_on_and_every_audit_event_arrives_once() {
    let _one_at_a_time = process::serial_async().await;
    let mut app = distributed().await;
    let admin = app.admin_token().await;
    let agent = app.client_token(&admin, "agent-one", &["agent"]).await;
    let consensus = app.url(ServiceName::Consensus, "");

    app.cluster.as_mut().expect("distributed").nats.stop();
    let down = Instant::now();
    let mut users = Vec::new();
    let mut decisions = Vec::new();
    while down.elapsed() < Duration::from_secs(10) {
        // Decisions keep being served, and state changes keep being acknowledged.
        let decision = decide_at(&app, &consensus, &agent).await;
        assert_eq!(decision["decision"], "deny", "{decision}");
        decisions.push(decision["decision_id"].as_str().expect("id").to_string());
        let name = format!("user-{}", users.len());
        users.push(app.create_user(&admin, &name, "a-long-password-1", &["auditor"]).await);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    app.cluster.as_mut().expect("distributed").nats.start();

    // Everything arrives, once.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logged_users = subjects(&app, "user:").await;
        let logged_decisions = subjects(&app, "decision:").await;
        let missing_users: Vec<_> = users.iter().filter(|u| !logged_users.contains_key(&format!("user:{u}"))).collect();
        let missing: Vec<_> =
            decisions.iter().filter(|d| !logged_decisions.contains_key(&format!("decision:{d}"))).collect();
        if missing_users.is_empty() && missing.is_empty() {
            for id in &decisions {
                assert_eq!(logged_decisions[&format!("decision:{id}")], 1, "decision {id} logged once");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "30 s after NATS came back, still missing {} user events and {} decisions",
            missing_users.len(),
            missing.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each user creation is one event.
    let created: Value = app
        .get(&app.url(ServiceName::Integrity, &format!("/api/v1/log/search?subject=user:{}", users[0])), None)
        .await
        .json()
        .await
        .expect("json");
    let kinds: Vec<&str> =
        created["entries"].as_array().expect("entries").iter().filter_map(|e| e["event"]["kind"].as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "auth.user.created").count(), 1, "{kinds:?}");
    // And the bus works again: readiness recovers everywhere.
    app.wait_ready().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_tokens_are_refused_503_and_accepted_again_once_it_is_back() {
    let _one_at_a_time = process::serial_async().await;
    let mut app = distributed().await;
    let admin = app.admin_token().await;
    let agent = app.client_token(&admin, "agent-one", &["agent"]).await;
    let consensus = app.url(ServiceName::Consensus, "");
    assert_eq!(decide_at(&app, &consensus, &agent).await["decision"], "deny");

    app.cluster.as_mut().expect("distributed").redis.stop();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Fail closed: nobody can tell whether the token was revoked, so it is not accepted.
    let response = app
        .http
        .post(format!("{consensus}/api/v1/decide"))
        .bearer_auth(&agent)
        .json(&agent_reads_public())
        .send()
        .await
        .expect("decide");
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.expect("json");
    assert!(body["error"]["message"].as_str().expect("message").contains("revocation"), "{body}");
    let ready = app.http.get(app.url(ServiceName::Consensus, "/ready")).send().await.expect("ready");
    assert_eq!(ready.status(), 503, "not ready without Redis");
    // Revoking cannot be promised either.
    let revoke =
        app.http.post(app.auth("/api/v1/auth/revoke")).form(&[("token", agent.as_str())]).send().await.expect("revoke");
    assert_eq!(revoke.status(), 503);

    app.cluster.as_mut().expect("distributed").redis.start();
    let back = Instant::now();
    loop {
        let response = app
            .http
            .post(format!("{consensus}/api/v1/decide"))
            .bearer_auth(&agent)
            .json(&agent_reads_public())
            .send()
            .await
            .expect("decide");
        if response.status() == 200 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(15), "still {} 15 s after Redis came back", response.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And a revocation now reaches every replica through Redis.
    let revoke = app.http.post(app.auth("/api/v1/auth/revoke")).form(&[("token", agent.as_str())]).send().await;
    assert_eq!(revoke.expect("revoke").status(), 200);
    let revoked = Instant::now();
    loop {
        let status = app
            .http
            .post(format!("{consensus}/api/v1/decide"))
            .bearer_auth(&agent)
            .json(&agent_reads_public())
            .send()
            .await
            .expect("decide")
            .status();
        if status == 401 {
            break;
        }
        assert!(revoked.elapsed() < Duration::from_secs(1), "the revoked token is still {status} after 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Needs the PostgreSQL pass of scripts/test.sh, which says how to restart its server
/// (`ACGS_TEST_PG_RESTART`); on the SQLite pass there is no server to restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_postgresql_restart_every_service_recovers_by_itself() {
    let (Ok(restart), Some(_)) = (std::env::var("ACGS_TEST_PG_RESTART"), common::test_database_url().await) else {
        eprintln!("no PostgreSQL to restart on this pass (scripts/test.sh runs this test on its PostgreSQL pass)");
        return;
    };
    let _one_at_a_time = process::serial_async().await;
    let app = distributed().await;
    let admin = app.admin_token().await;
    let agent = app.client_token(&admin, "agent-one", &["agent"]).await;
    let consensus = app.url(ServiceName::Consensus, "");
    let before = app.create_user(&admin, "before", "a-long-password-1", &["auditor"]).await;

    let status = tokio::task::spawn_blocking(move || std::process::Command::new("sh").args(["-c", &restart]).status())
        .await
        .expect("join")
        .expect("restart command runs");
    assert!(status.success(), "restarting PostgreSQL failed");

    // Every service works again without being restarted: logins, writes with their audit events,
    // reads, decisions.
    let back = Instant::now();
    let after = loop {
        let response = app
            .http
            .post(app.auth("/api/v1/users"))
            .bearer_auth(&admin)
            .json(&json!({ "username": "after", "password": "a-long-password-1", "roles": ["auditor"] }))
            .send()
            .await
            .expect("create user");
        if response.status() == 201 {
            break response.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_string();
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "auth still answers {} 30 s after the restart",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    app.tokens("after", "a-long-password-1").await;
    let decision = decide_at(&app, &consensus, &agent).await;
    app.wait_ready().await;
    for subject in [
        format!("user:{before}"),
        format!("user:{after}"),
        format!("decision:{}", decision["decision_id"].as_str().expect("id")),
    ] {
        common::assert_logged_with_proof(&app, &subject).await;
    }
    let version: Value = app
        .get(&app.url(ServiceName::Constitution, "/api/v1/constitution/hash"), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(version["version"], 1);
}
