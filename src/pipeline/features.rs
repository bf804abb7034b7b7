//! The feature set's Kafka edge: the consumer thread applies each event through the pure
//! [`Features`] (which applies it to the state), and on each refresh publishes the windows
//! closed since. A window closed by a record the replay re-reads (one below the end offset its
//! partition had at assignment) is not sent: the run before published it when it closed, and
//! the replay's state is still cold for it (orders placed before the horizon are unknown to
//! it). Once a store's partition has caught up its state is an uninterrupted run's, so what
//! closes after is the record that run would have published, each once, keyed by store and
//! window start (a compacted topic keeps one per window whatever happens).

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
    /// The event being applied was re-read by the replay.
    replaying: bool,
    /// Windows closed by replayed events since the last publish.
    replayed: u64,
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
            replaying: false,
            replayed: 0,
        }
    }

    /// Whether the next records are re-read by the replay (their partition has not reached
    /// the end offset it had at assignment): the windows they close are not sent.
    #[inline]
    pub fn set_replaying(&mut self, replaying: bool) {
        self.replaying = replaying;
    }

    /// Applies one decoded event to the state and the windows; counts and logs it if it came
    /// after its window closed.
    #[inline]
    pub fn apply(&mut self, state: &mut State, event: &OrderEvent, at: EventTime) -> Outcome {
        let before = self.windows.closed_len();
        let (outcome, late) = self.windows.apply(state, event, at);
        if self.replaying {
            self.replayed += self.windows.discard_closed_after(before) as u64;
        }
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

    /// Sends the windows closed since the last call, and counts those the replay closed.
    /// Enqueues only (blocking briefly while the producer queue is full); delivery is confirmed
    /// in the background.
    pub fn publish(&mut self) {
        let count = std::mem::take(&mut self.replayed);
        metrics::FeatureWindowsReplayed { count }.emit(&self.metrics);
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
