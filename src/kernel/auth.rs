//! Token verification for every service: Ed25519 JWTs checked locally against the auth service's
//! JWKS, with roles per endpoint.
//!
//! * Keys are cached by `kid`. An unknown `kid` triggers one refresh of the JWKS (at most once a
//!   second, single-flight), so a rotated key is picked up without restarts and the previous key
//!   keeps verifying while it is still published.
//! * Verified tokens are cached (bounded), so the signature check is paid once per token, not per
//!   request. A cache hit still checks expiry and the revocation list.
//! * Only `EdDSA` is accepted; `aud`, `iss`, `exp`, `iat`, `sub` and `jti` are required. `alg: none`,
//!   HMAC with the public key and every other algorithm fail.
//! * Anything that goes wrong is a 401 (fail closed); a missing role is a 403.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

use crate::kernel::error::ApiError;

/// The six roles of DESIGN §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Council,
    Steward,
    Auditor,
    Agent,
    Service,
}

impl Role {
    pub const ALL: [Role; 6] = [Role::Admin, Role::Council, Role::Steward, Role::Auditor, Role::Agent, Role::Service];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Council => "council",
            Role::Steward => "steward",
            Role::Auditor => "auditor",
            Role::Agent => "agent",
            Role::Service => "service",
        }
    }

    const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (valid: {})", Role::ALL.map(|r| r.as_str()).join(", ")))
    }
}

/// A set of roles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Roles {
        Roles(names.into_iter().filter_map(|n| n.parse::<Role>().ok()).fold(0, |acc, r| acc | r.bit()))
    }
    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }
    pub fn any(self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.contains(*r))
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    pub roles: Vec<String>,
    /// The user name, or the client's name for machine clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Set for tokens issued to machine clients (client_credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// Where the verifier gets the auth service's public keys and revocations from: the auth service
/// in this process, or over HTTP.
#[async_trait::async_trait]
pub trait KeySource: Send + Sync {
    /// The published JWKS.
    async fn jwks(&self) -> Result<JwkSet, String>;
    /// Revoked access tokens that have not expired yet, as (jti, exp).
    async fn revoked(&self) -> Result<Vec<(String, u64)>, String>;
    /// The shortest time between two JWKS fetches triggered by unknown key ids. Remote sources
    /// are protected from a flood of made-up `kid`s; an in-process source costs nothing to ask.
    fn min_refresh_interval(&self) -> Duration {
        Duration::from_secs(1)
    }
}

/// A revocation list shared between replicas (Redis, `kernel::shared`). A verifier that has one
/// asks it about every token it accepts, at most once per [`RECHECK`] per token, and refuses the
/// token when the answer cannot be had.
#[async_trait::async_trait]
pub trait SharedRevocations: Send + Sync {
    async fn is_revoked(&self, jti: &str) -> Result<bool, String>;
    async fn revoke(&self, jti: &str, exp: u64) -> Result<(), String>;
}

/// How long a "not revoked" answer from the shared list holds for one token.
pub const RECHECK: Duration = Duration::from_millis(250);

/// Why a token was refused. All of them are 401 to the caller, but for the two "cannot check
/// right now" cases, which are 503.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token algorithm {0} is not accepted (only EdDSA)")]
    Algorithm(String),
    #[error("token has no key id")]
    NoKeyId,
    #[error("token signed by unknown key {0:?}")]
    UnknownKey(String),
    #[error("token rejected: {0}")]
    Invalid(String),
    #[error("token has been revoked")]
    Revoked,
    #[error("cannot obtain signing keys: {0}")]
    KeysUnavailable(String),
    #[error("cannot check whether the token is revoked: {0}")]
    RevocationsUnavailable(String),
}

/// Verifies access tokens. One per process, shared by every service in it.
pub struct Verifier {
    source: Arc<dyn KeySource>,
    validation: Validation,
    keys: RwLock<HashMap<String, Arc<DecodingKey>>>,
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
    cache: RwLock<HashMap<Box<str>, Arc<Claims>>>,
    cache_capacity: usize,
    revoked: RwLock<HashMap<String, u64>>,
    shared: Option<Arc<dyn SharedRevocations>>,
    /// When the shared list last said each token id was not revoked.
    confirmed: RwLock<HashMap<Box<str>, Instant>>,
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Verifier {
    pub fn new(source: Arc<dyn KeySource>, issuer: &str, audience: &str, cache_capacity: usize) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.set_audience(&[audience]);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "aud", "iss"]);
        validation.leeway = 5;
        Verifier {
            source,
            validation,
            keys: RwLock::new(HashMap::new()),
            last_refresh: tokio::sync::Mutex::new(None),
            cache: RwLock::new(HashMap::new()),
            cache_capacity: cache_capacity.max(1),
            revoked: RwLock::new(HashMap::new()),
            shared: None,
            confirmed: RwLock::new(HashMap::new()),
        }
    }

    /// The same verifier, also asking `shared` about every token (fail closed).
    pub fn with_shared_revocations(mut self, shared: Option<Arc<dyn SharedRevocations>>) -> Self {
        self.shared = shared;
        self
    }

    /// Asks the shared list, if any, whether the token is revoked.
    async fn check_shared(&self, claims: &Claims) -> Result<(), VerifyError> {
        let Some(shared) = &self.shared else { return Ok(()) };
        if read(&self.confirmed).get(claims.jti.as_str()).is_some_and(|t| t.elapsed() < RECHECK) {
            return Ok(());
        }
        match shared.is_revoked(&claims.jti).await {
            Ok(true) => {
                self.revoke(&claims.jti, claims.exp);
                Err(VerifyError::Revoked)
            }
            Ok(false) => {
                let mut confirmed = write(&self.confirmed);
                if confirmed.len() >= self.cache_capacity {
                    confirmed.clear();
                }
                confirmed.insert(Box::from(claims.jti.as_str()), Instant::now());
                Ok(())
            }
            Err(e) => Err(VerifyError::RevocationsUnavailable(e)),
        }
    }

    /// Loads the revocation list from the source (at start-up).
    pub async fn load_revocations(&self) -> Result<(), String> {
        for (jti, exp) in self.source.revoked().await? {
            self.revoke(&jti, exp);
        }
        Ok(())
    }

    /// Marks a token id revoked until `exp`.
    pub fn revoke(&self, jti: &str, exp: u64) {
        let now = now_secs();
        let mut revoked = write(&self.revoked);
        if revoked.len() > 10_000 {
            revoked.retain(|_, e| *e + 60 > now);
        }
        revoked.insert(jti.to_string(), exp);
    }

    fn is_revoked(&self, jti: &str) -> bool {
        read(&self.revoked).contains_key(jti)
    }

    /// Verifies a token: cached, or checked against the JWKS.
    pub async fn verify(&self, token: &str) -> Result<Arc<Claims>, VerifyError> {
        let cached = read(&self.cache).get(token).cloned();
        if let Some(claims) = cached {
            if claims.exp + self.validation.leeway < now_secs() {
                write(&self.cache).remove(token);
                return Err(VerifyError::Invalid("ExpiredSignature".into()));
            }
            if self.is_revoked(&claims.jti) {
                return Err(VerifyError::Revoked);
            }
            self.check_shared(&claims).await?;
            return Ok(claims);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::EdDSA {
            return Err(VerifyError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or(VerifyError::NoKeyId)?;
        let key = self.key(&kid).await?;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map_err(|e| VerifyError::Invalid(format!("{:?}", e.kind())))?;
        let claims = Arc::new(data.claims);
        if claims.jti.is_empty() {
            return Err(VerifyError::Invalid("missing jti".into()));
        }
        if self.is_revoked(&claims.jti) {
            return Err(VerifyError::Revoked);
        }
        self.check_shared(&claims).await?;
        let mut cache = write(&self.cache);
        if cache.len() >= self.cache_capacity {
            cache.clear();
        }
        cache.insert(Box::from(token), claims.clone());
        Ok(claims)
    }

    async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, VerifyError> {
        if let Some(key) = read(&self.keys).get(kid).cloned() {
            return Ok(key);
        }
        let mut last = self.last_refresh.lock().await;
        // Someone else may have refreshed while we waited.
        if let Some(key) = read(&self.keys).get(kid).cloned() {
            return Ok(key);
        }
        if last.is_some_and(|t| t.elapsed() < self.source.min_refresh_interval()) {
            return Err(VerifyError::UnknownKey(kid.to_string()));
        }
        let jwks = self.source.jwks().await.map_err(VerifyError::KeysUnavailable)?;
        *last = Some(Instant::now());
        let mut fresh = HashMap::new();
        for jwk in &jwks.keys {
            let Some(id) = jwk.common.key_id.clone() else { continue };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    fresh.insert(id, Arc::new(key));
                }
                Err(e) => tracing::warn!(kid = %id, error = %e, "ignoring unusable JWK"),
            }
        }
        let found = fresh.get(kid).cloned();
        *write(&self.keys) = fresh;
        found.ok_or_else(|| VerifyError::UnknownKey(kid.to_string()))
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The authenticated caller of a request. Extracting it fails with 401 unless the request carries
/// a valid bearer token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub claims: Arc<Claims>,
    pub roles: Roles,
}

impl Principal {
    /// Succeeds if the caller has at least one of `roles`, else 403.
    pub fn require(&self, roles: &[Role]) -> Result<&Self, ApiError> {
        if self.roles.any(roles) {
            Ok(self)
        } else {
            Err(ApiError::forbidden(format!(
                "this operation needs one of the roles: {}",
                roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
            )))
        }
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(role)
    }
}

/// Extracts the bearer token of a request, if any.
pub fn bearer(parts: &Parts) -> Option<&str> {
    bearer_of(&parts.headers)
}

/// The bearer token in `headers`' `Authorization`, if any.
pub fn bearer_of(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim()).filter(|t| !t.is_empty())
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let verifier = parts
            .extensions
            .get::<Arc<Verifier>>()
            .cloned()
            .ok_or_else(|| ApiError::internal("route needs authentication but no verifier is installed"))?;
        let token = bearer(parts).ok_or_else(|| ApiError::unauthorized(VerifyError::Missing.to_string()))?;
        match verifier.verify(token).await {
            Ok(claims) => {
                let roles = Roles::from_names(claims.roles.iter().map(String::as_str));
                Ok(Principal { claims, roles })
            }
            Err(VerifyError::KeysUnavailable(why)) => {
                tracing::warn!(error = %why, "cannot verify tokens: signing keys unavailable");
                Err(ApiError::unavailable("cannot verify tokens right now: the auth service's keys are unavailable"))
            }
            Err(VerifyError::RevocationsUnavailable(why)) => {
                tracing::warn!(error = %why, "refusing tokens: the shared revocation list cannot be read");
                Err(ApiError::unavailable("cannot verify tokens right now: the shared revocation list is unavailable"))
            }
            Err(e) => Err(ApiError::unauthorized(e.to_string())),
        }
    }
}

/// The roles a route admits, as a type, so the check runs before the request body is read.
pub trait RouteRoles: Send + Sync + 'static {
    const ROLES: &'static [Role];
}

/// Routes for admins only.
pub struct Admins;
impl RouteRoles for Admins {
    const ROLES: &'static [Role] = &[Role::Admin];
}

/// Routes for other services and admins (introspection).
pub struct ServicesAndAdmins;
impl RouteRoles for ServicesAndAdmins {
    const ROLES: &'static [Role] = &[Role::Service, Role::Admin];
}

/// A caller that has one of `R::ROLES`: 401 without a valid token, 403 without the role.
pub struct Authorized<R: RouteRoles> {
    pub principal: Principal,
    _roles: std::marker::PhantomData<R>,
}

impl<R: RouteRoles> std::ops::Deref for Authorized<R> {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.principal
    }
}

impl<S: Send + Sync, R: RouteRoles> FromRequestParts<S> for Authorized<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        principal.require(R::ROLES)?;
        Ok(Authorized { principal, _roles: std::marker::PhantomData })
    }
}
