//! The auth service's Ed25519 signing keys.
//!
//! The newest unretired key signs; the key before it stays in the JWKS so tokens it signed keep
//! verifying after a rotation; older keys are retired (dropped from the JWKS) at rotation. Private
//! keys are PKCS#8, stored in the service's database (a 0600 file in the embedded setup).

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use jsonwebtoken::EncodingKey;
use jsonwebtoken::jwk::JwkSet;
use sha2::{Digest, Sha256};

use crate::kernel::auth::now_secs;
use crate::kernel::storage::{Db, StorageError, Tx};
use crate::params;

/// How many keys are published: the signing key and the one before it.
const PUBLISHED_KEYS: usize = 2;

/// The keys in use, swapped as a whole on rotation.
pub struct KeyState {
    pub signing_kid: String,
    pub encoding: EncodingKey,
    pub jwks: JwkSet,
    pub jwks_json: serde_json::Value,
}

/// The current keys, reloadable.
pub struct KeyRing {
    state: RwLock<Arc<KeyState>>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("stored signing key {kid} is unusable: {reason}")]
    Corrupt { kid: String, reason: String },
    #[error("cannot generate a signing key: {0}")]
    Generate(String),
}

impl KeyRing {
    /// Loads the published keys, creating the first one on a fresh install.
    pub async fn load(db: &Db) -> Result<KeyRing, KeyError> {
        let state = match load_state(db).await? {
            Some(state) => state,
            None => {
                let mut tx = db.begin().await?;
                let kid = insert_new_key(&mut tx).await?;
                super::audit(&mut tx, "auth.key.created", &format!("key:{kid}"), "system", serde_json::json!({}))
                    .await?;
                tx.commit().await?;
                load_state(db).await?.ok_or_else(|| KeyError::Generate("key vanished after insert".into()))?
            }
        };
        Ok(KeyRing { state: RwLock::new(Arc::new(state)) })
    }

    pub fn current(&self) -> Arc<KeyState> {
        self.state.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Re-reads the keys from storage (after a rotation here or by another replica).
    pub async fn reload(&self, db: &Db) -> Result<(), KeyError> {
        if let Some(state) = load_state(db).await? {
            *self.state.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(state);
        }
        Ok(())
    }

    /// Adds a new signing key and retires all but the newest [`PUBLISHED_KEYS`], recording the
    /// rotation by `actor`. Returns (new kid, previous kid).
    pub async fn rotate(&self, db: &Db, actor: &str) -> Result<(String, String), KeyError> {
        let previous = self.current().signing_kid.clone();
        let mut tx = db.begin().await?;
        let kid = insert_new_key(&mut tx).await?;
        let keep = tx
            .query("SELECT kid FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid DESC", &[])
            .await?;
        let mut retired = Vec::new();
        for row in keep.iter().skip(PUBLISHED_KEYS) {
            let old = row.get_str(0)?;
            tx.execute("UPDATE signing_keys SET retired_at = $1 WHERE kid = $2", &params![now_secs() as i64, old])
                .await?;
            retired.push(old.to_string());
        }
        let data = serde_json::json!({ "previous_kid": previous, "retired": retired });
        super::audit(&mut tx, "auth.key.rotated", &format!("key:{kid}"), actor, data).await?;
        tx.commit().await?;
        self.reload(db).await?;
        Ok((kid, previous))
    }
}

async fn insert_new_key(tx: &mut Tx) -> Result<String, KeyError> {
    let signing = SigningKey::generate(&mut rand::rngs::OsRng);
    let public = signing.verifying_key().to_bytes();
    let der = signing.to_pkcs8_der().map_err(|e| KeyError::Generate(e.to_string()))?;
    let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(public)[..12]);
    // A strictly increasing creation time orders keys even when two are made in the same second.
    let created = tx
        .query_opt("SELECT MAX(created_at) FROM signing_keys", &[])
        .await?
        .and_then(|row| row.get_opt_i64(0).ok().flatten())
        .map_or(now_secs() as i64, |max| max.max(now_secs() as i64 - 1) + 1);
    tx.execute(
        "INSERT INTO signing_keys (kid, private_pkcs8, public_x, created_at) VALUES ($1, $2, $3, $4)",
        &params![kid.as_str(), STANDARD.encode(der.as_bytes()), URL_SAFE_NO_PAD.encode(public), created],
    )
    .await?;
    Ok(kid)
}

async fn load_state(db: &Db) -> Result<Option<KeyState>, KeyError> {
    let rows = db
        .query(
            "SELECT kid, private_pkcs8, public_x FROM signing_keys WHERE retired_at IS NULL \
             ORDER BY created_at DESC, kid DESC",
            &[],
        )
        .await?;
    let Some(newest) = rows.first() else { return Ok(None) };
    let kid = newest.get_string(0)?;
    let der = STANDARD
        .decode(newest.get_str(1)?)
        .map_err(|e| KeyError::Corrupt { kid: kid.clone(), reason: e.to_string() })?;
    let mut keys = Vec::new();
    for row in rows.iter().take(PUBLISHED_KEYS) {
        keys.push(serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "x": row.get_str(2)?,
            "kid": row.get_str(0)?,
            "alg": "EdDSA",
            "use": "sig",
        }));
    }
    let jwks_json = serde_json::json!({ "keys": keys });
    let jwks: JwkSet = serde_json::from_value(jwks_json.clone())
        .map_err(|e| KeyError::Corrupt { kid: kid.clone(), reason: e.to_string() })?;
    Ok(Some(KeyState { signing_kid: kid, encoding: EncodingKey::from_ed_der(&der), jwks, jwks_json }))
}
