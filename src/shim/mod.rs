//! Infrastructure stand-ins for air-gapped or minimal deployments (DESIGN.md §5): `acgs shim
//! nats` speaks the NATS core client protocol well enough for the official clients; `acgs shim
//! redis` speaks RESP2/RESP3 for the commands acgs and the usual tools need, kept in redb. They
//! let a deployment run with no third-party image at all; they are not a replacement for the
//! real servers at scale.
//!
//! Each shim is a library module with `run(listener, shutdown)` (tests start it on port 0) and
//! a `clap::Args` struct plus `serve` for the command line; `src/cli.rs` wires them into the one
//! subcommand enum.

pub mod nats;
pub mod redis;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The accept loop of both shims: each connection accepted on `listener` is served by
/// `serve(stream, peer)` on a task of its own until `shutdown` resolves; then `stop` is cancelled
/// and every connection task is awaited (each flushes what it has queued within its write
/// deadline). A failed accept (out of file descriptors and the like) is logged and the loop goes
/// on serving the connections it has. `shim` names the shim in log lines.
async fn accept_until<F>(
    shim: &'static str,
    listener: &TcpListener,
    stop: &CancellationToken,
    shutdown: impl Future,
    mut serve: impl FnMut(TcpStream, SocketAddr) -> F,
) where
    F: Future<Output = ()> + Send + 'static,
{
    let log_failure = |joined: Result<(), tokio::task::JoinError>| {
        if let Err(e) = joined {
            tracing::error!(error = %e, "{shim} shim: a connection task failed");
        }
    };
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = async { (&mut shutdown).await; } => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve(stream, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "{shim} shim: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => log_failure(joined),
        }
    }
    stop.cancel();
    while let Some(joined) = connections.join_next().await {
        log_failure(joined);
    }
}

/// Parses a size in bytes: `1048576`, or with a binary unit `512KiB`, `1MiB` (`K`/`KB`/`M`/`MB`
/// mean the same powers of 1,024). Used as a clap `value_parser`, hence the `String` error.
pub fn parse_size(input: &str) -> Result<usize, String> {
    let s = input.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    if number.is_empty() {
        return Err(format!("invalid size {input:?}: expected a number of bytes, e.g. 1048576 or 1MiB"));
    }
    let number: usize = number.parse().map_err(|_| format!("invalid size {input:?}: number too large"))?;
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" => 1024,
        "M" | "MB" | "MiB" => 1024 * 1024,
        "G" | "GB" | "GiB" => 1024 * 1024 * 1024,
        other => return Err(format!("invalid size {input:?}: unknown unit {other:?} (use B, KiB, MiB or GiB)")),
    };
    number.checked_mul(scale).ok_or_else(|| format!("invalid size {input:?}: too large"))
}

/// Inputs for a decoder's robustness tests: `count` byte strings, each `len` of `pieces` chosen
/// by a fixed xorshift sequence (the same inputs every run).
#[cfg(test)]
fn garbage(pieces: &[&[u8]], count: usize, len: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..count).map(move |_| {
        let mut input = Vec::new();
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            input.extend_from_slice(pieces[(state % pieces.len() as u64) as usize]);
        }
        input
    })
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("1048576"), Ok(1024 * 1024));
        assert_eq!(parse_size("1MiB"), Ok(1024 * 1024));
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("64 MB"), Ok(64 * 1024 * 1024));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("3 parsecs").is_err());
        assert!(parse_size("99999999999999999999999").is_err());
    }
}
