//! Test harness: the real services on port 0 with a temporary data dir, against embedded SQLite,
//! or against PostgreSQL when `ACGS_TEST_DATABASE_URL` is set (scripts/test.sh runs the suite
//! both ways). Each app gets its own PostgreSQL database so tests never share state.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use acgs::config::Config;
use acgs::kernel::service::ServiceName;
use acgs::server::{self, Stack};
use serde_json::Value;

pub mod cedar;
pub mod distributed;
pub mod process;
pub mod rfc9162;

pub const ADMIN_PASSWORD: &str = "correct-horse-battery-staple";

pub struct TestApp {
    pub stack: Option<Stack>,
    /// In the distributed topology: the processes (and `stack` is `None`).
    pub cluster: Option<distributed::Cluster>,
    /// The services this app runs.
    pub services: Vec<ServiceName>,
    pub config: Config,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

/// A fresh database URL when testing against PostgreSQL, else `None`.
pub async fn test_database_url() -> Option<String> {
    let base = std::env::var("ACGS_TEST_DATABASE_URL").ok().filter(|s| !s.is_empty())?;
    let (client, connection) =
        tokio_postgres::connect(&base, tokio_postgres::NoTls).await.expect("connect to ACGS_TEST_DATABASE_URL");
    tokio::spawn(connection);
    let name = format!("acgs_test_{}", uuid::Uuid::new_v4().simple());
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
    let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
    Some(format!("{prefix}/{name}"))
}

/// A configuration for tests: every port 0, a temporary data dir, a known admin password.
pub async fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::defaults_only();
    config.data_dir = dir.to_path_buf();
    config.admin_password = ADMIN_PASSWORD.to_string();
    for service in ServiceName::ALL {
        config.set_port(service, 0);
    }
    if let Some(url) = test_database_url().await {
        config.database_url = url;
    }
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts all seven services after `adjust` has changed the test configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    spawn_services(&ServiceName::ALL, adjust).await
}

/// Starts only `services` in one process (for tests that need, say, a log nobody else writes to).
pub async fn spawn_services(services: &[ServiceName], adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = test_config(dir.path()).await;
    adjust(&mut config);
    let stack = server::start(config.clone(), services).await.expect("services start");
    TestApp {
        stack: Some(stack),
        cluster: None,
        services: services.to_vec(),
        config,
        dir,
        http: reqwest::Client::new(),
    }
}

/// Where the services of a test run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// All seven in this test process, as `acgs up` runs them.
    OneProcess,
    /// Each its own `acgs serve` process, on PostgreSQL (when testing against it), NATS and Redis.
    Distributed,
}

/// Starts all seven services in `topology` after `adjust` has changed the configuration.
pub async fn spawn_in(topology: Topology, adjust: impl FnOnce(&mut Config)) -> TestApp {
    match topology {
        Topology::OneProcess => spawn_app_with(adjust).await,
        Topology::Distributed => {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut config = test_config(dir.path()).await;
            adjust(&mut config);
            let path = dir.path().to_path_buf();
            let start = config.clone();
            let cluster =
                tokio::task::spawn_blocking(move || distributed::Cluster::start(&ServiceName::ALL, start, &path))
                    .await
                    .expect("cluster starts");
            let app = TestApp {
                stack: None,
                cluster: Some(cluster),
                services: ServiceName::ALL.to_vec(),
                config,
                dir,
                http: reqwest::Client::new(),
            };
            app.wait_ready().await;
            app
        }
    }
}

/// Runs each `async fn FLOW(topology: Topology)` once per topology, as the tests
/// `FLOW::one_process` and `FLOW::distributed`: one suite, not a copy.
#[macro_export]
macro_rules! per_topology {
    ($($flow:ident),* $(,)?) => {
        $(
            mod $flow {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn one_process() {
                    super::$flow($crate::common::Topology::OneProcess).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn distributed() {
                    let _one_at_a_time = $crate::common::process::serial_async().await;
                    super::$flow($crate::common::Topology::Distributed).await
                }
            }
        )*
    };
}

impl TestApp {
    pub fn stack(&self) -> &Stack {
        self.stack.as_ref().expect("running")
    }

    pub fn addr(&self, service: ServiceName) -> SocketAddr {
        match &self.cluster {
            Some(cluster) => cluster.addr(service).expect("service runs"),
            None => self.stack().addr(service).expect("service runs"),
        }
    }

    pub fn topology(&self) -> Topology {
        if self.cluster.is_some() { Topology::Distributed } else { Topology::OneProcess }
    }

    /// Waits (up to 30 s) until every service of the app answers `/ready` with 200.
    pub async fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        for &service in &self.services {
            loop {
                let response = self.http.get(self.url(service, "/ready")).send().await;
                if response.as_ref().is_ok_and(|r| r.status() == 200) {
                    break;
                }
                let detail = match response {
                    Ok(r) => r.text().await.unwrap_or_default(),
                    Err(e) => e.to_string(),
                };
                assert!(std::time::Instant::now() < deadline, "{service} is not ready after 30 s: {detail}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    pub fn url(&self, service: ServiceName, path: &str) -> String {
        format!("http://{}{path}", self.addr(service))
    }

    pub fn auth(&self, path: &str) -> String {
        self.url(ServiceName::Auth, path)
    }

    /// Stops the services, keeping the data dir.
    pub async fn stop(&mut self) {
        if let Some(stack) = self.stack.take() {
            stack.stop().await;
        }
    }

    /// Starts the services again on the same data dir and database.
    pub async fn restart(&mut self) {
        assert!(self.cluster.is_none(), "restart() is for the one-process topology");
        self.stop().await;
        let stack = server::start(self.config.clone(), &self.services).await.expect("services restart");
        self.stack = Some(stack);
    }

    /// Password grant; returns the whole token response.
    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.http
            .post(self.auth("/api/v1/auth/token"))
            .form(&[("grant_type", "password"), ("username", username), ("password", password)])
            .send()
            .await
            .expect("token request")
    }

    /// Logs in and returns (access token, refresh token).
    pub async fn tokens(&self, username: &str, password: &str) -> (String, String) {
        let response = self.login(username, password).await;
        assert_eq!(response.status(), 200, "login of {username} failed");
        let body: Value = response.json().await.expect("json");
        (body["access_token"].as_str().expect("access").into(), body["refresh_token"].as_str().expect("refresh").into())
    }

    pub async fn admin_token(&self) -> String {
        self.tokens("admin", ADMIN_PASSWORD).await.0
    }

    /// Creates a user with the given roles (as admin) and returns its id.
    pub async fn create_user(&self, admin: &str, username: &str, password: &str, roles: &[&str]) -> String {
        let response = self
            .http
            .post(self.auth("/api/v1/users"))
            .bearer_auth(admin)
            .json(&serde_json::json!({ "username": username, "password": password, "roles": roles }))
            .send()
            .await
            .expect("create user");
        assert_eq!(response.status(), 201, "create user {username}");
        let body: Value = response.json().await.expect("json");
        body["id"].as_str().expect("id").to_string()
    }

    /// Creates a machine client and returns (client_id, client_secret).
    pub async fn create_client(&self, admin: &str, name: &str, roles: &[&str]) -> (String, String) {
        let response = self
            .http
            .post(self.auth("/api/v1/clients"))
            .bearer_auth(admin)
            .json(&serde_json::json!({ "name": name, "roles": roles }))
            .send()
            .await
            .expect("create client");
        assert_eq!(response.status(), 201, "create client {name}");
        let body: Value = response.json().await.expect("json");
        (body["client_id"].as_str().expect("id").into(), body["client_secret"].as_str().expect("secret").into())
    }

    /// A machine client `name` with `roles` (created by `admin`) and its client-credentials token.
    pub async fn client_token(&self, admin: &str, name: &str, roles: &[&str]) -> String {
        let (id, secret) = self.create_client(admin, name, roles).await;
        let response = self
            .http
            .post(self.auth("/api/v1/auth/token"))
            .basic_auth(&id, Some(&secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token request");
        assert_eq!(response.status(), 200, "client_credentials for {name}");
        let body: Value = response.json().await.expect("json");
        body["access_token"].as_str().expect("access_token").to_string()
    }

    pub async fn get(&self, url: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("GET")
    }
}

/// Asserts a response is a JSON error with the standard shape and returns its code.
pub async fn error_code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let text = response.text().await.expect("body");
    assert!(content_type.starts_with("application/json"), "status {status}: not JSON ({content_type}): {text}");
    let body: Value = serde_json::from_str(&text).expect("error body is JSON");
    let code = body["error"]["code"]
        .as_str()
        .or_else(|| body["error"].as_str())
        .unwrap_or_else(|| panic!("no error code in {text}"))
        .to_string();
    (status, code)
}

pub fn wait() -> Duration {
    Duration::from_millis(50)
}

/// Waits (up to 5 s) for the first log entry with `subject`, checks that its inclusion proof
/// verifies, with the test suite's own RFC 9162 verifier, against a checkpoint signed by the log's
/// published key, and returns the entry.
pub async fn assert_logged_with_proof(app: &TestApp, subject: &str) -> Value {
    use acgs::services::integrity::note::{self, NoteVerifier};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;

    let key =
        app.get(&app.url(ServiceName::Integrity, "/api/v1/log/public-key"), None).await.text().await.expect("key");
    let key = NoteVerifier::parse(key.trim()).expect("key");
    let search = app.url(ServiceName::Integrity, &format!("/api/v1/log/search?subject={subject}"));
    let mut found = Value::Null;
    for _ in 0..250 {
        found = app.get(&search, None).await.json().await.expect("json");
        if !found["entries"].as_array().expect("entries").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let entry = found["entries"][0].clone();
    assert!(entry.is_object(), "no log entry with subject {subject}");
    let index = entry["index"].as_u64().expect("index");
    let leaf = rfc9162::leaf(&B64.decode(entry["leaf"].as_str().expect("leaf")).expect("b64"));
    let checkpoint = loop {
        let text =
            app.get(&app.url(ServiceName::Integrity, "/api/v1/log/checkpoint"), None).await.text().await.expect("cp");
        let cp = note::verify_checkpoint(&text, &key, None).expect("checkpoint verifies");
        if cp.size > index {
            break cp;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let proof: Value = app
        .get(
            &app.url(
                ServiceName::Integrity,
                &format!("/api/v1/log/proof/inclusion?index={index}&tree_size={}", checkpoint.size),
            ),
            None,
        )
        .await
        .json()
        .await
        .expect("json");
    let path: Vec<rfc9162::H> = proof["hashes"]
        .as_array()
        .expect("hashes")
        .iter()
        .map(|h| B64.decode(h.as_str().expect("b64")).expect("b64").try_into().expect("32 bytes"))
        .collect();
    assert!(rfc9162::verify_inclusion(index, checkpoint.size, &leaf, &path, &checkpoint.root), "{subject}");
    entry
}
