//! CPU placement: cross-CPU wake-ups cost ~25 µs in this VM, so every scenario that
//! crosses threads is measured both unpinned and with everything on one CPU.

use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};
use std::io;

/// Where the threads of a scenario may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Wherever the scheduler puts them.
    Unpinned,
    /// All on the first CPU this process may use.
    OneCpu,
}

impl Placement {
    /// Both placements, in report order.
    pub const BOTH: [Placement; 2] = [Placement::Unpinned, Placement::OneCpu];

    /// A short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Placement::Unpinned => "unpinned",
            Placement::OneCpu => "pinned",
        }
    }
}

/// Restores the calling thread's affinity when dropped.
#[derive(Debug)]
pub struct PlacementGuard {
    /// The affinity before the change.
    saved: CpuSet,
}

impl Drop for PlacementGuard {
    fn drop(&mut self) {
        let _ = sched_setaffinity(None, &self.saved);
    }
}

/// Applies `placement` to the calling thread; threads it spawns afterwards inherit it.
pub fn apply(placement: Placement) -> io::Result<PlacementGuard> {
    let saved = sched_getaffinity(None)?;
    if placement == Placement::OneCpu {
        let cpu = (0..CpuSet::MAX_CPU)
            .find(|&c| saved.is_set(c))
            .ok_or_else(|| io::Error::other("empty CPU affinity"))?;
        let mut one = CpuSet::new();
        one.set(cpu);
        sched_setaffinity(None, &one)?;
    }
    Ok(PlacementGuard { saved })
}
