//! Key store tests: lifecycle, shredding, rotation, path safety and the journal.

use std::os::unix::fs::PermissionsExt as _;

use super::*;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn open(dir: &Path) -> KeyStore {
    KeyStore::open(dir, None, true).unwrap().0
}

#[test]
fn first_open_generates_and_second_reuses() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let (store, generated) = KeyStore::open(&dir, None, true).unwrap();
    assert!(generated);
    assert_eq!(store.master_id(), "m1");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(DATA_DIR)), 0o700);
    assert_eq!(mode(&dir.join(MASTER_FILE)), 0o600);
    assert_eq!(mode(&dir.join(INDEX_FILE)), 0o600);

    let (again, generated) = KeyStore::open(&dir, None, false).unwrap();
    assert!(!generated);
    assert_eq!(
        again.index_key().blind_index("d", "v"),
        store.index_key().blind_index("d", "v")
    );
    let debug = format!("{again:?}");
    let master_text = fs::read_to_string(dir.join(MASTER_FILE)).unwrap();
    assert!(!debug.contains(master_text.trim().split_once(':').unwrap().1));
}

#[test]
fn missing_master_without_generation_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = KeyStore::open(tmp.path(), None, false).unwrap_err();
    assert!(matches!(err, CryptoError::MasterKeyMissing(_)));
    let message = err.to_string();
    assert!(message.contains("EXAMPLEBANK_MASTER_KEY") && message.contains("_FILE"));
    assert!(!tmp.path().join(MASTER_FILE).exists());

    // A supplied master key is never written to disk.
    let supplied = MasterKey::generate("env1");
    let (store, generated) = KeyStore::open(tmp.path(), Some(supplied), false).unwrap();
    assert!(!generated);
    assert_eq!(store.master_id(), "env1");
    assert!(!tmp.path().join(MASTER_FILE).exists());
}

#[test]
fn corrupt_master_file_is_reported_without_contents() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join(MASTER_FILE), "m1:c2VjcmV0LXNlY3JldA\n").unwrap();
    let err = KeyStore::open(tmp.path(), None, true).unwrap_err();
    assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
}

#[test]
fn create_read_destroy() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    assert!(store.data_key("p_1").unwrap().is_none());
    let key = store.create_data_key("p_1").unwrap();
    let sealed = key.seal(b"Alice", "people.name:p_1");
    let path = tmp.path().join(DATA_DIR).join("p_1.key");
    assert_eq!(mode(&path), 0o600);
    assert!(matches!(
        store.create_data_key("p_1"),
        Err(CryptoError::AlreadyExists(_))
    ));

    let reopened = open(tmp.path());
    let loaded = reopened.data_key("p_1").unwrap().unwrap();
    assert_eq!(loaded.open(&sealed, "people.name:p_1").unwrap(), b"Alice");

    assert!(store.destroy_data_key("p_1").unwrap());
    assert!(!path.exists());
    assert!(store.data_key("p_1").unwrap().is_none());
    assert!(!store.destroy_data_key("p_1").unwrap());
    // A new key after shredding cannot open the old ciphertext.
    let fresh = store.create_data_key("p_1").unwrap();
    assert!(fresh.open(&sealed, "people.name:p_1").is_err());
}

#[test]
fn wrapped_key_file_cannot_be_swapped_between_owners() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    store.create_data_key("p_a").unwrap();
    let data = tmp.path().join(DATA_DIR);
    fs::copy(data.join("p_a.key"), data.join("p_b.key")).unwrap();
    assert!(store.data_key("p_b").is_err());
}

#[test]
fn bad_owner_names_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let long = "a".repeat(65);
    for owner in [
        "",
        ".",
        "..",
        "../master",
        "a/b",
        "/etc/passwd",
        "a.key",
        "a b",
        "p\n",
        &long,
    ] {
        assert!(matches!(
            store.create_data_key(owner),
            Err(CryptoError::InvalidOwner)
        ));
        assert!(matches!(
            store.data_key(owner),
            Err(CryptoError::InvalidOwner)
        ));
        assert!(matches!(
            store.destroy_data_key(owner),
            Err(CryptoError::InvalidOwner)
        ));
        assert!(matches!(
            store.journal_append(owner),
            Err(CryptoError::InvalidOwner)
        ));
    }
    assert!(store.create_data_key(&"a".repeat(64)).is_ok());
}

#[test]
fn rotation_with_file_master_keeps_data_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let owners = ["p_1", "p_2", "p_3"];
    let sealed: Vec<Vec<u8>> = owners
        .iter()
        .map(|o| {
            store
                .create_data_key(o)
                .unwrap()
                .seal(o.as_bytes(), "t.c:1")
        })
        .collect();
    store.create_data_key("p_gone").unwrap();
    store.destroy_data_key("p_gone").unwrap();

    let new_master = MasterKey::generate("m2");
    assert_eq!(store.rotate_master(&new_master).unwrap(), 3);
    assert_eq!(store.master_id(), "m2");
    for (owner, sealed) in owners.iter().zip(&sealed) {
        let path = tmp.path().join(DATA_DIR).join(format!("{owner}.key"));
        assert_eq!(wrapped_master_id(&fs::read(&path).unwrap()).unwrap(), "m2");
        let key = store.data_key(owner).unwrap().unwrap();
        assert_eq!(key.open(sealed, "t.c:1").unwrap(), owner.as_bytes());
    }
    assert!(store.data_key("p_gone").unwrap().is_none());
    assert_eq!(store.create_data_key("p_4").map(|_| ()).unwrap(), ());
    let p4 = fs::read(tmp.path().join(DATA_DIR).join("p_4.key")).unwrap();
    assert_eq!(wrapped_master_id(&p4).unwrap(), "m2");

    // The file master was replaced and the old one kept as previous.
    let reopened = open(tmp.path());
    assert_eq!(reopened.master_id(), "m2");
    let previous = read_previous(&tmp.path().join(PREVIOUS_FILE)).unwrap();
    assert_eq!(
        previous.iter().map(MasterKey::id).collect::<Vec<_>>(),
        vec!["m1"]
    );
    assert_eq!(mode(&tmp.path().join(PREVIOUS_FILE)), 0o600);
    let key = reopened.data_key("p_1").unwrap().unwrap();
    assert_eq!(key.open(&sealed[0], "t.c:1").unwrap(), b"p_1");

    // Re-running with the same key is a no-op; a different key under the same id is refused.
    assert_eq!(store.rotate_master(&new_master).unwrap(), 0);
    assert!(matches!(
        store.rotate_master(&MasterKey::generate("m2")),
        Err(CryptoError::InvalidRotation(_))
    ));
    assert!(matches!(
        store.rotate_master(&MasterKey::generate("m1")),
        Err(CryptoError::InvalidRotation(_))
    ));
}

#[test]
fn interrupted_rotation_leaves_both_generations_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let old = MasterKey::generate("m1");
    let new = MasterKey::generate("m2");
    let (store, _) = KeyStore::open(tmp.path(), Some(old.clone()), false).unwrap();
    let a = store.create_data_key("p_a").unwrap().seal(b"a", "x");
    let b = store.create_data_key("p_b").unwrap().seal(b"b", "x");

    // Simulate a crash after master.previous was written and one file was re-wrapped.
    store.write_previous(std::slice::from_ref(&old)).unwrap();
    let path_a = tmp.path().join(DATA_DIR).join("p_a.key");
    let key_a = old.unwrap("p_a", &fs::read(&path_a).unwrap()).unwrap();
    fsutil::write_atomic(&path_a, &new.wrap("p_a", &key_a), true).unwrap();
    drop(store);

    // The operator restarts with the new key only; both files still open.
    let (store, _) = KeyStore::open(tmp.path(), Some(new.clone()), false).unwrap();
    assert_eq!(
        store
            .data_key("p_a")
            .unwrap()
            .unwrap()
            .open(&a, "x")
            .unwrap(),
        b"a"
    );
    assert_eq!(
        store
            .data_key("p_b")
            .unwrap()
            .unwrap()
            .open(&b, "x")
            .unwrap(),
        b"b"
    );
    // Resuming finishes the job and keeps the old key as previous.
    assert_eq!(store.rotate_master(&new).unwrap(), 1);
    let previous = read_previous(&tmp.path().join(PREVIOUS_FILE)).unwrap();
    assert_eq!(
        previous.iter().map(MasterKey::id).collect::<Vec<_>>(),
        vec!["m1"]
    );
    assert!(!tmp.path().join(MASTER_FILE).exists());

    // Without master.previous, a file wrapped by an unknown key is a clear error.
    fs::remove_file(tmp.path().join(PREVIOUS_FILE)).unwrap();
    let (stale, _) = KeyStore::open(tmp.path(), Some(MasterKey::generate("m3")), false).unwrap();
    assert!(matches!(stale.data_key("p_a"), Err(CryptoError::UnknownMasterKey(id)) if id == "m2"));
}

#[test]
fn journal_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    assert!(store.journal_entries().unwrap().is_empty());
    store.journal_append("p_1").unwrap();
    store.journal_append("p_2").unwrap();
    store.journal_append("p_1").unwrap();
    assert_eq!(store.journal_entries().unwrap(), vec!["p_1", "p_2", "p_1"]);
    let path = tmp.path().join("erasure-journal");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(fs::read_to_string(&path).unwrap(), "p_1\np_2\np_1\n");
    assert_eq!(open(tmp.path()).journal_entries().unwrap().len(), 3);
}

#[test]
fn journal_ignores_torn_lines_and_rejects_garbage() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let path = tmp.path().join("erasure-journal");
    fs::write(&path, "p_1\np_lon").unwrap();
    assert_eq!(store.journal_entries().unwrap(), vec!["p_1"]);
    store.journal_append("p_2").unwrap();
    assert_eq!(store.journal_entries().unwrap(), vec!["p_1", "p_2"]);
    fs::write(&path, "p_1\nnot valid!\n").unwrap();
    assert!(store.journal_entries().is_err());
}

#[test]
fn journal_appends_wait_for_another_process_holding_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    store.journal_append("p_1").unwrap();
    // Another process (an erasure replica or the `erasure run` job on the same volume) is in
    // the middle of an append: it holds the OS lock on the journal file.
    let other = fs::OpenOptions::new()
        .append(true)
        .open(tmp.path().join("erasure-journal"))
        .unwrap();
    other.lock().unwrap();
    let (done, appended) = std::sync::mpsc::channel();
    let dir = tmp.path().to_owned();
    let writer = std::thread::spawn(move || {
        open(&dir).journal_append("p_2").unwrap();
        done.send(()).unwrap();
    });
    assert!(
        appended
            .recv_timeout(std::time::Duration::from_millis(300))
            .is_err(),
        "appended while another process held the journal"
    );
    drop(other);
    appended
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the append goes on once the lock is released");
    writer.join().unwrap();
    assert_eq!(store.journal_entries().unwrap(), vec!["p_1", "p_2"]);
}

#[test]
fn a_wrong_master_key_with_the_right_id_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let right = MasterKey::generate("m1");
    let wrong = MasterKey::generate("m1");
    // An empty store has nothing to check the key against.
    let (store, _) = KeyStore::open(&dir, Some(wrong.clone()), false).unwrap();
    drop(store);
    let (store, _) = KeyStore::open(&dir, Some(right.clone()), false).unwrap();
    let key = store.create_data_key("person-1").unwrap();
    drop(store);

    let err = KeyStore::open(&dir, Some(wrong), false).unwrap_err();
    assert!(matches!(err, CryptoError::MasterKeyMismatch(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("EXAMPLEBANK_MASTER_KEY"), "{message}");
    assert!(!message.contains(right.encode().split_once(':').unwrap().1));

    // Files that are not data keys (a key being shredded, a stray temporary file) are not
    // mistaken for one: the right key still opens the store, and the data key is the same.
    for stray in ["stray.tmp", "bad name!.key", "person-2.shredding"] {
        fs::write(dir.join(DATA_DIR).join(stray), b"junk").unwrap();
    }
    let (store, _) = KeyStore::open(&dir, Some(right.clone()), false).unwrap();
    let again = store.data_key("person-1").unwrap().unwrap();
    assert_eq!(again.open(&key.seal(b"x", "aad"), "aad").unwrap(), b"x");

    // One damaged key file among good ones is that person's problem, not the whole store's.
    store.create_data_key("person-2").unwrap();
    store.create_data_key("person-3").unwrap();
    drop(store);
    let path = dir.join(DATA_DIR).join("person-1.key");
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    fs::write(&path, bytes).unwrap();
    let (store, _) = KeyStore::open(&dir, Some(right), false).unwrap();
    assert!(matches!(
        store.data_key("person-1"),
        Err(CryptoError::Decryption)
    ));
}
