//! The front end in a real browser: the binary is started as a person would start it, with an
//! administrator created first, and `e2e/journey.mjs` (Node's playwright-core driving Debian's
//! headless Chromium) walks the phone simulator and the admin console against it: sign-up with
//! consents, PKCE login, charges from the home screen, points, the chart, download, erasure,
//! the XSS and CSP cases, reward rules. It saves a screenshot of each screen in
//! `docs/screenshots/`.
//!
//! Needs `/usr/bin/chromium`, `node` and `e2e/node_modules` (`npm ci --prefix e2e`). Without
//! them the test is skipped, unless CI=true or EXAMPLEBANK_TEST_REQUIRE_BROWSER=1 make it a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

use common::{tail, BINARY};
const CHROMIUM: &str = "/usr/bin/chromium";
const ADMIN_USER: &str = "console-admin";
const ADMIN_PASSWORD: &str = "browser-test-admin-password-7";

fn workspace_root() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .canonicalize()
        .expect("the workspace root")
}

fn browser_required() -> bool {
    let set = |name: &str| {
        std::env::var(name)
            .map(|v| v == "true" || v == "1")
            .unwrap_or(false)
    };
    set("CI") || set("EXAMPLEBANK_TEST_REQUIRE_BROWSER")
}

/// What is missing to run the browser tests, as instructions.
fn missing_prerequisites(root: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!(
            "{CHROMIUM} (apt-get update && apt-get install -y chromium chromium-driver)"
        ));
    }
    let node_works = Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !node_works {
        missing.push("node, version 20 or later (apt-get install -y nodejs npm)".to_owned());
    }
    if !root.join("e2e/node_modules/playwright-core").is_dir() {
        missing.push("e2e/node_modules (npm ci --prefix e2e)".to_owned());
    }
    missing
}

fn create_admin(data_dir: &Path) {
    let mut child = Command::new(BINARY)
        .args(["admin", "create", ADMIN_USER, "--data-dir"])
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run examplebank admin create");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{ADMIN_PASSWORD}\n").as_bytes())
        .expect("write the password");
    let output = child.wait_with_output().expect("admin create finishes");
    assert!(
        output.status.success(),
        "admin create failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn phone_simulator_and_admin_console_work_in_headless_chromium() {
    let root = workspace_root();
    let missing = missing_prerequisites(&root);
    if !missing.is_empty() {
        let message = format!("the browser tests need: {}", missing.join("; "));
        if browser_required() {
            panic!("{message} (required because CI=true or EXAMPLEBANK_TEST_REQUIRE_BROWSER=1)");
        }
        eprintln!("SKIPPED: {message}; CI=true makes this a failure");
        return;
    }

    let dir = tempfile::tempdir().unwrap();
    create_admin(dir.path());
    let server = common::start(dir.path(), &[], &[]);
    // Screenshots go to a scratch directory unless E2E_SCREENSHOTS_DIR says otherwise
    // (set it to docs/screenshots to refresh the README's pictures).
    let shots = std::env::var("E2E_SCREENSHOTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| dir.path().join("screenshots"));
    let output = Command::new("node")
        .arg("e2e/journey.mjs")
        .args([server.url.as_str(), ADMIN_USER, ADMIN_PASSWORD])
        .env("E2E_SCREENSHOTS_DIR", &shots)
        .current_dir(&root)
        .output()
        .expect("run node e2e/journey.mjs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser journey failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log tail:\n{}",
        output.status,
        tail(&server.log, 30)
    );
    assert!(stdout.contains("journey: ok"), "{stdout}");
    println!("{stdout}");

    drop(server);
    // What the browser sent must not have put personal data or tokens into the server's log.
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    for needle in [
        "@example.org",
        "eyJ",
        "Bearer ",
        "Lovelace",
        "correct-horse",
    ] {
        assert!(!log.contains(needle), "the server log contains {needle:?}");
    }
}
