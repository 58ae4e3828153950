//! Argon2id off the async threads, behind a bound: at most N hashes at once, and a caller
//! that cannot get a slot quickly is told to come back (503) rather than queueing forever.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct PasswordHasher {
    permits: Arc<Semaphore>,
    wait: Duration,
}

#[derive(Debug)]
pub struct Busy;

impl From<Busy> for crate::CreateAccountError {
    fn from(_: Busy) -> Self {
        crate::CreateAccountError::Busy
    }
}

/// Too many password checks at once: the client is told to come back, with a time (429 is
/// the client's signal to slow down; the server itself is healthy).
impl From<Busy> for web::ApiError {
    fn from(_: Busy) -> Self {
        web::ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "busy",
            "too many sign-ins at once; try again in a second",
        )
        .with_header(axum::http::header::RETRY_AFTER, "1")
    }
}

impl PasswordHasher {
    pub fn new(concurrency: usize, wait: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            wait,
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let permit = tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        let result = tokio::task::spawn_blocking(move || {
            let out = work();
            drop(permit);
            out
        })
        .await
        .map_err(|_| Busy)?;
        Ok(result)
    }

    pub async fn hash(
        &self,
        password: domain::Password,
    ) -> Result<String, crate::CreateAccountError> {
        let hashed = self
            .run(move || crypto::password::hash_password(password.expose()))
            .await?;
        hashed.map_err(crate::CreateAccountError::Crypto)
    }

    /// Verifies against the stored hash, or spends the same effort on a dummy hash when there
    /// is no account, so both failures look and take the same.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<bool, Busy> {
        self.run(move || match stored {
            Some(phc) => crypto::password::verify_password(&password, &phc),
            None => {
                crypto::password::dummy_verify(&password);
                false
            }
        })
        .await
    }
}
