//! The consensus service over HTTP: the genesis policy set, decisions for an agent (allow with
//! the determining policy, default deny, explicit forbid), each decision in the integrity log
//! with an inclusion proof that verifies against a signed checkpoint, batches, roles, and bad
//! requests answered 422 with no decision.

mod common;

use acgs::kernel::service::ServiceName;
use common::{TestApp, error_code, spawn_app};
use serde_json::{Value, json};

/// An agent's token (a machine client with the `agent` role).
async fn agent_token(app: &TestApp, admin: &str) -> String {
    app.client_token(admin, "agent-one", &["agent"]).await
}

fn agent() -> Value {
    json!({
        "uid": { "type": "Acgs::Agent", "id": "a1" },
        "attrs": { "owner": { "__entity": { "type": "Acgs::User", "id": "u1" } }, "trust_level": 50 },
        "parents": []
    })
}

fn request(action: &str, resource: Value, entities: Vec<Value>) -> Value {
    json!({
        "principal": { "type": "Acgs::Agent", "id": "a1" },
        "action": { "type": "Acgs::Action", "id": action },
        "resource": resource,
        "context": { "irreversible": false, "human_approved": false },
        "entities": entities,
    })
}

fn tool(id: &str, risk: &str) -> Value {
    json!({ "uid": { "type": "Acgs::Tool", "id": id }, "attrs": { "risk": risk }, "parents": [] })
}

async fn decide(app: &TestApp, token: &str, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url(ServiceName::Consensus, "/api/v1/decide"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("decide")
}

#[tokio::test]
async fn an_agent_gets_decisions_and_each_is_in_the_log_with_a_proof() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let token = agent_token(&app, &admin).await;

    // The genesis set is version 1 and active.
    let sets: Value = app
        .get(&app.url(ServiceName::Consensus, "/api/v1/policy-sets"), Some(&token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(sets[0]["version"], 1);
    assert_eq!(sets[0]["active"], true);
    let active: Value = app
        .get(&app.url(ServiceName::Consensus, "/api/v1/policy-sets/active"), Some(&token))
        .await
        .json()
        .await
        .expect("json");
    assert!(active["policies"].as_str().expect("text").contains("agents-use-low-risk-tools"));

    let low = request("execute", json!({ "type": "Acgs::Tool", "id": "t1" }), vec![agent(), tool("t1", "low")]);
    let response = decide(&app, &token, &low).await;
    assert_eq!(response.status(), 200);
    let hash = response.headers()["x-constitutional-hash"].to_str().expect("ascii").to_string();
    let allow: Value = response.json().await.expect("json");
    assert_eq!(allow["decision"], "allow", "{allow}");
    assert_eq!(allow["determining_policies"], json!(["agents-use-low-risk-tools"]));
    assert_eq!(allow["policy_set_version"], 1);
    assert_eq!(allow["constitutional_hash"], hash);
    assert_eq!(allow["logged"], true);

    let high = request("execute", json!({ "type": "Acgs::Tool", "id": "t2" }), vec![agent(), tool("t2", "high")]);
    let deny: Value = decide(&app, &token, &high).await.json().await.expect("json");
    assert_eq!(deny["decision"], "deny");
    assert_eq!(deny["determining_policies"], json!([]), "default deny");
    let audit = request("delete", json!({ "type": "Acgs::AuditRecord", "id": "r1" }), vec![agent()]);
    let deny_audit: Value = decide(&app, &token, &audit).await.json().await.expect("json");
    assert_eq!(deny_audit["decision"], "deny");

    // Each decision id is in the log; its inclusion proof verifies against a signed checkpoint.
    for decision in [&allow, &deny, &deny_audit] {
        let id = decision["decision_id"].as_str().expect("id");
        let entry = common::assert_logged_with_proof(&app, &format!("decision:{id}")).await;
        assert_eq!(entry["event"]["event_id"], id);
        assert_eq!(entry["event"]["kind"], "consensus.decision");
        assert_eq!(entry["event"]["data"]["decision"], decision["decision"]);
    }

    // Metrics count them.
    let metrics = app.get(&app.url(ServiceName::Consensus, "/metrics"), None).await.text().await.expect("text");
    assert!(metrics.contains("acgs_decisions_total{outcome=\"allow\"} 1"), "{metrics}");
    assert!(metrics.contains("acgs_decisions_total{outcome=\"deny\"} 2"), "{metrics}");

    // A byte-identical repeat is answered from the cache: the same answer, its own id, logged.
    let again: Value = decide(&app, &token, &low).await.json().await.expect("json");
    assert_eq!(again["decision"], "allow");
    assert_eq!(again["determining_policies"], allow["determining_policies"]);
    assert_ne!(again["decision_id"], allow["decision_id"]);
    let entry =
        common::assert_logged_with_proof(&app, &format!("decision:{}", again["decision_id"].as_str().expect("id")))
            .await;
    assert_eq!(entry["event"]["data"]["principal"], json!({ "type": "Acgs::Agent", "id": "a1" }));
    let metrics = app.get(&app.url(ServiceName::Consensus, "/metrics"), None).await.text().await.expect("text");
    assert!(metrics.contains("acgs_decision_cache_total{result=\"hit\"} 1"), "{metrics}");
    assert!(metrics.contains("acgs_decision_cache_total{result=\"miss\"} 3"), "{metrics}");
}

#[tokio::test]
async fn batches_roles_and_bad_requests() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let token = agent_token(&app, &admin).await;
    let url = app.url(ServiceName::Consensus, "/api/v1/decide");

    // Batch: a decision or a reason per request, in order.
    let good = request("read", json!({ "type": "Acgs::Tool", "id": "t1" }), vec![agent(), tool("t1", "low")]);
    let mut bad = good.clone();
    bad["principal"]["type"] = json!("Acgs::Robot");
    let batch: Value = app
        .http
        .post(app.url(ServiceName::Consensus, "/api/v1/decide/batch"))
        .bearer_auth(&token)
        .json(&json!({ "requests": [good, bad] }))
        .send()
        .await
        .expect("batch")
        .json()
        .await
        .expect("json");
    assert_eq!(batch["decisions"][0]["decision"], "allow", "{batch}");
    assert!(batch["decisions"][1]["error"].as_str().expect("error").contains("Acgs::Robot"), "{batch}");
    let too_many = json!({ "requests": vec![good.clone(); 101] });
    let response = app
        .http
        .post(app.url(ServiceName::Consensus, "/api/v1/decide/batch"))
        .bearer_auth(&token)
        .json(&too_many)
        .send();
    assert_eq!(error_code(response.await.expect("batch")).await.0, 422);

    // Roles: no token 401; a council member is not a decider.
    assert_eq!(error_code(app.http.post(&url).json(&good).send().await.expect("post")).await.0, 401);
    app.create_user(&admin, "carol", "carol-password-1", &["council"]).await;
    let (council, _) = app.tokens("carol", "carol-password-1").await;
    assert_eq!(error_code(decide(&app, &council, &good).await).await.0, 403);

    // Requests that do not fit the schema: 422, never a decision.
    let mut no_context = good.clone();
    no_context["context"] = json!({});
    let mut wrong_context = good.clone();
    wrong_context["context"]["irreversible"] = json!("no");
    let mut extra_context = good.clone();
    extra_context["context"]["colour"] = json!("red");
    let mut unknown_action = good.clone();
    unknown_action["action"]["id"] = json!("launch");
    let mut bad_entity = good.clone();
    bad_entity["entities"] = json!([{ "uid": { "type": "Acgs::Agent", "id": "a1" }, "attrs": {}, "parents": [] }]);
    let mut not_a_type = good.clone();
    not_a_type["resource"]["type"] = json!("not a type");
    let mut huge = good.clone();
    huge["context"]["reason"] = json!("x".repeat(3 * 1024 * 1024));
    // Each refusal names what is wrong (and, for JSON, where).
    let cases = [
        ("context missing required attributes", no_context, 422, "`human_approved`"),
        ("context attribute of the wrong type", wrong_context, 422, "irreversible: \"no\""),
        ("context attribute the schema lacks", extra_context, 422, "`colour` should not exist"),
        ("unknown action", unknown_action, 422, "no action Acgs::Action::\"launch\""),
        ("entity not matching the schema", bad_entity, 422, "`Acgs::Agent::\"a1\"` to have attribute `owner`"),
        ("unparseable type", not_a_type, 422, "\"not a type\" is not an entity type"),
        ("huge context", huge, 413, "http.body_limit_bytes"),
        (
            "unknown field",
            json!({ "principal": good["principal"], "action": good["action"], "resource": good["resource"], "extra": 1 }),
            422,
            "unknown field `extra`",
        ),
    ];
    for (what, body, status, needle) in cases {
        let response = decide(&app, &token, &body).await;
        assert_eq!(response.status().as_u16(), status, "{what}");
        let error: Value = response.json().await.expect("a JSON error");
        let message = error["error"]["message"].as_str().expect("message");
        assert!(message.contains(needle), "{what}: {message}");
    }
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let body = format!(r#"{{"principal": {{"type": "Acgs::Agent", "id": "a1"}}, "context": {deep}}}"#);
    let response = app
        .http
        .post(&url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 400, "deep nesting");
    let error: Value = response.json().await.expect("a JSON error");
    let message = error["error"]["message"].as_str().expect("message");
    assert!(message.contains("recursion limit exceeded at line 1 column"), "deep nesting: {message}");
    for (content_type, body, status) in [
        ("text/plain", good.to_string(), 415),
        ("application/json", "{\"principal\": ".to_string(), 400),
        ("application/json; charset=utf-8", "[1, 2]".to_string(), 422),
    ] {
        let response =
            app.http.post(&url).bearer_auth(&token).header("content-type", content_type).body(body).send().await;
        assert_eq!(error_code(response.expect("post")).await.0, status, "{content_type}");
    }
    // Still serving, and nothing was decided for the refused requests.
    let ok: Value = decide(&app, &token, &good).await.json().await.expect("json");
    assert_eq!(ok["decision"], "allow");
    let metrics = app.get(&app.url(ServiceName::Consensus, "/metrics"), None).await.text().await.expect("text");
    assert!(metrics.contains("acgs_decisions_total{outcome=\"allow\"} 2"), "{metrics}");
}
