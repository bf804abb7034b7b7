//! Where the service is assembled and started: HTTP first (liveness answers at once), then the
//! output schema, the priors, the consumer thread and the emitter, each its own step; and the
//! bounded stop that undoes them in order. The Kafka edges themselves live in `pipeline`, which
//! knows nothing of HTTP.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, Producer};

use crate::answers::Answers;
use crate::config::Config;
use crate::domain::InputKind;
use crate::features::FeatureConfig;
use crate::health::{Condition, Health};
use crate::http::{self, AppState};
use crate::metrics::{self, Metrics};
use crate::pipeline::features::FeatureSet;
use crate::pipeline::{self, dlq, input, output, priors, table};
use crate::shutdown::Shutdown;
use crate::state::{State, StateConfig};
use crate::table::Table;
use crate::wire::{self, Decoders, Registry};

/// Why the service could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Pipeline(#[from] pipeline::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("http server: {0}")]
    Http(#[from] http::Error),
}

impl From<rdkafka::error::KafkaError> for Error {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        Error::Pipeline(pipeline::Error::Kafka(e))
    }
}

impl From<wire::Error> for Error {
    fn from(e: wire::Error) -> Self {
        Error::Pipeline(pipeline::Error::Registry(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long each step of stopping may take before its remaining work is abandoned.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the service until `signal` resolves; on shutdown stops consuming, publishes the last
/// changes, flushes the producer, commits, and closes the server, within a bounded time.
pub async fn run(config: Config, signal: impl Future<Output = ()>) -> Result<()> {
    let listen = config.http.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Bind {
            addr: listen,
            source,
        })?;
    run_with_listener(config, listener, signal).await
}

/// [`run`] on a listener the caller bound (tests and benchmarks use an ephemeral port).
pub async fn run_with_listener(
    config: Config,
    listener: tokio::net::TcpListener,
    signal: impl Future<Output = ()>,
) -> Result<()> {
    let shutdown = Shutdown::default();
    let health = Arc::new(Health::new());
    let answers = Answers::default();
    let topics = config.topics.clone();
    let metrics = Metrics::new(
        move |kind| match kind {
            InputKind::Orders => topics.orders.clone(),
            InputKind::Completed => topics.completed.clone(),
            InputKind::Cancelled => topics.cancelled.clone(),
        },
        answers.clone(),
        health.clone(),
    );
    let shared = Shared {
        metrics,
        health: health.clone(),
        answers,
        table: Table::new(instance_id(&config)),
        shutdown: shutdown.clone(),
    };
    let server = serve_http(&config, listener, &shared);

    let started = start(&config, &shared);
    tokio::pin!(started);
    tokio::pin!(signal);
    let running = tokio::select! {
        r = &mut started => Some(r?),
        _ = &mut signal => None,
    };
    if let Some(running) = &running {
        tokio::select! {
            _ = &mut signal => {}
            _ = shutdown.triggered() => {
                if running.failed.load(Ordering::Acquire) {
                    tracing::error!("the consumer thread stopped unexpectedly");
                }
            }
        }
    }

    tracing::info!("shutting down");
    health.set_shutting_down();
    shutdown.trigger();
    if let Some(running) = running {
        stop(running).await;
    }
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => return Err(Error::Http(err)),
        Ok(Err(_)) => tracing::error!("the http server task panicked"),
        Err(_) => tracing::warn!("the http server did not close in time"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// What every part of the running service shares.
struct Shared {
    metrics: Metrics,
    health: Arc<Health>,
    answers: Answers,
    table: Table,
    shutdown: Shutdown,
}

/// What runs after start-up.
struct Running {
    input: std::thread::JoinHandle<State>,
    emitter: tokio::task::JoinHandle<()>,
    sharer: tokio::task::JoinHandle<()>,
    follower: std::thread::JoinHandle<()>,
    producer: FutureProducer,
    /// Set by the consumer thread when it ended without being asked to.
    failed: Arc<AtomicBool>,
}

/// The server answers at once: liveness during start-up, readiness with its reasons.
fn serve_http(
    config: &Config,
    listener: tokio::net::TcpListener,
    shared: &Shared,
) -> tokio::task::JoinHandle<std::result::Result<(), http::Error>> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "http listening");
    }
    let limits = http::HttpLimits {
        request_timeout: config.http.request_timeout,
        max_streams: config.http.max_streams,
        stream_heartbeat: config.http.stream_heartbeat,
        stream_max_age: config.http.stream_max_age,
        ..Default::default()
    };
    let app = AppState::new(
        shared.answers.clone(),
        shared.health.clone(),
        shared.metrics.clone(),
    )
    .with_table(shared.table.clone())
    .with_limits(limits)
    .with_shutdown(shared.shutdown.clone());
    let shutdown = shared.shutdown.clone();
    tokio::spawn(http::serve(listener, app, async move {
        shutdown.triggered().await
    }))
}

async fn start(config: &Config, shared: &Shared) -> Result<Running> {
    let (metrics, health) = (&shared.metrics, &shared.health);
    let registry = Arc::new(Registry::new(config.registry_settings())?);
    let producer: FutureProducer = config.producer_config().create()?;
    let topics = &config.topics;
    let schema_id = register_schema(health, &registry, &topics.wait_times, WAIT_TIMES).await?;
    let features_id = register_schema(health, &registry, &topics.features, FEATURES).await?;
    let priors = load_priors(config, health, metrics, &registry).await?;
    let failed = Arc::new(AtomicBool::new(false));
    let features = FeatureSet::new(
        feature_config(config),
        producer.clone(),
        topics.features.clone(),
        features_id,
        tokio::runtime::Handle::current(),
        metrics.clone(),
    );
    let follower = start_table(config, shared, &failed).await?;
    let (gained_tx, gained_rx) = std::sync::mpsc::channel();
    let outlets = InputOutlets {
        features,
        gained: gained_tx,
    };
    let input = spawn_input(
        config, shared, &registry, &producer, &priors, outlets, &failed,
    )?;
    let emitter = spawn_emitter(config, shared, &producer, schema_id, priors, gained_rx);
    let sharer = tokio::spawn(
        table::Sharer {
            producer: producer.clone(),
            topic: config.topics.answers.clone(),
            answers: shared.answers.clone(),
            table: shared.table.clone(),
            health: shared.health.clone(),
            metrics: shared.metrics.clone(),
            shared: Default::default(),
        }
        .run(shared.shutdown.clone()),
    );
    Ok(Running {
        input,
        emitter,
        sharer,
        follower,
        producer,
        failed,
    })
}

/// This instance's name in its answers: the configured one, else host name and process id
/// (unique per process, readable in a container, where the host name is the container's).
fn instance_id(config: &Config) -> String {
    let configured = config.output.instance_id.trim();
    if !configured.is_empty() {
        return configured.to_owned();
    }
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "waittimes".to_owned());
    format!("{host}-{}", std::process::id())
}

/// The answers topic: created if missing (it is internal), then followed from the beginning
/// by a thread of its own into the global table.
async fn start_table(
    config: &Config,
    shared: &Shared,
    failed: &Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let topic = config.topics.answers.clone();
    shared.health.set_not_ready(
        Condition::AnswersTable,
        format!("creating or reading the answers topic {topic}"),
    );
    let admin = config.admin_config();
    retry(
        &format!("creating the answers topic {topic}"),
        &shared.health,
        Condition::AnswersTable,
        || table::ensure_topic(&admin, &topic, 1),
    )
    .await?;
    shared.health.set_not_ready(
        Condition::AnswersTable,
        format!("reading the answers topic {topic}"),
    );
    let cfg = pipeline::priors_consumer_config(config);
    let (table, health, metrics, shutdown) = (
        shared.table.clone(),
        shared.health.clone(),
        shared.metrics.clone(),
        shared.shutdown.clone(),
    );
    let failed = failed.clone();
    std::thread::Builder::new()
        .name("waittimes-table".into())
        .spawn(move || {
            if let Err(err) = table::follow(&cfg, &topic, &table, &health, &metrics, &shutdown) {
                tracing::error!(%topic, error = %err, "the answers topic reader stopped");
                health.set_not_ready(
                    Condition::AnswersTable,
                    format!("the answers topic reader stopped: {err}"),
                );
                if !shutdown.is_triggered() {
                    failed.store(true, Ordering::Release);
                    shutdown.trigger();
                }
            }
        })
        .map_err(|e| pipeline::Error::Thread(e.to_string()).into())
}

/// A value schema the service writes, and the subject it goes under.
struct OutputSchema {
    name: &'static str,
    text: &'static str,
}

const WAIT_TIMES: OutputSchema = OutputSchema {
    name: "WaitTimes",
    text: wire::WAIT_TIMES_SCHEMA,
};
const FEATURES: OutputSchema = OutputSchema {
    name: "WaitTimeFeatures",
    text: wire::FEATURES_SCHEMA,
};

/// An output schema must be registered (under `<topic>-value`) before anything is published;
/// the registry may be starting too, so transient failures are retried (readiness says why).
async fn register_schema(
    health: &Health,
    registry: &Registry,
    topic: &str,
    schema: OutputSchema,
) -> Result<u32> {
    let subject = format!("{topic}-value");
    let schema_id = retry(
        &format!("registering the {} schema", schema.name),
        health,
        Condition::SchemaRegistry,
        || async {
            registry
                .register(&subject, schema.text)
                .await
                .map_err(pipeline::Error::Registry)
        },
    )
    .await?;
    tracing::info!(%subject, schema_id, schema = schema.name, "output schema registered");
    Ok(schema_id)
}

/// The last value per store on the output topic: the workshop's stale model, or what this
/// service published before a restart.
async fn load_priors(
    config: &Config,
    health: &Health,
    metrics: &Metrics,
    registry: &Arc<Registry>,
) -> Result<priors::Priors> {
    let topic = &config.topics.wait_times;
    health.set_not_ready(Condition::Priors, format!("loading priors from {topic}"));
    let runtime = tokio::runtime::Handle::current();
    let started = Instant::now();
    // A broker that is unreachable or rejects our credentials at start is retried, not fatal:
    // credentials may still be propagating, and readiness carries the reason meanwhile.
    let priors = retry(
        &format!("loading priors from {topic}"),
        health,
        Condition::Priors,
        || {
            let cfg = pipeline::priors_consumer_config(config);
            let topic = topic.clone();
            let registry = registry.clone();
            let rt = runtime.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    priors::load(&cfg, &topic, &registry, &rt, Duration::from_secs(120))
                })
                .await
                .map_err(|e| pipeline::Error::Thread(e.to_string()))?
            }
        },
    )
    .await?;
    metrics::PriorsLoaded {
        stores: priors.values.len() as u64,
        elapsed: started.elapsed(),
    }
    .emit(metrics);
    Ok(priors)
}

/// The consumer thread: the single owner of the state.
/// What the consumer thread hands on besides the shared answers: the closed feature windows,
/// and the stores a rebalance gave it (which the emitter sends once).
struct InputOutlets {
    features: FeatureSet,
    gained: std::sync::mpsc::Sender<Vec<crate::domain::StoreId>>,
}

fn spawn_input(
    config: &Config,
    shared: &Shared,
    registry: &Arc<Registry>,
    producer: &FutureProducer,
    priors: &priors::Priors,
    outlets: InputOutlets,
    failed: &Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<State>> {
    let InputOutlets { features, gained } = outlets;
    let Shared {
        metrics,
        health,
        answers,
        table,
        shutdown,
    } = shared;
    let topics = &config.topics;
    let mut state = State::new(state_config(config));
    for (store, minutes) in &priors.values {
        state.set_prior(*store, *minutes);
    }
    let runtime = tokio::runtime::Handle::current();
    let context =
        input::InputContext::new(config.replay_horizon(), health.clone(), metrics.clone());
    let consumer: BaseConsumer<input::InputContext> =
        pipeline::input_consumer_config(config).create_with_context(context)?;
    let inputs = [
        topics.orders.as_str(),
        topics.completed.as_str(),
        topics.cancelled.as_str(),
    ];
    let partitions = input::check_co_partitioned(&consumer, &inputs)?;
    consumer.subscribe(&inputs)?;
    let dead_letters = dlq::DeadLetters::new(
        producer.clone(),
        topics.dead_letter.clone(),
        runtime.clone(),
        metrics.clone(),
    );
    let input = input::Input {
        topics: vec![
            (topics.orders.clone(), InputKind::Orders),
            (topics.completed.clone(), InputKind::Completed),
            (topics.cancelled.clone(), InputKind::Cancelled),
        ],
        state,
        decoders: Decoders::new(),
        registry: registry.clone(),
        runtime,
        dead_letters,
        answers: answers.clone(),
        features,
        metrics: metrics.clone(),
        health: health.clone(),
        shutdown: shutdown.clone(),
        table: table.clone(),
        gained,
        partitions,
    };
    let shutdown = shutdown.clone();
    let failed = failed.clone();
    std::thread::Builder::new()
        .name("waittimes-input".into())
        .spawn(move || {
            let state = input::run(consumer, input);
            if !shutdown.is_triggered() {
                failed.store(true, Ordering::Release);
                shutdown.trigger();
            }
            state
        })
        .map_err(|e| pipeline::Error::Thread(e.to_string()).into())
}

fn spawn_emitter(
    config: &Config,
    shared: &Shared,
    producer: &FutureProducer,
    schema_id: u32,
    priors: priors::Priors,
    gained: std::sync::mpsc::Receiver<Vec<crate::domain::StoreId>>,
) -> tokio::task::JoinHandle<()> {
    let emitter = output::Emitter {
        producer: producer.clone(),
        topic: config.topics.wait_times.clone(),
        schema_id,
        answers: shared.answers.clone(),
        health: shared.health.clone(),
        interval: config.output.emit_interval,
        metrics: shared.metrics.clone(),
        published: priors.values,
        gained,
    };
    tokio::spawn(emitter.run(shared.shutdown.clone()))
}

/// Stops what [`start`] started, each step bounded: the consumer thread (it commits), the
/// emitter (it sends the last changes), the producer's queue.
async fn stop(running: Running) {
    let join = tokio::task::spawn_blocking(move || running.input.join());
    match tokio::time::timeout(SHUTDOWN_GRACE, join).await {
        Ok(Ok(Ok(_state))) => {}
        Ok(Ok(Err(_))) | Ok(Err(_)) => tracing::error!("the consumer thread panicked"),
        Err(_) => tracing::warn!("the consumer thread did not stop in time"),
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, running.emitter)
        .await
        .is_err()
    {
        tracing::warn!("the emitter did not stop in time");
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, running.sharer)
        .await
        .is_err()
    {
        tracing::warn!("the answers sharer did not stop in time");
    }
    let follower = tokio::task::spawn_blocking(move || running.follower.join());
    if tokio::time::timeout(SHUTDOWN_GRACE, follower)
        .await
        .is_err()
    {
        tracing::warn!("the answers topic reader did not stop in time");
    }
    if let Err(err) = running.producer.flush(SHUTDOWN_GRACE) {
        tracing::warn!(error = %err, "producer flush incomplete");
    }
}

/// Retries `f` with exponential backoff while it fails transiently, reporting the failure in
/// readiness; a permanent failure (the registry refusing our schema, say) ends the start.
async fn retry<T, F, Fut>(what: &str, health: &Health, condition: Condition, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, pipeline::Error>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match f().await {
            Ok(v) => {
                health.set_ok(condition);
                return Ok(v);
            }
            Err(err) if err.is_transient() => {
                tracing::warn!(error = %err, retry_in = ?backoff, "{what} failed");
                health.set_not_ready(condition, format!("{what} failed: {err}"));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(err) => {
                tracing::error!(error = %err, "{what} failed permanently");
                health.set_not_ready(condition, format!("{what} failed: {err}"));
                return Err(err.into());
            }
        }
    }
}

/// The state's settings from the configuration (durations in milliseconds of stream time).
pub(crate) fn state_config(config: &Config) -> StateConfig {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    StateConfig {
        window_ms: ms(config.state.window),
        match_ttl_ms: ms(config.state.match_ttl),
        open_ttl_ms: ms(config.state.open_ttl),
        estimator: config.state.estimator,
        ..StateConfig::default()
    }
}

/// The feature windows' settings from the configuration (event-time milliseconds).
fn feature_config(config: &Config) -> FeatureConfig {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    FeatureConfig {
        window_ms: ms(config.features.window),
        grace_ms: ms(config.features.grace),
    }
}
