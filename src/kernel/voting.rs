//! Votes on amendments (council) and policy proposals (stewards): the choices, the counts, the
//! tally under the constitution's [`VotingRules`], and casting a vote in storage. Both services
//! keep their own tables (`amendments`/`proposals` with a `votes` table each, one vote per member
//! by a UNIQUE constraint); the rules of casting are the same and live here once.

use serde::{Deserialize, Serialize};

use crate::kernel::auth::Principal;
use crate::kernel::constitution::VotingRules;
use crate::kernel::error::ApiError;
use crate::kernel::storage::{Row, StorageError, Tx};
use crate::params;

/// A member's vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    Approve,
    Reject,
    Abstain,
}

impl Choice {
    pub const fn as_str(self) -> &'static str {
        match self {
            Choice::Approve => "approve",
            Choice::Reject => "reject",
            Choice::Abstain => "abstain",
        }
    }
}

/// The votes cast so far on one amendment or proposal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VoteCounts {
    pub approve: u64,
    pub reject: u64,
    pub abstain: u64,
}

impl VoteCounts {
    /// From the rows of `SELECT choice, COUNT(*) … GROUP BY choice`.
    pub fn from_rows(rows: &[Row]) -> Result<VoteCounts, StorageError> {
        let mut c = VoteCounts::default();
        for row in rows {
            let n = u64::try_from(row.get_i64(1)?).unwrap_or(0);
            match row.get_str(0)? {
                "approve" => c.approve = n,
                "reject" => c.reject = n,
                "abstain" => c.abstain = n,
                other => {
                    return Err(StorageError::Database(format!("stored vote choice cannot be read: {other}")));
                }
            }
        }
        Ok(c)
    }

    /// The tally of these votes with `eligible` members under `rules`.
    pub fn tally(&self, eligible: u64, rules: &VotingRules) -> Tally {
        Tally::count(self.approve, self.reject, self.abstain, eligible, rules)
    }
}

/// The count of a vote (an amendment, a policy proposal) against the rules, at close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tally {
    pub approve: u64,
    pub reject: u64,
    pub abstain: u64,
    /// Enabled members of the eligible role when the vote closed.
    pub eligible: u64,
    pub quorum_percent: u8,
    pub approval_percent: u8,
    /// approve + reject + abstain ≥ quorum_percent of eligible.
    pub quorum_met: bool,
    /// approve / (approve + reject) ≥ approval_percent; false without approve or reject votes.
    pub approved: bool,
}

impl Tally {
    /// Counts the votes under `rules` with `eligible` members. Integer arithmetic, so a boundary
    /// (exactly 50 %) counts as reached.
    pub fn count(approve: u64, reject: u64, abstain: u64, eligible: u64, rules: &VotingRules) -> Tally {
        let cast = u128::from(approve) + u128::from(reject) + u128::from(abstain);
        let quorum_met = eligible > 0 && cast * 100 >= u128::from(rules.quorum_percent) * u128::from(eligible);
        let decided = u128::from(approve) + u128::from(reject);
        let approved = decided > 0 && u128::from(approve) * 100 >= u128::from(rules.approval_percent) * decided;
        Tally {
            approve,
            reject,
            abstain,
            eligible,
            quorum_percent: rules.quorum_percent,
            approval_percent: rules.approval_percent,
            quorum_met,
            approved,
        }
    }

    /// Ratified only with quorum and approval.
    pub fn passes(&self) -> bool {
        self.quorum_met && self.approved
    }
}

/// Where one service keeps its ballots: the table of the items voted on (with `id`, `status`,
/// `deadline`, `updated_at`) and the column of its `votes` table naming the item.
#[derive(Debug, Clone, Copy)]
pub struct Ballots {
    /// `amendments`, `proposals`.
    pub items: &'static str,
    /// `amendment_id`, `proposal_id`.
    pub item_column: &'static str,
}

/// Why a vote was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum CastError {
    /// The item is not open for votes (no such item, not voting, or past its deadline): the
    /// caller says which, from its own record of the item.
    #[error("not open for votes")]
    NotOpen,
    /// This member has voted on it already.
    #[error("already voted")]
    AlreadyVoted,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Ballots {
    /// Records `voter`'s `choice` on item `id` in `tx`, if the item is voting and before its
    /// deadline; the caller records the audit event in the same transaction. Returns the counts
    /// including this vote.
    pub async fn cast(
        &self,
        tx: &mut Tx,
        id: &str,
        voter: &str,
        voter_name: Option<&str>,
        choice: Choice,
        now: i64,
    ) -> Result<VoteCounts, CastError> {
        // Touching the item first serialises this vote with a concurrent close on PostgreSQL.
        let touched = tx
            .execute(
                &format!(
                    "UPDATE {} SET updated_at = $2 WHERE id = $1 AND status = 'voting' AND deadline > $2",
                    self.items
                ),
                &params![id, now],
            )
            .await?;
        if touched == 0 {
            return Err(CastError::NotOpen);
        }
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO votes ({c}, voter, voter_name, choice, cast_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT ({c}, voter) DO NOTHING",
                    c = self.item_column
                ),
                &params![id, voter, voter_name, choice.as_str(), now],
            )
            .await?;
        if inserted == 0 {
            return Err(CastError::AlreadyVoted);
        }
        Ok(self.counts_in(tx, id).await?)
    }

    fn counts_sql(&self) -> String {
        format!("SELECT choice, COUNT(*) FROM votes WHERE {} = $1 GROUP BY choice", self.item_column)
    }

    /// The counts on item `id`, in `tx`.
    pub async fn counts_in(&self, tx: &mut Tx, id: &str) -> Result<VoteCounts, StorageError> {
        VoteCounts::from_rows(&tx.query(&self.counts_sql(), &params![id]).await?)
    }

    /// The counts on item `id`.
    pub async fn counts(&self, db: &crate::kernel::storage::Db, id: &str) -> Result<VoteCounts, StorageError> {
        VoteCounts::from_rows(&db.query(&self.counts_sql(), &params![id]).await?)
    }
}

/// Only a person (not a machine client) holding `role` votes on `what` (403 otherwise).
pub fn require_voter(caller: &Principal, role: &str, what: &str) -> Result<(), ApiError> {
    if !caller.claims.roles.iter().any(|r| r == role) {
        return Err(ApiError::forbidden(format!("only members of the {role:?} role may vote on {what}")));
    }
    if caller.claims.client_id.is_some() {
        return Err(ApiError::forbidden(format!("{what} are voted on by people; machine clients cannot vote")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::constitution::Constitution;

    #[test]
    fn tally_follows_the_rules() {
        let rules = Constitution::genesis().expect("genesis").voting; // quorum 50 %, approval 60 %
        assert!(Tally::count(2, 0, 1, 3, &rules).passes());
        let low_turnout = Tally::count(1, 0, 0, 3, &rules);
        assert!(!low_turnout.quorum_met && low_turnout.approved && !low_turnout.passes());
        assert!(!Tally::count(0, 0, 3, 3, &rules).approved, "abstentions alone approve nothing");
        assert!(!Tally::count(1, 1, 0, 2, &rules).passes(), "50 % < 60 %");
        assert!(Tally::count(3, 2, 0, 5, &rules).passes(), "exactly 60 %");
        assert!(!Tally::count(1, 0, 0, 0, &rules).quorum_met, "no electorate, no quorum");
        assert!(Tally::count(1, 0, 0, 2, &rules).quorum_met, "exactly 50 %");
    }
}
