//! The input edge: one consumer thread that owns the state (single writer, no locks on the hot
//! path). It replays each assigned partition from `now − replay horizon`, decodes, applies,
//! dead-letters what it cannot use, and publishes changed answers.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message, Timestamp};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::answers::Answers;
use crate::clock::now_ms;
use crate::domain::{InputKind, StoreId};
use crate::health::{Condition, Health, Warning};
use crate::metrics::{self, EventOutcome, ExpiryKind, Metrics, RegistryOutcome};
use crate::pipeline::dlq::{DeadLetter, DeadLetters};
use crate::pipeline::features::FeatureSet;
use crate::shutdown::Shutdown;
use crate::state::{Counters, IdHasherBuilder, IdMap, ObservationSource, Outcome, State};
use crate::table::Table;
use crate::wire::{DeadLetterReason, DecodeError, Decoders, Registry};

/// How long a broker call made inside a rebalance may take.
const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the published answers (HTTP, emitter) are refreshed from the state.
const REFRESH_EVERY: Duration = Duration::from_millis(50);
/// Records between two reads of the monotonic clock for the refresh (and whenever a poll
/// comes back empty): at ~1 µs a record this delays a refresh by well under a millisecond.
const CLOCK_EVERY: u32 = 64;
/// Registry retry backoff bounds for records whose schema cannot be fetched yet.
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(15);

/// What the consumer loop needs besides the consumer itself.
pub struct Input {
    pub topics: Vec<(String, InputKind)>,
    pub state: State,
    pub decoders: Decoders,
    pub registry: Arc<Registry>,
    pub runtime: tokio::runtime::Handle,
    pub dead_letters: DeadLetters,
    pub answers: Answers,
    /// Applies each event to the state and the feature windows.
    pub features: FeatureSet,
    pub metrics: Metrics,
    pub health: Arc<Health>,
    pub shutdown: Shutdown,
    /// Where the answers of stores that moved away are kept as last known.
    pub table: Table,
    /// Stores gained from another instance, sent once caught up: the emitter publishes them
    /// whatever it last sent or read at start, as the previous owner may have sent since.
    pub gained: std::sync::mpsc::Sender<Vec<StoreId>>,
    /// Partitions per input topic (0 when unknown at start).
    pub partitions: i32,
}

/// Rebalance and client events, recorded in librdkafka's callbacks (which run inside `poll` on
/// the consumer thread) and handled by the loop right after.
#[derive(Default)]
struct Pending {
    assigned: Vec<Assigned>,
    /// Assignments seen (an empty one still drops what was revoked).
    assignments: u32,
    revoked: Vec<(String, i32)>,
}

struct Assigned {
    topic: String,
    partition: i32,
    /// The end offset seen at assignment: caught up once the position reaches it.
    target: i64,
}

/// The consumer's librdkafka context: rebalances (replay by time), errors, statistics (lag).
pub struct InputContext {
    replay_horizon_ms: i64,
    health: Arc<Health>,
    metrics: Metrics,
    pending: Mutex<Pending>,
    /// Next offsets of the partitions revoked last, so a partition given back resumes where it
    /// was instead of replaying: only what moved is replayed.
    positions: Mutex<HashMap<(String, i32), i64>>,
    /// Set when `pending` holds something: the loop checks this flag after every poll instead
    /// of locking the mutex (a lock per record showed in profiles).
    has_pending: AtomicBool,
}

impl InputContext {
    pub fn new(replay_horizon: Duration, health: Arc<Health>, metrics: Metrics) -> Self {
        Self {
            replay_horizon_ms: i64::try_from(replay_horizon.as_millis()).unwrap_or(i64::MAX),
            health,
            metrics,
            pending: Mutex::new(Pending::default()),
            positions: Mutex::new(HashMap::new()),
            has_pending: AtomicBool::new(false),
        }
    }

    /// What the callbacks recorded since the last call, or `None` (without locking) if nothing.
    fn take_pending(&self) -> Option<Pending> {
        if !self.has_pending.load(Ordering::Acquire) {
            return None;
        }
        self.has_pending.store(false, Ordering::Release);
        Some(match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        })
    }

    fn push(&self, f: impl FnOnce(&mut Pending)) {
        match self.pending.lock() {
            Ok(mut p) => f(&mut p),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
        self.has_pending.store(true, Ordering::Release);
    }

    /// Start offsets for a fresh assignment: the first record at or after `now − horizon`.
    fn replay_offsets(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let from = now_ms().saturating_sub(self.replay_horizon_ms);
        let mut query = TopicPartitionList::new();
        for e in tpl.elements() {
            let _ = query.add_partition_offset(e.topic(), e.partition(), Offset::Offset(from));
        }
        let found = consumer.offsets_for_times(query, BROKER_CALL_TIMEOUT);
        let positions = std::mem::take(
            &mut *self
                .positions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let mut assigned = Vec::new();
        for e in tpl.elements() {
            let (topic, partition) = (e.topic().to_string(), e.partition());
            let kept = positions.get(&(topic.clone(), partition)).copied();
            let start = match (&found, kept) {
                (_, Some(next)) => Offset::Offset(next),
                (found, None) => match found {
                    Ok(found) => {
                        match found.find_partition(&topic, partition).map(|f| f.offset()) {
                            Some(Offset::Offset(o)) => Offset::Offset(o),
                            Some(Offset::End) => Offset::End,
                            _ => Offset::Beginning,
                        }
                    }
                    Err(err) => {
                        tracing::warn!(%topic, partition, error = %err,
                            "offsets for times failed; replaying from the beginning");
                        Offset::Beginning
                    }
                },
            };
            let target = match consumer.fetch_watermarks(&topic, partition, BROKER_CALL_TIMEOUT) {
                Ok((_low, high)) => high,
                Err(err) => {
                    tracing::warn!(%topic, partition, error = %err,
                        "could not read the end offset; treating the partition as caught up");
                    0
                }
            };
            // A partition resumed at its end has nothing to catch up with, and the consumer
            // reports no position for it until a new record arrives.
            let target = match kept {
                Some(next) if next >= target => 0,
                _ => target,
            };
            if kept.is_some() {
                tracing::info!(%topic, partition, ?start, end = target, "assigned again; resuming");
            } else {
                tracing::info!(%topic, partition, ?start, end = target, "assigned; replaying");
            }
            assigned.push((topic, partition, start, target));
        }
        for (topic, partition, start, _) in &assigned {
            if let Err(err) = tpl.set_partition_offset(topic, *partition, *start) {
                tracing::warn!(%topic, partition, error = %err, "could not set the start offset");
            }
        }
        self.push(|p| {
            p.assignments += 1;
            p.assigned.extend(
                assigned
                    .into_iter()
                    // A partition that starts at its end (no record since the horizon) has
                    // nothing to replay: it is caught up as soon as it is assigned.
                    .map(|(topic, partition, start, target)| Assigned {
                        topic,
                        partition,
                        target: if start == Offset::End { 0 } else { target },
                    }),
            )
        });
    }
}

impl ClientContext for InputContext {
    fn error(&self, error: KafkaError, reason: &str) {
        use rdkafka::types::RDKafkaErrorCode as C;
        let broker_down = matches!(
            error.rdkafka_error_code(),
            Some(C::AllBrokersDown | C::BrokerTransportFailure | C::Resolve)
        );
        if broker_down {
            self.health
                .set_not_ready(Condition::Broker, format!("broker unreachable: {reason}"));
        }
        tracing::warn!(error = %error, reason, "kafka client error");
    }

    fn stats(&self, statistics: Statistics) {
        let up = statistics.brokers.values().any(|b| b.state == "UP");
        if up {
            self.health.set_ok(Condition::Broker);
        } else if !statistics.brokers.is_empty() {
            self.health
                .set_not_ready(Condition::Broker, "no broker connection is up");
        }
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 && p.desired && p.consumer_lag >= 0 {
                    metrics::PartitionLag {
                        topic,
                        partition: *partition,
                        lag: p.consumer_lag,
                    }
                    .emit(&self.metrics);
                }
            }
        }
    }
}

impl ConsumerContext for InputContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.replay_offsets(consumer, tpl);
                if let Err(err) = consumer.assign(tpl) {
                    tracing::error!(error = %err, "assign failed");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let revoked: Vec<_> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                // Where each stands, in case the next assignment gives it back.
                if let Ok(position) = consumer.position() {
                    let mut kept = self
                        .positions
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    for e in position.elements() {
                        if let Offset::Offset(next) = e.offset()
                            && revoked
                                .iter()
                                .any(|(t, p)| t == e.topic() && *p == e.partition())
                        {
                            kept.insert((e.topic().to_string(), e.partition()), next);
                        }
                    }
                }
                metrics::PartitionsRevoked {
                    partitions: &revoked,
                }
                .emit(&self.metrics);
                self.push(|p| p.revoked.extend(revoked));
                if let Err(err) = consumer.unassign() {
                    tracing::error!(error = %err, "unassign failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                if let Err(err) = consumer.unassign() {
                    tracing::error!(error = %err, "unassign failed");
                }
            }
        }
    }
}

/// A partition paused because a record's writer schema could not be fetched yet.
struct Blocked {
    topic: String,
    partition: i32,
    offset: i64,
    schema_id: u32,
    backoff: Duration,
    retry_at: Instant,
}

/// Where the consumer loop stands, as readiness and the emitter see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Some assigned partition is behind the end offset seen at its assignment (or nothing is
    /// assigned yet): answers are not current and nothing is emitted.
    Replaying,
    /// Every assigned partition reached its end offset seen at assignment.
    CaughtUp,
    /// Some partition is paused on a record whose writer schema the registry cannot serve
    /// yet; the other partitions go on (readiness reports the registry meanwhile).
    WaitingOnRegistry,
}

/// The consumer loop: the consumer, what it feeds, and what it keeps between polls.
struct ConsumerLoop {
    consumer: BaseConsumer<InputContext>,
    input: Input,
    /// End offsets still to reach before the loop counts as caught up.
    targets: Targets,
    /// The partition each store was last seen on, so a revoked partition drops its stores.
    store_partition: IdMap<StoreId, i32>,
    /// Partitions paused while waiting on the registry for a writer schema.
    blocked: Vec<Blocked>,
    ownership: Ownership,
    phase: Phase,
    since_clock: u32,
    last_refresh: Instant,
    dirty: Vec<StoreId>,
    totals: Totals,
    counts: EventCounts,
    topics: TopicCache,
}

/// Runs the consumer loop until shutdown. Returns the state for a final publish.
pub fn run(consumer: BaseConsumer<InputContext>, input: Input) -> State {
    input
        .health
        .set_not_ready(Condition::Assignment, "waiting for a partition assignment");
    let mut lp = ConsumerLoop {
        consumer,
        input,
        targets: Targets::default(),
        store_partition: IdMap::with_hasher(IdHasherBuilder::random()),
        blocked: Vec::new(),
        ownership: Ownership::default(),
        phase: Phase::Replaying,
        since_clock: 0,
        last_refresh: Instant::now(),
        dirty: Vec::new(),
        totals: Totals::default(),
        counts: EventCounts::default(),
        topics: TopicCache::default(),
    };
    while !lp.input.shutdown.is_triggered() {
        lp.step();
    }
    lp.finish()
}

impl ConsumerLoop {
    /// One poll: a record applied (or none), the rebalance events settled, blocked partitions
    /// retried, and every [`REFRESH_EVERY`] the answers published and the phase updated.
    fn step(&mut self) {
        // Drain what is already fetched without blocking; only when the queue is empty, settle
        // what the callbacks recorded and the batched counters, then wait for more.
        let mut polled = self.consumer.poll(Duration::ZERO);
        if polled.is_none() {
            settle_rebalance(
                &self.consumer,
                &mut self.input,
                &mut self.targets,
                &mut self.store_partition,
                &mut self.ownership,
                &mut self.topics,
            );
            self.counts.flush(&self.input.metrics);
            polled = self.consumer.poll(Duration::from_millis(100));
        }
        let polled_none = polled.is_none();
        settle_rebalance(
            &self.consumer,
            &mut self.input,
            &mut self.targets,
            &mut self.store_partition,
            &mut self.ownership,
            &mut self.topics,
        );
        match polled {
            None => {}
            Some(Ok(msg)) => {
                let (topic, kind) = self.topics.resolve(&msg, &self.input.topics);
                self.input
                    .features
                    .set_replaying(self.targets.replaying(msg.partition()));
                if !self.targets.is_empty() {
                    self.targets
                        .reached(topic, msg.partition(), msg.offset() + 1);
                }
                if let Some(b) = handle_message(
                    &msg,
                    kind,
                    &mut self.input,
                    &mut self.store_partition,
                    &mut self.counts,
                ) {
                    drop(msg);
                    self.wait_on_registry(b);
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(err)) => {
                tracing::warn!(error = %err, "consumer error");
            }
        }
        if !self.blocked.is_empty() {
            retry_blocked(&self.consumer, &mut self.input, &mut self.blocked);
        }
        // The clock is read every few records, not per record (it showed in profiles).
        self.since_clock += 1;
        if (self.since_clock >= CLOCK_EVERY || polled_none)
            && self.last_refresh.elapsed() >= REFRESH_EVERY
        {
            self.since_clock = 0;
            self.last_refresh = Instant::now();
            // The answers first, then readiness (which the emitter also goes by): whoever sees
            // "caught up" finds every record applied and published to HTTP, and whoever sees
            // "not caught up" knows that nothing has been emitted from the replay yet.
            self.refresh();
            self.update_phase();
            self.input.features.publish();
        }
    }

    /// Pauses the record's partition until the registry serves its writer schema.
    fn wait_on_registry(&mut self, b: Blocked) {
        pause_at(&self.consumer, &b);
        self.input.health.set_not_ready(
            Condition::SchemaRegistry,
            format!("cannot fetch schema id {}; retrying", b.schema_id),
        );
        self.blocked.push(b);
    }

    fn refresh(&mut self) {
        refresh(
            &mut self.input,
            &mut self.dirty,
            &mut self.totals,
            &mut self.counts,
        );
    }

    /// Moves between the phases, and says so in readiness and the log. The caught-up
    /// condition goes by the targets alone: a paused partition is reported by the registry's.
    fn update_phase(&mut self) {
        prune_caught_up(&self.consumer, &mut self.targets);
        let caught_up = self.targets.is_empty() && !consumer_has_no_assignment(&self.consumer);
        if caught_up && !self.ownership.gained.is_empty() {
            let gained = &self.ownership.gained;
            let stores: Vec<StoreId> = self
                .store_partition
                .iter()
                .filter(|(_, p)| gained.contains(p))
                .map(|(s, _)| *s)
                .collect();
            self.ownership.gained.clear();
            // The emitter may be gone at shutdown; then nothing is emitted anyway.
            let _ = self.input.gained.send(stores);
        }
        if caught_up && !self.ownership.published {
            self.input
                .table
                .set_owned(self.ownership.held.clone(), self.input.partitions);
            self.ownership.published = true;
        }
        if caught_up {
            self.input.health.set_ok(Condition::CaughtUp);
        } else {
            self.input.health.set_not_ready(
                Condition::CaughtUp,
                format!(
                    "replaying: {} partitions behind the end offsets seen at start",
                    self.targets.len()
                ),
            );
        }
        let phase = if !self.blocked.is_empty() {
            Phase::WaitingOnRegistry
        } else if caught_up {
            Phase::CaughtUp
        } else {
            Phase::Replaying
        };
        if phase != self.phase {
            match phase {
                Phase::CaughtUp => {
                    tracing::info!("caught up with the end offsets seen at assignment")
                }
                Phase::Replaying => tracing::info!("replaying assigned partitions"),
                Phase::WaitingOnRegistry => {
                    tracing::info!(paused = self.blocked.len(), "waiting on the registry")
                }
            }
        }
        self.phase = phase;
    }

    /// The last publish and commit after shutdown was asked for.
    fn finish(mut self) -> State {
        self.refresh();
        self.input.features.publish();
        if let Err(err) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(error = %err, "final commit");
        }
        self.input.state
    }
}

/// Handles what the rebalance callback recorded; the topic handles may have changed. Takes the
/// loop's parts, not the loop, as a polled record still borrows the consumer.
fn settle_rebalance(
    consumer: &BaseConsumer<InputContext>,
    input: &mut Input,
    targets: &mut Targets,
    store_partition: &mut IdMap<StoreId, i32>,
    ownership: &mut Ownership,
    topics: &mut TopicCache,
) {
    if handle_pending(consumer, input, targets, store_partition, ownership) {
        topics.clear();
    }
}

fn consumer_has_no_assignment(consumer: &BaseConsumer<InputContext>) -> bool {
    consumer
        .assignment()
        .map(|a| a.count() == 0)
        .unwrap_or(true)
}

/// The partition numbers this instance keeps state for, across rebalances. Numbers, not
/// topic-partitions: the input topics are co-partitioned, so partition p of each moves as one.
#[derive(Default)]
struct Ownership {
    held: BTreeSet<i32>,
    /// Revoked and still held: the eager protocol revokes everything before each assignment,
    /// so a partition is only dropped when the next assignment does not give it back.
    revoked: BTreeSet<i32>,
    /// Gained from another instance since the last catch-up: the emitter cannot know what the
    /// previous owner last published for their stores.
    gained: BTreeSet<i32>,
    assigned_once: bool,
    /// Whether the table knows `held` as caught up.
    published: bool,
}

/// Handles what the rebalance callback recorded: new catch-up targets; the stores of
/// partitions that moved away dropped (their last answers kept in the table, marked as such).
/// Returns whether there was anything (the assignment may have changed).
fn handle_pending(
    consumer: &BaseConsumer<InputContext>,
    input: &mut Input,
    targets: &mut Targets,
    store_partition: &mut IdMap<StoreId, i32>,
    ownership: &mut Ownership,
) -> bool {
    let Some(pending) = consumer.context().take_pending() else {
        return false;
    };
    if !pending.revoked.is_empty() {
        for (topic, partition) in &pending.revoked {
            targets
                .0
                .retain(|(t, p, _)| !(t == topic && p == partition));
            ownership.revoked.insert(*partition);
        }
        input
            .health
            .set_not_ready(Condition::Assignment, "partitions revoked; rebalancing");
        // Before any record of the next assignment is applied: nothing of a replay may be
        // emitted or shared, and the emitter and sharer go by this condition.
        input
            .health
            .set_not_ready(Condition::CaughtUp, "rebalancing");
        input.table.set_owned(BTreeSet::new(), input.partitions);
        ownership.published = false;
    }
    if pending.assignments > 0 {
        let now: BTreeSet<i32> = pending.assigned.iter().map(|a| a.partition).collect();
        let gone: HashSet<i32> = ownership.revoked.difference(&now).copied().collect();
        if !gone.is_empty() {
            let at = now_ms();
            store_partition.retain(|store, partition| {
                let keep = !gone.contains(partition);
                if !keep {
                    if let Some(answer) = input.answers.get(*store) {
                        input.table.keep_last_known(answer, at);
                    }
                    input.state.remove_store(*store);
                    input.features.remove_store(*store);
                    input.answers.remove(*store);
                }
                keep
            });
            tracing::info!(partitions = ?gone, "partitions moved away; their stores dropped");
        }
        if ownership.assigned_once {
            ownership
                .gained
                .extend(now.iter().filter(|p| !ownership.held.contains(p)));
        }
        ownership.held = now;
        ownership.revoked.clear();
        ownership.assigned_once = true;
        if pending.assigned.iter().any(|a| a.target > 0) {
            input
                .health
                .set_not_ready(Condition::CaughtUp, "replaying newly assigned partitions");
        }
        input.table.set_owned(BTreeSet::new(), input.partitions);
        ownership.published = false;
        for a in pending.assigned {
            targets
                .0
                .retain(|(t, p, _)| !(*t == a.topic && *p == a.partition));
            if a.target > 0 {
                targets.0.push((a.topic, a.partition, a.target));
            }
        }
        input.health.set_ok(Condition::Assignment);
    }
    true
}

/// Drops catch-up targets already reached by the consumer's position (which also accounts for
/// offsets that carry no record, such as transaction markers).
fn prune_caught_up(consumer: &BaseConsumer<InputContext>, targets: &mut Targets) {
    if targets.is_empty() {
        return;
    }
    if let Ok(position) = consumer.position() {
        for e in position.elements() {
            if let Offset::Offset(o) = e.offset() {
                targets.reached(e.topic(), e.partition(), o);
            }
        }
    }
}

/// End offsets still to reach, per partition. A handful of entries, searched linearly: no
/// allocation per record.
#[derive(Default)]
struct Targets(Vec<(String, i32, i64)>);

impl Targets {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether a record of this partition number is one the replay re-reads: some input topic's
    /// partition of that number (where a store's events all go) has not reached its target.
    #[inline]
    fn replaying(&self, partition: i32) -> bool {
        !self.0.is_empty() && self.0.iter().any(|(_, p, _)| *p == partition)
    }

    /// Records that the partition's next offset is `next`. Compares the numbers first: most
    /// records reach no target, and then no name is compared and nothing is moved.
    fn reached(&mut self, topic: &str, partition: i32, next: i64) {
        let done =
            |(t, p, target): &(String, i32, i64)| *p == partition && next >= *target && t == topic;
        if self.0.iter().any(done) {
            self.0.retain(|e| !done(e));
        }
    }
}

/// The topics of the records seen since the last rebalance, each resolved once to its name and
/// input kind: `msg.topic()` costs a `strlen` and a UTF-8 check per record, which showed in
/// profiles. Keyed by the address of librdkafka's topic handle, which stays alive (so the
/// address stays unique) while a partition of the topic is assigned; cleared on every
/// rebalance, so an address is never reused for another topic while cached.
#[derive(Default)]
struct TopicCache(Vec<(usize, String, Option<InputKind>)>);

impl TopicCache {
    fn resolve(
        &mut self,
        msg: &BorrowedMessage<'_>,
        topics: &[(String, InputKind)],
    ) -> (&str, Option<InputKind>) {
        let key = msg.topic_ptr().addr();
        let i = match self.0.iter().position(|(k, ..)| *k == key) {
            Some(i) => i,
            None => {
                let name = msg.topic();
                self.0.push((key, name.to_owned(), kind_of(topics, name)));
                self.0.len() - 1
            }
        };
        let (_, name, kind) = &self.0[i];
        (name, *kind)
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// Consumed records per input kind and outcome not yet added to the metrics: counted locally
/// and added on each refresh and whenever the queue runs empty, as an atomic increment per
/// record (a full barrier) showed in profiles.
#[derive(Default)]
struct EventCounts([[u64; EventOutcome::ALL.len()]; InputKind::ALL.len()]);

impl EventCounts {
    fn add(&mut self, kind: InputKind, outcome: EventOutcome) {
        self.0[kind as usize][outcome as usize] += 1;
    }

    fn flush(&mut self, metrics: &Metrics) {
        for kind in InputKind::ALL {
            for outcome in EventOutcome::ALL {
                let n = std::mem::take(&mut self.0[kind as usize][outcome as usize]);
                metrics::RecordsConsumed {
                    kind,
                    outcome,
                    count: n,
                }
                .emit(metrics);
            }
        }
    }
}

fn kind_of(topics: &[(String, InputKind)], topic: &str) -> Option<InputKind> {
    topics
        .iter()
        .find(|(name, _)| name == topic)
        .map(|(_, kind)| *kind)
}

/// Decodes and applies one record. Returns `Some` when the partition must pause because the
/// record's schema cannot be fetched right now (it is retried, never dropped).
fn handle_message(
    msg: &BorrowedMessage<'_>,
    kind: Option<InputKind>,
    input: &mut Input,
    store_partition: &mut IdMap<StoreId, i32>,
    counts: &mut EventCounts,
) -> Option<Blocked> {
    let kind = kind?;
    let at = match msg.timestamp() {
        Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => t,
        Timestamp::NotAvailable => now_ms(),
    };
    let Some(payload) = msg.payload() else {
        dead_letter(
            input,
            msg,
            DeadLetterReason::Malformed,
            "record has no value (a tombstone)".into(),
        );
        return None;
    };
    let decoded = match input.decoders.decode(kind, payload) {
        Err(DecodeError::UnknownSchemaId(id)) => {
            match input.runtime.block_on(input.registry.schema_by_id(id)) {
                Ok(schema) => {
                    metrics::SchemaFetched { schema_id: id }.emit(&input.metrics);
                    input.decoders.learn(id, &schema);
                    input.decoders.decode(kind, payload)
                }
                Err(err) if err.is_transient() => {
                    metrics::SchemaRegistryFailed {
                        schema_id: Some(id),
                        outcome: RegistryOutcome::Error,
                        error: &err,
                    }
                    .emit(&input.metrics);
                    return Some(Blocked {
                        topic: msg.topic().to_string(),
                        partition: msg.partition(),
                        offset: msg.offset(),
                        schema_id: id,
                        backoff: RETRY_MIN,
                        retry_at: Instant::now() + RETRY_MIN,
                    });
                }
                Err(err) => {
                    metrics::SchemaRegistryFailed {
                        schema_id: Some(id),
                        outcome: RegistryOutcome::NotFound,
                        error: &err,
                    }
                    .emit(&input.metrics);
                    input.decoders.learn_missing(id, err.to_string());
                    input.decoders.decode(kind, payload)
                }
            }
        }
        other => other,
    };
    match decoded {
        Ok(event) => {
            let outcome = input.features.apply(&mut input.state, &event, at);
            let store = event.store_id();
            if let Some(expected) = store_partition.insert(store, msg.partition())
                && expected != msg.partition()
            {
                mispartitioned(input, msg, store, expected);
            }
            counts.add(kind, event_outcome(outcome));
            // The histogram only observes once caught up; reading the wall clock per record
            // during a replay cost ~10 % of the consumer thread (profiled), so check first.
            if input.health.is_ok(Condition::CaughtUp) {
                metrics::RecordApplied {
                    record_timestamp_ms: at,
                    now_ms: now_ms(),
                }
                .emit(&input.metrics);
            }
        }
        Err(err) => {
            dead_letter(input, msg, err.reason(), err.to_string());
        }
    }
    None
}

/// Counts and reports a store seen on two partition numbers (the ownership map keeps the
/// newest, so a revocation drops the store with the partition that last carried it).
fn mispartitioned(input: &Input, msg: &BorrowedMessage<'_>, store: StoreId, expected: i32) {
    let topic = msg.topic();
    metrics::RecordMispartitioned {
        store_id: store,
        topic,
        partition: msg.partition(),
        expected,
    }
    .emit(&input.metrics);
    input.health.warn(
        Warning::Mispartitioned,
        format!(
            "store {store} arrived on partition {} of {topic} after partition {expected}: the \
             input topics are not co-partitioned (producers must use the murmur2 partitioner); \
             answers are right only while one instance consumes every partition",
            msg.partition()
        ),
    );
}

/// Refuses to start unless the input topics have equal partition counts: the co-locating
/// assignment gives partition p of every topic to one instance, which only lines up a store's
/// records when p means the same in each. Topics not created yet are left to the subscription.
/// Returns the common partition count (0 while no input topic exists).
pub fn check_co_partitioned<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &[&str],
) -> Result<i32, crate::pipeline::Error> {
    let mut counts = Vec::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), BROKER_CALL_TIMEOUT)?;
        for t in metadata.topics() {
            if t.error().is_none() && !t.partitions().is_empty() {
                counts.push((t.name().to_owned(), t.partitions().len()));
            }
        }
    }
    if counts.windows(2).any(|w| w[0].1 != w[1].1) {
        let listed: Vec<String> = counts.iter().map(|(t, n)| format!("{t}: {n}")).collect();
        return Err(crate::pipeline::Error::NotCoPartitioned(listed.join(", ")));
    }
    Ok(counts
        .first()
        .map_or(0, |(_, n)| i32::try_from(*n).unwrap_or(i32::MAX)))
}

fn dead_letter(input: &Input, msg: &BorrowedMessage<'_>, reason: DeadLetterReason, error: String) {
    let timestamp = msg.timestamp().to_millis();
    input.dead_letters.send(DeadLetter {
        topic: msg.topic(),
        partition: msg.partition(),
        offset: msg.offset(),
        timestamp,
        key: msg.key(),
        payload: msg.payload(),
        reason,
        error,
    });
}

fn single(topic: &str, partition: i32) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    tpl
}

/// Pauses the partition and rewinds it to the record that could not be decoded yet.
fn pause_at(consumer: &BaseConsumer<InputContext>, b: &Blocked) {
    if let Err(err) = consumer.pause(&single(&b.topic, b.partition)) {
        tracing::warn!(error = %err, "pause failed");
    }
    if let Err(err) = consumer.seek(
        &b.topic,
        b.partition,
        Offset::Offset(b.offset),
        Duration::from_secs(1),
    ) {
        tracing::warn!(error = %err, "seek failed");
    }
}

fn retry_blocked(
    consumer: &BaseConsumer<InputContext>,
    input: &mut Input,
    blocked: &mut Vec<Blocked>,
) {
    let now = Instant::now();
    let mut i = 0;
    while i < blocked.len() {
        let b = &mut blocked[i];
        if b.retry_at > now {
            i += 1;
            continue;
        }
        let id = b.schema_id;
        let result = input.runtime.block_on(input.registry.schema_by_id(id));
        let settled = match result {
            Ok(schema) => {
                metrics::SchemaFetched { schema_id: id }.emit(&input.metrics);
                input.decoders.learn(id, &schema);
                true
            }
            Err(err) if err.is_transient() => {
                b.backoff = (b.backoff * 2).min(RETRY_MAX);
                b.retry_at = Instant::now() + b.backoff;
                metrics::SchemaRegistryFailed {
                    schema_id: Some(id),
                    outcome: RegistryOutcome::Error,
                    error: &err,
                }
                .emit(&input.metrics);
                false
            }
            Err(err) => {
                metrics::SchemaRegistryFailed {
                    schema_id: Some(id),
                    outcome: RegistryOutcome::NotFound,
                    error: &err,
                }
                .emit(&input.metrics);
                input.decoders.learn_missing(id, err.to_string());
                true
            }
        };
        if settled {
            let b = blocked.swap_remove(i);
            if let Err(err) = consumer.resume(&single(&b.topic, b.partition)) {
                tracing::warn!(error = %err, "resume failed");
            }
        } else {
            i += 1;
        }
    }
    if blocked.is_empty() {
        input.health.set_ok(Condition::SchemaRegistry);
    }
}

/// Totals already added to the metrics, so each refresh adds only the difference.
#[derive(Default)]
struct Totals {
    expired_open: u64,
    expired_held: u64,
    measured: u64,
    reported: u64,
}

impl Totals {
    fn add_deltas(&mut self, metrics: &Metrics, c: &Counters) {
        let delta = |last: &mut u64, now: u64| now.saturating_sub(std::mem::replace(last, now));
        metrics::OrdersExpired {
            kind: ExpiryKind::OpenOrder,
            count: delta(&mut self.expired_open, c.expired_open_total),
        }
        .emit(metrics);
        metrics::OrdersExpired {
            kind: ExpiryKind::HeldTerminal,
            count: delta(&mut self.expired_held, c.expired_held_total),
        }
        .emit(metrics);
        metrics::ObservationsRecorded {
            source: ObservationSource::Measured,
            count: delta(&mut self.measured, c.observations_measured_total),
        }
        .emit(metrics);
        metrics::ObservationsRecorded {
            source: ObservationSource::Reported,
            count: delta(&mut self.reported, c.observations_reported_total),
        }
        .emit(metrics);
    }
}

/// Publishes changed answers and the state's gauges to the metrics. The event
/// counters go first, so whoever sees an answer sees counts that include its records.
fn refresh(
    input: &mut Input,
    dirty: &mut Vec<StoreId>,
    totals: &mut Totals,
    counts: &mut EventCounts,
) {
    counts.flush(&input.metrics);
    dirty.clear();
    dirty.extend(input.state.take_dirty());
    for store in dirty.iter() {
        match input.state.answer(*store) {
            Some(answer) => {
                input.answers.publish(answer);
            }
            None => {
                input.answers.remove(*store);
            }
        }
    }
    let c = input.state.counters();
    metrics::StateSized {
        open_orders: c.open_orders,
        held_terminals: c.held_terminals,
    }
    .emit(&input.metrics);
    totals.add_deltas(&input.metrics, &c);
}

/// The metric outcome of one applied event.
fn event_outcome(outcome: Outcome) -> EventOutcome {
    match outcome {
        Outcome::Opened
        | Outcome::Observed(_)
        | Outcome::Corrected
        | Outcome::Cancelled
        | Outcome::Resolved => EventOutcome::Applied,
        Outcome::HeldCompletion | Outcome::HeldCancellation => EventOutcome::Held,
        Outcome::Duplicate | Outcome::Conflict => EventOutcome::Duplicate,
        Outcome::Expired => EventOutcome::Late,
        Outcome::Ignored(_) => EventOutcome::Ignored,
    }
}
