//! Data-subject requests and the erasure of a person from every table.

use crate::{get_i64, get_opt_i64, get_string};
use crate::{Result, Store, StoreError};

#[derive(Debug, Clone)]
pub struct PrivacyRequest {
    pub id: String,
    pub kind: String,
    pub status: String,
    pub received_at: i64,
    pub due_at: i64,
    pub completed_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ErasureWork {
    pub request_id: String,
    pub user_id: String,
}

impl Store {
    /// Records an erasure request and marks the person as leaving. Returns false when one is
    /// already pending (the earlier request stands).
    pub async fn request_erasure(
        &self,
        request_id: &str,
        user_id: &str,
        now: i64,
        run_after: i64,
        due_at: i64,
    ) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let pending = sqlx::query(
            "SELECT 1 AS one FROM privacy_requests WHERE user_id = $1 AND kind = 'erasure' AND status = 'pending'",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        if pending.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO privacy_requests (id, user_id, kind, status, received_at, run_after, due_at) \
             VALUES ($1, $2, 'erasure', 'pending', $3, $4, $5)",
        )
        .bind(request_id)
        .bind(user_id)
        .bind(now)
        .bind(run_after)
        .bind(due_at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_write)?;
        sqlx::query("UPDATE bank_users SET erasure_requested_at = $2 WHERE id = $1")
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn privacy_requests(&self, user_id: &str) -> Result<Vec<PrivacyRequest>> {
        let rows = sqlx::query(
            "SELECT id, kind, status, received_at, due_at, completed_at FROM privacy_requests \
             WHERE user_id = $1 ORDER BY received_at",
        )
        .bind(user_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PrivacyRequest {
                    id: get_string(row, "id")?,
                    kind: get_string(row, "kind")?,
                    status: get_string(row, "status")?,
                    received_at: get_i64(row, "received_at")?,
                    due_at: get_i64(row, "due_at")?,
                    completed_at: get_opt_i64(row, "completed_at")?,
                })
            })
            .collect()
    }

    pub async fn due_erasures(&self, now: i64, limit: i64) -> Result<Vec<ErasureWork>> {
        let rows = sqlx::query(
            "SELECT id, user_id FROM privacy_requests WHERE kind = 'erasure' AND status = 'pending' \
             AND run_after <= $1 ORDER BY run_after LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ErasureWork {
                    request_id: get_string(row, "id")?,
                    user_id: get_string(row, "user_id")?,
                })
            })
            .collect()
    }

    /// Removes the person from every table in one transaction: identity account (with its
    /// codes, sessions and tokens), profile, consent ledger, points, idempotency records.
    /// Transactions stay for the bank's books but lose their link to the person and the
    /// merchant text. Returns false if the request was already completed.
    pub async fn erase_person(&self, request_id: &str, user_id: &str, now: i64) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
        let claimed = sqlx::query(
            "UPDATE privacy_requests SET status = 'completed', completed_at = $2 \
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(request_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() != 1 {
            return Ok(false);
        }
        for sql in [
            "DELETE FROM accounts WHERE id = $1",
            "DELETE FROM bank_users WHERE id = $1",
            "DELETE FROM consent_events WHERE user_id = $1",
            "DELETE FROM points_accounts WHERE user_id = $1",
            "DELETE FROM points_ledger WHERE user_id = $1",
            "DELETE FROM idempotency_keys WHERE user_id = $1",
            "UPDATE transactions SET user_id = NULL, name_enc = NULL WHERE user_id = $1",
        ] {
            sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
