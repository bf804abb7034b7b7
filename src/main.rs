//! The `waittimes` command: parses the command line and calls into the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "waittimes",
    version,
    about = "Live per-store wait times from Kafka order events"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service: consume the order topics, publish wait times, serve HTTP and metrics.
    ///
    /// Every configuration key can be overridden by an environment variable
    /// WAITTIMES__SECTION__KEY, e.g. WAITTIMES__KAFKA__BOOTSTRAP_SERVERS.
    #[command(after_long_help = waittimes::config::reference_text())]
    Run {
        /// The TOML configuration file (see config/default.toml for every key).
        #[arg(long, short, env = "WAITTIMES_CONFIG")]
        config: Option<PathBuf>,
        /// Log format; overrides log.format.
        #[arg(long, value_enum)]
        log_format: Option<LogFormat>,
    },
    /// Generate order events: a replica of the workshop's Datagen connectors, or a coherent
    /// simulated chain.
    ///
    /// Connects as `run` does: the same --config file (WAITTIMES_CONFIG) and
    /// WAITTIMES__SECTION__KEY variables, flags over both.
    #[command(after_long_help = waittimes::config::reference_text())]
    Datagen(waittimes::datagen::DatagenArgs),
    /// Seed the wait-times topic with the workshop's stale values (values only, no key).
    ///
    /// Connects as `run` does: the same --config file (WAITTIMES_CONFIG) and
    /// WAITTIMES__SECTION__KEY variables, flags over both.
    #[command(after_long_help = waittimes::config::reference_text())]
    SeedPriors(waittimes::datagen::SeedPriorsArgs),
    /// Measure throughput, latency, memory and HTTP against a running broker and registry, and
    /// print a Markdown table (see BENCHMARKS.md).
    ///
    /// Connects as `run` does: the same --config file (WAITTIMES_CONFIG) and
    /// WAITTIMES__SECTION__KEY variables, flags over both.
    #[command(after_long_help = waittimes::config::reference_text())]
    Bench(waittimes::bench::BenchArgs),
    /// Score every estimator against the coherent simulation's truth, in process (no broker):
    /// for each order the answer that stood at its placement versus its real wait. Prints
    /// Markdown tables (see ESTIMATES.md); --plot writes one store's day as a PNG.
    Score(waittimes::score::ScoreArgs),
    /// Load and validate the configuration, print it with secrets redacted, and exit.
    CheckConfig {
        #[arg(long, short, env = "WAITTIMES_CONFIG")]
        config: Option<PathBuf>,
    },
    /// GET a URL (by default this service's /health/live) and exit 0 on a 2xx answer, 1
    /// otherwise: the container's HEALTHCHECK, which has no curl.
    Probe {
        #[arg(long, env = "WAITTIMES_PROBE_URL", default_value = waittimes::probe::DEFAULT_URL)]
        url: String,
        /// Bound on the whole request, connect included (e.g. 2s, 500ms).
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, log_format } => {
            let config = waittimes::config::Config::load(config.as_deref())
                .context("invalid configuration")?;
            let json = match log_format {
                Some(LogFormat::Json) => true,
                Some(LogFormat::Human) => false,
                None => config.log.format == waittimes::config::LogFormat::Json,
            };
            init_logging(&config.log.level, json)?;
            tracing::info!(config = %config.redacted_summary(), "starting");
            config.log_warnings();
            runtime()?.block_on(waittimes::service::run(config, shutdown_signal()))?;
            Ok(())
        }
        Command::Datagen(args) => {
            init_logging("info", false)?;
            let summary = runtime()?.block_on(waittimes::datagen::run(args))?;
            print!("{summary}");
            Ok(())
        }
        Command::SeedPriors(args) => {
            init_logging("info", false)?;
            runtime()?.block_on(waittimes::datagen::seed_priors(args))?;
            Ok(())
        }
        Command::Bench(args) => {
            init_logging("warn", false)?;
            let report = runtime()?.block_on(waittimes::bench::run(args))?;
            print!("{}", report.markdown());
            Ok(())
        }
        Command::Score(args) => {
            let started = std::time::Instant::now();
            let report = waittimes::score::run(&args)?;
            print!("{report}");
            eprintln!("scored in {:.1} s", started.elapsed().as_secs_f64());
            Ok(())
        }
        Command::CheckConfig { config } => {
            let config = waittimes::config::Config::load(config.as_deref())
                .context("invalid configuration")?;
            println!("{}", config.redacted_summary());
            Ok(())
        }
        Command::Probe { url, timeout } => {
            // One line either way, for the orchestrator's health log; no backtrace.
            match runtime()?.block_on(waittimes::probe::probe(&url, timeout)) {
                Ok(status) => {
                    println!("{url}: {status}");
                    Ok(())
                }
                Err(err) => {
                    eprintln!("probe failed: {err}");
                    std::process::exit(1);
                }
            }
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("waittimes-rt")
        .build()
        .context("cannot start the async runtime")
}

fn init_logging(level: &str, json: bool) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .with_context(|| format!("invalid log.level {level:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
