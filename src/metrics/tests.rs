use std::sync::Arc;
use std::time::{Duration, Instant};

use super::events::{Admission, LOG_WINDOW, LOGS_PER_WINDOW, LogLimiter};
use super::*;
use crate::domain::{Basis, StoreWait};

fn topic(kind: InputKind) -> String {
    match kind {
        InputKind::Orders => "pizza_orders_avro",
        InputKind::Completed => "pizza_orders_completed_avro",
        InputKind::Cancelled => "pizza_orders_cancelled_avro",
    }
    .to_owned()
}

fn setup() -> (Metrics, Answers, Arc<Health>) {
    let snapshot = Answers::default();
    let health = Arc::new(Health::new());
    let metrics = Metrics::new(topic, snapshot.clone(), health.clone());
    (metrics, snapshot, health)
}

fn store(id: StoreId, wait: Option<i32>, observations: u32) -> StoreWait {
    StoreWait {
        basis: if wait.is_some() {
            Basis::Live
        } else {
            Basis::None
        },
        observations,
        ..StoreWait::without_events(id, wait)
    }
}

fn render(metrics: &Metrics) -> String {
    metrics.render().unwrap()
}

/// The value of the sample line that starts with `series ` (name plus labels, exactly).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

/// Every family name as announced by `# TYPE`.
fn families(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.strip_prefix("# TYPE ")?.split(' ');
            Some((it.next()?.to_owned(), it.next()?.to_owned()))
        })
        .collect()
}

/// One update of everything, as the pipeline would do it.
fn touch_everything(metrics: &Metrics, snapshot: &Answers, health: &Health) {
    health.set_ok(crate::health::Condition::CaughtUp);
    metrics.event(InputKind::Orders, EventOutcome::Applied);
    DeadLettered {
        topic: "pizza_orders_completed_avro",
        partition: 3,
        offset: 42,
        reason: DeadLetterReason::Framing,
        error: "no magic byte",
    }
    .emit(metrics);
    DeadLetterFailed {
        error: &"queue full",
    }
    .emit(metrics);
    metrics.observation(ObservationSource::Measured);
    metrics.set_consumer_lag("pizza_orders_avro", 0, 17);
    metrics.observe_processing_latency(1_000, 1_003);
    WaitPublished {
        store_id: 1,
        wait_time_minutes: 12,
        updated_at_ms: Some(1_000),
        now_ms: 1_500,
    }
    .emit(metrics);
    metrics.set_open_orders(5);
    metrics.set_held_terminals(2);
    OrdersExpired {
        kind: ExpiryKind::OpenOrder,
        count: 3,
    }
    .emit(metrics);
    EmitFailed {
        store_id: 1,
        error: &"timed out",
    }
    .emit(metrics);
    FeatureEventLate {
        store_id: 2,
        at: 1_000,
        window_start_ms: 0,
        stream_time_ms: 400_000,
    }
    .emit(metrics);
    FeatureWindowPublished {
        store_id: 2,
        window_start_ms: 0,
    }
    .emit(metrics);
    PriorsLoaded {
        stores: 10,
        elapsed: Duration::from_millis(20),
    }
    .emit(metrics);
    metrics.schema_registry_request(RegistryOutcome::Ok);
    SchemaRegistryFailed {
        schema_id: Some(7),
        outcome: RegistryOutcome::NotFound,
        error: &"404",
    }
    .emit(metrics);
    metrics.http_request("/stores/{id}/wait", 200);
    snapshot.publish(store(1, Some(12), 4));
}

/// The metric names as they must render, with their types.
pub(crate) const EXPECTED_FAMILIES: [(&str, &str); 27] = [
    ("waittimes_events", "counter"),
    ("waittimes_dead_letters", "counter"),
    ("waittimes_dead_letter_failures", "counter"),
    ("waittimes_observations", "counter"),
    ("waittimes_consumer_lag_records", "gauge"),
    ("waittimes_processing_latency_seconds", "histogram"),
    ("waittimes_emit_latency_seconds", "histogram"),
    ("waittimes_open_orders", "gauge"),
    ("waittimes_held_terminals", "gauge"),
    ("waittimes_expired_orders", "counter"),
    ("waittimes_emits", "counter"),
    ("waittimes_feature_windows", "counter"),
    ("waittimes_feature_late_events", "counter"),
    ("waittimes_priors_loaded", "gauge"),
    ("waittimes_schema_registry_requests", "counter"),
    ("waittimes_http_requests", "counter"),
    ("waittimes_mispartitioned_records", "counter"),
    ("waittimes_answers_table_records", "counter"),
    ("waittimes_http_streams_open", "gauge"),
    ("waittimes_http_streams_rejected", "counter"),
    ("waittimes_http_stream_events", "counter"),
    ("waittimes_http_stream_skipped_answers", "counter"),
    ("waittimes_build", "info"),
    ("waittimes_stores", "gauge"),
    ("waittimes_store_wait_time_minutes", "gauge"),
    ("waittimes_store_observations", "gauge"),
    ("waittimes_ready", "gauge"),
];

#[test]
fn every_family_renders_with_its_type() {
    let (metrics, snapshot, health) = setup();
    touch_everything(&metrics, &snapshot, &health);
    let text = render(&metrics);
    let got = families(&text);
    for (name, kind) in EXPECTED_FAMILIES {
        assert!(
            got.iter().any(|(n, k)| n == name && k == kind),
            "missing {name} {kind} in\n{text}"
        );
    }
    assert_eq!(
        got.len(),
        EXPECTED_FAMILIES.len(),
        "unexpected families in\n{text}"
    );
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn counters_end_in_total_exactly_once() {
    let (metrics, snapshot, health) = setup();
    touch_everything(&metrics, &snapshot, &health);
    let text = render(&metrics);
    assert!(!text.contains("_total_total"));
    for (name, kind) in EXPECTED_FAMILIES {
        if kind == "counter" {
            assert!(!name.ends_with("_total"), "{name}");
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{name}_total"))),
                "no {name}_total sample in\n{text}"
            );
        }
    }
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("waittimes_"), "{line}");
    }
}

#[test]
fn labels_as_designed() {
    let (metrics, snapshot, health) = setup();
    touch_everything(&metrics, &snapshot, &health);
    let text = render(&metrics);
    let expect = [
        (
            r#"waittimes_events_total{topic="pizza_orders_avro",outcome="applied"}"#,
            1.0,
        ),
        (
            r#"waittimes_events_total{topic="pizza_orders_completed_avro",outcome="dead_lettered"}"#,
            1.0,
        ),
        (
            r#"waittimes_dead_letters_total{topic="pizza_orders_completed_avro",reason="framing"}"#,
            1.0,
        ),
        ("waittimes_dead_letter_failures_total", 1.0),
        (r#"waittimes_observations_total{source="measured"}"#, 1.0),
        (r#"waittimes_observations_total{source="reported"}"#, 0.0),
        (
            r#"waittimes_consumer_lag_records{topic="pizza_orders_avro",partition="0"}"#,
            17.0,
        ),
        ("waittimes_processing_latency_seconds_count", 1.0),
        (
            r#"waittimes_processing_latency_seconds_bucket{le="0.005"}"#,
            1.0,
        ),
        (
            r#"waittimes_processing_latency_seconds_bucket{le="0.002"}"#,
            0.0,
        ),
        ("waittimes_emit_latency_seconds_count", 1.0),
        ("waittimes_open_orders", 5.0),
        ("waittimes_held_terminals", 2.0),
        (r#"waittimes_expired_orders_total{kind="open_order"}"#, 3.0),
        (
            r#"waittimes_expired_orders_total{kind="held_terminal"}"#,
            0.0,
        ),
        (r#"waittimes_emits_total{outcome="sent"}"#, 1.0),
        (r#"waittimes_emits_total{outcome="failed"}"#, 1.0),
        ("waittimes_priors_loaded", 10.0),
        (
            r#"waittimes_schema_registry_requests_total{outcome="ok"}"#,
            1.0,
        ),
        (
            r#"waittimes_schema_registry_requests_total{outcome="not_found"}"#,
            1.0,
        ),
        (
            r#"waittimes_http_requests_total{route="/stores/{id}/wait",status="200"}"#,
            1.0,
        ),
        ("waittimes_stores", 1.0),
        (r#"waittimes_store_wait_time_minutes{store_id="1"}"#, 12.0),
        (r#"waittimes_store_observations{store_id="1"}"#, 4.0),
        ("waittimes_ready", 0.0),
    ];
    for (series, value) in expect {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    let version = format!(
        r#"waittimes_build_info{{version="{}"}} 1"#,
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&version), "{text}");
    assert!(text.contains("# UNIT waittimes_store_wait_time_minutes minutes"));
    assert!(text.contains("# UNIT waittimes_processing_latency_seconds seconds"));
}

#[test]
fn fixed_label_sets_start_at_zero() {
    let (metrics, _, _) = setup();
    let text = render(&metrics);
    for kind in InputKind::ALL {
        for outcome in EventOutcome::ALL {
            let series = format!(
                r#"waittimes_events_total{{topic="{}",outcome="{}"}}"#,
                topic(kind),
                outcome.as_str()
            );
            assert_eq!(sample(&text, &series), Some(0.0), "{series}");
        }
        for reason in DeadLetterReason::ALL {
            let series = format!(
                r#"waittimes_dead_letters_total{{topic="{}",reason="{}"}}"#,
                topic(kind),
                reason.as_str()
            );
            assert_eq!(sample(&text, &series), Some(0.0), "{series}");
        }
    }
}

#[test]
fn batch_and_other_topic_counting() {
    let (metrics, _, _) = setup();
    metrics.events(InputKind::Cancelled, EventOutcome::Held, 5);
    metrics.event_on_topic("pizza_orders_cancelled_avro", EventOutcome::Held);
    metrics.event_on_topic("waittimes_avro", EventOutcome::Ignored);
    DeadLettered {
        topic: "waittimes_avro",
        partition: 0,
        offset: 1,
        reason: DeadLetterReason::InvalidValue,
        error: "x",
    }
    .emit(&metrics);
    let text = render(&metrics);
    let cases = [
        (
            r#"waittimes_events_total{topic="pizza_orders_cancelled_avro",outcome="held"}"#,
            6.0,
        ),
        (
            r#"waittimes_events_total{topic="waittimes_avro",outcome="ignored"}"#,
            1.0,
        ),
        (
            r#"waittimes_events_total{topic="waittimes_avro",outcome="dead_lettered"}"#,
            1.0,
        ),
        (
            r#"waittimes_dead_letters_total{topic="waittimes_avro",reason="invalid_value"}"#,
            1.0,
        ),
    ];
    for (series, value) in cases {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    }
    assert_eq!(
        metrics.topic(InputKind::Completed),
        "pizza_orders_completed_avro"
    );
}

#[test]
fn processing_latency_only_while_caught_up() {
    let (metrics, _, health) = setup();
    metrics.observe_processing_latency(0, 7_200_000);
    let text = render(&metrics);
    assert_eq!(
        sample(&text, "waittimes_processing_latency_seconds_count"),
        Some(0.0)
    );
    health.set_ok(crate::health::Condition::CaughtUp);
    // A clock behind the record counts as zero, not as a negative latency.
    metrics.observe_processing_latency(2_000, 1_000);
    let text = render(&metrics);
    assert_eq!(
        sample(&text, "waittimes_processing_latency_seconds_count"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "waittimes_processing_latency_seconds_sum"),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"waittimes_processing_latency_seconds_bucket{le="0.001"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn store_gauges_follow_the_snapshot() {
    let (metrics, snapshot, _) = setup();
    snapshot.publish(store(7, None, 0));
    snapshot.publish(store(2, Some(20), 3));
    let text = render(&metrics);
    assert_eq!(sample(&text, "waittimes_stores"), Some(2.0));
    assert_eq!(
        sample(&text, r#"waittimes_store_wait_time_minutes{store_id="2"}"#),
        Some(20.0)
    );
    // No answer, no sample: an absent series, not a fake zero.
    assert_eq!(
        sample(&text, r#"waittimes_store_wait_time_minutes{store_id="7"}"#),
        None
    );
    assert_eq!(
        sample(&text, r#"waittimes_store_observations{store_id="7"}"#),
        Some(0.0)
    );
    // Sorted by store id.
    let two = text.find(r#"store_observations{store_id="2"}"#).unwrap();
    let seven = text.find(r#"store_observations{store_id="7"}"#).unwrap();
    assert!(two < seven);
    snapshot.remove(2);
    let text = render(&metrics);
    assert_eq!(
        sample(&text, r#"waittimes_store_wait_time_minutes{store_id="2"}"#),
        None
    );
}

#[test]
fn ready_gauge_follows_health() {
    let (metrics, _, health) = setup();
    assert_eq!(sample(&render(&metrics), "waittimes_ready"), Some(0.0));
    for c in crate::health::Condition::ALL {
        health.set_ok(c);
    }
    assert_eq!(sample(&render(&metrics), "waittimes_ready"), Some(1.0));
    health.set_shutting_down();
    assert_eq!(sample(&render(&metrics), "waittimes_ready"), Some(0.0));
}

#[test]
fn revoked_partitions_lose_their_lag_series() {
    let (metrics, _, _) = setup();
    for (partition, lag) in [(0, 5), (1, 6)] {
        super::PartitionLag {
            topic: "pizza_orders_avro",
            partition,
            lag,
        }
        .emit(&metrics);
    }
    super::PartitionsRevoked {
        partitions: &[("pizza_orders_avro".to_owned(), 0)],
    }
    .emit(&metrics);
    let text = render(&metrics);
    assert_eq!(
        sample(
            &text,
            r#"waittimes_consumer_lag_records{topic="pizza_orders_avro",partition="0"}"#
        ),
        None
    );
    assert_eq!(
        sample(
            &text,
            r#"waittimes_consumer_lag_records{topic="pizza_orders_avro",partition="1"}"#
        ),
        Some(6.0)
    );
    super::PartitionsRevoked {
        partitions: &[("pizza_orders_avro".to_owned(), 1)],
    }
    .emit(&metrics);
    assert!(!render(&metrics).contains("consumer_lag_records{"));
}

#[test]
fn limiter_logs_the_first_n_per_window_then_summarises() {
    let limiter = LogLimiter::default();
    let t0 = Instant::now();
    for _ in 0..LOGS_PER_WINDOW {
        assert_eq!(
            limiter.admit_at(t0),
            Admission::Log {
                suppressed_before: 0
            }
        );
    }
    for _ in 0..5 {
        assert_eq!(
            limiter.admit_at(t0 + Duration::from_secs(1)),
            Admission::Suppress
        );
    }
    assert_eq!(
        limiter.admit_at(t0 + LOG_WINDOW),
        Admission::Log {
            suppressed_before: 5
        }
    );
    assert_eq!(
        limiter.admit_at(t0 + LOG_WINDOW * 3),
        Admission::Log {
            suppressed_before: 0
        }
    );
}

#[test]
fn every_dead_letter_is_counted_even_when_not_logged() {
    let (metrics, _, _) = setup();
    let n = u64::from(LOGS_PER_WINDOW) * 3;
    for offset in 0..n {
        DeadLettered {
            topic: "pizza_orders_avro",
            partition: 0,
            offset: i64::try_from(offset).unwrap(),
            reason: DeadLetterReason::Malformed,
            error: "bad",
        }
        .emit(&metrics);
    }
    let text = render(&metrics);
    assert_eq!(
        sample(
            &text,
            r#"waittimes_dead_letters_total{topic="pizza_orders_avro",reason="malformed"}"#
        ),
        Some(n as f64)
    );
}

#[test]
fn metrics_clone_shares_state() {
    let (metrics, _, _) = setup();
    let other = metrics.clone();
    std::thread::spawn(move || other.event(InputKind::Orders, EventOutcome::Duplicate))
        .join()
        .unwrap();
    assert_eq!(
        sample(
            &render(&metrics),
            r#"waittimes_events_total{topic="pizza_orders_avro",outcome="duplicate"}"#
        ),
        Some(1.0)
    );
}

/// Counter arrays are indexed by discriminant and filled in `ALL` order: the two must agree.
#[test]
fn all_lists_are_in_discriminant_order() {
    assert!(
        InputKind::ALL
            .iter()
            .enumerate()
            .all(|(i, k)| *k as usize == i)
    );
    assert!(
        EventOutcome::ALL
            .iter()
            .enumerate()
            .all(|(i, k)| *k as usize == i)
    );
    assert!(
        DeadLetterReason::ALL
            .iter()
            .enumerate()
            .all(|(i, k)| *k as usize == i)
    );
    assert!(
        ObservationSource::ALL
            .iter()
            .enumerate()
            .all(|(i, k)| *k as usize == i)
    );
    assert!(
        ExpiryKind::ALL
            .iter()
            .enumerate()
            .all(|(i, k)| *k as usize == i)
    );
    assert!(
        EmitOutcome::ALL
            .iter()
            .enumerate()
            .all(|(i, k)| *k as usize == i)
    );
    assert!(
        RegistryOutcome::ALL
            .iter()
            .enumerate()
            .all(|(i, k)| *k as usize == i)
    );
}

#[test]
fn processing_latency_buckets_resolve_around_ten_milliseconds() {
    let (metrics, _, health) = setup();
    health.set_ok(crate::health::Condition::CaughtUp);
    metrics.observe_processing_latency(1_000, 1_000);
    metrics.observe_processing_latency(1_000, 1_007);
    metrics.observe_processing_latency(1_000, 1_012);
    let text = render(&metrics);
    let bucket = |le: &str| {
        sample(
            &text,
            &format!(r#"waittimes_processing_latency_seconds_bucket{{le="{le}"}}"#),
        )
    };
    assert_eq!(bucket("0.0005"), Some(1.0));
    assert_eq!(bucket("0.005"), Some(1.0));
    assert_eq!(bucket("0.0075"), Some(2.0));
    assert_eq!(bucket("0.01"), Some(2.0));
    assert_eq!(bucket("0.015"), Some(3.0));
}
