//! The server: accepting connections, one task per client reading requests, executing them
//! and writing the replies, the active expiry sweep, and every limit that keeps one client from
//! hurting the others.
//!
//! A connection reads what the client sent, executes every complete request in the buffer in
//! order (pipelining), and writes all their replies at once; it stops executing to write once
//! [`OUTPUT_CHUNK`] bytes of replies are waiting, and reads nothing more until they are written,
//! so memory per client is bounded by one request (the decoder's limits) plus one chunk of
//! replies plus the largest single reply. With `--fsync always` the replies of a batch that
//! changed anything are written only once its generation is on disk ([`super::storage`]).
//!
//! Time limits, each ending only that connection: a request whose first bytes have arrived must
//! be complete within `request_timeout` (else `-ERR Protocol error: timed out reading the
//! request` and the close: half-written frames and slow-drip senders); a client that takes
//! none of its replies for `write_timeout` (it stopped reading) is disconnected; an
//! idle client is closed after `idle_timeout` if one is set (Redis's `timeout`, off by
//! default). Client sockets get TCP keepalive (`tcp_keepalive`, 300 s as Redis's default), so
//! a peer that vanished without a word is noticed even with no idle time-out.
//!
//! A protocol error is answered with its `-ERR Protocol error: …` line after the replies to the
//! requests before it; then the connection is shut down for writing and its input drained for a
//! moment, so the client reads the error rather than a reset. Over `max_clients`, a new
//! connection gets `-ERR max number of clients reached` and is closed.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use super::commands::{self, After};
use super::proto::{Limits, ProtoError, Reply, RequestCodec};
use super::storage::{Fsync, Store, now_ms};

/// Replies waiting beyond this many bytes are written before more requests are executed.
pub const OUTPUT_CHUNK: usize = 64 * 1024;
/// How long a closing connection's input is still read (and discarded), so that the client
/// reads the `-ERR` we sent rather than a connection reset.
const LINGER: Duration = Duration::from_secs(1);
/// Buffers grown beyond this are given back once empty.
const KEEP_BUFFER: usize = 1024 * 1024;
/// The most expired keys the sweep deletes under one hold of the lock.
const SWEEP_BATCH: usize = 1000;
/// How often the sweep runs (and the ops/sec sample is taken).
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// The limits and timers of one server, and where it keeps its keys. [`Options::default`]
/// keeps them in memory only and otherwise matches Redis's defaults where it has them.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the redb file lives; `None` keeps everything in memory only.
    pub data_dir: Option<PathBuf>,
    /// When a write is on disk relative to its reply (with a data dir): `always`.
    pub fsync: Fsync,
    /// Concurrent client connections: 10,000 (Redis's `maxclients`).
    pub max_clients: usize,
    /// Longest bulk string in a request: 512 MiB (Redis's `proto-max-bulk-len`).
    pub max_bulk_len: usize,
    /// Most arguments in one request: 1,048,576.
    pub max_multibulk_len: usize,
    /// Longest inline request, and longest `*`/`$` length line: 64 KiB (as Redis).
    pub max_inline_len: usize,
    /// Most bytes one request may add up to: 1 GiB (Redis's `client-query-buffer-limit`).
    pub max_query_buffer: usize,
    /// How long a started request may take to arrive whole: 30 s.
    pub request_timeout: Duration,
    /// How long a client may send nothing before it is closed; zero (the default) = never.
    pub idle_timeout: Duration,
    /// How long replies may wait without the client taking any of them: 30 s.
    pub write_timeout: Duration,
    /// TCP keepalive idle time on client sockets; zero = off: 300 s.
    pub tcp_keepalive: Duration,
    /// The longest a change waits for its commit when nobody asks sooner: 1 s.
    pub commit_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            data_dir: None,
            fsync: Fsync::Always,
            max_clients: 10_000,
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_query_buffer: 1024 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::ZERO,
            write_timeout: Duration::from_secs(30),
            tcp_keepalive: Duration::from_secs(300),
            commit_interval: Duration::from_secs(1),
        }
    }
}

impl Options {
    /// Checks that the limits make sense together.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_bulk_len < 1024 {
            return Err(format!("max bulk length must be at least 1 KiB (got {})", self.max_bulk_len));
        }
        if self.max_bulk_len > self.max_query_buffer {
            return Err(format!(
                "max bulk length ({}) must not exceed the max query buffer ({}): such a value could never be sent",
                self.max_bulk_len, self.max_query_buffer
            ));
        }
        if self.max_multibulk_len == 0 {
            return Err("max multibulk length must be at least 1".into());
        }
        if self.max_inline_len < 256 || self.max_inline_len > 16 * 1024 * 1024 {
            return Err(format!(
                "max inline length must be between 256 bytes and 16 MiB (got {})",
                self.max_inline_len
            ));
        }
        if self.max_clients == 0 {
            return Err("max clients must be at least 1".into());
        }
        if self.request_timeout.is_zero() || self.write_timeout.is_zero() || self.commit_interval.is_zero() {
            return Err("request time-out, write time-out and commit interval must be positive".into());
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        Limits {
            max_bulk_len: self.max_bulk_len,
            max_multibulk_len: self.max_multibulk_len,
            max_inline_len: self.max_inline_len,
            max_query_buffer: self.max_query_buffer,
        }
    }
}

/// Locks `m`, whether or not another holder panicked.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves Redis clients on `listener` until `shutdown` resolves, with [`Options::default`]
/// (keys in memory only).
pub async fn run(listener: TcpListener, shutdown: impl Future) -> io::Result<()> {
    run_with(listener, Options::default(), shutdown).await
}

/// Serves Redis clients on `listener` until `shutdown` resolves; then closes every connection,
/// commits what is pending and returns. Fails at once if the store cannot be opened.
pub async fn run_with(listener: TcpListener, options: Options, shutdown: impl Future) -> io::Result<()> {
    options.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let addr = listener.local_addr()?;
    let store = match options.data_dir.clone() {
        None => Store::memory(),
        Some(dir) => {
            let (fsync, interval) = (options.fsync, options.commit_interval);
            tokio::task::spawn_blocking(move || Store::open(&dir, fsync, interval))
                .await
                .map_err(io::Error::other)?
                .map_err(io::Error::other)?
        }
    };
    let server = Arc::new(Server::new(options, store, addr));
    let stop = CancellationToken::new();
    let sweeper = tokio::spawn(sweep(server.clone(), stop.clone()));
    crate::shim::accept_until("redis", &listener, &stop, shutdown, |stream, peer| {
        server.clone().serve(stream, peer, stop.clone())
    })
    .await;
    let _ = sweeper.await;
    let closing = server.clone();
    tokio::task::spawn_blocking(move || closing.store.close()).await.map_err(io::Error::other)?;
    Ok(())
}

/// Deletes expired keys every [`SWEEP_INTERVAL`] and samples the command rate.
async fn sweep(server: Arc<Server>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        server.stats.sample();
        loop {
            let removed = server.store.lock().sweep(now_ms(), SWEEP_BATCH);
            if removed < SWEEP_BATCH {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Counters for `INFO`.
#[derive(Debug, Default)]
pub struct Stats {
    pub connections_received: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub commands: AtomicU64,
    pub error_replies: AtomicU64,
    pub net_input_bytes: AtomicU64,
    pub net_output_bytes: AtomicU64,
    samples: Mutex<Samples>,
}

#[derive(Debug, Default)]
struct Samples {
    last_commands: u64,
    last_at: Option<std::time::Instant>,
    rates: [u64; 16],
    next: usize,
}

impl Stats {
    fn sample(&self) {
        let commands = self.commands.load(Ordering::Relaxed);
        let now = std::time::Instant::now();
        let mut s = lock(&self.samples);
        if let Some(at) = s.last_at {
            let ms = now.duration_since(at).as_millis().max(1) as u64;
            let i = s.next;
            s.rates[i] = commands.saturating_sub(s.last_commands) * 1000 / ms;
            s.next = (i + 1) % s.rates.len();
        }
        s.last_commands = commands;
        s.last_at = Some(now);
    }

    /// Commands per second over the last 1.6 s (as Redis: the mean of 16 samples).
    pub fn ops_per_sec(&self) -> u64 {
        let s = lock(&self.samples);
        s.rates.iter().sum::<u64>() / s.rates.len() as u64
    }
}

/// What `CLIENT LIST` shows about one connection (shared with the connection's task).
#[derive(Debug)]
pub struct ClientInfo {
    pub id: u64,
    pub addr: SocketAddr,
    pub laddr: SocketAddr,
    pub created: std::time::Instant,
    /// Last request, in ms since the server started.
    pub last_ms: AtomicU64,
    pub db: AtomicUsize,
    pub resp: AtomicU8,
    /// Index of the last command in [`commands::all`].
    pub last_command: AtomicUsize,
    pub name: Mutex<Option<Bytes>>,
    pub lib_name: Mutex<Option<Bytes>>,
    pub lib_ver: Mutex<Option<Bytes>>,
}

impl ClientInfo {
    /// This client's `CLIENT LIST` line (without the newline).
    pub fn line(&self, server: &Server) -> String {
        let text = |b: &Mutex<Option<Bytes>>| lock(b).as_ref().map(|n| String::from_utf8_lossy(n).into_owned());
        let now_ms = server.started.elapsed().as_millis() as u64;
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags=N db={} sub=0 psub=0 ssub=0 multi=-1 \
             cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            text(&self.name).unwrap_or_default(),
            self.created.elapsed().as_secs(),
            now_ms.saturating_sub(self.last_ms.load(Ordering::Relaxed)) / 1000,
            self.db.load(Ordering::Relaxed),
            commands::all().get(self.last_command.load(Ordering::Relaxed)).map_or("NULL", |c| c.name),
            self.resp.load(Ordering::Relaxed),
            text(&self.lib_name).unwrap_or_default(),
            text(&self.lib_ver).unwrap_or_default(),
        )
    }
}

/// One connection's own state.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub db: usize,
    pub resp: u8,
    pub info: Arc<ClientInfo>,
}

impl Session {
    pub fn select(&mut self, db: usize) {
        self.db = db;
        self.info.db.store(db, Ordering::Relaxed);
    }

    pub fn set_resp(&mut self, resp: u8) {
        self.resp = resp;
        self.info.resp.store(resp, Ordering::Relaxed);
    }
}

/// What every connection shares.
pub struct Server {
    pub options: Options,
    pub store: Store,
    pub stats: Stats,
    pub clients: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
    pub started: std::time::Instant,
    pub started_unix_ms: u64,
    pub run_id: String,
    pub addr: SocketAddr,
    next_client_id: AtomicU64,
    connections: AtomicUsize,
}

/// Why a connection ended.
enum End {
    /// The client closed (or reset) the connection, or a write failed.
    Closed,
    Shutdown,
    /// `QUIT`, after its reply.
    Quit,
    /// An HTTP request sent to the Redis port: closed without a word, as Redis does.
    CrossProtocol,
    /// A protocol error, answered with its `-ERR` line.
    Protocol(ProtoError),
    /// The request that had started did not arrive whole in time.
    RequestTimeout,
    Idle,
    /// The client did not take its replies in time.
    WriteTimeout,
    /// The commit the replies waited for failed.
    Durability(String),
}

impl Server {
    fn new(options: Options, store: Store, addr: SocketAddr) -> Self {
        let mut rng = rand::thread_rng();
        let run_id: String = (0..40).map(|_| char::from(b"0123456789abcdef"[rng.gen_range(0..16)])).collect();
        Server {
            options,
            store,
            stats: Stats::default(),
            clients: Mutex::new(BTreeMap::new()),
            started: std::time::Instant::now(),
            started_unix_ms: now_ms(),
            run_id,
            addr,
            next_client_id: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
        }
    }

    /// Connected clients now.
    pub fn connected(&self) -> usize {
        lock(&self.clients).len()
    }

    async fn serve(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, stop: CancellationToken) {
        self.stats.connections_received.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        if !self.options.tcp_keepalive.is_zero() {
            let keepalive = socket2::TcpKeepalive::new().with_time(self.options.tcp_keepalive);
            let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
        }
        if self.connections.fetch_add(1, Ordering::AcqRel) >= self.options.max_clients {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            self.stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%peer, max = self.options.max_clients, "redis shim: connection refused, maximum reached");
            refuse(stream, self.options.write_timeout).await;
            return;
        }
        let id = self.next_client_id.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(ClientInfo {
            id,
            addr: peer,
            laddr: stream.local_addr().unwrap_or(self.addr),
            created: std::time::Instant::now(),
            last_ms: AtomicU64::new(self.started.elapsed().as_millis() as u64),
            db: AtomicUsize::new(0),
            resp: AtomicU8::new(2),
            last_command: AtomicUsize::new(usize::MAX),
            name: Mutex::new(None),
            lib_name: Mutex::new(None),
            lib_ver: Mutex::new(None),
        });
        lock(&self.clients).insert(id, info.clone());
        let session = Session { id, db: 0, resp: 2, info };
        self.connection(stream, session, peer, &stop).await;
        lock(&self.clients).remove(&id);
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    async fn connection(
        &self,
        mut stream: TcpStream,
        mut session: Session,
        peer: SocketAddr,
        stop: &CancellationToken,
    ) {
        let id = session.id;
        tracing::debug!(client = id, %peer, "redis shim: client connected");
        let mut codec = RequestCodec::new(self.options.limits());
        let mut input = BytesMut::with_capacity(16 * 1024);
        let mut output = BytesMut::with_capacity(16 * 1024);
        let mut request_deadline: Option<Instant> = None;

        let end = 'connection: loop {
            // Execute every complete request buffered, up to a chunk of replies.
            let mut wrote: Option<u64> = None;
            let mut more = false;
            let mut stopping: Option<End> = None;
            loop {
                match codec.decode(&mut input) {
                    Ok(Some(args)) => {
                        request_deadline = None;
                        let executed = commands::execute(self, &mut session, &args, &mut output);
                        self.stats.commands.fetch_add(1, Ordering::Relaxed);
                        if executed.errors > 0 {
                            self.stats.error_replies.fetch_add(executed.errors, Ordering::Relaxed);
                        }
                        if let Some(generation) = executed.wrote {
                            wrote = Some(wrote.map_or(generation, |w| w.max(generation)));
                        }
                        match executed.after {
                            After::Continue => {}
                            After::Save => {
                                let saved = tokio::select! {
                                    saved = self.store.save() => saved,
                                    () = stop.cancelled() => break 'connection End::Shutdown,
                                };
                                let mut reply = Reply::new(&mut output, session.resp);
                                match saved {
                                    Ok(()) => reply.ok(),
                                    Err(e) => reply.error(format!("ERR {e}")),
                                }
                            }
                            After::Quit => {
                                stopping = Some(End::Quit);
                                break;
                            }
                            After::Drop => break 'connection End::CrossProtocol,
                        }
                        if output.len() >= OUTPUT_CHUNK {
                            more = true;
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        if let Some(text) = e.wire() {
                            Reply::new(&mut output, session.resp).error(format!("ERR {text}"));
                        }
                        stopping = Some(End::Protocol(e));
                        break;
                    }
                }
            }
            session.info.last_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);

            // With --fsync always, replies to writes wait for their commit.
            if let Some(generation) = wrote
                && self.store.replies_wait()
            {
                let durable = tokio::select! {
                    durable = self.store.wait_durable(generation) => durable,
                    () = stop.cancelled() => break 'connection End::Shutdown,
                };
                if let Err(e) = durable {
                    break 'connection End::Durability(e);
                }
            }

            if !output.is_empty() {
                let n = output.len();
                match write_with_progress(&mut stream, &output, self.options.write_timeout).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => break 'connection End::WriteTimeout,
                    Err(_) => break 'connection End::Closed,
                }
                self.stats.net_output_bytes.fetch_add(n as u64, Ordering::Relaxed);
                output.clear();
                if output.capacity() > KEEP_BUFFER {
                    output = BytesMut::with_capacity(16 * 1024);
                }
            }
            if let Some(end) = stopping {
                break end;
            }
            if more {
                continue;
            }

            // Read more: a started request has a deadline; an idle client only if configured.
            let partial = codec.in_request() || !input.is_empty();
            let deadline = if partial {
                Some(*request_deadline.get_or_insert_with(|| Instant::now() + self.options.request_timeout))
            } else if !self.options.idle_timeout.is_zero() {
                Some(Instant::now() + self.options.idle_timeout)
            } else {
                None
            };
            if input.is_empty() && input.capacity() > KEEP_BUFFER {
                input = BytesMut::with_capacity(16 * 1024);
            }
            if input.capacity() - input.len() < 4096 {
                input.reserve(16 * 1024);
            }
            let expired = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                read = stream.read_buf(&mut input) => match read {
                    Ok(0) | Err(_) => break End::Closed,
                    Ok(n) => {
                        self.stats.net_input_bytes.fetch_add(n as u64, Ordering::Relaxed);
                    }
                },
                () = expired => break if partial { End::RequestTimeout } else { End::Idle },
                () = stop.cancelled() => break End::Shutdown,
            }
        };

        let reason = match &end {
            End::Protocol(e) => Some(e.to_string()),
            End::RequestTimeout => {
                let text = "ERR Protocol error: timed out reading the request";
                Reply::new(&mut output, session.resp).error(text);
                Some(format!("the request was not complete within {:?}", self.options.request_timeout))
            }
            End::CrossProtocol => {
                tracing::warn!(client = id, %peer, "redis shim: an HTTP request on the Redis port; closing (possible cross-protocol attack)");
                None
            }
            End::WriteTimeout => {
                tracing::info!(client = id, %peer, "redis shim: the client did not take its replies in time; closing");
                None
            }
            End::Durability(e) => {
                tracing::warn!(client = id, %peer, error = %e, "redis shim: a commit failed; closing without the replies");
                None
            }
            End::Idle => {
                tracing::debug!(client = id, %peer, "redis shim: idle time-out");
                None
            }
            End::Closed | End::Shutdown | End::Quit => None,
        };
        if let Some(reason) = reason {
            tracing::info!(client = id, %peer, %reason, "redis shim: closing the connection on an error");
            let _ = timeout(self.options.write_timeout, async {
                stream.write_all(&output).await?;
                stream.shutdown().await
            })
            .await;
            // Keep reading (and discarding) briefly, so the client gets our -ERR, not a reset.
            let mut scratch = vec![0u8; 16 * 1024];
            let drain = async { while matches!(stream.read(&mut scratch).await, Ok(n) if n > 0) {} };
            tokio::select! {
                _ = timeout(LINGER, drain) => {}
                () = stop.cancelled() => {}
            }
        } else if matches!(end, End::Quit) {
            let _ = timeout(self.options.write_timeout, stream.shutdown()).await;
        }
        tracing::debug!(client = id, %peer, "redis shim: connection closed");
    }
}

/// Writes all of `buf`, failing with `TimedOut` if the client takes nothing for `limit` (a
/// client that reads slowly but steadily gets its large reply).
async fn write_with_progress(stream: &mut TcpStream, mut buf: &[u8], limit: Duration) -> io::Result<()> {
    while !buf.is_empty() {
        match timeout(limit, stream.write(buf)).await {
            Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => buf = &buf[n..],
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(io::ErrorKind::TimedOut.into()),
        }
    }
    Ok(())
}

/// Over `max_clients`: the error, close.
async fn refuse(mut stream: TcpStream, deadline: Duration) {
    let _ = timeout(deadline, async {
        stream.write_all(b"-ERR max number of clients reached\r\n").await?;
        stream.shutdown().await
    })
    .await;
}
