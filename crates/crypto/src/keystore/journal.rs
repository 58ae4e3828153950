//! The erasure journal: an append-only list of erased pseudonyms, outside the database.
//!
//! After a database restore, replaying this journal re-applies erasures that happened
//! after the backup was taken.

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::PathBuf;

use super::KeyStore;
use crate::{envelope, fsutil, CryptoError};

const JOURNAL_FILE: &str = "erasure-journal";
/// Appended to a partial last line (left by a crash mid-append) before the next entry,
/// so the fragment can never be mistaken for a real, shorter pseudonym.
const TORN_MARKER: &str = "#torn";

impl KeyStore {
    fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }

    /// Appends `pseudonym` as one line and fsyncs before returning.
    ///
    /// The pseudonym must be 1..=64 chars of `[A-Za-z0-9_-]`, so a line can never hold
    /// anything else (no newlines, no personal data).
    pub fn journal_append(&self, pseudonym: &str) -> Result<(), CryptoError> {
        if !envelope::valid_id(pseudonym) {
            return Err(CryptoError::InvalidOwner);
        }
        let path = self.journal_path();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(fsutil::FILE_MODE)
            .open(&path)
            .map_err(|e| CryptoError::io("opening", &path, e))?;
        // Erasure replicas and the `erasure run` job may share the journal's volume, so an OS
        // file lock (released when `file` closes) keeps the torn-line check and the append one
        // step across processes. It is taken before the in-process guard, so waiting for
        // another process never holds up this process's key look-ups.
        file.lock()
            .map_err(|e| CryptoError::io("locking", &path, e))?;
        let _guard = self.write_masters();
        let len = file
            .metadata()
            .map_err(|e| CryptoError::io("inspecting", &path, e))?
            .len();
        let mut line = String::with_capacity(pseudonym.len() + 2);
        if len > 0 {
            let mut last = [0u8; 1];
            file.read_exact_at(&mut last, len - 1)
                .map_err(|e| CryptoError::io("reading", &path, e))?;
            if last[0] != b'\n' {
                line.push_str(TORN_MARKER);
                line.push('\n');
            }
        }
        line.push_str(pseudonym);
        line.push('\n');
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| CryptoError::io("appending to", &path, e))?;
        fsutil::sync_dir(&self.dir)
    }

    /// Every complete journal line, oldest first; empty if nothing was ever erased.
    ///
    /// Partial lines left by a crash mid-append (a final line without its newline, or an
    /// earlier one marked as torn) are ignored rather than risk acting on a truncated
    /// pseudonym; a torn append never reported success to its caller.
    pub fn journal_entries(&self) -> Result<Vec<String>, CryptoError> {
        let path = self.journal_path();
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(CryptoError::io("reading", &path, e)),
        };
        let text =
            std::str::from_utf8(&bytes).map_err(|_| CryptoError::corrupt(&path, "not UTF-8"))?;
        let Some((complete, _torn)) = text.rsplit_once('\n') else {
            return Ok(Vec::new());
        };
        complete
            .split('\n')
            .filter(|line| !line.is_empty() && !line.ends_with(TORN_MARKER))
            .map(|line| {
                if envelope::valid_id(line) {
                    Ok(line.to_owned())
                } else {
                    Err(CryptoError::corrupt(&path, "invalid journal line"))
                }
            })
            .collect()
    }
}
