//! One typed `Settings`: defaults in code, then an optional TOML file, then `EXAMPLEBANK_*`
//! environment variables (secrets also from `EXAMPLEBANK_*_FILE`), then command-line flags.
//! `validate` fails fast with a message that says what to fix.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A secret setting: never printed, never logged.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address to listen on.
    pub addr: String,
    /// Directory for the SQLite database, keys and journal.
    pub data_dir: PathBuf,
    /// `postgres://...` to use PostgreSQL; unset for the embedded SQLite file.
    pub database_url: Option<Secret>,
    /// The URL people reach the server at; defaults to `http://<addr>`.
    pub public_base_url: Option<String>,
    /// Roles this process runs: `all`, or a comma-separated list.
    pub roles: String,
    /// `json` (one JSON object per line) or `text`.
    pub log_format: String,
    /// A tracing filter, e.g. `info` or `examplebank=debug,info`.
    pub log_level: String,
    /// Where the key store lives (master key, data keys, signing keys, erasure journal).
    pub keys_dir: Option<PathBuf>,
    /// The master key as `<id>:<base64url 32 bytes>`; or give `master_key_file`.
    pub master_key: Option<Secret>,
    pub master_key_file: Option<PathBuf>,
    /// Secret of the confidential `rewards` service client; generated and kept in the key
    /// store when unset in the embedded default.
    pub rewards_client_secret: Option<Secret>,
    /// Seconds between an erasure request and its execution.
    pub erasure_grace_seconds: i64,
    /// Seconds between erasure passes (requests also wake the worker at once).
    pub erasure_interval_seconds: u64,
    /// Analytics cells with fewer distinct contributors are suppressed (k-anonymity).
    pub analytics_min_contributors: i64,
    /// Days without a login after which an account is erased.
    pub retention_idle_account_days: i64,
    /// Days anonymous facts are kept after their last update.
    pub retention_anonymous_fact_days: i64,
    /// Days completed data-subject requests are kept.
    pub retention_request_days: i64,
    /// Days audit entries are kept (pruned only up to a signed checkpoint).
    pub retention_audit_days: i64,
    /// Where the newest audit checkpoint is also written, outside the database.
    pub audit_checkpoint_file: Option<PathBuf>,
    /// Apply migrations when `serve` starts.
    pub migrate_on_start: bool,
    pub max_body_bytes: usize,
    pub request_timeout_seconds: u64,
    pub max_concurrent_requests: usize,
    /// Seconds a client has to send a request's headers (or finish a TLS handshake).
    pub header_read_timeout_seconds: u64,
    /// Open connections beyond this are closed at once.
    pub max_connections: usize,
    /// Requests per minute from one client address; past it, 429 with Retry-After.
    pub rate_limit_per_address_per_minute: u32,
    /// Requests per minute from one person or service.
    pub rate_limit_per_person_per_minute: u32,
    /// Failed sign-ins per client address per login window.
    pub login_failures_per_address: u32,
    /// Failed sign-ins per account from one address per login window.
    pub login_failures_per_account: u32,
    pub login_window_seconds: u64,
    /// Comma-separated IP addresses of proxies whose X-Forwarded-For is believed.
    pub trusted_proxies: String,
    /// Comma-separated origins allowed to call the API from browsers; empty keeps CORS off.
    pub cors_allowed_origins: String,
    /// TLS certificate chain and key (PEM); both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Serve TLS with a self-signed certificate kept in the data directory (local use).
    pub tls_self_signed: bool,
    /// How many Argon2 hashes may run at once.
    pub password_hash_concurrency: usize,
    pub database_max_connections: u32,
    /// How many reward workers this process runs (each claims its own batches).
    pub reward_workers: usize,
    /// Where the signing key ring lives; defaults to `<keys_dir>/signing`. May be read-only
    /// (a mounted secret) in every process that does not rotate keys.
    pub signing_keys_dir: Option<PathBuf>,
    /// Base URLs of the other roles, used when this process runs only some roles: the
    /// transactions role asks users for standing, rewards writes through transactions,
    /// erasure tells identity, users and transactions to forget a person.
    pub identity_url: Option<String>,
    pub users_url: Option<String>,
    pub transactions_url: Option<String>,
    /// The token endpoint for service tokens; defaults to `<identity_url>/identity/v1/token`.
    pub service_token_url: Option<String>,
    /// Secrets of the `transactions` and `erasure` service clients (split mode).
    pub transactions_client_secret: Option<Secret>,
    pub erasure_client_secret: Option<Secret>,
    /// How long (milliseconds) the transactions service may reuse a person's standing
    /// before asking the users service again; consent withdrawal and restriction take effect
    /// across services within this time plus one request. At most 1000.
    pub standing_cache_ms: u64,
    /// An external OpenID provider instead of the identity role: its issuer, JWKS URL, the
    /// audience its tokens must name, the claim with its scopes and how they map to ours
    /// (`theirs=ours,...`), and the least time between two fetches of its keys.
    pub oidc_issuer: Option<String>,
    pub oidc_jwks_url: Option<String>,
    pub oidc_audience: Option<String>,
    pub oidc_scope_claim: String,
    pub oidc_scope_map: String,
    pub oidc_jwks_cooldown_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            public_base_url: None,
            roles: "all".into(),
            log_format: "json".into(),
            log_level: "info".into(),
            keys_dir: None,
            master_key: None,
            master_key_file: None,
            rewards_client_secret: None,
            erasure_grace_seconds: 0,
            erasure_interval_seconds: 10,
            analytics_min_contributors: 5,
            retention_idle_account_days: 730,
            retention_anonymous_fact_days: 1825,
            retention_request_days: 1095,
            retention_audit_days: 2555,
            audit_checkpoint_file: None,
            migrate_on_start: true,
            max_body_bytes: 64 * 1024,
            request_timeout_seconds: 30,
            max_concurrent_requests: 512,
            header_read_timeout_seconds: 10,
            max_connections: 1024,
            rate_limit_per_address_per_minute: 1200,
            rate_limit_per_person_per_minute: 600,
            login_failures_per_address: 30,
            login_failures_per_account: 5,
            login_window_seconds: 900,
            trusted_proxies: String::new(),
            cors_allowed_origins: String::new(),
            tls_cert: None,
            tls_key: None,
            tls_self_signed: false,
            password_hash_concurrency: 2,
            database_max_connections: 16,
            reward_workers: 2,
            signing_keys_dir: None,
            identity_url: None,
            users_url: None,
            transactions_url: None,
            service_token_url: None,
            transactions_client_secret: None,
            erasure_client_secret: None,
            standing_cache_ms: 500,
            oidc_issuer: None,
            oidc_jwks_url: None,
            oidc_audience: None,
            oidc_scope_claim: "scope".into(),
            oidc_scope_map: String::new(),
            oidc_jwks_cooldown_seconds: 30,
        }
    }
}

/// Keys whose values are secrets and may also come from `EXAMPLEBANK_<KEY>_FILE`.
const SECRET_KEYS: &[&str] = &[
    "database_url",
    "master_key",
    "rewards_client_secret",
    "transactions_client_secret",
    "erasure_client_secret",
];
/// Every setting's name with the kind of value it takes, read off the defaults, so the
/// environment can name exactly the fields of `Settings` and nothing else.
fn known_keys() -> Vec<(String, serde_json::Value)> {
    match serde_json::to_value(Settings::default()) {
        Ok(serde_json::Value::Object(map)) => map.into_iter().collect(),
        _ => Vec::new(),
    }
}

pub fn all_keys() -> Vec<String> {
    known_keys().into_iter().map(|(k, _)| k).collect()
}

/// Flags that override everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub addr: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub roles: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_self_signed: bool,
}

/// The longest a transactions process may reuse a person's standing from users: with the
/// request that reads it, consent withdrawal and restriction reach every service within one
/// second (docs/operations.md).
pub const MAX_STANDING_CACHE_MS: u64 = 900;

impl Settings {
    /// Loads settings in order: defaults, file, environment, flags.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env, overrides)
    }

    pub fn load_from(
        file: Option<&Path>,
        env: &[(String, String)],
        overrides: &Overrides,
    ) -> anyhow::Result<Self> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the settings file {}", path.display()))?;
                text.parse::<toml::Table>().with_context(|| {
                    format!("the settings file {} is not valid TOML", path.display())
                })?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(key) = name.strip_prefix("EXAMPLEBANK_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            // EXAMPLEBANK_CONFIG names the file; EXAMPLEBANK_TEST_* belong to the test suite.
            if key == "config" || key.starts_with("test_") {
                continue;
            }
            if let Some(secret_key) = key
                .strip_suffix("_file")
                .filter(|k| SECRET_KEYS.contains(k))
            {
                let text = std::fs::read_to_string(value)
                    .with_context(|| format!("cannot read {name} (the file named by {name})"))?;
                table.insert(
                    secret_key.to_owned(),
                    toml::Value::String(text.trim().to_owned()),
                );
                continue;
            }
            let Some((_, default)) = known_keys().into_iter().find(|(k, _)| *k == key) else {
                bail!(
                    "unknown setting {name}; known settings: {}",
                    known_env_names()
                );
            };
            table.insert(key.clone(), typed_value(&default, name, value)?);
        }
        if let Some(addr) = &overrides.addr {
            table.insert("addr".into(), toml::Value::String(addr.clone()));
        }
        if let Some(dir) = &overrides.data_dir {
            table.insert(
                "data_dir".into(),
                toml::Value::String(dir.display().to_string()),
            );
        }
        if let Some(roles) = &overrides.roles {
            table.insert("roles".into(), toml::Value::String(roles.clone()));
        }
        for (key, path) in [
            ("tls_cert", &overrides.tls_cert),
            ("tls_key", &overrides.tls_key),
        ] {
            if let Some(path) = path {
                table.insert(key.into(), toml::Value::String(path.display().to_string()));
            }
        }
        if overrides.tls_self_signed {
            table.insert("tls_self_signed".into(), toml::Value::Boolean(true));
        }
        let settings: Settings = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("invalid settings: {}", e.message()))?;
        settings.validate()?;
        Ok(settings)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.addr.parse::<SocketAddr>().with_context(|| {
            "addr must be HOST:PORT with an IP address, e.g. 127.0.0.1:8080 (EXAMPLEBANK_ADDR or --addr)"
        })?;
        if let Some(url) = &self.database_url {
            let url = url.expose();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!("database_url must start with postgres:// (EXAMPLEBANK_DATABASE_URL); leave it unset for the embedded SQLite database");
            }
        }
        if let Some(base) = &self.public_base_url {
            if !(base.starts_with("http://") || base.starts_with("https://"))
                || base.contains('?')
                || base.contains('#')
            {
                bail!("public_base_url must be an http:// or https:// URL without query or fragment, e.g. https://bank.example.org");
            }
        }
        crate::roles::Roles::parse(&self.roles)?;
        if !matches!(self.log_format.as_str(), "json" | "text") {
            bail!("log_format must be json or text (EXAMPLEBANK_LOG_FORMAT)");
        }
        if self
            .log_level
            .parse::<tracing_subscriber::EnvFilter>()
            .is_err()
        {
            bail!("log_level must be a tracing filter such as info or examplebank=debug,info");
        }
        if !(0..=30 * 24 * 3600).contains(&self.erasure_grace_seconds) {
            bail!("erasure_grace_seconds must be between 0 and 2592000 (30 days: erasure is due within a month)");
        }
        let positive = [
            (
                "erasure_interval_seconds",
                self.erasure_interval_seconds as u128,
            ),
            ("max_body_bytes", self.max_body_bytes as u128),
            (
                "request_timeout_seconds",
                self.request_timeout_seconds as u128,
            ),
            (
                "max_concurrent_requests",
                self.max_concurrent_requests as u128,
            ),
            (
                "password_hash_concurrency",
                self.password_hash_concurrency as u128,
            ),
            (
                "database_max_connections",
                u128::from(self.database_max_connections),
            ),
        ];
        for (name, value) in positive {
            if value == 0 {
                bail!("{name} must be greater than zero");
            }
        }
        if !(2..=1000).contains(&self.analytics_min_contributors) {
            bail!("analytics_min_contributors must be between 2 and 1000 (k of k-anonymity)");
        }
        for (name, days) in [
            (
                "retention_idle_account_days",
                self.retention_idle_account_days,
            ),
            (
                "retention_anonymous_fact_days",
                self.retention_anonymous_fact_days,
            ),
            ("retention_request_days", self.retention_request_days),
            ("retention_audit_days", self.retention_audit_days),
        ] {
            if !(1..=36_500).contains(&days) {
                bail!("{name} must be between 1 and 36500 days");
            }
        }
        self.trusted_proxy_list()?;
        for origin in self.cors_origin_list() {
            if !(origin.starts_with("https://") || origin.starts_with("http://"))
                || origin.ends_with('/')
            {
                bail!("cors_allowed_origins must list origins like https://app.example.org (no path, no trailing slash)");
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("set both tls_cert and tls_key (--tls-cert, --tls-key), or neither");
        }
        if self.tls_self_signed && self.tls_cert.is_some() {
            bail!("use either --tls-self-signed or --tls-cert/--tls-key, not both");
        }
        if self.master_key.is_some() && self.master_key_file.is_some() {
            bail!("set either master_key or master_key_file, not both");
        }
        let roles = crate::roles::Roles::parse(&self.roles)?;
        if roles.is_split() && self.database_url.is_none() {
            bail!("running separate roles needs PostgreSQL: set EXAMPLEBANK_DATABASE_URL=postgres://...; SQLite serves only --roles all");
        }
        for (name, url) in [
            ("identity_url", &self.identity_url),
            ("users_url", &self.users_url),
            ("transactions_url", &self.transactions_url),
            ("service_token_url", &self.service_token_url),
            ("oidc_issuer", &self.oidc_issuer),
            ("oidc_jwks_url", &self.oidc_jwks_url),
        ] {
            if let Some(url) = url {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    bail!("{name} must be an http:// or https:// URL");
                }
            }
        }
        if !(1..=MAX_STANDING_CACHE_MS).contains(&self.standing_cache_ms) {
            bail!("standing_cache_ms must be between 1 and {MAX_STANDING_CACHE_MS}: consent withdrawal must reach every service within a second, the request that reads the standing included");
        }
        if !(1..=64).contains(&self.reward_workers) {
            bail!("reward_workers must be between 1 and 64");
        }
        if self.oidc_issuer.is_some() {
            if self.oidc_jwks_url.is_none() || self.oidc_audience.is_none() {
                bail!("an external identity provider needs oidc_issuer, oidc_jwks_url and oidc_audience together");
            }
            if roles.has("identity") {
                bail!("with an external identity provider (oidc_issuer) do not run the identity role: use e.g. --roles users,transactions,rewards,erasure,ui");
            }
            if self.oidc_jwks_cooldown_seconds == 0 {
                bail!("oidc_jwks_cooldown_seconds must be greater than zero");
            }
            self.external_idp()
                .map(|idp| idp.parsed_scope_map())
                .transpose()
                .map_err(|e| anyhow::anyhow!("oidc_scope_map: {e}"))?;
        } else if self.oidc_jwks_url.is_some() || self.oidc_audience.is_some() {
            bail!("oidc_jwks_url and oidc_audience need oidc_issuer");
        }
        for need in self.remote_needs(&roles) {
            let (name, value) = need;
            if value.is_none() {
                bail!("{name} must be set: this process runs {} without the role it calls (see docs/operations.md, split mode)", roles.names().join(","));
            }
        }
        Ok(())
    }

    /// The URLs this process needs to reach the roles it does not run itself.
    fn remote_needs(&self, roles: &crate::roles::Roles) -> Vec<(&'static str, Option<&String>)> {
        let mut needs = Vec::new();
        let mut calls = false;
        if roles.has("transactions") && !roles.has("users") {
            needs.push(("users_url", self.users_url.as_ref()));
            calls = true;
        }
        if roles.has("rewards") && !roles.has("transactions") {
            needs.push(("transactions_url", self.transactions_url.as_ref()));
            calls = true;
        }
        if self.erasure_is_remote(roles) {
            needs.push(("users_url", self.users_url.as_ref()));
            needs.push(("transactions_url", self.transactions_url.as_ref()));
            if self.oidc_issuer.is_none() {
                needs.push(("identity_url", self.identity_url.as_ref()));
            }
            calls = true;
        }
        if calls {
            needs.push((
                "identity_url or service_token_url",
                self.service_token_url
                    .as_ref()
                    .or(self.identity_url.as_ref()),
            ));
        }
        needs
    }

    /// Whether the erasure role must ask other services to forget people.
    pub fn erasure_is_remote(&self, roles: &crate::roles::Roles) -> bool {
        roles.has("erasure")
            && !(roles.has("users")
                && roles.has("transactions")
                && (roles.has("identity") || self.oidc_issuer.is_some()))
    }

    /// The token endpoint service clients use.
    pub fn token_url(&self) -> Option<String> {
        self.service_token_url.clone().or_else(|| {
            self.identity_url
                .as_ref()
                .map(|base| format!("{}/identity/v1/token", base.trim_end_matches('/')))
        })
    }

    pub fn external_idp(&self) -> Option<web::auth::ExternalIdp> {
        Some(web::auth::ExternalIdp {
            issuer: self.oidc_issuer.clone()?,
            jwks_url: self.oidc_jwks_url.clone()?,
            audience: self.oidc_audience.clone()?,
            scope_claim: self.oidc_scope_claim.clone(),
            scope_map: self.oidc_scope_map.clone(),
            cooldown: std::time::Duration::from_secs(self.oidc_jwks_cooldown_seconds),
        })
    }

    pub fn signing_keys_dir(&self) -> PathBuf {
        self.signing_keys_dir
            .clone()
            .unwrap_or_else(|| self.keys_dir().join("signing"))
    }

    pub fn trusted_proxy_list(&self) -> anyhow::Result<Vec<std::net::IpAddr>> {
        self.trusted_proxies
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.parse()
                    .with_context(|| format!("trusted_proxies must be IP addresses separated by commas; '{p}' is not one"))
            })
            .collect()
    }

    pub fn cors_origin_list(&self) -> Vec<String> {
        self.cors_allowed_origins
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect()
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls_self_signed || self.tls_cert.is_some()
    }

    pub fn is_embedded(&self) -> bool {
        self.database_url.is_none()
    }

    pub fn retention(&self) -> erasure::Retention {
        erasure::Retention {
            idle_account_days: self.retention_idle_account_days,
            anonymous_fact_days: self.retention_anonymous_fact_days,
            request_days: self.retention_request_days,
            audit_days: self.retention_audit_days,
        }
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.keys_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys"))
    }

    pub fn audit_checkpoint_file(&self) -> PathBuf {
        self.audit_checkpoint_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit-checkpoint.json"))
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir.join("examplebank.sqlite")
    }

    /// The effective settings as TOML, secrets redacted (for `check-config`).
    pub fn redacted_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render settings: {e}"))
    }
}

fn known_env_names() -> String {
    all_keys()
        .iter()
        .map(|k| format!("EXAMPLEBANK_{}", k.to_ascii_uppercase()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn typed_value(
    default: &serde_json::Value,
    name: &str,
    value: &str,
) -> anyhow::Result<toml::Value> {
    match default {
        serde_json::Value::Number(_) => {
            let number: i64 = value
                .trim()
                .parse()
                .with_context(|| format!("{name} must be a whole number"))?;
            Ok(toml::Value::Integer(number))
        }
        serde_json::Value::Bool(_) => match value.trim() {
            "true" | "1" | "yes" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" => Ok(toml::Value::Boolean(false)),
            _ => bail!("{name} must be true or false"),
        },
        _ => Ok(toml::Value::String(value.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("eb.toml");
        std::fs::write(
            &file,
            "addr = \"127.0.0.1:9000\"\nerasure_grace_seconds = 60\n",
        )
        .expect("write");
        let s = Settings::load_from(Some(&file), &[], &Overrides::default()).expect("load");
        assert_eq!(s.addr, "127.0.0.1:9000");
        assert_eq!(s.erasure_grace_seconds, 60);
        let s = Settings::load_from(
            Some(&file),
            &env(&[("EXAMPLEBANK_ADDR", "127.0.0.1:9100")]),
            &Overrides::default(),
        )
        .expect("load");
        assert_eq!(s.addr, "127.0.0.1:9100");
        let flags = Overrides {
            addr: Some("127.0.0.1:9200".into()),
            ..Default::default()
        };
        let s = Settings::load_from(
            Some(&file),
            &env(&[("EXAMPLEBANK_ADDR", "127.0.0.1:9100")]),
            &flags,
        )
        .expect("load");
        assert_eq!(s.addr, "127.0.0.1:9200");
    }

    #[test]
    fn split_roles_on_sqlite_are_refused_naming_postgresql() {
        for roles in ["identity", "users,transactions", "rewards"] {
            let err = Settings::load_from(
                None,
                &env(&[("EXAMPLEBANK_ROLES", roles)]),
                &Overrides::default(),
            )
            .expect_err(roles)
            .to_string();
            assert!(err.contains("PostgreSQL"), "{roles}: {err}");
        }
        let all = Settings::load_from(
            None,
            &env(&[("EXAMPLEBANK_ROLES", "all")]),
            &Overrides::default(),
        );
        assert!(all.is_ok(), "--roles all runs on SQLite");
    }

    #[test]
    fn the_standing_cache_stays_under_the_one_second_bound() {
        let url = ("EXAMPLEBANK_DATABASE_URL", "postgres://db/examplebank");
        let key = (
            "EXAMPLEBANK_MASTER_KEY",
            "m1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        );
        for (value, ok) in [
            ("0", false),
            ("1", true),
            ("900", true),
            ("901", false),
            ("1000", false),
        ] {
            let loaded = Settings::load_from(
                None,
                &env(&[url, key, ("EXAMPLEBANK_STANDING_CACHE_MS", value)]),
                &Overrides::default(),
            );
            assert_eq!(
                loaded.is_ok(),
                ok,
                "standing_cache_ms = {value}: {:?}",
                loaded.err()
            );
        }
    }

    #[test]
    fn bad_settings_say_what_to_fix() {
        let cases = [
            ("EXAMPLEBANK_ADDR", "localhost"),
            ("EXAMPLEBANK_DATABASE_URL", "mysql://x"),
            ("EXAMPLEBANK_ERASURE_GRACE_SECONDS", "soon"),
            ("EXAMPLEBANK_LOG_FORMAT", "xml"),
            ("EXAMPLEBANK_ROLES", "identity,bogus"),
            ("EXAMPLEBANK_NOT_A_SETTING", "1"),
            ("EXAMPLEBANK_ROLES", "identity"),
        ];
        for (name, value) in cases {
            let err = Settings::load_from(None, &env(&[(name, value)]), &Overrides::default())
                .expect_err(name);
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn split_mode_needs_the_urls_of_the_roles_it_calls() {
        let pg = ("EXAMPLEBANK_DATABASE_URL", "postgres://db/bank");
        let load =
            |pairs: &[(&str, &str)]| Settings::load_from(None, &env(pairs), &Overrides::default());
        let err = load(&[pg, ("EXAMPLEBANK_ROLES", "transactions")]).expect_err("no users_url");
        assert!(err.to_string().contains("users_url"), "{err}");
        let err = load(&[
            pg,
            ("EXAMPLEBANK_ROLES", "transactions"),
            ("EXAMPLEBANK_USERS_URL", "http://users"),
        ])
        .expect_err("no token endpoint");
        assert!(err.to_string().contains("identity_url"), "{err}");
        let ok = load(&[
            pg,
            ("EXAMPLEBANK_ROLES", "transactions"),
            ("EXAMPLEBANK_USERS_URL", "http://users"),
            ("EXAMPLEBANK_IDENTITY_URL", "http://identity"),
        ])
        .expect("complete");
        assert_eq!(
            ok.token_url().as_deref(),
            Some("http://identity/identity/v1/token")
        );
        let err = load(&[pg, ("EXAMPLEBANK_ROLES", "rewards")]).expect_err("no transactions_url");
        assert!(err.to_string().contains("transactions_url"), "{err}");
        let err = load(&[pg, ("EXAMPLEBANK_ROLES", "erasure")]).expect_err("erasure calls three");
        assert!(err.to_string().contains("_url"), "{err}");
        // A process running users and transactions together needs no URL for standing.
        assert!(load(&[pg, ("EXAMPLEBANK_ROLES", "users,transactions")]).is_ok());
        // The bound of one second is enforced.
        let err = load(&[("EXAMPLEBANK_STANDING_CACHE_MS", "1500")]).expect_err("over a second");
        assert!(err.to_string().contains("standing_cache_ms"), "{err}");
    }

    #[test]
    fn an_external_provider_replaces_the_identity_role() {
        let pg = ("EXAMPLEBANK_DATABASE_URL", "postgres://db/bank");
        let load =
            |pairs: &[(&str, &str)]| Settings::load_from(None, &env(pairs), &Overrides::default());
        let idp = [
            ("EXAMPLEBANK_OIDC_ISSUER", "https://login.example.org"),
            (
                "EXAMPLEBANK_OIDC_JWKS_URL",
                "https://login.example.org/jwks",
            ),
            ("EXAMPLEBANK_OIDC_AUDIENCE", "bank-api"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut all = vec![pg];
            all.extend_from_slice(&idp);
            all.extend_from_slice(extra);
            all
        };
        let err = load(&with(&[])).expect_err("roles all includes identity");
        assert!(err.to_string().contains("identity role"), "{err}");
        let roles = ("EXAMPLEBANK_ROLES", "users,transactions,rewards,erasure,ui");
        assert!(load(&with(&[roles])).is_ok());
        let err = load(&with(&[roles, ("EXAMPLEBANK_OIDC_SCOPE_MAP", "x=nope")]))
            .expect_err("unknown scope");
        assert!(err.to_string().contains("oidc_scope_map"), "{err}");
        let err = load(&[pg, roles, idp[0]]).expect_err("issuer alone");
        assert!(err.to_string().contains("together"), "{err}");
    }

    #[test]
    fn the_test_suites_variables_are_not_settings() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("EXAMPLEBANK_TEST_POSTGRES_URL", "postgres://x/y"),
                ("EXAMPLEBANK_TEST_REQUIRE_POSTGRES", "1"),
            ]),
            &Overrides::default(),
        );
        assert!(s.is_ok());
    }

    #[test]
    fn secrets_are_redacted() {
        let s = Settings::load_from(
            None,
            &env(&[(
                "EXAMPLEBANK_DATABASE_URL",
                "postgres://user:hunter2@db/bank",
            )]),
            &Overrides::default(),
        )
        .expect("load");
        assert!(!s.redacted_toml().contains("hunter2"));
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
