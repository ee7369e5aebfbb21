//! The event bus between services: constitution ratifications, token revocations, policy
//! activations, cache invalidation.
//!
//! This is the in-process bus used by `acgs up`: a broadcast channel that every subscriber sees in
//! order. The NATS bus of a distributed deployment will implement the same `publish`/`subscribe`
//! interface; subjects are listed in ARCHITECTURE.md.

use std::sync::Arc;

use tokio::sync::broadcast;

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
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        Bus { tx }
    }

    /// Publishes an event; with no subscriber it is dropped (nobody is interested).
    pub fn publish(&self, subject: &str, payload: serde_json::Value) {
        let _ = self.tx.send(Event { subject: Arc::from(subject), payload: Arc::new(payload) });
    }

    /// Subscribes to the subjects starting with `prefix` (`""` for all).
    pub fn subscribe(&self, prefix: &str) -> Subscription {
        Subscription { rx: self.tx.subscribe(), prefix: prefix.to_string() }
    }
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
