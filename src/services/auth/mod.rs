//! The auth service (port 8000): users with argon2id passwords, the six roles, machine clients,
//! OAuth 2.0 token issuance (password, client_credentials, refresh_token with rotation and reuse
//! detection), RFC 7009 revocation, RFC 7662 introspection, the JWKS and OpenID discovery
//! documents, key rotation, and lock-out after repeated failed logins.
//!
//! Other services never read this module's tables: they verify tokens locally with the kernel's
//! verifier, which gets keys and revocations through [`client::AuthClient`].
//!
//! # Audit events
//!
//! Every change is recorded in the audit outbox in the transaction that makes it ([`audit`]);
//! failed logins, which change nothing but a counter, are recorded too. Subjects are
//! `user:<id>`, `client:<id>`, `username:<name>` (a login for an unknown name), `key:<kid>`,
//! `token:<jti>` and `refresh_family:<id>`; the actor is the id of the admin making the change,
//! the account logging in, `anonymous` or `system`. Passwords, secrets and tokens never appear.
//!
//! | kind | when |
//! |---|---|
//! | `auth.login.success` | a password or client_credentials grant issued a token |
//! | `auth.login.failure` | wrong password or secret, unknown name, locked or disabled account (`data.reason`) |
//! | `auth.login.lockout` | that failure locked the account |
//! | `auth.token.refreshed` | a refresh token was used and rotated |
//! | `auth.token.refresh_reused` | a used refresh token was presented again; its family is revoked |
//! | `auth.token.revoked` | an access token or a refresh family was revoked (RFC 7009) |
//! | `auth.user.created` / `.updated` / `.deleted` | user administration (and the first admin) |
//! | `auth.client.created` / `.updated` / `.deleted` | machine-client administration |
//! | `auth.key.created` / `auth.key.rotated` | the first signing key, and each rotation |

pub mod client;
mod keys;
mod routes;
mod secrets;
mod store;
mod tokens;

use std::path::PathBuf;
use std::sync::Arc;

use prometheus::{IntCounterVec, Opts};

use crate::config::{AuthSettings, Config};
use crate::kernel::auth::SharedRevocations;
use crate::kernel::auth::{Role, now_secs};
use crate::kernel::bus::{Bus, subjects};
use crate::kernel::http::{ReadyCheck, ServiceApp};
use crate::kernel::metrics::Metrics;
use crate::kernel::service::ServiceName;
use crate::kernel::storage::{Db, StorageError, Tx};

use keys::KeyRing;
use store::{User, Users};

/// Shortest password accepted for users (NIST SP 800-63B asks for at least 8; we ask for 12).
pub const MIN_PASSWORD_LEN: usize = 12;

/// Why the auth service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("auth storage: {0}")]
    Storage(#[from] StorageError),
    #[error("auth signing keys: {0}")]
    Keys(#[from] keys::KeyError),
    #[error("admin password: {0}")]
    AdminPassword(String),
    #[error("cannot write {path}: {reason}")]
    WriteFile { path: String, reason: String },
}

/// The auth service's state, shared by its routes and its in-process client.
pub struct AuthCore {
    db: Db,
    settings: AuthSettings,
    keys: KeyRing,
    bus: Bus,
    metrics: Metrics,
    logins: IntCounterVec,
    tokens_issued: IntCounterVec,
    /// The revocation list shared with other replicas (Redis), if configured.
    shared: Option<Arc<dyn SharedRevocations>>,
    /// Recently served `/users/me` views (1 s).
    account_views: store::AccountViews,
}

/// What first start did about the admin account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminBootstrap {
    /// An admin already existed.
    Existing,
    /// Created with the password from `ACGS_ADMIN_PASSWORD` (or `admin_password`).
    CreatedWithConfiguredPassword,
    /// Created with a generated password, written to this file (mode 0600).
    CreatedWithGeneratedPassword(PathBuf),
}

/// A running auth service.
#[derive(Clone)]
pub struct AuthService {
    core: Arc<AuthCore>,
}

impl AuthService {
    /// Opens storage, applies migrations, loads (or creates) the signing keys and, on first start,
    /// creates the `admin` account.
    pub async fn start(
        config: &Config,
        bus: Bus,
        shared: Option<Arc<dyn SharedRevocations>>,
    ) -> Result<(AuthService, AdminBootstrap), StartError> {
        let db = Db::open(ServiceName::Auth.as_str(), &config.storage()).await?;
        let migrations = crate::embedded::migrations(ServiceName::Auth)?;
        db.migrate(&migrations).await?;
        let keys = KeyRing::load(&db).await?;
        let metrics = Metrics::new(ServiceName::Auth.as_str());
        let logins = IntCounterVec::new(
            Opts::new(
                "acgs_auth_logins_total",
                "Password logins by outcome (success, failure, lockout, locked, disabled)",
            ),
            &["outcome"],
        )
        .expect("static metric definition is valid");
        let tokens_issued = IntCounterVec::new(
            Opts::new("acgs_auth_tokens_issued_total", "Access tokens issued, by grant type"),
            &["grant"],
        )
        .expect("static metric definition is valid");
        metrics.register(&logins);
        metrics.register(&tokens_issued);
        let core = Arc::new(AuthCore {
            db,
            settings: config.auth.clone(),
            keys,
            bus,
            metrics,
            logins,
            tokens_issued,
            shared,
            account_views: store::AccountViews::default(),
        });
        let bootstrap = bootstrap_admin(&core, config).await?;
        bootstrap_service_client(&core, config).await?;
        Ok((AuthService { core }, bootstrap))
    }

    /// The in-process client other services in this process use.
    pub fn client(&self) -> client::AuthClient {
        client::AuthClient::in_process(self.core.clone())
    }

    /// The relay that delivers this service's audit outbox to `sink` (the integrity log).
    pub fn outbox_relay(
        &self,
        sink: std::sync::Arc<dyn crate::kernel::audit::AuditSink>,
    ) -> crate::kernel::audit::Relay {
        crate::kernel::audit::Relay::new(self.core.db.clone(), sink)
    }

    /// The HTTP application of this service.
    pub fn app(&self) -> ServiceApp {
        ServiceApp {
            name: ServiceName::Auth,
            routes: routes::router(self.core.clone()),
            openapi: routes::openapi(),
            ready: vec![ReadyCheck::storage(self.core.db.clone())],
            metrics: self.core.metrics.clone(),
        }
    }
}

impl AuthCore {
    /// The JWKS currently published.
    pub(crate) fn jwks_json(&self) -> serde_json::Value {
        self.keys.current().jwks_json.clone()
    }

    /// Revokes an access token by id, until it would have expired anyway, and tells every
    /// verifier through the bus. `actor` is who asked (the token's own subject for RFC 7009).
    pub(crate) async fn revoke_access(&self, jti: &str, exp: u64, actor: &str) -> Result<(), StorageError> {
        // The shared list first: a revocation that other replicas would not see is not made.
        if let Some(shared) = &self.shared {
            shared.revoke(jti, exp).await.map_err(StorageError::Unavailable)?;
        }
        let mut tx = self.db.begin().await?;
        store::Revocations::insert(&mut tx, jti, exp as i64, now_secs() as i64).await?;
        audit(&mut tx, "auth.token.revoked", &format!("token:{jti}"), actor, serde_json::json!({ "exp": exp })).await?;
        tx.commit().await?;
        self.bus.publish(subjects::TOKEN_REVOKED, serde_json::json!({ "jti": jti, "exp": exp }));
        Ok(())
    }

    /// How many enabled users hold `role` (for the constitution service's quorum).
    pub(crate) async fn count_with_role(&self, role: &str) -> Result<u64, StorageError> {
        Users(&self.db).count_with_role(role).await
    }

    pub(crate) async fn live_revocations(&self) -> Result<Vec<(String, u64)>, StorageError> {
        store::Revocations(&self.db).live(now_secs() as i64).await
    }

    /// Records an event that comes with no other change (a failed login), in its own transaction.
    async fn audit_alone(
        &self,
        kind: &str,
        subject: &str,
        actor: &str,
        data: serde_json::Value,
    ) -> Result<(), StorageError> {
        let mut tx = self.db.begin().await?;
        audit(&mut tx, kind, subject, actor, data).await?;
        tx.commit().await
    }
}

/// The actor of an event caused by someone not (yet) authenticated.
const ANONYMOUS: &str = "anonymous";

/// Records an auth audit event in the outbox, inside the transaction of the change it describes.
async fn audit(
    tx: &mut Tx,
    kind: &str,
    subject: &str,
    actor: &str,
    data: serde_json::Value,
) -> Result<(), StorageError> {
    crate::kernel::audit::record_new(tx, ServiceName::Auth, kind, subject, actor, data).await
}

/// Checks a new password against the rules.
pub fn check_password(password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_LEN {
        return Err(format!("password must be at least {MIN_PASSWORD_LEN} characters"));
    }
    if password.len() > 1024 {
        return Err("password must be at most 1024 bytes".into());
    }
    Ok(())
}

async fn bootstrap_admin(core: &AuthCore, config: &Config) -> Result<AdminBootstrap, StartError> {
    let users = Users(&core.db);
    if users.count().await? > 0 {
        return Ok(AdminBootstrap::Existing);
    }
    let (password, generated) = if config.admin_password.is_empty() {
        (secrets::random_token(), true)
    } else {
        check_password(&config.admin_password).map_err(StartError::AdminPassword)?;
        (config.admin_password.clone(), false)
    };
    let hash = secrets::hash_password(password.clone()).await.map_err(StartError::AdminPassword)?;
    let now = now_secs() as i64;
    let admin = User {
        id: uuid::Uuid::now_v7().to_string(),
        username: "admin".into(),
        password_hash: hash,
        roles: vec![Role::Admin],
        disabled: false,
        failed_logins: 0,
        locked_until: 0,
        created_at: now,
        updated_at: now,
    };
    let mut tx = core.db.begin().await?;
    if !Users::insert(&mut tx, &admin, true).await? {
        // Another replica created it first.
        return Ok(AdminBootstrap::Existing);
    }
    let data = serde_json::json!({ "username": admin.username, "roles": admin.roles });
    audit(&mut tx, "auth.user.created", &format!("user:{}", admin.id), "system", data).await?;
    tx.commit().await?;
    if !generated {
        return Ok(AdminBootstrap::CreatedWithConfiguredPassword);
    }
    let path = config.data_dir.join("admin-password");
    write_secret_file(&path, &format!("{password}\n"))
        .map_err(|e| StartError::WriteFile { path: path.display().to_string(), reason: e.to_string() })?;
    Ok(AdminBootstrap::CreatedWithGeneratedPassword(path))
}

/// Makes the services' machine client (`service_client_id`, role `service`) exist with the
/// configured secret: created if missing, its secret replaced if the configuration gives another
/// (a rotation). Without a configured secret an existing client is left alone, and a missing one
/// is created with a generated secret written to `<data_dir>/service-client-secret` (0600), for
/// the operator to give to the services in other processes.
async fn bootstrap_service_client(core: &AuthCore, config: &Config) -> Result<(), StartError> {
    use store::{Client, Clients};
    let id = config.service_client_id.as_str();
    let existing = Clients(&core.db).by_id(id).await?;
    let configured = (!config.service_client_secret.is_empty()).then_some(config.service_client_secret.as_str());
    let now = now_secs() as i64;
    let mut tx = core.db.begin().await?;
    match (existing, configured) {
        (Some(client), Some(secret))
            if client.secret_hash != secrets::digest(secret) || !client.roles.contains(&Role::Service) =>
        {
            let updated = Client {
                secret_hash: secrets::digest(secret),
                roles: vec![Role::Service],
                disabled: false,
                updated_at: now,
                ..client
            };
            Clients::update(&mut tx, &updated).await?;
            let data = serde_json::json!({ "secret": "replaced from configuration", "roles": updated.roles });
            audit(&mut tx, "auth.client.updated", &format!("client:{id}"), "system", data).await?;
        }
        (Some(_), _) => return Ok(()),
        (None, configured) => {
            let generated = configured.is_none().then(secrets::random_token);
            let secret = configured.or(generated.as_deref()).unwrap_or_default();
            let client = Client {
                id: id.to_string(),
                name: "acgs services".into(),
                secret_hash: secrets::digest(secret),
                roles: vec![Role::Service],
                disabled: false,
                created_at: now,
                updated_at: now,
            };
            Clients::insert(&mut tx, &client).await?;
            let data = serde_json::json!({ "name": client.name, "roles": client.roles });
            audit(&mut tx, "auth.client.created", &format!("client:{id}"), "system", data).await?;
            if let Some(secret) = &generated {
                let path = config.data_dir.join("service-client-secret");
                write_secret_file(&path, &format!("{secret}\n"))
                    .map_err(|e| StartError::WriteFile { path: path.display().to_string(), reason: e.to_string() })?;
                tracing::info!(client = id, path = %path.display(), "created the services' machine client; its secret is in this file");
            }
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Writes a file readable by its owner only (0600), creating its directory (0700) if needed.
pub fn write_secret_file(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}
