//! `acgs bootstrap` and `acgs bootstrap restore`: the steps of DESIGN.md §6, in order.
//!
//! 1. Preflight: the daemon answers, the stack is not already running, the ports are free, the
//!    daemon's disk has room; an `--image-archive` is loaded.
//! 2. PKI (dind): a CA, the inner daemon's server certificate, a client certificate.
//! 3. The inner daemon (dind): `--privileged`, or the explicit capability set where that is
//!    refused; TLS on 2376 and the stack's ports published on 127.0.0.1; reached with bollard
//!    over mutual TLS.
//! 4. Images on the daemon that runs the stack: present, copied from the outer daemon, or
//!    pulled — else an error naming the image; the acgs image built from this executable.
//! 5. Network, volumes, containers: infrastructure (waited for until healthy), a restore if
//!    asked, the seven services, monitoring.
//! 6. Every service's `/ready` (and Prometheus' and Grafana's) through 127.0.0.1, under one
//!    time-out; then stack.json and a table.
//!
//! A failure removes the containers and networks this run created — never a volume — and says
//! what failed and what was kept.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;

use super::engine::Engine;
use super::image::{self, Binary};
use super::plan::{
    self, ContainerSpec, DATA_LABEL, DindPrivilege, FileSpec, Infra, Kind, Mode, MonitoringFiles, Ports, StackSpec,
};
use super::progress::Progress;
use super::state::{StackDir, StackState};
use super::{StackArgs, UpArgs, archive};
use crate::embedded::EMBEDDED;
use crate::kernel::service::ServiceName;
use crate::tools::certs;

/// Free space the daemon's disk must have (images, volumes).
const MIN_FREE_BYTES: u64 = 2 << 30;
/// How long the inner daemon may take to answer after its container started.
const DIND_START: Duration = Duration::from_secs(90);
/// The capability the sandboxes of DESIGN.md §8 lack, which makes `--privileged` fail.
const MISSING_CAPABILITY: &str = "SYS_RESOURCE";

/// A backup to restore into the new stack, and the log key it must verify with (else its own).
pub struct Restore<'a> {
    pub from: &'a Path,
    pub key: Option<&'a str>,
}

/// What this run created, to remove on failure.
#[derive(Default)]
struct Created {
    /// On the outer daemon (the inner daemon's container and network).
    outer_containers: Vec<String>,
    outer_networks: Vec<String>,
    /// On the daemon that runs the stack (host mode only: in dind mode the inner daemon goes).
    containers: Vec<String>,
    networks: Vec<String>,
}

/// Brings the stack up (restoring `restore` into it first, if given) and returns its state.
pub async fn up(stack: &StackArgs, args: &UpArgs, restore: Option<&Restore<'_>>) -> Result<StackState> {
    let mut progress = Progress::new();
    let dir = StackDir::new(&stack.dir, &stack.name);

    progress.step("preflight");
    let outer = match Engine::local().await {
        Ok(engine) => engine,
        Err(e) => {
            progress.fail();
            return Err(e);
        }
    };
    if let Err(e) = preflight(&outer, stack, args, restore).await {
        progress.fail();
        return Err(e);
    }
    if let Some(archive) = &args.image_archive {
        progress.step(format!("loading {}", archive.display()));
        if let Err(e) = archive::load(&outer, archive).await {
            progress.fail();
            return Err(e);
        }
    }
    let binary = Binary::load(args.acgs_binary.as_deref())?;
    let mut images = args.images.images()?;
    images.acgs = binary.tag();
    dir.create()?;
    let secrets = dir.secrets()?;
    let spec = StackSpec {
        name: stack.name.clone(),
        mode: args.mode,
        infra: args.images.infra,
        images,
        prometheus: args.images.prometheus(),
        grafana: args.images.grafana(),
        ports: Ports {
            services: args.port_base,
            prometheus: args.prometheus_port,
            grafana: args.grafana_port,
            dind: args.dind_port,
        },
        secrets,
    };

    let mut created = Created::default();
    match bring_up(&outer, &dir, &spec, args, &binary, restore, &mut progress, &mut created).await {
        Ok(state) => {
            progress.finish();
            dir.save(&state)?;
            print_table(&state);
            eprintln!(
                "acgs: stack {} ready in {:.1} s; admin password and other secrets in {} (0600)",
                state.name,
                state.ready_after_secs,
                dir.path.join(".env").display()
            );
            if let Some(Restore { from: backup, .. }) = restore {
                eprintln!(
                    "acgs: restored from {}: every account keeps the password it had there, `admin` too (the \
                     admin password in .env is this stack's own, unused by the restored account)",
                    backup.display()
                );
            }
            Ok(state)
        }
        Err(e) => {
            progress.fail();
            let removed = clean_up(&outer, &dir, &spec, &created).await;
            eprintln!("acgs: bootstrap of stack {} failed; {removed}", spec.name);
            Err(e)
        }
    }
}

async fn preflight(outer: &Engine, stack: &StackArgs, args: &UpArgs, restore: Option<&Restore<'_>>) -> Result<()> {
    let running: Vec<String> = outer
        .containers(&stack.name)
        .await?
        .into_iter()
        .filter(super::manage::is_running)
        .filter_map(|c| c.names.and_then(|n| n.first().cloned()))
        .collect();
    if !running.is_empty() {
        bail!(
            "stack {} is already running on {} ({}): see `acgs bootstrap status`, or `acgs bootstrap down` first",
            stack.name,
            outer.address,
            running.join(", ")
        );
    }
    let stack_ports = Ports { services: args.port_base, prometheus: 0, grafana: 0, dind: 0 };
    let mut ports: Vec<(&str, u16)> =
        ServiceName::ALL.iter().map(|s| ("--port-base", stack_ports.service(*s))).collect();
    if args.images.prometheus() {
        ports.push(("--prometheus-port", args.prometheus_port));
    }
    if args.images.grafana() {
        ports.push(("--grafana-port", args.grafana_port));
    }
    if args.mode == Mode::Dind {
        ports.push(("--dind-port", args.dind_port));
    }
    for (flag, port) in ports.into_iter().filter(|(_, p)| *p != 0) {
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            bail!("127.0.0.1:{port} is in use: choose another with {flag} (0 lets Docker pick a free one)");
        }
    }
    let dir = StackDir::new(&stack.dir, &stack.name);
    if dir.load_secrets()?.is_none() {
        let volumes = outer.volumes(&stack.name).await?;
        anyhow::ensure!(
            volumes.is_empty(),
            "stack {} has data volumes ({}) but its secrets are not in {}: run from where it was bootstrapped \
             (--dir), or remove the volumes with `acgs bootstrap down --volumes`",
            stack.name,
            volumes.join(", "),
            dir.path.display()
        );
    }
    if let Some(Restore { from: path, .. }) = restore {
        std::fs::metadata(path).with_context(|| format!("cannot read the backup {}", path.display()))?;
        anyhow::ensure!(
            args.images.infra == Infra::Images,
            "bootstrap restore needs --infra images: the backup goes into the stack's PostgreSQL (with the shims \
             each service keeps its tables in SQLite on a volume of its own)"
        );
        let volumes = outer.volumes(&stack.name).await?;
        anyhow::ensure!(
            volumes.is_empty(),
            "bootstrap restore needs a new stack, and stack {} has data volumes ({}): restore under another --name, \
             or remove them with `acgs bootstrap down --volumes`",
            stack.name,
            volumes.join(", ")
        );
    }
    disk_space(outer).await
}

/// Refuses a local daemon whose data directory has less than [`MIN_FREE_BYTES`] free.
async fn disk_space(outer: &Engine) -> Result<()> {
    let info = outer.docker.info().await.with_context(|| format!("asking {} for its data directory", outer.address))?;
    let Some(root) = info.docker_root_dir else { return Ok(()) };
    if !outer.address.starts_with("unix://") {
        return Ok(()); // a remote daemon's disk cannot be seen from here
    }
    match rustix::fs::statvfs(root.as_str()) {
        Ok(stat) => {
            let free = stat.f_bavail.saturating_mul(stat.f_frsize);
            anyhow::ensure!(
                free >= MIN_FREE_BYTES,
                "only {} MiB free under {root} (the Docker data directory); the stack needs at least {} MiB",
                free >> 20,
                MIN_FREE_BYTES >> 20
            );
            Ok(())
        }
        Err(_) => Ok(()), // not visible here (another mount namespace): the daemon will say
    }
}

#[allow(clippy::too_many_arguments)]
async fn bring_up(
    outer: &Engine,
    dir: &StackDir,
    spec: &StackSpec,
    args: &UpArgs,
    binary: &Binary,
    restore: Option<&Restore<'_>>,
    progress: &mut Progress,
    created: &mut Created,
) -> Result<StackState> {
    let monitoring = if spec.prometheus || spec.grafana { monitoring_files()? } else { MonitoringFiles::default() };
    let plan = plan::plan(spec, &monitoring);

    // 2–3. The daemon that runs the stack.
    let (target, dind_port) = match spec.mode {
        Mode::Host => (outer.clone(), None),
        Mode::Dind => {
            progress.step("certificates for the inner daemon");
            let certs = dir.certs();
            if certs::existing_layout_file(&certs).is_none() {
                let names = vec![format!("{}-dind", spec.name), "dind".to_string()];
                let pki = certs::generate(&certs::PkiOptions { names, ..Default::default() })?;
                certs::write_layout(&certs, &pki, false)?;
            }
            progress.step(format!("inner daemon ({})", spec.images.dind));
            let (inner, port) = start_dind(outer, spec, &plan, &certs, progress, created).await?;
            (inner, Some(port))
        }
    };

    // 4. Images.
    progress.step("images");
    let source = (spec.mode == Mode::Dind).then_some(outer);
    for (role, image) in args.images.third_party(&spec.images, false) {
        progress.detail(&format!("{role}: {image}"));
        ensure_image(&target, source, &image).await?;
    }
    progress.detail(&format!("building {}", spec.images.acgs));
    if !target.has_image(&spec.images.acgs).await? {
        let labels = HashMap::from([("org.opencontainers.image.title".to_string(), "acgs".to_string())]);
        target.build(&spec.images.acgs, image::context(binary)?, &labels).await?;
    }
    if let Some(solver) = &spec.images.solver {
        let tag = plan::solver_image_tag(&spec.images.acgs, solver);
        if !target.has_image(&tag).await? {
            target.build(&tag, image::solver_context(binary, solver)?, &HashMap::new()).await?;
        }
    }

    // 5. Objects.
    progress.step("network, volumes and containers");
    for leftover in target.containers(&spec.name).await? {
        if let Some(name) = leftover.names.and_then(|n| n.first().cloned()) {
            target.remove_container(name.trim_start_matches('/'), Duration::from_secs(10)).await?;
        }
    }
    if target.ensure_network(&plan.network, hash_map(plan::labels(&spec.name, "network"))).await? {
        created.networks.push(plan.network.clone());
    }
    for volume in &plan.volumes {
        let mut labels = hash_map(plan::labels(&spec.name, volume.trim_start_matches(&format!("{}-", spec.name))));
        labels.insert(DATA_LABEL.into(), "true".into());
        target.ensure_volume(volume, labels).await?;
    }
    for container in &plan.containers {
        target.create(container, Some(&plan.network), false, &[]).await?;
        if spec.mode == Mode::Host {
            created.containers.push(container.name.clone());
        }
    }

    progress.step("infrastructure");
    let infra: Vec<&ContainerSpec> = plan.containers.iter().filter(|c| c.kind == Kind::Infra).collect();
    for c in &infra {
        target.start(&c.name).await?;
    }
    let deadline = Instant::now() + args.timeout;
    wait_healthy(&target, &infra, deadline, progress).await?;

    if let Some(Restore { from: backup, key }) = restore {
        progress.step(format!("restoring {}", backup.display()));
        restore_into(&target, spec, &plan, backup, *key).await?;
    }

    progress.step("services and monitoring");
    for c in plan.containers.iter().filter(|c| c.kind != Kind::Infra) {
        target.start(&c.name).await?;
    }

    // 6. Readiness through the host's loopback.
    let endpoints = endpoints(outer, &target, spec, &plan).await?;
    progress.step("waiting until every service is ready");
    wait_ready(&target, spec, &endpoints, deadline, progress).await?;
    Ok(StackState {
        name: spec.name.clone(),
        mode: spec.mode,
        infra: spec.infra,
        images: spec.images.clone(),
        dind_port,
        endpoints,
        created_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
        ready_after_secs: progress.elapsed().as_secs_f64(),
    })
}

/// Starts the inner daemon's container and returns a client for it and its TLS port.
async fn start_dind(
    outer: &Engine,
    spec: &StackSpec,
    plan: &plan::Plan,
    certs: &Path,
    progress: &mut Progress,
    created: &mut Created,
) -> Result<(Engine, u16)> {
    ensure_image(outer, None, &spec.images.dind).await?;
    let volume = plan::dind_volume(&spec.name);
    let mut labels = hash_map(plan::labels(&spec.name, "dind"));
    labels.insert(DATA_LABEL.into(), "true".into());
    outer.ensure_volume(&volume, labels).await?;
    let mut files = Vec::new();
    for name in ["ca.pem", "cert.pem", "key.pem"] {
        let path = certs.join("server").join(name);
        let contents = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        files.push(FileSpec { path: format!("{}/server/{name}", plan::DIND_CERTS), contents, mode: 0o600, owner: 0 });
    }
    // A network of its own: no other container on the host's default bridge can reach the
    // ports it publishes on its own address.
    let network = format!("{}-dind", spec.name);
    if outer.ensure_network(&network, hash_map(plan::labels(&spec.name, "dind-network"))).await? {
        created.outer_networks.push(network.clone());
    }
    // A stopped inner daemon of an earlier run (its data volume stays).
    outer.remove_container(&format!("{}-dind", spec.name), Duration::from_secs(10)).await?;
    let mut privilege = DindPrivilege::Privileged;
    loop {
        let mut container = plan::dind(spec, &plan.published);
        container.files = files.clone();
        let privileged = privilege == DindPrivilege::Privileged;
        let missing: &[&str] = if privileged { &[] } else { &[MISSING_CAPABILITY] };
        outer.create(&container, Some(&network), privileged, missing).await?;
        created.outer_containers.push(container.name.clone());
        match outer.start(&container.name).await {
            Ok(()) => break,
            Err(e) if privileged && refused_privileges(&e) => {
                progress.say(&format!(
                    "  the daemon refused a privileged container ({}): using the explicit capability set instead \
                     (all but {MISSING_CAPABILITY}, unconfined seccomp/AppArmor, the cgroup tree)",
                    root_cause(&e)
                ));
                outer.remove_container(&container.name, Duration::ZERO).await?;
                created.outer_containers.pop();
                privilege = DindPrivilege::Capabilities;
            }
            Err(e) => return Err(e),
        }
    }
    let name = format!("{}-dind", spec.name);
    let port = outer.host_port(&name, plan::DIND_PORT).await?;
    let inner = Engine::tls(port, certs)?;
    let deadline = Instant::now() + DIND_START;
    loop {
        match inner.ping().await {
            Ok(()) => return Ok((inner.negotiate().await?, port)),
            Err(e) if Instant::now() > deadline => {
                let mut log = Vec::new();
                let _ = outer.logs(&name, Some(10), false, &mut log).await;
                bail!(
                    "the inner daemon did not answer on {} within {} s: {e:#}\n{}",
                    inner.address,
                    DIND_START.as_secs(),
                    String::from_utf8_lossy(&log).trim_end()
                );
            }
            Err(_) => {
                let state = outer.inspect(&name).await?.state;
                if state.as_ref().and_then(|s| s.running) == Some(false) {
                    let mut log = Vec::new();
                    let _ = outer.logs(&name, Some(15), false, &mut log).await;
                    bail!("the inner daemon exited: {}", String::from_utf8_lossy(&log).trim_end());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// Whether starting a container failed because its privileges were refused (and not, say,
/// because a port was taken).
fn refused_privileges(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}").to_lowercase();
    ["apply caps", "operation not permitted", "privileged", "capabilit"].iter().any(|needle| text.contains(needle))
}

/// The innermost message of an error chain.
fn root_cause(e: &anyhow::Error) -> String {
    e.root_cause().to_string()
}

/// Makes sure `target` has `image`: present, copied from `source`, or pulled.
pub(super) async fn ensure_image(target: &Engine, source: Option<&Engine>, image: &str) -> Result<()> {
    if target.has_image(image).await? {
        return Ok(());
    }
    if let Some(source) = source
        && source.has_image(image).await?
    {
        return target.transfer_from(source, &[image]).await;
    }
    target.pull(image).await.map_err(|e| {
        let searched = match source {
            Some(s) => format!("on {} nor on {}", target.address, s.address),
            None => format!("on {}", target.address),
        };
        anyhow!(
            "image {image} is not available: not {searched}, and pulling it failed ({}); load it with --image-archive \
             (written by `acgs images save` where it is available)",
            root_cause(&e)
        )
    })
}

/// The Prometheus and Grafana provisioning from embedded/monitoring, as files to copy in.
fn monitoring_files() -> Result<MonitoringFiles> {
    let mut files = MonitoringFiles::default();
    let Some(root) = EMBEDDED.get_dir("monitoring") else {
        bail!("embedded/monitoring is missing from this build");
    };
    let mut all = Vec::new();
    collect(root, &mut all);
    // Where each embedded folder goes, in which container.
    let places = [
        ("prometheus/", "/etc/prometheus/", false),
        ("grafana/provisioning/", "/etc/grafana/provisioning/", true),
        ("grafana/dashboards/", "/etc/grafana/dashboards/", true),
    ];
    for file in all {
        let rel = file.path().strip_prefix("monitoring").unwrap_or(file.path()).display().to_string();
        for (from, to, grafana) in places {
            if let Some(rest) = rel.strip_prefix(from) {
                let spec =
                    FileSpec { path: format!("{to}{rest}"), contents: file.contents().to_vec(), mode: 0o644, owner: 0 };
                if grafana { files.grafana.push(spec) } else { files.prometheus.push(spec) }
            }
        }
    }
    Ok(files)
}

fn collect<'a>(dir: &'a include_dir::Dir<'a>, out: &mut Vec<&'a include_dir::File<'a>>) {
    for entry in dir.entries() {
        match entry {
            include_dir::DirEntry::Dir(d) => collect(d, out),
            include_dir::DirEntry::File(f) => out.push(f),
        }
    }
}

fn hash_map(labels: BTreeMap<String, String>) -> HashMap<String, String> {
    labels.into_iter().collect()
}

/// Waits until every container of `containers` with a health check is healthy.
async fn wait_healthy(
    target: &Engine,
    containers: &[&ContainerSpec],
    deadline: Instant,
    progress: &Progress,
) -> Result<()> {
    loop {
        let mut waiting = Vec::new();
        for c in containers {
            let info = target.inspect(&c.name).await?;
            let state = info.state.unwrap_or_default();
            let health = state.health.and_then(|h| h.status).map(|s| s.to_string()).unwrap_or_default();
            if state.running != Some(true) || info.restart_count.unwrap_or(0) > 0 {
                let mut log = Vec::new();
                let _ = target.logs(&c.name, Some(15), false, &mut log).await;
                bail!(
                    "{} ({}) {}: {}",
                    c.name,
                    c.image,
                    if state.running == Some(true) { "keeps restarting" } else { "stopped" },
                    String::from_utf8_lossy(&log).trim_end()
                );
            }
            // Without a health check, running (and not restarting) is all there is to see.
            if c.health.is_some() && health != "healthy" {
                waiting.push(c.role.clone());
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        progress.detail(&waiting.join(", "));
        if Instant::now() > deadline {
            bail!("not healthy in time: {}", waiting.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The host's URLs of the services and monitoring.
async fn endpoints(
    outer: &Engine,
    target: &Engine,
    spec: &StackSpec,
    plan: &plan::Plan,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for c in plan.containers.iter().filter(|c| !c.ports.is_empty()) {
        let port = c.ports[0].0;
        let host_port = match spec.mode {
            Mode::Host => target.host_port(&c.name, port).await?,
            Mode::Dind => outer.host_port(&format!("{}-dind", spec.name), port).await?,
        };
        out.insert(c.role.clone(), format!("http://127.0.0.1:{host_port}"));
    }
    Ok(out)
}

/// Polls every service's `/ready` (Prometheus' `/-/ready`, Grafana's `/api/health`) until all
/// answer 200, or the deadline.
async fn wait_ready(
    target: &Engine,
    spec: &StackSpec,
    endpoints: &BTreeMap<String, String>,
    deadline: Instant,
    progress: &Progress,
) -> Result<()> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let mut pending: Vec<(String, String)> = endpoints
        .iter()
        .map(|(role, base)| {
            let path = match role.as_str() {
                "prometheus" => "/-/ready",
                "grafana" => "/api/health",
                _ => "/ready",
            };
            (role.clone(), format!("{base}{path}"))
        })
        .collect();
    let mut last: HashMap<String, String> = HashMap::new();
    while !pending.is_empty() {
        let checks = pending.iter().map(|(role, url)| {
            let http = http.clone();
            async move {
                let answer = match http.get(url).send().await {
                    Ok(r) if r.status().is_success() => None,
                    Ok(r) => Some(format!("{} {}", r.status(), r.text().await.unwrap_or_default().trim())),
                    Err(e) => Some(root_cause(&e.into())),
                };
                (role.clone(), answer)
            }
        });
        let results: Vec<(String, Option<String>)> = futures::stream::iter(checks).buffer_unordered(16).collect().await;
        for (role, answer) in results {
            match answer {
                None => pending.retain(|(r, _)| r != &role),
                Some(why) => {
                    last.insert(role, why);
                }
            }
        }
        if pending.is_empty() {
            break;
        }
        progress.detail(&pending.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>().join(", "));
        if Instant::now() > deadline {
            let mut lines = Vec::new();
            for (role, url) in &pending {
                let name = format!("{}-{role}", spec.name);
                let state = match target.inspect(&name).await {
                    Ok(info) => {
                        info.state.map(|s| s.status.map(|s| s.to_string()).unwrap_or_default()).unwrap_or_default()
                    }
                    Err(e) => format!("{e:#}"),
                };
                let mut log = Vec::new();
                let _ = target.logs(&name, Some(5), false, &mut log).await;
                lines.push(format!(
                    "  {role}: {url} answered {}; container {state}; last lines:\n{}",
                    last.get(role).map(String::as_str).unwrap_or("nothing"),
                    String::from_utf8_lossy(&log).trim_end()
                ));
            }
            bail!(
                "not ready in time (--timeout): {}\n{}",
                pending.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>().join(", "),
                lines.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Runs `acgs restore` once in the stack's network before the services start: the tables into
/// PostgreSQL, the log and its key into the integrity service's volume. With `key`, the
/// backup's checkpoint must verify with that key, not only with the one it carries.
async fn restore_into(
    target: &Engine,
    spec: &StackSpec,
    plan: &plan::Plan,
    backup: &Path,
    key: Option<&str>,
) -> Result<()> {
    let contents = std::fs::read(backup).with_context(|| format!("cannot read {}", backup.display()))?;
    let mut args = vec!["restore", "--from", "/restore/backup.acgs"];
    if let Some(key) = key {
        args.extend(["--key", key]);
    }
    let mut job = plan::job(plan, &spec.name, "restore", &args).context("the plan has no integrity service")?;
    job.files = vec![FileSpec { path: "/restore/backup.acgs".into(), contents, mode: 0o600, owner: 10001 }];
    run_job(target, &job, &plan.network, None).await.map(|_| ())
}

/// Runs a one-off container to completion and removes it, whatever happened; its output is in
/// the error. With `fetch`, returns that file of the finished container.
pub(super) async fn run_job(
    target: &Engine,
    job: &ContainerSpec,
    network: &str,
    fetch: Option<&str>,
) -> Result<Option<Vec<u8>>> {
    target.remove_container(&job.name, Duration::ZERO).await?;
    target.create(job, Some(network), false, &[]).await?;
    let result = async {
        target.start(&job.name).await?;
        let mut wait = target.docker.wait_container(&job.name, None::<bollard::query_parameters::WaitContainerOptions>);
        let status = match wait.next().await {
            Some(Ok(r)) => r.status_code,
            // bollard reports a non-zero exit as an error carrying the code.
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => return Err(e).with_context(|| format!("waiting for {}", job.name)),
            None => bail!("{} ended without an exit status", job.name),
        };
        let mut log = Vec::new();
        let _ = target.logs(&job.name, None, false, &mut log).await;
        anyhow::ensure!(
            status == 0,
            "{} exited with {status}:\n{}",
            job.name,
            String::from_utf8_lossy(&log).trim_end()
        );
        match fetch {
            Some(path) => Ok(Some(target.copy_out(&job.name, path).await?)),
            None => Ok(None),
        }
    }
    .await;
    let removed = target.remove_container(&job.name, Duration::ZERO).await;
    let fetched = result?;
    removed?;
    Ok(fetched)
}

/// Removes what this run created (never a volume) and says what.
async fn clean_up(outer: &Engine, dir: &StackDir, spec: &StackSpec, created: &Created) -> String {
    let mut removed = Vec::new();
    let mut failed = Vec::new();
    for name in created.containers.iter().rev() {
        match outer.remove_container(name, Duration::from_secs(5)).await {
            Ok(()) => removed.push(format!("container {name}")),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    for name in created.outer_containers.iter().rev() {
        match outer.remove_container(name, Duration::from_secs(5)).await {
            Ok(()) => removed.push(format!("container {name} (with everything inside it)")),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    for name in &created.outer_networks {
        match outer.remove_network(name).await {
            Ok(()) => removed.push(format!("network {name}")),
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    if spec.mode == Mode::Host {
        for name in &created.networks {
            match outer.remove_network(name).await {
                Ok(()) => removed.push(format!("network {name}")),
                Err(e) => failed.push(format!("{e:#}")),
            }
        }
    }
    let _ = dir.forget();
    let kept = match outer.volumes(&spec.name).await {
        Ok(v) if !v.is_empty() => format!("kept data volumes: {}", v.join(", ")),
        _ => "no data volume to keep".into(),
    };
    let mut line =
        if removed.is_empty() { "removed nothing".to_string() } else { format!("removed {}", removed.join(", ")) };
    line.push_str(&format!("; {kept}"));
    if !failed.is_empty() {
        line.push_str(&format!("; could not remove: {}", failed.join("; ")));
    }
    line
}

/// The summary table.
fn print_table(state: &StackState) {
    println!("{:<14} {:<32} IMAGE", "PART", "ADDRESS");
    for (role, url) in &state.endpoints {
        let image = match role.as_str() {
            "prometheus" => state.images.prometheus.as_str(),
            "grafana" => state.images.grafana.as_str(),
            _ => state.images.acgs.as_str(),
        };
        println!("{role:<14} {url:<32} {image}");
    }
    if let Some(port) = state.dind_port {
        println!("{:<14} {:<32} {}", "dind", format!("tcp://127.0.0.1:{port} (mutual TLS)"), state.images.dind);
    }
}
