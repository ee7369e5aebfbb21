//! A bounded cache of one engine's decisions, keyed by the exact request body.
//!
//! A Cedar decision is a pure function of the policy set, its entities and the request (its
//! entities and context included): two byte-identical `POST /api/v1/decide` bodies under the same
//! engine get the same answer. Agents ask the same question again and again (a loop checking
//! before every tool call), so the engine remembers answers by body and skips parsing and
//! evaluation for a repeat. The cache belongs to the engine: an activation swaps the engine and
//! with it the cache, so an answer never outlives the set that gave it. Every decision still gets
//! its own id and goes to the log; only the evaluation is reused.
//!
//! Bounded memory: 16 shards, each with two generations of at most `capacity / 16` entries; when
//! the current generation is full it becomes the previous one (and the older one is dropped), and
//! a hit in the previous generation is carried forward. Bodies over [`MAX_KEY`] bytes are not
//! cached. Only decisions are cached, never errors.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;

use super::engine::{EntityRef, Outcome};

/// The longest body that is cached.
pub const MAX_KEY: usize = 8 * 1024;
const SHARDS: usize = 16;

/// What a repeat of a request needs: who asked what (for the log) and the answer.
#[derive(Debug)]
pub struct Cached {
    pub principal: EntityRef,
    pub action: EntityRef,
    pub resource: EntityRef,
    pub outcome: Outcome,
}

#[derive(Default)]
struct Shard {
    current: HashMap<Bytes, Arc<Cached>>,
    previous: HashMap<Bytes, Arc<Cached>>,
}

/// The cache of one engine; `capacity` 0 disables it.
pub struct DecisionCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
    hasher: RandomState,
}

impl DecisionCache {
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS);
        let shards = if capacity == 0 { Vec::new() } else { (0..SHARDS).map(|_| Mutex::default()).collect() };
        DecisionCache { shards, per_shard, hasher: RandomState::new() }
    }

    fn shard(&self, body: &[u8]) -> Option<&Mutex<Shard>> {
        if self.shards.is_empty() || body.len() > MAX_KEY {
            return None;
        }
        let index = (self.hasher.hash_one(body) as usize) % SHARDS;
        self.shards.get(index)
    }

    /// The remembered answer to `body`, if any.
    pub fn get(&self, body: &[u8]) -> Option<Arc<Cached>> {
        let mut shard = self.shard(body)?.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(hit) = shard.current.get(body) {
            return Some(hit.clone());
        }
        let (key, hit) = shard.previous.remove_entry(body)?;
        shard.insert(key, hit.clone(), self.per_shard);
        Some(hit)
    }

    /// Remembers the answer to `body`.
    pub fn put(&self, body: &Bytes, cached: Cached) {
        if let Some(shard) = self.shard(body) {
            let mut shard = shard.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            shard.insert(body.clone(), Arc::new(cached), self.per_shard);
        }
    }
}

impl Shard {
    fn insert(&mut self, key: Bytes, value: Arc<Cached>, limit: usize) {
        if self.current.len() >= limit {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(id: &str) -> Cached {
        let r = |t: &str| EntityRef { type_name: t.into(), id: id.into() };
        Cached {
            principal: r("Acgs::Agent"),
            action: r("Acgs::Action"),
            resource: r("Acgs::Tool"),
            outcome: Outcome { allow: true, determining: vec!["p".into()], errors: vec![] },
        }
    }

    #[test]
    fn remembers_by_exact_body_within_its_bound() {
        let cache = DecisionCache::new(32);
        let a = Bytes::from_static(b"{\"a\":1}");
        cache.put(&a, cached("a"));
        assert_eq!(cache.get(b"{\"a\":1}").expect("hit").principal.id, "a");
        assert!(cache.get(b"{\"a\": 1}").is_none(), "another body is another key");
        for i in 0..10_000 {
            cache.put(&Bytes::from(format!("{i}")), cached("n"));
        }
        let entries: usize = cache
            .shards
            .iter()
            .map(|s| {
                let s = s.lock().expect("lock");
                s.current.len() + s.previous.len()
            })
            .sum();
        assert!(entries <= 2 * 32 + 2 * SHARDS, "{entries} entries for a capacity of 32");
        let off = DecisionCache::new(0);
        off.put(&a, cached("a"));
        assert!(off.get(&a).is_none());
        let long = Bytes::from(vec![b'x'; MAX_KEY + 1]);
        cache.put(&long, cached("l"));
        assert!(cache.get(&long).is_none());
    }
}
