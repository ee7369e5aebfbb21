//! The constitution service's pure logic: amendment changes and how they apply to a document, the
//! diff between two versions, the amendment lifecycle and the tally. No I/O here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::kernel::constitution::{Constitution, Principle, VotingRules};

/// One change an amendment makes to the active constitution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// Adds a principle; its id must be new.
    AddPrinciple {
        #[schema(value_type = Object)]
        principle: Principle,
    },
    /// Replaces the principle `id` (the new one may carry another id).
    ReplacePrinciple {
        id: String,
        #[schema(value_type = Object)]
        principle: Principle,
    },
    /// Removes the principle `id`.
    RemovePrinciple { id: String },
    /// Replaces the voting rules.
    SetVoting {
        #[schema(value_type = Object)]
        voting: VotingRules,
    },
    /// Replaces the preamble.
    SetPreamble { preamble: String },
}

/// Applies `changes` in order to a copy of `base` and validates the result. The message names the
/// change (1-based) that could not apply.
pub fn apply(base: &Constitution, changes: &[Change]) -> Result<Constitution, String> {
    if changes.is_empty() {
        return Err("an amendment needs at least one change".into());
    }
    let mut doc = base.clone();
    for (i, change) in changes.iter().enumerate() {
        let n = i + 1;
        match change {
            Change::AddPrinciple { principle } => {
                if doc.principles.iter().any(|p| p.id == principle.id) {
                    return Err(format!("change {n}: a principle with id {:?} already exists", principle.id));
                }
                doc.principles.push(principle.clone());
            }
            Change::ReplacePrinciple { id, principle } => {
                let Some(slot) = doc.principles.iter_mut().find(|p| &p.id == id) else {
                    return Err(format!("change {n}: there is no principle with id {id:?} to replace"));
                };
                *slot = principle.clone();
            }
            Change::RemovePrinciple { id } => {
                let before = doc.principles.len();
                doc.principles.retain(|p| &p.id != id);
                if doc.principles.len() == before {
                    return Err(format!("change {n}: there is no principle with id {id:?} to remove"));
                }
            }
            Change::SetVoting { voting } => doc.voting = voting.clone(),
            Change::SetPreamble { preamble } => doc.preamble = preamble.clone(),
        }
    }
    doc.validate().map_err(|e| format!("the amended constitution would be invalid: {e}"))?;
    if doc == *base {
        return Err("the changes leave the constitution as it is".into());
    }
    Ok(doc)
}

/// Where an amendment is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Draft,
    Voting,
    Ratified,
    Rejected,
    Withdrawn,
    Expired,
}

impl Status {
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Voting => "voting",
            Status::Ratified => "ratified",
            Status::Rejected => "rejected",
            Status::Withdrawn => "withdrawn",
            Status::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [Status::Draft, Status::Voting, Status::Ratified, Status::Rejected, Status::Withdrawn, Status::Expired]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

/// One field that differs between two versions.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldChange {
    pub field: String,
    #[schema(value_type = Object)]
    pub from: serde_json::Value,
    #[schema(value_type = Object)]
    pub to: serde_json::Value,
}

/// A principle present in both versions whose fields differ.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PrincipleChange {
    pub id: String,
    pub fields: Vec<FieldChange>,
}

/// What changed between two versions.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Diff {
    #[schema(value_type = Vec<Object>)]
    pub added: Vec<Principle>,
    #[schema(value_type = Vec<Object>)]
    pub removed: Vec<Principle>,
    pub changed: Vec<PrincipleChange>,
    /// Changed voting rules, field by field.
    pub voting: Vec<FieldChange>,
    /// Changes to the title and preamble.
    pub document: Vec<FieldChange>,
}

fn field_changes(prefix: &str, from: &serde_json::Value, to: &serde_json::Value) -> Vec<FieldChange> {
    let empty = serde_json::Map::new();
    let a = from.as_object().unwrap_or(&empty);
    let b = to.as_object().unwrap_or(&empty);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (x, y) = (a.get(k), b.get(k));
            (x != y).then(|| FieldChange {
                field: format!("{prefix}{k}"),
                from: x.cloned().unwrap_or(serde_json::Value::Null),
                to: y.cloned().unwrap_or(serde_json::Value::Null),
            })
        })
        .collect()
}

fn to_value<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// The diff from `a` to `b`: principles by id (added, removed, changed with their fields), voting
/// rules and document fields.
pub fn diff(a: &Constitution, b: &Constitution) -> Diff {
    let old: BTreeMap<&str, &Principle> = a.principles.iter().map(|p| (p.id.as_str(), p)).collect();
    let new: BTreeMap<&str, &Principle> = b.principles.iter().map(|p| (p.id.as_str(), p)).collect();
    let added = b.principles.iter().filter(|p| !old.contains_key(p.id.as_str())).cloned().collect();
    let removed = a.principles.iter().filter(|p| !new.contains_key(p.id.as_str())).cloned().collect();
    let changed = a
        .principles
        .iter()
        .filter_map(|p| {
            let q = new.get(p.id.as_str())?;
            let fields = field_changes("", &to_value(p), &to_value(q));
            (!fields.is_empty()).then(|| PrincipleChange { id: p.id.clone(), fields })
        })
        .collect();
    let mut document = Vec::new();
    for (field, x, y) in [("title", &a.title, &b.title), ("preamble", &a.preamble, &b.preamble)] {
        if x != y {
            document.push(FieldChange { field: field.into(), from: to_value(x), to: to_value(y) });
        }
    }
    Diff {
        added,
        removed,
        changed,
        voting: field_changes("voting.", &to_value(&a.voting), &to_value(&b.voting)),
        document,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::constitution::{Invariant, InvariantKind};

    fn genesis() -> Constitution {
        Constitution::genesis().expect("genesis")
    }

    fn principle(id: &str) -> Principle {
        Principle {
            id: id.into(),
            title: "Title".into(),
            text: "Text.".into(),
            category: "test".into(),
            priority: 10,
            invariants: vec![Invariant {
                id: format!("{id}-inv"),
                kind: InvariantKind::Never,
                description: "d".into(),
                policy: "permit(principal, action, resource);".into(),
            }],
        }
    }

    #[test]
    fn changes_parse_by_op_and_refuse_unknown_fields_and_ops() {
        let c: Change = serde_json::from_str(r#"{"op":"remove_principle","id":"x"}"#).expect("parses");
        assert_eq!(c, Change::RemovePrinciple { id: "x".into() });
        assert!(serde_json::from_str::<Change>(r#"{"op":"remove_principle","id":"x","extra":1}"#).is_err());
        assert!(serde_json::from_str::<Change>(r#"{"op":"burn_it_down"}"#).is_err());
    }

    #[test]
    fn apply_adds_replaces_removes_and_validates() {
        let g = genesis();
        let added = apply(&g, &[Change::AddPrinciple { principle: principle("new-one") }]).expect("adds");
        assert_eq!(added.principles.len(), g.principles.len() + 1);
        assert_ne!(added.digest(), g.digest());

        let first = g.principles[0].id.clone();
        let dup = apply(&g, &[Change::AddPrinciple { principle: principle(&first) }]).unwrap_err();
        assert!(dup.contains("already exists"), "{dup}");

        let removed = apply(&g, &[Change::RemovePrinciple { id: first.clone() }]).expect("removes");
        assert!(removed.principles.iter().all(|p| p.id != first));

        let all: Vec<Change> = g.principles.iter().map(|p| Change::RemovePrinciple { id: p.id.clone() }).collect();
        assert!(apply(&g, &all).unwrap_err().contains("at least one principle"));

        let mut empty_policy = principle("empty-policy");
        empty_policy.invariants[0].policy = "  ".into();
        assert!(apply(&g, &[Change::AddPrinciple { principle: empty_policy }]).unwrap_err().contains("empty policy"));

        assert!(apply(&g, &[]).is_err());
        let same = Change::SetPreamble { preamble: g.preamble.clone() };
        assert!(apply(&g, &[same]).unwrap_err().contains("as it is"));
        let missing = Change::ReplacePrinciple { id: "nope".into(), principle: principle("nope") };
        assert!(apply(&g, &[missing]).unwrap_err().contains("no principle"));
    }

    #[test]
    fn diff_names_added_removed_and_changed_fields() {
        let g = genesis();
        let mut b = g.clone();
        b.principles.push(principle("added"));
        let gone = b.principles.remove(0);
        b.principles[0].priority += 1;
        b.voting.quorum_percent = 75;
        let d = diff(&g, &b);
        assert_eq!(d.added.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["added"]);
        assert_eq!(d.removed.iter().map(|p| p.id.clone()).collect::<Vec<_>>(), [gone.id]);
        assert_eq!(d.changed.len(), 1);
        assert_eq!(d.changed[0].fields.len(), 1);
        assert_eq!(d.changed[0].fields[0].field, "priority");
        assert_eq!(d.voting.len(), 1);
        assert_eq!(d.voting[0].field, "voting.quorum_percent");
        assert!(d.document.is_empty());
        let none = diff(&g, &g);
        assert!(none.added.is_empty() && none.removed.is_empty() && none.changed.is_empty() && none.voting.is_empty());
    }
}
