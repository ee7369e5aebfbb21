//! Decisions on their way to the integrity log, off the hot path.
//!
//! `decide` answers after handing its event to a bounded in-memory queue ([`DecisionLog::submit`]);
//! one writer task drains the queue in batches and appends them to the log (in process, or over
//! HTTP), retrying with back-off until the log takes them. Which decisions are logged is the
//! [`LogMode`]. Fail closed: when a decision that must be logged cannot be queued (the queue is
//! full because the log is behind, or no log is configured), the decision is a deny saying why.
//!
//! The queue is memory, not storage: decisions answered in the instant before a crash may be
//! missing from the log. Decisions change no state; every state change goes through the
//! transactional outbox instead (src/kernel/audit.rs).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};
use tokio::sync::mpsc;

use crate::kernel::audit::{AuditEvent, AuditSink};
use crate::kernel::metrics::Metrics;

/// Which decisions go to the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LogMode {
    All,
    /// Denies only.
    Deny,
    /// Denies, and this share of allows (0 < r ≤ 1), chosen by the decision id.
    Sample(f64),
}

impl LogMode {
    /// `all`, `deny` or `sample:R`.
    pub fn parse(text: &str) -> Result<LogMode, String> {
        match text {
            "all" => Ok(LogMode::All),
            "deny" => Ok(LogMode::Deny),
            other => {
                let rate = other
                    .strip_prefix("sample:")
                    .and_then(|r| r.parse::<f64>().ok())
                    .ok_or_else(|| format!("{other:?} is not `all`, `deny` or `sample:R`"))?;
                if rate > 0.0 && rate <= 1.0 {
                    Ok(LogMode::Sample(rate))
                } else {
                    Err(format!("the sample rate must be in (0, 1], not {rate}"))
                }
            }
        }
    }

    /// Whether this decision is logged. `id` is a UUIDv7; its random low bits pick the sample.
    pub fn wants(self, allow: bool, id: &uuid::Uuid) -> bool {
        match self {
            LogMode::All => true,
            LogMode::Deny => !allow,
            LogMode::Sample(rate) => {
                // The last 32 bits of a UUIDv7 are random (the bits before them may hold the
                // generator's counter).
                let low = u32::from_be_bytes(id.as_bytes()[12..16].try_into().unwrap_or([0; 4]));
                !allow || f64::from(low) < rate * f64::from(u32::MAX)
            }
        }
    }
}

/// The queue into the log.
#[derive(Clone)]
pub struct DecisionLog {
    mode: LogMode,
    queue: Option<mpsc::Sender<AuditEvent>>,
    queued: IntCounter,
    refused: IntCounter,
    depth: IntGauge,
}

/// Events per append.
const BATCH: usize = 4096;
/// Events dropped between two yields of the writer.
const DROP_SLICE: usize = 256;

impl DecisionLog {
    /// A log with a queue of `capacity` feeding `sink`, and the writer task to spawn; without a
    /// sink every decision that must be logged is refused.
    pub fn new(
        mode: LogMode,
        capacity: usize,
        sink: Option<Arc<dyn AuditSink>>,
        metrics: &Metrics,
    ) -> (DecisionLog, Option<BoxFuture<'static, ()>>) {
        let logged = IntCounterVec::new(
            Opts::new(
                "acgs_decisions_logged_total",
                "Decisions handed to the integrity log, by outcome (queued, refused)",
            ),
            &["outcome"],
        )
        .expect("static metric definition is valid");
        let depth = IntGauge::new("acgs_decision_log_queue", "Decisions waiting to be written to the integrity log")
            .expect("static metric definition is valid");
        metrics.register(&logged);
        metrics.register(&depth);
        let (queued, refused) = (logged.with_label_values(&["queued"]), logged.with_label_values(&["refused"]));
        let Some(sink) = sink else {
            return (DecisionLog { mode, queue: None, queued, refused, depth }, None);
        };
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let writer = Box::pin(write(rx, sink, depth.clone()));
        (DecisionLog { mode, queue: Some(tx), queued, refused, depth }, Some(writer))
    }

    pub fn mode(&self) -> LogMode {
        self.mode
    }

    /// Queues `event` if the mode wants this decision. `Ok(true)`: queued; `Ok(false)`: not to be
    /// logged; `Err`: must be logged and cannot be (the caller denies).
    pub fn submit(&self, allow: bool, id: &uuid::Uuid, event: impl FnOnce() -> AuditEvent) -> Result<bool, String> {
        if !self.mode.wants(allow, id) {
            return Ok(false);
        }
        let Some(queue) = &self.queue else {
            self.refused.inc();
            return Err("decisions must be logged but no integrity log is configured (ACGS_INTEGRITY_URL)".into());
        };
        match queue.try_send(event()) {
            Ok(()) => {
                self.depth.inc();
                self.queued.inc();
                Ok(true)
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.refused.inc();
                Err("the decision log is behind (its queue is full); retry shortly".into())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.refused.inc();
                Err("the decision log writer has stopped".into())
            }
        }
    }
}

/// Drains the queue into the sink until every sender is gone, retrying a failed batch forever
/// (with back-off): the log deduplicates by event id, so a retry never doubles an entry.
async fn write(mut rx: mpsc::Receiver<AuditEvent>, sink: Arc<dyn AuditSink>, depth: IntGauge) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // Dropping a full batch takes milliseconds: a slice at a time, yielding between slices,
        // so that the decisions sharing this runtime thread are not held up behind it.
        while !batch.is_empty() {
            batch.truncate(batch.len().saturating_sub(DROP_SLICE));
            tokio::task::yield_now().await;
        }
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let mut backoff = Duration::from_millis(50);
        while let Err(e) = sink.deliver(&batch).await {
            tracing::warn!(error = %e, events = batch.len(), retry_ms = backoff.as_millis() as u64, "decision log append failed; will retry");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        depth.sub(batch.len() as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_choose() {
        assert_eq!(LogMode::parse("all"), Ok(LogMode::All));
        assert_eq!(LogMode::parse("deny"), Ok(LogMode::Deny));
        assert_eq!(LogMode::parse("sample:0.25"), Ok(LogMode::Sample(0.25)));
        for bad in ["", "some", "sample:", "sample:0", "sample:1.5", "sample:-1", "sample:x"] {
            assert!(LogMode::parse(bad).is_err(), "{bad}");
        }
        let ids: Vec<uuid::Uuid> = (0..10_000).map(|_| uuid::Uuid::now_v7()).collect();
        assert!(ids.iter().all(|id| LogMode::Deny.wants(false, id) && !LogMode::Deny.wants(true, id)));
        let sampled = ids.iter().filter(|id| LogMode::Sample(0.25).wants(true, id)).count();
        assert!((2000..3000).contains(&sampled), "{sampled} of 10000 at 25 %");
        assert!(ids.iter().all(|id| LogMode::Sample(0.01).wants(false, id)), "denies are always logged");
    }

    #[test]
    fn without_a_log_a_decision_that_must_be_logged_is_refused() {
        let metrics = Metrics::new("consensus");
        let (log, writer) = DecisionLog::new(LogMode::All, 8, None, &metrics);
        assert!(writer.is_none());
        let id = uuid::Uuid::now_v7();
        let event = || AuditEvent::new("consensus", "consensus.decision", "decision:x", "a", serde_json::json!({}));
        assert!(log.submit(true, &id, event).is_err());
        let (deny_only, _) = DecisionLog::new(LogMode::Deny, 8, None, &metrics);
        assert_eq!(deny_only.submit(true, &id, event), Ok(false), "an allow need not be logged");
    }
}
