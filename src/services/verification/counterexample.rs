//! Counterexamples: a concrete request and its entities that break a check, re-evaluated with
//! Cedar's own authorizer before anything is reported (a solver's model that does not reproduce
//! is not a refutation), and written out in Cedar's JSON forms.

use cedar_policy::{Authorizer, Decision, Entities, Policy, PolicySet, Request};

use super::report::{Counterexample, RequestJson};

/// What a check asks about the requests of the schema.
#[derive(Debug, Clone, Copy)]
pub enum Question<'a> {
    /// The policy never errors.
    NeverErrors(&'a Policy),
    /// No request is allowed by both sets (`never` invariants: the set and the invariant).
    Disjoint(&'a PolicySet, &'a PolicySet),
    /// Every request the first set allows, the second allows too (`always` invariants: the
    /// invariant implies the set; compare: the new set implies the old one).
    Implies(&'a PolicySet, &'a PolicySet),
}

fn allows(set: &PolicySet, request: &Request, entities: &Entities) -> bool {
    Authorizer::new().is_authorized(request, set, entities).decision() == Decision::Allow
}

impl Question<'_> {
    /// Whether this concrete request breaks the property: the definition of a refutation.
    pub fn violated_by(&self, request: &Request, entities: &Entities) -> bool {
        match self {
            Question::NeverErrors(policy) => {
                let mut set = PolicySet::new();
                if set.add((*policy).clone()).is_err() {
                    return false;
                }
                Authorizer::new().is_authorized(request, &set, entities).diagnostics().errors().next().is_some()
            }
            Question::Disjoint(a, b) => allows(a, request, entities) && allows(b, request, entities),
            Question::Implies(a, b) => allows(a, request, entities) && !allows(b, request, entities),
        }
    }
}

/// A request and entities in the report's JSON form.
pub fn to_json(request: &Request, entities: &Entities) -> Result<Counterexample, String> {
    let uid = |u: Option<&cedar_policy::EntityUid>, what: &str| -> Result<serde_json::Value, String> {
        let json = u
            .ok_or_else(|| format!("the counterexample has no concrete {what}"))?
            .to_json_value()
            .map_err(|e| format!("cannot write the {what}: {e}"))?;
        // `{"__entity": {"type", "id"}}` → `{"type", "id"}`, the form of a request's uids.
        Ok(match json {
            serde_json::Value::Object(mut map) if map.contains_key("__entity") => {
                map.remove("__entity").unwrap_or(serde_json::Value::Null)
            }
            other => other,
        })
    };
    let context = match request.context() {
        Some(c) => c.to_json_value().map_err(|e| format!("cannot write the context: {e}"))?,
        None => serde_json::json!({}),
    };
    Ok(Counterexample {
        request: RequestJson {
            principal: uid(request.principal(), "principal")?,
            action: uid(request.action(), "action")?,
            resource: uid(request.resource(), "resource")?,
            context,
        },
        entities: entities.to_json_value().map_err(|e| format!("cannot write the entities: {e}"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn a_request_allowed_by_both_sets_violates_disjointness_and_round_trips_as_json() {
        let schema = crate::kernel::policy::governance_schema();
        let set = PolicySet::from_str(
            r#"permit(principal is Acgs::Agent, action == Acgs::Action::"delete", resource is Acgs::AuditRecord);"#,
        )
        .expect("set");
        let invariant =
            PolicySet::from_str(r#"permit(principal, action in [Acgs::Action::"write", Acgs::Action::"delete"], resource is Acgs::AuditRecord);"#)
                .expect("invariant");
        let entities = Entities::from_json_value(
            serde_json::json!([
                {"uid": {"type": "Acgs::Agent", "id": "a"}, "attrs": {"owner": {"__entity": {"type": "Acgs::User", "id": "o"}}, "trust_level": 1}, "parents": []},
                {"uid": {"type": "Acgs::AuditRecord", "id": "r"}, "attrs": {}, "parents": []}
            ]),
            Some(schema),
        )
        .expect("entities");
        let action = cedar_policy::EntityUid::from_str(r#"Acgs::Action::"delete""#).expect("uid");
        let context = cedar_policy::Context::from_json_value(
            serde_json::json!({"irreversible": false, "human_approved": false}),
            Some((schema, &action)),
        )
        .expect("context");
        let request = Request::new(
            cedar_policy::EntityUid::from_str(r#"Acgs::Agent::"a""#).expect("uid"),
            action,
            cedar_policy::EntityUid::from_str(r#"Acgs::AuditRecord::"r""#).expect("uid"),
            context,
            Some(schema),
        )
        .expect("request");
        assert!(Question::Disjoint(&set, &invariant).violated_by(&request, &entities));
        assert!(!Question::Implies(&set, &invariant).violated_by(&request, &entities));
        assert!(Question::Implies(&invariant, &PolicySet::new()).violated_by(&request, &entities));
        let json = to_json(&request, &entities).expect("json");
        assert_eq!(json.request.principal, serde_json::json!({"type": "Acgs::Agent", "id": "a"}));
        assert_eq!(json.request.context["irreversible"], serde_json::json!(false));
        let back = Entities::from_json_value(json.entities, Some(schema)).expect("entities parse back");
        assert_eq!(back.iter().count(), entities.iter().count());
    }
}
