//! The transactional outbox the reward worker drains. Events are claimed with a lease, so a
//! worker that dies mid-event only delays it: the lease runs out and another worker takes it.

use crate::{get_i64, get_opt_string, get_string};
use crate::{Result, Store};

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
        let sql = format!(
            "UPDATE outbox SET claimed_until = $2, attempts = attempts + 1 WHERE seq IN (\
               SELECT seq FROM outbox WHERE parked_at IS NULL AND available_at <= $1 \
               AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY seq LIMIT $3 {}) \
             RETURNING seq, kind, subject, attempts",
            self.skip_locked()
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(now + lease_micros)
            .bind(limit)
            .fetch_all(&self.writer)
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

    pub async fn complete_event(&self, seq: i64) -> Result<()> {
        sqlx::query("DELETE FROM outbox WHERE seq = $1")
            .bind(seq)
            .execute(&self.writer)
            .await?;
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
