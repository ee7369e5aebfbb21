//! The integrity service (port 8002): the append-only, signed Merkle transparency log of audit
//! events with inclusion and consistency proofs.
//!
//! [`IntegrityService::start`] opens the log (`<data_dir>/integrity.redb`), loads or creates the
//! checkpoint signing key (`<data_dir>/integrity-note.key`, mode 0600, in the
//! `PRIVATE+KEY+<name>+<id>+<key>` format of golang.org/x/mod/sumdb/note, named after the
//! configured origin) and signs a first checkpoint, even for an empty log. From then on
//! [`IntegrityService::spawn_checkpointer`] signs a new checkpoint at most once per
//! `integrity.checkpoint_interval_ms`, and only when the log grew: signing is never on the append
//! path. The latest signed note is kept in memory and served by `GET /api/v1/log/checkpoint`.
//!
//! Services in this process deliver their outbox through [`client::IntegrityClient::InProcess`]
//! (an [`AuditSink`]); services elsewhere `POST /api/v1/log/entries` with a `service` token.

mod calls;
pub mod client;
pub mod log;
pub mod merkle;
pub mod note;
mod routes;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use prometheus::{IntCounter, IntGauge};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::kernel::audit::{AuditEvent, AuditSink};
use crate::kernel::http::{ReadyCheck, ServiceApp};
use crate::kernel::metrics::Metrics;
use crate::kernel::service::ServiceName;

use log::{Appended, Log, LogError};
use note::{Checkpoint, NoteError, NoteSigner};

/// The signing key's file name inside the data directory.
pub const KEY_FILE: &str = "integrity-note.key";

/// Why the integrity service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("integrity log: {0}")]
    Log(#[from] LogError),
    #[error("integrity checkpoint key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("integrity checkpoint: {0}")]
    Note(#[from] NoteError),
}

/// The latest signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The tree size it signs.
    pub size: u64,
    /// The whole signed note, as served.
    pub note: String,
}

/// The service's state, shared by its routes, its checkpointer and its in-process client.
pub struct IntegrityCore {
    log: Log,
    origin: String,
    signer: NoteSigner,
    checkpoint: RwLock<Arc<SignedCheckpoint>>,
    interval: Duration,
    metrics: Metrics,
    entries: IntGauge,
    appends: IntCounter,
}

/// A running integrity service.
#[derive(Clone)]
pub struct IntegrityService {
    core: Arc<IntegrityCore>,
}

impl IntegrityService {
    /// Opens the log, loads (or creates) the signing key, and signs the first checkpoint.
    pub fn start(config: &Config) -> Result<IntegrityService, StartError> {
        let log = Log::open(&config.data_dir)?;
        let origin = config.integrity.origin.clone();
        let signer = load_or_create_key(&config.data_dir.join(KEY_FILE), &origin)?;
        let metrics = Metrics::new(ServiceName::Integrity.as_str());
        let entries = IntGauge::new("acgs_log_entries", "Entries in the integrity log (the tree size)")
            .expect("static metric definition is valid");
        let appends =
            IntCounter::new("acgs_log_appends_total", "Events appended to the integrity log (not duplicates)")
                .expect("static metric definition is valid");
        metrics.register(&entries);
        metrics.register(&appends);
        let first = sign(&log, &origin, &signer)?;
        entries.set(i64::try_from(first.size).unwrap_or(i64::MAX));
        let core = Arc::new(IntegrityCore {
            log,
            origin,
            signer,
            checkpoint: RwLock::new(Arc::new(first)),
            interval: Duration::from_millis(config.integrity.checkpoint_interval_ms.max(1)),
            metrics,
            entries,
            appends,
        });
        Ok(IntegrityService { core })
    }

    /// The log itself (for tools and tests).
    pub fn log(&self) -> &Log {
        &self.core.log
    }

    /// The in-process client other services in this process deliver their outbox through.
    pub fn client(&self) -> client::IntegrityClient {
        client::IntegrityClient::InProcess(self.core.clone())
    }

    /// The latest signed checkpoint.
    pub fn checkpoint(&self) -> Arc<SignedCheckpoint> {
        self.core.checkpoint()
    }

    /// The note verifier key checkpoints verify with.
    pub fn verifier_key(&self) -> String {
        self.core.signer.verifier_key()
    }

    /// Appends events (deduplicated by event id), one [`Appended`] per event, in order.
    pub async fn append(&self, events: &[AuditEvent]) -> Result<Vec<Appended>, LogError> {
        self.core.append(events).await
    }

    /// Signs a checkpoint now if the log grew since the last one; returns the latest.
    pub fn checkpoint_now(&self) -> Result<Arc<SignedCheckpoint>, StartError> {
        self.core.refresh_checkpoint()
    }

    /// The background task that signs a new checkpoint at most once per interval when the log grew.
    pub fn spawn_checkpointer(&self) -> JoinHandle<()> {
        let core = self.core.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(core.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let task = core.clone();
                match tokio::task::spawn_blocking(move || task.refresh_checkpoint()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "cannot sign an integrity checkpoint"),
                    Err(e) => tracing::error!(error = %e, "the checkpoint signer stopped"),
                }
            }
        })
    }

    /// The task that answers audit delivery calls on the NATS bus (distributed deployments).
    pub fn spawn_bus_responder(
        &self,
        bus: crate::kernel::bus::Bus,
        verifier: Arc<crate::kernel::auth::Verifier>,
    ) -> JoinHandle<()> {
        calls::spawn(self.core.clone(), bus, verifier)
    }

    /// The HTTP application of this service.
    pub fn app(&self) -> ServiceApp {
        let log = self.core.log.clone();
        ServiceApp {
            name: ServiceName::Integrity,
            routes: routes::router(self.core.clone()),
            openapi: routes::openapi(),
            ready: vec![ReadyCheck::new("log", move || {
                let log = log.clone();
                async move { log.size().map(|_| ()).map_err(|e| e.to_string()) }
            })],
            metrics: self.core.metrics.clone(),
        }
    }
}

#[async_trait::async_trait]
impl AuditSink for IntegrityService {
    async fn deliver(&self, events: &[AuditEvent]) -> Result<(), String> {
        self.core.deliver(events).await
    }
}

impl IntegrityCore {
    pub(crate) fn checkpoint(&self) -> Arc<SignedCheckpoint> {
        self.checkpoint.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub(crate) async fn append(&self, events: &[AuditEvent]) -> Result<Vec<Appended>, LogError> {
        let out = self.log.append_batch(events).await?;
        let added = out.iter().filter(|a| !a.duplicate).count();
        self.appends.inc_by(added as u64);
        if let Some(last) = out.iter().map(|a| a.index).max() {
            let size = i64::try_from(last.saturating_add(1)).unwrap_or(i64::MAX);
            if self.entries.get() < size {
                self.entries.set(size);
            }
        }
        Ok(out)
    }

    pub(crate) async fn deliver(&self, events: &[AuditEvent]) -> Result<(), String> {
        self.append(events).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// Signs a new checkpoint if the log grew since the latest one.
    fn refresh_checkpoint(&self) -> Result<Arc<SignedCheckpoint>, StartError> {
        let size = self.log.size()?;
        self.entries.set(i64::try_from(size).unwrap_or(i64::MAX));
        let current = self.checkpoint();
        if size <= current.size {
            return Ok(current);
        }
        let signed = Arc::new(sign(&self.log, &self.origin, &self.signer)?);
        let mut slot = self.checkpoint.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if signed.size > slot.size {
            *slot = signed;
        }
        Ok(slot.clone())
    }

    pub(crate) fn log(&self) -> &Log {
        &self.log
    }

    pub(crate) fn verifier(&self) -> crate::services::integrity::note::NoteVerifier {
        self.signer.verifier()
    }

    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    pub(crate) fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }
}

/// Signs the log's current head (size and root from one snapshot).
fn sign(log: &Log, origin: &str, signer: &NoteSigner) -> Result<SignedCheckpoint, StartError> {
    let (size, root) = log.head()?;
    let note = signer.sign_checkpoint(&Checkpoint::new(origin, size, root))?;
    Ok(SignedCheckpoint { size, note })
}

/// Reads the signing key from `path`, or creates it (0600) on first start. A key named other
/// than `origin` is refused: checkpoints would name a key their verifiers do not expect.
fn load_or_create_key(path: &Path, origin: &str) -> Result<NoteSigner, StartError> {
    let fail = |reason: String| StartError::Key { path: path.display().to_string(), reason };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let signer = NoteSigner::from_private_key(text.trim()).map_err(|e| fail(e.to_string()))?;
            if signer.name() != origin {
                return Err(fail(format!(
                    "the key is named {:?} but integrity.origin is {origin:?}; restore the origin or move the key away",
                    signer.name()
                )));
            }
            Ok(signer)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let signer = NoteSigner::new(origin, SigningKey::generate(&mut rand::rngs::OsRng))?;
            crate::services::auth::write_secret_file(path, &format!("{}\n", signer.private_key()))
                .map_err(|e| fail(e.to_string()))?;
            Ok(signer)
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Where the signing key of a data directory lives.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        let mut config = Config::defaults_only();
        config.data_dir = dir.to_path_buf();
        config.integrity.checkpoint_interval_ms = 10;
        config
    }

    fn event(i: u32) -> AuditEvent {
        let mut e = AuditEvent::new("test", "test.done", "thing:1", "tester", serde_json::json!({ "i": i }));
        e.event_id = format!("event-{i}");
        e
    }

    #[tokio::test]
    async fn in_process_delivery_is_deduplicated_and_checkpoints_follow_off_the_append_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let service = IntegrityService::start(&config(dir.path())).expect("starts");
        assert_eq!(service.checkpoint().size, 0, "a first checkpoint for the empty log");
        let sink = service.client();
        sink.deliver(&[event(1), event(2)]).await.expect("delivered");
        sink.deliver(&[event(2), event(3)]).await.expect("redelivered");
        assert_eq!(service.log().size().expect("size"), 3);
        // Appending signed nothing; the checkpointer does.
        assert_eq!(service.checkpoint().size, 0);
        let task = service.spawn_checkpointer();
        for _ in 0..200 {
            if service.checkpoint().size == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        task.abort();
        let cp = service.checkpoint();
        assert_eq!(cp.size, 3);
        let verifier = note::NoteVerifier::parse(&service.verifier_key()).expect("key");
        let parsed = note::verify_checkpoint(&cp.note, &verifier, Some("acgs.local/log")).expect("verifies");
        assert_eq!(parsed.root, service.log().root(3).expect("root"));
        assert_eq!(service.checkpoint_now().expect("unchanged").size, 3);
        let http = client::IntegrityClient::http("http://integrity:8002/", None);
        let err = http.deliver(&[event(4)]).await.expect_err("no credentials");
        assert!(err.contains("service_client_secret"), "{err}");
    }

    #[tokio::test]
    async fn the_key_is_kept_and_a_key_of_another_origin_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = IntegrityService::start(&config(dir.path())).expect("starts").verifier_key();
        let second = IntegrityService::start(&config(dir.path())).expect("restarts").verifier_key();
        assert_eq!(first, second);
        let mut other = config(dir.path());
        other.integrity.origin = "example.org/other".into();
        let err = IntegrityService::start(&other).err().expect("refused").to_string();
        assert!(err.contains("integrity.origin") && err.contains(KEY_FILE), "{err}");
        std::fs::write(key_path(dir.path()), "garbage\n").expect("write");
        assert!(IntegrityService::start(&config(dir.path())).is_err());
    }
}
