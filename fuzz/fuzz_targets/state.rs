//! Arbitrary sequences of events, priors, dirty-set drains and store removals into the state
//! machine, under a small arbitrary configuration. Never panics, and after every step: at most
//! `max_stores` stores; per store, open orders, held terminals and window observations bounded
//! by the events of their kind still inside the TTL/window of the store's stream time (a model
//! kept here); gauges equal to the sum of the answers; every answer finite and non-negative.

#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use waittimes::domain::{
    Basis, EventTime, OrderCancelled, OrderCompleted, OrderEvent, OrderPlaced, StoreId,
};
use waittimes::state::{Estimator, State, StateConfig};

#[derive(Debug, Arbitrary)]
struct Input {
    window_s: u16,
    match_ttl_s: u16,
    open_ttl_s: u16,
    estimator: u8,
    max_stores: u8,
    steps: Vec<Step>,
}

#[derive(Debug, Arbitrary)]
enum Time {
    /// Move the clock by a few seconds either way (the usual case).
    Delta(i16),
    /// Anything at all, extremes included.
    Absolute(i64),
}

#[derive(Debug, Arbitrary)]
enum Step {
    Placed {
        store: i8,
        id: u8,
        at: Time,
    },
    Completed {
        store: i8,
        id: u8,
        rack: Option<i32>,
        delivery: Option<i32>,
        at: Time,
    },
    Cancelled {
        store: i8,
        id: u8,
        at: Time,
    },
    /// An id outside the small range, to reach the hash maps' other buckets.
    WildId {
        store: i8,
        id: i32,
        kind: u8,
        at: Time,
    },
    Prior {
        store: i8,
        minutes: i32,
    },
    TakeDirty,
    Remove {
        store: i8,
    },
}

/// What the model remembers per store: (stream time after the event, event kind).
#[derive(Default)]
struct Model {
    history: HashMap<StoreId, Vec<(EventTime, Kind)>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Placed,
    Completed,
    Cancelled,
}

fn event(
    kind: Kind,
    store: StoreId,
    id: i32,
    rack: Option<i32>,
    delivery: Option<i32>,
) -> OrderEvent {
    match kind {
        Kind::Placed => OrderEvent::Placed(OrderPlaced {
            store_id: store,
            store_order_id: id,
        }),
        Kind::Cancelled => OrderEvent::Cancelled(OrderCancelled {
            store_id: store,
            store_order_id: id,
        }),
        Kind::Completed => OrderEvent::Completed(OrderCompleted {
            store_id: store,
            store_order_id: id,
            rack_time_secs: rack,
            order_delivery_time_secs: delivery,
        }),
    }
}

fn finite_non_negative(v: Option<f64>) -> bool {
    v.is_none_or(|v| v.is_finite() && v >= 0.0)
}

fuzz_target!(|input: Input| {
    let cfg = StateConfig {
        window_ms: i64::from(input.window_s) * 1000,
        match_ttl_ms: i64::from(input.match_ttl_s) * 1000,
        open_ttl_ms: i64::from(input.open_ttl_s) * 1000,
        estimator: match input.estimator % 4 {
            0 => Estimator::Mean,
            1 => Estimator::P50,
            2 => Estimator::P90,
            _ => Estimator::Queue,
        },
        max_stores: usize::from(input.max_stores % 8),
    };
    let mut st = State::new(cfg);
    let cfg = *st.config();
    let mut model = Model::default();
    let mut clock: EventTime = 1_700_000_000_000;
    for step in input.steps.iter().take(4096) {
        let mut at = |t: &Time| {
            clock = match *t {
                Time::Delta(d) => clock.saturating_add(i64::from(d) * 250),
                Time::Absolute(a) => a,
            };
            clock
        };
        let applied = match step {
            Step::Placed { store, id, at: t } => {
                Some((Kind::Placed, *store, i32::from(*id), None, None, at(t)))
            }
            Step::Completed {
                store,
                id,
                rack,
                delivery,
                at: t,
            } => Some((
                Kind::Completed,
                *store,
                i32::from(*id),
                *rack,
                *delivery,
                at(t),
            )),
            Step::Cancelled { store, id, at: t } => {
                Some((Kind::Cancelled, *store, i32::from(*id), None, None, at(t)))
            }
            Step::WildId {
                store,
                id,
                kind,
                at: t,
            } => {
                let k = [Kind::Placed, Kind::Completed, Kind::Cancelled][usize::from(*kind % 3)];
                Some((k, *store, *id, Some(60), Some(600), at(t)))
            }
            Step::Prior { store, minutes } => {
                let known = st.stores().count();
                let new = st.answer(StoreId::from(*store)).is_none();
                let ok = st.set_prior(StoreId::from(*store), *minutes);
                let expected = *store > 0 && *minutes >= 0 && !(new && known >= cfg.max_stores);
                assert_eq!(ok, expected, "set_prior({store}, {minutes})");
                None
            }
            Step::TakeDirty => {
                let dirty = st.take_dirty();
                let mut sorted = dirty.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), dirty.len(), "a store reported dirty twice");
                assert!(st.take_dirty().is_empty());
                None
            }
            Step::Remove { store } => {
                st.remove_store(StoreId::from(*store));
                model.history.remove(&StoreId::from(*store));
                None
            }
        };
        if let Some((kind, store, id, rack, delivery, at)) = applied {
            let store = StoreId::from(store);
            st.apply(&event(kind, store, id, rack, delivery), at);
            if let Some(stream) = st.stream_time(store) {
                model.history.entry(store).or_default().push((stream, kind));
            }
        }
        check(&st, &cfg, &model);
    }
});

fn check(st: &State, cfg: &StateConfig, model: &Model) {
    let c = st.counters();
    assert!(c.stores as usize <= cfg.max_stores, "{} stores", c.stores);
    let (mut open, mut observations) = (0u64, 0u64);
    let mut scratch = Vec::new();
    for store in st.stores() {
        assert!(store > 0);
        let a = st
            .answer_with(store, &mut scratch)
            .expect("a listed store answers");
        assert_eq!(a.store_id, store);
        open += u64::from(a.open_orders);
        observations += u64::from(a.observations);
        assert!(a.wait_time_minutes.is_none_or(|m| m >= 0), "{a:?}");
        assert!(
            finite_non_negative(a.mean_minutes)
                && finite_non_negative(a.p50_minutes)
                && finite_non_negative(a.p90_minutes)
                && finite_non_negative(Some(a.completions_per_hour)),
            "{a:?}"
        );
        assert!(
            a.cancellation_rate.is_none_or(|r| (0.0..=1.0).contains(&r)),
            "{a:?}"
        );
        if a.basis == Basis::Live {
            assert!(a.observations > 0 && a.wait_time_minutes.is_some(), "{a:?}");
        }
        let Some(now) = st.stream_time(store) else {
            assert_eq!((a.open_orders, a.observations), (0, 0));
            continue;
        };
        assert_eq!(a.updated_at_ms, Some(now));
        // what can still be alive: events whose stream time is within the span of now
        let live = |kinds: &[Kind], span: i64| {
            model.history.get(&store).map_or(0, |h| {
                h.iter()
                    .filter(|(t, k)| kinds.contains(k) && t.saturating_add(span) >= now)
                    .count() as u64
            })
        };
        assert!(
            u64::from(a.open_orders) <= live(&[Kind::Placed], cfg.open_ttl_ms),
            "store {store}: {} open orders",
            a.open_orders
        );
        assert!(
            u64::from(a.observations) <= live(&[Kind::Completed], cfg.window_ms),
            "store {store}: {} observations",
            a.observations
        );
    }
    let held: u64 = model
        .history
        .values()
        .map(|h| {
            let now = h.iter().map(|(t, _)| *t).max().unwrap_or(i64::MIN);
            h.iter()
                .filter(|(t, k)| *k != Kind::Placed && t.saturating_add(cfg.match_ttl_ms) >= now)
                .count() as u64
        })
        .sum();
    assert!(
        c.held_terminals <= held,
        "{} held terminals",
        c.held_terminals
    );
    assert_eq!(c.open_orders, open);
    assert_eq!(c.window_observations, observations);
    let total: u64 = model.history.values().map(|h| h.len() as u64).sum();
    assert!(c.held_terminals + c.open_orders <= total);
}
