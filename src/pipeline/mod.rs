//! The edges around the pure state: Kafka in (replay, decode, dead letters), Kafka out (the
//! debounced emitter), and the wiring that starts and stops them with the HTTP server.

pub mod dlq;
pub mod input;
pub mod output;
pub mod priors;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::watch;

use crate::config::Config;
use crate::domain::InputKind;
use crate::health::{Condition, Health};
use crate::http::{self, AppState, Snapshot};
use crate::metrics::Metrics;
use crate::state::{State, StateConfig};
use crate::wire::{self, Decoders, Registry};

/// Errors at the pipeline boundary: what stops the service from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("schema registry: {0}")]
    Registry(#[from] wire::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("http server: {0}")]
    Http(#[from] http::Error),
    #[error("priors: {0}")]
    Priors(String),
    #[error("the consumer thread failed: {0}")]
    Thread(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How long shutdown may take before the remaining work is abandoned.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the service until `shutdown` resolves: HTTP first (liveness answers at once), then the
/// registry, priors, consumer thread and emitter; on shutdown stops consuming, publishes the
/// last changes, flushes the producer, commits, and closes the server, within a bounded time.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<()> {
    let listen = config.http.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Bind {
            addr: listen,
            source,
        })?;
    run_with_listener(config, listener, shutdown).await
}

/// [`run`] on a listener the caller bound (tests and benchmarks use an ephemeral port).
pub async fn run_with_listener(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let health = Arc::new(Health::new());
    let snapshot = Snapshot::default();
    let topics = config.topics.clone();
    let metrics = Metrics::new(
        move |kind| match kind {
            InputKind::Orders => topics.orders.clone(),
            InputKind::Completed => topics.completed.clone(),
            InputKind::Cancelled => topics.cancelled.clone(),
        },
        snapshot.clone(),
        health.clone(),
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "http listening");
    }
    let limits = http::HttpLimits {
        request_timeout: config.http.request_timeout,
        ..Default::default()
    };
    let app = AppState::new(snapshot.clone(), health.clone(), metrics.clone()).with_limits(limits);
    let mut http_stop = stop_rx.clone();
    let server = tokio::spawn(http::serve(listener, app, async move {
        let _ = http_stop.changed().await;
    }));

    let started = start(&config, &metrics, &health, &snapshot, stop_rx.clone());
    tokio::pin!(started);
    tokio::pin!(shutdown);
    let running = tokio::select! {
        r = &mut started => Some(r?),
        _ = &mut shutdown => None,
    };
    if let Some(running) = &running {
        tokio::select! {
            _ = &mut shutdown => {}
            _ = running.failed.notified() => {
                tracing::error!("the consumer thread stopped unexpectedly");
            }
        }
    }

    tracing::info!("shutting down");
    health.set_shutting_down();
    let _ = stop_tx.send(true);
    if let Some(running) = running {
        running.stop.store(true, Ordering::Relaxed);
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
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => return Err(Error::Http(err)),
        Ok(Err(_)) => tracing::error!("the http server task panicked"),
        Err(_) => tracing::warn!("the http server did not close in time"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// What runs after start-up.
struct Running {
    input: std::thread::JoinHandle<State>,
    emitter: tokio::task::JoinHandle<()>,
    producer: FutureProducer,
    stop: Arc<AtomicBool>,
    failed: Arc<tokio::sync::Notify>,
}

async fn start(
    config: &Config,
    metrics: &Metrics,
    health: &Arc<Health>,
    snapshot: &Snapshot,
    stop_rx: watch::Receiver<bool>,
) -> Result<Running> {
    let registry = Arc::new(Registry::new(config.registry_settings())?);
    let producer: FutureProducer = config.producer_config().create()?;
    let topics = &config.topics;

    // The output schema must be registered before anything is published; the registry may be
    // starting too, so retry with backoff (readiness says why).
    let subject = format!("{}-value", topics.wait_times);
    let schema_id = retry(
        "registering the WaitTimes schema",
        health,
        Condition::SchemaRegistry,
        || registry.register(&subject, wire::WAIT_TIMES_SCHEMA),
    )
    .await;
    tracing::info!(%subject, schema_id, "output schema registered");

    health.set_not_ready(
        Condition::Priors,
        format!("loading priors from {}", topics.wait_times),
    );
    let runtime = tokio::runtime::Handle::current();
    // A broker that is unreachable or rejects our credentials at start is retried, not fatal:
    // readiness carries the reason until it answers.
    let priors = retry(
        &format!("loading priors from {}", topics.wait_times),
        health,
        Condition::Priors,
        || {
            let cfg = priors_consumer_config(config);
            let topic = topics.wait_times.clone();
            let registry = registry.clone();
            let rt = runtime.clone();
            async move {
                tokio::task::spawn_blocking(move || {
                    priors::load(&cfg, &topic, &registry, &rt, Duration::from_secs(120))
                })
                .await
                .map_err(|e| Error::Thread(e.to_string()))?
            }
        },
    )
    .await;
    metrics.set_priors_loaded(priors.values.len() as u64);

    let mut state = State::new(state_config(config));
    for (store, minutes) in &priors.values {
        state.set_prior(*store, *minutes);
    }

    let caught_up = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(tokio::sync::Notify::new());
    let context =
        input::InputContext::new(config.replay_horizon(), health.clone(), metrics.clone());
    let consumer: BaseConsumer<input::InputContext> =
        input_consumer_config(config).create_with_context(context)?;
    let names = [
        topics.orders.as_str(),
        topics.completed.as_str(),
        topics.cancelled.as_str(),
    ];
    consumer.subscribe(&names)?;

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
        runtime: runtime.clone(),
        dead_letters,
        snapshot: snapshot.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        caught_up: caught_up.clone(),
        stop: stop.clone(),
    };
    let failed_signal = failed.clone();
    let thread_stop = stop.clone();
    let input = std::thread::Builder::new()
        .name("waittimes-input".into())
        .spawn(move || {
            let state = input::run(consumer, input);
            if !thread_stop.load(Ordering::Relaxed) {
                failed_signal.notify_one();
            }
            state
        })
        .map_err(|e| Error::Thread(e.to_string()))?;

    let emitter = output::Emitter {
        producer: producer.clone(),
        topic: topics.wait_times.clone(),
        schema_id,
        snapshot: snapshot.clone(),
        caught_up,
        interval: config.output.emit_interval,
        metrics: metrics.clone(),
        published: priors.values.clone(),
    };
    let emitter = tokio::spawn(emitter.run(stop_rx));
    Ok(Running {
        input,
        emitter,
        producer,
        stop,
        failed,
    })
}

/// Retries `f` with exponential backoff until it succeeds, reporting the failure in readiness.
async fn retry<T, E, F, Fut>(what: &str, health: &Health, condition: Condition, mut f: F) -> T
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<T, E>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match f().await {
            Ok(v) => {
                health.set_ok(condition);
                return v;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "{what} failed");
                health.set_not_ready(condition, format!("{what} failed: {err}"));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
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

/// The input consumer: the group, replay positions set by the rebalance callback, statistics
/// for lag and broker health, and fetch sizes that keep a fast broker busy. Every default here
/// can be overridden under `[kafka.properties]`.
pub(crate) fn input_consumer_config(config: &Config) -> rdkafka::ClientConfig {
    use crate::config::set_if_absent;
    let mut c = config.consumer_config();
    set_if_absent(&mut c, "auto.offset.reset", "earliest");
    set_if_absent(&mut c, "enable.auto.commit", "true");
    set_if_absent(&mut c, "enable.partition.eof", "false");
    set_if_absent(&mut c, "statistics.interval.ms", "1000");
    // librdkafka's 10 s default leaves the service cut off for up to 10 s after a broker
    // comes back; 2 s costs one connect attempt per broker every 2 s while it is down.
    set_if_absent(&mut c, "reconnect.backoff.max.ms", "2000");
    set_if_absent(&mut c, "fetch.wait.max.ms", "100");
    set_if_absent(&mut c, "max.partition.fetch.bytes", "10485760");
    set_if_absent(&mut c, "queued.min.messages", "1000000");
    c
}

/// The priors reader: assigned partitions, no group commits, end-of-partition events.
fn priors_consumer_config(config: &Config) -> rdkafka::ClientConfig {
    let mut c = config.consumer_config();
    c.set("enable.auto.commit", "false");
    c.set("enable.partition.eof", "true");
    c.set("auto.offset.reset", "earliest");
    c
}
