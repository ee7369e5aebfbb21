//! What a verification is asked and what it answers: [`VerifyRequest`] in, [`VerifyReport`] out.
//! Both are public and serde-able in both directions, so the consensus service can send the one
//! and read the other over HTTP as well as in process.
//!
//! A check's status is one of five words, and only one of them is a success:
//!
//! | status | meaning |
//! |---|---|
//! | `proved` | the solver answered unsat for every request environment: it holds for every request |
//! | `refuted` | a concrete request (with its entities) breaks it; re-evaluated with Cedar's authorizer before it is reported |
//! | `unknown` | no verdict: the solver ran out of time or failed (`reason` says which) |
//! | `bounded` | no solver: `enumerated` concrete requests were tried and none broke it; this is not a proof |
//! | `invalid` | the check could not be run on this input (the set failed strict validation, …) |

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::kernel::constitution::InvariantKind;
use crate::kernel::policy::Problem;

/// A request to verify a policy set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The policy set as Cedar text (`@id("…")` annotations name the policies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<String>,
    /// A stored policy set by version (needs the consensus service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_set: Option<i64>,
    /// The schema in Cedar schema syntax; default: the embedded governance schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The checks to run; default: all (`compare` only when `compare_to` is given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<CheckKind>>,
    /// Another policy set to compare against (the one in force before a change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare_to: Option<PolicySource>,
    /// The longest one check may take, in milliseconds; capped by `verification.timeout_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// This set is the one in force: record its compliance in
    /// `acgs_constitutional_compliance_score` (callers with the `service` or `admin` role).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub active: bool,
}

/// A policy set given as text or by stored version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_set: Option<i64>,
}

/// The kinds of check a request can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    /// Strict validation of the set against the schema.
    Validation,
    /// No policy of the set can error on a request that matches the schema.
    NeverErrors,
    /// Every `never` and `always` invariant of the active constitution.
    Invariants,
    /// What the set allows that `compare_to` does not, and the reverse.
    Compare,
}

impl CheckKind {
    pub const ALL: [CheckKind; 4] =
        [CheckKind::Validation, CheckKind::NeverErrors, CheckKind::Invariants, CheckKind::Compare];

    pub const fn as_str(self) -> &'static str {
        match self {
            CheckKind::Validation => "validation",
            CheckKind::NeverErrors => "never_errors",
            CheckKind::Invariants => "invariants",
            CheckKind::Compare => "compare",
        }
    }
}

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Proved,
    Refuted,
    Unknown,
    Bounded,
    Invalid,
}

impl Status {
    pub const ALL: [Status; 5] = [Status::Proved, Status::Refuted, Status::Unknown, Status::Bounded, Status::Invalid];

    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Proved => "proved",
            Status::Refuted => "refuted",
            Status::Unknown => "unknown",
            Status::Bounded => "bounded",
            Status::Invalid => "invalid",
        }
    }
}

/// Which way a comparison looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Is every request the set allows also allowed by `compare_to`? A counterexample is a
    /// request the new set allows and the old one did not.
    AllowsMore,
    /// Is every request `compare_to` allows still allowed? A counterexample is a request the old
    /// set allowed and the new one does not.
    AllowsLess,
}

/// A concrete request, in Cedar's JSON forms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RequestJson {
    /// `{"type": "Acgs::Agent", "id": "…"}`
    #[schema(value_type = Object)]
    pub principal: serde_json::Value,
    #[schema(value_type = Object)]
    pub action: serde_json::Value,
    #[schema(value_type = Object)]
    pub resource: serde_json::Value,
    #[schema(value_type = Object)]
    pub context: serde_json::Value,
}

/// A request and the entities it is evaluated with that break a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Counterexample {
    pub request: RequestJson,
    /// Cedar entity JSON (`[{"uid", "attrs", "parents"}]`), as `Entities::from_json_value` reads it.
    #[schema(value_type = Vec<Object>)]
    pub entities: serde_json::Value,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckResult {
    /// `validation`, `never_errors`, `invariant` or `compare`.
    pub check: String,
    pub status: Status,
    /// The invariant checked, its kind and its principle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invariant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub kind: Option<InvariantKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principle: Option<String>,
    /// The policy checked (never_errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Which way a comparison looks (compare).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// With `refuted` from a solver or enumeration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterexample: Option<Counterexample>,
    /// With `bounded`: how many concrete requests were evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enumerated: Option<u64>,
    /// With `unknown`, `invalid` and `bounded`: why there is no proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// With a refuted `validation`: the problems, with line and column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub problems: Vec<Problem>,
    pub duration_ms: u64,
}

impl CheckResult {
    pub fn new(check: &str, status: Status) -> Self {
        CheckResult {
            check: check.to_string(),
            status,
            invariant: None,
            kind: None,
            principle: None,
            policy: None,
            direction: None,
            counterexample: None,
            enumerated: None,
            reason: None,
            problems: Vec::new(),
            duration_ms: 0,
        }
    }
}

/// The constitution version the invariants came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConstitutionRef {
    pub version: i64,
    /// The 16-hex constitutional hash.
    pub hash: String,
    pub sha256: String,
}

/// The solver that gave the proofs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SolverInfo {
    pub name: String,
    pub version: String,
}

/// Counts over the results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Summary {
    pub checks: u64,
    pub proved: u64,
    pub refuted: u64,
    pub unknown: u64,
    pub bounded: u64,
    pub invalid: u64,
    /// Invariants of the constitution, and how many of them were proved.
    pub invariants: u64,
    pub invariants_proved: u64,
    /// `invariants_proved / invariants` (1.0 for a constitution without invariants); `null`
    /// when the invariants were not checked.
    #[serde(default)]
    pub compliance: Option<f64>,
    /// Whether the set and `compare_to` allow exactly the same requests: `true` only when both
    /// directions are proved, `false` when either is refuted, else `null`.
    #[serde(default)]
    pub equivalent: Option<bool>,
}

/// The answer to a [`VerifyRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VerifyReport {
    pub constitution: ConstitutionRef,
    /// The solver used, or `null` when there is none (results are then `bounded` at best).
    pub solver: Option<SolverInfo>,
    pub results: Vec<CheckResult>,
    pub summary: Summary,
    pub duration_ms: u64,
}

impl VerifyReport {
    /// Every result, counted.
    pub fn summarise(results: &[CheckResult], invariants_checked: bool) -> Summary {
        let mut s = Summary { checks: results.len() as u64, ..Summary::default() };
        for r in results {
            match r.status {
                Status::Proved => s.proved += 1,
                Status::Refuted => s.refuted += 1,
                Status::Unknown => s.unknown += 1,
                Status::Bounded => s.bounded += 1,
                Status::Invalid => s.invalid += 1,
            }
            if r.check == "invariant" {
                s.invariants += 1;
                if r.status == Status::Proved {
                    s.invariants_proved += 1;
                }
            }
        }
        if invariants_checked {
            s.compliance = Some(if s.invariants == 0 { 1.0 } else { s.invariants_proved as f64 / s.invariants as f64 });
        }
        let compare: Vec<Status> = results.iter().filter(|r| r.check == "compare").map(|r| r.status).collect();
        if !compare.is_empty() {
            if compare.contains(&Status::Refuted) {
                s.equivalent = Some(false);
            } else if compare.iter().all(|st| *st == Status::Proved) {
                s.equivalent = Some(true);
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_refuse_unknown_fields() {
        let request = VerifyRequest {
            policies: Some("permit(principal, action, resource);".into()),
            checks: Some(vec![CheckKind::Invariants, CheckKind::Compare]),
            compare_to: Some(PolicySource { policies: Some(String::new()), policy_set: None }),
            timeout_ms: Some(100),
            ..VerifyRequest::default()
        };
        let json = serde_json::to_value(&request).expect("serialise");
        assert_eq!(json["checks"], serde_json::json!(["invariants", "compare"]));
        assert_eq!(serde_json::from_value::<VerifyRequest>(json).expect("parse"), request);
        let err = serde_json::from_str::<VerifyRequest>(r#"{"policies":"","polices":""}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        assert!(serde_json::from_str::<VerifyRequest>(r#"{"checks":["everything"]}"#).is_err());
    }

    #[test]
    fn compliance_counts_only_proved_invariants() {
        let mut results =
            vec![CheckResult::new("invariant", Status::Proved), CheckResult::new("invariant", Status::Bounded)];
        results.push(CheckResult::new("invariant", Status::Refuted));
        results.push(CheckResult::new("validation", Status::Proved));
        let s = VerifyReport::summarise(&results, true);
        assert_eq!((s.invariants, s.invariants_proved, s.proved, s.bounded), (3, 1, 2, 1));
        assert!((s.compliance.expect("compliance") - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(VerifyReport::summarise(&[], true).compliance, Some(1.0));
        assert_eq!(VerifyReport::summarise(&[], false).compliance, None);
        let compare = [CheckResult::new("compare", Status::Proved), CheckResult::new("compare", Status::Unknown)];
        assert_eq!(VerifyReport::summarise(&compare, false).equivalent, None);
    }
}
