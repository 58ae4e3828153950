//! The OpenAPI document, the route table and the routes the code registers cannot drift
//! apart: the document lists exactly the table's API routes with the access the table gives
//! them, and the table lists exactly the `.route(...)` calls in the source.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use examplebank::routes::{Access, ROUTES};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Routes that serve the browser, not the API: the document leaves them out.
const NOT_API: &[&str] = &[
    "/",
    "/callback",
    "/admin",
    "/assets/{file}",
    "/identity/v1/style.css",
];

const HTTP_METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

type RouteSet = BTreeSet<(String, String)>;

fn document() -> Value {
    serde_json::from_str(examplebank::openapi::DOCUMENT).expect("openapi.json is valid JSON")
}

fn api_routes_in_table() -> RouteSet {
    ROUTES
        .iter()
        .filter(|r| !NOT_API.contains(&r.path))
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect()
}

/// Every operation of the document: (METHOD, path, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let paths = doc["paths"].as_object().expect("paths is an object");
    let mut out = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for (key, operation) in item {
            if HTTP_METHODS.contains(&key.as_str()) {
                out.push((key.to_ascii_uppercase(), path.clone(), operation.clone()));
            }
        }
    }
    out
}

fn show(set: &RouteSet) -> String {
    set.iter()
        .map(|(m, p)| format!("  {m} {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_openapi_document_lists_exactly_the_api_routes() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0", "the document is OpenAPI 3.1");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let documented: RouteSet = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let table = api_routes_in_table();
    let missing: RouteSet = table.difference(&documented).cloned().collect();
    let extra: RouteSet = documented.difference(&table).cloned().collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the document and the route table differ\nin the table, not documented:\n{}\n\
         documented, not in the table:\n{}",
        show(&missing),
        show(&extra)
    );
}

/// The scopes an operation's security requirements ask for, or None when it is public.
fn required_scopes(doc: &Value, operation: &Value) -> Option<BTreeSet<String>> {
    let requirements = operation
        .get("security")
        .unwrap_or(&doc["security"])
        .as_array()
        .expect("security is a list");
    if requirements.is_empty()
        || requirements
            .iter()
            .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
    {
        return None;
    }
    let mut scopes = BTreeSet::new();
    for requirement in requirements {
        let bearer = requirement["bearer"]
            .as_array()
            .expect("every requirement names the bearer scheme");
        for scope in bearer {
            scopes.insert(scope.as_str().expect("scope names are strings").to_owned());
        }
    }
    Some(scopes)
}

#[test]
fn every_operation_asks_for_the_access_the_route_table_gives() {
    let doc = document();
    for (method, path, operation) in operations(&doc) {
        let route = ROUTES
            .iter()
            .find(|r| r.method == method && r.path == path)
            .unwrap_or_else(|| panic!("{method} {path} is not in the route table"));
        // The scopes the table allows, and those a document may not leave out. A signed-in
        // account's route may need more than `openid` (changing the password needs `bank` or
        // `admin`), and every token a person or administrator gets carries one of those.
        let (allowed, needed): (&[&str], &[&str]) = match route.access {
            Access::Public => (&[], &[]),
            Access::Person => (&["bank"], &["bank"]),
            Access::Account => (&["admin", "bank", "openid"], &["admin", "bank"]),
            Access::Admin => (&["admin"], &["admin"]),
            Access::RewardsOrAdmin => (&["admin", "rewards"], &["admin", "rewards"]),
            Access::ServiceStanding => (&["standing"], &["standing"]),
            Access::ServiceForget => (&["forget"], &["forget"]),
        };
        let scopes = required_scopes(&doc, &operation);
        if route.access == Access::Public {
            assert_eq!(scopes, None, "{method} {path} is public in the route table");
        } else {
            let scopes = scopes.unwrap_or_else(|| {
                panic!("{method} {path} is protected in the route table but public here")
            });
            assert!(
                scopes.iter().all(|s| allowed.contains(&s.as_str()))
                    && needed.iter().all(|s| scopes.contains(*s)),
                "{method} {path}: the document asks for {scopes:?}; the route table allows \
                 {allowed:?}"
            );
        }
        let responses = operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path} has no responses"));
        assert!(
            responses.contains_key("429"),
            "{method} {path}: every route is rate limited, so 429 must be documented"
        );
        if route.access != Access::Public {
            for status in ["401", "403"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: a protected route must document {status}"
                );
            }
        }
        let json_body = operation["requestBody"]["content"]
            .as_object()
            .is_some_and(|c| c.contains_key("application/json"));
        if json_body {
            for status in ["400", "413", "415"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: a JSON body can be refused with {status}"
                );
            }
        }
    }
}

#[test]
fn every_path_parameter_is_declared_and_every_reference_resolves() {
    let doc = document();
    for (method, path, operation) in operations(&doc) {
        let declared: BTreeSet<String> = operation["parameters"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|p| resolve(&doc, p))
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let templated: BTreeSet<String> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        assert_eq!(declared, templated, "{method} {path}: path parameters");
    }
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{reference} is not a local reference"));
        assert!(
            doc.pointer(pointer).is_some(),
            "{reference} does not resolve"
        );
    }
}

fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{r} does not resolve")),
        None => value,
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(item, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_refs(i, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_served_as_json() {
    use tower::ServiceExt;
    let request = axum::http::Request::get("/openapi.json")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = examplebank::openapi::router()
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[axum::http::header::CONTENT_TYPE],
        "application/json"
    );
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let served: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served, document());
}

// ---------------------------------------------------------------------------------------
// The routes the code registers, read from the source.

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Str(String),
    Ident(String),
    Punct(char),
}

/// Splits Rust source into the few tokens the route scan needs: identifiers, string literals
/// (plain, byte and raw) and punctuation; comments, char literals and lifetimes are skipped.
fn tokenize(src: &str) -> Vec<Token> {
    let chars: Vec<char> = src.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' {
            let (text, end) = plain_string(&chars, i + 1);
            tokens.push(Token::Str(text));
            i = end;
        } else if (c == 'r' || c == 'b') && raw_string_start(&chars, i).is_some() {
            let (text, end) = raw_string_start(&chars, i).unwrap();
            tokens.push(Token::Str(text));
            i = end;
        } else if c == 'b' && next == Some('"') {
            let (text, end) = plain_string(&chars, i + 2);
            tokens.push(Token::Str(text));
            i = end;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            tokens.push(Token::Punct(c));
            i += 1;
        }
    }
    tokens
}

/// Reads a string literal's text from just after its opening quote; returns the text and the
/// index after the closing quote.
fn plain_string(chars: &[char], mut i: usize) -> (String, usize) {
    let mut text = String::new();
    while i < chars.len() && chars[i] != '"' {
        if chars[i] == '\\' {
            i += 1;
        }
        if let Some(c) = chars.get(i) {
            text.push(*c);
        }
        i += 1;
    }
    (text, i + 1)
}

/// A raw string literal (`r"…"`, `r#"…"#`, `br"…"`) starting at `i`, if there is one.
fn raw_string_start(chars: &[char], i: usize) -> Option<(String, usize)> {
    let mut j = i;
    if chars.get(j) == Some(&'b') {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    // `r` must start a token, not end an identifier such as `bar`.
    if i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    if chars.get(j) != Some(&'"') {
        return None;
    }
    j += 1;
    let start = j;
    while j < chars.len() {
        if chars[j] == '"' && (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) {
            let text = chars[start..j].iter().collect();
            return Some((text, j + 1 + hashes));
        }
        j += 1;
    }
    None
}

/// The (METHOD, path) pairs of every `.route(path, method_router)` call in `src`.
fn routes_in(src: &str) -> Vec<(String, String)> {
    let tokens = tokenize(src);
    let mut found = Vec::new();
    let mut i = 0;
    while i + 2 < tokens.len() {
        let is_route_call = tokens[i] == Token::Punct('.')
            && tokens[i + 1] == Token::Ident("route".into())
            && tokens[i + 2] == Token::Punct('(');
        if !is_route_call {
            i += 1;
            continue;
        }
        // The call's arguments run to the matching closing parenthesis.
        let open = i + 2;
        let mut depth = 0;
        let mut close = open;
        for (k, token) in tokens.iter().enumerate().skip(open) {
            match token {
                Token::Punct('(') => depth += 1,
                Token::Punct(')') => {
                    depth -= 1;
                    if depth == 0 {
                        close = k;
                        break;
                    }
                }
                _ => {}
            }
        }
        assert!(close > open, "an unclosed .route( call");
        let arguments = &tokens[open + 1..close];
        let path = arguments
            .iter()
            .find_map(|t| match t {
                Token::Str(s) => Some(s.clone()),
                _ => None,
            })
            .expect("a .route( call without a path literal");
        let mut methods = Vec::new();
        for (k, token) in arguments.iter().enumerate() {
            if let Token::Ident(name) = token {
                let called = arguments.get(k + 1) == Some(&Token::Punct('('));
                if called && HTTP_METHODS.contains(&name.as_str()) {
                    methods.push(name.to_ascii_uppercase());
                }
                assert!(
                    !(called && matches!(name.as_str(), "any" | "on" | "any_service")),
                    "{path}: a route for any method cannot be checked against the table"
                );
            }
        }
        assert!(
            !methods.is_empty(),
            "{path}: no method found in its .route( call"
        );
        for method in methods {
            found.push((method, path.clone()));
        }
        i = close;
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_route_in_the_code_is_in_the_route_table() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crates folder")
        .to_path_buf();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&crates).expect("read crates/").flatten() {
        rust_files(&entry.path().join("src"), &mut files);
    }
    files.sort();
    let mut registered = RouteSet::new();
    for file in &files {
        let src = std::fs::read_to_string(file).expect("read a source file");
        // `.fallback(` answers what matches no route (404), so it adds nothing to the table.
        for other in [".nest(", ".nest_service(", ".route_service("] {
            assert!(
                !src.contains(other),
                "{}: {other} registers routes this scan does not read",
                file.display()
            );
        }
        for (method, path) in routes_in(&src) {
            assert!(
                registered.insert((method.clone(), path.clone())),
                "{method} {path} is registered twice"
            );
        }
    }
    assert!(
        registered.len() > 20,
        "the scan found too few routes ({}) in {} files under {}",
        registered.len(),
        files.len(),
        crates.display()
    );
    let table: RouteSet = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    assert_eq!(table.len(), ROUTES.len(), "the route table has duplicates");
    let unlisted: RouteSet = registered.difference(&table).cloned().collect();
    let unregistered: RouteSet = table.difference(&registered).cloned().collect();
    assert!(
        unlisted.is_empty() && unregistered.is_empty(),
        "the code and the route table differ\nregistered in the code, not in the table:\n{}\n\
         in the table, not registered in the code:\n{}",
        show(&unlisted),
        show(&unregistered)
    );
}

#[test]
fn the_route_scan_reads_the_forms_the_code_uses() {
    let src = r##"
        Router::new()
            .route("/a", get(a).post(b))
            .route(
                "/b/{id}",
                axum::routing::put(c),
            )
            .route("/c", get(|| async { page("x(") }).delete(d)) // .route("/ignored", get(x))
            /* .route("/ignored-too", get(x)) */
            .route(r#"/d"#, routing::put(e).with_state(s));
        let c = '(';
    "##;
    assert_eq!(
        routes_in(src),
        vec![
            ("GET".to_owned(), "/a".to_owned()),
            ("POST".to_owned(), "/a".to_owned()),
            ("PUT".to_owned(), "/b/{id}".to_owned()),
            ("GET".to_owned(), "/c".to_owned()),
            ("DELETE".to_owned(), "/c".to_owned()),
            ("PUT".to_owned(), "/d".to_owned()),
        ]
    );
}
