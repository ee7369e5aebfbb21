//! `acgs shim redis`: a Redis stand-in for air-gapped or minimal deployments, speaking RESP2 and
//! RESP3 for the commands acgs uses and those tools and client libraries need (tested with the
//! `redis` crate, redis-cli and redis-benchmark, and against a real redis-server). It is a
//! stand-in, not a replacement for Redis at scale: one process, sixteen databases, no
//! replication, clustering, pub/sub, transactions, scripting, TLS, ACLs or eviction.
//!
//! # Storage and durability
//!
//! Keys live in memory and, with `--data-dir DIR`, in a redb file there (`DIR/redis.redb`,
//! loaded at start, expired keys dropped): see [`storage`]. With `--fsync always` (the default)
//! a write is answered only once it is committed to disk — group-committed, so concurrent
//! clients and pipelines share each fsync — and an acknowledged write survives a crash: the
//! revocation list acgs keeps in Redis must not come back from a restart shorter than it went
//! in. `--fsync everysec` answers at once and commits at least every second (Redis's
//! `appendfsync everysec`: a crash loses at most the last second of writes), for throughput.
//! An operator must choose: the shim refuses to start without `--data-dir` unless given
//! `--in-memory` (nothing is written anywhere; everything is lost when it stops).
//!
//! Expiry is lazy (a key past its time is gone for every command) and active (a sweep every
//! 100 ms deletes expired keys, so `DBSIZE` and `INFO keyspace` stay close to the truth).
//!
//! # Commands
//!
//! Connection: `PING`, `ECHO`, `SELECT` (0–15), `QUIT`, `HELLO 2|3` (with `AUTH` and `SETNAME`),
//! `AUTH`, `CLIENT ID|GETNAME|SETNAME|SETINFO|INFO|LIST|HELP`. Server: `COMMAND` (`COUNT`, `LIST`,
//! `INFO`, `DOCS`, `HELP`), `CONFIG GET|HELP`, `INFO` (sections), `DBSIZE`, `FLUSHDB`,
//! `FLUSHALL`, `TIME`, `SAVE`, `BGSAVE`, `LASTSAVE`. Keys: `DEL`, `UNLINK`, `EXISTS`, `TYPE`,
//! `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT` (`NX|XX|GT|LT`), `EXPIRETIME`, `PEXPIRETIME`,
//! `TTL`, `PTTL`, `PERSIST`, `KEYS`, `SCAN` (`MATCH`, `COUNT`, `TYPE`), `RANDOMKEY`, `RENAME`,
//! `RENAMENX`. Strings: `GET`, `SET` (`EX|PX|EXAT|PXAT|KEEPTTL`, `NX|XX`, `GET`), `SETEX`,
//! `PSETEX`, `SETNX`, `GETSET`, `GETDEL`, `GETEX`, `MGET`, `MSET`, `MSETNX`, `APPEND`, `STRLEN`,
//! `INCR`, `DECR`, `INCRBY`, `DECRBY`. Lists: `LPUSH`, `RPUSH`, `LPOP`, `RPOP`, `LLEN`, `LRANGE`.
//! Sets: `SADD`, `SREM`, `SMEMBERS`, `SISMEMBER`, `SCARD`. Hashes: `HSET`, `HGET`, `HMGET`,
//! `HDEL`, `HGETALL`, `HKEYS`, `HVALS`, `HLEN`, `HEXISTS`, `HINCRBY`. Anything else is `-ERR
//! unknown command`. Inline commands and pipelining work as in Redis.
//!
//! Where it differs from Redis 7.0: `HELLO`/`INFO` report version 7.0.0 (the behaviour
//! followed) and `INFO` has fewer fields; `CONFIG SET`, `CLIENT KILL` and the other
//! subcommands not listed are unknown subcommands; `SCAN` cursors are hash positions (each key
//! present throughout is returned exactly once) and `KEYS`/`SCAN`/`SMEMBERS`/`HGETALL` orders
//! differ; `SAVE`/`BGSAVE` commit to the redb file (an error with `--in-memory`); `INFO memory`
//! is the process's resident size. Bad input: a control character in an inline request is a
//! protocol error (Redis would answer "unknown command"), and a request that has started must
//! arrive whole within `--request-timeout` (Redis waits forever).
//!
//! # Limits
//!
//! Each closes only the offending connection, with `-ERR Protocol error: …` where there is
//! something to say, and is checked before the bytes are buffered: `--max-bulk-len` (512 MiB),
//! `--max-multibulk-len` (1,048,576 arguments), `--max-inline-len` (64 KiB, also the longest
//! `*`/`$` line), `--max-query-buffer` (1 GiB per request), `--max-clients` (10,000; more get
//! `-ERR max number of clients reached`), `--request-timeout` (30 s), `--write-timeout` (30 s
//! in which a client takes none of its replies), `--idle-timeout` (off, as Redis's `timeout 0`),
//! `--tcp-keepalive` (300 s).
//!
//! Layout: [`proto`] (the RESP codec and reply encoder), [`commands`] (the table and dispatch),
//! [`keys`], [`types`] and [`admin`] (the commands), [`glob`] (Redis's pattern matching),
//! [`keyspace`] (the databases in memory), [`storage`] (redb and group commit), [`server`]
//! (connections, limits, the expiry sweep); [`run`] is what tests call.

pub mod admin;
pub mod commands;
pub mod glob;
pub mod keys;
pub mod keyspace;
pub mod proto;
pub mod server;
pub mod storage;
pub mod types;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

pub use server::{Options, run, run_with};
pub use storage::Fsync;

/// Run the Redis shim.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "ACGS_SHIM_REDIS_PORT", default_value_t = 6379)]
    pub port: u16,

    /// Address to listen on.
    #[arg(long, env = "ACGS_SHIM_REDIS_BIND", default_value = "127.0.0.1", value_name = "ADDR")]
    pub bind: std::net::IpAddr,

    /// Directory of the redb file that keeps the keys (created 0700 if missing). Required unless
    /// --in-memory.
    #[arg(long, env = "ACGS_SHIM_REDIS_DATA_DIR", value_name = "DIR", conflicts_with = "in_memory")]
    pub data_dir: Option<PathBuf>,

    /// Keep the keys only in memory: nothing is written, everything is lost when the shim stops.
    #[arg(long, env = "ACGS_SHIM_REDIS_IN_MEMORY")]
    pub in_memory: bool,

    /// When a write is on disk: `always` answers once it is committed (group commit; survives a
    /// crash); `everysec` answers at once and commits every second (a crash loses up to 1 s).
    #[arg(long, env = "ACGS_SHIM_REDIS_FSYNC", value_enum, default_value = "always")]
    pub fsync: Fsync,

    /// Most concurrent client connections.
    #[arg(long, env = "ACGS_SHIM_REDIS_MAX_CLIENTS", default_value_t = 10_000, value_name = "N")]
    pub max_clients: usize,

    /// Longest bulk string (one argument) a request may carry, e.g. 536870912 or 512MiB.
    #[arg(long, env = "ACGS_SHIM_REDIS_MAX_BULK_LEN", default_value = "512MiB", value_parser = super::parse_size, value_name = "BYTES")]
    pub max_bulk_len: usize,

    /// Most arguments in one request.
    #[arg(long, env = "ACGS_SHIM_REDIS_MAX_MULTIBULK_LEN", default_value_t = 1024 * 1024, value_name = "N")]
    pub max_multibulk_len: usize,

    /// Longest inline command line (and `*`/`$` length line).
    #[arg(long, env = "ACGS_SHIM_REDIS_MAX_INLINE_LEN", default_value = "64KiB", value_parser = super::parse_size, value_name = "BYTES")]
    pub max_inline_len: usize,

    /// Most bytes one request may add up to.
    #[arg(long, env = "ACGS_SHIM_REDIS_MAX_QUERY_BUFFER", default_value = "1GiB", value_parser = super::parse_size, value_name = "BYTES")]
    pub max_query_buffer: usize,

    /// How long a request whose first bytes have arrived may take to arrive whole. Units ms, s,
    /// m, h.
    #[arg(long, env = "ACGS_SHIM_REDIS_REQUEST_TIMEOUT", default_value = "30s", value_parser = crate::tools::parse_duration, value_name = "DURATION")]
    pub request_timeout: Duration,

    /// How long a client may take none of its replies (it stopped reading) before it is
    /// disconnected.
    #[arg(long, env = "ACGS_SHIM_REDIS_WRITE_TIMEOUT", default_value = "30s", value_parser = crate::tools::parse_duration, value_name = "DURATION")]
    pub write_timeout: Duration,

    /// Close a client that sends nothing for this long; 0s (the default) never does.
    #[arg(long, env = "ACGS_SHIM_REDIS_IDLE_TIMEOUT", default_value = "0s", value_parser = crate::tools::parse_duration, value_name = "DURATION")]
    pub idle_timeout: Duration,

    /// TCP keepalive idle time on client sockets (finds peers that vanished); 0s turns it off.
    #[arg(long, env = "ACGS_SHIM_REDIS_TCP_KEEPALIVE", default_value = "300s", value_parser = crate::tools::parse_duration, value_name = "DURATION")]
    pub tcp_keepalive: Duration,

    /// Log filter: error, warn, info, debug, trace, or per-module directives.
    #[arg(long, env = "ACGS_LOG_LEVEL", default_value = "info", value_name = "FILTER")]
    pub log_level: String,
}

impl RedisArgs {
    /// The server options these flags ask for; the caller's mistake if they do not fit together.
    pub fn options(&self) -> Result<Options, String> {
        if self.data_dir.is_none() && !self.in_memory {
            return Err("acgs shim redis needs --data-dir DIR (ACGS_SHIM_REDIS_DATA_DIR) to keep its keys, \
                        or --in-memory to keep them only while it runs"
                .into());
        }
        let options = Options {
            data_dir: self.data_dir.clone(),
            fsync: self.fsync,
            max_clients: self.max_clients,
            max_bulk_len: self.max_bulk_len,
            max_multibulk_len: self.max_multibulk_len,
            max_inline_len: self.max_inline_len,
            max_query_buffer: self.max_query_buffer,
            request_timeout: self.request_timeout,
            write_timeout: self.write_timeout,
            idle_timeout: self.idle_timeout,
            tcp_keepalive: self.tcp_keepalive,
            ..Options::default()
        };
        options.validate().map(|()| options)
    }
}

/// `acgs shim redis`: bind, say where and how keys are kept, serve until `shutdown` resolves.
pub async fn serve(args: RedisArgs, options: Options, shutdown: impl std::future::Future) -> Result<()> {
    let addr = std::net::SocketAddr::new(args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for the Redis shim"))?;
    let local = listener.local_addr().context("reading the Redis shim's listening address")?;
    eprintln!("acgs: redis shim  listening on redis://{local}");
    match &options.data_dir {
        Some(dir) => eprintln!(
            "acgs: redis shim keeps its keys in {} (fsync {})",
            dir.join(storage::DB_FILE).display(),
            options.fsync.name()
        ),
        None => eprintln!("acgs: redis shim keeps its keys in memory only: they are lost when it stops"),
    }
    tracing::info!(
        addr = %local,
        max_clients = options.max_clients,
        max_bulk_len = options.max_bulk_len,
        "redis shim: serving (no replication, pub/sub, transactions, scripting, TLS or ACLs)"
    );
    run_with(listener, options, shutdown).await.context("the Redis shim stopped")?;
    eprintln!("acgs: redis shim stopped");
    Ok(())
}
