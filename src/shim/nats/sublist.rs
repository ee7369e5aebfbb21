//! Subjects and the subscription index.
//!
//! A subject is a non-empty run of `.`-separated tokens; no token is empty or contains
//! whitespace. In a subscription a token that is exactly `*` matches any one token and a last
//! token that is exactly `>` matches one or more remaining tokens; a published subject has no
//! wildcards (the same rules as nats-server's `IsValidSubject` / `IsValidPublishSubject`).
//!
//! [`Sublist`] is a trie of tokens. Matching a published subject walks it once, collecting the
//! plain subscriptions and, separately, each queue group (subscriptions with the same pattern
//! and queue name), from which the caller picks one member.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

/// Subscription subjects may have at most this many tokens (bounds the trie's depth, and so
/// the recursion of insert and remove). Published subjects are not limited.
pub const MAX_SUBSCRIPTION_TOKENS: usize = 256;

fn token_ok(t: &[u8]) -> bool {
    !t.is_empty() && !t.iter().any(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'\x0c'))
}

/// A valid subscription subject (wildcards allowed, `>` only last, at most
/// [`MAX_SUBSCRIPTION_TOKENS`] tokens).
pub fn valid_subscription(subject: &[u8]) -> bool {
    if subject.is_empty() {
        return false;
    }
    let mut tokens = subject.split(|&b| b == b'.').peekable();
    let mut count = 0;
    while let Some(t) = tokens.next() {
        count += 1;
        if !token_ok(t) || count > MAX_SUBSCRIPTION_TOKENS || (t == b">" && tokens.peek().is_some()) {
            return false;
        }
    }
    true
}

/// A valid subject to publish to: no empty token, no whitespace, no wildcard token.
pub fn valid_publish(subject: &[u8]) -> bool {
    !subject.is_empty() && subject.split(|&b| b == b'.').all(|t| token_ok(t) && t != b"*" && t != b">")
}

/// A queue group name: one non-empty token without whitespace (dots are allowed, as in NATS).
pub fn valid_queue(queue: &[u8]) -> bool {
    token_ok(queue)
}

/// What the index stores: anything with a subject and an optional queue group.
pub trait Entry {
    fn subject(&self) -> &[u8];
    fn queue(&self) -> Option<&[u8]>;
}

/// The subscriptions a published subject reaches.
pub struct Matches<S> {
    pub plain: Vec<Arc<S>>,
    /// One list per queue group (same pattern and queue name); deliver to one member of each.
    pub groups: Vec<Vec<Arc<S>>>,
}

impl<S> Matches<S> {
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.groups.is_empty()
    }
}

struct Node<S> {
    next: Option<Box<Level<S>>>,
    plain: Vec<Arc<S>>,
    queues: HashMap<Bytes, Vec<Arc<S>>>,
}

impl<S> Default for Node<S> {
    fn default() -> Self {
        Node { next: None, plain: Vec::new(), queues: HashMap::new() }
    }
}

impl<S> Node<S> {
    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty() && self.next.as_ref().is_none_or(|l| l.is_empty())
    }

    fn collect(&self, out: &mut Matches<S>) {
        out.plain.extend(self.plain.iter().cloned());
        out.groups.extend(self.queues.values().filter(|g| !g.is_empty()).cloned());
    }
}

struct Level<S> {
    literal: HashMap<Bytes, Node<S>>,
    one: Option<Box<Node<S>>>,
    rest: Option<Box<Node<S>>>,
}

impl<S> Default for Level<S> {
    fn default() -> Self {
        Level { literal: HashMap::new(), one: None, rest: None }
    }
}

impl<S> Level<S> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty() && self.one.is_none() && self.rest.is_none()
    }

    fn node_mut(&mut self, token: &[u8]) -> &mut Node<S> {
        match token {
            b"*" => self.one.get_or_insert_with(Box::default),
            b">" => self.rest.get_or_insert_with(Box::default),
            literal => self.literal.entry(Bytes::copy_from_slice(literal)).or_default(),
        }
    }
}

/// The subscription index.
pub struct Sublist<S> {
    root: Level<S>,
    len: usize,
}

impl<S> Default for Sublist<S> {
    fn default() -> Self {
        Sublist { root: Level::default(), len: 0 }
    }
}

impl<S: Entry> Sublist<S> {
    /// How many subscriptions are stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `sub`; its subject must satisfy [`valid_subscription`].
    pub fn insert(&mut self, sub: Arc<S>) {
        let mut tokens = sub.subject().split(|&b| b == b'.');
        let Some(first) = tokens.next() else { return };
        let mut node = self.root.node_mut(first);
        for t in tokens {
            node = node.next.get_or_insert_with(Box::default).node_mut(t);
        }
        match sub.queue() {
            Some(q) => node.queues.entry(Bytes::copy_from_slice(q)).or_default().push(sub),
            None => node.plain.push(sub),
        }
        self.len += 1;
    }

    /// Removes this very subscription (by pointer); false if it was not there.
    pub fn remove(&mut self, sub: &Arc<S>) -> bool {
        let tokens: Vec<&[u8]> = sub.subject().split(|&b| b == b'.').collect();
        let removed = remove_in(&mut self.root, &tokens, sub);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// The subscriptions that `subject` (a published, literal subject) reaches.
    pub fn matches(&self, subject: &[u8]) -> Matches<S> {
        let tokens: Vec<&[u8]> = subject.split(|&b| b == b'.').collect();
        let mut out = Matches { plain: Vec::new(), groups: Vec::new() };
        // Depth-first with an explicit stack: (level, index of the token it is matched against).
        let mut stack: Vec<(&Level<S>, usize)> = vec![(&self.root, 0)];
        while let Some((level, i)) = stack.pop() {
            let Some(token) = tokens.get(i) else { continue };
            let last = i + 1 == tokens.len();
            if let Some(rest) = &level.rest {
                rest.collect(&mut out);
            }
            for node in [level.one.as_deref(), level.literal.get(*token)].into_iter().flatten() {
                if last {
                    node.collect(&mut out);
                } else if let Some(next) = &node.next {
                    stack.push((next, i + 1));
                }
            }
        }
        out
    }
}

/// Removes `sub` under `level` along `tokens`, pruning nodes left empty. The depth is bounded by
/// [`MAX_SUBSCRIPTION_TOKENS`].
fn remove_in<S>(level: &mut Level<S>, tokens: &[&[u8]], sub: &Arc<S>) -> bool {
    let Some((token, rest)) = tokens.split_first() else { return false };
    let node = match *token {
        b"*" => level.one.as_deref_mut(),
        b">" => level.rest.as_deref_mut(),
        literal => level.literal.get_mut(literal),
    };
    let Some(node) = node else { return false };
    let removed = if rest.is_empty() {
        let before = node.plain.len();
        node.plain.retain(|s| !Arc::ptr_eq(s, sub));
        let mut removed = node.plain.len() != before;
        if !removed {
            node.queues.retain(|_, members| {
                let before = members.len();
                members.retain(|s| !Arc::ptr_eq(s, sub));
                removed |= members.len() != before;
                !members.is_empty()
            });
        }
        removed
    } else {
        match node.next.as_deref_mut() {
            Some(next) => {
                let removed = remove_in(next, rest, sub);
                if next.is_empty() {
                    node.next = None;
                }
                removed
            }
            None => false,
        }
    };
    if node.is_empty() {
        match *token {
            b"*" => level.one = None,
            b">" => level.rest = None,
            literal => {
                level.literal.remove(literal);
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sub {
        subject: Vec<u8>,
        queue: Option<Vec<u8>>,
        name: &'static str,
    }

    impl Entry for Sub {
        fn subject(&self) -> &[u8] {
            &self.subject
        }
        fn queue(&self) -> Option<&[u8]> {
            self.queue.as_deref()
        }
    }

    fn sub(subject: &str, queue: Option<&str>, name: &'static str) -> Arc<Sub> {
        Arc::new(Sub { subject: subject.into(), queue: queue.map(Into::into), name })
    }

    fn names(m: &Matches<Sub>) -> Vec<&'static str> {
        let mut v: Vec<_> = m.plain.iter().map(|s| s.name).collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn validates_subjects_like_nats_server() {
        for ok in ["foo", "foo.bar", "foo.*", "foo.>", ">", "*", "*.*.>", "a-b_c.$SYS", "foo*.bar", "f>o"] {
            assert!(valid_subscription(ok.as_bytes()), "{ok}");
        }
        for bad in ["", ".", "foo.", ".foo", "foo..bar", "foo.>.bar", ">.foo", "foo bar", "foo\tbar", "a.\r"] {
            assert!(!valid_subscription(bad.as_bytes()), "{bad:?}");
        }
        assert!(valid_publish(b"foo.bar") && valid_publish(b"foo*.bar>"));
        for bad in ["foo.*", "foo.>", ">", "*", "foo..bar", "", "foo.", "a b"] {
            assert!(!valid_publish(bad.as_bytes()), "{bad:?}");
        }
        let deep = vec!["a"; MAX_SUBSCRIPTION_TOKENS + 1].join(".");
        assert!(!valid_subscription(deep.as_bytes()));
        assert!(valid_subscription(vec!["a"; MAX_SUBSCRIPTION_TOKENS].join(".").as_bytes()));
        assert!(valid_publish(deep.as_bytes()));
    }

    #[test]
    fn matches_wildcards() {
        let mut list = Sublist::default();
        for (subject, name) in [
            ("foo.bar", "exact"),
            ("foo.*", "star"),
            ("foo.>", "rest"),
            (">", "all"),
            ("*.bar", "star-bar"),
            ("foo", "foo"),
            ("foo.bar.baz", "deep"),
            ("foo.*.baz", "mid-star"),
        ] {
            list.insert(sub(subject, None, name));
        }
        assert_eq!(names(&list.matches(b"foo.bar")), ["all", "exact", "rest", "star", "star-bar"]);
        assert_eq!(names(&list.matches(b"foo")), ["all", "foo"]);
        assert_eq!(names(&list.matches(b"foo.bar.baz")), ["all", "deep", "mid-star", "rest"]);
        assert_eq!(names(&list.matches(b"bar")), ["all"]);
        assert_eq!(names(&list.matches(b"x.bar")), ["all", "star-bar"]);
        assert_eq!(names(&list.matches(b"foo.x.y.z")), ["all", "rest"]);
        // `*` and `>` published literally are just text here (publishers are refused earlier).
        assert_eq!(list.len(), 8);
    }

    #[test]
    fn groups_queue_subscribers_by_pattern_and_name() {
        let mut list = Sublist::default();
        let a = sub("jobs.*", Some("workers"), "a");
        let b = sub("jobs.*", Some("workers"), "b");
        let c = sub("jobs.*", Some("auditors"), "c");
        let d = sub("jobs.run", Some("workers"), "d");
        for s in [&a, &b, &c, &d] {
            list.insert(s.clone());
        }
        let m = list.matches(b"jobs.run");
        assert!(m.plain.is_empty());
        let mut groups: Vec<Vec<&str>> =
            m.groups.iter().map(|g| g.iter().map(|s| s.name).collect::<Vec<_>>()).collect();
        groups.sort();
        assert_eq!(groups, vec![vec!["a", "b"], vec!["c"], vec!["d"]]);
    }

    #[test]
    fn removes_by_identity_and_prunes() {
        let mut list = Sublist::default();
        let one = sub("a.b.c", None, "one");
        let two = sub("a.b.c", None, "two");
        let q = sub("a.*.>", Some("q"), "q");
        for s in [&one, &two, &q] {
            list.insert(s.clone());
        }
        assert!(list.remove(&one));
        assert!(!list.remove(&one));
        assert_eq!(names(&list.matches(b"a.b.c")), ["two"]);
        assert!(list.remove(&two));
        assert!(list.remove(&q));
        assert!(list.is_empty());
        assert!(list.root.is_empty(), "every node pruned");
        assert!(list.matches(b"a.b.c").is_empty());
    }
}
