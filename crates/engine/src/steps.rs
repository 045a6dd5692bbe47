//! The I/O steps of the loop: accept, read and dispatch, flush, close, and draining the
//! cross-thread queue. Each takes a connection by id and looks it up once per step.

use crate::conn::ConnId;
use crate::error::{DisconnectReason, io_reason};
use crate::event_loop::{Engine, LISTENER};
use crate::framing::{Frame, Framing, split_frames};
use crate::handle::Stats;
use crate::handler::{Ctx, Handler};
use crate::state::Core;
use greenfd_reactor::{Interest, Mode};
use rustix::io::Errno;
use rustix::net::SocketFlags;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// `recv` calls one connection gets per loop iteration before others get a turn.
const READ_BUDGET: usize = 16;

/// A pending frame must need at least this many more bytes before the engine asks
/// the kernel to hold wake-ups back (smaller frames complete in a packet or two).
const LOWAT_MIN: usize = 16 * 1024;
/// The most bytes the kernel is asked to gather before a wake-up.
const LOWAT_MAX: usize = 256 * 1024;

/// Sets `SO_RCVLOWAT`: `epoll` reports the socket readable only once `bytes` are
/// queued (or at end of stream / error). rustix has no wrapper for it.
#[allow(unsafe_code)]
fn set_rcvlowat(fd: BorrowedFd<'_>, bytes: u32) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: `fd` is a live socket for the duration of the call; the option value is
    // a valid c_int whose size is passed alongside it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether an `accept` error means "out of fds or memory": pause, don't spin.
fn is_resource_exhaustion(e: Errno) -> bool {
    e == Errno::MFILE || e == Errno::NFILE || e == Errno::NOBUFS || e == Errno::NOMEM
}

impl<F: Framing, H: Handler> Engine<F, H> {
    /// Moves cross-thread sends into their connections' output.
    pub(crate) fn drain_queue(&mut self) {
        while let Ok((id, bytes)) = self.rx.try_recv() {
            // Bytes for a connection that has closed are dropped; the slot word was
            // reset when it closed, so their reservation is already gone.
            if let Some(conn) = self.core.conn_mut(id)
                && conn.closing.is_none()
            {
                conn.out.push_owned(bytes);
                self.core.schedule_flush(id);
            }
        }
    }

    /// Accepts until `EAGAIN`, or pauses accepting when fds run out.
    pub(crate) fn accept_all(&mut self) -> io::Result<()> {
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
            if self.core.conns.len() >= self.core.shared.slots.len() {
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
    pub(crate) fn service_read(&mut self, id: ConnId) {
        // Frames left in the buffer by an earlier stall come first.
        if self.core.conns.get(id).is_some_and(|c| c.stalled) {
            if !self.core.may_parse(id) {
                return;
            }
            if let Some(conn) = self.core.conn_mut(id) {
                conn.stalled = false;
            }
            if !self.process_input(id, 0) {
                return;
            }
        }
        for _ in 0..READ_BUDGET {
            let Some(conn) = self.core.conns.get(id) else {
                return;
            };
            if !conn.readable || conn.closing.is_some() {
                return;
            }
            if !self.core.may_parse(id) {
                // Output above the high-water mark: stop reading; flushing resumes us.
                if let Some(conn) = self.core.conn_mut(id) {
                    conn.stalled = true;
                }
                return;
            }
            let Some(conn) = self.core.conns.get_mut(id) else {
                return;
            };
            let result = rustix::io::read(&conn.fd, &mut self.rbuf[..]);
            tracing::trace!(fd = conn.fd.as_raw_fd(), ?result, "recv");
            match result {
                Ok(0) => {
                    conn.readable = false;
                    tracing::trace!(id = %id, "end of stream");
                    conn.closing.get_or_insert(DisconnectReason::PeerClosed);
                    self.core.schedule_flush(id);
                    return;
                }
                Ok(n) => {
                    let short = n < self.rbuf.len() && !conn.rdhup;
                    if short {
                        conn.readable = false;
                    }
                    let stats = &self.core.shared.stats;
                    Stats::add(&stats.reads, 1);
                    Stats::add(&stats.bytes_in, n as u64);
                    if !self.process_input(id, n) || short {
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
                    self.disconnect(id, io_reason(e));
                    return;
                }
            }
        }
        // Budget spent with data still waiting: let the others run first.
        self.core.schedule_read(id);
    }

    /// Splits and dispatches the connection's buffered bytes plus `rbuf[..n]`.
    /// Returns false if the connection is gone or must not be read further now.
    fn process_input(&mut self, id: ConnId, n: usize) -> bool {
        let Engine {
            core,
            framing,
            handler,
            rbuf,
            scratch,
            ..
        } = self;
        let Some(conn) = core.conn_mut(id) else {
            return false;
        };
        // The parse state travels with the bytes: the connection's own if it has a
        // partial frame, else the engine's scratch one; taken out while frames are
        // delivered (callbacks may touch the connection table), put back after.
        let mut state = match conn.parse.take() {
            Some(own) => *own,
            None => std::mem::take(scratch),
        };
        let mut stopped_early = false;
        let mut deliver = |core: &mut Core, frame: Frame<'_>| {
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
            // tail copied (the state's positions are relative to the frame start, so
            // they stay valid in the copy).
            let data = &rbuf[..n];
            split_frames(framing, &mut state, data, |f| deliver(core, f)).map(|used| {
                if used < n
                    && let Some(conn) = core.conn_mut(id)
                {
                    conn.inbuf.extend_from_slice(&data[used..]);
                }
            })
        } else {
            let mut buf = std::mem::take(&mut conn.inbuf);
            buf.extend_from_slice(&rbuf[..n]);
            split_frames(framing, &mut state, &buf, |f| deliver(core, f)).map(|used| {
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
        let Some(conn) = core.conns.get_mut(id) else {
            state.reset();
            *scratch = state;
            return false;
        };
        let need = if conn.inbuf.is_empty() { 0 } else { state.need };
        let in_progress = state.pos > 0 || state.stage != 0 || !state.parts.is_empty();
        if result.is_ok() && !conn.inbuf.is_empty() && in_progress {
            conn.parse = Some(Box::new(state));
        } else {
            state.reset();
            *scratch = state;
        }
        match result {
            Err(e) => {
                tracing::debug!(id = %id, error = %e, "invalid frame");
                Stats::add(&core.shared.stats.invalid_frames, 1);
                conn.inbuf = Vec::new();
                conn.readable = false;
                if conn.closing.is_none() {
                    // The handler may answer (redis sends "-ERR Protocol error: ...");
                    // the connection closes once that is flushed.
                    let mut ctx = Ctx {
                        core,
                        current: Some(id),
                    };
                    handler.on_invalid(&mut ctx, id, &e);
                    if let Some(conn) = core.conn_mut(id) {
                        conn.closing = Some(DisconnectReason::Invalid(e));
                        core.schedule_flush(id);
                    }
                }
                false
            }
            Ok(()) => {
                if stopped_early && conn.closing.is_none() {
                    conn.stalled = true;
                }
                // A large frame still far from complete: don't wake for every packet.
                let lowat = if need >= LOWAT_MIN {
                    need.min(LOWAT_MAX) as u32
                } else {
                    1
                };
                if lowat != conn.lowat {
                    match set_rcvlowat(conn.fd.as_fd(), lowat) {
                        Ok(()) => conn.lowat = lowat,
                        Err(e) => tracing::debug!(id = %id, error = %e, "SO_RCVLOWAT"),
                    }
                }
                !stopped_early
            }
        }
    }

    /// Writes every connection on the flush list.
    pub(crate) fn flush_all(&mut self) {
        let mut list = std::mem::take(&mut self.core.flush);
        for &id in &list {
            if let Some(conn) = self.core.conn_mut(id) {
                conn.in_flush = false;
                self.flush_one(id);
            }
        }
        // Keep the allocation (the list is rebuilt every iteration).
        list.clear();
        if self.core.flush.is_empty() {
            self.core.flush = list;
        }
    }

    /// Writes one connection's output until done or `EAGAIN`, then adjusts `EPOLLOUT`,
    /// closes it if it was closing, or resumes reading if it was stalled.
    pub(crate) fn flush_one(&mut self, id: ConnId) {
        let core = &mut self.core;
        let Some(conn) = core.conns.get_mut(id) else {
            return;
        };
        let slot = &core.shared.slots[id.index()];
        let mut failed = None;
        while !conn.out.is_empty() {
            // Everything buffered was reserved first, so the slot word covers it.
            debug_assert!(core.shared.queued(id.index()) >= conn.out.len() as u64);
            let result = conn.out.write_to(conn.fd.as_fd());
            tracing::trace!(fd = conn.fd.as_raw_fd(), ?result, "send");
            match result {
                Ok(n) => {
                    slot.fetch_sub(n as u64, Ordering::AcqRel);
                    Stats::add(&core.shared.stats.bytes_out, n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !conn.want_write {
                        let both = Interest::READABLE | Interest::WRITABLE;
                        match core
                            .poller
                            .modify(conn.fd.as_fd(), id.as_u64(), both, Mode::Edge)
                        {
                            Ok(()) => conn.want_write = true,
                            Err(e) => failed = Some(DisconnectReason::Io(e.kind())),
                        }
                    }
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let reason =
                        Errno::from_io_error(&e).map_or(DisconnectReason::Io(e.kind()), io_reason);
                    failed = Some(reason);
                    break;
                }
            }
        }
        let empty = conn.out.is_empty();
        if failed.is_none() && empty && conn.want_write {
            conn.want_write = false;
            let fd = conn.fd.as_fd();
            if let Err(e) = core
                .poller
                .modify(fd, id.as_u64(), Interest::READABLE, Mode::Edge)
            {
                failed = Some(DisconnectReason::Io(e.kind()));
            }
        }
        if let Some(reason) = failed.or_else(|| conn.closing.clone().filter(|_| empty)) {
            self.disconnect(id, reason);
            return;
        }
        if (conn.stalled || conn.readable) && conn.closing.is_none() && core.may_parse(id) {
            core.schedule_read(id);
        }
    }

    /// Closes a connection now and tells the handler.
    pub(crate) fn disconnect(&mut self, id: ConnId, reason: DisconnectReason) {
        if self.core.remove(id) {
            tracing::debug!(id = %id, %reason, "disconnect");
            let mut ctx = Ctx {
                core: &mut self.core,
                current: None,
            };
            self.handler.on_disconnect(&mut ctx, id, &reason);
        }
    }
}
