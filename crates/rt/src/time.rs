//! Timers: [`sleep`] and [`timeout`], kept in the executor's deadline-ordered map; the
//! executor bounds `epoll_wait` by the nearest deadline.

use crate::executor::current;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// Waits until `duration` has passed.
pub fn sleep(duration: Duration) -> Sleep {
    Sleep::until(Instant::now() + duration)
}

/// A timer future; dropping it unregisters the timer.
///
/// # Panics
/// Polled outside a greenfd runtime (it would never be woken).
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Sleep {
    /// When it fires.
    deadline: Instant,
    /// Its key in the executor's timer map, while registered.
    key: Option<(Instant, u64)>,
}

impl Sleep {
    /// A timer that fires at `deadline`.
    pub fn until(deadline: Instant) -> Sleep {
        Sleep {
            deadline,
            key: None,
        }
    }

    /// When the timer fires.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            self.unregister();
            return Poll::Ready(());
        }
        let Some(core) = current() else {
            panic!("greenfd_rt::sleep polled outside a greenfd runtime");
        };
        let key = match self.key {
            Some(key) => key,
            None => {
                let id = core.next_timer.get();
                core.next_timer.set(id + 1);
                let key = (self.deadline, id);
                self.key = Some(key);
                key
            }
        };
        core.timers.borrow_mut().insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Sleep {
    /// Removes the timer from the executor's map.
    fn unregister(&mut self) {
        if let (Some(key), Some(core)) = (self.key.take(), current()) {
            if let Ok(mut timers) = core.timers.try_borrow_mut() {
                timers.remove(&key);
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.unregister();
    }
}

/// The deadline of a [`timeout`] passed first.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("deadline elapsed")]
pub struct Elapsed;

/// Runs `future` for at most `duration`; on expiry it is dropped (cancelled).
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout {
        future: Box::pin(future),
        sleep: sleep(duration),
    }
}

/// The future of [`timeout`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Timeout<F> {
    /// The work (boxed, so `Timeout` is `Unpin` without unsafe pinning).
    future: Pin<Box<F>>,
    /// The deadline.
    sleep: Sleep,
}

impl<F: Future> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(v) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        match Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}
