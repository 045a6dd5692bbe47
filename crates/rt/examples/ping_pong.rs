//! The single-threaded hot path of greenfd-rt, for A/B comparisons across commits.
//!
//! `ping_pong local 2` (two tasks on one executor bounce 64 B over a socketpair for 2 s)
//! or `ping_pong tcp 2` (a blocking client thread against an `Async` TCP echo server);
//! prints round trips per second. `n10000` instead of seconds runs exactly that many
//! round trips, for deterministic counts: the difference between two counts under
//! `valgrind --tool=callgrind` (instructions) or `strace -c -f` (syscalls) gives the
//! cost per round trip. Build it at two commits and alternate the runs.
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use greenfd_rt::{Async, block_on, spawn};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Runs the mode named by the first argument.
fn main() {
    let usage = "usage: ping_pong local|tcp [SECONDS | nCOUNT]";
    let mode = std::env::args().nth(1).unwrap_or_default();
    let arg = std::env::args().nth(2).unwrap_or("1".into());
    // "nCOUNT": exactly COUNT round trips (for instruction and syscall counts).
    let (fixed, secs) = match arg.strip_prefix('n') {
        Some(n) => (n.parse::<u64>().ok(), Some(1e9)),
        None => (
            None,
            arg.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0),
        ),
    };
    let (Some(secs), true) = (secs, arg.starts_with('n') == fixed.is_some()) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let dur = Duration::from_secs_f64(secs);
    let more = move |n: u64, start: Instant| match fixed {
        Some(f) => n < f,
        None => start.elapsed() < dur,
    };
    let rate = match mode.as_str() {
        // Two tasks on one executor ping-pong one byte over a socketpair.
        "local" => block_on(async move {
            let (a, b) = UnixStream::pair().unwrap();
            let (mut a, mut b) = (Async::new(a).unwrap(), Async::new(b).unwrap());
            spawn(async move {
                let mut buf = [0u8; 64];
                loop {
                    if b.read_exact(&mut buf).await.is_err() {
                        break;
                    }
                    if b.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
            let mut buf = [0u8; 64];
            let start = Instant::now();
            let mut n = 0u64;
            while more(n, start) {
                a.write_all(&buf.clone()).await.unwrap();
                a.read_exact(&mut buf).await.unwrap();
                n += 1;
            }
            n as f64 / start.elapsed().as_secs_f64()
        })
        .unwrap(),
        // A blocking client thread ping-pongs 64 B with an Async TCP echo server.
        "tcp" => {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            std::thread::spawn(move || {
                block_on(async move {
                    let l = Async::new(l).unwrap();
                    loop {
                        let (s, _) = l.read_with(|l| l.accept()).await.unwrap();
                        s.set_nodelay(true).unwrap();
                        let mut s = Async::new(s).unwrap();
                        spawn(async move {
                            let mut buf = [0u8; 64];
                            loop {
                                if s.read_exact(&mut buf).await.is_err() {
                                    break;
                                }
                                if s.write_all(&buf).await.is_err() {
                                    break;
                                }
                            }
                        });
                    }
                })
                .unwrap();
            });
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_nodelay(true).unwrap();
            let mut buf = [7u8; 64];
            let start = Instant::now();
            let mut n = 0u64;
            while more(n, start) {
                c.write_all(&buf.clone()).unwrap();
                c.read_exact(&mut buf).unwrap();
                n += 1;
            }
            n as f64 / start.elapsed().as_secs_f64()
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    println!("{rate:.0}");
}
