//! CPU placement: cross-CPU wake-ups cost ~25 µs in this VM (a same-CPU switch ~2 µs),
//! so every scenario that crosses threads is measured both unpinned and with every
//! thread of the process on one CPU, and a peer always runs under the same placement
//! as what it is compared with. Child processes inherit the placement.

use rustix::thread::{CpuSet, Pid, sched_getaffinity, sched_setaffinity};
use std::io;

/// Where the threads of the process may run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// Wherever the scheduler puts them.
    Unpinned,
    /// Every thread on the first CPU this process may use.
    Pinned,
}

impl Placement {
    /// Both placements, in report order.
    pub const BOTH: [Placement; 2] = [Placement::Unpinned, Placement::Pinned];

    /// A short label for tables.
    pub fn label(self) -> &'static str {
        match self {
            Placement::Unpinned => "unpinned",
            Placement::Pinned => "pinned",
        }
    }
}

/// Every thread of this process, including helpers that already exist (such as the
/// vpoll Fuse server thread), which a calling-thread-only pin would miss.
fn threads() -> io::Result<Vec<Pid>> {
    let mut tids = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")? {
        let name = entry?.file_name();
        if let Some(tid) = name
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
            .and_then(Pid::from_raw)
        {
            tids.push(tid);
        }
    }
    Ok(tids)
}

/// Applies `placement` to every thread of the process; threads and children created
/// later inherit it from their creator. The guard restores the previous affinity.
pub fn apply(placement: Placement) -> io::Result<PlacementGuard> {
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
    Ok(PlacementGuard { saved })
}

/// Restores every thread's affinity when dropped.
#[derive(Debug)]
pub struct PlacementGuard {
    /// The affinity before [`apply`].
    saved: CpuSet,
}

impl Drop for PlacementGuard {
    fn drop(&mut self) {
        if let Ok(tids) = threads() {
            for tid in tids {
                // Best effort: a thread may have exited meanwhile.
                let _ = sched_setaffinity(Some(tid), &self.saved);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinning_covers_existing_threads_and_is_undone() {
        let before = sched_getaffinity(None).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let helper = std::thread::spawn(move || {
            tx.send(()).unwrap();
            done_rx.recv().unwrap();
            sched_getaffinity(None).unwrap().count()
        });
        rx.recv().unwrap();
        let guard = apply(Placement::Pinned).unwrap();
        assert_eq!(sched_getaffinity(None).unwrap().count(), 1);
        done_tx.send(()).unwrap();
        assert_eq!(
            helper.join().unwrap(),
            1,
            "a thread that existed before was not pinned"
        );
        drop(guard);
        assert_eq!(sched_getaffinity(None).unwrap().count(), before.count());
    }
}
