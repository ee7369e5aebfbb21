//! `acgs shim redis` against the `redis` crate, redis-cli, redis-benchmark and a real
//! redis-server, against bad input, and across restarts.
//!
//! Conformance: the `redis` crate in RESP2 and RESP3 (including acgs's own `SharedStore`, the
//! revocation list the services keep in Redis); redis-cli (commands, `-n`, `-3`, `--scan`,
//! `--pipe`) and redis-benchmark's default tests; and a list of commands sent to the shim and to
//! a redis-server started by the test, whose replies must be equal, type for type, in both
//! protocols (errors included, byte for byte). Bad input on raw sockets: garbage, oversized
//! frames, half-open connections, a client that never reads, too many clients, an HTTP request;
//! after each a normal client still works. Persistence: keys and their expiry times survive a
//! graceful restart and, with `--fsync always`, a SIGKILL. Every shim runs on 127.0.0.1 port 0
//! with a temporary data directory; redis-server and the tools come from scripts/test.sh.

use std::io::{BufRead, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use acgs::shim::redis::{Fsync, Options, run_with};
use redis::Value;
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

    /// A shim keeping its keys in `dir`.
    async fn on(dir: &Path) -> Shim {
        Shim::start(Options { data_dir: Some(dir.to_path_buf()), ..Options::default() }).await
    }

    /// A shim in memory only.
    async fn memory() -> Shim {
        Shim::start(Options::default()).await
    }

    fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    async fn client(&self) -> redis::aio::MultiplexedConnection {
        self.client_at(&self.url()).await
    }

    async fn client_at(&self, url: &str) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(url).expect("url");
        timeout(SOON, client.get_multiplexed_async_connection())
            .await
            .expect("connect in time")
            .expect("the redis crate connects to the shim")
    }

    /// A fresh client can still write and read.
    async fn assert_serving(&self) {
        let mut con = self.client().await;
        let () = redis::cmd("SET").arg("still:serving").arg("yes").query_async(&mut con).await.expect("SET");
        let v: String = redis::cmd("GET").arg("still:serving").query_async(&mut con).await.expect("GET");
        assert_eq!(v, "yes");
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        timeout(Duration::from_secs(30), self.task).await.expect("the shim stops").expect("no panic").expect("run ok");
    }
}

async fn q<T: redis::FromRedisValue>(con: &mut redis::aio::MultiplexedConnection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match timeout(SOON, cmd.query_async(con)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{args:?}: {e}"),
        Err(_) => panic!("{args:?}: no answer in time"),
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

// --- a raw RESP connection -----------------------------------------------------------------------

/// A reply as sent, with its RESP type.
#[derive(Debug, Clone, PartialEq)]
enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    /// `$-1`
    NullBulk,
    /// `*-1`
    NullArray,
    /// `_` (RESP3)
    Null,
    Array(Vec<Resp>),
    Map(Vec<(Resp, Resp)>),
    Set(Vec<Resp>),
    Verbatim(String),
    Double(String),
    Bool(bool),
}

/// Parses one reply from the front of `buf`: the reply and its length, or `None` if incomplete.
fn parse(buf: &[u8]) -> Option<(Resp, usize)> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[1..end]).expect("a UTF-8 header line");
    let after = end + 2;
    let int = || line.parse::<i64>().expect("a length");
    let items = |n: usize, mut at: usize| -> Option<(Vec<Resp>, usize)> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let (v, used) = parse(&buf[at..])?;
            out.push(v);
            at += used;
        }
        Some((out, at))
    };
    match buf[0] {
        b'+' => Some((Resp::Simple(line.to_string()), after)),
        b'-' => Some((Resp::Error(line.to_string()), after)),
        b':' => Some((Resp::Int(int()), after)),
        b'_' => Some((Resp::Null, after)),
        b',' => Some((Resp::Double(line.to_string()), after)),
        b'#' => Some((Resp::Bool(line == "t"), after)),
        b'$' | b'=' => {
            let n = int();
            if n < 0 {
                return Some((Resp::NullBulk, after));
            }
            let n = n as usize;
            if buf.len() < after + n + 2 {
                return None;
            }
            let data = buf[after..after + n].to_vec();
            let v = if buf[0] == b'$' {
                Resp::Bulk(data)
            } else {
                Resp::Verbatim(String::from_utf8_lossy(&data[4..]).into_owned())
            };
            Some((v, after + n + 2))
        }
        b'*' | b'~' => {
            let n = int();
            if n < 0 {
                return Some((Resp::NullArray, after));
            }
            let (v, at) = items(n as usize, after)?;
            Some((if buf[0] == b'*' { Resp::Array(v) } else { Resp::Set(v) }, at))
        }
        b'%' => {
            let (v, at) = items(2 * int() as usize, after)?;
            let pairs = v.chunks(2).map(|p| (p[0].clone(), p[1].clone())).collect();
            Some((Resp::Map(pairs), at))
        }
        other => panic!("unexpected reply type {:?} in {:?}", other as char, String::from_utf8_lossy(buf)),
    }
}

/// Encodes a request as a multibulk.
fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Raw { stream, buf: Vec::new() }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Sends one command and reads its reply.
    async fn cmd(&mut self, args: &[&str]) -> Resp {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send(&request(&args)).await;
        self.reply().await
    }

    async fn reply(&mut self) -> Resp {
        let deadline = tokio::time::Instant::now() + SOON;
        loop {
            if let Some((v, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return v;
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("no reply in time; have {:?}", self.text()))
                .expect("read");
            assert!(n > 0, "connection closed before a reply; have {:?}", self.text());
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until the server closes the connection; returns how many bytes came meanwhile.
    async fn read_to_close(&mut self, within: Duration) -> usize {
        let mut total = 0;
        let mut chunk = vec![0u8; 64 * 1024];
        let result = timeout(within, async {
            loop {
                match self.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        total += n;
                        self.buf.extend_from_slice(&chunk[..n]);
                        if self.buf.len() > 64 * 1024 {
                            self.buf.drain(..self.buf.len() - 1024);
                        }
                    }
                }
            }
        })
        .await;
        assert!(result.is_ok(), "the server did not close the connection; got {:?}", self.text());
        total
    }
}

// --- the redis crate -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crate_resp2_commands_the_services_use() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::on(dir.path()).await;
    let mut con = shim.client().await;
    let pong: String = q(&mut con, &["PING"]).await;
    assert_eq!(pong, "PONG");
    let exp = (now_secs() + 100).to_string();
    let () = q(&mut con, &["SET", "acgs:revoked:a", "1", "EXAT", &exp]).await;
    let n: i64 = q(&mut con, &["EXISTS", "acgs:revoked:a", "acgs:revoked:b", "acgs:revoked:a"]).await;
    assert_eq!(n, 2);
    let ttl: i64 = q(&mut con, &["TTL", "acgs:revoked:a"]).await;
    assert!((99..=100).contains(&ttl), "{ttl}");
    // Every SET option.
    let () = q(&mut con, &["SET", "k", "v1", "PX", "100000"]).await;
    let old: Option<String> = q(&mut con, &["SET", "k", "v2", "KEEPTTL", "GET"]).await;
    assert_eq!(old.as_deref(), Some("v1"));
    let pttl: i64 = q(&mut con, &["PTTL", "k"]).await;
    assert!(pttl > 90_000 && pttl <= 100_000, "KEEPTTL kept it: {pttl}");
    let refused: Option<String> = q(&mut con, &["SET", "k", "v3", "NX"]).await;
    assert_eq!(refused, None);
    let refused: Option<String> = q(&mut con, &["SET", "missing", "v", "XX"]).await;
    assert_eq!(refused, None);
    let () = q(&mut con, &["SET", "k", "v4", "XX", "EX", "50"]).await;
    let ttl: i64 = q(&mut con, &["TTL", "k"]).await;
    assert_eq!(ttl, 50);
    let pxat = (now_secs() * 1000 + 70_000).to_string();
    let () = q(&mut con, &["SET", "k", "v5", "PXAT", &pxat]).await;
    let ttl: i64 = q(&mut con, &["TTL", "k"]).await;
    assert!((69..=70).contains(&ttl), "{ttl}");
    let () = q(&mut con, &["SET", "gone", "v", "EXAT", "1"]).await;
    let v: Option<String> = q(&mut con, &["GET", "gone"]).await;
    assert_eq!(v, None, "EXAT in the past: set and gone");
    let n: i64 = q(&mut con, &["DEL", "k", "k", "nokey"]).await;
    assert_eq!(n, 1);
    // Counters for rate limits and lock-outs.
    let n: i64 = q(&mut con, &["INCR", "fails:alice"]).await;
    assert_eq!(n, 1);
    let n: i64 = q(&mut con, &["INCRBY", "fails:alice", "41"]).await;
    assert_eq!(n, 42);
    let n: i64 = q(&mut con, &["DECRBY", "fails:alice", "2"]).await;
    assert_eq!(n, 40);
    let () = q(&mut con, &["SET", "text", "abc"]).await;
    let err = redis::cmd("INCR").arg("text").query_async::<i64>(&mut con).await.expect_err("not an integer");
    assert!(err.to_string().contains("value is not an integer or out of range"), "{err}");
    let () = q(&mut con, &["LPUSH", "list", "x"]).await;
    let err = redis::cmd("GET").arg("list").query_async::<String>(&mut con).await.expect_err("wrong type");
    assert!(err.to_string().contains("Operation against a key holding the wrong kind of value"), "{err}");
    // The crate announced itself with CLIENT SETINFO.
    let info: String = q(&mut con, &["CLIENT", "INFO"]).await;
    assert!(info.contains("lib-name=redis-rs"), "{info}");
    // A pipeline.
    let (a, b, c): (String, i64, Option<String>) = redis::pipe()
        .cmd("SET")
        .arg("p")
        .arg("1")
        .ignore()
        .cmd("GET")
        .arg("p")
        .cmd("INCR")
        .arg("p")
        .cmd("GET")
        .arg("nothing")
        .query_async(&mut con)
        .await
        .expect("pipeline");
    assert_eq!((a.as_str(), b, c), ("1", 2, None));
    // Another database.
    let mut db3 = shim.client_at(&format!("redis://{}/3", shim.addr)).await;
    let n: i64 = q(&mut db3, &["DBSIZE"]).await;
    assert_eq!(n, 0);
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crate_resp3_types() {
    let shim = Shim::memory().await;
    let mut con = shim.client_at(&format!("redis://{}/?protocol=resp3", shim.addr)).await;
    let v: Value = q(&mut con, &["HELLO"]).await;
    let Value::Map(fields) = v else { panic!("HELLO is a map in RESP3: {v:?}") };
    assert!(fields.contains(&(Value::BulkString(b"proto".to_vec()), Value::Int(3))), "{fields:?}");
    assert_eq!(q::<Value>(&mut con, &["GET", "missing"]).await, Value::Nil);
    let _: i64 = q(&mut con, &["HSET", "h", "f", "v", "g", "w"]).await;
    let v: Value = q(&mut con, &["HGETALL", "h"]).await;
    let Value::Map(mut pairs) = v else { panic!("HGETALL is a map: {v:?}") };
    pairs.sort_by_key(|(k, _)| format!("{k:?}"));
    assert_eq!(
        pairs,
        [
            (Value::BulkString(b"f".to_vec()), Value::BulkString(b"v".to_vec())),
            (Value::BulkString(b"g".to_vec()), Value::BulkString(b"w".to_vec()))
        ]
    );
    let _: i64 = q(&mut con, &["SADD", "s", "a", "b"]).await;
    assert!(matches!(q::<Value>(&mut con, &["SMEMBERS", "s"]).await, Value::Set(m) if m.len() == 2));
    let v: Value = q(&mut con, &["INFO", "keyspace"]).await;
    let Value::VerbatimString { text, .. } = v else { panic!("INFO is a verbatim string: {v:?}") };
    assert!(text.contains("db0:keys=2,expires=0"), "{text}");
    let v: Value = q(&mut con, &["CONFIG", "GET", "save"]).await;
    assert_eq!(v, Value::Map(vec![(Value::BulkString(b"save".to_vec()), Value::BulkString(Vec::new()))]));
    assert_eq!(q::<Value>(&mut con, &["LPOP", "nolist", "2"]).await, Value::Nil);
    let () = q(&mut con, &["SET", "k", "v"]).await;
    assert_eq!(q::<String>(&mut con, &["GET", "k"]).await, "v");
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_shared_store_works_on_the_shim() {
    use acgs::kernel::auth::SharedRevocations;
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::on(dir.path()).await;
    let store = acgs::kernel::shared::SharedStore::open(&format!("redis://{}/0", shim.addr)).expect("url");
    store.check().await.expect("PING");
    assert!(!store.is_revoked("jti-1").await.unwrap());
    store.revoke("jti-1", now_secs() + 3600).await.unwrap();
    assert!(store.is_revoked("jti-1").await.unwrap());
    store.revoke("jti-old", 1).await.unwrap();
    assert!(!store.is_revoked("jti-old").await.unwrap(), "expired with its token");
    assert!(!store.is_revoked("jti-2").await.unwrap());
    shim.stop().await;
}

// --- redis-cli and redis-benchmark ---------------------------------------------------------------

async fn cli(shim: &Shim, args: &[&str]) -> String {
    let out = tokio::process::Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &shim.addr.port().to_string()])
        .args(args)
        .output()
        .await
        .expect("redis-cli runs (scripts/test.sh installs redis-tools)");
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_works() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::on(dir.path()).await;
    assert_eq!(cli(&shim, &["PING"]).await, "PONG\n");
    assert_eq!(cli(&shim, &["SET", "greeting", "hello world"]).await, "OK\n");
    assert_eq!(cli(&shim, &["GET", "greeting"]).await, "hello world\n");
    assert_eq!(cli(&shim, &["-n", "5", "SET", "five", "5"]).await, "OK\n");
    assert_eq!(cli(&shim, &["-n", "5", "DBSIZE"]).await, "1\n");
    assert_eq!(cli(&shim, &["DBSIZE"]).await, "1\n");
    assert_eq!(cli(&shim, &["NOSUCH", "x"]).await, "ERR unknown command 'NOSUCH', with args beginning with: 'x' \n\n");
    // RESP3 through redis-cli.
    assert_eq!(cli(&shim, &["HSET", "h", "f", "v"]).await, "1\n");
    assert_eq!(cli(&shim, &["-3", "HGETALL", "h"]).await, "f v\n", "a map, printed as redis-cli prints maps");
    assert_eq!(cli(&shim, &["-3", "GET", "missing"]).await, "\n");
    // --scan with a pattern walks SCAN to the end.
    let mut con = shim.client().await;
    for i in 0..300 {
        let () = q(&mut con, &["SET", &format!("user:{i}"), "1"]).await;
    }
    let scanned = cli(&shim, &["--scan", "--pattern", "user:*"]).await;
    let mut keys: Vec<&str> = scanned.lines().collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 300, "{scanned}");
    // --pipe: mass insertion over raw protocol, ended by an ECHO it waits for.
    let mut input = Vec::new();
    for i in 0..5000 {
        input.extend_from_slice(&request(&[b"SET", format!("bulk:{i}").as_bytes(), b"x"]));
    }
    let mut child = tokio::process::Command::new("redis-cli")
        .args(["-p", &shim.addr.port().to_string(), "--pipe"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("redis-cli --pipe");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&input).await.unwrap();
    drop(stdin);
    let out = timeout(Duration::from_secs(120), child.wait_with_output()).await.expect("--pipe finishes").unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("errors: 0, replies: 5000"), "{text}");
    assert_eq!(cli(&shim, &["DBSIZE"]).await, "5302\n");
    let info = cli(&shim, &["INFO", "keyspace"]).await;
    assert!(info.contains("db0:keys=5302,expires=0") && info.contains("db5:keys=1"), "{info}");
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_benchmark_runs_its_default_tests() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::on(dir.path()).await;
    let out = timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("redis-benchmark")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &shim.addr.port().to_string(),
                "-q",
                "-t",
                "set,get,incr,ping,lpush,rpop,sadd,hset",
            ])
            .args(["-n", "2000", "-c", "10", "-P", "4"])
            .output(),
    )
    .await
    .expect("redis-benchmark finishes")
    .expect("redis-benchmark runs (scripts/test.sh installs redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for test in ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "LPUSH", "RPOP", "SADD", "HSET"] {
        assert!(text.contains(&format!("{test}: ")) && !text.contains("ERR"), "{test} in {text}");
    }
    let mut con = shim.client().await;
    let n: i64 = q(&mut con, &["GET", "counter:__rand_int__"]).await;
    assert_eq!(n, 2000, "every INCR counted");
    shim.stop().await;
}

// --- conformance with redis-server ---------------------------------------------------------------

/// A redis-server started for the test, killed when dropped.
struct RedisServer {
    addr: SocketAddr,
    child: std::process::Child,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/test.sh installs it)");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = std::time::Instant::now() + SOON;
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server does not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        RedisServer { addr, child }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How two replies are compared.
#[derive(Clone, Copy, PartialEq)]
enum Cmp {
    Exact,
    /// The same elements in any order (arrays, sets, and maps by pair).
    Unordered,
    /// Only the first `n` elements of each entry of an array of arrays (COMMAND INFO).
    Prefix(usize),
}

fn normalise(reply: &Resp, how: Cmp) -> Resp {
    let key = |r: &Resp| format!("{r:?}");
    match (how, reply) {
        (Cmp::Unordered, Resp::Array(items)) => {
            let mut items = items.clone();
            items.sort_by_key(key);
            Resp::Array(items)
        }
        (Cmp::Unordered, Resp::Set(items)) => {
            let mut items = items.clone();
            items.sort_by_key(key);
            Resp::Set(items)
        }
        (Cmp::Unordered, Resp::Map(pairs)) => {
            let mut pairs = pairs.clone();
            pairs.sort_by_key(|(k, v)| (key(k), key(v)));
            Resp::Map(pairs)
        }
        (Cmp::Prefix(n), Resp::Array(entries)) => Resp::Array(
            entries
                .iter()
                .map(|e| match e {
                    Resp::Array(fields) => Resp::Array(fields.iter().take(n).cloned().collect()),
                    other => other.clone(),
                })
                .collect(),
        ),
        _ => reply.clone(),
    }
}

/// The commands compared (they run in order against an empty server).
fn conformance_script() -> Vec<(Vec<String>, Cmp)> {
    let far = 4_102_444_800u64; // 2100-01-01
    let lines: Vec<(String, Cmp)> = vec![
        ("PING", Cmp::Exact),
        ("PING hello", Cmp::Exact),
        ("PING a b", Cmp::Exact),
        ("ECHO x", Cmp::Exact),
        ("ECHO", Cmp::Exact),
        ("SELECT 16", Cmp::Exact),
        ("SELECT x", Cmp::Exact),
        ("SELECT -1", Cmp::Exact),
        ("SELECT 3", Cmp::Exact),
        ("SET in3 v", Cmp::Exact),
        ("DBSIZE", Cmp::Exact),
        ("SELECT 0", Cmp::Exact),
        ("DBSIZE", Cmp::Exact),
        ("GET in3", Cmp::Exact),
        ("SET k v", Cmp::Exact),
        ("GET k", Cmp::Exact),
        ("GET nokey", Cmp::Exact),
        ("GET", Cmp::Exact),
        ("SET k v2 NX", Cmp::Exact),
        ("SET k v3 XX", Cmp::Exact),
        ("SET nk v XX", Cmp::Exact),
        ("SET nk v NX GET", Cmp::Exact),
        ("SET k v4 GET", Cmp::Exact),
        ("SET k v EX 100", Cmp::Exact),
        ("TTL k", Cmp::Exact),
        ("SET k v PX 100000", Cmp::Exact),
        ("TTL k", Cmp::Exact),
        ("SET k v KEEPTTL", Cmp::Exact),
        ("TTL k", Cmp::Exact),
        ("SET k v", Cmp::Exact),
        ("TTL k", Cmp::Exact),
        ("SET k v EX 0", Cmp::Exact),
        ("SET k v EX -5", Cmp::Exact),
        ("SET k v EX abc", Cmp::Exact),
        ("SET k v EX 10 PX 10", Cmp::Exact),
        ("SET k v NX XX", Cmp::Exact),
        ("SET k v KEEPTTL EX 10", Cmp::Exact),
        ("SET k v EX", Cmp::Exact),
        ("SET k v FOO", Cmp::Exact),
        ("SET k v EX 10 EX 20", Cmp::Exact),
        ("TTL k", Cmp::Exact),
        ("SET k v EX 9223372036854775807", Cmp::Exact),
        ("SET k v PX 9223372036854775807", Cmp::Exact),
        ("SET k v EXAT 1", Cmp::Exact),
        ("GET k", Cmp::Exact),
        ("EXISTS k", Cmp::Exact),
        (&format!("SET k v PXAT {far}000") as &str, Cmp::Exact),
        ("PEXPIRETIME k", Cmp::Exact),
        ("EXPIRETIME k", Cmp::Exact),
        ("SET k v", Cmp::Exact),
        ("EXISTS k k nokey", Cmp::Exact),
        ("DEL k nokey k", Cmp::Exact),
        ("MSET a 1 b 2 c 3", Cmp::Exact),
        ("MSET a", Cmp::Exact),
        ("MSET a 1 b", Cmp::Exact),
        ("MGET a b nokey", Cmp::Exact),
        ("MSETNX a 1 z 2", Cmp::Exact),
        ("MSETNX y 1 z 2", Cmp::Exact),
        ("INCR a", Cmp::Exact),
        ("INCRBY a 10", Cmp::Exact),
        ("INCRBY a x", Cmp::Exact),
        ("DECR a", Cmp::Exact),
        ("DECRBY a 5", Cmp::Exact),
        ("DECRBY a -9223372036854775808", Cmp::Exact),
        ("SET big 9223372036854775807", Cmp::Exact),
        ("INCR big", Cmp::Exact),
        ("SET neg -9223372036854775808", Cmp::Exact),
        ("DECR neg", Cmp::Exact),
        ("SET f 1.5", Cmp::Exact),
        ("INCR f", Cmp::Exact),
        ("SET z 01", Cmp::Exact),
        ("INCR z", Cmp::Exact),
        ("INCR newcounter", Cmp::Exact),
        ("SETEX s 100 v", Cmp::Exact),
        ("TTL s", Cmp::Exact),
        ("SETEX s 0 v", Cmp::Exact),
        ("SETEX s x v", Cmp::Exact),
        ("PSETEX p 100000 v", Cmp::Exact),
        ("TTL p", Cmp::Exact),
        ("PSETEX p -1 v", Cmp::Exact),
        ("SETNX n 1", Cmp::Exact),
        ("SETNX n 2", Cmp::Exact),
        ("GETSET n 5", Cmp::Exact),
        ("GETDEL n", Cmp::Exact),
        ("GETDEL n", Cmp::Exact),
        ("GETEX s PERSIST", Cmp::Exact),
        ("TTL s", Cmp::Exact),
        ("GETEX s EX 50", Cmp::Exact),
        ("TTL s", Cmp::Exact),
        ("GETEX s EX 10 PX 10", Cmp::Exact),
        ("GETEX s PERSIST EX 10", Cmp::Exact),
        ("GETEX nokey EX 10", Cmp::Exact),
        ("APPEND ap abc", Cmp::Exact),
        ("APPEND ap de", Cmp::Exact),
        ("GET ap", Cmp::Exact),
        ("STRLEN ap", Cmp::Exact),
        ("STRLEN nokey", Cmp::Exact),
        ("TYPE a", Cmp::Exact),
        ("TYPE nokey", Cmp::Exact),
        ("RPUSH l a b c", Cmp::Exact),
        ("LPUSH l z", Cmp::Exact),
        ("LRANGE l 0 -1", Cmp::Exact),
        ("LRANGE l -2 -1", Cmp::Exact),
        ("LRANGE l -100 1", Cmp::Exact),
        ("LRANGE l 5 10", Cmp::Exact),
        ("LRANGE l x 1", Cmp::Exact),
        ("LRANGE nokey 0 -1", Cmp::Exact),
        ("LLEN l", Cmp::Exact),
        ("LPOP l", Cmp::Exact),
        ("RPOP l", Cmp::Exact),
        ("LPOP l 5", Cmp::Exact),
        ("LPOP l", Cmp::Exact),
        ("LPOP l 2", Cmp::Exact),
        ("LPOP l -1", Cmp::Exact),
        ("RPUSH l2 a", Cmp::Exact),
        ("LPOP l2 0", Cmp::Exact),
        ("LPOP l2 1 2", Cmp::Exact),
        ("GET l2", Cmp::Exact),
        ("INCR l2", Cmp::Exact),
        ("SET l2 v GET", Cmp::Exact),
        ("TYPE l2", Cmp::Exact),
        ("SADD s1 a b c a", Cmp::Exact),
        ("SREM s1 a x", Cmp::Exact),
        ("SISMEMBER s1 b", Cmp::Exact),
        ("SCARD s1", Cmp::Exact),
        ("SMEMBERS s1", Cmp::Unordered),
        ("SMEMBERS nokey", Cmp::Exact),
        ("SADD l2 x", Cmp::Exact),
        ("TYPE s1", Cmp::Exact),
        ("HSET h f1 v1 f2 v2", Cmp::Exact),
        ("HSET h f1 x", Cmp::Exact),
        ("HSET h f1", Cmp::Exact),
        ("HGET h f1", Cmp::Exact),
        ("HGET h nof", Cmp::Exact),
        ("HMGET h f1 nof f2", Cmp::Exact),
        ("HMGET nokey a", Cmp::Exact),
        ("HLEN h", Cmp::Exact),
        ("HEXISTS h f2", Cmp::Exact),
        ("HINCRBY h n 5", Cmp::Exact),
        ("HINCRBY h f1 1", Cmp::Exact),
        ("HINCRBY h n x", Cmp::Exact),
        ("HGETALL h", Cmp::Unordered),
        ("HKEYS h", Cmp::Unordered),
        ("HVALS h", Cmp::Unordered),
        ("HDEL h f1 nof", Cmp::Exact),
        ("HGETALL nokey", Cmp::Exact),
        ("HGET l2 x", Cmp::Exact),
        ("TYPE h", Cmp::Exact),
        ("EXPIRE a 100", Cmp::Exact),
        ("TTL a", Cmp::Exact),
        ("EXPIRE a 100 NX", Cmp::Exact),
        ("EXPIRE a 200 XX", Cmp::Exact),
        ("EXPIRE a 50 GT", Cmp::Exact),
        ("EXPIRE a 300 GT", Cmp::Exact),
        ("EXPIRE a 400 LT", Cmp::Exact),
        ("EXPIRE a 10 LT", Cmp::Exact),
        ("TTL a", Cmp::Exact),
        ("EXPIRE a 10 NX XX", Cmp::Exact),
        ("EXPIRE a 10 GT LT", Cmp::Exact),
        ("EXPIRE a 10 FOO", Cmp::Exact),
        ("EXPIRE a x", Cmp::Exact),
        ("EXPIRE nokey 10", Cmp::Exact),
        ("EXPIRE a 9223372036854775807", Cmp::Exact),
        ("PERSIST a", Cmp::Exact),
        ("PERSIST a", Cmp::Exact),
        ("TTL a", Cmp::Exact),
        ("PTTL nokey", Cmp::Exact),
        (&format!("EXPIREAT a {far}") as &str, Cmp::Exact),
        ("EXPIRETIME a", Cmp::Exact),
        (&format!("PEXPIREAT a {far}123") as &str, Cmp::Exact),
        ("PEXPIRETIME a", Cmp::Exact),
        ("EXPIRETIME b", Cmp::Exact),
        ("EXPIRE b -1", Cmp::Exact),
        ("EXISTS b", Cmp::Exact),
        ("PEXPIRE c 100000", Cmp::Exact),
        ("TTL c", Cmp::Exact),
        ("RENAME nokey x", Cmp::Exact),
        ("RENAME c c2", Cmp::Exact),
        ("TTL c2", Cmp::Exact),
        ("EXISTS c", Cmp::Exact),
        ("RENAMENX c2 a", Cmp::Exact),
        ("RENAMENX c2 c3", Cmp::Exact),
        ("RENAME c3 c3", Cmp::Exact),
        ("RENAMENX a a", Cmp::Exact),
        ("KEYS *", Cmp::Unordered),
        ("KEYS h*", Cmp::Unordered),
        ("KEYS [ab]", Cmp::Unordered),
        ("KEYS ??", Cmp::Unordered),
        ("KEYS *[^0-9]", Cmp::Unordered),
        ("KEYS a\\*", Cmp::Unordered),
        ("DBSIZE", Cmp::Exact),
        ("SCAN x", Cmp::Exact),
        ("SCAN 0 COUNT 0", Cmp::Exact),
        ("SCAN 0 COUNT x", Cmp::Exact),
        ("SCAN 0 FOO bar", Cmp::Exact),
        ("SCAN 0 MATCH", Cmp::Exact),
        ("FOO", Cmp::Exact),
        ("FOO a b", Cmp::Exact),
        ("CLIENT SETNAME a\u{1}b", Cmp::Exact),
        ("CLIENT SETNAME conf", Cmp::Exact),
        ("CLIENT GETNAME", Cmp::Exact),
        ("CLIENT FOO", Cmp::Exact),
        ("CLIENT", Cmp::Exact),
        ("CLIENT SETNAME", Cmp::Exact),
        ("CONFIG GET save", Cmp::Exact),
        ("CONFIG GET appendonly", Cmp::Exact),
        ("CONFIG GET databases", Cmp::Exact),
        ("CONFIG GET nosuchparameter", Cmp::Exact),
        ("CONFIG FOO", Cmp::Exact),
        ("CONFIG", Cmp::Exact),
        ("HELLO x", Cmp::Exact),
        ("HELLO 4", Cmp::Exact),
        ("HELLO 3 FOO", Cmp::Exact),
        ("HELLO 2 AUTH foo bar", Cmp::Exact),
        ("AUTH x", Cmp::Exact),
        ("AUTH foo bar", Cmp::Exact),
        ("AUTH default x", Cmp::Exact),
        ("COMMAND INFO get set incr exists nosuchcommand", Cmp::Prefix(7)),
        ("FLUSHDB FOO", Cmp::Exact),
        ("FLUSHDB ASYNC", Cmp::Exact),
        ("DBSIZE", Cmp::Exact),
        ("SELECT 3", Cmp::Exact),
        ("DBSIZE", Cmp::Exact),
        ("FLUSHALL", Cmp::Exact),
        ("DBSIZE", Cmp::Exact),
    ]
    .into_iter()
    .map(|(l, c)| (l.to_string(), c))
    .collect();
    lines.into_iter().map(|(l, c)| (l.split(' ').map(String::from).collect(), c)).collect()
}

async fn run_conformance(shim: SocketAddr, real: SocketAddr, resp3: bool) {
    let mut ours = Raw::connect(shim).await;
    let mut theirs = Raw::connect(real).await;
    if resp3 {
        for raw in [&mut ours, &mut theirs] {
            let hello = raw.cmd(&["HELLO", "3"]).await;
            let Resp::Map(fields) = hello else { panic!("HELLO 3: {hello:?}") };
            assert!(fields.contains(&(Resp::Bulk(b"proto".to_vec()), Resp::Int(3))));
        }
    }
    assert_eq!(ours.cmd(&["FLUSHALL"]).await, theirs.cmd(&["FLUSHALL"]).await);
    let mut compared = 0;
    for (args, how) in conformance_script() {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (a, b) = (ours.cmd(&args).await, theirs.cmd(&args).await);
        assert_eq!(
            normalise(&a, how),
            normalise(&b, how),
            "{} (resp{}): shim answered left, redis-server right",
            args.join(" "),
            if resp3 { 3 } else { 2 }
        );
        compared += 1;
    }
    // Inline commands, pipelined, compared byte for byte.
    let inline = b"SET inline \"a b\\x41\"\r\nGET inline\r\n  EXISTS   inline nokey \nECHO 'it\\'s'\r\n\r\nPING\r\n";
    let mut replies = Vec::new();
    for raw in [&mut ours, &mut theirs] {
        raw.send(inline).await;
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(raw.reply().await);
        }
        replies.push(got);
    }
    assert_eq!(replies[0], replies[1], "inline commands");
    assert!(compared > 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_like_redis_server_in_resp2_and_resp3() {
    let real = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::on(dir.path()).await;
    run_conformance(shim.addr, real.addr, false).await;
    run_conformance(shim.addr, real.addr, true).await;

    // A full SCAN returns the same keys, with MATCH and TYPE filters too.
    let (mut ours, mut theirs) = (Raw::connect(shim.addr).await, Raw::connect(real.addr).await);
    for raw in [&mut ours, &mut theirs] {
        for i in 0..200 {
            raw.cmd(&["SET", &format!("str:{i}"), "v"]).await;
            raw.cmd(&["RPUSH", &format!("list:{i}"), "v"]).await;
        }
    }
    for filters in [&[][..], &["MATCH", "str:1*"][..], &["TYPE", "list"][..], &["MATCH", "*:5?", "TYPE", "string"][..]]
    {
        let mut results = Vec::new();
        for raw in [&mut ours, &mut theirs] {
            let mut keys = Vec::new();
            let mut cursor = "0".to_string();
            loop {
                let mut args = vec!["SCAN", cursor.as_str(), "COUNT", "13"];
                args.extend_from_slice(filters);
                let Resp::Array(reply) = raw.cmd(&args).await else { panic!("SCAN") };
                let (Resp::Bulk(next), Resp::Array(batch)) = (&reply[0], &reply[1]) else { panic!("{reply:?}") };
                keys.extend(batch.iter().map(|k| format!("{k:?}")));
                cursor = String::from_utf8_lossy(next).into_owned();
                if cursor == "0" {
                    break;
                }
            }
            keys.sort();
            results.push(keys);
        }
        assert_eq!(results[0], results[1], "SCAN {filters:?}");
        assert!(!results[0].is_empty());
    }
    shim.stop().await;
}

// --- SCAN, expiry ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_returns_each_key_present_throughout_exactly_once() {
    let shim = Shim::memory().await;
    let mut raw = Raw::connect(shim.addr).await;
    for i in 0..1000 {
        raw.cmd(&["SET", &format!("stay:{i}"), "v"]).await;
    }
    let mut seen = std::collections::HashMap::<String, usize>::new();
    let mut cursor = "0".to_string();
    let mut round = 0;
    loop {
        let Resp::Array(reply) = raw.cmd(&["SCAN", &cursor, "COUNT", "7"]).await else { panic!() };
        let (Resp::Bulk(next), Resp::Array(batch)) = (&reply[0], &reply[1]) else { panic!("{reply:?}") };
        for key in batch {
            let Resp::Bulk(key) = key else { panic!() };
            *seen.entry(String::from_utf8_lossy(key).into_owned()).or_default() += 1;
        }
        cursor = String::from_utf8_lossy(next).into_owned();
        if cursor == "0" {
            break;
        }
        // Meanwhile the database changes: keys come and go.
        round += 1;
        raw.cmd(&["SET", &format!("churn:{round}"), "v"]).await;
        raw.cmd(&["DEL", &format!("churn:{}", round / 2)]).await;
    }
    for i in 0..1000 {
        assert_eq!(seen.get(&format!("stay:{i}")), Some(&1), "stay:{i}");
    }
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_keys_are_swept_without_being_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::on(dir.path()).await;
    let mut con = shim.client().await;
    let mut pipe = redis::pipe();
    for i in 0..100 {
        pipe.cmd("SET").arg(format!("short:{i}")).arg("v").arg("PX").arg(1000).ignore();
    }
    pipe.cmd("SET").arg("long").arg("v").arg("EX").arg(100).ignore();
    let () = pipe.query_async(&mut con).await.expect("pipeline");
    let info: String = q(&mut con, &["INFO", "keyspace"]).await;
    assert!(info.contains("db0:keys=101,expires=101"), "{info}");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let n: i64 = q(&mut con, &["DBSIZE"]).await;
    assert_eq!(n, 1, "the sweep deleted the expired keys");
    let info: String = q(&mut con, &["INFO", "stats"]).await;
    assert!(info.contains("expired_keys:100"), "{info}");
    let info: String = q(&mut con, &["INFO"]).await;
    for section in
        ["# Server", "# Clients", "# Memory", "# Persistence", "# Stats", "# Replication", "# CPU", "# Keyspace"]
    {
        assert!(info.contains(section), "{section} in {info}");
    }
    assert!(info.contains("connected_clients:1") && info.contains("acgs_fsync:always"), "{info}");
    shim.stop().await;
}

// --- bad input -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_a_protocol_error_and_the_connection_closes() {
    let shim = Shim::memory().await;
    let cases: &[(&[u8], &str)] = &[
        (b"*x\r\n", "-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\nxyz\r\n", "-ERR Protocol error: expected '$', got 'x'\r\n"),
        (b"*2\r\n$-1\r\n", "-ERR Protocol error: invalid bulk length\r\n"),
        (
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            "-ERR Protocol error: unexpected control character in inline request\r\n",
        ),
        (b"\x00\xff\xfe garbage\r\n", "-ERR Protocol error: unexpected control character in inline request\r\n"),
        (b"SET \"unbalanced\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"),
    ];
    for (garbage, expected) in cases {
        let mut raw = Raw::connect(shim.addr).await;
        // What came before the garbage is answered first.
        raw.send(b"PING\r\n").await;
        raw.send(garbage).await;
        raw.read_to_close(SOON).await;
        assert_eq!(raw.text(), format!("+PONG\r\n{expected}"), "{garbage:?}");
        shim.assert_serving().await;
    }
    // Text that is not a command is an unknown command, as in Redis: the connection stays.
    let mut raw = Raw::connect(shim.addr).await;
    raw.send(b"GARBAGE here\r\n").await;
    assert_eq!(
        raw.reply().await,
        Resp::Error("ERR unknown command 'GARBAGE', with args beginning with: 'here' ".into())
    );
    assert_eq!(raw.cmd(&["PING"]).await, Resp::Simple("PONG".into()));
    // An HTTP request: closed without a word.
    let mut raw = Raw::connect(shim.addr).await;
    raw.send(b"POST / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    raw.read_to_close(SOON).await;
    assert_eq!(raw.text(), "");
    shim.assert_serving().await;
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_are_refused_before_they_are_read() {
    let options = Options {
        max_bulk_len: 1024 * 1024,
        max_multibulk_len: 1000,
        max_inline_len: 4096,
        max_query_buffer: 4 * 1024 * 1024,
        ..Options::default()
    };
    let shim = Shim::start(options).await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // A bulk over the limit, announced and partly sent.
        ([&b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2000000\r\n"[..], &[b'x'; 100_000][..]].concat(), "invalid bulk length"),
        // Huge multibulk counts: over the limit, and over anything.
        (b"*1001\r\n".to_vec(), "invalid multibulk length"),
        (b"*9223372036854775807\r\n".to_vec(), "invalid multibulk length"),
        (b"*99999999999999999999999\r\n".to_vec(), "invalid multibulk length"),
        (b"*1\r\n$99999999999999999999999\r\n".to_vec(), "invalid bulk length"),
        // Lines that never end.
        (vec![b'a'; 10_000], "too big inline request"),
        ([&b"*"[..], &[b'1'; 10_000][..]].concat(), "too big mbulk count string"),
        ([&b"*1\r\n$"[..], &[b'1'; 10_000][..]].concat(), "too big bulk count string"),
    ];
    for (input, expected) in cases {
        let mut raw = Raw::connect(shim.addr).await;
        raw.send(&input).await;
        raw.read_to_close(SOON).await;
        assert_eq!(raw.text(), format!("-ERR Protocol error: {expected}\r\n"), "{:?}", &input[..input.len().min(40)]);
        shim.assert_serving().await;
    }
    // Bulks each within the limit that add up to more than the query buffer.
    let mut raw = Raw::connect(shim.addr).await;
    let mut big = b"*6\r\n$4\r\nMSET\r\n".to_vec();
    for _ in 0..5 {
        big.extend_from_slice(b"$1000000\r\n");
        big.extend_from_slice(&vec![b'v'; 1_000_000]);
        big.extend_from_slice(b"\r\n");
    }
    let _ = raw.stream.write_all(&big).await;
    raw.read_to_close(SOON).await;
    assert!(raw.text().ends_with("-ERR Protocol error: request exceeds the query buffer limit\r\n"), "{}", raw.text());
    // At the limit is fine.
    let mut con = shim.client().await;
    let value = "v".repeat(1024 * 1024);
    let () = q(&mut con, &["SET", "big", &value]).await;
    let got: String = q(&mut con, &["GET", "big"]).await;
    assert_eq!(got.len(), value.len());
    let err = redis::cmd("APPEND").arg("big").arg("x").query_async::<i64>(&mut con).await.expect_err("too long");
    assert!(err.to_string().contains("string exceeds maximum allowed size"), "{err}");
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_time_out_and_others_are_served() {
    let options = Options {
        request_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(1500),
        ..Options::default()
    };
    let shim = Shim::start(options).await;
    // Half a bulk, half a count line, half an inline command: each has started a request.
    let mut half_bulk = Raw::connect(shim.addr).await;
    half_bulk.send(b"*2\r\n$3\r\nGET\r\n$10\r\nab").await;
    let mut half_line = Raw::connect(shim.addr).await;
    half_line.send(b"*2\r\n$3\r\nGE").await;
    let mut half_inline = Raw::connect(shim.addr).await;
    half_inline.send(b"PI").await;
    // One that says nothing at all: only the idle time-out ends it.
    let mut silent = Raw::connect(shim.addr).await;
    let started = tokio::time::Instant::now();
    shim.assert_serving().await;
    for raw in [&mut half_bulk, &mut half_line, &mut half_inline] {
        raw.read_to_close(SOON).await;
        assert_eq!(raw.text(), "-ERR Protocol error: timed out reading the request\r\n");
    }
    silent.read_to_close(SOON).await;
    assert_eq!(silent.text(), "", "idle clients are closed without a word, as by Redis");
    assert!(started.elapsed() >= Duration::from_millis(1400), "{:?}", started.elapsed());
    // A slow but steady client is fine as long as each request completes in time.
    let mut slow = Raw::connect(shim.addr).await;
    for _ in 0..3 {
        slow.send(b"*1\r\n$4\r\nPI").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        slow.send(b"NG\r\n").await;
        assert_eq!(slow.reply().await, Resp::Simple("PONG".into()));
    }
    shim.assert_serving().await;
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected_with_bounded_memory() {
    let shim = Shim::start(Options { write_timeout: Duration::from_secs(1), ..Options::default() }).await;
    let mut con = shim.client().await;
    let value = "z".repeat(1024 * 1024);
    let () = q(&mut con, &["SET", "big", &value]).await;
    // 512 pipelined GETs of 1 MiB, and not one reply read.
    let mut stuck = Raw::connect(shim.addr).await;
    let request = request(&[b"GET", b"big"]);
    let flood: Vec<u8> = request.iter().copied().cycle().take(request.len() * 512).collect();
    stuck.send(&flood).await;
    // Others are served meanwhile.
    for _ in 0..5 {
        shim.assert_serving().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // The shim gave up on it: what it could still read is bounded by what the socket buffers held,
    // far below the 512 MiB asked for.
    let read = stuck.read_to_close(Duration::from_secs(60)).await;
    assert!(read < 64 * 1024 * 1024, "the stuck client was sent {read} bytes");
    shim.assert_serving().await;
    shim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_over_the_maximum_are_refused() {
    let shim = Shim::start(Options { max_clients: 2, ..Options::default() }).await;
    let mut first = Raw::connect(shim.addr).await;
    assert_eq!(first.cmd(&["PING"]).await, Resp::Simple("PONG".into()));
    let mut second = Raw::connect(shim.addr).await;
    assert_eq!(second.cmd(&["PING"]).await, Resp::Simple("PONG".into()));
    let mut third = Raw::connect(shim.addr).await;
    third.read_to_close(SOON).await;
    assert_eq!(third.text(), "-ERR max number of clients reached\r\n");
    let Resp::Bulk(info) = second.cmd(&["INFO", "stats"]).await else { panic!("INFO") };
    let info = String::from_utf8_lossy(&info);
    assert!(info.contains("rejected_connections:1"), "{info}");
    drop(first);
    // The freed slot is taken by the next client (once the server has seen the close).
    let deadline = tokio::time::Instant::now() + SOON;
    loop {
        let mut raw = Raw::connect(shim.addr).await;
        raw.send(b"PING\r\n").await;
        let mut buf = [0u8; 64];
        let n = timeout(SOON, raw.stream.read(&mut buf)).await.expect("an answer").unwrap_or(0);
        if buf[..n].starts_with(b"+PONG") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shim.stop().await;
}

// --- persistence ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_expiry_times_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let shim = Shim::on(dir.path()).await;
    let mut con = shim.client().await;
    let () = q(&mut con, &["SET", "plain", "v"]).await;
    let () = q(&mut con, &["SET", "long", "v", "EX", "1000"]).await;
    let () = q(&mut con, &["SET", "short", "v", "PX", "1500"]).await;
    let () = q(&mut con, &["SET", "counter", "0"]).await;
    let _: i64 = q(&mut con, &["INCRBY", "counter", "41"]).await;
    let _: i64 = q(&mut con, &["RPUSH", "list", "a", "b", "c"]).await;
    let _: i64 = q(&mut con, &["SADD", "set", "x", "y"]).await;
    let _: i64 = q(&mut con, &["HSET", "hash", "f", "v"]).await;
    let () = q(&mut con, &["SET", "deleted", "v"]).await;
    let _: i64 = q(&mut con, &["DEL", "deleted"]).await;
    let mut db7 = shim.client_at(&format!("redis://{}/7", shim.addr)).await;
    let () = q(&mut db7, &["SET", "in7", "v"]).await;
    let () = q(&mut db7, &["SET", "flushed", "v"]).await;
    let mut db8 = shim.client_at(&format!("redis://{}/8", shim.addr)).await;
    let () = q(&mut db8, &["SET", "gone", "v"]).await;
    let () = q(&mut db8, &["FLUSHDB"]).await;
    let () = q(&mut db8, &["SET", "after-flush", "v"]).await;
    drop((con, db7, db8));
    shim.stop().await;

    let shim = Shim::on(dir.path()).await;
    let mut con = shim.client().await;
    assert_eq!(q::<String>(&mut con, &["GET", "plain"]).await, "v");
    assert_eq!(q::<i64>(&mut con, &["GET", "counter"]).await, 41);
    assert_eq!(q::<Vec<String>>(&mut con, &["LRANGE", "list", "0", "-1"]).await, ["a", "b", "c"]);
    assert_eq!(q::<i64>(&mut con, &["SCARD", "set"]).await, 2);
    assert_eq!(q::<String>(&mut con, &["HGET", "hash", "f"]).await, "v");
    assert_eq!(q::<i64>(&mut con, &["EXISTS", "deleted"]).await, 0);
    let ttl: i64 = q(&mut con, &["TTL", "long"]).await;
    assert!((990..=1000).contains(&ttl), "the expiry time came back: {ttl}");
    let pttl: i64 = q(&mut con, &["PTTL", "short"]).await;
    assert!(pttl > 0 && pttl <= 1500, "{pttl}");
    let mut db7 = shim.client_at(&format!("redis://{}/7", shim.addr)).await;
    assert_eq!(q::<i64>(&mut db7, &["DBSIZE"]).await, 2);
    let mut db8 = shim.client_at(&format!("redis://{}/8", shim.addr)).await;
    assert_eq!(q::<Vec<String>>(&mut db8, &["KEYS", "*"]).await, ["after-flush"]);
    // The short one expires on time after the restart, and stays expired after another.
    tokio::time::sleep(Duration::from_millis(pttl as u64 + 200)).await;
    assert_eq!(q::<Option<String>>(&mut con, &["GET", "short"]).await, None);
    drop((con, db7, db8));
    shim.stop().await;
    let shim = Shim::on(dir.path()).await;
    let mut con = shim.client().await;
    assert_eq!(q::<i64>(&mut con, &["EXISTS", "short", "long", "plain"]).await, 2);
    let info: String = q(&mut con, &["INFO", "keyspace"]).await;
    assert!(info.contains("db0:keys=6,expires=1") && info.contains("db7:keys=2,expires=0"), "{info}");
    shim.stop().await;
}

/// Starts `acgs shim redis` with `args` on a free port; returns it and its address.
fn spawn_binary(args: &[&str]) -> (std::process::Child, SocketAddr, std::process::ChildStderr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_acgs"))
        .args(["shim", "redis"])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ACGS_SHIM_REDIS_PORT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn acgs shim redis");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr piped"));
    let addr: SocketAddr = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).expect("stderr") > 0, "the shim exited before listening");
        if let Some(rest) = line.split_once("listening on redis://") {
            break rest.1.trim().parse().expect("an address");
        }
    };
    (child, addr, stderr.into_inner())
}

/// One command over a blocking socket (for the tests that run the binary).
fn blocking(addr: SocketAddr, args: &[&str]) -> Resp {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(SOON)).expect("read time-out");
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    stream.write_all(&request(&args)).expect("write");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((v, _)) = parse(&buf) {
            return v;
        }
        let n = std::io::Read::read(&mut stream, &mut chunk).expect("read");
        assert!(n > 0, "closed before a reply");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (mut child, addr, _stderr) = spawn_binary(&["--data-dir", data]);
    for i in 0..50 {
        assert_eq!(blocking(addr, &["SET", &format!("acked:{i}"), "v", "EX", "3600"]), Resp::Simple("OK".into()));
    }
    assert_eq!(blocking(addr, &["INCRBY", "n", "7"]), Resp::Int(7));
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    // everysec: what SAVE acknowledged is on disk too.
    let (mut child, addr, _stderr) = spawn_binary(&["--data-dir", data, "--fsync", "everysec"]);
    assert_eq!(blocking(addr, &["DBSIZE"]), Resp::Int(51), "every acknowledged write came back");
    let Resp::Int(ttl) = blocking(addr, &["TTL", "acked:0"]) else { panic!() };
    assert!((3590..=3600).contains(&ttl), "{ttl}");
    assert_eq!(blocking(addr, &["SET", "saved", "v"]), Resp::Simple("OK".into()));
    assert_eq!(blocking(addr, &["SAVE"]), Resp::Simple("OK".into()));
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
    let (mut child, addr, _stderr) = spawn_binary(&["--data-dir", data]);
    assert_eq!(blocking(addr, &["GET", "saved"]), Resp::Bulk(b"v".to_vec()));
    assert_eq!(blocking(addr, &["GET", "n"]), Resp::Bulk(b"7".to_vec()));
    child.kill().expect("SIGKILL");
    child.wait().unwrap();
}

// --- the command line ----------------------------------------------------------------------------

#[test]
fn the_binary_serves_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested/redis");
    let (mut child, addr, stderr) = spawn_binary(&["--data-dir", data.to_str().unwrap()]);
    assert!(addr.ip().is_loopback(), "binds 127.0.0.1 by default: {addr}");
    assert_eq!(blocking(addr, &["SET", "cli", "up"]), Resp::Simple("OK".into()));
    assert_eq!(blocking(addr, &["GET", "cli"]), Resp::Bulk(b"up".to_vec()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("redis.redb")), 0o600);
    }
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill -TERM");
    let status = wait_timeout(&mut child, SOON).expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
    let rest: Vec<String> = BufReader::new(stderr).lines().map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("redis shim stopped")), "{rest:?}");

    // In memory only, when asked.
    let (mut child, addr, _stderr) = spawn_binary(&["--in-memory"]);
    assert_eq!(blocking(addr, &["PING"]), Resp::Simple("PONG".into()));
    assert!(matches!(blocking(addr, &["SAVE"]), Resp::Error(e) if e.contains("--in-memory")));
    child.kill().unwrap();
    child.wait().unwrap();

    // The caller's mistakes: one line, exit 2.
    for (args, expected) in [
        (&["--port", "0"][..], "--data-dir"),
        (&["--port", "0", "--in-memory", "--max-bulk-len", "10"][..], "max bulk length"),
        (&["--port", "0", "--in-memory", "--fsync", "sometimes"][..], "sometimes"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_acgs"))
            .args(["shim", "redis"])
            .args(args)
            .env_clear()
            .output()
            .expect("acgs runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        if expected != "sometimes" {
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
        }
    }

    // A data dir in use by another shim: a clear failure, not a second writer.
    let (mut first, _, _stderr) = spawn_binary(&["--data-dir", dir.path().to_str().unwrap()]);
    let out = Command::new(env!("CARGO_BIN_EXE_acgs"))
        .args(["shim", "redis", "--port", "0", "--data-dir", dir.path().to_str().unwrap()])
        .env_clear()
        .output()
        .expect("acgs runs");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another process"), "{out:?}");
    first.kill().unwrap();
    first.wait().unwrap();
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

#[test]
fn fsync_options_are_named_like_redis() {
    assert_eq!(Fsync::Always.name(), "always");
    assert_eq!(Fsync::EverySec.name(), "everysec");
}
