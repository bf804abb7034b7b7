use std::io::{Read, Write};

use axum::http::header::CONTENT_TYPE;
use serde_json::Value;
use tower::ServiceExt;

use super::*;
use crate::domain::InputKind;
use crate::health::Condition;
use crate::metrics::EventOutcome;
use crate::metrics::tests::EXPECTED_FAMILIES;

struct Fixture {
    snapshot: Snapshot,
    health: Arc<Health>,
    metrics: Metrics,
    app: AppState,
}

fn fixture() -> Fixture {
    let snapshot = Snapshot::default();
    let health = Arc::new(Health::new());
    let metrics = Metrics::new(
        |k: InputKind| format!("{}_topic", k.as_str()),
        snapshot.clone(),
        health.clone(),
    );
    let app = AppState::new(snapshot.clone(), health.clone(), metrics.clone());
    Fixture {
        snapshot,
        health,
        metrics,
        app,
    }
}

fn wait(id: StoreId) -> StoreWait {
    StoreWait {
        store_id: id,
        wait_time_minutes: Some(18),
        basis: Basis::Live,
        open_orders: 3,
        observations: 12,
        mean_minutes: Some(18.5),
        p50_minutes: Some(17.0),
        p90_minutes: Some(24.25),
        completions_per_hour: 24.0,
        cancellation_rate: Some(0.25),
        updated_at_ms: Some(1_714_564_800_123),
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// An error answer: JSON with a non-empty `error` string.
    fn error(&self) -> String {
        assert!(is_json(&self.headers), "{:?}", self.headers);
        let message = self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {}", self.body))
            .to_owned();
        assert!(!message.is_empty());
        message
    }
}

async fn send(router: &Router, request: Request) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

async fn call(router: &Router, method: Method, uri: &str) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    send(router, request).await
}

async fn get_(router: &Router, uri: &str) -> Answer {
    call(router, Method::GET, uri).await
}

#[tokio::test]
async fn store_wait_answers_every_field() {
    let f = fixture();
    f.snapshot.insert(42, wait(42));
    let router = router(f.app);
    let a = get_(&router, "/stores/42/wait").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(is_json(&a.headers));
    assert_eq!(
        a.json(),
        json!({
            "store_id": 42,
            "wait_time_minutes": 18,
            "basis": "live",
            "open_orders": 3,
            "observations": 12,
            "mean_minutes": 18.5,
            "p50_minutes": 17.0,
            "p90_minutes": 24.25,
            "completions_per_hour": 24.0,
            "cancellation_rate": 0.25,
            "updated_at": "2024-05-01T12:00:00.123Z",
            "updated_at_ms": 1_714_564_800_123_i64,
        })
    );
}

#[tokio::test]
async fn prior_and_unknown_values_are_null_not_errors() {
    let f = fixture();
    f.snapshot.insert(
        7,
        StoreWait {
            basis: Basis::Prior,
            wait_time_minutes: Some(13),
            mean_minutes: None,
            p50_minutes: Some(f64::NAN),
            p90_minutes: Some(f64::INFINITY),
            cancellation_rate: None,
            updated_at_ms: None,
            ..wait(7)
        },
    );
    f.snapshot.insert(
        8,
        StoreWait {
            basis: Basis::None,
            wait_time_minutes: None,
            updated_at_ms: Some(-1),
            ..wait(8)
        },
    );
    let router = router(f.app);
    let a = get_(&router, "/stores/7/wait").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v = a.json();
    assert_eq!(v["basis"], "prior");
    assert_eq!(v["wait_time_minutes"], 13);
    assert!(v["p50_minutes"].is_null());
    assert!(v["p90_minutes"].is_null());
    assert!(v["mean_minutes"].is_null());
    assert!(v["updated_at"].is_null());
    let v = get_(&router, "/stores/8/wait").await.json();
    assert_eq!(v["basis"], "none");
    assert!(v["wait_time_minutes"].is_null());
    assert!(v["updated_at"].is_null());
}

#[tokio::test]
async fn unknown_store_is_404_naming_it() {
    let f = fixture();
    let router = router(f.app);
    let a = get_(&router, "/stores/42/wait").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(
        a.json(),
        json!({"error": "store 42 has not been seen", "store_id": 42})
    );
    // The largest valid id is valid.
    let a = get_(&router, "/stores/2147483647/wait").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.json()["store_id"], 2147483647);
}

#[tokio::test]
async fn bad_store_ids_are_400_echoing_the_input() {
    let f = fixture();
    let router = router(f.app);
    let cases = [
        ("abc", "abc"),
        ("0", "0"),
        ("-5", "-5"),
        ("2147483648", "2147483648"),
        ("99999999999999999999", "99999999999999999999"),
        ("+5", "+5"),
        ("1.5", "1.5"),
        ("1e3", "1e3"),
        ("%205", " 5"),
        ("%FF", "%FF"),
        ("", ""),
    ];
    for (segment, echoed) in cases {
        let a = get_(&router, &format!("/stores/{segment}/wait")).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{segment}: {}", a.body);
        assert_eq!(
            a.error(),
            format!("store id must be a positive 32-bit integer, got {echoed:?}"),
            "{segment}"
        );
    }
}

#[tokio::test]
async fn a_huge_id_is_echoed_truncated() {
    let f = fixture();
    let router = router(f.app);
    let huge = "9".repeat(4000);
    let a = get_(&router, &format!("/stores/{huge}/wait")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    let expected = format!(
        "store id must be a positive 32-bit integer, got \"{}…\"",
        "9".repeat(MAX_ECHO_CHARS)
    );
    assert_eq!(a.error(), expected);
    assert!(a.body.len() < 200);
}

#[tokio::test]
async fn stores_lists_every_store_sorted() {
    let f = fixture();
    let router = router(f.app.clone());
    let a = get_(&router, "/stores").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!([]));
    for id in [9, 1, 5] {
        f.snapshot.insert(id, wait(id));
    }
    let v = get_(&router, "/stores").await.json();
    let ids: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["store_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 5, 9]);
    // Same fields as the single-store answer.
    assert_eq!(v[0], get_(&router, "/stores/1/wait").await.json());
}

#[tokio::test]
async fn live_is_always_200() {
    let f = fixture();
    f.health.set_shutting_down();
    let router = router(f.app);
    let a = get_(&router, "/health/live").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({"status": "live"}));
}

#[tokio::test]
async fn ready_is_503_with_reasons_until_every_condition_holds() {
    let f = fixture();
    let router = router(f.app);
    for c in Condition::ALL {
        f.health.set_ok(c);
    }
    f.health.set(
        Condition::CaughtUp,
        Err("replaying: 12345 records behind the end offsets seen at start"),
    );
    f.health.set(
        Condition::Broker,
        Err("broker unreachable: connection refused"),
    );
    let a = get_(&router, "/health/ready").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        a.json(),
        json!({
            "status": "not ready",
            "error": "not ready: broker, caught_up",
            "reasons": {
                "broker": "broker unreachable: connection refused",
                "caught_up": "replaying: 12345 records behind the end offsets seen at start",
            },
        })
    );
    f.health.set_ok(Condition::CaughtUp);
    f.health.set_ok(Condition::Broker);
    let a = get_(&router, "/health/ready").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), json!({"status": "ready"}));
    f.health.set_shutting_down();
    let a = get_(&router, "/health/ready").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.json()["reasons"]["shutdown"], "shutting down");
}

#[tokio::test]
async fn metrics_are_openmetrics_with_every_family() {
    let f = fixture();
    f.snapshot.insert(3, wait(3));
    f.metrics.event(InputKind::Orders, EventOutcome::Applied);
    f.metrics.set_consumer_lag("orders_topic", 0, 1);
    let router = router(f.app);
    // Produce an HTTP request sample first.
    get_(&router, "/stores/3/wait").await;
    let a = get_(&router, "/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.headers.get(CONTENT_TYPE).unwrap(),
        OPENMETRICS_CONTENT_TYPE
    );
    for (name, kind) in EXPECTED_FAMILIES {
        assert!(
            a.body.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} missing from\n{}",
            a.body
        );
    }
    assert!(
        a.body
            .contains(r#"waittimes_events_total{topic="orders_topic",outcome="applied"} 1"#)
    );
    assert!(
        a.body
            .contains(r#"waittimes_store_wait_time_minutes{store_id="3"} 18"#)
    );
    assert!(
        a.body
            .contains(r#"waittimes_http_requests_total{route="/stores/{id}/wait",status="200"} 1"#),
        "{}",
        a.body
    );
    assert!(a.body.ends_with("# EOF\n"));
}

#[tokio::test]
async fn requests_are_counted_by_route_template_and_status() {
    let f = fixture();
    let router = router(f.app);
    get_(&router, "/stores/abc/wait").await;
    get_(&router, "/stores/12/wait").await;
    get_(&router, "/nope/123").await;
    let text = get_(&router, "/metrics").await.body;
    for series in [
        r#"waittimes_http_requests_total{route="/stores/{id}/wait",status="400"} 1"#,
        r#"waittimes_http_requests_total{route="/stores/{id}/wait",status="404"} 1"#,
        r#"waittimes_http_requests_total{route="unmatched",status="404"} 1"#,
    ] {
        assert!(text.contains(series), "{series} in\n{text}");
    }
}

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let f = fixture();
    let router = router(f.app);
    for uri in [
        "/",
        "/nope",
        "/stores/1",
        "/stores/1/wait/",
        "/stores/1/2/wait",
        "/health",
    ] {
        let a = get_(&router, uri).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(a.error(), format!("no route for GET {uri}"));
    }
}

#[tokio::test]
async fn other_methods_are_405_json() {
    let f = fixture();
    let router = router(f.app);
    for (method, uri) in [
        (Method::POST, "/stores"),
        (Method::PUT, "/stores/1/wait"),
        (Method::DELETE, "/stores/1/wait"),
        (Method::POST, "/health/ready"),
        (Method::PATCH, "/metrics"),
    ] {
        let a = call(&router, method.clone(), uri).await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        let allow = a.headers.get(ALLOW).unwrap().to_str().unwrap().to_owned();
        assert!(allow.contains("GET") && allow.contains("HEAD"), "{allow}");
        assert_eq!(
            a.error(),
            format!("method {method} is not allowed here; allowed: {allow}")
        );
    }
    // HEAD is read-only and answered.
    let a = call(&router, Method::HEAD, "/health/live").await;
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn an_overlong_uri_is_414_json() {
    let f = fixture();
    let router = router(f.app);
    let long = format!("/stores/{}/wait", "1".repeat(9 * 1024));
    let a = get_(&router, &long).await;
    assert_eq!(a.status, StatusCode::URI_TOO_LONG);
    assert!(a.error().contains("the limit is 8192"));
    let a = get_(&router, &format!("/metrics?{}", "x".repeat(9 * 1024))).await;
    assert_eq!(a.status, StatusCode::URI_TOO_LONG);
}

#[tokio::test]
async fn a_large_body_is_413_json() {
    let f = fixture();
    let router = router(f.app);
    let request = Request::builder()
        .method(Method::GET)
        .uri("/stores")
        .header(CONTENT_LENGTH, 1024 * 1024)
        .body(Body::from(vec![b'x'; 1024 * 1024]))
        .unwrap();
    let a = send(&router, request).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.error(), "request body too large; no route takes a body");
}

#[tokio::test]
async fn store_routes_shed_load_but_probes_do_not() {
    let f = fixture();
    let app = f.app.with_limits(HttpLimits {
        max_in_flight: 0,
        ..HttpLimits::default()
    });
    let router = router(app);
    for uri in ["/stores", "/stores/1/wait"] {
        let a = get_(&router, uri).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert_eq!(a.headers.get(RETRY_AFTER).unwrap(), "1");
        assert!(a.error().contains("too many concurrent requests"));
    }
    for uri in ["/health/live", "/metrics"] {
        assert_eq!(get_(&router, uri).await.status, StatusCode::OK, "{uri}");
    }
}

#[tokio::test]
async fn a_slow_request_times_out_with_json() {
    let f = fixture();
    let app = f.app.with_limits(HttpLimits {
        request_timeout: Duration::from_millis(20),
        ..HttpLimits::default()
    });
    let routes = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(10)).await;
            "late"
        }),
    );
    let router = harden(routes, app);
    let a = get_(&router, "/slow").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.error(), "request timed out after 20ms");
}

#[tokio::test]
async fn a_panic_is_500_json() {
    let f = fixture();
    let routes: Router<AppState> = Router::new().route(
        "/boom",
        get(|| async {
            if true {
                panic!("handler bug");
            }
            "unreachable"
        }),
    );
    let router = harden(routes, f.app);
    let a = get_(&router, "/boom").await;
    assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(a.error(), "internal error");
    let text = get_(&router, "/boom").await;
    assert_eq!(text.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        f.metrics
            .render()
            .unwrap()
            .contains(r#"waittimes_http_requests_total{route="/boom",status="500"} 2"#)
    );
}

#[test]
fn rfc3339_formatting() {
    assert_eq!(
        rfc3339_millis(0).as_deref(),
        Some("1970-01-01T00:00:00.000Z")
    );
    assert_eq!(
        rfc3339_millis(1_714_564_800_123).as_deref(),
        Some("2024-05-01T12:00:00.123Z")
    );
    assert_eq!(
        rfc3339_millis(253_402_300_799_999).as_deref(),
        Some("9999-12-31T23:59:59.999Z")
    );
    assert_eq!(rfc3339_millis(253_402_300_800_000), None);
    assert_eq!(rfc3339_millis(-1), None);
    assert_eq!(rfc3339_millis(i64::MIN), None);
    assert_eq!(rfc3339_millis(i64::MAX), None);
}

#[test]
fn echo_truncates_on_char_boundaries() {
    assert_eq!(echo("abc"), "abc");
    let long = "é".repeat(100);
    let cut = echo(&long);
    assert_eq!(cut.chars().count(), MAX_ECHO_CHARS + 1);
    assert!(cut.ends_with('…'));
}

/// A real socket: serves, answers, and shuts down gracefully, reporting not ready.
#[tokio::test]
async fn serve_answers_and_shuts_down_gracefully() {
    let f = fixture();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, f.app, async move {
        let _ = stopped.await;
    }));
    let raw = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.ends_with(r#"{"status":"live"}"#), "{raw}");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(f.health.is_shutting_down());
}
