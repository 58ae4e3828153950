//! Starting the real binary for black-box tests: `serve` on a free port, the URL read from its
//! first line of output, its log kept in the data directory, killed when dropped.

#![allow(dead_code)]

pub mod pg;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub const BINARY: &str = env!("CARGO_BIN_EXE_examplebank");

pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT` (or https with TLS).
    pub url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The server's standard error: its JSON log.
    pub log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `examplebank serve` with `data_dir`, extra arguments and environment.
pub fn start(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    let log = data_dir.join("server.log");
    let mut child = Command::new(BINARY)
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start examplebank");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let url = line
        .split_whitespace()
        .find(|w| w.contains("://"))
        .unwrap_or_else(|| {
            panic!(
                "no URL in {line:?}; log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        })
        .to_owned();
    let addr = url.split("://").nth(1).unwrap_or_default().to_owned();
    Server {
        child,
        url,
        addr,
        log,
    }
}

/// The last `lines` lines of a file.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
