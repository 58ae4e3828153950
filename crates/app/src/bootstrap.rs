//! Everything `serve` and the other commands need before they can work: the store, the key
//! store, the signing keys and the OAuth clients.

use crate::settings::Settings;
use anyhow::Context;
use crypto::keyring::SharedKeyRing;
use crypto::keystore::KeyStore;
use crypto::vault::Vault;
use domain::{Scope, Scopes};
use identity::{Client, ClientKind, ClientRegistry};
use std::path::Path;
use std::sync::Arc;
use store::{Store, StoreOptions};

pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let options = StoreOptions {
        max_connections: settings.database_max_connections,
        ..StoreOptions::default()
    };
    match &settings.database_url {
        Some(url) => Store::connect_postgres(url.expose(), &options)
            .await
            .context("cannot connect to PostgreSQL; check EXAMPLEBANK_DATABASE_URL and that the server is running"),
        None => {
            std::fs::create_dir_all(&settings.data_dir).with_context(|| {
                format!("cannot create the data directory {}", settings.data_dir.display())
            })?;
            Store::open_sqlite(&settings.sqlite_path(), &options)
                .await
                .with_context(|| format!("cannot open the SQLite database {}", settings.sqlite_path().display()))
        }
    }
}

/// Opens the key store. A master key is generated only in the embedded default, with a warning.
pub fn open_keys(settings: &Settings) -> anyhow::Result<KeyStore> {
    let master = match (&settings.master_key, &settings.master_key_file) {
        (Some(text), _) => Some(crypto::envelope::MasterKey::from_encoded(text.expose())?),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read master_key_file {}", path.display()))?;
            Some(crypto::envelope::MasterKey::from_encoded(text.trim())?)
        }
        (None, None) => None,
    };
    let dir = settings.keys_dir();
    let (keys, generated) = KeyStore::open(&dir, master, settings.is_embedded())
        .with_context(|| format!("cannot open the key store at {}", dir.display()))?;
    if generated {
        tracing::warn!(
            keys_dir = %dir.display(),
            "generated a new master key in the key store; for production supply EXAMPLEBANK_MASTER_KEY_FILE and keep it apart from database backups"
        );
    }
    Ok(keys)
}

pub fn signing_keys(settings: &Settings) -> anyhow::Result<SharedKeyRing> {
    let dir = settings.keys_dir().join("signing");
    SharedKeyRing::load_or_create(&dir)
        .with_context(|| format!("cannot open the signing keys at {}", dir.display()))
}

/// The secret of the `rewards` service client: from settings, or generated once and kept in
/// the key store (embedded default only).
pub fn rewards_secret(settings: &Settings) -> anyhow::Result<String> {
    if let Some(secret) = &settings.rewards_client_secret {
        return Ok(secret.expose().to_owned());
    }
    let path = settings.keys_dir().join("rewards-client.secret");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(text.trim().to_owned());
    }
    if !settings.is_embedded() {
        anyhow::bail!(
            "set EXAMPLEBANK_REWARDS_CLIENT_SECRET (or _FILE) for the rewards service client"
        );
    }
    let secret = crypto::secrets::random_token();
    write_private(&path, &secret)?;
    Ok(secret)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

/// The first-party phone app and the rewards service.
pub fn clients(public_base_url: &str, rewards_secret: &str) -> ClientRegistry {
    ClientRegistry::new(vec![
        Client {
            id: "simulator".into(),
            kind: ClientKind::Public,
            redirect_uris: vec![format!(
                "{}/callback",
                public_base_url.trim_end_matches('/')
            )],
            allowed_scopes: Scopes::new([Scope::OpenId, Scope::Bank, Scope::Admin]),
            authorization_code: true,
            client_credentials: false,
        },
        Client {
            id: "rewards".into(),
            kind: ClientKind::Confidential {
                secret_sha256: crypto::secrets::sha256(rewards_secret.as_bytes()),
            },
            redirect_uris: Vec::new(),
            allowed_scopes: Scopes::new([Scope::Rewards]),
            authorization_code: false,
            client_credentials: true,
        },
    ])
}

pub fn vault(keys: KeyStore) -> Arc<Vault> {
    Arc::new(Vault::new(keys))
}
