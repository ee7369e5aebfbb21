//! Starting and stopping services: `acgs up` (all seven in one process) and `acgs serve <name>`.
//!
//! [`start`] loads the constitution, checks the pinned hash, opens each selected service, binds
//! every listener before serving any (so a busy port fails start-up as a whole), and returns a
//! [`Stack`] with the bound addresses — port 0 works, which is how the tests run. [`Stack::stop`]
//! drains in-flight requests for at most `http.shutdown_grace_ms`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::kernel::audit::AuditSink;
use crate::kernel::auth::{KeySource, SharedRevocations, Verifier};
use crate::kernel::bus::{Bus, subjects};
use crate::kernel::constitution::{Constitution, ConstitutionError, HashCell};
use crate::kernel::http::{self, HttpContext, ReadyCheck, ServiceApp};
use crate::kernel::peer::BearerSource;
use crate::kernel::service::ServiceName;
use crate::kernel::shared::SharedStore;
use crate::kernel::shutdown::Shutdown;
use crate::services::auth::client::{AuthClient, ServiceCredentials};
use crate::services::auth::{self, AdminBootstrap, AuthService};
use crate::services::consensus::client::ConsensusClient;
use crate::services::constitution::client::ConstitutionClient;
use crate::services::constitution::{self, ConstitutionService};
use crate::services::integrity::client::IntegrityClient;
use crate::services::integrity::{self, IntegrityService};
use crate::services::verification::client::VerificationClient;
use crate::services::verification::{self, VerificationService};
use crate::services::{consensus, evolution, simulation};

/// Why the services could not start. Each is one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("constitution: {0}")]
    Constitution(#[from] ConstitutionError),
    #[error("cannot read constitution file {path}: {reason}")]
    ConstitutionFile { path: String, reason: String },
    #[error(
        "CONSTITUTIONAL_HASH pins {pinned} but the active constitution's hash is {actual}; refusing to start \
         (unset CONSTITUTIONAL_HASH or load the constitution it names)"
    )]
    HashPinned { pinned: String, actual: String },
    #[error("cannot create data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error(transparent)]
    Auth(#[from] auth::StartError),
    #[error(transparent)]
    ConstitutionService(#[from] constitution::StartError),
    #[error(transparent)]
    Integrity(#[from] integrity::StartError),
    #[error(transparent)]
    Consensus(#[from] consensus::StartError),
    #[error(transparent)]
    Verification(#[from] verification::StartError),
    #[error("auth service: {0}")]
    Revocations(String),
    #[error(transparent)]
    Bus(#[from] crate::kernel::bus::BusError),
    #[error(transparent)]
    Shared(#[from] crate::kernel::shared::SharedError),
    #[error("cannot listen on {addr} for the {service} service: {reason}")]
    Listen { service: ServiceName, addr: SocketAddr, reason: String },
}

/// A service that is serving.
#[derive(Debug, Clone, Copy)]
pub struct Running {
    pub name: ServiceName,
    pub addr: SocketAddr,
}

/// The services of this process, serving.
pub struct Stack {
    pub services: Vec<Running>,
    /// The constitutional hash served.
    pub constitutional_hash: String,
    /// What start-up did about the admin account (when auth runs here).
    pub admin: Option<AdminBootstrap>,
    pub hash: HashCell,
    pub bus: Bus,
    shutdown: Shutdown,
    grace: Duration,
    /// The HTTP servers, which drain on shutdown.
    servers: Vec<JoinHandle<()>>,
    /// Bus followers and pollers, which are simply stopped.
    background: Vec<JoinHandle<()>>,
}

impl Stack {
    /// The address a service listens on.
    pub fn addr(&self, name: ServiceName) -> Option<SocketAddr> {
        self.services.iter().find(|s| s.name == name).map(|s| s.addr)
    }

    /// Stops every server: no new connections, in-flight requests get the grace period.
    pub async fn stop(self) {
        self.shutdown.trigger();
        for task in &self.background {
            task.abort();
        }
        let all = futures::future::join_all(self.servers);
        if tokio::time::timeout(self.grace, all).await.is_err() {
            tracing::warn!(
                grace_ms = self.grace.as_millis() as u64,
                "requests still running after the grace period were cut"
            );
        }
        // Wait until the aborted tasks are gone, and with them what they held (the log's file
        // lock among others): the same data dir can be opened again at once.
        for task in self.background {
            let _ = task.await;
        }
    }
}

/// Loads the constitution this process serves: `constitution_file` or the embedded genesis.
pub fn load_constitution(config: &Config) -> Result<Constitution, StartError> {
    if config.constitution_file.is_empty() {
        return Ok(Constitution::genesis()?);
    }
    let path = &config.constitution_file;
    let text = std::fs::read_to_string(path)
        .map_err(|e| StartError::ConstitutionFile { path: path.clone(), reason: e.to_string() })?;
    Ok(Constitution::from_toml(&text, path)?)
}

fn create_data_dir(path: &Path) -> Result<(), StartError> {
    let fail = |e: std::io::Error| StartError::DataDir { path: path.display().to_string(), reason: e.to_string() };
    std::fs::create_dir_all(path).map_err(fail)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    }
    Ok(())
}

/// Starts the selected services.
pub async fn start(config: Config, selection: &[ServiceName]) -> Result<Stack, StartError> {
    let constitution = load_constitution(&config)?;
    if !selection.contains(&ServiceName::Constitution) {
        // Without the constitution service here, the loaded text is the active one: refuse early.
        check_pinned(&config, &constitution.digest().short)?;
    }
    create_data_dir(&config.data_dir)?;
    let bus = if config.nats_url.is_empty() { Bus::new() } else { Bus::connect_nats(&config.nats_url).await? };

    // What replicas share through Redis: the revocation list every verifier asks (fail closed).
    let shared = if config.redis_url.is_empty() { None } else { Some(SharedStore::open(&config.redis_url)?) };
    let shared_revocations = shared.clone().map(|s| Arc::new(s) as Arc<dyn SharedRevocations>);
    let (auth_service, admin) = if selection.contains(&ServiceName::Auth) {
        let (service, bootstrap) = AuthService::start(&config, bus.clone(), shared_revocations.clone()).await?;
        (Some(service), Some(bootstrap))
    } else {
        (None, None)
    };
    // The service tokens with which this process's services call services in other processes.
    let credentials: Option<Arc<dyn BearerSource>> = match (&auth_service, config.peer_url(ServiceName::Auth)) {
        (Some(service), _) => ServiceCredentials::in_process(&service.client(), &config.service_client_id)
            .map(|c| c as Arc<dyn BearerSource>),
        (None, Some(url)) if !config.service_client_secret.is_empty() => {
            Some(ServiceCredentials::http(url, &config.service_client_id, &config.service_client_secret))
        }
        (None, _) => None,
    };
    let auth_client = match (&auth_service, config.peer_url(ServiceName::Auth)) {
        (Some(service), _) => service.client(),
        (None, Some(url)) => AuthClient::http(url, credentials.clone()),
        (None, None) => AuthClient::Unconfigured,
    };
    // The constitution service decides the active version (the latest stored one); a pinned hash
    // is checked against that.
    let constitution_service = if selection.contains(&ServiceName::Constitution) {
        Some(ConstitutionService::start(&config, &constitution, bus.clone(), auth_client.clone()).await?)
    } else {
        None
    };
    let digest = match &constitution_service {
        Some(service) => service.active_hash(),
        None => constitution.digest(),
    };
    check_pinned(&config, &digest.short)?;
    // After the pin check: a refused start leaves the log's file unopened.
    let integrity_service =
        if selection.contains(&ServiceName::Integrity) { Some(IntegrityService::start(&config)?) } else { None };
    let hash = HashCell::new(&digest.short);
    // Verification and consensus read the active constitution: in this process, or over HTTP.
    let constitution_client = match (&constitution_service, config.peer_url(ServiceName::Constitution)) {
        (Some(service), _) => service.client(),
        (None, Some(url)) => ConstitutionClient::http(url),
        (None, None) => ConstitutionClient::Unconfigured,
    };
    let verification_service = if selection.contains(&ServiceName::Verification) {
        Some(VerificationService::start(&config, constitution_client.clone()).await?)
    } else {
        None
    };
    let verification_client = match (&verification_service, config.peer_url(ServiceName::Verification)) {
        (Some(service), _) => service.client(),
        (None, Some(url)) => VerificationClient::http(url, credentials.clone()),
        (None, None) => VerificationClient::Unconfigured,
    };

    let key_source: Arc<dyn KeySource> = Arc::new(auth_client.clone());
    let verifier = Arc::new(
        Verifier::new(
            key_source,
            &config.auth.issuer,
            &config.auth.audience,
            usize::try_from(config.auth.token_cache_entries).unwrap_or(10_000),
        )
        .with_shared_revocations(shared_revocations),
    );
    let shutdown = Shutdown::new();
    let mut background = Vec::new();
    if auth_service.is_some() {
        verifier.load_revocations().await.map_err(StartError::Revocations)?;
    } else if !matches!(auth_client, AuthClient::Unconfigured) {
        background.push(tokio::spawn(poll_revocations(verifier.clone())));
    }
    background.push(tokio::spawn(follow_revocations(verifier.clone(), bus.subscribe(subjects::TOKEN_REVOKED))));
    background.push(tokio::spawn(follow_ratifications(hash.clone(), bus.subscribe(subjects::CONSTITUTION_RATIFIED))));
    if let Some(service) = &constitution_service {
        let interval = Duration::from_millis(config.constitution.close_check_interval_ms.max(1));
        background.push(service.spawn_closer(interval));
    }
    if let Some(service) = &integrity_service {
        background.push(service.spawn_checkpointer());
    }
    if let Some(service) = &integrity_service
        && bus.is_distributed()
    {
        background.push(service.spawn_bus_responder(bus.clone(), verifier.clone()));
    }
    // Audit outboxes drain into the integrity log: in this process, else through calls on the
    // NATS bus, else over HTTP.
    let audit_sink: Option<Arc<dyn AuditSink>> =
        match (&integrity_service, &credentials, config.peer_url(ServiceName::Integrity)) {
            (Some(service), _, _) => Some(Arc::new(service.client())),
            (None, Some(credentials), _) if bus.is_distributed() => {
                Some(Arc::new(IntegrityClient::Bus { bus: bus.clone(), credentials: credentials.clone() }))
            }
            (None, _, Some(url)) => Some(Arc::new(IntegrityClient::http(url, credentials.clone()))),
            (None, _, None) => None,
        };
    let consensus_service = if selection.contains(&ServiceName::Consensus) {
        let peers = consensus::Peers {
            auth: auth_client.clone(),
            constitution: constitution_client.clone(),
            verification: verification_client.clone(),
            bus: bus.clone(),
        };
        let (service, writer) =
            consensus::ConsensusService::start(&config, hash.clone(), audit_sink.clone(), peers).await?;
        let interval = Duration::from_millis(config.consensus.close_check_interval_ms.max(1));
        background.push(service.spawn_worker(interval));
        match writer {
            Some(writer) => background.push(tokio::spawn(writer)),
            None => tracing::warn!(
                "decisions cannot be logged: the integrity service is not in this process, and neither the NATS \
                 bus with a service token nor ACGS_INTEGRITY_URL is configured; decisions that must be logged are denied"
            ),
        }
        Some(service)
    } else {
        None
    };
    if let Some(verification) = &verification_service {
        match (&consensus_service, config.peer_url(ServiceName::Consensus)) {
            (Some(service), _) => verification.use_policy_sets(service.client()),
            (None, Some(url)) => verification.use_policy_sets(ConsensusClient::http(url)),
            (None, None) => {}
        }
    }
    let mut relays = Vec::new();
    if let Some(service) = &auth_service {
        relays.push((ServiceName::Auth, audit_sink.clone().map(|sink| service.outbox_relay(sink))));
    }
    if let Some(service) = &constitution_service {
        relays.push((ServiceName::Constitution, audit_sink.clone().map(|sink| service.outbox_relay(sink))));
    }
    if let Some(service) = &consensus_service {
        relays.push((ServiceName::Consensus, audit_sink.clone().map(|sink| service.outbox_relay(sink))));
    }
    for (name, relay) in relays {
        match relay {
            Some(relay) => background.push(tokio::spawn(relay.run())),
            None => tracing::warn!(
                service = %name,
                "audit events wait in the outbox: the integrity service is not in this process, and \
                 neither the NATS bus with a service token nor ACGS_INTEGRITY_URL is configured"
            ),
        }
    }

    let ctx = HttpContext {
        hash: hash.clone(),
        verifier,
        body_limit_bytes: usize::try_from(config.http.body_limit_bytes).unwrap_or(usize::MAX),
        request_timeout: Duration::from_secs(config.http.request_timeout_secs),
    };

    // Bind everything first: a port in use fails the whole start, before anything serves.
    let mut listeners = Vec::new();
    for &name in selection {
        let addr = SocketAddr::new(config.bind_addr(), config.port(name));
        let listener = TcpListener::bind(addr).await.map_err(|e| StartError::Listen {
            service: name,
            addr,
            reason: e.to_string(),
        })?;
        let local =
            listener.local_addr().map_err(|e| StartError::Listen { service: name, addr, reason: e.to_string() })?;
        listeners.push((name, listener, local));
    }

    let mut services = Vec::new();
    let mut servers = Vec::new();
    for (name, listener, addr) in listeners {
        let mut app = match name {
            ServiceName::Auth => match &auth_service {
                Some(service) => service.app(),
                None => continue,
            },
            ServiceName::Constitution => match &constitution_service {
                Some(service) => service.app(),
                None => continue,
            },
            ServiceName::Integrity => match &integrity_service {
                Some(service) => service.app(),
                None => continue,
            },
            ServiceName::Verification => match &verification_service {
                Some(service) => service.app(),
                None => continue,
            },
            ServiceName::Simulation => simulation::app(),
            ServiceName::Consensus => match &consensus_service {
                Some(service) => service.app(),
                None => continue,
            },
            ServiceName::Evolution => evolution::app(),
        };
        if bus.is_distributed() {
            let bus = bus.clone();
            app.ready.push(ReadyCheck::new("bus", move || {
                let bus = bus.clone();
                async move { bus.check() }
            }));
        }
        if let Some(shared) = &shared {
            let shared = shared.clone();
            app.ready.push(ReadyCheck::new("redis", move || {
                let shared = shared.clone();
                async move { shared.check().await }
            }));
        }
        if auth_service.is_none() {
            let client = auth_client.clone();
            app.ready.push(ReadyCheck::new("auth", move || {
                let client = client.clone();
                async move { client.check().await }
            }));
        }
        servers.push(serve(app, &ctx, listener, shutdown.clone()));
        services.push(Running { name, addr });
    }

    Ok(Stack {
        services,
        constitutional_hash: digest.short,
        admin,
        hash,
        bus,
        shutdown,
        grace: Duration::from_millis(config.http.shutdown_grace_ms),
        servers,
        background,
    })
}

fn serve(app: ServiceApp, ctx: &HttpContext, listener: TcpListener, shutdown: Shutdown) -> JoinHandle<()> {
    let name = app.name;
    let router = http::build(app, ctx);
    tokio::spawn(async move {
        let result = axum::serve(listener, router.into_make_service())
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await;
        if let Err(e) = result {
            tracing::error!(service = %name, error = %e, "server stopped with an error");
        }
    })
}

/// Applies revocations announced on the bus to this process's verifier.
async fn follow_revocations(verifier: Arc<Verifier>, mut events: crate::kernel::bus::Subscription) {
    while let Some(event) = events.next().await {
        let jti = event.payload.get("jti").and_then(|v| v.as_str());
        let exp = event.payload.get("exp").and_then(serde_json::Value::as_u64);
        if let (Some(jti), Some(exp)) = (jti, exp) {
            verifier.revoke(jti, exp);
        }
    }
}

/// Serves the hash of each newly ratified constitution version announced on the bus.
async fn follow_ratifications(hash: HashCell, mut events: crate::kernel::bus::Subscription) {
    while let Some(event) = events.next().await {
        match event.payload.get("hash").and_then(|v| v.as_str()) {
            Some(new) if crate::kernel::constitution::is_hash(new) => {
                tracing::info!(hash = new, "constitutional hash changed by ratification");
                hash.set(new);
            }
            _ => tracing::warn!(payload = %event.payload, "ignoring a malformed ratification event"),
        }
    }
}

/// A pinned `CONSTITUTIONAL_HASH` must be the active constitution's.
fn check_pinned(config: &Config, actual: &str) -> Result<(), StartError> {
    if !config.constitutional_hash.is_empty() && config.constitutional_hash != actual {
        return Err(StartError::HashPinned { pinned: config.constitutional_hash.clone(), actual: actual.to_string() });
    }
    Ok(())
}

/// Without a shared bus, a process whose auth service is elsewhere polls its revocation list.
async fn poll_revocations(verifier: Arc<Verifier>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        if let Err(e) = verifier.load_revocations().await {
            tracing::warn!(error = %e, "cannot refresh the revocation list from the auth service");
        }
    }
}
