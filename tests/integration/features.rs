//! The feature set end to end: a simulated hour of a coherent chain goes in one window of event
//! time at a time, and every record on the features topic is checked against the values
//! recomputed from the simulation's truth (counts, waits, open orders and the estimate at each
//! window's end, empty windows included); then the Python example reads the same records.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use apache_avro::types::Value;
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use waittimes::datagen::{Sim, SimConfig, SimEvent, Templates};
use waittimes::domain::InputKind;
use waittimes::wire;

use crate::common::{self, TIMEOUT};
use crate::service::{Service, Topics, raw_get};

const MIN: i64 = 60_000;
const DAY: i64 = 24 * 60 * MIN;
const SIZE: i64 = 5 * MIN;
const GRACE: i64 = MIN;
/// `state.window`'s default: the estimate at a window's end is the p50 over this span.
const STATE_WINDOW: i64 = 30 * MIN;
const STORES: u32 = 8;

/// What the service should publish for one store and window, from the simulation alone.
#[derive(Debug, Clone, PartialEq)]
struct Expected {
    store: i32,
    start: i64,
    placed: i32,
    completed: i32,
    cancelled: i32,
    waits_ms: Vec<i64>,
    open_at_end: i32,
    estimate_at_end: Option<i32>,
}

/// Linear-interpolation percentile of sorted values, as the README defines it.
fn percentile(sorted: &[i64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let h = last as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(last);
    let (a, b) = (sorted[lo] as f64, sorted[hi] as f64);
    Some(a + (h - lo as f64) * (b - a))
}

/// Every window the service must have closed, per store: from the store's first window to the
/// last whose end + grace its stream time (its last event) has reached, empty ones included.
fn expected(events: &[SimEvent]) -> BTreeMap<(i32, i64), Expected> {
    let mut by_store: HashMap<i32, Vec<&SimEvent>> = HashMap::new();
    for e in events {
        by_store.entry(e.record.store_id()).or_default().push(e);
    }
    let mut out = BTreeMap::new();
    for (store, evs) in by_store {
        let first = evs.iter().map(|e| e.time_ms).min().unwrap_or_default();
        let last = evs.iter().map(|e| e.time_ms).max().unwrap_or_default();
        let mut start = first.div_euclid(SIZE) * SIZE;
        while start + SIZE + GRACE <= last {
            let end = start + SIZE;
            let inside = |e: &&&SimEvent| e.time_ms >= start && e.time_ms < end;
            let count = |kind: InputKind| {
                evs.iter()
                    .filter(inside)
                    .filter(|e| e.kind() == kind)
                    .count() as i32
            };
            let mut waits_ms: Vec<i64> = evs
                .iter()
                .filter(inside)
                .filter(|e| e.kind() == InputKind::Completed)
                .map(|e| e.time_ms - e.placed_at_ms)
                .collect();
            waits_ms.sort_unstable();
            // The store's answer just before its first event at or after the end: everything
            // before the end applied (each window went in, and was consumed, before the next).
            let before: Vec<&&SimEvent> = evs.iter().filter(|e| e.time_ms < end).collect();
            let placed_before = before
                .iter()
                .filter(|e| e.kind() == InputKind::Orders)
                .count();
            let open_at_end = (placed_before - (before.len() - placed_before)) as i32;
            let stream = before.iter().map(|e| e.time_ms).max().unwrap_or(first);
            let mut rolling: Vec<i64> = before
                .iter()
                .filter(|e| e.kind() == InputKind::Completed && e.time_ms > stream - STATE_WINDOW)
                .map(|e| e.time_ms - e.placed_at_ms)
                .collect();
            rolling.sort_unstable();
            let estimate_at_end =
                percentile(&rolling, 0.5).map(|ms| (ms / 60_000.0).round().max(0.0) as i32);
            out.insert(
                (store, start),
                Expected {
                    store,
                    start,
                    placed: count(InputKind::Orders),
                    completed: count(InputKind::Completed),
                    cancelled: count(InputKind::Cancelled),
                    waits_ms,
                    open_at_end,
                    estimate_at_end,
                },
            );
            start = end;
        }
    }
    out
}

fn int(fields: &HashMap<String, Value>, name: &str) -> i64 {
    match fields.get(name) {
        Some(Value::Int(v)) => i64::from(*v),
        Some(Value::Long(v) | Value::TimestampMillis(v)) => *v,
        other => panic!("field {name}: {other:?}"),
    }
}

fn opt(fields: &HashMap<String, Value>, name: &str) -> Option<Value> {
    match fields.get(name) {
        Some(Value::Union(0, _)) => None,
        Some(Value::Union(_, v)) => Some((**v).clone()),
        other => panic!("field {name}: {other:?}"),
    }
}

fn opt_double(fields: &HashMap<String, Value>, name: &str) -> Option<f64> {
    opt(fields, name).map(|v| match v {
        Value::Double(d) => d,
        other => panic!("field {name}: {other:?}"),
    })
}

fn close(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
        _ => false,
    }
}

/// The records consumed events so far, as `/metrics` counts them.
async fn consumed(svc: &Service) -> u64 {
    let (status, text) = raw_get(svc, "/metrics").await;
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| l.starts_with("waittimes_events_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The latest 18:00 UTC (the dinner rush of the simulation's profile) from which 75 simulated
/// minutes end before now: the broker takes past timestamps, not future ones.
fn dinner_start(now: i64) -> i64 {
    let latest = now - 75 * MIN;
    let day = (latest - 18 * 60 * MIN).div_euclid(DAY);
    day * DAY + 18 * 60 * MIN
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_hour_gives_the_feature_records_its_truth_implies() {
    common::require_stack();
    let t = Topics::create(3).await;
    let svc = Service::start_with(
        &t,
        &[
            ("WAITTIMES__FEATURES__WINDOW", "5m".into()),
            ("WAITTIMES__FEATURES__GRACE", "1m".into()),
        ],
    )
    .await;
    svc.wait_ready().await;

    // A simulated hour, and ten minutes more so that its last windows close; then ten more
    // for after the restart.
    let start = dinner_start(common::now_ms());
    let templates = Arc::new(Templates::upstream().expect("templates"));
    let sim = Sim::new(
        SimConfig {
            stores: STORES,
            start_ms: start,
            templates,
        },
        17,
    );
    let mut events: Vec<SimEvent> = sim.take_while(|e| e.time_ms < start + 80 * MIN).collect();
    let after_restart = events.split_off(events.partition_point(|e| e.time_ms < start + 70 * MIN));
    assert!(events.len() > 200, "{} events", events.len());

    let topic = |kind: InputKind| match kind {
        InputKind::Orders => t.orders.clone(),
        InputKind::Completed => t.completed.clone(),
        InputKind::Cancelled => t.cancelled.clone(),
    };
    let mut ids = HashMap::new();
    for kind in InputKind::ALL {
        let subject = format!("{}-value", topic(kind));
        ids.insert(
            kind,
            common::register_avro(&subject, wire::upstream_schema(kind)).await,
        );
    }

    // One window of event time at a time, each consumed before the next goes in: the topics'
    // interleaving inside a window cannot change a record, and nothing is late.
    let producer = common::producer();
    let mut sent = 0u64;
    produce_by_window(&svc, &producer, &topic, &ids, &events, &mut sent).await;

    let want = expected(&events);
    let empty = want
        .values()
        .filter(|w| w.placed + w.completed + w.cancelled == 0)
        .count();
    assert!(want.len() >= 40, "{} windows", want.len());

    // Read the topic back through the registry.
    let reader = common::consumer(&common::unique("features-reader"));
    reader.subscribe(&[&t.features]).expect("subscribe");
    let messages = common::recv_n(&reader, want.len()).await;
    common::assert_no_more(&reader, Duration::from_secs(2)).await;
    let mut schemas: HashMap<u32, apache_avro::Schema> = HashMap::new();
    let mut got = BTreeMap::new();
    for m in &messages {
        let (id, body) = common::confluent_unframe(m.payload().expect("a value"));
        if let std::collections::hash_map::Entry::Vacant(slot) = schemas.entry(id) {
            let text = common::schema_text_by_id(id).await;
            slot.insert(apache_avro::Schema::parse_str(&text).expect("schema"));
        }
        let value =
            apache_avro::from_avro_datum(&schemas[&id], &mut &body[..], None).expect("avro");
        let Value::Record(fields) = value else {
            panic!("not a record")
        };
        let fields: HashMap<String, Value> = fields.into_iter().collect();
        let (store, start) = (
            int(&fields, "store_id") as i32,
            int(&fields, "window_start"),
        );
        let key = std::str::from_utf8(m.key().expect("a key")).expect("utf-8");
        assert_eq!(key, format!("{store}@{start}"));
        assert!(got.insert((store, start), fields).is_none(), "{key} twice");
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the windows published are the windows the hour closes"
    );
    for (key, w) in &want {
        let f = &got[key];
        let what = format!("store {} window {}", w.store, w.start);
        assert_eq!(int(f, "window_end"), w.start + SIZE, "{what}");
        assert_eq!(int(f, "orders_placed"), i64::from(w.placed), "{what}");
        assert_eq!(int(f, "orders_completed"), i64::from(w.completed), "{what}");
        assert_eq!(int(f, "orders_cancelled"), i64::from(w.cancelled), "{what}");
        assert_eq!(
            int(f, "observations_measured"),
            w.waits_ms.len() as i64,
            "{what}"
        );
        assert_eq!(int(f, "observations_reported"), 0, "{what}");
        let n = w.waits_ms.len() as f64;
        let mean = (!w.waits_ms.is_empty())
            .then(|| w.waits_ms.iter().map(|&x| x as f64).sum::<f64>() / n / 60_000.0);
        let p = |q| percentile(&w.waits_ms, q).map(|ms| ms / 60_000.0);
        assert!(
            close(opt_double(f, "wait_mean_minutes"), mean),
            "{what}: mean"
        );
        assert!(
            close(opt_double(f, "wait_p50_minutes"), p(0.5)),
            "{what}: p50"
        );
        assert!(
            close(opt_double(f, "wait_p90_minutes"), p(0.9)),
            "{what}: p90"
        );
        assert_eq!(
            int(f, "open_orders_at_end"),
            i64::from(w.open_at_end),
            "{what}"
        );
        let estimate = opt(f, "wait_time_at_end").map(|v| match v {
            Value::Int(m) => m,
            other => panic!("{what}: wait_time_at_end {other:?}"),
        });
        assert_eq!(estimate, w.estimate_at_end, "{what}: estimate at end");
        let basis = if w.estimate_at_end.is_some() {
            "LIVE"
        } else {
            "NONE"
        };
        assert!(
            matches!(f.get("basis_at_end"), Some(Value::Enum(_, s)) if s == basis),
            "{what}: {:?}",
            f.get("basis_at_end")
        );
        let (hour, dow) = (
            (w.start.rem_euclid(DAY) / (60 * MIN)),
            (w.start.div_euclid(DAY) + 3).rem_euclid(7) + 1,
        );
        assert_eq!(
            (int(f, "hour_of_day"), int(f, "day_of_week")),
            (hour, dow),
            "{what}"
        );
    }
    eprintln!(
        "features: {} events, {} windows ({} empty) match the truth",
        events.len(),
        want.len(),
        empty
    );

    // The Python example, in the FSI lab's style, reads the same records.
    let lines = run_example(&t.features, want.len()).await;
    assert_eq!(
        lines.len(),
        want.len(),
        "one line per window:\n{}",
        lines.join("\n")
    );
    let iso = |ms: i64| {
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms as u64)).to_string()
    };
    for w in want.values() {
        let head = format!(
            "store {} | {} - {} | placed {}, completed {}, cancelled {} | measured {}, reported 0 |",
            w.store,
            iso(w.start),
            iso(w.start + SIZE),
            w.placed,
            w.completed,
            w.cancelled,
            w.waits_ms.len()
        );
        let estimate = match w.estimate_at_end {
            Some(m) => format!("estimate {m} min (LIVE)"),
            None => "estimate none (NONE)".to_string(),
        };
        let at_end = format!("at end: {} open, {estimate}", w.open_at_end);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&head) && l.contains(&at_end)),
            "no line `{head} … {at_end}` in:\n{}",
            lines.join("\n")
        );
    }
    svc.stop().await;

    // A restart that replays the whole hour sends none of its windows again (the run before
    // did); the windows that close after, on new records, go out once.
    let again =
        Service::start_with(&t, &[("WAITTIMES__STATE__REPLAY_HORIZON", "72h".into())]).await;
    again.wait_ready().await;
    let deadline = Instant::now() + TIMEOUT;
    while feature_windows(&again, "replayed").await == 0 {
        assert!(Instant::now() < deadline, "no window counted as replayed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    common::assert_no_more(&reader, Duration::from_secs(3)).await;
    let mut resent = 0u64;
    produce_by_window(&again, &producer, &topic, &ids, &after_restart, &mut resent).await;
    let all: Vec<SimEvent> = events.iter().chain(&after_restart).cloned().collect();
    let later: BTreeMap<_, _> = expected(&all)
        .into_iter()
        .filter(|(k, _)| !want.contains_key(k))
        .collect();
    assert!(!later.is_empty());
    let messages = common::recv_n(&reader, later.len()).await;
    common::assert_no_more(&reader, Duration::from_secs(2)).await;
    let mut keys = Vec::new();
    for m in &messages {
        let (id, body) = common::confluent_unframe(m.payload().expect("a value"));
        let value =
            apache_avro::from_avro_datum(&schemas[&id], &mut &body[..], None).expect("avro");
        let Value::Record(fields) = value else {
            panic!("not a record")
        };
        let f: HashMap<String, Value> = fields.into_iter().collect();
        let key = (int(&f, "store_id") as i32, int(&f, "window_start"));
        let w = later
            .get(&key)
            .unwrap_or_else(|| panic!("window {key:?} sent after the restart"));
        // The counts are the window's own events, all consumed live.
        assert_eq!(int(&f, "orders_placed"), i64::from(w.placed), "{key:?}");
        assert_eq!(
            int(&f, "orders_completed"),
            i64::from(w.completed),
            "{key:?}"
        );
        assert_eq!(
            int(&f, "orders_cancelled"),
            i64::from(w.cancelled),
            "{key:?}"
        );
        keys.push(key);
    }
    keys.sort_unstable();
    assert_eq!(keys, later.keys().copied().collect::<Vec<_>>());
    again.stop().await;
}

/// Produces `events` one window of event time at a time, each consumed by `svc` (as its
/// `/metrics` counts records) before the next goes in.
async fn produce_by_window(
    svc: &Service,
    producer: &rdkafka::producer::FutureProducer,
    topic: &impl Fn(InputKind) -> String,
    ids: &HashMap<InputKind, u32>,
    events: &[SimEvent],
    sent: &mut u64,
) {
    let base = consumed(svc).await;
    let mut total = 0u64;
    for chunk in events.chunk_by(|a, b| a.time_ms.div_euclid(SIZE) == b.time_ms.div_euclid(SIZE)) {
        let frames: Vec<(String, String, i64, Vec<u8>)> = chunk
            .iter()
            .map(|e| {
                let mut buf = Vec::new();
                e.record.write_framed(ids[&e.kind()], &mut buf);
                (
                    topic(e.kind()),
                    e.record.store_id().to_string(),
                    e.time_ms,
                    buf,
                )
            })
            .collect();
        let pending: Vec<_> = frames
            .iter()
            .map(|(topic, key, at, buf)| {
                producer
                    .send_result(
                        FutureRecord::to(topic)
                            .key(key.as_str())
                            .payload(buf.as_slice())
                            .timestamp(*at),
                    )
                    .unwrap_or_else(|(e, _)| panic!("enqueue: {e}"))
            })
            .collect();
        for d in pending {
            d.await
                .expect("delivery")
                .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
        }
        total += chunk.len() as u64;
        let deadline = Instant::now() + TIMEOUT;
        while consumed(svc).await < base + total {
            assert!(
                Instant::now() < deadline,
                "the service consumed {} of {total} records",
                consumed(svc).await - base
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    *sent += total;
}

/// `waittimes_feature_windows_total{outcome}` as `/metrics` shows it.
async fn feature_windows(svc: &Service, outcome: &str) -> u64 {
    let (status, text) = raw_get(svc, "/metrics").await;
    assert_eq!(status, 200);
    let prefix = format!("waittimes_feature_windows_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse::<f64>().ok())
        .unwrap_or_default() as u64
}

/// Runs `examples/features_consumer.py` with a `client.properties` and `schema.properties` for
/// the test stack, as the lab has you write them; returns its lines.
async fn run_example(topic: &str, count: usize) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(common::unique("features-example"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("client.properties"),
        format!(
            "# Required connection configs for Kafka producer, consumer, and admin\n\
             bootstrap.servers={}\n\
             auto.offset.reset=earliest\nenable.auto.commit=false\ngroup.id={}\n",
            common::bootstrap(),
            common::unique("WaitTimesFeatureReader")
        ),
    )
    .expect("client.properties");
    std::fs::write(
        dir.join("schema.properties"),
        format!("schema.registry.url={}\n", common::schema_registry_url()),
    )
    .expect("schema.properties");
    let topic = topic.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        let setup = Command::new(root.join("examples/setup.sh"))
            .output()
            .expect("examples/setup.sh");
        assert!(
            setup.status.success(),
            "examples/setup.sh failed:\n{}",
            String::from_utf8_lossy(&setup.stderr)
        );
        let venv = String::from_utf8_lossy(&setup.stdout).trim().to_string();
        Command::new(Path::new(&venv).join("bin/python"))
            .arg(root.join("examples/features_consumer.py"))
            .args([
                "--topic",
                &topic,
                "--count",
                &count.to_string(),
                "--timeout",
                "30",
            ])
            .arg("--config-dir")
            .arg(&dir)
            .output()
            .expect("run the example")
    })
    .await
    .expect("example task");
    assert!(
        out.status.success(),
        "the example failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}
