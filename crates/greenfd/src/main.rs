//! `greenfd`: make any file descriptor cooperative, and make anything a file descriptor.
//!
//! One binary shows the toolkit: `demo` (vpoll fork scenario), `serve` (TCP/RESP engine),
//! `tap` (TAP devices answering ARP and ping), `probe` (which vpoll backends work here).
//! Side-by-side figures against peers come from a separate binary, `greenfd-bench`, so
//! this one links product crates only.

mod demo;
mod probe;
mod serve;
mod signals;
mod tap;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Errors a subcommand reports to the user before exiting with status 1.
pub type CliResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Parser)]
#[command(name = "greenfd", version, about, long_about = None)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax, e.g. `debug` or `greenfd_vpoll=trace`);
    /// overrides `RUST_LOG`.
    #[arg(long, global = true)]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the libvpoll fork scenario: a child sets events, the parent waits with epoll.
    Demo(demo::Args),
    /// List the vpoll backends, whether each is available here (and why not), and which is chosen.
    Probe(probe::Args),
    /// Serve TCP: echo, lines, or the Redis protocol (RESP).
    Serve(serve::Args),
    /// Serve TAP devices that answer ARP and ICMP echo, one task per device.
    Tap(tap::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match &cli.log {
        Some(f) => tracing_subscriber::EnvFilter::new(f),
        None => tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Probe(a) => probe::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Tap(a) => tap::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("greenfd: {e}");
            ExitCode::FAILURE
        }
    }
}
