//! The consensus service's storage: immutable policy-set versions and the active pointer. Plain SQL through the kernel's storage interface; runs on SQLite
//! and PostgreSQL. Every state change records its audit event in the same transaction.

use sha2::{Digest, Sha256};

use crate::kernel::audit;
use crate::kernel::service::ServiceName;
use crate::kernel::storage::{Db, Row, StorageError, Tx};
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

async fn active_in(tx: &mut Tx) -> Result<Option<SetVersion>, StorageError> {
    let sql = format!(
        "SELECT {} FROM policy_sets p JOIN active_set a ON a.version = p.version WHERE a.id = 1",
        SET_COLUMNS.split(", ").map(|c| format!("p.{c}")).collect::<Vec<_>>().join(", ")
    );
    tx.query_opt(&sql, &[]).await?.as_ref().map(set_from_row).transpose()
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
