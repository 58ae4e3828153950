//! `examplebank-bench`: the helpers `bench/run.sh` calls. Run by hand, never in CI.
//!
//! - `seed`: people and transactions written through the store (accounts, data keys, consent)
//!   and in bulk for the million transactions, readable by the real server;
//! - `login`: access tokens through the real login flow (authorization code + PKCE);
//! - `reward-latency` (P3), `logins` (P4), `startup` (P5): measurements wrk cannot make;
//! - `sqlite-loop`: the server's SQL for one request, in a direct loop on SQLite.
//!
//! Every result is printed as one JSON line on standard output.

mod http;
mod seed;
mod sqlite_loop;
mod stats;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// The password of every seeded person (hashed once, reused for all).
pub const PASSWORD: &str = "bench-Passphrase-2026";

pub fn username(n: usize) -> String {
    format!("bench-{n:06}")
}

#[derive(Parser)]
#[command(
    name = "examplebank-bench",
    about = "bench/run.sh helpers (run by hand)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Seeds people and transactions into a fresh database.
    Seed {
        #[arg(long, conflicts_with = "sqlite")]
        database_url: Option<String>,
        #[arg(long)]
        sqlite: Option<PathBuf>,
        #[arg(long)]
        keys_dir: PathBuf,
        #[arg(long, env = "EXAMPLEBANK_MASTER_KEY")]
        master_key: String,
        #[arg(long, default_value_t = 10_000)]
        people: usize,
        #[arg(long, default_value_t = 1_000_000)]
        transactions: usize,
    },
    /// Signs people 1..=N in through the real login flow; writes `sub sid token` lines.
    Login {
        #[arg(long)]
        url: String,
        #[arg(long)]
        first: usize,
        #[arg(long)]
        count: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// P3: from an acknowledged charge to its points being visible, repeatedly.
    RewardLatency {
        #[arg(long)]
        url: String,
        /// A file with one `sub sid token` line: the probing person.
        #[arg(long)]
        token_file: PathBuf,
        #[arg(long)]
        seconds: u64,
    },
    /// P4: login capacity, then logins at a multiple of it.
    Logins {
        #[arg(long)]
        url: String,
        /// People used for logins start here (distinct from the load's sessions).
        #[arg(long)]
        first: usize,
        #[arg(long)]
        people: usize,
        #[arg(long, default_value_t = 10)]
        capacity_seconds: u64,
        #[arg(long, default_value_t = 15)]
        seconds: u64,
        #[arg(long, default_value_t = 10.0)]
        factor: f64,
    },
    /// P5: starts the binary, times /readyz, then reads the idle RSS.
    Startup {
        #[arg(long)]
        binary: PathBuf,
        #[arg(long)]
        addr: String,
        #[arg(long, default_value_t = 5)]
        idle_seconds: u64,
        #[arg(long)]
        log: PathBuf,
        #[arg(long)]
        label: String,
        /// Arguments for the binary (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Reads a running process's resident set size (for the loaded server).
    Rss {
        #[arg(long)]
        pid: u32,
        #[arg(long)]
        label: String,
    },
    /// The server's statements for one request, in a direct loop on SQLite.
    SqliteLoop {
        #[arg(long)]
        sqlite: PathBuf,
        #[arg(long)]
        tokens: PathBuf,
        /// `post` or `get`.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        concurrency: usize,
        #[arg(long)]
        seconds: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Seed {
                database_url,
                sqlite,
                keys_dir,
                master_key,
                people,
                transactions,
            } => {
                let target = match (database_url, sqlite) {
                    (Some(url), None) => seed::Target::Postgres(url),
                    (None, Some(path)) => seed::Target::Sqlite(path),
                    _ => anyhow::bail!("give --database-url or --sqlite"),
                };
                seed::run(&target, &keys_dir, &master_key, people, transactions).await
            }
            Command::Login {
                url,
                first,
                count,
                out,
            } => http::login_many(&url, first, count, &out).await,
            Command::RewardLatency {
                url,
                token_file,
                seconds,
            } => http::reward_latency(&url, &token_file, seconds).await,
            Command::Logins {
                url,
                first,
                people,
                capacity_seconds,
                seconds,
                factor,
            } => http::logins(&url, first, people, capacity_seconds, seconds, factor).await,
            Command::Startup {
                binary,
                addr,
                idle_seconds,
                log,
                label,
                args,
            } => http::startup(&binary, &addr, &args, idle_seconds, &log, &label).await,
            Command::Rss { pid, label } => {
                let (rss, hwm) = http::rss_kib(pid)?;
                println!(
                    "{}",
                    serde_json::json!({"kind": "rss", "label": label, "rss_kib": rss, "hwm_kib": hwm})
                );
                Ok(())
            }
            Command::SqliteLoop {
                sqlite,
                tokens,
                kind,
                concurrency,
                seconds,
            } => sqlite_loop::run(&sqlite, &tokens, &kind, concurrency, seconds).await,
        }
    })
}
