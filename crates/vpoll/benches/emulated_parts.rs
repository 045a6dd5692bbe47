//! What an Emulated vpoll fd's creation and cycle cost, step by step, next to the bare
//! socketpair they are built on (`cargo bench -p greenfd-vpoll --bench emulated_parts`).
//! Each step is timed in alternating rounds; the report is the median per step.

use greenfd_vpoll::{Backend, Builder, Events};
use rustix::event::{Timespec, epoll};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, sockopt};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// A Unix stream socketpair.
fn pair() -> (OwnedFd, OwnedFd) {
    rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap()
}

/// One timed step: a name's operation.
type Step = Box<dyn FnMut()>;

/// Mean nanoseconds per call of `f` over `budget`.
fn ns(budget: Duration, f: &mut dyn FnMut()) -> f64 {
    for _ in 0..32 {
        f();
    }
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < budget {
        for _ in 0..16 {
            f();
        }
        n += 16;
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, budget) = if quick {
        (3, Duration::from_millis(20))
    } else {
        (9, Duration::from_millis(100))
    };
    let (a, b) = pair();
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
    epoll::add(&ep, &a, epoll::EventData::new_u64(0), epoll::EventFlags::IN).unwrap();
    // A bare pair set up like an Emulated one: minimal send buffer, one buffer in flight.
    let (fa, fb) = pair();
    sockopt::set_socket_send_buffer_size(&fa, 1).unwrap();
    rustix::net::send(&fa, &[0u8; 2240], SendFlags::DONTWAIT).unwrap();
    let epf = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
    epoll::add(
        &epf,
        &fa,
        epoll::EventData::new_u64(0),
        epoll::EventFlags::IN,
    )
    .unwrap();
    let v = Builder::new().backend(Backend::Emulated).build().unwrap();
    let v2 = Builder::new().backend(Backend::Emulated).build().unwrap();
    let (pa, pb) = pair();
    let (qa, qb) = pair();
    sockopt::set_socket_send_buffer_size(&qa, 1).unwrap();
    rustix::net::send(&qa, &[0u8; 1153], SendFlags::DONTWAIT).unwrap();
    let ev = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
    epoll::add(&ev, &v, epoll::EventData::new_u64(0), epoll::EventFlags::IN).unwrap();
    let wait = |ep: &OwnedFd| {
        let mut buf = [std::mem::MaybeUninit::<epoll::Event>::uninit(); 1];
        let t = Timespec::try_from(Duration::from_secs(5)).unwrap();
        assert_eq!(epoll::wait(ep, &mut buf, Some(&t)).unwrap().0.len(), 1);
    };
    let fill = [0u8; 2240];
    let mut steps: Vec<(&str, Step)> = vec![
        ("socketpair+close", Box::new(|| drop(pair()))),
        (
            "+SO_SNDBUF",
            Box::new(|| {
                let (x, _y) = pair();
                sockopt::set_socket_send_buffer_size(&x, 1).unwrap();
            }),
        ),
        (
            "+SO_SNDBUF+fstat",
            Box::new(|| {
                let (x, _y) = pair();
                sockopt::set_socket_send_buffer_size(&x, 1).unwrap();
                rustix::fs::fstat(&x).unwrap();
            }),
        ),
        (
            "+SO_SNDBUF+SO_COOKIE",
            Box::new(|| {
                let (x, _y) = pair();
                sockopt::set_socket_send_buffer_size(&x, 1).unwrap();
                sockopt::socket_cookie(&x).unwrap();
            }),
        ),
        (
            "+SO_SNDBUF+fstat+send1k",
            Box::new(move || {
                let (x, _y) = pair();
                sockopt::set_socket_send_buffer_size(&x, 1).unwrap();
                rustix::fs::fstat(&x).unwrap();
                rustix::net::send(&x, &fill[..1024], SendFlags::DONTWAIT).unwrap();
            }),
        ),
        (
            "+SO_SNDBUF+fstat+send",
            Box::new(move || {
                let (x, _y) = pair();
                sockopt::set_socket_send_buffer_size(&x, 1).unwrap();
                rustix::fs::fstat(&x).unwrap();
                rustix::net::send(&x, &fill, SendFlags::DONTWAIT).unwrap();
            }),
        ),
        (
            "emulated create+close",
            Box::new(|| {
                Builder::new()
                    .backend(Backend::Emulated)
                    .build()
                    .unwrap()
                    .close()
                    .unwrap()
            }),
        ),
        (
            "socketpair cycle",
            Box::new(move || {
                rustix::net::send(&b, b"i", SendFlags::DONTWAIT).unwrap();
                wait(&ep);
                let mut buf = [0u8; 64];
                rustix::net::recv(&a, &mut buf, RecvFlags::DONTWAIT).unwrap();
            }),
        ),
        (
            "socketpair+fill cycle",
            Box::new(move || {
                rustix::net::send(&fb, b"i", SendFlags::DONTWAIT).unwrap();
                wait(&epf);
                let mut buf = [0u8; 64];
                rustix::net::recv(&fa, &mut buf, RecvFlags::DONTWAIT).unwrap();
            }),
        ),
        (
            "socketpair send+recv",
            Box::new(move || {
                rustix::net::send(&pb, b"i", SendFlags::DONTWAIT | SendFlags::NOSIGNAL).unwrap();
                let mut buf = [0u8; 512];
                rustix::net::recv(&pa, &mut buf, RecvFlags::DONTWAIT).unwrap();
            }),
        ),
        (
            "socketpair+fill send+recv",
            Box::new(move || {
                rustix::net::send(&qb, b"i", SendFlags::DONTWAIT | SendFlags::NOSIGNAL).unwrap();
                let mut buf = [0u8; 512];
                rustix::net::recv(&qa, &mut buf, RecvFlags::DONTWAIT).unwrap();
            }),
        ),
        (
            "emulated add+del",
            Box::new(move || {
                v2.add(Events::IN).unwrap();
                v2.del(Events::IN).unwrap();
            }),
        ),
        (
            "emulated cycle",
            Box::new(move || {
                v.add(Events::IN).unwrap();
                wait(&ev);
                v.del(Events::IN).unwrap();
            }),
        ),
    ];
    // An argument other than flags keeps only the steps whose names contain it (for
    // profiling one step at a time).
    if let Some(only) = std::env::args().skip(1).find(|a| !a.starts_with("--")) {
        steps.retain(|(name, _)| name.contains(only.as_str()));
    }
    let mut results = vec![Vec::new(); steps.len()];
    for round in 0..rounds {
        for k in 0..steps.len() {
            let i = (k + round) % steps.len();
            results[i].push(ns(budget, &mut *steps[i].1));
        }
    }
    for ((name, _), mut r) in steps.iter().zip(results) {
        r.sort_by(f64::total_cmp);
        println!("{name:<24} {:>8.0} ns", r[r.len() / 2]);
    }
}
