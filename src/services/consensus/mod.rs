//! The consensus service (port 8005): versioned Cedar policy sets, the proposals that change them,
//! policy generation, and the decision API.
//!
//! A policy set is Cedar policies, the schema they are strictly valid against, and the set's own
//! entities; versions are immutable and exactly one is active. On a fresh store the embedded
//! genesis set (`embedded/policies/genesis.cedar` over the governance schema) is version 1.
//!
//! The active set changes only through [`lifecycle`]: a proposal (a new set, or a rollback to an
//! earlier version's content) is verified against the constitution by the verification service,
//! voted on by stewards under the constitution's quorum, approval threshold and voting period,
//! and activated atomically when approved; an admin's break-glass activation skips the vote but
//! never the constitution. [`generate`] writes a principle's structured intent out as Cedar.
//!
//! `POST /api/v1/decide` answers from the active set's [`engine::Engine`] (sliced by request
//! environment, so unrelated policies cost nothing) and hands the decision to the integrity log
//! through [`decisions::DecisionLog`] without waiting for it. Any error is a refusal with its
//! reason; nothing is ever allowed by default.

pub mod cache;
mod cedar_json;
pub mod client;
pub mod decisions;
pub mod engine;
pub mod generate;
mod governance;
mod lifecycle;
pub mod proposals;
mod routes;
mod store;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::kernel::audit::AuditSink;
use crate::kernel::auth::now_secs;
use crate::kernel::bus::{Bus, subjects};
use crate::kernel::constitution::HashCell;
use crate::kernel::http::{ReadyCheck, ServiceApp};
use crate::kernel::metrics::Metrics;
use crate::kernel::policy::{self, PolicyError};
use crate::kernel::service::ServiceName;
use crate::kernel::storage::{Db, StorageError};
use crate::services::auth::client::AuthClient;
use crate::services::constitution::client::ConstitutionClient;
use crate::services::verification::client::VerificationClient;

pub use decisions::LogMode;
use engine::Engine;
use store::{Content, Store};

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

/// The services consensus works with: who counts stewards, where the constitution and the
/// verifier are, and the bus activations are announced on.
#[derive(Clone)]
pub struct Peers {
    pub auth: AuthClient,
    pub constitution: ConstitutionClient,
    pub verification: VerificationClient,
    pub bus: Bus,
}

/// The service's state, shared by its routes and background tasks.
pub struct ConsensusCore {
    db: Db,
    hash: HashCell,
    engine: RwLock<Arc<Engine>>,
    log: decisions::DecisionLog,
    auth: AuthClient,
    constitution: ConstitutionClient,
    verification: VerificationClient,
    bus: Bus,
    /// Wakes the worker: a proposal is waiting for verification.
    wake: Notify,
    metrics: Metrics,
    /// Decisions by outcome (`acgs_decisions_total`: allow, deny, error).
    allowed: prometheus::IntCounter,
    denied: prometheus::IntCounter,
    errored: prometheus::IntCounter,
    /// Proposals closed, by outcome (activated, rejected, expired).
    proposals_closed: IntCounterVec,
    /// The active set's version.
    version: IntGauge,
    /// How many answers each engine remembers (`consensus.decision_cache_entries`).
    cache_entries: usize,
    /// Decisions answered from the cache, and evaluated.
    cache_hits: prometheus::IntCounter,
    cache_misses: prometheus::IntCounter,
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

/// Compiles a policy set's content into an engine serving it as `version`.
fn compile(version: i64, content: &Content) -> Result<Engine, PolicyError> {
    let schema = policy::parse_schema(&content.schema)?;
    let entities: serde_json::Value = serde_json::from_str(&content.entities).map_err(|e| {
        PolicyError::Invalid(vec![policy::Problem {
            message: format!("entities: {e}"),
            line: None,
            column: None,
            policy: None,
        }])
    })?;
    Engine::compile(version, &content.policies, Arc::new(schema), &entities)
}

impl ConsensusService {
    /// Opens storage, applies migrations, stores the genesis set as version 1 on a fresh store,
    /// and compiles the active set. Decisions are logged to `sink` (the integrity log) per
    /// `consensus.decision_log`; the returned future is the log writer, to be spawned.
    pub async fn start(
        config: &Config,
        hash: HashCell,
        sink: Option<Arc<dyn AuditSink>>,
        peers: Peers,
    ) -> Result<(ConsensusService, Option<futures::future::BoxFuture<'static, ()>>), StartError> {
        let mode = LogMode::parse(&config.consensus.decision_log).map_err(StartError::LogMode)?;
        let db = Db::open(ServiceName::Consensus.as_str(), &config.storage()).await?;
        let migrations = crate::embedded::migrations(ServiceName::Consensus)?;
        db.migrate(&migrations).await?;
        let active = Store(&db).active_or_init(&genesis_content(), now_secs() as i64).await?;
        let cache_entries = usize::try_from(config.consensus.decision_cache_entries).unwrap_or(usize::MAX);
        let engine = compile(active.version, &active.content)
            .map_err(|source| StartError::Active { version: active.version, source })?
            .with_cache(cache_entries);
        let metrics = Metrics::new(ServiceName::Consensus.as_str());
        let decisions = IntCounterVec::new(
            Opts::new("acgs_decisions_total", "Decisions by outcome (allow, deny, error)"),
            &["outcome"],
        )
        .expect("static metric definition is valid");
        let version = IntGauge::new("acgs_policy_set_version", "The active policy set's version")
            .expect("static metric definition is valid");
        let proposals_closed = IntCounterVec::new(
            Opts::new(
                "acgs_proposals_closed_total",
                "Policy proposals closed, by outcome (activated, rejected, expired)",
            ),
            &["outcome"],
        )
        .expect("static metric definition is valid");
        metrics.register(&decisions);
        metrics.register(&version);
        metrics.register(&proposals_closed);
        let cache = IntCounterVec::new(
            Opts::new(
                "acgs_decision_cache_total",
                "Decisions answered from the engine's cache (hit) or evaluated (miss)",
            ),
            &["result"],
        )
        .expect("static metric definition is valid");
        metrics.register(&cache);
        version.set(active.version);
        let capacity = usize::try_from(config.consensus.decision_queue).unwrap_or(usize::MAX);
        let (log, writer) = decisions::DecisionLog::new(mode, capacity, sink, &metrics);
        let core = Arc::new(ConsensusCore {
            db,
            hash,
            engine: RwLock::new(Arc::new(engine)),
            log,
            auth: peers.auth,
            constitution: peers.constitution,
            verification: peers.verification,
            bus: peers.bus,
            wake: Notify::new(),
            metrics,
            allowed: decisions.with_label_values(&["allow"]),
            denied: decisions.with_label_values(&["deny"]),
            errored: decisions.with_label_values(&["error"]),
            proposals_closed,
            version,
            cache_entries,
            cache_hits: cache.with_label_values(&["hit"]),
            cache_misses: cache.with_label_values(&["miss"]),
        });
        Ok((ConsensusService { core }, writer))
    }

    /// The background work: verifies proposals as they arrive (and any left `verifying` by a
    /// restart), closes votes at their deadline every `interval`, and keeps the compliance score
    /// of the set in force current (now, and after every ratification on the bus).
    pub fn spawn_worker(&self, interval: Duration) -> JoinHandle<()> {
        let core = self.core.clone();
        let mut ratified = core.bus.subscribe(subjects::CONSTITUTION_RATIFIED);
        let mut activated = core.bus.subscribe(subjects::POLICY_ACTIVATED);
        tokio::spawn(async move {
            match core.active_content().await {
                Ok(active) => core.score_active(active.content),
                Err(e) => tracing::warn!(error = %e, "cannot score the policy set in force"),
            }
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = core.wake.notified() => {}
                    Some(_) = ratified.next() => {
                        if let Ok(active) = core.active_content().await {
                            core.score_active(active.content);
                        }
                    }
                    // Another replica activated a set: serve it too.
                    Some(event) = activated.next() => {
                        if event.payload["version"].as_i64() != Some(core.engine().version()) {
                            core.follow_active().await;
                        }
                        continue;
                    }
                }
                core.verify_pending().await;
                core.close_due().await;
            }
        })
    }

    /// The in-process client other services in this process use.
    pub fn client(&self) -> client::ConsensusClient {
        client::ConsensusClient::in_process(self.core.clone())
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
            routes: routes::router(self.core.clone()).merge(governance::router(self.core.clone())),
            openapi: {
                let mut api = routes::openapi();
                api.merge(governance::openapi());
                api
            },
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

    /// Serves `engine` from the next decision on.
    fn swap_engine(&self, engine: Arc<Engine>) {
        match self.engine.write() {
            Ok(mut guard) => *guard = engine,
            Err(poisoned) => *poisoned.into_inner() = engine,
        }
    }
}
