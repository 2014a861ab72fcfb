//! The `ordo` command line: a thin front over the library. Exit status 0 on success,
//! 1 when the work found or hit a problem, 2 for bad usage or configuration.

use crate::config::Settings;
use crate::domain::UserRole;
use crate::error::Error;
use crate::{Ordo, telemetry};
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "ordo",
    version,
    about = "Order and inventory service: reservations that never oversell, expiring payments, \
             a strict order lifecycle, and a sweep that cancels unpaid orders.",
    after_help = "Configuration comes from defaults, then ordo.toml (or --config), then ORDO_* \
                  environment variables, then flags. With nothing set, ordo uses the SQLite file \
                  ordo.db in the working directory."
)]
pub struct Cli {
    /// Configuration file (TOML). Default: ordo.toml in the working directory, if present.
    #[arg(long, global = true, env = "ORDO_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Database: sqlite://PATH, a plain file path, or postgres://USER@HOST/DB.
    /// Overrides ORDO_DATABASE_URL and the config file.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the database migrations (safe to run again).
    Migrate,
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Verify the invariants (ledger equals stock, history complete, no pending order
    /// with a succeeded payment, ...). Exits 1 with the findings.
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create demo products, a staff and a customer token and some orders, and print them.
    Demo,
    /// Cancel orders left unpaid past the timeout and release their stock. Safe to run
    /// from cron, and beside other sweeps: no order is cancelled or released twice.
    /// Orders with a payment still open (and unexpired) or succeeded are left alone.
    #[command(name = "cancel-unpaid-orders")]
    CancelUnpaidOrders(SweepArgs),
}

#[derive(Debug, clap::Args)]
pub struct SweepArgs {
    /// Cancel orders unpaid for at least this long. Default: unpaid_timeout_minutes (30).
    #[arg(long, value_name = "N")]
    pub timeout_minutes: Option<u32>,
    /// List what would be cancelled; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Orders cancelled per transaction. Default: sweep_batch_size (1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: Option<u32>,
    /// Handle at most N due orders in this run.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Evaluate deadlines as of this instant (RFC 3339, e.g. 2026-11-25T09:30:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_now)]
    pub now: Option<i64>,
    /// Print the summary as JSON on stdout (other output goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// One line per order.
    #[arg(short, long)]
    pub verbose: bool,
}

fn parse_now(s: &str) -> Result<i64, String> {
    crate::domain::parse_rfc3339(s)
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a user with a new API token. The token is printed once, alone on the last
    /// line of stdout; only its hash is stored.
    Create {
        /// Who the token is for (a person or a system, such as "shop-frontend").
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: RoleArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Customer,
    Staff,
}

impl From<RoleArg> for UserRole {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Customer => UserRole::Customer,
            RoleArg::Staff => UserRole::Staff,
        }
    }
}

/// A failure at the edge: what to print and which exit status.
pub struct Failure {
    pub message: String,
    pub status: u8,
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        let status = if matches!(err, Error::Config(_)) {
            2
        } else {
            1
        };
        Failure {
            message: err.to_string(),
            status,
        }
    }
}

/// Runs the command line and returns the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match load_settings(&cli) {
        Ok(s) => s,
        Err(err) => {
            eprintln!("ordo: {err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log, settings.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("ordo: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("ordo: {}", failure.message);
            ExitCode::from(failure.status)
        }
    }
}

fn load_settings(cli: &Cli) -> Result<Settings, Error> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(url) = &cli.database_url {
        settings.database_url = url.clone();
    }
    settings.validate()?;
    Ok(settings)
}

async fn run(command: Command, settings: Settings) -> Result<ExitCode, Failure> {
    match command {
        Command::Migrate => {
            let ordo = Ordo::open(&settings).await?;
            println!(
                "migrations applied ({})",
                crate::config::redact_url(&settings.database_url)
            );
            ordo.db.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Token {
            command: TokenCommand::Create { name, role },
        } => {
            let ordo = Ordo::open(&settings).await?;
            let (user, token) = ordo.create_user_with_token(&name, role.into()).await?;
            println!(
                "created {} user {} ({}); keep this token, it is not shown again:",
                user.role.as_str(),
                user.id,
                user.name
            );
            println!("{}", token.expose());
            ordo.db.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { json } => {
            let ordo = Ordo::open(&settings).await?;
            let report = ordo.check().await?;
            ordo.db.close().await;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                );
            } else if report.is_clean() {
                println!("ok: {} invariants hold", report.checks.len());
            } else {
                for finding in &report.findings {
                    println!("{}: {}", finding.check, finding.detail);
                }
                println!("{} finding(s)", report.findings.len());
            }
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::CancelUnpaidOrders(args) => crate::sweep_cli::run(&settings, args).await,
        Command::Demo => {
            let ordo = Ordo::open(&settings).await?;
            crate::demo::run(&ordo).await?;
            ordo.db.close().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
