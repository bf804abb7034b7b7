//! The default (backlog) estimator on the live stack: a rush builds a queue, and the minute
//! published over HTTP and on the wait-times topic moves ahead of the window's rolling mean,
//! which still describes the calm before.

use crate::common::{self, now_ms};
use crate::service::{Producer, Service, Topics, published};

const MINUTE: i64 = 60_000;

/// One kitchen slot, 5 minutes of prep, 15 of rack and delivery. Calm: an order every 10
/// minutes waits 20. Rush: an order every 2 minutes, each adding 3 minutes of queue (order `k`
/// of the rush waits `20 + 3k`). Events go out in event-time order, each acknowledged before
/// the next, so the service applies them in that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rush_moves_the_published_minute_ahead_of_the_rolling_mean() {
    common::require_stack();
    let t = Topics::create(1).await;
    let svc = Service::start_with(&t, &[("WAITTIMES__STATE__ESTIMATOR", "backlog".into())]).await;
    svc.wait_ready().await;
    let store = 7;
    let base = now_ms() - 120 * MINUTE;
    // (time, order id, completes) in event-time order; waits are placement → completion.
    let mut events: Vec<(i64, i32, bool)> = Vec::new();
    for k in 0..7 {
        let placed = base + k * 10 * MINUTE;
        events.push((placed, 100 + k as i32, false));
        events.push((placed + 20 * MINUTE, 100 + k as i32, true));
    }
    let rush = base + 70 * MINUTE;
    for k in 0..24 {
        let placed = rush + 2 * k * MINUTE;
        events.push((placed, 200 + k as i32, false));
        events.push((placed + (20 + 3 * k) * MINUTE, 200 + k as i32, true));
    }
    let last_placed = rush + 46 * MINUTE;
    events.retain(|&(at, _, _)| at <= last_placed);
    events.sort_by_key(|&(at, id, done)| (at, done, id));
    let mut p = Producer::new();
    for &(at, id, done) in &events {
        if done {
            p.completed(&t, store, id, 60, 840, at).await;
        } else {
            p.order(&t, store, id, at).await;
        }
    }
    let completions = events.iter().filter(|e| e.2).count();
    let answer = svc
        .wait_for_store(store, |b| {
            b["open_orders"].as_u64() == Some((events.len() - 2 * completions) as u64)
                && b["updated_at"].is_string()
        })
        .await;
    let open = answer["open_orders"].as_i64().expect("open orders");
    let published_minute = answer["wait_time_minutes"].as_i64().expect("a live answer");
    let rolling = answer["mean_minutes"].as_f64().expect("a window mean");
    let p90 = answer["p90_minutes"].as_f64().expect("a p90");
    assert_eq!(answer["basis"], "live", "{answer}");
    // A new order now finds `open` orders ahead: the rush's queue, 3 minutes each beyond the
    // calm 20 minutes; the window's mean is a calm kitchen's.
    assert!(open >= 15, "{answer}");
    assert!(rolling < 30.0, "{answer}");
    // 39 minutes against 27.5 when last run: the fit extrapolates no further than 1.5× the
    // largest queue its completions found, so it still under-promises this rush (a new order
    // would wait 20 + 3·24 = 92 minutes), but it is well ahead of the window.
    assert!(
        published_minute as f64 >= rolling + 10.0,
        "the published minute stays with the rolling mean: {answer}"
    );
    assert!(p90 >= published_minute as f64, "{answer}");
    // The same minute goes out on the wait-times topic.
    let out = published(&t, |m| m.get(&store) == Some(&(published_minute as i32))).await;
    assert_eq!(out.get(&store), Some(&(published_minute as i32)));
    svc.stop().await;
}
