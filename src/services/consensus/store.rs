//! The consensus service's storage: immutable policy-set versions, the active pointer,
//! proposals and their votes. Plain SQL through the kernel's storage interface; runs on SQLite
//! and PostgreSQL. Every state change records its audit event in the same transaction, and every
//! change of the active set happens in one transaction with what caused it (a proposal's close,
//! a break-glass activation).

use sha2::{Digest, Sha256};

use super::proposals::Status;
use crate::kernel::audit;
use crate::kernel::constitution::VotingRules;
use crate::kernel::service::ServiceName;
use crate::kernel::storage::{Db, Row, StorageError, Tx};
use crate::kernel::voting::{Ballots, CastError, Choice, VoteCounts};
use crate::params;

/// The content of a policy set: Cedar policies, the schema (Cedar schema syntax) and the set's
/// own entities (a JSON array of Cedar entities).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Content {
    pub policies: String,
    pub schema: String,
    pub entities: String,
}

impl Content {
    /// SHA-256 (hex) over the three texts, each length-prefixed so no two contents collide.
    pub fn sha256(&self) -> String {
        let mut h = Sha256::new();
        for part in [&self.policies, &self.schema, &self.entities] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// One stored version.
#[derive(Debug, Clone)]
pub struct SetVersion {
    pub version: i64,
    pub content: Content,
    pub sha256: String,
    pub created_at: i64,
    pub created_by: String,
    pub proposal_id: Option<String>,
    pub note: Option<String>,
}

async fn audit(
    tx: &mut Tx,
    kind: &str,
    subject: &str,
    actor: &str,
    data: serde_json::Value,
) -> Result<(), StorageError> {
    audit::record_new(tx, ServiceName::Consensus, kind, subject, actor, data).await
}

const SET_COLUMNS: &str = "version, policies, schema_text, entities, sha256, created_at, created_by, proposal_id, note";

fn set_from_row(row: &Row) -> Result<SetVersion, StorageError> {
    Ok(SetVersion {
        version: row.get_i64(0)?,
        content: Content { policies: row.get_string(1)?, schema: row.get_string(2)?, entities: row.get_string(3)? },
        sha256: row.get_string(4)?,
        created_at: row.get_i64(5)?,
        created_by: row.get_string(6)?,
        proposal_id: row.get_opt_str(7)?.map(str::to_owned),
        note: row.get_opt_str(8)?.map(str::to_owned),
    })
}

fn active_sql() -> String {
    format!(
        "SELECT {} FROM policy_sets p JOIN active_set a ON a.version = p.version WHERE a.id = 1",
        SET_COLUMNS.split(", ").map(|c| format!("p.{c}")).collect::<Vec<_>>().join(", ")
    )
}

async fn active_in(tx: &mut Tx) -> Result<Option<SetVersion>, StorageError> {
    tx.query_opt(&active_sql(), &[]).await?.as_ref().map(set_from_row).transpose()
}

/// Inserts the next version with `content` and makes it active, in `tx`.
async fn insert_and_activate(
    tx: &mut Tx,
    content: &Content,
    actor: &str,
    proposal: Option<&str>,
    note: Option<&str>,
    now: i64,
) -> Result<SetVersion, StorageError> {
    let next = tx
        .query_opt("SELECT MAX(version) FROM policy_sets", &[])
        .await?
        .and_then(|r| r.get_opt_i64(0).ok().flatten())
        .unwrap_or(0)
        + 1;
    let sha = content.sha256();
    tx.execute(
        &format!("INSERT INTO policy_sets ({SET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
        &params![
            next,
            content.policies.as_str(),
            content.schema.as_str(),
            content.entities.as_str(),
            sha.as_str(),
            now,
            actor,
            proposal,
            note
        ],
    )
    .await?;
    tx.execute(
        "INSERT INTO active_set (id, version, activated_at, activated_by) VALUES (1, $1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET version = excluded.version, activated_at = excluded.activated_at, \
         activated_by = excluded.activated_by",
        &params![next, now, actor],
    )
    .await?;
    audit(
        tx,
        "consensus.policy_set.activated",
        &format!("policy_set:{next}"),
        actor,
        serde_json::json!({ "version": next, "sha256": sha, "proposal": proposal, "note": note }),
    )
    .await?;
    Ok(SetVersion {
        version: next,
        content: content.clone(),
        sha256: sha,
        created_at: now,
        created_by: actor.to_string(),
        proposal_id: proposal.map(str::to_owned),
        note: note.map(str::to_owned),
    })
}

/// The service's tables.
pub struct Store<'a>(pub &'a Db);

impl Store<'_> {
    /// The active version; on a fresh store, `genesis` becomes version 1 and active.
    pub async fn active_or_init(&self, genesis: &Content, now: i64) -> Result<SetVersion, StorageError> {
        let mut tx = self.0.begin().await?;
        if let Some(v) = active_in(&mut tx).await? {
            return Ok(v);
        }
        let v = insert_and_activate(&mut tx, genesis, "system", None, Some("genesis policy set"), now).await?;
        tx.commit().await?;
        Ok(v)
    }

    /// The active version as stored.
    pub async fn active(&self) -> Result<Option<SetVersion>, StorageError> {
        self.0.query_opt(&active_sql(), &[]).await?.as_ref().map(set_from_row).transpose()
    }

    pub async fn version(&self, version: i64) -> Result<Option<SetVersion>, StorageError> {
        let sql = format!("SELECT {SET_COLUMNS} FROM policy_sets WHERE version = $1");
        self.0.query_opt(&sql, &params![version]).await?.as_ref().map(set_from_row).transpose()
    }

    /// Every version, oldest first.
    pub async fn versions(&self) -> Result<Vec<SetVersion>, StorageError> {
        let sql = format!("SELECT {SET_COLUMNS} FROM policy_sets ORDER BY version");
        self.0.query(&sql, &[]).await?.iter().map(set_from_row).collect()
    }
}

/// One stored proposal.
#[derive(Debug, Clone)]
pub struct Proposal {
    pub id: String,
    pub title: String,
    pub rationale: String,
    pub proposer: String,
    pub proposer_name: Option<String>,
    /// The active version when it was proposed; activation requires it still to be active.
    pub base_version: i64,
    pub content: Content,
    /// For a rollback: the version whose content this proposal restores.
    pub rollback_to: Option<i64>,
    pub status: Status,
    /// The verification report (JSON), once verified.
    pub verification: Option<serde_json::Value>,
    pub created_at: i64,
    pub updated_at: i64,
    pub opened_at: Option<i64>,
    pub deadline: Option<i64>,
    pub closed_at: Option<i64>,
    /// The tally at close, or why it was closed without one (`{"reason": …}`).
    pub outcome: Option<serde_json::Value>,
    pub activated_version: Option<i64>,
}

const PROPOSAL_COLUMNS: &str = "id, title, rationale, proposer, proposer_name, base_version, policies, schema_text, \
     entities, rollback_to, status, verification, created_at, updated_at, opened_at, deadline, closed_at, outcome, \
     activated_version";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Database(format!("stored {what} cannot be read: {e}"))
}

fn opt_json(row: &Row, idx: usize, what: &str) -> Result<Option<serde_json::Value>, StorageError> {
    row.get_opt_str(idx)?.map(serde_json::from_str).transpose().map_err(|e| corrupt(what, e))
}

fn proposal_from_row(row: &Row) -> Result<Proposal, StorageError> {
    let status = row.get_str(10)?;
    Ok(Proposal {
        id: row.get_string(0)?,
        title: row.get_string(1)?,
        rationale: row.get_string(2)?,
        proposer: row.get_string(3)?,
        proposer_name: row.get_opt_str(4)?.map(str::to_owned),
        base_version: row.get_i64(5)?,
        content: Content { policies: row.get_string(6)?, schema: row.get_string(7)?, entities: row.get_string(8)? },
        rollback_to: row.get_opt_i64(9)?,
        status: Status::parse(status).ok_or_else(|| corrupt("proposal status", status))?,
        verification: opt_json(row, 11, "verification report")?,
        created_at: row.get_i64(12)?,
        updated_at: row.get_i64(13)?,
        opened_at: row.get_opt_i64(14)?,
        deadline: row.get_opt_i64(15)?,
        closed_at: row.get_opt_i64(16)?,
        outcome: opt_json(row, 17, "proposal outcome")?,
        activated_version: row.get_opt_i64(18)?,
    })
}

async fn proposal_in(tx: &mut Tx, id: &str) -> Result<Proposal, ChangeError> {
    let sql = format!("SELECT {PROPOSAL_COLUMNS} FROM proposals WHERE id = $1");
    match tx.query_opt(&sql, &params![id]).await? {
        Some(row) => Ok(proposal_from_row(&row)?),
        None => Err(ChangeError::NotFound(id.to_string())),
    }
}

/// The proposals' ballots.
const BALLOTS: Ballots = Ballots { items: "proposals", item_column: "proposal_id" };

/// Moves a proposal from one of `from` to `to` (setting `closed_at` too when `close`), claiming the
/// row first; a proposal in another status is a conflict naming `doing`.
async fn transition(
    tx: &mut Tx,
    id: &str,
    from: &[Status],
    to: Status,
    now: i64,
    doing: &str,
) -> Result<Proposal, ChangeError> {
    let list = from.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ");
    let n = tx
        .execute(
            &format!("UPDATE proposals SET status = $2, updated_at = $3 WHERE id = $1 AND status IN ({list})"),
            &params![id, to.as_str(), now],
        )
        .await?;
    let p = proposal_in(tx, id).await?;
    if n == 0 {
        let allowed = from.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" or ");
        return Err(ChangeError::Conflict(format!(
            "proposal {id} is {}; only a proposal that is {allowed} can be {doing}",
            p.status.as_str()
        )));
    }
    Ok(p)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StorageError> {
    serde_json::to_string(v).map_err(|e| StorageError::Database(format!("cannot serialise: {e}")))
}

/// Why a state change was refused (the HTTP layer maps these to 404/409).
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no proposal with id {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// How a vote closes: the tally's inputs, and what activation requires.
#[derive(Debug, Clone)]
pub struct CloseInput<'a> {
    /// Enabled members of the eligible role now.
    pub eligible: u64,
    pub rules: &'a VotingRules,
    /// The active constitution's version now; a proposal verified against another expires.
    pub constitution_version: i64,
    pub actor: &'a str,
    pub now: i64,
}

/// What closing a proposal did.
#[derive(Debug, Clone)]
pub struct Closed {
    pub proposal: Proposal,
    /// The new active version, when the proposal was approved and activated.
    pub activated: Option<SetVersion>,
}

impl Store<'_> {
    /// Stores a new proposal (status `verifying`).
    pub async fn insert_proposal(&self, p: &Proposal) -> Result<(), StorageError> {
        let mut tx = self.0.begin().await?;
        tx.execute(
            &format!(
                "INSERT INTO proposals ({PROPOSAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, \
                 $12, $13, NULL, NULL, NULL, NULL, NULL)"
            ),
            &params![
                p.id.as_str(),
                p.title.as_str(),
                p.rationale.as_str(),
                p.proposer.as_str(),
                p.proposer_name.as_deref(),
                p.base_version,
                p.content.policies.as_str(),
                p.content.schema.as_str(),
                p.content.entities.as_str(),
                p.rollback_to,
                p.status.as_str(),
                p.created_at,
                p.updated_at
            ],
        )
        .await?;
        // audit: consensus.proposal_submitted
        audit(
            &mut tx,
            "consensus.proposal_submitted",
            &format!("proposal:{}", p.id),
            &p.proposer,
            serde_json::json!({
                "title": p.title,
                "base_version": p.base_version,
                "sha256": p.content.sha256(),
                "rollback_to": p.rollback_to,
            }),
        )
        .await?;
        tx.commit().await
    }

    pub async fn proposal(&self, id: &str) -> Result<Option<Proposal>, StorageError> {
        let sql = format!("SELECT {PROPOSAL_COLUMNS} FROM proposals WHERE id = $1");
        self.0.query_opt(&sql, &params![id]).await?.as_ref().map(proposal_from_row).transpose()
    }

    /// Proposals, newest first, optionally of one status.
    pub async fn proposals(&self, status: Option<Status>, limit: i64) -> Result<Vec<Proposal>, StorageError> {
        let rows = match status {
            Some(s) => {
                let sql = format!(
                    "SELECT {PROPOSAL_COLUMNS} FROM proposals WHERE status = $1 ORDER BY created_at DESC, id DESC \
                     LIMIT $2"
                );
                self.0.query(&sql, &params![s.as_str(), limit]).await?
            }
            None => {
                let sql =
                    format!("SELECT {PROPOSAL_COLUMNS} FROM proposals ORDER BY created_at DESC, id DESC LIMIT $1");
                self.0.query(&sql, &params![limit]).await?
            }
        };
        rows.iter().map(proposal_from_row).collect()
    }

    /// Ids of proposals waiting for verification, oldest first.
    pub async fn verifying(&self) -> Result<Vec<String>, StorageError> {
        let rows =
            self.0.query("SELECT id FROM proposals WHERE status = 'verifying' ORDER BY created_at, id", &[]).await?;
        rows.iter().map(|r| r.get_string(0)).collect()
    }

    /// Ids of proposals still voting whose deadline has passed.
    pub async fn due(&self, now: i64) -> Result<Vec<String>, StorageError> {
        let rows = self
            .0
            .query(
                "SELECT id FROM proposals WHERE status = 'voting' AND deadline <= $1 ORDER BY deadline",
                &params![now],
            )
            .await?;
        rows.iter().map(|r| r.get_string(0)).collect()
    }

    pub async fn counts(&self, id: &str) -> Result<VoteCounts, StorageError> {
        BALLOTS.counts(self.0, id).await
    }

    /// Records the verification of a proposal still `verifying`: `deadline` Some → voting opens
    /// until then; None → failed_verification with `failures`.
    pub async fn record_verification(
        &self,
        id: &str,
        report: &serde_json::Value,
        failures: &[String],
        deadline: Option<i64>,
        now: i64,
    ) -> Result<Proposal, ChangeError> {
        let mut tx = self.0.begin().await?;
        let to = if deadline.is_some() { Status::Voting } else { Status::FailedVerification };
        transition(&mut tx, id, &[Status::Verifying], to, now, "verified").await?;
        let outcome =
            if failures.is_empty() { None } else { Some(to_json(&serde_json::json!({ "failures": failures }))?) };
        let closed_at = deadline.is_none().then_some(now);
        let opened_at = deadline.map(|_| now);
        tx.execute(
            "UPDATE proposals SET verification = $2, outcome = $3, opened_at = $4, deadline = $5, closed_at = $6 \
             WHERE id = $1",
            &params![id, to_json(report)?, outcome, opened_at, deadline, closed_at],
        )
        .await?;
        // audit: consensus.proposal_verified
        audit(
            &mut tx,
            "consensus.proposal_verified",
            &format!("proposal:{id}"),
            "system",
            serde_json::json!({
                "status": to.as_str(),
                "summary": report.get("summary"),
                "constitution": report.get("constitution"),
                "failures": failures,
                "deadline": deadline,
            }),
        )
        .await?;
        let p = proposal_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(p)
    }

    /// Records a vote while voting is open; a second vote by the same member is a conflict.
    pub async fn vote(
        &self,
        id: &str,
        voter: &str,
        voter_name: Option<&str>,
        choice: Choice,
        now: i64,
    ) -> Result<VoteCounts, ChangeError> {
        let mut tx = self.0.begin().await?;
        let counts = match BALLOTS.cast(&mut tx, id, voter, voter_name, choice, now).await {
            Ok(counts) => counts,
            Err(CastError::NotOpen) => {
                let p = proposal_in(&mut tx, id).await?;
                return Err(ChangeError::Conflict(if p.status == Status::Voting {
                    format!("voting on proposal {id} ended at its deadline; it is being closed")
                } else {
                    format!("proposal {id} is {}; votes are taken only while it is voting", p.status.as_str())
                }));
            }
            Err(CastError::AlreadyVoted) => {
                return Err(ChangeError::Conflict(format!(
                    "you have already voted on proposal {id}; a vote cannot be changed"
                )));
            }
            Err(CastError::Storage(e)) => return Err(e.into()),
        };
        // audit: consensus.vote_cast
        audit(
            &mut tx,
            "consensus.vote_cast",
            &format!("proposal:{id}"),
            voter,
            serde_json::json!({ "voter": voter, "choice": choice.as_str() }),
        )
        .await?;
        tx.commit().await?;
        Ok(counts)
    }

    /// verifying | voting → withdrawn.
    pub async fn withdraw(&self, id: &str, actor: &str, now: i64) -> Result<Proposal, ChangeError> {
        let mut tx = self.0.begin().await?;
        transition(&mut tx, id, &[Status::Verifying, Status::Voting], Status::Withdrawn, now, "withdrawn").await?;
        tx.execute("UPDATE proposals SET closed_at = $2 WHERE id = $1", &params![id, now]).await?;
        // audit: consensus.proposal_withdrawn
        audit(&mut tx, "consensus.proposal_withdrawn", &format!("proposal:{id}"), actor, serde_json::json!({})).await?;
        let p = proposal_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(p)
    }

    /// Closes a proposal in voting. In one transaction: the tally, and either activation of its
    /// content as the next version (approved, its base still active, verified against the
    /// constitution in force), or rejected, or expired (the active set or the constitution
    /// changed since).
    pub async fn close(&self, id: &str, input: CloseInput<'_>) -> Result<Closed, ChangeError> {
        let mut tx = self.0.begin().await?;
        let p = transition(&mut tx, id, &[Status::Voting], Status::Voting, input.now, "closed").await?;
        let active = active_in(&mut tx).await?.ok_or_else(|| StorageError::Database("no active policy set".into()))?;
        let verified_against = p
            .verification
            .as_ref()
            .and_then(|r| r.pointer("/constitution/version"))
            .and_then(serde_json::Value::as_i64);
        let counts = BALLOTS.counts_in(&mut tx, id).await?;
        let tally = counts.tally(input.eligible, input.rules);
        let mut activated = None;
        let (status, outcome) = if active.version != p.base_version {
            let reason = format!(
                "policy set {} was activated after this proposal was written against version {}; propose it again",
                active.version, p.base_version
            );
            (Status::Expired, serde_json::json!({ "tally": tally, "reason": reason }))
        } else if verified_against != Some(input.constitution_version) {
            let reason = format!(
                "the constitution changed since verification (verified against version {}, version {} is in force); \
                 propose it again",
                verified_against.map_or_else(|| "none".to_string(), |v| v.to_string()),
                input.constitution_version
            );
            (Status::Expired, serde_json::json!({ "tally": tally, "reason": reason }))
        } else if tally.passes() {
            let note = match p.rollback_to {
                Some(v) => format!("rollback to version {v}: {}", p.title),
                None => p.title.clone(),
            };
            let v = insert_and_activate(&mut tx, &p.content, input.actor, Some(id), Some(&note), input.now).await?;
            activated = Some(v);
            (Status::Activated, serde_json::json!({ "tally": tally }))
        } else {
            (Status::Rejected, serde_json::json!({ "tally": tally }))
        };
        tx.execute(
            "UPDATE proposals SET status = $2, closed_at = $3, updated_at = $3, outcome = $4, activated_version = $5 \
             WHERE id = $1",
            &params![
                id,
                status.as_str(),
                input.now,
                to_json(&outcome)?,
                activated.as_ref().map(|v: &SetVersion| v.version)
            ],
        )
        .await?;
        // audit: consensus.proposal_closed
        audit(
            &mut tx,
            "consensus.proposal_closed",
            &format!("proposal:{id}"),
            input.actor,
            serde_json::json!({ "status": status.as_str(), "outcome": outcome, "activated_version": activated.as_ref().map(|v| v.version) }),
        )
        .await?;
        let proposal = proposal_in(&mut tx, id).await?;
        tx.commit().await?;
        Ok(Closed { proposal, activated })
    }

    /// An admin's emergency activation of `content` without a vote, recorded with its reason and
    /// verification summary.
    pub async fn break_glass(
        &self,
        content: &Content,
        actor: &str,
        reason: &str,
        report: &serde_json::Value,
        now: i64,
    ) -> Result<SetVersion, StorageError> {
        let mut tx = self.0.begin().await?;
        let before = active_in(&mut tx).await?.map(|v| v.version);
        let note = format!("break-glass: {reason}");
        let v = insert_and_activate(&mut tx, content, actor, None, Some(&note), now).await?;
        // audit: consensus.break_glass
        audit(
            &mut tx,
            "consensus.break_glass",
            &format!("policy_set:{}", v.version),
            actor,
            serde_json::json!({
                "reason": reason,
                "previous_version": before,
                "version": v.version,
                "sha256": v.sha256,
                "verification": { "summary": report.get("summary"), "constitution": report.get("constitution") },
            }),
        )
        .await?;
        tx.commit().await?;
        Ok(v)
    }
}
