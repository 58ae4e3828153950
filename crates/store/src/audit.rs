//! The audit log's table: appends that extend the hash chain one entry at a time, reads for
//! verification and export, checkpoints, and pruning for retention.

use crate::{get_i64, get_string};
use crate::{Backend, Result, Store};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub request_id: String,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpoint {
    pub seq: i64,
    pub hash: String,
    pub at: i64,
    pub kid: String,
    pub signature: String,
}

/// The fields of a new entry; the store assigns `seq` and `prev_hash`, and `hash_of` computes
/// the entry's hash from them.
pub struct NewAuditEntry<'a> {
    pub at: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub target: &'a str,
    pub outcome: &'a str,
    pub request_id: &'a str,
}

pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn record_from(row: &sqlx::any::AnyRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: get_i64(row, "seq")?,
        at: get_i64(row, "at")?,
        actor: get_string(row, "actor")?,
        action: get_string(row, "action")?,
        target: get_string(row, "target")?,
        outcome: get_string(row, "outcome")?,
        request_id: get_string(row, "request_id")?,
        prev_hash: get_string(row, "prev_hash")?,
        hash: get_string(row, "hash")?,
    })
}

impl Store {
    /// Appends an entry at the head of the chain. Appends are serialised (an advisory lock on
    /// PostgreSQL, the single writer on SQLite) so the chain never forks.
    pub async fn append_audit(
        &self,
        entry: &NewAuditEntry<'_>,
        hash_of: impl FnOnce(i64, &str) -> String,
    ) -> Result<AuditRecord> {
        let mut tx = crate::tx::Tx::begin(&self.writer).await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7291002)")
                .execute(&mut *tx)
                .await?;
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        let (seq, prev_hash) = match head {
            Some(row) => (get_i64(&row, "seq")? + 1, get_string(&row, "hash")?),
            None => match self.latest_checkpoint_in(&mut tx).await? {
                // Everything was pruned: continue from the last checkpoint.
                Some(checkpoint) => (checkpoint.seq + 1, checkpoint.hash),
                None => (1, GENESIS_HASH.to_owned()),
            },
        };
        let hash = hash_of(seq, &prev_hash);
        sqlx::query(
            "INSERT INTO audit_log (seq, at, actor, action, target, outcome, request_id, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(seq)
        .bind(entry.at)
        .bind(entry.actor)
        .bind(entry.action)
        .bind(entry.target)
        .bind(entry.outcome)
        .bind(entry.request_id)
        .bind(&prev_hash)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(AuditRecord {
            seq,
            at: entry.at,
            actor: entry.actor.to_owned(),
            action: entry.action.to_owned(),
            target: entry.target.to_owned(),
            outcome: entry.outcome.to_owned(),
            request_id: entry.request_id.to_owned(),
            prev_hash,
            hash,
        })
    }

    async fn latest_checkpoint_in(
        &self,
        tx: &mut crate::tx::Tx,
    ) -> Result<Option<AuditCheckpoint>> {
        let row = sqlx::query("SELECT * FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await?;
        row.as_ref().map(checkpoint_from).transpose()
    }

    /// Entries with `seq > after`, in order, at most `limit`.
    pub async fn audit_entries(&self, after: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query("SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(record_from).collect()
    }

    /// Entries whose actor or target is this pseudonym (for the person's export).
    pub async fn audit_entries_about(
        &self,
        pseudonym: &str,
        limit: i64,
    ) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM audit_log WHERE actor = $1 OR target = $2 ORDER BY seq LIMIT $3",
        )
        .bind(pseudonym)
        .bind(format!("user:{pseudonym}"))
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(record_from).collect()
    }

    pub async fn audit_head(&self) -> Result<Option<(i64, String)>> {
        let row = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| Ok((get_i64(&r, "seq")?, get_string(&r, "hash")?)))
            .transpose()
    }

    pub async fn insert_checkpoint(&self, checkpoint: &AuditCheckpoint) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_checkpoints (seq, hash, at, kid, signature) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (seq) DO NOTHING",
        )
        .bind(checkpoint.seq)
        .bind(&checkpoint.hash)
        .bind(checkpoint.at)
        .bind(&checkpoint.kid)
        .bind(&checkpoint.signature)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn audit_checkpoints(&self) -> Result<Vec<AuditCheckpoint>> {
        let rows = sqlx::query("SELECT * FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(checkpoint_from).collect()
    }

    /// Retention: removes entries older than `cutoff`, up to the newest checkpoint before it.
    pub async fn prune_audit(&self, cutoff: i64) -> Result<i64> {
        match self.backend {
            Backend::Postgres => {
                let row = sqlx::query("SELECT audit_prune($1) AS removed")
                    .bind(cutoff)
                    .fetch_one(&self.writer)
                    .await?;
                get_i64(&row, "removed")
            }
            Backend::Sqlite => {
                let mut tx = crate::tx::Tx::begin(&self.writer).await?;
                let row = sqlx::query(
                    "SELECT MAX(c.seq) AS upto FROM audit_checkpoints c JOIN audit_log l ON l.seq = c.seq WHERE l.at < $1",
                )
                .bind(cutoff)
                .fetch_one(&mut *tx)
                .await?;
                let Some(upto) = crate::get_opt_i64(&row, "upto")? else {
                    return Ok(0);
                };
                let result = sqlx::query("DELETE FROM audit_log WHERE seq <= $1")
                    .bind(upto)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(i64::try_from(result.rows_affected()).unwrap_or(i64::MAX))
            }
        }
    }
}

fn checkpoint_from(row: &sqlx::any::AnyRow) -> Result<AuditCheckpoint> {
    Ok(AuditCheckpoint {
        seq: get_i64(row, "seq")?,
        hash: get_string(row, "hash")?,
        at: get_i64(row, "at")?,
        kid: get_string(row, "kid")?,
        signature: get_string(row, "signature")?,
    })
}
