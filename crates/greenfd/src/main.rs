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
    /// Print the greenfd(1) manual page (roff), generated from these definitions; with
    /// `--dir`, write it and one page per subcommand there instead.
    #[command(hide = true)]
    Manpage(ManpageArgs),
}

/// Options of the hidden `greenfd manpage`.
#[derive(clap::Args)]
struct ManpageArgs {
    /// Write greenfd.1 and greenfd-SUBCOMMAND.1 into this directory.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// What every page of the greenfd manual ends with: the environment and related pages.
const MAN_TAIL: &str = r#".SH ENVIRONMENT
.TP
.B GREENFD_VPOLL_BACKEND
kernel, device, fuse or emulated: forces the vpoll backend.
.TP
.B GREENFD_VPOLL_FUSE_ROUTE
direct, userns, fusermount or legacy: forces how the fuse backend mounts its filesystem.
.TP
.B RUST_LOG
log filter when
.B \-\-log
is not given.
.SH SEE ALSO
.BR vpoll (3),
.BR vpoll_create (3),
.BR vpoll_ctl (3),
.BR vpoll_close (3)
"#;

/// Writes greenfd(1) (and with `--dir`, one page per subcommand): the clap definition
/// rendered by clap_mangen, so the pages always match the binary
/// (`scripts/install-capi.sh --with-cli` installs them).
fn manpage(args: ManpageArgs) -> CliResult {
    use clap::CommandFactory;
    use std::io::Write;
    // Every page a page names exists: `help` gets none (`--help` is on every page).
    let cli = Cli::command().disable_help_subcommand(true);
    let render = |cmd: clap::Command, out: &mut dyn Write| -> CliResult {
        clap_mangen::Man::new(cmd).render(out)?;
        out.write_all(MAN_TAIL.as_bytes())?;
        Ok(())
    };
    let Some(dir) = args.dir else {
        return render(cli, &mut std::io::stdout().lock());
    };
    std::fs::create_dir_all(&dir)?;
    for sub in cli.get_subcommands().filter(|c| !c.is_hide_set()) {
        let name = format!("greenfd-{}", sub.get_name());
        let page = sub
            .clone()
            .display_name(name.clone())
            .bin_name(format!("greenfd {}", sub.get_name()));
        render(
            page,
            &mut std::fs::File::create(dir.join(format!("{name}.1")))?,
        )?;
    }
    render(cli, &mut std::fs::File::create(dir.join("greenfd.1"))?)
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
        Command::Manpage(a) => manpage(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("greenfd: {e}");
            ExitCode::FAILURE
        }
    }
}
