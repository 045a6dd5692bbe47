//! The cross-thread side: [`EngineHandle`] (an MPSC queue plus an eventfd wake-up),
//! the per-slot output accounting it shares with the loop, and the counters.
//!
//! Each connection's queued output (replies from callbacks plus sends from other
//! threads, not yet accepted by the kernel) lives in one atomic word per slot, packed
//! with the connection's generation: `send` reserves room with a compare-and-swap and
//! fails with [`SendError::Full`] past [`Config::max_output`](crate::Config::max_output),
//! and a slot reused by a newer connection can never be charged for an older one's bytes.

use crate::conn::ConnId;
use crate::error::SendError;
use greenfd_reactor::Waker;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;

/// Bits of a slot word that count queued bytes (the rest hold the generation).
pub(crate) const PENDING_BITS: u32 = 40;
/// Mask of the queued-bytes part of a slot word.
const PENDING_MASK: u64 = (1 << PENDING_BITS) - 1;
/// Generations wrap within 24 bits (they share the slot word with the byte count).
pub(crate) const GEN_MASK: u32 = (1 << (64 - PENDING_BITS)) - 1;

/// One cross-thread send: the connection and its bytes.
pub(crate) type Queued = (ConnId, Vec<u8>);

/// Counters of one engine (all monotonic except `connections`).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Connections accepted.
    pub(crate) accepted: AtomicU64,
    /// Connections closed.
    pub(crate) closed: AtomicU64,
    /// Frames delivered to the handler.
    pub(crate) frames: AtomicU64,
    /// Bytes read from clients.
    pub(crate) bytes_in: AtomicU64,
    /// Bytes written to clients.
    pub(crate) bytes_out: AtomicU64,
    /// `recv` calls that returned data.
    pub(crate) reads: AtomicU64,
    /// Send attempts refused with [`SendError::Full`].
    pub(crate) send_full: AtomicU64,
    /// Times accepting paused because fds (or memory) ran out.
    pub(crate) accept_pauses: AtomicU64,
    /// Connections dropped for invalid frames.
    pub(crate) invalid_frames: AtomicU64,
    /// The most bytes ever queued for one connection.
    pub(crate) peak_queued: AtomicU64,
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
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
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
pub(crate) struct Shared {
    /// Wakes the reactor when a cross-thread send or shutdown is queued.
    pub(crate) waker: Waker,
    /// Per slot: generation (high bits) and queued output bytes (low bits).
    pub(crate) slots: Box<[AtomicU64]>,
    /// Asked to stop.
    pub(crate) shutdown: AtomicBool,
    /// Has stopped; sends fail with [`SendError::Shutdown`].
    pub(crate) stopped: AtomicBool,
    /// Counters.
    pub(crate) stats: Stats,
    /// The per-connection output bound.
    pub(crate) max_output: u64,
}

impl Shared {
    /// Reserves `len` bytes of `id`'s output bound.
    pub(crate) fn reserve(&self, id: ConnId, len: usize) -> Result<(), SendError> {
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
    pub(crate) fn queued(&self, index: usize) -> u64 {
        self.slots[index].load(Ordering::Acquire) & PENDING_MASK
    }
}

/// A `Send + Sync` handle to a running engine: send to any connection from any thread,
/// read statistics, shut the engine down.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    /// The queue the reactor drains after each wake.
    pub(crate) tx: Sender<Queued>,
    /// Slot words, waker, flags and counters.
    pub(crate) shared: Arc<Shared>,
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
    /// without blocking, reports [`DisconnectReason::Shutdown`](crate::DisconnectReason::Shutdown) for every connection and
    /// returns from [`Engine::run`](crate::Engine::run).
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
