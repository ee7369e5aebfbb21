//! How other services reach the verification service: in the same process, or over HTTP
//! (`POST /api/v1/verify` with a bearer token). The consensus service verifies every proposal
//! through this and reports the set in force with [`VerificationClient::verify_active`].

use std::sync::Arc;
use std::time::Duration;

use super::VerificationCore;
use super::report::{VerifyReport, VerifyRequest};
use crate::kernel::peer::{Auth, BearerSource, Peer, PeerError, Retry};

/// Why a verification through the client failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service refused the request: the HTTP status and the error body's code and message.
    #[error("{status} {code}: {message}")]
    Refused { status: u16, code: String, message: String },
    /// The service could not be reached or answered nonsense.
    #[error("{0}")]
    Unavailable(String),
}

impl From<PeerError> for ClientError {
    fn from(e: PeerError) -> Self {
        ClientError::Unavailable(e.to_string())
    }
}

/// A handle on the verification service.
#[derive(Clone)]
pub enum VerificationClient {
    InProcess(Arc<VerificationCore>),
    /// In another process, called with the process's service token.
    Http(Arc<Peer>),
    /// Neither in this process nor configured: every call fails, saying so.
    Unconfigured,
}

const UNCONFIGURED: &str = "the verification service is not in this process and ACGS_VERIFICATION_URL is not set";

impl VerificationClient {
    /// A client for a verification service at `base_url` (`http://verification:8003`), calling
    /// with the service tokens of `credentials`. Verifications can take a while: the time-out is
    /// generous.
    pub fn http(base_url: &str, credentials: Option<Arc<dyn BearerSource>>) -> Self {
        VerificationClient::Http(Arc::new(
            Peer::new("verification", base_url, Duration::from_secs(120)).with_credentials(credentials),
        ))
    }

    /// Runs a verification.
    pub async fn verify(&self, request: &VerifyRequest) -> Result<VerifyReport, ClientError> {
        match self {
            VerificationClient::InProcess(core) => core.verify(request, None).await.map_err(|e| {
                let api: crate::kernel::error::ApiError = e.into();
                ClientError::Refused { status: api.status.as_u16(), code: api.code.to_string(), message: api.message }
            }),
            VerificationClient::Http(peer) => {
                // A verification is a pure function of its request: safe to repeat.
                let reply = peer.post("/api/v1/verify", request, Auth::Service, Retry::Idempotent).await?;
                if !reply.is_success() {
                    let (code, message) = reply.error();
                    return Err(ClientError::Refused { status: reply.status.as_u16(), code, message });
                }
                Ok(reply.json()?)
            }
            VerificationClient::Unconfigured => Err(ClientError::Unavailable(UNCONFIGURED.into())),
        }
    }

    /// Verifies the set in force and records `acgs_constitutional_compliance_score`.
    pub async fn verify_active(&self, policies: &str, schema: Option<&str>) -> Result<VerifyReport, ClientError> {
        let request = VerifyRequest {
            policies: Some(policies.to_string()),
            schema: schema.map(str::to_string),
            active: true,
            ..VerifyRequest::default()
        };
        self.verify(&request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unconfigured_and_unreachable_fail_clearly() {
        let err = VerificationClient::Unconfigured.verify(&VerifyRequest::default()).await.unwrap_err();
        assert!(err.to_string().contains("ACGS_VERIFICATION_URL"), "{err}");
        let err =
            VerificationClient::http("http://127.0.0.1:1", None).verify(&VerifyRequest::default()).await.unwrap_err();
        assert!(matches!(err, ClientError::Unavailable(m) if m.contains("POST http://127.0.0.1:1/api/v1/verify")));
    }
}
