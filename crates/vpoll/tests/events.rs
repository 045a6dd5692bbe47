//! Every event bit, alone and combined, reaches epoll (level- and edge-triggered),
//! poll and select exactly as each backend documents, on every available backend;
//! ADD/DEL/SET are idempotent; initial events are honoured; `events()` agrees.

mod common;

use common::{all_masks, assert_seen, make, representable, visible};
use greenfd_test_support::backends;
use greenfd_vpoll::{Backend, Events, Op, VpollFd};

#[test]
fn every_mask_set_is_seen_exactly() {
    for b in backends() {
        for mask in all_masks().filter(|m| representable(b, *m)) {
            let v = make(b, Events::empty());
            assert_seen(&v, Events::empty(), "create");
            v.set(mask)
                .unwrap_or_else(|e| panic!("{b}: SET {mask:?}: {e}"));
            assert_seen(&v, visible(b, mask), &format!("SET {mask:?}"));
        }
    }
}

#[test]
fn every_mask_added_is_seen_exactly() {
    for b in backends() {
        for mask in all_masks().filter(|m| representable(b, *m)) {
            let v = make(b, Events::empty());
            v.add(mask)
                .unwrap_or_else(|e| panic!("{b}: ADD {mask:?}: {e}"));
            assert_seen(&v, visible(b, mask), &format!("ADD {mask:?}"));
        }
    }
}

#[test]
fn init_events_are_honoured() {
    for b in backends() {
        for mask in all_masks().filter(|m| representable(b, *m)) {
            let v = make(b, mask);
            assert_eq!(v.backend(), b);
            assert_seen(&v, visible(b, mask), &format!("create with {mask:?}"));
        }
    }
}

/// Bits that every backend can clear again (RDHUP and HUP are one-way on Emulated).
const CLEARABLE: [Events; 4] = [Events::IN, Events::PRI, Events::OUT, Events::ERR];

#[test]
fn each_clearable_bit_toggles_and_ops_are_idempotent() {
    for b in backends() {
        let v = make(b, Events::empty());
        for bit in CLEARABLE.into_iter().filter(|e| representable(b, *e)) {
            for _ in 0..3 {
                v.add(bit).unwrap();
            }
            assert_seen(&v, visible(b, bit), &format!("3× ADD {bit:?}"));
            v.del(bit).unwrap();
            assert_seen(&v, Events::empty(), &format!("DEL {bit:?}"));
            v.del(bit).unwrap();
            assert_seen(&v, Events::empty(), &format!("2× DEL {bit:?}"));
            v.set(bit).unwrap();
            v.set(bit).unwrap();
            assert_seen(&v, visible(b, bit), &format!("2× SET {bit:?}"));
            v.set(Events::empty()).unwrap();
            assert_seen(&v, Events::empty(), "SET empty");
        }
    }
}

#[test]
fn del_leaves_other_bits_and_set_replaces() {
    for b in backends() {
        let v = make(b, Events::IN | Events::OUT);
        v.del(Events::IN).unwrap();
        assert_seen(&v, Events::OUT, "DEL IN from IN|OUT");
        v.add(Events::IN).unwrap();
        v.del(Events::OUT).unwrap();
        assert_seen(&v, Events::IN, "DEL OUT from IN|OUT");
        v.set(Events::OUT).unwrap();
        assert_seen(&v, Events::OUT, "SET OUT from IN");
        v.ctl(Op::Add, Events::IN).unwrap();
        assert_seen(&v, Events::IN | Events::OUT, "ctl ADD IN");
    }
}

#[test]
fn in_and_pri_interleave_independently() {
    for b in backends() {
        let v = make(b, Events::empty());
        // ADD IN, ADD PRI, ADD IN, DEL IN: only PRI is left (plus Emulated's implied IN).
        v.add(Events::IN).unwrap();
        v.add(Events::PRI).unwrap();
        v.add(Events::IN).unwrap();
        v.del(Events::IN).unwrap();
        assert_seen(&v, visible(b, Events::PRI), "IN,PRI,IN,-IN");
        v.del(Events::PRI).unwrap();
        assert_seen(&v, Events::empty(), "then -PRI");
        // PRI cleared while IN stays.
        v.add(Events::PRI).unwrap();
        v.add(Events::IN).unwrap();
        v.del(Events::PRI).unwrap();
        assert_seen(&v, Events::IN, "PRI,IN,-PRI");
        v.del(Events::IN).unwrap();
        assert_seen(&v, Events::empty(), "then -IN");
    }
}

#[test]
fn many_adds_then_one_del_clear_in() {
    // libvpoll's socketpair emulation leaves IN set here: it counts bytes per process.
    for b in backends() {
        let v = make(b, Events::empty());
        for _ in 0..1000 {
            v.add(Events::IN).unwrap();
        }
        assert_seen(&v, Events::IN, "1000× ADD IN");
        v.del(Events::IN).unwrap();
        assert_seen(&v, Events::empty(), "DEL IN after 1000× ADD IN");
    }
}

#[test]
fn epoll_wakes_on_change_while_waiting() {
    for b in backends() {
        let v = make(b, Events::empty());
        let et = common::epoll_watching(std::os::fd::AsFd::as_fd(&v), true);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| common::epoll_once(&et, common::SAFETY));
            // The waiter may or may not be blocked yet; epoll reports either way.
            v.add(Events::IN | Events::OUT).unwrap();
            assert_eq!(waiter.join().unwrap(), Events::IN | Events::OUT, "{b}");
        });
    }
}

#[test]
fn vpoll_fd_converts_to_owned_fd_and_back_by_descriptor() {
    use std::os::fd::{AsFd, OwnedFd};
    for b in backends() {
        let v = make(b, Events::empty());
        let fd: OwnedFd = v.into();
        assert_eq!(greenfd_vpoll::backend_of(fd.as_fd()).unwrap(), b);
        greenfd_vpoll::ctl_fd(fd.as_fd(), Op::Add, Events::OUT).unwrap();
        assert_eq!(greenfd_vpoll::events_fd(fd.as_fd()).unwrap(), Events::OUT);
        greenfd_vpoll::close_fd(fd).unwrap();
    }
}

#[test]
fn close_reports_success_and_frees_the_descriptor() {
    for b in backends() {
        let v: VpollFd = make(b, Events::IN);
        v.close().unwrap();
    }
}

#[test]
fn emulated_backend_is_always_available() {
    assert!(Backend::Emulated.probe().is_ok());
    assert!(greenfd_vpoll::best_backend().is_ok());
}

#[test]
fn a_dup_of_a_vpoll_fd_is_one_too_and_closing_it_leaves_the_original() {
    use std::os::fd::AsFd;
    for b in backends() {
        let v = make(b, Events::empty());
        let dup = rustix::io::fcntl_dupfd_cloexec(&v, 0).unwrap();
        assert_eq!(greenfd_vpoll::backend_of(dup.as_fd()).unwrap(), b);
        greenfd_vpoll::ctl_fd(dup.as_fd(), Op::Add, Events::OUT).unwrap();
        assert_seen(&v, Events::OUT, "ADD OUT through a dup");
        greenfd_vpoll::close_fd(dup).unwrap();
        v.add(Events::IN).unwrap();
        assert_seen(&v, Events::IN | Events::OUT, "ADD IN after closing the dup");
    }
}

#[test]
fn threads_creating_controlling_and_closing_fds_do_not_interfere() {
    for b in backends() {
        std::thread::scope(|s| {
            for t in 0..4u32 {
                s.spawn(move || {
                    for i in 0..100u32 {
                        // Each thread uses its own mask sequence, so cross-talk shows.
                        let mask = if (i + t) % 2 == 0 {
                            Events::IN
                        } else {
                            Events::OUT
                        };
                        let v = make(b, mask);
                        assert_eq!(v.events().unwrap(), mask, "{b} thread {t} round {i}");
                        v.set(Events::IN | Events::OUT).unwrap();
                        v.del(mask).unwrap();
                        let rest = (Events::IN | Events::OUT) - mask;
                        assert_eq!(
                            greenfd_vpoll::events_fd(std::os::fd::AsFd::as_fd(&v)).unwrap(),
                            rest,
                            "{b} thread {t} round {i}"
                        );
                        v.close().unwrap();
                    }
                });
            }
        });
    }
}
