//! Dead letters: a record that cannot be decoded or makes no sense goes to the dead-letter topic
//! with its original bytes and key, and headers naming where it came from and why. The partition
//! keeps flowing.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use crate::metrics::Metrics;
use crate::wire::DeadLetterReason;

/// Header names on every dead letter.
pub const HEADER_TOPIC: &str = "waittimes.source.topic";
pub const HEADER_PARTITION: &str = "waittimes.source.partition";
pub const HEADER_OFFSET: &str = "waittimes.source.offset";
pub const HEADER_TIMESTAMP: &str = "waittimes.source.timestamp";
pub const HEADER_ERROR: &str = "waittimes.error";
pub const HEADER_REASON: &str = "waittimes.error.reason";

/// One record to dead-letter.
pub struct DeadLetter<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// A small fixed set (a metric label).
    pub reason: DeadLetterReason,
    pub error: String,
}

/// Sends dead letters; delivery is confirmed in the background and failures are counted.
#[derive(Clone)]
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    runtime: tokio::runtime::Handle,
    metrics: Metrics,
}

impl DeadLetters {
    pub fn new(
        producer: FutureProducer,
        topic: String,
        runtime: tokio::runtime::Handle,
        metrics: Metrics,
    ) -> Self {
        Self {
            producer,
            topic,
            runtime,
            metrics,
        }
    }

    /// Enqueues the dead letter (blocking briefly while the producer queue is full).
    pub fn send(&self, letter: DeadLetter<'_>) {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let timestamp = letter.timestamp.map(|t| t.to_string());
        let mut headers = OwnedHeaders::new_with_capacity(6)
            .insert(Header {
                key: HEADER_TOPIC,
                value: Some(letter.topic),
            })
            .insert(Header {
                key: HEADER_PARTITION,
                value: Some(&partition),
            })
            .insert(Header {
                key: HEADER_OFFSET,
                value: Some(&offset),
            })
            .insert(Header {
                key: HEADER_ERROR,
                value: Some(&letter.error),
            })
            .insert(Header {
                key: HEADER_REASON,
                value: Some(letter.reason.as_str()),
            });
        if let Some(ts) = &timestamp {
            headers = headers.insert(Header {
                key: HEADER_TIMESTAMP,
                value: Some(ts),
            });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = letter.key {
            record = record.key(key);
        }
        if let Some(payload) = letter.payload {
            record = record.payload(payload);
        }
        if let Some(ts) = letter.timestamp {
            record = record.timestamp(ts);
        }
        crate::metrics::DeadLettered {
            topic: letter.topic,
            partition: letter.partition,
            offset: letter.offset,
            reason: letter.reason,
            error: &letter.error,
        }
        .emit(&self.metrics);
        let mut record = record;
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    let metrics = self.metrics.clone();
                    self.runtime.spawn(async move {
                        let err = match delivery.await {
                            Ok(Ok(_)) => return,
                            Ok(Err((err, _))) => err,
                            Err(_) => KafkaError::Canceled,
                        };
                        crate::metrics::DeadLetterFailed { error: &err }.emit(&metrics);
                    });
                    return;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((err, _)) => {
                    crate::metrics::DeadLetterFailed { error: &err }.emit(&self.metrics);
                    return;
                }
            }
        }
    }
}
