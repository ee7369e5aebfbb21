//! The verification service (port 8003): formal verification of Cedar policy sets against the constitution's invariants with cedar-policy-symcc and cvc5.
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
        name: ServiceName::Verification,
        routes: Router::new(),
        openapi: utoipa::openapi::OpenApi::default(),
        ready: Vec::new(),
        metrics: Metrics::new(ServiceName::Verification.as_str()),
    }
}
