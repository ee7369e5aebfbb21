//! Connection and server commands: `PING`, `ECHO`, `SELECT`, `QUIT`, `HELLO`, `AUTH`, `CLIENT`
//! (`ID`, `GETNAME`, `SETNAME`, `SETINFO`, `INFO`, `LIST`, `HELP`), `COMMAND` (all, `COUNT`,
//! `LIST`, `INFO`, `DOCS`, `HELP`), `CONFIG` (`GET`, `HELP`), `INFO`, `TIME`, `SAVE`, `BGSAVE`,
//! `LASTSAVE`.
//!
//! There is no authentication, as with a Redis whose default user has no password: `HELLO 2|3`
//! switches the protocol (`HELLO 3 AUTH default <anything>` is accepted, any other user is
//! `WRONGPASS`); `AUTH <password>` is Redis's "called without any password configured" error.
//! `HELLO` reports `server: redis` and `version: 7.0.0`, the Redis whose commands this shim
//! follows; `INFO server` adds `acgs_version` and the storage mode.
//!
//! `INFO` has the sections `server`, `clients`, `memory`, `persistence`, `stats`, `replication`,
//! `cpu` and `keyspace`, with real numbers: memory is the process's resident size (Linux
//! `/proc/self/status`; the dataset is not measured separately), CPU from `/proc/self/stat`,
//! persistence from the store's commits (`rdb_changes_since_last_save` is the keys waiting for
//! the next commit, `rdb_last_save_time` the last commit). `CONFIG GET` answers for the settings
//! clients ask about (redis-benchmark asks `save` and `appendonly`); `CONFIG SET` is not
//! supported (the flags are the configuration).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::commands::{self, After, COMMANDS, Command, Ctx, SYNTAX, int_arg, is};
use super::glob;
use super::keyspace::{DATABASES, Keyspace};
use super::proto::parse_i64;
use super::storage::now_ms;

/// The Redis version whose commands and replies this shim follows.
pub const REDIS_VERSION: &str = "7.0.0";

const CONN: &[&str] = &["noscript", "loading", "stale"];
use commands::Run::Conn;

pub static CLIENT: &[Command] = &[
    Command {
        name: "client|id",
        arity: 2,
        flags: CONN,
        keys: (0, 0, 0),
        group: "connection",
        since: "5.0.0",
        complexity: "O(1)",
        summary: "Returns the client ID for the current connection",
        run: Conn(client_id),
    },
    Command {
        name: "client|getname",
        arity: 2,
        flags: CONN,
        keys: (0, 0, 0),
        group: "connection",
        since: "2.6.9",
        complexity: "O(1)",
        summary: "Get the current connection name",
        run: Conn(client_getname),
    },
    Command {
        name: "client|setname",
        arity: 3,
        flags: CONN,
        keys: (0, 0, 0),
        group: "connection",
        since: "2.6.9",
        complexity: "O(1)",
        summary: "Set the current connection name",
        run: Conn(client_setname),
    },
    Command {
        name: "client|setinfo",
        arity: 4,
        flags: CONN,
        keys: (0, 0, 0),
        group: "connection",
        since: "7.2.0",
        complexity: "O(1)",
        summary: "Set client or connection specific info",
        run: Conn(client_setinfo),
    },
    Command {
        name: "client|info",
        arity: 2,
        flags: CONN,
        keys: (0, 0, 0),
        group: "connection",
        since: "6.2.0",
        complexity: "O(1)",
        summary: "Returns information about the current client connection.",
        run: Conn(client_info),
    },
    Command {
        name: "client|list",
        arity: -2,
        flags: &["admin", "noscript", "loading", "stale"],
        keys: (0, 0, 0),
        group: "connection",
        since: "2.4.0",
        complexity: "O(N) where N is the number of client connections",
        summary: "Get the list of client connections",
        run: Conn(client_list),
    },
    Command {
        name: "client|help",
        arity: 2,
        flags: &["loading", "stale"],
        keys: (0, 0, 0),
        group: "connection",
        since: "5.0.0",
        complexity: "O(1)",
        summary: "Show helpful text about the different subcommands",
        run: Conn(client_help),
    },
];

pub static COMMAND: &[Command] = &[
    Command {
        name: "command|count",
        arity: 2,
        flags: &["loading", "stale"],
        keys: (0, 0, 0),
        group: "server",
        since: "2.8.13",
        complexity: "O(1)",
        summary: "Get total number of Redis commands",
        run: Conn(command_count),
    },
    Command {
        name: "command|list",
        arity: -2,
        flags: &["loading", "stale"],
        keys: (0, 0, 0),
        group: "server",
        since: "7.0.0",
        complexity: "O(N) where N is the total number of Redis commands",
        summary: "Get an array of Redis command names",
        run: Conn(command_list),
    },
    Command {
        name: "command|info",
        arity: -2,
        flags: &["loading", "stale"],
        keys: (0, 0, 0),
        group: "server",
        since: "2.8.13",
        complexity: "O(N) where N is the number of commands to look up",
        summary: "Get array of specific Redis command details, or all when no argument is given.",
        run: Conn(command_info),
    },
    Command {
        name: "command|docs",
        arity: -2,
        flags: &["loading", "stale"],
        keys: (0, 0, 0),
        group: "server",
        since: "7.0.0",
        complexity: "O(N) where N is the number of commands to look up",
        summary: "Get array of specific Redis command documentation",
        run: Conn(command_docs),
    },
    Command {
        name: "command|help",
        arity: 2,
        flags: &["loading", "stale"],
        keys: (0, 0, 0),
        group: "server",
        since: "5.0.0",
        complexity: "O(1)",
        summary: "Show helpful text about the different subcommands",
        run: Conn(command_help),
    },
];

pub static CONFIG: &[Command] = &[
    Command {
        name: "config|get",
        arity: -3,
        flags: &["admin", "noscript", "loading", "stale"],
        keys: (0, 0, 0),
        group: "server",
        since: "2.0.0",
        complexity: "O(N) when N is the number of configuration parameters provided",
        summary: "Get the values of configuration parameters",
        run: Conn(config_get),
    },
    Command {
        name: "config|help",
        arity: 2,
        flags: &["loading", "stale"],
        keys: (0, 0, 0),
        group: "server",
        since: "5.0.0",
        complexity: "O(1)",
        summary: "Show helpful text about the different subcommands",
        run: Conn(config_help),
    },
];

// --- connection ----------------------------------------------------------------------------------

pub fn ping(c: &mut Ctx<'_>, a: &[Bytes]) {
    match a.len() {
        1 => c.out.simple("PONG"),
        2 => c.out.bulk(&a[1]),
        _ => c.out.error("ERR wrong number of arguments for 'ping' command"),
    }
}

pub fn echo(c: &mut Ctx<'_>, a: &[Bytes]) {
    c.out.bulk(&a[1]);
}

pub fn select(c: &mut Ctx<'_>, a: &[Bytes]) {
    let Some(n) = int_arg(c, &a[1]) else { return };
    match usize::try_from(n).ok().filter(|&n| n < DATABASES) {
        Some(n) => {
            c.session.select(n);
            c.out.ok();
        }
        None => c.out.error("ERR DB index is out of range"),
    }
}

pub fn quit(c: &mut Ctx<'_>, _: &[Bytes]) {
    c.out.ok();
    c.after = After::Quit;
}

/// `AUTH [user] password` as for a default user without a password.
pub fn auth(c: &mut Ctx<'_>, a: &[Bytes]) {
    match a.len() {
        2 => c.out.error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        ),
        3 if a[1].as_ref() == b"default" => c.out.ok(),
        3 => c.out.error("WRONGPASS invalid username-password pair or user is disabled."),
        _ => c.out.error(SYNTAX),
    }
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`.
pub fn hello(c: &mut Ctx<'_>, a: &[Bytes]) {
    let mut version = None;
    if a.len() >= 2 {
        let Some(v) = parse_i64(&a[1]) else {
            c.out.error("ERR Protocol version is not an integer or out of range");
            return;
        };
        if !(2..=3).contains(&v) {
            c.out.error("NOPROTO unsupported protocol version");
            return;
        }
        version = Some(v as u8);
    }
    let mut user = None;
    let mut name = None;
    let mut j = 2;
    while j < a.len() {
        let more = a.len() - 1 - j;
        if is(&a[j], "auth") && more >= 2 {
            user = Some(&a[j + 1]);
            j += 3;
        } else if is(&a[j], "setname") && more >= 1 {
            name = Some(&a[j + 1]);
            j += 2;
        } else {
            let mut message = b"ERR Syntax error in HELLO option '".to_vec();
            message.extend_from_slice(&a[j]);
            message.push(b'\'');
            c.out.error(message);
            return;
        }
    }
    if user.is_some_and(|u| u.as_ref() != b"default") {
        c.out.error("WRONGPASS invalid username-password pair or user is disabled.");
        return;
    }
    if let Some(name) = name
        && !set_name(c, name)
    {
        return;
    }
    if let Some(v) = version {
        c.session.set_resp(v);
        c.out.set_resp(v);
    }
    c.out.map(7);
    c.out.bulk("server");
    c.out.bulk("redis");
    c.out.bulk("version");
    c.out.bulk(REDIS_VERSION);
    c.out.bulk("proto");
    c.out.int(i64::from(c.session.resp));
    c.out.bulk("id");
    c.out.int(c.session.id as i64);
    c.out.bulk("mode");
    c.out.bulk("standalone");
    c.out.bulk("role");
    c.out.bulk("master");
    c.out.bulk("modules");
    c.out.array(0);
}

/// Names must be printable ASCII without spaces; an empty name clears it.
fn valid_name(name: &[u8]) -> bool {
    name.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

fn set_name(c: &mut Ctx<'_>, name: &Bytes) -> bool {
    if !valid_name(name) {
        c.out.error("ERR Client names cannot contain spaces, newlines or special characters.");
        return false;
    }
    let value = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
    *super::server::lock(&c.session.info.name) = value;
    true
}

fn client_id(c: &mut Ctx<'_>, _: &[Bytes]) {
    c.out.int(c.session.id as i64);
}

fn client_getname(c: &mut Ctx<'_>, _: &[Bytes]) {
    let name = super::server::lock(&c.session.info.name).clone();
    c.out.bulk_or_null(name);
}

fn client_setname(c: &mut Ctx<'_>, a: &[Bytes]) {
    if set_name(c, &a[2]) {
        c.out.ok();
    }
}

/// `CLIENT SETINFO LIB-NAME|LIB-VER value` (Redis 7.2; the redis crate sends it on connect).
fn client_setinfo(c: &mut Ctx<'_>, a: &[Bytes]) {
    let (attr, value) = (&a[2], &a[3]);
    let slot = if is(attr, "lib-name") {
        &c.session.info.lib_name
    } else if is(attr, "lib-ver") {
        &c.session.info.lib_ver
    } else {
        let mut message = b"ERR Unrecognized option '".to_vec();
        message.extend_from_slice(attr);
        message.push(b'\'');
        c.out.error(message);
        return;
    };
    if !valid_name(value) {
        let mut message = attr.to_ascii_lowercase();
        message.splice(0..0, b"ERR ".iter().copied());
        message.extend_from_slice(b" cannot contain spaces, newlines or special characters.");
        c.out.error(message);
        return;
    }
    *super::server::lock(slot) = (!value.is_empty()).then(|| Bytes::copy_from_slice(value));
    c.out.ok();
}

fn client_info(c: &mut Ctx<'_>, _: &[Bytes]) {
    let mut line = c.session.info.line(c.server);
    line.push('\n');
    c.out.verbatim(&line);
}

/// `CLIENT LIST [TYPE NORMAL|MASTER|REPLICA|PUBSUB] [ID id …]`.
fn client_list(c: &mut Ctx<'_>, a: &[Bytes]) {
    let mut ids: Option<Vec<u64>> = None;
    let mut normal = true;
    let mut j = 2;
    while j < a.len() {
        if is(&a[j], "type") && j + 1 < a.len() {
            let t = &a[j + 1];
            if is(t, "normal") {
                normal = true;
            } else if is(t, "master") || is(t, "replica") || is(t, "slave") || is(t, "pubsub") {
                normal = false;
            } else {
                let mut message = b"ERR Unknown client type '".to_vec();
                message.extend_from_slice(t);
                message.push(b'\'');
                c.out.error(message);
                return;
            }
            j += 2;
        } else if is(&a[j], "id") && j + 1 < a.len() {
            let mut list = Vec::new();
            for arg in &a[j + 1..] {
                match parse_i64(arg).filter(|&n| n > 0) {
                    Some(n) => list.push(n as u64),
                    None => {
                        c.out.error("ERR Invalid client ID");
                        return;
                    }
                }
            }
            ids = Some(list);
            j = a.len();
        } else {
            c.out.error(SYNTAX);
            return;
        }
    }
    let clients: Vec<_> = super::server::lock(&c.server.clients).values().cloned().collect();
    let mut text = String::new();
    if normal {
        for client in clients.iter().filter(|cl| ids.as_ref().is_none_or(|ids| ids.contains(&cl.id))) {
            text.push_str(&client.line(c.server));
            text.push('\n');
        }
    }
    c.out.verbatim(&text);
}

fn help(c: &mut Ctx<'_>, lines: &[&str]) {
    c.out.array(lines.len());
    for line in lines {
        c.out.simple(line);
    }
}

fn client_help(c: &mut Ctx<'_>, _: &[Bytes]) {
    help(
        c,
        &[
            "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GETNAME",
            "    Return the name of the current connection.",
            "ID",
            "    Return the ID of the current connection.",
            "INFO",
            "    Return information about the current client connection.",
            "LIST [options ...]",
            "    Return information about client connections. Options:",
            "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
            "      Return clients of specified type.",
            "SETNAME <name>",
            "    Assign the name <name> to the current connection.",
            "SETINFO <option> <value>",
            "    Set client meta attr. Options are:",
            "    * LIB-NAME: the client lib name.",
            "    * LIB-VER: the client lib version.",
            "HELP",
            "    Prints this help.",
        ],
    );
}

// --- COMMAND -------------------------------------------------------------------------------------

/// `COMMAND` without a subcommand: every command's details.
pub fn command_all(c: &mut Ctx<'_>, _: &[Bytes]) {
    c.out.array(COMMANDS.len());
    for command in COMMANDS {
        command_entry(c, command);
    }
}

fn command_entry(c: &mut Ctx<'_>, command: &Command) {
    c.out.array(10);
    c.out.bulk(command.name);
    c.out.int(i64::from(command.arity));
    c.out.set(command.flags.len());
    for flag in command.flags {
        c.out.simple(flag);
    }
    c.out.int(i64::from(command.keys.0));
    c.out.int(i64::from(command.keys.1));
    c.out.int(i64::from(command.keys.2));
    let categories = command.categories();
    c.out.set(categories.len());
    for category in categories {
        c.out.simple(category);
    }
    c.out.set(0);
    c.out.array(0);
    let subs = command.subcommands();
    c.out.array(subs.len());
    for sub in subs {
        command_entry(c, sub);
    }
}

fn command_count(c: &mut Ctx<'_>, _: &[Bytes]) {
    c.out.int(COMMANDS.len() as i64);
}

fn command_list(c: &mut Ctx<'_>, a: &[Bytes]) {
    if a.len() > 2 {
        // FILTERBY is not supported: say so as a syntax error rather than answer wrongly.
        c.out.error(SYNTAX);
        return;
    }
    let all = commands::all();
    c.out.array(all.len());
    for command in all {
        c.out.bulk(command.name);
    }
}

fn command_info(c: &mut Ctx<'_>, a: &[Bytes]) {
    if a.len() == 2 {
        command_all(c, a);
        return;
    }
    c.out.array(a.len() - 2);
    for name in &a[2..] {
        match commands::find(name) {
            Some((_, command)) => command_entry(c, command),
            None => c.out.null(),
        }
    }
}

fn command_docs(c: &mut Ctx<'_>, a: &[Bytes]) {
    let chosen: Vec<&Command> = if a.len() == 2 {
        COMMANDS.iter().collect()
    } else {
        a[2..].iter().filter_map(|n| commands::find(n).map(|(_, c)| c)).collect()
    };
    c.out.map(chosen.len());
    for command in chosen {
        c.out.bulk(command.name);
        command_doc(c, command);
    }
}

fn command_doc(c: &mut Ctx<'_>, command: &Command) {
    let subs = command.subcommands();
    c.out.map(if subs.is_empty() { 4 } else { 5 });
    c.out.bulk("summary");
    c.out.bulk(command.summary);
    c.out.bulk("since");
    c.out.bulk(command.since);
    c.out.bulk("group");
    c.out.bulk(command.group);
    c.out.bulk("complexity");
    c.out.bulk(command.complexity);
    if !subs.is_empty() {
        c.out.bulk("subcommands");
        c.out.map(subs.len());
        for sub in subs {
            c.out.bulk(sub.name);
            command_doc(c, sub);
        }
    }
}

fn command_help(c: &mut Ctx<'_>, _: &[Bytes]) {
    help(
        c,
        &[
            "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "(no subcommand)",
            "    Return details about all Redis commands.",
            "COUNT",
            "    Return the total number of commands in this Redis server.",
            "LIST",
            "    Return a list of all commands in this Redis server.",
            "INFO [<command-name> ...]",
            "    Return details about multiple Redis commands.",
            "    If no command names are given, documentation details for all",
            "    commands are returned.",
            "DOCS [<command-name> ...]",
            "    Return documentation details about multiple Redis commands.",
            "    If no command names are given, documentation details for all",
            "    commands are returned.",
            "HELP",
            "    Prints this help.",
        ],
    );
}

// --- CONFIG --------------------------------------------------------------------------------------

/// The parameters `CONFIG GET` knows, with their values.
fn config_params(c: &Ctx<'_>) -> Vec<(&'static str, String)> {
    let o = &c.server.options;
    let store = &c.server.store;
    vec![
        ("appendfsync", store.fsync().map_or("no", |f| f.name()).to_string()),
        ("appendonly", "no".to_string()),
        ("bind", c.server.addr.ip().to_string()),
        ("client-query-buffer-limit", o.max_query_buffer.to_string()),
        ("databases", DATABASES.to_string()),
        ("dir", store.path().and_then(|p| p.parent()).map(|p| p.display().to_string()).unwrap_or_default()),
        ("maxclients", o.max_clients.to_string()),
        ("maxmemory", "0".to_string()),
        ("maxmemory-policy", "noeviction".to_string()),
        ("port", c.server.addr.port().to_string()),
        ("proto-max-bulk-len", o.max_bulk_len.to_string()),
        ("save", String::new()),
        ("tcp-keepalive", o.tcp_keepalive.as_secs().to_string()),
        ("timeout", o.idle_timeout.as_secs().to_string()),
    ]
}

fn config_get(c: &mut Ctx<'_>, a: &[Bytes]) {
    let params = config_params(c);
    let chosen: Vec<&(&str, String)> =
        params.iter().filter(|(name, _)| a[2..].iter().any(|p| glob::matches(p, name.as_bytes(), true))).collect();
    c.out.map(chosen.len());
    for (name, value) in chosen {
        c.out.bulk(name);
        c.out.bulk(value);
    }
}

fn config_help(c: &mut Ctx<'_>, _: &[Bytes]) {
    help(
        c,
        &[
            "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
            "HELP",
            "    Prints this help.",
        ],
    );
}

// --- server --------------------------------------------------------------------------------------

pub fn time(c: &mut Ctx<'_>, _: &[Bytes]) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    c.out.array(2);
    c.out.bulk(now.as_secs().to_string());
    c.out.bulk(now.subsec_micros().to_string());
}

const NO_DISK: &str = "ERR acgs shim redis runs --in-memory: there is no data dir to save to";

pub fn save(c: &mut Ctx<'_>, _: &[Bytes]) {
    if c.server.store.path().is_none() {
        c.out.error(NO_DISK);
    } else {
        c.after = After::Save;
    }
}

pub fn bgsave(c: &mut Ctx<'_>, a: &[Bytes]) {
    if a.len() > 2 || (a.len() == 2 && !is(&a[1], "schedule")) {
        c.out.error(SYNTAX);
    } else if c.server.store.path().is_none() {
        c.out.error(NO_DISK);
    } else {
        c.server.store.request_commit();
        c.out.simple("Background saving started");
    }
}

pub fn lastsave(c: &mut Ctx<'_>, _: &[Bytes]) {
    let ms = c.server.store.durable().map_or(c.server.started_unix_ms, |d| d.last_success_ms);
    c.out.int((ms / 1000) as i64);
}

/// `INFO [section …]`.
pub fn info(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    const ALL: [&str; 8] = ["server", "clients", "memory", "persistence", "stats", "replication", "cpu", "keyspace"];
    let wanted: Vec<&str> = if a.len() == 1 {
        ALL.to_vec()
    } else {
        let everything = a[1..].iter().any(|s| is(s, "all") || is(s, "everything") || is(s, "default"));
        ALL.iter().copied().filter(|name| everything || a[1..].iter().any(|s| is(s, name))).collect()
    };
    let mut text = String::new();
    for (i, section) in wanted.iter().enumerate() {
        if i > 0 {
            text.push_str("\r\n");
        }
        info_section(c, ks, section, &mut text);
    }
    c.out.verbatim(&text);
}

fn info_section(c: &Ctx<'_>, ks: &Keyspace, section: &str, out: &mut String) {
    let server = c.server;
    let stats = &server.stats;
    let uptime = server.started.elapsed().as_secs();
    let title = match section {
        "cpu" => "CPU".to_string(),
        other => other[..1].to_ascii_uppercase() + &other[1..],
    };
    let _ = write!(out, "# {title}\r\n");
    let mut line = |key: &str, value: &dyn std::fmt::Display| {
        let _ = write!(out, "{key}:{value}\r\n");
    };
    match section {
        "server" => {
            line("redis_version", &REDIS_VERSION);
            line("acgs_version", &env!("CARGO_PKG_VERSION"));
            line("redis_mode", &"standalone");
            line("os", &std::env::consts::OS);
            line("arch_bits", &(usize::BITS));
            line("process_id", &std::process::id());
            line("run_id", &server.run_id);
            line("tcp_port", &server.addr.port());
            line("server_time_usec", &(now_ms() * 1000));
            line("uptime_in_seconds", &uptime);
            line("uptime_in_days", &(uptime / 86_400));
            line("executable", &std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default());
            line("config_file", &"");
            line(
                "acgs_storage",
                &server.store.path().map_or("memory".to_string(), |p| format!("redb {}", p.display())),
            );
        }
        "clients" => {
            line("connected_clients", &server.connected());
            line("maxclients", &server.options.max_clients);
            line("blocked_clients", &0);
        }
        "memory" => {
            let (rss, peak) = memory();
            line("used_memory", &rss);
            line("used_memory_human", &human(rss));
            line("used_memory_rss", &rss);
            line("used_memory_rss_human", &human(rss));
            line("used_memory_peak", &peak);
            line("used_memory_peak_human", &human(peak));
            line("maxmemory", &0);
            line("maxmemory_policy", &"noeviction");
        }
        "persistence" => {
            let durable = server.store.durable();
            line("loading", &0);
            line("rdb_changes_since_last_save", &ks.pending());
            line("rdb_bgsave_in_progress", &0);
            line(
                "rdb_last_save_time",
                &(durable.as_ref().map_or(server.started_unix_ms, |d| d.last_success_ms) / 1000),
            );
            line("rdb_last_bgsave_status", &if ks.persist_error.is_some() { "err" } else { "ok" });
            line("aof_enabled", &0);
            line("acgs_fsync", &server.store.fsync().map_or("none (in memory)", |f| f.name()));
            if let Some(d) = durable {
                line("acgs_commits", &d.commits);
                line("acgs_last_commit_keys", &d.last_keys);
                line("acgs_last_commit_usec", &d.last_micros);
                line("acgs_last_commit_error", &d.error.unwrap_or_default());
            }
        }
        "stats" => {
            let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            line("total_connections_received", &load(&stats.connections_received));
            line("total_commands_processed", &load(&stats.commands));
            line("instantaneous_ops_per_sec", &stats.ops_per_sec());
            line("total_net_input_bytes", &load(&stats.net_input_bytes));
            line("total_net_output_bytes", &load(&stats.net_output_bytes));
            line("rejected_connections", &load(&stats.rejected_connections));
            line("expired_keys", &ks.stats.expired);
            line("evicted_keys", &0);
            line("keyspace_hits", &ks.stats.hits);
            line("keyspace_misses", &ks.stats.misses);
            line("total_error_replies", &load(&stats.error_replies));
        }
        "replication" => {
            line("role", &"master");
            line("connected_slaves", &0);
            line("master_replid", &server.run_id);
            line("master_repl_offset", &0);
        }
        "cpu" => {
            let (user, sys) = cpu();
            line("used_cpu_sys", &format!("{sys:.6}"));
            line("used_cpu_user", &format!("{user:.6}"));
        }
        _ => {
            for (n, db) in ks.dbs.iter().enumerate().filter(|(_, db)| !db.map.is_empty()) {
                let value = format!("keys={},expires={},avg_ttl={}", db.map.len(), db.expires.len(), db.avg_ttl(c.now));
                line(&format!("db{n}"), &value);
            }
        }
    }
}

/// Resident and peak resident memory in bytes (Linux; 0 elsewhere).
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User and system CPU seconds of the process (Linux: `/proc/self/stat` in clock ticks of
/// 1/100 s, the kernel's fixed `USER_HZ`; 0 elsewhere).
fn cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    // After the command name: state is field 3, utime 14, stime 15 (1-based, as in proc(5)).
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(14) / 100.0, ticks(15) / 100.0)
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}G", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.2}M", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else {
        format!("{bytes}B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_process_numbers() {
        let (rss, peak) = memory();
        assert!(rss > 0 && peak >= rss, "{rss} {peak}");
        let (user, sys) = cpu();
        assert!(user >= 0.0 && sys >= 0.0);
        assert_eq!(human(512), "512B");
        assert_eq!(human(1536), "1.50K");
        assert_eq!(human(3 * 1024 * 1024), "3.00M");
    }
}
