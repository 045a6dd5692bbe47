//! `Async<T>`: sockets, pipes, regular files, closing, borrowed waits through the
//! runtime's reactor.

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use greenfd_rt::reactor::Error as ReactorError;
use greenfd_rt::{Async, block_on, current_reactor, spawn, timeout};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[test]
fn socket_roundtrip_with_backpressure() {
    block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
        assert!(!a.uses_blocking_pool());
        // 8 MiB: far beyond the socket buffer, so the writer parks on EAGAIN many times
        // while the reader drains.
        const N: usize = 8 << 20;
        let writer = spawn(async move {
            let data: Vec<u8> = (0..N).map(|i| (i % 251) as u8).collect();
            a.write_all(&data).await.unwrap();
            a.close().unwrap();
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), N);
        assert!(got.iter().enumerate().all(|(i, &v)| v == (i % 251) as u8));
    })
    .unwrap();
}

#[test]
fn a_blocked_reader_does_not_block_other_tasks() {
    block_on(async {
        let (_idle_peer, idle) = UnixStream::pair().unwrap();
        let mut idle = Async::new(idle).unwrap();
        // This task would block the whole thread with a blocking read.
        let stuck = spawn(async move {
            let mut buf = [0u8; 1];
            idle.read(&mut buf).await
        });
        let (mut p, q) = UnixStream::pair().unwrap();
        let mut q = Async::new(q).unwrap();
        p.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        timeout(Duration::from_secs(10), q.read_exact(&mut buf))
            .await
            .expect("other task ran")
            .unwrap();
        assert_eq!(&buf, b"ping");
        assert!(!stuck.is_finished());
        stuck.cancel();
    })
    .unwrap();
}

#[test]
fn regular_files_use_the_blocking_pool() {
    let dir = std::env::temp_dir().join(format!("greenfd-rt-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("data");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    block_on(async {
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
    })
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn async_takes_over_after_borrowed_waits_and_refuses_them_while_alive() {
    block_on(async {
        let (mut peer, s) = UnixStream::pair().unwrap();
        let reactor = current_reactor().unwrap();
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
        assert_eq!(reactor.statistics().persistent_registrations, 1);
        // Closing notifies and deregisters: nothing left registered.
        s.close().unwrap();
        let stats = reactor.statistics();
        assert_eq!((stats.registered_fds, stats.tasks_waiting_read), (0, 0));
    })
    .unwrap();
}

#[test]
fn hangup_ends_a_pending_read_with_eof() {
    block_on(async {
        let (a, b) = UnixStream::pair().unwrap();
        let mut b = Async::new(b).unwrap();
        let reader = spawn(async move {
            let mut buf = [0u8; 8];
            b.read(&mut buf).await
        });
        futures_lite::future::yield_now().await;
        drop(a);
        assert_eq!(reader.await.unwrap().unwrap(), 0);
    })
    .unwrap();
}

#[test]
fn async_works_for_pipes() {
    block_on(async {
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
    })
    .unwrap();
}
