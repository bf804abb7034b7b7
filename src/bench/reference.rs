//! The reference answers a peer's output is checked against: every store's final wait time,
//! recomputed in the bench process from the preloaded input alone.
//!
//! The three input topics are read from the beginning to their end, decoded, sorted by event
//! time (ties: orders, then completions, then cancellations), and applied to the service's pure
//! state machine (`crate::state`, no Kafka, no clocks): the SPEC's semantics, independent of the
//! peer under test and of the broker's interleaving of the topics. The answers are each store's
//! published minutes at the end of the input.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{Error, Result, Topics};
use crate::config::Config;
use crate::domain::InputKind;
use crate::state::State;
use crate::wire::{DecodeError, Decoders, Registry};

/// Every store's final published minutes, and what it took to get them.
#[derive(Debug, Clone, Default)]
pub struct Reference {
    pub answers: HashMap<i32, i32>,
    pub events: u64,
    pub undecodable: u64,
}

impl Reference {
    /// Stores with a reference answer whose `actual` minutes differ or are absent, sorted. A
    /// store without a live answer at the end (its window emptied) is not compared: the
    /// `WaitTimes` schema cannot retract a value, so the last one published stays on the topic.
    pub fn mismatches(&self, actual: &HashMap<i32, i32>) -> Vec<i32> {
        let mut bad: Vec<i32> = self
            .answers
            .iter()
            .filter(|(store, minutes)| actual.get(store) != Some(minutes))
            .map(|(store, _)| *store)
            .collect();
        bad.sort_unstable();
        bad
    }
}

/// Reads the preloaded input and recomputes every store's final answer.
pub(super) async fn compute(config: &Config, topics: &Topics, run_id: &str) -> Result<Reference> {
    let registry = Registry::new(config.registry_settings())?;
    let mut consumer_cfg = config.consumer_config();
    consumer_cfg
        .set("group.id", format!("{run_id}_reference"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true");
    let names: Vec<(InputKind, String)> = InputKind::ALL
        .into_iter()
        .zip(topics.inputs())
        .map(|(k, t)| (k, t.to_string()))
        .collect();
    let state_cfg = crate::service::state_config(config);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = consumer_cfg.create()?;
        let mut events = Vec::new();
        let mut decoders = Decoders::new();
        let mut undecodable = 0u64;
        for (kind, topic) in &names {
            read_topic(&consumer, topic, |payload, at| {
                let decoded = match decoders.decode(*kind, payload) {
                    Err(DecodeError::UnknownSchemaId(id)) => {
                        match handle.block_on(registry.schema_by_id(id)) {
                            Ok(schema) => decoders.learn(id, &schema),
                            Err(err) => decoders.learn_missing(id, err.to_string()),
                        }
                        decoders.decode(*kind, payload)
                    }
                    other => other,
                };
                match decoded {
                    Ok(ev) => events.push((at, *kind as u8, ev)),
                    Err(_) => undecodable += 1,
                }
            })?;
        }
        events.sort_by_key(|(at, rank, _)| (*at, *rank));
        let mut state = State::new(state_cfg);
        for (at, _, ev) in &events {
            state.apply(ev, *at);
        }
        let answers = state
            .stores()
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|s| Some((s, state.answer(s)?.wait_time_minutes?)))
            .collect();
        Ok(Reference {
            answers,
            events: events.len() as u64 + undecodable,
            undecodable,
        })
    })
    .await
    .map_err(|e| Error::Failed(format!("reference thread: {e}")))?
}

/// Every record of `topic` from the beginning to the end offsets seen at the start.
fn read_topic(
    consumer: &BaseConsumer,
    topic: &str,
    mut each: impl FnMut(&[u8], i64),
) -> Result<()> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    let mut remaining = HashMap::new();
    for p in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
        if high > low {
            remaining.insert(p.id(), high);
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    if remaining.is_empty() {
        return Ok(());
    }
    consumer.assign(&tpl)?;
    let mut last_progress = Instant::now();
    while !remaining.is_empty() {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(msg)) => {
                last_progress = Instant::now();
                if remaining
                    .get(&msg.partition())
                    .is_some_and(|end| msg.offset() + 1 >= *end)
                {
                    remaining.remove(&msg.partition());
                }
                let at = msg.timestamp().to_millis().unwrap_or(0);
                each(msg.payload().unwrap_or_default(), at);
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                remaining.remove(&p);
            }
            Some(Err(err)) => return Err(Error::Kafka(err)),
            None if last_progress.elapsed() > Duration::from_secs(60) => {
                return Err(Error::Failed(format!(
                    "reading {topic} for the reference stalled"
                )));
            }
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatches_name_wrong_and_missing_stores_not_extra_ones() {
        let reference = Reference {
            answers: HashMap::from([(1, 10), (2, 20), (3, 30)]),
            ..Reference::default()
        };
        assert!(reference.mismatches(&reference.answers.clone()).is_empty());
        // Store 2 is wrong, 3 missing; 4 has no reference answer (its window emptied).
        let actual = HashMap::from([(1, 10), (2, 21), (4, 40)]);
        assert_eq!(reference.mismatches(&actual), vec![2, 3]);
    }
}
