//! Commands on values of one type, following Redis 7.0 (`t_string.c`, `t_list.c`, `t_set.c`,
//! `t_hash.c`) in their options, replies and error texts.
//!
//! Strings: `GET`, `SET` (`NX|XX`, `GET`, `EX|PX|EXAT|PXAT|KEEPTTL`), `SETEX`, `PSETEX`, `SETNX`,
//! `GETSET`, `GETDEL`, `GETEX` (`EX|PX|EXAT|PXAT|PERSIST`), `MGET`, `MSET`, `MSETNX`, `APPEND`,
//! `STRLEN`, `INCR`, `DECR`, `INCRBY`, `DECRBY` (64-bit, overflow refused, the time to live
//! kept). Lists: `LPUSH`, `RPUSH`, `LPOP`, `RPOP` (with a count), `LLEN`, `LRANGE`. Sets:
//! `SADD`, `SREM`, `SMEMBERS`, `SISMEMBER`, `SCARD`. Hashes: `HSET`, `HGET`, `HMGET`, `HDEL`,
//! `HGETALL`, `HKEYS`, `HVALS`, `HLEN`, `HEXISTS`, `HINCRBY`. A list, set or hash left empty is
//! deleted. The order of `SMEMBERS`, `HGETALL`, `HKEYS` and `HVALS` is unspecified (as in Redis,
//! though Redis often answers small ones in insertion order).
//!
//! Stored keys and values are copied out of the request buffer, so a stored value never keeps
//! a connection's buffer alive.

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;

use super::commands::{Ctx, NOT_INTEGER, OVERFLOW, SYNTAX, WRONGTYPE, int_arg, is};
use super::keyspace::{Entry, Key, Keyspace, Value};
use super::proto::parse_i64;

fn copy(b: &[u8]) -> Bytes {
    Bytes::copy_from_slice(b)
}

// --- strings -------------------------------------------------------------------------------------

pub fn get(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    match ks.read(c.db(), &c.key(&a[1]), c.now) {
        None => c.out.null(),
        Some(Entry { value: Value::Str(s), .. }) => c.out.bulk(s),
        Some(_) => c.out.error(WRONGTYPE),
    }
}

/// How an expiry option was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExpiryKind {
    Ex,
    Px,
    ExAt,
    PxAt,
}

/// The options of `SET` (`for_set`) or `GETEX`, parsed as Redis's
/// `parseExtendedStringArgumentsOrReply` does (a repeated `EX` replaces the earlier one;
/// conflicting options are a syntax error).
#[derive(Debug, Default)]
struct StringOptions<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    expiry: Option<(ExpiryKind, &'a Bytes)>,
}

fn parse_string_options(args: &[Bytes], for_set: bool) -> Option<StringOptions<'_>> {
    let mut o = StringOptions::default();
    let mut j = 0;
    while j < args.len() {
        let opt = &args[j];
        let next = args.get(j + 1);
        let expiry_kind = o.expiry.map(|(k, _)| k);
        let other_expiry = |k: ExpiryKind| expiry_kind.is_some_and(|e| e != k);
        if is(opt, "nx") && !o.xx && for_set {
            o.nx = true;
        } else if is(opt, "xx") && !o.nx && for_set {
            o.xx = true;
        } else if is(opt, "get") && for_set {
            o.get = true;
        } else if is(opt, "keepttl") && !o.persist && expiry_kind.is_none() && for_set {
            o.keepttl = true;
        } else if is(opt, "persist") && !for_set && expiry_kind.is_none() && !o.keepttl {
            o.persist = true;
        } else if let Some(kind) =
            [("ex", ExpiryKind::Ex), ("px", ExpiryKind::Px), ("exat", ExpiryKind::ExAt), ("pxat", ExpiryKind::PxAt)]
                .into_iter()
                .find_map(|(w, k)| is(opt, w).then_some(k))
            && !o.keepttl
            && !o.persist
            && !other_expiry(kind)
            && let Some(next) = next
        {
            o.expiry = Some((kind, next));
            j += 1;
        } else {
            return None;
        }
        j += 1;
    }
    Some(o)
}

/// The absolute expiry time (ms) an option asks for, or Redis's error reply.
fn expiry_ms(c: &mut Ctx<'_>, kind: ExpiryKind, arg: &[u8], command: &str) -> Option<u64> {
    let n = int_arg(c, arg)?;
    let seconds = matches!(kind, ExpiryKind::Ex | ExpiryKind::ExAt);
    let ms = if n <= 0 {
        None
    } else if seconds {
        n.checked_mul(1000)
    } else {
        Some(n)
    };
    let ms = ms.and_then(|ms| match kind {
        ExpiryKind::Ex | ExpiryKind::Px => ms.checked_add(c.now as i64),
        ExpiryKind::ExAt | ExpiryKind::PxAt => Some(ms),
    });
    if ms.is_none() {
        c.out.error(format!("ERR invalid expire time in '{command}' command"));
    }
    ms.map(|ms| ms as u64)
}

/// Redis's `setGenericCommand`; `replies` overrides the `OK`/null answers (`SETNX`: 1/0).
fn set_generic(
    c: &mut Ctx<'_>,
    ks: &mut Keyspace,
    key_arg: &Bytes,
    value: &Bytes,
    o: &StringOptions<'_>,
    command: &str,
    replies: Option<(i64, i64)>,
) {
    let at = match o.expiry {
        Some((kind, arg)) => match expiry_ms(c, kind, arg, command) {
            Some(at) => Some(at),
            None => return,
        },
        None => None,
    };
    let key = c.key(key_arg);
    if o.get {
        match ks.read(c.db(), &key, c.now) {
            None => c.out.null(),
            Some(Entry { value: Value::Str(s), .. }) => c.out.bulk(s),
            Some(_) => {
                c.out.error(WRONGTYPE);
                return;
            }
        }
    }
    let existing = ks.lookup(c.db(), &key, c.now).map(|e| e.expires_at);
    if (o.nx && existing.is_some()) || (o.xx && existing.is_none()) {
        if !o.get {
            match replies {
                Some((_, refused)) => c.out.int(refused),
                None => c.out.null(),
            }
        }
        return;
    }
    let expires_at = match at {
        Some(at) => at,
        None if o.keepttl => existing.unwrap_or(0),
        None => 0,
    };
    if expires_at != 0 && expires_at <= c.now {
        // EXAT/PXAT in the past: set and gone at once.
        ks.remove(c.db(), &key);
    } else {
        ks.insert(c.db(), Key::owned(key_arg), Value::Str(copy(value)), expires_at);
    }
    if !o.get {
        match replies {
            Some((done, _)) => c.out.int(done),
            None => c.out.ok(),
        }
    }
}

pub fn set(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let Some(o) = parse_string_options(&a[3..], true) else {
        c.out.error(SYNTAX);
        return;
    };
    set_generic(c, ks, &a[1], &a[2], &o, "set", None);
}

pub fn setex(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let o = StringOptions { expiry: Some((ExpiryKind::Ex, &a[2])), ..StringOptions::default() };
    set_generic(c, ks, &a[1], &a[3], &o, "setex", None);
}

pub fn psetex(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let o = StringOptions { expiry: Some((ExpiryKind::Px, &a[2])), ..StringOptions::default() };
    set_generic(c, ks, &a[1], &a[3], &o, "psetex", None);
}

pub fn setnx(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let o = StringOptions { nx: true, ..StringOptions::default() };
    set_generic(c, ks, &a[1], &a[2], &o, "setnx", Some((1, 0)));
}

pub fn getset(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let o = StringOptions { get: true, ..StringOptions::default() };
    set_generic(c, ks, &a[1], &a[2], &o, "getset", None);
}

pub fn getdel(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let key = c.key(&a[1]);
    match ks.read(c.db(), &key, c.now) {
        None => c.out.null(),
        Some(Entry { value: Value::Str(s), .. }) => {
            c.out.bulk(s);
            ks.remove(c.db(), &key);
        }
        Some(_) => c.out.error(WRONGTYPE),
    }
}

pub fn getex(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let Some(o) = parse_string_options(&a[2..], false) else {
        c.out.error(SYNTAX);
        return;
    };
    let key = c.key(&a[1]);
    match ks.read(c.db(), &key, c.now) {
        None => {
            c.out.null();
            return;
        }
        Some(Entry { value: Value::Str(_), .. }) => {}
        Some(_) => {
            c.out.error(WRONGTYPE);
            return;
        }
    }
    let at = match o.expiry {
        Some((kind, arg)) => match expiry_ms(c, kind, arg, "getex") {
            Some(at) => Some(at),
            None => return,
        },
        None => None,
    };
    if let Some(Entry { value: Value::Str(s), .. }) = ks.lookup(c.db(), &key, c.now) {
        c.out.bulk(s);
    }
    match at {
        Some(at) if at <= c.now => {
            ks.remove(c.db(), &key);
        }
        Some(at) => {
            ks.set_expiry(c.db(), &key, at);
        }
        None if o.persist && ks.lookup(c.db(), &key, c.now).is_some_and(|e| e.expires_at != 0) => {
            ks.set_expiry(c.db(), &key, 0);
        }
        None => {}
    }
}

pub fn mget(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    c.out.array(a.len() - 1);
    for arg in &a[1..] {
        match ks.read(c.db(), &c.key(arg), c.now) {
            Some(Entry { value: Value::Str(s), .. }) => c.out.bulk(s),
            _ => c.out.null(),
        }
    }
}

fn mset_generic(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes], nx: bool, name: &str) -> bool {
    if a.len().is_multiple_of(2) {
        c.out.error(format!("ERR wrong number of arguments for '{name}' command"));
        return false;
    }
    if nx && a[1..].chunks(2).any(|pair| ks.lookup(c.db(), &c.key(&pair[0]), c.now).is_some()) {
        c.out.int(0);
        return false;
    }
    for pair in a[1..].chunks(2) {
        ks.insert(c.db(), Key::owned(&pair[0]), Value::Str(copy(&pair[1])), 0);
    }
    true
}

pub fn mset(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    if mset_generic(c, ks, a, false, "mset") {
        c.out.ok();
    }
}

pub fn msetnx(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    if mset_generic(c, ks, a, true, "msetnx") {
        c.out.int(1);
    }
}

pub fn append(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let key = c.key(&a[1]);
    let max = c.server.options.max_bulk_len;
    let len = match ks.lookup(c.db(), &key, c.now) {
        None => {
            ks.insert(c.db(), Key::owned(&a[1]), Value::Str(copy(&a[2])), 0);
            a[2].len()
        }
        Some(Entry { value: Value::Str(s), .. }) => {
            if s.len() + a[2].len() > max {
                c.out.error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
                return;
            }
            let mut joined = Vec::with_capacity(s.len() + a[2].len());
            joined.extend_from_slice(s);
            joined.extend_from_slice(&a[2]);
            let len = joined.len();
            *s = Bytes::from(joined);
            ks.mark(c.db(), &key);
            len
        }
        Some(_) => {
            c.out.error(WRONGTYPE);
            return;
        }
    };
    c.out.int(len as i64);
}

pub fn strlen(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    match ks.read(c.db(), &c.key(&a[1]), c.now) {
        None => c.out.int(0),
        Some(Entry { value: Value::Str(s), .. }) => c.out.int(s.len() as i64),
        Some(_) => c.out.error(WRONGTYPE),
    }
}

/// Redis's `incrDecrCommand`: the value must be a string holding a 64-bit integer; the key
/// keeps its time to live.
fn incr_by(c: &mut Ctx<'_>, ks: &mut Keyspace, key_arg: &Bytes, by: i64) {
    let key = c.key(key_arg);
    let current = match ks.lookup(c.db(), &key, c.now) {
        None => None,
        Some(Entry { value: Value::Str(s), .. }) => match parse_i64(s) {
            Some(n) => Some(n),
            None => {
                c.out.error(NOT_INTEGER);
                return;
            }
        },
        Some(_) => {
            c.out.error(WRONGTYPE);
            return;
        }
    };
    let Some(next) = current.unwrap_or(0).checked_add(by) else {
        c.out.error(OVERFLOW);
        return;
    };
    let text = Bytes::from(next.to_string());
    match ks.lookup(c.db(), &key, c.now) {
        Some(entry) => {
            entry.value = Value::Str(text);
            ks.mark(c.db(), &key);
        }
        None => ks.insert(c.db(), Key::owned(key_arg), Value::Str(text), 0),
    }
    c.out.int(next);
}

pub fn incr(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    incr_by(c, ks, &a[1], 1);
}

pub fn decr(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    incr_by(c, ks, &a[1], -1);
}

pub fn incrby(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    if let Some(by) = int_arg(c, &a[2]) {
        incr_by(c, ks, &a[1], by);
    }
}

pub fn decrby(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let Some(by) = int_arg(c, &a[2]) else { return };
    let Some(by) = by.checked_neg() else {
        c.out.error("ERR decrement would overflow");
        return;
    };
    incr_by(c, ks, &a[1], by);
}

// --- lists ---------------------------------------------------------------------------------------

fn push(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes], front: bool) {
    let key = c.key(&a[1]);
    let len = match ks.lookup(c.db(), &key, c.now) {
        Some(Entry { value: Value::List(list), .. }) => {
            for item in &a[2..] {
                if front { list.push_front(copy(item)) } else { list.push_back(copy(item)) }
            }
            let len = list.len();
            ks.mark(c.db(), &key);
            len
        }
        Some(_) => {
            c.out.error(WRONGTYPE);
            return;
        }
        None => {
            let mut list = VecDeque::with_capacity(a.len() - 2);
            for item in &a[2..] {
                if front { list.push_front(copy(item)) } else { list.push_back(copy(item)) }
            }
            let len = list.len();
            ks.insert(c.db(), Key::owned(&a[1]), Value::List(list), 0);
            len
        }
    };
    c.out.int(len as i64);
}

pub fn lpush(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    push(c, ks, a, true);
}

pub fn rpush(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    push(c, ks, a, false);
}

fn pop(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes], front: bool, name: &str) {
    if a.len() > 3 {
        c.out.error(format!("ERR wrong number of arguments for '{name}' command"));
        return;
    }
    let count = match a.get(2) {
        None => None,
        Some(arg) => match int_arg(c, arg) {
            None => return,
            Some(n) if n < 0 => {
                c.out.error("ERR value is out of range, must be positive");
                return;
            }
            Some(n) => Some(n as usize),
        },
    };
    let key = c.key(&a[1]);
    let popped = match ks.lookup(c.db(), &key, c.now) {
        None => {
            if count.is_some() {
                c.out.null_array()
            } else {
                c.out.null()
            }
            return;
        }
        Some(Entry { value: Value::List(list), .. }) => {
            let n = count.unwrap_or(1).min(list.len());
            let items: Vec<Bytes> =
                (0..n).filter_map(|_| if front { list.pop_front() } else { list.pop_back() }).collect();
            (items, list.is_empty())
        }
        Some(_) => {
            c.out.error(WRONGTYPE);
            return;
        }
    };
    let (items, emptied) = popped;
    if emptied {
        ks.remove(c.db(), &key);
    } else if !items.is_empty() {
        ks.mark(c.db(), &key);
    }
    match count {
        None => c.out.bulk_or_null(items.first()),
        Some(_) => {
            c.out.array(items.len());
            for item in items {
                c.out.bulk(item);
            }
        }
    }
}

pub fn lpop(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    pop(c, ks, a, true, "lpop");
}

pub fn rpop(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    pop(c, ks, a, false, "rpop");
}

pub fn llen(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    match ks.read(c.db(), &c.key(&a[1]), c.now) {
        None => c.out.int(0),
        Some(Entry { value: Value::List(list), .. }) => c.out.int(list.len() as i64),
        Some(_) => c.out.error(WRONGTYPE),
    }
}

pub fn lrange(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let Some(start) = int_arg(c, &a[2]) else { return };
    let Some(end) = int_arg(c, &a[3]) else { return };
    let list = match ks.read(c.db(), &c.key(&a[1]), c.now) {
        None => {
            c.out.array(0);
            return;
        }
        Some(Entry { value: Value::List(list), .. }) => list,
        Some(_) => {
            c.out.error(WRONGTYPE);
            return;
        }
    };
    let len = list.len() as i64;
    let start = if start < 0 { (len + start).max(0) } else { start };
    let end = if end < 0 { len + end } else { end };
    if start > end || start >= len {
        c.out.array(0);
        return;
    }
    let end = end.min(len - 1);
    c.out.array((end - start + 1) as usize);
    for item in list.range(start as usize..=end as usize) {
        c.out.bulk(item);
    }
}

// --- sets ----------------------------------------------------------------------------------------

pub fn sadd(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let key = c.key(&a[1]);
    let added = match ks.lookup(c.db(), &key, c.now) {
        Some(Entry { value: Value::Set(set), .. }) => {
            let added = a[2..].iter().filter(|m| set.insert(copy(m))).count();
            if added > 0 {
                ks.mark(c.db(), &key);
            }
            added
        }
        Some(_) => {
            c.out.error(WRONGTYPE);
            return;
        }
        None => {
            let set: HashSet<Bytes> = a[2..].iter().map(|m| copy(m)).collect();
            let added = set.len();
            ks.insert(c.db(), Key::owned(&a[1]), Value::Set(set), 0);
            added
        }
    };
    c.out.int(added as i64);
}

pub fn srem(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let key = c.key(&a[1]);
    let (removed, emptied) = match ks.lookup(c.db(), &key, c.now) {
        None => (0, false),
        Some(Entry { value: Value::Set(set), .. }) => {
            let removed = a[2..].iter().filter(|m| set.remove(m.as_ref())).count();
            (removed, set.is_empty())
        }
        Some(_) => {
            c.out.error(WRONGTYPE);
            return;
        }
    };
    if emptied {
        ks.remove(c.db(), &key);
    } else if removed > 0 {
        ks.mark(c.db(), &key);
    }
    c.out.int(removed as i64);
}

pub fn smembers(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    match ks.read(c.db(), &c.key(&a[1]), c.now) {
        None => c.out.set(0),
        Some(Entry { value: Value::Set(set), .. }) => {
            c.out.set(set.len());
            for member in set.iter() {
                c.out.bulk(member);
            }
        }
        Some(_) => c.out.error(WRONGTYPE),
    }
}

pub fn sismember(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    match ks.read(c.db(), &c.key(&a[1]), c.now) {
        None => c.out.int(0),
        Some(Entry { value: Value::Set(set), .. }) => c.out.int(i64::from(set.contains(a[2].as_ref()))),
        Some(_) => c.out.error(WRONGTYPE),
    }
}

pub fn scard(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    match ks.read(c.db(), &c.key(&a[1]), c.now) {
        None => c.out.int(0),
        Some(Entry { value: Value::Set(set), .. }) => c.out.int(set.len() as i64),
        Some(_) => c.out.error(WRONGTYPE),
    }
}

// --- hashes --------------------------------------------------------------------------------------

pub fn hset(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    if !a.len().is_multiple_of(2) {
        c.out.error("ERR wrong number of arguments for 'hset' command");
        return;
    }
    let key = c.key(&a[1]);
    let added = match ks.lookup(c.db(), &key, c.now) {
        Some(Entry { value: Value::Hash(hash), .. }) => {
            let added = a[2..].chunks(2).filter(|p| hash.insert(copy(&p[0]), copy(&p[1])).is_none()).count();
            ks.mark(c.db(), &key);
            added
        }
        Some(_) => {
            c.out.error(WRONGTYPE);
            return;
        }
        None => {
            let hash: HashMap<Bytes, Bytes> = a[2..].chunks(2).map(|p| (copy(&p[0]), copy(&p[1]))).collect();
            let added = hash.len();
            ks.insert(c.db(), Key::owned(&a[1]), Value::Hash(hash), 0);
            added
        }
    };
    c.out.int(added as i64);
}

/// The hash at `key` (None if missing), or the WRONGTYPE reply.
fn read_hash<'k>(c: &mut Ctx<'_>, ks: &'k mut Keyspace, key: &Bytes) -> Result<Option<&'k HashMap<Bytes, Bytes>>, ()> {
    match ks.read(c.db(), &c.key(key), c.now) {
        None => Ok(None),
        Some(Entry { value: Value::Hash(hash), .. }) => Ok(Some(hash)),
        Some(_) => {
            c.out.error(WRONGTYPE);
            Err(())
        }
    }
}

pub fn hget(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    if let Ok(hash) = read_hash(c, ks, &a[1]) {
        c.out.bulk_or_null(hash.and_then(|h| h.get(a[2].as_ref())));
    }
}

pub fn hmget(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    if let Ok(hash) = read_hash(c, ks, &a[1]) {
        c.out.array(a.len() - 2);
        for field in &a[2..] {
            c.out.bulk_or_null(hash.and_then(|h| h.get(field.as_ref())));
        }
    }
}

pub fn hdel(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let key = c.key(&a[1]);
    let (removed, emptied) = match ks.lookup(c.db(), &key, c.now) {
        None => (0, false),
        Some(Entry { value: Value::Hash(hash), .. }) => {
            let removed = a[2..].iter().filter(|f| hash.remove(f.as_ref()).is_some()).count();
            (removed, hash.is_empty())
        }
        Some(_) => {
            c.out.error(WRONGTYPE);
            return;
        }
    };
    if emptied {
        ks.remove(c.db(), &key);
    } else if removed > 0 {
        ks.mark(c.db(), &key);
    }
    c.out.int(removed as i64);
}

pub fn hgetall(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    match read_hash(c, ks, &a[1]) {
        Ok(None) => c.out.map(0),
        Ok(Some(hash)) => {
            c.out.map(hash.len());
            for (field, value) in hash {
                c.out.bulk(field);
                c.out.bulk(value);
            }
        }
        Err(()) => {}
    }
}

fn hash_part(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes], keys: bool) {
    if let Ok(hash) = read_hash(c, ks, &a[1]) {
        let Some(hash) = hash else {
            c.out.array(0);
            return;
        };
        c.out.array(hash.len());
        for (field, value) in hash {
            c.out.bulk(if keys { field } else { value });
        }
    }
}

pub fn hkeys(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    hash_part(c, ks, a, true);
}

pub fn hvals(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    hash_part(c, ks, a, false);
}

pub fn hlen(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    if let Ok(hash) = read_hash(c, ks, &a[1]) {
        c.out.int(hash.map_or(0, |h| h.len() as i64));
    }
}

pub fn hexists(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    if let Ok(hash) = read_hash(c, ks, &a[1]) {
        c.out.int(i64::from(hash.is_some_and(|h| h.contains_key(a[2].as_ref()))));
    }
}

pub fn hincrby(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let Some(by) = int_arg(c, &a[3]) else { return };
    let key = c.key(&a[1]);
    let next = match ks.lookup(c.db(), &key, c.now) {
        Some(Entry { value: Value::Hash(hash), .. }) => {
            let current = match hash.get(a[2].as_ref()) {
                None => 0,
                Some(v) => match parse_i64(v) {
                    Some(n) => n,
                    None => {
                        c.out.error("ERR hash value is not an integer");
                        return;
                    }
                },
            };
            let Some(next) = current.checked_add(by) else {
                c.out.error(OVERFLOW);
                return;
            };
            hash.insert(copy(&a[2]), Bytes::from(next.to_string()));
            ks.mark(c.db(), &key);
            next
        }
        Some(_) => {
            c.out.error(WRONGTYPE);
            return;
        }
        None => {
            let hash = HashMap::from([(copy(&a[2]), Bytes::from(by.to_string()))]);
            ks.insert(c.db(), Key::owned(&a[1]), Value::Hash(hash), 0);
            by
        }
    };
    c.out.int(next);
}
