//! `greenfd-bench all --quick` as a smoke test: every scenario runs against its peer
//! and lands in the table, the JSON report and the SVG chart. No ratio is asserted:
//! this is a debug build on a shared machine; figures belong to release runs.

use greenfd_test_support::have;
use std::process::Command;

#[test]
fn bench_all_quick_reports_every_scenario() {
    if !have("redis-server") || !have("redis-benchmark") {
        eprintln!(
            "skipped: redis-server/redis-benchmark missing (Debian redis-server, redis-tools)"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("greenfd-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (json, svg) = (dir.join("bench-report.json"), dir.join("bench-report.svg"));
    // The resp and memory scenarios measure the product binary, built beside this one
    // by `cargo test --workspace` (the package cannot depend on another's binary).
    let bench = std::path::Path::new(env!("CARGO_BIN_EXE_greenfd-bench"));
    let greenfd = bench.with_file_name("greenfd");
    if !greenfd.is_file() {
        eprintln!(
            "skipped: {} not built (run `cargo build -p greenfd` or the workspace tests)",
            greenfd.display()
        );
        return;
    }
    let out = Command::new(bench)
        .args(["all", "--quick", "--greenfd"])
        .arg(&greenfd)
        .arg("--json")
        .arg(&json)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}\n{stdout}");
    // Progress went to stderr, one line per step.
    assert!(stderr.contains("echo 1 conn vs tokio (pinned)"), "{stderr}");
    for row in [
        "emulated cycle vs bare socketpair (unpinned)",
        "echo 1 conn 64 B (pinned)",
        "cross-thread wake → task runs (unpinned)",
        "RESP SET -c 50 -P 16 (pinned)",
        "idle RSS, 1000 connections",
    ] {
        assert!(stdout.contains(row), "table lacks {row:?}:\n{stdout}");
    }
    let report = std::fs::read_to_string(&json).unwrap();
    assert!(report.contains("\"kernel\":") && report.contains("\"rows\": ["));
    let rows = report.matches("\"scenario\":").count();
    assert!(rows >= 20, "only {rows} rows in the JSON report");
    assert_eq!(report.matches('{').count(), report.matches('}').count());
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(chart.matches("<rect").count(), rows, "one bar per row");
    std::fs::remove_dir_all(&dir).unwrap();
}
