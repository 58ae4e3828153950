//! Card charges: written together with their outbox event, listed newest first, summed.

use crate::{get_i64, get_opt_i64, get_string};
use crate::{Result, Store, StoreError};

pub struct NewCharge<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub name_enc: &'a [u8],
    pub category: &'a str,
    pub amount_minor: i64,
    /// The calendar month (`YYYY-MM`) of `now`, kept for analytics.
    pub month: &'a str,
    /// `(key, hash of the request)` when the client sent an `Idempotency-Key`.
    pub idempotency: Option<(&'a str, &'a str)>,
    pub now: i64,
    /// True when the caller has already asked the users service about the person's standing
    /// (roles running as separate services); false checks it here, in the same transaction.
    pub standing_checked: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ChargeOutcome {
    Created,
    /// Same key, same request: the first charge stands and nothing new is written.
    Replayed,
    /// Same key, different request.
    KeyReused,
    NotRegistered,
    NoConsent,
    Restricted,
    ErasurePending,
}

#[derive(Debug, Clone)]
pub struct TransactionRow {
    pub seq: i64,
    pub id: String,
    pub user_id: Option<String>,
    pub name_enc: Option<Vec<u8>>,
    pub category: String,
    pub amount_minor: i64,
    pub points_earned: Option<i64>,
    pub processed: bool,
    pub created_at: i64,
}

/// What the reward worker needs to know about one event's transaction, read for a whole
/// batch of events at once by [`Store::reward_subjects`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewardSubject {
    pub id: String,
    /// None once erasure has unlinked the transaction from its person.
    pub user_id: Option<String>,
    pub category: String,
    pub amount_minor: i64,
    pub processed: bool,
    /// The person has restricted processing (Art. 18): rewards wait until it is lifted.
    pub restricted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendingRow {
    pub category: String,
    pub amount_minor: i64,
}

impl Store {
    /// Checks the person's standing and writes the charge and its reward event atomically:
    /// either both exist or neither does, so no acknowledged charge can miss its reward.
    pub async fn create_charge(&self, charge: &NewCharge<'_>) -> Result<ChargeOutcome> {
        if self.backend == crate::Backend::Postgres && charge.idempotency.is_none() {
            return self.create_charge_in_one_statement(charge).await;
        }
        let mut tx = crate::tx::Tx::begin(&self.writer).await?;
        if let Some((key, request_hash)) = charge.idempotency {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (user_id, key, request_hash, response, created_at) \
                 VALUES ($1, $2, $3, '', $4) ON CONFLICT (user_id, key) DO NOTHING",
            )
            .bind(charge.user_id)
            .bind(format!("charge:{key}"))
            .bind(request_hash)
            .bind(charge.now)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 0 {
                let row = sqlx::query(
                    "SELECT request_hash FROM idempotency_keys WHERE user_id = $1 AND key = $2",
                )
                .bind(charge.user_id)
                .bind(format!("charge:{key}"))
                .fetch_one(&mut *tx)
                .await?;
                let same = get_string(&row, "request_hash")? == request_hash;
                return Ok(if same {
                    ChargeOutcome::Replayed
                } else {
                    ChargeOutcome::KeyReused
                });
            }
        }
        if !charge.standing_checked {
            let standing = sqlx::query(
                "SELECT consent_rewards, restricted_at, erasure_requested_at FROM bank_users WHERE id = $1",
            )
            .bind(charge.user_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(standing) = standing else {
                return Ok(ChargeOutcome::NotRegistered);
            };
            let outcome = standing_outcome(&standing)?;
            if outcome != ChargeOutcome::Created {
                return Ok(outcome);
            }
        }
        charge_query(
            "INSERT INTO transactions (id, user_id, name_enc, category, amount_minor, month, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            charge,
        )
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_write)?;
        sqlx::query(
            "INSERT INTO outbox (kind, subject, created_at, available_at) \
             VALUES ('transaction.created', $1, $2, $2)",
        )
        .bind(charge.id)
        .bind(charge.now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ChargeOutcome::Created)
    }

    /// PostgreSQL, no idempotency key: the standing check and both inserts as one statement
    /// (data-modifying `WITH`), which PostgreSQL runs as one implicit transaction. Same
    /// outcome as the statement-by-statement path below, in one round trip instead of six
    /// (`BEGIN`, check, two inserts, `COMMIT`): each round trip costs the server a wake-up
    /// and the kernel two loopback sends, the largest share of a charge's CPU
    /// (docs/performance.md). SQLite has no data-modifying `WITH` and no network hop.
    async fn create_charge_in_one_statement(
        &self,
        charge: &NewCharge<'_>,
    ) -> Result<ChargeOutcome> {
        let sql = if charge.standing_checked {
            "WITH created AS (\
               INSERT INTO transactions (id, user_id, name_enc, category, amount_minor, month, created_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id) \
             INSERT INTO outbox (kind, subject, created_at, available_at) \
             SELECT 'transaction.created', id, $7, $7 FROM created"
        } else {
            // The inserts happen only when the standing allows them; the standing comes back
            // either way, so the caller learns why a charge was refused.
            "WITH standing AS (\
               SELECT consent_rewards, restricted_at, erasure_requested_at FROM bank_users WHERE id = $2), \
             created AS (\
               INSERT INTO transactions (id, user_id, name_enc, category, amount_minor, month, created_at) \
               SELECT $1, $2, $3, $4, $5, $6, $7 FROM standing \
               WHERE erasure_requested_at IS NULL AND consent_rewards = 1 AND restricted_at IS NULL \
               RETURNING id), \
             queued AS (\
               INSERT INTO outbox (kind, subject, created_at, available_at) \
               SELECT 'transaction.created', id, $7, $7 FROM created) \
             SELECT consent_rewards, restricted_at, erasure_requested_at FROM standing"
        };
        let query = charge_query(sql, charge);
        if charge.standing_checked {
            query
                .execute(&self.writer)
                .await
                .map_err(StoreError::from_write)?;
            return Ok(ChargeOutcome::Created);
        }
        let standing = query
            .fetch_optional(&self.writer)
            .await
            .map_err(StoreError::from_write)?;
        let Some(standing) = standing else {
            return Ok(ChargeOutcome::NotRegistered);
        };
        standing_outcome(&standing)
    }

    /// A page of the person's transactions, newest first, starting after `before_seq`.
    pub async fn list_transactions(
        &self,
        user_id: &str,
        before_seq: Option<i64>,
        limit: i64,
    ) -> Result<Vec<TransactionRow>> {
        let rows = sqlx::query(
            "SELECT seq, id, user_id, name_enc, category, amount_minor, points_earned, processed, \
             created_at FROM transactions WHERE user_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(user_id)
        .bind(before_seq.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(transaction_from).collect()
    }

    pub async fn transaction(&self, id: &str) -> Result<Option<TransactionRow>> {
        let row = sqlx::query(
            "SELECT seq, id, user_id, name_enc, category, amount_minor, points_earned, processed, \
             created_at FROM transactions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(transaction_from).transpose()
    }

    /// The transactions behind a batch of reward events, with their owners' restriction, in
    /// one round trip. Ids with no transaction are simply absent from the answer.
    pub async fn reward_subjects(&self, ids: &[&str]) -> Result<Vec<RewardSubject>> {
        let mut conn = self.reader.acquire().await?;
        reward_subjects_on(&mut conn, ids).await
    }

    /// Exact sums per category, in integer minor units.
    pub async fn spending(&self, user_id: &str) -> Result<Vec<SpendingRow>> {
        let rows = sqlx::query(
            "SELECT category, CAST(SUM(amount_minor) AS BIGINT) AS total FROM transactions \
             WHERE user_id = $1 GROUP BY category ORDER BY category",
        )
        .bind(user_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SpendingRow {
                    category: get_string(row, "category")?,
                    amount_minor: get_i64(row, "total")?,
                })
            })
            .collect()
    }
}

pub(crate) async fn reward_subjects_on(
    conn: &mut sqlx::AnyConnection,
    ids: &[&str],
) -> Result<Vec<RewardSubject>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT t.id, t.user_id, t.category, t.amount_minor, t.processed, u.restricted_at \
         FROM transactions t LEFT JOIN bank_users u ON u.id = t.user_id WHERE t.id IN ({})",
        placeholders(1, ids.len())
    );
    let mut query = sqlx::query(&sql);
    for id in ids {
        query = query.bind(*id);
    }
    let rows = query.fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|row| {
            Ok(RewardSubject {
                id: get_string(row, "id")?,
                user_id: crate::get_opt_string(row, "user_id")?,
                category: get_string(row, "category")?,
                amount_minor: get_i64(row, "amount_minor")?,
                processed: get_i64(row, "processed")? == 1,
                restricted: get_opt_i64(row, "restricted_at")?.is_some(),
            })
        })
        .collect()
}

/// `$first, $first+1, ...`: `count` numbered placeholders for an `IN (...)` list.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads the columns by position (the order every `SELECT` above lists them in): looking
/// each column up by name costs a search per value, 450 of them on a page of 50.
fn transaction_from(row: &sqlx::any::AnyRow) -> Result<TransactionRow> {
    use sqlx::Row;
    let get = |e| StoreError::Database(e);
    Ok(TransactionRow {
        seq: row.try_get::<i64, _>(0).map_err(get)?,
        id: row.try_get::<String, _>(1).map_err(get)?,
        user_id: row.try_get::<Option<String>, _>(2).map_err(get)?,
        name_enc: row.try_get::<Option<Vec<u8>>, _>(3).map_err(get)?,
        category: row.try_get::<String, _>(4).map_err(get)?,
        amount_minor: row.try_get::<i64, _>(5).map_err(get)?,
        points_earned: row.try_get::<Option<i64>, _>(6).map_err(get)?,
        processed: row.try_get::<i64, _>(7).map_err(get)? == 1,
        created_at: row.try_get::<i64, _>(8).map_err(get)?,
    })
}

/// `sql` with the charge's values bound as `$1` to `$7`: id, person, sealed name, category,
/// amount, month, time.
fn charge_query<'q>(
    sql: &'q str,
    charge: &NewCharge<'q>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    sqlx::query(sql)
        .bind(charge.id)
        .bind(charge.user_id)
        .bind(charge.name_enc)
        .bind(charge.category)
        .bind(charge.amount_minor)
        .bind(charge.month)
        .bind(charge.now)
}

/// What a person's standing row (`consent_rewards, restricted_at, erasure_requested_at`) says
/// about a new charge: `Created` when it may be written. The one place both charge paths
/// (and the single statement's `WHERE`) decide it; keep them in step.
fn standing_outcome(standing: &sqlx::any::AnyRow) -> Result<ChargeOutcome> {
    Ok(
        if get_opt_i64(standing, "erasure_requested_at")?.is_some() {
            ChargeOutcome::ErasurePending
        } else if get_i64(standing, "consent_rewards")? != 1 {
            ChargeOutcome::NoConsent
        } else if get_opt_i64(standing, "restricted_at")?.is_some() {
            ChargeOutcome::Restricted
        } else {
            ChargeOutcome::Created
        },
    )
}
