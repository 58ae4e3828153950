//! The store contract: the same behaviour from SQLite and PostgreSQL, checked directly on
//! `Store` (the API suites check it again through HTTP). Also: both backends have migrations
//! with identical names.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use examplebank_testkit::TestApp;
use serde_json::json;
use std::collections::BTreeSet;
use store::{Backend, RewardOutcome, Store};

#[test]
fn migrations_have_identical_names_on_both_backends() {
    let sqlite = store::migration_names(Backend::Sqlite);
    let postgres = store::migration_names(Backend::Postgres);
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, postgres);
    // Every file in each directory is listed, and nothing listed is missing.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../store/migrations");
    for (dir, names) in [("sqlite", &sqlite), ("postgres", &postgres)] {
        let files: BTreeSet<String> = std::fs::read_dir(format!("{root}/{dir}"))
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .trim_end_matches(".sql")
                    .to_owned()
            })
            .collect();
        let listed: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            files, listed,
            "migrations/{dir} and the embedded list differ"
        );
    }
}

async fn migrations_are_idempotent_and_recorded(app: TestApp) {
    assert!(
        app.store().migrate().await.unwrap().is_empty(),
        "a second run applies nothing"
    );
    assert!(app.store().ping().await);
}

/// A person with one unprocessed transaction; returns (person id, transaction id).
async fn one_charge(app: &TestApp, amount: &str, category: &str) -> (String, String) {
    let person = app.person().await;
    app.charge(person.token(), "Shop", category, json!(amount))
        .await
        .expect(http::StatusCode::NO_CONTENT);
    let rows = app
        .store()
        .list_transactions(&person.id, None, 10)
        .await
        .unwrap();
    (person.id.clone(), rows[0].id.clone())
}

async fn rewards_are_written_exactly_once(app: TestApp) {
    let (person, tx) = one_charge(&app, "12.34", "groceries").await;
    let store = app.store().clone();
    // Ten concurrent writers for the same transaction: one wins.
    let mut handles = Vec::new();
    for _ in 0..10 {
        let (store, tx) = (store.clone(), tx.clone());
        handles.push(tokio::spawn(async move {
            store.reward_transaction(&tx, 24, 1).await.unwrap()
        }));
    }
    let mut rewarded = 0;
    for handle in handles {
        if handle.await.unwrap() == RewardOutcome::Rewarded {
            rewarded += 1;
        }
    }
    assert_eq!(rewarded, 1);
    assert_eq!(store.points(&person).await.unwrap().balance, 24);
    assert_eq!(store.points_ledger(&person).await.unwrap().len(), 1);
    assert_eq!(
        store.reward_transaction("no-such-id", 1, 1).await.unwrap(),
        RewardOutcome::NotFound
    );
}

async fn redemptions_never_overdraw_under_concurrency(app: TestApp) {
    let (person, tx) = one_charge(&app, "100.00", "other").await;
    let store = app.store().clone();
    store.reward_transaction(&tx, 100, 1).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..12 {
        let (store, person) = (store.clone(), person.clone());
        handles.push(tokio::spawn(async move {
            let key = format!("key-{i}");
            store
                .redeem_points(
                    &person,
                    &format!("r{i}"),
                    30,
                    (&key, "h"),
                    |b| b.to_string(),
                    2,
                )
                .await
                .unwrap()
        }));
    }
    let mut redeemed = 0;
    for handle in handles {
        if matches!(handle.await.unwrap(), store::RedeemOutcome::Redeemed { .. }) {
            redeemed += 1;
        }
    }
    assert_eq!(redeemed, 3, "100 points allow three redemptions of 30");
    assert_eq!(store.points(&person).await.unwrap().balance, 10);
}

async fn claimed_events_are_leased_and_come_back_when_a_worker_dies(app: TestApp) {
    let (_, tx) = one_charge(&app, "5.00", "coffee").await;
    let store = app.store().clone();
    let now = app.clock_now();
    let first = store.claim_events(now, 30_000_000, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].subject, tx);
    // Leased: nobody else gets it while the lease runs.
    assert!(store
        .claim_events(now + 1, 30_000_000, 10)
        .await
        .unwrap()
        .is_empty());
    // The worker died: after the lease the event is claimable again, with attempts counted.
    let again = store
        .claim_events(now + 31_000_000, 30_000_000, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    store.complete_event(again[0].seq).await.unwrap();
    assert_eq!(store.outbox_stats().await.unwrap().pending, 0);
}

async fn concurrent_claimers_never_share_an_event(app: TestApp) {
    for i in 0..6 {
        one_charge(&app, &format!("{}.00", i + 1), "other").await;
    }
    let store = app.store().clone();
    let now = app.clock_now();
    let mut handles = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store.claim_events(now, 30_000_000, 2).await.unwrap()
        }));
    }
    let mut seen = BTreeSet::new();
    for handle in handles {
        for event in handle.await.unwrap() {
            assert!(seen.insert(event.seq), "event {} claimed twice", event.seq);
        }
    }
    assert_eq!(seen.len(), 6);
}

async fn poison_events_are_parked_and_failures_retried_with_backoff(app: TestApp) {
    let (_, tx) = one_charge(&app, "5.00", "coffee").await;
    let store = app.store().clone();
    // Remove the transaction behind the worker's back: its event becomes poison.
    erase_transaction_row(&app, &tx).await;
    app.drain_rewards().await;
    let stats = store.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.parked), (0, 1));
    let parked = store.parked_events(10).await.unwrap();
    assert!(parked[0]
        .last_error
        .as_deref()
        .unwrap()
        .contains("does not exist"));
    // retry_event moves the event into the future.
    let (_, tx2) = one_charge(&app, "6.00", "coffee").await;
    let now = app.clock_now();
    let claimed = store.claim_events(now, 1_000_000, 10).await.unwrap();
    assert_eq!(claimed[0].subject, tx2);
    store
        .retry_event(claimed[0].seq, now + 10_000_000, "transient")
        .await
        .unwrap();
    assert!(store
        .claim_events(now + 5_000_000, 1_000_000, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .claim_events(now + 11_000_000, 1_000_000, 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

async fn erase_transaction_row(app: &TestApp, id: &str) {
    use sqlx::{Connection, Executor};
    match app.backend {
        examplebank_testkit::Backend::Sqlite => {
            let path = app.dir.path().join("test.sqlite");
            let mut conn =
                sqlx::sqlite::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .unwrap();
            conn.execute(format!("DELETE FROM transactions WHERE id = '{id}'").as_str())
                .await
                .unwrap();
        }
        examplebank_testkit::Backend::Postgres => {
            let mut conn = sqlx::postgres::PgConnection::connect(app.database_url().unwrap())
                .await
                .unwrap();
            conn.execute(format!("DELETE FROM transactions WHERE id = '{id}'").as_str())
                .await
                .unwrap();
        }
    }
}

/// A charge and its reward event are written together or not at all, and whether they are
/// depends on the person's standing exactly as before the write: on PostgreSQL without an
/// `Idempotency-Key` the check and both inserts are one statement, with a key (and on SQLite)
/// they are a transaction of several; both paths must give the same outcomes.
async fn a_charge_and_its_event_are_written_together_or_not_at_all(app: TestApp) {
    use store::{ChargeOutcome, NewCharge, Switch};
    let store = app.store().clone();
    let now = app.clock_now();
    let consenting = app.person_with_consent(true).await.id;
    let refusing = app.person_with_consent(false).await.id;
    let restrict = |id: String| {
        let store = store.clone();
        async move {
            let request = uuid::Uuid::new_v4().to_string();
            let on = (Switch::Restriction, true);
            let done = store
                .set_switch(&id, on.0, on.1, (&request, "restriction"), now, now)
                .await
                .unwrap();
            assert!(done);
            id
        }
    };
    let restricted = restrict(app.person_with_consent(true).await.id).await;
    // Restricted and refusing at once: the refusal is what the person is told first.
    let refusing_and_restricted = restrict(app.person_with_consent(false).await.id).await;
    let leaving = app.person_with_consent(true).await.id;
    let request = uuid::Uuid::new_v4().to_string();
    store
        .request_erasure(&request, &leaving, now, now + 1, now + 2)
        .await
        .unwrap();
    let stranger = uuid::Uuid::new_v4().to_string();

    let cases = [
        (&consenting, false, ChargeOutcome::Created),
        (&refusing, false, ChargeOutcome::NoConsent),
        (&restricted, false, ChargeOutcome::Restricted),
        (&refusing_and_restricted, false, ChargeOutcome::NoConsent),
        (&leaving, false, ChargeOutcome::ErasurePending),
        (&stranger, false, ChargeOutcome::NotRegistered),
        // Split roles: the users service has already been asked, so the store writes.
        (&consenting, true, ChargeOutcome::Created),
    ];
    let mut created = BTreeSet::new();
    for keyed in [false, true] {
        for (n, (user, standing_checked, expected)) in cases.iter().enumerate() {
            let id = uuid::Uuid::new_v4().to_string();
            let key = format!("key-{n}-{keyed}");
            let outcome = store
                .create_charge(&NewCharge {
                    id: &id,
                    user_id: user,
                    name_enc: b"sealed name",
                    category: "dining",
                    amount_minor: 1234,
                    month: "2026-12",
                    idempotency: keyed.then_some((key.as_str(), "hash")),
                    now,
                    standing_checked: *standing_checked,
                })
                .await
                .unwrap();
            let case = format!("case {n}, with a key: {keyed}");
            assert_eq!(&outcome, expected, "{case}");
            let stored = store.transaction(&id).await.unwrap();
            assert_eq!(
                stored.is_some(),
                outcome == ChargeOutcome::Created,
                "{case}"
            );
            if let Some(row) = stored {
                assert_eq!(row.user_id.as_deref(), Some(user.as_str()), "{case}");
                assert_eq!(row.name_enc.as_deref(), Some(&b"sealed name"[..]), "{case}");
                assert_eq!((row.amount_minor, row.created_at), (1234, now), "{case}");
                assert!(!row.processed, "{case}");
                created.insert(id);
            }
        }
    }
    assert_eq!(created.len(), 4);
    // Exactly one event per written charge, none for a refused one.
    let events = store.claim_events(now, 60_000_000, 100).await.unwrap();
    let subjects: BTreeSet<String> = events.iter().map(|e| e.subject.clone()).collect();
    assert_eq!(events.len(), created.len());
    assert_eq!(subjects, created);

    // The same id again (a retried request the server gave a new id cannot do this, but a
    // clash must not half-write): a conflict, and no second event.
    let again = created.iter().next().unwrap().clone();
    for keyed in [false, true] {
        let result = store
            .create_charge(&NewCharge {
                id: &again,
                user_id: &consenting,
                name_enc: b"other",
                category: "fuel",
                amount_minor: 1,
                month: "2026-12",
                idempotency: keyed.then_some(("clash", "hash")),
                now,
                standing_checked: false,
            })
            .await;
        assert!(
            matches!(result, Err(store::StoreError::Conflict)),
            "keyed {keyed}"
        );
    }
    assert!(store
        .claim_events(now, 60_000_000, 100)
        .await
        .unwrap()
        .is_empty());
    let kept = store.transaction(&again).await.unwrap().unwrap();
    assert_eq!(
        (kept.category.as_str(), kept.amount_minor),
        ("dining", 1234)
    );
}

async fn unique_keys_become_conflicts(app: TestApp) {
    let person = app.person().await;
    let again = app.store().register_user(&person.id, &[], 1).await;
    assert!(matches!(again, Err(store::StoreError::Conflict)));
    let _: &Store = app.store();
}

/// Scheduled work: of any number of replicas asking for the same period, exactly one runs it.
async fn each_period_is_claimed_once(app: TestApp) {
    let store = app.store();
    let claims = futures_claims(store, "retention", 42).await;
    assert_eq!(claims.iter().filter(|c| **c).count(), 1, "{claims:?}");
    assert!(store.claim_period("retention", 43, "b", 2).await.unwrap());
    assert!(!store.claim_period("retention", 43, "a", 3).await.unwrap());
    // Another job's period is its own.
    assert!(store.claim_period("other", 43, "a", 3).await.unwrap());
}

async fn futures_claims(store: &Store, job: &str, period: i64) -> Vec<bool> {
    let mut tasks = Vec::new();
    for n in 0..8 {
        let store = store.clone();
        let job = job.to_owned();
        tasks.push(tokio::spawn(async move {
            store
                .claim_period(&job, period, &format!("replica-{n}"), 1)
                .await
                .unwrap()
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

/// Split-mode erasure: each role's part can run twice (a retry after a crash) without
/// counting anyone twice in the anonymous facts, and a claimed request is held for a while.
async fn forgetting_twice_counts_nobody_twice(app: TestApp) {
    let (person, _) = one_charge(&app, "20.00", "fuel").await;
    let store = app.store();
    let now = 1_000_000;
    let (request, created) = store
        .request_erasure("req-1", &person, now, now, now + 1)
        .await
        .unwrap();
    assert!(created);
    assert!(store
        .claim_erasure(&request.id, now, now + 60)
        .await
        .unwrap());
    assert!(
        !store
            .claim_erasure(&request.id, now + 1, now + 61)
            .await
            .unwrap(),
        "a claimed request is not taken by another replica"
    );
    let facts = |cells: Vec<store::AnalyticsCell>| -> i64 {
        cells
            .iter()
            .filter(|c| c.category == "fuel")
            .map(|c| c.contributors)
            .sum()
    };
    let before = facts(store.analytics_cells().await.unwrap());
    for _ in 0..2 {
        store.forget_transactions(&person, now).await.unwrap();
        store.forget_profile(&person).await.unwrap();
        store.forget_account(&person).await.unwrap();
    }
    assert_eq!(facts(store.analytics_cells().await.unwrap()), before + 1);
    assert!(store.bank_user(&person).await.unwrap().is_none());
    assert!(store.account(&person).await.unwrap().is_none());
    assert!(store
        .list_transactions(&person, None, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.complete_erasure(&request.id, now + 2).await.unwrap());
    assert!(!store.complete_erasure(&request.id, now + 3).await.unwrap());
    assert!(!store
        .claim_erasure(&request.id, now + 100, now + 160)
        .await
        .unwrap());
}

examplebank_testkit::both_backends!(
    a_charge_and_its_event_are_written_together_or_not_at_all,
    each_period_is_claimed_once,
    forgetting_twice_counts_nobody_twice,
    migrations_are_idempotent_and_recorded,
    rewards_are_written_exactly_once,
    redemptions_never_overdraw_under_concurrency,
    claimed_events_are_leased_and_come_back_when_a_worker_dies,
    concurrent_claimers_never_share_an_event,
    poison_events_are_parked_and_failures_retried_with_backoff,
    unique_keys_become_conflicts,
);

/// Connections to PostgreSQL are encrypted when the server offers TLS, and `sslmode=require`
/// works (the production URL adds `verify-full` and the server's CA).
#[tokio::test]
async fn postgres_connections_use_tls_when_the_server_offers_it() {
    use sqlx::{Connection, Row};
    let Some(db) = examplebank_testkit::TempDatabase::create().await else {
        return;
    };
    let mut probe = sqlx::postgres::PgConnection::connect(&db.url)
        .await
        .unwrap();
    let ssl: String = sqlx::query("SHOW ssl")
        .fetch_one(&mut probe)
        .await
        .unwrap()
        .get(0);
    if ssl != "on" {
        eprintln!("SKIPPED: this PostgreSQL server has ssl = {ssl}");
        return;
    }
    for url in [db.url.clone(), format!("{}?sslmode=require", db.url)] {
        let mut conn = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
        let encrypted: bool =
            sqlx::query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
                .fetch_one(&mut conn)
                .await
                .unwrap()
                .get(0);
        assert!(encrypted, "{url} is not encrypted");
    }
    let store = Store::connect_postgres(
        &format!("{}?sslmode=require", db.url),
        &store::StoreOptions::default(),
    )
    .await
    .unwrap();
    assert!(store.ping().await);
}

/// A request cancelled while its database transaction is starting (the client went away, a
/// timeout fired) must not hand its pooled connection to the next caller inside that
/// transaction: the next caller's single-statement writes would then never commit, and hold
/// their locks (seen under load in bench/, sqlx 0.8.6's `begin` raises its depth only after
/// `BEGIN` answers). Cancelled at every point of a charge's first steps, one connection in the
/// pool, a write made after each cancellation must be visible to another session at once.
#[tokio::test]
async fn a_cancelled_transaction_never_leaks_into_the_next_use_of_its_connection() {
    use sqlx::{Connection, Row};
    use std::future::Future;
    let Some(db) = examplebank_testkit::TempDatabase::create().await else {
        return;
    };
    let options = store::StoreOptions {
        max_connections: 1,
        ..store::StoreOptions::default()
    };
    let store = Store::connect_postgres(&db.url, &options).await.unwrap();
    store.migrate().await.unwrap();
    let mut observer = sqlx::postgres::PgConnection::connect(&db.url)
        .await
        .unwrap();
    for round in 0..40_i64 {
        let id = uuid::Uuid::now_v7().to_string();
        let charge = store::NewCharge {
            id: &id,
            user_id: "nobody",
            name_enc: b"sealed",
            category: "other",
            amount_minor: 100,
            month: "2026-12",
            idempotency: None,
            now: round,
            standing_checked: true,
        };
        {
            let mut charging = std::pin::pin!(store.create_charge(&charge));
            // Poll it `round % 4 + 1` times, a few hundred microseconds apart, then drop it.
            for _ in 0..=(round % 4) {
                let waker = std::task::Waker::noop();
                let mut cx = std::task::Context::from_waker(waker);
                if charging.as_mut().poll(&mut cx).is_ready() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_micros(200 * (round as u64 % 3)));
            }
        }
        store
            .set_reward_rule("dining", round + 1, round)
            .await
            .unwrap();
        let seen: i64 =
            sqlx::query("SELECT points_per_unit FROM reward_rules WHERE category = 'dining'")
                .fetch_one(&mut observer)
                .await
                .unwrap()
                .get(0);
        assert_eq!(
            seen,
            round + 1,
            "round {round}: a write after a cancelled transaction was not committed"
        );
    }
}
