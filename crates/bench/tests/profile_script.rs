//! `scripts/profile-echo.sh` on a short run: every server it names is measured, and the
//! time shares it reports come from the right places (io_uring functions only in the
//! io_uring server's samples). Ratios are not asserted: a debug build on a shared machine.

use greenfd_test_support::have;
use std::path::Path;
use std::process::Command;

/// One row of the script's table: server, rate, busy %, and the shares by name.
struct Row {
    server: String,
    rate: f64,
    busy: f64,
    io_uring: f64,
    total: f64,
}

/// Parses `uring 110321 7.98 88% | 54% 6% 0% 10% 4% 16% (other 10%)`.
fn parse(line: &str) -> Option<Row> {
    let nums: Vec<f64> = line
        .split(|c: char| c.is_whitespace() || c == '|' || c == '(' || c == ')')
        .filter_map(|w| w.trim_end_matches('%').parse().ok())
        .collect();
    let server = line.split_whitespace().next()?.to_string();
    // rate, µs/msg, busy, then tcp/ip, io_uring, epoll, sched, memory, user, other
    (nums.len() == 10).then(|| Row {
        server,
        rate: nums[0],
        busy: nums[2],
        io_uring: nums[4],
        total: nums[3..].iter().sum(),
    })
}

#[test]
fn profile_echo_reports_every_server() {
    if !have("perf") || !have("taskset") {
        eprintln!("skipped: perf or taskset missing (Debian linux-perf, util-linux)");
        return;
    }
    if std::thread::available_parallelism().map_or(0, |n| n.get()) < 2 {
        eprintln!("skipped: the script puts server and client on two CPUs; this machine has one");
        return;
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_greenfd-bench"))
        .parent()
        .unwrap();
    if !bin.join("greenfd").is_file() {
        eprintln!(
            "skipped: greenfd not built in {} (run the workspace tests)",
            bin.display()
        );
        return;
    }
    let uring = greenfd_engine::IoDriver::uring_support().is_ok();
    let mut servers = vec!["epoll", "tokio"];
    if uring {
        servers.push("uring");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg(root.join("scripts/profile-echo.sh"))
        .args(["--conns", "10", "--secs", "1", "--bin"])
        .arg(bin)
        .args(&servers)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "script failed: {stderr}\n{stdout}");
    let rows: Vec<Row> = stdout.lines().filter_map(parse).collect();
    for server in &servers {
        let row = rows
            .iter()
            .find(|r| r.server == *server)
            .unwrap_or_else(|| panic!("no row for {server}:\n{stdout}"));
        assert!(row.rate > 0.0 && row.busy > 0.0, "{server} idle:\n{stdout}");
        // Every sample lands in exactly one category.
        assert!(
            (95.0..=105.0).contains(&row.total),
            "{server}: shares add up to {}%:\n{stdout}",
            row.total
        );
        if *server == "uring" {
            assert!(row.io_uring > 0.0, "no io_uring samples:\n{stdout}");
        } else {
            assert!(
                row.io_uring < 1.0,
                "{server} shows io_uring time:\n{stdout}"
            );
        }
    }
}
