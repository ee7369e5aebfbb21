//! The server: accepting connections, one reader task and one writer task per client, routing
//! published messages through the [`Sublist`], and every limit that keeps one client from
//! hurting the others.
//!
//! Each client has an outbound buffer that publishers append encoded `MSG`/`HMSG` frames to
//! (under a short lock) and a writer task that drains it to the socket. The buffer is bounded by
//! `max_pending` bytes: a publisher that would overflow it marks the client a slow consumer
//! instead, and the writer sends `-ERR 'Slow Consumer'` (if the socket takes it within the write
//! deadline) and closes. Memory per client is therefore bounded by `max_pending` plus the read
//! buffer (one control line or one payload at most).
//!
//! A protocol error is answered with its `-ERR` line; then the connection is flushed, shut down
//! for writing, and its input drained for a moment (so the client reads the error instead of a
//! reset). The server pings every client each `ping_interval` and closes one with
//! `max_pings_out` pings unanswered (`-ERR 'Stale Connection'`), which also ends half-open
//! connections.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;

use super::proto::{ClientCodec, ClientOp, ConnectOptions, ProtoError, encode_msg, err_line, msg_len};
use super::sublist::{Entry, Sublist, valid_publish, valid_queue, valid_subscription};

/// The limits and timers of one server. [`Options::default`] matches nats-server's defaults
/// where it has them.
#[derive(Debug, Clone)]
pub struct Options {
    /// Largest payload (header block included) a client may publish: 1 MiB.
    pub max_payload: usize,
    /// Longest control line (`PUB …`, `SUB …`): 4 KiB. `CONNECT` may be up to 64 KiB.
    pub max_control_line: usize,
    /// Concurrent client connections: 65,536.
    pub max_connections: usize,
    /// Outbound bytes queued for one client before it is disconnected as a slow consumer: 64 MiB.
    pub max_pending: usize,
    /// Subscriptions per connection (0 = unlimited): 65,536.
    pub max_subscriptions: usize,
    /// How often the server pings each client: 2 minutes.
    pub ping_interval: Duration,
    /// Unanswered pings before the connection is closed as stale: 2.
    pub max_pings_out: u32,
    /// How long a write to a client may block once the client is being closed (the final flush,
    /// or the chunk in flight when it became a slow consumer): 10 s.
    pub write_deadline: Duration,
    /// `server_name` in INFO.
    pub server_name: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_payload: 1024 * 1024,
            max_control_line: 4096,
            max_connections: 64 * 1024,
            max_pending: 64 * 1024 * 1024,
            max_subscriptions: 64 * 1024,
            ping_interval: Duration::from_secs(120),
            max_pings_out: 2,
            write_deadline: Duration::from_secs(10),
            server_name: "acgs-shim-nats".to_string(),
        }
    }
}

impl Options {
    /// Checks that the limits make sense together.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_payload == 0 || self.max_payload > 64 * 1024 * 1024 {
            return Err(format!("max payload must be between 1 byte and 64 MiB (got {})", self.max_payload));
        }
        if self.max_payload > self.max_pending {
            return Err(format!(
                "max payload ({}) must not exceed max pending ({}): such a message could never be delivered",
                self.max_payload, self.max_pending
            ));
        }
        if self.max_control_line < 256 || self.max_control_line > 64 * 1024 {
            return Err(format!(
                "max control line must be between 256 bytes and 64 KiB (got {})",
                self.max_control_line
            ));
        }
        if self.max_connections == 0 {
            return Err("max connections must be at least 1".into());
        }
        if self.ping_interval.is_zero() || self.write_deadline.is_zero() {
            return Err("ping interval and write deadline must be positive".into());
        }
        Ok(())
    }
}

/// How long a closing connection's input is still read (and discarded), so that the client
/// reads the `-ERR` we sent rather than a connection reset.
const LINGER: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves NATS clients on `listener` until `shutdown` resolves, with [`Options::default`].
pub async fn run(listener: TcpListener, shutdown: impl Future) -> io::Result<()> {
    run_with(listener, Options::default(), shutdown).await
}

/// Serves NATS clients on `listener` until `shutdown` resolves; then closes every connection
/// (each flushes what it has queued, within the write deadline) and returns.
pub async fn run_with(listener: TcpListener, options: Options, shutdown: impl Future) -> io::Result<()> {
    options.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let addr = listener.local_addr()?;
    let server = Arc::new(Server::new(options, addr));
    let stop = CancellationToken::new();
    crate::shim::accept_until("nats", &listener, &stop, shutdown, |stream, peer| {
        server.clone().serve(stream, peer, stop.clone())
    })
    .await;
    Ok(())
}

struct Server {
    options: Options,
    server_id: String,
    addr: SocketAddr,
    sublist: Mutex<Sublist<Subscription>>,
    next_client_id: AtomicU64,
    connections: AtomicUsize,
}

/// One `SUB` of one client.
struct Subscription {
    client: Arc<Client>,
    subject: Bytes,
    queue: Option<Bytes>,
    sid: Bytes,
    /// Auto-unsubscribe after this many deliveries (0 = never).
    max: AtomicU64,
    delivered: AtomicU64,
    removed: AtomicBool,
}

impl Entry for Subscription {
    fn subject(&self) -> &[u8] {
        &self.subject
    }
    fn queue(&self) -> Option<&[u8]> {
        self.queue.as_deref()
    }
}

impl Subscription {
    /// Claims one delivery; `Some(true)` if it is the last one before the auto-unsubscribe.
    fn claim(&self) -> Option<bool> {
        let max = self.max.load(Ordering::Acquire);
        let mut current = self.delivered.load(Ordering::Acquire);
        loop {
            if self.removed.load(Ordering::Acquire) || (max != 0 && current >= max) {
                return None;
            }
            match self.delivered.compare_exchange_weak(current, current + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(max != 0 && current + 1 >= max),
                Err(seen) => current = seen,
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutState {
    Open,
    /// Write what is queued, then close.
    Flush,
    /// Over `max_pending`: the queue was dropped; send the error and close.
    SlowConsumer,
}

struct Outbound {
    buf: BytesMut,
    in_flight: usize,
    state: OutState,
}

/// What publishers and the connection's own tasks share about one client.
struct Client {
    id: u64,
    max_pending: usize,
    out: Mutex<Outbound>,
    /// The writer: something was queued, or the state changed.
    wake: Notify,
    /// The writer: the write in flight now has only the write deadline (slow consumer, or the
    /// connection is closing).
    kill: Notify,
    /// The writer has finished: the connection is over.
    done: CancellationToken,
    echo: AtomicBool,
    headers: AtomicBool,
    no_responders: AtomicBool,
    subs: Mutex<HashMap<Bytes, Arc<Subscription>>>,
}

impl Client {
    /// Appends `len` (an upper bound) bytes written by `write`; false if the client is closing or
    /// just became a slow consumer.
    fn enqueue(&self, len: usize, write: impl FnOnce(&mut BytesMut)) -> bool {
        let mut out = lock(&self.out);
        if out.state != OutState::Open {
            return false;
        }
        if out.buf.len() + out.in_flight + len > self.max_pending {
            out.state = OutState::SlowConsumer;
            out.buf = BytesMut::new();
            drop(out);
            tracing::warn!(client = self.id, max_pending = self.max_pending, "nats shim: slow consumer, disconnecting");
            self.kill.notify_one();
            self.wake.notify_one();
            return false;
        }
        let was_empty = out.buf.is_empty();
        write(&mut out.buf);
        drop(out);
        if was_empty {
            self.wake.notify_one();
        }
        true
    }

    fn send(&self, bytes: &[u8]) -> bool {
        self.enqueue(bytes.len(), |buf| buf.extend_from_slice(bytes))
    }

    fn send_err(&self, message: &str) -> bool {
        self.send(&err_line(message))
    }

    fn send_msg(
        &self,
        subject: &[u8],
        sid: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> bool {
        let len = msg_len(subject, sid, reply, headers, payload);
        self.enqueue(len, |buf| encode_msg(buf, subject, sid, reply, headers, payload))
    }

    /// Asks the writer to flush what is queued and close: a write already blocked on a client
    /// that does not read gets the write deadline, not forever.
    fn finish(&self) {
        let mut out = lock(&self.out);
        if out.state == OutState::Open {
            out.state = OutState::Flush;
        }
        drop(out);
        self.kill.notify_one();
        self.wake.notify_one();
    }
}

/// Why a connection ended.
enum End {
    /// The client closed (or reset) the connection.
    Closed,
    /// The writer stopped: slow consumer or a failed write.
    Writer,
    Shutdown,
    /// A protocol error, answered with its `-ERR` line.
    Protocol(ProtoError),
    /// Another fatal condition with its `-ERR` text.
    Fatal(&'static str),
}

/// Per-connection state only the reader touches.
struct Session {
    options: ConnectOptions,
    pings_out: u32,
}

impl Server {
    fn new(options: Options, addr: SocketAddr) -> Self {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut rng = rand::thread_rng();
        let server_id: String =
            std::iter::once('N').chain((0..21).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)).collect();
        Server {
            options,
            server_id,
            addr,
            sublist: Mutex::new(Sublist::default()),
            next_client_id: AtomicU64::new(1),
            connections: AtomicUsize::new(0),
        }
    }

    fn info_line(&self, client_id: u64, peer: SocketAddr) -> Vec<u8> {
        let info = serde_json::json!({
            "server_id": self.server_id,
            "server_name": self.options.server_name,
            "version": env!("CARGO_PKG_VERSION"),
            "proto": 1,
            "host": self.addr.ip().to_string(),
            "port": self.addr.port(),
            "headers": true,
            "max_payload": self.options.max_payload,
            "client_id": client_id,
            "client_ip": peer.ip().to_string(),
            "auth_required": false,
            "tls_required": false,
            "jetstream": false,
        });
        format!("INFO {info}\r\n").into_bytes()
    }

    async fn serve(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, stop: CancellationToken) {
        let id = self.next_client_id.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        if self.connections.fetch_add(1, Ordering::AcqRel) >= self.options.max_connections {
            self.connections.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(%peer, max = self.options.max_connections, "nats shim: connection refused, maximum reached");
            refuse(stream, &self.info_line(id, peer), self.options.write_deadline).await;
            return;
        }
        self.connection(stream, id, peer, &stop).await;
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    async fn connection(&self, stream: TcpStream, id: u64, peer: SocketAddr, stop: &CancellationToken) {
        let (read_half, write_half) = stream.into_split();
        let client = Arc::new(Client {
            id,
            max_pending: self.options.max_pending,
            out: Mutex::new(Outbound { buf: BytesMut::new(), in_flight: 0, state: OutState::Open }),
            wake: Notify::new(),
            kill: Notify::new(),
            done: CancellationToken::new(),
            echo: AtomicBool::new(true),
            headers: AtomicBool::new(false),
            no_responders: AtomicBool::new(false),
            subs: Mutex::new(HashMap::new()),
        });
        tracing::debug!(client = id, %peer, "nats shim: client connected");
        client.send(&self.info_line(id, peer));
        let writer = tokio::spawn(write_loop(client.clone(), write_half, self.options.write_deadline));

        let codec = ClientCodec::new(self.options.max_payload, self.options.max_control_line);
        let mut frames = FramedRead::with_capacity(read_half, codec, 16 * 1024);
        let mut session = Session { options: ConnectOptions::default(), pings_out: 0 };
        let interval = self.options.ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + interval, interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);

        let end = loop {
            tokio::select! {
                frame = frames.next() => match frame {
                    None | Some(Err(ProtoError::Io(_))) => break End::Closed,
                    Some(Err(e)) => break End::Protocol(e),
                    Some(Ok(op)) => {
                        if let Err(end) = self.handle(&client, &mut session, op) {
                            break end;
                        }
                    }
                },
                _ = ping.tick() => {
                    if session.pings_out >= self.options.max_pings_out {
                        break End::Fatal("Stale Connection");
                    }
                    session.pings_out += 1;
                    client.send(b"PING\r\n");
                }
                () = client.done.cancelled() => break End::Writer,
                () = stop.cancelled() => break End::Shutdown,
            }
        };

        self.drop_subscriptions(&client);
        let reason = match &end {
            End::Protocol(e) => {
                client.send_err(e.wire().unwrap_or("Parser Error"));
                Some(e.to_string())
            }
            End::Fatal(message) => {
                client.send_err(message);
                Some(message.to_string())
            }
            End::Closed | End::Writer | End::Shutdown => None,
        };
        client.finish();
        match reason {
            Some(reason) => {
                tracing::info!(client = id, %peer, %reason, "nats shim: closing the connection on an error");
                // Keep reading (and discarding) briefly, so the client gets our -ERR, not a reset.
                let mut read_half = frames.into_inner();
                let mut scratch = vec![0u8; 16 * 1024];
                let drain = async { while matches!(read_half.read(&mut scratch).await, Ok(n) if n > 0) {} };
                tokio::select! {
                    _ = timeout(LINGER, drain) => {}
                    () = stop.cancelled() => {}
                }
            }
            None => tracing::debug!(client = id, %peer, "nats shim: connection closed"),
        }
        let _ = writer.await;
    }

    /// Handles one operation; `Err` ends the connection.
    fn handle(&self, client: &Arc<Client>, session: &mut Session, op: ClientOp) -> Result<(), End> {
        match op {
            ClientOp::Connect(options) => {
                if !(0..=1).contains(&options.protocol) {
                    return Err(End::Fatal("Invalid Client Protocol"));
                }
                if options.no_responders && !options.headers {
                    return Err(End::Fatal("No Responders Requires Headers Support"));
                }
                client.echo.store(options.echo, Ordering::Release);
                client.headers.store(options.headers, Ordering::Release);
                client.no_responders.store(options.no_responders, Ordering::Release);
                tracing::debug!(
                    client = client.id,
                    name = options.name.as_deref().unwrap_or(""),
                    lang = options.lang.as_deref().unwrap_or(""),
                    version = options.version.as_deref().unwrap_or(""),
                    "nats shim: CONNECT"
                );
                session.options = options;
                ok(client, session);
            }
            ClientOp::Pub { subject, reply, headers, payload } => {
                if headers.is_some() && !session.options.headers {
                    // nats-server refuses HPUB from a client that did not negotiate headers.
                    return Err(End::Fatal("Message Headers Not Supported"));
                }
                if !valid_publish(&subject) || reply.as_deref().is_some_and(|r| !valid_publish(r)) {
                    client.send_err("Invalid Publish Subject");
                    return Ok(());
                }
                self.publish(client, &subject, reply.as_deref(), headers.as_deref(), &payload);
                ok(client, session);
            }
            ClientOp::Sub { subject, queue, sid } => {
                if !valid_subscription(&subject) || queue.as_deref().is_some_and(|q| !valid_queue(q)) {
                    client.send_err("Invalid Subject");
                    return Ok(());
                }
                let sub = {
                    let mut subs = lock(&client.subs);
                    if subs.contains_key(&sid) {
                        // As nats-server: a second SUB with a sid in use changes nothing.
                        drop(subs);
                        ok(client, session);
                        return Ok(());
                    }
                    if self.options.max_subscriptions != 0 && subs.len() >= self.options.max_subscriptions {
                        drop(subs);
                        client.send_err("Maximum Subscriptions Exceeded");
                        return Ok(());
                    }
                    let sub = Arc::new(Subscription {
                        client: client.clone(),
                        subject,
                        queue,
                        sid: sid.clone(),
                        max: AtomicU64::new(0),
                        delivered: AtomicU64::new(0),
                        removed: AtomicBool::new(false),
                    });
                    subs.insert(sid, sub.clone());
                    sub
                };
                lock(&self.sublist).insert(sub);
                ok(client, session);
            }
            ClientOp::Unsub { sid, max } => {
                let sub = lock(&client.subs).get(&sid).cloned();
                if let Some(sub) = sub {
                    match max {
                        Some(max) if max > sub.delivered.load(Ordering::Acquire) => {
                            sub.max.store(max, Ordering::Release);
                            // A delivery may have passed the new limit meanwhile.
                            if sub.delivered.load(Ordering::Acquire) >= max {
                                self.remove(&sub);
                            }
                        }
                        _ => self.remove(&sub),
                    }
                }
                ok(client, session);
            }
            ClientOp::Ping => {
                client.send(b"PONG\r\n");
            }
            ClientOp::Pong => session.pings_out = 0,
        }
        Ok(())
    }

    /// Routes one message: to every plain subscriber, and to one member of each queue group.
    fn publish(
        &self,
        from: &Arc<Client>,
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) {
        let matches = lock(&self.sublist).matches(subject);
        let echo = from.echo.load(Ordering::Acquire);
        let skip = |sub: &Subscription| !echo && sub.client.id == from.id;
        let mut delivered = false;
        for sub in &matches.plain {
            if !skip(sub) {
                delivered |= self.deliver(sub, subject, reply, headers, payload);
            }
        }
        if !matches.groups.is_empty() {
            let mut rng = rand::thread_rng();
            for group in &matches.groups {
                let start = rng.gen_range(0..group.len());
                for k in 0..group.len() {
                    let sub = &group[(start + k) % group.len()];
                    if !skip(sub) && self.deliver(sub, subject, reply, headers, payload) {
                        delivered = true;
                        break;
                    }
                }
            }
        }
        if !delivered
            && from.no_responders.load(Ordering::Acquire)
            && let Some(reply) = reply
        {
            self.no_responders(from, subject, reply);
        }
    }

    fn deliver(
        &self,
        sub: &Arc<Subscription>,
        subject: &[u8],
        reply: Option<&[u8]>,
        headers: Option<&[u8]>,
        payload: &[u8],
    ) -> bool {
        let Some(last) = sub.claim() else { return false };
        // A client that did not ask for headers gets the payload alone, as from nats-server.
        let headers = headers.filter(|_| sub.client.headers.load(Ordering::Acquire));
        let sent = sub.client.send_msg(subject, &sub.sid, reply, headers, payload);
        if last {
            self.remove(sub);
        }
        sent
    }

    /// The requester's own subscription on `reply` gets a `503` status: nobody is listening.
    fn no_responders(&self, from: &Arc<Client>, subject: &[u8], reply: &[u8]) {
        let matches = lock(&self.sublist).matches(reply);
        let own = matches
            .plain
            .iter()
            .chain(matches.groups.iter().flatten())
            .find(|s| s.client.id == from.id && !s.removed.load(Ordering::Acquire));
        if let Some(sub) = own {
            let mut header = b"NATS/1.0 503\r\nNats-Subject: ".to_vec();
            header.extend_from_slice(subject);
            header.extend_from_slice(b"\r\n\r\n");
            from.send_msg(reply, &sub.sid, None, Some(&header), b"");
        }
    }

    fn remove(&self, sub: &Arc<Subscription>) {
        if sub.removed.swap(true, Ordering::AcqRel) {
            return;
        }
        lock(&self.sublist).remove(sub);
        let mut subs = lock(&sub.client.subs);
        if subs.get(&sub.sid).is_some_and(|s| Arc::ptr_eq(s, sub)) {
            subs.remove(&sub.sid);
        }
    }

    /// Removes every subscription of a closing client (which also breaks the client ↔
    /// subscription reference cycle).
    fn drop_subscriptions(&self, client: &Client) {
        let subs: Vec<Arc<Subscription>> = lock(&client.subs).drain().map(|(_, s)| s).collect();
        let mut sublist = lock(&self.sublist);
        for sub in subs {
            if !sub.removed.swap(true, Ordering::AcqRel) {
                sublist.remove(&sub);
            }
        }
    }
}

/// `+OK` after a well-formed operation, for clients that asked for verbose mode.
fn ok(client: &Client, session: &Session) {
    if session.options.verbose {
        client.send(b"+OK\r\n");
    }
}

/// Over `max_connections`: INFO, the error, close.
async fn refuse(mut stream: TcpStream, info: &[u8], deadline: Duration) {
    let mut bytes = info.to_vec();
    bytes.extend_from_slice(&err_line("Maximum Connections Exceeded"));
    let _ = timeout(deadline, async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    })
    .await;
}

/// Drains the client's outbound queue to the socket until the connection closes.
async fn write_loop(client: Arc<Client>, mut socket: OwnedWriteHalf, deadline: Duration) {
    loop {
        let (chunk, state) = {
            let mut out = lock(&client.out);
            let chunk = (!out.buf.is_empty()).then(|| out.buf.split().freeze());
            out.in_flight = chunk.as_ref().map_or(0, Bytes::len);
            (chunk, out.state)
        };
        let result = match (chunk, state) {
            (_, OutState::SlowConsumer) => {
                let _ = timeout(deadline, socket.write_all(&err_line("Slow Consumer"))).await;
                break;
            }
            (Some(chunk), OutState::Open) => write_open(&mut socket, &chunk, &client.kill, deadline).await,
            (Some(chunk), OutState::Flush) => timeout(deadline, socket.write_all(&chunk))
                .await
                .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into())),
            (None, OutState::Open) => {
                client.wake.notified().await;
                Ok(())
            }
            (None, OutState::Flush) => break,
        };
        lock(&client.out).in_flight = 0;
        if let Err(e) = result {
            tracing::debug!(client = client.id, error = %e, "nats shim: write failed");
            break;
        }
    }
    let _ = timeout(deadline, socket.shutdown()).await;
    client.done.cancel();
}

/// Writes one chunk; if the client becomes a slow consumer or the connection starts closing
/// meanwhile, the chunk gets `deadline` to finish (so the stream stays well framed for what
/// follows), then the write fails.
async fn write_open(socket: &mut OwnedWriteHalf, chunk: &[u8], kill: &Notify, deadline: Duration) -> io::Result<()> {
    let mut write = pin!(socket.write_all(chunk));
    tokio::select! {
        result = &mut write => return result,
        () = kill.notified() => {}
    }
    timeout(deadline, write).await.unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
}
