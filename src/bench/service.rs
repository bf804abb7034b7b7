//! The service under test: `waittimes run` as a child process with a generated configuration,
//! observed through its HTTP endpoints, its output topic and /proc.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;

use super::cpu::{self, CpuSplit};
use super::floor::{Floor, FloorConsumer};
use super::latency::Latencies;
use super::load::{self, Acks, Probe, Steady};
use super::watch::OutputWatcher;
use super::wrk::{self, WrkResult};
use super::{BenchArgs, Error, Result, Topics, procfs, say};
use crate::config::{Config, EnvVars};

/// How long the service may take to answer /health/live after start.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the replay may go without consuming anything before the step fails.
const STALL: Duration = Duration::from_secs(120);
/// How often the metrics are read while waiting.
const POLL: Duration = Duration::from_millis(10);
/// Probe period during the steady load.
const PROBE_EVERY: Duration = Duration::from_millis(50);

/// One service instance's configuration: the bench's `--config` file and environment, the
/// bench's connection flags, and the instance's own topics, group and port over them, handed
/// to the child as `WAITTIMES__*` variables.
pub(super) struct ServiceConfig {
    pub port: u16,
    file: Option<PathBuf>,
    env: Vec<(String, String)>,
    /// The bench's clients' view of the same connection (with this instance's topics).
    pub client: Config,
}

impl ServiceConfig {
    pub(super) fn new(
        args: &BenchArgs,
        config: &Config,
        topics: &Topics,
        group: &str,
    ) -> ServiceConfig {
        let port = free_port().unwrap_or(18_080);
        let mut o = args.overrides();
        let emit = humantime::format_duration(args.emit_interval).to_string();
        let listen = format!("127.0.0.1:{port}");
        for (key, value) in [
            ("kafka.group_id", group),
            ("topics.orders", topics.orders.as_str()),
            ("topics.completed", topics.completed.as_str()),
            ("topics.cancelled", topics.cancelled.as_str()),
            ("topics.wait_times", topics.wait_times.as_str()),
            ("topics.features", topics.features.as_str()),
            ("topics.dead_letter", topics.dead_letter.as_str()),
            ("topics.answers", topics.answers.as_str()),
            // Read everything preloaded, whatever its (simulated) timestamps.
            ("state.replay_horizon", "100000h"),
            ("output.emit_interval", emit.as_str()),
            ("http.listen", listen.as_str()),
            ("log.level", "warn"),
        ] {
            o.set(key, "bench", value);
        }
        let mut client = config.clone();
        client.kafka.group_id = group.to_owned();
        client.topics.orders = topics.orders.clone();
        client.topics.completed = topics.completed.clone();
        client.topics.cancelled = topics.cancelled.clone();
        client.topics.wait_times = topics.wait_times.clone();
        client.topics.features = topics.features.clone();
        client.topics.dead_letter = topics.dead_letter.clone();
        client.topics.answers = topics.answers.clone();
        ServiceConfig {
            port,
            file: args.config.clone(),
            env: o.env_vars(),
            client,
        }
    }

    /// The environment the service sees: the bench's own, then this instance's overrides.
    fn env(&self) -> EnvVars {
        let own = EnvVars::process();
        EnvVars::from_vars(own.vars().iter().chain(&self.env).cloned())
    }

    /// The pipeline's input consumer config for this instance (what the raw consumer uses).
    pub(super) fn consumer_config(&self) -> Result<ClientConfig> {
        let config = Config::load_with_env(self.file.as_deref(), self.env())?;
        Ok(crate::pipeline::input_consumer_config(&config))
    }
}

/// An ephemeral port that was free a moment ago.
fn free_port() -> Option<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    Some(l.local_addr().ok()?.port())
}

/// Step 3's figures.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Events per second from the first consumed record to the last applied one.
    pub applied_rate: f64,
    /// Events per second from the first consumed record to every store's final wait time
    /// visible on the output topic.
    pub published_rate: f64,
    pub applied_secs: f64,
    pub published_secs: f64,
    pub stores: usize,
    /// Every store's final answer (from /stores once all records are applied).
    pub answers: HashMap<i32, i32>,
    /// CPU seconds of the service process from the first consumed record to the final answers
    /// on the output topic.
    pub cpu_secs: Option<f64>,
    /// Process start → the first record on the output topic.
    pub first_output_secs: Option<f64>,
    /// Peak resident memory (VmHWM) once the final answers are out.
    pub rss_peak: Option<u64>,
}

/// Kill -9 and restart: how long until the service was ready with the same answers.
#[derive(Debug, Clone)]
pub struct Recovery {
    /// Process start → /health/ready (caught up with the end offsets it saw at start).
    pub seconds: f64,
    /// Stores whose answer then differed from the one before the kill.
    pub wrong: usize,
}

/// Step 4's figures.
#[derive(Debug, Clone)]
pub struct SteadyResult {
    pub sent: u64,
    pub achieved_rate: f64,
    /// Record timestamp → acknowledged by the broker (the producer's and broker's share).
    pub to_broker: Option<Latencies>,
    /// Record timestamp → received by a plain consumer with the pipeline's client config,
    /// running alongside the service: the broker's and librdkafka's delivery floor.
    pub floor: Option<Floor>,
    /// Record timestamp → state applied, from the service's histogram (bucket resolution).
    pub to_state: Option<Latencies>,
    /// The bounds (ms) of the histogram bucket that holds `to_state`'s p99.
    pub to_state_p99_bucket: Option<(f64, f64)>,
    /// Record timestamp → first wait time of a probe store seen on the output topic.
    pub to_output: Option<Latencies>,
    pub probes_sent: usize,
    pub probes_missing: usize,
    /// Record timestamp → the probe store's first event on an open `/stores/stream`.
    pub to_push: Option<Latencies>,
    pub push_missing: usize,
    /// Events the push client read, and why its stream ended early if it did.
    pub push_note: String,
}

/// Step 6's figures.
#[derive(Debug, Clone)]
pub struct HttpResult {
    pub wrk: WrkResult,
    pub ingested_rate: f64,
    /// Where the CPU went while wrk ran.
    pub cpu: Option<CpuSplit>,
}

/// Step 5's figures.
#[derive(Debug, Clone)]
pub struct Memory {
    pub idle: u64,
    /// RSS with the first `half_orders` open.
    pub half_loaded: u64,
    pub loaded: u64,
    pub half_orders: u64,
    pub open_orders: u64,
}

impl Memory {
    /// RSS growth per open order over the whole load, fixed costs included.
    pub fn bytes_per_order_total(&self) -> f64 {
        self.loaded.saturating_sub(self.idle) as f64 / self.open_orders.max(1) as f64
    }

    /// RSS growth per open order over the second half only: what one more open order costs.
    pub fn bytes_per_order_marginal(&self) -> f64 {
        let n = self.open_orders.saturating_sub(self.half_orders).max(1);
        self.loaded.saturating_sub(self.half_loaded) as f64 / n as f64
    }
}

pub(super) struct Service {
    child: Child,
    started: Instant,
    port: u16,
    http: reqwest::Client,
    next_probe: i32,
    /// What the bench's own clients connect with.
    client: Config,
}

impl Service {
    pub(super) fn spawn(cfg: &ServiceConfig, log: &Path) -> Result<Service> {
        let exe = std::env::current_exe().map_err(Error::io("locating the waittimes binary"))?;
        let log_file =
            std::fs::File::create(log).map_err(Error::io(format!("creating {}", log.display())))?;
        let mut cmd = Command::new(exe);
        cmd.arg("run")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        cmd.env_remove("WAITTIMES_CONFIG");
        if let Some(file) = &cfg.file {
            cmd.arg("--config").arg(file);
        }
        // Set last, so they win over the bench's own environment.
        cmd.envs(cfg.env.iter().map(|(k, v)| (k, v)));
        cmd.env_remove("RUST_LOG");
        let child = cmd.spawn().map_err(Error::io("starting waittimes run"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Service {
            child,
            started: Instant::now(),
            port: cfg.port,
            client: cfg.client.clone(),
            http,
            next_probe: load::first_probe(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Waits until `path` answers 200.
    async fn wait_for(&mut self, path: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::Failed(format!("the service exited: {status}")));
            }
            if let Ok(r) = self.http.get(self.url(path)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Failed(format!(
                    "the service did not answer {path} within {timeout:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn metrics(&self) -> Result<String> {
        Ok(self
            .http
            .get(self.url("/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// Resident set size of the service process, from /proc.
    pub(super) fn rss_bytes(&self) -> Option<u64> {
        procfs::status_bytes(self.child.id(), "VmRSS")
    }

    /// Kills the service with SIGKILL and starts it again with the same configuration (same
    /// group, same topics): the time until it is ready (its replay from `now − replay
    /// horizon`), and how many answers then differ from before. `self` is the new process
    /// afterwards.
    pub(super) async fn kill_and_recover(
        &mut self,
        cfg: &ServiceConfig,
        log: &Path,
        before: &HashMap<i32, i32>,
    ) -> Result<Recovery> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = Service::spawn(cfg, log)?;
        self.wait_for("/health/live", START_TIMEOUT).await?;
        let deadline = Instant::now() + STALL;
        loop {
            let ready = self
                .http
                .get(self.url("/health/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                let seconds = self.started.elapsed().as_secs_f64();
                // Ready means caught up; its answers reach the snapshot within one refresh.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let now = self.final_answers().await?;
                let wrong = before.iter().filter(|(s, m)| now.get(s) != Some(m)).count();
                return Ok(Recovery { seconds, wrong });
            }
            if Instant::now() > deadline {
                return Err(Error::Failed(format!(
                    "the restarted service was not ready within {STALL:?}"
                )));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::Failed(format!(
                    "the restarted service exited: {status}"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Step 3: waits until all `total` preloaded records are consumed and every store's final
    /// answer is visible on the output topic.
    pub(super) async fn replay(&mut self, total: u64, watcher: &OutputWatcher) -> Result<Pipeline> {
        self.wait_for("/health/live", START_TIMEOUT).await?;
        let mut first: Option<(Instant, u64)> = None;
        let mut cpu0 = None;
        let mut last_change = (Instant::now(), 0u64);
        let applied_at = loop {
            let consumed = metric_sum(&self.metrics().await?, "waittimes_events_total") as u64;
            let now = Instant::now();
            if consumed > 0 && first.is_none() {
                first = Some((now, consumed));
                cpu0 = procfs::cpu_seconds(self.child.id());
            }
            if consumed >= total {
                break now;
            }
            if consumed != last_change.1 {
                last_change = (now, consumed);
            } else if last_change.0.elapsed() > STALL {
                return Err(Error::Failed(format!(
                    "the service stalled at {consumed} of {total} records"
                )));
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::Failed(format!("the service exited: {status}")));
            }
            tokio::time::sleep(POLL).await;
        };
        let (t0, c0) = first.unwrap_or((applied_at, 0));
        // Nothing changes the state any more: its answers reach the snapshot within one refresh.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let finals = self.final_answers().await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let published_at = loop {
            let done = watcher.with(|seen| {
                let mut latest: Option<Instant> = None;
                for (store, minutes) in &finals {
                    match seen.last.get(store) {
                        Some((m, at)) if m == minutes => {
                            latest = Some(latest.map_or(*at, |l| l.max(*at)))
                        }
                        _ => return None,
                    }
                }
                Some(latest.unwrap_or(applied_at))
            });
            if let Some(at) = done {
                break at;
            }
            if Instant::now() > deadline {
                return Err(Error::Failed(
                    "the final wait times did not all reach the output topic within 60 s".into(),
                ));
            }
            tokio::time::sleep(POLL).await;
        };
        let cpu1 = procfs::cpu_seconds(self.child.id());
        let first_output_secs = watcher.with(|s| {
            s.first
                .map(|f| f.saturating_duration_since(self.started).as_secs_f64())
        });
        let n = (total - c0) as f64;
        let applied_secs = applied_at.duration_since(t0).as_secs_f64();
        let published_secs = published_at.saturating_duration_since(t0).as_secs_f64();
        Ok(Pipeline {
            applied_rate: n / applied_secs.max(1e-9),
            published_rate: n / published_secs.max(1e-9),
            applied_secs,
            published_secs,
            stores: finals.len(),
            cpu_secs: cpu0.zip(cpu1).map(|(a, b)| b - a),
            first_output_secs,
            rss_peak: procfs::status_bytes(self.child.id(), "VmHWM"),
            answers: finals,
        })
    }

    /// Every store's published answer, from /stores.
    async fn final_answers(&self) -> Result<HashMap<i32, i32>> {
        let all: Vec<serde_json::Value> = self
            .http
            .get(self.url("/stores"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(all
            .iter()
            .filter_map(|s| {
                let store = i32::try_from(s.get("store_id")?.as_i64()?).ok()?;
                let minutes = i32::try_from(s.get("wait_time_minutes")?.as_i64()?).ok()?;
                Some((store, minutes))
            })
            .collect())
    }

    /// Step 4: the steady load with probes; latencies. `floor`, started just before, is stopped
    /// when the service's histogram is read again, so both see the same records.
    pub(super) async fn steady(
        &mut self,
        args: &BenchArgs,
        topics: &Topics,
        watcher: &OutputWatcher,
        floor: Option<FloorConsumer>,
    ) -> Result<SteadyResult> {
        let ids = load::schema_ids(&self.client, topics).await?;
        let before = histogram(
            &self.metrics().await?,
            "waittimes_processing_latency_seconds",
        );
        let push = super::push::PushWatcher::start(self.url("/stores/stream")).await;
        let probes = Arc::new(Mutex::new(Vec::<Probe>::new()));
        let duration = Duration::from_secs(args.steady_seconds);
        let steady = Steady {
            probe_every: Some(PROBE_EVERY),
            probes: probes.clone(),
            ..Steady::new(args, &self.client, topics, ids, duration, self.next_probe)
        };
        let acks = Arc::new(Acks::default());
        let acks_in = acks.clone();
        let (sent, next) = tokio::task::spawn_blocking(move || steady.run(acks_in))
            .await
            .map_err(|e| Error::Failed(format!("steady producer: {e}")))??;
        self.next_probe = next;
        // Let the last probes through: one emit interval, a refresh, and some slack.
        tokio::time::sleep(args.emit_interval + Duration::from_secs(2)).await;
        let after = histogram(
            &self.metrics().await?,
            "waittimes_processing_latency_seconds",
        );
        let floor = floor.map(FloorConsumer::stop);
        let to_state = histogram_latencies(&before, &after);
        let to_state_p99_bucket = histogram_quantile_bucket(&before, &after, 0.99);
        let probes = probes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut lat: Vec<f64> = Vec::with_capacity(probes.len());
        let mut missing = 0;
        watcher.with(|seen| {
            for p in &probes {
                match seen.probes.get(&p.store_id) {
                    Some(at) => lat.push((at - p.ts_ms).max(0) as f64),
                    None => missing += 1,
                }
            }
        });
        let (to_push, push_missing, push_note) = match push {
            Ok(watcher) => {
                let seen = watcher.stop();
                let mut lat = Vec::with_capacity(probes.len());
                let mut missing = 0;
                for p in &probes {
                    match seen.probes.get(&p.store_id) {
                        Some(at) => lat.push((at - p.ts_ms).max(0) as f64),
                        None => missing += 1,
                    }
                }
                let note = format!("{} events read", seen.events)
                    + &seen.ended.map_or(String::new(), |e| format!("; {e}"));
                (sample_latencies(&mut lat), missing, note)
            }
            Err(e) => (
                None,
                probes.len(),
                format!("could not open the stream: {e}"),
            ),
        };
        let mut to_broker = std::mem::take(
            &mut *acks
                .latencies_ms
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        Ok(SteadyResult {
            to_broker: sample_latencies(&mut to_broker),
            sent,
            floor,
            achieved_rate: sent as f64 / duration.as_secs_f64(),
            to_state,
            to_state_p99_bucket,
            to_output: sample_latencies(&mut lat),
            probes_sent: probes.len(),
            probes_missing: missing,
            to_push,
            push_missing,
            push_note,
        })
    }

    /// Step 6, first half: `wrk` on one store's wait with nothing produced (the service caught
    /// up and idle), the HTTP path without ingest competing for the cores.
    pub(super) async fn http_idle(
        &mut self,
        args: &BenchArgs,
    ) -> Result<(WrkResult, Option<CpuSplit>)> {
        let url = self.url("/stores/1/wait");
        let (secs, threads, conns) = (args.http_seconds, args.http_threads, args.http_connections);
        let before = cpu::Sample::take(self.child.id());
        let result = tokio::task::spawn_blocking(move || wrk::run(&url, secs, threads, conns))
            .await
            .map_err(|e| Error::Failed(format!("wrk thread: {e}")))??;
        let after = cpu::Sample::take(self.child.id());
        Ok((result, before.zip(after).and_then(|(a, b)| a.split(&b))))
    }

    /// Step 6: `wrk` on one store's wait while the steady load runs.
    pub(super) async fn http_under_load(
        &mut self,
        args: &BenchArgs,
        topics: &Topics,
    ) -> Result<HttpResult> {
        let ids = load::schema_ids(&self.client, topics).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let duration = Duration::from_secs(args.http_seconds + 2);
        let steady = Steady {
            stop: stop.clone(),
            ..Steady::new(args, &self.client, topics, ids, duration, self.next_probe)
        };
        let before = metric_sum(&self.metrics().await?, "waittimes_events_total");
        let t0 = Instant::now();
        let producer = tokio::task::spawn_blocking(move || steady.run(Arc::new(Acks::default())));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let url = self.url("/stores/1/wait");
        let (secs, threads, conns) = (args.http_seconds, args.http_threads, args.http_connections);
        let cpu_before = cpu::Sample::take(self.child.id());
        let result = tokio::task::spawn_blocking(move || wrk::run(&url, secs, threads, conns))
            .await
            .map_err(|e| Error::Failed(format!("wrk thread: {e}")))?;
        let cpu_after = cpu::Sample::take(self.child.id());
        let after = metric_sum(&self.metrics().await?, "waittimes_events_total");
        let ingested_rate = (after - before) / t0.elapsed().as_secs_f64();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = producer.await;
        Ok(HttpResult {
            wrk: result?,
            ingested_rate,
            cpu: cpu_before.zip(cpu_after).and_then(|(a, b)| a.split(&b)),
        })
    }

    /// Step 5: RSS idle (caught up on empty topics), then with `args.open_orders` open orders.
    pub(super) async fn memory(&mut self, args: &BenchArgs, topics: &Topics) -> Result<Memory> {
        self.wait_for("/health/ready", START_TIMEOUT).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let idle = self
            .rss_bytes()
            .ok_or_else(|| Error::Failed("cannot read the service's VmRSS".into()))?;
        say(format!("    idle RSS {:.1} MiB", idle as f64 / 1048576.0));
        let ids = load::schema_ids(&self.client, topics).await?;
        // Two halves: the first also pays librdkafka's fetch buffers and the allocator's growth,
        // which do not scale with the open orders; the second half's RSS growth is what each
        // further open order costs.
        let half = args.open_orders / 2;
        let mut rss = Vec::with_capacity(2);
        let mut open = 0;
        for (first_id, n) in [(0, half), (half, args.open_orders - half)] {
            let (client, topic, stores) = (self.client.clone(), topics.orders.clone(), args.stores);
            tokio::task::spawn_blocking(move || {
                load::open_orders(&client, &topic, ids[0], stores, first_id, n)
            })
            .await
            .map_err(|e| Error::Failed(format!("open-orders producer: {e}")))??;
            let target = first_id + n;
            let deadline = Instant::now() + Duration::from_secs(300);
            open = loop {
                let open = metric_sum(&self.metrics().await?, "waittimes_open_orders") as u64;
                if open >= target {
                    break open;
                }
                if Instant::now() > deadline {
                    return Err(Error::Failed(format!(
                        "only {open} of {target} open orders after 300 s"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            tokio::time::sleep(Duration::from_secs(2)).await;
            rss.push(
                self.rss_bytes()
                    .ok_or_else(|| Error::Failed("cannot read the service's VmRSS".into()))?,
            );
        }
        let (half_loaded, loaded) = (rss[0], rss[1]);
        Ok(Memory {
            idle,
            half_loaded,
            loaded,
            half_orders: half,
            open_orders: open,
        })
    }

    /// SIGTERM, then SIGKILL if it does not stop within 15 s.
    pub(super) async fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The sum of every sample of `name` (all label sets) in an OpenMetrics text.
pub(super) fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A histogram's cumulative buckets: (upper bound in seconds, count).
pub(super) fn histogram(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{");
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let le = rest.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            let count = l.rsplit(' ').next()?.parse().ok()?;
            Some((le, count))
        })
        .collect()
}

/// The cumulative buckets of the observations between two readings, sorted by bound.
fn bucket_deltas(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut buckets: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let old = before
                .iter()
                .find(|(b, _)| b == le)
                .map_or(0.0, |(_, n)| *n);
            (*le, n - old)
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The bounds (ms) of the bucket holding the `q` quantile of the observations between two
/// readings: where the true quantile lies, whatever the interpolation says.
pub(super) fn histogram_quantile_bucket(
    before: &[(f64, f64)],
    after: &[(f64, f64)],
    q: f64,
) -> Option<(f64, f64)> {
    let buckets = bucket_deltas(before, after);
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let mut lower = 0.0;
    for &(le, n) in &buckets {
        if n >= q * total {
            return Some((lower * 1000.0, le * 1000.0));
        }
        lower = le;
    }
    None
}

/// Percentiles of the observations between two readings of a histogram, interpolated inside
/// buckets; `max` is the upper bound of the highest bucket that gained observations.
pub(super) fn histogram_latencies(
    before: &[(f64, f64)],
    after: &[(f64, f64)],
) -> Option<Latencies> {
    let buckets = bucket_deltas(before, after);
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let quantile = |q: f64| {
        let target = q * total;
        let mut prev = (0.0, 0.0);
        for &(le, n) in &buckets {
            if n >= target {
                if le.is_infinite() {
                    return prev.0 * 1000.0;
                }
                let frac = if n > prev.1 {
                    (target - prev.1) / (n - prev.1)
                } else {
                    1.0
                };
                return (prev.0 + frac * (le - prev.0)) * 1000.0;
            }
            prev = (le, n);
        }
        f64::INFINITY
    };
    let mut max = 0.0;
    let mut prev = 0.0;
    for &(le, n) in &buckets {
        if n > prev {
            max = le * 1000.0;
        }
        prev = n;
    }
    Some(Latencies {
        p50: quantile(0.5),
        p99: quantile(0.99),
        max,
        samples: total as u64,
    })
}

/// Exact percentiles of measured latencies (ms).
fn sample_latencies(v: &mut [f64]) -> Option<Latencies> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Some(Latencies {
        p50: at(0.5),
        p99: at(0.99),
        max: v[v.len() - 1],
        samples: v.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_per_open_order_leave_out_the_first_halfs_fixed_costs() {
        let m = Memory {
            idle: 20_000_000,
            half_loaded: 150_000_000,
            loaded: 200_000_000,
            half_orders: 500_000,
            open_orders: 1_000_000,
        };
        assert_eq!(m.bytes_per_order_marginal(), 100.0);
        assert_eq!(m.bytes_per_order_total(), 180.0);
        let shrunk = Memory {
            loaded: 140_000_000,
            ..m
        };
        assert_eq!(shrunk.bytes_per_order_marginal(), 0.0);
    }

    const TEXT: &str = "# TYPE waittimes_events counter\n\
        waittimes_events_total{topic=\"a\",outcome=\"applied\"} 10\n\
        waittimes_events_total{topic=\"b\",outcome=\"held\"} 5\n\
        waittimes_events_totally 99\n\
        waittimes_open_orders 7\n\
        waittimes_processing_latency_seconds_bucket{le=\"0.001\"} 50\n\
        waittimes_processing_latency_seconds_bucket{le=\"0.002\"} 90\n\
        waittimes_processing_latency_seconds_bucket{le=\"0.005\"} 100\n\
        waittimes_processing_latency_seconds_bucket{le=\"+Inf\"} 100\n";

    #[test]
    fn sums_every_label_set_of_one_metric_only() {
        assert_eq!(metric_sum(TEXT, "waittimes_events_total"), 15.0);
        assert_eq!(metric_sum(TEXT, "waittimes_open_orders"), 7.0);
        assert_eq!(metric_sum(TEXT, "waittimes_missing"), 0.0);
    }

    #[test]
    fn histogram_percentiles_interpolate_inside_buckets() {
        let h = histogram(TEXT, "waittimes_processing_latency_seconds");
        assert_eq!(h.len(), 4);
        let l = histogram_latencies(&[], &h).expect("observations");
        assert!((l.p50 - 1.0).abs() < 1e-9, "{}", l.p50);
        assert!((l.p99 - 4.7).abs() < 1e-9, "{}", l.p99);
        assert_eq!(l.max, 5.0);
        assert_eq!(l.samples, 100);
        assert!(histogram_latencies(&h, &h).is_none());
        assert_eq!(histogram_quantile_bucket(&[], &h, 0.5), Some((0.0, 1.0)));
        assert_eq!(histogram_quantile_bucket(&[], &h, 0.99), Some((2.0, 5.0)));
        assert_eq!(histogram_quantile_bucket(&h, &h, 0.99), None);
        let slow = [
            (0.001, 0.0),
            (0.002, 0.0),
            (0.005, 0.0),
            (f64::INFINITY, 3.0),
        ];
        assert_eq!(
            histogram_quantile_bucket(&[], &slow, 0.99),
            Some((5.0, f64::INFINITY))
        );
    }

    #[test]
    fn sample_percentiles_are_observed_values() {
        let mut v: Vec<f64> = (1..=200).map(f64::from).collect();
        let l = sample_latencies(&mut v).expect("samples");
        assert_eq!((l.p50, l.p99, l.max), (100.0, 198.0, 200.0));
    }
}
