//! What a browser sees at `/` until the phone simulator (the `ui` role's full front end)
//! lands: where to sign up and where the API is.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>examplebank</title><link rel=\"stylesheet\" href=\"/identity/v1/style.css\"></head>\
<body><main class=\"card\"><h1>examplebank is running</h1>\
<p>A privacy-by-design back end for a credit-card rewards app.</p>\
<ul><li><a href=\"/identity/v1/signup\">Create an account</a></li>\
<li><a href=\"/.well-known/openid-configuration\">OpenID Connect discovery</a></li>\
<li><a href=\"/healthz\">Health</a> and <a href=\"/readyz\">readiness</a></li></ul>\
<p>Run <code>examplebank demo --url http://127.0.0.1:8080</code> to walk the whole journey.</p>\
</main></body></html>";

pub fn router() -> Router {
    Router::new().route("/", get(landing_page))
}

async fn landing_page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}
