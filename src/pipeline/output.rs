//! The output edge: publishes each store's wait time to the wait-times topic when it changes,
//! at most once per emit interval per store. A change inside the interval goes out at the next
//! tick (never dropped), and nothing goes out before the replay has caught up, so a restart
//! publishes only what an uninterrupted run would have.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::answers::Answers;
use crate::domain::{EventTime, StoreId};
use crate::health::{Condition, Health};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
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
    pub answers: Answers,
    /// Nothing is sent while it does not report [`Condition::CaughtUp`].
    pub health: Arc<Health>,
    pub interval: Duration,
    pub metrics: Metrics,
    /// What the topic holds per store: the priors at start, then what we sent.
    pub published: HashMap<StoreId, i32>,
    /// Stores gained from another instance: what it last sent is unknown here, so each is
    /// sent once whatever `published` says.
    pub gained: std::sync::mpsc::Receiver<Vec<StoreId>>,
}

impl Emitter {
    /// Ticks until shutdown, then sends the last changes once more.
    pub async fn run(mut self, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.emit_changes().await,
                _ = shutdown.triggered() => break,
            }
        }
        self.emit_changes().await;
    }

    /// Sends every store whose published value differs from what the topic holds.
    pub async fn emit_changes(&mut self) {
        let Some(since) = self.health.holding(Condition::CaughtUp) else {
            return;
        };
        while let Ok(stores) = self.gained.try_recv() {
            for store in stores {
                self.published.remove(&store);
            }
        }
        let changes: Vec<(StoreId, i32, Option<EventTime>)> = self
            .answers
            .minutes()
            .into_iter()
            .filter(|(store, minutes, _)| self.published.get(store) != Some(minutes))
            .collect();
        // A rebalance between the two checks may have published answers of a replay.
        if self.health.holding(Condition::CaughtUp) != Some(since) {
            return;
        }
        if changes.is_empty() {
            return;
        }
        let mut deliveries = Vec::with_capacity(changes.len());
        for (store, minutes, updated_at_ms) in changes {
            let key = store.to_string();
            let value = wire::encode_wait_times(self.schema_id, store, minutes);
            let record = FutureRecord::to(&self.topic).key(&key).payload(&value);
            match self.producer.send_result(record) {
                Ok(delivery) => deliveries.push((store, minutes, updated_at_ms, delivery)),
                Err((err, _)) => {
                    crate::metrics::EmitFailed {
                        store_id: store,
                        error: &err,
                    }
                    .emit(&self.metrics);
                }
            }
        }
        for (store, minutes, updated_at_ms, delivery) in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {
                    crate::metrics::WaitPublished {
                        store_id: store,
                        wait_time_minutes: minutes,
                        updated_at_ms,
                        now_ms: crate::clock::now_ms(),
                    }
                    .emit(&self.metrics);
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
