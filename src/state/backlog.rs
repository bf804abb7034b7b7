//! The backlog estimator: a new order's wait from the queue it finds, with the kitchen's
//! response to a queue learned online from the store's own completions.
//!
//! A statistic of past completions lags: in a rush the last half hour describes a calmer
//! kitchen. What a new order will wait is set by the work ahead of it now. A FIFO kitchen with
//! `c` slots and mean prep time `S` gives a wait of about `a` (prep, rack and delivery) while
//! fewer than `c` orders are ahead, and `a + (x − m)·S/c` beyond, with `x` the orders ahead. The
//! store sees `x` only as its open orders (placed, not yet completed or cancelled: orders in the
//! kitchen, on the rack or out for delivery) and knows neither `c`, `S` nor how many open orders
//! have left the kitchen; so it fits the same shape, `W = a + b·max(0, x − m)`, to its own
//! completions, each paired with the open orders it found when it was placed:
//!
//! - the pairs go into a histogram by `x` (clamped to [`BINS`] − 1) with exponential forgetting
//!   (half-life [`HALF_LIFE`] completions), so a kitchen that changes (a shift, a slower
//!   cook) is followed;
//! - the knee `m` is the one whose least-squares line fits best; `b >= 0`, so more orders
//!   ahead never means a shorter wait. Refitted after every completion, O([`BINS`]);
//! - the open orders that will be cancelled, the share of open orders already out for
//!   delivery and the rack and delivery times are all inside the fitted `a`, `b` and `m`.
//!
//! The 90th percentile is calibrated online: the ratio of each completed order's real wait to
//! the point estimate it was given at placement feeds a stochastic-approximation quantile
//! (`q += η·(0.9 − [r ≤ q])`), one for orders placed with no queue and one for orders placed
//! behind a queue (their spread differs), so coverage holds near 90 % as the rush builds.
//!
//! With little history (fewer than [`WARM`] completions) the fit is shrunk toward the window's
//! median, and without any measured completion (the workshop's data,
//! whose ids never match) the estimator is the window's p50 and p90: what the evidence
//! supports, never an extrapolation.

/// Open-order counts at or above `BINS − 1` share the last bin.
pub(crate) const BINS: usize = 48;
/// Completions after which an old one weighs half.
pub(crate) const HALF_LIFE: f64 = 60.0;
/// Below this many (effective) completions the point estimate leans on the window's median,
/// linearly less as they accumulate.
pub(crate) const WARM: f64 = 20.0;
/// The share of the fit's weight a knee needs above it.
const MIN_ABOVE_KNEE: f64 = 0.05;
/// Open orders beyond the fit's evidence are extrapolated up to this factor of the largest
/// count seen (with weight), no further.
const EXTRAPOLATE: f64 = 1.5;
/// Step of the quantile trackers (a ratio).
const QUANTILE_STEP: f64 = 0.01;
/// Starting ratio of the p90 to the point estimate.
const QUANTILE_START: f64 = 1.2;
/// Weights are rescaled before they overflow.
const RESCALE_AT: f64 = 1e100;

/// One histogram bin: weighted count, sum of waits (minutes), sum of waits·x.
#[derive(Debug, Clone, Copy, Default)]
struct Bin {
    w: f64,
    wy: f64,
}

/// The fitted line `a + b·max(0, x − knee)` (minutes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Fit {
    pub a: f64,
    pub b: f64,
    pub knee: u32,
    /// The largest open-order count the fit has seen.
    pub seen: u32,
}

impl Fit {
    pub(crate) fn minutes(&self, open: u32) -> f64 {
        let cap = (f64::from(self.seen.max(1)) * EXTRAPOLATE).ceil() as u32;
        self.a + self.b * f64::from(open.min(cap).saturating_sub(self.knee))
    }
}

/// A store's learned response of waits to its queue.
#[derive(Debug, Clone)]
pub(crate) struct Backlog {
    bins: Box<[Bin; BINS]>,
    /// Weight of the next completion (grows instead of decaying the old ones).
    weight: f64,
    /// Effective number of completions in the fit.
    effective: f64,
    fit: Option<Fit>,
    /// p90 / point ratio for orders placed with no queue (index 0) and behind one (1).
    ratio_q90: [f64; 2],
}

impl Default for Backlog {
    fn default() -> Self {
        Backlog {
            bins: Box::new([Bin::default(); BINS]),
            weight: 1.0,
            effective: 0.0,
            fit: None,
            ratio_q90: [QUANTILE_START; 2],
        }
    }
}

/// What the estimator answers for a new order: its point estimate and its 90th percentile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Forecast {
    pub point_ms: f64,
    pub p90_ms: f64,
}

impl Backlog {
    /// Learns from a completed order: it found `open_at_placement` open orders, was promised
    /// `promised_ms` (the point estimate then, if there was one) and waited `wait_ms`.
    pub(crate) fn learn(&mut self, open_at_placement: u32, promised_ms: Option<f64>, wait_ms: i64) {
        let minutes = wait_ms as f64 / 60_000.0;
        if !minutes.is_finite() || minutes <= 0.0 {
            return;
        }
        if let Some(promised) = promised_ms.filter(|p| *p > 0.0) {
            let queued = usize::from(self.fit.is_some_and(|f| open_at_placement > f.knee));
            let r = wait_ms as f64 / promised;
            let q = &mut self.ratio_q90[queued];
            *q += QUANTILE_STEP * if r <= *q { -0.1 } else { 0.9 };
            *q = q.max(1.0);
        }
        let x = (open_at_placement as usize).min(BINS - 1);
        let bin = &mut self.bins[x];
        bin.w += self.weight;
        bin.wy += self.weight * minutes;
        let decay = 0.5f64.powf(1.0 / HALF_LIFE);
        self.effective = self.effective * decay + 1.0;
        self.weight /= decay;
        if self.weight > RESCALE_AT {
            for b in self.bins.iter_mut() {
                b.w /= self.weight;
                b.wy /= self.weight;
            }
            self.weight = 1.0;
        }
        self.fit = self.refit();
    }

    /// Effective number of completions the fit rests on.
    #[cfg(test)]
    pub(crate) fn effective(&self) -> f64 {
        self.effective
    }

    #[cfg(test)]
    pub(crate) fn fit(&self) -> Option<Fit> {
        self.fit
    }

    /// The best knee's least-squares line; `None` without data.
    fn refit(&self) -> Option<Fit> {
        // Totals over all bins, then suffix sums above each candidate knee.
        let (mut w, mut wy, mut seen) = (0.0, 0.0, 0);
        for (x, b) in self.bins.iter().enumerate() {
            w += b.w;
            wy += b.wy;
            if b.w > 0.0 {
                seen = x as u32;
            }
        }
        if w <= 0.0 {
            return None;
        }
        let mut best = Fit {
            a: wy / w,
            b: 0.0,
            knee: 0,
            seen,
        };
        // With b = 0 the explained sum is a·Y; larger is a better fit (SSE = Syy − explained).
        let mut best_explained = best.a * wy;
        let (mut sw, mut swx, mut swx2, mut swy, mut swyx) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for m in (0..BINS - 1).rev() {
            let b = self.bins[m + 1];
            let x = (m + 1) as f64;
            sw += b.w;
            swx += b.w * x;
            swx2 += b.w * x * x;
            swy += b.wy;
            swyx += b.wy * x;
            let mf = m as f64;
            let sz = swx - mf * sw;
            let szz = swx2 - 2.0 * mf * swx + mf * mf * sw;
            let szy = swyx - mf * swy;
            let det = w * szz - sz * sz;
            // A knee needs a share of the evidence above it, or a few late completions would
            // set a steep slope that the next ramp-up extrapolates.
            if sw < MIN_ABOVE_KNEE * w || det <= 1e-9 * w * szz.max(1e-300) {
                continue;
            }
            let slope = (w * szy - sz * wy) / det;
            if slope <= 0.0 {
                continue;
            }
            let a = (wy - slope * sz) / w;
            let explained = a * wy + slope * szy;
            if explained > best_explained {
                best_explained = explained;
                best = Fit {
                    a,
                    b: slope,
                    knee: m as u32,
                    seen,
                };
            }
        }
        Some(best)
    }

    /// The forecast for an order placed now with `open` orders open, leaning on the window's
    /// `p50_ms` / `p90_ms` with little history; `None` when there is nothing to go on.
    pub(crate) fn forecast(
        &self,
        open: u32,
        p50_ms: Option<f64>,
        p90_ms: Option<f64>,
    ) -> Option<Forecast> {
        let Some(fit) = self.fit else {
            return p50_ms.map(|p50| Forecast {
                point_ms: p50,
                p90_ms: p90_ms.unwrap_or(p50),
            });
        };
        let model_ms = fit.minutes(open).max(0.0) * 60_000.0;
        let lean = (1.0 - self.effective / WARM).max(0.0);
        let point_ms = match p50_ms {
            Some(p50) => (1.0 - lean) * model_ms + lean * p50,
            None => model_ms,
        };
        let ratio = self.ratio_q90[usize::from(open > fit.knee)];
        Some(Forecast {
            point_ms,
            p90_ms: point_ms * ratio,
        })
    }

    /// The model's own point estimate (no leaning on the window), recorded with an order at
    /// placement so that its completion can calibrate the p90.
    pub(crate) fn promise_ms(&self, open: u32) -> Option<f64> {
        self.fit.map(|f| f.minutes(open).max(0.0) * 60_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    /// Waits of a kitchen that takes 30 min with up to 4 open orders and 3 min per order beyond.
    fn kitchen(open: u32) -> i64 {
        (30 + 3 * i64::from(open.saturating_sub(4))) * MIN
    }

    #[test]
    fn learns_the_knee_and_slope_of_a_queue() {
        let mut b = Backlog::default();
        for i in 0..400u32 {
            let open = i % 20;
            b.learn(open, None, kitchen(open));
        }
        let fit = b.fit().unwrap();
        assert_eq!(fit.knee, 4, "{fit:?}");
        assert!(
            (fit.a - 30.0).abs() < 1e-6 && (fit.b - 3.0).abs() < 1e-6,
            "{fit:?}"
        );
        // Warm: the window's median (30 min) no longer counts.
        let f = b.forecast(14, Some(30.0 * MIN as f64), None).unwrap();
        assert!((f.point_ms / MIN as f64 - 60.0).abs() < 1e-6, "{f:?}");
        assert_eq!(b.promise_ms(14), Some(f.point_ms));
    }

    #[test]
    fn extrapolation_stops_at_half_again_the_largest_queue_seen() {
        let mut b = Backlog::default();
        for i in 0..400u32 {
            let open = i % 11;
            b.learn(open, None, kitchen(open));
        }
        let fit = b.fit().unwrap();
        assert_eq!(fit.seen, 10);
        // 10 seen: up to 15 extrapolated, 30 + 3·11 = 63 min; 40 open gives no more.
        assert!((fit.minutes(15) - 63.0).abs() < 1e-6, "{fit:?}");
        assert_eq!(fit.minutes(40), fit.minutes(15));
    }

    #[test]
    fn without_measured_completions_it_is_the_window() {
        let b = Backlog::default();
        let f = b.forecast(30, Some(12.0), Some(20.0)).unwrap();
        assert_eq!(
            f,
            Forecast {
                point_ms: 12.0,
                p90_ms: 20.0
            }
        );
        assert_eq!(b.forecast(30, None, None), None);
    }

    #[test]
    fn little_history_leans_on_the_window() {
        let mut b = Backlog::default();
        b.learn(10, None, 60 * MIN);
        let f = b.forecast(10, Some(20.0 * MIN as f64), None).unwrap();
        // One completion of WARM = 20: 1/20 of the model, 19/20 of the window's median.
        assert!(
            (f.point_ms / MIN as f64 - (60.0 + 19.0 * 20.0) / 20.0).abs() < 1e-9,
            "{f:?}"
        );
        for _ in 0..40 {
            b.learn(10, None, 60 * MIN);
        }
        let f = b.forecast(10, Some(20.0 * MIN as f64), None).unwrap();
        assert!((f.point_ms / MIN as f64 - 60.0).abs() < 1e-9, "{f:?}");
    }

    #[test]
    fn more_orders_ahead_never_shorten_the_wait() {
        let mut b = Backlog::default();
        // Noisy data that falls with the queue: the slope is refused, the fit is flat.
        for i in 0..100u32 {
            b.learn(i % 10, None, (40 - i64::from(i % 10)) * MIN);
        }
        let fit = b.fit().unwrap();
        assert_eq!(fit.b, 0.0, "{fit:?}");
        assert!(
            b.forecast(40, None, None).unwrap().point_ms
                >= b.forecast(0, None, None).unwrap().point_ms
        );
    }

    #[test]
    fn old_completions_fade() {
        let mut b = Backlog::default();
        for _ in 0..300 {
            b.learn(0, None, 20 * MIN);
        }
        for _ in 0..600 {
            b.learn(0, None, 40 * MIN);
        }
        // 600 completions are four half-lives: the old level weighs 1/16 of the new.
        let a = b.fit().unwrap().a;
        assert!(a > 38.0 && a < 40.0, "{a}");
        assert!(b.effective() < HALF_LIFE / std::f64::consts::LN_2 + 1.0);
    }

    #[test]
    fn p90_ratio_converges_to_the_ninth_decile() {
        let mut b = Backlog::default();
        b.learn(0, None, 30 * MIN);
        // Ratios 0.80, 0.81, ..., 1.79 in a scrambled order: 90 % are at or below 1.69.
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let r = 0.8 + (seed % 100) as f64 / 100.0;
            b.learn(0, Some(30.0 * MIN as f64), (r * 30.0 * MIN as f64) as i64);
        }
        let q = b.ratio_q90[0];
        assert!((q - 1.69).abs() < 0.06, "{q}");
        assert_eq!(b.ratio_q90[1], QUANTILE_START);
        let f = b.forecast(0, None, None).unwrap();
        assert!((f.p90_ms / f.point_ms - q).abs() < 1e-9);
    }

    #[test]
    fn nonsense_waits_are_not_learned() {
        let mut b = Backlog::default();
        b.learn(3, None, 0);
        b.learn(3, None, -5 * MIN);
        assert!(b.fit().is_none());
        assert_eq!(b.effective(), 0.0);
    }
}
