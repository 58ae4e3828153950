//! `examplebank`: one binary for every role and every operation.

use clap::{Parser, Subcommand};
use examplebank::settings::{Overrides, Settings};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "examplebank",
    version,
    about = "A privacy-by-design back end for a credit-card rewards app"
)]
struct Cli {
    /// A TOML settings file (also EXAMPLEBANK_CONFIG).
    #[arg(long, global = true, env = "EXAMPLEBANK_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for the embedded database and the key store [default: ./data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the HTTP server and the workers of the chosen roles.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long)]
        addr: Option<String>,
        /// `all`, or a comma-separated list of identity, users, transactions, rewards, erasure, ui.
        #[arg(long)]
        roles: Option<String>,
        /// TLS certificate chain (PEM); needs --tls-key.
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long)]
        tls_key: Option<PathBuf>,
        /// Serve TLS with a self-signed certificate kept in <data-dir>/tls (local use only).
        #[arg(long)]
        tls_self_signed: bool,
    },
    /// Applies database migrations, then exits.
    Migrate,
    /// Erasure operations.
    Erasure {
        #[command(subcommand)]
        command: ErasureCommand,
    },
    /// Walks the whole journey over HTTP against a running server.
    Demo {
        /// The server's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        url: String,
        /// Also trust the certificates in this PEM file, e.g. <data-dir>/tls/self-signed.pem
        /// of a server started with --tls-self-signed. Certificates are always checked.
        #[arg(long)]
        ca_cert: Option<PathBuf>,
    },
    /// Administrator accounts.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Audit log operations.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Key management.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Validates the settings and prints them with secrets redacted.
    CheckConfig {
        /// An address to listen on, as `serve --addr` takes it, to check with the rest.
        #[arg(long)]
        addr: Option<String>,
        /// Roles, as `serve --roles` takes them, to check with the rest.
        #[arg(long)]
        roles: Option<String>,
    },
}

#[derive(Subcommand)]
enum ErasureCommand {
    /// Carries out every due erasure request once, then exits.
    Run,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Checks the hash chain, the signed checkpoints and the checkpoint file; exits non-zero
    /// at the first altered, missing or reordered entry.
    Verify,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Creates an administrator; the password is read from standard input.
    Create {
        /// The administrator's username: 3 to 64 letters, digits, `.`, `_` or `-`.
        username: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-wraps every person's data key under a new master key; safe while the server runs.
    Rotate {
        /// The new master key (`<id>:<base64url 32 bytes>`); generated when omitted, which is
        /// allowed only when the current master key lives in the key store's master.key.
        #[arg(long)]
        new_master_key_file: Option<PathBuf>,
    },
    /// Adds a new token-signing key; older keys keep verifying during an overlap window.
    RotateSigning,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        ..Overrides::default()
    };
    match &cli.command {
        Command::Serve {
            addr,
            roles,
            tls_cert,
            tls_key,
            tls_self_signed,
        } => {
            overrides.addr = addr.clone();
            overrides.roles = roles.clone();
            overrides.tls_cert = tls_cert.clone();
            overrides.tls_key = tls_key.clone();
            overrides.tls_self_signed = *tls_self_signed;
        }
        Command::CheckConfig { addr, roles } => {
            overrides.addr = addr.clone();
            overrides.roles = roles.clone();
        }
        _ => {}
    }
    let settings = match Settings::load(cli.config.as_deref(), &overrides) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("examplebank: the settings are not valid: {err:#}");
            return ExitCode::from(2);
        }
    };
    examplebank::telemetry::init(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("examplebank: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command, settings));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("examplebank: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    use examplebank::commands;
    match command {
        Command::Serve { .. } => commands::serve(settings).await,
        Command::Migrate => commands::migrate(settings).await,
        Command::Erasure {
            command: ErasureCommand::Run,
        } => commands::erasure_run(settings).await,
        Command::Demo { url, ca_cert } => examplebank::demo::run(&url, ca_cert.as_deref()).await,
        Command::Audit {
            command: AuditCommand::Verify,
        } => commands::audit_verify(settings).await,
        Command::Admin {
            command: AdminCommand::Create { username },
        } => commands::admin_create(settings, &username).await,
        Command::Keys {
            command: KeysCommand::RotateSigning,
        } => commands::rotate_signing(&settings),
        Command::Keys {
            command: KeysCommand::Rotate {
                new_master_key_file,
            },
        } => commands::rotate_master(&settings, new_master_key_file.as_deref()),
        Command::CheckConfig { .. } => {
            commands::check_config(&settings);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every command and every argument of every command says what it is for in `--help`.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in command.get_subcommands() {
                if sub.get_name() == "help" {
                    continue;
                }
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_long_about().is_none() {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "examplebank", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
        Cli::command().debug_assert();
    }
}
