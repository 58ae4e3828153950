//! The one door to personal data at rest: each person's fields are sealed with their own data
//! key, bound to table, column and row, and look-ups go through keyed blind indexes. Erasing
//! a person destroys their key, which makes every copy of their ciphertext unreadable.

use crate::envelope::DataKey;
use crate::keystore::KeyStore;
use crate::CryptoError;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Unwrapped data keys kept in memory; cleared wholesale when full, and per person on erasure.
const CACHE_LIMIT: usize = 4096;

pub struct Vault {
    keys: KeyStore,
    cache: Mutex<HashMap<String, Arc<DataKey>>>,
    /// People shredded by this process: their keys are never served again, even by a read
    /// that raced with the shredding.
    shredded: Mutex<std::collections::HashSet<String>>,
}

impl Vault {
    pub fn new(keys: KeyStore) -> Self {
        Self {
            keys,
            cache: Mutex::new(HashMap::new()),
            shredded: Mutex::new(std::collections::HashSet::new()),
        }
    }

    pub fn key_store(&self) -> &KeyStore {
        &self.keys
    }

    /// Creates the data key of a new person.
    pub fn create_person(&self, owner: &str) -> Result<Arc<DataKey>, CryptoError> {
        let key = Arc::new(self.keys.create_data_key(owner)?);
        self.remember(owner, &key);
        Ok(key)
    }

    /// The person's data key, or `None` once it has been destroyed.
    pub fn person_key(&self, owner: &str) -> Result<Option<Arc<DataKey>>, CryptoError> {
        if self.was_shredded(owner) {
            return Ok(None);
        }
        if let Some(key) = self.cache.lock().ok().and_then(|c| c.get(owner).cloned()) {
            return Ok(Some(key));
        }
        let Some(key) = self.keys.data_key(owner)? else {
            return Ok(None);
        };
        let key = Arc::new(key);
        self.remember(owner, &key);
        if self.was_shredded(owner) {
            self.forget(owner);
            return Ok(None);
        }
        Ok(Some(key))
    }

    fn was_shredded(&self, owner: &str) -> bool {
        self.shredded
            .lock()
            .map(|s| s.contains(owner))
            .unwrap_or(true)
    }

    fn forget(&self, owner: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(owner);
        }
    }

    fn remember(&self, owner: &str, key: &Arc<DataKey>) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(owner.to_owned(), Arc::clone(key));
        }
    }

    /// Destroys the person's data key (crypto-shredding) and forgets any cached copy.
    pub fn shred(&self, owner: &str) -> Result<bool, CryptoError> {
        if let Ok(mut shredded) = self.shredded.lock() {
            shredded.insert(owner.to_owned());
        }
        self.forget(owner);
        self.keys.destroy_data_key(owner)
    }

    /// Seals a personal field. `field` names table and column, e.g. `accounts.email`.
    pub fn seal(key: &DataKey, field: &str, row: &str, plaintext: &str) -> Vec<u8> {
        key.seal(plaintext.as_bytes(), &format!("{field}:{row}"))
    }

    pub fn open(
        key: &DataKey,
        field: &str,
        row: &str,
        sealed: &[u8],
    ) -> Result<String, CryptoError> {
        let bytes = key.open(sealed, &format!("{field}:{row}"))?;
        String::from_utf8(bytes).map_err(|_| CryptoError::Decryption)
    }

    /// The blind index of a normalised value in a named domain (e.g. `username`).
    pub fn blind_index(&self, domain: &str, normalised: &str) -> Vec<u8> {
        self.keys.index_key().blind_index(domain, normalised)
    }
}
