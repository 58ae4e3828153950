//! The rewards role: a worker that drains the outbox and writes each transaction's points
//! exactly once. The outbox row was written in the same database transaction as the charge,
//! so no acknowledged charge can be missed; the write-back is conditional on the transaction
//! not yet being processed, so a redelivered event cannot reward twice.

use domain::Clock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use store::{OutboxEvent, RewardOutcome, Store};
use tokio::sync::{watch, Notify};

/// How long a paused event waits before it is looked at again.
const PAUSE_MICROS: i64 = 5_000_000;
/// Events written back at the same time when the transactions service takes them one call
/// per event (a version without the batch route, during a rolling upgrade): each call waits
/// mostly on the network and the other service, and the service rewards a transaction once
/// whatever the order, so they need not wait for each other.
const REMOTE_IN_FLIGHT: usize = 8;

/// Points per whole currency unit, rounded down per transaction: `minor * rate / 100`.
pub fn points_for(amount_minor: i64, points_per_unit: i64) -> i64 {
    amount_minor.saturating_mul(points_per_unit) / 100
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Events claimed at once while the worker keeps up.
    pub batch: i64,
    /// The most events claimed at once while it catches up: each round whose claim comes back
    /// full doubles the next claim up to this, and a claim that is not full goes back to
    /// `batch` (see [`next_claim`]). In split mode no more than [`domain::MAX_REWARD_BATCH`].
    pub max_batch: i64,
    pub lease: Duration,
    pub idle_poll: Duration,
    /// Attempts before an event is parked for an administrator.
    pub max_attempts: i64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            batch: 32,
            max_batch: 512,
            lease: Duration::from_secs(30),
            idle_poll: Duration::from_millis(500),
            max_attempts: 8,
        }
    }
}

/// The size of the next claim, after a claim of `limit` events that brought back `claimed`.
///
/// A worker that claims a fixed number of events per round can only just keep up when the
/// charges arrive at about that number per round: after any slow round (a stalled commit, a
/// checkpoint) the backlog shrinks by the small difference between the two per round, and
/// under steady load it may never catch up. The rounds' cost is mostly fixed (two statements),
/// so claiming more while the claims come back full drains a backlog in a few rounds, and going
/// back to `batch` once a claim is not full keeps each round, and the wait of the charges in
/// it, short while the worker keeps up. Measured in docs/performance.md ("P3").
pub fn next_claim(limit: i64, claimed: usize, batch: i64, max_batch: i64) -> i64 {
    let batch = batch.max(1);
    let max_batch = max_batch.max(batch);
    if i64::try_from(claimed).unwrap_or(i64::MAX) >= limit {
        limit.saturating_mul(2).clamp(batch, max_batch)
    } else {
        batch
    }
}

/// What the worker needs of an event's transaction (read for the whole batch at once).
struct Subject {
    id: String,
    /// False once erasure has unlinked the transaction from its person.
    linked: bool,
    /// Points per whole currency unit for the transaction's category.
    rate: i64,
    amount_minor: i64,
    processed: bool,
    restricted: bool,
}

/// A claimed batch sorted out: what to write in the batch's database transaction, and the
/// events to settle on their own (parked, or put off while their person restricts
/// processing).
struct BatchPlan<'a> {
    /// `(outbox seq, transaction id, points)`.
    writes: Vec<(i64, &'a str, i64)>,
    /// Events with nothing to write, completed in the same database transaction.
    complete: Vec<i64>,
    /// The events of `writes` and `complete`.
    batched: Vec<&'a OutboxEvent>,
    others: Vec<(&'a OutboxEvent, ProcessError)>,
}

fn plan_batch<'a>(events: &'a [OutboxEvent], subjects: &'a [Subject]) -> BatchPlan<'a> {
    let mut plan = BatchPlan {
        writes: Vec::with_capacity(events.len()),
        complete: Vec::new(),
        batched: Vec::with_capacity(events.len()),
        others: Vec::new(),
    };
    let subjects: HashMap<&str, &Subject> = subjects.iter().map(|s| (s.id.as_str(), s)).collect();
    for event in events {
        if event.kind != "transaction.created" {
            let reason = format!("unknown event kind {}", event.kind);
            plan.others.push((event, ProcessError::Poison(reason)));
            continue;
        }
        let Some(subject) = subjects.get(event.subject.as_str()).copied() else {
            let reason = "the transaction does not exist".to_owned();
            plan.others.push((event, ProcessError::Poison(reason)));
            continue;
        };
        if !subject.linked || subject.processed {
            // Unlinked by erasure, or rewarded by an earlier delivery: nothing to write.
            plan.complete.push(event.seq);
        } else if subject.restricted {
            plan.others.push((event, ProcessError::Paused));
            continue;
        } else {
            let points = points_for(subject.amount_minor, subject.rate);
            plan.writes.push((event.seq, subject.id.as_str(), points));
        }
        plan.batched.push(event);
    }
    plan
}

/// Writes points through the transactions service's API (`PUT
/// /bank/v1/transactions/reward/{id}`) when that role runs as its own service.
pub struct RemoteWriter {
    pub client: web::client::ServiceClient,
    pub transactions_url: String,
}

pub struct RewardWorker {
    store: Store,
    clock: Arc<dyn Clock>,
    config: WorkerConfig,
    /// How many events the next round claims ([`next_claim`]).
    claim: AtomicI64,
    remote: Option<Arc<RemoteWriter>>,
    /// Turns true when the process is shutting down (set by [`RewardWorker::run`]).
    stop: Option<watch::Receiver<bool>>,
}

#[derive(Debug, thiserror::Error)]
enum ProcessError {
    #[error("poison event: {0}")]
    Poison(String),
    /// The person restricted processing (Art. 18): rewards pause until it is lifted.
    #[error("paused while the person's processing is restricted")]
    Paused,
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Call(#[from] web::client::CallError),
}

impl RewardWorker {
    pub fn new(store: Store, clock: Arc<dyn Clock>, config: WorkerConfig) -> Self {
        let claim = AtomicI64::new(config.batch.max(1));
        Self {
            store,
            clock,
            config,
            claim,
            remote: None,
            stop: None,
        }
    }

    /// Stops handling a claimed batch's events one by one when `stop` turns true: the
    /// events not yet started are released (see [`RewardWorker::run`]).
    pub fn with_shutdown(mut self, stop: watch::Receiver<bool>) -> Self {
        self.stop = Some(stop);
        self
    }

    fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| *s.borrow())
    }

    /// Gives claimed events back untouched (their attempt not counted), so another worker or
    /// the next start takes them at once instead of after the lease.
    async fn release(&self, events: &[OutboxEvent]) {
        for event in events {
            if let Err(err) = self.store.release_event(event.seq).await {
                // The lease runs out and the event comes back: nothing is lost.
                tracing::warn!(event = event.seq, error = %err, "could not release a claimed event");
            }
        }
        if !events.is_empty() {
            tracing::info!(events = events.len(), "claimed events released");
        }
    }

    /// Writes points through the transactions service instead of the database.
    pub fn with_remote(mut self, remote: Arc<RemoteWriter>) -> Self {
        // The transactions service takes at most this many points in one call.
        let most = i64::try_from(domain::MAX_REWARD_BATCH).unwrap_or(i64::MAX);
        self.config.max_batch = self.config.max_batch.min(most);
        self.config.batch = self.config.batch.min(most);
        self.claim = AtomicI64::new(self.config.batch.max(1));
        self.remote = Some(remote);
        self
    }

    /// Runs until `shutdown` turns true, waking early when `wakeup` is notified. On shutdown
    /// the worker claims nothing more and finishes what it is doing: a local batch is one
    /// database transaction and is completed; events handled one by one (through the
    /// transactions service) stop after the event in flight and the rest are released.
    pub async fn run(mut self, wakeup: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        self.stop = Some(shutdown.clone());
        tracing::info!("reward worker started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let handled = match self.run_once().await {
                Ok(n) => n,
                Err(err) => {
                    tracing::warn!(error = %err, "reward worker could not claim events");
                    0
                }
            };
            if handled == 0 {
                tokio::select! {
                    _ = wakeup.notified() => {}
                    _ = tokio::time::sleep(self.config.idle_poll) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        tracing::info!("reward worker stopped");
    }

    /// Claims one batch and handles it. Returns how many events were handled.
    ///
    /// Locally (not through the transactions service), a batch costs two statements on
    /// PostgreSQL instead of several per event: the claim, which also reads each event's
    /// transaction, its owner's restriction and the category's rule; then one write that
    /// rewards all the transactions and completes all the events atomically, so an event's
    /// points and its completion commit together. If the write fails, the events are handled
    /// one by one, so a bad event is retried or parked alone and the others go through.
    pub async fn run_once(&self) -> Result<usize, store::StoreError> {
        let now = self.clock.now_micros();
        let lease = i64::try_from(self.config.lease.as_micros()).unwrap_or(i64::MAX);
        // One connection for the round (claim and read, then write back): under request load,
        // waiting for a pooled connection once per statement made each round slow.
        let mut session = self.store.reward_session().await?;
        let limit = self.claim.load(Ordering::Relaxed);
        let claimed = session.claim_batch(now, lease, limit).await?;
        let next = next_claim(
            limit,
            claimed.len(),
            self.config.batch,
            self.config.max_batch,
        );
        self.claim.store(next, Ordering::Relaxed);
        if claimed.is_empty() {
            return Ok(0);
        }
        let mut events = Vec::with_capacity(claimed.len());
        let mut subjects = Vec::with_capacity(claimed.len());
        for c in claimed {
            if let Some(s) = c.subject {
                subjects.push(Subject {
                    id: s.id,
                    linked: s.user_id.is_some(),
                    rate: c.points_per_unit.unwrap_or(1),
                    amount_minor: s.amount_minor,
                    processed: s.processed,
                    restricted: s.restricted,
                });
            }
            events.push(c.event);
        }
        if let Some(remote) = &self.remote {
            drop(session);
            self.write_back_remote(remote, &events, &subjects).await?;
            return Ok(events.len());
        }
        let plan = plan_batch(&events, &subjects);
        let written = if plan.batched.is_empty() {
            None
        } else {
            Some(
                session
                    .reward_batch(&plan.writes, &plan.complete, now)
                    .await
                    .map(|o| (o.rewarded.len(), o.completed.len(), o.vanished)),
            )
        };
        // On SQLite the session is the only connection: give it back before anything else.
        drop(session);
        for (event, reason) in plan.others {
            self.settle(event, Err(reason)).await;
        }
        match written {
            None => {}
            Some(Ok((rewarded, completed, vanished))) => {
                if rewarded > 0 {
                    tracing::info!(events = completed, rewarded, "points written");
                }
                for seq in vanished {
                    if let Some(event) = plan.batched.iter().find(|e| e.seq == seq) {
                        let reason = "the transaction vanished".to_owned();
                        self.settle(event, Err(ProcessError::Poison(reason))).await;
                    }
                }
            }
            Some(Err(err)) => {
                tracing::warn!(error = %err, events = plan.batched.len(), "reward batch failed; handling its events one by one");
                // One by one, a large claim could outlast its lease (and be claimed again by
                // another worker, counting attempts it did not make): take the usual batch's
                // worth now and give the rest back at once, and claim the usual batch next.
                let batched: Vec<OutboxEvent> = plan.batched.into_iter().cloned().collect();
                let usual = usize::try_from(self.config.batch.max(1)).unwrap_or(usize::MAX);
                let (first, rest) = batched.split_at(usual.min(batched.len()));
                self.claim
                    .store(self.config.batch.max(1), Ordering::Relaxed);
                self.release(rest).await;
                self.one_by_one(first).await?;
            }
        }
        Ok(events.len())
    }

    /// Split mode: the batch's points go to the transactions service in one call
    /// (`POST /bank/v1/transactions/rewards`); then its events are completed together (points
    /// written, or nothing left to write), put off (the person restricts processing) or
    /// retried. A transactions service without that route (an older version during a rolling
    /// upgrade) gets the points one call per event instead.
    async fn write_back_remote(
        &self,
        remote: &RemoteWriter,
        events: &[OutboxEvent],
        subjects: &[Subject],
    ) -> Result<(), store::StoreError> {
        let plan = plan_batch(events, subjects);
        for (event, reason) in plan.others {
            self.settle(event, Err(reason)).await;
        }
        let mut complete = plan.complete.clone();
        let batched = |seq: i64| plan.batched.iter().find(|e| e.seq == seq).copied();
        if !plan.writes.is_empty() {
            match write_remote_batch(remote, &plan.writes).await {
                Ok(answer) => {
                    let listed = |list: &[String], id: &str| list.iter().any(|x| x == id);
                    for (seq, id, _) in &plan.writes {
                        if listed(&answer.rewarded, id) || listed(&answer.not_written, id) {
                            complete.push(*seq);
                        } else if let Some(event) = batched(*seq) {
                            let outcome = if listed(&answer.restricted, id) {
                                ProcessError::Paused
                            } else {
                                ProcessError::Call(web::client::CallError::Unavailable {
                                    service: "the transactions service".into(),
                                    reason: "the answer did not mention the transaction".into(),
                                })
                            };
                            self.settle(event, Err(outcome)).await;
                        }
                    }
                    if !answer.rewarded.is_empty() {
                        tracing::info!(rewarded = answer.rewarded.len(), "points written");
                    }
                }
                Err(web::client::CallError::Refused { status, .. })
                    if status == http::StatusCode::NOT_FOUND
                        || status == http::StatusCode::METHOD_NOT_ALLOWED =>
                {
                    let one_by_one: Vec<OutboxEvent> = plan
                        .writes
                        .iter()
                        .filter_map(|(seq, _, _)| batched(*seq).cloned())
                        .collect();
                    self.one_by_one(&one_by_one).await?;
                }
                Err(err) => {
                    tracing::warn!(error = %err, events = plan.writes.len(), "reward write-back failed; will retry");
                    for (seq, _, _) in &plan.writes {
                        if let Some(event) = batched(*seq) {
                            let retry = ProcessError::Call(web::client::CallError::Unavailable {
                                service: "the transactions service".into(),
                                reason: err.to_string(),
                            });
                            self.settle(event, Err(retry)).await;
                        }
                    }
                }
            }
        }
        if let Err(err) = self.store.complete_events(&complete).await {
            // The leases run out and the events come back: their points are written once.
            tracing::warn!(error = %err, events = complete.len(), "could not complete events");
        }
        Ok(())
    }

    /// Handles events one by one: through the transactions service when that role runs
    /// elsewhere ([`REMOTE_IN_FLIGHT`] at a time), and here, one at a time, when a batch's write
    /// failed. Once the process is stopping, events not yet started are released.
    async fn one_by_one(&self, events: &[OutboxEvent]) -> Result<(), store::StoreError> {
        use futures_util::StreamExt as _;
        let rules: HashMap<String, i64> = match self.store.reward_rules().await {
            Ok(rules) => rules.into_iter().collect(),
            Err(err) => {
                self.release(events).await;
                return Err(err);
            }
        };
        let in_flight = if self.remote.is_some() {
            REMOTE_IN_FLIGHT
        } else {
            1
        };
        let not_started = std::sync::Mutex::new(Vec::new());
        futures_util::stream::iter(events)
            .for_each_concurrent(in_flight, |event| {
                let (rules, not_started) = (&rules, &not_started);
                async move {
                    if self.stopping() {
                        if let Ok(mut list) = not_started.lock() {
                            list.push(event.clone());
                        }
                        return;
                    }
                    self.handle(event, rules).await;
                }
            })
            .await;
        let not_started = not_started.into_inner().unwrap_or_default();
        self.release(&not_started).await;
        Ok(())
    }

    async fn handle(&self, event: &OutboxEvent, rules: &HashMap<String, i64>) {
        let processed = self.process(event, rules).await;
        self.settle(event, processed).await;
    }

    /// Records what became of one event: completed, put off, parked or released for a retry.
    async fn settle(&self, event: &OutboxEvent, processed: Result<(), ProcessError>) {
        let now = self.clock.now_micros();
        let result = match processed {
            Ok(()) => self.store.complete_event(event.seq).await,
            Err(ProcessError::Paused) => {
                self.store.defer_event(event.seq, now + PAUSE_MICROS).await
            }
            Err(ProcessError::Poison(reason)) => {
                tracing::error!(event = event.seq, %reason, "poison event parked");
                self.store.park_event(event.seq, now, &reason).await
            }
            Err(err @ (ProcessError::Store(_) | ProcessError::Call(_)))
                if event.attempts >= self.config.max_attempts =>
            {
                tracing::error!(event = event.seq, error = %err, "event parked after repeated failures");
                self.store
                    .park_event(event.seq, now, "failed repeatedly")
                    .await
            }
            Err(err @ (ProcessError::Store(_) | ProcessError::Call(_))) => {
                let backoff = 200_000i64 << event.attempts.clamp(0, 10);
                tracing::warn!(event = event.seq, error = %err, "event will be retried");
                self.store
                    .retry_event(event.seq, now + backoff.min(60_000_000), "store error")
                    .await
            }
        };
        if let Err(err) = result {
            // The lease runs out and the event comes back: nothing is lost.
            tracing::warn!(event = event.seq, error = %err, "could not record the event's outcome");
        }
    }

    async fn process(
        &self,
        event: &OutboxEvent,
        rules: &HashMap<String, i64>,
    ) -> Result<(), ProcessError> {
        if event.kind != "transaction.created" {
            return Err(ProcessError::Poison(format!(
                "unknown event kind {}",
                event.kind
            )));
        }
        let Some(transaction) = self.store.transaction(&event.subject).await? else {
            return Err(ProcessError::Poison(
                "the transaction does not exist".into(),
            ));
        };
        let Some(user_id) = transaction.user_id.as_deref() else {
            return Ok(());
        };
        if transaction.processed {
            return Ok(());
        }
        let rate = rules.get(&transaction.category).copied().unwrap_or(1);
        let points = points_for(transaction.amount_minor, rate);
        if let Some(remote) = &self.remote {
            return write_remote(&self.store, remote, &transaction.id, points).await;
        }
        if self
            .store
            .bank_user(user_id)
            .await?
            .is_some_and(|u| u.restricted_at.is_some())
        {
            return Err(ProcessError::Paused);
        }
        match self
            .store
            .reward_transaction(&transaction.id, points, self.clock.now_micros())
            .await?
        {
            RewardOutcome::Rewarded => {
                tracing::info!(transaction = %transaction.id, points, "points written");
                Ok(())
            }
            RewardOutcome::AlreadyProcessed => Ok(()),
            RewardOutcome::NotFound => Err(ProcessError::Poison("the transaction vanished".into())),
        }
    }
}

/// What the transactions service answered a batch write-back.
struct BatchAnswer {
    rewarded: Vec<String>,
    not_written: Vec<String>,
    restricted: Vec<String>,
}

async fn write_remote_batch(
    remote: &RemoteWriter,
    writes: &[(i64, &str, i64)],
) -> Result<BatchAnswer, web::client::CallError> {
    const SERVICE: &str = "the transactions service";
    let url = format!(
        "{}/bank/v1/transactions/rewards",
        remote.transactions_url.trim_end_matches('/')
    );
    let rewards: Vec<serde_json::Value> = writes
        .iter()
        .map(|(_, id, points)| serde_json::json!({ "transactionId": id, "pointsEarned": points }))
        .collect();
    let body = serde_json::json!({ "rewards": rewards });
    let bytes = remote
        .client
        .call_ok(SERVICE, http::Method::POST, &url, Some(&body))
        .await?;
    let answer: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| web::client::CallError::Unavailable {
            service: SERVICE.into(),
            reason: format!("unreadable answer: {e}"),
        })?;
    let ids = |name: &str| -> Vec<String> {
        answer[name]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(BatchAnswer {
        rewarded: ids("rewarded"),
        not_written: ids("notWritten"),
        restricted: ids("restricted"),
    })
}

/// The write-back over HTTP. The transactions service answers 204 when the points are
/// written, 400 `already-processed` when an earlier delivery wrote them (so a redelivered
/// event still rewards once), and 409 `restricted` while the person restricts processing.
async fn write_remote(
    store: &Store,
    remote: &RemoteWriter,
    transaction: &str,
    points: i64,
) -> Result<(), ProcessError> {
    let url = format!(
        "{}/bank/v1/transactions/reward/{transaction}",
        remote.transactions_url.trim_end_matches('/')
    );
    let body = serde_json::json!({ "pointsEarned": points });
    let (status, answer) = remote
        .client
        .call(
            "the transactions service",
            http::Method::PUT,
            &url,
            Some(&body),
        )
        .await?;
    let problem = web::client::problem_type(&answer);
    match status.as_u16() {
        200..=299 => {
            tracing::info!(transaction = %transaction, points, "points written");
            Ok(())
        }
        400 if problem == "already-processed" => Ok(()),
        409 if problem == "restricted" => Err(ProcessError::Paused),
        // Erased between the claim and the write: nothing to reward. If the transaction is
        // still there, the URL points at the wrong service: retry (and park in the end).
        404 if store.transaction(transaction).await?.is_none() => Ok(()),
        404 => Err(ProcessError::Call(web::client::CallError::Refused {
            service: "the transactions service".into(),
            status,
            problem,
        })),
        _ => Err(ProcessError::Poison(format!(
            "the transactions service refused the points: {status} {problem}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::{next_claim, points_for};

    #[test]
    fn claims_grow_while_full_and_go_back_once_not() {
        // Full claims double, up to the most.
        assert_eq!(next_claim(32, 32, 32, 512), 64);
        assert_eq!(next_claim(64, 64, 32, 512), 128);
        assert_eq!(next_claim(256, 256, 32, 512), 512);
        assert_eq!(next_claim(512, 512, 32, 512), 512);
        assert_eq!(next_claim(64, 64, 32, 100), 100);
        // A claim that is not full (the worker caught up) goes back to the usual batch.
        assert_eq!(next_claim(512, 511, 32, 512), 32);
        assert_eq!(next_claim(32, 0, 32, 512), 32);
        // Settings that make no sense still give a claim of at least one, never past the most.
        assert_eq!(next_claim(1, 1, 0, 0), 1);
        assert_eq!(next_claim(32, 32, 32, 8), 32);
        assert_eq!(next_claim(i64::MAX, usize::MAX, 32, i64::MAX), i64::MAX);
    }

    #[test]
    fn points_are_whole_and_exact() {
        assert_eq!(points_for(1234, 2), 24);
        assert_eq!(points_for(10, 1), 0);
        assert_eq!(points_for(5_000_000, 3), 150_000);
        assert_eq!(points_for(110, 1), 1);
    }
}
