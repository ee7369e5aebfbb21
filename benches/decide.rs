//! The decision hot path: `Engine::decide` (JSON request → Cedar request → sliced authorizer)
//! next to a bare `Authorizer::is_authorized` on a prebuilt request over the same policies, in
//! the same run; and decide at 10, 1,000 and 10,000 policies of which only 10 are in scope.
//!
//! `nice -n 19 cargo bench --bench decide`

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use acgs::kernel::policy;
use acgs::services::consensus::engine::{DecideRequest, Engine, EntityRef};
use cedar_policy::{Authorizer, Context, Entities, EntityUid, PolicySet, Request};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::json;

/// Ten policies about agents executing tools: the ones in scope.
fn in_scope() -> String {
    (0..10)
        .map(|i| {
            format!(
                "@id(\"exec-{i}\")\npermit(principal is Acgs::Agent, action == Acgs::Action::\"execute\", resource is Acgs::Tool)\n  when {{ principal.trust_level >= {} && resource.risk == \"low\" && !context.irreversible }};\n",
                i * 10
            )
        })
        .collect()
}

/// `n` policies about users reading documents: never in scope for an agent executing a tool.
fn out_of_scope(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "@id(\"doc-{i}\")\npermit(principal == Acgs::User::\"u{i}\", action == Acgs::Action::\"read\", resource == Acgs::Document::\"d{i}\");\n"
            )
        })
        .collect()
}

fn entities() -> serde_json::Value {
    json!([
        { "uid": { "type": "Acgs::Agent", "id": "a1" },
          "attrs": { "owner": { "__entity": { "type": "Acgs::User", "id": "u1" } }, "trust_level": 50 }, "parents": [] },
        { "uid": { "type": "Acgs::Tool", "id": "t1" }, "attrs": { "risk": "low" }, "parents": [] }
    ])
}

fn request() -> DecideRequest {
    DecideRequest {
        principal: EntityRef { type_name: "Acgs::Agent".into(), id: "a1".into() },
        action: EntityRef { type_name: "Acgs::Action".into(), id: "execute".into() },
        resource: EntityRef { type_name: "Acgs::Tool".into(), id: "t1".into() },
        context: json!({ "irreversible": false, "human_approved": false }),
        entities: Vec::new(),
    }
}

fn benches(c: &mut Criterion) {
    let schema = Arc::new(policy::governance_schema().clone());
    let text = in_scope();

    // The baseline: the reference authorizer on a prebuilt request, the same ten policies.
    let set = PolicySet::from_str(&text).expect("policies");
    let ents = Entities::from_json_value(entities(), Some(&schema)).expect("entities");
    let context =
        Context::from_json_value(json!({ "irreversible": false, "human_approved": false }), None).expect("ctx");
    let cedar_request = Request::new(
        EntityUid::from_str("Acgs::Agent::\"a1\"").expect("uid"),
        EntityUid::from_str("Acgs::Action::\"execute\"").expect("uid"),
        EntityUid::from_str("Acgs::Tool::\"t1\"").expect("uid"),
        context,
        Some(&schema),
    )
    .expect("request");
    let authorizer = Authorizer::new();
    assert_eq!(authorizer.is_authorized(&cedar_request, &set, &ents).decision(), cedar_policy::Decision::Allow);

    let mut g = c.benchmark_group("decide");
    g.bench_function("bare_authorizer_10_policies", |b| {
        b.iter(|| authorizer.is_authorized(&cedar_request, &set, &ents))
    });
    let req = request();
    for n in [0usize, 990, 9_990] {
        let all = format!("{text}{}", out_of_scope(n));
        let engine = Engine::compile(1, &all, schema.clone(), &entities()).expect("compiles");
        assert!(engine.decide(&req).expect("decides").allow);
        g.bench_with_input(BenchmarkId::new("engine_decide", n + 10), &engine, |b, engine| {
            b.iter(|| engine.decide(&req).expect("decides"))
        });
    }
    // The same request carrying its own entities (parsed and merged per request).
    let engine = Engine::compile(1, &text, schema.clone(), &json!([])).expect("compiles");
    let mut with_entities = request();
    with_entities.entities = entities().as_array().expect("array").clone();
    g.bench_function("engine_decide_10_policies_request_entities", |b| {
        b.iter(|| engine.decide(&with_entities).expect("decides"))
    });
    g.finish();
}

criterion_group! {
    name = decide;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(decide);
