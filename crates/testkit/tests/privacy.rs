//! The GDPR rights through the API, and erasure that really erases: the canary test (case
//! C25), the restore test and the re-identification test from the privacy issue.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use examplebank_testkit::{Backend, TestApp};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Arc, Mutex};

// ---------- log capture ----------

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    /// Captures this process's log as JSON lines, as `serve` writes it.
    fn install() -> Self {
        let buffer = LogBuffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .json()
            .with_env_filter("info")
            .with_current_span(true)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("the log capture must be the only subscriber (run with nextest)");
        buffer
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

// ---------- helpers ----------

struct Canary {
    username: String,
    password: String,
    given: String,
    family: String,
    email: String,
    merchant: String,
}

impl Canary {
    fn new() -> Self {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        Self {
            username: format!("canaryuser{tag}"),
            password: format!("canary-password-{tag}"),
            given: format!("Canarygiven{tag}"),
            family: format!("Canaryfamily{tag}"),
            email: format!("canarymail{tag}@example.org"),
            merchant: format!("CanaryMerchant{tag}"),
        }
    }

    fn needles(&self) -> [&str; 6] {
        [
            &self.username,
            &self.password,
            &self.given,
            &self.family,
            &self.email,
            &self.merchant,
        ]
    }

    fn assert_absent(&self, haystack: &[u8], what: &str) {
        let text = String::from_utf8_lossy(haystack).to_lowercase();
        for needle in self.needles() {
            assert!(
                !text.contains(&needle.to_lowercase()),
                "{what} contains {needle:?} in readable form"
            );
        }
    }
}

/// Signs up and registers the canary person with consent to every purpose, and makes charges.
async fn canary_person(app: &TestApp, canary: &Canary) -> (String, String) {
    let body = json!({
        "username": canary.username, "password": canary.password, "givenName": canary.given,
        "familyName": canary.family, "email": canary.email,
    });
    let signup = app
        .call(Method::POST, "/identity/v1/signup", None, Some(body))
        .await
        .expect(StatusCode::CREATED)
        .json();
    let tokens = app.login(&canary.username, &canary.password).await;
    let token = tokens.access.clone();
    app.call(
        Method::POST,
        "/bank/v1/users",
        Some(&token),
        Some(json!({"consentGiven": true})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    for purpose in ["analytics", "profiling"] {
        app.call(
            Method::PUT,
            &format!("/bank/v1/users/self/consents/{purpose}"),
            Some(&token),
            Some(json!({"granted": true})),
        )
        .await
        .expect(StatusCode::OK);
    }
    for amount in ["12.34", "56.78", "999.99"] {
        app.charge(&token, &canary.merchant, "dining", json!(amount))
            .await
            .expect(StatusCode::NO_CONTENT);
    }
    app.drain_rewards().await;
    (signup["userId"].as_str().unwrap().to_owned(), token)
}

fn sqlite_files(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    all
}

async fn sqlite_backup(app: &TestApp, target: &std::path::Path) {
    use sqlx::{Connection, Executor};
    let source = app.dir.path().join("test.sqlite");
    let mut conn =
        sqlx::sqlite::SqliteConnection::connect(&format!("sqlite://{}", source.display()))
            .await
            .unwrap();
    conn.execute(format!("VACUUM INTO '{}'", target.display()).as_str())
        .await
        .unwrap();
    conn.close().await.unwrap();
}

fn pg_dump(url: &str) -> Vec<u8> {
    let output = std::process::Command::new("pg_dump")
        .args(["--no-owner", "--dbname", url])
        .output()
        .expect("pg_dump");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

async fn expect_login_refused(app: &TestApp, canary: &Canary) {
    let verifier = crypto::secrets::random_token();
    let response = app
        .authorize(&canary.username, &canary.password, &verifier, "s")
        .await;
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        response.text()
    );
}

// ---------- canary and restore (C25) ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c25_canary_sqlite_backup_live_files_and_log_hold_no_personal_data() {
    let log = LogBuffer::install();
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let canary = Canary::new();
    let (id, token) = canary_person(&app, &canary).await;
    // The person can read their own data back, so it is there, sealed.
    let profile = app
        .get("/bank/v1/users/self", &token)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(profile["email"], canary.email.as_str());
    let backup_dir = tempfile::tempdir().unwrap();
    let backup = backup_dir.path().join("backup.sqlite");
    sqlite_backup(&app, &backup).await;
    canary.assert_absent(&std::fs::read(&backup).unwrap(), "the pre-erasure backup");

    app.call(Method::DELETE, "/bank/v1/users/self", Some(&token), None)
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(app.run_erasure().await, 1);
    app.get("/bank/v1/users/self", &token)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    expect_login_refused(&app, &canary).await;
    canary.assert_absent(&sqlite_files(app.dir.path()), "the live database files");
    // Nothing about the person is left in any table, and the key is gone.
    assert!(app.store().account(&id).await.unwrap().is_none());
    assert!(app.store().bank_user(&id).await.unwrap().is_none());
    assert!(app
        .store()
        .list_transactions(&id, None, 100)
        .await
        .unwrap()
        .is_empty());
    assert!(app.services.vault.person_key(&id).unwrap().is_none());

    // Restore the pre-erasure copy (without keys/) and start again: the person stays erased.
    let restored = app.reopen_sqlite(&backup).await;
    assert!(
        restored.store().account(&id).await.unwrap().is_some(),
        "the backup holds the account"
    );
    let purged = restored
        .services
        .erasure_worker()
        .reapply_journal()
        .await
        .unwrap();
    assert_eq!(purged, 1);
    expect_login_refused(&restored, &canary).await;
    assert!(restored.store().account(&id).await.unwrap().is_none());
    assert!(restored
        .store()
        .list_transactions(&id, None, 100)
        .await
        .unwrap()
        .is_empty());

    let text = log.text();
    assert!(text.contains("request finished"), "the log capture works");
    canary.assert_absent(text.as_bytes(), "the application log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c25_canary_postgres_dump_live_database_and_log_hold_no_personal_data() {
    let log = LogBuffer::install();
    let Some(app) = TestApp::new(Backend::Postgres).await else {
        return;
    };
    let url = app.database_url().unwrap().to_owned();
    let canary = Canary::new();
    let (id, token) = canary_person(&app, &canary).await;
    let before = pg_dump(&url);
    canary.assert_absent(&before, "the pre-erasure pg_dump");

    app.call(
        Method::POST,
        "/bank/v1/users/self/erasure",
        Some(&token),
        None,
    )
    .await
    .expect(StatusCode::ACCEPTED);
    assert_eq!(app.run_erasure().await, 1);
    app.get("/bank/v1/users/self", &token)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    let after = pg_dump(&url);
    canary.assert_absent(&after, "the live database");
    assert!(
        only_in_tables(&after, &id, &["privacy_requests", "audit_log"]),
        "the pseudonym survives only in the request record and the audit log"
    );

    // Restore the pre-erasure dump over the live database and start again.
    restore_dump(&url, &before);
    let restored = app.reopen_postgres().await;
    assert!(
        restored.store().account(&id).await.unwrap().is_some(),
        "the dump holds the account"
    );
    assert_eq!(
        restored
            .services
            .erasure_worker()
            .reapply_journal()
            .await
            .unwrap(),
        1
    );
    expect_login_refused(&restored, &canary).await;
    assert!(restored.store().account(&id).await.unwrap().is_none());
    assert!(restored.services.vault.person_key(&id).unwrap().is_none());

    let text = log.text();
    assert!(text.contains("request finished"));
    canary.assert_absent(text.as_bytes(), "the application log");
}

/// The erased person's random pseudonym may remain only in these tables: the completed
/// request and the append-only audit log. Everything else about them is gone.
fn only_in_tables(dump: &[u8], id: &str, allowed: &[&str]) -> bool {
    let mut table = String::new();
    for line in String::from_utf8_lossy(dump).lines() {
        if let Some(rest) = line.strip_prefix("COPY public.") {
            table = rest.split_whitespace().next().unwrap_or("").to_owned();
        }
        if line.contains(id) && !allowed.contains(&table.as_str()) {
            return false;
        }
    }
    true
}

fn restore_dump(url: &str, dump: &[u8]) {
    let run = |args: &[&str], input: Option<&[u8]>| {
        let mut child = std::process::Command::new("psql")
            .args(["--quiet", "--set", "ON_ERROR_STOP=1", "--dbname", url])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("psql");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.unwrap_or_default())
            .unwrap();
        assert!(child.wait().unwrap().success());
    };
    run(
        &[
            "--command",
            "DROP SCHEMA public CASCADE; CREATE SCHEMA public;",
        ],
        None,
    );
    run(&[], Some(dump));
}

// ---------- consent ----------

async fn consent_receipts_verify_against_the_jwks(app: TestApp) {
    let person = app.person().await;
    let body = app
        .call(
            Method::PUT,
            "/bank/v1/users/self/consents/analytics",
            Some(person.token()),
            Some(json!({"granted": true})),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    let receipt = body["receipt"].as_str().unwrap();
    let jwks = app
        .call(Method::GET, "/identity/v1/jwks", None, None)
        .await
        .expect(StatusCode::OK)
        .json();
    // Receipts have no audience or expiry: check the signature against the JWKS key directly.
    let parts: Vec<&str> = receipt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let payload: Value = serde_json::from_slice(&crypto::b64::decode(parts[1]).unwrap()).unwrap();
    assert_eq!(payload["purpose"], "analytics");
    assert_eq!(payload["granted"], true);
    assert_eq!(payload["sub"], person.id.as_str());
    assert!(payload["policyHash"].as_str().unwrap().len() == 64);
    let header: Value = serde_json::from_slice(&crypto::b64::decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("kid in JWKS");
    let public = crypto::b64::decode(key["x"].as_str().unwrap()).unwrap();
    let public = ed25519_dalek::VerifyingKey::from_bytes(&public.try_into().unwrap()).unwrap();
    let signature =
        ed25519_dalek::Signature::from_slice(&crypto::b64::decode(parts[2]).unwrap()).unwrap();
    public
        .verify_strict(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("valid signature");
}

async fn consent_history_is_append_only_and_withdrawal_applies_to_the_next_request(app: TestApp) {
    let person = app.person().await;
    let token = person.token();
    app.charge(token, "Cafe", "coffee", json!("3.50"))
        .await
        .expect(StatusCode::NO_CONTENT);
    app.set_consent(token, "rewards", false)
        .await
        .expect(StatusCode::OK);
    let refused = app
        .charge(token, "Cafe", "coffee", json!("3.50"))
        .await
        .expect_problem(StatusCode::CONFLICT);
    assert!(refused["detail"].as_str().unwrap().contains("consent"));
    app.set_consent(token, "rewards", true)
        .await
        .expect(StatusCode::OK);
    app.charge(token, "Cafe", "coffee", json!("3.50"))
        .await
        .expect(StatusCode::NO_CONTENT);
    let consents = app
        .get("/bank/v1/users/self/consents", token)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        consents["current"],
        json!({"rewards": true, "analytics": false, "profiling": false})
    );
    let history = consents["history"].as_array().unwrap();
    // Three registration events, then the withdrawal and the new grant.
    assert_eq!(history.len(), 5);
    let last_two: Vec<(&str, bool)> = history[3..]
        .iter()
        .map(|e| {
            (
                e["purpose"].as_str().unwrap(),
                e["granted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(last_two, vec![("rewards", false), ("rewards", true)]);
    for event in history {
        for field in ["policyVersion", "policyHash", "method", "at"] {
            assert!(event[field].is_string(), "{field} in {event}");
        }
    }
    app.set_consent(token, "marketing", true)
        .await
        .expect_problem(StatusCode::NOT_FOUND);
}

// ---------- export, rectification, requests ----------

async fn export_holds_everything_about_the_caller_and_nothing_else(app: TestApp) {
    let other = app.person().await;
    app.charge(
        other.token(),
        "Someone Else Shop",
        "shopping",
        json!("9.99"),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let person = app.person().await;
    let token = person.token();
    app.charge(token, "Bakery", "groceries", json!("10.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
    app.drain_rewards().await;
    app.call(
        Method::PUT,
        "/bank/v1/users/self",
        Some(token),
        Some(json!({"givenName": "Renamed"})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let response = app
        .get("/bank/v1/users/self/export", token)
        .await
        .expect(StatusCode::OK);
    assert!(response
        .header("content-disposition")
        .unwrap()
        .contains("attachment"));
    let export = response.json();
    assert_eq!(export["schema"], "examplebank-export/1");
    assert_eq!(export["profile"]["userId"], person.id.as_str());
    assert_eq!(export["profile"]["username"], person.username.as_str());
    assert_eq!(export["profile"]["givenName"], "Renamed");
    assert_eq!(export["transactions"].as_array().unwrap().len(), 1);
    assert_eq!(export["transactions"][0]["transactionName"], "Bakery");
    assert_eq!(export["points"]["earned"], 20);
    assert_eq!(export["pointsLedger"][0]["delta"], 20);
    assert!(export["consentHistory"].as_array().unwrap().len() >= 3);
    let kinds: Vec<&str> = export["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"export"), "{kinds:?}");
    assert!(!response_text_contains(&export, "Someone Else Shop"));
    assert!(!response_text_contains(&export, &other.id));
}

fn response_text_contains(value: &Value, needle: &str) -> bool {
    value.to_string().contains(needle)
}

async fn requests_are_recorded_with_due_dates_and_admins_see_the_queue(app: TestApp) {
    let person = app.person().await;
    let token = person.token();
    app.get("/bank/v1/users/self/export", token)
        .await
        .expect(StatusCode::OK);
    app.call(
        Method::PUT,
        "/bank/v1/users/self/restriction",
        Some(token),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.call(
        Method::DELETE,
        "/bank/v1/users/self/restriction",
        Some(token),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.call(
        Method::PUT,
        "/bank/v1/users/self/objection",
        Some(token),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let receipt = app
        .call(
            Method::POST,
            "/bank/v1/users/self/erasure",
            Some(token),
            None,
        )
        .await
        .expect(StatusCode::ACCEPTED)
        .json();
    assert!(receipt["receipt"].as_str().unwrap().split('.').count() == 3);
    let requests = app
        .get("/bank/v1/users/self/requests", token)
        .await
        .expect(StatusCode::OK)
        .json();
    let kinds: Vec<&str> = requests
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "export",
            "restriction",
            "restriction-lifted",
            "objection",
            "erasure"
        ]
    );
    for request in requests.as_array().unwrap() {
        assert!(request["receivedAt"].is_string() && request["dueAt"].is_string());
    }
    assert_eq!(requests[4]["status"], "pending");
    assert_eq!(requests[0]["status"], "completed");
    // A second erasure request returns the pending one.
    let again = app
        .call(
            Method::POST,
            "/bank/v1/users/self/erasure",
            Some(token),
            None,
        )
        .await
        .expect(StatusCode::ACCEPTED)
        .json();
    assert_eq!(again["requestId"], receipt["requestId"]);
    assert_eq!(again["alreadyPending"], true);

    app.get("/admin/v1/requests", token)
        .await
        .expect_problem(StatusCode::FORBIDDEN);
    app.clock.advance_secs(31 * 24 * 3600);
    let admin = app.admin_token().await;
    let queue = app
        .get("/admin/v1/requests", &admin)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(queue[0]["kind"], "erasure");
    assert_eq!(
        queue[0]["overdue"], true,
        "an overdue request comes first: {queue}"
    );
}

// ---------- restriction and objection ----------

async fn restriction_refuses_charges_pauses_rewards_and_leaves_analytics(app: TestApp) {
    let person = app.person().await;
    let token = person.token();
    app.set_consent(token, "analytics", true)
        .await
        .expect(StatusCode::OK);
    app.charge(token, "Fuel stop", "fuel", json!("40.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
    app.call(
        Method::PUT,
        "/bank/v1/users/self/restriction",
        Some(token),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let refused = app
        .charge(token, "Fuel stop", "fuel", json!("40.00"))
        .await
        .expect_problem(StatusCode::CONFLICT);
    assert!(refused["detail"].as_str().unwrap().contains("restricted"));
    app.drain_rewards().await;
    let list = app
        .get("/bank/v1/transactions", token)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        list[0]["processed"], false,
        "rewards pause while restricted"
    );
    // The restriction binds administrators too, on the single route as on the batch route.
    let admin = app.admin_token().await;
    let id = list[0]["transactionId"].as_str().unwrap().to_owned();
    let held = app
        .call(
            Method::PUT,
            &format!("/bank/v1/transactions/reward/{id}"),
            Some(&admin),
            Some(json!({ "pointsEarned": 80 })),
        )
        .await
        .expect_problem(StatusCode::CONFLICT);
    assert!(
        held["type"].as_str().unwrap().ends_with("restricted"),
        "{held}"
    );
    let batch = app
        .call(
            Method::POST,
            "/bank/v1/transactions/rewards",
            Some(&admin),
            Some(json!({ "rewards": [{ "transactionId": id, "pointsEarned": 80 }] })),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(batch["restricted"], json!([id]));
    let cells = |app: &TestApp| {
        let store = app.store().clone();
        async move { store.analytics_cells().await.unwrap() }
    };
    assert!(
        cells(&app).await.is_empty(),
        "restricted data is left out of analytics"
    );
    let profile = app
        .get("/bank/v1/users/self", token)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(profile["restricted"], true);

    app.call(
        Method::DELETE,
        "/bank/v1/users/self/restriction",
        Some(token),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.clock.advance_secs(6);
    app.drain_rewards().await;
    let list = app
        .get("/bank/v1/transactions", token)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        list[0]["processed"], true,
        "rewards resume when the restriction is lifted"
    );
    assert_eq!(list[0]["pointsEarned"], 120);
    assert_eq!(cells(&app).await.len(), 1);
}

async fn profiling_needs_consent_and_stops_on_objection(app: TestApp) {
    let person = app.person().await;
    let token = person.token();
    app.charge(token, "Grocer", "groceries", json!("20.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
    app.charge(token, "Grocer", "groceries", json!("30.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
    let refused = app
        .get("/bank/v1/users/self/insights", token)
        .await
        .expect_problem(StatusCode::CONFLICT);
    assert!(refused["detail"]
        .as_str()
        .unwrap()
        .contains("not consented to profiling"));
    app.set_consent(token, "profiling", true)
        .await
        .expect(StatusCode::OK);
    let insights = app
        .get("/bank/v1/users/self/insights", token)
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(insights["basedOnTransactions"], 2);
    let average = insights["insights"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "average-charge")
        .unwrap();
    assert_eq!(average["amount"], "25.00");
    app.call(
        Method::PUT,
        "/bank/v1/users/self/objection",
        Some(token),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let refused = app
        .get("/bank/v1/users/self/insights", token)
        .await
        .expect_problem(StatusCode::CONFLICT);
    assert!(refused["detail"].as_str().unwrap().contains("objected"));
    app.call(
        Method::DELETE,
        "/bank/v1/users/self/objection",
        Some(token),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.get("/bank/v1/users/self/insights", token)
        .await
        .expect(StatusCode::OK);
}

// ---------- analytics and re-identification ----------

/// `n` people who consented to analytics, each with one groceries charge of `amount`.
async fn consenting_shoppers(
    app: &TestApp,
    n: usize,
    merchant: &str,
    amount: &str,
) -> Vec<examplebank_testkit::Person> {
    let mut people = Vec::new();
    for _ in 0..n {
        let person = app.person().await;
        app.set_consent(person.token(), "analytics", true)
            .await
            .expect(StatusCode::OK);
        app.charge(person.token(), merchant, "groceries", json!(amount))
            .await
            .expect(StatusCode::NO_CONTENT);
        people.push(person);
    }
    people
}

async fn analytics_show_only_cells_with_at_least_k_people(app: TestApp) {
    let admin = app.admin_token().await;
    let people = consenting_shoppers(&app, 5, "Supermarket", "25.00").await;
    // Four of them also buy fuel: a cell of four people must not be shown.
    for person in &people[..4] {
        app.charge(person.token(), "Fuel", "fuel", json!("60.00"))
            .await
            .expect(StatusCode::NO_CONTENT);
    }
    // Someone without analytics consent is never counted.
    let silent = app.person().await;
    app.charge(silent.token(), "Fuel", "fuel", json!("60.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
    let body = app
        .get("/admin/v1/analytics", &admin)
        .await
        .expect(StatusCode::OK)
        .json();
    let cells = body["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 1, "{body}");
    assert_eq!(cells[0]["category"], "groceries");
    assert_eq!(cells[0]["contributors"], 5);
    assert_eq!(cells[0]["bands"], json!([0, 5, 0, 0, 0]));
    assert_eq!(body["suppressedCells"], 1);
    app.get("/admin/v1/analytics", people[0].token())
        .await
        .expect_problem(StatusCode::FORBIDDEN);
}

async fn an_erased_persons_distinctive_charge_is_never_revealed(app: TestApp) {
    let admin = app.admin_token().await;
    let people = consenting_shoppers(&app, 5, "Market", "20.00").await;
    // One of them makes a distinctive charge, then leaves.
    let leaver = &people[0];
    app.charge(
        leaver.token(),
        "Rare Jeweller",
        "shopping",
        json!("49999.00"),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.call(
        Method::DELETE,
        "/bank/v1/users/self",
        Some(leaver.token()),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert_eq!(app.run_erasure().await, 1);
    let body = app
        .get("/admin/v1/analytics", &admin)
        .await
        .expect(StatusCode::OK)
        .json();
    for cell in body["cells"].as_array().unwrap() {
        assert!(cell["contributors"].as_i64().unwrap() >= 5, "{cell}");
        assert_ne!(
            cell["category"], "shopping",
            "the lone shopping charge must stay hidden"
        );
    }
    // The groceries cell still counts five people: four live, one through anonymous facts.
    let groceries = body["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["category"] == "groceries")
        .unwrap();
    assert_eq!(groceries["contributors"], 5);
    assert!(!body.to_string().contains("Rare Jeweller") && !body.to_string().contains("49999"));
}

async fn erasure_replaces_transactions_with_anonymous_facts(app: TestApp) {
    let person = app.person().await;
    app.charge(person.token(), "Shop", "shopping", json!("75.00"))
        .await
        .expect(StatusCode::NO_CONTENT);
    let id = app
        .get("/bank/v1/transactions", person.token())
        .await
        .json()[0]["transactionId"]
        .as_str()
        .unwrap()
        .to_owned();
    app.call(
        Method::DELETE,
        "/bank/v1/users/self",
        Some(person.token()),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.run_erasure().await;
    assert!(
        app.store().transaction(&id).await.unwrap().is_none(),
        "the original is deleted"
    );
    let cells = app.store().analytics_cells().await.unwrap();
    assert_eq!(cells.len(), 1);
    assert_eq!(cells[0].category, "shopping");
    assert_eq!(cells[0].contributors, 1);
    assert_eq!(cells[0].bands, [0, 0, 1, 0, 0]);
    assert!(cells[0].month.len() == 7);
}

async fn idle_accounts_are_erased_by_retention(app: TestApp) {
    let person = app.person().await;
    app.clock.advance_secs(731 * 24 * 3600);
    let fresh = app.person().await;
    assert_eq!(app.run_erasure().await, 1);
    app.get("/bank/v1/users/self", person.token())
        .await
        .expect(StatusCode::UNAUTHORIZED);
    app.get("/bank/v1/users/self", fresh.token())
        .await
        .expect(StatusCode::OK);
}

examplebank_testkit::both_backends!(
    consent_receipts_verify_against_the_jwks,
    consent_history_is_append_only_and_withdrawal_applies_to_the_next_request,
    export_holds_everything_about_the_caller_and_nothing_else,
    requests_are_recorded_with_due_dates_and_admins_see_the_queue,
    restriction_refuses_charges_pauses_rewards_and_leaves_analytics,
    profiling_needs_consent_and_stops_on_objection,
    analytics_show_only_cells_with_at_least_k_people,
    an_erased_persons_distinctive_charge_is_never_revealed,
    erasure_replaces_transactions_with_anonymous_facts,
    idle_accounts_are_erased_by_retention,
);

/// `examplebank keys rotate` runs as another process beside the server: the running server
/// keeps reading old keys, wraps new ones under the new master, and a restart reads both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotation_while_the_server_runs_keeps_every_person_readable() {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    let before = app.person().await;
    let keys_dir = app.keys_dir();
    let (other_process, _) = crypto::keystore::KeyStore::open(&keys_dir, None, false).unwrap();
    let new_master = crypto::envelope::MasterKey::generate("m2");
    assert_eq!(other_process.rotate_master(&new_master).unwrap(), 1);
    let after = app.person().await;
    for person in [&before, &after] {
        let wrapped =
            std::fs::read(keys_dir.join("data").join(format!("{}.key", person.id))).unwrap();
        assert_eq!(crypto::envelope::wrapped_master_id(&wrapped).unwrap(), "m2");
        app.get("/bank/v1/users/self", person.token())
            .await
            .expect(StatusCode::OK);
    }
    // A restarted server (a fresh key store and vault) reads both.
    let restarted = app.reopen_sqlite(&app.dir.path().join("test.sqlite")).await;
    for person in [&before, &after] {
        let profile = restarted
            .get("/bank/v1/users/self", person.token())
            .await
            .expect(StatusCode::OK)
            .json();
        assert_eq!(profile["username"], person.username.as_str());
    }
}
