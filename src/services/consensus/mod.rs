//! The consensus service (port 8005): versioned Cedar policy sets and the decision API.
//!
//! A policy set is Cedar policies, the schema they are strictly valid against, and the set's own
//! entities; versions are immutable and exactly one is active. On a fresh store the embedded
//! genesis set (`embedded/policies/genesis.cedar` over the governance schema) is version 1.
//!
//! `POST /api/v1/decide` answers from the active set's [`engine::Engine`] (sliced by request
//! environment, so unrelated policies cost nothing) and hands the decision to the integrity log
//! through [`decisions::DecisionLog`] without waiting for it. Any error is a refusal with its
//! reason; nothing is ever allowed by default.
//!
//! Proposals voted on by stewards and verified against the constitution are built on top of
//! this (see the policies issue); until they land, the active set changes only at genesis.

pub mod decisions;
pub mod engine;
mod routes;
mod store;

use std::sync::{Arc, RwLock};

use prometheus::{IntCounterVec, IntGauge, Opts};

use crate::config::Config;
use crate::kernel::audit::AuditSink;
use crate::kernel::auth::now_secs;
use crate::kernel::constitution::HashCell;
use crate::kernel::http::{ReadyCheck, ServiceApp};
use crate::kernel::metrics::Metrics;
use crate::kernel::policy::{self, PolicyError};
use crate::kernel::service::ServiceName;
use crate::kernel::storage::{Db, StorageError};

pub use decisions::LogMode;
use engine::Engine;
use store::{Content, SetVersion, Store};

/// Path of the genesis policy set inside `embedded/`.
pub const GENESIS_PATH: &str = "policies/genesis.cedar";

/// Why the consensus service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("consensus storage: {0}")]
    Storage(#[from] StorageError),
    #[error("the active policy set (version {version}) cannot be loaded: {source}")]
    Active { version: i64, source: PolicyError },
    #[error("consensus.decision_log: {0}")]
    LogMode(String),
}

/// The service's state, shared by its routes and background tasks.
pub struct ConsensusCore {
    db: Db,
    hash: HashCell,
    engine: RwLock<Arc<Engine>>,
    log: decisions::DecisionLog,
    metrics: Metrics,
    /// Decisions by outcome (allow, deny, error).
    decisions: IntCounterVec,
}

/// A running consensus service.
#[derive(Clone)]
pub struct ConsensusService {
    core: Arc<ConsensusCore>,
}

/// The genesis policy set: the embedded policies, the governance schema, no entities.
pub fn genesis_content() -> Content {
    let policies = crate::embedded::EMBEDDED
        .get_file(GENESIS_PATH)
        .and_then(|f| f.contents_utf8())
        .expect("embedded/policies/genesis.cedar is compiled in");
    Content {
        policies: policies.to_string(),
        schema: policy::governance_schema_text().to_string(),
        entities: "[]".into(),
    }
}

/// Compiles a stored version into an engine.
fn compile(v: &SetVersion) -> Result<Engine, PolicyError> {
    let schema = policy::parse_schema(&v.content.schema)?;
    let entities: serde_json::Value = serde_json::from_str(&v.content.entities).map_err(|e| {
        PolicyError::Invalid(vec![policy::Problem {
            message: format!("entities: {e}"),
            line: None,
            column: None,
            policy: None,
        }])
    })?;
    Engine::compile(v.version, &v.content.policies, Arc::new(schema), &entities)
}

impl ConsensusService {
    /// Opens storage, applies migrations, stores the genesis set as version 1 on a fresh store,
    /// and compiles the active set. Decisions are logged to `sink` (the integrity log) per
    /// `consensus.decision_log`; the returned future is the log writer, to be spawned.
    pub async fn start(
        config: &Config,
        hash: HashCell,
        sink: Option<Arc<dyn AuditSink>>,
    ) -> Result<(ConsensusService, Option<futures::future::BoxFuture<'static, ()>>), StartError> {
        let mode = LogMode::parse(&config.consensus.decision_log).map_err(StartError::LogMode)?;
        let db = Db::open(ServiceName::Consensus.as_str(), &config.storage()).await?;
        let migrations = crate::embedded::migrations(ServiceName::Consensus)?;
        db.migrate(&migrations).await?;
        let active = Store(&db).active_or_init(&genesis_content(), now_secs() as i64).await?;
        let engine = compile(&active).map_err(|source| StartError::Active { version: active.version, source })?;
        let metrics = Metrics::new(ServiceName::Consensus.as_str());
        let decisions = IntCounterVec::new(
            Opts::new("acgs_decisions_total", "Decisions by outcome (allow, deny, error)"),
            &["outcome"],
        )
        .expect("static metric definition is valid");
        let version = IntGauge::new("acgs_policy_set_version", "The active policy set's version")
            .expect("static metric definition is valid");
        metrics.register(&decisions);
        metrics.register(&version);
        version.set(active.version);
        let capacity = usize::try_from(config.consensus.decision_queue).unwrap_or(usize::MAX);
        let (log, writer) = decisions::DecisionLog::new(mode, capacity, sink, &metrics);
        let core = Arc::new(ConsensusCore { db, hash, engine: RwLock::new(Arc::new(engine)), log, metrics, decisions });
        Ok((ConsensusService { core }, writer))
    }

    /// The active policy set's version.
    pub fn active_version(&self) -> i64 {
        self.core.engine().version()
    }

    /// The relay that delivers this service's audit outbox to `sink` (the integrity log).
    pub fn outbox_relay(&self, sink: Arc<dyn AuditSink>) -> crate::kernel::audit::Relay {
        crate::kernel::audit::Relay::new(self.core.db.clone(), sink)
    }

    /// The HTTP application of this service.
    pub fn app(&self) -> ServiceApp {
        ServiceApp {
            name: ServiceName::Consensus,
            routes: routes::router(self.core.clone()),
            openapi: routes::openapi(),
            ready: vec![ReadyCheck::storage(self.core.db.clone())],
            metrics: self.core.metrics.clone(),
        }
    }
}

impl ConsensusCore {
    /// The engine of the active set.
    fn engine(&self) -> Arc<Engine> {
        match self.engine.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}
