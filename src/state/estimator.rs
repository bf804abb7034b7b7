//! The statistics of a store's window and the estimators that turn them into a wait time.
//!
//! Percentiles use linear interpolation between closest ranks (Hyndman & Fan type 7, the
//! default of numpy, R and spreadsheets' `PERCENTILE.INC`): with the `n` waits sorted,
//! `h = (n − 1)·p`, the answer is `x[⌊h⌋] + (h − ⌊h⌋)·(x[⌊h⌋+1] − x[⌊h⌋])`. Unlike nearest
//! rank it does not jump by a whole observation when one enters or leaves a small window, so
//! the published minute is steadier; with one observation every percentile is that value.
//!
//! The published minute is the estimate rounded to the nearest whole minute (half up), never
//! below 0: rounding is unbiased, and the workshop's schema carries whole minutes only.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a store's published wait time is computed from its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Estimator {
    /// Mean wait of the window: sensitive to the occasional very late order.
    Mean,
    /// Median wait of the window: robust, and what half of the customers beat.
    #[default]
    P50,
    /// 90th percentile: a promise that nine orders in ten keep.
    P90,
    /// The median scaled by the current queue against the window's average queue; see
    /// [`Estimator::Queue`]'s formula in [`Summary::queue_ms`].
    Queue,
    /// The wait the open orders ahead imply, by the store's learned response of waits to its
    /// queue, with a p90 calibrated online (see `backlog.rs`).
    Backlog,
}

impl Estimator {
    pub const ALL: [Estimator; 5] = [
        Estimator::Mean,
        Estimator::P50,
        Estimator::P90,
        Estimator::Queue,
        Estimator::Backlog,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Estimator::Mean => "mean",
            Estimator::P50 => "p50",
            Estimator::P90 => "p90",
            Estimator::Queue => "queue",
            Estimator::Backlog => "backlog",
        }
    }

    /// The estimate in milliseconds from the window alone; `None` when the window has no
    /// observation. The backlog estimator needs the store's model: without it (here) it is the
    /// window's median, its own fallback.
    pub(crate) fn estimate_ms(self, s: &Summary, open_orders: u32) -> Option<f64> {
        match self {
            Estimator::Mean => s.mean_ms,
            Estimator::P50 => s.p50_ms,
            Estimator::P90 => s.p90_ms,
            Estimator::Queue => s.queue_ms(open_orders),
            Estimator::Backlog => s.p50_ms,
        }
    }
}

impl fmt::Display for Estimator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An estimator name that is none of `mean`, `p50`, `p90`, `queue`, `backlog`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown estimator {0:?} (expected one of: mean, p50, p90, queue, backlog)")]
pub struct ParseEstimatorError(pub String);

impl FromStr for Estimator {
    type Err = ParseEstimatorError;

    /// Case-insensitive, surrounding whitespace ignored (config files and env vars).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Estimator::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(t))
            .ok_or_else(|| ParseEstimatorError(s.to_owned()))
    }
}

/// The statistics of one store's window at its stream time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    pub observations: usize,
    /// Observations measured as completion − placement (the rest are reported durations).
    pub measured: usize,
    pub cancellations: usize,
    pub mean_ms: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    /// The span the rates are measured over, ms (>= 1): the window, or less for a store
    /// younger than the window (see `Store::rate_span`).
    pub span_ms: i64,
}

impl Summary {
    /// Summarises `waits` (ms, any order; reordered in place).
    pub(crate) fn new(
        waits: &mut [i64],
        measured: usize,
        cancellations: usize,
        span_ms: i64,
    ) -> Self {
        let n = waits.len();
        let mean_ms = (n > 0).then(|| {
            let sum: i128 = waits.iter().map(|&w| i128::from(w)).sum();
            sum as f64 / n as f64
        });
        Summary {
            observations: n,
            measured,
            cancellations,
            mean_ms,
            // p90 first: its selection leaves the lower 90 % partitioned for the p50 one.
            p90_ms: percentile(waits, 0.9),
            p50_ms: percentile(waits, 0.5),
            span_ms: span_ms.max(1),
        }
    }

    /// Completions (with a valid observation) per hour over the span.
    pub(crate) fn completions_per_hour(&self) -> f64 {
        self.observations as f64 * 3_600_000.0 / self.span_ms as f64
    }

    /// Cancellations / (completions + cancellations) in the window, if any order ended.
    pub(crate) fn cancellation_rate(&self) -> Option<f64> {
        let ended = self.observations + self.cancellations;
        (ended > 0).then(|| self.cancellations as f64 / ended as f64)
    }

    /// Queue-aware estimate: `p50 · (L + 1) / (L̄ + 1)`.
    ///
    /// `L` is the number of open orders now; `L̄ = λ · W̄` is the window's average number of
    /// orders in the store by Little's law (λ = completions per ms over the span, W̄ = mean
    /// wait). For an M/M/1 queue a newly arriving order that finds `L` orders ahead waits
    /// `(L + 1)/μ` on average, while the average order waits `(L̄ + 1)/μ`; their ratio needs no
    /// estimate of the service rate μ and rescales the window's typical (median) wait to the
    /// current load. With as many orders open as usual it equals P50; a backlog twice the
    /// usual roughly doubles it; a quiet store gets less.
    ///
    /// Open orders are only meaningful when orders do match their completions; when no
    /// observation in the window was measured (e.g. the Datagen data, whose ids never match)
    /// the estimate falls back to P50, as it does for a zero rate.
    pub(crate) fn queue_ms(&self, open_orders: u32) -> Option<f64> {
        let p50 = self.p50_ms?;
        let mean = self.mean_ms?;
        if self.measured == 0 || self.observations == 0 {
            return Some(p50);
        }
        let rate_per_ms = self.observations as f64 / self.span_ms as f64;
        let average_in_store = rate_per_ms * mean;
        Some(p50 * (f64::from(open_orders) + 1.0) / (average_in_store + 1.0))
    }
}

/// Linear-interpolation percentile of `x`, `None` when empty. O(n): a selection, not a sort
/// (`x` is reordered).
pub(crate) fn percentile(x: &mut [i64], p: f64) -> Option<f64> {
    let last = x.len().checked_sub(1)?;
    let h = last as f64 * p.clamp(0.0, 1.0);
    let lo = (h.floor() as usize).min(last);
    let frac = h - lo as f64;
    // lo <= last < len, so the selection cannot panic.
    let (_, nth, above) = x.select_nth_unstable(lo);
    let a = *nth as f64;
    if frac == 0.0 {
        return Some(a);
    }
    let b = above.iter().min().map_or(a, |&v| v as f64);
    Some(a + frac * (b - a))
}

/// Milliseconds to the published whole minutes: nearest, half up, clamped to `0..=i32::MAX`.
pub(crate) fn whole_minutes(ms: f64) -> i32 {
    let m = (ms / 60_000.0).round();
    if m.is_nan() { 0 } else { m.max(0.0) as i32 }
}

/// Milliseconds to fractional minutes for display.
pub(crate) fn minutes(ms: f64) -> f64 {
    ms / 60_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn names_round_trip() {
        for e in Estimator::ALL {
            assert_eq!(e.to_string().parse::<Estimator>(), Ok(e));
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, format!("\"{}\"", e.as_str()));
            assert_eq!(serde_json::from_str::<Estimator>(&json).unwrap(), e);
        }
        assert_eq!(" P90 ".parse::<Estimator>(), Ok(Estimator::P90));
        assert!("p95".parse::<Estimator>().is_err());
        assert_eq!(Estimator::default(), Estimator::P50);
    }

    #[test]
    fn percentiles_interpolate_linearly() {
        assert_eq!(percentile(&mut [], 0.5), None);
        assert_eq!(percentile(&mut [7], 0.5), Some(7.0));
        assert_eq!(percentile(&mut [7], 0.9), Some(7.0));
        assert_eq!(percentile(&mut [20, 10], 0.5), Some(15.0));
        assert_eq!(percentile(&mut [40, 10, 30, 20], 0.5), Some(25.0));
        // h = 3 · 0.9 = 2.7 → 30 + 0.7 · 10
        assert!((percentile(&mut [30, 40, 20, 10], 0.9).unwrap() - 37.0).abs() < 1e-9);
        // h = 9 · 0.9 = 8.1 → 9 + 0.1 · 1
        let mut x: Vec<i64> = (1..=10).rev().collect();
        assert!((percentile(&mut x, 0.9).unwrap() - 9.1).abs() < 1e-9);
        assert_eq!(percentile(&mut x, 0.5), Some(5.5));
        assert_eq!(percentile(&mut x, 0.0), Some(1.0));
        assert_eq!(percentile(&mut x, 1.0), Some(10.0));
        assert_eq!(
            percentile(&mut [i64::MAX, i64::MAX], 0.5),
            Some(i64::MAX as f64)
        );
    }

    #[test]
    fn selection_agrees_with_sorting() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        for n in 1..200 {
            let mut x: Vec<i64> = (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 1000) as i64
                })
                .collect();
            let mut sorted = x.clone();
            sorted.sort_unstable();
            for p in [0.5, 0.9] {
                let h = (n - 1) as f64 * p;
                let lo = h.floor() as usize;
                let hi = (lo + 1).min(n - 1);
                let want = sorted[lo] as f64 + (h - lo as f64) * (sorted[hi] - sorted[lo]) as f64;
                let got = percentile(&mut x, p).unwrap();
                assert!((got - want).abs() < 1e-9, "n={n} p={p}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn rounding_is_nearest_half_up_and_never_negative() {
        assert_eq!(whole_minutes(0.0), 0);
        assert_eq!(whole_minutes(29_999.0), 0);
        assert_eq!(whole_minutes(30_000.0), 1);
        assert_eq!(whole_minutes(89_999.0), 1);
        assert_eq!(whole_minutes(90_000.0), 2);
        assert_eq!(whole_minutes(-5.0 * MIN as f64), 0);
        assert_eq!(whole_minutes(f64::NAN), 0);
        assert_eq!(whole_minutes(f64::INFINITY), i32::MAX);
        assert_eq!(whole_minutes(i64::MAX as f64), i32::MAX);
    }

    /// Window of waits 10, 20, 30, 40 min (all measured), 2 cancellations, over 60 min.
    fn known() -> Summary {
        let mut w = vec![40 * MIN, 10 * MIN, 30 * MIN, 20 * MIN];
        Summary::new(&mut w, 4, 2, 60 * MIN)
    }

    #[test]
    fn statistics_of_a_known_window() {
        let s = known();
        assert_eq!(s.observations, 4);
        assert_eq!(s.mean_ms, Some(25.0 * MIN as f64));
        assert_eq!(s.p50_ms, Some(25.0 * MIN as f64));
        assert_eq!(s.p90_ms, Some(37.0 * MIN as f64));
        assert_eq!(s.completions_per_hour(), 4.0);
        assert_eq!(s.cancellation_rate(), Some(2.0 / 6.0));
    }

    #[test]
    fn each_estimator_on_a_known_window() {
        let s = known();
        assert_eq!(Estimator::Mean.estimate_ms(&s, 0), Some(25.0 * MIN as f64));
        assert_eq!(Estimator::P50.estimate_ms(&s, 0), Some(25.0 * MIN as f64));
        assert_eq!(Estimator::P90.estimate_ms(&s, 0), Some(37.0 * MIN as f64));
        // λ = 4 / 60 min, W̄ = 25 min → L̄ = 5/3; with L = 3 open: 25 · 4 / (8/3) = 37.5 min.
        let q = Estimator::Queue.estimate_ms(&s, 3).unwrap();
        assert!((q - 37.5 * MIN as f64).abs() < 1e-6, "{q}");
        assert_eq!(whole_minutes(q), 38);
        // With no open order: 25 · 1 / (8/3) = 9.375 min.
        let q0 = Estimator::Queue.estimate_ms(&s, 0).unwrap();
        assert!((q0 - 9.375 * MIN as f64).abs() < 1e-6, "{q0}");
    }

    #[test]
    fn queue_falls_back_to_p50_without_measured_observations() {
        let mut w = vec![10 * MIN, 20 * MIN];
        let s = Summary::new(&mut w, 0, 0, 60 * MIN);
        assert_eq!(
            Estimator::Queue.estimate_ms(&s, 1_000),
            Some(15.0 * MIN as f64)
        );
    }

    #[test]
    fn empty_window_has_no_estimate() {
        let s = Summary::new(&mut [], 0, 3, 60 * MIN);
        for e in Estimator::ALL {
            assert_eq!(e.estimate_ms(&s, 5), None);
        }
        assert_eq!(s.completions_per_hour(), 0.0);
        assert_eq!(s.cancellation_rate(), Some(1.0));
        assert_eq!(Summary::new(&mut [], 0, 0, 0).cancellation_rate(), None);
    }
}
