//! The constitution service's HTTP routes and their OpenAPI description.
//!
//! Reading the constitution, its versions and diffs needs no token (the text every agent is
//! governed by is public, and its hash is in every response anyway); amendments need a valid token
//! to read and the roles named on each route to change.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::kernel::http::BearerAuth;

use super::model::{self, Change, Diff, Status};
use super::store::{Amendment, Store, Version};
use super::{ConstitutionCore, change_error};
use crate::kernel::auth::{Authorized, Principal, Role, RouteRoles, now_secs};
use crate::kernel::error::{ApiError, Json, Path, Query};
use crate::kernel::voting::{Choice, Tally, VoteCounts, require_voter};

type Core = State<Arc<ConstitutionCore>>;

/// Routes for council members (proposing amendments).
pub struct Council;
impl RouteRoles for Council {
    const ROLES: &'static [Role] = &[Role::Council];
}

pub fn router(core: Arc<ConstitutionCore>) -> Router {
    Router::new()
        .route("/api/v1/constitution", get(active))
        .route("/api/v1/constitution/hash", get(hash))
        .route("/api/v1/constitution/versions", get(versions))
        .route("/api/v1/constitution/versions/{n}", get(version))
        .route("/api/v1/constitution/diff", get(diff))
        .route("/api/v1/amendments", get(list_amendments).post(propose))
        .route("/api/v1/amendments/{id}", get(get_amendment))
        .route("/api/v1/amendments/{id}/open", post(open))
        .route("/api/v1/amendments/{id}/votes", post(vote))
        .route("/api/v1/amendments/{id}/close", post(close))
        .route("/api/v1/amendments/{id}/withdraw", post(withdraw))
        .with_state(core)
}

#[derive(OpenApi)]
#[openapi(
    paths(active, hash, versions, version, diff, list_amendments, propose, get_amendment, open, vote, close, withdraw),
    components(schemas(VersionView, VersionSummary, HashView, Diff, AmendmentView, Proposal, Change, Status,
        VoteRequest, Choice, Tally, VoteCounts, VoteReceipt)),
    modifiers(&BearerAuth)
)]
struct ConstitutionApi;

pub fn openapi() -> utoipa::openapi::OpenApi {
    ConstitutionApi::openapi()
}

// ---------------------------------------------------------------------------------------------
// Versions

/// A version with its document.
#[derive(Debug, Serialize, ToSchema)]
struct VersionView {
    version: i64,
    /// The constitutional hash: the first 16 hex digits of `sha256`.
    hash: String,
    /// SHA-256 over the canonical JSON of `document`.
    sha256: String,
    created_at: i64,
    /// The amendment that made this version (none for version 1).
    amendment_id: Option<String>,
    #[schema(value_type = Object)]
    document: crate::kernel::constitution::Constitution,
}

impl From<Version> for VersionView {
    fn from(v: Version) -> Self {
        VersionView {
            version: v.number,
            hash: v.hash,
            sha256: v.sha256,
            created_at: v.created_at,
            amendment_id: v.amendment_id,
            document: v.document,
        }
    }
}

/// A version without its document.
#[derive(Debug, Serialize, ToSchema)]
struct VersionSummary {
    version: i64,
    hash: String,
    sha256: String,
    created_at: i64,
    amendment_id: Option<String>,
    active: bool,
}

#[derive(Debug, Serialize, ToSchema)]
struct HashView {
    version: i64,
    hash: String,
    sha256: String,
}

/// The active constitution.
#[utoipa::path(get, path = "/api/v1/constitution", tag = "constitution",
    responses((status = 200, body = VersionView)))]
async fn active(State(core): Core) -> Result<Json<VersionView>, ApiError> {
    Ok(Json(core.latest().await?.into()))
}

/// The active version's number and hashes.
#[utoipa::path(get, path = "/api/v1/constitution/hash", tag = "constitution",
    responses((status = 200, body = HashView)))]
async fn hash(State(core): Core) -> Result<Json<HashView>, ApiError> {
    let v = core.latest().await?;
    Ok(Json(HashView { version: v.number, hash: v.hash, sha256: v.sha256 }))
}

/// Every version, oldest first, without documents.
#[utoipa::path(get, path = "/api/v1/constitution/versions", tag = "constitution",
    responses((status = 200, body = Vec<VersionSummary>)))]
async fn versions(State(core): Core) -> Result<Json<serde_json::Value>, ApiError> {
    let all = Store(&core.db).versions().await?;
    let latest = all.last().map_or(0, |v| v.number);
    let list: Vec<VersionSummary> = all
        .into_iter()
        .map(|v| VersionSummary {
            active: v.number == latest,
            version: v.number,
            hash: v.hash,
            sha256: v.sha256,
            created_at: v.created_at,
            amendment_id: v.amendment_id,
        })
        .collect();
    Ok(Json(serde_json::json!({ "versions": list })))
}

async fn load_version(core: &ConstitutionCore, n: i64) -> Result<Version, ApiError> {
    Store(&core.db).version(n).await?.ok_or_else(|| ApiError::not_found(format!("no constitution version {n}")))
}

/// One version with its document.
#[utoipa::path(get, path = "/api/v1/constitution/versions/{n}", tag = "constitution",
    params(("n" = i64, Path, description = "version number, from 1")),
    responses((status = 200, body = VersionView), (status = 404, description = "no such version")))]
async fn version(State(core): Core, Path(n): Path<i64>) -> Result<Json<VersionView>, ApiError> {
    Ok(Json(load_version(&core, n).await?.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffQuery {
    from: i64,
    to: i64,
}

/// What changed from one version to another.
#[utoipa::path(get, path = "/api/v1/constitution/diff", tag = "constitution",
    params(("from" = i64, Query), ("to" = i64, Query)),
    responses((status = 200, body = Diff), (status = 404, description = "no such version")))]
async fn diff(State(core): Core, Query(q): Query<DiffQuery>) -> Result<Json<serde_json::Value>, ApiError> {
    let a = load_version(&core, q.from).await?;
    let b = load_version(&core, q.to).await?;
    let d = model::diff(&a.document, &b.document);
    Ok(Json(serde_json::json!({
        "from": { "version": a.number, "hash": a.hash },
        "to": { "version": b.number, "hash": b.hash },
        "added": d.added,
        "removed": d.removed,
        "changed": d.changed,
        "voting": d.voting,
        "document": d.document,
    })))
}

// ---------------------------------------------------------------------------------------------
// Amendments

#[derive(Debug, Serialize, ToSchema)]
struct AmendmentView {
    id: String,
    title: String,
    rationale: String,
    changes: Vec<Change>,
    /// The proposer's subject (user id).
    proposer: String,
    proposer_name: Option<String>,
    /// The version the changes were written against.
    base_version: i64,
    status: Status,
    created_at: i64,
    opened_at: Option<i64>,
    /// Unix time at which voting ends.
    deadline: Option<i64>,
    closed_at: Option<i64>,
    /// Votes so far.
    votes: VoteCounts,
    /// The tally at close (ratified or rejected).
    outcome: Option<Tally>,
    /// The version a ratification created.
    ratified_version: Option<i64>,
}

fn view(a: Amendment, votes: VoteCounts) -> AmendmentView {
    AmendmentView {
        id: a.id,
        title: a.title,
        rationale: a.rationale,
        changes: a.changes,
        proposer: a.proposer,
        proposer_name: a.proposer_name,
        base_version: a.base_version,
        status: a.status,
        created_at: a.created_at,
        opened_at: a.opened_at,
        deadline: a.deadline,
        closed_at: a.closed_at,
        votes,
        outcome: a.outcome,
        ratified_version: a.ratified_version,
    }
}

async fn with_votes(core: &ConstitutionCore, a: Amendment) -> Result<AmendmentView, ApiError> {
    let counts = Store(&core.db).counts(&a.id).await?;
    Ok(view(a, counts))
}

/// A proposed amendment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Proposal {
    title: String,
    rationale: String,
    changes: Vec<Change>,
}

/// Proposes an amendment (as a draft) against the active version. Its changes are applied to the
/// active version and the result validated now, so a draft is always applicable to its base.
#[utoipa::path(post, path = "/api/v1/amendments", tag = "amendments", request_body = Proposal,
    responses((status = 201, body = AmendmentView), (status = 403, description = "not a council member"),
        (status = 422, description = "the changes do not apply or the result is invalid")),
    security(("bearer" = [])))]
async fn propose(
    State(core): Core,
    caller: Authorized<Council>,
    Json(p): Json<Proposal>,
) -> Result<impl IntoResponse, ApiError> {
    let title = p.title.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ApiError::validation("title must be 1-200 characters"));
    }
    if p.rationale.trim().is_empty() || p.rationale.len() > 20_000 {
        return Err(ApiError::validation("rationale must be 1-20000 bytes"));
    }
    if p.changes.len() > 100 {
        return Err(ApiError::validation("an amendment makes at most 100 changes"));
    }
    let active = core.latest().await?;
    model::apply(&active.document, &p.changes).map_err(ApiError::validation)?;
    let now = now_secs() as i64;
    let a = Amendment {
        id: uuid::Uuid::now_v7().to_string(),
        title: title.to_string(),
        rationale: p.rationale,
        changes: p.changes,
        proposer: caller.claims.sub.clone(),
        proposer_name: caller.claims.name.clone(),
        base_version: active.number,
        status: Status::Draft,
        created_at: now,
        updated_at: now,
        opened_at: None,
        deadline: None,
        closed_at: None,
        outcome: None,
        ratified_version: None,
    };
    Store(&core.db).insert_amendment(&a).await?;
    Ok((StatusCode::CREATED, Json(view(a, VoteCounts::default()))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    limit: Option<u32>,
}

/// Amendments, newest first, optionally by status.
#[utoipa::path(get, path = "/api/v1/amendments", tag = "amendments",
    params(("status" = Option<String>, Query, description = "draft, voting, ratified, rejected, withdrawn or expired"),
        ("limit" = Option<u32>, Query, description = "1-1000, default 100")),
    responses((status = 200, body = Vec<AmendmentView>)), security(("bearer" = [])))]
async fn list_amendments(
    State(core): Core,
    _caller: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown status {s:?}: use draft, voting, ratified, rejected, withdrawn or expired"
            ))
        })?),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("limit must be 1..=1000"));
    }
    let mut list = Vec::new();
    for a in Store(&core.db).amendments(status, i64::from(limit)).await? {
        list.push(with_votes(&core, a).await?);
    }
    Ok(Json(serde_json::json!({ "amendments": list })))
}

async fn load_amendment(core: &ConstitutionCore, id: &str) -> Result<Amendment, ApiError> {
    Store(&core.db).amendment(id).await?.ok_or_else(|| ApiError::not_found(format!("no amendment with id {id}")))
}

/// One amendment with its vote counts and outcome.
#[utoipa::path(get, path = "/api/v1/amendments/{id}", tag = "amendments",
    params(("id" = String, Path)),
    responses((status = 200, body = AmendmentView), (status = 404)), security(("bearer" = [])))]
async fn get_amendment(
    State(core): Core,
    _caller: Principal,
    Path(id): Path<String>,
) -> Result<Json<AmendmentView>, ApiError> {
    let a = load_amendment(&core, &id).await?;
    Ok(Json(with_votes(&core, a).await?))
}

/// The proposer or an admin.
fn require_proposer_or_admin(caller: &Principal, a: &Amendment) -> Result<(), ApiError> {
    if caller.has(Role::Admin) || caller.claims.sub == a.proposer {
        Ok(())
    } else {
        Err(ApiError::forbidden("only the proposer of this amendment or an admin may do this"))
    }
}

/// Opens voting on a draft: the deadline is now plus the active rules' voting period.
#[utoipa::path(post, path = "/api/v1/amendments/{id}/open", tag = "amendments",
    params(("id" = String, Path)),
    responses((status = 200, body = AmendmentView), (status = 403), (status = 404),
        (status = 409, description = "not a draft, or written against an older version")),
    security(("bearer" = [])))]
async fn open(State(core): Core, caller: Principal, Path(id): Path<String>) -> Result<Json<AmendmentView>, ApiError> {
    let a = load_amendment(&core, &id).await?;
    require_proposer_or_admin(&caller, &a)?;
    let active = core.latest().await?;
    if a.status == Status::Draft && a.base_version != active.number {
        return Err(ApiError::conflict(format!(
            "amendment {id} was written against version {} but version {} is active; propose it again",
            a.base_version, active.number
        )));
    }
    let now = now_secs() as i64;
    let deadline = now + i64::from(active.document.voting.voting_period_hours) * 3600;
    let a = Store(&core.db).open(&id, &caller.claims.sub, now, deadline).await.map_err(change_error)?;
    Ok(Json(with_votes(&core, a).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct VoteRequest {
    choice: Choice,
}

#[derive(Debug, Serialize, ToSchema)]
struct VoteReceipt {
    amendment_id: String,
    choice: Choice,
    votes: VoteCounts,
}

/// Casts the caller's vote. Only people holding the active constitution's eligible role vote, once.
#[utoipa::path(post, path = "/api/v1/amendments/{id}/votes", tag = "amendments", request_body = VoteRequest,
    params(("id" = String, Path)),
    responses((status = 201, body = VoteReceipt), (status = 403, description = "not an eligible member"),
        (status = 404), (status = 409, description = "already voted, or not in voting")),
    security(("bearer" = [])))]
async fn vote(
    State(core): Core,
    caller: Principal,
    Path(id): Path<String>,
    Json(request): Json<VoteRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let role = core.latest().await?.document.voting.eligible_role;
    require_voter(&caller, &role, "amendments")?;
    let name = caller.claims.name.as_deref();
    let counts = Store(&core.db)
        .vote(&id, &caller.claims.sub, name, request.choice, now_secs() as i64)
        .await
        .map_err(change_error)?;
    Ok((StatusCode::CREATED, Json(VoteReceipt { amendment_id: id, choice: request.choice, votes: counts })))
}

/// Closes voting and tallies: ratified (and the next version created), rejected, or expired when
/// another amendment changed the constitution meanwhile. Also happens by itself at the deadline.
#[utoipa::path(post, path = "/api/v1/amendments/{id}/close", tag = "amendments",
    params(("id" = String, Path)),
    responses((status = 200, body = AmendmentView), (status = 403), (status = 404),
        (status = 409, description = "not in voting"),
        (status = 503, description = "the number of eligible members cannot be obtained")),
    security(("bearer" = [])))]
async fn close(State(core): Core, caller: Principal, Path(id): Path<String>) -> Result<Json<AmendmentView>, ApiError> {
    let a = load_amendment(&core, &id).await?;
    require_proposer_or_admin(&caller, &a)?;
    if a.status != Status::Voting {
        return Err(ApiError::conflict(format!(
            "amendment {id} is {}; only an amendment in voting can be closed",
            a.status.as_str()
        )));
    }
    let closed = core.close(&id, &caller.claims.sub).await?;
    Ok(Json(with_votes(&core, closed.amendment).await?))
}

/// Withdraws a draft or an amendment in voting.
#[utoipa::path(post, path = "/api/v1/amendments/{id}/withdraw", tag = "amendments",
    params(("id" = String, Path)),
    responses((status = 200, body = AmendmentView), (status = 403), (status = 404), (status = 409)),
    security(("bearer" = [])))]
async fn withdraw(
    State(core): Core,
    caller: Principal,
    Path(id): Path<String>,
) -> Result<Json<AmendmentView>, ApiError> {
    let a = load_amendment(&core, &id).await?;
    require_proposer_or_admin(&caller, &a)?;
    let a = Store(&core.db).withdraw(&id, &caller.claims.sub, now_secs() as i64).await.map_err(change_error)?;
    Ok(Json(with_votes(&core, a).await?))
}
