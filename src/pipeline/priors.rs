//! Priors: the latest value per store already on the wait-times topic when the service starts
//! (in the workshop, a "stale ML model" seeded by hand with values only and no key). They stand
//! for a store until it has a live observation.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use crate::domain::StoreId;
use crate::pipeline::Error;
use crate::wire::{DecodeError, Decoders, Registry};

/// Reads the topic from the beginning to the end offsets seen now; the last valid value per
/// store wins. Records that cannot be decoded are skipped and counted (they are our own output
/// or a hand-seeded value, not input to dead-letter).
pub fn load(
    config: &ClientConfig,
    topic: &str,
    registry: &Registry,
    runtime: &tokio::runtime::Handle,
    deadline: Duration,
) -> Result<Priors, Error> {
    let consumer: BaseConsumer<QuietEof> =
        config.create_with_context(QuietEof).map_err(Error::Kafka)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(Error::Kafka)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut priors = Priors::default();
    if partitions.is_empty() {
        tracing::warn!(
            topic,
            "the wait-times topic does not exist (yet): no priors"
        );
        return Ok(priors);
    }
    let mut tpl = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for p in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, *p, Duration::from_secs(10))
            .map_err(Error::Kafka)?;
        if high > 0 {
            remaining.insert(*p, high);
        }
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(Error::Kafka)?;
    }
    consumer.assign(&tpl).map_err(Error::Kafka)?;
    let mut decoders = Decoders::new();
    let until = Instant::now() + deadline;
    while !remaining.is_empty() {
        if Instant::now() > until {
            return Err(Error::Priors(format!(
                "timed out reading {topic}: {} partitions not read to their end",
                remaining.len()
            )));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                remaining.remove(&p);
            }
            Some(Err(err)) => return Err(Error::Kafka(err)),
            Some(Ok(msg)) => {
                if remaining
                    .get(&msg.partition())
                    .is_some_and(|end| msg.offset() + 1 >= *end)
                {
                    remaining.remove(&msg.partition());
                }
                let Some(payload) = msg.payload() else {
                    continue;
                };
                let decoded = match decoders.decode_wait_times(payload) {
                    Err(DecodeError::UnknownSchemaId(id)) => {
                        match runtime.block_on(registry.schema_by_id(id)) {
                            Ok(schema) => decoders.learn(id, &schema),
                            Err(err) if err.is_transient() => {
                                return Err(Error::Priors(format!(
                                    "schema registry unavailable while reading priors: {err}"
                                )));
                            }
                            Err(err) => decoders.learn_missing(id, err.to_string()),
                        }
                        decoders.decode_wait_times(payload)
                    }
                    other => other,
                };
                match decoded {
                    Ok((store, minutes)) => {
                        priors.values.insert(store, minutes);
                    }
                    Err(err) => {
                        priors.skipped += 1;
                        tracing::warn!(topic, partition = msg.partition(), offset = msg.offset(),
                            error = %err, "skipping an unreadable wait-times record");
                    }
                }
            }
        }
    }
    tracing::info!(
        topic,
        stores = priors.values.len(),
        skipped = priors.skipped,
        "priors loaded"
    );
    Ok(priors)
}

#[derive(Debug, Default)]
pub struct Priors {
    pub values: HashMap<StoreId, i32>,
    pub skipped: u64,
}

/// The reader's context: end-of-partition is how it knows it is done, not an error to log.
struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::warn!(error = %error, reason, "kafka client error while reading priors");
        }
    }
}

impl ConsumerContext for QuietEof {}
