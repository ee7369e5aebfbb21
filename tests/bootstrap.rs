//! `acgs bootstrap` against the real Docker daemon with the images scripts/images.sh builds (no
//! registry is reachable): the whole stack in Docker-in-Docker, ready, proved end to end by
//! `bootstrap test`, locked down (mutual TLS, loopback only, non-root, read-only), scraped by
//! Prometheus, backed up, taken down twice; the shim infrastructure from an image archive on an
//! inner daemon that starts empty; a bootstrap that fails half-way cleaning up after itself.
//!
//! Slow (minutes): `ACGS_SLOW_TESTS=0` skips them for quick local runs; CI runs them.
//! scripts/test.sh starts Docker, builds the images and the static binary, and sets
//! `ACGS_TEST_*_IMAGE` and `ACGS_TEST_STATIC_BIN`.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use acgs::bootstrap::engine::Engine;
use common::process::{BIN, serial};
use serde_json::Value;

fn slow_tests_off() -> bool {
    if std::env::var("ACGS_SLOW_TESTS").as_deref() == Ok("0") {
        eprintln!("skipped: ACGS_SLOW_TESTS=0 (the Docker suites run in CI)");
        return true;
    }
    // scripts/test.sh runs the suite twice, the second time against its PostgreSQL; a stack
    // brings its own, so these run once, in the first pass.
    if std::env::var("ACGS_TEST_DATABASE_URL").is_ok_and(|v| !v.is_empty()) {
        eprintln!("skipped in the PostgreSQL pass: the stack brings its own PostgreSQL (ran in the first pass)");
        return true;
    }
    false
}

fn required(var: &str) -> String {
    std::env::var(var).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| {
        panic!("{var} is not set: run scripts/test.sh, which starts Docker and builds the images and the static binary")
    })
}

/// A stack name no other run uses.
fn stack_name(kind: &str) -> String {
    format!("t{}-{kind}", std::process::id())
}

/// `acgs ARGS` with the Docker environment, the images and the stack directory.
fn acgs(dir: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    for var in ["DOCKER_HOST", "HOME"] {
        if let Ok(value) = std::env::var(var) {
            command.env(var, value);
        }
    }
    command.env("ACGS_BOOTSTRAP_DIR", dir);
    command.output().expect("acgs runs")
}

fn ok(output: &Output) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status.code());
    format!("{stdout}{stderr}")
}

/// The flags every bootstrap here shares: free ports, the local images, the static binary.
fn up_flags(name: &str, dind: &str) -> Vec<String> {
    let mut flags: Vec<String> = [
        "bootstrap",
        "--name",
        name,
        "--port-base",
        "0",
        "--prometheus-port",
        "0",
        "--grafana-port",
        "0",
        "--dind-port",
        "0",
        "--timeout",
        "300s",
    ]
    .map(String::from)
    .to_vec();
    flags.extend(["--acgs-binary".into(), required("ACGS_TEST_STATIC_BIN")]);
    flags.extend(["--dind-image".into(), dind.to_string()]);
    flags
}

fn image_flags() -> Vec<String> {
    let mut flags = Vec::new();
    for (flag, var) in [
        ("--postgres-image", "ACGS_TEST_POSTGRES_IMAGE"),
        ("--redis-image", "ACGS_TEST_REDIS_IMAGE"),
        ("--nats-image", "ACGS_TEST_NATS_IMAGE"),
        ("--prometheus-image", "ACGS_TEST_PROMETHEUS_IMAGE"),
        ("--solver-image", "ACGS_TEST_SOLVER_IMAGE"),
    ] {
        flags.extend([flag.to_string(), required(var)]);
    }
    flags
}

/// Takes the stack down with its volumes when the test ends, passed or not.
struct Cleanup {
    dir: std::path::PathBuf,
    name: String,
    /// An image tag the test made.
    tag: Option<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let out = acgs(&self.dir, &["bootstrap", "--name", &self.name, "down", "--volumes"]);
        if !out.status.success() {
            eprintln!("cleanup of stack {} failed: {}", self.name, String::from_utf8_lossy(&out.stderr));
        }
        if let Some(tag) = &self.tag {
            let _ = Command::new("docker").args(["rmi", tag]).output();
        }
    }
}

fn run(dir: &Path, args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    acgs(dir, &args)
}

fn state(dir: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(name).join("stack.json")).expect("stack.json");
    serde_json::from_str(&text).expect("stack.json is JSON")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// The inner daemon, over mutual TLS with the stack's client certificate.
fn inner(rt: &tokio::runtime::Runtime, dir: &Path, name: &str, port: u16) -> Engine {
    rt.block_on(async {
        Engine::tls(port, &dir.join(name).join("certs")).expect("tls").negotiate().await.expect("inner daemon")
    })
}

/// Ports of LISTEN sockets from /proc/net/tcp and tcp6, with their local address.
fn listeners() -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 3 && fields[3] == "0A" {
                let (addr, port) = fields[1].split_once(':').expect("addr:port");
                out.push((addr.to_string(), u16::from_str_radix(port, 16).expect("hex port")));
            }
        }
    }
    out
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse().ok()).expect("a port in the URL")
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

#[test]
fn the_whole_stack_in_docker_in_docker_is_ready_works_end_to_end_and_goes_away() {
    if slow_tests_off() {
        return;
    }
    let _serial = serial();
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let name = stack_name("full");
    let _cleanup = Cleanup { dir: dir.to_path_buf(), name: name.clone(), tag: None };
    let mut flags = up_flags(&name, &required("ACGS_TEST_DIND_IMAGE"));
    flags.extend(image_flags());
    flags.push("--no-grafana".into()); // no Grafana image without a registry (its files are checked statically)
    let listening_before = listeners();
    let started = Instant::now();
    let out = ok(&run(dir, &flags));
    let took = started.elapsed();
    eprintln!("bootstrap --mode dind (images, Prometheus, solver) ready in {:.1} s\n{out}", took.as_secs_f64());
    let stack = state(dir, &name);
    let endpoints = stack["endpoints"].as_object().expect("endpoints").clone();
    for part in
        ["auth", "constitution", "integrity", "verification", "simulation", "consensus", "evolution", "prometheus"]
    {
        assert!(endpoints.contains_key(part), "{part} in {endpoints:?}");
    }
    let dind_port = stack["dind_port"].as_u64().expect("dind port") as u16;

    // status: a table, exit 0 when everything runs.
    let status = ok(&acgs(dir, &["bootstrap", "--name", &name, "status"]));
    for part in ["postgres", "redis", "nats", "auth", "consensus", "prometheus", "dind"] {
        assert!(status.contains(part), "{part} in\n{status}");
    }

    // The end-to-end flow through 127.0.0.1.
    let test = ok(&acgs(dir, &["bootstrap", "--name", &name, "test"]));
    assert!(test.contains("every step passed"), "{test}");

    // Mutual TLS: the inner daemon refuses a client without the client certificate.
    let certs = dir.join(&name).join("certs");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.join("client/ca.pem")).expect("ca")).expect("ca pem");
    let url = format!("https://127.0.0.1:{dind_port}/version");
    let anonymous = reqwest::blocking::Client::builder().add_root_certificate(ca.clone()).build().expect("client");
    assert!(anonymous.get(&url).send().is_err(), "the inner daemon answered a client without a certificate");
    let mut pem = std::fs::read(certs.join("client/cert.pem")).expect("cert");
    pem.extend(std::fs::read(certs.join("client/key.pem")).expect("key"));
    let identified = reqwest::blocking::Client::builder()
        .add_root_certificate(ca)
        .identity(reqwest::Identity::from_pem(&pem).expect("identity"))
        .build()
        .expect("client");
    assert!(identified.get(&url).send().expect("with the certificate").status().is_success());
    assert!(
        http()
            .get(format!("http://127.0.0.1:{dind_port}/version"))
            .send()
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
    );

    // Nothing of the stack listens on the host but on 127.0.0.1: every published port does, and
    // nothing else the bootstrap started listens anywhere else.
    let mut ports: Vec<u16> = endpoints.values().map(|u| port_of(u.as_str().expect("url"))).collect();
    ports.push(dind_port);
    let listening = listeners();
    for port in &ports {
        assert!(listening.iter().any(|(a, p)| p == port && a == "0100007F"), "nothing on 127.0.0.1:{port}");
    }
    let new: Vec<&(String, u16)> = listening.iter().filter(|l| !listening_before.contains(l)).collect();
    for (addr, port) in new {
        assert_eq!(addr, "0100007F", "since the bootstrap something listens on {addr}:{port}, not 127.0.0.1");
    }

    // Containers run as non-root with a read-only root and no capabilities; the image is small.
    let engine = inner(&rt, dir, &name, dind_port);
    rt.block_on(async {
        let containers = engine.containers(&name).await.expect("containers");
        let services: Vec<String> = containers
            .iter()
            .filter(|c| {
                c.labels
                    .as_ref()
                    .and_then(|l| l.get("acgs.role"))
                    .is_some_and(|r| endpoints.contains_key(r) && r != "prometheus")
            })
            .filter_map(|c| c.names.as_ref().and_then(|n| n.first()).map(|n| n.trim_start_matches('/').to_string()))
            .collect();
        assert_eq!(services.len(), 7, "{services:?}");
        for service in services {
            let info = engine.inspect(&service).await.expect("inspect");
            let config = info.config.expect("config");
            assert_eq!(config.user.as_deref(), Some("10001:10001"), "{service}");
            let host = info.host_config.expect("host config");
            assert_eq!(host.readonly_rootfs, Some(true), "{service}");
            assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]), "{service}");
            assert!(
                host.security_opt.unwrap_or_default().iter().any(|o| o.starts_with("no-new-privileges")),
                "{service}"
            );
        }
        let image = stack["images"]["acgs"].as_str().expect("acgs image");
        let size = engine.docker.inspect_image(image).await.expect("acgs image").size.expect("size");
        eprintln!("acgs image {image}: {:.1} MB", size as f64 / 1e6);
        assert!(size < 25_000_000, "the acgs image is {size} bytes");
    });

    // Prometheus scrapes all seven services.
    let prometheus = endpoints["prometheus"].as_str().expect("url").to_string();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let answer: Value = http()
            .get(format!("{prometheus}/api/v1/query?query=up"))
            .send()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null);
        let up: Vec<String> = answer["data"]["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter(|s| s["value"][1] == "1")
                    .filter_map(|s| s["metric"]["instance"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let missing: Vec<&str> =
            ["auth", "constitution", "integrity", "verification", "simulation", "consensus", "evolution"]
                .into_iter()
                .filter(|s| !up.iter().any(|i| i.starts_with(&format!("{s}:"))))
                .collect();
        if missing.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "Prometheus does not see up == 1 for {missing:?}: {answer}");
        std::thread::sleep(Duration::from_secs(1));
    }

    // A backup of the running stack.
    let backup = dir.join("stack.backup");
    ok(&acgs(dir, &["bootstrap", "--name", &name, "backup", "-o", &backup.display().to_string()]));
    let first =
        std::fs::read_to_string(&backup).expect("backup").lines().next().map(str::to_string).unwrap_or_default();
    assert!(first.contains("acgs-backup"), "{first}");
    let logs = ok(&acgs(dir, &["bootstrap", "--name", &name, "logs", "auth", "--tail", "3"]));
    assert!(logs.lines().count() >= 1, "{logs}");

    // The backup becomes a new stack (host mode): the same accounts, a log that re-verifies.
    let copy = format!("{name}-copy");
    let _copy_cleanup = Cleanup { dir: dir.to_path_buf(), name: copy.clone(), tag: None };
    let mut restore: Vec<String> =
        ["bootstrap", "--name", &copy, "restore", "--from", &backup.display().to_string()].map(String::from).to_vec();
    restore.extend(["--mode", "host", "--no-monitoring", "--port-base", "0", "--timeout", "300s"].map(String::from));
    restore.extend(["--acgs-binary".into(), required("ACGS_TEST_STATIC_BIN")]);
    for (flag, var) in [
        ("--postgres-image", "ACGS_TEST_POSTGRES_IMAGE"),
        ("--redis-image", "ACGS_TEST_REDIS_IMAGE"),
        ("--nats-image", "ACGS_TEST_NATS_IMAGE"),
    ] {
        restore.extend([flag.to_string(), required(var)]);
    }
    let restored = ok(&run(dir, &restore));
    assert!(restored.contains("keeps the password it had there"), "{restored}");
    let copied = state(dir, &copy);
    let env = std::fs::read_to_string(dir.join(&name).join(".env")).expect(".env");
    let password = env.lines().find_map(|l| l.strip_prefix("ACGS_ADMIN_PASSWORD=")).expect("admin password");
    let auth = copied["endpoints"]["auth"].as_str().expect("auth");
    let login = http()
        .post(format!("{auth}/api/v1/auth/token"))
        .form(&[("grant_type", "password"), ("username", "admin"), ("password", password)])
        .send()
        .expect("login");
    assert!(login.status().is_success(), "the restored admin keeps the backed-up password: {}", login.status());
    let integrity = copied["endpoints"]["integrity"].as_str().expect("integrity");
    ok(&Command::new(BIN).args(["verify", "--audit", integrity]).output().expect("acgs verify"));
    ok(&acgs(dir, &["bootstrap", "--name", &copy, "down", "--volumes"]));

    // down removes every labelled object but the data; a second down is a no-op; --volumes
    // removes the data too.
    let down = ok(&acgs(dir, &["bootstrap", "--name", &name, "down"]));
    assert!(down.contains("kept data volumes"), "{down}");
    let outer = rt.block_on(Engine::local()).expect("local daemon");
    rt.block_on(async {
        assert!(outer.containers(&name).await.expect("list").is_empty());
        assert!(outer.networks(&name).await.expect("list").is_empty());
        assert!(!outer.volumes(&name).await.expect("list").is_empty(), "the data volume stays");
    });
    let again = ok(&acgs(dir, &["bootstrap", "--name", &name, "down"]));
    assert!(again.contains("nothing to remove"), "{again}");
    ok(&acgs(dir, &["bootstrap", "--name", &name, "down", "--volumes"]));
    rt.block_on(async { assert!(outer.volumes(&name).await.expect("list").is_empty()) });
    assert!(!dir.join(&name).exists(), "down --volumes removes the stack's directory");
}

#[test]
fn shim_infrastructure_from_an_image_archive_needs_no_other_image() {
    if slow_tests_off() {
        return;
    }
    let _serial = serial();
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let name = stack_name("shim");
    // The inner daemon's image under a name of this test's own, so that taking it away from
    // the daemon (below) leaves the shared tag alone.
    let dind = format!("acgs-test/dind-airgap:{}", std::process::id());
    let _cleanup = Cleanup { dir: dir.to_path_buf(), name: name.clone(), tag: Some(dind.clone()) };
    let tagged =
        Command::new("docker").args(["tag", &required("ACGS_TEST_DIND_IMAGE"), &dind]).output().expect("docker tag");
    assert!(tagged.status.success(), "{}", String::from_utf8_lossy(&tagged.stderr));

    // The archive an air-gapped site carries: with the shims, only the inner daemon's image.
    let archive = dir.join("images.tar");
    let saved = ok(&acgs(
        dir,
        &[
            "images",
            "save",
            "-o",
            &archive.display().to_string(),
            "--infra",
            "shim",
            "--no-monitoring",
            "--dind-image",
            &dind,
        ],
    ));
    assert!(saved.contains("1 images"), "{saved}");
    // The daemon starts without it; --image-archive brings it back.
    let removed = Command::new("docker").args(["rmi", &dind]).output().expect("docker rmi");
    assert!(removed.status.success(), "{}", String::from_utf8_lossy(&removed.stderr));

    let mut flags = up_flags(&name, &dind);
    flags.extend(["--infra", "shim", "--no-monitoring", "--image-archive"].map(String::from));
    flags.push(archive.display().to_string());
    let started = Instant::now();
    let out = run(dir, &flags);
    eprintln!("bootstrap --infra shim ready in {:.1} s", started.elapsed().as_secs_f64());
    let out = ok(&out);
    assert!(out.contains("loading"), "{out}");
    let stack = state(dir, &name);
    let dind_port = stack["dind_port"].as_u64().expect("port") as u16;
    let engine = inner(&rt, dir, &name, dind_port);
    rt.block_on(async {
        let images =
            engine.docker.list_images(None::<bollard::query_parameters::ListImagesOptions>).await.expect("images");
        let tags: Vec<String> = images.into_iter().flat_map(|i| i.repo_tags).collect();
        assert!(tags.iter().all(|t| t.starts_with("acgs:")), "the inner daemon holds only the acgs image: {tags:?}");
    });

    // Log in, decide, and find the decision in the log with a verifying inclusion proof.
    let endpoints = stack["endpoints"].clone();
    let url = |service: &str, path: &str| format!("{}{path}", endpoints[service].as_str().expect("url"));
    let env = std::fs::read_to_string(dir.join(&name).join(".env")).expect(".env");
    let password = env.lines().find_map(|l| l.strip_prefix("ACGS_ADMIN_PASSWORD=")).expect("admin password");
    let token: Value = http()
        .post(url("auth", "/api/v1/auth/token"))
        .form(&[("grant_type", "password"), ("username", "admin"), ("password", password)])
        .send()
        .expect("login")
        .json()
        .expect("json");
    let token = token["access_token"].as_str().expect("token");
    let decision: Value = http()
        .post(url("consensus", "/api/v1/decide"))
        .bearer_auth(token)
        .json(&serde_json::json!({
            "principal": {"type": "Acgs::Agent", "id": "a1"}, "action": {"type": "Acgs::Action", "id": "execute"},
            "resource": {"type": "Acgs::Tool", "id": "t1"}, "context": {"irreversible": false, "human_approved": false},
            "entities": [{"uid": {"type": "Acgs::Agent", "id": "a1"}, "parents": [], "attrs": {"trust_level": 50,
                            "owner": {"__entity": {"type": "Acgs::User", "id": "ada"}}}},
                         {"uid": {"type": "Acgs::Tool", "id": "t1"}, "parents": [], "attrs": {"risk": "low"}}]}))
        .send()
        .expect("decide")
        .json()
        .expect("json");
    let id = decision["decision_id"].as_str().unwrap_or_else(|| panic!("{decision}"));
    let deadline = Instant::now() + Duration::from_secs(15);
    let index = loop {
        let found: Value = http()
            .get(url("integrity", &format!("/api/v1/log/search?subject=decision:{id}")))
            .send()
            .expect("search")
            .json()
            .expect("json");
        if let Some(index) = found["entries"][0]["index"].as_u64() {
            let cp = http().get(url("integrity", "/api/v1/log/checkpoint")).send().expect("cp").text().expect("text");
            if cp.lines().nth(1).and_then(|l| l.parse::<u64>().ok()).is_some_and(|size| size > index) {
                break index;
            }
        }
        assert!(Instant::now() < deadline, "decision {id} not in a checkpoint of the log");
        std::thread::sleep(Duration::from_millis(200));
    };
    let verify = Command::new(BIN)
        .args(["verify", "--log", &url("integrity", ""), "--index", &index.to_string()])
        .output()
        .expect("acgs verify");
    ok(&verify);

    let status = ok(&acgs(dir, &["bootstrap", "--name", &name, "status"]));
    assert!(status.contains("nats") && status.contains("redis") && !status.contains("postgres"), "{status}");
    ok(&acgs(dir, &["bootstrap", "--name", &name, "down", "--volumes"]));
}

#[test]
fn a_bootstrap_that_fails_half_way_removes_what_it_made_and_keeps_the_data() {
    if slow_tests_off() {
        return;
    }
    let _serial = serial();
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let name = stack_name("fail");
    let _cleanup = Cleanup { dir: dir.to_path_buf(), name: name.clone(), tag: None };
    let mut flags = up_flags(&name, &required("ACGS_TEST_DIND_IMAGE"));
    flags.extend(["--postgres-image", "acgs-local/no-such-postgres:1", "--no-monitoring"].map(String::from));
    let out = run(dir, &flags);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("acgs-local/no-such-postgres:1"), "the error names the image: {stderr}");
    assert!(stderr.contains("removed container"), "{stderr}");
    assert!(stderr.contains("kept data volumes"), "{stderr}");
    let outer = rt.block_on(Engine::local()).expect("local daemon");
    rt.block_on(async {
        assert!(outer.containers(&name).await.expect("list").is_empty(), "no container left");
        assert!(!outer.volumes(&name).await.expect("list").is_empty(), "the data volume stays");
    });
    // Bad input is one line and exit 2, before anything is made.
    let bad = acgs(dir, &["bootstrap", "--name", "Not A Name"]);
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    let bad = acgs(dir, &["bootstrap", "--mode", "sideways"]);
    assert_eq!(bad.status.code(), Some(2));
    ok(&acgs(dir, &["bootstrap", "--name", &name, "down", "--volumes"]));
    rt.block_on(async { assert!(outer.volumes(&name).await.expect("list").is_empty()) });

    // Host mode, failing after PostgreSQL has started writing its volume: no time to get healthy.
    let host = stack_name("failhost");
    let _host_cleanup = Cleanup { dir: dir.to_path_buf(), name: host.clone(), tag: None };
    let mut flags: Vec<String> =
        ["bootstrap", "--name", &host, "--mode", "host", "--no-monitoring", "--port-base", "0", "--timeout", "1ms"]
            .map(String::from)
            .to_vec();
    for (flag, var) in [
        ("--postgres-image", "ACGS_TEST_POSTGRES_IMAGE"),
        ("--redis-image", "ACGS_TEST_REDIS_IMAGE"),
        ("--nats-image", "ACGS_TEST_NATS_IMAGE"),
    ] {
        flags.extend([flag.to_string(), required(var)]);
    }
    flags.extend(["--acgs-binary".into(), required("ACGS_TEST_STATIC_BIN")]);
    let out = run(dir, &flags);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not healthy in time"), "{stderr}");
    assert!(
        stderr.contains(&format!("container {host}-postgres")) && stderr.contains(&format!("network {host}")),
        "{stderr}"
    );
    rt.block_on(async {
        assert!(outer.containers(&host).await.expect("list").is_empty(), "no container left");
        assert!(outer.networks(&host).await.expect("list").is_empty(), "no network left");
        let volumes = outer.volumes(&host).await.expect("list");
        assert!(volumes.contains(&format!("{host}-postgres")), "the database's volume stays: {volumes:?}");
    });
}
