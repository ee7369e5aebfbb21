//! The real `acgs` binary as an operator runs it: `up` on a fresh data dir, health within 2 s,
//! SIGTERM, restart keeping state, `serve` of one service, and one-line errors with exit code 2.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::process::{BIN, acgs, client, fresh_database_url, serial, start, storage_env, token};
use serde_json::{Value, json};

#[test]
fn up_serves_all_seven_quickly_stops_on_sigterm_and_keeps_state() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fresh_database_url();
    let (mut p, started) = start(&["up"], dir.path(), &storage_env(&db), 7);
    let names: Vec<&str> = p.addrs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["auth", "constitution", "integrity", "verification", "simulation", "consensus", "evolution"]);
    for (name, addr) in &p.addrs {
        assert!(addr.ip().is_loopback(), "{name} listens on loopback by default");
        let response = client().get(format!("http://{addr}/health")).send().expect("health");
        assert_eq!(response.status(), 200, "{name}");
    }
    let first_health = started.elapsed();
    assert!(first_health < Duration::from_secs(2), "all /health answered {first_health:?} after start");

    let admin = token(&p);
    let created = client()
        .post(p.url("auth", "/api/v1/users"))
        .bearer_auth(&admin)
        .json(&json!({"username": "carol", "password": "carol-password-1", "roles": ["council"]}))
        .send()
        .expect("create");
    assert_eq!(created.status(), 201);
    let client_made: Value = client()
        .post(p.url("auth", "/api/v1/clients"))
        .bearer_auth(&admin)
        .json(&json!({"name": "agent", "roles": ["agent"]}))
        .send()
        .expect("client")
        .json()
        .expect("json");
    let jwks_before: Value =
        client().get(p.url("auth", "/.well-known/jwks.json")).send().expect("jwks").json().expect("json");

    let (status, took) = p.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?}");

    // Second start on the same data dir: users, clients and keys are still there; the old token
    // still verifies because the key is the same.
    let (p, _) = start(&["up"], dir.path(), &storage_env(&db), 7);
    let jwks_after: Value =
        client().get(p.url("auth", "/.well-known/jwks.json")).send().expect("jwks").json().expect("json");
    assert_eq!(jwks_before, jwks_after);
    let me = client().get(p.url("auth", "/api/v1/users/me")).bearer_auth(&admin).send().expect("me");
    assert_eq!(me.status(), 200);
    let users: Value =
        client().get(p.url("auth", "/api/v1/users")).bearer_auth(&admin).send().expect("users").json().expect("json");
    assert!(users.as_array().expect("list").iter().any(|u| u["username"] == "carol"));
    let id = client_made["client_id"].as_str().expect("id");
    let found = client().get(p.url("auth", &format!("/api/v1/clients/{id}"))).bearer_auth(&admin).send().expect("get");
    assert_eq!(found.status(), 200);
    drop(p);
}

#[test]
fn first_start_writes_a_generated_admin_password_file_0600_and_never_prints_it() {
    let _serial = serial();
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(BIN);
    command.args(["serve", "auth"]).env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command.env("ACGS_DATA_DIR", dir.path()).env("ACGS_AUTH_PORT", "0");
    if let Some(url) = fresh_database_url() {
        command.env("ACGS_DATABASE_URL", url);
    }
    let mut child = command.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
    let mut seen = Vec::new();
    let mut addr = None;
    for line in lines.by_ref() {
        if let Some((_, a)) = line.split_once("listening on http://") {
            addr = Some(a.to_string());
        }
        let done = line.contains("admin-password");
        seen.push(line);
        if done {
            break;
        }
    }
    let file = dir.path().join("admin-password");
    let password = std::fs::read_to_string(&file).expect("password file").trim().to_string();
    let mode = std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(password.len() >= 32);
    assert!(!seen.join("\n").contains(&password), "the password must never be printed");
    assert!(seen.iter().any(|l| l.contains(&file.display().to_string())), "the file's path is printed: {seen:?}");
    let addr = addr.expect("auth announced");
    let response = client()
        .post(format!("http://{addr}/api/v1/auth/token"))
        .form(&[("grant_type", "password"), ("username", "admin"), ("password", password.as_str())])
        .send()
        .expect("login");
    assert_eq!(response.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn serve_runs_one_service_on_the_port_given() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let port_text = port.to_string();
    let db = fresh_database_url();
    let (p, _) = start(&["serve", "auth", "--port", &port_text], dir.path(), &storage_env(&db), 1);
    assert_eq!(p.addrs.len(), 1);
    assert_eq!(p.addrs[0].0, "auth");
    assert_eq!(p.addrs[0].1.port(), port);
    let response = client().get(format!("http://127.0.0.1:{port}/health")).send().expect("health");
    assert_eq!(response.status(), 200);
    // Nothing else of the stack is announced within a moment.
    std::thread::sleep(Duration::from_millis(300));
    let more: Vec<String> = p.lines.try_iter().filter(|l| l.contains("listening on")).collect();
    assert!(more.is_empty(), "{more:?}");
}

#[test]
fn serve_of_an_unknown_service_exits_2_with_one_line_naming_the_valid_ones() {
    let _serial = serial();
    let out = acgs(&["serve", "nonsense"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    for name in ["all", "auth", "constitution", "integrity", "verification", "simulation", "consensus", "evolution"] {
        assert!(stderr.contains(name), "{stderr}");
    }
}

#[test]
fn bad_configuration_names_the_key_and_reason_and_exits_2() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().display().to_string();
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            vec![("ACGS_AUTH_LOCKOUT_THRESHOLD", "lots")],
            vec!["auth.lockout_threshold", "ACGS_AUTH_LOCKOUT_THRESHOLD", "integer"],
        ),
        (vec![("ACGS_HTTP_BODY_LIMIT_BYTES", "0")], vec!["http.body_limit_bytes", "at least 1"]),
        (vec![("ACGS_BIND", "everywhere")], vec!["bind", "IP address"]),
        (vec![("DATABASE_URL", "mysql://x")], vec!["database_url", "postgres://"]),
        (vec![("ACGS_LOG_FORMAT", "xml")], vec!["log.format"]),
    ];
    for (env, needles) in cases {
        let mut all = env.clone();
        all.push(("ACGS_DATA_DIR", &data));
        let out = acgs(&["up"], &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{env:?}: expected {needle:?} in {stderr}");
        }
    }
    // A config file with an unknown key.
    let file = dir.path().join("acgs.toml");
    std::fs::write(&file, "[auth]\nlockout_treshold = 3\n").expect("write");
    let out = acgs(&["up", "--config", &file.display().to_string()], &[("ACGS_DATA_DIR", &data)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("auth.lockout_treshold") && stderr.contains("unknown key"), "{stderr}");
    // A flag with a bad value.
    let out = acgs(&["serve", "auth", "--port", "99999"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--port"));
    // --port on all is refused.
    let out = acgs(&["serve", "all", "--port", "9000"], &[("ACGS_DATA_DIR", &data)]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_pinned_constitutional_hash_that_differs_refuses_to_start_naming_both() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().display().to_string();
    let actual = acgs::kernel::constitution::Constitution::genesis().expect("genesis").digest().short;
    let out = acgs(&["up"], &[("ACGS_DATA_DIR", &data), ("CONSTITUTIONAL_HASH", "cdd01ef066bc6cf2")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("cdd01ef066bc6cf2") && stderr.contains(&actual), "{stderr}");
    // Pinned to the right hash: starts.
    let (p, _) = start(&["serve", "constitution"], dir.path(), &[("CONSTITUTIONAL_HASH", &actual)], 1);
    let response = client().get(p.url("constitution", "/health")).send().expect("health");
    assert_eq!(response.headers()["x-constitutional-hash"], actual.as_str());
}

#[test]
fn a_malformed_constitution_file_is_refused_with_line_and_reason() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("constitution.toml");
    std::fs::write(&file, "title = \"x\"\npreamble = \"y\"\n[voting\n").expect("write");
    let out = acgs(
        &["up", "--constitution", &file.display().to_string()],
        &[("ACGS_DATA_DIR", &dir.path().display().to_string())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("constitution.toml") && stderr.contains("line 3"), "{stderr}");
}

#[test]
fn help_and_version() {
    let _serial = serial();
    for args in [
        vec!["--help"],
        vec!["up", "--help"],
        vec!["serve", "--help"],
        vec!["healthcheck", "--help"],
        vec!["wait-for", "--help"],
        vec!["certs", "--help"],
        vec!["embedded", "export", "--help"],
        vec!["migrate", "--help"],
        vec!["shim", "nats", "--help"],
        vec!["shim", "redis", "--help"],
    ] {
        let out = acgs(&args, &[]);
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage:"), "{args:?}: {text}");
    }
    let up_help = String::from_utf8_lossy(&acgs(&["up", "--help"], &[]).stdout).into_owned();
    assert!(up_help.contains("ACGS_DATA_DIR"), "flags show their environment twins: {up_help}");
    let out = acgs(&["version"], &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("acgs "));
}

#[test]
fn migrate_applies_once() {
    let _serial = serial();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = fresh_database_url();
    let mut env = vec![("ACGS_DATA_DIR", dir.path().to_str().expect("utf8"))];
    env.extend(storage_env(&db));
    let out = acgs(&["migrate"], &env);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("auth") && text.contains("applied 1"), "{text}");
    let out = acgs(&["migrate"], &env);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("up to date"), "{text}");
}
