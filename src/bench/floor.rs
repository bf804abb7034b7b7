//! Step 4's delivery floor: a plain consumer with the pipeline's input-consumer config (its own
//! group, no decoding, no state), assigned to the input topics from their current end, timing
//! each record from its timestamp to the moment `poll` hands it over. The broker's produce
//! path, its fetch path and librdkafka's together take this long before any service could see
//! the record, so the service's own share is its record → state latency above this floor.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::latency::Latencies;
use super::load::LOAD_HEADER;
use super::{Error, Result, Topics};

/// Metadata and watermark requests at start.
const TIMEOUT: Duration = Duration::from_secs(10);

/// What the floor consumer saw.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    /// Record timestamp → received, exact over every record (µs resolution, reported in ms).
    pub latencies: Option<Latencies>,
    /// Consumer errors polled (transient ones included); the consumer carries on after each.
    pub errors: u64,
    /// Records without the steady load's header, below a partition's assigned start, or at an
    /// offset already received; not timed.
    pub other: u64,
}

/// What the polling thread hands back.
#[derive(Default)]
struct Received {
    samples: Vec<u32>,
    errors: u64,
    other: u64,
}

/// The running floor consumer; [`FloorConsumer::stop`] ends it and returns its figures.
pub(super) struct FloorConsumer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Received>>,
}

impl FloorConsumer {
    /// Assigns every partition of the input topics at its high watermark (read now, so records
    /// produced after this returns are all received) and starts polling on its own thread.
    pub(super) fn start(
        mut config: ClientConfig,
        topics: &Topics,
        group: &str,
    ) -> Result<FloorConsumer> {
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        let consumer: BaseConsumer = config.create()?;
        let mut tpl = TopicPartitionList::new();
        let mut next = HashMap::new();
        for topic in topics.inputs() {
            let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
            for t in metadata.topics() {
                for p in t.partitions() {
                    let (_, high) = consumer.fetch_watermarks(topic, p.id(), TIMEOUT)?;
                    tpl.add_partition_offset(topic, p.id(), Offset::Offset(high))?;
                    next.insert((topic.to_string(), p.id()), high);
                }
            }
        }
        if tpl.count() == 0 {
            return Err(Error::Failed("the input topics have no partitions".into()));
        }
        consumer.assign(&tpl)?;
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-floor".into())
            .spawn(move || receive(consumer, next, st))
            .map_err(Error::io("starting the floor consumer"))?;
        Ok(FloorConsumer {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops polling and returns the percentiles of everything received.
    pub(super) fn stop(mut self) -> Floor {
        self.stop.store(true, Ordering::Relaxed);
        let mut r = self
            .thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default();
        Floor {
            latencies: micros_latencies(&mut r.samples),
            errors: r.errors,
            other: r.other,
        }
    }
}

impl Drop for FloorConsumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Polls until stopped: one sample (µs) per record of the steady load ([`LOAD_HEADER`]) at or
/// past its partition's next expected offset (`next`, from the assignment), counting the other
/// records and the errors polled.
fn receive(
    consumer: BaseConsumer,
    mut next: HashMap<(String, i32), i64>,
    stop: Arc<AtomicBool>,
) -> Received {
    let mut r = Received {
        samples: Vec::with_capacity(1 << 20),
        ..Received::default()
    };
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(50)) {
            Some(Ok(msg)) => {
                let now = now_us();
                let fresh = match next.get_mut(&(msg.topic().to_string(), msg.partition())) {
                    Some(n) if msg.offset() >= *n => {
                        *n = msg.offset() + 1;
                        true
                    }
                    _ => false,
                };
                let load = msg
                    .headers()
                    .is_some_and(|h| h.iter().any(|x| x.key == LOAD_HEADER));
                match msg.timestamp().to_millis() {
                    Some(ts) if fresh && load => r.samples.push(latency_us(ts, now)),
                    _ => r.other += 1,
                }
            }
            Some(Err(_)) => r.errors += 1,
            None => {}
        }
    }
    r
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Record timestamp (ms) → `now_us`, in µs, clamped to 0 and to about 71 minutes.
fn latency_us(ts_ms: i64, now_us: i64) -> u32 {
    let d = now_us.saturating_sub(ts_ms.saturating_mul(1000)).max(0);
    u32::try_from(d).unwrap_or(u32::MAX)
}

/// Exact nearest-rank percentiles of µs samples, in milliseconds.
pub(super) fn micros_latencies(v: &mut [u32]) -> Option<Latencies> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let ms = |us: u32| f64::from(us) / 1000.0;
    let at = |q: f64| ms(v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]);
    Some(Latencies {
        p50: at(0.5),
        p99: at(0.99),
        max: ms(v[v.len() - 1]),
        samples: v.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_in_milliseconds() {
        // 1..=1000 µs, shuffled: p50 is the 500th value, p99 the 990th.
        let mut v: Vec<u32> = (1..=1000).map(|i| (i * 7919) % 1000 + 1).collect();
        let l = micros_latencies(&mut v).expect("samples");
        assert_eq!((l.p50, l.p99, l.max, l.samples), (0.5, 0.99, 1.0, 1000));
        let mut one = vec![2500];
        let l = micros_latencies(&mut one).expect("one sample");
        assert_eq!((l.p50, l.p99, l.max), (2.5, 2.5, 2.5));
        assert!(micros_latencies(&mut []).is_none());
    }

    #[test]
    fn latency_is_clamped() {
        assert_eq!(latency_us(1_000, 1_000_250), 250);
        // A timestamp after the clock (another host's clock): 0, not a wrap-around.
        assert_eq!(latency_us(2_000, 1_000_000), 0);
        assert_eq!(latency_us(0, i64::MAX), u32::MAX);
        assert_eq!(latency_us(i64::MAX, 0), 0);
    }
}
