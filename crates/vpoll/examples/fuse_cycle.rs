//! Rough timing of the Fuse backend's cycle (ADD IN → `epoll_wait` returns it → DEL IN)
//! next to its floor, an eventfd ping-pong between two threads, and the eventfd cycle.
//!
//! Run pinned and unpinned: `taskset -c 0 cargo run --release --example fuse_cycle` and
//! `cargo run --release --example fuse_cycle`. The formal figures come from `greenfd bench`.

use greenfd_vpoll::{Backend, Builder, Events};
use rustix::buffer::spare_capacity;
use rustix::event::epoll::{self, EventFlags};
use rustix::event::{EventfdFlags, eventfd};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Cycles per measurement.
const N: u32 = 20_000;

/// Mean time of one eventfd round trip between two threads.
fn eventfd_ping_pong() -> Duration {
    let ping = eventfd(0, EventfdFlags::CLOEXEC).expect("eventfd");
    let pong = eventfd(0, EventfdFlags::CLOEXEC).expect("eventfd");
    let mut buf = [0u8; 8];
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut buf = [0u8; 8];
            for _ in 0..N {
                rustix::io::read(&ping, &mut buf).expect("read ping");
                rustix::io::write(&pong, &1u64.to_ne_bytes()).expect("write pong");
            }
        });
        let start = Instant::now();
        for _ in 0..N {
            rustix::io::write(&ping, &1u64.to_ne_bytes()).expect("write ping");
            rustix::io::read(&pong, &mut buf).expect("read pong");
        }
        start.elapsed() / N
    })
}

/// Mean time of one eventfd write → `epoll_wait` → read cycle (the physical floor).
fn eventfd_cycle() -> Duration {
    let efd = eventfd(0, EventfdFlags::CLOEXEC).expect("eventfd");
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).expect("epoll");
    epoll::add(&ep, &efd, epoll::EventData::new_u64(1), EventFlags::IN).expect("add");
    let mut events = Vec::with_capacity(4);
    let mut buf = [0u8; 8];
    let start = Instant::now();
    for _ in 0..N {
        rustix::io::write(&efd, &1u64.to_ne_bytes()).expect("write");
        events.clear();
        epoll::wait(&ep, spare_capacity(&mut events), None).expect("wait");
        assert_eq!(events.len(), 1);
        rustix::io::read(&efd, &mut buf).expect("read");
    }
    start.elapsed() / N
}

/// Mean time of one Fuse vpoll cycle, and of create+close.
fn fuse_cycle() -> (Duration, Duration) {
    let v = Builder::new()
        .backend(Backend::Fuse)
        .build()
        .expect("fuse vpoll");
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).expect("epoll");
    epoll::add(&ep, v.as_fd(), epoll::EventData::new_u64(1), EventFlags::IN).expect("add");
    let mut events = Vec::with_capacity(4);
    for _ in 0..100 {
        v.add(Events::IN).expect("add");
        events.clear();
        epoll::wait(&ep, spare_capacity(&mut events), None).expect("wait");
        v.del(Events::IN).expect("del");
    }
    let start = Instant::now();
    for _ in 0..N {
        v.add(Events::IN).expect("add");
        events.clear();
        epoll::wait(&ep, spare_capacity(&mut events), None).expect("wait");
        assert_eq!(events.len(), 1);
        v.del(Events::IN).expect("del");
    }
    let cycle = start.elapsed() / N;
    let start = Instant::now();
    for _ in 0..N {
        v.del(Events::IN).expect("del");
    }
    let del = start.elapsed() / N;
    let start = Instant::now();
    for _ in 0..N {
        v.add(Events::IN).expect("add");
    }
    let add = start.elapsed() / N;
    v.del(Events::IN).expect("del");
    let start = Instant::now();
    for _ in 0..N {
        let _ = rustix::process::getpid();
    }
    let getpid = start.elapsed() / N;
    let start = Instant::now();
    for _ in 0..N {
        rustix::fs::fstat(&v).expect("fstat");
    }
    let fstat = start.elapsed() / N;
    let mut pfd = [rustix::event::PollFd::new(&v, rustix::event::PollFlags::IN)];
    let zero = rustix::time::Timespec::default();
    let start = Instant::now();
    for _ in 0..N {
        rustix::event::poll(&mut pfd, Some(&zero)).expect("poll");
    }
    let poll = start.elapsed() / N;
    println!(
        "fuse poll(2) round trip   : {:>8.2} us",
        poll.as_secs_f64() * 1e6
    );
    println!(
        "fast-path ADD (notifies)  : {:>8.2} us\nfast-path DEL             : {:>8.2} us  (fstat {:.2} us, getpid {:.2} us)",
        add.as_secs_f64() * 1e6,
        del.as_secs_f64() * 1e6,
        fstat.as_secs_f64() * 1e6,
        getpid.as_secs_f64() * 1e6
    );
    let n = N / 10;
    let start = Instant::now();
    for _ in 0..n {
        let v = Builder::new()
            .backend(Backend::Fuse)
            .build()
            .expect("create");
        v.close().expect("close");
    }
    (cycle, start.elapsed() / n)
}

fn main() {
    if let Err(e) = Backend::Fuse.probe() {
        eprintln!("skipped: {e}");
        return;
    }
    if std::env::args().any(|a| a == "--cycle-only") {
        // For profiling: only the Fuse cycle.
        let (cycle, _) = fuse_cycle();
        println!(
            "fuse vpoll cycle          : {:>8.2} us",
            cycle.as_secs_f64() * 1e6
        );
        return;
    }
    let rt = eventfd_ping_pong();
    let efd = eventfd_cycle();
    let (fuse, create) = fuse_cycle();
    println!(
        "eventfd thread round trip : {:>8.2} us",
        rt.as_secs_f64() * 1e6
    );
    println!(
        "eventfd cycle             : {:>8.2} us",
        efd.as_secs_f64() * 1e6
    );
    println!(
        "fuse vpoll cycle          : {:>8.2} us  ({:.2}x round trip)",
        fuse.as_secs_f64() * 1e6,
        fuse.as_secs_f64() / rt.as_secs_f64()
    );
    println!(
        "fuse create+close         : {:>8.2} us",
        create.as_secs_f64() * 1e6
    );
}
