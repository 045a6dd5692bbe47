//! Eight threads, each 100 000 random operations (register, fire, close a source, drop or
//! close a tap, read, drop the whole queue while others fire into it) on shared sources,
//! with the lifetime invariants checked throughout and at quiescent points.
//!
//! Checked always: a read never reports a token that is not a live tap of this thread (no
//! event after deregistration; tokens are never reused), and never a bit outside the tap's
//! filter plus ERR/HUP.
//! Checked at each quiescent point (all threads parked on a barrier, so every fire has
//! finished delivering): after a read, every bit a tap's source has now that it did not
//! have at the previous quiescent point (or at registration) was reported since then (no
//! lost readiness); a tap on a closed source has seen HUP and is detached; and every
//! source's registered-tap count equals the live taps the threads hold on it (no double
//! or missed deregistration).
#![cfg(not(loom))] // real descriptors and threads; the loom models are in loom.rs

use greenfd_taps::{Error, Event, EventQueue, Events, Source, Subscription};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

const THREADS: usize = 8;
/// Operations per thread (the full count in debug builds too: a debug run takes a few
/// seconds on two cores).
const OPS: usize = 100_000;
/// Operations between quiescent checks.
const ROUND: usize = 1_000;
const SOURCES: usize = 16;
const MAX_TAPS: usize = 24;
/// Bits the test fires (ERR/HUP come from close).
const BITS: [Events; 4] = [Events::IN, Events::OUT, Events::PRI, Events::RDHUP];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bits(&mut self) -> Events {
        let r = self.next();
        let mut e = Events::empty();
        for (i, b) in BITS.iter().enumerate() {
            if r & (1 << i) != 0 {
                e |= *b;
            }
        }
        if e.is_empty() { BITS[self.below(4)] } else { e }
    }
}

/// One live tap of a thread and what the test knows about it.
struct Rec {
    tap: Subscription,
    filter: Events,
    source: Arc<Source>,
    /// Bits reported since the last quiescent check.
    seen: Events,
    /// The source's level (within the filter) at the last quiescent check, or empty if
    /// the tap registered since.
    prev_level: Events,
}

/// A barrier that cannot hang the test: a thread that panics poisons it (from its drop
/// guard), which makes every waiter panic too, and a wait longer than a generous safety
/// net fails instead of blocking forever.
struct Barrier {
    n: usize,
    /// (threads arrived in this generation, generation, poisoned)
    state: Mutex<(usize, u64, bool)>,
    cond: Condvar,
}

impl Barrier {
    fn new(n: usize) -> Self {
        Barrier {
            n,
            state: Mutex::new((0, 0, false)),
            cond: Condvar::new(),
        }
    }

    fn wait(&self) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        assert!(!st.2, "another thread failed");
        let generation = st.1;
        st.0 += 1;
        if st.0 == self.n {
            st.0 = 0;
            st.1 += 1;
            self.cond.notify_all();
            return;
        }
        while st.1 == generation {
            let (next, timeout) = self
                .cond
                .wait_timeout(st, Duration::from_secs(60))
                .unwrap_or_else(|p| p.into_inner());
            st = next;
            assert!(!st.2, "another thread failed");
            assert!(
                !timeout.timed_out() || st.1 != generation,
                "barrier timed out"
            );
        }
    }

    fn poison(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).2 = true;
        self.cond.notify_all();
    }
}

/// Poisons the barrier if its thread unwinds.
struct PoisonOnPanic<'a>(&'a Barrier);

impl Drop for PoisonOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.poison();
        }
    }
}

/// Shared between the threads.
struct World {
    sources: Vec<Mutex<Arc<Source>>>,
    barrier: Barrier,
    /// Per source slot: live taps the threads hold on the current source of that slot.
    expected: Vec<AtomicUsize>,
}

fn current(world: &World, slot: usize) -> Arc<Source> {
    world.sources[slot].lock().unwrap().clone()
}

/// Reads `q` and applies the always-true checks; accumulates bits into the records.
fn read(q: &EventQueue, taps: &mut HashMap<u64, Rec>, out: &mut Vec<Event>) {
    q.try_wait(out).expect("try_wait");
    for e in out.drain(..) {
        let rec = taps
            .get_mut(&e.token)
            .unwrap_or_else(|| panic!("event {e:?} for a tap that is not live"));
        assert!(
            (rec.filter | Events::ERR | Events::HUP).contains(e.events),
            "event {e:?} outside filter {:?}",
            rec.filter
        );
        rec.seen |= e.events;
    }
}

fn worker(world: &World, id: usize) {
    let _guard = PoisonOnPanic(&world.barrier);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((id as u64 + 1) * 0x1000_0001));
    let small_ring = |rng: &mut Rng| {
        EventQueue::builder()
            .capacity(1 + rng.below(8))
            .build()
            .expect("queue")
    };
    let mut q = small_ring(&mut rng);
    let mut taps: HashMap<u64, Rec> = HashMap::new();
    let mut next_token = (id as u64) << 40;
    let mut out = Vec::new();

    for _round in 0..OPS / ROUND {
        for _ in 0..ROUND {
            let op = rng.below(1000);
            match op {
                // Register.
                0..=199 if taps.len() < MAX_TAPS => {
                    let source = current(world, rng.below(SOURCES));
                    let filter = rng.bits();
                    next_token += 1;
                    match source.subscribe(&q, filter, next_token) {
                        Ok(tap) => {
                            taps.insert(
                                next_token,
                                Rec {
                                    tap,
                                    filter,
                                    source,
                                    seen: Events::empty(),
                                    prev_level: Events::empty(),
                                },
                            );
                        }
                        Err(Error::SourceClosed) => assert!(source.is_closed()),
                        Err(e) => panic!("register: {e}"),
                    }
                }
                // Fire.
                0..=699 => {
                    let source = current(world, rng.below(SOURCES));
                    let bits = rng.bits();
                    match rng.below(3) {
                        0 => source.add(bits),
                        1 => source.clear(bits),
                        _ => source.set(bits),
                    }
                }
                // Close a source (replacing it in its slot).
                700..=719 => {
                    let slot = rng.below(SOURCES);
                    let old = std::mem::replace(
                        &mut *world.sources[slot].lock().unwrap(),
                        Arc::new(Source::new(Events::empty())),
                    );
                    old.close();
                }
                // Drop or close a tap.
                720..=869 => {
                    if let Some(&token) = taps.keys().nth(rng.below(taps.len().max(1))) {
                        let rec = taps.remove(&token).unwrap();
                        if rng.below(2) == 0 {
                            rec.tap.close();
                        } else {
                            drop(rec);
                        }
                    }
                }
                // Drop the whole queue while other threads fire into its taps, then the taps.
                870..=874 => {
                    let old_q = std::mem::replace(&mut q, small_ring(&mut rng));
                    drop(old_q);
                    taps.clear();
                }
                // Read.
                _ => read(&q, &mut taps, &mut out),
            }
        }

        // Quiescent point: every fire of every thread has returned.
        world.barrier.wait();
        read(&q, &mut taps, &mut out);
        for (token, rec) in taps.iter_mut() {
            let level = rec.source.readiness() & (rec.filter | Events::ERR | Events::HUP);
            let must_have_seen = level - rec.prev_level;
            assert!(
                rec.seen.contains(must_have_seen),
                "tap {token:#x}: level {level:?} rose from {:?} but only {:?} was reported",
                rec.prev_level,
                rec.seen
            );
            if rec.source.is_closed() {
                assert!(level.contains(Events::HUP));
                assert!(rec.tap.is_detached());
            }
            rec.prev_level = level;
            rec.seen = Events::empty();
        }
        for rec in taps.values() {
            if let Some(slot) =
                (0..SOURCES).find(|&s| Arc::ptr_eq(&*world.sources[s].lock().unwrap(), &rec.source))
            {
                world.expected[slot].fetch_add(1, Ordering::Relaxed);
            }
        }
        world.barrier.wait();
        if id == 0 {
            for slot in 0..SOURCES {
                let want = world.expected[slot].swap(0, Ordering::Relaxed);
                assert_eq!(
                    current(world, slot).subscription_count(),
                    want,
                    "source slot {slot}: registered taps differ from live handles"
                );
            }
        }
        world.barrier.wait();
    }

    // Final teardown: dropping every tap leaves the queue without members.
    taps.clear();
    assert_eq!(q.stats().members, 0);
}

#[test]
fn eight_threads_random_register_fire_close_drop() {
    let world = World {
        sources: (0..SOURCES)
            .map(|_| Mutex::new(Arc::new(Source::new(Events::empty()))))
            .collect(),
        barrier: Barrier::new(THREADS),
        expected: (0..SOURCES).map(|_| AtomicUsize::new(0)).collect(),
    };
    std::thread::scope(|s| {
        for id in 0..THREADS {
            let world = &world;
            s.spawn(move || worker(world, id));
        }
    });
    for slot in 0..SOURCES {
        assert_eq!(current(&world, slot).subscription_count(), 0);
    }
}
