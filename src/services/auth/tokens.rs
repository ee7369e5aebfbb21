//! The OAuth 2.0 grants (RFC 6749): `password`, `client_credentials` and `refresh_token`, and the
//! access tokens they issue: EdDSA JWTs with `kid`, `iss`, `aud`, `sub`, `exp`, `iat`, `jti` and
//! `roles`. Refresh tokens are opaque, single-use and rotate within a family; presenting a used one
//! revokes the family (RFC 6819 §5.2.2.3, OAuth 2.0 Security BCP §4.14).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::secrets;
use super::store::{Clients, RefreshTokens, RefreshUse, Users};
use super::{ANONYMOUS, AuthCore, audit};
use crate::kernel::auth::{Claims, Role, now_secs};
use crate::kernel::storage::Tx;

/// An error of the token, revocation and introspection endpoints, in RFC 6749 §5.2's shape
/// (`{"error": "invalid_grant", "error_description": "…"}`), which OAuth clients expect.
#[derive(Debug)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, error: "invalid_request", description: description.into() }
    }
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, error: "invalid_grant", description: description.into() }
    }
    pub fn invalid_client(description: impl Into<String>) -> Self {
        Self { status: StatusCode::UNAUTHORIZED, error: "invalid_client", description: description.into() }
    }
    pub fn unsupported_grant_type(grant: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "unsupported_grant_type",
            description: format!(
                "grant_type {grant:?} is not supported (use password, client_credentials or refresh_token)"
            ),
        }
    }
    pub fn server_error(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "token endpoint failure");
        Self { status: StatusCode::INTERNAL_SERVER_ERROR, error: "server_error", description: "internal error".into() }
    }
    pub fn unavailable() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "temporarily_unavailable",
            description: "storage unavailable; retry later".into(),
        }
    }
}

impl From<crate::kernel::storage::StorageError> for OAuthError {
    fn from(err: crate::kernel::storage::StorageError) -> Self {
        match err {
            crate::kernel::storage::StorageError::Unavailable(_) => OAuthError::unavailable(),
            other => OAuthError::server_error(other),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.error, "error_description": self.description });
        let mut response = (self.status, no_store(), axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"acgs\""));
        }
        response
    }
}

/// RFC 6749 §5.1: token responses must not be cached.
pub fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The roles granted, space-separated.
    pub scope: String,
}

/// Who a token is for.
pub struct Subject<'a> {
    pub sub: &'a str,
    pub name: &'a str,
    pub roles: &'a [Role],
    pub client_id: Option<&'a str>,
}

impl AuthCore {
    /// Signs an access token.
    pub fn issue_access(&self, subject: &Subject<'_>) -> Result<(String, u64), OAuthError> {
        let keys = self.keys.current();
        let iat = now_secs();
        let exp = iat + self.settings.access_token_ttl_secs;
        let claims = Claims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: subject.sub.to_string(),
            exp,
            iat,
            jti: uuid::Uuid::new_v4().to_string(),
            roles: subject.roles.iter().map(|r| r.as_str().to_string()).collect(),
            name: Some(subject.name.to_string()),
            client_id: subject.client_id.map(str::to_string),
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(keys.signing_kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &keys.encoding).map_err(OAuthError::server_error)?;
        Ok((token, exp))
    }

    fn response(&self, access: String, refresh: Option<String>, roles: &[Role]) -> TokenResponse {
        TokenResponse {
            access_token: access,
            token_type: "Bearer",
            expires_in: self.settings.access_token_ttl_secs,
            refresh_token: refresh,
            scope: roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" "),
        }
    }

    /// Stores a new refresh token of `family_id` inside `tx`; returns the token.
    async fn new_refresh(&self, tx: &mut Tx, family_id: &str, user_id: &str, now: i64) -> Result<String, OAuthError> {
        let token = secrets::random_token();
        let expires = now + self.settings.refresh_token_ttl_secs as i64;
        RefreshTokens::insert(tx, &secrets::digest(&token), family_id, user_id, expires, now).await?;
        Ok(token)
    }

    /// `grant_type=password`.
    pub async fn password_grant(&self, username: &str, password: &str) -> Result<TokenResponse, OAuthError> {
        const BAD: &str = "invalid username or password";
        if username.is_empty() || password.is_empty() {
            return Err(OAuthError::invalid_request("username and password are required"));
        }
        if username.len() > 256 || password.len() > 1024 {
            return Err(OAuthError::invalid_grant(BAD));
        }
        let user = Users(&self.db).by_name(username).await?;
        let now = now_secs() as i64;
        if let Some(u) = &user
            && u.locked_until > now
        {
            self.login_failed(&u.id, "locked").await?;
            return Err(OAuthError::invalid_grant(format!(
                "account is locked after repeated failed logins; try again in {} s or ask an admin to unlock it",
                u.locked_until - now
            )));
        }
        let ok = secrets::verify_password(password.to_string(), user.as_ref().map(|u| u.password_hash.clone())).await;
        let user = match user {
            Some(u) if ok => u,
            Some(u) => {
                let threshold = self.settings.lockout_threshold as i64;
                let lock_secs = self.settings.lockout_secs as i64;
                let subject = format!("user:{}", u.id);
                let mut tx = self.db.begin().await?;
                let locked = Users::record_failure(&mut tx, &u.id, threshold, lock_secs, now).await?;
                let data = serde_json::json!({ "grant": "password", "reason": "wrong password" });
                audit(&mut tx, "auth.login.failure", &subject, ANONYMOUS, data).await?;
                if locked > 0 {
                    let data = serde_json::json!({ "failures": threshold, "locked_until": locked });
                    audit(&mut tx, "auth.login.lockout", &subject, "system", data).await?;
                }
                tx.commit().await?;
                if locked > 0 {
                    tracing::warn!(user = %u.username, "account locked after {threshold} failed logins");
                    self.count_login("lockout");
                    return Err(OAuthError::invalid_grant(format!(
                        "{BAD}; the account is now locked for {lock_secs} s"
                    )));
                }
                self.count_login("failure");
                return Err(OAuthError::invalid_grant(BAD));
            }
            None => {
                let data = serde_json::json!({ "grant": "password", "reason": "unknown username" });
                self.audit_alone("auth.login.failure", &format!("username:{username}"), ANONYMOUS, data).await?;
                self.count_login("failure");
                return Err(OAuthError::invalid_grant(BAD));
            }
        };
        if user.disabled {
            self.login_failed(&user.id, "disabled").await?;
            return Err(OAuthError::invalid_grant("account is disabled"));
        }
        let (access, _) =
            self.issue_access(&Subject { sub: &user.id, name: &user.username, roles: &user.roles, client_id: None })?;
        let family = uuid::Uuid::new_v4().to_string();
        let mut tx = self.db.begin().await?;
        Users::record_success(&mut tx, &user.id).await?;
        let refresh = self.new_refresh(&mut tx, &family, &user.id, now).await?;
        let data = serde_json::json!({ "grant": "password", "refresh_family": family });
        audit(&mut tx, "auth.login.success", &format!("user:{}", user.id), &user.id, data).await?;
        tx.commit().await?;
        self.count_login("success");
        self.tokens_issued.with_label_values(&["password"]).inc();
        Ok(self.response(access, Some(refresh), &user.roles))
    }

    /// Records a refused password login of an existing account that changes nothing else.
    async fn login_failed(&self, user_id: &str, reason: &'static str) -> Result<(), OAuthError> {
        let data = serde_json::json!({ "grant": "password", "reason": reason });
        self.audit_alone("auth.login.failure", &format!("user:{user_id}"), ANONYMOUS, data).await?;
        self.count_login(reason);
        Ok(())
    }

    /// `grant_type=client_credentials` (no refresh token, RFC 6749 §4.4.3).
    pub async fn client_credentials_grant(&self, client_id: &str, secret: &str) -> Result<TokenResponse, OAuthError> {
        const BAD: &str = "unknown client or wrong secret";
        if client_id.is_empty() || secret.is_empty() || client_id.len() > 256 || secret.len() > 1024 {
            return Err(OAuthError::invalid_client(BAD));
        }
        let subject = format!("client:{client_id}");
        let client = Clients(&self.db).by_id(client_id).await?;
        let presented = secrets::digest(secret);
        let refused = match &client {
            None => Some(("unknown client", BAD)),
            Some(c) if !secrets::digests_equal(&c.secret_hash, &presented) => Some(("wrong secret", BAD)),
            Some(c) if c.disabled => Some(("disabled", "client is disabled")),
            Some(_) => None,
        };
        let (Some(client), None) = (client, refused) else {
            let (reason, message) = refused.unwrap_or(("unknown client", BAD));
            let data = serde_json::json!({ "grant": "client_credentials", "reason": reason });
            self.audit_alone("auth.login.failure", &subject, ANONYMOUS, data).await?;
            return Err(OAuthError::invalid_client(message));
        };
        let (access, _) = self.issue_access(&Subject {
            sub: &client.id,
            name: &client.name,
            roles: &client.roles,
            client_id: Some(&client.id),
        })?;
        let data = serde_json::json!({ "grant": "client_credentials" });
        self.audit_alone("auth.login.success", &subject, &client.id, data).await?;
        self.tokens_issued.with_label_values(&["client_credentials"]).inc();
        Ok(self.response(access, None, &client.roles))
    }

    /// `grant_type=refresh_token`: rotates the refresh token.
    pub async fn refresh_grant(&self, refresh_token: &str) -> Result<TokenResponse, OAuthError> {
        if refresh_token.is_empty() || refresh_token.len() > 256 {
            return Err(OAuthError::invalid_request("refresh_token is required"));
        }
        let now = now_secs() as i64;
        let mut tx = self.db.begin().await?;
        let (family_id, user_id) = match RefreshTokens::use_token(&mut tx, &secrets::digest(refresh_token), now).await?
        {
            RefreshUse::Rotated { family_id, user_id } => (family_id, user_id),
            RefreshUse::Reused { family_id } => {
                let subject = format!("refresh_family:{family_id}");
                audit(&mut tx, "auth.token.refresh_reused", &subject, ANONYMOUS, serde_json::json!({})).await?;
                tx.commit().await?;
                tracing::warn!("refresh token reused; its family has been revoked");
                return Err(OAuthError::invalid_grant(
                    "refresh token was already used; every token of this login has been revoked",
                ));
            }
            RefreshUse::Invalid => {
                return Err(OAuthError::invalid_grant("refresh token is invalid, expired or revoked"));
            }
        };
        let user = Users(&self.db).by_id(&user_id).await?;
        let Some(user) = user.filter(|u| !u.disabled && u.locked_until <= now) else {
            RefreshTokens::revoke_family(&mut tx, &family_id, now).await?;
            let data = serde_json::json!({ "reason": "account disabled, locked or deleted" });
            audit(&mut tx, "auth.token.revoked", &format!("refresh_family:{family_id}"), "system", data).await?;
            tx.commit().await?;
            return Err(OAuthError::invalid_grant("the account is disabled, locked or gone"));
        };
        let (access, _) =
            self.issue_access(&Subject { sub: &user.id, name: &user.username, roles: &user.roles, client_id: None })?;
        let refresh = self.new_refresh(&mut tx, &family_id, &user.id, now).await?;
        let data = serde_json::json!({ "refresh_family": family_id });
        audit(&mut tx, "auth.token.refreshed", &format!("user:{}", user.id), &user.id, data).await?;
        tx.commit().await?;
        self.tokens_issued.with_label_values(&["refresh_token"]).inc();
        Ok(self.response(access, Some(refresh), &user.roles))
    }

    fn count_login(&self, outcome: &str) {
        self.logins.with_label_values(&[outcome]).inc();
    }
}
