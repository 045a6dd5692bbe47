//! What one echoed message costs the server: syscalls ([`per_message`]: the server runs
//! under `strace -f`, the load client outside it) and CPU time ([`cpu_per_message`]).
//!
//! Syscalls per message: the server runs under `strace -f`, the load client outside it.
//! The figure is the syscalls of the server's busiest thread (its I/O thread; the
//! `greenfd serve` main thread only waits for signals) divided by the round trips the
//! client completed. strace slows every syscall down, so only the count means anything
//! here, not the rate; and io_uring's work inside the kernel is, rightly, not a syscall.

use crate::echo;
use crate::process::{ChildGuard, children};
use crate::resp::cpu_ns;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Runs `server` (which must listen on `addr` and stop on SIGTERM) under strace, drives
/// `conns` connections of 64-byte echoes at it for `run`, and returns the syscalls of
/// its busiest thread per round trip.
pub fn per_message(
    server: &Command,
    addr: SocketAddr,
    conns: usize,
    run: Duration,
) -> io::Result<f64> {
    let trace = trace_path(addr);
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(server.get_program())
        .args(server.get_args());
    let mut strace = ChildGuard::spawn_listening(cmd, addr)?;
    let result = echo::round_trips(addr, conns, 64, run);
    // Stop the traced server itself (strace forwards nothing), then let strace finish
    // writing the trace.
    for pid in children(strace.pid())? {
        let pid = rustix::process::Pid::from_raw(pid as i32)
            .ok_or_else(|| io::Error::other("bad pid"))?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
    }
    strace.wait_exit(Duration::from_secs(20))?;
    let (messages, _) = result?;
    let text = std::fs::read_to_string(&trace);
    // The trace is large and only this count matters.
    let _ = std::fs::remove_file(&trace);
    let busiest = busiest_thread_calls(&text?);
    if messages == 0 {
        return Err(io::Error::other("no round trip completed under strace"));
    }
    Ok(busiest as f64 / messages as f64)
}

/// Starts `server` (listening on `addr`), drives `conns` connections of 64-byte echoes
/// at it for `run`, and returns the server's CPU time per round trip, in microseconds.
/// The client runs in this process, so the figure is the server's alone, whatever
/// limits the rate.
pub fn cpu_per_message(
    server: Command,
    addr: SocketAddr,
    conns: usize,
    run: Duration,
) -> io::Result<f64> {
    let guard = ChildGuard::spawn_listening(server, addr)?;
    let before = cpu_ns(guard.pid())?;
    let (messages, _) = echo::round_trips(addr, conns, 64, run)?;
    let used = cpu_ns(guard.pid())? - before;
    if messages == 0 {
        return Err(io::Error::other("no round trip completed"));
    }
    Ok(used as f64 / 1000.0 / messages as f64)
}

/// A trace file name unique to this process and address.
fn trace_path(addr: SocketAddr) -> PathBuf {
    std::env::temp_dir().join(format!(
        "greenfd-bench-strace-{}-{}.txt",
        std::process::id(),
        addr.port()
    ))
}

/// The most syscalls any one thread made in an `strace -f -o` trace (one line per call,
/// prefixed with the thread id; a call split by another thread's is counted once, at
/// its `<unfinished ...>` half; signals and exits are not calls).
pub fn busiest_thread_calls(trace: &str) -> u64 {
    let mut per_thread: HashMap<&str, u64> = HashMap::new();
    for line in trace.lines() {
        let Some((tid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if rest.starts_with("+++") || rest.starts_with("---") || rest.starts_with("<...") {
            continue;
        }
        *per_thread.entry(tid).or_default() += 1;
    }
    per_thread.into_values().max().unwrap_or(0)
}

/// Whether strace can trace here (installed, and ptrace allowed); `Err` says why not.
pub fn available() -> Result<(), String> {
    let out = Command::new("strace")
        .args(["-qq", "-o", "/dev/null", "true"])
        .output()
        .map_err(|e| format!("strace not runnable ({e}; Debian package strace)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "strace cannot trace here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `greenfd serve --echo --io IO` on `addr`.
pub fn greenfd_serve(greenfd: &Path, addr: SocketAddr, io: &str) -> Command {
    let mut cmd = Command::new(greenfd);
    cmd.args(["serve", "--echo", "--addr", &addr.to_string(), "--io", io]);
    cmd
}

/// The tokio echo peer (`greenfd-bench peer tokio-echo`) on `addr`.
pub fn tokio_peer(bench_exe: &Path, addr: SocketAddr) -> Command {
    let mut cmd = Command::new(bench_exe);
    cmd.args(["peer", "tokio-echo", "--addr", &addr.to_string()]);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busiest_thread_counts_calls_once_and_skips_signals_and_exits() {
        let trace = "\
10 ppoll([{fd=3}], 1, NULL, NULL, 8 <unfinished ...>
11 read(5, \"x\", 64) = 1
11 sendto(5, \"x\", 1, MSG_NOSIGNAL, NULL, 0 <unfinished ...>
10 <... ppoll resumed>) = 1
11 <... sendto resumed>) = 1
11 epoll_wait(4, [], 256, 0) = 0
11 --- SIGTERM {si_signo=SIGTERM} ---
10 +++ exited with 0 +++
";
        assert_eq!(busiest_thread_calls(trace), 3);
    }
}
