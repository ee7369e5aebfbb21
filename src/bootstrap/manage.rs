//! `acgs bootstrap status | logs | down | backup`: a stack found by its label.
//!
//! The stack is looked up on the local daemon by `acgs.stack=<name>`; if its inner daemon's
//! container runs there, the stack's own containers are looked up on that daemon over mutual TLS
//! with the certificates in the stack's directory. Nothing here needs stack.json except the
//! endpoints in the status table and `backup` (which rebuilds the stack's plan from it), so
//! `down` works after a half-finished bootstrap too.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bollard::models::ContainerSummary;

use super::engine::Engine;
use super::plan::{self, MonitoringFiles, Ports, ROLE_LABEL, StackSpec};
use super::state::{StackDir, StackState};
use super::{BackupArgs, DownArgs, LogsArgs, StackArgs};

/// The daemons of a stack.
pub(super) struct Stack {
    pub name: String,
    pub outer: Engine,
    /// The inner daemon, when the stack runs in one and it answers.
    pub inner: Option<Engine>,
    /// The outer daemon has the inner daemon's container (running or not).
    pub dind: bool,
    pub dir: StackDir,
    pub state: Option<StackState>,
}

impl Stack {
    pub async fn find(args: &StackArgs) -> Result<Stack> {
        let outer = Engine::local().await?;
        let dir = StackDir::new(&args.dir, &args.name);
        let state = dir.load()?;
        let dind_name = format!("{}-dind", args.name);
        let outer_containers = outer.containers(&args.name).await?;
        let dind = outer_containers.iter().any(|c| role(c) == Some("dind"));
        let running = outer_containers.iter().any(|c| role(c) == Some("dind") && is_running(c));
        let inner = if running {
            let port = outer.host_port(&dind_name, plan::DIND_PORT).await?;
            let reached = match Engine::tls(port, &dir.certs()) {
                Ok(inner) => inner.ping().await.map(|()| inner),
                Err(e) => Err(e),
            };
            match reached {
                Ok(inner) => Some(inner.negotiate().await?),
                Err(e) => {
                    // Without it, `down` still removes the inner daemon's container (and with
                    // it everything inside); status and logs show what the outer daemon has.
                    eprintln!("acgs: warning: cannot reach the inner daemon of stack {}: {e:#}", args.name);
                    None
                }
            }
        } else {
            None
        };
        Ok(Stack { name: args.name.clone(), outer, inner, dind, dir, state })
    }

    /// The daemon that runs the stack's containers.
    pub fn target(&self) -> &Engine {
        self.inner.as_ref().unwrap_or(&self.outer)
    }

    /// Every container: the stack's own, then the inner daemon's container.
    async fn all_containers(&self) -> Result<Vec<(Engine, ContainerSummary)>> {
        let mut out = Vec::new();
        if let Some(inner) = &self.inner {
            out.extend(inner.containers(&self.name).await?.into_iter().map(|c| (inner.clone(), c)));
        }
        out.extend(self.outer.containers(&self.name).await?.into_iter().map(|c| (self.outer.clone(), c)));
        Ok(out)
    }
}

fn role(c: &ContainerSummary) -> Option<&str> {
    c.labels.as_ref().and_then(|l| l.get(ROLE_LABEL)).map(String::as_str)
}

pub(super) fn is_running(c: &ContainerSummary) -> bool {
    c.state.as_ref().is_some_and(|s| s.to_string() == "running")
}

fn name_of(c: &ContainerSummary) -> String {
    c.names.as_ref().and_then(|n| n.first()).map(|n| n.trim_start_matches('/').to_string()).unwrap_or_default()
}

/// Start order, so that `down` can go the other way: infrastructure, services, monitoring.
fn rank(role: &str) -> usize {
    match role {
        "dind" => 0,
        "postgres" | "redis" | "nats" => 1,
        "prometheus" | "grafana" => 3,
        _ => 2,
    }
}

/// `bootstrap status`: a table; exit 0 only when every container runs and none is unhealthy (a
/// health check still starting is not a failure).
pub async fn status(args: &StackArgs) -> Result<ExitCode> {
    let stack = Stack::find(args).await?;
    let mut containers = stack.all_containers().await?;
    if containers.is_empty() {
        println!("stack {}: no containers (not bootstrapped, or down)", args.name);
        return Ok(ExitCode::FAILURE);
    }
    containers.sort_by_key(|(_, c)| (rank(role(c).unwrap_or_default()), role(c).unwrap_or_default().to_string()));
    let endpoints = stack.state.as_ref().map(|s| s.endpoints.clone()).unwrap_or_default();
    println!("{:<14} {:<10} {:<32} {:<32} IMAGE", "PART", "STATE", "STATUS", "ADDRESS");
    let mut all_well = true;
    for (_, c) in &containers {
        let part = role(c).unwrap_or("?");
        let state = c.state.as_ref().map(|s| s.to_string()).unwrap_or_default();
        let status = c.status.clone().unwrap_or_default();
        let address = match (part, &stack.state) {
            ("dind", Some(s)) => s.dind_port.map(|p| format!("tcp://127.0.0.1:{p} (TLS)")).unwrap_or_default(),
            _ => endpoints.get(part).cloned().unwrap_or_else(|| "-".into()),
        };
        all_well &= is_running(c) && !status.contains("unhealthy");
        println!("{part:<14} {state:<10} {status:<32} {address:<32} {}", c.image.clone().unwrap_or_default());
    }
    if stack.dind && stack.inner.is_none() {
        println!("(the inner daemon is not running or not answering: its containers are not listed)");
        all_well = false;
    }
    Ok(if all_well { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `bootstrap logs [SERVICE] [--follow] [--tail N]`.
pub async fn logs(args: &StackArgs, logs: &LogsArgs) -> Result<ExitCode> {
    let stack = Stack::find(args).await?;
    let containers = stack.all_containers().await?;
    let mut out = std::io::stdout();
    match &logs.service {
        Some(part) => {
            let Some((engine, c)) = containers.iter().find(|(_, c)| role(c) == Some(part.as_str())) else {
                let parts: Vec<&str> = containers.iter().filter_map(|(_, c)| role(c)).collect();
                bail!("stack {} has no {part:?} (it has: {})", args.name, parts.join(", "));
            };
            engine.logs(&name_of(c), logs.tail, logs.follow, &mut out).await?;
        }
        None => {
            anyhow::ensure!(!logs.follow, "--follow needs a SERVICE (one container at a time)");
            for (engine, c) in &containers {
                writeln!(out, "==> {} <==", name_of(c))?;
                engine.logs(&name_of(c), Some(logs.tail.unwrap_or(20)), false, &mut out).await?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `bootstrap down [--volumes]`: every labelled container and network (services before the
/// infrastructure they use, the inner daemon last); volumes and the state directory only with
/// `--volumes`. A stack that is already down is fine.
pub async fn down(args: &StackArgs, down: &DownArgs) -> Result<ExitCode> {
    let stack = Stack::find(args).await?;
    let mut removed = Vec::new();
    let mut engines = Vec::new();
    if let Some(inner) = &stack.inner {
        engines.push(inner.clone());
    }
    engines.push(stack.outer.clone());
    for engine in &engines {
        let mut containers = engine.containers(&args.name).await?;
        containers.sort_by_key(|c| std::cmp::Reverse(rank(role(c).unwrap_or_default())));
        for c in containers {
            let name = name_of(&c);
            engine.remove_container(&name, Duration::from_secs(10)).await?;
            removed.push(format!("container {name}"));
        }
        for network in engine.networks(&args.name).await? {
            engine.remove_network(&network).await?;
            removed.push(format!("network {network}"));
        }
        if down.volumes {
            for volume in engine.volumes(&args.name).await? {
                engine.remove_volume(&volume).await?;
                removed.push(format!("volume {volume}"));
            }
        }
    }
    if down.volumes {
        stack.dir.remove()?;
    } else {
        stack.dir.forget()?;
    }
    if removed.is_empty() {
        println!("stack {}: nothing to remove", args.name);
    } else {
        println!("stack {}: removed {}", args.name, removed.join(", "));
        if !down.volumes {
            let kept = stack.outer.volumes(&args.name).await.unwrap_or_default();
            if !kept.is_empty() {
                println!("kept data volumes: {} (remove them with `down --volumes`)", kept.join(", "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `bootstrap backup -o FILE`: `acgs backup` in a one-off container on the stack's network
/// (PostgreSQL and the running integrity service), copied out to FILE (0600).
pub async fn backup(args: &StackArgs, backup: &BackupArgs) -> Result<ExitCode> {
    use std::os::unix::fs::OpenOptionsExt;
    let stack = Stack::find(args).await?;
    let Some(state) = &stack.state else {
        bail!("stack {} is not up (no stack.json in {})", args.name, stack.dir.path.display());
    };
    anyhow::ensure!(
        state.infra == plan::Infra::Images,
        "bootstrap backup needs a stack on PostgreSQL (--infra images); with the shims, back up each service's \
         volume instead"
    );
    let secrets = stack.dir.load_secrets()?.context("the stack's .env is missing")?;
    let spec = StackSpec {
        name: args.name.clone(),
        mode: state.mode,
        infra: state.infra,
        images: state.images.clone(),
        prometheus: false,
        grafana: false,
        ports: Ports { services: 0, prometheus: 0, grafana: 0, dind: 0 },
        secrets,
    };
    let plan = plan::plan(&spec, &MonitoringFiles::default());
    let args_of_job = ["backup", "-o", "/tmp/backup.acgs", "--log", "http://integrity:8002"];
    let mut job = plan::job(&plan, &args.name, "backup", &args_of_job).context("the plan has no integrity service")?;
    // Read the log's signing key from the integrity service's volume, never write to it; the
    // backup goes to the container's own /tmp (not a tmpfs: it must outlive the process).
    job.mounts = vec![plan::MountSpec::Volume {
        name: format!("{}-integrity", args.name),
        target: "/data".into(),
        read_only: true,
    }];
    if stack.dind && stack.inner.is_none() {
        bail!("the inner daemon of stack {} is not reachable: nothing to back up", args.name);
    }
    if backup.output.exists() {
        bail!("{} exists: a backup never overwrites a file", backup.output.display());
    }
    let bytes = super::up::run_job(stack.target(), &job, &plan.network, Some("/tmp/backup.acgs"))
        .await?
        .context("the backup job gave no file")?;
    // Written aside and renamed: a file at the output path is always a whole backup.
    let partial = backup.output.with_extension("partial");
    let written = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&partial)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        std::fs::hard_link(&partial, &backup.output)?;
        std::fs::remove_file(&partial)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e).with_context(|| format!("cannot write {}", backup.output.display()));
    }
    println!("stack {}: backup written to {} ({} bytes)", args.name, backup.output.display(), bytes.len());
    Ok(ExitCode::SUCCESS)
}
