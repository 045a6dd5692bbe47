//! A connection's unsent output: a queue of byte chunks written with one `sendmsg`.
//!
//! Small replies are appended to the last chunk (so a burst of pipelined replies goes
//! out in one syscall); a large owned buffer from [`crate::EngineHandle::send`] is
//! queued as its own chunk without copying, and a shared buffer ([`bytes::Bytes`],
//! e.g. a value held by a store) is queued by reference, so a large reply costs no copy
//! of its values. An empty buffer holds no allocation, so idle connections cost nothing
//! here, and the chunks of a large reply are freed as soon as they are sent.

use bytes::Bytes;
use rustix::net::{SendAncillaryBuffer, SendFlags};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::BorrowedFd;

/// Chunks grow to this size before a new one is started.
const CHUNK: usize = 16 * 1024;
/// Buffers smaller than this are copied into the tail chunk instead of queued.
const COPY_BELOW: usize = 4 * 1024;
/// Most chunks handed to one `sendmsg`.
const MAX_IOV: usize = 64;

/// One queued piece of output.
#[derive(Debug)]
enum Chunk {
    /// Bytes the connection owns (copied replies, owned sends).
    Owned(Vec<u8>),
    /// A shared buffer, sent by reference.
    Shared(Bytes),
}

impl Chunk {
    /// The chunk's bytes.
    fn as_slice(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(b) => b,
        }
    }
}

/// Unsent bytes of one connection.
#[derive(Debug, Default)]
pub(crate) struct OutBuf {
    /// Chunks in send order; the first may be partly sent.
    chunks: VecDeque<Chunk>,
    /// Bytes of the first chunk already sent.
    head: usize,
    /// Unsent bytes in total.
    len: usize,
}

impl OutBuf {
    /// Unsent bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether everything has been sent.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a copy of `bytes`.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        if let Some(Chunk::Owned(last)) = self.chunks.back_mut()
            && last.len() + bytes.len() <= CHUNK
        {
            last.extend_from_slice(bytes);
            return;
        }
        let mut chunk = Vec::with_capacity(bytes.len().clamp(1024, CHUNK));
        chunk.extend_from_slice(bytes);
        self.chunks.push_back(Chunk::Owned(chunk));
    }

    /// Appends an owned buffer, without copying it when it is large.
    pub(crate) fn push_owned(&mut self, bytes: Vec<u8>) {
        if bytes.len() < COPY_BELOW {
            self.push(&bytes);
        } else {
            self.len += bytes.len();
            self.chunks.push_back(Chunk::Owned(bytes));
        }
    }

    /// Appends a shared buffer, by reference when it is large.
    pub(crate) fn push_shared(&mut self, bytes: Bytes) {
        if bytes.len() < COPY_BELOW {
            self.push(&bytes);
        } else {
            self.len += bytes.len();
            self.chunks.push_back(Chunk::Shared(bytes));
        }
    }

    /// Sends as much as the socket takes in one syscall; returns the bytes sent.
    /// `MSG_NOSIGNAL`: a vanished peer is an `EPIPE` error, never a `SIGPIPE`.
    pub(crate) fn write_to(&mut self, fd: BorrowedFd<'_>) -> io::Result<usize> {
        let n = if self.chunks.len() == 1 {
            rustix::net::send(
                fd,
                &self.chunks[0].as_slice()[self.head..],
                SendFlags::NOSIGNAL,
            )?
        } else {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut count = 0;
            for (slot, chunk) in iov.iter_mut().zip(self.chunks.iter()) {
                let from = if count == 0 { self.head } else { 0 };
                *slot = IoSlice::new(&chunk.as_slice()[from..]);
                count += 1;
            }
            rustix::net::sendmsg(
                fd,
                &iov[..count],
                &mut SendAncillaryBuffer::default(),
                SendFlags::NOSIGNAL,
            )?
        };
        self.consume(n);
        Ok(n)
    }

    /// Drops the first `n` unsent bytes.
    fn consume(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            let remaining = self.chunks[0].as_slice().len() - self.head;
            if n >= remaining {
                self.chunks.pop_front();
                self.head = 0;
                n -= remaining;
            } else {
                self.head += n;
                n = 0;
            }
        }
        if self.chunks.is_empty() {
            // Release the deque's own allocation too: idle connections hold nothing.
            self.chunks = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn chunks_go_out_in_order_through_one_vectored_write() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut out = OutBuf::default();
        let mut want = Vec::new();
        for i in 0..150u32 {
            let piece = vec![i as u8; (i as usize * 97) % 9000];
            want.extend_from_slice(&piece);
            match i % 3 {
                0 => out.push(&piece),
                1 => out.push_owned(piece),
                _ => out.push_shared(Bytes::from(piece)),
            }
        }
        assert_eq!(out.len(), want.len());
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            b.read_to_end(&mut got).unwrap();
            got
        });
        while !out.is_empty() {
            out.write_to(a.as_fd()).unwrap();
        }
        drop(a);
        assert_eq!(reader.join().unwrap(), want);
    }
}
