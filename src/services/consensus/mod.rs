//! The consensus service (port 8005): versioned Cedar policy sets, proposals voted on by stewards, and the decision API.
//!
//! Not built yet (the policies issue builds it). Until then it serves only the shared endpoints
//! (`/health`, `/ready`, `/metrics`, `/openapi.json`) and answers every other path 404: nothing
//! here pretends to do the work.

use axum::Router;

use crate::kernel::http::ServiceApp;
use crate::kernel::metrics::Metrics;
use crate::kernel::service::ServiceName;

/// The HTTP application of this service: shared endpoints only.
pub fn app() -> ServiceApp {
    ServiceApp {
        name: ServiceName::Consensus,
        routes: Router::new(),
        openapi: utoipa::openapi::OpenApi::default(),
        ready: Vec::new(),
        metrics: Metrics::new(ServiceName::Consensus.as_str()),
    }
}
