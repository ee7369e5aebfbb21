//! `acgs certs`: a small PKI for mutual TLS, generated with rcgen instead of openssl.
//!
//! One CA, a server certificate signed by it (EKU serverAuth; SANs: every `--name`, plus
//! `localhost`, `127.0.0.1` and `::1`) and a client certificate (EKU clientAuth, CN `client`),
//! written in the layout of Docker's `DOCKER_TLS_CERTDIR`:
//!
//! ```text
//! DIR/ca/cert.pem      DIR/ca/key.pem
//! DIR/server/ca.pem    DIR/server/cert.pem    DIR/server/key.pem
//! DIR/client/ca.pem    DIR/client/cert.pem    DIR/client/key.pem
//! ```
//!
//! Keys are ECDSA P-256, written mode 0600; the `ca/`, `server/` and `client/` directories are
//! 0700. An existing layout is never overwritten without `force`. [`generate`] and
//! [`write_layout`] are the library half the bootstrapper reuses (§6 step 2 of DESIGN.md).

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use time::OffsetDateTime;

/// Names always present in the server certificate, after the ones given.
pub const DEFAULT_SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Default validity in days (the longest browsers accept for a TLS server certificate).
pub const DEFAULT_DAYS: u32 = 825;

/// Generate a CA, a server and a client certificate in Docker's DOCKER_TLS_CERTDIR layout.
#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Directory to write ca/, server/ and client/ into (created if missing).
    #[arg(long, env = "ACGS_CERTS_DIR", default_value = "./certs", value_name = "DIR")]
    pub dir: PathBuf,

    /// Extra DNS name or IP address for the server certificate (repeatable; from the
    /// environment: comma-separated). localhost, 127.0.0.1 and ::1 are always included.
    #[arg(long = "name", env = "ACGS_CERTS_NAMES", value_delimiter = ',', value_name = "NAME")]
    pub names: Vec<String>,

    /// Validity of every certificate, in days from now.
    #[arg(
        long,
        env = "ACGS_CERTS_DAYS",
        default_value_t = DEFAULT_DAYS,
        value_parser = clap::value_parser!(u32).range(1..=36_500),
        value_name = "N"
    )]
    pub days: u32,

    /// Replace an existing layout in DIR (all eight files are regenerated).
    #[arg(long)]
    pub force: bool,
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiOptions {
    /// Extra server names (DNS names or IP addresses); [`DEFAULT_SERVER_NAMES`] are added.
    pub names: Vec<String>,
    /// Validity in days from now, for all three certificates.
    pub days: u32,
}

impl Default for PkiOptions {
    fn default() -> Self {
        Self { names: Vec::new(), days: DEFAULT_DAYS }
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertAndKey {
    /// The certificate, PEM ("CERTIFICATE").
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM ("PRIVATE KEY").
    pub key_pem: String,
}

impl std::fmt::Debug for CertAndKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAndKey").field("cert_pem", &self.cert_pem).field("key_pem", &"<redacted>").finish()
    }
}

/// A generated PKI: CA, server and client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pki {
    /// The self-signed CA.
    pub ca: CertAndKey,
    /// Server certificate (serverAuth) signed by the CA.
    pub server: CertAndKey,
    /// Client certificate (clientAuth, CN `client`) signed by the CA.
    pub client: CertAndKey,
    /// The server certificate's subject alternative names, in order.
    pub server_names: Vec<String>,
}

/// One file of the on-disk layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutFile<'a> {
    /// Path relative to the layout directory, e.g. `server/key.pem`.
    pub path: &'static str,
    /// PEM contents.
    pub contents: &'a str,
    /// Unix permission bits (0o600 for keys, 0o644 for certificates).
    pub mode: u32,
}

impl Pki {
    /// The eight files of the DOCKER_TLS_CERTDIR layout, in writing order.
    pub fn layout(&self) -> [LayoutFile<'_>; 8] {
        let f = |path, contents, mode| LayoutFile { path, contents, mode };
        [
            f("ca/cert.pem", self.ca.cert_pem.as_str(), 0o644),
            f("ca/key.pem", self.ca.key_pem.as_str(), 0o600),
            f("server/ca.pem", self.ca.cert_pem.as_str(), 0o644),
            f("server/cert.pem", self.server.cert_pem.as_str(), 0o644),
            f("server/key.pem", self.server.key_pem.as_str(), 0o600),
            f("client/ca.pem", self.ca.cert_pem.as_str(), 0o644),
            f("client/cert.pem", self.client.cert_pem.as_str(), 0o644),
            f("client/key.pem", self.client.key_pem.as_str(), 0o600),
        ]
    }
}

/// The sub-directories of the layout (mode 0700).
pub const LAYOUT_DIRS: [&str; 3] = ["ca", "server", "client"];

/// The eight files of the layout, relative to its directory, in the order [`Pki::layout`]
/// returns them.
pub const LAYOUT_FILES: [&str; 8] = [
    "ca/cert.pem",
    "ca/key.pem",
    "server/ca.pem",
    "server/cert.pem",
    "server/key.pem",
    "client/ca.pem",
    "client/cert.pem",
    "client/key.pem",
];

/// Generates the CA, server and client certificates in memory.
pub fn generate(opts: &PkiOptions) -> Result<Pki> {
    if opts.days == 0 {
        bail!("certificate validity must be at least 1 day");
    }
    let server_names = server_names(&opts.names)?;
    let now = OffsetDateTime::now_utc();
    // Back-date an hour so a peer whose clock is a little behind still accepts the certificates.
    let not_before = now - time::Duration::hours(1);
    let not_after = now + time::Duration::days(i64::from(opts.days));

    // CA
    let ca_key = KeyPair::generate().context("generating the CA key")?;
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params.distinguished_name.push(DnType::OrganizationName, "acgs");
    // A random suffix keeps CAs of different stacks apart in trust stores and openssl's
    // subject-hash lookups.
    ca_params.distinguished_name.push(DnType::CommonName, format!("acgs CA {:08x}", rand::random::<u32>()));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca_cert = ca_params.self_signed(&ca_key).context("self-signing the CA certificate")?;
    let ca = CertAndKey { cert_pem: ca_cert.pem(), key_pem: ca_key.serialize_pem() };
    let issuer = Issuer::new(ca_params, ca_key);

    // Server
    let mut server_params = leaf_params(not_before, not_after, &server_names[0]);
    server_params.subject_alt_names = server_names.iter().map(|n| san(n)).collect::<Result<_>>()?;
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = sign_leaf(&server_params, &issuer).context("issuing the server certificate")?;

    // Client
    let mut client_params = leaf_params(not_before, not_after, "client");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = sign_leaf(&client_params, &issuer).context("issuing the client certificate")?;

    Ok(Pki { ca, server, client, server_names })
}

/// Given names first (in order, without duplicates), then the defaults not already given.
fn server_names(given: &[String]) -> Result<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut names = Vec::new();
    for raw in given.iter().map(String::as_str).chain(DEFAULT_SERVER_NAMES) {
        let name = raw.trim();
        if name.is_empty() {
            bail!("empty --name given for the server certificate");
        }
        // Compare IP addresses in canonical form (so ::0001 and ::1 are one name).
        let key = match name.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => name.to_ascii_lowercase(),
        };
        if seen.insert(key) {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

fn san(name: &str) -> Result<SanType> {
    Ok(match name.parse::<IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(
            name.to_string().try_into().with_context(|| format!("invalid server name {name:?} (not ASCII)"))?,
        ),
    })
}

fn leaf_params(not_before: OffsetDateTime, not_after: OffsetDateTime, common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, "acgs");
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

fn sign_leaf(params: &CertificateParams, issuer: &Issuer<'_, KeyPair>) -> Result<CertAndKey> {
    let key = KeyPair::generate().context("generating a key")?;
    let cert = params.signed_by(&key, issuer).context("signing")?;
    Ok(CertAndKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Returns the first file of the layout that already exists in `dir`, if any.
pub fn existing_layout_file(dir: &Path) -> Option<PathBuf> {
    LAYOUT_FILES.iter().map(|rel| dir.join(rel)).find(|p| fs::symlink_metadata(p).is_ok())
}

fn refusal(dir: &Path, existing: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "refusing to overwrite existing certificates: {} exists (use --force to replace the layout in {})",
        existing.display(),
        dir.display()
    )
}

/// Writes `pki` into `dir` in the DOCKER_TLS_CERTDIR layout.
///
/// Refuses (before writing anything) if any file of the layout exists, unless `force`, in which
/// case existing files are removed and written afresh (never written through a symlink). Keys
/// get mode 0600, the sub-directories 0700; `dir` itself is created 0700 if missing and left
/// alone otherwise.
pub fn write_layout(dir: &Path, pki: &Pki, force: bool) -> Result<()> {
    if !force && let Some(existing) = existing_layout_file(dir) {
        return Err(refusal(dir, &existing));
    }
    create_private_dir(dir, false)?;
    for sub in LAYOUT_DIRS {
        create_private_dir(&dir.join(sub), true)?;
    }
    for file in pki.layout() {
        let path = dir.join(file.path);
        if force && fs::symlink_metadata(&path).is_ok() {
            fs::remove_file(&path).with_context(|| format!("removing old {}", path.display()))?;
        }
        write_new_file(&path, file.contents.as_bytes(), file.mode)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Generates the PKI and writes it, printing where it went.
pub async fn run(args: CertsArgs) -> Result<()> {
    // Check first, so a refusal does not waste key generation and says one line.
    if !args.force
        && let Some(existing) = existing_layout_file(&args.dir)
    {
        return Err(refusal(&args.dir, &existing));
    }
    let pki = generate(&PkiOptions { names: args.names, days: args.days })?;
    write_layout(&args.dir, &pki, args.force)?;
    println!(
        "wrote CA, server and client certificates to {} (server names: {}; valid {} days)",
        args.dir.display(),
        pki.server_names.join(", "),
        args.days
    );
    Ok(())
}

/// Creates `dir` (and missing parents) with mode 0700; with `chmod`, also tightens an existing
/// directory to 0700.
fn create_private_dir(dir: &Path, chmod: bool) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating directory {}", dir.display()))?;
        if chmod {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .with_context(|| format!("setting mode 0700 on {}", dir.display()))?;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = chmod;
        fs::create_dir_all(dir).with_context(|| format!("creating directory {}", dir.display()))?;
    }
    Ok(())
}

/// Creates a new file (never an existing one) with `mode` from the start, so a key is never
/// readable by others even for a moment.
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path)?;
    // The umask may have cleared bits of 0o644; make the mode exact.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_order_matches_layout_files() -> Result<()> {
        let pki = generate(&PkiOptions::default())?;
        let paths: Vec<_> = pki.layout().iter().map(|f| f.path).collect();
        assert_eq!(paths, LAYOUT_FILES);
        Ok(())
    }

    #[test]
    fn server_names_dedup_and_defaults() -> Result<()> {
        let names = server_names(&["dind".into(), "LOCALHOST".into(), "::0001".into()])?;
        assert_eq!(names, ["dind", "LOCALHOST", "::0001", "127.0.0.1"]);
        assert!(server_names(&[" ".into()]).is_err());
        Ok(())
    }
}
