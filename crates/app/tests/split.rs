//! Split mode end to end (issue 6): every role as its own `examplebank serve --roles <role>`
//! process on one PostgreSQL database, two replicas of transactions, rewards and erasure, and
//! a small path router in front as the one entry point (what an ingress and the Kubernetes
//! Services do). The roles reach each other through the router with client-credentials
//! tokens. `examplebank demo` runs against the entry point; then:
//!
//! - consent withdrawal and restriction made at the users service stop charges at every
//!   transactions replica within the documented bound of one second;
//! - a W3C trace id sent with a charge reaches the users service's log;
//! - people cannot call the internal routes;
//! - an erasure leaves no row about the person in any role's tables;
//! - the retention pass ran once per period, not once per erasure replica.
//!
//! Needs PostgreSQL: with CI=true (or EXAMPLEBANK_TEST_REQUIRE_POSTGRES=1) a missing server
//! fails the test; otherwise it prints SKIPPED.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use common::pg::{http, new_person, with_db, TestDb};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::Row;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The bound docs/operations.md promises for consent and restriction across services.
const BOUND: Duration = Duration::from_secs(1);

/// Which role serves a path: the same split the ingress in deploy/kubernetes makes, plus the
/// internal routes the Services carry inside the cluster.
fn role_for(path: &str) -> &'static str {
    let starts = |p: &str| path.starts_with(p);
    if starts("/identity/")
        || starts("/.well-known/")
        || starts("/internal/v1/identity/")
        || starts("/admin/v1/accounts/")
        || path == "/admin/v1/audit"
    {
        "identity"
    } else if starts("/bank/v1/users")
        || starts("/internal/v1/users/")
        || path == "/admin/v1/requests"
    {
        "users"
    } else if starts("/bank/v1/") || starts("/admin/v1/") || starts("/internal/v1/transactions/") {
        "transactions"
    } else {
        "ui"
    }
}

/// The router's table: role → replica URLs, and a counter for round robin.
#[derive(Clone, Default)]
struct Backends {
    table: Arc<Mutex<HashMap<&'static str, Vec<String>>>>,
    next: Arc<AtomicUsize>,
    http: Option<reqwest::Client>,
}

impl Backends {
    fn add(&self, role: &'static str, url: &str) {
        self.table
            .lock()
            .unwrap()
            .entry(role)
            .or_default()
            .push(url.to_owned());
    }

    fn pick(&self, role: &str) -> Option<String> {
        let table = self.table.lock().unwrap();
        let replicas = table.get(role)?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        replicas.get(n % replicas.len()).cloned()
    }
}

/// A path under `/_svc/<role>/` goes to that role with the prefix removed: the roles' own
/// `*_URL` settings point there, as a Kubernetes Service name reaches only its role's pods.
/// So `/readyz`'s check of `<users_url>/healthz` really asks a users replica.
fn service_prefix(path_and_query: &str) -> Option<(&'static str, &str)> {
    let rest = path_and_query.strip_prefix("/_svc/")?;
    let (name, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    // The roles other roles call: what the *_URL settings name.
    let role = ["identity", "users", "transactions"]
        .into_iter()
        .find(|r| *r == name)?;
    Some((role, if tail.is_empty() { "/" } else { tail }))
}

async fn forward(State(backends): State<Backends>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let (role, path_and_query) =
        service_prefix(path_and_query).unwrap_or((role_for(parts.uri.path()), path_and_query));
    let Some(base) = backends.pick(role) else {
        return Response::builder()
            .status(502)
            .body(Body::from(format!("no {role} replica")))
            .unwrap();
    };
    let target = format!("{base}{path_and_query}");
    let body: Bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let mut outgoing = backends
        .http
        .as_ref()
        .unwrap()
        .request(parts.method.clone(), target)
        .body(body);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "content-length" | "connection") {
            outgoing = outgoing.header(name, value);
        }
    }
    match outgoing.send().await {
        Ok(answer) => {
            let mut response = Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                if !matches!(
                    name.as_str(),
                    "content-length" | "transfer-encoding" | "connection"
                ) {
                    response = response.header(name, value);
                }
            }
            let bytes = answer.bytes().await.unwrap_or_default();
            response.body(Body::from(bytes)).unwrap()
        }
        Err(err) => Response::builder()
            .status(502)
            .body(Body::from(format!("{role} unreachable: {err}")))
            .unwrap(),
    }
}

/// Starts the router on a free port; returns its URL.
async fn start_router(backends: Backends) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(forward).with_state(backends);
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    url
}

const SECRETS: [(&str, &str); 3] = [
    ("EXAMPLEBANK_REWARDS_CLIENT_SECRET", "split-rewards-secret"),
    (
        "EXAMPLEBANK_TRANSACTIONS_CLIENT_SECRET",
        "split-transactions-secret",
    ),
    ("EXAMPLEBANK_ERASURE_CLIENT_SECRET", "split-erasure-secret"),
];

/// The environment every process of the deployment shares.
fn shared_env(db: &TestDb, entry: &str, keys: &Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("EXAMPLEBANK_DATABASE_URL", db.url.clone()),
        ("EXAMPLEBANK_PUBLIC_BASE_URL", entry.to_owned()),
        ("EXAMPLEBANK_IDENTITY_URL", format!("{entry}/_svc/identity")),
        ("EXAMPLEBANK_USERS_URL", format!("{entry}/_svc/users")),
        (
            "EXAMPLEBANK_TRANSACTIONS_URL",
            format!("{entry}/_svc/transactions"),
        ),
        ("EXAMPLEBANK_KEYS_DIR", keys.display().to_string()),
        (
            "EXAMPLEBANK_MASTER_KEY",
            format!("m1:{}", crypto::b64::encode(&[7u8; 32])),
        ),
        ("EXAMPLEBANK_MIGRATE_ON_START", "false".into()),
        ("EXAMPLEBANK_ERASURE_INTERVAL_SECONDS", "1".into()),
        // The longest standing cache the settings allow: the one-second bound must hold with it.
        ("EXAMPLEBANK_STANDING_CACHE_MS", "900".into()),
        (
            "EXAMPLEBANK_RATE_LIMIT_PER_ADDRESS_PER_MINUTE",
            "1000000".into(),
        ),
        (
            "EXAMPLEBANK_RATE_LIMIT_PER_PERSON_PER_MINUTE",
            "1000000".into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.extend(
        SECRETS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    env
}

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Polls `check` every 200 ms until it is true or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn charge_body(i: usize) -> serde_json::Value {
    json!({
        "transactionName": format!("Split shop {i}"),
        "category": "groceries",
        "amount": format!("{}.25", 3 + i % 7),
    })
}

/// Sends charge number `i` straight to one transactions replica.
async fn charge(http: &reqwest::Client, url: &str, token: &str, i: usize) -> reqwest::Response {
    http.post(format!("{url}/bank/v1/transactions"))
        .bearer_auth(token)
        .json(&charge_body(i))
        .send()
        .await
        .unwrap()
}

/// After `change` (consent withdrawal or restriction) is acknowledged at the users service,
/// charges go to both transactions replicas in turn for 1.5 s. None may be accepted later
/// than the bound, and refusals must start within it.
async fn takes_effect_within_bound(
    http: &reqwest::Client,
    replicas: &[String],
    token: &str,
    change: reqwest::RequestBuilder,
    refusal: &str,
) {
    // Warm both replicas' standing caches, so the test measures the cache's bound.
    for (i, url) in replicas.iter().enumerate() {
        let r = charge(http, url, token, i).await;
        assert_eq!(
            r.status(),
            StatusCode::NO_CONTENT,
            "charge before the change"
        );
    }
    let answer = change.send().await.unwrap();
    assert!(
        answer.status().is_success(),
        "the change: {}",
        answer.status()
    );
    let acknowledged = Instant::now();
    let mut last_accepted = None;
    let mut first_refused = None;
    let mut i = 0;
    while acknowledged.elapsed() < BOUND + Duration::from_millis(500) {
        let url = &replicas[i % replicas.len()];
        let sent = acknowledged.elapsed();
        let r = charge(http, url, token, i).await;
        match r.status() {
            StatusCode::NO_CONTENT => last_accepted = Some(sent),
            StatusCode::CONFLICT => {
                let body: serde_json::Value = r.json().await.unwrap();
                assert!(body["type"].as_str().unwrap().ends_with(refusal), "{body}");
                first_refused.get_or_insert(sent);
            }
            other => panic!("unexpected {other} after the change"),
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_refused = first_refused.expect("charges were never refused");
    assert!(
        first_refused <= BOUND,
        "first refusal after {first_refused:?}"
    );
    if let Some(last) = last_accepted {
        assert!(
            last < BOUND,
            "a charge sent {last:?} after the change was accepted"
        );
    }
    println!("{refusal}: refused from {first_refused:?}, last accepted {last_accepted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_role_as_its_own_service_on_postgresql() {
    with_db("split", |db| async move { run_split(&db).await }).await;
}

async fn run_split(db: &TestDb) {
    let backends = Backends {
        http: Some(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        ),
        ..Backends::default()
    };
    let entry = start_router(backends.clone()).await;
    let root = tempfile::tempdir().unwrap();
    let keys = root.path().join("keys");
    let env = shared_env(db, &entry, &keys);

    let migrate = Command::new(common::BINARY)
        .arg("migrate")
        .envs(env_refs(&env))
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );

    let plan: [(&'static str, usize); 6] = [
        ("identity", 1),
        ("users", 1),
        ("transactions", 2),
        ("rewards", 2),
        ("erasure", 2),
        ("ui", 1),
    ];
    let mut servers = Vec::new();
    let mut replicas: HashMap<&str, Vec<String>> = HashMap::new();
    for (role, count) in plan {
        for n in 0..count {
            let dir = root.path().join(format!("{role}-{n}"));
            std::fs::create_dir_all(&dir).unwrap();
            let server = common::start(&dir, &["--roles", role], &env_refs(&env));
            backends.add(role, &server.url);
            replicas.entry(role).or_default().push(server.url.clone());
            servers.push((role, server));
        }
    }
    // Each process is ready only when what it calls answers.
    let http = http();
    for (role, server) in &servers {
        let ready: serde_json::Value = http
            .get(format!("{}/readyz", server.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(ready["status"], "ready", "{role}: {ready}");
        let needs: &[&str] = match *role {
            "transactions" => &["users", "identity"],
            "rewards" => &["transactions", "identity"],
            "erasure" => &["users", "transactions", "identity"],
            _ => &[],
        };
        for need in needs {
            assert_eq!(ready["dependencies"][need], "up", "{role}: {ready}");
        }
    }
    // And a process whose dependency does not answer is alive but not ready, naming it.
    {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let nowhere = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let mut lonely_env = env.clone();
        for (key, value) in &mut lonely_env {
            if key == "EXAMPLEBANK_USERS_URL" {
                value.clone_from(&nowhere);
            }
        }
        let dir = root.path().join("transactions-without-users");
        std::fs::create_dir_all(&dir).unwrap();
        let lonely = common::start(&dir, &["--roles", "transactions"], &env_refs(&lonely_env));
        let alive = http
            .get(format!("{}/healthz", lonely.url))
            .send()
            .await
            .unwrap();
        assert_eq!(alive.status(), StatusCode::OK);
        let ready = http
            .get(format!("{}/readyz", lonely.url))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ready.headers()["content-type"], "application/problem+json");
        let problem: serde_json::Value = ready.json().await.unwrap();
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("users"), "{problem}");
        assert!(!detail.contains("identity"), "identity answers: {problem}");
    }
    let dump_logs = || {
        for (role, server) in &servers {
            eprintln!(
                "--- {role} {} ---\n{}",
                server.url,
                common::tail(&server.log, 20)
            );
        }
    };

    // The whole product through the one entry point.
    let demo = tokio::task::spawn_blocking({
        let entry = entry.clone();
        move || {
            Command::new(common::BINARY)
                .args(["demo", "--url", &entry])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    if !demo.status.success() {
        dump_logs();
        panic!(
            "demo failed:\n{}\n{}",
            String::from_utf8_lossy(&demo.stdout),
            String::from_utf8_lossy(&demo.stderr)
        );
    }
    println!("{}", String::from_utf8_lossy(&demo.stdout));

    let tx = replicas["transactions"].clone();
    let (user_id, token) = new_person(&http, &entry, &entry, "split").await;

    // Consent withdrawal, then restriction, each reaching both transactions replicas.
    let withdraw = http
        .put(format!("{entry}/bank/v1/users/self/consents/rewards"))
        .bearer_auth(&token)
        .json(&json!({ "granted": false }));
    takes_effect_within_bound(&http, &tx, &token, withdraw, "no-consent").await;
    let regrant = http
        .put(format!("{entry}/bank/v1/users/self/consents/rewards"))
        .bearer_auth(&token)
        .json(&json!({ "granted": true }))
        .send()
        .await
        .unwrap();
    assert!(regrant.status().is_success());
    tokio::time::sleep(BOUND).await;
    let restrict = http
        .put(format!("{entry}/bank/v1/users/self/restriction"))
        .bearer_auth(&token);
    takes_effect_within_bound(&http, &tx, &token, restrict, "restricted").await;
    let lift = http
        .delete(format!("{entry}/bank/v1/users/self/restriction"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(lift.status().is_success());
    tokio::time::sleep(BOUND).await;

    // A trace id sent with a charge shows up in the users service's log (the standing call).
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let charged = http
        .post(format!("{entry}/bank/v1/transactions"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&charge_body(99))
        .send()
        .await
        .unwrap();
    assert_eq!(charged.status(), StatusCode::NO_CONTENT);
    let users_log = servers
        .iter()
        .find(|(role, _)| *role == "users")
        .map(|(_, s)| s.log.clone())
        .unwrap();
    eventually(Duration::from_secs(5), "trace id in the users log", || {
        let log = users_log.clone();
        let trace = trace.clone();
        async move {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(&trace)
        }
    })
    .await;

    // Points written by the rewards replicas through the transactions API.
    eventually(Duration::from_secs(20), "points visible", || {
        let request = http
            .get(format!("{entry}/bank/v1/points"))
            .bearer_auth(&token);
        async move {
            let body: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
            body["earned"].as_i64().unwrap_or(0) > 0
        }
    })
    .await;

    // Exactly once, with two rewards replicas: once every charge of the person is processed,
    // each has one ledger entry, with the points its amount and category's rule give, and the
    // balance over the API is their sum.
    let mut conn = db.connect().await;
    let started = Instant::now();
    loop {
        let pending: i64 =
            sqlx::query("SELECT COUNT(*) FROM transactions WHERE user_id = $1 AND processed = 0")
                .bind(&user_id)
                .fetch_one(&mut conn)
                .await
                .unwrap()
                .get(0);
        if pending == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{pending} charges still unrewarded after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let check = sqlx::query(
        "SELECT COUNT(*) AS charges, \
           CAST(COALESCE(SUM(t.amount_minor * COALESCE(r.points_per_unit, 1) / 100), 0) AS BIGINT) AS expected, \
           CAST(COALESCE(SUM(t.points_earned), 0) AS BIGINT) AS written, \
           (SELECT COUNT(*) FROM points_ledger l WHERE l.user_id = $1 AND l.kind = 'earned') AS entries, \
           (SELECT COUNT(DISTINCT l.reference) FROM points_ledger l WHERE l.user_id = $1 AND l.kind = 'earned') AS distinct_entries \
         FROM transactions t LEFT JOIN reward_rules r ON r.category = t.category WHERE t.user_id = $1",
    )
    .bind(&user_id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let charges: i64 = check.get("charges");
    let expected: i64 = check.get("expected");
    assert!(charges > 2, "{charges} charges");
    assert_eq!(check.get::<i64, _>("written"), expected);
    assert_eq!(
        check.get::<i64, _>("entries"),
        charges,
        "one ledger entry per charge"
    );
    assert_eq!(check.get::<i64, _>("distinct_entries"), charges);
    let points: serde_json::Value = http
        .get(format!("{entry}/bank/v1/points"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(points["earned"].as_i64(), Some(expected), "{points}");

    // People cannot use the internal routes, whatever they try.
    for (method, path) in [
        ("GET", format!("/internal/v1/users/{user_id}/standing")),
        ("DELETE", format!("/internal/v1/users/{user_id}")),
        (
            "DELETE",
            format!("/internal/v1/transactions/people/{user_id}"),
        ),
        (
            "DELETE",
            format!("/internal/v1/identity/accounts/{user_id}"),
        ),
    ] {
        let r = http
            .request(method.parse().unwrap(), format!("{entry}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }

    // Erasure: every role forgets its part.
    let erase = http
        .delete(format!("{entry}/bank/v1/users/self"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(erase.status(), StatusCode::NO_CONTENT);
    let started = Instant::now();
    loop {
        let mut left = 0i64;
        for sql in [
            "SELECT COUNT(*) FROM accounts WHERE id = $1",
            "SELECT COUNT(*) FROM bank_users WHERE id = $1",
            "SELECT COUNT(*) FROM consent_events WHERE user_id = $1",
            "SELECT COUNT(*) FROM transactions WHERE user_id = $1",
            "SELECT COUNT(*) FROM points_ledger WHERE user_id = $1",
            "SELECT COUNT(*) FROM privacy_requests WHERE user_id = $1 AND status = 'pending'",
        ] {
            let row = sqlx::query(sql)
                .bind(&user_id)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            left += row.get::<i64, _>(0);
        }
        if left == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            dump_logs();
            panic!("{left} rows about the erased person after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!keys.join("data").join(format!("{user_id}.key")).exists());
    let gone = http
        .get(format!("{entry}/bank/v1/users/self"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::UNAUTHORIZED);

    // Two erasure replicas ran for several seconds; each period's retention ran once.
    let rows = sqlx::query(
        "SELECT period, COUNT(*) AS n FROM scheduled_runs WHERE job = 'retention' GROUP BY period",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(rows.len() >= 2, "retention ran in {} periods", rows.len());
    // What the replicas actually ran, from their logs: no period's pass ran twice.
    let mut passes: Vec<i64> = servers
        .iter()
        .filter(|(role, _)| *role == "erasure")
        .flat_map(|(_, s)| {
            std::fs::read_to_string(&s.log)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter(|l| l["message"] == "retention pass")
                .filter_map(|l| l["period"].as_i64())
                .collect::<Vec<_>>()
        })
        .collect();
    let logged = passes.len();
    passes.sort_unstable();
    passes.dedup();
    assert!(logged >= 2, "{logged} retention passes logged");
    assert_eq!(
        passes.len(),
        logged,
        "a period's retention pass ran in more than one erasure replica"
    );
    let holders: i64 = sqlx::query("SELECT COUNT(DISTINCT holder) AS n FROM scheduled_runs")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get("n");
    println!(
        "retention periods: {}, run by {holders} replica(s)",
        rows.len()
    );
    drop(servers);
}
