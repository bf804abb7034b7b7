//! The statistics of the scored orders and their Markdown tables.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{
    QUEUE_BUCKETS, Scored, column_of, oracle_column, predictor_names, rolling_mean_column,
};
use crate::datagen::sim::{Kitchen, Outcome, Regime};
use crate::state::Estimator;

/// Error statistics of one predictor over one group of orders (minutes).
#[derive(Debug, Clone, Default)]
pub struct Acc {
    errors: Vec<f64>,
    covered: u64,
    with_p90: u64,
}

impl Acc {
    /// Adds one order: `estimate − real` and whether the real wait was within the p90.
    pub fn add(&mut self, error: f64, covered: Option<bool>) {
        self.errors.push(error);
        if let Some(c) = covered {
            self.with_p90 += 1;
            self.covered += u64::from(c);
        }
    }

    pub fn n(&self) -> usize {
        self.errors.len()
    }

    pub fn mae(&self) -> f64 {
        mean(self.errors.iter().map(|e| e.abs()))
    }

    pub fn rmse(&self) -> f64 {
        mean(self.errors.iter().map(|e| e * e)).sqrt()
    }

    /// Mean of `estimate − real`: negative when the estimate is too low.
    pub fn bias(&self) -> f64 {
        mean(self.errors.iter().copied())
    }

    /// 90th percentile of the absolute error (nearest rank).
    pub fn p90_abs(&self) -> f64 {
        let mut a: Vec<f64> = self.errors.iter().map(|e| e.abs()).collect();
        if a.is_empty() {
            return f64::NAN;
        }
        a.sort_by(f64::total_cmp);
        let rank = ((a.len() as f64) * 0.9).ceil() as usize;
        a[rank.clamp(1, a.len()) - 1]
    }

    /// Share of orders within ±5 minutes.
    pub fn within5(&self) -> f64 {
        mean(
            self.errors
                .iter()
                .map(|e| f64::from(u8::from(e.abs() <= 5.0))),
        )
    }

    /// Share of orders that finished within their p90 answer; `None` without p90 answers.
    pub fn coverage(&self) -> Option<f64> {
        (self.with_p90 > 0).then(|| self.covered as f64 / self.with_p90 as f64)
    }
}

fn mean(x: impl Iterator<Item = f64>) -> f64 {
    let (mut s, mut n) = (0.0, 0u64);
    for v in x {
        s += v;
        n += 1;
    }
    if n == 0 { f64::NAN } else { s / n as f64 }
}

/// A group of orders the table reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    All,
    Regime(Regime),
    /// Index into [`QUEUE_BUCKETS`].
    Queue(usize),
    /// Cancelled orders, against their counterfactual wait.
    Cancelled,
    /// Ramp-up and peak together (the first goal).
    RampUpAndPeak,
}

fn queue_bucket(ahead: u32) -> usize {
    QUEUE_BUCKETS
        .iter()
        .position(|&b| ahead <= b)
        .unwrap_or(QUEUE_BUCKETS.len() - 1)
}

fn queue_label(i: usize) -> String {
    let lo = if i == 0 { 0 } else { QUEUE_BUCKETS[i - 1] + 1 };
    match QUEUE_BUCKETS[i] {
        u32::MAX => format!("{lo}+ ahead"),
        hi if hi == lo => format!("{lo} ahead"),
        hi => format!("{lo}–{hi} ahead"),
    }
}

/// Orders answered by every predictor only, so all columns score the same orders.
fn answered(o: &Scored) -> bool {
    o.answers.iter().all(Option::is_some)
}

/// The goals of the issue, judged for one estimator.
#[derive(Debug, Clone)]
pub struct Goals {
    pub rush_mae: f64,
    pub rush_mae_rolling: f64,
    pub rush_mae_oracle: f64,
    /// Share of the rolling mean → oracle MAE gap closed overall.
    pub gap_closed: f64,
    /// The largest |bias| over the 15-minute buckets of the rushes, and where.
    pub worst_bucket_bias: f64,
    pub worst_bucket_at_minute: u32,
    pub buckets_over_1: usize,
    pub buckets: usize,
    pub coverage_all: Option<f64>,
    pub coverage_by_regime: Vec<(Regime, Option<f64>)>,
}

impl Goals {
    /// MAE over ramp-up and peak at most half the rolling mean's; or, where the oracle itself
    /// cannot get there, within 10 % of the oracle's.
    pub fn rush_mae_met(&self) -> (bool, &'static str) {
        if self.rush_mae_oracle > 0.5 * self.rush_mae_rolling {
            (
                self.rush_mae <= 1.1 * self.rush_mae_oracle,
                "within 10 % of the oracle",
            )
        } else {
            (
                self.rush_mae <= 0.5 * self.rush_mae_rolling,
                "≤ 0.5× the rolling mean",
            )
        }
    }

    pub fn coverage_met(&self) -> bool {
        let ok = |c: Option<f64>| c.is_some_and(|c| (0.87..=0.93).contains(&c));
        ok(self.coverage_all) && self.coverage_by_regime.iter().all(|(_, c)| ok(*c))
    }
}

/// The pooled statistics of a set of scored orders.
#[derive(Debug, Clone)]
pub struct Report {
    names: Vec<String>,
    groups: BTreeMap<Group, Vec<Acc>>,
    /// Per 15-minute bucket of the day (rush regimes only): every predictor's accumulator.
    buckets: BTreeMap<u32, Vec<Acc>>,
    unanswered: usize,
    orders: usize,
    estimator: Estimator,
}

impl Report {
    pub fn new(orders: &[Scored], estimator: Estimator) -> Report {
        let names = predictor_names();
        let fresh = || vec![Acc::default(); names.len()];
        let mut groups: BTreeMap<Group, Vec<Acc>> = BTreeMap::new();
        let mut buckets: BTreeMap<u32, Vec<Acc>> = BTreeMap::new();
        let mut unanswered = 0;
        for o in orders {
            if !answered(o) {
                unanswered += 1;
                continue;
            }
            let mut keys = Vec::with_capacity(4);
            match o.outcome {
                Outcome::Cancelled => keys.push(Group::Cancelled),
                Outcome::Completed => {
                    keys.push(Group::All);
                    keys.push(Group::Regime(o.regime));
                    keys.push(Group::Queue(queue_bucket(o.orders_ahead)));
                    if matches!(o.regime, Regime::RampUp | Regime::Peak) {
                        keys.push(Group::RampUpAndPeak);
                    }
                }
            }
            let bucket = (o.outcome == Outcome::Completed && o.regime.is_rush()).then(|| {
                let minute = o.placed_at_ms.rem_euclid(86_400_000) / 60_000;
                u32::try_from(minute / 15 * 15).unwrap_or(0)
            });
            for (i, a) in o.answers.iter().enumerate() {
                let Some(a) = a else { continue };
                let error = a.minutes - o.wait_minutes;
                let covered = a.p90_minutes.map(|p| o.wait_minutes <= p);
                for k in &keys {
                    groups.entry(*k).or_insert_with(fresh)[i].add(error, covered);
                }
                if let Some(b) = bucket {
                    buckets.entry(b).or_insert_with(fresh)[i].add(error, covered);
                }
            }
        }
        Report {
            names,
            groups,
            buckets,
            unanswered,
            orders: orders.len(),
            estimator,
        }
    }

    pub fn acc(&self, group: Group, column: usize) -> Option<&Acc> {
        self.groups.get(&group).and_then(|g| g.get(column))
    }

    /// Share of the gap between the rolling mean's MAE and the oracle's that `column` closes.
    pub fn gap_closed(&self, group: Group, column: usize) -> f64 {
        let mae = |c| self.acc(group, c).map_or(f64::NAN, Acc::mae);
        let (rm, or) = (mae(rolling_mean_column()), mae(oracle_column()));
        (rm - mae(column)) / (rm - or)
    }

    pub fn goals(&self) -> Goals {
        let col = column_of(self.estimator);
        let mae = |g, c| self.acc(g, c).map_or(f64::NAN, Acc::mae);
        let (mut worst, mut worst_at, mut over) = (0.0f64, 0, 0);
        for (&minute, accs) in &self.buckets {
            let b = accs[col].bias();
            if b.abs() > 1.0 {
                over += 1;
            }
            if b.abs() > worst.abs() {
                worst = b;
                worst_at = minute;
            }
        }
        Goals {
            rush_mae: mae(Group::RampUpAndPeak, col),
            rush_mae_rolling: mae(Group::RampUpAndPeak, rolling_mean_column()),
            rush_mae_oracle: mae(Group::RampUpAndPeak, oracle_column()),
            gap_closed: self.gap_closed(Group::All, col),
            worst_bucket_bias: worst,
            worst_bucket_at_minute: worst_at,
            buckets_over_1: over,
            buckets: self.buckets.len(),
            coverage_all: self.acc(Group::All, col).and_then(Acc::coverage),
            coverage_by_regime: Regime::ALL
                .iter()
                .map(|&r| (r, self.acc(Group::Regime(r), col).and_then(Acc::coverage)))
                .collect(),
        }
    }

    fn table(&self, out: &mut String, title: &str, group: Group) {
        let Some(accs) = self.groups.get(&group) else {
            return;
        };
        let n = accs.first().map_or(0, Acc::n);
        let _ = writeln!(out, "\n**{title}** ({n} orders)\n");
        let _ = writeln!(
            out,
            "| predictor | MAE | RMSE | bias | p90 \\|err\\| | within ±5 | p90 coverage | gap closed |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|");
        for (name, (i, a)) in self.names.iter().zip(accs.iter().enumerate()) {
            let cov = a
                .coverage()
                .map_or("–".to_owned(), |c| format!("{:.1} %", 100.0 * c));
            let gap = self.gap_closed(group, i);
            let gap = if gap.is_finite() {
                format!("{:.0} %", 100.0 * gap)
            } else {
                "–".to_owned()
            };
            let _ = writeln!(
                out,
                "| {name} | {:.2} | {:.2} | {:+.2} | {:.1} | {:.1} % | {cov} | {gap} |",
                a.mae(),
                a.rmse(),
                a.bias(),
                a.p90_abs(),
                100.0 * a.within5()
            );
        }
    }

    /// The Markdown section of one kitchen: the goals, then every group's table.
    pub fn markdown(&self, kitchen: Kitchen, stores: u32, seeds: &[u64], hours: u32) -> String {
        let mut out = String::new();
        let seeds: Vec<String> = seeds.iter().map(u64::to_string).collect();
        let _ = writeln!(
            out,
            "\n### Kitchen: {} ({stores} stores, seeds {}, {hours} h from midnight)\n",
            kitchen.as_str(),
            seeds.join(", ")
        );
        let _ = writeln!(
            out,
            "{} orders scored against the answer that stood at their placement; {} placed before \
             every predictor had an answer are left out. Minutes; bias is estimate − real.",
            self.orders - self.unanswered,
            self.unanswered
        );
        let g = self.goals();
        let verdict = |ok: bool| if ok { "met" } else { "missed" };
        let (mae_ok, mae_rule) = g.rush_mae_met();
        let _ = writeln!(out, "\nGoals for `{}`:\n", self.estimator);
        let _ = writeln!(
            out,
            "- ramp-up + peak MAE {:.2} vs rolling mean {:.2} ({:.2}×) and oracle {:.2} ({:.2}×); \
             rule: {mae_rule}: **{}**",
            g.rush_mae,
            g.rush_mae_rolling,
            g.rush_mae / g.rush_mae_rolling,
            g.rush_mae_oracle,
            g.rush_mae / g.rush_mae_oracle,
            verdict(mae_ok)
        );
        let _ = writeln!(
            out,
            "- rolling-mean → oracle gap closed overall: {:.0} % (goal ≥ 80 %): **{}**",
            100.0 * g.gap_closed,
            verdict(g.gap_closed >= 0.8)
        );
        let _ = writeln!(
            out,
            "- |bias| ≤ 1 min in every 15-min bucket of the rushes: {} of {} buckets over, worst \
             {:+.2} at {:02}:{:02}: **{}**",
            g.buckets_over_1,
            g.buckets,
            g.worst_bucket_bias,
            g.worst_bucket_at_minute / 60,
            g.worst_bucket_at_minute % 60,
            verdict(g.buckets_over_1 == 0)
        );
        let pct = |c: Option<f64>| c.map_or("–".to_owned(), |c| format!("{:.1} %", 100.0 * c));
        let by: Vec<String> = g
            .coverage_by_regime
            .iter()
            .map(|(r, c)| format!("{} {}", r.as_str(), pct(*c)))
            .collect();
        let _ = writeln!(
            out,
            "- p90 coverage 87–93 %: overall {}, {}: **{}**",
            pct(g.coverage_all),
            by.join(", "),
            verdict(g.coverage_met())
        );
        self.table(&mut out, "All completed orders", Group::All);
        for r in Regime::ALL {
            self.table(&mut out, r.as_str(), Group::Regime(r));
        }
        self.table(&mut out, "ramp-up + peak", Group::RampUpAndPeak);
        for i in 0..QUEUE_BUCKETS.len() {
            self.table(&mut out, &queue_label(i), Group::Queue(i));
        }
        self.table(
            &mut out,
            "Cancelled orders, against the wait they would have had",
            Group::Cancelled,
        );
        out
    }
}
