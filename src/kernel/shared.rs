//! What replicas share through Redis (`redis_url`): the list of revoked access tokens, checked
//! by every process's token verifier. Without `redis_url` nothing here is used: revocations
//! reach the other processes through the bus and the auth service's stored list.
//!
//! Keys: `acgs:revoked:<jti>` = `1`, expiring when the token would have (`EXAT exp`).
//!
//! Failure: a verifier that cannot ask Redis whether a token is revoked refuses the token (503,
//! "cannot check revocations"), and the auth service refuses to revoke (503) rather than say a
//! token is revoked that other replicas would still accept. Both recover by themselves when
//! Redis is back: the connection is re-established on the next call.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::kernel::auth::SharedRevocations;

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
#[error("redis_url: {0}")]
pub struct SharedError(String);

/// A handle on the shared Redis; cheap to clone.
#[derive(Clone)]
pub struct SharedStore {
    client: redis::Client,
    /// Connected on first use, then kept (the manager reconnects by itself).
    conn: std::sync::Arc<tokio::sync::Mutex<Option<ConnectionManager>>>,
}

/// The longest a Redis call may take before it counts as failed.
const TIMEOUT: Duration = Duration::from_millis(500);

impl SharedStore {
    /// A store at `url` (`redis://host:6379/0`). Only the URL is checked here: the connection is
    /// made on first use, so a process starts while Redis is still coming up.
    pub fn open(url: &str) -> Result<SharedStore, SharedError> {
        let client = redis::Client::open(url).map_err(|e| SharedError(format!("cannot use {}: {e}", redact(url))))?;
        Ok(SharedStore { client, conn: Default::default() })
    }

    async fn connection(&self) -> Result<ConnectionManager, String> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(TIMEOUT * 2, ConnectionManager::new_with_config(self.client.clone(), config))
            .await
            .map_err(|_| "redis: connection timed out".to_string())?
            .map_err(|e| format!("redis: {e}"))?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let mut conn = self.connection().await?;
        tokio::time::timeout(TIMEOUT, cmd.query_async(&mut conn))
            .await
            .map_err(|_| "redis: no answer in time".to_string())?
            .map_err(|e| format!("redis: {e}"))
    }

    /// For `/ready`: whether Redis answers `PING`.
    pub async fn check(&self) -> Result<(), String> {
        let pong: String = self.query(&redis::cmd("PING")).await?;
        if pong == "PONG" { Ok(()) } else { Err(format!("redis: PING answered {pong:?}")) }
    }
}

fn revoked_key(jti: &str) -> String {
    format!("acgs:revoked:{jti}")
}

#[async_trait::async_trait]
impl SharedRevocations for SharedStore {
    async fn is_revoked(&self, jti: &str) -> Result<bool, String> {
        let n: i64 = self.query(redis::cmd("EXISTS").arg(revoked_key(jti))).await?;
        Ok(n > 0)
    }

    async fn revoke(&self, jti: &str, exp: u64) -> Result<(), String> {
        let _: () = self.query(redis::cmd("SET").arg(revoked_key(jti)).arg(1).arg("EXAT").arg(exp.max(1))).await?;
        Ok(())
    }
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| rest.split_once('@').map(|(_, host)| (scheme, host))) {
        Some((scheme, host)) => format!("{scheme}://…@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_refused_without_its_password() {
        let err = SharedStore::open("http://user:secret@host").err().expect("refused").to_string();
        assert!(err.starts_with("redis_url: cannot use http://…@host"), "{err}");
        assert!(!err.contains("secret"));
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_every_check() {
        let store = SharedStore::open("redis://127.0.0.1:1/").expect("url");
        assert!(store.check().await.is_err());
        assert!(store.is_revoked("x").await.is_err(), "unknown is an error, never 'not revoked'");
    }
}
