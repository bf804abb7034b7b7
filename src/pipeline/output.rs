//! The output edge: publishes each store's wait time to the wait-times topic when it changes,
//! at most once per emit interval per store. A change inside the interval goes out at the next
//! tick (never dropped), and nothing goes out before the replay has caught up, so a restart
//! publishes only what an uninterrupted run would have.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;

use crate::domain::StoreId;
use crate::http::Snapshot;
use crate::metrics::Metrics;
use crate::wire;

/// Records go out without a timestamp, so librdkafka stamps them with the wall clock at send
/// time. Stream time would be the replay-stable choice, but it runs ahead of the wall clock
/// whenever the input does (a simulation faster than real time), and Kafka 4 refuses records
/// stamped more than `message.timestamp.after.max.ms` (1 h by default) ahead of its clock: the
/// output would stop. The value carries no time, and priors are read by offset, not timestamp,
/// so nothing downstream depends on the stamp being stream time.
pub struct Emitter {
    pub producer: FutureProducer,
    pub topic: String,
    /// The registry id of the WaitTimes schema under `<topic>-value`.
    pub schema_id: u32,
    pub snapshot: Snapshot,
    pub caught_up: Arc<AtomicBool>,
    pub interval: Duration,
    pub metrics: Metrics,
    /// What the topic holds per store: the priors at start, then what we sent.
    pub published: HashMap<StoreId, i32>,
}

impl Emitter {
    /// Ticks until `stop` turns true, then sends the last changes once more.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.emit_changes().await,
                _ = stop.changed() => break,
            }
        }
        self.emit_changes().await;
    }

    /// Sends every store whose published value differs from what the topic holds.
    pub async fn emit_changes(&mut self) {
        if !self.caught_up.load(Ordering::Acquire) {
            return;
        }
        let changes: Vec<(StoreId, i32)> = self
            .snapshot
            .iter()
            .filter_map(|e| {
                let minutes = e.value().wait_time_minutes?;
                (self.published.get(e.key()) != Some(&minutes)).then_some((*e.key(), minutes))
            })
            .collect();
        if changes.is_empty() {
            return;
        }
        let mut deliveries = Vec::with_capacity(changes.len());
        for (store, minutes) in changes {
            let key = store.to_string();
            let value = wire::encode_wait_times(self.schema_id, store, minutes);
            let record = FutureRecord::to(&self.topic).key(&key).payload(&value);
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push((store, minutes, delivery)),
                Err((err, _)) => {
                    crate::metrics::EmitFailed {
                        store_id: store,
                        error: &err,
                    }
                    .emit(&self.metrics);
                }
            }
        }
        for (store, minutes, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {
                    self.metrics.emitted(crate::metrics::EmitOutcome::Sent);
                    self.published.insert(store, minutes);
                }
                Ok(Err((err, _))) => crate::metrics::EmitFailed {
                    store_id: store,
                    error: &err,
                }
                .emit(&self.metrics),
                Err(_) => crate::metrics::EmitFailed {
                    store_id: store,
                    error: &rdkafka::error::KafkaError::Canceled,
                }
                .emit(&self.metrics),
            }
        }
    }
}
