//! The constitution document and its hash.
//!
//! Every service needs "the constitutional hash" (DESIGN §3), so the document format, its canonical
//! serialisation and the hash live here; the constitution service owns versions and amendments.
//!
//! Canonical serialisation: the document as JSON with object keys sorted, no insignificant white
//! space, integers only (quorum and threshold are whole percentages), UTF-8. The full digest is
//! SHA-256 over those bytes; the constitutional hash is its first 16 lowercase hex digits.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The genesis constitution bundled in the binary.
pub const GENESIS_TOML: &str = include_str!("../../embedded/constitution/genesis.toml");

/// A constitution: principles and the rules by which it may be amended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constitution {
    pub title: String,
    pub preamble: String,
    pub voting: VotingRules,
    pub principles: Vec<Principle>,
}

/// How amendments (and, for stewards, policy proposals) are decided (see [`crate::kernel::voting`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VotingRules {
    /// The role whose members may vote on amendments.
    pub eligible_role: String,
    /// Share of eligible members, in percent, who must cast a vote (approve, reject or abstain).
    pub quorum_percent: u8,
    /// Share of approve among approve+reject, in percent, needed to ratify.
    pub approval_percent: u8,
    /// How long voting stays open, in hours.
    pub voting_period_hours: u32,
}

/// One principle of the constitution.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principle {
    pub id: String,
    pub title: String,
    pub text: String,
    pub category: String,
    pub priority: u32,
    #[serde(default)]
    pub invariants: Vec<Invariant>,
}

/// A machine-checkable consequence of a principle: a Cedar policy whose scope and conditions
/// describe a set of requests that the active policies must never allow, or must always allow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invariant {
    pub id: String,
    pub kind: InvariantKind,
    pub description: String,
    pub policy: String,
}

/// Whether an invariant's requests must never or always be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvariantKind {
    Never,
    Always,
}

/// Why a constitution text was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConstitutionError {
    #[error("{source_name}: {message}")]
    Parse { source_name: String, message: String },
    #[error("{source_name}: {message}")]
    Invalid { source_name: String, message: String },
}

impl Constitution {
    /// Parses and validates a constitution in TOML. `source_name` names the file in errors; a
    /// syntax error names the line and column.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Self, ConstitutionError> {
        let doc: Constitution = toml::from_str(text).map_err(|e| {
            let position = e
                .span()
                .map(|span| {
                    let before = &text[..span.start.min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                    format!("line {line}, column {column}: ")
                })
                .unwrap_or_default();
            ConstitutionError::Parse {
                source_name: source_name.to_string(),
                message: format!("{position}{}", e.message()),
            }
        })?;
        doc.validate()
            .map_err(|message| ConstitutionError::Invalid { source_name: source_name.to_string(), message })?;
        Ok(doc)
    }

    /// The embedded genesis constitution.
    pub fn genesis() -> Result<Self, ConstitutionError> {
        Self::from_toml(GENESIS_TOML, "embedded/constitution/genesis.toml")
    }

    /// Structural rules every version must satisfy.
    pub fn validate(&self) -> Result<(), String> {
        if self.title.trim().is_empty() {
            return Err("title must not be empty".into());
        }
        if self.principles.is_empty() {
            return Err("a constitution needs at least one principle".into());
        }
        let v = &self.voting;
        if v.eligible_role.trim().is_empty() {
            return Err("voting.eligible_role must not be empty".into());
        }
        if !(1..=100).contains(&v.quorum_percent) {
            return Err(format!("voting.quorum_percent must be 1..=100, got {}", v.quorum_percent));
        }
        if !(1..=100).contains(&v.approval_percent) {
            return Err(format!("voting.approval_percent must be 1..=100, got {}", v.approval_percent));
        }
        if v.voting_period_hours == 0 {
            return Err("voting.voting_period_hours must be at least 1".into());
        }
        let mut ids = HashSet::new();
        let mut invariant_ids = HashSet::new();
        for p in &self.principles {
            if !is_identifier(&p.id) {
                return Err(format!("principle id {:?} must be 1-64 of a-z, 0-9, '-'", p.id));
            }
            if !ids.insert(p.id.as_str()) {
                return Err(format!("principle id {:?} appears twice", p.id));
            }
            if p.title.trim().is_empty() || p.text.trim().is_empty() {
                return Err(format!("principle {:?} needs a title and a text", p.id));
            }
            for inv in &p.invariants {
                if !is_identifier(&inv.id) {
                    return Err(format!("invariant id {:?} in {:?} must be 1-64 of a-z, 0-9, '-'", inv.id, p.id));
                }
                if !invariant_ids.insert(inv.id.as_str()) {
                    return Err(format!("invariant id {:?} appears twice", inv.id));
                }
                if inv.policy.trim().is_empty() {
                    return Err(format!("invariant {:?} has an empty policy", inv.id));
                }
                let policy = crate::kernel::policy::parse_policy(&inv.id, &inv.policy)
                    .map_err(|e| format!("invariant {:?}: {e}", inv.id))?;
                if policy.effect() != cedar_policy::Effect::Permit {
                    return Err(format!(
                        "invariant {:?} must be written as permit(…): it describes the requests it is about",
                        inv.id
                    ));
                }
            }
        }
        Ok(())
    }

    /// The canonical bytes the hash is computed over.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // serde_json's map keeps keys sorted (no `preserve_order`), and this document has no floats.
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        serde_json::to_vec(&value).unwrap_or_default()
    }

    /// Full SHA-256 digest (64 hex) and the 16-hex constitutional hash.
    pub fn digest(&self) -> ConstitutionDigest {
        let sha256 = hex::encode(Sha256::digest(self.canonical_bytes()));
        ConstitutionDigest { short: sha256[..16].to_string(), sha256 }
    }
}

/// The digest of one constitution version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConstitutionDigest {
    /// 64 lowercase hex digits of SHA-256 over the canonical serialisation.
    pub sha256: String,
    /// The first 16 of them: "the constitutional hash".
    pub short: String,
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `s` has the form of a constitutional hash (16 lowercase hex digits).
pub fn is_hash(s: &str) -> bool {
    s.len() == 16 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The hash this process currently serves in `X-Constitutional-Hash`; the constitution service
/// replaces it when an amendment is ratified (announced on the bus).
#[derive(Clone, Debug)]
pub struct HashCell(Arc<RwLock<Arc<str>>>);

impl HashCell {
    pub fn new(hash: &str) -> Self {
        Self(Arc::new(RwLock::new(Arc::from(hash))))
    }
    pub fn get(&self) -> Arc<str> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
    pub fn set(&self, hash: &str) {
        match self.0.write() {
            Ok(mut guard) => *guard = Arc::from(hash),
            Err(poisoned) => *poisoned.into_inner() = Arc::from(hash),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_parses_and_hash_is_stable() {
        let g = Constitution::genesis().expect("genesis parses");
        let d1 = g.digest();
        let d2 = Constitution::genesis().expect("genesis parses").digest();
        assert_eq!(d1, d2);
        assert!(is_hash(&d1.short));
        assert!(d1.sha256.starts_with(&d1.short));
    }

    #[test]
    fn any_change_changes_the_hash() {
        let g = Constitution::genesis().expect("genesis parses");
        let mut changed = g.clone();
        changed.principles[0].text.push('.');
        assert_ne!(g.digest(), changed.digest());
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = Constitution::from_toml("title = \"x\"\npreamble = \n", "f.toml").unwrap_err();
        assert!(err.to_string().contains("f.toml: line 2"), "{err}");
    }

    #[test]
    fn duplicate_principles_are_refused() {
        let mut g = Constitution::genesis().expect("genesis parses");
        let first = g.principles[0].clone();
        g.principles.push(first);
        assert!(g.validate().unwrap_err().contains("appears twice"));
    }
}
