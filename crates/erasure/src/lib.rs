//! The erasure role: carries out due erasure requests and the retention rules.
//!
//! For each person it destroys their data key first (crypto-shredding: every copy of their
//! sealed data, backups included, becomes unreadable), records the pseudonym in the erasure
//! journal kept with the keys, then in one database transaction turns their transactions into
//! anonymous facts and deletes them and every other row about the person. At every start the
//! journal is applied again, so restoring a database backup cannot bring anyone back.

use crypto::vault::Vault;
use domain::Clock;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::sync::{watch, Notify};

const DAY_MICROS: i64 = 24 * 3600 * 1_000_000;

/// How long each kind of data is kept (days). Documented in docs/privacy.md.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Accounts without a login for this long are erased.
    pub idle_account_days: i64,
    /// Anonymous facts not updated for this long are deleted.
    pub anonymous_fact_days: i64,
    /// Completed data-subject requests are kept this long for accountability.
    pub request_days: i64,
    /// Audit entries are kept this long (pruned only up to a signed checkpoint).
    pub audit_days: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            idle_account_days: 730,
            anonymous_fact_days: 1825,
            request_days: 1095,
            audit_days: 2555,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    #[error("audit retention failed: {0}")]
    Audit(String),
    #[error(transparent)]
    Call(#[from] web::client::CallError),
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    pub erased: usize,
    pub idle_accounts_scheduled: usize,
    pub facts_deleted: u64,
    pub requests_deleted: u64,
    pub audit_entries_deleted: i64,
}

/// The other roles, when they run as separate services: each forgets its own part of a
/// person when told to.
pub struct RemoteRoles {
    pub client: web::client::ServiceClient,
    /// `None` with an external identity provider: accounts live there, not here.
    pub identity_url: Option<String>,
    pub users_url: String,
    pub transactions_url: String,
}

/// How long one erasure replica holds a request before another may take it over.
const CLAIM_MICROS: i64 = 60 * 1_000_000;

pub struct ErasureWorker {
    store: Store,
    audit: Arc<audit::AuditLog>,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
    retention: Retention,
    remote: Option<Arc<RemoteRoles>>,
    /// Names this process in the record of who ran a scheduled pass.
    holder: String,
    /// Turns true when the process is shutting down (set by [`ErasureWorker::run`]).
    stop: Option<watch::Receiver<bool>>,
}

impl ErasureWorker {
    pub fn new(
        store: Store,
        audit: Arc<audit::AuditLog>,
        vault: Arc<Vault>,
        clock: Arc<dyn Clock>,
        retention: Retention,
    ) -> Self {
        Self {
            store,
            audit,
            vault,
            clock,
            retention,
            remote: None,
            holder: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            stop: None,
        }
    }

    /// Tells the other roles over HTTP to forget people, instead of deleting their rows here.
    pub fn with_remote(mut self, remote: Arc<RemoteRoles>) -> Self {
        self.remote = Some(remote);
        self
    }

    /// Erases one person: key first, then journal, then the database.
    async fn erase(&self, request_id: &str, user_id: &str) -> Result<bool, ErasureError> {
        if let Some(remote) = &self.remote {
            return self.erase_remote(remote, request_id, user_id).await;
        }
        self.vault.shred(user_id)?;
        self.vault.key_store().journal_append(user_id)?;
        let done = self
            .store
            .erase_person(request_id, user_id, self.clock.now_micros())
            .await?;
        if done {
            self.record_erased(request_id, user_id).await;
        }
        Ok(done)
    }

    async fn record_erased(&self, request_id: &str, user_id: &str) {
        tracing::info!(subject = %user_id, request = %request_id, "person erased");
        self.audit
            .record(
                "erasure-worker",
                "erasure.completed",
                &format!("user:{user_id}"),
                "ok",
            )
            .await;
    }

    /// Erasure with the roles apart: claim the request (so one replica works on it), destroy
    /// the key and journal the pseudonym, have transactions, users and identity each forget
    /// their part (each order is idempotent, so a retry after a crash is safe), then mark the
    /// request done.
    async fn erase_remote(
        &self,
        remote: &RemoteRoles,
        request_id: &str,
        user_id: &str,
    ) -> Result<bool, ErasureError> {
        let now = self.clock.now_micros();
        if !self
            .store
            .claim_erasure(request_id, now, now + CLAIM_MICROS)
            .await?
        {
            return Ok(false);
        }
        self.vault.shred(user_id)?;
        self.vault.key_store().journal_append(user_id)?;
        for (service, base, path) in [
            (
                "the transactions service",
                Some(&remote.transactions_url),
                "/internal/v1/transactions/people/",
            ),
            (
                "the users service",
                Some(&remote.users_url),
                "/internal/v1/users/",
            ),
            (
                "the identity service",
                remote.identity_url.as_ref(),
                "/internal/v1/identity/accounts/",
            ),
        ] {
            let Some(base) = base else { continue };
            let url = format!("{}{path}{user_id}", base.trim_end_matches('/'));
            remote
                .client
                .call_ok(service, http::Method::DELETE, &url, None)
                .await?;
        }
        let done = self
            .store
            .complete_erasure(request_id, self.clock.now_micros())
            .await?;
        if done {
            self.record_erased(request_id, user_id).await;
        }
        Ok(done)
    }

    /// Carries out every due erasure request. Returns how many people were erased.
    pub async fn run_due(&self) -> Result<usize, ErasureError> {
        let mut erased = 0;
        loop {
            let due = self.store.due_erasures(self.clock.now_micros(), 50).await?;
            if due.is_empty() {
                return Ok(erased);
            }
            for work in &due {
                if self.stop.as_ref().is_some_and(|s| *s.borrow()) {
                    // Shutting down: the erasure in flight is finished; the others are not
                    // claimed yet and wait for the next pass (of this or another replica).
                    self.store.compact_after_erasure().await?;
                    return Ok(erased);
                }
                if self.erase(&work.request_id, &work.user_id).await? {
                    erased += 1;
                }
            }
            self.store.compact_after_erasure().await?;
        }
    }

    /// Applies the retention rules: schedules idle accounts for erasure, deletes old anonymous
    /// facts and old completed requests.
    pub async fn enforce_retention(&self) -> Result<PassReport, ErasureError> {
        let now = self.clock.now_micros();
        let mut report = PassReport::default();
        let idle = self
            .store
            .idle_accounts(now - self.retention.idle_account_days * DAY_MICROS, 100)
            .await?;
        for user_id in &idle {
            let request_id = uuid::Uuid::new_v4().to_string();
            let (_, created) = self
                .store
                .request_erasure(&request_id, user_id, now, now, now + 30 * DAY_MICROS)
                .await?;
            if created {
                tracing::info!(subject = %user_id, request = %request_id, "idle account scheduled for erasure");
                report.idle_accounts_scheduled += 1;
            }
        }
        report.facts_deleted = self
            .store
            .delete_facts_before(now - self.retention.anonymous_fact_days * DAY_MICROS)
            .await?;
        report.audit_entries_deleted = self
            .audit
            .prune(now - self.retention.audit_days * DAY_MICROS)
            .await
            .map_err(|e| ErasureError::Audit(e.to_string()))?;
        report.requests_deleted = self
            .store
            .delete_requests_before(now - self.retention.request_days * DAY_MICROS)
            .await?;
        Ok(report)
    }

    /// One full pass: retention, then every due erasure (including the ones retention just
    /// scheduled).
    pub async fn run_once(&self) -> Result<PassReport, ErasureError> {
        let mut report = self.enforce_retention().await?;
        report.erased = self.run_due().await?;
        Ok(report)
    }

    /// A pass as the long-running worker does it: the retention rules once per `interval`
    /// across all replicas (the replica that records the period first runs them), then every
    /// due erasure (each claimed on its own). Returns whether this replica ran retention.
    pub async fn run_scheduled(&self, interval: Duration) -> Result<bool, ErasureError> {
        let now = self.clock.now_micros();
        let period_micros = i64::try_from(interval.as_micros())
            .unwrap_or(i64::MAX)
            .max(1);
        let ran = self
            .store
            .claim_period("retention", now / period_micros, &self.holder, now)
            .await?;
        if ran {
            let report = self.enforce_retention().await?;
            // Counts only; one line per period across all replicas (split.rs counts them).
            tracing::info!(
                period = now / period_micros,
                idle_accounts_scheduled = report.idle_accounts_scheduled,
                facts_deleted = report.facts_deleted,
                requests_deleted = report.requests_deleted,
                audit_entries_deleted = report.audit_entries_deleted,
                "retention pass"
            );
        }
        self.run_due().await?;
        Ok(ran)
    }

    /// Applies the erasure journal again: anyone erased before who is back in the database
    /// (a restored backup) is removed again, and their key stays destroyed.
    pub async fn reapply_journal(&self) -> Result<usize, ErasureError> {
        let mut purged = 0;
        for pseudonym in self.vault.key_store().journal_entries()? {
            self.vault.shred(&pseudonym)?;
            if self
                .store
                .purge_person(&pseudonym, self.clock.now_micros())
                .await?
            {
                tracing::warn!(subject = %pseudonym, "erased person found in the database again; removed");
                purged += 1;
            }
        }
        Ok(purged)
    }

    /// Runs a pass every `interval`, or at once when woken, until shutdown.
    pub async fn run(
        mut self,
        interval: Duration,
        wakeup: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        self.stop = Some(shutdown.clone());
        tracing::info!("erasure worker started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Err(err) = self.run_scheduled(interval).await {
                tracing::warn!(error = %err, "erasure pass failed; it will be retried");
            }
            tokio::select! {
                _ = wakeup.notified() => {}
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => {}
            }
        }
        tracing::info!("erasure worker stopped");
    }
}
