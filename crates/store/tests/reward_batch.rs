//! `Store::reward_batch` and `Store::reward_subjects`, the reward worker's batched write-back,
//! on SQLite and (when it answers, or when CI=true / EXAMPLEBANK_TEST_REQUIRE_POSTGRES=1)
//! PostgreSQL: each transaction rewarded once, balances and ledger as one-at-a-time rewarding
//! writes them, events completed in the same database transaction, and a transaction that
//! vanished leaves its event in place.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use examplebank_store as store;
use sqlx::{Connection, Executor};
use store::{NewCharge, Store, StoreOptions};

/// A fresh store on each backend that can be reached; the guard drops a PostgreSQL database.
async fn stores() -> Vec<(Store, String, Option<TempDb>)> {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("store.sqlite");
    let sqlite = Store::open_sqlite(&path, &StoreOptions::default())
        .await
        .unwrap();
    sqlite.migrate().await.unwrap();
    let mut out = vec![(sqlite, format!("sqlite://{}", path.display()), None)];
    if let Some(db) = TempDb::create().await {
        let pg = Store::connect_postgres(&db.url, &StoreOptions::default())
            .await
            .unwrap();
        pg.migrate().await.unwrap();
        out.push((pg, db.url.clone(), Some(db)));
    }
    out
}

struct TempDb {
    url: String,
    admin: String,
    name: String,
}

fn required() -> bool {
    ["CI", "EXAMPLEBANK_TEST_REQUIRE_POSTGRES"]
        .iter()
        .any(|n| std::env::var(n).is_ok_and(|v| v == "true" || v == "1"))
}

impl TempDb {
    async fn create() -> Option<Self> {
        let admin = std::env::var("EXAMPLEBANK_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let mut conn = match sqlx::postgres::PgConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(err) if !required() => {
                eprintln!("SKIPPED on PostgreSQL: not reachable at {admin} ({err})");
                return None;
            }
            Err(err) => panic!("PostgreSQL is required but not reachable at {admin}: {err}"),
        };
        let name = format!("eb_test_{}", uuid::Uuid::new_v4().simple());
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap();
        let _ = conn.close().await;
        let (base, _) = admin.rsplit_once('/').unwrap();
        Some(Self {
            url: format!("{base}/{name}"),
            admin,
            name,
        })
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Ok(mut conn) = sqlx::postgres::PgConnection::connect(&admin).await {
                    let _ = conn
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                }
            });
        })
        .join();
    }
}

async fn charge(store: &Store, user: &str, amount_minor: i64, now: i64) -> String {
    let id = uuid::Uuid::now_v7().to_string();
    let outcome = store
        .create_charge(&NewCharge {
            id: &id,
            user_id: user,
            name_enc: b"sealed",
            category: "other",
            amount_minor,
            month: "2026-12",
            idempotency: None,
            now,
            standing_checked: true,
        })
        .await
        .unwrap();
    assert_eq!(outcome, store::ChargeOutcome::Created);
    id
}

/// (transaction id, points) per outbox seq, claimed.
async fn claim(store: &Store, now: i64) -> Vec<(i64, String)> {
    store
        .claim_events(now, 30_000_000, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.subject))
        .collect()
}

async fn scalar(url: &str, sql: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let value: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
    let _ = conn.close().await;
    value
}

async fn execute(url: &str, sql: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    conn.execute(sql).await.unwrap();
    let _ = conn.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_rewards_each_transaction_once_and_completes_its_events() {
    for (store, url, _guard) in stores().await {
        let now = 1_000;
        let a1 = charge(&store, "alice", 1_250, now).await;
        let a2 = charge(&store, "alice", 999, now).await;
        let b1 = charge(&store, "bob", 40, now).await; // 0 points: still one ledger entry
        let gone = charge(&store, "carol", 500, now).await;
        let unlinked = charge(&store, "dave", 700, now).await;
        let events = claim(&store, now).await;
        assert_eq!(events.len(), 5);
        let seq_of = |id: &str| events.iter().find(|(_, s)| s == id).unwrap().0;

        // What the worker reads first, in one round trip.
        let ids: Vec<&str> = events.iter().map(|(_, s)| s.as_str()).collect();
        let subjects = store.reward_subjects(&ids).await.unwrap();
        assert_eq!(subjects.len(), 5);
        let alice = subjects.iter().find(|s| s.id == a1).unwrap();
        assert_eq!(alice.user_id.as_deref(), Some("alice"));
        assert_eq!(
            (alice.amount_minor, alice.processed, alice.restricted),
            (1_250, false, false)
        );
        assert!(store.reward_subjects(&[]).await.unwrap().is_empty());

        // Meanwhile one transaction is rewarded by an earlier delivery, one is deleted, and
        // one is unlinked from its person by erasure.
        assert_eq!(
            store.reward_transaction(&a2, 9, now).await.unwrap(),
            store::RewardOutcome::Rewarded
        );
        execute(
            &url,
            &format!("DELETE FROM transactions WHERE id = '{gone}'"),
        )
        .await;
        execute(
            &url,
            &format!("UPDATE transactions SET user_id = NULL WHERE id = '{unlinked}'"),
        )
        .await;

        let writes = vec![
            (seq_of(&a1), a1.as_str(), 12),
            (seq_of(&a2), a2.as_str(), 9),
            (seq_of(&b1), b1.as_str(), 0),
            (seq_of(&gone), gone.as_str(), 5),
            (seq_of(&unlinked), unlinked.as_str(), 7),
        ];
        let outcome = store.reward_batch(&writes, &[], now + 1).await.unwrap();
        let mut rewarded = outcome.rewarded.clone();
        rewarded.sort();
        let mut expected = vec![a1.clone(), b1.clone(), unlinked.clone()];
        expected.sort();
        assert_eq!(rewarded, expected, "{url}");
        assert_eq!(outcome.vanished, vec![seq_of(&gone)]);
        let mut completed = outcome.completed.clone();
        completed.sort();
        let mut expected = vec![seq_of(&a1), seq_of(&a2), seq_of(&b1), seq_of(&unlinked)];
        expected.sort();
        assert_eq!(completed, expected);

        // Balances and ledger exactly as one-at-a-time rewarding writes them.
        let alice = store.points("alice").await.unwrap();
        assert_eq!((alice.balance, alice.earned), (21, 21));
        assert_eq!(store.points("bob").await.unwrap().earned, 0);
        assert_eq!(
            store.points("dave").await.unwrap().earned,
            0,
            "unlinked earns nothing"
        );
        for (id, entries) in [(&a1, 1), (&a2, 1), (&b1, 1), (&unlinked, 0)] {
            let sql = format!("SELECT COUNT(*) FROM points_ledger WHERE reference = '{id}'");
            assert_eq!(scalar(&url, &sql).await, entries, "{id}");
        }
        assert_eq!(
            scalar(
                &url,
                "SELECT COUNT(*) FROM points_accounts WHERE user_id = 'bob'"
            )
            .await,
            1
        );
        assert_eq!(
            store
                .transaction(&unlinked)
                .await
                .unwrap()
                .unwrap()
                .points_earned,
            Some(7)
        );
        // Only the vanished transaction's event is left.
        assert_eq!(scalar(&url, "SELECT COUNT(*) FROM outbox").await, 1);

        // Delivered again: nothing is written twice.
        let again = store
            .reward_batch(&writes[..3], &[], now + 2)
            .await
            .unwrap();
        assert!(again.rewarded.is_empty());
        assert_eq!(store.points("alice").await.unwrap().earned, 21);
        assert_eq!(scalar(&url, "SELECT COUNT(*) FROM points_ledger").await, 3);
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_with_nothing_to_write_are_completed_in_the_same_transaction() {
    for (store, url, _guard) in stores().await {
        let id = charge(&store, "erin", 300, 5).await;
        let events = claim(&store, 5).await;
        let outcome = store.reward_batch(&[], &[events[0].0], 6).await.unwrap();
        assert_eq!(outcome.completed, vec![events[0].0]);
        assert!(outcome.rewarded.is_empty() && outcome.vanished.is_empty());
        assert_eq!(scalar(&url, "SELECT COUNT(*) FROM outbox").await, 0);
        assert!(!store.transaction(&id).await.unwrap().unwrap().processed);
        let nothing = store.reward_batch(&[], &[], 7).await.unwrap();
        assert!(nothing.completed.is_empty());
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_over_the_same_transactions_reward_each_once() {
    for (store, url, _guard) in stores().await {
        let mut ids = Vec::new();
        for n in 0..40 {
            let person = format!("p{}", n % 4);
            ids.push(charge(&store, &person, 100 + n, 10).await);
        }
        let events = claim(&store, 10).await;
        let writes: Vec<(i64, String, i64)> = events
            .iter()
            .map(|(seq, id)| (*seq, id.clone(), 1))
            .collect();
        // Four writers deliver the same events, in different orders.
        let mut tasks = Vec::new();
        for w in 0..4 {
            let store = store.clone();
            let mut mine = writes.clone();
            if w % 2 == 1 {
                mine.reverse();
            }
            tasks.push(tokio::spawn(async move {
                let borrowed: Vec<(i64, &str, i64)> =
                    mine.iter().map(|(s, i, p)| (*s, i.as_str(), *p)).collect();
                // A deadlock or serialisation failure is an error the worker retries; here,
                // retry too, and count what got written.
                for _ in 0..20 {
                    match store.reward_batch(&borrowed, &[], 11).await {
                        Ok(outcome) => return outcome.rewarded.len(),
                        Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
                    }
                }
                panic!("a batch kept failing");
            }));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        assert_eq!(
            total, 40,
            "{url}: each transaction rewarded by exactly one writer"
        );
        assert_eq!(scalar(&url, "SELECT COUNT(*) FROM points_ledger").await, 40);
        assert_eq!(
            scalar(
                &url,
                "SELECT CAST(SUM(earned) AS BIGINT) FROM points_accounts"
            )
            .await,
            40
        );
        assert_eq!(scalar(&url, "SELECT COUNT(*) FROM outbox").await, 0);
        store.close().await;
    }
}
