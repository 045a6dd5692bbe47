//! `greenfd probe` and `greenfd demo` as a user runs them: the real binary, real forks,
//! real backends.

use greenfd_vpoll::{BACKEND_ENV, Backend};
use std::process::{Command, Output};
use std::time::Duration;

use greenfd_test_support::describe;

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
fn probe_lists_every_backend_and_the_best_choice() {
    let out = run(greenfd().arg("probe"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), Backend::ALL.len() + 1, "{}", describe(&out));
    for (line, b) in lines.iter().zip(Backend::ALL) {
        let status = line
            .strip_prefix(b.name())
            .unwrap_or_else(|| panic!("line {line:?} should start with {b}"))
            .trim_start();
        match b.probe() {
            Ok(()) => assert_eq!(status, "available", "{b}"),
            Err(_) => assert!(
                status.starts_with("unavailable: ") && status.len() > "unavailable: ".len(),
                "{b} should be unavailable with a reason: {line:?}"
            ),
        }
    }
    match greenfd_vpoll::best_backend() {
        Ok(best) => {
            assert!(out.status.success(), "{}", describe(&out));
            assert_eq!(lines[4], format!("chosen: {best} (best available)"));
        }
        Err(_) => {
            assert!(!out.status.success(), "{}", describe(&out));
            assert_eq!(lines[4], "chosen: none");
        }
    }
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
