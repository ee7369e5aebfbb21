//! How other services reach the consensus service: in the same process, or over HTTP. The
//! verification service reads stored policy sets by version through it (`{"policy_set": N}`).

use std::sync::Arc;
use std::time::Duration;

use super::ConsensusCore;
use super::store::{Content, Store};
use crate::kernel::peer::{Auth, Peer};

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
    Http(Arc<Peer>),
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
        ConsensusClient::Http(Arc::new(Peer::new("consensus", base_url, Duration::from_secs(10))))
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
            ConsensusClient::Http(peer) => {
                let auth = bearer.map_or(Auth::None, Auth::Bearer);
                let reply = peer
                    .get(&format!("/api/v1/policy-sets/{version}"), auth)
                    .await
                    .map_err(|e| ClientError::Unavailable(e.to_string()))?;
                match reply.status.as_u16() {
                    200 => {}
                    404 => return Err(ClientError::NotFound(version)),
                    _ => return Err(ClientError::Unavailable(reply.unexpected().to_string())),
                }
                let body: serde_json::Value = reply.json().map_err(|e| ClientError::Unavailable(e.to_string()))?;
                let url = &reply.call;
                let text = |k: &str| {
                    body[k]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ClientError::Unavailable(format!("{url}: no {k:?} in the answer")))
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
