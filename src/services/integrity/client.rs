//! How other services deliver audit events to the integrity log: in the same process, over the
//! NATS bus (a call answered by one of the integrity processes, the distributed default), or over
//! HTTP (`POST /api/v1/log/entries`). Over the bus and HTTP the call carries the process's service
//! token, takes at most 1,000 events, and may be repeated: the log deduplicates by event id.
//! Either way it is the [`AuditSink`] an outbox relay uses, and an event leaves the outbox only
//! once the log has answered that it is durable.

use std::sync::Arc;
use std::time::Duration;

use super::IntegrityCore;
use crate::kernel::audit::{AuditEvent, AuditSink};
use crate::kernel::bus::{Bus, calls};
use crate::kernel::peer::{Auth, BearerSource, Peer, Retry};

/// Events per `POST /api/v1/log/entries` (the route's limit).
const CHUNK: usize = 1_000;

/// A handle on the integrity log.
#[derive(Clone)]
pub enum IntegrityClient {
    /// The log in this process: appends go straight to its writer.
    InProcess(Arc<IntegrityCore>),
    /// The log in another process, over HTTP.
    Http(Arc<Peer>),
    /// The log in other processes, reached through calls on the NATS bus.
    Bus { bus: Bus, credentials: Arc<dyn BearerSource> },
}

impl IntegrityClient {
    /// A client for an integrity service at `base_url` (`http://integrity:8002`), appending with
    /// the service tokens of `credentials`.
    pub fn http(base_url: &str, credentials: Option<Arc<dyn BearerSource>>) -> Self {
        IntegrityClient::Http(Arc::new(
            Peer::new("integrity", base_url, Duration::from_secs(10)).with_credentials(credentials),
        ))
    }
}

#[async_trait::async_trait]
impl AuditSink for IntegrityClient {
    async fn deliver(&self, events: &[AuditEvent]) -> Result<(), String> {
        match self {
            IntegrityClient::InProcess(core) => core.deliver(events).await,
            IntegrityClient::Http(peer) => {
                for chunk in events.chunks(CHUNK) {
                    let body = serde_json::json!({ "events": chunk });
                    let reply = peer
                        .post("/api/v1/log/entries", &body, Auth::Service, Retry::Idempotent)
                        .await
                        .map_err(|e| e.to_string())?;
                    if !reply.is_success() {
                        return Err(reply.unexpected().to_string());
                    }
                }
                Ok(())
            }
            IntegrityClient::Bus { bus, credentials } => {
                // Well under the server's payload limit (1 MiB by default), and under the
                // append limit of events.
                let budget = (bus.max_payload() / 2).max(64 * 1024);
                for chunk in chunks(events, budget)? {
                    let token = credentials.bearer().await?;
                    let answer = bus.call(calls::INTEGRITY_APPEND, &token, chunk, CALL_TIMEOUT).await?;
                    if let Some(error) = answer["error"].as_str() {
                        if error.starts_with("unauthorized") {
                            credentials.forget();
                        }
                        return Err(format!("{}: {error}", calls::INTEGRITY_APPEND));
                    }
                }
                Ok(())
            }
        }
    }
}

/// How long a bus append may take before the relay tries again.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// `{"events": [...]}` bodies of at most `budget` bytes (a single larger event goes alone) and
/// [`CHUNK`] events.
fn chunks(events: &[AuditEvent], budget: usize) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut current: Vec<Vec<u8>> = Vec::new();
    let mut size = 0;
    for event in events {
        let json =
            serde_json::to_vec(event).map_err(|e| format!("cannot encode audit event {}: {e}", event.event_id))?;
        if !current.is_empty() && (size + json.len() + 1 > budget || current.len() == CHUNK) {
            out.push(body(&current));
            current.clear();
            size = 0;
        }
        size += json.len() + 1;
        current.push(json);
    }
    if !current.is_empty() {
        out.push(body(&current));
    }
    Ok(out)
}

fn body(events: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"{\"events\":[".to_vec();
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e);
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_stay_within_the_budget_and_keep_every_event_in_order() {
        let events: Vec<AuditEvent> = (0..2_500)
            .map(|i| {
                AuditEvent::new(
                    "auth",
                    "auth.login.failure",
                    &format!("user:{i}"),
                    "system",
                    serde_json::json!({"i": i}),
                )
            })
            .collect();
        let bodies = chunks(&events, 20_000).expect("chunks");
        let mut seen = Vec::new();
        for b in &bodies {
            assert!(b.len() <= 20_000 + 20, "{}", b.len());
            let parsed: serde_json::Value = serde_json::from_slice(b).expect("json");
            let list = parsed["events"].as_array().expect("events");
            assert!(list.len() <= CHUNK);
            seen.extend(list.iter().map(|e| e["event_id"].as_str().expect("id").to_string()));
        }
        assert_eq!(seen, events.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>());
        assert_eq!(chunks(&events, usize::MAX).expect("chunks").len(), 3, "at most {CHUNK} per body");
    }
}
