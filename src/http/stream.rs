//! Push: Server-Sent Events of published answers.
//!
//! A stream sends the current answers of the stores it follows at once, then each change. It
//! holds no queue: on waking it asks [`Answers`] for what changed since the last change it sent,
//! so a client that reads slowly gets the latest answer of each store and skips the ones in
//! between (counted), and the consumer thread never waits for it. Event ids are
//! `<instance epoch>-<sequence>`; `Last-Event-ID` from this instance resumes after that change,
//! any other id (a restart, another instance, garbage) gets the full current state, so a resuming
//! client never misses the latest state. Streams end on shutdown and after `stream_max_age`.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::http::HeaderValue;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::*;
use crate::answers::Published;
use crate::metrics::{StreamClosed, StreamEventsSent, StreamOpened, StreamRejected};
use crate::shutdown::Shutdown;

/// At most this many ids in `?ids=`.
pub(super) const MAX_IDS: usize = 100;

/// How long a client waits before reconnecting (the SSE `retry` field).
const RECONNECT_MS: u64 = 2_000;

/// The stores one stream follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Follow {
    All,
    Some(BTreeSet<StoreId>),
}

impl Follow {
    fn accepts(&self, store: StoreId) -> bool {
        match self {
            Follow::All => true,
            Follow::Some(ids) => ids.contains(&store),
        }
    }
}

/// `?ids=1,2,7` (the document's view; `ids=1&ids=2` is accepted too, the union).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described, not built: the handler reads the pairs (see `stores_stream`)
pub(super) struct StreamQuery {
    /// Only these stores (comma-separated positive ids, at most 100); all stores when absent.
    #[param(schema_with = ids_schema, style = Form, explode = false)]
    ids: Option<String>,
}

fn ids_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
    let id = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
        .minimum(Some(1))
        .maximum(Some(i32::MAX));
    ArrayBuilder::new()
        .items(id)
        .min_items(Some(1))
        .max_items(Some(MAX_IDS))
        .build()
}

/// One Server-Sent Event of a push stream. `wait`: `data` is a StoreWait as JSON, `id` the
/// resume point for `Last-Event-ID`. `removed`: `data` is `{"store_id": n}`, a store sent
/// earlier that this instance no longer answers for (its partition moved, or it was evicted).
/// Idle streams also carry `:heartbeat` comments, which are not events.
#[derive(utoipa::ToSchema)]
#[schema(as = PushEvent)]
#[allow(dead_code)] // only described, never built: the events are written by `Event`
pub(super) struct PushEventDoc {
    event: PushEventKind,
    #[schema(pattern = "^[0-9a-f]{8}-[0-9]+$")]
    id: Option<String>,
    /// JSON: a StoreWait (`wait`) or `{"store_id": n}` (`removed`).
    data: String,
}

#[derive(utoipa::ToSchema)]
#[schema(as = PushEventKind)]
#[allow(dead_code)]
#[serde(rename_all = "lowercase")]
pub(super) enum PushEventKind {
    Wait,
    Removed,
}

/// Parses `?ids=`: positive store ids, comma-separated, 1 to [`MAX_IDS`] of them.
pub(super) fn parse_ids(raw: &str) -> Result<BTreeSet<StoreId>, String> {
    let parts: Vec<&str> = raw.split(',').collect();
    if raw.is_empty() {
        return Err("ids must list at least one store id".to_owned());
    }
    if parts.len() > MAX_IDS {
        return Err(format!(
            "ids lists {} store ids; at most {MAX_IDS} are allowed",
            parts.len()
        ));
    }
    parts
        .iter()
        .map(|p| {
            parse_store_id(p).ok_or_else(|| {
                format!(
                    "ids must be positive 32-bit integers separated by commas, got {:?}",
                    echo(p)
                )
            })
        })
        .collect()
}

/// The sequence number of `Last-Event-ID` if this instance issued it and it is not ahead of
/// the latest change; `None` means "send everything".
pub(super) fn resume_after(headers: &HeaderMap, epoch: u32, latest: u64) -> Option<u64> {
    let raw = headers.get("last-event-id")?.to_str().ok()?;
    let (e, seq) = raw.trim().split_once('-')?;
    if u32::from_str_radix(e, 16).ok()? != epoch {
        return None;
    }
    let seq: u64 = seq.parse().ok()?;
    (seq <= latest).then_some(seq)
}

/// `{epoch}-{seq}`, as [`resume_after`] reads it.
pub(super) fn event_id(epoch: u32, seq: u64) -> String {
    format!("{epoch:08x}-{seq}")
}

/// The state of one open stream; its drop closes the stream in the metrics.
struct Feed {
    answers: Answers,
    follow: Follow,
    changes: watch::Receiver<u64>,
    /// Every change up to this one has been collected.
    after: u64,
    /// Version of each store's answer last sent (to count skips, and to notice removals).
    sent: HashMap<StoreId, u64>,
    pending: VecDeque<Event>,
    shutdown: Shutdown,
    ends_at: tokio::time::Instant,
    metrics: Metrics,
    events: u64,
    /// Released when the stream ends, however it ends.
    _permit: OwnedSemaphorePermit,
}

impl Drop for Feed {
    fn drop(&mut self) {
        StreamClosed {
            events: self.events,
        }
        .emit(&self.metrics);
    }
}

impl Feed {
    /// Queues what changed since the last collection.
    fn collect(&mut self) {
        let upto = *self.changes.borrow_and_update();
        let follow = &self.follow;
        let changed = self
            .answers
            .changed_between(self.after, upto, |s| follow.accepts(s));
        let mut batch = StreamEventsSent {
            wait: 0,
            removed: 0,
            skipped: 0,
        };
        let epoch = self.answers.epoch();
        for p in changed {
            if let Some(before) = self.sent.insert(p.wait.store_id, p.version) {
                batch.skipped += p.version.saturating_sub(before + 1);
            }
            if let Some(event) = wait_event(epoch, &p) {
                batch.wait += 1;
                self.pending.push_back(event);
            }
        }
        let gone: Vec<StoreId> = self
            .sent
            .keys()
            .copied()
            .filter(|s| !self.answers.contains(*s))
            .collect();
        for store in gone {
            self.sent.remove(&store);
            let data = json!({ "store_id": store }).to_string();
            self.pending
                .push_back(Event::default().event("removed").data(data));
            batch.removed += 1;
        }
        self.after = upto;
        self.events += batch.wait + batch.removed;
        batch.emit(&self.metrics);
    }

    /// The next event, waiting for a change; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            tokio::select! {
                biased;
                () = self.shutdown.triggered() => return None,
                () = tokio::time::sleep_until(self.ends_at) => return None,
                changed = self.changes.changed() => {
                    // The sender lives as long as the answers, which outlive every stream.
                    changed.ok()?;
                    self.collect();
                }
            }
        }
    }
}

fn wait_event(epoch: u32, p: &Published) -> Option<Event> {
    let body = StoreWaitJson::from(&p.wait);
    match Event::default()
        .event("wait")
        .id(event_id(epoch, p.seq))
        .json_data(body)
    {
        Ok(event) => Some(event),
        Err(e) => {
            tracing::error!(error = %e, store_id = p.wait.store_id, "could not encode a push event");
            None
        }
    }
}

/// Opens a stream following `follow`, or refuses it with 429 when `max_streams` are open.
fn open(app: &AppState, route: &str, follow: Follow, headers: &HeaderMap) -> Response {
    let Ok(permit) = app.streams.clone().try_acquire_owned() else {
        StreamRejected {
            limit: app.limits.max_streams,
        }
        .emit(&app.metrics);
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} push streams are open, the most this instance serves; retry shortly",
                app.limits.max_streams
            ),
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    StreamOpened {
        route,
        open: app.limits.max_streams - app.streams.available_permits(),
    }
    .emit(&app.metrics);
    let answers = app.answers.clone();
    let mut changes = answers.subscribe();
    let latest = *changes.borrow_and_update();
    let after = resume_after(headers, answers.epoch(), latest).unwrap_or(0);
    // Resuming: what the client already has counts as sent, so its removal is noticed.
    let sent = answers
        .changed_between(0, after, |s| follow.accepts(s))
        .into_iter()
        .map(|p| (p.wait.store_id, p.version))
        .collect();
    let mut feed = Feed {
        answers,
        follow,
        changes,
        after,
        sent,
        pending: VecDeque::new(),
        shutdown: app.shutdown.clone(),
        ends_at: tokio::time::Instant::now() + app.limits.stream_max_age,
        metrics: app.metrics.clone(),
        events: 0,
        _permit: permit,
    };
    // The current state at once; the first event also tells the client how soon to reconnect.
    feed.collect();
    let retry = Event::default()
        .retry(std::time::Duration::from_millis(RECONNECT_MS))
        .comment("waittimes");
    feed.pending.push_front(retry);
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = feed.next().await?;
        Some((Ok::<_, Infallible>(event), feed))
    });
    sse(stream, app).into_response()
}

fn sse(
    stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
    app: &AppState,
) -> impl IntoResponse {
    let keep_alive = KeepAlive::new()
        .interval(app.limits.stream_heartbeat)
        .text("heartbeat");
    (
        // nginx and similar proxies would otherwise buffer the stream.
        [("x-accel-buffering", "no")],
        Sse::new(stream).keep_alive(keep_alive),
    )
}

/// One store's answer now and on every change.
#[utoipa::path(
    get,
    path = "/stores/{id}/wait/stream",
    tag = "push",
    params(
        ("id" = i32, Path, minimum = 1, description = "Store id"),
        ("Last-Event-ID" = Option<String>, Header,
         description = "Resume after this event (sent by EventSource on reconnect); an id this \
                        instance did not issue gets the full current state"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = PushEventDoc,
         description = "`wait` events (data: a StoreWait, id: resume point) and `removed` events \
                        (data: {\"store_id\": n}); `:heartbeat` comments while idle"),
        (status = 400, body = ErrorJson, description = "Bad store id"),
        (status = 404, body = NotSeenJson, description = "The store has not been seen"),
        (status = 429, body = ErrorJson, description = "Too many open streams or requests; see Retry-After"),
    )
)]
pub(super) async fn store_stream(
    State(app): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let raw = match id {
        Ok(Path(raw)) => raw,
        Err(_) => stream_segment(uri.path()).unwrap_or_default().to_owned(),
    };
    let Some(id) = parse_store_id(&raw) else {
        return bad_store_id(&raw);
    };
    if !app.answers.contains(id) {
        return not_seen(id);
    }
    let follow = Follow::Some(BTreeSet::from([id]));
    open(&app, "/stores/{id}/wait/stream", follow, &headers)
}

/// Every store's answer (or those in `ids`) now and on every change.
#[utoipa::path(
    get,
    path = "/stores/stream",
    tag = "push",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<String>, Header,
         description = "Resume after this event; an id this instance did not issue gets the full \
                        current state"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = PushEventDoc,
         description = "As /stores/{id}/wait/stream, for every followed store"),
        (status = 400, body = ErrorJson, description = "Bad ids"),
        (status = 429, body = ErrorJson, description = "Too many open streams or requests; see Retry-After"),
    )
)]
pub(super) async fn stores_stream(
    State(app): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let pairs = match query {
        Ok(Query(pairs)) => pairs,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, format!("bad query: {e}")),
    };
    let ids: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "ids")
        .map(|(_, v)| v.as_str())
        .collect();
    let follow = if ids.is_empty() {
        Follow::All
    } else {
        match parse_ids(&ids.join(",")) {
            Ok(ids) => Follow::Some(ids),
            Err(message) => return error_response(StatusCode::BAD_REQUEST, message),
        }
    };
    open(&app, "/stores/stream", follow, &headers)
}

/// The `{id}` of a `/stores/{id}/wait/stream` path, as sent.
pub(super) fn stream_segment(path: &str) -> Option<&str> {
    let raw = path
        .strip_prefix("/stores/")?
        .strip_suffix("/wait/stream")?;
    (!raw.contains('/')).then_some(raw)
}
