//! `greenfd serve`: the engine as a server — the Redis protocol, echo, or lines.
//!
//! SIGINT and SIGTERM are read from a `signalfd` (see [`crate::signals`]) by the main
//! thread, which then shuts the engines down and exits with status 0. An engine that
//! ends on its own (an error, a panic) wakes the same blocking `poll` through the
//! group's stop notifier; the others are stopped and the command fails, saying why.

use crate::CliResult;
use crate::signals::{read_signal, stop_signal_fd};
use greenfd_engine::{Config, Echo, Group, IoDriver, Lines, Raw};
use greenfd_resp::{Db, Resp, RespServer};
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};

/// Options of `greenfd serve`.
#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("mode").args(["resp", "echo", "lines"])))]
pub struct Args {
    /// Serve the Redis protocol (RESP2 and RESP3): strings, lists, sets, hashes, sorted
    /// sets, expiry, MULTI/EXEC (the default; the README lists the commands).
    #[arg(long)]
    resp: bool,
    /// Echo every byte back.
    #[arg(long)]
    echo: bool,
    /// Echo every `\n`-terminated line back.
    #[arg(long)]
    lines: bool,
    /// Address to listen on (port 0 picks a free port; the real address is printed).
    #[arg(long, default_value = "127.0.0.1:6380")]
    addr: SocketAddr,
    /// Engines (reactor threads) sharing the port through SO_REUSEPORT.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Most bytes queued for one connection: a client whose reply would pass it is
    /// closed (logged). Large values are queued by reference, not copied, so this
    /// bounds a reply's size more than the memory it takes.
    #[arg(long, default_value_t = 512 << 20)]
    max_output: usize,
    /// Stop reading a connection's requests while more than this is queued for it, so
    /// a client that pipelines without reading stalls itself, not the server's memory.
    #[arg(long, default_value_t = 8 << 20)]
    pause_output: usize,
    /// Spin this many microseconds polling (yielding the CPU between polls) before each
    /// blocking wait (0: never): lower latency at one connection when the client runs
    /// on another CPU, at the cost of a busy CPU while idle-ish.
    #[arg(long, default_value_t = 0, value_name = "US")]
    busy_poll_us: u64,
    /// I/O driver: `uring` (io_uring: multishot accept and recv, sends batched into one
    /// submission per loop turn), `epoll`, or `auto` (io_uring when the kernel has every
    /// operation it needs; otherwise epoll, and the log says why).
    #[arg(long, default_value = "auto", value_name = "auto|uring|epoll")]
    io: IoDriver,
}

/// Waits until a stop signal arrives (returns its number) or an engine stops on its own
/// (returns `None`). Blocks with no timeout: the group's stop notifier wakes it for an
/// engine that died, so an idle server's main thread never runs.
fn wait_for_stop(signals: &OwnedFd, group: &Group) -> std::io::Result<Option<u32>> {
    use rustix::event::{PollFd, PollFlags};
    loop {
        let mut fds = [
            PollFd::new(signals, PollFlags::IN),
            PollFd::from_borrowed_fd(group.stopped_fd(), PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, None) {
            Ok(_) if !fds[1].revents().is_empty() => return Ok(None),
            Ok(_) => match read_signal(signals.as_fd()) {
                Ok(signo) => return Ok(Some(signo)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            },
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Raises the soft fd limit to the hard one (1024 by default is far below what a server
/// needs); the engine still pauses accepting cleanly if even that runs out.
fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise RLIMIT_NOFILE");
        }
    }
}

/// Makes freed large buffers go back to the kernel. glibc raises its mmap threshold
/// after each large free, so later large values would come from the heap, which is
/// not returned after a FLUSHALL; a fixed threshold (setting it turns the dynamic one
/// off) keeps every buffer above 128 KiB in its own mapping, unmapped when freed.
fn return_large_frees_to_the_kernel() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tunables; called before any other thread
    // of this process exists, so no allocation is in flight.
    if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) } != 1 {
        tracing::debug!("mallopt(M_MMAP_THRESHOLD) refused");
    }
}

/// Runs `greenfd serve`.
pub fn run(args: Args) -> CliResult {
    return_large_frees_to_the_kernel();
    raise_fd_limit();
    let signals = stop_signal_fd()?;
    let config = Config {
        max_output: args.max_output,
        pause_output: args.pause_output,
        busy_poll: std::time::Duration::from_micros(args.busy_poll_us),
        io: args.io,
        ..Config::default()
    };
    let threads = args.threads.max(1);
    let (group, mode) = if args.echo {
        let g = Group::spawn(threads, args.addr, config, |_| (Raw::default(), Echo))?;
        (g, "echo")
    } else if args.lines {
        let g = Group::spawn(threads, args.addr, config, |_| (Lines::default(), Echo))?;
        (g, "lines")
    } else {
        // One shard per thread is plenty: a request holds its shard for nanoseconds.
        let db = Db::new(if threads == 1 { 1 } else { threads * 16 });
        // Keys past their deadline are removed even when no client touches them.
        db.start_active_expiry(std::time::Duration::from_millis(100))?;
        let g = Group::spawn(threads, args.addr, config, |_| {
            (Resp::default(), RespServer::new(db.clone()))
        })?;
        (g, "resp")
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "greenfd serve: listening on {} ({mode}, {threads} thread{}, {})",
            group.local_addr(),
            if threads == 1 { "" } else { "s" },
            group.io_driver(),
        )?;
        out.flush()?;
    }
    match wait_for_stop(&signals, &group)? {
        Some(sig) => tracing::info!(signal = sig, "stopping"),
        None => {
            // An engine ended on its own: stop the others and say why it ended.
            return match group.shutdown_and_join() {
                Err(e) => Err(format!("an engine stopped: {e}").into()),
                Ok(()) => Err("an engine stopped without being asked to".into()),
            };
        }
    }
    group.shutdown_and_join()?;
    eprintln!("greenfd serve: stopped");
    Ok(())
}
