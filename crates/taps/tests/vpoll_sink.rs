//! A source driving a vpoll fd: seen by raw epoll in this process and by a Python
//! `selectors` loop in a child process that inherited the fd.
//!
//! Each scenario runs on every vpoll backend available here (Fuse and Emulated on a stock
//! kernel) and skips, with the reason on stderr, when none is.
#![cfg(not(loom))] // real descriptors and threads; the loom models are in loom.rs

use greenfd_taps::{Events, Source, VpollSink};
use greenfd_vpoll::Backend;
use rustix::event::epoll;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use greenfd_test_support::backends;

/// Safety-net timeout: a bug fails the test instead of hanging it.
const NET: Duration = Duration::from_secs(30);

/// A sink on `source` whose vpoll fd is served by `backend`.
fn sink_on(source: &Source, backend: Backend, filter: Events, inherit: bool) -> VpollSink {
    let vpoll = greenfd_vpoll::Builder::new()
        .backend(backend)
        .inherit_on_exec(inherit)
        .build()
        .unwrap();
    VpollSink::with_vpoll(source, vpoll, filter).unwrap()
}

/// An epoll instance watching `sink` for IN and OUT, level-triggered.
fn epoll_on_sink(sink: &VpollSink) -> OwnedFd {
    greenfd_test_support::epoll_on(
        sink.as_fd(),
        1,
        epoll::EventFlags::IN | epoll::EventFlags::OUT,
    )
}

/// The flags epoll reports for the sink within `timeout` (empty if none).
fn epoll_flags(ep: &OwnedFd, timeout: Duration) -> epoll::EventFlags {
    greenfd_test_support::epoll_wait(ep, timeout)
        .into_iter()
        .fold(epoll::EventFlags::empty(), |a, (_, flags)| a | flags)
}

#[test]
fn sink_follows_source_level_within_filter() {
    for backend in backends() {
        follows_level(backend);
    }
    // The convenience constructor picks the best backend.
    if greenfd_vpoll::best_backend().is_ok() {
        let src = Source::new(Events::OUT);
        let sink = VpollSink::new(&src, Events::OUT).unwrap();
        assert_eq!(sink.events().unwrap(), Events::OUT);
    }
}

fn follows_level(backend: Backend) {
    let src = Source::new(Events::IN);
    let sink = sink_on(&src, backend, Events::IN, false);
    assert_eq!(sink.events().unwrap(), Events::IN, "level at registration");
    let ep = epoll_on_sink(&sink);
    assert!(epoll_flags(&ep, Duration::ZERO).contains(epoll::EventFlags::IN));

    src.clear(Events::IN);
    assert_eq!(sink.events().unwrap(), Events::empty());
    assert!(epoll_flags(&ep, Duration::ZERO).is_empty());

    src.add(Events::OUT); // outside the filter: the fd stays quiet
    assert!(epoll_flags(&ep, Duration::ZERO).is_empty());

    std::thread::scope(|s| {
        s.spawn(|| src.add(Events::IN));
        assert!(epoll_flags(&ep, NET).contains(epoll::EventFlags::IN));
    });

    src.close();
    let closed = sink.events().unwrap();
    if backend == Backend::Emulated {
        // Documented: the socketpair shows HUP as HUP|IN|RDHUP.
        assert!(closed.contains(Events::HUP), "{backend}: {closed:?}");
    } else {
        assert_eq!(
            closed,
            Events::IN | Events::HUP,
            "{backend}: level at close"
        );
    }
    assert!(epoll_flags(&ep, Duration::ZERO).contains(epoll::EventFlags::HUP));
    assert!(sink.take_error().is_none());
    assert!(sink.subscription().is_detached());
}

/// Racing firers on one source: once they finish, the fd shows the source's final level
/// (the mirror re-reads the level under its own lock, so a stale write cannot win).
#[test]
fn racing_firers_leave_the_fd_at_the_final_level() {
    for backend in backends() {
        racing_firers(backend);
    }
}

fn racing_firers(backend: Backend) {
    let src = Source::new(Events::empty());
    let sink = sink_on(&src, backend, Events::IN | Events::OUT, false);
    for round in 0..20 {
        std::thread::scope(|s| {
            for t in 0..4 {
                let src = &src;
                s.spawn(move || {
                    for i in 0..200 {
                        let bit = if (i + t + round) % 2 == 0 {
                            Events::IN
                        } else {
                            Events::OUT
                        };
                        if (i * 7 + t) % 3 == 0 {
                            src.clear(bit);
                        } else {
                            src.add(bit);
                        }
                    }
                });
            }
        });
        assert_eq!(
            sink.events().unwrap(),
            src.readiness(),
            "{backend} round {round}: vpoll fd differs from the source"
        );
    }
    assert!(sink.take_error().is_none());
}

/// The Python child: reports on the inherited fd through a `selectors` loop.
const PY: &str = r#"
import select, selectors, sys
fd = int(sys.argv[1])
sel = selectors.DefaultSelector()
sel.register(fd, selectors.EVENT_READ)
def bits():
    p = select.poll()
    p.register(fd, select.POLLIN | select.POLLPRI | select.POLLOUT)
    r = p.poll(0)
    return r[0][1] if r else 0
def say(s):
    print(s, flush=True)
say("started " + type(sel).__name__)
for line in sys.stdin:
    cmd = line.strip()
    if cmd == "wait":
        say("waiting")
        say("ready %d" % bits() if sel.select(timeout=30) else "timeout")
    elif cmd == "peek":
        say("ready %d" % bits() if sel.select(timeout=0) else "idle")
    elif cmd == "quit":
        break
say("bye")
"#;

#[test]
fn python_selectors_waits_on_a_source_through_an_inherited_vpoll_fd() {
    match Command::new("python3").arg("-c").arg("pass").status() {
        Ok(s) if s.success() => {}
        other => {
            eprintln!("skip: python3 not runnable ({other:?})");
            return;
        }
    };
    for backend in backends() {
        python_child(backend);
    }
}

fn python_child(backend: Backend) {
    let src = Source::new(Events::empty());
    let sink = sink_on(&src, backend, Events::IN, true);

    let mut child = Command::new("python3")
        .arg("-u")
        .arg("-c")
        .arg(PY)
        .arg(sink.as_raw_fd().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_child = child.stdin.take().unwrap();
    let from_child = child.stdout.take().unwrap();
    // Lines arrive through a channel so that every read has a timeout.
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(from_child).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let mut expect_line = |what: &str| -> String {
        match rx.recv_timeout(NET) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                panic!("{backend}: no {what} line from python: {e}");
            }
        }
    };
    let mut send = |cmd: &str| writeln!(to_child, "{cmd}").unwrap();
    let ready_bits = |line: &str| -> i32 {
        line.strip_prefix("ready ")
            .unwrap_or_else(|| panic!("expected ready, got {line:?}"))
            .parse()
            .unwrap()
    };

    let started = expect_line("started");
    assert!(started.starts_with("started"), "{started}");
    send("peek");
    assert_eq!(expect_line("peek"), "idle");

    // The child blocks in selectors; a user-space change wakes it.
    send("wait");
    assert_eq!(expect_line("waiting"), "waiting");
    src.add(Events::IN);
    let bits = ready_bits(&expect_line("ready"));
    assert_ne!(
        bits & libc::POLLIN as i32,
        0,
        "{backend}: child saw {bits:#x}"
    );
    if backend != Backend::Emulated {
        assert_eq!(bits, libc::POLLIN as i32, "{backend}: exact mask");
    }

    src.clear(Events::IN);
    send("peek");
    assert_eq!(expect_line("peek after clear"), "idle");

    // Closing the source reaches the child as HUP.
    send("wait");
    assert_eq!(expect_line("waiting"), "waiting");
    src.close();
    let bits = ready_bits(&expect_line("ready after close"));
    assert_ne!(
        bits & libc::POLLHUP as i32,
        0,
        "{backend}: child saw {bits:#x}"
    );
    if backend != Backend::Emulated {
        assert_eq!(
            bits,
            libc::POLLHUP as i32,
            "{backend}: exact mask (HUP alone)"
        );
    }

    send("quit");
    assert_eq!(expect_line("bye"), "bye");
    drop(to_child);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
}
