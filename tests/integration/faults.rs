//! Faults the service must ride out without losing input: a 30 s network cut between it and
//! the broker, and a Schema Registry outage while a record with a new schema id arrives.

use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::FutureProducer;
use serde_json::Value;
use waittimes::wire::{PizzaOrderCompleted, UpstreamRecord};

use crate::broker::{BrokerOptions, PrivateBroker, free_port};
use crate::common;
use crate::proxy::Proxy;
use crate::recovery::{
    LONG, assert_last_values, converged, end_offset, expected_output, now_ms, readiness, sibling,
    stream, wait_ready,
};
use crate::service::{Producer, Service, Topics};

const MINUTE: i64 = 60_000;
/// The client id of connections the broker proxy's cuts spare: the test's own clients and the
/// uncut reference run.
const SPARED: &str = "waittimes-test-spared";
/// How long the network stays cut (the product owner's figure).
const CUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "since the answers table (two more Kafka clients per instance), the services never get a partition assignment through the test proxy before the cut; to be fixed first"]
async fn a_30_s_network_cut_to_the_broker_loses_nothing() {
    common::require_stack();
    const STORES: i32 = 6;
    let port = free_port();
    let proxy = Proxy::start_kafka(0, format!("127.0.0.1:{port}"), SPARED).await;
    let broker = PrivateBroker::start(BrokerOptions {
        port: Some(port),
        advertised: Some(proxy.addr()),
    });
    let t = Topics::create_at(&broker.bootstrap(), 2).await;
    // The uncut reference run: the same input, its own group and outputs.
    let u = sibling(&t);
    common::create_topics_at(
        &broker.bootstrap(),
        &[(&u.wait_times, 1), (&u.features, 1), (&u.dead_letter, 1)],
    )
    .await;
    let spared = || {
        let mut c = common::client_config_at(&broker.bootstrap());
        c.set("client.id", SPARED);
        c
    };
    let producer: FutureProducer = spared()
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("create producer");
    let mut p = Producer::with(producer);
    let events = stream(now_ms() - 20 * MINUTE, STORES, 50);
    let (before, rest) = events.split_at(events.len() * 2 / 5);
    let (during, after) = rest.split_at(rest.len() / 2);
    for e in before {
        e.send(&mut p, &t).await;
    }

    // Both bootstrap from the proxy; only the service under test is cut off.
    let svc =
        Service::start_with(&t, &[("WAITTIMES__KAFKA__BOOTSTRAP_SERVERS", proxy.addr())]).await;
    let uncut = Service::start_with(
        &u,
        &[
            ("WAITTIMES__KAFKA__BOOTSTRAP_SERVERS", proxy.addr()),
            (
                "WAITTIMES__KAFKA__PROPERTIES__CLIENT_ID",
                SPARED.to_string(),
            ),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    wait_ready(&client, &svc.base).await;
    wait_ready(&client, &uncut.base).await;

    proxy.cut();
    let cut_at = Instant::now();
    for e in during {
        e.send(&mut p, &t).await;
    }
    let mut reason = None;
    while cut_at.elapsed() < CUT {
        let (status, body) = svc.get("/health/ready").await;
        if let Some(broker_reason) = body["reasons"].get("broker") {
            assert_eq!(status, 503, "{body}");
            reason = Some(broker_reason.clone());
        } else if reason.is_some() {
            panic!("the broker condition cleared while the network was still cut: {status} {body}");
        }
        let (live, _) = svc.get("/health/live").await;
        assert_eq!(live, 200, "the process must stay up during the cut");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reason =
        reason.unwrap_or_else(|| panic!("readiness never named the broker during a {CUT:?} cut"));
    assert!(
        reason.as_str().is_some_and(|r| !r.is_empty()),
        "a reason for the broker condition: {reason}"
    );
    assert!(
        proxy.refused() > 0,
        "the service never tried to reconnect during the cut"
    );
    proxy.restore();
    let restored_at = Instant::now();
    for e in after {
        e.send(&mut p, &t).await;
    }

    wait_ready(&client, &svc.base).await;
    eprintln!(
        "cut for {CUT:?}: readiness said broker: {reason}; {} reconnects refused; ready again \
         {:?} after the restore",
        proxy.refused(),
        restored_at.elapsed()
    );
    assert_lost_nothing(&svc, &uncut, (&t, &u), STORES, spared()).await;
    svc.stop().await;
    uncut.stop().await;
    drop(broker);
}

/// The run that suffered the fault (`t`) ends as the reference run (`u`) over the same input:
/// the same answers for every store, the same last value per store on both output topics, and
/// nothing dead-lettered.
async fn assert_lost_nothing(
    svc: &Service,
    reference: &Service,
    (t, u): (&Topics, &Topics),
    stores: i32,
    client_config: rdkafka::ClientConfig,
) {
    let client = reqwest::Client::new();
    let answers = converged(&client, &svc.base, &reference.base, stores as usize).await;
    let expected = expected_output(&answers);
    assert!(!expected.is_empty());
    assert_last_values(client_config.clone(), &t.wait_times, &expected).await;
    assert_last_values(client_config.clone(), &u.wait_times, &expected).await;
    let probe: BaseConsumer = client_config
        .clone()
        .set("group.id", common::unique("probe"))
        .create()
        .expect("probe consumer");
    assert_eq!(
        end_offset(&probe, &t.dead_letter),
        0,
        "nothing was dead-lettered"
    );
}

/// The upstream completed-order schema with one more optional field: a compatible new version
/// whose id the service has not seen.
fn completed_v2_schema() -> String {
    let mut schema: Value = serde_json::from_str(waittimes::wire::UPSTREAM_PIZZA_ORDERS_COMPLETED)
        .expect("the upstream schema is JSON");
    schema["fields"]
        .as_array_mut()
        .expect("a record schema")
        .push(serde_json::json!({
            "name": "kitchen_note",
            "type": ["null", "string"],
            "default": null
        }));
    schema.to_string()
}

/// A completion framed with the v2 schema id: the v1 body plus the null branch (0) of the new
/// trailing union field.
fn completed_v2(v2_id: u32, store: i32, id: i32) -> Vec<u8> {
    let mut v1 = Vec::new();
    PizzaOrderCompleted {
        store_id: store,
        store_order_id: id,
        date: 18500,
        status: "completed",
        rack_time_secs: 120,
        order_delivery_time_secs: 600,
    }
    .write_framed(0, &mut v1);
    let mut body = v1[5..].to_vec();
    body.push(0);
    common::confluent_frame(v2_id, &body)
}

async fn wait_answer(svc: &Service, store: i32, what: &str, check: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + LONG;
    loop {
        let (status, body) = svc.get(&format!("/stores/{store}/wait")).await;
        if status == 200 && check(&body) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "store {store}: {what}; last: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_registry_outage_pauses_unknown_ids_and_keeps_known_ones() {
    common::require_stack();
    let registry = common::schema_registry_url();
    let target = registry
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let proxy = Proxy::start(0, target).await;
    let t = Topics::create(1).await;
    let mut p = Producer::new();
    let base = now_ms() - 30 * MINUTE;
    p.order(&t, 1, 1, base).await;
    p.completed(&t, 1, 1, 120, 600, base + 4 * MINUTE).await;
    let svc = Service::start_with(
        &t,
        &[(
            "WAITTIMES__SCHEMA_REGISTRY__URL",
            format!("http://{}", proxy.addr()),
        )],
    )
    .await;
    let client = reqwest::Client::new();
    wait_ready(&client, &svc.base).await;
    wait_answer(&svc, 1, "one observation", |b| b["observations"] == 1).await;

    // A new compatible version of the completed schema, registered behind the service's back.
    // rivven-schema 0.0.22's compatibility check rejects it ("writer=Date, reader=Date"), a
    // registry bug: the subject's check is turned off for this test.
    let subject = format!("{}-value", t.completed);
    let response = client
        .put(format!("{registry}/config/{subject}"))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .body(r#"{"compatibility":"NONE"}"#)
        .send()
        .await
        .expect("PUT /config/{subject}");
    assert!(response.status().is_success(), "{response:?}");
    let v2_id = common::register_avro(&subject, &completed_v2_schema()).await;
    proxy.cut();

    // Known ids keep decoding from the cache.
    p.order(&t, 2, 1, base).await;
    p.completed(&t, 2, 1, 120, 600, base + 5 * MINUTE).await;
    wait_answer(&svc, 2, "decoded with the registry down", |b| {
        b["observations"] == 1 && b["wait_time_minutes"] == 5
    })
    .await;

    // An unknown id while the registry is down: retried, not dead-lettered, not dropped; the
    // completion behind it on the same partition waits its turn.
    p.order(&t, 3, 1, base).await;
    p.order(&t, 3, 2, base + MINUTE).await;
    let v2 = completed_v2(v2_id, 3, 1);
    p.raw(&t.completed, Some("3"), Some(&v2), base + 7 * MINUTE)
        .await;
    p.completed(&t, 3, 2, 120, 600, base + 10 * MINUTE).await;
    let deadline = Instant::now() + LONG;
    let reason = loop {
        let answer = readiness(&client, &svc.base).await;
        if let Some((503, body)) = &answer
            && let Some(reason) = body["reasons"].get("schema_registry")
        {
            break reason.clone();
        }
        assert!(
            Instant::now() < deadline,
            "readiness never reported the registry: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        reason
            .as_str()
            .is_some_and(|r| r.contains(&v2_id.to_string())),
        "the reason names the schema id {v2_id}: {reason}"
    );
    // Retried with backoff: several attempts reach the (cut) proxy while readiness stays down.
    let deadline = Instant::now() + LONG;
    let refused_then = proxy.refused();
    while proxy.refused() < refused_then + 3 {
        assert!(
            Instant::now() < deadline,
            "the service stopped retrying the registry"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = svc.get("/health/ready").await;
    assert_eq!(
        status, 503,
        "still not ready while the registry is down: {body}"
    );
    let (_, s3) = svc.get("/stores/3/wait").await;
    assert_eq!(
        s3["observations"], 0,
        "applied before its schema was known: {s3}"
    );
    assert_eq!(s3["open_orders"], 2, "{s3}");
    let probe: BaseConsumer = common::client_config()
        .set("group.id", common::unique("probe"))
        .create()
        .expect("probe consumer");
    assert_eq!(
        end_offset(&probe, &t.dead_letter),
        0,
        "nothing dead-lettered"
    );

    proxy.restore();
    wait_answer(&svc, 3, "both completions applied after the outage", |b| {
        b["observations"] == 2 && b["open_orders"] == 0
    })
    .await;
    let (_, s3) = svc.get("/stores/3/wait").await;
    // Waits of 7 (the v2 record) and 9 minutes.
    assert_eq!(s3["mean_minutes"], 8.0, "{s3}");
    wait_ready(&client, &svc.base).await;
    assert_eq!(
        end_offset(&probe, &t.dead_letter),
        0,
        "nothing dead-lettered"
    );
    svc.stop().await;
}

/// The broker dies (SIGKILL) in the middle of a stream and comes back on the same data: the
/// service stays up, is not ready while the broker is gone and says why, recovers by itself, and
/// ends with exactly the answers and published values of a run that never saw the outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_mid_stream_loses_nothing() {
    common::require_stack();
    const STORES: i32 = 6;
    let mut broker = PrivateBroker::start(BrokerOptions::default());
    let t = Topics::create_at(&broker.bootstrap(), 2).await;
    let bootstrap = broker.bootstrap();
    let at = || common::client_config_at(&bootstrap);
    let producer = |config: rdkafka::ClientConfig| -> FutureProducer {
        config
            .clone()
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000")
            .create()
            .expect("create producer")
    };
    let mut p = Producer::with(producer(at()));
    let events = stream(now_ms() - 20 * MINUTE, STORES, 50);
    let (before, after) = events.split_at(events.len() / 2);
    for e in before {
        e.send(&mut p, &t).await;
    }
    let svc = Service::start_with(
        &t,
        &[("WAITTIMES__KAFKA__BOOTSTRAP_SERVERS", bootstrap.clone())],
    )
    .await;
    let client = reqwest::Client::new();
    wait_ready(&client, &svc.base).await;

    broker.kill9();
    let killed_at = Instant::now();
    let mut reason = None;
    while killed_at.elapsed() < Duration::from_secs(15) {
        let (live, _) = svc.get("/health/live").await;
        assert_eq!(
            live, 200,
            "the process must stay up while the broker is gone"
        );
        let (status, body) = svc.get("/health/ready").await;
        if let Some(r) = body["reasons"].get("broker") {
            assert_eq!(status, 503, "{body}");
            reason = Some(r.clone());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reason = reason.unwrap_or_else(|| {
        panic!("readiness never named the broker while it was down (15 s after SIGKILL)")
    });
    assert!(
        reason.as_str().is_some_and(|r| !r.is_empty()),
        "a reason for the broker condition: {reason}"
    );
    broker.restart();
    let restarted_at = Instant::now();
    // The rest of the stream goes to the restarted broker through a new producer, as an
    // upstream producer's own retries would deliver it.
    let mut p = Producer::with(producer(at()));
    for e in after {
        e.send(&mut p, &t).await;
    }
    wait_ready(&client, &svc.base).await;
    eprintln!(
        "broker down: readiness said broker: {reason}; ready again {:?} after the restart",
        restarted_at.elapsed()
    );

    // The reference: a run over the same input that never saw the outage.
    let u = sibling(&t);
    common::create_topics_at(
        &bootstrap,
        &[(&u.wait_times, 1), (&u.features, 1), (&u.dead_letter, 1)],
    )
    .await;
    let reference = Service::start_with(
        &u,
        &[("WAITTIMES__KAFKA__BOOTSTRAP_SERVERS", bootstrap.clone())],
    )
    .await;
    assert_lost_nothing(&svc, &reference, (&t, &u), STORES, at()).await;
    svc.stop().await;
    reference.stop().await;
    drop(broker);
}
