//! The shared half of a tap: what a source's table, a queue's ring and the user's
//! [`Subscription`](crate::Subscription) handle all point at.
//!
//! One atomic word carries everything a firer and a consumer race on, so a delivery is a
//! single `fetch_or` and a consumption a single `fetch_and`:
//!
//! ```text
//!  bit 33   bit 32   bits 0..32
//!  DEAD     QUEUED   pending readiness (OR of every delivery since the last read)
//! ```
//!
//! * `QUEUED` is set by the delivery that finds it clear; that delivery (and only that one)
//!   pushes the tap onto its queue's ring, so a tap sits in the ring at most once however
//!   often it fires (coalescing) and the ring's length is bounded by the number of taps.
//! * The consumer clears `QUEUED` and the pending bits in one step and reports them; a
//!   delivery racing with it either lands before (and is reported now) or after (and finds
//!   `QUEUED` clear, so it pushes again): no readiness is lost.
//! * `DEAD` is set once, when the tap is deregistered; it is never cleared. A dead tap is
//!   never pushed again and a consumer drops it unreported, so no event for a tap is
//!   reported after its deregistration has returned.

use crate::queue::{self, QueueCore};
use crate::source::SourceInner;
use crate::sync::{Arc, AtomicU64, Ordering};
use greenfd_vpoll::Events;

/// Set while the tap is in (or about to be pushed onto) its queue's ring.
pub(crate) const QUEUED: u64 = 1 << 32;
/// Set once the tap is deregistered.
pub(crate) const DEAD: u64 = 1 << 33;
/// The pending readiness bits of the state word.
const PENDING: u64 = 0xffff_ffff;

/// Bits a tap always receives whatever its filter, as epoll always reports them.
pub(crate) const ALWAYS: Events = Events::ERR.union(Events::HUP);

/// Where a tap's readiness goes.
pub(crate) enum Sink {
    /// A consumer's [`EventQueue`](crate::EventQueue); `slot` is the tap's place in the
    /// queue's member table, used to rescan after a ring overflow.
    Queue {
        /// The queue's shared core (it outlives the user's queue handle while taps point at it).
        core: Arc<QueueCore>,
        /// Index in the queue's member table, fixed for the tap's life.
        slot: usize,
    },
    /// A vpoll fd that mirrors the source's level.
    #[cfg(not(loom))]
    Vpoll(Arc<crate::sink::Mirror>),
}

/// The state of one registration shared by the source table, the queue and the handle.
pub(crate) struct TapShared {
    /// The consumer's token, reported with every event.
    pub(crate) token: u64,
    /// Readiness bits this tap cares about, including [`ALWAYS`].
    pub(crate) filter: Events,
    /// `DEAD | QUEUED | pending` (see the module docs).
    state: AtomicU64,
    /// Where deliveries go.
    pub(crate) sink: Sink,
}

impl TapShared {
    /// A live tap with nothing pending.
    pub(crate) fn new(token: u64, filter: Events, sink: Sink) -> Self {
        TapShared {
            token,
            filter: filter | ALWAYS,
            state: AtomicU64::new(0),
            sink,
        }
    }

    /// Tells the tap that `rising` bits were asserted on `source` (or that its level
    /// changed, for mirrors). Called with no table lock held.
    #[cfg_attr(loom, allow(unused_variables))] // only mirrors read `source`
    pub(crate) fn deliver(this: &Arc<TapShared>, source: &SourceInner, rising: Events) {
        match &this.sink {
            Sink::Queue { core, .. } => {
                let bits = rising & this.filter;
                if bits.is_empty() {
                    return;
                }
                let prev = this
                    .state
                    .fetch_or(u64::from(bits.bits()) | QUEUED, Ordering::AcqRel);
                if prev & (QUEUED | DEAD) == 0 {
                    queue::push(core, this);
                }
            }
            #[cfg(not(loom))]
            Sink::Vpoll(mirror) => {
                if this.state.load(Ordering::Acquire) & DEAD == 0 {
                    mirror.sync(source, this.filter);
                }
            }
        }
    }

    /// Consumes the pending bits: `Some(bits)` if the tap was queued and is alive.
    pub(crate) fn take(&self) -> Option<Events> {
        let prev = self.state.fetch_and(DEAD, Ordering::AcqRel);
        if prev & DEAD != 0 || prev & QUEUED == 0 {
            return None;
        }
        let bits = Events::from_bits_truncate((prev & PENDING) as u32);
        (!bits.is_empty()).then_some(bits)
    }

    /// Marks the tap dead and leaves its sink; called exactly once per tap, by the
    /// handle's deregistration or by a registration that failed.
    pub(crate) fn retire(this: &Arc<TapShared>) {
        this.state.fetch_or(DEAD, Ordering::AcqRel);
        match &this.sink {
            Sink::Queue { core, slot } => queue::forget(core, *slot, this),
            #[cfg(not(loom))]
            Sink::Vpoll(_) => {}
        }
    }
}
