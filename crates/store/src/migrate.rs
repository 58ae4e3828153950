//! Forward-only migrations, embedded in the binary, with identical names on both backends.
//! A checksum per migration refuses a database migrated with a different text of the same
//! name (a released migration must never be edited).

use crate::{Result, StoreError};
use sqlx::{AnyPool, Row};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

pub struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migrations {
    ($dir:literal: $($name:literal),* $(,)?) => {
        &[$(Migration { name: $name, sql: include_str!(concat!("../migrations/", $dir, "/", $name, ".sql")) }),*]
    };
}

pub const MIGRATIONS_SQLITE: &[Migration] =
    migrations!("sqlite": "0001_initial", "0002_scheduled_runs");
pub const MIGRATIONS_POSTGRES: &[Migration] =
    migrations!("postgres": "0001_initial", "0002_scheduled_runs");

pub fn migration_names(backend: Backend) -> Vec<&'static str> {
    list(backend).iter().map(|m| m.name).collect()
}

fn list(backend: Backend) -> &'static [Migration] {
    match backend {
        Backend::Sqlite => MIGRATIONS_SQLITE,
        Backend::Postgres => MIGRATIONS_POSTGRES,
    }
}

/// FNV-1a, enough to notice an edited migration; not a security control.
fn checksum(sql: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sql.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

pub(crate) async fn run(pool: &AnyPool, backend: Backend) -> Result<Vec<&'static str>> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
             name TEXT PRIMARY KEY, checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await?;
    let mut applied = Vec::new();
    for migration in list(backend) {
        let mut tx = crate::tx::Tx::begin(pool).await?;
        if backend == Backend::Postgres {
            // Serialise concurrent migrators (several replicas starting at once).
            sqlx::query("SELECT pg_advisory_xact_lock(7291001)")
                .execute(&mut *tx)
                .await?;
        }
        let existing = sqlx::query("SELECT checksum FROM schema_migrations WHERE name = $1")
            .bind(migration.name)
            .fetch_optional(&mut *tx)
            .await?;
        let sum = checksum(migration.sql);
        if let Some(row) = existing {
            let stored: String = row.try_get("checksum")?;
            if stored != sum {
                return Err(StoreError::Migration(format!(
                    "migration {} was changed after it was applied; restore its original text",
                    migration.name
                )));
            }
            continue;
        }
        sqlx::raw_sql(migration.sql).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO schema_migrations (name, checksum, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(migration.name)
        .bind(&sum)
        .bind(unix_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(
            migration = migration.name,
            backend = backend.name(),
            "migration applied"
        );
        applied.push(migration.name);
    }
    Ok(applied)
}

fn unix_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
