//! Property tests of token parsing: whatever bytes arrive, verification never panics and never
//! accepts anything but an untouched token signed with a known key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use examplebank_crypto::jws::{sign, Expectations, SigningKey, Verifier};
use proptest::prelude::*;
use serde_json::json;

fn setup() -> (SigningKey, Verifier, String) {
    let key = SigningKey::generate();
    let mut verifier = Verifier::new();
    verifier.add(key.kid().to_owned(), key.verifying_key());
    let token = sign(
        &key,
        "at+jwt",
        &json!({"iss": "https://bank.test", "aud": "examplebank", "sub": "s", "iat": 1_000, "exp": 2_000_000_000}),
    );
    (key, verifier, token)
}

fn expectations() -> Expectations<'static> {
    Expectations {
        typ: "at+jwt",
        issuer: "https://bank.test",
        audience: "examplebank",
        now: 1_000_000,
        leeway: 5,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_is_never_accepted(text in "\\PC{0,300}") {
        let (_, verifier, _) = setup();
        prop_assert!(verifier.verify(&text, &expectations()).is_err());
    }

    #[test]
    fn arbitrary_three_part_tokens_are_never_accepted(a in "[A-Za-z0-9_-]{0,120}", b in "[A-Za-z0-9_-]{0,200}", c in "[A-Za-z0-9_-]{0,100}") {
        let (_, verifier, _) = setup();
        let token = [a, b, c].join(".");
        prop_assert!(verifier.verify(&token, &expectations()).is_err());
    }

    #[test]
    fn any_single_change_to_a_valid_token_is_refused(position in 0usize..400, replacement in "[A-Za-z0-9_.=+/ -]") {
        let (_, verifier, token) = setup();
        prop_assert!(verifier.verify(&token, &expectations()).is_ok());
        let position = position % token.len();
        let mut bytes = token.clone().into_bytes();
        bytes[position] = replacement.as_bytes()[0];
        let changed = String::from_utf8(bytes).unwrap();
        if changed != token {
            prop_assert!(verifier.verify(&changed, &expectations()).is_err(), "accepted a changed token at {}", position);
        }
    }
}
