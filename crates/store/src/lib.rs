//! Storage for both backends behind one API.
//!
//! One SQL text serves SQLite and PostgreSQL (`$n` placeholders work on both; only integers,
//! text and bytes cross the boundary), so the two backends cannot drift apart in behaviour.
//! Where the dialects differ (row locking, identity columns) the code says so. Each backend
//! keeps its own migrations with identical names. The store contract tests run on both.

mod analytics;
mod audit;
mod erasure;
mod identity;
mod migrate;
mod outbox;
mod points;
mod transactions;
mod tx;
mod users;

pub use analytics::AnalyticsCell;
pub use audit::{AuditCheckpoint, AuditRecord, NewAuditEntry, GENESIS_HASH};
pub use erasure::{band_of, ErasureWork, PrivacyRequest, BAND_LIMITS};
pub use identity::{
    AccountAuth, AccountRecord, CodeExchange, CodeGrant, NewAccount, NewAuthCode, RotatedRefresh,
    RotationOutcome, SessionSeed, SessionState,
};
pub use migrate::{migration_names, Backend, MIGRATIONS_POSTGRES, MIGRATIONS_SQLITE};
pub use outbox::{OutboxEvent, OutboxStats, ParkedEvent};
pub use points::{PointsSummary, RedeemOutcome, RewardOutcome};
pub use transactions::{ChargeOutcome, NewCharge, SpendingRow, TransactionRow};
pub use users::{BankUser, ConsentEvent, ConsentRecord, Switch};

use sqlx::any::{AnyPoolOptions, AnyQueryResult, AnyRow};
pub use sqlx::Error as SqlxError;
use sqlx::{AnyPool, Executor};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a record with the same key already exists")]
    Conflict,
    /// The person asked to be erased; nothing new may start for them.
    #[error("the person's erasure is pending")]
    ErasurePending,
    /// A record this write refers to is gone (deleted concurrently, e.g. by erasure).
    #[error("a record this write refers to no longer exists")]
    Missing,
    #[error("the database is unavailable or failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data is not what this version expects: {0}")]
    Corrupt(String),
    #[error("migration failed: {0}")]
    Migration(String),
}

impl StoreError {
    /// Turns unique violations into `Conflict`; everything else stays a database error.
    fn from_write(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err {
            if db.is_unique_violation() {
                return StoreError::Conflict;
            }
            if db.is_foreign_key_violation() {
                return StoreError::Missing;
            }
        }
        StoreError::Database(err)
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Connection settings for [`Store::connect`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            // Short, so requests answer 503 quickly while the database is away.
            acquire_timeout: Duration::from_secs(2),
        }
    }
}

/// The one handle to the database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    /// Writes go here. On SQLite this pool has exactly one connection, so writers queue in
    /// the process instead of failing with "database is locked".
    writer: AnyPool,
    /// Reads go here. Today it is the same pool as `writer` on both backends: on SQLite a
    /// second connection can keep reading an old snapshot while a statement it stopped early
    /// (`fetch_optional`) is not reset, which let a just-erased account log in once. Kept as
    /// a separate handle so PostgreSQL read replicas can be added without touching queries.
    reader: AnyPool,
    backend: Backend,
}

fn install_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(sqlx::any::install_default_drivers);
}

impl Store {
    /// Opens (creating if needed) the SQLite database file at `path`.
    pub async fn open_sqlite(path: &Path, options: &StoreOptions) -> Result<Self> {
        install_drivers();
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let writer = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(false)
            .after_connect(|conn, _| sqlite_pragmas(conn))
            .connect(&url)
            .await?;
        let reader = writer.clone();
        Ok(Self {
            writer,
            reader,
            backend: Backend::Sqlite,
        })
    }

    /// Connects to PostgreSQL.
    pub async fn connect_postgres(url: &str, options: &StoreOptions) -> Result<Self> {
        install_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(false)
            .after_connect(|conn, _| postgres_session(conn))
            .connect(url)
            .await?;
        Ok(Self {
            writer: pool.clone(),
            reader: pool,
            backend: Backend::Postgres,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies every pending migration of this backend.
    pub async fn migrate(&self) -> Result<Vec<&'static str>> {
        migrate::run(&self.writer, self.backend).await
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.reader).await.is_ok()
    }

    /// After an erasure: on SQLite, moves the write-ahead log into the database file and
    /// truncates it, so deleted rows do not linger in old log frames (`secure_delete` already
    /// zeroes them in the file). PostgreSQL reclaims dead rows with (auto)vacuum.
    pub async fn compact_after_erasure(&self) -> Result<()> {
        if self.backend == Backend::Sqlite {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.writer)
                .await?;
        }
        Ok(())
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    /// `FOR UPDATE SKIP LOCKED` where the backend has row locks; SQLite's single writer
    /// already serialises claimers.
    fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        }
    }
}

type ConnectFuture<'c> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c>>;

/// WAL lets readers run beside the writer; `synchronous = FULL` makes every commit durable
/// before it is acknowledged (promise 5), at a cost measured in docs/performance.md.
fn sqlite_pragmas(conn: &mut sqlx::AnyConnection) -> ConnectFuture<'_> {
    Box::pin(async move {
        conn.execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA secure_delete = ON;",
        )
        .await
        .map(|_| ())
    })
}

/// A safety net for transactions left open by a request that was cancelled mid-way (a known
/// sqlx 0.8 issue): PostgreSQL ends such sessions instead of letting them hold row locks.
fn postgres_session(conn: &mut sqlx::AnyConnection) -> ConnectFuture<'_> {
    Box::pin(async move {
        conn.execute("SET idle_in_transaction_session_timeout = 30000")
            .await
            .map(|_| ())
    })
}

fn get_i64(row: &AnyRow, column: &str) -> Result<i64> {
    use sqlx::Row;
    row.try_get::<i64, _>(column).map_err(StoreError::Database)
}

fn get_opt_i64(row: &AnyRow, column: &str) -> Result<Option<i64>> {
    use sqlx::Row;
    row.try_get::<Option<i64>, _>(column)
        .map_err(StoreError::Database)
}

fn get_string(row: &AnyRow, column: &str) -> Result<String> {
    use sqlx::Row;
    row.try_get::<String, _>(column)
        .map_err(StoreError::Database)
}

fn get_opt_string(row: &AnyRow, column: &str) -> Result<Option<String>> {
    use sqlx::Row;
    row.try_get::<Option<String>, _>(column)
        .map_err(StoreError::Database)
}

fn get_opt_bytes(row: &AnyRow, column: &str) -> Result<Option<Vec<u8>>> {
    use sqlx::Row;
    row.try_get::<Option<Vec<u8>>, _>(column)
        .map_err(StoreError::Database)
}

fn affected(result: &AnyQueryResult) -> u64 {
    result.rows_affected()
}
