//! How other services reach the auth service: in the same process, or over HTTP. Either way it
//! provides the JWKS and the revocation list to the kernel's token verifier, counts the members
//! of a role, and — as [`ServiceCredentials`] — gives a process the bearer tokens with which its
//! services call services in other processes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;

use super::AuthCore;
use crate::kernel::auth::{KeySource, Role};
use crate::kernel::peer::{Auth, BearerSource, Peer};

/// A handle on the auth service.
#[derive(Clone)]
pub enum AuthClient {
    InProcess(Arc<AuthCore>),
    /// In another process; counting voters takes the process's service token.
    Http(Arc<Peer>),
    /// Neither in this process nor configured: every key lookup fails (so every token is refused)
    /// and readiness says why.
    Unconfigured,
}

impl AuthClient {
    pub(crate) fn in_process(core: Arc<AuthCore>) -> Self {
        AuthClient::InProcess(core)
    }

    /// A client for an auth service at `base_url` (`http://auth:8000`), making the calls that
    /// need a `service` token with `credentials`.
    pub fn http(base_url: &str, credentials: Option<Arc<dyn BearerSource>>) -> Self {
        AuthClient::Http(Arc::new(Peer::new("auth", base_url, Duration::from_secs(5)).with_credentials(credentials)))
    }

    /// Whether the auth service can be reached (for `/ready`).
    pub async fn check(&self) -> Result<(), String> {
        self.jwks().await.map(|_| ())
    }

    /// How many enabled users hold `role`: the electorate of an amendment vote.
    pub async fn count_with_role(&self, role: &str) -> Result<u64, String> {
        match self {
            AuthClient::InProcess(core) => core.count_with_role(role).await.map_err(|e| e.to_string()),
            AuthClient::Http(peer) => {
                let reply =
                    peer.get(&format!("/api/v1/roles/{role}/count"), Auth::Service).await.map_err(|e| e.to_string())?;
                if !reply.is_success() {
                    return Err(reply.unexpected().to_string());
                }
                let body: serde_json::Value = reply.json().map_err(|e| e.to_string())?;
                body["count"].as_u64().ok_or_else(|| format!("{}: no count in {body}", reply.call))
            }
            AuthClient::Unconfigured => Err(UNCONFIGURED.into()),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let AuthClient::Http(peer) = self else {
            return Err("not an HTTP client".into());
        };
        let reply = peer.get(path, Auth::None).await.map_err(|e| e.to_string())?;
        if !reply.is_success() {
            return Err(reply.unexpected().to_string());
        }
        reply.json().map_err(|e| e.to_string())
    }
}

const UNCONFIGURED: &str = "the auth service is not in this process and ACGS_AUTH_URL is not set";

/// Bearer tokens with the `service` role for this process's calls to services elsewhere: minted
/// directly when the auth service runs in this process, else the services' machine client's
/// `client_credentials` grant, cached until a minute before it expires.
pub enum ServiceCredentials {
    InProcess {
        core: Arc<AuthCore>,
        client_id: String,
    },
    Http {
        token_url: String,
        client_id: String,
        secret: String,
        http: reqwest::Client,
        cached: std::sync::Mutex<Option<(String, Instant)>>,
    },
}

impl ServiceCredentials {
    /// Tokens from the auth service in this process, for `client_id`.
    pub fn in_process(auth: &AuthClient, client_id: &str) -> Option<Arc<ServiceCredentials>> {
        match auth {
            AuthClient::InProcess(core) => {
                Some(Arc::new(ServiceCredentials::InProcess { core: core.clone(), client_id: client_id.to_string() }))
            }
            _ => None,
        }
    }

    /// Tokens from the auth service at `auth_base_url` for the client `client_id` with `secret`.
    pub fn http(auth_base_url: &str, client_id: &str, secret: &str) -> Arc<ServiceCredentials> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Arc::new(ServiceCredentials::Http {
            token_url: format!("{}/api/v1/auth/token", auth_base_url.trim_end_matches('/')),
            client_id: client_id.to_string(),
            secret: secret.to_string(),
            http,
            cached: std::sync::Mutex::new(None),
        })
    }

    fn cached(&self) -> Option<std::sync::MutexGuard<'_, Option<(String, Instant)>>> {
        match self {
            ServiceCredentials::Http { cached, .. } => {
                Some(cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
            }
            ServiceCredentials::InProcess { .. } => None,
        }
    }
}

#[async_trait::async_trait]
impl BearerSource for ServiceCredentials {
    /// A token with the `service` role, valid for at least a minute.
    async fn bearer(&self) -> Result<String, String> {
        match self {
            ServiceCredentials::InProcess { core, client_id } => {
                let subject = super::tokens::Subject {
                    sub: client_id,
                    name: "acgs services",
                    roles: &[Role::Service],
                    client_id: Some(client_id),
                };
                core.issue_access(&subject)
                    .map(|(token, _)| token)
                    .map_err(|e| format!("{}: {}", e.error, e.description))
            }
            ServiceCredentials::Http { token_url, client_id, secret, http, .. } => {
                if let Some(Some((token, until))) = self.cached().as_deref()
                    && Instant::now() < *until
                {
                    return Ok(token.clone());
                }
                let response = http
                    .post(token_url)
                    .basic_auth(client_id, Some(secret))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .await
                    .map_err(|e| format!("POST {token_url}: {e}"))?;
                let status = response.status();
                let body: serde_json::Value = response.json().await.map_err(|e| format!("POST {token_url}: {e}"))?;
                let (Some(token), Some(expires_in)) = (body["access_token"].as_str(), body["expires_in"].as_u64())
                else {
                    return Err(format!(
                        "POST {token_url}: the services' client {client_id:?} got no token ({status}: {})",
                        body["error_description"].as_str().or(body["error"].as_str()).unwrap_or("no reason given")
                    ));
                };
                let until = Instant::now() + Duration::from_secs(expires_in.saturating_sub(60).max(1));
                if let Some(mut cached) = self.cached() {
                    *cached = Some((token.to_string(), until));
                }
                Ok(token.to_string())
            }
        }
    }

    /// Drops a cached token the other side refused (revoked, keys rotated): the next call gets a
    /// new one.
    fn forget(&self) {
        if let Some(mut cached) = self.cached() {
            *cached = None;
        }
    }
}

#[async_trait::async_trait]
impl KeySource for AuthClient {
    async fn jwks(&self) -> Result<JwkSet, String> {
        match self {
            AuthClient::InProcess(core) => Ok(core.keys.current().jwks.clone()),
            AuthClient::Http { .. } => self.get_json("/.well-known/jwks.json").await,
            AuthClient::Unconfigured => Err(UNCONFIGURED.into()),
        }
    }

    async fn revoked(&self) -> Result<Vec<(String, u64)>, String> {
        match self {
            AuthClient::InProcess(core) => core.live_revocations().await.map_err(|e| e.to_string()),
            AuthClient::Http { .. } => {
                #[derive(serde::Deserialize)]
                struct Entry {
                    jti: String,
                    exp: u64,
                }
                #[derive(serde::Deserialize)]
                struct List {
                    revoked: Vec<Entry>,
                }
                let list: List = self.get_json("/api/v1/auth/revocations").await?;
                Ok(list.revoked.into_iter().map(|e| (e.jti, e.exp)).collect())
            }
            AuthClient::Unconfigured => Err(UNCONFIGURED.into()),
        }
    }

    fn min_refresh_interval(&self) -> Duration {
        match self {
            AuthClient::InProcess(_) => Duration::ZERO,
            _ => Duration::from_secs(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counting_members_fails_clearly_where_it_cannot_be_done() {
        let err = AuthClient::http("http://auth:8000", None).count_with_role("council").await.unwrap_err();
        assert!(err.contains("service_client_secret"), "{err}");
        let err = AuthClient::Unconfigured.count_with_role("council").await.unwrap_err();
        assert!(err.contains("ACGS_AUTH_URL"), "{err}");
    }
}
