//! Internal events: one type per observable occurrence whose `emit` counts it and logs it in
//! one call, so the two never drift apart. Events that can come in floods (a topic full of
//! poison records, an unreachable registry) log the first [`LOGS_PER_WINDOW`] per
//! [`LOG_WINDOW`] and then one line saying how many were not logged; the counters always see
//! every occurrence.

use std::fmt::Display;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{
    DeadLetterReason, EmitOutcome, EventOutcome, ExpiryKind, FeatureOutcome, Metrics,
    ObservationSource, RegistryOutcome, StreamEventKind, TableOutcome,
};
use crate::domain::{EventTime, InputKind, StoreId};

/// How many events of one type are logged per window before the rest are only counted.
pub const LOGS_PER_WINDOW: u32 = 10;
/// The rate-limiting window.
pub const LOG_WINDOW: Duration = Duration::from_secs(60);

/// What a [`LogLimiter`] lets the caller do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Log it; first say that this many were not logged in the previous window (if any).
    Log { suppressed_before: u64 },
    /// Count it only.
    Suppress,
}

/// Logs the first N per window. The summary of the suppressed ones is written when the next
/// event after the window arrives (no timer thread); the counters have the exact figures
/// meanwhile.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    state: Mutex<LimiterState>,
}

#[derive(Debug, Default)]
struct LimiterState {
    window_start: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl Default for LogLimiter {
    fn default() -> Self {
        LogLimiter {
            state: Mutex::new(LimiterState::default()),
        }
    }
}

impl LogLimiter {
    pub(crate) fn admit(&self) -> Admission {
        self.admit_at(Instant::now())
    }

    pub(crate) fn admit_at(&self, now: Instant) -> Admission {
        // A poisoned limiter still holds valid counts: keep using it.
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut suppressed_before = 0;
        let expired = s
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= LOG_WINDOW);
        if expired {
            suppressed_before = s.suppressed;
            *s = LimiterState {
                window_start: Some(now),
                logged: 0,
                suppressed: 0,
            };
        }
        if s.logged < LOGS_PER_WINDOW {
            s.logged += 1;
            Admission::Log { suppressed_before }
        } else {
            s.suppressed += 1;
            Admission::Suppress
        }
    }
}

/// One limiter per event type that can come in floods (failures, and successes logged at
/// debug that happen per batch or per request).
#[derive(Debug, Default)]
pub(crate) struct Limiters {
    dead_letters: LogLimiter,
    dead_letter_failures: LogLimiter,
    emit_failures: LogLimiter,
    registry_failures: LogLimiter,
    registry_answers: LogLimiter,
    records: LogLimiter,
    http_requests: LogLimiter,
    feature_late: LogLimiter,
    feature_failures: LogLimiter,
    mispartitioned: LogLimiter,
    table_failures: LogLimiter,
    stream_rejections: LogLimiter,
}

/// The level a rate-limited event logs at (its summary line of suppressed events too).
#[derive(Debug, Clone, Copy)]
enum Level {
    Debug,
    Warn,
    Error,
}

/// The one place rate limiting happens: when `limiter` admits the event, first says how many
/// `what` the previous window suppressed (if any), then runs `log`.
fn limited(limiter: &LogLimiter, level: Level, what: &str, log: impl FnOnce()) {
    let enabled = match level {
        Level::Debug => tracing::enabled!(tracing::Level::DEBUG),
        Level::Warn | Level::Error => true,
    };
    if !enabled {
        return;
    }
    let Admission::Log { suppressed_before } = limiter.admit() else {
        return;
    };
    if suppressed_before > 0 {
        match level {
            Level::Debug => tracing::debug!(
                suppressed = suppressed_before,
                "{suppressed_before} more {what} in the previous minute were not logged"
            ),
            Level::Warn => tracing::warn!(
                suppressed = suppressed_before,
                "{suppressed_before} more {what} in the previous minute were not logged"
            ),
            Level::Error => tracing::error!(
                suppressed = suppressed_before,
                "{suppressed_before} more {what} in the previous minute were not logged"
            ),
        }
    }
    log();
}

/// A record went to the dead-letter topic. Counts `waittimes_dead_letters_total{topic,reason}`
/// and `waittimes_events_total{topic,outcome="dead_lettered"}` (do not count the event
/// separately); logs a warning, rate-limited.
#[derive(Debug, Clone, Copy)]
pub struct DeadLettered<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub reason: DeadLetterReason,
    pub error: &'a str,
}

impl DeadLettered<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.count_dead_letter(self.topic, self.reason);
        limited(
            &metrics.limiters().dead_letters,
            Level::Warn,
            "dead letters",
            || {
                tracing::warn!(
                    topic = self.topic,
                    partition = self.partition,
                    offset = self.offset,
                    reason = self.reason.as_str(),
                    error = self.error,
                    "record dead-lettered"
                );
            },
        );
    }
}

/// A dead letter could not be written to the dead-letter topic (the record's position is still
/// committed: the partition must not stall). Counts `waittimes_dead_letter_failures_total`;
/// logs an error, rate-limited.
#[derive(Clone, Copy)]
pub struct DeadLetterFailed<'a> {
    pub error: &'a dyn Display,
}

impl DeadLetterFailed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.inner.dead_letter_failures.inc();
        limited(
            &metrics.limiters().dead_letter_failures,
            Level::Error,
            "dead-letter write failures",
            || tracing::error!(error = %self.error, "could not write a dead letter"),
        );
    }
}

/// A store's wait time was published. Counts `waittimes_emits_total{outcome="sent"}`, observes
/// `waittimes_emit_latency_seconds` from the answer's stream time, logs at debug.
#[derive(Debug, Clone, Copy)]
pub struct WaitPublished {
    pub store_id: StoreId,
    pub wait_time_minutes: i32,
    /// The store's stream time the answer was computed at (`StoreWait::updated_at_ms`).
    pub updated_at_ms: Option<EventTime>,
    /// Wall clock when the broker acknowledged (or the send was handed over).
    pub now_ms: i64,
}

impl WaitPublished {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.emitted(EmitOutcome::Sent);
        if let Some(at) = self.updated_at_ms {
            metrics.observe_emit_latency(at, self.now_ms);
        }
        tracing::debug!(
            store_id = self.store_id,
            wait_time_minutes = self.wait_time_minutes,
            "wait time published"
        );
    }
}

/// Publishing a store's wait time failed (the emitter retries or sends the next value).
/// Counts `waittimes_emits_total{outcome="failed"}`; logs a warning, rate-limited.
#[derive(Clone, Copy)]
pub struct EmitFailed<'a> {
    pub store_id: StoreId,
    pub error: &'a dyn Display,
}

impl EmitFailed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.emitted(EmitOutcome::Failed);
        limited(
            &metrics.limiters().emit_failures,
            Level::Warn,
            "publish failures",
            || tracing::warn!(store_id = self.store_id, error = %self.error, "could not publish a wait time"),
        );
    }
}

/// A Schema Registry request failed. Counts
/// `waittimes_schema_registry_requests_total{outcome}`; logs a warning, rate-limited.
#[derive(Clone, Copy)]
pub struct SchemaRegistryFailed<'a> {
    /// The schema id looked up, if the request was a lookup by id.
    pub schema_id: Option<u32>,
    /// [`RegistryOutcome::NotFound`] or [`RegistryOutcome::Error`].
    pub outcome: RegistryOutcome,
    pub error: &'a dyn Display,
}

impl SchemaRegistryFailed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.schema_registry_request(self.outcome);
        limited(
            &metrics.limiters().registry_failures,
            Level::Warn,
            "schema registry failures",
            || {
                tracing::warn!(
                    schema_id = self.schema_id,
                    outcome = self.outcome.as_str(),
                    error = %self.error,
                    "schema registry request failed"
                );
            },
        );
    }
}

/// The priors were read from the output topic. Sets `waittimes_priors_loaded`; logs at info.
#[derive(Debug, Clone, Copy)]
pub struct PriorsLoaded {
    pub stores: u64,
    pub elapsed: Duration,
}

impl PriorsLoaded {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.set_priors_loaded(self.stores);
        tracing::info!(
            stores = self.stores,
            elapsed_ms = u64::try_from(self.elapsed.as_millis()).unwrap_or(u64::MAX),
            "priors loaded"
        );
    }
}

/// Entries of one kind expired since the last refresh. Counts
/// `waittimes_expired_orders_total{kind}`; logs at debug (expiry is routine on Datagen data,
/// where most completions never match an order).
#[derive(Debug, Clone, Copy)]
pub struct OrdersExpired {
    pub kind: ExpiryKind,
    pub count: u64,
}

impl OrdersExpired {
    pub fn emit(&self, metrics: &Metrics) {
        if self.count == 0 {
            return;
        }
        metrics.expired(self.kind, self.count);
        tracing::debug!(kind = self.kind.as_str(), count = self.count, "expired");
    }
}

/// Consumed records of one input kind with one outcome, counted per batch (the consumer thread
/// tallies a batch before it publishes answers). Counts `waittimes_events_total{topic,outcome}`;
/// logs at debug, rate-limited.
#[derive(Debug, Clone, Copy)]
pub struct RecordsConsumed {
    pub kind: InputKind,
    pub outcome: EventOutcome,
    pub count: u64,
}

impl RecordsConsumed {
    pub fn emit(&self, metrics: &Metrics) {
        if self.count == 0 {
            return;
        }
        metrics.events(self.kind, self.outcome, self.count);
        limited(
            &metrics.limiters().records,
            Level::Debug,
            "record batches",
            || {
                tracing::debug!(
                    topic = metrics.topic(self.kind),
                    outcome = self.outcome.as_str(),
                    count = self.count,
                    "records consumed"
                );
            },
        );
    }
}

/// One record was applied to the state. Observes `waittimes_processing_latency_seconds` from
/// its timestamp once caught up (see [`Metrics::observe_processing_latency`]); per record, so
/// it logs at trace only.
#[derive(Debug, Clone, Copy)]
pub struct RecordApplied {
    pub record_timestamp_ms: EventTime,
    pub now_ms: i64,
}

impl RecordApplied {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.observe_processing_latency(self.record_timestamp_ms, self.now_ms);
        tracing::trace!(
            record_timestamp_ms = self.record_timestamp_ms,
            "record applied"
        );
    }
}

/// Wait observations added to the windows since the last refresh. Counts
/// `waittimes_observations_total{source}`; logs at debug.
#[derive(Debug, Clone, Copy)]
pub struct ObservationsRecorded {
    pub source: ObservationSource,
    pub count: u64,
}

impl ObservationsRecorded {
    pub fn emit(&self, metrics: &Metrics) {
        if self.count == 0 {
            return;
        }
        metrics.observations(self.source, self.count);
        tracing::debug!(
            source = ?self.source,
            count = self.count,
            "observations recorded"
        );
    }
}

/// The state's sizes after a refresh. Sets `waittimes_open_orders` and
/// `waittimes_held_terminals`; logs at trace (it is a level, not an occurrence).
#[derive(Debug, Clone, Copy)]
pub struct StateSized {
    pub open_orders: u64,
    pub held_terminals: u64,
}

impl StateSized {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.set_open_orders(self.open_orders);
        metrics.set_held_terminals(self.held_terminals);
        tracing::trace!(
            open_orders = self.open_orders,
            held_terminals = self.held_terminals,
            "state sized"
        );
    }
}

/// The client's statistics reported a partition's lag. Sets
/// `waittimes_consumer_lag_records{topic,partition}`; logs at trace.
#[derive(Debug, Clone, Copy)]
pub struct PartitionLag<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub lag: i64,
}

impl PartitionLag<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.set_consumer_lag(self.topic, self.partition, self.lag);
        tracing::trace!(
            topic = self.topic,
            partition = self.partition,
            lag = self.lag,
            "consumer lag"
        );
    }
}

/// A rebalance took partitions away. Drops their lag series, so a partition another instance
/// now owns is not counted twice in a sum over instances nor alerts from here; logs at info.
#[derive(Debug, Clone, Copy)]
pub struct PartitionsRevoked<'a> {
    pub partitions: &'a [(String, i32)],
}

impl PartitionsRevoked<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        for (topic, partition) in self.partitions {
            metrics.remove_consumer_lag(topic, *partition);
        }
        tracing::info!(partitions = self.partitions.len(), "partitions revoked");
    }
}

/// The Schema Registry answered a lookup. Counts
/// `waittimes_schema_registry_requests_total{outcome="ok"}`; logs at debug, rate-limited.
#[derive(Debug, Clone, Copy)]
pub struct SchemaFetched {
    pub schema_id: u32,
}

impl SchemaFetched {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.schema_registry_request(RegistryOutcome::Ok);
        limited(
            &metrics.limiters().registry_answers,
            Level::Debug,
            "schema lookups",
            || tracing::debug!(schema_id = self.schema_id, "writer schema fetched"),
        );
    }
}

/// An HTTP request was answered. Counts `waittimes_http_requests_total{route,status}` (the
/// matched route template, never the raw path); logs at debug, rate-limited.
#[derive(Debug, Clone, Copy)]
pub struct HttpRequestServed<'a> {
    pub route: &'a str,
    pub status: u16,
}

impl HttpRequestServed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.http_request(self.route, self.status);
        limited(
            &metrics.limiters().http_requests,
            Level::Debug,
            "HTTP requests",
            || tracing::debug!(route = self.route, status = self.status, "request served"),
        );
    }
}

/// An event came after its feature window had closed (later than the grace). Counts
/// `waittimes_feature_late_events_total`; logs a warning, rate-limited (a topic read far
/// behind the others can make many at once).
#[derive(Debug, Clone, Copy)]
pub struct FeatureEventLate {
    pub store_id: StoreId,
    pub at: EventTime,
    pub window_start_ms: EventTime,
    pub stream_time_ms: EventTime,
}

impl FeatureEventLate {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.inner.feature_late_events.inc();
        limited(
            &metrics.limiters().feature_late,
            Level::Warn,
            "events after their feature window closed",
            || {
                tracing::warn!(
                    store_id = self.store_id,
                    at = self.at,
                    window_start_ms = self.window_start_ms,
                    stream_time_ms = self.stream_time_ms,
                    behind_ms = self.stream_time_ms.saturating_sub(self.at),
                    "event after its feature window closed: applied to the state, in no feature record"
                )
            },
        );
    }
}

/// A closed feature window was acknowledged by the broker. Counts
/// `waittimes_feature_windows_total{outcome="sent"}`; logs at debug.
#[derive(Debug, Clone, Copy)]
pub struct FeatureWindowPublished {
    pub store_id: StoreId,
    pub window_start_ms: EventTime,
}

impl FeatureWindowPublished {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.inner.feature_windows[FeatureOutcome::Sent as usize].inc();
        tracing::debug!(
            store_id = self.store_id,
            window_start_ms = self.window_start_ms,
            "feature window published"
        );
    }
}

/// A closed feature window could not be written (after librdkafka's own retries). Counts
/// `waittimes_feature_windows_total{outcome="failed"}`; logs a warning, rate-limited.
#[derive(Clone, Copy)]
pub struct FeatureWindowFailed<'a> {
    pub store_id: StoreId,
    pub window_start_ms: EventTime,
    pub error: &'a dyn Display,
}

impl FeatureWindowFailed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.inner.feature_windows[FeatureOutcome::Failed as usize].inc();
        limited(
            &metrics.limiters().feature_failures,
            Level::Warn,
            "feature windows that could not be published",
            || {
                tracing::warn!(
                    store_id = self.store_id,
                    window_start_ms = self.window_start_ms,
                    error = %self.error,
                    "could not publish a feature window"
                )
            },
        );
    }
}

/// Feature windows closed during the replay at start, not sent: the run before published
/// them, and the replay's state is still cold for them. Counts
/// `waittimes_feature_windows_total{outcome="replayed"}`; logs at debug.
#[derive(Debug, Clone, Copy)]
pub struct FeatureWindowsReplayed {
    pub count: u64,
}

impl FeatureWindowsReplayed {
    pub fn emit(&self, metrics: &Metrics) {
        if self.count == 0 {
            return;
        }
        metrics.inner.feature_windows[FeatureOutcome::Replayed as usize].inc_by(self.count);
        tracing::debug!(
            count = self.count,
            "feature windows closed during the replay"
        );
    }
}

/// A store's record arrived on another partition number than its earlier records (of another
/// input topic): the producers disagree on the partitioner, so completions may meet their
/// orders on another instance. Counts `waittimes_mispartitioned_records_total`; logs a
/// warning, rate-limited.
#[derive(Debug, Clone, Copy)]
pub struct RecordMispartitioned<'a> {
    pub store_id: StoreId,
    pub topic: &'a str,
    pub partition: i32,
    /// The partition number the store's earlier records came on.
    pub expected: i32,
}

impl RecordMispartitioned<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.inner.mispartitioned.inc();
        limited(
            &metrics.limiters().mispartitioned,
            Level::Warn,
            "mis-partitioned records",
            || {
                tracing::warn!(
                    store_id = self.store_id,
                    topic = self.topic,
                    partition = self.partition,
                    expected = self.expected,
                    "store seen on another partition number: input topics are not \
                     co-partitioned (producers must use the murmur2 partitioner)"
                )
            },
        );
    }
}

/// Answers were written to the internal answers topic. Counts
/// `waittimes_answers_table_records_total{outcome="published"}`; logs at debug.
#[derive(Debug, Clone, Copy)]
pub struct AnswersShared {
    pub count: u64,
}

impl AnswersShared {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.inner.answers_table[TableOutcome::Published as usize].inc_by(self.count);
        tracing::debug!(count = self.count, "answers shared on the answers topic");
    }
}

/// An answer could not be written to the internal answers topic (the next change of the store
/// is sent again). Counts `waittimes_answers_table_records_total{outcome="failed"}`; logs a
/// warning, rate-limited.
#[derive(Clone, Copy)]
pub struct AnswerShareFailed<'a> {
    pub store_id: StoreId,
    pub error: &'a dyn Display,
}

impl AnswerShareFailed<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.inner.answers_table[TableOutcome::Failed as usize].inc();
        limited(
            &metrics.limiters().table_failures,
            Level::Warn,
            "answers-topic failures",
            || {
                tracing::warn!(store_id = self.store_id, error = %self.error,
                    "could not read or write an answer on the answers topic")
            },
        );
    }
}

/// Answers of other instances (or our own) were read from the answers topic into the global
/// table. Counts `waittimes_answers_table_records_total{outcome="read"}`; logs at debug.
#[derive(Debug, Clone, Copy)]
pub struct AnswersRead {
    pub count: u64,
}

impl AnswersRead {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.inner.answers_table[TableOutcome::Read as usize].inc_by(self.count);
        tracing::debug!(count = self.count, "answers read from the answers topic");
    }
}

/// A push stream opened. Raises `waittimes_http_streams_open`; logs at debug. Its
/// [`StreamClosed`] must follow exactly once (the stream's guard emits it when dropped).
#[derive(Debug, Clone, Copy)]
pub struct StreamOpened<'a> {
    pub route: &'a str,
    pub open: usize,
}

impl StreamOpened<'_> {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.inner.streams_open.inc();
        tracing::debug!(route = self.route, open = self.open, "push stream opened");
    }
}

/// A push stream ended: the client left, the service is stopping, or the stream reached its
/// maximum age. Lowers `waittimes_http_streams_open`; logs at debug.
#[derive(Debug, Clone, Copy)]
pub struct StreamClosed {
    pub events: u64,
}

impl StreamClosed {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.inner.streams_open.dec();
        tracing::debug!(events = self.events, "push stream closed");
    }
}

/// A push stream was refused (`http.max_streams` open). Counts
/// `waittimes_http_streams_rejected_total`; logs a warning, rate-limited.
#[derive(Debug, Clone, Copy)]
pub struct StreamRejected {
    pub limit: usize,
}

impl StreamRejected {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.inner.streams_rejected.inc();
        limited(
            &metrics.limiters().stream_rejections,
            Level::Warn,
            "refused push streams",
            || {
                tracing::warn!(
                    limit = self.limit,
                    "push stream refused: http.max_streams open"
                )
            },
        );
    }
}

/// One batch a push stream collected on waking: `wait` answers and `removed` stores to send,
/// and `skipped` answers replaced before the client read on. Counts
/// `waittimes_http_stream_events_total{kind}` and `waittimes_http_stream_skipped_answers_total`;
/// logs at debug when something was skipped (a slow client, or changes faster than a round trip).
#[derive(Debug, Clone, Copy)]
pub struct StreamEventsSent {
    pub wait: u64,
    pub removed: u64,
    pub skipped: u64,
}

impl StreamEventsSent {
    pub fn emit(&self, metrics: &Metrics) {
        metrics.inner.stream_events[StreamEventKind::Wait as usize].inc_by(self.wait);
        metrics.inner.stream_events[StreamEventKind::Removed as usize].inc_by(self.removed);
        metrics.inner.stream_skipped.inc_by(self.skipped);
        if self.skipped > 0 {
            tracing::debug!(
                skipped = self.skipped,
                "push stream skipped answers replaced before the client read on"
            );
        }
    }
}
