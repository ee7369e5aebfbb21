//! `acgs shim nats`: a NATS core-protocol server for air-gapped or minimal deployments, enough
//! for the official clients (tested with async-nats and nats-py). It is a stand-in, not a
//! replacement for nats-server at scale: one process, no clustering, no JetStream, no TLS, no
//! authentication, no monitoring endpoint. Core NATS keeps no state, and neither does this: the
//! `--data-dir` flag is accepted for uniformity with the other shims and nothing is written there.
//!
//! What it speaks (client protocol version 1): `INFO` (honest: `headers: true`, `proto: 1`,
//! `max_payload`, a generated `server_id`, `jetstream`/`tls_required`/`auth_required` false),
//! `CONNECT` (`verbose`, `pedantic`, `echo`, `headers`, `no_responders`, `protocol`), `PUB`,
//! `HPUB` (a `NATS/1.0` header block), `SUB` with `*`/`>` wildcards and queue groups (each message
//! to one member of each group, chosen at random), `UNSUB` with `max_msgs`, `MSG`/`HMSG`,
//! `PING`/`PONG` both ways, `+OK` only in verbose mode, `-ERR`. A request to a subject nobody
//! listens on gets the `503` no-responders status when the requester asked for it.
//!
//! Where it differs from nats-server: subjects are always checked (as if `pedantic`): a publish
//! to an invalid or wildcard subject (or reply subject) is answered `-ERR 'Invalid Publish
//! Subject'` and dropped, the connection stays open; malformed arguments get `-ERR 'Parser
//! Error'` before the close (nats-server closes without a word); an `HPUB` from a client that did
//! not negotiate headers gets `-ERR 'Message Headers Not Supported'`; subscription subjects are
//! limited to 256 tokens. Limits, all closing the connection with their `-ERR`: `max_payload`
//! (1 MiB), the control line (4 KiB; `CONNECT` 64 KiB), `max_pending` outbound bytes per client
//! (64 MiB, `Slow Consumer`), connections (65,536), unanswered pings (2 at 2-minute intervals,
//! `Stale Connection`).
//!
//! Layout: [`proto`] (the codec), [`sublist`] (subjects and the subscription index),
//! [`server`] (connections and routing); [`run`] is what tests call.

pub mod proto;
pub mod server;
pub mod sublist;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

pub use server::{Options, run, run_with};

/// Run the NATS shim.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "ACGS_SHIM_NATS_PORT", default_value_t = 4222)]
    pub port: u16,

    /// Address to listen on.
    #[arg(long, env = "ACGS_SHIM_NATS_BIND", default_value = "127.0.0.1", value_name = "ADDR")]
    pub bind: std::net::IpAddr,

    /// Accepted for uniformity with the other shims; core NATS keeps no state, so nothing is
    /// stored here.
    #[arg(long, env = "ACGS_SHIM_NATS_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Largest message a client may publish (header block included), e.g. 1048576 or 1MiB.
    #[arg(long, env = "ACGS_SHIM_NATS_MAX_PAYLOAD", default_value = "1MiB", value_parser = super::parse_size, value_name = "BYTES")]
    pub max_payload: usize,

    /// Outbound bytes queued for one client before it is disconnected as a slow consumer.
    #[arg(long, env = "ACGS_SHIM_NATS_MAX_PENDING", default_value = "64MiB", value_parser = super::parse_size, value_name = "BYTES")]
    pub max_pending: usize,

    /// Most concurrent client connections.
    #[arg(long, env = "ACGS_SHIM_NATS_MAX_CONNECTIONS", default_value_t = 65536, value_name = "N")]
    pub max_connections: usize,

    /// How often each client is pinged; two unanswered pings close the connection. Units ms, s,
    /// m, h.
    #[arg(
        long,
        env = "ACGS_SHIM_NATS_PING_INTERVAL",
        default_value = "2m",
        value_parser = crate::tools::parse_duration,
        value_name = "DURATION"
    )]
    pub ping_interval: Duration,

    /// Log filter: error, warn, info, debug, trace, or per-module directives.
    #[arg(long, env = "ACGS_LOG_LEVEL", default_value = "info", value_name = "FILTER")]
    pub log_level: String,
}

impl NatsArgs {
    /// The server options these flags ask for; the caller's mistake if they do not fit together.
    pub fn options(&self) -> Result<Options, String> {
        let options = Options {
            max_payload: self.max_payload,
            max_pending: self.max_pending,
            max_connections: self.max_connections,
            ping_interval: self.ping_interval,
            ..Options::default()
        };
        options.validate().map(|()| options)
    }
}

/// `acgs shim nats`: bind, say where, serve until `shutdown` resolves.
pub async fn serve(args: NatsArgs, options: Options, shutdown: impl std::future::Future) -> Result<()> {
    let addr = std::net::SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the NATS shim"))?;
    let local = listener.local_addr().context("reading the NATS shim's listening address")?;
    eprintln!("acgs: nats shim   listening on nats://{local}");
    if let Some(dir) = &args.data_dir {
        eprintln!("acgs: nats shim keeps no state; nothing is stored in {}", dir.display());
    }
    tracing::info!(
        addr = %local,
        max_payload = options.max_payload,
        max_pending = options.max_pending,
        "nats shim: serving (core protocol only: no JetStream, clustering, TLS or auth)"
    );
    run_with(listener, options, shutdown).await.context("the NATS shim stopped")?;
    eprintln!("acgs: nats shim stopped");
    Ok(())
}
