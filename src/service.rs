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
use crate::health::{Condition, Health};
use crate::http::{self, AppState};
use crate::metrics::{self, Metrics};
use crate::pipeline::{self, dlq, input, output, priors};
use crate::shutdown::Shutdown;
use crate::state::{State, StateConfig};
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
    shutdown: Shutdown,
}

/// What runs after start-up.
struct Running {
    input: std::thread::JoinHandle<State>,
    emitter: tokio::task::JoinHandle<()>,
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
    let schema_id = register_output_schema(config, health, &registry).await?;
    let priors = load_priors(config, health, metrics, &registry).await?;
    let failed = Arc::new(AtomicBool::new(false));
    let input = spawn_input(config, shared, &registry, &producer, &priors, &failed)?;
    let emitter = spawn_emitter(config, shared, &producer, schema_id, priors);
    Ok(Running {
        input,
        emitter,
        producer,
        failed,
    })
}

/// The output schema must be registered before anything is published; the registry may be
/// starting too, so transient failures are retried (readiness says why).
async fn register_output_schema(
    config: &Config,
    health: &Health,
    registry: &Registry,
) -> Result<u32> {
    let subject = format!("{}-value", config.topics.wait_times);
    let schema_id = retry(
        "registering the WaitTimes schema",
        health,
        Condition::SchemaRegistry,
        || async {
            registry
                .register(&subject, wire::WAIT_TIMES_SCHEMA)
                .await
                .map_err(pipeline::Error::Registry)
        },
    )
    .await?;
    tracing::info!(%subject, schema_id, "output schema registered");
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
fn spawn_input(
    config: &Config,
    shared: &Shared,
    registry: &Arc<Registry>,
    producer: &FutureProducer,
    priors: &priors::Priors,
    failed: &Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<State>> {
    let Shared {
        metrics,
        health,
        answers,
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
    consumer.subscribe(&[
        topics.orders.as_str(),
        topics.completed.as_str(),
        topics.cancelled.as_str(),
    ])?;
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
        metrics: metrics.clone(),
        health: health.clone(),
        shutdown: shutdown.clone(),
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
fn state_config(config: &Config) -> StateConfig {
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    StateConfig {
        window_ms: ms(config.state.window),
        match_ttl_ms: ms(config.state.match_ttl),
        open_ttl_ms: ms(config.state.open_ttl),
        estimator: config.state.estimator,
        ..StateConfig::default()
    }
}
