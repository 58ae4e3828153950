//! Helpers shared by the test files: raw requests, token decoding and crafting, and the
//! assertions several files make (security headers, 401 challenges).

#![allow(dead_code)]

use axum::body::Body;
use examplebank_testkit::{TestApp, TestResponse};
use http::{header, HeaderValue, Method, Request, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;

/// A request with a raw body text and content type, optionally with a bearer token and extra
/// headers.
pub async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<Body>,
    extra: &[(&str, &str)],
) -> TestResponse {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    for (name, value) in extra {
        builder = builder.header(*name, *value);
    }
    app.send(builder.body(body.into()).expect("request")).await
}

/// A JSON request with extra headers (e.g. `Idempotency-Key`).
pub async fn json_with(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
    body: &Value,
    extra: &[(&str, &str)],
) -> TestResponse {
    raw(
        app,
        method,
        path,
        Some(token),
        Some("application/json"),
        body.to_string(),
        extra,
    )
    .await
}

/// A GET with an explicit `Authorization` header value (or none).
pub async fn get_with_authorization(
    app: &TestApp,
    path: &str,
    values: &[HeaderValue],
) -> TestResponse {
    let mut builder = Request::builder().method(Method::GET).uri(path);
    for value in values {
        builder = builder.header(header::AUTHORIZATION, value.clone());
    }
    app.send(builder.body(Body::empty()).expect("request"))
        .await
}

/// The decoded header and claims of a compact JWS.
pub fn decode_segment(token: &str, index: usize) -> Value {
    let segment = token.split('.').nth(index).expect("segment");
    let bytes = crypto::b64::decode(segment).expect("base64url segment");
    serde_json::from_slice(&bytes).expect("JSON segment")
}

pub fn header_of(token: &str) -> Value {
    decode_segment(token, 0)
}

pub fn claims_of(token: &str) -> Value {
    decode_segment(token, 1)
}

/// Assembles a compact JWS from header and claims, signing `header.claims` with `sign`.
pub fn craft(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        crypto::b64::encode(header.to_string().as_bytes()),
        crypto::b64::encode(claims.to_string().as_bytes())
    );
    let signature = sign(input.as_bytes());
    format!("{input}.{}", crypto::b64::encode(&signature))
}

/// The ed25519 key behind a `crypto::jws::SigningKey`, to sign crafted headers.
pub fn dalek(key: &crypto::jws::SigningKey) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&key.secret_bytes())
}

/// Signs with an ed25519 key.
pub fn ed25519(key: &ed25519_dalek::SigningKey) -> impl FnOnce(&[u8]) -> Vec<u8> + '_ {
    use ed25519_dalek::Signer as _;
    move |input| key.sign(input).to_bytes().to_vec()
}

/// Signs with the server's active signing key.
pub fn server_signed(app: &TestApp, header: &Value, claims: &Value) -> String {
    let key = dalek(&app.services.signing.current().active().clone());
    craft(header, claims, ed25519(&key))
}

/// The header the server itself puts on access tokens.
pub fn server_header(app: &TestApp) -> Value {
    json!({ "alg": "EdDSA", "typ": "at+jwt", "kid": &app.services.signing.current().active().clone().kid() })
}

/// Asserts a 401 problem with a Bearer challenge.
pub fn assert_unauthorized(response: TestResponse, case: &str) {
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{case}: {}",
        response.text()
    );
    let challenge = response
        .header("www-authenticate")
        .unwrap_or_default()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer "),
        "{case}: challenge {challenge:?}"
    );
    let body = response.expect_problem(StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["type"], "urn:examplebank:problem:unauthorized",
        "{case}"
    );
}

/// The query parameters of a redirect's `Location`.
pub fn location_params(response: &TestResponse) -> (String, HashMap<String, String>) {
    assert_eq!(
        response.status,
        StatusCode::SEE_OTHER,
        "not a redirect: {}",
        response.text()
    );
    let location = response.header("location").expect("location");
    let url = url::Url::parse(location).expect("redirect URL");
    let params = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut base = url.clone();
    base.set_query(None);
    (base.to_string(), params)
}

/// The PKCE S256 challenge of a verifier.
pub fn challenge(verifier: &str) -> String {
    crypto::b64::encode(&crypto::secrets::sha256(verifier.as_bytes()))
}

/// Asserts the protective headers every response carries.
pub fn assert_security_headers(response: &TestResponse, case: &str) {
    let csp = response
        .header("content-security-policy")
        .unwrap_or_default();
    assert!(
        csp.contains("frame-ancestors 'none'"),
        "{case}: CSP {csp:?}"
    );
    assert!(csp.contains("default-src 'self'"), "{case}: CSP {csp:?}");
    assert_eq!(
        response.header("x-content-type-options"),
        Some("nosniff"),
        "{case}"
    );
    assert_eq!(
        response.header("referrer-policy"),
        Some("no-referrer"),
        "{case}"
    );
    assert_eq!(response.header("cache-control"), Some("no-store"), "{case}");
}

/// The `next` link of a transaction page, if any.
pub fn next_link(response: &TestResponse) -> Option<String> {
    let link = response.header("link")?;
    assert!(link.ends_with("; rel=\"next\""), "link {link:?}");
    let start = link.find('<')? + 1;
    let end = link.find('>')?;
    Some(link[start..end].to_owned())
}
