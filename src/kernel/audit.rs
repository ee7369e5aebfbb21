//! Audit events and the transactional outbox (DESIGN §3 Audit).
//!
//! A service records an [`AuditEvent`] with [`record`] inside the same storage transaction as the
//! state change it describes, into its own `_outbox` table: either both are stored or neither.
//! A [`Relay`] per service then delivers pending events to the integrity log at least once, in
//! order, and deletes them only after the log has acknowledged them. The log deduplicates by
//! `event_id`, so a crash between delivery and deletion causes no duplicate entry. Killing the
//! process at any moment loses no event that was committed.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::kernel::service::ServiceName;
use crate::kernel::storage::{Db, StorageError, Tx, Value};
use crate::params;

/// One audit event: what happened, to what, by whom, when. Its canonical JSON (keys sorted, no
/// white space) is the leaf of the integrity log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Unique id (UUIDv7); the log keeps one entry per id.
    pub event_id: String,
    /// The service that made the change (`auth`, `constitution`, …).
    pub service: String,
    /// What happened, `service.noun.verb` style: `auth.login.failure`, `constitution.ratified`.
    pub kind: String,
    /// What it is about: `user:<id>`, `amendment:<id>`, `key:<kid>`.
    pub subject: String,
    /// Who did it: a user or client id, or `system`.
    pub actor: String,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Details; never secrets.
    pub data: serde_json::Value,
}

impl AuditEvent {
    pub fn new(service: &str, kind: &str, subject: &str, actor: &str, data: serde_json::Value) -> Self {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        AuditEvent {
            event_id: uuid::Uuid::now_v7().to_string(),
            service: service.to_string(),
            kind: kind.to_string(),
            subject: subject.to_string(),
            actor: actor.to_string(),
            at_ms,
            data,
        }
    }

    /// The leaf bytes of the integrity log: canonical JSON (object keys sorted by their bytes at
    /// every depth, no white space), whatever serde_json features are enabled elsewhere.
    ///
    /// Written field by field (the same bytes as sorting the event's JSON value, without building
    /// that value): this runs once per appended event.
    pub fn leaf_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        // Destructured so that a new field cannot be forgotten here.
        let AuditEvent { event_id, service, kind, subject, actor, at_ms, data } = self;
        let mut out = Vec::with_capacity(256);
        // The keys in byte order.
        out.extend_from_slice(b"{\"actor\":");
        serde_json::to_writer(&mut out, actor)?;
        out.extend_from_slice(b",\"at_ms\":");
        serde_json::to_writer(&mut out, at_ms)?;
        out.extend_from_slice(b",\"data\":");
        write_canonical(data, &mut out)?;
        out.extend_from_slice(b",\"event_id\":");
        serde_json::to_writer(&mut out, event_id)?;
        out.extend_from_slice(b",\"kind\":");
        serde_json::to_writer(&mut out, kind)?;
        out.extend_from_slice(b",\"service\":");
        serde_json::to_writer(&mut out, service)?;
        out.extend_from_slice(b",\"subject\":");
        serde_json::to_writer(&mut out, subject)?;
        out.push(b'}');
        Ok(out)
    }
}

fn write_canonical(v: &serde_json::Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k)?;
                out.push(b':');
                if let Some(inner) = map.get(k) {
                    write_canonical(inner, out)?;
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

// Every service with an outbox has the `_outbox` table in its migrations
// (`embedded/migrations/<service>/0002_outbox.sql`).

/// Records an event in the outbox, inside the caller's transaction.
pub async fn record(tx: &mut Tx, event: &AuditEvent) -> Result<(), StorageError> {
    let payload = serde_json::to_string(event).map_err(|e| StorageError::Database(e.to_string()))?;
    // UUIDv7 ids sort by creation time, so the primary key orders delivery.
    tx.execute(
        "INSERT INTO _outbox (seq_key, event_id, payload, created_at) VALUES ($1, $1, $2, $3)",
        &params![event.event_id.as_str(), payload, event.at_ms],
    )
    .await?;
    tx.note_outbox_write();
    Ok(())
}

/// Builds an event of `service` (see [`AuditEvent::new`]) and records it with [`record`] inside the
/// transaction of the change it describes.
pub async fn record_new(
    tx: &mut Tx,
    service: ServiceName,
    kind: &str,
    subject: &str,
    actor: &str,
    data: serde_json::Value,
) -> Result<(), StorageError> {
    record(tx, &AuditEvent::new(service.as_str(), kind, subject, actor, data)).await
}

/// Where a relay delivers events: the integrity log, in this process or over HTTP.
#[async_trait::async_trait]
pub trait AuditSink: Send + Sync {
    /// Appends the events (idempotent per `event_id`); `Ok` only once all are durably in the log.
    async fn deliver(&self, events: &[AuditEvent]) -> Result<(), String>;
}

/// Delivers one service's outbox to the integrity log.
#[derive(Clone)]
pub struct Relay {
    db: Db,
    sink: Arc<dyn AuditSink>,
    wake: Arc<Notify>,
}

/// Events delivered per round trip.
const BATCH: i64 = 500;

impl Relay {
    pub fn new(db: Db, sink: Arc<dyn AuditSink>) -> Self {
        let wake = db.outbox_written();
        Relay { db, sink, wake }
    }

    /// Delivers pending events until none are left; returns how many were delivered.
    pub async fn drain(&self) -> Result<usize, String> {
        let mut delivered = 0;
        loop {
            let rows = self
                .db
                .query("SELECT seq_key, payload FROM _outbox ORDER BY seq_key LIMIT $1", &params![BATCH])
                .await
                .map_err(|e| e.to_string())?;
            if rows.is_empty() {
                return Ok(delivered);
            }
            let mut events = Vec::with_capacity(rows.len());
            let mut keys = Vec::with_capacity(rows.len());
            for row in &rows {
                let key = row.get_string(0).map_err(|e| e.to_string())?;
                match serde_json::from_str::<AuditEvent>(row.get_str(1).map_err(|e| e.to_string())?) {
                    Ok(event) => events.push(event),
                    Err(e) => return Err(format!("outbox entry {key} is unreadable: {e}")),
                }
                keys.push(key);
            }
            self.sink.deliver(&events).await?;
            // Delete exactly what was delivered: an event with a smaller key may have been
            // committed (by a concurrent transaction) after the SELECT above.
            let placeholders = (1..=keys.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
            let keys: Vec<Value> = keys.into_iter().map(Value::from).collect();
            self.db
                .execute(&format!("DELETE FROM _outbox WHERE seq_key IN ({placeholders})"), &keys)
                .await
                .map_err(|e| e.to_string())?;
            delivered += events.len();
        }
    }

    /// Runs until the task is aborted: drains after every commit that wrote to the outbox and at
    /// least once a second,
    /// backing off while the log is unreachable.
    pub async fn run(self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.drain().await {
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "audit delivery failed; will retry");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Pending events (for `/ready` and tests).
    pub async fn pending(&self) -> Result<i64, StorageError> {
        self.db.query_opt("SELECT COUNT(*) FROM _outbox", &[]).await?.map_or(Ok(0), |r| r.get_i64(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn leaf_bytes_are_the_events_json_value_with_sorted_keys() {
        let mut events = vec![
            AuditEvent::new("auth", "auth.login.failure", "user:1", "system", json!({"z": 1, "a": [true, null]})),
            AuditEvent::new("", "", "", "", json!(null)),
            AuditEvent::new(
                "c\"o\\n\u{1}",
                "k\n\t",
                "sübject ✓ \u{1F600}",
                "</script>",
                json!({"b": {"y": 1.5, "x": -2, "é": "\u{7f}"}, "a": [{"d": 1, "c": 2}], "": {}}),
            ),
        ];
        events[1].at_ms = -1;
        events[2].at_ms = i64::MAX;
        for event in events {
            let value = serde_json::to_value(&event).expect("value");
            let mut want = Vec::new();
            write_canonical(&value, &mut want).expect("canonical");
            let got = event.leaf_bytes().expect("leaf");
            assert_eq!(String::from_utf8(got.clone()).expect("utf-8"), String::from_utf8(want).expect("utf-8"));
            assert_eq!(serde_json::from_slice::<AuditEvent>(&got).expect("parses"), event);
        }
    }
}
