//! `greenfd serve --io`: the flag picks the engine's I/O driver, the banner names the
//! one running, and the server works on it; an unknown name is refused.

use greenfd_engine::IoDriver;
use greenfd_test_support::{PATIENCE, run};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};

/// Starts `greenfd serve --echo --io <io>`, checks its banner names `want`, echoes one
/// message through it, and stops it with SIGTERM.
fn echo_on(io: &str, want: IoDriver) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_greenfd"))
        .args(["serve", "--echo", "--addr", "127.0.0.1:0", "--io", io])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn greenfd");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut banner = String::new();
    stdout.read_line(&mut banner).expect("read the banner");
    assert!(
        banner.trim_end().ends_with(&format!(", {want})")),
        "--io {io}: banner {banner:?}"
    );
    let addr = banner
        .split_whitespace()
        .find_map(|w| w.parse::<SocketAddr>().ok())
        .unwrap_or_else(|| panic!("no address in banner {banner:?}"));
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    c.write_all(b"over the chosen driver").unwrap();
    let mut got = [0u8; 22];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"over the chosen driver");
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn io_flag_runs_the_engine_on_the_driver_asked_for() {
    echo_on("epoll", IoDriver::Epoll);
    match IoDriver::uring_support() {
        Ok(()) => {
            echo_on("uring", IoDriver::Uring);
            echo_on("auto", IoDriver::Uring);
        }
        Err(why) => {
            eprintln!("io_uring unavailable ({why}): auto must fall back to epoll");
            echo_on("auto", IoDriver::Epoll);
        }
    }
}

#[test]
fn unknown_io_driver_is_refused() {
    let out = run(
        Command::new(env!("CARGO_BIN_EXE_greenfd")).args([
            "serve",
            "--echo",
            "--addr",
            "127.0.0.1:0",
            "--io",
            "kqueue",
        ]),
        PATIENCE,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("unknown I/O driver"), "{stderr}");
}
