//! The OpenAPI 3.1 document, derived from the handlers' annotations and the types they answer
//! with, so it cannot drift from the routes (`/openapi.json`; the contract test fuzzes the live
//! service against it).

use utoipa::OpenApi;

use super::*;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "waittimes",
        description = "Live per-store pizza wait times, computed from the chain's Kafka order events.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        list_stores,
        store_wait,
        stream::stores_stream,
        stream::store_stream,
        live,
        ready,
        metrics,
        document,
        page::all_stores,
        page::one_store,
        page::script,
        page::style,
    ),
    components(schemas(StoreWaitJson, NotSeenJson, ErrorJson, stream::PushEventDoc)),
    tags(
        (name = "wait times", description = "Pull: the current answers"),
        (name = "push", description = "Server-Sent Events of every change"),
        (name = "health", description = "Probes and metrics"),
        (name = "page", description = "The live page"),
    )
)]
struct ApiDoc;

/// `{"status": "live"}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Live {
    #[schema(pattern = "^live$")]
    status: String,
}

/// `{"status": "ready"}`.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct Ready {
    #[schema(pattern = "^ready$")]
    status: String,
}

/// Why the service is not ready: one reason per failing condition.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct NotReady {
    #[schema(pattern = "^not ready$")]
    status: String,
    error: String,
    reasons: std::collections::BTreeMap<String, String>,
}

/// The document as JSON, built once.
fn json() -> &'static str {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DOC.get_or_init(|| match ApiDoc::openapi().to_json() {
        Ok(text) => text,
        Err(e) => {
            tracing::error!(error = %e, "could not render the OpenAPI document");
            String::new()
        }
    })
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "health",
    responses(
        (status = 200, content_type = "application/json", body = Object, description = "OpenAPI 3.1"),
        (status = 500, body = ErrorJson, description = "The document could not be rendered"),
    )
)]
pub(super) async fn document() -> Response {
    let text = json();
    if text.is_empty() {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "could not render the OpenAPI document".to_owned(),
        );
    }
    ([(CONTENT_TYPE, "application/json")], text).into_response()
}
