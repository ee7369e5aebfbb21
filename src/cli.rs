//! The command line: one enum of subcommands (clap). Every flag that is also configuration has an
//! environment twin shown in `--help`; see `config.rs` for the precedence chain.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::kernel::service::ServiceName;

/// acgs: a governance control plane for automated and AI agents.
///
/// A ratified constitution becomes Cedar policies that are verified, simulated, voted on and
/// enforced by a decision API, with every step in a signed, tamper-evident log.
#[derive(Debug, Parser)]
#[command(name = "acgs", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run all seven services in one process on embedded storage (the same as `serve all`).
    ///
    /// Listens on 127.0.0.1:8000-8006; data in ./acgs-data. The first start creates the `admin`
    /// account and says where its password was written.
    Up(RunArgs),
    /// Run one service (auth, constitution, integrity, verification, simulation, consensus,
    /// evolution) or `all`.
    Serve(ServeArgs),
    /// Apply every service's embedded database migrations, then exit.
    Migrate(MigrateArgs),
    /// Write every service's tables and the integrity log (with its signed checkpoint) to one
    /// file; works on a running deployment with --log URL.
    Backup(crate::tools::backup::BackupArgs),
    /// Restore a backup into an empty data dir or PostgreSQL database; refuses a backup whose log
    /// does not verify against its signed checkpoint.
    Restore(crate::tools::backup::RestoreArgs),
    /// Exit 0 only if URL answers 2xx within the time-out (a HEALTHCHECK for scratch images).
    Healthcheck(crate::tools::healthcheck::HealthcheckArgs),
    /// Wait until every HOST:PORT accepts TCP connections.
    WaitFor(crate::tools::wait_for::WaitForArgs),
    /// Create a CA, a server and a client certificate in Docker's ca/ server/ client/ layout.
    Certs(crate::tools::certs::CertsArgs),
    /// The files bundled in the binary (constitution, migrations, deployment files).
    Embedded(crate::tools::export::EmbeddedArgs),
    /// Verify an entry of the integrity log against a signed checkpoint, or audit the whole log.
    ///
    /// One entry: --key KEY --checkpoint FILE --entry FILE --proof FILE (offline), or
    /// --log URL --index N. The whole log: --audit URL [--checkpoint OLD], or --audit-dir DIR.
    /// Exit 0 valid, 1 invalid, 2 bad command line or input file, 3 the log could not be checked.
    Verify(crate::tools::verify::VerifyArgs),
    /// The whole stack in Docker: a Docker-in-Docker daemon of its own (or --mode host),
    /// PostgreSQL, Redis, NATS (or the shims), the seven services, Prometheus and Grafana.
    ///
    /// Without a subcommand it brings the stack up; `status`, `test`, `logs`, `down`, `backup`
    /// and `restore` manage it. Objects carry the label acgs.stack=<name>.
    Bootstrap(Box<crate::bootstrap::BootstrapArgs>),
    /// Images for air-gapped sites: `acgs images save -o FILE` writes every image a stack needs.
    Images {
        #[command(subcommand)]
        command: crate::bootstrap::archive::ImagesCommand,
    },
    /// Infrastructure stand-ins for air-gapped or minimal deployments (not for scale).
    Shim {
        #[command(subcommand)]
        command: ShimCommand,
    },
    /// Print the version and the hash of the embedded genesis constitution.
    Version,
}

/// The shims of `acgs shim`.
#[derive(Debug, Subcommand)]
pub enum ShimCommand {
    /// A NATS core-protocol server (pub/sub, wildcards, queue groups, request/reply, headers);
    /// no JetStream, clustering, TLS or auth, and no state.
    Nats(crate::shim::nats::NatsArgs),
    /// A Redis server (RESP2/RESP3) for the commands acgs and the usual tools need, kept in redb
    /// under --data-dir (or --in-memory); no replication, pub/sub, transactions or scripting.
    Redis(crate::shim::redis::RedisArgs),
}

/// Where configuration comes from, and the keys that have flags.
#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// Configuration file [default: config/acgs.toml if it exists].
    #[arg(long, env = "ACGS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for embedded storage, keys and the admin password file [default: ./acgs-data].
    #[arg(long, env = "ACGS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://…); without it every service uses embedded SQLite.
    #[arg(long, env = "ACGS_DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// NATS URL (nats://host:4222): the bus between the processes of a distributed deployment.
    #[arg(long, env = "ACGS_NATS_URL", value_name = "URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// Redis URL for a distributed deployment (not built yet).
    #[arg(long, env = "ACGS_REDIS_URL", value_name = "URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// A constitution file (TOML) to use instead of the embedded genesis.
    #[arg(long, env = "ACGS_CONSTITUTION_FILE", value_name = "FILE")]
    pub constitution: Option<PathBuf>,
    /// Log filter: error, warn, info, debug, trace, or per-module directives.
    #[arg(long, env = "ACGS_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Address to listen on [default: 127.0.0.1].
    #[arg(long, env = "ACGS_BIND", value_name = "ADDR")]
    pub bind: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// all, auth, constitution, integrity, verification, simulation, consensus or evolution.
    #[arg(value_parser = parse_selection, value_name = "SERVICE")]
    pub service: Selection,
    /// Port for a single service [default: its own, 8000-8006].
    #[arg(long, env = "SERVICE_PORT")]
    pub port: Option<u16>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Only this service [default: all].
    #[arg(long, value_parser = parse_selection, value_name = "SERVICE")]
    pub service: Option<Selection>,
}

/// Which services to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    All,
    One(ServiceName),
}

impl Selection {
    pub fn services(self) -> Vec<ServiceName> {
        match self {
            Selection::All => ServiceName::ALL.to_vec(),
            Selection::One(name) => vec![name],
        }
    }
}

fn parse_selection(s: &str) -> Result<Selection, String> {
    if s == "all" {
        return Ok(Selection::All);
    }
    s.parse::<ServiceName>().map(Selection::One)
}

impl ConfigArgs {
    /// The flags given, as configuration keys (highest precedence).
    pub fn as_flags(&self) -> Vec<(&'static str, toml::Value)> {
        let mut flags = Vec::new();
        let path = |p: &PathBuf| toml::Value::String(p.display().to_string());
        if let Some(v) = &self.data_dir {
            flags.push(("data_dir", path(v)));
        }
        if let Some(v) = &self.database_url {
            flags.push(("database_url", toml::Value::String(v.clone())));
        }
        if let Some(v) = &self.nats_url {
            flags.push(("nats_url", toml::Value::String(v.clone())));
        }
        if let Some(v) = &self.redis_url {
            flags.push(("redis_url", toml::Value::String(v.clone())));
        }
        if let Some(v) = &self.constitution {
            flags.push(("constitution_file", path(v)));
        }
        if let Some(v) = &self.log_level {
            flags.push(("log.level", toml::Value::String(v.clone())));
        }
        flags
    }
}
