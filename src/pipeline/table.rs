//! The answers topic, both ways: the sharer writes this instance's own answers (full, as HTTP
//! serves them, keyed by store id) when they change; the reader follows the whole topic from
//! the beginning, without a group, into the global [`Table`] every instance serves from. The
//! topic is compacted, so a starting instance reads one record per store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::answers::Answers;
use crate::clock::now_ms;
use crate::domain::{StoreId, StoreWait};
use crate::health::{Condition, Health};
use crate::metrics::{self, Metrics};
use crate::pipeline::Error;
use crate::shutdown::Shutdown;
use crate::table::{Entry, Table};

/// How often changed own answers are shared: with the produce and fetch latency, about how far
/// behind the owner another instance's answer is.
pub const SHARE_EVERY: Duration = Duration::from_millis(200);
const BROKER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates the answers topic, compacted, if it does not exist yet (it is internal: nobody else
/// is expected to create it).
pub async fn ensure_topic(admin: &ClientConfig, topic: &str, partitions: i32) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> = admin.create()?;
    let new = NewTopic::new(topic, partitions.max(1), TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact");
    let opts = AdminOptions::new().operation_timeout(Some(BROKER_CALL_TIMEOUT));
    for result in admin.create_topics(&[new], &opts).await? {
        match result {
            Ok(_) => tracing::info!(topic, "answers topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::Kafka(KafkaError::AdminOp(code))).inspect_err(|_| {
                    tracing::error!(%topic, "cannot create the answers topic");
                });
            }
        }
    }
    Ok(())
}

/// Writes this instance's own answers to the answers topic when they change.
pub struct Sharer {
    pub producer: FutureProducer,
    pub topic: String,
    pub answers: Answers,
    pub table: Table,
    /// Nothing is shared while not caught up: a replaying owner's answers are behind the
    /// last known ones other instances serve.
    pub health: Arc<Health>,
    pub metrics: Metrics,
    /// What was last shared per store.
    pub shared: HashMap<StoreId, StoreWait>,
}

impl Sharer {
    pub async fn run(mut self, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(SHARE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.share_changes().await,
                _ = shutdown.triggered() => break,
            }
        }
        self.share_changes().await;
    }

    /// Shares every own answer with events that differs from what was last shared. Answers
    /// without events are priors, which every instance loads itself.
    pub async fn share_changes(&mut self) {
        let Some(since) = self.health.holding(Condition::CaughtUp) else {
            return;
        };
        let own = self.answers.sorted();
        // A rebalance between the two checks may have published answers of a replay.
        if self.health.holding(Condition::CaughtUp) != Some(since) {
            return;
        }
        // A store that left (its partition moved) is shared anew if it comes back.
        if own.len() < self.shared.len() {
            let present: std::collections::HashSet<StoreId> =
                own.iter().map(|w| w.store_id).collect();
            self.shared.retain(|s, _| present.contains(s));
        }
        let at = now_ms();
        let mut deliveries = Vec::new();
        for answer in own {
            if answer.updated_at_ms.is_none() || self.shared.get(&answer.store_id) == Some(&answer)
            {
                continue;
            }
            let entry = Entry {
                answer,
                computed_by: self.table.instance().to_owned(),
                computed_at_ms: at,
            };
            let store = entry.answer.store_id;
            let value = match serde_json::to_vec(&entry) {
                Ok(v) => v,
                Err(err) => {
                    metrics::AnswerShareFailed {
                        store_id: store,
                        error: &err,
                    }
                    .emit(&self.metrics);
                    continue;
                }
            };
            let key = store.to_string();
            match self
                .producer
                .send_result(FutureRecord::to(&self.topic).key(&key).payload(&value))
            {
                Ok(delivery) => deliveries.push((entry.answer, delivery)),
                Err((err, _)) => metrics::AnswerShareFailed {
                    store_id: store,
                    error: &err,
                }
                .emit(&self.metrics),
            }
        }
        let mut count = 0;
        for (answer, delivery) in deliveries {
            let store = answer.store_id;
            match delivery.await {
                Ok(Ok(_)) => {
                    count += 1;
                    self.shared.insert(store, answer);
                }
                Ok(Err((err, _))) => metrics::AnswerShareFailed {
                    store_id: store,
                    error: &err,
                }
                .emit(&self.metrics),
                Err(_) => metrics::AnswerShareFailed {
                    store_id: store,
                    error: &KafkaError::Canceled,
                }
                .emit(&self.metrics),
            }
        }
        if count > 0 {
            metrics::AnswersShared { count }.emit(&self.metrics);
        }
    }
}

/// Follows the answers topic from the beginning into `table` until shutdown; reports
/// [`Condition::AnswersTable`] once it reached the end offsets seen at start, so a starting
/// instance does not answer 404 for stores other instances own.
pub fn follow(
    config: &ClientConfig,
    topic: &str,
    table: &Table,
    health: &Health,
    metrics: &Metrics,
    shutdown: &Shutdown,
) -> Result<(), Error> {
    let consumer: BaseConsumer = config.create()?;
    // A topic created a moment ago may not be in every broker's metadata yet; a broker that is
    // unreachable right now is retried with backoff (readiness says why), never fatal: the
    // input consumer rides out the same outage.
    let mut partitions = Vec::new();
    let mut known_missing: Option<Instant> = None;
    let mut backoff = Duration::from_millis(200);
    while partitions.is_empty() && !shutdown.is_triggered() {
        match consumer.fetch_metadata(Some(topic), BROKER_CALL_TIMEOUT) {
            Ok(metadata) => {
                partitions = metadata
                    .topics()
                    .iter()
                    .filter(|t| t.name() == topic && t.error().is_none())
                    .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                    .collect();
                if partitions.is_empty()
                    && known_missing.get_or_insert_with(Instant::now).elapsed()
                        > BROKER_CALL_TIMEOUT
                {
                    return Err(Error::Priors(format!(
                        "the answers topic {topic} has no partitions"
                    )));
                }
            }
            Err(err) => {
                tracing::warn!(%topic, error = %err, "answers topic metadata failed; retrying");
                health.set_not_ready(
                    Condition::AnswersTable,
                    format!("cannot read the answers topic {topic} ({err}); retrying"),
                );
            }
        }
        if partitions.is_empty() {
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
    if partitions.is_empty() {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    // Partitions not read to their end yet: the end-of-partition event settles each one.
    let mut remaining: std::collections::HashSet<i32> = partitions.iter().copied().collect();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let started = Instant::now();
    let mut loaded = false;
    let mut read = 0u64;
    while !shutdown.is_triggered() {
        if !loaded && remaining.is_empty() {
            loaded = true;
            health.set_ok(Condition::AnswersTable);
            tracing::info!(
                stores = table.len(),
                elapsed = ?started.elapsed(),
                "answers table loaded"
            );
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {
                if read > 0 {
                    metrics::AnswersRead { count: read }.emit(metrics);
                    read = 0;
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                remaining.remove(&p);
            }
            Some(Err(err)) => tracing::warn!(%topic, error = %err, "answers topic read error"),
            Some(Ok(msg)) => {
                let store = msg
                    .key()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .and_then(|k| k.parse::<StoreId>().ok());
                match (store, msg.payload()) {
                    (Some(store), None) => table.remove(store),
                    (_, Some(value)) => match serde_json::from_slice::<Entry>(value) {
                        Ok(entry) => {
                            read += 1;
                            table.upsert(entry);
                        }
                        Err(err) => metrics::AnswerShareFailed {
                            store_id: store.unwrap_or_default(),
                            error: &err,
                        }
                        .emit(metrics),
                    },
                    (None, None) => {}
                }
            }
        }
    }
    Ok(())
}
