//! JWS tests for structure, claim and JWKS rules.

use serde_json::{json, Value};

use super::*;

#[test]
fn structure_rules() {
    let (key, verifier) = setup();
    let token = sign(&key, TYP, &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let malformed = [
        String::new(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{token}.{}", parts[2]),
        format!(".{}.{}", parts[1], parts[2]),
        format!("{}..{}", parts[0], parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{} .{}.{}", parts[0], parts[1], parts[2]),
    ];
    for t in &malformed {
        assert_eq!(
            verifier.verify(t, &expectations()),
            Err(JwtError::Malformed),
            "{t}"
        );
    }
    // Signed, but the header or payload is not a JSON object.
    let not_object = craft(&header(&key), &json!(["iss", ISS]), ed_sign(&key));
    assert_eq!(
        verifier.verify(&not_object, &expectations()),
        Err(JwtError::Malformed)
    );
    let input = format!("{}.{}", b64::encode(b"[1]"), parts[1]);
    let sig = key.key.sign(input.as_bytes()).to_bytes();
    let array_header = format!("{input}.{}", b64::encode(&sig));
    assert_eq!(
        verifier.verify(&array_header, &expectations()),
        Err(JwtError::Malformed)
    );
    // Oversized, even though validly signed.
    let big = with_claim("pad", json!("x".repeat(MAX_TOKEN_LEN)));
    let token = sign(&key, TYP, &big);
    assert_eq!(
        verifier.verify(&token, &expectations()),
        Err(JwtError::Malformed)
    );
}

#[test]
fn issuer_and_audience_rules() {
    let (key, verifier) = setup();
    let check = |c: Value| verifier.verify(&sign(&key, TYP, &c), &expectations());
    assert_eq!(
        check(with_claim("iss", json!("https://evil.test"))),
        Err(JwtError::WrongIssuer)
    );
    assert_eq!(
        check(with_claim("iss", json!([ISS]))),
        Err(JwtError::WrongIssuer)
    );
    assert_eq!(
        check(without_claim("iss")),
        Err(JwtError::MissingClaim("iss"))
    );
    assert_eq!(
        check(with_claim("aud", json!("other"))),
        Err(JwtError::WrongAudience)
    );
    assert_eq!(
        check(with_claim("aud", json!(["a", "b"]))),
        Err(JwtError::WrongAudience)
    );
    assert_eq!(
        check(with_claim("aud", json!(7))),
        Err(JwtError::WrongAudience)
    );
    assert_eq!(
        check(without_claim("aud")),
        Err(JwtError::MissingClaim("aud"))
    );
    assert!(check(with_claim("aud", json!(["a", AUD]))).is_ok());
}

#[test]
fn time_rules() {
    let (key, verifier) = setup();
    let check = |c: Value| verifier.verify(&sign(&key, TYP, &c), &expectations());
    assert_eq!(
        check(without_claim("exp")),
        Err(JwtError::MissingClaim("exp"))
    );
    assert_eq!(
        check(with_claim("exp", json!(NOW - 3600))),
        Err(JwtError::Expired)
    );
    assert_eq!(
        check(with_claim("exp", json!(NOW - 30))),
        Err(JwtError::Expired)
    );
    assert!(check(with_claim("exp", json!(NOW - 29))).is_ok());
    assert_eq!(
        check(with_claim("exp", json!("9999999999"))),
        Err(JwtError::Malformed)
    );
    assert_eq!(
        check(with_claim("exp", json!(9.9e9))),
        Err(JwtError::Malformed)
    );
    assert_eq!(
        check(with_claim("nbf", json!(NOW + 3600))),
        Err(JwtError::NotYetValid)
    );
    assert!(check(with_claim("nbf", json!(NOW + 30))).is_ok());
    assert_eq!(
        check(with_claim("nbf", json!("0"))),
        Err(JwtError::Malformed)
    );
    assert_eq!(
        check(without_claim("iat")),
        Err(JwtError::MissingClaim("iat"))
    );
    assert_eq!(
        check(with_claim("iat", json!(NOW + 3600))),
        Err(JwtError::NotYetValid)
    );
    assert!(check(with_claim("iat", json!(NOW + 30))).is_ok());
    // Extreme clocks and leeways saturate instead of overflowing.
    let token = sign(&key, TYP, &claims());
    let far_future = Expectations {
        now: i64::MAX,
        leeway: 0,
        ..expectations()
    };
    assert_eq!(verifier.verify(&token, &far_future), Err(JwtError::Expired));
    let huge_leeway = Expectations {
        now: i64::MAX,
        leeway: i64::MAX,
        ..expectations()
    };
    assert!(verifier.verify(&token, &huge_leeway).is_ok());
    let far_past = Expectations {
        now: i64::MIN,
        leeway: i64::MAX,
        ..expectations()
    };
    assert_eq!(
        verifier.verify(&token, &far_past),
        Err(JwtError::NotYetValid)
    );
    let negative_leeway = Expectations {
        leeway: -1000,
        ..expectations()
    };
    assert!(verifier.verify(&token, &negative_leeway).is_ok());
}

#[test]
fn keys_and_jwks() {
    let key = SigningKey::generate();
    assert_eq!(key.kid().len(), 16);
    let expected = b64::encode(&secrets::sha256(key.verifying_key().as_bytes()));
    assert!(expected.starts_with(key.kid()));
    let secret_b64 = b64::encode(&key.secret_bytes());
    let debug = format!("{key:?}");
    assert!(!debug.contains(&secret_b64) && debug.contains("redacted"));

    let restored = SigningKey::from_bytes(key.kid(), key.secret_bytes());
    assert_eq!(restored.verifying_key(), key.verifying_key());

    let jwk = key.public_jwk();
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["alg"], "EdDSA");
    assert_eq!(jwk["use"], "sig");
    assert!(jwk.get("d").is_none());
    let jwks = json!({ "keys": [
        { "kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rsa" },
        { "kty": "OKP", "crv": "X25519", "x": jwk["x"], "kid": "ecdh" },
        jwk,
    ]});
    let verifier = Verifier::from_jwks(&jwks).unwrap();
    assert_eq!(verifier.kids(), vec![key.kid().to_owned()]);
    assert!(verifier
        .verify(&sign(&key, TYP, &claims()), &expectations())
        .is_ok());
}

#[test]
fn bad_jwks_are_rejected() {
    let key = SigningKey::generate();
    let jwk = key.public_jwk();
    let mut no_kid = jwk.clone();
    no_kid.as_object_mut().unwrap().remove("kid");
    let mut bad_x = jwk.clone();
    bad_x["x"] = json!("AAAA");
    let mut hs_alg = jwk.clone();
    hs_alg["alg"] = json!("HS256");
    let mut weak = jwk.clone();
    weak["x"] = json!(b64::encode(&[0u8; 32]));
    for bad in [
        json!({}),
        json!({ "keys": {} }),
        json!({ "keys": [1] }),
        json!({ "keys": [no_kid] }),
        json!({ "keys": [bad_x] }),
        json!({ "keys": [hs_alg] }),
        json!({ "keys": [weak] }),
        json!({ "keys": [jwk.clone(), jwk] }),
    ] {
        assert!(Verifier::from_jwks(&bad).is_err(), "{bad}");
    }
}
