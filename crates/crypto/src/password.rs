//! Argon2id password hashing, plus a dummy verify so unknown usernames cost the same time.
//!
//! Parameters follow the OWASP baseline for Argon2id: 19 MiB memory, 2 passes, 1 lane,
//! 32-byte output, 16-byte random salt, stored as a PHC string. These functions are
//! CPU-bound and synchronous; async callers should run them on threads set aside for them
//! (identity's `PasswordHasher`).
//!
//! Argon2's 19 MiB of working memory is kept by each thread that hashes and reused for its next
//! hash, instead of being allocated, zero-filled and freed every time: that made each hash pay
//! for 19 MiB of fresh pages, and left freed blocks scattered over many threads' allocator
//! arenas (docs/performance.md, "Memory after a burst of logins"). The memory holds Argon2's
//! internal state, which the same one-way function derives from the password as the stored
//! hash, so keeping it reveals nothing the database does not already hold; every hash
//! overwrites all of it before reading any.

use std::cell::RefCell;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

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

thread_local! {
    /// This thread's Argon2 working memory, grown to the largest cost it has hashed with.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Argon2id of `password` and the raw `salt` into `out`, on this thread's reusable memory.
fn argon2id(
    params: Params,
    version: Version,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> Result<(), argon2::Error> {
    let blocks = params.block_count();
    let argon = Argon2::new(Algorithm::Argon2id, version, params);
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        argon.hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
    })
}

fn failed<E>(_: E) -> CryptoError {
    CryptoError::PasswordHash
}

/// Hashes a password with Argon2id and a fresh random salt, returning a PHC string.
pub fn hash_password(password: &str) -> Result<String, CryptoError> {
    let params = Params::new(M_COST, T_COST, P_COST, Some(OUTPUT_LEN)).map_err(failed)?;
    let salt = SaltString::encode_b64(&secrets::random_bytes::<16>()).map_err(failed)?;
    let mut raw_salt = [0u8; 64];
    let raw_salt = salt.as_salt().decode_b64(&mut raw_salt).map_err(failed)?;
    let output = Output::init_with(OUTPUT_LEN, |out| {
        argon2id(
            params.clone(),
            Version::V0x13,
            password.as_bytes(),
            raw_salt,
            out,
        )
        .map_err(Into::into)
    })
    .map_err(failed)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(failed)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
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
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(version) => version.unwrap_or_default(),
        Err(_) => return false,
    };
    let mut raw_salt = [0u8; 64];
    let Ok(raw_salt) = salt.decode_b64(&mut raw_salt) else {
        return false;
    };
    let computed = Output::init_with(expected.len(), |out| {
        argon2id(params, version, password.as_bytes(), raw_salt, out).map_err(Into::into)
    });
    // `Output`'s equality is constant time.
    matches!(computed, Ok(computed) if computed == expected)
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
    use argon2::password_hash::PasswordHasher as _;

    /// The argon2 crate's own hasher for `algorithm` at memory `m_cost` KiB and `t_cost` passes.
    fn their_argon2(algorithm: Algorithm, m_cost: u32, t_cost: u32) -> Argon2<'static> {
        let params = Params::new(m_cost, t_cost, P_COST, Some(OUTPUT_LEN)).unwrap();
        Argon2::new(algorithm, Version::V0x13, params)
    }

    #[test]
    fn hash_and_verify() {
        let phc = hash_password("correct horse battery staple").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(verify_password("correct horse battery staple", &phc));
        assert!(!verify_password("correct horse battery stapler", &phc));
        assert!(!verify_password("", &phc));
    }

    /// Hashes made by the argon2 crate's own `PasswordHasher` (every hash stored before the
    /// memory was reused) verify here, and hashes made here verify with the crate's
    /// `PasswordVerifier`: the format and the computation are unchanged.
    #[test]
    fn hashes_agree_with_the_argon2_crates_own_api() {
        use argon2::password_hash::PasswordVerifier as _;
        let standard = their_argon2(Algorithm::Argon2id, M_COST, T_COST);
        let salt = SaltString::encode_b64(&[9u8; 16]).unwrap();
        let theirs = standard
            .hash_password(b"pw one", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password("pw one", &theirs));
        assert!(!verify_password("pw two", &theirs));

        let ours = hash_password("pw two").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(standard.verify_password(b"pw two", &parsed).is_ok());
        assert!(standard.verify_password(b"pw one", &parsed).is_err());

        // Other costs (a hash from older settings) reuse and grow the same memory, and the
        // current cost still verifies afterwards.
        let big = their_argon2(Algorithm::Argon2id, M_COST * 2, 1);
        let small = their_argon2(Algorithm::Argon2id, 8, 1);
        for other in [big, small] {
            let phc = other.hash_password(b"pw three", &salt).unwrap().to_string();
            assert!(verify_password("pw three", &phc));
            assert!(!verify_password("pw four", &phc));
            assert!(verify_password("pw one", &theirs));
        }
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
        let argon2i = their_argon2(Algorithm::Argon2i, M_COST, T_COST);
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
