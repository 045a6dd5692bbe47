//! Helpers shared by the greenfd test suites (a dev-dependency only, never published).
//!
//! Every test crate of the workspace used to carry its own copy of these: re-running the
//! test binary as a child process, bounded waits, an epoll set on one fd, a private
//! network namespace, compiling a C program, finding a tool on `PATH`, the list of
//! vpoll backends usable on this machine, whether a FUSE route works for an unprivileged
//! user (or the system refuses it by policy), an engine running on its own thread, a
//! framing fed in arbitrary pieces. They live here once.
//!
//! Every wait is bounded: a bug fails the test with a message instead of hanging it.

pub use greenfd_engine::IoDriver;
use greenfd_engine::{
    Config, Engine, EngineError, EngineHandle, Framing, Handler, ParseState, split_frames,
};
use greenfd_vpoll::Backend;
use rustix::event::epoll;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Upper bound for any single wait in a test: a bug fails the test instead of hanging it.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Upper bound for a whole child process (see [`run_child`]).
pub const CHILD_PATIENCE: Duration = Duration::from_secs(120);

/// Environment variable that marks a re-executed test binary as the child `NAME`.
pub const CHILD_ENV: &str = "GREENFD_TEST_CHILD";

// ---------------------------------------------------------------------------------------
// Bounded waits.

/// Polls `cond` until it holds (a state another thread reaches on its own), panicking
/// with "timed out waiting for WHAT" after [`PATIENCE`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        // Polling a condition that has no fd to wait on; short, so tests stay quick.
        std::thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------------------------
// Programs and child processes.

/// Path of `tool` on `PATH`.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A fresh directory under the temp dir, readable and searchable by every user, holding
/// `files` (hard links where possible, else copies), for tests that run programs as
/// another user (uid 65534): the checkout may sit in a directory that user cannot enter
/// (e.g. under /root, mode 0700). The caller removes it with `std::fs::remove_dir_all`.
pub fn copies_for_any_user(files: &[&Path]) -> io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("greenfd-any-user.{}.{n}", std::process::id()));
    std::fs::create_dir(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
    for f in files {
        let name = f
            .file_name()
            .ok_or_else(|| io::Error::other(format!("{} has no file name", f.display())))?;
        let to = dir.join(name);
        if std::fs::hard_link(f, &to).is_err() {
            std::fs::copy(f, &to)?;
        }
        let mode = std::fs::metadata(&to)?.permissions().mode() | 0o444;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(dir)
}

/// Whether `tool` is on `PATH`; prints why the calling test skips if not.
pub fn have(tool: &str) -> bool {
    let found = which(tool).is_some();
    if !found {
        eprintln!("skipped: `{tool}` is not installed");
    }
    found
}

/// Runs `cmd` to completion with piped output; kills it and returns an error after
/// `timeout`, so a hang fails the caller instead of hanging it.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> io::Result<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Drain both pipes on threads so a chatty child never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        stdout.read_to_end(&mut v).map(|_| v)
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        stderr.read_to_end(&mut v).map(|_| v)
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            child.kill()?;
            child.wait()?;
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{cmd:?} did not finish within {timeout:?}"),
            ));
        }
        // Polling the exit status, not waiting for readiness: there is no fd to wait on
        // that also honours the deadline without a second thread.
        std::thread::sleep(Duration::from_millis(10));
    };
    let join = |t: std::thread::JoinHandle<io::Result<Vec<u8>>>| {
        t.join()
            .map_err(|_| io::Error::other("pipe reader panicked"))?
    };
    Ok(Output {
        status,
        stdout: join(out_t)?,
        stderr: join(err_t)?,
    })
}

/// [`run_with_timeout`] that panics if `cmd` cannot be spawned or outlives `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Output {
    run_with_timeout(cmd, timeout).unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Both output streams and the exit status of `out`, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that a self-checking program exited 0 and that its stdout ends with `ok`.
pub fn assert_ok(what: &str, out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("ok"),
        "{what}: {}",
        describe(out)
    );
}

/// Whether this process is the re-executed child `name` of [`child_command`].
pub fn is_child(name: &str) -> bool {
    std::env::var_os(CHILD_ENV).is_some_and(|v| v == name)
}

/// A command that re-runs this test binary's test `name` alone, as child `name` (its body
/// checks [`is_child`]). Faults that change the whole process (fd limits, signal
/// dispositions, the environment, aborted mounts) run there, away from the harness.
pub fn child_command(name: &str) -> io::Result<Command> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name);
    Ok(cmd)
}

/// Runs child `name` (see [`child_command`]) with `envs` added and returns its output,
/// whatever its exit status; panics if it outlives `timeout`.
pub fn child_output(name: &str, envs: &[(&str, &str)], timeout: Duration) -> Output {
    let mut cmd = child_command(name).expect("current_exe");
    cmd.envs(envs.iter().copied());
    run_with_timeout(&mut cmd, timeout).unwrap_or_else(|e| panic!("child {name}: {e}"))
}

/// Runs child `name` (see [`child_command`]) and returns its stdout; panics with its
/// whole output if it failed or outlived `timeout`.
pub fn run_child(name: &str, timeout: Duration) -> String {
    let out = child_output(name, &[], timeout);
    assert!(
        out.status.success(),
        "child {name} failed: {}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lines of a child's stdout that start with `tag` (the harness may print
/// `test NAME ... ` before the first one on the same line).
pub fn tagged_lines<'a>(stdout: &'a str, tag: &str) -> Vec<&'a str> {
    stdout
        .lines()
        .filter_map(|l| l.find(tag).map(|at| &l[at..]))
        .collect()
}

// ---------------------------------------------------------------------------------------
// C programs.

/// Compiles C source `src` into `exe` with `compiler -Wall -Werror`, then `args` (flags
/// and libraries) after the source; panics with the compiler's output on failure.
pub fn compile<A: AsRef<OsStr>>(
    compiler: &str,
    src: &Path,
    exe: &Path,
    args: impl IntoIterator<Item = A>,
) -> PathBuf {
    let out = run(
        Command::new(compiler)
            .args(["-Wall", "-Werror", "-o"])
            .arg(exe)
            .arg(src)
            .args(args),
        Duration::from_secs(240),
    );
    assert!(
        out.status.success(),
        "{compiler} {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    exe.to_owned()
}

// ---------------------------------------------------------------------------------------
// vpoll backends.

/// The backends of `candidates` that work here; prints why each other one is skipped.
fn usable(candidates: impl IntoIterator<Item = Backend>) -> Vec<Backend> {
    candidates
        .into_iter()
        .filter(|b| match b.probe() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("skipping backend {b}: {e}");
                false
            }
        })
        .collect()
}

/// Every vpoll backend available here; prints why each unavailable one is skipped.
pub fn backends() -> Vec<Backend> {
    usable(Backend::ALL)
}

/// The user-space vpoll backends (Fuse, Emulated) available here; prints why each
/// unavailable one is skipped.
pub fn user_space_backends() -> Vec<Backend> {
    usable([Backend::Fuse, Backend::Emulated])
}

// ---------------------------------------------------------------------------------------
// Unprivileged FUSE routes (uid 65534).

/// Why programs cannot be run here as uid/gid 65534 with FUSE, if they cannot: switching
/// users needs root and util-linux's `setpriv` and `unshare`, and `/dev/fuse` must be
/// mode 0666 as stock distributions ship it.
pub fn unprivileged_blocker() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root to switch to uid 65534".into());
    }
    for tool in ["setpriv", "unshare"] {
        if which(tool).is_none() {
            return Some(format!("{tool} (util-linux) is not installed"));
        }
    }
    match rustix::fs::stat("/dev/fuse") {
        Ok(st) if st.st_mode & 0o006 == 0o006 => None,
        Ok(st) => Some(format!(
            "/dev/fuse is mode {:04o}, not 0666 as stock distributions ship it \
             (.ci/setup sets it)",
            st.st_mode & 0o7777
        )),
        Err(e) => Some(format!("/dev/fuse: {e}")),
    }
}

/// Whether `why`, the reason the Fuse backend gave for not working, is the system
/// refusing the route by policy (rather than the route being broken): user namespaces
/// disabled or restricted (sysctl, AppArmor, a container's seccomp profile), a kernel
/// without FUSE in user namespaces, no `fusermount3`, a `fusermount3` without its setuid
/// bit or whose `mount(2)` the system forbids (a container without `CAP_SYS_ADMIN` in its
/// bounding set). Returns the reason to print, `None` for a breakage.
fn refusal_by_policy(why: &str) -> Option<String> {
    const POLICY: [&str; 5] = [
        "refused here",
        "disabled",
        "AppArmor",
        "not installed",
        "does not allow FUSE mounts in user namespaces",
    ];
    if POLICY.iter().any(|p| why.contains(p)) {
        return Some(why.to_owned());
    }
    if why.contains("the fusermount route") {
        use std::os::unix::fs::MetadataExt;
        let helper = which("fusermount3").or_else(|| {
            ["/usr/bin/fusermount3", "/bin/fusermount3"]
                .into_iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        });
        if let Some(helper) = helper {
            let setuid_root =
                std::fs::metadata(&helper).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o4000 != 0);
            if !setuid_root {
                return Some(format!("{why} ({} is not setuid root)", helper.display()));
            }
        }
        if why.contains("mount failed: Operation not permitted") {
            return Some(format!("{why} (the system forbids its mount(2))"));
        }
    }
    None
}

/// The answer of a route-check child (see [`unprivileged_route_refusal`]): probes the
/// Fuse backend on the route `GREENFD_VPOLL_FUSE_ROUTE` forces and prints `route ok`,
/// `route refused: WHY` (refused by policy) or `route broken: WHY`.
pub fn answer_route_check() {
    match Backend::Fuse.probe() {
        Ok(()) => println!("route ok"),
        Err(e) => match refusal_by_policy(&e.to_string()) {
            Some(why) => println!("route refused: {why}"),
            None => println!("route broken: {e}"),
        },
    }
}

/// Asks, as uid/gid 65534 without capabilities in a private mount namespace, whether
/// FUSE route `route` (`userns`, `fusermount`) works here: `None` if it does, `Some(WHY)`
/// if the system refuses it by policy (the caller skips, printing WHY). Panics if the route
/// is broken or the check does not answer: that is a failure, not a reason to skip.
///
/// The check is this test binary's test `check` run alone as a child (from a copy any
/// user can run); its body must call [`answer_route_check`] when [`is_child`]`(check)`.
/// The caller has checked [`unprivileged_blocker`] first.
#[track_caller]
pub fn unprivileged_route_refusal(route: &str, check: &str) -> Option<String> {
    let current = std::env::current_exe().expect("current_exe");
    let dir = copies_for_any_user(&[&current]).expect("a copy of the test binary");
    let exe = dir.join(current.file_name().expect("a file name"));
    let out = run_with_timeout(
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "setpriv"])
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe)
            .args(["--exact", check, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, check)
            .env(greenfd_vpoll::FUSE_ROUTE_ENV, route)
            .env_remove(greenfd_vpoll::BACKEND_ENV),
        CHILD_PATIENCE,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let out = out.unwrap_or_else(|e| panic!("the {route} route check as uid 65534: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let verdict = tagged_lines(&stdout, "route ").first().copied();
    match verdict {
        Some("route ok") if out.status.success() => None,
        Some(v) if out.status.success() && v.starts_with("route refused: ") => {
            Some(v["route refused: ".len()..].to_owned())
        }
        _ => panic!(
            "the {route} route does not work as uid 65534, and not by policy (check {check}): {}",
            describe(&out)
        ),
    }
}

// ---------------------------------------------------------------------------------------
// epoll.

/// A new epoll instance watching `fd` for `flags`, reporting it with token `data`.
pub fn epoll_on(fd: BorrowedFd<'_>, data: u64, flags: epoll::EventFlags) -> OwnedFd {
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC).expect("epoll_create");
    epoll::add(&ep, fd, epoll::EventData::new_u64(data), flags).expect("epoll_ctl ADD");
    ep
}

/// One `epoll_wait` on `ep` of at most `timeout`, retried on EINTR: (token, flags) of
/// each event reported (empty on timeout).
pub fn epoll_wait(ep: impl AsFd, timeout: Duration) -> Vec<(u64, epoll::EventFlags)> {
    let mut evs = Vec::with_capacity(64);
    let ts = rustix::time::Timespec::try_from(timeout).expect("timeout fits a timespec");
    loop {
        match epoll::wait(
            ep.as_fd(),
            rustix::buffer::spare_capacity(&mut evs),
            Some(&ts),
        ) {
            Ok(_) => return evs.iter().map(|e| (e.data.u64(), e.flags)).collect(),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("epoll_wait: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Network namespaces.

/// Moves the calling thread (only) into a fresh network namespace; `Err` says why not.
/// Processes it spawns (`ip`) and sockets it creates live there too; the namespace goes
/// away with the thread.
pub fn private_netns() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("needs root for a network namespace".into());
    }
    if !Path::new("/dev/net/tun").exists() {
        return Err("/dev/net/tun is missing".into());
    }
    if which("ip").is_none() {
        return Err("ip(8) is not installed (apt-get install iproute2)".into());
    }
    // SAFETY: only CLONE_NEWNET: it changes this thread's network namespace and shares
    // nothing less (no fd table or fs-state split that other threads could observe).
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
        .map_err(|e| format!("unshare(CLONE_NEWNET): {e}"))
}

/// Runs `ip ARGS` (in the calling thread's namespace) and checks it worked.
pub fn ip(args: &[&str]) {
    let out = run(Command::new("ip").args(args), PATIENCE);
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// Signal storms.

/// Installs `handler` for `SIGALRM` without `SA_RESTART`, so blocking syscalls it
/// interrupts fail with EINTR (the handler must be async-signal-safe).
pub fn on_alarm_without_restart(handler: extern "C" fn(libc::c_int)) {
    // SAFETY: sigaction is plain data, zero-initialised and then filled in; the handler
    // has the signature the kernel calls (no SA_SIGINFO).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as *const () as usize;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut()),
            0,
            "sigaction: {}",
            io::Error::last_os_error()
        );
    }
}

/// A POSIX timer that sends `SIGALRM` to the thread that started it, every interval;
/// deleted on drop.
///
/// Why not `setitimer`: its SIGALRM is process-directed, and the kernel hands such a
/// signal to the main thread whenever that thread does not block it; the test harness's
/// main thread (which a test cannot reach) would take the whole storm. A POSIX timer with
/// `SIGEV_THREAD_ID` aims the same signal, at the same rate, at the thread under test.
pub struct ThreadAlarm(libc::timer_t);

impl ThreadAlarm {
    /// Starts sending `SIGALRM` to the calling thread every `interval` (under a second).
    pub fn start(interval: Duration) -> ThreadAlarm {
        let tick = libc::timespec {
            tv_sec: interval.as_secs() as libc::time_t,
            tv_nsec: interval.subsec_nanos() as libc::c_long,
        };
        // SAFETY: sigevent and itimerspec are plain data, fully initialised here;
        // timer_create writes the new timer's id into `timer`, which timer_settime uses.
        unsafe {
            let mut sev: libc::sigevent = std::mem::zeroed();
            sev.sigev_notify = libc::SIGEV_THREAD_ID;
            sev.sigev_signo = libc::SIGALRM;
            sev.sigev_notify_thread_id = libc::gettid();
            let mut timer: libc::timer_t = std::mem::zeroed();
            assert_eq!(
                libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer),
                0,
                "timer_create: {}",
                io::Error::last_os_error()
            );
            let alarm = ThreadAlarm(timer);
            let spec = libc::itimerspec {
                it_interval: tick,
                it_value: tick,
            };
            assert_eq!(
                libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()),
                0,
                "timer_settime: {}",
                io::Error::last_os_error()
            );
            alarm
        }
    }
}

impl Drop for ThreadAlarm {
    fn drop(&mut self) {
        // SAFETY: a timer this value created and nobody else deletes.
        unsafe { libc::timer_delete(self.0) };
    }
}

// ---------------------------------------------------------------------------------------
// Descriptor exhaustion.

/// Opens `/dev/null` until this process hits EMFILE and returns the files: every fd
/// slot is then taken until some of them are dropped. Use it under a lowered
/// `RLIMIT_NOFILE`, in a child process (see [`run_child`]).
pub fn exhaust_fds() -> Vec<std::fs::File> {
    let mut hog = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => return hog,
            Err(e) => panic!("open /dev/null: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// A running engine.

/// An engine serving a free loopback port on its own thread; shut down and joined on
/// [`Running::stop`] or drop.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its cross-thread handle.
    pub handle: EngineHandle,
    /// The reactor thread (taken by `stop` or drop).
    pub thread: Option<JoinHandle<Result<(), EngineError>>>,
}

impl Running {
    /// Binds an engine with `config` on a free loopback port and runs it on a new thread.
    pub fn start<F, H>(framing: F, handler: H, config: Config) -> Running
    where
        F: Framing + 'static,
        H: Handler + Send + 'static,
    {
        let asked = config.io;
        let engine = Engine::bind_with(
            "127.0.0.1:0".parse().expect("a socket address"),
            framing,
            handler,
            config,
        )
        .expect("bind an engine on loopback");
        if asked != IoDriver::Auto {
            assert_eq!(
                engine.io_driver(),
                asked,
                "the engine runs on the driver asked for"
            );
        }
        Running {
            addr: engine.local_addr(),
            handle: engine.handle(),
            thread: Some(std::thread::spawn(move || engine.run())),
        }
    }

    /// A client connection with [`PATIENCE`] timeouts and Nagle off.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect to the engine");
        s.set_read_timeout(Some(PATIENCE)).expect("read timeout");
        s.set_write_timeout(Some(PATIENCE)).expect("write timeout");
        s.set_nodelay(true).expect("TCP_NODELAY");
        s
    }

    /// Shuts the engine down and checks that it ended cleanly.
    pub fn stop(mut self) {
        self.handle.shutdown();
        let t = self.thread.take().expect("the engine thread");
        t.join()
            .expect("engine thread panicked")
            .expect("engine failed");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.handle.shutdown();
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Framings fed in pieces.

/// Feeds `stream` to `framing` in pieces cut at `cuts` (each taken modulo the stream's
/// length plus one, so any `usize` is a valid cut), as the engine does: leftover bytes
/// stay with their parse state and new bytes are appended. Returns each frame's parts,
/// in order; panics if a piece is rejected or bytes are left over at the end.
pub fn reassemble_frames<F: Framing>(
    framing: &F,
    stream: &[u8],
    cuts: &[usize],
) -> Vec<Vec<Vec<u8>>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(stream.len());
    points.sort_unstable();
    let mut pending = Vec::new();
    let mut state = ParseState::default();
    let mut frames = Vec::new();
    let mut from = 0;
    for to in points {
        pending.extend_from_slice(&stream[from..to]);
        from = to;
        let used = split_frames(framing, &mut state, &pending, |f| {
            frames.push(f.parts().map(<[u8]>::to_vec).collect());
            true
        })
        .unwrap_or_else(|e| panic!("framing rejected the stream: {e}"));
        pending.drain(..used);
    }
    assert!(pending.is_empty(), "leftover bytes: {pending:?}");
    frames
}

// ---------------------------------------------------------------------------------------
// Engine I/O drivers.

/// Environment variable that tells a child process (see [`child_output`]) which I/O
/// driver its engines run on.
pub const IO_ENV: &str = "GREENFD_TEST_IO";

/// The default engine configuration, on I/O driver `io`.
pub fn config_on(io: IoDriver) -> Config {
    Config {
        io,
        ..Config::default()
    }
}

/// The driver a child process runs its engines on ([`IO_ENV`]; `auto` when unset).
pub fn child_io() -> IoDriver {
    std::env::var(IO_ENV).map_or(IoDriver::Auto, |name| {
        name.parse().unwrap_or_else(|e| panic!("{IO_ENV}: {e}"))
    })
}

/// Whether engines can run on `io` here; prints why the calling test skips if not.
pub fn driver_available(io: IoDriver) -> bool {
    match io {
        IoDriver::Uring => match IoDriver::uring_support() {
            Ok(()) => true,
            Err(why) => {
                eprintln!("skipped: io_uring unavailable: {why}");
                false
            }
        },
        IoDriver::Epoll | IoDriver::Auto => true,
    }
}

/// [`run_child`] with the child's engines on driver `io` (see [`child_io`]).
pub fn run_child_on(name: &str, io: IoDriver, timeout: Duration) -> String {
    let out = child_output(name, &[(IO_ENV, io.as_str())], timeout);
    assert!(
        out.status.success(),
        "child {name} ({io}) failed: {}",
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// For each test function `name(io: IoDriver)`, declares the tests `name::epoll` and
/// `name::uring`, so one test body covers both engine I/O drivers; the io_uring one
/// skips, with the reason printed, on a kernel without io_uring.
#[macro_export]
macro_rules! on_both_drivers {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn epoll() {
                super::$name($crate::IoDriver::Epoll);
            }

            #[test]
            fn uring() {
                if $crate::driver_available($crate::IoDriver::Uring) {
                    super::$name($crate::IoDriver::Uring);
                }
            }
        }
    )*};
}

/// Whether the server closed `s`: EOF, or a reset because it closed with unread input;
/// panics on any other error (a timeout means it did not close).
pub fn is_closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
            Err(e) => panic!("expected the server to close the connection: {e}"),
        }
    }
}

/// A `sh -c` script (run it inside `unshare -m --propagation private`) that replaces
/// `/dev/fuse`, in that private mount namespace only, by a copy of the node at mode 0600
/// on a private tmpfs, then runs its arguments as uid/gid 65534: a user with no FUSE
/// route, while the real node and every other test stay untouched.
pub const UNPRIVILEGED_WITHOUT_DEV_FUSE: &str = r#"set -e
d=$(mktemp -d)
mount -t tmpfs -o mode=0755 greenfd-test "$d"
mknod -m 0600 "$d/fuse" c 10 229
mount --bind "$d/fuse" /dev/fuse
exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
"#;
