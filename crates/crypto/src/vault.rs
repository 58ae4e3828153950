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

/// How long an unwrapped key is used from memory before the key store is read again. Several
/// processes share one key store (split mode, replicas); when one of them shreds a person's key,
/// the others stop using their copy within this time.
pub const CACHE_SECONDS: u64 = 60;

pub struct Vault {
    keys: KeyStore,
    cache: Mutex<HashMap<String, (Arc<DataKey>, std::time::Instant)>>,
    /// People shredded by this process: their keys are never served again, even by a read
    /// that raced with the shredding.
    shredded: Mutex<std::collections::HashSet<String>>,
    cache_age: std::time::Duration,
}

impl Vault {
    pub fn new(keys: KeyStore) -> Self {
        Self {
            keys,
            cache: Mutex::new(HashMap::new()),
            shredded: Mutex::new(std::collections::HashSet::new()),
            cache_age: std::time::Duration::from_secs(CACHE_SECONDS),
        }
    }

    /// Uses unwrapped keys from memory for at most `age` (default [`CACHE_SECONDS`]).
    pub fn with_cache_age(mut self, age: std::time::Duration) -> Self {
        self.cache_age = age;
        self
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
        let fresh = self.cache_age;
        let cached = self.cache.lock().ok().and_then(|c| {
            c.get(owner)
                .filter(|(_, at)| at.elapsed() < fresh)
                .map(|(key, _)| Arc::clone(key))
        });
        if let Some(key) = cached {
            return Ok(Some(key));
        }
        self.forget(owner);
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
            cache.insert(
                owner.to_owned(),
                (Arc::clone(key), std::time::Instant::now()),
            );
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn vault_over(dir: &std::path::Path, age: Duration) -> Vault {
        let (keys, _) = KeyStore::open(dir, None, true).expect("key store");
        Vault::new(keys).with_cache_age(age)
    }

    /// Several processes share one key store. When one shreds a person's key, another stops
    /// using its unwrapped copy once that copy is older than the cache age.
    #[test]
    fn a_key_shredded_elsewhere_is_dropped_from_memory_after_the_cache_age() {
        let dir = tempfile::tempdir().expect("dir");
        let eraser = vault_over(dir.path(), Duration::from_secs(60));
        let long = vault_over(dir.path(), Duration::from_secs(60));
        let short = vault_over(dir.path(), Duration::ZERO);
        eraser.create_person("p1").expect("create");
        assert!(long.person_key("p1").expect("read").is_some());
        assert!(short.person_key("p1").expect("read").is_some());
        assert!(eraser.shred("p1").expect("shred"));
        assert!(eraser.person_key("p1").expect("read").is_none());
        assert!(
            long.person_key("p1").expect("read").is_some(),
            "within the cache age the copy in memory is still used"
        );
        assert!(
            short.person_key("p1").expect("read").is_none(),
            "past the cache age the key store is read again and the key is gone"
        );
    }
}
