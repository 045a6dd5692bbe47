//! The reactor's Trio scenarios and the `Async`/TUN paths, with the same test bodies run
//! under greenfd-rt, tokio (multi-thread, inside `tokio::spawn`), tokio current-thread
//! and smol. Under greenfd-rt the executor drives the global reactor; under the others
//! its fallback thread does.
//!
//! The tests share the global reactor's counters, so they take a lock and run one at a
//! time; each body runs under a watchdog that fails the test instead of hanging.

mod common;

use common::*;
use futures_lite::future::zip;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use greenfd_rt::Async;
use greenfd_rt::reactor::Error;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_second_waiter_gets_busy_resource_at_once() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            let (_a, b) = UnixStream::pair().unwrap();
            let r = global();
            let mut first = Box::pin(r.wait_readable(b.as_fd()));
            assert!(is_pending(&mut first).await);
            assert!(matches!(
                r.wait_readable(b.as_fd()).await,
                Err(Error::BusyResource)
            ));
            // Another direction is not busy.
            assert!(r.wait_writable(b.as_fd()).await.is_ok());
            drop(first);
            assert_eq!(armed_bits(b.as_raw_fd()), None, "cancelled wait deleted");
        });
    }
}

#[test]
fn notify_closing_from_another_thread_wakes_reader_and_writer_with_closed() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            let (_a, b) = UnixStream::pair().unwrap();
            fill(&b);
            let b = Arc::new(b);
            let r = global();
            let closer = {
                let (r, b) = (r.clone(), Arc::clone(&b));
                later(Duration::from_millis(50), move || {
                    r.notify_closing(b.as_fd()).unwrap()
                })
            };
            let (read, write) = zip(r.wait_readable(b.as_fd()), r.wait_writable(b.as_fd())).await;
            assert!(matches!(read, Err(Error::Closed)), "{read:?}");
            assert!(matches!(write, Err(Error::Closed)), "{write:?}");
            closer.join().unwrap();
            assert_eq!(armed_bits(b.as_raw_fd()), None, "registration removed");
        });
    }
}

#[test]
fn hangup_wakes_reader_and_writer() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            let (a, b) = UnixStream::pair().unwrap();
            fill(&b);
            let r = global();
            let hang_up = later(Duration::from_millis(50), move || drop(a));
            let (read, write) = zip(r.wait_readable(b.as_fd()), r.wait_writable(b.as_fd())).await;
            assert!(read.is_ok() && write.is_ok(), "{read:?} {write:?}");
            hang_up.join().unwrap();
        });
    }
}

#[test]
fn error_wakes_reader_and_writer() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            // The write end of a full pipe: closing the read end raises EPOLLERR on it.
            let (rd, wr_end) = rustix::pipe::pipe().unwrap();
            rustix::fs::fcntl_setfl(&wr_end, rustix::fs::OFlags::NONBLOCK).unwrap();
            while rustix::io::write(&wr_end, &[0u8; 65536]).is_ok() {}
            let r = global();
            let close = later(Duration::from_millis(50), move || drop(rd));
            let (read, write) = zip(
                r.wait_readable(wr_end.as_fd()),
                r.wait_writable(wr_end.as_fd()),
            )
            .await;
            assert!(read.is_ok() && write.is_ok(), "{read:?} {write:?}");
            close.join().unwrap();
        });
    }
}

/// Replaces the file behind `target` with `with` (dup2): an unnotified close of the old
/// file and reuse of its number in one step.
fn reuse_number(with: &OwnedFd, target: RawFd) {
    // SAFETY: the test owns `target`; taking ownership briefly lets dup2 replace it, and
    // `into_raw_fd` gives the number back without closing it.
    let mut t = unsafe { OwnedFd::from_raw_fd(target) };
    rustix::io::dup2(with, &mut t).unwrap();
    let _ = t.into_raw_fd();
}

#[test]
fn a_number_reused_after_an_unnotified_close_works_at_once() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            let r = global();
            let (mut a, b) = UnixStream::pair().unwrap();
            let raw = b.into_raw_fd();
            // SAFETY: `raw` stays open (its file is replaced, never closed) until the end.
            let fd = unsafe { BorrowedFd::borrow_raw(raw) };
            let w = later(Duration::from_millis(20), move || {
                a.write_all(b"x").unwrap()
            });
            r.wait_readable(fd).await.unwrap();
            w.join().unwrap();
            assert_eq!(armed_bits(raw), Some(0), "stays registered, disarmed");
            let (mut c, d) = UnixStream::pair().unwrap();
            reuse_number(&OwnedFd::from(d), raw);
            let w = later(Duration::from_millis(20), move || {
                c.write_all(b"y").unwrap()
            });
            r.wait_readable(fd).await.unwrap(); // MOD said ENOENT, ADD worked
            w.join().unwrap();
            // SAFETY: we own `raw` and nothing uses it after this.
            drop(unsafe { OwnedFd::from_raw_fd(raw) });
        });
    }
}

#[test]
fn a_dup_closed_while_registered_never_busy_loops() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            let r = global();
            let (mut a, b) = UnixStream::pair().unwrap();
            // A dup is registered (armed), closed behind our back while the original keeps
            // the file alive, and its waiter cancelled: that kernel entry can no longer be
            // removed by number.
            let dup_raw = b.try_clone().unwrap().into_raw_fd();
            // SAFETY: `dup_raw` is open until the close below; the wait is dropped after.
            let dup_fd = unsafe { BorrowedFd::borrow_raw(dup_raw) };
            let mut on_dup = Box::pin(r.wait_readable(dup_fd));
            assert!(is_pending(&mut on_dup).await);
            // SAFETY: closing a number we own (the unnotified close this test is about).
            drop(unsafe { OwnedFd::from_raw_fd(dup_raw) });
            drop(on_dup);
            // Permanently readable and hung up: a level-triggered stale entry would now
            // report on every epoll_wait.
            a.write_all(b"data").unwrap();
            drop(a);
            r.wait_readable(b.as_fd()).await.unwrap();
            let before = r.statistics();
            sleep(Duration::from_millis(300)).await;
            let after = r.statistics();
            let turns = after.turns - before.turns;
            eprintln!("{turns} turns over an idle 300 ms");
            // Idle, the driver turns for the sleep's wake-up and little else; a busy loop
            // would turn tens of thousands of times.
            assert!(turns < 50, "busy loop: {turns} turns while idle");
            r.wait_readable(b.as_fd()).await.unwrap();
        });
    }
}

#[test]
fn cancellation_leaves_no_armed_registration() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            let r = global();
            let (_a, b) = UnixStream::pair().unwrap();
            fill(&b);
            {
                let mut rd = Box::pin(r.wait_readable(b.as_fd()));
                let mut wr = Box::pin(r.wait_writable(b.as_fd()));
                let mut pr = Box::pin(r.wait_priority(b.as_fd()));
                assert!(is_pending(&mut rd).await);
                assert!(is_pending(&mut wr).await);
                assert!(is_pending(&mut pr).await);
                let bits = armed_bits(b.as_raw_fd()).expect("registered");
                assert_ne!(bits & libc::EPOLLIN as u32, 0);
                assert_ne!(bits & libc::EPOLLOUT as u32, 0);
                assert_ne!(bits & libc::EPOLLPRI as u32, 0);
            }
            assert_eq!(
                armed_bits(b.as_raw_fd()),
                None,
                "nothing left in the kernel"
            );
            let mut rd = Box::pin(r.wait_readable(b.as_fd()));
            assert!(is_pending(&mut rd).await);
            {
                let mut wr = Box::pin(r.wait_writable(b.as_fd()));
                assert!(is_pending(&mut wr).await);
            }
            let bits = armed_bits(b.as_raw_fd()).unwrap();
            assert_eq!(bits & libc::EPOLLOUT as u32, 0, "writer's interest gone");
            assert_ne!(bits & libc::EPOLLIN as u32, 0, "reader still armed");
        });
    }
}

#[test]
fn async_sockets_stream_a_megabyte_both_ways_between_tasks() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |rt| async move {
            const LEN: usize = 1 << 20;
            let (a, b) = UnixStream::pair().unwrap();
            let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
            // The echo runs as its own task (another thread under tokio multi-thread and
            // smol): both sides block on backpressure many times over.
            let echo = spawn_on(rt, async move {
                let mut buf = vec![0u8; 8192];
                let mut total = 0;
                while total < LEN {
                    let n = b.read(&mut buf).await.unwrap();
                    assert!(n > 0, "early end of stream");
                    b.write_all(&buf[..n]).await.unwrap();
                    total += n;
                }
            });
            let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
            // Send through a dup (its own registration) while reading through `a`.
            let send = {
                let data = data.clone();
                let mut w = Async::new(a.get_ref().try_clone().unwrap()).unwrap();
                async move { w.write_all(&data).await.unwrap() }
            };
            let recv = async {
                let mut back = vec![0u8; LEN];
                a.read_exact(&mut back).await.unwrap();
                back
            };
            let ((), back) = zip(send, recv).await;
            echo.await;
            assert!(back == data, "echoed bytes differ");
        });
    }
}

#[test]
fn a_same_thread_wake_costs_no_eventfd_round_trip() {
    let _s = serial();
    // greenfd-rt only: its executor is the driver, and the tasks its turns wake live on
    // its thread.
    greenfd_rt::block_on(async {
        let r = greenfd_rt::current_reactor().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
        const ROUNDS: u64 = 200;
        const WARM_UP: u64 = 10;
        let pong = greenfd_rt::spawn(async move {
            let mut buf = [0u8; 1];
            for _ in 0..ROUNDS + WARM_UP {
                b.read_exact(&mut buf).await.unwrap();
                b.write_all(&buf).await.unwrap();
            }
        });
        let mut buf = [0u8; 1];
        // Warm-up: drains the eventfd write `block_on` made when it attached (to make the
        // fallback thread, started by earlier tests, stand aside).
        for _ in 0..WARM_UP {
            a.write_all(b"p").await.unwrap();
            a.read_exact(&mut buf).await.unwrap();
        }
        let before = r.statistics();
        for _ in 0..ROUNDS {
            a.write_all(b"p").await.unwrap();
            a.read_exact(&mut buf).await.unwrap();
        }
        let after = r.statistics();
        pong.await.unwrap();
        let writes = after.wakeup_writes - before.wakeup_writes;
        let eventfd_reports = after.wakeup_reports - before.wakeup_reports;
        let reports = after.reports - before.reports;
        eprintln!(
            "{ROUNDS} ping-pongs: {reports} reports, {eventfd_reports} eventfd reports, \
             {writes} eventfd writes"
        );
        // Every wake here is issued by the executor's own turn: no eventfd write, no
        // eventfd report; each round is two socket reports (one per side).
        assert_eq!(writes, 0, "a same-thread wake wrote the eventfd");
        assert_eq!(eventfd_reports, 0, "a same-thread wake was read back");
        assert!(
            reports <= 2 * ROUNDS + 2,
            "{reports} reports for {ROUNDS} rounds"
        );
    })
    .unwrap();
}

// ---- TUN ----

#[test]
fn borrowed_reads_of_a_socket_see_data_written_by_another_thread() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            let r = global();
            let (mut a, b) = UnixStream::pair().unwrap();
            b.set_nonblocking(true).unwrap();
            let writer = std::thread::spawn(move || {
                for i in 0..50u8 {
                    a.write_all(&[i]).unwrap();
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            while got.len() < 50 {
                match (&b).read(&mut buf) {
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        r.wait_readable(b.as_fd()).await.unwrap()
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            writer.join().unwrap();
            assert_eq!(got, (0..50).collect::<Vec<u8>>());
        });
    }
}
