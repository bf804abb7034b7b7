//! The Markdown table: the figures of one run against the goals, with the machine and commit.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use super::cpu::CpuSplit;
use super::kstreams;
use super::latency::Latencies;
use super::peer::Outcome;
use super::scale::ScaleRow;
use super::service::{HttpResult, Memory, Pipeline, Recovery, SteadyResult};
use super::wrk::WrkResult;
use super::{BenchArgs, Error, Result};

const BEGIN: &str = "<!-- bench:begin -->";
const END: &str = "<!-- bench:end -->";

#[derive(Debug, Clone)]
pub struct Report {
    pub command: String,
    pub commit: String,
    pub cores: usize,
    pub cpu: String,
    pub load_at_start: String,
    pub date: String,
    pub emit_interval: Duration,
    pub steady_target: u64,
    pub steady_linger_ms: u32,
    pub preload: Option<(u64, f64)>,
    pub raw: Option<f64>,
    pub raw_min_bytes: Option<f64>,
    pub pipeline: Option<Pipeline>,
    pub rss_after_replay: Option<u64>,
    pub rss_after_load: Option<u64>,
    pub peer: Outcome,
    /// Reference stores, and on how many the service's final answers differ.
    pub reference: Option<Result<(usize, usize), String>>,
    pub kstreams: kstreams::Outcome,
    pub recovery: Option<Recovery>,
    pub steady: Option<SteadyResult>,
    pub http_idle: Option<WrkResult>,
    pub http_idle_cpu: Option<CpuSplit>,
    pub http: Option<HttpResult>,
    pub http_threads: u32,
    pub http_connections: u32,
    pub memory: Option<Memory>,
    pub scale: Vec<std::result::Result<ScaleRow, String>>,
    pub elapsed: Duration,
}

impl Report {
    pub(super) fn new(args: &BenchArgs) -> Report {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let load_at_start = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        Report {
            command: command_line(),
            commit: commit(),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            load_at_start,
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            emit_interval: args.emit_interval,
            steady_target: args.steady_rate,
            steady_linger_ms: args.steady_linger_ms,
            preload: None,
            raw: None,
            raw_min_bytes: None,
            pipeline: None,
            rss_after_replay: None,
            rss_after_load: None,
            peer: Outcome::Skipped("not run".into()),
            reference: None,
            kstreams: kstreams::Outcome::Skipped("not run".into()),
            recovery: None,
            steady: None,
            http_idle: None,
            http_idle_cpu: None,
            http: None,
            http_threads: args.http_threads,
            http_connections: args.http_connections,
            memory: None,
            scale: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    /// The table with its heading lines.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Commit `{}`, {} cores ({}), load average at start {}, {}; run took {:.0} s.\n",
            self.commit,
            self.cores,
            self.cpu,
            self.load_at_start,
            self.date,
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(s, "```sh\n{}\n```\n", self.command);
        s.push_str("| step | measure | result | goal | verdict |\n|---|---|---|---|---|\n");
        let mut row = |step: &str, what: &str, result: String, goal: &str, verdict: &str| {
            let _ = writeln!(s, "| {step} | {what} | {result} | {goal} | {verdict} |");
        };
        let na = || "not measured".to_string();
        match self.preload {
            Some((n, rate)) => row(
                "1",
                "preload (sim mix, datagen library)",
                format!("{} events at {}/s", thousands(n), thousands(rate as u64)),
                "",
                "",
            ),
            None => row("1", "preload", na(), "", ""),
        }
        row(
            "2",
            "raw consume, the service's consumer config",
            self.raw
                .map_or_else(na, |r| format!("{} records/s", thousands(r as u64))),
            "",
            "",
        );
        if let Some(r) = self.raw_min_bytes {
            row(
                "2",
                "raw consume, same + fetch.min.bytes=1000000",
                format!("{} records/s", thousands(r as u64)),
                "",
                "",
            );
        }
        let emit_ms = self.emit_interval.as_secs_f64() * 1000.0;
        match (&self.pipeline, self.raw) {
            (Some(p), raw) => {
                let ratio = |x: f64| raw.map_or(f64::NAN, |r| x / r);
                row(
                    "3",
                    "service: first record → last applied",
                    format!(
                        "{} events/s ({:.2} s), {:.2}× raw",
                        thousands(p.applied_rate as u64),
                        p.applied_secs,
                        ratio(p.applied_rate)
                    ),
                    "",
                    "",
                );
                let r = ratio(p.published_rate);
                row(
                    "3",
                    &format!(
                        "service: first record → final wait times of {} stores on the output topic (emit interval {} ms)",
                        p.stores, emit_ms
                    ),
                    format!(
                        "{} events/s ({:.2} s), **{:.2}× raw**",
                        thousands(p.published_rate as u64),
                        p.published_secs,
                        r
                    ),
                    "≥ 0.8× raw",
                    verdict(r >= 0.8),
                );
            }
            (None, _) => row("3", "service end to end", na(), "≥ 0.8× raw", "—"),
        }
        match &self.steady {
            Some(st) => {
                row(
                    "4",
                    "steady load achieved",
                    format!(
                        "{} events/s ({} sent)",
                        thousands(st.achieved_rate as u64),
                        thousands(st.sent)
                    ),
                    &format!("{} events/s", thousands(self.steady_target)),
                    "",
                );
                if let Some(l) = st.to_broker {
                    row(
                        "4",
                        &format!(
                            "record → acknowledged by the broker (bench producer, linger.ms={})",
                            self.steady_linger_ms
                        ),
                        lat(&l),
                        "",
                        "",
                    );
                }
                let floor = st.floor.and_then(|f| f.latencies);
                match st.floor {
                    Some(f) => row(
                        "4",
                        "record → plain consumer (broker floor: the pipeline's client config, own group, alongside the service)",
                        match f.latencies {
                            Some(l) => {
                                let mut r = lat(&l);
                                if f.errors > 0 {
                                    r += &format!(", {} consumer errors", thousands(f.errors));
                                }
                                if f.other > 0 {
                                    r += &format!(
                                        "; {} records not from the load, not timed",
                                        thousands(f.other)
                                    );
                                }
                                r
                            }
                            None => na(),
                        },
                        "",
                        "",
                    ),
                    None => row("4", "record → plain consumer (broker floor)", na(), "", ""),
                }
                match st.to_state {
                    Some(l) => row(
                        "4",
                        "record → state applied (service histogram, bucket resolution)",
                        lat(&l),
                        "p99 ≤ 10 ms",
                        verdict(l.p99 <= 10.0),
                    ),
                    None => row("4", "record → state applied", na(), "p99 ≤ 10 ms", "—"),
                }
                if let (Some(state), Some(floor)) = (st.to_state, floor) {
                    let (p50, p99) = over_floor(&state, &floor);
                    let within = st.to_state_p99_bucket.map_or(String::new(), |(lo, hi)| {
                        format!(
                            " (the state's p99 lies in its {lo}–{hi} ms bucket: {:+.1} to {:+.1} ms)",
                            lo - floor.p99,
                            hi - floor.p99
                        )
                    });
                    row(
                        "4",
                        "record → state over the floor (difference of percentiles, not a percentile of differences)",
                        format!("p50 {p50:+.1} ms, p99 {p99:+.1} ms{within}"),
                        "p99 ≤ 10 ms (indicative)",
                        if p99 <= 10.0 {
                            "met (indicative)"
                        } else {
                            "**missed** (indicative)"
                        },
                    );
                }
                let goal = format!("p99 ≤ {:.0} ms (emit interval + 50 ms)", emit_ms + 50.0);
                match st.to_output {
                    Some(l) => row(
                        "4",
                        &format!(
                            "record → output topic ({} probes, {} missing)",
                            st.probes_sent, st.probes_missing
                        ),
                        lat(&l),
                        &goal,
                        verdict(l.p99 <= emit_ms + 50.0 && st.probes_missing == 0),
                    ),
                    None => row("4", "record → output topic", na(), &goal, "—"),
                }
                let label = format!(
                    "record → push event on an open /stores/stream ({} probes, {} missing; {})",
                    st.probes_sent, st.push_missing, st.push_note
                );
                match st.to_push {
                    Some(l) => {
                        let over = st.to_state.map_or(String::new(), |s| {
                            format!("; over record → state: p50 {:+.1} ms", l.p50 - s.p50)
                        });
                        row(
                            "4",
                            &label,
                            format!("{}{over}", lat(&l)),
                            "p99 ≤ 100 ms",
                            verdict(l.p99 <= 100.0 && st.push_missing == 0),
                        );
                    }
                    None => row("4", &label, na(), "p99 ≤ 100 ms", "—"),
                }
            }
            None => row("4", "steady load", na(), "", "—"),
        }
        match &self.memory {
            Some(m) => {
                row(
                    "5",
                    "RSS idle (caught up, empty topics)",
                    format!("{:.1} MB", m.idle as f64 / 1e6),
                    "≤ 30 MB",
                    verdict(m.idle as f64 <= 30e6),
                );
                let total = m.bytes_per_order_total();
                let marginal = m.bytes_per_order_marginal();
                row(
                    "5",
                    &format!(
                        "RSS with {} open orders (growth per order over the last {})",
                        thousands(m.open_orders),
                        thousands(m.open_orders.saturating_sub(m.half_orders))
                    ),
                    format!(
                        "{:.1} MB, **{:.0} bytes per open order** ({:.0} bytes per order over \
                         idle, fixed costs included)",
                        m.loaded as f64 / 1e6,
                        marginal,
                        total
                    ),
                    "≤ 200 bytes per open order",
                    verdict(marginal <= 200.0),
                );
            }
            None => row("5", "memory", na(), "", "—"),
        }
        if let Some(r) = self.rss_after_replay {
            row(
                "5",
                "RSS after the step-3 replay",
                format!("{:.1} MB", r as f64 / 1e6),
                "",
                "",
            );
        }
        let wrk_flags = format!("wrk -t{} -c{}", self.http_threads, self.http_connections);
        match &self.http_idle {
            Some(w) => row(
                "6",
                &format!("HTTP /stores/1/wait, {wrk_flags}, idle service (nothing ingested)"),
                with_cpu(wrk_result(w), self.http_idle_cpu.as_ref(), self.cores),
                "",
                "",
            ),
            None => row("6", "HTTP, idle service", na(), "", ""),
        }
        match &self.http {
            Some(h) => row(
                "6",
                &format!(
                    "HTTP /stores/1/wait, {wrk_flags}, while ingesting {} events/s",
                    thousands(h.ingested_rate as u64)
                ),
                with_cpu(wrk_result(&h.wrk), h.cpu.as_ref(), self.cores),
                "≥ 30k req/s, p99 ≤ 5 ms",
                verdict(h.wrk.requests_per_sec >= 30_000.0 && h.wrk.p99_ms <= 5.0),
            ),
            None => row("6", "HTTP", na(), "≥ 30k req/s, p99 ≤ 5 ms", "—"),
        }
        match (&self.peer, &self.pipeline) {
            (
                Outcome::Ran {
                    events_per_sec,
                    complete,
                    ..
                },
                Some(p),
            ) if *events_per_sec > 0.0 => {
                let ratio = p.published_rate / events_per_sec;
                row(
                    "7",
                    &format!("peer: {}", self.peer.describe()),
                    format!("**{ratio:.1}×** the peer's throughput"),
                    "≥ 20×",
                    if *complete {
                        verdict(ratio >= 20.0)
                    } else {
                        "incomplete"
                    },
                );
            }
            (other, _) => row("7", "Quix Streams peer", other.describe(), "≥ 20×", "—"),
        }
        self.kstreams_rows(&mut row);
        for r in &self.scale {
            match r {
                Ok(r) => {
                    let ratio = |x: f64| x / r.raw;
                    row(
                        "8",
                        &format!(
                            "scale: {} events over {} stores: raw / last applied / final answers on the output topic",
                            thousands(r.events),
                            thousands(u64::from(r.stores))
                        ),
                        format!(
                            "{} / {} ({:.2}×) / {} events/s ({:.2}×), RSS {}",
                            thousands(r.raw as u64),
                            thousands(r.pipeline.applied_rate as u64),
                            ratio(r.pipeline.applied_rate),
                            thousands(r.pipeline.published_rate as u64),
                            ratio(r.pipeline.published_rate),
                            r.rss.map_or_else(
                                || "not read".to_string(),
                                |b| format!("{:.1} MB", b as f64 / 1e6)
                            )
                        ),
                        "",
                        "",
                    );
                }
                Err(err) => row("8", "scale", format!("failed: {err}"), "", "—"),
            }
        }
        s
    }

    /// Step 7's reference check and the Kafka Streams peer beside the service, row by row.
    fn kstreams_rows(&self, row: &mut impl FnMut(&str, &str, String, &str, &str)) {
        match &self.reference {
            Some(Ok((stores, wrong))) => row(
                "7",
                "reference answers: the service's state machine over the preload in event-time order (what a peer is verified against)",
                format!("{stores} stores; the service's final answers differ on {wrong}"),
                "0 differ",
                verdict(*wrong == 0),
            ),
            Some(Err(e)) => row("7", "reference answers", format!("failed: {e}"), "", "—"),
            None => {}
        }
        let ks = match &self.kstreams {
            kstreams::Outcome::Ran(r) => r,
            other => {
                row("7", "Kafka Streams peer", other.describe(), "> 1×", "—");
                return;
            }
        };
        let peer = format!("kafka-streams {}", ks.version);
        let p = self.pipeline.as_ref();
        let ratio = p.map_or(f64::NAN, |p| p.published_rate / ks.published_rate);
        row(
            "7",
            &format!(
                "{peer} (verified: all {} stores' final values on its output topic equal the reference): first record → final answers on the output topic",
                ks.stores
            ),
            format!(
                "service {} events/s, peer {} events/s ({:.2} s; {} events/s to its last record): **{ratio:.1}×**",
                p.map_or_else(|| "?".into(), |p| thousands(p.published_rate as u64)),
                thousands(ks.published_rate as u64),
                ks.published_secs,
                thousands(ks.applied_rate as u64),
            ),
            "> 1× (SPEC: beat the peers)",
            verdict(ratio > 1.0),
        );
        let per_m = |cpu: f64, events: u64| cpu / (events.max(1) as f64 / 1e6);
        let ours_cpu = p.and_then(|p| p.cpu_secs);
        row(
            "7",
            "CPU seconds per million events (whole process, all threads, first record → done)",
            format!(
                "service {}, peer {:.1}",
                ours_cpu.map_or_else(|| "?".into(), |c| format!("{:.1}", per_m(c, ks.events))),
                per_m(ks.cpu_seconds, ks.events)
            ),
            "",
            "",
        );
        let mb =
            |b: Option<u64>| b.map_or_else(|| "?".into(), |b| format!("{:.0} MB", b as f64 / 1e6));
        row(
            "7",
            "RSS once the replay is done (peak)",
            format!(
                "service {} ({}), peer {} ({}; JVM default heap)",
                mb(self.rss_after_replay),
                mb(p.and_then(|p| p.rss_peak)),
                mb(ks.rss),
                mb(ks.rss_peak)
            ),
            "",
            "",
        );
        let secs = |s: Option<f64>| s.map_or_else(|| "?".into(), |s| format!("{s:.1} s"));
        row(
            "7",
            "process start → first record on the output topic",
            format!(
                "service {}, peer {}",
                secs(p.and_then(|p| p.first_output_secs)),
                secs(ks.first_output_secs)
            ),
            "",
            "",
        );
        let mut restarts = String::new();
        for r in &ks.restarts {
            let _ = write!(
                restarts,
                "; peer, {}: {:.1} s ({} changelog records restored in {:.1} s){}",
                r.label,
                r.seconds,
                thousands(r.restored_records),
                r.restore_seconds,
                if r.wrong.is_empty() {
                    String::new()
                } else {
                    format!(", **{} stores wrong**", r.wrong.len())
                }
            );
        }
        row(
            "7",
            "kill -9 → restarted and caught up, answers checked (service: its replay, against its answers before the kill; peer: its changelog restore, against the reference)",
            format!(
                "service {}{restarts}",
                self.recovery.as_ref().map_or_else(
                    || "not measured".into(),
                    |r| if r.wrong == 0 {
                        format!("{:.1} s (ready, every answer as before the kill)", r.seconds)
                    } else {
                        format!(
                            "{:.1} s to ready, but **{} stores' answers differ from before the kill**",
                            r.seconds, r.wrong
                        )
                    }
                )
            ),
            "",
            "",
        );
    }

    /// Replaces the table between the markers in `path` (appends it if there are none).
    pub fn write_into(&self, path: &Path) -> Result<()> {
        let old = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(Error::Io {
                    what: format!("reading {}", path.display()),
                    source: e,
                });
            }
        };
        let section = format!("{BEGIN}\n{}{END}", self.markdown());
        let new = match (old.find(BEGIN), old.find(END)) {
            (Some(b), Some(e)) if b < e => {
                format!("{}{section}{}", &old[..b], &old[e + END.len()..])
            }
            _ if old.is_empty() => format!("{section}\n"),
            _ => format!("{}\n\n{section}\n", old.trim_end()),
        };
        std::fs::write(path, new).map_err(Error::io(format!("writing {}", path.display())))
    }
}

/// A result with the step's CPU split after it, when /proc could be read.
fn with_cpu(result: String, cpu: Option<&CpuSplit>, cores: usize) -> String {
    match cpu {
        Some(c) => format!("{result}; {}", c.describe(cores)),
        None => result,
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**missed**" }
}

fn wrk_result(w: &WrkResult) -> String {
    format!(
        "{} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms ({} non-2xx, {} socket errors)",
        thousands(w.requests_per_sec as u64),
        w.p50_ms,
        w.p99_ms,
        w.max_ms,
        w.non_2xx,
        w.socket_errors
    )
}

/// The service's record → state p50 and p99 minus the floor's (ms). Each side is a percentile
/// of its own population, so these bound nothing: the slowest records at the broker need not
/// be the slowest in the service. The sign is kept; a negative difference is reported as such.
fn over_floor(state: &Latencies, floor: &Latencies) -> (f64, f64) {
    (state.p50 - floor.p50, state.p99 - floor.p99)
}

fn lat(l: &Latencies) -> String {
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} samples)",
        l.p50,
        l.p99,
        l.max,
        thousands(l.samples)
    )
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn command_line() -> String {
    let mut args = std::env::args();
    let exe = args.next().map_or_else(
        || "waittimes".to_string(),
        |a| {
            Path::new(&a)
                .file_name()
                .map_or(a.clone(), |f| f.to_string_lossy().into_owned())
        },
    );
    std::iter::once(exe)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `git rev-parse --short HEAD`, with `-dirty` when the tree has changes; "unknown" without git.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(id) if !id.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{id}-dirty") } else { id }
        }
        _ => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_the_floor_is_the_difference_of_percentiles() {
        let state = Latencies {
            p50: 485.2,
            p99: 4720.0,
            max: 5000.0,
            samples: 10,
        };
        let floor = Latencies {
            p50: 480.0,
            p99: 4725.5,
            max: 4800.0,
            samples: 12,
        };
        let (p50, p99) = over_floor(&state, &floor);
        assert!((p50 - 5.2).abs() < 1e-9, "{p50}");
        assert!((p99 + 5.5).abs() < 1e-9, "{p99}");
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(2_000_000), "2,000,000");
    }

    #[test]
    fn replaces_only_the_marked_section() {
        let dir = std::env::temp_dir().join(format!("waittimes-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("B.md");
        std::fs::write(
            &path,
            format!("# Title\n\n{BEGIN}\nold\n{END}\n\nDiscussion.\n"),
        )
        .expect("write");
        let args = <BenchCli as clap::Parser>::parse_from(["bench"]).args;
        let report = Report::new(&args);
        report.write_into(&path).expect("write_into");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("# Title\n\n"));
        assert!(text.ends_with("\n\nDiscussion.\n"));
        assert!(!text.contains("\nold\n"));
        assert!(text.contains("| step | measure |"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[derive(clap::Parser)]
    struct BenchCli {
        #[command(flatten)]
        args: BenchArgs,
    }
}
