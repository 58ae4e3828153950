//! OAuth clients, registered at start from settings and held in memory.

use domain::Scopes;

#[derive(Clone)]
pub enum ClientKind {
    /// A public client (the phone app): no secret, PKCE required.
    Public,
    /// A confidential client: a secret, kept as a SHA-256 hash.
    Confidential { secret_sha256: [u8; 32] },
}

#[derive(Clone)]
pub struct Client {
    pub id: String,
    pub kind: ClientKind,
    pub redirect_uris: Vec<String>,
    pub allowed_scopes: Scopes,
    pub authorization_code: bool,
    pub client_credentials: bool,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default)]
pub struct ClientRegistry {
    clients: Vec<Client>,
}

impl ClientRegistry {
    pub fn new(clients: Vec<Client>) -> Self {
        Self { clients }
    }

    pub fn get(&self, id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.id == id)
    }

    /// Checks a confidential client's secret in constant time.
    pub fn authenticate(&self, id: &str, secret: Option<&str>) -> Option<&Client> {
        let client = self.get(id)?;
        match (&client.kind, secret) {
            (ClientKind::Public, None) => Some(client),
            (ClientKind::Confidential { secret_sha256 }, Some(secret)) => {
                let given = crypto::secrets::sha256(secret.as_bytes());
                crypto::secrets::constant_time_eq(&given, secret_sha256).then_some(client)
            }
            _ => None,
        }
    }
}

impl Client {
    /// Redirect URIs are compared exactly, byte for byte: no prefixes, no wildcards.
    pub fn accepts_redirect(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }
}
