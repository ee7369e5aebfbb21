//! The auth service end to end over HTTP: tokens, their independent verification, refresh
//! rotation and reuse detection, revocation, introspection, lock-out, key rotation, users and
//! clients.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use acgs::kernel::service::ServiceName;
use acgs::kernel::storage::Db;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{ADMIN_PASSWORD, TestApp, Topology, error_code, spawn_app, spawn_app_with, spawn_in};
use serde_json::{Value, json};

async fn jwks(app: &TestApp) -> Value {
    app.get(&app.auth("/.well-known/jwks.json"), None).await.json().await.expect("jwks")
}

fn pyjwt_verify(token: &str, jwks: &Value) -> Result<Value, String> {
    let input = json!({ "token": token, "jwks": jwks, "aud": "acgs", "iss": "acgs" }).to_string();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/verify_jwt.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/test.sh installs PyJWT)");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("python3 finishes");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("claims JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The signing key, read from the auth service's own storage, to forge tokens that are correctly
/// signed but wrong in one respect.
async fn signing_key(app: &TestApp) -> (String, jsonwebtoken::EncodingKey, Vec<u8>) {
    let db = Db::open("auth", &app.config.storage()).await.expect("open auth storage");
    let row = db
        .query_opt(
            "SELECT kid, private_pkcs8, public_x FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC",
            &[],
        )
        .await
        .expect("query")
        .expect("a key");
    let der = STANDARD.decode(row.get_str(1).expect("der")).expect("base64");
    let public = URL_SAFE_NO_PAD.decode(row.get_str(2).expect("x")).expect("base64url");
    (row.get_string(0).expect("kid"), jsonwebtoken::EncodingKey::from_ed_der(&der), public)
}

fn claims(overrides: Value) -> Value {
    let now = acgs::kernel::auth::now_secs();
    let mut base = json!({
        "iss": "acgs", "aud": "acgs", "sub": "someone", "exp": now + 600, "iat": now,
        "jti": uuid::Uuid::new_v4().to_string(), "roles": ["admin"],
    });
    for (k, v) in overrides.as_object().expect("object") {
        base[k] = v.clone();
    }
    base
}

async fn me_status(app: &TestApp, token: &str) -> u16 {
    app.get(&app.auth("/api/v1/users/me"), Some(token)).await.status().as_u16()
}

per_topology!(password_grant_token_verifies_with_pyjwt_against_the_jwks, revocation_of_access_and_refresh_tokens);

async fn password_grant_token_verifies_with_pyjwt_against_the_jwks(topology: Topology) {
    let app = spawn_in(topology, |_| {}).await;
    let response = app.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().expect("token");
    let header = jsonwebtoken::decode_header(token).expect("header");
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert!(header.kid.is_some());
    let claims = pyjwt_verify(token, &jwks(&app).await).expect("PyJWT verifies the token");
    for claim in ["iss", "aud", "sub", "exp", "iat", "jti", "roles"] {
        assert!(claims.get(claim).is_some(), "claim {claim} missing: {claims}");
    }
    assert_eq!(claims["roles"], json!(["admin"]));
    assert_eq!(me_status(&app, token).await, 200);

    // PyJWT refuses a token whose signature was tampered with: the witness is not a rubber stamp.
    let mut tampered = token.to_string();
    let last = tampered.pop().expect("char");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert!(pyjwt_verify(&tampered, &jwks(&app).await).is_err());
}

#[tokio::test]
async fn bad_tokens_are_rejected_with_401() {
    let app = spawn_app().await;
    let good = app.admin_token().await;
    let (kid, key, public) = signing_key(&app).await;
    let sign = |claims: &Value| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    };
    // Sanity: a token forged with the real key and good claims is accepted, so the rejections
    // below are for the reason each one names.
    assert_eq!(me_status(&app, &sign(&claims(json!({ "sub": "x" })))).await, 404, "valid signature, unknown user");

    let now = acgs::kernel::auth::now_secs();
    let cases: Vec<(&str, String)> = vec![
        ("expired", sign(&claims(json!({ "exp": now - 120, "iat": now - 1000 })))),
        ("wrong audience", sign(&claims(json!({ "aud": "someone-else" })))),
        ("wrong issuer", sign(&claims(json!({ "iss": "evil" })))),
        ("no exp", {
            let mut c = claims(json!({}));
            c.as_object_mut().expect("object").remove("exp");
            sign(&c)
        }),
        ("alg none", {
            let header = URL_SAFE_NO_PAD.encode(json!({ "alg": "none", "typ": "JWT", "kid": kid }).to_string());
            let body = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
            format!("{header}.{body}.")
        }),
        ("HS256 with the public key", {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            header.kid = Some(kid.clone());
            jsonwebtoken::encode(&header, &claims(json!({})), &jsonwebtoken::EncodingKey::from_secret(&public))
                .expect("sign")
        }),
        ("tampered payload", {
            let parts: Vec<&str> = good.split('.').collect();
            let mut payload: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
            payload["roles"] = json!(["admin", "council"]);
            format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(payload.to_string()), parts[2])
        }),
        ("unknown key id", {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
            header.kid = Some("no-such-key".into());
            jsonwebtoken::encode(&header, &claims(json!({})), &key).expect("sign")
        }),
        ("garbage", "not.a.token".to_string()),
    ];
    for (name, token) in cases {
        let response = app.get(&app.auth("/api/v1/users/me"), Some(&token)).await;
        let (status, code) = error_code(response).await;
        assert_eq!(status, 401, "{name} must be rejected");
        assert_eq!(code, "unauthorized", "{name}");
    }
    assert_eq!(me_status(&app, &good).await, 200);
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let app = spawn_app().await;
    let (_, refresh1) = app.tokens("admin", ADMIN_PASSWORD).await;
    let refresh = |token: String| {
        let app = &app;
        async move {
            app.http
                .post(app.auth("/api/v1/auth/token"))
                .form(&[("grant_type", "refresh_token"), ("refresh_token", token.as_str())])
                .send()
                .await
                .expect("refresh")
        }
    };
    let response = refresh(refresh1.clone()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let refresh2 = body["refresh_token"].as_str().expect("rotated").to_string();
    assert_ne!(refresh1, refresh2);
    assert_eq!(me_status(&app, body["access_token"].as_str().expect("access")).await, 200);

    // Replaying the used token is refused and revokes the whole family, including refresh2.
    let replay = refresh(refresh1.clone()).await;
    assert_eq!(replay.status(), 400);
    let body: Value = replay.json().await.expect("json");
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(refresh(refresh2).await.status(), 400, "the family is revoked");

    // Another login is a new family and works.
    let (_, fresh) = app.tokens("admin", ADMIN_PASSWORD).await;
    assert_eq!(refresh(fresh).await.status(), 200);
}

/// Protected routes of the services that have them, called with an otherwise harmless request:
/// a valid token gets past authentication (any status but 401), a revoked one does not.
const EVERY_SERVICE: &[(ServiceName, &str, &str)] = &[
    (ServiceName::Auth, "GET", "/api/v1/users/me"),
    (ServiceName::Constitution, "POST", "/api/v1/amendments"),
    (ServiceName::Integrity, "POST", "/api/v1/log/entries"),
    (ServiceName::Verification, "POST", "/api/v1/verify"),
    (ServiceName::Consensus, "POST", "/api/v1/decide"),
];

/// The status each service answers `token` with.
async fn statuses(app: &TestApp, token: &str) -> Vec<(ServiceName, u16)> {
    let mut out = Vec::new();
    for (service, method, path) in EVERY_SERVICE {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = app.http.request(method.clone(), app.url(*service, path)).bearer_auth(token);
        if method == reqwest::Method::POST {
            request = request.json(&json!({}));
        }
        out.push((*service, request.send().await.expect("request").status().as_u16()));
    }
    out
}

async fn revocation_of_access_and_refresh_tokens(topology: Topology) {
    let app = spawn_in(topology, |_| {}).await;
    let (access, refresh) = app.tokens("admin", ADMIN_PASSWORD).await;
    assert_eq!(me_status(&app, &access).await, 200);
    let revoke = |token: String| {
        let app = &app;
        async move {
            app.http
                .post(app.auth("/api/v1/auth/revoke"))
                .form(&[("token", token.as_str())])
                .send()
                .await
                .expect("revoke")
        }
    };
    assert!(statuses(&app, &access).await.iter().all(|(_, status)| *status != 401), "the token works everywhere");
    assert_eq!(revoke(access.clone()).await.status(), 200);
    assert_eq!(me_status(&app, &access).await, 401, "revoked access token refused");
    // Every service refuses it within a second.
    let revoked = std::time::Instant::now();
    loop {
        let answers = statuses(&app, &access).await;
        if answers.iter().all(|(_, status)| *status == 401) {
            break;
        }
        assert!(revoked.elapsed() < std::time::Duration::from_secs(1), "still accepted after 1 s: {answers:?}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Every service in the process refuses it too (shared verifier): introspection says inactive.
    let admin = app.admin_token().await;
    let inspected: Value = app
        .http
        .post(app.auth("/api/v1/auth/introspect"))
        .bearer_auth(&admin)
        .form(&[("token", access.as_str())])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json");
    assert_eq!(inspected, json!({ "active": false }));

    assert_eq!(revoke(refresh.clone()).await.status(), 200);
    let response = app
        .http
        .post(app.auth("/api/v1/auth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())])
        .send()
        .await
        .expect("refresh");
    assert_eq!(response.status(), 400);
    // Unknown tokens: still 200 (RFC 7009 §2.2).
    assert_eq!(revoke("nonsense".into()).await.status(), 200);

    // The revocation survives a restart.
    if topology == Topology::Distributed {
        return;
    }
    let mut app = app;
    app.restart().await;
    assert_eq!(me_status(&app, &access).await, 401, "revocation persisted");
}

#[tokio::test]
async fn introspection_needs_service_or_admin_and_reports_tokens() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (client_id, secret) = app.create_client(&admin, "gateway", &["service"]).await;
    let (agent_id, agent_secret) = app.create_client(&admin, "agent-1", &["agent"]).await;
    let client_token = |id: String, secret: String| {
        let app = &app;
        async move {
            let body: Value = app
                .http
                .post(app.auth("/api/v1/auth/token"))
                .basic_auth(&id, Some(&secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .expect("token")
                .json()
                .await
                .expect("json");
            body["access_token"].as_str().expect("access").to_string()
        }
    };
    let service = client_token(client_id.clone(), secret).await;
    let agent = client_token(agent_id, agent_secret).await;
    let introspect = |caller: String, token: String| {
        let app = &app;
        async move {
            app.http
                .post(app.auth("/api/v1/auth/introspect"))
                .bearer_auth(caller)
                .form(&[("token", token.as_str())])
                .send()
                .await
                .expect("introspect")
        }
    };
    let response = introspect(service.clone(), agent.clone()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["active"], true);
    assert_eq!(body["roles"], json!(["agent"]));
    assert_eq!(body["token_type"], "access_token");
    assert_eq!(introspect(agent.clone(), service.clone()).await.status(), 403, "agents may not introspect");
    let body: Value = introspect(admin.clone(), "garbage".into()).await.json().await.expect("json");
    assert_eq!(body, json!({ "active": false }));
    let (_, refresh) = app.tokens("admin", ADMIN_PASSWORD).await;
    let body: Value = introspect(admin, refresh).await.json().await.expect("json");
    assert_eq!(body["active"], true);
    assert_eq!(body["token_type"], "refresh_token");
    // client_credentials with a wrong secret: invalid_client, 401.
    let response = app
        .http
        .post(app.auth("/api/v1/auth/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", client_id.as_str()), ("client_secret", "wrong")])
        .send()
        .await
        .expect("token");
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client");
}

#[tokio::test]
async fn lockout_after_repeated_failures_and_admin_unlock() {
    let app = spawn_app_with(|c| c.auth.lockout_threshold = 3).await;
    let admin = app.admin_token().await;
    let id = app.create_user(&admin, "alice", "alice-password-1", &["council"]).await;
    for _ in 0..2 {
        assert_eq!(app.login("alice", "wrong-password!").await.status(), 400);
    }
    let third: Value = app.login("alice", "wrong-password!").await.json().await.expect("json");
    assert!(third["error_description"].as_str().expect("text").contains("locked"), "{third}");
    // Locked: even the right password is refused.
    let locked: Value = app.login("alice", "alice-password-1").await.json().await.expect("json");
    assert_eq!(locked["error"], "invalid_grant");
    assert!(locked["error_description"].as_str().expect("text").contains("locked"), "{locked}");
    let user: Value =
        app.get(&app.auth(&format!("/api/v1/users/{id}")), Some(&admin)).await.json().await.expect("json");
    assert!(user["locked_until"].as_i64().is_some());
    // An admin unlocks.
    let response = app
        .http
        .patch(app.auth(&format!("/api/v1/users/{id}")))
        .bearer_auth(&admin)
        .json(&json!({ "unlock": true }))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), 200);
    assert_eq!(app.login("alice", "alice-password-1").await.status(), 200);
    // Unknown users never lock anything and get the same answer as a wrong password.
    let unknown: Value = app.login("nobody", "whatever-password").await.json().await.expect("json");
    assert_eq!(unknown["error_description"], "invalid username or password");
}

#[tokio::test]
async fn key_rotation_keeps_the_previous_key_published() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let before = jwks(&app).await;
    let response =
        app.http.post(app.auth("/api/v1/auth/keys/rotate")).bearer_auth(&admin).send().await.expect("rotate");
    assert_eq!(response.status(), 200);
    let rotated: Value = response.json().await.expect("json");
    let after = jwks(&app).await;
    let kids: Vec<&str> =
        after["keys"].as_array().expect("keys").iter().map(|k| k["kid"].as_str().expect("kid")).collect();
    assert!(kids.contains(&rotated["kid"].as_str().expect("kid")));
    assert!(kids.contains(&before["keys"][0]["kid"].as_str().expect("old kid")), "previous key still published");
    // The old token still verifies; new tokens carry the new kid and verify (also with PyJWT).
    assert_eq!(me_status(&app, &admin).await, 200);
    let fresh = app.admin_token().await;
    assert_eq!(jsonwebtoken::decode_header(&fresh).expect("header").kid.as_deref(), rotated["kid"].as_str());
    assert_eq!(me_status(&app, &fresh).await, 200);
    pyjwt_verify(&fresh, &after).expect("PyJWT verifies after rotation");
    // Rotating twice retires the oldest.
    app.http.post(app.auth("/api/v1/auth/keys/rotate")).bearer_auth(&fresh).send().await.expect("rotate");
    let third = jwks(&app).await;
    assert_eq!(third["keys"].as_array().expect("keys").len(), 2);
}

#[tokio::test]
async fn users_and_clients_crud() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let id = app.create_user(&admin, "bob", "bob-password-12", &["steward", "auditor"]).await;
    let response = app
        .http
        .post(app.auth("/api/v1/users"))
        .bearer_auth(&admin)
        .json(&json!({ "username": "bob", "password": "another-password", "roles": ["agent"] }))
        .send()
        .await
        .expect("dup");
    assert_eq!(error_code(response).await, (409, "conflict".to_string()));
    let (bob, _) = app.tokens("bob", "bob-password-12").await;
    let me: Value = app.get(&app.auth("/api/v1/users/me"), Some(&bob)).await.json().await.expect("json");
    assert_eq!(me["username"], "bob");
    assert_eq!(me["roles"], json!(["steward", "auditor"]));
    let list: Value = app.get(&app.auth("/api/v1/users"), Some(&admin)).await.json().await.expect("json");
    assert_eq!(list.as_array().expect("list").len(), 2);

    // Changing the password revokes refresh tokens and the new password works.
    let (_, bob_refresh) = app.tokens("bob", "bob-password-12").await;
    let response = app
        .http
        .patch(app.auth(&format!("/api/v1/users/{id}")))
        .bearer_auth(&admin)
        .json(&json!({ "password": "bob-new-password", "roles": ["council"] }))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), 200);
    let refreshed = app
        .http
        .post(app.auth("/api/v1/auth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", bob_refresh.as_str())])
        .send()
        .await
        .expect("refresh");
    assert_eq!(refreshed.status(), 400);
    // /users/me serves a short-lived cached view; a change made here shows at once.
    let me: Value = app.get(&app.auth("/api/v1/users/me"), Some(&bob)).await.json().await.expect("json");
    assert_eq!(me["roles"], json!(["council"]));
    assert_eq!(app.login("bob", "bob-password-12").await.status(), 400);
    assert_eq!(app.login("bob", "bob-new-password").await.status(), 200);

    // Disabled users cannot log in.
    app.http
        .patch(app.auth(&format!("/api/v1/users/{id}")))
        .bearer_auth(&admin)
        .json(&json!({ "disabled": true }))
        .send()
        .await
        .expect("patch");
    assert_eq!(app.login("bob", "bob-new-password").await.status(), 400);

    // The last admin cannot be deleted or demoted.
    let admin_id =
        app.get(&app.auth("/api/v1/users/me"), Some(&admin)).await.json::<Value>().await.expect("json")["id"]
            .as_str()
            .expect("id")
            .to_string();
    let response =
        app.http.delete(app.auth(&format!("/api/v1/users/{admin_id}"))).bearer_auth(&admin).send().await.expect("del");
    assert_eq!(response.status(), 409);
    let response = app
        .http
        .patch(app.auth(&format!("/api/v1/users/{admin_id}")))
        .bearer_auth(&admin)
        .json(&json!({ "roles": ["auditor"] }))
        .send()
        .await
        .expect("patch");
    assert_eq!(response.status(), 409);

    let response =
        app.http.delete(app.auth(&format!("/api/v1/users/{id}"))).bearer_auth(&admin).send().await.expect("del");
    assert_eq!(response.status(), 204);
    assert_eq!(app.get(&app.auth(&format!("/api/v1/users/{id}")), Some(&admin)).await.status(), 404);

    // Clients: create, token, rotate secret, disable, delete.
    let (client_id, secret) = app.create_client(&admin, "agent-7", &["agent"]).await;
    let token = |secret: String| {
        let app = &app;
        let client_id = client_id.clone();
        async move {
            app.http
                .post(app.auth("/api/v1/auth/token"))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id.as_str()),
                    ("client_secret", secret.as_str()),
                ])
                .send()
                .await
                .expect("token")
        }
    };
    let response = token(secret.clone()).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert!(body.get("refresh_token").is_none(), "client_credentials issues no refresh token");
    let me: Value =
        app.get(&app.auth("/api/v1/users/me"), body["access_token"].as_str()).await.json().await.expect("json");
    assert_eq!(me["kind"], "client");
    let rotated: Value = app
        .http
        .patch(app.auth(&format!("/api/v1/clients/{client_id}")))
        .bearer_auth(&admin)
        .json(&json!({ "rotate_secret": true }))
        .send()
        .await
        .expect("patch")
        .json()
        .await
        .expect("json");
    let new_secret = rotated["client_secret"].as_str().expect("new secret").to_string();
    assert_eq!(token(secret).await.status(), 401);
    assert_eq!(token(new_secret.clone()).await.status(), 200);
    let response = app
        .http
        .delete(app.auth(&format!("/api/v1/clients/{client_id}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("del");
    assert_eq!(response.status(), 204);
    assert_eq!(token(new_secret).await.status(), 401);
}

#[tokio::test]
async fn discovery_documents() {
    let app = spawn_app().await;
    let config: Value = app.get(&app.auth("/.well-known/openid-configuration"), None).await.json().await.expect("json");
    assert_eq!(config["issuer"], "acgs");
    let jwks_uri = config["jwks_uri"].as_str().expect("jwks_uri");
    let set: Value = app.get(jwks_uri, None).await.json().await.expect("jwks");
    let key = &set["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    assert!(key.get("d").is_none(), "no private key material in the JWKS");
}

/// Every auth change and every login attempt reaches the integrity log, with who and what but
/// never a password, secret or token.
#[tokio::test]
async fn logins_and_changes_are_audited_without_secrets() {
    let app = spawn_app_with(|c| c.auth.lockout_threshold = 2).await;
    let admin = app.admin_token().await;
    let admin_id = {
        let me: Value = app.get(&app.auth("/api/v1/users/me"), Some(&admin)).await.json().await.expect("json");
        me["id"].as_str().expect("id").to_string()
    };
    let alice = app.create_user(&admin, "alice", "alice-password-1", &["council"]).await;
    let (access, refresh) = app.tokens("alice", "alice-password-1").await;
    let refresh_response = app
        .http
        .post(app.auth("/api/v1/auth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())])
        .send()
        .await
        .expect("refresh");
    assert_eq!(refresh_response.status(), 200);
    let reused = app
        .http
        .post(app.auth("/api/v1/auth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())])
        .send()
        .await
        .expect("reuse");
    assert_eq!(reused.status(), 400);
    let revoked = app
        .http
        .post(app.auth("/api/v1/auth/revoke"))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    for _ in 0..2 {
        assert_eq!(app.login("alice", "wrong-password!").await.status(), 400);
    }
    assert_eq!(app.login("nobody", "some-password-1").await.status(), 400);
    let (client_id, secret) = app.create_client(&admin, "robot", &["agent"]).await;
    let machine = app
        .http
        .post(app.auth("/api/v1/auth/token"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("client login");
    assert_eq!(machine.status(), 200);
    let machine_token: Value = machine.json().await.expect("json");
    let bad_secret = app
        .http
        .post(app.auth("/api/v1/auth/token"))
        .basic_auth(&client_id, Some("not-the-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("client login");
    assert_eq!(bad_secret.status(), 401);
    let patch = app
        .http
        .patch(app.auth(&format!("/api/v1/users/{alice}")))
        .bearer_auth(&admin)
        .json(&json!({ "unlock": true, "password": "alice-password-2" }))
        .send()
        .await
        .expect("patch");
    assert_eq!(patch.status(), 200);
    let rotate = app.http.post(app.auth("/api/v1/auth/keys/rotate")).bearer_auth(&admin).send().await.expect("rotate");
    assert_eq!(rotate.status(), 200);
    let deleted =
        app.http.delete(app.auth(&format!("/api/v1/clients/{client_id}"))).bearer_auth(&admin).send().await.expect("d");
    assert_eq!(deleted.status(), 204);
    let deleted =
        app.http.delete(app.auth(&format!("/api/v1/users/{alice}"))).bearer_auth(&admin).send().await.expect("d");
    assert_eq!(deleted.status(), 204);

    // (kind, subject, actor) expected in the log, in the order they happened.
    let user = format!("user:{alice}");
    let client = format!("client:{client_id}");
    let expected: Vec<(&str, String, String)> = vec![
        ("auth.login.success", format!("user:{admin_id}"), admin_id.clone()),
        ("auth.user.created", user.clone(), admin_id.clone()),
        ("auth.login.success", user.clone(), alice.clone()),
        ("auth.token.refreshed", user.clone(), alice.clone()),
        ("auth.token.refresh_reused", String::new(), "anonymous".into()),
        ("auth.token.revoked", String::new(), alice.clone()),
        ("auth.login.failure", user.clone(), "anonymous".into()),
        ("auth.login.failure", user.clone(), "anonymous".into()),
        ("auth.login.lockout", user.clone(), "system".into()),
        ("auth.login.failure", "username:nobody".into(), "anonymous".into()),
        ("auth.client.created", client.clone(), admin_id.clone()),
        ("auth.login.success", client.clone(), client_id.clone()),
        ("auth.login.failure", client.clone(), "anonymous".into()),
        ("auth.user.updated", user.clone(), admin_id.clone()),
        ("auth.key.rotated", String::new(), admin_id.clone()),
        ("auth.client.deleted", client.clone(), admin_id.clone()),
        ("auth.user.deleted", user.clone(), admin_id.clone()),
    ];
    let log = app.url(acgs::kernel::service::ServiceName::Integrity, "/api/v1/log/entries?limit=1000");
    let mut seen: Vec<Value> = Vec::new();
    for _ in 0..100 {
        let page: Value = app.get(&log, None).await.json().await.expect("json");
        seen = page["entries"].as_array().expect("entries").clone();
        if seen.iter().any(|e| e["event"]["kind"] == "auth.user.deleted") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let auth: Vec<&Value> = seen.iter().map(|e| &e["event"]).filter(|e| e["service"] == "auth").collect();
    // The first events are the install's own: its first signing key, the first admin and the
    // services' machine client.
    assert_eq!(auth[0]["kind"], "auth.key.created");
    assert_eq!((&auth[1]["kind"], &auth[1]["actor"]), (&json!("auth.user.created"), &json!("system")));
    assert_eq!(
        (&auth[2]["kind"], &auth[2]["subject"]),
        (&json!("auth.client.created"), &json!("client:acgs-services"))
    );
    let got: Vec<(String, String, String)> = auth[3..]
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().expect("string").to_string();
            (s("kind"), s("subject"), s("actor"))
        })
        .collect();
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for (g, (kind, subject, actor)) in got.iter().zip(&expected) {
        assert_eq!(g.0, *kind, "{got:#?}");
        if !subject.is_empty() {
            assert_eq!(&g.1, subject, "{kind}");
        }
        assert_eq!(&g.2, actor, "{kind}");
    }
    let text = serde_json::to_string(&seen).expect("json");
    let machine_access = machine_token["access_token"].as_str().expect("token");
    for secret in
        [ADMIN_PASSWORD, "alice-password-1", "alice-password-2", "wrong-password!", &secret, &access, &refresh]
    {
        assert!(!text.contains(secret), "the log contains a secret: {secret}");
    }
    assert!(!text.contains(machine_access));
}

#[tokio::test]
async fn the_services_machine_client_gets_service_tokens_and_counts_voters() {
    use std::os::unix::fs::PermissionsExt;
    let app = spawn_app().await;
    let path = app.dir.path().join("service-client-secret");
    let mode = std::fs::metadata(&path).expect("secret file").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let secret = std::fs::read_to_string(&path).expect("read").trim().to_string();
    async fn grant(app: &TestApp, secret: &str) -> reqwest::Response {
        app.http
            .post(app.auth("/api/v1/auth/token"))
            .basic_auth("acgs-services", Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token")
    }
    let response = grant(&app, &secret).await;
    assert_eq!(response.status(), 200);
    let token = response.json::<Value>().await.expect("json")["access_token"].as_str().expect("token").to_string();
    let admin = app.admin_token().await;
    app.create_user(&admin, "cora", "a-long-password-1", &["council"]).await;
    let count: Value =
        app.get(&app.auth("/api/v1/roles/council/count"), Some(&token)).await.json().await.expect("json");
    assert_eq!(count, json!({ "role": "council", "count": 1 }));
    assert_eq!(error_code(app.get(&app.auth("/api/v1/roles/wizard/count"), Some(&token)).await).await.0, 404);
    assert_eq!(error_code(grant(&app, "wrong").await).await.0, 401);

    // A configured secret replaces the generated one at the next start (a rotation).
    let mut app = app;
    app.config.service_client_secret = "a-rotated-service-secret".into();
    app.restart().await;
    assert_eq!(error_code(grant(&app, &secret).await).await.0, 401, "the old secret no longer works");
    assert_eq!(grant(&app, "a-rotated-service-secret").await.status(), 200);
}
