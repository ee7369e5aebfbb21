//! The auth service's storage: users, machine clients, refresh-token families and revoked access
//! tokens. Plain SQL through the kernel's storage interface; runs on SQLite and PostgreSQL.
//!
//! Reads take the [`Db`] (`Users(&db).by_id(…)`). Writes are associated functions that take an
//! open transaction (`Users::update(&mut tx, …)`), so the caller records the change's audit event
//! in the same transaction before committing: a change is never stored without its event.

use crate::kernel::auth::Role;
use crate::kernel::storage::{Db, Row, StorageError, Tx};
use crate::params;

/// A human account.
#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub username: String,
    pub password_hash: String,
    pub roles: Vec<Role>,
    pub disabled: bool,
    pub failed_logins: i64,
    pub locked_until: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A machine client (an agent or a service) using client_credentials.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub secret_hash: String,
    pub roles: Vec<Role>,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn roles_to_text(roles: &[Role]) -> String {
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(",")
}

fn roles_from_text(text: &str) -> Vec<Role> {
    text.split(',').filter_map(|r| r.parse().ok()).collect()
}

const USER_COLUMNS: &str =
    "id, username, password_hash, roles, disabled, failed_logins, locked_until, created_at, updated_at";

fn user_from_row(row: &Row) -> Result<User, StorageError> {
    Ok(User {
        id: row.get_string(0)?,
        username: row.get_string(1)?,
        password_hash: row.get_string(2)?,
        roles: roles_from_text(row.get_str(3)?),
        disabled: row.get_bool(4)?,
        failed_logins: row.get_i64(5)?,
        locked_until: row.get_i64(6)?,
        created_at: row.get_i64(7)?,
        updated_at: row.get_i64(8)?,
    })
}

const CLIENT_COLUMNS: &str = "id, name, secret_hash, roles, disabled, created_at, updated_at";

fn client_from_row(row: &Row) -> Result<Client, StorageError> {
    Ok(Client {
        id: row.get_string(0)?,
        name: row.get_string(1)?,
        secret_hash: row.get_string(2)?,
        roles: roles_from_text(row.get_str(3)?),
        disabled: row.get_bool(4)?,
        created_at: row.get_i64(5)?,
        updated_at: row.get_i64(6)?,
    })
}

/// Users.
pub struct Users<'a>(pub &'a Db);

impl Users<'_> {
    /// Inserts a user; `Ok(false)` if the name is taken and `if_absent` is set.
    pub async fn insert(tx: &mut Tx, user: &User, if_absent: bool) -> Result<bool, StorageError> {
        let sql = format!(
            "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9){}",
            if if_absent { " ON CONFLICT (username) DO NOTHING" } else { "" }
        );
        let n = tx
            .execute(
                &sql,
                &params![
                    user.id.as_str(),
                    user.username.as_str(),
                    user.password_hash.as_str(),
                    roles_to_text(&user.roles),
                    user.disabled,
                    user.failed_logins,
                    user.locked_until,
                    user.created_at,
                    user.updated_at
                ],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn by_id(&self, id: &str) -> Result<Option<User>, StorageError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        self.0.query_opt(&sql, &params![id]).await?.as_ref().map(user_from_row).transpose()
    }

    pub async fn by_name(&self, username: &str) -> Result<Option<User>, StorageError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
        self.0.query_opt(&sql, &params![username]).await?.as_ref().map(user_from_row).transpose()
    }

    pub async fn list(&self, limit: i64, offset: i64) -> Result<Vec<User>, StorageError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY username LIMIT $1 OFFSET $2");
        self.0.query(&sql, &params![limit, offset]).await?.iter().map(user_from_row).collect()
    }

    pub async fn count(&self) -> Result<i64, StorageError> {
        self.0.query_opt("SELECT COUNT(*) FROM users", &[]).await?.map_or(Ok(0), |r| r.get_i64(0))
    }

    /// Enabled admins other than `except`, read inside the transaction that is about to take
    /// admin rights away, so two such changes cannot both pass the check.
    pub async fn other_admins(tx: &mut Tx, except: &str) -> Result<i64, StorageError> {
        let rows = tx.query("SELECT roles FROM users WHERE disabled = 0 AND id <> $1", &params![except]).await?;
        let mut n = 0;
        for row in &rows {
            if roles_from_text(row.get_str(0)?).contains(&Role::Admin) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Enabled users who hold `role` (the electorate of a vote).
    pub async fn count_with_role(&self, role: &str) -> Result<u64, StorageError> {
        let rows = self.0.query("SELECT roles FROM users WHERE disabled = 0", &[]).await?;
        let mut n = 0;
        for row in &rows {
            if row.get_str(0)?.split(',').any(|r| r == role) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Writes every mutable field of `user`.
    pub async fn update(tx: &mut Tx, user: &User) -> Result<bool, StorageError> {
        let n = tx
            .execute(
                "UPDATE users SET password_hash = $2, roles = $3, disabled = $4, failed_logins = $5, \
                 locked_until = $6, updated_at = $7 WHERE id = $1",
                &params![
                    user.id.as_str(),
                    user.password_hash.as_str(),
                    roles_to_text(&user.roles),
                    user.disabled,
                    user.failed_logins,
                    user.locked_until,
                    user.updated_at
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Deletes a user and their refresh tokens.
    pub async fn delete(tx: &mut Tx, id: &str) -> Result<bool, StorageError> {
        tx.execute("DELETE FROM refresh_tokens WHERE user_id = $1", &params![id]).await?;
        Ok(tx.execute("DELETE FROM users WHERE id = $1", &params![id]).await? == 1)
    }

    /// Counts a failed login; locks the account once `threshold` failures are reached. Returns the
    /// time the account is locked until (0 if not locked).
    pub async fn record_failure(
        tx: &mut Tx,
        id: &str,
        threshold: i64,
        lock_secs: i64,
        now: i64,
    ) -> Result<i64, StorageError> {
        let row = tx
            .query_opt(
                "UPDATE users SET failed_logins = failed_logins + 1, updated_at = $2 WHERE id = $1 RETURNING failed_logins",
                &params![id, now],
            )
            .await?;
        let failures = row.map_or(Ok(0), |r| r.get_i64(0))?;
        if failures >= threshold {
            let until = now + lock_secs;
            tx.execute(
                "UPDATE users SET failed_logins = 0, locked_until = $2, updated_at = $3 WHERE id = $1",
                &params![id, until, now],
            )
            .await?;
            return Ok(until);
        }
        Ok(0)
    }

    pub async fn record_success(tx: &mut Tx, id: &str) -> Result<(), StorageError> {
        tx.execute("UPDATE users SET failed_logins = 0 WHERE id = $1 AND failed_logins <> 0", &params![id]).await?;
        Ok(())
    }
}

/// Machine clients.
pub struct Clients<'a>(pub &'a Db);

impl Clients<'_> {
    pub async fn insert(tx: &mut Tx, client: &Client) -> Result<(), StorageError> {
        let sql = format!("INSERT INTO clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)");
        tx.execute(
            &sql,
            &params![
                client.id.as_str(),
                client.name.as_str(),
                client.secret_hash.as_str(),
                roles_to_text(&client.roles),
                client.disabled,
                client.created_at,
                client.updated_at
            ],
        )
        .await?;
        Ok(())
    }

    pub async fn by_id(&self, id: &str) -> Result<Option<Client>, StorageError> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE id = $1");
        self.0.query_opt(&sql, &params![id]).await?.as_ref().map(client_from_row).transpose()
    }

    pub async fn list(&self, limit: i64, offset: i64) -> Result<Vec<Client>, StorageError> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY name, id LIMIT $1 OFFSET $2");
        self.0.query(&sql, &params![limit, offset]).await?.iter().map(client_from_row).collect()
    }

    pub async fn update(tx: &mut Tx, client: &Client) -> Result<bool, StorageError> {
        let n = tx
            .execute(
                "UPDATE clients SET name = $2, secret_hash = $3, roles = $4, disabled = $5, updated_at = $6 WHERE id = $1",
                &params![
                    client.id.as_str(),
                    client.name.as_str(),
                    client.secret_hash.as_str(),
                    roles_to_text(&client.roles),
                    client.disabled,
                    client.updated_at
                ],
            )
            .await?;
        Ok(n == 1)
    }

    pub async fn delete(tx: &mut Tx, id: &str) -> Result<bool, StorageError> {
        Ok(tx.execute("DELETE FROM clients WHERE id = $1", &params![id]).await? == 1)
    }
}

/// What presenting a refresh token did.
#[derive(Debug, PartialEq, Eq)]
pub enum RefreshUse {
    /// Valid and now used: rotate within this family.
    Rotated { family_id: String, user_id: String },
    /// Already used once: someone replayed it. The family has been revoked.
    Reused { family_id: String },
    /// Unknown, expired or revoked.
    Invalid,
}

/// Refresh-token families.
pub struct RefreshTokens<'a>(pub &'a Db);

impl RefreshTokens<'_> {
    pub async fn insert(
        tx: &mut Tx,
        token_hash: &str,
        family_id: &str,
        user_id: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StorageError> {
        tx.execute(
                "INSERT INTO refresh_tokens (token_hash, family_id, user_id, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
                &params![token_hash, family_id, user_id, expires_at, now],
            )
            .await?;
        Ok(())
    }

    /// Uses a refresh token exactly once. Reuse of a used token revokes its whole family.
    pub async fn use_token(tx: &mut Tx, token_hash: &str, now: i64) -> Result<RefreshUse, StorageError> {
        let taken = tx
            .query_opt(
                "UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL \
                 AND revoked_at IS NULL AND expires_at > $2 RETURNING family_id, user_id",
                &params![token_hash, now],
            )
            .await?;
        if let Some(row) = taken {
            return Ok(RefreshUse::Rotated { family_id: row.get_string(0)?, user_id: row.get_string(1)? });
        }
        let existing = tx
            .query_opt("SELECT family_id, used_at FROM refresh_tokens WHERE token_hash = $1", &params![token_hash])
            .await?;
        match existing {
            Some(row) if row.get_opt_i64(1)?.is_some() => {
                let family_id = row.get_string(0)?;
                Self::revoke_family(tx, &family_id, now).await?;
                Ok(RefreshUse::Reused { family_id })
            }
            _ => Ok(RefreshUse::Invalid),
        }
    }

    pub async fn revoke_family(tx: &mut Tx, family_id: &str, now: i64) -> Result<u64, StorageError> {
        tx.execute(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
            &params![family_id, now],
        )
        .await
    }

    /// (family, user id) of a token, if the token exists.
    pub async fn family_of(&self, token_hash: &str) -> Result<Option<(String, String)>, StorageError> {
        self.0
            .query_opt("SELECT family_id, user_id FROM refresh_tokens WHERE token_hash = $1", &params![token_hash])
            .await?
            .map(|r| Ok((r.get_string(0)?, r.get_string(1)?)))
            .transpose()
    }

    /// (user id, expires at) of a token that is still usable.
    pub async fn active(&self, token_hash: &str, now: i64) -> Result<Option<(String, i64)>, StorageError> {
        let row = self
            .0
            .query_opt(
                "SELECT user_id, expires_at FROM refresh_tokens WHERE token_hash = $1 AND used_at IS NULL \
                 AND revoked_at IS NULL AND expires_at > $2",
                &params![token_hash, now],
            )
            .await?;
        row.map(|r| Ok((r.get_string(0)?, r.get_i64(1)?))).transpose()
    }

    /// Revokes every refresh token of a user (password change, disable, delete).
    pub async fn revoke_user(tx: &mut Tx, user_id: &str, now: i64) -> Result<u64, StorageError> {
        tx.execute(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
            &params![user_id, now],
        )
        .await
    }
}

/// Revoked access tokens.
pub struct Revocations<'a>(pub &'a Db);

impl Revocations<'_> {
    pub async fn insert(tx: &mut Tx, jti: &str, expires_at: i64, now: i64) -> Result<(), StorageError> {
        tx.execute(
            "INSERT INTO revoked_tokens (jti, expires_at, revoked_at) VALUES ($1, $2, $3) ON CONFLICT (jti) DO NOTHING",
            &params![jti, expires_at, now],
        )
        .await?;
        Ok(())
    }

    /// Revocations that still matter (the token has not expired yet); drops the others.
    pub async fn live(&self, now: i64) -> Result<Vec<(String, u64)>, StorageError> {
        self.0.execute("DELETE FROM revoked_tokens WHERE expires_at < $1", &params![now - 60]).await?;
        let rows = self.0.query("SELECT jti, expires_at FROM revoked_tokens", &[]).await?;
        rows.iter().map(|r| Ok((r.get_string(0)?, u64::try_from(r.get_i64(1)?).unwrap_or(0)))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::storage::StorageConfig;

    fn user(name: &str, roles: Vec<Role>, disabled: bool) -> User {
        User {
            id: name.to_string(),
            username: name.to_string(),
            password_hash: String::new(),
            roles,
            disabled,
            failed_logins: 0,
            locked_until: 0,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[tokio::test]
    async fn count_with_role_counts_enabled_holders_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open("auth", &StorageConfig::Sqlite { data_dir: dir.path().to_path_buf() }).await.expect("open");
        let migrations = crate::embedded::migrations(crate::kernel::service::ServiceName::Auth).expect("migrations");
        db.migrate(&migrations).await.expect("migrate");
        let users = Users(&db);
        let mut tx = db.begin().await.expect("begin");
        for u in [
            user("a", vec![Role::Council], false),
            user("b", vec![Role::Admin, Role::Council], false),
            user("c", vec![Role::Council], true),
            user("d", vec![Role::Steward], false),
        ] {
            assert!(Users::insert(&mut tx, &u, false).await.expect("insert"));
        }
        tx.commit().await.expect("commit");
        assert_eq!(users.count_with_role("council").await.expect("count"), 2);
        assert_eq!(users.count_with_role("steward").await.expect("count"), 1);
        assert_eq!(users.count_with_role("auditor").await.expect("count"), 0);
        assert_eq!(users.count_with_role("counc").await.expect("count"), 0);
    }
}

/// How long `/users/me` may serve an account view without reading storage again.
pub const ACCOUNT_VIEW_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// Recently served account views (the JSON of `/users/me`), so the most frequent authenticated
/// read does not touch storage on every request. An entry lives [`ACCOUNT_VIEW_TTL`] and is dropped
/// at once when this process changes the account; a change made by another replica shows within
/// the TTL. Bounded: when full it starts over.
#[derive(Default)]
pub struct AccountViews {
    entries: std::sync::RwLock<std::collections::HashMap<String, (std::time::Instant, axum::body::Bytes)>>,
}

const ACCOUNT_VIEWS_MAX: usize = 10_000;

impl AccountViews {
    pub fn get(&self, id: &str) -> Option<axum::body::Bytes> {
        let entries = self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        entries.get(id).filter(|(at, _)| at.elapsed() < ACCOUNT_VIEW_TTL).map(|(_, body)| body.clone())
    }

    pub fn put(&self, id: &str, body: axum::body::Bytes) {
        let mut entries = self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if entries.len() >= ACCOUNT_VIEWS_MAX {
            entries.clear();
        }
        entries.insert(id.to_string(), (std::time::Instant::now(), body));
    }

    pub fn forget(&self, id: &str) {
        self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(id);
    }
}
