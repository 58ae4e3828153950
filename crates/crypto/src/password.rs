//! Argon2id password hashing, plus a dummy verify so unknown usernames cost the same time.
//!
//! Parameters follow the OWASP baseline for Argon2id: 19 MiB memory, 2 passes, 1 lane,
//! 32-byte output, 16-byte random salt, stored as a PHC string. These functions are
//! CPU-bound and synchronous; async callers should run them on a blocking pool.

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::{secrets, CryptoError};

/// Memory cost in KiB.
const M_COST: u32 = 19_456;
/// Number of passes.
const T_COST: u32 = 2;
/// Degree of parallelism.
const P_COST: u32 = 1;
/// Output length in bytes.
const OUTPUT_LEN: usize = 32;

/// A hash of a random, discarded password made with exactly the parameters above.
///
/// [`dummy_verify`] checks against it so that a login for an unknown user does the same
/// Argon2 work as a login with a wrong password. It is a constant rather than computed
/// lazily so that the first such request is not slower than later ones.
const DUMMY_PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$jAggwXOiVaiWpd7WjoVirw$Kwxn67z4Pc7BdWnaDCcxvcensEmjYOfefGVt2xNcLG0";

fn hasher() -> Result<Argon2<'static>, CryptoError> {
    let params = Params::new(M_COST, T_COST, P_COST, Some(OUTPUT_LEN))
        .map_err(|_| CryptoError::PasswordHash)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password with Argon2id and a fresh random salt, returning a PHC string.
pub fn hash_password(password: &str) -> Result<String, CryptoError> {
    let salt = SaltString::encode_b64(&secrets::random_bytes::<16>())
        .map_err(|_| CryptoError::PasswordHash)?;
    let hash = hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|_| CryptoError::PasswordHash)?;
    Ok(hash.to_string())
}

/// Checks a password against a PHC string; `false` on mismatch or on any error.
///
/// The cost parameters are taken from the PHC string, so hashes made with older
/// parameters keep verifying. The final comparison is constant time.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return false;
    }
    match hasher() {
        Ok(argon) => argon.verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Spends the same time as [`verify_password`] on a real hash, then discards the result.
///
/// Call it when the username is unknown so that response time does not reveal which
/// usernames exist.
pub fn dummy_verify(password: &str) {
    let outcome = verify_password(password, DUMMY_PHC);
    std::hint::black_box(outcome);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse battery staple", &phc));
        assert!(!verify_password("correct horse battery stapler", &phc));
        assert!(!verify_password("", &phc));
    }

    #[test]
    fn salts_differ() {
        let a = hash_password("pw").unwrap();
        let b = hash_password("pw").unwrap();
        assert_ne!(a, b);
        let parsed = PasswordHash::new(&a).unwrap();
        assert_eq!(
            parsed
                .salt
                .unwrap()
                .decode_b64(&mut [0u8; 64])
                .unwrap()
                .len(),
            16
        );
        assert_eq!(parsed.hash.unwrap().len(), OUTPUT_LEN);
    }

    #[test]
    fn garbage_phc_is_false() {
        assert!(!verify_password("pw", ""));
        assert!(!verify_password("pw", "not a phc string"));
        assert!(!verify_password(
            "pw",
            "$argon2id$v=19$m=19456,t=2,p=1$short"
        ));
    }

    #[test]
    fn other_algorithms_are_refused() {
        // A valid Argon2i hash of "pw" must not be accepted as a weaker substitute.
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(M_COST, T_COST, P_COST, Some(OUTPUT_LEN)).unwrap(),
        );
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let phc = argon2i.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(!verify_password("pw", &phc));
    }

    #[test]
    fn dummy_hash_uses_current_parameters() {
        let parsed = PasswordHash::new(DUMMY_PHC).unwrap();
        assert_eq!(parsed.algorithm, Algorithm::Argon2id.ident());
        let params = Params::try_from(&parsed).unwrap();
        assert_eq!(params.m_cost(), M_COST);
        assert_eq!(params.t_cost(), T_COST);
        assert_eq!(params.p_cost(), P_COST);
        assert_eq!(params.output_len(), Some(OUTPUT_LEN));
        assert_eq!(parsed.version, Some(Version::V0x13.into()));
        assert_eq!(
            parsed
                .salt
                .unwrap()
                .decode_b64(&mut [0u8; 64])
                .unwrap()
                .len(),
            16
        );
        dummy_verify("anything");
        assert!(!verify_password("anything", DUMMY_PHC));
    }
}
