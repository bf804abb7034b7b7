//! Reads the service's output topic from the beginning while the bench runs: each store's last
//! wait time and when it arrived, and when each probe store first appeared.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::{PROBE_BASE, Result, now_ms};
use crate::config::Config;

#[derive(Default)]
pub(super) struct Seen {
    /// Store → (last wait time, when it arrived).
    pub last: HashMap<i32, (i32, Instant)>,
    /// Probe store → wall clock (ms since the epoch) of its first record.
    pub probes: HashMap<i32, i64>,
    pub records: u64,
    pub undecodable: u64,
    /// When the first record arrived.
    pub first: Option<Instant>,
}

pub(super) struct OutputWatcher {
    pub seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl OutputWatcher {
    pub(super) fn start(config: &Config, topic: &str, run_id: &str) -> Result<OutputWatcher> {
        let mut c = config.consumer_config();
        c.set("group.id", format!("{run_id}_watch"))
            .set("enable.auto.commit", "false")
            // Latency matters here, not throughput: answer fetches at once.
            .set("fetch.wait.max.ms", "5");
        let consumer: BaseConsumer = c.create()?;
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let mut tpl = TopicPartitionList::new();
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
            }
        }
        if tpl.count() == 0 {
            return Err(super::Error::Failed(format!(
                "the output topic {topic} has no partitions"
            )));
        }
        consumer.assign(&tpl)?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("bench-watch".into())
            .spawn(move || watch(consumer, s, st))
            .map_err(super::Error::io("starting the output watcher"))?;
        Ok(OutputWatcher {
            seen,
            stop,
            thread: Some(thread),
        })
    }

    pub(super) fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.seen.lock().unwrap_or_else(PoisonError::into_inner))
    }

    pub(super) fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(consumer: BaseConsumer, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(msg)) = consumer.poll(Duration::from_millis(50)) else {
            continue;
        };
        let at = Instant::now();
        let wall = now_ms();
        let mut s = seen.lock().unwrap_or_else(PoisonError::into_inner);
        s.records += 1;
        s.first.get_or_insert(at);
        match msg.payload().and_then(decode_wait_times) {
            Some((store, minutes)) => {
                s.last.insert(store, (minutes, at));
                if store >= PROBE_BASE {
                    s.probes.entry(store).or_insert(wall);
                }
            }
            None => s.undecodable += 1,
        }
    }
}

/// A Confluent-framed `WaitTimes` value as the service writes it: magic byte, schema id, then
/// `store_id` and `wait_time` as Avro ints.
fn decode_wait_times(payload: &[u8]) -> Option<(i32, i32)> {
    let body = payload.strip_prefix(&[0u8])?.get(4..)?;
    let (store, rest) = zigzag_int(body)?;
    let (minutes, _) = zigzag_int(rest)?;
    Some((store, minutes))
}

fn zigzag_int(bytes: &[u8]) -> Option<(i32, &[u8])> {
    let mut v: u64 = 0;
    for (i, b) in bytes.iter().enumerate().take(5) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let n = ((v >> 1) as i64) ^ -((v & 1) as i64);
            return Some((i32::try_from(n).ok()?, &bytes[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_the_service_encodes() {
        for (store, minutes) in [(1, 0), (7, 42), (PROBE_BASE + 12, 1234), (i32::MAX, -3)] {
            let framed = crate::wire::encode_wait_times(99, store, minutes);
            assert_eq!(decode_wait_times(&framed), Some((store, minutes)));
        }
        assert_eq!(decode_wait_times(&[1, 0, 0, 0, 1, 2, 4]), None);
        assert_eq!(decode_wait_times(&[0, 0, 0, 0, 1, 0x80]), None);
    }
}
