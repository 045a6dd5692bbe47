//! The event loop: one reactor thread, one epoll instance, every connection of one
//! listening socket.
//!
//! # One loop iteration (read it like redis' `ae.c`)
//!
//! 1. `epoll_wait` — blocks unless some connection still has input to process (then it
//!    only polls) or accepting is paused (then it wakes to retry).
//! 2. For each event: the listener → accept until `EAGAIN`; the waker → drain the
//!    cross-thread send queue; a connection → mark it readable (and queue a flush if it
//!    became writable).
//! 3. Every readable connection reads (edge-triggered, so until `EAGAIN`) into one
//!    shared 64 KiB buffer, splits frames straight out of it and calls the handler; only
//!    the tail of a partial frame is copied into the connection's own buffer. A
//!    connection that keeps sending gets a read budget per iteration and goes back on
//!    the ready list, so it cannot starve the others.
//! 4. Every connection with output writes it (one `sendmsg` of queued chunks). Only if
//!    the socket refuses part of it is `EPOLLOUT` registered; it is removed again as
//!    soon as the output is gone.
//!
//! # Backpressure
//!
//! Each connection's queued output (replies from callbacks plus sends from other
//! threads, not yet accepted by the kernel) lives in one atomic word per slot, packed
//! with the connection's generation: `send` reserves room with a compare-and-swap and
//! fails with [`SendError::Full`] past [`Config::max_output`], and a slot reused by a
//! newer connection can never be charged for an older one's bytes. While a connection's
//! queued output is above half the bound, the engine stops reading its requests, so a
//! client that pipelines requests without reading replies stalls itself (its kernel
//! buffers fill and TCP flow control pushes back), not the server's memory.
//!
//! # Short reads
//!
//! "Read until `EAGAIN`" costs one extra `recv` per wake-up. A read that returns less
//! than the buffer size proves the socket's queue was empty at that instant, and any
//! byte that arrives afterwards raises a new edge, so the loop stops there too, except
//! after `EPOLLRDHUP`: the hang-up was already reported and will not be reported again,
//! so then it reads on until end of stream.
//!
//! # Running out of file descriptors
//!
//! `accept` failing with `EMFILE`/`ENFILE`/`ENOBUFS`/`ENOMEM` leaves the connection in
//! the backlog; a level-triggered listener would report it again at once and spin. The
//! engine disarms the listener instead (`EPOLL_CTL_MOD` to no events) and retries when
//! one of its own connections closes, or after [`Config::accept_retry`] (for fds freed
//! elsewhere in the process). The pending clients are then served, not dropped.

use crate::framing::{FrameError, Framing, split_frames};
use crate::outbuf::OutBuf;
use greenfd_reactor::{EventBuffer, Interest, Mode, Poller, Waker};
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

/// Token of the listening socket.
const LISTENER: u64 = u64::MAX;
/// Token of the cross-thread waker.
const WAKER: u64 = u64::MAX - 1;
/// Bits of a slot word that count queued bytes (the rest hold the generation).
const PENDING_BITS: u32 = 40;
/// Mask of the queued-bytes part of a slot word.
const PENDING_MASK: u64 = (1 << PENDING_BITS) - 1;
/// Generations wrap within 24 bits (they share the slot word with the byte count).
const GEN_MASK: u32 = (1 << (64 - PENDING_BITS)) - 1;
/// `recv` calls one connection gets per loop iteration before others get a turn.
const READ_BUDGET: usize = 16;

/// Identifies one connection for its whole life; never reused while the engine runs
/// long enough for 16 million connections to come and go through the same slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

impl ConnId {
    /// Builds the id of slot `index` at generation `generation`.
    fn new(index: usize, generation: u32) -> ConnId {
        ConnId((u64::from(generation) << 32) | index as u64)
    }

    /// The slot in the engine's connection table.
    fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    /// The generation of that slot this id belongs to.
    fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The raw value (for logs and maps).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}.{}", self.index(), self.generation())
    }
}

/// Why a connection ended.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DisconnectReason {
    /// The peer closed its end (after its remaining output was flushed).
    #[error("peer closed the connection")]
    PeerClosed,
    /// The peer reset the connection (`ECONNRESET`/`EPIPE`).
    #[error("connection reset by peer")]
    Reset,
    /// The peer sent a frame the framing rejected.
    #[error("invalid frame: {0}")]
    Invalid(FrameError),
    /// The handler asked for the connection to be closed.
    #[error("closed by the server")]
    Closed,
    /// A reply did not fit in the connection's output bound.
    #[error("output bound exceeded")]
    OutputOverflow,
    /// The engine is shutting down.
    #[error("engine shutdown")]
    Shutdown,
    /// Another socket error.
    #[error("socket error: {0}")]
    Io(io::ErrorKind),
}

/// Why [`EngineHandle::send`] (or [`Ctx::send`]) refused bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The connection's queued output would exceed [`Config::max_output`]; retry after
    /// the peer reads (the `EAGAIN` of the engine).
    #[error("the connection's output buffer is full")]
    Full,
    /// No such connection (it closed, or never existed).
    #[error("no such connection")]
    Closed,
    /// The engine has stopped.
    #[error("the engine is shut down")]
    Shutdown,
}

/// Errors of binding and running an engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Creating, binding or listening on the socket failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The failing syscall's error.
        source: io::Error,
    },
    /// The reactor itself failed (epoll or eventfd).
    #[error("reactor error: {0}")]
    Io(#[from] io::Error),
    /// An engine thread panicked (its handler, most likely).
    #[error("engine thread panicked")]
    Panicked,
}

/// Tunables of one engine.
#[derive(Clone, Debug)]
pub struct Config {
    /// Most bytes queued for one connection (replies and cross-thread sends not yet
    /// accepted by the kernel). The engine stops reading a connection's requests while
    /// more than half of this is queued, so the replies to one frame should fit in the
    /// other half; a reply that does not fit fails with [`SendError::Full`].
    pub max_output: usize,
    /// Most simultaneous connections; accepting pauses at this count.
    pub max_connections: usize,
    /// Set `SO_REUSEPORT` so several engines can share one port.
    pub reuse_port: bool,
    /// `listen(2)` backlog.
    pub backlog: i32,
    /// Size of the shared read buffer.
    pub read_buffer: usize,
    /// Most events taken from one `epoll_wait`.
    pub events: usize,
    /// Set `TCP_NODELAY` on accepted connections (request/response latency).
    pub nodelay: bool,
    /// While accepting is paused for lack of fds, how often to retry.
    pub accept_retry: Duration,
    /// Opt-in spin-before-park: poll without blocking for up to this long before
    /// `epoll_wait` sleeps (zero, the default, never spins). Trades a CPU for latency
    /// where a wake-up is expensive (cross-CPU in a VM: ~25 µs).
    pub busy_poll: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_output: 4 << 20,
            max_connections: 16 * 1024,
            reuse_port: false,
            backlog: 1024,
            read_buffer: 64 * 1024,
            events: 256,
            nodelay: true,
            accept_retry: Duration::from_millis(100),
            busy_poll: Duration::ZERO,
        }
    }
}

/// Application callbacks, all called on the reactor thread.
pub trait Handler {
    /// A connection was accepted.
    fn on_connect(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        let _ = (ctx, id);
    }

    /// A complete frame arrived (header/delimiter included; see [`Framing::payload`]).
    fn on_message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, frame: &[u8]);

    /// A connection ended; `ctx` can still reach the other connections.
    fn on_disconnect(&mut self, ctx: &mut Ctx<'_>, id: ConnId, reason: &DisconnectReason) {
        let _ = (ctx, id, reason);
    }
}

/// Counters of one engine (all monotonic except `connections`).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Connections accepted.
    accepted: AtomicU64,
    /// Connections closed.
    closed: AtomicU64,
    /// Frames delivered to the handler.
    frames: AtomicU64,
    /// Bytes read from clients.
    bytes_in: AtomicU64,
    /// Bytes written to clients.
    bytes_out: AtomicU64,
    /// `recv` calls that returned data.
    reads: AtomicU64,
    /// Send attempts refused with [`SendError::Full`].
    send_full: AtomicU64,
    /// Times accepting paused because fds (or memory) ran out.
    accept_pauses: AtomicU64,
    /// Connections dropped for invalid frames.
    invalid_frames: AtomicU64,
    /// The most bytes ever queued for one connection.
    peak_queued: AtomicU64,
}

/// The engine's counters at one moment ([`EngineHandle::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed.
    pub closed: u64,
    /// Frames delivered to the handler.
    pub frames: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// `recv` calls that returned data.
    pub reads: u64,
    /// Send attempts refused with [`SendError::Full`].
    pub send_full: u64,
    /// Times accepting paused because fds (or memory) ran out.
    pub accept_pauses: u64,
    /// Connections dropped for invalid frames.
    pub invalid_frames: u64,
    /// The most bytes ever queued for one connection (never above the bound).
    pub peak_queued: u64,
}

impl Stats {
    /// Adds `n` to a counter.
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads every counter.
    fn snapshot(&self) -> StatsSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            accepted: g(&self.accepted),
            closed: g(&self.closed),
            frames: g(&self.frames),
            bytes_in: g(&self.bytes_in),
            bytes_out: g(&self.bytes_out),
            reads: g(&self.reads),
            send_full: g(&self.send_full),
            accept_pauses: g(&self.accept_pauses),
            invalid_frames: g(&self.invalid_frames),
            peak_queued: g(&self.peak_queued),
        }
    }
}

/// State shared between the reactor thread and every [`EngineHandle`].
#[derive(Debug)]
struct Shared {
    /// Wakes the reactor when a cross-thread send or shutdown is queued.
    waker: Waker,
    /// Per slot: generation (high bits) and queued output bytes (low bits).
    slots: Box<[AtomicU64]>,
    /// Asked to stop.
    shutdown: AtomicBool,
    /// Has stopped; sends fail with [`SendError::Shutdown`].
    stopped: AtomicBool,
    /// Counters.
    stats: Stats,
    /// The per-connection output bound.
    max_output: u64,
}

impl Shared {
    /// Reserves `len` bytes of `id`'s output bound.
    fn reserve(&self, id: ConnId, len: usize) -> Result<(), SendError> {
        if self.stopped.load(Ordering::Acquire) {
            return Err(SendError::Shutdown);
        }
        let slot = self.slots.get(id.index()).ok_or(SendError::Closed)?;
        let len = len as u64;
        let mut word = slot.load(Ordering::Acquire);
        loop {
            if (word >> PENDING_BITS) as u32 != id.generation() {
                return Err(SendError::Closed);
            }
            let queued = (word & PENDING_MASK) + len;
            if queued > self.max_output {
                Stats::add(&self.stats.send_full, 1);
                return Err(SendError::Full);
            }
            match slot.compare_exchange_weak(word, word + len, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    self.stats.peak_queued.fetch_max(queued, Ordering::Relaxed);
                    return Ok(());
                }
                Err(now) => word = now,
            }
        }
    }

    /// Bytes queued for the connection in slot `index` (any generation).
    fn queued(&self, index: usize) -> u64 {
        self.slots[index].load(Ordering::Acquire) & PENDING_MASK
    }
}

/// A `Send + Sync` handle to a running engine: send to any connection from any thread,
/// read statistics, shut the engine down.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    /// The queue the reactor drains after each wake.
    tx: Sender<(ConnId, Vec<u8>)>,
    /// Slot words, waker, flags and counters.
    shared: Arc<Shared>,
}

impl EngineHandle {
    /// Queues `bytes` for connection `id` and wakes the reactor. Fails at once with
    /// [`SendError::Full`] when the connection's output bound is reached (the caller
    /// decides whether to retry, drop or disconnect); never blocks.
    pub fn send(&self, id: ConnId, bytes: impl Into<Vec<u8>>) -> Result<(), SendError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Ok(());
        }
        self.shared.reserve(id, bytes.len())?;
        // A closed queue means the engine was dropped; the reservation dies with the slot.
        self.tx.send((id, bytes)).map_err(|_| SendError::Shutdown)?;
        self.shared.waker.wake().map_err(|e| {
            tracing::warn!(error = %e, "engine waker failed");
            SendError::Shutdown
        })
    }

    /// Bytes queued for `id` and not yet accepted by the kernel (`None` if it is gone).
    pub fn queued(&self, id: ConnId) -> Option<usize> {
        let word = self.shared.slots.get(id.index())?.load(Ordering::Acquire);
        ((word >> PENDING_BITS) as u32 == id.generation()).then_some((word & PENDING_MASK) as usize)
    }

    /// The per-connection output bound.
    pub fn max_output(&self) -> usize {
        self.shared.max_output as usize
    }

    /// The engine's counters now.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.stats.snapshot()
    }

    /// Asks the engine to stop: it stops accepting, flushes what the sockets take
    /// without blocking, reports [`DisconnectReason::Shutdown`] for every connection and
    /// returns from [`Engine::run`].
    pub fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::Release);
        if let Err(e) = self.shared.waker.wake() {
            tracing::warn!(error = %e, "engine waker failed during shutdown");
        }
    }

    /// Whether the engine has stopped.
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }
}

/// One connection, owned by the reactor thread.
#[derive(Debug)]
struct Conn {
    /// The accepted socket (non-blocking).
    fd: OwnedFd,
    /// Its id (slot and generation).
    id: ConnId,
    /// Tail of a partial frame (empty most of the time).
    inbuf: Vec<u8>,
    /// Output not yet accepted by the kernel.
    out: OutBuf,
    /// An edge was reported and the socket has not been read to empty since.
    readable: bool,
    /// The peer's hang-up was reported: read until end of stream, not just a short read.
    rdhup: bool,
    /// Buffered frames were left unparsed because output was over the high-water mark.
    stalled: bool,
    /// `EPOLLOUT` is currently registered.
    want_write: bool,
    /// On the ready list.
    in_ready: bool,
    /// On the flush list.
    in_flush: bool,
    /// Close once the output is flushed, with this reason.
    closing: Option<DisconnectReason>,
}

/// Everything the loop mutates except the handler, the framing and the read buffer, so
/// a [`Ctx`] can borrow it while a frame borrowed from the read buffer is alive.
struct Core {
    /// The epoll instance.
    poller: Poller,
    /// Shared with handles.
    shared: Arc<Shared>,
    /// A sender for handles made from inside callbacks.
    tx: Sender<(ConnId, Vec<u8>)>,
    /// Connection table, indexed by slot.
    conns: Vec<Option<Conn>>,
    /// Current generation of each slot.
    generations: Vec<u32>,
    /// Free slots.
    free: Vec<usize>,
    /// Connections with input to process.
    ready: VecDeque<usize>,
    /// Connections with output to write.
    flush: Vec<usize>,
    /// Read pausing threshold (half the output bound).
    high_water: u64,
    /// Open connections.
    live: usize,
    /// Set when a connection closed (an fd was freed): retry a paused accept now.
    fd_freed: bool,
}

/// What a callback can do: reply, close, reach other connections, get a handle.
pub struct Ctx<'a> {
    /// The loop's state.
    core: &'a mut Core,
    /// The connection the callback is about, unless it is gone.
    current: Option<ConnId>,
}

impl Ctx<'_> {
    /// The connection this callback is about (`None` in `on_disconnect`).
    pub fn id(&self) -> Option<ConnId> {
        self.current
    }

    /// Replies to the current connection, directly into its output buffer (no queue,
    /// no wake-up). Fails with [`SendError::Full`] past the output bound.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        let id = self.current.ok_or(SendError::Closed)?;
        self.core.queue_output(id, bytes)
    }

    /// Sends to any connection of this engine, directly.
    pub fn send_to(&mut self, id: ConnId, bytes: &[u8]) -> Result<(), SendError> {
        self.core.queue_output(id, bytes)
    }

    /// Closes the current connection once its queued output has been written.
    pub fn close(&mut self) {
        if let Some(id) = self.current {
            self.close_conn(id);
        }
    }

    /// Closes connection `id` once its queued output has been written.
    pub fn close_conn(&mut self, id: ConnId) {
        if let Some(conn) = self.core.conn_mut(id) {
            conn.closing.get_or_insert(DisconnectReason::Closed);
            self.core.schedule_flush(id.index());
        }
    }

    /// Bytes queued for the current connection.
    pub fn queued(&self) -> usize {
        self.current
            .map_or(0, |id| self.core.shared.queued(id.index()) as usize)
    }

    /// A handle to this engine, for other threads.
    pub fn handle(&self) -> EngineHandle {
        EngineHandle {
            tx: self.core.tx.clone(),
            shared: Arc::clone(&self.core.shared),
        }
    }
}

impl Core {
    /// The live connection with this exact id.
    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns
            .get_mut(id.index())?
            .as_mut()
            .filter(|c| c.id == id)
    }

    /// Puts a slot on the flush list once.
    fn schedule_flush(&mut self, index: usize) {
        if let Some(conn) = self.conns[index].as_mut()
            && !conn.in_flush
        {
            conn.in_flush = true;
            self.flush.push(index);
        }
    }

    /// Puts a slot on the ready list once.
    fn schedule_read(&mut self, index: usize) {
        if let Some(conn) = self.conns[index].as_mut()
            && !conn.in_ready
        {
            conn.in_ready = true;
            self.ready.push_back(index);
        }
    }

    /// Reserves room and appends `bytes` to `id`'s output.
    fn queue_output(&mut self, id: ConnId, bytes: &[u8]) -> Result<(), SendError> {
        if bytes.is_empty() {
            return if self.conn_mut(id).is_some() {
                Ok(())
            } else {
                Err(SendError::Closed)
            };
        }
        let conn = self.conn_mut(id).ok_or(SendError::Closed)?;
        if conn.closing.is_some() {
            return Err(SendError::Closed);
        }
        self.shared.reserve(id, bytes.len())?;
        let conn = self.conn_mut(id).ok_or(SendError::Closed)?;
        conn.out.push(bytes);
        self.schedule_flush(id.index());
        Ok(())
    }

    /// Whether parsing more frames of `id` should go on after a callback.
    fn may_parse(&self, id: ConnId) -> bool {
        match self.conns[id.index()].as_ref() {
            Some(c) if c.id == id => {
                c.closing.is_none() && self.shared.queued(id.index()) < self.high_water
            }
            _ => false,
        }
    }

    /// Registers a freshly accepted socket.
    fn insert(&mut self, fd: OwnedFd) -> io::Result<ConnId> {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.generations.push(0);
                self.conns.len() - 1
            }
        };
        let mut generation = (self.generations[index] + 1) & GEN_MASK;
        if generation == 0 {
            generation = 1;
        }
        self.generations[index] = generation;
        let id = ConnId::new(index, generation);
        if let Err(e) = self
            .poller
            .add(fd.as_fd(), id.0, Interest::READABLE, Mode::Edge)
        {
            self.free.push(index);
            return Err(e);
        }
        self.shared.slots[index].store(u64::from(generation) << PENDING_BITS, Ordering::Release);
        self.conns[index] = Some(Conn {
            fd,
            id,
            inbuf: Vec::new(),
            out: OutBuf::default(),
            readable: false,
            rdhup: false,
            stalled: false,
            want_write: false,
            in_ready: false,
            in_flush: false,
            closing: None,
        });
        self.live += 1;
        Ok(id)
    }

    /// Removes a connection, closing its socket; returns its id for the callback.
    fn remove(&mut self, index: usize) -> Option<ConnId> {
        let conn = self.conns[index].take()?;
        // Slot word to generation 0: every outstanding id of this slot is now stale,
        // and bytes still in the queue for it are dropped when drained.
        self.shared.slots[index].store(0, Ordering::Release);
        self.free.push(index);
        self.live -= 1;
        self.fd_freed = true;
        Stats::add(&self.shared.stats.closed, 1);
        tracing::trace!(fd = conn.fd.as_raw_fd(), id = %conn.id, "close");
        // Dropping the fd closes it, which also removes it from the epoll set (we never
        // dup connection sockets).
        Some(conn.id)
    }
}

/// A TCP server: one listening socket, one framing, one handler, run on one thread.
pub struct Engine<F, H> {
    /// Loop state shared with callbacks.
    core: Core,
    /// The cross-thread queue.
    rx: Receiver<(ConnId, Vec<u8>)>,
    /// How the byte stream splits into frames.
    framing: F,
    /// The application.
    handler: H,
    /// The listening socket (closed at shutdown).
    listener: Option<TcpListener>,
    /// Its address (with the real port when bound to port 0).
    local_addr: SocketAddr,
    /// The one read buffer every connection reads into.
    rbuf: Box<[u8]>,
    /// Accepting is paused (fds ran out); retry at this instant.
    accept_paused: Option<Instant>,
    /// Tunables.
    config: Config,
}

/// Creates a non-blocking listening TCP socket, with `SO_REUSEPORT` if asked.
fn listen(addr: SocketAddr, config: &Config) -> io::Result<TcpListener> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let fd = rustix::net::socket_with(
        family,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
    if config.reuse_port {
        rustix::net::sockopt::set_socket_reuseport(&fd, true)?;
    }
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, config.backlog)?;
    tracing::trace!(fd = fd.as_raw_fd(), %addr, "listen");
    Ok(TcpListener::from(fd))
}

/// Whether an `accept` error means "out of fds or memory": pause, don't spin.
fn is_resource_exhaustion(e: Errno) -> bool {
    e == Errno::MFILE || e == Errno::NFILE || e == Errno::NOBUFS || e == Errno::NOMEM
}

/// The disconnect reason for a failed `recv`/`send`.
fn io_reason(e: Errno) -> DisconnectReason {
    if e == Errno::CONNRESET || e == Errno::PIPE {
        DisconnectReason::Reset
    } else {
        DisconnectReason::Io(io::Error::from(e).kind())
    }
}

impl<F: Framing, H: Handler> Engine<F, H> {
    /// Listens on `addr` with default [`Config`].
    pub fn bind(addr: SocketAddr, framing: F, handler: H) -> Result<Self, EngineError> {
        Self::bind_with(addr, framing, handler, Config::default())
    }

    /// Listens on `addr` with `config`.
    pub fn bind_with(
        addr: SocketAddr,
        framing: F,
        handler: H,
        config: Config,
    ) -> Result<Self, EngineError> {
        let listener =
            listen(addr, &config).map_err(|source| EngineError::Bind { addr, source })?;
        let local_addr = listener.local_addr()?;
        let poller = Poller::new()?;
        let waker = Waker::new()?;
        poller.add(listener.as_fd(), LISTENER, Interest::READABLE, Mode::Edge)?;
        poller.add(waker.as_fd(), WAKER, Interest::READABLE, Mode::Level)?;
        let shared = Arc::new(Shared {
            waker,
            slots: (0..config.max_connections.max(1))
                .map(|_| AtomicU64::new(0))
                .collect(),
            shutdown: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            stats: Stats::default(),
            max_output: config.max_output as u64,
        });
        let (tx, rx) = mpsc::channel();
        Ok(Engine {
            core: Core {
                poller,
                shared,
                tx,
                conns: Vec::new(),
                generations: Vec::new(),
                free: Vec::new(),
                ready: VecDeque::new(),
                flush: Vec::new(),
                high_water: (config.max_output as u64 / 2).max(1),
                live: 0,
                fd_freed: false,
            },
            rx,
            framing,
            handler,
            listener: Some(listener),
            local_addr,
            rbuf: vec![0; config.read_buffer.max(512)].into_boxed_slice(),
            accept_paused: None,
            config,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle for other threads (and for shutting down).
    pub fn handle(&self) -> EngineHandle {
        EngineHandle {
            tx: self.core.tx.clone(),
            shared: Arc::clone(&self.core.shared),
        }
    }

    /// Runs the loop on this thread until [`EngineHandle::shutdown`].
    pub fn run(mut self) -> Result<(), EngineError> {
        let result = self.run_loop();
        self.stop();
        result
    }

    /// `epoll_wait`, preceded by up to [`Config::busy_poll`] of zero-timeout polls when
    /// it would block: a request that arrives within the spin is served without the
    /// sleep/wake-up, which in a VM costs far more than the polls.
    fn wait(&self, events: &mut EventBuffer, timeout: Option<Duration>) -> io::Result<usize> {
        let poller = &self.core.poller;
        if self.config.busy_poll.is_zero() || timeout == Some(Duration::ZERO) {
            return poller.wait(events, timeout);
        }
        let start = Instant::now();
        loop {
            let n = poller.wait(events, Some(Duration::ZERO))?;
            if n > 0 {
                return Ok(n);
            }
            let spun = start.elapsed();
            if spun >= self.config.busy_poll {
                let rest = timeout.map(|t| t.saturating_sub(spun));
                return poller.wait(events, rest);
            }
            std::hint::spin_loop();
        }
    }

    /// The loop body; see the module docs.
    fn run_loop(&mut self) -> Result<(), EngineError> {
        // Made here, not stored: rustix's epoll records can hold a pointer, which would
        // make `Engine` `!Send` and stop it from being built on one thread and run on
        // another.
        let mut events = EventBuffer::with_capacity(self.config.events);
        loop {
            if self.core.shared.shutdown.load(Ordering::Acquire) {
                return Ok(());
            }
            // Work queued by callbacks that ran during the last flush (an
            // `on_disconnect` replying to others) must not wait for the next event.
            let timeout = if !self.core.ready.is_empty() || !self.core.flush.is_empty() {
                Some(Duration::ZERO)
            } else {
                self.accept_paused
                    .map(|at| at.saturating_duration_since(Instant::now()))
            };
            match self.wait(&mut events, timeout) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            let mut accept = false;
            let mut drain = false;
            for ev in events.iter() {
                match ev.token {
                    LISTENER => accept = true,
                    WAKER => drain = true,
                    token => {
                        let id = ConnId(token);
                        let core = &mut self.core;
                        let Some(conn) = core.conn_mut(id) else {
                            continue;
                        };
                        let readable = ev.is_readable();
                        if readable {
                            conn.readable = true;
                            conn.rdhup |= ev.is_read_closed() || ev.is_error();
                        }
                        let writable = ev.is_writable() && conn.want_write;
                        if readable {
                            core.schedule_read(id.index());
                        }
                        if writable {
                            core.schedule_flush(id.index());
                        }
                    }
                }
            }
            if drain {
                self.core.shared.waker.drain()?;
                self.drain_queue();
            }
            let retry_due = self
                .accept_paused
                .is_some_and(|at| self.core.fd_freed || at <= Instant::now());
            if accept || retry_due {
                self.accept_all()?;
            }
            // Only the connections ready now: one that re-queues itself for fairness
            // waits for the next iteration.
            for _ in 0..self.core.ready.len() {
                let Some(index) = self.core.ready.pop_front() else {
                    break;
                };
                if let Some(conn) = self.core.conns[index].as_mut() {
                    conn.in_ready = false;
                    self.service_read(index);
                }
            }
            self.flush_all();
        }
    }

    /// Moves cross-thread sends into their connections' output.
    fn drain_queue(&mut self) {
        while let Ok((id, bytes)) = self.rx.try_recv() {
            // Bytes for a connection that has closed are dropped; the slot word was
            // reset when it closed, so their reservation is already gone.
            if let Some(conn) = self.core.conn_mut(id)
                && conn.closing.is_none()
            {
                conn.out.push_owned(bytes);
                self.core.schedule_flush(id.index());
            }
        }
    }

    /// Accepts until `EAGAIN`, or pauses accepting when fds run out.
    fn accept_all(&mut self) -> io::Result<()> {
        let Some(listener) = self.listener.as_ref() else {
            return Ok(());
        };
        if self.accept_paused.take().is_some() {
            tracing::debug!("resuming accept");
            self.core
                .poller
                .modify(listener.as_fd(), LISTENER, Interest::READABLE, Mode::Edge)?;
        }
        self.core.fd_freed = false;
        loop {
            if self.core.live >= self.core.shared.slots.len() {
                self.pause_accept()?;
                return Ok(());
            }
            let Some(listener) = self.listener.as_ref() else {
                return Ok(());
            };
            match rustix::net::accept_with(listener, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC) {
                Ok(fd) => {
                    tracing::trace!(fd = fd.as_raw_fd(), "accept");
                    if self.config.nodelay
                        && let Err(e) = rustix::net::sockopt::set_tcp_nodelay(&fd, true)
                    {
                        tracing::debug!(error = %e, "TCP_NODELAY");
                    }
                    let id = match self.core.insert(fd) {
                        Ok(id) => id,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot register connection");
                            continue;
                        }
                    };
                    Stats::add(&self.core.shared.stats.accepted, 1);
                    let mut ctx = Ctx {
                        core: &mut self.core,
                        current: Some(id),
                    };
                    self.handler.on_connect(&mut ctx, id);
                }
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) | Err(Errno::CONNABORTED) => continue,
                Err(e) if is_resource_exhaustion(e) => {
                    tracing::warn!(error = %e, "accept: out of resources, pausing");
                    Stats::add(&self.core.shared.stats.accept_pauses, 1);
                    self.pause_accept()?;
                    return Ok(());
                }
                Err(e) => {
                    // EPERM (firewall), EPROTO...: that connection is lost, the next may work.
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            }
        }
    }

    /// Disarms the listener and schedules a retry.
    fn pause_accept(&mut self) -> io::Result<()> {
        if let Some(listener) = self.listener.as_ref() {
            self.core.poller.disarm(listener.as_fd(), LISTENER)?;
        }
        self.accept_paused = Some(Instant::now() + self.config.accept_retry);
        Ok(())
    }

    /// Reads and dispatches one connection's input, within the read budget.
    fn service_read(&mut self, index: usize) {
        let Some(id) = self.core.conns[index].as_ref().map(|c| c.id) else {
            return;
        };
        // Frames left in the buffer by an earlier stall come first.
        if self.core.conns[index].as_ref().is_some_and(|c| c.stalled) {
            if !self.core.may_parse(id) {
                return;
            }
            if let Some(c) = self.core.conns[index].as_mut() {
                c.stalled = false;
            }
            if !self.process_input(id, 0) {
                return;
            }
        }
        for _ in 0..READ_BUDGET {
            let Some(conn) = self.core.conns[index].as_mut() else {
                return;
            };
            if !conn.readable || conn.closing.is_some() {
                return;
            }
            if !self.core.may_parse(id) {
                // Output above the high-water mark: stop reading; flushing resumes us.
                if let Some(c) = self.core.conns[index].as_mut() {
                    c.stalled = true;
                }
                return;
            }
            let Some(conn) = self.core.conns[index].as_mut() else {
                return;
            };
            let result = rustix::io::read(&conn.fd, &mut self.rbuf[..]);
            tracing::trace!(fd = conn.fd.as_raw_fd(), ?result, "recv");
            match result {
                Ok(0) => {
                    conn.readable = false;
                    tracing::trace!(id = %id, "end of stream");
                    conn.closing.get_or_insert(DisconnectReason::PeerClosed);
                    self.core.schedule_flush(index);
                    return;
                }
                Ok(n) => {
                    let short = n < self.rbuf.len() && !conn.rdhup;
                    let stats = &self.core.shared.stats;
                    Stats::add(&stats.reads, 1);
                    Stats::add(&stats.bytes_in, n as u64);
                    if !self.process_input(id, n) {
                        return;
                    }
                    if short {
                        if let Some(c) = self.core.conns[index].as_mut() {
                            c.readable = false;
                        }
                        return;
                    }
                }
                Err(Errno::AGAIN) => {
                    conn.readable = false;
                    return;
                }
                Err(Errno::INTR) => {}
                Err(e) => {
                    tracing::debug!(id = %id, error = %e, "recv failed");
                    self.disconnect(index, io_reason(e));
                    return;
                }
            }
        }
        // Budget spent with data still waiting: let the others run first.
        self.core.schedule_read(index);
    }

    /// Splits and dispatches the connection's buffered bytes plus `rbuf[..n]`.
    /// Returns false if the connection is gone or must not be read further now.
    fn process_input(&mut self, id: ConnId, n: usize) -> bool {
        let index = id.index();
        let Engine {
            core,
            framing,
            handler,
            rbuf,
            ..
        } = self;
        let Some(conn) = core.conns[index].as_mut() else {
            return false;
        };
        let mut stopped_early = false;
        let mut deliver = |core: &mut Core, frame: &[u8]| {
            Stats::add(&core.shared.stats.frames, 1);
            let mut ctx = Ctx {
                core,
                current: Some(id),
            };
            handler.on_message(&mut ctx, id, frame);
            let go_on = core.may_parse(id);
            stopped_early = !go_on;
            go_on
        };
        let result = if conn.inbuf.is_empty() {
            // The common case: frames straight out of the shared buffer, only a partial
            // tail copied.
            let data = &rbuf[..n];
            split_frames(framing, data, |f| deliver(core, f)).map(|used| {
                if used < n
                    && let Some(conn) = core.conn_mut(id)
                {
                    conn.inbuf.extend_from_slice(&data[used..]);
                }
            })
        } else {
            let mut buf = std::mem::take(&mut conn.inbuf);
            buf.extend_from_slice(&rbuf[..n]);
            split_frames(framing, &buf, |f| deliver(core, f)).map(|used| {
                buf.drain(..used);
                if buf.is_empty() && buf.capacity() > rbuf.len() {
                    // Don't let one large frame pin its buffer to an idle connection.
                    buf = Vec::new();
                }
                if let Some(conn) = core.conn_mut(id) {
                    conn.inbuf = buf;
                }
            })
        };
        match result {
            Err(e) => {
                if core.conn_mut(id).is_some() {
                    tracing::debug!(id = %id, error = %e, "invalid frame");
                    Stats::add(&core.shared.stats.invalid_frames, 1);
                    self.disconnect(index, DisconnectReason::Invalid(e));
                }
                false
            }
            Ok(()) => match core.conn_mut(id) {
                None => false,
                Some(conn) => {
                    if stopped_early && conn.closing.is_none() {
                        conn.stalled = true;
                    }
                    !stopped_early
                }
            },
        }
    }

    /// Writes every connection on the flush list.
    fn flush_all(&mut self) {
        let list = std::mem::take(&mut self.core.flush);
        for &index in &list {
            if let Some(conn) = self.core.conns[index].as_mut() {
                conn.in_flush = false;
                self.flush_one(index);
            }
        }
        // Keep the allocation (the list is rebuilt every iteration).
        let mut list = list;
        list.clear();
        if self.core.flush.is_empty() {
            self.core.flush = list;
        }
    }

    /// Writes one connection's output until done or `EAGAIN`, then adjusts `EPOLLOUT`,
    /// closes it if it was closing, or resumes reading if it was stalled.
    fn flush_one(&mut self, index: usize) {
        loop {
            let Some(conn) = self.core.conns[index].as_mut() else {
                return;
            };
            // Everything buffered was reserved first, so the slot word covers it.
            debug_assert!(self.core.shared.queued(index) >= conn.out.len() as u64);
            if conn.out.is_empty() {
                break;
            }
            let result = conn.out.write_to(conn.fd.as_fd());
            tracing::trace!(fd = conn.fd.as_raw_fd(), ?result, "send");
            match result {
                Ok(n) => {
                    self.core.shared.slots[index].fetch_sub(n as u64, Ordering::AcqRel);
                    Stats::add(&self.core.shared.stats.bytes_out, n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !conn.want_write {
                        let (fd, token) = (conn.fd.as_fd(), conn.id.0);
                        let both = Interest::READABLE | Interest::WRITABLE;
                        if let Err(e) = self.core.poller.modify(fd, token, both, Mode::Edge) {
                            self.disconnect(index, DisconnectReason::Io(e.kind()));
                            return;
                        }
                        if let Some(conn) = self.core.conns[index].as_mut() {
                            conn.want_write = true;
                        }
                    }
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let reason =
                        Errno::from_io_error(&e).map_or(DisconnectReason::Io(e.kind()), io_reason);
                    self.disconnect(index, reason);
                    return;
                }
            }
        }
        let Some(conn) = self.core.conns[index].as_mut() else {
            return;
        };
        let (empty, id) = (conn.out.is_empty(), conn.id);
        if empty && conn.want_write {
            conn.want_write = false;
            let fd = conn.fd.as_fd();
            if let Err(e) = self
                .core
                .poller
                .modify(fd, id.0, Interest::READABLE, Mode::Edge)
            {
                self.disconnect(index, DisconnectReason::Io(e.kind()));
                return;
            }
        }
        let Some(conn) = self.core.conns[index].as_mut() else {
            return;
        };
        if empty && let Some(reason) = conn.closing.clone() {
            self.disconnect(index, reason);
            return;
        }
        if (conn.stalled || conn.readable) && conn.closing.is_none() && self.core.may_parse(id) {
            self.core.schedule_read(index);
        }
    }

    /// Closes a connection now and tells the handler.
    fn disconnect(&mut self, index: usize, reason: DisconnectReason) {
        if let Some(id) = self.core.remove(index) {
            tracing::debug!(id = %id, %reason, "disconnect");
            let mut ctx = Ctx {
                core: &mut self.core,
                current: None,
            };
            self.handler.on_disconnect(&mut ctx, id, &reason);
        }
    }

    /// Shutdown: close the listener, flush what goes without blocking, close the rest.
    fn stop(&mut self) {
        self.listener = None;
        self.drain_queue();
        for index in 0..self.core.conns.len() {
            if self.core.conns[index].is_some() {
                self.flush_one(index);
                self.disconnect(index, DisconnectReason::Shutdown);
            }
        }
        self.core.shared.stopped.store(true, Ordering::Release);
        // Anything sent after the last drain is dropped with the queue.
        while self.rx.try_recv().is_ok() {}
    }
}

impl<F, H> std::fmt::Debug for Engine<F, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("local_addr", &self.local_addr)
            .field("connections", &self.core.live)
            .finish_non_exhaustive()
    }
}

/// Borrow helper so handlers can be shared references where convenient.
impl<H: Handler + ?Sized> Handler for Box<H> {
    fn on_connect(&mut self, ctx: &mut Ctx<'_>, id: ConnId) {
        (**self).on_connect(ctx, id)
    }
    fn on_message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, frame: &[u8]) {
        (**self).on_message(ctx, id, frame)
    }
    fn on_disconnect(&mut self, ctx: &mut Ctx<'_>, id: ConnId, reason: &DisconnectReason) {
        (**self).on_disconnect(ctx, id, reason)
    }
}
