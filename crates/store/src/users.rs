//! The bank profile (registration, consent per purpose, restriction, objection) and the
//! append-only consent ledger.

use crate::{get_i64, get_opt_i64, get_string};
use crate::{Result, Store, StoreError};

#[derive(Debug, Clone)]
pub struct BankUser {
    pub id: String,
    pub registered_at: i64,
    pub consent_rewards: bool,
    pub consent_analytics: bool,
    pub consent_profiling: bool,
    pub restricted_at: Option<i64>,
    pub objected_at: Option<i64>,
    pub erasure_requested_at: Option<i64>,
}

/// One consent change as it is written to the ledger.
#[derive(Debug, Clone)]
pub struct ConsentRecord<'a> {
    pub purpose: &'a str,
    pub granted: bool,
    pub policy_version: &'a str,
    pub policy_hash: &'a str,
    pub method: &'a str,
}

#[derive(Debug, Clone)]
pub struct ConsentEvent {
    pub purpose: String,
    pub granted: bool,
    pub policy_version: String,
    pub policy_hash: String,
    pub method: String,
    pub at: i64,
}

fn consent_column(purpose: &str) -> Result<&'static str> {
    match purpose {
        "rewards" => Ok("consent_rewards"),
        "analytics" => Ok("consent_analytics"),
        "profiling" => Ok("consent_profiling"),
        other => Err(StoreError::Corrupt(format!("unknown purpose {other}"))),
    }
}

impl Store {
    /// Registers a person in the bank with their first consent choices, recorded as events.
    pub async fn register_user(
        &self,
        id: &str,
        consents: &[ConsentRecord<'_>],
        now: i64,
    ) -> Result<()> {
        let granted = |p: &str| consents.iter().any(|c| c.purpose == p && c.granted);
        let mut tx = crate::tx::Tx::begin(&self.writer).await?;
        // Someone who asked to be erased cannot start being processed again while it is pending.
        let pending = sqlx::query(
            "SELECT 1 AS one FROM privacy_requests WHERE user_id = $1 AND kind = 'erasure' \
             AND status = 'pending'",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if pending.is_some() {
            return Err(StoreError::ErasurePending);
        }
        sqlx::query(
            "INSERT INTO bank_users (id, registered_at, consent_rewards, consent_analytics, \
             consent_profiling) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(now)
        .bind(i64::from(granted("rewards")))
        .bind(i64::from(granted("analytics")))
        .bind(i64::from(granted("profiling")))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_write)?;
        for consent in consents {
            insert_consent_event(&mut tx, id, consent, now).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn bank_user(&self, id: &str) -> Result<Option<BankUser>> {
        let row = sqlx::query("SELECT * FROM bank_users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|row| {
            Ok(BankUser {
                id: get_string(&row, "id")?,
                registered_at: get_i64(&row, "registered_at")?,
                consent_rewards: get_i64(&row, "consent_rewards")? == 1,
                consent_analytics: get_i64(&row, "consent_analytics")? == 1,
                consent_profiling: get_i64(&row, "consent_profiling")? == 1,
                restricted_at: get_opt_i64(&row, "restricted_at")?,
                objected_at: get_opt_i64(&row, "objected_at")?,
                erasure_requested_at: get_opt_i64(&row, "erasure_requested_at")?,
            })
        })
        .transpose()
    }

    /// Records a consent change and updates the current state in one transaction. Returns
    /// false when the person is not registered or has asked for erasure.
    pub async fn set_consent(
        &self,
        id: &str,
        consent: &ConsentRecord<'_>,
        now: i64,
    ) -> Result<bool> {
        let column = consent_column(consent.purpose)?;
        let mut tx = crate::tx::Tx::begin(&self.writer).await?;
        let sql = format!(
            "UPDATE bank_users SET {column} = $2 WHERE id = $1 AND erasure_requested_at IS NULL"
        );
        let result = sqlx::query(&sql)
            .bind(id)
            .bind(i64::from(consent.granted))
            .execute(&mut *tx)
            .await?;
        if result.rows_affected() != 1 {
            return Ok(false);
        }
        insert_consent_event(&mut tx, id, consent, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn consent_history(&self, id: &str) -> Result<Vec<ConsentEvent>> {
        let rows = sqlx::query(
            "SELECT purpose, granted, policy_version, policy_hash, method, at \
             FROM consent_events WHERE user_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ConsentEvent {
                    purpose: get_string(row, "purpose")?,
                    granted: get_i64(row, "granted")? == 1,
                    policy_version: get_string(row, "policy_version")?,
                    policy_hash: get_string(row, "policy_hash")?,
                    method: get_string(row, "method")?,
                    at: get_i64(row, "at")?,
                })
            })
            .collect()
    }
}

async fn insert_consent_event(
    tx: &mut crate::tx::Tx,
    id: &str,
    consent: &ConsentRecord<'_>,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO consent_events (user_id, purpose, granted, policy_version, policy_hash, \
         method, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(consent.purpose)
    .bind(i64::from(consent.granted))
    .bind(consent.policy_version)
    .bind(consent.policy_hash)
    .bind(consent.method)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A switch a person can turn on and off: restriction of processing (Art. 18) or objection
/// to profiling (Art. 21).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    Restriction,
    Objection,
}

impl Switch {
    fn column(self) -> &'static str {
        match self {
            Switch::Restriction => "restricted_at",
            Switch::Objection => "objected_at",
        }
    }
}

impl Store {
    /// Turns a switch on (`Some(now)`) or off (`None`) and records the request, in one
    /// transaction. Returns false when the person is not registered or is being erased.
    pub async fn set_switch(
        &self,
        id: &str,
        switch: Switch,
        on: bool,
        request: (&str, &str),
        now: i64,
        due_at: i64,
    ) -> Result<bool> {
        let (request_id, kind) = request;
        let mut tx = crate::tx::Tx::begin(&self.writer).await?;
        let sql = format!(
            "UPDATE bank_users SET {} = $2 WHERE id = $1 AND erasure_requested_at IS NULL",
            switch.column()
        );
        let result = sqlx::query(&sql)
            .bind(id)
            .bind(if on { Some(now) } else { None })
            .execute(&mut *tx)
            .await?;
        if result.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO privacy_requests (id, user_id, kind, status, received_at, run_after, due_at, completed_at) \
             VALUES ($1, $2, $3, 'completed', $4, $4, $5, $4)",
        )
        .bind(request_id)
        .bind(id)
        .bind(kind)
        .bind(now)
        .bind(due_at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from_write)?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records a successful login (for the idle-account retention rule).
    pub async fn touch_login(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE accounts SET last_login_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// Accounts idle since before `cutoff` (no login since; or never, and created before it)
    /// with no erasure pending.
    pub async fn idle_accounts(&self, cutoff: i64, limit: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT a.id FROM accounts a WHERE a.role = 'person' \
             AND COALESCE(a.last_login_at, a.created_at) < $1 \
             AND NOT EXISTS (SELECT 1 FROM privacy_requests r WHERE r.user_id = a.id \
                             AND r.kind = 'erasure' AND r.status = 'pending') \
             LIMIT $2",
        )
        .bind(cutoff)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|row| get_string(row, "id")).collect()
    }
}
