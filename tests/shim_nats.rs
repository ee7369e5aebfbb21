//! `acgs shim nats` against the official clients, and against bad input.
//!
//! Conformance: async-nats (here) and nats-py (`tests/nats_py_conformance.py`, run against a
//! shim started by the test) each exercise pub/sub, `*` and `>` wildcards, queue groups,
//! request/reply, unsubscribe with a maximum, headers and the no-responders status. Bad input
//! on raw sockets: garbage, an oversized PUB, an overlong control line, half-open connections,
//! a client that never reads, too many connections; after each a normal client still works.
//! Every shim runs in-process on 127.0.0.1 port 0; the last test runs the real binary.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use acgs::shim::nats::{Options, run_with};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Anything that should happen at once gets this long.
const SOON: Duration = Duration::from_secs(10);

struct Shim {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Shim {
    async fn start(options: Options) -> Shim {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(run_with(listener, options, async move {
            let _ = rx.await;
        }));
        Shim { addr, stop: Some(tx), task }
    }

    async fn default() -> Shim {
        Shim::start(Options::default()).await
    }

    fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    async fn client(&self) -> async_nats::Client {
        self.client_with(async_nats::ConnectOptions::new()).await
    }

    async fn client_with(&self, options: async_nats::ConnectOptions) -> async_nats::Client {
        timeout(SOON, options.connection_timeout(SOON).connect(self.url()))
            .await
            .expect("connect in time")
            .expect("async-nats connects to the shim")
    }

    /// A fresh client can still publish to and receive from another fresh client.
    async fn assert_serving(&self) {
        let a = self.client().await;
        let b = self.client().await;
        let mut sub = b.subscribe("still.serving").await.expect("subscribe");
        sync(&b).await;
        a.publish("still.serving", "yes".into()).await.expect("publish");
        a.flush().await.expect("flush");
        let msg = next(&mut sub).await;
        assert_eq!(msg.payload, "yes");
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        timeout(Duration::from_secs(30), self.task).await.expect("the shim stops").expect("no panic").expect("run ok");
    }
}

/// Waits until the server has processed everything `client` sent so far. (async-nats's `flush`
/// only writes the socket; this is a round trip: the server handles one connection's operations
/// in order, so when our own message comes back, an earlier SUB is in place.)
async fn sync(client: &async_nats::Client) {
    let subject = client.new_inbox();
    let mut sub = client.subscribe(subject.clone()).await.expect("subscribe");
    client.publish(subject, Bytes::new()).await.expect("publish");
    next(&mut sub).await;
}

/// [`sync`] for a client with echo off: a request nobody answers comes back as no-responders.
async fn sync_no_echo(client: &async_nats::Client) {
    let subject = format!("sync{}", client.new_inbox());
    let err = timeout(SOON, client.request(subject, Bytes::new())).await.expect("in time").expect_err("nobody answers");
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
}

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    timeout(SOON, sub.next()).await.expect("a message in time").expect("the subscription is open")
}

/// A raw TCP connection speaking the protocol by hand.
struct Raw {
    stream: TcpStream,
    seen: Vec<u8>,
}

impl Raw {
    /// Connects and reads the INFO line.
    async fn connect(shim: &Shim) -> Raw {
        let stream = TcpStream::connect(shim.addr).await.expect("connect");
        let mut raw = Raw { stream, seen: Vec::new() };
        raw.read_until("\r\n").await;
        assert!(raw.seen.starts_with(b"INFO {"), "expected INFO, got {:?}", raw.text());
        raw
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// The last bytes received, for failure messages.
    fn tail(&self) -> String {
        String::from_utf8_lossy(&self.seen[self.seen.len().saturating_sub(300)..]).into_owned()
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads until `needle` has been seen (panics after [`SOON`] or at EOF).
    async fn read_until(&mut self, needle: &str) {
        self.read_until_count(needle, 1).await;
    }

    /// Reads until `needle` has been seen `count` times.
    async fn read_until_count(&mut self, needle: &str, count: usize) {
        let deadline = tokio::time::Instant::now() + SOON;
        let mut buf = [0u8; 4096];
        while self.text().matches(needle).count() < count {
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {needle:?}; got {:?}", self.text()))
                .unwrap_or_else(|e| panic!("read failed waiting for {needle:?} ({e}); got {:?}", self.text()));
            assert!(n > 0, "connection closed before {needle:?}; got {:?}", self.text());
            self.seen.extend_from_slice(&buf[..n]);
        }
    }

    /// Reads to the end of the stream (the server closed it); returns the bytes read meanwhile.
    async fn read_to_close(&mut self, within: Duration) -> usize {
        let mut total = 0;
        let mut buf = vec![0u8; 64 * 1024];
        let result = timeout(within, async {
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        total += n;
                        // Keep only the tail: enough to find a final -ERR line.
                        self.seen.extend_from_slice(&buf[..n]);
                        if self.seen.len() > 64 * 1024 {
                            self.seen.drain(..self.seen.len() - 1024);
                        }
                    }
                }
            }
        })
        .await;
        assert!(result.is_ok(), "the server did not close the connection; last received: {:?}", self.tail());
        total
    }
}

// --- async-nats conformance --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_pub_sub_and_info() {
    let shim = Shim::default().await;
    let client = shim.client().await;
    let info = client.server_info();
    assert!(info.headers, "INFO advertises headers");
    assert_eq!(info.proto, 1);
    assert_eq!(info.max_payload, 1024 * 1024);
    assert!(!info.server_id.is_empty());
    assert!(!info.tls_required && !info.auth_required && !info.jetstream);

    let mut sub = client.subscribe("greet.joe").await.unwrap();
    client.publish("greet.joe", "hello joe".into()).await.unwrap();
    let msg = next(&mut sub).await;
    assert_eq!(msg.subject.as_str(), "greet.joe");
    assert_eq!(msg.payload, "hello joe");
    assert!(msg.reply.is_none() && msg.headers.is_none());

    // Empty and large payloads, and a publish with a reply subject.
    client.publish_with_reply("greet.joe", "reply.here", Bytes::new()).await.unwrap();
    let msg = next(&mut sub).await;
    assert!(msg.payload.is_empty());
    assert_eq!(msg.reply.as_deref(), Some("reply.here"));
    let big: Bytes = (0..1_000_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
    client.publish("greet.joe", big.clone()).await.unwrap();
    assert_eq!(next(&mut sub).await.payload, big);
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_wildcards() {
    let shim = Shim::default().await;
    let client = shim.client().await;
    let mut star = client.subscribe("wc.*").await.unwrap();
    let mut rest = client.subscribe("wc.>").await.unwrap();
    let mut middle = client.subscribe("wc.*.deep").await.unwrap();
    for subject in ["wc.a", "wc.a.b", "wc.a.deep", "other", "wc", "wc.end", "wc.end.deep"] {
        client.publish(subject, subject.into()).await.unwrap();
    }
    async fn until(sub: &mut async_nats::Subscriber, last: &str) -> Vec<String> {
        let mut got = Vec::new();
        while got.last().map(String::as_str) != Some(last) {
            got.push(next(sub).await.subject.to_string());
        }
        got
    }
    assert_eq!(until(&mut star, "wc.end").await, ["wc.a", "wc.end"]);
    assert_eq!(until(&mut rest, "wc.end.deep").await, ["wc.a", "wc.a.b", "wc.a.deep", "wc.end", "wc.end.deep"]);
    assert_eq!(until(&mut middle, "wc.end.deep").await, ["wc.a.deep", "wc.end.deep"]);
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_queue_groups_deliver_each_message_to_one_member() {
    let shim = Shim::default().await;
    let members = [shim.client().await, shim.client().await];
    let publisher = shim.client().await;
    let mut subs = Vec::new();
    for member in &members {
        subs.push(member.queue_subscribe("jobs", "workers".into()).await.unwrap());
        sync(member).await;
    }
    let mut plain = publisher.subscribe("jobs").await.unwrap();
    let n = 200usize;
    for i in 0..n {
        publisher.publish("jobs", i.to_string().into()).await.unwrap();
    }
    publisher.flush().await.unwrap();
    for _ in 0..n {
        next(&mut plain).await; // a plain subscriber gets every message
    }
    let (mut a, mut b) = (subs.remove(0), subs.remove(0));
    let mut got: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    while got[0].len() + got[1].len() < n {
        tokio::select! {
            Some(m) = a.next() => got[0].push(std::str::from_utf8(&m.payload).unwrap().parse().unwrap()),
            Some(m) = b.next() => got[1].push(std::str::from_utf8(&m.payload).unwrap().parse().unwrap()),
            () = tokio::time::sleep(SOON) => panic!("only {} + {} of {n} queued messages arrived", got[0].len(), got[1].len()),
        }
    }
    let mut all: Vec<usize> = got.concat();
    all.sort_unstable();
    assert_eq!(all, (0..n).collect::<Vec<_>>(), "every message to exactly one member");
    assert!(!got[0].is_empty() && !got[1].is_empty(), "both members get some: {} / {}", got[0].len(), got[1].len());
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_request_reply() {
    let shim = Shim::default().await;
    let responder = shim.client().await;
    let requester = shim.client().await;
    let mut service = responder.subscribe("svc.upper").await.unwrap();
    sync(&responder).await;
    let worker = {
        let responder = responder.clone();
        tokio::spawn(async move {
            while let Some(msg) = service.next().await {
                let reply = msg.reply.expect("a request carries its inbox");
                let upper = Bytes::from(msg.payload.to_ascii_uppercase());
                responder.publish(reply, upper).await.unwrap();
            }
        })
    };
    for word in ["ping", "governance", ""] {
        let answer = timeout(SOON, requester.request("svc.upper", word.into())).await.unwrap().unwrap();
        assert_eq!(answer.payload, word.to_ascii_uppercase());
    }
    worker.abort();
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_unsubscribe_after() {
    let shim = Shim::default().await;
    let listener = shim.client().await;
    let publisher = shim.client().await;
    let mut sub = listener.subscribe("limited").await.unwrap();
    sub.unsubscribe_after(3).await.unwrap();
    sync(&listener).await;
    for i in 0..5 {
        publisher.publish("limited", i.to_string().into()).await.unwrap();
    }
    publisher.flush().await.unwrap();
    for i in 0..3 {
        assert_eq!(next(&mut sub).await.payload, i.to_string());
    }
    assert!(timeout(SOON, sub.next()).await.expect("the subscription ends").is_none());
    // The server dropped it too: a request finds nobody.
    let err = timeout(SOON, publisher.request("limited", "anyone?".into())).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_headers_round_trip() {
    let shim = Shim::default().await;
    let client = shim.client().await;
    let mut sub = client.subscribe("hdr").await.unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("X-Trace-Id", "abc-123");
    headers.append("Acgs-Role", "steward");
    headers.append("Acgs-Role", "council");
    client.publish_with_headers("hdr", headers.clone(), "with headers".into()).await.unwrap();
    let msg = next(&mut sub).await;
    assert_eq!(msg.payload, "with headers");
    let got = msg.headers.expect("headers delivered");
    assert_eq!(got.get("X-Trace-Id").map(|v| v.as_str()), Some("abc-123"));
    let roles: Vec<&str> = got.get_all("Acgs-Role").map(|v| v.as_str()).collect();
    assert_eq!(roles, ["steward", "council"]);

    // Headers with an empty body, and headers on a request and its reply.
    let mut only = HeaderMap::new();
    only.insert("Only", "headers");
    client.publish_with_headers("hdr", only, Bytes::new()).await.unwrap();
    let msg = next(&mut sub).await;
    assert!(msg.payload.is_empty());
    assert_eq!(msg.headers.unwrap().get("Only").map(|v| v.as_str()), Some("headers"));

    let mut service = client.subscribe("hdr.svc").await.unwrap();
    let responder = client.clone();
    let worker = tokio::spawn(async move {
        while let Some(msg) = service.next().await {
            let mut headers = msg.headers.unwrap_or_default();
            headers.insert("Replied", "yes");
            responder.publish_with_headers(msg.reply.unwrap(), headers, msg.payload).await.unwrap();
        }
    });
    let mut asked = HeaderMap::new();
    asked.insert("Asked", "1");
    let reply = timeout(SOON, client.request_with_headers("hdr.svc", asked, "q".into())).await.unwrap().unwrap();
    let headers = reply.headers.unwrap();
    assert_eq!(headers.get("Asked").map(|v| v.as_str()), Some("1"));
    assert_eq!(headers.get("Replied").map(|v| v.as_str()), Some("yes"));
    worker.abort();
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_no_responders_and_no_echo() {
    let shim = Shim::default().await;
    let client = shim.client().await;
    let err = timeout(SOON, client.request("nobody.home", "hello?".into())).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders, "{err}");

    let quiet = shim.client_with(async_nats::ConnectOptions::new().no_echo()).await;
    let other = shim.client().await;
    let mut sub = quiet.subscribe("echo").await.unwrap();
    quiet.publish("echo", "mine".into()).await.unwrap();
    sync_no_echo(&quiet).await;
    other.publish("echo", "theirs".into()).await.unwrap();
    assert_eq!(next(&mut sub).await.payload, "theirs", "a no-echo client does not get its own messages");
    // With echo off and only itself listening, a request has no responders either.
    let mut own = quiet.subscribe("self.only").await.unwrap();
    let err = timeout(SOON, quiet.request("self.only", "?".into())).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), async_nats::RequestErrorKind::NoResponders);
    own.unsubscribe().await.unwrap();
    shim.stop().await;
}

// --- nats-py conformance -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_conformance() {
    let shim = Shim::default().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/nats_py_conformance.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .arg(shim.addr.port().to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs (scripts/test.sh installs nats-py)");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (mut out, mut err) = (String::new(), String::new());
    let finished = timeout(Duration::from_secs(300), async {
        let (a, b, status) =
            tokio::join!(stdout.read_to_string(&mut out), stderr.read_to_string(&mut err), child.wait());
        a.and(b).and(status)
    })
    .await;
    let status = match finished {
        Ok(status) => status.expect("waiting for python3"),
        Err(_) => panic!("nats-py conformance did not finish in 300 s:\n{out}\n{err}"),
    };
    assert!(status.success(), "nats-py conformance failed ({status}):\n{out}\n{err}");
    assert!(out.contains("checks passed") && !out.contains("FAIL"), "{out}\n{err}");
    shim.assert_serving().await;
    shim.stop().await;
}

// --- bad input -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_get_an_error_and_the_connection_closes() {
    let shim = Shim::default().await;
    for garbage in [&b"\x00\xff\xfe\x16\x03\x01GARBAGE\r\n"[..], b"HELLO world\r\n", b"\r\n", b"PUB foo 3\r\nabcXY\r\n"]
    {
        let mut raw = Raw::connect(&shim).await;
        raw.send(garbage).await;
        raw.read_to_close(SOON).await;
        assert!(raw.text().contains("-ERR 'Unknown Protocol Operation'\r\n"), "{garbage:?} got {:?}", raw.text());
        shim.assert_serving().await;
    }
    // Malformed arguments after a valid CONNECT: a parser error.
    let mut raw = Raw::connect(&shim).await;
    raw.send(b"CONNECT {\"verbose\":false}\r\nSUB\r\n").await;
    raw.read_to_close(SOON).await;
    assert!(raw.text().contains("-ERR 'Parser Error'\r\n"), "{:?}", raw.text());
    // An invalid subject is refused, and the connection stays usable.
    let mut raw = Raw::connect(&shim).await;
    raw.send(b"CONNECT {\"verbose\":true}\r\nSUB foo..bar 1\r\nPUB foo.* 1\r\nx\r\nPING\r\n").await;
    raw.read_until("PONG\r\n").await;
    assert_eq!(raw.text().matches("-ERR").count(), 2, "{:?}", raw.text());
    assert!(raw.text().contains("-ERR 'Invalid Subject'") && raw.text().contains("-ERR 'Invalid Publish Subject'"));
    shim.assert_serving().await;
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_are_refused_and_closed() {
    let shim = Shim::default().await;
    // A PUB over max_payload (1 MiB), with some of its payload already sent.
    let mut raw = Raw::connect(&shim).await;
    raw.send(b"CONNECT {\"verbose\":false}\r\nPUB big 2000000\r\n").await;
    raw.send(&vec![b'x'; 256 * 1024]).await;
    raw.read_to_close(SOON).await;
    assert!(raw.text().contains("-ERR 'Maximum Payload Violation'\r\n"), "{:?}", raw.text());
    shim.assert_serving().await;
    // HPUB counts header and body together.
    let mut raw = Raw::connect(&shim).await;
    raw.send(b"CONNECT {\"headers\":true}\r\nHPUB big 12 1048577\r\n").await;
    raw.read_to_close(SOON).await;
    assert!(raw.text().contains("-ERR 'Maximum Payload Violation'\r\n"), "{:?}", raw.text());
    // A control line that never ends.
    let mut raw = Raw::connect(&shim).await;
    raw.send(b"SUB ").await;
    raw.send(&vec![b'a'; 64 * 1024]).await;
    raw.read_to_close(SOON).await;
    assert!(raw.text().contains("-ERR 'Maximum Control Line Exceeded'\r\n"), "{:?}", raw.text());
    shim.assert_serving().await;
    // async-nats itself refuses to send over the advertised max_payload.
    let client = shim.client().await;
    assert!(client.publish("big", vec![0u8; 1024 * 1024 + 1].into()).await.is_err());
    client.publish("fits", vec![0u8; 1024 * 1024].into()).await.unwrap();
    client.flush().await.unwrap();
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_do_not_block_others_and_go_stale() {
    let shim = Shim::start(Options { ping_interval: Duration::from_millis(300), ..Options::default() }).await;
    // Half a payload, half a control line, and a connection that says nothing at all.
    let mut half_payload = Raw::connect(&shim).await;
    half_payload.send(b"CONNECT {\"verbose\":false}\r\nPUB foo 100\r\nabc").await;
    let mut half_line = Raw::connect(&shim).await;
    half_line.send(b"SUB fo").await;
    let mut silent = Raw::connect(&shim).await;
    // Others are served meanwhile (async-nats answers the server's pings).
    shim.assert_serving().await;
    let client = shim.client().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    client.publish("x", "y".into()).await.unwrap();
    client.flush().await.unwrap();
    // The half-open ones never answer PING: closed as stale.
    for raw in [&mut half_payload, &mut half_line, &mut silent] {
        raw.read_to_close(SOON).await;
        let text = raw.text();
        assert!(text.contains("PING\r\n") && text.ends_with("-ERR 'Stale Connection'\r\n"), "{text:?}");
    }
    shim.assert_serving().await;
    client.flush().await.unwrap();
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected_with_bounded_memory() {
    let options = Options {
        max_payload: 64 * 1024,
        max_pending: 256 * 1024,
        write_deadline: Duration::from_secs(1),
        ..Options::default()
    };
    let shim = Shim::start(options).await;
    let mut slow = Raw::connect(&shim).await;
    slow.send(b"CONNECT {\"verbose\":false}\r\nSUB flood 1\r\nPING\r\n").await;
    slow.read_until("PONG\r\n").await;
    // From here on `slow` reads nothing while 64 MiB are published to it.
    let publisher = shim.client().await;
    let chunk = Bytes::from(vec![b'z'; 64 * 1024]);
    for _ in 0..1024 {
        publisher.publish("flood", chunk.clone()).await.unwrap();
    }
    timeout(Duration::from_secs(60), publisher.flush()).await.expect("the publisher is not held up").unwrap();
    // Whatever reached the slow client is bounded by max_pending plus the kernel's socket
    // buffers, far below the 64 MiB sent; then the connection ends.
    let read = slow.read_to_close(Duration::from_secs(60)).await;
    assert!(read < 32 * 1024 * 1024, "the slow client was sent {read} bytes");
    shim.assert_serving().await;
    // The publisher was not disconnected.
    publisher.publish("flood", "after".into()).await.unwrap();
    timeout(SOON, publisher.flush()).await.unwrap().unwrap();
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_client_that_never_reads() {
    // 32 MiB queued for a client that reads nothing: under max_pending (64 MiB), so it is not a
    // slow consumer, but far more than the socket takes. Stopping still ends within the deadline.
    let shim = Shim::start(Options { write_deadline: Duration::from_secs(1), ..Options::default() }).await;
    let mut stuck = Raw::connect(&shim).await;
    stuck.send(b"CONNECT {\"verbose\":false}\r\nSUB flood 1\r\nPING\r\n").await;
    stuck.read_until("PONG\r\n").await;
    let publisher = shim.client().await;
    let chunk = Bytes::from(vec![b'z'; 1024 * 1024]);
    for _ in 0..32 {
        publisher.publish("flood", chunk.clone()).await.unwrap();
    }
    sync(&publisher).await; // the server has queued all of it
    shim.stop().await; // panics if the shim does not stop within 30 s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_maximum_are_refused() {
    let shim = Shim::start(Options { max_connections: 2, ..Options::default() }).await;
    let first = Raw::connect(&shim).await;
    let _second = Raw::connect(&shim).await;
    let mut third = Raw::connect(&shim).await;
    third.read_to_close(SOON).await;
    assert!(third.text().contains("-ERR 'Maximum Connections Exceeded'\r\n"), "{:?}", third.text());
    drop(first);
    // The freed slot is taken by the next client (the count drops once the server sees the close).
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let mut raw = Raw::connect(&shim).await;
        raw.send(b"PING\r\n").await;
        let mut buf = [0u8; 256];
        let n = timeout(SOON, raw.stream.read(&mut buf)).await.expect("an answer").unwrap_or(0);
        if String::from_utf8_lossy(&buf[..n]).contains("PONG") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the freed connection slot was never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_mode_acknowledges_and_server_pings_are_answered() {
    let shim = Shim::start(Options { ping_interval: Duration::from_millis(200), ..Options::default() }).await;
    let mut raw = Raw::connect(&shim).await;
    // No CONNECT yet: nats-server's defaults apply (verbose on).
    raw.send(b"SUB a 1\r\n").await;
    raw.read_until("+OK\r\n").await;
    raw.send(b"connect {\"verbose\":false}\r\nsub b 2\r\nunsub 2\r\nping\r\n").await;
    raw.read_until("PONG\r\n").await;
    assert_eq!(raw.text().matches("+OK").count(), 1, "{:?}", raw.text());
    // Answer the server's pings for a while: the connection stays.
    for _ in 0..4 {
        let before = raw.text().matches("PING\r\n").count();
        raw.read_until_count("PING\r\n", before + 1).await;
        raw.send(b"PONG\r\n").await;
    }
    raw.send(b"PUB a 2\r\nhi\r\nPING\r\n").await;
    raw.read_until("MSG a 1 2\r\nhi\r\n").await;
    shim.stop().await;
}

// --- the command line ----------------------------------------------------------------------------

#[test]
fn the_binary_serves_until_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_acgs"))
        .args(["shim", "nats", "--data-dir", "/nonexistent/acgs-nats-shim"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ACGS_SHIM_NATS_PORT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn acgs shim nats");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("the shim announces its address").expect("stderr");
        if let Some(rest) = line.split_once("listening on nats://") {
            break rest.1.trim().parse().expect("an address");
        }
    };
    assert!(addr.ip().is_loopback(), "binds 127.0.0.1 by default: {addr}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = async_nats::connect(format!("nats://{addr}")).await.expect("async-nats connects");
        let mut sub = client.subscribe("cli").await.unwrap();
        client.publish("cli", "up".into()).await.unwrap();
        assert_eq!(next(&mut sub).await.payload, "up");
    });
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill -TERM");
    let status = wait_timeout(&mut child, SOON).expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("nats shim stopped")), "{rest:?}");

    // A bad flag is the caller's mistake: one line, exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_acgs"))
        .args(["shim", "nats", "--port", "0", "--max-payload", "100MiB"])
        .env_clear()
        .output()
        .expect("acgs runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("max payload"), "{stderr}");

    // The shim's environment twins are not configuration keys: a service started in the same
    // environment does not warn about them (an unknown ACGS_ name still does).
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_acgs"))
        .arg("migrate")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ACGS_DATA_DIR", dir.path())
        .env("ACGS_SHIM_NATS_PORT", "4222")
        .env("ACGS_BOGUS", "1")
        .output()
        .expect("acgs migrate runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("ignoring unknown environment variable ACGS_BOGUS"), "{stderr}");
    assert!(!stderr.contains("ACGS_SHIM_NATS_PORT"), "{stderr}");
}

fn wait_timeout(child: &mut std::process::Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}
