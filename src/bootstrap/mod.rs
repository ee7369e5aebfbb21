//! `acgs bootstrap`: the whole stack — PostgreSQL, Redis, NATS (or the shims), the seven
//! services, Prometheus and Grafana — inside a Docker-in-Docker daemon of its own, reached over
//! mutual TLS, or directly on the host's daemon with `--mode host` (DESIGN.md §6).
//!
//! Layout: [`plan`] (pure: which objects, with which settings), [`engine`] (bollard: doing it),
//! [`image`] (the acgs image from the running executable), [`state`] (stack.json, .env, certs
//! on disk), `up` (the bootstrap itself, and restore), `manage` (status, logs, down, backup),
//! `smoke` (`bootstrap test`), `progress` (the display), [`archive`] (`acgs images save` and
//! `--image-archive`).

pub mod archive;
pub mod engine;
pub mod image;
mod manage;
pub mod plan;
mod progress;
mod smoke;
pub mod state;
mod up;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::embedded::EMBEDDED;
use crate::tools::parse_duration;
use plan::{Images, Infra, Mode};

/// Bring up (or manage) a stack. `--name` and `--dir` go with every subcommand; the other
/// flags are how `bootstrap` (and `bootstrap restore`) bring a stack up.
#[derive(Debug, clap::Args)]
pub struct BootstrapArgs {
    #[command(subcommand)]
    pub command: Option<BootstrapCommand>,
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub up: UpArgs,
}

/// What to do with an existing stack.
#[derive(Debug, clap::Subcommand)]
pub enum BootstrapCommand {
    /// A table of the stack's containers: state, health, address.
    Status,
    /// Prove the running stack works end to end through 127.0.0.1: log in, pass an amendment and
    /// a policy proposal, get a decision, verify its inclusion proof. It records its own users,
    /// amendment and policy set: run it on a new stack.
    Test,
    /// A service's output (all containers' last lines without SERVICE).
    Logs(LogsArgs),
    /// Stop and remove the stack's containers and networks; data volumes stay unless --volumes.
    Down(DownArgs),
    /// Write a backup of the running stack (`acgs backup` inside it) to a file.
    Backup(BackupArgs),
    /// Bootstrap a new stack from a backup (as `acgs bootstrap`, restoring before the services
    /// start).
    Restore(Box<RestoreArgs>),
}

/// Which stack.
#[derive(Debug, Clone, clap::Args)]
pub struct StackArgs {
    /// The stack's name: every container, network and volume carries `acgs.stack=<name>`.
    #[arg(long, global = true, env = "ACGS_BOOTSTRAP_NAME", default_value = "acgs", value_name = "STACK")]
    pub name: String,
    /// Where stack state (stack.json, .env with the generated secrets, certificates) is kept.
    #[arg(long, global = true, env = "ACGS_BOOTSTRAP_DIR", default_value = "./acgs-bootstrap", value_name = "DIR")]
    pub dir: PathBuf,
}

/// Which images (shared by `acgs bootstrap` and `acgs images save`).
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct ImageArgs {
    /// Infrastructure from images, or `shim`: `acgs shim nats`/`redis` and SQLite per service
    /// (with --no-monitoring, no third-party image but the dind one).
    #[arg(long, env = "ACGS_BOOTSTRAP_INFRA", value_enum, default_value = "images")]
    pub infra: Infra,
    /// The inner daemon's image [default: embedded/deploy/images.toml].
    #[arg(long, env = "ACGS_BOOTSTRAP_DIND_IMAGE", value_name = "IMAGE")]
    pub dind_image: Option<String>,
    #[arg(long, env = "ACGS_BOOTSTRAP_POSTGRES_IMAGE", value_name = "IMAGE")]
    pub postgres_image: Option<String>,
    #[arg(long, env = "ACGS_BOOTSTRAP_REDIS_IMAGE", value_name = "IMAGE")]
    pub redis_image: Option<String>,
    #[arg(long, env = "ACGS_BOOTSTRAP_NATS_IMAGE", value_name = "IMAGE")]
    pub nats_image: Option<String>,
    #[arg(long, env = "ACGS_BOOTSTRAP_PROMETHEUS_IMAGE", value_name = "IMAGE")]
    pub prometheus_image: Option<String>,
    #[arg(long, env = "ACGS_BOOTSTRAP_GRAFANA_IMAGE", value_name = "IMAGE")]
    pub grafana_image: Option<String>,
    /// An image with `cvc5` (1.3+) on PATH to run the verification service on; without one,
    /// verification is bounded and no policy proposal can be voted into force.
    #[arg(long, env = "ACGS_BOOTSTRAP_SOLVER_IMAGE", value_name = "IMAGE")]
    pub solver_image: Option<String>,
    /// No Prometheus and no Grafana.
    #[arg(long, env = "ACGS_BOOTSTRAP_NO_MONITORING")]
    pub no_monitoring: bool,
    /// Prometheus but no Grafana.
    #[arg(long, env = "ACGS_BOOTSTRAP_NO_GRAFANA")]
    pub no_grafana: bool,
}

impl ImageArgs {
    /// The images, defaults from embedded/deploy/images.toml; `acgs` is filled in later.
    pub fn images(&self) -> Result<Images> {
        let defaults: toml::Table = EMBEDDED
            .get_file("deploy/images.toml")
            .and_then(|f| f.contents_utf8())
            .context("embedded/deploy/images.toml is missing")?
            .parse()
            .context("embedded/deploy/images.toml")?;
        let pick = |flag: &Option<String>, key: &str| -> Result<String> {
            match flag {
                Some(image) if !image.trim().is_empty() => Ok(image.trim().to_string()),
                _ => defaults
                    .get(key)
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .with_context(|| format!("embedded/deploy/images.toml has no {key}")),
            }
        };
        Ok(Images {
            acgs: String::new(),
            dind: pick(&self.dind_image, "dind")?,
            postgres: pick(&self.postgres_image, "postgres")?,
            redis: pick(&self.redis_image, "redis")?,
            nats: pick(&self.nats_image, "nats")?,
            prometheus: pick(&self.prometheus_image, "prometheus")?,
            grafana: pick(&self.grafana_image, "grafana")?,
            solver: self.solver_image.clone().filter(|s| !s.trim().is_empty()),
        })
    }

    pub fn prometheus(&self) -> bool {
        !self.no_monitoring
    }

    pub fn grafana(&self) -> bool {
        !self.no_monitoring && !self.no_grafana
    }

    /// The third-party images this selection runs, by role (the inner daemon's included when
    /// `with_dind`).
    pub fn third_party(&self, images: &Images, with_dind: bool) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if with_dind {
            out.push(("dind", images.dind.clone()));
        }
        if self.infra == Infra::Images {
            out.extend([
                ("postgres", images.postgres.clone()),
                ("redis", images.redis.clone()),
                ("nats", images.nats.clone()),
            ]);
        }
        if self.prometheus() {
            out.push(("prometheus", images.prometheus.clone()));
        }
        if self.grafana() {
            out.push(("grafana", images.grafana.clone()));
        }
        if let Some(solver) = &images.solver {
            out.push(("solver", solver.clone()));
        }
        out
    }
}

/// How to bring a stack up.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct UpArgs {
    /// `dind`: a Docker-in-Docker daemon of the stack's own, reached over mutual TLS; `host`: the
    /// given daemon directly.
    #[arg(long, env = "ACGS_BOOTSTRAP_MODE", value_enum, default_value = "dind")]
    pub mode: Mode,
    #[command(flatten)]
    pub images: ImageArgs,
    /// Load the images from this archive (written by `acgs images save`) before anything else.
    #[arg(long, env = "ACGS_BOOTSTRAP_IMAGE_ARCHIVE", value_name = "FILE")]
    pub image_archive: Option<PathBuf>,
    /// The acgs binary to build the image from [default: the running executable].
    #[arg(long, env = "ACGS_BOOTSTRAP_ACGS_BINARY", value_name = "FILE")]
    pub acgs_binary: Option<PathBuf>,
    /// Give up when not every service is ready this long after the containers started; units
    /// ms, s, m, h.
    #[arg(long, env = "ACGS_BOOTSTRAP_TIMEOUT", default_value = "180s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,
    /// First of the seven services' ports on 127.0.0.1 (auth; consensus is +5); 0: any free ports.
    #[arg(long, env = "ACGS_BOOTSTRAP_PORT_BASE", default_value_t = 8000, value_name = "PORT")]
    pub port_base: u16,
    /// Prometheus on 127.0.0.1 (0: any free port).
    #[arg(long, env = "ACGS_BOOTSTRAP_PROMETHEUS_PORT", default_value_t = 9090, value_name = "PORT")]
    pub prometheus_port: u16,
    /// Grafana on 127.0.0.1 (0: any free port).
    #[arg(long, env = "ACGS_BOOTSTRAP_GRAFANA_PORT", default_value_t = 3000, value_name = "PORT")]
    pub grafana_port: u16,
    /// The inner daemon's TLS port on 127.0.0.1 (0: any free port).
    #[arg(long, env = "ACGS_BOOTSTRAP_DIND_PORT", default_value_t = 2376, value_name = "PORT")]
    pub dind_port: u16,
}

impl UpArgs {
    /// The values with no flag given: the defaults, or their `ACGS_BOOTSTRAP_*` variables.
    fn unset() -> Result<UpArgs, String> {
        #[derive(clap::Parser)]
        struct Unset {
            #[command(flatten)]
            up: UpArgs,
        }
        <Unset as clap::Parser>::try_parse_from(["acgs bootstrap"]).map(|u| u.up).map_err(|e| e.to_string())
    }
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// A part of the stack: auth, …, evolution, postgres, redis, nats, prometheus, grafana, dind.
    pub service: Option<String>,
    /// Keep printing as lines come.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only the last N lines of each container.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// Also remove the data volumes and the stack's state directory (secrets, certificates).
    #[arg(long)]
    pub volumes: bool,
}

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The file to write (refused if it exists).
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup (from `acgs bootstrap backup` or `acgs backup`).
    #[arg(long = "from", value_name = "FILE")]
    pub input: PathBuf,
    /// The log's verifier key the backup's checkpoint must verify with (as
    /// /api/v1/log/public-key serves it) [default: the key in the backup].
    #[arg(long, env = "ACGS_BOOTSTRAP_RESTORE_KEY", value_name = "KEY")]
    pub key: Option<String>,
    #[command(flatten)]
    pub up: UpArgs,
}

/// The caller's mistakes that clap cannot see, as one line.
pub fn check(args: &BootstrapArgs) -> Result<(), String> {
    if !plan::valid_stack_name(&args.stack.name) {
        return Err(format!(
            "--name {:?}: 1-32 lowercase letters, digits, `-` or `_`, starting with a letter or digit",
            args.stack.name
        ));
    }
    // clap accepts the flags that bring a stack up before any subcommand; they belong to
    // `bootstrap` itself (and come after `restore`), so elsewhere they would be dropped silently.
    if args.command.is_some() && args.up != UpArgs::unset()? {
        return Err(match args.command {
            Some(BootstrapCommand::Restore(_)) => {
                "the flags that bring the stack up go after `restore`: acgs bootstrap restore --from FILE --mode …"
            }
            _ => "the flags that bring a stack up (--mode, --infra, the images, ports, --timeout) go with `acgs bootstrap` and `acgs bootstrap restore` only",
        }
        .to_string());
    }
    let up = match &args.command {
        None => &args.up,
        Some(BootstrapCommand::Restore(restore)) => &restore.up,
        Some(_) => return Ok(()),
    };
    let mut requested: Vec<(&str, u16)> = Vec::new();
    if up.port_base != 0 {
        if up.port_base > u16::MAX - 6 {
            return Err(format!("--port-base {}: the seven services need it and the six ports above it", up.port_base));
        }
        requested.extend((0..7).map(|i| ("--port-base", up.port_base + i)));
    }
    if up.images.prometheus() {
        requested.push(("--prometheus-port", up.prometheus_port));
    }
    if up.images.grafana() {
        requested.push(("--grafana-port", up.grafana_port));
    }
    if up.mode == Mode::Dind {
        requested.push(("--dind-port", up.dind_port));
    }
    requested.retain(|(_, port)| *port != 0);
    for (i, (flag, port)) in requested.iter().enumerate() {
        if let Some((other, _)) = requested[..i].iter().find(|(_, p)| p == port) {
            return Err(format!("{flag} and {other} both ask for port {port}"));
        }
    }
    Ok(())
}

/// Runs `acgs bootstrap …` (after [`check`]).
pub async fn run(args: BootstrapArgs) -> Result<std::process::ExitCode> {
    match args.command {
        None => up::up(&args.stack, &args.up, None).await.map(|_| std::process::ExitCode::SUCCESS),
        Some(BootstrapCommand::Restore(restore)) => {
            let from = up::Restore { from: &restore.input, key: restore.key.as_deref() };
            up::up(&args.stack, &restore.up, Some(&from)).await.map(|_| std::process::ExitCode::SUCCESS)
        }
        Some(BootstrapCommand::Status) => manage::status(&args.stack).await,
        Some(BootstrapCommand::Test) => smoke::run(&args.stack).await,
        Some(BootstrapCommand::Logs(logs)) => manage::logs(&args.stack, &logs).await,
        Some(BootstrapCommand::Down(down)) => manage::down(&args.stack, &down).await,
        Some(BootstrapCommand::Backup(backup)) => manage::backup(&args.stack, &backup).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::check;
    use crate::cli::{Cli, Command};

    /// `check` on `acgs bootstrap ARGS`.
    fn checked(args: &[&str]) -> Result<(), String> {
        let argv = ["acgs", "bootstrap"].iter().chain(args);
        let Command::Bootstrap(bootstrap) = Cli::try_parse_from(argv).expect("parses").command else {
            panic!("not a bootstrap command");
        };
        check(&bootstrap)
    }

    #[test]
    fn the_callers_mistakes_are_one_line() {
        assert!(checked(&[]).is_ok());
        assert!(checked(&["--name", "s1", "--mode", "host", "--port-base", "0"]).is_ok());
        assert!(checked(&["--name", "s1", "restore", "--from", "b.json", "--mode", "host"]).is_ok());
        assert!(checked(&["--name", "s1", "status"]).is_ok());
        assert!(checked(&["status", "--name", "s1", "--dir", "/tmp/x"]).is_ok());

        let err = checked(&["--mode", "host", "restore", "--from", "b.json"]).unwrap_err();
        assert!(err.contains("go after `restore`"), "{err}");
        let err = checked(&["--infra", "shim", "down"]).unwrap_err();
        assert!(err.contains("only"), "{err}");
        let err = checked(&["--name", "Bad Name"]).unwrap_err();
        assert!(err.starts_with("--name"), "{err}");
        let err = checked(&["--port-base", "65530"]).unwrap_err();
        assert!(err.contains("six ports above"), "{err}");
        let err = checked(&["--port-base", "9085", "--prometheus-port", "9090"]).unwrap_err();
        assert_eq!(err, "--prometheus-port and --port-base both ask for port 9090");
    }
}
