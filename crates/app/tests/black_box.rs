//! Black-box tests: the real binary, started as a person would start it, and `examplebank demo`
//! walking the whole journey against it over real HTTP, on SQLite and on PostgreSQL. The
//! server's log is then searched for anything that looks like personal data or a token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{start, tail, Server, BINARY};

fn run_demo(server: &Server) {
    let started = Instant::now();
    let output = Command::new(BINARY)
        .args(["demo", "--url", &server.url])
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed after {:?}\nstdout:\n{stdout}\nstderr:\n{}\nserver log tail:\n{}",
        started.elapsed(),
        String::from_utf8_lossy(&output.stderr),
        tail(&server.log, 20)
    );
    assert!(stdout.contains("demo ok"), "{stdout}");
    assert!(started.elapsed() < Duration::from_secs(120));
}

/// The log must hold no e-mail addresses, no demo names and nothing shaped like a token.
fn assert_log_is_clean(log: &Path) {
    let text = std::fs::read_to_string(log).expect("log");
    assert!(
        text.contains("request finished"),
        "the log should record requests"
    );
    for needle in [
        "@example.org",
        "eyJ",
        "Bearer ",
        "password",
        "\"Demo\"",
        "Person1",
        "Person2",
        "Person3",
        "demo-",
    ] {
        assert!(!text.contains(needle), "the server log contains {needle:?}");
    }
    // Nothing shaped like a token or secret: no run of 40 or more base64url characters.
    let mut run = 0;
    for c in text.chars() {
        run = if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
            run + 1
        } else {
            0
        };
        assert!(
            run < 40,
            "the server log contains something shaped like a token"
        );
    }
    // Every line is JSON (the default log format).
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        assert!(line.starts_with('{'), "not a JSON log line: {line}");
    }
}

#[test]
fn demo_passes_against_the_binary_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[], &[]);
    run_demo(&server);
    assert!(dir.path().join("examplebank.sqlite").exists());
    assert!(dir.path().join("keys").is_dir());
    drop(server);
    // The demo's events are in the audit log, and the chain verifies.
    let output = Command::new(BINARY)
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("audit log intact"), "{stdout}");
    // Alter one entry behind the server's back: verify names it and exits non-zero.
    let database = dir.path().join("examplebank.sqlite");
    let tampered = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('DROP TRIGGER audit_log_no_update'); c.execute(\"UPDATE audit_log SET outcome='forged' WHERE seq=3\"); c.commit()")
        .arg(&database)
        .status()
        .unwrap();
    assert!(tampered.success());
    let output = Command::new(BINARY)
        .args(["audit", "verify", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        !output.status.success(),
        "verify must fail on a tampered log"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("entry 3 was altered"));
    let log = dir.path().join("server.log");
    assert_log_is_clean(&log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_passes_against_the_binary_on_postgres() {
    common::pg::with_db("blackbox", |db| async move {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("rewards.secret");
        std::fs::write(&secret_file, "black-box-rewards-secret").unwrap();
        let master = format!("m1:{}", "A".repeat(43));
        let secret_path = secret_file.display().to_string();
        let url = db.url.clone();
        tokio::task::spawn_blocking(move || {
            let env = [
                ("EXAMPLEBANK_DATABASE_URL", url.as_str()),
                ("EXAMPLEBANK_MASTER_KEY", master.as_str()),
                (
                    "EXAMPLEBANK_REWARDS_CLIENT_SECRET_FILE",
                    secret_path.as_str(),
                ),
            ];
            let server = start(dir.path(), &[], &env);
            run_demo(&server);
            drop(server);
            assert_log_is_clean(&dir.path().join("server.log"));
        })
        .await
        .unwrap();
    })
    .await;
}

#[test]
fn a_bad_setting_stops_the_start_with_a_message() {
    let output = Command::new(BINARY)
        .args(["check-config"])
        .env("EXAMPLEBANK_ADDR", "not-an-address")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("addr must be HOST:PORT"), "{stderr}");
}

#[test]
fn check_config_prints_settings_without_secrets() {
    let output = Command::new(BINARY)
        .args(["check-config"])
        .env(
            "EXAMPLEBANK_DATABASE_URL",
            "postgres://bank:hunter2@db.example/bank",
        )
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("addr = \"127.0.0.1:8080\""), "{stdout}");
    assert!(!stdout.contains("hunter2"), "{stdout}");
}

#[test]
fn admin_create_reads_the_password_from_stdin_and_erasure_run_exits() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BINARY)
        .args(["admin", "create", "chief-admin", "--data-dir"])
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a long admin passphrase\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("administrator created"));
    let output = Command::new(BINARY)
        .args(["erasure", "run", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 person(s) erased"));
}
