//! Token-signing keys persisted in a private directory, with rotation and an overlap window.
//!
//! The file `signing-keys.json` is a JSON array of `{"kid","createdAt","secret"}`, oldest
//! first. Rotation appends a key and prunes old ones, keeping the previous key (and any
//! key younger than a day) so tokens signed before the rotation keep verifying.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use zeroize::{Zeroize, Zeroizing};

use crate::jws::{SigningKey, Verifier};
use crate::{b64, fsutil, CryptoError};

/// File name of the key ring inside its directory.
pub const FILE_NAME: &str = "signing-keys.json";

/// Keys older than the newest-but-one survive rotation only if younger than this.
pub const OVERLAP_SECONDS: i64 = 24 * 60 * 60;

/// One stored key. Its secret is wiped on drop.
#[derive(Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    #[serde(rename = "createdAt")]
    created_at: i64,
    secret: String,
}

impl Drop for StoredKey {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

/// The signing keys, newest last. `Debug` shows only kids.
pub struct SigningKeyRing {
    /// Older keys, oldest first, each with its creation time.
    older: Vec<(SigningKey, i64)>,
    /// The active key; kept apart so the ring can never be empty.
    newest: (SigningKey, i64),
}

impl fmt::Debug for SigningKeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(k, _)| k.kid()))
            .finish()
    }
}

impl SigningKeyRing {
    /// Loads the ring from `dir`, creating the directory (0700) and a first key if missing.
    pub fn load_or_create(dir: &Path) -> Result<Self, CryptoError> {
        fsutil::ensure_private_dir(dir)?;
        let path = dir.join(FILE_NAME);
        if let Some(ring) = Self::load(&path)? {
            return Ok(ring);
        }
        let ring = SigningKeyRing {
            older: Vec::new(),
            newest: (SigningKey::generate(), unix_now()),
        };
        match fsutil::write_atomic(&path, &ring.serialize()?, false) {
            Ok(()) => Ok(ring),
            // Another process created it first; use theirs.
            Err(CryptoError::AlreadyExists(_)) => {
                Self::load(&path)?.ok_or_else(|| CryptoError::corrupt(&path, "vanished"))
            }
            Err(e) => Err(e),
        }
    }

    /// Adds a new newest key and prunes old ones; returns the new kid.
    ///
    /// Kept: the new key, the one before it, and any older key created less than
    /// [`OVERLAP_SECONDS`] before `now`.
    pub fn rotate(dir: &Path, now: i64) -> Result<String, CryptoError> {
        let ring = Self::load_or_create(dir)?;
        let mut key = SigningKey::generate();
        while ring.iter().any(|(k, _)| k.kid() == key.kid()) {
            key = SigningKey::generate();
        }
        let kid = key.kid().to_owned();
        let SigningKeyRing { mut older, newest } = ring;
        // The previous newest key always stays; older ones only inside the overlap window.
        older.retain(|(_, created_at)| now.saturating_sub(*created_at) < OVERLAP_SECONDS);
        older.push(newest);
        let ring = SigningKeyRing {
            older,
            newest: (key, now),
        };
        fsutil::write_atomic(&dir.join(FILE_NAME), &ring.serialize()?, true)?;
        Ok(kid)
    }

    /// The newest key, used for signing.
    pub fn active(&self) -> &SigningKey {
        &self.newest.0
    }

    /// A verifier for every key in the ring.
    pub fn verifier(&self) -> Verifier {
        let mut verifier = Verifier::new();
        for (key, _) in self.iter() {
            verifier.add(key.kid(), key.verifying_key());
        }
        verifier
    }

    /// The public JWKS document, `{"keys":[...]}`, for every key in the ring.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.iter().map(|(k, _)| k.public_jwk()).collect();
        json!({ "keys": keys })
    }

    /// Kids with their creation times (unix seconds), oldest first.
    pub fn kids(&self) -> Vec<(String, i64)> {
        self.iter().map(|(k, t)| (k.kid().to_owned(), *t)).collect()
    }

    fn iter(&self) -> impl Iterator<Item = &(SigningKey, i64)> {
        self.older.iter().chain(std::iter::once(&self.newest))
    }

    fn load(path: &Path) -> Result<Option<Self>, CryptoError> {
        let Some(bytes) = fsutil::read_optional(path)? else {
            return Ok(None);
        };
        // Parse errors are not propagated: serde messages can quote the input.
        let stored: Vec<StoredKey> = serde_json::from_slice(&bytes)
            .map_err(|_| CryptoError::corrupt(path, "not a key list"))?;
        let mut keys = Vec::with_capacity(stored.len());
        for entry in &stored {
            if entry.kid.is_empty()
                || keys
                    .iter()
                    .any(|(k, _): &(SigningKey, i64)| k.kid() == entry.kid)
            {
                return Err(CryptoError::corrupt(path, "empty or duplicate kid"));
            }
            let secret = Zeroizing::new(
                b64::decode(&entry.secret).map_err(|_| CryptoError::corrupt(path, "bad secret"))?,
            );
            let secret: [u8; 32] = secret
                .as_slice()
                .try_into()
                .map_err(|_| CryptoError::corrupt(path, "secret is not 32 bytes"))?;
            keys.push((
                SigningKey::from_bytes(entry.kid.clone(), secret),
                entry.created_at,
            ));
        }
        let newest = keys
            .pop()
            .ok_or_else(|| CryptoError::corrupt(path, "no keys"))?;
        Ok(Some(SigningKeyRing {
            older: keys,
            newest,
        }))
    }

    fn serialize(&self) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let stored: Vec<StoredKey> = self
            .iter()
            .map(|(key, created_at)| {
                let mut secret = key.secret_bytes();
                let entry = StoredKey {
                    kid: key.kid().to_owned(),
                    created_at: *created_at,
                    secret: b64::encode(&secret),
                };
                secret.zeroize();
                entry
            })
            .collect();
        serde_json::to_vec_pretty(&stored)
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::InvalidKey("could not serialise signing keys"))
    }
}

/// Where the ring for `dir` lives.
pub fn file_path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A signing key ring that follows its file: `examplebank keys rotate-signing`, run beside a
/// live server, adds a key; the server picks it up on its next reload and signs with it, while
/// tokens signed with the older keys keep verifying until those keys leave the ring.
pub struct SharedKeyRing {
    dir: std::path::PathBuf,
    current: std::sync::RwLock<std::sync::Arc<SigningKeyRing>>,
    stamp: std::sync::Mutex<Option<(std::time::SystemTime, u64)>>,
}

impl SharedKeyRing {
    pub fn load_or_create(dir: &Path) -> Result<Self, CryptoError> {
        let ring = SigningKeyRing::load_or_create(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            current: std::sync::RwLock::new(std::sync::Arc::new(ring)),
            stamp: std::sync::Mutex::new(file_stamp(dir)),
        })
    }

    pub fn current(&self) -> std::sync::Arc<SigningKeyRing> {
        match self.current.read() {
            Ok(guard) => std::sync::Arc::clone(&guard),
            Err(poisoned) => std::sync::Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Reloads the ring when its file changed. Returns true when it did.
    pub fn reload_if_changed(&self) -> Result<bool, CryptoError> {
        let stamp = file_stamp(&self.dir);
        let Ok(mut last) = self.stamp.lock() else {
            return Ok(false);
        };
        if *last == stamp {
            return Ok(false);
        }
        let ring = SigningKeyRing::load_or_create(&self.dir)?;
        if let Ok(mut current) = self.current.write() {
            *current = std::sync::Arc::new(ring);
        }
        *last = stamp;
        Ok(true)
    }
}

fn file_stamp(dir: &Path) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(file_path(dir)).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::jws::{sign, Expectations};
    use std::os::unix::fs::PermissionsExt as _;

    fn expectations(now: i64) -> Expectations<'static> {
        Expectations {
            typ: "at+jwt",
            issuer: "iss",
            audience: "aud",
            now,
            leeway: 0,
        }
    }

    fn token(key: &SigningKey, now: i64) -> String {
        let claims = json!({ "iss": "iss", "aud": "aud", "iat": now, "exp": now + 60 });
        sign(key, "at+jwt", &claims)
    }

    #[test]
    fn creates_private_dir_and_file_and_reloads() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let ring = SigningKeyRing::load_or_create(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file_path(&dir)), 0o600);
        let again = SigningKeyRing::load_or_create(&dir).unwrap();
        assert_eq!(again.active().kid(), ring.active().kid());
        assert_eq!(again.active().secret_bytes(), ring.active().secret_bytes());
        let text = std::fs::read_to_string(file_path(&dir)).unwrap();
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert!(parsed[0]["createdAt"].is_i64());
        assert_eq!(parsed[0]["kid"], ring.active().kid());
        assert!(!format!("{ring:?}").contains(parsed[0]["secret"].as_str().unwrap()));
    }

    #[test]
    fn rotation_keeps_overlap_and_prunes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let first = SigningKeyRing::load_or_create(dir).unwrap();
        let t0 = first.kids()[0].1;
        let old_token = token(first.active(), t0);

        let k1 = SigningKeyRing::rotate(dir, t0 + 10).unwrap();
        let ring = SigningKeyRing::load_or_create(dir).unwrap();
        assert_eq!(ring.active().kid(), k1);
        assert_eq!(ring.kids().len(), 2);
        assert!(ring
            .verifier()
            .verify(&old_token, &expectations(t0))
            .is_ok());
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 2);

        // Within a day, a second rotation still keeps the first key.
        let k2 = SigningKeyRing::rotate(dir, t0 + 20).unwrap();
        let ring = SigningKeyRing::load_or_create(dir).unwrap();
        assert_eq!(ring.kids().len(), 3);
        assert!(ring
            .verifier()
            .verify(&old_token, &expectations(t0))
            .is_ok());

        // Two days later only the new key and its predecessor remain.
        let k3 = SigningKeyRing::rotate(dir, t0 + 2 * OVERLAP_SECONDS).unwrap();
        let ring = SigningKeyRing::load_or_create(dir).unwrap();
        let kids: Vec<String> = ring.kids().into_iter().map(|(k, _)| k).collect();
        assert_eq!(kids, vec![k2, k3.clone()]);
        assert_eq!(ring.active().kid(), k3);
        assert!(ring
            .verifier()
            .verify(&old_token, &expectations(t0))
            .is_err());
        assert_eq!(
            std::fs::metadata(file_path(dir))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }

    #[test]
    fn corrupt_files_are_rejected_without_leaking() {
        let tmp = tempfile::tempdir().unwrap();
        let path = file_path(tmp.path());
        for content in [
            "",
            "[]",
            "{}",
            r#"[{"kid":"a","createdAt":1,"secret":"c2VjcmV0LXNlY3JldA"}]"#,
            r#"[{"kid":"a","createdAt":1,"secret":"not base64!"}]"#,
        ] {
            std::fs::write(&path, content).unwrap();
            let err = SigningKeyRing::load_or_create(tmp.path()).unwrap_err();
            assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
        }
        let key = b64::encode(&[1u8; 32]);
        let dup = format!(
            r#"[{{"kid":"a","createdAt":1,"secret":"{key}"}},{{"kid":"a","createdAt":2,"secret":"{key}"}}]"#
        );
        std::fs::write(&path, dup).unwrap();
        assert!(SigningKeyRing::load_or_create(tmp.path()).is_err());
    }
}
