//! Restart recovery: the service binary is killed with SIGKILL in the middle of a stream and
//! started again. It must replay its input, stay not ready and publish nothing until it has
//! caught up, and then answer and publish exactly what an uninterrupted run over the same input
//! does.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use serde_json::Value;

use crate::broker::free_port;
use crate::common;
use crate::service::{Producer, Service, Topics};

const MINUTE: i64 = 60_000;
/// Waits that span a group join, a replay and a fault are longer than [`TIMEOUT`].
pub const LONG: Duration = Duration::from_secs(120);

pub use crate::common::now_ms;

/// One input event of a deterministic stream.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    Order { store: i32, id: i32, at: i64 },
    Completed { store: i32, id: i32, at: i64 },
    Cancelled { store: i32, id: i32, at: i64 },
}

impl Event {
    pub fn at(&self) -> i64 {
        match *self {
            Event::Order { at, .. } | Event::Completed { at, .. } | Event::Cancelled { at, .. } => {
                at
            }
        }
    }

    pub async fn send(&self, p: &mut Producer, t: &Topics) {
        match *self {
            Event::Order { store, id, at } => p.order(t, store, id, at).await,
            Event::Completed { store, id, at } => p.completed(t, store, id, 120, 600, at).await,
            Event::Cancelled { store, id, at } => p.cancelled(t, store, id, at).await,
        }
    }
}

/// Orders for `stores` stores, `orders` each, in event-time order starting at `base`: most
/// complete 2–6 minutes after placement, some are cancelled, some stay open. Every event of the
/// stream lies within 9 minutes, less than the match TTL (10 min) and the window (30 min), so no
/// expiry or eviction depends on the order in which partitions happen to be read: any complete
/// reading of the stream gives the same state.
pub fn stream(base: i64, stores: i32, orders: i32) -> Vec<Event> {
    let mut events = Vec::new();
    for store in 1..=stores {
        for id in 0..orders {
            let placed = base + i64::from((id * 3 + store * 7) % 180) * 1000;
            events.push(Event::Order {
                store,
                id,
                at: placed,
            });
            if (id + store) % 9 == 0 {
                let at = placed + MINUTE + i64::from(id % 60) * 1000;
                events.push(Event::Cancelled { store, id, at });
            } else if (id + 2 * store) % 11 != 0 {
                let wait_s = 120 + (id * 37 + store * 13) % 240;
                let at = placed + i64::from(wait_s) * 1000;
                events.push(Event::Completed { store, id, at });
            }
        }
    }
    events.sort_by_key(Event::at);
    events
}

/// Every store's answer from `GET {base}/stores`, by store id.
pub async fn stores(client: &reqwest::Client, base: &str) -> HashMap<i64, Value> {
    let mut all = served(client, base).await;
    // Which instance computed an answer, and when, is not part of what it says.
    for answer in all.values_mut() {
        if let Some(fields) = answer.as_object_mut() {
            for provenance in ["source", "computed_by", "computed_at", "computed_at_ms"] {
                fields.remove(provenance);
            }
        }
    }
    all
}

/// `GET {base}/stores` by store id, as served (with where each answer comes from).
pub async fn served(client: &reqwest::Client, base: &str) -> HashMap<i64, Value> {
    let response = client
        .get(format!("{base}/stores"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {base}/stores: {e}"));
    assert_eq!(response.status().as_u16(), 200, "GET {base}/stores");
    let body: Value = response.json().await.expect("JSON from /stores");
    body.as_array()
        .expect("/stores answers an array")
        .iter()
        .map(|s| (s["store_id"].as_i64().expect("store_id"), s.clone()))
        .collect()
}

/// `GET {base}/health/ready`: the status and body, or `None` while nothing listens there.
pub async fn readiness(client: &reqwest::Client, base: &str) -> Option<(u16, Value)> {
    let response = client
        .get(format!("{base}/health/ready"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    let body = response.json().await.expect("JSON from /health/ready");
    Some((status, body))
}

/// Waits until `/health/ready` answers 200.
pub async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + LONG;
    loop {
        let answer = readiness(client, base).await;
        if matches!(answer, Some((200, _))) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{base} not ready after {LONG:?}: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The published value per store in an answer map (stores without a value are left out).
pub fn expected_output(answers: &HashMap<i64, Value>) -> HashMap<i32, i32> {
    answers
        .iter()
        .filter_map(|(store, a)| {
            let minutes = a["wait_time_minutes"].as_i64()?;
            Some((*store as i32, minutes as i32))
        })
        .collect()
}

/// Waits until two services' `/stores` answers are equal and have `stores` stores; returns
/// them. Both services read the same input to its end, so once equal they stay equal.
pub async fn converged(
    client: &reqwest::Client,
    a: &str,
    b: &str,
    stores_expected: usize,
) -> HashMap<i64, Value> {
    let deadline = Instant::now() + LONG;
    loop {
        let left = stores(client, a).await;
        let right = stores(client, b).await;
        if left == right && left.len() == stores_expected {
            return left;
        }
        assert!(
            Instant::now() < deadline,
            "the answers never matched:\n{a}: {left:#?}\n{b}: {right:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The last value per store on a wait-times topic, read from the start until it equals
/// `expected`; then the topic is drained (no record for a second) and checked again, so a later
/// different value cannot hide behind an early match. Returns the number of records read.
pub async fn assert_last_values(
    consumer_config: rdkafka::ClientConfig,
    topic: &str,
    expected: &HashMap<i32, i32>,
) -> usize {
    let consumer: StreamConsumer = consumer_config
        .clone()
        .set("group.id", common::unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("create a reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut last = HashMap::new();
    let mut schemas: HashMap<u32, apache_avro::Schema> = HashMap::new();
    let mut records = 0;
    let deadline = Instant::now() + LONG;
    let mut matched = false;
    loop {
        if !matched && last == *expected {
            matched = true;
        }
        let quiet = if matched { 1000 } else { 500 };
        let next = tokio::time::timeout(Duration::from_millis(quiet), consumer.recv()).await;
        let msg = match next {
            Ok(Ok(msg)) => msg,
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) if matched => break,
            Err(_) => {
                assert!(
                    Instant::now() < deadline,
                    "{topic} never held the expected last values;\nexpected {expected:?}\nlast {last:?}"
                );
                continue;
            }
        };
        records += 1;
        let (id, body) = common::confluent_unframe(msg.payload().expect("a value"));
        if let std::collections::hash_map::Entry::Vacant(slot) = schemas.entry(id) {
            let text = common::schema_text_by_id(id).await;
            slot.insert(apache_avro::Schema::parse_str(&text).expect("schema"));
        }
        let value =
            apache_avro::from_avro_datum(&schemas[&id], &mut &body[..], None).expect("avro");
        let apache_avro::types::Value::Record(fields) = value else {
            panic!("not a record")
        };
        let field = |name: &str| match fields.iter().find(|(n, _)| n == name) {
            Some((_, apache_avro::types::Value::Int(v))) => *v,
            other => panic!("field {name}: {other:?}"),
        };
        last.insert(field("store_id"), field("wait_time"));
    }
    assert_eq!(
        last, *expected,
        "{topic}: the last values changed after matching"
    );
    records
}

/// The end offset (sum over partitions) of `topic`.
pub fn end_offset(consumer: &BaseConsumer, topic: &str) -> i64 {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks")
                .1
        })
        .sum()
}

/// The service binary run as a child process with a generated configuration file.
pub struct Process {
    child: Child,
    pub base: String,
    log: PathBuf,
}

impl Process {
    /// Starts `waittimes run --config <config>`; `port` is the HTTP port the file sets.
    pub fn start(config: &PathBuf, port: u16, log: &PathBuf) -> Process {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the service log");
        let err = out.try_clone().expect("clone the log handle");
        let mut command = Command::new(env!("CARGO_BIN_EXE_waittimes"));
        command.arg("run").arg("--config").arg(config);
        // Only the file configures the service.
        for (key, _) in std::env::vars() {
            if key.starts_with("WAITTIMES__") || key == "WAITTIMES_CONFIG" {
                command.env_remove(key);
            }
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start the service binary");
        Process {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: log.clone(),
        }
    }

    /// SIGTERM, and waits for the process to stop (it leaves the group on its way out).
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        self.child.wait().expect("reap the service");
    }

    /// SIGKILL: no shutdown hooks, no final publish, no commit.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL the service");
        self.child.wait().expect("reap the service");
    }

    /// Waits until `/health/ready` answers 200, failing early if the process exits.
    pub async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + LONG;
        loop {
            self.assert_alive();
            let answer = readiness(client, &self.base).await;
            if matches!(answer, Some((200, _))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the service is not ready after {LONG:?}: {answer:?} (log: {})",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!("the service exited ({status}); log:\n{log}");
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn write_config(t: &Topics, port: u16) -> PathBuf {
    let text = format!(
        r#"[kafka]
bootstrap_servers = "{bootstrap}"
group_id = "{group}"

[kafka.properties]
"session.timeout.ms" = "6000"

[schema_registry]
url = "{registry}"

[topics]
orders = "{orders}"
completed = "{completed}"
cancelled = "{cancelled}"
wait_times = "{wait_times}"
features = "{features}"
dead_letter = "{dead_letter}"
answers = "{answers}"

[output]
emit_interval = "200ms"

[http]
listen = "127.0.0.1:{port}"

[log]
level = "info"
"#,
        bootstrap = common::bootstrap(),
        group = t.group,
        registry = common::schema_registry_url(),
        orders = t.orders,
        completed = t.completed,
        cancelled = t.cancelled,
        wait_times = t.wait_times,
        features = t.features,
        dead_letter = t.dead_letter,
        answers = t.answers,
    );
    let path = std::env::temp_dir().join(format!("{}.toml", common::unique("waittimes-restart")));
    std::fs::write(&path, text).expect("write the config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_matches_an_uninterrupted_run() {
    common::require_stack();
    const STORES: i32 = 8;
    let t = Topics::create(2).await;
    // The uninterrupted run: the same input topics, its own group and outputs.
    let u = sibling(&t);
    common::create_topics(&[(&u.wait_times, 1), (&u.dead_letter, 1)]).await;
    let events = stream(now_ms() - 20 * MINUTE, STORES, 60);
    let (first, rest) = events.split_at(events.len() * 2 / 5);
    let (during, after) = rest.split_at(rest.len() / 2);
    let mut p = Producer::new();
    for e in first {
        e.send(&mut p, &t).await;
    }

    let uninterrupted = Service::start(&u).await;
    let port = free_port();
    let config = write_config(&t, port);
    let log = std::env::temp_dir().join(format!("{}.log", common::unique("waittimes-restart")));
    let client = reqwest::Client::new();
    let mut svc = Process::start(&config, port, &log);
    svc.wait_ready(&client).await;

    // Kill it while the stream flows: once it has answered for part of what is being produced.
    let during_owned = during.to_vec();
    let producing = {
        let t = clone_topics(&t);
        tokio::spawn(async move {
            let mut p = Producer::new();
            // Paced like a live stream, so the kill lands while it flows.
            for e in &during_owned {
                e.send(&mut p, &t).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let probe: BaseConsumer = common::client_config()
        .set("group.id", common::unique("probe"))
        .create()
        .expect("probe consumer");
    let seen_before = stores(&client, &svc.base).await;
    let deadline = Instant::now() + LONG;
    let before_kill = loop {
        svc.assert_alive();
        let now = stores(&client, &svc.base).await;
        if now != seen_before && end_offset(&probe, &t.wait_times) > 0 {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the service never moved on the live stream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let still_producing = !producing.is_finished();
    svc.kill9();
    producing.await.expect("the producing task");
    for e in after {
        e.send(&mut p, &t).await;
    }

    // What the killed run left on its output topic; the restart may add to it only once it has
    // caught up.
    let published_at_kill = end_offset(&probe, &t.wait_times);
    assert!(
        published_at_kill > 0,
        "the killed run published nothing before the kill"
    );

    let mut svc = Process::start(&config, port, &log);
    let mut not_ready_seen = 0;
    let deadline = Instant::now() + LONG;
    loop {
        svc.assert_alive();
        // The end offset is read before readiness: a 503 afterwards proves the service was not
        // caught up when the offset was read, so it must not have published anything new.
        let end = end_offset(&probe, &t.wait_times);
        match readiness(&client, &svc.base).await {
            Some((200, _)) => break,
            Some((status, body)) => {
                assert_eq!(status, 503, "{body}");
                if body["reasons"].get("caught_up").is_some() {
                    not_ready_seen += 1;
                    assert_eq!(
                        end, published_at_kill,
                        "the restarted service published before it caught up: {body}"
                    );
                }
            }
            None => assert_eq!(end, published_at_kill),
        }
        assert!(
            Instant::now() < deadline,
            "the restarted service never became ready (log: {})",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        not_ready_seen > 0,
        "never saw the restarted service report not caught up"
    );
    eprintln!(
        "killed {} the live stream; {published_at_kill} records published before the kill; \
         {not_ready_seen} not-caught-up probes after the restart, none saw a new record",
        if still_producing { "during" } else { "after" }
    );

    let answers = converged(&client, &svc.base, &uninterrupted.base, STORES as usize).await;
    assert_ne!(
        answers, before_kill,
        "the stream after the kill changed nothing: the test would prove nothing"
    );
    let expected = expected_output(&answers);
    assert!(!expected.is_empty());
    assert_last_values(common::client_config(), &t.wait_times, &expected).await;
    assert_last_values(common::client_config(), &u.wait_times, &expected).await;
    uninterrupted.stop().await;
    drop(svc);
    let _ = std::fs::remove_file(&config);
    let _ = std::fs::remove_file(&log);
}

pub fn clone_topics(t: &Topics) -> Topics {
    Topics {
        wait_times: t.wait_times.clone(),
        features: t.features.clone(),
        dead_letter: t.dead_letter.clone(),
        answers: t.answers.clone(),
        group: t.group.clone(),
        ..sibling(t)
    }
}

/// Topics for a second run over the same input: its own group, output and dead-letter topics
/// (not created here).
pub fn sibling(t: &Topics) -> Topics {
    Topics {
        orders: t.orders.clone(),
        completed: t.completed.clone(),
        cancelled: t.cancelled.clone(),
        wait_times: common::unique("waittimes_avro"),
        features: common::unique("waittimes_features"),
        dead_letter: common::unique("waittimes_dlq"),
        answers: common::unique("waittimes_answers"),
        group: common::unique("waittimes"),
    }
}
