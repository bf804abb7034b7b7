//! The service end to end on the local stack: lifecycles in, exact wait times out over HTTP and
//! on the wait-times topic; workshop-style incoherent data; priors; HTTP errors (dead letters:
//! `poison.rs`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::message::Headers;
use rdkafka::producer::FutureRecord;
use serde_json::Value;
use tokio::sync::oneshot;
use waittimes::config::{Config, EnvVars};
use waittimes::wire::{self, PizzaOrder, PizzaOrderCancelled, PizzaOrderCompleted, UpstreamRecord};

use crate::common::{self, TIMEOUT};

const MINUTE: i64 = 60_000;

/// Unique topic names for one test, with the env overrides that point the service at them.
pub struct Topics {
    pub orders: String,
    pub completed: String,
    pub cancelled: String,
    pub wait_times: String,
    pub features: String,
    pub dead_letter: String,
    /// The internal answers topic (created by the service).
    pub answers: String,
    pub group: String,
}

impl Topics {
    pub async fn create(partitions: i32) -> Topics {
        Topics::create_at(&common::bootstrap(), partitions).await
    }

    /// [`Topics::create`] on another broker (a test's private one).
    pub async fn create_at(bootstrap: &str, partitions: i32) -> Topics {
        let t = Topics {
            orders: common::unique("pizza_orders_avro"),
            completed: common::unique("pizza_orders_completed_avro"),
            cancelled: common::unique("pizza_orders_cancelled_avro"),
            wait_times: common::unique("waittimes_avro"),
            features: common::unique("waittimes_features"),
            dead_letter: common::unique("waittimes_dlq"),
            answers: common::unique("waittimes_answers"),
            group: common::unique("waittimes"),
        };
        common::create_topics_at(
            bootstrap,
            &[
                (&t.orders, partitions),
                (&t.completed, partitions),
                (&t.cancelled, partitions),
                (&t.wait_times, 1),
                (&t.features, 1),
                (&t.dead_letter, 1),
            ],
        )
        .await;
        t
    }

    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("WAITTIMES__KAFKA__BOOTSTRAP_SERVERS", common::bootstrap()),
            ("WAITTIMES__KAFKA__GROUP_ID", self.group.clone()),
            (
                "WAITTIMES__SCHEMA_REGISTRY__URL",
                common::schema_registry_url(),
            ),
            ("WAITTIMES__TOPICS__ORDERS", self.orders.clone()),
            ("WAITTIMES__TOPICS__COMPLETED", self.completed.clone()),
            ("WAITTIMES__TOPICS__CANCELLED", self.cancelled.clone()),
            ("WAITTIMES__TOPICS__WAIT_TIMES", self.wait_times.clone()),
            ("WAITTIMES__TOPICS__FEATURES", self.features.clone()),
            ("WAITTIMES__TOPICS__DEAD_LETTER", self.dead_letter.clone()),
            ("WAITTIMES__TOPICS__ANSWERS", self.answers.clone()),
            ("WAITTIMES__OUTPUT__EMIT_INTERVAL", "200ms".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

/// The service running in this process on an ephemeral HTTP port.
pub struct Service {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<waittimes::service::Result<()>>,
    client: reqwest::Client,
}

impl Service {
    pub async fn start(topics: &Topics) -> Service {
        Service::start_with(topics, &[]).await
    }

    /// [`Service::start`] with some settings replaced (`WAITTIMES__...` names).
    pub async fn start_with(topics: &Topics, overrides: &[(&str, String)]) -> Service {
        let mut env = topics.env();
        env.retain(|(k, _)| !overrides.iter().any(|(o, _)| o == k));
        env.extend(overrides.iter().map(|(k, v)| (k.to_string(), v.clone())));
        // A short session timeout: a killed instance's partitions move on within seconds.
        env.push((
            "WAITTIMES__KAFKA__PROPERTIES__SESSION_TIMEOUT_MS".into(),
            "6000".into(),
        ));
        let config = Config::load_with_env(None, EnvVars::from_vars(env)).expect("test config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("local addr"));
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(waittimes::service::run_with_listener(
            config,
            listener,
            async {
                let _ = rx.await;
            },
        ));
        Service {
            base,
            stop: Some(tx),
            task,
            client: reqwest::Client::new(),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status().as_u16();
        let body = response.text().await.expect("body");
        let json = serde_json::from_str(&body).unwrap_or_else(|e| {
            panic!("GET {path} gave {status} with a non-JSON body {body:?}: {e}")
        });
        (status, json)
    }

    /// Waits until `/health/ready` answers 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let (status, body) = self.get("/health/ready").await;
            if status == 200 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready after {TIMEOUT:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `/stores/{store}/wait` satisfies `check`; returns that answer.
    pub async fn wait_for_store(&self, store: i32, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let (status, body) = self.get(&format!("/stores/{store}/wait")).await;
            if status == 200 && check(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "store {store} never reached the expected answer; last: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the service to end by itself (a refused start), with what it returned.
    pub async fn finished(self) -> waittimes::service::Result<()> {
        tokio::time::timeout(TIMEOUT, self.task)
            .await
            .expect("the service ends by itself")
            .expect("the service task does not panic")
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the service stops within 30 s")
            .expect("the service task does not panic");
        result.expect("the service stops cleanly");
    }
}

use crate::common::now_ms;

/// Waits for every enqueued record's acknowledgement; fails the test on the first error.
async fn acknowledged(pending: Vec<rdkafka::producer::DeliveryFuture>) {
    for delivery in pending {
        delivery
            .await
            .expect("delivery future")
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }
}

fn order_record(store: i32, id: i32) -> PizzaOrder<'static> {
    PizzaOrder {
        store_id: store,
        store_order_id: id,
        coupon_code: 1500,
        date: 18500,
        status: "accepted",
        order_lines: &[],
    }
}

fn completed_record(store: i32, id: i32, rack: i32, delivery: i32) -> PizzaOrderCompleted<'static> {
    PizzaOrderCompleted {
        store_id: store,
        store_order_id: id,
        date: 18500,
        status: "completed",
        rack_time_secs: rack,
        order_delivery_time_secs: delivery,
    }
}

fn cancelled_record(store: i32, id: i32) -> PizzaOrderCancelled<'static> {
    PizzaOrderCancelled {
        store_id: store,
        store_order_id: id,
        date: 18500,
        status: "cancelled",
    }
}

/// Produces upstream-schema records with explicit timestamps, keyed by store id.
pub struct Producer {
    producer: rdkafka::producer::FutureProducer,
    ids: HashMap<String, u32>,
}

impl Producer {
    pub fn new() -> Producer {
        Producer::with(common::producer())
    }

    /// Produces with `producer` (e.g. one for a test's private broker).
    pub fn with(producer: rdkafka::producer::FutureProducer) -> Producer {
        Producer {
            producer,
            ids: HashMap::new(),
        }
    }

    async fn schema_id(&mut self, topic: &str, schema: &str) -> u32 {
        if let Some(id) = self.ids.get(topic) {
            return *id;
        }
        let id = common::register_avro(&format!("{topic}-value"), schema).await;
        self.ids.insert(topic.to_string(), id);
        id
    }

    pub async fn raw(&self, topic: &str, key: Option<&str>, payload: Option<&[u8]>, at: i64) {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).timestamp(at);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(payload) = payload {
            record = record.payload(payload);
        }
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
    }

    pub async fn record<R: UpstreamRecord>(&mut self, topic: &str, store: i32, r: &R, at: i64) {
        let id = self.schema_id(topic, R::SCHEMA).await;
        let mut buf = Vec::new();
        r.write_framed(id, &mut buf);
        self.raw(topic, Some(&store.to_string()), Some(&buf), at)
            .await;
    }

    pub async fn order(&mut self, t: &Topics, store: i32, id: i32, at: i64) {
        self.record(&t.orders, store, &order_record(store, id), at)
            .await;
    }

    pub async fn completed(
        &mut self,
        t: &Topics,
        store: i32,
        id: i32,
        rack: i32,
        delivery: i32,
        at: i64,
    ) {
        let r = completed_record(store, id, rack, delivery);
        self.record(&t.completed, store, &r, at).await;
    }

    pub async fn cancelled(&mut self, t: &Topics, store: i32, id: i32, at: i64) {
        self.record(&t.cancelled, store, &cancelled_record(store, id), at)
            .await;
    }

    /// Produces `events` without waiting between them, so the client packs them into
    /// multi-record batches (`linger.ms`), as a real producer under load does; returns once
    /// every one is acknowledged.
    pub async fn batch(&mut self, t: &Topics, events: &[crate::recovery::Event]) {
        use crate::recovery::Event;
        let mut frames = Vec::with_capacity(events.len());
        for e in events {
            let (topic, store, at, buf) = match *e {
                Event::Order { store, id, at } => {
                    let buf = self.framed(&t.orders, &order_record(store, id)).await;
                    (&t.orders, store, at, buf)
                }
                Event::Completed { store, id, at } => {
                    let r = completed_record(store, id, 120, 600);
                    (&t.completed, store, at, self.framed(&t.completed, &r).await)
                }
                Event::Cancelled { store, id, at } => {
                    let buf = self
                        .framed(&t.cancelled, &cancelled_record(store, id))
                        .await;
                    (&t.cancelled, store, at, buf)
                }
            };
            frames.push((topic.clone(), store.to_string(), at, buf));
        }
        let pending: Vec<_> = frames
            .iter()
            .map(|(topic, key, at, buf)| {
                self.producer
                    .send_result(
                        FutureRecord::to(topic)
                            .key(key.as_str())
                            .payload(buf.as_slice())
                            .timestamp(*at),
                    )
                    .unwrap_or_else(|(e, _)| panic!("enqueue to {topic}: {e}"))
            })
            .collect();
        acknowledged(pending).await;
    }

    async fn framed<R: UpstreamRecord>(&mut self, topic: &str, r: &R) -> Vec<u8> {
        let id = self.schema_id(topic, R::SCHEMA).await;
        let mut buf = Vec::new();
        r.write_framed(id, &mut buf);
        buf
    }

    /// Seeds many priors at once, in multi-record batches (values only, no key).
    pub async fn seed_priors_batch(&mut self, t: &Topics, priors: &[(i32, i32)]) {
        let id = self.schema_id(&t.wait_times, wire::WAIT_TIMES_SCHEMA).await;
        let values: Vec<_> = priors
            .iter()
            .map(|&(store, minutes)| wire::encode_wait_times(id, store, minutes))
            .collect();
        let pending: Vec<_> = values
            .iter()
            .map(|v| {
                self.producer
                    .send_result(
                        FutureRecord::<str, [u8]>::to(&t.wait_times)
                            .payload(v.as_slice())
                            .timestamp(now_ms()),
                    )
                    .unwrap_or_else(|(e, _)| panic!("enqueue a prior: {e}"))
            })
            .collect();
        acknowledged(pending).await;
    }

    /// Seeds the wait-times topic the workshop's way: values only, no key.
    pub async fn seed_prior(&mut self, t: &Topics, store: i32, minutes: i32) {
        let id = self.schema_id(&t.wait_times, wire::WAIT_TIMES_SCHEMA).await;
        let value = wire::encode_wait_times(id, store, minutes);
        self.raw(&t.wait_times, None, Some(&value), now_ms()).await;
    }
}

/// The last value per key on the wait-times topic, decoded through the registry, once it
/// satisfies `check`.
pub async fn published(
    t: &Topics,
    check: impl Fn(&HashMap<i32, i32>) -> bool,
) -> HashMap<i32, i32> {
    let consumer = common::consumer(&common::unique("reader"));
    consumer.subscribe(&[&t.wait_times]).expect("subscribe");
    let mut last = HashMap::new();
    let mut schemas: HashMap<u32, apache_avro::Schema> = HashMap::new();
    let deadline = Instant::now() + TIMEOUT;
    while !check(&last) {
        assert!(
            Instant::now() < deadline,
            "wait-times topic never matched; last: {last:?}"
        );
        let Ok(Ok(msg)) = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await
        else {
            continue;
        };
        let payload = msg.payload().expect("a value");
        let (id, body) = common::confluent_unframe(payload);
        if let std::collections::hash_map::Entry::Vacant(slot) = schemas.entry(id) {
            let text = common::schema_text_by_id(id).await;
            slot.insert(apache_avro::Schema::parse_str(&text).expect("schema"));
        }
        let schema = &schemas[&id];
        let value = apache_avro::from_avro_datum(schema, &mut &body[..], None).expect("avro");
        let apache_avro::types::Value::Record(fields) = value else {
            panic!("not a record")
        };
        let field = |name: &str| match fields.iter().find(|(n, _)| n == name) {
            Some((_, apache_avro::types::Value::Int(v))) => *v,
            other => panic!("field {name}: {other:?}"),
        };
        let store = field("store_id");
        if let Some(key) = msg.key() {
            assert_eq!(
                std::str::from_utf8(key).expect("utf-8 key"),
                store.to_string()
            );
        }
        last.insert(store, field("wait_time"));
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coherent_lifecycles_give_exact_wait_times() {
    common::require_stack();
    let t = Topics::create(3).await;
    let mut p = Producer::new();
    let base = now_ms() - 60 * MINUTE;
    // Store 1: five orders waiting 11..=15 minutes → mean 13, p50 13.
    for i in 0..5 {
        let placed = base + i as i64 * MINUTE;
        p.order(&t, 1, 100 + i, placed).await;
        p.completed(&t, 1, 100 + i, 200, 1500, placed + (11 + i as i64) * MINUTE)
            .await;
    }
    // Store 2: two completions (6 and 8 minutes), one cancellation, one order still open. All
    // within the match TTL (10 min) of each other: the broker may deliver the three topics in
    // any interleaving, and a completion read before its order must still be matched.
    p.order(&t, 2, 1, base).await;
    p.order(&t, 2, 2, base + MINUTE).await;
    p.order(&t, 2, 3, base + 2 * MINUTE).await;
    p.order(&t, 2, 4, base + 3 * MINUTE).await;
    p.completed(&t, 2, 1, 200, 1500, base + 6 * MINUTE).await;
    p.completed(&t, 2, 2, 200, 1500, base + 9 * MINUTE).await;
    p.cancelled(&t, 2, 3, base + 5 * MINUTE).await;

    let svc = Service::start(&t).await;
    svc.wait_ready().await;
    let s1 = svc.wait_for_store(1, |b| b["observations"] == 5).await;
    assert_eq!(s1["store_id"], 1);
    assert_eq!(s1["wait_time_minutes"], 13, "{s1}");
    assert_eq!(s1["basis"], "live");
    assert_eq!(s1["p50_minutes"], 13.0, "{s1}");
    assert_eq!(s1["open_orders"], 0);
    assert!(
        s1["updated_at"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{s1}"
    );
    let s2 = svc.wait_for_store(2, |b| b["observations"] == 2).await;
    assert_eq!(s2["open_orders"], 1, "{s2}");
    assert_eq!(s2["basis"], "live");
    assert_eq!(s2["wait_time_minutes"], 7, "measured 6 and 8 minutes: {s2}");
    assert_eq!(
        s2["cancellation_rate"].as_f64().map(|r| (r * 3.0).round()),
        Some(1.0),
        "{s2}"
    );
    let (status, all) = svc.get("/stores").await;
    assert_eq!(status, 200);
    let ids: Vec<i64> = all
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["store_id"].as_i64())
        .collect();
    assert_eq!(ids, vec![1, 2]);

    let s2_minutes = s2["wait_time_minutes"].as_i64().expect("a live value") as i32;
    let out = published(&t, |m| {
        m.get(&1) == Some(&13) && m.get(&2) == Some(&s2_minutes)
    })
    .await;
    assert_eq!(out.len(), 2, "{out:?}");

    // Live: two more orders for store 1 (21 and 22 minutes, completing inside the window of
    // the earlier ones) move the answer on both faces: median of 11..=15, 21, 22 is 14.
    for (id, wait) in [(200, 21), (201, 22)] {
        let placed = base + 5 * MINUTE;
        p.order(&t, 1, id, placed).await;
        p.completed(&t, 1, id, 200, 1500, placed + wait * MINUTE)
            .await;
    }
    let s1 = svc.wait_for_store(1, |b| b["observations"] == 7).await;
    assert_eq!(s1["wait_time_minutes"], 14, "{s1}");
    published(&t, |m| m.get(&1) == Some(&14)).await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workshop_style_incoherent_data_uses_reported_durations() {
    common::require_stack();
    let t = Topics::create(1).await;
    let mut p = Producer::new();
    let base = now_ms() - 60 * MINUTE;
    // Completions run ahead of orders and carry independent store ids, as Datagen's do.
    // Store 5: completion of an order never placed there: rack 200 s + delivery 1600 s = 30 min.
    p.completed(&t, 5, 1000, 200, 1600, base).await;
    // Store 6: the completion comes first, its order a minute later: placement is later than
    // completion, so the reported durations (130 + 1100 s = 20.5 min) stand.
    p.completed(&t, 6, 1002, 130, 1100, base + MINUTE).await;
    p.order(&t, 6, 1002, base + 2 * MINUTE).await;
    // Store 7: an order whose completion is on another store: it stays open.
    p.order(&t, 7, 1004, base).await;

    let svc = Service::start(&t).await;
    svc.wait_ready().await;
    let s5 = svc.wait_for_store(5, |b| b["observations"] == 1).await;
    assert_eq!(s5["wait_time_minutes"], 30, "{s5}");
    let s6 = svc.wait_for_store(6, |b| b["observations"] == 1).await;
    assert_eq!(s6["p50_minutes"], 20.5, "{s6}");
    assert_eq!(s6["open_orders"], 0, "{s6}");
    let s7 = svc.wait_for_store(7, |b| b["open_orders"] == 1).await;
    assert_eq!(s7["observations"], 0);
    assert_eq!(s7["basis"], "none", "{s7}");
    assert!(s7["wait_time_minutes"].is_null(), "{s7}");
    svc.stop().await;
}

/// A dead letter's header as text; fails the test, naming `what`, when it is missing.
pub fn header(letter: &rdkafka::message::OwnedMessage, name: &str, what: &str) -> String {
    letter
        .headers()
        .and_then(|h| h.iter().find(|h| h.key == name))
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(|| panic!("{what}: header {name} missing"))
}

pub async fn raw_get(svc: &Service, path: &str) -> (u16, String) {
    let r = reqwest::get(format!("{}{path}", svc.base))
        .await
        .expect("GET");
    (r.status().as_u16(), r.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priors_from_a_seeded_topic_stand_until_live_data() {
    common::require_stack();
    let t = Topics::create(1).await;
    let mut p = Producer::new();
    // The workshop's stale values, values only; the latest per store wins.
    p.seed_prior(&t, 7, 99).await;
    for (store, minutes) in [(1, 15), (2, 20), (3, 7), (7, 13)] {
        p.seed_prior(&t, store, minutes).await;
    }
    let svc = Service::start(&t).await;
    svc.wait_ready().await;
    let s7 = svc.wait_for_store(7, |b| b["basis"] == "prior").await;
    assert_eq!(s7["wait_time_minutes"], 13, "{s7}");
    assert_eq!(s7["observations"], 0);
    let s3 = svc.wait_for_store(3, |b| b["basis"] == "prior").await;
    assert_eq!(s3["wait_time_minutes"], 7);

    // Live data for store 3 takes over.
    let placed = now_ms() - 20 * MINUTE;
    p.order(&t, 3, 1, placed).await;
    p.completed(&t, 3, 1, 100, 100, placed + 12 * MINUTE).await;
    let s3 = svc.wait_for_store(3, |b| b["basis"] == "live").await;
    assert_eq!(s3["wait_time_minutes"], 12, "{s3}");
    published(&t, |m| m.get(&3) == Some(&12)).await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_input_gets_json_errors() {
    common::require_stack();
    let t = Topics::create(1).await;
    let svc = Service::start(&t).await;
    svc.wait_ready().await;
    for path in [
        "/stores/abc/wait",
        "/stores/0/wait",
        "/stores/-4/wait",
        "/stores/2147483648/wait",
    ] {
        let (status, body) = svc.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{path}: {body}"
        );
    }
    let (status, body) = svc.get("/stores/42/wait").await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].is_string());
    let (status, body) = svc.get("/no/such/route").await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = svc.get("/health/live").await;
    assert_eq!(status, 200, "{body}");
    svc.stop().await;
}
