//! The verification service's HTTP route and its OpenAPI description.
//!
//! `POST /api/v1/verify` admits stewards (who write policy sets), admins, auditors (who check
//! them) and other services (consensus verifies every proposal). `"active": true`, which moves
//! the compliance gauge, is for `service` and `admin` only.
//!
//! Status codes: a malformed policy text is 400 with the parser's `line:column`; a schema that
//! does not parse, entity types or actions the schema does not declare, and a missing or doubled
//! field are 422; a `policy_set` version that does not exist is 404 (503 if the consensus service
//! cannot be asked); a text over `kernel::policy::MAX_TEXT` (8 MiB) is 413. A set
//! that parses but fails strict validation is *not* an error: the answer is 200 with the
//! `validation` check `refuted` (its problems carry line and column) and every other check
//! `invalid`, never `proved`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::post;
use utoipa::OpenApi;

use super::checks::InputError;
use super::report::{
    CheckKind, CheckResult, ConstitutionRef, Counterexample, Direction, PolicySource, RequestJson, SolverInfo, Status,
    Summary, VerifyReport, VerifyRequest,
};
use super::{VerificationCore, VerifyError};
use crate::kernel::auth::{Authorized, Role, RouteRoles};
use crate::kernel::error::{ApiError, Json};
use crate::kernel::http::BearerAuth;

/// Who may ask for a verification.
pub struct Verifiers;
impl RouteRoles for Verifiers {
    const ROLES: &'static [Role] = &[Role::Steward, Role::Admin, Role::Auditor, Role::Service];
}

pub fn router(core: Arc<VerificationCore>) -> Router {
    Router::new().route("/api/v1/verify", post(verify)).with_state(core)
}

#[derive(OpenApi)]
#[openapi(
    paths(verify),
    components(schemas(VerifyRequest, PolicySource, CheckKind, VerifyReport, CheckResult, Status, Direction,
        Counterexample, RequestJson, ConstitutionRef, SolverInfo, Summary)),
    modifiers(&BearerAuth)
)]
struct VerificationApi;

pub fn openapi() -> utoipa::openapi::OpenApi {
    VerificationApi::openapi()
}

impl From<VerifyError> for ApiError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Input(input) => input_error(input),
            VerifyError::Constitution(why) => {
                tracing::warn!(error = %why, "verification without a constitution");
                ApiError::unavailable(format!("the active constitution is not available: {why}"))
            }
            VerifyError::PolicySetNotFound(version) => ApiError::not_found(format!("no policy set version {version}")),
            VerifyError::Consensus(why) => {
                tracing::warn!(error = %why, "verification of a stored policy set without the consensus service");
                ApiError::unavailable(format!("stored policy sets cannot be read: {why}"))
            }
            VerifyError::Internal(why) => ApiError::internal(why),
        }
    }
}

fn input_error(e: InputError) -> ApiError {
    match e {
        InputError::Missing(message) => ApiError::validation(message),
        InputError::Policy { what, error } => error.to_api_error(what),
    }
}

/// Verifies a policy set: strict validation, never-errors per policy, every invariant of the
/// active constitution, and (with `compare_to`) what the set allows that the other did not.
#[utoipa::path(post, path = "/api/v1/verify", tag = "verification",
    request_body = VerifyRequest,
    responses(
        (status = 200, body = VerifyReport, description = "One result per check"),
        (status = 400, description = "Malformed JSON or Cedar syntax (with line:column)"),
        (status = 401, description = "No valid token"),
        (status = 403, description = "Not a steward, admin, auditor or service; or `active` without service/admin"),
        (status = 413, description = "A text over 8 MiB, or a body over the limit"),
        (status = 404, description = "No such policy_set version"),
        (status = 422, description = "Schema errors, names the schema does not declare, missing fields"),
        (status = 503, description = "The active constitution, or a stored policy set, cannot be read")),
    security(("bearer" = [])))]
async fn verify(
    State(core): State<Arc<VerificationCore>>,
    caller: Authorized<Verifiers>,
    headers: axum::http::HeaderMap,
    Json(request): Json<VerifyRequest>,
) -> Result<Json<VerifyReport>, ApiError> {
    if request.active && !caller.has(Role::Service) && !caller.has(Role::Admin) {
        return Err(ApiError::forbidden(
            "\"active\": true (recording the compliance score) is for services and admins",
        ));
    }
    // A stored set is read from the consensus service with the caller's own token.
    Ok(Json(core.verify(&request, crate::kernel::auth::bearer_of(&headers)).await?))
}
