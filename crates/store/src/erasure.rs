//! Data-subject requests, and the erasure of a person from every table.

use crate::{get_i64, get_opt_i64, get_string};
use crate::{Result, Store, StoreError};
use std::collections::BTreeMap;

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

/// Amount bands of anonymous facts, in minor units: under 10, 10–50, 50–100, 100–500, 500 up.
pub const BAND_LIMITS: [i64; 4] = [1_000, 5_000, 10_000, 50_000];

pub fn band_of(amount_minor: i64) -> usize {
    BAND_LIMITS
        .iter()
        .take_while(|limit| amount_minor >= **limit)
        .count()
}

fn request_from(row: &sqlx::any::AnyRow) -> Result<PrivacyRequest> {
    Ok(PrivacyRequest {
        id: get_string(row, "id")?,
        kind: get_string(row, "kind")?,
        status: get_string(row, "status")?,
        received_at: get_i64(row, "received_at")?,
        due_at: get_i64(row, "due_at")?,
        completed_at: get_opt_i64(row, "completed_at")?,
    })
}

impl Store {
    /// Records an erasure request and marks the person as leaving. Returns the pending
    /// request: the new one, or the earlier one that still stands.
    pub async fn request_erasure(
        &self,
        request_id: &str,
        user_id: &str,
        now: i64,
        run_after: i64,
        due_at: i64,
    ) -> Result<(PrivacyRequest, bool)> {
        let mut tx = crate::tx::Tx::begin(&self.writer).await?;
        // The partial unique index makes this atomic: of many concurrent requests, one inserts.
        let inserted = sqlx::query(
            "INSERT INTO privacy_requests (id, user_id, kind, status, received_at, run_after, due_at) \
             VALUES ($1, $2, 'erasure', 'pending', $3, $4, $5) \
             ON CONFLICT (user_id) WHERE kind = 'erasure' AND status = 'pending' DO NOTHING",
        )
        .bind(request_id)
        .bind(user_id)
        .bind(now)
        .bind(run_after)
        .bind(due_at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_write)?;
        if inserted.rows_affected() == 0 {
            let row = sqlx::query(
                "SELECT id, kind, status, received_at, due_at, completed_at FROM privacy_requests \
                 WHERE user_id = $1 AND kind = 'erasure' AND status = 'pending'",
            )
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
            return Ok((request_from(&row)?, false));
        }
        sqlx::query("UPDATE bank_users SET erasure_requested_at = $2 WHERE id = $1")
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let request = PrivacyRequest {
            id: request_id.to_owned(),
            kind: "erasure".into(),
            status: "pending".into(),
            received_at: now,
            due_at,
            completed_at: None,
        };
        Ok((request, true))
    }

    /// Records a request that was carried out at once (export, rectification, restriction,
    /// objection), so the person and the administrators can see it (Art. 12).
    pub async fn record_completed_request(
        &self,
        request_id: &str,
        user_id: &str,
        kind: &str,
        now: i64,
        due_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO privacy_requests (id, user_id, kind, status, received_at, run_after, due_at, completed_at) \
             VALUES ($1, $2, $3, 'completed', $4, $4, $5, $4)",
        )
        .bind(request_id)
        .bind(user_id)
        .bind(kind)
        .bind(now)
        .bind(due_at)
        .execute(&self.writer)
        .await
        .map_err(StoreError::from_write)?;
        Ok(())
    }

    pub async fn privacy_requests(&self, user_id: &str) -> Result<Vec<PrivacyRequest>> {
        let rows = sqlx::query(
            "SELECT id, kind, status, received_at, due_at, completed_at FROM privacy_requests \
             WHERE user_id = $1 ORDER BY received_at",
        )
        .bind(user_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(request_from).collect()
    }

    /// Every request for administrators: pending ones past their due date first, then pending
    /// by due date, then the most recently completed.
    pub async fn request_queue(&self, now: i64, limit: i64) -> Result<Vec<PrivacyRequest>> {
        let rows = sqlx::query(
            "SELECT id, kind, status, received_at, due_at, completed_at FROM privacy_requests \
             ORDER BY CASE WHEN status = 'pending' AND due_at < $1 THEN 0 \
                           WHEN status = 'pending' THEN 1 ELSE 2 END, \
                      CASE WHEN status = 'pending' THEN due_at ELSE -completed_at END \
             LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(request_from).collect()
    }

    /// How many erasure requests are pending (for metrics).
    pub async fn pending_erasures(&self) -> Result<i64> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM privacy_requests WHERE kind = 'erasure' AND status = 'pending'",
        )
        .fetch_one(&self.reader)
        .await?;
        get_i64(&row, "n")
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

    /// Carries out an erasure request (see [`Store::purge_person`]). Returns false if the
    /// request was already completed.
    pub async fn erase_person(&self, request_id: &str, user_id: &str, now: i64) -> Result<bool> {
        let mut tx = crate::tx::Tx::begin(&self.writer).await?;
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
        erase_in(&mut tx, user_id, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Removes every trace of a person that is still in the database, e.g. after a backup
    /// from before their erasure was restored. Returns true when something was removed.
    pub async fn purge_person(&self, user_id: &str, now: i64) -> Result<bool> {
        let mut tx = crate::tx::Tx::begin(&self.writer).await?;
        let found = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM accounts WHERE id = $1) + \
                    (SELECT COUNT(*) FROM bank_users WHERE id = $1) + \
                    (SELECT COUNT(*) FROM transactions WHERE user_id = $1) AS n",
        )
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        if get_i64(&found, "n")? == 0 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE privacy_requests SET status = 'completed', completed_at = $2 \
             WHERE user_id = $1 AND kind = 'erasure' AND status = 'pending'",
        )
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        erase_in(&mut tx, user_id, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Turns the person's transactions into anonymous facts, then deletes them and every other
/// row about the person: identity account (with its codes, sessions and tokens), profile,
/// consent ledger, points and idempotency records, and their pending reward events.
async fn erase_in(tx: &mut crate::tx::Tx, user_id: &str, now: i64) -> Result<()> {
    forget_transactions_in(tx, user_id, now).await?;
    forget_profile_in(tx, user_id).await?;
    forget_account_in(tx, user_id).await
}

/// The transactions role's part: the person's charges become anonymous facts and go, with
/// their reward events, points and idempotency records. Running it twice changes nothing:
/// the second run finds no transactions, so no fact is counted twice.
async fn forget_transactions_in(tx: &mut crate::tx::Tx, user_id: &str, now: i64) -> Result<()> {
    let rows =
        sqlx::query("SELECT month, category, amount_minor FROM transactions WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(&mut **tx)
            .await?;
    let mut cells: BTreeMap<(String, String), [i64; 5]> = BTreeMap::new();
    for row in &rows {
        let key = (get_string(row, "month")?, get_string(row, "category")?);
        cells.entry(key).or_default()[band_of(get_i64(row, "amount_minor")?)] += 1;
    }
    for ((month, category), bands) in &cells {
        sqlx::query(
            "INSERT INTO anonymous_facts (month, category, contributors, band_under_10, band_10_to_50, \
             band_50_to_100, band_100_to_500, band_500_up, updated_at) VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (month, category) DO UPDATE SET \
             contributors = anonymous_facts.contributors + 1, \
             band_under_10 = anonymous_facts.band_under_10 + excluded.band_under_10, \
             band_10_to_50 = anonymous_facts.band_10_to_50 + excluded.band_10_to_50, \
             band_50_to_100 = anonymous_facts.band_50_to_100 + excluded.band_50_to_100, \
             band_100_to_500 = anonymous_facts.band_100_to_500 + excluded.band_100_to_500, \
             band_500_up = anonymous_facts.band_500_up + excluded.band_500_up, \
             updated_at = excluded.updated_at",
        )
        .bind(month)
        .bind(category)
        .bind(bands[0])
        .bind(bands[1])
        .bind(bands[2])
        .bind(bands[3])
        .bind(bands[4])
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    for sql in [
        "DELETE FROM outbox WHERE subject IN (SELECT id FROM transactions WHERE user_id = $1)",
        "DELETE FROM transactions WHERE user_id = $1",
        "DELETE FROM points_accounts WHERE user_id = $1",
        "DELETE FROM points_ledger WHERE user_id = $1",
        "DELETE FROM idempotency_keys WHERE user_id = $1",
    ] {
        sqlx::query(sql).bind(user_id).execute(&mut **tx).await?;
    }
    Ok(())
}

/// The users role's part: profile, consent ledger and the person's other requests. Their
/// erasure request stays as the record that the erasure was done (and the audit log keeps
/// the pseudonymous trail).
async fn forget_profile_in(tx: &mut crate::tx::Tx, user_id: &str) -> Result<()> {
    for sql in [
        "DELETE FROM bank_users WHERE id = $1",
        "DELETE FROM consent_events WHERE user_id = $1",
        "DELETE FROM privacy_requests WHERE user_id = $1 AND kind <> 'erasure'",
    ] {
        sqlx::query(sql).bind(user_id).execute(&mut **tx).await?;
    }
    Ok(())
}

/// The identity role's part: the account, and with it (by cascade) codes, sessions and
/// refresh tokens.
async fn forget_account_in(tx: &mut crate::tx::Tx, user_id: &str) -> Result<()> {
    sqlx::query("DELETE FROM accounts WHERE id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Erasure when the roles run as separate services: each role forgets its own part when the
/// erasure service asks it to, and the erasure service claims and completes the request.
impl Store {
    pub async fn forget_transactions(&self, user_id: &str, now: i64) -> Result<()> {
        let mut tx = crate::tx::Tx::begin(&self.writer).await?;
        forget_transactions_in(&mut tx, user_id, now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn forget_profile(&self, user_id: &str) -> Result<()> {
        let mut tx = crate::tx::Tx::begin(&self.writer).await?;
        forget_profile_in(&mut tx, user_id).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn forget_account(&self, user_id: &str) -> Result<()> {
        let mut tx = crate::tx::Tx::begin(&self.writer).await?;
        forget_account_in(&mut tx, user_id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes a pending erasure request for `lease_until - now` microseconds, so that of
    /// several erasure replicas one works on it; if that replica dies the lease runs out and
    /// another takes it over. Returns false when someone else holds it or it is done.
    pub async fn claim_erasure(
        &self,
        request_id: &str,
        now: i64,
        lease_until: i64,
    ) -> Result<bool> {
        let claimed = sqlx::query(
            "UPDATE privacy_requests SET run_after = $3 \
             WHERE id = $1 AND kind = 'erasure' AND status = 'pending' AND run_after <= $2",
        )
        .bind(request_id)
        .bind(now)
        .bind(lease_until)
        .execute(&self.writer)
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// Marks a claimed erasure request as carried out. Returns false if it already was.
    pub async fn complete_erasure(&self, request_id: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE privacy_requests SET status = 'completed', completed_at = $2 \
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(request_id)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records that scheduled job `job` runs for period `period` (e.g. the number of whole
    /// intervals since the epoch). Exactly one caller per (job, period) gets true, however
    /// many replicas ask: the primary key decides.
    pub async fn claim_period(
        &self,
        job: &str,
        period: i64,
        holder: &str,
        now: i64,
    ) -> Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO scheduled_runs (job, period, holder, started_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (job, period) DO NOTHING",
        )
        .bind(job)
        .bind(period)
        .bind(holder)
        .bind(now)
        .execute(&self.writer)
        .await?;
        if inserted.rows_affected() == 1 {
            // Old rows say nothing useful; keep a day's worth of history at most.
            sqlx::query("DELETE FROM scheduled_runs WHERE job = $1 AND started_at < $2")
                .bind(job)
                .bind(now - 24 * 3600 * 1_000_000)
                .execute(&self.writer)
                .await?;
        }
        Ok(inserted.rows_affected() == 1)
    }
}
