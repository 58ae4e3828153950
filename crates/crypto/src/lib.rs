//! Cryptography for examplebank: tokens, password hashing, envelope encryption, key stores.
//!
//! Everything secret lives behind types whose `Debug` output is redacted, and every error
//! message is safe to log. Nothing here touches the network.

mod error;
mod fsutil;

pub mod b64;
pub mod envelope;
pub mod jws;
pub mod keyring;
pub mod keystore;
pub mod password;
pub mod secrets;
pub mod vault;

pub use envelope::{wrapped_master_id, DataKey, IndexKey, MasterKey};
pub use error::CryptoError;
pub use jws::{sign, Expectations, JwtError, SigningKey, Verifier};
pub use keyring::SigningKeyRing;
pub use keystore::KeyStore;
