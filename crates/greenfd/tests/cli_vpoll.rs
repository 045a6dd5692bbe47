//! `greenfd probe` and `greenfd demo` as a user runs them: the real binary, real forks,
//! real backends.

use greenfd_vpoll::{BACKEND_ENV, Backend, FUSE_ROUTE_ENV, FuseRoute};
use std::process::{Command, Output};
use std::time::Duration;

use greenfd_test_support::{
    answer_route_check, describe, is_child, unprivileged_blocker, unprivileged_route_refusal,
};

/// Safety net for every run: a hang fails the test instead of blocking the suite.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The `greenfd` binary with a clean backend environment.
fn greenfd() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_greenfd"));
    cmd.env_remove(BACKEND_ENV).env_remove("RUST_LOG");
    cmd
}

/// Runs `cmd` to completion with piped output, killing it after [`RUN_TIMEOUT`].
fn run(cmd: &mut Command) -> Output {
    greenfd_test_support::run(cmd, RUN_TIMEOUT)
}

/// The reference output of the fork scenario, with `hup` as the last event.
fn expected_demo_lines(hup: &str) -> Vec<String> {
    ["1", "1", "4", hup]
        .iter()
        .flat_map(|e| {
            [
                "timeout".to_owned(),
                "timeout".to_owned(),
                format!("GOT event {e}"),
            ]
        })
        .collect()
}

/// The hang-up as each user-space backend reports it.
fn hup_as_reported(b: Backend) -> &'static str {
    match b {
        // A shut-down socketpair reads as EPOLLHUP|EPOLLIN|EPOLLRDHUP.
        Backend::Emulated => "2011",
        _ => "10",
    }
}

/// Runs `greenfd demo ARGS` and checks its output against the reference, with `hup` the
/// last event. The demo keeps the reference's timeout count as long as scheduling noise
/// stays under a sixth of the interval; if a loaded machine exceeded that at 150 ms (the
/// events themselves were right), the check runs again at 600 ms before failing.
fn assert_demo(extra: &[&str], env: Option<(&str, &str)>, backend: Backend) {
    let mut last = None;
    for interval in ["150", "600"] {
        let mut cmd = greenfd();
        cmd.args(["demo", "--interval-ms", interval]).args(extra);
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = run(&mut cmd);
        assert!(out.status.success(), "demo failed: {}", describe(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("backend {backend},")),
            "demo did not report backend {backend}: {}",
            describe(&out)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        let expected = expected_demo_lines(hup_as_reported(backend));
        if lines == expected {
            return;
        }
        let got: Vec<&str> = lines
            .iter()
            .filter(|l| l.starts_with("GOT"))
            .copied()
            .collect();
        let expected_got: Vec<&str> = expected
            .iter()
            .filter(|l| l.starts_with("GOT"))
            .map(String::as_str)
            .collect();
        assert_eq!(got, expected_got, "wrong events: {}", describe(&out));
        eprintln!("demo at {interval} ms: timeout count off (scheduling noise), retrying");
        last = Some(out);
    }
    panic!(
        "demo output differs from the reference even at 600 ms: {}",
        describe(&last.expect("ran"))
    );
}

#[test]
fn probe_lists_every_backend_every_fuse_route_and_the_best_choice() {
    let out = run(greenfd().arg("probe").env_remove(FUSE_ROUTE_ENV));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    let backend_lines: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.starts_with("  route ") && !l.starts_with("chosen: "))
        .collect();
    assert_eq!(
        backend_lines.len(),
        Backend::ALL.len(),
        "{}",
        describe(&out)
    );
    for (line, b) in backend_lines.iter().zip(Backend::ALL) {
        let status = line
            .strip_prefix(b.name())
            .unwrap_or_else(|| panic!("line {line:?} should start with {b}"))
            .trim_start();
        match b.probe() {
            Ok(()) if b == Backend::Fuse => {
                let route = greenfd_vpoll::fuse_route().unwrap();
                assert_eq!(status, format!("available (route {route})"), "{b}");
            }
            Ok(()) => assert_eq!(status, "available", "{b}"),
            Err(_) => assert!(
                status.starts_with("unavailable: ") && status.len() > "unavailable: ".len(),
                "{b} should be unavailable with a reason: {line:?}"
            ),
        }
    }
    // One line per route, right after the fuse line: the one in use, the others with why.
    let fuse_at = lines.iter().position(|l| l.starts_with("fuse ")).unwrap();
    for (i, r) in FuseRoute::ALL.into_iter().enumerate() {
        let line = lines[fuse_at + 1 + i];
        let status = line
            .strip_prefix(&format!("  route {r}"))
            .unwrap_or_else(|| panic!("{line:?} should name route {r}"))
            .trim_start();
        if greenfd_vpoll::fuse_route().ok() == Some(r) {
            assert_eq!(status, "in use");
        } else {
            assert!(
                status.starts_with("available, not used") || status.starts_with("unavailable: "),
                "{line:?}"
            );
        }
    }
    let last = lines.last().copied().unwrap_or_default();
    match greenfd_vpoll::best_backend() {
        Ok(Backend::Fuse) => {
            assert!(out.status.success(), "{}", describe(&out));
            let route = greenfd_vpoll::fuse_route().unwrap();
            assert_eq!(
                last,
                format!("chosen: fuse (best available), route {route}")
            );
        }
        Ok(best) => {
            assert!(out.status.success(), "{}", describe(&out));
            assert_eq!(last, format!("chosen: {best} (best available)"));
        }
        Err(_) => {
            assert!(!out.status.success(), "{}", describe(&out));
            assert_eq!(last, "chosen: none");
        }
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

/// Runs `greenfd ARGS` as uid/gid 65534 in a private mount namespace, through `sh -c
/// SETUP` (which ends by exec'ing its arguments), with `envs` set; from a copy of the
/// binary any user can run (the checkout may be private).
fn run_greenfd_unprivileged(setup: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_greenfd"));
    let dir = greenfd_test_support::copies_for_any_user(&[bin]).expect("copies");
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "set -e\n{setup}\nexec setpriv --reuid=65534 --regid=65534 --clear-groups \"$@\""
        ))
        .arg("sh")
        .arg(dir.join("greenfd"))
        .args(args)
        .env_remove(BACKEND_ENV)
        .env_remove(FUSE_ROUTE_ENV)
        .env_remove("RUST_LOG")
        .envs(envs.iter().copied());
    let out = run(&mut cmd);
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn probe_as_an_unprivileged_user_names_the_route_in_use() {
    if let Some(why) = unprivileged_blocker() {
        eprintln!("skipped: {why}");
        return;
    }
    for route in ["userns", "fusermount"] {
        // A system that refuses the route by policy skips it; a broken route fails.
        if let Some(why) = unprivileged_route_refusal(route, ROUTE_CHECK) {
            eprintln!("skipping the {route} half: the route is refused here: {why}");
            continue;
        }
        let out = run_greenfd_unprivileged("", &["probe"], &[(FUSE_ROUTE_ENV, route)]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{}", describe(&out));
        let has = |want: &str| stdout.lines().any(|l| l.starts_with(want));
        assert!(
            has(&format!("fuse      available (route {route})")),
            "{stdout}"
        );
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(&format!("  route {route}"))
                    && l.ends_with(&format!("in use (forced by {FUSE_ROUTE_ENV}={route})"))),
            "{stdout}"
        );
        assert!(
            stdout.lines().any(|l| l.starts_with("  route direct")
                && l.contains("unavailable: the direct route needs root or CAP_SYS_ADMIN")),
            "{stdout}"
        );
        assert!(
            has(&format!("chosen: fuse (best available), route {route}")),
            "{stdout}"
        );
    }
}

#[test]
fn probe_without_an_accessible_dev_fuse_explains_and_falls_back_to_emulated() {
    if let Some(why) = unprivileged_blocker() {
        eprintln!("skipped: {why}");
        return;
    }
    // /dev/fuse is replaced, in a private mount namespace only, by a copy of the node at
    // mode 0600 on a private tmpfs: the real node and other tests are untouched.
    let setup = r#"d=$(mktemp -d)
mount -t tmpfs -o mode=0755 greenfd-test "$d"
mknod -m 0600 "$d/fuse" c 10 229
mount --bind "$d/fuse" /dev/fuse"#;
    let out = run_greenfd_unprivileged(setup, &["probe"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("fuse      unavailable: no FUSE route works here")),
        "{stdout}"
    );
    for r in FuseRoute::ALL {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("  route {r}")))
            .unwrap_or_else(|| panic!("no line for route {r}: {stdout}"));
        assert!(
            line.contains("unavailable: /dev/fuse is not readable and writable by uid 65534")
                && line.contains("mode 0600")
                || (r == FuseRoute::Fusermount && line.contains("not installed")),
            "{line}"
        );
    }
    assert!(
        stdout
            .lines()
            .any(|l| l == "chosen: emulated (best available)"),
        "{stdout}"
    );
}

#[test]
fn the_manual_page_renders_without_warnings_and_names_every_command() {
    let out = run(greenfd().arg("manpage"));
    assert!(out.status.success(), "{}", describe(&out));
    let page = String::from_utf8(out.stdout.clone()).expect("roff is UTF-8");
    assert!(page.contains(".TH greenfd 1"), "{page}");
    // Every visible subcommand of `greenfd --help` is in the page.
    let help = run(greenfd().arg("--help"));
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(
        commands.contains(&"probe") && commands.contains(&"demo"),
        "{help}"
    );
    for c in &commands {
        assert!(page.contains(c), "{c} missing from the page");
    }
    if Command::new("groff").arg("--version").output().is_err() {
        eprintln!("skipping the rendering half: groff is not installed");
        return;
    }
    // `--dir` writes greenfd.1 and one page per subcommand (the pages greenfd.1 names).
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("man1.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = run(greenfd().arg("manpage").arg("--dir").arg(&dir));
    assert!(out.status.success(), "{}", describe(&out));
    let mut want: Vec<String> = commands.iter().map(|c| format!("greenfd-{c}.1")).collect();
    want.push("greenfd.1".into());
    want.sort();
    let mut got: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(
        std::fs::read_to_string(dir.join("greenfd.1")).unwrap(),
        page
    );
    for f in &got {
        let rendered = run(Command::new("groff")
            .args(["-ww", "-man", "-Tutf8", "-z"])
            .arg(dir.join(f)));
        assert!(rendered.status.success(), "{}", describe(&rendered));
        assert!(
            rendered.stderr.is_empty(),
            "groff warnings in {f}: {}",
            describe(&rendered)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn probe_respects_the_environment() {
    if Backend::Emulated.probe().is_ok() {
        let out = run(greenfd().arg("probe").env(BACKEND_ENV, "emulated"));
        assert!(out.status.success(), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l == format!("chosen: emulated (forced by {BACKEND_ENV})")),
            "{}",
            describe(&out)
        );
    } else {
        eprintln!("skipping the forced-emulated half: emulated backend unavailable");
    }
    let out = run(greenfd().arg("probe").env(BACKEND_ENV, "bogus"));
    assert!(!out.status.success(), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown vpoll backend \"bogus\""),
        "{}",
        describe(&out)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("chosen: none\n"));
    // Forcing a backend that is unavailable here fails with its reason.
    if let Some(missing) = Backend::ALL.into_iter().find(|b| b.probe().is_err()) {
        let out = run(greenfd().arg("probe").env(BACKEND_ENV, missing.name()));
        assert!(!out.status.success(), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains(&format!("vpoll backend {missing} unavailable: ")),
            "{}",
            describe(&out)
        );
    }
}

#[test]
fn demo_on_fuse_prints_the_kernel_output() {
    if let Err(e) = Backend::Fuse.probe() {
        eprintln!("skipping demo_on_fuse_prints_the_kernel_output: {e}");
        return;
    }
    assert_demo(&["--backend", "fuse"], None, Backend::Fuse);
}

#[test]
fn demo_on_emulated_prints_the_emulator_output() {
    if let Err(e) = Backend::Emulated.probe() {
        eprintln!("skipping demo_on_emulated_prints_the_emulator_output: {e}");
        return;
    }
    assert_demo(&["--backend", "emulated"], None, Backend::Emulated);
    // The environment variable selects it just the same.
    assert_demo(&[], Some((BACKEND_ENV, "emulated")), Backend::Emulated);
}

#[test]
fn demo_uses_the_best_backend_by_default() {
    let Ok(best) = greenfd_vpoll::best_backend() else {
        eprintln!("skipping demo_uses_the_best_backend_by_default: no backend available");
        return;
    };
    assert_demo(&[], None, best);
}

#[test]
fn demo_rejects_bad_input_with_a_clear_error() {
    for (args, message) in [
        (
            &["demo", "--interval-ms", "0"][..],
            "--interval-ms must be between",
        ),
        (
            &["demo", "--interval-ms", "5"][..],
            "--interval-ms must be between",
        ),
        (
            &["demo", "--interval-ms", "99999999999"][..],
            "--interval-ms must be between",
        ),
        (&["demo", "--interval-ms", "-3"][..], "error"),
        (
            &["demo", "--backend", "nope"][..],
            "unknown vpoll backend \"nope\"",
        ),
    ] {
        let out = run(greenfd().args(args));
        assert!(!out.status.success(), "{args:?}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(message),
            "{args:?} should say {message:?}: {}",
            describe(&out)
        );
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed: {}",
            describe(&out)
        );
    }
    // A backend that is not available here fails at once with its reason.
    if let Some(missing) = Backend::ALL.into_iter().find(|b| b.probe().is_err()) {
        let out =
            run(greenfd().args(["demo", "--interval-ms", "150", "--backend", missing.name()]));
        assert!(!out.status.success(), "{}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains(&format!("vpoll backend {missing} unavailable")),
            "{}",
            describe(&out)
        );
    }
}

#[test]
fn probe_reports_an_unknown_fuse_route_and_falls_back() {
    let out = run(greenfd().arg("probe").env(FUSE_ROUTE_ENV, "bogus"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("fuse ")
                && l.contains("unavailable: unknown FUSE route \"bogus\"")),
        "{}",
        describe(&out)
    );
    // The other backends still answer; the choice skips the Fuse backend.
    assert!(
        !stdout.lines().any(|l| l.starts_with("chosen: fuse")),
        "{}",
        describe(&out)
    );
}
