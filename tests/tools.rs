//! Tests of the operator tools in `acgs::tools` against real parts: real files and modes, the
//! openssl CLI (when installed), a real mutual-TLS handshake, real axum servers and real TCP
//! listeners on 127.0.0.1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use acgs::embedded::EMBEDDED;
use acgs::tools::{certs, export, healthcheck, parse_duration, wait_for};
use anyhow::{Context, Result};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use clap::{CommandFactory, Parser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::{self, pki_types};

/// Stand-in for the real subcommand enum, to check the clap derives of every tool.
#[derive(Debug, Parser)]
struct TestCli {
    #[command(subcommand)]
    command: TestCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TestCommand {
    Healthcheck(healthcheck::HealthcheckArgs),
    WaitFor(wait_for::WaitForArgs),
    Certs(certs::CertsArgs),
    Embedded(export::EmbeddedArgs),
}

// ---------------------------------------------------------------- clap

#[test]
fn clap_definitions_are_valid_and_parse() -> Result<()> {
    TestCli::command().debug_assert();

    let cli = TestCli::try_parse_from(["acgs", "healthcheck", "http://x/health", "--timeout", "500ms"])?;
    match cli.command {
        TestCommand::Healthcheck(a) => {
            assert_eq!(a.url, "http://x/health");
            assert_eq!(a.timeout, Duration::from_millis(500));
        }
        other => panic!("parsed as {other:?}"),
    }

    let cli = TestCli::try_parse_from(["acgs", "wait-for", "db:5432", "[::1]:6379", "--interval", "1s"])?;
    match cli.command {
        TestCommand::WaitFor(a) => {
            assert_eq!(a.addrs, ["db:5432", "[::1]:6379"]);
            assert_eq!(a.timeout, Duration::from_secs(30));
            assert_eq!(a.interval, Duration::from_secs(1));
        }
        other => panic!("parsed as {other:?}"),
    }

    let cli = TestCli::try_parse_from(["acgs", "certs", "--name", "dind", "--name", "10.0.0.2", "--days", "30"])?;
    match cli.command {
        TestCommand::Certs(a) => {
            assert_eq!(a.dir, PathBuf::from("./certs"));
            assert_eq!(a.names, ["dind", "10.0.0.2"]);
            assert_eq!(a.days, 30);
            assert!(!a.force);
        }
        other => panic!("parsed as {other:?}"),
    }

    let cli = TestCli::try_parse_from(["acgs", "embedded", "export", "out", "--force"])?;
    match cli.command {
        TestCommand::Embedded(export::EmbeddedArgs { command: export::EmbeddedCommand::Export(a) }) => {
            assert_eq!(a.dir, PathBuf::from("out"));
            assert!(a.force);
        }
        other => panic!("parsed as {other:?}"),
    }
    assert!(matches!(
        TestCli::try_parse_from(["acgs", "embedded", "list"])?.command,
        TestCommand::Embedded(export::EmbeddedArgs { command: export::EmbeddedCommand::List })
    ));

    // Bad values are rejected by clap, not at run time.
    assert!(TestCli::try_parse_from(["acgs", "healthcheck", "http://x", "--timeout", "3"]).is_err());
    assert!(TestCli::try_parse_from(["acgs", "certs", "--days", "0"]).is_err());
    assert!(TestCli::try_parse_from(["acgs", "wait-for"]).is_err());
    Ok(())
}

#[test]
fn parse_duration_examples() {
    assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
    assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    assert!(parse_duration("3").is_err());
}

// ---------------------------------------------------------------- certs

#[cfg(unix)]
fn mode(path: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?.permissions().mode() & 0o777)
}

fn write_pki(dir: &Path, names: &[&str]) -> Result<certs::Pki> {
    let pki = certs::generate(&certs::PkiOptions { names: names.iter().map(|s| s.to_string()).collect(), days: 30 })?;
    certs::write_layout(dir, &pki, false)?;
    Ok(pki)
}

fn openssl_available() -> bool {
    std::process::Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success())
}

fn openssl(args: &[&str], cwd: &Path) -> Result<String> {
    let out = std::process::Command::new("openssl").args(args).current_dir(cwd).output().context("running openssl")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(out.status.success(), "openssl {args:?} failed: {text}");
    Ok(text)
}

#[cfg(unix)]
#[test]
fn certs_layout_files_and_modes() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("certs");
    let pki = write_pki(&dir, &["dind", "10.1.2.3"])?;

    assert_eq!(mode(&dir)?, 0o700, "created top directory");
    for sub in ["ca", "server", "client"] {
        assert_eq!(mode(&dir.join(sub))?, 0o700, "{sub}/");
    }
    for rel in certs::LAYOUT_FILES {
        let want = if rel.ends_with("key.pem") { 0o600 } else { 0o644 };
        assert_eq!(mode(&dir.join(rel))?, want, "{rel}");
    }
    let ca = std::fs::read_to_string(dir.join("ca/cert.pem"))?;
    assert_eq!(ca, pki.ca.cert_pem);
    assert_eq!(std::fs::read_to_string(dir.join("server/ca.pem"))?, ca);
    assert_eq!(std::fs::read_to_string(dir.join("client/ca.pem"))?, ca);
    assert!(std::fs::read_to_string(dir.join("server/key.pem"))?.contains("PRIVATE KEY"));
    assert_eq!(pki.server_names, ["dind", "10.1.2.3", "localhost", "127.0.0.1", "::1"]);
    // The Debug output never shows a key.
    assert!(!format!("{pki:?}").contains("PRIVATE KEY"));
    Ok(())
}

#[test]
fn certs_verify_with_openssl() -> Result<()> {
    if !openssl_available() {
        eprintln!("openssl not installed; skipping the openssl cross-check");
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("certs");
    write_pki(&dir, &["dind", "10.1.2.3"])?;

    let out = openssl(&["verify", "-CAfile", "ca/cert.pem", "-purpose", "sslserver", "server/cert.pem"], &dir)?;
    assert!(out.contains("server/cert.pem: OK"), "{out}");
    let out = openssl(&["verify", "-CAfile", "ca/cert.pem", "-purpose", "sslclient", "client/cert.pem"], &dir)?;
    assert!(out.contains("client/cert.pem: OK"), "{out}");
    // EKUs are exclusive: the client certificate is no server certificate and vice versa.
    assert!(openssl(&["verify", "-CAfile", "ca/cert.pem", "-purpose", "sslserver", "client/cert.pem"], &dir).is_err());
    assert!(openssl(&["verify", "-CAfile", "ca/cert.pem", "-purpose", "sslclient", "server/cert.pem"], &dir).is_err());

    let sans = openssl(&["x509", "-in", "server/cert.pem", "-noout", "-ext", "subjectAltName"], &dir)?;
    for want in
        ["DNS:dind", "IP Address:10.1.2.3", "DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1"]
    {
        assert!(sans.contains(want), "missing {want} in {sans}");
    }
    let eku = openssl(&["x509", "-in", "server/cert.pem", "-noout", "-ext", "extendedKeyUsage"], &dir)?;
    assert!(eku.contains("TLS Web Server Authentication"), "{eku}");
    let eku = openssl(&["x509", "-in", "client/cert.pem", "-noout", "-ext", "extendedKeyUsage"], &dir)?;
    assert!(eku.contains("TLS Web Client Authentication"), "{eku}");
    let subject = openssl(&["x509", "-in", "client/cert.pem", "-noout", "-subject"], &dir)?;
    assert!(subject.contains("CN=client") || subject.contains("CN = client"), "{subject}");
    let ca = openssl(&["x509", "-in", "ca/cert.pem", "-noout", "-ext", "basicConstraints"], &dir)?;
    assert!(ca.contains("CA:TRUE"), "{ca}");
    // Each key belongs to its certificate.
    for who in ["ca", "server", "client"] {
        let (cert, key) = if who == "ca" {
            ("ca/cert.pem".to_string(), "ca/key.pem".to_string())
        } else {
            (format!("{who}/cert.pem"), format!("{who}/key.pem"))
        };
        let from_cert = openssl(&["x509", "-in", &cert, "-noout", "-pubkey"], &dir)?;
        let from_key = openssl(&["pkey", "-in", &key, "-pubout"], &dir)?;
        assert_eq!(from_cert, from_key, "{who} key does not match its certificate");
    }
    Ok(())
}

#[tokio::test]
async fn certs_refuse_overwrite_unless_forced() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("certs");
    let first = write_pki(&dir, &[])?;

    // Library: refuses, names the first existing file, changes nothing.
    let second = certs::generate(&certs::PkiOptions::default())?;
    let err = certs::write_layout(&dir, &second, false).err().context("second write without force must fail")?;
    let msg = format!("{err:#}");
    assert!(msg.contains("refusing to overwrite") && msg.contains("ca/cert.pem"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    assert_eq!(std::fs::read_to_string(dir.join("ca/cert.pem"))?, first.ca.cert_pem);

    // Even one leftover file counts as an existing layout.
    let partial = tmp.path().join("partial");
    std::fs::create_dir_all(partial.join("client"))?;
    std::fs::write(partial.join("client/key.pem"), "old")?;
    let msg =
        format!("{:#}", certs::write_layout(&partial, &second, false).err().context("partial layout must be refused")?);
    assert!(msg.contains("client/key.pem"), "{msg}");

    // The tool entry point refuses the same way.
    let cli = TestCli::try_parse_from(["acgs", "certs", "--dir", &dir.to_string_lossy()])?;
    let TestCommand::Certs(args) = cli.command else {
        anyhow::bail!("parsed as something else");
    };
    let msg = format!("{:#}", certs::run(args).await.err().context("run must refuse")?);
    assert!(msg.contains("refusing to overwrite"), "{msg}");

    // --force replaces everything and keeps the modes.
    let cli = TestCli::try_parse_from(["acgs", "certs", "--dir", &dir.to_string_lossy(), "--force", "--name", "dind"])?;
    let TestCommand::Certs(args) = cli.command else {
        anyhow::bail!("parsed as something else");
    };
    certs::run(args).await?;
    let new_ca = std::fs::read_to_string(dir.join("ca/cert.pem"))?;
    assert_ne!(new_ca, first.ca.cert_pem, "CA replaced");
    assert_eq!(std::fs::read_to_string(dir.join("server/ca.pem"))?, new_ca);
    #[cfg(unix)]
    {
        // A key that an operator had loosened is written afresh with 0600.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("server/key.pem"), std::fs::Permissions::from_mode(0o644))?;
        certs::write_layout(&dir, &second, true)?;
        assert_eq!(mode(&dir.join("server/key.pem"))?, 0o600);
    }
    Ok(())
}

fn load_certs(path: &Path) -> Result<Vec<pki_types::CertificateDer<'static>>> {
    use pki_types::pem::PemObject;
    pki_types::CertificateDer::pem_file_iter(path)
        .with_context(|| format!("opening {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {}", path.display()))
}

fn load_key(path: &Path) -> Result<pki_types::PrivateKeyDer<'static>> {
    use pki_types::pem::PemObject;
    pki_types::PrivateKeyDer::from_pem_file(path).with_context(|| format!("parsing {}", path.display()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(dir: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(&dir.join("server/ca.pem"))? {
        roots.add(c)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider()).build()?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&dir.join("server/cert.pem"))?, load_key(&dir.join("server/key.pem"))?)?;
    Ok(Arc::new(config))
}

fn client_config(dir: &Path, with_client_cert: bool) -> Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(&dir.join("client/ca.pem"))? {
        roots.add(c)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = if with_client_cert {
        builder
            .with_client_auth_cert(load_certs(&dir.join("client/cert.pem"))?, load_key(&dir.join("client/key.pem"))?)?
    } else {
        builder.with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Starts a TLS echo server that requires a client certificate; returns its address.
async fn start_mtls_server(dir: &Path) -> Result<SocketAddr> {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(dir)?);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let mut buf = [0u8; 4];
                    if tls.read_exact(&mut buf).await.is_ok() {
                        let _ = tls.write_all(&buf).await;
                        let _ = tls.shutdown().await;
                    }
                }
            });
        }
    });
    Ok(addr)
}

async fn tls_ping(addr: SocketAddr, config: Arc<rustls::ClientConfig>, name: &str) -> Result<()> {
    let connector = tokio_rustls::TlsConnector::from(config);
    let server_name = pki_types::ServerName::try_from(name.to_string())?;
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector.connect(server_name, tcp).await?;
    tls.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    // With TLS 1.3 a rejected client certificate shows up on the first read.
    tls.read_exact(&mut buf).await?;
    anyhow::ensure!(&buf == b"ping", "echo mismatch");
    Ok(())
}

fn expect_tls_error(result: Result<()>, want: &str) -> Result<()> {
    match result {
        Ok(()) => anyhow::bail!("handshake succeeded, expected an error containing {want:?}"),
        Err(e) => {
            let msg = format!("{e:#}");
            anyhow::ensure!(msg.contains(want), "expected {want:?} in {msg}");
            Ok(())
        }
    }
}

#[tokio::test]
async fn certs_mutual_tls_handshake() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("certs");
    write_pki(&dir, &["dind"])?;
    let addr = start_mtls_server(&dir).await?;
    let with_cert = client_config(&dir, true)?;

    // Every SAN works as the name the client checks.
    for name in ["dind", "localhost", "127.0.0.1", "::1"] {
        tls_ping(addr, with_cert.clone(), name).await.with_context(|| format!("mTLS handshake as {name}"))?;
    }
    // A name not in the certificate is rejected by the client.
    expect_tls_error(tls_ping(addr, with_cert.clone(), "other.example").await, "not valid for name")?;
    // Without a client certificate the server refuses.
    expect_tls_error(tls_ping(addr, client_config(&dir, false)?, "localhost").await, "CertificateRequired")?;
    // A client certificate from another CA is refused too.
    let other = tmp.path().join("other");
    write_pki(&other, &[])?;
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(&dir.join("client/ca.pem"))? {
        roots.add(c)?;
    }
    let foreign = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(load_certs(&other.join("client/cert.pem"))?, load_key(&other.join("client/key.pem"))?)?;
    expect_tls_error(tls_ping(addr, Arc::new(foreign), "localhost").await, "alert")?;
    Ok(())
}

// ---------------------------------------------------------------- healthcheck

async fn start_http() -> Result<SocketAddr> {
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/fail", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "down") }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            }),
        )
        .route("/moved", get(|| async { axum::response::Redirect::temporary("/ok") }));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

#[tokio::test]
async fn healthcheck_against_real_server() -> Result<()> {
    let addr = start_http().await?;
    let timeout = Duration::from_millis(500);

    let status = healthcheck::check(&format!("http://{addr}/ok"), timeout).await?;
    assert_eq!(status.as_u16(), 200);

    let msg = format!(
        "{:#}",
        healthcheck::check(&format!("http://{addr}/fail"), timeout).await.err().context("500 must fail")?
    );
    assert!(msg.contains("500") && msg.contains("/fail"), "{msg}");

    let started = Instant::now();
    let msg = format!(
        "{:#}",
        healthcheck::check(&format!("http://{addr}/slow"), timeout).await.err().context("slow must fail")?
    );
    assert!(msg.contains("did not answer within 500ms"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());

    let msg = format!(
        "{:#}",
        healthcheck::check(&format!("http://{addr}/moved"), timeout).await.err().context("redirect must fail")?
    );
    assert!(msg.contains("307"), "{msg}");

    // A port nobody listens on.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        l.local_addr()?
    };
    let msg = format!(
        "{:#}",
        healthcheck::check(&format!("http://{closed}/health"), timeout).await.err().context("closed port must fail")?
    );
    assert!(msg.to_lowercase().contains("refused") && msg.contains(&closed.to_string()), "{msg}");

    let msg = format!("{:#}", healthcheck::check("not a url", timeout).await.err().context("bad URL must fail")?);
    assert!(msg.contains("invalid healthcheck URL"), "{msg}");

    // Through the clap struct and `run`.
    let cli = TestCli::try_parse_from(["acgs", "healthcheck", &format!("http://{addr}/ok"), "--timeout", "2s"])?;
    let TestCommand::Healthcheck(args) = cli.command else {
        anyhow::bail!("parsed as something else");
    };
    healthcheck::run(args).await?;
    Ok(())
}

// ---------------------------------------------------------------- wait-for

async fn free_port() -> Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    Ok(l.local_addr()?)
}

#[tokio::test]
async fn wait_for_listener_that_appears_later() -> Result<()> {
    let addr = free_port().await?;
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listener = TcpListener::bind(addr).await?;
        // Keep it open for the rest of the test.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(listener);
        anyhow::Ok(())
    });
    let already = TcpListener::bind("127.0.0.1:0").await?;
    let started = Instant::now();
    // One by IP, one by name (localhost may resolve to ::1 first; any address counts).
    let addrs = vec![addr.to_string(), format!("localhost:{}", already.local_addr()?.port())];
    wait_for::wait_for(&addrs, Duration::from_secs(5), Duration::from_millis(50)).await?;
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(250), "returned too early: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    late.abort();
    Ok(())
}

#[tokio::test]
async fn wait_for_times_out_naming_what_is_down() -> Result<()> {
    let down = free_port().await?;
    let up = TcpListener::bind("127.0.0.1:0").await?;
    let up_addr = up.local_addr()?.to_string();
    let started = Instant::now();
    let err = wait_for::wait_for(
        &[up_addr.clone(), down.to_string()],
        Duration::from_millis(500),
        Duration::from_millis(100),
    )
    .await
    .err()
    .context("must time out")?;
    let elapsed = started.elapsed();
    let msg = format!("{err:#}");
    assert!(msg.contains("timed out after 500ms"), "{msg}");
    assert!(msg.contains(&down.to_string()), "{msg}");
    assert!(!msg.contains(&up_addr), "names only what is down: {msg}");
    assert!(msg.to_lowercase().contains("refused"), "gives the last error: {msg}");
    assert!(elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(2), "{elapsed:?}");

    // Malformed addresses fail at once.
    for bad in ["nohost", "host:", "host:99999", "::1:80", ":80"] {
        let started = Instant::now();
        let res = wait_for::wait_for(&[bad.to_string()], Duration::from_secs(5), Duration::from_millis(50)).await;
        let msg = format!("{:#}", res.err().with_context(|| format!("{bad} must be rejected"))?);
        assert!(msg.contains("invalid address"), "{bad}: {msg}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    // An unresolvable name is reported as such.
    let msg = format!(
        "{:#}",
        wait_for::wait_for(
            &["no-such-host.invalid:80".to_string()],
            Duration::from_millis(300),
            Duration::from_millis(50)
        )
        .await
        .err()
        .context("unresolvable must fail")?
    );
    assert!(msg.contains("no-such-host.invalid:80") && msg.contains("cannot resolve"), "{msg}");
    Ok(())
}

// ---------------------------------------------------------------- embedded export

/// Every file under the on-disk `embedded/` directory, relative to it, sorted.
fn files_on_disk(root: &Path) -> Result<Vec<PathBuf>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else {
                out.push(path.strip_prefix(root)?.to_path_buf());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

#[tokio::test]
async fn embedded_export_and_list() -> Result<()> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("embedded");
    let on_disk = files_on_disk(&source)?;
    assert!(on_disk.contains(&PathBuf::from("README.md")));
    assert_eq!(export::list(&EMBEDDED), on_disk, "the binary carries exactly embedded/");

    let tmp = tempfile::tempdir()?;
    let dest = tmp.path().join("out");
    let written = export::export(&EMBEDDED, &dest, false)?;
    assert_eq!(written.len(), on_disk.len());
    for rel in &on_disk {
        assert_eq!(std::fs::read(dest.join(rel))?, std::fs::read(source.join(rel))?, "{}", rel.display());
    }

    // Refuses to overwrite, naming the file, and writes nothing.
    std::fs::write(dest.join("README.md"), "edited")?;
    let msg = format!("{:#}", export::export(&EMBEDDED, &dest, false).err().context("must refuse")?);
    assert!(msg.contains("refusing to overwrite") && msg.contains("README.md"), "{msg}");
    assert_eq!(std::fs::read_to_string(dest.join("README.md"))?, "edited");

    // --force through the clap struct and `run` restores it; unrelated files stay.
    std::fs::write(dest.join("mine.txt"), "keep")?;
    let cli = TestCli::try_parse_from(["acgs", "embedded", "export", &dest.to_string_lossy(), "--force"])?;
    let TestCommand::Embedded(args) = cli.command else {
        anyhow::bail!("parsed as something else");
    };
    export::run(args).await?;
    assert_eq!(std::fs::read(dest.join("README.md"))?, std::fs::read(source.join("README.md"))?);
    assert_eq!(std::fs::read_to_string(dest.join("mine.txt"))?, "keep");

    // `list` through `run`.
    let cli = TestCli::try_parse_from(["acgs", "embedded", "list"])?;
    let TestCommand::Embedded(args) = cli.command else {
        anyhow::bail!("parsed as something else");
    };
    export::run(args).await?;
    Ok(())
}
