//! The transactional outbox the reward worker drains. Events are claimed with a lease, so a
//! worker that dies mid-event only delays it: the lease runs out and another worker takes it.

use crate::{get_i64, get_opt_string, get_string};
use crate::{Result, Store};
use sqlx::AnyConnection;

/// A connection held for one round of the reward worker; see [`Store::reward_session`].
pub struct RewardSession {
    conn: sqlx::pool::PoolConnection<sqlx::Any>,
    skip_locked: &'static str,
    backend: crate::Backend,
}

/// A claimed event with what the worker needs to reward it.
#[derive(Debug, Clone)]
pub struct ClaimedEvent {
    pub event: OutboxEvent,
    /// None when the event's subject names no transaction.
    pub subject: Option<crate::transactions::RewardSubject>,
    /// The reward rule for the transaction's category, if there is one.
    pub points_per_unit: Option<i64>,
}

impl RewardSession {
    /// As [`Store::claim_events`].
    pub async fn claim_events(
        &mut self,
        now: i64,
        lease_micros: i64,
        limit: i64,
    ) -> Result<Vec<OutboxEvent>> {
        claim_on(&mut self.conn, self.skip_locked, now, lease_micros, limit).await
    }

    /// Claims up to `limit` ready events (as [`Store::claim_events`]) and reads, for each, its
    /// transaction, the owner's restriction and the category's reward rule. On PostgreSQL
    /// that is one statement (one round trip); SQLite, in the process, runs three.
    pub async fn claim_batch(
        &mut self,
        now: i64,
        lease_micros: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedEvent>> {
        if self.backend == crate::Backend::Sqlite {
            let events = self.claim_events(now, lease_micros, limit).await?;
            if events.is_empty() {
                return Ok(Vec::new());
            }
            let ids: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
            let subjects = self.reward_subjects(&ids).await?;
            let subjects: std::collections::HashMap<&str, &crate::transactions::RewardSubject> =
                subjects.iter().map(|s| (s.id.as_str(), s)).collect();
            let rules: std::collections::HashMap<String, i64> =
                self.reward_rules().await?.into_iter().collect();
            return Ok(events
                .into_iter()
                .map(|event| {
                    let subject = subjects.get(event.subject.as_str()).map(|s| (*s).clone());
                    let points_per_unit = subject
                        .as_ref()
                        .and_then(|s| rules.get(&s.category).copied());
                    ClaimedEvent {
                        event,
                        subject,
                        points_per_unit,
                    }
                })
                .collect());
        }
        let sql = format!(
            "WITH claimed AS (\
               UPDATE outbox SET claimed_until = $2, attempts = attempts + 1 WHERE seq IN (\
                 SELECT seq FROM outbox WHERE parked_at IS NULL AND available_at <= $1 \
                 AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY seq LIMIT $3 {}) \
               RETURNING seq, kind, subject, attempts) \
             SELECT c.seq, c.kind, c.subject, c.attempts, t.id, t.user_id, t.category, \
                    t.amount_minor, t.processed, u.restricted_at, r.points_per_unit \
             FROM claimed c LEFT JOIN transactions t ON t.id = c.subject \
             LEFT JOIN bank_users u ON u.id = t.user_id \
             LEFT JOIN reward_rules r ON r.category = t.category \
             ORDER BY c.seq",
            self.skip_locked
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(now + lease_micros)
            .bind(limit)
            .fetch_all(&mut *self.conn)
            .await?;
        rows.iter()
            .map(|row| {
                let event = OutboxEvent {
                    seq: get_i64(row, "seq")?,
                    kind: get_string(row, "kind")?,
                    subject: get_string(row, "subject")?,
                    attempts: get_i64(row, "attempts")?,
                };
                let subject = match get_opt_string(row, "id")? {
                    None => None,
                    Some(id) => Some(crate::transactions::RewardSubject {
                        id,
                        user_id: get_opt_string(row, "user_id")?,
                        category: get_string(row, "category")?,
                        amount_minor: get_i64(row, "amount_minor")?,
                        processed: get_i64(row, "processed")? == 1,
                        restricted: crate::get_opt_i64(row, "restricted_at")?.is_some(),
                    }),
                };
                Ok(ClaimedEvent {
                    event,
                    subject,
                    points_per_unit: crate::get_opt_i64(row, "points_per_unit")?,
                })
            })
            .collect()
    }

    /// As [`Store::reward_rules`].
    pub async fn reward_rules(&mut self) -> Result<Vec<(String, i64)>> {
        crate::points::reward_rules_on(&mut self.conn).await
    }

    /// As [`Store::reward_subjects`].
    pub async fn reward_subjects(
        &mut self,
        ids: &[&str],
    ) -> Result<Vec<crate::transactions::RewardSubject>> {
        crate::transactions::reward_subjects_on(&mut self.conn, ids).await
    }

    /// As [`Store::reward_batch`].
    pub async fn reward_batch(
        &mut self,
        writes: &[(i64, &str, i64)],
        complete: &[i64],
        now: i64,
    ) -> Result<crate::points::RewardBatchOutcome> {
        crate::points::reward_batch_on(
            &mut self.conn,
            self.backend,
            writes,
            complete,
            now,
            crate::points::Events::Complete,
        )
        .await
    }
}

async fn claim_on(
    conn: &mut AnyConnection,
    skip_locked: &str,
    now: i64,
    lease_micros: i64,
    limit: i64,
) -> Result<Vec<OutboxEvent>> {
    let sql = format!(
        "UPDATE outbox SET claimed_until = $2, attempts = attempts + 1 WHERE seq IN (\
           SELECT seq FROM outbox WHERE parked_at IS NULL AND available_at <= $1 \
           AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY seq LIMIT $3 {skip_locked}) \
         RETURNING seq, kind, subject, attempts"
    );
    let rows = sqlx::query(&sql)
        .bind(now)
        .bind(now + lease_micros)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    let mut events = rows
        .iter()
        .map(|row| {
            Ok(OutboxEvent {
                seq: get_i64(row, "seq")?,
                kind: get_string(row, "kind")?,
                subject: get_string(row, "subject")?,
                attempts: get_i64(row, "attempts")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    events.sort_by_key(|e| e.seq);
    Ok(events)
}

#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub seq: i64,
    pub kind: String,
    pub subject: String,
    pub attempts: i64,
}

#[derive(Debug, Clone)]
pub struct ParkedEvent {
    pub seq: i64,
    pub kind: String,
    pub attempts: i64,
    pub parked_at: i64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    pub pending: i64,
    pub parked: i64,
    pub oldest_created_at: Option<i64>,
}

impl Store {
    /// Claims up to `limit` ready events until `now + lease_micros`.
    pub async fn claim_events(
        &self,
        now: i64,
        lease_micros: i64,
        limit: i64,
    ) -> Result<Vec<OutboxEvent>> {
        let mut conn = self.writer.acquire().await?;
        claim_on(&mut conn, self.skip_locked(), now, lease_micros, limit).await
    }

    /// One pooled connection for one round of the reward worker (claim, rules, read, write
    /// back), so a round waits for a connection once instead of once per statement: under
    /// request load every wait is a place in the pool's queue behind the requests.
    ///
    /// On SQLite the pool has a single connection: drop the session before calling any other
    /// `Store` method, or that call waits for it.
    pub async fn reward_session(&self) -> Result<RewardSession> {
        Ok(RewardSession {
            conn: self.writer.acquire().await?,
            skip_locked: self.skip_locked(),
            backend: self.backend,
        })
    }
    pub async fn complete_event(&self, seq: i64) -> Result<()> {
        sqlx::query("DELETE FROM outbox WHERE seq = $1")
            .bind(seq)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Removes several handled events in one statement.
    pub async fn complete_events(&self, seqs: &[i64]) -> Result<()> {
        if seqs.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "DELETE FROM outbox WHERE seq IN ({})",
            crate::transactions::placeholders(1, seqs.len())
        );
        let mut query = sqlx::query(&sql);
        for seq in seqs {
            query = query.bind(*seq);
        }
        query.execute(&self.writer).await?;
        Ok(())
    }

    /// Releases an event for another try after `retry_at`.
    pub async fn retry_event(&self, seq: i64, retry_at: i64, error: &str) -> Result<()> {
        sqlx::query("UPDATE outbox SET available_at = $2, claimed_until = NULL, last_error = $3 WHERE seq = $1")
            .bind(seq)
            .bind(retry_at)
            .bind(error)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Puts an event off until `until` without counting the attempt (rewards paused while
    /// the person has restricted processing).
    pub async fn defer_event(&self, seq: i64, until: i64) -> Result<()> {
        sqlx::query("UPDATE outbox SET available_at = $2, claimed_until = NULL, attempts = attempts - 1 WHERE seq = $1")
            .bind(seq)
            .bind(until)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Gives a lease back untouched (graceful shutdown) without counting an attempt.
    pub async fn release_event(&self, seq: i64) -> Result<()> {
        sqlx::query(
            "UPDATE outbox SET claimed_until = NULL, attempts = attempts - 1 WHERE seq = $1",
        )
        .bind(seq)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Sets a poison event aside where an administrator can see it.
    pub async fn park_event(&self, seq: i64, now: i64, error: &str) -> Result<()> {
        sqlx::query("UPDATE outbox SET parked_at = $2, claimed_until = NULL, last_error = $3 WHERE seq = $1")
            .bind(seq)
            .bind(now)
            .bind(error)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn parked_events(&self, limit: i64) -> Result<Vec<ParkedEvent>> {
        let rows = sqlx::query(
            "SELECT seq, kind, attempts, parked_at, last_error FROM outbox \
             WHERE parked_at IS NOT NULL ORDER BY seq LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ParkedEvent {
                    seq: get_i64(row, "seq")?,
                    kind: get_string(row, "kind")?,
                    attempts: get_i64(row, "attempts")?,
                    parked_at: get_i64(row, "parked_at")?,
                    last_error: get_opt_string(row, "last_error")?,
                })
            })
            .collect()
    }

    pub async fn outbox_stats(&self) -> Result<OutboxStats> {
        let row = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM outbox WHERE parked_at IS NULL) AS pending, \
               (SELECT COUNT(*) FROM outbox WHERE parked_at IS NOT NULL) AS parked, \
               (SELECT MIN(created_at) FROM outbox WHERE parked_at IS NULL) AS oldest",
        )
        .fetch_one(&self.reader)
        .await?;
        Ok(OutboxStats {
            pending: get_i64(&row, "pending")?,
            parked: get_i64(&row, "parked")?,
            oldest_created_at: crate::get_opt_i64(&row, "oldest")?,
        })
    }
}
