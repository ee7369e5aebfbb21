//! `acgs healthcheck URL [--timeout 3s]`: the HEALTHCHECK probe for `FROM scratch` images,
//! which have no curl.
//!
//! One GET, no redirects followed, no proxy: healthy (exit 0) only on a 2xx status within the
//! time-out; anything else is an error naming the URL and the status or the connection error,
//! which the caller turns into exit status 1 (what Docker expects for "unhealthy").

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{StatusCode, Url};

use super::{fmt_duration, parse_duration};
use crate::kernel::error::chain;

/// Probe an HTTP(S) endpoint; succeed only on a 2xx within the time-out.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthcheckArgs {
    /// URL to GET, e.g. http://127.0.0.1:8000/health. Redirects are not followed, so a 3xx
    /// counts as unhealthy.
    #[arg(env = "ACGS_HEALTHCHECK_URL", value_name = "URL")]
    pub url: String,

    /// Give up after this long (connect, request and response headers together);
    /// units ms, s, m, h, e.g. 3s, 500ms, 2m.
    #[arg(
        long,
        env = "ACGS_HEALTHCHECK_TIMEOUT",
        default_value = "3s",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub timeout: Duration,
}

/// Runs the probe and prints one line with the status on success.
pub async fn run(args: HealthcheckArgs) -> Result<()> {
    let status = check(&args.url, args.timeout).await?;
    println!("healthy: {} returned {status}", args.url);
    Ok(())
}

/// GETs `url` once and returns its status if it is a 2xx within `timeout`.
///
/// Errors (all naming the URL): an invalid URL, a connection or TLS error, the time-out, or a
/// non-2xx status.
pub async fn check(url: &str, timeout: Duration) -> Result<StatusCode> {
    let parsed = Url::parse(url).with_context(|| format!("invalid healthcheck URL {url:?}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("invalid healthcheck URL {url:?}: scheme must be http or https, not {:?}", parsed.scheme());
    }
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("acgs-healthcheck/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client for the healthcheck")?;

    // reqwest's own time-out covers connect and request; the outer one also bounds name
    // resolution, so the probe never outlives `timeout` by much.
    let response = match tokio::time::timeout(timeout, client.get(parsed).send()).await {
        Err(_) => bail!("unhealthy: {url} did not answer within {}", fmt_duration(timeout)),
        Ok(Err(e)) if e.is_timeout() => {
            bail!("unhealthy: {url} did not answer within {}", fmt_duration(timeout))
        }
        Ok(Err(e)) => return Err(anyhow!("unhealthy: GET {url} failed: {}", chain(&e))),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if !status.is_success() {
        bail!("unhealthy: {url} returned {status}");
    }
    Ok(status)
}
