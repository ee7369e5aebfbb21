//! The integrity service (port 8002): the append-only, signed Merkle transparency log of audit events with inclusion and consistency proofs.
//!
//! Not built yet (the trust-core issue builds it). Until then it serves only the shared endpoints
//! (`/health`, `/ready`, `/metrics`, `/openapi.json`) and answers every other path 404: nothing
//! here pretends to do the work.

pub mod log;
pub mod merkle;
pub mod note;

use axum::Router;

use crate::kernel::http::ServiceApp;
use crate::kernel::metrics::Metrics;
use crate::kernel::service::ServiceName;

/// The HTTP application of this service: shared endpoints only.
pub fn app() -> ServiceApp {
    ServiceApp {
        name: ServiceName::Integrity,
        routes: Router::new(),
        openapi: utoipa::openapi::OpenApi::default(),
        ready: Vec::new(),
        metrics: Metrics::new(ServiceName::Integrity.as_str()),
    }
}
