//! Glob-style matching exactly as Redis does it (`stringmatchlen` in `util.c`), for `KEYS`,
//! `SCAN … MATCH` and `CONFIG GET`: `*` any run of bytes, `?` one byte, `[abc]`, `[^abc]`,
//! `[a-z]` (ends in either order), `\x` a literal `x`. Quirks kept: an unterminated `[` ends at
//! the pattern's end; a `\` at the very end of a pattern matches a `\`; a pattern made of `*`
//! alone does not match the empty string here (callers treat a lone `*` as "everything" before
//! asking, as Redis does).
//!
//! Matching is on bytes. Each `*` tries every split, but once the rest of the pattern has failed
//! against every suffix it gives up for the whole match (Redis's `skipLongerMatches`), which
//! keeps the work polynomial; nesting is bounded (more `*` than [`MAX_NESTING`] fails to match)
//! so a hostile pattern cannot exhaust the stack.

/// The deepest `*` nesting tried.
pub const MAX_NESTING: usize = 1000;

/// Whether `string` matches `pattern`.
pub fn matches(pattern: &[u8], string: &[u8], nocase: bool) -> bool {
    let mut skip_longer = false;
    match_from(pattern, string, nocase, &mut skip_longer, 0)
}

fn fold(b: u8, nocase: bool) -> u8 {
    if nocase { b.to_ascii_lowercase() } else { b }
}

fn match_from(mut p: &[u8], mut s: &[u8], nocase: bool, skip_longer: &mut bool, nesting: usize) -> bool {
    if nesting > MAX_NESTING {
        return false;
    }
    while !p.is_empty() && !s.is_empty() {
        match p[0] {
            b'*' => {
                while p.len() > 1 && p[1] == b'*' {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if match_from(&p[1..], s, nocase, skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s = &s[1..];
                }
                *skip_longer = true;
                return false;
            }
            b'?' => s = &s[1..],
            b'[' => {
                p = &p[1..];
                let negate = p.first() == Some(&b'^');
                if negate {
                    p = &p[1..];
                }
                let c = fold(s[0], nocase);
                let mut matched = false;
                loop {
                    if p.first() == Some(&b'\\') && p.len() >= 2 {
                        p = &p[1..];
                        if fold(p[0], nocase) == c {
                            matched = true;
                        }
                    } else if p.is_empty() || p[0] == b']' {
                        break;
                    } else if p.len() >= 3 && p[1] == b'-' {
                        let (mut start, mut end) = (fold(p[0], nocase), fold(p[2], nocase));
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        p = &p[2..];
                        if c >= start && c <= end {
                            matched = true;
                        }
                    } else if fold(p[0], nocase) == c {
                        matched = true;
                    }
                    p = &p[1..];
                }
                if negate {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s = &s[1..];
                // Redis's loop steps past the `]` below; an unterminated class has nothing left.
                if p.is_empty() {
                    return s.is_empty();
                }
            }
            b'\\' if p.len() >= 2 => {
                p = &p[1..];
                if fold(p[0], nocase) != fold(s[0], nocase) {
                    return false;
                }
                s = &s[1..];
            }
            other => {
                if fold(other, nocase) != fold(s[0], nocase) {
                    return false;
                }
                s = &s[1..];
            }
        }
        p = &p[1..];
        if s.is_empty() {
            while p.first() == Some(&b'*') {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}

#[cfg(test)]
mod tests {
    use super::matches;

    fn m(p: &str, s: &str) -> bool {
        matches(p.as_bytes(), s.as_bytes(), false)
    }

    #[test]
    fn matches_like_redis() {
        for (p, s) in [
            ("*", "anything"),
            ("h?llo", "hello"),
            ("h*llo", "heeeello"),
            ("h*llo", "hllo"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("h[b-a]llo", "hbllo"),
            ("acgs:revoked:*", "acgs:revoked:abc"),
            ("a\\*b", "a*b"),
            ("*:*:*", "a:b:c"),
            ("a*", "a"),
            ("a**", "a"),
            ("[\\]]", "]"),
            ("x\\", "x\\"),
        ] {
            assert!(m(p, s), "{p:?} should match {s:?}");
        }
        for (p, s) in [
            ("h?llo", "hllo"),
            ("h[^e]llo", "hello"),
            ("h[a-b]llo", "hcllo"),
            ("a\\*b", "axb"),
            ("abc", "ab"),
            ("ab", "abc"),
            ("*", ""),
            ("a*b", "acbd"),
            ("", "a"),
        ] {
            assert!(!m(p, s), "{p:?} should not match {s:?}");
        }
        assert!(matches(b"SAVE", b"save", true));
        assert!(matches(b"app*", b"APPENDONLY", true));
        assert!(!matches(b"SAVE", b"save", false));
    }

    #[test]
    fn unterminated_classes_end_at_the_pattern_end() {
        assert!(m("a[bc", "ab"));
        assert!(!m("a[bc", "abx"));
        assert!(m("a[", "a") == matches(b"a[", b"a", false));
    }

    #[test]
    fn hostile_patterns_stay_cheap() {
        let pattern = "*a".repeat(5000) + "b";
        let string = "a".repeat(10_000);
        let started = std::time::Instant::now();
        assert!(!m(&pattern, &string));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let pattern = "a*".repeat(30) + "b";
        assert!(!m(&pattern, &"a".repeat(60)));
    }
}
