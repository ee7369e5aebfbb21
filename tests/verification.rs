//! The verification service over HTTP, with the real cvc5 (through ACGS_CVC5, which
//! scripts/test.sh installs and sets), without a solver (bounded enumeration), and with a solver
//! that never answers (time-outs). Every counterexample the service reports is re-evaluated here
//! with Cedar's own authorizer and must really break what it is said to break.

mod common;

use std::time::Duration;

use acgs::config::Config;
use acgs::kernel::constitution::Constitution;
use acgs::kernel::service::ServiceName;
use common::cedar::{assert_counterexamples_are_real, cvc5};
use common::{TestApp, error_code, spawn_services};
use serde_json::{Value, json};

const SERVICES: [ServiceName; 3] = [ServiceName::Auth, ServiceName::Constitution, ServiceName::Verification];

async fn spawn(adjust: impl FnOnce(&mut Config)) -> (TestApp, String) {
    let app = spawn_services(&SERVICES, adjust).await;
    let admin = app.admin_token().await;
    app.create_user(&admin, "steward1", "a-long-password-1", &["steward"]).await;
    let token = app.tokens("steward1", "a-long-password-1").await.0;
    (app, token)
}

async fn with_solver() -> (TestApp, String) {
    let path = cvc5();
    spawn(move |c| c.verification.cvc5 = path).await
}

async fn verify(app: &TestApp, token: &str, body: &Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.url(ServiceName::Verification, "/api/v1/verify"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("verify");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

/// A set that lets agents delete audit records, plus something harmless.
const DELETES_AUDIT: &str = r#"
@id("agents-delete-audit-records")
permit(principal is Acgs::Agent, action == Acgs::Action::"delete", resource is Acgs::AuditRecord);
@id("users-read-documents")
permit(principal is Acgs::User, action == Acgs::Action::"read", resource is Acgs::Document);
"#;

/// A set that keeps every invariant of the genesis constitution.
const COMPLIANT: &str = r#"
@id("stewards-halt")
permit(principal is Acgs::User, action == Acgs::Action::"halt", resource is Acgs::Agent)
  when { principal.role == "steward" };
@id("auditors-read-audit")
permit(principal is Acgs::User, action == Acgs::Action::"read", resource is Acgs::AuditRecord)
  when { principal.role == "auditor" };
@id("users-read-constitution")
permit(principal is Acgs::User, action == Acgs::Action::"read", resource is Acgs::Constitution);
@id("agents-read-own-secrets")
permit(principal is Acgs::Agent, action == Acgs::Action::"read", resource is Acgs::Secret)
  when { resource.owner == principal && (!context.irreversible || context.human_approved) };
@id("agents-run-low-risk-tools")
permit(principal is Acgs::Agent, action == Acgs::Action::"execute", resource is Acgs::Tool)
  when { resource.risk == "low" && principal.trust_level >= 50 && (!context.irreversible || context.human_approved) };
@id("users-decide")
permit(principal is Acgs::User, action == Acgs::Action::"decide", resource is Acgs::Person);
@id("no-protected-attributes")
forbid(principal, action == Acgs::Action::"decide", resource) when { context.uses_protected_attributes };
"#;

fn results_of<'a>(report: &'a Value, check: &str) -> Vec<&'a Value> {
    report["results"].as_array().expect("results").iter().filter(|r| r["check"] == check).collect()
}

fn by_invariant<'a>(report: &'a Value, id: &str) -> &'a Value {
    results_of(report, "invariant")
        .into_iter()
        .find(|r| r["invariant"] == id)
        .unwrap_or_else(|| panic!("no result for {id} in {report}"))
}

#[tokio::test]
async fn a_set_letting_agents_delete_audit_records_is_refuted_with_a_real_counterexample() {
    let (app, token) = with_solver().await;
    let (status, report) = verify(&app, &token, &json!({ "policies": DELETES_AUDIT })).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["solver"]["name"], "cvc5", "{report}");
    let genesis = Constitution::genesis().expect("genesis");
    assert_eq!(report["constitution"]["hash"], genesis.digest().short);
    assert_eq!(report["constitution"]["version"], 1);
    let audit = by_invariant(&report, "audit-records-are-immutable");
    assert_eq!(audit["status"], "refuted", "{audit}");
    assert_eq!(audit["kind"], "never");
    assert_eq!(audit["principle"], "transparency-and-audit");
    assert_eq!(audit["counterexample"]["request"]["action"], json!({"type": "Acgs::Action", "id": "delete"}));
    assert_eq!(audit["counterexample"]["request"]["principal"]["type"], "Acgs::Agent");
    // The always-invariants fail too: this set lets no steward halt anything.
    assert_eq!(by_invariant(&report, "stewards-can-halt-agents")["status"], "refuted");
    assert_counterexamples_are_real(&report, DELETES_AUDIT, None);
    assert!(report["summary"]["compliance"].as_f64().expect("compliance") < 1.0, "{report}");
    assert_eq!(results_of(&report, "validation")[0]["status"], "proved");
    assert!(results_of(&report, "never_errors").iter().all(|r| r["status"] == "proved"), "{report}");
    // Without "active", the gauge is not touched.
    let metrics = app.get(&app.url(ServiceName::Verification, "/metrics"), None).await.text().await.expect("text");
    assert!(!metrics.contains("acgs_constitutional_compliance_score"), "{metrics}");
    assert!(metrics.contains(r#"acgs_verifications_total{check="invariant",status="refuted"}"#), "{metrics}");
}

#[tokio::test]
async fn a_compliant_set_proves_every_invariant_and_sets_the_compliance_score() {
    let (app, token) = with_solver().await;
    let started = std::time::Instant::now();
    let (status, report) = verify(&app, &token, &json!({ "policies": COMPLIANT })).await;
    assert_eq!(status, 200, "{report}");
    let invariants = results_of(&report, "invariant");
    assert_eq!(invariants.len(), 8);
    for r in &invariants {
        assert_eq!(r["status"], "proved", "{r}");
        assert!(r.get("counterexample").is_none());
    }
    assert_eq!(report["summary"]["compliance"], 1.0);
    assert_eq!(report["summary"]["invariants_proved"], 8);
    assert!(report["results"].as_array().expect("results").iter().all(|r| r["status"] == "proved"), "{report}");
    eprintln!(
        "genesis invariants with cvc5: {} ms in all; per invariant: {}",
        started.elapsed().as_millis(),
        invariants
            .iter()
            .map(|r| format!("{}={}ms", r["invariant"].as_str().unwrap_or("?"), r["duration_ms"]))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // A steward may not move the gauge; a service or admin reporting the set in force does.
    let (status, body) = verify(&app, &token, &json!({ "policies": COMPLIANT, "active": true })).await;
    assert_eq!(status, 403, "{body}");
    let admin = app.admin_token().await;
    let (status, _) = verify(&app, &admin, &json!({ "policies": COMPLIANT, "active": true })).await;
    assert_eq!(status, 200);
    let metrics = app.get(&app.url(ServiceName::Verification, "/metrics"), None).await.text().await.expect("text");
    assert!(metrics.contains("acgs_constitutional_compliance_score 1\n"), "{metrics}");
    let (status, _) =
        verify(&app, &admin, &json!({ "policies": DELETES_AUDIT, "active": true, "checks": ["invariants"] })).await;
    assert_eq!(status, 200);
    let metrics = app.get(&app.url(ServiceName::Verification, "/metrics"), None).await.text().await.expect("text");
    let score: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("acgs_constitutional_compliance_score "))
        .expect("gauge")
        .parse()
        .expect("number");
    assert!((0.0..1.0).contains(&score), "{score}");
}

#[tokio::test]
async fn compare_reports_what_the_new_set_allows_that_the_old_did_not() {
    let (app, token) = with_solver().await;
    let wider = format!(
        "{COMPLIANT}\n@id(\"agents-read-documents\")\npermit(principal is Acgs::Agent, action == Acgs::Action::\"read\", resource is Acgs::Document) when {{ !context.irreversible }};\n"
    );
    let body = json!({ "policies": wider, "compare_to": { "policies": COMPLIANT }, "checks": ["compare"] });
    let (status, report) = verify(&app, &token, &body).await;
    assert_eq!(status, 200, "{report}");
    let compare = results_of(&report, "compare");
    assert_eq!(compare.len(), 2, "{report}");
    let more = compare.iter().find(|r| r["direction"] == "allows_more").expect("allows_more");
    assert_eq!(more["status"], "refuted", "{more}");
    assert_eq!(more["counterexample"]["request"]["resource"]["type"], "Acgs::Document");
    let less = compare.iter().find(|r| r["direction"] == "allows_less").expect("allows_less");
    assert_eq!(less["status"], "proved", "{less}");
    assert_eq!(report["summary"]["equivalent"], false);
    assert_counterexamples_are_real(&report, &wider, Some(COMPLIANT));

    // The same set (another text of it) is equivalent.
    let same = format!("// the set in force, unchanged\n{COMPLIANT}");
    let body = json!({ "policies": COMPLIANT, "compare_to": { "policies": same }, "checks": ["compare"] });
    let (status, report) = verify(&app, &token, &body).await;
    assert_eq!(status, 200, "{report}");
    assert!(results_of(&report, "compare").iter().all(|r| r["status"] == "proved"), "{report}");
    assert_eq!(report["summary"]["equivalent"], true);
}

#[tokio::test]
async fn without_a_solver_checks_are_bounded_and_violations_still_refuted() {
    let (app, token) = spawn(|c| {
        c.verification.cvc5 = "none".into();
        c.verification.bounded_max_requests = 400;
    })
    .await;
    let (status, report) = verify(&app, &token, &json!({ "policies": DELETES_AUDIT })).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["solver"], Value::Null);
    let results = report["results"].as_array().expect("results");
    for r in results.iter().filter(|r| r["check"] != "validation") {
        assert_ne!(r["status"], "proved", "nothing is proved without a solver: {r}");
        if r["status"] == "bounded" {
            assert!(r["enumerated"].as_u64().expect("enumerated") > 0, "{r}");
            assert!(r["reason"].as_str().expect("reason").contains("not a proof"), "{r}");
        }
    }
    // Strict validation is a decision procedure of its own: it says `proved` with or without a solver.
    assert_eq!(results_of(&report, "validation")[0]["status"], "proved");
    let audit = by_invariant(&report, "audit-records-are-immutable");
    assert_eq!(audit["status"], "refuted", "{audit}");
    assert!(results.iter().any(|r| r["status"] == "bounded"), "{report}");
    assert_counterexamples_are_real(&report, DELETES_AUDIT, None);
    let compliant = verify(&app, &token, &json!({ "policies": COMPLIANT, "checks": ["invariants"] })).await.1;
    for r in results_of(&compliant, "invariant") {
        assert_eq!(r["status"], "bounded", "{r}");
    }
    assert_eq!(compliant["summary"]["compliance"], 0.0);
}

#[tokio::test]
async fn a_configured_solver_that_does_not_exist_stops_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::test_config(dir.path()).await;
    config.verification.cvc5 = dir.path().join("no-such-cvc5").display().to_string();
    let err = acgs::server::start(config, &SERVICES).await.err().expect("refused");
    let text = err.to_string();
    assert!(text.contains("verification.cvc5") && text.contains("no such file"), "{text}");
}

#[tokio::test]
async fn a_solver_past_its_time_out_gives_unknown_never_proved_and_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pids = dir.path().join("pids");
    let fake = dir.path().join("cvc5");
    // Says it is cvc5, then never answers a query.
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'This is cvc5 version 1.4.2 (never answers)'; exit 0; fi\necho $$ >> '{}'\nexec sleep 600\n",
            pids.display()
        ),
    )
    .expect("write");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let path = fake.display().to_string();
    let (app, token) = spawn(move |c| {
        c.verification.cvc5 = path;
        c.verification.timeout_ms = 300;
    })
    .await;
    let set = r#"@id("trusted-agents") permit(principal is Acgs::Agent, action, resource) when { principal.trust_level > 50 };"#;
    let (status, report) = verify(&app, &token, &json!({ "policies": set, "checks": ["invariants"] })).await;
    assert_eq!(status, 200, "{report}");
    let results = results_of(&report, "invariant");
    let unknown: Vec<_> = results.iter().filter(|r| r["status"] == "unknown").collect();
    assert!(unknown.len() >= 6, "{report}");
    for r in &results {
        assert_ne!(r["status"], "proved", "{r}");
        assert!(r["status"] == "unknown" || r["status"] == "refuted", "{r}");
    }
    for r in unknown {
        assert!(r["reason"].as_str().expect("reason").contains("time-out"), "{r}");
        assert!(r["duration_ms"].as_u64().expect("ms") < 5_000, "{r}");
    }
    // What was refuted was refuted without the solver (symbolic compilation alone), and is real.
    assert_counterexamples_are_real(&report, set, None);
    // A request may ask for less time, never more.
    let (_, quick) =
        verify(&app, &token, &json!({ "policies": set, "checks": ["invariants"], "timeout_ms": 50_000 })).await;
    assert!(results_of(&quick, "invariant").iter().all(|r| r["duration_ms"].as_u64().unwrap_or(0) < 5_000), "{quick}");
    // Every solver process started was killed.
    let started = std::fs::read_to_string(&pids).expect("the fake solver ran");
    assert!(started.lines().count() >= 6, "{started}");
    for pid in started.lines() {
        let mut dead = false;
        for _ in 0..100 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.split(") ").nth(1).is_some_and(|rest| rest.starts_with('Z')) {
                dead = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(dead, "solver process {pid} outlived its check");
    }
}

#[tokio::test]
async fn bad_input_is_a_4xx_with_the_parsers_message_and_position() {
    let (app, token) = spawn(|c| {
        c.verification.cvc5 = "none".into();
        c.http.body_limit_bytes = 12 * 1024 * 1024;
    })
    .await;
    let expect = |status: u16, code: &'static str, needle: &'static str, body: Value| {
        let app = &app;
        let token = &token;
        async move {
            let (got, answer) = verify(app, token, &body).await;
            assert_eq!(got, status, "{answer}");
            assert_eq!(answer["error"]["code"], code, "{answer}");
            let message = answer["error"]["message"].as_str().expect("message");
            assert!(message.contains(needle), "{needle:?} not in {message}");
        }
    };
    expect(
        400,
        "cedar_syntax",
        "2:",
        json!({"policies": "permit(principal, action, resource);\npermit(principal, action resource);"}),
    )
    .await;
    expect(
        422,
        "unknown_entity_type",
        "Acgs::Robot",
        json!({"policies": "permit(principal is Acgs::Robot, action, resource);"}),
    )
    .await;
    expect(422, "invalid_schema", "schema", json!({"policies": "", "schema": "entity A = {"})).await;
    // Stored sets come from the consensus service, which this app does not run.
    expect(503, "unavailable", "consensus", json!({"policy_set": 3})).await;
    expect(422, "invalid", "compare_to", json!({"policies": "", "checks": ["compare"]})).await;
    expect(422, "invalid", "unknown field", json!({"policies": "", "polices": ""})).await;
    expect(422, "invalid", "unknown variant", json!({"policies": "", "checks": ["everything"]})).await;
    // Deep nesting is refused before Cedar's recursive parser could overflow the stack.
    let deep =
        format!("permit(principal, action, resource) when {{ {}true{} }};", "(".repeat(10_000), ")".repeat(10_000));
    expect(400, "cedar_syntax", "1:", json!({ "policies": deep })).await;
    let chain = format!("permit(principal, action, resource) when {{ 1{} == 2 }};", " + 1".repeat(100_000));
    expect(400, "cedar_syntax", "operators", json!({ "policies": chain })).await;
    // Over the policy-text limit (the body limit here is 12 MiB): 413 from the policy layer.
    let huge = format!(
        "permit(principal, action, resource) when {{ \"{}\" == \"\" }};",
        "x".repeat(acgs::kernel::policy::MAX_TEXT)
    );
    expect(413, "payload_too_large", "at most", json!({ "policies": huge })).await;
    // Over the body limit: 413 from the kernel.
    let response = app
        .http
        .post(app.url(ServiceName::Verification, "/api/v1/verify"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!("{{\"policies\":\"{}\"}}", "x".repeat(13 * 1024 * 1024)))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(response).await, (413, "payload_too_large".to_string()));
    // Deeply nested JSON is refused (serde's recursion limit), not a crash.
    let response = app
        .http
        .post(app.url(ServiceName::Verification, "/api/v1/verify"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!("{{\"policies\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000)))
        .send()
        .await
        .expect("send");
    assert_eq!(error_code(response).await.0, 422);
    // A set that parses but fails strict validation: 200, validation refuted with line:column,
    // nothing else proved.
    let invalid = "@id(\"bad\")\npermit(principal is Acgs::Agent, action == Acgs::Action::\"read\", resource is Acgs::Tool)\n  when { resource.colour == \"red\" };";
    let (status, report) = verify(&app, &token, &json!({ "policies": invalid })).await;
    assert_eq!(status, 200, "{report}");
    let validation = results_of(&report, "validation")[0];
    assert_eq!(validation["status"], "refuted");
    assert_eq!(validation["problems"][0]["line"], 3, "{validation}");
    assert_eq!(validation["problems"][0]["policy"], "bad");
    for r in report["results"].as_array().expect("results").iter().filter(|r| r["check"] != "validation") {
        assert_eq!(r["status"], "invalid", "{r}");
    }
    // The service is still up.
    assert_eq!(app.get(&app.url(ServiceName::Verification, "/health"), None).await.status(), 200);
    assert_eq!(app.get(&app.url(ServiceName::Verification, "/ready"), None).await.status(), 200);
}
