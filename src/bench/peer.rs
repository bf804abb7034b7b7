//! The Quix Streams peer (bench/peers/quix, see its README for the contract): the same job in
//! Python, run over the same input topics on the same broker.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::{BenchArgs, Topics};
use crate::config::Config;

#[derive(Debug, Clone)]
pub enum Outcome {
    /// Not run, and why.
    Skipped(String),
    /// Run, but without a usable result.
    Failed(String),
    Ran {
        version: String,
        events: u64,
        events_per_sec: f64,
        complete: bool,
    },
}

impl Outcome {
    pub fn describe(&self) -> String {
        match self {
            Outcome::Skipped(why) => format!("peer skipped: {why}"),
            Outcome::Failed(why) => format!("peer failed: {why}"),
            Outcome::Ran {
                version,
                events,
                events_per_sec,
                complete,
            } => format!(
                "quixstreams {version}: {events} events at {events_per_sec:.0}/s{}",
                if *complete { "" } else { " (incomplete)" }
            ),
        }
    }
}

fn peer_dir() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("WAITTIMES_QUIX_DIR").map(PathBuf::from),
        Some(PathBuf::from("bench/peers/quix")),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/peers/quix")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|d| d.join("run.sh").is_file())
}

/// Runs the peer to `total` events over the preloaded topics. The peer takes a bootstrap list
/// and one registry URL, no security settings: it runs against a plain local stack only.
pub(super) async fn run(
    args: &BenchArgs,
    config: &Config,
    topics: &Topics,
    total: u64,
    run_id: &str,
) -> Outcome {
    let Some(dir) = peer_dir() else {
        return Outcome::Skipped(
            "bench/peers/quix/run.sh not found (set WAITTIMES_QUIX_DIR or run from the repository)"
                .into(),
        );
    };
    let args = args.clone();
    let bootstrap = config.bootstrap_servers();
    let registry = config.schema_registry().urls.join(",");
    let topics = topics.clone();
    let run_id = run_id.to_string();
    tokio::task::spawn_blocking(move || {
        run_blocking(
            &dir,
            &args,
            [&bootstrap, &registry],
            &topics,
            total,
            &run_id,
        )
    })
    .await
    .unwrap_or_else(|e| Outcome::Failed(format!("peer thread: {e}")))
}

fn run_blocking(
    dir: &std::path::Path,
    args: &BenchArgs,
    [bootstrap, registry]: [&str; 2],
    topics: &Topics,
    total: u64,
    run_id: &str,
) -> Outcome {
    let setup = Command::new(dir.join("setup.sh"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status();
    match setup {
        Ok(s) if s.success() => {}
        Ok(s) => return Outcome::Skipped(format!("setup.sh failed ({s})")),
        Err(e) => return Outcome::Skipped(format!("cannot run setup.sh: {e}")),
    }
    let out = Command::new(dir.join("run.sh"))
        .args([
            "--bootstrap",
            bootstrap,
            "--schema-registry",
            registry,
            "--expect",
            &total.to_string(),
            "--input",
            &topics.inputs().join(","),
            "--output",
            &format!("{run_id}_quix"),
            "--group",
            &format!("{run_id}_quix"),
            "--timeout",
            &args.peer_timeout.to_string(),
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => return Outcome::Failed(format!("cannot run run.sh: {e}")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(summary) = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
    else {
        return Outcome::Failed(format!("no summary line ({})", out.status));
    };
    let events_per_sec = summary
        .get("events_per_second")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    Outcome::Ran {
        version: summary
            .get("version")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string(),
        events: summary.get("events").and_then(|v| v.as_u64()).unwrap_or(0),
        events_per_sec,
        complete: summary
            .get("complete")
            .and_then(|v| v.as_bool())
            .unwrap_or(false),
    }
}
