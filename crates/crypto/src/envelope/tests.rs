//! Tests for envelope encryption, including ciphertexts moved between rows and owners.

use super::*;
use hmac::Mac;

#[test]
fn master_key_text_form() {
    let key = MasterKey::generate("m1");
    let text = key.encode();
    assert!(text.starts_with("m1:"));
    let parsed = MasterKey::from_encoded(&format!("{text}\n")).unwrap();
    assert_eq!(parsed.id(), "m1");
    assert!(parsed.same_as(&key));
    let secret = text.split_once(':').unwrap().1;
    let debug = format!("{key:?}");
    assert!(!debug.contains(secret) && debug.contains("m1"));

    let good_key = b64::encode(&[3u8; 32]);
    for bad in [
        String::new(),
        good_key.clone(),
        format!(":{good_key}"),
        format!("a/b:{good_key}"),
        format!("{}:{good_key}", "m".repeat(65)),
        "m1:short".to_owned(),
        format!("m1:{}", b64::encode(&[3u8; 31])),
        format!("m1:{good_key}="),
    ] {
        let err = MasterKey::from_encoded(&bad).unwrap_err();
        assert!(!err.to_string().contains(&good_key));
    }
    assert!(MasterKey::from_encoded(&format!("{}:{good_key}", "m".repeat(64))).is_ok());
    assert!(MasterKey::try_generate("../x").is_err());
}

#[test]
fn wrap_and_unwrap() {
    let master = MasterKey::generate("m1");
    let (key, wrapped) = master.new_data_key("p_abc");
    assert_eq!(wrapped[0], 1);
    assert_eq!(usize::from(wrapped[1]), 2);
    assert_eq!(&wrapped[2..4], b"m1");
    assert_eq!(wrapped.len(), 2 + 2 + 24 + 32 + 16);
    assert_eq!(wrapped_master_id(&wrapped).unwrap(), "m1");

    let unwrapped = master.unwrap("p_abc", &wrapped).unwrap();
    let sealed = key.seal(b"alice@example.test", "accounts.email:1");
    assert_eq!(
        unwrapped.open(&sealed, "accounts.email:1").unwrap(),
        b"alice@example.test"
    );
    assert_eq!(format!("{unwrapped:?}"), "DataKey(<redacted>)");
}

#[test]
fn wrapped_key_is_bound_to_owner_and_master() {
    let master = MasterKey::generate("m1");
    let (_, wrapped) = master.new_data_key("p_abc");
    assert!(matches!(
        master.unwrap("p_xyz", &wrapped),
        Err(CryptoError::Decryption)
    ));

    let other = MasterKey::generate("m2");
    assert!(matches!(
        other.unwrap("p_abc", &wrapped),
        Err(CryptoError::UnknownMasterKey(id)) if id == "m1"
    ));
    // Same id, different key bytes: authentication fails.
    let impostor = MasterKey::generate("m1");
    assert!(matches!(
        impostor.unwrap("p_abc", &wrapped),
        Err(CryptoError::Decryption)
    ));

    let mut tampered = wrapped.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert!(master.unwrap("p_abc", &tampered).is_err());
    let mut bad_version = wrapped.clone();
    bad_version[0] = 2;
    assert!(master.unwrap("p_abc", &bad_version).is_err());
    assert!(wrapped_master_id(&bad_version).is_err());
    for len in 0..wrapped.len() {
        assert!(master.unwrap("p_abc", &wrapped[..len]).is_err(), "{len}");
    }
    assert!(wrapped_master_id(&[1, 5, b'm']).is_err());
    assert!(wrapped_master_id(&[1, 2, b'.', b'.']).is_err());
}

#[test]
fn sealed_field_cannot_move_between_rows_columns_or_people() {
    let master = MasterKey::generate("m1");
    let (alice, _) = master.new_data_key("p_alice");
    let (bob, _) = master.new_data_key("p_bob");
    let sealed = alice.seal(b"alice@example.test", "accounts.email:42");
    assert_eq!(sealed[0], 1);
    assert_eq!(sealed.len(), 1 + 24 + 18 + 16);
    assert_ne!(
        sealed,
        alice.seal(b"alice@example.test", "accounts.email:42")
    );

    assert!(alice.open(&sealed, "accounts.email:43").is_err());
    assert!(alice.open(&sealed, "accounts.phone:42").is_err());
    assert!(bob.open(&sealed, "accounts.email:42").is_err());
    assert_eq!(
        alice.open(&sealed, "accounts.email:42").unwrap(),
        b"alice@example.test"
    );

    let mut tampered = sealed.clone();
    tampered[30] ^= 0x80;
    assert!(matches!(
        alice.open(&tampered, "accounts.email:42"),
        Err(CryptoError::Decryption)
    ));
    let mut bad_version = sealed.clone();
    bad_version[0] = 0;
    assert!(alice.open(&bad_version, "accounts.email:42").is_err());
    assert!(alice.open(&[], "x").is_err());
    assert!(alice.open(&sealed[..40], "accounts.email:42").is_err());

    let empty = alice.seal(b"", "x");
    assert_eq!(alice.open(&empty, "x").unwrap(), b"");
}

#[test]
fn blind_index() {
    let key = IndexKey::generate();
    let parsed = IndexKey::from_encoded(&key.encode()).unwrap();
    let a = key.blind_index("accounts.email", "alice@example.test");
    assert_eq!(a.len(), 32);
    assert_eq!(
        a,
        parsed.blind_index("accounts.email", "alice@example.test")
    );
    assert_ne!(a, key.blind_index("accounts.phone", "alice@example.test"));
    assert_ne!(a, key.blind_index("accounts.email", "bob@example.test"));
    assert_ne!(
        a,
        IndexKey::generate().blind_index("accounts.email", "alice@example.test")
    );
    // Domain and value are separated, so shifting bytes between them changes the MAC.
    assert_ne!(key.blind_index("ab", "c"), key.blind_index("a", "bc"));

    // The padded-key construction equals ordinary HMAC with the 32-byte key.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).unwrap();
    mac.update(b"accounts.email\0alice@example.test");
    assert_eq!(a, mac.finalize().into_bytes().to_vec());

    assert_eq!(format!("{key:?}"), "IndexKey(<redacted>)");
    assert!(IndexKey::from_encoded("AAAA").is_err());
    assert!(IndexKey::from_encoded(&format!(" {} ", key.encode())).is_ok());
}

#[test]
fn id_validation() {
    assert!(valid_id("p_0123-ABC"));
    assert!(valid_id(&"a".repeat(64)));
    for bad in [
        "",
        ".",
        "..",
        "../etc",
        "a/b",
        "a b",
        "a\n",
        "é",
        &"a".repeat(65),
    ] {
        assert!(!valid_id(bad), "{bad:?}");
    }
}
