//! The distributed topology: each of the seven services as its own `acgs serve` process (the real
//! binary), sharing PostgreSQL (a fresh database when `ACGS_TEST_DATABASE_URL` is set, else each
//! process keeps its own SQLite files), a NATS server and a Redis server started for the test.
//! Peers find each other by URL, exactly as containers do; ports are chosen before start so every
//! process can be told every other's address.
//!
//! NATS is Debian's `nats-server` when installed, else `acgs shim nats`; Redis is `redis-server`
//! when installed, else `acgs shim redis`. Both can be stopped and started again on the same
//! port, for the fault tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use acgs::config::Config;
use acgs::kernel::service::ServiceName;

use super::process::{BIN, Process};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Whether `program` is on `PATH`.
fn installed(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// An infrastructure server (NATS, Redis) on a fixed port that a test can stop and start again.
pub struct Server {
    pub name: &'static str,
    pub port: u16,
    program: String,
    args: Vec<String>,
    child: Option<Child>,
}

impl Server {
    fn new(name: &'static str, program: &str, args: Vec<String>, port: u16) -> Server {
        let mut server = Server { name, port, program: program.to_string(), args, child: None };
        server.start();
        server
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.name);
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} ({}): {e}", self.name, self.program));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "{} does not listen on {}", self.name, self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn nats(dir: &Path) -> Server {
    let port = free_port();
    if installed("nats-server") {
        let args = ["-a", "127.0.0.1", "-p", &port.to_string()].map(String::from).to_vec();
        Server::new("nats-server", "nats-server", args, port)
    } else {
        let data = dir.join("nats").display().to_string();
        let args = ["shim", "nats", "--port", &port.to_string(), "--data-dir", &data].map(String::from).to_vec();
        Server::new("acgs shim nats", BIN, args, port)
    }
}

fn redis(dir: &Path) -> Server {
    let port = free_port();
    if installed("redis-server") {
        let args = ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            .map(String::from)
            .to_vec();
        Server::new("redis-server", "redis-server", args, port)
    } else {
        let data = dir.join("redis").display().to_string();
        let args = ["shim", "redis", "--port", &port.to_string(), "--data-dir", &data].map(String::from).to_vec();
        Server::new("acgs shim redis", BIN, args, port)
    }
}

/// The services of one deployment, each its own process, and the servers they share.
pub struct Cluster {
    pub nats: Server,
    pub redis: Server,
    pub processes: Vec<(ServiceName, Process)>,
    addrs: HashMap<ServiceName, SocketAddr>,
    /// The configuration each process was started with (ports and peers filled in).
    pub config: Config,
    dir: PathBuf,
}

impl Cluster {
    /// Starts `services` as processes, each from `config` with its own data dir under `dir`.
    pub fn start(services: &[ServiceName], mut config: Config, dir: &Path) -> Cluster {
        let nats = nats(dir);
        config.nats_url = format!("nats://127.0.0.1:{}", nats.port);
        let redis = redis(dir);
        config.redis_url = format!("redis://127.0.0.1:{}/0", redis.port);
        if config.service_client_secret.is_empty() {
            config.service_client_secret = uuid::Uuid::new_v4().simple().to_string();
        }
        let mut addrs = HashMap::new();
        for &service in services {
            let port = free_port();
            config.set_port(service, port);
            addrs.insert(service, SocketAddr::from(([127, 0, 0, 1], port)));
        }
        for (&service, addr) in &addrs {
            set_peer_url(&mut config, service, &format!("http://{addr}"));
        }
        let mut cluster = Cluster { nats, redis, processes: Vec::new(), addrs, config, dir: dir.to_path_buf() };
        for &service in services {
            cluster.spawn(service);
        }
        cluster
    }

    fn spawn(&mut self, service: ServiceName) {
        let process = spawn_serve(service, &self.config, &self.dir.join(service.to_string()));
        self.processes.push((service, process));
    }

    pub fn addr(&self, service: ServiceName) -> Option<SocketAddr> {
        self.addrs.get(&service).copied()
    }

    /// Starts another process of `service` (a replica) on a new port, sharing everything else;
    /// returns its address.
    pub fn add_replica(&mut self, service: ServiceName) -> SocketAddr {
        let mut config = self.config.clone();
        let port = free_port();
        config.set_port(service, port);
        // Replicas share their store: the same PostgreSQL database, or the same SQLite files
        // (SQLite's locking makes that safe between processes on one machine).
        let process = spawn_serve(service, &config, &self.dir.join(service.to_string()));
        self.processes.push((service, process));
        SocketAddr::from(([127, 0, 0, 1], port))
    }
}

/// `acgs serve SERVICE --config FILE` with `config` written to `data_dir/acgs-PORT.toml`.
fn spawn_serve(service: ServiceName, config: &Config, data_dir: &Path) -> Process {
    std::fs::create_dir_all(data_dir).expect("data dir");
    let mut config = config.clone();
    config.data_dir = data_dir.to_path_buf();
    let file = data_dir.join(format!("acgs-{}.toml", config.port(service)));
    std::fs::write(&file, toml::to_string(&config).expect("config as TOML")).expect("write config");
    let mut env: Vec<(&str, String)> = Vec::new();
    if let Ok(cvc5) = std::env::var("ACGS_CVC5") {
        env.push(("ACGS_CVC5", cvc5));
    }
    env.push(("ACGS_LOG_LEVEL", std::env::var("ACGS_TEST_LOG").unwrap_or_else(|_| "warn".into())));
    // `start` sets these for its own tests; the environment beats the file, so restate them.
    env.push(("ACGS_ADMIN_PASSWORD", config.admin_password.clone()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let name = service.to_string();
    let file = file.display().to_string();
    let port = config.port(service).to_string();
    let args = ["serve", &name, "--port", &port, "--config", &file];
    let (process, _) = super::process::start(&args, data_dir, &env, 1);
    process
}

fn set_peer_url(config: &mut Config, service: ServiceName, url: &str) {
    let slot = match service {
        ServiceName::Auth => &mut config.auth.url,
        ServiceName::Constitution => &mut config.constitution.url,
        ServiceName::Integrity => &mut config.integrity.url,
        ServiceName::Verification => &mut config.verification.url,
        ServiceName::Simulation => &mut config.simulation.url,
        ServiceName::Consensus => &mut config.consensus.url,
        ServiceName::Evolution => &mut config.evolution.url,
    };
    *slot = url.to_string();
}
