//! The integrity log's share of the bus's calls: in a distributed deployment the services'
//! outbox relays deliver audit events with [`calls::INTEGRITY_APPEND`] over NATS, and every
//! integrity process answers as a member of one queue group. A call must carry a token with the
//! `service` or `admin` role; the answer comes only once the events are durable.

use std::sync::Arc;

use serde_json::json;
use tokio::task::JoinHandle;

use super::IntegrityCore;
use crate::kernel::audit::AuditEvent;
use crate::kernel::auth::{Role, Verifier};
use crate::kernel::bus::{Bus, Call, calls};

/// Events per call (the same limit as `POST /api/v1/log/entries`).
pub const MAX_EVENTS: usize = 1_000;

#[derive(serde::Deserialize)]
struct Append {
    events: Vec<AuditEvent>,
}

/// Answers append calls until the task is aborted; re-subscribes if the subscription ends.
pub(crate) fn spawn(core: Arc<IntegrityCore>, bus: Bus, verifier: Arc<Verifier>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match bus.serve(calls::INTEGRITY_APPEND, calls::INTEGRITY_GROUP).await {
                Ok(mut incoming) => {
                    while let Some(call) = incoming.next().await {
                        let (core, verifier) = (core.clone(), verifier.clone());
                        tokio::spawn(async move {
                            let answer = answer(&core, &verifier, &call).await;
                            call.respond(&answer).await;
                        });
                    }
                    tracing::warn!("the integrity log's append subscription ended; subscribing again");
                }
                Err(e) => tracing::warn!(error = %e, "cannot serve audit delivery on the bus; retrying"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    })
}

async fn answer(core: &IntegrityCore, verifier: &Verifier, call: &Call) -> serde_json::Value {
    let Some(token) = call.token.as_deref() else {
        return json!({ "error": "unauthorized: an append call needs a bearer token with the service role" });
    };
    match verifier.verify(token).await {
        Ok(claims) if claims.roles.iter().any(|r| r == Role::Service.as_str() || r == Role::Admin.as_str()) => {}
        Ok(_) => return json!({ "error": "forbidden: appending to the log needs the service or admin role" }),
        Err(e) => return json!({ "error": format!("unauthorized: {e}") }),
    }
    let request: Append = match serde_json::from_slice(&call.payload) {
        Ok(request) => request,
        Err(e) => return json!({ "error": format!("invalid request: {e}") }),
    };
    if request.events.len() > MAX_EVENTS {
        return json!({ "error": format!("invalid request: at most {MAX_EVENTS} events per call, not {}", request.events.len()) });
    }
    match core.append(&request.events).await {
        Ok(out) => json!({ "appended": out.iter().filter(|a| !a.duplicate).count(), "events": out.len() }),
        Err(e) => json!({ "error": e.to_string() }),
    }
}
