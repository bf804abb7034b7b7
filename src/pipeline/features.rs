//! The feature set's Kafka edge: the consumer thread applies each event through the pure
//! [`Features`] (which applies it to the state), and on each refresh publishes the windows
//! closed since, once caught up. Windows that close during the replay at start are not sent:
//! the run before published them when they closed, and the replay's state is still cold for
//! them (orders placed before the horizon are unknown to it). The state at the end of the
//! replay is an uninterrupted run's, so what closes after is the same record it would have
//! published, keyed by store and window start: a window sent twice across a restart is
//! idempotent on a compacted topic.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use crate::domain::{EventTime, OrderEvent, StoreId};
use crate::features::{FeatureConfig, Features};
use crate::metrics::{self, Metrics};
use crate::state::{Outcome, State};
use crate::wire;

/// The feature windows and where they go.
pub struct FeatureSet {
    windows: Features,
    producer: FutureProducer,
    topic: String,
    /// The registry id of the feature schema under `<topic>-value`.
    schema_id: u32,
    runtime: tokio::runtime::Handle,
    metrics: Metrics,
    buf: Vec<u8>,
}

impl FeatureSet {
    pub fn new(
        cfg: FeatureConfig,
        producer: FutureProducer,
        topic: String,
        schema_id: u32,
        runtime: tokio::runtime::Handle,
        metrics: Metrics,
    ) -> Self {
        FeatureSet {
            windows: Features::new(cfg),
            producer,
            topic,
            schema_id,
            runtime,
            metrics,
            buf: Vec::with_capacity(64),
        }
    }

    /// Applies one decoded event to the state and the windows; counts and logs it if it came
    /// after its window closed.
    #[inline]
    pub fn apply(&mut self, state: &mut State, event: &OrderEvent, at: EventTime) -> Outcome {
        let (outcome, late) = self.windows.apply(state, event, at);
        if let Some(late) = late {
            metrics::FeatureEventLate {
                store_id: late.store_id,
                at: late.at,
                window_start_ms: late.window_start_ms,
                stream_time_ms: late.stream_time_ms,
            }
            .emit(&self.metrics);
        }
        outcome
    }

    /// The store's partition moved to another instance, which replays it.
    pub fn remove_store(&mut self, store: StoreId) {
        self.windows.remove_store(store);
    }

    /// Sends the windows closed since the last call if `caught_up`, else counts them as
    /// replayed. Enqueues only (blocking briefly while the producer queue is full); delivery is
    /// confirmed in the background.
    pub fn publish(&mut self, caught_up: bool) {
        if !caught_up {
            let count = self.windows.drain_closed().count() as u64;
            metrics::FeatureWindowsReplayed { count }.emit(&self.metrics);
            return;
        }
        for w in self.windows.drain_closed() {
            self.buf.clear();
            wire::encode_features_into(&mut self.buf, self.schema_id, &w);
            let key = w.key();
            let mut record = FutureRecord::to(&self.topic).key(&key).payload(&self.buf);
            let (store_id, window_start_ms) = (w.store_id, w.window_start_ms);
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        let metrics = self.metrics.clone();
                        self.runtime.spawn(async move {
                            let err = match delivery.await {
                                Ok(Ok(_)) => {
                                    metrics::FeatureWindowPublished {
                                        store_id,
                                        window_start_ms,
                                    }
                                    .emit(&metrics);
                                    return;
                                }
                                Ok(Err((err, _))) => err,
                                Err(_) => KafkaError::Canceled,
                            };
                            metrics::FeatureWindowFailed {
                                store_id,
                                window_start_ms,
                                error: &err,
                            }
                            .emit(&metrics);
                        });
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((err, _)) => {
                        metrics::FeatureWindowFailed {
                            store_id,
                            window_start_ms,
                            error: &err,
                        }
                        .emit(&self.metrics);
                        break;
                    }
                }
            }
        }
    }
}
