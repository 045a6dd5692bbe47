//! The tunables of one engine.

use crate::driver::IoDriver;
use std::time::{Duration, Instant};

/// Tunables of one engine.
#[derive(Clone, Debug)]
pub struct Config {
    /// Most bytes queued for one connection (replies and cross-thread sends not yet
    /// accepted by the kernel; a shared buffer counts its full length though it is not
    /// copied). A send past it fails with [`SendError::Full`](crate::SendError::Full);
    /// reading pauses earlier, at [`Config::pause_output`], so the replies to one frame
    /// have the rest ([`Ctx::room`](crate::Ctx::room) tells how much).
    pub max_output: usize,
    /// Most simultaneous connections; accepting pauses at this count.
    pub max_connections: usize,
    /// Stop reading a connection's requests while more than this many bytes are queued
    /// for it (0: half of [`Config::max_output`]). Below `max_output`, so a client that
    /// reads its replies can still be sent a reply larger than this.
    pub pause_output: usize,
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
    /// Opt-in spin-before-park: poll without blocking for up to this long before the
    /// driver sleeps (zero, the default, never spins), yielding the CPU between polls
    /// to any thread that wants it. Trades a CPU for latency where a wake-up is
    /// expensive (cross-CPU in a VM: ~25 µs).
    pub busy_poll: Duration,
    /// The I/O driver ([`IoDriver::Auto`]: io_uring when the kernel has it).
    pub io: IoDriver,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_output: 4 << 20,
            pause_output: 0,
            max_connections: 16 * 1024,
            reuse_port: false,
            backlog: 1024,
            read_buffer: 64 * 1024,
            events: 256,
            nodelay: true,
            accept_retry: Duration::from_millis(100),
            busy_poll: Duration::ZERO,
            io: IoDriver::Auto,
        }
    }
}

/// The spin-before-park policy of one wait ([`Config::busy_poll`]), shared by both
/// drivers: look without blocking until something is ready or the budget is spent,
/// yielding the CPU between looks, then block for what is left of the timeout.
pub(crate) struct BusyPoll {
    /// When the first look was made.
    start: Instant,
    /// How long to keep looking.
    budget: Duration,
}

impl BusyPoll {
    /// The policy for a wait of at most `timeout`, or `None` to block at once (no
    /// budget, or a zero timeout that would not block anyway).
    pub(crate) fn start(budget: Duration, timeout: Option<Duration>) -> Option<BusyPoll> {
        (!budget.is_zero() && timeout != Some(Duration::ZERO)).then(|| BusyPoll {
            start: Instant::now(),
            budget,
        })
    }

    /// After a look that found nothing: `None` to look again, having given the CPU to
    /// any other runnable thread on it (the peer we wait for may be one: with both on
    /// one CPU a plain spin only delays it); once the budget is spent, the rest of
    /// `timeout` for the blocking wait.
    pub(crate) fn spent(&self, timeout: Option<Duration>) -> Option<Option<Duration>> {
        let spun = self.start.elapsed();
        if spun >= self.budget {
            return Some(timeout.map(|t| t.saturating_sub(spun)));
        }
        rustix::thread::sched_yield();
        None
    }
}
