//! Verification of the whole log: the chain, the checkpoints, and the checkpoint file.

use crate::{checkpoint_message, entry_hash, read_checkpoint_file};
use std::collections::BTreeMap;
use std::path::Path;
use store::{Store, GENESIS_HASH};

#[derive(Debug, Default, Clone)]
pub struct VerifyReport {
    pub entries: i64,
    pub checkpoints: usize,
    /// The first thing found wrong, if any: altered, missing or reordered entries, a bad
    /// signature, or a tail cut off after the last checkpoint.
    pub problem: Option<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// Checks every entry's hash and link, every checkpoint's signature and hash, and that the log
/// reaches at least as far as the checkpoint file says it did.
pub async fn verify(
    store: &Store,
    keys: &crypto::jws::Verifier,
    checkpoint_file: &Path,
) -> Result<VerifyReport, store::StoreError> {
    let mut report = VerifyReport::default();
    let checkpoints = store.audit_checkpoints().await?;
    report.checkpoints = checkpoints.len();
    for c in &checkpoints {
        if !keys.verify_detached(
            &c.kid,
            &checkpoint_message(c.seq, &c.hash, c.at),
            &c.signature,
        ) {
            report.problem = Some(format!(
                "checkpoint at entry {} has an invalid signature",
                c.seq
            ));
            return Ok(report);
        }
    }
    let by_seq: BTreeMap<i64, &store::AuditCheckpoint> =
        checkpoints.iter().map(|c| (c.seq, c)).collect();
    let mut previous: Option<(i64, String)> = None;
    let mut after = 0;
    loop {
        let page = store.audit_entries(after, 1000).await?;
        for entry in &page {
            let expected_prev = match &previous {
                Some((_, hash)) => hash.clone(),
                None if entry.seq == 1 => GENESIS_HASH.to_owned(),
                // Pruned by retention: the chain must resume at a signed checkpoint.
                None => match by_seq.get(&(entry.seq - 1)) {
                    Some(c) => c.hash.clone(),
                    None => {
                        report.problem = Some(format!("entries before {} are missing", entry.seq));
                        return Ok(report);
                    }
                },
            };
            if let Some((seq, _)) = &previous {
                if entry.seq != seq + 1 {
                    report.problem = Some(format!(
                        "entry {} is missing (found {} after {seq})",
                        seq + 1,
                        entry.seq
                    ));
                    return Ok(report);
                }
            }
            let recomputed = entry_hash(
                entry.seq,
                entry.at,
                &entry.actor,
                &entry.action,
                &entry.target,
                &entry.outcome,
                &entry.request_id,
                &entry.prev_hash,
            );
            if entry.prev_hash != expected_prev {
                report.problem = Some(format!(
                    "entry {} does not follow the entry before it (removed, inserted or reordered)",
                    entry.seq
                ));
                return Ok(report);
            }
            if recomputed != entry.hash {
                report.problem = Some(format!("entry {} was altered", entry.seq));
                return Ok(report);
            }
            if let Some(c) = by_seq.get(&entry.seq) {
                if c.hash != entry.hash {
                    report.problem = Some(format!(
                        "entry {} does not match its signed checkpoint",
                        entry.seq
                    ));
                    return Ok(report);
                }
            }
            report.entries += 1;
            previous = Some((entry.seq, entry.hash.clone()));
        }
        match page.last() {
            Some(last) if page.len() == 1000 => after = last.seq,
            _ => break,
        }
    }
    if let Some(file) = read_checkpoint_file(checkpoint_file) {
        if !keys.verify_detached(
            &file.kid,
            &checkpoint_message(file.seq, &file.hash, file.at),
            &file.signature,
        ) {
            report.problem = Some("the checkpoint file has an invalid signature".to_owned());
            return Ok(report);
        }
        let last = previous.as_ref().map(|(seq, _)| *seq).unwrap_or(0);
        if last < file.seq {
            report.problem = Some(format!(
                "the log ends at entry {last}, but a signed checkpoint saw entry {}: entries were cut off",
                file.seq
            ));
            return Ok(report);
        }
        if by_seq.get(&file.seq).is_none_or(|c| c.hash != file.hash) {
            let entries = store.audit_entries(file.seq - 1, 1).await?;
            if entries.first().is_none_or(|e| e.hash != file.hash) {
                report.problem = Some(format!(
                    "entry {} differs from the checkpoint file",
                    file.seq
                ));
                return Ok(report);
            }
        }
    }
    Ok(report)
}
