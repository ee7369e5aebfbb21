//! The client half of the NATS core protocol as a `tokio_util` codec: what a client may send
//! (`CONNECT`, `PUB`, `HPUB`, `SUB`, `UNSUB`, `PING`, `PONG`) decoded from a buffered byte stream,
//! and the encoders for what the server sends (`INFO`, `MSG`, `HMSG`, `PING`, `PONG`, `+OK`, `-ERR`).
//!
//! The decoder never panics and never buffers more than the limits allow: a control line longer
//! than `max_control_line` (a `CONNECT` line may be up to [`MAX_CONNECT_LINE`]) or a payload
//! announced larger than `max_payload` is an error before its bytes are read. Operation names are
//! case-insensitive; fields are separated by any run of spaces and tabs; lines end in `\r\n` (a
//! bare `\n` is accepted, as nats-server does); a payload must be followed by exactly `\r\n`.
//! Every error has the `-ERR` text the server answers with ([`ProtoError::wire`]); all of them
//! close the connection.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use tokio_util::codec::Decoder;

/// The longest `CONNECT` line accepted (it can carry a user JWT and signature, which the control
/// line limit was not meant for).
pub const MAX_CONNECT_LINE: usize = 64 * 1024;

/// One operation sent by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    Connect(ConnectOptions),
    /// `PUB` or `HPUB`; `headers` is the whole header block (from `NATS/1.0` to the blank line).
    Pub {
        subject: Bytes,
        reply: Option<Bytes>,
        headers: Option<Bytes>,
        payload: Bytes,
    },
    Sub {
        subject: Bytes,
        queue: Option<Bytes>,
        sid: Bytes,
    },
    Unsub {
        sid: Bytes,
        max: Option<u64>,
    },
    Ping,
    Pong,
}

/// What a client asks for in `CONNECT`. Fields it leaves out keep nats-server's defaults
/// (`verbose`, `pedantic` and `echo` on); fields this shim has no use for are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    pub verbose: bool,
    pub pedantic: bool,
    pub echo: bool,
    pub headers: bool,
    pub no_responders: bool,
    pub protocol: i64,
    pub name: Option<String>,
    pub lang: Option<String>,
    pub version: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            verbose: true,
            pedantic: true,
            echo: true,
            headers: false,
            no_responders: false,
            protocol: 0,
            name: None,
            lang: None,
            version: None,
        }
    }
}

#[derive(Deserialize)]
struct RawConnect {
    verbose: Option<bool>,
    pedantic: Option<bool>,
    echo: Option<bool>,
    headers: Option<bool>,
    no_responders: Option<bool>,
    protocol: Option<i64>,
    name: Option<String>,
    lang: Option<String>,
    version: Option<String>,
}

impl ConnectOptions {
    fn parse(json: &[u8]) -> Result<Self, serde_json::Error> {
        let raw: RawConnect = serde_json::from_slice(json)?;
        let d = ConnectOptions::default();
        Ok(ConnectOptions {
            verbose: raw.verbose.unwrap_or(d.verbose),
            pedantic: raw.pedantic.unwrap_or(d.pedantic),
            echo: raw.echo.unwrap_or(d.echo),
            headers: raw.headers.unwrap_or(d.headers),
            no_responders: raw.no_responders.unwrap_or(d.no_responders),
            protocol: raw.protocol.unwrap_or(d.protocol),
            name: raw.name,
            lang: raw.lang,
            version: raw.version,
        })
    }
}

/// Why the decoder stopped. Every variant closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("unknown protocol operation")]
    UnknownOperation,
    #[error("malformed {0}")]
    Parser(&'static str),
    #[error("invalid CONNECT JSON: {0}")]
    Connect(#[source] serde_json::Error),
    #[error("control line longer than {limit} bytes")]
    MaxControlLine { limit: usize },
    #[error("payload of {size} bytes is over max_payload ({max})")]
    MaxPayload { size: u64, max: usize },
    #[error("reading from the client")]
    Io(#[from] std::io::Error),
}

impl ProtoError {
    /// The text of the `-ERR` line the server sends before closing, if any (none for I/O errors:
    /// there is nobody to tell).
    pub fn wire(&self) -> Option<&'static str> {
        match self {
            ProtoError::UnknownOperation => Some("Unknown Protocol Operation"),
            ProtoError::Parser(_) | ProtoError::Connect(_) => Some("Parser Error"),
            ProtoError::MaxControlLine { .. } => Some("Maximum Control Line Exceeded"),
            ProtoError::MaxPayload { .. } => Some("Maximum Payload Violation"),
            ProtoError::Io(_) => None,
        }
    }
}

/// A `PUB`/`HPUB` whose control line has been read, waiting for its payload.
#[derive(Debug)]
struct PendingPub {
    subject: Bytes,
    reply: Option<Bytes>,
    header_len: usize,
    total_len: usize,
}

/// The decoder for one client connection.
#[derive(Debug)]
pub struct ClientCodec {
    max_payload: usize,
    max_control_line: usize,
    pending: Option<PendingPub>,
    /// How far the current (incomplete) line has been searched for `\n`.
    scanned: usize,
}

impl ClientCodec {
    pub fn new(max_payload: usize, max_control_line: usize) -> Self {
        ClientCodec { max_payload, max_control_line, pending: None, scanned: 0 }
    }

    /// The limit for the line that starts `src`: larger for `CONNECT`.
    fn line_limit(&self, src: &[u8]) -> usize {
        let head = &src[..src.len().min(7)];
        if head.len() == 7 && head.eq_ignore_ascii_case(b"CONNECT") {
            MAX_CONNECT_LINE.max(self.max_control_line)
        } else {
            self.max_control_line
        }
    }

    fn decode_line(&mut self, line: Bytes) -> Result<Option<ClientOp>, ProtoError> {
        let (op, rest) = split_op(&line);
        if op.eq_ignore_ascii_case(b"PUB") {
            let args = fields(&line, rest);
            let (subject, reply, size) = match args.as_slice() {
                [s, n] => (s.clone(), None, n),
                [s, r, n] => (s.clone(), Some(r.clone()), n),
                _ => return Err(ProtoError::Parser("PUB arguments")),
            };
            let size = parse_size(size).ok_or(ProtoError::Parser("PUB size"))?;
            self.expect_payload(subject, reply, 0, size)?;
            Ok(None)
        } else if op.eq_ignore_ascii_case(b"HPUB") {
            let args = fields(&line, rest);
            let (subject, reply, hdr, total) = match args.as_slice() {
                [s, h, t] => (s.clone(), None, h, t),
                [s, r, h, t] => (s.clone(), Some(r.clone()), h, t),
                _ => return Err(ProtoError::Parser("HPUB arguments")),
            };
            let hdr = parse_size(hdr).ok_or(ProtoError::Parser("HPUB header size"))?;
            let total = parse_size(total).ok_or(ProtoError::Parser("HPUB total size"))?;
            if hdr > total {
                return Err(ProtoError::Parser("HPUB header size (larger than the total size)"));
            }
            self.expect_payload(subject, reply, hdr, total)?;
            Ok(None)
        } else if op.eq_ignore_ascii_case(b"SUB") {
            match fields(&line, rest).as_slice() {
                [s, sid] => Ok(Some(ClientOp::Sub { subject: s.clone(), queue: None, sid: sid.clone() })),
                [s, q, sid] => Ok(Some(ClientOp::Sub { subject: s.clone(), queue: Some(q.clone()), sid: sid.clone() })),
                _ => Err(ProtoError::Parser("SUB arguments")),
            }
        } else if op.eq_ignore_ascii_case(b"UNSUB") {
            match fields(&line, rest).as_slice() {
                [sid] => Ok(Some(ClientOp::Unsub { sid: sid.clone(), max: None })),
                [sid, max] => {
                    let max = parse_size(max).ok_or(ProtoError::Parser("UNSUB max_msgs"))?;
                    Ok(Some(ClientOp::Unsub { sid: sid.clone(), max: Some(max) }))
                }
                _ => Err(ProtoError::Parser("UNSUB arguments")),
            }
        } else if op.eq_ignore_ascii_case(b"PING") && is_blank(rest) {
            Ok(Some(ClientOp::Ping))
        } else if op.eq_ignore_ascii_case(b"PONG") && is_blank(rest) {
            Ok(Some(ClientOp::Pong))
        } else if op.eq_ignore_ascii_case(b"CONNECT") {
            let json = trim(rest);
            ConnectOptions::parse(json).map(|o| Some(ClientOp::Connect(o))).map_err(ProtoError::Connect)
        } else {
            Err(ProtoError::UnknownOperation)
        }
    }

    fn expect_payload(
        &mut self,
        subject: Bytes,
        reply: Option<Bytes>,
        header_len: u64,
        total_len: u64,
    ) -> Result<(), ProtoError> {
        if total_len > self.max_payload as u64 {
            return Err(ProtoError::MaxPayload { size: total_len, max: self.max_payload });
        }
        // Both fit in usize: total_len <= max_payload, header_len <= total_len.
        let (header_len, total_len) = (header_len as usize, total_len as usize);
        self.pending = Some(PendingPub { subject, reply, header_len, total_len });
        Ok(())
    }
}

impl Decoder for ClientCodec {
    type Item = ClientOp;
    type Error = ProtoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<ClientOp>, ProtoError> {
        loop {
            if let Some(p) = &self.pending {
                let needed = p.total_len + 2;
                if src.len() < needed {
                    src.reserve(needed - src.len());
                    return Ok(None);
                }
                let p = self.pending.take().expect("checked above");
                let mut body = src.split_to(needed).freeze();
                if &body[p.total_len..] != b"\r\n" {
                    return Err(ProtoError::UnknownOperation);
                }
                body.truncate(p.total_len);
                let headers = if p.header_len > 0 {
                    let block = body.split_to(p.header_len);
                    if !block.starts_with(b"NATS/1.0") {
                        return Err(ProtoError::Parser("HPUB header block (it must start with NATS/1.0)"));
                    }
                    Some(block)
                } else {
                    None
                };
                return Ok(Some(ClientOp::Pub { subject: p.subject, reply: p.reply, headers, payload: body }));
            }

            let start = self.scanned.min(src.len());
            let Some(offset) = src[start..].iter().position(|&b| b == b'\n') else {
                self.scanned = src.len();
                let limit = self.line_limit(src);
                if src.len() > limit {
                    return Err(ProtoError::MaxControlLine { limit });
                }
                return Ok(None);
            };
            let newline = start + offset;
            self.scanned = 0;
            let limit = self.line_limit(src);
            if newline > limit {
                return Err(ProtoError::MaxControlLine { limit });
            }
            let mut line = src.split_to(newline + 1).freeze();
            line.truncate(newline);
            if line.last() == Some(&b'\r') {
                line.truncate(newline - 1);
            }
            if let Some(op) = self.decode_line(line)? {
                return Ok(Some(op));
            }
            // A PUB/HPUB line: go round for its payload.
        }
    }
}

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_blank(s: &[u8]) -> bool {
    s.iter().all(|&b| is_space(b))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_space(b)).map_or(start, |i| i + 1);
    &s[start..end.max(start)]
}

/// The operation name and what follows it.
fn split_op(line: &[u8]) -> (&[u8], &[u8]) {
    let end = line.iter().position(|&b| is_space(b)).unwrap_or(line.len());
    line.split_at(end)
}

/// The whitespace-separated fields of `rest` (a slice of `line`), as cheap slices of `line`.
fn fields(line: &Bytes, rest: &[u8]) -> Vec<Bytes> {
    let base = line.len() - rest.len();
    let mut out = Vec::with_capacity(4);
    let mut i = 0;
    while i < rest.len() {
        if is_space(rest[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < rest.len() && !is_space(rest[i]) {
            i += 1;
        }
        out.push(line.slice(base + start..base + i));
        if out.len() > 4 {
            break;
        }
    }
    out
}

/// A decimal size: digits only, no sign, at most 18 of them (so it cannot overflow).
fn parse_size(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 18 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

fn put_decimal(buf: &mut BytesMut, mut n: u64) {
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

/// Appends a `MSG` (no headers) or `HMSG` (with a header block) delivery to `buf`.
pub fn encode_msg(
    buf: &mut BytesMut,
    subject: &[u8],
    sid: &[u8],
    reply: Option<&[u8]>,
    headers: Option<&[u8]>,
    payload: &[u8],
) {
    buf.reserve(msg_len(subject, sid, reply, headers, payload));
    buf.put_slice(if headers.is_some() { b"HMSG " } else { b"MSG " });
    buf.put_slice(subject);
    buf.put_u8(b' ');
    buf.put_slice(sid);
    if let Some(reply) = reply {
        buf.put_u8(b' ');
        buf.put_slice(reply);
    }
    buf.put_u8(b' ');
    if let Some(h) = headers {
        put_decimal(buf, h.len() as u64);
        buf.put_u8(b' ');
        put_decimal(buf, (h.len() + payload.len()) as u64);
        buf.put_slice(b"\r\n");
        buf.put_slice(h);
    } else {
        put_decimal(buf, payload.len() as u64);
        buf.put_slice(b"\r\n");
    }
    buf.put_slice(payload);
    buf.put_slice(b"\r\n");
}

/// An upper bound of the bytes [`encode_msg`] appends.
pub fn msg_len(subject: &[u8], sid: &[u8], reply: Option<&[u8]>, headers: Option<&[u8]>, payload: &[u8]) -> usize {
    // "HMSG " + 3 separators + two 20-digit numbers + 2 CRLFs, rounded up.
    64 + subject.len() + sid.len() + reply.map_or(0, <[u8]>::len) + headers.map_or(0, <[u8]>::len) + payload.len()
}

/// The `-ERR` line for `message`.
pub fn err_line(message: &str) -> Vec<u8> {
    format!("-ERR '{message}'\r\n").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> ClientCodec {
        ClientCodec::new(1024, 64)
    }

    fn decode_all(codec: &mut ClientCodec, input: &[u8]) -> Result<Vec<ClientOp>, ProtoError> {
        let mut buf = BytesMut::from(input);
        let mut ops = Vec::new();
        while let Some(op) = codec.decode(&mut buf)? {
            ops.push(op);
        }
        Ok(ops)
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn decodes_every_client_operation() {
        let input = b"CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true,\"x\":[1]}\r\n\
            pub foo 5\r\nhello\r\nPUB\tfoo  bar 0\r\n\r\n\
            HPUB foo reply 12 14\r\nNATS/1.0\r\n\r\nhi\r\n\
            SUB foo.* 1\r\nsub foo q 2\r\nUNSUB 1\r\nUNSUB 2 5\r\nPING\r\nPONG\n";
        let ops = decode_all(&mut codec(), input).unwrap();
        let ClientOp::Connect(c) = &ops[0] else { panic!("{ops:?}") };
        assert!(!c.verbose && c.pedantic && c.echo && c.headers && c.no_responders);
        assert_eq!(
            ops[1..],
            [
                ClientOp::Pub { subject: b("foo"), reply: None, headers: None, payload: b("hello") },
                ClientOp::Pub { subject: b("foo"), reply: Some(b("bar")), headers: None, payload: b("") },
                ClientOp::Pub {
                    subject: b("foo"),
                    reply: Some(b("reply")),
                    headers: Some(b("NATS/1.0\r\n\r\n")),
                    payload: b("hi")
                },
                ClientOp::Sub { subject: b("foo.*"), queue: None, sid: b("1") },
                ClientOp::Sub { subject: b("foo"), queue: Some(b("q")), sid: b("2") },
                ClientOp::Unsub { sid: b("1"), max: None },
                ClientOp::Unsub { sid: b("2"), max: Some(5) },
                ClientOp::Ping,
                ClientOp::Pong,
            ]
        );
    }

    #[test]
    fn waits_for_split_input_byte_by_byte() {
        let input = b"PUB foo.bar 11\r\nhello world\r\nPING\r\n";
        let mut codec = codec();
        let mut buf = BytesMut::new();
        let mut ops = Vec::new();
        for &byte in input {
            buf.put_u8(byte);
            while let Some(op) = codec.decode(&mut buf).unwrap() {
                ops.push(op);
            }
        }
        assert_eq!(ops.len(), 2);
        assert_eq!(
            ops[0],
            ClientOp::Pub { subject: b("foo.bar"), reply: None, headers: None, payload: b("hello world") }
        );
    }

    #[test]
    fn refuses_bad_input_with_the_right_error() {
        let cases: &[(&[u8], &str)] = &[
            (b"GARBAGE\r\n", "Unknown Protocol Operation"),
            (b"\x00\xff\xfe\r\n", "Unknown Protocol Operation"),
            (b"\r\n", "Unknown Protocol Operation"),
            (b"PINGX\r\n", "Unknown Protocol Operation"),
            (b"PUB foo 3\r\nabcXY", "Unknown Protocol Operation"),
            (b"PUB foo\r\n", "Parser Error"),
            (b"PUB foo -1\r\n", "Parser Error"),
            (b"PUB foo 99999999999999999999\r\n", "Parser Error"),
            (b"PUB a b c d\r\n", "Parser Error"),
            (b"HPUB foo 5 3\r\n", "Parser Error"),
            (b"HPUB foo 3 5\r\nabc12\r\n", "Parser Error"),
            (b"SUB\r\n", "Parser Error"),
            (b"UNSUB 1 x\r\n", "Parser Error"),
            (b"CONNECT {nope\r\n", "Parser Error"),
            (b"PUB foo 1025\r\n", "Maximum Payload Violation"),
            (b"HPUB foo 10 2000\r\n", "Maximum Payload Violation"),
        ];
        for (input, expected) in cases {
            let err = decode_all(&mut codec(), input).expect_err(&String::from_utf8_lossy(input));
            assert_eq!(err.wire(), Some(*expected), "{:?}: {err}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn bounds_the_control_line_before_its_end_arrives() {
        let mut long = b"SUB ".to_vec();
        long.extend(std::iter::repeat_n(b'a', 100));
        let err = decode_all(&mut codec(), &long).unwrap_err();
        assert_eq!(err.wire(), Some("Maximum Control Line Exceeded"));
        // CONNECT gets more room.
        let mut connect = b"CONNECT {\"name\":\"".to_vec();
        connect.extend(std::iter::repeat_n(b'n', 1000));
        connect.extend(b"\"}\r\n");
        assert!(matches!(decode_all(&mut codec(), &connect).unwrap()[0], ClientOp::Connect(_)));
    }

    #[test]
    fn never_panics_on_arbitrary_bytes() {
        // A small deterministic generator: every prefix of a mix of valid and invalid fragments.
        let pieces: &[&[u8]] = &[
            b"PUB ",
            b"HPUB ",
            b"SUB ",
            b"UNSUB ",
            b"PING",
            b"CONNECT ",
            b"{",
            b"}",
            b"\r\n",
            b"\n",
            b"\r",
            b" ",
            b"\t",
            b"foo",
            b".",
            b"*",
            b">",
            b"12",
            b"0",
            b"NATS/1.0",
            b"\xff",
            b"\x00",
            b"99999999999999999999",
        ];
        for input in crate::shim::garbage(pieces, 2000, 12) {
            let _ = decode_all(&mut codec(), &input);
        }
    }

    #[test]
    fn encodes_deliveries() {
        let mut buf = BytesMut::new();
        encode_msg(&mut buf, b"foo", b"7", None, None, b"hello");
        encode_msg(&mut buf, b"foo", b"7", Some(b"_INBOX.1"), Some(b"NATS/1.0\r\nA: b\r\n\r\n"), b"hi");
        assert_eq!(&buf[..], b"MSG foo 7 5\r\nhello\r\nHMSG foo 7 _INBOX.1 18 20\r\nNATS/1.0\r\nA: b\r\n\r\nhi\r\n");
        let mut n = BytesMut::new();
        put_decimal(&mut n, 0);
        put_decimal(&mut n, u64::MAX);
        assert_eq!(&n[..], b"018446744073709551615");
    }
}
