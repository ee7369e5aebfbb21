//! Cedar on the tests' side: the solver the tests prove with, and an independent check, with
//! Cedar's own authorizer, that a counterexample really breaks what it is said to break.

use std::str::FromStr;

use acgs::kernel::constitution::Constitution;
use acgs::kernel::policy::{governance_schema, parse_policies};
use cedar_policy::{Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request};
use serde_json::Value;

/// The cvc5 command the tests prove with. Never skipped: without it the suite fails, saying how
/// to get one.
pub fn cvc5() -> String {
    match std::env::var("ACGS_CVC5") {
        Ok(path) if !path.trim().is_empty() => path,
        _ => panic!(
            "the verification tests need the cvc5 solver: run scripts/test.sh, which installs it and sets \
             ACGS_CVC5 (or set ACGS_CVC5 to a cvc5 1.3+ command yourself)"
        ),
    }
}

pub fn allows(set: &PolicySet, request: &Request, entities: &Entities) -> bool {
    Authorizer::new().is_authorized(request, set, entities).decision() == Decision::Allow
}

/// The counterexample of a result as Cedar values, checked against the governance schema.
pub fn concrete(result: &Value) -> (Request, Entities) {
    let example = &result["counterexample"];
    assert!(example.is_object(), "no counterexample in {result}");
    let schema = governance_schema();
    let uid = |v: &Value| EntityUid::from_json(v.clone()).expect("entity uid");
    let action = uid(&example["request"]["action"]);
    let context = Context::from_json_value(example["request"]["context"].clone(), Some((schema, &action)))
        .expect("context matches the schema");
    let request = Request::new(
        uid(&example["request"]["principal"]),
        action,
        uid(&example["request"]["resource"]),
        context,
        Some(schema),
    )
    .expect("request matches the schema");
    let entities =
        Entities::from_json_value(example["entities"].clone(), Some(schema)).expect("entities match the schema");
    (request, entities)
}

/// The invariant's policy, from the genesis constitution.
pub fn invariant(id: &str) -> PolicySet {
    let genesis = Constitution::genesis().expect("genesis");
    let text = genesis
        .principles
        .iter()
        .flat_map(|p| &p.invariants)
        .find(|i| i.id == id)
        .unwrap_or_else(|| panic!("no invariant {id}"))
        .policy
        .clone();
    PolicySet::from_str(&text).expect("invariant parses")
}

/// Every refuted invariant or comparison in `report` really breaks it, by Cedar's authorizer.
pub fn assert_counterexamples_are_real(report: &Value, set: &str, compare_to: Option<&str>) {
    let set = parse_policies(set).expect("set parses");
    let mut checked = 0;
    for result in report["results"].as_array().expect("results") {
        if result["status"] != "refuted" || result["check"] == "validation" {
            continue;
        }
        let (request, entities) = concrete(result);
        match result["check"].as_str() {
            Some("invariant") => {
                let inv = invariant(result["invariant"].as_str().expect("id"));
                match result["kind"].as_str() {
                    Some("never") => {
                        assert!(allows(&set, &request, &entities), "the set must allow {result}");
                        assert!(allows(&inv, &request, &entities), "the invariant must match {result}");
                    }
                    Some("always") => {
                        assert!(allows(&inv, &request, &entities), "the invariant must match {result}");
                        assert!(!allows(&set, &request, &entities), "the set must deny {result}");
                    }
                    other => panic!("kind {other:?}"),
                }
            }
            Some("compare") => {
                let old = parse_policies(compare_to.expect("compare_to")).expect("old parses");
                let (more, less) = (allows(&set, &request, &entities), allows(&old, &request, &entities));
                match result["direction"].as_str() {
                    Some("allows_more") => assert!(more && !less, "new allows, old did not: {result}"),
                    Some("allows_less") => assert!(less && !more, "old allowed, new does not: {result}"),
                    other => panic!("direction {other:?}"),
                }
            }
            Some("never_errors") => {
                let id = result["policy"].as_str().expect("policy");
                let policy = set.policy(&cedar_policy::PolicyId::new(id)).expect("policy").clone();
                let mut one = PolicySet::new();
                one.add(policy).expect("add");
                let response = Authorizer::new().is_authorized(&request, &one, &entities);
                assert!(response.diagnostics().errors().next().is_some(), "the policy must error: {result}");
            }
            other => panic!("check {other:?}"),
        }
        checked += 1;
    }
    assert!(checked > 0 || report["summary"]["refuted"] == 0, "{report}");
}
