//! Framing strategies: how a connection's byte stream splits into messages.
//!
//! A [`Framing`] is stateless: it looks at the unconsumed bytes of one connection and
//! says how long the first frame is, that it needs more bytes, or that the stream is
//! invalid (which disconnects that client only). Keeping it stateless lets one
//! strategy value serve every connection of an engine, and lets the engine parse
//! straight out of its shared read buffer, copying only the tail of a partial frame.
//!
//! Every strategy has a maximum frame size, so a client can never make the engine
//! buffer more than that many bytes of input.

use std::fmt;

/// What a [`Framing`] found at the start of a buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete frame of this many bytes (header and delimiters included).
    Frame(usize),
    /// The buffer holds only the beginning of a frame.
    NeedMore,
    /// The stream can never become valid; the connection is dropped.
    Invalid(FrameError),
}

/// Why a stream was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame (or its declared length) exceeds the strategy's maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The declared or buffered length.
        len: usize,
        /// The strategy's maximum frame size.
        max: usize,
    },
    /// The bytes break the protocol.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

/// Splits a byte stream into frames.
pub trait Framing: Send {
    /// Looks at the first frame in `buf` (which never starts mid-frame).
    fn parse(&self, buf: &[u8]) -> Parsed;

    /// The largest frame this strategy accepts, in bytes.
    fn max_frame(&self) -> usize;

    /// The message inside a complete frame (header or delimiter stripped).
    fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        frame
    }

    /// Appends `payload` to `out` framed the way [`Framing::parse`] reads it.
    fn encode(&self, payload: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(payload);
    }
}

/// Calls `on_frame` for every complete frame at the start of `buf`; returns how many
/// bytes those frames used. Stops early (without consuming more) when `on_frame`
/// returns false. The one parse loop the engine uses, so property tests cover it.
pub fn split_frames<F: Framing + ?Sized>(
    framing: &F,
    buf: &[u8],
    mut on_frame: impl FnMut(&[u8]) -> bool,
) -> Result<usize, FrameError> {
    let max = framing.max_frame();
    let mut at = 0;
    while at < buf.len() {
        match framing.parse(&buf[at..]) {
            Parsed::Frame(len) => {
                // A framing that reports an empty or overlong frame is buggy; treat
                // it as a protocol error rather than looping or slicing out of range.
                if len == 0 || len > buf.len() - at {
                    return Err(FrameError::Protocol("framing reported a bad length"));
                }
                if len > max {
                    return Err(FrameError::TooLarge { len, max });
                }
                let keep_going = on_frame(&buf[at..at + len]);
                at += len;
                if !keep_going {
                    break;
                }
            }
            Parsed::NeedMore => {
                let pending = buf.len() - at;
                if pending > max {
                    return Err(FrameError::TooLarge { len: pending, max });
                }
                break;
            }
            Parsed::Invalid(e) => return Err(e),
        }
    }
    Ok(at)
}

/// Default maximum frame for [`Lines`] and [`LengthPrefixed`]: 1 MiB.
pub const DEFAULT_MAX_FRAME: usize = 1 << 20;

/// Whatever bytes arrived, as one frame per read (echo servers, proxies).
#[derive(Clone, Copy, Debug)]
pub struct Raw {
    /// The most bytes handed over in one frame.
    pub max: usize,
}

impl Default for Raw {
    fn default() -> Self {
        Raw { max: 64 * 1024 }
    }
}

impl Framing for Raw {
    fn parse(&self, buf: &[u8]) -> Parsed {
        Parsed::Frame(buf.len().min(self.max))
    }

    fn max_frame(&self) -> usize {
        self.max
    }
}

/// `\n`-terminated lines (a trailing `\r` is stripped from the payload).
#[derive(Clone, Copy, Debug)]
pub struct Lines {
    /// The longest line accepted, terminator included.
    pub max: usize,
}

impl Default for Lines {
    fn default() -> Self {
        Lines {
            max: DEFAULT_MAX_FRAME,
        }
    }
}

impl Framing for Lines {
    fn parse(&self, buf: &[u8]) -> Parsed {
        let window = &buf[..buf.len().min(self.max)];
        match window.iter().position(|&b| b == b'\n') {
            Some(i) => Parsed::Frame(i + 1),
            None if buf.len() >= self.max => Parsed::Invalid(FrameError::TooLarge {
                len: buf.len(),
                max: self.max,
            }),
            None => Parsed::NeedMore,
        }
    }

    fn max_frame(&self) -> usize {
        self.max
    }

    fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        let line = frame.strip_suffix(b"\n").unwrap_or(frame);
        line.strip_suffix(b"\r").unwrap_or(line)
    }

    fn encode(&self, payload: &[u8], out: &mut Vec<u8>) {
        out.extend_from_slice(payload);
        out.push(b'\n');
    }
}

/// Width of a [`LengthPrefixed`] header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix {
    /// A big-endian `u16` length.
    U16,
    /// A big-endian `u32` length.
    U32,
}

impl Prefix {
    /// Header size in bytes.
    fn size(self) -> usize {
        match self {
            Prefix::U16 => 2,
            Prefix::U32 => 4,
        }
    }
}

/// A big-endian length header followed by that many payload bytes.
#[derive(Clone, Copy, Debug)]
pub struct LengthPrefixed {
    /// Header width.
    pub prefix: Prefix,
    /// The largest frame accepted, header included.
    pub max: usize,
}

impl LengthPrefixed {
    /// `u16` headers; frames up to 65 537 bytes.
    pub fn u16() -> Self {
        LengthPrefixed {
            prefix: Prefix::U16,
            max: 2 + u16::MAX as usize,
        }
    }

    /// `u32` headers; frames up to [`DEFAULT_MAX_FRAME`].
    pub fn u32() -> Self {
        LengthPrefixed {
            prefix: Prefix::U32,
            max: DEFAULT_MAX_FRAME,
        }
    }

    /// The same header width with another maximum frame size.
    pub fn with_max(self, max: usize) -> Self {
        LengthPrefixed { max, ..self }
    }
}

impl Framing for LengthPrefixed {
    fn parse(&self, buf: &[u8]) -> Parsed {
        let header = self.prefix.size();
        if buf.len() < header {
            return Parsed::NeedMore;
        }
        let len = match self.prefix {
            Prefix::U16 => u16::from_be_bytes([buf[0], buf[1]]) as usize,
            Prefix::U32 => u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize,
        };
        let total = header + len;
        if total > self.max {
            return Parsed::Invalid(FrameError::TooLarge {
                len: total,
                max: self.max,
            });
        }
        if buf.len() < total {
            Parsed::NeedMore
        } else {
            Parsed::Frame(total)
        }
    }

    fn max_frame(&self) -> usize {
        self.max
    }

    fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        &frame[self.prefix.size().min(frame.len())..]
    }

    fn encode(&self, payload: &[u8], out: &mut Vec<u8>) {
        match self.prefix {
            Prefix::U16 => out.extend_from_slice(&(payload.len() as u16).to_be_bytes()),
            Prefix::U32 => out.extend_from_slice(&(payload.len() as u32).to_be_bytes()),
        }
        out.extend_from_slice(payload);
    }
}

impl fmt::Display for Parsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Parsed::Frame(n) => write!(f, "frame of {n} bytes"),
            Parsed::NeedMore => f.write_str("need more bytes"),
            Parsed::Invalid(e) => write!(f, "invalid: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `stream` to `framing` in pieces cut at `cuts`, as the engine does (leftover
    /// bytes kept, new bytes appended), and returns the payloads.
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

    fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..30)
    }

    proptest! {
        #[test]
        fn lines_any_split_same_frames(
            lines in prop::collection::vec("[^\n\r]{0,200}", 0..30),
            cuts in prop::collection::vec(any::<usize>(), 0..40),
        ) {
            let framing = Lines { max: 1024 };
            let mut stream = Vec::new();
            for l in &lines { framing.encode(l.as_bytes(), &mut stream); }
            let got = reassemble(&framing, &stream, &cuts);
            let want: Vec<Vec<u8>> = lines.iter().map(|l| l.as_bytes().to_vec()).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn length_prefixed_u16_any_split_same_frames(
            frames in payloads(),
            cuts in prop::collection::vec(any::<usize>(), 0..40),
        ) {
            let framing = LengthPrefixed::u16();
            let mut stream = Vec::new();
            for p in &frames { framing.encode(p, &mut stream); }
            prop_assert_eq!(reassemble(&framing, &stream, &cuts), frames);
        }

        #[test]
        fn length_prefixed_u32_any_split_same_frames(
            frames in payloads(),
            cuts in prop::collection::vec(any::<usize>(), 0..40),
        ) {
            let framing = LengthPrefixed::u32().with_max(4096);
            let mut stream = Vec::new();
            for p in &frames { framing.encode(p, &mut stream); }
            prop_assert_eq!(reassemble(&framing, &stream, &cuts), frames);
        }

        #[test]
        fn raw_any_split_same_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..2000),
            cuts in prop::collection::vec(any::<usize>(), 0..40),
        ) {
            let framing = Raw { max: 100 };
            let got: Vec<u8> = reassemble(&framing, &bytes, &cuts).concat();
            prop_assert_eq!(got, bytes);
        }

    }

    #[test]
    fn oversized_frames_are_invalid() {
        assert!(matches!(
            Lines { max: 8 }.parse(b"123456789"),
            Parsed::Invalid(FrameError::TooLarge { .. })
        ));
        assert_eq!(Lines { max: 8 }.parse(b"1234567\n"), Parsed::Frame(8));
        let lp = LengthPrefixed::u32().with_max(100);
        assert!(matches!(
            lp.parse(&[0, 0, 1, 0]),
            Parsed::Invalid(FrameError::TooLarge { len: 260, .. })
        ));
    }

    #[test]
    fn split_frames_rejects_a_partial_frame_beyond_max() {
        // Raw never says NeedMore, so use a framing whose parse is lenient and rely on
        // the engine-side guard.
        struct Lenient;
        impl Framing for Lenient {
            fn parse(&self, _: &[u8]) -> Parsed {
                Parsed::NeedMore
            }
            fn max_frame(&self) -> usize {
                4
            }
        }
        assert_eq!(split_frames(&Lenient, b"1234", |_| true), Ok(0));
        assert!(split_frames(&Lenient, b"12345", |_| true).is_err());
    }
}
