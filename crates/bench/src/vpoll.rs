//! The vpoll scenario: each backend's cycle (ADD IN → `epoll_wait` → DEL IN) and
//! create+close, beside the floors they cannot beat: the eventfd cycle, a bare socketpair
//! cycle (the Emulated backend's own kernel object), and an eventfd ping-pong between two
//! threads (the Fuse backend answers from a server thread). The Fuse cycle is measured once
//! per FUSE route (each route's filesystem is mounted in this process).
//!
//! The C ABI (`vpoll_create`/`vpoll_ctl`/`vpoll_close` of greenfd-vpoll-capi, the code
//! `libvpoll.so.0` exports) is compared with Debian's libvpoll 0.1 (package libvpoll0),
//! `dlopen`ed into the same process, both on their socketpair emulators: the C ABI's
//! emulated backend is forced with `GREENFD_VPOLL_BACKEND=emulated` for those probes, as a
//! C user would force it.
//!
//! Micro-operations are measured as [`Probe`]s sampled in interleaved slices
//! ([`sample_probes`]), so a burst of noise hits ours and the floor alike.

use crate::measure::{Probe, Samples, ns_per_op, sample_probes};
use crate::pin::{self, Placement};
use crate::report::{Goal, Row};
use crate::scenarios::{Plan, Progress};
use greenfd_vpoll::{Backend, Builder, Events, FuseRoute, VpollFd};
use rustix::event::{EventfdFlags, Timespec, epoll, eventfd};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

/// One comparison a scenario reports.
#[derive(Clone, Copy)]
struct Compare {
    /// Row label (the placement is appended).
    label: &'static str,
    /// Probe name of greenfd's figure.
    ours: &'static str,
    /// Probe name of the peer.
    peer: &'static str,
    /// The goal.
    goal: Goal,
}

/// The comparisons `greenfd-bench vpoll` reports (rows whose probes did not run, for
/// unavailable backends, are left out).
const VPOLL_COMPARE: [Compare; 16] = [
    Compare {
        label: "C ABI cycle, emulated, vs Debian libvpoll 0.1",
        ours: "C ABI emulated cycle",
        peer: "Debian libvpoll cycle",
        goal: Goal::AtMost(1.10),
    },
    Compare {
        label: "C ABI create+close, emulated, vs Debian libvpoll 0.1",
        ours: "C ABI emulated create+close",
        peer: "Debian libvpoll create+close",
        goal: Goal::AtMost(1.0),
    },
    Compare {
        label: "fuse cycle, route direct, vs thread round trip",
        ours: "fuse cycle (direct)",
        peer: "eventfd thread round trip",
        goal: Goal::AtMost(2.0),
    },
    Compare {
        label: "fuse cycle, route userns, vs thread round trip",
        ours: "fuse cycle (userns)",
        peer: "eventfd thread round trip",
        goal: Goal::AtMost(2.0),
    },
    Compare {
        label: "fuse cycle, route fusermount, vs thread round trip",
        ours: "fuse cycle (fusermount)",
        peer: "eventfd thread round trip",
        goal: Goal::AtMost(2.0),
    },
    Compare {
        label: "kernel cycle vs eventfd floor",
        ours: "kernel cycle",
        peer: "eventfd cycle",
        goal: Goal::Info,
    },
    Compare {
        label: "kernel create+close",
        ours: "kernel create+close",
        peer: "socketpair create+close",
        goal: Goal::ValueAtMost(10.0),
    },
    Compare {
        label: "device cycle vs eventfd floor",
        ours: "device cycle",
        peer: "eventfd cycle",
        goal: Goal::Info,
    },
    Compare {
        label: "device create+close",
        ours: "device create+close",
        peer: "socketpair create+close",
        goal: Goal::ValueAtMost(10.0),
    },
    Compare {
        label: "emulated cycle vs bare socketpair",
        ours: "emulated cycle",
        peer: "socketpair cycle",
        goal: Goal::AtMost(1.10),
    },
    Compare {
        label: "bare socketpair vs eventfd floor",
        ours: "socketpair cycle",
        peer: "eventfd cycle",
        goal: Goal::Info,
    },
    Compare {
        label: "emulated cycle vs eventfd floor",
        ours: "emulated cycle",
        peer: "eventfd cycle",
        goal: Goal::Info,
    },
    Compare {
        label: "emulated create+close",
        ours: "emulated create+close",
        peer: "socketpair create+close",
        goal: Goal::ValueAtMost(10.0),
    },
    Compare {
        label: "emulated create+close vs libvpoll emulator's syscalls",
        ours: "emulated create+close",
        peer: "libvpoll-style create+close",
        goal: Goal::Info,
    },
    Compare {
        label: "fuse cycle vs eventfd floor",
        ours: "fuse cycle",
        peer: "eventfd cycle",
        goal: Goal::Info,
    },
    Compare {
        label: "fuse create+close",
        ours: "fuse create+close",
        peer: "socketpair create+close",
        goal: Goal::Info,
    },
];

/// Measures the vpoll scenario under both placements, for every available backend.
pub fn run(plan: Plan, progress: Progress<'_>) -> io::Result<Vec<Row>> {
    let backends = available(Backend::ALL, Backend::probe, "", progress);
    let routes = if backends.contains(&Backend::Fuse) {
        available(FuseRoute::ALL, FuseRoute::probe, "fuse route ", progress)
    } else {
        Vec::new()
    };
    let debian = match capi::Debian::load() {
        Ok(lib) => Some(lib),
        Err(e) => {
            progress(&format!("vpoll: C ABI rows skipped: {e}"));
            None
        }
    };
    let mut out = Vec::new();
    for placement in Placement::BOTH {
        progress(&format!("vpoll ({})", placement.label()));
        let _guard = pin::apply(placement)?;
        let mut probes = vpoll_probes(&backends)?;
        for &r in &routes {
            probes.push(fuse_route_cycle(r)?);
        }
        if let Some(lib) = debian {
            probes.extend(capi::probes(lib)?);
        }
        let samples = sample_probes(&mut probes, plan.rounds, plan.sample)?;
        out.extend(rows(&VPOLL_COMPARE, &probes, &samples, placement));
    }
    Ok(out)
}

/// The `items` whose `probe` succeeds; each other one is announced as
/// "vpoll: {kind}{item} rows skipped: {why}".
fn available<T: Copy + std::fmt::Display>(
    items: impl IntoIterator<Item = T>,
    probe: impl Fn(T) -> greenfd_vpoll::Result<()>,
    kind: &str,
    progress: Progress<'_>,
) -> Vec<T> {
    items
        .into_iter()
        .filter(|&item| match probe(item) {
            Ok(()) => true,
            Err(e) => {
                progress(&format!("vpoll: {kind}{item} rows skipped: {e}"));
                false
            }
        })
        .collect()
}

/// Report rows (in µs) for `compares`, looking the probes up by name; comparisons
/// whose probes did not run (an unavailable backend) are left out.
fn rows(
    compares: &[Compare],
    probes: &[Probe],
    samples: &[Samples],
    placement: Placement,
) -> Vec<Row> {
    let find = |name| {
        probes.iter().position(|p| p.name == name).map(|i| {
            Samples::from(
                samples[i]
                    .values()
                    .iter()
                    .map(|ns| ns / 1000.0)
                    .collect::<Vec<_>>(),
            )
        })
    };
    compares
        .iter()
        .filter_map(|c| {
            Some(Row {
                scenario: format!("{} ({})", c.label, placement.label()),
                unit: "µs",
                ours: find(c.ours)?,
                peer_name: c.peer.into(),
                peer: find(c.peer)?,
                goal: c.goal,
            })
        })
        .collect()
}

/// Probe names of one backend's cycle and create+close.
fn backend_probe_names(b: Backend) -> (&'static str, &'static str) {
    match b {
        Backend::Kernel => ("kernel cycle", "kernel create+close"),
        Backend::Device => ("device cycle", "device create+close"),
        Backend::Fuse => ("fuse cycle", "fuse create+close"),
        Backend::Emulated => ("emulated cycle", "emulated create+close"),
    }
}

/// The probes of the vpoll scenario: the floors, and a cycle and create+close for
/// each available backend (plus the thread round trip that is the Fuse floor).
fn vpoll_probes(backends: &[Backend]) -> io::Result<Vec<Probe>> {
    let mut probes = vec![
        eventfd_cycle()?,
        socketpair_cycle()?,
        Probe::new("socketpair create+close", || {
            let pair = socketpair()?;
            drop(pair);
            Ok(())
        }),
        Probe::new("libvpoll-style create+close", libvpoll_style_create_close),
    ];
    for &b in backends {
        let (cycle, create) = backend_probe_names(b);
        probes.push(vpoll_cycle(cycle, &Builder::new().backend(b))?);
        probes.push(create_close(create, b));
        if b == Backend::Fuse {
            probes.push(thread_round_trip());
        }
    }
    Ok(probes)
}

/// How long a cycle waits before declaring the event lost.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(5);

/// An epoll instance watching `fd` for IN, level-triggered.
fn epoll_in(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    epoll::add(&ep, fd, epoll::EventData::new_u64(0), epoll::EventFlags::IN)?;
    Ok(ep)
}

/// Waits until `ep` reports an event; a timeout is an error, not a hang.
fn wait_one(ep: &OwnedFd) -> io::Result<()> {
    let mut buf = [std::mem::MaybeUninit::<epoll::Event>::uninit(); 1];
    let timeout = Timespec::try_from(CYCLE_TIMEOUT).map_err(io::Error::other)?;
    let (ready, _) = epoll::wait(ep, &mut buf, Some(&timeout))?;
    if ready.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "epoll_wait: the event never came",
        ));
    }
    Ok(())
}

/// The physical floor: eventfd write → epoll_wait → read.
fn eventfd_cycle() -> io::Result<Probe> {
    let efd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
    let ep = epoll_in(efd.as_fd())?;
    Ok(Probe::new("eventfd cycle", move || {
        rustix::io::write(&efd, &1u64.to_ne_bytes())?;
        wait_one(&ep)?;
        let mut buf = [0u8; 8];
        rustix::io::read(&efd, &mut buf)?;
        Ok(())
    }))
}

/// A Unix stream socketpair, as the Emulated backend makes it.
fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// The Emulated backend's own floor: send → epoll_wait → recv on a bare socketpair.
fn socketpair_cycle() -> io::Result<Probe> {
    let (a, b) = socketpair()?;
    let ep = epoll_in(a.as_fd())?;
    Ok(Probe::new("socketpair cycle", move || {
        rustix::net::send(&b, b"i", SendFlags::DONTWAIT | SendFlags::NOSIGNAL)?;
        wait_one(&ep)?;
        let mut buf = [0u8; 64];
        rustix::net::recv(&a, &mut buf, RecvFlags::DONTWAIT)?;
        Ok(())
    }))
}

/// The system calls the known C emulator (libvpoll's socketpair mode) makes to create
/// and close an fd with no events: a non-blocking pair, close-on-exec and a minimal
/// send buffer set on each end one call at a time, two 1-byte writes to clear OUT.
/// The DESIGN's "12 µs" for that emulator is this sequence plus its fd table.
fn libvpoll_style_create_close() -> io::Result<()> {
    use rustix::io::{FdFlags, fcntl_setfd};
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK,
        None,
    )?;
    fcntl_setfd(&a, FdFlags::CLOEXEC)?;
    fcntl_setfd(&b, FdFlags::CLOEXEC)?;
    rustix::net::sockopt::set_socket_send_buffer_size(&a, 1)?;
    rustix::net::sockopt::set_socket_send_buffer_size(&b, 1)?;
    rustix::io::write(&a, &[0])?;
    rustix::io::write(&a, &[0])?;
    Ok(())
}

/// A vpoll cycle on a fd `builder` makes: ADD IN → epoll_wait → DEL IN.
fn vpoll_cycle(name: &'static str, builder: &Builder) -> io::Result<Probe> {
    let v = builder.build()?;
    let ep = epoll_in(v.as_fd())?;
    Ok(Probe::new(name, move || {
        v.add(Events::IN)?;
        wait_one(&ep)?;
        v.del(Events::IN)?;
        Ok(())
    }))
}

/// The Fuse cycle on the filesystem of one route.
fn fuse_route_cycle(route: FuseRoute) -> io::Result<Probe> {
    let name = match route {
        FuseRoute::Direct => "fuse cycle (direct)",
        FuseRoute::Userns => "fuse cycle (userns)",
        FuseRoute::Fusermount => "fuse cycle (fusermount)",
    };
    vpoll_cycle(
        name,
        &Builder::new().backend(Backend::Fuse).fuse_route(route),
    )
}

/// Creating and closing one vpoll fd.
fn create_close(name: &'static str, backend: Backend) -> Probe {
    Probe::new(name, move || {
        let v: VpollFd = Builder::new().backend(backend).build()?;
        v.close()?;
        Ok(())
    })
}

/// The Fuse backend's floor: an eventfd ping-pong with a second thread (one round
/// trip per operation). The partner thread lives for one sample.
fn thread_round_trip() -> Probe {
    Probe {
        name: "eventfd thread round trip",
        sample: Box::new(|budget| {
            let ping = eventfd(0, EventfdFlags::CLOEXEC)?;
            let pong = eventfd(0, EventfdFlags::CLOEXEC)?;
            /// A ping value that tells the partner to stop.
            const STOP: u64 = 1 << 32;
            std::thread::scope(|s| {
                let partner = s.spawn(|| -> io::Result<()> {
                    let mut buf = [0u8; 8];
                    loop {
                        rustix::io::read(&ping, &mut buf)?;
                        if u64::from_ne_bytes(buf) >= STOP {
                            return Ok(());
                        }
                        rustix::io::write(&pong, &1u64.to_ne_bytes())?;
                    }
                });
                let mut op = || -> io::Result<()> {
                    rustix::io::write(&ping, &1u64.to_ne_bytes())?;
                    let mut buf = [0u8; 8];
                    rustix::io::read(&pong, &mut buf)?;
                    Ok(())
                };
                let result = ns_per_op(budget, &mut op);
                rustix::io::write(&ping, &STOP.to_ne_bytes())?;
                partner
                    .join()
                    .map_err(|_| io::Error::other("round-trip partner panicked"))??;
                result
            })
        }),
    }
}

#[allow(unsafe_code)] // dlopen/dlsym and calls through C function pointers.
mod capi {
    //! The C ABI probes: greenfd's (linked in) beside Debian's libvpoll 0.1 (`dlopen`ed).

    use super::{epoll_in, wait_one};
    use crate::measure::Probe;
    use std::ffi::{CStr, c_int, c_void};
    use std::io;
    use std::os::fd::BorrowedFd;

    /// `vpoll_create`.
    type CreateFn = unsafe extern "C" fn(u32, c_int) -> c_int;
    /// `vpoll_ctl`.
    type CtlFn = unsafe extern "C" fn(c_int, c_int, u32) -> c_int;
    /// `vpoll_close`.
    type CloseFn = unsafe extern "C" fn(c_int) -> c_int;

    /// Where Debian installs libvpoll 0.1 (package libvpoll0).
    const DEBIAN_PATHS: [&CStr; 3] = [
        c"/usr/lib/x86_64-linux-gnu/libvpoll.so.0",
        c"/usr/lib/aarch64-linux-gnu/libvpoll.so.0",
        c"/usr/lib/libvpoll.so.0",
    ];

    /// Debian's three functions, from the library `dlopen`ed for the whole run.
    #[derive(Clone, Copy)]
    pub(super) struct Debian {
        /// `vpoll_create`.
        create: CreateFn,
        /// `vpoll_ctl`.
        ctl: CtlFn,
        /// `vpoll_close`.
        close: CloseFn,
    }

    impl Debian {
        /// Loads Debian's library by its path (not by SONAME, which greenfd's shares);
        /// the handle is never closed.
        pub(super) fn load() -> io::Result<Debian> {
            for path in DEBIAN_PATHS {
                // SAFETY: a NUL-terminated path; libvpoll has no constructors with
                // preconditions.
                let handle =
                    unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
                if handle.is_null() {
                    continue;
                }
                let sym = |name: &CStr| -> io::Result<*mut c_void> {
                    // SAFETY: a live handle and a NUL-terminated name.
                    let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
                    if p.is_null() {
                        Err(io::Error::other(format!("{path:?} lacks {name:?}")))
                    } else {
                        Ok(p)
                    }
                };
                let (create, ctl, close) = (
                    sym(c"vpoll_create")?,
                    sym(c"vpoll_ctl")?,
                    sym(c"vpoll_close")?,
                );
                // SAFETY: the symbols are libvpoll's functions, with these C signatures
                // (vpoll.h), and the library stays loaded for the rest of the process.
                return Ok(unsafe {
                    Debian {
                        create: std::mem::transmute::<*mut c_void, CreateFn>(create),
                        ctl: std::mem::transmute::<*mut c_void, CtlFn>(ctl),
                        close: std::mem::transmute::<*mut c_void, CloseFn>(close),
                    }
                });
            }
            Err(io::Error::other(
                "Debian's libvpoll 0.1 is not installed (package libvpoll0)",
            ))
        }
    }

    /// One library's three functions.
    #[derive(Clone, Copy)]
    struct Abi {
        /// `vpoll_create`.
        create: CreateFn,
        /// `vpoll_ctl`.
        ctl: CtlFn,
        /// `vpoll_close`.
        close: CloseFn,
    }

    /// greenfd's own C ABI functions (what `libvpoll.so.0` exports), called from Rust.
    extern "C" fn ours_create(e: u32, f: c_int) -> c_int {
        vpoll::vpoll_create(e, f)
    }
    /// See [`ours_create`].
    extern "C" fn ours_ctl(fd: c_int, op: c_int, e: u32) -> c_int {
        vpoll::vpoll_ctl(fd, op, e)
    }
    /// See [`ours_create`].
    extern "C" fn ours_close(fd: c_int) -> c_int {
        vpoll::vpoll_close(fd)
    }

    /// The last C error as an `io::Error`.
    fn last(what: &str) -> io::Error {
        let e = io::Error::last_os_error();
        io::Error::new(e.kind(), format!("{what}: {e}"))
    }

    /// The cycle (ADD IN → `epoll_wait` → DEL IN) through one library's ABI.
    fn cycle(name: &'static str, abi: Abi) -> io::Result<Probe> {
        // SAFETY: libvpoll's create with valid arguments.
        let fd = unsafe { (abi.create)(0, libc::FD_CLOEXEC) };
        if fd < 0 {
            return Err(last("vpoll_create"));
        }
        // SAFETY: `fd` stays open until the probe is dropped (never: the run ends first).
        let ep = epoll_in(unsafe { BorrowedFd::borrow_raw(fd) })?;
        let (add, del) = (libc::EPOLLIN as u32, libc::EPOLLIN as u32);
        Ok(Probe::new(name, move || {
            // SAFETY: libvpoll's ctl on the fd it created.
            if unsafe { (abi.ctl)(fd, 1, add) } != 0 {
                return Err(last("vpoll_ctl ADD"));
            }
            wait_one(&ep)?;
            // SAFETY: as above.
            if unsafe { (abi.ctl)(fd, 2, del) } != 0 {
                return Err(last("vpoll_ctl DEL"));
            }
            Ok(())
        }))
    }

    /// Creating and closing one fd through one library's ABI.
    fn create_close(name: &'static str, abi: Abi) -> Probe {
        Probe::new(name, move || {
            // SAFETY: libvpoll's create with valid arguments.
            let fd = unsafe { (abi.create)(0, libc::FD_CLOEXEC) };
            if fd < 0 {
                return Err(last("vpoll_create"));
            }
            // SAFETY: closing the fd just created.
            if unsafe { (abi.close)(fd) } != 0 {
                return Err(last("vpoll_close"));
            }
            Ok(())
        })
    }

    /// The C ABI probes of both libraries. greenfd's is forced onto its emulated backend
    /// (`GREENFD_VPOLL_BACKEND=emulated`, set for the rest of the run).
    pub(super) fn probes(debian: Debian) -> io::Result<Vec<Probe>> {
        // SAFETY: the bench sets this before the C ABI probes run, from the thread that
        // runs the scenarios; no other thread of the bench reads the environment then.
        unsafe { std::env::set_var(greenfd_vpoll::BACKEND_ENV, "emulated") };
        let ours = Abi {
            create: ours_create,
            ctl: ours_ctl,
            close: ours_close,
        };
        let theirs = Abi {
            create: debian.create,
            ctl: debian.ctl,
            close: debian.close,
        };
        Ok(vec![
            cycle("C ABI emulated cycle", ours)?,
            cycle("Debian libvpoll cycle", theirs)?,
            create_close("C ABI emulated create+close", ours),
            create_close("Debian libvpoll create+close", theirs),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpoll_probes_measure_real_cycles_and_make_rows() {
        let mut probes = vpoll_probes(&[Backend::Emulated]).unwrap();
        let samples = sample_probes(&mut probes, 1, Duration::from_millis(10)).unwrap();
        for (p, s) in probes.iter().zip(&samples) {
            assert_eq!(s.values().len(), 1, "{}", p.name);
            assert!(s.median().is_finite() && s.median() > 0.0, "{}", p.name);
        }
        let made = rows(&VPOLL_COMPARE, &probes, &samples, Placement::Unpinned);
        let names: Vec<&str> = made.iter().map(|r| r.scenario.as_str()).collect();
        assert_eq!(
            names,
            [
                "emulated cycle vs bare socketpair (unpinned)",
                "bare socketpair vs eventfd floor (unpinned)",
                "emulated cycle vs eventfd floor (unpinned)",
                "emulated create+close (unpinned)",
                "emulated create+close vs libvpoll emulator's syscalls (unpinned)",
            ]
        );
        assert!(made.iter().all(|r| r.ratio().is_finite()));
        // Rows do not appear for probes that did not run (no fuse probe here).
        let fuse_rows: Vec<Compare> = VPOLL_COMPARE
            .iter()
            .filter(|c| c.ours.starts_with("fuse cycle"))
            .copied()
            .collect();
        assert_eq!(fuse_rows.len(), 4);
        assert!(rows(&fuse_rows, &probes, &samples, Placement::Pinned).is_empty());
    }
}
