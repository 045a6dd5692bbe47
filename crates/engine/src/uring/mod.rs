//! The io_uring driver: the same loop as `event_loop.rs`, fed by completions instead of
//! readiness.
//!
//! # One loop iteration
//!
//! 1. `io_uring_enter`: submits everything queued during the last iteration (this
//!    iteration's sends, re-armed receives) and waits for at least one completion.
//! 2. For each completion: the multishot accept → a new connection (its multishot recv
//!    is armed); a connection's recv → the bytes (already in one of the ring's provided
//!    buffers) are split into frames and handed to the handler exactly as the epoll
//!    driver does, and the buffer goes straight back to the kernel; a send → the bytes
//!    the kernel took leave the connection's output; the waker → drain the cross-thread
//!    queue.
//! 3. Connections whose reading was paused and may resume parse what they buffered.
//! 4. Every connection with output and no send in flight gets one `sendmsg` of its
//!    queued chunks, queued in the ring: all of them go to the kernel in the single
//!    `io_uring_enter` of step 1.
//!
//! So a message costs no syscall of its own: with many connections, one enter carries
//! a whole batch of sends and returns a whole batch of receives.
//!
//! # The same behaviour as the epoll driver
//!
//! - **Backpressure.** Over the high-water mark a connection's recv is cancelled
//!   (bytes that were already on their way are kept in its input buffer, unparsed);
//!   when its output drains it parses them and the recv is armed again.
//! - **Out of fds.** A failed accept (`EMFILE`...) ends the multishot accept; it is
//!   armed again when one of our connections closes or after
//!   [`Config::accept_retry`](crate::Config::accept_retry), never in a loop. At
//!   [`Config::max_connections`](crate::Config::max_connections) the accept is
//!   cancelled; a socket the kernel accepted before the cancel took effect waits, open,
//!   for a free slot. The multishot accept reads `RLIMIT_NOFILE` when it is armed: a
//!   socket it hands over above a limit lowered since is parked the same way, and
//!   accepting pauses until an fd is free, as `EMFILE` would have made it.
//! - **Closing.** A connection's fd closes when it leaves the table, and its recv and
//!   send are cancelled, so the socket really goes (an in-flight operation would
//!   otherwise keep it open).
//! - **Shutdown.** Everything in flight is cancelled and reaped, then what each socket
//!   takes without blocking is written, as the epoll driver does.
//!
//! # What it saves, measured
//!
//! At 100 connections one `io_uring_enter` carries ~30 messages, where the epoll driver
//! makes ~2.4 syscalls per message. On loopback TCP that buys no throughput on a small
//! VM: with the server alone on one CPU and the load client on the other
//! (`scripts/profile-echo.sh`), the server is ~96% busy and spends 60–66% of its time in
//! the kernel's TCP/IP path (its own transmit and, charged to it, the receiver's
//! softirq), ~12% waking the client, 4–6% in user space; the ring's own work (task
//! work, completions, buffer selection) is ~7%, about what the syscall entries and
//! `epoll_wait` cost the epoll driver. Both drivers and tokio land within a few
//! percent of each other. The gains published for io_uring echo servers come from
//! machines where syscall entry was a larger share of a message.
//!
//! Tried and dropped: waiting for one completion more than the sends just submitted,
//! with a minimum wait, to save the second enter per message at one connection (the
//! thread then woke only when the minimum ran out); registered files (`fget`/`fput`
//! are ~0.3% of samples); zero-copy sends (loopback delivery copies the pages anyway).

#[allow(unsafe_code)]
mod ring;

use crate::config::BusyPoll;
use crate::conn::ConnId;
use crate::driver::IoDriver;
use crate::error::{DisconnectReason, EngineError, io_reason};
use crate::event_loop::Engine;
use crate::framing::Framing;
use crate::handle::{Shared, Stats};
use crate::handler::{Ctx, Handler};
use crate::outbuf::OutBuf;
use crate::steps::is_resource_exhaustion;
use ring::{Completion, Ring};
use rustix::io::Errno;
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Submission queue entries (completions: four times as many).
const RING_ENTRIES: u32 = 1024;
/// Provided receive buffers (shared by every connection of the engine). The ring hands
/// them out in turn, so each one ends up resident: 128 keep that at 2 MiB at most (one
/// 4 KiB page each with small requests). When a burst of completions holds them all, a
/// recv ends with `ENOBUFS` and is armed again; no byte is lost.
const BUFFERS: u16 = 128;
/// Bytes per receive buffer (at most the engine's read buffer, which frames are split
/// out of).
const BUFFER_SIZE: usize = 16 * 1024;
/// How long shutdown waits for the kernel to finish cancelled operations.
const STOP_PATIENCE: Duration = Duration::from_secs(2);

/// Whether io_uring can run here (probed once per process).
pub(crate) fn support() -> Result<(), String> {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    PROBE.get_or_init(ring::probe).clone()
}

/// A ring made when the engine binds, before it runs.
pub(crate) struct Prepared(Ring);

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared")
    }
}

/// The ring for driver `requested` (`None`: run on epoll). `Auto` falls back to epoll
/// when the kernel lacks an operation or the ring cannot be made, and logs why;
/// `Uring` fails then.
pub(crate) fn prepare(
    requested: IoDriver,
    read_buffer: usize,
) -> Result<Option<Prepared>, EngineError> {
    if requested == IoDriver::Epoll {
        return Ok(None);
    }
    let buffer = read_buffer.min(BUFFER_SIZE) as u32;
    let made = support().and_then(|()| {
        Ring::new(RING_ENTRIES, BUFFERS, buffer).map_err(|e| format!("cannot set up a ring: {e}"))
    });
    match made {
        Ok(ring) => Ok(Some(Prepared(ring))),
        Err(why) if requested == IoDriver::Auto => {
            tracing::info!(reason = %why, "io_uring unavailable; using epoll");
            Ok(None)
        }
        Err(why) => Err(EngineError::Io(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("io_uring driver unavailable: {why}"),
        ))),
    }
}

/// State of a multishot operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Multishot {
    /// Not in the kernel.
    #[default]
    Idle,
    /// Submitted and producing completions.
    Running,
    /// A cancel was submitted; its last completion has not arrived.
    Cancelling,
}

/// The driver's side of one connection slot.
#[derive(Debug, Default)]
struct Slot {
    /// The connection using the slot (completions for older ones are stale).
    id: Option<ConnId>,
    /// Its multishot recv.
    recv: Multishot,
    /// A send is in flight.
    sending: bool,
    /// What a short send left: goes out before the connection's newer output.
    remainder: OutBuf,
}

/// The io_uring driver's state for one run of an engine.
struct Driver {
    /// The ring, its buffers and its in-flight sends.
    ring: Ring,
    /// Per connection slot (indexed like the connection table).
    slots: Vec<Slot>,
    /// The multishot accept.
    accept: Multishot,
    /// Sockets accepted past the connection limit, waiting for a slot.
    backlog: VecDeque<OwnedFd>,
    /// Completions of this iteration (reused).
    done: Vec<Completion>,
}

/// Runs `engine`'s loop on io_uring until shutdown.
pub(crate) fn run<F: Framing, H: Handler>(
    engine: &mut Engine<F, H>,
    Prepared(mut ring): Prepared,
) -> Result<(), EngineError> {
    ring.enable()?;
    let mut driver = Driver {
        ring,
        slots: Vec::new(),
        accept: Multishot::Idle,
        backlog: VecDeque::new(),
        done: Vec::new(),
    };
    driver.ring.poll_waker(engine.core.shared.waker.as_fd())?;
    driver.arm_accept(engine)?;
    let result = driver.run_loop(engine);
    driver.stop(engine);
    result
}

impl Driver {
    /// The loop; see the module docs.
    fn run_loop<F: Framing, H: Handler>(
        &mut self,
        engine: &mut Engine<F, H>,
    ) -> Result<(), EngineError> {
        loop {
            if engine.core.shared.shutdown.load(Ordering::Acquire) {
                return Ok(());
            }
            let timeout = if !engine.core.ready.is_empty() || !engine.core.flush.is_empty() {
                Some(Duration::ZERO)
            } else {
                engine
                    .accept_paused
                    .map(|at| at.saturating_duration_since(Instant::now()))
            };
            self.wait(engine.config.busy_poll, timeout)?;
            self.ring.reap(&mut self.done);
            let mut done = std::mem::take(&mut self.done);
            let mut drain = false;
            for completion in done.drain(..) {
                match completion {
                    Completion::Accept { result, more } => self.accepted(engine, result, more)?,
                    Completion::Recv {
                        key,
                        result,
                        buf,
                        more,
                    } => {
                        let id = ConnId::from_token(key);
                        self.received(engine, id, result, buf, more)?;
                        if let Some(bid) = buf {
                            self.ring.recycle(bid);
                        }
                    }
                    Completion::Send { key, result, out } => {
                        self.sent(engine, ConnId::from_token(key), result, out)?
                    }
                    Completion::Waker { more } => {
                        drain = true;
                        if !more {
                            self.ring.poll_waker(engine.core.shared.waker.as_fd())?;
                        }
                    }
                }
            }
            self.done = done;
            if drain {
                engine.core.shared.waker.drain()?;
                engine.drain_queue();
            }
            let retry_due = engine
                .accept_paused
                .is_some_and(|at| engine.core.fd_freed || at <= Instant::now());
            engine.core.fd_freed = false;
            if retry_due {
                self.resume_accept(engine)?;
            }
            self.service_ready(engine)?;
            self.flush_all(engine)?;
        }
    }

    /// Submits and waits, spinning first for up to `busy_poll` when it would block.
    fn wait(&mut self, busy_poll: Duration, timeout: Option<Duration>) -> io::Result<()> {
        let Some(spin) = BusyPoll::start(busy_poll, timeout) else {
            return self.ring.submit_and_wait(timeout);
        };
        loop {
            self.ring.submit_and_wait(Some(Duration::ZERO))?;
            if self.ring.ready() {
                return Ok(());
            }
            if let Some(rest) = spin.spent(timeout) {
                return self.ring.submit_and_wait(rest);
            }
        }
    }

    /// The driver slot of connection `id`, if it is the one using it.
    fn slot(&mut self, id: ConnId) -> Option<&mut Slot> {
        self.slots.get_mut(id.index()).filter(|s| s.id == Some(id))
    }

    /// Arms the multishot accept unless it is armed, paused or the listener is gone.
    fn arm_accept<F, H>(&mut self, engine: &Engine<F, H>) -> io::Result<()> {
        if self.accept != Multishot::Idle || engine.accept_paused.is_some() {
            return Ok(());
        }
        if let Some(listener) = engine.listener.as_ref() {
            self.ring.accept(listener.as_fd())?;
            self.accept = Multishot::Running;
        }
        Ok(())
    }

    /// Stops accepting until [`Driver::resume_accept`].
    fn pause_accept<F, H>(&mut self, engine: &mut Engine<F, H>) -> io::Result<()> {
        if self.accept == Multishot::Running {
            self.ring.cancel_accept()?;
            self.accept = Multishot::Cancelling;
        }
        engine.accept_paused = Some(Instant::now() + engine.config.accept_retry);
        Ok(())
    }

    /// Admits waiting sockets while there is room, then accepts again.
    fn resume_accept<F: Framing, H: Handler>(
        &mut self,
        engine: &mut Engine<F, H>,
    ) -> io::Result<()> {
        tracing::debug!("resuming accept");
        engine.accept_paused = None;
        while engine.core.conns.len() < engine.core.shared.slots.len() && !self.backlog.is_empty() {
            if !fd_free(engine) {
                // Still out of fds: the parked sockets wait, as the backlog would.
                Stats::add(&engine.core.shared.stats.accept_pauses, 1);
                return self.pause_accept(engine);
            }
            if let Some(fd) = self.backlog.pop_front() {
                self.admit(engine, fd)?;
            }
        }
        if !self.backlog.is_empty() {
            return self.pause_accept(engine);
        }
        self.arm_accept(engine)
    }

    /// A completion of the multishot accept.
    fn accepted<F: Framing, H: Handler>(
        &mut self,
        engine: &mut Engine<F, H>,
        result: Result<OwnedFd, Errno>,
        more: bool,
    ) -> io::Result<()> {
        if !more {
            self.accept = Multishot::Idle;
        }
        match result {
            Ok(fd) => {
                let full = engine.core.conns.len() >= engine.core.shared.slots.len();
                let over = above_fd_limit(&fd);
                if over {
                    tracing::warn!("accept: above the fd limit, pausing");
                    Stats::add(&engine.core.shared.stats.accept_pauses, 1);
                }
                if full || over || !self.backlog.is_empty() {
                    self.backlog.push_back(fd);
                    self.pause_accept(engine)?;
                } else {
                    self.admit(engine, fd)?;
                }
            }
            Err(Errno::CANCELED) => {}
            Err(e) if is_resource_exhaustion(e) => {
                tracing::warn!(error = %e, "accept: out of resources, pausing");
                Stats::add(&engine.core.shared.stats.accept_pauses, 1);
                self.pause_accept(engine)?;
            }
            // EPERM (firewall), EPROTO, ECONNABORTED...: that connection is lost, the
            // next may work.
            Err(e) => tracing::warn!(error = %e, "accept failed"),
        }
        if self.accept == Multishot::Idle && engine.accept_paused.is_none() {
            self.arm_accept(engine)?;
        }
        Ok(())
    }

    /// Puts an accepted socket in the table, tells the handler, arms its recv.
    fn admit<F: Framing, H: Handler>(
        &mut self,
        engine: &mut Engine<F, H>,
        fd: OwnedFd,
    ) -> io::Result<()> {
        if engine.config.nodelay
            && let Err(e) = rustix::net::sockopt::set_tcp_nodelay(&fd, true)
        {
            tracing::debug!(error = %e, "TCP_NODELAY");
        }
        let core = &mut engine.core;
        let id = match core.conns.insert(fd, |_, _| Ok(())) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "cannot register connection");
                return Ok(());
            }
        };
        core.claim_slot(id);
        if self.slots.len() <= id.index() {
            self.slots.resize_with(id.index() + 1, Slot::default);
        }
        self.slots[id.index()] = Slot {
            id: Some(id),
            ..Slot::default()
        };
        Stats::add(&core.shared.stats.accepted, 1);
        let mut ctx = Ctx {
            core,
            current: Some(id),
        };
        engine.handler.on_connect(&mut ctx, id);
        self.want_recv(engine, id)
    }

    /// Arms `id`'s recv if it is idle and the connection wants input.
    fn want_recv<F, H>(&mut self, engine: &Engine<F, H>, id: ConnId) -> io::Result<()> {
        let Some(conn) = engine.core.conns.get(id) else {
            return Ok(());
        };
        if conn.closing.is_some() || conn.stalled {
            return Ok(());
        }
        let Some(slot) = self.slots.get_mut(id.index()).filter(|s| s.id == Some(id)) else {
            return Ok(());
        };
        if slot.recv == Multishot::Idle {
            slot.recv = Multishot::Running;
            self.ring.recv(conn.fd.as_fd(), id.as_u64())?;
        }
        Ok(())
    }

    /// Cancels `id`'s recv (reading is paused).
    fn stop_reading(&mut self, id: ConnId) -> io::Result<()> {
        if let Some(slot) = self.slot(id)
            && slot.recv == Multishot::Running
        {
            slot.recv = Multishot::Cancelling;
            self.ring.cancel_recv(id.as_u64())?;
        }
        Ok(())
    }

    /// A completion of `id`'s multishot recv (the caller recycles `buf`).
    fn received<F: Framing, H: Handler>(
        &mut self,
        engine: &mut Engine<F, H>,
        id: ConnId,
        result: Result<usize, Errno>,
        buf: Option<u16>,
        more: bool,
    ) -> io::Result<()> {
        let Some(slot) = self.slot(id) else {
            return Ok(()); // a closed connection's last completions
        };
        if !more {
            slot.recv = Multishot::Idle;
        }
        match (result, buf) {
            (Ok(n), Some(bid)) if n > 0 => self.deliver(engine, id, bid, n)?,
            (Ok(_), _) => {
                tracing::trace!(id = %id, "end of stream");
                if let Some(conn) = engine.core.conn_mut(id) {
                    conn.closing.get_or_insert(DisconnectReason::PeerClosed);
                    engine.core.schedule_flush(id);
                }
                return Ok(());
            }
            // Out of buffers (the kernel ran ahead of us) or paused: armed again below.
            (Err(Errno::NOBUFS | Errno::CANCELED), _) => {}
            (Err(e), _) => {
                tracing::debug!(id = %id, error = %e, "recv failed");
                self.disconnect(engine, id, io_reason(e))?;
                return Ok(());
            }
        }
        self.want_recv(engine, id)
    }

    /// Hands `n` received bytes in buffer `bid` to the framing and the handler, or
    /// keeps them unparsed while the connection's reading is paused.
    fn deliver<F: Framing, H: Handler>(
        &mut self,
        engine: &mut Engine<F, H>,
        id: ConnId,
        bid: u16,
        n: usize,
    ) -> io::Result<()> {
        let stats = &engine.core.shared.stats;
        Stats::add(&stats.reads, 1);
        Stats::add(&stats.bytes_in, n as u64);
        let may_parse = engine.core.may_parse(id);
        let Some(conn) = engine.core.conn_mut(id) else {
            return Ok(());
        };
        if conn.closing.is_some() {
            return Ok(()); // the epoll driver stops reading a closing connection too
        }
        let data = self.ring.buffer(bid, n);
        if conn.stalled || !may_parse {
            conn.inbuf.extend_from_slice(data);
            conn.stalled = true;
            return self.stop_reading(id);
        }
        engine.rbuf[..n].copy_from_slice(data);
        engine.process_input(id, n);
        self.after_input(engine, id)
    }

    /// After frames were handled: forget a connection that was closed, stop reading
    /// one that paused.
    fn after_input<F, H>(&mut self, engine: &Engine<F, H>, id: ConnId) -> io::Result<()> {
        match engine.core.conns.get(id) {
            None => self.forget(id),
            Some(conn) if conn.stalled => self.stop_reading(id),
            Some(_) => Ok(()),
        }
    }

    /// A completion of `id`'s send, made from `out`.
    fn sent<F: Framing, H: Handler>(
        &mut self,
        engine: &mut Engine<F, H>,
        id: ConnId,
        result: Result<usize, Errno>,
        mut out: OutBuf,
    ) -> io::Result<()> {
        let Some(slot) = self.slot(id) else {
            return Ok(()); // the connection closed; its output goes with it
        };
        slot.sending = false;
        match result {
            Ok(n) => {
                out.consume(n);
                slot.remainder = out;
                let shared = &engine.core.shared;
                shared.slots[id.index()].fetch_sub(n as u64, Ordering::AcqRel);
                Stats::add(&shared.stats.bytes_out, n as u64);
                engine.core.schedule_flush(id);
            }
            // Only shutdown cancels a live connection's send: keep the bytes for it.
            Err(Errno::CANCELED) => slot.remainder = out,
            Err(e) => {
                tracing::debug!(id = %id, error = %e, "send failed");
                self.disconnect(engine, id, io_reason(e))?;
            }
        }
        Ok(())
    }

    /// Resumes paused connections whose output drained.
    fn service_ready<F: Framing, H: Handler>(
        &mut self,
        engine: &mut Engine<F, H>,
    ) -> io::Result<()> {
        for _ in 0..engine.core.ready.len() {
            let Some(id) = engine.core.ready.pop_front() else {
                break;
            };
            let may_parse = engine.core.may_parse(id);
            let Some(conn) = engine.core.conns.get_mut(id) else {
                continue;
            };
            conn.in_ready = false;
            if conn.stalled {
                if !may_parse {
                    continue;
                }
                conn.stalled = false;
                engine.process_input(id, 0);
                self.after_input(engine, id)?;
            }
            self.want_recv(engine, id)?;
        }
        Ok(())
    }

    /// Queues one send for every connection on the flush list that has output and no
    /// send in flight; closes those that were closing and are done.
    fn flush_all<F: Framing, H: Handler>(&mut self, engine: &mut Engine<F, H>) -> io::Result<()> {
        let mut list = std::mem::take(&mut engine.core.flush);
        let mut result = Ok(());
        for &id in &list {
            if let Some(conn) = engine.core.conn_mut(id) {
                conn.in_flush = false;
                if result.is_ok() {
                    result = self.flush_one(engine, id);
                }
            }
        }
        list.clear();
        if engine.core.flush.is_empty() {
            engine.core.flush = list;
        }
        result
    }

    /// See [`Driver::flush_all`].
    fn flush_one<F: Framing, H: Handler>(
        &mut self,
        engine: &mut Engine<F, H>,
        id: ConnId,
    ) -> io::Result<()> {
        let may_parse = engine.core.may_parse(id);
        let Some(conn) = engine.core.conns.get_mut(id) else {
            return Ok(());
        };
        let Some(slot) = self.slots.get_mut(id.index()).filter(|s| s.id == Some(id)) else {
            return Ok(());
        };
        if slot.sending {
            return Ok(()); // its completion schedules the next one
        }
        let out = if slot.remainder.is_empty() {
            std::mem::take(&mut conn.out)
        } else {
            std::mem::take(&mut slot.remainder)
        };
        if !out.is_empty() {
            slot.sending = true;
            return self.ring.send(conn.fd.as_fd(), id.as_u64(), out);
        }
        if let Some(reason) = conn.closing.clone() {
            return self.disconnect(engine, id, reason);
        }
        if conn.stalled && may_parse {
            engine.core.schedule_read(id);
        }
        Ok(())
    }

    /// Cancels whatever `id` has in flight and releases its slot.
    fn forget(&mut self, id: ConnId) -> io::Result<()> {
        let Some(slot) = self.slot(id) else {
            return Ok(());
        };
        let old = std::mem::take(slot);
        if old.recv == Multishot::Running {
            self.ring.cancel_recv(id.as_u64())?;
        }
        if old.sending {
            self.ring.cancel_send(id.as_u64())?;
        }
        Ok(())
    }

    /// Closes `id` now and tells the handler.
    fn disconnect<F: Framing, H: Handler>(
        &mut self,
        engine: &mut Engine<F, H>,
        id: ConnId,
        reason: DisconnectReason,
    ) -> io::Result<()> {
        self.forget(id)?;
        engine.disconnect(id, reason);
        Ok(())
    }

    /// Shutdown: cancel and reap everything in flight, write what each socket takes
    /// without blocking, close every connection.
    fn stop<F: Framing, H: Handler>(&mut self, engine: &mut Engine<F, H>) {
        let mut done = Vec::new();
        self.ring.quiesce(STOP_PATIENCE, &mut done);
        engine.listener = None;
        self.backlog.clear();
        for slot in &mut self.slots {
            slot.recv = Multishot::Idle; // cancelled and reaped
        }
        for completion in done {
            match completion {
                Completion::Recv { buf: Some(bid), .. } => self.ring.recycle(bid),
                Completion::Send { key, result, out } => {
                    let id = ConnId::from_token(key);
                    // Sent bytes are accounted as in `sent`; cancelled ones kept.
                    let result =
                        result.or_else(|e| if e == Errno::CANCELED { Ok(0) } else { Err(e) });
                    if let Err(e) = self.sent(engine, id, result, out) {
                        tracing::debug!(error = %e, "send completion while stopping");
                    }
                }
                _ => {}
            }
        }
        if self.ring.inflight() > 0 {
            tracing::warn!(
                inflight = self.ring.inflight(),
                "io_uring operations still in flight at shutdown"
            );
        }
        engine.drain_queue();
        for id in engine.core.conns.ids() {
            let mut remainder = self
                .slots
                .get_mut(id.index())
                .filter(|s| s.id == Some(id))
                .map(|s| std::mem::take(&mut s.remainder))
                .unwrap_or_default();
            if let Some(conn) = engine.core.conns.get_mut(id) {
                let shared = &engine.core.shared;
                if let Err(e) = rustix::io::ioctl_fionbio(&conn.fd, true) {
                    tracing::debug!(error = %e, "O_NONBLOCK for the last flush");
                } else {
                    let fd = conn.fd.as_fd();
                    let written = write_now(fd, &mut remainder, shared)
                        && write_now(fd, &mut conn.out, shared);
                    tracing::trace!(id = %id, written, "last flush");
                }
            }
            if let Some(slot) = self.slot(id) {
                *slot = Slot::default();
            }
            engine.disconnect(id, DisconnectReason::Shutdown);
        }
    }
}

/// Whether the kernel handed us `fd` above the soft `RLIMIT_NOFILE`: a multishot accept
/// reads the limit when it is armed, so a limit lowered since then does not stop it.
/// Such a socket is parked, and accepting paused, as if `accept` had failed with
/// `EMFILE`.
fn above_fd_limit(fd: &OwnedFd) -> bool {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    limit.is_some_and(|limit| fd.as_raw_fd() as u64 >= limit)
}

/// Whether the process could open one more fd now (a duplicate of the listener, closed
/// at once); what an `accept` retry finds out on the epoll driver.
fn fd_free<F, H>(engine: &Engine<F, H>) -> bool {
    let Some(listener) = engine.listener.as_ref() else {
        return true;
    };
    match rustix::io::fcntl_dupfd_cloexec(listener, 0) {
        Ok(_probe) => true,
        Err(e) => !is_resource_exhaustion(e),
    }
}

/// Writes `out` until it is empty (true) or the socket refuses (false).
fn write_now(fd: BorrowedFd<'_>, out: &mut OutBuf, shared: &Shared) -> bool {
    while !out.is_empty() {
        match out.write_to(fd) {
            Ok(n) => Stats::add(&shared.stats.bytes_out, n as u64),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}
