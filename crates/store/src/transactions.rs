//! Card charges: written together with their outbox event, listed newest first, summed.

use crate::{get_i64, get_opt_bytes, get_opt_i64, get_string};
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendingRow {
    pub category: String,
    pub amount_minor: i64,
}

impl Store {
    /// Checks the person's standing and writes the charge and its reward event atomically:
    /// either both exist or neither does, so no acknowledged charge can miss its reward.
    pub async fn create_charge(&self, charge: &NewCharge<'_>) -> Result<ChargeOutcome> {
        let mut tx = self.writer.begin().await?;
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
            if get_opt_i64(&standing, "erasure_requested_at")?.is_some() {
                return Ok(ChargeOutcome::ErasurePending);
            }
            if get_i64(&standing, "consent_rewards")? != 1 {
                return Ok(ChargeOutcome::NoConsent);
            }
            if get_opt_i64(&standing, "restricted_at")?.is_some() {
                return Ok(ChargeOutcome::Restricted);
            }
        }
        sqlx::query(
            "INSERT INTO transactions (id, user_id, name_enc, category, amount_minor, month, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(charge.id)
        .bind(charge.user_id)
        .bind(charge.name_enc)
        .bind(charge.category)
        .bind(charge.amount_minor)
        .bind(charge.month)
        .bind(charge.now)
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

fn transaction_from(row: &sqlx::any::AnyRow) -> Result<TransactionRow> {
    Ok(TransactionRow {
        seq: get_i64(row, "seq")?,
        id: get_string(row, "id")?,
        user_id: crate::get_opt_string(row, "user_id")?,
        name_enc: get_opt_bytes(row, "name_enc")?,
        category: get_string(row, "category")?,
        amount_minor: get_i64(row, "amount_minor")?,
        points_earned: get_opt_i64(row, "points_earned")?,
        processed: get_i64(row, "processed")? == 1,
        created_at: get_i64(row, "created_at")?,
    })
}
