//! `greenfd-bench`: greenfd measured side by side with its peers, as ratios.
//!
//! This machine is shared and noisy: absolute figures drift by tens of percent between
//! runs, ratios measured in the same run much less. So every figure is a ratio against
//! a peer measured in the same process run, alternating, repeated, reported as the
//! median with its spread. Anything that crosses threads is measured unpinned and with
//! every thread on one CPU. The machinery and the peers live in the library of this
//! crate; this binary picks scenarios and writes the report. It is its own binary so
//! that the product, `greenfd`, links no peer (tokio, mio): the scenarios that measure
//! the product's server run the `greenfd` binary itself, found beside this one.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use greenfd_bench::report::{self, Row};
use greenfd_bench::scenarios::{self, Plan};
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// vpoll cycle and create+close per backend vs the eventfd/socketpair/thread floors.
    Vpoll,
    /// Echo ping-pong, 64 B: 1 connection vs tokio and raw mio, many connections vs tokio.
    Echo,
    /// Cross-thread wake → task runs, and socket readable → task runs (greenfd-rt, greenfd inside tokio), vs tokio.
    Wake,
    /// redis-benchmark against `greenfd serve --resp` and redis-server.
    Resp,
    /// Server RSS holding many idle connections, vs tokio.
    Memory,
    /// Syscalls per echoed message (strace), each engine driver vs tokio.
    Syscalls,
    /// Every scenario.
    All,
}

/// Errors reported to the user before exiting with status 1.
type CliResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Parser)]
#[command(name = "greenfd-bench", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    args: Args,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a bench peer (the tokio echo server) in this process; used by `memory`.
    #[command(hide = true)]
    Peer(PeerArgs),
    /// Drive an echo server with the bench's load client and print round trips per
    /// second (for profiling a server by hand, e.g. under `perf` or `taskset`).
    #[command(hide = true)]
    Load(LoadArgs),
}

/// Options of the hidden `greenfd-bench load`.
#[derive(clap::Args)]
struct LoadArgs {
    /// The echo server's address.
    addr: std::net::SocketAddr,
    /// Connections, each with one 64 B message in flight.
    #[arg(long, default_value_t = 100)]
    conns: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
}

/// Options of the hidden `greenfd-bench peer`.
#[derive(clap::Args)]
struct PeerArgs {
    /// Which peer: `tokio-echo`.
    #[arg(value_parser = ["tokio-echo"])]
    peer: String,
    /// Address to listen on.
    #[arg(long)]
    addr: std::net::SocketAddr,
}

/// Options of a measuring run.
#[derive(clap::Args)]
struct Args {
    /// The scenario to measure.
    #[arg(value_enum, default_value = "all")]
    scenario: Scenario,
    /// The `greenfd` binary whose `serve` the resp and memory scenarios measure
    /// [default: `greenfd` beside this binary, e.g. target/release/greenfd].
    #[arg(long, value_name = "PATH")]
    greenfd: Option<PathBuf>,
    /// A short smoke run (about a minute for `all`; the full plan takes ~25): fewer,
    /// shorter samples.
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON report.
    #[arg(long, value_name = "PATH", default_value = "bench-report.json")]
    json: PathBuf,
    /// Where to write the SVG chart of the ratios.
    #[arg(long, value_name = "PATH", default_value = "bench-report.svg")]
    svg: PathBuf,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Peer(a)) => greenfd_bench::memory::raise_nofile()
            .and_then(|_| greenfd_bench::echo::serve_tokio_echo(a.addr))
            .map_err(|e| format!("peer {}: {e}", a.peer).into()),
        Some(Command::Load(a)) => load(a),
        None => run(cli.args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("greenfd-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the load client against `a.addr` and prints its rate.
fn load(a: LoadArgs) -> CliResult {
    greenfd_bench::memory::raise_nofile()?;
    let secs = std::time::Duration::try_from_secs_f64(a.secs)
        .map_err(|e| format!("--secs {}: {e}", a.secs))?;
    let conns = a.conns.max(1);
    let rate = greenfd_bench::echo::load(a.addr, conns, 64, secs)
        .map_err(|e| format!("load {}: {e}", a.addr))?;
    println!("{rate:.0} round trips/s ({conns} connections, 64 B)");
    Ok(())
}

/// The `greenfd` binary to measure: `--greenfd`, else the one beside this binary.
fn greenfd_binary(given: Option<PathBuf>, exe: &std::path::Path) -> Result<PathBuf, String> {
    let path = match given {
        Some(p) => p,
        None => exe.with_file_name("greenfd"),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build it first (`cargo build --release -p greenfd`) or pass --greenfd PATH",
            path.display()
        ))
    }
}

/// Runs the chosen scenarios and writes the report.
fn run(args: Args) -> CliResult {
    let plan = Plan::new(args.quick);
    let exe = std::env::current_exe()?;
    let needs_greenfd = matches!(
        args.scenario,
        Scenario::Resp | Scenario::Memory | Scenario::Syscalls | Scenario::All
    );
    let greenfd = if needs_greenfd {
        greenfd_binary(args.greenfd.clone(), &exe)?
    } else {
        PathBuf::new()
    };
    let started = Instant::now();
    let progress = |what: &str| {
        eprintln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
    };
    let mut rows: Vec<Row> = Vec::new();
    let mut failed = Vec::new();
    let wanted = |s| args.scenario == s || args.scenario == Scenario::All;
    let mut measure = |s: Scenario, result: std::io::Result<Vec<Row>>| match result {
        Ok(r) => rows.extend(r),
        Err(e) => {
            progress(&format!("{s:?} failed: {e}"));
            failed.push(format!("{s:?}: {e}"));
        }
    };
    if wanted(Scenario::Vpoll) {
        measure(Scenario::Vpoll, greenfd_bench::vpoll::run(plan, &progress));
    }
    if wanted(Scenario::Echo) {
        measure(Scenario::Echo, scenarios::echo(plan, &progress));
    }
    if wanted(Scenario::Wake) {
        measure(Scenario::Wake, scenarios::wake(plan, &progress));
    }
    if wanted(Scenario::Resp) {
        measure(Scenario::Resp, scenarios::resp(&greenfd, plan, &progress));
    }
    if wanted(Scenario::Memory) {
        measure(
            Scenario::Memory,
            scenarios::memory(&greenfd, &exe, plan, &progress),
        );
    }
    if wanted(Scenario::Syscalls) {
        measure(
            Scenario::Syscalls,
            scenarios::syscalls(&greenfd, &exe, plan, &progress),
        );
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", report::table(&rows))?;
    let below: Vec<&str> = rows
        .iter()
        .filter(|r| r.pass() == Some(false))
        .map(|r| r.scenario.as_str())
        .collect();
    writeln!(
        out,
        "{} rows, {} below goal, {:.0} s",
        rows.len(),
        below.len(),
        started.elapsed().as_secs_f64()
    )?;
    report::write_files(&rows, &context(plan), &args.json, &args.svg)?;
    eprintln!("wrote {} and {}", args.json.display(), args.svg.display());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("some scenarios could not run: {}", failed.join("; ")).into())
    }
}

/// Facts about the run recorded in the JSON report.
fn context(plan: Plan) -> Vec<(&'static str, String)> {
    let uname = rustix::system::uname();
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    vec![
        ("unix_time", secs.to_string()),
        (
            "cpus",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
                .to_string(),
        ),
        (
            "mem_gib",
            format!("{:.1}", mem_kib as f64 / 1024.0 / 1024.0),
        ),
        ("kernel", uname.release().to_string_lossy().into_owned()),
        ("quick", plan.quick.to_string()),
    ]
}
