//! The event generator against the live stack: what `waittimes datagen` and `waittimes
//! seed-priors` put on the topics, read back the way any consumer would (schema fetched from the
//! registry by the id in each record), checked against the Datagen templates' rules and, in sim
//! mode, against the ground truth.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use apache_avro::types::Value;
use apache_avro::{Schema, from_avro_datum};
use clap::Parser;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use waittimes::datagen::{self, DatagenArgs, SeedPriorsArgs, WORKSHOP_PRIORS};

use crate::common;

#[derive(Debug, Parser)]
struct DatagenCli {
    #[command(flatten)]
    args: DatagenArgs,
}

#[derive(Debug, Parser)]
struct SeedPriorsCli {
    #[command(flatten)]
    args: SeedPriorsArgs,
}

/// Connection flags for the test stack, so the environment's `WAITTIMES__*` cannot redirect us.
fn connection() -> Vec<String> {
    vec![
        "--bootstrap-servers".into(),
        common::bootstrap(),
        "--schema-registry".into(),
        common::schema_registry_url(),
        "--property".into(),
        "broker.address.family=v4".into(),
    ]
}

fn datagen_args(topics: &[String; 3], extra: &[&str]) -> DatagenArgs {
    let mut argv = vec!["datagen".to_string()];
    argv.extend(connection());
    for (flag, topic) in ["--orders-topic", "--completed-topic", "--cancelled-topic"]
        .iter()
        .zip(topics)
    {
        argv.extend([flag.to_string(), topic.clone()]);
    }
    argv.extend(extra.iter().map(|s| s.to_string()));
    DatagenCli::try_parse_from(argv)
        .expect("datagen flags")
        .args
}

fn unique_topics(base: &str) -> [String; 3] {
    [
        common::unique(&format!("{base}-orders")),
        common::unique(&format!("{base}-completed")),
        common::unique(&format!("{base}-cancelled")),
    ]
}

use crate::common::now_ms;

/// One record read back: topic, key, timestamp, and the value decoded with the writer schema
/// the registry returns for the record's schema id.
#[derive(Debug, Clone)]
struct Decoded {
    topic: String,
    key: Option<String>,
    timestamp: i64,
    schema_text: String,
    fields: HashMap<String, Value>,
}

impl Decoded {
    fn int(&self, name: &str) -> i32 {
        match self.fields.get(name) {
            Some(Value::Int(v)) | Some(Value::Date(v)) => *v,
            other => panic!("{name}: not an int: {other:?}"),
        }
    }

    fn string(&self, name: &str) -> &str {
        match self.fields.get(name) {
            Some(Value::String(s)) => s,
            other => panic!("{name}: not a string: {other:?}"),
        }
    }
}

/// Reads exactly `n` records from `topics` and decodes them through the registry.
async fn read_back(topics: &[&str], n: usize) -> Vec<Decoded> {
    let consumer: StreamConsumer = common::client_config()
        .set("group.id", common::unique("datagen-read"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(topics).expect("subscribe");
    let messages = common::recv_n(&consumer, n).await;
    common::assert_no_more(&consumer, Duration::from_millis(500)).await;
    let mut schemas: HashMap<u32, (String, Schema)> = HashMap::new();
    let mut out = Vec::with_capacity(n);
    for m in &messages {
        out.push(decode(m, &mut schemas).await);
    }
    out
}

async fn decode(m: &OwnedMessage, schemas: &mut HashMap<u32, (String, Schema)>) -> Decoded {
    let payload = m.payload().expect("a value");
    let (id, mut body) = common::confluent_unframe(payload);
    if let Entry::Vacant(slot) = schemas.entry(id) {
        let text = common::schema_text_by_id(id).await;
        let schema = Schema::parse_str(&text).expect("registered schema parses");
        slot.insert((text, schema));
    }
    let (text, schema) = &schemas[&id];
    let value = from_avro_datum(schema, &mut body, None).expect("value decodes");
    assert!(body.is_empty(), "trailing bytes after the Avro body");
    let Value::Record(fields) = value else {
        panic!("not a record: {value:?}")
    };
    Decoded {
        topic: m.topic().to_string(),
        key: m
            .key()
            .map(|k| String::from_utf8(k.to_vec()).expect("UTF-8 key")),
        timestamp: m.timestamp().to_millis().expect("a record timestamp"),
        schema_text: text.clone(),
        fields: fields.into_iter().collect(),
    }
}

fn same_json(a: &str, b: &str) -> bool {
    let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).expect("JSON schema");
    parse(a) == parse(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workshop_mode_replicates_the_datagen_templates() {
    common::require_stack();
    let topics = unique_topics("dg-workshop");
    common::create_topics(&[(&topics[0], 3), (&topics[1], 3), (&topics[2], 3)]).await;
    let before = now_ms();
    let args = datagen_args(
        &topics,
        &["--count", "600", "--max-interval", "0", "--seed", "11"],
    );
    let summary = datagen::run(args).await.expect("datagen run");
    let after = now_ms();
    assert_eq!(summary.events(), 600);
    assert!(!summary.interrupted);
    assert_eq!(summary.seed, 11);

    let records = read_back(&[&topics[0], &topics[1], &topics[2]], 600).await;
    let options = order_line_options();
    let mut ids: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for r in &records {
        let store = r.int("store_id");
        assert!((1..=9).contains(&store), "store_id {store}");
        assert_eq!(
            r.key.as_deref(),
            Some(store.to_string().as_str()),
            "key = store_id"
        );
        assert!((18000..=18999).contains(&r.int("date")));
        assert!(
            r.timestamp >= before - 1000 && r.timestamp <= after + 1000,
            "send time"
        );
        ids.entry(r.topic.as_str())
            .or_default()
            .push(r.int("store_order_id"));
        let upstream = if r.topic == topics[0] {
            assert_eq!(r.string("status"), "accepted");
            assert!((1000..=1999).contains(&r.int("coupon_code")));
            let Some(Value::Array(lines)) = r.fields.get("order_lines") else {
                panic!()
            };
            assert!((1..=4).contains(&lines.len()), "{} lines", lines.len());
            for line in lines {
                assert!(
                    options.contains(line),
                    "line not among the template's options: {line:?}"
                );
            }
            waittimes::wire::UPSTREAM_PIZZA_ORDERS
        } else if r.topic == topics[1] {
            assert_eq!(r.string("status"), "completed");
            assert!((130..=229).contains(&r.int("rack_time_secs")));
            assert!((1100..=1999).contains(&r.int("order_delivery_time_secs")));
            waittimes::wire::UPSTREAM_PIZZA_ORDERS_COMPLETED
        } else {
            assert_eq!(r.string("status"), "cancelled");
            waittimes::wire::UPSTREAM_PIZZA_ORDERS_CANCELLED
        };
        // Registered as Datagen registers it: the template text, generation hints included.
        assert!(
            same_json(&r.schema_text, upstream),
            "registered schema differs from upstream"
        );
    }
    // Each topic iterates its own ids: orders 1000, 1001, ...; completed even; cancelled odd.
    let (start, step) = ([1000, 1000, 1001], [1, 2, 2]);
    for (i, topic) in topics.iter().enumerate() {
        let mut got = ids.remove(topic.as_str()).unwrap_or_default();
        got.sort_unstable();
        let want: Vec<i32> = (0..got.len() as i32)
            .map(|n| start[i] + n * step[i])
            .collect();
        assert_eq!(got, want, "{topic}");
        assert!(got.len() > 100, "{topic}: {} records", got.len());
        assert_eq!(summary.topics[i], (topic.clone(), got.len() as u64));
    }
}

/// The template's 100 order lines as apache-avro decodes them.
fn order_line_options() -> Vec<Value> {
    let schema: serde_json::Value =
        serde_json::from_str(waittimes::wire::UPSTREAM_PIZZA_ORDERS).unwrap();
    let fields = schema["fields"].as_array().unwrap();
    let lines = fields.iter().find(|f| f["name"] == "order_lines").unwrap();
    lines["type"]["items"]["arg.properties"]["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            Value::Record(vec![
                (
                    "product_id".into(),
                    Value::Int(o["product_id"].as_i64().unwrap() as i32),
                ),
                (
                    "category".into(),
                    Value::String(o["category"].as_str().unwrap().into()),
                ),
                (
                    "quantity".into(),
                    Value::Int(o["quantity"].as_i64().unwrap() as i32),
                ),
                (
                    "unit_price".into(),
                    Value::Double(o["unit_price"].as_f64().unwrap()),
                ),
                (
                    "net_price".into(),
                    Value::Double(o["net_price"].as_f64().unwrap()),
                ),
            ])
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_mode_is_coherent_and_matches_its_truth() {
    common::require_stack();
    let topics = unique_topics("dg-sim");
    let truth_path = std::env::temp_dir().join(format!("{}.csv", common::unique("dg-truth")));
    let truth_arg = truth_path.to_string_lossy().to_string();
    // 2024-03-01T11:00:00Z: through the lunch rush. --create-topics: the topics do not exist.
    let args = datagen_args(
        &topics,
        &[
            "--mode",
            "sim",
            "--stores",
            "4",
            "--speed",
            "0",
            "--count",
            "1500",
            "--seed",
            "3",
            "--start",
            "1709290800000",
            "--truth",
            &truth_arg,
            "--create-topics",
            "--partitions",
            "2",
        ],
    );
    let summary = datagen::run(args).await.expect("datagen run");
    assert_eq!(summary.events(), 1500);

    let records = read_back(&[&topics[0], &topics[1], &topics[2]], 1500).await;
    let mut placed: HashMap<(i32, i32), i64> = HashMap::new();
    let mut ends: HashMap<(i32, i32), (&str, i64)> = HashMap::new();
    for r in &records {
        let key = (r.int("store_id"), r.int("store_order_id"));
        assert!((1..=4).contains(&key.0));
        assert_eq!(r.key.as_deref(), Some(key.0.to_string().as_str()));
        assert!(
            r.timestamp >= 1_709_290_800_000,
            "simulated time, not wall time"
        );
        assert_eq!(
            i64::from(r.int("date")),
            r.timestamp / 86_400_000,
            "date = event day"
        );
        if r.topic == topics[0] {
            assert_eq!(r.string("status"), "accepted");
            assert!(
                placed.insert(key, r.timestamp).is_none(),
                "duplicate order {key:?}"
            );
        } else {
            let status = if r.topic == topics[1] {
                "completed"
            } else {
                "cancelled"
            };
            assert_eq!(r.string("status"), status);
            assert!(
                ends.insert(key, (status, r.timestamp)).is_none(),
                "ended twice {key:?}"
            );
        }
    }
    // Every end follows its own order in time.
    for (key, (_, at)) in &ends {
        let placed_at = placed
            .get(key)
            .unwrap_or_else(|| panic!("{key:?} ended, never placed"));
        assert!(placed_at < at, "{key:?} ends before it was placed");
    }
    assert!(ends.values().filter(|e| e.0 == "completed").count() > 300);

    // The truth file has one row per end event, and its waits are what the topics show.
    let truth = std::fs::read_to_string(&truth_path).expect("truth file");
    let _ = std::fs::remove_file(&truth_path);
    let mut lines = truth.lines();
    assert_eq!(
        lines.next(),
        Some("store_id,store_order_id,placed_at_ms,outcome,ended_at_ms,wait_ms")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), ends.len());
    assert_eq!(summary.truth_rows, Some(ends.len() as u64));
    for row in rows {
        let n = |i: usize| row[i].parse::<i64>().unwrap();
        let key = (n(0) as i32, n(1) as i32);
        let (status, ended_at) = ends[&key];
        assert_eq!(row[3], status);
        assert_eq!(n(2), placed[&key]);
        assert_eq!(n(4), ended_at);
        assert_eq!(
            n(5),
            ended_at - placed[&key],
            "wait = end event time - placement time"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_and_duration_bound_a_run() {
    common::require_stack();
    let topics = unique_topics("dg-rate");
    common::create_topics(&[(&topics[0], 1), (&topics[1], 1), (&topics[2], 1)]).await;
    // 100 events at 200/s take about half a second.
    let args = datagen_args(
        &topics,
        &["--count", "100", "--rate", "200", "--max-interval", "0"],
    );
    let s = datagen::run(args).await.expect("rate-capped run");
    assert_eq!(s.events(), 100);
    assert!(s.elapsed >= Duration::from_millis(450), "{:?}", s.elapsed);
    // Datagen's own pacing: 3 topics, a record every 0..50 ms each, for one second: ~120.
    let args = datagen_args(&topics, &["--duration", "1s", "--max-interval", "50ms"]);
    let s = datagen::run(args).await.expect("timed run");
    assert!((60..=200).contains(&s.events()), "{} events", s.events());
    assert!(s.elapsed < Duration::from_secs(5), "{:?}", s.elapsed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_priors_writes_the_workshops_stale_values_without_keys() {
    common::require_stack();
    let topic = common::unique("dg-waittimes");
    let mut argv = vec!["seed-priors".to_string()];
    argv.extend(connection());
    argv.extend([
        "--wait-times-topic".into(),
        topic.clone(),
        "--create-topics".into(),
    ]);
    let args = SeedPriorsCli::try_parse_from(argv)
        .expect("seed-priors flags")
        .args;
    datagen::seed_priors(args).await.expect("seed-priors");

    let records = read_back(&[&topic], 10).await;
    let got: Vec<(i32, i32)> = records
        .iter()
        .map(|r| (r.int("store_id"), r.int("wait_time")))
        .collect();
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, WORKSHOP_PRIORS.to_vec());
    for r in &records {
        assert_eq!(r.key, None, "the workshop seeds values only");
        assert!(same_json(
            &r.schema_text,
            waittimes::wire::WAIT_TIMES_SCHEMA
        ));
    }
}

/// Without --start, a run bounded by --count starts early enough that its last record is not
/// stamped after the moment it began: nothing reaches the broker from the future.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_mode_starts_in_the_past_so_a_bounded_run_ends_by_now() {
    common::require_stack();
    let topics = unique_topics("dg-past");
    common::create_topics(&[(&topics[0], 1), (&topics[1], 1), (&topics[2], 1)]).await;
    let before = now_ms();
    let args = datagen_args(
        &topics,
        &[
            "--mode", "sim", "--speed", "0", "--count", "400", "--seed", "5",
        ],
    );
    let summary = datagen::run(args).await.expect("datagen run");
    assert_eq!(summary.events(), 400);
    let refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    let records = read_back(&refs, 400).await;
    let last = records.iter().map(|r| r.timestamp).max().expect("records");
    let first = records.iter().map(|r| r.timestamp).min().expect("records");
    assert!(
        last <= before + 1000,
        "last record {} ms after the start",
        last - before
    );
    assert!(first < last, "simulated time passes");
}

/// Kafka 4 refuses records stamped more than `message.timestamp.after.max.ms` (1 h) ahead of
/// its clock. A simulation started two hours ahead stops with an error that says why and what
/// to do, instead of a gap in the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulation_ahead_of_the_broker_clock_is_a_clear_error() {
    common::require_stack();
    let topics = unique_topics("dg-future");
    let start = now_ms() + 2 * 3_600_000;
    // --create-topics: a bounded run gets topics with the broker's limit.
    let args = datagen_args(
        &topics,
        &[
            "--mode",
            "sim",
            "--speed",
            "0",
            "--count",
            "30",
            "--start",
            &start.to_string(),
            "--create-topics",
            "--partitions",
            "1",
        ],
    );
    let err = datagen::run(args)
        .await
        .expect_err("records from the future are refused");
    let msg = err.to_string();
    let datagen::Error::FutureTimestamp {
        topic,
        timestamp_ms,
        ahead,
    } = &err
    else {
        panic!("expected FutureTimestamp, got {err:?}: {msg}");
    };
    assert!(topics.contains(topic), "{msg}");
    assert!(*timestamp_ms >= start, "{msg}");
    assert!(
        (Duration::from_secs(7000)..Duration::from_secs(4 * 3600)).contains(ahead),
        "{msg}"
    );
    for part in [
        "ahead of this machine's clock",
        "message.timestamp.after.max.ms",
        "--start",
        "--create-topics",
    ] {
        assert!(msg.contains(part), "{part:?} missing from {msg}");
    }
}
