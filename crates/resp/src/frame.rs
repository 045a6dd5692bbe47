//! The wire format: the request framing ([`Resp`]), splitting a request into its
//! arguments ([`command_args`]), encoding requests ([`encode_command`]) and replies
//! ([`Reply`]).

use greenfd_engine::{FrameError, Framing, Parsed};

/// Redis protocol (RESP2) requests: arrays of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`)
/// and inline commands (`PING\r\n`), as `redis-cli` and `redis-benchmark` send them.
#[derive(Clone, Copy, Debug)]
pub struct Resp {
    /// The largest request accepted, in bytes.
    pub max: usize,
}

/// Default maximum RESP request: 16 MiB.
pub const RESP_DEFAULT_MAX: usize = 16 << 20;
/// Most elements in one request array (as Redis: 1024 × 1024).
const RESP_MAX_ARGS: usize = 1024 * 1024;
/// Longest inline command or header line before it is refused (as Redis: 64 KiB).
const RESP_MAX_INLINE: usize = 64 * 1024;

impl Default for Resp {
    fn default() -> Self {
        Resp {
            max: RESP_DEFAULT_MAX,
        }
    }
}

/// Where a RESP header line ends: `Ok(Some(index of '\r'))`, `Ok(None)` if incomplete.
fn header_end(buf: &[u8], from: usize) -> Result<Option<usize>, FrameError> {
    let window = &buf[from..buf.len().min(from + 32)];
    match window.iter().position(|&b| b == b'\r') {
        Some(i) => Ok(Some(from + i)),
        None if window.len() >= 32 => Err(FrameError::Protocol("header line too long")),
        None => Ok(None),
    }
}

/// Parses the decimal after a type byte (`*12` / `$5`).
fn header_number(digits: &[u8]) -> Result<i64, FrameError> {
    let (neg, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(FrameError::Protocol("invalid length in header"));
    }
    let n = digits
        .iter()
        .fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0'));
    Ok(if neg { -n } else { n })
}

impl Resp {
    /// Parses `*N\r\n` followed by N bulk strings.
    fn parse_array(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        let Some(cr) = header_end(buf, 1)? else {
            return Ok(None);
        };
        if buf.len() < cr + 2 {
            return Ok(None);
        }
        if buf[cr + 1] != b'\n' {
            return Err(FrameError::Protocol("expected '\\n' after '\\r'"));
        }
        let count = header_number(&buf[1..cr])?;
        let mut at = cr + 2;
        if count <= 0 {
            // `*0` and `*-1` are empty requests; Redis skips them.
            return Ok(Some(at));
        }
        if count as usize > RESP_MAX_ARGS {
            return Err(FrameError::Protocol("invalid multibulk length"));
        }
        for _ in 0..count {
            if at >= buf.len() {
                return Ok(None);
            }
            if buf[at] != b'$' {
                return Err(FrameError::Protocol("expected '$'"));
            }
            let Some(cr) = header_end(buf, at + 1)? else {
                return Ok(None);
            };
            if buf.len() < cr + 2 {
                return Ok(None);
            }
            if buf[cr + 1] != b'\n' {
                return Err(FrameError::Protocol("expected '\\n' after '\\r'"));
            }
            let len = header_number(&buf[at + 1..cr])?;
            if len < 0 {
                return Err(FrameError::Protocol("invalid bulk length"));
            }
            let len = len as usize;
            let end = (cr + 2).saturating_add(len).saturating_add(2);
            if end > self.max {
                return Err(FrameError::TooLarge {
                    len: end,
                    max: self.max,
                });
            }
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(FrameError::Protocol("bulk string not terminated by CRLF"));
            }
            at = end;
        }
        Ok(Some(at))
    }
}

impl Framing for Resp {
    fn parse(&self, buf: &[u8]) -> Parsed {
        if buf.is_empty() {
            return Parsed::NeedMore;
        }
        if buf[0] == b'*' {
            return match self.parse_array(buf) {
                Ok(Some(len)) => Parsed::Frame(len),
                Ok(None) if buf.len() >= self.max => Parsed::Invalid(FrameError::TooLarge {
                    len: buf.len(),
                    max: self.max,
                }),
                Ok(None) => Parsed::NeedMore,
                Err(e) => Parsed::Invalid(e),
            };
        }
        let limit = RESP_MAX_INLINE.min(self.max);
        match buf[..buf.len().min(limit)].iter().position(|&b| b == b'\n') {
            Some(i) => Parsed::Frame(i + 1),
            None if buf.len() >= limit => Parsed::Invalid(FrameError::TooLarge {
                len: buf.len(),
                max: limit,
            }),
            None => Parsed::NeedMore,
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

/// The arguments of one complete RESP request frame (array or inline), in `out`.
/// Inline commands split on spaces and tabs; an empty request yields no arguments.
pub fn command_args<'a>(frame: &'a [u8], out: &mut Vec<&'a [u8]>) -> Result<(), FrameError> {
    out.clear();
    if frame.first() != Some(&b'*') {
        let line = frame.strip_suffix(b"\n").unwrap_or(frame);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend(
            line.split(|&b| b == b' ' || b == b'\t')
                .filter(|a| !a.is_empty()),
        );
        return Ok(());
    }
    let bad = FrameError::Protocol("not a complete RESP request");
    let cr = frame.iter().position(|&b| b == b'\r').ok_or(bad.clone())?;
    let count = header_number(&frame[1..cr])?;
    let mut at = cr + 2;
    for _ in 0..count.max(0) {
        let rest = frame.get(at..).ok_or(bad.clone())?;
        let cr = rest.iter().position(|&b| b == b'\r').ok_or(bad.clone())?;
        let len = usize::try_from(header_number(&rest[1..cr])?).map_err(|_| bad.clone())?;
        let start = at + cr + 2;
        out.push(frame.get(start..start + len).ok_or(bad.clone())?);
        at = start + len + 2;
    }
    Ok(())
}

/// Appends RESP2 replies to a buffer.
#[derive(Debug)]
pub struct Reply<'a>(pub &'a mut Vec<u8>);

impl Reply<'_> {
    /// `+OK`-style status.
    pub fn simple(&mut self, s: &str) {
        self.0.push(b'+');
        self.0.extend_from_slice(s.as_bytes());
        self.0.extend_from_slice(b"\r\n");
    }

    /// `-ERR ...`; CR/LF in the text (echoed user input) become spaces.
    pub fn error(&mut self, s: &str) {
        self.0.push(b'-');
        self.0.extend(
            s.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        self.0.extend_from_slice(b"\r\n");
    }

    /// `:n`.
    pub fn integer(&mut self, n: i64) {
        self.0.push(b':');
        self.0.extend_from_slice(n.to_string().as_bytes());
        self.0.extend_from_slice(b"\r\n");
    }

    /// `$len\r\nbytes\r\n`.
    pub fn bulk(&mut self, b: &[u8]) {
        self.0.push(b'$');
        self.0.extend_from_slice(b.len().to_string().as_bytes());
        self.0.extend_from_slice(b"\r\n");
        self.0.extend_from_slice(b);
        self.0.extend_from_slice(b"\r\n");
    }

    /// `$-1` (nil).
    pub fn null(&mut self) {
        self.0.extend_from_slice(b"$-1\r\n");
    }

    /// `*n` header.
    pub fn array(&mut self, n: usize) {
        self.0.push(b'*');
        self.0.extend_from_slice(n.to_string().as_bytes());
        self.0.extend_from_slice(b"\r\n");
    }

    /// Redis' arity error.
    pub fn arity(&mut self, cmd: &str) {
        self.error(&format!(
            "ERR wrong number of arguments for '{cmd}' command"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenfd_engine::split_frames;
    use proptest::prelude::*;

    /// Feeds `stream` to `framing` in pieces cut at `cuts`, as the engine does (leftover
    /// bytes kept, new bytes appended), and returns the frames.
    fn reassemble<F: Framing>(framing: &F, stream: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        points.push(stream.len());
        points.sort_unstable();
        let mut pending = Vec::new();
        let mut frames = Vec::new();
        let mut from = 0;
        for to in points {
            pending.extend_from_slice(&stream[from..to]);
            from = to;
            let used = split_frames(framing, &pending, |f| {
                frames.push(framing.payload(f).to_vec());
                true
            })
            .unwrap();
            pending.drain(..used);
        }
        assert!(pending.is_empty(), "leftover bytes: {pending:?}");
        frames
    }

    proptest! {
        #[test]
        fn resp_any_split_same_commands(
            commands in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..6), 0..20),
            inline in prop::collection::vec("[A-Za-z0-9]{1,8}( [A-Za-z0-9]{1,8}){0,3}", 0..5),
            cuts in prop::collection::vec(any::<usize>(), 0..40),
        ) {
            let framing = Resp::default();
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
            let frames = reassemble(&framing, &stream, &cuts);
            let mut got = Vec::new();
            let mut args = Vec::new();
            for f in &frames {
                command_args(f, &mut args).unwrap();
                got.push(args.iter().map(|a| a.to_vec()).collect::<Vec<_>>());
            }
            prop_assert_eq!(got, want);
        }

        #[test]
        fn resp_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let framing = Resp { max: 1000 };
            if let Parsed::Frame(n) = framing.parse(&bytes) {
                prop_assert!(n > 0 && n <= bytes.len());
                let mut args = Vec::new();
                let _ = command_args(&bytes[..n], &mut args);
            }
        }
    }

    #[test]
    fn malformed_requests_are_invalid() {
        assert!(matches!(
            Resp { max: 20 }.parse(b"*1\r\n$100\r\n"),
            Parsed::Invalid(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            Resp::default().parse(b"*1\r\n$3\r\nabcXY"),
            Parsed::Invalid(FrameError::Protocol(_))
        ));
        assert!(matches!(
            Resp::default().parse(b"*1\r\n:3\r\n"),
            Parsed::Invalid(FrameError::Protocol(_))
        ));
        assert!(matches!(
            Resp::default().parse(b"*x\r\n"),
            Parsed::Invalid(FrameError::Protocol(_))
        ));
    }
}
