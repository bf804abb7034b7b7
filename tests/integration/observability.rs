//! What a live `/metrics` shows of a real run: the emit latency is recorded by the emitter
//! itself, and a partition that moved to another instance keeps no lag series on the old one.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common;
use crate::recovery::{LONG, now_ms, stream, wait_ready};
use crate::service::{Producer, Service, Topics};

const MINUTE: i64 = 60_000;

/// The samples of one metric family in a scrape: `(labels, value)`.
fn samples(metrics: &str, name: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            (metric == name).then(|| (labels.to_string(), value.parse().unwrap_or(f64::NAN)))
        })
        .collect()
}

async fn scrape(svc: &Service) -> String {
    let (status, text) = crate::service::raw_get(svc, "/metrics").await;
    assert_eq!(status, 200);
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_run_records_emit_latency() {
    common::require_stack();
    let t = Topics::create(1).await;
    let svc = Service::start(&t).await;
    svc.wait_ready().await;
    let mut p = Producer::new();
    for e in stream(now_ms() - 5 * MINUTE, 3, 10) {
        e.send(&mut p, &t).await;
    }
    let deadline = Instant::now() + LONG;
    loop {
        let text = scrape(&svc).await;
        let sent = samples(&text, "waittimes_emits_total")
            .iter()
            .filter(|(l, _)| l.contains("outcome=\"sent\""))
            .map(|(_, v)| *v)
            .sum::<f64>();
        let count = samples(&text, "waittimes_emit_latency_seconds_count")
            .iter()
            .map(|(_, v)| *v)
            .sum::<f64>();
        if sent > 0.0 {
            assert_eq!(
                count, sent,
                "every sent wait time is one emit-latency sample:\n{text}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "nothing was emitted:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    svc.stop().await;
}

/// The lag series' `topic`/`partition` label pairs of one instance.
fn lag_series(text: &str) -> BTreeSet<String> {
    samples(text, "waittimes_consumer_lag_records")
        .into_iter()
        .map(|(labels, _)| labels)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_partition_leaves_no_lag_series_behind() {
    common::require_stack();
    let t = Topics::create(2).await;
    let mut p = Producer::new();
    for e in stream(now_ms() - 5 * MINUTE, 4, 10) {
        e.send(&mut p, &t).await;
    }
    let a = Service::start(&t).await;
    let client = reqwest::Client::new();
    wait_ready(&client, &a.base).await;
    // Alone in the group: a series for each of the 3 topics × 2 partitions.
    let deadline = Instant::now() + LONG;
    while lag_series(&scrape(&a).await).len() < 6 {
        assert!(Instant::now() < deadline, "{}", scrape(&a).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A second instance joins the group and takes half of the partitions.
    let b = Service::start(&t).await;
    let deadline = Instant::now() + LONG;
    loop {
        let (sa, sb) = (lag_series(&scrape(&a).await), lag_series(&scrape(&b).await));
        let both: BTreeSet<_> = sa.intersection(&sb).collect();
        let all: BTreeSet<_> = sa.union(&sb).collect();
        if !sb.is_empty() && both.is_empty() && all.len() == 6 && sa.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the rebalance each partition's lag must be reported by its owner only:\n\
             a: {sa:?}\nb: {sb:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    b.stop().await;
    a.stop().await;
}
