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

use crate::config::{BusyPoll, Config};
use crate::conn::{ConnId, ConnTable};
use crate::driver::IoDriver;
use crate::error::{DisconnectReason, EngineError};
use crate::framing::{Framing, ParseState};
use crate::handle::{EngineHandle, Queued, Shared, Stats};
use crate::handler::Handler;
use crate::state::Core;
use greenfd_reactor::{EventBuffer, Interest, Mode, Poller, Waker};
use rustix::net::{AddressFamily, SocketFlags, SocketType};
use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// Token of the listening socket.
pub(crate) const LISTENER: u64 = u64::MAX;
/// Token of the cross-thread waker.
const WAKER: u64 = u64::MAX - 1;

/// A TCP server: one listening socket, one framing, one handler, run on one thread.
pub struct Engine<F, H> {
    /// Loop state shared with callbacks.
    pub(crate) core: Core,
    /// The cross-thread queue.
    pub(crate) rx: Receiver<Queued>,
    /// How the byte stream splits into frames.
    pub(crate) framing: F,
    /// The application.
    pub(crate) handler: H,
    /// The listening socket (closed at shutdown).
    pub(crate) listener: Option<TcpListener>,
    /// Its address (with the real port when bound to port 0).
    local_addr: SocketAddr,
    /// The one read buffer every connection reads into.
    pub(crate) rbuf: Box<[u8]>,
    /// The parse state of the connection being parsed, when it has none of its own
    /// (its argument list keeps its capacity from frame to frame).
    pub(crate) scratch: ParseState,
    /// Accepting is paused (fds ran out); retry at this instant.
    pub(crate) accept_paused: Option<Instant>,
    /// Tunables.
    pub(crate) config: Config,
    /// The io_uring ring `run` uses (`None`: epoll).
    pub(crate) uring: Option<crate::uring::Prepared>,
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
        let uring = crate::uring::prepare(config.io, config.read_buffer.max(512))?;
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
                conns: ConnTable::default(),
                ready: VecDeque::new(),
                flush: Vec::new(),
                high_water: match config.pause_output {
                    0 => config.max_output / 2,
                    n => n.min(config.max_output),
                }
                .max(1) as u64,
                fd_freed: false,
            },
            rx,
            framing,
            handler,
            listener: Some(listener),
            local_addr,
            rbuf: vec![0; config.read_buffer.max(512)].into_boxed_slice(),
            scratch: ParseState::default(),
            accept_paused: None,
            config,
            uring,
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

    /// The I/O driver this engine runs on (never [`IoDriver::Auto`]: that is resolved
    /// when binding).
    pub fn io_driver(&self) -> IoDriver {
        if self.uring.is_some() {
            IoDriver::Uring
        } else {
            IoDriver::Epoll
        }
    }

    /// Runs the loop on this thread until [`EngineHandle::shutdown`].
    pub fn run(mut self) -> Result<(), EngineError> {
        let result = match self.uring.take() {
            Some(ring) => crate::uring::run(&mut self, ring),
            None => self.run_loop(),
        };
        self.stop();
        result
    }

    /// `epoll_wait`, preceded by up to [`Config::busy_poll`] of zero-timeout polls when
    /// it would block: a request that arrives within the spin is served without the
    /// sleep/wake-up, which in a VM costs far more than the polls.
    fn wait(&self, events: &mut EventBuffer, timeout: Option<Duration>) -> io::Result<usize> {
        let poller = &self.core.poller;
        let Some(spin) = BusyPoll::start(self.config.busy_poll, timeout) else {
            return poller.wait(events, timeout);
        };
        loop {
            let n = poller.wait(events, Some(Duration::ZERO))?;
            if n > 0 {
                return Ok(n);
            }
            if let Some(rest) = spin.spent(timeout) {
                return poller.wait(events, rest);
            }
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
                        let id = ConnId::from_token(token);
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
                            core.schedule_read(id);
                        }
                        if writable {
                            core.schedule_flush(id);
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
                let Some(id) = self.core.ready.pop_front() else {
                    break;
                };
                if let Some(conn) = self.core.conns.get_mut(id) {
                    conn.in_ready = false;
                    self.service_read(id);
                }
            }
            self.flush_all();
        }
    }

    /// Shutdown: close the listener, flush what goes without blocking, close the rest.
    fn stop(&mut self) {
        self.listener = None;
        self.drain_queue();
        for id in self.core.conns.ids() {
            self.flush_one(id);
            self.disconnect(id, DisconnectReason::Shutdown);
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
            .field("connections", &self.core.conns.len())
            .finish_non_exhaustive()
    }
}
