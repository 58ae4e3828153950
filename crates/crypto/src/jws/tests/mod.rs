//! Attack-driven tests for the JWS module: each rule has a token that only it stops.
//!
//! This file holds the shared helpers and the header and signature attacks; claim,
//! structure and JWKS tests are in `claims.rs`.

use hmac::{Hmac, Mac as _};
use serde_json::{json, Value};
use sha2::Sha256;

use super::*;

mod claim_rules;

const NOW: i64 = 1_700_000_000;
const ISS: &str = "https://id.examplebank.test";
const AUD: &str = "examplebank-api";
const TYP: &str = "at+jwt";

fn expectations() -> Expectations<'static> {
    Expectations {
        typ: TYP,
        issuer: ISS,
        audience: AUD,
        now: NOW,
        leeway: 30,
    }
}

fn claims() -> Value {
    json!({ "iss": ISS, "aud": AUD, "sub": "p_123", "iat": NOW - 10, "exp": NOW + 300 })
}

fn setup() -> (SigningKey, Verifier) {
    let key = SigningKey::generate();
    let mut verifier = Verifier::new();
    verifier.add(key.kid(), key.verifying_key());
    (key, verifier)
}

/// Assembles a token from raw header/claims JSON and a signing function over the input.
fn craft(header: &Value, claims: &Value, sign_fn: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        b64::encode(header.to_string().as_bytes()),
        b64::encode(claims.to_string().as_bytes())
    );
    let sig = sign_fn(input.as_bytes());
    format!("{input}.{}", b64::encode(&sig))
}

fn ed_sign(key: &SigningKey) -> impl FnOnce(&[u8]) -> Vec<u8> + '_ {
    move |input| key.key.sign(input).to_bytes().to_vec()
}

fn header(key: &SigningKey) -> Value {
    json!({ "alg": "EdDSA", "typ": TYP, "kid": key.kid() })
}

fn hs256(secret: &[u8]) -> impl FnOnce(&[u8]) -> Vec<u8> + '_ {
    move |input| {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(input);
        mac.finalize().into_bytes().to_vec()
    }
}

fn with_claim(name: &str, value: Value) -> Value {
    let mut c = claims();
    c[name] = value;
    c
}

fn without_claim(name: &str) -> Value {
    let mut c = claims();
    c.as_object_mut().unwrap().remove(name);
    c
}

#[test]
fn round_trip() {
    let (key, verifier) = setup();
    let token = sign(&key, TYP, &claims());
    let got = verifier.verify(&token, &expectations()).unwrap();
    assert_eq!(got["sub"], "p_123");
    let crafted = craft(&header(&key), &claims(), ed_sign(&key));
    assert!(verifier.verify(&crafted, &expectations()).is_ok());
}

#[test]
fn alg_none_in_any_case_is_rejected() {
    let (key, verifier) = setup();
    let real = sign(&key, TYP, &claims());
    let real_sig = real.rsplit('.').next().unwrap();
    for alg in ["none", "NONE", "nOnE", "None"] {
        let h = json!({ "alg": alg, "typ": TYP, "kid": key.kid() });
        let unsigned = craft(&h, &claims(), |_| Vec::new());
        assert!(unsigned.ends_with('.'));
        assert_eq!(
            verifier.verify(&unsigned, &expectations()),
            Err(JwtError::Malformed)
        );
        let input = unsigned.trim_end_matches('.');
        assert_eq!(
            verifier.verify(input, &expectations()),
            Err(JwtError::Malformed)
        );
        let kept = format!("{input}.{real_sig}");
        assert_eq!(
            verifier.verify(&kept, &expectations()),
            Err(JwtError::UnsupportedAlgorithm),
            "{alg}"
        );
    }
}

#[test]
fn other_algorithms_are_rejected() {
    let (key, verifier) = setup();
    for alg in [
        json!("HS256"),
        json!("ES256"),
        json!("RS256"),
        json!("PS256"),
        json!("eddsa"),
        json!("EDDSA"),
        json!("EdDSA "),
        json!("Ed25519"),
        json!(["EdDSA"]),
        json!(null),
    ] {
        let h = json!({ "alg": alg, "typ": TYP, "kid": key.kid() });
        let token = craft(&h, &claims(), ed_sign(&key));
        assert_eq!(
            verifier.verify(&token, &expectations()),
            Err(JwtError::UnsupportedAlgorithm),
            "{alg}"
        );
    }
    let h = json!({ "typ": TYP, "kid": key.kid() });
    let token = craft(&h, &claims(), ed_sign(&key));
    assert_eq!(
        verifier.verify(&token, &expectations()),
        Err(JwtError::UnsupportedAlgorithm)
    );
}

#[test]
fn hmac_keyed_with_public_key_material_is_rejected() {
    let (key, verifier) = setup();
    let jwk = key.public_jwk();
    let public_bytes = key.verifying_key().to_bytes();
    let x = jwk["x"].as_str().unwrap().to_owned();
    let jwk_json = jwk.to_string();
    let secrets: [&[u8]; 3] = [&public_bytes, x.as_bytes(), jwk_json.as_bytes()];
    for secret in secrets {
        let h = json!({ "alg": "HS256", "typ": TYP, "kid": key.kid() });
        let token = craft(&h, &claims(), hs256(secret));
        assert_eq!(
            verifier.verify(&token, &expectations()),
            Err(JwtError::UnsupportedAlgorithm)
        );
        // Same HMAC under a header that claims EdDSA: the signature cannot verify.
        let token = craft(&header(&key), &claims(), hs256(secret));
        assert_eq!(
            verifier.verify(&token, &expectations()),
            Err(JwtError::BadSignature)
        );
    }
}

#[test]
fn embedded_attacker_jwk_is_rejected() {
    let (key, verifier) = setup();
    let attacker = SigningKey::generate();
    for kid in [attacker.kid(), key.kid()] {
        let h = json!({ "alg": "EdDSA", "typ": TYP, "kid": kid, "jwk": attacker.public_jwk() });
        let token = craft(&h, &claims(), ed_sign(&attacker));
        assert_eq!(
            verifier.verify(&token, &expectations()),
            Err(JwtError::ForbiddenHeader)
        );
    }
}

#[test]
fn key_url_and_crit_headers_are_rejected_even_when_validly_signed() {
    let (key, verifier) = setup();
    for (name, value) in [
        ("jku", json!("https://attacker.test/jwks.json")),
        ("x5u", json!("https://attacker.test/cert.pem")),
        ("x5c", json!(["MIIB"])),
        ("x5t", json!("abc")),
        ("crit", json!(["exp"])),
    ] {
        let mut h = header(&key);
        h[name] = value;
        let token = craft(&h, &claims(), ed_sign(&key));
        assert_eq!(
            verifier.verify(&token, &expectations()),
            Err(JwtError::ForbiddenHeader),
            "{name}"
        );
    }
}

#[test]
fn typ_rules() {
    let (key, verifier) = setup();
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/AT+JWT",
    ] {
        let token = sign(&key, typ, &claims());
        assert!(verifier.verify(&token, &expectations()).is_ok(), "{typ}");
    }
    for typ in [
        "JWT",
        "id+jwt",
        "at+jwt ",
        "application/",
        "",
        "xapplication/at+jwt",
    ] {
        let token = sign(&key, typ, &claims());
        assert_eq!(
            verifier.verify(&token, &expectations()),
            Err(JwtError::WrongType),
            "{typ}"
        );
    }
    let h = json!({ "alg": "EdDSA", "kid": key.kid() });
    let token = craft(&h, &claims(), ed_sign(&key));
    assert_eq!(
        verifier.verify(&token, &expectations()),
        Err(JwtError::WrongType)
    );
    let mut app = expectations();
    app.typ = "application/at+jwt";
    assert!(verifier
        .verify(&sign(&key, "at+jwt", &claims()), &app)
        .is_ok());
}

#[test]
fn kid_rules() {
    let (key, verifier) = setup();
    let other = SigningKey::generate();
    let token = sign(&other, TYP, &claims());
    assert_eq!(
        verifier.verify(&token, &expectations()),
        Err(JwtError::UnknownKey)
    );
    let h = json!({ "alg": "EdDSA", "typ": TYP });
    let token = craft(&h, &claims(), ed_sign(&key));
    assert_eq!(
        verifier.verify(&token, &expectations()),
        Err(JwtError::UnknownKey)
    );
    // Right kid, wrong key.
    let token = craft(&header(&key), &claims(), ed_sign(&other));
    assert_eq!(
        verifier.verify(&token, &expectations()),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn c5_all_zero_and_malformed_signatures_are_refused() {
    let (key, verifier) = setup();
    let token = sign(&key, TYP, &claims());
    let input = &token[..token.rfind('.').unwrap()];
    let zero = format!("{input}.{}", b64::encode(&[0u8; 64]));
    assert_eq!(
        verifier.verify(&zero, &expectations()),
        Err(JwtError::BadSignature)
    );
    let short = format!("{input}.{}", b64::encode(&[0u8; 63]));
    assert_eq!(
        verifier.verify(&short, &expectations()),
        Err(JwtError::BadSignature)
    );
    let long = format!("{input}.{}", b64::encode(&[0u8; 65]));
    assert_eq!(
        verifier.verify(&long, &expectations()),
        Err(JwtError::BadSignature)
    );

    // Non-canonical S (S + group order) must fail under verify_strict.
    let mut sig: [u8; 64] = b64::decode(token.rsplit('.').next().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
        sig[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    let malleated = format!("{input}.{}", b64::encode(&sig));
    assert_eq!(
        verifier.verify(&malleated, &expectations()),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn tampered_payload_is_rejected() {
    let (key, verifier) = setup();
    let token = sign(&key, TYP, &claims());
    let parts: Vec<&str> = token.split('.').collect();
    let evil = b64::encode(with_claim("sub", json!("p_admin")).to_string().as_bytes());
    let tampered = format!("{}.{}.{}", parts[0], evil, parts[2]);
    assert_eq!(
        verifier.verify(&tampered, &expectations()),
        Err(JwtError::BadSignature)
    );
}
