//! Poison pills: a corpus of bad records of every kind the service must survive, interleaved
//! with good traffic on all three input topics. Every bad record lands on the dead-letter topic
//! exactly once, with its original key, bytes and timestamp and headers naming its source and the
//! reason; every good record is counted and the answers are exact; the service keeps serving and
//! stops cleanly.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use waittimes::wire::{self, put_long};

use crate::common::{self, TIMEOUT};
use crate::service::{Service, Topics, header, raw_get};

const MINUTE: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Topic {
    Orders,
    Completed,
    Cancelled,
}

impl Topic {
    fn name(self, t: &Topics) -> &str {
        match self {
            Topic::Orders => &t.orders,
            Topic::Completed => &t.completed,
            Topic::Cancelled => &t.cancelled,
        }
    }
}

/// Upstream schema ids, registered under each topic's subject.
struct Ids {
    orders: u32,
    completed: u32,
    cancelled: u32,
}

fn longs(values: &[i64]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in values {
        put_long(&mut b, *v);
    }
    b
}

/// An upstream `pizza_orders` body with a raw status and no order lines.
fn order_body(store: i64, id: i64, status: &[u8]) -> Vec<u8> {
    let mut b = longs(&[store, id, 1500, 18_500, status.len() as i64]);
    b.extend_from_slice(status);
    b.extend(longs(&[0]));
    b
}

fn completed_body(store: i64, id: i64, status: &[u8], rack: i64, delivery: i64) -> Vec<u8> {
    let mut b = longs(&[store, id, 18_500, status.len() as i64]);
    b.extend_from_slice(status);
    b.extend(longs(&[rack, delivery]));
    b
}

fn cancelled_body(store: i64, id: i64, status: &[u8]) -> Vec<u8> {
    let mut b = longs(&[store, id, 18_500, status.len() as i64]);
    b.extend_from_slice(status);
    b
}

fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    common::confluent_frame(id, body)
}

/// One record to produce: where, key, value (`None`: a tombstone), and for a bad one the
/// dead-letter reason expected.
struct Record {
    what: &'static str,
    topic: Topic,
    key: &'static str,
    value: Option<Vec<u8>>,
    reason: Option<&'static str>,
}

fn bad(what: &'static str, topic: Topic, value: Option<Vec<u8>>, reason: &'static str) -> Record {
    Record {
        what,
        topic,
        key: "3",
        value,
        reason: Some(reason),
    }
}

/// The corpus: one row per kind of poison pill.
fn poison(ids: &Ids) -> Vec<Record> {
    use Topic::*;
    let good_completed = frame(ids.completed, &completed_body(3, 9, b"completed", 60, 600));
    let mut huge_array = order_body(3, 9, b"accepted");
    huge_array.pop(); // the empty array's terminating zero
    huge_array.extend(longs(&[1 << 50]));
    huge_array.extend_from_slice(&[0; 24]);
    vec![
        bad("empty value", Orders, Some(Vec::new()), "framing"),
        bad(
            "garbage",
            Completed,
            Some(b"{\"store_id\": 3, \"this is\": \"not avro\"}".to_vec()),
            "framing",
        ),
        bad(
            "wrong magic byte",
            Cancelled,
            Some([&[1u8][..], &good_completed[1..]].concat()),
            "framing",
        ),
        bad(
            "too short for a header",
            Orders,
            Some(vec![0, 0, 1]),
            "framing",
        ),
        bad(
            "schema id zero",
            Completed,
            Some([&[0u8, 0, 0, 0, 0][..], &good_completed[5..]].concat()),
            "framing",
        ),
        bad(
            "negative schema id",
            Orders,
            Some([&[0u8, 0xff, 0xff, 0xff, 0xfe][..], &good_completed[5..]].concat()),
            "framing",
        ),
        bad(
            "unknown schema id",
            Cancelled,
            Some(frame(0x7fff_ff00, &cancelled_body(3, 9, b"cancelled"))),
            "unknown_schema",
        ),
        bad(
            "another topic's schema id",
            Orders,
            Some(good_completed.clone()),
            "incompatible_schema",
        ),
        bad(
            "truncated",
            Completed,
            Some(good_completed[..good_completed.len() - 2].to_vec()),
            "malformed",
        ),
        bad(
            "trailing bytes",
            Cancelled,
            Some(
                [
                    frame(ids.cancelled, &cancelled_body(3, 9, b"cancelled")),
                    vec![0],
                ]
                .concat(),
            ),
            "malformed",
        ),
        bad(
            "huge array length",
            Orders,
            Some(frame(ids.orders, &huge_array)),
            "malformed",
        ),
        bad(
            "huge string length",
            Completed,
            Some(frame(ids.completed, &longs(&[3, 9, 18_500, 1 << 40]))),
            "malformed",
        ),
        bad(
            "negative string length",
            Cancelled,
            Some(frame(ids.cancelled, &longs(&[3, 9, 18_500, -7, 0]))),
            "malformed",
        ),
        bad(
            "invalid utf-8",
            Completed,
            Some(frame(
                ids.completed,
                &completed_body(3, 9, b"compl\xc3\x28ted", 60, 600),
            )),
            "malformed",
        ),
        bad(
            "int out of 32-bit range",
            Orders,
            Some(frame(
                ids.orders,
                &order_body(3, i64::from(i32::MAX) + 1, b"accepted"),
            )),
            "malformed",
        ),
        bad(
            "overlong varint",
            Cancelled,
            Some(frame(ids.cancelled, &[0xff; 11])),
            "malformed",
        ),
        bad(
            "negative store id",
            Completed,
            Some(frame(
                ids.completed,
                &completed_body(-3, 9, b"completed", 60, 600),
            )),
            "invalid_value",
        ),
        bad(
            "zero store id",
            Orders,
            Some(frame(ids.orders, &order_body(0, 9, b"accepted"))),
            "invalid_value",
        ),
        bad(
            "negative duration",
            Completed,
            Some(frame(
                ids.completed,
                &completed_body(3, 9, b"completed", -60, 600),
            )),
            "invalid_value",
        ),
        bad("tombstone (null value)", Cancelled, None, "malformed"),
    ]
}

/// Good traffic, with exact answers whatever the interleaving of the topics:
/// - store 1: three orders waiting 10, 12 and 14 minutes → p50 12, mean 12;
/// - store 2: two orders, one completed after 20 minutes (reporting 11), one cancelled;
/// - store 3: a completion of an order never seen (reporting 5 + 10 = 15 minutes) and an order
///   that stays open;
/// - store 4: an order and its cancellation only.
fn good(ids: &Ids, base: i64) -> Vec<(Record, i64)> {
    use Topic::*;
    let rec = |what, topic, key, value| Record {
        what,
        topic,
        key,
        value: Some(value),
        reason: None,
    };
    let order = |store: i64, id: i64| frame(ids.orders, &order_body(store, id, b"accepted"));
    let done = |store: i64, id: i64, rack: i64, delivery: i64| {
        frame(
            ids.completed,
            &completed_body(store, id, b"completed", rack, delivery),
        )
    };
    let cancel =
        |store: i64, id: i64| frame(ids.cancelled, &cancelled_body(store, id, b"cancelled"));
    let mut out = Vec::new();
    for (i, wait) in [10, 12, 14].into_iter().enumerate() {
        let id = 100 + i as i64;
        let placed = base + i as i64 * MINUTE;
        out.push((rec("store 1 order", Orders, "1", order(1, id)), placed));
        out.push((
            rec("store 1 completion", Completed, "1", done(1, id, 60, 540)),
            placed + wait * MINUTE,
        ));
    }
    out.push((rec("store 2 order", Orders, "2", order(2, 1)), base));
    out.push((
        rec("store 2 order", Orders, "2", order(2, 2)),
        base + MINUTE,
    ));
    // Every store's events lie within the match TTL (10 min) of each other, so the answers do
    // not depend on how the broker interleaves the three topics' fetches.
    out.push((
        rec("store 2 completion", Completed, "2", done(2, 1, 60, 600)),
        base + 9 * MINUTE,
    ));
    out.push((
        rec("store 2 cancellation", Cancelled, "2", cancel(2, 2)),
        base + 5 * MINUTE,
    ));
    out.push((
        rec(
            "store 3 orphan completion",
            Completed,
            "3",
            done(3, 77, 300, 600),
        ),
        base + 2 * MINUTE,
    ));
    out.push((
        rec("store 3 open order", Orders, "3", order(3, 78)),
        base + 3 * MINUTE,
    ));
    out.push((rec("store 4 order", Orders, "4", order(4, 1)), base));
    out.push((
        rec("store 4 cancellation", Cancelled, "4", cancel(4, 1)),
        base + 4 * MINUTE,
    ));
    out
}

/// Produces one record; returns where it landed.
async fn produce(p: &FutureProducer, t: &Topics, r: &Record, at: i64) -> (i32, i64) {
    let topic = r.topic.name(t);
    let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).key(r.key).timestamp(at);
    if let Some(value) = &r.value {
        record = record.payload(value);
    }
    let delivery = p
        .send(record, Duration::from_secs(10))
        .await
        .unwrap_or_else(|(e, _)| panic!("{}: produce to {topic}: {e}", r.what));
    (delivery.partition, delivery.offset)
}

/// The value of `waittimes_events_total{topic,outcome}` (0 when absent).
fn events(metrics: &str, topic: &str, outcome: &str) -> u64 {
    let topic = format!("topic=\"{topic}\"");
    let outcome = format!("outcome=\"{outcome}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("waittimes_events_total{"))
        .filter(|l| l.contains(&topic) && l.contains(&outcome))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_poison_pill_is_dead_lettered_once_and_good_records_flow() {
    common::require_stack();
    let t = Topics::create(2).await;
    let ids = Ids {
        orders: common::register_avro(&format!("{}-value", t.orders), wire::UPSTREAM_PIZZA_ORDERS)
            .await,
        completed: common::register_avro(
            &format!("{}-value", t.completed),
            wire::UPSTREAM_PIZZA_ORDERS_COMPLETED,
        )
        .await,
        cancelled: common::register_avro(
            &format!("{}-value", t.cancelled),
            wire::UPSTREAM_PIZZA_ORDERS_CANCELLED,
        )
        .await,
    };
    let base = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("clock")
        - 60 * MINUTE;
    let corpus = poison(&ids);
    let good = good(&ids, base);
    assert!(corpus.len() >= 12);

    // Interleave: a bad record after every good one, the rest at the end.
    let producer = common::producer();
    let mut bad_at = HashMap::new(); // (topic, partition, offset) -> (index, timestamp)
    let mut counts: HashMap<(Topic, bool), u64> = HashMap::new();
    let mut corpus_iter = corpus.iter().enumerate();
    let mut good_iter = good.iter();
    loop {
        let g = good_iter.next();
        if let Some((r, at)) = g {
            produce(&producer, &t, r, *at).await;
            *counts.entry((r.topic, true)).or_default() += 1;
        }
        let b = corpus_iter.next();
        if let Some((i, r)) = b {
            let at = base + 7 * MINUTE + i as i64 * 1000;
            let (partition, offset) = produce(&producer, &t, r, at).await;
            bad_at.insert((r.topic.name(&t).to_owned(), partition, offset), (i, at));
            *counts.entry((r.topic, false)).or_default() += 1;
        }
        if g.is_none() && b.is_none() {
            break;
        }
    }

    let svc = Service::start(&t).await;
    svc.wait_ready().await;

    // The answers are exact.
    let s1 = svc.wait_for_store(1, |b| b["observations"] == 3).await;
    assert_eq!(s1["wait_time_minutes"], 12, "{s1}");
    assert_eq!(s1["mean_minutes"], 12.0, "{s1}");
    assert_eq!(s1["open_orders"], 0, "{s1}");
    let s2 = svc
        .wait_for_store(2, |b| {
            b["observations"] == 1 && b["cancellation_rate"] == 0.5 && b["open_orders"] == 0
        })
        .await;
    assert_eq!(s2["wait_time_minutes"], 9, "{s2}");
    let s3 = svc
        .wait_for_store(3, |b| b["observations"] == 1 && b["open_orders"] == 1)
        .await;
    assert_eq!(s3["wait_time_minutes"], 15, "{s3}");
    let s4 = svc
        .wait_for_store(4, |b| {
            b["cancellation_rate"] == 1.0 && b["open_orders"] == 0
        })
        .await;
    assert_eq!(s4["observations"], 0, "{s4}");
    let (status, all) = svc.get("/stores").await;
    assert_eq!(status, 200);
    assert_eq!(all.as_array().map(Vec::len), Some(4), "{all}");

    // Every bad record is on the dead-letter topic exactly once, with its source, timestamp,
    // key, bytes and reason.
    let dlq = common::consumer(&common::unique("poison-dlq-reader"));
    dlq.subscribe(&[&t.dead_letter]).expect("subscribe");
    let letters = common::recv_n(&dlq, corpus.len()).await;
    common::assert_no_more(&dlq, Duration::from_secs(3)).await;
    let mut seen = vec![0; corpus.len()];
    for letter in &letters {
        check_letter(letter, &corpus, &bad_at, &mut seen);
    }
    for (r, n) in corpus.iter().zip(&seen) {
        assert_eq!(*n, 1, "{}: dead-lettered {n} times", r.what);
    }

    // Every record is counted under its topic: good ones as state outcomes, bad ones as dead
    // letters; nothing is counted as ignored or late.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (status, metrics) = raw_get(&svc, "/metrics").await;
        assert_eq!(status, 200);
        let mut mismatches = Vec::new();
        for topic in [Topic::Orders, Topic::Completed, Topic::Cancelled] {
            let name = topic.name(&t);
            let counted_good: u64 = ["applied", "held", "duplicate"]
                .iter()
                .map(|o| events(&metrics, name, o))
                .sum();
            let expected_good = counts.get(&(topic, true)).copied().unwrap_or(0);
            let expected_bad = counts.get(&(topic, false)).copied().unwrap_or(0);
            let got = (
                counted_good,
                events(&metrics, name, "dead_lettered"),
                events(&metrics, name, "ignored") + events(&metrics, name, "late"),
            );
            if got != (expected_good, expected_bad, 0) {
                mismatches.push(format!(
                    "{topic:?}: got (good, dead-lettered, ignored+late) {got:?}, expected {:?}",
                    (expected_good, expected_bad, 0)
                ));
            }
        }
        if mismatches.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{mismatches:?}\n{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // No panic: still live and serving, and it stops cleanly.
    let (status, body) = svc.get("/health/live").await;
    assert_eq!(status, 200, "{body}");
    svc.stop().await;
}

fn check_letter(
    letter: &OwnedMessage,
    corpus: &[Record],
    bad_at: &HashMap<(String, i32, i64), (usize, i64)>,
    seen: &mut [u32],
) {
    let h = |name: &str| header(letter, name, "a dead letter");
    let source = (
        h("waittimes.source.topic"),
        h("waittimes.source.partition")
            .parse::<i32>()
            .expect("numeric partition"),
        h("waittimes.source.offset")
            .parse::<i64>()
            .expect("numeric offset"),
    );
    let &(i, at) = bad_at
        .get(&source)
        .unwrap_or_else(|| panic!("dead letter of a record not in the corpus: {source:?}"));
    let r = &corpus[i];
    seen[i] += 1;
    let what = r.what;
    assert_eq!(h("waittimes.source.timestamp"), at.to_string(), "{what}");
    assert_eq!(
        letter.timestamp().to_millis(),
        Some(at),
        "{what}: the dead letter keeps the record's timestamp"
    );
    assert_eq!(
        h("waittimes.error.reason"),
        r.reason.expect("a bad record"),
        "{what}: {}",
        h("waittimes.error")
    );
    assert!(!h("waittimes.error").is_empty(), "{what}");
    assert_eq!(letter.key(), Some(r.key.as_bytes()), "{what}");
    // Kafka may carry an empty value as null: compare the bytes.
    assert_eq!(
        letter.payload().unwrap_or_default(),
        r.value.as_deref().unwrap_or_default(),
        "{what}"
    );
    if r.value.is_none() {
        assert!(letter.payload().is_none(), "{what}: a tombstone stays null");
    }
}
