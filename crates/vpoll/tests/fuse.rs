//! The Fuse backend against real epoll, poll, select, processes and forks.
//!
//! Every test skips (with the reason on stderr) where FUSE cannot be mounted. Tests that
//! need another process re-run this test binary with `GREENFD_FUSE_TEST_ROLE` set, which
//! makes [`zz_role`] play that part (forking only happens in that subprocess).

mod common;

use greenfd_vpoll::{Backend, Builder, Error, Events, Op, VpollFd};
use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::{PollFd, PollFlags};
use rustix::time::Timespec;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{BITS, combo};
use greenfd_test_support::{
    answer_route_check, epoll_on, is_child, unprivileged_blocker, unprivileged_route_refusal,
};

/// Environment variable that selects a subprocess role.
const ROLE: &str = "GREENFD_FUSE_TEST_ROLE";
/// Safety-net timeout: a bug fails the test instead of hanging it.
const SAFETY: Duration = Duration::from_secs(20);

/// Set (to `1`) when this suite runs nested, as an unprivileged user with one FUSE route
/// forced: then the Fuse backend must be available (a skip would hide a broken route).
const NESTED: &str = "GREENFD_FUSE_TEST_NESTED";

/// Whether the Fuse backend works here; prints why not.
fn fuse_available() -> bool {
    match Backend::Fuse.probe() {
        Ok(()) => true,
        Err(e) if std::env::var_os(NESTED).is_some() => {
            panic!("the forced FUSE route must work in the nested run: {e}")
        }
        Err(e) => {
            eprintln!("skipped: {e}");
            false
        }
    }
}

/// Whether this process runs without root (the nested unprivileged run).
fn unprivileged() -> bool {
    !rustix::process::geteuid().is_root()
}

/// The route `GREENFD_VPOLL_FUSE_ROUTE` forces, if any (`legacy` is the direct route).
fn forced_route() -> Option<greenfd_vpoll::FuseRoute> {
    let v = std::env::var(greenfd_vpoll::FUSE_ROUTE_ENV).ok()?;
    if v == "legacy" {
        return Some(greenfd_vpoll::FuseRoute::Direct);
    }
    v.parse().ok()
}

/// A Fuse vpoll fd with `init` set (on the forced route, if one is).
fn vpoll(init: Events) -> VpollFd {
    let v = Builder::new()
        .backend(Backend::Fuse)
        .events(init)
        .build()
        .expect("create a fuse vpoll fd");
    if let Some(route) = forced_route() {
        assert_eq!(v.fuse_route(), Some(route), "served by the forced route");
    }
    v
}

/// Poll flags for every bit.
fn all_poll_flags() -> PollFlags {
    PollFlags::from_bits_retain(Events::all().bits() as u16)
}

/// What a zero-timeout poll(2) reports for `fd`, asking for every bit.
fn poll_now(fd: BorrowedFd<'_>) -> Events {
    let mut fds = [PollFd::new(&fd, all_poll_flags())];
    rustix::event::poll(&mut fds, Some(&Timespec::default())).expect("poll");
    Events::from_bits_retain(u32::from(fds[0].revents().bits()))
}

/// The epoll interest in every vpoll bit (registered with token 7 by these tests).
fn every_bit() -> EventFlags {
    EventFlags::from_bits_retain(Events::all().bits())
}

/// `epoll_wait` once; `None` timeout means the safety timeout. Returns (data, events).
fn epoll_wait(ep: &OwnedFd, timeout: Option<Duration>) -> Vec<(u64, Events)> {
    greenfd_test_support::epoll_wait(ep, timeout.unwrap_or(SAFETY))
        .into_iter()
        .map(|(data, flags)| (data, Events::from_bits_retain(flags.bits())))
        .collect()
}

#[test]
fn every_mask_reaches_epoll_poll_and_select_exactly() {
    if !fuse_available() {
        return;
    }
    let v = vpoll(Events::empty());
    assert_eq!(v.backend(), Backend::Fuse);
    let ep = epoll_on(v.as_fd(), 7, every_bit());
    for n in 0..64 {
        let mask = combo(n);
        v.set(mask).unwrap();
        assert_eq!(poll_now(v.as_fd()), mask, "poll(2), mask {mask:?}");
        assert_eq!(v.events().unwrap(), mask, "events(), mask {mask:?}");
        assert_eq!(greenfd_vpoll::events_fd(v.as_fd()).unwrap(), mask);
        assert_eq!(
            common::select_sets(v.as_fd()),
            common::expected_select(mask),
            "select(2), mask {mask:?}"
        );
        if mask.is_empty() {
            assert_eq!(epoll_wait(&ep, Some(Duration::ZERO)), vec![], "empty mask");
        } else {
            assert_eq!(
                epoll_wait(&ep, None),
                vec![(7, mask)],
                "epoll LT, mask {mask:?}"
            );
            // Level-triggered: still reported while set.
            assert_eq!(epoll_wait(&ep, None), vec![(7, mask)], "epoll LT again");
        }
    }
}

#[test]
fn each_bit_alone_wakes_a_blocked_epoll_wait() {
    if !fuse_available() {
        return;
    }
    let v = vpoll(Events::empty());
    let ep = epoll_on(v.as_fd(), 7, every_bit());
    for bit in BITS {
        std::thread::scope(|s| {
            let waiter = s.spawn(|| epoll_wait(&ep, None));
            // The waiter may or may not be blocked yet; either way it must see the bit.
            v.add(bit).unwrap();
            assert_eq!(waiter.join().unwrap(), vec![(7, bit)], "bit {bit:?}");
        });
        v.del(bit).unwrap();
        assert_eq!(epoll_wait(&ep, Some(Duration::ZERO)), vec![]);
    }
}

#[test]
fn a_rise_racing_the_first_poll_or_a_sleeping_waiter_is_never_lost() {
    if !fuse_available() {
        return;
    }
    // The server publishes the poll handle before reading the mask, a ctl changes the mask
    // before reading the handle: whichever way they interleave, the waiter sees the bits.
    for i in 0..300 {
        let v = vpoll(Events::empty());
        let et = if i % 2 == 0 {
            EventFlags::ET
        } else {
            EventFlags::empty()
        };
        let ep = if i % 3 == 0 {
            Some(epoll_on(v.as_fd(), 7, every_bit() | et))
        } else {
            None
        };
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                // Either registered already (the waiter may sleep before the rise) or
                // registered now (its first poll races the rise).
                let own;
                let ep = match &ep {
                    Some(ep) => ep,
                    None => {
                        own = epoll_on(v.as_fd(), 7, every_bit() | et);
                        &own
                    }
                };
                epoll_wait(ep, None)
            });
            v.add(Events::IN | Events::OUT).unwrap();
            assert_eq!(
                waiter.join().unwrap(),
                vec![(7, Events::IN | Events::OUT)],
                "round {i}"
            );
        });
    }
}

#[test]
fn edge_triggered_epoll_reports_each_op_that_leaves_bits_set_once() {
    if !fuse_available() {
        return;
    }
    let v = vpoll(Events::empty());
    let ep = epoll_on(v.as_fd(), 7, every_bit() | EventFlags::ET);
    v.add(Events::IN).unwrap();
    assert_eq!(epoll_wait(&ep, None), vec![(7, Events::IN)]);
    assert_eq!(epoll_wait(&ep, Some(Duration::ZERO)), vec![], "ET: once");
    v.add(Events::OUT).unwrap();
    assert_eq!(epoll_wait(&ep, None), vec![(7, Events::IN | Events::OUT)]);
    assert_eq!(epoll_wait(&ep, Some(Duration::ZERO)), vec![]);
    // As with the kernel's EFD_VPOLL, any op that leaves bits set is an edge.
    v.del(Events::IN).unwrap();
    assert_eq!(
        epoll_wait(&ep, None),
        vec![(7, Events::OUT)],
        "DEL leaving OUT"
    );
    assert_eq!(epoll_wait(&ep, Some(Duration::ZERO)), vec![]);
    v.add(Events::OUT).unwrap();
    assert_eq!(
        epoll_wait(&ep, None),
        vec![(7, Events::OUT)],
        "ADD of a set bit"
    );
    v.del(Events::OUT).unwrap();
    assert_eq!(
        epoll_wait(&ep, Some(Duration::ZERO)),
        vec![],
        "empty: nothing"
    );
    v.set(Events::HUP | Events::RDHUP).unwrap();
    assert_eq!(
        epoll_wait(&ep, None),
        vec![(7, Events::HUP | Events::RDHUP)]
    );
    assert_eq!(epoll_wait(&ep, Some(Duration::ZERO)), vec![]);
    v.add(Events::ERR).unwrap();
    assert_eq!(
        epoll_wait(&ep, None),
        vec![(7, Events::HUP | Events::RDHUP | Events::ERR)]
    );
}

#[test]
fn add_del_set_are_idempotent_and_init_is_honoured() {
    if !fuse_available() {
        return;
    }
    for n in [0, 1, 4, 16, 2, 8, 32, 63] {
        let init = combo(n);
        let v = vpoll(init);
        assert_eq!(poll_now(v.as_fd()), init, "init {init:?}");
    }
    let v = vpoll(Events::empty());
    v.add(Events::IN).unwrap();
    v.add(Events::IN).unwrap();
    assert_eq!(poll_now(v.as_fd()), Events::IN);
    v.del(Events::IN).unwrap();
    v.del(Events::IN).unwrap();
    assert_eq!(poll_now(v.as_fd()), Events::empty());
    v.set(Events::PRI | Events::OUT).unwrap();
    v.set(Events::PRI | Events::OUT).unwrap();
    assert_eq!(poll_now(v.as_fd()), Events::PRI | Events::OUT);
    v.ctl(Op::Del, Events::HUP).unwrap();
    assert_eq!(poll_now(v.as_fd()), Events::PRI | Events::OUT);
    v.set(Events::empty()).unwrap();
    assert_eq!(poll_now(v.as_fd()), Events::empty());
}

#[test]
fn the_fd_itself_takes_control_words_and_refuses_bad_ones() {
    if !fuse_available() {
        return;
    }
    let v = vpoll(Events::empty());
    let ep = epoll_on(v.as_fd(), 7, every_bit());
    // The server path (what a forked child uses), driven from here with raw write(2).
    let word = Op::Add.encode(Events::PRI | Events::RDHUP).to_ne_bytes();
    assert_eq!(rustix::io::write(v.as_fd(), &word), Ok(8));
    assert_eq!(
        epoll_wait(&ep, None),
        vec![(7, Events::PRI | Events::RDHUP)]
    );
    let mut mask = [0u8; 8];
    assert_eq!(rustix::io::read(v.as_fd(), &mut mask), Ok(8));
    assert_eq!(
        u64::from_ne_bytes(mask),
        u64::from((Events::PRI | Events::RDHUP).bits())
    );
    for bad in [
        (4u64 << 32) | 1,           // unknown op
        (1u64 << 32) | 0x8000_0000, // unknown bit
        0,                          // op 0
    ] {
        assert_eq!(
            rustix::io::write(v.as_fd(), &bad.to_ne_bytes()),
            Err(rustix::io::Errno::INVAL),
            "word {bad:#x}"
        );
    }
    assert_eq!(
        rustix::io::write(v.as_fd(), &[1, 2, 3]),
        Err(rustix::io::Errno::INVAL),
        "short word"
    );
    assert_eq!(
        poll_now(v.as_fd()),
        Events::PRI | Events::RDHUP,
        "unchanged"
    );
    // Unknown bits are refused by the library too.
    assert!(matches!(
        v.ctl(Op::Add, Events::from_bits_retain(0x40)),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn state_lives_until_the_last_copy_is_closed() {
    if !fuse_available() {
        return;
    }
    let v = vpoll(Events::OUT);
    let dup = v.as_fd().try_clone_to_owned().unwrap();
    v.close().unwrap();
    assert_eq!(
        greenfd_vpoll::backend_of(dup.as_fd()).unwrap(),
        Backend::Fuse
    );
    greenfd_vpoll::ctl_fd(dup.as_fd(), Op::Add, Events::IN).unwrap();
    assert_eq!(poll_now(dup.as_fd()), Events::IN | Events::OUT);
    greenfd_vpoll::close_fd(dup).unwrap();
}

#[test]
fn other_descriptors_are_never_claimed() {
    if !fuse_available() {
        return;
    }
    let _v = vpoll(Events::IN); // make sure our filesystem exists
    let dir = std::env::temp_dir();
    let path = dir.join(format!("greenfd-fuse-test-{}", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let (r, _w) = rustix::pipe::pipe().unwrap();
    let efd = rustix::event::eventfd(0, rustix::event::EventfdFlags::CLOEXEC).unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    let dirfd = std::fs::File::open(&dir).unwrap();
    let fds: [BorrowedFd<'_>; 6] = [
        file.as_fd(),
        a.as_fd(),
        r.as_fd(),
        efd.as_fd(),
        null.as_fd(),
        dirfd.as_fd(),
    ];
    for fd in fds {
        assert_ne!(greenfd_vpoll::backend_of(fd).ok(), Some(Backend::Fuse));
        assert!(matches!(
            greenfd_vpoll::ctl_fd(fd, Op::Add, Events::IN),
            Err(Error::NotVpoll)
        ));
    }
}

/// A one-file FUSE filesystem that is not vpoll: its file even has an inode number with
/// high bits set, like vpoll files, so only the device and marker tell them apart.
struct PlainFs;

/// Inode of [`PlainFs`]'s file.
const PLAIN_INO: u64 = (7 << 32) | 2;

impl PlainFs {
    /// Attributes of the root (ino 1) or the file.
    fn attr(ino: u64) -> fuser::FileAttr {
        let now = std::time::SystemTime::now();
        let dir = ino == 1;
        fuser::FileAttr {
            ino: fuser::INodeNo(ino),
            size: 8,
            blocks: 0,
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind: if dir {
                fuser::FileType::Directory
            } else {
                fuser::FileType::RegularFile
            },
            perm: if dir { 0o755 } else { 0o600 },
            nlink: 1,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }
}

impl fuser::Filesystem for PlainFs {
    fn lookup(
        &self,
        _req: &fuser::Request,
        parent: fuser::INodeNo,
        name: &std::ffi::OsStr,
        reply: fuser::ReplyEntry,
    ) {
        if parent == fuser::INodeNo::ROOT && name == "f" {
            reply.entry(&SAFETY, &Self::attr(PLAIN_INO), fuser::Generation(0));
        } else {
            reply.error(fuser::Errno::ENOENT);
        }
    }

    fn getattr(
        &self,
        _req: &fuser::Request,
        ino: fuser::INodeNo,
        _fh: Option<fuser::FileHandle>,
        reply: fuser::ReplyAttr,
    ) {
        reply.attr(&SAFETY, &Self::attr(ino.0));
    }

    fn open(
        &self,
        _req: &fuser::Request,
        _ino: fuser::INodeNo,
        _flags: fuser::OpenFlags,
        reply: fuser::ReplyOpen,
    ) {
        reply.opened(fuser::FileHandle(0), fuser::FopenFlags::FOPEN_NOFLUSH);
    }
}

#[test]
fn a_file_of_another_fuse_filesystem_is_not_claimed() {
    if !fuse_available() {
        return;
    }
    let _v = vpoll(Events::IN); // our own filesystem exists too
    let dir = std::env::temp_dir().join(format!("greenfd-fuse-test-plain.{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = fuser::Config::default();
    config.mount_options = vec![fuser::MountOption::FSName("greenfd-test-plain".into())];
    let session = match fuser::Session::new(PlainFs, &dir, &config) {
        Ok(s) => s.spawn().unwrap(),
        Err(e) => {
            eprintln!("skipped: cannot mount a second FUSE filesystem: {e}");
            let _ = std::fs::remove_dir(&dir);
            return;
        }
    };
    let file = std::fs::File::open(dir.join("f")).unwrap();
    assert_eq!(
        rustix::fs::fstatfs(&file).unwrap().f_type as u64,
        0x6573_5546,
        "really a FUSE file"
    );
    assert_ne!(
        greenfd_vpoll::backend_of(file.as_fd()).ok(),
        Some(Backend::Fuse)
    );
    assert!(matches!(
        greenfd_vpoll::ctl_fd(file.as_fd(), Op::Add, Events::IN),
        Err(Error::NotVpoll)
    ));
    drop(file);
    session.umount_and_join().unwrap();
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn a_thousand_fds_each_keep_their_own_state() {
    if !fuse_available() {
        return;
    }
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.current.is_some_and(|c| c < 4096) {
        let want = lim.maximum.map_or(4096, |m| m.min(4096));
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(want),
                maximum: lim.maximum,
            },
        );
    }
    // Leave room for the fds of the tests running alongside.
    let room = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    let n = 1000.min(room.saturating_sub(300) as usize);
    if n < 1000 {
        eprintln!("note: the fd limit ({room}) allows only {n} vpoll fds here");
    }
    let fds: Vec<VpollFd> = (0..n).map(|i| vpoll(combo(i % 64))).collect();
    let mut pfds: Vec<PollFd<'_>> = fds
        .iter()
        .map(|v| PollFd::new(v, all_poll_flags()))
        .collect();
    rustix::event::poll(&mut pfds, Some(&Timespec::default())).unwrap();
    for (i, p) in pfds.iter().enumerate() {
        assert_eq!(
            u32::from(p.revents().bits()),
            combo(i % 64).bits(),
            "fd #{i}"
        );
    }
    drop(pfds);
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
    for (i, v) in fds.iter().enumerate() {
        v.set(Events::empty()).unwrap();
        epoll::add(
            &ep,
            v,
            EventData::new_u64(i as u64),
            EventFlags::IN | EventFlags::OUT,
        )
        .unwrap();
    }
    for (i, v) in fds.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
        v.add(if i % 2 == 0 { Events::IN } else { Events::OUT })
            .unwrap();
    }
    let mut seen = std::collections::BTreeMap::new();
    let expected = n.div_ceil(3);
    while seen.len() < expected {
        let got = epoll_wait(&ep, None);
        assert!(
            !got.is_empty(),
            "timed out with {} of {expected}",
            seen.len()
        );
        for (i, ev) in got {
            seen.insert(i as usize, ev);
        }
    }
    for (i, ev) in seen {
        assert_eq!(i % 3, 0, "fd #{i} was never set");
        let want = if i % 2 == 0 { Events::IN } else { Events::OUT };
        assert_eq!(ev, want, "fd #{i}");
    }
    for v in fds {
        v.close().unwrap();
    }
}

/// Lines of a vpoll mount in this mount namespace (there must never be any).
fn vpoll_mounts() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains("greenfd-vpoll"))
        .map(str::to_owned)
        .collect()
}

/// Mount-point directories of process `pid` still present in the temp dir.
fn leftover_dirs(pid: u32) -> Vec<String> {
    let prefix = format!("greenfd-vpoll.{pid}.");
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

#[test]
fn no_mount_is_ever_left_behind() {
    if !fuse_available() {
        return;
    }
    let v = vpoll(Events::IN);
    assert_eq!(vpoll_mounts(), Vec::<String>::new());
    assert_eq!(leftover_dirs(std::process::id()), Vec::<String>::new());
    assert_eq!(
        poll_now(v.as_fd()),
        Events::IN,
        "and the detached mount works"
    );
}

/// Runs this test binary as a subprocess in `role`, with piped stdio.
fn spawn_role(role: &str, fds_to_keep: &[BorrowedFd<'_>]) -> Child {
    spawn_role_via(&[], role, fds_to_keep)
}

/// Like [`spawn_role`], run through the command `wrapper` (e.g. `unshare -m`).
fn spawn_role_via(wrapper: &[&str], role: &str, fds_to_keep: &[BorrowedFd<'_>]) -> Child {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match wrapper {
        [] => Command::new(&exe),
        [first, rest @ ..] => {
            let mut c = Command::new(first);
            c.args(rest).arg(&exe);
            c
        }
    };
    cmd.args(["--exact", "zz_role", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // The deliberate panic's message would only look like a failure in the log.
        .stderr(if role == "linger:panic" {
            Stdio::null()
        } else {
            Stdio::inherit()
        });
    let keep: Vec<i32> = fds_to_keep.iter().map(|f| f.as_raw_fd()).collect();
    cmd.env(
        "GREENFD_FUSE_TEST_FDS",
        keep.iter()
            .map(|f| f.to_string())
            .collect::<Vec<_>>()
            .join(","),
    );
    cmd.spawn().expect("spawn the test binary")
}

/// Forwards a child's stdout lines to a channel (so reads can time out); each line loses
/// any libtest prefix `test zz_role ... `.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(mut line) = line else { break };
            if let Some(i) = line.find("test zz_role ... ") {
                line.drain(..i + "test zz_role ... ".len());
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for the next line that starts with `prefix`.
fn expect_line(rx: &mpsc::Receiver<String>, prefix: &str) -> String {
    loop {
        match rx.recv_timeout(SAFETY) {
            Ok(l) if l.starts_with(prefix) => return l,
            Ok(_) => continue,
            Err(e) => panic!("no {prefix:?} line from the child: {e}"),
        }
    }
}

/// Every remaining line, until the child's stdout closes (or the safety timeout).
fn rest(rx: &mpsc::Receiver<String>) -> Vec<String> {
    let mut lines = Vec::new();
    while let Ok(l) = rx.recv_timeout(SAFETY) {
        lines.push(l);
    }
    lines
}

/// Lets a role subprocess finish (promptly) and asserts it succeeded and printed
/// `"{ok} ok"`.
fn expect_role_ok(child: &mut Child, ok: &str) {
    let rx = lines_of(child);
    let status = wait_promptly(child);
    let lines = rest(&rx);
    assert!(
        status.success(),
        "child failed: {status}, output {lines:#?}"
    );
    let want = format!("{ok} ok");
    assert!(lines.contains(&want), "{lines:#?}");
}

/// Waits for `child` to terminate, failing the test after [`SAFETY`].
fn wait_promptly(child: &mut Child) -> std::process::ExitStatus {
    wait_promptly_within(child, SAFETY)
}

/// Waits for `child` to terminate, failing the test after `limit`.
fn wait_promptly_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap();
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let ts = Timespec {
        tv_sec: limit.as_secs() as _,
        tv_nsec: 0,
    };
    let n = rustix::event::poll(&mut fds, Some(&ts)).unwrap();
    assert_eq!(
        n,
        1,
        "process {} did not terminate within {limit:?}",
        child.id()
    );
    child.wait().unwrap()
}

#[test]
fn fork_scenario_ends_with_hup() {
    if !fuse_available() {
        return;
    }
    let mut child = spawn_role("fork", &[]);
    let rx = lines_of(&mut child);
    let status = wait_promptly(&mut child);
    let lines = rest(&rx);
    assert!(
        status.success(),
        "scenario failed: {status}, output {lines:#?}"
    );
    let got: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("GOT event"))
        .map(String::as_str)
        .collect();
    assert_eq!(
        got,
        ["GOT event 1", "GOT event 1", "GOT event 4", "GOT event 10"],
        "full output {lines:#?}"
    );
    assert!(lines.iter().any(|l| l == "child ok"), "output {lines:#?}");
}

#[test]
fn ctl_from_another_process_reaches_the_owners_epoll() {
    ctl_from_another_process("ctl");
}

#[test]
fn ctl_from_another_users_process_reaches_the_owners_epoll() {
    if !id_mapped(65534) {
        eprintln!("skipped: uid/gid 65534 is not mapped in this user namespace");
        return;
    }
    ctl_from_another_process("ctl-nobody");
}

/// Whether `id` is mapped in both /proc/self/uid_map and gid_map (so setresuid works).
fn id_mapped(id: u64) -> bool {
    ["uid_map", "gid_map"].iter().all(|map| {
        std::fs::read_to_string(format!("/proc/self/{map}")).is_ok_and(|text| {
            text.lines().any(|l| {
                let f: Vec<u64> = l
                    .split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect();
                f.len() == 3 && f[0] <= id && id < f[0] + f[2]
            })
        })
    })
}

/// The owner watches a vpoll fd that a fresh program (`role`) sets through the fd.
fn ctl_from_another_process(role: &str) {
    if !fuse_available() {
        return;
    }
    let v = Builder::new()
        .backend(Backend::Fuse)
        .inherit_on_exec(true)
        .build()
        .unwrap();
    let ep = epoll_on(v.as_fd(), 7, every_bit());
    let mut child = spawn_role(role, &[v.as_fd()]);
    let rx = lines_of(&mut child);
    // The child (a fresh program: no shared memory with us) sets OUT|PRI through the fd.
    assert_eq!(epoll_wait(&ep, None), vec![(7, Events::OUT | Events::PRI)]);
    let status = wait_promptly(&mut child);
    let lines = rest(&rx);
    assert!(
        status.success(),
        "child failed: {status}, output {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l == "saw OUT|PRI, backend fuse"),
        "{lines:#?}"
    );
    assert_eq!(v.events().unwrap(), Events::OUT | Events::PRI);
}

#[test]
fn the_classic_mount_fallback_works_and_leaves_nothing_behind() {
    if !fuse_available() {
        return;
    }
    if unprivileged() {
        eprintln!("skipped: the classic mount(2) fallback of the direct route needs root");
        return;
    }
    let mut child = spawn_role("legacy-mount", &[]);
    expect_role_ok(&mut child, "legacy");
    assert_eq!(leftover_dirs(child.id()), Vec::<String>::new());
    assert_eq!(vpoll_mounts(), Vec::<String>::new());
}

#[test]
fn after_the_connection_is_aborted_ctl_fails_and_poll_reports_err() {
    if !fuse_available() {
        return;
    }
    if unprivileged() {
        eprintln!("skipped: aborting a connection through fusectl needs root");
        return;
    }
    // fusectl (to abort a connection) is mounted in a private mount namespace.
    if Command::new("unshare").arg("--help").output().is_err() {
        eprintln!("skipped: unshare(1) is not installed");
        return;
    }
    let mut child = spawn_role_via(&["unshare", "-m", "--propagation", "private"], "abort", &[]);
    let rx = lines_of(&mut child);
    let status = wait_promptly(&mut child);
    let lines = rest(&rx);
    if lines.iter().any(|l| l.starts_with("skipped:")) {
        eprintln!("{lines:?}");
        return;
    }
    assert!(
        status.success(),
        "child failed: {status}, output {lines:#?}"
    );
    assert!(lines.iter().any(|l| l == "abort ok"), "{lines:#?}");
}

#[test]
fn without_cap_sys_admin_the_direct_route_says_why() {
    if !fuse_available() {
        return;
    }
    // In a private mount namespace (when possible): without the direct route the child may
    // mount through fusermount3, whose brief mount must not meet the mount checks of the
    // tests running in parallel here.
    let private: &[&str] = if unprivileged() {
        &[]
    } else {
        &["unshare", "-m", "--propagation", "private"]
    };
    let mut child = spawn_role_via(private, "nocap", &[]);
    expect_role_ok(&mut child, "nocap");
}

#[test]
fn once_the_server_process_is_gone_ctl_fails_with_enotconn() {
    if !fuse_available() {
        return;
    }
    let mut child = spawn_role("orphan", &[]);
    expect_role_ok(&mut child, "orphan");
}

#[test]
fn python_epoll_in_a_child_process_sees_exact_bits() {
    if !fuse_available() {
        return;
    }
    if Command::new("python3").arg("-c").arg("").status().is_err() {
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let v = Builder::new()
        .backend(Backend::Fuse)
        .inherit_on_exec(true)
        .build()
        .unwrap();
    // The child registers the inherited fd with select.epoll (level-triggered, every bit)
    // and, for each line it reads, prints what one poll() returns for it, in hex.
    let script = r#"
import select, sys
fd = int(sys.argv[1])
ep = select.epoll()
ep.register(fd, select.EPOLLIN | select.EPOLLPRI | select.EPOLLOUT | select.EPOLLRDHUP)
for line in sys.stdin:
    ev = ep.poll(10)
    print("%x" % (ev[0][1] if ev else 0), flush=True)
"#;
    let mut py = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(v.as_raw_fd().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let rx = lines_of(&mut py);
    let mut stdin = py.stdin.take().unwrap();
    let mut masks: Vec<Events> = BITS.to_vec();
    masks.extend([
        Events::IN | Events::OUT,
        Events::PRI | Events::RDHUP,
        Events::ERR | Events::HUP,
        Events::all(),
    ]);
    for m in masks {
        v.set(m).unwrap();
        writeln!(stdin, "next").unwrap();
        let line = rx.recv_timeout(SAFETY).expect("python answers");
        let got = u32::from_str_radix(line.trim(), 16).expect("hex mask");
        assert_eq!(got, m.bits(), "python's epoll for {m:?}");
    }
    drop(stdin);
    assert!(wait_promptly(&mut py).success());
}

#[test]
fn a_forked_child_creates_its_own_vpoll_fds_and_ctls_inherited_ones() {
    if !fuse_available() {
        return;
    }
    let mut child = spawn_role("fork-create", &[]);
    expect_role_ok(&mut child, "fork-create");
}

/// Runs a child that holds live vpoll fds (watched by epoll, one thread blocked in
/// `epoll_wait`) and ends in `how`; checks it terminates promptly and leaves no mount.
fn ends_promptly(how: &str) -> std::process::ExitStatus {
    let mut child = spawn_role(&format!("linger:{how}"), &[]);
    let rx = lines_of(&mut child);
    expect_line(&rx, "READY");
    let mountinfo = std::fs::read_to_string(format!("/proc/{}/mountinfo", child.id())).unwrap();
    assert!(
        !mountinfo.contains("greenfd-vpoll"),
        "child has a vpoll mount"
    );
    if how == "kill" {
        child.kill().unwrap();
    } else {
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    let status = wait_promptly(&mut child);
    assert_eq!(leftover_dirs(child.id()), Vec::<String>::new());
    assert_eq!(vpoll_mounts(), Vec::<String>::new());
    status
}

#[test]
fn process_with_live_fds_exits_promptly() {
    if !fuse_available() {
        return;
    }
    assert_eq!(ends_promptly("exit").code(), Some(3));
}

#[test]
fn process_exits_promptly_while_other_threads_keep_the_server_busy() {
    if !fuse_available() {
        return;
    }
    // Exit kills the server thread; a request it had read but not answered must not leave
    // its caller (and so the whole process) waiting forever.
    for _ in 0..8 {
        assert_eq!(ends_promptly("busy").code(), Some(3));
    }
}

#[test]
fn process_with_live_fds_ends_promptly_after_a_panic() {
    if !fuse_available() {
        return;
    }
    let status = ends_promptly("panic");
    assert!(!status.success() && status.code().is_some(), "{status}");
}

#[test]
fn process_with_live_fds_ends_promptly_when_killed() {
    if !fuse_available() {
        return;
    }
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(ends_promptly("kill").signal(), Some(libc::SIGKILL));
}

/// Why the unprivileged runs (uid/gid 65534) cannot happen here, if they cannot.
fn unprivileged_run_blocker() -> Option<String> {
    if std::env::var_os(NESTED).is_some() {
        return Some("already the nested run".into());
    }
    unprivileged_blocker()
}

/// Runs this whole suite again as uid/gid 65534 (no capabilities) with `route` forced, in
/// a private mount namespace (so the fusermount route's brief mount cannot disturb the
/// mount checks of tests running in parallel here), one test at a time.
fn unprivileged_suite(route: &str) {
    if let Some(why) = unprivileged_run_blocker() {
        eprintln!("skipped: {why}");
        return;
    }
    // First ask, as that user, whether the route works at all: a system that refuses it by
    // policy (user namespaces disabled or restricted, no fusermount3) skips with the reason;
    // any other failure is a failure.
    if let Some(why) = unprivileged_route_refusal(route, ROUTE_CHECK) {
        eprintln!("skipped: the {route} route is refused here: {why}");
        return;
    }
    let current = std::env::current_exe().unwrap();
    let dir = greenfd_test_support::copies_for_any_user(&[&current]).unwrap();
    let exe = dir.join(current.file_name().unwrap());
    let result = std::panic::catch_unwind(|| unprivileged_suite_in(route, &exe));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// [`unprivileged_suite`] with `exe`, a copy of this test binary that uid 65534 can run.
fn unprivileged_suite_in(route: &str, exe: &std::path::Path) {
    let mut child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "setpriv"])
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(exe)
        .args(["--test-threads=1", "--skip", "unprivileged_"])
        .env(greenfd_vpoll::FUSE_ROUTE_ENV, route)
        .env(NESTED, "1")
        .env_remove(ROLE)
        .env_remove(greenfd_vpoll::BACKEND_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the nested suite");
    let rx = lines_of(&mut child);
    let status = wait_promptly_within(&mut child, Duration::from_secs(300));
    let lines = rest(&rx);
    assert!(status.success(), "nested {route} run: {status}\n{lines:#?}");
    let summary = lines
        .iter()
        .find(|l| l.starts_with("test result: ok."))
        .unwrap_or_else(|| panic!("no summary: {lines:#?}"));
    let passed: usize = summary
        .trim_start_matches("test result: ok. ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(passed >= 20, "only {passed} tests ran: {lines:#?}");
}

#[test]
fn unprivileged_userns_route_passes_this_suite() {
    unprivileged_suite("userns");
}

#[test]
fn unprivileged_fusermount_route_passes_this_suite() {
    unprivileged_suite("fusermount");
}

#[test]
fn unprivileged_without_an_accessible_dev_fuse_every_route_says_why() {
    if let Some(why) = unprivileged_run_blocker() {
        eprintln!("skipped: {why}");
        return;
    }
    // A private mount namespace in which /dev/fuse is a copy of the node at mode 0600
    // (on a private tmpfs): the real node, and every other test, are untouched.
    let current = std::env::current_exe().unwrap();
    let dir = greenfd_test_support::copies_for_any_user(&[&current]).unwrap();
    let exe = dir.join(current.file_name().unwrap());
    let script = greenfd_test_support::UNPRIVILEGED_WITHOUT_DEV_FUSE;
    let mut child = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&exe)
        .args(["--exact", "zz_role", "--nocapture", "--test-threads=1"])
        .env(ROLE, "no-route")
        .env(NESTED, "1")
        .env_remove(greenfd_vpoll::FUSE_ROUTE_ENV)
        .env_remove(greenfd_vpoll::BACKEND_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        expect_role_ok(&mut child, "no-route")
    }));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// The test that answers [`unprivileged_route_refusal`] in its child run.
const ROUTE_CHECK: &str = "route_check_child";

/// The child side of [`unprivileged_route_refusal`]; a no-op in a normal test run.
#[test]
fn route_check_child() {
    if is_child(ROUTE_CHECK) {
        answer_route_check();
    }
}

/// Runs as uid 65534 with `/dev/fuse` at mode 0600: no route works, each says why, and
/// automatic choice falls back to the Emulated backend.
fn role_no_route() {
    use greenfd_vpoll::FuseRoute;
    for r in FuseRoute::ALL {
        let e = r.probe().expect_err("no route can work");
        let text = e.to_string();
        if r == FuseRoute::Fusermount && text.contains("not installed") {
            continue;
        }
        assert!(
            text.contains("/dev/fuse is not readable and writable by uid 65534")
                && text.contains("mode 0600"),
            "{r}: {text}"
        );
    }
    let e = Backend::Fuse.probe().expect_err("fuse unavailable");
    assert!(e.to_string().contains("no FUSE route works here"), "{e}");
    assert_eq!(greenfd_vpoll::best_backend().unwrap(), Backend::Emulated);
    let v = VpollFd::new(Events::IN).unwrap();
    assert_eq!(v.backend(), Backend::Emulated);
    assert_eq!(v.events().unwrap(), Events::IN);
    println!("no-route ok");
}

/// The subprocess side of the tests above; a no-op in a normal test run.
#[test]
fn zz_role() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    match role.as_str() {
        "fork" => role_fork(),
        "ctl" => role_ctl(),
        "ctl-nobody" => {
            // Another user: the mount allows other users, so the fd still works for them.
            // SAFETY: plain setresgid/setresuid calls; glibc applies them to every thread.
            unsafe {
                assert_eq!(libc::setresgid(65534, 65534, 65534), 0);
                assert_eq!(libc::setresuid(65534, 65534, 65534), 0);
            }
            role_ctl()
        }
        "nocap" => role_nocap(),
        "orphan" => role_orphan(),
        "no-route" => role_no_route(),
        "abort" => role_abort(),
        "legacy-mount" => role_legacy_mount(),
        "fork-create" => role_fork_create(),
        r if r.starts_with("linger:") => role_linger(&r["linger:".len()..]),
        other => panic!("unknown role {other}"),
    }
}

/// The inherited fds named by the parent.
fn inherited_fds() -> Vec<OwnedFd> {
    std::env::var("GREENFD_FUSE_TEST_FDS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let raw: i32 = s.parse().unwrap();
            // SAFETY: the parent passed this fd across exec for us to own.
            unsafe { OwnedFd::from_raw_fd(raw) }
        })
        .collect()
}

/// Child of `ctl_from_another_process_reaches_the_owners_epoll`.
fn role_ctl() {
    let fds = inherited_fds();
    let fd = fds[0].as_fd();
    let backend = greenfd_vpoll::backend_of(fd).expect("recognised as vpoll");
    greenfd_vpoll::ctl_fd(fd, Op::Add, Events::OUT | Events::PRI).expect("ctl via the fd");
    let now = greenfd_vpoll::events_fd(fd).expect("events via poll");
    assert_eq!(now, Events::OUT | Events::PRI);
    println!("saw OUT|PRI, backend {backend}");
}

/// Aborts this process's FUSE connection through fusectl, then checks what users see.
fn role_abort() {
    let v = vpoll(Events::IN);
    let ep = epoll_on(v.as_fd(), 7, every_bit());
    assert_eq!(epoll_wait(&ep, None), vec![(7, Events::IN)]);
    // The connection number is the minor of the device of the fd's filesystem.
    let minor = rustix::fs::minor(rustix::fs::fstat(&v).unwrap().st_dev);
    let conns = std::path::Path::new("/sys/fs/fuse/connections");
    if !conns.join(minor.to_string()).exists() {
        let st = Command::new("mount")
            .args(["-t", "fusectl", "fusectl"])
            .arg(conns)
            .status();
        if !st.is_ok_and(|s| s.success()) {
            println!("skipped: cannot mount fusectl");
            return;
        }
    }
    std::fs::write(conns.join(minor.to_string()).join("abort"), "1").unwrap();
    assert_eq!(
        epoll_wait(&ep, None),
        vec![(7, Events::ERR)],
        "epoll after abort"
    );
    assert_eq!(poll_now(v.as_fd()), Events::ERR);
    assert_eq!(v.events().unwrap(), Events::ERR);
    // The server notices the abort asynchronously (microseconds); ctl fails from then on.
    let deadline = std::time::Instant::now() + SAFETY;
    let err = loop {
        match v.add(Events::OUT) {
            Err(e) => break e,
            Ok(()) if std::time::Instant::now() < deadline => std::thread::yield_now(),
            Ok(()) => panic!("ctl still succeeds {SAFETY:?} after the abort"),
        }
    };
    assert_eq!(err.raw_os_error(), libc::ENOTCONN, "{err}");
    let new = Builder::new().backend(Backend::Fuse).build();
    assert!(matches!(new, Err(Error::Unavailable { .. })), "{new:?}");
    v.close().unwrap();
    println!("abort ok");
}

/// Uses the `mount(2)` + temp dir + `MNT_DETACH` path instead of the new mount API.
fn role_legacy_mount() {
    // SAFETY: no other thread of this process reads the environment now.
    unsafe { std::env::set_var(greenfd_vpoll::FUSE_ROUTE_ENV, "legacy") };
    let v = vpoll(Events::empty());
    let ep = epoll_on(v.as_fd(), 7, every_bit());
    v.add(Events::PRI | Events::HUP).unwrap();
    assert_eq!(epoll_wait(&ep, None), vec![(7, Events::PRI | Events::HUP)]);
    assert_eq!(vpoll_mounts(), Vec::<String>::new(), "detached");
    assert_eq!(leftover_dirs(std::process::id()), Vec::<String>::new());
    println!("legacy ok");
}

/// Drops CAP_SYS_ADMIN, then expects the direct route to refuse with a reason, while the
/// Fuse backend still works through another route where one is available.
fn role_nocap() {
    use greenfd_vpoll::FuseRoute;
    use rustix::thread::{CapabilitySet, capabilities, set_capabilities};
    let mut caps = capabilities(None).unwrap();
    caps.effective -= CapabilitySet::SYS_ADMIN;
    caps.permitted -= CapabilitySet::SYS_ADMIN;
    set_capabilities(None, caps).unwrap();
    let why = FuseRoute::Direct
        .probe()
        .expect_err("the direct route must fail without CAP_SYS_ADMIN");
    assert!(
        matches!(
            why,
            Error::Unavailable {
                backend: "fuse",
                ..
            }
        ),
        "{why}"
    );
    assert!(why.to_string().contains("CAP_SYS_ADMIN"), "{why}");
    let err = Builder::new()
        .backend(Backend::Fuse)
        .fuse_route(FuseRoute::Direct)
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    match greenfd_vpoll::fuse_route() {
        Ok(route) => {
            assert_ne!(route, FuseRoute::Direct);
            let v = Builder::new().backend(Backend::Fuse).build().unwrap();
            assert_eq!(v.fuse_route(), Some(route));
            v.add(Events::PRI).unwrap();
            assert_eq!(poll_now(v.as_fd()), Events::PRI);
        }
        Err(e) => {
            // Every route is named with its reason.
            for r in FuseRoute::ALL {
                assert!(e.to_string().contains(&format!("{r}: ")), "{e}");
            }
        }
    }
    println!("nocap ok");
}

/// A forked child keeps an inherited fd; once this process (its server) has exited, the
/// child's ctl fails with ENOTCONN instead of waiting for a server that is gone.
fn role_orphan() {
    let v = vpoll(Events::empty());
    let raw = v.as_raw_fd();
    let (go_r, go_w) = rustix::pipe::pipe().unwrap();
    let (res_r, res_w) = rustix::pipe::pipe().unwrap();
    // SAFETY: the child only makes async-signal-safe calls (read, ctl_fd's fd path,
    // write, _exit).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut b = [0u8; 1];
        // Wait until the grandparent reports that our parent is gone.
        let _ = rustix::io::read(&go_r, &mut b);
        // SAFETY: `raw` is open in the child (inherited).
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        let code = match greenfd_vpoll::ctl_fd(fd, Op::Add, Events::IN) {
            Err(e) if e.raw_os_error() == libc::ENOTCONN => b'n',
            Err(_) => b'e',
            Ok(()) => b'k',
        };
        let _ = rustix::io::write(&res_w, &[code]);
        // SAFETY: leaving the forked child without running atexit handlers.
        unsafe { libc::_exit(0) };
    }
    // This process is the server and exits below; a watcher that outlives it tells the
    // child (through `go`) once it is gone, and reports the child's answer.
    drop(go_r);
    drop(res_w);
    // The server's pid, taken here: the watcher must not ask getppid() for it after the
    // fork, when this process may already have exited (the watcher would then take its new
    // parent for the server and wait for ever).
    let server = rustix::process::getpid();
    // SAFETY: as above; the watcher only waits, polls, writes, reads and kills.
    let watcher = unsafe { libc::fork() };
    assert!(watcher >= 0, "fork failed");
    if watcher == 0 {
        let say = |msg: &[u8]| {
            let _ = rustix::io::write(rustix::stdio::stdout(), msg);
        };
        // Wait (boundedly) for our parent, the server, to exit: getppid changes when it does.
        let mut naps = 0;
        while rustix::process::getppid() == Some(server) {
            if naps * 5 >= SAFETY.as_millis() {
                say(b"orphan: the server process did not exit\n");
                // SAFETY: killing our own sibling (the forked child) and leaving.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::_exit(1)
                };
            }
            nap(5);
            naps += 1;
        }
        let _ = rustix::io::write(&go_w, b"g");
        // The child answers at once (ENOTCONN from a dead connection); a ctl that waits on
        // the vanished server is the bug this role exists to catch, reported well before
        // the parent's own timeout.
        let mut fds = [PollFd::new(&res_r, PollFlags::IN)];
        let answered =
            rustix::event::poll(&mut fds, Some(&Timespec::try_from(SAFETY / 2).unwrap()))
                .is_ok_and(|n| n == 1);
        let mut b = [0u8; 1];
        let answer = match answered.then(|| rustix::io::read(&res_r, &mut b)) {
            Some(Ok(1)) => b[0],
            Some(_) => b'?',
            None => b'w',
        };
        let msg: &[u8] = match answer {
            b'n' => b"orphan ok\n",
            b'k' => b"orphan: ctl succeeded with the server gone\n",
            b'w' => b"orphan: ctl still waits on the server that is gone\n",
            _ => b"orphan: ctl failed with another error\n",
        };
        say(msg);
        if answer == b'w' {
            // SAFETY: killing our own sibling, stuck in ctl, so that nothing outlives the test.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // SAFETY: leaving the forked child without running atexit handlers.
        unsafe { libc::_exit(0) };
    }
    std::io::stdout().flush().unwrap();
    // Exit with the vpoll fd open: the server goes with this process.
    std::mem::forget(v);
    std::process::exit(0);
}

/// A forked child mounts its own filesystem for new fds and still controls the parent's.
///
/// The child allocates and starts a thread, which a fork of a multithreaded process only
/// allows when no lock was held at fork time; nothing else runs in this process then.
fn role_fork_create() {
    let v = vpoll(Events::empty());
    let ep = epoll_on(v.as_fd(), 7, every_bit());
    let raw = v.as_raw_fd();
    // SAFETY: see the function comment; the child ends with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(|| {
            let own = vpoll(Events::PRI);
            assert_eq!(own.backend(), Backend::Fuse);
            let own_ep = epoll_on(own.as_fd(), 7, every_bit());
            own.add(Events::IN).unwrap();
            assert_eq!(
                epoll_wait(&own_ep, None),
                vec![(7, Events::IN | Events::PRI)]
            );
            // SAFETY: `raw` is open in the child (inherited).
            let inherited = unsafe { BorrowedFd::borrow_raw(raw) };
            greenfd_vpoll::ctl_fd(inherited, Op::Add, Events::OUT).unwrap();
            own.close().unwrap();
        })
        .map_or(1, |()| 0);
        // SAFETY: leaving the forked child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    assert_eq!(epoll_wait(&ep, None), vec![(7, Events::OUT)]);
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child {status:#x}"
    );
    println!("fork-create ok");
}

/// Sleeps `ms` milliseconds with nanosleep(2) (async-signal-safe).
fn nap(ms: u64) {
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: (ms * 1_000_000) as _,
    };
    // SAFETY: valid timespec pointer; the remainder pointer may be null.
    unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
}

/// libvpoll's reference fork scenario, shortened: the forked child does ADD IN, ADD IN, ADD OUT,
/// ADD HUP on the inherited fd 100 ms apart (each after the parent acknowledged the
/// previous one, so the transcript does not depend on timing); the parent `epoll_wait`s
/// with a 40 ms timeout and DELs whatever it gets.
fn role_fork() {
    let v = vpoll(Events::empty());
    // Warm every code path the child will use, so it only touches initialised state.
    greenfd_vpoll::ctl_fd(v.as_fd(), Op::Del, Events::IN).unwrap();
    let ep = epoll_on(v.as_fd(), 7, every_bit());
    let (ack_r, ack_w) = rustix::pipe::pipe().unwrap();
    let raw = v.as_raw_fd();
    // SAFETY: the child only makes async-signal-safe calls (fstat, write, read, nanosleep,
    // _exit) via ctl_fd's fd path and raw syscalls.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: `raw` is open in the child (inherited).
        let fd = unsafe { BorrowedFd::borrow_raw(raw) };
        let steps = [Events::IN, Events::IN, Events::OUT, Events::HUP];
        let mut code = 0;
        for (i, ev) in steps.into_iter().enumerate() {
            if i > 0 {
                let mut b = [0u8; 1];
                if rustix::io::read(&ack_r, &mut b) != Ok(1) {
                    code = 2;
                    break;
                }
            }
            nap(100);
            if greenfd_vpoll::ctl_fd(fd, Op::Add, ev).is_err() {
                code = 1;
                break;
            }
        }
        // SAFETY: leaving the forked child without running atexit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut got = 0;
    let mut timeouts = 0;
    while got < 4 && timeouts < 500 {
        match epoll_wait(&ep, Some(Duration::from_millis(40))).as_slice() {
            [] => {
                timeouts += 1;
                println!("timeout");
            }
            [(_, ev)] => {
                println!("GOT event {:x}", ev.bits());
                v.del(*ev).unwrap();
                got += 1;
                rustix::io::write(&ack_w, b"k").unwrap();
            }
            more => panic!("unexpected events {more:?}"),
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid);
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        println!("child ok");
    } else {
        println!("child status {status:#x}");
    }
    std::io::stdout().flush().unwrap();
}

/// Holds live vpoll fds watched by epoll (one thread blocked on them), then ends as told.
fn role_linger(how: &str) {
    let fds: Vec<VpollFd> = (0..50).map(|i| vpoll(combo(i % 64))).collect();
    let quiet = vpoll(Events::empty());
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).unwrap();
    for (i, v) in fds.iter().enumerate() {
        epoll::add(&ep, v, EventData::new_u64(i as u64), EventFlags::IN).unwrap();
    }
    let quiet_ep = epoll_on(quiet.as_fd(), 7, every_bit());
    std::thread::spawn(move || {
        // Blocks in epoll_wait on a vpoll fd that never becomes ready.
        loop {
            let _ = epoll_wait(&quiet_ep, None);
        }
    });
    let _ = epoll_wait(&ep, Some(Duration::ZERO));
    if how == "busy" {
        // Threads that keep the server busy, so exit most likely finds it mid-request.
        for v in &fds[..2] {
            let raw = v.as_raw_fd();
            std::thread::spawn(move || {
                // SAFETY: the fds are never closed (forgotten below) while the process lives.
                let fd = unsafe { BorrowedFd::borrow_raw(raw) };
                loop {
                    poll_now(fd);
                }
            });
        }
    }
    println!("READY");
    std::io::stdout().flush().unwrap();
    if how != "kill" {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
    } else {
        // Wait to be killed (the parent never writes).
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    }
    std::mem::forget(fds);
    std::mem::forget(quiet);
    std::mem::forget(ep);
    match how {
        "exit" | "busy" => std::process::exit(3),
        "panic" => panic!("deliberate panic with live vpoll fds"),
        _ => std::process::exit(4),
    }
}
