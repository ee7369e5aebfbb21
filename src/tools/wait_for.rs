//! `acgs wait-for HOST:PORT… [--timeout 30s] [--interval 200ms]`: block until every address
//! accepts a TCP connection, for start-up ordering in images without a shell or netcat.
//!
//! Names are resolved again on every attempt (a container's DNS entry may appear late); an
//! address counts as up when any of its resolved socket addresses accepts a connection. On the
//! time-out the error names every address still down with its last error.

use std::time::Duration;

use anyhow::{Result, bail};
use tokio::net::{TcpStream, lookup_host};
use tokio::time::{Instant, sleep_until, timeout_at};

use super::{fmt_duration, parse_duration};

/// Wait until every HOST:PORT accepts a TCP connection.
#[derive(Debug, Clone, clap::Args)]
pub struct WaitForArgs {
    /// Addresses to wait for: HOST:PORT, where HOST is a name, an IPv4 address or a bracketed
    /// IPv6 address ([::1]:5432). From the environment: comma-separated.
    #[arg(
        env = "ACGS_WAIT_FOR",
        value_delimiter = ',',
        required = true,
        num_args = 1..,
        value_name = "HOST:PORT"
    )]
    pub addrs: Vec<String>,

    /// Overall time-out for all addresses together; units ms, s, m, h.
    #[arg(
        long,
        env = "ACGS_WAIT_FOR_TIMEOUT",
        default_value = "30s",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub timeout: Duration,

    /// Pause between attempts on an address that is still down; units ms, s, m, h.
    #[arg(
        long,
        env = "ACGS_WAIT_FOR_INTERVAL",
        default_value = "200ms",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub interval: Duration,
}

/// Waits, then prints one line saying how many addresses are up.
pub async fn run(args: WaitForArgs) -> Result<()> {
    let started = Instant::now();
    wait_for(&args.addrs, args.timeout, args.interval).await?;
    println!("{} address(es) accepting connections after {:.1}s", args.addrs.len(), started.elapsed().as_secs_f64());
    Ok(())
}

/// Waits until every address in `addrs` accepts a TCP connection, or fails after `timeout`
/// naming the addresses still down (with the last error seen for each).
///
/// Malformed addresses fail at once, before any waiting.
pub async fn wait_for(addrs: &[String], timeout: Duration, interval: Duration) -> Result<()> {
    if addrs.is_empty() {
        bail!("wait-for: no addresses given");
    }
    for addr in addrs {
        validate(addr)?;
    }
    let deadline = Instant::now() + timeout;
    let results = futures::future::join_all(addrs.iter().map(|a| wait_one(a, deadline, interval))).await;
    let down: Vec<String> =
        addrs.iter().zip(results).filter_map(|(addr, r)| r.err().map(|e| format!("{addr} ({e})"))).collect();
    if !down.is_empty() {
        bail!(
            "timed out after {} waiting for {}: {}",
            fmt_duration(timeout),
            if down.len() == 1 { "1 address" } else { "addresses" },
            down.join(", ")
        );
    }
    Ok(())
}

/// Checks the HOST:PORT shape so typos fail at once instead of after the time-out.
fn validate(addr: &str) -> Result<()> {
    let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
        match rest.split_once("]:") {
            Some((host, port)) => (host, port),
            None => bail!("invalid address {addr:?}: expected [IPv6]:PORT"),
        }
    } else {
        match addr.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => {
                bail!("invalid address {addr:?}: put an IPv6 address in brackets, e.g. [::1]:5432")
            }
            Some((host, port)) => (host, port),
            None => bail!("invalid address {addr:?}: expected HOST:PORT"),
        }
    };
    if host.is_empty() {
        bail!("invalid address {addr:?}: empty host");
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => bail!("invalid address {addr:?}: port must be 1-65535"),
    }
}

/// Retries one address until it is up (Ok) or the deadline passes (Err with the last error).
async fn wait_one(addr: &str, deadline: Instant, interval: Duration) -> Result<(), String> {
    let mut last_error = String::from("not tried");
    loop {
        match timeout_at(deadline, try_connect(addr)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last_error = e,
            Err(_) => {
                if last_error == "not tried" {
                    last_error = "no answer".to_string();
                }
                return Err(last_error);
            }
        }
        let next = Instant::now() + interval;
        if next >= deadline {
            return Err(last_error);
        }
        sleep_until(next).await;
    }
}

/// One attempt: resolve, then try each socket address until one accepts.
async fn try_connect(addr: &str) -> Result<(), String> {
    let resolved: Vec<_> = lookup_host(addr).await.map_err(|e| format!("cannot resolve: {e}"))?.collect();
    let mut last = String::from("name resolved to no addresses");
    for sock in resolved {
        match TcpStream::connect(sock).await {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}
