//! The event bus between services: constitution ratifications, token revocations, policy
//! activations, cache invalidation.
//!
//! Every process has a local broadcast channel that its subscribers see in order; that is the
//! whole bus of `acgs up`. With `nats_url` ([`Bus::connect_nats`]) the bus is also bridged to NATS:
//! every event published here goes out on its subject (in publication order, through one
//! publisher task), and every `acgs.>` message from another process comes in on the local
//! channel. A header names the publishing process, so a process never receives its own events
//! twice. While NATS is unreachable the client buffers what is published and reconnects by
//! itself; the bus's users do not change at all. Subjects are listed in ARCHITECTURE.md.
//!
//! Over NATS the bus also carries *calls*: a request that one process among those serving the
//! subject (a queue group) answers, such as audit delivery to the integrity log
//! ([`calls::INTEGRITY_APPEND`]). Call subjects live outside `acgs.>`, so the event bridge never
//! carries them; a call carries the caller's bearer token in an `Authorization` header.

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};

/// Subjects used on the bus.
pub mod subjects {
    /// An access token was revoked: `{"jti": "...", "exp": 1700000000}`.
    pub const TOKEN_REVOKED: &str = "acgs.auth.token_revoked";
    /// A signing key was added or rotated: `{"kid": "..."}`.
    pub const KEYS_ROTATED: &str = "acgs.auth.keys_rotated";
    /// An amendment was ratified and a new constitution version is active:
    /// `{"version": 2, "hash": "<16 hex>", "sha256": "<64 hex>"}`.
    pub const CONSTITUTION_RATIFIED: &str = "acgs.constitution.ratified";
    /// A policy set was activated (by an approved proposal or break-glass):
    /// `{"version": 2, "sha256": "<64 hex>", "proposal": "<id>" | null}`.
    pub const POLICY_ACTIVATED: &str = "acgs.consensus.policy_activated";
}

/// Subjects of calls (request/reply, answered by one member of a queue group).
pub mod calls {
    /// Append audit events to the integrity log: `{"events": [...]}` with a `service` token →
    /// `{"appended": N}` once all are durable, or `{"error": "..."}`. Deduplicated by event id.
    pub const INTEGRITY_APPEND: &str = "acgs-call.integrity.append";
    /// The queue group of the integrity services.
    pub const INTEGRITY_GROUP: &str = "acgs-integrity";
}

/// A call received by a process that serves its subject.
pub struct Call {
    pub payload: bytes::Bytes,
    /// The bearer token of the caller, from the `Authorization` header.
    pub token: Option<String>,
    reply: Option<async_nats::Subject>,
    client: async_nats::Client,
}

impl Call {
    /// Answers the caller (a call without a reply subject is dropped).
    pub async fn respond(&self, body: &serde_json::Value) {
        let Some(reply) = &self.reply else { return };
        let body = serde_json::to_vec(body).unwrap_or_default();
        if let Err(e) = self.client.publish(reply.clone(), body.into()).await {
            tracing::warn!(error = %e, "cannot answer a call on the bus");
        }
    }
}

/// The calls on one subject for this process's share of a queue group.
pub struct Calls {
    subscriber: async_nats::Subscriber,
    client: async_nats::Client,
}

impl Calls {
    /// The next call; `None` when the subscription ends.
    pub async fn next(&mut self) -> Option<Call> {
        use futures::StreamExt;
        let message = self.subscriber.next().await?;
        let token = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Authorization"))
            .and_then(|v| v.as_str().strip_prefix("Bearer ").map(str::to_string));
        Some(Call { payload: message.payload, token, reply: message.reply, client: self.client.clone() })
    }
}

/// One message on the bus.
#[derive(Debug, Clone)]
pub struct Event {
    pub subject: Arc<str>,
    pub payload: Arc<serde_json::Value>,
}

/// A handle to the bus; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    tx: broadcast::Sender<Event>,
    /// The NATS bridge's outbound queue, when connected.
    remote: Option<mpsc::UnboundedSender<Event>>,
    nats: Option<async_nats::Client>,
}

/// The header that names the process an event came from.
const ORIGIN: &str = "Acgs-Origin";

/// Why the bus could not be bridged to NATS.
#[derive(Debug, thiserror::Error)]
#[error("nats_url: cannot use {url}: {reason}")]
pub struct BusError {
    pub url: String,
    pub reason: String,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    /// The in-process bus.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Bus { tx, remote: None, nats: None }
    }

    /// The bus bridged to NATS at `url` (`nats://host:4222`). The first connection is retried in
    /// the background, so a process starts while NATS is still coming up; events published
    /// meanwhile wait in the client's buffer.
    ///
    /// Credentials in the URL (`nats://user:password@host:4222`, or `nats://token@host:4222`) are
    /// what the client authenticates with: async-nats itself does not send a URL's user info.
    pub async fn connect_nats(url: &str) -> Result<Bus, BusError> {
        let fail = |reason: String| BusError { url: redact(url), reason };
        let origin = uuid::Uuid::new_v4().to_string();
        let mut options = async_nats::ConnectOptions::new();
        match url_credentials(url) {
            Some(Credentials::UserPassword(user, password)) => options = options.user_and_password(user, password),
            Some(Credentials::Token(token)) => options = options.token(token),
            None => {}
        }
        let client = options
            .name(format!("acgs-{}", std::process::id()))
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let mut bus = Bus::new();
        let incoming = client.subscribe("acgs.>").await.map_err(|e| fail(e.to_string()))?;
        tokio::spawn(bridge_in(incoming, bus.tx.clone(), origin.clone()));
        let (out, rx) = mpsc::unbounded_channel();
        tokio::spawn(bridge_out(client.clone(), rx, origin));
        bus.remote = Some(out);
        bus.nats = Some(client);
        Ok(bus)
    }

    /// Whether the NATS bridge (if any) is connected: `Ok` without NATS or when connected.
    pub fn check(&self) -> Result<(), String> {
        match &self.nats {
            None => Ok(()),
            Some(client) => match client.connection_state() {
                async_nats::connection::State::Connected => Ok(()),
                state => Err(format!("the NATS bus is {state}")),
            },
        }
    }

    /// Whether this bus is bridged to NATS.
    pub fn is_distributed(&self) -> bool {
        self.nats.is_some()
    }

    /// Sends a call on `subject` with `token` and waits up to `timeout` for one answer. Fails
    /// without NATS, while NATS is unreachable, when nobody serves the subject, on time-out, and
    /// for a body over the server's payload limit (the error says which).
    pub async fn call(
        &self,
        subject: &str,
        token: &str,
        body: Vec<u8>,
        timeout: std::time::Duration,
    ) -> Result<serde_json::Value, String> {
        let client = self.nats.as_ref().ok_or("calls need the NATS bus (nats_url)")?;
        if client.connection_state() != async_nats::connection::State::Connected {
            return Err(format!("{subject}: the NATS bus is {}", client.connection_state()));
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Authorization", format!("Bearer {token}").as_str());
        let request = async_nats::Request::new().headers(headers).payload(body.into()).timeout(Some(timeout));
        let message = client.send_request(subject.to_string(), request).await.map_err(|e| format!("{subject}: {e}"))?;
        serde_json::from_slice(&message.payload).map_err(|e| format!("{subject}: the answer is not JSON: {e}"))
    }

    /// The largest call body the NATS server takes (0 without NATS).
    pub fn max_payload(&self) -> usize {
        self.nats.as_ref().map_or(0, |c| c.server_info().max_payload)
    }

    /// Serves calls on `subject` as a member of the queue `group`.
    pub async fn serve(&self, subject: &str, group: &str) -> Result<Calls, String> {
        let client = self.nats.as_ref().ok_or("calls need the NATS bus (nats_url)")?;
        let subscriber = client
            .queue_subscribe(subject.to_string(), group.to_string())
            .await
            .map_err(|e| format!("{subject}: {e}"))?;
        Ok(Calls { subscriber, client: client.clone() })
    }

    /// Publishes an event to this process's subscribers and, when bridged, to every other
    /// process's; with no subscriber it is dropped (nobody is interested).
    pub fn publish(&self, subject: &str, payload: serde_json::Value) {
        let event = Event { subject: Arc::from(subject), payload: Arc::new(payload) };
        if let Some(remote) = &self.remote {
            let _ = remote.send(event.clone());
        }
        let _ = self.tx.send(event);
    }

    /// Subscribes to the subjects starting with `prefix` (`""` for all).
    pub fn subscribe(&self, prefix: &str) -> Subscription {
        Subscription { rx: self.tx.subscribe(), prefix: prefix.to_string() }
    }
}

/// A URL without its password, for messages.
/// How a NATS URL's user info authenticates.
#[derive(Debug, PartialEq, Eq)]
enum Credentials {
    UserPassword(String, String),
    Token(String),
}

/// The credentials in the user info of a NATS URL (the first, if several are given separated by
/// commas), percent-decoded: `user:password@` or a lone `token@`.
fn url_credentials(url: &str) -> Option<Credentials> {
    let first = url.split(',').next()?.trim();
    let (_, rest) = first.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _host) = authority.rsplit_once('@')?;
    Some(match userinfo.split_once(':') {
        Some((user, password)) => Credentials::UserPassword(percent_decode(user), percent_decode(password)),
        None => Credentials::Token(percent_decode(userinfo)),
    })
}

/// `%XX` escapes decoded (as URLs carry user info); anything malformed is kept as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = s.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn redact(url: &str) -> String {
    match url.split_once("://").and_then(|(scheme, rest)| rest.split_once('@').map(|(_, host)| (scheme, host))) {
        Some((scheme, host)) => format!("{scheme}://…@{host}"),
        None => url.to_string(),
    }
}

/// Sends what this process publishes to NATS, in order, marked with its origin.
async fn bridge_out(client: async_nats::Client, mut rx: mpsc::UnboundedReceiver<Event>, origin: String) {
    while let Some(event) = rx.recv().await {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(ORIGIN, origin.as_str());
        let body = match serde_json::to_vec(&*event.payload) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(subject = %event.subject, error = %e, "cannot serialise a bus event");
                continue;
            }
        };
        if let Err(e) = client.publish_with_headers(event.subject.to_string(), headers, body.into()).await {
            tracing::warn!(subject = %event.subject, error = %e, "cannot publish a bus event to NATS");
        }
    }
}

/// Delivers other processes' events from NATS to this process's subscribers.
async fn bridge_in(mut incoming: async_nats::Subscriber, tx: broadcast::Sender<Event>, origin: String) {
    use futures::StreamExt;
    while let Some(message) = incoming.next().await {
        let own = message.headers.as_ref().and_then(|h| h.get(ORIGIN)).is_some_and(|o| o.as_str() == origin);
        if own {
            continue;
        }
        match serde_json::from_slice::<serde_json::Value>(&message.payload) {
            Ok(payload) => {
                let _ = tx.send(Event { subject: Arc::from(message.subject.as_str()), payload: Arc::new(payload) });
            }
            Err(e) => tracing::warn!(subject = %message.subject, error = %e, "ignoring a bus message that is not JSON"),
        }
    }
    tracing::warn!("the NATS bus subscription ended");
}

/// A stream of events whose subject starts with a prefix.
pub struct Subscription {
    rx: broadcast::Receiver<Event>,
    prefix: String,
}

impl Subscription {
    /// The next matching event; `None` when the bus is gone. A subscriber that fell behind by more
    /// than the channel's capacity skips what it missed and says so in the log.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self.rx.recv().await {
                Ok(event) if event.subject.starts_with(&self.prefix) => return Some(event),
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, prefix = %self.prefix, "bus subscriber lagged");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nats_urls_user_info_is_its_credentials() {
        let pair = |u: &str, p: &str| Some(Credentials::UserPassword(u.into(), p.into()));
        assert_eq!(url_credentials("nats://acgs:secret@nats:4222"), pair("acgs", "secret"));
        assert_eq!(url_credentials("nats://acgs:p%40ss%3Aw%2Frd@nats:4222/"), pair("acgs", "p@ss:w/rd"));
        assert_eq!(url_credentials("nats://s3cr3t-token@nats:4222"), Some(Credentials::Token("s3cr3t-token".into())));
        assert_eq!(url_credentials("nats://a:b@one:4222,nats://a:b@two:4222"), pair("a", "b"));
        assert_eq!(url_credentials("nats://nats:4222"), None);
        assert_eq!(url_credentials("nats://nats:4222/path@x"), None);
        assert_eq!(url_credentials("127.0.0.1:4222"), None);
        assert_eq!(percent_decode("100%25 %zz %4"), "100% %zz %4");
    }
}
