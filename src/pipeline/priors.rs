//! Priors: the latest value per store already on the wait-times topic when the service starts
//! (in the workshop, a "stale ML model" seeded by hand with values only and no key). They stand
//! for a store until it has a live observation.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
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
    let consumer: BaseConsumer<ReaderContext> = config
        .create_with_context(ReaderContext::default())
        .map_err(Error::Kafka)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|err| explain(&consumer, err))?;
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
            .map_err(|err| explain(&consumer, err))?;
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
            Some(Err(err)) => return Err(consumer.context().explain(err)),
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

/// A failed broker call with the authentication failure behind it, if librdkafka reported one.
///
/// When the broker rejects our credentials, a metadata or offsets call only fails with "no broker
/// usable" (a transport error, misleading an operator into checking the network); the reason
/// itself waits as an error event on the consumer's queue, which polling hands to the context.
fn explain(consumer: &BaseConsumer<ReaderContext>, err: KafkaError) -> Error {
    // Nothing is assigned yet, so polling only serves events; a poll that serves a log line
    // returns nothing, so poll for a short while rather than until the first empty answer.
    let until = Instant::now() + Duration::from_millis(100);
    while Instant::now() < until && !consumer.context().saw_auth_failure() {
        let _ = consumer.poll(Duration::from_millis(10));
    }
    consumer.context().explain(err)
}

/// The reader's context: end-of-partition is how it knows it is done, not an error to log; an
/// authentication failure is remembered so the failure it causes can name it.
#[derive(Default)]
struct ReaderContext {
    auth_failure: Mutex<Option<String>>,
}

impl ReaderContext {
    fn saw_auth_failure(&self) -> bool {
        self.auth_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// `err` as the authentication failure seen before it, if any, else as it is.
    fn explain(&self, err: KafkaError) -> Error {
        let seen = self
            .auth_failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match seen {
            Some(reason) => Error::KafkaAuth(reason),
            None => Error::Kafka(err),
        }
    }
}

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_)) {
            return;
        }
        if is_auth_failure(&error) {
            *self
                .auth_failure
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(reason.to_owned());
        }
        tracing::warn!(error = %error, reason, "kafka client error while reading priors");
    }
}

impl ConsumerContext for ReaderContext {}

/// Whether librdkafka reports that the broker refused our login: it maps the broker's
/// SASL_AUTHENTICATION_FAILED, a mechanism the listener does not offer and a failed SCRAM
/// exchange all to `RD_KAFKA_RESP_ERR__AUTHENTICATION`.
fn is_auth_failure(error: &KafkaError) -> bool {
    error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::Authentication)
}

#[cfg(test)]
mod tests {
    use rdkafka::types::RDKafkaErrorCode as C;

    use super::*;

    /// What librdkafka reports when Kafka 4.1 turns down a PLAIN password.
    const SASL_REASON: &str = "sasl_ssl://127.0.0.1:9094/bootstrap: SASL authentication error: \
        Authentication failed: Invalid username or password (after 308ms in state AUTH_REQ)";

    #[test]
    fn a_rejected_login_explains_the_transport_error_it_causes() {
        let context = ReaderContext::default();
        context.error(KafkaError::Global(C::Authentication), SASL_REASON);
        let err = context.explain(KafkaError::MetadataFetch(C::BrokerTransportFailure));
        let shown = err.to_string();
        assert!(matches!(err, Error::KafkaAuth(_)), "{err:?}");
        assert!(
            shown.starts_with("kafka: authentication failed: "),
            "{shown}"
        );
        assert!(shown.contains("Invalid username or password"), "{shown}");
        assert!(!shown.contains("transport"), "{shown}");
    }

    #[test]
    fn other_errors_stay_as_they_are() {
        let context = ReaderContext::default();
        context.error(
            KafkaError::Global(C::BrokerTransportFailure),
            "connection refused",
        );
        context.error(KafkaError::PartitionEOF(0), "end of partition");
        let err = context.explain(KafkaError::MetadataFetch(C::BrokerTransportFailure));
        assert!(
            matches!(err, Error::Kafka(KafkaError::MetadataFetch(_))),
            "{err:?}"
        );
    }
}
