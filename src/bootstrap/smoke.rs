//! `acgs bootstrap test`: proves a running stack works end to end, through the addresses it
//! publishes on 127.0.0.1 and nothing else.
//!
//! 1. The admin logs in with the stack's generated password.
//! 2. Three council members ratify an amendment (a principle with a `never` invariant that
//!    every compliant set keeps); every service serves the new constitutional hash.
//! 3. Two stewards pass a policy proposal (the active set plus a policy generated from a
//!    principle's intent): verified by the stack's solver, voted, activated.
//! 4. An agent asks for a decision; the new set answers it.
//! 5. The decision's log entry is checked against a signed checkpoint with an inclusion proof
//!    (the offline verifier of `acgs verify`).
//!
//! The users and the agent it creates are disabled at the end, so repeated runs do not grow
//! the electorates; the amendment and the policy set stay, as every governance act does.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use super::StackArgs;
use super::state::StackDir;

/// The HTTP side of the test: base URLs and one client.
struct Api {
    http: reqwest::Client,
    endpoints: BTreeMap<String, String>,
}

impl Api {
    fn url(&self, service: &str, path: &str) -> Result<String> {
        let base = self.endpoints.get(service).with_context(|| format!("the stack publishes no {service}"))?;
        Ok(format!("{base}{path}"))
    }

    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Result<Value> {
        let response = request.send().await.with_context(|| what.to_string())?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{what}: {status}: {}", text.trim());
        }
        if text.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_str(&text).with_context(|| format!("{what}: not JSON"))
        }
    }

    async fn post(&self, service: &str, path: &str, token: &str, body: Value) -> Result<Value> {
        let request = self.http.post(self.url(service, path)?).bearer_auth(token).json(&body);
        self.send(request, &format!("POST {service}{path}")).await
    }

    async fn get(&self, service: &str, path: &str, token: &str) -> Result<Value> {
        let request = self.http.get(self.url(service, path)?).bearer_auth(token);
        self.send(request, &format!("GET {service}{path}")).await
    }

    async fn patch(&self, service: &str, path: &str, token: &str, body: Value) -> Result<Value> {
        let request = self.http.patch(self.url(service, path)?).bearer_auth(token).json(&body);
        self.send(request, &format!("PATCH {service}{path}")).await
    }

    /// A password login; the access token.
    async fn login(&self, username: &str, password: &str) -> Result<String> {
        let request = self.http.post(self.url("auth", "/api/v1/auth/token")?).form(&[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ]);
        let body = self.send(request, &format!("login as {username}")).await?;
        body["access_token"].as_str().map(str::to_string).ok_or_else(|| anyhow!("login as {username}: no access_token"))
    }
}

fn secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Runs the test against the stack; exit 0 when every step passed.
pub async fn run(args: &StackArgs) -> Result<ExitCode> {
    let dir = StackDir::new(&args.dir, &args.name);
    let state = dir
        .load()?
        .with_context(|| format!("stack {} is not up (no stack.json in {})", args.name, dir.path.display()))?;
    let secrets = dir.load_secrets()?.context("the stack's .env is missing")?;
    let api = Api {
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
        endpoints: state.endpoints.clone(),
    };
    let started = Instant::now();
    let step = |what: &str| println!("  ✓ {what} ({:.1} s)", started.elapsed().as_secs_f64());
    let tag = &secret()[..8];

    let admin = api.login("admin", &secrets.admin_password).await?;
    step("admin logged in");

    // People: three council members, two stewards; an agent.
    let mut people = Vec::new();
    let user = |role: &'static str, i: usize| (format!("smoke-{tag}-{role}-{i}"), secret(), role);
    let members: Vec<_> = (1..=3).map(|i| user("council", i)).chain((1..=2).map(|i| user("steward", i))).collect();
    for (name, password, role) in &members {
        let created = api
            .post("auth", "/api/v1/users", &admin, json!({"username": name, "password": password, "roles": [role]}))
            .await?;
        people.push(created["id"].as_str().context("a user without id")?.to_string());
    }
    let mut tokens = Vec::new();
    for (name, password, _) in &members {
        tokens.push(api.login(name, password).await?);
    }
    let (council, stewards) = tokens.split_at(3);
    let agent = api
        .post("auth", "/api/v1/clients", &admin, json!({"name": format!("smoke-{tag}-agent"), "roles": ["agent"]}))
        .await?;
    let (agent_id, agent_secret) = (
        agent["client_id"].as_str().context("client_id")?.to_string(),
        agent["client_secret"].as_str().context("client_secret")?.to_string(),
    );
    let body = api
        .send(
            api.http
                .post(api.url("auth", "/api/v1/auth/token")?)
                .basic_auth(&agent_id, Some(&agent_secret))
                .form(&[("grant_type", "client_credentials")]),
            "agent token",
        )
        .await?;
    let agent_token = body["access_token"].as_str().context("agent access_token")?.to_string();
    step("three council members, two stewards and an agent created");

    let solver = state.images.solver.is_some();
    let result = governance(&api, &admin, council, stewards, &agent_token, tag, solver, &step).await;

    // Leave the electorates as they were, whatever happened.
    for id in &people {
        let _ = api.patch("auth", &format!("/api/v1/users/{id}"), &admin, json!({"disabled": true})).await;
    }
    let _ = api.patch("auth", &format!("/api/v1/clients/{agent_id}"), &admin, json!({"disabled": true})).await;
    result?;
    println!("stack {}: every step passed in {:.1} s", args.name, started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::too_many_arguments)]
async fn governance(
    api: &Api,
    admin: &str,
    council: &[String],
    stewards: &[String],
    agent: &str,
    tag: &str,
    solver: bool,
    step: &impl Fn(&str),
) -> Result<()> {
    // The amendment.
    let principle = json!({
        "id": format!("smoke-{tag}"), "title": "Smoke test", "category": "accountability", "priority": 10,
        "text": "Recorded by `acgs bootstrap test`: agents never delete audit records.",
        "invariants": [{ "id": format!("smoke-{tag}-inv"), "kind": "never",
            "description": "Agents never delete audit records.",
            "policy": "permit(principal is Acgs::Agent, action == Acgs::Action::\"delete\", resource is Acgs::AuditRecord);" }]
    });
    let amendment = api
        .post(
            "constitution",
            "/api/v1/amendments",
            &council[0],
            json!({"title": format!("Smoke test {tag}"), "rationale": "acgs bootstrap test", "changes": [{"op": "add_principle", "principle": principle}]}),
        )
        .await?;
    let id = amendment["id"].as_str().context("amendment id")?.to_string();
    api.post("constitution", &format!("/api/v1/amendments/{id}/open"), &council[0], Value::Null).await?;
    for (member, choice) in council.iter().zip(["approve", "approve", "abstain"]) {
        api.post("constitution", &format!("/api/v1/amendments/{id}/votes"), member, json!({"choice": choice})).await?;
    }
    let closed = api.post("constitution", &format!("/api/v1/amendments/{id}/close"), &council[0], Value::Null).await?;
    anyhow::ensure!(closed["status"] == "ratified", "the amendment was not ratified: {closed}");
    let hash = api.get("constitution", "/api/v1/constitution/hash", admin).await?;
    let hash = hash["hash"].as_str().context("the constitution's hash")?.to_string();
    step(&format!("amendment ratified: constitutional hash {hash}"));
    every_service_serves(api, &hash).await?;
    step("every service serves the new constitutional hash");

    // The policy proposal.
    let active = api.get("consensus", "/api/v1/policy-sets/active", admin).await?;
    let current = active["version"].as_i64().context("active version")?;
    let policies = active["policies"].as_str().context("active policies")?;
    let intent = json!({
        "principle": "least-privilege", "id": format!("smoke-{tag}-agents-read-public-datasets"), "effect": "permit",
        "principal": {"type": "Acgs::Agent"}, "actions": ["read"], "resource": {"type": "Acgs::Dataset"},
        "conditions": [
            {"attribute": "resource.classification", "op": "==", "value": "public"},
            {"attribute": "context.irreversible", "op": "==", "value": false}
        ]
    });
    let generated = api.post("consensus", "/api/v1/policies/generate", &stewards[0], intent).await?;
    let text = generated["policy"].as_str().context("generated policy")?;
    let proposal = api
        .post(
            "consensus",
            "/api/v1/proposals",
            &stewards[0],
            json!({"title": format!("Smoke test {tag}"), "rationale": "acgs bootstrap test", "policies": format!("{policies}\n{text}")}),
        )
        .await?;
    let pid = proposal["id"].as_str().context("proposal id")?.to_string();
    let deadline = Instant::now() + Duration::from_secs(180);
    let verified = loop {
        let p = api.get("consensus", &format!("/api/v1/proposals/{pid}"), admin).await?;
        if p["status"] != "verifying" {
            break p;
        }
        anyhow::ensure!(Instant::now() < deadline, "proposal {pid} still verifying after 180 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if verified["status"] != "voting" {
        bail!(
            "the proposal did not reach a vote ({}){}: {}",
            verified["status"],
            if solver {
                ""
            } else {
                "; this stack has no solver, so nothing can be proved (bootstrap it with --solver-image)"
            },
            verified["verification"]
        );
    }
    step("policy proposal proved against every invariant");
    for steward in stewards {
        api.post("consensus", &format!("/api/v1/proposals/{pid}/votes"), steward, json!({"choice": "approve"})).await?;
    }
    let closed = api.post("consensus", &format!("/api/v1/proposals/{pid}/close"), admin, json!({})).await?;
    anyhow::ensure!(closed["status"] == "activated", "the proposal was not activated: {closed}");
    step(&format!("policy proposal voted and activated (version {} → {})", current, current + 1));

    // A decision, and its place in the log.
    let request = json!({
        "principal": {"type": "Acgs::Agent", "id": format!("smoke-{tag}")},
        "action": {"type": "Acgs::Action", "id": "read"},
        "resource": {"type": "Acgs::Dataset", "id": format!("smoke-{tag}")},
        "context": {"irreversible": false, "human_approved": false},
        "entities": [
            {"uid": {"type": "Acgs::Agent", "id": format!("smoke-{tag}")}, "parents": [],
             "attrs": {"owner": {"__entity": {"type": "Acgs::User", "id": "admin"}}, "trust_level": 50}},
            {"uid": {"type": "Acgs::Dataset", "id": format!("smoke-{tag}")}, "parents": [], "attrs": {"classification": "public"}}
        ]
    });
    let decision = api.post("consensus", "/api/v1/decide", agent, request).await?;
    anyhow::ensure!(
        decision["decision"] == "allow" && decision["policy_set_version"].as_i64() == Some(current + 1),
        "the decision did not come from the new set: {decision}"
    );
    let decision_id = decision["decision_id"].as_str().context("decision id")?.to_string();
    step(&format!("decision {decision_id}: allow, by policy set {}", current + 1));
    let index = log_index(api, &format!("decision:{decision_id}")).await?;
    let verdict = crate::tools::verify::run(crate::tools::verify::VerifyArgs {
        key: None,
        log: Some(api.url("integrity", "")?),
        index: Some(index),
        checkpoint: None,
        entry: None,
        proof: None,
        audit: None,
        audit_dir: None,
        save_checkpoint: None,
        timeout: Duration::from_secs(30),
    })
    .await
    .map_err(|e| anyhow!("checking log entry {index}: {e}"))?;
    anyhow::ensure!(verdict == crate::tools::verify::Verdict::Valid, "log entry {index} does not verify");
    step(&format!("the decision is log entry {index}, included in a signed checkpoint"));
    Ok(())
}

/// Waits (up to 10 s) until every published service serves `hash` in X-Constitutional-Hash.
async fn every_service_serves(api: &Api, hash: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    for (service, base) in &api.endpoints {
        if matches!(service.as_str(), "prometheus" | "grafana") {
            continue;
        }
        loop {
            let served = api.http.get(format!("{base}/health")).send().await.ok().and_then(|r| {
                r.headers().get("x-constitutional-hash").and_then(|h| h.to_str().ok()).map(str::to_string)
            });
            if served.as_deref() == Some(hash) {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "{service} still serves {served:?}, not {hash}, after 10 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// The index of the first log entry about `subject` (waiting up to 10 s for it to arrive and to
/// be covered by a checkpoint).
async fn log_index(api: &Api, subject: &str) -> Result<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = api
            .send(api.http.get(api.url("integrity", &format!("/api/v1/log/search?subject={subject}"))?), "log search")
            .await?;
        if let Some(index) = found["entries"].get(0).and_then(|e| e["index"].as_u64()) {
            let checkpoint = api.http.get(api.url("integrity", "/api/v1/log/checkpoint")?).send().await?.text().await?;
            let size = checkpoint.lines().nth(1).and_then(|l| l.parse::<u64>().ok()).unwrap_or(0);
            if size > index {
                return Ok(index);
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "{subject} is not in a signed checkpoint of the log after 10 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
