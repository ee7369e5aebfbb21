//! How other services deliver audit events to the integrity log: in the same process, or over
//! HTTP (`POST /api/v1/log/entries`). Either way it is the [`AuditSink`] an outbox relay uses.

use std::sync::Arc;

use super::IntegrityCore;
use crate::kernel::audit::{AuditEvent, AuditSink};

/// A handle on the integrity log.
#[derive(Clone)]
pub enum IntegrityClient {
    /// The log in this process: appends go straight to its writer.
    InProcess(Arc<IntegrityCore>),
    /// The log in another process, at `base_url` (`http://integrity:8002`).
    Http { base_url: String },
}

impl IntegrityClient {
    /// A client for an integrity service at `base_url`.
    pub fn http(base_url: &str) -> Self {
        IntegrityClient::Http { base_url: base_url.trim_end_matches('/').to_string() }
    }
}

#[async_trait::async_trait]
impl AuditSink for IntegrityClient {
    async fn deliver(&self, events: &[AuditEvent]) -> Result<(), String> {
        match self {
            IntegrityClient::InProcess(core) => core.deliver(events).await,
            // `POST /api/v1/log/entries` takes a bearer token with the `service` role, which a
            // process has no way to obtain yet.
            IntegrityClient::Http { base_url } => Err(format!(
                "delivering audit events to {base_url}/api/v1/log/entries needs service credentials \
                 (distributed-mode issue); run the services in the same process as the integrity service"
            )),
        }
    }
}
