//! The live page: every store's wait (or one store's), updating from the push stream. Its
//! assets are compiled into the binary, so it works without network access beyond the service.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY};

use super::*;

const INDEX_HTML: &str = include_str!("assets/index.html");
const PAGE_JS: &str = include_str!("assets/page.js");
const PAGE_CSS: &str = include_str!("assets/page.css");

/// Only the service's own scripts, styles and connections; nothing inline, nothing external.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn html() -> Response {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CONTENT_SECURITY_POLICY, CSP),
            (CACHE_CONTROL, "no-cache"),
        ],
        INDEX_HTML,
    )
        .into_response()
}

/// The live page of every store.
#[utoipa::path(
    get,
    path = "/",
    tag = "page",
    responses((status = 200, content_type = "text/html", body = String, description = "The page")),
)]
pub(super) async fn all_stores() -> Response {
    html()
}

/// The live page of one store (the page reads the id from its address).
#[utoipa::path(
    get,
    path = "/stores/{id}",
    tag = "page",
    params(("id" = i32, Path, minimum = 1, description = "Store id")),
    responses(
        (status = 200, content_type = "text/html", body = String, description = "The page"),
        (status = 400, body = ErrorJson, description = "Bad store id"),
    )
)]
pub(super) async fn one_store(id: Result<Path<String>, PathRejection>, uri: Uri) -> Response {
    let raw = match id {
        Ok(Path(raw)) => raw,
        Err(_) => uri
            .path()
            .strip_prefix("/stores/")
            .unwrap_or_default()
            .to_owned(),
    };
    match parse_store_id(&raw) {
        Some(_) => html(),
        None => bad_store_id(&raw),
    }
}

/// The page's script.
#[utoipa::path(
    get,
    path = "/assets/page.js",
    tag = "page",
    responses((status = 200, content_type = "text/javascript", body = String, description = "The script")),
)]
pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", PAGE_JS)
}

/// The page's style sheet.
#[utoipa::path(
    get,
    path = "/assets/page.css",
    tag = "page",
    responses((status = 200, content_type = "text/css", body = String, description = "The style sheet")),
)]
pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", PAGE_CSS)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}
