//! `waittimes score`: how right the published minute is for the customer who reads it.
//!
//! Pure and deterministic: the coherent simulation ([`crate::datagen::sim`]) drives the state
//! core in process, one [`State`] per estimator, no broker and no clock. For every order placed
//! in the scored span it records the answer that stood for its store just before the placement
//! (what the ordering app showed), and when the order ends compares it with the real wait from
//! the simulation's truth. Cancelled orders are scored apart, against the wait they would have
//! had. Beside the estimators: the workshop's stale per-store values, the last completed order's
//! wait, and the oracle (the simulation's expected wait from its true state).

mod plot;
mod table;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::datagen::WORKSHOP_PRIORS;
use crate::datagen::record::{Record, TemplateError, Templates};
use crate::datagen::sim::{Kitchen, Outcome, Regime, Sim, SimConfig};
use crate::domain::{Basis, EventTime, OrderCancelled, OrderCompleted, OrderEvent, OrderPlaced};
use crate::state::{Estimator, State, StateConfig};

pub use table::{Goals, Report};

/// 2024-03-01T00:00:00Z: days start at midnight so the regimes fall where the profile puts them.
pub const DAY_START_MS: EventTime = 1_709_251_200_000;
const MINUTE_MS: f64 = 60_000.0;
const HOUR_MS: i64 = 3_600_000;
/// Orders still open this long after the scored span are left unscored (the state's open TTL).
const DRAIN_MS: i64 = 2 * HOUR_MS;
/// Upper bounds (inclusive) of the queue-length buckets: orders ahead in the kitchen.
pub const QUEUE_BUCKETS: [u32; 6] = [0, 2, 5, 10, 20, u32::MAX];

/// `waittimes score` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ScoreArgs {
    /// Simulated stores (their sizes are drawn from the seed: 2–6 kitchen slots).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub stores: u32,
    /// Seeds, comma-separated: one simulated day each, pooled in the table.
    #[arg(long, value_delimiter = ',', default_values_t = [1u64, 2, 3])]
    pub seeds: Vec<u64>,
    /// Simulated hours scored from midnight.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=24 * 14))]
    pub hours: u32,
    /// Kitchens: stationary, shifts (slots change with shifts), drift (prep times drift), or
    /// all three, each its own table.
    #[arg(long, value_enum, default_value_t = KitchenArg::All)]
    pub kitchen: KitchenArg,
    /// Write the PNG of one store's first day (real waits, estimate, p90 band, rolling mean).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// The store of the plot.
    #[arg(long, default_value_t = 1)]
    pub plot_store: i32,
    /// The estimator the goals are judged for (and the plot shows).
    #[arg(long, default_value_t = Estimator::Backlog)]
    pub estimator: Estimator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KitchenArg {
    Stationary,
    Shifts,
    Drift,
    All,
}

impl KitchenArg {
    fn kitchens(self) -> Vec<Kitchen> {
        match self {
            KitchenArg::Stationary => vec![Kitchen::Stationary],
            KitchenArg::Shifts => vec![Kitchen::Shifts],
            KitchenArg::Drift => vec![Kitchen::Drift],
            KitchenArg::All => Kitchen::ALL.to_vec(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the upstream templates do not parse: {0}")]
    Templates(#[from] TemplateError),
    #[error("cannot draw the plot {path}: {message}")]
    Plot { path: PathBuf, message: String },
}

/// A predictor's answer for one order: the point estimate and, if it has one, its p90.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Answer {
    pub minutes: f64,
    pub p90_minutes: Option<f64>,
}

/// The columns of the table, in order: the workshop's values, the last completed wait, every
/// estimator, the oracle.
pub fn predictor_names() -> Vec<String> {
    let mut names = vec!["workshop (stale)".to_owned(), "last completed".to_owned()];
    names.extend(Estimator::ALL.iter().map(|e| match e {
        Estimator::Mean => "mean (30-min rolling)".to_owned(),
        e => e.as_str().to_owned(),
    }));
    names.push("oracle".to_owned());
    names
}

/// Column of an estimator.
pub fn column_of(e: Estimator) -> usize {
    2 + Estimator::ALL.iter().position(|x| *x == e).unwrap_or(0)
}

/// Column of the rolling mean (the baseline of the headline).
pub fn rolling_mean_column() -> usize {
    column_of(Estimator::Mean)
}

/// Column of the oracle.
pub fn oracle_column() -> usize {
    2 + Estimator::ALL.len()
}

/// One scored order.
#[derive(Debug, Clone)]
pub struct Scored {
    pub store_id: i32,
    pub placed_at_ms: EventTime,
    pub regime: Regime,
    /// Orders ahead in the kitchen when it was placed (the simulation's truth).
    pub orders_ahead: u32,
    pub outcome: Outcome,
    /// The real wait, or for a cancelled order the wait it would have had.
    pub wait_minutes: f64,
    /// One per column of [`predictor_names`]; `None` where that predictor had no answer.
    pub answers: Vec<Option<Answer>>,
}

/// An order placed in the span, waiting for its end.
struct Placed {
    regime: Regime,
    orders_ahead: u32,
    counterfactual_ms: Option<i64>,
    answers: Vec<Option<Answer>>,
}

/// Scores one simulated span of `stores` stores with `kitchen`, from midnight for `hours`.
/// Returns the scored orders in the order they ended.
pub fn run_day(
    templates: &Arc<Templates>,
    stores: u32,
    seed: u64,
    hours: u32,
    kitchen: Kitchen,
) -> Vec<Scored> {
    let cfg = SimConfig {
        stores,
        start_ms: DAY_START_MS,
        templates: templates.clone(),
    };
    let end_ms = DAY_START_MS + i64::from(hours) * HOUR_MS;
    let mut states: Vec<State> = Estimator::ALL
        .iter()
        .map(|&estimator| {
            State::new(StateConfig {
                estimator,
                ..StateConfig::default()
            })
        })
        .collect();
    let mut last_completed: HashMap<i32, f64> = HashMap::new();
    let mut placed: HashMap<(i32, i32), Placed> = HashMap::new();
    let mut scored = Vec::new();
    let mut scratch = Vec::new();
    for ev in Sim::with_kitchen(cfg, seed, kitchen) {
        if ev.time_ms > end_ms + DRAIN_MS {
            break;
        }
        let store = ev.record.store_id();
        let id = ev.record.store_order_id();
        if let (Some(truth), true) = (ev.placement, ev.time_ms < end_ms) {
            let mut answers = Vec::with_capacity(Estimator::ALL.len() + 3);
            answers.push(workshop_prior(store).map(|m| Answer {
                minutes: f64::from(m),
                p90_minutes: None,
            }));
            answers.push(last_completed.get(&store).map(|&m| Answer {
                minutes: m,
                p90_minutes: None,
            }));
            for s in &states {
                let a = s.answer_with(store, &mut scratch);
                answers.push(a.filter(|a| a.basis == Basis::Live).and_then(|a| {
                    a.wait_time_minutes.map(|m| Answer {
                        minutes: f64::from(m),
                        p90_minutes: a.p90_minutes,
                    })
                }));
            }
            answers.push(Some(Answer {
                minutes: truth.expected_wait_ms / MINUTE_MS,
                p90_minutes: Some(truth.p90_wait_ms / MINUTE_MS),
            }));
            placed.insert(
                (store, id),
                Placed {
                    regime: Regime::at(ev.time_ms),
                    orders_ahead: truth.orders_ahead,
                    counterfactual_ms: truth.counterfactual_wait_ms,
                    answers,
                },
            );
        }
        if let Some(t) = ev.truth() {
            if t.outcome == Outcome::Completed {
                last_completed.insert(store, t.wait_ms as f64 / MINUTE_MS);
            }
            if let Some(p) = placed.remove(&(store, id)) {
                let wait_ms = match t.outcome {
                    Outcome::Completed => Some(t.wait_ms),
                    Outcome::Cancelled => p.counterfactual_ms,
                };
                if let Some(w) = wait_ms {
                    scored.push(Scored {
                        store_id: store,
                        placed_at_ms: t.placed_at_ms,
                        regime: p.regime,
                        orders_ahead: p.orders_ahead,
                        outcome: t.outcome,
                        wait_minutes: w as f64 / MINUTE_MS,
                        answers: p.answers,
                    });
                }
            }
        }
        let event = order_event(&ev.record);
        for s in &mut states {
            s.apply(&event, ev.time_ms);
        }
    }
    scored
}

/// The workshop's stale value for a store; stores beyond the workshop's ten repeat its list.
fn workshop_prior(store: i32) -> Option<i32> {
    let n = i32::try_from(WORKSHOP_PRIORS.len()).ok()?;
    let i = usize::try_from((store - 1).rem_euclid(n)).ok()?;
    WORKSHOP_PRIORS.get(i).map(|&(_, m)| m)
}

/// The decoded event the service would apply for a simulated record.
fn order_event(r: &Record) -> OrderEvent {
    match r {
        Record::Order(o) => OrderEvent::Placed(OrderPlaced {
            store_id: o.store_id,
            store_order_id: o.store_order_id,
        }),
        Record::Completed(c) => OrderEvent::Completed(OrderCompleted {
            store_id: c.store_id,
            store_order_id: c.store_order_id,
            rack_time_secs: Some(c.rack_time_secs),
            order_delivery_time_secs: Some(c.order_delivery_time_secs),
        }),
        Record::Cancelled(c) => OrderEvent::Cancelled(OrderCancelled {
            store_id: c.store_id,
            store_order_id: c.store_order_id,
        }),
    }
}

/// `waittimes score`: every kitchen's table (and the goals), the plot if asked. Returns the
/// Markdown report.
pub fn run(args: &ScoreArgs) -> Result<String, Error> {
    let templates = Arc::new(Templates::upstream()?);
    let mut out = String::new();
    for kitchen in args.kitchen.kitchens() {
        let mut orders = Vec::new();
        for &seed in &args.seeds {
            orders.extend(run_day(&templates, args.stores, seed, args.hours, kitchen));
        }
        let report = Report::new(&orders, args.estimator);
        out.push_str(&report.markdown(kitchen, args.stores, &args.seeds, args.hours));
    }
    if let Some(path) = &args.plot {
        let seed = args.seeds.first().copied().unwrap_or(1);
        let orders = run_day(
            &templates,
            args.stores,
            seed,
            args.hours.min(24),
            Kitchen::Stationary,
        );
        plot::draw(path, &orders, args.plot_store, args.estimator).map_err(|message| {
            Error::Plot {
                path: path.clone(),
                message,
            }
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
