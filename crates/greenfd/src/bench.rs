//! `greenfd bench`: greenfd measured side by side with its peers, as ratios.
//!
//! This machine is shared and noisy: absolute figures drift by tens of percent between
//! runs, ratios measured in the same run much less. So every figure here is a ratio
//! against a peer measured in the same process run, the measurements alternate (each
//! round runs every probe once, in a rotated order, so none always runs warm or cold),
//! and each row reports the median of the rounds with its spread.
//!
//! Anything that crosses threads is measured under both placements: unpinned, and with
//! every thread of the process pinned to one CPU (a cross-CPU wake-up costs ~25 µs in
//! this VM, a same-CPU switch ~2 µs), and a peer always runs under the same placement
//! as what it is compared with.
//!
//! Structure, so other scenarios can be added: a scenario builds a list of [`Probe`]s
//! (named closures that return nanoseconds per operation for one sample) and a list of
//! [`Compare`]s (which probe is ours, which is the peer, and the goal); [`measure`]
//! samples the probes alternately and [`rows`] turns samples into report rows.

use crate::CliResult;
use greenfd_vpoll::{Backend, Builder, Events, VpollFd};
use rustix::event::{EventfdFlags, Timespec, epoll, eventfd};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// vpoll cycle, create+close and the Fuse thread round trip (DESIGN §2).
    Vpoll,
    /// Echo ping-pong against tokio and mio (not implemented yet).
    Echo,
    /// Cross-thread wake → task runs (not implemented yet).
    Wake,
    /// RESP server against redis-server (not implemented yet).
    Resp,
    /// Idle memory with many connections (not implemented yet).
    Memory,
    /// Every scenario.
    All,
}

/// Options of `greenfd bench`.
#[derive(clap::Args)]
pub struct Args {
    /// The scenario to measure.
    #[arg(value_enum, default_value = "vpoll")]
    scenario: Scenario,
    /// A short run (a few seconds): fewer rounds, shorter samples.
    #[arg(long)]
    quick: bool,
    /// Also write the rows as JSON to this file (e.g. bench-report.json).
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

/// Runs `greenfd bench`.
pub fn run(args: Args) -> CliResult {
    let plan = if args.quick { Plan::QUICK } else { Plan::FULL };
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    for s in [
        Scenario::Vpoll,
        Scenario::Echo,
        Scenario::Wake,
        Scenario::Resp,
        Scenario::Memory,
    ] {
        if args.scenario != s && args.scenario != Scenario::All {
            continue;
        }
        match s {
            Scenario::Vpoll => rows.extend(vpoll(plan)?),
            other => missing.push(format!("{other:?}").to_lowercase()),
        }
    }
    if !rows.is_empty() {
        print!("{}", table(&rows));
    }
    if let Some(path) = &args.json {
        std::fs::write(path, json(&rows, plan))?;
        eprintln!("wrote {}", path.display());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "`greenfd bench {}` is not implemented yet",
            missing.join("|")
        )
        .into())
    }
}

/// How long to measure.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Rounds (samples per probe and placement).
    rounds: usize,
    /// Wall time of one sample.
    budget: Duration,
}

impl Plan {
    /// The default: about 20 s for `vpoll`.
    const FULL: Plan = Plan {
        rounds: 11,
        budget: Duration::from_millis(100),
    };
    /// `--quick`: a few seconds.
    const QUICK: Plan = Plan {
        rounds: 5,
        budget: Duration::from_millis(20),
    };
}

// ---------------------------------------------------------------------------------
// Measuring core: probes, alternating samples, statistics.
// ---------------------------------------------------------------------------------

/// One measured quantity: `sample(budget)` returns nanoseconds per operation.
struct Probe {
    /// Unique name, referenced by [`Compare`].
    name: &'static str,
    /// Runs the operation repeatedly for about the budget.
    sample: Box<dyn FnMut(Duration) -> io::Result<f64>>,
}

impl Probe {
    /// A probe that times `op` (one operation per call).
    fn new(name: &'static str, mut op: impl FnMut() -> io::Result<()> + 'static) -> Probe {
        Probe {
            name,
            sample: Box::new(move |budget| ns_per_op(budget, &mut op)),
        }
    }
}

/// Mean nanoseconds per call of `op` over about `budget` of wall time.
fn ns_per_op(budget: Duration, op: &mut dyn FnMut() -> io::Result<()>) -> io::Result<f64> {
    // Warm caches, branch predictors and lazily created state before the clock starts.
    for _ in 0..32 {
        op()?;
    }
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < budget {
        for _ in 0..16 {
            op()?;
        }
        n += 16;
    }
    Ok(start.elapsed().as_nanos() as f64 / n as f64)
}

/// Repeated measurements of one quantity.
#[derive(Clone, Debug, Default)]
struct Samples(Vec<f64>);

impl Samples {
    /// The median (NaN when empty).
    fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// (max - min) / median: how much the rounds disagree.
    fn spread(&self) -> f64 {
        let lo = self.0.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.0.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (hi - lo) / self.median()
    }
}

/// Samples every probe `plan.rounds` times. Within a round the probes take turns in
/// short slices (the order rotating every slice), so a burst of noise from the rest of
/// the machine hits ours and the peer alike; a probe's sample for the round is the mean
/// of its slices. Returns the samples in probe order.
fn measure(probes: &mut [Probe], plan: Plan) -> io::Result<Vec<Samples>> {
    let slice = plan.budget / SLICES;
    let mut out = vec![Samples::default(); probes.len()];
    for _round in 0..plan.rounds {
        let mut sums = vec![0.0; probes.len()];
        for turn in 0..SLICES as usize {
            for k in 0..probes.len() {
                let i = (k + turn) % probes.len();
                sums[i] += (probes[i].sample)(slice)?;
            }
        }
        for (samples, sum) in out.iter_mut().zip(sums) {
            samples.0.push(sum / f64::from(SLICES));
        }
    }
    Ok(out)
}

/// Slices per round and probe (see [`measure`]).
const SLICES: u32 = 10;

/// What a row must show to pass.
#[derive(Clone, Copy, Debug)]
enum Goal {
    /// ours / peer ≤ this.
    RatioAtMost(f64),
    /// ours ≤ this many nanoseconds, whatever the peer.
    NanosAtMost(f64),
    /// Reported for context only.
    Info,
}

/// One comparison a scenario reports.
struct Compare {
    /// Row label (the placement is appended).
    label: &'static str,
    /// Probe name of greenfd's figure.
    ours: &'static str,
    /// Probe name of the peer.
    peer: &'static str,
    /// The goal.
    goal: Goal,
}

/// One line of the report.
#[derive(Clone, Debug)]
struct Row {
    /// What was measured, with its placement.
    scenario: String,
    /// `unpinned` or `pinned`.
    placement: &'static str,
    /// greenfd's probe name and samples (ns per op).
    ours_name: &'static str,
    /// greenfd's samples.
    ours: Samples,
    /// The peer's probe name.
    peer_name: &'static str,
    /// The peer's samples.
    peer: Samples,
    /// The goal.
    goal: Goal,
}

impl Row {
    /// ours / peer of the medians.
    fn ratio(&self) -> f64 {
        self.ours.median() / self.peer.median()
    }

    /// Whether the goal is met (`None` for information rows).
    fn pass(&self) -> Option<bool> {
        match self.goal {
            Goal::RatioAtMost(r) => Some(self.ratio() <= r),
            Goal::NanosAtMost(ns) => Some(self.ours.median() <= ns),
            Goal::Info => None,
        }
    }

    /// The goal as text.
    fn goal_text(&self) -> String {
        match self.goal {
            Goal::RatioAtMost(r) => format!("≤ {r:.2}×"),
            Goal::NanosAtMost(ns) => format!("≤ {:.0} µs", ns / 1000.0),
            Goal::Info => "info".into(),
        }
    }
}

/// Report rows for `compares`, looking the probes up by name; comparisons whose
/// probes did not run (an unavailable backend) are left out.
fn rows(
    compares: &[Compare],
    probes: &[Probe],
    samples: &[Samples],
    placement: Placement,
) -> Vec<Row> {
    let find = |name| {
        probes
            .iter()
            .position(|p| p.name == name)
            .map(|i| samples[i].clone())
    };
    compares
        .iter()
        .filter_map(|c| {
            Some(Row {
                scenario: format!("{} ({})", c.label, placement.label()),
                placement: placement.label(),
                ours_name: c.ours,
                ours: find(c.ours)?,
                peer_name: c.peer,
                peer: find(c.peer)?,
                goal: c.goal,
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------
// CPU placement.
// ---------------------------------------------------------------------------------

/// Where the threads of the process may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// Wherever the scheduler puts them.
    Unpinned,
    /// Every thread on one CPU.
    Pinned,
}

impl Placement {
    /// Short label for the report.
    fn label(self) -> &'static str {
        match self {
            Placement::Unpinned => "unpinned",
            Placement::Pinned => "pinned",
        }
    }
}

/// Every thread of this process (including helper threads such as the Fuse server).
fn threads() -> io::Result<Vec<rustix::thread::Pid>> {
    let mut tids = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")? {
        let name = entry?.file_name();
        if let Some(tid) = name
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .and_then(rustix::thread::Pid::from_raw)
        {
            tids.push(tid);
        }
    }
    Ok(tids)
}

/// Applies `placement` to every thread of the process; threads created later inherit
/// it from their creator. Returns a guard that restores the previous affinity.
fn place(placement: Placement) -> io::Result<AffinityGuard> {
    use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
    let saved = sched_getaffinity(None)?;
    if placement == Placement::Pinned {
        let cpu = (0..CpuSet::MAX_CPU)
            .find(|&c| saved.is_set(c))
            .ok_or_else(|| io::Error::other("empty CPU affinity"))?;
        let mut one = CpuSet::new();
        one.set(cpu);
        for tid in threads()? {
            match sched_setaffinity(Some(tid), &one) {
                // The thread exited between listing and pinning: nothing to pin.
                Ok(()) | Err(rustix::io::Errno::SRCH) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(AffinityGuard { saved })
}

/// Restores every thread's affinity when dropped.
struct AffinityGuard {
    /// The affinity before [`place`].
    saved: rustix::thread::CpuSet,
}

impl Drop for AffinityGuard {
    fn drop(&mut self) {
        if let Ok(tids) = threads() {
            for tid in tids {
                // Restoring is best effort: a thread may have exited meanwhile.
                let _ = rustix::thread::sched_setaffinity(Some(tid), &self.saved);
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The vpoll scenario (DESIGN §2).
// ---------------------------------------------------------------------------------

/// The comparisons `greenfd bench vpoll` reports (rows whose probes did not run, for
/// unavailable backends, are left out).
const VPOLL_COMPARE: [Compare; 12] = [
    Compare {
        label: "kernel cycle vs eventfd floor",
        ours: "kernel cycle",
        peer: "eventfd cycle",
        goal: Goal::Info,
    },
    Compare {
        label: "kernel create+close",
        ours: "kernel create+close",
        peer: "socketpair create+close",
        goal: Goal::NanosAtMost(10_000.0),
    },
    Compare {
        label: "device cycle vs eventfd floor",
        ours: "device cycle",
        peer: "eventfd cycle",
        goal: Goal::Info,
    },
    Compare {
        label: "device create+close",
        ours: "device create+close",
        peer: "socketpair create+close",
        goal: Goal::NanosAtMost(10_000.0),
    },
    Compare {
        label: "emulated cycle vs bare socketpair",
        ours: "emulated cycle",
        peer: "socketpair cycle",
        goal: Goal::RatioAtMost(1.10),
    },
    Compare {
        label: "bare socketpair vs eventfd floor",
        ours: "socketpair cycle",
        peer: "eventfd cycle",
        goal: Goal::Info,
    },
    Compare {
        label: "emulated cycle vs eventfd floor",
        ours: "emulated cycle",
        peer: "eventfd cycle",
        goal: Goal::Info,
    },
    Compare {
        label: "emulated create+close",
        ours: "emulated create+close",
        peer: "socketpair create+close",
        goal: Goal::NanosAtMost(10_000.0),
    },
    Compare {
        label: "emulated create+close vs libvpoll emulator's syscalls",
        ours: "emulated create+close",
        peer: "libvpoll-style create+close",
        goal: Goal::Info,
    },
    Compare {
        label: "fuse cycle vs thread round trip",
        ours: "fuse cycle",
        peer: "eventfd thread round trip",
        goal: Goal::RatioAtMost(2.0),
    },
    Compare {
        label: "fuse cycle vs eventfd floor",
        ours: "fuse cycle",
        peer: "eventfd cycle",
        goal: Goal::Info,
    },
    Compare {
        label: "fuse create+close",
        ours: "fuse create+close",
        peer: "socketpair create+close",
        goal: Goal::Info,
    },
];

/// Measures the vpoll scenario under both placements.
fn vpoll(plan: Plan) -> Result<Vec<Row>, Box<dyn std::error::Error>> {
    let backends: Vec<Backend> = Backend::ALL
        .into_iter()
        .filter(|b| match b.probe() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("{b} rows skipped: {e}");
                false
            }
        })
        .collect();
    let mut out = Vec::new();
    for placement in [Placement::Unpinned, Placement::Pinned] {
        let _guard = place(placement)?;
        let mut probes = vpoll_probes(&backends)?;
        let samples = measure(&mut probes, plan)?;
        out.extend(rows(&VPOLL_COMPARE, &probes, &samples, placement));
    }
    Ok(out)
}

/// Probe names of one backend's cycle and create+close.
fn backend_probe_names(b: Backend) -> (&'static str, &'static str) {
    match b {
        Backend::Kernel => ("kernel cycle", "kernel create+close"),
        Backend::Device => ("device cycle", "device create+close"),
        Backend::Fuse => ("fuse cycle", "fuse create+close"),
        Backend::Emulated => ("emulated cycle", "emulated create+close"),
    }
}

/// The probes of the vpoll scenario: the floors, and a cycle and create+close for
/// each available backend (plus the thread round trip that is the Fuse floor).
fn vpoll_probes(backends: &[Backend]) -> io::Result<Vec<Probe>> {
    let mut probes = vec![
        eventfd_cycle()?,
        socketpair_cycle()?,
        Probe::new("socketpair create+close", || {
            let pair = socketpair()?;
            drop(pair);
            Ok(())
        }),
        Probe::new("libvpoll-style create+close", libvpoll_style_create_close),
    ];
    for &b in backends {
        let (cycle, create) = backend_probe_names(b);
        probes.push(vpoll_cycle(cycle, b)?);
        probes.push(create_close(create, b));
        if b == Backend::Fuse {
            probes.push(thread_round_trip());
        }
    }
    Ok(probes)
}

/// How long a cycle waits before declaring the event lost.
const CYCLE_TIMEOUT: Duration = Duration::from_secs(5);

/// An epoll instance watching `fd` for IN, level-triggered.
fn epoll_in(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let ep = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    epoll::add(&ep, fd, epoll::EventData::new_u64(0), epoll::EventFlags::IN)?;
    Ok(ep)
}

/// Waits until `ep` reports an event; a timeout is an error, not a hang.
fn wait_one(ep: &OwnedFd) -> io::Result<()> {
    let mut buf = [std::mem::MaybeUninit::<epoll::Event>::uninit(); 1];
    let timeout = Timespec::try_from(CYCLE_TIMEOUT).map_err(io::Error::other)?;
    let (ready, _) = epoll::wait(ep, &mut buf, Some(&timeout))?;
    if ready.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "epoll_wait: the event never came",
        ));
    }
    Ok(())
}

/// The physical floor: eventfd write → epoll_wait → read.
fn eventfd_cycle() -> io::Result<Probe> {
    let efd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
    let ep = epoll_in(efd.as_fd())?;
    Ok(Probe::new("eventfd cycle", move || {
        rustix::io::write(&efd, &1u64.to_ne_bytes())?;
        wait_one(&ep)?;
        let mut buf = [0u8; 8];
        rustix::io::read(&efd, &mut buf)?;
        Ok(())
    }))
}

/// A Unix stream socketpair, as the Emulated backend makes it.
fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// The Emulated backend's own floor: send → epoll_wait → recv on a bare socketpair.
fn socketpair_cycle() -> io::Result<Probe> {
    let (a, b) = socketpair()?;
    let ep = epoll_in(a.as_fd())?;
    Ok(Probe::new("socketpair cycle", move || {
        rustix::net::send(&b, b"i", SendFlags::DONTWAIT | SendFlags::NOSIGNAL)?;
        wait_one(&ep)?;
        let mut buf = [0u8; 64];
        rustix::net::recv(&a, &mut buf, RecvFlags::DONTWAIT)?;
        Ok(())
    }))
}

/// The system calls the known C emulator (libvpoll's socketpair mode) makes to create
/// and close an fd with no events: a non-blocking pair, close-on-exec and a minimal
/// send buffer set on each end one call at a time, two 1-byte writes to clear OUT.
/// The DESIGN's "12 µs" for that emulator is this sequence plus its fd table.
fn libvpoll_style_create_close() -> io::Result<()> {
    use rustix::io::{FdFlags, fcntl_setfd};
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK,
        None,
    )?;
    fcntl_setfd(&a, FdFlags::CLOEXEC)?;
    fcntl_setfd(&b, FdFlags::CLOEXEC)?;
    rustix::net::sockopt::set_socket_send_buffer_size(&a, 1)?;
    rustix::net::sockopt::set_socket_send_buffer_size(&b, 1)?;
    rustix::io::write(&a, &[0])?;
    rustix::io::write(&a, &[0])?;
    Ok(())
}

/// A vpoll cycle: ADD IN → epoll_wait → DEL IN.
fn vpoll_cycle(name: &'static str, backend: Backend) -> io::Result<Probe> {
    let v = Builder::new().backend(backend).build()?;
    let ep = epoll_in(v.as_fd())?;
    Ok(Probe::new(name, move || {
        v.add(Events::IN)?;
        wait_one(&ep)?;
        v.del(Events::IN)?;
        Ok(())
    }))
}

/// Creating and closing one vpoll fd.
fn create_close(name: &'static str, backend: Backend) -> Probe {
    Probe::new(name, move || {
        let v: VpollFd = Builder::new().backend(backend).build()?;
        v.close()?;
        Ok(())
    })
}

/// The Fuse backend's floor: an eventfd ping-pong with a second thread (one round
/// trip per operation). The partner thread lives for one sample.
fn thread_round_trip() -> Probe {
    Probe {
        name: "eventfd thread round trip",
        sample: Box::new(|budget| {
            let ping = eventfd(0, EventfdFlags::CLOEXEC)?;
            let pong = eventfd(0, EventfdFlags::CLOEXEC)?;
            /// A ping value that tells the partner to stop.
            const STOP: u64 = 1 << 32;
            std::thread::scope(|s| {
                let partner = s.spawn(|| -> io::Result<()> {
                    let mut buf = [0u8; 8];
                    loop {
                        rustix::io::read(&ping, &mut buf)?;
                        if u64::from_ne_bytes(buf) >= STOP {
                            return Ok(());
                        }
                        rustix::io::write(&pong, &1u64.to_ne_bytes())?;
                    }
                });
                let mut op = || -> io::Result<()> {
                    rustix::io::write(&ping, &1u64.to_ne_bytes())?;
                    let mut buf = [0u8; 8];
                    rustix::io::read(&pong, &mut buf)?;
                    Ok(())
                };
                let result = ns_per_op(budget, &mut op);
                rustix::io::write(&ping, &STOP.to_ne_bytes())?;
                partner
                    .join()
                    .map_err(|_| io::Error::other("round-trip partner panicked"))??;
                result
            })
        }),
    }
}

// ---------------------------------------------------------------------------------
// Output: table and JSON.
// ---------------------------------------------------------------------------------

/// Nanoseconds as a short human figure.
fn fmt_ns(ns: f64) -> String {
    if !ns.is_finite() {
        "n/a".into()
    } else if ns >= 10_000.0 {
        format!("{:.1} µs", ns / 1000.0)
    } else {
        format!("{:.2} µs", ns / 1000.0)
    }
}

/// The rows as an aligned text table.
fn table(rows: &[Row]) -> String {
    let header = ["scenario", "ours", "peer", "", "ratio", "goal", "result"].map(String::from);
    let body: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.scenario.clone(),
                format!(
                    "{} ±{:.0}%",
                    fmt_ns(r.ours.median()),
                    r.ours.spread() * 50.0
                ),
                format!(
                    "{} ±{:.0}%",
                    fmt_ns(r.peer.median()),
                    r.peer.spread() * 50.0
                ),
                r.peer_name.to_string(),
                format!("{:.2}×", r.ratio()),
                r.goal_text(),
                match r.pass() {
                    Some(true) => "pass".into(),
                    Some(false) => "FAIL".into(),
                    None => "-".into(),
                },
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &body {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&body) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A number as JSON (`null` when not finite).
fn json_num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".into()
    }
}

/// The rows as a bench-report.json document.
fn json(rows: &[Row], plan: Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{{\n  \"unit\": \"ns\",\n  \"rounds\": {},\n  \"sample_ms\": {},\n  \"rows\": [",
        plan.rounds,
        plan.budget.as_millis()
    );
    for (i, r) in rows.iter().enumerate() {
        let samples = |s: &Samples| {
            s.0.iter()
                .map(|v| json_num(*v))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (goal_kind, goal_value) = match r.goal {
            Goal::RatioAtMost(x) => ("ratio_at_most", json_num(x)),
            Goal::NanosAtMost(x) => ("ns_at_most", json_num(x)),
            Goal::Info => ("info", "null".into()),
        };
        let _ = writeln!(
            out,
            "    {{\"scenario\": {}, \"placement\": {}, \"ours\": {}, \"ours_median\": {}, \
             \"ours_spread\": {}, \"ours_samples\": [{}], \"peer\": {}, \"peer_median\": {}, \
             \"peer_spread\": {}, \"peer_samples\": [{}], \"ratio\": {}, \"goal\": {}, \
             \"goal_value\": {}, \"pass\": {}}}{}",
            json_str(&r.scenario),
            json_str(r.placement),
            json_str(r.ours_name),
            json_num(r.ours.median()),
            json_num(r.ours.spread()),
            samples(&r.ours),
            json_str(r.peer_name),
            json_num(r.peer.median()),
            json_num(r.peer.spread()),
            samples(&r.peer),
            json_num(r.ratio()),
            json_str(goal_kind),
            goal_value,
            r.pass().map_or("null".into(), |p| p.to_string()),
            if i + 1 < rows.len() { "," } else { "" },
        );
    }
    out.push_str("  ]\n}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let s = Samples(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!(s.median(), 2.5);
        assert_eq!(s.spread(), 3.0 / 2.5);
        assert!(Samples::default().median().is_nan());
    }

    #[test]
    fn measure_interleaves_and_collects_per_probe() {
        let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
        let probe = |name: &'static str, v: f64| {
            let order = order.clone();
            Probe {
                name,
                sample: Box::new(move |_| {
                    order.borrow_mut().push(name);
                    Ok(v)
                }),
            }
        };
        let mut probes = vec![probe("a", 1.0), probe("b", 2.0)];
        let plan = Plan {
            rounds: 2,
            budget: Duration::ZERO,
        };
        let s = measure(&mut probes, plan).unwrap();
        let order = order.borrow();
        assert_eq!(order.len(), 2 * 2 * SLICES as usize);
        assert_eq!(order[..4], ["a", "b", "b", "a"]);
        assert_eq!((s[0].median(), s[1].median()), (1.0, 2.0));
        let rows = rows(&VPOLL_COMPARE[..1], &probes, &s, Placement::Pinned);
        assert!(rows.is_empty(), "probe names do not match, so no row");
    }

    #[test]
    fn json_escapes_and_is_balanced() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        let row = Row {
            scenario: "x (pinned)".into(),
            placement: "pinned",
            ours_name: "o",
            ours: Samples(vec![1.0, 2.0]),
            peer_name: "p",
            peer: Samples(vec![2.0]),
            goal: Goal::RatioAtMost(1.1),
        };
        assert_eq!(row.pass(), Some(true));
        let doc = json(&[row.clone(), row], Plan::QUICK);
        assert_eq!(doc.matches('{').count(), doc.matches('}').count());
        assert!(doc.contains("\"ratio\": 0.750"));
        assert!(doc.contains("\"pass\": true"));
    }

    #[test]
    fn vpoll_probes_measure_real_cycles_and_make_rows() {
        let mut probes = vpoll_probes(&[Backend::Emulated]).unwrap();
        let plan = Plan {
            rounds: 1,
            budget: Duration::from_millis(10),
        };
        let samples = measure(&mut probes, plan).unwrap();
        for (p, s) in probes.iter().zip(&samples) {
            assert_eq!(s.0.len(), 1, "{}", p.name);
            assert!(s.median().is_finite() && s.median() > 0.0, "{}", p.name);
        }
        let rows = rows(&VPOLL_COMPARE, &probes, &samples, Placement::Unpinned);
        let names: Vec<&str> = rows.iter().map(|r| r.ours_name).collect();
        let expect = [
            "emulated cycle",
            "socketpair cycle",
            "emulated cycle",
            "emulated create+close",
            "emulated create+close",
        ];
        assert_eq!(names, expect);
        assert!(rows.iter().all(|r| r.ratio().is_finite()));
        let table = table(&rows);
        assert_eq!(table.lines().count(), 1 + rows.len());
        assert!(table.contains("emulated cycle vs bare socketpair (unpinned)"));
    }

    #[test]
    fn pinning_applies_to_every_thread_and_is_undone() {
        use rustix::thread::sched_getaffinity;
        let before = sched_getaffinity(None).unwrap().count();
        {
            let _guard = place(Placement::Pinned).unwrap();
            assert_eq!(sched_getaffinity(None).unwrap().count(), 1);
            let child = std::thread::spawn(|| sched_getaffinity(None).unwrap().count());
            assert_eq!(child.join().unwrap(), 1, "threads inherit the pinning");
        }
        assert_eq!(sched_getaffinity(None).unwrap().count(), before);
    }
}
