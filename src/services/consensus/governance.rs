//! The consensus service's governance routes: proposals and their votes, break-glass, and policy
//! generation.
//!
//! | route | who |
//! |---|---|
//! | `POST /api/v1/proposals` | stewards and admins propose a new set or a rollback |
//! | `GET /api/v1/proposals[/{id}]` | any authenticated caller |
//! | `POST /api/v1/proposals/{id}/votes` | stewards (people, not machine clients), once each |
//! | `POST /api/v1/proposals/{id}/close`, `…/withdraw` | the proposer or an admin |
//! | `POST /api/v1/policy-sets/break-glass` | admins, with a reason |
//! | `POST /api/v1/policies/generate` | stewards, council members and admins |
//!
//! A proposed set is checked when it is posted (Cedar syntax 400 with `line:column`; schema,
//! strict validation, entities and untraced policies 422): what is refused is never stored.
//! Verification then runs in the background; the proposal is `verifying` until it is done.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use super::ConsensusCore;
use super::generate::{self, Intent};
use super::lifecycle::{VOTER_ROLE, change_error, content_error, not_found};
use super::proposals::Status;
use super::store::{Content, Proposal, Store};
use crate::kernel::auth::{Authorized, Principal, Role, RouteRoles, now_secs};
use crate::kernel::error::{ApiError, Json, Path, Query};
use crate::kernel::http::BearerAuth;
use crate::kernel::policy;
use crate::kernel::voting::{Choice, VoteCounts, require_voter};

type Core = State<Arc<ConsensusCore>>;

/// Who may propose policy changes.
pub struct Proposers;
impl RouteRoles for Proposers {
    const ROLES: &'static [Role] = &[Role::Steward, Role::Admin];
}

/// Who may generate policy text.
pub struct Authors;
impl RouteRoles for Authors {
    const ROLES: &'static [Role] = &[Role::Steward, Role::Council, Role::Admin];
}

/// Admins only.
pub struct Admins;
impl RouteRoles for Admins {
    const ROLES: &'static [Role] = &[Role::Admin];
}

pub fn router(core: Arc<ConsensusCore>) -> Router {
    Router::new()
        .route("/api/v1/proposals", get(list).post(propose))
        .route("/api/v1/proposals/{id}", get(one))
        .route("/api/v1/proposals/{id}/votes", post(vote))
        .route("/api/v1/proposals/{id}/close", post(close))
        .route("/api/v1/proposals/{id}/withdraw", post(withdraw))
        .route("/api/v1/policy-sets/break-glass", post(break_glass))
        .route("/api/v1/policies/generate", post(generate_policy))
        .with_state(core)
}

#[derive(OpenApi)]
#[openapi(
    paths(propose, list, one, vote, close, withdraw, break_glass, generate_policy),
    components(schemas(NewProposal, ProposalView, Status, VoteRequest, Choice, VoteCounts, VoteReceipt, BreakGlass,
        Intent, generate::Effect, generate::Scope, generate::Condition, GeneratedView)),
    modifiers(&BearerAuth)
)]
struct GovernanceApi;

pub fn openapi() -> utoipa::openapi::OpenApi {
    GovernanceApi::openapi()
}

/// A policy-set change: a whole new set, or the content of an earlier version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewProposal {
    title: String,
    rationale: String,
    /// The new set's Cedar policies (every one annotated `@id` and `@principle`).
    #[serde(default)]
    policies: Option<String>,
    /// Its schema in Cedar schema syntax; default: the active set's.
    #[serde(default)]
    schema: Option<String>,
    /// Its entities (Cedar entity JSON); default: the active set's.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    entities: Option<Vec<serde_json::Value>>,
    /// Instead of `policies`: restore the content of this version.
    #[serde(default)]
    rollback_to: Option<i64>,
}

/// Policies, schema and entities of a change; `None` when it names neither a set nor a version.
async fn content_of(
    core: &ConsensusCore,
    policies: Option<String>,
    schema: Option<String>,
    entities: Option<Vec<serde_json::Value>>,
    rollback_to: Option<i64>,
) -> Result<Content, ApiError> {
    match (policies, rollback_to) {
        (Some(_), Some(_)) => Err(ApiError::validation("give \"policies\" or \"rollback_to\", not both")),
        (None, None) => Err(ApiError::validation("a change needs \"policies\" (Cedar text) or \"rollback_to\"")),
        (None, Some(version)) => {
            if schema.is_some() || entities.is_some() {
                return Err(ApiError::validation("a rollback restores a version whole: no \"schema\" or \"entities\""));
            }
            let v = Store(&core.db)
                .version(version)
                .await?
                .ok_or_else(|| ApiError::not_found(format!("no policy set version {version} to roll back to")))?;
            Ok(v.content)
        }
        (Some(policies), None) => {
            let active = core.active_content().await?;
            let entities = match entities {
                Some(list) => serde_json::to_string(&list).map_err(|e| ApiError::internal(e.to_string()))?,
                None => active.content.entities,
            };
            Ok(Content { policies, schema: schema.unwrap_or(active.content.schema), entities })
        }
    }
}

fn text_field(name: &str, value: &str, max: usize) -> Result<String, ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().count() > max {
        return Err(ApiError::validation(format!("{name} must be 1-{max} characters")));
    }
    Ok(trimmed.to_string())
}

/// A proposal with its votes so far.
#[derive(Debug, Serialize, ToSchema)]
struct ProposalView {
    id: String,
    title: String,
    rationale: String,
    proposer: String,
    proposer_name: Option<String>,
    /// The active version it was written against.
    base_version: i64,
    /// For a rollback, the version whose content it restores.
    rollback_to: Option<i64>,
    status: Status,
    /// SHA-256 of the proposed content (as policy-set versions name theirs).
    sha256: String,
    /// The proposed texts (in single-proposal answers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    policies: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    schema: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    entities: Option<serde_json::Value>,
    created_at: i64,
    opened_at: Option<i64>,
    deadline: Option<i64>,
    closed_at: Option<i64>,
    votes: VoteCounts,
    /// The verification report once verified (see the verification service).
    #[schema(value_type = Option<Object>)]
    verification: Option<serde_json::Value>,
    /// The tally at close, or why it failed or expired.
    #[schema(value_type = Option<Object>)]
    outcome: Option<serde_json::Value>,
    /// The policy-set version its approval created.
    activated_version: Option<i64>,
}

fn view(p: Proposal, votes: VoteCounts, full: bool) -> ProposalView {
    let sha256 = p.content.sha256();
    let (policies, schema, entities) = if full {
        let entities = serde_json::from_str(&p.content.entities).unwrap_or(serde_json::Value::Null);
        (Some(p.content.policies), Some(p.content.schema), Some(entities))
    } else {
        (None, None, None)
    };
    ProposalView {
        id: p.id,
        title: p.title,
        rationale: p.rationale,
        proposer: p.proposer,
        proposer_name: p.proposer_name,
        base_version: p.base_version,
        rollback_to: p.rollback_to,
        status: p.status,
        sha256,
        policies,
        schema,
        entities,
        created_at: p.created_at,
        opened_at: p.opened_at,
        deadline: p.deadline,
        closed_at: p.closed_at,
        votes,
        verification: if full { p.verification } else { None },
        outcome: p.outcome,
        activated_version: p.activated_version,
    }
}

async fn full_view(core: &ConsensusCore, p: Proposal) -> Result<ProposalView, ApiError> {
    let votes = Store(&core.db).counts(&p.id).await?;
    Ok(view(p, votes, true))
}

async fn load(core: &ConsensusCore, id: &str) -> Result<Proposal, ApiError> {
    Store(&core.db).proposal(id).await?.ok_or_else(|| not_found(id))
}

/// Proposes a change of the active policy set. It is checked now, stored as `verifying`, and
/// verified against the constitution in the background; only a set with every invariant proved
/// goes to the stewards' vote.
#[utoipa::path(post, path = "/api/v1/proposals", tag = "proposals", request_body = NewProposal,
    responses((status = 201, body = ProposalView), (status = 400, description = "Cedar syntax, with line:column"),
        (status = 403), (status = 404, description = "rollback_to names no version"),
        (status = 413, description = "a text over 8 MiB"),
        (status = 422, description = "schema, strict validation, entities, untraced policies, or no change")),
    security(("bearer" = [])))]
async fn propose(
    State(core): Core,
    caller: Authorized<Proposers>,
    Json(p): Json<NewProposal>,
) -> Result<impl IntoResponse, ApiError> {
    let title = text_field("title", &p.title, 200)?;
    let rationale = text_field("rationale", &p.rationale, 20_000)?;
    let content = content_of(&core, p.policies, p.schema, p.entities, p.rollback_to).await?;
    let constitution = core.constitution().await?;
    core.check_content(&content, &constitution.document).map_err(content_error)?;
    let active = core.active_content().await?;
    if content == active.content {
        return Err(ApiError::validation(format!(
            "the change leaves the policy set as it is (version {} is active)",
            active.version
        )));
    }
    let now = now_secs() as i64;
    let proposal = Proposal {
        id: uuid::Uuid::now_v7().to_string(),
        title,
        rationale,
        proposer: caller.claims.sub.clone(),
        proposer_name: caller.claims.name.clone(),
        base_version: active.version,
        content,
        rollback_to: p.rollback_to,
        status: Status::Verifying,
        verification: None,
        created_at: now,
        updated_at: now,
        opened_at: None,
        deadline: None,
        closed_at: None,
        outcome: None,
        activated_version: None,
    };
    Store(&core.db).insert_proposal(&proposal).await?;
    core.wake.notify_one();
    Ok((StatusCode::CREATED, Json(view(proposal, VoteCounts::default(), true))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    limit: Option<u32>,
}

/// Proposals, newest first, optionally by status (without their texts and reports).
#[utoipa::path(get, path = "/api/v1/proposals", tag = "proposals",
    params(("status" = Option<String>, Query), ("limit" = Option<u32>, Query, description = "1-1000, default 100")),
    responses((status = 200, body = Vec<ProposalView>)), security(("bearer" = [])))]
async fn list(
    State(core): Core,
    _caller: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            Status::parse(s)
                .ok_or_else(|| ApiError::bad_request(format!("unknown status {s:?}: use {}", Status::names())))?,
        ),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be 1..=1000"));
    }
    let mut out = Vec::new();
    for p in Store(&core.db).proposals(status, i64::from(limit)).await? {
        let votes = Store(&core.db).counts(&p.id).await?;
        out.push(view(p, votes, false));
    }
    Ok(Json(serde_json::json!({ "proposals": out })))
}

/// One proposal with its texts, verification report, votes and outcome.
#[utoipa::path(get, path = "/api/v1/proposals/{id}", tag = "proposals", params(("id" = String, Path)),
    responses((status = 200, body = ProposalView), (status = 404)), security(("bearer" = [])))]
async fn one(State(core): Core, _caller: Principal, Path(id): Path<String>) -> Result<Json<ProposalView>, ApiError> {
    let p = load(&core, &id).await?;
    Ok(Json(full_view(&core, p).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VoteRequest {
    choice: Choice,
}

#[derive(Debug, Serialize, ToSchema)]
struct VoteReceipt {
    proposal_id: String,
    choice: Choice,
    votes: VoteCounts,
}

/// Casts the caller's vote: stewards only, once each, while voting is open.
#[utoipa::path(post, path = "/api/v1/proposals/{id}/votes", tag = "proposals", request_body = VoteRequest,
    params(("id" = String, Path)),
    responses((status = 201, body = VoteReceipt), (status = 403, description = "not a steward, or a machine client"),
        (status = 404), (status = 409, description = "already voted, or not in voting")),
    security(("bearer" = [])))]
async fn vote(
    State(core): Core,
    caller: Principal,
    Path(id): Path<String>,
    Json(request): Json<VoteRequest>,
) -> Result<impl IntoResponse, ApiError> {
    require_voter(&caller, VOTER_ROLE, "policy proposals")?;
    let votes = Store(&core.db)
        .vote(&id, &caller.claims.sub, caller.claims.name.as_deref(), request.choice, now_secs() as i64)
        .await
        .map_err(change_error)?;
    Ok((StatusCode::CREATED, Json(VoteReceipt { proposal_id: id, choice: request.choice, votes })))
}

fn require_proposer_or_admin(caller: &Principal, p: &Proposal) -> Result<(), ApiError> {
    if caller.has(Role::Admin) || caller.claims.sub == p.proposer {
        Ok(())
    } else {
        Err(ApiError::forbidden("only the proposer of this proposal or an admin may do this"))
    }
}

/// Closes voting and tallies under the constitution's rules over the enabled stewards: approved
/// proposals are activated at once (the next decision uses them), the rest rejected, or expired
/// when the active set or the constitution changed since. Also happens by itself at the deadline.
#[utoipa::path(post, path = "/api/v1/proposals/{id}/close", tag = "proposals", params(("id" = String, Path)),
    responses((status = 200, body = ProposalView), (status = 403), (status = 404),
        (status = 409, description = "not in voting"),
        (status = 503, description = "the number of stewards or the constitution cannot be had")),
    security(("bearer" = [])))]
async fn close(State(core): Core, caller: Principal, Path(id): Path<String>) -> Result<Json<ProposalView>, ApiError> {
    let p = load(&core, &id).await?;
    require_proposer_or_admin(&caller, &p)?;
    if p.status != Status::Voting {
        return Err(ApiError::conflict(format!(
            "proposal {id} is {}; only a proposal in voting can be closed",
            p.status.as_str()
        )));
    }
    let closed = core.close(&id, &caller.claims.sub).await?;
    Ok(Json(full_view(&core, closed.proposal).await?))
}

/// Withdraws a proposal that is verifying or voting.
#[utoipa::path(post, path = "/api/v1/proposals/{id}/withdraw", tag = "proposals", params(("id" = String, Path)),
    responses((status = 200, body = ProposalView), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = [])))]
async fn withdraw(
    State(core): Core,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Json<ProposalView>, ApiError> {
    let p = load(&core, &id).await?;
    require_proposer_or_admin(&caller, &p)?;
    let p = Store(&core.db).withdraw(&id, &caller.claims.sub, now_secs() as i64).await.map_err(change_error)?;
    Ok(Json(full_view(&core, p).await?))
}

/// An emergency activation without a vote.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BreakGlass {
    /// Why, for the log (required).
    reason: String,
    #[serde(default)]
    policies: Option<String>,
    #[serde(default)]
    schema: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    entities: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    rollback_to: Option<i64>,
}

/// Activates a set at once, without a vote (admins; audited with the reason). The set is still
/// verified first: one that fails validation or breaks an invariant is refused; only the proof
/// may be missing (no solver, time-out).
#[utoipa::path(post, path = "/api/v1/policy-sets/break-glass", tag = "policy sets", request_body = BreakGlass,
    responses((status = 201, description = "The activated version"), (status = 400), (status = 403),
        (status = 422, description = "invalid, or refuted against an invariant"),
        (status = 503, description = "no verification could be had")),
    security(("bearer" = [])))]
async fn break_glass(
    State(core): Core,
    caller: Authorized<Admins>,
    Json(b): Json<BreakGlass>,
) -> Result<impl IntoResponse, ApiError> {
    let reason = text_field("reason", &b.reason, 2_000)?;
    let content = content_of(&core, b.policies, b.schema, b.entities, b.rollback_to).await?;
    let v = core.break_glass(&content, &caller.claims.sub, &reason).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "version": v.version, "sha256": v.sha256, "note": v.note, "active": true })),
    ))
}

/// A generated policy.
#[derive(Debug, Serialize, ToSchema)]
struct GeneratedView {
    id: String,
    principle: String,
    /// Cedar text, strictly valid against the active set's schema.
    policy: String,
}

/// Writes a principle's structured intent out as a Cedar policy that names the principle, and
/// checks it against the active set's schema. Nothing is stored or activated: put the text into a
/// proposal.
#[utoipa::path(post, path = "/api/v1/policies/generate", tag = "policies", request_body = Intent,
    responses((status = 200, body = GeneratedView), (status = 403),
        (status = 422, description = "unknown principle, malformed intent, or the policy does not fit the schema")),
    security(("bearer" = [])))]
async fn generate_policy(
    State(core): Core,
    _caller: Authorized<Authors>,
    Json(intent): Json<Intent>,
) -> Result<Json<GeneratedView>, ApiError> {
    let constitution = core.constitution().await?;
    if !constitution.document.principles.iter().any(|p| p.id == intent.principle) {
        return Err(ApiError::validation(format!(
            "the active constitution (version {}) has no principle {:?}",
            constitution.version, intent.principle
        )));
    }
    let generated = generate::generate(&intent).map_err(|e| ApiError::validation(e.0))?;
    let active = core.active_content().await?;
    let schema = policy::parse_schema(&active.content.schema).map_err(|e| ApiError::internal(e.to_string()))?;
    let set = policy::parse_policies(&generated.text).map_err(|e| e.to_api_error("generated policy"))?;
    policy::validate(&set, &generated.text, &schema).map_err(|e| {
        ApiError::validation(format!(
            "the generated policy does not fit the active schema: {e}\n{}",
            generated.text.trim_end()
        ))
    })?;
    Ok(Json(GeneratedView { id: generated.id, principle: intent.principle, policy: generated.text }))
}
