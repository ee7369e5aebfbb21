//! What a stack is made of, decided without touching Docker: the pure half of the bootstrapper.
//!
//! [`plan`] turns a [`StackSpec`] (name, mode, infrastructure, images, ports, secrets) into the
//! objects to create on the daemon that runs the stack — one network, the volumes, and the
//! containers in start order — and [`dind`] describes the inner daemon's own container on the
//! outer daemon. Everything a test wants to know about the stack's shape (every object labelled,
//! every port on 127.0.0.1, every service read-only and unprivileged) is visible here and unit
//! tested; `engine.rs` only carries it out.

use std::collections::BTreeMap;

use crate::kernel::service::ServiceName;

/// The label every object of a stack carries: `acgs.stack=<name>`.
pub const STACK_LABEL: &str = "acgs.stack";
/// The label naming an object's part in the stack (`postgres`, `auth`, `dind`, …).
pub const ROLE_LABEL: &str = "acgs.role";
/// On volumes: `true` — data that `down` keeps unless asked.
pub const DATA_LABEL: &str = "acgs.data";

/// The unprivileged user of the acgs image (uid:gid), see embedded/docker/Dockerfile.
pub const ACGS_USER: &str = "10001:10001";
/// Where the inner daemon listens for mutual TLS.
pub const DIND_PORT: u16 = 2376;
/// Where certificates are copied into the inner daemon's container.
pub const DIND_CERTS: &str = "/certs";
pub const POSTGRES_PORT: u16 = 5432;
pub const REDIS_PORT: u16 = 6379;
pub const NATS_PORT: u16 = 4222;
pub const PROMETHEUS_PORT: u16 = 9090;
pub const GRAFANA_PORT: u16 = 3000;
/// The configuration files the stack writes into the Redis and NATS containers.
pub const REDIS_CONF: &str = "/etc/acgs/redis.conf";
pub const NATS_CONF: &str = "/etc/acgs/nats.conf";

/// Where the stack runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// In a Docker-in-Docker daemon of its own, reached over mutual TLS.
    Dind,
    /// Directly on the given daemon.
    Host,
}

/// Where PostgreSQL, Redis and NATS come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Infra {
    /// PostgreSQL, Redis and NATS from their images.
    Images,
    /// `acgs shim nats` and `acgs shim redis` from the acgs image; each service keeps its tables
    /// in SQLite on its own volume (services never share tables). No third-party image at all.
    Shim,
}

/// Images by part of the stack.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Images {
    pub acgs: String,
    pub dind: String,
    pub postgres: String,
    pub redis: String,
    pub nats: String,
    pub prometheus: String,
    pub grafana: String,
    /// An image with `cvc5` (1.3 or newer) on PATH for the verification service; without it
    /// verification runs bounded and no proposal can be voted into force.
    pub solver: Option<String>,
}

/// The secrets generated for one stack (kept in its `.env`, 0600).
#[derive(Clone, PartialEq, Eq)]
pub struct Secrets {
    pub postgres_password: String,
    pub redis_password: String,
    pub nats_password: String,
    pub admin_password: String,
    pub service_client_secret: String,
    pub grafana_admin_password: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

impl Secrets {
    /// Fresh random secrets (32 hex digits each: no quoting problems in URLs or env files).
    pub fn generate() -> Secrets {
        let one = || {
            use rand::RngCore;
            let mut bytes = [0u8; 16];
            rand::thread_rng().fill_bytes(&mut bytes);
            hex::encode(bytes)
        };
        Secrets {
            postgres_password: one(),
            redis_password: one(),
            nats_password: one(),
            admin_password: one(),
            service_client_secret: one(),
            grafana_admin_password: one(),
        }
    }

    /// The `.env` variables, in the names the bundled compose file reads.
    pub fn env_vars(&self) -> [(&'static str, &str); 6] {
        [
            ("POSTGRES_PASSWORD", &self.postgres_password),
            ("REDIS_PASSWORD", &self.redis_password),
            ("NATS_PASSWORD", &self.nats_password),
            ("ACGS_ADMIN_PASSWORD", &self.admin_password),
            ("ACGS_SERVICE_CLIENT_SECRET", &self.service_client_secret),
            ("GRAFANA_ADMIN_PASSWORD", &self.grafana_admin_password),
        ]
    }

    /// Reads them back from `.env` variables; every one must be there.
    pub fn from_env_vars(vars: &BTreeMap<String, String>) -> Result<Secrets, String> {
        let get = |k: &str| vars.get(k).filter(|v| !v.is_empty()).cloned().ok_or_else(|| format!("{k} is missing"));
        Ok(Secrets {
            postgres_password: get("POSTGRES_PASSWORD")?,
            redis_password: get("REDIS_PASSWORD")?,
            nats_password: get("NATS_PASSWORD")?,
            admin_password: get("ACGS_ADMIN_PASSWORD")?,
            service_client_secret: get("ACGS_SERVICE_CLIENT_SECRET")?,
            grafana_admin_password: get("GRAFANA_ADMIN_PASSWORD")?,
        })
    }
}

/// Host ports (on 127.0.0.1); 0 lets Docker choose a free one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ports {
    /// The seven services get `services + 0 … services + 6` (auth first); 0: each chosen freely.
    pub services: u16,
    pub prometheus: u16,
    pub grafana: u16,
    /// The inner daemon's TLS port (dind mode).
    pub dind: u16,
}

impl Ports {
    /// The host port for `service` (0 = any).
    pub fn service(&self, service: ServiceName) -> u16 {
        if self.services == 0 { 0 } else { self.services + (service.default_port() - 8000) }
    }
}

/// Everything the plan depends on.
#[derive(Debug, Clone)]
pub struct StackSpec {
    pub name: String,
    pub mode: Mode,
    pub infra: Infra,
    pub images: Images,
    pub prometheus: bool,
    pub grafana: bool,
    pub ports: Ports,
    pub secrets: Secrets,
}

/// What a container is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// PostgreSQL, Redis, NATS (or their shims).
    Infra,
    /// One of the seven services.
    Service(ServiceName),
    /// Prometheus, Grafana.
    Monitoring,
}

/// A mount of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSpec {
    /// A named volume of the stack.
    Volume { name: String, target: String, read_only: bool },
    /// A tmpfs (for the writable corners of a read-only root).
    Tmpfs { target: String, size_bytes: i64, mode: i64 },
}

/// A health check run by Docker in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSpec {
    /// `CMD` form: the command and its arguments.
    pub test: Vec<String>,
    pub interval_ms: i64,
    pub timeout_ms: i64,
    pub retries: i64,
    pub start_period_ms: i64,
    /// Probe interval during the start period (Docker 25+).
    pub start_interval_ms: i64,
}

impl HealthSpec {
    fn new(test: Vec<String>) -> HealthSpec {
        HealthSpec {
            test,
            interval_ms: 5_000,
            timeout_ms: 3_000,
            retries: 3,
            start_period_ms: 60_000,
            start_interval_ms: 1_000,
        }
    }
}

/// A file written into a container before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// Absolute path in the container.
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
    /// Owner uid/gid.
    pub owner: u64,
}

/// One container to create.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSpec {
    /// Its part, also its DNS name on the stack's network (`auth`, `postgres`, …).
    pub role: String,
    /// The Docker name: `<stack>-<role>`.
    pub name: String,
    pub kind: Kind,
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    pub user: Option<String>,
    pub mounts: Vec<MountSpec>,
    /// (container port, host port on 127.0.0.1; 0 = any).
    pub ports: Vec<(u16, u16)>,
    /// Whether `ports` are published on 127.0.0.1 (the daemon is the host's) or on every
    /// interface of the daemon (inside the inner daemon, whose own container publishes them on
    /// 127.0.0.1 of the host).
    pub publish_on_loopback: bool,
    pub health: Option<HealthSpec>,
    pub read_only: bool,
    pub cap_drop_all: bool,
    pub no_new_privileges: bool,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids_limit: i64,
    pub files: Vec<FileSpec>,
    pub labels: BTreeMap<String, String>,
    /// Restarted by Docker unless stopped (long-running parts); one-off jobs are not.
    pub restart: bool,
}

/// All objects of a stack on the daemon that runs it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub network: String,
    /// Named volumes, all data.
    pub volumes: Vec<String>,
    /// Infrastructure first, then services, then monitoring.
    pub containers: Vec<ContainerSpec>,
    /// What must reach the host's 127.0.0.1: (container port, host port; 0 = any).
    pub published: Vec<(u16, u16)>,
}

impl Plan {
    pub fn container(&self, role: &str) -> Option<&ContainerSpec> {
        self.containers.iter().find(|c| c.role == role)
    }
}

/// The labels of an object of stack `stack` with part `role`.
pub fn labels(stack: &str, role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(STACK_LABEL.to_string(), stack.to_string()), (ROLE_LABEL.to_string(), role.to_string())])
}

/// Whether `name` can name a stack: it becomes part of container, network and volume names.
pub fn valid_stack_name(name: &str) -> bool {
    let mut chars = name.chars();
    (1..=32).contains(&name.len())
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

const MIB: i64 = 1024 * 1024;

fn tmpfs(target: &str, mib: i64) -> MountSpec {
    MountSpec::Tmpfs { target: target.into(), size_bytes: mib * MIB, mode: 0o1777 }
}

fn volume(name: &str, target: &str) -> MountSpec {
    MountSpec::Volume { name: name.into(), target: target.into(), read_only: false }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The stack: network, volumes and containers on the daemon that runs it.
pub fn plan(spec: &StackSpec, monitoring_files: &MonitoringFiles) -> Plan {
    let name = &spec.name;
    let on_loopback = spec.mode == Mode::Host;
    let mut volumes = Vec::new();
    let mut containers = Vec::new();
    let base = |role: &str, kind: Kind, image: &str| ContainerSpec {
        role: role.to_string(),
        name: format!("{name}-{role}"),
        kind,
        image: image.to_string(),
        entrypoint: None,
        cmd: Vec::new(),
        env: Vec::new(),
        user: None,
        mounts: Vec::new(),
        ports: Vec::new(),
        publish_on_loopback: on_loopback,
        health: None,
        read_only: false,
        cap_drop_all: false,
        no_new_privileges: true,
        memory_bytes: 512 * MIB,
        nano_cpus: 1_000_000_000,
        pids_limit: 512,
        files: Vec::new(),
        labels: labels(name, role),
        restart: true,
    };
    let s = &spec.secrets;

    // Infrastructure.
    let (database_url, redis_url, nats_url) = match spec.infra {
        Infra::Images => {
            let data = format!("{name}-postgres");
            volumes.push(data.clone());
            let mut pg = base("postgres", Kind::Infra, &spec.images.postgres);
            pg.env = vec![
                ("POSTGRES_USER".into(), "acgs".into()),
                ("POSTGRES_DB".into(), "acgs".into()),
                ("POSTGRES_PASSWORD".into(), s.postgres_password.clone()),
            ];
            pg.mounts =
                vec![volume(&data, "/var/lib/postgresql/data"), tmpfs("/var/run/postgresql", 16), tmpfs("/tmp", 64)];
            // The image's entrypoint prepares the data volume as root and runs the server as its
            // own unprivileged user.
            pg.health =
                Some(HealthSpec::new(strings(&["pg_isready", "-q", "-U", "acgs", "-d", "acgs", "-h", "127.0.0.1"])));
            pg.memory_bytes = 1024 * MIB;
            pg.pids_limit = 1024;
            containers.push(pg);

            let mut redis = base("redis", Kind::Infra, &spec.images.redis);
            let redis_data = format!("{name}-redis");
            volumes.push(redis_data.clone());
            // The password goes in a file, never on a command line (which every user of the host
            // can read in /proc).
            redis.cmd = vec!["redis-server".into(), REDIS_CONF.into()];
            redis.files = vec![FileSpec {
                path: REDIS_CONF.into(),
                contents: format!(
                    "# Written by acgs bootstrap.\nrequirepass {}\ndir /data\nappendonly yes\nprotected-mode no\n",
                    s.redis_password
                )
                .into_bytes(),
                mode: 0o644,
                owner: 0,
            }];
            // Its entrypoint likewise runs the server as the image's `redis` user.
            redis.mounts = vec![volume(&redis_data, "/data")];
            redis.env = vec![("REDISCLI_AUTH".into(), s.redis_password.clone())];
            redis.health = Some(HealthSpec::new(strings(&["redis-cli", "ping"])));
            containers.push(redis);

            let mut nats = base("nats", Kind::Infra, &spec.images.nats);
            // Options only: the official images' entrypoints (and acgs-local/nats) start
            // nats-server with them. The password is in the configuration file, not on the
            // command line.
            nats.cmd = vec!["--config".into(), NATS_CONF.into()];
            nats.files = vec![FileSpec {
                path: NATS_CONF.into(),
                contents: format!(
                    "# Written by acgs bootstrap.\nport: {NATS_PORT}\nauthorization {{\n  user: acgs\n  password: \"{}\"\n}}\n",
                    s.nats_password
                )
                .into_bytes(),
                mode: 0o644,
                owner: 0,
            }];
            nats.user = Some("nobody".into());
            containers.push(nats);
            (
                format!("postgres://acgs:{}@postgres:{POSTGRES_PORT}/acgs", s.postgres_password),
                format!("redis://:{}@redis:{REDIS_PORT}/0", s.redis_password),
                format!("nats://acgs:{}@nats:{NATS_PORT}", s.nats_password),
            )
        }
        Infra::Shim => {
            for (role, port) in [("redis", REDIS_PORT), ("nats", NATS_PORT)] {
                let data = format!("{name}-{role}");
                volumes.push(data.clone());
                let mut shim = base(role, Kind::Infra, &spec.images.acgs);
                shim.cmd = vec![
                    "shim".into(),
                    role.into(),
                    "--port".into(),
                    port.to_string(),
                    "--bind".into(),
                    "0.0.0.0".into(),
                    "--data-dir".into(),
                    "/data".into(),
                ];
                shim.user = Some(ACGS_USER.into());
                shim.mounts = vec![volume(&data, "/data"), tmpfs("/tmp", 16)];
                shim.health = Some(HealthSpec::new(strings(&["/acgs", "wait-for", &format!("127.0.0.1:{port}")])));
                harden(&mut shim);
                containers.push(shim);
            }
            (String::new(), format!("redis://redis:{REDIS_PORT}/0"), format!("nats://nats:{NATS_PORT}"))
        }
    };

    // The seven services, all from the acgs image (verification from the solver's if given).
    for service in ServiceName::ALL {
        let role = service.as_str();
        let port = service.default_port();
        let data = format!("{name}-{role}");
        volumes.push(data.clone());
        let image = match (&spec.images.solver, service) {
            (Some(solver), ServiceName::Verification) => solver_image_tag(&spec.images.acgs, solver),
            _ => spec.images.acgs.clone(),
        };
        let mut c = base(role, Kind::Service(service), &image);
        c.entrypoint = Some(vec!["/acgs".into()]);
        c.cmd = strings(&["serve", role, "--port", &port.to_string(), "--bind", "0.0.0.0"]);
        c.user = Some(ACGS_USER.into());
        let mut env = vec![
            ("ACGS_DATA_DIR".to_string(), "/data".to_string()),
            ("ACGS_LOG_FORMAT".into(), "json".into()),
            ("ACGS_NATS_URL".into(), nats_url.clone()),
            ("ACGS_REDIS_URL".into(), redis_url.clone()),
            ("ACGS_SERVICE_CLIENT_SECRET".into(), s.service_client_secret.clone()),
            ("ACGS_HEALTHCHECK_URL".into(), format!("http://127.0.0.1:{port}/ready")),
        ];
        if !database_url.is_empty() {
            env.push(("ACGS_DATABASE_URL".into(), database_url.clone()));
        }
        for peer in ServiceName::ALL {
            let key = format!("ACGS_{}_URL", peer.as_str().to_ascii_uppercase());
            env.push((key, format!("http://{}:{}", peer.as_str(), peer.default_port())));
        }
        if service == ServiceName::Auth {
            env.push(("ACGS_ADMIN_PASSWORD".into(), s.admin_password.clone()));
        }
        c.env = env;
        c.mounts = vec![volume(&data, "/data"), tmpfs("/tmp", 64)];
        c.ports = vec![(port, host_port(spec, port, spec.ports.service(service)))];
        c.health = Some(HealthSpec::new(strings(&["/acgs", "healthcheck"])));
        harden(&mut c);
        containers.push(c);
    }

    // Monitoring.
    if spec.prometheus {
        let data = format!("{name}-prometheus");
        volumes.push(data.clone());
        let mut p = base("prometheus", Kind::Monitoring, &spec.images.prometheus);
        p.cmd = strings(&[
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            "--storage.tsdb.retention.time=15d",
        ]);
        p.mounts = vec![volume(&data, "/prometheus")];
        p.ports = vec![(PROMETHEUS_PORT, host_port(spec, PROMETHEUS_PORT, spec.ports.prometheus))];
        p.files = monitoring_files.prometheus.clone();
        p.memory_bytes = 1024 * MIB;
        containers.push(p);
    }
    if spec.grafana {
        let data = format!("{name}-grafana");
        volumes.push(data.clone());
        let mut g = base("grafana", Kind::Monitoring, &spec.images.grafana);
        g.env = vec![
            ("GF_SECURITY_ADMIN_USER".into(), "admin".into()),
            ("GF_SECURITY_ADMIN_PASSWORD".into(), s.grafana_admin_password.clone()),
            ("GF_USERS_ALLOW_SIGN_UP".into(), "false".into()),
            ("GF_ANALYTICS_REPORTING_ENABLED".into(), "false".into()),
            ("GF_ANALYTICS_CHECK_FOR_UPDATES".into(), "false".into()),
        ];
        g.mounts = vec![volume(&data, "/var/lib/grafana")];
        g.ports = vec![(GRAFANA_PORT, host_port(spec, GRAFANA_PORT, spec.ports.grafana))];
        g.files = monitoring_files.grafana.clone();
        containers.push(g);
    }

    let mut published = vec![];
    for service in ServiceName::ALL {
        published.push((service.default_port(), spec.ports.service(service)));
    }
    if spec.prometheus {
        published.push((PROMETHEUS_PORT, spec.ports.prometheus));
    }
    if spec.grafana {
        published.push((GRAFANA_PORT, spec.ports.grafana));
    }
    Plan { network: name.clone(), volumes, containers, published }
}

/// The port a container publishes on its daemon: the requested host port on the host's daemon;
/// inside the inner daemon the container's own port, which the inner daemon's container then
/// publishes on the host.
fn host_port(spec: &StackSpec, port: u16, requested: u16) -> u16 {
    match spec.mode {
        Mode::Host => requested,
        Mode::Dind => port,
    }
}

/// The tag of the verification image: the acgs image on top of the solver image (both named
/// in it, so another binary or another solver gives another image).
pub fn solver_image_tag(acgs: &str, solver: &str) -> String {
    use sha2::Digest;
    let solver = &hex::encode(sha2::Sha256::digest(solver.as_bytes()))[..8];
    match acgs.rsplit_once(':') {
        Some((repo, tag)) => format!("{repo}-verification:{tag}-{solver}"),
        None => format!("{acgs}-verification:{solver}"),
    }
}

/// A one-off job in the stack's network: `acgs ARGS` from the integrity service's container
/// (its image, environment, user and data volume), not restarted, not published.
pub fn job(plan: &Plan, stack: &str, role: &str, args: &[&str]) -> Option<ContainerSpec> {
    let mut job = plan.container("integrity")?.clone();
    job.role = role.into();
    job.name = format!("{stack}-{role}");
    job.labels = labels(stack, role);
    job.cmd = args.iter().map(|a| a.to_string()).collect();
    job.ports.clear();
    job.health = None;
    job.restart = false;
    // Files are copied into it and results out of it: its own layer must be writable.
    job.read_only = false;
    Some(job)
}

/// What every acgs container gets: read-only root, no capabilities, no privilege escalation,
/// limits.
fn harden(c: &mut ContainerSpec) {
    c.read_only = true;
    c.cap_drop_all = true;
    c.no_new_privileges = true;
    c.memory_bytes = 256 * MIB;
    c.nano_cpus = 1_000_000_000;
    c.pids_limit = 256;
}

/// Files the monitoring containers need, by container.
#[derive(Debug, Clone, Default)]
pub struct MonitoringFiles {
    pub prometheus: Vec<FileSpec>,
    pub grafana: Vec<FileSpec>,
}

/// How the inner daemon's container is started on the outer daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DindPrivilege {
    /// `--privileged`, what docker:dind documents.
    Privileged,
    /// Where privileged is refused (a sandbox without CAP_SYS_RESOURCE, DESIGN.md §8): every
    /// capability but SYS_RESOURCE, unconfined seccomp/AppArmor/system paths, all devices, the
    /// cgroup tree writable.
    Capabilities,
}

/// The inner daemon's container on the outer daemon: TLS on 2376 and the stack's published
/// ports, all on the host's 127.0.0.1; its /var/lib/docker on a data volume.
pub fn dind(spec: &StackSpec, published: &[(u16, u16)]) -> ContainerSpec {
    let name = &spec.name;
    let mut ports = vec![(DIND_PORT, spec.ports.dind)];
    ports.extend_from_slice(published);
    ContainerSpec {
        role: "dind".into(),
        name: format!("{name}-dind"),
        kind: Kind::Infra,
        image: spec.images.dind.clone(),
        // The image's entrypoint (docker:dind's dockerd-entrypoint.sh, or acgs-local/dind's)
        // prepares cgroups and /tmp for a `dockerd …` command, then runs it.
        entrypoint: None,
        cmd: vec![
            "dockerd".into(),
            format!("--host=tcp://0.0.0.0:{DIND_PORT}"),
            "--host=unix:///var/run/docker.sock".into(),
            "--tlsverify".into(),
            format!("--tlscacert={DIND_CERTS}/server/ca.pem"),
            format!("--tlscert={DIND_CERTS}/server/cert.pem"),
            format!("--tlskey={DIND_CERTS}/server/key.pem"),
            "--storage-driver=overlay2".into(),
        ],
        // Certificates are ours (copied in): docker:dind must not generate its own.
        env: vec![("DOCKER_TLS_CERTDIR".into(), String::new())],
        user: None,
        mounts: vec![MountSpec::Volume { name: dind_volume(name), target: "/var/lib/docker".into(), read_only: false }],
        ports,
        publish_on_loopback: true,
        health: None,
        read_only: false,
        cap_drop_all: false,
        no_new_privileges: false,
        memory_bytes: 0,
        nano_cpus: 0,
        pids_limit: 0,
        files: Vec::new(),
        labels: labels(name, "dind"),
        restart: true,
    }
}

/// The inner daemon's data volume (holding every inner image, container and volume).
pub fn dind_volume(stack: &str) -> String {
    format!("{stack}-dind")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(mode: Mode, infra: Infra) -> StackSpec {
        StackSpec {
            name: "t1".into(),
            mode,
            infra,
            images: Images {
                acgs: "acgs:0.1.0-abc".into(),
                dind: "docker:27.3-dind".into(),
                postgres: "postgres:16.4-alpine".into(),
                redis: "redis:7.4-alpine".into(),
                nats: "nats:2.10-alpine".into(),
                prometheus: "prom/prometheus:v2.54.1".into(),
                grafana: "grafana/grafana:11.2.0".into(),
                solver: None,
            },
            prometheus: true,
            grafana: true,
            ports: Ports { services: 8000, prometheus: 9090, grafana: 3000, dind: 2376 },
            secrets: Secrets::generate(),
        }
    }

    #[test]
    fn every_object_is_labelled_and_named_after_the_stack() {
        for infra in [Infra::Images, Infra::Shim] {
            let plan = plan(&spec(Mode::Dind, infra), &MonitoringFiles::default());
            assert_eq!(plan.network, "t1");
            assert!(plan.volumes.iter().all(|v| v.starts_with("t1-")));
            for c in &plan.containers {
                assert_eq!(c.name, format!("t1-{}", c.role));
                assert_eq!(c.labels.get(STACK_LABEL).map(String::as_str), Some("t1"));
                assert_eq!(c.labels.get(ROLE_LABEL), Some(&c.role));
            }
        }
    }

    #[test]
    fn services_are_read_only_unprivileged_limited_and_checked() {
        let plan = plan(&spec(Mode::Host, Infra::Images), &MonitoringFiles::default());
        let services: Vec<_> = plan.containers.iter().filter(|c| matches!(c.kind, Kind::Service(_))).collect();
        assert_eq!(services.len(), 7);
        for c in services {
            assert!(c.read_only && c.cap_drop_all && c.no_new_privileges, "{}", c.name);
            assert_eq!(c.user.as_deref(), Some(ACGS_USER));
            assert!(c.memory_bytes > 0 && c.nano_cpus > 0 && c.pids_limit > 0);
            assert!(c.health.is_some());
            assert!(c.mounts.iter().any(|m| matches!(m, MountSpec::Tmpfs { target, .. } if target == "/tmp")));
            let env: BTreeMap<_, _> = c.env.iter().cloned().collect();
            assert!(env["ACGS_DATABASE_URL"].starts_with("postgres://acgs:"));
            assert_eq!(env["ACGS_INTEGRITY_URL"], "http://integrity:8002");
        }
    }

    #[test]
    fn ports_reach_the_host_on_loopback_only() {
        let host = plan(&spec(Mode::Host, Infra::Images), &MonitoringFiles::default());
        assert!(host.containers.iter().filter(|c| !c.ports.is_empty()).all(|c| c.publish_on_loopback));
        assert_eq!(host.container("consensus").expect("consensus").ports, vec![(8005, 8005)]);
        // Infrastructure is never published.
        for role in ["postgres", "redis", "nats"] {
            assert!(host.container(role).expect(role).ports.is_empty());
        }
        let s = spec(Mode::Dind, Infra::Images);
        let inner = plan(&s, &MonitoringFiles::default());
        let outer = dind(&s, &inner.published);
        assert!(outer.publish_on_loopback);
        assert_eq!(outer.ports.len(), 1 + 7 + 2);
        assert!(outer.cmd.contains(&"--tlsverify".to_string()));
        assert!(outer.ports.contains(&(8005, 8005)));
        // Inside the inner daemon each publishes its own port, for the outer container to map.
        let mut random = spec(Mode::Dind, Infra::Images);
        random.ports.services = 0;
        let inner = plan(&random, &MonitoringFiles::default());
        assert_eq!(inner.container("auth").expect("auth").ports, vec![(8000, 8000)]);
        assert!(inner.published.contains(&(8000, 0)));
    }

    #[test]
    fn shim_infrastructure_needs_no_third_party_image() {
        let mut s = spec(Mode::Dind, Infra::Shim);
        s.prometheus = false;
        s.grafana = false;
        let plan = plan(&s, &MonitoringFiles::default());
        assert!(plan.containers.iter().all(|c| c.image == s.images.acgs), "{plan:?}");
        assert!(plan.container("postgres").is_none());
        let auth = plan.container("auth").expect("auth");
        assert!(!auth.env.iter().any(|(k, _)| k == "ACGS_DATABASE_URL"));
    }

    #[test]
    fn stack_names_are_checked() {
        for ok in ["acgs", "t1", "my-stack_2"] {
            assert!(valid_stack_name(ok), "{ok}");
        }
        for bad in ["", "-x", "Upper", "a b", "a/b", &"x".repeat(33)] {
            assert!(!valid_stack_name(bad), "{bad}");
        }
    }

    #[test]
    fn secrets_survive_the_env_file_and_are_never_printed() {
        let s = Secrets::generate();
        let vars: BTreeMap<String, String> = s.env_vars().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(Secrets::from_env_vars(&vars).expect("complete"), s);
        assert_eq!(format!("{s:?}"), "Secrets(<redacted>)");
        assert_ne!(Secrets::generate(), s);
    }
}
