//! The audit log: what is recorded, that it holds pseudonyms only, that the chain and its
//! signed checkpoints reveal altered, missing, reordered and cut-off entries, and that the
//! application's PostgreSQL roles cannot change it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use examplebank_testkit::{Backend, TestApp};
use http::{Method, StatusCode};
use serde_json::json;
use sqlx::{Connection, Executor};

async fn raw(app: &TestApp, sql: &str) -> Result<(), sqlx::Error> {
    match app.backend {
        Backend::Sqlite => {
            let path = app.dir.path().join("test.sqlite");
            let mut conn =
                sqlx::sqlite::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                    .await?;
            conn.execute(sql).await.map(|_| ())
        }
        Backend::Postgres => {
            let mut conn =
                sqlx::postgres::PgConnection::connect(app.database_url().unwrap()).await?;
            conn.execute(sql).await.map(|_| ())
        }
    }
}

async fn verify(app: &TestApp) -> audit::VerifyReport {
    let log = &app.services.audit;
    audit::verify(app.store(), &log.verifier(), log.checkpoint_file())
        .await
        .unwrap()
}

/// Makes a person do a little of everything, so the log has entries of every kind.
async fn busy_day(app: &TestApp) -> examplebank_testkit::Person {
    let person = app.person().await;
    let token = person.token();
    app.set_consent(token, "analytics", true)
        .await
        .expect(StatusCode::OK);
    app.charge(token, "Cafe", "coffee", json!("4.20"))
        .await
        .expect(StatusCode::NO_CONTENT);
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
    app.refresh(&person.tokens.refresh)
        .await
        .expect(StatusCode::OK);
    // An authorisation refusal and a failed login.
    app.call(
        Method::PUT,
        "/bank/v1/transactions/reward/x",
        Some(token),
        Some(json!({"pointsEarned": 1})),
    )
    .await
    .expect(StatusCode::FORBIDDEN);
    let verifier = crypto::secrets::random_token();
    app.authorize(&person.username, "wrong password!", &verifier, "s")
        .await
        .expect(StatusCode::UNAUTHORIZED);
    person
}

async fn security_and_privacy_events_are_recorded_with_pseudonyms_only(app: TestApp) {
    let person = busy_day(&app).await;
    let admin = app.admin_token().await;
    app.call(
        Method::PUT,
        "/admin/v1/reward-rules/fuel",
        Some(&admin),
        Some(json!({"pointsPerUnit": 4})),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.call(
        Method::DELETE,
        "/bank/v1/users/self",
        Some(person.token()),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    app.run_erasure().await;
    let entries = app.store().audit_entries(0, 1000).await.unwrap();
    let actions: Vec<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    for expected in [
        "account.created",
        "login.succeeded",
        "login.failed",
        "token.issued",
        "token.refreshed",
        "user.registered",
        "consent.changed",
        "data.exported",
        "restriction.recorded",
        "restriction-lifted.recorded",
        "objection.recorded",
        "authorization.refused",
        "reward-rule.changed",
        "erasure.requested",
        "erasure.completed",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} missing from {actions:?}"
        );
    }
    let me = format!("user:{}", person.id);
    let failed = entries.iter().find(|e| e.action == "login.failed").unwrap();
    assert_eq!(
        failed.target, me,
        "a failed login names the pseudonymous account"
    );
    for entry in &entries {
        let text = format!(
            "{} {} {} {}",
            entry.actor, entry.action, entry.target, entry.outcome
        );
        assert!(!text.contains(&person.username), "username in {text}");
        assert!(
            !text.contains("@example.org") && !text.contains("Test") && !text.contains("Person"),
            "personal data in {text}"
        );
        assert!(!entry.request_id.is_empty());
    }
    assert!(
        entries.iter().any(|e| e.request_id != "-"),
        "entries from requests carry the request id"
    );
    let report = verify(&app).await;
    assert!(report.ok(), "{:?}", report.problem);
    assert_eq!(report.entries, entries.len() as i64);
}

async fn export_includes_the_audit_entries_about_the_person(app: TestApp) {
    let person = busy_day(&app).await;
    app.call(
        Method::DELETE,
        "/bank/v1/users/self/objection",
        Some(person.token()),
        None,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let tokens = app.login(&person.username, &person.password).await;
    let export = app
        .get("/bank/v1/users/self/export", &tokens.access)
        .await
        .expect(StatusCode::OK)
        .json();
    let actions: Vec<&str> = export["auditEntries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"consent.changed") && actions.contains(&"data.exported"),
        "{actions:?}"
    );
    let me = format!("user:{}", person.id);
    for entry in export["auditEntries"].as_array().unwrap() {
        assert!(
            entry["actor"] == me.as_str() || entry["target"] == me.as_str(),
            "{entry}"
        );
    }
}

async fn the_audit_log_refuses_updates(app: TestApp) {
    busy_day(&app).await;
    let err = raw(&app, "UPDATE audit_log SET outcome = 'ok' WHERE seq = 1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

async fn checkpoints_are_signed_and_written_outside_the_database(app: TestApp) {
    busy_day(&app).await;
    let checkpoint = app
        .services
        .audit
        .checkpoint()
        .await
        .unwrap()
        .expect("a new checkpoint");
    let file =
        audit::read_checkpoint_file(app.services.audit.checkpoint_file()).expect("checkpoint file");
    assert_eq!(file.seq, checkpoint.seq);
    assert_eq!(file.hash, checkpoint.hash);
    assert!(
        app.services.audit.checkpoint().await.unwrap().is_none(),
        "nothing new, no new checkpoint"
    );
    assert!(verify(&app).await.ok());
}

examplebank_testkit::both_backends!(
    security_and_privacy_events_are_recorded_with_pseudonyms_only,
    export_includes_the_audit_entries_about_the_person,
    the_audit_log_refuses_updates,
    checkpoints_are_signed_and_written_outside_the_database,
);

// ---- tampering (SQLite: the test plays an attacker with file access who drops the trigger) ----

async fn tampered_app() -> TestApp {
    let app = TestApp::new(Backend::Sqlite).await.unwrap();
    busy_day(&app).await;
    app.services.audit.checkpoint().await.unwrap();
    busy_day(&app).await;
    assert!(verify(&app).await.ok());
    raw(&app, "DROP TRIGGER audit_log_no_update").await.unwrap();
    app
}

#[tokio::test]
async fn verify_finds_an_altered_entry() {
    let app = tampered_app().await;
    raw(
        &app,
        "UPDATE audit_log SET outcome = 'refused' WHERE seq = 5",
    )
    .await
    .unwrap();
    assert_eq!(
        verify(&app).await.problem.as_deref(),
        Some("entry 5 was altered")
    );
}

#[tokio::test]
async fn verify_finds_a_missing_entry() {
    let app = tampered_app().await;
    raw(&app, "DELETE FROM audit_log WHERE seq = 7")
        .await
        .unwrap();
    let problem = verify(&app).await.problem.unwrap();
    assert!(problem.contains("entry 7 is missing"), "{problem}");
}

#[tokio::test]
async fn verify_finds_reordered_entries() {
    let app = tampered_app().await;
    // Swap the contents of entries 3 and 4, keeping their sequence numbers.
    raw(&app, "UPDATE audit_log SET seq = -3 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = 4; UPDATE audit_log SET seq = 4 WHERE seq = -3").await.unwrap();
    let problem = verify(&app).await.problem.unwrap();
    assert!(problem.contains("entry 3"), "{problem}");
}

#[tokio::test]
async fn verify_finds_a_cut_off_tail_through_the_checkpoint_file() {
    let app = tampered_app().await;
    app.services.audit.checkpoint().await.unwrap();
    let (head, _) = app.store().audit_head().await.unwrap().unwrap();
    // Remove the newest entries and their checkpoint from the database: only the file remembers.
    raw(
        &app,
        &format!(
            "DELETE FROM audit_log WHERE seq > {}; DELETE FROM audit_checkpoints WHERE seq > {}",
            head - 3,
            head - 3
        ),
    )
    .await
    .unwrap();
    let problem = verify(&app).await.problem.unwrap();
    assert!(problem.contains("cut off"), "{problem}");
}

#[tokio::test]
async fn verify_finds_a_forged_checkpoint() {
    let app = tampered_app().await;
    raw(&app, "UPDATE audit_checkpoints SET hash = 'forged'")
        .await
        .unwrap();
    let problem = verify(&app).await.problem.unwrap();
    assert!(problem.contains("invalid signature"), "{problem}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_only_up_to_a_checkpoint_and_the_chain_still_verifies() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = TestApp::new(backend).await else {
            continue;
        };
        busy_day(&app).await;
        let checkpoint = app.services.audit.checkpoint().await.unwrap().unwrap();
        app.clock.advance_secs(3000 * 24 * 3600);
        busy_day(&app).await;
        app.run_erasure().await;
        let first = app.store().audit_entries(0, 1).await.unwrap();
        assert_eq!(
            first[0].seq,
            checkpoint.seq + 1,
            "{backend:?}: pruned up to the checkpoint"
        );
        let report = verify(&app).await;
        assert!(report.ok(), "{backend:?}: {:?}", report.problem);
    }
}

// ---- PostgreSQL least privilege ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_service_roles_cannot_update_or_delete_audit_rows() {
    let Some(app) = TestApp::new(Backend::Postgres).await else {
        return;
    };
    busy_day(&app).await;
    let script = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/postgres/roles.sql"
    ))
    .unwrap();
    let mut conn = sqlx::postgres::PgConnection::connect(app.database_url().unwrap())
        .await
        .unwrap();
    sqlx::raw_sql(&script).execute(&mut conn).await.unwrap();
    for role in [
        "eb_identity",
        "eb_users",
        "eb_transactions",
        "eb_rewards",
        "eb_erasure",
        "eb_app",
    ] {
        conn.execute(format!("SET ROLE {role}").as_str())
            .await
            .unwrap();
        let update = conn
            .execute("UPDATE audit_log SET outcome = 'x' WHERE seq = 1")
            .await
            .unwrap_err();
        assert!(
            update.to_string().contains("permission denied"),
            "{role}: {update}"
        );
        let delete = conn
            .execute("DELETE FROM audit_log WHERE seq = 1")
            .await
            .unwrap_err();
        assert!(
            delete.to_string().contains("permission denied"),
            "{role}: {delete}"
        );
        conn.execute("INSERT INTO audit_log (seq, at, actor, action, target, outcome, request_id, prev_hash, hash) VALUES (-1, 0, 'a', 'b', 'c', 'd', 'e', 'f', 'g')")
            .await
            .map(|_| ())
            .or_else(|e| if e.to_string().contains("duplicate key") { Ok(()) } else { Err(e) })
            .unwrap_or_else(|e| panic!("{role} cannot append: {e}"));
        conn.execute("RESET ROLE").await.unwrap();
    }
    // The transactions role cannot touch identity secrets.
    conn.execute("SET ROLE eb_transactions").await.unwrap();
    let err = conn
        .execute("UPDATE accounts SET password_hash = 'x'")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
    let err = conn
        .execute("SELECT * FROM refresh_tokens")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
}
