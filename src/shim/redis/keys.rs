//! Commands on keys whatever their type: `DEL`/`UNLINK`, `EXISTS`, `TYPE`, the expiry family
//! (`EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT` with `NX|XX|GT|LT`; `TTL`, `PTTL`,
//! `EXPIRETIME`, `PEXPIRETIME`, `PERSIST`), `KEYS`, `SCAN` (`MATCH`, `COUNT`, `TYPE`),
//! `RANDOMKEY`, `RENAME`/`RENAMENX`, `DBSIZE`, `FLUSHDB`/`FLUSHALL`. Semantics and error texts
//! follow Redis 7.0 (`expire.c`, `db.c`).
//!
//! `SCAN` cursors are positions in the database's hash order ([`super::keyspace`]): a key
//! present from the first call to the last is returned exactly once (Redis promises at least
//! once); the cursor values and the order differ from Redis's, as clients expect. Like Redis,
//! `COUNT` is how many keys are looked at, not how many are returned, and `MATCH`/`TYPE` filter
//! after. `UNLINK` is `DEL` (freeing is cheap here).

use bytes::Bytes;
use rand::Rng;

use super::commands::{Ctx, SYNTAX, int_arg, is};
use super::glob;
use super::keyspace::{DATABASES, Key, Keyspace};

pub fn del(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let mut removed = 0;
    for arg in &a[1..] {
        let key = c.key(arg);
        if ks.lookup(c.db(), &key, c.now).is_some() {
            ks.remove(c.db(), &key);
            removed += 1;
        }
    }
    c.out.int(removed);
}

pub fn exists(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let mut n = 0;
    for arg in &a[1..] {
        if ks.lookup(c.db(), &c.key(arg), c.now).is_some() {
            n += 1;
        }
    }
    c.out.int(n);
}

pub fn type_(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let name = ks.lookup(c.db(), &c.key(&a[1]), c.now).map_or("none", |e| e.value.type_name());
    c.out.simple(name);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    Seconds,
    Millis,
}

pub fn expire(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    expire_generic(c, ks, a, false, Unit::Seconds, "expire");
}

pub fn pexpire(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    expire_generic(c, ks, a, false, Unit::Millis, "pexpire");
}

pub fn expireat(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    expire_generic(c, ks, a, true, Unit::Seconds, "expireat");
}

pub fn pexpireat(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    expire_generic(c, ks, a, true, Unit::Millis, "pexpireat");
}

/// Redis's `expireGenericCommand`: options, then the time, then the key and the conditions.
fn expire_generic(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes], absolute: bool, unit: Unit, name: &str) {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &a[3..] {
        if is(opt, "nx") {
            nx = true;
        } else if is(opt, "xx") {
            xx = true;
        } else if is(opt, "gt") {
            gt = true;
        } else if is(opt, "lt") {
            lt = true;
        } else {
            let mut message = b"ERR Unsupported option ".to_vec();
            message.extend_from_slice(opt);
            c.out.error(message);
            return;
        }
    }
    if nx && (xx || gt || lt) {
        c.out.error("ERR NX and XX, GT or LT options at the same time are not compatible");
        return;
    }
    if gt && lt {
        c.out.error("ERR GT and LT options at the same time are not compatible");
        return;
    }
    let Some(mut when) = int_arg(c, &a[2]) else { return };
    let invalid = format!("ERR invalid expire time in '{name}' command");
    if unit == Unit::Seconds {
        let Some(ms) = when.checked_mul(1000) else {
            c.out.error(invalid);
            return;
        };
        when = ms;
    }
    if !absolute {
        let Some(at) = when.checked_add(c.now as i64) else {
            c.out.error(invalid);
            return;
        };
        when = at;
    }
    let key = c.key(&a[1]);
    let Some(entry) = ks.lookup(c.db(), &key, c.now) else {
        c.out.int(0);
        return;
    };
    let current = (entry.expires_at != 0).then_some(entry.expires_at as i64);
    let refused = (nx && current.is_some())
        || (xx && current.is_none())
        || (gt && current.is_none_or(|cur| when <= cur))
        || (lt && current.is_some_and(|cur| when >= cur));
    if refused {
        c.out.int(0);
        return;
    }
    if when <= c.now as i64 {
        ks.remove(c.db(), &key);
    } else {
        ks.set_expiry(c.db(), &key, when as u64);
    }
    c.out.int(1);
}

/// `TTL` and friends: -2 no key, -1 no expiry, else the time (relative or absolute, s rounded or
/// ms).
fn ttl_generic(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes], millis: bool, absolute: bool) {
    let Some(entry) = ks.lookup(c.db(), &c.key(&a[1]), c.now) else {
        c.out.int(-2);
        return;
    };
    if entry.expires_at == 0 {
        c.out.int(-1);
        return;
    }
    let t = if absolute { entry.expires_at } else { entry.expires_at.saturating_sub(c.now) } as i64;
    c.out.int(if millis { t } else { (t + 500) / 1000 });
}

pub fn ttl(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    ttl_generic(c, ks, a, false, false);
}

pub fn pttl(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    ttl_generic(c, ks, a, true, false);
}

pub fn expiretime(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    ttl_generic(c, ks, a, false, true);
}

pub fn pexpiretime(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    ttl_generic(c, ks, a, true, true);
}

pub fn persist(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let key = c.key(&a[1]);
    let has_ttl = ks.lookup(c.db(), &key, c.now).is_some_and(|e| e.expires_at != 0);
    if has_ttl {
        ks.set_expiry(c.db(), &key, 0);
    }
    c.out.int(i64::from(has_ttl));
}

pub fn keys(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let pattern = &a[1];
    let all = pattern.as_ref() == b"*";
    let found: Vec<Bytes> = ks.dbs[c.db()]
        .map
        .iter()
        .filter(|(k, e)| !e.is_expired(c.now) && (all || glob::matches(pattern, k.bytes(), false)))
        .map(|(k, _)| k.bytes().clone())
        .collect();
    c.out.array(found.len());
    for key in found {
        c.out.bulk(key);
    }
}

pub fn scan(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    let cursor = match std::str::from_utf8(&a[1]).ok().filter(|s| s.bytes().all(|b| b.is_ascii_digit())) {
        Some(s) if !s.is_empty() => s.parse::<u64>().ok(),
        _ => None,
    };
    let Some(cursor) = cursor else {
        c.out.error("ERR invalid cursor");
        return;
    };
    let (mut count, mut pattern, mut type_name): (i64, Option<&Bytes>, Option<&Bytes>) = (10, None, None);
    let mut i = 2;
    while i < a.len() {
        let has_value = i + 1 < a.len();
        if is(&a[i], "count") && has_value {
            let Some(n) = int_arg(c, &a[i + 1]) else { return };
            if n < 1 {
                c.out.error(SYNTAX);
                return;
            }
            count = n;
        } else if is(&a[i], "match") && has_value {
            pattern = Some(&a[i + 1]);
        } else if is(&a[i], "type") && has_value {
            type_name = Some(&a[i + 1]);
        } else {
            c.out.error(SYNTAX);
            return;
        }
        i += 2;
    }
    let pattern = pattern.filter(|p| p.as_ref() != b"*");
    let db = &ks.dbs[c.db()];
    let mut looked_at = Vec::new();
    let mut next = 0;
    let mut iter = db.map.range(Key::at(cursor)..).peekable();
    while let Some((key, entry)) = iter.next() {
        looked_at.push((key, entry));
        let last = looked_at.len() as i64 >= count;
        // Never split keys of one hash position across calls: the cursor is a position.
        let same_position_follows = iter.peek().is_some_and(|(k, _)| k.position() == key.position());
        if last && !same_position_follows {
            if iter.peek().is_some() {
                next = key.position() + 1;
            }
            break;
        }
    }
    let found: Vec<Bytes> = looked_at
        .into_iter()
        .filter(|(k, e)| {
            !e.is_expired(c.now)
                && pattern.is_none_or(|p| glob::matches(p, k.bytes(), false))
                && type_name.is_none_or(|t| t.eq_ignore_ascii_case(e.value.type_name().as_bytes()))
        })
        .map(|(k, _)| k.bytes().clone())
        .collect();
    c.out.array(2);
    c.out.bulk(next.to_string());
    c.out.array(found.len());
    for key in found {
        c.out.bulk(key);
    }
}

pub fn randomkey(c: &mut Ctx<'_>, ks: &mut Keyspace, _: &[Bytes]) {
    let db = c.db();
    // A random position, then the first live key at or after it (wrapping round).
    for _ in 0..100 {
        let at = rand::thread_rng().gen_range(0..1u64 << 63);
        let map = &ks.dbs[db].map;
        let Some(key) = map.range(Key::at(at)..).next().or_else(|| map.iter().next()).map(|(k, _)| k.clone()) else {
            break;
        };
        if ks.lookup(db, &key, c.now).is_some() {
            c.out.bulk(key.bytes());
            return;
        }
    }
    c.out.null();
}

pub fn rename(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    rename_generic(c, ks, a, false);
}

pub fn renamenx(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    rename_generic(c, ks, a, true);
}

fn rename_generic(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes], nx: bool) {
    let (from, to) = (c.key(&a[1]), c.key(&a[2]));
    if ks.lookup(c.db(), &from, c.now).is_none() {
        c.out.error("ERR no such key");
        return;
    }
    if from == to {
        if nx {
            c.out.int(0)
        } else {
            c.out.ok()
        }
        return;
    }
    if ks.lookup(c.db(), &to, c.now).is_some() && nx {
        c.out.int(0);
        return;
    }
    if let Some(entry) = ks.remove(c.db(), &from) {
        ks.insert(c.db(), Key::owned(&a[2]), entry.value, entry.expires_at);
    }
    if nx { c.out.int(1) } else { c.out.ok() }
}

pub fn dbsize(c: &mut Ctx<'_>, ks: &mut Keyspace, _: &[Bytes]) {
    c.out.int(ks.dbs[c.db()].map.len() as i64);
}

/// `ASYNC`/`SYNC` are accepted (both free at once); anything else is a syntax error.
fn flush_flags_ok(c: &mut Ctx<'_>, a: &[Bytes]) -> bool {
    let ok = match a.len() {
        1 => true,
        2 => is(&a[1], "async") || is(&a[1], "sync"),
        _ => false,
    };
    if !ok {
        c.out.error(SYNTAX);
    }
    ok
}

pub fn flushdb(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    if flush_flags_ok(c, a) {
        c.trash.push(ks.clear(c.db()));
        c.out.ok();
    }
}

pub fn flushall(c: &mut Ctx<'_>, ks: &mut Keyspace, a: &[Bytes]) {
    if flush_flags_ok(c, a) {
        for db in 0..DATABASES {
            c.trash.push(ks.clear(db));
        }
        c.out.ok();
    }
}
