//! loom models of the concurrent lifetimes: every interleaving (up to a preemption bound)
//! of register, fire, close and drop is run and the invariants are checked in each.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test -p greenfd-taps --release --test loom`.
//! loom also fails a model on deadlock (a blocked reader nobody wakes: a lost wake-up) and
//! on a leaked `Arc` (a reference cycle between queue and taps that was never broken).
#![cfg(loom)]

use greenfd_taps::{Error, Event, EventQueue, Events, Source};
use loom::sync::Arc;
use loom::thread;

/// Runs `f` under loom with a small preemption bound, so the whole file stays fast.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

/// A queue (its descriptor, the only syscalls, is compiled out under loom).
fn queue(capacity: usize) -> EventQueue {
    EventQueue::builder()
        .capacity(capacity)
        .build()
        .expect("queue")
}

/// Everything pending now, OR'd per token.
fn drain(q: &EventQueue) -> Vec<Event> {
    let mut out = Vec::new();
    q.try_wait(&mut out).expect("try_wait");
    out
}

/// The OR of every event for `token` in `events`.
fn bits_for(events: &[Event], token: u64) -> Events {
    events
        .iter()
        .filter(|e| e.token == token)
        .fold(Events::empty(), |a, e| a | e.events)
}

/// Registering while another thread fires: the tap sees IN exactly once whichever comes
/// first (the level at registration, or the edge), never zero times.
#[test]
fn register_vs_fire() {
    model(|| {
        let src = Arc::new(Source::new(Events::empty()));
        let q = Arc::new(queue(4));
        let firer = {
            let src = src.clone();
            thread::spawn(move || src.add(Events::IN))
        };
        let tap = src.subscribe(&q, Events::IN, 1).expect("register");
        firer.join().unwrap();
        let got = drain(&q);
        assert_eq!(
            got,
            [Event {
                token: 1,
                events: Events::IN
            }]
        );
        assert_eq!(src.subscription_count(), 1);
        drop(tap);
        assert_eq!(src.subscription_count(), 0);
        assert!(drain(&q).is_empty());
    });
}

/// A reader blocked in `wait(None)` while a tap is registered and fired on other threads:
/// it must wake (a lost wake-up is a loom deadlock) and get IN.
#[test]
fn blocked_reader_vs_register_and_fire() {
    model(|| {
        let src = Arc::new(Source::new(Events::empty()));
        let q = Arc::new(queue(1));
        let producer = {
            let (src, q) = (src.clone(), q.clone());
            thread::spawn(move || {
                let tap = src.subscribe(&q, Events::IN, 9).expect("register");
                src.add(Events::IN);
                tap
            })
        };
        let mut out = Vec::new();
        while bits_for(&out, 9).is_empty() {
            q.wait(&mut out, None).expect("wait");
        }
        assert_eq!(bits_for(&out, 9), Events::IN);
        let tap = producer.join().unwrap();
        tap.close();
    });
}

/// Firing while the source closes: the tap ends with HUP (and IN if the fire won), is
/// detached, and dropping it afterwards deregisters nothing twice.
#[test]
fn fire_vs_close() {
    model(|| {
        let src = Arc::new(Source::new(Events::empty()));
        let q = Arc::new(queue(4));
        let tap = src.subscribe(&q, Events::IN, 2).expect("register");
        let firer = {
            let src = src.clone();
            thread::spawn(move || src.add(Events::IN))
        };
        let closer = {
            let src = src.clone();
            thread::spawn(move || src.close())
        };
        firer.join().unwrap();
        closer.join().unwrap();
        let got = bits_for(&drain(&q), 2);
        assert!(
            got.contains(Events::HUP),
            "close must wake the tap with HUP: {got:?}"
        );
        assert!(tap.is_detached());
        assert_eq!(src.subscription_count(), 0);
        // Registration after close fails and leaves nothing behind in the queue.
        assert!(matches!(
            src.subscribe(&q, Events::IN, 3),
            Err(Error::SourceClosed)
        ));
        assert_eq!(q.stats().members, 1);
        drop(tap);
        assert_eq!(q.stats().members, 0);
        assert!(drain(&q).is_empty());
    });
}

/// Registering while another thread closes the source: either the registration fails
/// with `SourceClosed` and leaves no member in the queue, or it succeeds and the close
/// wakes the new tap with HUP. Never a registered tap that missed the close.
#[test]
fn register_vs_close() {
    model(|| {
        let src = Arc::new(Source::new(Events::empty()));
        let q = Arc::new(queue(2));
        let closer = {
            let src = src.clone();
            thread::spawn(move || src.close())
        };
        let result = src.subscribe(&q, Events::IN, 8);
        closer.join().unwrap();
        match result {
            Ok(tap) => {
                assert_eq!(bits_for(&drain(&q), 8), Events::HUP);
                assert!(tap.is_detached());
                drop(tap);
            }
            Err(Error::SourceClosed) => assert!(drain(&q).is_empty()),
            Err(e) => panic!("register: {e}"),
        }
        assert_eq!(q.stats().members, 0);
        assert_eq!(src.subscription_count(), 0);
    });
}

/// Closing the source while the tap is dropped: exactly one of them removes the tap from
/// the table; after both, the queue reports nothing for the dead tap.
#[test]
fn close_vs_drop_of_tap() {
    model(|| {
        let src = Arc::new(Source::new(Events::IN));
        let q = Arc::new(queue(4));
        let tap = src.subscribe(&q, Events::IN, 4).expect("register");
        assert_eq!(bits_for(&drain(&q), 4), Events::IN);
        let closer = {
            let src = src.clone();
            thread::spawn(move || src.close())
        };
        let dropper = thread::spawn(move || drop(tap));
        closer.join().unwrap();
        dropper.join().unwrap();
        assert_eq!(src.subscription_count(), 0);
        assert_eq!(q.stats().members, 0);
        assert!(drain(&q).is_empty(), "no event after deregistration");
    });
}

/// Two taps on one source, one dropped while the other registers into the freed slot
/// and the source fires: slots are reused by identity, never confused.
#[test]
fn drop_vs_register_reusing_slot() {
    model(|| {
        let src = Arc::new(Source::new(Events::empty()));
        let q = Arc::new(queue(4));
        let old = src.subscribe(&q, Events::IN, 5).expect("register old");
        let dropper = thread::spawn(move || drop(old));
        let firer = {
            let src = src.clone();
            thread::spawn(move || src.add(Events::IN))
        };
        let new = src.subscribe(&q, Events::IN, 6).expect("register new");
        dropper.join().unwrap();
        firer.join().unwrap();
        let got = drain(&q);
        assert_eq!(bits_for(&got, 6), Events::IN);
        assert!(
            bits_for(&got, 5).is_empty(),
            "dropped tap reported: {got:?}"
        );
        assert_eq!(src.subscription_count(), 1);
        drop(new);
        assert_eq!(src.subscription_count(), 0);
    });
}

/// Dropping the queue while a firer delivers into it: no panic, no leak (loom checks that
/// every `Arc` is freed), and the tap can still be dropped afterwards.
#[test]
fn drop_of_queue_while_firing() {
    model(|| {
        let src = Arc::new(Source::new(Events::empty()));
        let q = queue(1);
        let tap = src
            .subscribe(&q, Events::IN | Events::OUT, 7)
            .expect("register");
        let firer = {
            let src = src.clone();
            thread::spawn(move || {
                src.add(Events::IN);
                src.add(Events::OUT);
            })
        };
        let dropper = thread::spawn(move || drop(q));
        firer.join().unwrap();
        dropper.join().unwrap();
        assert_eq!(src.subscription_count(), 1);
        drop(tap);
        assert_eq!(src.subscription_count(), 0);
    });
}

/// Overflow with a one-entry ring while a reader drains: two taps fire concurrently,
/// the reader sees both bits, lost neither to the full ring.
#[test]
fn overflow_vs_read() {
    model(|| {
        let a = Arc::new(Source::new(Events::empty()));
        let b = Arc::new(Source::new(Events::empty()));
        let q = Arc::new(queue(1));
        let ta = a.subscribe(&q, Events::IN, 10).expect("register a");
        let tb = b.subscribe(&q, Events::OUT, 11).expect("register b");
        let fa = {
            let a = a.clone();
            thread::spawn(move || a.add(Events::IN))
        };
        let fb = {
            let b = b.clone();
            thread::spawn(move || b.add(Events::OUT))
        };
        let mut seen = drain(&q);
        fa.join().unwrap();
        fb.join().unwrap();
        seen.extend(drain(&q));
        assert_eq!(bits_for(&seen, 10), Events::IN);
        assert_eq!(bits_for(&seen, 11), Events::OUT);
        assert!(q.stats().ring_len <= 1);
        drop((ta, tb));
    });
}

/// Two firers on two taps and a reader blocked in `wait(None)` until it has both: the
/// ring (one entry) overflows or not, the reader wakes for each and loses neither.
#[test]
fn two_firers_one_blocked_reader() {
    model(|| {
        let a = Arc::new(Source::new(Events::empty()));
        let b = Arc::new(Source::new(Events::empty()));
        let q = Arc::new(queue(1));
        let ta = a.subscribe(&q, Events::IN, 20).expect("register a");
        let tb = b.subscribe(&q, Events::OUT, 21).expect("register b");
        let firers: Vec<_> = [(a.clone(), Events::IN), (b.clone(), Events::OUT)]
            .into_iter()
            .map(|(src, bit)| thread::spawn(move || src.add(bit)))
            .collect();
        let mut out = Vec::new();
        while bits_for(&out, 20).is_empty() || bits_for(&out, 21).is_empty() {
            q.wait(&mut out, None).expect("wait");
        }
        assert_eq!(bits_for(&out, 20), Events::IN);
        assert_eq!(bits_for(&out, 21), Events::OUT);
        for f in firers {
            f.join().unwrap();
        }
        drop((ta, tb));
    });
}
