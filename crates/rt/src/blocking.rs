//! A small pool of threads for work that would block the loop (regular-file IO,
//! where epoll refuses to help with `EPERM`).
//!
//! Threads are started on demand up to [`MAX_THREADS`] and exit after
//! [`IDLE_TIMEOUT`] without work, so an idle program keeps none.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// The most threads the pool runs at once.
pub const MAX_THREADS: usize = 8;
/// How long an idle pool thread waits for work before exiting.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A unit of work.
type Job = Box<dyn FnOnce() + Send>;

/// The pool's queue and thread accounting.
#[derive(Default)]
struct PoolState {
    /// Jobs not yet picked up.
    jobs: VecDeque<Job>,
    /// Threads alive.
    threads: usize,
    /// Threads waiting for a job.
    idle: usize,
}

/// The process-wide pool.
#[derive(Default)]
struct Pool {
    /// Queue and counters.
    state: Mutex<PoolState>,
    /// Signals a new job.
    cv: Condvar,
}

/// The pool, created on first use.
fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(Pool::default)
}

impl Pool {
    /// Queues a job, starting a thread if none is idle and the cap allows.
    fn submit(&'static self, job: Job) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.jobs.push_back(job);
        if st.idle == 0 && st.threads < MAX_THREADS {
            st.threads += 1;
            let spawned = std::thread::Builder::new()
                .name("greenfd-blocking".into())
                .spawn(move || self.worker());
            if let Err(e) = spawned {
                st.threads -= 1;
                tracing::warn!(error = %e, "cannot start a blocking-pool thread");
            }
        } else {
            self.cv.notify_one();
        }
    }

    /// A pool thread: run jobs until idle for too long.
    fn worker(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(job) = st.jobs.pop_front() {
                drop(st);
                job();
                st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st.idle += 1;
            let (guard, timeout) = self
                .cv
                .wait_timeout(st, IDLE_TIMEOUT)
                .unwrap_or_else(|p| p.into_inner());
            st = guard;
            st.idle -= 1;
            if timeout.timed_out() && st.jobs.is_empty() {
                st.threads -= 1;
                return;
            }
        }
    }
}

/// Where a job's result meets the task awaiting it.
struct Slot<T> {
    /// The result, once the job finished.
    result: Option<T>,
    /// The awaiting task.
    waker: Option<Waker>,
}

/// Runs `f` on the blocking pool; the returned future resolves to its result.
/// Dropping the future does not stop `f` (a thread cannot be interrupted); its result
/// is discarded.
pub fn unblock<T, F>(f: F) -> Unblock<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let slot = Arc::new(Mutex::new(Slot {
        result: None,
        waker: None,
    }));
    let theirs = Arc::clone(&slot);
    pool().submit(Box::new(move || {
        let value = f();
        let waker = {
            let mut s = theirs.lock().unwrap_or_else(|p| p.into_inner());
            s.result = Some(value);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }));
    Unblock { slot }
}

/// The future of [`unblock`].
#[must_use = "futures do nothing unless polled"]
pub struct Unblock<T> {
    /// Shared with the job.
    slot: Arc<Mutex<Slot<T>>>,
}

impl<T> std::fmt::Debug for Unblock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unblock").finish_non_exhaustive()
    }
}

impl<T> Future for Unblock<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        match s.result.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
