//! Typed, layered configuration, loaded once at start-up and passed down.
//!
//! One precedence chain, lowest first (DESIGN §2):
//! built-in defaults < `config/acgs.toml` (or `--config FILE`) < environment < command-line flags.
//!
//! Every key `a.b` has the environment twin `ACGS_A_B` (`auth.lockout_threshold` →
//! `ACGS_AUTH_LOCKOUT_THRESHOLD`). The original guide's names are accepted too: `DATABASE_URL`,
//! `REDIS_URL`, `NATS_URL`, `CONSTITUTIONAL_HASH` (an `ACGS_` name wins over its guide alias) and
//! `SERVICE_PORT` (the port of `acgs serve <service>`, through its `--port` flag). Secret keys also
//! accept `…_FILE` naming a file that holds the value. Unknown keys in a file are errors; an
//! unknown `ACGS_` variable is reported as a warning (other tools share the prefix). A bad value
//! names its key, where it came from and why, and start-up stops (exit code 2).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::kernel::service::ServiceName;
use crate::kernel::storage::StorageConfig;

/// The configuration file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "config/acgs.toml";

/// Keys whose values are secrets: never printed, and also read from `<ENV>_FILE`.
const SECRET_KEYS: &[&str] = &["admin_password", "database_url", "redis_url", "nats_url", "service_client_secret"];

/// The guide's environment names and the keys they set (below their `ACGS_` twins).
const GUIDE_ALIASES: &[(&str, &str)] = &[
    ("DATABASE_URL", "database_url"),
    ("REDIS_URL", "redis_url"),
    ("NATS_URL", "nats_url"),
    ("CONSTITUTIONAL_HASH", "constitutional_hash"),
    // The solver command's short name (DESIGN §4): `verification.cvc5`.
    ("ACGS_CVC5", "verification.cvc5"),
];

/// `ACGS_` variables that are not configuration keys but are read elsewhere (flags' env twins,
/// test harness settings), so they are not reported as unknown.
const OTHER_ACGS_VARS: &[&str] = &["ACGS_CONFIG", "ACGS_PORT", "ACGS_CVC5", "ACGS_SLOW_TESTS"];
/// Environment twins of the tools' flags.
const TOOL_PREFIXES: &[&str] = &[
    "ACGS_SHIM_",
    "ACGS_HEALTHCHECK_",
    "ACGS_BOOTSTRAP_",
    "ACGS_IMAGES_",
    "ACGS_VERIFY_",
    "ACGS_BACKUP_",
    "ACGS_RESTORE_",
    "ACGS_CERTS_",
    "ACGS_WAIT_",
    "ACGS_EXPORT_",
];

/// The whole configuration. Empty strings mean "not set".
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where embedded storage, keys and the admin password file live.
    pub data_dir: PathBuf,
    /// Address every service listens on.
    pub bind: String,
    /// `postgres://…` to use PostgreSQL instead of embedded SQLite.
    pub database_url: String,
    /// `nats://…`: the bus between processes (empty: in-process only).
    pub nats_url: String,
    /// `redis://…` (or `rediss://`, `unix://`): the revocation list replicas share. Empty: none.
    pub redis_url: String,
    /// Pins the deployment: refuse to start if the active constitution's hash differs.
    pub constitutional_hash: String,
    /// A constitution file to use instead of the embedded genesis.
    pub constitution_file: String,
    /// The first admin's password; generated and written to `<data_dir>/admin-password` if empty.
    pub admin_password: String,
    /// The machine client (role `service`) through which services call each other over HTTP.
    pub service_client_id: String,
    /// Its secret. The auth service makes the client have it; every other process uses it to get
    /// tokens. Empty: the auth service generates one into `<data_dir>/service-client-secret`.
    pub service_client_secret: String,
    pub log: LogConfig,
    pub http: HttpConfig,
    pub storage: StorageSettings,
    pub auth: AuthSettings,
    pub constitution: ConstitutionSettings,
    pub integrity: IntegritySettings,
    pub verification: VerificationSettings,
    pub simulation: PeerSettings,
    pub consensus: ConsensusSettings,
    pub evolution: PeerSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter: `info`, `debug`, `acgs=debug,tower_http=info`, …
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Largest accepted request body.
    pub body_limit_bytes: u64,
    /// Requests taking longer are answered 408 (never applies to health checks).
    pub request_timeout_secs: u64,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// PostgreSQL connections per service.
    pub pool_size: u64,
}

/// A service's own port and, when it runs elsewhere, the URL to reach it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerSettings {
    pub port: u64,
    pub url: String,
}

/// The constitution service's port, URL, and how often it closes amendments whose deadline passed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConstitutionSettings {
    pub port: u64,
    pub url: String,
    /// How often the service looks for amendments whose voting deadline has passed and closes them.
    pub close_check_interval_ms: u64,
}

/// The integrity service's port, URL, checkpoint origin and how often it signs a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntegritySettings {
    pub port: u64,
    pub url: String,
    /// The origin line of signed checkpoints (and the signing key's name): the log's identity.
    pub origin: String,
    /// A new checkpoint is signed at most this often, and only if the log grew.
    pub checkpoint_interval_ms: u64,
}

/// The verification service's port, URL, and how it runs the solver.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerificationSettings {
    pub port: u64,
    pub url: String,
    /// The cvc5 command: empty = `cvc5` on `PATH` (none there: bounded enumeration instead of
    /// proofs); a path = that command, which must exist and be cvc5 1.3 or newer; `none` = no
    /// solver, on purpose. `ACGS_CVC5` sets it too.
    pub cvc5: String,
    /// The longest one check may take, in milliseconds; a request may ask for less, not more.
    pub timeout_ms: u64,
    /// How many verifications run at once (each runs at most one solver process); more wait.
    pub max_concurrent: u64,
    /// Without a solver: at most this many requests are enumerated per check.
    pub bounded_max_requests: u64,
}

impl Default for VerificationSettings {
    fn default() -> Self {
        VerificationSettings {
            port: u64::from(ServiceName::Verification.default_port()),
            url: String::new(),
            cvc5: String::new(),
            timeout_ms: 5000,
            max_concurrent: 2,
            bounded_max_requests: 20_000,
        }
    }
}

impl Default for IntegritySettings {
    fn default() -> Self {
        IntegritySettings {
            port: u64::from(ServiceName::Integrity.default_port()),
            url: String::new(),
            origin: "acgs.local/log".into(),
            checkpoint_interval_ms: 1000,
        }
    }
}

/// The consensus service's port, URL, how its decisions are logged, and how often it closes
/// proposals whose deadline passed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsensusSettings {
    pub port: u64,
    pub url: String,
    /// Which decisions go to the integrity log: `all`, `deny` (denies only) or `sample:R` (a share
    /// R in (0, 1] of all decisions, denies always included).
    pub decision_log: String,
    /// Decisions waiting to be written to the log at most; when full, decisions are denied.
    pub decision_queue: u64,
    /// How often the service looks for proposals whose voting deadline has passed.
    pub close_check_interval_ms: u64,
    /// How many answers to repeated request bodies the active engine remembers; 0 = none.
    pub decision_cache_entries: u64,
}

impl Default for ConsensusSettings {
    fn default() -> Self {
        ConsensusSettings {
            port: u64::from(ServiceName::Consensus.default_port()),
            url: String::new(),
            decision_log: "all".into(),
            decision_queue: 65_536,
            close_check_interval_ms: 5000,
            decision_cache_entries: 10_000,
        }
    }
}

impl Default for ConstitutionSettings {
    fn default() -> Self {
        ConstitutionSettings {
            port: u64::from(ServiceName::Constitution.default_port()),
            url: String::new(),
            close_check_interval_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    pub port: u64,
    pub url: String,
    /// `iss` of issued tokens.
    pub issuer: String,
    /// `aud` of issued tokens, required on every verified token.
    pub audience: String,
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    /// Failed logins in a row before an account is locked.
    pub lockout_threshold: u64,
    /// How long a locked account stays locked.
    pub lockout_secs: u64,
    /// Verified tokens kept so verification is not paid per request.
    pub token_cache_entries: u64,
}

impl Default for Config {
    fn default() -> Self {
        let peer = |s: ServiceName| PeerSettings { port: u64::from(s.default_port()), url: String::new() };
        Config {
            data_dir: PathBuf::from("./acgs-data"),
            bind: "127.0.0.1".into(),
            database_url: String::new(),
            nats_url: String::new(),
            redis_url: String::new(),
            constitutional_hash: String::new(),
            constitution_file: String::new(),
            admin_password: String::new(),
            service_client_id: "acgs-services".into(),
            service_client_secret: String::new(),
            log: LogConfig::default(),
            http: HttpConfig::default(),
            storage: StorageSettings::default(),
            auth: AuthSettings::default(),
            constitution: ConstitutionSettings::default(),
            integrity: IntegritySettings::default(),
            verification: VerificationSettings::default(),
            simulation: peer(ServiceName::Simulation),
            consensus: ConsensusSettings::default(),
            evolution: peer(ServiceName::Evolution),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into(), format: "text".into() }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { body_limit_bytes: 1024 * 1024, request_timeout_secs: 30, shutdown_grace_ms: 1000 }
    }
}

impl Default for StorageSettings {
    fn default() -> Self {
        StorageSettings { pool_size: 8 }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            port: u64::from(ServiceName::Auth.default_port()),
            url: String::new(),
            issuer: "acgs".into(),
            audience: "acgs".into(),
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 14 * 24 * 3600,
            lockout_threshold: 5,
            lockout_secs: 900,
            token_cache_entries: 10_000,
        }
    }
}

/// Why the configuration was refused. Displayed as one line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: cannot read {path}: {reason}")]
    File { path: String, reason: String },
    #[error("config: {path}: {reason}")]
    Syntax { path: String, reason: String },
    #[error("config: key `{key}` (from {origin}): {reason}")]
    Key { key: String, origin: String, reason: String },
}

/// Where the layers come from. `env` is a function so tests need not touch the process
/// environment.
pub struct Sources<'a> {
    /// `--config FILE`; `None` reads [`DEFAULT_CONFIG_FILE`] if it exists.
    pub file: Option<&'a Path>,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Command-line flags as (key, value), highest precedence.
    pub flags: Vec<(&'static str, toml::Value)>,
}

/// A loaded configuration and what was noticed on the way.
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Config {
    /// Builds the configuration from its layers and validates it.
    pub fn load(sources: Sources<'_>) -> Result<Loaded, ConfigError> {
        let defaults = toml::Value::try_from(Config::default()).map_err(|e| ConfigError::Key {
            key: "(defaults)".into(),
            origin: "built-in defaults".into(),
            reason: e.to_string(),
        })?;
        let mut leaves = BTreeMap::new();
        flatten("", &defaults, &mut leaves);
        let mut merged: BTreeMap<String, (toml::Value, String)> =
            leaves.iter().map(|(k, v)| (k.clone(), (v.clone(), "built-in default".to_string()))).collect();
        let mut warnings = Vec::new();

        // Layer 2: the file.
        let file_path = match sources.file {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
        };
        if let Some(path) = &file_path {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::File { path: shown.clone(), reason: e.to_string() })?;
            let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: shown.clone(),
                reason: e.to_string().lines().next().unwrap_or("invalid TOML").to_string(),
            })?;
            let mut file_leaves = BTreeMap::new();
            flatten("", &toml::Value::Table(table), &mut file_leaves);
            for (key, value) in file_leaves {
                let origin = shown.clone();
                let Some(default) = leaves.get(&key) else {
                    return Err(ConfigError::Key { key, origin, reason: "unknown key".into() });
                };
                if std::mem::discriminant(default) != std::mem::discriminant(&value) {
                    return Err(ConfigError::Key { reason: format!("expected {}", kind(default)), key, origin });
                }
                merged.insert(key, (value, origin));
            }
        }

        // Layer 3: the environment (guide aliases first, so `ACGS_` names win).
        for (alias, key) in GUIDE_ALIASES {
            if let Some(raw) = read_env(sources.env, alias, SECRET_KEYS.contains(key))? {
                let default = &leaves[*key];
                merged.insert(key.to_string(), (parse_env(key, alias, default, &raw)?, (*alias).to_string()));
            }
        }
        for (key, default) in &leaves {
            let name = env_name(key);
            if let Some(raw) = read_env(sources.env, &name, SECRET_KEYS.contains(&key.as_str()))? {
                merged.insert(key.clone(), (parse_env(key, &name, default, &raw)?, name));
            }
        }

        // Layer 4: flags.
        for (key, value) in sources.flags {
            merged.insert(key.to_string(), (value, format!("flag for {key}")));
        }

        validate_leaves(&merged)?;
        let mut root = toml::Table::new();
        for (key, (value, _)) in &merged {
            insert_path(&mut root, key, value.clone());
        }
        let config: Config = toml::Value::Table(root).try_into().map_err(|e: toml::de::Error| ConfigError::Key {
            key: "(merged)".into(),
            origin: "all layers".into(),
            reason: e.message().to_string(),
        })?;
        config.validate(&merged)?;

        for (name, _) in env_names(sources.env) {
            let known = leaves.keys().any(|k| env_name(k) == name || format!("{}_FILE", env_name(k)) == name)
                || OTHER_ACGS_VARS.contains(&name.as_str())
                || name.starts_with("ACGS_TEST_")
                // Flags of the other subcommands (`acgs shim … --help`, `acgs healthcheck --help`,
                // …), not configuration keys: a container sets ACGS_HEALTHCHECK_URL for its probe.
                || TOOL_PREFIXES.iter().any(|p| name.starts_with(p));
            if !known {
                warnings.push(format!("ignoring unknown environment variable {name}"));
            }
        }
        Ok(Loaded { config, warnings })
    }

    fn validate(&self, merged: &BTreeMap<String, (toml::Value, String)>) -> Result<(), ConfigError> {
        let fail = |key: &str, reason: String| ConfigError::Key {
            key: key.into(),
            origin: merged.get(key).map(|(_, o)| o.clone()).unwrap_or_default(),
            reason,
        };
        if self.bind.parse::<IpAddr>().is_err() {
            return Err(fail("bind", format!("{:?} is not an IP address", self.bind)));
        }
        if !self.constitutional_hash.is_empty() && !crate::kernel::constitution::is_hash(&self.constitutional_hash) {
            return Err(fail("constitutional_hash", "must be 16 lowercase hex digits".into()));
        }
        let url = &self.database_url;
        if !(url.is_empty() || url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(fail("database_url", "must start with postgres:// or postgresql://".into()));
        }
        let nats = &self.nats_url;
        if !(nats.is_empty() || nats.starts_with("nats://") || nats.starts_with("tls://")) {
            return Err(fail("nats_url", "must start with nats:// or tls://".into()));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(fail("log.level", format!("{:?} is not a tracing filter", self.log.level)));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(fail("log.format", "must be `text` or `json`".into()));
        }
        let positive = [
            ("http.body_limit_bytes", self.http.body_limit_bytes),
            ("http.request_timeout_secs", self.http.request_timeout_secs),
            ("storage.pool_size", self.storage.pool_size),
            ("auth.access_token_ttl_secs", self.auth.access_token_ttl_secs),
            ("auth.refresh_token_ttl_secs", self.auth.refresh_token_ttl_secs),
            ("auth.lockout_threshold", self.auth.lockout_threshold),
            ("auth.token_cache_entries", self.auth.token_cache_entries),
            ("constitution.close_check_interval_ms", self.constitution.close_check_interval_ms),
            ("integrity.checkpoint_interval_ms", self.integrity.checkpoint_interval_ms),
            ("consensus.decision_queue", self.consensus.decision_queue),
            ("consensus.close_check_interval_ms", self.consensus.close_check_interval_ms),
            ("verification.timeout_ms", self.verification.timeout_ms),
            ("verification.max_concurrent", self.verification.max_concurrent),
            ("verification.bounded_max_requests", self.verification.bounded_max_requests),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(fail(key, "must be at least 1".into()));
            }
        }
        if !crate::services::integrity::note::valid_name(&self.integrity.origin) {
            return Err(fail(
                "integrity.origin",
                "must be non-empty, without white space or `+` (it also names the signing key)".into(),
            ));
        }
        if let Err(reason) = crate::services::consensus::LogMode::parse(&self.consensus.decision_log) {
            return Err(fail("consensus.decision_log", reason));
        }
        let id = &self.service_client_id;
        if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(fail("service_client_id", "must be 1-64 letters, digits, `-`, `_` or `.`".into()));
        }
        if self.auth.issuer.is_empty() || self.auth.audience.is_empty() {
            return Err(fail("auth.issuer", "issuer and audience must not be empty".into()));
        }
        for service in ServiceName::ALL {
            let url = self.peer_url(service);
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(fail(&format!("{service}.url"), "must start with http:// or https://".into()));
            }
        }
        Ok(())
    }

    /// The port a service listens on.
    pub fn port(&self, service: ServiceName) -> u16 {
        let port = match service {
            ServiceName::Auth => self.auth.port,
            ServiceName::Constitution => self.constitution.port,
            ServiceName::Integrity => self.integrity.port,
            ServiceName::Verification => self.verification.port,
            ServiceName::Simulation => self.simulation.port,
            ServiceName::Consensus => self.consensus.port,
            ServiceName::Evolution => self.evolution.port,
        };
        // Validated to fit in load().
        u16::try_from(port).unwrap_or(0)
    }

    /// Sets a service's port (for `serve --port`, and tests that want port 0).
    pub fn set_port(&mut self, service: ServiceName, port: u16) {
        let port = u64::from(port);
        match service {
            ServiceName::Auth => self.auth.port = port,
            ServiceName::Constitution => self.constitution.port = port,
            ServiceName::Integrity => self.integrity.port = port,
            ServiceName::Verification => self.verification.port = port,
            ServiceName::Simulation => self.simulation.port = port,
            ServiceName::Consensus => self.consensus.port = port,
            ServiceName::Evolution => self.evolution.port = port,
        }
    }

    /// Where to reach a service that does not run in this process, if configured.
    pub fn peer_url(&self, service: ServiceName) -> Option<&str> {
        let url = match service {
            ServiceName::Auth => &self.auth.url,
            ServiceName::Constitution => &self.constitution.url,
            ServiceName::Integrity => &self.integrity.url,
            ServiceName::Verification => &self.verification.url,
            ServiceName::Simulation => &self.simulation.url,
            ServiceName::Consensus => &self.consensus.url,
            ServiceName::Evolution => &self.evolution.url,
        };
        Some(url.trim_end_matches('/')).filter(|u| !u.is_empty())
    }

    /// The listen address (validated in load()).
    pub fn bind_addr(&self) -> IpAddr {
        self.bind.parse().unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
    }

    /// The storage backend every service opens.
    pub fn storage(&self) -> StorageConfig {
        if self.database_url.is_empty() {
            StorageConfig::Sqlite { data_dir: self.data_dir.clone() }
        } else {
            StorageConfig::Postgres {
                url: self.database_url.clone(),
                pool_size: usize::try_from(self.storage.pool_size).unwrap_or(8),
            }
        }
    }

    /// A configuration from defaults only (tests and tools).
    pub fn defaults_only() -> Config {
        Config::default()
    }
}

fn kind(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    }
}

/// `auth.lockout_threshold` → `ACGS_AUTH_LOCKOUT_THRESHOLD`.
pub fn env_name(key: &str) -> String {
    format!("ACGS_{}", key.replace('.', "_").to_ascii_uppercase())
}

fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn insert_path(root: &mut toml::Table, key: &str, value: toml::Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut table = root;
    for part in parts {
        let entry = table.entry(part.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else { return };
        table = next;
    }
    table.insert(last.to_string(), value);
}

fn read_env(env: &dyn Fn(&str) -> Option<String>, name: &str, secret: bool) -> Result<Option<String>, ConfigError> {
    if let Some(value) = env(name) {
        return Ok(Some(value));
    }
    if secret {
        let file_var = format!("{name}_FILE");
        if let Some(path) = env(&file_var) {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError::File { path: format!("{path} (from {file_var})"), reason: e.to_string() })?;
            return Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()));
        }
    }
    Ok(None)
}

fn parse_env(key: &str, name: &str, default: &toml::Value, raw: &str) -> Result<toml::Value, ConfigError> {
    let fail = |reason: String| ConfigError::Key { key: key.into(), origin: name.into(), reason };
    match default {
        toml::Value::Integer(_) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| fail(format!("expected an integer, got {raw:?}"))),
        toml::Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err(fail(format!("expected true or false, got {raw:?}"))),
        },
        _ => Ok(toml::Value::String(raw.to_string())),
    }
}

fn validate_leaves(merged: &BTreeMap<String, (toml::Value, String)>) -> Result<(), ConfigError> {
    for (key, (value, origin)) in merged {
        if let toml::Value::Integer(n) = value {
            let max = if key.ends_with(".port") { 65_535 } else { i64::MAX };
            if *n < 0 || *n > max {
                return Err(ConfigError::Key {
                    key: key.clone(),
                    origin: origin.clone(),
                    reason: format!("{n} is out of range 0..={max}"),
                });
            }
        }
    }
    Ok(())
}

fn env_names(env: &dyn Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    // The process environment's ACGS_ names, filtered through `env` so tests can hide them.
    std::env::vars().filter(|(k, _)| k.starts_with("ACGS_")).filter_map(|(k, _)| env(&k).map(|v| (k, v))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load_with(env: &[(&str, &str)], file: Option<&Path>) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let get = move |k: &str| map.get(k).cloned();
        let empty = tempfile::tempdir().expect("tempdir");
        let missing = empty.path().join("none.toml");
        let file = file.unwrap_or(&missing);
        let file = if file.exists() { Some(file) } else { None };
        // Without a file, point at nothing so the repository's config/acgs.toml is not read.
        let _ = std::fs::write(&missing, "");
        Config::load(Sources { file: Some(file.unwrap_or(&missing)), env: &get, flags: vec![] }).map(|l| l.config)
    }

    #[test]
    fn defaults_are_valid() {
        let c = load_with(&[], None).expect("defaults load");
        assert_eq!(c.port(ServiceName::Consensus), 8005);
        assert_eq!(c.bind, "127.0.0.1");
    }

    #[test]
    fn env_beats_file_and_guide_alias_loses_to_acgs_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("acgs.toml");
        std::fs::write(&file, "[auth]\nlockout_threshold = 3\naudience = \"from-file\"\n").expect("write");
        let c = load_with(
            &[
                ("ACGS_AUTH_LOCKOUT_THRESHOLD", "7"),
                ("DATABASE_URL", "postgres://guide"),
                ("ACGS_DATABASE_URL", "postgres://acgs"),
            ],
            Some(&file),
        )
        .expect("loads");
        assert_eq!(c.auth.lockout_threshold, 7);
        assert_eq!(c.auth.audience, "from-file");
        assert_eq!(c.database_url, "postgres://acgs");
    }

    #[test]
    fn bad_values_name_key_and_origin() {
        let err = load_with(&[("ACGS_AUTH_LOCKOUT_THRESHOLD", "many")], None).unwrap_err().to_string();
        assert!(err.contains("auth.lockout_threshold") && err.contains("ACGS_AUTH_LOCKOUT_THRESHOLD"), "{err}");
        let err = load_with(&[("ACGS_AUTH_PORT", "70000")], None).unwrap_err().to_string();
        assert!(err.contains("auth.port") && err.contains("out of range"), "{err}");
        let err = load_with(&[("ACGS_BIND", "not-an-ip")], None).unwrap_err().to_string();
        assert!(err.contains("`bind`"), "{err}");
        let err = load_with(&[("ACGS_INTEGRITY_ORIGIN", "two words")], None).unwrap_err().to_string();
        assert!(err.contains("integrity.origin"), "{err}");
        let err = load_with(&[("ACGS_INTEGRITY_CHECKPOINT_INTERVAL_MS", "0")], None).unwrap_err().to_string();
        assert!(err.contains("integrity.checkpoint_interval_ms"), "{err}");
    }

    #[test]
    fn acgs_cvc5_sets_the_solver_below_its_acgs_twin() {
        let c = load_with(&[("ACGS_CVC5", "/opt/cvc5")], None).expect("loads");
        assert_eq!(c.verification.cvc5, "/opt/cvc5");
        let c = load_with(&[("ACGS_CVC5", "/opt/cvc5"), ("ACGS_VERIFICATION_CVC5", "none")], None).expect("loads");
        assert_eq!(c.verification.cvc5, "none");
        let err = load_with(&[("ACGS_VERIFICATION_TIMEOUT_MS", "0")], None).unwrap_err().to_string();
        assert!(err.contains("verification.timeout_ms"), "{err}");
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("acgs.toml");
        std::fs::write(&file, "[auth]\nlockout_treshold = 3\n").expect("write");
        let err = load_with(&[], Some(&file)).unwrap_err().to_string();
        assert!(err.contains("auth.lockout_treshold") && err.contains("unknown key"), "{err}");
        std::fs::write(&file, "bind = 5\n").expect("write");
        let err = load_with(&[], Some(&file)).unwrap_err().to_string();
        assert!(err.contains("expected a string"), "{err}");
    }

    #[test]
    fn secrets_from_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("pw");
        std::fs::write(&secret, "s3cret-value\n").expect("write");
        let path = secret.display().to_string();
        let c = load_with(&[("ACGS_ADMIN_PASSWORD_FILE", &path)], None).expect("loads");
        assert_eq!(c.admin_password, "s3cret-value");
    }
}

#[cfg(test)]
mod documented {
    use super::*;

    /// `config/acgs.toml` documents every key with its default: uncommenting every `# key = value`
    /// line must give exactly the built-in defaults.
    #[test]
    fn config_file_documents_every_key_with_its_default() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/acgs.toml")).expect("read");
        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.split_once(" = ").is_some_and(|(k, _)| !k.contains(' ')) => rest,
                _ if l.starts_with('#') => "",
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let documented: toml::Value = toml::from_str(&uncommented).expect("documented config parses");
        let defaults = toml::Value::try_from(Config::default()).expect("defaults serialise");
        let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
        flatten("", &documented, &mut a);
        flatten("", &defaults, &mut b);
        assert_eq!(a, b);
    }
}
