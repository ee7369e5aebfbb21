//! The constitution service (port 8001): principles, voting rules, numbered versions with their hashes, and amendments decided by council vote.
//!
//! Versions are immutable; the latest stored one is active. On first start version 1 is the
//! constitution the process was started with (the embedded genesis or `--constitution FILE`); after
//! that the store decides, so a restart keeps ratified amendments. Amendments go draft → voting →
//! ratified | rejected | withdrawn | expired; closing tallies the votes against the number of
//! enabled members of the eligible role, which comes from the auth service through its client.
//! Ratification inserts the next version in the same transaction and announces it on the bus
//! (`acgs.constitution.ratified`), which every process's `HashCell` follows.

pub mod client;
mod model;
mod routes;
mod store;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::kernel::auth::now_secs;
use crate::kernel::bus::{Bus, subjects};
use crate::kernel::constitution::{Constitution, ConstitutionDigest};
use crate::kernel::error::ApiError;
use crate::kernel::http::{ReadyCheck, ServiceApp};
use crate::kernel::metrics::Metrics;
use crate::kernel::service::ServiceName;
use crate::kernel::storage::{Db, StorageError};
use crate::services::auth::client::AuthClient;

use store::{ChangeError, Closed, Store, Version};

/// Why the constitution service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("constitution storage: {0}")]
    Storage(#[from] StorageError),
}

/// The service's state, shared by its routes and its background closer.
pub struct ConstitutionCore {
    db: Db,
    bus: Bus,
    auth: AuthClient,
    /// The active version as this process last saw it.
    active: RwLock<Arc<Version>>,
    metrics: Metrics,
    /// Amendments closed, by outcome (ratified, rejected, expired).
    closed: IntCounterVec,
    /// The active version's number.
    version: IntGauge,
}

/// A running constitution service.
#[derive(Clone)]
pub struct ConstitutionService {
    core: Arc<ConstitutionCore>,
}

impl ConstitutionService {
    /// Opens storage, applies migrations and stores `initial` as version 1 if no version exists.
    /// The active version is the latest stored one.
    pub async fn start(
        config: &Config,
        initial: &Constitution,
        bus: Bus,
        auth: AuthClient,
    ) -> Result<ConstitutionService, StartError> {
        let db = Db::open(ServiceName::Constitution.as_str(), &config.storage()).await?;
        let migrations = crate::embedded::migrations(ServiceName::Constitution)?;
        db.migrate(&migrations).await?;
        let active = Store(&db).latest_or_init(initial, now_secs() as i64).await?;
        if active.number > 1 || active.sha256 != initial.digest().sha256 {
            tracing::info!(
                version = active.number,
                hash = %active.hash,
                "the stored constitution is active (the one given at start-up only seeds version 1)"
            );
        }
        let metrics = Metrics::new(ServiceName::Constitution.as_str());
        let closed = IntCounterVec::new(
            Opts::new("acgs_amendments_closed_total", "Amendments closed, by outcome (ratified, rejected, expired)"),
            &["outcome"],
        )
        .expect("static metric definition is valid");
        let version = IntGauge::new("acgs_constitution_version", "The active constitution version's number")
            .expect("static metric definition is valid");
        metrics.register(&closed);
        metrics.register(&version);
        version.set(active.number);
        let active = RwLock::new(Arc::new(active));
        let core = Arc::new(ConstitutionCore { db, bus, auth, active, metrics, closed, version });
        Ok(ConstitutionService { core })
    }

    /// The in-process client other services in this process use.
    pub fn client(&self) -> client::ConstitutionClient {
        client::ConstitutionClient::in_process(self.core.clone())
    }

    /// The active constitution.
    pub fn active_constitution(&self) -> Constitution {
        self.core.active().document.clone()
    }

    /// The active version's number.
    pub fn active_version(&self) -> i64 {
        self.core.active().number
    }

    /// The active version's digest: what `X-Constitutional-Hash` serves.
    pub fn active_hash(&self) -> ConstitutionDigest {
        let v = self.core.active();
        ConstitutionDigest { sha256: v.sha256.clone(), short: v.hash.clone() }
    }

    /// Closes amendments whose deadline has passed, every `interval`.
    pub fn spawn_closer(&self, interval: Duration) -> JoinHandle<()> {
        let core = self.core.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                core.close_due().await;
            }
        })
    }

    /// The relay that delivers this service's audit outbox to `sink` (the integrity log).
    pub fn outbox_relay(
        &self,
        sink: std::sync::Arc<dyn crate::kernel::audit::AuditSink>,
    ) -> crate::kernel::audit::Relay {
        crate::kernel::audit::Relay::new(self.core.db.clone(), sink)
    }

    /// The HTTP application of this service.
    pub fn app(&self) -> ServiceApp {
        ServiceApp {
            name: ServiceName::Constitution,
            routes: routes::router(self.core.clone()),
            openapi: routes::openapi(),
            ready: vec![ReadyCheck::storage(self.core.db.clone())],
            metrics: self.core.metrics.clone(),
        }
    }
}

impl ConstitutionCore {
    fn active(&self) -> Arc<Version> {
        match self.active.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn set_active(&self, version: Version) {
        self.version.set(version.number);
        let version = Arc::new(version);
        match self.active.write() {
            Ok(mut guard) => *guard = version,
            Err(poisoned) => *poisoned.into_inner() = version,
        }
    }

    /// The latest stored version (another replica may have ratified since this one last looked).
    async fn latest(&self) -> Result<Version, ApiError> {
        match Store(&self.db).latest().await? {
            Some(v) => Ok(v),
            None => Err(ApiError::internal("no constitution version is stored")),
        }
    }

    /// Tallies and closes one amendment in voting. Fails closed: without the number of eligible
    /// members nothing is decided (503).
    async fn close(&self, id: &str, actor: &str) -> Result<Closed, ApiError> {
        let active = self.latest().await?;
        let role = active.document.voting.eligible_role.clone();
        let eligible = self.auth.count_with_role(&role).await.map_err(|e| {
            tracing::warn!(amendment = %id, error = %e, "cannot count eligible voters");
            ApiError::unavailable(format!(
                "cannot close: the number of members of role {role:?} is unavailable from the auth service ({e}); \
                 nothing was decided"
            ))
        })?;
        let closed = Store(&self.db).close(id, actor, eligible, now_secs() as i64).await.map_err(change_error)?;
        self.closed.with_label_values(&[closed.amendment.status.as_str()]).inc();
        if let Some(v) = &closed.version {
            self.set_active(v.clone());
            self.bus.publish(
                subjects::CONSTITUTION_RATIFIED,
                serde_json::json!({ "version": v.number, "hash": v.hash, "sha256": v.sha256 }),
            );
            tracing::info!(version = v.number, hash = %v.hash, amendment = %id, "amendment ratified");
        }
        Ok(closed)
    }

    /// Closes every amendment whose deadline has passed.
    async fn close_due(&self) {
        let due = match Store(&self.db).due(now_secs() as i64).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for amendments past their deadline");
                return;
            }
        };
        for id in due {
            match self.close(&id, "system").await {
                Ok(closed) => {
                    tracing::info!(amendment = %id, status = closed.amendment.status.as_str(), "closed at deadline");
                }
                // Closed meanwhile by hand or by another replica.
                Err(e) if e.status == axum::http::StatusCode::CONFLICT => {}
                Err(e) => tracing::warn!(amendment = %id, error = %e, "cannot close amendment at its deadline"),
            }
        }
    }
}

fn change_error(e: ChangeError) -> ApiError {
    match e {
        ChangeError::NotFound(id) => ApiError::not_found(format!("no amendment with id {id}")),
        ChangeError::Conflict(message) => ApiError::conflict(message),
        ChangeError::Storage(e) => e.into(),
    }
}
