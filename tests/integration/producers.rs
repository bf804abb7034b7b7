//! Records from a third-party producer: Confluent's Python client and its AvroSerializer
//! (`tests/producers/produce.py`) register the writer schemas that Kafka Connect's Datagen,
//! ksqlDB and a producer's own namespaced record use, under `<topic>-value`, and frame the
//! values themselves. The service must read every shape by its fields (answers over HTTP), and
//! dead-letter only the record whose required field is null.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::Consumer;
use serde_json::{Value, json};

use crate::common;
use crate::service::{Service, Topics, header};

const MINUTE: i64 = 60_000;

/// The producer's virtualenv (created once by `tests/producers/setup.sh`, idempotent): its
/// Python.
fn python() -> PathBuf {
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/producers/setup.sh");
    let out = Command::new("bash")
        .arg(&setup)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", setup.display()));
    assert!(
        out.status.success(),
        "{} failed: {}",
        setup.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let venv = String::from_utf8_lossy(&out.stdout).trim().to_string();
    PathBuf::from(venv).join("bin/python")
}

/// Produces `records` to `topic` in `shape` with produce.py; returns the schema id it registered.
fn produce(python: &Path, topic: &str, kind: &str, shape: &str, records: &[Value]) -> u32 {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/producers/produce.py");
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .args(["--bootstrap", &common::bootstrap()])
        .args(["--registry", &common::schema_registry_url()])
        .args(["--topic", topic, "--kind", kind, "--shape", shape]);
    for r in records {
        cmd.args(["--record", &r.to_string()]);
    }
    let out = cmd.output().expect("run produce.py");
    assert!(
        out.status.success(),
        "produce.py {shape} {kind} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("produce.py printed no schema id: {e}"))
}

/// Lets the three producers register their different schemas under one subject (in life each
/// topic has its own producer; here they share one service's topics).
async fn allow_any_schema(subject: &str) {
    let url = format!("{}/config/{subject}", common::schema_registry_url());
    let response = reqwest::Client::new()
        .put(&url)
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .body(json!({"compatibility": "NONE"}).to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
    assert!(
        response.status().is_success(),
        "PUT {url}: {}",
        response.status()
    );
}

use crate::common::now_ms;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_ksqldb_and_namespaced_records_are_read_by_their_fields() {
    common::require_stack();
    let python = tokio::task::spawn_blocking(python).await.expect("setup");
    let t = Topics::create(1).await;
    for topic in [&t.orders, &t.completed, &t.cancelled] {
        allow_any_schema(&format!("{topic}-value")).await;
    }
    let base = now_ms() - 60 * MINUTE;
    // Per shape, its own store: two orders, one completed `wait` minutes after it was placed
    // (reported durations that disagree, so the answer shows the timestamps were matched), one
    // cancelled.
    let shapes = [("connect", 1, 11), ("ksqldb", 2, 17), ("namespaced", 3, 23)];
    let mut ids = Vec::new();
    for (shape, store, wait) in shapes {
        let placed = base + i64::from(store) * MINUTE;
        let order =
            move |id: i32| json!({"store_id": store, "store_order_id": id, "timestamp": placed});
        let (done, gone) = (100 * store, 100 * store + 1);
        let python = python.clone();
        let (orders, completed, cancelled) =
            (t.orders.clone(), t.completed.clone(), t.cancelled.clone());
        let produced = tokio::task::spawn_blocking(move || {
            [
                produce(
                    &python,
                    &orders,
                    "orders",
                    shape,
                    &[order(done), order(gone)],
                ),
                produce(
                    &python,
                    &completed,
                    "completed",
                    shape,
                    &[json!({"store_id": store, "store_order_id": done,
                             "timestamp": placed + i64::from(wait) * MINUTE,
                             "rack_time_secs": 1, "order_delivery_time_secs": 1})],
                ),
                produce(
                    &python,
                    &cancelled,
                    "cancelled",
                    shape,
                    &[json!({"store_id": store, "store_order_id": gone,
                             "timestamp": placed + MINUTE})],
                ),
            ]
        })
        .await
        .expect("produce");
        ids.extend(produced);
    }
    // Nine writer schemas, one per shape and topic: no two shapes share one.
    let mut distinct = ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 9, "schema ids {ids:?}");

    // ksqlDB's columns are optional: one completion with a null store_id is that record's
    // dead letter, and its schema (the ksqldb one already registered) still reads the rest.
    let bad_at = base + 40 * MINUTE;
    let python2 = python.clone();
    let completed = t.completed.clone();
    tokio::task::spawn_blocking(move || {
        produce(
            &python2,
            &completed,
            "completed",
            "ksqldb",
            &[
                json!({"store_id": null, "store_order_id": 7, "timestamp": bad_at,
                     "rack_time_secs": 1, "order_delivery_time_secs": 1}),
            ],
        )
    })
    .await
    .expect("produce");

    let svc = Service::start(&t).await;
    svc.wait_ready().await;
    for (shape, store, wait) in shapes {
        let s = svc
            .wait_for_store(store, |b| {
                b["observations"] == 1 && b["cancellation_rate"] == 0.5 && b["open_orders"] == 0
            })
            .await;
        assert_eq!(s["wait_time_minutes"], wait, "{shape}: {s}");
        assert_eq!(s["basis"], "live", "{shape}: {s}");
    }

    // The dead-letter topic holds the null store_id record and nothing else.
    let dlq = common::consumer(&common::unique("producers-dlq-reader"));
    dlq.subscribe(&[&t.dead_letter]).expect("subscribe");
    let letters = common::recv_n(&dlq, 1).await;
    common::assert_no_more(&dlq, Duration::from_secs(3)).await;
    let letter = &letters[0];
    let what = "the null store_id";
    assert_eq!(header(letter, "waittimes.source.topic", what), t.completed);
    assert_eq!(
        header(letter, "waittimes.source.timestamp", what),
        bad_at.to_string()
    );
    assert_eq!(
        header(letter, "waittimes.error.reason", what),
        "invalid_value"
    );
    let error = header(letter, "waittimes.error", what);
    assert!(error.contains("store_id is null"), "{error}");
    assert!(letter.payload().is_some_and(|p| p.len() > 5), "{what}");
    svc.stop().await;
}
