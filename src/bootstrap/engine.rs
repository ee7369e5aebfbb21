//! The Docker half of the bootstrapper: a small wrapper around bollard that carries out what
//! `plan.rs` decided. It knows how to reach a daemon (the local one, or the inner one over
//! mutual TLS), make sure an image is there (present, moved over from another daemon, or
//! pulled), create labelled networks, volumes and containers from a [`ContainerSpec`], copy
//! files in, and find, stop and remove everything by its stack label.
//!
//! Every error says which object and which daemon it concerns, in one line.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, ContainerSummary, EndpointSettings, HealthConfig, HostConfig, Mount, MountTypeEnum,
    NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy, RestartPolicyNameEnum, VolumeCreateOptions,
};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder, ImportImageOptionsBuilder,
    InspectContainerOptions, ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveVolumeOptionsBuilder, StartContainerOptions,
    StopContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures::{StreamExt, TryStreamExt};

use super::plan::{ContainerSpec, FileSpec, MountSpec, STACK_LABEL};

/// A Docker daemon and how it was reached (for messages).
#[derive(Clone)]
pub struct Engine {
    pub docker: Docker,
    /// `unix:///var/run/docker.sock`, `tcp://127.0.0.1:2376 (mutual TLS)`, …
    pub address: String,
}

/// Image transfers and builds can take minutes; single calls should not.
const LONG: Duration = Duration::from_secs(1800);

impl Engine {
    /// The local daemon: `DOCKER_HOST` if set, else the default socket.
    pub async fn local() -> Result<Engine> {
        let address = std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let docker = Docker::connect_with_defaults()
            .with_context(|| format!("cannot use the Docker daemon at {address}"))?
            .with_timeout(LONG);
        let engine = Engine { docker, address };
        engine.ping().await?;
        engine.negotiate().await
    }

    /// The inner daemon at `127.0.0.1:port`, over mutual TLS with the client certificate in
    /// `certs/client` (Docker's layout: ca.pem, cert.pem, key.pem).
    pub fn tls(port: u16, certs: &std::path::Path) -> Result<Engine> {
        let client = certs.join("client");
        let address = format!("tcp://127.0.0.1:{port}");
        let docker = Docker::connect_with_ssl(
            &address,
            &client.join("key.pem"),
            &client.join("cert.pem"),
            &client.join("ca.pem"),
            LONG.as_secs(),
            bollard::API_DEFAULT_VERSION,
        )
        .with_context(|| format!("cannot set up mutual TLS to {address} with {}", client.display()))?;
        Ok(Engine { docker, address: format!("{address} (mutual TLS)") })
    }

    /// Speaks the daemon's API version where it is older than bollard's (Debian 12's Docker 20.10
    /// answers API 1.41).
    pub async fn negotiate(self) -> Result<Engine> {
        let address = self.address.clone();
        let docker = self
            .docker
            .negotiate_version()
            .await
            .with_context(|| format!("cannot agree on an API version with the Docker daemon at {address}"))?;
        Ok(Engine { docker, address })
    }

    /// Whether the daemon answers.
    pub async fn ping(&self) -> Result<()> {
        tokio::time::timeout(Duration::from_secs(10), self.docker.ping())
            .await
            .map_err(|_| anyhow!("the Docker daemon at {} does not answer within 10 s", self.address))?
            .with_context(|| format!("the Docker daemon at {} is not reachable", self.address))?;
        Ok(())
    }

    // --- images --------------------------------------------------------------------------------

    /// Whether the daemon has `image`.
    pub async fn has_image(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("inspecting image {image} on {}", self.address)),
        }
    }

    /// Pulls `image` from its registry.
    pub async fn pull(&self, image: &str) -> Result<()> {
        let options = CreateImageOptionsBuilder::new().from_image(image).build();
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(info) = stream.next().await {
            let info = info.with_context(|| format!("pulling {image} on {}", self.address))?;
            if let Some(error) = info.error_detail.and_then(|d| d.message).or(info.error) {
                bail!("pulling {image} on {}: {error}", self.address);
            }
        }
        Ok(())
    }

    /// Copies `images` from `source` into this daemon (`docker save | docker load`), streamed.
    pub async fn transfer_from(&self, source: &Engine, images: &[&str]) -> Result<()> {
        let stream = source.docker.export_images(images).map_err(std::io::Error::other);
        self.load(stream).await.with_context(|| format!("copying {} from {}", images.join(", "), source.address))
    }

    /// Loads a `docker save` archive, streamed.
    pub async fn load(
        &self,
        archive: impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    ) -> Result<()> {
        let options = ImportImageOptionsBuilder::new().quiet(true).build();
        let mut stream = self.docker.import_image(options, bollard::body_try_stream(archive), None);
        while let Some(info) = stream.next().await {
            let info = info.with_context(|| format!("loading images into {}", self.address))?;
            if let Some(error) = info.error_detail.and_then(|d| d.message).or(info.error) {
                bail!("loading images into {}: {error}", self.address);
            }
        }
        Ok(())
    }

    /// Builds `tag` from a tar build context; returns the build's last lines on failure.
    pub async fn build(&self, tag: &str, context: Vec<u8>, labels: &HashMap<String, String>) -> Result<()> {
        let options = BuildImageOptionsBuilder::new().t(tag).rm(true).forcerm(true).labels(labels).build();
        let mut stream = self.docker.build_image(options, None, Some(bollard::body_full(context.into())));
        let mut tail: Vec<String> = Vec::new();
        while let Some(info) = stream.next().await {
            let info = info.with_context(|| format!("building {tag} on {}", self.address))?;
            if let Some(line) = info.stream {
                tail.push(line.trim_end().to_string());
                if tail.len() > 20 {
                    tail.remove(0);
                }
            }
            if let Some(error) = info.error_detail.and_then(|d| d.message).or(info.error) {
                bail!("building {tag} on {}: {error}\n{}", self.address, tail.join("\n"));
            }
        }
        Ok(())
    }

    // --- networks and volumes ------------------------------------------------------------------

    /// Creates the network unless it exists; true if it was created now.
    pub async fn ensure_network(&self, name: &str, labels: HashMap<String, String>) -> Result<bool> {
        if self.docker.inspect_network(name, None::<bollard::query_parameters::InspectNetworkOptions>).await.is_ok() {
            return Ok(false);
        }
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(labels),
            ..Default::default()
        };
        self.docker
            .create_network(request)
            .await
            .with_context(|| format!("creating network {name} on {}", self.address))?;
        Ok(true)
    }

    /// Creates the volume unless it exists; true if it was created now.
    pub async fn ensure_volume(&self, name: &str, labels: HashMap<String, String>) -> Result<bool> {
        if self.docker.inspect_volume(name).await.is_ok() {
            return Ok(false);
        }
        let options = VolumeCreateOptions { name: Some(name.to_string()), labels: Some(labels), ..Default::default() };
        self.docker
            .create_volume(options)
            .await
            .with_context(|| format!("creating volume {name} on {}", self.address))?;
        Ok(true)
    }

    // --- containers ----------------------------------------------------------------------------

    /// Creates the container `spec` describes on `network` (reachable there by its role), with
    /// its files copied in; does not start it.
    pub async fn create(
        &self,
        spec: &ContainerSpec,
        network: Option<&str>,
        privileged: bool,
        capabilities: &[&str],
    ) -> Result<()> {
        let body = container_body(spec, network, privileged, capabilities);
        let options = CreateContainerOptionsBuilder::new().name(&spec.name).build();
        self.docker
            .create_container(Some(options), body)
            .await
            .with_context(|| format!("creating container {} ({}) on {}", spec.name, spec.image, self.address))?;
        if !spec.files.is_empty()
            && let Err(e) = self.copy_in(&spec.name, &spec.files).await
        {
            let _ = self.remove_container(&spec.name, Duration::ZERO).await;
            return Err(e);
        }
        Ok(())
    }

    /// Writes files into a container (created or running), creating their directories.
    pub async fn copy_in(&self, container: &str, files: &[FileSpec]) -> Result<()> {
        let archive = tar_of(files).with_context(|| format!("packing files for {container}"))?;
        let options = UploadToContainerOptionsBuilder::new().path("/").build();
        self.docker
            .upload_to_container(container, Some(options), bollard::body_full(archive.into()))
            .await
            .with_context(|| format!("copying files into {container} on {}", self.address))
    }

    /// Reads one file out of a container (created, running or stopped).
    pub async fn copy_out(&self, container: &str, path: &str) -> Result<Vec<u8>> {
        let options = bollard::query_parameters::DownloadFromContainerOptionsBuilder::new().path(path).build();
        let archive: Vec<u8> = self
            .docker
            .download_from_container(container, Some(options))
            .try_fold(Vec::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await
            .with_context(|| format!("copying {path} out of {container} on {}", self.address))?;
        let mut tar = tar::Archive::new(archive.as_slice());
        for entry in tar.entries()? {
            let mut entry = entry?;
            if entry.header().entry_type().is_file() {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut bytes)?;
                return Ok(bytes);
            }
        }
        bail!("{path} in {container} is not a file")
    }

    pub async fn start(&self, container: &str) -> Result<()> {
        self.docker
            .start_container(container, None::<StartContainerOptions>)
            .await
            .with_context(|| format!("starting {container} on {}", self.address))
    }

    pub async fn inspect(&self, container: &str) -> Result<bollard::models::ContainerInspectResponse> {
        self.docker
            .inspect_container(container, None::<InspectContainerOptions>)
            .await
            .with_context(|| format!("inspecting {container} on {}", self.address))
    }

    /// The host port Docker bound for `port`/tcp of a running container.
    pub async fn host_port(&self, container: &str, port: u16) -> Result<u16> {
        let info = self.inspect(container).await?;
        let bindings = info.network_settings.and_then(|n| n.ports).unwrap_or_default();
        bindings
            .get(&format!("{port}/tcp"))
            .and_then(|b| b.as_ref())
            .and_then(|b| b.iter().find_map(|p| p.host_port.as_deref()?.parse().ok()))
            .with_context(|| format!("{container} publishes no host port for {port}/tcp"))
    }

    /// Every container of `stack` (running or not).
    pub async fn containers(&self, stack: &str) -> Result<Vec<ContainerSummary>> {
        let filters = HashMap::from([("label", vec![format!("{STACK_LABEL}={stack}")])]);
        let options = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
        self.docker
            .list_containers(Some(options))
            .await
            .with_context(|| format!("listing containers on {}", self.address))
    }

    /// Stops (with `grace`) and removes a container; a missing one is fine.
    pub async fn remove_container(&self, name: &str, grace: Duration) -> Result<()> {
        let stop = StopContainerOptionsBuilder::new().t(grace.as_secs() as i32).build();
        match self.docker.stop_container(name, Some(stop)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304 | 404, .. }) => {}
            Err(e) => tracing::debug!(container = name, error = %e, "stop failed; removing by force"),
        }
        let options = RemoveContainerOptionsBuilder::new().force(true).v(false).build();
        match self.docker.remove_container(name, Some(options)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing container {name} on {}", self.address)),
        }
    }

    /// Names of the networks of `stack`.
    pub async fn networks(&self, stack: &str) -> Result<Vec<String>> {
        let filters = HashMap::from([("label", vec![format!("{STACK_LABEL}={stack}")])]);
        let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let networks = self
            .docker
            .list_networks(Some(options))
            .await
            .with_context(|| format!("listing networks on {}", self.address))?;
        Ok(networks.into_iter().filter_map(|n| n.name).collect())
    }

    pub async fn remove_network(&self, name: &str) -> Result<()> {
        match self.docker.remove_network(name).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing network {name} on {}", self.address)),
        }
    }

    /// Names of the volumes of `stack`.
    pub async fn volumes(&self, stack: &str) -> Result<Vec<String>> {
        let filters = HashMap::from([("label", vec![format!("{STACK_LABEL}={stack}")])]);
        let options = ListVolumesOptionsBuilder::new().filters(&filters).build();
        let volumes = self
            .docker
            .list_volumes(Some(options))
            .await
            .with_context(|| format!("listing volumes on {}", self.address))?;
        Ok(volumes.volumes.unwrap_or_default().into_iter().map(|v| v.name).collect())
    }

    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        let options = RemoveVolumeOptionsBuilder::new().force(true).build();
        match self.docker.remove_volume(name, Some(options)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing volume {name} on {}", self.address)),
        }
    }

    /// The last `tail` lines of a container's output (stdout and stderr), or everything as it
    /// comes with `follow`, written to `out`.
    pub async fn logs(
        &self,
        container: &str,
        tail: Option<usize>,
        follow: bool,
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<()> {
        let tail = tail.map(|n| n.to_string()).unwrap_or_else(|| "all".into());
        let options = LogsOptionsBuilder::new().stdout(true).stderr(true).follow(follow).tail(&tail).build();
        let mut stream = self.docker.logs(container, Some(options));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("reading the logs of {container} on {}", self.address))?;
            out.write_all(chunk.as_ref())?;
            if follow {
                out.flush()?;
            }
        }
        Ok(())
    }
}

/// The create request for a container spec.
fn container_body(
    spec: &ContainerSpec,
    network: Option<&str>,
    privileged: bool,
    capabilities: &[&str],
) -> ContainerCreateBody {
    let mut mounts = Vec::new();
    // tmpfs as `--tmpfs` gives them, with mount options: the Mount API's tmpfs mode is not
    // applied by Docker 20.10, and the sticky bit is not a mode bit in its encoding.
    let mut tmpfs = HashMap::new();
    for m in &spec.mounts {
        match m {
            MountSpec::Volume { name, target, read_only } => mounts.push(Mount {
                typ: Some(MountTypeEnum::VOLUME),
                source: Some(name.clone()),
                target: Some(target.clone()),
                read_only: Some(*read_only),
                ..Default::default()
            }),
            MountSpec::Tmpfs { target, size_bytes, mode } => {
                tmpfs.insert(target.clone(), format!("rw,nosuid,nodev,size={size_bytes},mode={mode:o}"));
            }
        }
    }
    let host_ip = if spec.publish_on_loopback { "127.0.0.1" } else { "" };
    let port_bindings: HashMap<String, Option<Vec<PortBinding>>> = spec
        .ports
        .iter()
        .map(|(port, host)| {
            let binding = PortBinding {
                host_ip: Some(host_ip.to_string()),
                host_port: Some(if *host == 0 { String::new() } else { host.to_string() }),
            };
            (format!("{port}/tcp"), Some(vec![binding]))
        })
        .collect();
    let exposed: HashMap<String, HashMap<(), ()>> =
        spec.ports.iter().map(|(port, _)| (format!("{port}/tcp"), HashMap::new())).collect();
    let mut security_opt = Vec::new();
    if spec.no_new_privileges {
        security_opt.push("no-new-privileges:true".to_string());
    }
    let mut cap_add = Vec::new();
    let mut cap_drop = Vec::new();
    if spec.cap_drop_all {
        cap_drop.push("ALL".to_string());
    }
    let mut device_cgroup_rules = None;
    let mut binds = None;
    let mut unmasked = None;
    if !privileged && !capabilities.is_empty() {
        // The explicit set DESIGN.md §8 documents for a daemon that refuses --privileged.
        cap_add.push("ALL".to_string());
        cap_drop.extend(capabilities.iter().map(|c| c.to_string()));
        security_opt.extend(["seccomp=unconfined", "apparmor=unconfined"].map(String::from));
        // `--security-opt systempaths=unconfined` of the CLI: nothing masked or read-only in /proc.
        unmasked = Some(Vec::new());
        device_cgroup_rules = Some(vec!["a *:* rwm".to_string()]);
        binds = Some(vec!["/sys/fs/cgroup:/sys/fs/cgroup:rw".to_string()]);
    }
    let host_config = HostConfig {
        mounts: Some(mounts),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        binds,
        port_bindings: Some(port_bindings),
        readonly_rootfs: Some(spec.read_only),
        privileged: Some(privileged),
        cap_add: (!cap_add.is_empty()).then_some(cap_add),
        cap_drop: (!cap_drop.is_empty()).then_some(cap_drop),
        security_opt: (!security_opt.is_empty()).then_some(security_opt),
        device_cgroup_rules,
        masked_paths: unmasked.clone(),
        readonly_paths: unmasked,
        memory: (spec.memory_bytes > 0).then_some(spec.memory_bytes),
        nano_cpus: (spec.nano_cpus > 0).then_some(spec.nano_cpus),
        pids_limit: (spec.pids_limit > 0).then_some(spec.pids_limit),
        restart_policy: Some(RestartPolicy {
            name: Some(if spec.restart { RestartPolicyNameEnum::UNLESS_STOPPED } else { RestartPolicyNameEnum::NO }),
            maximum_retry_count: None,
        }),
        init: None,
        ..Default::default()
    };
    let networking_config = network.map(|net| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            net.to_string(),
            EndpointSettings { aliases: Some(vec![spec.role.clone()]), ..Default::default() },
        )])),
    });
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: (!spec.cmd.is_empty()).then(|| spec.cmd.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        user: spec.user.clone(),
        labels: Some(spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        hostname: Some(spec.role.clone()),
        exposed_ports: Some(exposed),
        healthcheck: spec.health.as_ref().map(|h| HealthConfig {
            test: Some(std::iter::once("CMD".to_string()).chain(h.test.iter().cloned()).collect()),
            interval: Some(h.interval_ms * 1_000_000),
            timeout: Some(h.timeout_ms * 1_000_000),
            retries: Some(h.retries),
            start_period: Some(h.start_period_ms * 1_000_000),
            start_interval: Some(h.start_interval_ms * 1_000_000),
        }),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    }
}

/// A tar archive of `files` at their absolute paths (parent directories included, 0755).
pub fn tar_of(files: &[FileSpec]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dirs = std::collections::BTreeSet::new();
    for file in files {
        let path = file.path.trim_start_matches('/');
        let mut parent = std::path::Path::new(path).parent();
        let mut chain = Vec::new();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            chain.push(p.to_path_buf());
            parent = p.parent();
        }
        for dir in chain.into_iter().rev() {
            if dirs.insert(dir.clone()) {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_uid(file.owner);
                header.set_gid(file.owner);
                header.set_size(0);
                header.set_mtime(0);
                builder.append_data(&mut header, format!("{}/", dir.display()), std::io::empty())?;
            }
        }
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(file.mode);
        header.set_uid(file.owner);
        header.set_gid(file.owner);
        header.set_size(file.contents.len() as u64);
        header.set_mtime(0);
        builder.append_data(&mut header, path, file.contents.as_slice())?;
    }
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bootstrap::plan::{Images, Infra, Mode, MonitoringFiles, Ports, Secrets, StackSpec, dind, plan};

    fn spec() -> StackSpec {
        StackSpec {
            name: "t".into(),
            mode: Mode::Dind,
            infra: Infra::Images,
            images: Images {
                acgs: "acgs:x".into(),
                dind: "d".into(),
                postgres: "p".into(),
                redis: "r".into(),
                nats: "n".into(),
                prometheus: "pr".into(),
                grafana: "g".into(),
                solver: None,
            },
            prometheus: true,
            grafana: false,
            ports: Ports { services: 0, prometheus: 0, grafana: 0, dind: 0 },
            secrets: Secrets::generate(),
        }
    }

    #[test]
    fn a_service_container_is_locked_down() {
        let p = plan(&spec(), &MonitoringFiles::default());
        let body = container_body(p.container("auth").expect("auth"), Some("t"), false, &[]);
        let host = body.host_config.expect("host config");
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(host.cap_add, None);
        assert_eq!(host.security_opt, Some(vec!["no-new-privileges:true".to_string()]));
        assert_eq!(body.user.as_deref(), Some("10001:10001"));
        // Inside the inner daemon ports go on every interface of its namespace; the inner
        // daemon's own container puts them on the host's loopback.
        let binding = &host.port_bindings.expect("ports")["8000/tcp"].clone().expect("binding")[0];
        assert_eq!(binding.host_ip.as_deref(), Some(""));
        assert_eq!(body.healthcheck.expect("health").test.expect("test")[0], "CMD");
    }

    #[test]
    fn the_inner_daemon_falls_back_to_explicit_capabilities() {
        let s = spec();
        let d = dind(&s, &[]);
        let body = container_body(&d, None, false, &["SYS_RESOURCE"]);
        let host = body.host_config.expect("host config");
        assert_eq!(host.privileged, Some(false));
        assert_eq!(host.cap_add, Some(vec!["ALL".to_string()]));
        assert_eq!(host.cap_drop, Some(vec!["SYS_RESOURCE".to_string()]));
        assert!(host.security_opt.expect("opts").contains(&"seccomp=unconfined".to_string()));
        let binding = &host.port_bindings.expect("ports")["2376/tcp"].clone().expect("binding")[0];
        assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
        let privileged = container_body(&dind(&s, &[]), None, true, &[]);
        assert_eq!(privileged.host_config.expect("host").privileged, Some(true));
    }

    #[test]
    fn files_are_packed_with_their_directories_and_modes() {
        let files = vec![FileSpec { path: "/etc/a/b.yml".into(), contents: b"x: 1\n".to_vec(), mode: 0o644, owner: 0 }];
        let bytes = tar_of(&files).expect("tar");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| e.expect("entry").path().expect("path").display().to_string())
            .collect();
        assert_eq!(names, vec!["etc/", "etc/a/", "etc/a/b.yml"]);
    }
}
