//! Every metric the service exposes, registered in one place ([`Metrics::new`]), rendered as
//! OpenMetrics text by [`Metrics::render`].
//!
//! Updates are atomics: label sets with a fixed, small domain (input kinds × outcomes, reasons,
//! sources) are resolved to counter handles once at start, so the consumer thread never hashes
//! a label set or allocates on its hot path. Per-store gauges and readiness are not kept here
//! at all: collectors read them from the published [`Answers`] and from [`Health`] at scrape
//! time, so `/metrics` can never disagree with `/stores` or `/health/ready`, and a store that
//! disappears from the answers disappears from the metrics.
//!
//! Every update goes through an event type in [`events`] (re-exported here) whose `emit` counts
//! and logs in one call, rate-limited where a flood is possible; the setters below are private
//! to this room, so nothing outside it can count without the event being logged too.

pub mod events;

pub use events::{
    AnswerShareFailed, AnswersRead, AnswersShared, DeadLetterFailed, DeadLettered, EmitFailed,
    FeatureEventLate, FeatureWindowFailed, FeatureWindowPublished, FeatureWindowsReplayed,
    HttpRequestServed, ObservationsRecorded, OrdersExpired, PartitionLag, PartitionsRevoked,
    PriorsLoaded, RecordApplied, RecordMispartitioned, RecordsConsumed, SchemaFetched,
    SchemaRegistryFailed, StateSized, StreamClosed, StreamEventsSent, StreamOpened, StreamRejected,
    WaitPublished,
};

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::answers::Answers;
use crate::domain::{EventTime, InputKind, StoreId};
use crate::health::{Condition, Health};

/// The prefix of every metric name.
pub const PREFIX: &str = "waittimes";

/// Latency buckets in seconds, 0.5 ms to 60 s. Dense up to 100 ms (0.5, 1, 2, 3, 5, 7.5, 10,
/// 15, 25 ms…) so a p99 near a 10 ms goal is read from neighbouring bounds
/// rather than interpolated across a decade; coarser beyond, so a minute-long stall still lands
/// in a bucket. Latencies are whole milliseconds (record timestamps are), so the 0.5 ms bucket
/// holds the records applied within the millisecond they were stamped.
pub const LATENCY_BUCKETS_SECONDS: [f64; 20] = [
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 20.0, 60.0,
];

/// What became of one consumed record (`waittimes_events_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventOutcome {
    /// Changed the state: a new open order, a matched completion or cancellation.
    Applied,
    /// Seen before (a redelivery); changed nothing.
    Duplicate,
    /// A completion or cancellation whose order has not been seen yet, held for `match_ttl`.
    Held,
    /// Valid but irrelevant to the state (e.g. a status the state does not track).
    Ignored,
    /// Older than what the state still keeps (beyond the TTLs of stream time).
    Late,
    /// Could not be decoded or made no sense; sent to the dead-letter topic.
    DeadLettered,
}

impl EventOutcome {
    pub const ALL: [EventOutcome; 6] = [
        EventOutcome::Applied,
        EventOutcome::Duplicate,
        EventOutcome::Held,
        EventOutcome::Ignored,
        EventOutcome::Late,
        EventOutcome::DeadLettered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Applied => "applied",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Held => "held",
            EventOutcome::Ignored => "ignored",
            EventOutcome::Late => "late",
            EventOutcome::DeadLettered => "dead_lettered",
        }
    }
}

/// Why a record was dead-lettered: the decoder's own type, the `reason` label of
/// `waittimes_dead_letters_total` and the `waittimes.error.reason` header.
pub use crate::wire::DeadLetterReason;

/// Where a wait observation came from: the state's own type, the `source` label of
/// `waittimes_observations_total`.
pub use crate::state::ObservationSource;

/// What expired (`waittimes_expired_orders_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExpiryKind {
    /// An order still open after `open_ttl`.
    OpenOrder,
    /// A completion or cancellation whose order never arrived within `match_ttl`.
    HeldTerminal,
}

impl ExpiryKind {
    pub const ALL: [ExpiryKind; 2] = [ExpiryKind::OpenOrder, ExpiryKind::HeldTerminal];

    pub fn as_str(self) -> &'static str {
        match self {
            ExpiryKind::OpenOrder => "open_order",
            ExpiryKind::HeldTerminal => "held_terminal",
        }
    }
}

/// What happened to one record of the internal answers topic
/// (`waittimes_answers_table_records_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableOutcome {
    Published,
    Failed,
    Read,
}

impl TableOutcome {
    pub const ALL: [TableOutcome; 3] = [
        TableOutcome::Published,
        TableOutcome::Failed,
        TableOutcome::Read,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TableOutcome::Published => "published",
            TableOutcome::Failed => "failed",
            TableOutcome::Read => "read",
        }
    }
}

/// The fate of one wait time sent to the output topic (`waittimes_emits_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmitOutcome {
    Sent,
    Failed,
}

impl EmitOutcome {
    pub const ALL: [EmitOutcome; 2] = [EmitOutcome::Sent, EmitOutcome::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            EmitOutcome::Sent => "sent",
            EmitOutcome::Failed => "failed",
        }
    }
}

/// The fate of one closed feature window (`waittimes_feature_windows_total{outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeatureOutcome {
    /// Acknowledged by the broker.
    Sent,
    /// Could not be written.
    Failed,
    /// Closed during the replay at start: the run before published it, so it is not sent.
    Replayed,
}

impl FeatureOutcome {
    pub const ALL: [FeatureOutcome; 3] = [
        FeatureOutcome::Sent,
        FeatureOutcome::Failed,
        FeatureOutcome::Replayed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FeatureOutcome::Sent => "sent",
            FeatureOutcome::Failed => "failed",
            FeatureOutcome::Replayed => "replayed",
        }
    }
}

/// What a push stream event says (`waittimes_http_stream_events_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamEventKind {
    /// A store's answer.
    Wait,
    /// A store that was sent before no longer has an answer here.
    Removed,
}

impl StreamEventKind {
    pub const ALL: [StreamEventKind; 2] = [StreamEventKind::Wait, StreamEventKind::Removed];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamEventKind::Wait => "wait",
            StreamEventKind::Removed => "removed",
        }
    }
}

/// The answer to one Schema Registry request
/// (`waittimes_schema_registry_requests_total{outcome}`). Cache hits are not requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RegistryOutcome {
    Ok,
    /// The registry answered that the id or subject does not exist.
    NotFound,
    /// Transport failure, timeout, or any other error status.
    Error,
}

impl RegistryOutcome {
    pub const ALL: [RegistryOutcome; 3] = [
        RegistryOutcome::Ok,
        RegistryOutcome::NotFound,
        RegistryOutcome::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RegistryOutcome::Ok => "ok",
            RegistryOutcome::NotFound => "not_found",
            RegistryOutcome::Error => "error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicOutcome {
    topic: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicReason {
    topic: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicPartition {
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

const KINDS: usize = InputKind::ALL.len();
const OUTCOMES: usize = EventOutcome::ALL.len();
const REASONS: usize = DeadLetterReason::ALL.len();

/// The service's metrics: cheap to clone (one `Arc`), every update `&self` and lock-free except
/// where noted.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    health: Arc<Health>,
    /// Input topic names, indexed by `InputKind as usize`.
    topics: [String; KINDS],
    events: Family<TopicOutcome, Counter>,
    events_by_kind: [[Counter; OUTCOMES]; KINDS],
    dead_letters: Family<TopicReason, Counter>,
    dead_letters_by_kind: [[Counter; REASONS]; KINDS],
    dead_letter_failures: Counter,
    observations: [Counter; ObservationSource::ALL.len()],
    consumer_lag: Family<TopicPartition, Gauge>,
    processing_latency: Histogram,
    emit_latency: Histogram,
    open_orders: Gauge,
    held_terminals: Gauge,
    expired: [Counter; ExpiryKind::ALL.len()],
    emits: [Counter; EmitOutcome::ALL.len()],
    feature_windows: [Counter; FeatureOutcome::ALL.len()],
    feature_late_events: Counter,
    priors_loaded: Gauge,
    registry_requests: [Counter; RegistryOutcome::ALL.len()],
    http_requests: Family<HttpLabels, Counter>,
    mispartitioned: Counter,
    answers_table: [Counter; TableOutcome::ALL.len()],
    streams_open: Gauge,
    streams_rejected: Counter,
    stream_events: [Counter; StreamEventKind::ALL.len()],
    stream_skipped: Counter,
    limiters: events::Limiters,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("topics", &self.inner.topics)
            .finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every metric. `topic_name` maps each input to its configured topic name (the
    /// `topic` label); `answers` and `health` are read at scrape time for the per-store gauges
    /// and `waittimes_ready`.
    pub fn new(
        topic_name: impl Fn(InputKind) -> String,
        answers: Answers,
        health: Arc<Health>,
    ) -> Metrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let topics = InputKind::ALL.map(topic_name);

        let events = Family::<TopicOutcome, Counter>::default();
        registry.register(
            "events",
            "Input records consumed, by topic and what became of them",
            events.clone(),
        );
        let events_by_kind: [[Counter; OUTCOMES]; KINDS] = std::array::from_fn(|k| {
            std::array::from_fn(|o| {
                events.get_or_create_owned(&TopicOutcome {
                    topic: topics[k].clone(),
                    outcome: EventOutcome::ALL[o].as_str(),
                })
            })
        });

        let dead_letters = Family::<TopicReason, Counter>::default();
        registry.register(
            "dead_letters",
            "Records sent to the dead-letter topic, by source topic and reason",
            dead_letters.clone(),
        );
        let dead_letters_by_kind: [[Counter; REASONS]; KINDS] = std::array::from_fn(|k| {
            std::array::from_fn(|r| {
                dead_letters.get_or_create_owned(&TopicReason {
                    topic: topics[k].clone(),
                    reason: DeadLetterReason::ALL[r].as_str(),
                })
            })
        });

        let dead_letter_failures = Counter::default();
        registry.register(
            "dead_letter_failures",
            "Dead letters that could not be written to the dead-letter topic",
            dead_letter_failures.clone(),
        );

        let observations_family = Family::<SourceLabel, Counter>::default();
        registry.register(
            "observations",
            "Wait observations of completed orders, by where the duration came from",
            observations_family.clone(),
        );
        let observations = ObservationSource::ALL
            .map(|s| observations_family.get_or_create_owned(&SourceLabel { source: s.as_str() }));

        let consumer_lag = Family::<TopicPartition, Gauge>::default();
        registry.register(
            "consumer_lag_records",
            "Records between the consumer position and the end of each assigned partition",
            consumer_lag.clone(),
        );

        let processing_latency = Histogram::new(LATENCY_BUCKETS_SECONDS);
        registry.register_with_unit(
            "processing_latency",
            "Time from a record's timestamp to its effect on the state, while caught up",
            Unit::Seconds,
            processing_latency.clone(),
        );
        let emit_latency = Histogram::new(LATENCY_BUCKETS_SECONDS);
        registry.register_with_unit(
            "emit_latency",
            "Time from the stream time of a store's answer to its publication on the output topic",
            Unit::Seconds,
            emit_latency.clone(),
        );

        let open_orders = Gauge::default();
        registry.register(
            "open_orders",
            "Orders placed and not yet completed, cancelled or expired",
            open_orders.clone(),
        );
        let held_terminals = Gauge::default();
        registry.register(
            "held_terminals",
            "Completions and cancellations waiting for their order to arrive",
            held_terminals.clone(),
        );

        let expired_family = Family::<KindLabel, Counter>::default();
        registry.register(
            "expired_orders",
            "Orders and held completions or cancellations dropped after their TTL, by kind",
            expired_family.clone(),
        );
        let expired = ExpiryKind::ALL
            .map(|k| expired_family.get_or_create_owned(&KindLabel { kind: k.as_str() }));

        let emits_family = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "emits",
            "Wait times sent to the output topic, by outcome",
            emits_family.clone(),
        );
        let emits = EmitOutcome::ALL.map(|o| {
            emits_family.get_or_create_owned(&OutcomeLabel {
                outcome: o.as_str(),
            })
        });

        let feature_family = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "feature_windows",
            "Closed feature windows (one store, one window), by what became of them",
            feature_family.clone(),
        );
        let feature_windows = FeatureOutcome::ALL.map(|o| {
            feature_family.get_or_create_owned(&OutcomeLabel {
                outcome: o.as_str(),
            })
        });
        let feature_late_events = Counter::default();
        registry.register(
            "feature_late_events",
            "Events that came after their feature window had closed: applied to the state, in no feature record",
            feature_late_events.clone(),
        );

        let priors_loaded = Gauge::default();
        registry.register(
            "priors_loaded",
            "Stores with a prior wait time read from the output topic at start",
            priors_loaded.clone(),
        );

        let registry_family = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "schema_registry_requests",
            "Requests to the Schema Registry, by outcome",
            registry_family.clone(),
        );
        let registry_requests = RegistryOutcome::ALL.map(|o| {
            registry_family.get_or_create_owned(&OutcomeLabel {
                outcome: o.as_str(),
            })
        });

        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template and status code",
            http_requests.clone(),
        );

        let mispartitioned = Counter::default();
        registry.register(
            "mispartitioned_records",
            "Input records of a store seen on another partition number than its earlier records",
            mispartitioned.clone(),
        );

        let table_family = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "answers_table_records",
            "Records of the internal answers topic, by outcome (published, failed, read)",
            table_family.clone(),
        );
        let answers_table = TableOutcome::ALL.map(|o| {
            table_family.get_or_create_owned(&OutcomeLabel {
                outcome: o.as_str(),
            })
        });

        let streams_open = Gauge::default();
        registry.register(
            "http_streams_open",
            "Push streams (Server-Sent Events) open now",
            streams_open.clone(),
        );
        let streams_rejected = Counter::default();
        registry.register(
            "http_streams_rejected",
            "Push streams refused with 429 because http.max_streams were open",
            streams_rejected.clone(),
        );
        let stream_events_family = Family::<KindLabel, Counter>::default();
        registry.register(
            "http_stream_events",
            "Events sent on push streams, by kind",
            stream_events_family.clone(),
        );
        let stream_events = StreamEventKind::ALL
            .map(|k| stream_events_family.get_or_create_owned(&KindLabel { kind: k.as_str() }));
        let stream_skipped = Counter::default();
        registry.register(
            "http_stream_skipped_answers",
            "Answers a push stream never sent because a newer one replaced them before the client \
             read on (slow clients skip to the latest)",
            stream_skipped.clone(),
        );

        registry.register(
            "build",
            "The running build",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );

        registry.register_collector(Box::new(StoreCollector { answers }));
        registry.register_collector(Box::new(ReadyCollector {
            health: health.clone(),
        }));

        Metrics {
            inner: Arc::new(Inner {
                registry,
                health,
                topics,
                events,
                events_by_kind,
                dead_letters,
                dead_letters_by_kind,
                dead_letter_failures,
                observations,
                consumer_lag,
                processing_latency,
                emit_latency,
                open_orders,
                held_terminals,
                expired,
                emits,
                feature_windows,
                feature_late_events,
                priors_loaded,
                registry_requests,
                http_requests,
                mispartitioned,
                answers_table,
                streams_open,
                streams_rejected,
                stream_events,
                stream_skipped,
                limiters: events::Limiters::default(),
            }),
        }
    }

    /// The OpenMetrics text exposition of every metric, `# EOF` included.
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)?;
        Ok(out)
    }

    /// The configured name of an input topic (the `topic` label).
    pub fn topic(&self, kind: InputKind) -> &str {
        &self.inner.topics[kind as usize]
    }

    /// Counts one consumed record. Hot path: one relaxed atomic add.
    ///
    /// For dead letters emit [`DeadLettered`] instead, which counts the record here too.
    #[cfg(test)]
    fn event(&self, kind: InputKind, outcome: EventOutcome) {
        self.inner.events_by_kind[kind as usize][outcome as usize].inc();
    }

    /// Counts `n` consumed records with the same outcome (for batch-wise counting).
    fn events(&self, kind: InputKind, outcome: EventOutcome, n: u64) {
        self.inner.events_by_kind[kind as usize][outcome as usize].inc_by(n);
    }

    /// Counts a record of a topic that is not one of the three inputs (e.g. the output topic
    /// read for priors). Hashes the label set: not for the hot path.
    #[cfg(test)]
    fn event_on_topic(&self, topic: &str, outcome: EventOutcome) {
        self.events_counter(topic, outcome).inc();
    }

    fn kind_of(&self, topic: &str) -> Option<usize> {
        self.inner.topics.iter().position(|t| t == topic)
    }

    fn events_counter(&self, topic: &str, outcome: EventOutcome) -> Counter {
        match self.kind_of(topic) {
            Some(k) => self.inner.events_by_kind[k][outcome as usize].clone(),
            None => self.inner.events.get_or_create_owned(&TopicOutcome {
                topic: topic.to_owned(),
                outcome: outcome.as_str(),
            }),
        }
    }

    fn count_dead_letter(&self, topic: &str, reason: DeadLetterReason) {
        match self.kind_of(topic) {
            Some(k) => {
                self.inner.dead_letters_by_kind[k][reason as usize].inc();
            }
            None => {
                self.inner
                    .dead_letters
                    .get_or_create(&TopicReason {
                        topic: topic.to_owned(),
                        reason: reason.as_str(),
                    })
                    .inc();
            }
        }
        self.events_counter(topic, EventOutcome::DeadLettered).inc();
    }

    /// Counts one wait observation.
    #[cfg(test)]
    fn observation(&self, source: ObservationSource) {
        self.inner.observations[source as usize].inc();
    }

    fn observations(&self, source: ObservationSource, n: u64) {
        self.inner.observations[source as usize].inc_by(n);
    }

    /// Sets a partition's lag. Takes a lock and hashes: call per poll batch or statistics
    /// callback, not per record.
    fn set_consumer_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.inner
            .consumer_lag
            .get_or_create(&TopicPartition {
                topic: topic.to_owned(),
                partition,
            })
            .set(lag);
    }

    /// Drops a partition's lag series (on revocation), so a partition another instance now
    /// owns does not keep reporting its last lag from here.
    fn remove_consumer_lag(&self, topic: &str, partition: i32) {
        self.inner.consumer_lag.remove(&TopicPartition {
            topic: topic.to_owned(),
            partition,
        });
    }

    /// Observes record timestamp → state applied, `now_ms` being the wall clock (read it once
    /// per batch). Skipped while [`Condition::CaughtUp`] does not hold: during a replay the
    /// record's age measures how far back the replay started, not how fast we process, and
    /// would drown the real latencies. A clock behind the record counts as zero.
    fn observe_processing_latency(&self, record_timestamp_ms: EventTime, now_ms: i64) {
        if self.inner.health.is_ok(Condition::CaughtUp) {
            self.inner
                .processing_latency
                .observe(latency_seconds(record_timestamp_ms, now_ms));
        }
    }

    /// Observes stream time of the published answer → sent to the output topic (includes the
    /// debounce of `emit_interval`). [`WaitPublished`] calls it.
    fn observe_emit_latency(&self, event_time_ms: EventTime, now_ms: i64) {
        self.inner
            .emit_latency
            .observe(latency_seconds(event_time_ms, now_ms));
    }

    fn set_open_orders(&self, n: u64) {
        self.inner.open_orders.set(saturating_i64(n));
    }

    fn set_held_terminals(&self, n: u64) {
        self.inner.held_terminals.set(saturating_i64(n));
    }

    /// Counts expirations without logging (see [`OrdersExpired`] for the logged variant).
    fn expired(&self, kind: ExpiryKind, n: u64) {
        self.inner.expired[kind as usize].inc_by(n);
    }

    fn emitted(&self, outcome: EmitOutcome) {
        self.inner.emits[outcome as usize].inc();
    }

    fn set_priors_loaded(&self, n: u64) {
        self.inner.priors_loaded.set(saturating_i64(n));
    }

    /// Counts one request to the Schema Registry (failures: see [`SchemaRegistryFailed`]).
    fn schema_registry_request(&self, outcome: RegistryOutcome) {
        self.inner.registry_requests[outcome as usize].inc();
    }

    /// Counts one answered HTTP request; `route` is the matched route template (bounded), never
    /// the raw path.
    fn http_request(&self, route: &str, status: u16) {
        self.inner
            .http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                status,
            })
            .inc();
    }

    fn limiters(&self) -> &events::Limiters {
        &self.inner.limiters
    }
}

fn latency_seconds(from_ms: i64, to_ms: i64) -> f64 {
    // Lossy only beyond 2^53 ms (about 285,000 years).
    to_ms.saturating_sub(from_ms).max(0) as f64 / 1000.0
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Per-store gauges, read from the answers at scrape time.
struct StoreCollector {
    answers: Answers,
}

impl fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreCollector")
            .field("stores", &self.answers.len())
            .finish()
    }
}

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        // Copy out first so no map shard stays locked while text is written.
        let stores: Vec<(StoreId, Option<i32>, u32)> = self
            .answers
            .sorted()
            .iter()
            .map(|w| (w.store_id, w.wait_time_minutes, w.observations))
            .collect();

        let count = i64::try_from(stores.len()).unwrap_or(i64::MAX);
        encoder
            .encode_descriptor(
                "stores",
                "Stores with an answer (live, prior or none yet).",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&count)?;

        let minutes = Unit::Other("minutes".to_owned());
        let mut wait = encoder.encode_descriptor(
            "store_wait_time",
            "A store's published wait time; absent while it has neither observations nor a prior.",
            Some(&minutes),
            MetricType::Gauge,
        )?;
        for (id, minutes, _) in &stores {
            if let Some(minutes) = minutes {
                wait.encode_family(&[("store_id", *id)])?
                    .encode_gauge(&i64::from(*minutes))?;
            }
        }

        let mut observations = encoder.encode_descriptor(
            "store_observations",
            "Wait observations inside the window per store.",
            None,
            MetricType::Gauge,
        )?;
        for (id, _, n) in &stores {
            observations
                .encode_family(&[("store_id", *id)])?
                .encode_gauge(&i64::from(*n))?;
        }
        Ok(())
    }
}

/// `waittimes_ready`, read from [`Health`] at scrape time.
#[derive(Debug)]
struct ReadyCollector {
    health: Arc<Health>,
}

impl Collector for ReadyCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        encoder
            .encode_descriptor(
                "ready",
                "1 when the service is ready (as /health/ready answers), else 0.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&i64::from(self.health.is_ready()))
    }
}

#[cfg(test)]
pub(crate) mod tests;
