//! A coherent pizza chain, simulated: the data the workshop's Datagen cannot give, where every
//! completion or cancellation belongs to an order placed before it, so an estimate can be scored
//! against the truth.
//!
//! Each store is a FIFO queue in front of `slots` kitchen slots. Orders arrive as a Poisson
//! process whose rate follows a time-of-day profile (lunch 12–14h and dinner 18–21h rushes, UTC
//! of the simulated time), each is prepared by the next free slot (lognormal prep time, the
//! store's own median), then waits on the rack and is delivered. The completion event comes at
//! placement + queue wait + prep + rack + delivery, and reports rack and delivery as the durations
//! they were. A customer facing a queue may cancel (the likelier the longer the queue); the
//! decision is taken when the order is placed, so a cancelled order never takes a slot.
//!
//! Pure and deterministic: [`Sim`] is an iterator of events in simulated-time order, driven by one
//! seeded RNG; memory holds only the live orders.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::record::{Cancelled, Completed, Order, Record, Templates};
use crate::domain::{EventTime, InputKind};

const MINUTE_MS: f64 = 60_000.0;
const HOUR_MS: f64 = 3_600_000.0;
const DAY_MS: i64 = 86_400_000;
/// Orders start numbering here in every store, like the templates' iteration.
const FIRST_ORDER_ID: i32 = 1000;
/// Sim time stops advancing here: far beyond any run, and far from `i64` overflow.
const END_OF_TIME: EventTime = i64::MAX / 4;

/// What the simulation needs to know.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Stores 1..=stores.
    pub stores: u32,
    /// Simulated time of the start, ms since the epoch.
    pub start_ms: EventTime,
    /// Coupon and order-line options, status strings, and the rack/delivery ranges.
    pub templates: Arc<Templates>,
}

/// One store's fixed character, drawn from the seed.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreProfile {
    pub store_id: i32,
    /// Kitchen slots working in parallel.
    pub slots: u32,
    /// Median prep time of one order (before the order-size factor).
    pub prep_median_ms: f64,
    /// Spread of ln(prep time).
    pub prep_sigma: f64,
    /// Order arrival rate at the dinner peak (the profile's 1.0).
    pub peak_orders_per_hour: f64,
    /// Typical drive time of this store's deliveries.
    pub delivery_mean_secs: f64,
}

/// How an order ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Cancelled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// The ground truth of one ended order (one row of the `--truth` CSV).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truth {
    pub store_id: i32,
    pub store_order_id: i32,
    pub placed_at_ms: EventTime,
    pub outcome: Outcome,
    pub ended_at_ms: EventTime,
    /// `ended_at_ms - placed_at_ms`: for a completion, the wait the service should measure.
    pub wait_ms: i64,
}

impl Truth {
    pub const CSV_HEADER: &'static str =
        "store_id,store_order_id,placed_at_ms,outcome,ended_at_ms,wait_ms";
}

impl fmt::Display for Truth {
    /// One CSV line, without the newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{},{},{},{}",
            self.store_id,
            self.store_order_id,
            self.placed_at_ms,
            self.outcome.as_str(),
            self.ended_at_ms,
            self.wait_ms
        )
    }
}

/// One simulated event.
#[derive(Debug, Clone, PartialEq)]
pub struct SimEvent {
    pub record: Record,
    /// Simulated event time: the Kafka record timestamp.
    pub time_ms: EventTime,
    /// When the order this event belongs to was placed (`time_ms` for a placement).
    pub placed_at_ms: EventTime,
    /// On a placement: what the simulation's true state says about the new order.
    pub placement: Option<PlacementTruth>,
}

/// The truth about a new order at its placement, known only to the simulation: the oracle an
/// estimator is scored against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlacementTruth {
    /// Accepted orders still in the kitchen (queued or being prepared) when it was placed.
    pub orders_ahead: u32,
    /// The expected wait from the true state: the exact queue wait (the true slots' free
    /// times) plus the expected prep time of this order (its true size and the store's true
    /// prep parameters) and the expected rack and delivery times.
    pub expected_wait_ms: f64,
    /// The oracle's 90th percentile: the same, with the spread of prep, rack and delivery
    /// (normal approximation of their sum).
    pub p90_wait_ms: f64,
    /// For an order that will be cancelled: the wait it would have had (drawn apart, so the
    /// main event sequence of a seed does not depend on it).
    pub counterfactual_wait_ms: Option<i64>,
}

/// How a store's kitchen changes through the day, so that an estimator is not scored on one
/// stationary model only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kitchen {
    /// Slots and prep times as drawn, all day.
    #[default]
    Stationary,
    /// Staff shifts: one slot fewer at night, into the dinner rush (16–19h, a shift change)
    /// and late evening; one slot more from 19 to 23h.
    Shifts,
    /// Prep times drift from 0.75× the drawn median at midnight to 1.35× at the end of the day.
    Drift,
}

impl Kitchen {
    pub const ALL: [Kitchen; 3] = [Kitchen::Stationary, Kitchen::Shifts, Kitchen::Drift];

    pub fn as_str(self) -> &'static str {
        match self {
            Kitchen::Stationary => "stationary",
            Kitchen::Shifts => "shifts",
            Kitchen::Drift => "drift",
        }
    }

    /// Slots at work at `t` for a store drawn with `slots`.
    pub fn slots_at(self, slots: u32, t: EventTime) -> u32 {
        if self != Kitchen::Shifts {
            return slots;
        }
        let h = t.rem_euclid(DAY_MS) as f64 / HOUR_MS;
        if (10.0..16.0).contains(&h) {
            slots
        } else if (19.0..23.0).contains(&h) {
            slots + 1
        } else {
            slots.saturating_sub(1).max(1)
        }
    }

    /// Factor on the drawn prep median at `t`.
    pub fn prep_factor_at(self, t: EventTime) -> f64 {
        if self != Kitchen::Drift {
            return 1.0;
        }
        let h = t.rem_euclid(DAY_MS) as f64 / HOUR_MS;
        0.75 + 0.6 * h / 24.0
    }
}

/// The phase of the day an order is placed in, by the order-rate profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Regime {
    OffPeak,
    /// 10–12h and 17–18h: the rate climbs to a rush.
    RampUp,
    /// 12–14h and 18–21h.
    Peak,
    /// 14–15h and 21–23h.
    RampDown,
}

impl Regime {
    pub const ALL: [Regime; 4] = [
        Regime::OffPeak,
        Regime::RampUp,
        Regime::Peak,
        Regime::RampDown,
    ];

    pub fn at(t: EventTime) -> Regime {
        let h = t.rem_euclid(DAY_MS) as f64 / HOUR_MS;
        if (10.0..12.0).contains(&h) || (17.0..18.0).contains(&h) {
            Regime::RampUp
        } else if (12.0..14.0).contains(&h) || (18.0..21.0).contains(&h) {
            Regime::Peak
        } else if (14.0..15.0).contains(&h) || (21.0..23.0).contains(&h) {
            Regime::RampDown
        } else {
            Regime::OffPeak
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Regime::OffPeak => "off-peak",
            Regime::RampUp => "ramp-up",
            Regime::Peak => "peak",
            Regime::RampDown => "ramp-down",
        }
    }

    /// Ramp-up, peak and ramp-down.
    pub fn is_rush(self) -> bool {
        self != Regime::OffPeak
    }
}

impl SimEvent {
    pub fn kind(&self) -> InputKind {
        self.record.kind()
    }

    /// The order's truth, on the event that ends it.
    pub fn truth(&self) -> Option<Truth> {
        let outcome = match self.record {
            Record::Order(_) => return None,
            Record::Completed(_) => Outcome::Completed,
            Record::Cancelled(_) => Outcome::Cancelled,
        };
        Some(Truth {
            store_id: self.record.store_id(),
            store_order_id: self.record.store_order_id(),
            placed_at_ms: self.placed_at_ms,
            outcome,
            ended_at_ms: self.time_ms,
            wait_ms: self.time_ms - self.placed_at_ms,
        })
    }
}

/// Relative order rate by hour of day (UTC), 1.0 at the dinner peak; linear between knots.
const PROFILE: [(f64, f64); 13] = [
    (0.0, 0.03),
    (6.0, 0.03),
    (10.0, 0.15),
    (11.0, 0.3),
    (12.0, 0.85),
    (14.0, 0.85),
    (15.0, 0.35),
    (17.0, 0.35),
    (18.0, 1.0),
    (21.0, 1.0),
    (22.0, 0.4),
    (23.0, 0.1),
    (24.0, 0.03),
];

/// The profile's value at `t` (≤ 1.0).
pub fn rate_factor(t: EventTime) -> f64 {
    let h = t.rem_euclid(DAY_MS) as f64 / HOUR_MS;
    PROFILE
        .windows(2)
        .find(|w| h >= w[0].0 && h < w[1].0)
        .map(|w| {
            let ((h0, v0), (h1, v1)) = (w[0], w[1]);
            v0 + (v1 - v0) * (h - h0) / (h1 - h0)
        })
        .unwrap_or(PROFILE[0].1)
}

/// Chance that a customer facing `queue_ms` of queue cancels: 2% with no queue, rising towards
/// 80% (about 14% at 10 minutes, a third at 30, half at an hour).
pub fn cancel_probability(queue_ms: i64) -> f64 {
    let minutes = queue_ms.max(0) as f64 / MINUTE_MS;
    0.02 + 0.78 * (1.0 - (-minutes / 60.0).exp())
}

/// The simulation: iterate it for events in simulated-time order.
pub struct Sim {
    cfg: SimConfig,
    kitchen: Kitchen,
    rng: StdRng,
    /// Draws the counterfactual waits of cancelled orders, apart from `rng`.
    cf_rng: StdRng,
    stores: Vec<Store>,
    pending: BinaryHeap<Pending>,
    seq: u64,
}

struct Store {
    profile: StoreProfile,
    /// When each slot is next free (one more than drawn, for `Kitchen::Shifts`).
    free_at: Vec<EventTime>,
    /// When each accepted order still in the kitchen leaves it (unordered).
    in_kitchen: Vec<EventTime>,
    next_id: i32,
}

enum What {
    /// The store's next order arrives.
    Arrival(usize),
    /// An order ends (a completion or a cancellation, placed at the given time).
    End(Record, EventTime),
}

struct Pending {
    time: EventTime,
    /// Breaks ties in creation order, so the sequence is deterministic.
    seq: u64,
    what: What,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    /// Reversed: `BinaryHeap` is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

impl Sim {
    pub fn new(cfg: SimConfig, seed: u64) -> Sim {
        Sim::with_kitchen(cfg, seed, Kitchen::Stationary)
    }

    /// A simulation whose kitchens change through the day as `kitchen` says.
    pub fn with_kitchen(cfg: SimConfig, seed: u64, kitchen: Kitchen) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let stores = (1..=cfg.stores)
            .map(|id| {
                let profile = draw_profile(&mut rng, i32::try_from(id).unwrap_or(i32::MAX));
                Store {
                    free_at: vec![cfg.start_ms; profile.slots as usize + 1],
                    in_kitchen: Vec::new(),
                    profile,
                    next_id: FIRST_ORDER_ID,
                }
            })
            .collect();
        let mut sim = Sim {
            cfg,
            kitchen,
            cf_rng: StdRng::seed_from_u64(seed ^ 0x5EED_C0DE_F00D_CAFE),
            rng,
            stores,
            pending: BinaryHeap::new(),
            seq: 0,
        };
        for s in 0..sim.stores.len() {
            let t = sim.next_arrival(s, sim.cfg.start_ms);
            sim.push(t, What::Arrival(s));
        }
        sim
    }

    pub fn stores(&self) -> impl Iterator<Item = &StoreProfile> {
        self.stores.iter().map(|s| &s.profile)
    }

    /// Orders placed and not yet ended (what the pending queue holds besides the arrivals).
    pub fn live_orders(&self) -> usize {
        self.pending.len().saturating_sub(self.stores.len())
    }

    fn push(&mut self, time: EventTime, what: What) {
        self.seq += 1;
        self.pending.push(Pending {
            time,
            seq: self.seq,
            what,
        });
    }

    /// The next arrival after `from`, by thinning a Poisson process at the peak rate.
    fn next_arrival(&mut self, s: usize, from: EventTime) -> EventTime {
        let per_ms = self.stores[s].profile.peak_orders_per_hour / HOUR_MS;
        let mut t = from as f64;
        loop {
            t += exponential(&mut self.rng, per_ms);
            if t >= END_OF_TIME as f64 {
                return END_OF_TIME;
            }
            if self.rng.random::<f64>() < rate_factor(t as EventTime) {
                return t.round() as EventTime;
            }
        }
    }

    /// Places an order at `t` in store `s`; schedules its end; returns the placement and its
    /// truth.
    fn place(&mut self, s: usize, t: EventTime) -> (Record, PlacementTruth) {
        let kitchen = self.kitchen;
        let t_o = &self.cfg.templates.orders;
        let t_c = &self.cfg.templates.completed;
        let rng = &mut self.rng;
        let store = &mut self.stores[s];
        let id = store.next_id;
        store.next_id = store.next_id.wrapping_add(1);
        let n_lines = t_o.lines.sample(rng);
        let order_lines: Vec<_> = (0..n_lines)
            .filter_map(|_| {
                let i = rng.random_range(0..t_o.line_options.len().max(1));
                t_o.line_options.get(i).cloned()
            })
            .collect();
        let order = Order {
            store_id: store.profile.store_id,
            store_order_id: id,
            coupon_code: t_o.coupon_code.sample(rng),
            date: day(t),
            status: first(&t_o.status),
            order_lines,
        };

        // FIFO over the slots at work: the order waits for the earliest free one.
        let working = kitchen.slots_at(store.profile.slots, t) as usize;
        let (slot, free) = store
            .free_at
            .iter()
            .take(working.max(1))
            .copied()
            .enumerate()
            .min_by_key(|&(i, f)| (f, i))
            .unwrap_or((0, t));
        let queue_ms = (free - t).max(0);
        store.in_kitchen.retain(|&leaves| leaves > t);
        let p = &store.profile;
        let size = 0.9 + 0.05 * order.order_lines.len() as f64;
        let prep_median = p.prep_median_ms * kitchen.prep_factor_at(t) * size;
        let rack_range = &t_c.rack_time_secs;
        let del_range = &t_c.order_delivery_time_secs;
        let draw_rest = |rng: &mut StdRng| {
            let prep = (prep_median * (p.prep_sigma * std_normal(rng)).exp())
                .clamp(3.0 * MINUTE_MS, 90.0 * MINUTE_MS)
                .round() as i64;
            let rack = rack_range.sample(rng);
            let delivery = (p.delivery_mean_secs + 150.0 * std_normal(rng)).round() as i32;
            let delivery = delivery.clamp(del_range.min, del_range.max - 1);
            (prep, rack, delivery)
        };
        let truth = {
            let s2 = p.prep_sigma * p.prep_sigma;
            let prep_mean = prep_median * (s2 / 2.0).exp();
            let prep_var = prep_mean * prep_mean * (s2.exp() - 1.0);
            let rack_secs = f64::from(rack_range.max - rack_range.min);
            let rack_mean = 1000.0 * (f64::from(rack_range.min) + (rack_secs - 1.0) / 2.0);
            let rack_var = 1e6 * (rack_secs * rack_secs - 1.0) / 12.0;
            let del_var = 1e6 * 150.0 * 150.0;
            let mean = queue_ms as f64 + prep_mean + rack_mean + 1000.0 * p.delivery_mean_secs;
            PlacementTruth {
                orders_ahead: u32::try_from(store.in_kitchen.len()).unwrap_or(u32::MAX),
                expected_wait_ms: mean,
                p90_wait_ms: mean + 1.281_551_6 * (prep_var + rack_var + del_var).sqrt(),
                counterfactual_wait_ms: None,
            }
        };
        let (end, truth) = if rng.random::<f64>() < cancel_probability(queue_ms) {
            // Gives up while still queued (or, with no queue, within a minute).
            let patience = rng.random_range(30_000..=queue_ms.max(60_000));
            let at = t.saturating_add(patience);
            let rec = Record::Cancelled(Cancelled {
                store_id: order.store_id,
                store_order_id: id,
                date: day(at),
                status: first(&self.cfg.templates.cancelled.status),
            });
            let (prep, rack, delivery) = draw_rest(&mut self.cf_rng);
            let cf = queue_ms + prep + 1000 * i64::from(rack) + 1000 * i64::from(delivery);
            let truth = PlacementTruth {
                counterfactual_wait_ms: Some(cf),
                ..truth
            };
            ((at, rec), truth)
        } else {
            let (prep, rack, delivery) = draw_rest(rng);
            if let Some(f) = store.free_at.get_mut(slot) {
                *f = t + queue_ms + prep;
            }
            store.in_kitchen.push(t + queue_ms + prep);
            let wait = queue_ms + prep + 1000 * i64::from(rack) + 1000 * i64::from(delivery);
            let at = t.saturating_add(wait);
            let rec = Record::Completed(Completed {
                store_id: order.store_id,
                store_order_id: id,
                date: day(at),
                status: first(&t_c.status),
                rack_time_secs: rack,
                order_delivery_time_secs: delivery,
            });
            ((at, rec), truth)
        };
        self.push(end.0, What::End(end.1, t));
        (Record::Order(order), truth)
    }
}

impl Iterator for Sim {
    type Item = SimEvent;

    fn next(&mut self) -> Option<SimEvent> {
        let Pending { time, what, .. } = self.pending.pop()?;
        if time >= END_OF_TIME {
            return None;
        }
        match what {
            What::Arrival(s) => {
                let (record, truth) = self.place(s, time);
                let next = self.next_arrival(s, time);
                self.push(next, What::Arrival(s));
                Some(SimEvent {
                    record,
                    time_ms: time,
                    placed_at_ms: time,
                    placement: Some(truth),
                })
            }
            What::End(record, placed_at_ms) => Some(SimEvent {
                record,
                time_ms: time,
                placed_at_ms,
                placement: None,
            }),
        }
    }
}

fn draw_profile(rng: &mut StdRng, store_id: i32) -> StoreProfile {
    let slots = rng.random_range(2..=6);
    let prep_median_ms = rng.random_range(7.0..14.0) * MINUTE_MS;
    let prep_sigma: f64 = rng.random_range(0.2..0.45);
    let mean_prep_hours = prep_median_ms * (prep_sigma * prep_sigma / 2.0).exp() / HOUR_MS;
    // At the dinner peak the kitchen runs at 90–140% of its capacity: some stores keep up,
    // some build a queue that only cancellations hold in check.
    let load = rng.random_range(0.9..1.4);
    StoreProfile {
        store_id,
        slots,
        prep_median_ms,
        prep_sigma,
        peak_orders_per_hour: load * f64::from(slots) / mean_prep_hours,
        delivery_mean_secs: rng.random_range(1300.0..1800.0),
    }
}

/// Avro `date`: days since the epoch.
fn day(t: EventTime) -> i32 {
    i32::try_from(t.div_euclid(DAY_MS)).unwrap_or(i32::MAX)
}

fn first(options: &[Arc<str>]) -> Arc<str> {
    options.first().cloned().unwrap_or_else(|| Arc::from(""))
}

fn exponential<R: Rng + ?Sized>(rng: &mut R, rate: f64) -> f64 {
    // 1 - U is in (0, 1], so the logarithm is finite.
    -(1.0 - rng.random::<f64>()).ln() / rate
}

/// Box–Muller.
fn std_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;

    /// 2024-03-01T00:00:00Z.
    const START: EventTime = 1_709_251_200_000;

    fn sim(stores: u32, seed: u64) -> Sim {
        let templates = Arc::new(Templates::upstream().unwrap());
        Sim::new(
            SimConfig {
                stores,
                start_ms: START,
                templates,
            },
            seed,
        )
    }

    #[test]
    fn coherent_per_store() {
        let events: Vec<_> = sim(8, 42).take(200_000).collect();
        let mut last_time = i64::MIN;
        let mut placed: HashMap<(i32, i32), EventTime> = HashMap::new();
        let mut ended = HashSet::new();
        let (mut completed, mut cancelled) = (0, 0);
        for e in &events {
            assert!(e.time_ms >= last_time, "out of time order");
            last_time = e.time_ms;
            let key = (e.record.store_id(), e.record.store_order_id());
            assert!((1..=8).contains(&key.0));
            match &e.record {
                Record::Order(o) => {
                    assert!(
                        placed.insert(key, e.time_ms).is_none(),
                        "id reused: {key:?}"
                    );
                    assert!((1..=4).contains(&o.order_lines.len()));
                    assert!((1000..=1999).contains(&o.coupon_code));
                    assert_eq!(&*o.status, "accepted");
                    assert_eq!(i64::from(o.date), e.time_ms / DAY_MS);
                    assert_eq!(e.placed_at_ms, e.time_ms);
                    assert!(e.truth().is_none());
                }
                end => {
                    let at = *placed.get(&key).expect("ends an order never placed");
                    assert!(at < e.time_ms, "ends before it was placed");
                    assert!(ended.insert(key), "ended twice: {key:?}");
                    let truth = e.truth().unwrap();
                    assert_eq!(truth.placed_at_ms, at);
                    assert_eq!(e.time_ms - at, truth.wait_ms);
                    assert_eq!(truth.ended_at_ms, e.time_ms);
                    if let Record::Completed(c) = end {
                        completed += 1;
                        assert_eq!(truth.outcome, Outcome::Completed);
                        assert_eq!(&*c.status, "completed");
                        assert!((130..=229).contains(&c.rack_time_secs));
                        assert!((1100..=1999).contains(&c.order_delivery_time_secs));
                        // The reported durations are part of the wait, never more than it.
                        let reported =
                            1000 * i64::from(c.rack_time_secs + c.order_delivery_time_secs);
                        assert!(truth.wait_ms >= reported + 3 * 60_000);
                    } else {
                        cancelled += 1;
                        assert_eq!(truth.outcome, Outcome::Cancelled);
                        assert_eq!(e.record.status(), "cancelled");
                        assert!(truth.wait_ms >= 30_000);
                    }
                }
            }
        }
        // Ids are dense per store: 1000, 1001, ...
        for s in 1..=8 {
            let n = placed.keys().filter(|k| k.0 == s).count() as i32;
            assert!(n > 100);
            assert!((FIRST_ORDER_ID..FIRST_ORDER_ID + n).all(|id| placed.contains_key(&(s, id))));
        }
        // Most orders complete; some cancel; few are still open at the end.
        let total = placed.len();
        assert!(
            completed > total / 2 && cancelled > total / 100,
            "{completed} {cancelled}"
        );
        assert!(total - completed - cancelled < total / 50);
    }

    #[test]
    fn reproducible_per_seed() {
        let run = |seed| sim(5, seed).take(5_000).collect::<Vec<_>>();
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn rushes_are_busier_and_queues_cause_cancellations() {
        // Five simulated days of 10 stores.
        let mut by_hour = [0u32; 24];
        let mut ends_by_hour = [(0u32, 0u32); 24];
        for e in sim(10, 5).take_while(|e| e.time_ms < START + 5 * DAY_MS) {
            let h = (e.placed_at_ms.rem_euclid(DAY_MS) / 3_600_000) as usize;
            match e.truth() {
                None => by_hour[h] += 1,
                Some(t) if t.outcome == Outcome::Cancelled => ends_by_hour[h].1 += 1,
                Some(_) => ends_by_hour[h].0 += 1,
            }
        }
        let (night, afternoon) = (by_hour[3], by_hour[16]);
        let (lunch, dinner) = (by_hour[13], by_hour[19]);
        assert!(
            lunch > 2 * afternoon && dinner > 2 * afternoon,
            "{by_hour:?}"
        );
        assert!(afternoon > 3 * night, "{by_hour:?}");
        let rate = |(c, x): (u32, u32)| f64::from(x) / f64::from(c + x);
        assert!(
            rate(ends_by_hour[20]) > 2.0 * rate(ends_by_hour[9]),
            "{ends_by_hour:?}"
        );
    }

    #[test]
    fn profiles_are_drawn_from_the_seed() {
        let a: Vec<_> = sim(20, 9).stores().cloned().collect();
        assert_eq!(a, sim(20, 9).stores().cloned().collect::<Vec<_>>());
        assert!(
            a.iter()
                .all(|p| (2..=6).contains(&p.slots) && p.peak_orders_per_hour > 0.0)
        );
        let slots: HashSet<_> = a.iter().map(|p| p.slots).collect();
        assert!(slots.len() >= 3);
        assert_eq!(
            a.iter().map(|p| p.store_id).collect::<Vec<_>>(),
            (1..=20).collect::<Vec<_>>()
        );
    }

    #[test]
    fn profile_and_cancellation_curves() {
        let at = |h: f64| rate_factor(START + (h * HOUR_MS) as i64);
        assert_eq!(at(13.0), 0.85);
        assert_eq!(at(19.5), 1.0);
        assert_eq!(at(3.0), 0.03);
        assert!((at(14.5) - 0.6).abs() < 1e-9);
        assert!((0..24 * 60).all(|m| (0.0..=1.0).contains(&at(f64::from(m) / 60.0))));
        assert!((cancel_probability(0) - 0.02).abs() < 1e-12);
        assert!(cancel_probability(-5) == cancel_probability(0));
        let p60 = cancel_probability(60 * 60_000);
        assert!(p60 > 0.5 && p60 < 0.52, "{p60}");
        let p10 = cancel_probability(10 * 60_000);
        assert!(p10 > 0.13 && p10 < 0.15, "{p10}");
        assert!(p10 < cancel_probability(30 * 60_000) && p60 < cancel_probability(7_200_000));
        assert!(cancel_probability(i64::MAX) <= 0.8);
    }

    #[test]
    fn memory_is_only_the_live_orders() {
        let mut s = sim(10, 3);
        let mut max_live = 0;
        for _ in 0..100_000 {
            s.next();
            max_live = max_live.max(s.live_orders());
        }
        // About an hour of orders at most, never the whole stream.
        assert!(max_live < 2_000, "{max_live}");
    }

    #[test]
    fn truth_csv_line() {
        let t = Truth {
            store_id: 3,
            store_order_id: 1004,
            placed_at_ms: 10,
            outcome: Outcome::Cancelled,
            ended_at_ms: 70_010,
            wait_ms: 70_000,
        };
        assert_eq!(t.to_string(), "3,1004,10,cancelled,70010,70000");
        assert_eq!(
            Truth::CSV_HEADER.split(',').count(),
            t.to_string().split(',').count()
        );
    }
}
