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
    let dir = settings.signing_keys_dir();
    SharedKeyRing::load_or_create(&dir)
        .with_context(|| format!("cannot open the signing keys at {}", dir.display()))
}

/// The secret of the `rewards` service client: from settings, or generated once and kept in
/// the key store (embedded default only).
pub fn rewards_secret(settings: &Settings) -> anyhow::Result<String> {
    if let Some(secret) = service_secret(settings, "rewards")? {
        return Ok(secret);
    }
    if !settings.is_embedded() {
        anyhow::bail!(
            "set EXAMPLEBANK_REWARDS_CLIENT_SECRET (or _FILE) for the rewards service client"
        );
    }
    let secret = crypto::secrets::random_token();
    write_private(&settings.keys_dir().join("rewards-client.secret"), &secret)?;
    Ok(secret)
}

/// A service client's secret (`rewards`, `transactions` or `erasure`): from settings, or
/// from `<keys_dir>/<client>-client.secret` when it was generated there.
pub fn service_secret(settings: &Settings, client: &str) -> anyhow::Result<Option<String>> {
    let configured = match client {
        "rewards" => &settings.rewards_client_secret,
        "transactions" => &settings.transactions_client_secret,
        "erasure" => &settings.erasure_client_secret,
        _ => anyhow::bail!("no service client named {client}"),
    };
    if let Some(secret) = configured {
        return Ok(Some(secret.expose().to_owned()));
    }
    let path = settings.keys_dir().join(format!("{client}-client.secret"));
    Ok(std::fs::read_to_string(&path)
        .ok()
        .map(|text| text.trim().to_owned()))
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
    ClientRegistry::new(base_clients(public_base_url, rewards_secret))
}

/// The phone app, the rewards service, and the `transactions` (standing) and `erasure`
/// (forget) service clients of split mode when their secrets are configured.
pub fn all_clients(settings: &Settings, public_base_url: &str) -> anyhow::Result<ClientRegistry> {
    let mut clients = base_clients(public_base_url, &rewards_secret(settings)?);
    for (id, scope) in [
        ("transactions", Scope::Standing),
        ("erasure", Scope::Forget),
    ] {
        if let Some(secret) = service_secret(settings, id)? {
            clients.push(service_client(id, &secret, scope));
        }
    }
    Ok(ClientRegistry::new(clients))
}

fn service_client(id: &str, secret: &str, scope: Scope) -> Client {
    Client {
        id: id.into(),
        kind: ClientKind::Confidential {
            secret_sha256: crypto::secrets::sha256(secret.as_bytes()),
        },
        redirect_uris: Vec::new(),
        allowed_scopes: Scopes::new([scope]),
        authorization_code: false,
        client_credentials: true,
    }
}

fn base_clients(public_base_url: &str, rewards_secret: &str) -> Vec<Client> {
    vec![
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
    ]
}

pub fn vault(keys: KeyStore) -> Arc<Vault> {
    Arc::new(Vault::new(keys))
}
