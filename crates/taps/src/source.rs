//! Sources of readiness and the taps registered on them.
//!
//! A source's table of taps is a copy-on-write list behind the source lock. Registration
//! and deregistration edit it under the lock; a change of readiness updates the mask and
//! clones a pointer to the list under the lock, then delivers to every tap *after*
//! releasing it. No sink (queue, vpoll fd) is ever called with the table locked, so a sink
//! may take its own lock or make a syscall, and a slow consumer cannot stall registration.
//!
//! This module implements lifetime rules 1–4 of the crate docs; the one subtle step is
//! registration, which inserts the tap and reads the mask in the same critical section and
//! delivers that level after it, so a change either precedes the read (and is in the
//! level) or follows the insert (and sees the tap).

use crate::error::{Error, Result};
use crate::queue::{self, EventQueue};
use crate::slots::Slots;
use crate::sync::{Arc, AtomicU32, Mutex, Ordering, Snapshot, lock};
use crate::tap::TapShared;
use greenfd_vpoll::Events;

/// The state of a source shared by its handle and its taps.
pub(crate) struct SourceInner {
    /// Mask, closed flag and tap table.
    state: Mutex<SourceState>,
    /// A copy of the mask readable without the lock (level queries and mirrors).
    level: AtomicU32,
}

/// Everything behind the source lock.
struct SourceState {
    /// Current readiness.
    mask: Events,
    /// Set once by `close`.
    closed: bool,
    /// Registered taps; firers walk a snapshot of it.
    taps: Snapshot<Slots<TapShared>>,
}

impl SourceInner {
    /// The current readiness, without taking the lock.
    pub(crate) fn level(&self) -> Events {
        Events::from_bits_truncate(self.level.load(Ordering::Acquire))
    }

    /// Applies `change` to the mask and delivers what rose to every tap.
    fn change(&self, change: impl FnOnce(Events) -> Events) {
        let (taps, rising) = {
            let mut st = lock(&self.state);
            if st.closed {
                return;
            }
            let old = st.mask;
            let new = change(old);
            if new == old {
                return;
            }
            st.mask = new;
            self.level.store(new.bits(), Ordering::Release);
            (Snapshot::clone(&st.taps), new - old)
        };
        for tap in taps.iter() {
            TapShared::deliver(tap, self, rising);
        }
    }

    /// Closes the source: HUP to every registered tap, which are detached.
    fn close(&self) {
        let (taps, rising) = {
            let mut st = lock(&self.state);
            if st.closed {
                return;
            }
            st.closed = true;
            let old = st.mask;
            st.mask |= Events::HUP;
            self.level.store(st.mask.bits(), Ordering::Release);
            (
                std::mem::take(&mut st.taps),
                // HUP is delivered even if the user had already set it: close is news.
                (st.mask - old) | Events::HUP,
            )
        };
        for tap in taps.iter() {
            TapShared::deliver(tap, self, rising);
        }
    }

    /// Registers `shared` and reports the current level to it.
    pub(crate) fn attach(this: &Arc<SourceInner>, shared: Arc<TapShared>) -> Result<Subscription> {
        let inserted = {
            let mut st = lock(&this.state);
            if st.closed {
                None
            } else {
                let taps = Snapshot::make_mut(&mut st.taps);
                let (slot, _) = taps.insert_with(|_| Arc::clone(&shared));
                Some((slot, st.mask))
            }
        };
        let Some((slot, mask)) = inserted else {
            TapShared::retire(&shared);
            return Err(Error::SourceClosed);
        };
        // The level query: bits set before registration are reported now; bits set after it
        // are delivered by the change that sets them, since that change sees the tap in the
        // table. Nothing falls between the two.
        TapShared::deliver(&shared, this, mask);
        Ok(Subscription {
            source: Arc::clone(this),
            shared,
            slot,
            registered: true,
        })
    }

    /// Removes a tap from the table unless `close` already emptied it.
    fn remove(&self, slot: usize, tap: &Arc<TapShared>) {
        let removed = {
            let mut st = lock(&self.state);
            if st.closed {
                return;
            }
            Snapshot::make_mut(&mut st.taps).remove(slot, tap)
        };
        drop(removed);
    }
}

/// A user-space object with a readiness mask that many taps watch.
///
/// Changes ([`set`](Self::set), [`add`](Self::add), [`clear`](Self::clear)) deliver the
/// bits that *rose* to every tap whose filter matches, like an edge-triggered epoll; the
/// current level is always available from [`readiness`](Self::readiness) and
/// [`Subscription::readiness`]. Dropping the source closes it.
pub struct Source {
    /// State shared with the taps.
    inner: Arc<SourceInner>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("readiness", &self.readiness())
            .field("closed", &self.is_closed())
            .field("taps", &self.subscription_count())
            .finish()
    }
}

impl Source {
    /// A source whose readiness starts as `init`.
    pub fn new(init: Events) -> Self {
        Source {
            inner: Arc::new(SourceInner {
                state: Mutex::new(SourceState {
                    mask: init,
                    closed: false,
                    taps: Snapshot::default(),
                }),
                level: AtomicU32::new(init.bits()),
            }),
        }
    }

    /// The current readiness (includes HUP once closed).
    pub fn readiness(&self) -> Events {
        self.inner.level()
    }

    /// Replaces the readiness with `events`; bits that rise are delivered.
    pub fn set(&self, events: Events) {
        self.inner.change(|_| events);
    }

    /// Sets `events` in addition to the current readiness; bits that rise are delivered.
    pub fn add(&self, events: Events) {
        self.inner.change(|old| old | events);
    }

    /// Clears `events` from the readiness (vpoll sinks follow; queues report only rises).
    pub fn clear(&self, events: Events) {
        self.inner.change(|old| old - events);
    }

    /// Closes the source: every tap receives HUP and is detached; later changes are
    /// ignored and later registrations fail. Idempotent.
    pub fn close(&self) {
        self.inner.close();
    }

    /// Whether [`close`](Self::close) has run.
    pub fn is_closed(&self) -> bool {
        lock(&self.inner.state).closed
    }

    /// Taps registered now (0 once closed).
    pub fn subscription_count(&self) -> usize {
        lock(&self.inner.state).taps.len()
    }

    /// Registers a tap that reports the bits of `filter` (plus ERR and HUP) to `queue`
    /// under `token`. Bits already set are reported at once.
    pub fn subscribe(
        &self,
        queue: &EventQueue,
        filter: Events,
        token: u64,
    ) -> Result<Subscription> {
        let shared = queue::enroll(queue.core(), token, filter);
        SourceInner::attach(&self.inner, shared)
    }

    /// The shared state, for sinks that register themselves.
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn inner(&self) -> &Arc<SourceInner> {
        &self.inner
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.inner.close();
    }
}

/// One registration of a sink on a [`Source`].
///
/// Dropping the tap (or calling [`close`](Self::close)) deregisters it exactly once; after
/// that returns, its queue reports no further event for it.
pub struct Subscription {
    /// The source, kept alive while the tap is registered.
    source: Arc<SourceInner>,
    /// The registration shared with the source's table and the sink.
    shared: Arc<TapShared>,
    /// The tap's slot in the source's table.
    slot: usize,
    /// True from successful registration until deregistration.
    registered: bool,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("token", &self.token())
            .field("filter", &self.filter())
            .field("registered", &self.registered)
            .finish()
    }
}

impl Subscription {
    /// The token reported with this tap's events.
    pub fn token(&self) -> u64 {
        self.shared.token
    }

    /// The bits this tap reports (its filter plus ERR and HUP).
    pub fn filter(&self) -> Events {
        self.shared.filter
    }

    /// The source's current readiness within this tap's filter (a level query).
    pub fn readiness(&self) -> Events {
        self.source.level() & self.shared.filter
    }

    /// Whether the source has been closed (the tap then stays registered to nothing).
    pub fn is_detached(&self) -> bool {
        lock(&self.source.state).closed
    }

    /// Deregisters the tap now.
    pub fn close(mut self) {
        self.deregister();
    }

    /// The one deregistration path of `close` and `Drop`.
    fn deregister(&mut self) {
        if !std::mem::replace(&mut self.registered, false) {
            return;
        }
        self.source.remove(self.slot, &self.shared);
        TapShared::retire(&self.shared);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.deregister();
    }
}
