//! What every service shares over HTTP: health, readiness, metrics (checked with promtool),
//! OpenAPI, the constitutional-hash header and its 409 rule, JSON errors, roles on every
//! protected route, and bad input that never gives a 500 or changes what is stored.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use acgs::kernel::constitution::Constitution;
use acgs::kernel::service::ServiceName;
use common::{ADMIN_PASSWORD, error_code, spawn_app};
use serde_json::{Value, json};

#[tokio::test]
async fn every_service_serves_the_shared_endpoints_with_the_same_hash() {
    let app = spawn_app().await;
    let expected = Constitution::genesis().expect("genesis").digest().short;
    for service in ServiceName::ALL {
        for path in ["/health", "/ready", "/metrics", "/openapi.json", "/no/such/route"] {
            let response = app.get(&app.url(service, path), None).await;
            let hash =
                response.headers().get("x-constitutional-hash").unwrap_or_else(|| panic!("{service}{path}: no hash"));
            assert_eq!(hash.to_str().expect("ascii"), expected, "{service}{path}");
            let status = response.status().as_u16();
            if path == "/no/such/route" {
                assert_eq!(error_code(response).await, (404, "not_found".to_string()), "{service}");
            } else {
                assert_eq!(status, 200, "{service}{path}");
            }
        }
        let health: Value = app.get(&app.url(service, "/health"), None).await.json().await.expect("json");
        assert_eq!(health["service"], service.as_str());
        let openapi: Value = app.get(&app.url(service, "/openapi.json"), None).await.json().await.expect("json");
        assert!(openapi["openapi"].as_str().expect("version").starts_with("3."));
        assert!(openapi["paths"]["/health"].is_object());
        let ready: Value = app.get(&app.url(service, "/ready"), None).await.json().await.expect("json");
        assert_eq!(ready["status"], "ready", "{service}: {ready}");
    }
    assert!(acgs::kernel::constitution::is_hash(&expected));
}

#[tokio::test]
async fn a_request_pinned_to_another_hash_gets_409_naming_both() {
    let app = spawn_app().await;
    let current = app.stack().constitutional_hash.clone();
    for service in ServiceName::ALL {
        let response = app
            .http
            .get(app.url(service, "/health"))
            .header("X-Constitutional-Hash", "0123456789abcdef")
            .send()
            .await
            .expect("get");
        assert_eq!(response.headers()["x-constitutional-hash"], current.as_str());
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("json");
        assert_eq!(status, 409, "{service}");
        assert_eq!(body["error"]["code"], "constitutional_hash_mismatch");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains("0123456789abcdef") && message.contains(&current), "{message}");
        let ok = app
            .http
            .get(app.url(service, "/health"))
            .header("X-Constitutional-Hash", &current)
            .send()
            .await
            .expect("get");
        assert_eq!(ok.status(), 200);
    }
    // Errors from deeper layers carry it too (401 from auth, 405 from routing).
    let unauthorized = app.get(&app.auth("/api/v1/users"), None).await;
    assert!(unauthorized.headers().contains_key("x-constitutional-hash"));
    let response = app.http.delete(app.auth("/health")).send().await.expect("delete");
    assert!(response.headers().contains_key("x-constitutional-hash"));
    assert_eq!(error_code(response).await, (405, "method_not_allowed".to_string()));
}

fn promtool_check(text: &str) -> Result<(), String> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("promtool not runnable ({e}); scripts/test.sh installs Debian's prometheus package"))?;
    child.stdin.take().ok_or("stdin")?.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

#[tokio::test]
async fn metrics_of_every_service_pass_promtool() {
    let app = spawn_app().await;
    // Some traffic first so the HTTP series exist.
    let _ = app.login("admin", ADMIN_PASSWORD).await;
    for service in ServiceName::ALL {
        let _ = app.get(&app.url(service, "/health"), None).await;
        let response = app.get(&app.url(service, "/metrics"), None).await;
        assert!(response.headers()["content-type"].to_str().expect("ct").starts_with("text/plain"));
        let text = response.text().await.expect("text");
        assert!(text.contains("http_requests_total{"), "{service}: {text}");
        assert!(text.contains("http_request_duration_seconds_bucket{"), "{service}");
        assert!(text.contains(&format!("service=\"{service}\"")), "{service}");
        promtool_check(&text).unwrap_or_else(|e| panic!("{service}: promtool check metrics failed: {e}"));
    }
    let auth = app.get(&app.auth("/metrics"), None).await.text().await.expect("text");
    assert!(auth.contains("acgs_auth_logins_total{outcome=\"success\"} 1"), "{auth}");
}

/// Every route the auth service marks as needing a bearer token, with the roles it admits
/// (empty: any authenticated caller).
const PROTECTED: &[(&str, &str, &[&str])] = &[
    ("POST", "/api/v1/auth/introspect", &["service", "admin"]),
    ("POST", "/api/v1/auth/keys/rotate", &["admin"]),
    ("GET", "/api/v1/roles/{role}/count", &["service", "admin"]),
    ("GET", "/api/v1/users/me", &[]),
    ("GET", "/api/v1/users", &["admin"]),
    ("POST", "/api/v1/users", &["admin"]),
    ("GET", "/api/v1/users/{id}", &["admin"]),
    ("PATCH", "/api/v1/users/{id}", &["admin"]),
    ("DELETE", "/api/v1/users/{id}", &["admin"]),
    ("GET", "/api/v1/clients", &["admin"]),
    ("POST", "/api/v1/clients", &["admin"]),
    ("GET", "/api/v1/clients/{id}", &["admin"]),
    ("PATCH", "/api/v1/clients/{id}", &["admin"]),
    ("DELETE", "/api/v1/clients/{id}", &["admin"]),
];

/// The same for the verification service.
const VERIFICATION_PROTECTED: &[(&str, &str, &[&str])] =
    &[("POST", "/api/v1/verify", &["steward", "admin", "auditor", "service"])];

#[tokio::test]
async fn roles_no_token_is_401_and_wrong_role_is_403_on_every_protected_route() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;

    let mut tokens = std::collections::HashMap::new();
    for role in ["admin", "council", "steward", "auditor", "agent", "service"] {
        let name = format!("user-{role}");
        app.create_user(&admin, &name, "a-long-password-1", &[role]).await;
        tokens.insert(role, app.tokens(&name, "a-long-password-1").await.0);
    }
    for (service, protected) in [(ServiceName::Auth, PROTECTED), (ServiceName::Verification, VERIFICATION_PROTECTED)] {
        // The table covers exactly the operations the OpenAPI document marks as protected.
        let openapi: Value = app.get(&app.url(service, "/openapi.json"), None).await.json().await.expect("json");
        let mut documented = Vec::new();
        for (path, item) in openapi["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                if op.get("security").is_some() {
                    documented.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        documented.sort();
        let mut table: Vec<(String, String)> =
            protected.iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect();
        table.sort();
        assert_eq!(documented, table, "{service}: the table must list every route with a security requirement");

        for (method, path, allowed) in protected {
            let url = app.url(service, &path.replace("{id}", "some-id").replace("{role}", "council"));
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let body = json!({});
            let send = |token: Option<&str>| {
                let mut request = app.http.request(method.clone(), &url).json(&body);
                if let Some(t) = token {
                    request = request.bearer_auth(t);
                }
                request.send()
            };
            let (status, _) = error_code(send(None).await.expect("send")).await;
            assert_eq!(status, 401, "{method} {path} without a token");
            let (status, _) = error_code(send(Some("not-a-token")).await.expect("send")).await;
            assert_eq!(status, 401, "{method} {path} with a bad token");
            for (role, token) in &tokens {
                let response = send(Some(token)).await.expect("send");
                let status = response.status().as_u16();
                if allowed.is_empty() || allowed.contains(role) {
                    assert!(status != 401 && status != 403, "{method} {path} as {role}: got {status}");
                } else {
                    assert_eq!(status, 403, "{method} {path} as {role}");
                    assert_eq!(error_code(response).await.1, "forbidden");
                }
            }
        }
    }
}

#[tokio::test]
async fn bad_input_gets_a_4xx_json_error_and_changes_nothing() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let users_url = app.auth("/api/v1/users");
    let snapshot = || async { app.get(&users_url, Some(&admin)).await.json::<Value>().await.expect("json") };
    let before = snapshot().await;

    let post = |body: String, content_type: &'static str| {
        app.http.post(&users_url).bearer_auth(&admin).header("content-type", content_type).body(body).send()
    };
    let long = "x".repeat(100_000);
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let cases: Vec<(&str, String, &'static str, u16)> = vec![
        ("malformed JSON", "{\"username\": ".into(), "application/json", 400),
        ("not an object", "[1,2,3]".into(), "application/json", 422),
        ("wrong content type", "username=x".into(), "text/plain", 415),
        (
            "unknown field",
            json!({"username":"u1","password":"pppppppppppp","roles":["agent"],"admin":true}).to_string(),
            "application/json",
            422,
        ),
        ("missing field", json!({"username":"u1"}).to_string(), "application/json", 422),
        ("wrong type", json!({"username":"u1","password":5,"roles":["agent"]}).to_string(), "application/json", 422),
        (
            "unknown role",
            json!({"username":"u1","password":"pppppppppppp","roles":["root"]}).to_string(),
            "application/json",
            422,
        ),
        (
            "no roles",
            json!({"username":"u1","password":"pppppppppppp","roles":[]}).to_string(),
            "application/json",
            422,
        ),
        (
            "short password",
            json!({"username":"u1","password":"short","roles":["agent"]}).to_string(),
            "application/json",
            422,
        ),
        (
            "absurd username",
            json!({"username": long,"password":"pppppppppppp","roles":["agent"]}).to_string(),
            "application/json",
            422,
        ),
        (
            "absurd password",
            json!({"username":"u1","password": long,"roles":["agent"]}).to_string(),
            "application/json",
            422,
        ),
        (
            "bad username characters",
            json!({"username":"a b\u{0}","password":"pppppppppppp","roles":["agent"]}).to_string(),
            "application/json",
            422,
        ),
        (
            "too many roles",
            json!({"username":"u1","password":"pppppppppppp","roles": vec!["agent"; 50]}).to_string(),
            "application/json",
            422,
        ),
        ("deep nesting", deep, "application/json", 422),
        ("oversize body", format!("{{\"username\":\"{}\"}}", "y".repeat(2 * 1024 * 1024)), "application/json", 413),
        (
            "replacement character",
            String::from_utf8_lossy(b"{\"username\":\"\xff\"}").into_owned(),
            "application/json",
            422,
        ),
    ];
    for (name, body, content_type, expected) in cases {
        let response = post(body, content_type).await.expect("send");
        let (status, code) = error_code(response).await;
        assert_eq!(status, expected, "{name}: got {status} {code}");
    }

    // Other endpoints.
    let checks: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        ("bad limit", app.http.get(app.auth("/api/v1/users?limit=abc")).bearer_auth(&admin), 400),
        ("zero limit", app.http.get(app.auth("/api/v1/users?limit=0")).bearer_auth(&admin), 400),
        ("unknown query key", app.http.get(app.auth("/api/v1/users?limt=5")).bearer_auth(&admin), 400),
        ("absurd id", app.http.get(app.auth(&format!("/api/v1/users/{}", "z".repeat(5000)))).bearer_auth(&admin), 404),
        (
            "patch unknown field",
            app.http.patch(app.auth("/api/v1/clients/x")).bearer_auth(&admin).json(&json!({"colour": 1})),
            422,
        ),
        ("token: no grant", app.http.post(app.auth("/api/v1/auth/token")).form(&[("username", "admin")]), 400),
        (
            "token: unknown grant",
            app.http.post(app.auth("/api/v1/auth/token")).form(&[("grant_type", "implicit")]),
            400,
        ),
        (
            "token: wrong content type",
            app.http
                .post(app.auth("/api/v1/auth/token"))
                .header("content-type", "text/plain")
                .body("grant_type=password"),
            415,
        ),
        (
            "token: absurd password",
            app.http.post(app.auth("/api/v1/auth/token")).form(&[
                ("grant_type", "password"),
                ("username", "admin"),
                ("password", long.as_str()),
            ]),
            400,
        ),
        (
            "token: malformed basic",
            app.http
                .post(app.auth("/api/v1/auth/token"))
                .header("authorization", "Basic !!!")
                .form(&[("grant_type", "client_credentials")]),
            401,
        ),
        ("revoke: no token", app.http.post(app.auth("/api/v1/auth/revoke")).form(&[("x", "y")]), 400),
    ];
    for (name, request, expected) in checks {
        let (status, code) = error_code(request.send().await.expect("send")).await;
        assert_eq!(status, expected, "{name}: got {status} {code}");
    }

    assert_eq!(snapshot().await, before, "nothing stored changed");
    // The admin's failed logins above did not lock them out (one absurd password only).
    assert_eq!(app.login("admin", ADMIN_PASSWORD).await.status(), 200);
}
