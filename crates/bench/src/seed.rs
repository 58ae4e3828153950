//! Seeding: people through the store (a data key each in the key store, sealed profile, the
//! blind username index, one Argon2 hash computed once and reused, registration with consent
//! recorded as events), then their transactions in bulk, already rewarded, with the points
//! ledger and balances to match. Merchant names are sealed with each person's own key exactly
//! as the server seals them, so the server reads the rows as if it had written them.

use crate::{username, PASSWORD};
use anyhow::{Context, Result};
use crypto::envelope::{DataKey, MasterKey};
use crypto::keystore::KeyStore;
use crypto::vault::Vault;
use rand::Rng;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use store::{ConsentRecord, NewAccount, Store, StoreOptions};

pub enum Target {
    Postgres(String),
    Sqlite(PathBuf),
}

pub const CATEGORIES: [&str; 11] = [
    "groceries",
    "fuel",
    "dining",
    "coffee",
    "transport",
    "shopping",
    "travel",
    "entertainment",
    "utilities",
    "health",
    "other",
];

/// Rows per bulk statement group.
const CHUNK: usize = 5_000;
const DAY_MICROS: i64 = 86_400_000_000;

pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

struct Person {
    id: String,
    key: Arc<DataKey>,
}

#[derive(Default)]
struct Rows {
    id: Vec<String>,
    user_id: Vec<String>,
    name_enc: Vec<Vec<u8>>,
    category: Vec<String>,
    amount_minor: Vec<i64>,
    month: Vec<String>,
    points: Vec<i64>,
    created_at: Vec<i64>,
}

impl Rows {
    fn len(&self) -> usize {
        self.id.len()
    }
}

pub async fn run(
    target: &Target,
    keys_dir: &Path,
    master_key: &str,
    people: usize,
    transactions: usize,
) -> Result<()> {
    let started = Instant::now();
    let options = StoreOptions {
        max_connections: 16,
        ..StoreOptions::default()
    };
    let store = match target {
        Target::Postgres(url) => Store::connect_postgres(url, &options).await?,
        Target::Sqlite(path) => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            Store::open_sqlite(path, &options).await?
        }
    };
    store.migrate().await.context("migrations")?;
    let master = MasterKey::from_encoded(master_key).context("the master key")?;
    let (keys, _) = KeyStore::open(keys_dir, Some(master), false).context("the key store")?;
    let vault = Vault::new(keys);
    let rules: HashMap<String, i64> = store.reward_rules().await?.into_iter().collect();
    // Argon2 once: every seeded person has the same password, so one PHC string serves all.
    let phc = crypto::password::hash_password(PASSWORD)?;
    let now = now_micros();

    let people = create_people(&store, &vault, &phc, people, now).await?;
    eprintln!(
        "seed: {} people in {:.1}s",
        people.len(),
        started.elapsed().as_secs_f64()
    );
    store.close().await;

    let bulk = match target {
        Target::Postgres(url) => Bulk::Postgres(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(2)
                .connect(url)
                .await?,
        ),
        Target::Sqlite(path) => Bulk::Sqlite(
            sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(
                    sqlx::sqlite::SqliteConnectOptions::new()
                        .filename(path)
                        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                        .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
                        .foreign_keys(true),
                )
                .await?,
        ),
    };
    let written = seed_transactions(&bulk, &people, &rules, transactions, now).await?;
    eprintln!(
        "seed: {written} transactions in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    bulk.close().await;
    println!(
        "{}",
        serde_json::json!({
            "kind": "seed",
            "backend": match target { Target::Postgres(_) => "postgres", Target::Sqlite(_) => "sqlite" },
            "people": people.len(),
            "transactions": written,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}

async fn create_people(
    store: &Store,
    vault: &Vault,
    phc: &str,
    count: usize,
    now: i64,
) -> Result<Vec<Person>> {
    let policy_hash: Arc<str> = users::policy_hash().into();
    let mut people = Vec::with_capacity(count);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=count {
        let id = uuid::Uuid::new_v4().to_string();
        let name = username(n);
        let key = vault.create_person(&id)?;
        let seal = |field: &str, text: &str| Vault::seal(&key, field, &id, text);
        let account = NewAccount {
            id: id.clone(),
            username_index: vault.blind_index("username", &name),
            username_enc: seal("accounts.username", &name),
            given_name_enc: Some(seal("accounts.given_name", "Bench")),
            family_name_enc: Some(seal("accounts.family_name", &format!("Person{n}"))),
            email_enc: Some(seal("accounts.email", &format!("{name}@example.org"))),
            password_hash: phc.to_owned(),
            role: "person",
            now,
        };
        people.push(Person {
            id: id.clone(),
            key,
        });
        let store = store.clone();
        let hash = Arc::clone(&policy_hash);
        tasks.spawn(async move {
            store.create_account(&account).await?;
            let consents: Vec<ConsentRecord<'_>> = ["rewards", "analytics", "profiling"]
                .into_iter()
                .map(|purpose| ConsentRecord {
                    purpose,
                    granted: purpose == "rewards",
                    policy_version: users::POLICY_VERSION,
                    policy_hash: &hash,
                    method: "registration",
                })
                .collect();
            store.register_user(&id, &consents, now).await?;
            anyhow::Ok(())
        });
        while tasks.len() >= 16 {
            if let Some(done) = tasks.join_next().await {
                done??;
            }
        }
        if n % 1000 == 0 {
            eprintln!("seed: {n} people");
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(people)
}

async fn seed_transactions(
    bulk: &Bulk,
    people: &[Person],
    rules: &HashMap<String, i64>,
    total: usize,
    now: i64,
) -> Result<usize> {
    if people.is_empty() || total == 0 {
        return Ok(0);
    }
    let rounds = total.div_ceil(people.len());
    // Half a year of history, in rounds: each person's charges are spread through the table
    // (as they would be), not stored next to each other.
    let span = 180 * DAY_MICROS;
    let start = now - span;
    let step = span / i64::try_from(rounds.max(1)).unwrap_or(1);
    let mut rng = rand::thread_rng();
    let mut earned: HashMap<&str, i64> = HashMap::new();
    let mut rows = Rows::default();
    let mut written = 0usize;
    let mut next_report = 100_000usize;
    'outer: for round in 0..rounds {
        for person in people {
            if written + rows.len() >= total {
                break 'outer;
            }
            let at =
                start + step * i64::try_from(round).unwrap_or(0) + rng.gen_range(0..step.max(1));
            let category = CATEGORIES[rng.gen_range(0..CATEGORIES.len())];
            let amount: i64 = rng.gen_range(100..=20_000);
            let rate = rules.get(category).copied().unwrap_or(1);
            let points = rewards::points_for(amount, rate);
            let id = uuid::Uuid::now_v7().to_string();
            let merchant = format!("Bench merchant {}", rng.gen_range(1..=500));
            let sealed = Vault::seal(&person.key, "transactions.name", &id, &merchant);
            *earned.entry(person.id.as_str()).or_insert(0) += points;
            rows.id.push(id);
            rows.user_id.push(person.id.clone());
            rows.name_enc.push(sealed);
            rows.category.push(category.to_owned());
            rows.amount_minor.push(amount);
            rows.month.push(domain::clock::month_of(at));
            rows.points.push(points);
            rows.created_at.push(at);
            if rows.len() == CHUNK {
                written += rows.len();
                bulk.insert(&std::mem::take(&mut rows)).await?;
                if written >= next_report {
                    eprintln!("seed: {written} transactions");
                    next_report += 100_000;
                }
            }
        }
    }
    written += rows.len();
    bulk.insert(&rows).await?;
    let balances: Vec<(String, i64)> = earned.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    bulk.balances(&balances).await?;
    Ok(written)
}

enum Bulk {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

impl Bulk {
    async fn close(&self) {
        match self {
            Bulk::Postgres(pool) => pool.close().await,
            Bulk::Sqlite(pool) => pool.close().await,
        }
    }

    async fn insert(&self, rows: &Rows) -> Result<()> {
        if rows.len() == 0 {
            return Ok(());
        }
        match self {
            Bulk::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                sqlx::query(
                    "INSERT INTO transactions (id, user_id, name_enc, category, amount_minor, month, \
                     points_earned, processed, created_at) \
                     SELECT t.id, t.user_id, t.name_enc, t.category, t.amount_minor, t.month, t.points, 1, t.created_at \
                     FROM UNNEST($1::text[], $2::text[], $3::bytea[], $4::text[], $5::int8[], $6::text[], $7::int8[], $8::int8[]) \
                     AS t(id, user_id, name_enc, category, amount_minor, month, points, created_at)",
                )
                .bind(&rows.id)
                .bind(&rows.user_id)
                .bind(&rows.name_enc)
                .bind(&rows.category)
                .bind(&rows.amount_minor)
                .bind(&rows.month)
                .bind(&rows.points)
                .bind(&rows.created_at)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO points_ledger (user_id, delta, kind, reference, at) \
                     SELECT t.user_id, t.points, 'earned', t.id, t.created_at \
                     FROM UNNEST($1::text[], $2::int8[], $3::text[], $4::int8[]) AS t(user_id, points, id, created_at)",
                )
                .bind(&rows.user_id)
                .bind(&rows.points)
                .bind(&rows.id)
                .bind(&rows.created_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            Bulk::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                // 100 rows per statement keeps well under SQLite's parameter limit.
                for start in (0..rows.len()).step_by(100) {
                    let end = (start + 100).min(rows.len());
                    let values = vec!["(?, ?, ?, ?, ?, ?, ?, 1, ?)"; end - start].join(", ");
                    let sql = format!(
                        "INSERT INTO transactions (id, user_id, name_enc, category, amount_minor, \
                         month, points_earned, processed, created_at) VALUES {values}"
                    );
                    let mut query = sqlx::query(&sql);
                    for i in start..end {
                        query = query
                            .bind(&rows.id[i])
                            .bind(&rows.user_id[i])
                            .bind(&rows.name_enc[i])
                            .bind(&rows.category[i])
                            .bind(rows.amount_minor[i])
                            .bind(&rows.month[i])
                            .bind(rows.points[i])
                            .bind(rows.created_at[i]);
                    }
                    query.execute(&mut *tx).await?;
                    let values = vec!["(?, ?, 'earned', ?, ?)"; end - start].join(", ");
                    let sql = format!(
                        "INSERT INTO points_ledger (user_id, delta, kind, reference, at) VALUES {values}"
                    );
                    let mut query = sqlx::query(&sql);
                    for i in start..end {
                        query = query
                            .bind(&rows.user_id[i])
                            .bind(rows.points[i])
                            .bind(&rows.id[i])
                            .bind(rows.created_at[i]);
                    }
                    query.execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }

    async fn balances(&self, balances: &[(String, i64)]) -> Result<()> {
        match self {
            Bulk::Postgres(pool) => {
                let (ids, points): (Vec<String>, Vec<i64>) = balances.iter().cloned().unzip();
                sqlx::query(
                    "INSERT INTO points_accounts (user_id, balance, earned, redeemed) \
                     SELECT t.user_id, t.points, t.points, 0 FROM UNNEST($1::text[], $2::int8[]) AS t(user_id, points)",
                )
                .bind(&ids)
                .bind(&points)
                .execute(pool)
                .await?;
            }
            Bulk::Sqlite(pool) => {
                let mut tx = pool.begin().await?;
                for (id, points) in balances {
                    sqlx::query(
                        "INSERT INTO points_accounts (user_id, balance, earned, redeemed) VALUES (?, ?, ?, 0)",
                    )
                    .bind(id)
                    .bind(points)
                    .bind(points)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(())
    }
}
