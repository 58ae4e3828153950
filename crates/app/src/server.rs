//! Wires the roles into one router and starts the workers a process runs.

use crate::roles::Roles;
use anyhow::Context as _;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use crypto::keyring::SharedKeyRing;
use crypto::vault::Vault;
use domain::Clock;
use identity::{ClientRegistry, IdentityConfig, IdentityState, LoginThrottle, PasswordHasher};
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use web::layers::Limits;
use web::TokenVerifier;

/// Everything the roles share, built once per process.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub audit: Arc<audit::AuditLog>,
    pub vault: Arc<Vault>,
    pub signing: Arc<SharedKeyRing>,
    pub verifier: Arc<TokenVerifier>,
    pub clients: Arc<ClientRegistry>,
    pub clock: Arc<dyn Clock>,
    pub identity: Arc<IdentityConfig>,
    pub hasher: PasswordHasher,
    pub throttle: Arc<LoginThrottle>,
    pub reward_wakeup: Arc<Notify>,
    pub erasure_wakeup: Arc<Notify>,
    pub erasure_grace_seconds: i64,
    pub analytics_min_contributors: i64,
    pub retention: erasure::Retention,
    pub limits: Limits,
    /// The other roles, reached over HTTP, when this process runs only some roles.
    pub remote: Remote,
    /// How many reward workers to run.
    pub reward_workers: usize,
    /// Other services this process calls: (name, base URL). `/readyz` checks they answer.
    pub dependencies: Vec<(String, String)>,
}

/// Clients for the roles this process does not run itself (split mode). Empty when every
/// role runs here: then each role reads and writes the shared database directly.
#[derive(Clone, Default)]
pub struct Remote {
    /// The transactions role asks the users service about people's standing.
    pub standing: Option<Arc<web::client::StandingClient>>,
    /// The rewards role writes points through the transactions service.
    pub rewards: Option<Arc<rewards::RemoteWriter>>,
    /// The erasure role tells identity, users and transactions to forget a person.
    pub erasure: Option<Arc<erasure::RemoteRoles>>,
}

pub struct ServicesConfig {
    pub public_base_url: String,
    pub erasure_grace_seconds: i64,
    pub analytics_min_contributors: i64,
    pub retention: erasure::Retention,
    pub password_hash_concurrency: usize,
    pub limits: Limits,
    /// Requests per minute one person or service may make.
    pub per_person_per_minute: u32,
    pub login_throttle: LoginThrottle,
}

impl Services {
    pub fn new(
        store: Store,
        audit: Arc<audit::AuditLog>,
        vault: Arc<Vault>,
        signing: SharedKeyRing,
        clients: ClientRegistry,
        clock: Arc<dyn Clock>,
        config: ServicesConfig,
    ) -> anyhow::Result<Self> {
        let identity = Arc::new(IdentityConfig::new(&config.public_base_url));
        let verifier = Arc::new(
            TokenVerifier::new(
                signing.current().verifier(),
                identity.issuer.clone(),
                identity.audience.clone(),
                store.clone(),
                Arc::clone(&clock),
            )
            .with_person_limit(config.per_person_per_minute),
        );
        Ok(Self {
            store,
            audit,
            vault,
            signing: Arc::new(signing),
            verifier,
            clients: Arc::new(clients),
            clock,
            identity,
            hasher: PasswordHasher::new(config.password_hash_concurrency, Duration::from_secs(3))
                .context("starting the password-hashing threads")?,
            throttle: Arc::new(config.login_throttle),
            reward_wakeup: Arc::new(Notify::new()),
            erasure_wakeup: Arc::new(Notify::new()),
            erasure_grace_seconds: config.erasure_grace_seconds,
            analytics_min_contributors: config.analytics_min_contributors,
            retention: config.retention,
            limits: config.limits,
            remote: Remote::default(),
            reward_workers: 1,
            dependencies: Vec::new(),
        })
    }

    pub fn identity_state(&self) -> IdentityState {
        IdentityState {
            store: self.store.clone(),
            audit: Arc::clone(&self.audit),
            keys: Arc::clone(&self.signing),
            vault: Arc::clone(&self.vault),
            verifier: Arc::clone(&self.verifier),
            clients: Arc::clone(&self.clients),
            hasher: self.hasher.clone(),
            throttle: Arc::clone(&self.throttle),
            clock: Arc::clone(&self.clock),
            config: Arc::clone(&self.identity),
        }
    }

    /// The router for the roles this process serves, with every protective layer.
    pub fn router(&self, roles: &Roles) -> Router {
        let mut router = Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz).with_state(self.clone()))
            .route("/metrics", get(metrics).with_state(self.clone()))
            .merge(crate::openapi::router());
        if roles.has("identity") {
            router = router.merge(identity::router(self.identity_state()));
        }
        if roles.has("users") {
            router = router.merge(users::router(users::UsersState {
                store: self.store.clone(),
                audit: Arc::clone(&self.audit),
                signing: Arc::clone(&self.signing),
                issuer: self.identity.issuer.clone(),
                vault: Arc::clone(&self.vault),
                verifier: Arc::clone(&self.verifier),
                clock: Arc::clone(&self.clock),
                erasure_grace_seconds: self.erasure_grace_seconds,
                erasure_wakeup: Arc::clone(&self.erasure_wakeup),
            }));
        }
        if roles.has("transactions") {
            router = router.merge(transactions::router(transactions::TransactionsState {
                store: self.store.clone(),
                audit: Arc::clone(&self.audit),
                vault: Arc::clone(&self.vault),
                verifier: Arc::clone(&self.verifier),
                clock: Arc::clone(&self.clock),
                reward_wakeup: Arc::clone(&self.reward_wakeup),
                analytics_min_contributors: self.analytics_min_contributors,
                standing: self.remote.standing.clone(),
            }));
        }
        if roles.has("ui") {
            router = router.merge(ui::router());
        }
        web::layers::harden_with(
            router,
            &self.limits,
            Some(Arc::clone(&self.audit)),
            Some(Arc::clone(&self.verifier)),
        )
    }

    /// Starts the background workers of the roles this process runs.
    pub fn spawn_workers(
        &self,
        roles: &Roles,
        erasure_interval: Duration,
        shutdown: &watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let mut handles = vec![tokio::spawn(
            Arc::clone(&self.audit).run_checkpointer(Duration::from_secs(60), shutdown.clone()),
        )];
        handles.push(tokio::spawn(follow_signing_keys(
            self.clone(),
            shutdown.clone(),
        )));
        if roles.has("rewards") {
            for _ in 0..self.reward_workers.max(1) {
                let mut worker = rewards::RewardWorker::new(
                    self.store.clone(),
                    Arc::clone(&self.clock),
                    Default::default(),
                );
                if let Some(remote) = &self.remote.rewards {
                    worker = worker.with_remote(Arc::clone(remote));
                }
                handles.push(tokio::spawn(
                    worker.run(Arc::clone(&self.reward_wakeup), shutdown.clone()),
                ));
            }
        }
        if roles.has("erasure") {
            let worker = self.erasure_worker();
            handles.push(tokio::spawn(worker.run(
                erasure_interval,
                Arc::clone(&self.erasure_wakeup),
                shutdown.clone(),
            )));
        }
        handles
    }

    /// Picks up signing keys added by `examplebank keys rotate-signing` while this process
    /// runs: new tokens are signed with the newest key, and tokens signed with older keys in
    /// the ring keep verifying. Returns true when the keys changed.
    pub fn reload_signing_keys(&self) -> bool {
        match self.signing.reload_if_changed() {
            Ok(true) => {
                self.verifier
                    .replace_keys(self.signing.current().verifier());
                tracing::info!(
                    kid = self.signing.current().active().kid(),
                    "signing keys reloaded"
                );
                true
            }
            Ok(false) => false,
            Err(err) => {
                tracing::warn!(error = %err, "cannot reload the signing keys");
                false
            }
        }
    }

    pub fn erasure_worker(&self) -> erasure::ErasureWorker {
        let worker = erasure::ErasureWorker::new(
            self.store.clone(),
            Arc::clone(&self.audit),
            Arc::clone(&self.vault),
            Arc::clone(&self.clock),
            self.retention.clone(),
        );
        match &self.remote.erasure {
            Some(remote) => worker.with_remote(Arc::clone(remote)),
            None => worker,
        }
    }
}

/// Picks up signing keys added by `examplebank keys rotate-signing` while this process runs:
/// new tokens are signed with the newest key, and tokens signed with older keys in the ring
/// keep verifying.
async fn follow_signing_keys(services: Services, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = shutdown.changed() => return,
        }
        services.reload_signing_keys();
    }
}

/// Prometheus text: the process's counters and histograms, and gauges read now.
async fn metrics(axum::extract::State(services): axum::extract::State<Services>) -> Response {
    let now = services.clock.now_micros();
    let mut gauges = Vec::new();
    if let Ok(stats) = services.store.outbox_stats().await {
        let age = stats
            .oldest_created_at
            .map(|t| (now - t).max(0) as f64 / 1e6)
            .unwrap_or(0.0);
        gauges.push((
            "examplebank_outbox_pending",
            "Reward events waiting.",
            stats.pending as f64,
        ));
        gauges.push((
            "examplebank_outbox_parked",
            "Reward events parked for an administrator.",
            stats.parked as f64,
        ));
        gauges.push((
            "examplebank_outbox_oldest_age_seconds",
            "Age of the oldest waiting reward event.",
            age,
        ));
    }
    if let Ok(pending) = services.store.pending_erasures().await {
        gauges.push((
            "examplebank_erasure_queue",
            "Erasure requests not yet carried out.",
            pending as f64,
        ));
    }
    let up = if services.store.ping().await {
        1.0
    } else {
        0.0
    };
    gauges.push((
        "examplebank_database_up",
        "1 when the database answers.",
        up,
    ));
    if services.verifier.is_external() {
        gauges.push((
            "examplebank_oidc_jwks_fetches",
            "Fetches of the external identity provider's JWKS since start.",
            services.verifier.jwks_fetches() as f64,
        ));
    }
    let body = web::metrics::metrics().render(&gauges);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn healthz() -> Response {
    Json(serde_json::json!({ "status": "alive" })).into_response()
}

/// Ready when the database answers and so does every service this process calls (their
/// `/healthz`, one second at most each, asked at the same time).
async fn readyz(axum::extract::State(services): axum::extract::State<Services>) -> Response {
    if !services.store.ping().await {
        return web::ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            "the database does not answer",
        )
        .into_response();
    }
    let mut checks = Vec::new();
    for (name, base) in &services.dependencies {
        let url = format!("{}/healthz", base.trim_end_matches('/'));
        let name = name.clone();
        checks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let up = client
                .get(url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            (name, up)
        }));
    }
    let mut dependencies = serde_json::Map::new();
    let mut down = Vec::new();
    for check in checks {
        if let Ok((name, up)) = check.await {
            if !up {
                down.push(name.clone());
            }
            dependencies.insert(name, serde_json::json!(if up { "up" } else { "down" }));
        }
    }
    if !down.is_empty() {
        return web::ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-ready",
            format!("not answering: {}", down.join(", ")),
        )
        .into_response();
    }
    Json(serde_json::json!({
        "status": "ready",
        "database": "up",
        "dependencies": dependencies,
    }))
    .into_response()
}
