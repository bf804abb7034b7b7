//! The feature set: per store, one record per closed tumbling window of event time, the way
//! the workshops' ksqlDB builds a training set (`WINDOW TUMBLING (SIZE 5 MINUTES)`), but from
//! exactly what the state saw. Pure like [`crate::state`], which it reads: no I/O, no clock.
//!
//! # Semantics
//!
//! **Windows.** `[start, start + size)` with `start` a multiple of `size` since the epoch (so
//! every instance and every replay cuts the same windows). Time is per store, as in the state:
//! the store's *stream time* is the largest event time applied to it.
//!
//! **Closing.** A window closes when its store's stream time reaches `end + grace`. An event
//! whose own window has closed by then is *late*: the state still applies it (the answers
//! stay those of the service), but no feature record counts it; [`Features::apply`] returns it
//! so the caller counts and logs it. A window is closed once and never reopens.
//!
//! **What a record holds.** Orders placed, completed and cancelled whose event time is in the
//! window, counted once per order (duplicates, conflicts and ignored stores are not counted).
//! The completions' waits are the state's observations completed in the window, read when it
//! closes, so a tentative reported wait corrected by its late order within the grace counts as
//! measured, as in the answers. Open orders and the published estimate *at the window's end*
//! are the store's answer just before the first event at or after `end` is applied (an idle
//! store's answer stays as of its last event, as in the state). Hour of day and day of week
//! (ISO, Monday = 1) are those of `start` in UTC.
//!
//! **Empty windows are emitted**, between a store's first window and its stream time: a quiet
//! five minutes is a fact a model should see, and a regular series per store needs no gap
//! filling downstream. A store's windows start with its first event and end with its stream
//! time (no event, no time passes), and at most [`MAX_EMPTY_RUN`] empty windows are emitted for
//! one gap, so a store idle for months (or a bogus timestamp) cannot flood the topic.
//!
//! **Determinism.** The records are a function of each store's sequence of events, like the
//! answers: a replay of the same input gives the same records, keyed by (store, start). Which
//! of them are published (not those a restart's replay closes) is the pipeline's business.

use std::collections::VecDeque;

use crate::domain::{Basis, EventTime, OrderEvent, StoreId};
use crate::state::{
    CompletedWait, IdHasherBuilder, IdMap, IgnoreReason, ObservationSource, Outcome, State,
    minutes, percentile,
};

/// At most this many empty windows are emitted for one gap between a store's events (a day of
/// 5-minute windows).
pub const MAX_EMPTY_RUN: i64 = 288;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Window size and grace, in event-time milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureConfig {
    pub window_ms: i64,
    pub grace_ms: i64,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        FeatureConfig {
            window_ms: 5 * 60_000,
            grace_ms: 60_000,
        }
    }
}

/// One closed window of one store: a record of the feature set.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureWindow {
    pub store_id: StoreId,
    pub window_start_ms: EventTime,
    /// Exclusive.
    pub window_end_ms: EventTime,
    pub orders_placed: u32,
    pub orders_completed: u32,
    pub orders_cancelled: u32,
    pub observations_measured: u32,
    pub observations_reported: u32,
    pub wait_mean_minutes: Option<f64>,
    pub wait_p50_minutes: Option<f64>,
    pub wait_p90_minutes: Option<f64>,
    pub open_orders_at_end: u32,
    /// The published wait time at the window's end, whole minutes.
    pub wait_time_minutes_at_end: Option<i32>,
    pub basis_at_end: Basis,
    /// 0..=23, UTC, of the window's start.
    pub hour_of_day: u8,
    /// ISO 8601: Monday = 1 … Sunday = 7, UTC, of the window's start.
    pub day_of_week: u8,
}

impl FeatureWindow {
    /// The record key: store and window start, so a compacted topic keeps one per window.
    pub fn key(&self) -> String {
        format!("{}@{}", self.store_id, self.window_start_ms)
    }
}

/// An event whose window had already closed: applied to the state, counted in no record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Late {
    pub store_id: StoreId,
    pub at: EventTime,
    /// Start of the (closed) window the event belongs to.
    pub window_start_ms: EventTime,
    /// The store's stream time when it arrived.
    pub stream_time_ms: EventTime,
}

/// The answer the window's end saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AtEnd {
    open_orders: u32,
    wait_time_minutes: Option<i32>,
    basis: Basis,
}

/// A window still open (or closable, not yet closed).
#[derive(Debug, Clone, Copy)]
struct Open {
    start: EventTime,
    placed: u32,
    completed: u32,
    cancelled: u32,
    at_end: Option<AtEnd>,
}

impl Open {
    fn new(start: EventTime) -> Self {
        Open {
            start,
            placed: 0,
            completed: 0,
            cancelled: 0,
            at_end: None,
        }
    }
}

/// One store's windows, oldest first, the last one holding its stream time: contiguous but
/// for a capped empty run.
#[derive(Debug)]
struct StoreWindows {
    stream_time: EventTime,
    open: VecDeque<Open>,
}

/// Every store's open windows and the records closed since the last [`Features::drain_closed`].
#[derive(Debug)]
pub struct Features {
    cfg: FeatureConfig,
    stores: IdMap<StoreId, StoreWindows>,
    closed: Vec<FeatureWindow>,
    scratch: Vec<CompletedWait>,
    waits: Vec<i64>,
}

impl Features {
    /// A size below 1 ms is taken as 1 ms and a negative grace as 0, so no input can panic.
    pub fn new(mut cfg: FeatureConfig) -> Self {
        cfg.window_ms = cfg.window_ms.max(1);
        cfg.grace_ms = cfg.grace_ms.max(0);
        Features {
            cfg,
            stores: IdMap::with_hasher(IdHasherBuilder::random()),
            closed: Vec::new(),
            scratch: Vec::new(),
            waits: Vec::new(),
        }
    }

    pub fn config(&self) -> &FeatureConfig {
        &self.cfg
    }

    fn window_start(&self, at: EventTime) -> EventTime {
        at.div_euclid(self.cfg.window_ms)
            .saturating_mul(self.cfg.window_ms)
    }

    /// Applies `event` to `state` and to the store's windows: windows whose end the event's
    /// time reaches take the store's answer first, windows whose grace it passes close.
    /// Returns the state's outcome, and the event if it came after its window closed.
    pub fn apply(
        &mut self,
        state: &mut State,
        event: &OrderEvent,
        at: EventTime,
    ) -> (Outcome, Option<Late>) {
        let store = event.store_id();
        if self.stores.contains_key(&store) {
            self.advance(state, store, at);
            let outcome = state.apply(event, at);
            (outcome, self.count(store, event, outcome, at))
        } else {
            let outcome = state.apply(event, at);
            if matches!(
                outcome,
                Outcome::Ignored(IgnoreReason::InvalidStore | IgnoreReason::StoreLimit)
            ) {
                return (outcome, None);
            }
            let mut open = VecDeque::with_capacity(2);
            open.push_back(Open::new(self.window_start(at)));
            self.stores.insert(
                store,
                StoreWindows {
                    stream_time: at,
                    open,
                },
            );
            (outcome, self.count(store, event, outcome, at))
        }
    }

    /// Moves the store's stream time to `at` if later, before the event reaches the state.
    fn advance(&mut self, state: &State, store: StoreId, at: EventTime) {
        let size = self.cfg.window_ms;
        let grace = self.cfg.grace_ms;
        let target = self.window_start(at);
        let Some(w) = self.stores.get_mut(&store) else {
            return;
        };
        if at <= w.stream_time {
            return;
        }
        w.stream_time = at;
        // The answer as the windows' ends see it: before this event, computed once.
        let mut at_end = None;
        let mut snapshot = || {
            *at_end.get_or_insert_with(|| {
                let a = state.answer(store);
                AtEnd {
                    open_orders: a.as_ref().map_or(0, |a| a.open_orders),
                    wait_time_minutes: a.as_ref().and_then(|a| a.wait_time_minutes),
                    basis: a.as_ref().map_or(Basis::None, |a| a.basis),
                }
            })
        };
        for o in w.open.iter_mut() {
            if o.at_end.is_none() && o.start.saturating_add(size) <= at {
                o.at_end = Some(snapshot());
            }
        }
        // New windows up to the event's, the empty run capped.
        let last = w.open.back().map_or(target, |o| o.start);
        if last < target {
            let gap = (target - last) / size - 1;
            let mut next = last.saturating_add(size);
            if gap > MAX_EMPTY_RUN {
                // Keep the first MAX_EMPTY_RUN empty windows after the store's last event.
                for _ in 0..MAX_EMPTY_RUN {
                    let mut o = Open::new(next);
                    o.at_end = Some(snapshot());
                    w.open.push_back(o);
                    next = next.saturating_add(size);
                }
                next = target;
            }
            while next <= target {
                let mut o = Open::new(next);
                if next.saturating_add(size) <= at {
                    o.at_end = Some(snapshot());
                }
                w.open.push_back(o);
                next = next.saturating_add(size);
            }
        }
        // Close what the grace has passed; the state has not yet seen this event, so its
        // window still holds every completion of these windows.
        while let Some(front) = w.open.front() {
            let end = front.start.saturating_add(size);
            if end.saturating_add(grace) > at {
                break;
            }
            let Some(o) = w.open.pop_front() else { break };
            self.scratch.clear();
            state.completed_between(store, o.start, end, &mut self.scratch);
            self.closed
                .push(close(store, &o, end, &self.scratch, &mut self.waits));
        }
    }

    /// Counts the applied event in its window, or reports it late.
    fn count(
        &mut self,
        store: StoreId,
        event: &OrderEvent,
        outcome: Outcome,
        at: EventTime,
    ) -> Option<Late> {
        let size = self.cfg.window_ms;
        let grace = self.cfg.grace_ms;
        let start = self.window_start(at);
        let w = self.stores.get_mut(&store)?;
        if start.saturating_add(size).saturating_add(grace) <= w.stream_time {
            return Some(Late {
                store_id: store,
                at,
                window_start_ms: start,
                stream_time_ms: w.stream_time,
            });
        }
        // Open windows are sorted by start; an event before the first one (a store's first
        // events out of order, within the grace) fills the windows back to its own.
        let i = match w.open.iter().rposition(|o| o.start <= start) {
            Some(i) if w.open[i].start == start => i,
            Some(i) => {
                // Inside a gap whose empty run was capped: only with a grace beyond it.
                w.open.insert(i + 1, Open::new(start));
                i + 1
            }
            None => {
                let mut s = w.open.front().map_or(start, |o| o.start - size);
                while s >= start {
                    w.open.push_front(Open::new(s));
                    s -= size;
                }
                0
            }
        };
        let o = w.open.get_mut(i)?;
        match (event, outcome) {
            (
                OrderEvent::Placed(_),
                Outcome::Opened
                | Outcome::Corrected
                | Outcome::Observed(_)
                | Outcome::Resolved
                | Outcome::Ignored(IgnoreReason::CompletedBeforePlaced),
            ) => o.placed += 1,
            (
                OrderEvent::Completed(_),
                Outcome::Observed(_) | Outcome::HeldCompletion | Outcome::Ignored(_),
            ) => o.completed += 1,
            (OrderEvent::Cancelled(_), Outcome::Cancelled | Outcome::HeldCancellation) => {
                o.cancelled += 1
            }
            _ => {}
        }
        None
    }

    /// Forgets a store's open windows (its partition moved to another instance, which
    /// replays it). Returns whether it had any.
    pub fn remove_store(&mut self, store: StoreId) -> bool {
        self.stores.remove(&store).is_some()
    }

    /// The records closed since the last call, in the order they closed. Drains them.
    pub fn drain_closed(&mut self) -> std::vec::Drain<'_, FeatureWindow> {
        self.closed.drain(..)
    }

    /// Records closed and not yet drained.
    pub fn closed_len(&self) -> usize {
        self.closed.len()
    }

    /// Drops the records closed after the first `len` (those a replayed event closed, which
    /// the run before published). Returns how many.
    pub fn discard_closed_after(&mut self, len: usize) -> usize {
        let n = self.closed.len().saturating_sub(len);
        self.closed.truncate(len);
        n
    }

    /// Open windows over all stores (a gauge).
    pub fn open_windows(&self) -> usize {
        self.stores.values().map(|w| w.open.len()).sum()
    }
}

/// The record of a closing window.
fn close(
    store: StoreId,
    o: &Open,
    end: EventTime,
    completions: &[CompletedWait],
    waits: &mut Vec<i64>,
) -> FeatureWindow {
    waits.clear();
    waits.extend(completions.iter().map(|c| c.wait_ms));
    let measured = completions
        .iter()
        .filter(|c| c.source == ObservationSource::Measured)
        .count();
    let n = waits.len();
    let mean = (n > 0).then(|| waits.iter().map(|&w| w as f64).sum::<f64>() / n as f64);
    let p50 = percentile(waits, 0.5);
    let p90 = percentile(waits, 0.9);
    let at_end = o.at_end.unwrap_or(AtEnd {
        open_orders: 0,
        wait_time_minutes: None,
        basis: Basis::None,
    });
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    FeatureWindow {
        store_id: store,
        window_start_ms: o.start,
        window_end_ms: end,
        orders_placed: o.placed,
        orders_completed: o.completed,
        orders_cancelled: o.cancelled,
        observations_measured: count(measured),
        observations_reported: count(n - measured),
        wait_mean_minutes: mean.map(minutes),
        wait_p50_minutes: p50.map(minutes),
        wait_p90_minutes: p90.map(minutes),
        open_orders_at_end: at_end.open_orders,
        wait_time_minutes_at_end: at_end.wait_time_minutes,
        basis_at_end: at_end.basis,
        hour_of_day: hour_of_day(o.start),
        day_of_week: day_of_week(o.start),
    }
}

/// 0..=23 in UTC.
pub fn hour_of_day(ms: EventTime) -> u8 {
    (ms.rem_euclid(DAY_MS) / HOUR_MS) as u8
}

/// ISO 8601 day of week in UTC: Monday = 1 … Sunday = 7 (the epoch was a Thursday).
pub fn day_of_week(ms: EventTime) -> u8 {
    (ms.div_euclid(DAY_MS) + 3).rem_euclid(7) as u8 + 1
}

#[cfg(test)]
mod tests;
