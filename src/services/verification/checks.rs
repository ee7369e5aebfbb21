//! Running the checks of one verification.
//!
//! [`prepare`] parses the request (policies, schema, the set to compare against, the
//! constitution's invariants) and refuses what is the caller's mistake. [`run`] then answers
//! each check, per request environment of the schema (symcc reasons about one environment at a
//! time: principal type, action, resource type):
//!
//! | check | question | counterexample |
//! |---|---|---|
//! | `validation` | strict validation against the schema | — (the problems, with line:column) |
//! | `never_errors` (per policy) | the policy errors on no request | a request it errors on |
//! | `invariant`, kind `never` | the set and the invariant's policy are disjoint | a request both allow |
//! | `invariant`, kind `always` | the invariant's policy implies the set | a request the invariant matches and the set denies |
//! | `compare`, `allows_more` | the new set implies `compare_to` | a request the new set allows and the old one did not |
//! | `compare`, `allows_less` | `compare_to` implies the new set | a request the old set allowed and the new one does not |
//!
//! With a solver each question goes to cvc5 through cedar-policy-symcc; unsat in every
//! environment is `proved`. A model is turned into a concrete request and entities and
//! re-evaluated with Cedar's authorizer ([`Question::violated_by`]) before it is reported as
//! `refuted`. Without a solver, [`bounded`](super::bounded) enumerates. A check that runs past its
//! time-out is stopped, its solver process killed, and it is `unknown`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cedar_policy::{PolicySet, RequestEnv, Schema};
use cedar_policy_symcc::err::Error as SymccError;
use cedar_policy_symcc::{CedarSymCompiler, CompiledPolicy, CompiledPolicySet};

use super::bounded::{self, Literals, Universe};
use super::counterexample::{Question, to_json};
use super::report::{CheckKind, CheckResult, Direction, Status, VerifyRequest};
use super::solver::{Cvc5, Cvc5Process, SolverChoice};
use crate::kernel::constitution::{Constitution, InvariantKind};
use crate::kernel::policy::{self, PolicyError, Problem};

/// Why a request cannot be verified: the caller's mistake, answered 4xx.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{0}")]
    Missing(String),
    #[error("{what}: {error}")]
    Policy { what: &'static str, error: PolicyError },
}

/// A parsed request.
pub struct Inputs {
    pub schema: Schema,
    pub schema_text: String,
    pub policies: PolicySet,
    pub text: String,
    pub compare: Option<(PolicySet, String)>,
    pub checks: Vec<CheckKind>,
    pub invariants: Vec<InvariantInput>,
}

/// One invariant of the constitution, ready to check (or why it cannot be checked).
pub struct InvariantInput {
    pub id: String,
    pub principle: String,
    pub kind: InvariantKind,
    pub set: Result<PolicySet, String>,
}

fn text_of(policies: &Option<String>, policy_set: Option<i64>, what: &str) -> Result<String, InputError> {
    match (policies, policy_set) {
        (Some(_), Some(_)) => {
            Err(InputError::Missing(format!("{what}: give \"policies\" or \"policy_set\", not both")))
        }
        (Some(text), None) => Ok(text.clone()),
        // The service resolves versions to their text before it prepares a request.
        (None, Some(v)) => Err(InputError::Missing(format!("{what}: policy set {v} was not resolved to its text"))),
        (None, None) => Err(InputError::Missing(format!("{what}: \"policies\" (Cedar text) is required"))),
    }
}

/// Parses and checks what the caller sent. Syntax errors, schema errors, names the schema does
/// not declare and oversized texts are the caller's; strict-validation failures of the set are
/// not (they are the `validation` check's answer).
pub fn prepare(request: &VerifyRequest, constitution: &Constitution) -> Result<Inputs, InputError> {
    let text = text_of(&request.policies, request.policy_set, "the policy set")?;
    let (schema, schema_text) = match &request.schema {
        Some(text) => {
            (policy::parse_schema(text).map_err(|error| InputError::Policy { what: "schema", error })?, text.clone())
        }
        None => (policy::governance_schema().clone(), policy::governance_schema_text().to_string()),
    };
    let policies = policy::parse_policies(&text).map_err(|error| InputError::Policy { what: "policies", error })?;
    if let Err(error @ PolicyError::UnknownNames(_)) = policy::validate(&policies, &text, &schema) {
        return Err(InputError::Policy { what: "policies", error });
    }
    let mut checks = match &request.checks {
        Some(list) if list.is_empty() => {
            return Err(InputError::Missing("\"checks\" must name at least one check".into()));
        }
        Some(list) => {
            let mut unique = Vec::new();
            for check in list {
                if !unique.contains(check) {
                    unique.push(*check);
                }
            }
            unique
        }
        None => CheckKind::ALL.to_vec(),
    };
    let compare = match &request.compare_to {
        Some(source) => {
            let text = text_of(&source.policies, source.policy_set, "compare_to")?;
            let set =
                policy::parse_policies(&text).map_err(|error| InputError::Policy { what: "compare_to", error })?;
            if let Err(error @ PolicyError::UnknownNames(_)) = policy::validate(&set, &text, &schema) {
                return Err(InputError::Policy { what: "compare_to", error });
            }
            Some((set, text))
        }
        None if request.checks.as_ref().is_some_and(|c| c.contains(&CheckKind::Compare)) => {
            return Err(InputError::Missing("the compare check needs \"compare_to\"".into()));
        }
        None => {
            checks.retain(|c| *c != CheckKind::Compare);
            None
        }
    };
    let mut invariants = Vec::new();
    for principle in &constitution.principles {
        for invariant in &principle.invariants {
            let set = policy::parse_policy(&invariant.id, &invariant.policy)
                .and_then(|p| {
                    let mut set = PolicySet::new();
                    set.add(p).map_err(|e| PolicyError::DuplicateId(e.to_string()))?;
                    policy::validate(&set, &invariant.policy, &schema)?;
                    Ok(set)
                })
                .map_err(|e| format!("the invariant does not validate against the schema given: {e}"));
            invariants.push(InvariantInput {
                id: invariant.id.clone(),
                principle: principle.id.clone(),
                kind: invariant.kind,
                set,
            });
        }
    }
    Ok(Inputs { schema, schema_text, policies, text, compare, checks, invariants })
}

/// How long checks may run and how far enumeration goes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub timeout: Duration,
    pub bounded_max_requests: u64,
}

/// The answer to one question.
enum Outcome {
    Holds,
    Violated(Box<super::report::Counterexample>),
    Unknown(String),
    Bounded { enumerated: u64, reason: String },
    Invalid(String),
}

/// Runs the requested checks, in order: validation, never-errors per policy, invariants, compare.
pub async fn run(inputs: &Inputs, solver: &SolverChoice, limits: Limits) -> Vec<CheckResult> {
    let mut engine = Engine::new(inputs, solver, limits);
    let mut results = Vec::new();
    let started = Instant::now();
    let validation = policy::validate(&inputs.policies, &inputs.text, &inputs.schema);
    let invalid_set = match &validation {
        Ok(()) => None,
        Err(e) => Some(format!(
            "the policy set fails strict validation against the schema, so nothing about it is proved: {}",
            brief(&e.problems())
        )),
    };
    if inputs.checks.contains(&CheckKind::Validation) {
        let mut r = match validation {
            Ok(()) => CheckResult::new("validation", Status::Proved),
            Err(e) => {
                let mut r = CheckResult::new("validation", Status::Refuted);
                r.problems = e.problems();
                r
            }
        };
        r.duration_ms = started.elapsed().as_millis() as u64;
        results.push(r);
    }
    if inputs.checks.contains(&CheckKind::NeverErrors) {
        for policy in inputs.policies.policies() {
            let mut r = CheckResult::new("never_errors", Status::Invalid);
            r.policy = Some(policy.id().to_string());
            engine.answer(&mut r, invalid_set.as_deref(), Question::NeverErrors(policy)).await;
            results.push(r);
        }
    }
    if inputs.checks.contains(&CheckKind::Invariants) {
        for invariant in &inputs.invariants {
            let mut r = CheckResult::new("invariant", Status::Invalid);
            r.invariant = Some(invariant.id.clone());
            r.principle = Some(invariant.principle.clone());
            r.kind = Some(invariant.kind);
            match &invariant.set {
                Err(reason) => r.reason = Some(reason.clone()),
                Ok(set) => {
                    let question = match invariant.kind {
                        InvariantKind::Never => Question::Disjoint(&inputs.policies, set),
                        InvariantKind::Always => Question::Implies(set, &inputs.policies),
                    };
                    engine.answer(&mut r, invalid_set.as_deref(), question).await;
                }
            }
            results.push(r);
        }
    }
    if let (true, Some((old, old_text))) = (inputs.checks.contains(&CheckKind::Compare), &inputs.compare) {
        let old_invalid = policy::validate(old, old_text, &inputs.schema)
            .err()
            .map(|e| format!("compare_to fails strict validation against the schema: {}", brief(&e.problems())));
        let reason = invalid_set.clone().or(old_invalid);
        for (direction, question) in [
            (Direction::AllowsMore, Question::Implies(&inputs.policies, old)),
            (Direction::AllowsLess, Question::Implies(old, &inputs.policies)),
        ] {
            let mut r = CheckResult::new("compare", Status::Invalid);
            r.direction = Some(direction);
            engine.answer(&mut r, reason.as_deref(), question).await;
            results.push(r);
        }
    }
    results
}

/// The first few problems, for a reason line.
fn brief(problems: &[Problem]) -> String {
    let mut text = problems.iter().take(3).map(ToString::to_string).collect::<Vec<_>>().join("; ");
    if problems.len() > 3 {
        text.push_str(&format!("; and {} more", problems.len() - 3));
    }
    text
}

struct Engine<'a> {
    inputs: &'a Inputs,
    envs: Vec<RequestEnv>,
    solver: &'a SolverChoice,
    limits: Limits,
    /// The solver session, reused between checks; dropped (killed) after a time-out or failure.
    session: Option<CedarSymCompiler<Cvc5Process>>,
    /// Compiled policy sets by (set address, environment index), shared by the checks.
    compiled: HashMap<(usize, usize), CompiledPolicySet>,
    universe: Option<Result<Universe, String>>,
}

impl<'a> Engine<'a> {
    fn new(inputs: &'a Inputs, solver: &'a SolverChoice, limits: Limits) -> Self {
        Engine {
            inputs,
            envs: inputs.schema.request_envs().collect(),
            solver,
            limits,
            session: None,
            compiled: HashMap::new(),
            universe: None,
        }
    }

    /// Answers `question` into `result` (status, counterexample, reason, time taken).
    async fn answer(&mut self, result: &mut CheckResult, invalid: Option<&str>, question: Question<'_>) {
        let started = Instant::now();
        let outcome = match invalid {
            Some(reason) => Outcome::Invalid(reason.to_string()),
            None => self.decide(question).await,
        };
        match outcome {
            Outcome::Holds => result.status = Status::Proved,
            Outcome::Violated(example) => {
                result.status = Status::Refuted;
                result.counterexample = Some(*example);
            }
            Outcome::Unknown(reason) => {
                result.status = Status::Unknown;
                result.reason = Some(reason);
            }
            Outcome::Bounded { enumerated, reason } => {
                result.status = Status::Bounded;
                result.enumerated = Some(enumerated);
                result.reason = Some(reason);
            }
            Outcome::Invalid(reason) => {
                result.status = Status::Invalid;
                result.reason = Some(reason);
            }
        }
        result.duration_ms = started.elapsed().as_millis() as u64;
    }

    async fn decide(&mut self, question: Question<'_>) -> Outcome {
        let timeout = self.limits.timeout;
        match self.solver {
            SolverChoice::Cvc5(cvc5) => {
                let cvc5 = cvc5.clone();
                match tokio::time::timeout(timeout, self.solve(&cvc5, question)).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        // The solver may be mid-query: drop the session, which kills its process group.
                        self.session = None;
                        Outcome::Unknown(format!("time-out: no verdict within {} ms", timeout.as_millis()))
                    }
                }
            }
            SolverChoice::Missing { reason } => self.enumerate(question, reason),
        }
    }

    fn enumerate(&mut self, question: Question<'_>, reason: &str) -> Outcome {
        let inputs = self.inputs;
        let universe = self.universe.get_or_insert_with(|| {
            let mut sets: Vec<&PolicySet> = vec![&inputs.policies];
            sets.extend(inputs.compare.as_ref().map(|(s, _)| s));
            sets.extend(inputs.invariants.iter().filter_map(|i| i.set.as_ref().ok()));
            Universe::new(&inputs.schema_text, &inputs.schema, Literals::of(sets))
        });
        let universe = match universe {
            Ok(u) => u,
            Err(e) => return Outcome::Unknown(format!("{reason}; and enumeration is not possible: {e}")),
        };
        let deadline = Instant::now() + self.limits.timeout;
        let found =
            universe.enumerate(&question, &self.envs, &inputs.schema, self.limits.bounded_max_requests, deadline);
        match found.counterexample {
            Some(example) => Outcome::Violated(Box::new(example)),
            None => Outcome::Bounded {
                enumerated: found.enumerated,
                reason: format!(
                    "{reason}; {} concrete requests were evaluated with Cedar's authorizer and none breaks it{}; \
                     this is not a proof",
                    found.enumerated,
                    if found.cut_short { " (the enumeration was cut short by its cap or time-out)" } else { "" }
                ),
            },
        }
    }

    fn compile(&mut self, set: &PolicySet, env: usize) -> Result<CompiledPolicySet, String> {
        let key = (std::ptr::from_ref(set) as usize, env);
        if let Some(compiled) = self.compiled.get(&key) {
            return Ok(compiled.clone());
        }
        let compiled = CompiledPolicySet::compile(set, &self.envs[env], &self.inputs.schema)
            .map_err(|e| format!("symbolic compilation failed: {e}"))?;
        self.compiled.insert(key, compiled.clone());
        Ok(compiled)
    }

    fn session(&mut self, cvc5: &Cvc5) -> Result<&mut CedarSymCompiler<Cvc5Process>, String> {
        if self.session.is_none() {
            let process =
                Cvc5Process::spawn(cvc5, self.limits.timeout).map_err(|e| format!("cannot start the solver: {e}"))?;
            self.session = Some(CedarSymCompiler::new(process).map_err(|e| format!("cannot start the solver: {e}"))?);
        }
        self.session.as_mut().ok_or_else(|| "no solver session".to_string())
    }

    async fn solve(&mut self, cvc5: &Cvc5, question: Question<'_>) -> Outcome {
        let groups: std::collections::HashSet<String> =
            self.inputs.schema.action_groups().map(ToString::to_string).collect();
        let mut unknown: Option<String> = None;
        for i in 0..self.envs.len() {
            if !bounded::relevant(&question, &self.envs[i], &groups) {
                continue;
            }
            let answer = match question {
                Question::NeverErrors(policy) => {
                    let compiled = match CompiledPolicy::compile(policy, &self.envs[i], &self.inputs.schema) {
                        Ok(c) => c,
                        Err(e) => return Outcome::Invalid(format!("symbolic compilation failed: {e}")),
                    };
                    match self.session(cvc5) {
                        Ok(s) => s.check_never_errors_with_counterexample_opt(&compiled).await,
                        Err(e) => return Outcome::Unknown(e),
                    }
                }
                Question::Disjoint(a, b) | Question::Implies(a, b) => {
                    let (ca, cb) = match (self.compile(a, i), self.compile(b, i)) {
                        (Ok(ca), Ok(cb)) => (ca, cb),
                        (Err(e), _) | (_, Err(e)) => return Outcome::Invalid(e),
                    };
                    let session = match self.session(cvc5) {
                        Ok(s) => s,
                        Err(e) => return Outcome::Unknown(e),
                    };
                    if matches!(question, Question::Disjoint(..)) {
                        session.check_disjoint_with_counterexample_opt(&ca, &cb).await
                    } else {
                        session.check_implies_with_counterexample_opt(&ca, &cb).await
                    }
                }
            };
            match answer {
                Ok(None) => {}
                Ok(Some(env)) => {
                    if question.violated_by(&env.request, &env.entities) {
                        return match to_json(&env.request, &env.entities) {
                            Ok(example) => Outcome::Violated(Box::new(example)),
                            Err(e) => Outcome::Unknown(format!("the solver found a counterexample but {e}")),
                        };
                    }
                    unknown = Some(format!(
                        "the solver's counterexample in {} does not reproduce with Cedar's authorizer",
                        describe(&self.envs[i])
                    ));
                }
                Err(SymccError::SolverUnknown) => {
                    unknown = Some(format!(
                        "the solver answered unknown in {} (time limit {} ms)",
                        describe(&self.envs[i]),
                        self.limits.timeout.as_millis()
                    ));
                }
                Err(e) => {
                    // The session may be broken (a parse error ends cvc5): start afresh next time.
                    self.session = None;
                    unknown = Some(format!("the solver failed in {}: {e}", describe(&self.envs[i])));
                }
            }
        }
        match unknown {
            Some(reason) => Outcome::Unknown(reason),
            None => Outcome::Holds,
        }
    }
}

fn describe(env: &RequestEnv) -> String {
    format!("({}, {}, {})", env.principal(), env.action(), env.resource())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::verification::report::PolicySource;

    fn request(policies: &str) -> VerifyRequest {
        VerifyRequest { policies: Some(policies.into()), ..VerifyRequest::default() }
    }

    #[test]
    fn the_callers_mistakes_are_input_errors_with_positions() {
        let genesis = Constitution::genesis().expect("genesis");
        let err = prepare(&request("permit(principal, action resource);"), &genesis).err().expect("syntax");
        assert!(err.to_string().contains("1:"), "{err}");
        let err =
            prepare(&request("permit(principal is Acgs::Robot, action, resource);"), &genesis).err().expect("unknown");
        assert!(matches!(&err, InputError::Policy { error: PolicyError::UnknownNames(_), .. }), "{err}");
        let by_version = VerifyRequest { policy_set: Some(3), ..VerifyRequest::default() };
        assert!(matches!(prepare(&by_version, &genesis), Err(InputError::Missing(_))));
        let compare = VerifyRequest { checks: Some(vec![CheckKind::Compare]), ..request("") };
        assert!(matches!(prepare(&compare, &genesis), Err(InputError::Missing(_))));
        let bad_schema = VerifyRequest { schema: Some("entity A = {".into()), ..request("") };
        assert!(matches!(prepare(&bad_schema, &genesis), Err(InputError::Policy { what: "schema", .. })));
        let other = VerifyRequest {
            compare_to: Some(PolicySource {
                policies: Some("permit(principal, action, resource)".into()),
                policy_set: None,
            }),
            ..request("")
        };
        assert!(matches!(prepare(&other, &genesis), Err(InputError::Policy { what: "compare_to", .. })));
    }

    #[tokio::test]
    async fn an_invalid_set_is_refuted_by_validation_and_never_proved() {
        let genesis = Constitution::genesis().expect("genesis");
        let text = "@id(\"bad\")\npermit(principal is Acgs::Agent, action == Acgs::Action::\"read\", resource is Acgs::Tool)\n  when { resource.colour == \"red\" };";
        let inputs = prepare(&request(text), &genesis).expect("prepared");
        let solver = SolverChoice::Missing { reason: "no solver".into() };
        let limits = Limits { timeout: Duration::from_secs(5), bounded_max_requests: 100 };
        let results = run(&inputs, &solver, limits).await;
        assert_eq!(results[0].check, "validation");
        assert_eq!(results[0].status, Status::Refuted);
        assert_eq!(results[0].problems[0].line, Some(3));
        assert!(results[1..].iter().all(|r| r.status == Status::Invalid), "{results:?}");
        assert_eq!(results.iter().filter(|r| r.check == "invariant").count(), 8);
    }

    #[tokio::test]
    async fn without_a_solver_violations_are_refuted_and_the_rest_only_bounded() {
        let genesis = Constitution::genesis().expect("genesis");
        let text =
            r#"permit(principal is Acgs::Agent, action == Acgs::Action::"delete", resource is Acgs::AuditRecord);"#;
        let mut req = request(text);
        req.checks = Some(vec![CheckKind::Invariants]);
        let inputs = prepare(&req, &genesis).expect("prepared");
        let solver = SolverChoice::Missing { reason: "no solver".into() };
        let limits = Limits { timeout: Duration::from_secs(20), bounded_max_requests: 300 };
        let results = run(&inputs, &solver, limits).await;
        let audit =
            results.iter().find(|r| r.invariant.as_deref() == Some("audit-records-are-immutable")).expect("audit");
        assert_eq!(audit.status, Status::Refuted, "{audit:?}");
        assert!(results.iter().all(|r| r.status != Status::Proved), "{results:?}");
        assert!(
            results.iter().filter(|r| r.status == Status::Bounded).all(|r| r.enumerated.unwrap_or(0) > 0),
            "{results:?}"
        );
    }
}
