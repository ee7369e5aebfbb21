//! `POST /api/v1/decide` against Cedar's reference authorizer on a generated corpus.
//!
//! A seeded generator writes 2,000 requests across the embedded governance schema: every
//! principal, action and resource type (and some the schema lacks or that do not parse), contexts
//! that fit and contexts that do not (missing, mistyped, extra attributes), entities that conform
//! and entities that do not, entities left out so policies error. A richer policy set than genesis
//! (forbids, group membership, `has`, comparisons) is activated through break-glass. Each request
//! is decided by the service (in batches and singly) and, independently here, by
//! `cedar_policy::Authorizer` over the whole set with full schema validation. They must agree on
//! every request: no decision where the reference refuses the request, and otherwise the same
//! decision, the same determining policies, and errors exactly when the reference has errors.

mod common;

use std::collections::BTreeSet;

use acgs::kernel::policy::governance_schema;
use acgs::kernel::service::ServiceName;
use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request};
use common::spawn_app_with;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Keeps every invariant of the genesis constitution, and exercises more of Cedar than genesis.
const RICH: &str = r#"
@id("stewards-halt-agents")
@principle("human-oversight")
permit(principal is Acgs::User, action == Acgs::Action::"halt", resource is Acgs::Agent)
  when { principal.role == "steward" };

@id("auditors-read-audit-records")
@principle("transparency-and-audit")
permit(principal is Acgs::User, action == Acgs::Action::"read", resource is Acgs::AuditRecord)
  when { principal.role == "auditor" };

@id("everyone-reads-the-constitution")
@principle("accountability")
permit(principal is Acgs::User, action == Acgs::Action::"read", resource is Acgs::Constitution);

@id("agents-read-their-own-secrets")
@principle("least-privilege")
permit(principal is Acgs::Agent, action == Acgs::Action::"read", resource is Acgs::Secret)
  when { resource.owner == principal && (!context.irreversible || context.human_approved) };

@id("trusted-agents-use-tools")
@principle("least-privilege")
permit(principal is Acgs::Agent, action in [Acgs::Action::"read", Acgs::Action::"execute"], resource is Acgs::Tool)
  when { (resource.risk == "low" || principal.trust_level >= 80) && !context.irreversible };

@id("no-high-risk-for-the-untrusted")
@principle("least-privilege")
forbid(principal is Acgs::Agent, action, resource is Acgs::Tool)
  when { resource.risk == "high" && principal.trust_level < 90 };

@id("ops-team-deploys-with-approval")
@principle("reversibility")
permit(principal in Acgs::Team::"ops", action == Acgs::Action::"deploy", resource)
  when { context.human_approved };

@id("owners-edit-their-documents")
@principle("least-privilege")
permit(principal is Acgs::User, action in [Acgs::Action::"read", Acgs::Action::"write"], resource is Acgs::Document)
  when { resource has owner && resource.owner == principal };

@id("public-datasets")
@principle("least-privilege")
permit(principal, action == Acgs::Action::"read", resource is Acgs::Dataset)
  when { resource.classification == "public" && !context.irreversible };

@id("decisions-with-a-reason")
@principle("non-discrimination")
permit(principal is Acgs::Service, action == Acgs::Action::"decide", resource is Acgs::Person)
  when { !context.uses_protected_attributes && context has reason && context.reason like "case-*" };

@id("nobody-writes-policy-sets-directly")
@principle("accountability")
forbid(principal, action in [Acgs::Action::"write", Acgs::Action::"delete"], resource is Acgs::PolicySet);
"#;

/// The set's own entities: team membership lives here.
fn set_entities() -> Value {
    json!([
        { "uid": { "type": "Acgs::Team", "id": "ops" }, "attrs": {}, "parents": [] },
        { "uid": { "type": "Acgs::Team", "id": "research" }, "attrs": {}, "parents": [] }
    ])
}

const TYPES: &[&str] = &[
    "Acgs::User",
    "Acgs::Agent",
    "Acgs::Service",
    "Acgs::Team",
    "Acgs::Tool",
    "Acgs::Dataset",
    "Acgs::Document",
    "Acgs::Secret",
    "Acgs::Person",
    "Acgs::AuditRecord",
    "Acgs::OversightControl",
    "Acgs::PolicySet",
    "Acgs::Constitution",
];
const ACTIONS: &[&str] = &["read", "write", "delete", "execute", "deploy", "halt", "decide"];

fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.gen_range(0..items.len())]
}

fn uid(t: &str, id: &str) -> Value {
    json!({ "type": t, "id": id })
}

fn entity_ref(t: &str, id: &str) -> Value {
    json!({ "__entity": { "type": t, "id": id } })
}

/// Attributes for an entity of type `t`; now and then mistyped (a conformance error).
fn attrs(rng: &mut StdRng, t: &str, principal_id: &str) -> Value {
    let mistype = rng.gen_ratio(1, 25);
    match t {
        "Acgs::User" => {
            let mut a = json!({ "role": pick(rng, &["steward", "auditor", "admin", "agent", "council"]) });
            if rng.gen_bool(0.3) {
                a["department"] = json!("ops");
            }
            if mistype {
                a["role"] = json!(7);
            }
            a
        }
        "Acgs::Agent" => {
            // The owner as an explicit `__entity`, or implicitly as `{"type", "id"}` (which only
            // a schema-directed reader takes for an entity).
            let owner = if rng.gen_bool(0.8) { entity_ref("Acgs::User", "u1") } else { uid("Acgs::User", "u1") };
            let mut a = json!({ "owner": owner, "trust_level": rng.gen_range(0..=100) });
            if mistype {
                a["trust_level"] = json!("high");
            }
            a
        }
        "Acgs::Tool" => {
            json!({ "risk": if mistype { json!(true) } else { json!(pick(rng, &["low", "medium", "high"])) } })
        }
        "Acgs::Dataset" => json!({ "classification": pick(rng, &["public", "internal", "secret"]) }),
        "Acgs::Document" => {
            if rng.gen_bool(0.5) {
                json!({ "owner": entity_ref("Acgs::User", pick(rng, &["u1", "u2"])) })
            } else {
                json!({})
            }
        }
        "Acgs::Secret" => {
            let owner = if rng.gen_bool(0.5) { principal_id } else { "other-agent" };
            json!({ "owner": entity_ref("Acgs::Agent", owner) })
        }
        "Acgs::Person" => json!({ "group": pick(rng, &["a", "b"]) }),
        _ => json!({}),
    }
}

fn context(rng: &mut StdRng, action: &str) -> Value {
    let mut c = json!({ "irreversible": rng.gen_bool(0.3), "human_approved": rng.gen_bool(0.5) });
    if action == "decide" {
        c["uses_protected_attributes"] = json!(rng.gen_bool(0.3));
    }
    if rng.gen_bool(0.4) {
        c["reason"] = json!(pick(rng, &["case-17", "because", "case-"]));
    }
    match rng.gen_range(0..30) {
        0 => {
            c.as_object_mut().expect("object").remove("irreversible");
        }
        1 => c["human_approved"] = json!("yes"),
        2 => c["colour"] = json!("red"),
        _ => {}
    }
    c
}

/// What the schema admits: per action, its principal and resource types.
fn applies_to(action: &str) -> (&'static [&'static str], &'static [&'static str]) {
    const ANYONE: &[&str] = &["Acgs::User", "Acgs::Agent", "Acgs::Service"];
    match action {
        "execute" => (ANYONE, &["Acgs::Tool"]),
        "deploy" => (ANYONE, &["Acgs::PolicySet", "Acgs::Tool"]),
        "halt" => (&["Acgs::User", "Acgs::Service"], &["Acgs::Agent"]),
        "decide" => (ANYONE, &["Acgs::Person"]),
        _ => (
            ANYONE,
            &[
                "Acgs::Tool",
                "Acgs::Dataset",
                "Acgs::Document",
                "Acgs::Secret",
                "Acgs::AuditRecord",
                "Acgs::OversightControl",
                "Acgs::PolicySet",
                "Acgs::Constitution",
            ],
        ),
    }
}

/// One request of the corpus: mostly one the schema admits, sometimes any combination of types,
/// and now and then names that are not in the schema or do not parse.
fn request(rng: &mut StdRng, n: usize) -> Value {
    let action = if rng.gen_ratio(1, 40) { "fly" } else { pick(rng, ACTIONS) };
    let (principals, resources) = applies_to(action);
    let (principal_type, resource_type) = match rng.gen_range(0..20) {
        0 => ("Acgs::Robot", pick(rng, TYPES)),
        1 => ("not a type", pick(rng, TYPES)),
        2 => (pick(rng, TYPES), "Acgs::Spaceship"),
        3 | 4 => (pick(rng, TYPES), pick(rng, TYPES)),
        _ => (pick(rng, principals), pick(rng, resources)),
    };
    let principal_id =
        if principal_type == "Acgs::User" { pick(rng, &["u1", "u2"]).to_string() } else { format!("p{n}") };
    let resource_id = format!("r{n}");
    let mut entities = Vec::new();
    if rng.gen_range(0..10) != 0 {
        let parents = if rng.gen_bool(0.4) { vec![uid("Acgs::Team", pick(rng, &["ops", "research"]))] } else { vec![] };
        let parents = if matches!(principal_type, "Acgs::User" | "Acgs::Agent") { parents } else { vec![] };
        entities.push(json!({ "uid": uid(principal_type, &principal_id), "attrs": attrs(rng, principal_type, &principal_id), "parents": parents }));
    }
    if rng.gen_range(0..10) != 0 && resource_type != principal_type {
        entities.push(json!({ "uid": uid(resource_type, &resource_id), "attrs": attrs(rng, resource_type, &principal_id), "parents": [] }));
    }
    // Now and then an entity in another of Cedar's shapes: its uid as `{"__entity": …}`, no
    // `parents` (an error), `tags` the schema does not declare, a field Cedar ignores.
    if let Some(first) = entities.first_mut() {
        match rng.gen_range(0..40) {
            0 => first["uid"] = json!({ "__entity": first["uid"].clone() }),
            1 => {
                first.as_object_mut().expect("object").remove("parents");
            }
            2 => first["tags"] = json!({ "x": 1 }),
            3 => first["comment"] = json!("ignored"),
            _ => {}
        }
    }
    json!({
        "principal": uid(principal_type, &principal_id),
        "action": uid("Acgs::Action", action),
        "resource": uid(resource_type, &resource_id),
        "context": context(rng, action),
        "entities": entities,
    })
}

/// What the reference says: `None` when it refuses the request itself (it does not fit the
/// schema), else the decision, the determining policies and whether any policy errored.
fn reference(set: &PolicySet, body: &Value) -> Option<(bool, BTreeSet<String>, bool)> {
    let schema = governance_schema();
    let parse_uid = |v: &Value| EntityUid::from_json(v.clone()).ok();
    let principal = parse_uid(&body["principal"])?;
    let action = parse_uid(&body["action"])?;
    let resource = parse_uid(&body["resource"])?;
    let context = Context::from_json_value(body["context"].clone(), Some((schema, &action))).ok()?;
    let request = Request::new(principal, action, resource, context, Some(schema)).ok()?;
    let mut all = set_entities().as_array().expect("array").clone();
    all.extend(body["entities"].as_array().expect("array").iter().cloned());
    let entities = Entities::from_json_value(Value::Array(all), Some(schema)).ok()?;
    let response = Authorizer::new().is_authorized(&request, set, &entities);
    let reasons = response.diagnostics().reason().map(ToString::to_string).collect();
    Some((response.decision() == Decision::Allow, reasons, response.diagnostics().errors().next().is_some()))
}

/// What the service says, in the same terms.
fn ours(answer: &Value) -> Option<(bool, BTreeSet<String>, bool)> {
    if answer.get("error").is_some() {
        return None;
    }
    let decision = answer["decision"].as_str().expect("decision");
    let determining = answer["determining_policies"]
        .as_array()
        .expect("list")
        .iter()
        .map(|p| p.as_str().expect("id").to_string())
        .collect();
    let errors = !answer["errors"].as_array().expect("errors").is_empty();
    Some((decision == "allow", determining, errors))
}

#[tokio::test]
async fn decisions_equal_the_reference_authorizer_on_a_generated_corpus() {
    // No solver: break-glass then accepts a set with invariants bounded (never refuted).
    let app = spawn_app_with(|c| {
        c.verification.cvc5 = "none".into();
        c.verification.bounded_max_requests = 300;
    })
    .await;
    let admin = app.admin_token().await;
    let activate = json!({ "reason": "conformance corpus", "policies": RICH, "entities": set_entities() });
    let response = app
        .http
        .post(app.url(ServiceName::Consensus, "/api/v1/policy-sets/break-glass"))
        .bearer_auth(&admin)
        .json(&activate)
        .send()
        .await
        .expect("break-glass");
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap_or_default());
    let token = app.client_token(&admin, "conformance", &["agent"]).await;
    // Parsed the way the service names policies (by their `@id` annotations), so determining
    // policies compare; evaluation is Cedar's own.
    let set = acgs::kernel::policy::parse_policies(RICH).expect("parses");

    let mut rng = StdRng::seed_from_u64(0x00ac_0005);
    let corpus: Vec<Value> = (0..2_000).map(|n| request(&mut rng, n)).collect();
    let mut answers = Vec::with_capacity(corpus.len());
    for chunk in corpus[..1_900].chunks(100) {
        let response = app
            .http
            .post(app.url(ServiceName::Consensus, "/api/v1/decide/batch"))
            .bearer_auth(&token)
            .json(&json!({ "requests": chunk }))
            .send()
            .await
            .expect("batch");
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        answers.extend(body["decisions"].as_array().expect("decisions").iter().cloned());
    }
    // The last 100 one by one, twice: the second time from the decision cache, which must
    // answer exactly as evaluation did.
    let mut first_pass = Vec::new();
    for (pass, body) in corpus[1_900..].iter().chain(&corpus[1_900..]).enumerate() {
        let response = app
            .http
            .post(app.url(ServiceName::Consensus, "/api/v1/decide"))
            .bearer_auth(&token)
            .json(body)
            .send()
            .await
            .expect("decide");
        let status = response.status().as_u16();
        let answer: Value = response.json().await.expect("json");
        let answer = match status {
            200 => answer,
            422 => json!({ "error": answer["error"]["message"] }),
            other => panic!("decide answered {other}: {answer}"),
        };
        if pass < 100 {
            first_pass.push(answer);
        } else {
            assert_eq!(ours(&answer), ours(&first_pass[pass - 100]), "repeat of request {}", 1_900 + pass - 100);
        }
    }
    answers.extend(first_pass);
    assert_eq!(answers.len(), corpus.len());
    let metrics = app.get(&app.url(ServiceName::Consensus, "/metrics"), None).await.text().await.expect("text");
    let hits = metrics
        .lines()
        .find_map(|l| l.strip_prefix("acgs_decision_cache_total{result=\"hit\"} "))
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    assert!(hits >= 50, "repeats answered from the cache: {hits}");

    let (mut allows, mut denies, mut refused, mut with_errors) = (0, 0, 0, 0);
    for (n, (body, answer)) in corpus.iter().zip(&answers).enumerate() {
        let expected = reference(&set, body);
        let got = ours(answer);
        assert_eq!(got, expected, "request {n}: {body}\nservice: {answer}");
        match expected {
            None => refused += 1,
            Some((true, _, _)) => allows += 1,
            Some((false, _, errors)) => {
                denies += 1;
                with_errors += usize::from(errors);
            }
        }
        if let Some(v) = answer.get("policy_set_version") {
            assert_eq!(v, 2, "every decision is made by the activated set");
        }
    }
    // The corpus really covers each kind of answer.
    assert!(
        allows >= 60 && denies >= 500 && refused >= 200 && with_errors >= 20,
        "allows {allows}, denies {denies} (with policy errors {with_errors}), refused {refused}"
    );
}
