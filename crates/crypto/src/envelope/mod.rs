//! Envelope encryption: per-person data keys wrapped by a master key, and blind indexes.
//!
//! Each person's personal fields are sealed with their own [`DataKey`]; destroying that
//! key (crypto-shredding) makes every copy of those fields unreadable, including copies
//! in database backups. Searchable fields get a keyed [`IndexKey::blind_index`] instead.

use std::fmt;

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::{b64, secrets, CryptoError};

/// Format version of wrapped keys and sealed fields.
const VERSION: u8 = 1;
/// XChaCha20 nonce length.
const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
const TAG_LEN: usize = 16;

/// Checks an identifier: 1..=64 chars of `[A-Za-z0-9_-]`.
pub(crate) fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// Decodes exactly 32 bytes of base64url key material.
fn decode_key(text: &str) -> Result<[u8; 32], CryptoError> {
    let bytes =
        Zeroizing::new(b64::decode(text).map_err(|_| CryptoError::InvalidKey("bad base64url"))?);
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::InvalidKey("key must be 32 bytes"))
}

/// XChaCha20-Poly1305 encryption, returning `nonce || ciphertext`.
fn aead_seal(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let nonce = secrets::random_bytes::<NONCE_LEN>();
    let cipher = XChaCha20Poly1305::new(key.into());
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Encryption)?;
    let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Inverse of [`aead_seal`]; `input` is `nonce || ciphertext`.
fn aead_open(key: &[u8; 32], input: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if input.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::InvalidFormat("too short"));
    }
    let (nonce, ciphertext) = input.split_at(NONCE_LEN);
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Decryption)
}

/// The key that wraps every data key. `Debug` shows only the id.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    key: [u8; 32],
}

impl MasterKey {
    /// Parses the text form `<id>:<base64url of 32 bytes>` (surrounding whitespace ignored).
    pub fn from_encoded(s: &str) -> Result<Self, CryptoError> {
        let (id, key) = s
            .trim()
            .split_once(':')
            .ok_or(CryptoError::InvalidKey("master key must be <id>:<key>"))?;
        if !valid_id(id) {
            return Err(CryptoError::InvalidKey(
                "master key id must be 1-64 of [A-Za-z0-9_-]",
            ));
        }
        Ok(MasterKey {
            id: id.to_owned(),
            key: decode_key(key)?,
        })
    }

    /// Generates a random master key with the given id.
    ///
    /// # Panics
    ///
    /// If `id` is not 1..=64 chars of `[A-Za-z0-9_-]`; ids are normally constants such as
    /// `"m2"`. Use [`Self::try_generate`] for ids that come from input.
    pub fn generate(id: &str) -> Self {
        match Self::try_generate(id) {
            Ok(key) => key,
            Err(_) => panic!("invalid master key id"),
        }
    }

    /// Generates a random master key, rejecting an invalid id.
    pub fn try_generate(id: &str) -> Result<Self, CryptoError> {
        if !valid_id(id) {
            return Err(CryptoError::InvalidKey(
                "master key id must be 1-64 of [A-Za-z0-9_-]",
            ));
        }
        Ok(MasterKey {
            id: id.to_owned(),
            key: secrets::random_bytes(),
        })
    }

    /// The key id recorded in every blob this key wraps.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The text form, `<id>:<base64url key>`. This contains the secret.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.id, b64::encode(&self.key))
    }

    /// Whether `other` has the same id and key bytes (compared in constant time).
    pub fn same_as(&self, other: &MasterKey) -> bool {
        self.id == other.id && secrets::constant_time_eq(&self.key, &other.key)
    }

    /// Generates a data key for `owner` and returns it with its wrapped form.
    ///
    /// Wrapped format: `1 || len(id) || id || nonce(24) || XChaCha20-Poly1305(key)`, with
    /// associated data `"dk:" + owner` so a wrapped key cannot be moved to another owner.
    pub fn new_data_key(&self, owner: &str) -> (DataKey, Vec<u8>) {
        let key = DataKey(secrets::random_bytes());
        let wrapped = self.wrap(owner, &key);
        (key, wrapped)
    }

    /// Wraps an existing data key for `owner`.
    pub(crate) fn wrap(&self, owner: &str, key: &DataKey) -> Vec<u8> {
        let sealed = match aead_seal(&self.key, &key.0, format!("dk:{owner}").as_bytes()) {
            Ok(sealed) => sealed,
            Err(_) => unreachable!("a 32-byte message is always within the AEAD length limit"),
        };
        let id = self.id.as_bytes();
        let mut out = Vec::with_capacity(2 + id.len() + sealed.len());
        out.push(VERSION);
        // valid_id caps ids at 64 bytes, so the length always fits in one byte.
        out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(id);
        out.extend_from_slice(&sealed);
        out
    }

    /// Unwraps a data key for `owner`; fails if another master key wrapped it.
    pub fn unwrap(&self, owner: &str, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        let (id, rest) = split_wrapped(wrapped)?;
        if id != self.id {
            return Err(CryptoError::UnknownMasterKey(id.to_owned()));
        }
        let plain = Zeroizing::new(aead_open(
            &self.key,
            rest,
            format!("dk:{owner}").as_bytes(),
        )?);
        let bytes: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::InvalidFormat("wrapped key is not 32 bytes"))?;
        Ok(DataKey(bytes))
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Splits a wrapped key into its master id and `nonce || ciphertext`.
fn split_wrapped(wrapped: &[u8]) -> Result<(&str, &[u8]), CryptoError> {
    let [version, id_len, rest @ ..] = wrapped else {
        return Err(CryptoError::InvalidFormat("wrapped key too short"));
    };
    if *version != VERSION {
        return Err(CryptoError::InvalidFormat("unknown wrapped key version"));
    }
    let id_len = usize::from(*id_len);
    if rest.len() < id_len {
        return Err(CryptoError::InvalidFormat("wrapped key too short"));
    }
    let (id, rest) = rest.split_at(id_len);
    let id = std::str::from_utf8(id)
        .ok()
        .filter(|id| valid_id(id))
        .ok_or(CryptoError::InvalidFormat("bad master key id"))?;
    Ok((id, rest))
}

/// Which master key wrapped this blob (used to pick the key during rotation).
pub fn wrapped_master_id(wrapped: &[u8]) -> Result<String, CryptoError> {
    split_wrapped(wrapped).map(|(id, _)| id.to_owned())
}

/// A per-person key for sealing personal fields. Wiped on drop; `Debug` redacts.
pub struct DataKey([u8; 32]);

impl DataKey {
    /// Encrypts a field: `1 || nonce(24) || XChaCha20-Poly1305(plaintext, aad)`.
    ///
    /// Pass an `aad` naming where the value lives, e.g. `"accounts.email:<row id>"`, so a
    /// ciphertext copied to another row or column fails to open.
    ///
    /// # Panics
    ///
    /// Only if `plaintext` exceeds the cipher's limit of about 256 GiB.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Vec<u8> {
        let sealed = match aead_seal(&self.0, plaintext, aad.as_bytes()) {
            Ok(sealed) => sealed,
            Err(_) => panic!("plaintext exceeds the XChaCha20-Poly1305 length limit"),
        };
        let mut out = Vec::with_capacity(1 + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts what [`Self::seal`] produced with the same `aad`.
    pub fn open(&self, sealed: &[u8], aad: &str) -> Result<Vec<u8>, CryptoError> {
        match sealed.split_first() {
            Some((&VERSION, rest)) => aead_open(&self.0, rest, aad.as_bytes()),
            Some(_) => Err(CryptoError::InvalidFormat("unknown sealed field version")),
            None => Err(CryptoError::InvalidFormat("empty")),
        }
    }
}

impl Drop for DataKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// The key for blind indexes (keyed hashes of normalised values). `Debug` redacts.
#[derive(Clone)]
pub struct IndexKey([u8; 32]);

impl IndexKey {
    /// Parses the text form: base64url of 32 bytes (surrounding whitespace ignored).
    pub fn from_encoded(s: &str) -> Result<Self, CryptoError> {
        decode_key(s.trim()).map(IndexKey)
    }

    /// Generates a random index key.
    pub fn generate() -> Self {
        IndexKey(secrets::random_bytes())
    }

    /// The text form. This contains the secret.
    pub fn encode(&self) -> String {
        b64::encode(&self.0)
    }

    /// `HMAC-SHA256(key, domain || 0x00 || value)`; normalise `value` before calling.
    ///
    /// `domain` (e.g. `"accounts.email"`) separates indexes of different fields and must
    /// not contain a NUL byte.
    pub fn blind_index(&self, domain: &str, value: &str) -> Vec<u8> {
        // HMAC pads keys shorter than the 64-byte block with zeros (RFC 2104), so this
        // padded key gives the same MAC as the 32-byte key, without a fallible constructor.
        let mut block = Zeroizing::new([0u8; 64]);
        block[..32].copy_from_slice(&self.0);
        let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new(block.as_slice().into());
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

impl Drop for IndexKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IndexKey(<redacted>)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
