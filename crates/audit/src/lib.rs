//! The tamper-evident audit log (repudiation, in STRIDE terms). Every security and privacy
//! event becomes one entry: time, a pseudonymous actor, action, target, outcome and request id,
//! hash-chained to the entry before. Checkpoints sign the head of the chain with Ed25519 every
//! N entries or T seconds, and the newest checkpoint is also written to a file outside the
//! database, so a truncated tail is noticed. `examplebank audit verify` checks all of it.
//!
//! Entries never hold personal data: actors and targets are pseudonymous ids (`user:<uuid>`)
//! or names of things (`consent:analytics`, `reward-rule:fuel`).

mod verify;

pub use verify::{verify, VerifyReport};

use crypto::keyring::SigningKeyRing;
use domain::Clock;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store::{AuditCheckpoint, NewAuditEntry, Store};
use tokio::sync::watch;

tokio::task_local! {
    /// The id of the request being served, set by the HTTP layer for the audit entries it causes.
    pub static REQUEST_ID: String;
}

fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_owned())
}

/// The hash of an entry: SHA-256 over its fields, each length-prefixed, and the previous hash.
#[allow(clippy::too_many_arguments)]
pub fn entry_hash(
    seq: i64,
    at: i64,
    actor: &str,
    action: &str,
    target: &str,
    outcome: &str,
    request_id: &str,
    prev: &str,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"examplebank-audit-v1");
    for field in [
        seq.to_string().as_str(),
        at.to_string().as_str(),
        actor,
        action,
        target,
        outcome,
        request_id,
        prev,
    ] {
        hasher.update((field.len() as u64).to_be_bytes());
        hasher.update(field.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a checkpoint signature covers.
pub fn checkpoint_message(seq: i64, hash: &str, at: i64) -> Vec<u8> {
    format!("examplebank-audit-checkpoint:v1:{seq}:{hash}:{at}").into_bytes()
}

/// The newest checkpoint, as written to the file outside the database.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckpointFile {
    pub seq: i64,
    pub hash: String,
    pub at: i64,
    pub kid: String,
    pub signature: String,
}

impl From<&AuditCheckpoint> for CheckpointFile {
    fn from(c: &AuditCheckpoint) -> Self {
        Self {
            seq: c.seq,
            hash: c.hash.clone(),
            at: c.at,
            kid: c.kid.clone(),
            signature: c.signature.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    #[error("cannot write the checkpoint file {0}: {1}")]
    File(String, std::io::Error),
}

pub struct AuditLog {
    store: Store,
    keys: SigningKeyRing,
    checkpoint_file: PathBuf,
    clock: Arc<dyn Clock>,
    every_entries: i64,
    since_checkpoint: AtomicI64,
}

impl AuditLog {
    /// Opens the log with its signing keys in `keys_dir/audit` and its checkpoint file.
    pub fn open(
        store: Store,
        keys_dir: &Path,
        checkpoint_file: PathBuf,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AuditError> {
        let keys = SigningKeyRing::load_or_create(&keys_dir.join("audit"))?;
        Ok(Self {
            store,
            keys,
            checkpoint_file,
            clock,
            every_entries: 100,
            since_checkpoint: AtomicI64::new(0),
        })
    }

    pub fn verifier(&self) -> crypto::jws::Verifier {
        self.keys.verifier()
    }

    pub fn checkpoint_file(&self) -> &Path {
        &self.checkpoint_file
    }

    /// Records an event. A failure to record is logged, never shown to the caller: refusing
    /// service because the log is down would hand attackers a switch to turn the bank off.
    pub async fn record(&self, actor: &str, action: &str, target: &str, outcome: &str) {
        let request_id = current_request_id();
        let at = self.clock.now_micros();
        let entry = NewAuditEntry {
            at,
            actor,
            action,
            target,
            outcome,
            request_id: &request_id,
        };
        let result = self
            .store
            .append_audit(&entry, |seq, prev| {
                entry_hash(seq, at, actor, action, target, outcome, &request_id, prev)
            })
            .await;
        match result {
            Ok(_) => {
                if self.since_checkpoint.fetch_add(1, Ordering::SeqCst) + 1 >= self.every_entries {
                    if let Err(err) = self.checkpoint().await {
                        tracing::error!(error = %err, "audit checkpoint failed");
                    }
                }
            }
            Err(err) => tracing::error!(error = %err, action, "audit entry could not be written"),
        }
    }

    /// Signs the head of the chain if it moved since the last checkpoint, stores the
    /// checkpoint and writes it to the file outside the database.
    pub async fn checkpoint(&self) -> Result<Option<AuditCheckpoint>, AuditError> {
        self.since_checkpoint.store(0, Ordering::SeqCst);
        let Some((seq, hash)) = self.store.audit_head().await? else {
            return Ok(None);
        };
        let latest = self.store.audit_checkpoints().await?.into_iter().last();
        if latest.as_ref().is_some_and(|c| c.seq >= seq) {
            return Ok(None);
        }
        let at = self.clock.now_micros();
        let key = self.keys.active();
        let checkpoint = AuditCheckpoint {
            seq,
            signature: key.sign_detached(&checkpoint_message(seq, &hash, at)),
            hash,
            at,
            kid: key.kid().to_owned(),
        };
        self.store.insert_checkpoint(&checkpoint).await?;
        // Waiting for another replica's file lock and the fsyncs happen off the async workers.
        let path = self.checkpoint_file.clone();
        let file = CheckpointFile::from(&checkpoint);
        tokio::task::spawn_blocking(move || write_checkpoint_file(&path, &file))
            .await
            .map_err(|e| {
                AuditError::File(
                    self.checkpoint_file.display().to_string(),
                    std::io::Error::other(e.to_string()),
                )
            })??;
        Ok(Some(checkpoint))
    }

    /// Writes a checkpoint every `interval` until shutdown (and a last one on the way out).
    pub async fn run_checkpointer(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => {}
            }
            if let Err(err) = self.checkpoint().await {
                tracing::error!(error = %err, "audit checkpoint failed");
            }
            if *shutdown.borrow() {
                break;
            }
        }
    }

    /// Retention: drops entries older than `cutoff`, up to the newest checkpoint before it.
    pub async fn prune(&self, cutoff: i64) -> Result<i64, AuditError> {
        Ok(self.store.prune_audit(cutoff).await?)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// Writes `checkpoint` to `path` unless the file already holds a newer one.
///
/// Every replica of every role runs a checkpointer, and in a deployment they share this file
/// (one volume), so writers take an exclusive lock on `<path>.lock` (an OS file lock, held
/// across processes), never move the file back to an older checkpoint, and write through a
/// temporary file with a random name of their own (every pod's process may be PID 1) before the
/// atomic rename and the directory's fsync. A failed write removes its temporary file.
fn write_checkpoint_file(path: &Path, checkpoint: &CheckpointFile) -> Result<(), AuditError> {
    use std::io::Write;
    let error = |e| AuditError::File(path.display().to_string(), e);
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent).map_err(error)?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("lock"))
        .map_err(error)?;
    lock.lock().map_err(error)?;
    if read_checkpoint_file(path).is_some_and(|current| current.seq > checkpoint.seq) {
        return Ok(());
    }
    let unique = u64::from_le_bytes(crypto::secrets::random_bytes::<8>());
    let temp = path.with_extension(format!("{unique:016x}.tmp"));
    let text = serde_json::to_string_pretty(checkpoint).unwrap_or_default();
    let written = std::fs::File::create(&temp)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(err) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(error(err));
    }
    std::fs::File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(error)
}

pub fn read_checkpoint_file(path: &Path) -> Option<CheckpointFile> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::{read_checkpoint_file, write_checkpoint_file, CheckpointFile};

    fn at(seq: i64) -> CheckpointFile {
        CheckpointFile {
            seq,
            hash: format!("hash-{seq}"),
            at: 1_700_000_000 + seq,
            kid: "audit-1".to_owned(),
            signature: format!("signature-{seq}"),
        }
    }

    #[test]
    fn the_checkpoint_file_never_goes_back_to_an_older_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit").join("audit-checkpoint.json");
        write_checkpoint_file(&path, &at(10)).unwrap();
        // A replica that signed an older head writes after one that signed a newer head.
        write_checkpoint_file(&path, &at(5)).unwrap();
        assert_eq!(read_checkpoint_file(&path), Some(at(10)));
        write_checkpoint_file(&path, &at(12)).unwrap();
        assert_eq!(read_checkpoint_file(&path), Some(at(12)));
    }

    #[test]
    fn writers_sharing_the_file_leave_the_newest_whole_checkpoint_and_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit-checkpoint.json");
        std::thread::scope(|scope| {
            for writer in 0..8_i64 {
                let path = &path;
                scope.spawn(move || {
                    for round in 0..50_i64 {
                        write_checkpoint_file(path, &at(round * 8 + writer)).unwrap();
                        let seen = read_checkpoint_file(path).expect("always a whole file");
                        assert!(seen.seq >= round * 8 + writer, "went back to {}", seen.seq);
                    }
                });
            }
        });
        assert_eq!(read_checkpoint_file(&path), Some(at(49 * 8 + 7)));
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["audit-checkpoint.json", "audit-checkpoint.lock"]);
    }
}
