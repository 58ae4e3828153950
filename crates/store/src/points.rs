//! Points: written once per transaction, redeemed atomically, never below zero.

use crate::{get_i64, get_opt_string, get_string};
use crate::{Result, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PointsSummary {
    pub balance: i64,
    pub earned: i64,
    pub redeemed: i64,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RewardOutcome {
    Rewarded,
    AlreadyProcessed,
    NotFound,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RedeemOutcome {
    Redeemed {
        balance: i64,
    },
    /// The same idempotency key was used before; this is the response stored then.
    Replayed {
        response: String,
    },
    KeyReused,
    Insufficient {
        balance: i64,
    },
}

impl Store {
    /// Records the points of a transaction exactly once. The conditional update is the lock:
    /// a second writer for the same transaction finds it already processed.
    pub async fn reward_transaction(
        &self,
        transaction_id: &str,
        points: i64,
        now: i64,
    ) -> Result<RewardOutcome> {
        let mut tx = self.writer.begin().await?;
        let row = sqlx::query(
            "UPDATE transactions SET points_earned = $2, processed = 1 \
             WHERE id = $1 AND processed = 0 RETURNING user_id",
        )
        .bind(transaction_id)
        .bind(points)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let exists = sqlx::query("SELECT 1 AS one FROM transactions WHERE id = $1")
                .bind(transaction_id)
                .fetch_optional(&mut *tx)
                .await?;
            return Ok(if exists.is_some() {
                RewardOutcome::AlreadyProcessed
            } else {
                RewardOutcome::NotFound
            });
        };
        // A transaction unlinked by erasure earns nobody anything.
        if let Some(user_id) = get_opt_string(&row, "user_id")? {
            sqlx::query(
                "INSERT INTO points_accounts (user_id, balance, earned, redeemed) VALUES ($1, $2, $2, 0) \
                 ON CONFLICT (user_id) DO UPDATE SET balance = points_accounts.balance + $2, \
                 earned = points_accounts.earned + $2",
            )
            .bind(&user_id)
            .bind(points)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO points_ledger (user_id, delta, kind, reference, at) \
                 VALUES ($1, $2, 'earned', $3, $4)",
            )
            .bind(&user_id)
            .bind(points)
            .bind(transaction_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(RewardOutcome::Rewarded)
    }

    pub async fn points(&self, user_id: &str) -> Result<PointsSummary> {
        let row =
            sqlx::query("SELECT balance, earned, redeemed FROM points_accounts WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&self.reader)
                .await?;
        match row {
            None => Ok(PointsSummary::default()),
            Some(row) => Ok(PointsSummary {
                balance: get_i64(&row, "balance")?,
                earned: get_i64(&row, "earned")?,
                redeemed: get_i64(&row, "redeemed")?,
            }),
        }
    }

    /// Takes points off the balance if, and only if, enough are there. The check and the
    /// update are one statement, so concurrent redemptions cannot overdraw.
    pub async fn redeem_points(
        &self,
        user_id: &str,
        redemption_id: &str,
        points: i64,
        idempotency: (&str, &str),
        response_for: impl FnOnce(i64) -> String,
        now: i64,
    ) -> Result<RedeemOutcome> {
        let (key, request_hash) = idempotency;
        let stored_key = format!("redeem:{key}");
        let mut tx = self.writer.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (user_id, key, request_hash, response, created_at) \
             VALUES ($1, $2, $3, '', $4) ON CONFLICT (user_id, key) DO NOTHING",
        )
        .bind(user_id)
        .bind(&stored_key)
        .bind(request_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            let row = sqlx::query(
                "SELECT request_hash, response FROM idempotency_keys WHERE user_id = $1 AND key = $2",
            )
            .bind(user_id)
            .bind(&stored_key)
            .fetch_one(&mut *tx)
            .await?;
            if get_string(&row, "request_hash")? != request_hash {
                return Ok(RedeemOutcome::KeyReused);
            }
            return Ok(RedeemOutcome::Replayed {
                response: get_string(&row, "response")?,
            });
        }
        let row = sqlx::query(
            "UPDATE points_accounts SET balance = balance - $2, redeemed = redeemed + $2 \
             WHERE user_id = $1 AND balance >= $2 RETURNING balance",
        )
        .bind(user_id)
        .bind(points)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let balance = sqlx::query("SELECT balance FROM points_accounts WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?
                .map(|row| get_i64(&row, "balance"))
                .transpose()?
                .unwrap_or(0);
            // Dropping the transaction also forgets the key: a refused request may be retried.
            return Ok(RedeemOutcome::Insufficient { balance });
        };
        let balance = get_i64(&row, "balance")?;
        sqlx::query(
            "INSERT INTO points_ledger (user_id, delta, kind, reference, at) \
             VALUES ($1, $2, 'redeemed', $3, $4)",
        )
        .bind(user_id)
        .bind(-points)
        .bind(redemption_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE idempotency_keys SET response = $3 WHERE user_id = $1 AND key = $2")
            .bind(user_id)
            .bind(&stored_key)
            .bind(response_for(balance))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(RedeemOutcome::Redeemed { balance })
    }

    /// The reward rules: points per whole currency unit, by category.
    pub async fn reward_rules(&self) -> Result<Vec<(String, i64)>> {
        let rows =
            sqlx::query("SELECT category, points_per_unit FROM reward_rules ORDER BY category")
                .fetch_all(&self.reader)
                .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    get_string(row, "category")?,
                    get_i64(row, "points_per_unit")?,
                ))
            })
            .collect()
    }

    pub async fn set_reward_rule(
        &self,
        category: &str,
        points_per_unit: i64,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO reward_rules (category, points_per_unit, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (category) DO UPDATE SET points_per_unit = $2, updated_at = $3",
        )
        .bind(category)
        .bind(points_per_unit)
        .bind(now)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}
