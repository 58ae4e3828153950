//! The subcommands other than `demo`: serve, migrate, erasure run, admin create, keys, check-config.

use crate::bootstrap;
use crate::roles::Roles;
use crate::server::{Services, ServicesConfig};
use crate::settings::Settings;
use anyhow::Context;
use domain::{Clock, SystemClock};
use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use web::layers::Limits;

/// Opens everything a command needs. `base_url` names the issuer for tokens.
pub async fn assemble(settings: &Settings, base_url: &str) -> anyhow::Result<Services> {
    let store = bootstrap::open_store(settings).await?;
    if settings.migrate_on_start {
        store
            .migrate()
            .await
            .context("cannot apply database migrations")?;
    }
    let keys = bootstrap::open_keys(settings)?;
    let signing = bootstrap::signing_keys(settings)?;
    let roles = Roles::parse(&settings.roles)?;
    let clients = if roles.has("identity") {
        bootstrap::all_clients(settings, base_url)?
    } else {
        identity::ClientRegistry::default()
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let audit = Arc::new(audit::AuditLog::open(
        store.clone(),
        &settings.keys_dir(),
        settings.audit_checkpoint_file(),
        Arc::clone(&clock),
    )?);
    let mut services = Services::new(
        store,
        audit,
        bootstrap::vault(keys),
        signing,
        clients,
        clock,
        ServicesConfig {
            public_base_url: base_url.to_owned(),
            erasure_grace_seconds: settings.erasure_grace_seconds,
            analytics_min_contributors: settings.analytics_min_contributors,
            retention: settings.retention(),
            password_hash_concurrency: settings.password_hash_concurrency,
            limits: Limits {
                max_body_bytes: settings.max_body_bytes,
                request_timeout: Duration::from_secs(settings.request_timeout_seconds),
                max_concurrent_requests: settings.max_concurrent_requests,
                per_address_per_minute: settings.rate_limit_per_address_per_minute,
                trusted_proxies: settings.trusted_proxy_list()?,
                cors_allowed_origins: settings.cors_origin_list(),
                hsts: settings.tls_enabled(),
            },
            per_person_per_minute: settings.rate_limit_per_person_per_minute,
            login_throttle: identity::LoginThrottle::new(
                settings.login_failures_per_address,
                settings.login_failures_per_account,
                Duration::from_secs(settings.login_window_seconds),
            ),
        },
    )?;
    services.reward_workers = settings.reward_workers;
    if let Some(idp) = settings.external_idp() {
        let verifier =
            web::TokenVerifier::external(&idp, services.store.clone(), Arc::clone(&services.clock))
                .map_err(|e| anyhow::anyhow!("external identity provider: {e}"))?
                .with_person_limit(settings.rate_limit_per_person_per_minute);
        verifier.prefetch().await;
        services.verifier = Arc::new(verifier);
    }
    services.remote = remote_roles(settings, &roles)?;
    services.dependencies = dependencies(settings, &services.remote);
    Ok(services)
}

/// The services this process calls, for `/readyz`.
fn dependencies(settings: &Settings, remote: &crate::server::Remote) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |name: &str, url: &Option<String>| {
        if let Some(url) = url {
            if !out.iter().any(|(n, _)| n == name) {
                out.push((name.to_owned(), url.clone()));
            }
        }
    };
    if remote.standing.is_some() {
        add("users", &settings.users_url);
    }
    if remote.rewards.is_some() {
        add("transactions", &settings.transactions_url);
    }
    if let Some(erasure) = &remote.erasure {
        add("users", &settings.users_url);
        add("transactions", &settings.transactions_url);
        add("identity", &erasure.identity_url);
    }
    let calls = remote.standing.is_some() || remote.rewards.is_some() || remote.erasure.is_some();
    if calls && settings.oidc_issuer.is_none() {
        add("identity", &settings.identity_url);
    }
    out
}

/// Clients for the roles this process calls over HTTP, each with its own service client.
fn remote_roles(settings: &Settings, roles: &Roles) -> anyhow::Result<crate::server::Remote> {
    let mut remote = crate::server::Remote::default();
    let client = |id: &str, scope: domain::Scope| -> anyhow::Result<web::client::ServiceClient> {
        let token_url = settings
            .token_url()
            .context("set identity_url or service_token_url for calls between services")?;
        let secret = bootstrap::service_secret(settings, id)?.with_context(|| {
            format!(
                "set EXAMPLEBANK_{}_CLIENT_SECRET (or _FILE): this process calls other services as client {id}",
                id.to_ascii_uppercase()
            )
        })?;
        // With an external provider, ask for its name of the scope.
        let scope = settings
            .external_idp()
            .and_then(|idp| idp.parsed_scope_map().ok())
            .and_then(|map| map.into_iter().find(|(_, ours)| *ours == scope))
            .map_or_else(|| scope.as_str().to_owned(), |(theirs, _)| theirs);
        web::client::ServiceClient::new(web::client::ServiceCredentials {
            token_url,
            client_id: id.to_owned(),
            client_secret: secret,
            scope,
        })
        .map_err(|e| anyhow::anyhow!("{e}"))
    };
    let url = |value: &Option<String>, name: &str| -> anyhow::Result<String> {
        value
            .clone()
            .with_context(|| format!("set {name}: this process calls that role over HTTP"))
    };
    if roles.has("transactions") && !roles.has("users") {
        remote.standing = Some(Arc::new(web::client::StandingClient::new(
            client("transactions", domain::Scope::Standing)?,
            &url(&settings.users_url, "users_url")?,
            Duration::from_millis(settings.standing_cache_ms),
        )));
    }
    if roles.has("rewards") && !roles.has("transactions") {
        remote.rewards = Some(Arc::new(rewards::RemoteWriter {
            client: client("rewards", domain::Scope::Rewards)?,
            transactions_url: url(&settings.transactions_url, "transactions_url")?,
        }));
    }
    if settings.erasure_is_remote(roles) {
        remote.erasure = Some(Arc::new(erasure::RemoteRoles {
            client: client("erasure", domain::Scope::Forget)?,
            identity_url: match settings.oidc_issuer {
                Some(_) => None,
                None => Some(url(&settings.identity_url, "identity_url")?),
            },
            users_url: url(&settings.users_url, "users_url")?,
            transactions_url: url(&settings.transactions_url, "transactions_url")?,
        }));
    }
    Ok(remote)
}

fn base_url(settings: &Settings, bound: Option<std::net::SocketAddr>) -> String {
    let scheme = if settings.tls_enabled() {
        "https"
    } else {
        "http"
    };
    let local = bound
        .map(|a| a.to_string())
        .unwrap_or_else(|| settings.addr.clone());
    settings
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{local}"))
        .trim_end_matches('/')
        .to_owned()
}

pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let roles = Roles::parse(&settings.roles)?;
    let listener = TcpListener::bind(&settings.addr).await.with_context(|| {
        format!(
            "cannot listen on {}; is another program using it? (EXAMPLEBANK_ADDR or --addr)",
            settings.addr
        )
    })?;
    let local = listener.local_addr()?;
    let tls = tls_config(&settings, local)?;
    let base = base_url(&settings, Some(local));
    let services = assemble(&settings, &base).await?;
    if roles.has("erasure") {
        let purged = services
            .erasure_worker()
            .reapply_journal()
            .await
            .context("cannot re-apply the erasure journal")?;
        tracing::info!(purged, "erasure journal applied");
    }
    let (stop, stopped) = watch::channel(false);
    let workers = services.spawn_workers(
        &roles,
        Duration::from_secs(settings.erasure_interval_seconds),
        &stopped,
    );
    let app = services.router(&roles);
    tracing::info!(address = %local, roles = %roles.names().join(","), backend = services.store.backend().name(), "examplebank listening");
    println!(
        "examplebank listening on {}://{local} (roles: {})",
        if settings.tls_enabled() {
            "https"
        } else {
            "http"
        },
        roles.names().join(",")
    );
    let options = crate::net::ServeOptions {
        header_read_timeout: Duration::from_secs(settings.header_read_timeout_seconds),
        max_connections: settings.max_connections,
        tls,
    };
    // On SIGTERM the workers stop claiming at once, while the listener drains: both finish
    // what they hold within the pod's grace period (docs/operations.md).
    let stop = Arc::new(stop);
    let on_signal = {
        let stop = Arc::clone(&stop);
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down: draining requests, stopping workers");
            let _ = stop.send(true);
        }
    };
    crate::net::serve(listener, app, options, on_signal).await;
    let _ = stop.send(true);
    let joined = tokio::time::timeout(WORKER_STOP_LIMIT, async {
        for worker in workers {
            let _ = worker.await;
        }
    })
    .await;
    if joined.is_err() {
        // What a worker still holds is leased: it comes back when the lease runs out.
        tracing::warn!("workers did not stop in time; exiting anyway");
    }
    services.store.close().await;
    Ok(())
}

/// How long, after the listener has drained, the workers get to finish the batch or erasure
/// they hold (they were told to stop when the signal came).
const WORKER_STOP_LIMIT: Duration = Duration::from_secs(3);

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

pub async fn migrate(mut settings: Settings) -> anyhow::Result<()> {
    settings.migrate_on_start = false;
    let store = bootstrap::open_store(&settings).await?;
    let applied = store
        .migrate()
        .await
        .context("cannot apply database migrations")?;
    println!(
        "{} migration(s) applied on {}: {}",
        applied.len(),
        store.backend().name(),
        applied.join(", ")
    );
    store.close().await;
    Ok(())
}

pub async fn erasure_run(settings: Settings) -> anyhow::Result<()> {
    let services = assemble(&settings, &base_url(&settings, None)).await?;
    let worker = services.erasure_worker();
    let purged = worker
        .reapply_journal()
        .await
        .context("cannot re-apply the erasure journal")?;
    let report = worker.run_once().await.context("the erasure pass failed")?;
    println!(
        "erasure pass complete: {} person(s) erased, {} idle account(s) scheduled, {} fact row(s) and {} request(s) past retention deleted, {} restored person(s) removed again",
        report.erased, report.idle_accounts_scheduled, report.facts_deleted, report.requests_deleted, purged
    );
    services.store.close().await;
    Ok(())
}

/// Creates an administrator. The password is read from the first line of standard input.
pub async fn admin_create(settings: Settings, username: &str) -> anyhow::Result<()> {
    let username = domain::Username::parse(username).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = domain::Password::parse(line.trim_end_matches(['\n', '\r']))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let services = assemble(&settings, &base_url(&settings, None)).await?;
    let profile = identity::NewProfile {
        username,
        password,
        given_name: None,
        family_name: None,
        email: None,
    };
    let id = identity::create_account(&services.identity_state(), profile, "admin")
        .await
        .map_err(|e| anyhow::anyhow!("cannot create the administrator: {e}"))?;
    println!("administrator created: {id}");
    services.store.close().await;
    Ok(())
}

pub fn rotate_signing(settings: &Settings) -> anyhow::Result<()> {
    let dir = settings.signing_keys_dir();
    let kid = crypto::keyring::SigningKeyRing::rotate(&dir, SystemClock.now_secs())
        .with_context(|| format!("cannot rotate the signing keys in {}", dir.display()))?;
    println!("new signing key {kid} is active; a running server signs with it within 5 s, no restart needed (old tokens keep verifying until they expire)");
    Ok(())
}

pub fn check_config(settings: &Settings) {
    println!(
        "# effective settings (secrets redacted)\n{}",
        settings.redacted_toml()
    );
}

/// Re-wraps every data key under a new master key. The running server notices the new key
/// the first time it meets a data key wrapped by it.
pub fn rotate_master(
    settings: &Settings,
    new_key_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let keys = bootstrap::open_keys(settings)?;
    let new_key = match new_key_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            crypto::envelope::MasterKey::from_encoded(text.trim())?
        }
        None => {
            if settings.master_key.is_some() || settings.master_key_file.is_some() {
                anyhow::bail!("the master key comes from the settings: give the new one with --new-master-key-file, then update EXAMPLEBANK_MASTER_KEY(_FILE) and restart");
            }
            crypto::envelope::MasterKey::try_generate(&next_master_id(&keys.master_id()))?
        }
    };
    let rewrapped = keys
        .rotate_master(&new_key)
        .context("the master key rotation failed; run it again to finish")?;
    println!(
        "master key {} is active; {rewrapped} data key(s) re-wrapped",
        new_key.id()
    );
    Ok(())
}

fn next_master_id(current: &str) -> String {
    match current
        .strip_prefix('m')
        .and_then(|n| n.parse::<u64>().ok())
    {
        Some(n) => format!("m{}", n + 1),
        None => format!("m{}", SystemClock.now_secs()),
    }
}

/// Verifies the audit log; exits non-zero (an error) at the first altered, missing or
/// reordered entry, bad signature or cut-off tail.
pub async fn audit_verify(mut settings: Settings) -> anyhow::Result<()> {
    settings.migrate_on_start = false;
    let store = bootstrap::open_store(&settings).await?;
    let log = audit::AuditLog::open(
        store.clone(),
        &settings.keys_dir(),
        settings.audit_checkpoint_file(),
        Arc::new(SystemClock),
    )?;
    let report = audit::verify(&store, &log.verifier(), log.checkpoint_file())
        .await
        .context("cannot read the audit log")?;
    store.close().await;
    match report.problem {
        None => {
            println!(
                "audit log intact: {} entries, {} signed checkpoints",
                report.entries, report.checkpoints
            );
            Ok(())
        }
        Some(problem) => anyhow::bail!("audit log verification FAILED: {problem}"),
    }
}

/// TLS from `--tls-cert`/`--tls-key`, or a self-signed certificate with `--tls-self-signed`.
fn tls_config(
    settings: &Settings,
    local: std::net::SocketAddr,
) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    if let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) {
        return crate::net::tls_from_files(cert, key).map(Some);
    }
    if settings.tls_self_signed {
        let names = vec!["localhost".to_owned(), local.ip().to_string()];
        return crate::net::self_signed(&settings.data_dir.join("tls"), names).map(Some);
    }
    Ok(None)
}
