//! Echo ping-pong: a load generator and the peer servers (tokio, raw mio).
//!
//! Each connection keeps exactly one message in flight: send `size` bytes, wait for
//! all of them to come back, count one round trip, repeat. That measures the server's
//! per-message cost (wake-up, read, write) rather than its batching.

use greenfd_reactor::{EventBuffer, Interest, Mode, Poller};
use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A server running on its own thread until [`Server::stop`].
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Asks the server thread to exit.
    stop: Option<Box<dyn FnOnce() + Send>>,
    /// The server thread.
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Server {
    /// Wraps a running server thread and the action that stops it.
    pub fn new(
        addr: SocketAddr,
        stop: Box<dyn FnOnce() + Send>,
        thread: JoinHandle<io::Result<()>>,
    ) -> Self {
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Stops the server and reports how its thread ended.
    pub fn stop(mut self) -> io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            stop();
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// A loopback listener on a free port.
pub fn listener() -> io::Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0")
}

/// Round trips per second over `duration` with `conns` connections of `size`-byte messages.
pub fn load(addr: SocketAddr, conns: usize, size: usize, duration: Duration) -> io::Result<f64> {
    let (n, elapsed) = round_trips(addr, conns, size, duration)?;
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// Round trips completed in about `duration` with `conns` connections of `size`-byte
/// messages, and the time they took.
pub fn round_trips(
    addr: SocketAddr,
    conns: usize,
    size: usize,
    duration: Duration,
) -> io::Result<(u64, Duration)> {
    if conns == 1 {
        load_one(addr, size, duration)
    } else {
        load_many(addr, conns, size, duration)
    }
}

/// One connection, blocking calls: the lightest possible client.
fn load_one(addr: SocketAddr, size: usize, duration: Duration) -> io::Result<(u64, Duration)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    // A server that stops answering fails the run instead of hanging it.
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let msg = vec![0x5a; size];
    let mut buf = vec![0; size];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        for _ in 0..16 {
            s.write_all(&msg)?;
            s.read_exact(&mut buf)?;
        }
        n += 16;
    }
    Ok((n, start.elapsed()))
}

/// Many connections multiplexed on one epoll, each with one message in flight.
fn load_many(
    addr: SocketAddr,
    conns: usize,
    size: usize,
    duration: Duration,
) -> io::Result<(u64, Duration)> {
    let poller = Poller::new()?;
    let mut streams = Vec::with_capacity(conns);
    for i in 0..conns {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        poller.add(s.as_fd(), i as u64, Interest::READABLE, Mode::Level)?;
        streams.push((s, 0usize));
    }
    let msg = vec![0x5a; size];
    let mut buf = vec![0; 64 * 1024];
    for (s, _) in &mut streams {
        (&*s).write_all(&msg)?;
    }
    let mut events = EventBuffer::with_capacity(1024);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < duration {
        match poller.wait(&mut events, Some(Duration::from_millis(100))) {
            Ok(_) => {}
            // A signal landed in this thread (the process may be traced or profiled).
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in events.iter() {
            let (s, got) = &mut streams[ev.token as usize];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return Err(io::Error::new(ErrorKind::UnexpectedEof, "server closed")),
                    Ok(k) => *got += k,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            while *got >= size {
                *got -= size;
                n += 1;
                // The socket buffer always has room for one small message in flight.
                s.write_all(&msg)?;
            }
        }
    }
    Ok((n, start.elapsed()))
}

/// greenfd: the engine with raw framing and the `Echo` handler (what `greenfd serve
/// --echo` runs), on its own thread.
pub fn greenfd_echo(config: greenfd_engine::Config) -> io::Result<Server> {
    use greenfd_engine::{Echo, Engine, Raw};
    let engine = Engine::bind_with(([127, 0, 0, 1], 0).into(), Raw::default(), Echo, config)
        .map_err(io::Error::other)?;
    let (addr, handle) = (engine.local_addr(), engine.handle());
    let thread = std::thread::Builder::new()
        .name("greenfd-echo".into())
        .spawn(move || engine.run().map_err(io::Error::other))?;
    Ok(Server::new(
        addr,
        Box::new(move || handle.shutdown()),
        thread,
    ))
}

/// The tokio peer: a `current_thread` runtime, one task per connection.
pub fn tokio_echo() -> io::Result<Server> {
    let std_listener = listener()?;
    let addr = std_listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("tokio-echo".into())
        .spawn(move || run_tokio_echo(std_listener, async move { drop(rx.await) }))?;
    Ok(Server::new(addr, Box::new(move || drop(tx)), thread))
}

/// Serves the tokio echo peer on `addr` until the process is killed (the idle-memory
/// scenario runs it as a child process).
pub fn serve_tokio_echo(addr: SocketAddr) -> io::Result<()> {
    run_tokio_echo(TcpListener::bind(addr)?, std::future::pending())
}

/// The tokio echo loop on `std_listener` until `stop` completes.
fn run_tokio_echo(
    std_listener: TcpListener,
    stop: impl std::future::Future<Output = ()>,
) -> io::Result<()> {
    std_listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::from_std(std_listener)?;
        let accept = async {
            loop {
                let (mut s, _) = listener.accept().await?;
                s.set_nodelay(true)?;
                tokio::task::spawn_local(async move {
                    // 1 KiB per connection, as in tokio's own echo example: an idle
                    // connection's task keeps its buffer, so a larger one would make
                    // the idle-memory comparison about buffer sizes, not runtimes.
                    let mut buf = vec![0u8; 1024];
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
            #[allow(unreachable_code)]
            Ok::<(), io::Error>(())
        };
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                tokio::select! {
                    r = accept => r,
                    _ = stop => Ok(()),
                }
            })
            .await
    })
}

/// The raw mio peer: one thread, edge-triggered, read to EAGAIN and write back.
pub fn mio_echo() -> io::Result<Server> {
    use mio::net::TcpListener as MioListener;
    use mio::{Poll, Token};
    const LISTENER: Token = Token(usize::MAX - 1);
    const WAKER: Token = Token(usize::MAX - 2);

    let std_listener = listener()?;
    let addr = std_listener.local_addr()?;
    std_listener.set_nonblocking(true)?;
    let mut poll = Poll::new()?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), WAKER)?);
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    // The thread keeps the waker's eventfd open: if the stopping side held the last
    // reference, closing it right after `wake()` would take the pending event out of
    // the epoll set before the thread saw it, and the thread would sleep forever.
    let waker2 = Arc::clone(&waker);
    let thread = std::thread::Builder::new()
        .name("mio-echo".into())
        .spawn(move || {
            let _waker = waker2;
            let mut listener = MioListener::from_std(std_listener);
            poll.registry()
                .register(&mut listener, LISTENER, mio::Interest::READABLE)?;
            let mut conns: HashMap<usize, (mio::net::TcpStream, Vec<u8>)> = HashMap::new();
            let mut next = 0usize;
            let mut events = mio::Events::with_capacity(1024);
            let mut buf = vec![0u8; 16 * 1024];
            while !stop2.load(Ordering::Acquire) {
                poll.poll(&mut events, None)?;
                for ev in events.iter() {
                    match ev.token() {
                        WAKER => {}
                        LISTENER => loop {
                            match listener.accept() {
                                Ok((mut s, _)) => {
                                    s.set_nodelay(true)?;
                                    poll.registry().register(
                                        &mut s,
                                        Token(next),
                                        mio::Interest::READABLE,
                                    )?;
                                    conns.insert(next, (s, Vec::new()));
                                    next += 1;
                                }
                                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                                Err(e) => return Err(e),
                            }
                        },
                        Token(id) => {
                            let Some((s, pending)) = conns.get_mut(&id) else {
                                continue;
                            };
                            let mut closed = false;
                            if ev.is_readable() {
                                loop {
                                    match s.read(&mut buf) {
                                        Ok(0) => {
                                            closed = true;
                                            break;
                                        }
                                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                                        Err(_) => {
                                            closed = true;
                                            break;
                                        }
                                    }
                                }
                            }
                            while !closed && !pending.is_empty() {
                                match s.write(pending) {
                                    Ok(n) => {
                                        pending.drain(..n);
                                    }
                                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                                    Err(_) => closed = true,
                                }
                            }
                            if closed {
                                conns.remove(&id);
                            } else {
                                let interest = if pending.is_empty() {
                                    mio::Interest::READABLE
                                } else {
                                    mio::Interest::READABLE | mio::Interest::WRITABLE
                                };
                                poll.registry().reregister(s, Token(id), interest)?;
                            }
                        }
                    }
                }
            }
            Ok(())
        })?;
    let stop_fn = move || {
        stop.store(true, Ordering::Release);
        let _ = waker.wake();
    };
    Ok(Server::new(addr, Box::new(stop_fn), thread))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_echo_for_one_and_many_connections() {
        for server in [
            greenfd_echo(Default::default()).unwrap(),
            tokio_echo().unwrap(),
            mio_echo().unwrap(),
        ] {
            assert!(load(server.addr, 1, 64, Duration::from_millis(100)).unwrap() > 0.0);
            assert!(load(server.addr, 20, 64, Duration::from_millis(100)).unwrap() > 0.0);
            server.stop().unwrap();
        }
    }

    /// Each stop must end the server thread; a wake-up lost on the way (the mio peer
    /// once closed its waker right after waking, which hung about one stop in 150).
    #[test]
    fn servers_stop_every_time() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..200 {
                let server = mio_echo().unwrap();
                load(server.addr, 1, 64, Duration::from_millis(2)).unwrap();
                server.stop().unwrap();
            }
            for _ in 0..50 {
                for server in [
                    greenfd_echo(Default::default()).unwrap(),
                    tokio_echo().unwrap(),
                ] {
                    load(server.addr, 1, 64, Duration::from_millis(2)).unwrap();
                    server.stop().unwrap();
                }
            }
            done_tx.send(()).unwrap();
        });
        // A hung stop fails the test instead of hanging it.
        done_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("a server did not stop (or a cycle failed)");
    }
}
