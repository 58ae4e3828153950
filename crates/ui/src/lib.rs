//! The `ui` role: the phone simulator (`/`), the sign-in callback (`/callback`) and the admin
//! console (`/admin`), as plain HTML, CSS and JavaScript modules embedded in the binary. No
//! build step, no third-party requests, no inline script or style: the strict
//! Content-Security-Policy the server sends on every response holds for every page.
//!
//! The browser talks to the API like any other client: it signs in through the identity
//! provider's own login page (authorization code + PKCE) and calls the JSON endpoints with
//! its bearer token. Every value from the API is rendered as text, never parsed as HTML.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// One embedded file.
struct Asset {
    name: &'static str,
    body: &'static [u8],
}

macro_rules! assets {
    ($($name:literal),* $(,)?) => {
        &[$(Asset { name: $name, body: include_bytes!(concat!("../assets/", $name)) }),*]
    };
}

/// Everything served under `/assets/`.
static ASSETS: &[Asset] = assets![
    "app.css",
    "account.js",
    "admin.js",
    "api.js",
    "auth.js",
    "bank.js",
    "callback.js",
    "crypto-util.js",
    "dom.js",
    "notify.js",
    "phone.js",
    "policy.js",
    "render-json.js",
    "signup.js",
    "icon-bag.svg",
    "icon-bank.svg",
    "icon-bowl.svg",
    "icon-car.svg",
    "icon-cart.svg",
    "icon-chart.svg",
    "icon-check.svg",
    "icon-cross.svg",
    "icon-cup.svg",
    "icon-film.svg",
    "icon-fuel.svg",
    "icon-list.svg",
    "icon-person.svg",
    "icon-star.svg",
];

const INDEX_HTML: &str = include_str!("../assets/index.html");
const CALLBACK_HTML: &str = include_str!("../assets/callback.html");
const ADMIN_HTML: &str = include_str!("../assets/admin.html");

/// The routes of the `ui` role.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { page(INDEX_HTML) }))
        .route("/callback", get(|| async { page(CALLBACK_HTML) }))
        .route("/admin", get(|| async { page(ADMIN_HTML) }))
        .route("/assets/{file}", get(asset))
}

fn page(html: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

async fn asset(Path(file): Path<String>) -> Response {
    match find(&file) {
        Some(asset) => (
            [(header::CONTENT_TYPE, content_type(asset.name))],
            asset.body,
        )
            .into_response(),
        // The protective layers turn a bare 404 into problem+json.
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("html") => "text/html; charset=utf-8",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    //! Static checks of the embedded front end: what the Content-Security-Policy and the
    //! "data is text, never HTML" rule need, verified on the files themselves.

    use super::*;

    fn text(asset: &Asset) -> &'static str {
        std::str::from_utf8(asset.body).unwrap_or_else(|_| panic!("{} is not UTF-8", asset.name))
    }

    fn pages() -> [(&'static str, &'static str); 3] {
        [
            ("index.html", INDEX_HTML),
            ("callback.html", CALLBACK_HTML),
            ("admin.html", ADMIN_HTML),
        ]
    }

    /// Every `/assets/NAME` mentioned anywhere.
    fn references(source: &str) -> Vec<String> {
        source
            .match_indices("/assets/")
            .map(|(at, prefix)| {
                source[at + prefix.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
                    .collect::<String>()
            })
            .collect()
    }

    #[test]
    fn every_asset_has_a_known_content_type() {
        for asset in ASSETS {
            assert_ne!(
                content_type(asset.name),
                "application/octet-stream",
                "{}",
                asset.name
            );
        }
        assert_eq!(content_type("a.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("a.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("a.svg"), "image/svg+xml");
    }

    #[test]
    fn every_referenced_asset_is_embedded_and_every_module_import_resolves() {
        let mut sources: Vec<(&str, &str)> = pages().to_vec();
        sources.extend(
            ASSETS
                .iter()
                .filter(|a| !a.name.ends_with(".svg"))
                .map(|a| (a.name, text(a))),
        );
        for (name, source) in &sources {
            for reference in references(source) {
                assert!(
                    find(&reference).is_some(),
                    "{name} refers to /assets/{reference}, which is not embedded"
                );
            }
            for line in source.lines().filter(|l| l.contains(" from './")) {
                let module = line
                    .split(" from './")
                    .nth(1)
                    .and_then(|rest| rest.split('\'').next())
                    .unwrap_or("");
                assert!(
                    find(module).is_some(),
                    "{name} imports ./{module}, which is not embedded"
                );
            }
        }
        assert!(find("nope.js").is_none());
    }

    #[test]
    fn pages_have_no_inline_script_or_style() {
        for (name, html) in pages() {
            let lower = html.to_ascii_lowercase();
            for (at, _) in lower.match_indices("<script") {
                let tag_end = lower[at..].find('>').map(|e| at + e).unwrap_or(lower.len());
                let tag = &lower[at..tag_end];
                assert!(
                    tag.contains("src=\"/assets/"),
                    "{name}: inline script {tag}"
                );
                assert!(
                    lower[tag_end + 1..].starts_with("</script>"),
                    "{name}: script with a body"
                );
            }
            assert!(!lower.contains("<style"), "{name}: inline <style>");
            assert!(!lower.contains(" style="), "{name}: style attribute");
            assert!(!lower.contains("javascript:"), "{name}: javascript: URL");
            for handler in [
                " onclick=",
                " onload=",
                " onerror=",
                " onsubmit=",
                " onchange=",
            ] {
                assert!(!lower.contains(handler), "{name}: inline handler {handler}");
            }
        }
    }

    #[test]
    fn scripts_never_turn_data_into_html_or_code() {
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let source = text(asset);
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "setAttribute('style'",
                "createContextualFragment",
                "localStorage",
                "document.cookie",
            ] {
                assert!(
                    !source.contains(forbidden),
                    "{} uses {forbidden}",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn nothing_is_fetched_from_another_site() {
        let mut sources: Vec<(&str, &str)> = pages().to_vec();
        sources.extend(ASSETS.iter().map(|a| (a.name, text(a))));
        for (name, source) in sources {
            let without_namespace = source.replace("http://www.w3.org/2000/svg", "");
            for scheme in ["http://", "https://", "//cdn", "@import"] {
                assert!(
                    !without_namespace.contains(scheme),
                    "{name} mentions {scheme}"
                );
            }
        }
    }
}
