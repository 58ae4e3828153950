//! Measurements over HTTP against a running server on 127.0.0.1: the real login flow,
//! charge-to-points latency (P3), logins beyond capacity (P4), and start-up (P5).

use crate::stats::percentile_ms;
use crate::{username, PASSWORD};
use anyhow::{bail, ensure, Context, Result};
use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CLIENT_ID: &str = "simulator";

fn client(timeout: Duration) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()?)
}

/// One session: the person's id, the session (token family) id and the access token.
pub struct Session {
    pub sub: String,
    pub sid: String,
    pub token: String,
}

pub fn read_sessions(path: &Path) -> Result<Vec<Session>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(sub), Some(sid), Some(token)) => Ok(Session {
                    sub: sub.to_owned(),
                    sid: sid.to_owned(),
                    token: token.to_owned(),
                }),
                _ => bail!("a sessions line must be `sub sid token`"),
            }
        })
        .collect()
}

/// The login form for person `n`, with a fresh PKCE challenge.
fn login_form(base: &str, n: usize, challenge: &str) -> Vec<(&'static str, String)> {
    vec![
        ("response_type", "code".into()),
        ("client_id", CLIENT_ID.into()),
        ("redirect_uri", format!("{base}/callback")),
        ("scope", "openid bank".into()),
        ("state", "bench".into()),
        ("code_challenge", challenge.into()),
        ("code_challenge_method", "S256".into()),
        ("username", username(n)),
        ("password", PASSWORD.into()),
    ]
}

fn pkce_pair() -> (String, String) {
    let verifier = crypto::secrets::random_token();
    let challenge = crypto::b64::encode(&crypto::secrets::sha256(verifier.as_bytes()));
    (verifier, challenge)
}

/// Signs person `n` in (authorize with password, then the code exchange).
async fn login(http: &reqwest::Client, base: &str, n: usize) -> Result<Session> {
    let (verifier, challenge) = pkce_pair();
    let response = loop {
        let response = http
            .post(format!("{base}/identity/v1/authorize"))
            .form(&login_form(base, n, &challenge))
            .send()
            .await?;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        break response;
    };
    ensure!(
        response.status() == StatusCode::SEE_OTHER,
        "login of {}: HTTP {}",
        username(n),
        response.status()
    );
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .context("login: no Location")?;
    let url = reqwest::Url::parse(location)?;
    let code = url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .context("login: no code")?;
    let redirect = format!("{base}/callback");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect.as_str()),
        ("client_id", CLIENT_ID),
        ("code_verifier", verifier.as_str()),
    ];
    let response = http
        .post(format!("{base}/identity/v1/token"))
        .form(&form)
        .send()
        .await?;
    ensure!(
        response.status() == StatusCode::OK,
        "code exchange: HTTP {}",
        response.status()
    );
    let body: Value = response.json().await?;
    let token = body
        .get("access_token")
        .and_then(Value::as_str)
        .context("no access_token")?
        .to_owned();
    let payload = token.split('.').nth(1).context("not a JWS")?;
    let claims: Value = serde_json::from_slice(&crypto::b64::decode(payload)?)?;
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("no {name} claim"))
    };
    Ok(Session {
        sub: text("sub")?,
        sid: text("sid")?,
        token,
    })
}

pub async fn login_many(base: &str, first: usize, count: usize, out: &Path) -> Result<()> {
    let started = Instant::now();
    let http = client(Duration::from_secs(30))?;
    let base = base.trim_end_matches('/').to_owned();
    let mut tasks = tokio::task::JoinSet::new();
    let mut sessions = Vec::with_capacity(count);
    for n in first..first + count {
        let (http, base) = (http.clone(), base.clone());
        tasks.spawn(async move { login(&http, &base, n).await.map(|s| (n, s)) });
        // At most 4 at a time; every finished login is kept (the first version dropped the
        // ones finished here, so the runs before 2026-12-04 19:00 spread their load over 3
        // people instead of 64: docs/performance.md).
        while tasks.len() >= 4 {
            if let Some(done) = tasks.join_next().await {
                sessions.push(done??);
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        sessions.push(done??);
    }
    ensure!(
        sessions.len() == count,
        "{} of {count} logins came back",
        sessions.len()
    );
    sessions.sort_by_key(|(n, _)| *n);
    let text: String = sessions
        .iter()
        .map(|(_, s)| format!("{} {} {}\n", s.sub, s.sid, s.token))
        .collect();
    std::fs::write(out, text)?;
    eprintln!(
        "login: {count} sessions in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn earned(http: &reqwest::Client, base: &str, token: &str) -> Result<i64> {
    let response = http
        .get(format!("{base}/bank/v1/points"))
        .bearer_auth(token)
        .send()
        .await?;
    ensure!(
        response.status() == StatusCode::OK,
        "points: HTTP {}",
        response.status()
    );
    let body: Value = response.json().await?;
    body.get("earned")
        .and_then(Value::as_i64)
        .context("points: no earned")
}

/// P3: charge 10.00 in `other` (10 points), note when the 204 arrives, then poll the points
/// balance until the 10 points are there. Repeats for `seconds`.
pub async fn reward_latency(base: &str, token_file: &Path, seconds: u64) -> Result<()> {
    let session = read_sessions(token_file)?
        .into_iter()
        .next()
        .context("no session")?;
    let http = client(Duration::from_secs(30))?;
    let base = base.trim_end_matches('/');
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut latencies = Vec::new();
    let mut timeouts = 0u64;
    let mut refused = 0u64;
    while Instant::now() < deadline {
        let before = earned(&http, base, &session.token).await?;
        let response = http
            .post(format!("{base}/bank/v1/transactions"))
            .bearer_auth(&session.token)
            .json(&json!({"transactionName": "Probe", "category": "other", "amount": "10.00"}))
            .send()
            .await?;
        if !response.status().is_success() {
            refused += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let acknowledged = Instant::now();
        let limit = acknowledged + Duration::from_secs(60);
        loop {
            if earned(&http, base, &session.token).await? >= before + 10 {
                let us = u64::try_from(acknowledged.elapsed().as_micros()).unwrap_or(u64::MAX);
                latencies.push(us);
                break;
            }
            if Instant::now() > limit {
                timeouts += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    latencies.sort_unstable();
    println!(
        "{}",
        json!({
            "kind": "reward_latency",
            "samples": latencies.len(),
            "timeouts": timeouts,
            "refused": refused,
            "p50_ms": percentile_ms(&latencies, 50.0),
            "p99_ms": percentile_ms(&latencies, 99.0),
            "max_ms": percentile_ms(&latencies, 100.0),
        })
    );
    Ok(())
}

#[derive(Default)]
struct LoginTally {
    admitted_us: Vec<u64>,
    statuses: std::collections::BTreeMap<u16, u64>,
    too_many_without_retry_after: u64,
    transport_errors: u64,
    /// Of the transport errors: no answer within the client's 60 s.
    timeouts: u64,
    /// Of the transport errors: the connection was refused or closed before an answer.
    connection_errors: u64,
}

async fn one_login(
    http: &reqwest::Client,
    base: &str,
    n: usize,
    tally: &tokio::sync::Mutex<LoginTally>,
) {
    let (_, challenge) = pkce_pair();
    let started = Instant::now();
    let result = http
        .post(format!("{base}/identity/v1/authorize"))
        .form(&login_form(base, n, &challenge))
        .send()
        .await;
    let elapsed = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let mut tally = tally.lock().await;
    match result {
        Ok(response) => {
            let status = response.status();
            *tally.statuses.entry(status.as_u16()).or_insert(0) += 1;
            if status == StatusCode::SEE_OTHER {
                tally.admitted_us.push(elapsed);
            }
            if status == StatusCode::TOO_MANY_REQUESTS
                && response.headers().get(header::RETRY_AFTER).is_none()
            {
                tally.too_many_without_retry_after += 1;
            }
        }
        Err(err) => {
            tally.transport_errors += 1;
            if err.is_timeout() {
                tally.timeouts += 1;
            } else {
                tally.connection_errors += 1;
            }
        }
    }
}

/// P4: first the capacity (admitted logins per second with a few clients in a closed loop),
/// then logins arriving at `factor` times that rate (open loop) for `seconds`.
pub async fn logins(
    base: &str,
    first: usize,
    people: usize,
    capacity_seconds: u64,
    seconds: u64,
    factor: f64,
) -> Result<()> {
    let base: Arc<str> = base.trim_end_matches('/').into();
    let http = client(Duration::from_secs(60))?;
    let people = people.max(1);
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let next_person = {
        let counter = Arc::clone(&counter);
        move || first + counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % people
    };

    // Capacity: 4 clients back to back.
    let tally = Arc::new(tokio::sync::Mutex::new(LoginTally::default()));
    let deadline = Instant::now() + Duration::from_secs(capacity_seconds);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (http, base, tally, next) = (
            http.clone(),
            Arc::clone(&base),
            Arc::clone(&tally),
            next_person.clone(),
        );
        tasks.spawn(async move {
            while Instant::now() < deadline {
                one_login(&http, &base, next(), &tally).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let admitted = tally.lock().await.admitted_us.len();
    let capacity = admitted as f64 / started.elapsed().as_secs_f64();
    ensure!(
        capacity > 0.0,
        "no login succeeded while measuring capacity"
    );

    // Overload: open loop at factor × capacity.
    let rate = capacity * factor;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let tally = Arc::new(tokio::sync::Mutex::new(LoginTally::default()));
    let started = Instant::now();
    let end = started + Duration::from_secs(seconds);
    let mut sent = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_at = started;
    while next_at < end {
        tokio::time::sleep_until(next_at.into()).await;
        let (http, base, tally, n) = (
            http.clone(),
            Arc::clone(&base),
            Arc::clone(&tally),
            next_person(),
        );
        tasks.spawn(async move { one_login(&http, &base, n, &tally).await });
        sent += 1;
        next_at += interval;
    }
    while tasks.join_next().await.is_some() {}
    let mut tally = tally.lock().await;
    tally.admitted_us.sort_unstable();
    let server_errors: u64 = tally
        .statuses
        .iter()
        .filter(|(s, _)| **s >= 500)
        .map(|(_, n)| *n)
        .sum();
    let statuses: serde_json::Map<String, Value> = tally
        .statuses
        .iter()
        .map(|(s, n)| (s.to_string(), json!(n)))
        .collect();
    println!(
        "{}",
        json!({
            "kind": "logins",
            "capacity_per_s": capacity,
            "offered_per_s": rate,
            "sent": sent,
            "seconds": started.elapsed().as_secs_f64(),
            "statuses": statuses,
            "server_errors": server_errors,
            "too_many_without_retry_after": tally.too_many_without_retry_after,
            "transport_errors": tally.transport_errors,
            "timeouts": tally.timeouts,
            "connection_errors": tally.connection_errors,
            "admitted": tally.admitted_us.len(),
            "admitted_p50_ms": percentile_ms(&tally.admitted_us, 50.0),
            "admitted_p99_ms": percentile_ms(&tally.admitted_us, 99.0),
        })
    );
    Ok(())
}

/// VmRSS and VmHWM of a process, in KiB.
pub fn rss_kib(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// P5: starts `binary args`, polls /readyz every 2 ms until 200, waits `idle` seconds with no
/// traffic, reads the RSS, then stops the process with SIGTERM.
pub async fn startup(
    binary: &Path,
    addr: &str,
    args: &[String],
    idle: u64,
    log: &Path,
    label: &str,
) -> Result<()> {
    let http = client(Duration::from_secs(1))?;
    let url = format!("http://{addr}/readyz");
    let started = Instant::now();
    let mut child = std::process::Command::new(binary)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let pid = child.id();
    let ready = loop {
        if let Ok(response) = http.get(&url).send().await {
            if response.status() == StatusCode::OK {
                break Some(started.elapsed());
            }
        }
        if started.elapsed() > Duration::from_secs(30) || child.try_wait()?.is_some() {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    tokio::time::sleep(Duration::from_secs(idle)).await;
    let (rss, hwm) = rss_kib(pid).unwrap_or((0, 0));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let stop = Instant::now();
    while child.try_wait()?.is_none() {
        if stop.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{}",
        json!({
            "kind": "startup",
            "label": label,
            "ready_ms": ready.map(|d| d.as_secs_f64() * 1000.0),
            "idle_rss_kib": rss,
            "hwm_kib": hwm,
        })
    );
    Ok(())
}
