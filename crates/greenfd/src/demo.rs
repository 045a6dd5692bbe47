//! `greenfd demo`: libvpoll's fork scenario on greenfd-vpoll.
//!
//! The parent creates a vpoll fd and watches it with epoll; a forked child, one interval
//! apart, does ADD IN, ADD IN, ADD OUT, ADD HUP through the inherited descriptor, then
//! exits. The parent waits with a timeout of a third of the interval, prints `timeout` or
//! `GOT event %x` as the reference program does, DELs what it got, and stops at HUP.
//! On a kernel with vpoll support, and with the Fuse backend, the output is
//! `timeout timeout GOT event 1` ×2, `timeout timeout GOT event 4`, `timeout timeout
//! GOT event 10` (one per line); the emulated backend reports the hang-up as `2011`.
//!
//! The reference program times everything relatively, so the third wait of each round
//! ends exactly when the next event is due and the line count depends on scheduling.
//! Here both processes follow one clock: the parent's waits end on a grid of thirds of
//! the interval counted from a common start, and the child acts in the middle of every
//! third cell. Scheduling noise up to a sixth of the interval leaves the output unchanged.

use crate::CliResult;
use greenfd_vpoll::{Backend, Builder, Events, Op, VpollFd, ctl_fd};
use rustix::event::epoll;
use rustix::process::{Pid, WaitOptions};
use rustix::thread::ClockId;
use rustix::time::Timespec;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

/// Options of `greenfd demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Milliseconds between the child's operations (the reference uses 3000); the parent's
    /// epoll_wait timeout is a third of it.
    #[arg(long, default_value_t = 3000)]
    interval_ms: u64,
    /// Backend to use (kernel, device, fuse, emulated); default: GREENFD_VPOLL_BACKEND,
    /// else the best available.
    #[arg(long)]
    backend: Option<String>,
}

/// The shortest interval accepted: below it, a sixth of the interval (the scheduling
/// noise the output tolerates) is only a few milliseconds.
const MIN_INTERVAL_MS: u64 = 30;
/// The longest interval accepted (one hour), so that time arithmetic cannot overflow.
const MAX_INTERVAL_MS: u64 = 3_600_000;

/// What the child does, one interval apart, as libvpoll's example.
const STEPS: [Events; 4] = [Events::IN, Events::IN, Events::OUT, Events::HUP];

/// Waits the parent makes per step: two timeouts and one event.
const WAITS_PER_STEP: u32 = 3;

/// What the parent asks epoll for, as the reference program does.
fn watched() -> epoll::EventFlags {
    use epoll::EventFlags as F;
    F::IN | F::RDHUP | F::ERR | F::OUT | F::HUP | F::PRI
}

/// Runs `greenfd demo`.
pub fn run(args: Args) -> CliResult {
    if !(MIN_INTERVAL_MS..=MAX_INTERVAL_MS).contains(&args.interval_ms) {
        return Err(format!(
            "--interval-ms must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS} (got {})",
            args.interval_ms
        )
        .into());
    }
    let mut builder = Builder::new();
    if let Some(name) = &args.backend {
        builder = builder.backend(name.parse::<Backend>()?);
    }
    let v = builder.build()?;
    eprintln!(
        "greenfd demo: backend {}, interval {} ms, epoll_wait timeout {} ms{}",
        v.backend(),
        args.interval_ms,
        args.interval_ms / 3,
        if v.backend() == Backend::Emulated {
            " (emulated: a hang-up reads as HUP|IN|RDHUP = 2011)"
        } else {
            ""
        }
    );
    let epfd = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    epoll::add(&epfd, &v, epoll::EventData::new_u64(0), watched())?;

    let schedule = Schedule::new(Duration::from_millis(args.interval_ms));
    let child = fork_child(&v, &schedule)?;
    let result = parent(&v, &epfd, &schedule);
    if result.is_err() {
        // The child might still be sleeping towards its next step: do not wait for it.
        match rustix::process::kill_process(child, rustix::process::Signal::KILL) {
            // ESRCH: it already exited, and waitpid below reaps it.
            Ok(()) | Err(rustix::io::Errno::SRCH) => {}
            Err(e) => eprintln!("greenfd demo: could not stop the child: {e}"),
        }
    }
    let status = rustix::process::waitpid(Some(child), WaitOptions::empty())?
        .map(|(_, s)| s)
        .ok_or("waitpid returned no status")?;
    result?;
    match status.exit_status() {
        Some(0) => {}
        Some(code) if code as usize <= STEPS.len() => {
            return Err(
                format!("the child failed at step {code}: its vpoll_ctl was refused").into(),
            );
        }
        Some(_) => return Err("the child could not tie its life to the parent's".into()),
        None => return Err(format!("the child ended abnormally ({status:?})").into()),
    }
    v.close()?;
    Ok(())
}

/// The common clock of parent and child.
struct Schedule {
    /// `CLOCK_MONOTONIC` at the start, before the fork.
    start: Duration,
    /// Time between the child's operations.
    interval: Duration,
}

impl Schedule {
    /// A schedule starting now.
    fn new(interval: Duration) -> Self {
        Schedule {
            start: monotonic_now(),
            interval,
        }
    }

    /// When the child does step `i` (from 0): the middle of the last third of interval
    /// `i`, i.e. `(i + 1) × interval − interval / 6` after the start.
    fn step_at(&self, i: u32) -> Duration {
        self.start + self.interval * (i + 1) - self.interval / 6
    }

    /// When the parent's wait number `k` (from 0) ends: `(k + 1) × interval / 3`.
    fn wait_ends(&self, k: u32) -> Duration {
        self.start + self.interval * (k + 1) / 3
    }
}

/// `CLOCK_MONOTONIC` now, as a duration since its epoch.
fn monotonic_now() -> Duration {
    let t = rustix::time::clock_gettime(ClockId::Monotonic);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Forks the child that performs [`STEPS`] on `v` and returns its pid.
fn fork_child(v: &VpollFd, schedule: &Schedule) -> Result<Pid, Box<dyn std::error::Error>> {
    // Computed before the fork: the child must not allocate or take locks.
    let deadlines: [Timespec; STEPS.len()] = std::array::from_fn(|i| {
        let at = schedule.step_at(i as u32);
        Timespec {
            tv_sec: at.as_secs() as _,
            tv_nsec: at.subsec_nanos() as _,
        }
    });
    let fd = v.as_fd();
    let parent = rustix::process::getpid();
    // A no-op control through the same entry point the child uses: lazily initialised
    // state on that path (statics, tracing callsites) is set up here, not after the fork.
    ctl_fd(fd, Op::Add, Events::empty())?;
    std::io::stdout().flush()?;
    // SAFETY: the child runs only `child`: prctl, getppid, clock_nanosleep, `ctl_fd`
    // (greenfd-vpoll's entry point for a forked child that inherited the fd: control
    // syscalls on that fd) and `_exit`; it never returns into code that could wait on
    // another thread's lock.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error().into()),
        0 => {
            let code = child(parent, fd, &deadlines);
            // SAFETY: ends the child without running the parent's exit handlers or destructors.
            unsafe { libc::_exit(code) }
        }
        pid => Ok(Pid::from_raw(pid).ok_or("fork returned an invalid pid")?),
    }
}

/// The child's whole life: sleep until each deadline, then ADD that step's events.
/// Returns the exit status: 0, or the 1-based step whose control failed.
fn child(parent: Pid, fd: BorrowedFd<'_>, deadlines: &[Timespec; STEPS.len()]) -> i32 {
    // If the parent is interrupted (Ctrl-C), the child must not linger for the rest of the
    // schedule. The getppid check covers a parent that died before the prctl.
    let orphaned =
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
            .is_err()
            || rustix::process::getppid() != Some(parent);
    if orphaned {
        return STEPS.len() as i32 + 1;
    }
    for (i, (deadline, events)) in deadlines.iter().zip(STEPS).enumerate() {
        // A signal cuts the sleep short; the deadline is absolute, so sleep again.
        while let Err(rustix::io::Errno::INTR) =
            rustix::thread::clock_nanosleep_absolute(ClockId::Monotonic, deadline)
        {}
        if ctl_fd(fd, Op::Add, events).is_err() {
            return i as i32 + 1;
        }
    }
    0
}

/// The parent's loop: prints one line per wait, DELs what it got, stops at HUP.
fn parent(v: &VpollFd, epfd: &impl AsFd, schedule: &Schedule) -> CliResult {
    // A backend that loses events must end with an error, not wait forever.
    let max_waits = WAITS_PER_STEP * STEPS.len() as u32 + WAITS_PER_STEP;
    let mut out = std::io::stdout().lock();
    for k in 0..max_waits {
        let Some(got) = wait_until(epfd, schedule.wait_ends(k))? else {
            writeln!(out, "timeout")?;
            continue;
        };
        writeln!(out, "GOT event {:x}", got.bits())?;
        let events = Events::from_bits_truncate(got.bits());
        if let Err(e) = v.del(events) {
            // The reference ignores DEL's result; the emulated backend cannot clear HUP.
            eprintln!("greenfd demo: note: DEL {events:?} refused: {e}");
            if !events.contains(Events::HUP) {
                return Err(e.into());
            }
        }
        if events.contains(Events::HUP) {
            return Ok(());
        }
    }
    Err(format!("no EPOLLHUP after {max_waits} waits: the backend lost an event").into())
}

/// One `epoll_wait` that ends at `deadline` (monotonic): the events of the single watched
/// fd, or `None` on timeout.
fn wait_until(
    epfd: &impl AsFd,
    deadline: Duration,
) -> Result<Option<epoll::EventFlags>, Box<dyn std::error::Error>> {
    let mut events = Vec::with_capacity(1);
    loop {
        let timeout = deadline.saturating_sub(monotonic_now());
        let ts = Timespec {
            tv_sec: timeout.as_secs() as _,
            tv_nsec: timeout.subsec_nanos() as _,
        };
        match epoll::wait(epfd, rustix::buffer::spare_capacity(&mut events), Some(&ts)) {
            Ok(_) => break,
            // A signal cut the wait short: wait for the rest.
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let got = events.first().map(|e| e.flags);
    tracing::trace!(?got, ?deadline, "demo epoll_wait");
    Ok(got)
}
