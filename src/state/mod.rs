//! The pure core: order events in, per-store wait times out. No I/O, no clock, no logging, so
//! every rule below is unit-tested here and a replay gives the answers of the live run.
//!
//! # Semantics
//!
//! **Identity and time.** An order is `(store_id, store_order_id)`. Each store has its own
//! *stream time*: the largest event time applied to it, from any topic. It alone drives that
//! store's window and TTLs, so a store's answers depend only on its own events, whatever the
//! partitioning. Late events (older than stream time) are applied normally. A `store_id <= 0`
//! is ignored ([`IgnoreReason::InvalidStore`]); a new store beyond `max_stores` too.
//!
//! **Lifecycle** (`p` placement time, `t` terminal event time, `now` the store's stream time
//! after applying the event; expiry runs before the event is applied):
//! - `Placed`: unseen → open. Open or resolved → duplicate, nothing changes. A held completion
//!   → resolved: if `p <= t` its tentative reported observation is replaced by the measured
//!   `t − p` at the same completion time ([`Outcome::Corrected`]; measured added if there was
//!   no tentative one), else (the Datagen case) the reported one stays. A held cancellation →
//!   resolved. A placement with `now − p > open_ttl` is counted as expired and otherwise
//!   ignored ([`Outcome::Expired`]), exactly as if it had come in time and expired, so
//!   lateness does not change answers; a held terminal then stays held.
//! - `Completed`: open → resolved with the measured `t − p` if `0 <= t − p <= open_ttl`, else
//!   the reported `rack + delivery` if valid, else no observation
//!   ([`Outcome::Ignored`], reason from the measurement). Unseen → held, and a tentative
//!   observation from the reported durations enters the window at once (so the Datagen data,
//!   whose ids never match, still gives answers); with invalid durations it is held without
//!   one ([`Outcome::Ignored`] with the durations' reason) and a placement with `p <= t` still
//!   adds the measured wait. Resolved or held: the same terminal kind → duplicate; the other
//!   kind → conflict (the first terminal wins, counted).
//! - `Cancelled`: open → resolved; unseen → held; counted as a cancellation at `t` in both
//!   cases. Resolved or held → duplicate or conflict as above.
//! - Reported durations are valid when both are present, each `>= 0`, and
//!   `0 < rack + delivery <= open_ttl`.
//!
//! **Expiry** (checked when the store's stream time advances; strict: at exactly the TTL an
//! entry is still alive): an open order expires when `now > p + open_ttl` (counted, no
//! observation). A held terminal expires when `now > held_at + match_ttl` (counted; a
//! tentative observation stays in the window). A resolved order leaves a tombstone until
//! `now > resolved_at + match_ttl` so that redeliveries stay idempotent. `held_at` and
//! `resolved_at` are the stream time when the terminal was held or resolved: the match TTL is a
//! budget for skew between topics, measured as stream time passes. Memory is bounded by live
//! orders: see `store.rs` for the queues.
//!
//! **Window**: observations `(completion time, wait)` and cancellation times with time in
//! `(now − window, now]`. Statistics are computed on demand by [`State::answer`]: count, mean,
//! p50 and p90 (linear interpolation, see `estimator.rs`), completions per hour (over the
//! window, or since the store's first event when younger, at least one minute), and
//! cancellation rate `cancellations / (completions + cancellations)` where completions are the
//! observations in the window.
//!
//! **Answer**: `Live` when the window holds an observation (the [`Estimator`]'s answer in
//! whole minutes, nearest, never negative); else `Prior` when [`State::set_prior`] gave one;
//! else `None`. `updated_at_ms` is the store's stream time (`None` for a store known only from
//! its prior). An idle store's answer stays as of its last event: stream time only moves with
//! the store's own events.
//!
//! **Determinism**: the answers are a function of each store's sequence of events. Different
//! interleavings of the three topics give the same answers as long as an order and its
//! terminal are applied within `match_ttl` (and `open_ttl`) of stream time of each other;
//! beyond that one of them has expired, by design.

mod backlog;
mod estimator;
mod hash;
mod store;
mod window;

pub use estimator::{Estimator, ParseEstimatorError};
/// The feature windows summarise their completions with the same percentiles.
pub(crate) use estimator::{minutes, percentile};

use crate::domain::{EventTime, OrderEvent, StoreId, StoreWait};
/// Also used by the input loop for its store → partition map.
pub(crate) use hash::{IdHasherBuilder, IdMap};
use std::collections::hash_map::Entry;
use store::Store;

/// Tuning of the state; all spans are event-time milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateConfig {
    /// Observations completed in the last `window_ms` of stream time make the answer.
    pub window_ms: i64,
    /// How long a terminal waits for its order, and a tombstone guards against redeliveries.
    pub match_ttl_ms: i64,
    /// How long an order may stay open; also the longest wait accepted as an observation.
    pub open_ttl_ms: i64,
    pub estimator: Estimator,
    /// Guard against a flood of bogus store ids: events of further stores are ignored.
    pub max_stores: usize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            window_ms: 30 * 60_000,
            match_ttl_ms: 10 * 60_000,
            open_ttl_ms: 2 * 60 * 60_000,
            estimator: Estimator::P50,
            max_stores: 100_000,
        }
    }
}

impl StateConfig {
    /// Negative spans become 0 and the window at least 1 ms, so no input can panic.
    fn sanitized(mut self) -> Self {
        self.window_ms = self.window_ms.max(1);
        self.match_ttl_ms = self.match_ttl_ms.max(0);
        self.open_ttl_ms = self.open_ttl_ms.max(0);
        self
    }
}

/// Where a wait observation came from (counted separately in metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObservationSource {
    /// Completion time − placement time.
    Measured,
    /// `rack_time_secs + order_delivery_time_secs` as the completion reports them.
    Reported,
}

impl ObservationSource {
    pub const ALL: [ObservationSource; 2] =
        [ObservationSource::Measured, ObservationSource::Reported];

    /// The name metrics and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            ObservationSource::Measured => "measured",
            ObservationSource::Reported => "reported",
        }
    }
}

/// One wait observation as [`State::completed_between`] hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletedWait {
    pub wait_ms: i64,
    pub source: ObservationSource,
}

/// Why an event yielded no observation. Except for the store reasons the order is tracked
/// all the same: resolved, or (a completion of an unseen order) held so that its placement can
/// still measure it; redeliveries stay idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IgnoreReason {
    /// `store_id <= 0`.
    InvalidStore,
    /// A new store beyond `max_stores`.
    StoreLimit,
    /// Placed after it completed, and no valid reported durations.
    CompletedBeforePlaced,
    /// Completion − placement > `open_ttl`, and no valid reported durations.
    WaitTooLong,
    /// Placement unseen, and the completion lacks a reported duration.
    MissingDurations,
    /// Placement unseen, and a reported duration is negative.
    NegativeDurations,
    /// Placement unseen, and the reported durations sum to 0.
    ZeroDurations,
    /// Placement unseen, and the reported durations exceed `open_ttl`.
    DurationsTooLong,
}

impl IgnoreReason {
    pub const COUNT: usize = 8;
    pub const ALL: [IgnoreReason; Self::COUNT] = [
        IgnoreReason::InvalidStore,
        IgnoreReason::StoreLimit,
        IgnoreReason::CompletedBeforePlaced,
        IgnoreReason::WaitTooLong,
        IgnoreReason::MissingDurations,
        IgnoreReason::NegativeDurations,
        IgnoreReason::ZeroDurations,
        IgnoreReason::DurationsTooLong,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::InvalidStore => "invalid_store",
            IgnoreReason::StoreLimit => "store_limit",
            IgnoreReason::CompletedBeforePlaced => "completed_before_placed",
            IgnoreReason::WaitTooLong => "wait_too_long",
            IgnoreReason::MissingDurations => "missing_durations",
            IgnoreReason::NegativeDurations => "negative_durations",
            IgnoreReason::ZeroDurations => "zero_durations",
            IgnoreReason::DurationsTooLong => "durations_too_long",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What [`State::apply`] did with an event. Cheap to copy; [`Outcome::label`] names it for
/// metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A new order is open.
    Opened,
    /// A completion (or an order proving a held completion that had no tentative
    /// observation) added this observation.
    Observed(ObservationSource),
    /// An order proved a held completion: its tentative reported observation was replaced by
    /// the measured one.
    Corrected,
    /// A completion of an unseen order is held for `match_ttl`; its reported wait entered
    /// the window at once as a tentative observation.
    HeldCompletion,
    /// A cancellation of an unseen order is held for `match_ttl` (and counted).
    HeldCancellation,
    /// An open order was cancelled.
    Cancelled,
    /// An order resolved a held terminal without changing the observations (a held
    /// cancellation, or a completion earlier than the placement: the reported wait stays).
    Resolved,
    /// A placement older than `open_ttl` at arrival: counted as expired, otherwise ignored.
    Expired,
    /// A redelivery or repeat: nothing changed.
    Duplicate,
    /// A terminal of the other kind than the order's first terminal: nothing changed.
    Conflict,
    /// Nothing usable; see the reason.
    Ignored(IgnoreReason),
}

impl Outcome {
    /// Every outcome, e.g. to pre-register metric labels.
    pub const ALL: [Outcome; 19] = [
        Outcome::Opened,
        Outcome::Observed(ObservationSource::Measured),
        Outcome::Observed(ObservationSource::Reported),
        Outcome::Corrected,
        Outcome::HeldCompletion,
        Outcome::HeldCancellation,
        Outcome::Cancelled,
        Outcome::Resolved,
        Outcome::Expired,
        Outcome::Duplicate,
        Outcome::Conflict,
        Outcome::Ignored(IgnoreReason::InvalidStore),
        Outcome::Ignored(IgnoreReason::StoreLimit),
        Outcome::Ignored(IgnoreReason::CompletedBeforePlaced),
        Outcome::Ignored(IgnoreReason::WaitTooLong),
        Outcome::Ignored(IgnoreReason::MissingDurations),
        Outcome::Ignored(IgnoreReason::NegativeDurations),
        Outcome::Ignored(IgnoreReason::ZeroDurations),
        Outcome::Ignored(IgnoreReason::DurationsTooLong),
    ];

    /// A stable snake_case name for a metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Opened => "opened",
            Outcome::Observed(ObservationSource::Measured) => "observed_measured",
            Outcome::Observed(ObservationSource::Reported) => "observed_reported",
            Outcome::Corrected => "corrected",
            Outcome::HeldCompletion => "held_completion",
            Outcome::HeldCancellation => "held_cancellation",
            Outcome::Cancelled => "cancelled",
            Outcome::Resolved => "resolved",
            Outcome::Expired => "expired",
            Outcome::Duplicate => "duplicate",
            Outcome::Conflict => "conflict",
            Outcome::Ignored(IgnoreReason::InvalidStore) => "ignored_invalid_store",
            Outcome::Ignored(IgnoreReason::StoreLimit) => "ignored_store_limit",
            Outcome::Ignored(IgnoreReason::CompletedBeforePlaced) => {
                "ignored_completed_before_placed"
            }
            Outcome::Ignored(IgnoreReason::WaitTooLong) => "ignored_wait_too_long",
            Outcome::Ignored(IgnoreReason::MissingDurations) => "ignored_missing_durations",
            Outcome::Ignored(IgnoreReason::NegativeDurations) => "ignored_negative_durations",
            Outcome::Ignored(IgnoreReason::ZeroDurations) => "ignored_zero_durations",
            Outcome::Ignored(IgnoreReason::DurationsTooLong) => "ignored_durations_too_long",
        }
    }

    /// Whether the store's orders or window changed (stream time aside).
    fn changes_state(self) -> bool {
        !matches!(
            self,
            Outcome::Expired
                | Outcome::Duplicate
                | Outcome::Conflict
                | Outcome::Ignored(IgnoreReason::InvalidStore | IgnoreReason::StoreLimit)
        )
    }
}

/// Monotonic totals, updated on the hot path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub expired_open: u64,
    pub expired_held: u64,
    pub observations_measured: u64,
    pub observations_reported: u64,
    pub observations_corrected: u64,
    pub cancellations: u64,
    pub duplicates: u64,
    pub conflicts: u64,
    pub ignored: [u64; 8],
}

/// Gauges (current sizes, summed over stores) and totals (since start) for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Stores known (with events or only a prior).
    pub stores: u64,
    pub open_orders: u64,
    /// Completions and cancellations waiting for their order.
    pub held_terminals: u64,
    /// Resolved orders remembered for idempotency.
    pub tombstones: u64,
    /// Observations in all windows.
    pub window_observations: u64,
    /// Entries in the expiry queues (live plus not yet skipped stale ones).
    pub expiry_queue_entries: u64,
    pub expired_open_total: u64,
    pub expired_held_total: u64,
    pub observations_measured_total: u64,
    /// Reported observations, tentative ones included.
    pub observations_reported_total: u64,
    /// Tentative reported observations later replaced by measured ones (also counted in
    /// `observations_measured_total`).
    pub observations_corrected_total: u64,
    pub cancellations_total: u64,
    pub duplicates_total: u64,
    pub conflicts_total: u64,
    /// Ignored events, indexed like [`IgnoreReason::ALL`]. The length is a literal on purpose:
    /// a named constant there makes rustc 1.95 crash (ICE "broken MIR") on `Counters { ..c }`
    /// inside a closure.
    pub ignored_total: [u64; 8],
}

const _: () = assert!(IgnoreReason::COUNT == 8);

impl Counters {
    pub fn ignored(&self, reason: IgnoreReason) -> u64 {
        self.ignored_total[reason.index()]
    }
}

/// All stores' state. Single-threaded by design: the pipeline owns it and calls
/// [`apply`](Self::apply) per record.
#[derive(Debug)]
pub struct State {
    cfg: StateConfig,
    hasher: IdHasherBuilder,
    stores: IdMap<StoreId, Store>,
    /// Stores whose answer may have changed since the last `take_dirty`, each once.
    dirty: Vec<StoreId>,
    /// A store is in `dirty` iff its `dirty_epoch` equals this; bumping it clears all flags.
    epoch: u64,
    totals: Totals,
}

impl State {
    pub fn new(cfg: StateConfig) -> Self {
        let hasher = IdHasherBuilder::random();
        State {
            cfg: cfg.sanitized(),
            hasher,
            stores: IdMap::with_hasher(hasher),
            dirty: Vec::new(),
            epoch: 1,
            totals: Totals::default(),
        }
    }

    /// The configuration in effect (after sanitising).
    pub fn config(&self) -> &StateConfig {
        &self.cfg
    }

    /// Applies one event at its event time. Never fails: what it ignores it says in the
    /// outcome.
    #[inline]
    pub fn apply(&mut self, event: &OrderEvent, at: EventTime) -> Outcome {
        let id = event.store_id();
        let outcome = if id <= 0 {
            Outcome::Ignored(IgnoreReason::InvalidStore)
        } else {
            let known = self.stores.len();
            match self.stores.entry(id) {
                Entry::Vacant(_) if known >= self.cfg.max_stores => {
                    Outcome::Ignored(IgnoreReason::StoreLimit)
                }
                entry => {
                    let store = entry.or_insert_with(|| Store::new(self.hasher));
                    let (outcome, changed) = store.apply(&self.cfg, event, at, &mut self.totals);
                    if changed && store.dirty_epoch != self.epoch {
                        store.dirty_epoch = self.epoch;
                        self.dirty.push(id);
                    }
                    outcome
                }
            }
        };
        match outcome {
            Outcome::Duplicate => self.totals.duplicates += 1,
            Outcome::Conflict => self.totals.conflicts += 1,
            Outcome::Ignored(reason) => self.totals.ignored[reason.index()] += 1,
            _ => {}
        }
        outcome
    }

    /// Sets a store's prior: the latest value on the output topic at start ("the stale ML
    /// model" in the workshop). Returns false, changing nothing, for a store id <= 0, negative
    /// minutes, or a new store beyond `max_stores`.
    pub fn set_prior(&mut self, store: StoreId, minutes: i32) -> bool {
        if store <= 0 || minutes < 0 {
            return false;
        }
        let known = self.stores.len();
        let s = match self.stores.entry(store) {
            Entry::Vacant(_) if known >= self.cfg.max_stores => return false,
            entry => entry.or_insert_with(|| Store::new(self.hasher)),
        };
        s.prior = Some(minutes);
        if s.dirty_epoch != self.epoch {
            s.dirty_epoch = self.epoch;
            self.dirty.push(store);
        }
        true
    }

    /// Stores whose answer may have changed since the last call (an event applied, an
    /// expiry, a prior set), each once, in the order they first changed. Drains the set.
    pub fn take_dirty(&mut self) -> Vec<StoreId> {
        self.epoch += 1;
        std::mem::take(&mut self.dirty)
    }

    /// [`take_dirty`](Self::take_dirty) into a caller's buffer (appended), keeping both
    /// buffers' capacity: no allocation in the steady state.
    pub fn drain_dirty_into(&mut self, out: &mut Vec<StoreId>) {
        self.epoch += 1;
        out.append(&mut self.dirty);
    }

    /// The store's current answer, computed now; `None` for an unknown store.
    pub fn answer(&self, store: StoreId) -> Option<StoreWait> {
        self.answer_with(store, &mut Vec::new())
    }

    /// [`answer`](Self::answer) with a reusable scratch buffer for the percentiles.
    pub fn answer_with(&self, store: StoreId, scratch: &mut Vec<i64>) -> Option<StoreWait> {
        let s = self.stores.get(&store)?;
        Some(s.answer(store, &self.cfg, scratch))
    }

    /// The store's stream time, if it has had an event.
    pub fn stream_time(&self, store: StoreId) -> Option<EventTime> {
        self.stores.get(&store)?.stream_time()
    }

    /// Appends to `out` the wait observations of `store` that completed in `[from, to)` of
    /// event time and are still in its rolling window (a tentative reported wait already
    /// corrected appears as measured). The feature windows read a window's completions here
    /// when it closes, so they count exactly what the answers counted.
    pub fn completed_between(
        &self,
        store: StoreId,
        from: EventTime,
        to: EventTime,
        out: &mut Vec<CompletedWait>,
    ) {
        if let Some(s) = self.stores.get(&store) {
            out.extend(s.completed_between(from, to).map(|o| CompletedWait {
                wait_ms: o.wait_ms,
                source: if o.measured {
                    ObservationSource::Measured
                } else {
                    ObservationSource::Reported
                },
            }));
        }
    }

    /// Every known store (with events or a prior), in no particular order.
    pub fn stores(&self) -> impl Iterator<Item = StoreId> + '_ {
        self.stores.keys().copied()
    }

    /// Drops a store's event state (its partition moved to another instance). Its prior, if
    /// any, is kept: the store then answers as a prior-only store, as after a restart.
    /// Returns whether the store had event state. The store is not reported dirty.
    pub fn remove_store(&mut self, store: StoreId) -> bool {
        let Some(s) = self.stores.get_mut(&store) else {
            return false;
        };
        let had_events = s.stream_time().is_some();
        if s.dirty_epoch == self.epoch {
            self.dirty.retain(|&d| d != store);
        }
        match s.prior {
            Some(prior) => {
                *s = Store::new(self.hasher);
                s.prior = Some(prior);
            }
            None => {
                self.stores.remove(&store);
            }
        }
        had_events
    }

    /// Gauges (summed over stores, O(stores)) and totals, for a metrics scrape.
    pub fn counters(&self) -> Counters {
        let t = &self.totals;
        let mut c = Counters {
            stores: self.stores.len() as u64,
            expired_open_total: t.expired_open,
            expired_held_total: t.expired_held,
            observations_measured_total: t.observations_measured,
            observations_reported_total: t.observations_reported,
            observations_corrected_total: t.observations_corrected,
            cancellations_total: t.cancellations,
            duplicates_total: t.duplicates,
            conflicts_total: t.conflicts,
            ignored_total: t.ignored,
            ..Counters::default()
        };
        for s in self.stores.values() {
            let g = s.gauges();
            c.open_orders += g.open;
            c.held_terminals += g.held;
            c.tombstones += g.tombstones;
            c.window_observations += g.window;
            c.expiry_queue_entries += g.queued;
        }
        c
    }
}

#[cfg(test)]
mod tests;
