//! Argon2id off the async threads, behind a bound: at most N hashes at once, at most N more
//! callers waiting for a slot, and a caller that finds the queue full (or cannot get a slot
//! within the wait) is told at once to come back (429 with `Retry-After`) rather than
//! queueing. A short queue keeps the hashing slots busy while bounding what an admitted
//! login waits to about one hash; a long one only makes every login slow under overload.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Name of the threads that hash passwords.
pub const THREAD_NAME: &str = "password-hash";

type Job = Box<dyn FnOnce() + Send>;

#[derive(Clone)]
pub struct PasswordHasher {
    /// The hashing threads' queue. Hashing runs on `concurrency` threads of its own, started
    /// with the hasher, not on the runtime's blocking pool: each Argon2 hash takes 19 MiB, and
    /// the C library's allocator keeps what a thread freed for that thread's reuse, so hashes
    /// spread over the blocking pool's many threads left hundreds of MiB behind after a burst
    /// of logins (593 MiB in bench/run.sh), past a Kubernetes pod's memory limit. A fixed
    /// set of threads bounds it at about `concurrency` × 19 MiB.
    jobs: mpsc::Sender<Job>,
    permits: Arc<Semaphore>,
    /// Callers waiting for a slot right now.
    waiting: Arc<AtomicUsize>,
    /// Callers allowed to wait; the next one is refused at once.
    max_waiting: usize,
    wait: Duration,
}

/// Gives a waiting place back when the waiter stops waiting (got a slot, timed out or was
/// cancelled).
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
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
    /// `concurrency` hashes at once, as many callers waiting, each for at most `wait`.
    ///
    /// Starts the `concurrency` hashing threads; they stop when the last clone is dropped.
    /// Fails when a thread cannot be started: a hasher short of threads would queue admitted
    /// callers behind each other, and one without any would refuse every sign-in for good.
    pub fn new(concurrency: usize, wait: Duration) -> std::io::Result<Self> {
        let concurrency = concurrency.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..concurrency {
            let queue = Arc::clone(&queue);
            let started = std::thread::Builder::new()
                .name(THREAD_NAME.to_owned())
                .spawn(move || loop {
                    // The lock is held only while taking a job, never while hashing.
                    let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok(job) = next else { break };
                    // A job that panics loses its answer (its caller sees `Busy`), not the thread.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                });
            // On failure `jobs` is dropped on return, and the threads already started stop.
            started?;
        }
        Ok(Self {
            jobs,
            permits: Arc::new(Semaphore::new(concurrency)),
            waiting: Arc::new(AtomicUsize::new(0)),
            max_waiting: concurrency,
            wait,
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(permit) => permit,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(Busy),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    return Err(Busy);
                }
                let _waiting = Waiting(Arc::clone(&self.waiting));
                tokio::time::timeout(self.wait, Arc::clone(&self.permits).acquire_owned())
                    .await
                    .map_err(|_| Busy)?
                    .map_err(|_| Busy)?
            }
        };
        let (answer, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let out = work();
            drop(permit);
            let _ = answer.send(out);
        });
        self.jobs.send(job).map_err(|_| Busy)?;
        result.await.map_err(|_| Busy)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::mpsc;

    /// Occupies one hashing slot until the returned sender is dropped or sent to.
    async fn occupy(hasher: &PasswordHasher) -> (mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (release, blocked) = mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let hasher = hasher.clone();
        let task = tokio::spawn(async move {
            hasher
                .run(move || {
                    let _ = started_tx.send(());
                    let _ = blocked.recv();
                })
                .await
                .unwrap();
        });
        started.await.unwrap();
        (release, task)
    }

    async fn wait_until_waiting(hasher: &PasswordHasher, n: usize) {
        while hasher.waiting.load(Ordering::Acquire) < n {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once_instead_of_waiting() {
        // A wait far longer than the test may take: a refusal can only come from the queue bound.
        let hasher = PasswordHasher::new(1, Duration::from_secs(3600)).unwrap();
        let (release, busy) = occupy(&hasher).await;
        let queued = tokio::spawn({
            let hasher = hasher.clone();
            async move { hasher.run(|| 7).await }
        });
        wait_until_waiting(&hasher, 1).await;
        let refused = tokio::time::timeout(Duration::from_secs(60), hasher.run(|| 8))
            .await
            .expect("refused without waiting for a slot");
        assert!(refused.is_err(), "the queue is full: Busy");
        // The waiting caller is admitted once the slot frees, and then the queue has room.
        release.send(()).unwrap();
        busy.await.unwrap();
        assert_eq!(queued.await.unwrap().unwrap(), 7);
        assert_eq!(hasher.waiting.load(Ordering::Acquire), 0);
        assert_eq!(hasher.run(|| 9).await.unwrap(), 9);
    }

    /// Every hash runs on one of the hasher's own threads, however many logins come and
    /// however they overlap: that is what bounds the memory hashing leaves behind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_run_only_on_the_hashers_own_threads() {
        let hasher = PasswordHasher::new(2, Duration::from_secs(60)).unwrap();
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..40 {
            let hasher = hasher.clone();
            calls.spawn(async move {
                hasher
                    .run(|| {
                        std::thread::sleep(Duration::from_millis(2));
                        let me = std::thread::current();
                        (me.id(), me.name().map(str::to_owned))
                    })
                    .await
            });
        }
        let mut threads = std::collections::HashSet::new();
        let mut refused = 0;
        while let Some(done) = calls.join_next().await {
            match done.unwrap() {
                Ok((id, name)) => {
                    assert_eq!(name.as_deref(), Some(THREAD_NAME));
                    threads.insert(id);
                }
                Err(Busy) => refused += 1,
            }
        }
        assert!(threads.len() <= 2, "{} threads hashed", threads.len());
        assert!(refused < 40, "some calls were admitted");
        // A job that panics costs its caller an answer, not the hasher a thread.
        for _ in 0..4 {
            assert!(hasher.run(|| panic!("hash failed")).await.is_err());
        }
        assert_eq!(hasher.run(|| 5).await.unwrap(), 5);
        assert_eq!(hasher.run(|| 6).await.unwrap(), 6);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_that_gives_up_frees_its_place() {
        let hasher = PasswordHasher::new(1, Duration::from_millis(50)).unwrap();
        let (release, busy) = occupy(&hasher).await;
        assert!(hasher.run(|| ()).await.is_err(), "no slot within the wait");
        assert_eq!(hasher.waiting.load(Ordering::Acquire), 0);
        let cancelled = tokio::spawn({
            let hasher = hasher.clone();
            async move { hasher.run(|| ()).await }
        });
        wait_until_waiting(&hasher, 1).await;
        cancelled.abort();
        let _ = cancelled.await;
        assert_eq!(
            hasher.waiting.load(Ordering::Acquire),
            0,
            "a cancelled waiter leaves"
        );
        release.send(()).unwrap();
        busy.await.unwrap();
    }
}
