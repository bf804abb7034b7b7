//! The Kafka Streams peer (bench/peers/kstreams, see its README for the contract): the same job
//! on the JVM, over the same preloaded topics on the same broker, measured as the service is:
//! throughput to the last record and to the final answers on its output topic, CPU time, RSS,
//! time from start to first output, and time to be correct again after a kill -9 (its
//! changelog restore). Its output is checked against the reference answers; a run that does
//! not match them is reported as unverified, without figures.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::reference::Reference;
use super::watch::OutputWatcher;
use super::{BenchArgs, Topics, now_ms, procfs, say};
use crate::config::Config;

/// A restart after kill -9: how long until the peer was caught up with its answers right.
#[derive(Debug, Clone)]
pub struct Restart {
    pub label: &'static str,
    /// Process start → caught up (restored, lag 0), answers read through interactive queries.
    pub seconds: f64,
    pub restored_records: u64,
    pub restore_seconds: f64,
    /// Stores whose answer after the restart differs from the reference.
    pub wrong: Vec<i32>,
}

#[derive(Debug, Clone)]
pub struct Run {
    pub version: String,
    pub events: u64,
    /// First record → every record processed and every change forwarded (in the peer).
    pub applied_rate: f64,
    pub applied_secs: f64,
    /// First record → the final answers of every store read back from its output topic.
    pub published_rate: f64,
    pub published_secs: f64,
    /// CPU seconds of the whole process (every thread) from its first record to done.
    pub cpu_seconds: f64,
    /// Process start → first record on the output topic.
    pub first_output_secs: Option<f64>,
    pub rss: Option<u64>,
    pub rss_peak: Option<u64>,
    pub stores: usize,
    pub restarts: Vec<Restart>,
}

#[derive(Debug, Clone)]
pub enum Outcome {
    /// Not run, and why.
    Skipped(String),
    /// Run, but without a usable (or verified) result.
    Failed(String),
    Ran(Box<Run>),
}

impl Outcome {
    pub fn describe(&self) -> String {
        match self {
            Outcome::Skipped(why) => format!("Kafka Streams peer skipped: {why}"),
            Outcome::Failed(why) => format!("Kafka Streams peer failed: {why}"),
            Outcome::Ran(r) => format!(
                "kafka-streams {}: {} events, {:.0}/s to the final answers, verified",
                r.version, r.events, r.published_rate
            ),
        }
    }
}

fn peer_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("WAITTIMES_KSTREAMS_DIR").map(PathBuf::from),
        Some(PathBuf::from("bench/peers/kstreams")),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/peers/kstreams")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|d| d.join("run.sh").is_file())
}

/// Everything one peer invocation needs, cloned into the blocking thread.
struct Ctx {
    dir: PathBuf,
    bootstrap: String,
    registry: String,
    inputs: String,
    output: String,
    app_id: String,
    timeout: u64,
    work: PathBuf,
}

/// Runs the peer over the preloaded topics, checks it, kills it and restarts it twice.
pub(super) async fn run(
    args: &BenchArgs,
    config: &Config,
    topics: &Topics,
    total: u64,
    run_id: &str,
    reference: &Reference,
    work: &Path,
) -> Outcome {
    let Some(dir) = peer_dir() else {
        return Outcome::Skipped(
            "bench/peers/kstreams/run.sh not found (set WAITTIMES_KSTREAMS_DIR or run from the repository)"
                .into(),
        );
    };
    let ctx = Ctx {
        dir,
        bootstrap: config.bootstrap_servers(),
        registry: config.schema_registry().urls.join(","),
        inputs: topics.inputs().join(","),
        output: format!("{run_id}_kstreams"),
        app_id: format!("{run_id}_kstreams"),
        timeout: args.peer_timeout,
        work: work.to_path_buf(),
    };
    let setup = {
        let dir = ctx.dir.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(dir.join("setup.sh"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .status()
        })
        .await
    };
    match setup {
        Ok(Ok(s)) if s.success() => {}
        Ok(Ok(s)) => return Outcome::Skipped(format!("setup.sh failed ({s})")),
        Ok(Err(e)) => return Outcome::Skipped(format!("cannot run setup.sh: {e}")),
        Err(e) => return Outcome::Skipped(format!("setup thread: {e}")),
    }
    let admin = config.admin_config();
    if let Err(e) = crate::datagen::create_topics(&admin, &[&ctx.output], 3, -1, &[]).await {
        return Outcome::Failed(format!("creating {}: {e}", ctx.output));
    }
    let watcher = match OutputWatcher::start(config, &ctx.output, &format!("{run_id}_ks")) {
        Ok(w) => w,
        Err(e) => return Outcome::Failed(format!("watching {}: {e}", ctx.output)),
    };
    let reference = reference.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let outcome = run_blocking(&ctx, total, &reference, &watcher);
        watcher.stop();
        for d in ["kstreams-state", "kstreams-state-fresh"] {
            let _ = std::fs::remove_dir_all(ctx.work.join(d));
        }
        outcome
    })
    .await;
    outcome.unwrap_or_else(|e| Outcome::Failed(format!("peer thread: {e}")))
}

/// A started peer whose stdout is read line by line on a thread of its own.
struct Peer {
    child: Child,
    started: Instant,
    started_ms: i64,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    fn spawn(ctx: &Ctx, state_dir: &Path, log: &str, extra: &[&str]) -> Result<Peer, String> {
        let log_path = ctx.work.join(log);
        let log_file = std::fs::File::create(&log_path)
            .map_err(|e| format!("creating {}: {e}", log_path.display()))?;
        let started = Instant::now();
        let started_ms = now_ms();
        let mut child = Command::new(ctx.dir.join("run.sh"))
            .args([
                "--bootstrap",
                &ctx.bootstrap,
                "--schema-registry",
                &ctx.registry,
                "--input",
                &ctx.inputs,
                "--output",
                &ctx.output,
                "--application-id",
                &ctx.app_id,
                "--state-dir",
                &state_dir.to_string_lossy(),
                "--timeout",
                &ctx.timeout.to_string(),
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("cannot run run.sh: {e}"))?;
        let (tx, lines) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Peer {
            child,
            started,
            started_ms,
            lines,
        })
    }

    /// The next JSON summary line, and when it arrived; None when the peer exits without one
    /// or the timeout passes.
    fn summary(&mut self, timeout: Duration) -> Option<(serde_json::Value, Instant)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line.trim())
                        && v.is_object()
                    {
                        return Some((v, Instant::now()));
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// The instant of a wall-clock time (ms since the epoch) reported by the peer.
    fn instant_of(&self, wall_ms: i64) -> Instant {
        let delta = wall_ms.saturating_sub(self.started_ms);
        if delta >= 0 {
            self.started + Duration::from_millis(delta as u64)
        } else {
            self.started
                .checked_sub(Duration::from_millis(delta.unsigned_abs()))
                .unwrap_or(self.started)
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn f64_of(v: &serde_json::Value, key: &str) -> f64 {
    v.get(key).and_then(|x| x.as_f64()).unwrap_or(0.0)
}

fn answers_of(v: &serde_json::Value) -> HashMap<i32, i32> {
    v.get("answers")
        .and_then(|a| a.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, i32::try_from(v.as_i64()?).ok()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn run_blocking(ctx: &Ctx, total: u64, reference: &Reference, watcher: &OutputWatcher) -> Outcome {
    let timeout = Duration::from_secs(ctx.timeout + 30);
    let state = ctx.work.join("kstreams-state");
    let expect = total.to_string();
    let mut peer = match Peer::spawn(
        ctx,
        &state,
        "kstreams.log",
        &["--expect", &expect, "--hold"],
    ) {
        Ok(p) => p,
        Err(e) => return Outcome::Failed(e),
    };
    let Some((summary, _)) = peer.summary(timeout) else {
        return Outcome::Failed(format!(
            "no summary line (log: {})",
            ctx.work.join("kstreams.log").display()
        ));
    };
    if summary.get("complete").and_then(|c| c.as_bool()) != Some(true) {
        return Outcome::Failed(format!(
            "incomplete: {} of {total} events within {} s",
            summary.get("events").and_then(|e| e.as_u64()).unwrap_or(0),
            ctx.timeout
        ));
    }
    let pid = peer.child.id();
    let rss = procfs::status_bytes(pid, "VmRSS");
    let rss_peak = procfs::status_bytes(pid, "VmHWM");
    // The final answers must reach the output topic (the producer lingers a little).
    let deadline = Instant::now() + Duration::from_secs(60);
    let published_at = loop {
        let (done, wrong) = watcher.with(|seen| {
            let actual: HashMap<i32, i32> = seen.last.iter().map(|(s, (m, _))| (*s, *m)).collect();
            let wrong = reference.mismatches(&actual);
            let latest = seen.last.values().map(|(_, at)| *at).max();
            (wrong.is_empty().then_some(latest).flatten(), wrong)
        });
        if let Some(at) = done {
            break at;
        }
        if Instant::now() > deadline {
            let own = answers_of(&summary);
            let examples: Vec<String> = watcher.with(|seen| {
                wrong
                    .iter()
                    .take(5)
                    .map(|s| {
                        format!(
                            "store {s}: reference {:?}, on the topic {:?}, in the peer's store {:?}",
                            reference.answers.get(s),
                            seen.last.get(s).map(|(m, _)| *m),
                            own.get(s)
                        )
                    })
                    .collect()
            });
            return Outcome::Failed(format!(
                "not verified: {} of {} stores' last values on {} differ from the reference ({})",
                wrong.len(),
                reference.answers.len(),
                ctx.output,
                examples.join("; ")
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let first_ms = summary
        .get("first_record_ms")
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    let first = peer.instant_of(first_ms);
    let events = summary.get("events").and_then(|e| e.as_u64()).unwrap_or(0);
    let applied_secs = f64_of(&summary, "seconds");
    let published_secs = published_at.saturating_duration_since(first).as_secs_f64();
    let first_output_secs = watcher.with(|s| s.first.map(|f| (f - peer.started).as_secs_f64()));
    say(format!(
        "    verified: {} stores agree with the reference; killing the peer (SIGKILL)",
        reference.answers.len()
    ));
    peer.kill();
    drop(peer);

    let mut restarts = Vec::new();
    for (label, dir, log) in [
        (
            "same state directory",
            state.clone(),
            "kstreams-restart.log",
        ),
        (
            "empty state directory",
            ctx.work.join("kstreams-state-fresh"),
            "kstreams-restart-fresh.log",
        ),
    ] {
        let mut p = match Peer::spawn(ctx, &dir, log, &["--until-caught-up"]) {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(e),
        };
        let Some((s, at)) = p.summary(timeout) else {
            return Outcome::Failed(format!("restart ({label}): no summary line"));
        };
        if s.get("complete").and_then(|c| c.as_bool()) != Some(true) {
            return Outcome::Failed(format!("restart ({label}): not caught up in time"));
        }
        let r = Restart {
            label,
            seconds: (at - p.started).as_secs_f64(),
            restored_records: s
                .get("restored_records")
                .and_then(|v| v.as_u64())
                .unwrap_or(0),
            restore_seconds: f64_of(&s, "restore_seconds"),
            wrong: reference.mismatches(&answers_of(&s)),
        };
        say(format!(
            "    restart ({label}): caught up after {:.1} s, {} changelog records restored in {:.1} s, {} stores wrong",
            r.seconds,
            r.restored_records,
            r.restore_seconds,
            r.wrong.len()
        ));
        // It closes itself after the summary; the next start must not share its group.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = p.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        restarts.push(r);
    }
    Outcome::Ran(Box::new(Run {
        version: summary
            .get("version")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string(),
        events,
        applied_rate: events as f64 / applied_secs.max(1e-9),
        applied_secs,
        published_rate: events as f64 / published_secs.max(1e-9),
        published_secs,
        cpu_seconds: f64_of(&summary, "cpu_seconds"),
        first_output_secs,
        rss,
        rss_peak,
        stores: reference.answers.len(),
        restarts,
    }))
}
