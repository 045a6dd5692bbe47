//! RESP throughput: `redis-benchmark`'s whole default suite drives both greenfd's RESP
//! server and `redis-server` with the same flags (so the client's cost is the same for
//! both), at `-P 1` and `-P 16`, unpinned and pinned; plus the CPU a trickled 1M-element
//! request costs against the same request sent at once, for both servers.

use crate::measure::Samples;
use crate::pin::{self, Placement};
use crate::process::{ChildGuard, free_port, have};
use crate::report::{Goal, Row};
use crate::scenarios::{Plan, Progress};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Starts `greenfd serve --resp` (the binary at `greenfd`) on a free port.
pub fn spawn_greenfd_resp(greenfd: &Path) -> io::Result<(ChildGuard, SocketAddr)> {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
    let mut cmd = Command::new(greenfd);
    cmd.args(["serve", "--resp", "--addr", &addr.to_string()]);
    Ok((ChildGuard::spawn_listening(cmd, addr)?, addr))
}

/// Starts a single-threaded `redis-server` on a free loopback port, persistence off.
pub fn spawn_redis_server() -> io::Result<(ChildGuard, SocketAddr)> {
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut cmd = Command::new("redis-server");
    cmd.args([
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]);
    Ok((ChildGuard::spawn_listening(cmd, addr)?, addr))
}

/// Runs `redis-benchmark` against `addr` (`tests`: a `-t` list, or `None` for its
/// whole default suite); returns (test name, requests per second). It exits with an
/// error status at the first error reply, so a result means no errors.
pub fn redis_benchmark(
    addr: SocketAddr,
    tests: Option<&str>,
    requests: usize,
    clients: usize,
    pipeline: usize,
) -> io::Result<Vec<(String, f64)>> {
    let mut cmd = Command::new("redis-benchmark");
    if let Some(tests) = tests {
        cmd.args(["-t", tests]);
    }
    let out = cmd
        .args([
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
            "-n",
            &requests.to_string(),
            "-c",
            &clients.to_string(),
            "-P",
            &pipeline.to_string(),
            "--csv",
        ])
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "redis-benchmark failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let rows = parse_csv(&String::from_utf8_lossy(&out.stdout));
    if rows.is_empty() {
        return Err(io::Error::other("redis-benchmark printed no results"));
    }
    Ok(rows)
}

/// CPU time a process's live threads have used, in nanoseconds: the first field of
/// each `/proc/<pid>/task/<tid>/schedstat` (clock ticks would be 10 ms coarse).
pub fn cpu_ns(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread that exited meanwhile has no file any more.
        if let Ok(text) = std::fs::read_to_string(path) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|f| f.parse::<u64>().ok())
                .ok_or_else(|| io::Error::other("malformed schedstat"))?;
        }
    }
    Ok(total)
}

/// A `DEL` of `elements` keys (none of which exist), as one RESP request.
fn big_del(elements: usize) -> Vec<u8> {
    let mut out = format!("*{}\r\n$3\r\nDEL\r\n", elements + 1).into_bytes();
    for i in 0..elements {
        let key = format!("k:{i:07}");
        out.extend_from_slice(format!("${}\r\n{key}\r\n", key.len()).as_bytes());
    }
    out
}

/// Server CPU nanoseconds for `request` sent at once, then sent in 1,500-byte pieces with a
/// short pause after each (so the server reads them one by one). Returns both.
pub fn trickle_cpu(addr: SocketAddr, pid: u32, request: &[u8]) -> io::Result<(u64, u64)> {
    let run = |trickle: bool| -> io::Result<u64> {
        let mut c = TcpStream::connect(addr)?;
        c.set_nodelay(true)?;
        c.set_read_timeout(Some(Duration::from_secs(120)))?;
        let mut r = BufReader::new(c.try_clone()?);
        let before = cpu_ns(pid)?;
        if trickle {
            for piece in request.chunks(1500) {
                c.write_all(piece)?;
                std::thread::sleep(Duration::from_micros(20));
            }
        } else {
            c.write_all(request)?;
        }
        let mut line = String::new();
        r.read_line(&mut line)?;
        if !line.starts_with(':') {
            return Err(io::Error::other(format!("DEL answered {line:?}")));
        }
        Ok(cpu_ns(pid)? - before)
    };
    let at_once = run(false)?;
    let trickled = run(true)?;
    Ok((at_once, trickled))
}

/// The RESP scenario: the default redis-benchmark suite (-c 50) at -P 1 and -P 16
/// against `greenfd serve --resp` and a single-threaded redis-server, alternating, both
/// placements (goal: at least 1.1× on every row), with each server's CPU per request
/// over the suite (goal: at most 1/1.1 of redis'); and the trickled-request CPU ratio
/// (goal: at most 2× the CPU of the request sent at once).
pub fn scenario(greenfd: &Path, plan: Plan, progress: Progress<'_>) -> io::Result<Vec<Row>> {
    for tool in ["redis-server", "redis-benchmark"] {
        if !have(tool) {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{tool} not found (Debian packages redis-server, redis-tools)"),
            ));
        }
    }
    let requests = if plan.quick { 2_000 } else { 50_000 };
    let mut rows = Vec::new();
    let start = |side: usize| {
        if side == 0 {
            spawn_greenfd_resp(greenfd)
        } else {
            spawn_redis_server()
        }
    };
    for placement in Placement::BOTH {
        let _guard = pin::apply(placement)?;
        let tag = placement.label();
        for pipeline in [1, 16] {
            progress(&format!("resp default suite -P {pipeline} ({tag})"));
            let mut sides: [Vec<(String, Samples)>; 2] = [Vec::new(), Vec::new()];
            let mut cpu = [Samples::from(Vec::new()), Samples::from(Vec::new())];
            for round in 0..plan.reps {
                for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
                    let (server, addr) = start(side)?;
                    let before = cpu_ns(server.pid())?;
                    let results = redis_benchmark(addr, None, requests, 50, pipeline)?;
                    let used = cpu_ns(server.pid())? - before;
                    drop(server);
                    cpu[side].push(used as f64 / (requests * results.len().max(1)) as f64);
                    for (name, rps) in results {
                        match sides[side].iter_mut().find(|(n, _)| *n == name) {
                            Some((_, s)) => s.push(rps),
                            None => sides[side].push((name, Samples::from(vec![rps]))),
                        }
                    }
                }
            }
            let [ours, peer] = sides;
            for (name, ours_s) in ours {
                let peer_s = peer
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, s)| s.clone())
                    .ok_or_else(|| io::Error::other(format!("redis-server run lacks {name}")))?;
                rows.push(Row {
                    scenario: format!("RESP {name} -c 50 -P {pipeline} ({tag})"),
                    unit: "req/s",
                    ours: ours_s,
                    peer_name: "redis-server".into(),
                    peer: peer_s,
                    goal: Goal::AtLeast(1.1),
                });
            }
            // The same runs seen from the server: its CPU per request over the whole
            // suite (less sensitive than req/s to where the scheduler puts the client).
            let [ours_cpu, peer_cpu] = cpu;
            rows.push(Row {
                scenario: format!(
                    "RESP default suite, server CPU per request -P {pipeline} ({tag})"
                ),
                unit: "ns/req",
                ours: ours_cpu,
                peer_name: "redis-server".into(),
                peer: peer_cpu,
                goal: Goal::AtMost(1.0 / 1.1),
            });
        }
        progress(&format!("resp trickled 1M-element DEL ({tag})"));
        let request = big_del(1_000_000);
        let mut ratios = [Samples::from(Vec::new()), Samples::from(Vec::new())];
        for round in 0..if plan.quick { 1 } else { plan.reps.min(3) } {
            for side in if round % 2 == 0 { [0, 1] } else { [1, 0] } {
                let (server, addr) = start(side)?;
                let (at_once, trickled) = trickle_cpu(addr, server.pid(), &request)?;
                drop(server);
                progress(&format!(
                    "  {}: {:.1} ms CPU at once, {:.1} ms trickled",
                    ["greenfd", "redis-server"][side],
                    at_once as f64 / 1e6,
                    trickled as f64 / 1e6
                ));
                ratios[side].push(trickled as f64 / at_once.max(1) as f64);
            }
        }
        let [ours, peer] = ratios;
        rows.push(Row {
            scenario: format!("RESP 1M-element DEL in 1500 B pieces, CPU vs at once ({tag})"),
            unit: "× CPU",
            ours,
            peer_name: "redis-server".into(),
            peer,
            goal: Goal::ValueAtMost(2.0),
        });
    }
    Ok(rows)
}

/// Parses `redis-benchmark --csv` lines (`"TEST","rps",...`), skipping the header.
pub fn parse_csv(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(',').map(|f| f.trim().trim_matches('"'));
            let name = fields.next()?;
            let rps: f64 = fields.next()?.parse().ok()?;
            Some((name.to_owned(), rps))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_redis_benchmark_csv() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\"\n\"PING_INLINE\",\"98039.22\",\"0.3\"\n\"SET\",\"1000.5\",\"0.4\"\n";
        assert_eq!(
            parse_csv(text),
            vec![
                ("PING_INLINE".to_owned(), 98039.22),
                ("SET".to_owned(), 1000.5)
            ]
        );
    }
}
