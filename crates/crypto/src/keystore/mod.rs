//! The on-disk key store, kept apart from the database so database backups never hold keys.
//!
//! Layout of the store directory (mode 0700, files 0600, all writes atomic):
//! - `master.key`: the master key `<id>:<key>` unless one is supplied by the caller;
//! - `master.previous`: master keys replaced by rotation, one per line, kept so data keys
//!   wrapped by either key stay readable if a rotation is interrupted;
//! - `index.key`: the blind-index key;
//! - `data/<owner>.key`: one wrapped data key per pseudonymous owner;
//! - `erasure-journal`: pseudonyms whose data was erased, one per line.
//!
//! Mutations are serialised within one process. Run master-key rotation while no other
//! process is using the store, so a concurrent erasure cannot be undone by a re-wrap.

mod journal;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use zeroize::Zeroizing;

use crate::envelope::{self, wrapped_master_id, DataKey, IndexKey, MasterKey};
use crate::{fsutil, CryptoError};

const MASTER_FILE: &str = "master.key";
const PREVIOUS_FILE: &str = "master.previous";
const INDEX_FILE: &str = "index.key";
const DATA_DIR: &str = "data";
/// Id given to a master key generated on first start.
pub const FIRST_MASTER_ID: &str = "m1";

struct Masters {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl Masters {
    fn find(&self, id: &str) -> Option<&MasterKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|m| m.id() == id)
    }
}

/// Master key, previous master keys, index key and data-key files in one directory.
pub struct KeyStore {
    dir: PathBuf,
    /// Master keys; the write lock also serialises every file mutation in this process.
    masters: RwLock<Masters>,
    master_from_file: bool,
    index: IndexKey,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStore")
            .field("dir", &self.dir)
            .field("master_id", &self.master_id())
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// Opens (creating if needed) the store in `dir`.
    ///
    /// With `master == None` the master key is read from `dir/master.key`; if that file is
    /// missing it is generated (id `"m1"`) when `allow_generate` is set, and otherwise this
    /// fails with [`CryptoError::MasterKeyMissing`]. Returns whether a master key was
    /// generated, so the caller can tell the operator to back it up.
    pub fn open(
        dir: &Path,
        master: Option<MasterKey>,
        allow_generate: bool,
    ) -> Result<(KeyStore, bool), CryptoError> {
        fsutil::ensure_private_dir(dir)?;
        fsutil::ensure_private_dir(&dir.join(DATA_DIR))?;
        let master_path = dir.join(MASTER_FILE);
        let (current, master_from_file, generated) = match master {
            Some(master) => (master, false, false),
            None => {
                if fsutil::read_text_optional(&master_path)?.is_none() && !allow_generate {
                    return Err(CryptoError::MasterKeyMissing(
                        master_path.display().to_string(),
                    ));
                }
                let (text, generated) = read_or_create(&master_path, || {
                    MasterKey::generate(FIRST_MASTER_ID).encode()
                })?;
                let key = MasterKey::from_encoded(&text)
                    .map_err(|_| CryptoError::corrupt(&master_path, "expected <id>:<key>"))?;
                (key, true, generated)
            }
        };
        let previous = read_previous(&dir.join(PREVIOUS_FILE))?
            .into_iter()
            .filter(|m| m.id() != current.id())
            .collect();
        let index_path = dir.join(INDEX_FILE);
        let (index_text, _) = read_or_create(&index_path, || IndexKey::generate().encode())?;
        let index = IndexKey::from_encoded(&index_text)
            .map_err(|_| CryptoError::corrupt(&index_path, "expected a base64url key"))?;
        let store = KeyStore {
            dir: dir.to_owned(),
            masters: RwLock::new(Masters { current, previous }),
            master_from_file,
            index,
        };
        store.check_masters()?;
        Ok((store, generated))
    }

    /// Opens a few data keys on disk, if there are any, with the master keys this store
    /// holds. A wrong master key with the right id (a mistyped `EXAMPLEBANK_MASTER_KEY`,
    /// another environment's key file) then stops the process at start, instead of the
    /// process starting and failing every request that needs a person's key.
    fn check_masters(&self) -> Result<(), CryptoError> {
        // Up to three keys, so one damaged file cannot stop a start on its own.
        const SAMPLE: usize = 3;
        let dir = self.dir.join(DATA_DIR);
        let entries = fs::read_dir(&dir).map_err(|e| CryptoError::io("listing", &dir, e))?;
        let (mut opened, mut refused) = (0, 0);
        for entry in entries {
            let entry = entry.map_err(|e| CryptoError::io("listing", &dir, e))?;
            let name = entry.file_name();
            let Some(owner) = name.to_str().and_then(|n| n.strip_suffix(".key")) else {
                continue;
            };
            if !envelope::valid_id(owner) {
                continue;
            }
            // Only "right id, wrong key" counts. A key erased between listing and reading, or
            // one wrapped by a key this process does not hold (a rotation under way
            // elsewhere), stays what it was: an error for the one person whose key it is,
            // reported when it is used.
            match self.data_key(owner) {
                Ok(Some(_)) => opened += 1,
                Err(CryptoError::Decryption) => refused += 1,
                _ => continue,
            }
            if opened + refused == SAMPLE {
                break;
            }
        }
        if refused > 0 && opened == 0 {
            return Err(CryptoError::MasterKeyMismatch(
                self.dir.display().to_string(),
            ));
        }
        Ok(())
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Id of the current master key.
    pub fn master_id(&self) -> String {
        self.read_masters().current.id().to_owned()
    }

    /// The blind-index key.
    pub fn index_key(&self) -> &IndexKey {
        &self.index
    }

    /// Creates and stores a data key for `owner`; fails if one already exists.
    pub fn create_data_key(&self, owner: &str) -> Result<DataKey, CryptoError> {
        let path = self.data_path(owner)?;
        // Wrap under the newest master key, even if another process rotated it since start.
        self.reload_masters()?;
        let masters = self.write_masters();
        let (key, wrapped) = masters.current.new_data_key(owner);
        fsutil::write_atomic(&path, &wrapped, false)?;
        Ok(key)
    }

    /// The data key for `owner`, or `None` if it was never created or has been destroyed.
    pub fn data_key(&self, owner: &str) -> Result<Option<DataKey>, CryptoError> {
        let path = self.data_path(owner)?;
        let Some(wrapped) = fsutil::read_optional(&path)? else {
            return Ok(None);
        };
        let id = wrapped_master_id(&wrapped)?;
        {
            let masters = self.read_masters();
            if let Some(master) = masters.find(&id) {
                return master.unwrap(owner, &wrapped).map(Some);
            }
        }
        // Another process (`examplebank keys rotate`) may have rotated the master key while
        // this one runs: learn the keys on disk, then try once more.
        self.reload_masters()?;
        let masters = self.read_masters();
        let master = masters.find(&id).ok_or(CryptoError::UnknownMasterKey(id))?;
        master.unwrap(owner, &wrapped).map(Some)
    }

    /// Adds the master keys now on disk (`master.key` when the current key came from it, and
    /// `master.previous`) to the ones this process knows.
    fn reload_masters(&self) -> Result<(), CryptoError> {
        let previous = read_previous(&self.dir.join(PREVIOUS_FILE))?;
        let file_key = if self.master_from_file {
            fsutil::read_text_optional(&self.dir.join(MASTER_FILE))?
                .and_then(|text| MasterKey::from_encoded(&text).ok())
        } else {
            None
        };
        let mut masters = self.write_masters();
        if let Some(key) = file_key {
            if masters.find(key.id()).is_none() {
                // The file now holds a newer key: it becomes current, the old one stays known.
                let old = std::mem::replace(&mut masters.current, key);
                masters.previous.push(old);
            }
        }
        for key in previous {
            if masters.find(key.id()).is_none() {
                masters.previous.push(key);
            }
        }
        Ok(())
    }

    /// Crypto-shreds `owner`'s data key: overwrite with zeros, fsync, delete, fsync dir.
    ///
    /// Returns whether a key existed. On copy-on-write or flash storage the overwrite is
    /// best effort; what makes the data unreadable is that no copy of the wrapped key
    /// remains, so keep this directory out of long-lived backups.
    pub fn destroy_data_key(&self, owner: &str) -> Result<bool, CryptoError> {
        let live = self.data_path(owner)?;
        let _guard = self.write_masters();
        // Move the file aside first: a reader then sees the whole key or no key, never the
        // zeros being written over it.
        let path = live.with_extension("shredding");
        match fs::rename(&live, &path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && !path.exists() => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CryptoError::io("renaming", &live, e)),
        }
        let mut file = match OpenOptions::new().write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(CryptoError::io("opening", &path, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| CryptoError::io("inspecting", &path, e))?
            .len();
        let zeros = vec![0u8; usize::try_from(len).unwrap_or(0)];
        file.write_all(&zeros)
            .and_then(|()| file.sync_all())
            .map_err(|e| CryptoError::io("overwriting", &path, e))?;
        drop(file);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CryptoError::io("deleting", &path, e)),
        }
        fsutil::sync_dir(&self.dir.join(DATA_DIR))?;
        Ok(true)
    }

    /// Re-wraps every data key under `new_master`; returns how many files were re-wrapped.
    ///
    /// Order of work, so a crash at any point leaves every key readable: record the old
    /// master(s) in `master.previous`, re-wrap each file atomically, replace `master.key`
    /// (only if the current key came from that file), then trim `master.previous` to the
    /// key just replaced. Re-running with the same new key resumes an interrupted rotation.
    /// Afterwards this store uses `new_master` for new data keys.
    pub fn rotate_master(&self, new_master: &MasterKey) -> Result<usize, CryptoError> {
        let mut masters = self.write_masters();
        let clash = std::iter::once(&masters.current)
            .chain(&masters.previous)
            .any(|m| m.id() == new_master.id() && !m.same_as(new_master));
        if clash {
            return Err(CryptoError::InvalidRotation(
                "new master key reuses the id of a different key",
            ));
        }
        let mut old: Vec<MasterKey> = Vec::new();
        for m in std::iter::once(&masters.current).chain(&masters.previous) {
            if m.id() != new_master.id() && old.iter().all(|o| o.id() != m.id()) {
                old.push(m.clone());
            }
        }
        self.write_previous(&old)?;

        let mut count = 0;
        for (owner, path) in self.data_files()? {
            let Some(wrapped) = fsutil::read_optional(&path)? else {
                continue;
            };
            let id = wrapped_master_id(&wrapped)?;
            if id == new_master.id() {
                continue;
            }
            let master = old
                .iter()
                .find(|m| m.id() == id)
                .ok_or(CryptoError::UnknownMasterKey(id))?;
            let key = master.unwrap(&owner, &wrapped)?;
            fsutil::write_atomic(&path, &new_master.wrap(&owner, &key), true)?;
            count += 1;
        }

        if self.master_from_file {
            let text = Zeroizing::new(format!("{}\n", new_master.encode()));
            fsutil::write_atomic(&self.dir.join(MASTER_FILE), text.as_bytes(), true)?;
        }
        // Keep the key just replaced; when resuming (current is already the new key),
        // keep whatever was previous before.
        let replaced: Vec<MasterKey> = if masters.current.id() == new_master.id() {
            old
        } else {
            old.into_iter()
                .filter(|m| m.id() == masters.current.id())
                .collect()
        };
        self.write_previous(&replaced)?;
        masters.previous = replaced;
        masters.current = new_master.clone();
        Ok(count)
    }

    /// `(owner, path)` of every data-key file.
    fn data_files(&self) -> Result<Vec<(String, PathBuf)>, CryptoError> {
        let dir = self.dir.join(DATA_DIR);
        let entries = fs::read_dir(&dir).map_err(|e| CryptoError::io("listing", &dir, e))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| CryptoError::io("listing", &dir, e))?;
            let name = entry.file_name();
            let Some(owner) = name.to_str().and_then(|n| n.strip_suffix(".key")) else {
                continue;
            };
            if envelope::valid_id(owner) {
                files.push((owner.to_owned(), entry.path()));
            }
        }
        files.sort();
        Ok(files)
    }

    fn write_previous(&self, keys: &[MasterKey]) -> Result<(), CryptoError> {
        let mut text = Zeroizing::new(String::new());
        for key in keys {
            text.push_str(&Zeroizing::new(key.encode()));
            text.push('\n');
        }
        fsutil::write_atomic(&self.dir.join(PREVIOUS_FILE), text.as_bytes(), true)
    }

    fn data_path(&self, owner: &str) -> Result<PathBuf, CryptoError> {
        if !envelope::valid_id(owner) {
            return Err(CryptoError::InvalidOwner);
        }
        Ok(self.dir.join(DATA_DIR).join(format!("{owner}.key")))
    }

    fn read_masters(&self) -> RwLockReadGuard<'_, Masters> {
        self.masters.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_masters(&self) -> RwLockWriteGuard<'_, Masters> {
        self.masters.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Reads a one-line key file, creating it with `generate()` if missing.
///
/// Creation never overwrites: if another process wins the race, its key is used.
fn read_or_create(
    path: &Path,
    generate: impl FnOnce() -> String,
) -> Result<(Zeroizing<String>, bool), CryptoError> {
    if let Some(text) = fsutil::read_text_optional(path)? {
        return Ok((text, false));
    }
    let text = Zeroizing::new(generate());
    let line = Zeroizing::new(format!("{}\n", text.as_str()));
    match fsutil::write_atomic(path, line.as_bytes(), false) {
        Ok(()) => Ok((text, true)),
        Err(CryptoError::AlreadyExists(_)) => fsutil::read_text_optional(path)?
            .map(|t| (t, false))
            .ok_or_else(|| CryptoError::corrupt(path, "vanished")),
        Err(e) => Err(e),
    }
}

/// Master keys from `master.previous`, one per non-empty line; empty if the file is absent.
fn read_previous(path: &Path) -> Result<Vec<MasterKey>, CryptoError> {
    let Some(text) = fsutil::read_text_optional(path)? else {
        return Ok(Vec::new());
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            MasterKey::from_encoded(l)
                .map_err(|_| CryptoError::corrupt(path, "expected <id>:<key>"))
        })
        .collect()
}
