//! The verification service (port 8003): formal verification of Cedar policy sets against the
//! active constitution's invariants, with cedar-policy-symcc and the cvc5 solver.
//!
//! `POST /api/v1/verify` takes a policy set (text), optionally its schema (default: the embedded
//! governance schema), the checks to run and another set to compare against; it answers one
//! result per check ([`report`]). The work of one verification runs on a thread of its own with a
//! large stack (Cedar's parser, validator and symbolic compiler recurse over expressions) and its
//! own single-threaded runtime; at most `verification.max_concurrent` run at once, the rest wait.
//! Each check has a time-out (`verification.timeout_ms`, or less if the request asks): past it the
//! solver's process group is killed and the check is `unknown`.
//!
//! Modules: [`report`] (the request and report types), [`checks`] (preparing the input and
//! running the checks), [`solver`] (finding cvc5 and running it), [`bounded`] (enumeration when
//! there is no solver), [`counterexample`] (re-evaluating and writing counterexamples),
//! [`client`] (how other services call this one), `routes` (HTTP).
//!
//! # The compliance score
//!
//! `acgs_constitutional_compliance_score` is the share of the constitution's invariants proved
//! for the policy set *in force*. That set lives in the consensus service, so this service cannot
//! know it by itself: consensus calls [`VerificationService::verify_active`] (in process, or
//! `POST /api/v1/verify` with `"active": true` as `service`/`admin`) at start, whenever a set is
//! activated and after every ratification, and the gauge follows. Until the first such call it
//! is not set (absent from `/metrics` rather than a made-up number).
//!
//! A request may name a stored set by version (`{"policy_set": N}`, also in `compare_to`); its
//! text is read from the consensus service ([`VerificationService::use_policy_sets`]), over HTTP
//! with the caller's own token.

pub mod bounded;
pub mod checks;
pub mod client;
pub mod counterexample;
pub mod report;
mod routes;
pub mod solver;

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{Gauge, HistogramOpts, HistogramVec, IntCounterVec, Opts};
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::kernel::http::{ReadyCheck, ServiceApp};
use crate::kernel::metrics::Metrics;
use crate::kernel::service::ServiceName;
use crate::services::consensus::client::{ClientError as ConsensusClientError, ConsensusClient};
use crate::services::constitution::client::ConstitutionClient;

use checks::{InputError, Limits};
use report::{ConstitutionRef, SolverInfo, VerifyReport, VerifyRequest};
use solver::SolverChoice;

/// The stack of a verification thread. Only what is touched is committed; the bound is what
/// Cedar's recursion may use on the largest input the kernel's limits let through.
const STACK_BYTES: usize = 256 * 1024 * 1024;

/// Why the verification service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Solver(#[from] solver::SolverSetupError),
}

/// Why a verification was not done.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The caller's input (4xx).
    #[error(transparent)]
    Input(#[from] InputError),
    /// The active constitution could not be had (503).
    #[error("the active constitution is not available: {0}")]
    Constitution(String),
    /// A `policy_set` version that does not exist (404).
    #[error("no policy set version {0}")]
    PolicySetNotFound(i64),
    /// A stored policy set could not be read from the consensus service (503).
    #[error("stored policy sets cannot be read: {0}")]
    Consensus(String),
    /// Ours (500).
    #[error("verification failed: {0}")]
    Internal(String),
}

/// The service's state, shared by its routes and its in-process client.
pub struct VerificationCore {
    constitution: ConstitutionClient,
    /// Where `{"policy_set": N}` is read; set once consensus is up ([`VerificationService::use_policy_sets`]).
    policy_sets: std::sync::OnceLock<ConsensusClient>,
    solver: SolverChoice,
    limits: Limits,
    running: Arc<Semaphore>,
    metrics: Metrics,
    compliance: Gauge,
    /// The gauge is registered (shown) from the first score on, never as a made-up 0.
    compliance_shown: std::sync::Once,
    results: IntCounterVec,
    durations: HistogramVec,
}

/// A running verification service.
#[derive(Clone)]
pub struct VerificationService {
    core: Arc<VerificationCore>,
}

impl VerificationService {
    /// Finds the solver (a configured one that is missing or too old stops start-up) and sets up
    /// the metrics. `constitution` is how the active constitution is read.
    pub async fn start(config: &Config, constitution: ConstitutionClient) -> Result<VerificationService, StartError> {
        let settings = &config.verification;
        let solver = solver::locate(&settings.cvc5).await?;
        match &solver {
            SolverChoice::Cvc5(cvc5) => {
                tracing::info!(path = %cvc5.path.display(), version = %cvc5.version, "verification: proofs by cvc5");
            }
            SolverChoice::Missing { reason } => {
                tracing::warn!(%reason, "verification: checks fall back to bounded enumeration, which proves nothing");
            }
        }
        let metrics = Metrics::new(ServiceName::Verification.as_str());
        let compliance = Gauge::new(
            "acgs_constitutional_compliance_score",
            "Share of the constitution's invariants proved for the policy set in force (0..1)",
        )
        .expect("static metric definition is valid");
        let results = IntCounterVec::new(
            Opts::new("acgs_verifications_total", "Verification check results, by check and status"),
            &["check", "status"],
        )
        .expect("static metric definition is valid");
        let durations = HistogramVec::new(
            HistogramOpts::new("acgs_verification_check_duration_seconds", "Time one verification check took")
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["check"],
        )
        .expect("static metric definition is valid");
        metrics.register(&results);
        metrics.register(&durations);
        let core = Arc::new(VerificationCore {
            constitution,
            policy_sets: std::sync::OnceLock::new(),
            solver,
            limits: Limits {
                timeout: Duration::from_millis(settings.timeout_ms.max(1)),
                bounded_max_requests: settings.bounded_max_requests.max(1),
            },
            running: Arc::new(Semaphore::new(usize::try_from(settings.max_concurrent.max(1)).unwrap_or(1))),
            metrics,
            compliance,
            compliance_shown: std::sync::Once::new(),
            results,
            durations,
        });
        Ok(VerificationService { core })
    }

    /// Where stored policy sets are read from (`{"policy_set": N}`): the consensus service, in
    /// this process or over HTTP. The consensus service starts after this one (it verifies
    /// through it), so this is set afterwards; until then such requests are 503.
    pub fn use_policy_sets(&self, consensus: ConsensusClient) {
        let _ = self.core.policy_sets.set(consensus);
    }

    /// The in-process client other services in this process use.
    pub fn client(&self) -> client::VerificationClient {
        client::VerificationClient::InProcess(self.core.clone())
    }

    /// Verifies the policy set in force and records its compliance score (see the module docs:
    /// the consensus service calls this on activation and after a ratification).
    pub async fn verify_active(&self, policies: &str, schema: Option<&str>) -> Result<VerifyReport, VerifyError> {
        self.core.verify_active(policies, schema).await
    }

    /// The HTTP application of this service.
    pub fn app(&self) -> ServiceApp {
        let constitution = self.core.constitution.clone();
        ServiceApp {
            name: ServiceName::Verification,
            routes: routes::router(self.core.clone()),
            openapi: routes::openapi(),
            ready: vec![ReadyCheck::new("constitution_service", move || {
                let constitution = constitution.clone();
                async move { constitution.active().await.map(|_| ()) }
            })],
            metrics: self.core.metrics.clone(),
        }
    }
}

impl VerificationCore {
    /// The solver in use, as reports name it.
    fn solver_info(&self) -> Option<SolverInfo> {
        match &self.solver {
            SolverChoice::Cvc5(cvc5) => Some(SolverInfo { name: "cvc5".into(), version: cvc5.version.clone() }),
            SolverChoice::Missing { .. } => None,
        }
    }

    /// Replaces `policy_set` versions in `request` by their stored texts (the primary set's schema
    /// too, unless the request gives one), read with `bearer` if over HTTP.
    async fn resolve(&self, request: &VerifyRequest, bearer: Option<&str>) -> Result<VerifyRequest, VerifyError> {
        let mut request = request.clone();
        let wanted = [request.policy_set, request.compare_to.as_ref().and_then(|c| c.policy_set)];
        if wanted.iter().all(Option::is_none) {
            return Ok(request);
        }
        let consensus = self.policy_sets.get().ok_or_else(|| {
            VerifyError::Consensus("the consensus service is not configured for this verification service".into())
        })?;
        let fetch = |version: i64| async move {
            consensus.policy_set(version, bearer).await.map_err(|e| match e {
                ConsensusClientError::NotFound(v) => VerifyError::PolicySetNotFound(v),
                ConsensusClientError::Unavailable(why) => VerifyError::Consensus(why),
            })
        };
        if let (Some(version), None) = (request.policy_set, &request.policies) {
            let set = fetch(version).await?;
            request.policy_set = None;
            request.policies = Some(set.policies);
            request.schema = request.schema.or(Some(set.schema));
        }
        if let Some(compare) = request.compare_to.as_mut()
            && let (Some(version), None) = (compare.policy_set, &compare.policies)
        {
            compare.policy_set = None;
            compare.policies = Some(fetch(version).await?.policies);
        }
        Ok(request)
    }

    /// Runs one verification; `bearer` is the caller's token, for reading stored sets over HTTP.
    pub(crate) async fn verify(
        &self,
        request: &VerifyRequest,
        bearer: Option<&str>,
    ) -> Result<VerifyReport, VerifyError> {
        let started = Instant::now();
        let request = &self.resolve(request, bearer).await?;
        let active = self.constitution.active().await.map_err(VerifyError::Constitution)?;
        let limits = Limits {
            timeout: request
                .timeout_ms
                .map_or(self.limits.timeout, |ms| Duration::from_millis(ms.max(1)).min(self.limits.timeout)),
            ..self.limits
        };
        let permit = self.running.clone().acquire_owned().await.map_err(|e| VerifyError::Internal(e.to_string()))?;
        let solver = self.solver.clone();
        let in_force = request.active;
        let request = request.clone();
        let document = active.document.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("acgs-verify".into())
            .stack_size(STACK_BYTES)
            .spawn(move || {
                let _permit = permit;
                let outcome = (|| {
                    let inputs = checks::prepare(&request, &document)?;
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| VerifyError::Internal(format!("cannot start a runtime: {e}")))?;
                    let invariants_checked = inputs.checks.contains(&report::CheckKind::Invariants);
                    let results = runtime.block_on(checks::run(&inputs, &solver, limits));
                    Ok::<_, VerifyError>((results, invariants_checked))
                })();
                let _ = tx.send(outcome);
            })
            .map_err(|e| VerifyError::Internal(format!("cannot start a verification thread: {e}")))?;
        let (results, invariants_checked) = rx
            .await
            .map_err(|_| VerifyError::Internal("the verification thread stopped without an answer".into()))??;
        for r in &results {
            self.results.with_label_values(&[r.check.as_str(), r.status.as_str()]).inc();
            self.durations.with_label_values(&[r.check.as_str()]).observe(r.duration_ms as f64 / 1000.0);
        }
        let summary = VerifyReport::summarise(&results, invariants_checked);
        if in_force && let Some(score) = summary.compliance {
            self.compliance.set(score);
            self.compliance_shown.call_once(|| self.metrics.register(&self.compliance));
        }
        Ok(VerifyReport {
            constitution: ConstitutionRef { version: active.version, hash: active.hash, sha256: active.sha256 },
            solver: self.solver_info(),
            results,
            summary,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// [`VerificationService::verify_active`].
    pub(crate) async fn verify_active(
        &self,
        policies: &str,
        schema: Option<&str>,
    ) -> Result<VerifyReport, VerifyError> {
        let request = VerifyRequest {
            policies: Some(policies.to_string()),
            schema: schema.map(str::to_string),
            active: true,
            ..VerifyRequest::default()
        };
        self.verify(&request, None).await
    }
}
