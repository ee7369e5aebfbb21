//! The consensus service's HTTP routes and their OpenAPI description.
//!
//! `POST /api/v1/decide` and `/decide/batch` take the `agent`, `service` or `admin` role. A
//! request that does not fit the active set's schema is 422 naming why (and is, of course, not
//! an allow); a decision that must be logged but cannot be queued is a deny with that reason.
//! Policy sets can be read by any authenticated caller: the rules are not secret from those
//! they govern.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::ConsensusCore;
use super::cache::Cached;
use super::engine::{DecideError, DecideRequest, Engine, EntityRef, Outcome};
use super::store::{SetVersion, Store};
use crate::kernel::audit::AuditEvent;
use crate::kernel::auth::{Authorized, Principal, Role, RouteRoles};
use crate::kernel::error::{ApiError, Json, JsonBytes, Path};
use crate::kernel::http::BearerAuth;
use crate::kernel::service::ServiceName;

type Core = State<Arc<ConsensusCore>>;

/// Who may ask for decisions.
pub struct Deciders;
impl RouteRoles for Deciders {
    const ROLES: &'static [Role] = &[Role::Agent, Role::Service, Role::Admin];
}

/// The most requests in one batch.
pub const MAX_BATCH: usize = 100;

pub fn router(core: Arc<ConsensusCore>) -> Router {
    Router::new()
        .route("/api/v1/decide", post(decide))
        .route("/api/v1/decide/batch", post(decide_batch))
        .route("/api/v1/policy-sets", get(list_sets))
        .route("/api/v1/policy-sets/active", get(active_set))
        .route("/api/v1/policy-sets/{version}", get(get_set))
        .with_state(core)
}

#[derive(OpenApi)]
#[openapi(
    paths(decide, decide_batch, list_sets, active_set, get_set),
    components(schemas(DecideRequest, EntityRef, DecisionView, BatchRequest, BatchResponse, BatchItem, SetView,
        SetSummary)),
    modifiers(&BearerAuth)
)]
struct ConsensusApi;

pub fn openapi() -> utoipa::openapi::OpenApi {
    ConsensusApi::openapi()
}

// ---------------------------------------------------------------------------------------------
// Decisions

/// A decision.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DecisionView {
    /// The id under which the decision is in the integrity log (subject `decision:<id>`).
    pub decision_id: String,
    /// `allow` or `deny`.
    pub decision: String,
    pub policy_set_version: i64,
    /// The policies that determined it: satisfied permits for an allow, satisfied forbids for an
    /// explicit deny; empty for a default deny.
    pub determining_policies: Vec<String>,
    /// Why policies could not be evaluated, or why the decision was refused.
    pub errors: Vec<String>,
    pub constitutional_hash: String,
    /// Whether the decision was handed to the integrity log.
    pub logged: bool,
}

impl ConsensusCore {
    /// Decides one request for `caller`: the engine's answer, then the log hand-off. Fails closed.
    fn decide_one(&self, caller: &str, request: &DecideRequest) -> Result<DecisionView, DecideError> {
        let engine = self.engine();
        let outcome = self.evaluate(&engine, request)?;
        Ok(self.record(caller, &engine, &request.principal, &request.action, &request.resource, outcome))
    }

    /// Decides the request in `body`: a byte-identical repeat is answered from the engine's cache
    /// (the answer is a pure function of the set and the body), anything else parsed and evaluated.
    fn decide_body(&self, caller: &str, body: &JsonBytes) -> Result<DecisionView, ApiError> {
        let engine = self.engine();
        if let Some(hit) = engine.cache().get(&body.0) {
            self.cache_hits.inc();
            let outcome = hit.outcome.clone();
            return Ok(self.record(caller, &engine, &hit.principal, &hit.action, &hit.resource, outcome));
        }
        self.cache_misses.inc();
        let request: DecideRequest = body.parse()?;
        let outcome = self.evaluate(&engine, &request).map_err(decide_error)?;
        engine.cache().put(
            &body.0,
            Cached {
                principal: request.principal.clone(),
                action: request.action.clone(),
                resource: request.resource.clone(),
                outcome: outcome.clone(),
            },
        );
        Ok(self.record(caller, &engine, &request.principal, &request.action, &request.resource, outcome))
    }

    fn evaluate(&self, engine: &Engine, request: &DecideRequest) -> Result<Outcome, DecideError> {
        engine.decide(request).inspect_err(|_| self.errored.inc())
    }

    /// Gives the decision its id and hands it to the log; a decision that must be logged and
    /// cannot be is a deny.
    fn record(
        &self,
        caller: &str,
        engine: &Engine,
        principal: &EntityRef,
        action: &EntityRef,
        resource: &EntityRef,
        outcome: Outcome,
    ) -> DecisionView {
        let id = uuid::Uuid::now_v7();
        let hash = self.hash.get().to_string();
        let mut view = DecisionView {
            decision_id: id.to_string(),
            decision: if outcome.allow { "allow" } else { "deny" }.into(),
            policy_set_version: engine.version(),
            determining_policies: outcome.determining,
            errors: outcome.errors,
            constitutional_hash: hash,
            logged: false,
        };
        let event = || {
            let mut event = AuditEvent::new(
                ServiceName::Consensus.as_str(),
                "consensus.decision",
                &format!("decision:{id}"),
                caller,
                serde_json::json!({
                    "principal": principal,
                    "action": action,
                    "resource": resource,
                    "decision": view.decision,
                    "policy_set_version": view.policy_set_version,
                    "determining_policies": view.determining_policies,
                    "errors": view.errors,
                    "constitutional_hash": view.constitutional_hash,
                }),
            );
            event.event_id = id.to_string();
            event
        };
        let mut allow = outcome.allow;
        match self.log.submit(allow, &id, event) {
            Ok(logged) => view.logged = logged,
            Err(reason) => {
                // Fail closed: a decision that must be logged and cannot be is no allow.
                allow = false;
                view.decision = "deny".into();
                view.determining_policies.clear();
                view.errors.push(reason);
            }
        }
        if allow { &self.allowed } else { &self.denied }.inc();
        view
    }
}

fn decide_error(e: DecideError) -> ApiError {
    ApiError::validation(e.to_string())
}

/// Decides whether a principal may take an action on a resource under the active policy set.
#[utoipa::path(post, path = "/api/v1/decide", tag = "decisions", security(("bearer" = [])), request_body = DecideRequest,
    responses((status = 200, body = DecisionView), (status = 401), (status = 403),
        (status = 422, description = "The request does not fit the schema: no decision")))]
async fn decide(
    State(core): Core,
    caller: Authorized<Deciders>,
    body: JsonBytes,
) -> Result<Json<DecisionView>, ApiError> {
    core.decide_body(&caller.claims.sub, &body).map(Json)
}

/// Up to 100 requests.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    requests: Vec<DecideRequest>,
}

/// One answer of a batch: a decision, or why none could be made.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
enum BatchItem {
    Decision(DecisionView),
    Error { error: String },
}

#[derive(Debug, Serialize, ToSchema)]
struct BatchResponse {
    /// In the order of the requests.
    decisions: Vec<BatchItem>,
}

/// Decides several requests; each answer is a decision or the reason there is none.
#[utoipa::path(post, path = "/api/v1/decide/batch", tag = "decisions", security(("bearer" = [])),
    request_body = BatchRequest,
    responses((status = 200, body = BatchResponse), (status = 401), (status = 403), (status = 422)))]
async fn decide_batch(
    State(core): Core,
    caller: Authorized<Deciders>,
    Json(batch): Json<BatchRequest>,
) -> Result<Json<BatchResponse>, ApiError> {
    if batch.requests.is_empty() || batch.requests.len() > MAX_BATCH {
        return Err(ApiError::validation(format!(
            "a batch has 1 to {MAX_BATCH} requests, not {}",
            batch.requests.len()
        )));
    }
    let decisions = batch
        .requests
        .iter()
        .map(|r| match core.decide_one(&caller.claims.sub, r) {
            Ok(view) => BatchItem::Decision(view),
            Err(e) => BatchItem::Error { error: e.to_string() },
        })
        .collect();
    Ok(Json(BatchResponse { decisions }))
}

// ---------------------------------------------------------------------------------------------
// Policy sets

/// A policy-set version without its texts.
#[derive(Debug, Serialize, ToSchema)]
struct SetSummary {
    version: i64,
    active: bool,
    sha256: String,
    created_at: i64,
    created_by: String,
    proposal_id: Option<String>,
    note: Option<String>,
}

/// A policy-set version with its policies, schema and entities.
#[derive(Debug, Serialize, ToSchema)]
struct SetView {
    #[serde(flatten)]
    summary: SetSummary,
    policies: String,
    schema: String,
    #[schema(value_type = Vec<Object>)]
    entities: serde_json::Value,
}

fn summary(v: &SetVersion, active: i64) -> SetSummary {
    SetSummary {
        version: v.version,
        active: v.version == active,
        sha256: v.sha256.clone(),
        created_at: v.created_at,
        created_by: v.created_by.clone(),
        proposal_id: v.proposal_id.clone(),
        note: v.note.clone(),
    }
}

fn view(v: SetVersion, active: i64) -> SetView {
    SetView {
        summary: summary(&v, active),
        entities: serde_json::from_str(&v.content.entities).unwrap_or(serde_json::Value::Null),
        policies: v.content.policies,
        schema: v.content.schema,
    }
}

/// Every policy-set version, oldest first.
#[utoipa::path(get, path = "/api/v1/policy-sets", tag = "policy sets", security(("bearer" = [])),
    responses((status = 200, body = [SetSummary]), (status = 401)))]
async fn list_sets(State(core): Core, _caller: Principal) -> Result<Json<Vec<SetSummary>>, ApiError> {
    let active = core.engine().version();
    Ok(Json(Store(&core.db).versions().await?.iter().map(|v| summary(v, active)).collect()))
}

/// The active policy set.
#[utoipa::path(get, path = "/api/v1/policy-sets/active", tag = "policy sets", security(("bearer" = [])),
    responses((status = 200, body = SetView), (status = 401)))]
async fn active_set(State(core): Core, _caller: Principal) -> Result<Json<SetView>, ApiError> {
    let active = core.engine().version();
    let v = Store(&core.db)
        .version(active)
        .await?
        .ok_or_else(|| ApiError::internal(format!("the active policy set {active} is not stored")))?;
    Ok(Json(view(v, active)))
}

/// One policy-set version.
#[utoipa::path(get, path = "/api/v1/policy-sets/{version}", tag = "policy sets", security(("bearer" = [])),
    params(("version" = i64, Path)),
    responses((status = 200, body = SetView), (status = 401), (status = 404)))]
async fn get_set(State(core): Core, _caller: Principal, Path(version): Path<i64>) -> Result<Json<SetView>, ApiError> {
    let active = core.engine().version();
    let v = Store(&core.db)
        .version(version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no policy set version {version}")))?;
    Ok(Json(view(v, active)))
}
