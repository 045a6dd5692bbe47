//! Repeated samples, their median and spread, and alternating ours/peer runs.

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

/// Mean nanoseconds per iteration of `f` over about `budget` of wall time.
pub fn ns_per_iter(budget: Duration, mut f: impl FnMut()) -> f64 {
    // Warm caches and branch predictors before the clock starts.
    for _ in 0..100 {
        f();
    }
    let start = Instant::now();
    let mut iters: u64 = 0;
    while start.elapsed() < budget {
        for _ in 0..64 {
            f();
        }
        iters += 64;
    }
    start.elapsed().as_nanos() as f64 / iters as f64
}

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
}
