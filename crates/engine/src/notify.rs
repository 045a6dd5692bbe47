//! The engine's cross-thread wake-up: a coalescing eventfd.
//!
//! This duplicates `greenfd_reactor::Waker` on purpose. That waker clears its
//! "write pending" flag *before* reading the eventfd, which loses wake-ups: a `wake()`
//! that lands between the clear and the read sets the flag and writes, the read then
//! consumes that write, and the flag stays set with nothing left to report, so every
//! later `wake()` is suppressed and the loop sleeps on queued sends forever (the
//! engine's 4-thread send test hit it in about half of its runs). Here the reactor reads
//! first and clears the flag afterwards, with a read-modify-write so a sender whose
//! wake was suppressed is guaranteed to have its message seen by the drain that
//! follows. Switch back once the reactor's waker is fixed.

use rustix::event::{EventfdFlags, eventfd};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Wakes a reactor blocked in `epoll_wait`, from any thread; many wakes, one write.
#[derive(Debug)]
pub(crate) struct Notify {
    /// Non-blocking eventfd the reactor polls (level-triggered).
    fd: OwnedFd,
    /// A write has been made (or is about to be) that the reactor has not consumed.
    pending: AtomicBool,
}

impl Notify {
    /// Creates the eventfd (non-blocking, close-on-exec).
    pub(crate) fn new() -> io::Result<Notify> {
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Notify {
            fd,
            pending: AtomicBool::new(false),
        })
    }

    /// Wakes the reactor unless a wake is already on its way. Call after publishing the
    /// work the reactor should see.
    pub(crate) fn wake(&self) -> io::Result<()> {
        if self.pending.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        tracing::trace!(fd = self.fd.as_raw_fd(), "notify write");
        match rustix::io::write(&self.fd, &1u64.to_ne_bytes()) {
            // EAGAIN: the counter is saturated, the reactor is certainly woken.
            Ok(_) | Err(rustix::io::Errno::AGAIN) => Ok(()),
            Err(e) => {
                self.pending.store(false, Ordering::Release);
                Err(e.into())
            }
        }
    }

    /// Consumes the wake-up; the caller must look for published work afterwards.
    pub(crate) fn drain(&self) -> io::Result<()> {
        let mut buf = [0u8; 8];
        match rustix::io::read(&self.fd, &mut buf) {
            Ok(_) | Err(rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(e.into()),
        }
        // After the read: a wake that sets the flag from here on writes again. The
        // swap (not a plain store) reads the flag a suppressed sender saw set, so its
        // earlier-published message is visible to the caller's drain.
        self.pending.swap(false, Ordering::AcqRel);
        Ok(())
    }
}

impl AsFd for Notify {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenfd_reactor::{Events, Interest, Mode, Poller};
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    /// Senders bump a counter then wake; the reactor must always catch up with the
    /// counter (a lost wake-up leaves it blocked with work published).
    #[test]
    fn no_wake_is_lost_under_contention() {
        let poller = Poller::new().unwrap();
        let notify = Arc::new(Notify::new().unwrap());
        let published = Arc::new(AtomicU64::new(0));
        poller
            .add(notify.as_fd(), 0, Interest::READABLE, Mode::Level)
            .unwrap();
        const PER: u64 = 20_000;
        let senders: Vec<_> = (0..3)
            .map(|_| {
                let (n, p) = (Arc::clone(&notify), Arc::clone(&published));
                std::thread::spawn(move || {
                    for _ in 0..PER {
                        p.fetch_add(1, Ordering::Release);
                        n.wake().unwrap();
                    }
                })
            })
            .collect();
        let mut events = Events::with_capacity(4);
        let mut seen = 0;
        while seen < 3 * PER {
            let n = poller
                .wait(&mut events, Some(Duration::from_secs(20)))
                .unwrap();
            assert_eq!(n, 1, "lost wake-up: saw {seen} of {}", 3 * PER);
            notify.drain().unwrap();
            seen = published.load(Ordering::Acquire);
        }
        for s in senders {
            s.join().unwrap();
        }
    }
}
