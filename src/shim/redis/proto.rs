//! RESP as the shim reads and writes it: the request decoder (a `tokio_util` codec) and the
//! reply encoder for RESP2 and RESP3.
//!
//! # Requests
//!
//! A request is either a multibulk (`*<n>\r\n` then `n` times `$<len>\r\n<bytes>\r\n`, what
//! every client library sends) or an inline command (one line of words, what redis-cli sends for
//! some commands and redis-benchmark for `PING_INLINE`, and what a person types over telnet),
//! split as Redis splits it (`sdssplitargs`: blanks separate words, `"…"` with `\n \r \t \b \a \\
//! \"` and `\xHH` escapes, `'…'` with `\'`). Both may be pipelined: the decoder yields one request
//! at a time from whatever has been buffered. `*0` and empty lines are skipped, as in Redis.
//!
//! The decoder never buffers more than the limits allow and never allocates from an announced
//! length before checking it: a multibulk count over `max_multibulk_len`, a bulk length over
//! `max_bulk_len`, an inline line or a length line longer than `max_inline_len`, or a request
//! whose bulks add up to more than `max_query_buffer` is an error before its bytes are read; the
//! argument vector grows as arguments arrive, not from the announced count. Every error has the
//! text Redis answers with after `-ERR ` ([`ProtoError::wire`]; `Protocol error: invalid bulk
//! length`, …), and every one closes the connection. Like Redis, the decoder does not check the
//! two bytes after a bulk's data or after a length line's `\r` (it skips them).
//!
//! One difference: an inline request that contains a control character (a byte below 0x20 other
//! than tab and the line end, or 0x7f) is a protocol error here, so binary garbage (a TLS
//! handshake, random bytes) closes the connection at once instead of being answered as an unknown
//! command. Bytes above 0x7f (UTF-8 text) are accepted.
//!
//! # Replies
//!
//! [`Reply`] appends replies to a connection's output buffer in the protocol the client chose
//! with `HELLO`: nulls are `$-1`/`*-1` in RESP2 and `_` in RESP3, maps and sets are flat arrays
//! in RESP2, verbatim strings (`INFO`, `CLIENT INFO`) are bulk strings in RESP2. Error texts have
//! any CR or LF replaced by spaces, as Redis does, so an argument echoed in an error cannot
//! break the framing.

use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// The decoder's limits (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bulk_len: usize,
    pub max_multibulk_len: usize,
    pub max_inline_len: usize,
    pub max_query_buffer: usize,
}

/// Why the decoder stopped. Every variant closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("invalid multibulk length")]
    MultibulkLength,
    #[error("invalid bulk length")]
    BulkLength,
    #[error("expected '$', got {0:?}")]
    ExpectedDollar(char),
    #[error("multibulk count line longer than {0} bytes")]
    MultibulkCountLine(usize),
    #[error("bulk length line longer than {0} bytes")]
    BulkCountLine(usize),
    #[error("inline request longer than {0} bytes")]
    InlineTooBig(usize),
    #[error("unbalanced quotes in an inline request")]
    UnbalancedQuotes,
    #[error("control byte {0:#04x} in an inline request")]
    ControlByte(u8),
    #[error("request larger than the query buffer limit ({0} bytes)")]
    QueryBuffer(usize),
    #[error("reading from the client")]
    Io(#[from] std::io::Error),
}

impl ProtoError {
    /// The error line's text after `-ERR ` (none for I/O errors: there is nobody to tell).
    pub fn wire(&self) -> Option<String> {
        let text = match self {
            ProtoError::MultibulkLength => "invalid multibulk length".to_string(),
            ProtoError::BulkLength => "invalid bulk length".to_string(),
            ProtoError::ExpectedDollar(c) => format!("expected '$', got '{c}'"),
            ProtoError::MultibulkCountLine(_) => "too big mbulk count string".to_string(),
            ProtoError::BulkCountLine(_) => "too big bulk count string".to_string(),
            ProtoError::InlineTooBig(_) => "too big inline request".to_string(),
            ProtoError::UnbalancedQuotes => "unbalanced quotes in request".to_string(),
            ProtoError::ControlByte(_) => "unexpected control character in inline request".to_string(),
            ProtoError::QueryBuffer(_) => "request exceeds the query buffer limit".to_string(),
            ProtoError::Io(_) => return None,
        };
        Some(format!("Protocol error: {text}"))
    }
}

/// A multibulk whose count line has been read, waiting for its bulks.
#[derive(Debug)]
struct Pending {
    remaining: usize,
    args: Vec<Bytes>,
    /// The length of the bulk whose `$` line has been read, if any.
    bulk: Option<usize>,
    /// Bytes of bulk data accepted so far in this request.
    total: usize,
}

/// The request decoder for one connection: yields each request as its arguments.
#[derive(Debug)]
pub struct RequestCodec {
    limits: Limits,
    pending: Option<Pending>,
    /// How far the current (incomplete) line has been searched.
    scanned: usize,
}

/// The most argument slots reserved ahead of their arrival.
const MAX_PREALLOCATED_ARGS: usize = 1024;
/// The most bytes reserved ahead of their arrival for one bulk.
const MAX_PREALLOCATED_BULK: usize = 1024 * 1024;

impl RequestCodec {
    pub fn new(limits: Limits) -> Self {
        RequestCodec { limits, pending: None, scanned: 0 }
    }

    /// Whether part of a request has been consumed from the buffer and the rest is awaited.
    pub fn in_request(&self) -> bool {
        self.pending.is_some()
    }

    /// Finds the `\r` that ends a length line starting at `src[0]`; `Ok(None)` until both it and
    /// the byte after it are buffered.
    fn length_line(&mut self, src: &[u8]) -> Result<Option<usize>, ProtoError> {
        let too_long = |limit| {
            if src.first() == Some(&b'*') {
                ProtoError::MultibulkCountLine(limit)
            } else {
                ProtoError::BulkCountLine(limit)
            }
        };
        let start = self.scanned.min(src.len());
        match src[start..].iter().position(|&b| b == b'\r') {
            Some(offset) if start + offset + 1 < src.len() => {
                self.scanned = 0;
                let end = start + offset;
                if end > self.limits.max_inline_len {
                    return Err(too_long(self.limits.max_inline_len));
                }
                Ok(Some(end))
            }
            Some(offset) => {
                self.scanned = start + offset;
                Ok(None)
            }
            None => {
                self.scanned = src.len();
                if src.len() > self.limits.max_inline_len {
                    return Err(too_long(self.limits.max_inline_len));
                }
                Ok(None)
            }
        }
    }

    fn decode_inline(&mut self, src: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtoError> {
        let start = self.scanned.min(src.len());
        let found = src[start..].iter().position(|&b| b == b'\n');
        let end = found.map_or(src.len(), |offset| start + offset);
        // Control bytes are refused as soon as they arrive (tab and CR separate words).
        if let Some(&b) = src[start..end].iter().find(|&&b| (b < 0x20 && b != b'\t' && b != b'\r') || b == 0x7f) {
            return Err(ProtoError::ControlByte(b));
        }
        let Some(_) = found else {
            self.scanned = src.len();
            if src.len() > self.limits.max_inline_len {
                return Err(ProtoError::InlineTooBig(self.limits.max_inline_len));
            }
            return Ok(None);
        };
        self.scanned = 0;
        if end > self.limits.max_inline_len {
            return Err(ProtoError::InlineTooBig(self.limits.max_inline_len));
        }
        let line = src.split_to(end + 1);
        let mut line = &line[..end];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        split_args(line).map(Some).ok_or(ProtoError::UnbalancedQuotes)
    }
}

impl Decoder for RequestCodec {
    type Item = Vec<Bytes>;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Vec<Bytes>>, ProtoError> {
        loop {
            if self.pending.is_none() {
                let Some(&first) = src.first() else { return Ok(None) };
                if first != b'*' {
                    match self.decode_inline(src)? {
                        Some(args) if args.is_empty() => continue,
                        other => return Ok(other),
                    }
                }
                let Some(end) = self.length_line(src)? else { return Ok(None) };
                let count = parse_len(&src[1..end]).ok_or(ProtoError::MultibulkLength)?;
                let _ = src.split_to(end + 2);
                if count <= 0 {
                    continue; // `*0`, `*-1`: nothing to do, as in Redis.
                }
                let count = usize::try_from(count).map_err(|_| ProtoError::MultibulkLength)?;
                if count > self.limits.max_multibulk_len {
                    return Err(ProtoError::MultibulkLength);
                }
                let args = Vec::with_capacity(count.min(MAX_PREALLOCATED_ARGS));
                self.pending = Some(Pending { remaining: count, args, bulk: None, total: 0 });
            }
            let Some(pending) = self.pending.as_mut() else { continue };
            match pending.bulk {
                None => {
                    let Some(&first) = src.first() else { return Ok(None) };
                    if first != b'$' {
                        return Err(ProtoError::ExpectedDollar(char::from(first)));
                    }
                    let Some(end) = self.length_line(src)? else { return Ok(None) };
                    let Some(pending) = self.pending.as_mut() else { continue };
                    let len = parse_len(&src[1..end]).ok_or(ProtoError::BulkLength)?;
                    let len = usize::try_from(len).map_err(|_| ProtoError::BulkLength)?;
                    if len > self.limits.max_bulk_len {
                        return Err(ProtoError::BulkLength);
                    }
                    pending.total = pending.total.saturating_add(len).saturating_add(end + 2);
                    if pending.total > self.limits.max_query_buffer {
                        return Err(ProtoError::QueryBuffer(self.limits.max_query_buffer));
                    }
                    let _ = src.split_to(end + 2);
                    pending.bulk = Some(len);
                }
                Some(len) => {
                    if src.len() < len + 2 {
                        // Room for what is coming, but never more than a bounded step ahead.
                        let missing = len + 2 - src.len();
                        src.reserve(missing.min(MAX_PREALLOCATED_BULK));
                        return Ok(None);
                    }
                    let arg = src.split_to(len).freeze();
                    let _ = src.split_to(2);
                    pending.args.push(arg);
                    pending.bulk = None;
                    pending.remaining -= 1;
                    if pending.remaining == 0 {
                        let args = self.pending.take().map(|p| p.args).unwrap_or_default();
                        return Ok(Some(args));
                    }
                }
            }
        }
    }
}

/// A length as Redis's `string2ll` reads it: an optional `-`, then digits without a leading
/// zero (a lone `0` is fine), fitting an `i64`; no `+`, no spaces.
fn parse_len(s: &[u8]) -> Option<i64> {
    parse_i64(s)
}

/// A signed 64-bit integer in Redis's strict form (`string2ll`): what every integer argument
/// and every value `INCR` reads must be.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] => return (!negative).then_some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    if digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: i64 = 0;
    for &d in digits {
        let d = i64::from(d - b'0');
        n = n.checked_mul(10)?;
        n = if negative { n.checked_sub(d)? } else { n.checked_add(d)? };
    }
    Some(n)
}

/// Splits an inline request as Redis's `sdssplitargs` does; `None` for unbalanced quotes (or a
/// closing quote not followed by a blank). The line is read up to its first NUL, as in Redis.
pub fn split_args(line: &[u8]) -> Option<Vec<Bytes>> {
    let line = &line[..line.iter().position(|&b| b == 0).unwrap_or(line.len())];
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut current = Vec::new();
        let (mut in_double, mut in_single) = (false, false);
        loop {
            let c = at(i);
            if in_double {
                if c == b'\\' && at(i + 1) == b'x' && at(i + 2).is_ascii_hexdigit() && at(i + 3).is_ascii_hexdigit() {
                    current.push(hex(at(i + 2)) * 16 + hex(at(i + 3)));
                    i += 3;
                } else if c == b'\\' && at(i + 1) != 0 {
                    i += 1;
                    current.push(match at(i) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(i + 1) != 0 && !is_space(at(i + 1)) {
                        return None;
                    }
                    i += 1;
                    break;
                } else if c == 0 {
                    return None;
                } else {
                    current.push(c);
                }
            } else if in_single {
                if c == b'\\' && at(i + 1) == b'\'' {
                    i += 1;
                    current.push(b'\'');
                } else if c == b'\'' {
                    if at(i + 1) != 0 && !is_space(at(i + 1)) {
                        return None;
                    }
                    i += 1;
                    break;
                } else if c == 0 {
                    return None;
                } else {
                    current.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        if c != 0 {
                            i += 1;
                        }
                        break;
                    }
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    other => current.push(other),
                }
            }
            i += 1;
        }
        args.push(Bytes::from(current));
    }
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Appends replies to a connection's output in the client's protocol version (2 or 3).
pub struct Reply<'a> {
    buf: &'a mut BytesMut,
    resp3: bool,
    errors: u64,
}

impl<'a> Reply<'a> {
    pub fn new(buf: &'a mut BytesMut, resp: u8) -> Self {
        Reply { buf, resp3: resp >= 3, errors: 0 }
    }

    pub fn resp3(&self) -> bool {
        self.resp3
    }

    /// Switches the protocol for what follows (`HELLO` answers in the new one).
    pub fn set_resp(&mut self, resp: u8) {
        self.resp3 = resp >= 3;
    }

    /// How many error replies were written.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// How many bytes the output holds now.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn header(&mut self, kind: u8, n: u64) {
        self.buf.put_u8(kind);
        put_u64(self.buf, n);
        self.buf.put_slice(b"\r\n");
    }

    /// `+OK`
    pub fn ok(&mut self) {
        self.buf.put_slice(b"+OK\r\n");
    }

    /// A simple string (must not contain CR or LF).
    pub fn simple(&mut self, s: &str) {
        self.buf.put_u8(b'+');
        self.buf.put_slice(s.as_bytes());
        self.buf.put_slice(b"\r\n");
    }

    /// An error; `message` starts with its code (`ERR …`, `WRONGTYPE …`). CR and LF become spaces.
    pub fn error(&mut self, message: impl AsRef<[u8]>) {
        self.errors += 1;
        self.buf.put_u8(b'-');
        let message = message.as_ref();
        self.buf.reserve(message.len() + 2);
        for &b in message {
            self.buf.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        self.buf.put_slice(b"\r\n");
    }

    pub fn int(&mut self, n: i64) {
        self.buf.put_u8(b':');
        if n < 0 {
            self.buf.put_u8(b'-');
        }
        put_u64(self.buf, n.unsigned_abs());
        self.buf.put_slice(b"\r\n");
    }

    pub fn bulk(&mut self, data: impl AsRef<[u8]>) {
        let data = data.as_ref();
        self.buf.reserve(data.len() + 16);
        self.header(b'$', data.len() as u64);
        self.buf.put_slice(data);
        self.buf.put_slice(b"\r\n");
    }

    /// A bulk string, or null.
    pub fn bulk_or_null(&mut self, data: Option<impl AsRef<[u8]>>) {
        match data {
            Some(data) => self.bulk(data),
            None => self.null(),
        }
    }

    /// The null bulk string (`$-1` in RESP2).
    pub fn null(&mut self) {
        self.buf.put_slice(if self.resp3 { b"_\r\n" } else { b"$-1\r\n" });
    }

    /// The null array (`*-1` in RESP2).
    pub fn null_array(&mut self) {
        self.buf.put_slice(if self.resp3 { b"_\r\n" } else { b"*-1\r\n" });
    }

    pub fn array(&mut self, n: usize) {
        self.header(b'*', n as u64);
    }

    /// A map of `n` pairs (a flat array of `2n` elements in RESP2).
    pub fn map(&mut self, n: usize) {
        if self.resp3 { self.header(b'%', n as u64) } else { self.header(b'*', 2 * n as u64) }
    }

    /// A set of `n` elements (an array in RESP2).
    pub fn set(&mut self, n: usize) {
        if self.resp3 { self.header(b'~', n as u64) } else { self.header(b'*', n as u64) }
    }

    /// Text meant for people (`INFO`): a verbatim string in RESP3, a bulk string in RESP2.
    pub fn verbatim(&mut self, text: &str) {
        if self.resp3 {
            self.header(b'=', text.len() as u64 + 4);
            self.buf.put_slice(b"txt:");
            self.buf.put_slice(text.as_bytes());
            self.buf.put_slice(b"\r\n");
        } else {
            self.bulk(text);
        }
    }
}

fn put_u64(buf: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.put_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits { max_bulk_len: 100, max_multibulk_len: 8, max_inline_len: 64, max_query_buffer: 300 }
    }

    fn decode_all(input: &[u8]) -> Result<Vec<Vec<Bytes>>, ProtoError> {
        let mut codec = RequestCodec::new(limits());
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Some(args) = codec.decode(&mut buf)? {
            out.push(args);
        }
        Ok(out)
    }

    fn words(requests: &[Vec<Bytes>]) -> Vec<Vec<String>> {
        requests.iter().map(|r| r.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect()).collect()
    }

    #[test]
    fn decodes_multibulk_and_inline_requests_pipelined() {
        let input = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\nPING\r\n*0\r\n*-1\r\n\r\n  get   k \n\
            *1\r\n$4\r\nPINGxx*2\r\n$4\r\nECHO\r\n$2\r\n\r\n\r\n";
        let got = words(&decode_all(input).unwrap());
        assert_eq!(got, [vec!["SET", "k", ""], vec!["PING"], vec!["get", "k"], vec!["PING"], vec!["ECHO", "\r\n"]]);
    }

    #[test]
    fn waits_for_split_input_byte_by_byte() {
        let input = b"*2\r\n$4\r\nECHO\r\n$11\r\nhello world\r\nset a \"b c\"\r\n";
        let mut codec = RequestCodec::new(limits());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for &byte in input {
            buf.put_u8(byte);
            while let Some(args) = codec.decode(&mut buf).unwrap() {
                out.push(args);
            }
        }
        assert_eq!(words(&out), [vec!["ECHO", "hello world"], vec!["set", "a", "b c"]]);
        assert!(!codec.in_request() && buf.is_empty());
    }

    #[test]
    fn splits_inline_arguments_as_redis_does() {
        type Case<'a> = (&'a [u8], Option<&'a [&'a [u8]]>);
        let cases: &[Case<'_>] = &[
            (b"set \"a\\x41b\" 'c d'", Some(&[b"set", b"aAb", b"c d"])),
            (b"echo \"\\x4\"", Some(&[b"echo", b"x4"])),
            (b"echo \"\\n\\t\\q\"", Some(&[b"echo", b"\n\tq"])),
            (b"echo '\\''", Some(&[b"echo", b"'"])),
            (b"echo \"\"", Some(&[b"echo", b""])),
            (b"a\"b c\"", Some(&[b"ab c"])),
            (b"  \t ", Some(&[])),
            (b"get \"a", None),
            (b"\"a\"b", None),
            (b"'a'b", None),
            (b"get 'a", None),
        ];
        for (line, expected) in cases {
            let got = split_args(line);
            let expected = expected.map(|e| e.iter().map(|w| Bytes::copy_from_slice(w)).collect::<Vec<_>>());
            assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn refuses_bad_input_with_redis_errors() {
        let cases: &[(&[u8], &str)] = &[
            (b"*x\r\n", "Protocol error: invalid multibulk length"),
            (b"*01\r\n", "Protocol error: invalid multibulk length"),
            (b"*3000000000\r\n", "Protocol error: invalid multibulk length"),
            (b"*9\r\n", "Protocol error: invalid multibulk length"),
            (b"*2\r\n$-1\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$+4\r\nPING\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\n$101\r\n", "Protocol error: invalid bulk length"),
            (b"*1\r\nx", "Protocol error: expected '$', got 'x'"),
            (b"get \"a\r\n", "Protocol error: unbalanced quotes in request"),
            (b"\x16\x03\x01\x02\x00", "Protocol error: unexpected control character in inline request"),
            (b"PING\x00\r\n", "Protocol error: unexpected control character in inline request"),
        ];
        for (input, expected) in cases {
            let err = decode_all(input).expect_err(&String::from_utf8_lossy(input));
            assert_eq!(err.wire().as_deref(), Some(*expected), "{:?}: {err}", String::from_utf8_lossy(input));
        }
        // Bulks that fit one by one but not together.
        let mut request = b"*4\r\n".to_vec();
        for _ in 0..3 {
            request.extend_from_slice(b"$100\r\n");
            request.extend_from_slice(&[b'a'; 100]);
            request.extend_from_slice(b"\r\n");
        }
        let err = decode_all(&request).unwrap_err();
        assert_eq!(err.wire().as_deref(), Some("Protocol error: request exceeds the query buffer limit"));
    }

    #[test]
    fn bounds_lines_before_their_end_arrives() {
        let long = vec![b'a'; 65];
        let err = decode_all(&long).unwrap_err();
        assert_eq!(err.wire().as_deref(), Some("Protocol error: too big inline request"));
        let mut count = b"*".to_vec();
        count.extend(vec![b'1'; 70]);
        let err = decode_all(&count).unwrap_err();
        assert_eq!(err.wire().as_deref(), Some("Protocol error: too big mbulk count string"));
        // Within the limits, a partial request is simply awaited.
        assert!(decode_all(b"*2\r\n$4\r\nECHO\r\n$50\r\nabc").unwrap().is_empty());
    }

    #[test]
    fn a_huge_announced_bulk_reserves_only_a_bounded_step() {
        let mut codec = RequestCodec::new(Limits { max_bulk_len: 512 << 20, max_query_buffer: 1 << 30, ..limits() });
        let mut buf = BytesMut::from(&b"*1\r\n$536870912\r\n"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(codec.in_request());
        assert!(buf.capacity() <= 2 * MAX_PREALLOCATED_BULK, "{}", buf.capacity());
    }

    #[test]
    fn parses_integers_strictly() {
        for (s, n) in [("0", Some(0)), ("-1", Some(-1)), ("9223372036854775807", Some(i64::MAX))] {
            assert_eq!(parse_i64(s.as_bytes()), n);
        }
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for s in ["", "-", "-0", "01", "+1", " 1", "1 ", "9223372036854775808", "1.0", "0x10"] {
            assert_eq!(parse_i64(s.as_bytes()), None, "{s:?}");
        }
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        let pieces: &[&[u8]] = &[
            b"*",
            b"$",
            b"\r\n",
            b"\n",
            b"\r",
            b" ",
            b"\"",
            b"'",
            b"\\",
            b"x",
            b"1",
            b"0",
            b"-",
            b"3",
            b"99999999999",
            b"PING",
            b"\xff",
            b"\x00",
        ];
        for input in crate::shim::garbage(pieces, 5000, 14) {
            let _ = decode_all(&input);
        }
    }

    #[test]
    fn encodes_replies_in_both_protocols() {
        let mut two = BytesMut::new();
        let mut r = Reply::new(&mut two, 2);
        r.ok();
        r.null();
        r.null_array();
        r.map(1);
        r.bulk("k");
        r.int(-42);
        r.set(0);
        r.verbatim("a:1\r\n");
        r.error("ERR bad\r\nthing");
        assert_eq!(r.errors(), 1);
        assert_eq!(
            &two[..],
            &b"+OK\r\n$-1\r\n*-1\r\n*2\r\n$1\r\nk\r\n:-42\r\n*0\r\n$5\r\na:1\r\n\r\n-ERR bad  thing\r\n"[..]
        );
        let mut three = BytesMut::new();
        let mut r = Reply::new(&mut three, 3);
        r.null();
        r.null_array();
        r.map(1);
        r.set(2);
        r.verbatim("a:1\r\n");
        r.int(i64::MIN);
        assert_eq!(&three[..], &b"_\r\n_\r\n%1\r\n~2\r\n=9\r\ntxt:a:1\r\n\r\n:-9223372036854775808\r\n"[..]);
    }
}
