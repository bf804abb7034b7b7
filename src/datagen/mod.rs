//! The event generator: `waittimes datagen` feeds the three input topics, `waittimes seed-priors`
//! writes the workshop's stale wait times.
//!
//! Two modes. `workshop` replicates the three Datagen quickstart connectors the workshop runs
//! (incoherent ids and store ids, completions ahead of orders, random 0..max-interval pauses), so
//! the service can be exercised on the data it will really meet ([`workshop`]). `sim` runs a
//! coherent chain of stores in simulated time and can write the ground truth, so estimates can be
//! scored ([`sim`]).
//!
//! Records are Confluent-framed Avro written with the upstream schemas (registered under
//! `<topic>-value`, as Datagen does), keyed by store id as a decimal string. Generation runs on
//! plain threads (one per topic in workshop mode, one in sim mode) that hand records to one
//! librdkafka producer without waiting for each delivery; pacing is pure arithmetic
//! ([`pace`]) turned into sleeps.

pub mod pace;
pub mod record;
pub mod sim;
pub mod workshop;

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, FutureProducer, FutureRecord, Producer, ProducerContext,
    ThreadedProducer,
};
use rdkafka::util::Timeout;

use crate::config::{self, Config, EnvVars, Overrides, set_if_absent};
use crate::domain::{EventTime, InputKind};
use crate::wire::{self, Registry};

pub use pace::{RateLimiter, SimClock};
pub use record::{Record, TemplateError, Templates};
pub use sim::{Outcome, Sim, SimConfig, SimEvent, StoreProfile, Truth};
pub use workshop::TopicGenerator;

/// The workshop's "stale ML model" wait times (store id, minutes), as it seeds `waittimes_avro`.
pub const WORKSHOP_PRIORS: [(i32, i32); 10] = [
    (1, 15),
    (2, 20),
    (3, 7),
    (4, 23),
    (5, 25),
    (6, 20),
    (7, 13),
    (8, 10),
    (9, 2),
    (10, 6),
];

/// How long the final flush may take before undelivered records are reported.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest single sleep, so a stop request is noticed promptly.
const SLEEP_SLICE: Duration = Duration::from_millis(100);
/// Plain progress lines when stderr is not a terminal.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Where to produce and register: the configuration `waittimes run` reads, flags over it.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// The TOML configuration file of `waittimes run` (see `waittimes run --help`): its [kafka]
    /// and [schema_registry] keys, the `client.properties` / `schema.properties` files they name
    /// (registry CA and basic auth included) and its [topics]. WAITTIMES__SECTION__KEY variables
    /// override it, as for `run`; the flags below override both.
    #[arg(long, short, env = "WAITTIMES_CONFIG")]
    pub config: Option<PathBuf>,

    /// Kafka bootstrap servers (host:port, comma-separated); overrides kafka.bootstrap_servers
    /// (default 127.0.0.1:9092).
    #[arg(long)]
    pub bootstrap_servers: Option<String>,

    /// Schema Registry URL (comma-separated for several); overrides schema_registry.url
    /// (default http://127.0.0.1:8081).
    #[arg(long)]
    pub schema_registry: Option<String>,

    /// Schema Registry basic-auth user (API key); overrides schema_registry.username.
    #[arg(long)]
    pub schema_registry_username: Option<String>,

    /// Schema Registry basic-auth password (API secret); overrides schema_registry.password
    /// (WAITTIMES__SCHEMA_REGISTRY__PASSWORD keeps it off the command line).
    #[arg(long)]
    pub schema_registry_password: Option<String>,

    /// A librdkafka property (repeatable) over the config's Kafka properties and the producer's
    /// defaults, e.g. `-X security.protocol=SASL_SSL -X compression.codec=zstd`.
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,

    /// Create the topics that do not exist yet.
    #[arg(long)]
    pub create_topics: bool,

    /// Partitions of created topics.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..))]
    pub partitions: i32,

    /// Replication factor of created topics (-1: the broker's default).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub replication_factor: i32,
}

impl ConnectionArgs {
    /// The connection flags as config overrides.
    pub fn overrides(&self) -> Overrides {
        let mut o = Overrides::new();
        let flags = [
            (
                "kafka.bootstrap_servers",
                "--bootstrap-servers",
                &self.bootstrap_servers,
            ),
            (
                "schema_registry.url",
                "--schema-registry",
                &self.schema_registry,
            ),
            (
                "schema_registry.username",
                "--schema-registry-username",
                &self.schema_registry_username,
            ),
            (
                "schema_registry.password",
                "--schema-registry-password",
                &self.schema_registry_password,
            ),
        ];
        for (key, flag, value) in flags {
            if let Some(v) = value {
                o.set(key, flag, v.as_str());
            }
        }
        for (k, v) in &self.properties {
            o.kafka_property(k, &format!("-X {k}"), v.as_str());
        }
        o
    }

    /// Loads `--config` with the process environment over it and `flags` over both.
    pub fn load_config(&self, flags: &Overrides) -> Result<Config, config::Error> {
        self.load_config_with_env(EnvVars::process(), flags)
    }

    /// [`ConnectionArgs::load_config`] with an explicit environment (for tests).
    pub fn load_config_with_env(
        &self,
        env: EnvVars,
        flags: &Overrides,
    ) -> Result<Config, config::Error> {
        let mut all = self.overrides();
        all.extend(flags);
        Config::load_with_overrides(self.config.as_deref(), env, &all)
    }
}

/// The three input topics; each flag overrides its `topics.*` key.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct InputTopicArgs {
    /// Topic of placed orders (default: topics.orders, pizza_orders_avro).
    #[arg(long)]
    pub orders_topic: Option<String>,

    /// Topic of completed orders (default: topics.completed, pizza_orders_completed_avro).
    #[arg(long)]
    pub completed_topic: Option<String>,

    /// Topic of cancelled orders (default: topics.cancelled, pizza_orders_cancelled_avro).
    #[arg(long)]
    pub cancelled_topic: Option<String>,
}

impl InputTopicArgs {
    fn overrides(&self) -> Overrides {
        let mut o = Overrides::new();
        let flags = [
            ("topics.orders", "--orders-topic", &self.orders_topic),
            (
                "topics.completed",
                "--completed-topic",
                &self.completed_topic,
            ),
            (
                "topics.cancelled",
                "--cancelled-topic",
                &self.cancelled_topic,
            ),
        ];
        for (key, flag, value) in flags {
            if let Some(v) = value {
                o.set(key, flag, v.as_str());
            }
        }
        o
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// A replica of the workshop's three Datagen connectors (incoherent data).
    Workshop,
    /// A coherent simulated chain in simulated time, with ground truth.
    Sim,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Workshop => "workshop",
            Mode::Sim => "sim",
        }
    }
}

/// `waittimes datagen`: produce order events to the three input topics.
#[derive(Debug, Clone, clap::Args)]
pub struct DatagenArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    #[command(flatten)]
    pub topics: InputTopicArgs,

    /// Generator: `workshop` (Datagen replica) or `sim` (coherent simulation).
    #[arg(long, value_enum, default_value_t = Mode::Workshop)]
    pub mode: Mode,

    /// Cap on events per second across the topics (0: no cap).
    #[arg(long, default_value_t = 0.0, value_parser = parse_non_negative)]
    pub rate: f64,

    /// Stop after this many events in total.
    #[arg(long)]
    pub count: Option<u64>,

    /// Stop after this long (e.g. `90s`, `10m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// Seed of every random draw; the same seed gives the same records (default: random,
    /// printed in the summary).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Workshop mode: each topic waits a random 0..this before each record, as Datagen's
    /// `max.interval` (0: no wait).
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub max_interval: Duration,

    /// Sim mode: number of stores (ids 1..=N).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub stores: u32,

    /// Sim mode: simulated start time, RFC 3339 (`2024-03-01T11:00:00Z`) or ms since the epoch.
    /// The profile's rushes are UTC hours. Records are stamped with simulated time, and Kafka
    /// refuses timestamps more than `message.timestamp.after.max.ms` (1 h by default) ahead of
    /// its clock. Default: a run bounded by --duration (speed × duration) or --count starts
    /// early enough to end by now; an unbounded one starts now, and at --speed above 1 needs
    /// topics that accept future timestamps (--create-topics creates them so).
    #[arg(long, value_parser = parse_start)]
    pub start: Option<EventTime>,

    /// Sim mode: simulated seconds per wall second (60: an hour a minute; 0: as fast as
    /// possible).
    #[arg(long, default_value_t = 60.0, value_parser = parse_non_negative)]
    pub speed: f64,

    /// Sim mode: write the ground truth of every ended order to this CSV file
    /// (store_id,store_order_id,placed_at_ms,outcome,ended_at_ms,wait_ms).
    #[arg(long)]
    pub truth: Option<PathBuf>,
}

/// `waittimes seed-priors`: write the workshop's stale wait times to the wait-times topic.
#[derive(Debug, Clone, clap::Args)]
pub struct SeedPriorsArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// The wait-times topic (default: topics.wait_times, waittimes_avro).
    #[arg(long)]
    pub wait_times_topic: Option<String>,
}

impl SeedPriorsArgs {
    fn overrides(&self) -> Overrides {
        let mut o = Overrides::new();
        if let Some(t) = &self.wait_times_topic {
            o.set("topics.wait_times", "--wait-times-topic", t.as_str());
        }
        o
    }

    /// The configuration with every flag applied.
    pub fn config(&self) -> Result<Config, config::Error> {
        self.connection.load_config(&self.overrides())
    }
}

impl DatagenArgs {
    /// The configuration with every flag applied.
    pub fn config(&self) -> Result<Config, config::Error> {
        self.connection.load_config(&self.topics.overrides())
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid arguments: {0}")]
    Args(String),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("kafka client: {0}")]
    Kafka(#[from] KafkaError),
    #[error("cannot create topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error(transparent)]
    Registry(#[from] wire::Error),
    #[error("cannot produce to {topic}: {error}")]
    Produce { topic: String, error: KafkaError },
    #[error("delivery to {topic} failed: {error} ({failed} record(s) not delivered)")]
    Delivery {
        topic: String,
        error: KafkaError,
        failed: u64,
    },
    #[error(
        "{topic} refused a record stamped {} ({} ahead of this machine's clock): the broker \
         takes timestamps at most `{TIMESTAMP_AFTER_MAX}` ahead of its clock (the topic's \
         config, else the broker's `log.{TIMESTAMP_AFTER_MAX}`, 1 h by default since Kafka \
         4.0). Either start the simulation in the past (an earlier --start, or none: a run \
         bounded by --duration or --count then ends by now), or raise \
         `{TIMESTAMP_AFTER_MAX}` on the topic (`waittimes datagen --create-topics` sets it on \
         the topics it creates for an unbounded run at --speed above 1)",
        format_ms(*timestamp_ms),
        humantime::format_duration(*ahead)
    )]
    FutureTimestamp {
        topic: String,
        timestamp_ms: EventTime,
        ahead: Duration,
    },
    #[error("invalid configuration: {0}")]
    Config(#[from] config::Error),
    #[error("{undelivered} record(s) still undelivered after {timeout:?}: {error}")]
    Flush {
        undelivered: u64,
        timeout: Duration,
        error: KafkaError,
    },
    #[error("cannot write the truth file {path}: {source}")]
    Truth {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generator thread failed: {0}")]
    Worker(String),
}

/// What a run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub mode: Mode,
    /// The seed used (pass it as `--seed` to repeat the run).
    pub seed: u64,
    /// Records delivered (acknowledged by the broker) per topic, orders/completed/cancelled.
    pub topics: Vec<(String, u64)>,
    /// From the first record to the end of the final flush.
    pub elapsed: Duration,
    /// Stopped by Ctrl-C rather than by `--count` / `--duration`.
    pub interrupted: bool,
    /// Rows written to `--truth`.
    pub truth_rows: Option<u64>,
}

impl Summary {
    pub fn events(&self) -> u64 {
        self.topics.iter().map(|(_, n)| n).sum()
    }

    pub fn events_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.events() as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "datagen {} (seed {}){}: {} events in {:.2}s, {:.0} events/s",
            self.mode.as_str(),
            self.seed,
            if self.interrupted {
                ", interrupted"
            } else {
                ""
            },
            self.events(),
            self.elapsed.as_secs_f64(),
            self.events_per_sec()
        )?;
        let width = self.topics.iter().map(|(t, _)| t.len()).max().unwrap_or(0);
        for (topic, n) in &self.topics {
            writeln!(f, "  {topic:<width$}  {n}")?;
        }
        if let Some(rows) = self.truth_rows {
            writeln!(f, "  truth rows  {rows}")?;
        }
        Ok(())
    }
}

/// Runs the generator until `--count` events, `--duration`, or Ctrl-C; flushes; summarises.
pub async fn run(args: DatagenArgs) -> Result<Summary, Error> {
    validate(&args)?;
    let config = args.config()?;
    config.log_warnings();
    run_with_config(&config, args).await
}

/// [`run`] with a loaded configuration: its connection and input topics are used, the
/// connection and topic flags in `args` are not.
pub async fn run_with_config(config: &Config, args: DatagenArgs) -> Result<Summary, Error> {
    validate(&args)?;
    let seed = args.seed.unwrap_or_else(rand::random);
    let templates = Arc::new(Templates::upstream()?);
    let topics = config.topics.inputs().map(str::to_owned);
    let start_ms = match (args.mode, args.start) {
        (Mode::Sim, None) => default_start(now_ms(), &args, seed, &templates),
        (_, start) => start.unwrap_or_else(now_ms),
    };
    if args.connection.create_topics {
        let mut topic_config = Vec::new();
        if runs_ahead_unbounded(&args) {
            tracing::info!(
                speed = args.speed,
                "an unbounded simulation runs ahead of the wall clock: the topics created now get \
                 {TIMESTAMP_AFTER_MAX}={}, so the broker accepts its future timestamps",
                i64::MAX
            );
            topic_config.push((TIMESTAMP_AFTER_MAX, i64::MAX.to_string()));
        }
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let c = &args.connection;
        create_topics(
            &config.admin_config(),
            &names,
            c.partitions,
            c.replication_factor,
            &topic_config,
        )
        .await?;
    }
    let registry = Registry::new(config.registry_settings())?;
    let config = producer_config(config);
    let mut schema_ids = [0u32; 3];
    for (i, kind) in InputKind::ALL.into_iter().enumerate() {
        let subject = format!("{}-value", topics[i]);
        schema_ids[i] = registry
            .register(&subject, wire::upstream_schema(kind))
            .await?;
    }
    let truth = match &args.truth {
        Some(path) => Some(TruthWriter::create(path.clone())?),
        None => None,
    };

    let shared = Arc::new(Shared::new(&args));
    let producer: ThreadedProducer<Deliveries> =
        config.create_with_context(Deliveries::new(shared.clone()))?;
    let out = Arc::new(Output {
        producer: producer.clone(),
        topics: topics.clone(),
        schema_ids,
    });

    let mut workers = Vec::new();
    match args.mode {
        Mode::Workshop => {
            // Each topic is its own connector: with `--count`, each makes its share.
            let shares = split(args.count, InputKind::ALL.len());
            for (kind, share) in InputKind::ALL.into_iter().zip(shares) {
                let generator =
                    TopicGenerator::new(kind, templates.clone(), workshop::topic_seed(seed, kind));
                let (shared, out, max) = (shared.clone(), out.clone(), args.max_interval);
                workers.push(tokio::task::spawn_blocking(move || {
                    workshop_worker(&shared, &out, generator, max, share).map(|()| None)
                }));
            }
        }
        Mode::Sim => {
            tracing::info!(
                start = %format_ms(start_ms),
                speed = args.speed,
                "simulated time starts"
            );
            let sim = Sim::new(
                SimConfig {
                    stores: args.stores,
                    start_ms,
                    templates,
                },
                seed,
            );
            let clock = SimClock::new(start_ms, args.speed);
            let (shared, out) = (shared.clone(), out.clone());
            workers.push(tokio::task::spawn_blocking(move || {
                sim_worker(&shared, &out, sim, clock, args.count, truth)
            }));
        }
    }

    let interrupt = {
        let shared = shared.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                shared.interrupted.store(true, Ordering::Relaxed);
                shared.stop.store(true, Ordering::Relaxed);
            }
        })
    };
    let (progress_stop, progress_stopped) = tokio::sync::oneshot::channel();
    let progress = tokio::spawn(progress(shared.clone(), topics.clone(), progress_stopped));

    let mut first_error = None;
    let mut truth_rows = None;
    for w in workers {
        let result = w
            .await
            .map_err(|e| Error::Worker(e.to_string()))
            .and_then(|r| r);
        match result {
            Ok(rows) => truth_rows = truth_rows.or(rows),
            Err(e) => {
                shared.stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
        }
    }
    interrupt.abort();
    let _ = progress_stop.send(());
    let _ = progress.await;

    drop(out);
    let flushed = tokio::task::spawn_blocking(move || {
        let r = producer.flush(Timeout::After(FLUSH_TIMEOUT));
        (r, producer.in_flight_count())
    })
    .await
    .map_err(|e| Error::Worker(e.to_string()))?;
    let elapsed = shared.start.elapsed();

    if let Some(e) = first_error {
        return Err(e);
    }
    if let Some((i, error, timestamp_ms)) = shared.take_delivery_error() {
        let failed = shared.failed.load(Ordering::Relaxed);
        if let Some(ts) = timestamp_ms
            && refused_for_its_timestamp(&error, ts, now_ms())
        {
            let ahead = u64::try_from(ts - now_ms()).unwrap_or(0);
            return Err(Error::FutureTimestamp {
                topic: topics[i].clone(),
                timestamp_ms: ts,
                // Whole seconds: the clock moved on since the refusal anyway.
                ahead: Duration::from_secs(ahead / 1000),
            });
        }
        return Err(Error::Delivery {
            topic: topics[i].clone(),
            error,
            failed,
        });
    }
    if let (Err(error), undelivered) = flushed {
        let undelivered = u64::try_from(undelivered).unwrap_or(0);
        return Err(Error::Flush {
            undelivered,
            timeout: FLUSH_TIMEOUT,
            error,
        });
    }
    Ok(Summary {
        mode: args.mode,
        seed,
        topics: topics
            .into_iter()
            .zip(&shared.delivered)
            .map(|(t, n)| (t, n.load(Ordering::Relaxed)))
            .collect(),
        elapsed,
        interrupted: shared.interrupted.load(Ordering::Relaxed),
        truth_rows,
    })
}

/// Writes [`WORKSHOP_PRIORS`] to the wait-times topic as the workshop does: values only (no
/// key), the workshop's `WaitTimes` schema registered under `<topic>-value`.
pub async fn seed_priors(args: SeedPriorsArgs) -> Result<(), Error> {
    let config = args.config()?;
    config.log_warnings();
    let topic = config.topics.wait_times.as_str();
    if args.connection.create_topics {
        let c = &args.connection;
        create_topics(
            &config.admin_config(),
            &[topic],
            c.partitions,
            c.replication_factor,
            &[],
        )
        .await?;
        // The service's other output: one record per store and window, keyed so that
        // compaction keeps the last of each.
        create_topics(
            &config.admin_config(),
            &[config.topics.features.as_str()],
            c.partitions,
            c.replication_factor,
            &[("cleanup.policy", "compact".to_owned())],
        )
        .await?;
    }
    let registry = Registry::new(config.registry_settings())?;
    let schema_id = registry
        .register(&format!("{topic}-value"), wire::WAIT_TIMES_SCHEMA)
        .await?;
    let mut producer_cfg = producer_config(&config);
    // Ten records: latency matters more than batching.
    producer_cfg.set("linger.ms", "0");
    let producer: FutureProducer = producer_cfg.create()?;
    let mut deliveries = Vec::with_capacity(WORKSHOP_PRIORS.len());
    for (store_id, minutes) in WORKSHOP_PRIORS {
        let value = wire::encode_wait_times(schema_id, store_id, minutes);
        let record = FutureRecord::<(), _>::to(topic)
            .payload(&value)
            .timestamp(now_ms());
        let delivery = producer
            .send_result(record)
            .map_err(|(error, _)| Error::Produce {
                topic: topic.to_string(),
                error,
            })?;
        deliveries.push(delivery);
    }
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((error, _))) => {
                return Err(Error::Delivery {
                    topic: topic.to_string(),
                    error,
                    failed: 1,
                });
            }
            Err(_) => {
                let error = KafkaError::Canceled;
                return Err(Error::Delivery {
                    topic: topic.to_string(),
                    error,
                    failed: 1,
                });
            }
        }
    }
    Ok(())
}

fn validate(args: &DatagenArgs) -> Result<(), Error> {
    let bad = |m: &str| Err(Error::Args(m.to_string()));
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        return bad("--rate must be a number ≥ 0 (0: no cap)");
    }
    if !(args.speed.is_finite() && args.speed >= 0.0) {
        return bad("--speed must be a number ≥ 0 (0: as fast as possible)");
    }
    if args.mode == Mode::Workshop && (args.truth.is_some() || args.start.is_some()) {
        return bad("--truth and --start apply to --mode sim only");
    }
    if args.count == Some(0) {
        return bad("--count must be at least 1");
    }
    Ok(())
}

/// The topic config (and, as `log.`-prefixed, the broker's) that bounds how far ahead of the
/// broker's clock a record's timestamp may be: 1 h by default since Kafka 4.0.
pub const TIMESTAMP_AFTER_MAX: &str = "message.timestamp.after.max.ms";

/// True for a simulation without `--duration` or `--count` whose clock outruns the wall
/// clock (`--speed` above 1, or 0 for as fast as possible): no start in the past keeps it
/// behind for ever, so the topics must accept future timestamps.
fn runs_ahead_unbounded(args: &DatagenArgs) -> bool {
    args.mode == Mode::Sim
        && args.duration.is_none()
        && args.count.is_none()
        && (args.speed > 1.0 || args.speed <= 0.0)
}

/// The simulated start when `--start` is not given: early enough that a bounded run ends at or
/// before `now`, so the broker never sees a timestamp from the future. `--duration` at a
/// positive speed bounds the run to `speed × duration` of simulated time; `--count` alone is
/// measured by generating the run once without sending (the span depends on the start, through
/// the daily profile, so the start is moved back until the run's last event is not after
/// `now`). An unbounded run starts now.
fn default_start(
    now: EventTime,
    args: &DatagenArgs,
    seed: u64,
    templates: &Arc<Templates>,
) -> EventTime {
    if let Some(d) = args.duration
        && args.speed > 0.0
    {
        let span = d.as_secs_f64() * args.speed * 1000.0;
        return now.saturating_sub(span.ceil() as i64);
    }
    let Some(count) = args.count else {
        return now;
    };
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    let last_event = |start_ms: EventTime| {
        let cfg = SimConfig {
            stores: args.stores,
            start_ms,
            templates: templates.clone(),
        };
        Sim::new(cfg, seed)
            .take(count)
            .last()
            .map_or(start_ms, |e| e.time_ms)
    };
    // Step back by the overshoot until a start ends by now, then bisect towards the latest
    // such start (to a few minutes), so the run ends close to now rather than hours before.
    let (mut late, mut start) = (now, now);
    let mut early = None;
    for _ in 0..16 {
        let over = last_event(start) - now;
        if over <= 0 {
            early = Some(start);
            break;
        }
        late = start;
        start -= over + 1000;
    }
    let Some(mut early) = early else {
        return start;
    };
    while late - early > 5 * 60_000 {
        let mid = early + (late - early) / 2;
        if last_event(mid) <= now {
            early = mid;
        } else {
            late = mid;
        }
    }
    early
}

/// The producer's settings: the config's Kafka properties (and `-X`), then throughput
/// defaults where those leave a property unset (large batches, a short linger, a deep local
/// queue).
fn producer_config(config: &Config) -> ClientConfig {
    let mut c = config.producer_config();
    if c.get("client.id") == Some(config::DEFAULT_CLIENT_ID) {
        c.set("client.id", "waittimes-datagen");
    }
    for (k, v) in [
        ("linger.ms", "10"),
        ("batch.num.messages", "100000"),
        ("batch.size", "1000000"),
        ("queue.buffering.max.messages", "1000000"),
        ("queue.buffering.max.kbytes", "1048576"),
        ("compression.codec", "lz4"),
        // A dead broker should fail the run in seconds, not librdkafka's default 5 minutes.
        ("message.timeout.ms", "30000"),
    ] {
        set_if_absent(&mut c, k, v);
    }
    c
}

/// Creates those of `topics` that do not exist yet, with `topic_config` (existing ones are left
/// as they are). The one topic creation of the crate: `datagen`, `seed-priors` and the bench.
pub(crate) async fn create_topics(
    admin: &ClientConfig,
    topics: &[&str],
    partitions: i32,
    replication_factor: i32,
    topic_config: &[(&str, String)],
) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> = admin.create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            topic_config.iter().fold(
                NewTopic::new(t, partitions, TopicReplication::Fixed(replication_factor)),
                |topic, (k, v)| topic.set(k, v),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&new, &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::CreateTopic {
                    topic,
                    reason: code.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// State the generator threads, the delivery callback and the progress task share.
struct Shared {
    start: Instant,
    stop: AtomicBool,
    interrupted: AtomicBool,
    /// `--count`, for the progress bar.
    count: Option<u64>,
    deadline: Option<Duration>,
    limiter: Option<Mutex<RateLimiter>>,
    /// Handed to the producer, per topic.
    sent: [AtomicU64; 3],
    /// Acknowledged by the broker, per topic.
    delivered: [AtomicU64; 3],
    failed: AtomicU64,
    /// The first failed delivery: topic index, error, the record's timestamp.
    delivery_error: Mutex<Option<(usize, KafkaError, Option<EventTime>)>>,
}

impl Shared {
    fn new(args: &DatagenArgs) -> Shared {
        Shared {
            start: Instant::now(),
            stop: AtomicBool::new(false),
            interrupted: AtomicBool::new(false),
            count: args.count,
            deadline: args.duration,
            limiter: RateLimiter::new(args.rate).map(Mutex::new),
            sent: Default::default(),
            delivered: Default::default(),
            failed: AtomicU64::new(0),
            delivery_error: Mutex::new(None),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps until `due` (offset from the start); false if the run stops first or `due` lies
    /// beyond `--duration`.
    fn wait_until(&self, due: Duration) -> bool {
        if self.deadline.is_some_and(|d| due >= d) {
            self.stop.store(true, Ordering::Relaxed);
            return false;
        }
        if due.is_zero() && self.deadline.is_none() {
            return !self.stopped();
        }
        loop {
            if self.stopped() {
                return false;
            }
            let now = self.start.elapsed();
            if now >= due {
                if self.deadline.is_some_and(|d| now >= d) {
                    self.stop.store(true, Ordering::Relaxed);
                    return false;
                }
                return true;
            }
            std::thread::sleep((due - now).min(SLEEP_SLICE));
        }
    }

    fn sleep(&self, d: Duration) -> bool {
        if d.is_zero() && self.deadline.is_none() {
            return !self.stopped();
        }
        self.wait_until(self.start.elapsed() + d)
    }

    /// Waits for a slot under `--rate`.
    fn pace(&self) -> bool {
        let Some(limiter) = &self.limiter else {
            return true;
        };
        let now = self.start.elapsed();
        let at = limiter
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reserve(now);
        at <= now || self.wait_until(at)
    }

    fn take_delivery_error(&self) -> Option<(usize, KafkaError, Option<EventTime>)> {
        self.delivery_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Counts deliveries per topic; the first failure stops the run.
struct Deliveries {
    shared: Arc<Shared>,
}

impl Deliveries {
    fn new(shared: Arc<Shared>) -> Deliveries {
        Deliveries { shared }
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    /// The topic's index in [`InputKind::ALL`] and the record's timestamp: a failed delivery
    /// report carries no timestamp of its own, and a refused timestamp must be named.
    type DeliveryOpaque = Box<(usize, EventTime)>;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: Box<(usize, EventTime)>) {
        let (topic, timestamp_ms) = *opaque;
        let s = &self.shared;
        match result {
            Ok(_) => {
                if let Some(n) = s.delivered.get(topic) {
                    n.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err((error, _)) => {
                s.failed.fetch_add(1, Ordering::Relaxed);
                s.stop.store(true, Ordering::Relaxed);
                let mut first = s
                    .delivery_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                // A batch-mate's failure says nothing about why: keep the record's own.
                let batch_mate = |e: &KafkaError| {
                    e.rdkafka_error_code() == Some(RDKafkaErrorCode::InvalidDifferentRecord)
                };
                let keep = first
                    .as_ref()
                    .is_some_and(|(_, e, _)| !batch_mate(e) || batch_mate(error));
                if !keep {
                    *first = Some((topic, error.clone(), Some(timestamp_ms)));
                }
            }
        }
    }
}

/// The producer and what a record needs to be framed and addressed.
struct Output {
    producer: ThreadedProducer<Deliveries>,
    topics: [String; 3],
    schema_ids: [u32; 3],
}

/// Per-thread buffers, reused for every record.
#[derive(Default)]
struct Scratch {
    value: Vec<u8>,
    key: String,
}

impl Output {
    /// Hands one record to the producer (not waiting for its delivery). A full local queue is
    /// waited out; the record is dropped only if the run stops meanwhile.
    fn send(
        &self,
        shared: &Shared,
        record: &Record,
        timestamp_ms: EventTime,
        scratch: &mut Scratch,
    ) -> Result<(), Error> {
        let i = index(record.kind());
        let topic = &self.topics[i];
        scratch.value.clear();
        record.write_framed(self.schema_ids[i], &mut scratch.value);
        record.write_key(&mut scratch.key);
        let mut rec = BaseRecord::with_opaque_to(topic, Box::new((i, timestamp_ms)))
            .key(scratch.key.as_str())
            .payload(scratch.value.as_slice())
            .timestamp(timestamp_ms);
        loop {
            match self.producer.send(rec) {
                Ok(()) => {
                    shared.sent[i].fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if shared.stopped() {
                        return Ok(());
                    }
                    rec = back;
                    self.producer.poll(Duration::from_millis(1));
                }
                Err((error, _)) => {
                    return Err(Error::Produce {
                        topic: topic.clone(),
                        error,
                    });
                }
            }
        }
    }
}

/// One workshop topic: pause 0..max_interval, then send the next record stamped with the send
/// time — the connector's loop.
fn workshop_worker(
    shared: &Shared,
    out: &Output,
    mut generator: TopicGenerator,
    max_interval: Duration,
    count: Option<u64>,
) -> Result<(), Error> {
    let mut scratch = Scratch::default();
    let mut left = count.unwrap_or(u64::MAX);
    while left > 0 {
        left -= 1;
        let delay = generator.next_delay(max_interval);
        if !(shared.sleep(delay) && shared.pace()) {
            break;
        }
        let record = generator.next_record();
        out.send(shared, &record, now_ms(), &mut scratch)?;
    }
    Ok(())
}

/// The simulation: each event goes when the simulated clock reaches it, stamped with its
/// simulated time; the truth row follows the event that ends an order.
fn sim_worker(
    shared: &Shared,
    out: &Output,
    sim: Sim,
    clock: SimClock,
    count: Option<u64>,
    mut truth: Option<TruthWriter>,
) -> Result<Option<u64>, Error> {
    let mut scratch = Scratch::default();
    let limit = usize::try_from(count.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
    for event in sim.take(limit) {
        if !(shared.wait_until(clock.due(event.time_ms)) && shared.pace()) {
            break;
        }
        out.send(shared, &event.record, event.time_ms, &mut scratch)?;
        if let (Some(w), Some(t)) = (truth.as_mut(), event.truth()) {
            w.write(&t)?;
        }
    }
    truth.map(TruthWriter::finish).transpose()
}

struct TruthWriter {
    path: PathBuf,
    out: BufWriter<File>,
    rows: u64,
}

impl TruthWriter {
    fn create(path: PathBuf) -> Result<TruthWriter, Error> {
        let file = File::create(&path).map_err(|source| Error::Truth {
            path: path.clone(),
            source,
        });
        let mut w = TruthWriter {
            out: BufWriter::new(file?),
            path,
            rows: 0,
        };
        let header = writeln!(w.out, "{}", Truth::CSV_HEADER);
        header.map_err(|source| Error::Truth {
            path: w.path.clone(),
            source,
        })?;
        Ok(w)
    }

    fn write(&mut self, t: &Truth) -> Result<(), Error> {
        self.rows += 1;
        writeln!(self.out, "{t}").map_err(|source| Error::Truth {
            path: self.path.clone(),
            source,
        })
    }

    fn finish(mut self) -> Result<u64, Error> {
        self.out.flush().map_err(|source| Error::Truth {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.rows)
    }
}

/// A progress bar on a terminal, a plain line every few seconds otherwise (logs, CI).
async fn progress(
    shared: Arc<Shared>,
    topics: [String; 3],
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let sent = |s: &Shared| {
        s.sent
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect::<Vec<_>>()
    };
    if std::io::stderr().is_terminal() {
        let bar = match shared.count {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let template = if shared.count.is_some() {
            "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} events, {msg}"
        } else {
            "{spinner} [{elapsed_precise}] {human_pos} events, {msg}"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut stopped => break,
            }
            let s = sent(&shared);
            let total: u64 = s.iter().sum();
            let rate = total as f64 / shared.start.elapsed().as_secs_f64().max(1e-3);
            bar.set_message(format!(
                "{rate:.0}/s (orders {}, completed {}, cancelled {})",
                s[0], s[1], s[2]
            ));
            bar.set_position(total);
        }
        bar.finish_and_clear();
    } else {
        let mut tick = tokio::time::interval(PLAIN_PROGRESS_EVERY);
        tick.tick().await;
        let mut last = (0u64, Instant::now());
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut stopped => break,
            }
            let s = sent(&shared);
            let total: u64 = s.iter().sum();
            let rate = (total - last.0) as f64 / last.1.elapsed().as_secs_f64().max(1e-3);
            last = (total, Instant::now());
            eprintln!(
                "datagen: {total} events sent ({} {}, {} {}, {} {}), {rate:.0} events/s",
                topics[0], s[0], topics[1], s[1], topics[2], s[2]
            );
        }
    }
}

/// `count` split into `n` near-equal shares (the first ones take the remainder).
fn split(count: Option<u64>, n: usize) -> Vec<Option<u64>> {
    let n64 = n.max(1) as u64;
    (0..n64)
        .map(|i| count.map(|c| c / n64 + u64::from(i < c % n64)))
        .collect()
}

/// The index of `kind` in [`InputKind::ALL`] (and in every per-topic array here).
fn index(kind: InputKind) -> usize {
    match kind {
        InputKind::Orders => 0,
        InputKind::Completed => 1,
        InputKind::Cancelled => 2,
    }
}

/// Whether a failed delivery was the broker refusing the record's timestamp. Kafka reports
/// INVALID_TIMESTAMP, but when it lists the refused records (Kafka 4.1 does) librdkafka hands
/// each one INVALID_RECORD; a future-stamped record refused as invalid is taken to be that.
fn refused_for_its_timestamp(error: &KafkaError, timestamp_ms: EventTime, now: EventTime) -> bool {
    match error {
        KafkaError::MessageProduction(RDKafkaErrorCode::InvalidTimestamp) => true,
        KafkaError::MessageProduction(RDKafkaErrorCode::InvalidRecord) => timestamp_ms > now,
        _ => false,
    }
}

/// `ms` since the epoch as RFC 3339 (`2024-03-01T11:00:00.000Z`).
fn format_ms(ms: EventTime) -> String {
    let t = u64::try_from(ms)
        .ok()
        .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)));
    match t {
        Some(t) => humantime::format_rfc3339_millis(t).to_string(),
        None => format!("{ms} ms since the epoch"),
    }
}

use crate::clock::now_ms;

fn parse_non_negative(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("expected a number ≥ 0, got {s:?}")),
    }
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// RFC 3339 (`2024-03-01T11:00:00Z`) or milliseconds since the epoch.
fn parse_start(s: &str) -> Result<EventTime, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("{s:?} is neither RFC 3339 nor ms since the epoch: {e}"))?;
    t.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| format!("{s:?} is before 1970"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: DatagenArgs,
    }

    fn parse(argv: &[&str]) -> Result<DatagenArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("datagen").chain(argv.iter().copied())).map(|c| c.args)
    }

    fn no_env() -> EnvVars {
        EnvVars::from_vars(Vec::<(String, String)>::new())
    }

    /// The config `args` would run with, in an empty environment.
    fn config_of(a: &DatagenArgs) -> Config {
        a.connection
            .load_config_with_env(no_env(), &a.topics.overrides())
            .unwrap()
    }

    #[test]
    fn defaults_are_the_workshops() {
        let a = parse(&[]).unwrap();
        assert_eq!(a.mode, Mode::Workshop);
        assert_eq!(
            config_of(&a).topics.inputs(),
            [
                "pizza_orders_avro",
                "pizza_orders_completed_avro",
                "pizza_orders_cancelled_avro"
            ]
        );
        assert_eq!(a.max_interval, Duration::from_millis(500));
        assert_eq!(
            (a.rate, a.count, a.duration, a.seed),
            (0.0, None, None, None)
        );
        assert_eq!((a.stores, a.speed, a.connection.partitions), (10, 60.0, 3));
        validate(&a).unwrap();
    }

    #[test]
    fn flags_parse() {
        let a = parse(&[
            "--mode",
            "sim",
            "--rate",
            "2500",
            "--count",
            "10",
            "--duration",
            "1m 30s",
            "--seed",
            "7",
            "--start",
            "2024-03-01T11:00:00Z",
            "--speed",
            "0",
            "--truth",
            "t.csv",
            "-X",
            "acks=1",
            "--property",
            "linger.ms=50",
        ])
        .unwrap();
        assert_eq!(a.mode, Mode::Sim);
        assert_eq!(a.duration, Some(Duration::from_secs(90)));
        assert_eq!(a.start, Some(1_709_290_800_000));
        assert_eq!(
            a.connection.properties,
            vec![
                ("acks".to_string(), "1".to_string()),
                ("linger.ms".to_string(), "50".to_string())
            ]
        );
        validate(&a).unwrap();
        let c = producer_config(&config_of(&a));
        assert_eq!(c.get("linger.ms"), Some("50"));
        assert_eq!(c.get("acks"), Some("1"));
        assert_eq!(c.get("compression.codec"), Some("lz4"));
        assert_eq!(c.get("client.id"), Some("waittimes-datagen"));
        assert_eq!(
            c.get("bootstrap.servers"),
            Some(config::DEFAULT_BOOTSTRAP_SERVERS)
        );
        assert_eq!(parse(&["--start", "1000"]).unwrap().start, Some(1000));
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(parse(&["--stores", "0"]).is_err());
        assert!(parse(&["--start", "yesterday"]).is_err());
        assert!(parse(&["-X", "novalue"]).is_err());
        assert!(parse(&["--partitions", "0"]).is_err());
        assert!(parse(&["--rate=-1"]).is_err());
        assert!(parse(&["--rate", "NaN"]).is_err());
        assert!(parse(&["--speed=-2"]).is_err());
        let refused =
            |argv: &[&str]| matches!(validate(&parse(argv).unwrap()), Err(Error::Args(_)));
        let mut built = parse(&[]).unwrap();
        built.rate = -1.0;
        assert!(matches!(validate(&built), Err(Error::Args(_))));
        built.rate = 0.0;
        built.speed = f64::NAN;
        assert!(matches!(validate(&built), Err(Error::Args(_))));
        assert!(refused(&["--count", "0"]));
        assert!(refused(&["--truth", "x.csv"]));
        assert!(refused(&["--mode", "workshop", "--start", "0"]));
    }

    /// `--config` gives the connection, the producer's tuning and the input topics; flags win.
    #[test]
    fn the_config_file_connects_and_flags_override_it() {
        let dir =
            std::env::temp_dir().join(format!("waittimes-datagen-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        std::fs::write(
            dir.join("client.properties"),
            "bootstrap.servers=file:9092\nsecurity.protocol=SASL_SSL\nsasl.mechanism=PLAIN\n\
             sasl.username=K\nsasl.password=S\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("schema.properties"),
            format!(
                "schema.registry.url=https://sr.example.com\nbasic.auth.credentials.source=USER_INFO\n\
                 basic.auth.user.info=SRKEY:SRSECRET\nschema.registry.ssl.ca.location={}\n",
                ca.display()
            ),
        )
        .unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[kafka]\nclient_properties = \"client.properties\"\n\
             [kafka.properties]\n\"linger.ms\" = 25\n\"compression.codec\" = \"zstd\"\n\
             [schema_registry]\nproperties_file = \"schema.properties\"\n\
             [topics]\norders = \"o_file\"\ncompleted = \"c_file\"\n",
        )
        .unwrap();
        let file = file.to_string_lossy();

        let a = parse(&["--config", &file]).unwrap();
        let config = config_of(&a);
        let c = producer_config(&config);
        assert_eq!(c.get("bootstrap.servers"), Some("file:9092"));
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("sasl.password"), Some("S"));
        assert_eq!(c.get("linger.ms"), Some("25"), "the file over the default");
        assert_eq!(c.get("compression.codec"), Some("zstd"));
        assert_eq!(c.get("batch.num.messages"), Some("100000"), "default kept");
        assert_eq!(
            config.topics.inputs(),
            ["o_file", "c_file", "pizza_orders_cancelled_avro"]
        );
        let sr = config.registry_settings();
        assert_eq!(sr.urls, vec!["https://sr.example.com"]);
        assert_eq!(sr.basic_auth, Some(("SRKEY".into(), "SRSECRET".into())));
        assert_eq!(sr.ca_location.as_deref(), Some(ca.as_path()));

        let a = parse(&[
            "--config",
            &file,
            "--bootstrap-servers",
            "flag:9092",
            "-X",
            "linger.ms=50",
            "--completed-topic",
            "c_flag",
            "--schema-registry",
            "https://other.example.com",
            "--schema-registry-username",
            "U",
        ])
        .unwrap();
        let config = config_of(&a);
        let c = producer_config(&config);
        assert_eq!(c.get("bootstrap.servers"), Some("flag:9092"));
        assert_eq!(c.get("linger.ms"), Some("50"));
        assert_eq!(
            c.get("sasl.username"),
            Some("K"),
            "the file still holds SASL"
        );
        assert_eq!(config.topics.inputs()[..2], ["o_file", "c_flag"]);
        let sr = config.registry_settings();
        assert_eq!(sr.urls, vec!["https://other.example.com"]);
        assert_eq!(sr.basic_auth.map(|(u, _)| u), Some("U".into()));

        // Bad values fail before anything connects, naming the key and the flag.
        let a = parse(&["--config", &file, "-X", "linger.ms=soon"]).unwrap();
        let e = a
            .connection
            .load_config_with_env(no_env(), &a.topics.overrides())
            .unwrap_err()
            .to_string();
        assert!(e.contains("linger.ms") && e.contains("-X linger.ms"), "{e}");
        let a = parse(&["--config", "/nonexistent/c.toml"]).unwrap();
        assert!(
            a.connection
                .load_config_with_env(no_env(), &Overrides::new())
                .is_err()
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn seed_priors_takes_the_output_topic_from_the_config() {
        #[derive(Debug, Parser)]
        struct SeedCli {
            #[command(flatten)]
            args: SeedPriorsArgs,
        }
        let parse = |argv: &[&str]| {
            SeedCli::try_parse_from(std::iter::once("seed-priors").chain(argv.iter().copied()))
                .unwrap()
                .args
        };
        let topic = |a: &SeedPriorsArgs| {
            let config = a.connection.load_config_with_env(no_env(), &a.overrides());
            config.unwrap().topics.wait_times
        };
        assert_eq!(topic(&parse(&[])), "waittimes_avro");
        assert_eq!(topic(&parse(&["--wait-times-topic", "w"])), "w");
    }

    /// A bounded run ends at or before now; only an unbounded fast one needs future timestamps.
    #[test]
    fn the_default_start_keeps_simulated_time_behind_the_wall_clock() {
        let templates = Arc::new(Templates::upstream().unwrap());
        let now = 1_709_290_800_000; // 2024-03-01T11:00:00Z: the lunch rush follows.
        let a = parse(&["--mode", "sim", "--duration", "10m", "--speed", "60"]).unwrap();
        assert_eq!(default_start(now, &a, 1, &templates), now - 10 * 3_600_000);
        assert!(!runs_ahead_unbounded(&a));

        for speed in ["0", "60"] {
            let a = parse(&["--mode", "sim", "--count", "5000", "--speed", speed]).unwrap();
            let start = default_start(now, &a, 7, &templates);
            let cfg = SimConfig {
                stores: a.stores,
                start_ms: start,
                templates: templates.clone(),
            };
            let last = Sim::new(cfg, 7).take(5000).last().unwrap().time_ms;
            assert!(last <= now, "ends {} ms after now", last - now);
            // Not hours early but for the night's gaps (the profile's 3% hour is sparse).
            assert!(
                now - last < 4 * 3_600_000,
                "ends {} ms before now",
                now - last
            );
            assert!(!runs_ahead_unbounded(&a));
        }

        let a = parse(&["--mode", "sim", "--speed", "60"]).unwrap();
        assert_eq!(default_start(now, &a, 1, &templates), now);
        assert!(runs_ahead_unbounded(&a));
        assert!(runs_ahead_unbounded(
            &parse(&["--mode", "sim", "--speed", "0"]).unwrap()
        ));
        assert!(!runs_ahead_unbounded(
            &parse(&["--mode", "sim", "--speed", "1"]).unwrap()
        ));
        assert!(!runs_ahead_unbounded(&parse(&[]).unwrap()));
    }

    #[test]
    fn a_refused_future_record_is_told_apart() {
        let code = |c| KafkaError::MessageProduction(c);
        let now = 1_000_000;
        assert!(refused_for_its_timestamp(
            &code(RDKafkaErrorCode::InvalidTimestamp),
            now,
            now
        ));
        assert!(refused_for_its_timestamp(
            &code(RDKafkaErrorCode::InvalidRecord),
            now + 1,
            now
        ));
        assert!(!refused_for_its_timestamp(
            &code(RDKafkaErrorCode::InvalidRecord),
            now,
            now
        ));
        assert!(!refused_for_its_timestamp(
            &code(RDKafkaErrorCode::MessageSizeTooLarge),
            now + 1,
            now
        ));
    }

    #[test]
    fn a_refused_future_record_says_what_to_do() {
        let e = Error::FutureTimestamp {
            topic: "orders".into(),
            timestamp_ms: 1_709_298_000_000,
            ahead: Duration::from_secs(7200),
        }
        .to_string();
        for part in [
            "orders refused a record stamped 2024-03-01T13:00:00.000Z",
            "2h ahead",
            "message.timestamp.after.max.ms",
            "--start",
            "--create-topics",
        ] {
            assert!(e.contains(part), "{part:?} missing from {e}");
        }
    }

    #[test]
    fn summary_reads_well() {
        let s = Summary {
            mode: Mode::Sim,
            seed: 42,
            topics: vec![
                ("orders".into(), 600),
                ("completed_topic".into(), 300),
                ("x".into(), 100),
            ],
            elapsed: Duration::from_secs(2),
            interrupted: true,
            truth_rows: Some(400),
        };
        assert_eq!(s.events(), 1000);
        assert_eq!(s.events_per_sec(), 500.0);
        let text = s.to_string();
        assert!(
            text.starts_with(
                "datagen sim (seed 42), interrupted: 1000 events in 2.00s, 500 events/s"
            )
        );
        assert!(text.contains("  orders           600\n"), "{text}");
        assert!(text.contains("truth rows  400"));
    }

    #[test]
    fn encoded_records_decode_with_the_upstream_schemas() {
        let templates = Arc::new(Templates::upstream().unwrap());
        for kind in InputKind::ALL {
            let mut g = TopicGenerator::new(kind, templates.clone(), 5);
            let schema = apache_avro::Schema::parse_str(wire::upstream_schema(kind)).unwrap();
            for _ in 0..50 {
                let record = g.next_record();
                let mut buf = Vec::new();
                record.write_framed(77, &mut buf);
                let framed = wire::framing::parse(&buf).unwrap();
                assert_eq!(framed.schema_id, 77);
                let mut body = framed.body;
                let value = apache_avro::from_avro_datum(&schema, &mut body, None).unwrap();
                assert!(body.is_empty());
                let apache_avro::types::Value::Record(fields) = value else {
                    panic!()
                };
                let get = |name: &str| fields.iter().find(|(n, _)| n == name).unwrap().1.clone();
                use apache_avro::types::Value as V;
                assert_eq!(get("store_id"), V::Int(record.store_id()));
                assert_eq!(get("store_order_id"), V::Int(record.store_order_id()));
                assert_eq!(get("status"), V::String(record.status().to_string()));
                if let Record::Order(o) = &record {
                    let V::Array(lines) = get("order_lines") else {
                        panic!()
                    };
                    assert_eq!(lines.len(), o.order_lines.len());
                    let V::Record(first) = &lines[0] else {
                        panic!()
                    };
                    assert_eq!(first[1].1, V::String(o.order_lines[0].category.clone()));
                    assert_eq!(first[3].1, V::Double(o.order_lines[0].unit_price));
                }
                if let Record::Completed(c) = &record {
                    assert_eq!(get("rack_time_secs"), V::Int(c.rack_time_secs));
                    assert_eq!(
                        get("order_delivery_time_secs"),
                        V::Int(c.order_delivery_time_secs)
                    );
                }
            }
        }
    }

    #[test]
    fn count_is_shared_fairly_between_the_workshop_topics() {
        assert_eq!(split(Some(1000), 3), vec![Some(334), Some(333), Some(333)]);
        assert_eq!(split(Some(2), 3), vec![Some(1), Some(1), Some(0)]);
        assert_eq!(split(Some(9), 3), vec![Some(3); 3]);
        assert_eq!(split(None, 3), vec![None; 3]);
    }

    #[test]
    fn duration_stops_before_events_due_after_it() {
        let args = parse(&["--duration", "1s"]).unwrap();
        let shared = Shared::new(&args);
        assert!(!shared.wait_until(Duration::from_secs(2)));
        assert!(shared.stopped());
        assert!(!shared.sleep(Duration::ZERO));
    }
}
