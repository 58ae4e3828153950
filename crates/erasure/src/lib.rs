//! The erasure role: carries out due erasure requests. For each person it destroys their data
//! key first (crypto-shredding: every copy of their ciphertext, backups included, becomes
//! unreadable), records the pseudonym in the erasure journal kept with the keys, then deletes
//! the person from every table and unlinks their transactions.

use crypto::vault::Vault;
use domain::Clock;
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::sync::{watch, Notify};

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
}

pub struct ErasureWorker {
    store: Store,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
}

impl ErasureWorker {
    pub fn new(store: Store, vault: Arc<Vault>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            vault,
            clock,
        }
    }

    /// One pass over every due request. Returns how many people were erased.
    pub async fn run_once(&self) -> Result<usize, ErasureError> {
        let mut erased = 0;
        loop {
            let due = self.store.due_erasures(self.clock.now_micros(), 50).await?;
            if due.is_empty() {
                break;
            }
            for work in &due {
                self.vault.shred(&work.user_id)?;
                self.vault.key_store().journal_append(&work.user_id)?;
                if self
                    .store
                    .erase_person(&work.request_id, &work.user_id, self.clock.now_micros())
                    .await?
                {
                    tracing::info!(subject = %work.user_id, request = %work.request_id, "person erased");
                    erased += 1;
                }
            }
        }
        Ok(erased)
    }

    /// Runs a pass every `interval`, or at once when woken, until shutdown.
    pub async fn run(
        self,
        interval: Duration,
        wakeup: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        tracing::info!("erasure worker started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            if let Err(err) = self.run_once().await {
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
