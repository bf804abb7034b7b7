//! Load: topics, the preload (the datagen library), the raw consumer, the steady producer with
//! its probes, and the open-orders load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};

use super::{BenchArgs, Error, PROBE_BASE, Result, Topics, now_ms};
use crate::config::Config;
use crate::datagen::{self, Sim, SimConfig, Templates};
use crate::domain::InputKind;
use crate::wire::{self, Registry, UpstreamRecord};

/// A header on every record of the steady load (and its probes), so the delivery-floor consumer
/// times those and nothing else, whatever else the topics hold: records of the preload carry
/// simulated timestamps, not wall-clock send times.
pub(super) const LOAD_HEADER: &str = "waittimes-bench-load";

fn load_headers() -> OwnedHeaders {
    OwnedHeaders::new_with_capacity(1).insert(Header {
        key: LOAD_HEADER,
        value: None::<&[u8]>,
    })
}

/// How long the raw consumer may see no record before it gives up.
const STALL: Duration = Duration::from_secs(60);

/// Step 1: the coherent simulation, as fast as the producer goes (`waittimes datagen --mode
/// sim --speed 0 --rate 0 --count N`), in process.
pub(super) async fn preload(
    args: &BenchArgs,
    config: &Config,
    topics: &Topics,
) -> Result<datagen::Summary> {
    let datagen_args = datagen::DatagenArgs {
        connection: datagen::ConnectionArgs {
            config: None,
            bootstrap_servers: None,
            schema_registry: None,
            schema_registry_username: None,
            schema_registry_password: None,
            properties: Vec::new(),
            create_topics: false,
            partitions: 3,
            replication_factor: -1,
        },
        topics: datagen::InputTopicArgs::default(),
        mode: datagen::Mode::Sim,
        rate: 0.0,
        count: Some(args.events),
        duration: None,
        seed: Some(20_240_301),
        max_interval: Duration::ZERO,
        stores: args.stores,
        start: None,
        speed: 0.0,
        truth: None,
    };
    let mut config = config.clone();
    config.topics.orders = topics.orders.clone();
    config.topics.completed = topics.completed.clone();
    config.topics.cancelled = topics.cancelled.clone();
    let summary = datagen::run_with_config(&config, datagen_args).await?;
    if summary.interrupted || summary.events() != args.events {
        return Err(Error::Failed(format!(
            "preload delivered {} of {} events",
            summary.events(),
            args.events
        )));
    }
    Ok(summary)
}

/// Step 2: polls `total` records of the input topics with `config` (a fresh group), decoding
/// nothing. Returns records per second from the first record to the last.
pub(super) async fn raw_consume(
    mut config: ClientConfig,
    topics: &Topics,
    total: u64,
    group: &str,
) -> Result<f64> {
    config.set("group.id", group);
    config.set("auto.offset.reset", "earliest");
    config.set("enable.auto.commit", "false");
    let names: Vec<String> = topics.inputs().iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.create()?;
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        consumer.subscribe(&refs)?;
        let mut n = 0u64;
        let mut bytes = 0usize;
        let mut first: Option<Instant> = None;
        let mut last_progress = Instant::now();
        while n < total {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(msg)) => {
                    if first.is_none() {
                        first = Some(Instant::now());
                    }
                    bytes += msg.payload_len();
                    n += 1;
                    last_progress = Instant::now();
                }
                Some(Err(KafkaError::PartitionEOF(_))) | None => {
                    if last_progress.elapsed() > STALL {
                        return Err(Error::Failed(format!(
                            "raw consumer stalled after {n} of {total} records"
                        )));
                    }
                }
                Some(Err(err)) => return Err(Error::Kafka(err)),
            }
        }
        std::hint::black_box(bytes);
        let secs = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(0.0);
        Ok(if secs > 0.0 {
            (total - 1) as f64 / secs
        } else {
            0.0
        })
    })
    .await
    .map_err(|e| Error::Failed(format!("raw consumer thread: {e}")))?
}

/// Schema ids of the three upstream schemas under the run's subjects.
pub(super) async fn schema_ids(config: &Config, topics: &Topics) -> Result<[u32; 3]> {
    let registry = Registry::new(config.registry_settings())?;
    let mut ids = [0u32; 3];
    for (i, kind) in InputKind::ALL.into_iter().enumerate() {
        let subject = format!("{}-value", topics.inputs()[i]);
        ids[i] = registry
            .register(&subject, wire::upstream_schema(kind))
            .await?;
    }
    Ok(ids)
}

fn producer_config(config: &Config, linger_ms: &str) -> ClientConfig {
    let mut c = config.producer_config();
    c.set("linger.ms", linger_ms)
        .set("batch.num.messages", "100000")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "30000");
    c
}

/// Sends one record, waiting out a full local queue.
fn send<C: ProducerContext>(
    producer: &ThreadedProducer<C>,
    mut rec: BaseRecord<'_, str, [u8], C::DeliveryOpaque>,
) -> Result<()> {
    loop {
        match producer.send(rec) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                rec = back;
                producer.poll(Duration::from_millis(1));
            }
            Err((err, _)) => return Err(Error::Kafka(err)),
        }
    }
}

/// Record timestamp → acknowledged by the broker, per delivered record (ms): the broker's and
/// the producer's share of the end-to-end latency.
#[derive(Default)]
pub(super) struct Acks {
    pub latencies_ms: Mutex<Vec<f64>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    /// The record's timestamp (ms since the epoch).
    type DeliveryOpaque = Box<i64>;

    fn delivery(&self, result: &DeliveryResult<'_>, ts: Box<i64>) {
        if result.is_ok() {
            let ms = (now_ms() - *ts).max(0) as f64;
            self.latencies_ms
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(ms);
        }
    }
}

/// A probe: a completion for a store never seen before, whose first wait time on the output
/// topic is timed against the record's timestamp.
#[derive(Debug, Clone, Copy)]
pub(super) struct Probe {
    pub store_id: i32,
    pub ts_ms: i64,
}

/// Steady load: the simulated mix at `rate` events/s for `duration`, stamped with the wall
/// clock at send time, plus one probe every `probe_every` (if any). Returns events sent.
pub(super) struct Steady {
    pub config: Config,
    pub topics: Topics,
    pub schema_ids: [u32; 3],
    pub stores: u32,
    pub rate: u64,
    pub linger_ms: u32,
    pub duration: Duration,
    pub probe_every: Option<Duration>,
    /// The next probe store id to use (shared across steady runs of one service).
    pub next_probe: i32,
    pub probes: Arc<Mutex<Vec<Probe>>>,
    pub stop: Arc<AtomicBool>,
}

impl Steady {
    /// The steady load `args` asks for, without probes, with a stop flag of its own.
    pub(super) fn new(
        args: &super::BenchArgs,
        config: &Config,
        topics: &Topics,
        schema_ids: [u32; 3],
        duration: Duration,
        next_probe: i32,
    ) -> Self {
        Self {
            config: config.clone(),
            topics: topics.clone(),
            schema_ids,
            stores: args.stores,
            rate: args.steady_rate,
            linger_ms: args.steady_linger_ms,
            duration,
            probe_every: None,
            next_probe,
            probes: Arc::new(Mutex::new(Vec::new())),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(super) fn run(self, acks: Arc<Acks>) -> Result<(u64, i32)> {
        let producer: ThreadedProducer<ArcAcks> =
            producer_config(&self.config, &self.linger_ms.to_string())
                .create_with_context(ArcAcks(acks))?;
        let templates = Arc::new(Templates::upstream().map_err(datagen::Error::from)?);
        let sim = Sim::new(
            SimConfig {
                stores: self.stores,
                start_ms: now_ms(),
                templates,
            },
            now_ms() as u64,
        );
        let names = self.topics.inputs();
        let mut value = Vec::with_capacity(256);
        let mut key = String::new();
        let start = Instant::now();
        let mut sent = 0u64;
        let mut next_probe_at = Duration::ZERO;
        let mut probe_id = self.next_probe;
        let mut events = sim.into_iter();
        while start.elapsed() < self.duration && !self.stop.load(Ordering::Relaxed) {
            let elapsed = start.elapsed();
            if let Some(every) = self.probe_every
                && elapsed >= next_probe_at
            {
                next_probe_at = elapsed + every;
                let ts = now_ms();
                value.clear();
                wire::PizzaOrderCompleted {
                    store_id: probe_id,
                    store_order_id: 1,
                    date: (ts / 86_400_000) as i32,
                    status: "completed",
                    rack_time_secs: 300,
                    order_delivery_time_secs: 900,
                }
                .write_framed(self.schema_ids[1], &mut value);
                let key = probe_id.to_string();
                let rec = BaseRecord::with_opaque_to(names[1], Box::new(ts))
                    .key(key.as_str())
                    .payload(value.as_slice())
                    .headers(load_headers())
                    .timestamp(ts);
                send(&producer, rec)?;
                self.probes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Probe {
                        store_id: probe_id,
                        ts_ms: ts,
                    });
                probe_id += 1;
            }
            let due = (elapsed.as_secs_f64() * self.rate as f64) as u64;
            if sent >= due {
                std::thread::sleep(Duration::from_micros(500));
                continue;
            }
            let ts = now_ms();
            let burst = (due - sent).min(1000);
            for _ in 0..burst {
                let Some(event) = events.next() else {
                    return Err(Error::Failed("the simulation ended".into()));
                };
                let i = index(event.record.kind());
                value.clear();
                event.record.write_framed(self.schema_ids[i], &mut value);
                event.record.write_key(&mut key);
                let rec = BaseRecord::with_opaque_to(names[i], Box::new(ts))
                    .key(key.as_str())
                    .payload(value.as_slice())
                    .headers(load_headers())
                    .timestamp(ts);
                send(&producer, rec)?;
                sent += 1;
            }
        }
        producer
            .flush(Duration::from_secs(30))
            .map_err(Error::Kafka)?;
        Ok((sent, probe_id))
    }
}

/// Produces orders `first..first + n` that stay open: store `1 + i % stores`, order ids
/// counting up per store.
pub(super) fn open_orders(
    config: &Config,
    topic: &str,
    schema_id: u32,
    stores: u32,
    first: u64,
    n: u64,
) -> Result<()> {
    let producer: ThreadedProducer<DefaultProducerContext> =
        producer_config(config, "10").create()?;
    let ts = now_ms();
    let date = (ts / 86_400_000) as i32;
    let line = [wire::OrderLine {
        product_id: 3,
        category: "pizza",
        quantity: 2,
        unit_price: 11.5,
        net_price: 23.0,
    }];
    let stores = u64::from(stores.max(1));
    let mut value = Vec::with_capacity(128);
    for i in first..first + n {
        let store_id = i32::try_from(1 + i % stores).unwrap_or(1);
        let store_order_id = i32::try_from(1 + i / stores).unwrap_or(i32::MAX);
        value.clear();
        wire::PizzaOrder {
            store_id,
            store_order_id,
            coupon_code: 0,
            date,
            status: "accepted",
            order_lines: &line,
        }
        .write_framed(schema_id, &mut value);
        let key = store_id.to_string();
        let rec = BaseRecord::to(topic)
            .key(key.as_str())
            .payload(value.as_slice())
            .timestamp(ts);
        send(&producer, rec)?;
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(Error::Kafka)?;
    Ok(())
}

/// [`Acks`] shared with the bench (a producer context must be owned).
pub(super) struct ArcAcks(pub Arc<Acks>);

impl ClientContext for ArcAcks {}

impl ProducerContext for ArcAcks {
    type DeliveryOpaque = Box<i64>;

    fn delivery(&self, result: &DeliveryResult<'_>, ts: Box<i64>) {
        self.0.delivery(result, ts);
    }
}

/// Probe store ids are above every simulated store.
pub(super) fn first_probe() -> i32 {
    PROBE_BASE
}

/// The topic's index in [`InputKind::ALL`] order (orders, completed, cancelled).
fn index(kind: InputKind) -> usize {
    match kind {
        InputKind::Orders => 0,
        InputKind::Completed => 1,
        InputKind::Cancelled => 2,
    }
}
