//! The fallback when no solver is available: enumerate concrete requests from a small finite
//! universe and evaluate each with Cedar's real authorizer.
//!
//! A violation found this way is a real refutation (the counterexample is concrete and was
//! evaluated by Cedar itself), so it is reported `refuted`. Finding none proves nothing: the
//! result is `bounded` with the number of requests evaluated. Nothing here ever says `proved`.
//!
//! The universe, per request environment (principal type, action, resource type) of the schema:
//!
//! * entity ids: the ids of that type written in the policies, plus a fresh one;
//! * parents: none, or one of the entities of a parent type written in the policies;
//! * attribute values, by type: both booleans; the integers written in the policies, one either
//!   side of each, and 0; the strings written in the policies and `""`; for an entity-typed
//!   attribute the request's principal or resource (when the type fits), the entities of that
//!   type written in the policies, or another one; sets of none or one of those; optional
//!   attributes also absent; extension types one default value;
//! * the context record of the action, with the same value domains.
//!
//! Every combination is tried when there are few enough; otherwise the base combination, every
//! one-attribute variation of it, and then pseudo-random combinations (fixed seed, so reruns
//! agree) up to the cap. Combinations the schema refuses are skipped and not counted. Only
//! environments the question's policies can apply to (by their scope) are enumerated.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::str::FromStr;
use std::time::Instant;

use cedar_policy::{
    Context, Entities, EntityId, EntityTypeName, EntityUid, Policy, PolicySet, Request, RequestEnv, Schema,
};
use serde_json::{Value, json};

use super::counterexample::{Question, to_json};
use super::report::Counterexample;

/// How many values one attribute's domain holds at most.
const MAX_DOMAIN: usize = 12;

/// A schema type, resolved.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Bool,
    Long,
    String,
    Set(Box<Ty>),
    Record(Vec<Field>),
    Entity(String),
    Extension(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: String,
    ty: Ty,
    required: bool,
}

#[derive(Debug, Clone, Default)]
struct Shape {
    attrs: Vec<Field>,
    parents: Vec<String>,
}

/// The constants written in the policies: where enumerated values come from.
#[derive(Debug, Clone, Default)]
pub struct Literals {
    strings: BTreeSet<String>,
    longs: BTreeSet<i64>,
    uids: BTreeMap<String, BTreeSet<String>>,
}

impl Literals {
    /// Collects the constants of every policy in `sets`.
    pub fn of<'a>(sets: impl IntoIterator<Item = &'a PolicySet>) -> Literals {
        let mut literals = Literals::default();
        for set in sets {
            for policy in set.policies() {
                if let Ok(json) = policy.to_json() {
                    literals.walk(&json, false);
                }
            }
        }
        literals
    }

    fn walk(&mut self, value: &Value, literal: bool) {
        match value {
            Value::String(s) if literal => {
                self.strings.insert(s.clone());
            }
            Value::Number(n) if literal => {
                if let Some(n) = n.as_i64() {
                    self.longs.insert(n);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| self.walk(v, literal)),
            Value::Object(map) => {
                if let (Some(Value::String(t)), Some(Value::String(id))) = (map.get("type"), map.get("id")) {
                    self.uids.entry(t.clone()).or_default().insert(id.clone());
                    return;
                }
                for (key, v) in map {
                    // `{"Value": …}` holds a literal; `{"Literal": …}` is a `like` pattern's text.
                    self.walk(v, literal || key == "Value" || key == "Literal");
                }
            }
            _ => {}
        }
    }
}

/// The schema's entity shapes and action contexts, for building values.
pub struct Universe {
    shapes: HashMap<String, Shape>,
    contexts: HashMap<String, Ty>,
    literals: Literals,
    action_groups: HashSet<String>,
}

impl Universe {
    /// Reads the schema text (Cedar syntax) once more, through its JSON form, where attribute
    /// types are visible.
    pub fn new(schema_text: &str, schema: &Schema, literals: Literals) -> Result<Universe, String> {
        let (fragment, _) = cedar_policy::SchemaFragment::from_cedarschema_str(schema_text)
            .map_err(|e| format!("cannot read the schema's types: {e}"))?;
        let json = fragment.to_json_value().map_err(|e| format!("cannot read the schema's types: {e}"))?;
        let mut universe = Universe::from_json(&json)?;
        universe.literals = literals;
        universe.action_groups = schema.action_groups().map(ToString::to_string).collect();
        Ok(universe)
    }

    fn from_json(json: &Value) -> Result<Universe, String> {
        let namespaces = json.as_object().ok_or("the schema's JSON form is not an object")?;
        // Every common type and entity type by its full name.
        let mut commons: HashMap<String, Value> = HashMap::new();
        let mut entities: HashSet<String> = HashSet::new();
        for (ns, body) in namespaces {
            for (name, ty) in body.get("commonTypes").and_then(Value::as_object).into_iter().flatten() {
                commons.insert(qualify(ns, name), ty.clone());
            }
            for name in body.get("entityTypes").and_then(Value::as_object).into_iter().flatten().map(|(k, _)| k) {
                entities.insert(qualify(ns, name));
            }
        }
        let resolver = Resolver { commons: &commons, entities: &entities };
        let mut shapes = HashMap::new();
        let mut contexts = HashMap::new();
        for (ns, body) in namespaces {
            for (name, decl) in body.get("entityTypes").and_then(Value::as_object).into_iter().flatten() {
                let attrs = match decl.get("shape") {
                    Some(shape) => match resolver.ty(ns, shape, 0)? {
                        Ty::Record(fields) => fields,
                        _ => Vec::new(),
                    },
                    None => Vec::new(),
                };
                let parents = decl
                    .get("memberOfTypes")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(|p| resolver.entity(ns, p))
                    .collect();
                shapes.insert(qualify(ns, name), Shape { attrs, parents });
            }
            for (name, decl) in body.get("actions").and_then(Value::as_object).into_iter().flatten() {
                let context = match decl.get("appliesTo").and_then(|a| a.get("context")) {
                    Some(ctx) => resolver.ty(ns, ctx, 0)?,
                    None => Ty::Record(Vec::new()),
                };
                contexts.insert(action_uid(ns, name)?, context);
            }
        }
        Ok(Universe { shapes, contexts, literals: Literals::default(), action_groups: HashSet::new() })
    }
}

fn qualify(ns: &str, name: &str) -> String {
    if ns.is_empty() || name.contains("::") { name.to_string() } else { format!("{ns}::{name}") }
}

fn action_uid(ns: &str, name: &str) -> Result<String, String> {
    let ty = EntityTypeName::from_str(&qualify(ns, "Action")).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(name)).to_string())
}

struct Resolver<'a> {
    commons: &'a HashMap<String, Value>,
    entities: &'a HashSet<String>,
}

impl Resolver<'_> {
    fn entity(&self, ns: &str, name: &str) -> String {
        let full = qualify(ns, name);
        if self.entities.contains(&full) { full } else { name.to_string() }
    }

    fn named(&self, ns: &str, name: &str, depth: usize) -> Result<Ty, String> {
        for candidate in [qualify(ns, name), name.to_string()] {
            if let Some(common) = self.commons.get(&candidate) {
                return self.ty(ns, common, depth + 1);
            }
            if self.entities.contains(&candidate) {
                return Ok(Ty::Entity(candidate));
            }
        }
        Ok(match name.trim_start_matches("__cedar::") {
            "String" => Ty::String,
            "Long" => Ty::Long,
            "Bool" | "Boolean" => Ty::Bool,
            "decimal" | "ipaddr" | "datetime" | "duration" => {
                Ty::Extension(name.trim_start_matches("__cedar::").into())
            }
            other => return Err(format!("the schema names a type this service cannot resolve: {other}")),
        })
    }

    fn ty(&self, ns: &str, json: &Value, depth: usize) -> Result<Ty, String> {
        if depth > 16 {
            return Err("the schema's types nest too deeply".into());
        }
        let kind = json.get("type").and_then(Value::as_str).ok_or("a schema type without \"type\"")?;
        let name = json.get("name").and_then(Value::as_str);
        Ok(match kind {
            "String" => Ty::String,
            "Long" => Ty::Long,
            "Boolean" | "Bool" => Ty::Bool,
            "Set" => Ty::Set(Box::new(self.ty(ns, json.get("element").ok_or("a Set without element")?, depth + 1)?)),
            "Record" => {
                let mut fields = Vec::new();
                for (field, ty) in json.get("attributes").and_then(Value::as_object).into_iter().flatten() {
                    fields.push(Field {
                        name: field.clone(),
                        ty: self.ty(ns, ty, depth + 1)?,
                        required: ty.get("required").and_then(Value::as_bool).unwrap_or(true),
                    });
                }
                Ty::Record(fields)
            }
            "Entity" => Ty::Entity(self.entity(ns, name.ok_or("an Entity type without name")?)),
            "Extension" => Ty::Extension(name.ok_or("an Extension type without name")?.to_string()),
            "EntityOrCommon" => self.named(ns, name.ok_or("an EntityOrCommon type without name")?, depth)?,
            other => self.named(ns, other, depth)?,
        })
    }
}

/// Whether a policy's scope can match requests of `env` (sound: `false` only when it cannot).
pub fn scope_matches(policy: &Policy, env: &RequestEnv, action_groups: &HashSet<String>) -> bool {
    let Ok(json) = policy.to_json() else { return true };
    let entity_scope = |scope: Option<&Value>, ty: &EntityTypeName| -> bool {
        let Some(scope) = scope else { return true };
        let ty = ty.to_string();
        match scope.get("op").and_then(Value::as_str) {
            Some("==") => {
                scope.get("entity").and_then(|e| e.get("type")).and_then(Value::as_str).is_none_or(|t| t == ty)
            }
            Some("is") => scope.get("entity_type").and_then(Value::as_str).is_none_or(|t| t == ty),
            _ => true,
        }
    };
    let action = env.action();
    let action_text = action.to_string();
    let names_action = |e: &Value| -> bool {
        let (Some(t), Some(id)) = (e.get("type").and_then(Value::as_str), e.get("id").and_then(Value::as_str)) else {
            return true;
        };
        let Ok(ty) = EntityTypeName::from_str(t) else { return true };
        let uid = EntityUid::from_type_name_and_id(ty, EntityId::new(id)).to_string();
        uid == action_text || action_groups.contains(&uid)
    };
    let action_ok = match json.get("action") {
        Some(scope) => match scope.get("op").and_then(Value::as_str) {
            Some("==") => scope.get("entity").is_none_or(names_action),
            Some("in") => match (scope.get("entity"), scope.get("entities").and_then(Value::as_array)) {
                (Some(e), _) => names_action(e),
                (None, Some(list)) => list.iter().any(names_action),
                _ => true,
            },
            _ => true,
        },
        None => true,
    };
    action_ok
        && entity_scope(json.get("principal"), env.principal())
        && entity_scope(json.get("resource"), env.resource())
}

/// Whether any permit policy of `set` can match requests of `env`.
pub fn set_matches(set: &PolicySet, env: &RequestEnv, action_groups: &HashSet<String>) -> bool {
    set.policies().any(|p| p.effect() == cedar_policy::Effect::Permit && scope_matches(p, env, action_groups))
}

/// The environments a question is about: those its deciding policies can apply to.
pub fn relevant(question: &Question<'_>, env: &RequestEnv, action_groups: &HashSet<String>) -> bool {
    match question {
        Question::NeverErrors(policy) => scope_matches(policy, env, action_groups),
        // Only requests the invariant matches can break a `never` invariant …
        Question::Disjoint(_, invariant) => set_matches(invariant, env, action_groups),
        // … and only requests the first set allows can break an implication.
        Question::Implies(first, _) => set_matches(first, env, action_groups),
    }
}

/// What one enumeration found.
#[derive(Debug)]
pub struct Found {
    /// Requests evaluated (valid for the schema).
    pub enumerated: u64,
    pub counterexample: Option<Counterexample>,
    /// Whether the cap or the deadline stopped it before the universe was exhausted.
    pub cut_short: bool,
}

/// Where an entity-typed value points.
#[derive(Debug, Clone, PartialEq)]
enum Target {
    Principal,
    Resource,
    Uid(String, String),
}

/// A value before the request's uids are known.
#[derive(Debug, Clone, PartialEq)]
enum V {
    Json(Value),
    Ref(Target),
    Set(Vec<V>),
    Record(Vec<(String, V)>),
}

/// One dimension of the enumeration.
#[derive(Debug, Clone, PartialEq)]
enum Slot {
    PrincipalId,
    PrincipalParent,
    PrincipalAttr(String),
    ResourceId,
    ResourceParent,
    ResourceAttr(String),
    Context(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Opt {
    Id(String),
    Parent(Option<(String, String)>),
    /// `None`: the optional attribute is absent.
    Value(Option<V>),
}

struct EnvPlan<'a> {
    principal_type: String,
    resource_type: String,
    action: &'a EntityUid,
    dims: Vec<(Slot, Vec<Opt>)>,
}

impl Universe {
    fn domain(&self, ty: &Ty, principal_type: &str, resource_type: &str, depth: usize) -> Vec<V> {
        let mut out: Vec<V> = match ty {
            Ty::Bool => vec![V::Json(json!(false)), V::Json(json!(true))],
            Ty::Long => {
                let mut longs: BTreeSet<i64> = BTreeSet::from([0]);
                for &l in &self.literals.longs {
                    longs.extend([l, l.saturating_sub(1), l.saturating_add(1)]);
                }
                // The literals themselves first, then their neighbours.
                let mut ordered: Vec<i64> = self.literals.longs.iter().copied().collect();
                ordered.extend(longs.into_iter().filter(|l| !self.literals.longs.contains(l)));
                ordered.into_iter().map(|l| V::Json(json!(l))).collect()
            }
            Ty::String => std::iter::once(String::new())
                .chain(self.literals.strings.iter().cloned())
                .map(|s| V::Json(json!(s)))
                .collect(),
            Ty::Entity(t) => {
                let mut targets = Vec::new();
                if t == principal_type {
                    targets.push(V::Ref(Target::Principal));
                }
                if t == resource_type {
                    targets.push(V::Ref(Target::Resource));
                }
                for id in self.literals.uids.get(t).into_iter().flatten() {
                    targets.push(V::Ref(Target::Uid(t.clone(), id.clone())));
                }
                targets.push(V::Ref(Target::Uid(t.clone(), "other".into())));
                targets
            }
            Ty::Set(element) => {
                let mut sets = vec![V::Set(Vec::new())];
                if depth < 3 {
                    let inner = self.domain(element, principal_type, resource_type, depth + 1);
                    sets.extend(inner.iter().take(4).map(|v| V::Set(vec![v.clone()])));
                }
                sets
            }
            Ty::Record(fields) => {
                if depth >= 3 {
                    return Vec::new();
                }
                let domains: Vec<Vec<Option<V>>> =
                    fields.iter().map(|f| self.field_domain(f, principal_type, resource_type, depth + 1)).collect();
                let base: Vec<Option<V>> = domains.iter().map(|d| d.first().cloned().flatten()).collect();
                let record = |values: &[Option<V>]| {
                    V::Record(
                        fields.iter().zip(values).filter_map(|(f, v)| v.clone().map(|v| (f.name.clone(), v))).collect(),
                    )
                };
                let mut records = vec![record(&base)];
                for (i, domain) in domains.iter().enumerate() {
                    for option in domain.iter().skip(1) {
                        let mut values = base.clone();
                        values[i] = option.clone();
                        records.push(record(&values));
                    }
                }
                records
            }
            Ty::Extension(name) => {
                let arg = match name.as_str() {
                    "decimal" => "0.0",
                    "ipaddr" => "127.0.0.1",
                    "datetime" => "1970-01-01",
                    _ => "0ms",
                };
                vec![V::Json(json!({"__extn": {"fn": name, "arg": arg}}))]
            }
        };
        out.truncate(MAX_DOMAIN);
        out
    }

    fn field_domain(&self, field: &Field, principal_type: &str, resource_type: &str, depth: usize) -> Vec<Option<V>> {
        let values = self.domain(&field.ty, principal_type, resource_type, depth).into_iter().map(Some);
        if field.required { values.collect() } else { std::iter::once(None).chain(values).collect() }
    }

    fn plan<'a>(&self, env: &'a RequestEnv) -> Option<EnvPlan<'a>> {
        let principal_type = env.principal().to_string();
        let resource_type = env.resource().to_string();
        let context = self.contexts.get(&env.action().to_string())?;
        let mut dims = Vec::new();
        for (who, ty, default) in [("principal", &principal_type, "p"), ("resource", &resource_type, "r")] {
            let shape = self.shapes.get(ty)?;
            let mut ids: Vec<Opt> =
                self.literals.uids.get(ty).into_iter().flatten().map(|id| Opt::Id(id.clone())).collect();
            ids.push(Opt::Id(default.into()));
            let mut parents = vec![Opt::Parent(None)];
            for parent in &shape.parents {
                for id in self.literals.uids.get(parent).into_iter().flatten() {
                    parents.push(Opt::Parent(Some((parent.clone(), id.clone()))));
                }
            }
            let principal = who == "principal";
            dims.push((if principal { Slot::PrincipalId } else { Slot::ResourceId }, ids));
            dims.push((if principal { Slot::PrincipalParent } else { Slot::ResourceParent }, parents));
            for field in &shape.attrs {
                let options = self
                    .field_domain(field, &principal_type, &resource_type, 0)
                    .into_iter()
                    .map(Opt::Value)
                    .collect::<Vec<_>>();
                if options.is_empty() {
                    return None;
                }
                let slot = if principal {
                    Slot::PrincipalAttr(field.name.clone())
                } else {
                    Slot::ResourceAttr(field.name.clone())
                };
                dims.push((slot, options));
            }
        }
        let Ty::Record(fields) = context else { return None };
        for field in fields {
            let options: Vec<Opt> =
                self.field_domain(field, &principal_type, &resource_type, 0).into_iter().map(Opt::Value).collect();
            if options.is_empty() {
                return None;
            }
            dims.push((Slot::Context(field.name.clone()), options));
        }
        Some(EnvPlan { principal_type, resource_type, action: env.action(), dims })
    }

    /// A default entity of type `ty` (required attributes at their first value).
    fn default_entity(
        &self,
        ty: &str,
        id: &str,
        principal: &Value,
        resource: &Value,
        pending: &mut Vec<(String, String)>,
    ) -> Value {
        let mut attrs = serde_json::Map::new();
        if let Some(shape) = self.shapes.get(ty) {
            for field in shape.attrs.iter().filter(|f| f.required) {
                if let Some(v) = self.domain(&field.ty, "", "", 0).into_iter().next() {
                    attrs.insert(field.name.clone(), materialise(&v, principal, resource, pending));
                }
            }
        }
        json!({"uid": {"type": ty, "id": id}, "attrs": attrs, "parents": []})
    }

    /// Builds the request of one combination; `None` if the schema refuses it.
    fn build(&self, plan: &EnvPlan<'_>, choice: &[usize], schema: &Schema) -> Option<(Request, Entities)> {
        let pick = |slot: &Slot| -> Option<&Opt> {
            plan.dims.iter().zip(choice).find(|((s, _), _)| s == slot).map(|((_, options), &i)| &options[i])
        };
        let id = |slot: Slot| match pick(&slot) {
            Some(Opt::Id(id)) => id.clone(),
            _ => String::new(),
        };
        let (principal_id, resource_id) = (id(Slot::PrincipalId), id(Slot::ResourceId));
        if plan.principal_type == plan.resource_type && principal_id == resource_id {
            return None;
        }
        let principal = json!({"type": plan.principal_type, "id": principal_id});
        let resource = json!({"type": plan.resource_type, "id": resource_id});
        let mut pending: Vec<(String, String)> = Vec::new();
        let entity = |uid: &Value, principal_side: bool, pending: &mut Vec<(String, String)>| {
            let mut attrs = serde_json::Map::new();
            for ((slot, options), &i) in plan.dims.iter().zip(choice) {
                let name = match (slot, principal_side) {
                    (Slot::PrincipalAttr(n), true) | (Slot::ResourceAttr(n), false) => n,
                    _ => continue,
                };
                if let Opt::Value(Some(v)) = &options[i] {
                    attrs.insert(name.clone(), materialise(v, &principal, &resource, pending));
                }
            }
            let parent = if principal_side { Slot::PrincipalParent } else { Slot::ResourceParent };
            let parents = match pick(&parent) {
                Some(Opt::Parent(Some((t, id)))) => {
                    pending.push((t.clone(), id.clone()));
                    json!([{"type": t, "id": id}])
                }
                _ => json!([]),
            };
            json!({"uid": uid, "attrs": attrs, "parents": parents})
        };
        let mut entities = vec![entity(&principal, true, &mut pending), entity(&resource, false, &mut pending)];
        let mut context = serde_json::Map::new();
        for ((slot, options), &i) in plan.dims.iter().zip(choice) {
            if let (Slot::Context(name), Opt::Value(Some(v))) = (slot, &options[i]) {
                context.insert(name.clone(), materialise(v, &principal, &resource, &mut pending));
            }
        }
        // Entities the request points at: present, with default attributes.
        let mut made: HashSet<(String, String)> = HashSet::from([
            (plan.principal_type.clone(), principal_id.clone()),
            (plan.resource_type.clone(), resource_id.clone()),
        ]);
        while let Some((ty, id)) = pending.pop() {
            if made.insert((ty.clone(), id.clone())) {
                entities.push(self.default_entity(&ty, &id, &principal, &resource, &mut pending));
            }
        }
        let entities = Entities::from_json_value(Value::Array(entities), Some(schema)).ok()?;
        let context = Context::from_json_value(Value::Object(context), Some((schema, plan.action))).ok()?;
        let uid = |v: &Value| EntityUid::from_json(v.clone()).ok();
        let request =
            Request::new(uid(&principal)?, plan.action.clone(), uid(&resource)?, context, Some(schema)).ok()?;
        Some((request, entities))
    }

    /// Enumerates requests of the relevant environments until `question` is violated, `cap`
    /// requests were evaluated, or `deadline` passes.
    pub fn enumerate(
        &self,
        question: &Question<'_>,
        envs: &[RequestEnv],
        schema: &Schema,
        cap: u64,
        deadline: Instant,
    ) -> Found {
        let plans: Vec<EnvPlan<'_>> = envs
            .iter()
            .filter(|env| relevant(question, env, &self.action_groups))
            .filter_map(|env| self.plan(env))
            .collect();
        let mut found = Found { enumerated: 0, counterexample: None, cut_short: false };
        if plans.is_empty() {
            return found;
        }
        let per_env = (cap / plans.len() as u64).max(1);
        for (n, plan) in plans.iter().enumerate() {
            let sizes: Vec<usize> = plan.dims.iter().map(|(_, o)| o.len()).collect();
            let mut evaluated = 0u64;
            let mut tried = 0u64;
            for choice in Combinations::new(&sizes, per_env, n as u64) {
                tried += 1;
                if tried.is_multiple_of(64) && Instant::now() >= deadline {
                    found.cut_short = true;
                    return found;
                }
                let Some((request, entities)) = self.build(plan, &choice, schema) else { continue };
                evaluated += 1;
                found.enumerated += 1;
                if question.violated_by(&request, &entities) {
                    found.counterexample = to_json(&request, &entities).ok();
                    if found.counterexample.is_some() {
                        return found;
                    }
                }
                if evaluated >= per_env {
                    found.cut_short |= (tried as u128) < product(&sizes);
                    break;
                }
            }
        }
        found
    }
}

/// Puts the request's uids into a value.
fn materialise(v: &V, principal: &Value, resource: &Value, pending: &mut Vec<(String, String)>) -> Value {
    match v {
        V::Json(j) => j.clone(),
        V::Ref(Target::Principal) => json!({"__entity": principal}),
        V::Ref(Target::Resource) => json!({"__entity": resource}),
        V::Ref(Target::Uid(t, id)) => {
            pending.push((t.clone(), id.clone()));
            json!({"__entity": {"type": t, "id": id}})
        }
        V::Set(items) => Value::Array(items.iter().map(|i| materialise(i, principal, resource, pending)).collect()),
        V::Record(fields) => Value::Object(
            fields.iter().map(|(k, i)| (k.clone(), materialise(i, principal, resource, pending))).collect(),
        ),
    }
}

fn product(sizes: &[usize]) -> u128 {
    sizes.iter().fold(1u128, |acc, &s| acc.saturating_mul(s as u128))
}

/// The combinations to try: all of them when there are at most `cap`; otherwise the base, each
/// one-dimension variation of it, then pseudo-random ones (xorshift, seeded per environment).
struct Combinations<'a> {
    sizes: &'a [usize],
    exhaustive: bool,
    /// Exhaustive: the next index in mixed radix. Sampled: how many were produced.
    counter: u128,
    total: u128,
    /// Sampled: the one-dimension variations still to produce, as (dimension, option).
    variations: Vec<(usize, usize)>,
    state: u64,
    /// Sampled: at most this many.
    limit: u128,
}

impl<'a> Combinations<'a> {
    fn new(sizes: &'a [usize], cap: u64, seed: u64) -> Self {
        let total = product(sizes);
        let exhaustive = total <= u128::from(cap);
        let mut variations = Vec::new();
        if !exhaustive {
            for (d, &size) in sizes.iter().enumerate().rev() {
                for option in (1..size).rev() {
                    variations.push((d, option));
                }
            }
        }
        Combinations {
            sizes,
            exhaustive,
            counter: 0,
            total,
            variations,
            state: 0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0xA24B_AED4_963E_E407),
            // Invalid combinations are skipped by the caller; allow some slack for them.
            limit: u128::from(cap).saturating_mul(4),
        }
    }

    fn random(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }
}

impl Iterator for Combinations<'_> {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        if self.exhaustive {
            if self.counter >= self.total {
                return None;
            }
            let mut rest = self.counter;
            self.counter += 1;
            Some(
                self.sizes
                    .iter()
                    .map(|&s| {
                        let i = (rest % s as u128) as usize;
                        rest /= s as u128;
                        i
                    })
                    .collect(),
            )
        } else {
            if self.counter >= self.limit {
                return None;
            }
            self.counter += 1;
            if self.counter == 1 {
                return Some(vec![0; self.sizes.len()]);
            }
            if let Some((d, option)) = self.variations.pop() {
                let mut choice = vec![0; self.sizes.len()];
                choice[d] = option;
                return Some(choice);
            }
            let sizes = self.sizes;
            Some(sizes.iter().map(|&s| (self.random() % s as u64) as usize).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::policy::{governance_schema, governance_schema_text};

    fn universe(sets: &[&PolicySet]) -> Universe {
        Universe::new(governance_schema_text(), governance_schema(), Literals::of(sets.iter().copied()))
            .expect("universe")
    }

    fn set(text: &str) -> PolicySet {
        PolicySet::from_str(text).expect("policies")
    }

    #[test]
    fn the_governance_schema_is_read_with_its_types() {
        let u = universe(&[]);
        let agent = &u.shapes["Acgs::Agent"];
        assert_eq!(agent.parents, vec!["Acgs::Team".to_string()]);
        let owner = agent.attrs.iter().find(|f| f.name == "owner").expect("owner");
        assert_eq!(owner.ty, Ty::Entity("Acgs::User".into()));
        assert!(!agent.attrs.iter().find(|f| f.name == "purpose").expect("purpose").required);
        let Ty::Record(context) = &u.contexts[r#"Acgs::Action::"decide""#] else { panic!("record") };
        assert!(context.iter().any(|f| f.name == "uses_protected_attributes" && f.ty == Ty::Bool));
    }

    #[test]
    fn literals_come_from_every_kind_of_constant() {
        let s = set(
            r#"permit(principal in Acgs::Team::"ops", action, resource) when { principal.role == "steward" && context has reason && context.reason like "x*y" && resource.risk != "high" } unless { 41 > 7 };"#,
        );
        let l = Literals::of([&s]);
        assert!(l.strings.contains("steward") && l.strings.contains("high"), "{l:?}");
        assert!(l.longs.contains(&41) && l.longs.contains(&7), "{l:?}");
        assert!(l.uids["Acgs::Team"].contains("ops"), "{l:?}");
    }

    #[test]
    fn enumeration_finds_a_concrete_violation_that_cedar_confirms() {
        let schema = governance_schema();
        let bad = set(
            r#"permit(principal is Acgs::Agent, action == Acgs::Action::"read", resource is Acgs::Secret) when { principal.trust_level > 50 };"#,
        );
        let invariant = set(
            r#"permit(principal is Acgs::Agent, action == Acgs::Action::"read", resource is Acgs::Secret) unless { resource.owner == principal };"#,
        );
        let u = universe(&[&bad, &invariant]);
        let envs: Vec<RequestEnv> = schema.request_envs().collect();
        let q = Question::Disjoint(&bad, &invariant);
        let found = u.enumerate(&q, &envs, schema, 5000, Instant::now() + std::time::Duration::from_secs(60));
        let example = found.counterexample.expect("a violation is found");
        assert_eq!(example.request.resource["type"], "Acgs::Secret");
        // And a set that reads only its own secrets is not refuted, only bounded.
        let good = set(
            r#"permit(principal is Acgs::Agent, action == Acgs::Action::"read", resource is Acgs::Secret) when { resource.owner == principal };"#,
        );
        let u = universe(&[&good, &invariant]);
        let found = u.enumerate(
            &Question::Disjoint(&good, &invariant),
            &envs,
            schema,
            2000,
            Instant::now() + std::time::Duration::from_secs(60),
        );
        assert!(found.counterexample.is_none());
        assert!(found.enumerated > 0);
    }

    #[test]
    fn scopes_limit_the_environments() {
        let schema = governance_schema();
        let inv = set(
            r#"permit(principal, action in [Acgs::Action::"write", Acgs::Action::"delete"], resource is Acgs::AuditRecord);"#,
        );
        let envs: Vec<RequestEnv> = schema.request_envs().collect();
        let groups = HashSet::new();
        let n = envs.iter().filter(|e| set_matches(&inv, e, &groups)).count();
        assert_eq!(n, 6, "write/delete × User/Agent/Service on AuditRecord");
    }

    #[test]
    fn combinations_are_exhaustive_when_small_and_capped_when_large() {
        assert_eq!(Combinations::new(&[2, 3], 100, 0).count(), 6);
        let large: Vec<Vec<usize>> = Combinations::new(&[10, 10, 10, 10], 50, 1).collect();
        assert_eq!(large.len(), 200);
        assert_eq!(large[0], vec![0, 0, 0, 0]);
        assert!(large.iter().all(|c| c.iter().all(|&i| i < 10)));
    }
}
