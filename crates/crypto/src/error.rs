//! One error type for the crate, with messages that never carry key material or plaintext.

use std::path::Path;

/// Errors from hashing, key handling, sealing and the on-disk key stores.
///
/// Messages are safe to log: they name the operation or file involved but never include
/// secrets, plaintext, or fragments of the input that failed to parse.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// Text that should be unpadded base64url was not.
    #[error("invalid base64url encoding")]
    InvalidBase64,
    /// A key in text or binary form had the wrong shape.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    /// A sealed or wrapped blob had the wrong shape or an unknown version.
    #[error("invalid ciphertext format: {0}")]
    InvalidFormat(&'static str),
    /// Authenticated decryption failed: wrong key, wrong associated data, or tampering.
    #[error("decryption failed")]
    Decryption,
    /// Encryption failed (only possible for absurdly large inputs).
    #[error("encryption failed")]
    Encryption,
    /// Password hashing failed.
    #[error("password hashing failed")]
    PasswordHash,
    /// A blob was wrapped by a master key this process does not hold.
    #[error("data key is wrapped by unknown master key id {0:?}")]
    UnknownMasterKey(String),
    /// A data-key owner or journal entry was not 1..=64 chars of `[A-Za-z0-9_-]`.
    #[error("invalid pseudonymous owner id")]
    InvalidOwner,
    /// Tried to create something that already exists.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// No master key was supplied and generation was not allowed.
    #[error(
        "no master key found at {0}; set EXAMPLEBANK_MASTER_KEY or EXAMPLEBANK_MASTER_KEY_FILE"
    )]
    MasterKeyMissing(String),
    /// The master key with the right id does not open the data keys on disk: the process was
    /// given another key than the one the store was made with.
    #[error(
        "the master key does not open the data keys in {0}: EXAMPLEBANK_MASTER_KEY (or the file it is read from) is not the key this store was made with"
    )]
    MasterKeyMismatch(String),
    /// A key file existed but its contents were unusable.
    #[error("corrupt key file {path}: {reason}")]
    CorruptKeyFile {
        /// The file that failed to parse.
        path: String,
        /// What was wrong with it (never the contents).
        reason: &'static str,
    },
    /// A JSON Web Key Set was malformed.
    #[error("invalid JWKS: {0}")]
    InvalidJwks(&'static str),
    /// A master-key rotation request made no sense.
    #[error("invalid master key rotation: {0}")]
    InvalidRotation(&'static str),
    /// An I/O operation on a key file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and to which path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl CryptoError {
    /// Wraps an I/O error with the action and path it concerned.
    pub(crate) fn io(action: &str, path: &Path, source: std::io::Error) -> Self {
        CryptoError::Io {
            context: format!("{action} {}", path.display()),
            source,
        }
    }

    /// A corrupt-file error for `path`.
    pub(crate) fn corrupt(path: &Path, reason: &'static str) -> Self {
        CryptoError::CorruptKeyFile {
            path: path.display().to_string(),
            reason,
        }
    }
}
