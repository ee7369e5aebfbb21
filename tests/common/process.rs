//! The real `acgs` binary as a child process: start it with every port 0 on a data dir, read
//! the addresses it announces, stop it with SIGTERM (or kill it), talk to it with a blocking
//! client. Tests that start whole processes hold [`serial`] so a 2-core machine does not
//! measure its own contention.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_acgs");

/// The tests here start whole `acgs` processes and some time them; running them one at a time
/// keeps a 2-core machine from measuring its own contention.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The same for async tests that start whole deployments (the distributed topology).
pub static ASYNC_SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn serial_async() -> tokio::sync::MutexGuard<'static, ()> {
    ASYNC_SERIAL.lock().await
}
pub const PASSWORD: &str = "operator-password-1";

pub fn acgs(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("acgs runs")
}

/// A running `acgs` process and the addresses it announced.
pub struct Process {
    pub child: Child,
    pub addrs: Vec<(String, SocketAddr)>,
    pub lines: mpsc::Receiver<String>,
}

/// Starts `acgs ARGS` with every port 0 and waits until it has announced `expect` listeners.
pub fn start(
    args: &[&str],
    data_dir: &std::path::Path,
    extra_env: &[(&str, &str)],
    expect: usize,
) -> (Process, Instant) {
    let mut command = Command::new(BIN);
    command.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command.env("ACGS_DATA_DIR", data_dir).env("ACGS_ADMIN_PASSWORD", PASSWORD);
    for service in ["AUTH", "CONSTITUTION", "INTEGRITY", "VERIFICATION", "SIMULATION", "CONSENSUS", "EVOLUTION"] {
        command.env(format!("ACGS_{service}_PORT"), "0");
    }
    for (k, v) in extra_env {
        command.env(k, v);
    }
    let started = Instant::now();
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn acgs");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut addrs = Vec::new();
    while addrs.len() < expect {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("acgs announces its listeners");
        if let Some((name, rest)) = line.strip_prefix("acgs: ").and_then(|l| l.split_once(" listening on http://")) {
            addrs.push((name.trim().to_string(), rest.parse().expect("address")));
        }
    }
    (Process { child, addrs, lines: rx }, started)
}

impl Process {
    pub fn url(&self, service: &str, path: &str) -> String {
        let addr = self.addrs.iter().find(|(n, _)| n == service).expect("service announced").1;
        format!("http://{addr}{path}")
    }

    /// Sends SIGTERM and waits for the exit status, returning how long it took.
    pub fn terminate(&mut self) -> (std::process::ExitStatus, Duration) {
        let t = Instant::now();
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status, t.elapsed());
            }
            assert!(t.elapsed() < Duration::from_secs(10), "acgs did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh PostgreSQL database when the suite runs against PostgreSQL (`ACGS_TEST_DATABASE_URL`).
pub fn fresh_database_url() -> Option<String> {
    tokio::runtime::Runtime::new().expect("runtime").block_on(super::test_database_url())
}

/// The storage environment for a process: PostgreSQL when testing against it, else nothing.
pub fn storage_env(url: &Option<String>) -> Vec<(&'static str, &str)> {
    url.as_deref().map(|u| vec![("ACGS_DATABASE_URL", u)]).unwrap_or_default()
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

pub fn token(p: &Process) -> String {
    let body: Value = client()
        .post(p.url("auth", "/api/v1/auth/token"))
        .form(&[("grant_type", "password"), ("username", "admin"), ("password", PASSWORD)])
        .send()
        .expect("token")
        .json()
        .expect("json");
    body["access_token"].as_str().expect("access token").to_string()
}
