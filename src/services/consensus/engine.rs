//! The decision engine: one active policy set, compiled for fast answers.
//!
//! Cedar's authorizer evaluates every policy it is given. So that unrelated policies cost nothing,
//! the engine slices the set once, at activation, by *request environment* (principal type,
//! action, resource type — the finite list the schema allows): each slice holds only the
//! policies whose scope can match that environment. A decision looks its slice up by the
//! request's types and evaluates only those. Inclusion is conservative (a scope the engine cannot
//! rule out, such as `principal in Team::"x"`, is included), so a slice answers exactly what the
//! whole set would.
//!
//! Every failure — an entity reference that does not parse, a type or action the schema does not
//! know, a context that does not match the action's context type, entities that do not conform —
//! is a [`DecideError`]: the caller gets no `allow`.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision, Entities, EntityId, EntityTypeName, EntityUid, PolicySet,
    PrincipalConstraint, Request, RequestEnv, ResourceConstraint, Schema,
};
use serde::{Deserialize, Serialize};

use super::cache::DecisionCache;
use super::cedar_json;
use crate::kernel::error::chain;
use crate::kernel::policy::{self, PolicyError};

/// A Cedar entity reference as JSON: `{"type": "Acgs::Agent", "id": "a1"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityRef {
    #[serde(rename = "type")]
    pub type_name: String,
    pub id: String,
}

impl EntityRef {
    fn uid(&self, what: &str) -> Result<EntityUid, DecideError> {
        let type_name = EntityTypeName::from_str(&self.type_name)
            .map_err(|e| DecideError::Request(format!("{what}: {:?} is not an entity type: {e}", self.type_name)))?;
        Ok(EntityUid::from_type_name_and_id(type_name, EntityId::new(&self.id)))
    }
}

/// One question: may `principal` do `action` to `resource`?
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideRequest {
    pub principal: EntityRef,
    pub action: EntityRef,
    pub resource: EntityRef,
    /// The context record; must match the action's context type in the schema.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub context: serde_json::Value,
    /// Entities (Cedar entity JSON) for this request, added to the policy set's own.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub entities: Vec<serde_json::Value>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// Why no decision could be made. Every one of them means: not allowed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecideError {
    /// The request does not fit the schema (or cannot be read).
    #[error("{0}")]
    Request(String),
    /// The request's entities do not conform to the schema.
    #[error("entities: {0}")]
    Entities(String),
}

/// The answer of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub allow: bool,
    /// The policies that determined it (the satisfied permits for an allow, the satisfied
    /// forbids for an explicit deny; none for a default deny).
    pub determining: Vec<String>,
    /// Policies that could not be evaluated (they count as not satisfied).
    pub errors: Vec<String>,
}

/// The policies that can apply to one request environment, with the environment's parsed types
/// (so the hot path never runs Cedar's parser on a type name).
struct Slice {
    principal_type: EntityTypeName,
    action: EntityUid,
    action_type: String,
    resource_type: EntityTypeName,
    policies: PolicySet,
}

/// A compiled, sliced policy set.
pub struct Engine {
    version: i64,
    schema: Arc<Schema>,
    /// The set's own entities, with the schema's action entities.
    entities: Entities,
    /// Whether the set has entities of its own (beyond the schema's actions).
    own_entities: bool,
    /// By `(principal type, action id, resource type)` as the request spells them.
    slices: HashMap<(String, String, String), Slice>,
    policies: usize,
    authorizer: Authorizer,
    /// Answers to repeated requests ([`DecisionCache`]); off until [`Engine::with_cache`].
    cache: DecisionCache,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("version", &self.version)
            .field("policies", &self.policies)
            .field("slices", &self.slices.len())
            .finish_non_exhaustive()
    }
}

/// Whether a principal or resource scope can match entities of type `ty`.
fn scope_may_match(ty: &EntityTypeName, eq: Option<&EntityUid>, is: Option<&EntityTypeName>) -> bool {
    eq.is_none_or(|uid| uid.type_name() == ty) && is.is_none_or(|t| t == ty)
}

fn principal_may_match(c: &PrincipalConstraint, ty: &EntityTypeName) -> bool {
    match c {
        PrincipalConstraint::Any | PrincipalConstraint::In(_) => true,
        PrincipalConstraint::Eq(uid) => scope_may_match(ty, Some(uid), None),
        PrincipalConstraint::Is(t) | PrincipalConstraint::IsIn(t, _) => scope_may_match(ty, None, Some(t)),
    }
}

fn resource_may_match(c: &ResourceConstraint, ty: &EntityTypeName) -> bool {
    match c {
        ResourceConstraint::Any | ResourceConstraint::In(_) => true,
        ResourceConstraint::Eq(uid) => scope_may_match(ty, Some(uid), None),
        ResourceConstraint::Is(t) | ResourceConstraint::IsIn(t, _) => scope_may_match(ty, None, Some(t)),
    }
}

/// `concrete`: the actions requests can name. A listed uid that is not one of them may be an
/// action group, so it keeps the policy in every slice.
fn action_may_match(c: &ActionConstraint, action: &EntityUid, concrete: &[EntityUid]) -> bool {
    match c {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(uid) => uid == action,
        ActionConstraint::In(uids) => uids.iter().any(|uid| uid == action || !concrete.contains(uid)),
    }
}

impl Engine {
    /// Compiles policy text, its schema and its entities (Cedar entity JSON, an array). The
    /// policies must pass strict validation against the schema.
    pub fn compile(
        version: i64,
        text: &str,
        schema: Arc<Schema>,
        entities: &serde_json::Value,
    ) -> Result<Engine, PolicyError> {
        let set = policy::parse_policies(text)?;
        policy::validate(&set, text, &schema)?;
        let own = entities.as_array().is_none_or(|list| !list.is_empty());
        let entities = Entities::from_json_value(entities.clone(), Some(&schema)).map_err(|e| {
            PolicyError::Invalid(vec![policy::Problem {
                message: format!("entities: {}", chain(&e)),
                line: None,
                column: None,
                policy: None,
            }])
        })?;
        let envs: Vec<RequestEnv> = schema.request_envs().collect();
        let concrete: Vec<EntityUid> = envs.iter().map(|e| e.action().clone()).collect();
        let mut slices: HashMap<(String, String, String), Slice> = HashMap::with_capacity(envs.len());
        for env in envs {
            let key =
                (env.principal().to_string(), env.action().id().unescaped().to_string(), env.resource().to_string());
            let slice = slices.entry(key).or_insert_with(|| Slice {
                principal_type: env.principal().clone(),
                action: env.action().clone(),
                action_type: env.action().type_name().to_string(),
                resource_type: env.resource().clone(),
                policies: PolicySet::new(),
            });
            for p in set.policies() {
                let fits = principal_may_match(&p.principal_constraint(), env.principal())
                    && action_may_match(&p.action_constraint(), env.action(), &concrete)
                    && resource_may_match(&p.resource_constraint(), env.resource());
                if fits {
                    slice.policies.add(p.clone()).map_err(|e| {
                        PolicyError::Invalid(vec![policy::Problem {
                            message: e.to_string(),
                            line: None,
                            column: None,
                            policy: Some(p.id().to_string()),
                        }])
                    })?;
                }
            }
        }
        Ok(Engine {
            version,
            schema,
            entities,
            own_entities: own,
            slices,
            policies: set.policies().count(),
            authorizer: Authorizer::new(),
            cache: DecisionCache::new(0),
        })
    }

    pub fn version(&self) -> i64 {
        self.version
    }

    /// The same engine serving as `version` (activation learns the number in its transaction).
    pub fn with_version(mut self, version: i64) -> Engine {
        self.version = version;
        self
    }

    /// The same engine remembering up to `entries` answers to repeated request bodies.
    pub fn with_cache(mut self, entries: usize) -> Engine {
        self.cache = DecisionCache::new(entries);
        self
    }

    /// This engine's cache of answers by request body.
    pub fn cache(&self) -> &DecisionCache {
        &self.cache
    }

    /// How many policies the set has.
    pub fn policy_count(&self) -> usize {
        self.policies
    }

    /// The schema requests are checked against.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Decides one request.
    pub fn decide(&self, request: &DecideRequest) -> Result<Outcome, DecideError> {
        let slice = self.slice(request)?;
        let principal =
            EntityUid::from_type_name_and_id(slice.principal_type.clone(), EntityId::new(&request.principal.id));
        let resource =
            EntityUid::from_type_name_and_id(slice.resource_type.clone(), EntityId::new(&request.resource.id));
        let context = match cedar_json::context(&request.context, &self.schema, &slice.action) {
            Some(context) => context,
            None => self.cedar_context(request, &slice.action)?,
        };
        // The slice exists, so the schema admits these types for this action, and the context
        // was just checked: the request needs no second validation.
        let cedar_request = Request::new(principal, slice.action.clone(), resource, context, None)
            .map_err(|e| DecideError::Request(e.to_string()))?;
        let slice = &slice.policies;
        let response = if request.entities.is_empty() {
            self.authorizer.is_authorized(&cedar_request, slice, &self.entities)
        } else {
            let base = self.own_entities.then_some(&self.entities);
            let all = match cedar_json::entities(&request.entities, &self.schema, base) {
                Some(all) => all,
                None => self.cedar_entities(request)?,
            };
            self.authorizer.is_authorized(&cedar_request, slice, &all)
        };
        let diagnostics = response.diagnostics();
        Ok(Outcome {
            allow: response.decision() == Decision::Allow,
            determining: diagnostics.reason().map(ToString::to_string).collect(),
            errors: diagnostics.errors().map(ToString::to_string).collect(),
        })
    }

    /// The context read by Cedar's own JSON reader: for what [`cedar_json`] leaves to it, and
    /// for every error message.
    fn cedar_context(&self, request: &DecideRequest, action: &EntityUid) -> Result<Context, DecideError> {
        let context = Context::from_json_value(request.context.clone(), Some((&self.schema, action)))
            .map_err(|e| DecideError::Request(format!("context: {}", chain(&e))))?;
        // Schema-directed reading does not catch every mismatch (a string where a Bool is
        // declared passes it), so the context is validated against the action's context type.
        context.validate(&self.schema, action).map_err(|e| DecideError::Request(format!("context: {}", chain(&e))))?;
        Ok(context)
    }

    /// The request's entities read by Cedar's own JSON reader and added to the set's.
    fn cedar_entities(&self, request: &DecideRequest) -> Result<Entities, DecideError> {
        let extra = Entities::from_json_value(serde_json::Value::Array(request.entities.clone()), Some(&self.schema))
            .map_err(|e| DecideError::Entities(chain(&e)))?;
        self.entities
            .clone()
            .add_entities(extra.iter().cloned(), Some(&self.schema))
            .map_err(|e| DecideError::Entities(chain(&e)))
    }

    /// The slice of a request's environment; an environment the schema does not have is an error.
    fn slice(&self, request: &DecideRequest) -> Result<&Slice, DecideError> {
        let key = (request.principal.type_name.clone(), request.action.id.clone(), request.resource.type_name.clone());
        if let Some(slice) = self.slices.get(&key)
            && slice.action_type == request.action.type_name
        {
            return Ok(slice);
        }
        // Not spelled as the schema spells it: parse the names (a name that is not a type at all
        // is an error), and look again by their canonical spelling.
        let principal = request.principal.uid("principal")?;
        let action = request.action.uid("action")?;
        let resource = request.resource.uid("resource")?;
        let key = (principal.type_name().to_string(), request.action.id.clone(), resource.type_name().to_string());
        if let Some(slice) = self.slices.get(&key)
            && slice.action.type_name() == action.type_name()
        {
            return Ok(slice);
        }
        Err(DecideError::Request(format!(
            "the schema has no action {action} for principal type {} and resource type {}",
            principal.type_name(),
            resource.type_name()
        )))
    }

    /// How many policies the slice of a request environment holds (for tests and benches).
    pub fn slice_len(&self, principal: &str, action: &EntityRef, resource: &str) -> Option<usize> {
        let key = (principal.to_string(), action.id.clone(), resource.to_string());
        self.slices.get(&key).map(|s| s.policies.policies().count())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Arc<Schema> {
        Arc::new(policy::governance_schema().clone())
    }

    fn r(t: &str, id: &str) -> EntityRef {
        EntityRef { type_name: t.into(), id: id.into() }
    }

    fn request(action: &str, resource: (&str, &str)) -> DecideRequest {
        DecideRequest {
            principal: r("Acgs::Agent", "a1"),
            action: r("Acgs::Action", action),
            resource: r(resource.0, resource.1),
            context: json!({ "irreversible": false, "human_approved": false }),
            entities: vec![json!({
                "uid": { "type": "Acgs::Agent", "id": "a1" },
                "attrs": { "owner": { "__entity": { "type": "Acgs::User", "id": "u1" } }, "trust_level": 50 },
                "parents": []
            })],
        }
    }

    const SET: &str = r#"
        @id("agents-read-tools")
        permit(principal is Acgs::Agent, action == Acgs::Action::"read", resource is Acgs::Tool);
        @id("trusted-agents-execute")
        permit(principal is Acgs::Agent, action == Acgs::Action::"execute", resource is Acgs::Tool)
          when { principal.trust_level >= 40 && resource.risk != "high" };
        @id("no-high-risk")
        forbid(principal, action == Acgs::Action::"execute", resource is Acgs::Tool) when { resource.risk == "high" };
    "#;

    fn tool(id: &str, risk: &str) -> serde_json::Value {
        json!({ "uid": { "type": "Acgs::Tool", "id": id }, "attrs": { "risk": risk }, "parents": [] })
    }

    #[test]
    fn decides_like_the_whole_set_and_names_the_determining_policies() {
        let entities = json!([tool("t1", "low"), tool("t2", "high")]);
        let engine = Engine::compile(3, SET, schema(), &entities).expect("compiles");
        let read = engine.decide(&request("read", ("Acgs::Tool", "t1"))).expect("decides");
        assert!(read.allow);
        assert_eq!(read.determining, vec!["agents-read-tools"]);
        let run = engine.decide(&request("execute", ("Acgs::Tool", "t1"))).expect("decides");
        assert!(run.allow);
        let risky = engine.decide(&request("execute", ("Acgs::Tool", "t2"))).expect("decides");
        assert!(!risky.allow);
        assert_eq!(risky.determining, vec!["no-high-risk"]);
        let delete = engine.decide(&request("delete", ("Acgs::Tool", "t1"))).expect("decides");
        assert_eq!((delete.allow, delete.determining.len()), (false, 0), "default deny");
        // The execute slice holds the two execute policies only.
        assert_eq!(engine.slice_len("Acgs::Agent", &r("Acgs::Action", "execute"), "Acgs::Tool"), Some(2));
        assert_eq!(engine.slice_len("Acgs::Agent", &r("Acgs::Action", "read"), "Acgs::Tool"), Some(1));
    }

    #[test]
    fn anything_that_does_not_fit_the_schema_is_an_error_not_an_allow() {
        let engine =
            Engine::compile(1, "permit(principal, action, resource);", schema(), &json!([])).expect("compiles");
        let mut bad = request("read", ("Acgs::Tool", "t1"));
        bad.principal.type_name = "Nope::Thing".into();
        assert!(matches!(engine.decide(&bad), Err(DecideError::Request(_))));
        let mut bad = request("read", ("Acgs::Tool", "t1"));
        bad.context = json!({ "irreversible": "no" });
        assert!(matches!(engine.decide(&bad), Err(DecideError::Request(m)) if m.starts_with("context")));
        let mut bad = request("halt", ("Acgs::Agent", "a2"));
        bad.principal = r("Acgs::Agent", "a1");
        assert!(engine.decide(&bad).is_err(), "agents cannot halt: not in the schema");
        let mut bad = request("read", ("Acgs::Tool", "t1"));
        bad.entities = vec![json!({ "uid": { "type": "Acgs::Agent", "id": "a1" }, "attrs": {}, "parents": [] })];
        assert!(matches!(engine.decide(&bad), Err(DecideError::Entities(_))));
        let mut bad = request("read", ("Acgs::Tool", "t1"));
        bad.principal.type_name = "not a type".into();
        assert!(engine.decide(&bad).is_err());
    }

    #[test]
    fn invalid_sets_are_refused_at_compile_time() {
        assert!(matches!(
            Engine::compile(1, "permit(principal, action", schema(), &json!([])),
            Err(PolicyError::Syntax(_))
        ));
        let unknown = r#"permit(principal is Acgs::Robot, action, resource);"#;
        assert!(matches!(Engine::compile(1, unknown, schema(), &json!([])), Err(PolicyError::UnknownNames(_))));
        let bad_entities = json!([{ "uid": { "type": "Acgs::Tool", "id": "t" }, "attrs": {}, "parents": [] }]);
        assert!(Engine::compile(1, SET, schema(), &bad_entities).is_err());
    }
}
