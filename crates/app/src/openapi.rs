//! The OpenAPI 3.1 document of the HTTP API, written by hand in `openapi.json` and served at
//! `GET /openapi.json` whatever roles the process runs. `tests/openapi.rs` keeps it equal to
//! the route table, and `scripts/schemathesis.sh` checks the running server against it.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// The document, exactly as served.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// `GET /openapi.json`.
pub fn router() -> Router {
    Router::new().route("/openapi.json", get(document))
}

async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
