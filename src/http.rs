//! The HTTP face: wait times for the ordering app, probes for the orchestrator, metrics for
//! Prometheus. Read-only (GET and HEAD); every answer is JSON except `/metrics`, every error is
//! `{"error": "..."}` with a status that says what went wrong.
//!
//! Hardening, outermost first: a connection must deliver each request's head within the header
//! timeout (from accept, or from the end of its previous response), or it is closed, so idle,
//! silent and trickling clients cannot hold connections; a panic becomes a 500 JSON; a URI over
//! the limit gets 414; a request still running after the timeout gets 503; error responses that
//! some layer produced without a JSON body (axum's 405, the body limit's 413) get one; a declared
//! body over the limit gets 413. The customer-facing `/stores` routes also shed load: beyond
//! `max_in_flight` concurrent requests they answer 429 at once (with `Retry-After`) instead of
//! queueing: the client is asked to back off, and no hostile or merely eager client can make the
//! service answer 5xx. Probes and `/metrics` are exempt on purpose, so an overload never turns
//! into a liveness restart or a gap in the very metrics that would show it.

use std::any::Any;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;

use crate::answers::Answers;
use crate::clock::now_ms;
use crate::domain::{Basis, EventTime, StoreId, StoreWait};
use crate::health::Health;
use crate::metrics::{self, Metrics};
use crate::shutdown::Shutdown;
use crate::table::{Served, Source, Table};

mod openapi;
mod page;
mod stream;

/// The content type of `/metrics`. The text is OpenMetrics (that is all `prometheus-client`
/// writes: `# EOF`, `# UNIT`, `info` types, `_total` only on counter samples), and Prometheus
/// asks for OpenMetrics first in its `Accept` header; labelled as the classic `text/plain;
/// version=0.0.4` it would be parsed with the wrong grammar (the classic parser rejects the
/// `info` type).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How much of a client's input an error message echoes back.
const MAX_ECHO_CHARS: usize = 64;

/// Limits that keep a misbehaving or overwhelming client from hurting the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request still unanswered after this gets 503.
    pub request_timeout: Duration,
    /// A connection that has not sent a complete request head this long after it was accepted
    /// or after its previous response is closed.
    pub header_timeout: Duration,
    /// Concurrent `/stores` requests beyond this get 503 at once (load shedding).
    pub max_in_flight: usize,
    /// Longer request URIs (path and query) get 414.
    pub max_uri_bytes: usize,
    /// Larger declared request bodies get 413; no route takes a body.
    pub max_body_bytes: usize,
    /// Concurrent push streams beyond this get 429.
    pub max_streams: usize,
    /// An idle push stream gets a comment this often.
    pub stream_heartbeat: Duration,
    /// A push stream ends after this long (the client reconnects and resumes).
    pub stream_max_age: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            request_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            max_in_flight: 256,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 16 * 1024,
            max_streams: 1000,
            stream_heartbeat: Duration::from_secs(15),
            stream_max_age: Duration::from_secs(3600),
        }
    }
}

/// What the handlers read. Cheap to clone (all shared).
#[derive(Clone)]
pub struct AppState {
    answers: Answers,
    health: Arc<Health>,
    metrics: Metrics,
    /// Every instance's answers: what this one does not own is served from here.
    table: Table,
    limits: HttpLimits,
    in_flight: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    shutdown: Shutdown,
}

impl AppState {
    /// With [`HttpLimits::default`].
    pub fn new(answers: Answers, health: Arc<Health>, metrics: Metrics) -> Self {
        let limits = HttpLimits::default();
        AppState {
            answers,
            health,
            metrics,
            table: Table::new(""),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            streams: Arc::new(Semaphore::new(limits.max_streams)),
            limits,
            shutdown: Shutdown::default(),
        }
    }

    /// Serves from `table` what this instance does not own (and names it in answers).
    pub fn with_table(mut self, table: Table) -> Self {
        self.table = table;
        self
    }

    pub fn with_limits(mut self, limits: HttpLimits) -> Self {
        self.in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
        self.streams = Arc::new(Semaphore::new(limits.max_streams));
        self.limits = limits;
        self
    }

    /// Push streams end when `shutdown` is triggered (else the graceful stop would wait for
    /// them).
    pub fn with_shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }
}

/// Errors of the HTTP boundary.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("HTTP server failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// Every route, hardened (see the module docs).
pub fn router(app: AppState) -> Router {
    let stores = Router::new()
        .route("/stores", get(list_stores))
        .route("/stores/{id}/wait", get(store_wait))
        .route("/stores/stream", get(stream::stores_stream))
        .route("/stores/{id}/wait/stream", get(stream::store_stream))
        .route_layer(middleware::from_fn_with_state(app.clone(), shed_load));
    let routes = Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi::document))
        .route("/", get(page::all_stores))
        .route("/stores/{id}", get(page::one_store))
        .route("/assets/page.js", get(page::script))
        .route("/assets/page.css", get(page::style))
        .merge(stores);
    harden(routes, app)
}

/// Applies the fallback and the protective layers to `routes`.
fn harden(routes: Router<AppState>, app: AppState) -> Router {
    routes
        .fallback(not_found)
        .layer(RequestBodyLimitLayer::new(app.limits.max_body_bytes))
        // Inside `guard`, so a handler's panic is answered and counted like any response.
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        // The last resort, should anything in `guard` itself panic.
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(app)
}

/// Serves until `shutdown` resolves, then stops accepting, reports not ready and lets requests
/// in flight finish (each is bounded by the request timeout; idle connections close at once).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let health = app.health.clone();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "HTTP listening");
    }
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(app.limits.header_timeout);
    let service = hyper_util::service::TowerToHyperService::new(router(app));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let connection =
            http1.serve_connection(hyper_util::rt::TokioIo::new(stream), service.clone());
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away or times out is not the server's failure.
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    health.set_shutting_down();
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// An accept error: a connection that failed before it was accepted is the client's business;
/// anything else (out of file descriptors) is waited out instead of spinning.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "HTTP accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// One store's answer as JSON: [`StoreWait`] with `updated_at` as RFC 3339.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = StoreWait)]
struct StoreWaitJson {
    #[schema(minimum = 1)]
    store_id: StoreId,
    /// The published wait in whole minutes; null when there is neither a live estimate nor a
    /// prior.
    wait_time_minutes: Option<i32>,
    basis: BasisJson,
    /// Orders placed and not yet completed, cancelled or expired.
    #[schema(minimum = 0)]
    open_orders: u32,
    /// Wait observations inside the window.
    #[schema(minimum = 0)]
    observations: u32,
    mean_minutes: Option<f64>,
    p50_minutes: Option<f64>,
    p90_minutes: Option<f64>,
    completions_per_hour: f64,
    /// Cancellations / (completions + cancellations) over the window; null if none ended.
    cancellation_rate: Option<f64>,
    /// The store's stream time the answer was computed at, RFC 3339 UTC with milliseconds;
    /// null for a store known only from its prior.
    #[schema(format = DateTime)]
    updated_at: Option<String>,
    /// `updated_at` in milliseconds since the Unix epoch.
    updated_at_ms: Option<EventTime>,
}

/// Where the wait comes from: `live` (observations inside the window), `prior` (the last value
/// on the output topic at start), `none` (nothing to estimate from yet).
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = Basis)]
enum BasisJson {
    Live,
    Prior,
    None,
}

impl From<Basis> for BasisJson {
    fn from(b: Basis) -> Self {
        match b {
            Basis::Live => BasisJson::Live,
            Basis::Prior => BasisJson::Prior,
            Basis::None => BasisJson::None,
        }
    }
}

/// Every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
struct ErrorJson {
    /// What went wrong, for people.
    error: String,
}

/// A store id that is valid but has no answer here.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = NotSeen)]
struct NotSeenJson {
    error: String,
    store_id: StoreId,
}

impl From<&StoreWait> for StoreWaitJson {
    fn from(w: &StoreWait) -> Self {
        StoreWaitJson {
            store_id: w.store_id,
            wait_time_minutes: w.wait_time_minutes,
            basis: w.basis.into(),
            open_orders: w.open_orders,
            observations: w.observations,
            mean_minutes: w.mean_minutes,
            p50_minutes: w.p50_minutes,
            p90_minutes: w.p90_minutes,
            completions_per_hour: w.completions_per_hour,
            cancellation_rate: w.cancellation_rate,
            updated_at: w.updated_at_ms.and_then(rfc3339_millis),
            updated_at_ms: w.updated_at_ms,
        }
    }
}

/// An answer with where it comes from: which instance computed it and when (wall clock), and
/// whether it is this instance's own (`owner`), another's or a last known one (`table`), or a
/// prior nobody has events for yet (`prior`).
#[derive(Debug, Serialize)]
struct ServedJson {
    #[serde(flatten)]
    answer: StoreWaitJson,
    source: Source,
    computed_by: String,
    computed_at: Option<String>,
    computed_at_ms: i64,
}

impl From<&Served> for ServedJson {
    fn from(s: &Served) -> Self {
        ServedJson {
            answer: StoreWaitJson::from(&s.answer),
            source: s.source,
            computed_by: s.computed_by.clone(),
            computed_at: rfc3339_millis(s.computed_at_ms),
            computed_at_ms: s.computed_at_ms,
        }
    }
}

/// `ms` since the epoch as RFC 3339 UTC with milliseconds, e.g. `2024-05-01T12:00:00.123Z`;
/// `None` outside years 1970..=9999, which the formatter cannot represent.
pub fn rfc3339_millis(ms: EventTime) -> Option<String> {
    const END_OF_9999_MS: i64 = 253_402_300_800_000;
    if !(0..END_OF_9999_MS).contains(&ms) {
        return None;
    }
    let time = UNIX_EPOCH.checked_add(Duration::from_millis(u64::try_from(ms).ok()?))?;
    let mut out = String::with_capacity(24);
    write!(out, "{}", humantime::format_rfc3339_millis(time)).ok()?;
    Some(out)
}

/// One store's current wait time.
#[utoipa::path(
    get,
    path = "/stores/{id}/wait",
    tag = "wait times",
    params(("id" = i32, Path, minimum = 1, description = "Store id")),
    responses(
        (status = 200, body = StoreWaitJson, description = "The store's current answer"),
        (status = 400, body = ErrorJson, description = "Bad store id"),
        (status = 404, body = NotSeenJson, description = "The store has not been seen"),
        (status = 429, body = ErrorJson, description = "Too many concurrent requests; see Retry-After"),
    )
)]
async fn store_wait(
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
) -> Response {
    let raw = match id {
        Ok(Path(raw)) => raw,
        // Not valid UTF-8 once decoded: echo the segment as sent.
        Err(_) => store_wait_segment(uri.path())
            .unwrap_or_default()
            .to_owned(),
    };
    let Some(id) = parse_store_id(&raw) else {
        return bad_store_id(&raw);
    };
    let found = app
        .table
        .resolve(app.answers.get(id), id, now_ms())
        .map(|s| ServedJson::from(&s));
    match found {
        Some(body) => axum::Json(body).into_response(),
        None => not_seen(id),
    }
}

fn not_seen(id: StoreId) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(NotSeenJson {
            error: format!("store {id} has not been seen"),
            store_id: id,
        }),
    )
        .into_response()
}

/// Every known store's current wait time, by store id.
#[utoipa::path(
    get,
    path = "/stores",
    tag = "wait times",
    responses(
        (status = 200, body = Vec<StoreWaitJson>, description = "Every store, sorted by id"),
        (status = 429, body = ErrorJson, description = "Too many concurrent requests; see Retry-After"),
    )
)]
async fn list_stores(State(app): State<AppState>) -> Response {
    let all: Vec<ServedJson> = app
        .table
        .resolve_all(&app.answers, now_ms())
        .iter()
        .map(ServedJson::from)
        .collect();
    axum::Json(all).into_response()
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    responses((status = 200, body = openapi::Live, description = "Always, while the process runs")),
)]
async fn live() -> Response {
    axum::Json(json!({"status": "live"})).into_response()
}

/// Readiness: caught up and connected; 503 with every reason otherwise.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    responses(
        (status = 200, body = openapi::Ready, description = "Ready to serve"),
        (status = 503, body = openapi::NotReady, description = "Not ready, with reasons"),
    )
)]
async fn ready(State(app): State<AppState>) -> Response {
    let report = app.health.report();
    let warnings: serde_json::Map<String, serde_json::Value> = report
        .warnings
        .iter()
        .map(|(name, reason)| ((*name).to_owned(), reason.as_str().into()))
        .collect();
    if report.ready {
        if warnings.is_empty() {
            return axum::Json(json!({"status": "ready"})).into_response();
        }
        return axum::Json(json!({"status": "ready", "warnings": warnings})).into_response();
    }
    let reasons: serde_json::Map<String, serde_json::Value> = report
        .not_ready()
        .map(|(name, reason)| (name.to_owned(), reason.into()))
        .collect();
    let names: Vec<&str> = report.not_ready().map(|(name, _)| name).collect();
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({
            "status": "not ready",
            "error": format!("not ready: {}", names.join(", ")),
            "reasons": reasons,
        })),
    )
        .into_response()
}

/// Prometheus metrics, OpenMetrics text.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses(
        (status = 200, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8",
         body = String, description = "Every metric"),
        (status = 500, body = ErrorJson, description = "The metrics could not be rendered"),
    )
)]
async fn metrics(State(app): State<AppState>) -> Response {
    match app.metrics.render() {
        Ok(text) => ([(CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], text).into_response(),
        Err(_) => {
            tracing::error!("could not render metrics");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "could not render metrics".to_owned(),
            )
        }
    }
}

async fn not_found(method: Method, uri: Uri) -> Response {
    // The router does not match an empty segment, so `/stores//wait` lands here; it is a bad
    // id, not a missing route.
    let path = uri.path();
    if let Some(raw) = store_wait_segment(path).or_else(|| stream::stream_segment(path)) {
        return bad_store_id(raw);
    }
    error_response(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", echo(uri.path())),
    )
}

/// The `{id}` of a `/stores/{id}/wait` path, as sent.
fn store_wait_segment(path: &str) -> Option<&str> {
    let raw = path.strip_prefix("/stores/")?.strip_suffix("/wait")?;
    (!raw.contains('/')).then_some(raw)
}

/// Accepts ASCII digits only (no sign, no spaces) naming a value in `1..=i32::MAX`.
fn parse_store_id(raw: &str) -> Option<StoreId> {
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse::<StoreId>().ok().filter(|id| *id > 0)
}

fn bad_store_id(raw: &str) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        format!(
            "store id must be a positive 32-bit integer, got {:?}",
            echo(raw)
        ),
    )
}

/// At most [`MAX_ECHO_CHARS`] of `s`, marked with `…` when cut.
fn echo(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO_CHARS) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

fn error_response(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// URI limit, timeout, JSON bodies for every error, and the request counter.
async fn guard(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let uri = request.uri();
    let uri_len = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());

    let response = if uri_len > app.limits.max_uri_bytes {
        error_response(
            StatusCode::URI_TOO_LONG,
            format!(
                "request URI is {uri_len} bytes; the limit is {}",
                app.limits.max_uri_bytes
            ),
        )
    } else {
        match tokio::time::timeout(app.limits.request_timeout, next.run(request)).await {
            Ok(response) => response,
            Err(_) => {
                tracing::warn!(%method, route, "HTTP request timed out");
                error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "request timed out after {}",
                        humantime::format_duration(app.limits.request_timeout)
                    ),
                )
            }
        }
    };
    let response = json_error_body(response, &method);
    metrics::HttpRequestServed {
        route: &route,
        status: response.status().as_u16(),
    }
    .emit(&app.metrics);
    response
}

/// Gives an error response produced without a JSON body (axum's 405, tower-http's 413) one.
fn json_error_body(response: Response, method: &Method) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(response.headers()) {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let message = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("GET,HEAD");
            format!("method {method} is not allowed here; allowed: {allowed}")
        }
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large; no route takes a body".to_owned(),
        _ => status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase(),
    };
    let body = json!({ "error": message }).to_string();
    parts.headers.remove(CONTENT_LENGTH);
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(body))
}

/// Sheds load on the customer-facing routes: no permit, no queue, 429 now.
async fn shed_load(State(app): State<AppState>, request: Request, next: Next) -> Response {
    match app.in_flight.clone().try_acquire_owned() {
        Ok(_permit) => next.run(request).await,
        Err(_) => {
            let mut response = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "too many concurrent requests; retry shortly".to_owned(),
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
            response
        }
    }
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload");
    tracing::error!(panic = detail, "HTTP handler panicked");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error".to_owned(),
    )
}

#[cfg(test)]
mod tests;
