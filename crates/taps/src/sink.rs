//! A vpoll fd driven by a source: user-space readiness seen by any outside event loop.

use crate::error::Result;
use crate::source::{Source, SourceInner, Subscription};
use crate::sync::{Arc, Mutex, lock};
use crate::tap::{Sink, TapShared};
use greenfd_vpoll::{Events, VpollFd};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

/// The vpoll fd a source mirrors into, with what was last applied to it.
pub(crate) struct Mirror {
    /// The fd whose events follow the source.
    vpoll: VpollFd,
    /// What was last written, and the first error of a write made in a firer's thread.
    applied: Mutex<Applied>,
}

/// The mirror's record of its writes.
#[derive(Default)]
struct Applied {
    /// The mask the fd holds (`None` before the first write).
    mask: Option<Events>,
    /// The first failed write since the last [`VpollSink::take_error`].
    error: Option<greenfd_vpoll::Error>,
}

impl Mirror {
    /// Copies the source's current level (within `filter`) into the fd.
    ///
    /// The level is read under the mirror's lock, after the change that triggered this call
    /// stored it; so whichever of several racing firers runs last writes the newest level,
    /// and the fd can never be left showing a stale one.
    pub(crate) fn sync(&self, source: &SourceInner, filter: Events) {
        let mut applied = lock(&self.applied);
        let want = source.level() & filter;
        if applied.mask == Some(want) {
            return;
        }
        tracing::trace!(fd = self.vpoll.as_raw_fd(), events = ?want, "taps vpoll sink set");
        match self.vpoll.set(want) {
            Ok(()) => applied.mask = Some(want),
            Err(e) => {
                tracing::debug!(fd = self.vpoll.as_raw_fd(), error = %e, "taps vpoll sink set failed");
                applied.mask = None;
                applied.error.get_or_insert(e);
            }
        }
    }
}

/// A tap whose sink is a vpoll fd: the fd's events follow the source's readiness (within
/// the filter, plus ERR and HUP), so epoll, poll, select, tokio or Python — in this process
/// or in one that inherited the fd — can wait on a user-space source.
///
/// Unlike queue taps, the fd is level-triggered: clearing a bit on the source clears it on
/// the fd. Dropping the sink deregisters the tap and closes the fd.
pub struct VpollSink {
    /// The registration on the source.
    tap: Subscription,
    /// The fd and its write record (shared with the source's table while registered).
    mirror: Arc<Mirror>,
}

impl std::fmt::Debug for VpollSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VpollSink")
            .field("fd", &self.mirror.vpoll.as_raw_fd())
            .field("tap", &self.tap)
            .finish()
    }
}

impl VpollSink {
    /// Mirrors `source` into a new vpoll fd on the best available backend.
    pub fn new(source: &Source, filter: Events) -> Result<Self> {
        Self::with_vpoll(source, VpollFd::new(Events::empty())?, filter)
    }

    /// Mirrors `source` into `vpoll` (e.g. one built to survive `exec`).
    pub fn with_vpoll(source: &Source, vpoll: VpollFd, filter: Events) -> Result<Self> {
        let mirror = Arc::new(Mirror {
            vpoll,
            applied: Mutex::new(Applied::default()),
        });
        let shared = Arc::new(TapShared::new(0, filter, Sink::Vpoll(Arc::clone(&mirror))));
        let tap = SourceInner::attach(source.inner(), shared)?;
        Ok(VpollSink { tap, mirror })
    }

    /// The vpoll fd's events now, as `poll(2)` reports them.
    pub fn events(&self) -> Result<Events> {
        Ok(self.mirror.vpoll.events()?)
    }

    /// The first error of a write to the fd made while firing, if any, clearing it.
    pub fn take_error(&self) -> Option<greenfd_vpoll::Error> {
        lock(&self.mirror.applied).error.take()
    }

    /// The underlying tap.
    pub fn subscription(&self) -> &Subscription {
        &self.tap
    }

    /// The vpoll fd itself.
    pub fn vpoll(&self) -> &VpollFd {
        &self.mirror.vpoll
    }
}

impl AsFd for VpollSink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.mirror.vpoll.as_fd()
    }
}

impl AsRawFd for VpollSink {
    fn as_raw_fd(&self) -> RawFd {
        self.mirror.vpoll.as_raw_fd()
    }
}
