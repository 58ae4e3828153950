//! The database's own limit on SQLite: the exact statements the server issues for one
//! request (see crates/store/src: `session_state`, `create_charge`, `list_transactions`),
//! issued in a direct loop through one connection with the server's pragmas, by
//! `concurrency` tasks sharing it as the server's requests share its one connection.

use crate::http::read_sessions;
use crate::seed::{now_micros, CATEGORIES};
use crate::stats::percentile_ms;
use anyhow::{bail, Result};
use rand::Rng;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `Store::session_state`.
const SESSION_CHECK: &str =
    "SELECT a.status, (SELECT f.revoked_at FROM token_families f WHERE f.id = $2 \
     AND f.account_id = a.id) AS revoked_at, \
     (SELECT COUNT(*) FROM token_families f WHERE f.id = $2 AND f.account_id = a.id) AS known \
     FROM accounts a WHERE a.id = $1";
/// `Store::create_charge`, without an Idempotency-Key.
const STANDING: &str =
    "SELECT consent_rewards, restricted_at, erasure_requested_at FROM bank_users WHERE id = $1";
const INSERT_CHARGE: &str =
    "INSERT INTO transactions (id, user_id, name_enc, category, amount_minor, month, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
const INSERT_EVENT: &str = "INSERT INTO outbox (kind, subject, created_at, available_at) \
     VALUES ('transaction.created', $1, $2, $2)";
/// `Store::list_transactions`.
const PAGE: &str =
    "SELECT seq, id, user_id, name_enc, category, amount_minor, points_earned, processed, \
     created_at FROM transactions WHERE user_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3";

pub async fn run(
    path: &Path,
    tokens: &Path,
    kind: &str,
    concurrency: usize,
    seconds: u64,
) -> Result<()> {
    if !matches!(kind, "post" | "get") {
        bail!("--kind is post or get");
    }
    let sessions: Arc<Vec<(String, String)>> = Arc::new(
        read_sessions(tokens)?
            .into_iter()
            .map(|s| (s.sub, s.sid))
            .collect(),
    );
    if sessions.is_empty() {
        bail!("no sessions");
    }
    // The server's SQLite pool: one connection, WAL, synchronous = FULL.
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(path)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5))
                .pragma("secure_delete", "ON"),
        )
        .await?;
    let post = kind == "post";
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (pool, sessions) = (pool.clone(), Arc::clone(&sessions));
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let name_enc = vec![7u8; 58];
            while Instant::now() < deadline {
                let (sub, sid) = {
                    let mut rng = rand::thread_rng();
                    sessions[rng.gen_range(0..sessions.len())].clone()
                };
                let began = Instant::now();
                sqlx::query(SESSION_CHECK)
                    .bind(&sub)
                    .bind(&sid)
                    .fetch_optional(&pool)
                    .await?;
                if post {
                    let (category, amount) = {
                        let mut rng = rand::thread_rng();
                        (
                            CATEGORIES[rng.gen_range(0..CATEGORIES.len())],
                            rng.gen_range(100i64..=20_000),
                        )
                    };
                    let id = uuid::Uuid::now_v7().to_string();
                    let now = now_micros();
                    let mut tx = pool.begin().await?;
                    sqlx::query(STANDING)
                        .bind(&sub)
                        .fetch_optional(&mut *tx)
                        .await?;
                    sqlx::query(INSERT_CHARGE)
                        .bind(&id)
                        .bind(&sub)
                        .bind(&name_enc)
                        .bind(category)
                        .bind(amount)
                        .bind(domain::clock::month_of(now))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(INSERT_EVENT)
                        .bind(&id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                } else {
                    sqlx::query(PAGE)
                        .bind(&sub)
                        .bind(i64::MAX)
                        .bind(50i64)
                        .fetch_all(&pool)
                        .await?;
                }
                latencies.push(u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    if post {
        // Leave the table as the server would after its worker: nothing pending.
        sqlx::query("DELETE FROM outbox").execute(&pool).await?;
    }
    pool.close().await;
    all.sort_unstable();
    println!(
        "{}",
        serde_json::json!({
            "kind": "sqlite_loop",
            "request": kind,
            "concurrency": concurrency,
            "requests": all.len(),
            "rps": all.len() as f64 / elapsed,
            "p50_ms": percentile_ms(&all, 50.0),
            "p99_ms": percentile_ms(&all, 99.0),
        })
    );
    Ok(())
}
