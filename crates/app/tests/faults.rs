//! Fault tests (issue 7): the real binary on PostgreSQL, killed with SIGKILL under load, and
//! PostgreSQL itself stopped and started under load. Each test has its own database and data
//! directory and is bounded in time (a SIGKILLed reward worker leaves its claimed events
//! leased for 30 s, so the crash tests wait up to about 50 s for the outbox to drain).
//!
//! - every charge acknowledged with a 2xx is stored, once, and rewarded exactly once;
//! - a request that was in flight when the server died can be retried with its
//!   Idempotency-Key and is then stored exactly once;
//! - while PostgreSQL is down the server is not ready and answers 503 quickly, and it recovers
//!   by itself (this one restarts the shared PostgreSQL cluster, so it is ignored by default
//!   and runs alone in its own CI step, behind EXAMPLEBANK_TEST_FAULTS=1 or CI=true).
//!
//! Without CI=true the tests print SKIPPED when PostgreSQL is unreachable, like black_box.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::{Connection, Row};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::pg::{flag, http, new_person, with_db, TestDb};

const BINARY: &str = env!("CARGO_BIN_EXE_examplebank");
/// The issuer of tokens, fixed so that tokens stay valid when the server comes back on
/// another port after a crash (the issuer is the public base URL).
const PUBLIC_BASE: &str = "http://examplebank.test";
/// The reward worker's lease (rewards::WorkerConfig::default) plus time to process.
const DRAIN_LIMIT: Duration = Duration::from_secs(50);

/// A stored charge as the check reads it: (category, processed, points earned, ledger entries).
type StoredCharge = (String, i64, Option<i64>, i64);

/// The real binary, serving on a free port of 127.0.0.1.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Server {
    fn start(data_dir: &Path, database_url: &str, roles: &str, label: &str) -> Server {
        let log = data_dir.join(format!("server-{label}.log"));
        let mut command = Command::new(BINARY);
        command
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--roles",
                roles,
                "--data-dir",
            ])
            .arg(data_dir);
        // The server refuses EXAMPLEBANK_* names it does not know (the tests' own included).
        for (name, _) in std::env::vars() {
            if name.starts_with("EXAMPLEBANK_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .env("EXAMPLEBANK_DATABASE_URL", database_url)
            .env("EXAMPLEBANK_PUBLIC_BASE_URL", PUBLIC_BASE)
            .env("EXAMPLEBANK_MASTER_KEY", format!("m1:{}", "A".repeat(43)))
            .env(
                "EXAMPLEBANK_REWARDS_CLIENT_SECRET",
                "fault-tests-rewards-secret",
            )
            .env("EXAMPLEBANK_RATE_LIMIT_PER_ADDRESS_PER_MINUTE", "1000000")
            .env("EXAMPLEBANK_RATE_LIMIT_PER_PERSON_PER_MINUTE", "1000000")
            .env("EXAMPLEBANK_LOGIN_FAILURES_PER_ADDRESS", "1000000")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start examplebank");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| {
                panic!(
                    "no URL in {line:?}; log: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })
            .to_owned();
        Server { child, url, log }
    }

    /// SIGKILL: no shutdown, no flushing, no releasing of leases.
    fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM: the graceful stop.
    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The exit status, once the process has ended within `limit`.
    fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One charge a client sent: unique amount per person, so each can be found in the table.
#[derive(Debug, Clone)]
struct Charge {
    key: String,
    cents: i64,
    category: &'static str,
}

impl Charge {
    fn new(client: usize, i: usize) -> Self {
        let category = if i.is_multiple_of(2) {
            "groceries"
        } else {
            "other"
        };
        Self {
            key: format!("fault-{client}-{i}"),
            cents: 100 + i64::try_from(i).unwrap() * 7,
            category,
        }
    }

    fn points(&self) -> i64 {
        let rate = if self.category == "groceries" { 2 } else { 1 };
        self.cents * rate / 100
    }

    fn body(&self) -> Value {
        json!({
            "transactionName": format!("Fault charge {}", self.key),
            "category": self.category,
            "amount": format!("{}.{:02}", self.cents / 100, self.cents % 100),
        })
    }
}

#[derive(Debug, Default)]
struct ClientLog {
    user_id: String,
    token: String,
    /// Answered with a 2xx.
    acknowledged: Vec<Charge>,
    /// Sent, but no answer came (the server died): the outcome is unknown.
    in_doubt: Vec<Charge>,
}

async fn post_charge(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    charge: &Charge,
) -> reqwest::Result<StatusCode> {
    http.post(format!("{base}/bank/v1/transactions"))
        .bearer_auth(token)
        .header("Idempotency-Key", &charge.key)
        .json(&charge.body())
        .send()
        .await
        .map(|r| r.status())
}

/// Charges back to back until the server stops answering, `stop` is set or `limit` charges
/// were sent.
async fn charge_until_failure(
    http: reqwest::Client,
    base: String,
    client: usize,
    mut log: ClientLog,
    stop: Arc<AtomicBool>,
    limit: usize,
) -> ClientLog {
    for i in 0..limit {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let charge = Charge::new(client, i);
        match post_charge(&http, &base, &log.token, &charge).await {
            Ok(status) if status.is_success() => log.acknowledged.push(charge),
            Ok(status) => panic!("charge {} answered {status} before the crash", charge.key),
            Err(_) => {
                log.in_doubt.push(charge);
                break;
            }
        }
    }
    log
}

/// After the restart: every charge in doubt is sent again with its key; it must succeed.
async fn retry_in_doubt(http: &reqwest::Client, base: &str, logs: &mut [ClientLog]) {
    for log in logs.iter_mut() {
        for charge in std::mem::take(&mut log.in_doubt) {
            let status = post_charge(http, base, &log.token, &charge).await.unwrap();
            assert!(
                status.is_success(),
                "retrying {} after the restart answered {status}",
                charge.key
            );
            log.acknowledged.push(charge);
        }
    }
}

async fn scalar(conn: &mut sqlx::postgres::PgConnection, sql: &str) -> i64 {
    sqlx::query(sql)
        .fetch_one(&mut *conn)
        .await
        .unwrap()
        .get::<i64, _>(0)
}

/// Waits until the reward worker has emptied the outbox (nothing pending, nothing parked).
async fn wait_drained(conn: &mut sqlx::postgres::PgConnection, server: &Server) {
    let started = Instant::now();
    loop {
        let left = scalar(conn, "SELECT COUNT(*) FROM outbox").await;
        if left == 0 {
            return;
        }
        assert!(
            started.elapsed() < DRAIN_LIMIT,
            "{left} outbox event(s) still there after {DRAIN_LIMIT:?}; parked: {}; server log:\n{}",
            scalar(
                conn,
                "SELECT COUNT(*) FROM outbox WHERE parked_at IS NOT NULL"
            )
            .await,
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every acknowledged charge is stored exactly once and rewarded exactly once; nothing is
/// rewarded that is not stored; the balances are the sums of the points.
async fn check_exactly_once(
    conn: &mut sqlx::postgres::PgConnection,
    http: &reqwest::Client,
    base: &str,
    logs: &[ClientLog],
) {
    let twice = scalar(
        conn,
        "SELECT COUNT(*) FROM (SELECT reference FROM points_ledger WHERE kind = 'earned' \
         GROUP BY reference HAVING COUNT(*) > 1) AS d",
    )
    .await;
    assert_eq!(twice, 0, "some transactions were rewarded more than once");
    let orphans = scalar(
        conn,
        "SELECT COUNT(*) FROM points_ledger l WHERE NOT EXISTS \
         (SELECT 1 FROM transactions t WHERE t.id = l.reference)",
    )
    .await;
    assert_eq!(orphans, 0, "points for transactions that do not exist");
    for log in logs {
        let rows = sqlx::query(
            "SELECT t.amount_minor, t.category, t.processed, t.points_earned, \
             (SELECT COUNT(*) FROM points_ledger l WHERE l.reference = t.id AND l.kind = 'earned') AS ledger \
             FROM transactions t WHERE t.user_id = $1",
        )
        .bind(&log.user_id)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        let mut stored: HashMap<i64, Vec<StoredCharge>> = HashMap::new();
        for row in &rows {
            stored
                .entry(row.get::<i64, _>("amount_minor"))
                .or_default()
                .push((
                    row.get("category"),
                    row.get("processed"),
                    row.get("points_earned"),
                    row.get("ledger"),
                ));
        }
        let mut expected_points = 0;
        for (cents, copies) in &stored {
            assert_eq!(
                copies.len(),
                1,
                "the charge of {cents} cents is stored {} times",
                copies.len()
            );
            let (category, processed, points, ledger) = &copies[0];
            let rate = if category == "groceries" { 2 } else { 1 };
            let want = cents * rate / 100;
            assert_eq!(
                *processed, 1,
                "the charge of {cents} cents was not rewarded"
            );
            assert_eq!(*points, Some(want), "points of the charge of {cents} cents");
            assert_eq!(*ledger, 1, "ledger entries of the charge of {cents} cents");
            expected_points += want;
        }
        for charge in &log.acknowledged {
            assert!(
                stored.contains_key(&charge.cents),
                "acknowledged charge {} ({} cents) is missing",
                charge.key,
                charge.cents
            );
        }
        let acknowledged_points: i64 = log.acknowledged.iter().map(Charge::points).sum();
        assert!(expected_points >= acknowledged_points);
        let response = http
            .get(format!("{base}/bank/v1/points"))
            .bearer_auth(&log.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let points: Value = response.json().await.unwrap();
        assert_eq!(
            points["earned"].as_i64(),
            Some(expected_points),
            "points earned over the API for {} stored charges",
            rows.len()
        );
    }
}

/// Takes a lock on the points ledger (charges never touch it) in an open transaction: the
/// reward worker's write-back waits for it, with its events claimed and nothing committed.
async fn lock_points_ledger(db: &TestDb) -> sqlx::postgres::PgConnection {
    let mut lock = db.connect().await;
    sqlx::query("BEGIN").execute(&mut lock).await.unwrap();
    sqlx::query("LOCK TABLE points_ledger IN EXCLUSIVE MODE")
        .execute(&mut lock)
        .await
        .unwrap();
    lock
}

/// True while some session of the test database waits for a lock on `table`. Read from
/// `pg_locks`, not from the statement's text in `pg_stat_activity`: that text is cut at 1,024
/// bytes, and a write-back of a large batch names the ledger further in than that.
async fn waits_on(conn: &mut sqlx::postgres::PgConnection, table: &str) -> bool {
    let sql = format!(
        "SELECT COUNT(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
         JOIN pg_database d ON d.oid = l.database \
         WHERE NOT l.granted AND c.relname = '{table}' AND d.datname = current_database()"
    );
    scalar(conn, &sql).await > 0
}

/// True while a reward write-back waits on the ledger's lock and events are claimed.
async fn reward_write_is_held(conn: &mut sqlx::postgres::PgConnection) -> bool {
    waits_on(conn, "points_ledger").await
        && scalar(
            conn,
            "SELECT COUNT(*) FROM outbox WHERE claimed_until IS NOT NULL",
        )
        .await
            > 0
}

/// Scenario shared by the two crash tests: `clients` people charge concurrently, the server is
/// SIGKILLed when `kill_when` says so, restarted on the same database and data directory, the
/// charges in doubt are retried with their keys, and once the worker has caught up every
/// charge must be stored and rewarded exactly once.
async fn crash_under_load(
    db: Arc<TestDb>,
    clients: usize,
    charges_per_client: usize,
    kill_when: KillWhen,
) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &db.url, "all", "first");
    let http = http();
    let mut logs = Vec::new();
    for client in 0..clients {
        let (user_id, token) =
            new_person(&http, &server.url, PUBLIC_BASE, &format!("c{client}")).await;
        logs.push(ClientLog {
            user_id,
            token,
            ..ClientLog::default()
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (client, log) in logs.into_iter().enumerate() {
        tasks.push(tokio::spawn(charge_until_failure(
            http.clone(),
            server.url.clone(),
            client,
            log,
            Arc::clone(&stop),
            charges_per_client,
        )));
    }
    let mut conn = db.connect().await;
    // Mid-event: the reward worker's write-back is held on a lock the test takes on the
    // points ledger (charges never touch it), so the kill lands while events are claimed and
    // their points are being written but not committed.
    let mut ledger_lock = match kill_when {
        KillWhen::WorkerMidEvent => Some(lock_points_ledger(&db).await),
        KillWhen::AfterAcknowledged(_) => None,
    };
    let started = Instant::now();
    loop {
        let ready = match kill_when {
            KillWhen::AfterAcknowledged(n) => {
                scalar(&mut conn, "SELECT COUNT(*) FROM transactions").await >= n
            }
            KillWhen::WorkerMidEvent => {
                reward_write_is_held(&mut conn).await
                    && scalar(&mut conn, "SELECT COUNT(*) FROM transactions").await >= 100
            }
        };
        if ready {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the load never reached the point to crash at; server log:\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before_url = server.url.clone();
    server.kill9();
    if let Some(mut lock) = ledger_lock.take() {
        // The process is gone, but PostgreSQL would still finish the statement it was
        // waiting on. End the dead server's sessions first (as a crash that takes the
        // database connection with it does), then give the lock back: what it was writing
        // never commits.
        let holder = scalar(&mut lock, "SELECT CAST(pg_backend_pid() AS BIGINT)").await;
        let others = format!(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND pid <> {holder}"
        );
        sqlx::query(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND pid <> {holder}"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
        let ended = Instant::now();
        while scalar(&mut conn, &others).await > 0 {
            assert!(
                ended.elapsed() < Duration::from_secs(10),
                "the dead server's sessions did not end"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
        let _ = lock.close().await;
    }
    let mut logs = Vec::new();
    for task in tasks {
        logs.push(task.await.unwrap());
    }
    let acknowledged: usize = logs.iter().map(|l| l.acknowledged.len()).sum();
    let in_doubt: usize = logs.iter().map(|l| l.in_doubt.len()).sum();
    let claimed = scalar(
        &mut conn,
        "SELECT COUNT(*) FROM outbox WHERE claimed_until IS NOT NULL",
    )
    .await;
    let pending = scalar(&mut conn, "SELECT COUNT(*) FROM outbox").await;
    let rewarded_not_completed = scalar(
        &mut conn,
        "SELECT COUNT(*) FROM outbox o JOIN transactions t ON t.id = o.subject \
         WHERE t.processed = 1",
    )
    .await;
    eprintln!(
        "killed {before_url} after {acknowledged} acknowledged charges ({in_doubt} in doubt); \
         outbox then: {pending} pending, {claimed} claimed, {rewarded_not_completed} rewarded but not completed"
    );
    assert!(
        acknowledged > 0,
        "no charge was acknowledged before the crash"
    );
    if matches!(kill_when, KillWhen::WorkerMidEvent) {
        assert!(
            claimed > 0 && rewarded_not_completed == 0,
            "the kill must land with events claimed and their points not yet written"
        );
    }

    let server = Server::start(dir.path(), &db.url, "all", "second");
    retry_in_doubt(&http, &server.url, &mut logs).await;
    wait_drained(&mut conn, &server).await;
    check_exactly_once(&mut conn, &http, &server.url, &logs).await;
    let stored = scalar(&mut conn, "SELECT COUNT(*) FROM transactions").await;
    eprintln!(
        "after the restart: {stored} charges stored, each rewarded once; outbox drained in time"
    );
    drop(server);
    let _ = conn.close().await;
}

#[derive(Clone, Copy)]
enum KillWhen {
    /// Once this many charges are in the table.
    AfterAcknowledged(i64),
    /// While the reward worker is in the middle of an event: claimed, its points being
    /// written, not committed.
    WorkerMidEvent,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_write_load_loses_no_acknowledged_charge_and_rewards_each_once() {
    with_db("kill", |db| async move {
        crash_under_load(db, 4, 10_000, KillWhen::AfterAcknowledged(150)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_event_processes_each_event_exactly_once() {
    with_db("worker", |db| async move {
        crash_under_load(db, 8, 250, KillWhen::WorkerMidEvent).await;
    })
    .await;
}

/// SIGTERM while the reward worker writes a batch back and a request waits on the database:
/// the listener stops, the request in flight gets its answer and its write is stored, the
/// worker claims nothing more, finishes the batch it holds, and the process exits cleanly with no
/// event left claimed (nothing waits for a lease to run out); the next start rewards the
/// rest, each charge once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_the_batch_in_flight_and_leaves_nothing_claimed() {
    with_db("sigterm", |db| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Server::start(dir.path(), &db.url, "all", "first");
        let http = http();
        let (user_id, token) = new_person(&http, &server.url, PUBLIC_BASE, "t0").await;
        let mut conn = db.connect().await;
        let mut lock = lock_points_ledger(&db).await;
        let mut log = ClientLog {
            user_id,
            token,
            ..ClientLog::default()
        };
        for i in 0..40 {
            let charge = Charge::new(0, i);
            let status = post_charge(&http, &server.url, &log.token, &charge)
                .await
                .unwrap();
            assert!(status.is_success(), "charge {i}: {status}");
            log.acknowledged.push(charge);
        }
        let started = Instant::now();
        while !reward_write_is_held(&mut conn).await {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the reward worker never started writing; log:\n{}",
                server.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let claimed = "SELECT COUNT(*) FROM outbox WHERE claimed_until IS NOT NULL";
        let held = scalar(&mut conn, claimed).await;
        // And an HTTP request in flight: a consent change whose write waits on a lock.
        let analytics_events = format!(
            "SELECT COUNT(*) FROM consent_events WHERE purpose = 'analytics' AND user_id = '{}'",
            log.user_id
        );
        let analytics_before = scalar(&mut conn, &analytics_events).await;
        sqlx::query("LOCK TABLE consent_events IN EXCLUSIVE MODE")
            .execute(&mut lock)
            .await
            .unwrap();
        let in_flight = tokio::spawn(
            http.put(format!(
                "{}/bank/v1/users/self/consents/analytics",
                server.url
            ))
            .bearer_auth(&log.token)
            .json(&json!({ "granted": true }))
            .send(),
        );
        let started = Instant::now();
        while !waits_on(&mut conn, "consent_events").await {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the consent change never reached the database; log:\n{}",
                server.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        server.terminate();
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "the server exited with a batch of {held} events still being written"
        );
        let refused = http.get(format!("{}/healthz", server.url)).send().await;
        assert!(refused.is_err(), "the listener still accepts after SIGTERM");
        sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
        let answer = in_flight
            .await
            .unwrap()
            .expect("the request in flight at SIGTERM got no answer");
        assert_eq!(
            answer.status(),
            StatusCode::OK,
            "the request in flight at SIGTERM"
        );
        assert_eq!(
            scalar(&mut conn, &analytics_events).await,
            analytics_before + 1,
            "the consent change acknowledged during the drain is stored"
        );
        let status = server
            .wait_exit(Duration::from_secs(15))
            .expect("the server did not exit after SIGTERM");
        assert!(status.success(), "exit status {status}");
        assert_eq!(
            scalar(&mut conn, claimed).await,
            0,
            "events left claimed after a graceful stop"
        );
        let processed = scalar(
            &mut conn,
            "SELECT COUNT(*) FROM transactions WHERE processed = 1",
        )
        .await;
        assert!(
            processed >= held,
            "the batch in flight ({held} events) was not finished: {processed} rewarded"
        );
        let text = std::fs::read_to_string(&server.log).unwrap();
        assert!(text.contains("reward worker stopped"), "{text}");
        drop(server);

        let server = Server::start(dir.path(), &db.url, "all", "second");
        wait_drained(&mut conn, &server).await;
        check_exactly_once(&mut conn, &http, &server.url, &[log]).await;
        drop(server);
        let _ = conn.close().await;
    })
    .await;
}

/// Keeps fault tests that restart PostgreSQL from overlapping (a file in /tmp created
/// exclusively; a lock left by a dead process is taken over).
struct ClusterLock(PathBuf);

impl ClusterLock {
    fn acquire() -> ClusterLock {
        let path = std::env::temp_dir().join("examplebank-fault-tests-postgres.lock");
        let started = Instant::now();
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    use std::io::Write;
                    let _ = write!(file, "{}", std::process::id());
                    return ClusterLock(path);
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                    let owner = std::fs::read_to_string(&path).unwrap_or_default();
                    let alive = owner
                        .trim()
                        .parse::<u32>()
                        .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
                    if !alive {
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                    assert!(
                        started.elapsed() < Duration::from_secs(120),
                        "another fault test holds {} for too long",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(err) => panic!("cannot create {}: {err}", path.display()),
            }
        }
    }
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The local cluster serving port 5432, as `pg_ctlcluster` names it: (version, name).
fn local_cluster() -> (String, String) {
    let output = Command::new("pg_lsclusters")
        .arg("-h")
        .output()
        .expect("pg_lsclusters (Debian's postgresql-common) is needed to restart PostgreSQL");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(2) == Some(&"5432"))
        .map(|f| (f[0].to_owned(), f[1].to_owned()))
        .expect("no PostgreSQL cluster on port 5432 in pg_lsclusters")
}

fn pg_ctlcluster(action: &str) {
    let (version, name) = local_cluster();
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, &name, action])
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success(), "pg_ctlcluster {action} failed");
}

/// Starts the cluster again if a test stopped it and then failed.
struct ClusterGuard {
    stopped: bool,
}

impl ClusterGuard {
    fn stop(&mut self) {
        self.stopped = true;
        pg_ctlcluster("stop");
    }

    fn start(&mut self) {
        pg_ctlcluster("start");
        self.stopped = false;
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        if self.stopped {
            let (version, name) = local_cluster();
            let _ = Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", &version, &name, "start"])
                .status();
        }
    }
}

/// The server's warnings and errors (the causes of 5xx answers are logged, never sent).
fn server_errors(server: &Server) -> String {
    let text = std::fs::read_to_string(&server.log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
        .collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

/// What one request answered, and how long it took.
#[derive(Debug, Clone)]
struct Probe {
    what: &'static str,
    status: Option<u16>,
    millis: u128,
}

async fn probe(what: &'static str, request: reqwest::RequestBuilder) -> Probe {
    let started = Instant::now();
    let status = request.send().await.ok().map(|r| r.status().as_u16());
    Probe {
        what,
        status,
        millis: started.elapsed().as_millis(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "restarts PostgreSQL: run alone (see .ci/run)"]
async fn postgres_down_means_not_ready_and_quick_503s_then_recovery_by_itself() {
    if !(flag("EXAMPLEBANK_TEST_FAULTS") || flag("CI")) {
        eprintln!(
            "SKIPPED: restarts PostgreSQL; set EXAMPLEBANK_TEST_FAULTS=1 (CI=true runs it) and run it alone"
        );
        return;
    }
    let _lock = ClusterLock::acquire();
    with_db("pgdown", |db| async move {
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path(), &db.url, "all", "pgdown");
        let http = http();
        let (_, token) = new_person(&http, &server.url, PUBLIC_BASE, "pgdown").await;
        let base = server.url.clone();
        let charge = |i: usize| {
            http.post(format!("{base}/bank/v1/transactions"))
                .bearer_auth(&token)
                .json(&Charge::new(0, i).body())
        };
        // Load before the outage.
        for i in 0..20 {
            let p = probe("charge", charge(i)).await;
            assert_eq!(p.status, Some(204), "before the outage: {p:?}");
        }
        let mut guard = ClusterGuard { stopped: false };
        guard.stop();
        // While PostgreSQL is down: readiness and API requests, several times each.
        let down_since = Instant::now();
        let mut during = Vec::new();
        let mut i = 100;
        while down_since.elapsed() < Duration::from_secs(8) {
            during.push(probe("readyz", http.get(format!("{base}/readyz"))).await);
            during.push(probe("charge", charge(i)).await);
            during.push(
                probe(
                    "list",
                    http.get(format!("{base}/bank/v1/transactions"))
                        .bearer_auth(&token),
                )
                .await,
            );
            i += 1;
        }
        guard.start();
        let back_since = Instant::now();
        // Recovery by itself: ready again and charges accepted, with no restart of the server.
        let mut recovered = None;
        while back_since.elapsed() < Duration::from_secs(30) {
            let ready = probe("readyz", http.get(format!("{base}/readyz"))).await;
            if ready.status == Some(200) {
                let p = probe("charge", charge(10_000)).await;
                if p.status == Some(204) {
                    recovered = Some(back_since.elapsed());
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut summary: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in &during {
            summary.entry(p.what.to_owned()).or_default().push(format!(
                "{}:{}ms",
                p.status.map_or("none".to_owned(), |s| s.to_string()),
                p.millis
            ));
        }
        eprintln!("while PostgreSQL was down: {summary:?}; recovered after {recovered:?}");
        let slow: Vec<&Probe> = during.iter().filter(|p| p.millis > 2_500).collect();
        let not_503: Vec<&Probe> = during.iter().filter(|p| p.status != Some(503)).collect();
        assert!(
            recovered.is_some(),
            "the server did not recover within 30 s of PostgreSQL coming back; log:\n{}",
            server.log_tail()
        );
        assert!(
            not_503.is_empty(),
            "while PostgreSQL was down, answers other than 503: {not_503:?}; server log:\n{}",
            server_errors(&server)
        );
        assert!(
            slow.is_empty(),
            "while PostgreSQL was down, answers slower than 2.5 s: {slow:?}; server log:\n{}",
            server_errors(&server)
        );
        drop(server);
    })
    .await;
}
