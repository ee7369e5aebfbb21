//! Policy proposals: the lifecycle and the rules that decide whether a verified set may go to a
//! vote (or be forced in by break-glass). Pure logic, no I/O.
//!
//! ```text
//! verifying ──► voting ──► activated | rejected | expired
//!     │            └─────► withdrawn
//!     ├──► failed_verification
//!     └──► withdrawn
//! ```
//!
//! A proposal is verified by the verification service as soon as it is stored. It goes to a vote
//! only if every gate check of [`vote_gate`] is `proved`: strict validation, never-errors for every
//! policy, and every invariant of the active constitution. `bounded` (no solver) and `unknown`
//! (time-out) are not proofs, so they stop a proposal as surely as `refuted` does. Comparison
//! with the set in force is reported for the voters but gates nothing.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::kernel::policy::Problem;
use crate::services::verification::report::{Status as CheckStatus, VerifyReport};

/// Where a proposal is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Verifying,
    FailedVerification,
    Voting,
    Activated,
    Rejected,
    Withdrawn,
    Expired,
}

impl Status {
    const ALL: [Status; 7] = [
        Status::Verifying,
        Status::FailedVerification,
        Status::Voting,
        Status::Activated,
        Status::Rejected,
        Status::Withdrawn,
        Status::Expired,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Verifying => "verifying",
            Status::FailedVerification => "failed_verification",
            Status::Voting => "voting",
            Status::Activated => "activated",
            Status::Rejected => "rejected",
            Status::Withdrawn => "withdrawn",
            Status::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The words [`Status::parse`] accepts, for error messages.
    pub fn names() -> String {
        Status::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// Why a verified set may not go further: the checks that were not proved, one line each.
pub type Failures = Vec<String>;

fn describe(r: &crate::services::verification::report::CheckResult) -> String {
    let what = match (r.check.as_str(), &r.invariant, &r.policy) {
        ("invariant", Some(id), _) => format!("invariant {id}"),
        ("never_errors", _, Some(policy)) => format!("never_errors of policy {policy}"),
        (check, _, _) => check.to_string(),
    };
    let why = match (&r.reason, r.problems.first()) {
        (Some(reason), _) => format!(": {reason}"),
        (None, Some(problem)) => format!(": {}", Problem::to_string(problem)),
        (None, None) if r.counterexample.is_some() => " (counterexample in the report)".to_string(),
        (None, None) => String::new(),
    };
    format!("{what} is {}{why}", r.status.as_str())
}

fn gated(check: &str) -> bool {
    matches!(check, "validation" | "never_errors" | "invariant")
}

/// The checks of `report` that keep a proposal from a vote: every validation, never-errors and
/// invariant result that is not `proved`. Empty: the set may be voted on.
pub fn vote_gate(report: &VerifyReport) -> Failures {
    let mut failures: Failures =
        report.results.iter().filter(|r| gated(&r.check) && r.status != CheckStatus::Proved).map(describe).collect();
    // A constitution without invariants, or a set without policies, has no such results; but
    // validation is always run.
    if !report.results.iter().any(|r| r.check == "validation") {
        failures.push("validation was not run".into());
    }
    failures
}

/// The checks that stop a break-glass activation: validation must be proved and no
/// never-errors or invariant result may be `refuted`. An emergency may skip the vote and, when the
/// solver is down, the proof; it never activates a set known to break the constitution.
pub fn break_glass_gate(report: &VerifyReport) -> Failures {
    report
        .results
        .iter()
        .filter(|r| match r.check.as_str() {
            "validation" => r.status != CheckStatus::Proved,
            "never_errors" | "invariant" => r.status == CheckStatus::Refuted,
            _ => false,
        })
        .map(describe)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::verification::report::{CheckResult, ConstitutionRef, Summary};

    fn report(results: Vec<CheckResult>) -> VerifyReport {
        VerifyReport {
            constitution: ConstitutionRef { version: 1, hash: "0".repeat(16), sha256: "0".repeat(64) },
            solver: None,
            results,
            summary: Summary::default(),
            duration_ms: 0,
        }
    }

    fn result(check: &str, status: CheckStatus) -> CheckResult {
        let mut r = CheckResult::new(check, status);
        if check == "invariant" {
            r.invariant = Some("inv".into());
        }
        r
    }

    #[test]
    fn only_proofs_open_a_vote() {
        let all_proved = report(vec![
            result("validation", CheckStatus::Proved),
            result("never_errors", CheckStatus::Proved),
            result("invariant", CheckStatus::Proved),
            result("compare", CheckStatus::Refuted),
        ]);
        assert!(vote_gate(&all_proved).is_empty(), "compare gates nothing");
        for status in [CheckStatus::Refuted, CheckStatus::Unknown, CheckStatus::Bounded, CheckStatus::Invalid] {
            let r = report(vec![result("validation", CheckStatus::Proved), result("invariant", status)]);
            let failures = vote_gate(&r);
            assert_eq!(failures.len(), 1, "{status:?}");
            assert!(failures[0].starts_with("invariant inv is"), "{failures:?}");
        }
        assert_eq!(vote_gate(&report(vec![])), vec!["validation was not run".to_string()]);
    }

    #[test]
    fn break_glass_skips_proofs_but_never_a_refutation() {
        let bounded = report(vec![
            result("validation", CheckStatus::Proved),
            result("invariant", CheckStatus::Bounded),
            result("never_errors", CheckStatus::Unknown),
        ]);
        assert!(break_glass_gate(&bounded).is_empty());
        let refuted =
            report(vec![result("validation", CheckStatus::Proved), result("invariant", CheckStatus::Refuted)]);
        assert_eq!(break_glass_gate(&refuted).len(), 1);
        let invalid = report(vec![result("validation", CheckStatus::Refuted)]);
        assert_eq!(break_glass_gate(&invalid).len(), 1);
    }

    #[test]
    fn statuses_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("approved"), None);
    }
}
