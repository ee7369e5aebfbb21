//! The command table and dispatch: finding a command by name (case-insensitive), checking its
//! arity as Redis does, refusing writes while the store cannot commit, and running it against
//! the keyspace under the store's lock (or, for connection and server commands, without it).
//!
//! The table also feeds `COMMAND`, `COMMAND INFO`, `COMMAND DOCS` and `COMMAND COUNT`, so what
//! redis-cli and client libraries learn about the server is exactly what it implements. Error
//! texts are Redis's own where clients parse them: `ERR unknown command '…', with args
//! beginning with: …`, `ERR wrong number of arguments for '…' command`, `ERR unknown
//! subcommand '…'. Try … HELP.`, `ERR syntax error`, `ERR value is not an integer or out of
//! range`, `WRONGTYPE …`. An HTTP request line (`POST`, `Host:`) closes the connection without
//! a reply, as Redis does against cross-protocol attacks.
//!
//! The handlers live in [`super::keys`] (the keyspace), [`super::types`] (strings, lists, sets,
//! hashes) and [`super::admin`] (connection and server commands).

use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};

use super::admin;
use super::keys;
use super::keyspace::{Db, Key, Keyspace};
use super::proto::{Reply, parse_i64};
use super::server::{Server, Session};
use super::storage::now_ms;
use super::types;

pub const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub const SYNTAX: &str = "ERR syntax error";
pub const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub const OVERFLOW: &str = "ERR increment or decrement would overflow";

/// What a connection does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Continue,
    /// `SAVE`: wait for a commit of everything so far, then answer.
    Save,
    /// `QUIT`: close once the replies are written.
    Quit,
    /// Close now without a reply.
    Drop,
}

/// What executing one request did.
#[derive(Debug)]
pub struct Executed {
    /// The commit generation its changes belong to, if it is a write that changed anything.
    pub wrote: Option<u64>,
    pub after: After,
    /// Error replies written.
    pub errors: u64,
}

/// What a handler works with.
pub struct Ctx<'a> {
    pub server: &'a Server,
    pub session: &'a mut Session,
    pub out: Reply<'a>,
    /// The command's time (ms since the epoch): one clock reading per command, as Redis.
    pub now: u64,
    pub after: After,
    /// Databases emptied by the command, dropped after the lock is released.
    pub trash: Vec<Db>,
}

impl Ctx<'_> {
    pub fn db(&self) -> usize {
        self.session.db
    }

    /// A key for `arg` (shares the request's bytes; [`Key::owned`] copies for storing).
    pub fn key(&self, arg: &Bytes) -> Key {
        Key::new(arg.clone())
    }
}

pub type DataFn = fn(&mut Ctx<'_>, &mut Keyspace, &[Bytes]);
pub type ConnFn = fn(&mut Ctx<'_>, &[Bytes]);

/// How a command runs.
pub enum Run {
    /// Against the keyspace, under the store's lock.
    Data(DataFn),
    /// Without the keyspace.
    Conn(ConnFn),
    /// A container (`CLIENT`, `CONFIG`, `COMMAND`): the second argument names the subcommand;
    /// the handler runs when there is none (`COMMAND` alone).
    Container(&'static [Command], Option<ConnFn>),
}

/// One command as `COMMAND INFO` and `COMMAND DOCS` describe it, and its handler.
pub struct Command {
    /// The lower-case full name (`get`, `client|setname`).
    pub name: &'static str,
    /// Redis's arity: `n` exactly n arguments (name included), `-n` at least n.
    pub arity: i32,
    pub flags: &'static [&'static str],
    /// First key, last key (-1 = the last argument), step.
    pub keys: (i32, i32, i32),
    pub group: &'static str,
    pub since: &'static str,
    pub complexity: &'static str,
    pub summary: &'static str,
    pub run: Run,
}

impl Command {
    pub fn is_write(&self) -> bool {
        self.flags.contains(&"write")
    }

    /// The ACL categories `COMMAND INFO` lists, in Redis's order.
    pub fn categories(&self) -> Vec<&'static str> {
        let has = |flag: &str| self.flags.contains(&flag);
        let group = |g: &str| self.group == g;
        [
            ("@keyspace", group("generic")),
            ("@read", has("readonly")),
            ("@write", has("write")),
            ("@set", group("set")),
            ("@list", group("list")),
            ("@hash", group("hash")),
            ("@string", group("string")),
            ("@admin", has("admin")),
            ("@fast", has("fast")),
            ("@slow", !has("fast")),
            ("@connection", group("connection")),
        ]
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect()
    }

    /// The subcommands of a container.
    pub fn subcommands(&self) -> &'static [Command] {
        match self.run {
            Run::Container(subs, _) => subs,
            _ => &[],
        }
    }

    fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = i64::from(self.arity);
        if arity >= 0 { argc == arity } else { argc >= -arity }
    }
}

/// What `COMMAND DOCS` says: group, since, complexity, summary.
type Doc = (&'static str, &'static str, &'static str, &'static str);

const fn cmd(
    name: &'static str,
    arity: i32,
    flags: &'static [&'static str],
    keys: (i32, i32, i32),
    doc: Doc,
    run: Run,
) -> Command {
    let (group, since, complexity, summary) = doc;
    Command { name, arity, flags, keys, group, since, complexity, summary, run }
}

const NOKEYS: (i32, i32, i32) = (0, 0, 0);
const KEY: (i32, i32, i32) = (1, 1, 1);
const ALLKEYS: (i32, i32, i32) = (1, -1, 1);
const RO: &[&str] = &["readonly"];
const RO_FAST: &[&str] = &["readonly", "fast"];
const WR: &[&str] = &["write", "denyoom"];
const WR_FAST: &[&str] = &["write", "denyoom", "fast"];
const DEL: &[&str] = &["write", "fast"];
const CONN: &[&str] = &["fast", "loading", "stale"];

use Run::{Conn, Container, Data};

/// Every command, in the order `COMMAND` lists them.
pub static COMMANDS: &[Command] = &[
    // connection
    cmd("ping", -1, CONN, NOKEYS, ("connection", "1.0.0", "O(1)", "Ping the server"), Conn(admin::ping)),
    cmd("echo", 2, CONN, NOKEYS, ("connection", "1.0.0", "O(1)", "Echo the given string"), Conn(admin::echo)),
    cmd(
        "select",
        2,
        CONN,
        NOKEYS,
        ("connection", "1.0.0", "O(1)", "Change the selected database for the current connection"),
        Conn(admin::select),
    ),
    cmd(
        "quit",
        -1,
        &["allow_busy", "noscript", "loading", "stale", "fast", "no_auth"],
        NOKEYS,
        ("connection", "1.0.0", "O(1)", "Close the connection"),
        Conn(admin::quit),
    ),
    cmd(
        "hello",
        -1,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        NOKEYS,
        ("connection", "6.0.0", "O(1)", "Handshake with Redis"),
        Conn(admin::hello),
    ),
    cmd(
        "auth",
        -2,
        &["noscript", "loading", "stale", "fast", "no_auth"],
        NOKEYS,
        (
            "connection",
            "1.0.0",
            "O(N) where N is the number of passwords defined for the user",
            "Authenticate to the server",
        ),
        Conn(admin::auth),
    ),
    cmd(
        "client",
        -2,
        &[],
        NOKEYS,
        ("connection", "2.4.0", "Depends on subcommand.", "A container for client connection commands"),
        Container(admin::CLIENT, None),
    ),
    // server
    cmd(
        "command",
        -1,
        &["loading", "stale"],
        NOKEYS,
        (
            "server",
            "2.8.13",
            "O(N) where N is the total number of Redis commands",
            "Get array of Redis command details",
        ),
        Container(admin::COMMAND, Some(admin::command_all)),
    ),
    cmd(
        "config",
        -2,
        &[],
        NOKEYS,
        ("server", "2.0.0", "Depends on subcommand.", "A container for server configuration commands"),
        Container(admin::CONFIG, None),
    ),
    cmd(
        "info",
        -1,
        &["loading", "stale"],
        NOKEYS,
        ("server", "1.0.0", "O(1)", "Get information and statistics about the server"),
        Data(admin::info),
    ),
    cmd(
        "dbsize",
        1,
        RO_FAST,
        NOKEYS,
        ("server", "1.0.0", "O(1)", "Return the number of keys in the selected database"),
        Data(keys::dbsize),
    ),
    cmd(
        "flushdb",
        -1,
        &["write"],
        NOKEYS,
        (
            "server",
            "1.0.0",
            "O(N) where N is the number of keys in the selected database",
            "Remove all keys from the current database",
        ),
        Data(keys::flushdb),
    ),
    cmd(
        "flushall",
        -1,
        &["write"],
        NOKEYS,
        (
            "server",
            "1.0.0",
            "O(N) where N is the total number of keys in all databases",
            "Remove all keys from all databases",
        ),
        Data(keys::flushall),
    ),
    cmd(
        "time",
        1,
        &["loading", "stale", "fast"],
        NOKEYS,
        ("server", "2.6.0", "O(1)", "Return the current server time"),
        Conn(admin::time),
    ),
    cmd(
        "save",
        1,
        &["admin", "noscript", "no_async_loading", "no_multi"],
        NOKEYS,
        (
            "server",
            "1.0.0",
            "O(N) where N is the total number of keys in all databases",
            "Synchronously save the dataset to disk",
        ),
        Conn(admin::save),
    ),
    cmd(
        "bgsave",
        -1,
        &["admin", "noscript", "no_async_loading"],
        NOKEYS,
        (
            "server",
            "1.0.0",
            "O(N) where N is the total number of keys in all databases",
            "Asynchronously save the dataset to disk",
        ),
        Conn(admin::bgsave),
    ),
    cmd(
        "lastsave",
        1,
        &["loading", "stale", "fast"],
        NOKEYS,
        ("server", "1.0.0", "O(1)", "Get the UNIX time stamp of the last successful save to disk"),
        Conn(admin::lastsave),
    ),
    // generic
    cmd(
        "del",
        -2,
        &["write"],
        ALLKEYS,
        ("generic", "1.0.0", "O(N) where N is the number of keys that will be removed", "Delete a key"),
        Data(keys::del),
    ),
    cmd(
        "unlink",
        -2,
        DEL,
        ALLKEYS,
        (
            "generic",
            "4.0.0",
            "O(1) for each key removed regardless of its size",
            "Delete a key asynchronously in another thread",
        ),
        Data(keys::del),
    ),
    cmd(
        "exists",
        -2,
        RO_FAST,
        ALLKEYS,
        ("generic", "1.0.0", "O(N) where N is the number of keys to check", "Determine if a key exists"),
        Data(keys::exists),
    ),
    cmd("type", 2, RO_FAST, KEY, ("generic", "1.0.0", "O(1)", "Determine the type stored at key"), Data(keys::type_)),
    cmd(
        "expire",
        -3,
        DEL,
        KEY,
        ("generic", "1.0.0", "O(1)", "Set a key's time to live in seconds"),
        Data(keys::expire),
    ),
    cmd(
        "pexpire",
        -3,
        DEL,
        KEY,
        ("generic", "2.6.0", "O(1)", "Set a key's time to live in milliseconds"),
        Data(keys::pexpire),
    ),
    cmd(
        "expireat",
        -3,
        DEL,
        KEY,
        ("generic", "1.2.0", "O(1)", "Set the expiration for a key as a UNIX timestamp"),
        Data(keys::expireat),
    ),
    cmd(
        "pexpireat",
        -3,
        DEL,
        KEY,
        ("generic", "2.6.0", "O(1)", "Set the expiration for a key as a UNIX timestamp specified in milliseconds"),
        Data(keys::pexpireat),
    ),
    cmd(
        "expiretime",
        2,
        RO_FAST,
        KEY,
        ("generic", "7.0.0", "O(1)", "Get the expiration Unix timestamp for a key"),
        Data(keys::expiretime),
    ),
    cmd(
        "pexpiretime",
        2,
        RO_FAST,
        KEY,
        ("generic", "7.0.0", "O(1)", "Get the expiration Unix timestamp for a key in milliseconds"),
        Data(keys::pexpiretime),
    ),
    cmd(
        "ttl",
        2,
        RO_FAST,
        KEY,
        ("generic", "1.0.0", "O(1)", "Get the time to live for a key in seconds"),
        Data(keys::ttl),
    ),
    cmd(
        "pttl",
        2,
        RO_FAST,
        KEY,
        ("generic", "2.6.0", "O(1)", "Get the time to live for a key in milliseconds"),
        Data(keys::pttl),
    ),
    cmd("persist", 2, DEL, KEY, ("generic", "2.2.0", "O(1)", "Remove the expiration from a key"), Data(keys::persist)),
    cmd(
        "keys",
        2,
        RO,
        NOKEYS,
        (
            "generic",
            "1.0.0",
            "O(N) with N being the number of keys in the database",
            "Find all keys matching the given pattern",
        ),
        Data(keys::keys),
    ),
    cmd(
        "scan",
        -2,
        RO,
        NOKEYS,
        (
            "generic",
            "2.8.0",
            "O(1) for every call. O(N) for a complete iteration",
            "Incrementally iterate the keys space",
        ),
        Data(keys::scan),
    ),
    cmd(
        "randomkey",
        1,
        RO,
        NOKEYS,
        ("generic", "1.0.0", "O(1)", "Return a random key from the keyspace"),
        Data(keys::randomkey),
    ),
    cmd("rename", 3, &["write"], (1, 2, 1), ("generic", "1.0.0", "O(1)", "Rename a key"), Data(keys::rename)),
    cmd(
        "renamenx",
        3,
        DEL,
        (1, 2, 1),
        ("generic", "1.0.0", "O(1)", "Rename a key, only if the new key does not exist"),
        Data(keys::renamenx),
    ),
    // string
    cmd("get", 2, RO_FAST, KEY, ("string", "1.0.0", "O(1)", "Get the value of a key"), Data(types::get)),
    cmd("set", -3, WR, KEY, ("string", "1.0.0", "O(1)", "Set the string value of a key"), Data(types::set)),
    cmd("setex", 4, WR, KEY, ("string", "2.0.0", "O(1)", "Set the value and expiration of a key"), Data(types::setex)),
    cmd(
        "psetex",
        4,
        WR,
        KEY,
        ("string", "2.6.0", "O(1)", "Set the value and expiration in milliseconds of a key"),
        Data(types::psetex),
    ),
    cmd(
        "setnx",
        3,
        WR_FAST,
        KEY,
        ("string", "1.0.0", "O(1)", "Set the value of a key, only if the key does not exist"),
        Data(types::setnx),
    ),
    cmd(
        "getset",
        3,
        WR_FAST,
        KEY,
        ("string", "1.0.0", "O(1)", "Set the string value of a key and return its old value"),
        Data(types::getset),
    ),
    cmd(
        "getdel",
        2,
        DEL,
        KEY,
        ("string", "6.2.0", "O(1)", "Get the value of a key and delete the key"),
        Data(types::getdel),
    ),
    cmd(
        "getex",
        -2,
        DEL,
        KEY,
        ("string", "6.2.0", "O(1)", "Get the value of a key and optionally set its expiration"),
        Data(types::getex),
    ),
    cmd(
        "mget",
        -2,
        RO_FAST,
        ALLKEYS,
        ("string", "1.0.0", "O(N) where N is the number of keys to retrieve", "Get the values of all the given keys"),
        Data(types::mget),
    ),
    cmd(
        "mset",
        -3,
        WR,
        (1, -1, 2),
        ("string", "1.0.1", "O(N) where N is the number of keys to set", "Set multiple keys to multiple values"),
        Data(types::mset),
    ),
    cmd(
        "msetnx",
        -3,
        WR,
        (1, -1, 2),
        (
            "string",
            "1.0.1",
            "O(N) where N is the number of keys to set",
            "Set multiple keys to multiple values, only if none of the keys exist",
        ),
        Data(types::msetnx),
    ),
    cmd("append", 3, WR_FAST, KEY, ("string", "2.0.0", "O(1)", "Append a value to a key"), Data(types::append)),
    cmd(
        "strlen",
        2,
        RO_FAST,
        KEY,
        ("string", "2.2.0", "O(1)", "Get the length of the value stored in a key"),
        Data(types::strlen),
    ),
    cmd(
        "incr",
        2,
        WR_FAST,
        KEY,
        ("string", "1.0.0", "O(1)", "Increment the integer value of a key by one"),
        Data(types::incr),
    ),
    cmd(
        "decr",
        2,
        WR_FAST,
        KEY,
        ("string", "1.0.0", "O(1)", "Decrement the integer value of a key by one"),
        Data(types::decr),
    ),
    cmd(
        "incrby",
        3,
        WR_FAST,
        KEY,
        ("string", "1.0.0", "O(1)", "Increment the integer value of a key by the given amount"),
        Data(types::incrby),
    ),
    cmd(
        "decrby",
        3,
        WR_FAST,
        KEY,
        ("string", "1.0.0", "O(1)", "Decrement the integer value of a key by the given number"),
        Data(types::decrby),
    ),
    // list
    cmd(
        "lpush",
        -3,
        WR_FAST,
        KEY,
        ("list", "1.0.0", "O(1) for each element added", "Prepend one or multiple elements to a list"),
        Data(types::lpush),
    ),
    cmd(
        "rpush",
        -3,
        WR_FAST,
        KEY,
        ("list", "1.0.0", "O(1) for each element added", "Append one or multiple elements to a list"),
        Data(types::rpush),
    ),
    cmd(
        "lpop",
        -2,
        DEL,
        KEY,
        (
            "list",
            "1.0.0",
            "O(N) where N is the number of elements returned",
            "Remove and get the first elements in a list",
        ),
        Data(types::lpop),
    ),
    cmd(
        "rpop",
        -2,
        DEL,
        KEY,
        (
            "list",
            "1.0.0",
            "O(N) where N is the number of elements returned",
            "Remove and get the last elements in a list",
        ),
        Data(types::rpop),
    ),
    cmd("llen", 2, RO_FAST, KEY, ("list", "1.0.0", "O(1)", "Get the length of a list"), Data(types::llen)),
    cmd("lrange", 4, RO, KEY, ("list", "1.0.0", "O(S+N)", "Get a range of elements from a list"), Data(types::lrange)),
    // set
    cmd(
        "sadd",
        -3,
        WR_FAST,
        KEY,
        ("set", "1.0.0", "O(1) for each element added", "Add one or more members to a set"),
        Data(types::sadd),
    ),
    cmd(
        "srem",
        -3,
        DEL,
        KEY,
        (
            "set",
            "1.0.0",
            "O(N) where N is the number of members to be removed",
            "Remove one or more members from a set",
        ),
        Data(types::srem),
    ),
    cmd(
        "smembers",
        2,
        RO,
        KEY,
        ("set", "1.0.0", "O(N) where N is the set cardinality", "Get all the members in a set"),
        Data(types::smembers),
    ),
    cmd(
        "sismember",
        3,
        RO_FAST,
        KEY,
        ("set", "1.0.0", "O(1)", "Determine if a given value is a member of a set"),
        Data(types::sismember),
    ),
    cmd("scard", 2, RO_FAST, KEY, ("set", "1.0.0", "O(1)", "Get the number of members in a set"), Data(types::scard)),
    // hash
    cmd(
        "hset",
        -4,
        WR_FAST,
        KEY,
        ("hash", "2.0.0", "O(1) for each field/value pair added", "Set the string value of a hash field"),
        Data(types::hset),
    ),
    cmd("hget", 3, RO_FAST, KEY, ("hash", "2.0.0", "O(1)", "Get the value of a hash field"), Data(types::hget)),
    cmd(
        "hmget",
        -3,
        RO_FAST,
        KEY,
        (
            "hash",
            "2.0.0",
            "O(N) where N is the number of fields being requested",
            "Get the values of all the given hash fields",
        ),
        Data(types::hmget),
    ),
    cmd(
        "hdel",
        -3,
        DEL,
        KEY,
        ("hash", "2.0.0", "O(N) where N is the number of fields to be removed", "Delete one or more hash fields"),
        Data(types::hdel),
    ),
    cmd(
        "hgetall",
        2,
        RO,
        KEY,
        ("hash", "2.0.0", "O(N) where N is the size of the hash", "Get all the fields and values in a hash"),
        Data(types::hgetall),
    ),
    cmd(
        "hkeys",
        2,
        RO,
        KEY,
        ("hash", "2.0.0", "O(N) where N is the size of the hash", "Get all the fields in a hash"),
        Data(types::hkeys),
    ),
    cmd(
        "hvals",
        2,
        RO,
        KEY,
        ("hash", "2.0.0", "O(N) where N is the size of the hash", "Get all the values in a hash"),
        Data(types::hvals),
    ),
    cmd("hlen", 2, RO_FAST, KEY, ("hash", "2.0.0", "O(1)", "Get the number of fields in a hash"), Data(types::hlen)),
    cmd(
        "hexists",
        3,
        RO_FAST,
        KEY,
        ("hash", "2.0.0", "O(1)", "Determine if a hash field exists"),
        Data(types::hexists),
    ),
    cmd(
        "hincrby",
        4,
        WR_FAST,
        KEY,
        ("hash", "2.0.0", "O(1)", "Increment the integer value of a hash field by the given number"),
        Data(types::hincrby),
    ),
];

/// Every command and subcommand, by full name, with its index in [`all`].
static BY_NAME: LazyLock<HashMap<&'static str, (usize, &'static Command)>> =
    LazyLock::new(|| all().iter().enumerate().map(|(i, c)| (c.name, (i, *c))).collect());

static ALL: LazyLock<Vec<&'static Command>> = LazyLock::new(|| {
    let mut out = Vec::new();
    for command in COMMANDS {
        out.push(command);
        out.extend(command.subcommands());
    }
    out
});

/// Every command and subcommand (the index is what `CLIENT LIST` remembers as `cmd`).
pub fn all() -> &'static [&'static Command] {
    &ALL
}

/// The command (or `container|sub` subcommand) called `name`, case-insensitively.
pub fn find(name: &[u8]) -> Option<(usize, &'static Command)> {
    let mut lower = [0u8; 48];
    let lower = lower.get_mut(..name.len())?;
    for (l, b) in lower.iter_mut().zip(name) {
        *l = b.to_ascii_lowercase();
    }
    BY_NAME.get(std::str::from_utf8(lower).ok()?).copied()
}

/// Executes one request, appending its reply to `output`.
pub fn execute(server: &Server, session: &mut Session, args: &[Bytes], output: &mut BytesMut) -> Executed {
    let resp = session.resp;
    let mut ctx = Ctx {
        server,
        session,
        out: Reply::new(output, resp),
        now: now_ms(),
        after: After::Continue,
        trash: Vec::new(),
    };
    let wrote = dispatch(&mut ctx, args);
    let Ctx { out, after, trash, .. } = ctx;
    // Emptied databases are freed here, outside the lock.
    drop(trash);
    Executed { wrote, after, errors: out.errors() }
}

fn dispatch(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Option<u64> {
    let name = &args[0];
    let Some((mut index, mut command)) = find(name) else {
        if name.eq_ignore_ascii_case(b"post") || name.eq_ignore_ascii_case(b"host:") {
            ctx.after = After::Drop;
            return None;
        }
        ctx.out.error(unknown_command(name, &args[1..]));
        return None;
    };
    if !command.arity_ok(args.len()) {
        ctx.out.error(format!("ERR wrong number of arguments for '{}' command", command.name));
        return None;
    }
    if let Run::Container(subs, alone) = command.run {
        let Some(sub) = args.get(1) else {
            if let Some(run) = alone {
                ctx.session.info.last_command.store(index, Ordering::Relaxed);
                run(ctx, args);
            }
            return None;
        };
        match subs
            .iter()
            .position(|c| c.name.split_once('|').is_some_and(|(_, s)| s.as_bytes().eq_ignore_ascii_case(sub)))
        {
            Some(i) => {
                command = &subs[i];
                index += 1 + i;
            }
            None => {
                let mut message = b"ERR unknown subcommand '".to_vec();
                message.extend_from_slice(&sub[..sub.len().min(128)]);
                message.extend_from_slice(b"'. Try ");
                message.extend_from_slice(&name.to_ascii_uppercase());
                message.extend_from_slice(b" HELP.");
                ctx.out.error(message);
                return None;
            }
        }
        if !command.arity_ok(args.len()) {
            ctx.out.error(format!("ERR wrong number of arguments for '{}' command", command.name));
            return None;
        }
    }
    ctx.session.info.last_command.store(index, Ordering::Relaxed);
    match command.run {
        Run::Conn(run) => {
            run(ctx, args);
            None
        }
        Run::Data(run) => {
            let server = ctx.server;
            let mut ks = server.store.lock();
            if command.is_write()
                && let Some(error) = &ks.persist_error
            {
                ctx.out.error(format!(
                    "MISCONF acgs shim redis cannot write to its data dir ({error}); commands that may modify \
                     the data set are refused until a commit succeeds"
                ));
                return None;
            }
            let before = ks.changes();
            run(ctx, &mut ks, args);
            // A read that deleted an expired key changed nothing anyone can see: it never waits.
            (command.is_write() && ks.changes() != before).then(|| ks.generation())
        }
        Run::Container(..) => None,
    }
}

/// Redis's unknown-command error: the name and the first arguments, each quoted, up to about
/// 128 bytes.
fn unknown_command(name: &[u8], args: &[Bytes]) -> Vec<u8> {
    let mut listed = Vec::new();
    for arg in args {
        if listed.len() >= 128 {
            break;
        }
        let room = 128 - listed.len();
        listed.push(b'\'');
        listed.extend_from_slice(&arg[..arg.len().min(room)]);
        listed.extend_from_slice(b"' ");
    }
    let mut message = b"ERR unknown command '".to_vec();
    message.extend_from_slice(&name[..name.len().min(128)]);
    message.extend_from_slice(b"', with args beginning with: ");
    message.extend_from_slice(&listed);
    message
}

/// An integer argument, or Redis's error reply.
pub fn int_arg(ctx: &mut Ctx<'_>, arg: &[u8]) -> Option<i64> {
    let n = parse_i64(arg);
    if n.is_none() {
        ctx.out.error(NOT_INTEGER);
    }
    n
}

/// Whether `arg` is `word`, ignoring ASCII case.
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent() {
        let mut seen = std::collections::HashSet::new();
        for command in all() {
            assert!(seen.insert(command.name), "{} twice", command.name);
            assert_eq!(command.name, command.name.to_ascii_lowercase());
            assert!(command.arity != 0, "{}", command.name);
            let is_sub = command.name.contains('|');
            assert_eq!(is_sub, COMMANDS.iter().all(|c| !std::ptr::eq(c, *command)), "{}", command.name);
        }
        assert!(find(b"GeT").is_some_and(|(_, c)| c.name == "get"));
        assert!(find(b"client|setname").is_some());
        assert!(find(b"nope").is_none());
        assert!(find(&[b'x'; 100]).is_none());
    }

    #[test]
    fn unknown_command_lists_the_first_arguments_like_redis() {
        let args = [Bytes::from_static(b"a"), Bytes::from_static(b"b")];
        assert_eq!(unknown_command(b"foo", &args), b"ERR unknown command 'foo', with args beginning with: 'a' 'b' ");
        assert_eq!(unknown_command(b"foo", &[]), b"ERR unknown command 'foo', with args beginning with: ");
        let long = [Bytes::from(vec![b'x'; 300]), Bytes::from_static(b"next")];
        let message = unknown_command(b"foo", &long);
        assert!(message.ends_with(b"' ") && !message.windows(4).any(|w| w == b"next"));
    }
}
