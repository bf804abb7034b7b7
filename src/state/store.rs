//! One store's lifecycle: its orders, their expiry, its window and its stream time.
//!
//! Orders still waited on (open, or a terminal held for its order) live in `pending`; resolved
//! orders leave a one-byte tombstone in the separate `tombstones` map. Keeping them apart keeps
//! both maps small and dense (the hot path is bound by cache misses on map buckets), and makes
//! most expiry checks a miss on a map's control bytes rather than a bucket read.
//!
//! Expiry is driven by two queues of due times, checked whenever the store's stream time
//! advances; an entry whose order has since changed is skipped when it reaches the front (lazy
//! deletion), so a transition never searches a queue.
//!
//! - `open_due`: `placed_at + open_ttl` per placement. Placements come from one topic
//!   partition, so they arrive almost in time order; a late one is slid back into place by a
//!   short scan from the back ([`OPEN_SCAN`] entries). A placement later than that scan allows is
//!   queued where the scan stopped: it may then expire late, never early, and memory stays
//!   bounded. Stale entries (resolved orders) are compacted away once they outnumber live
//!   open orders 3 to 1, so the queue is bounded by live orders, not by the order rate × TTL.
//! - `match_due`: `stream_time + match_ttl` for held terminals and tombstones, taken at the
//!   moment they are created. Stream time never goes back, so this queue is in order by
//!   construction and expiry is exact. A tombstone is only ever removed by its own entry, and
//!   an order cannot be resolved twice while its tombstone lives, so a tombstone entry is never
//!   stale.

use std::collections::VecDeque;
use std::collections::hash_map::Entry;

use super::backlog::Backlog;
use super::estimator::{Estimator, Summary, minutes, whole_minutes};
use super::hash::{IdHasherBuilder, IdMap};
use super::window::{Observation, Window, shrink_if_sparse};
use super::{IgnoreReason, ObservationSource, Outcome, StateConfig, Totals};
use crate::domain::{Basis, EventTime, OrderCompleted, OrderEvent, OrderId, StoreId, StoreWait};

/// How far back a late placement is slid into the open queue.
const OPEN_SCAN: usize = 64;
/// Queues and maps below this size are neither compacted nor shrunk.
const COMPACT_FLOOR: usize = 64;
/// Rates are never measured over less than this, so that a store's first completion does not
/// read as thousands per hour.
pub(crate) const MIN_RATE_SPAN_MS: i64 = 60_000;
/// `HeldCompleted::tentative_secs` when the completion reported no valid durations (a valid
/// sum of two non-negative `i32` is at most `u32::MAX − 1`).
const NO_TENTATIVE: u32 = u32::MAX;
/// `Pending::Open::promised_s` when the backlog model had nothing to promise yet.
const NO_PROMISE: u32 = u32::MAX;

/// An order the store is still waiting on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// Placed, not yet completed or cancelled. `found` is the open orders it found (capped),
    /// `promised_s` the backlog model's point estimate then ([`NO_PROMISE`] if none): its
    /// completion teaches the model.
    Open {
        placed_at: EventTime,
        found: u16,
        promised_s: u32,
    },
    /// Completed before its placement was seen. `tentative_secs` is the reported wait already
    /// in the window (or [`NO_TENTATIVE`]), kept so that exactly it can be retracted.
    HeldCompleted {
        completed_at: EventTime,
        tentative_secs: u32,
    },
    /// Cancelled before its placement was seen (already counted as a cancellation).
    HeldCancelled,
}

// The backlog estimator's fields fit in the padding of the largest variant: an open order
// costs no more memory than before.
const _: () = assert!(std::mem::size_of::<Pending>() == 16);

/// How a resolved order ended: its tombstone, which makes redeliveries idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Completed,
    Cancelled,
}

impl Ended {
    /// The outcome of another terminal event for an order that ended so.
    fn repeat(self, completed: bool) -> Outcome {
        if (self == Ended::Completed) == completed {
            Outcome::Duplicate
        } else {
            Outcome::Conflict
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct OpenDue {
    deadline: EventTime,
    id: OrderId,
}

#[derive(Debug, Clone, Copy)]
struct MatchDue {
    deadline: EventTime,
    id: OrderId,
    /// The entry is for a tombstone (else for a held terminal).
    tombstone: bool,
}

/// Gauges of one store, summed by `State::counters`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StoreGauges {
    pub open: u64,
    pub held: u64,
    pub tombstones: u64,
    pub window: u64,
    pub queued: u64,
}

/// One store's state. A store known only from its prior has no stream time.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) prior: Option<i32>,
    /// The largest event time applied (any topic); `None` until the first event.
    stream_time: Option<EventTime>,
    /// The smallest event time applied: how long the store has been observed.
    first_seen: EventTime,
    pending: IdMap<OrderId, Pending>,
    tombstones: IdMap<OrderId, Ended>,
    open_due: VecDeque<OpenDue>,
    match_due: VecDeque<MatchDue>,
    window: Window,
    /// Open orders in `pending` (the rest are held).
    open: usize,
    /// The store's learned response of waits to its queue (the backlog estimator).
    backlog: Backlog,
    /// Equal to `State`'s epoch while the store is in the dirty list.
    pub(crate) dirty_epoch: u64,
}

impl Store {
    pub(crate) fn new(hasher: IdHasherBuilder) -> Self {
        Store {
            prior: None,
            stream_time: None,
            first_seen: EventTime::MAX,
            pending: IdMap::with_hasher(hasher),
            tombstones: IdMap::with_hasher(hasher),
            open_due: VecDeque::new(),
            match_due: VecDeque::new(),
            window: Window::default(),
            open: 0,
            backlog: Backlog::default(),
            dirty_epoch: 0,
        }
    }

    pub(crate) fn stream_time(&self) -> Option<EventTime> {
        self.stream_time
    }

    pub(crate) fn gauges(&self) -> StoreGauges {
        StoreGauges {
            open: self.open as u64,
            held: (self.pending.len() - self.open) as u64,
            tombstones: self.tombstones.len() as u64,
            window: self.window.len() as u64,
            queued: (self.open_due.len() + self.match_due.len()) as u64,
        }
    }

    /// Applies one event of this store. Returns the outcome and whether the store's answer may
    /// have changed.
    pub(crate) fn apply(
        &mut self,
        cfg: &StateConfig,
        event: &OrderEvent,
        at: EventTime,
        totals: &mut Totals,
    ) -> (Outcome, bool) {
        let advanced = self.advance(cfg, at, totals);
        let now = self.stream_time.unwrap_or(at);
        let outcome = match event {
            OrderEvent::Placed(e) => self.placed(cfg, e.store_order_id, at, now, totals),
            OrderEvent::Completed(e) => self.completed(cfg, e, at, now, totals),
            OrderEvent::Cancelled(e) => self.cancelled(cfg, e.store_order_id, at, now, totals),
        };
        (outcome, advanced || outcome.changes_state())
    }

    /// Moves stream time to `at` if later, expiring what is due. Returns whether it moved.
    fn advance(&mut self, cfg: &StateConfig, at: EventTime, totals: &mut Totals) -> bool {
        self.first_seen = self.first_seen.min(at);
        let now = match self.stream_time {
            Some(s) if at <= s => return false,
            _ => at,
        };
        self.stream_time = Some(now);
        let mut expired = false;

        // Open orders: expire once now > placed_at + open_ttl.
        while let Some(&due) = self.open_due.front() {
            if due.deadline >= now {
                break;
            }
            self.open_due.pop_front();
            if matches!(self.pending.get(&due.id), Some(Pending::Open { placed_at, .. })
                if placed_at.saturating_add(cfg.open_ttl_ms) == due.deadline)
            {
                self.pending.remove(&due.id);
                self.open -= 1;
                totals.expired_open += 1;
                expired = true;
            }
        }

        // Held terminals and tombstones: expire once now > created + match_ttl.
        while let Some(&due) = self.match_due.front() {
            if due.deadline >= now {
                break;
            }
            self.match_due.pop_front();
            if due.tombstone {
                self.tombstones.remove(&due.id);
                expired = true;
            } else if matches!(
                self.pending.get(&due.id),
                Some(Pending::HeldCompleted { .. } | Pending::HeldCancelled)
            ) {
                // A held completion's tentative observation stays in the window.
                self.pending.remove(&due.id);
                totals.expired_held += 1;
                expired = true;
            }
        }

        self.window.evict(now.saturating_sub(cfg.window_ms));

        if expired {
            shrink_map_if_sparse(&mut self.pending);
            shrink_map_if_sparse(&mut self.tombstones);
            shrink_if_sparse(&mut self.open_due);
            shrink_if_sparse(&mut self.match_due);
        }
        true
    }

    /// Leaves a tombstone for a just resolved order, for `match_ttl` of stream time.
    fn tombstone(&mut self, cfg: &StateConfig, now: EventTime, id: OrderId, ended: Ended) {
        self.tombstones.insert(id, ended);
        push_match(&mut self.match_due, now, cfg, id, true);
    }

    fn placed(
        &mut self,
        cfg: &StateConfig,
        id: OrderId,
        placed_at: EventTime,
        now: EventTime,
        totals: &mut Totals,
    ) -> Outcome {
        // A placement already past its open_ttl would have expired had it come in time; treat
        // it exactly so, which keeps the answers independent of how late it came.
        let too_old = now.saturating_sub(placed_at) > cfg.open_ttl_ms;
        let lo = now.saturating_sub(cfg.window_ms);
        let (ended, outcome) = match self.pending.entry(id) {
            Entry::Vacant(v) => {
                if self.tombstones.contains_key(&id) {
                    return Outcome::Duplicate;
                }
                if too_old {
                    totals.expired_open += 1;
                    return Outcome::Expired;
                }
                let found = u32::try_from(self.open).unwrap_or(u32::MAX);
                let promised_s = self.backlog.promise_ms(found).map_or(NO_PROMISE, |ms| {
                    (ms / 1_000.0).round().min(f64::from(NO_PROMISE - 1)) as u32
                });
                v.insert(Pending::Open {
                    placed_at,
                    found: u16::try_from(found).unwrap_or(u16::MAX),
                    promised_s,
                });
                self.open += 1;
                push_open(
                    &mut self.open_due,
                    placed_at.saturating_add(cfg.open_ttl_ms),
                    id,
                );
                self.compact(cfg);
                return Outcome::Opened;
            }
            Entry::Occupied(o) => match *o.get() {
                Pending::Open { .. } => return Outcome::Duplicate,
                _ if too_old => {
                    totals.expired_open += 1;
                    return Outcome::Expired;
                }
                Pending::HeldCancelled => {
                    o.remove();
                    (Ended::Cancelled, Outcome::Resolved)
                }
                Pending::HeldCompleted {
                    completed_at,
                    tentative_secs,
                } => {
                    o.remove();
                    let tentative =
                        (tentative_secs != NO_TENTATIVE).then(|| i64::from(tentative_secs) * 1_000);
                    let outcome = if placed_at <= completed_at {
                        // Not too old, so completed_at − placed_at <= now − placed_at <= open_ttl.
                        let measured = Observation {
                            at: completed_at,
                            wait_ms: completed_at.saturating_sub(placed_at),
                            measured: true,
                        };
                        totals.observations_measured += 1;
                        match tentative {
                            Some(old) => {
                                self.window.replace(lo, old, measured);
                                totals.observations_corrected += 1;
                                Outcome::Corrected
                            }
                            None => {
                                self.window.insert(lo, measured);
                                Outcome::Observed(ObservationSource::Measured)
                            }
                        }
                    } else if tentative.is_some() {
                        // Placed after it completed (the Datagen case): the reported wait stays.
                        Outcome::Resolved
                    } else {
                        Outcome::Ignored(IgnoreReason::CompletedBeforePlaced)
                    };
                    (Ended::Completed, outcome)
                }
            },
        };
        self.tombstone(cfg, now, id, ended);
        outcome
    }

    fn completed(
        &mut self,
        cfg: &StateConfig,
        e: &OrderCompleted,
        completed_at: EventTime,
        now: EventTime,
        totals: &mut Totals,
    ) -> Outcome {
        let id = e.store_order_id;
        let lo = now.saturating_sub(cfg.window_ms);
        let reported = reported_secs(
            e.rack_time_secs,
            e.order_delivery_time_secs,
            cfg.open_ttl_ms,
        );
        match self.pending.entry(id) {
            Entry::Vacant(v) => {
                if let Some(ended) = self.tombstones.get(&id) {
                    return ended.repeat(true);
                }
                v.insert(Pending::HeldCompleted {
                    completed_at,
                    tentative_secs: *reported.as_ref().unwrap_or(&NO_TENTATIVE),
                });
                push_match(&mut self.match_due, now, cfg, id, false);
                match reported {
                    Ok(secs) => {
                        self.window.insert(
                            lo,
                            Observation {
                                at: completed_at,
                                wait_ms: i64::from(secs) * 1_000,
                                measured: false,
                            },
                        );
                        totals.observations_reported += 1;
                        Outcome::HeldCompletion
                    }
                    Err(reason) => Outcome::Ignored(reason),
                }
            }
            Entry::Occupied(o) => match *o.get() {
                Pending::Open {
                    placed_at,
                    found,
                    promised_s,
                } => {
                    o.remove();
                    self.open -= 1;
                    self.tombstone(cfg, now, id, Ended::Completed);
                    if let Ok(w) = measured_ms(placed_at, completed_at, cfg.open_ttl_ms) {
                        let promised =
                            (promised_s != NO_PROMISE).then(|| f64::from(promised_s) * 1_000.0);
                        self.backlog.learn(u32::from(found), promised, w);
                    }
                    let (wait_ms, source) = match (
                        measured_ms(placed_at, completed_at, cfg.open_ttl_ms),
                        reported,
                    ) {
                        (Ok(w), _) => (w, ObservationSource::Measured),
                        (Err(_), Ok(secs)) => {
                            (i64::from(secs) * 1_000, ObservationSource::Reported)
                        }
                        (Err(reason), Err(_)) => return Outcome::Ignored(reason),
                    };
                    let measured = source == ObservationSource::Measured;
                    self.window.insert(
                        lo,
                        Observation {
                            at: completed_at,
                            wait_ms,
                            measured,
                        },
                    );
                    if measured {
                        totals.observations_measured += 1;
                    } else {
                        totals.observations_reported += 1;
                    }
                    Outcome::Observed(source)
                }
                Pending::HeldCompleted { .. } => Outcome::Duplicate,
                Pending::HeldCancelled => Outcome::Conflict,
            },
        }
    }

    fn cancelled(
        &mut self,
        cfg: &StateConfig,
        id: OrderId,
        cancelled_at: EventTime,
        now: EventTime,
        totals: &mut Totals,
    ) -> Outcome {
        let lo = now.saturating_sub(cfg.window_ms);
        let outcome = match self.pending.entry(id) {
            Entry::Vacant(v) => {
                if let Some(ended) = self.tombstones.get(&id) {
                    return ended.repeat(false);
                }
                v.insert(Pending::HeldCancelled);
                push_match(&mut self.match_due, now, cfg, id, false);
                Outcome::HeldCancellation
            }
            Entry::Occupied(o) => match *o.get() {
                Pending::Open { .. } => {
                    o.remove();
                    self.open -= 1;
                    self.tombstone(cfg, now, id, Ended::Cancelled);
                    Outcome::Cancelled
                }
                Pending::HeldCancelled => return Outcome::Duplicate,
                Pending::HeldCompleted { .. } => return Outcome::Conflict,
            },
        };
        self.window.cancel(lo, cancelled_at);
        totals.cancellations += 1;
        outcome
    }

    /// Compacts `open_due` once stale entries outnumber live open orders 3 to 1 (amortised
    /// O(1): each compaction drops at least three quarters of the queue). A stale entry's
    /// order is no longer pending, so checking it reads only the map's control bytes.
    fn compact(&mut self, cfg: &StateConfig) {
        if self.open_due.len() <= COMPACT_FLOOR || self.open_due.len() / 4 <= self.open {
            return;
        }
        let pending = &self.pending;
        let ttl = cfg.open_ttl_ms;
        self.open_due.retain(|due| {
            matches!(pending.get(&due.id), Some(Pending::Open { placed_at, .. })
                if placed_at.saturating_add(ttl) == due.deadline)
        });
        shrink_if_sparse(&mut self.open_due);
    }

    /// The span rates are measured over: the window, or the time since the store's first
    /// event if shorter (a young store is not diluted by time it was not observed), but at
    /// least [`MIN_RATE_SPAN_MS`] (capped by the window).
    fn rate_span(&self, now: EventTime, window_ms: i64) -> i64 {
        now.saturating_sub(self.first_seen)
            .max(MIN_RATE_SPAN_MS)
            .min(window_ms)
            .max(1)
    }

    /// The store's answer at its stream time; `scratch` is reused for sorting the waits.
    pub(crate) fn answer(
        &self,
        store_id: StoreId,
        cfg: &StateConfig,
        scratch: &mut Vec<i64>,
    ) -> StoreWait {
        let Some(now) = self.stream_time else {
            return StoreWait::without_events(store_id, self.prior);
        };
        self.window.waits_into(scratch);
        let s = Summary::new(
            scratch,
            self.window.measured(),
            self.window.cancellations(),
            self.rate_span(now, cfg.window_ms),
        );
        let open_orders = u32::try_from(self.open).unwrap_or(u32::MAX);
        let (estimate, p90_ms) = match cfg.estimator {
            Estimator::Backlog if s.observations > 0 => {
                match self.backlog.forecast(open_orders, s.p50_ms, s.p90_ms) {
                    Some(f) => (Some(f.point_ms), Some(f.p90_ms)),
                    None => (None, s.p90_ms),
                }
            }
            e => (e.estimate_ms(&s, open_orders), s.p90_ms),
        };
        let (wait_time_minutes, basis) = match estimate {
            Some(ms) => (Some(whole_minutes(ms)), Basis::Live),
            None => match self.prior {
                Some(p) => (Some(p), Basis::Prior),
                None => (None, Basis::None),
            },
        };
        StoreWait {
            store_id,
            wait_time_minutes,
            basis,
            open_orders,
            observations: u32::try_from(s.observations).unwrap_or(u32::MAX),
            mean_minutes: s.mean_ms.map(minutes),
            p50_minutes: s.p50_ms.map(minutes),
            p90_minutes: p90_ms.map(minutes),
            completions_per_hour: s.completions_per_hour(),
            cancellation_rate: s.cancellation_rate(),
            updated_at_ms: Some(now),
        }
    }

    /// Observations of the rolling window that completed in `[from, to)`.
    pub(crate) fn completed_between(
        &self,
        from: EventTime,
        to: EventTime,
    ) -> impl Iterator<Item = &Observation> {
        self.window.completed_between(from, to)
    }

    #[cfg(test)]
    pub(crate) fn window_observations(&self) -> Vec<Observation> {
        self.window.observations()
    }

    /// Recounts orders and checks each has its due entry.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self, cfg: &StateConfig) {
        let mut open = 0;
        for (id, p) in &self.pending {
            match *p {
                Pending::Open { placed_at, .. } => {
                    open += 1;
                    let d = placed_at.saturating_add(cfg.open_ttl_ms);
                    assert!(self.open_due.iter().any(|e| e.id == *id && e.deadline == d));
                }
                Pending::HeldCompleted { .. } | Pending::HeldCancelled => {
                    assert!(self.match_due.iter().any(|e| e.id == *id && !e.tombstone));
                }
            }
            assert!(!self.tombstones.contains_key(id), "pending and resolved");
        }
        assert_eq!(open, self.open);
        for id in self.tombstones.keys() {
            let entries = self.match_due.iter().filter(|e| e.id == *id && e.tombstone);
            assert_eq!(entries.count(), 1);
        }
        let tomb_entries = self.match_due.iter().filter(|e| e.tombstone).count();
        assert_eq!(tomb_entries, self.tombstones.len());
        assert!(
            self.match_due
                .iter()
                .zip(self.match_due.iter().skip(1))
                .all(|(a, b)| a.deadline <= b.deadline)
        );
    }

    /// Capacities of the pending and tombstone maps and of the two queues.
    #[cfg(test)]
    pub(crate) fn capacities(&self) -> [usize; 4] {
        [
            self.pending.capacity(),
            self.tombstones.capacity(),
            self.open_due.capacity(),
            self.match_due.capacity(),
        ]
    }
}

/// Queues an open order's due time, sliding it back past at most [`OPEN_SCAN`] later ones.
#[inline]
fn push_open(q: &mut VecDeque<OpenDue>, deadline: EventTime, id: OrderId) {
    let due = OpenDue { deadline, id };
    if q.back().is_none_or(|b| b.deadline <= deadline) {
        q.push_back(due);
        return;
    }
    let stop = q.len().saturating_sub(OPEN_SCAN);
    let mut i = q.len();
    while i > stop && q.get(i - 1).is_some_and(|d| d.deadline > deadline) {
        i -= 1;
    }
    q.insert(i, due);
}

/// Queues a held terminal's or tombstone's due time: `now + match_ttl`, always in order.
#[inline]
fn push_match(
    q: &mut VecDeque<MatchDue>,
    now: EventTime,
    cfg: &StateConfig,
    id: OrderId,
    tombstone: bool,
) {
    q.push_back(MatchDue {
        deadline: now.saturating_add(cfg.match_ttl_ms),
        id,
        tombstone,
    });
}

/// Completion − placement, valid when `0 <= wait <= open_ttl`.
fn measured_ms(
    placed_at: EventTime,
    completed_at: EventTime,
    open_ttl_ms: i64,
) -> Result<i64, IgnoreReason> {
    let wait = completed_at.saturating_sub(placed_at);
    if wait < 0 {
        Err(IgnoreReason::CompletedBeforePlaced)
    } else if wait > open_ttl_ms {
        Err(IgnoreReason::WaitTooLong)
    } else {
        Ok(wait)
    }
}

/// `rack + delivery` seconds, valid when both are present, each >= 0, and
/// `0 < sum <= open_ttl`.
pub(crate) fn reported_secs(
    rack_secs: Option<i32>,
    delivery_secs: Option<i32>,
    open_ttl_ms: i64,
) -> Result<u32, IgnoreReason> {
    let (Some(rack), Some(delivery)) = (rack_secs, delivery_secs) else {
        return Err(IgnoreReason::MissingDurations);
    };
    let (Ok(rack), Ok(delivery)) = (u32::try_from(rack), u32::try_from(delivery)) else {
        return Err(IgnoreReason::NegativeDurations);
    };
    // Two values below 2^31 sum below 2^32 − 1, so this cannot overflow (nor hit NO_TENTATIVE).
    let secs = rack + delivery;
    if secs == 0 {
        Err(IgnoreReason::ZeroDurations)
    } else if i64::from(secs) * 1_000 > open_ttl_ms {
        Err(IgnoreReason::DurationsTooLong)
    } else {
        Ok(secs)
    }
}

/// Gives a map's memory back after a burst: capacity never stays above 4× the length.
fn shrink_map_if_sparse<V>(m: &mut IdMap<OrderId, V>) {
    if m.capacity() > COMPACT_FLOOR && m.len().saturating_mul(4) < m.capacity() {
        m.shrink_to(m.len().saturating_mul(2));
    }
}
