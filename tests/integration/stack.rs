//! Proves the local stack is real and pins down the broker behaviour the service relies on:
//! Confluent-framed Avro through broker and registry, record timestamps and headers, watermarks,
//! offsets for times (replay), multi-partition topics, and consumer-group commits.

use std::time::{Duration, Instant};

use apache_avro::types::Value;
use apache_avro::{Schema, from_avro_datum, to_avro_datum};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, Timestamp, TopicPartitionList};

use crate::common::{self, TIMEOUT};

const COMPLETED_SCHEMA: &str = include_str!("../../schemas/upstream/pizza_orders_completed.avro");

/// A fixed, clearly-not-now event time (2023-11-14T22:13:20Z), so a test can tell a producer-set
/// timestamp from one the broker would stamp.
const T0: i64 = 1_700_000_000_000;

fn completed(store_id: i32, order_id: i32, date: i32, rack: i32, delivery: i32) -> Value {
    Value::Record(vec![
        ("store_id".into(), Value::Int(store_id)),
        ("store_order_id".into(), Value::Int(order_id)),
        ("date".into(), Value::Date(date)),
        ("status".into(), Value::String("completed".into())),
        ("rack_time_secs".into(), Value::Int(rack)),
        ("order_delivery_time_secs".into(), Value::Int(delivery)),
    ])
}

async fn send(producer: &FutureProducer, record: FutureRecord<'_, str, [u8]>) -> (i32, i64) {
    let delivery = producer
        .send(record, TIMEOUT)
        .await
        .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    (delivery.partition, delivery.offset)
}

fn header_pairs(message: &OwnedMessage) -> Vec<(String, Option<Vec<u8>>)> {
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn workshop_topics_carry_confluent_avro_through_broker_and_registry() {
    common::require_stack();
    let orders = common::unique("pizza_orders_avro");
    let completed_topic = common::unique("pizza_orders_completed_avro");
    let cancelled = common::unique("pizza_orders_cancelled_avro");
    let waittimes = common::unique("waittimes_avro");
    common::create_topics(&[
        (&orders, 1),
        (&completed_topic, 1),
        (&cancelled, 1),
        (&waittimes, 1),
    ])
    .await;

    // The upstream schema, verbatim (arg.properties and all), as the Datagen connector registers it.
    let schema = Schema::parse_str(COMPLETED_SCHEMA).expect("upstream schema parses");
    let subject = format!("{completed_topic}-value");
    let id = common::register_avro(&subject, COMPLETED_SCHEMA).await;
    assert_eq!(
        common::register_avro(&subject, COMPLETED_SCHEMA).await,
        id,
        "registering the same schema again returns the same id"
    );

    let sent = [
        completed(3, 1000, 18_250, 130, 1100),
        completed(9, 1002, 18_999, 229, 1999),
        completed(1, 1004, 18_000, 175, 1500),
    ];
    let producer = common::producer();
    for value in &sent {
        let Value::Record(fields) = value else {
            unreachable!("completed() builds records")
        };
        let Value::Int(store_id) = fields[0].1 else {
            unreachable!("store_id is an int")
        };
        let key = store_id.to_string();
        let body = to_avro_datum(&schema, value.clone()).expect("encode");
        let payload = common::confluent_frame(id, &body);
        send(
            &producer,
            FutureRecord::to(&completed_topic)
                .key(key.as_str())
                .payload(payload.as_slice()),
        )
        .await;
    }

    let consumer = common::consumer(&common::unique("roundtrip"));
    consumer.subscribe(&[&completed_topic]).expect("subscribe");
    let received = common::recv_n(&consumer, sent.len()).await;

    for (message, expected) in received.iter().zip(&sent) {
        let (schema_id, body) = common::confluent_unframe(message.payload().expect("payload"));
        assert_eq!(schema_id, id);
        let writer = Schema::parse_str(&common::schema_text_by_id(schema_id).await)
            .expect("registry returns a parseable schema");
        assert_eq!(writer.canonical_form(), schema.canonical_form());
        let decoded = from_avro_datum(&writer, &mut &body[..], None).expect("decode");
        assert_eq!(&decoded, expected);
        let Value::Record(fields) = &decoded else {
            panic!("decoded a {decoded:?}")
        };
        let Value::Int(store_id) = fields[0].1 else {
            panic!("store_id is {:?}", fields[0].1)
        };
        assert_eq!(message.key(), Some(store_id.to_string().as_bytes()));
    }
    common::assert_no_more(&consumer, Duration::from_millis(500)).await;
}

#[tokio::test]
async fn producer_timestamps_and_headers_survive_the_broker() {
    common::require_stack();
    let topic = common::unique("timestamps_headers");
    common::create_topics(&[(&topic, 1)]).await;
    let producer = common::producer();
    for i in 0..3i64 {
        let offset = i.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "source-topic",
                value: Some("pizza_orders_avro"),
            })
            .insert(Header {
                key: "source-offset",
                value: Some(offset.as_str()),
            })
            .insert(Header {
                key: "binary",
                value: Some(&[0u8, 255, 1][..]),
            })
            .insert(Header::<&str> {
                key: "null-value",
                value: None,
            });
        send(
            &producer,
            FutureRecord::to(&topic)
                .key("k")
                .payload(&b"v"[..])
                .timestamp(T0 + i * 1000)
                .headers(headers),
        )
        .await;
    }

    let consumer = common::consumer(&common::unique("timestamps"));
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, 0, Offset::Beginning)
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let received = common::recv_n(&consumer, 3).await;
    for (i, message) in (0i64..).zip(&received) {
        assert_eq!(message.offset(), i);
        assert_eq!(message.timestamp(), Timestamp::CreateTime(T0 + i * 1000));
        assert_eq!(
            header_pairs(message),
            vec![
                (
                    "source-topic".to_owned(),
                    Some(b"pizza_orders_avro".to_vec())
                ),
                ("source-offset".to_owned(), Some(i.to_string().into_bytes())),
                ("binary".to_owned(), Some(vec![0, 255, 1])),
                ("null-value".to_owned(), None),
            ]
        );
    }
}

#[tokio::test]
async fn watermarks_and_offsets_for_times_find_live_records() {
    common::require_stack();
    let topic = common::unique("offsets_for_times");
    common::create_topics(&[(&topic, 1)]).await;
    let producer = common::producer();
    // Live-like records: stamped "now", 200 ms apart, each awaited (so each is its own batch).
    let mut stamps = Vec::new();
    for _ in 0..5 {
        let ts = Timestamp::now().to_millis().expect("a clock");
        send(
            &producer,
            FutureRecord::to(&topic)
                .key("k")
                .payload(&b"v"[..])
                .timestamp(ts),
        )
        .await;
        stamps.push(ts);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let consumer = common::consumer(&common::unique("offsets"));
    assert_eq!(
        consumer
            .fetch_watermarks(&topic, 0, TIMEOUT)
            .expect("fetch_watermarks"),
        (0, 5)
    );
    for (i, ts) in (0i64..).zip(&stamps) {
        assert_eq!(lookup(&consumer, &topic, 0, ts - 100), Offset::Offset(i));
    }
    assert_eq!(
        lookup(&consumer, &topic, 0, stamps[0] - 3_600_000),
        Offset::Offset(0)
    );
}

/// ListOffsets by time: the offset `offsets_for_times` answers for (topic, partition, ts).
fn lookup(consumer: &impl Consumer, topic: &str, partition: i32, ts: i64) -> Offset {
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset(topic, partition, Offset::Offset(ts))
        .expect("query");
    let answer = consumer
        .offsets_for_times(query, TIMEOUT)
        .expect("offsets_for_times");
    let element = answer
        .find_partition(topic, partition)
        .expect("partition in the answer");
    assert!(
        element.error().is_ok(),
        "offsets_for_times: {:?}",
        element.error()
    );
    element.offset()
}

/// What the service's caught-up check, priors load and replay rely on: ListOffsets(latest) is
/// the log end offset even after a multi-record batch (a broker whose watermark trails the
/// batch makes a consumer reset to the end re-read it, and "caught up" fire early); ListOffsets
/// by time compares the records' own CreateTime, not the broker's append time, and answers End
/// past the last record.
#[tokio::test]
async fn offsets_follow_kafka_semantics_for_batches_and_create_time() {
    common::require_stack();
    let topic = common::unique("kafka_semantics");
    common::create_topics(&[(&topic, 1)]).await;
    let producer = common::producer();
    // Five records in one batch (sent together), stamped with an old event time.
    let deliveries: Vec<_> = (0..5i64)
        .map(|i| {
            producer
                .send_result(
                    FutureRecord::to(&topic)
                        .key("k")
                        .payload(&b"v"[..])
                        .timestamp(T0 + i * 1000),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    for delivery in deliveries {
        delivery
            .await
            .expect("delivery future")
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }
    let consumer = common::consumer(&common::unique("semantics"));
    assert_eq!(
        consumer
            .fetch_watermarks(&topic, 0, TIMEOUT)
            .expect("fetch_watermarks"),
        (0, 5),
        "high watermark after one five-record batch"
    );
    assert_eq!(lookup(&consumer, &topic, 0, T0 + 2500), Offset::Offset(3));
    assert_eq!(lookup(&consumer, &topic, 0, T0 + 4001), Offset::End);
}

#[tokio::test]
async fn consumer_groups_commit_and_resume_across_partitions() {
    common::require_stack();
    let topic = common::unique("groups");
    let group = common::unique("group");
    common::create_topics(&[(&topic, 3)]).await;
    let producer = common::producer();
    for round in 0..2 {
        for partition in 0..3 {
            send(
                &producer,
                FutureRecord::to(&topic)
                    .partition(partition)
                    .key("k")
                    .payload(format!("first-{round}").as_bytes()),
            )
            .await;
        }
    }

    let started = Instant::now();
    let first = common::consumer(&group);
    first.subscribe(&[&topic]).expect("subscribe");
    let batch = common::recv_n(&first, 6).await;
    eprintln!(
        "group join + first 6 records (session.timeout.ms=6000): {:?}",
        started.elapsed()
    );
    let mut per_partition = [0; 3];
    for m in &batch {
        per_partition[m.partition() as usize] += 1;
    }
    assert_eq!(per_partition, [2, 2, 2]);
    assert_eq!(first.assignment().expect("assignment").count(), 3);
    first
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    // Ask with an explicit list: `Consumer::committed()` (the list from `assignment()`) makes the
    // consumer's drop hang in rd_kafka_destroy with librdkafka 2.12.1, on its mock cluster too.
    let all = || {
        let mut list = TopicPartitionList::new();
        for partition in 0..3 {
            list.add_partition(&topic, partition);
        }
        list
    };
    let assert_committed = |list: TopicPartitionList, who: &str| {
        for partition in 0..3 {
            let element = list
                .find_partition(&topic, partition)
                .expect("partition in the answer");
            assert_eq!(
                element.offset(),
                Offset::Offset(2),
                "{who}: partition {partition}"
            );
        }
    };
    assert_committed(
        first.committed_offsets(all(), TIMEOUT).expect("committed"),
        "member",
    );
    drop(first);

    // Another client, not a member, reads the group's committed offsets.
    let outsider = common::consumer(&group);
    assert_committed(
        outsider
            .committed_offsets(all(), TIMEOUT)
            .expect("committed"),
        "outsider",
    );
    drop(outsider);

    for partition in 0..3 {
        send(
            &producer,
            FutureRecord::to(&topic)
                .partition(partition)
                .key("k")
                .payload(&b"second"[..]),
        )
        .await;
    }
    let started = Instant::now();
    let second = common::consumer(&group);
    second.subscribe(&[&topic]).expect("subscribe");
    let batch = common::recv_n(&second, 3).await;
    eprintln!(
        "rejoin + first 3 records after commit: {:?}",
        started.elapsed()
    );
    for m in &batch {
        assert_eq!(
            m.payload(),
            Some(&b"second"[..]),
            "resumed after the commit"
        );
        assert_eq!(m.offset(), 2);
    }
    common::assert_no_more(&second, Duration::from_millis(500)).await;
}
