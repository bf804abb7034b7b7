//! Step 8: how the catch-up rate changes with the size of the chain. The same number of
//! simulated events spread over each store count, every count on fresh topics: raw consume of
//! those records beside the service's replay of them, so each row carries its own ratio.
//!
//! More stores mean a larger state (more hash-map entries, colder caches) and more answers to
//! publish at the end; fewer stores mean longer per-store windows and more work per answer.

use std::path::Path;

use super::service::{Pipeline, Service, ServiceConfig};
use super::{BenchArgs, Result, Topics, load, say, watch};
use crate::config::Config;

/// One store count's figures.
#[derive(Debug, Clone)]
pub struct ScaleRow {
    pub stores: u32,
    pub events: u64,
    /// Raw consume of the same records, the service's consumer config.
    pub raw: f64,
    pub pipeline: Pipeline,
    /// The service's resident memory once the replay is published.
    pub rss: Option<u64>,
}

/// Runs every `--scale-stores` count; a count that fails is reported and the others still run.
pub(super) async fn run(
    args: &BenchArgs,
    config: &Config,
    run_id: &str,
    work: &Path,
) -> Vec<Result<ScaleRow, String>> {
    let mut rows = Vec::new();
    for &stores in &args.scale_stores {
        say(format!(
            "8/8 scale: {} events over {stores} stores",
            args.scale_events
        ));
        let row = one(args, config, stores, &format!("{run_id}_s{stores}"), work).await;
        match &row {
            Ok(r) => say(format!(
                "    raw {:.0} records/s, applied {:.0} events/s, published {:.0} events/s",
                r.raw, r.pipeline.applied_rate, r.pipeline.published_rate
            )),
            Err(err) => say(format!("    failed: {err}")),
        }
        rows.push(row.map_err(|e| e.to_string()));
    }
    rows
}

async fn one(
    args: &BenchArgs,
    config: &Config,
    stores: u32,
    prefix: &str,
    work: &Path,
) -> Result<ScaleRow> {
    let topics = Topics::new(prefix);
    crate::datagen::create_topics(&config.admin_config(), &topics.all(), 3, -1, &[]).await?;
    let mut sized = args.clone();
    sized.events = args.scale_events;
    sized.stores = stores;
    let preload = load::preload(&sized, config, &topics).await?;
    let total = preload.events();
    let service_cfg = ServiceConfig::new(&sized, config, &topics, &format!("{prefix}_service"));
    let raw = load::raw_consume(
        service_cfg.consumer_config()?,
        &topics,
        total,
        &format!("{prefix}_raw"),
    )
    .await?;
    let watcher = watch::OutputWatcher::start(config, &topics.wait_times, prefix)?;
    let mut svc = Service::spawn(&service_cfg, &work.join(format!("service-{stores}.log")))?;
    let replay = svc.replay(total, &watcher).await;
    let rss = svc.rss_bytes();
    svc.stop().await;
    watcher.stop();
    Ok(ScaleRow {
        stores,
        events: total,
        raw,
        pipeline: replay?,
        rss,
    })
}
