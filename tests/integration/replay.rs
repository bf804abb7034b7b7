//! What a restart replays, and when the service may call itself caught up, on a real broker:
//! the replay horizon is measured in the records' own CreateTime, and "caught up" and the priors
//! load use the true end of each partition, even when the input arrived in multi-record batches.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::Value;

use crate::common;
use crate::recovery::{Event, LONG, now_ms, readiness, stores};
use crate::service::{Producer, Service, Topics};

const MINUTE: i64 = 60_000;

/// One store's orders `first_id..first_id + n`, placed `base` on, one a minute, each completed
/// `wait_min` minutes later.
fn completions(store: i32, first_id: i32, base: i64, n: i32, wait_min: i64) -> Vec<Event> {
    let mut events = Vec::new();
    for id in first_id..first_id + n {
        let at = base + i64::from(id - first_id) * MINUTE;
        events.push(Event::Order { store, id, at });
        events.push(Event::Completed {
            store,
            id,
            at: at + wait_min * MINUTE,
        });
    }
    events
}

/// Waits until `/stores` has exactly the stores in `want` and stays so for a second.
async fn settled(client: &reqwest::Client, base: &str, want: &[i64]) -> HashMap<i64, Value> {
    let mut want = want.to_vec();
    want.sort_unstable();
    let deadline = Instant::now() + LONG;
    let mut last: Option<HashMap<i64, Value>> = None;
    loop {
        let now = stores(client, base).await;
        let mut ids: Vec<i64> = now.keys().copied().collect();
        ids.sort_unstable();
        if ids == want && last.as_ref() == Some(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{base}: wanted stores {want:?}, have {ids:?}: {now:#?}"
        );
        last = Some(now);
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
}

/// Records older than `now − horizon` by CreateTime are not replayed, records inside it are, and
/// the stores a restart knows answer exactly as the run that saw everything live. All records
/// are appended seconds apart, so a broker that looked up offsets by append time (or a service
/// that replayed from the beginning) would replay the old ones too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_replays_the_horizon_by_create_time_and_no_further() {
    common::require_stack();
    let t = Topics::create(2).await;
    let horizon = 90 * MINUTE;
    let settings = [("WAITTIMES__STATE__REPLAY_HORIZON", "90m".to_string())];
    // The live run: assigned while the topics are empty, so it reads everything produced next.
    let live = Service::start_with(&t, &settings).await;
    live.wait_ready().await;

    let now = now_ms();
    let mut events = Vec::new();
    // Store 1: only long before the horizon (its last record 20 minutes outside it).
    events.extend(completions(1, 0, now - horizon - 40 * MINUTE, 10, 10));
    // Store 2: inside the horizon but older than the window: replayed, answer as live.
    events.extend(completions(2, 0, now - horizon + 10 * MINUTE, 10, 12));
    // Store 3: old records outside the horizon and recent ones. Replay starts at the first record
    // at or after the horizon, so old records behind newer ones in a partition are read again;
    // they cannot change the answer (their orders expired, their completions left the window).
    events.extend(completions(3, 0, now - horizon - 60 * MINUTE, 10, 45));
    events.extend(completions(3, 100, now - 20 * MINUTE, 10, 8));
    // Store 4: recent only.
    events.extend(completions(4, 0, now - 15 * MINUTE, 10, 14));
    let mut p = Producer::new();
    for e in &events {
        e.send(&mut p, &t).await;
    }
    let client = reqwest::Client::new();
    let seen_live = settled(&client, &live.base, &[1, 2, 3, 4]).await;
    live.stop().await;

    // The restart: the same group, a new process, the input already there.
    let restarted = Service::start_with(&t, &settings).await;
    restarted.wait_ready().await;
    let replayed = settled(&client, &restarted.base, &[1, 2, 3, 4]).await;
    for store in [2, 3, 4] {
        assert_eq!(
            replayed[&store], seen_live[&store],
            "store {store}: the restart's answer differs from the live run's"
        );
    }
    assert_eq!(
        replayed[&2]["wait_time_minutes"], 12,
        "store 2 (inside the horizon, outside the window) was replayed"
    );
    // Store 1's records all lie before the horizon: the restart knows it only from the value the
    // live run published (its prior), with no observation and no stream time of its own.
    let one = &replayed[&1];
    assert_eq!(
        (&one["basis"], &one["observations"], &one["updated_at_ms"]),
        (&Value::from("prior"), &Value::from(0), &Value::Null),
        "store 1 exists only before the horizon, yet the restart replayed it: {one}"
    );
    assert_eq!(one["wait_time_minutes"], seen_live[&1]["wait_time_minutes"]);
    restarted.stop().await;
}

/// The first moment the service says it is ready, it already holds every record that was in the
/// topics when it started (input and priors alike), though they arrived in multi-record batches:
/// the end offsets it waits for are the true ends of the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_means_every_batched_record_and_prior_is_applied() {
    common::require_stack();
    const STORES: i32 = 40;
    let t = Topics::create(1).await;
    let now = now_ms();
    let mut p = Producer::new();
    // Priors for stores 101..=140, which have no input: only the priors load can know them.
    let priors: Vec<(i32, i32)> = (1..=STORES).map(|s| (100 + s, s % 30 + 1)).collect();
    p.seed_priors_batch(&t, &priors).await;
    let mut events = Vec::new();
    for store in 1..=STORES {
        events.extend(completions(
            store,
            0,
            now - 25 * MINUTE,
            12,
            i64::from(store % 17 + 3),
        ));
    }
    events.sort_by_key(Event::at);
    p.batch(&t, &events).await;
    let probe: BaseConsumer = common::client_config()
        .set("group.id", common::unique("probe"))
        .create()
        .expect("probe consumer");
    let (_, end) = probe
        .fetch_watermarks(&t.completed, 0, common::TIMEOUT)
        .expect("watermarks");
    assert_eq!(
        end,
        i64::from(STORES) * 12,
        "every completion is in the log"
    );

    let svc = Service::start(&t).await;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + LONG;
    let mut not_ready = 0;
    // Poll fast: the first 200 is the moment that matters.
    let at_ready = loop {
        match readiness(&client, &svc.base).await {
            Some((200, _)) => break stores(&client, &svc.base).await,
            _ => not_ready += 1,
        }
        assert!(Instant::now() < deadline, "never ready");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let mut expected: Vec<i64> = (1..=STORES)
        .map(i64::from)
        .chain(priors.iter().map(|&(s, _)| i64::from(s)))
        .collect();
    expected.sort_unstable();
    let later = settled(&client, &svc.base, &expected).await;
    assert_eq!(
        at_ready.len(),
        later.len(),
        "stores known at the first ready vs later ({not_ready} not-ready probes before)"
    );
    for (store, answer) in &later {
        assert_eq!(
            at_ready.get(store),
            Some(answer),
            "store {store}: answer at the first ready differs from the settled one"
        );
    }
    for &(store, minutes) in &priors {
        assert_eq!(later[&i64::from(store)]["wait_time_minutes"], minutes);
        assert_eq!(later[&i64::from(store)]["basis"], "prior");
    }
    svc.stop().await;
}
