//! The performance baseline: the smallest axum 0.8 server there is.
//!
//! `GET /` answers `Hello, World!` on `127.0.0.1:$PORT` (the first argument, else the `PORT`
//! environment variable, else 9999), served by tokio's multi-thread runtime and nothing else:
//! no middleware, no logging, no state. `scripts/load.sh` drives this and `acgs` with the same
//! `wrk` settings in the same run, and every HTTP load number of acgs is quoted as a ratio of
//! this one's.
//!
//! ```text
//! cargo run --release --example hello -- 9999
//! ```

use axum::{Router, routing::get};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::io::Result<()> {
    let port = match std::env::args().nth(1).or_else(|| std::env::var("PORT").ok()) {
        Some(raw) => raw
            .trim()
            .parse::<u16>()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad port {raw:?}: {e}")))?,
        None => 9999,
    };
    let app = Router::new().route("/", get(|| async { "Hello, World!" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
