//! Denial-of-service and transport protections, against the real binary over real sockets:
//! slow clients cannot starve others (slowloris), per-address rate limits answer 429 with
//! Retry-After and RateLimit headers (and X-Forwarded-For is believed only from a trusted
//! proxy), and TLS with a self-signed certificate sends HSTS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::{Server, BINARY};

/// A server on a fresh data directory that lives as long as the server.
struct Running {
    _server: Server,
    addr: String,
    dir: tempfile::TempDir,
}

fn start(args: &[&str], env: &[(&str, &str)]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path(), args, env);
    let addr = server.addr.clone();
    Running {
        _server: server,
        addr,
        dir,
    }
}

/// One HTTP/1.1 request on a new connection; returns the whole response text.
fn http(addr: &str, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

fn get(addr: &str, path: &str, extra: &str) -> String {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}\r\n"),
    )
}

#[test]
fn slowloris_clients_do_not_stop_the_server_serving_others() {
    let server = start(&[], &[("EXAMPLEBANK_HEADER_READ_TIMEOUT_SECONDS", "2")]);
    // Fifty clients that send half a request line and then trickle.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = TcpStream::connect(&server.addr).unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        slow.push(stream);
    }
    let started = Instant::now();
    let response = get(&server.addr, "/healthz", "");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "others are served at once"
    );
    // After the header-read timeout the slow connections are closed by the server.
    std::thread::sleep(Duration::from_millis(2500));
    let mut closed = 0;
    for mut stream in slow {
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let mut buf = Vec::new();
        let _ = stream.write_all(b"a");
        if stream.read_to_end(&mut buf).is_ok() {
            closed += 1;
        }
    }
    assert_eq!(closed, 50, "every slow connection was closed by the server");
}

#[test]
fn per_address_rate_limit_answers_429_with_retry_after() {
    let server = start(
        &[],
        &[("EXAMPLEBANK_RATE_LIMIT_PER_ADDRESS_PER_MINUTE", "5")],
    );
    for _ in 0..5 {
        assert!(get(&server.addr, "/healthz", "").starts_with("HTTP/1.1 200"));
    }
    let refused = get(&server.addr, "/healthz", "").to_ascii_lowercase();
    assert!(refused.starts_with("http/1.1 429"), "{refused}");
    for header in [
        "retry-after:",
        "ratelimit-limit: 5",
        "ratelimit-remaining: 0",
        "ratelimit-reset:",
        "content-type: application/problem+json",
    ] {
        assert!(refused.contains(header), "{header} missing in {refused}");
    }
    // X-Forwarded-For from an untrusted peer is ignored: still the same (limited) client.
    let spoofed = get(
        &server.addr,
        "/healthz",
        "X-Forwarded-For: 203.0.113.50\r\n",
    );
    assert!(spoofed.starts_with("HTTP/1.1 429"), "{spoofed}");
}

/// Refusals by the per-address limit happen before routing; they are counted all the same,
/// in `examplebank_rate_limited_total` and under the route label `limited`.
#[test]
fn per_address_refusals_are_counted_in_metrics() {
    let server = start(
        &[],
        &[
            ("EXAMPLEBANK_RATE_LIMIT_PER_ADDRESS_PER_MINUTE", "3"),
            ("EXAMPLEBANK_TRUSTED_PROXIES", "127.0.0.1"),
        ],
    );
    let client = "X-Forwarded-For: 198.51.100.7\r\n";
    for _ in 0..3 {
        assert!(get(&server.addr, "/healthz", client).starts_with("HTTP/1.1 200"));
    }
    for _ in 0..2 {
        assert!(get(&server.addr, "/healthz", client).starts_with("HTTP/1.1 429"));
    }
    // Scraped from another (not yet limited) address.
    let body = get(
        &server.addr,
        "/metrics",
        "X-Forwarded-For: 198.51.100.8\r\n",
    );
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains("\nexamplebank_rate_limited_total 2\n"),
        "{body}"
    );
    assert!(
        body.contains(
            "examplebank_http_requests_total{method=\"GET\",route=\"limited\",status=\"429\"} 2"
        ),
        "{body}"
    );
}

/// In split mode one transactions replica asks the users service once per charge, all from
/// one address with one service token: a verified service token passes the per-address limit
/// and has a service's allowance (a hundred times a person's), while anonymous requests from
/// the same address are still limited.
#[test]
fn service_calls_have_their_own_allowance_and_anonymous_ones_stay_limited() {
    let server = start(
        &[],
        &[
            ("EXAMPLEBANK_RATE_LIMIT_PER_ADDRESS_PER_MINUTE", "5"),
            ("EXAMPLEBANK_RATE_LIMIT_PER_PERSON_PER_MINUTE", "1"),
        ],
    );
    let secret =
        std::fs::read_to_string(server.dir.path().join("keys/rewards-client.secret")).unwrap();
    let form = format!(
        "grant_type=client_credentials&scope=rewards&client_id=rewards&client_secret={}",
        secret.trim()
    );
    let answer = http(
        &server.addr,
        &format!(
            "POST /identity/v1/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
    let token = body
        .split("\"access_token\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("an access token");
    let reward = format!(
        "PUT /bank/v1/transactions/reward/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: 18\r\n\r\n{{\"pointsEarned\":1}}",
        "0190a0b0-0000-7000-8000-000000000001"
    );
    for i in 0..20 {
        let answer = http(&server.addr, &reward);
        assert!(
            answer.starts_with("HTTP/1.1 404"),
            "service call {i}: {answer}"
        );
    }
    for _ in 0..3 {
        get(&server.addr, "/healthz", "");
    }
    let refused = get(&server.addr, "/healthz", "");
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
}

#[test]
fn x_forwarded_for_is_believed_only_from_a_trusted_proxy() {
    let server = start(
        &[],
        &[
            ("EXAMPLEBANK_RATE_LIMIT_PER_ADDRESS_PER_MINUTE", "2"),
            ("EXAMPLEBANK_TRUSTED_PROXIES", "127.0.0.1"),
        ],
    );
    for client in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        for _ in 0..2 {
            let ok = get(
                &server.addr,
                "/healthz",
                &format!("X-Forwarded-For: {client}\r\n"),
            );
            assert!(ok.starts_with("HTTP/1.1 200"), "{client}: {ok}");
        }
        let refused = get(
            &server.addr,
            "/healthz",
            &format!("X-Forwarded-For: {client}\r\n"),
        );
        assert!(refused.starts_with("HTTP/1.1 429"), "{client}: {refused}");
    }
}

/// `examplebank demo` walks the whole journey over TLS against a server with a self-signed
/// certificate when told to trust that certificate, and refuses to talk to it otherwise.
#[test]
fn the_demo_runs_over_tls_trusting_only_the_certificate_it_is_given() {
    let server = start(&["--tls-self-signed"], &[]);
    let url = format!("https://{}", server.addr);
    let pem = server.dir.path().join("tls/self-signed.pem");
    let demo = |extra: &[&std::ffi::OsStr]| {
        Command::new(BINARY)
            .args(["demo", "--url", &url])
            .args(extra)
            .output()
            .expect("run the demo")
    };
    let refused = demo(&[]);
    assert!(
        !refused.status.success(),
        "an unknown certificate must not be trusted"
    );
    let trusted = demo(&["--ca-cert".as_ref(), pem.as_os_str()]);
    let stdout = String::from_utf8_lossy(&trusted.stdout);
    assert!(
        trusted.status.success() && stdout.contains("demo ok"),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    // A file with no certificate in it is an error, not an empty trust list.
    let empty = server.dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let bad = demo(&["--ca-cert".as_ref(), empty.as_os_str()]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no PEM certificate"));
}

#[test]
fn tls_with_a_self_signed_certificate_sends_hsts() {
    let server = start(&["--tls-self-signed"], &[]);
    let pem = std::fs::read(server.dir.path().join("tls/self-signed.pem")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let response = runtime.block_on(async {
        use rustls::pki_types::pem::PemObject;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        let _ = tls.read_to_string(&mut response).await;
        response
    });
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{response}"
    );
    // Plain HTTP on the TLS port gets nowhere.
    let plain = get(&server.addr, "/healthz", "");
    assert!(!plain.contains("200 OK"), "{plain}");
}

#[test]
fn tls_flags_must_come_in_pairs() {
    let output = Command::new(BINARY)
        .args(["serve", "--tls-cert", "/nonexistent.pem"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("tls_cert and tls_key"));
}

#[test]
fn cors_is_off_unless_origins_are_allowed() {
    let closed = start(&[], &[]);
    let answer =
        get(&closed.addr, "/healthz", "Origin: https://evil.example\r\n").to_ascii_lowercase();
    assert!(!answer.contains("access-control-allow-origin"), "{answer}");
    let open = start(
        &[],
        &[(
            "EXAMPLEBANK_CORS_ALLOWED_ORIGINS",
            "https://app.example.org",
        )],
    );
    let allowed = get(
        &open.addr,
        "/healthz",
        "Origin: https://app.example.org\r\n",
    )
    .to_ascii_lowercase();
    assert!(
        allowed.contains("access-control-allow-origin: https://app.example.org"),
        "{allowed}"
    );
    let other =
        get(&open.addr, "/healthz", "Origin: https://evil.example\r\n").to_ascii_lowercase();
    assert!(!other.contains("access-control-allow-origin"), "{other}");
}

#[test]
fn metrics_count_requests_by_route_pattern_and_report_queues() {
    let server = start(&[], &[]);
    for _ in 0..3 {
        get(&server.addr, "/healthz", "");
    }
    get(
        &server.addr,
        "/bank/v1/transactions/some-id-with-personal-looking-text",
        "",
    );
    let body = get(&server.addr, "/metrics", "");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains(
            "examplebank_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 3"
        ),
        "{body}"
    );
    assert!(
        body.contains("route=\"/bank/v1/transactions/{id}\",status=\"401\""),
        "{body}"
    );
    assert!(
        !body.contains("personal-looking-text"),
        "raw paths never become labels"
    );
    for name in [
        "examplebank_http_request_duration_seconds_bucket",
        "examplebank_outbox_pending",
        "examplebank_outbox_oldest_age_seconds",
        "examplebank_erasure_queue",
        "examplebank_login_failures_total",
        "examplebank_rate_limited_total",
    ] {
        assert!(body.contains(name), "{name} missing");
    }
}

#[test]
fn a_body_that_never_finishes_times_out_with_408() {
    let server = start(&[], &[("EXAMPLEBANK_REQUEST_TIMEOUT_SECONDS", "1")]);
    let mut stream = TcpStream::connect(&server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let head = format!(
        "POST /identity/v1/signup HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"username\":",
        server.addr
    );
    stream.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("application/problem+json"), "{response}");
    assert!(started.elapsed() < Duration::from_secs(5));
}
