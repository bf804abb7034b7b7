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
    snapshot: Answers,
    health: Arc<Health>,
    metrics: Metrics,
    app: AppState,
}

fn fixture() -> Fixture {
    let snapshot = Answers::default();
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
    f.snapshot.publish(wait(42));
    let router = router(f.app);
    let before = crate::clock::now_ms();
    let a = get_(&router, "/stores/42/wait").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(is_json(&a.headers));
    // The owner's answer is computed as of the response.
    let computed_at_ms = a.json()["computed_at_ms"].as_i64().unwrap();
    assert!((before..=crate::clock::now_ms()).contains(&computed_at_ms));
    let computed_at = rfc3339_millis(computed_at_ms).unwrap();
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
            "source": "owner",
            "computed_by": "",
            "computed_at": computed_at,
            "computed_at_ms": computed_at_ms,
        })
    );
}

#[tokio::test]
async fn prior_and_unknown_values_are_null_not_errors() {
    let f = fixture();
    f.snapshot.publish(StoreWait {
        basis: Basis::Prior,
        wait_time_minutes: Some(13),
        mean_minutes: None,
        p50_minutes: Some(f64::NAN),
        p90_minutes: Some(f64::INFINITY),
        cancellation_rate: None,
        updated_at_ms: None,
        ..wait(7)
    });
    f.snapshot.publish(StoreWait {
        basis: Basis::None,
        wait_time_minutes: None,
        updated_at_ms: Some(-1),
        ..wait(8)
    });
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
        f.snapshot.publish(wait(id));
    }
    let v = get_(&router, "/stores").await.json();
    let ids: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["store_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 5, 9]);
    // Same fields as the single-store answer; an owner's answer is computed as of each
    // response, so its time may differ between the two.
    let without_time = |mut v: Value| {
        let fields = v.as_object_mut().unwrap();
        assert!(fields.remove("computed_at").is_some());
        assert!(fields.remove("computed_at_ms").is_some());
        v
    };
    assert_eq!(
        without_time(v[0].clone()),
        without_time(get_(&router, "/stores/1/wait").await.json())
    );
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
    f.snapshot.publish(wait(3));
    crate::metrics::RecordsConsumed {
        kind: InputKind::Orders,
        outcome: EventOutcome::Applied,
        count: 1,
    }
    .emit(&f.metrics);
    crate::metrics::PartitionLag {
        topic: "orders_topic",
        partition: 0,
        lag: 1,
    }
    .emit(&f.metrics);
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
        "/nope",
        "/stores/1/",
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
        assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{uri}");
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

/// The HTTP surface is read-only: no route or method changes what the service knows.
mod read_only_surface {
    use super::*;

    const ROUTES: [&str; 5] = [
        "/stores",
        "/stores/42/wait",
        "/health/live",
        "/health/ready",
        "/metrics",
    ];

    /// Routes whose GET is a stream or a static document (not read back by `observable`).
    const OTHER_ROUTES: [&str; 7] = [
        "/stores/stream",
        "/stores/42/wait/stream",
        "/openapi.json",
        "/",
        "/stores/42",
        "/assets/page.js",
        "/assets/page.css",
    ];

    /// Everything a client can read that reflects state (metrics count requests, so they are
    /// compared by their non-HTTP families only).
    async fn observable(router: &Router) -> Vec<String> {
        let mut seen = Vec::new();
        for uri in [
            "/stores",
            "/stores/42/wait",
            "/stores/7/wait",
            "/health/ready",
        ] {
            let a = get_(router, uri).await;
            // An owner's answer is computed as of each response: its time differs by design.
            let mut body: Value = serde_json::from_str(&a.body).unwrap();
            let strip = |answer: &mut Value| {
                if let Some(fields) = answer.as_object_mut() {
                    fields.remove("computed_at");
                    fields.remove("computed_at_ms");
                }
            };
            match body.as_array_mut() {
                Some(all) => all.iter_mut().for_each(strip),
                None => strip(&mut body),
            }
            seen.push(format!("{uri} {} {body}", a.status));
        }
        let metrics = get_(router, "/metrics").await.body;
        seen.extend(
            metrics
                .lines()
                .filter(|l| !l.contains("http_"))
                .map(str::to_owned),
        );
        seen
    }

    #[tokio::test]
    async fn every_route_refuses_every_writing_method_with_json_405() {
        let f = fixture();
        f.snapshot.publish(wait(42));
        let router = router(f.app);
        let before = observable(&router).await;
        for uri in ROUTES.into_iter().chain(OTHER_ROUTES) {
            for method in [
                Method::POST,
                Method::PUT,
                Method::DELETE,
                Method::PATCH,
                Method::OPTIONS,
                Method::TRACE,
            ] {
                // A plausible write: a JSON body that would overwrite store 42 / mark ready.
                let request = Request::builder()
                    .method(method.clone())
                    .uri(uri)
                    .header(CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        r#"{"store_id":42,"wait_time_minutes":1,"status":"ready"}"#,
                    ))
                    .unwrap();
                let a = send(&router, request).await;
                assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
                assert!(is_json(&a.headers), "{method} {uri}: {:?}", a.headers);
                let allow = a.headers.get(ALLOW).unwrap().to_str().unwrap().to_owned();
                let mut allowed: Vec<&str> = allow.split(',').map(str::trim).collect();
                allowed.sort_unstable();
                assert_eq!(allowed, ["GET", "HEAD"], "{method} {uri}");
                assert!(a.error().contains(method.as_str()), "{}", a.body);
            }
        }
        assert_eq!(observable(&router).await, before);
    }

    #[tokio::test]
    async fn unknown_paths_that_look_like_admin_endpoints_are_404_for_any_method() {
        let f = fixture();
        f.snapshot.publish(wait(42));
        let router = router(f.app);
        let before = observable(&router).await;
        for uri in [
            "/stores/42/reset",
            "/stores/42/wait/reset",
            "/admin",
            "/shutdown",
            "/config",
            "/debug/pprof",
            "/health",
            "/metrics/reset",
        ] {
            for method in [Method::GET, Method::POST, Method::PUT, Method::DELETE] {
                let a = call(&router, method.clone(), uri).await;
                assert_eq!(a.status, StatusCode::NOT_FOUND, "{method} {uri}");
                assert!(a.error().contains(uri), "{}", a.body);
            }
        }
        assert_eq!(observable(&router).await, before);
    }

    #[tokio::test]
    async fn query_strings_and_bodies_on_get_change_nothing() {
        let f = fixture();
        f.snapshot.publish(wait(42));
        let router = router(f.app);
        let before = observable(&router).await;
        for uri in ROUTES {
            let request = Request::builder()
                .method(Method::GET)
                .uri(format!("{uri}?wait_time_minutes=1&ready=true&reset=1"))
                .header(CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"wait_time_minutes":1}"#))
                .unwrap();
            let a = send(&router, request).await;
            assert!(
                a.status.is_success() || a.status == StatusCode::SERVICE_UNAVAILABLE,
                "{uri}: {}",
                a.status
            );
        }
        assert_eq!(observable(&router).await, before);
    }
}

/// Hostile input over real sockets, against [`serve`] on 127.0.0.1:0: every answer is a 4xx
/// (JSON whenever the router sees the request) or a 200 for a valid request; never a 5xx.
mod hostile {
    use std::collections::HashMap;
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// A running server with stores 1..=3 known.
    struct Server {
        addr: SocketAddr,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<Result<(), Error>>,
    }

    impl Server {
        async fn start(limits: HttpLimits) -> Server {
            let f = fixture();
            for id in 1..=3 {
                f.snapshot.publish(wait(id));
            }
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let task = tokio::spawn(serve(listener, f.app.with_limits(limits), async move {
                let _ = stopped.await;
            }));
            Server {
                addr,
                stop: Some(stop),
                task,
            }
        }

        async fn stop(mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            tokio::time::timeout(Duration::from_secs(10), self.task)
                .await
                .expect("the server stops")
                .expect("the server task does not panic")
                .expect("the server stops cleanly");
        }
    }

    /// A parsed HTTP/1.1 response.
    #[derive(Debug)]
    struct Raw {
        status: u16,
        head: String,
        body: Vec<u8>,
    }

    impl Raw {
        fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
        }

        /// A JSON error: the content type says so and `error` is a non-empty string.
        fn json_error(&self) -> String {
            assert_eq!(
                self.header("content-type"),
                Some("application/json"),
                "{self:?}"
            );
            let v: Value = serde_json::from_slice(&self.body)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"));
            let e = v["error"].as_str().unwrap_or_default().to_owned();
            assert!(!e.is_empty(), "{v}");
            e
        }
    }

    /// Everything the server sends until it closes the connection.
    async fn read_all(s: &mut TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out))
            .await
            .expect("the server closes the connection")
            .map(|_| out)
            .unwrap_or_default()
    }

    fn parse(bytes: &[u8]) -> Option<Raw> {
        let split = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&bytes[..split]).into_owned();
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some(Raw {
            status,
            head,
            body: bytes[split + 4..].to_vec(),
        })
    }

    /// Sends `request` as is on a new connection; the answer, if any came.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> Option<Raw> {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        // The server may answer and close before reading all of a huge request.
        let _ = s.write_all(request).await;
        parse(&read_all(&mut s).await)
    }

    async fn request(addr: SocketAddr, method: &str, target: &str) -> Raw {
        let req = format!("{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        exchange(addr, req.as_bytes())
            .await
            .unwrap_or_else(|| panic!("no answer to {method} {:.80}", target))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_paths_get_json_4xx() {
        let server = Server::start(HttpLimits::default()).await;
        let long_digits = format!("/stores/{}/wait", "9".repeat(60_000));
        let long_junk = format!("/stores/{}/wait", "%FF".repeat(20_000));
        let cases: Vec<(&str, u16)> = vec![
            ("/stores/abc/wait", 400),
            ("/stores/1.5/wait", 400),
            ("/stores/1e3/wait", 400),
            ("/stores/0x10/wait", 400),
            ("/stores/+7/wait", 400),
            ("/stores/%207/wait", 400),
            ("/stores/99999999999999999999/wait", 400),
            ("/stores/2147483648/wait", 400),
            ("/stores/-1/wait", 400),
            ("/stores/-0/wait", 400),
            ("/stores/0/wait", 400),
            ("/stores/%FF%FE/wait", 400),
            ("/stores/%00/wait", 400),
            ("/stores/1%00/wait", 400),
            ("/stores/%2F/wait", 400),
            ("/stores/%/wait", 400),
            ("/stores/%E2%82%AC/wait", 400),
            ("/stores//wait", 400),
            ("/stores/42/wait", 404),
            ("/stores/1/wait/more", 404),
            ("/stores/1/", 404),
            ("/stores/abc", 400),
            ("/stores/%FF", 400),
            ("/stores/1/wait/stream/x", 404),
            ("/nope", 404),
            ("/%FF%00", 404),
            ("/stores/../stores/1/wait", 404),
            (&long_digits, 414),
            (&long_junk, 414),
        ];
        for (path, expected) in &cases {
            let a = request(server.addr, "GET", path).await;
            assert_eq!(a.status, *expected, "{:.80}: {a:?}", path);
            a.json_error();
        }
        // Beyond 64 KiB the URI cannot be parsed at all: hyper answers a bare 414 itself.
        for path in [
            format!("/stores/{}/wait", "9".repeat(100_000)),
            format!("/stores/{}/wait", "%FF".repeat(34_000)),
        ] {
            let a = request(server.addr, "GET", &path).await;
            assert_eq!(a.status, 414, "{a:?}");
        }
        // valid, however spelled
        for path in [
            "/stores/1/wait",
            "/stores/%31/wait",
            "/stores/3/wait?x=%FF&y",
        ] {
            let a = request(server.addr, "GET", path).await;
            assert_eq!(a.status, 200, "{path}: {a:?}");
            let v: Value = serde_json::from_slice(&a.body).expect("JSON");
            assert!(v["store_id"].is_i64(), "{v}");
        }
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn wrong_methods_and_bodies_get_json_4xx() {
        let server = Server::start(HttpLimits::default()).await;
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"] {
            for path in ["/stores", "/stores/1/wait", "/metrics", "/health/live"] {
                let a = request(server.addr, method, path).await;
                assert_eq!(a.status, 405, "{method} {path}: {a:?}");
                assert_eq!(a.header("allow"), Some("GET,HEAD"), "{a:?}");
                a.json_error();
            }
        }
        let a = request(server.addr, "HEAD", "/stores/1/wait").await;
        assert_eq!(a.status, 200, "{a:?}");
        // a body over the limit, declared and sent
        let body = vec![b'x'; 1024 * 1024];
        let mut req = format!(
            "GET /stores HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        let a = exchange(server.addr, &req).await.expect("an answer");
        assert_eq!(a.status, 413, "{a:?}");
        a.json_error();
        server.stop().await;
    }

    /// What hyper rejects before the router sees the request gets hyper's own 4xx, without a
    /// body (there is no hook for one), and never a 5xx.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unparseable_requests_get_4xx_from_the_http_layer() {
        let server = Server::start(HttpLimits::default()).await;
        let many_headers: String = (0..200).map(|i| format!("X-{i}: y\r\n")).collect();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("garbage", b"HELLO THERE\r\n\r\n".to_vec()),
            ("binary", vec![0, 159, 146, 150, 13, 10, 13, 10]),
            ("bad version", b"GET / HTTP/9.9\r\n\r\n".to_vec()),
            (
                "space in target",
                b"GET /stores/1 /wait HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            ),
            (
                "too many headers",
                format!("GET /stores HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(),
            ),
            (
                "a 1 MB request line",
                format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(1 << 20)).into_bytes(),
            ),
            (
                "bad content length",
                b"GET /stores HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
            ),
        ];
        for (what, req) in cases {
            if let Some(a) = exchange(server.addr, &req).await {
                assert!((400..500).contains(&a.status), "{what}: {a:?}");
            }
        }
        // still serving
        assert_eq!(
            request(server.addr, "GET", "/health/live").await.status,
            200
        );
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_slow_and_idle_connections_are_closed() {
        let server = Server::start(HttpLimits {
            header_timeout: Duration::from_millis(300),
            ..HttpLimits::default()
        })
        .await;
        // connects and says nothing
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        let answer = read_all(&mut silent).await;
        assert!(
            parse(&answer).is_none_or(|a| (400..500).contains(&a.status)),
            "{answer:?}"
        );
        // trickles a request head, a byte every 50 ms, each well within the timeout
        let mut slow = TcpStream::connect(server.addr).await.unwrap();
        let head = b"GET /stores/1/wait HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let mut closed = false;
        for b in head {
            if slow.write_all(&[*b]).await.is_err() {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let answer = read_all(&mut slow).await;
        assert!(
            closed || parse(&answer).is_none_or(|a| (400..500).contains(&a.status)),
            "the slow head got {:?}",
            String::from_utf8_lossy(&answer)
        );
        // keep-alive: answered, then closed once idle
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        idle.write_all(b"GET /stores/1/wait HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_all(&mut idle).await;
        let a = parse(&answer).expect("an answer");
        assert_eq!(a.status, 200, "{a:?}");
        server.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_thousand_concurrent_clients_never_get_a_5xx() {
        let server = Server::start(HttpLimits::default()).await;
        let paths = [
            "/stores/1/wait",
            "/stores/2/wait",
            "/stores",
            "/stores/abc/wait",
            "/stores/99999999999999999999/wait",
            "/stores/-5/wait",
            "/stores/404/wait",
            "/no/such/route",
            "/health/live",
            "/metrics",
        ];
        let clients: Vec<_> = (0..1000)
            .map(|i| {
                let path = paths[i % paths.len()];
                let addr = server.addr;
                tokio::spawn(async move { (path, request(addr, "GET", path).await) })
            })
            .collect();
        let mut statuses: HashMap<u16, u32> = HashMap::new();
        for client in clients {
            let (path, a) = client.await.expect("a client task");
            *statuses.entry(a.status).or_default() += 1;
            assert!(a.status < 500, "{path}: {a:?}");
            match (path, a.status) {
                ("/metrics", 200) => {}
                (_, 200) => {
                    serde_json::from_slice::<Value>(&a.body).expect("JSON");
                }
                (_, 429) => {
                    assert!(path.starts_with("/stores"), "{path} shed");
                    assert_eq!(a.header("retry-after"), Some("1"));
                    a.json_error();
                }
                (_, status) => {
                    let expected = match path {
                        "/stores/404/wait" | "/no/such/route" => 404,
                        _ => 400,
                    };
                    assert_eq!(status, expected, "{path}: {a:?}");
                    a.json_error();
                }
            }
        }
        assert_eq!(statuses.values().sum::<u32>(), 1000, "{statuses:?}");
        // and still serving
        assert_eq!(
            request(server.addr, "GET", "/stores/1/wait").await.status,
            200
        );
        server.stop().await;
    }
}

/// Push streams, read frame by frame as a client would.
mod push {
    use futures_util::StreamExt as _;

    use super::*;
    use crate::shutdown::Shutdown;

    /// One Server-Sent Events block.
    #[derive(Debug, Default)]
    struct Block {
        event: Option<String>,
        id: Option<String>,
        data: String,
        comments: Vec<String>,
        retry: Option<String>,
    }

    impl Block {
        fn wait(&self) -> Value {
            assert_eq!(self.event.as_deref(), Some("wait"), "{self:?}");
            serde_json::from_str(&self.data).unwrap()
        }
    }

    struct Events {
        body: axum::body::BodyDataStream,
        buf: String,
    }

    impl Events {
        /// The next block, or `None` once the stream has ended.
        async fn next(&mut self) -> Option<Block> {
            loop {
                if let Some(end) = self.buf.find("\n\n") {
                    let text: String = self.buf.drain(..end + 2).collect();
                    let mut b = Block::default();
                    for line in text.lines().filter(|l| !l.is_empty()) {
                        let (field, value) = line.split_once(':').unwrap_or((line, ""));
                        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                        match field {
                            "" => b.comments.push(value),
                            "event" => b.event = Some(value),
                            "id" => b.id = Some(value),
                            "data" => b.data.push_str(&value),
                            "retry" => b.retry = Some(value),
                            other => panic!("unexpected field {other:?} in {text:?}"),
                        }
                    }
                    return Some(b);
                }
                let chunk = self.body.next().await?.unwrap();
                self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
            }
        }

        /// The next block that is not only a comment (the opening `retry` block included).
        async fn next_event(&mut self) -> Block {
            loop {
                let b = self.next().await.expect("the stream goes on");
                if b.event.is_some() {
                    return b;
                }
            }
        }
    }

    async fn open(router: &Router, uri: &str, last_event_id: Option<&str>) -> Events {
        let mut request = Request::builder().uri(uri);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        assert_eq!(
            response.headers().get(CONTENT_TYPE).unwrap(),
            "text/event-stream"
        );
        let mut events = Events {
            body: response.into_body().into_data_stream(),
            buf: String::new(),
        };
        let first = events.next().await.expect("an opening block");
        assert_eq!(first.retry.as_deref(), Some("2000"), "{first:?}");
        events
    }

    fn with(id: StoreId, minutes: i32) -> StoreWait {
        StoreWait {
            wait_time_minutes: Some(minutes),
            ..wait(id)
        }
    }

    fn gauge(metrics: &Metrics, name: &str) -> f64 {
        let text = metrics.render().unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    }

    #[tokio::test]
    async fn a_store_stream_sends_the_answer_at_once_then_each_change() {
        let f = fixture();
        f.snapshot.publish(with(3, 18));
        f.snapshot.publish(with(4, 9));
        let router = router(f.app.clone());
        let mut events = open(&router, "/stores/3/wait/stream", None).await;
        let first = events.next_event().await;
        assert_eq!(first.wait()["wait_time_minutes"], 18);
        assert_eq!(first.wait()["updated_at"], "2024-05-01T12:00:00.123Z");
        assert!(first.id.is_some());
        f.snapshot.publish(with(4, 10)); // another store: not on this stream
        f.snapshot.publish(with(3, 18)); // no change: no event
        f.snapshot.publish(with(3, 21));
        let next = events.next_event().await;
        assert_eq!(next.wait()["store_id"], 3);
        assert_eq!(next.wait()["wait_time_minutes"], 21);
        assert_ne!(next.id, first.id);
        assert_eq!(gauge(&f.metrics, "waittimes_http_streams_open"), 1.0);
        assert_eq!(
            gauge(
                &f.metrics,
                "waittimes_http_stream_events_total{kind=\"wait\"}"
            ),
            2.0
        );
        drop(events);
        assert_eq!(gauge(&f.metrics, "waittimes_http_streams_open"), 0.0);
    }

    #[tokio::test]
    async fn store_stream_errors_are_json() {
        let f = fixture();
        let router = router(f.app);
        let a = get_(&router, "/stores/3/wait/stream").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        assert_eq!(a.json()["store_id"], 3);
        for bad in ["0", "-1", "x", "99999999999"] {
            let a = get_(&router, &format!("/stores/{bad}/wait/stream")).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(a.error().contains(bad), "{}", a.body);
        }
        assert_eq!(
            get_(&router, "/stores//wait/stream").await.status,
            StatusCode::BAD_REQUEST
        );
    }

    #[tokio::test]
    async fn the_all_stores_stream_filters_by_ids_and_reports_removals() {
        let f = fixture();
        for id in [1, 2, 7, 9] {
            f.snapshot.publish(wait(id));
        }
        let router = router(f.app);
        let mut events = open(&router, "/stores/stream?ids=7,1%2C2&other=x&ids=7", None).await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(events.next_event().await.wait()["store_id"].clone());
        }
        assert_eq!(ids, [1, 2, 7]);
        f.snapshot.publish(with(9, 1));
        f.snapshot.remove(2);
        let removed = events.next_event().await;
        assert_eq!(removed.event.as_deref(), Some("removed"));
        assert_eq!(removed.data, r#"{"store_id":2}"#);

        let mut all = open(&router, "/stores/stream", None).await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(all.next_event().await.wait()["store_id"].clone());
        }
        assert_eq!(ids, [1, 7, 9]);
    }

    #[tokio::test]
    async fn bad_ids_are_400_json() {
        let f = fixture();
        let router = router(f.app);
        let many = (1..=101)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        for query in [
            "ids=",
            "ids=0",
            "ids=1,,2",
            "ids=a",
            "ids=1&ids=x",
            &format!("ids={many}"),
        ] {
            let a = get_(&router, &format!("/stores/stream?{query}")).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}");
            a.error();
        }
    }

    #[tokio::test]
    async fn last_event_id_resumes_after_it_and_a_foreign_id_gets_everything() {
        let f = fixture();
        f.snapshot.publish(with(1, 5));
        f.snapshot.publish(with(2, 6));
        let router = router(f.app);
        let mut events = open(&router, "/stores/stream", None).await;
        events.next_event().await;
        let last = events.next_event().await.id.unwrap();
        drop(events);
        // While disconnected: store 1 changes.
        f.snapshot.publish(with(1, 8));
        let mut resumed = open(&router, "/stores/stream", Some(&last)).await;
        let next = resumed.next_event().await.wait();
        assert_eq!(
            (next["store_id"].clone(), next["wait_time_minutes"].clone()),
            (1.into(), 8.into())
        );
        // Only that change: the next event is the next change.
        f.snapshot.publish(with(2, 7));
        assert_eq!(resumed.next_event().await.wait()["wait_time_minutes"], 7);

        let epoch = f.snapshot.epoch();
        for foreign in [
            format!("{:08x}-1", epoch.wrapping_add(1)),
            format!("{epoch:08x}-999"),
            "garbage".to_owned(),
        ] {
            let mut full = open(&router, "/stores/stream", Some(&foreign)).await;
            let a = full.next_event().await.wait();
            let b = full.next_event().await.wait();
            assert_eq!(
                (a["store_id"].clone(), b["store_id"].clone()),
                (1.into(), 2.into()),
                "{foreign}"
            );
        }
    }

    #[tokio::test]
    async fn a_slow_client_skips_to_the_latest_answer_and_it_is_counted() {
        let f = fixture();
        f.snapshot.publish(with(3, 10));
        let router = router(f.app);
        let mut events = open(&router, "/stores/3/wait/stream", None).await;
        assert_eq!(events.next_event().await.wait()["wait_time_minutes"], 10);
        // The client reads nothing while five answers replace each other.
        for minutes in 11..=15 {
            f.snapshot.publish(with(3, minutes));
        }
        assert_eq!(events.next_event().await.wait()["wait_time_minutes"], 15);
        assert_eq!(
            gauge(&f.metrics, "waittimes_http_stream_skipped_answers_total"),
            4.0
        );
    }

    #[tokio::test]
    async fn streams_beyond_the_cap_get_json_429_and_a_closed_one_frees_its_place() {
        let f = fixture();
        f.snapshot.publish(wait(3));
        let app = f.app.with_limits(HttpLimits {
            max_streams: 1,
            ..HttpLimits::default()
        });
        let router = router(app);
        let first = open(&router, "/stores/stream", None).await;
        for uri in ["/stores/stream", "/stores/3/wait/stream"] {
            let a = get_(&router, uri).await;
            assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{uri}");
            assert_eq!(a.headers.get(RETRY_AFTER).unwrap(), "5");
            assert!(a.error().contains("push streams are open"), "{}", a.body);
        }
        assert_eq!(
            gauge(&f.metrics, "waittimes_http_streams_rejected_total"),
            2.0
        );
        // Pull routes are not capped by streams.
        assert_eq!(get_(&router, "/stores/3/wait").await.status, StatusCode::OK);
        drop(first);
        open(&router, "/stores/3/wait/stream", None).await;
    }

    #[tokio::test]
    async fn streams_end_on_shutdown() {
        let f = fixture();
        f.snapshot.publish(wait(3));
        let shutdown = Shutdown::default();
        let router = router(f.app.with_shutdown(shutdown.clone()));
        let mut events = open(&router, "/stores/stream", None).await;
        events.next_event().await;
        shutdown.trigger();
        assert!(events.next().await.is_none(), "the stream ends");
        assert_eq!(gauge(&f.metrics, "waittimes_http_streams_open"), 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_streams_get_heartbeats_until_their_maximum_age() {
        let f = fixture();
        f.snapshot.publish(wait(3));
        let app = f.app.with_limits(HttpLimits {
            stream_heartbeat: Duration::from_secs(15),
            stream_max_age: Duration::from_secs(40),
            ..HttpLimits::default()
        });
        let router = router(app);
        let mut events = open(&router, "/stores/3/wait/stream", None).await;
        events.next_event().await;
        let start = tokio::time::Instant::now();
        let mut beats = 0;
        while let Some(block) = events.next().await {
            assert_eq!(block.comments, ["heartbeat"], "{block:?}");
            beats += 1;
        }
        assert_eq!(beats, 2);
        assert!(start.elapsed() >= Duration::from_secs(40));
    }
}

/// The OpenAPI document names every route, and every route answers as it says.
mod contract {
    use super::*;

    #[tokio::test]
    async fn the_document_covers_every_route_and_their_statuses() {
        let f = fixture();
        f.snapshot.publish(wait(3));
        let router = router(f.app);
        let a = get_(&router, "/openapi.json").await;
        assert_eq!(a.status, StatusCode::OK);
        let doc = a.json();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
        documented.sort_unstable();
        assert_eq!(
            documented,
            [
                "/",
                "/assets/page.css",
                "/assets/page.js",
                "/health/live",
                "/health/ready",
                "/metrics",
                "/openapi.json",
                "/stores",
                "/stores/stream",
                "/stores/{id}",
                "/stores/{id}/wait",
                "/stores/{id}/wait/stream",
            ]
        );
        for (path, item) in paths {
            let uri = path.replace("{id}", "3");
            let request = Request::builder().uri(&uri).body(Body::empty()).unwrap();
            let response = router.clone().oneshot(request).await.unwrap();
            let status = response.status().as_u16().to_string();
            let documented = &item["get"]["responses"][&status];
            assert!(
                documented.is_object(),
                "{uri} answered {status}, not in {item}"
            );
            let content_type = response.headers()[CONTENT_TYPE].to_str().unwrap();
            let media = content_type.split(';').next().unwrap();
            assert!(
                documented["content"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .any(|k| k.split(';').next() == Some(media)),
                "{uri}: {content_type} not in {documented}"
            );
        }
    }

    #[tokio::test]
    async fn the_page_and_its_assets_are_served_from_the_binary() {
        let f = fixture();
        let router = router(f.app);
        for uri in ["/", "/stores/3"] {
            let a = get_(&router, uri).await;
            assert_eq!(a.status, StatusCode::OK, "{uri}");
            assert!(
                a.headers[CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html")
            );
            assert!(
                a.headers["content-security-policy"]
                    .to_str()
                    .unwrap()
                    .contains("default-src 'none'")
            );
            assert!(a.body.contains(r#"src="/assets/page.js""#));
        }
        let js = get_(&router, "/assets/page.js").await;
        assert!(js.body.contains("new EventSource"));
        let css = get_(&router, "/assets/page.css").await;
        assert!(
            css.headers[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/css")
        );
        let a = get_(&router, "/stores/abc").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        a.error();
    }
}
