//! RESP throughput: `redis-benchmark` drives both greenfd's RESP server and
//! `redis-server` with the same flags, so the client's cost is the same for both.

use crate::process::{ChildGuard, free_port};
use std::io;
use std::net::SocketAddr;
use std::process::Command;

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

/// Runs `redis-benchmark` against `addr`; returns (test name, requests per second).
pub fn redis_benchmark(
    addr: SocketAddr,
    tests: &str,
    requests: usize,
    clients: usize,
    pipeline: usize,
) -> io::Result<Vec<(String, f64)>> {
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            &addr.ip().to_string(),
            "-p",
            &addr.port().to_string(),
            "-t",
            tests,
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
