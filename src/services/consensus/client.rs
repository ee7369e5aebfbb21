//! How other services reach the consensus service: in the same process, or over HTTP. The
//! verification service reads stored policy sets by version through it (`{"policy_set": N}`).

use std::sync::Arc;
use std::time::Duration;

use super::ConsensusCore;
use super::store::{Content, Store};

/// Why a policy set could not be had.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    /// There is no such version (404).
    #[error("no policy set version {0}")]
    NotFound(i64),
    /// The service could not be reached, refused, or answered nonsense.
    #[error("{0}")]
    Unavailable(String),
}

/// A stored policy set's texts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySetText {
    pub version: i64,
    pub policies: String,
    pub schema: String,
}

/// A handle on the consensus service.
#[derive(Clone)]
pub enum ConsensusClient {
    InProcess(Arc<ConsensusCore>),
    Http {
        base_url: String,
        http: reqwest::Client,
    },
    /// Neither in this process nor configured: every call fails, saying so.
    Unconfigured,
}

const UNCONFIGURED: &str = "the consensus service is not in this process and ACGS_CONSENSUS_URL is not set";

impl ConsensusClient {
    pub(crate) fn in_process(core: Arc<ConsensusCore>) -> Self {
        ConsensusClient::InProcess(core)
    }

    /// A client for a consensus service at `base_url` (`http://consensus:8005`).
    pub fn http(base_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        ConsensusClient::Http { base_url: base_url.trim_end_matches('/').to_string(), http }
    }

    /// The texts of policy-set `version`. Over HTTP the read is made with `bearer`, the token of
    /// whoever asked for it (policy sets are readable by any authenticated caller).
    pub async fn policy_set(&self, version: i64, bearer: Option<&str>) -> Result<PolicySetText, ClientError> {
        match self {
            ConsensusClient::InProcess(core) => {
                let stored =
                    Store(&core.db).version(version).await.map_err(|e| ClientError::Unavailable(e.to_string()))?;
                let Content { policies, schema, .. } = stored.ok_or(ClientError::NotFound(version))?.content;
                Ok(PolicySetText { version, policies, schema })
            }
            ConsensusClient::Http { base_url, http } => {
                let url = format!("{base_url}/api/v1/policy-sets/{version}");
                let mut call = http.get(&url);
                if let Some(token) = bearer {
                    call = call.bearer_auth(token);
                }
                let response = call.send().await.map_err(|e| ClientError::Unavailable(format!("GET {url}: {e}")))?;
                match response.status().as_u16() {
                    200 => {}
                    404 => return Err(ClientError::NotFound(version)),
                    status => return Err(ClientError::Unavailable(format!("GET {url}: status {status}"))),
                }
                let body: serde_json::Value =
                    response.json().await.map_err(|e| ClientError::Unavailable(format!("GET {url}: {e}")))?;
                let text = |k: &str| {
                    body[k]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ClientError::Unavailable(format!("GET {url}: no {k:?} in the answer")))
                };
                Ok(PolicySetText { version, policies: text("policies")?, schema: text("schema")? })
            }
            ConsensusClient::Unconfigured => Err(ClientError::Unavailable(UNCONFIGURED.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unconfigured_and_unreachable_fail_clearly() {
        let err = ConsensusClient::Unconfigured.policy_set(1, None).await.unwrap_err();
        assert!(err.to_string().contains("ACGS_CONSENSUS_URL"), "{err}");
        let err = ConsensusClient::http("http://127.0.0.1:1").policy_set(1, None).await.unwrap_err();
        assert!(
            matches!(err, ClientError::Unavailable(m) if m.contains("GET http://127.0.0.1:1/api/v1/policy-sets/1"))
        );
    }
}
