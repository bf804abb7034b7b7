//! Helpers shared by the integration tests: where the stack is, unique topic names, Kafka clients
//! with test-friendly settings, topic creation, Schema Registry calls and Confluent framing.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Message};
use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_schema_by_id, post_schema,
};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};

/// How long any single wait in a test may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The broker's `host:port` (`WAITTIMES_TEST_BOOTSTRAP`, default `127.0.0.1:19092`).
pub fn bootstrap() -> String {
    std::env::var("WAITTIMES_TEST_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:19092".to_owned())
}

/// The Schema Registry's base URL (`WAITTIMES_TEST_SCHEMA_REGISTRY`, default
/// `http://127.0.0.1:18081`).
pub fn schema_registry_url() -> String {
    std::env::var("WAITTIMES_TEST_SCHEMA_REGISTRY")
        .unwrap_or_else(|_| "http://127.0.0.1:18081".to_owned())
}

/// Fails the test at once, with directions, when the stack is not there (instead of letting a
/// client retry until some timeout with a vaguer error).
pub fn require_stack() {
    fn reachable(what: &str, env: &str, host_port: &str) {
        let addrs: Vec<_> = host_port
            .to_socket_addrs()
            .unwrap_or_else(|e| panic!("{env}={host_port}: not a host:port ({e})"))
            .collect();
        let ok = addrs
            .iter()
            .any(|a| TcpStream::connect_timeout(a, Duration::from_secs(2)).is_ok());
        assert!(
            ok,
            "no {what} at {host_port} ({env}): start one with `scripts/stack up` \
             (and export {env}), or run everything with `scripts/test`"
        );
    }
    reachable("Kafka broker", "WAITTIMES_TEST_BOOTSTRAP", &bootstrap());
    let url = schema_registry_url();
    let host_port = url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/');
    reachable(
        "Schema Registry",
        "WAITTIMES_TEST_SCHEMA_REGISTRY",
        host_port,
    );
}

/// The wall clock in Kafka's milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `base` plus a suffix unique to this process and call, so tests can share one broker, run in
/// parallel and be re-run without cleaning up.
pub fn unique(base: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{base}-{:x}-{}-{n}",
        nanos % 0x1_0000_0000_0000,
        std::process::id()
    )
}

/// Client settings every test client starts from: a short session timeout, so a killed member's
/// partitions move on within seconds.
pub fn client_config() -> ClientConfig {
    client_config_at(&bootstrap())
}

/// [`client_config`] for another broker (a test's private one).
pub fn client_config_at(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("socket.timeout.ms", "10000")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("topic.metadata.refresh.interval.ms", "1000");
    config
}

pub fn producer() -> FutureProducer {
    client_config()
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("create producer")
}

/// A consumer in `group` reading from the earliest offset, committing only when told to.
pub fn consumer(group: &str) -> StreamConsumer {
    client_config()
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("create consumer")
}

/// An admin client for `bootstrap` (the shared broker's or a test's private one).
pub fn admin_at(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    client_config_at(bootstrap)
        .create()
        .expect("create admin client")
}

/// Creates the topics (name, partitions) and waits until the broker's metadata shows all of them
/// with all their partitions.
pub async fn create_topics(topics: &[(&str, i32)]) {
    create_topics_at(&bootstrap(), topics).await
}

/// [`create_topics`] on another broker (a test's private one).
pub async fn create_topics_at(bootstrap: &str, topics: &[(&str, i32)]) {
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|&(name, partitions)| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin_at(bootstrap)
        .create_topics(&new, &options)
        .await
        .expect("CreateTopics request");
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => panic!("creating topic {name}: {code}"),
        }
    }
    let probe: StreamConsumer = client_config_at(bootstrap)
        .set("group.id", unique("metadata-probe"))
        .create()
        .expect("create consumer");
    let deadline = Instant::now() + TIMEOUT;
    for &(name, partitions) in topics {
        loop {
            let seen = probe
                .fetch_metadata(Some(name), Timeout::After(Duration::from_secs(5)))
                .ok()
                .and_then(|m| {
                    m.topics()
                        .iter()
                        .find(|t| t.name() == name && t.error().is_none())
                        .map(|t| t.partitions().len())
                });
            if seen == Some(partitions as usize) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "topic {name} not visible with {partitions} partitions after {TIMEOUT:?} (seen {seen:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Receives exactly `n` messages (fails after [`TIMEOUT`] without them).
pub async fn recv_n(consumer: &StreamConsumer, n: usize) -> Vec<OwnedMessage> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => out.push(message.detach()),
            Ok(Err(e)) => panic!("consumer error after {} of {n} messages: {e}", out.len()),
            Err(_) => panic!("only {} of {n} messages within {TIMEOUT:?}", out.len()),
        }
    }
    out
}

/// Asserts that nothing more arrives within `quiet`.
pub async fn assert_no_more(consumer: &StreamConsumer, quiet: Duration) {
    if let Ok(result) = tokio::time::timeout(quiet, consumer.recv()).await {
        match result {
            Ok(m) => panic!(
                "unexpected extra message: partition {} offset {}",
                m.partition(),
                m.offset()
            ),
            Err(e) => panic!("consumer error: {e}"),
        }
    }
}

pub fn sr_settings() -> SrSettings {
    SrSettings::new(schema_registry_url())
}

/// Registers an Avro schema under `subject`; returns its id.
pub async fn register_avro(subject: &str, schema: &str) -> u32 {
    let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema.to_owned());
    post_schema(&sr_settings(), subject.to_owned(), supplied)
        .await
        .unwrap_or_else(|e| panic!("registering a schema under {subject}: {e}"))
        .id
}

/// The schema text the registry holds for `id` (GET /schemas/ids/{id}).
pub async fn schema_text_by_id(id: u32) -> String {
    get_schema_by_id(id, &sr_settings())
        .await
        .unwrap_or_else(|e| panic!("fetching schema id {id}: {e}"))
        .schema
}

/// Confluent wire format: magic byte 0, the schema id (4 bytes, big-endian), the Avro body.
pub fn confluent_frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(5 + body.len());
    framed.push(0);
    framed.extend_from_slice(&schema_id.to_be_bytes());
    framed.extend_from_slice(body);
    framed
}

/// Splits a Confluent-framed payload into (schema id, Avro body).
pub fn confluent_unframe(payload: &[u8]) -> (u32, &[u8]) {
    assert!(
        payload.len() >= 5 && payload[0] == 0,
        "not Confluent-framed: {payload:02x?}"
    );
    let id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
    (id, &payload[5..])
}
