//! Repeated samples, their median and spread, and alternating ours/peer runs.

use std::io;
use std::time::{Duration, Instant};

/// Repeated measurements of one quantity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Samples(Vec<f64>);

impl From<Vec<f64>> for Samples {
    fn from(v: Vec<f64>) -> Self {
        Samples(v)
    }
}

impl Samples {
    /// Adds one measurement.
    pub fn push(&mut self, v: f64) {
        self.0.push(v);
    }

    /// The values in measurement order.
    pub fn values(&self) -> &[f64] {
        &self.0
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The median (NaN when empty).
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// The spread as (max - min) / median, so runs of different scale compare.
    pub fn spread(&self) -> f64 {
        let v = self.sorted();
        match (v.first(), v.last()) {
            (Some(lo), Some(hi)) => (hi - lo) / self.median(),
            _ => f64::NAN,
        }
    }
}

/// Runs `ours` and `peer` alternately `reps` times (order flipped every round so
/// neither always runs on a warm or cold machine) and collects their results; the
/// first failure ends the comparison.
pub fn alternate<E>(
    reps: usize,
    mut ours: impl FnMut() -> Result<f64, E>,
    mut peer: impl FnMut() -> Result<f64, E>,
) -> Result<(Samples, Samples), E> {
    let (mut a, mut b) = (Samples::default(), Samples::default());
    for round in 0..reps {
        if round % 2 == 0 {
            a.push(ours()?);
            b.push(peer()?);
        } else {
            b.push(peer()?);
            a.push(ours()?);
        }
    }
    Ok((a, b))
}

/// One measured quantity: `sample(budget)` returns nanoseconds per operation.
pub struct Probe {
    /// Unique name, referenced by a comparison.
    pub name: &'static str,
    /// Runs the operation repeatedly for about the budget.
    pub sample: Box<dyn FnMut(Duration) -> io::Result<f64>>,
}

impl Probe {
    /// A probe that times `op` (one operation per call).
    pub fn new(name: &'static str, mut op: impl FnMut() -> io::Result<()> + 'static) -> Probe {
        Probe {
            name,
            sample: Box::new(move |budget| ns_per_op(budget, &mut op)),
        }
    }
}

/// Mean nanoseconds per call of `op` over about `budget` of wall time.
pub fn ns_per_op(budget: Duration, op: &mut dyn FnMut() -> io::Result<()>) -> io::Result<f64> {
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

/// Samples every probe `rounds` times. Within a round the probes take turns in
/// short slices (the order rotating every slice), so a burst of noise from the rest of
/// the machine hits ours and the peer alike; a probe's sample for the round is the mean
/// of its slices. Returns the samples in probe order.
pub fn sample_probes(
    probes: &mut [Probe],
    rounds: usize,
    budget: Duration,
) -> io::Result<Vec<Samples>> {
    let slice = budget / SLICES;
    let mut out = vec![Samples::default(); probes.len()];
    for _round in 0..rounds {
        let mut sums = vec![0.0; probes.len()];
        for turn in 0..SLICES as usize {
            for k in 0..probes.len() {
                let i = (k + turn) % probes.len();
                sums[i] += (probes[i].sample)(slice)?;
            }
        }
        for (samples, sum) in out.iter_mut().zip(sums) {
            samples.push(sum / f64::from(SLICES));
        }
    }
    Ok(out)
}

/// Slices per round and probe (see [`sample_probes`]).
const SLICES: u32 = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let s = Samples::from(vec![4.0, 1.0, 3.0, 2.0]);
        assert_eq!(s.median(), 2.5);
        assert_eq!(s.spread(), 3.0 / 2.5);
        assert!(Samples::default().median().is_nan());
    }

    #[test]
    fn alternate_flips_order() {
        let order = std::cell::RefCell::new(Vec::new());
        let (a, b) = alternate::<()>(
            3,
            || {
                order.borrow_mut().push('o');
                Ok(1.0)
            },
            || {
                order.borrow_mut().push('p');
                Ok(2.0)
            },
        )
        .unwrap();
        assert_eq!(order.into_inner(), vec!['o', 'p', 'p', 'o', 'o', 'p']);
        assert_eq!((a.median(), b.median()), (1.0, 2.0));
        let mut calls = 0;
        let failed = alternate(
            3,
            || {
                calls += 1;
                if calls == 2 {
                    Err("second run failed")
                } else {
                    Ok(1.0)
                }
            },
            || Ok(2.0),
        );
        assert_eq!(failed, Err("second run failed"));
    }

    #[test]
    fn probes_are_sampled_in_rotating_slices() {
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
        let s = sample_probes(&mut probes, 2, Duration::ZERO).unwrap();
        let order = order.borrow();
        assert_eq!(order.len(), 2 * 2 * SLICES as usize);
        assert_eq!(order[..4], ["a", "b", "b", "a"]);
        assert_eq!((s[0].median(), s[1].median()), (1.0, 2.0));
        assert_eq!(s[0].values().len(), 2);
    }
}
