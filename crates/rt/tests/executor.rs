//! The executor: spawn/join, cancel, detach, timers, timeouts, cross-thread wakes.

use greenfd_rt::{
    JoinError, block_on, current_reactor, sleep, spawn, task_count, timeout, try_spawn,
};
use std::cell::Cell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// Sets a flag when dropped: proves a future was dropped (cancelled).
struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// Yields once to the executor.
async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

#[test]
fn spawned_tasks_run_and_join() {
    let sum = block_on(async {
        let handles: Vec<_> = (0..100u64)
            .map(|i| {
                spawn(async move {
                    yield_now().await;
                    i
                })
            })
            .collect();
        let mut sum = 0;
        for h in handles {
            sum += h.await.unwrap();
        }
        sum
    })
    .unwrap();
    assert_eq!(sum, 4950);
}

#[test]
fn cancel_drops_the_future_and_join_reports_cancelled() {
    block_on(async {
        let dropped = Rc::new(Cell::new(false));
        let flag = DropFlag(Rc::clone(&dropped));
        let h = spawn(async move {
            let _flag = flag;
            sleep(Duration::from_secs(3600)).await;
        });
        yield_now().await;
        assert!(!dropped.get());
        h.cancel();
        assert!(dropped.get(), "future dropped at cancel");
        assert_eq!(h.await, Err(JoinError::Cancelled));
        assert_eq!(task_count(), 0);
    })
    .unwrap();
}

#[test]
fn dropping_a_join_handle_detaches() {
    let ran = Rc::new(Cell::new(false));
    let r = Rc::clone(&ran);
    block_on(async move {
        drop(spawn(async move {
            yield_now().await;
            r.set(true);
        }));
        for _ in 0..10 {
            yield_now().await;
        }
    })
    .unwrap();
    assert!(ran.get(), "detached task still ran");
}

#[test]
fn pending_tasks_are_cancelled_when_block_on_returns() {
    let dropped = Rc::new(Cell::new(false));
    let flag = DropFlag(Rc::clone(&dropped));
    block_on(async move {
        spawn(async move {
            let _flag = flag;
            sleep(Duration::from_secs(3600)).await;
        });
        yield_now().await;
    })
    .unwrap();
    assert!(dropped.get());
    assert!(try_spawn(async {}).is_err(), "no runtime after block_on");
}

#[test]
fn sleep_waits_at_least_its_duration_and_timers_fire_in_order() {
    let order = block_on(async {
        let order = Rc::new(std::cell::RefCell::new(Vec::new()));
        let mut hs = Vec::new();
        for (i, ms) in [(0, 60u64), (1, 20), (2, 40)] {
            let o = Rc::clone(&order);
            hs.push(spawn(async move {
                let start = Instant::now();
                sleep(Duration::from_millis(ms)).await;
                assert!(start.elapsed() >= Duration::from_millis(ms));
                o.borrow_mut().push(i);
            }));
        }
        for h in hs {
            h.await.unwrap();
        }
        order.take()
    })
    .unwrap();
    assert_eq!(order, vec![1, 2, 0]);
}

#[test]
fn timeout_cancels_slow_work_and_passes_fast_work() {
    block_on(async {
        let dropped = Rc::new(Cell::new(false));
        let flag = DropFlag(Rc::clone(&dropped));
        let slow = timeout(Duration::from_millis(10), async move {
            let _flag = flag;
            sleep(Duration::from_secs(3600)).await;
        })
        .await;
        assert!(slow.is_err());
        assert!(dropped.get(), "the slow future was dropped");
        let fast = timeout(Duration::from_secs(3600), async { 7 }).await;
        assert_eq!(fast, Ok(7));
    })
    .unwrap();
}

#[test]
fn a_wake_from_another_thread_reaches_a_parked_executor() {
    block_on(async {
        let (tx, rx) = std::sync::mpsc::channel::<std::task::Waker>();
        let t = std::thread::spawn(move || {
            let w = rx.recv().unwrap();
            w.wake();
        });
        let mut sent = false;
        poll_fn(|cx| {
            if sent {
                Poll::Ready(())
            } else {
                sent = true;
                tx.send(cx.waker().clone()).unwrap();
                Poll::Pending
            }
        })
        .await;
        t.join().unwrap();
        // Nothing else could have woken us: no timers, no fds.
        assert_eq!(current_reactor().unwrap().statistics().registered_fds, 0);
    })
    .unwrap();
}

#[test]
fn nested_block_on_is_an_error_not_a_deadlock() {
    block_on(async {
        assert!(block_on(async {}).is_err());
    })
    .unwrap();
}

#[test]
fn unblock_runs_off_the_loop() {
    // The job blocks until a task *on the loop* sends: if the job ran on the loop
    // thread, nothing could send and this would deadlock (the timeout turns that into a
    // failure).
    block_on(async {
        let (tx, rx) = std::sync::mpsc::channel::<u32>();
        let job = spawn(greenfd_rt::unblock(move || {
            rx.recv_timeout(Duration::from_secs(30))
        }));
        let sender = spawn(async move {
            yield_now().await;
            tx.send(42).unwrap();
        });
        let got = timeout(Duration::from_secs(30), job)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, Ok(42));
        sender.await.unwrap();
    })
    .unwrap();
}

/// This binary runs greenfd-rt only: its executors drive the reactor, so the fallback
/// driver thread is never needed and never started, even with tasks parked on IO, and
/// even with several executors on several threads at once.
#[test]
fn the_fallback_driver_is_not_started_while_executors_drive() {
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    let threads: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(|| {
                block_on(async {
                    let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
                    let (mut a, mut b) = (
                        greenfd_rt::Async::new(a).unwrap(),
                        greenfd_rt::Async::new(b).unwrap(),
                    );
                    let echo = spawn(async move {
                        let mut buf = [0u8; 4];
                        for _ in 0..100 {
                            b.read_exact(&mut buf).await.unwrap();
                            b.write_all(&buf).await.unwrap();
                        }
                    });
                    let mut buf = [0u8; 4];
                    for _ in 0..100 {
                        a.write_all(b"ping").await.unwrap();
                        a.read_exact(&mut buf).await.unwrap();
                    }
                    echo.await.unwrap();
                    let stats = current_reactor().unwrap().statistics();
                    assert!(stats.executors >= 1);
                    stats.fallback_driver
                })
                .unwrap()
            })
        })
        .collect();
    for t in threads {
        assert!(
            !t.join().unwrap(),
            "fallback thread started under greenfd-rt"
        );
    }
}
