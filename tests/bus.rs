//! The bus bridged to NATS (here `acgs shim nats` on port 0): events cross between processes
//! once and in order, a process never hears its own events twice, and a ratification in one
//! deployment process changes the constitutional hash served by a service in another. Against
//! Debian's `nats-server` with a password (as the compose stack runs it): the credentials in the
//! NATS URL are what the bus authenticates with.

mod common;

use std::time::{Duration, Instant};

use acgs::kernel::bus::Bus;
use acgs::kernel::service::ServiceName;
use common::{TestApp, spawn_services};
use serde_json::{Value, json};

/// A NATS shim on a free port; its URL. It runs until the test ends.
async fn nats() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(acgs::shim::nats::run(listener, std::future::pending::<()>()));
    format!("nats://{addr}")
}

#[tokio::test]
async fn events_cross_processes_once_and_in_order() {
    let url = nats().await;
    let a = Bus::connect_nats(&url).await.expect("bus a");
    let b = Bus::connect_nats(&url).await.expect("bus b");
    let mut at_a = a.subscribe("acgs.test");
    let mut at_b = b.subscribe("acgs.test");
    // NATS subscriptions are set up asynchronously: wait until a probe crosses.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        a.publish("acgs.test.probe", json!({}));
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), at_b.next()).await {
            assert_eq!(&*e.subject, "acgs.test.probe");
            break;
        }
        assert!(Instant::now() < deadline, "no event crossed within 10 s");
    }
    for i in 0..100 {
        a.publish("acgs.test.n", json!({ "i": i }));
    }
    let mut seen = Vec::new();
    while seen.len() < 100 {
        let e = tokio::time::timeout(Duration::from_secs(5), at_b.next()).await.expect("in time").expect("event");
        if &*e.subject == "acgs.test.n" {
            seen.push(e.payload["i"].as_i64().expect("i"));
        }
    }
    assert_eq!(seen, (0..100).collect::<Vec<_>>(), "in publication order");
    // A heard each of its own events exactly once (locally), never again through NATS.
    let mut own = 0;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(500), at_a.next()).await {
        if &*e.subject == "acgs.test.n" {
            own += 1;
        }
    }
    assert_eq!(own, 100);
    assert!(a.check().is_ok() && b.check().is_ok());
}

/// Debian's nats-server on a free port of 127.0.0.1, requiring a user and password; killed on drop.
struct NatsWithPassword {
    child: std::process::Child,
    port: u16,
}

impl NatsWithPassword {
    fn start(user: &str, password: &str) -> NatsWithPassword {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "--user", user, "--pass", password])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start nats-server ({e}): run scripts/test.sh, which installs it"));
        NatsWithPassword { child, port }
    }
}

impl Drop for NatsWithPassword {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits up to `limit` for the bus to be connected.
async fn connected(bus: &Bus, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if bus.check().is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn the_credentials_in_the_nats_url_authenticate_the_bus() {
    // A password with characters a URL must escape.
    let server = NatsWithPassword::start("acgs", "p@ss:w/rd");
    let url = format!("nats://acgs:p%40ss%3Aw%2Frd@127.0.0.1:{}", server.port);
    let a = Bus::connect_nats(&url).await.expect("bus a");
    let b = Bus::connect_nats(&url).await.expect("bus b");
    assert!(connected(&a, Duration::from_secs(10)).await, "{:?}", a.check());
    assert!(connected(&b, Duration::from_secs(10)).await, "{:?}", b.check());
    let mut at_b = b.subscribe("acgs.test");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        a.publish("acgs.test.probe", json!({}));
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), at_b.next()).await {
            assert_eq!(&*e.subject, "acgs.test.probe");
            break;
        }
        assert!(Instant::now() < deadline, "no event crossed within 10 s");
    }
    // A wrong password, or none, never gets a connection (so /ready says the bus is not there).
    for wrong in [format!("nats://acgs:wrong@127.0.0.1:{}", server.port), format!("nats://127.0.0.1:{}", server.port)] {
        let bus = Bus::connect_nats(&wrong).await.expect("bus");
        assert!(!connected(&bus, Duration::from_secs(2)).await, "{wrong} connected");
    }
}

#[tokio::test]
async fn a_bad_nats_url_stops_start_up_with_one_line() {
    let err = Bus::connect_nats("nats://127.0.0.1:notaport").await.err().expect("refused");
    assert!(err.to_string().starts_with("nats_url: cannot use"), "{err}");
}

const PASSWORD: &str = "a-long-password-1";

async fn post(app: &TestApp, path: &str, token: &str, body: Value) -> Value {
    let response = app
        .http
        .post(app.url(ServiceName::Constitution, path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("POST");
    assert!(response.status().is_success(), "{path}: {}", response.status());
    response.json().await.expect("json")
}

#[tokio::test]
async fn a_ratification_changes_the_hash_served_by_another_process() {
    let url = nats().await;
    let here = {
        let url = url.clone();
        spawn_services(&[ServiceName::Auth, ServiceName::Constitution, ServiceName::Integrity], move |c| {
            c.nats_url = url;
        })
        .await
    };
    let (auth, constitution) = (here.addr(ServiceName::Auth), here.addr(ServiceName::Constitution));
    let there = spawn_services(&[ServiceName::Verification], move |c| {
        c.nats_url = url;
        c.auth.url = format!("http://{auth}");
        c.constitution.url = format!("http://{constitution}");
    })
    .await;
    let hash_there = || async {
        let response = there.get(&there.url(ServiceName::Verification, "/health"), None).await;
        response.headers()["x-constitutional-hash"].to_str().expect("ascii").to_string()
    };
    let before = hash_there().await;
    let ready = there.get(&there.url(ServiceName::Verification, "/ready"), None).await;
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap_or_default());

    let admin = here.admin_token().await;
    let mut council = Vec::new();
    for name in ["alice", "bob", "carol"] {
        here.create_user(&admin, name, PASSWORD, &["council"]).await;
        council.push(here.tokens(name, PASSWORD).await.0);
    }
    let principle = json!({
        "id": "right-to-explanation", "title": "Right to explanation", "category": "transparency", "priority": 70,
        "text": "Anyone affected by an automated decision can obtain the reasons for it.",
        "invariants": [{ "id": "explanations-are-served", "kind": "always", "description": "Explanations are served.",
            "policy": "permit(principal is Acgs::User, action == Acgs::Action::\"read\", resource is Acgs::Constitution);" }]
    });
    let draft = post(
        &here,
        "/api/v1/amendments",
        &council[0],
        json!({ "title": "t", "rationale": "r", "changes": [{ "op": "add_principle", "principle": principle }] }),
    )
    .await;
    let id = draft["id"].as_str().expect("id");
    post(&here, &format!("/api/v1/amendments/{id}/open"), &council[0], json!({})).await;
    for token in &council[..2] {
        post(&here, &format!("/api/v1/amendments/{id}/votes"), token, json!({ "choice": "approve" })).await;
    }
    let closed = post(&here, &format!("/api/v1/amendments/{id}/close"), &council[0], json!({})).await;
    assert_eq!(closed["status"], "ratified", "{closed}");
    let ratified_at = Instant::now();
    let new_hash = here
        .get(&here.url(ServiceName::Constitution, "/api/v1/constitution/hash"), None)
        .await
        .json::<Value>()
        .await
        .expect("json")["hash"]
        .as_str()
        .expect("hash")
        .to_string();
    assert_ne!(new_hash, before);
    loop {
        if hash_there().await == new_hash {
            break;
        }
        assert!(ratified_at.elapsed() < Duration::from_secs(1), "the other process still serves {before} after 1 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn without_nats_a_process_starts_but_is_not_ready() {
    // A port nothing listens on: the first connection is retried in the background.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let app = spawn_services(&[ServiceName::Integrity], move |c| c.nats_url = format!("nats://{free}")).await;
    assert_eq!(app.get(&app.url(ServiceName::Integrity, "/health"), None).await.status(), 200);
    let ready = app.get(&app.url(ServiceName::Integrity, "/ready"), None).await;
    assert_eq!(ready.status(), 503);
    let body = ready.text().await.expect("body");
    assert!(body.contains("bus"), "{body}");
}

/// A decide request an agent may make: execute a tool of the given risk.
fn execute(risk: &str) -> Value {
    json!({
        "principal": { "type": "Acgs::Agent", "id": "a1" },
        "action": { "type": "Acgs::Action", "id": "execute" },
        "resource": { "type": "Acgs::Tool", "id": "t1" },
        "context": { "irreversible": false, "human_approved": false },
        "entities": [
            { "uid": { "type": "Acgs::Agent", "id": "a1" }, "parents": [],
              "attrs": { "owner": { "__entity": { "type": "Acgs::User", "id": "u1" } }, "trust_level": 50 } },
            { "uid": { "type": "Acgs::Tool", "id": "t1" }, "parents": [], "attrs": { "risk": risk } }
        ]
    })
}

#[tokio::test]
async fn an_activation_through_one_consensus_replica_is_used_by_the_other_within_a_second() {
    let url = nats().await;
    let first = {
        let url = url.clone();
        common::spawn_app_with(move |c| {
            c.nats_url = url;
            c.verification.cvc5 = "none".into();
            c.verification.bounded_max_requests = 200;
        })
        .await
    };
    // The second replica: the same store (SQLite file or PostgreSQL database), its peers in the
    // first process.
    let (data_dir, database_url) = (first.config.data_dir.clone(), first.config.database_url.clone());
    let peer = |s: ServiceName| format!("http://{}", first.addr(s));
    let (auth, constitution, integrity, verification) = (
        peer(ServiceName::Auth),
        peer(ServiceName::Constitution),
        peer(ServiceName::Integrity),
        peer(ServiceName::Verification),
    );
    let second = spawn_services(&[ServiceName::Consensus], move |c| {
        c.nats_url = url;
        c.data_dir = data_dir;
        c.database_url = database_url;
        c.auth.url = auth;
        c.constitution.url = constitution;
        c.integrity.url = integrity;
        c.verification.url = verification;
    })
    .await;
    let admin = first.admin_token().await;
    let agent = first.client_token(&admin, "agent", &["agent"]).await;
    let decide = |app: &TestApp, body: Value| {
        let request = app.http.post(app.url(ServiceName::Consensus, "/api/v1/decide")).bearer_auth(&agent).json(&body);
        async move { request.send().await.expect("decide").json::<Value>().await.expect("json") }
    };
    let before = decide(&second, execute("low")).await;
    assert_eq!(
        (before["decision"].as_str(), before["policy_set_version"].as_i64()),
        (Some("allow"), Some(1)),
        "{before}"
    );

    // Through the first replica: a set without the low-risk tool permission.
    let genesis: Value = first
        .get(&first.url(ServiceName::Consensus, "/api/v1/policy-sets/active"), Some(&admin))
        .await
        .json()
        .await
        .expect("json");
    let policies = genesis["policies"].as_str().expect("text");
    let start = policies.find("@id(\"agents-use-low-risk-tools\")").expect("the tool policy");
    let narrower = policies[..start].to_string();
    let response = first
        .http
        .post(first.url(ServiceName::Consensus, "/api/v1/policy-sets/break-glass"))
        .bearer_auth(&admin)
        .json(&json!({ "reason": "incident: tools off", "policies": narrower }))
        .send()
        .await
        .expect("break-glass");
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap_or_default());
    let activated_at = Instant::now();
    loop {
        let now = decide(&second, execute("low")).await;
        if now["policy_set_version"] == 2 {
            assert_eq!(now["decision"], "deny", "{now}");
            break;
        }
        assert!(activated_at.elapsed() < Duration::from_secs(1), "the second replica still decides with version 1");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
