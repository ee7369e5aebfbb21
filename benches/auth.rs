//! Hot paths of the foundation: token verification (cached and uncached) and an authenticated
//! request through the whole HTTP stack of the real auth service (in-process, no sockets), next to
//! `/health` through the same stack as the baseline. Run: `cargo bench --bench auth`.

use std::sync::Arc;
use std::time::Duration;

use acgs::config::Config;
use acgs::kernel::auth::{KeySource, Verifier};
use acgs::kernel::bus::Bus;
use acgs::kernel::constitution::HashCell;
use acgs::kernel::http::{self, HttpContext};
use acgs::services::auth::AuthService;
use axum::body::Body;
use axum::http::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use tower::ServiceExt;

const PASSWORD: &str = "benchmark-password-1";

struct Setup {
    router: axum::Router,
    verifier: Arc<Verifier>,
    source: Arc<dyn KeySource>,
    tokens: Vec<String>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::defaults_only();
    config.data_dir = dir.path().to_path_buf();
    config.admin_password = PASSWORD.into();
    let (auth, _) = AuthService::start(&config, Bus::new(), None).await.expect("auth starts");
    let source: Arc<dyn KeySource> = Arc::new(auth.client());
    let verifier = Arc::new(Verifier::new(source.clone(), "acgs", "acgs", 10_000));
    let ctx = HttpContext {
        hash: HashCell::new("0000000000000000"),
        verifier: verifier.clone(),
        body_limit_bytes: 1 << 20,
        request_timeout: Duration::from_secs(30),
    };
    let router = http::build(auth.app(), &ctx);
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let request = Request::post("/api/v1/auth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(format!("grant_type=password&username=admin&password={PASSWORD}")))
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("token response");
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        tokens.push(json["access_token"].as_str().expect("token").to_string());
    }
    Setup { router, verifier, source, tokens, _dir: dir }
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let s = rt.block_on(setup());

    let mut group = c.benchmark_group("verify");
    group.bench_function("cached", |b| {
        b.to_async(&rt).iter(|| async { s.verifier.verify(&s.tokens[0]).await.expect("valid") });
    });
    // A verifier that remembers one token, fed two in turn: every call checks the signature.
    let uncached = Arc::new(Verifier::new(s.source.clone(), "acgs", "acgs", 1));
    let mut turn = 0usize;
    group.bench_function("uncached (signature every time)", |b| {
        b.to_async(&rt).iter(|| {
            turn += 1;
            let token = s.tokens[turn % 2].clone();
            let verifier = uncached.clone();
            async move { verifier.verify(&token).await.expect("valid") }
        });
    });
    group.finish();

    let mut group = c.benchmark_group("http");
    group.bench_function("GET /health (baseline through the same stack)", |b| {
        b.to_async(&rt).iter(|| async {
            let request = Request::get("/health").body(Body::empty()).expect("request");
            let response = s.router.clone().oneshot(request).await.expect("response");
            assert!(response.status().is_success());
        });
    });
    let bearer = format!("Bearer {}", s.tokens[0]);
    group.bench_function("GET /api/v1/users/me (authenticated)", |b| {
        b.to_async(&rt).iter(|| async {
            let request =
                Request::get("/api/v1/users/me").header("authorization", &bearer).body(Body::empty()).expect("request");
            let response = s.router.clone().oneshot(request).await.expect("response");
            assert!(response.status().is_success());
        });
    });
    group.finish();
}

criterion_group!(auth, benches);
criterion_main!(auth);
