//! How other services reach the constitution service: in the same process, or over HTTP. They
//! need the active constitution (its invariants for verification, its voting rules for policy
//! proposals) and nothing else of its internals.

use std::sync::Arc;
use std::time::Duration;

use super::ConstitutionCore;
use crate::kernel::constitution::Constitution;
use crate::kernel::peer::{Auth, Peer};

/// The active constitution version.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ActiveConstitution {
    pub version: i64,
    /// The 16-hex constitutional hash.
    pub hash: String,
    pub sha256: String,
    pub document: Constitution,
}

/// A handle on the constitution service.
#[derive(Clone)]
pub enum ConstitutionClient {
    InProcess(Arc<ConstitutionCore>),
    Http(Arc<Peer>),
    /// Neither in this process nor configured: every call fails, saying so.
    Unconfigured,
}

const UNCONFIGURED: &str = "the constitution service is not in this process and ACGS_CONSTITUTION_URL is not set";

impl ConstitutionClient {
    pub(crate) fn in_process(core: Arc<ConstitutionCore>) -> Self {
        ConstitutionClient::InProcess(core)
    }

    /// A client for a constitution service at `base_url` (`http://constitution:8001`).
    pub fn http(base_url: &str) -> Self {
        ConstitutionClient::Http(Arc::new(Peer::new("constitution", base_url, Duration::from_secs(5))))
    }

    /// The active constitution, read from storage (in process) or `GET /api/v1/constitution`.
    pub async fn active(&self) -> Result<ActiveConstitution, String> {
        match self {
            ConstitutionClient::InProcess(core) => {
                let v = core.latest().await.map_err(|e| e.message)?;
                Ok(ActiveConstitution { version: v.number, hash: v.hash, sha256: v.sha256, document: v.document })
            }
            ConstitutionClient::Http(peer) => {
                let reply = peer.get("/api/v1/constitution", Auth::None).await.map_err(|e| e.to_string())?;
                if !reply.is_success() {
                    return Err(reply.unexpected().to_string());
                }
                let active: ActiveConstitution = reply.json().map_err(|e| e.to_string())?;
                let url = reply.call;
                if active.document.digest().sha256 != active.sha256 {
                    return Err(format!("{url}: the document does not hash to the sha256 it was served with"));
                }
                Ok(active)
            }
            ConstitutionClient::Unconfigured => Err(UNCONFIGURED.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unconfigured_and_unreachable_fail_clearly() {
        let err = ConstitutionClient::Unconfigured.active().await.unwrap_err();
        assert!(err.contains("ACGS_CONSTITUTION_URL"), "{err}");
        let err = ConstitutionClient::http("http://127.0.0.1:1").active().await.unwrap_err();
        assert!(err.contains("GET http://127.0.0.1:1/api/v1/constitution"), "{err}");
    }
}
