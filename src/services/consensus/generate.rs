//! Policy generation: a principle's structured intent (effect, principal, actions, resource,
//! conditions) written out as a Cedar policy that names its principle.
//!
//! The output is plain Cedar text, annotated `@id("…")` and `@principle("…")`, meant to be read by
//! the steward and put into a proposal; nothing here activates anything. Every part of the intent
//! is checked before it becomes text (names are Cedar identifiers and paths, values are JSON
//! scalars, entity references or sets of them), so the text is always well formed; whether it
//! fits the schema is then checked by strict validation like any other policy.

use serde::Deserialize;
use utoipa::ToSchema;

use super::engine::EntityRef;

/// What a policy should say.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// The principle of the active constitution this policy serves.
    pub principle: String,
    /// The policy's id; default: derived from the principle, the effect and the actions.
    #[serde(default)]
    pub id: Option<String>,
    pub effect: Effect,
    #[serde(default)]
    pub principal: Scope,
    /// Action ids of the schema's action type (`read`, `execute`); empty: every action.
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub resource: Scope,
    /// All must hold (they are joined with `&&`).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The namespace of the actions; default `Acgs`.
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Permit,
    Forbid,
}

/// A principal or resource scope: any, of a type, one entity, or in a group (optionally of a type).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// `principal is Acgs::Agent`.
    #[serde(default, rename = "type")]
    pub type_name: Option<String>,
    /// `principal == Acgs::Agent::"a1"` (with `type`).
    #[serde(default)]
    pub id: Option<String>,
    /// `principal in Acgs::Team::"ops"` (with or without `type`).
    #[serde(default, rename = "in")]
    pub within: Option<EntityRef>,
}

/// `lhs op value`, e.g. `{"attribute": "resource.risk", "op": "==", "value": "low"}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    /// A path from `principal`, `resource` or `context`: `context.irreversible`, `principal.owner`.
    pub attribute: String,
    /// `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `contains`, `has` (no value), `like` (a string pattern).
    pub op: String,
    /// A string, integer, boolean, entity reference (`{"type", "id"}`) or an array of these.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub value: Option<serde_json::Value>,
}

/// Why an intent cannot be written out (the caller's mistake).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct IntentError(pub String);

fn fail<T>(message: impl Into<String>) -> Result<T, IntentError> {
    Err(IntentError(message.into()))
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `Acgs::Agent`: identifiers joined by `::`.
fn type_name(s: &str, what: &str) -> Result<String, IntentError> {
    if s.split("::").all(is_ident) {
        Ok(s.to_string())
    } else {
        fail(format!("{what}: {s:?} is not an entity type name (like Acgs::Agent)"))
    }
}

/// A Cedar string literal.
fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn entity(r: &EntityRef, what: &str) -> Result<String, IntentError> {
    Ok(format!("{}::{}", type_name(&r.type_name, what)?, string(&r.id)))
}

fn scope(var: &str, s: &Scope) -> Result<String, IntentError> {
    let what = var;
    Ok(match (&s.type_name, &s.id, &s.within) {
        (None, None, None) => var.to_string(),
        (Some(t), None, None) => format!("{var} is {}", type_name(t, what)?),
        (Some(t), Some(id), None) => {
            format!("{var} == {}", entity(&EntityRef { type_name: t.clone(), id: id.clone() }, what)?)
        }
        (None, None, Some(group)) => format!("{var} in {}", entity(group, what)?),
        (Some(t), None, Some(group)) => format!("{var} is {} in {}", type_name(t, what)?, entity(group, what)?),
        (None, Some(_), _) => return fail(format!("{var}: \"id\" needs \"type\"")),
        (Some(_), Some(_), Some(_)) => return fail(format!("{var}: give \"id\" or \"in\", not both")),
    })
}

fn value(v: &serde_json::Value, what: &str, depth: usize) -> Result<String, IntentError> {
    use serde_json::Value as V;
    match v {
        V::String(s) => Ok(string(s)),
        V::Bool(b) => Ok(b.to_string()),
        V::Number(n) => match n.as_i64() {
            Some(i) => Ok(i.to_string()),
            None => fail(format!("{what}: {n} is not a whole number (Cedar's Long)")),
        },
        V::Array(items) if depth == 0 => {
            let parts: Result<Vec<String>, IntentError> = items.iter().map(|i| value(i, what, depth + 1)).collect();
            Ok(format!("[{}]", parts?.join(", ")))
        }
        V::Object(_) => match serde_json::from_value::<EntityRef>(v.clone()) {
            Ok(r) => entity(&r, what),
            Err(_) => fail(format!("{what}: an object value must be an entity reference {{\"type\", \"id\"}}")),
        },
        V::Array(_) => fail(format!("{what}: sets of sets are not supported")),
        V::Null => fail(format!("{what}: null is not a Cedar value")),
    }
}

fn condition(c: &Condition, n: usize) -> Result<String, IntentError> {
    let what = format!("condition {n}");
    let mut parts = c.attribute.split('.');
    let root = parts.next().unwrap_or_default();
    let path: Vec<&str> = parts.collect();
    if !matches!(root, "principal" | "resource" | "context") || path.is_empty() || !path.iter().all(|p| is_ident(p)) {
        return fail(format!(
            "{what}: attribute {:?} must be a path like principal.trust_level, resource.risk or context.irreversible",
            c.attribute
        ));
    }
    let needs_value = |v: &Option<serde_json::Value>| match v {
        Some(v) => value(v, &what, 0),
        None => fail(format!("{what}: {:?} needs a \"value\"", c.op)),
    };
    Ok(match c.op.as_str() {
        "has" => {
            if c.value.is_some() {
                return fail(format!("{what}: \"has\" takes no value"));
            }
            let (last, parent) = path.split_last().map(|(l, p)| (*l, p.to_vec())).unwrap_or_default();
            let owner = std::iter::once(root).chain(parent).collect::<Vec<_>>().join(".");
            format!("{owner} has {last}")
        }
        op @ ("==" | "!=" | "<" | "<=" | ">" | ">=" | "in") => {
            format!("{} {op} {}", c.attribute, needs_value(&c.value)?)
        }
        "contains" => format!("{}.contains({})", c.attribute, needs_value(&c.value)?),
        "like" => match &c.value {
            Some(serde_json::Value::String(pattern)) => {
                // Cedar patterns: `*` is the wildcard, `\*` a literal star; quotes and backslashes
                // other than that are escaped like a string.
                let escaped = string(pattern).replace("\\\\*", "\\*");
                format!("{} like {escaped}", c.attribute)
            }
            _ => return fail(format!("{what}: \"like\" needs a string pattern")),
        },
        other => {
            return fail(format!("{what}: unknown op {other:?}; use ==, !=, <, <=, >, >=, in, contains, has or like"));
        }
    })
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// The policy id `intent` gets when it names none.
fn default_id(intent: &Intent) -> String {
    let effect = match intent.effect {
        Effect::Permit => "permit",
        Effect::Forbid => "forbid",
    };
    let actions = if intent.actions.is_empty() { "all".to_string() } else { intent.actions.join("-") };
    slug(&format!("{}-{effect}-{actions}", intent.principle))
}

/// A generated policy: its id and its Cedar text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    pub id: String,
    pub text: String,
}

/// Writes `intent` out as one Cedar policy.
pub fn generate(intent: &Intent) -> Result<Generated, IntentError> {
    if intent.principle.trim().is_empty() {
        return fail("\"principle\" names the principle this policy serves");
    }
    let id = match &intent.id {
        Some(id) if id.trim().is_empty() || id.len() > 200 => return fail("\"id\" must be 1-200 characters"),
        Some(id) => id.clone(),
        None => default_id(intent),
    };
    if intent.actions.len() > 100 || intent.conditions.len() > 100 {
        return fail("at most 100 actions and 100 conditions");
    }
    let namespace = type_name(intent.namespace.as_deref().unwrap_or("Acgs"), "namespace")?;
    let action = match intent.actions.as_slice() {
        [] => "action".to_string(),
        [one] => format!("action == {namespace}::Action::{}", string(one)),
        many => {
            let list: Vec<String> = many.iter().map(|a| format!("{namespace}::Action::{}", string(a))).collect();
            format!("action in [{}]", list.join(", "))
        }
    };
    let effect = match intent.effect {
        Effect::Permit => "permit",
        Effect::Forbid => "forbid",
    };
    let mut text = format!(
        "@id({})\n@principle({})\n{effect}({}, {action}, {})",
        string(&id),
        string(&intent.principle),
        scope("principal", &intent.principal)?,
        scope("resource", &intent.resource)?,
    );
    let conditions: Result<Vec<String>, IntentError> =
        intent.conditions.iter().enumerate().map(|(i, c)| condition(c, i + 1)).collect();
    let conditions = conditions?;
    if !conditions.is_empty() {
        text.push_str(&format!("\n  when {{ {} }}", conditions.join(" && ")));
    }
    text.push_str(";\n");
    Ok(Generated { id, text })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::policy;
    use serde_json::json;

    fn intent(v: serde_json::Value) -> Intent {
        serde_json::from_value(v).expect("intent parses")
    }

    #[test]
    fn an_intent_becomes_a_valid_policy_that_names_its_principle() {
        let g = generate(&intent(json!({
            "principle": "least-privilege",
            "effect": "permit",
            "principal": { "type": "Acgs::Agent" },
            "actions": ["read", "execute"],
            "resource": { "type": "Acgs::Tool" },
            "conditions": [
                { "attribute": "resource.risk", "op": "==", "value": "low" },
                { "attribute": "principal.trust_level", "op": ">=", "value": 50 },
                { "attribute": "context.irreversible", "op": "==", "value": false },
                { "attribute": "context.reason", "op": "has" }
            ]
        })))
        .expect("generates");
        assert_eq!(g.id, "least-privilege-permit-read-execute");
        assert!(g.text.contains("@principle(\"least-privilege\")"), "{}", g.text);
        assert!(g.text.contains("context has reason"), "{}", g.text);
        let set = policy::parse_policies(&g.text).expect("parses");
        policy::validate(&set, &g.text, policy::governance_schema()).expect("strictly valid");
        let p = set.policies().next().expect("one policy");
        assert_eq!(p.annotation("principle"), Some("least-privilege"));
    }

    #[test]
    fn scopes_values_and_escapes() {
        let g = generate(&intent(json!({
            "principle": "p", "id": "x", "effect": "forbid",
            "principal": { "type": "Acgs::Agent", "id": "a\"1" },
            "resource": { "in": { "type": "Acgs::Team", "id": "ops" } },
            "conditions": [
                { "attribute": "principal.owner", "op": "==", "value": { "type": "Acgs::User", "id": "ada" } },
                { "attribute": "context.reason", "op": "like", "value": "urgent*" }
            ]
        })))
        .expect("generates");
        assert!(g.text.contains(r#"forbid(principal == Acgs::Agent::"a\"1", action, resource in Acgs::Team::"ops")"#));
        assert!(g.text.contains(r#"principal.owner == Acgs::User::"ada""#), "{}", g.text);
        assert!(g.text.contains(r#"context.reason like "urgent*""#), "{}", g.text);
        policy::parse_policies(&g.text).expect("parses");
    }

    #[test]
    fn bad_intents_are_refused_with_what_is_wrong() {
        let bad = |v: serde_json::Value| generate(&intent(v)).unwrap_err().0;
        let base = |extra: serde_json::Value| {
            let mut v = json!({ "principle": "p", "effect": "permit" });
            v.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
            v
        };
        assert!(bad(base(json!({ "principal": { "type": "not a type" } }))).contains("not an entity type"));
        assert!(bad(base(json!({ "principal": { "id": "x" } }))).contains("needs \"type\""));
        let cond = |c: serde_json::Value| base(json!({ "conditions": [c] }));
        assert!(bad(cond(json!({ "attribute": "resource", "op": "==", "value": 1 }))).contains("path"));
        assert!(bad(cond(json!({ "attribute": "x.y", "op": "==", "value": 1 }))).contains("path"));
        assert!(bad(cond(json!({ "attribute": "context.a", "op": "~", "value": 1 }))).contains("unknown op"));
        assert!(bad(cond(json!({ "attribute": "context.a", "op": "==" }))).contains("needs a \"value\""));
        assert!(bad(cond(json!({ "attribute": "context.a", "op": "==", "value": 1.5 }))).contains("whole number"));
        assert!(
            bad(cond(json!({ "attribute": "context.a", "op": "==", "value": null }))).contains("needs a \"value\"")
        );
        assert!(bad(cond(json!({ "attribute": "context.a", "op": "in", "value": [null] }))).contains("null"));
        assert!(bad(json!({ "principle": " ", "effect": "permit" })).contains("principle"));
        assert!(serde_json::from_value::<Intent>(json!({ "principle": "p", "effect": "allow" })).is_err());
    }
}
