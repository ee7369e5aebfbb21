//! How other services reach the verification service: in the same process, or over HTTP
//! (`POST /api/v1/verify` with a bearer token). The consensus service verifies every proposal
//! through this and reports the set in force with [`VerificationClient::verify_active`].

use std::sync::Arc;
use std::time::Duration;

use super::VerificationCore;
use super::report::{VerifyReport, VerifyRequest};

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

/// A handle on the verification service.
#[derive(Clone)]
pub enum VerificationClient {
    InProcess(Arc<VerificationCore>),
    Http {
        base_url: String,
        http: reqwest::Client,
        /// A bearer token with the `service` role (the distributed-mode issue provides one).
        token: Option<String>,
    },
    /// Neither in this process nor configured: every call fails, saying so.
    Unconfigured,
}

const UNCONFIGURED: &str = "the verification service is not in this process and ACGS_VERIFICATION_URL is not set";

impl VerificationClient {
    /// A client for a verification service at `base_url` (`http://verification:8003`), calling
    /// with `token`. Verifications can take a while: the time-out is generous.
    pub fn http(base_url: &str, token: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        VerificationClient::Http { base_url: base_url.trim_end_matches('/').to_string(), http, token }
    }

    /// Runs a verification.
    pub async fn verify(&self, request: &VerifyRequest) -> Result<VerifyReport, ClientError> {
        match self {
            VerificationClient::InProcess(core) => core.verify(request, None).await.map_err(|e| {
                let api: crate::kernel::error::ApiError = e.into();
                ClientError::Refused { status: api.status.as_u16(), code: api.code.to_string(), message: api.message }
            }),
            VerificationClient::Http { base_url, http, token } => {
                let url = format!("{base_url}/api/v1/verify");
                let mut call = http.post(&url).json(request);
                if let Some(token) = token {
                    call = call.bearer_auth(token);
                }
                let response = call.send().await.map_err(|e| ClientError::Unavailable(format!("POST {url}: {e}")))?;
                let status = response.status();
                let body: serde_json::Value =
                    response.json().await.map_err(|e| ClientError::Unavailable(format!("POST {url}: {e}")))?;
                if !status.is_success() {
                    let field = |k: &str| body["error"][k].as_str().unwrap_or_default().to_string();
                    return Err(ClientError::Refused {
                        status: status.as_u16(),
                        code: field("code"),
                        message: field("message"),
                    });
                }
                serde_json::from_value(body).map_err(|e| ClientError::Unavailable(format!("POST {url}: {e}")))
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
