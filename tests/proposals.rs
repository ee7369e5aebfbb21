//! Policy proposals end to end over HTTP, with the real cvc5: a set that breaks a `never`
//! invariant is refuted with a real counterexample and can never be voted into force; a compliant
//! set is proved, approved by steward votes, activated, and used by the very next decision, which
//! is in the log with a verifying inclusion proof. Also: rollbacks, break-glass, generation, no
//! solver, and bad input that changes nothing.

mod common;

use std::time::Duration;

use acgs::kernel::service::ServiceName;
use common::cedar::{assert_counterexamples_are_real, cvc5};
use common::{TestApp, Topology, error_code, spawn_in};
use serde_json::{Value, json};

const PASSWORD: &str = "a-long-password-1";

/// The policy every test adds to the genesis set: agents may read public datasets.
const READ_PUBLIC: &str = r#"
@id("agents-read-public-datasets")
@principle("least-privilege")
permit(principal is Acgs::Agent, action == Acgs::Action::"read", resource is Acgs::Dataset)
  when { resource.classification == "public" && !context.irreversible };
"#;

/// What breaks the constitution: agents deleting audit records.
const DELETE_AUDIT: &str = r#"
@id("agents-clean-up-audit-records")
@principle("transparency-and-audit")
permit(principal is Acgs::Agent, action == Acgs::Action::"delete", resource is Acgs::AuditRecord);
"#;

struct Governance {
    app: TestApp,
    admin: String,
    stewards: Vec<String>,
    agent: String,
    genesis: String,
}

async fn governance(cvc5: String) -> Governance {
    governance_in(Topology::OneProcess, cvc5).await
}

async fn governance_in(topology: Topology, cvc5: String) -> Governance {
    let app = spawn_in(topology, move |c| c.verification.cvc5 = cvc5).await;
    let admin = app.admin_token().await;
    let mut stewards = Vec::new();
    for name in ["sam", "sue", "sid"] {
        app.create_user(&admin, name, PASSWORD, &["steward"]).await;
        stewards.push(app.tokens(name, PASSWORD).await.0);
    }
    let agent = app.client_token(&admin, "agent-one", &["agent"]).await;
    let active: Value = get(&app, "/api/v1/policy-sets/active", &admin).await;
    let genesis = active["policies"].as_str().expect("policies").to_string();
    Governance { app, admin, stewards, agent, genesis }
}

async fn get(app: &TestApp, path: &str, token: &str) -> Value {
    let response = app.get(&app.url(ServiceName::Consensus, path), Some(token)).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.json().await.expect("json")
}

async fn post(app: &TestApp, path: &str, token: &str, body: &Value) -> reqwest::Response {
    app.http.post(app.url(ServiceName::Consensus, path)).bearer_auth(token).json(body).send().await.expect("POST")
}

async fn propose(g: &Governance, token: &str, body: Value) -> Value {
    let response = post(&g.app, "/api/v1/proposals", token, &body).await;
    let status = response.status();
    let answer: Value = response.json().await.expect("json");
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["status"], "verifying");
    answer
}

/// Polls until the proposal is no longer verifying.
async fn verified(g: &Governance, id: &str) -> Value {
    for _ in 0..600 {
        let p = get(&g.app, &format!("/api/v1/proposals/{id}"), &g.admin).await;
        if p["status"] != "verifying" {
            return p;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("proposal {id} still verifying after 60 s");
}

async fn vote(g: &Governance, token: &str, id: &str, choice: &str) -> reqwest::Response {
    post(&g.app, &format!("/api/v1/proposals/{id}/votes"), token, &json!({ "choice": choice })).await
}

fn agent_reads_dataset(classification: &str) -> Value {
    json!({
        "principal": { "type": "Acgs::Agent", "id": "a1" },
        "action": { "type": "Acgs::Action", "id": "read" },
        "resource": { "type": "Acgs::Dataset", "id": "d1" },
        "context": { "irreversible": false, "human_approved": false },
        "entities": [
            { "uid": { "type": "Acgs::Agent", "id": "a1" }, "parents": [],
              "attrs": { "owner": { "__entity": { "type": "Acgs::User", "id": "u1" } }, "trust_level": 50 } },
            { "uid": { "type": "Acgs::Dataset", "id": "d1" }, "parents": [], "attrs": { "classification": classification } }
        ]
    })
}

async fn decide(g: &Governance, body: &Value) -> Value {
    let response = post(&g.app, "/api/v1/decide", &g.agent, body).await;
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

async fn active_version(g: &Governance) -> i64 {
    get(&g.app, "/api/v1/policy-sets/active", &g.admin).await["version"].as_i64().expect("version")
}

per_topology!(a_refuted_set_never_reaches_a_vote_and_a_proved_one_is_voted_in_and_used_at_once);

async fn a_refuted_set_never_reaches_a_vote_and_a_proved_one_is_voted_in_and_used_at_once(topology: Topology) {
    let g = governance_in(topology, cvc5()).await;
    let [sam, sue, sid] = [&g.stewards[0], &g.stewards[1], &g.stewards[2]];
    // The genesis set keeps every invariant: its compliance score is 1 from the start.
    compliance_is_one(&g).await;

    // 1. A set that lets agents delete audit records: refuted with a real counterexample.
    let bad_set = format!("{}{DELETE_AUDIT}", g.genesis);
    let bad = propose(&g, sam, json!({ "title": "Clean-up", "rationale": "disk space", "policies": bad_set })).await;
    let bad_id = bad["id"].as_str().expect("id");
    let bad = verified(&g, bad_id).await;
    assert_eq!(bad["status"], "failed_verification", "{bad}");
    let report = &bad["verification"];
    let audit = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["invariant"] == "audit-records-are-immutable")
        .expect("the audit invariant was checked");
    assert_eq!(audit["status"], "refuted", "{audit}");
    assert_eq!(audit["counterexample"]["request"]["action"]["id"], "delete");
    assert_counterexamples_are_real(report, &bad_set, Some(&g.genesis));
    let failures = bad["outcome"]["failures"].as_array().expect("failures");
    assert!(failures.iter().any(|f| f.as_str().expect("text").contains("audit-records-are-immutable")), "{bad}");
    // It cannot be voted on or closed into force, and the active set did not change.
    assert_eq!(error_code(vote(&g, sue, bad_id, "approve").await).await.0, 409);
    let close = post(&g.app, &format!("/api/v1/proposals/{bad_id}/close"), sam, &json!({})).await;
    assert_eq!(error_code(close).await.0, 409);
    assert_eq!(active_version(&g).await, 1);

    // 2. A compliant set: every invariant proved, then voting opens.
    assert_eq!(decide(&g, &agent_reads_dataset("public")).await["decision"], "deny", "not yet permitted");
    let good_set = format!("{}{READ_PUBLIC}", g.genesis);
    let good = propose(
        &g,
        sam,
        json!({ "title": "Public datasets", "rationale": "agents need reference data", "policies": good_set }),
    )
    .await;
    let id = good["id"].as_str().expect("id");
    let good = verified(&g, id).await;
    assert_eq!(good["status"], "voting", "{good}");
    let summary = &good["verification"]["summary"];
    assert_eq!(summary["invariants"], summary["invariants_proved"], "{summary}");
    assert_eq!(summary["compliance"], 1.0);
    assert!(good["deadline"].as_i64().expect("deadline") > good["opened_at"].as_i64().expect("opened"));
    // What the change allows that the old set did not, for the voters.
    let more = good["verification"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["check"] == "compare" && r["direction"] == "allows_more")
        .expect("compare ran");
    assert_eq!(more["status"], "refuted");
    assert_eq!(more["counterexample"]["request"]["resource"]["type"], "Acgs::Dataset");

    // 3. Votes: stewards once each; a council member or an agent may not.
    app_user(&g, "carl", &["council"]).await;
    let carl = g.app.tokens("carl", PASSWORD).await.0;
    assert_eq!(error_code(vote(&g, &carl, id, "approve").await).await, (403, "forbidden".into()));
    assert_eq!(error_code(vote(&g, &g.agent, id, "approve").await).await.0, 403);
    assert_eq!(vote(&g, sam, id, "approve").await.status(), 201);
    assert_eq!(vote(&g, sue, id, "approve").await.status(), 201);
    assert_eq!(error_code(vote(&g, sue, id, "reject").await).await, (409, "conflict".into()));
    assert_eq!(vote(&g, sid, id, "abstain").await.status(), 201);
    let bad_choice = vote(&g, sid, id, "maybe").await;
    assert_eq!(error_code(bad_choice).await.0, 422);
    // Only the proposer or an admin closes.
    let by_sue = post(&g.app, &format!("/api/v1/proposals/{id}/close"), sue, &json!({})).await;
    assert_eq!(error_code(by_sue).await.0, 403);
    let closed = post(&g.app, &format!("/api/v1/proposals/{id}/close"), sam, &json!({})).await;
    assert_eq!(closed.status(), 200);
    let closed: Value = closed.json().await.expect("json");
    assert_eq!(closed["status"], "activated", "{closed}");
    assert_eq!(closed["activated_version"], 2);
    assert_eq!(closed["outcome"]["tally"]["approve"], 2);
    assert_eq!(closed["outcome"]["tally"]["eligible"], 3);

    // 4. The very next decision uses version 2, and it is in the log with a proof.
    let decision = decide(&g, &agent_reads_dataset("public")).await;
    assert_eq!(decision["decision"], "allow", "{decision}");
    assert_eq!(decision["policy_set_version"], 2);
    assert_eq!(decision["determining_policies"], json!(["agents-read-public-datasets"]));
    assert_eq!(decide(&g, &agent_reads_dataset("secret")).await["decision"], "deny");
    let entry = common::assert_logged_with_proof(
        &g.app,
        &format!("decision:{}", decision["decision_id"].as_str().expect("id")),
    )
    .await;
    assert_eq!(entry["event"]["data"]["policy_set_version"], 2);
    // The activation and the proposal's life are in the log too.
    let activation = common::assert_logged_with_proof(&g.app, "policy_set:2").await;
    assert_eq!(activation["event"]["kind"], "consensus.policy_set.activated");
    assert_eq!(activation["event"]["data"]["proposal"], id);
    let life: Value = g
        .app
        .get(&g.app.url(ServiceName::Integrity, &format!("/api/v1/log/search?subject=proposal:{id}")), None)
        .await
        .json()
        .await
        .expect("json");
    let kinds: Vec<&str> = life["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["event"]["kind"].as_str().unwrap_or(""))
        .collect();
    for kind in [
        "consensus.proposal_submitted",
        "consensus.proposal_verified",
        "consensus.vote_cast",
        "consensus.proposal_closed",
    ] {
        assert!(kinds.contains(&kind), "{kind} not in {kinds:?}");
    }

    // 5. The compliance score of the set in force is 1, and closed proposals are counted.
    compliance_is_one(&g).await;
    let consensus = g.app.get(&g.app.url(ServiceName::Consensus, "/metrics"), None).await.text().await.expect("text");
    assert!(consensus.contains("acgs_proposals_closed_total{outcome=\"activated\"} 1"), "{consensus}");
    assert!(consensus.contains("acgs_policy_set_version 2"), "{consensus}");

    // 6. An older proposal written against version 1 can no longer be activated: it expires.
    let stale = propose(
        &g,
        sue,
        json!({ "title": "Other", "rationale": "r", "policies": format!("{}{}", g.genesis, READ_PUBLIC.replace("public\"", "open\"").replace("agents-read-public-datasets", "agents-read-open-datasets")) }),
    )
    .await;
    let stale_id = stale["id"].as_str().expect("id");
    assert_eq!(stale["base_version"], 2);
    let stale = verified(&g, stale_id).await;
    assert_eq!(stale["status"], "voting", "{stale}");
    // A quorum missed: nobody voted, so it is rejected at close.
    let closed: Value = post(&g.app, &format!("/api/v1/proposals/{stale_id}/close"), &g.admin, &json!({}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(closed["status"], "rejected", "{closed}");
    assert_eq!(closed["outcome"]["tally"]["quorum_met"], false);
    assert_eq!(active_version(&g).await, 2);
}

/// Waits (up to 30 s) for the verification service to report the set in force fully compliant.
async fn compliance_is_one(g: &Governance) {
    let mut metrics = String::new();
    for _ in 0..300 {
        metrics = g.app.get(&g.app.url(ServiceName::Verification, "/metrics"), None).await.text().await.expect("text");
        if metrics.contains("acgs_constitutional_compliance_score 1\n") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the compliance score is not 1: {metrics}");
}

async fn app_user(g: &Governance, name: &str, roles: &[&str]) {
    g.app.create_user(&g.admin, name, PASSWORD, roles).await;
}

#[tokio::test]
async fn rollback_break_glass_and_generation() {
    let g = governance(cvc5()).await;
    let [sam, sue] = [&g.stewards[0], &g.stewards[1]];

    // Generation: a principle's intent as Cedar that names the principle and fits the schema.
    let intent = json!({
        "principle": "least-privilege",
        "id": "agents-read-public-datasets",
        "effect": "permit",
        "principal": { "type": "Acgs::Agent" },
        "actions": ["read"],
        "resource": { "type": "Acgs::Dataset" },
        "conditions": [
            { "attribute": "resource.classification", "op": "==", "value": "public" },
            { "attribute": "context.irreversible", "op": "==", "value": false }
        ]
    });
    let response = post(&g.app, "/api/v1/policies/generate", sam, &intent).await;
    assert_eq!(response.status(), 200);
    let generated: Value = response.json().await.expect("json");
    let text = generated["policy"].as_str().expect("policy");
    assert!(text.contains("@principle(\"least-privilege\")"), "{text}");
    let mut unknown = intent.clone();
    unknown["principle"] = json!("world-domination");
    let (status, _) = error_code(post(&g.app, "/api/v1/policies/generate", sam, &unknown).await).await;
    assert_eq!(status, 422);
    let mut misfit = intent.clone();
    misfit["conditions"][0]["attribute"] = json!("resource.colour");
    let response = post(&g.app, "/api/v1/policies/generate", sam, &misfit).await;
    assert_eq!(response.status(), 422);
    assert_eq!(error_code(post(&g.app, "/api/v1/policies/generate", &g.agent, &intent).await).await.0, 403);

    // The generated policy, proposed and voted in: version 2.
    let p = propose(
        &g,
        sam,
        json!({ "title": "Generated", "rationale": "r", "policies": format!("{}\n{text}", g.genesis) }),
    )
    .await;
    let id = p["id"].as_str().expect("id");
    let verified_generated = verified(&g, id).await;
    assert_eq!(verified_generated["status"], "voting", "{verified_generated}");
    for s in [sam, sue] {
        assert_eq!(vote(&g, s, id, "approve").await.status(), 201);
    }
    let closed: Value =
        post(&g.app, &format!("/api/v1/proposals/{id}/close"), &g.admin, &json!({})).await.json().await.expect("json");
    assert_eq!(closed["status"], "activated", "{closed}");
    assert_eq!(decide(&g, &agent_reads_dataset("public")).await["policy_set_version"], 2);

    // The verification service reads stored sets by version from consensus: version 2 against 1.
    let response = g
        .app
        .http
        .post(g.app.url(ServiceName::Verification, "/api/v1/verify"))
        .bearer_auth(sam)
        .json(&json!({ "policy_set": 2, "compare_to": { "policy_set": 1 } }))
        .send()
        .await
        .expect("verify");
    assert_eq!(response.status(), 200);
    let report: Value = response.json().await.expect("json");
    assert_eq!(report["summary"]["invariants"], report["summary"]["invariants_proved"], "{report}");
    assert_eq!(report["summary"]["equivalent"], false);
    let missing = g
        .app
        .http
        .post(g.app.url(ServiceName::Verification, "/api/v1/verify"))
        .bearer_auth(sam)
        .json(&json!({ "policy_set": 99 }))
        .send()
        .await
        .expect("verify");
    assert_eq!(error_code(missing).await.0, 404);

    // Rollback is a proposal too: version 1's content comes back as version 3.
    let back = propose(&g, sue, json!({ "title": "Roll back", "rationale": "r", "rollback_to": 1 })).await;
    assert_eq!(back["rollback_to"], 1);
    assert_eq!(back["policies"], g.genesis.as_str());
    let back_id = back["id"].as_str().expect("id");
    assert_eq!(verified(&g, back_id).await["status"], "voting");
    // Withdrawn by its proposer: nothing changes.
    let withdrawn: Value = post(&g.app, &format!("/api/v1/proposals/{back_id}/withdraw"), sue, &json!({}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(withdrawn["status"], "withdrawn");
    assert_eq!(error_code(vote(&g, sam, back_id, "approve").await).await.0, 409);
    assert_eq!(active_version(&g).await, 2);

    // Break-glass: admins only, with a reason, never against the constitution.
    let rollback = json!({ "reason": "incident 42: public datasets leaked", "rollback_to": 1 });
    assert_eq!(error_code(post(&g.app, "/api/v1/policy-sets/break-glass", sam, &rollback).await).await.0, 403);
    let forbidden = json!({ "reason": "r", "policies": format!("{}{DELETE_AUDIT}", g.genesis) });
    let (status, code) = error_code(post(&g.app, "/api/v1/policy-sets/break-glass", &g.admin, &forbidden).await).await;
    assert_eq!((status, code.as_str()), (422, "invalid"));
    assert_eq!(active_version(&g).await, 2);
    let no_reason = json!({ "reason": " ", "rollback_to": 1 });
    assert_eq!(error_code(post(&g.app, "/api/v1/policy-sets/break-glass", &g.admin, &no_reason).await).await.0, 422);
    let response = post(&g.app, "/api/v1/policy-sets/break-glass", &g.admin, &rollback).await;
    assert_eq!(response.status(), 201);
    let v: Value = response.json().await.expect("json");
    assert_eq!(v["version"], 3);
    let decision = decide(&g, &agent_reads_dataset("public")).await;
    assert_eq!((decision["decision"].as_str(), decision["policy_set_version"].as_i64()), (Some("deny"), Some(3)));
    let entry = common::assert_logged_with_proof(&g.app, "policy_set:3").await;
    let glass: Value = g
        .app
        .get(&g.app.url(ServiceName::Integrity, "/api/v1/log/search?subject=policy_set:3"), None)
        .await
        .json()
        .await
        .expect("json");
    assert!(entry["event"].is_object());
    let kinds: Vec<&str> = glass["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["event"]["kind"].as_str().unwrap_or(""))
        .collect();
    assert!(kinds.contains(&"consensus.break_glass"), "{kinds:?}");
    let set3 = get(&g.app, "/api/v1/policy-sets/3", &g.admin).await;
    assert_eq!(set3["policies"], g.genesis.as_str());
    assert!(set3["note"].as_str().expect("note").contains("incident 42"));
}

#[tokio::test]
async fn without_a_solver_nothing_is_proved_so_nothing_goes_to_a_vote() {
    let g = governance("none".into()).await;
    let p = propose(
        &g,
        &g.stewards[0],
        json!({ "title": "t", "rationale": "r", "policies": format!("{}{READ_PUBLIC}", g.genesis) }),
    )
    .await;
    let p = verified(&g, p["id"].as_str().expect("id")).await;
    assert_eq!(p["status"], "failed_verification", "{p}");
    let statuses: Vec<&str> = p["verification"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["check"] == "invariant")
        .map(|r| r["status"].as_str().expect("status"))
        .collect();
    assert!(!statuses.is_empty() && statuses.iter().all(|s| *s == "bounded"), "{statuses:?}");
    assert!(p["outcome"]["failures"][0].as_str().expect("failure").contains("bounded"), "{p}");
    assert_eq!(active_version(&g).await, 1);
}

#[tokio::test]
async fn bad_proposals_are_4xx_with_the_parsers_position_and_store_nothing() {
    let g = governance("none".into()).await;
    let sam = &g.stewards[0];
    let app = &g.app;
    let send = |body: Value| async move { post(app, "/api/v1/proposals", sam, &body).await };
    let with = |policies: String| json!({ "title": "t", "rationale": "r", "policies": policies });

    let line_of = |text: &str, needle: &str| text[..text.find(needle).expect("needle")].matches('\n').count() + 1;
    let syntax =
        format!("{}\n@id(\"x\")\n@principle(\"least-privilege\")\npermit(principal, action resource);", g.genesis);
    let syntax_line = line_of(&syntax, "permit(principal, action resource)");
    let response = send(with(syntax)).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "cedar_syntax");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(message.contains(&format!("{syntax_line}:")), "line {syntax_line} in {message}");

    let robot = with(format!(
        "{}\n@id(\"x\")\n@principle(\"least-privilege\")\npermit(principal is Acgs::Robot, action, resource);",
        g.genesis
    ));
    let (status, code) = error_code(send(robot).await).await;
    assert_eq!((status, code.as_str()), (422, "unknown_entity_type"));

    let misfit = format!(
        "{}\n@id(\"x\")\n@principle(\"least-privilege\")\npermit(principal is Acgs::Agent, action, resource is Acgs::Tool)\n  when {{ resource.colour == \"red\" }};",
        g.genesis
    );
    let misfit_line = line_of(&misfit, "resource.colour");
    let response = send(with(misfit)).await;
    assert_eq!(response.status(), 422);
    let message = response.json::<Value>().await.expect("json")["error"]["message"].as_str().expect("m").to_string();
    assert!(message.contains("colour") && message.contains(&format!("{misfit_line}:")), "{message}");

    let untraced = with(format!(
        "{}\n@id(\"x\")\npermit(principal is Acgs::User, action == Acgs::Action::\"read\", resource is Acgs::Document);",
        g.genesis
    ));
    let (status, code) = error_code(send(untraced).await).await;
    assert_eq!((status, code.as_str()), (422, "untraced_policy"));

    let bad_entities = json!({ "title": "t", "rationale": "r", "policies": g.genesis, "entities": [{ "uid": { "type": "Acgs::Tool", "id": "t" }, "attrs": {}, "parents": [] }] });
    assert_eq!(error_code(send(bad_entities).await).await.0, 422);
    let bad_schema = json!({ "title": "t", "rationale": "r", "policies": g.genesis, "schema": "entity A = {" });
    let (status, code) = error_code(send(bad_schema).await).await;
    assert_eq!((status, code.as_str()), (422, "invalid_schema"));
    assert_eq!(error_code(send(with(g.genesis.clone())).await).await.0, 422, "no change");
    assert_eq!(error_code(send(json!({ "title": "t", "rationale": "r" })).await).await.0, 422);
    assert_eq!(error_code(send(json!({ "title": "t", "rationale": "r", "rollback_to": 99 })).await).await.0, 404);
    assert_eq!(
        error_code(send(json!({ "title": "t", "rationale": "r", "policies": "", "rollback_to": 1 })).await).await.0,
        422
    );
    assert_eq!(error_code(send(json!({ "title": "", "rationale": "r", "policies": READ_PUBLIC })).await).await.0, 422);
    assert_eq!(error_code(send(json!({ "title": "t", "rationale": "r", "policy": "x" })).await).await.0, 422);
    let huge = "x".repeat(acgs::kernel::policy::MAX_TEXT + 1);
    let response = g
        .app
        .http
        .post(g.app.url(ServiceName::Consensus, "/api/v1/proposals"))
        .bearer_auth(sam)
        .json(&with(huge))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(response).await.0, 413);
    // An agent cannot propose at all; unknown proposals are 404.
    assert_eq!(error_code(post(&g.app, "/api/v1/proposals", &g.agent, &with(g.genesis.clone())).await).await.0, 403);
    let missing = g.app.get(&g.app.url(ServiceName::Consensus, "/api/v1/proposals/nope"), Some(sam)).await;
    assert_eq!(error_code(missing).await.0, 404);
    assert_eq!(error_code(vote(&g, sam, "nope", "approve").await).await.0, 404);

    // Nothing was stored, and the active set is the one it was.
    let list = get(&g.app, "/api/v1/proposals", sam).await;
    assert_eq!(list["proposals"], json!([]), "{list}");
    assert_eq!(active_version(&g).await, 1);
    let sets = get(&g.app, "/api/v1/policy-sets", sam).await;
    assert_eq!(sets.as_array().expect("sets").len(), 1);
}
