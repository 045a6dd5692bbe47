//! Event queue behaviour with real descriptors: coalescing, level at registration, HUP on
//! close, identity of taps, the queue's fd under raw epoll and the greenfd reactor, and
//! bounded memory under a million fires.
#![cfg(not(loom))] // real descriptors and threads; the loom models are in loom.rs

use greenfd_taps::{Error, Event, EventQueue, Events, Pollable, Source};
use rustix::event::epoll;
use rustix::time::Timespec;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use greenfd_test_support::epoll_on;

/// Safety-net timeout: a bug fails the test instead of hanging it.
const NET: Duration = Duration::from_secs(20);

/// Everything pending now.
fn drain(q: &EventQueue) -> Vec<Event> {
    let mut out = Vec::new();
    q.try_wait(&mut out).expect("try_wait");
    out
}

/// Whether poll(2) reports `fd` readable right now.
fn readable_now(fd: BorrowedFd<'_>) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    rustix::event::poll(&mut fds, Some(&zero)).expect("poll") == 1
}

/// `epoll_wait` with `timeout`; returns the tokens reported.
fn epoll_tokens(ep: &std::os::fd::OwnedFd, timeout: Duration) -> Vec<u64> {
    greenfd_test_support::epoll_wait(ep, timeout)
        .into_iter()
        .map(|(data, _)| data)
        .collect()
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Source>();
    check::<greenfd_taps::Subscription>();
    check::<EventQueue>();
    check::<greenfd_taps::VpollSink>();
}

#[test]
fn registration_reports_current_level_at_once() {
    let src = Source::new(Events::IN | Events::OUT);
    let q = EventQueue::new().unwrap();
    let tap = src.subscribe(&q, Events::IN, 1).unwrap();
    assert_eq!(tap.readiness(), Events::IN);
    assert!(
        readable_now(q.as_fd()),
        "level at registration must raise the fd"
    );
    assert_eq!(
        drain(&q),
        [Event {
            token: 1,
            events: Events::IN
        }]
    );
    assert!(
        !readable_now(q.as_fd()),
        "a drained queue must lower its fd"
    );
}

#[test]
fn coalesces_bits_until_read() {
    let src = Source::new(Events::empty());
    let q = EventQueue::new().unwrap();
    let _tap = src
        .subscribe(&q, Events::IN | Events::OUT | Events::PRI, 3)
        .unwrap();
    for _ in 0..1000 {
        src.add(Events::IN);
        src.clear(Events::IN);
    }
    src.add(Events::OUT);
    src.add(Events::RDHUP); // outside the filter
    assert_eq!(q.stats().ring_len, 1, "one dirty tap is one ring entry");
    assert_eq!(
        drain(&q),
        [Event {
            token: 3,
            events: Events::IN | Events::OUT
        }]
    );
    assert!(drain(&q).is_empty());
    // A bit that stays set is not re-reported (edge semantics); a new rise is.
    src.add(Events::OUT);
    assert!(drain(&q).is_empty());
    src.clear(Events::OUT);
    src.add(Events::OUT);
    assert_eq!(
        drain(&q),
        [Event {
            token: 3,
            events: Events::OUT
        }]
    );
}

#[test]
fn close_wakes_every_tap_with_hup_whatever_its_filter() {
    let src = Source::new(Events::empty());
    let q1 = EventQueue::new().unwrap();
    let q2 = EventQueue::new().unwrap();
    let taps: Vec<_> = (0..5)
        .map(|i| {
            src.subscribe(if i % 2 == 0 { &q1 } else { &q2 }, Events::IN, i)
                .unwrap()
        })
        .collect();
    assert_eq!(src.subscription_count(), 5);
    src.close();
    assert_eq!(src.subscription_count(), 0);
    assert!(taps.iter().all(|t| t.is_detached()));
    let mut got: Vec<_> = drain(&q1).into_iter().chain(drain(&q2)).collect();
    got.sort_by_key(|e| e.token);
    let want: Vec<_> = (0..5)
        .map(|token| Event {
            token,
            events: Events::HUP,
        })
        .collect();
    assert_eq!(got, want);
    // Changes after close are ignored; registrations fail and leave no member behind.
    src.add(Events::IN);
    assert!(drain(&q1).is_empty());
    assert!(matches!(
        src.subscribe(&q1, Events::IN, 9),
        Err(Error::SourceClosed)
    ));
    assert_eq!(q1.stats().members, 3);
    drop(taps);
    assert_eq!(q1.stats().members, 0);
    assert_eq!(q2.stats().members, 0);
}

#[test]
fn dropping_the_source_closes_it() {
    let q = EventQueue::new().unwrap();
    let src = Source::new(Events::empty());
    let tap = src.subscribe(&q, Events::OUT, 4).unwrap();
    drop(src);
    assert!(tap.is_detached());
    assert_eq!(tap.readiness(), Events::HUP);
    assert_eq!(
        drain(&q),
        [Event {
            token: 4,
            events: Events::HUP
        }]
    );
}

#[test]
fn taps_are_identified_by_object_not_token() {
    let src = Source::new(Events::empty());
    let q = EventQueue::new().unwrap();
    let old = src.subscribe(&q, Events::IN, 42).unwrap();
    src.add(Events::IN); // pending for the old tap
    old.close();
    // Same token, same slot reused: the old tap's pending event must not surface.
    let new = src.subscribe(&q, Events::OUT, 42).unwrap();
    assert_eq!(q.stats().member_slots, 1, "slot reused");
    assert!(drain(&q).is_empty(), "dead tap's event reported");
    src.add(Events::OUT);
    assert_eq!(
        drain(&q),
        [Event {
            token: 42,
            events: Events::OUT
        }]
    );
    drop(new);
    assert_eq!(src.subscription_count(), 0);
}

#[test]
fn dropping_the_queue_first_leaves_taps_harmless() {
    let src = Source::new(Events::empty());
    let q = EventQueue::new().unwrap();
    let tap = src.subscribe(&q, Events::IN, 1).unwrap();
    drop(q);
    src.add(Events::IN); // delivery into a dropped queue is a no-op
    assert_eq!(src.subscription_count(), 1);
    drop(tap);
    assert_eq!(src.subscription_count(), 0);
}

#[test]
fn zero_capacity_is_rejected() {
    assert!(matches!(
        EventQueue::builder().capacity(0).build(),
        Err(Error::ZeroCapacity)
    ));
}

#[test]
fn wait_times_out_with_nothing_pending() {
    let q = EventQueue::new().unwrap();
    let mut out = Vec::new();
    assert_eq!(q.wait(&mut out, Some(Duration::from_millis(1))).unwrap(), 0);
    assert!(out.is_empty());
    assert!(!readable_now(q.as_fd()));
}

#[test]
fn blocking_wait_is_woken_by_another_thread() {
    let src = Source::new(Events::empty());
    let q = EventQueue::new().unwrap();
    let _tap = src.subscribe(&q, Events::IN, 5).unwrap();
    let mut out = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| src.add(Events::IN));
        while out.is_empty() {
            assert!(q.wait(&mut out, Some(NET)).unwrap() > 0, "timed out");
        }
    });
    assert_eq!(
        out,
        [Event {
            token: 5,
            events: Events::IN
        }]
    );
}

#[test]
fn raw_epoll_waits_on_the_queue_fd() {
    let src = Source::new(Events::empty());
    let q = EventQueue::new().unwrap();
    let _tap = src.subscribe(&q, Events::IN, 77).unwrap();
    let ep = epoll_on(q.as_fd(), 0xfeed, epoll::EventFlags::IN);
    assert!(epoll_tokens(&ep, Duration::ZERO).is_empty());
    std::thread::scope(|s| {
        s.spawn(|| src.add(Events::IN));
        assert_eq!(
            epoll_tokens(&ep, NET),
            [0xfeed],
            "epoll must see the queue fd"
        );
    });
    assert_eq!(
        drain(&q),
        [Event {
            token: 77,
            events: Events::IN
        }]
    );
    // Level-triggered epoll goes quiet once the queue is drained.
    assert!(epoll_tokens(&ep, Duration::ZERO).is_empty());
}

#[test]
fn vpoll_backed_queue_is_pollable_too() {
    if let Err(e) = greenfd_vpoll::best_backend() {
        eprintln!("skip: no vpoll backend ({e})");
        return;
    }
    let src = Source::new(Events::empty());
    let q = EventQueue::builder()
        .pollable(Pollable::Vpoll)
        .build()
        .unwrap();
    let _tap = src.subscribe(&q, Events::OUT, 8).unwrap();
    let ep = epoll_on(q.as_fd(), 8, epoll::EventFlags::IN);
    assert!(epoll_tokens(&ep, Duration::ZERO).is_empty());
    std::thread::scope(|s| {
        s.spawn(|| src.add(Events::OUT));
        assert_eq!(epoll_tokens(&ep, NET), [8]);
    });
    assert_eq!(
        drain(&q),
        [Event {
            token: 8,
            events: Events::OUT
        }]
    );
    assert!(epoll_tokens(&ep, Duration::ZERO).is_empty());
}

#[test]
fn greenfd_reactor_waits_on_the_queue_fd() {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    let reactor = greenfd_reactor::Reactor::new().unwrap();
    let src = Source::new(Events::empty());
    let q = EventQueue::new().unwrap();
    let _tap = src.subscribe(&q, Events::IN, 12).unwrap();
    let mut wait = pin!(reactor.wait_readable(q.as_fd()));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(wait.as_mut().poll(&mut cx).is_pending());
    std::thread::scope(|s| {
        s.spawn(|| src.add(Events::IN));
        let ready = loop {
            if let Poll::Ready(r) = wait.as_mut().poll(&mut cx) {
                break r;
            }
            assert!(reactor.turn(Some(NET)).unwrap() > 0, "reactor timed out");
        };
        ready.expect("wait_readable");
    });
    assert_eq!(
        drain(&q),
        [Event {
            token: 12,
            events: Events::IN
        }]
    );
}

/// A million fires on ten thousand taps through a 1 024-entry ring: the ring overflows
/// (forcing rescans) yet never grows, and at the end every tap's last readiness is seen.
#[test]
fn million_fires_bounded_memory_nothing_lost() {
    const TAPS: usize = 10_000;
    const FIRES: usize = 1_000_000;
    const RING: usize = 1024;
    let q = EventQueue::builder().capacity(RING).build().unwrap();
    let sources: Vec<_> = (0..TAPS).map(|_| Source::new(Events::empty())).collect();
    let taps: Vec<_> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| s.subscribe(&q, Events::IN | Events::OUT, i as u64).unwrap())
        .collect();
    let allocated = q.stats().ring_allocated;
    assert!(allocated >= RING);

    // Deterministic pseudo-random order (xorshift); a read every 4 096 fires must report,
    // for every tap, exactly the bits that rose since the previous read: none lost to the
    // full ring, none invented, one event per tap (coalesced).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rose = vec![Events::empty(); TAPS];
    let mut got = vec![Events::empty(); TAPS];
    let mut out = Vec::new();
    let mut check_read = |q: &EventQueue, rose: &mut Vec<Events>| {
        q.try_wait(&mut out).unwrap();
        assert!(out.len() <= TAPS, "more events than taps in one read");
        for e in out.drain(..) {
            assert!(
                got[e.token as usize].is_empty(),
                "tap {} reported twice",
                e.token
            );
            got[e.token as usize] = e.events;
        }
        for i in 0..TAPS {
            assert_eq!(
                got[i], rose[i],
                "tap {i}: reported bits differ from the rises"
            );
            got[i] = Events::empty();
            rose[i] = Events::empty();
        }
    };
    for n in 0..FIRES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = (x % TAPS as u64) as usize;
        let bit = if x & (1 << 40) == 0 {
            Events::IN
        } else {
            Events::OUT
        };
        if sources[i].readiness().contains(bit) {
            sources[i].clear(bit);
        } else {
            sources[i].add(bit);
            rose[i] |= bit;
        }
        if n % 4096 == 4095 {
            check_read(&q, &mut rose);
        }
        if n % 1024 == 0 {
            let st = q.stats();
            assert!(st.ring_len <= RING, "ring over capacity: {st:?}");
            assert_eq!(st.ring_allocated, allocated, "ring grew: {st:?}");
            assert_eq!(st.members, TAPS);
            assert_eq!(st.member_slots, TAPS);
        }
    }
    check_read(&q, &mut rose);
    let st = q.stats();
    assert!(
        st.overflows > 0 && st.rescans > 0,
        "the ring never overflowed: {st:?}"
    );
    assert!(drain(&q).is_empty());
    drop(taps);
    assert_eq!(q.stats().members, 0);
}
