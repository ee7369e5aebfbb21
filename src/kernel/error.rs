//! The one error shape every HTTP API returns: `{"error":{"code":"…","message":"…"}}` with the
//! right status, plus extractors whose rejections use that shape instead of axum's plain text.
//!
//! Handlers return `Result<_, ApiError>`. A caller's mistake is a 4xx with a message that says what
//! was wrong; a failure of ours is a 500 whose message names no internals (the detail goes to the
//! log with the request id).

use axum::extract::rejection::{FormRejection, JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An error as the API reports it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
    /// A failure of ours. The detail is logged, the caller sees a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the service log")
    }

    /// The JSON body of this error, for places that build responses by hand.
    pub fn body_json(&self) -> String {
        serde_json::to_string(&Body { error: Inner { code: self.code, message: &self.message } })
            .unwrap_or_else(|_| String::from(r#"{"error":{"code":"internal","message":"error"}}"#))
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response =
            (self.status, [(header::CONTENT_TYPE, "application/json")], self.body_json()).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<crate::kernel::storage::StorageError> for ApiError {
    fn from(err: crate::kernel::storage::StorageError) -> Self {
        use crate::kernel::storage::StorageError;
        match err {
            StorageError::UniqueViolation(what) => ApiError::conflict(format!("already exists ({what})")),
            StorageError::Unavailable(why) => {
                tracing::warn!(error = %why, "storage unavailable");
                ApiError::unavailable("storage unavailable; retry later")
            }
            other => ApiError::internal(other),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a request body with content type application/json",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request(format!("malformed JSON: {}", source_text(&e))),
        JsonRejection::JsonDataError(e) => ApiError::validation(format!("invalid JSON body: {}", source_text(&e))),
        JsonRejection::BytesRejection(e) => body_rejection(e.status(), e.body_text()),
        other => ApiError::new(other.status(), "bad_request", other.body_text()),
    }
}

fn body_rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            "payload_too_large",
            "request body is larger than the configured limit (http.body_limit_bytes)",
        )
    } else {
        ApiError::new(status, "bad_request", text)
    }
}

/// An error with its causes on one line ("entity does not conform to the schema: attribute
/// `trust_level` … should exist"), each cause once: many errors repeat their source's text.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The innermost cause's text: serde's message with line and column, without axum's prefix.
fn source_text(err: &dyn std::error::Error) -> String {
    let mut current: &dyn std::error::Error = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// `Json<T>` whose rejections are [`ApiError`]s. Request types should use
/// `#[serde(deny_unknown_fields)]` so a misspelt field is an error, not silently ignored.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A JSON body kept as its bytes, for handlers that key on the exact body (the decision cache);
/// [`JsonBytes::parse`] reads it with the same errors as [`Json`].
#[derive(Debug, Clone)]
pub struct JsonBytes(pub axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        // The rule axum's `Json` applies: `application/json` or `application/…+json`.
        let content_type =
            req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        let essence = content_type.split(';').next().unwrap_or("").trim();
        let is_json = essence == "application/json"
            || essence.strip_prefix("application/").is_some_and(|subtype| subtype.ends_with("+json"));
        if !is_json {
            return Err(json_rejection(JsonRejection::MissingJsonContentType(Default::default())));
        }
        axum::body::Bytes::from_request(req, state)
            .await
            .map(JsonBytes)
            .map_err(|e| body_rejection(e.status(), e.body_text()))
    }
}

impl JsonBytes {
    /// The body as `T`: malformed JSON 400, a body that does not fit `T` 422.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        axum::Json::<T>::from_bytes(&self.0).map(|axum::Json(v)| v).map_err(json_rejection)
    }
}

/// A body that may be form-encoded (`application/x-www-form-urlencoded`, as RFC 6749 requires)
/// or JSON; anything else is 415.
#[derive(Debug, Clone)]
pub struct FormOrJson<T>(pub T);

impl<T, S> FromRequest<S> for FormOrJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type =
            req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
        if content_type.starts_with("application/json") {
            Json::<T>::from_request(req, state).await.map(|Json(v)| FormOrJson(v))
        } else if content_type.starts_with("application/x-www-form-urlencoded") {
            match axum::Form::<T>::from_request(req, state).await {
                Ok(axum::Form(v)) => Ok(FormOrJson(v)),
                Err(FormRejection::BytesRejection(e)) => Err(body_rejection(e.status(), e.body_text())),
                Err(FormRejection::FailedToDeserializeFormBody(e)) => {
                    Err(ApiError::validation(format!("invalid form body: {}", source_text(&e))))
                }
                Err(other) => Err(ApiError::new(other.status(), "bad_request", other.body_text())),
            }
        } else {
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected application/x-www-form-urlencoded or application/json",
            ))
        }
    }
}

/// `Query<T>` whose rejections are [`ApiError`]s.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(ApiError::bad_request(format!("invalid query string: {}", source_text(&e))))
            }
            Err(other) => Err(ApiError::new(other.status(), "bad_request", other.body_text())),
        }
    }
}

/// `Path<T>` whose rejections are [`ApiError`]s.
#[derive(Debug, Clone)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(rejection) => Err(ApiError::new(rejection.status(), "bad_request", rejection.body_text())),
        }
    }
}
