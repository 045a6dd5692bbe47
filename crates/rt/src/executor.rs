//! The single-threaded executor: `block_on`, `spawn`, `JoinHandle`.
//!
//! One thread runs every task and, when it has nothing to run, drives the process-wide
//! reactor ([`Reactor::global`]): it attaches itself, so the reactor's fallback thread
//! stands aside, and blocks in `epoll_wait`. A task is a boxed future in a table keyed
//! by a never-reused id; its `std::task::Waker` is `Send + Sync` (an `Arc` holding the
//! id and the shared run queue), so a task may be woken from any thread: the wake pushes
//! the id onto a mutex-protected queue and then
//!
//! * on the executor's own thread (e.g. the reactor's turn waking a task of this
//!   executor) does nothing more: the thread is awake, no syscall;
//! * from another thread, if the executor is parked in `epoll_wait`, writes the
//!   reactor's eventfd (coalesced by [`greenfd_reactor::Waker`]); if it is parked on
//!   its thread (another thread was driving the reactor), unparks it.
//!
//! Cancellation is dropping: a task's future is dropped when it is cancelled through
//! [`JoinHandle::cancel`] or when `block_on` returns with tasks still pending, and each
//! future's `Drop` releases what it waits on (borrowed-fd waits disarm, timers
//! unregister). Dropping a [`JoinHandle`] *detaches* the task (it keeps running), as in
//! tokio: per-device or per-connection loops are usually spawned and forgotten.

use greenfd_reactor::Reactor;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// The id of the future given to `block_on`.
const MAIN: u64 = 0;
/// At most this many tasks run before the reactor is polled again, so IO is never
/// starved by a long run queue.
const BATCH: usize = 256;

/// The part of the executor other threads can touch.
#[derive(Debug)]
struct Shared {
    /// Ids of woken tasks, in wake order.
    queue: Mutex<VecDeque<u64>>,
    /// Where the executor sleeps: [`RUNNING`], [`IN_REACTOR`] or [`ON_THREAD`].
    parked: AtomicU8,
    /// The reactor it drives (its eventfd interrupts `epoll_wait`).
    reactor: Reactor,
    /// The executor's thread, to unpark it.
    thread: Thread,
}

/// The executor is running tasks: a wake only queues.
const RUNNING: u8 = 0;
/// The executor is (about to be) blocked in `epoll_wait`: a wake writes the eventfd.
const IN_REACTOR: u8 = 1;
/// The executor is (about to be) parked on its thread while another drives: a wake
/// unparks it.
const ON_THREAD: u8 = 2;

thread_local! {
    /// The `Shared` of the executor running on this thread (its address), so a wake
    /// issued on the executor's own thread skips the cross-thread signal.
    static OWN: Cell<usize> = const { Cell::new(0) };
}

/// A task's waker.
#[derive(Debug)]
struct TaskWaker {
    /// Which task.
    id: u64,
    /// Whether the id is already queued (many wakes, one queue entry).
    scheduled: AtomicBool,
    /// The queue to push onto.
    shared: Arc<Shared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(self.id);
        // On the executor's own thread the executor is awake (this wake comes from a task
        // it polls or from the turn it runs): the queue is enough.
        if OWN.with(Cell::get) == Arc::as_ptr(&self.shared) as usize {
            return;
        }
        // Pairs with the executor's store of `parked` then re-check of the queue: one of
        // the two sides sees the other, so no wake is lost.
        match self.shared.parked.load(Ordering::SeqCst) {
            IN_REACTOR => self.shared.reactor.notify(),
            ON_THREAD => self.shared.thread.unpark(),
            _ => {}
        }
    }
}

/// A spawned task in the table.
struct TaskSlot {
    /// The future; `None` while it is being polled.
    future: Option<Pin<Box<dyn Future<Output = ()>>>>,
    /// Its waker.
    waker: Arc<TaskWaker>,
    /// Cancelled while it was running; drop it when the poll returns.
    cancelled: bool,
}

/// Everything the executor of one thread owns.
pub(crate) struct Core {
    /// The reactor it drives.
    pub(crate) reactor: Reactor,
    /// Run queue and wake plumbing.
    shared: Arc<Shared>,
    /// Spawned tasks.
    tasks: RefCell<HashMap<u64, TaskSlot>>,
    /// Next task id.
    next_id: Cell<u64>,
    /// Pending timers by (deadline, unique id).
    pub(crate) timers: RefCell<BTreeMap<(Instant, u64), Waker>>,
    /// Next timer id.
    pub(crate) next_timer: Cell<u64>,
}

thread_local! {
    /// The executor running on this thread, inside `block_on`.
    static CURRENT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

/// The executor of this thread, if inside `block_on`.
pub(crate) fn current() -> Option<Rc<Core>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// The reactor of the runtime running on this thread, if any (the process-wide
/// [`Reactor::global`], which every runtime shares).
pub fn current_reactor() -> Option<Reactor> {
    current().map(|c| c.reactor.clone())
}

/// Returned by [`try_spawn`] outside a runtime.
#[derive(Debug, thiserror::Error)]
#[error("no greenfd runtime on this thread (call inside greenfd_rt::block_on)")]
pub struct NoRuntime;

/// Why a [`JoinHandle`] has no value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JoinError {
    /// The task was cancelled with [`JoinHandle::cancel`], or the runtime shut down
    /// before it finished.
    #[error("task was cancelled")]
    Cancelled,
}

/// What a task and its handle share.
struct JoinState<T> {
    /// The outcome, once there is one.
    result: Option<Result<T, JoinError>>,
    /// Whether the outcome was decided (so a late cancel cannot overwrite it).
    finished: bool,
    /// The task awaiting the handle.
    waiter: Option<Waker>,
}

impl<T> JoinState<T> {
    /// Records the outcome once and wakes the awaiting task.
    fn finish(&mut self, outcome: Result<T, JoinError>) -> Option<Waker> {
        if self.finished {
            return None;
        }
        self.finished = true;
        self.result = Some(outcome);
        self.waiter.take()
    }
}

/// An awaitable handle to a spawned task. Dropping it detaches the task.
pub struct JoinHandle<T> {
    /// The task's id.
    id: u64,
    /// Shared outcome.
    state: Rc<RefCell<JoinState<T>>>,
}

impl<T> std::fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle").field("id", &self.id).finish()
    }
}

impl<T> JoinHandle<T> {
    /// Cancels the task: its future is dropped (now, or as soon as its current poll
    /// returns if it cancels itself) and awaiting the handle gives `Cancelled`, unless it
    /// had already finished.
    pub fn cancel(&self) {
        let waker = self.state.borrow_mut().finish(Err(JoinError::Cancelled));
        if let Some(core) = current() {
            let dropped = {
                let mut tasks = core.tasks.borrow_mut();
                match tasks.get_mut(&self.id) {
                    Some(slot) if slot.future.is_none() => {
                        slot.cancelled = true;
                        None
                    }
                    Some(_) => tasks.remove(&self.id),
                    None => None,
                }
            };
            // Dropped outside the borrow: the future's Drop may spawn or cancel.
            drop(dropped);
        }
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Whether the task finished or was cancelled.
    pub fn is_finished(&self) -> bool {
        self.state.borrow().finished
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.state.borrow_mut();
        match state.result.take() {
            Some(r) => Poll::Ready(r),
            None if state.finished => Poll::Ready(Err(JoinError::Cancelled)),
            None => {
                state.waiter = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Spawns a task on this thread's runtime.
///
/// # Panics
/// Outside [`block_on`]; use [`try_spawn`] to get an error instead.
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    match try_spawn(future) {
        Ok(h) => h,
        Err(e) => panic!("greenfd_rt::spawn: {e}"),
    }
}

/// Spawns a task on this thread's runtime, or fails outside one.
pub fn try_spawn<F>(future: F) -> Result<JoinHandle<F::Output>, NoRuntime>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let core = current().ok_or(NoRuntime)?;
    let id = core.next_id.get();
    core.next_id.set(id + 1);
    let state = Rc::new(RefCell::new(JoinState {
        result: None,
        finished: false,
        waiter: None,
    }));
    let task_state = Rc::clone(&state);
    let wrapped = async move {
        let value = future.await;
        let waker = task_state.borrow_mut().finish(Ok(value));
        if let Some(w) = waker {
            w.wake();
        }
    };
    let waker = Arc::new(TaskWaker {
        id,
        scheduled: AtomicBool::new(false),
        shared: Arc::clone(&core.shared),
    });
    core.tasks.borrow_mut().insert(
        id,
        TaskSlot {
            future: Some(Box::pin(wrapped)),
            waker: Arc::clone(&waker),
            cancelled: false,
        },
    );
    waker.wake_by_ref();
    Ok(JoinHandle { id, state })
}

/// Runs `future` to completion on this thread, driving spawned tasks, timers and the
/// reactor. Tasks still pending when it returns are cancelled (dropped).
///
/// Fails if the epoll instance cannot be created, or if called inside another
/// `block_on` on the same thread (that would block the outer runtime).
pub fn block_on<F: Future>(future: F) -> io::Result<F::Output> {
    if current().is_some() {
        return Err(io::Error::other(
            "greenfd_rt::block_on called inside a greenfd runtime",
        ));
    }
    let reactor = Reactor::global()?;
    let _attached = reactor.attach_executor();
    let shared = Arc::new(Shared {
        queue: Mutex::new(VecDeque::new()),
        parked: AtomicU8::new(RUNNING),
        reactor: reactor.clone(),
        thread: std::thread::current(),
    });
    let core = Rc::new(Core {
        reactor,
        shared: Arc::clone(&shared),
        tasks: RefCell::new(HashMap::new()),
        next_id: Cell::new(MAIN + 1),
        timers: RefCell::new(BTreeMap::new()),
        next_timer: Cell::new(0),
    });
    CURRENT.with(|c| *c.borrow_mut() = Some(Rc::clone(&core)));
    OWN.with(|o| o.set(Arc::as_ptr(&shared) as usize));
    let _guard = Uninstall(Rc::clone(&core));
    let main_waker = Arc::new(TaskWaker {
        id: MAIN,
        scheduled: AtomicBool::new(false),
        shared: Arc::clone(&shared),
    });
    main_waker.wake_by_ref();
    let main_waker_std = Waker::from(Arc::clone(&main_waker));
    let mut future = pin!(future);
    // Reused every iteration: taking a batch allocates nothing.
    let mut batch: Vec<u64> = Vec::with_capacity(BATCH);
    loop {
        {
            let mut q = shared.queue.lock().unwrap_or_else(|p| p.into_inner());
            let n = q.len().min(BATCH);
            batch.extend(q.drain(..n));
        }
        for id in batch.drain(..) {
            if id == MAIN {
                main_waker.scheduled.store(false, Ordering::Release);
                if let Poll::Ready(v) = future
                    .as_mut()
                    .poll(&mut Context::from_waker(&main_waker_std))
                {
                    return Ok(v);
                }
            } else {
                core.run_task(id);
            }
        }
        core.fire_timers();
        let queue_empty = || {
            shared
                .queue
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty()
        };
        let timeout = if queue_empty() {
            core.next_timeout()
        } else {
            Some(Duration::ZERO)
        };
        if let Some(driver) = core.reactor.try_lock_driver() {
            drive(&shared, driver, timeout, &queue_empty)?;
            continue;
        }
        // Another thread drives the reactor (another executor, or the fallback thread
        // handing over): wait to take over, or for a wake of our own.
        let _candidate = core.reactor.enlist();
        if let Some(driver) = core.reactor.try_lock_driver() {
            drive(&shared, driver, timeout, &queue_empty)?;
            continue;
        }
        shared.parked.store(ON_THREAD, Ordering::SeqCst);
        if queue_empty() {
            match timeout {
                None => std::thread::park(),
                Some(t) if !t.is_zero() => std::thread::park_timeout(t),
                Some(_) => {}
            }
        }
        shared.parked.store(RUNNING, Ordering::SeqCst);
    }
}

/// One turn of the reactor as its driver, parked in `epoll_wait` for at most `timeout`.
fn drive(
    shared: &Shared,
    mut driver: greenfd_reactor::Driver<'_>,
    timeout: Option<Duration>,
    queue_empty: &dyn Fn() -> bool,
) -> io::Result<()> {
    let timeout = if timeout == Some(Duration::ZERO) {
        timeout
    } else {
        // Announce the park, then look again: a wake from another thread either lands
        // before this check or sees `parked` and writes the eventfd.
        shared.parked.store(IN_REACTOR, Ordering::SeqCst);
        if queue_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        }
    };
    let turned = driver.turn(timeout);
    shared.parked.store(RUNNING, Ordering::SeqCst);
    turned.map(drop)
}

/// Uninstalls the executor on exit (also on panic), dropping leftover tasks while the
/// runtime is still reachable from their `Drop`s.
struct Uninstall(Rc<Core>);

impl Drop for Uninstall {
    fn drop(&mut self) {
        loop {
            let tasks = std::mem::take(&mut *self.0.tasks.borrow_mut());
            if tasks.is_empty() {
                break;
            }
            drop(tasks);
        }
        CURRENT.with(|c| *c.borrow_mut() = None);
        OWN.with(|o| o.set(0));
    }
}

impl Core {
    /// Polls one task if it still exists.
    fn run_task(&self, id: u64) {
        let (mut future, waker) = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(slot) = tasks.get_mut(&id) else {
                return; // finished or cancelled since it was woken
            };
            let Some(future) = slot.future.take() else {
                return;
            };
            (future, Arc::clone(&slot.waker))
        };
        waker.scheduled.store(false, Ordering::Release);
        let std_waker = Waker::from(waker);
        let done = future
            .as_mut()
            .poll(&mut Context::from_waker(&std_waker))
            .is_ready();
        let finished_future = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get_mut(&id) {
                Some(slot) if !done && !slot.cancelled => {
                    slot.future = Some(future);
                    None
                }
                Some(_) => {
                    tasks.remove(&id);
                    Some(future)
                }
                None => Some(future),
            }
        };
        drop(finished_future);
    }

    /// Wakes every timer whose deadline passed.
    fn fire_timers(&self) {
        // The common case on the IO hot path: no timer, or none due. Checked first so
        // a loop iteration costs no clock read, split or allocation for timers.
        let now = match self.timers.borrow().keys().next() {
            None => return,
            Some(&(first, _)) => {
                let now = Instant::now();
                if first > now {
                    return;
                }
                now
            }
        };
        let due: Vec<Waker> = {
            let mut timers = self.timers.borrow_mut();
            let later = timers.split_off(&(now, u64::MAX));
            std::mem::replace(&mut *timers, later)
                .into_values()
                .collect()
        };
        due.into_iter().for_each(Waker::wake);
    }

    /// How long the reactor may block: until the next timer, or forever.
    fn next_timeout(&self) -> Option<Duration> {
        self.timers
            .borrow()
            .keys()
            .next()
            .map(|(deadline, _)| deadline.saturating_duration_since(Instant::now()))
    }

    /// How many spawned tasks exist (for tests and statistics).
    pub(crate) fn task_count(&self) -> usize {
        self.tasks.borrow().len()
    }
}

/// How many spawned tasks are alive on this thread's runtime (0 outside one).
pub fn task_count() -> usize {
    current().map_or(0, |c| c.task_count())
}
