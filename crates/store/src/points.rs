//! Points: written once per transaction, redeemed atomically, never below zero.

use crate::{get_i64, get_opt_string, get_string};
use crate::{Result, Store, StoreError};
use sqlx::Connection;

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

/// What [`Store::reward_batch`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RewardBatchOutcome {
    /// Transactions whose points this call wrote.
    pub rewarded: Vec<String>,
    /// Outbox events removed: their points are written (by this call or an earlier
    /// delivery), or they had nothing to write.
    pub completed: Vec<i64>,
    /// Outbox events left in place because their transaction no longer exists.
    pub vanished: Vec<i64>,
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
    /// Records the points of several transactions at once, each exactly once, in one database
    /// transaction (one statement on PostgreSQL). Returns the ids this call rewarded; the others
    /// were rewarded before or no longer exist. Completes no outbox event: the caller (the
    /// rewards service, over the transactions API) completes its own.
    pub async fn reward_many(&self, writes: &[(&str, i64)], now: i64) -> Result<Vec<String>> {
        if writes.is_empty() {
            return Ok(Vec::new());
        }
        let keyed: Vec<(i64, &str, i64)> = writes.iter().map(|(id, p)| (0, *id, *p)).collect();
        let mut conn = self.writer.acquire().await?;
        let outcome =
            reward_batch_on(&mut conn, self.backend, &keyed, &[], now, Events::Untouched).await?;
        Ok(outcome.rewarded)
    }

    /// Records the points of a transaction exactly once. The conditional update is the lock:
    /// a second writer for the same transaction finds it already processed.
    pub async fn reward_transaction(
        &self,
        transaction_id: &str,
        points: i64,
        now: i64,
    ) -> Result<RewardOutcome> {
        let mut tx = crate::tx::Tx::begin(&self.writer).await?;
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

    /// Writes the points of a batch of reward events and completes the events, all in one
    /// database transaction: the points of every listed transaction and the removal of its
    /// event commit together, or nothing does. Each write is `(outbox seq, transaction id,
    /// points)`; `complete` lists events with nothing to write (already processed, unlinked by
    /// erasure), removed in the same transaction. As in [`Store::reward_transaction`], the
    /// update is conditional on the transaction not being processed yet, and that is the lock:
    /// a transaction rewarded by an earlier delivery is left alone and its event completed.
    /// An event whose transaction has vanished stays in the outbox (see `vanished`).
    pub async fn reward_batch(
        &self,
        writes: &[(i64, &str, i64)],
        complete: &[i64],
        now: i64,
    ) -> Result<RewardBatchOutcome> {
        let mut conn = self.writer.acquire().await?;
        reward_batch_on(
            &mut conn,
            self.backend,
            writes,
            complete,
            now,
            Events::Complete,
        )
        .await
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
        let mut tx = crate::tx::Tx::begin(&self.writer).await?;
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
        let mut conn = self.reader.acquire().await?;
        reward_rules_on(&mut conn).await
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

/// Whether a batch write-back also completes the outbox events of its writes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Events {
    /// The rewards worker's own write-back: points and event completion commit together.
    Complete,
    /// Through the transactions API (split mode): points only; the caller completes its events
    /// and the writes' sequence numbers are not used.
    Untouched,
}

pub(crate) async fn reward_batch_on(
    conn: &mut sqlx::AnyConnection,
    backend: crate::Backend,
    writes: &[(i64, &str, i64)],
    complete: &[i64],
    now: i64,
    events: Events,
) -> Result<RewardBatchOutcome> {
    let mut outcome = RewardBatchOutcome::default();
    if writes.is_empty() && complete.is_empty() {
        return Ok(outcome);
    }
    if backend == crate::Backend::Postgres && !writes.is_empty() {
        return reward_batch_postgres(conn, writes, complete, now, events).await;
    }
    let mut tx = conn.begin().await?;
    // (transaction id, user id, points) of the rows this call updated.
    let mut updated: Vec<(String, Option<String>, i64)> = Vec::with_capacity(writes.len());
    if !writes.is_empty() {
        let values = (0..writes.len())
            .map(|i| {
                format!(
                    "(CAST(${} AS TEXT), CAST(${} AS BIGINT))",
                    2 * i + 1,
                    2 * i + 2
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE transactions SET points_earned = v.column2, processed = 1 \
             FROM (VALUES {values}) AS v \
             WHERE transactions.id = v.column1 AND transactions.processed = 0 \
             RETURNING id, user_id, points_earned"
        );
        let mut query = sqlx::query(&sql);
        for (_, id, points) in writes {
            query = query.bind(*id).bind(*points);
        }
        for row in query.fetch_all(&mut *tx).await? {
            updated.push((
                get_string(&row, "id")?,
                get_opt_string(&row, "user_id")?,
                get_i64(&row, "points_earned")?,
            ));
        }
    }
    // Writes the update skipped: processed already (complete the event) or gone (keep it).
    let updated_ids: std::collections::HashSet<&str> =
        updated.iter().map(|(id, _, _)| id.as_str()).collect();
    let skipped: Vec<&(i64, &str, i64)> = writes
        .iter()
        .filter(|(_, id, _)| !updated_ids.contains(id))
        .collect();
    let mut existing: Vec<String> = Vec::new();
    if events == Events::Complete && !skipped.is_empty() {
        let sql = format!(
            "SELECT id FROM transactions WHERE id IN ({})",
            crate::transactions::placeholders(1, skipped.len())
        );
        let mut query = sqlx::query(&sql);
        for (_, id, _) in &skipped {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *tx).await? {
            existing.push(get_string(&row, "id")?);
        }
    }
    // One balance update per person, in a fixed order so concurrent batches cannot
    // deadlock on the same accounts.
    let mut per_person: std::collections::BTreeMap<&str, i64> = Default::default();
    for (_, user_id, points) in &updated {
        // A transaction unlinked by erasure earns nobody anything.
        if let Some(user_id) = user_id {
            *per_person.entry(user_id.as_str()).or_default() += *points;
        }
    }
    if !per_person.is_empty() {
        let values = (0..per_person.len())
            .map(|i| format!("(${}, ${}, ${}, 0)", 3 * i + 1, 3 * i + 2, 3 * i + 3))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO points_accounts (user_id, balance, earned, redeemed) VALUES {values} \
             ON CONFLICT (user_id) DO UPDATE SET \
             balance = points_accounts.balance + excluded.balance, \
             earned = points_accounts.earned + excluded.earned"
        );
        let mut query = sqlx::query(&sql);
        for (user_id, points) in &per_person {
            query = query.bind(*user_id).bind(*points).bind(*points);
        }
        query.execute(&mut *tx).await?;
        let ledger: Vec<(&str, &str, i64)> = updated
            .iter()
            .filter_map(|(id, u, points)| Some((id.as_str(), u.as_deref()?, *points)))
            .collect();
        let values = (0..ledger.len())
            .map(|i| {
                format!(
                    "(${}, ${}, 'earned', ${}, ${})",
                    4 * i + 1,
                    4 * i + 2,
                    4 * i + 3,
                    4 * i + 4
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO points_ledger (user_id, delta, kind, reference, at) VALUES {values}"
        );
        let mut query = sqlx::query(&sql);
        for (id, user_id, points) in ledger {
            query = query.bind(user_id).bind(points).bind(id).bind(now);
        }
        query.execute(&mut *tx).await?;
    }
    let existing: std::collections::HashSet<&str> = existing.iter().map(String::as_str).collect();
    for (seq, id, _) in writes.iter().filter(|_| events == Events::Complete) {
        if updated_ids.contains(id) || existing.contains(id) {
            outcome.completed.push(*seq);
        } else {
            outcome.vanished.push(*seq);
        }
    }
    outcome.completed.extend_from_slice(complete);
    if !outcome.completed.is_empty() {
        let sql = format!(
            "DELETE FROM outbox WHERE seq IN ({})",
            crate::transactions::placeholders(1, outcome.completed.len())
        );
        let mut query = sqlx::query(&sql);
        for seq in &outcome.completed {
            query = query.bind(*seq);
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    outcome.rewarded = updated.into_iter().map(|(id, _, _)| id).collect();
    Ok(outcome)
}

pub(crate) async fn reward_rules_on(conn: &mut sqlx::AnyConnection) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query("SELECT category, points_per_unit FROM reward_rules ORDER BY category")
        .fetch_all(&mut *conn)
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

/// The statement of [`reward_batch_postgres`], with (`_COMPLETE`) or without the removal of
/// the batch's outbox events. `$1` is the time, `$2` the writes as a JSON array of
/// `{seq, id, points}`, and with `_COMPLETE` `$3` further outbox events to complete, a JSON
/// array of numbers. The balance upserts go in a fixed order, so concurrent batches cannot
/// deadlock.
macro_rules! reward_batch_postgres_sql {
    ($completion:literal, $completed:literal) => {
        concat!(
            "WITH w (seq, id, points) AS (\
               SELECT seq, id, points FROM jsonb_to_recordset(CAST($2 AS JSONB)) \
               AS r (seq BIGINT, id TEXT, points BIGINT)), \
             upd AS (UPDATE transactions t SET points_earned = w.points, processed = 1 FROM w \
                     WHERE t.id = w.id AND t.processed = 0 \
                     RETURNING t.id, t.user_id, t.points_earned), \
             acc AS (INSERT INTO points_accounts (user_id, balance, earned, redeemed) \
                     SELECT user_id, CAST(SUM(points_earned) AS BIGINT), \
                            CAST(SUM(points_earned) AS BIGINT), 0 \
                     FROM upd WHERE user_id IS NOT NULL GROUP BY user_id ORDER BY user_id \
                     ON CONFLICT (user_id) DO UPDATE SET \
                     balance = points_accounts.balance + excluded.balance, \
                     earned = points_accounts.earned + excluded.earned), \
             led AS (INSERT INTO points_ledger (user_id, delta, kind, reference, at) \
                     SELECT user_id, points_earned, 'earned', id, CAST($1 AS BIGINT) \
                     FROM upd WHERE user_id IS NOT NULL)",
            $completion,
            " SELECT 'rewarded' AS what, id AS value FROM upd",
            $completed
        )
    };
}
const REWARD_BATCH_POSTGRES_COMPLETE: &str = reward_batch_postgres_sql!(
    ", del AS (DELETE FROM outbox WHERE seq IN (SELECT w.seq FROM w JOIN transactions t ON t.id = w.id) \
        OR seq IN (SELECT CAST(value AS BIGINT) FROM jsonb_array_elements_text(CAST($3 AS JSONB))) \
      RETURNING seq)",
    " UNION ALL SELECT 'completed', CAST(seq AS TEXT) FROM del"
);
const REWARD_BATCH_POSTGRES_UNTOUCHED: &str = reward_batch_postgres_sql!("", "");

/// [`Store::reward_batch`] on PostgreSQL as one statement, so one round trip: data-modifying
/// `WITH` clauses run in the statement's one transaction, all or nothing. The points
/// accounts and the ledger are written from what the conditional update returned, so only
/// for the transactions this statement rewarded; an event is completed when its transaction
/// exists (rewarded now or before).
async fn reward_batch_postgres(
    conn: &mut sqlx::AnyConnection,
    writes: &[(i64, &str, i64)],
    complete: &[i64],
    now: i64,
    events: Events,
) -> Result<RewardBatchOutcome> {
    // The batch travels as two JSON parameters, so the statement's text is the same for every
    // batch size: one prepared statement per connection, planned once, instead of a new text
    // (prepared, planned and cached again) for each size up to the worker's largest claim.
    let writes_json = serde_json::Value::Array(
        writes
            .iter()
            .map(|(seq, id, points)| serde_json::json!({ "seq": seq, "id": id, "points": points }))
            .collect(),
    )
    .to_string();
    let query = match events {
        Events::Complete => sqlx::query(REWARD_BATCH_POSTGRES_COMPLETE)
            .bind(now)
            .bind(writes_json)
            .bind(serde_json::Value::from(complete.to_vec()).to_string()),
        Events::Untouched => sqlx::query(REWARD_BATCH_POSTGRES_UNTOUCHED)
            .bind(now)
            .bind(writes_json),
    };
    let mut outcome = RewardBatchOutcome::default();
    for row in query.fetch_all(&mut *conn).await? {
        let value = get_string(&row, "value")?;
        if get_string(&row, "what")? == "rewarded" {
            outcome.rewarded.push(value);
        } else {
            let seq = value
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("outbox seq {value}")))?;
            outcome.completed.push(seq);
        }
    }
    for (seq, _, _) in writes.iter().filter(|_| events == Events::Complete) {
        if !outcome.completed.contains(seq) {
            outcome.vanished.push(*seq);
        }
    }
    Ok(outcome)
}
