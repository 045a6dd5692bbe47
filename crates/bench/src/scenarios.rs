//! The bench scenarios, each producing report rows (ours vs peer, same run).

use crate::echo::{self, Server};
use crate::measure::{Samples, alternate};
use crate::pin::{self, Placement};
use crate::process::{ChildGuard, free_port};
use crate::report::{Goal, Row};
use crate::{memory, resp, syscalls, wake};
use greenfd_engine::{Config, IoDriver};
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Alternating repetitions per throughput/latency figure.
    pub reps: usize,
    /// Length of one throughput run.
    pub run: Duration,
    /// Interleaved rounds per micro-operation probe (vpoll).
    pub rounds: usize,
    /// Wall time of one probe sample (vpoll).
    pub sample: Duration,
    /// Whether this is the short CI smoke variant.
    pub quick: bool,
}

impl Plan {
    /// The full plan (~25 minutes for `all`) or the quick smoke plan (about one).
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                reps: 2,
                run: Duration::from_millis(250),
                rounds: 5,
                sample: Duration::from_millis(20),
                quick,
            }
        } else {
            Plan {
                reps: 5,
                run: Duration::from_secs(2),
                rounds: 11,
                sample: Duration::from_millis(100),
                quick,
            }
        }
    }
}

/// Reports progress of long runs on stderr.
pub type Progress<'a> = &'a dyn Fn(&str);

fn echo_rate(
    start: impl Fn() -> io::Result<Server>,
    conns: usize,
    run: Duration,
) -> io::Result<f64> {
    let server = start()?;
    let rate = echo::load(server.addr, conns, 64, run);
    server.stop()?;
    rate
}

fn row(
    scenario: String,
    unit: &'static str,
    (ours, peer): (Samples, Samples),
    peer_name: &str,
    goal: Goal,
) -> Row {
    Row {
        scenario,
        unit,
        ours,
        peer_name: peer_name.into(),
        peer,
        goal,
    }
}

/// The spin-before-park budget of the opt-in latency mode.
const BUSY_POLL: Duration = Duration::from_micros(50);

/// The engine drivers measured, in row order, with the goals each must reach against
/// tokio at one and at many connections (io_uring's goals are the issue's: ≥ 1.0× at
/// one connection, ≥ 1.2× at 100 and 1000).
const DRIVERS: [(IoDriver, f64, f64); 2] =
    [(IoDriver::Epoll, 1.0, 1.1), (IoDriver::Uring, 1.0, 1.2)];

/// The drivers this kernel can run (io_uring's absence is reported, not fatal).
fn drivers(progress: Progress<'_>) -> Vec<(IoDriver, f64, f64)> {
    DRIVERS
        .into_iter()
        .filter(|(io, _, _)| match io {
            IoDriver::Uring => match IoDriver::uring_support() {
                Ok(()) => true,
                Err(why) => {
                    progress(&format!("io_uring rows skipped: {why}"));
                    false
                }
            },
            _ => true,
        })
        .collect()
}

/// Echo ping-pong, 64 B, on each engine driver: 1, 100 and 1000 connections vs tokio,
/// 1 connection vs raw mio and with busy-poll; each under both placements.
pub fn echo(plan: Plan, progress: Progress<'_>) -> io::Result<Vec<Row>> {
    memory::raise_nofile()?;
    let counts: &[usize] = if plan.quick {
        &[1, 100, 200]
    } else {
        &[1, 100, 1000]
    };
    let mut rows = Vec::new();
    for placement in Placement::BOTH {
        let _guard = pin::apply(placement)?;
        let tag = placement.label();
        for (io, goal_one, goal_many) in drivers(progress) {
            let greenfd = || {
                echo::greenfd_echo(Config {
                    io,
                    ..Config::default()
                })
            };
            for &conns in counts {
                progress(&format!("echo {io} {conns} conn vs tokio ({tag})"));
                let s = alternate(
                    plan.reps,
                    || echo_rate(greenfd, conns, plan.run),
                    || echo_rate(echo::tokio_echo, conns, plan.run),
                )?;
                let goal = if conns == 1 { goal_one } else { goal_many };
                rows.push(row(
                    format!("echo {io} {conns} conn 64 B ({tag})"),
                    "msgs/s",
                    s,
                    "tokio current_thread",
                    Goal::AtLeast(goal),
                ));
            }
            progress(&format!("echo {io} 1 conn, busy-poll, vs tokio ({tag})"));
            let spin = || {
                echo::greenfd_echo(Config {
                    busy_poll: BUSY_POLL,
                    io,
                    ..Config::default()
                })
            };
            let s = alternate(
                plan.reps,
                || echo_rate(spin, 1, plan.run),
                || echo_rate(echo::tokio_echo, 1, plan.run),
            )?;
            rows.push(row(
                format!(
                    "echo {io} 1 conn 64 B, busy-poll {} µs ({tag})",
                    BUSY_POLL.as_micros()
                ),
                "msgs/s",
                s,
                "tokio current_thread",
                // Spinning pays off where a wake-up crosses CPUs; on one shared CPU it
                // must only not cost anything (the one-connection goal).
                Goal::AtLeast(match placement {
                    Placement::Unpinned => 1.5,
                    Placement::Pinned => goal_one,
                }),
            ));
            progress(&format!("echo {io} 1 conn vs mio ({tag})"));
            let s = alternate(
                plan.reps,
                || echo_rate(greenfd, 1, plan.run),
                || echo_rate(echo::mio_echo, 1, plan.run),
            )?;
            rows.push(row(
                format!("echo {io} 1 conn 64 B ({tag})"),
                "msgs/s",
                s,
                "raw mio loop",
                Goal::AtLeast(0.95),
            ));
        }
    }
    Ok(rows)
}

/// Cross-thread wake → task runs, round trip, greenfd rt vs tokio, both placements.
pub fn wake(plan: Plan, progress: Progress<'_>) -> io::Result<Vec<Row>> {
    let rounds = if plan.quick { 500 } else { 5000 };
    let mut rows = Vec::new();
    for placement in Placement::BOTH {
        let _guard = pin::apply(placement)?;
        let tag = placement.label();
        progress(&format!("wake ({tag})"));
        let s = alternate(
            plan.reps,
            || wake::round_trip_us(wake::Runtime::Greenfd, rounds),
            || wake::round_trip_us(wake::Runtime::Tokio, rounds),
        )?;
        rows.push(row(
            format!("cross-thread wake → task runs ({tag})"),
            "µs",
            s,
            "tokio current_thread",
            Goal::AtMost(1.0),
        ));
        for (ours, label) in [
            (wake::FdWaiter::Greenfd, "greenfd-rt"),
            (wake::FdWaiter::GreenfdInTokio, "greenfd Async inside tokio"),
            (
                wake::FdWaiter::GreenfdNestedInTokio,
                "greenfd Async inside tokio, reactor nested",
            ),
        ] {
            progress(&format!("fd wake, {label} ({tag})"));
            let s = alternate(
                plan.reps,
                || wake::fd_round_trip_us(ours, rounds),
                || wake::fd_round_trip_us(wake::FdWaiter::Tokio, rounds),
            )?;
            rows.push(row(
                format!("socket readable → task runs, {label} ({tag})"),
                "µs",
                s,
                "tokio current_thread UnixStream",
                Goal::AtMost(1.0),
            ));
        }
    }
    Ok(rows)
}

/// Starts `greenfd serve` (the binary at `greenfd`) with `mode` on driver `io` on a
/// free port.
fn spawn_greenfd_serve(
    greenfd: &Path,
    mode: &str,
    io: IoDriver,
) -> io::Result<(ChildGuard, SocketAddr)> {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let mut cmd = Command::new(greenfd);
    cmd.args([
        "serve",
        mode,
        "--addr",
        &addr.to_string(),
        "--io",
        io.as_str(),
    ]);
    Ok((ChildGuard::spawn_listening(cmd, addr)?, addr))
}

/// redis-benchmark's default suite against `greenfd serve --resp` on each engine driver
/// and redis-server (see [`resp::scenario`]).
pub fn resp(greenfd: &Path, plan: Plan, progress: Progress<'_>) -> io::Result<Vec<Row>> {
    let drivers: Vec<IoDriver> = drivers(progress).into_iter().map(|(io, _, _)| io).collect();
    resp::scenario(greenfd, &drivers, plan, progress)
}

/// Server RSS holding many idle connections: `greenfd serve --echo` vs the tokio echo
/// peer (`bench_exe peer tokio-echo`, i.e. `greenfd-bench peer`), each in its own process.
pub fn memory(
    greenfd: &Path,
    bench_exe: &Path,
    plan: Plan,
    progress: Progress<'_>,
) -> io::Result<Vec<Row>> {
    let limit = memory::raise_nofile()?;
    let conns = if plan.quick { 1000 } else { 10_000 }.min(limit.saturating_sub(100) as usize);
    let rss = |peer: bool| -> io::Result<f64> {
        let (server, addr) = if peer {
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            let mut cmd = Command::new(bench_exe);
            cmd.args(["peer", "tokio-echo", "--addr", &addr.to_string()]);
            (ChildGuard::spawn_listening(cmd, addr)?, addr)
        } else {
            spawn_greenfd_serve(greenfd, "--echo", IoDriver::Auto)?
        };
        Ok(memory::idle_rss_kib(&server, addr, conns)? as f64 / 1024.0)
    };
    progress(&format!("memory, {conns} idle connections"));
    let s = alternate(plan.reps.min(3), || rss(false), || rss(true))?;
    Ok(vec![row(
        format!("idle RSS, {conns} connections"),
        "MiB",
        s,
        "tokio current_thread",
        Goal::AtMost(1.0),
    )])
}

/// What an echoed message costs the server, for each engine driver against the tokio
/// peer: the syscalls of its I/O thread at 1 and 100 connections (unpinned; a count,
/// not a rate), and its CPU time at 1, 100 and 1000 connections under both placements
/// (the client shares the CPUs, so this shows the server's cost where the client limits
/// the rate).
pub fn syscalls(
    greenfd: &Path,
    bench_exe: &Path,
    plan: Plan,
    progress: Progress<'_>,
) -> io::Result<Vec<Row>> {
    syscalls::available().map_err(|why| io::Error::new(io::ErrorKind::NotFound, why))?;
    memory::raise_nofile()?;
    let mut rows = Vec::new();
    for conns in [1, 100] {
        progress(&format!("syscalls per message, tokio, {conns} conn"));
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let tokio = syscalls::per_message(
            &syscalls::tokio_peer(bench_exe, addr),
            addr,
            conns,
            plan.run,
        )?;
        for (io, _, _) in drivers(progress) {
            progress(&format!("syscalls per message, greenfd {io}, {conns} conn"));
            let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
            let cmd = syscalls::greenfd_serve(greenfd, addr, io.as_str());
            let ours = syscalls::per_message(&cmd, addr, conns, plan.run)?;
            rows.push(row(
                format!("syscalls per message, echo {io} {conns} conn"),
                "syscalls/msg",
                (Samples::from(vec![ours]), Samples::from(vec![tokio])),
                "tokio current_thread",
                // The point of io_uring: fewer syscalls than a readiness loop.
                if io == IoDriver::Uring {
                    Goal::AtMost(1.0)
                } else {
                    Goal::Info
                },
            ));
        }
    }
    let counts: &[usize] = if plan.quick {
        &[1, 100]
    } else {
        &[1, 100, 1000]
    };
    for placement in Placement::BOTH {
        let _guard = pin::apply(placement)?;
        let tag = placement.label();
        for (io, _, _) in drivers(progress) {
            for &conns in counts {
                progress(&format!(
                    "server CPU per message, {io}, {conns} conn ({tag})"
                ));
                let cpu = |peer: bool| {
                    let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
                    let cmd = if peer {
                        syscalls::tokio_peer(bench_exe, addr)
                    } else {
                        syscalls::greenfd_serve(greenfd, addr, io.as_str())
                    };
                    syscalls::cpu_per_message(cmd, addr, conns, plan.run)
                };
                let s = alternate(plan.reps.min(3), || cpu(false), || cpu(true))?;
                rows.push(row(
                    format!("server CPU per message, echo {io} {conns} conn ({tag})"),
                    "µs/msg",
                    s,
                    "tokio current_thread",
                    if io == IoDriver::Uring {
                        Goal::AtMost(1.0)
                    } else {
                        Goal::Info
                    },
                ));
            }
        }
    }
    Ok(rows)
}
