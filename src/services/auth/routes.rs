//! The auth service's HTTP routes and their OpenAPI description.
//!
//! OAuth endpoints (`/api/v1/auth/token`, `/revoke`, `/introspect`) accept form-encoded bodies as
//! RFC 6749 requires (JSON too) and answer errors in RFC 6749 §5.2's shape; every other route uses
//! JSON bodies with unknown fields refused and the standard `{"error":{…}}` shape.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};

use crate::kernel::http::BearerAuth;

use super::secrets;
use super::store::{Client, Clients, RefreshTokens, User, Users};
use super::tokens::{OAuthError, TokenResponse, no_store};
use super::{AuthCore, audit, check_password};
use crate::kernel::auth::{Admins, Authorized, Principal, Role, ServicesAndAdmins, Verifier, VerifyError, now_secs};
use crate::kernel::error::{ApiError, FormOrJson, Json, Path, Query};
use crate::kernel::storage::StorageError;

type Core = State<Arc<AuthCore>>;

pub fn router(core: Arc<AuthCore>) -> Router {
    Router::new()
        .route("/api/v1/auth/token", post(token))
        .route("/api/v1/auth/revoke", post(revoke))
        .route("/api/v1/auth/introspect", post(introspect))
        .route("/api/v1/auth/keys/rotate", post(rotate_keys))
        .route("/api/v1/auth/revocations", get(revocations))
        .route("/api/v1/roles/{role}/count", get(role_count))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/openid-configuration", get(openid_configuration))
        .route("/api/v1/users/me", get(me))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/users/{id}", get(get_user).patch(update_user).delete(delete_user))
        .route("/api/v1/clients", get(list_clients).post(create_client))
        .route("/api/v1/clients/{id}", get(get_client).patch(update_client).delete(delete_client))
        .with_state(core)
}

#[derive(OpenApi)]
#[openapi(
    paths(
        token, revoke, introspect, rotate_keys, revocations, role_count, jwks, openid_configuration, me,
        list_users, create_user, get_user, update_user, delete_user,
        list_clients, create_client, get_client, update_client, delete_client
    ),
    components(schemas(TokenRequest, TokenResponse, TokenParam, UserView, CreateUser, UpdateUser, ClientView,
        CreateClient, UpdateClient, CreatedClient)),
    modifiers(&BearerAuth)
)]
struct AuthApi;

pub fn openapi() -> utoipa::openapi::OpenApi {
    AuthApi::openapi()
}

// ---------------------------------------------------------------------------------------------
// OAuth 2.0

/// The token request (RFC 6749 §4.3, §4.4, §6). Unrecognised parameters are ignored, as the RFC
/// requires.
#[derive(Debug, Deserialize, ToSchema)]
struct TokenRequest {
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
}

/// Issues tokens for the `password`, `client_credentials` and `refresh_token` grants.
#[utoipa::path(post, path = "/api/v1/auth/token", tag = "oauth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = TokenResponse), (status = 400, description = "RFC 6749 error"),
        (status = 401, description = "invalid_client")))]
async fn token(State(core): Core, headers: HeaderMap, body: Result<FormOrJson<TokenRequest>, ApiError>) -> Response {
    let request = match body {
        Ok(FormOrJson(r)) => r,
        Err(e) if e.status == StatusCode::PAYLOAD_TOO_LARGE || e.status == StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            return e.into_response();
        }
        Err(e) => return OAuthError::invalid_request(e.message).into_response(),
    };
    let result = match request.grant_type.as_deref() {
        Some("password") => {
            core.password_grant(request.username.as_deref().unwrap_or(""), request.password.as_deref().unwrap_or(""))
                .await
        }
        Some("client_credentials") => match client_credentials(&headers, &request) {
            Ok((id, secret)) => core.client_credentials_grant(&id, &secret).await,
            Err(e) => Err(e),
        },
        Some("refresh_token") => core.refresh_grant(request.refresh_token.as_deref().unwrap_or("")).await,
        Some(other) => Err(OAuthError::unsupported_grant_type(other)),
        None => Err(OAuthError::invalid_request("grant_type is required")),
    };
    match result {
        Ok(tokens) => (no_store(), axum::Json(tokens)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1) or the body.
fn client_credentials(headers: &HeaderMap, request: &TokenRequest) -> Result<(String, String), OAuthError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?;
        let Some((scheme, encoded)) = text.split_once(' ') else {
            return Err(OAuthError::invalid_client("malformed Authorization header"));
        };
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(OAuthError::invalid_client("client authentication must use HTTP Basic"));
        }
        let decoded = STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
        let (id, secret) =
            decoded.split_once(':').ok_or_else(|| OAuthError::invalid_client("malformed Basic credentials"))?;
        let unescape = |s: &str| {
            serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}"))
                .ok()
                .and_then(|v| v.into_iter().next())
                .map(|(_, v)| v)
                .unwrap_or_else(|| s.to_string())
        };
        return Ok((unescape(id), unescape(secret)));
    }
    match (&request.client_id, &request.client_secret) {
        (Some(id), Some(secret)) => Ok((id.clone(), secret.clone())),
        _ => Err(OAuthError::invalid_client("client_id and client_secret are required (HTTP Basic or body)")),
    }
}

/// A token parameter for revocation and introspection.
#[derive(Debug, Deserialize, ToSchema)]
struct TokenParam {
    token: Option<String>,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

/// Revokes an access or refresh token (RFC 7009). Holding a token is authority enough to revoke
/// it; the answer is 200 whether or not the token was valid, as the RFC requires.
#[utoipa::path(post, path = "/api/v1/auth/revoke", tag = "oauth",
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Revoked, or was not valid anyway")))]
async fn revoke(
    State(core): Core,
    Extension(verifier): Extension<Arc<Verifier>>,
    body: Result<FormOrJson<TokenParam>, ApiError>,
) -> Response {
    let token = match body {
        Ok(FormOrJson(TokenParam { token: Some(t), .. })) if !t.is_empty() && t.len() <= 8192 => t,
        Ok(_) => return OAuthError::invalid_request("token is required").into_response(),
        Err(e) => return OAuthError::invalid_request(e.message).into_response(),
    };
    let result = if looks_like_jwt(&token) {
        match verifier.verify(&token).await {
            Ok(claims) => core.revoke_access(&claims.jti, claims.exp, &claims.sub).await,
            // Whether the token is valid cannot be told right now: not "revoked".
            Err(VerifyError::KeysUnavailable(why) | VerifyError::RevocationsUnavailable(why)) => {
                Err(StorageError::Unavailable(why))
            }
            Err(_) => Ok(()),
        }
    } else {
        revoke_refresh_family(&core, &token).await
    };
    match result {
        Ok(()) => (StatusCode::OK, no_store()).into_response(),
        Err(e) => OAuthError::from(e).into_response(),
    }
}

/// Revokes the family of a refresh token, if the token is known.
async fn revoke_refresh_family(core: &AuthCore, token: &str) -> Result<(), StorageError> {
    let Some((family, user_id)) = RefreshTokens(&core.db).family_of(&secrets::digest(token)).await? else {
        return Ok(());
    };
    let mut tx = core.db.begin().await?;
    if RefreshTokens::revoke_family(&mut tx, &family, now_secs() as i64).await? > 0 {
        let data = serde_json::json!({ "reason": "revoked by its holder" });
        audit(&mut tx, "auth.token.revoked", &format!("refresh_family:{family}"), &user_id, data).await?;
    }
    tx.commit().await
}

/// Introspects a token (RFC 7662). Needs the `service` or `admin` role; answers
/// `{"active": false}` for anything not currently valid.
#[utoipa::path(post, path = "/api/v1/auth/introspect", tag = "oauth", security(("bearer" = [])),
    request_body(content = TokenParam, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "RFC 7662 introspection response"), (status = 401), (status = 403)))]
async fn introspect(
    State(core): Core,
    _caller: Authorized<ServicesAndAdmins>,
    Extension(verifier): Extension<Arc<Verifier>>,
    body: Result<FormOrJson<TokenParam>, ApiError>,
) -> Response {
    let token = match body {
        Ok(FormOrJson(TokenParam { token: Some(t), .. })) if !t.is_empty() => t,
        Ok(_) => return OAuthError::invalid_request("token is required").into_response(),
        Err(e) => return OAuthError::invalid_request(e.message).into_response(),
    };
    let inactive = || (no_store(), axum::Json(serde_json::json!({ "active": false }))).into_response();
    if token.len() > 8192 {
        return inactive();
    }
    if looks_like_jwt(&token) {
        return match verifier.verify(&token).await {
            Ok(c) => (
                no_store(),
                axum::Json(serde_json::json!({
                    "active": true,
                    "token_type": "access_token",
                    "scope": c.roles.join(" "),
                    "roles": c.roles,
                    "sub": c.sub,
                    "username": c.name,
                    "client_id": c.client_id,
                    "iss": c.iss,
                    "aud": c.aud,
                    "exp": c.exp,
                    "iat": c.iat,
                    "jti": c.jti,
                })),
            )
                .into_response(),
            Err(_) => inactive(),
        };
    }
    let now = now_secs() as i64;
    match RefreshTokens(&core.db).active(&secrets::digest(&token), now).await {
        Ok(Some((user_id, exp))) => (
            no_store(),
            axum::Json(serde_json::json!({
                "active": true, "token_type": "refresh_token", "sub": user_id, "exp": exp, "iss": core.settings.issuer,
            })),
        )
            .into_response(),
        Ok(None) => inactive(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Rotates the signing key; the previous key stays in the JWKS.
#[utoipa::path(post, path = "/api/v1/auth/keys/rotate", tag = "keys", security(("bearer" = [])),
    responses((status = 200, description = "New and previous key ids"), (status = 401), (status = 403)))]
async fn rotate_keys(State(core): Core, principal: Authorized<Admins>) -> Result<Response, ApiError> {
    let (kid, previous) = core.keys.rotate(&core.db, &principal.claims.sub).await.map_err(ApiError::internal)?;
    core.bus.publish(crate::kernel::bus::subjects::KEYS_ROTATED, serde_json::json!({ "kid": kid }));
    tracing::info!(%kid, %previous, by = %principal.claims.sub, "signing key rotated");
    Ok(axum::Json(serde_json::json!({ "kid": kid, "previous_kid": previous })).into_response())
}

/// Revoked access tokens that have not expired yet, for verifiers in other processes. Token ids
/// reveal nothing about the tokens.
#[utoipa::path(get, path = "/api/v1/auth/revocations", tag = "keys",
    responses((status = 200, description = "`{\"revoked\": [{\"jti\": …, \"exp\": …}]}`")))]
async fn revocations(State(core): Core) -> Result<Response, ApiError> {
    let list = core.live_revocations().await?;
    let revoked: Vec<_> = list.into_iter().map(|(jti, exp)| serde_json::json!({ "jti": jti, "exp": exp })).collect();
    Ok(axum::Json(serde_json::json!({ "revoked": revoked })).into_response())
}

/// How many enabled users hold `role`: the electorate of a vote, for the constitution and
/// consensus services in other processes (services and admins).
#[utoipa::path(get, path = "/api/v1/roles/{role}/count", tag = "users", security(("bearer" = [])),
    params(("role" = String, Path, description = "admin, council, steward, auditor, agent or service")),
    responses((status = 200, description = "`{\"role\": …, \"count\": …}`"), (status = 401), (status = 403),
        (status = 404, description = "no such role")))]
async fn role_count(
    State(core): Core,
    _caller: Authorized<ServicesAndAdmins>,
    Path(role): Path<String>,
) -> Result<Response, ApiError> {
    let role: Role = role.parse().map_err(ApiError::not_found)?;
    let count = core.count_with_role(role.as_str()).await?;
    Ok(axum::Json(serde_json::json!({ "role": role.as_str(), "count": count })).into_response())
}

/// The public keys that verify access tokens (RFC 7517).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "keys", responses((status = 200, description = "JWK set")))]
async fn jwks(State(core): Core) -> Response {
    ([(header::CACHE_CONTROL, "public, max-age=60")], axum::Json(core.jwks_json())).into_response()
}

/// Discovery metadata (OpenID Connect Discovery / RFC 8414 shape).
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "keys", responses((status = 200)))]
async fn openid_configuration(State(core): Core, headers: HeaderMap) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.len() <= 255 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)))
        .unwrap_or("127.0.0.1:8000");
    let base = format!("http://{host}");
    axum::Json(serde_json::json!({
        "issuer": core.settings.issuer,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/api/v1/auth/token"),
        "revocation_endpoint": format!("{base}/api/v1/auth/revoke"),
        "introspection_endpoint": format!("{base}/api/v1/auth/introspect"),
        "grant_types_supported": ["password", "client_credentials", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "response_types_supported": ["token"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "claims_supported": ["iss", "aud", "sub", "exp", "iat", "jti", "roles", "name", "client_id"],
    }))
    .into_response()
}

// ---------------------------------------------------------------------------------------------
// Users and clients

#[derive(Debug, Serialize, ToSchema)]
struct UserView {
    kind: &'static str,
    id: String,
    username: String,
    roles: Vec<Role>,
    disabled: bool,
    /// Unix time until which the account is locked, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    locked_until: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        UserView {
            kind: "user",
            id: u.id.clone(),
            username: u.username.clone(),
            roles: u.roles.clone(),
            disabled: u.disabled,
            locked_until: Some(u.locked_until).filter(|t| *t > now_secs() as i64),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct ClientView {
    kind: &'static str,
    client_id: String,
    name: String,
    roles: Vec<Role>,
    disabled: bool,
    created_at: i64,
    updated_at: i64,
}

impl From<&Client> for ClientView {
    fn from(c: &Client) -> Self {
        ClientView {
            kind: "client",
            client_id: c.id.clone(),
            name: c.name.clone(),
            roles: c.roles.clone(),
            disabled: c.disabled,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    username: String,
    password: String,
    roles: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateUser {
    password: Option<String>,
    roles: Option<Vec<String>>,
    disabled: Option<bool>,
    /// Clears a lock-out and the failed-login count.
    unlock: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateClient {
    name: String,
    roles: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateClient {
    name: Option<String>,
    roles: Option<Vec<String>>,
    disabled: Option<bool>,
    /// Issues a new secret; the old one stops working at once.
    rotate_secret: Option<bool>,
}

/// A client with its secret, shown once.
#[derive(Debug, Serialize, ToSchema)]
struct CreatedClient {
    #[serde(flatten)]
    client: ClientView,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    limit: Option<u32>,
    offset: Option<u32>,
}

impl Page {
    fn bounds(&self) -> Result<(i64, i64), ApiError> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=1000).contains(&limit) {
            return Err(ApiError::bad_request("limit must be between 1 and 1000"));
        }
        Ok((i64::from(limit), i64::from(self.offset.unwrap_or(0))))
    }
}

fn parse_roles(names: &[String]) -> Result<Vec<Role>, ApiError> {
    if names.is_empty() {
        return Err(ApiError::validation("roles must name at least one role"));
    }
    if names.len() > Role::ALL.len() {
        return Err(ApiError::validation("too many roles"));
    }
    let mut seen = BTreeSet::new();
    let mut roles = Vec::new();
    for name in names {
        let role: Role = name.parse().map_err(ApiError::validation)?;
        if seen.insert(role.as_str()) {
            roles.push(role);
        }
    }
    Ok(roles)
}

fn check_username(name: &str) -> Result<(), ApiError> {
    let ok =
        !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
    if ok { Ok(()) } else { Err(ApiError::validation("username must be 1-64 of A-Z a-z 0-9 . _ @ -")) }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(ApiError::validation("name must be 1-128 printable characters"));
    }
    Ok(())
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 64 {
        return Err(ApiError::not_found("no such id"));
    }
    Ok(())
}

/// The caller: their user account, or their machine client.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401)))]
async fn me(State(core): Core, principal: Principal) -> Result<Response, ApiError> {
    let sub = principal.claims.sub.as_str();
    let body = match core.account_views.get(sub) {
        Some(body) => body,
        None => {
            let json = if principal.claims.client_id.is_some() {
                let client = Clients(&core.db)
                    .by_id(sub)
                    .await?
                    .ok_or_else(|| ApiError::not_found("this client no longer exists"))?;
                serde_json::to_vec(&ClientView::from(&client))
            } else {
                let user = Users(&core.db)
                    .by_id(sub)
                    .await?
                    .ok_or_else(|| ApiError::not_found("this account no longer exists"))?;
                serde_json::to_vec(&UserView::from(&user))
            };
            let body = axum::body::Bytes::from(json.map_err(ApiError::internal)?);
            core.account_views.put(sub, body.clone());
            body
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Lists users (admin).
#[utoipa::path(get, path = "/api/v1/users", tag = "users", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query), ("offset" = Option<u32>, Query)),
    responses((status = 200, body = [UserView]), (status = 401), (status = 403)))]
async fn list_users(
    State(core): Core,
    _admin: Authorized<Admins>,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    let (limit, offset) = page.bounds()?;
    let users = Users(&core.db).list(limit, offset).await?;
    Ok(axum::Json(users.iter().map(UserView::from).collect::<Vec<_>>()).into_response())
}

/// Creates a user (admin).
#[utoipa::path(post, path = "/api/v1/users", tag = "users", security(("bearer" = [])), request_body = CreateUser,
    responses((status = 201, body = UserView), (status = 401), (status = 403), (status = 409), (status = 422)))]
async fn create_user(
    State(core): Core,
    principal: Authorized<Admins>,
    Json(req): Json<CreateUser>,
) -> Result<Response, ApiError> {
    check_username(&req.username)?;
    check_password(&req.password).map_err(ApiError::validation)?;
    let roles = parse_roles(&req.roles)?;
    let hash = secrets::hash_password(req.password).await.map_err(ApiError::internal)?;
    let now = now_secs() as i64;
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        username: req.username,
        password_hash: hash,
        roles,
        disabled: false,
        failed_logins: 0,
        locked_until: 0,
        created_at: now,
        updated_at: now,
    };
    let mut tx = core.db.begin().await?;
    if !Users::insert(&mut tx, &user, true).await? {
        return Err(ApiError::conflict(format!("username {:?} is taken", user.username)));
    }
    let data = serde_json::json!({ "username": user.username, "roles": user.roles });
    audit(&mut tx, "auth.user.created", &format!("user:{}", user.id), &principal.claims.sub, data).await?;
    tx.commit().await?;
    tracing::info!(user = %user.username, by = %principal.claims.sub, "user created");
    Ok((StatusCode::CREATED, axum::Json(UserView::from(&user))).into_response())
}

async fn load_user(core: &AuthCore, id: &str) -> Result<User, ApiError> {
    check_id(id)?;
    Users(&core.db).by_id(id).await?.ok_or_else(|| ApiError::not_found(format!("no user with id {id:?}")))
}

/// One user (admin).
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401), (status = 403), (status = 404)))]
async fn get_user(State(core): Core, _admin: Authorized<Admins>, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(axum::Json(UserView::from(&load_user(&core, &id).await?)).into_response())
}

/// Changes a user's password, roles, disabled flag or lock-out (admin). A new password or
/// disabling revokes the user's refresh tokens.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])), request_body = UpdateUser,
    responses((status = 200, body = UserView), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn update_user(
    State(core): Core,
    principal: Authorized<Admins>,
    Path(id): Path<String>,
    Json(req): Json<UpdateUser>,
) -> Result<Response, ApiError> {
    let mut user = load_user(&core, &id).await?;
    let mut revoke_sessions = false;
    // What changed, for the audit event (never the password itself).
    let changes = serde_json::json!({
        "password_changed": req.password.is_some(),
        "roles": req.roles,
        "disabled": req.disabled,
        "unlocked": req.unlock == Some(true),
    });
    if let Some(password) = req.password {
        check_password(&password).map_err(ApiError::validation)?;
        user.password_hash = secrets::hash_password(password).await.map_err(ApiError::internal)?;
        revoke_sessions = true;
    }
    if let Some(names) = &req.roles {
        user.roles = parse_roles(names)?;
    }
    if let Some(disabled) = req.disabled {
        revoke_sessions |= disabled && !user.disabled;
        user.disabled = disabled;
    }
    if req.unlock == Some(true) {
        user.locked_until = 0;
        user.failed_logins = 0;
    }
    let loses_admin = !user.roles.contains(&Role::Admin) || user.disabled;
    user.updated_at = now_secs() as i64;
    let mut tx = core.db.begin().await?;
    if loses_admin && Users::other_admins(&mut tx, &user.id).await? == 0 {
        return Err(ApiError::conflict("this change would leave no enabled admin"));
    }
    if !Users::update(&mut tx, &user).await? {
        return Err(ApiError::not_found(format!("no user with id {id:?}")));
    }
    if revoke_sessions {
        RefreshTokens::revoke_user(&mut tx, &user.id, user.updated_at).await?;
    }
    audit(&mut tx, "auth.user.updated", &format!("user:{}", user.id), &principal.claims.sub, changes).await?;
    tx.commit().await?;
    core.account_views.forget(&user.id);
    tracing::info!(user = %user.username, by = %principal.claims.sub, "user updated");
    Ok(axum::Json(UserView::from(&user)).into_response())
}

/// Deletes a user (admin). The last enabled admin cannot be deleted.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", security(("bearer" = [])),
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn delete_user(
    State(core): Core,
    principal: Authorized<Admins>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let user = load_user(&core, &id).await?;
    let mut tx = core.db.begin().await?;
    if user.roles.contains(&Role::Admin) && Users::other_admins(&mut tx, &user.id).await? == 0 {
        return Err(ApiError::conflict("cannot delete the last enabled admin"));
    }
    if !Users::delete(&mut tx, &user.id).await? {
        return Err(ApiError::not_found(format!("no user with id {id:?}")));
    }
    let data = serde_json::json!({ "username": user.username });
    audit(&mut tx, "auth.user.deleted", &format!("user:{}", user.id), &principal.claims.sub, data).await?;
    tx.commit().await?;
    core.account_views.forget(&user.id);
    tracing::info!(user = %user.username, by = %principal.claims.sub, "user deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Lists machine clients (admin).
#[utoipa::path(get, path = "/api/v1/clients", tag = "clients", security(("bearer" = [])),
    params(("limit" = Option<u32>, Query), ("offset" = Option<u32>, Query)),
    responses((status = 200, body = [ClientView]), (status = 401), (status = 403)))]
async fn list_clients(
    State(core): Core,
    _admin: Authorized<Admins>,
    Query(page): Query<Page>,
) -> Result<Response, ApiError> {
    let (limit, offset) = page.bounds()?;
    let clients = Clients(&core.db).list(limit, offset).await?;
    Ok(axum::Json(clients.iter().map(ClientView::from).collect::<Vec<_>>()).into_response())
}

/// Creates a machine client (admin); the secret is in this response only.
#[utoipa::path(post, path = "/api/v1/clients", tag = "clients", security(("bearer" = [])), request_body = CreateClient,
    responses((status = 201, body = CreatedClient), (status = 401), (status = 403), (status = 422)))]
async fn create_client(
    State(core): Core,
    principal: Authorized<Admins>,
    Json(req): Json<CreateClient>,
) -> Result<Response, ApiError> {
    check_name(&req.name)?;
    let roles = parse_roles(&req.roles)?;
    let secret = secrets::random_token();
    let now = now_secs() as i64;
    let client = Client {
        id: format!("acgs-{}", uuid::Uuid::new_v4().simple()),
        name: req.name,
        secret_hash: secrets::digest(&secret),
        roles,
        disabled: false,
        created_at: now,
        updated_at: now,
    };
    let mut tx = core.db.begin().await?;
    Clients::insert(&mut tx, &client).await?;
    let data = serde_json::json!({ "name": client.name, "roles": client.roles });
    audit(&mut tx, "auth.client.created", &format!("client:{}", client.id), &principal.claims.sub, data).await?;
    tx.commit().await?;
    tracing::info!(client = %client.id, by = %principal.claims.sub, "client created");
    let body = CreatedClient { client: ClientView::from(&client), client_secret: Some(secret) };
    Ok((StatusCode::CREATED, no_store(), axum::Json(body)).into_response())
}

async fn load_client(core: &AuthCore, id: &str) -> Result<Client, ApiError> {
    check_id(id)?;
    Clients(&core.db).by_id(id).await?.ok_or_else(|| ApiError::not_found(format!("no client with id {id:?}")))
}

/// One machine client (admin).
#[utoipa::path(get, path = "/api/v1/clients/{id}", tag = "clients", security(("bearer" = [])),
    responses((status = 200, body = ClientView), (status = 401), (status = 403), (status = 404)))]
async fn get_client(
    State(core): Core,
    _admin: Authorized<Admins>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(ClientView::from(&load_client(&core, &id).await?)).into_response())
}

/// Renames, re-roles, disables a client or rotates its secret (admin).
#[utoipa::path(patch, path = "/api/v1/clients/{id}", tag = "clients", security(("bearer" = [])), request_body = UpdateClient,
    responses((status = 200, body = CreatedClient), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn update_client(
    State(core): Core,
    principal: Authorized<Admins>,
    Path(id): Path<String>,
    Json(req): Json<UpdateClient>,
) -> Result<Response, ApiError> {
    let mut client = load_client(&core, &id).await?;
    let changes = serde_json::json!({
        "name": req.name,
        "roles": req.roles,
        "disabled": req.disabled,
        "secret_rotated": req.rotate_secret == Some(true),
    });
    if let Some(name) = req.name {
        check_name(&name)?;
        client.name = name;
    }
    if let Some(names) = &req.roles {
        client.roles = parse_roles(names)?;
    }
    if let Some(disabled) = req.disabled {
        client.disabled = disabled;
    }
    let mut secret = None;
    if req.rotate_secret == Some(true) {
        let fresh = secrets::random_token();
        client.secret_hash = secrets::digest(&fresh);
        secret = Some(fresh);
    }
    client.updated_at = now_secs() as i64;
    let mut tx = core.db.begin().await?;
    if !Clients::update(&mut tx, &client).await? {
        return Err(ApiError::not_found(format!("no client with id {id:?}")));
    }
    audit(&mut tx, "auth.client.updated", &format!("client:{}", client.id), &principal.claims.sub, changes).await?;
    tx.commit().await?;
    core.account_views.forget(&client.id);
    tracing::info!(client = %client.id, by = %principal.claims.sub, "client updated");
    let body = CreatedClient { client: ClientView::from(&client), client_secret: secret };
    Ok((no_store(), axum::Json(body)).into_response())
}

/// Deletes a machine client (admin).
#[utoipa::path(delete, path = "/api/v1/clients/{id}", tag = "clients", security(("bearer" = [])),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
async fn delete_client(
    State(core): Core,
    principal: Authorized<Admins>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let client = load_client(&core, &id).await?;
    let mut tx = core.db.begin().await?;
    if !Clients::delete(&mut tx, &client.id).await? {
        return Err(ApiError::not_found(format!("no client with id {id:?}")));
    }
    let data = serde_json::json!({ "name": client.name });
    audit(&mut tx, "auth.client.deleted", &format!("client:{}", client.id), &principal.claims.sub, data).await?;
    tx.commit().await?;
    core.account_views.forget(&client.id);
    tracing::info!(client = %client.id, by = %principal.claims.sub, "client deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
