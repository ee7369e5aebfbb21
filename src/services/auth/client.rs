//! How other services reach the auth service: in the same process, or over HTTP. Either way it
//! provides the JWKS and the revocation list to the kernel's token verifier.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;

use super::AuthCore;
use crate::kernel::auth::KeySource;

/// A handle on the auth service.
#[derive(Clone)]
pub enum AuthClient {
    InProcess(Arc<AuthCore>),
    Http {
        base_url: String,
        http: reqwest::Client,
    },
    /// Neither in this process nor configured: every key lookup fails (so every token is refused)
    /// and readiness says why.
    Unconfigured,
}

impl AuthClient {
    pub(crate) fn in_process(core: Arc<AuthCore>) -> Self {
        AuthClient::InProcess(core)
    }

    /// A client for an auth service at `base_url` (`http://auth:8000`).
    pub fn http(base_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        AuthClient::Http { base_url: base_url.trim_end_matches('/').to_string(), http }
    }

    /// Whether the auth service can be reached (for `/ready`).
    pub async fn check(&self) -> Result<(), String> {
        self.jwks().await.map(|_| ())
    }

    /// How many enabled users hold `role`: the electorate of an amendment vote.
    pub async fn count_with_role(&self, role: &str) -> Result<u64, String> {
        match self {
            AuthClient::InProcess(core) => core.count_with_role(role).await.map_err(|e| e.to_string()),
            AuthClient::Http { .. } => Err(format!(
                "counting the members of role {role:?} over HTTP needs the distributed-mode issue; \
                 run the constitution service in the same process as the auth service"
            )),
            AuthClient::Unconfigured => Err(UNCONFIGURED.into()),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let AuthClient::Http { base_url, http } = self else {
            return Err("not an HTTP client".into());
        };
        let url = format!("{base_url}{path}");
        let response = http.get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: status {}", response.status()));
        }
        response.json::<T>().await.map_err(|e| format!("GET {url}: {e}"))
    }
}

const UNCONFIGURED: &str = "the auth service is not in this process and ACGS_AUTH_URL is not set";

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
        let err = AuthClient::http("http://auth:8000").count_with_role("council").await.unwrap_err();
        assert!(err.contains("distributed-mode"), "{err}");
        let err = AuthClient::Unconfigured.count_with_role("council").await.unwrap_err();
        assert!(err.contains("ACGS_AUTH_URL"), "{err}");
    }
}
