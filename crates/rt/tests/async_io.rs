//! `Async<T>`: sockets, pipes, regular files, closing, borrowed waits through the
//! global reactor, with every test body run under greenfd-rt, tokio (multi-thread and
//! current-thread) and smol.

mod common;

use common::*;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use greenfd_rt::Async;
use greenfd_rt::reactor::Error as ReactorError;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[test]
fn socket_roundtrip_with_backpressure() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |rt| async move {
            let (a, b) = UnixStream::pair().unwrap();
            let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
            assert!(!a.uses_blocking_pool());
            // 8 MiB: far beyond the socket buffer, so the writer parks on EAGAIN many
            // times while the reader drains.
            const N: usize = 8 << 20;
            let writer = spawn_on(rt, async move {
                let data: Vec<u8> = (0..N).map(|i| (i % 251) as u8).collect();
                a.write_all(&data).await.unwrap();
                a.close().unwrap();
            });
            let mut got = Vec::new();
            b.read_to_end(&mut got).await.unwrap();
            writer.await;
            assert_eq!(got.len(), N);
            assert!(got.iter().enumerate().all(|(i, &v)| v == (i % 251) as u8));
        });
    }
}

#[test]
fn a_blocked_reader_does_not_block_other_tasks() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |rt| async move {
            let (idle_peer, idle) = UnixStream::pair().unwrap();
            let mut idle = Async::new(idle).unwrap();
            // This task would block its thread with a blocking read.
            let finished = Arc::new(AtomicBool::new(false));
            let stuck = {
                let finished = Arc::clone(&finished);
                spawn_on(rt, async move {
                    let mut buf = [0u8; 1];
                    let n = idle.read(&mut buf).await.unwrap();
                    assert_eq!(n, 0, "only the peer's close ends it");
                    finished.store(true, Ordering::Release);
                })
            };
            let (mut p, q) = UnixStream::pair().unwrap();
            let mut q = Async::new(q).unwrap();
            p.write_all(b"ping").unwrap();
            let mut buf = [0u8; 4];
            q.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"ping");
            assert!(!finished.load(Ordering::Acquire));
            drop(idle_peer);
            stuck.await;
            assert!(finished.load(Ordering::Acquire));
        });
    }
}

#[test]
fn regular_files_use_the_blocking_pool() {
    let _s = serial();
    let dir = std::env::temp_dir().join(format!("greenfd-rt-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for rt in RUNTIMES {
        let path = dir.join(format!("{rt:?}"));
        run(rt, |_| async move {
            let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
            let f = std::fs::File::create(&path).unwrap();
            let mut f = Async::new(f).unwrap();
            assert!(
                f.uses_blocking_pool(),
                "epoll refuses regular files (EPERM)"
            );
            f.write_all(&data).await.unwrap();
            f.flush().await.unwrap();
            drop(f);
            let mut f = Async::new(std::fs::File::open(&path).unwrap()).unwrap();
            let mut back = Vec::new();
            f.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, data);
        });
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn async_takes_over_after_borrowed_waits_and_refuses_them_while_alive() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            let (mut peer, s) = UnixStream::pair().unwrap();
            let reactor = global();
            let before = reactor.statistics();
            // A borrowed wait first (it leaves a disarmed registration behind) ...
            peer.write_all(b"x").unwrap();
            reactor.wait_readable(s.as_fd()).await.unwrap();
            // ... then the fd becomes owned: registration takes it over.
            let mut s = Async::new(s).unwrap();
            let mut buf = [0u8; 1];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"x");
            // Borrowed waits on an owned fd are refused rather than hijacking it.
            let r = reactor.wait_readable(s.as_fd()).await;
            assert!(matches!(r, Err(ReactorError::BusyResource)), "{r:?}");
            assert_eq!(
                reactor.statistics().persistent_registrations,
                before.persistent_registrations + 1
            );
            // Closing notifies and deregisters: nothing of ours left registered.
            s.close().unwrap();
            let after = reactor.statistics();
            assert_eq!(
                (after.registered_fds, after.tasks_waiting_read),
                (before.registered_fds, before.tasks_waiting_read)
            );
        });
    }
}

#[test]
fn hangup_ends_a_pending_read_with_eof() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |rt| async move {
            let (a, b) = UnixStream::pair().unwrap();
            let mut b = Async::new(b).unwrap();
            let got = Arc::new(Mutex::new(None));
            let reader = {
                let got = Arc::clone(&got);
                spawn_on(rt, async move {
                    let mut buf = [0u8; 8];
                    *got.lock().unwrap() = Some(b.read(&mut buf).await.unwrap());
                })
            };
            sleep(std::time::Duration::from_millis(10)).await;
            drop(a);
            reader.await;
            assert_eq!(got.lock().unwrap().take(), Some(0));
        });
    }
}

#[test]
fn async_works_for_pipes() {
    let _s = serial();
    for rt in RUNTIMES {
        run(rt, |_| async {
            let (r, w) = rustix::pipe::pipe().unwrap();
            let mut r = Async::new(r).unwrap();
            let mut w = std::fs::File::from(w);
            let t = std::thread::spawn(move || {
                w.write_all(b"through a pipe").unwrap();
            });
            let mut s = String::new();
            r.read_to_string(&mut s).await.unwrap();
            t.join().unwrap();
            assert_eq!(s, "through a pipe");
        });
    }
}
