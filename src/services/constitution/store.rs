//! The constitution service's storage: versions, amendments and votes. Plain SQL through the
//! kernel's storage interface; runs on SQLite and PostgreSQL.
//!
//! Every state change runs in one transaction and records its audit event in the outbox inside it
//! ([`audit`]), so the change and its event are stored together or not at all.

use crate::kernel::audit;
use crate::kernel::constitution::Constitution;
use crate::kernel::service::ServiceName;
use crate::kernel::storage::{Db, Row, StorageError, Tx};
use crate::params;

use super::model::{Change, Status};
use crate::kernel::voting::{Ballots, CastError, Choice, Tally, VoteCounts};

/// The amendments' ballots.
const BALLOTS: Ballots = Ballots { items: "amendments", item_column: "amendment_id" };

/// One stored version.
#[derive(Debug, Clone)]
pub struct Version {
    pub number: i64,
    pub document: Constitution,
    pub sha256: String,
    pub hash: String,
    pub created_at: i64,
    pub amendment_id: Option<String>,
}

/// One stored amendment.
#[derive(Debug, Clone)]
pub struct Amendment {
    pub id: String,
    pub title: String,
    pub rationale: String,
    pub changes: Vec<Change>,
    pub proposer: String,
    pub proposer_name: Option<String>,
    pub base_version: i64,
    pub status: Status,
    pub created_at: i64,
    pub updated_at: i64,
    pub opened_at: Option<i64>,
    pub deadline: Option<i64>,
    pub closed_at: Option<i64>,
    pub outcome: Option<Tally>,
    pub ratified_version: Option<i64>,
}

/// Records an audit event in the outbox, inside the transaction of the state change it describes.
async fn audit(
    tx: &mut Tx,
    kind: &'static str,
    subject: &str,
    actor: &str,
    detail: serde_json::Value,
) -> Result<(), StorageError> {
    audit::record_new(tx, ServiceName::Constitution, kind, subject, actor, detail).await
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StorageError {
    StorageError::Database(format!("stored {what} cannot be read: {e}"))
}

const VERSION_COLUMNS: &str = "number, document, sha256, hash, created_at, amendment_id";

fn version_from_row(row: &Row) -> Result<Version, StorageError> {
    Ok(Version {
        number: row.get_i64(0)?,
        document: serde_json::from_str(row.get_str(1)?).map_err(|e| corrupt("constitution version", e))?,
        sha256: row.get_string(2)?,
        hash: row.get_string(3)?,
        created_at: row.get_i64(4)?,
        amendment_id: row.get_opt_str(5)?.map(str::to_owned),
    })
}

const AMENDMENT_COLUMNS: &str = "id, title, rationale, changes, proposer, proposer_name, base_version, status, \
     created_at, updated_at, opened_at, deadline, closed_at, outcome, ratified_version";

fn amendment_from_row(row: &Row) -> Result<Amendment, StorageError> {
    let status = row.get_str(7)?;
    Ok(Amendment {
        id: row.get_string(0)?,
        title: row.get_string(1)?,
        rationale: row.get_string(2)?,
        changes: serde_json::from_str(row.get_str(3)?).map_err(|e| corrupt("amendment changes", e))?,
        proposer: row.get_string(4)?,
        proposer_name: row.get_opt_str(5)?.map(str::to_owned),
        base_version: row.get_i64(6)?,
        status: Status::parse(status).ok_or_else(|| corrupt("amendment status", status))?,
        created_at: row.get_i64(8)?,
        updated_at: row.get_i64(9)?,
        opened_at: row.get_opt_i64(10)?,
        deadline: row.get_opt_i64(11)?,
        closed_at: row.get_opt_i64(12)?,
        outcome: row
            .get_opt_str(13)?
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| corrupt("amendment outcome", e))?,
        ratified_version: row.get_opt_i64(14)?,
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StorageError> {
    serde_json::to_string(v).map_err(|e| StorageError::Database(format!("cannot serialise: {e}")))
}

fn canonical_text(doc: &Constitution) -> Result<String, StorageError> {
    String::from_utf8(doc.canonical_bytes()).map_err(|e| corrupt("canonical document", e))
}

async fn insert_version(
    tx: &mut Tx,
    number: i64,
    doc: &Constitution,
    now: i64,
    amendment: Option<&str>,
) -> Result<Version, StorageError> {
    let digest = doc.digest();
    tx.execute(
        &format!("INSERT INTO versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        &params![number, canonical_text(doc)?, digest.sha256.as_str(), digest.short.as_str(), now, amendment],
    )
    .await?;
    Ok(Version {
        number,
        document: doc.clone(),
        sha256: digest.sha256,
        hash: digest.short,
        created_at: now,
        amendment_id: amendment.map(str::to_owned),
    })
}

async fn latest_in(tx: &mut Tx) -> Result<Option<Version>, StorageError> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM versions ORDER BY number DESC LIMIT 1");
    tx.query_opt(&sql, &[]).await?.as_ref().map(version_from_row).transpose()
}

/// Why a state change was refused (the HTTP layer maps these to 404/409).
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no amendment with id {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What closing an amendment did.
#[derive(Debug, Clone)]
pub struct Closed {
    pub amendment: Amendment,
    /// The new active version, when the amendment was ratified.
    pub version: Option<Version>,
}

/// The service's tables.
pub struct Store<'a>(pub &'a Db);

impl Store<'_> {
    /// The active (latest) version, if any is stored.
    pub async fn latest(&self) -> Result<Option<Version>, StorageError> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM versions ORDER BY number DESC LIMIT 1");
        self.0.query_opt(&sql, &[]).await?.as_ref().map(version_from_row).transpose()
    }

    /// The latest version, storing `genesis` as version 1 when there is none yet.
    pub async fn latest_or_init(&self, genesis: &Constitution, now: i64) -> Result<Version, StorageError> {
        let genesis = genesis.clone();
        self.0
            .transaction(|tx| {
                Box::pin(async move {
                    if let Some(v) = latest_in(tx).await? {
                        return Ok(v);
                    }
                    let v = insert_version(tx, 1, &genesis, now, None).await?;
                    // audit: constitution.version_created
                    audit(
                        tx,
                        "constitution.version_created",
                        "version:1",
                        "system",
                        serde_json::json!({ "hash": v.hash }),
                    )
                    .await?;
                    Ok(v)
                })
            })
            .await
    }

    pub async fn version(&self, number: i64) -> Result<Option<Version>, StorageError> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM versions WHERE number = $1");
        self.0.query_opt(&sql, &params![number]).await?.as_ref().map(version_from_row).transpose()
    }

    /// All versions, oldest first.
    pub async fn versions(&self) -> Result<Vec<Version>, StorageError> {
        let sql = format!("SELECT {VERSION_COLUMNS} FROM versions ORDER BY number");
        self.0.query(&sql, &[]).await?.iter().map(version_from_row).collect()
    }

    pub async fn insert_amendment(&self, a: &Amendment) -> Result<(), StorageError> {
        let a = a.clone();
        let changes = to_json(&a.changes)?;
        self.0
            .transaction(|tx| {
                Box::pin(async move {
                    tx.execute(
                        &format!(
                            "INSERT INTO amendments ({AMENDMENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
                             $10, NULL, NULL, NULL, NULL, NULL)"
                        ),
                        &params![
                            a.id.as_str(),
                            a.title.as_str(),
                            a.rationale.as_str(),
                            changes,
                            a.proposer.as_str(),
                            a.proposer_name.as_deref(),
                            a.base_version,
                            a.status.as_str(),
                            a.created_at,
                            a.updated_at
                        ],
                    )
                    .await?;
                    // audit: constitution.amendment_proposed
                    audit(
                        tx,
                        "constitution.amendment_proposed",
                        &format!("amendment:{}", a.id),
                        &a.proposer,
                        serde_json::json!({ "title": a.title }),
                    )
                    .await
                })
            })
            .await
    }

    pub async fn amendment(&self, id: &str) -> Result<Option<Amendment>, StorageError> {
        let sql = format!("SELECT {AMENDMENT_COLUMNS} FROM amendments WHERE id = $1");
        self.0.query_opt(&sql, &params![id]).await?.as_ref().map(amendment_from_row).transpose()
    }

    pub async fn amendments(&self, status: Option<Status>, limit: i64) -> Result<Vec<Amendment>, StorageError> {
        let rows = match status {
            Some(s) => {
                let sql = format!(
                    "SELECT {AMENDMENT_COLUMNS} FROM amendments WHERE status = $1 ORDER BY created_at DESC, id DESC \
                     LIMIT $2"
                );
                self.0.query(&sql, &params![s.as_str(), limit]).await?
            }
            None => {
                let sql =
                    format!("SELECT {AMENDMENT_COLUMNS} FROM amendments ORDER BY created_at DESC, id DESC LIMIT $1");
                self.0.query(&sql, &params![limit]).await?
            }
        };
        rows.iter().map(amendment_from_row).collect()
    }

    /// Ids of amendments still voting whose deadline has passed.
    pub async fn due(&self, now: i64) -> Result<Vec<String>, StorageError> {
        let rows = self
            .0
            .query(
                "SELECT id FROM amendments WHERE status = 'voting' AND deadline <= $1 ORDER BY deadline",
                &params![now],
            )
            .await?;
        rows.iter().map(|r| r.get_string(0)).collect()
    }

    pub async fn counts(&self, id: &str) -> Result<VoteCounts, StorageError> {
        BALLOTS.counts(self.0, id).await
    }

    /// draft → voting, with the deadline.
    pub async fn open(&self, id: &str, actor: &str, now: i64, deadline: i64) -> Result<Amendment, ChangeError> {
        let id = id.to_string();
        let actor = actor.to_string();
        self.0
            .transaction(|tx| {
                Box::pin(async move {
                    let n = tx
                        .execute(
                            "UPDATE amendments SET status = 'voting', opened_at = $2, deadline = $3, updated_at = $2 \
                             WHERE id = $1 AND status = 'draft'",
                            &params![id.as_str(), now, deadline],
                        )
                        .await?;
                    let a = amendment_in(tx, &id).await?;
                    if n == 0 {
                        return Err(ChangeError::Conflict(format!(
                            "amendment {id} is {}; only a draft can be opened for voting",
                            a.status.as_str()
                        )));
                    }
                    // audit: constitution.amendment_opened
                    audit(
                        tx,
                        "constitution.amendment_opened",
                        &format!("amendment:{id}"),
                        &actor,
                        serde_json::json!({ "deadline": deadline }),
                    )
                    .await?;
                    Ok(a)
                })
            })
            .await
    }

    /// draft | voting → withdrawn.
    pub async fn withdraw(&self, id: &str, actor: &str, now: i64) -> Result<Amendment, ChangeError> {
        let id = id.to_string();
        let actor = actor.to_string();
        self.0
            .transaction(|tx| {
                Box::pin(async move {
                    let n = tx
                        .execute(
                            "UPDATE amendments SET status = 'withdrawn', closed_at = $2, updated_at = $2 \
                             WHERE id = $1 AND status IN ('draft', 'voting')",
                            &params![id.as_str(), now],
                        )
                        .await?;
                    let a = amendment_in(tx, &id).await?;
                    if n == 0 {
                        return Err(ChangeError::Conflict(format!(
                            "amendment {id} is {}; only a draft or an amendment in voting can be withdrawn",
                            a.status.as_str()
                        )));
                    }
                    // audit: constitution.amendment_withdrawn
                    audit(
                        tx,
                        "constitution.amendment_withdrawn",
                        &format!("amendment:{id}"),
                        &actor,
                        serde_json::json!({}),
                    )
                    .await?;
                    Ok(a)
                })
            })
            .await
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
                let a = amendment_in(&mut tx, id).await?;
                return Err(ChangeError::Conflict(if a.status == Status::Voting {
                    format!("voting on amendment {id} ended at its deadline; it is being closed")
                } else {
                    format!("amendment {id} is {}; votes are taken only while it is voting", a.status.as_str())
                }));
            }
            Err(CastError::AlreadyVoted) => {
                return Err(ChangeError::Conflict(format!(
                    "you have already voted on amendment {id}; a vote cannot be changed"
                )));
            }
            Err(CastError::Storage(e)) => return Err(e.into()),
        };
        // audit: constitution.vote_cast
        audit(
            &mut tx,
            "constitution.vote_cast",
            &format!("amendment:{id}"),
            voter,
            serde_json::json!({ "voter": voter, "choice": choice.as_str() }),
        )
        .await?;
        tx.commit().await?;
        Ok(counts)
    }

    /// Closes an amendment in voting: tallies it against `eligible` members under the active
    /// version's rules and, atomically, marks it ratified and inserts the next version, or marks it
    /// rejected, or expired when the active version is no longer the one it was written against.
    pub async fn close(&self, id: &str, actor: &str, eligible: u64, now: i64) -> Result<Closed, ChangeError> {
        let id = id.to_string();
        let actor = actor.to_string();
        self.0
            .transaction(|tx| {
                Box::pin(async move {
                    // Claims the row (and its lock on PostgreSQL) before anything is counted.
                    let n = tx
                        .execute(
                            "UPDATE amendments SET updated_at = $2 WHERE id = $1 AND status = 'voting'",
                            &params![id.as_str(), now],
                        )
                        .await?;
                    let a = amendment_in(tx, &id).await?;
                    if n == 0 {
                        return Err(ChangeError::Conflict(format!(
                            "amendment {id} is {}; only an amendment in voting can be closed",
                            a.status.as_str()
                        )));
                    }
                    let active = latest_in(tx)
                        .await?
                        .ok_or_else(|| StorageError::Database("no constitution version is stored".into()))?;
                    let c = BALLOTS.counts_in(tx, &id).await?;
                    let tally = c.tally(eligible, &active.document.voting);
                    let mut version = None;
                    let status = if active.number != a.base_version {
                        Status::Expired
                    } else if tally.passes() {
                        match super::model::apply(&active.document, &a.changes) {
                            Ok(doc) => {
                                let v = insert_version(tx, active.number + 1, &doc, now, Some(&id)).await?;
                                version = Some(v);
                                Status::Ratified
                            }
                            // Validated at proposal against this same version, so this cannot
                            // happen unless validation rules changed in between: expire it.
                            Err(e) => {
                                tracing::warn!(amendment = %id, error = %e, "ratified changes no longer apply");
                                Status::Expired
                            }
                        }
                    } else {
                        Status::Rejected
                    };
                    tx.execute(
                        "UPDATE amendments SET status = $2, closed_at = $3, updated_at = $3, outcome = $4, \
                         ratified_version = $5 WHERE id = $1",
                        &params![
                            id.as_str(),
                            status.as_str(),
                            now,
                            to_json(&tally)?,
                            version.as_ref().map(|v: &Version| v.number)
                        ],
                    )
                    .await?;
                    // audit: constitution.amendment_closed
                    audit(
                        tx,
                        "constitution.amendment_closed",
                        &format!("amendment:{id}"),
                        &actor,
                        serde_json::json!({ "status": status.as_str(), "tally": tally }),
                    )
                    .await?;
                    if let Some(v) = &version {
                        // audit: constitution.ratified
                        audit(
                            tx,
                            "constitution.ratified",
                            &format!("version:{}", v.number),
                            &actor,
                            serde_json::json!({ "amendment": id, "hash": v.hash, "sha256": v.sha256 }),
                        )
                        .await?;
                    }
                    let amendment = amendment_in(tx, &id).await?;
                    Ok(Closed { amendment, version })
                })
            })
            .await
    }
}

async fn amendment_in(tx: &mut Tx, id: &str) -> Result<Amendment, ChangeError> {
    let sql = format!("SELECT {AMENDMENT_COLUMNS} FROM amendments WHERE id = $1");
    match tx.query_opt(&sql, &params![id]).await? {
        Some(row) => Ok(amendment_from_row(&row)?),
        None => Err(ChangeError::NotFound(id.to_string())),
    }
}
