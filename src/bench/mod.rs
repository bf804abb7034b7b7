//! `waittimes bench`: measures the service against a running broker and registry in one run,
//! and prints a Markdown table.
//!
//! 1. preload N simulated events into fresh input topics (the datagen library, in process);
//! 2. raw consume rate of those records with a plain consumer, the pipeline's client config;
//! 3. the service (`waittimes run`, a child process) over the same records from the beginning,
//!    until every store's final wait time is visible on the output topic;
//! 4. steady load: record → state (the service's own latency histogram), record → received by
//!    a plain consumer alongside it (the broker's delivery floor) and record → output topic
//!    (probe stores whose first answer is timed end to end), and record → event on an open push
//!    stream (`/stores/stream`, the same probes);
//! 5. resident memory: idle, and with many open orders;
//! 6. HTTP with `wrk`, idle and while ingesting;
//! 7. the peers over the same input, checked against reference answers recomputed from the
//!    input: Quix Streams (bench/peers/quix) and Kafka Streams (bench/peers/kstreams), side by
//!    side with the service (throughput, CPU, RSS, first output, recovery after kill -9).
//! 8. scale: the catch-up rate with the same number of events over 10, 1,000 and 100,000
//!    stores, each beside the raw consume rate of its own records.
//!
//! The service runs as a child process so its memory is its own and the code path is exactly
//! `waittimes run`. Performance is measured and reported here, never asserted in tests.

mod cpu;
mod floor;
mod kstreams;
mod latency;
mod load;
mod peer;
mod procfs;
mod push;
mod reference;
mod report;
mod scale;
mod service;
mod watch;
mod wrk;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::{Config, EnvVars, Overrides};
use crate::wire;

pub use report::Report;

/// Probe store ids start here, far above any simulated store.
const PROBE_BASE: i32 = 100_000_000;

/// `waittimes bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Events to preload and process (steps 1–3).
    #[arg(long, default_value_t = 2_000_000)]
    pub events: u64,

    /// Simulated stores in the preload and the steady load.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub stores: u32,

    /// Steady load: events per second (step 4 and the ingest during step 6).
    #[arg(long, default_value_t = 20_000)]
    pub steady_rate: u64,

    /// Steady load: seconds.
    #[arg(long, default_value_t = 30)]
    pub steady_seconds: u64,

    /// Steady load: the producer's linger.ms (part of record → broker ack; a longer linger
    /// batches more and adds that much latency).
    #[arg(long, default_value_t = 5)]
    pub steady_linger_ms: u32,

    /// Open orders loaded for the memory step.
    #[arg(long, default_value_t = 1_000_000)]
    pub open_orders: u64,

    /// The service's `output.emit_interval` during the run.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub emit_interval: Duration,

    /// HTTP step: seconds of `wrk`.
    #[arg(long, default_value_t = 10)]
    pub http_seconds: u64,

    /// HTTP step: `wrk` threads. wrk, the service and (while ingesting) the producer and the
    /// broker share the machine, so more threads than cores measure the scheduler.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_threads: u32,

    /// HTTP step: concurrent connections of `wrk` (at least the thread count). wrk keeps every
    /// connection busy, so each one beyond what the service serves in parallel adds queueing.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub http_connections: u32,

    /// Scale step: the store counts to replay (comma-separated; empty skips the step).
    #[arg(long, value_delimiter = ',', default_value = "10,1000,100000")]
    pub scale_stores: Vec<u32>,

    /// Scale step: events per store count.
    #[arg(long, default_value_t = 500_000)]
    pub scale_events: u64,

    /// Do not run the peers (neither Quix Streams nor Kafka Streams).
    #[arg(long)]
    pub skip_peer: bool,

    /// Do not run the Quix Streams peer (the slowest step by far).
    #[arg(long)]
    pub skip_quix: bool,

    /// Do not run the Kafka Streams peer.
    #[arg(long)]
    pub skip_kstreams: bool,

    /// Give each peer run at most this many seconds.
    #[arg(long, default_value_t = 900)]
    pub peer_timeout: u64,

    /// The TOML configuration file of `waittimes run`: the bench's clients, the registry and
    /// the service under test connect as it says (`client.properties`, `schema.properties`,
    /// WAITTIMES__SECTION__KEY variables over it, as for `run`); topics, group and listen
    /// address are the bench's own.
    #[arg(long, short, env = "WAITTIMES_CONFIG")]
    pub config: Option<PathBuf>,

    /// Kafka bootstrap servers; overrides kafka.bootstrap_servers.
    #[arg(long, env = "KAFKA_BOOTSTRAP")]
    pub bootstrap: Option<String>,

    /// Schema Registry URL; overrides schema_registry.url.
    #[arg(long, env = "SCHEMA_REGISTRY_URL")]
    pub schema_registry: Option<String>,

    /// A librdkafka property over the config's, for every client of the bench and the service
    /// (repeatable), e.g. `-X fetch.min.bytes=1000000`.
    #[arg(short = 'X', long = "property", value_name = "KEY=VALUE", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,

    /// Write the table into this Markdown file (BENCHMARKS.md), replacing the previous one.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// Why a bench run failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("schema registry: {0}")]
    Registry(#[from] wire::Error),
    #[error("preload: {0}")]
    Datagen(#[from] crate::datagen::Error),
    #[error("configuration: {0}")]
    Config(#[from] crate::config::Error),
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

impl Error {
    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl BenchArgs {
    /// The connection flags as config overrides (also handed to the service under test).
    fn overrides(&self) -> Overrides {
        let mut o = Overrides::new();
        if let Some(b) = &self.bootstrap {
            o.set("kafka.bootstrap_servers", "--bootstrap", b.as_str());
        }
        if let Some(u) = &self.schema_registry {
            o.set("schema_registry.url", "--schema-registry", u.as_str());
        }
        for (k, v) in &self.properties {
            o.kafka_property(k, &format!("-X {k}"), v.as_str());
        }
        o
    }

    /// `--config`, the environment and the flags: what every client of the run connects with.
    pub fn load_config(&self) -> Result<Config> {
        Ok(Config::load_with_overrides(
            self.config.as_deref(),
            EnvVars::process(),
            &self.overrides(),
        )?)
    }
}

/// The topic names of one run: fresh, so runs never see each other's records.
#[derive(Debug, Clone)]
pub(crate) struct Topics {
    pub orders: String,
    pub completed: String,
    pub cancelled: String,
    pub wait_times: String,
    pub features: String,
    pub dead_letter: String,
    pub answers: String,
}

impl Topics {
    fn new(prefix: &str) -> Topics {
        Topics {
            orders: format!("{prefix}_orders"),
            completed: format!("{prefix}_completed"),
            cancelled: format!("{prefix}_cancelled"),
            wait_times: format!("{prefix}_waittimes"),
            features: format!("{prefix}_features"),
            dead_letter: format!("{prefix}_dlq"),
            answers: format!("{prefix}_answers"),
        }
    }

    fn inputs(&self) -> [&str; 3] {
        [&self.orders, &self.completed, &self.cancelled]
    }

    fn all(&self) -> [&str; 6] {
        [
            &self.orders,
            &self.completed,
            &self.cancelled,
            &self.wait_times,
            &self.features,
            &self.dead_letter,
        ]
    }
}

/// Progress on stderr (the table goes to stdout).
fn say(msg: impl AsRef<str>) {
    eprintln!("bench: {}", msg.as_ref());
}

pub(crate) use crate::clock::now_ms;

fn parse_property(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Runs every step and returns the report (also written to `--output` if given).
pub async fn run(args: BenchArgs) -> Result<Report> {
    if args.events == 0 || args.steady_rate == 0 || args.steady_seconds == 0 {
        return Err(Error::Failed(
            "--events, --steady-rate and --steady-seconds must be at least 1".into(),
        ));
    }
    if !args.scale_stores.is_empty() && args.scale_events == 0 {
        return Err(Error::Failed("--scale-events must be at least 1".into()));
    }
    if let Some(bad) = args.scale_stores.iter().find(|&&n| n == 0 || n > 1_000_000) {
        return Err(Error::Failed(format!(
            "--scale-stores: {bad} is not a store count between 1 and 1,000,000"
        )));
    }
    if args.http_connections < args.http_threads {
        return Err(Error::Failed(
            "--http-connections must be at least --http-threads (wrk gives each thread one)".into(),
        ));
    }
    let config = args.load_config()?;
    config.log_warnings();
    let started = Instant::now();
    let mut report = Report::new(&args);
    let run_id = format!("bench_{}_{}", now_ms(), std::process::id());
    let topics = Topics::new(&run_id);
    let admin = config.admin_config();
    crate::datagen::create_topics(&admin, &topics.all(), 3, -1, &[]).await?;

    // 1. Preload.
    say(format!(
        "1/8 preloading {} simulated events ({} stores) into {}_*",
        args.events, args.stores, run_id
    ));
    let preload = load::preload(&args, &config, &topics).await?;
    say(format!(
        "    {} events in {:.1}s ({:.0}/s)",
        preload.events(),
        preload.elapsed.as_secs_f64(),
        preload.events_per_sec()
    ));
    report.preload = Some((preload.events(), preload.events_per_sec()));
    let total = preload.events();

    // 2. Raw consume rate with the pipeline's client config, and with fetch.min.bytes raised.
    let work = tempdir(&run_id)?;
    let service_cfg =
        service::ServiceConfig::new(&args, &config, &topics, &format!("{run_id}_service"));
    let base = service_cfg.consumer_config()?;
    say("2/8 raw consume, the service's consumer config");
    let raw = load::raw_consume(base.clone(), &topics, total, &format!("{run_id}_raw1")).await?;
    say(format!("    {:.0} records/s", raw));
    report.raw = Some(raw);
    let tuned_min_bytes = base.get("fetch.min.bytes").is_none();
    if tuned_min_bytes {
        let mut tuned = base.clone();
        tuned.set("fetch.min.bytes", "1000000");
        say("    raw consume again with fetch.min.bytes=1000000");
        let r = load::raw_consume(tuned, &topics, total, &format!("{run_id}_raw2")).await?;
        say(format!("    {:.0} records/s", r));
        report.raw_min_bytes = Some(r);
    }

    // 3. The service over the same records.
    say("3/8 the service (waittimes run) over the same records");
    let watcher = watch::OutputWatcher::start(&config, &topics.wait_times, &run_id)?;
    let mut svc = service::Service::spawn(&service_cfg, &work.join("service.log"))?;
    let e2e = svc.replay(total, &watcher).await;
    let e2e = match e2e {
        Ok(e) => e,
        Err(err) => {
            svc.stop().await;
            return Err(err);
        }
    };
    say(format!(
        "    applied at {:.0} events/s, final wait times of {} stores published at {:.0} events/s",
        e2e.applied_rate, e2e.stores, e2e.published_rate
    ));
    let e2e_answers = e2e.answers.clone();
    report.pipeline = Some(e2e);
    report.rss_after_replay = svc.rss_bytes();

    // 7 (run now, while the topics hold exactly the preload): the peers, and the service's
    // own recovery after kill -9 beside theirs.
    if args.skip_peer || args.skip_quix {
        report.peer = peer::Outcome::Skipped("--skip-peer / --skip-quix".into());
    } else {
        say("7/8 the Quix Streams peer over the same input (runs now, on the preload only)");
        report.peer = peer::run(&args, &config, &topics, total, &run_id).await;
        say(format!("    {}", report.peer.describe()));
    }
    say("7/8 reference answers: the state machine over the preload in event-time order");
    match reference::compute(&config, &topics, &run_id).await {
        Ok(r) => {
            let wrong = r.mismatches(&e2e_answers);
            let examples: Vec<String> = wrong
                .iter()
                .take(5)
                .map(|s| {
                    format!(
                        "store {s}: reference {:?}, service {:?}",
                        r.answers.get(s),
                        e2e_answers.get(s)
                    )
                })
                .collect();
            say(format!(
                "    {} stores from {} events ({} undecodable); the service's final answers differ on {} ({})",
                r.answers.len(),
                r.events,
                r.undecodable,
                wrong.len(),
                examples.join("; ")
            ));
            report.reference = Some(Ok((r.answers.len(), wrong.len())));
            if args.skip_peer || args.skip_kstreams {
                report.kstreams =
                    kstreams::Outcome::Skipped("--skip-peer / --skip-kstreams".into());
            } else {
                say("7/8 the Kafka Streams peer over the same input, then kill -9 and restarts");
                report.kstreams =
                    kstreams::run(&args, &config, &topics, total, &run_id, &r, &work).await;
                say(format!("    {}", report.kstreams.describe()));
            }
        }
        Err(err) => {
            say(format!("    reference failed: {err}"));
            report.reference = Some(Err(err.to_string()));
            report.kstreams =
                kstreams::Outcome::Skipped("no reference answers to verify it against".into());
        }
    }
    say("7/8 the service: kill -9, restart, time until ready");
    match svc
        .kill_and_recover(
            &service_cfg,
            &work.join("service-restart.log"),
            &e2e_answers,
        )
        .await
    {
        Ok(r) => {
            say(format!(
                "    ready after {:.1} s; {} stores' answers differ from before the kill",
                r.seconds, r.wrong
            ));
            report.recovery = Some(r);
        }
        Err(err) => say(format!("    recovery step failed: {err}")),
    }

    // 4. Steady load: latencies.
    say(format!(
        "4/8 steady load {} events/s for {}s",
        args.steady_rate, args.steady_seconds
    ));
    let floor = match floor::FloorConsumer::start(base.clone(), &topics, &format!("{run_id}_floor"))
    {
        Ok(f) => Some(f),
        Err(err) => {
            say(format!("    the floor consumer did not start: {err}"));
            None
        }
    };
    let steady = svc.steady(&args, &topics, &watcher, floor).await;
    match steady {
        Ok(s) => report.steady = Some(s),
        Err(err) => say(format!("    steady load failed: {err}")),
    }

    // 6. HTTP on the idle service (caught up, nothing produced), then while ingesting.
    say(format!(
        "6/8 wrk on /stores/1/wait for {}s, idle service",
        args.http_seconds
    ));
    match svc.http_idle(&args).await {
        Ok((w, cpu)) => {
            report.http_idle = Some(w);
            report.http_idle_cpu = cpu;
        }
        Err(err) => say(format!("    idle http step failed: {err}")),
    }
    say(format!(
        "6/8 wrk on /stores/1/wait for {}s while ingesting {} events/s",
        args.http_seconds, args.steady_rate
    ));
    match svc.http_under_load(&args, &topics).await {
        Ok(h) => report.http = Some(h),
        Err(err) => say(format!("    http step failed: {err}")),
    }
    report.rss_after_load = svc.rss_bytes();
    svc.stop().await;
    watcher.stop();

    // 5. Memory on fresh topics: idle, then with open orders.
    say(format!(
        "5/8 memory: idle, then {} open orders",
        args.open_orders
    ));
    let mem_topics = Topics::new(&format!("{run_id}_mem"));
    crate::datagen::create_topics(&admin, &mem_topics.all(), 3, -1, &[]).await?;
    let mem_cfg =
        service::ServiceConfig::new(&args, &config, &mem_topics, &format!("{run_id}_mem"));
    let mut mem_svc = service::Service::spawn(&mem_cfg, &work.join("service-mem.log"))?;
    let mem = mem_svc.memory(&args, &mem_topics).await;
    mem_svc.stop().await;
    match mem {
        Ok(m) => report.memory = Some(m),
        Err(err) => say(format!("    memory step failed: {err}")),
    }

    // 8. Scale: the same number of events over different store counts.
    report.scale = scale::run(&args, &config, &run_id, &work).await;

    report.elapsed = started.elapsed();
    if let Some(path) = &args.output {
        report.write_into(path)?;
        say(format!("table written to {}", path.display()));
    }
    say(format!(
        "done in {:.0}s; service logs in {}",
        started.elapsed().as_secs_f64(),
        work.display()
    ));
    Ok(report)
}

/// A work directory for the generated configs and the service's logs.
fn tempdir(run_id: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("waittimes-{run_id}"));
    std::fs::create_dir_all(&dir).map_err(Error::io(format!("creating {}", dir.display())))?;
    Ok(dir)
}
