//! The C ABI as a C programmer meets it: `scripts/install-capi.sh` installs the library, once
//! per test run, into a prefix of that run's own, C programs from `tests/c/` compile with
//! `cc prog.c $(pkg-config --cflags --libs vpoll)` (and once against `libvpoll.a`), and run.
//!
//! The install builds in its own target dir (`$CARGO_TARGET_TMPDIR/capi-build`): a nested
//! cargo on the outer `cargo test`'s target dir would wait on its build lock.

use greenfd_vpoll::Backend;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use greenfd_test_support::{
    answer_route_check, assert_ok, is_child, run, unprivileged_blocker, unprivileged_route_refusal,
    user_space_backends, which,
};

/// The safety net for every program run here: a bug fails the test instead of hanging it.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The interval of the fork scenario (the reference uses 3000 ms).
const INTERVAL_MS: &str = "150";

/// The outcome of the one install all tests share.
enum Install {
    /// Installed under this prefix.
    Done(PathBuf),
    /// A tool the tests need is missing: they skip with this reason.
    Skip(String),
    /// The install script failed: every test fails with this message.
    Failed(String),
}

/// The prefixes of earlier runs whose process is gone (`capi-prefix.PID`) under `tmp`.
fn stale_prefixes(tmp: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name();
            let pid = name.to_str().and_then(|n| n.strip_prefix("capi-prefix."));
            pid.and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists())
        })
        .map(|e| e.path())
        .collect()
}

/// Installs the library once per test run (the first test to ask does it), into a prefix
/// of this run's own: a test binary running at the same time (another `cargo test` in the
/// same checkout) neither removes nor overwrites files this one uses.
fn install() -> &'static Install {
    static INSTALL: OnceLock<Install> = OnceLock::new();
    INSTALL.get_or_init(|| {
        for tool in ["cc", "pkg-config", "bash", "readelf", "nm"] {
            if which(tool).is_none() {
                return Install::Skip(format!("`{tool}` is not installed"));
            }
        }
        let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        for stale in stale_prefixes(&tmp) {
            let _ = std::fs::remove_dir_all(stale);
        }
        let prefix = tmp.join(format!("capi-prefix.{}", std::process::id()));
        // A stale install must not make a broken build look good.
        let _ = std::fs::remove_dir_all(&prefix);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-capi.sh");
        let out = run(
            Command::new("bash")
                .arg(script)
                .arg("--prefix")
                .arg(&prefix)
                .env("CARGO_TARGET_DIR", tmp.join("capi-build"))
                .env("CARGO", option_env!("CARGO").unwrap_or("cargo")),
            Duration::from_secs(900),
        );
        if out.status.success() {
            Install::Done(prefix)
        } else {
            Install::Failed(format!(
                "install-capi.sh failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    })
}

/// The installed prefix, or `None` after printing why the test skips; panics if the
/// install failed.
fn prefix_or_skip(test: &str) -> Option<&'static Path> {
    match install() {
        Install::Done(p) => Some(p),
        Install::Skip(why) => {
            eprintln!("skipping {test}: {why}");
            None
        }
        Install::Failed(msg) => panic!("{msg}"),
    }
}

/// Whether `backend` works here; prints why the test skips if not.
fn backend_or_skip(test: &str, backend: Backend) -> bool {
    match backend.probe() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipping {test}: {e}");
            false
        }
    }
}

/// `pkg-config ARGS vpoll` against the installed `vpoll.pc`, split into words.
fn pkg_config(prefix: &Path, args: &[&str]) -> Vec<String> {
    let out = run(
        Command::new("pkg-config")
            .args(args)
            .arg("vpoll")
            .env("PKG_CONFIG_PATH", prefix.join("lib/pkgconfig")),
        RUN_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "pkg-config {args:?} vpoll: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("pkg-config prints UTF-8")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// How a test program links libvpoll.
#[derive(Clone, Copy, PartialEq)]
enum Link {
    /// `$(pkg-config --cflags --libs vpoll)`: against `libvpoll.so`.
    Shared,
    /// `libvpoll.a` plus the `Libs.private` of `vpoll.pc`.
    Static,
}

/// Compiles `tests/c/NAME` with `compiler` and returns the executable's path.
fn build_program(prefix: &Path, compiler: &str, name: &str, link: Link) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/c")
        .join(name);
    // Tests run in parallel and may build the same source: one executable per build, so
    // none runs a file another is still writing.
    static BUILDS: AtomicUsize = AtomicUsize::new(0);
    let n = BUILDS.fetch_add(1, Ordering::Relaxed);
    let suffix = if link == Link::Static { "-static" } else { "" };
    let exe = prefix.join(format!("{name}{suffix}.{n}.bin"));
    let words = |args: &[&str]| pkg_config(prefix, args).into_iter().map(OsString::from);
    let args: Vec<OsString> = match link {
        Link::Shared => words(&["--cflags", "--libs"]).collect(),
        Link::Static => words(&["--cflags"])
            .chain([prefix.join("lib/libvpoll.a").into_os_string()])
            .chain(words(&["--variable=libs_private"]))
            .collect(),
    };
    greenfd_test_support::compile(compiler, &src, &exe, args)
}

/// Runs a compiled program with the installed library on its load path.
fn run_program(prefix: &Path, exe: &Path, args: &[&str], backend: Option<Backend>) -> Output {
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .env("LD_LIBRARY_PATH", prefix.join("lib"))
        .env_remove(greenfd_vpoll::BACKEND_ENV);
    if let Some(b) = backend {
        cmd.env(greenfd_vpoll::BACKEND_ENV, b.name());
    }
    run(&mut cmd, RUN_TIMEOUT)
}

/// The dynamic section of an ELF file, as `readelf -d` prints it.
fn readelf_dynamic(file: &Path) -> String {
    let out = run(Command::new("readelf").arg("-d").arg(file), RUN_TIMEOUT);
    assert!(out.status.success(), "readelf -d {}", file.display());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Checks the fork scenario's output: only `timeout` and `GOT event %x` lines, and the GOT
/// lines are exactly IN, IN, OUT, then `last` (the HUP as the backend reports it). The number
/// of `timeout` lines depends on scheduling, so it is not asserted.
fn assert_fork_scenario(out: &Output, last: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let context = || {
        format!(
            "{}\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    };
    assert!(out.status.success(), "fork scenario failed: {}", context());
    let lines: Vec<&str> = stdout.lines().collect();
    for l in &lines {
        assert!(
            *l == "timeout" || l.starts_with("GOT event "),
            "unexpected line {l:?}: {}",
            context()
        );
    }
    let got: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("GOT event "))
        .collect();
    assert_eq!(got, ["1", "1", "4", last], "{}", context());
    assert_eq!(lines.last(), Some(&format!("GOT event {last}").as_str()));
    assert!(
        lines.contains(&"timeout"),
        "the parent never timed out between events: {}",
        context()
    );
}

#[test]
fn installs_header_libraries_and_pkg_config() {
    let Some(prefix) = prefix_or_skip("installs_header_libraries_and_pkg_config") else {
        return;
    };
    let header = std::fs::read_to_string(prefix.join("include/vpoll.h")).expect("vpoll.h");
    for needle in [
        "#define VPOLL_CTL_ADDEVENTS 1",
        "#define VPOLL_CTL_DELEVENTS 2",
        "#define VPOLL_CTL_SETEVENTS 3",
        "int vpoll_create(uint32_t init_events, int flags);",
        "int vpoll_ctl(int fd, int op, uint32_t events);",
        "int vpoll_close(int fd);",
        "#ifndef VPOLLEMU_H",
        "extern \"C\"",
    ] {
        assert!(
            header.contains(needle),
            "vpoll.h lacks {needle:?}:\n{header}"
        );
    }
    let link = std::fs::read_link(prefix.join("lib/libvpoll.so")).expect("libvpoll.so link");
    assert_eq!(link, Path::new("libvpoll.so.0"));
    assert!(prefix.join("lib/libvpoll.a").is_file());
    let dynamic = readelf_dynamic(&prefix.join("lib/libvpoll.so.0"));
    assert!(
        dynamic.contains("Library soname: [libvpoll.so.0]"),
        "no SONAME libvpoll.so.0:\n{dynamic}"
    );
    // The shared library exports libvpoll's three functions and nothing else.
    let nm = run(
        Command::new("nm")
            .args(["-D", "--defined-only", "--format=just-symbols"])
            .arg(prefix.join("lib/libvpoll.so.0")),
        RUN_TIMEOUT,
    );
    assert!(
        nm.status.success(),
        "nm -D: {}",
        String::from_utf8_lossy(&nm.stderr)
    );
    let mut exported: Vec<String> = String::from_utf8_lossy(&nm.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    exported.sort();
    assert_eq!(exported, ["vpoll_close", "vpoll_create", "vpoll_ctl"]);
    let flags = pkg_config(prefix, &["--cflags", "--libs"]);
    assert_eq!(
        flags,
        [
            format!("-I{}", prefix.join("include").display()),
            format!("-L{}", prefix.join("lib").display()),
            "-lvpoll".to_owned()
        ]
    );
    assert_eq!(
        pkg_config(prefix, &["--variable=prefix"]),
        [prefix.display().to_string()]
    );
    // A static link needs the Rust runtime's system libraries, at least libc.
    let private = pkg_config(prefix, &["--variable=libs_private"]);
    assert!(private.iter().any(|l| l == "-lc"), "{private:?}");
    let static_flags = pkg_config(prefix, &["--static", "--libs"]);
    for l in &private {
        assert!(
            static_flags.contains(l),
            "{l} missing from {static_flags:?}"
        );
    }
}

#[test]
fn create_ctl_close_seen_by_epoll_and_poll() {
    let Some(prefix) = prefix_or_skip("create_ctl_close_seen_by_epoll_and_poll") else {
        return;
    };
    let exe = build_program(prefix, "cc", "basic.c", Link::Shared);
    let backends = user_space_backends();
    if backends.is_empty() {
        eprintln!("skipping create_ctl_close_seen_by_epoll_and_poll: no fuse or emulated backend");
        return;
    }
    for b in backends {
        assert_ok(
            &format!("basic.c with {b}"),
            &run_program(prefix, &exe, &[], Some(b)),
        );
    }
}

#[test]
fn errno_parity() {
    let Some(prefix) = prefix_or_skip("errno_parity") else {
        return;
    };
    let exe = build_program(prefix, "cc", "errno.c", Link::Shared);
    let backends = user_space_backends();
    if backends.is_empty() {
        eprintln!("skipping errno_parity: no fuse or emulated backend");
        return;
    }
    for b in backends {
        assert_ok(
            &format!("errno.c with {b}"),
            &run_program(prefix, &exe, &[], Some(b)),
        );
    }
}

#[test]
fn fork_scenario_emulated_reports_hup_as_2011() {
    let test = "fork_scenario_emulated_reports_hup_as_2011";
    let Some(prefix) = prefix_or_skip(test) else {
        return;
    };
    if !backend_or_skip(test, Backend::Emulated) {
        return;
    }
    let exe = build_program(prefix, "cc", "fork_demo.c", Link::Shared);
    let out = run_program(prefix, &exe, &[INTERVAL_MS], Some(Backend::Emulated));
    // The emulator's documented mapping: a hang-up reads as EPOLLHUP|EPOLLIN|EPOLLRDHUP.
    assert_fork_scenario(&out, "2011");
}

#[test]
fn fork_scenario_fuse_reports_hup_exactly() {
    let test = "fork_scenario_fuse_reports_hup_exactly";
    let Some(prefix) = prefix_or_skip(test) else {
        return;
    };
    if !backend_or_skip(test, Backend::Fuse) {
        return;
    }
    let exe = build_program(prefix, "cc", "fork_demo.c", Link::Shared);
    let out = run_program(prefix, &exe, &[INTERVAL_MS], Some(Backend::Fuse));
    // What a kernel with vpoll support prints.
    assert_fork_scenario(&out, "10");
}

#[test]
fn forked_child_closing_its_copy_leaves_the_parent_fd_working() {
    let test = "forked_child_closing_its_copy_leaves_the_parent_fd_working";
    let Some(prefix) = prefix_or_skip(test) else {
        return;
    };
    let exe = build_program(prefix, "cc", "child_close.c", Link::Shared);
    let backends = user_space_backends();
    if backends.is_empty() {
        eprintln!("skipping {test}: no fuse or emulated backend");
        return;
    }
    for b in backends {
        assert_ok(
            &format!("child_close.c with {b}"),
            &run_program(prefix, &exe, &[], Some(b)),
        );
    }
}

#[test]
fn fuse_fd_survives_exec_and_stays_controllable() {
    let test = "fuse_fd_survives_exec_and_stays_controllable";
    let Some(prefix) = prefix_or_skip(test) else {
        return;
    };
    if !backend_or_skip(test, Backend::Fuse) {
        return;
    }
    // libvpoll's kernel and device fds keep working in a new program image; so must the
    // Fuse backend's (the emulated one, like libvpoll's emulator, keeps its peer private).
    let exe = build_program(prefix, "cc", "exec_child.c", Link::Shared);
    assert_ok(
        "exec_child.c with fuse",
        &run_program(prefix, &exe, &[], Some(Backend::Fuse)),
    );
}

#[test]
fn static_link_runs_without_the_shared_library() {
    let test = "static_link_runs_without_the_shared_library";
    let Some(prefix) = prefix_or_skip(test) else {
        return;
    };
    let exe = build_program(prefix, "cc", "basic.c", Link::Static);
    let dynamic = readelf_dynamic(&exe);
    assert!(
        !dynamic.contains("libvpoll"),
        "statically linked program still needs libvpoll.so:\n{dynamic}"
    );
    let Some(b) = user_space_backends().into_iter().next() else {
        eprintln!("skipping the run in {test}: no fuse or emulated backend");
        return;
    };
    // No LD_LIBRARY_PATH: the library is inside the executable.
    let out = run(
        Command::new(&exe).env(greenfd_vpoll::BACKEND_ENV, b.name()),
        RUN_TIMEOUT,
    );
    assert_ok(&format!("static basic.c with {b}"), &out);
}

#[test]
fn header_works_from_cxx() {
    let test = "header_works_from_cxx";
    let Some(prefix) = prefix_or_skip(test) else {
        return;
    };
    if which("c++").is_none() {
        eprintln!("skipping {test}: `c++` is not installed");
        return;
    }
    let exe = build_program(prefix, "c++", "cxx_header.cpp", Link::Shared);
    if user_space_backends().is_empty() {
        eprintln!("skipping the run in {test}: no fuse or emulated backend");
        return;
    }
    assert_ok("cxx_header.cpp", &run_program(prefix, &exe, &[], None));
}

/// The installed manual pages.
const MAN_PAGES: [&str; 4] = ["vpoll", "vpoll_create", "vpoll_ctl", "vpoll_close"];

#[test]
fn installs_lean_stripped_libraries() {
    let Some(prefix) = prefix_or_skip("installs_lean_stripped_libraries") else {
        return;
    };
    let so = prefix.join("lib/libvpoll.so.0");
    let size = std::fs::metadata(&so).unwrap().len();
    assert!(
        size <= 1 << 20,
        "libvpoll.so.0 is {size} bytes, more than 1 MiB"
    );
    for lib in ["lib/libvpoll.so.0", "lib/libvpoll.a"] {
        let out = run(
            Command::new("readelf")
                .arg("-S")
                .arg("-W")
                .arg(prefix.join(lib)),
            RUN_TIMEOUT,
        );
        assert!(out.status.success(), "readelf -S {lib}");
        let sections = String::from_utf8_lossy(&out.stdout);
        assert!(
            !sections.contains(".debug_"),
            "{lib} still has debug sections"
        );
    }
    // Stripping keeps what linking needs: the archive's symbol index and the three functions.
    let nm = run(
        Command::new("nm")
            .args(["--defined-only", "--format=just-symbols"])
            .arg(prefix.join("lib/libvpoll.a")),
        RUN_TIMEOUT,
    );
    let symbols = String::from_utf8_lossy(&nm.stdout);
    for f in ["vpoll_create", "vpoll_ctl", "vpoll_close"] {
        assert!(symbols.lines().any(|l| l == f), "libvpoll.a lacks {f}");
    }
}

#[test]
fn man_pages_are_installed_and_render_without_warnings() {
    let test = "man_pages_are_installed_and_render_without_warnings";
    let Some(prefix) = prefix_or_skip(test) else {
        return;
    };
    let pages: Vec<PathBuf> = MAN_PAGES
        .iter()
        .map(|p| prefix.join(format!("share/man/man3/{p}.3")))
        .collect();
    for p in &pages {
        let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(text.starts_with(".TH "), "{}", p.display());
    }
    let overview = std::fs::read_to_string(&pages[0]).unwrap();
    for needle in [
        "GREENFD_VPOLL_BACKEND",
        "GREENFD_VPOLL_FUSE_ROUTE",
        "userns",
        "fusermount",
        "fork",
        "0x2011",
    ] {
        assert!(overview.contains(needle), "vpoll.3 lacks {needle:?}");
    }
    if which("groff").is_none() {
        eprintln!("skipping the rendering half of {test}: groff is not installed");
        return;
    }
    for p in &pages {
        let out = run(
            Command::new("groff")
                .args(["-ww", "-man", "-Tutf8", "-z"])
                .arg(p),
            RUN_TIMEOUT,
        );
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "groff -ww {}: {}",
            p.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        if which("man").is_some() {
            // man(1) runs the whole pipeline (preconv, tbl, groff) with its own checks.
            let out = run(
                Command::new("man")
                    .args(["--warnings", "-l"])
                    .arg(p)
                    .env("MANPAGER", "cat")
                    .env("LC_ALL", "C")
                    .env("MANWIDTH", "80"),
                RUN_TIMEOUT,
            );
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "man --warnings -l {}: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("NAME"));
        }
    }
}

#[test]
fn every_bit_is_exact_through_the_c_abi_on_fuse() {
    let test = "every_bit_is_exact_through_the_c_abi_on_fuse";
    let Some(prefix) = prefix_or_skip(test) else {
        return;
    };
    if !backend_or_skip(test, Backend::Fuse) {
        return;
    }
    let exe = build_program(prefix, "cc", "bits.c", Link::Shared);
    let out = run_program(prefix, &exe, &[], Some(Backend::Fuse));
    assert_failures_zero("bits.c with fuse", &out);
}

/// Asserts a counting program printed `failures: 0` and exited 0.
fn assert_failures_zero(what: &str, out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.lines().any(|l| l == "failures: 0"),
        "{what}: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
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

/// Runs a compiled program as uid/gid 65534 (no capabilities), in a private mount
/// namespace, with the Fuse backend and FUSE `route` forced.
fn run_unprivileged(prefix: &Path, exe: &Path, args: &[&str], route: &str) -> Output {
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "setpriv"])
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .env(greenfd_vpoll::BACKEND_ENV, "fuse")
        .env(greenfd_vpoll::FUSE_ROUTE_ENV, route);
    run_as_any_user(prefix, exe, args, &mut cmd)
}

/// Runs `exe ARGS` through `wrapper` (which switches to another user), from copies of the
/// program and the library that any user can read (the checkout may be private).
fn run_as_any_user(prefix: &Path, exe: &Path, args: &[&str], wrapper: &mut Command) -> Output {
    let lib = prefix.join("lib/libvpoll.so.0");
    let dir = greenfd_test_support::copies_for_any_user(&[exe, &lib]).expect("copies");
    let out = run(
        wrapper
            .arg(dir.join(exe.file_name().expect("a file")))
            .args(args)
            .env("LD_LIBRARY_PATH", &dir),
        RUN_TIMEOUT,
    );
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn unprivileged_c_programs_get_exact_bits_on_every_route() {
    let test = "unprivileged_c_programs_get_exact_bits_on_every_route";
    let Some(prefix) = prefix_or_skip(test) else {
        return;
    };
    if let Some(why) = unprivileged_blocker() {
        eprintln!("skipping {test}: {why}");
        return;
    }
    let bits = build_program(prefix, "cc", "bits.c", Link::Shared);
    let errno = build_program(prefix, "cc", "errno.c", Link::Shared);
    let basic = build_program(prefix, "cc", "basic.c", Link::Shared);
    let fork = build_program(prefix, "cc", "fork_demo.c", Link::Shared);
    let child_close = build_program(prefix, "cc", "child_close.c", Link::Shared);
    let exec_child = build_program(prefix, "cc", "exec_child.c", Link::Shared);
    for route in ["userns", "fusermount"] {
        // A system that refuses the route by policy skips it; a broken route fails.
        if let Some(why) = unprivileged_route_refusal(route, ROUTE_CHECK) {
            eprintln!("skipping route {route} in {test}: refused here: {why}");
            continue;
        }
        let w = |name: &str| format!("{name} as uid 65534 on route {route}");
        assert_failures_zero(&w("bits.c"), &run_unprivileged(prefix, &bits, &[], route));
        assert_ok(&w("errno.c"), &run_unprivileged(prefix, &errno, &[], route));
        assert_ok(&w("basic.c"), &run_unprivileged(prefix, &basic, &[], route));
        assert_ok(
            &w("child_close.c"),
            &run_unprivileged(prefix, &child_close, &[], route),
        );
        assert_ok(
            &w("exec_child.c"),
            &run_unprivileged(prefix, &exec_child, &[], route),
        );
        // libvpoll's reference scenario ends with the exact hang-up, as on a vpoll kernel.
        let out = run_unprivileged(prefix, &fork, &[INTERVAL_MS], route);
        assert_fork_scenario(&out, "10");
    }
}

#[test]
fn unprivileged_without_dev_fuse_vpoll_create_falls_back_to_the_emulator() {
    let test = "unprivileged_without_dev_fuse_vpoll_create_falls_back_to_the_emulator";
    let Some(prefix) = prefix_or_skip(test) else {
        return;
    };
    if let Some(why) = unprivileged_blocker() {
        eprintln!("skipping {test}: {why}");
        return;
    }
    let fork = build_program(prefix, "cc", "fork_demo.c", Link::Shared);
    // /dev/fuse becomes, in a private mount namespace only, a copy of the node at mode
    // 0600 on a private tmpfs; the real node and other tests are untouched.
    let script = greenfd_test_support::UNPRIVILEGED_WITHOUT_DEV_FUSE;
    let out = run_as_any_user(
        prefix,
        &fork,
        &[INTERVAL_MS],
        Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
            .env_remove(greenfd_vpoll::BACKEND_ENV)
            .env_remove(greenfd_vpoll::FUSE_ROUTE_ENV),
    );
    // No FUSE route: automatic choice is the emulator, with its documented hang-up.
    assert_fork_scenario(&out, "2011");
}

/// The system calls of a `strace -f` log made between the two `MARK` writes,
/// by the traced program's main thread only (the first pid in the log), as (name, count).
fn main_thread_calls_between_marks(log: &str) -> Vec<(String, usize)> {
    let main = log
        .lines()
        .find_map(|l| l.split_whitespace().next())
        .unwrap_or_default()
        .to_owned();
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut inside = false;
    for line in log.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some(main.as_str()) {
            continue;
        }
        let rest = line[main.len()..].trim_start();
        if rest.starts_with("write(2, \"MARK") {
            if inside {
                break;
            }
            inside = true;
            continue;
        }
        if !inside || rest.starts_with("<...") || rest.starts_with("+++") || rest.starts_with("---")
        {
            continue;
        }
        let name = rest.split('(').next().unwrap_or_default().to_owned();
        *counts.entry(name).or_default() += 1;
    }
    counts.into_iter().collect()
}

#[test]
fn vpoll_ctl_makes_at_most_one_system_call_besides_the_work() {
    let test = "vpoll_ctl_makes_at_most_one_system_call_besides_the_work";
    let Some(prefix) = prefix_or_skip(test) else {
        return;
    };
    if which("strace").is_none() {
        eprintln!("skipping {test}: strace is not installed");
        return;
    }
    const CYCLES: usize = 200;
    let exe = build_program(prefix, "cc", "ctl_cost.c", Link::Shared);
    for b in user_space_backends() {
        let log = prefix.join(format!("ctl_cost.{b}.{}.strace", std::process::id()));
        let mut cmd = Command::new("strace");
        cmd.args(["-f", "-o"])
            .arg(&log)
            .arg(&exe)
            .arg(CYCLES.to_string())
            .env("LD_LIBRARY_PATH", prefix.join("lib"))
            .env(greenfd_vpoll::BACKEND_ENV, b.name());
        let out = run(&mut cmd, RUN_TIMEOUT);
        assert_ok(&format!("ctl_cost.c with {b} under strace"), &out);
        let calls = main_thread_calls_between_marks(&std::fs::read_to_string(&log).unwrap());
        let _ = std::fs::remove_file(&log);
        let count = |name: &str| calls.iter().find(|(n, _)| n == name).map_or(0, |c| c.1);
        let total: usize = calls.iter().map(|c| c.1).sum();
        assert_eq!(count("epoll_wait"), CYCLES, "{b}: {calls:?}");
        // Two vpoll_ctl calls per cycle, each at most two system calls (identification
        // plus the work); nothing else (no fcntl F_GETFD, no second identification).
        let per_ctl = (total - CYCLES) as f64 / (2 * CYCLES) as f64;
        assert!(
            per_ctl <= 2.0,
            "{b}: {per_ctl} system calls per vpoll_ctl: {calls:?}"
        );
        assert_eq!(count("fcntl"), 0, "{b}: {calls:?}");
        match b {
            // getsockopt(SO_COOKIE) to recognise the fd, send/recv to do the work.
            Backend::Emulated => {
                assert_eq!(count("getsockopt"), 2 * CYCLES, "{calls:?}");
                assert_eq!(count("sendto") + count("recvfrom"), 2 * CYCLES, "{calls:?}");
            }
            // fstat to recognise the fd; ADD writes one wake-up, DEL (mask empty) none.
            Backend::Fuse => {
                let stats = count("fstat") + count("newfstatat") + count("statx");
                assert_eq!(stats, 2 * CYCLES, "{calls:?}");
                assert_eq!(count("write"), CYCLES, "{calls:?}");
            }
            _ => {}
        }
    }
}
