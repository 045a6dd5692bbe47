//! Bad input gets clear, typed errors: descriptors that are not vpoll fds, closed
//! descriptors, unknown or unavailable backends (also when forced by the environment).

mod common;

use common::make;
use greenfd_test_support::{CHILD_PATIENCE, backends, child_output, is_child};
use greenfd_vpoll::{
    BACKEND_ENV, Backend, Builder, Error, Events, FuseRoute, Op, ctl_fd, events_fd,
};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

fn assert_not_vpoll(fd: BorrowedFd<'_>, what: &str) {
    let e = ctl_fd(fd, Op::Add, Events::IN).expect_err(what);
    assert!(matches!(e, Error::NotVpoll), "{what}: ctl_fd gave {e:?}");
    assert_eq!(e.raw_os_error(), libc::EBADF, "{what}");
    assert!(
        matches!(events_fd(fd), Err(Error::NotVpoll)),
        "{what}: events_fd"
    );
    assert!(
        matches!(greenfd_vpoll::backend_of(fd), Err(Error::NotVpoll)),
        "{what}"
    );
}

#[test]
fn ctl_fd_rejects_descriptors_that_are_not_vpoll_fds() {
    let (r, w) = rustix::pipe::pipe().unwrap();
    assert_not_vpoll(r.as_fd(), "pipe read end");
    assert_not_vpoll(w.as_fd(), "pipe write end");
    let efd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
    assert_not_vpoll(efd.as_fd(), "plain eventfd");
    let (a, b) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    assert_not_vpoll(a.as_fd(), "foreign socketpair end");
    assert_not_vpoll(b.as_fd(), "foreign socketpair end");
    let file = std::fs::File::open("/proc/self/status").unwrap();
    assert_not_vpoll(file.as_fd(), "regular file");
    // Nothing was written into the foreign objects.
    assert_eq!(rustix::io::ioctl_fionread(&a).unwrap(), 0);
    assert_eq!(rustix::io::ioctl_fionread(&b).unwrap(), 0);
}

/// Child body (single-threaded, so descriptor numbers are predictable): a vpoll fd
/// closed behind the library's back, its number reused by an unrelated socket.
#[test]
fn reuse_child() {
    if !is_child("reuse_child") {
        return;
    }
    let v = make(Backend::Emulated, Events::IN);
    let raw = v.as_raw_fd();
    // Closed with close(2), as a C program would, so the library never hears of it.
    drop(std::os::fd::OwnedFd::from(v));
    let (a, _b) = rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::STREAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let mut a = a;
    if a.as_raw_fd() != raw {
        // SAFETY: single-threaded child; `raw` is free, so nothing else is clobbered.
        let mut target =
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        rustix::io::dup2(&a, &mut target).unwrap();
        a = target;
    }
    assert_not_vpoll(a.as_fd(), "unrelated socket on a vpoll fd's old number");
    // A new vpoll fd taking a stale number works.
    drop(a);
    let v2 = make(Backend::Emulated, Events::empty());
    v2.add(Events::OUT).unwrap();
    assert_eq!(greenfd_vpoll::events_fd(v2.as_fd()).unwrap(), Events::OUT);
    println!("reuse child ok");
}

#[test]
fn a_reused_descriptor_number_is_not_mistaken_for_a_vpoll_fd() {
    let out = child_output("reuse_child", &[], CHILD_PATIENCE);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("reuse child ok"),
        "{}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn ctl_on_a_closed_descriptor_fails() {
    for b in backends() {
        let v = make(b, Events::empty());
        // A high number that no other test thread will be handed while we look.
        let high = rustix::io::fcntl_dupfd_cloexec(&v, 900).unwrap();
        let raw = high.as_raw_fd();
        drop(high);
        // SAFETY: `raw` is closed; the syscalls below only report EBADF for it. No
        // other descriptor can take this number meanwhile: numbers are handed out
        // lowest first and the tests use far fewer than 900.
        let closed = unsafe { BorrowedFd::borrow_raw(raw) };
        let e = ctl_fd(closed, Op::Add, Events::IN).expect_err("closed fd");
        assert_eq!(e.raw_os_error(), libc::EBADF, "{b}: {e:?}");
        assert!(events_fd(closed).is_err(), "{b}");
        v.close().unwrap();
    }
}

#[test]
fn emulated_rejects_what_it_cannot_represent_and_changes_nothing() {
    let v = make(Backend::Emulated, Events::IN);
    let e = v.add(Events::ERR).expect_err("ADD ERR");
    assert!(matches!(e, Error::Invalid(_)), "{e:?}");
    assert_eq!(e.raw_os_error(), libc::EINVAL);
    assert_eq!(v.events().unwrap(), Events::IN);
    v.del(Events::ERR).unwrap();
    assert!(matches!(
        Builder::new()
            .backend(Backend::Emulated)
            .events(Events::ERR)
            .build(),
        Err(Error::Invalid(_))
    ));
    // PRI survives a hang-up and every request but a plain DEL IN, which after a
    // hang-up also clears PRI (documented: the peer cannot send the urgent byte again).
    v.add(Events::PRI).unwrap();
    v.add(Events::RDHUP).unwrap();
    let hung = Events::IN | Events::PRI | Events::RDHUP;
    assert_eq!(v.events().unwrap(), hung);
    v.set(Events::PRI | Events::RDHUP).unwrap();
    v.del(Events::IN | Events::OUT).unwrap();
    assert_eq!(v.events().unwrap(), hung);
    v.del(Events::IN).unwrap();
    assert_eq!(v.events().unwrap(), Events::IN | Events::RDHUP);
    let e = v.del(Events::RDHUP).expect_err("DEL RDHUP");
    assert!(matches!(e, Error::Invalid(_)), "{e:?}");
    let e = v.add(Events::PRI).expect_err("ADD PRI after RDHUP");
    assert!(matches!(e, Error::Invalid(_)), "{e:?}");
    assert_eq!(v.events().unwrap(), Events::IN | Events::RDHUP);
}

/// Every name in `all` parses back (in any case, with white space around it) and
/// displays as itself.
fn names_round_trip<T>(all: &[T])
where
    T: std::str::FromStr<Err = Error> + std::fmt::Display + std::fmt::Debug + Copy + PartialEq,
{
    for &v in all {
        let name = v.to_string();
        assert_eq!(name.parse::<T>().unwrap(), v);
        assert_eq!(name.to_uppercase().parse::<T>().unwrap(), v);
        assert_eq!(format!(" {name}\n").parse::<T>().unwrap(), v);
    }
}

#[test]
fn unknown_backend_and_route_names_fail_clearly() {
    names_round_trip(&Backend::ALL);
    let e = "bogus".parse::<Backend>().expect_err("bogus");
    assert!(
        matches!(&e, Error::UnknownBackend(n) if n == "bogus"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "unknown vpoll backend \"bogus\" (expected kernel, device, fuse or emulated)"
    );

    names_round_trip(&FuseRoute::ALL);
    let e = "mount".parse::<FuseRoute>().expect_err("mount");
    assert!(
        matches!(&e, Error::UnknownRoute(n) if n == "mount"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "unknown FUSE route \"mount\" (expected direct, userns, fusermount or legacy)"
    );
    // `legacy` is a value of GREENFD_VPOLL_FUSE_ROUTE (the direct route mounted the old
    // way), not a route of its own.
    assert!("legacy".parse::<FuseRoute>().is_err());
}

#[test]
fn forcing_an_unavailable_backend_explicitly_fails_with_its_reason() {
    for b in Backend::ALL {
        let Err(why) = b.probe() else { continue };
        let e = Builder::new().backend(b).build().expect_err("unavailable");
        assert!(
            matches!(&e, Error::Unavailable { backend, .. } if *backend == b.name()),
            "{e:?}"
        );
        assert_eq!(e.to_string(), why.to_string());
        assert_eq!(e.raw_os_error(), libc::ENODEV);
    }
}

/// Child body: checks what `VpollFd::new` does under the environment the parent set.
#[test]
fn env_child() {
    if !is_child("env_child") {
        return;
    }
    let expect = std::env::var("EXPECT").unwrap();
    match (
        expect.as_str(),
        greenfd_vpoll::VpollFd::new(Events::empty()),
    ) {
        ("unknown", Err(Error::UnknownBackend(name))) => assert_eq!(name, "nosuch"),
        ("unavailable", Err(Error::Unavailable { backend, reason })) => {
            let forced = std::env::var(BACKEND_ENV).unwrap();
            assert_eq!(backend, forced);
            assert!(!reason.is_empty());
        }
        (name, Ok(v)) => assert_eq!(v.backend().name(), name),
        (expect, other) => panic!("expected {expect}, got {other:?}"),
    }
    // An explicit choice wins over the environment.
    let v = Builder::new().backend(Backend::Emulated).build().unwrap();
    assert_eq!(v.backend(), Backend::Emulated);
    println!("env child ok");
}

fn env_case(forced: &str, expect: &str) {
    let out = child_output(
        "env_child",
        &[(BACKEND_ENV, forced), ("EXPECT", expect)],
        CHILD_PATIENCE,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("env child ok"),
        "{BACKEND_ENV}={forced}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn environment_forces_a_backend_or_fails_clearly() {
    env_case("nosuch", "unknown");
    env_case("emulated", "emulated");
    env_case(" Emulated ", "emulated");
    for b in Backend::ALL {
        match b.probe() {
            Ok(()) => env_case(b.name(), b.name()),
            Err(_) => env_case(b.name(), "unavailable"),
        }
    }
}
