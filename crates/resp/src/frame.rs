//! The wire format: the request framing ([`Resp`]), which finds a request's arguments
//! as it goes and resumes where it stopped when a request arrives in pieces, and the
//! reply encoder ([`Reply`]), RESP2 or RESP3, which references large stored values
//! instead of copying them and stops at an output budget.

use bytes::Bytes;
use greenfd_engine::{FrameError, Framing, ParseState, Parsed};

/// Redis protocol requests: arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`)
/// and inline commands (`PING\r\n`), as `redis-cli`, `redis-benchmark` and client
/// libraries send them.
///
/// Parsing is resumable: a request that arrives in many reads is examined once, so
/// the work is linear in its size however it is split. Errors carry redis' own texts
/// (`invalid multibulk length`, `expected '$', got ':'`, ...), which the server sends
/// back as `-ERR Protocol error: ...` before it closes the connection, as redis does.
#[derive(Clone, Copy, Debug)]
pub struct Resp {
    /// The largest request accepted, in bytes.
    pub max: usize,
}

/// Default maximum RESP request: 16 MiB.
pub const RESP_DEFAULT_MAX: usize = 16 << 20;
/// Most elements in one request array (as Redis: 1024 × 1024).
const MAX_ARGS: usize = 1024 * 1024;
/// Longest inline command before it is refused (as Redis: 64 KiB).
const MAX_INLINE: usize = 64 * 1024;
/// Longest `*N` / `$N` header line.
const MAX_HEADER: usize = 32;
/// The shortest argument on the wire: `$0\r\n\r\n`.
const MIN_ARG: usize = 6;
/// Argument lists are reserved up to this many entries ahead of time.
const RESERVE_ARGS: usize = 1024;

/// Parse stages kept in [`ParseState::stage`].
const STAGE_START: u8 = 0;
/// Inside an array request: `remaining` arguments still expected at `pos`.
const STAGE_ARGS: u8 = 1;

impl Default for Resp {
    fn default() -> Self {
        Resp {
            max: RESP_DEFAULT_MAX,
        }
    }
}

/// A protocol error with redis' text.
fn protocol(text: impl Into<String>) -> Parsed {
    Parsed::Invalid(FrameError::Protocol(text.into()))
}

/// Where a header line that starts at `from` ends: the index of its `\r`.
enum Header {
    /// The `\r` is here, and the `\n` after it has arrived.
    At(usize),
    /// Not all of the line has arrived.
    Partial,
    /// No `\r` within the longest header.
    TooLong,
}

/// Finds the end of the header line starting at `from`.
fn header_end(buf: &[u8], from: usize) -> Header {
    let window = &buf[from.min(buf.len())..buf.len().min(from + MAX_HEADER)];
    match window.iter().position(|&b| b == b'\r') {
        Some(i) if from + i + 1 < buf.len() => Header::At(from + i),
        Some(_) => Header::Partial,
        None if window.len() >= MAX_HEADER => Header::TooLong,
        None => Header::Partial,
    }
}

/// Parses the decimal of a header (`*12` / `$5`), as redis' `string2ll`.
fn header_number(digits: &[u8]) -> Option<i64> {
    crate::command::parse_i64(digits)
}

impl Resp {
    /// Continues an array request; `state.remaining` arguments are still expected.
    fn parse_args(&self, state: &mut ParseState, buf: &[u8]) -> Parsed {
        while state.remaining > 0 {
            let at = state.pos;
            // Every argument still to come takes at least `$0\r\n\r\n`.
            let at_least = state.remaining.saturating_mul(MIN_ARG);
            state.need = at_least.saturating_sub(buf.len() - at.min(buf.len()));
            let Some(&first) = buf.get(at) else {
                return Parsed::NeedMore;
            };
            if first != b'$' {
                return protocol(format!(
                    "expected '$', got '{}'",
                    char::from(first).escape_default()
                ));
            }
            let cr = match header_end(buf, at + 1) {
                Header::At(cr) => cr,
                Header::Partial => return Parsed::NeedMore,
                Header::TooLong => return protocol("too big bulk count string"),
            };
            let len = match header_number(&buf[at + 1..cr]) {
                Some(n) if n >= 0 => n as usize,
                _ => return protocol("invalid bulk length"),
            };
            let start = cr + 2;
            let end = start.saturating_add(len).saturating_add(2);
            if end > self.max {
                return Parsed::Invalid(FrameError::TooLarge {
                    len: end,
                    max: self.max,
                });
            }
            if buf.len() < end {
                // Only this argument's header is looked at again next time.
                state.need = (end - buf.len()).saturating_add((state.remaining - 1) * MIN_ARG);
                return Parsed::NeedMore;
            }
            if &buf[end - 2..end] != b"\r\n" {
                return protocol("bulk string not terminated by CRLF");
            }
            state.parts.push(start..start + len);
            state.pos = end;
            state.remaining -= 1;
        }
        state.need = 0;
        Parsed::Frame(state.pos)
    }

    /// Parses an inline command (`SET k v\r\n`): words split on blanks, a word may be
    /// quoted with `"` or `'` (escapes are not decoded).
    fn parse_inline(&self, state: &mut ParseState, buf: &[u8]) -> Parsed {
        let limit = MAX_INLINE.min(self.max);
        let end = buf.len().min(limit);
        let from = state.pos.min(end);
        let Some(nl) = buf[from..end].iter().position(|&b| b == b'\n') else {
            if buf.len() >= limit {
                return protocol("too big inline request");
            }
            state.pos = end;
            return Parsed::NeedMore;
        };
        let nl = from + nl;
        let line_end = if nl > 0 && buf[nl - 1] == b'\r' {
            nl - 1
        } else {
            nl
        };
        let mut i = 0;
        while i < line_end {
            let b = buf[i];
            if b == b' ' || b == b'\t' {
                i += 1;
                continue;
            }
            if b == b'"' || b == b'\'' {
                let Some(close) = buf[i + 1..line_end].iter().position(|&c| c == b) else {
                    return protocol("unbalanced quotes in request");
                };
                let close = i + 1 + close;
                if close + 1 < line_end && !matches!(buf[close + 1], b' ' | b'\t') {
                    return protocol("unbalanced quotes in request");
                }
                state.parts.push(i + 1..close);
                i = close + 1;
                continue;
            }
            let word_end = buf[i..line_end]
                .iter()
                .position(|&c| c == b' ' || c == b'\t')
                .map_or(line_end, |p| i + p);
            state.parts.push(i..word_end);
            i = word_end;
        }
        Parsed::Frame(nl + 1)
    }
}

impl Framing for Resp {
    fn parse(&self, state: &mut ParseState, buf: &[u8]) -> Parsed {
        if state.stage == STAGE_ARGS {
            return self.parse_args(state, buf);
        }
        match buf.first() {
            None => Parsed::NeedMore,
            Some(b'*') => {
                let cr = match header_end(buf, 1) {
                    Header::At(cr) => cr,
                    Header::Partial => return Parsed::NeedMore,
                    Header::TooLong => return protocol("too big mbulk count string"),
                };
                let count = match header_number(&buf[1..cr]) {
                    Some(n) if n <= MAX_ARGS as i64 => n,
                    _ => return protocol("invalid multibulk length"),
                };
                if count <= 0 {
                    // `*0` and `*-1` are empty requests; redis skips them.
                    return Parsed::Frame(cr + 2);
                }
                state.stage = STAGE_ARGS;
                state.remaining = count as usize;
                state.pos = cr + 2;
                state.parts.reserve(state.remaining.min(RESERVE_ARGS));
                self.parse_args(state, buf)
            }
            Some(_) => {
                state.stage = STAGE_START;
                self.parse_inline(state, buf)
            }
        }
    }

    fn max_frame(&self) -> usize {
        self.max
    }

    fn encode(&self, payload: &[u8], out: &mut Vec<u8>) {
        encode_command(&[payload], out);
    }
}

/// Appends `args` as a RESP array of bulk strings (how clients send commands).
pub fn encode_command(args: &[&[u8]], out: &mut Vec<u8>) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        out.extend_from_slice(a.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// The arguments of one complete RESP request (array or inline), in `out`: the
/// request parsed on its own. An empty request yields no arguments.
pub fn command_args<'a>(frame: &'a [u8], out: &mut Vec<&'a [u8]>) -> Result<(), FrameError> {
    out.clear();
    let mut state = ParseState::default();
    let whole = Resp { max: usize::MAX };
    match whole.parse(&mut state, frame) {
        Parsed::Frame(n) if n == frame.len() => {
            out.extend(state.parts.iter().map(|r| &frame[r.clone()]));
            Ok(())
        }
        Parsed::Invalid(e) => Err(e),
        _ => Err(FrameError::Protocol("not one complete request".into())),
    }
}

/// Values at least this long are sent by reference, not copied into the reply.
const SHARE_ABOVE: usize = 4096;
/// Reply buffers larger than this are freed after their reply instead of kept.
const KEEP_REPLY: usize = 64 * 1024;
/// Room kept for a bulk string's header and trailer when checking the budget.
const BULK_OVERHEAD: usize = 24;

/// One RESP reply being built: small parts are copied into a buffer, large stored
/// values are referenced. Building stops (and [`Reply::overflowed`] says so) once the
/// reply would pass its budget, so no request can make the server build a reply it
/// could not queue.
#[derive(Debug)]
pub struct Reply {
    /// Copied bytes.
    buf: Vec<u8>,
    /// Shared values and the offset in `buf` each one goes before.
    shared: Vec<(usize, Bytes)>,
    /// The reply's total length.
    len: usize,
    /// The most bytes this reply may take.
    budget: usize,
    /// Whether something did not fit in the budget.
    over: bool,
    /// RESP3 (after `HELLO 3`) instead of RESP2.
    resp3: bool,
}

impl Default for Reply {
    fn default() -> Self {
        Reply::new(usize::MAX, false)
    }
}

/// One piece of a finished reply, in order.
#[derive(Debug)]
pub enum Piece<'a> {
    /// Bytes copied into the reply.
    Copied(&'a [u8]),
    /// A shared value, sent by reference.
    Shared(&'a Bytes),
}

impl Reply {
    /// An empty reply that may grow to `budget` bytes, in RESP3 if `resp3`.
    pub fn new(budget: usize, resp3: bool) -> Reply {
        Reply {
            buf: Vec::new(),
            shared: Vec::new(),
            len: 0,
            budget,
            over: false,
            resp3,
        }
    }

    /// Empties the reply for reuse with a new budget and protocol, freeing a large
    /// buffer.
    pub fn reset(&mut self, budget: usize, resp3: bool) {
        if self.buf.capacity() > KEEP_REPLY {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        if self.shared.capacity() > KEEP_REPLY / 16 {
            self.shared = Vec::new();
        } else {
            self.shared.clear();
        }
        self.len = 0;
        self.budget = budget;
        self.over = false;
        self.resp3 = resp3;
    }

    /// Switches the protocol for what is written from now on (HELLO).
    pub fn set_resp3(&mut self, resp3: bool) {
        self.resp3 = resp3;
    }

    /// Whether the reply is in RESP3.
    pub fn is_resp3(&self) -> bool {
        self.resp3
    }

    /// Total length of the reply so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the reply passed its budget (and so is incomplete).
    pub fn overflowed(&self) -> bool {
        self.over
    }

    /// The budget the reply was built against.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// The reply's pieces in order.
    pub fn pieces(&self) -> impl Iterator<Item = Piece<'_>> {
        let mut from = 0;
        let mut shared = self.shared.iter();
        let mut pending: Option<&Bytes> = None;
        std::iter::from_fn(move || {
            if let Some(b) = pending.take() {
                return Some(Piece::Shared(b));
            }
            match shared.next() {
                Some((at, b)) => {
                    let copied = &self.buf[from..*at];
                    from = *at;
                    if copied.is_empty() {
                        Some(Piece::Shared(b))
                    } else {
                        pending = Some(b);
                        Some(Piece::Copied(copied))
                    }
                }
                None if from < self.buf.len() => {
                    let copied = &self.buf[from..];
                    from = self.buf.len();
                    Some(Piece::Copied(copied))
                }
                None => None,
            }
        })
    }

    /// The whole reply as one buffer (tests, and callers without vectored output).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for p in self.pieces() {
            match p {
                Piece::Copied(b) => out.extend_from_slice(b),
                Piece::Shared(b) => out.extend_from_slice(b),
            }
        }
        out
    }

    /// Whether `n` more bytes fit; marks the reply overflowed if not.
    fn fits(&mut self, n: usize) -> bool {
        if self.over || self.len.saturating_add(n) > self.budget {
            self.over = true;
            return false;
        }
        true
    }

    /// Appends copied bytes (already checked against the budget).
    fn put(&mut self, parts: &[&[u8]]) {
        for p in parts {
            self.buf.extend_from_slice(p);
            self.len += p.len();
        }
    }

    /// A `<type><number>\r\n` line.
    fn line(&mut self, kind: u8, n: i64) {
        if self.fits(BULK_OVERHEAD) {
            let mut buf = [0u8; 20];
            let digits = decimal(n, &mut buf);
            self.put(&[&[kind], digits, b"\r\n"]);
        }
    }

    /// `+OK`-style status.
    pub fn simple(&mut self, s: &str) {
        if self.fits(s.len() + 3) {
            self.put(&[b"+", s.as_bytes(), b"\r\n"]);
        }
    }

    /// `-ERR ...`; CR/LF in the text (echoed user input) become spaces.
    pub fn error(&mut self, s: &str) {
        let clean: String = s
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        if self.fits(clean.len() + 3) {
            self.put(&[b"-", clean.as_bytes(), b"\r\n"]);
        }
    }

    /// `:n`.
    pub fn integer(&mut self, n: i64) {
        self.line(b':', n);
    }

    /// `$len\r\nbytes\r\n`, copied.
    pub fn bulk(&mut self, b: &[u8]) {
        if self.fits(b.len() + BULK_OVERHEAD) {
            let mut buf = [0u8; 20];
            let digits = decimal(b.len() as i64, &mut buf);
            self.put(&[b"$", digits, b"\r\n", b, b"\r\n"]);
        }
    }

    /// A bulk string of a shared value: referenced when large, copied when small.
    pub fn bulk_shared(&mut self, b: &Bytes) {
        if b.len() < SHARE_ABOVE {
            return self.bulk(b);
        }
        if self.fits(b.len() + BULK_OVERHEAD) {
            let mut buf = [0u8; 20];
            let digits = decimal(b.len() as i64, &mut buf);
            self.put(&[b"$", digits, b"\r\n"]);
            self.shared.push((self.buf.len(), b.clone()));
            self.len += b.len();
            self.put(&[b"\r\n"]);
        }
    }

    /// A bulk string of text.
    pub fn bulk_str(&mut self, s: &str) {
        self.bulk(s.as_bytes());
    }

    /// The null reply: `$-1` in RESP2, `_` in RESP3.
    pub fn null(&mut self) {
        if self.resp3 {
            self.simple_raw(b"_\r\n");
        } else {
            self.simple_raw(b"$-1\r\n");
        }
    }

    /// The null array: `*-1` in RESP2, `_` in RESP3.
    pub fn null_array(&mut self) {
        if self.resp3 {
            self.simple_raw(b"_\r\n");
        } else {
            self.simple_raw(b"*-1\r\n");
        }
    }

    /// Fixed bytes.
    fn simple_raw(&mut self, b: &[u8]) {
        if self.fits(b.len()) {
            self.put(&[b]);
        }
    }

    /// `*n` header.
    pub fn array(&mut self, n: usize) {
        self.line(b'*', n as i64);
    }

    /// A map of `n` pairs: `%n` in RESP3, an array of `2n` in RESP2.
    pub fn map(&mut self, n: usize) {
        if self.resp3 {
            self.line(b'%', n as i64);
        } else {
            self.line(b'*', 2 * n as i64);
        }
    }

    /// A set of `n` members: `~n` in RESP3, an array in RESP2.
    pub fn set(&mut self, n: usize) {
        self.line(if self.resp3 { b'~' } else { b'*' }, n as i64);
    }

    /// A double: `,1.5` in RESP3, a bulk string in RESP2 (as redis formats scores).
    pub fn double(&mut self, f: f64) {
        let text = format_double(f);
        if self.resp3 {
            if self.fits(text.len() + 3) {
                self.put(&[b",", text.as_bytes(), b"\r\n"]);
            }
        } else {
            self.bulk(text.as_bytes());
        }
    }

    /// Text for humans (INFO, CLIENT INFO): a verbatim string in RESP3, a bulk
    /// string in RESP2.
    pub fn verbatim(&mut self, text: &str) {
        if self.resp3 {
            if self.fits(text.len() + 4 + BULK_OVERHEAD) {
                let digits = (text.len() + 4).to_string();
                self.put(&[
                    b"=",
                    digits.as_bytes(),
                    b"\r\ntxt:",
                    text.as_bytes(),
                    b"\r\n",
                ]);
            }
        } else {
            self.bulk(text.as_bytes());
        }
    }

    /// Redis' arity error.
    pub fn arity(&mut self, cmd: &str) {
        self.error(&format!(
            "ERR wrong number of arguments for '{cmd}' command"
        ));
    }
}

/// Writes `n` in decimal into `buf` (no allocation: this runs for every reply).
fn decimal(n: i64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    let mut m = n.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

/// Formats a double as redis does for scores: shortest round trip, `inf`/`-inf`.
pub(crate) fn format_double(f: f64) -> String {
    if f.is_infinite() {
        if f > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{f}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenfd_engine::split_frames;
    use greenfd_test_support::reassemble_frames;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_split_yields_the_same_requests(
            commands in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6), 0..20),
            inline in prop::collection::vec("[A-Za-z0-9]{1,8}( [A-Za-z0-9]{1,8}){0,3}", 0..5),
            cuts in prop::collection::vec(any::<usize>(), 0..40),
        ) {
            let mut stream = Vec::new();
            let mut want: Vec<Vec<Vec<u8>>> = Vec::new();
            for (i, c) in commands.iter().enumerate() {
                let args: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
                encode_command(&args, &mut stream);
                want.push(c.clone());
                if let Some(line) = inline.get(i) {
                    stream.extend_from_slice(line.as_bytes());
                    stream.extend_from_slice(b"\r\n");
                    want.push(line.split(' ').map(|s| s.as_bytes().to_vec()).collect());
                }
            }
            prop_assert_eq!(reassemble_frames(&Resp::default(), &stream, &cuts), want.clone());
            // command_args agrees with the resumable parse on each whole request.
            let mut whole = Vec::new();
            let mut state = ParseState::default();
            split_frames(&Resp::default(), &mut state, &stream, |f| {
                let mut args = Vec::new();
                command_args(f.bytes(), &mut args).unwrap();
                whole.push(args.iter().map(|a| a.to_vec()).collect::<Vec<_>>());
                true
            }).unwrap();
            prop_assert_eq!(whole, want);
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let framing = Resp { max: 1000 };
            let mut state = ParseState::default();
            if let Parsed::Frame(n) = framing.parse(&mut state, &bytes) {
                prop_assert!(n > 0 && n <= bytes.len());
                prop_assert!(state.parts.iter().all(|r| r.end <= n));
            }
        }

        #[test]
        fn replies_reassemble_from_their_pieces(
            values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..9000), 0..8),
        ) {
            let mut reply = Reply::default();
            let mut want = Vec::new();
            reply.array(values.len());
            want.extend_from_slice(format!("*{}\r\n", values.len()).as_bytes());
            for v in &values {
                reply.bulk_shared(&Bytes::from(v.clone()));
                want.extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
                want.extend_from_slice(v);
                want.extend_from_slice(b"\r\n");
            }
            prop_assert_eq!(reply.len(), want.len());
            prop_assert_eq!(reply.to_vec(), want);
        }
    }

    /// The error text a stream gets.
    fn error_of(bytes: &[u8]) -> String {
        match Resp::default().parse(&mut ParseState::default(), bytes) {
            Parsed::Invalid(FrameError::Protocol(text)) => text,
            other => panic!("{bytes:?}: expected a protocol error, got {other}"),
        }
    }

    #[test]
    fn malformed_requests_get_redis_error_texts() {
        assert_eq!(error_of(b"*x\r\n"), "invalid multibulk length");
        assert_eq!(error_of(b"*2000000\r\n"), "invalid multibulk length");
        assert_eq!(error_of(b"*1\r\n:3\r\n"), "expected '$', got ':'");
        assert_eq!(error_of(b"*1\r\n$-3\r\n"), "invalid bulk length");
        assert_eq!(
            error_of(b"*1\r\n$3\r\nabcXY"),
            "bulk string not terminated by CRLF"
        );
        assert_eq!(error_of(b"SET \"k v\r\n"), "unbalanced quotes in request");
        assert_eq!(error_of(&[b'*'; 40]), "too big mbulk count string");
        assert_eq!(error_of(&vec![b'a'; 70_000]), "too big inline request");
        assert!(matches!(
            Resp { max: 20 }.parse(&mut ParseState::default(), b"*1\r\n$100\r\n"),
            Parsed::Invalid(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn inline_quotes_group_words() {
        let mut args = Vec::new();
        command_args(b"SET 'a b' \"c\"\r\n", &mut args).unwrap();
        assert_eq!(args, [&b"SET"[..], b"a b", b"c"]);
    }

    #[test]
    fn a_reply_stops_at_its_budget() {
        let value = Bytes::from(vec![7u8; 1 << 20]);
        let mut reply = Reply::new(10 << 20, false);
        reply.array(3000);
        for _ in 0..3000 {
            reply.bulk_shared(&value);
        }
        assert!(reply.overflowed());
        assert!(reply.len() <= 10 << 20);
        // Shared, not copied: the copied part is only headers.
        let copied: usize = reply
            .pieces()
            .map(|p| match p {
                Piece::Copied(b) => b.len(),
                Piece::Shared(_) => 0,
            })
            .sum();
        assert!(copied < 1024, "copied {copied} bytes");
    }

    #[test]
    fn decimals_format_every_i64() {
        for n in [0, 7, -7, 10, 1234567890, i64::MAX, i64::MIN + 1] {
            assert_eq!(decimal(n, &mut [0; 20]), n.to_string().as_bytes());
        }
    }

    #[test]
    fn resp3_types_differ_from_resp2() {
        let mut r2 = Reply::new(usize::MAX, false);
        let mut r3 = Reply::new(usize::MAX, true);
        for r in [&mut r2, &mut r3] {
            r.null();
            r.map(1);
            r.double(1.5);
            r.set(0);
        }
        assert_eq!(r2.to_vec(), b"$-1\r\n*2\r\n$3\r\n1.5\r\n*0\r\n");
        assert_eq!(r3.to_vec(), b"_\r\n%1\r\n,1.5\r\n~0\r\n");
    }
}
