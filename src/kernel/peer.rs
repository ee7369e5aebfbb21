//! Calls to a service in another process. Every per-service client type (`AuthClient`,
//! `IntegrityClient`, …) holds a [`Peer`] for its HTTP variant, so they all behave the same way
//! when the other side is slow or gone:
//!
//! - **time-outs**: a connect time-out of 2 s and a per-service request time-out;
//! - **retries with back-off** for idempotent calls (reads, and writes the other side
//!   deduplicates): up to [`ATTEMPTS`] tries on a transport error or a 502/503/504, waiting
//!   100 ms, then 200 ms, … (±50 % jitter) in between; a 4xx is the caller's answer, never retried;
//! - **circuit breaking**: after [`TRIP_AFTER`] consecutive failed calls the circuit opens and
//!   calls fail at once, without touching the network, for a cool-down that starts at 1 s and
//!   doubles up to 30 s; then one trial call is let through, and its success closes the circuit;
//! - **service tokens**: calls marked [`Auth::Service`] carry a bearer token with the `service`
//!   role from a [`BearerSource`]; a 401 drops the cached token and the call is tried once more
//!   with a fresh one.
//!
//! A call fails with [`PeerError`]; any HTTP answer that is not a server failure is handed back
//! as a [`Reply`] for the client type to interpret (404 → "no such version", …).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::kernel::error::chain;

/// Tries of an idempotent call before it fails.
pub const ATTEMPTS: u32 = 3;
/// Consecutive failed calls that open the circuit.
pub const TRIP_AFTER: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const FIRST_COOLDOWN: Duration = Duration::from_secs(1);
const MAX_COOLDOWN: Duration = Duration::from_secs(30);

/// Bearer tokens with the `service` role for this process's calls to other processes.
#[async_trait::async_trait]
pub trait BearerSource: Send + Sync {
    /// A token valid for at least the next call.
    async fn bearer(&self) -> Result<String, String>;
    /// The other side refused the last token (revoked, keys rotated): do not hand it out again.
    fn forget(&self);
}

/// Which token a call carries.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    /// The process's service token (fails if the peer was built without a [`BearerSource`]).
    Service,
    /// The token of the caller this call is made for.
    Bearer(&'a str),
}

/// Whether a call may be repeated.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads, and writes the other side deduplicates: retried with back-off.
    Idempotent,
    /// Tried once.
    Once,
}

/// Why a call to a peer failed. The message names the URL and the cause, for `/ready` and logs.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PeerError {
    /// Not reached, a server failure, an unreadable answer, or the circuit is open.
    #[error("{0}")]
    Unavailable(String),
    /// This process has no service token to make the call with.
    #[error("{0}")]
    NoCredentials(String),
}

/// An HTTP answer that is not a server failure.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: bytes::Bytes,
    /// `METHOD url`, for messages.
    pub call: String,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    /// The body as `T`; an unreadable body is the peer's failure.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, PeerError> {
        serde_json::from_slice(&self.body).map_err(|e| PeerError::Unavailable(format!("{}: {e}", self.call)))
    }

    /// The `error.code` and `error.message` of one of our services' error bodies (empty when the
    /// body is not one).
    pub fn error(&self) -> (String, String) {
        let body: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let field = |k: &str| body["error"][k].as_str().unwrap_or_default().to_string();
        (field("code"), field("message"))
    }

    /// "`METHOD url`: status 403 forbidden: message", for an answer the caller did not expect.
    pub fn unexpected(&self) -> PeerError {
        let (code, message) = self.error();
        let detail = if message.is_empty() { String::new() } else { format!(" {code}: {message}") };
        PeerError::Unavailable(format!("{}: status {}{detail}", self.call, self.status))
    }
}

/// A service in another process, at a base URL.
pub struct Peer {
    service: &'static str,
    base_url: String,
    http: reqwest::Client,
    credentials: Option<Arc<dyn BearerSource>>,
    breaker: Mutex<Breaker>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer").field("service", &self.service).field("base_url", &self.base_url).finish()
    }
}

impl Peer {
    /// The `service` at `base_url` (`http://integrity:8002`), each call timing out after `timeout`.
    pub fn new(service: &'static str, base_url: &str, timeout: Duration) -> Peer {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Peer {
            service,
            base_url: base_url.trim_end_matches('/').to_string(),
            http,
            credentials: None,
            breaker: Mutex::new(Breaker::default()),
        }
    }

    /// The same peer, calling with the service tokens of `credentials`.
    pub fn with_credentials(mut self, credentials: Option<Arc<dyn BearerSource>>) -> Peer {
        self.credentials = credentials;
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET path`, retried.
    pub async fn get(&self, path: &str, auth: Auth<'_>) -> Result<Reply, PeerError> {
        self.call(Method::GET, path, None::<&()>, auth, Retry::Idempotent).await
    }

    /// `POST path` with a JSON body.
    pub async fn post<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
        auth: Auth<'_>,
        retry: Retry,
    ) -> Result<Reply, PeerError> {
        self.call(Method::POST, path, Some(body), auth, retry).await
    }

    async fn call<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        auth: Auth<'_>,
        retry: Retry,
    ) -> Result<Reply, PeerError> {
        let url = format!("{}{path}", self.base_url);
        let call = format!("{method} {url}");
        if matches!(auth, Auth::Service) && self.credentials.is_none() {
            return Err(PeerError::NoCredentials(format!("{call}: {NO_CREDENTIALS}")));
        }
        let blocked = {
            let mut breaker = self.lock();
            breaker.blocked(Instant::now()).map(|wait| (wait, breaker.last_error.clone()))
        };
        if let Some((wait, last_error)) = blocked {
            return Err(PeerError::Unavailable(format!(
                "{call}: the {} service is failing (circuit open, next try in {} ms; last error: {last_error})",
                self.service,
                wait.as_millis(),
            )));
        }
        let body = match body.map(serde_json::to_vec).transpose() {
            Ok(body) => body,
            Err(e) => return Err(PeerError::Unavailable(format!("{call}: cannot encode the request: {e}"))),
        };
        let attempts = if retry == Retry::Idempotent { ATTEMPTS } else { 1 };
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.once(&method, &url, &call, body.as_deref(), auth).await;
            match outcome {
                Ok(reply)
                    if reply.status == StatusCode::UNAUTHORIZED && matches!(auth, Auth::Service) && !refreshed =>
                {
                    // A refused service token: a fresh one, once (not counted as an attempt).
                    if let Some(credentials) = &self.credentials {
                        credentials.forget();
                    }
                    refreshed = true;
                    attempt -= 1;
                }
                Ok(reply) if !is_server_failure(reply.status) => {
                    self.lock().succeeded();
                    return Ok(reply);
                }
                Ok(reply) => {
                    let error = reply.unexpected();
                    if attempt >= attempts {
                        return Err(self.failed(error));
                    }
                }
                Err(PeerError::NoCredentials(message)) => return Err(PeerError::NoCredentials(message)),
                Err(error) => {
                    if attempt >= attempts {
                        return Err(self.failed(error));
                    }
                }
            }
            if attempt > 0 {
                tokio::time::sleep(jittered(FIRST_BACKOFF * 2u32.pow(attempt - 1))).await;
            }
        }
    }

    async fn once(
        &self,
        method: &Method,
        url: &str,
        call: &str,
        body: Option<&[u8]>,
        auth: Auth<'_>,
    ) -> Result<Reply, PeerError> {
        let mut request = self.http.request(method.clone(), url);
        match auth {
            Auth::None => {}
            Auth::Bearer(token) => request = request.bearer_auth(token),
            Auth::Service => {
                let credentials = self
                    .credentials
                    .as_ref()
                    .ok_or_else(|| PeerError::NoCredentials(format!("{call}: {}", NO_CREDENTIALS)))?;
                let token = credentials.bearer().await.map_err(|e| PeerError::Unavailable(format!("{call}: {e}")))?;
                request = request.bearer_auth(token);
            }
        }
        if let Some(body) = body {
            request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_vec());
        }
        let response = request.send().await.map_err(|e| PeerError::Unavailable(format!("{call}: {}", chain(&e))))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| PeerError::Unavailable(format!("{call}: {}", chain(&e))))?;
        Ok(Reply { status, body, call: call.to_string() })
    }

    fn failed(&self, error: PeerError) -> PeerError {
        let mut breaker = self.lock();
        breaker.failed(Instant::now(), &error.to_string());
        if breaker.just_opened {
            tracing::warn!(service = self.service, url = %self.base_url, error = %error,
                cooldown_ms = breaker.cooldown.as_millis() as u64, "circuit opened: calls fail fast until the cool-down ends");
        }
        error
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a call that needs a `service` token says when the process has none.
pub const NO_CREDENTIALS: &str = "this call to a service in another process needs a service token: set \
     service_client_secret (ACGS_SERVICE_CLIENT_SECRET or _FILE) to the secret of the services' machine client \
     (the auth service writes a generated one to <data_dir>/service-client-secret)";

fn is_server_failure(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// `d` ± 50 %.
fn jittered(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.5..1.5))
}

/// Consecutive failures, and when calls may be tried again.
#[derive(Debug)]
struct Breaker {
    failures: u32,
    cooldown: Duration,
    /// While open: no call before this instant.
    open_until: Option<Instant>,
    /// A trial call is in flight after a cool-down: the others still fail fast.
    trial: bool,
    just_opened: bool,
    last_error: String,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            failures: 0,
            cooldown: FIRST_COOLDOWN,
            open_until: None,
            trial: false,
            just_opened: false,
            last_error: String::new(),
        }
    }
}

impl Breaker {
    /// How long a call must still wait, or `None` to let it through.
    fn blocked(&mut self, now: Instant) -> Option<Duration> {
        let until = self.open_until?;
        if now < until {
            return Some(until - now);
        }
        if self.trial {
            // One trial at a time; the others wait for its outcome.
            return Some(Duration::ZERO);
        }
        self.trial = true;
        None
    }

    fn succeeded(&mut self) {
        *self = Breaker::default();
    }

    fn failed(&mut self, now: Instant, error: &str) {
        self.failures += 1;
        self.last_error = error.to_string();
        self.just_opened = false;
        if self.trial {
            // The trial failed: open again, for longer.
            self.trial = false;
            self.cooldown = (self.cooldown * 2).min(MAX_COOLDOWN);
            self.open_until = Some(now + self.cooldown);
            self.just_opened = true;
        } else if self.failures >= TRIP_AFTER && self.open_until.is_none() {
            self.open_until = Some(now + self.cooldown);
            self.just_opened = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_consecutive_failures_and_closes_on_a_successful_trial() {
        let mut b = Breaker::default();
        let t0 = Instant::now();
        for _ in 0..TRIP_AFTER - 1 {
            b.failed(t0, "refused");
            assert_eq!(b.blocked(t0), None);
        }
        b.failed(t0, "refused");
        assert!(b.blocked(t0).is_some(), "open after {TRIP_AFTER} failures");
        let after = t0 + FIRST_COOLDOWN;
        assert_eq!(b.blocked(after), None, "one trial after the cool-down");
        assert!(b.blocked(after).is_some(), "only one trial at a time");
        b.failed(after, "still refused");
        assert_eq!(b.cooldown, FIRST_COOLDOWN * 2, "a failed trial doubles the cool-down");
        assert!(b.blocked(after + FIRST_COOLDOWN).is_some());
        let later = after + FIRST_COOLDOWN * 2;
        assert_eq!(b.blocked(later), None);
        b.succeeded();
        assert_eq!(b.blocked(later), None);
        assert_eq!(b.failures, 0);
    }

    #[test]
    fn the_cool_down_stops_growing() {
        let mut b = Breaker::default();
        let mut now = Instant::now();
        for _ in 0..TRIP_AFTER {
            b.failed(now, "x");
        }
        for _ in 0..20 {
            now += b.cooldown;
            assert_eq!(b.blocked(now), None);
            b.failed(now, "x");
        }
        assert_eq!(b.cooldown, MAX_COOLDOWN);
    }

    #[tokio::test]
    async fn an_unreachable_peer_fails_with_the_url_then_fails_fast() {
        let peer = Peer::new("integrity", "http://127.0.0.1:1/", Duration::from_secs(1));
        let err = peer.get("/api/v1/log/checkpoint", Auth::None).await.unwrap_err();
        assert!(err.to_string().contains("GET http://127.0.0.1:1/api/v1/log/checkpoint"), "{err}");
        for _ in 1..TRIP_AFTER {
            let _ = peer.post("/x", &(), Auth::None, Retry::Once).await;
        }
        let err = peer.get("/api/v1/log/checkpoint", Auth::None).await.unwrap_err();
        assert!(err.to_string().contains("circuit open"), "{err}");
    }

    #[tokio::test]
    async fn a_service_call_without_credentials_says_what_to_set() {
        let peer = Peer::new("integrity", "http://127.0.0.1:1", Duration::from_secs(1));
        let err = peer.post("/api/v1/log/entries", &(), Auth::Service, Retry::Idempotent).await.unwrap_err();
        assert!(matches!(&err, PeerError::NoCredentials(m) if m.contains("service_client_secret")), "{err}");
    }
}
