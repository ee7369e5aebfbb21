//! Cedar's JSON forms of a request's entities and context, read straight into Cedar values for
//! the decision hot path.
//!
//! Cedar's own JSON readers (`Entities::from_json_value`, `Context::from_json_value`) are
//! general: they buffer, try every form a value may take, and build errors they then discard. For
//! the plain forms agents send — booleans, whole numbers, strings, arrays as sets, records,
//! `{"__entity": {"type", "id"}}` — this module builds the same values directly (about four times
//! faster for a typical request; `benches/decide.rs`), and schema conformance is still checked by
//! Cedar (`Entities::from_entities`, `Context::validate`).
//!
//! It only ever answers for input it fully understands *and* that Cedar then accepts against the
//! schema. Anything else — extension values, implicit forms that need the schema to read (an
//! entity written `{"type", "id"}` where the schema expects one), unknown fields, numbers that are
//! not `Long`s, any conformance failure — returns `None`, and the caller uses Cedar's own reader,
//! whose answer (or error) is final. So decisions and error messages are exactly Cedar's
//! (`tests/decide_conformance.rs` compares them with the reference authorizer).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression, Schema};
use serde_json::{Map, Value};

/// A JSON key Cedar reserves for its escapes (`__entity`, `__extn`, …).
fn reserved(key: &str) -> bool {
    key.starts_with("__")
}

/// `{"type": "Acgs::Agent", "id": "a1"}` or `{"__entity": {…}}`.
fn uid(v: &Value) -> Option<EntityUid> {
    let map = v.as_object()?;
    if let Some(inner) = map.get("__entity") {
        return if map.len() == 1 { uid(inner) } else { None };
    }
    if map.len() != 2 {
        return None;
    }
    let type_name = EntityTypeName::from_str(map.get("type")?.as_str()?).ok()?;
    Some(EntityUid::from_type_name_and_id(type_name, EntityId::new(map.get("id")?.as_str()?)))
}

/// An attribute or context value in an explicit form.
fn expr(v: &Value) -> Option<RestrictedExpression> {
    match v {
        Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
        Value::Number(n) => n.as_i64().map(RestrictedExpression::new_long),
        Value::String(s) => Some(RestrictedExpression::new_string(s.clone())),
        Value::Array(items) => items.iter().map(expr).collect::<Option<Vec<_>>>().map(RestrictedExpression::new_set),
        Value::Object(map) if map.contains_key("__entity") => uid(v).map(RestrictedExpression::new_entity_uid),
        Value::Object(map) => RestrictedExpression::new_record(fields(map)?).ok(),
        Value::Null => None,
    }
}

fn fields(map: &Map<String, Value>) -> Option<Vec<(String, RestrictedExpression)>> {
    map.iter().map(|(k, v)| if reserved(k) { None } else { expr(v).map(|e| (k.clone(), e)) }).collect()
}

/// `{"uid": …, "attrs": {…}, "parents": […]}`; other fields (Cedar's `tags`, or ones Cedar
/// ignores) are left to Cedar.
fn entity(v: &Value) -> Option<Entity> {
    let map = v.as_object()?;
    if map.keys().any(|k| !matches!(k.as_str(), "uid" | "attrs" | "parents")) {
        return None;
    }
    let id = uid(map.get("uid")?)?;
    // Cedar requires both (an entity without them is its error to report).
    let attrs: HashMap<String, RestrictedExpression> = fields(map.get("attrs")?.as_object()?)?.into_iter().collect();
    let parents: HashSet<EntityUid> = map.get("parents")?.as_array()?.iter().map(uid).collect::<Option<_>>()?;
    Entity::new(id, attrs, parents).ok()
}

/// The request's entities, conforming to `schema`, added to `base` (the policy set's own
/// entities) or, without a base, with the schema's action entities. `None`: use Cedar's reader.
pub fn entities(values: &[Value], schema: &Schema, base: Option<&Entities>) -> Option<Entities> {
    let list: Vec<Entity> = values.iter().map(entity).collect::<Option<_>>()?;
    match base {
        None => Entities::from_entities(list, Some(schema)).ok(),
        Some(base) => base.clone().add_entities(list, Some(schema)).ok(),
    }
}

/// The request's context, valid for `action` under `schema`. `None`: use Cedar's reader.
pub fn context(value: &Value, schema: &Schema, action: &EntityUid) -> Option<Context> {
    let context = Context::from_pairs(fields(value.as_object()?)?).ok()?;
    context.validate(schema, action).ok()?;
    Some(context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::policy::governance_schema;
    use serde_json::json;

    fn action(id: &str) -> EntityUid {
        EntityUid::from_str(&format!("Acgs::Action::\"{id}\"")).expect("uid")
    }

    #[test]
    fn plain_forms_read_like_cedar_reads_them() {
        let schema = governance_schema();
        let json = json!([
            { "uid": { "type": "Acgs::Agent", "id": "a1" }, "parents": [{ "__entity": { "type": "Acgs::Team", "id": "ops" } }],
              "attrs": { "owner": { "__entity": { "type": "Acgs::User", "id": "u1" } }, "trust_level": 50, "purpose": "ci" } },
            { "uid": { "__entity": { "type": "Acgs::Tool", "id": "t1" } }, "attrs": { "risk": "low" }, "parents": [] }
        ]);
        let fast = entities(json.as_array().expect("array"), schema, None).expect("read");
        let cedar = Entities::from_json_value(json, Some(schema)).expect("cedar reads it");
        assert!(fast.deep_eq(&cedar));
        let ctx = json!({ "irreversible": false, "human_approved": true, "reason": "x" });
        let fast = context(&ctx, schema, &action("read")).expect("read");
        let cedar = Context::from_json_value(ctx, Some((schema, &action("read")))).expect("cedar");
        assert_eq!(format!("{fast:?}"), format!("{cedar:?}"));
    }

    #[test]
    fn anything_else_is_left_to_cedar() {
        let schema = governance_schema();
        let agent =
            |attrs: Value| vec![json!({ "uid": { "type": "Acgs::Agent", "id": "a1" }, "attrs": attrs, "parents": [] })];
        let owner = json!({ "__entity": { "type": "Acgs::User", "id": "u1" } });
        // An implicit entity reference (needs the schema to read), a float, an extension, a
        // mistyped or missing attribute, an unknown field, a reserved key.
        for attrs in [
            json!({ "owner": { "type": "Acgs::User", "id": "u1" }, "trust_level": 1 }),
            json!({ "owner": owner, "trust_level": 1.5 }),
            json!({ "owner": owner, "trust_level": { "__extn": { "fn": "decimal", "arg": "1.0" } } }),
            json!({ "owner": owner, "trust_level": "high" }),
            json!({ "owner": owner }),
            json!({ "owner": owner, "trust_level": 1, "__expr": "x" }),
        ] {
            assert!(entities(&agent(attrs.clone()), schema, None).is_none(), "{attrs}");
        }
        let tagged = json!({ "uid": { "type": "Acgs::Tool", "id": "t" }, "attrs": { "risk": "low" }, "parents": [], "tags": {} });
        assert!(entities(&[tagged], schema, None).is_none());
        let no_parents = json!({ "uid": { "type": "Acgs::Tool", "id": "t" }, "attrs": { "risk": "low" } });
        assert!(entities(&[no_parents], schema, None).is_none());
        let read = action("read");
        assert!(context(&json!({ "irreversible": false }), schema, &read).is_none(), "missing attribute");
        assert!(context(&json!({ "irreversible": 0, "human_approved": false }), schema, &read).is_none());
        assert!(context(&json!([]), schema, &read).is_none());
    }
}
