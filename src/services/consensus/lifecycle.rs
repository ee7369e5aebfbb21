//! How the active policy set changes: proposals verified, voted on and activated; rollbacks; the
//! admin's break-glass activation. The consensus core's operations behind the proposal routes and
//! its background worker.
//!
//! Invariants kept here:
//! * the active set changes only in a transaction that also records why (a proposal's close, a
//!   break-glass activation), and only to content that compiled into an engine beforehand, so the
//!   engine swapped in after the commit is exactly the stored active set;
//! * a proposal reaches a vote only with every gate check proved ([`proposals::vote_gate`]), and
//!   is activated only if neither the active set nor the constitution changed since it was
//!   verified;
//! * a set that fails strict validation, or names no principle of the constitution, is refused
//!   when proposed (4xx) and never stored.

use std::sync::Arc;

use super::engine::Engine;
use super::proposals::{self, Status};
use super::store::{ChangeError, CloseInput, Closed, Content, Proposal, SetVersion, Store};
use super::{ConsensusCore, compile};
use crate::kernel::auth::now_secs;
use crate::kernel::bus::subjects;
use crate::kernel::constitution::Constitution;
use crate::kernel::error::ApiError;
use crate::kernel::policy::{self, PolicyError, Problem};
use crate::services::verification::client::ClientError;
use crate::services::verification::report::{PolicySource, VerifyReport, VerifyRequest};

/// The role whose members vote on policy proposals (DESIGN §4).
pub const VOTER_ROLE: &str = "steward";

/// Why a proposed set was refused before it was stored (the caller's mistake, 4xx).
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("{0}")]
    Policy(#[from] PolicyError),
    /// Policies without `@principle`, or naming one the constitution does not have.
    #[error("every policy must name the principle it serves with @principle(\"…\"): {}", join(.0))]
    Untraced(Vec<Problem>),
}

fn join(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Policies of `text` whose `@principle` annotation is missing or names no principle of
/// `constitution` (DESIGN §4: generation links a policy to its principle; every rule can be traced).
fn untraced(text: &str, constitution: &Constitution) -> Result<Vec<Problem>, PolicyError> {
    let set = policy::parse_policies(text)?;
    let mut problems = Vec::new();
    for p in set.policies() {
        let message = match p.annotation("principle") {
            None => "has no @principle annotation".to_string(),
            Some(name) if !constitution.principles.iter().any(|q| q.id == name) => {
                format!("names principle {name:?}, which the active constitution does not have")
            }
            Some(_) => continue,
        };
        problems.push(Problem {
            message: format!("policy {} {message}", p.id()),
            line: None,
            column: None,
            policy: Some(p.id().to_string()),
        });
    }
    Ok(problems)
}

impl ConsensusCore {
    /// Checks proposed content the way activation will use it: the schema parses, the policies
    /// pass strict validation against it, the entities conform, and every policy names a
    /// principle of the active constitution. Returns the compiled engine.
    pub(crate) fn check_content(&self, content: &Content, constitution: &Constitution) -> Result<Engine, ContentError> {
        let problems = untraced(&content.policies, constitution)?;
        let engine = compile(0, content)?;
        if !problems.is_empty() {
            return Err(ContentError::Untraced(problems));
        }
        Ok(engine)
    }

    /// The active constitution, or 503.
    pub(crate) async fn constitution(
        &self,
    ) -> Result<crate::services::constitution::client::ActiveConstitution, ApiError> {
        self.constitution.active().await.map_err(|e| {
            ApiError::unavailable(format!(
                "the active constitution is not available from the constitution service: {e}"
            ))
        })
    }

    /// The active set's stored content.
    pub(crate) async fn active_content(&self) -> Result<SetVersion, ApiError> {
        let active = self.engine().version();
        Store(&self.db)
            .version(active)
            .await?
            .ok_or_else(|| ApiError::internal(format!("the active policy set {active} is not stored")))
    }

    /// Verifies `content` against the active constitution, comparing it with the active set.
    async fn verify(&self, content: &Content, compare_to: Option<&Content>) -> Result<VerifyReport, ClientError> {
        let request = VerifyRequest {
            policies: Some(content.policies.clone()),
            schema: Some(content.schema.clone()),
            compare_to: compare_to.map(|c| PolicySource { policies: Some(c.policies.clone()), policy_set: None }),
            ..VerifyRequest::default()
        };
        self.verification.verify(&request).await
    }

    /// Verifies one proposal that is still `verifying` and opens its vote or fails it. A
    /// verification service that cannot be reached leaves it `verifying` for the next round.
    pub(crate) async fn verify_proposal(&self, id: &str) -> Result<Option<Proposal>, ApiError> {
        let Some(p) = Store(&self.db).proposal(id).await? else { return Ok(None) };
        if p.status != Status::Verifying {
            return Ok(Some(p));
        }
        let base = Store(&self.db).version(p.base_version).await?;
        let report = match self.verify(&p.content, base.as_ref().map(|b| &b.content)).await {
            Ok(report) => report,
            Err(ClientError::Unavailable(why)) => {
                tracing::warn!(proposal = %id, error = %why, "cannot verify a proposal now; will retry");
                return Ok(Some(p));
            }
            // The verification service refused the input: that is a verification failure.
            Err(refused @ ClientError::Refused { .. }) => {
                let report = serde_json::json!({ "error": refused.to_string() });
                let failures = vec![format!("the verification service refused the set: {refused}")];
                let p = Store(&self.db)
                    .record_verification(id, &report, &failures, None, now_secs() as i64)
                    .await
                    .map_err(change_error)?;
                return Ok(Some(p));
            }
        };
        let failures = proposals::vote_gate(&report);
        let rules = self.constitution().await?.document.voting;
        let now = now_secs() as i64;
        let deadline = failures.is_empty().then(|| now + i64::from(rules.voting_period_hours) * 3600);
        let report_json = serde_json::to_value(&report).map_err(|e| ApiError::internal(e.to_string()))?;
        let p = match Store(&self.db).record_verification(id, &report_json, &failures, deadline, now).await {
            Ok(p) => p,
            // Withdrawn meanwhile.
            Err(ChangeError::Conflict(_)) => return Ok(Store(&self.db).proposal(id).await?),
            Err(e) => return Err(change_error(e)),
        };
        tracing::info!(proposal = %id, status = p.status.as_str(), "proposal verified");
        Ok(Some(p))
    }

    /// Verifies every proposal waiting for it, oldest first.
    pub(crate) async fn verify_pending(&self) {
        let ids = match Store(&self.db).verifying().await {
            Ok(ids) => ids,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list proposals waiting for verification");
                return;
            }
        };
        for id in ids {
            if let Err(e) = self.verify_proposal(&id).await {
                tracing::warn!(proposal = %id, error = %e, "verification of a proposal failed");
            }
        }
    }

    /// Tallies and closes one proposal in voting; an approved one is activated. Fails closed:
    /// without the number of stewards or the constitution nothing is decided (503).
    pub(crate) async fn close(&self, id: &str, actor: &str) -> Result<Closed, ApiError> {
        let p = Store(&self.db).proposal(id).await?.ok_or_else(|| not_found(id))?;
        let constitution = self.constitution().await?;
        let eligible = self.auth.count_with_role(VOTER_ROLE).await.map_err(|e| {
            tracing::warn!(proposal = %id, error = %e, "cannot count stewards");
            ApiError::unavailable(format!(
                "cannot close: the number of {VOTER_ROLE}s is unavailable from the auth service ({e}); nothing was \
                 decided"
            ))
        })?;
        // Compiled before the transaction, so an activation never stores what cannot be served.
        let engine = compile(0, &p.content)
            .map_err(|e| ApiError::internal(format!("proposal {id} no longer compiles, nothing was decided: {e}")))?;
        let input = CloseInput {
            eligible,
            rules: &constitution.document.voting,
            constitution_version: constitution.version,
            actor,
            now: now_secs() as i64,
        };
        let closed = Store(&self.db).close(id, input).await.map_err(change_error)?;
        self.proposals_closed.with_label_values(&[closed.proposal.status.as_str()]).inc();
        if let Some(v) = &closed.activated {
            self.activated(v, engine.with_version(v.version));
        }
        Ok(closed)
    }

    /// Closes every proposal whose deadline has passed.
    pub(crate) async fn close_due(&self) {
        let due = match Store(&self.db).due(now_secs() as i64).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for proposals past their deadline");
                return;
            }
        };
        for id in due {
            match self.close(&id, "system").await {
                Ok(closed) => {
                    tracing::info!(proposal = %id, status = closed.proposal.status.as_str(), "closed at deadline");
                }
                Err(e) if e.status == axum::http::StatusCode::CONFLICT => {}
                Err(e) => tracing::warn!(proposal = %id, error = %e, "cannot close a proposal at its deadline"),
            }
        }
    }

    /// An admin's emergency activation: no vote and, if the solver is down, no proof, but never a
    /// set that fails validation or is refuted against an invariant (DESIGN §4; the set is verified
    /// first and the verdict goes into the log with the reason).
    pub(crate) async fn break_glass(
        &self,
        content: &Content,
        actor: &str,
        reason: &str,
    ) -> Result<SetVersion, ApiError> {
        let constitution = self.constitution().await?;
        let engine = self.check_content(content, &constitution.document).map_err(content_error)?;
        let active = self.active_content().await?;
        let report = self.verify(content, Some(&active.content)).await.map_err(|e| {
            ApiError::unavailable(format!("break-glass needs a verification and none could be had: {e}"))
        })?;
        let failures = proposals::break_glass_gate(&report);
        if !failures.is_empty() {
            return Err(ApiError::validation(format!(
                "break-glass refused: the set would break the constitution: {}",
                failures.join("; ")
            )));
        }
        let report_json = serde_json::to_value(&report).map_err(|e| ApiError::internal(e.to_string()))?;
        let v = Store(&self.db).break_glass(content, actor, reason, &report_json, now_secs() as i64).await?;
        tracing::warn!(version = v.version, actor, reason, "break-glass activation of a policy set");
        self.activated(&v, engine.with_version(v.version));
        Ok(v)
    }

    /// After an activation committed: serve the new engine, announce it, and record the set's
    /// compliance score.
    pub(crate) fn activated(&self, v: &SetVersion, engine: Engine) {
        self.swap_engine(Arc::new(engine.with_cache(self.cache_entries)));
        self.version.set(v.version);
        self.bus.publish(
            subjects::POLICY_ACTIVATED,
            serde_json::json!({ "version": v.version, "sha256": v.sha256, "proposal": v.proposal_id }),
        );
        tracing::info!(version = v.version, sha256 = %v.sha256, "policy set activated");
        self.score_active(v.content.clone());
    }

    /// Serves the stored active set if it is not the one this process serves (another replica
    /// activated it); a set that cannot be loaded leaves the current engine in place, loudly.
    pub(crate) async fn follow_active(&self) {
        let stored = match Store(&self.db).active().await {
            Ok(Some(v)) => v,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the active policy set announced on the bus");
                return;
            }
        };
        if stored.version == self.engine().version() {
            return;
        }
        match compile(stored.version, &stored.content) {
            Ok(engine) => {
                self.swap_engine(Arc::new(engine.with_cache(self.cache_entries)));
                self.version.set(stored.version);
                tracing::info!(version = stored.version, "serving the policy set another replica activated");
            }
            Err(e) => tracing::error!(version = stored.version, error = %e, "the active policy set does not compile"),
        }
    }

    /// Verifies the set in force in the background so `acgs_constitutional_compliance_score`
    /// follows activations and ratifications.
    pub(crate) fn score_active(&self, content: Content) {
        let verification = self.verification.clone();
        tokio::spawn(async move {
            if let Err(e) = verification.verify_active(&content.policies, Some(&content.schema)).await {
                tracing::warn!(error = %e, "cannot score the policy set in force");
            }
        });
    }
}

pub(crate) fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("no proposal with id {id}"))
}

pub(crate) fn change_error(e: ChangeError) -> ApiError {
    match e {
        ChangeError::NotFound(id) => not_found(&id),
        ChangeError::Conflict(message) => ApiError::conflict(message),
        ChangeError::Storage(e) => e.into(),
    }
}

/// A refused proposed set as a 4xx: Cedar syntax 400 with line:column, the rest 422.
pub(crate) fn content_error(e: ContentError) -> ApiError {
    match e {
        ContentError::Policy(error) => error.to_api_error("policies"),
        untraced @ ContentError::Untraced(_) => {
            ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "untraced_policy", untraced.to_string())
        }
    }
}
