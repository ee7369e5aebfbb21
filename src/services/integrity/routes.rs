//! The integrity service's HTTP routes and their OpenAPI description.
//!
//! Every `GET` is public: the log exists so that anyone can verify it. Entries carry their exact
//! leaf bytes (`leaf`, base64) and `leaf_hash`, proofs are lists of base64 SHA-256 values in RFC
//! 9162 order, and the checkpoint is the signed note's text. Appending (`POST /api/v1/log/entries`)
//! takes the `service` or `admin` role.
//!
//! Status codes: an entry index that does not exist is 404 (`GET /entries/{index}` names a
//! resource); an out-of-range *parameter* (`from` beyond the log, `tree_size` beyond the log,
//! `from > to`, a `limit` outside 1..=1000) is 400, because the collection exists and the request
//! asks for something the log's current size cannot answer. `from` equal to the size is an empty
//! page (200), so a follower can poll the next index.
//!
//! `POST /api/v1/log/checkpoint/verify` takes a checkpoint someone holds (an auditor's last one,
//! a witness's copy) and answers whether this log signed it and still agrees with it, with the
//! consistency proof to the current head. A note that does not verify with the log's key is 422;
//! one that verifies but names another tree than this log's is 409 and logged as an alarm: the
//! log was rewritten or its key used elsewhere.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::IntegrityCore;
use super::log::{AuditEvent, Entry, LogError, MAX_PAGE};
use crate::kernel::auth::{Authorized, ServicesAndAdmins};
use crate::kernel::error::{ApiError, Json, Path, Query};
use crate::kernel::http::BearerAuth;

type Core = State<Arc<IntegrityCore>>;

/// The default page size of `/entries` and `/search`.
const DEFAULT_LIMIT: u64 = 100;

pub fn router(core: Arc<IntegrityCore>) -> Router {
    Router::new()
        .route("/api/v1/log/checkpoint", get(checkpoint))
        .route("/api/v1/log/checkpoint/verify", post(verify_checkpoint))
        .route("/api/v1/log/public-key", get(public_key))
        .route("/api/v1/log/entries", get(list_entries).post(append))
        .route("/api/v1/log/entries/{index}", get(get_entry))
        .route("/api/v1/log/proof/inclusion", get(inclusion))
        .route("/api/v1/log/proof/consistency", get(consistency))
        .route("/api/v1/log/search", get(search))
        .with_state(core)
}

#[derive(OpenApi)]
#[openapi(
    paths(checkpoint, verify_checkpoint, public_key, list_entries, append, get_entry, inclusion, consistency, search),
    components(schemas(CheckpointCheck, EntryView, EntryPage, InclusionProof, ConsistencyProof, AppendRequest, AppendResponse,
        AppendedView)),
    modifiers(&BearerAuth)
)]
struct IntegrityApi;

pub fn openapi() -> utoipa::openapi::OpenApi {
    IntegrityApi::openapi()
}

/// A log error as the caller sees it: theirs is 400 (422 for a refused event), ours 500.
fn log_error(e: LogError) -> ApiError {
    match e {
        LogError::InvalidEvent(_) => ApiError::validation(e.to_string()),
        e if e.is_client_error() => ApiError::bad_request(e.to_string()),
        e => ApiError::internal(e),
    }
}

/// Reads run on the blocking pool: redb look-ups are short but synchronous.
async fn read<T: Send + 'static>(
    core: Arc<IntegrityCore>,
    f: impl FnOnce(&IntegrityCore) -> Result<T, LogError> + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(move || f(&core)).await.map_err(|e| LogError::Storage(e.to_string()))?
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

fn check_limit(limit: Option<u64>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_PAGE as u64 {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_PAGE}, not {limit}")));
    }
    Ok(limit as usize)
}

// ---------------------------------------------------------------------------------------------
// Checkpoint and key

/// The latest signed checkpoint: a C2SP `tlog-checkpoint` inside a `signed-note`.
#[utoipa::path(get, path = "/api/v1/log/checkpoint", tag = "log",
    responses((status = 200, description = "The signed note", content_type = "text/plain")))]
async fn checkpoint(State(core): Core) -> Response {
    text(core.checkpoint().note.clone())
}

/// The longest checkpoint note accepted for verification.
const MAX_NOTE: usize = 16 * 1024;

/// What this log says about a checkpoint it signed.
#[derive(Debug, Serialize, ToSchema)]
struct CheckpointCheck {
    /// The checkpoint's own tree.
    origin: String,
    size: u64,
    /// Base64 root hash.
    root: String,
    /// This log's tree now.
    current_size: u64,
    current_root: String,
    /// The consistency proof from `size` to `current_size` (base64, RFC 9162 §2.1.4 order).
    consistency: Vec<String>,
}

/// Checks a checkpoint (the signed note's text, as `text/plain`): signed by this log's key, for
/// this origin, of a tree this log really has. Answers the consistency proof to the current head.
#[utoipa::path(post, path = "/api/v1/log/checkpoint/verify", tag = "log",
    request_body(content = String, content_type = "text/plain", description = "The signed note"),
    responses((status = 200, body = CheckpointCheck),
        (status = 400, description = "Not a checkpoint note, or a size beyond the log"),
        (status = 409, description = "Signed by this log's key but not this log's tree: an alarm"),
        (status = 422, description = "The signature does not verify with this log's key, or another origin")))]
async fn verify_checkpoint(State(core): Core, body: axum::body::Bytes) -> Result<Json<CheckpointCheck>, ApiError> {
    use super::note::{self, NoteError};
    if body.len() > MAX_NOTE {
        return Err(ApiError::bad_request(format!("a checkpoint note is at most {MAX_NOTE} bytes")));
    }
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::bad_request("the note is not UTF-8"))?;
    let cp = match note::verify_checkpoint(text, &core.verifier(), None) {
        Ok(cp) => cp,
        Err(e @ (NoteError::MalformedNote(_) | NoteError::MalformedCheckpoint(_))) => {
            return Err(ApiError::bad_request(e.to_string()));
        }
        Err(e) => {
            return Err(ApiError::validation(format!("this log did not sign that checkpoint: {e}")));
        }
    };
    if cp.origin != core.origin() {
        return Err(ApiError::validation(format!(
            "the checkpoint is for origin {:?}, this log is {:?}",
            cp.origin,
            core.origin()
        )));
    }
    let size = cp.size;
    let (current_size, current_root, root_then, proof) = read(core, move |c| {
        let (current_size, current_root) = c.log().head()?;
        let root_then = c.log().root(size)?;
        let proof = c.log().consistency_proof(size, current_size)?;
        Ok((current_size, current_root, root_then, proof))
    })
    .await
    .map_err(log_error)?;
    if root_then != cp.root {
        tracing::error!(
            size,
            signed_root = %b64(&cp.root),
            log_root = %b64(&root_then),
            "a checkpoint signed with this log's key names another tree: the log was rewritten or the key leaked"
        );
        return Err(ApiError::conflict(format!(
            "the checkpoint is signed with this log's key but its root for {size} entries is {}, while this log's is {}",
            b64(&cp.root),
            b64(&root_then)
        )));
    }
    Ok(Json(CheckpointCheck {
        origin: cp.origin,
        size,
        root: b64(&cp.root),
        current_size,
        current_root: b64(&current_root),
        consistency: proof.iter().map(|h| b64(h)).collect(),
    }))
}

/// The note verifier key checkpoints verify with (`<name>+<hex id>+<base64 key>`).
#[utoipa::path(get, path = "/api/v1/log/public-key", tag = "log",
    responses((status = 200, description = "The verifier key", content_type = "text/plain")))]
async fn public_key(State(core): Core) -> Response {
    text(core.verifier_key())
}

// ---------------------------------------------------------------------------------------------
// Entries

/// One log entry: its exact leaf bytes, their RFC 9162 leaf hash, and the event they encode.
#[derive(Debug, Serialize, ToSchema)]
struct EntryView {
    index: u64,
    /// Base64 of the exact leaf bytes (the event's canonical JSON).
    leaf: String,
    /// Base64 of SHA-256(0x00 || leaf).
    leaf_hash: String,
    /// The event the leaf encodes; `null` when the stored leaf is not an event (a damaged entry:
    /// it is still served as stored, so that verifiers see the damage).
    #[schema(value_type = Object, nullable)]
    event: Option<AuditEvent>,
}

impl EntryView {
    fn new(entry: Entry) -> EntryView {
        let event = match entry.event() {
            Ok(event) => Some(event),
            Err(e) => {
                tracing::error!(index = entry.index, error = %e, "integrity log entry is not an audit event");
                None
            }
        };
        EntryView { index: entry.index, leaf: b64(&entry.leaf), leaf_hash: b64(&entry.leaf_hash), event }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct EntryPage {
    entries: Vec<EntryView>,
}

fn page(entries: Vec<Entry>) -> Json<EntryPage> {
    Json(EntryPage { entries: entries.into_iter().map(EntryView::new).collect() })
}

/// Entry `index`.
#[utoipa::path(get, path = "/api/v1/log/entries/{index}", tag = "log",
    params(("index" = u64, Path, description = "Entry index, from 0")),
    responses((status = 200, body = EntryView), (status = 404, description = "No such entry")))]
async fn get_entry(State(core): Core, Path(index): Path<u64>) -> Result<Json<EntryView>, ApiError> {
    match read(core, move |c| c.log().entry(index)).await {
        Ok(entry) => Ok(Json(EntryView::new(entry))),
        Err(e @ LogError::IndexOutOfRange { .. }) => Err(ApiError::not_found(e.to_string())),
        Err(e) => Err(log_error(e)),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    /// First index (default 0); equal to the size gives an empty page, beyond it is 400.
    from: Option<u64>,
    /// At most this many entries: 1..=1000, default 100.
    limit: Option<u64>,
}

/// Up to `limit` entries from `from` on.
#[utoipa::path(get, path = "/api/v1/log/entries", tag = "log", params(PageQuery),
    responses((status = 200, body = EntryPage), (status = 400, description = "from beyond the log, or a bad limit")))]
async fn list_entries(State(core): Core, Query(q): Query<PageQuery>) -> Result<Json<EntryPage>, ApiError> {
    let limit = check_limit(q.limit)?;
    let from = q.from.unwrap_or(0);
    Ok(page(read(core, move |c| c.log().entries(from, limit)).await.map_err(log_error)?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct SearchQuery {
    /// The subject, e.g. `user:<id>`.
    subject: String,
    /// At most this many entries: 1..=1000, default 100.
    limit: Option<u64>,
}

/// Entries about a subject, oldest first.
#[utoipa::path(get, path = "/api/v1/log/search", tag = "log", params(SearchQuery),
    responses((status = 200, body = EntryPage), (status = 400, description = "No subject, or a bad limit")))]
async fn search(State(core): Core, Query(q): Query<SearchQuery>) -> Result<Json<EntryPage>, ApiError> {
    let limit = check_limit(q.limit)?;
    if q.subject.is_empty() {
        return Err(ApiError::bad_request("subject must not be empty"));
    }
    Ok(page(read(core, move |c| c.log().search(&q.subject, limit)).await.map_err(log_error)?))
}

// ---------------------------------------------------------------------------------------------
// Proofs

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct InclusionQuery {
    index: u64,
    tree_size: u64,
}

#[derive(Debug, Serialize, ToSchema)]
struct InclusionProof {
    index: u64,
    tree_size: u64,
    leaf_hash: String,
    /// Base64 SHA-256 values, RFC 9162 §2.1.3 order.
    hashes: Vec<String>,
}

/// The inclusion proof of entry `index` in the tree of the first `tree_size` entries.
#[utoipa::path(get, path = "/api/v1/log/proof/inclusion", tag = "log", params(InclusionQuery),
    responses((status = 200, body = InclusionProof),
        (status = 400, description = "tree_size beyond the log, or index not below tree_size")))]
async fn inclusion(State(core): Core, Query(q): Query<InclusionQuery>) -> Result<Json<InclusionProof>, ApiError> {
    let (index, tree_size) = (q.index, q.tree_size);
    let (entry, hashes) = read(core, move |c| {
        let hashes = c.log().inclusion_proof(index, tree_size)?;
        Ok((c.log().entry(index)?, hashes))
    })
    .await
    .map_err(log_error)?;
    Ok(Json(InclusionProof {
        index,
        tree_size,
        leaf_hash: b64(&entry.leaf_hash),
        hashes: hashes.iter().map(|h| b64(h)).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    from: u64,
    to: u64,
}

#[derive(Debug, Serialize, ToSchema)]
struct ConsistencyProof {
    from: u64,
    to: u64,
    /// Base64 SHA-256 values, RFC 9162 §2.1.4 order.
    hashes: Vec<String>,
}

/// The consistency proof from the tree of `from` entries to the tree of `to` entries.
#[utoipa::path(get, path = "/api/v1/log/proof/consistency", tag = "log", params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyProof), (status = 400, description = "from > to, or to beyond the log")))]
async fn consistency(State(core): Core, Query(q): Query<ConsistencyQuery>) -> Result<Json<ConsistencyProof>, ApiError> {
    let (from, to) = (q.from, q.to);
    let hashes = read(core, move |c| c.log().consistency_proof(from, to)).await.map_err(log_error)?;
    Ok(Json(ConsistencyProof { from, to, hashes: hashes.iter().map(|h| b64(h)).collect() }))
}

// ---------------------------------------------------------------------------------------------
// Appending

/// Events to append, in order (at most 1000).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AppendRequest {
    #[schema(value_type = Vec<Object>)]
    events: Vec<AuditEvent>,
}

#[derive(Debug, Serialize, ToSchema)]
struct AppendedView {
    event_id: String,
    index: u64,
    /// The event id was already in the log: nothing was appended, `index` is the existing entry.
    duplicate: bool,
}

#[derive(Debug, Serialize, ToSchema)]
struct AppendResponse {
    appended: Vec<AppendedView>,
}

/// Appends events, deduplicated by event id, in one durable commit: how services in other
/// processes deliver their outbox. All or nothing: one refused event appends none.
#[utoipa::path(post, path = "/api/v1/log/entries", tag = "log", security(("bearer" = [])), request_body = AppendRequest,
    responses((status = 200, body = AppendResponse), (status = 401, description = "No valid token"),
        (status = 403, description = "Neither service nor admin"), (status = 422, description = "A refused event")))]
async fn append(
    State(core): Core,
    _caller: Authorized<ServicesAndAdmins>,
    Json(request): Json<AppendRequest>,
) -> Result<Json<AppendResponse>, ApiError> {
    if request.events.len() > MAX_PAGE {
        return Err(ApiError::validation(format!(
            "at most {MAX_PAGE} events per request, not {}",
            request.events.len()
        )));
    }
    let out = core.append(&request.events).await.map_err(log_error)?;
    let appended = request
        .events
        .iter()
        .zip(out)
        .map(|(e, a)| AppendedView { event_id: e.event_id.clone(), index: a.index, duplicate: a.duplicate })
        .collect();
    Ok(Json(AppendResponse { appended }))
}
