//! The `ordo` command line: a thin front over the library. Exit status 0 on success,
//! 1 when the work found or hit a problem, 2 for bad usage or configuration.

use crate::config::Settings;
use crate::domain::{Actor, UserRole, format_rfc3339};
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
    /// Run the HTTP API and the scheduled sweep (applies migrations first).
    Serve {
        /// Address to listen on. Default: listen (127.0.0.1:8080).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Do not run the scheduled jobs (reminders, sweep) in this process.
        #[arg(long)]
        no_scheduler: bool,
        /// Do not deliver events (webhooks, broker) from this process.
        #[arg(long)]
        no_dispatch: bool,
    },
    /// Run only the background work: the scheduled jobs (payment reminders and the
    /// unpaid-order sweep every sweep_interval_seconds) and the event dispatcher.
    Worker {
        /// Do not deliver events (webhooks, broker) from this process.
        #[arg(long)]
        no_dispatch: bool,
    },
    /// The event log and its delivery.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Webhook endpoints.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Apply the database migrations (safe to run again).
    Migrate,
    /// Copy the SQLite database to a file while ordo serves: one consistent snapshot,
    /// written under a temporary name, checked (PRAGMA integrity_check, then ordo check on
    /// the copy), synced and renamed, so a file with a backup's name is always complete.
    /// On PostgreSQL: says which tools to use (pg_dump, pgBackRest).
    Backup {
        /// Where to write it (must not exist). Default: backup_dir (backups beside the
        /// database file) / ordo-backup-TIMESTAMP.db.
        #[arg(long, value_name = "FILE")]
        to: Option<PathBuf>,
    },
    /// Fill an empty SQLite database from a backup, bring it to this version's migrations
    /// and check it. A database that holds anything is refused (exit 2) and left as it was.
    Restore {
        /// The backup file (from `ordo backup`, `--backup-first` or a scheduled snapshot).
        #[arg(long, value_name = "FILE")]
        from: PathBuf,
        /// The database to fill. Default: database_url.
        #[arg(long, value_name = "URL")]
        to: Option<String>,
    },
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Customers as the shop's backend knows them: create or update by the shop's id,
    /// give them tokens, find them, erase their personal data.
    Customers {
        #[command(subcommand)]
        command: CustomersCommand,
    },
    /// Verify the invariants (ledger equals stock, history complete, no pending order
    /// with a succeeded payment, ...). Exits 1 with the findings.
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create demo products, a staff and a customer token and some orders, and print them.
    Demo {
        /// `zh-CN`: a shop in China (prices in yuan, Chinese names, customers with phones,
        /// orders with addresses); the output suggests its time zone and currency.
        #[arg(long, value_enum, default_value = "en")]
        locale: crate::demo::DemoLocale,
    },
    /// Print a signed payment-provider event and the curl line that sends it to the
    /// webhook: simulates the provider locally. Uses webhook_secret.
    SimulatePayment {
        #[arg(long, value_name = "ID")]
        payment_id: i64,
        #[arg(long, value_enum, default_value = "succeeded")]
        status: PaymentResultArg,
        /// The amount the provider took (must equal the payment's amount to succeed).
        #[arg(long, value_name = "CENTS")]
        amount_cents: i64,
        /// Default: a fresh random id. Reuse one to see a replay ignored.
        #[arg(long, value_name = "ID")]
        event_id: Option<String>,
        /// Where ordo listens. Default: listen.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Cancel orders left unpaid past the timeout and release their stock. Safe to run
    /// from cron, and beside other sweeps: no order is cancelled or released twice.
    /// Orders with a payment still open (and unexpired) or succeeded are left alone.
    #[command(name = "cancel-unpaid-orders")]
    CancelUnpaidOrders(SweepArgs),
    /// The record of sweep runs (scheduler, CLI, API, console).
    Sweeps {
        #[command(subcommand)]
        command: SweepsCommand,
    },
    /// The audit log of staff and operator actions.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Payment providers (WeChat Pay, Alipay, Stripe, and manual).
    Providers {
        #[command(subcommand)]
        command: ProvidersCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum CustomersCommand {
    /// Create the customer with this external id, or update it (the same customer every
    /// time). Prints the customer as JSON.
    Upsert {
        /// The shop's own id of the customer (1 to 128 characters, no spaces).
        #[arg(long, value_name = "ID")]
        external_id: String,
        /// The name staff see and parcels are addressed to by default.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// The customer's phone (digits, spaces, '-', '(', ')', '+' first). Omitted: left
        /// as it is.
        #[arg(long, value_name = "PHONE", conflicts_with = "clear_phone")]
        phone: Option<String>,
        /// Forget the customer's phone.
        #[arg(long)]
        clear_phone: bool,
        /// The customer's openid in the shop's WeChat mini-program. Omitted: left as it is.
        #[arg(long, value_name = "OPENID", conflicts_with = "clear_openid")]
        openid: Option<String>,
        /// Forget the customer's openid.
        #[arg(long)]
        clear_openid: bool,
    },
    /// A token for a customer, printed once, alone on the last line of stdout.
    Token {
        /// The customer's id (from `ordo customers list` or `upsert`).
        id: i64,
        /// What the token is for (default: customer <external id>).
        #[arg(long)]
        name: Option<String>,
        /// How long the token lives: 90d, 12h, 30m, 45s or 2w. Default: until revoked.
        #[arg(long, value_name = "SPAN", value_parser = parse_span_arg)]
        expires_in: Option<i64>,
    },
    /// Customers, newest first: id, external id, name, phone.
    List {
        /// Only those whose name contains this, whose phone holds these digits, or whose
        /// external id is this.
        #[arg(long, short)]
        q: Option<String>,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=200))]
        limit: i64,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One customer, as JSON.
    Show { id: i64 },
    /// Erase a customer's personal data (name, phone, openid, the addresses of its
    /// orders); refused while an order of its is still open.
    Erase { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    /// Load every configured provider's settings and keys, and say what is loaded and what
    /// is missing (secrets are never shown). Exits 2 when a provider is configured in part
    /// or a key cannot be read, as `ordo serve` would.
    Check {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print the event log as JSON lines, oldest first: `{id, type, timestamp, data,
    /// position}`.
    Tail {
        /// Only this type, such as order.paid.
        #[arg(long = "type", value_name = "TYPE")]
        kind: Option<String>,
        /// Start after this position (default: the last 20 events).
        #[arg(long, value_name = "POSITION")]
        after: Option<i64>,
        /// Keep printing new events as they are written (Ctrl-C to stop).
        #[arg(long, short)]
        follow: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// The endpoints: id, kind, state, ordered, types, URL.
    List {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SweepsCommand {
    /// Runs, newest first: id, trigger, who, started, state, and what each did.
    List {
        /// How many runs.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Entries, newest first.
    List {
        /// How many entries.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
        /// Only this action, such as stock.adjust or token.revoke.
        #[arg(long)]
        action: Option<String>,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
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
    /// Before cancelling anything, back the SQLite database up into backup_dir
    /// (ordo-before-sweep-TIMESTAMP.db); if the backup fails, nothing is cancelled.
    #[arg(long)]
    pub backup_first: bool,
}

fn parse_now(s: &str) -> Result<i64, String> {
    crate::domain::parse_rfc3339(s)
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a user with a new API token (or, with --user, another token for an existing
    /// user). The token is printed once, alone on the last line of stdout; only its hash is
    /// stored.
    Create {
        /// Who the token is for (a person or a system, such as "shop-frontend").
        #[arg(long)]
        name: String,
        /// The new user's role.
        #[arg(
            long,
            value_enum,
            required_unless_present = "user",
            conflicts_with = "user"
        )]
        role: Option<RoleArg>,
        /// Another token for this existing user id.
        #[arg(long, value_name = "USER_ID")]
        user: Option<i64>,
        /// How long the token lives: 90d, 12h, 30m, 45s or 2w. Default: until revoked.
        #[arg(long, value_name = "SPAN", value_parser = parse_span_arg)]
        expires_in: Option<i64>,
    },
    /// Every token: id, name, user, role, state, created, last used, expires. Never the
    /// token itself.
    List {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: it is refused from the next request on.
    Revoke {
        /// The token's id (from `ordo token list`).
        id: i64,
    },
}

fn parse_span_arg(s: &str) -> Result<i64, String> {
    crate::domain::parse_span(s)
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PaymentResultArg {
    Succeeded,
    Failed,
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
    crate::install_tls_provider();
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
        Command::Token { command } => tokens(&settings, command).await,
        Command::Customers { command } => customers(&settings, command).await,
        Command::Backup { to } => backup(&settings, to).await,
        Command::Restore { from, to } => restore(&settings, &from, to).await,
        Command::Sweeps {
            command: SweepsCommand::List { limit, json },
        } => {
            let ordo = Ordo::open_with_connections(&settings, 1).await?;
            let runs = ordo.sweep_runs(Actor::Operator, None, limit).await?;
            ordo.db.close().await;
            if json {
                for run in &runs {
                    println!("{}", serde_json::to_string(run).unwrap_or_default());
                }
            } else {
                println!(
                    "{:>6}  {:<9}  {:<18}  {:<24}  {:<11}  {:>7}  {:>9}  {:>6}  {:>7}",
                    "id",
                    "trigger",
                    "who",
                    "started",
                    "state",
                    "dry run",
                    "found",
                    "errors",
                    "units"
                );
                for r in &runs {
                    println!(
                        "{:>6}  {:<9}  {:<18}  {:<24}  {:<11}  {:>7}  {:>9}  {:>6}  {:>7}",
                        r.id,
                        r.trigger,
                        r.actor,
                        format_rfc3339(r.started_at),
                        r.state,
                        if r.dry_run { "yes" } else { "no" },
                        r.found,
                        r.errors,
                        r.units_released
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command:
                AuditCommand::List {
                    limit,
                    action,
                    json,
                },
        } => {
            let ordo = Ordo::open_with_connections(&settings, 1).await?;
            let entries = ordo
                .audit_log(
                    Actor::Operator,
                    &crate::audit::AuditFilter {
                        action,
                        limit,
                        ..Default::default()
                    },
                )
                .await?;
            ordo.db.close().await;
            for e in &entries {
                if json {
                    println!("{}", serde_json::to_string(e).unwrap_or_default());
                } else {
                    println!(
                        "{:>7}  {}  {:<14}  {:<22}  {}:{}  {}",
                        e.id,
                        format_rfc3339(e.created_at),
                        e.actor,
                        e.action,
                        e.object_type,
                        e.object_id.as_deref().unwrap_or("-"),
                        e.detail
                    );
                }
            }
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
        Command::Serve {
            listen,
            no_scheduler,
            no_dispatch,
        } => serve(settings, listen, !no_scheduler, !no_dispatch).await,
        Command::Worker { no_dispatch } => worker(settings, !no_dispatch).await,
        Command::Events {
            command:
                EventsCommand::Tail {
                    kind,
                    after,
                    follow,
                },
        } => events_tail(&settings, kind, after, follow).await,
        Command::Webhooks {
            command: WebhooksCommand::List { json },
        } => {
            let ordo = Ordo::open_with_connections(&settings, 1).await?;
            let endpoints = ordo.endpoints(Actor::Operator).await?;
            ordo.db.close().await;
            if !json {
                println!(
                    "{:>5}  {:<7}  {:<8}  {:<7}  {:<30}  url",
                    "id", "kind", "state", "ordered", "types"
                );
            }
            for e in &endpoints {
                if json {
                    println!("{}", serde_json::to_string(e).unwrap_or_default());
                } else {
                    println!(
                        "{:>5}  {:<7}  {:<8}  {:<7}  {:<30}  {}",
                        e.id,
                        e.kind,
                        if e.enabled { "enabled" } else { "disabled" },
                        if e.ordered { "yes" } else { "no" },
                        e.event_types
                            .as_ref()
                            .map_or("all".to_owned(), |t| t.join(",")),
                        e.url
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::SimulatePayment {
            payment_id,
            status,
            amount_cents,
            event_id,
            url,
        } => {
            let secret = settings.webhook_secret.clone().ok_or_else(|| Failure {
                message: "set ORDO_WEBHOOK_SECRET (or webhook_secret in ordo.toml) first".into(),
                status: 2,
            })?;
            let event_id = event_id.unwrap_or_else(|| {
                format!(
                    "sim-{}",
                    crate::auth::token_hash(&format!("{:?}", std::time::SystemTime::now()))[..16]
                        .to_owned()
                )
            });
            let body = serde_json::json!({
                "event_id": event_id,
                "payment_id": payment_id,
                "status": match status { PaymentResultArg::Succeeded => "succeeded", PaymentResultArg::Failed => "failed" },
                "amount_cents": amount_cents,
            })
            .to_string();
            let signature = crate::http::sign_webhook(secret.as_bytes(), body.as_bytes());
            let url = url.unwrap_or_else(|| format!("http://{}", settings.listen));
            println!("{body}");
            println!("X-Ordo-Signature: {signature}");
            println!(
                "curl -sS -X POST {url}/api/v1/payments/webhook -H 'Content-Type: application/json' -H 'X-Ordo-Signature: {signature}' -d '{body}'"
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Providers {
            command: ProvidersCommand::Check { json },
        } => providers_check(&settings, json),
        Command::Demo { locale } => {
            let ordo = Ordo::open(&settings).await?;
            crate::demo::run(&ordo, locale).await?;
            ordo.db.close().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn providers_check(settings: &Settings, json: bool) -> Result<ExitCode, Failure> {
    let report = crate::payments::report(settings);
    let loaded = crate::payments::load_providers(settings, crate::Clock::system());
    if json {
        println!(
            "{}",
            serde_json::json!({
                "default_payment_provider": settings.default_payment_provider,
                "public_url": settings.public_url,
                "providers": report,
                "error": loaded.as_ref().err().map(|e| e.to_string()),
            })
        );
    } else {
        println!(
            "default_payment_provider: {}",
            settings.default_payment_provider
        );
        println!(
            "public_url: {}",
            settings.public_url.as_deref().unwrap_or("(not set)")
        );
        for status in &report {
            let state = match (status.configured, status.ready) {
                (_, true) => "ready",
                (false, false) => "not configured",
                (true, false) => "NOT READY",
            };
            println!("{}: {state}", status.provider);
            if !status.loaded.is_empty() {
                println!("  set: {}", status.loaded.join(", "));
            }
            if status.configured && !status.missing.is_empty() {
                println!("  missing: {}", status.missing.join(", "));
            }
            for problem in &status.problems {
                println!("  problem: {problem}");
            }
        }
        if let Err(err) = &loaded {
            println!("ordo serve would stop: {err}");
        }
    }
    Ok(if loaded.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

impl From<crate::backup::BackupError> for Failure {
    fn from(err: crate::backup::BackupError) -> Self {
        let status = match err {
            crate::backup::BackupError::Refused(_) => 2,
            crate::backup::BackupError::Failed(_) => 1,
        };
        Failure {
            message: err.to_string(),
            status,
        }
    }
}

async fn backup(settings: &Settings, to: Option<PathBuf>) -> Result<ExitCode, Failure> {
    let taken = crate::backup::backup_configured(settings, to, "backup").await?;
    eprintln!("{}", taken.describe());
    println!("{}", taken.path.display());
    Ok(if taken.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn restore(
    settings: &Settings,
    from: &std::path::Path,
    to: Option<String>,
) -> Result<ExitCode, Failure> {
    let to = to.unwrap_or_else(|| settings.database_url.clone());
    let restored = crate::backup::restore(from, &to).await?;
    println!(
        "restored {} into {} ({} orders); ordo check: {}",
        from.display(),
        restored.path.display(),
        restored.orders,
        if restored.findings.is_empty() {
            "ok".to_owned()
        } else {
            format!("{} finding(s)", restored.findings.len())
        }
    );
    for finding in &restored.findings {
        println!("{}: {}", finding.check, finding.detail);
    }
    Ok(if restored.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn sweep_request(settings: &Settings) -> crate::sweep::SweepRequest {
    crate::sweep::SweepRequest {
        timeout_minutes: settings.unpaid_timeout_minutes,
        dry_run: false,
        batch_size: settings.sweep_batch_size,
        limit: None,
        now: None,
    }
}

async fn tokens(settings: &Settings, command: TokenCommand) -> Result<ExitCode, Failure> {
    let ordo = Ordo::open_with_connections(settings, 1).await?;
    match command {
        TokenCommand::Create {
            name,
            role,
            user,
            expires_in,
        } => {
            let new = crate::auth::NewToken {
                name,
                role: role.map(UserRole::from),
                user_id: user,
                expires_in,
            };
            let (info, token) = ordo.issue_token(Actor::Operator, &new).await?;
            println!(
                "created token {} ({}) for {} user {} ({}){}; keep it, it is not shown again:",
                info.id,
                info.name,
                info.role.as_str(),
                info.user_id,
                info.user_name,
                info.expires_at
                    .map(|at| format!(", expires {}", format_rfc3339(at)))
                    .unwrap_or_default()
            );
            println!("{}", token.expose());
        }
        TokenCommand::List { json } => {
            let mut after = 0;
            if !json {
                println!(
                    "{:>6}  {:<24}  {:>7}  {:<8}  {:<7}  {:<24}  {:<24}  {:<24}",
                    "id", "name", "user", "role", "state", "created", "last used", "expires"
                );
            }
            loop {
                let page = ordo.tokens(Actor::Operator, after, 200).await?;
                for t in &page {
                    if json {
                        println!("{}", serde_json::to_string(t).unwrap_or_default());
                    } else {
                        let when = |at: Option<i64>| at.map_or("-".to_owned(), format_rfc3339);
                        println!(
                            "{:>6}  {:<24}  {:>7}  {:<8}  {:<7}  {:<24}  {:<24}  {:<24}",
                            t.id,
                            t.name.chars().take(24).collect::<String>(),
                            t.user_id,
                            t.role.as_str(),
                            serde_json::to_value(t.state)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default(),
                            format_rfc3339(t.created_at),
                            when(t.last_used_at),
                            when(t.expires_at)
                        );
                    }
                }
                match page.last() {
                    Some(last) if page.len() == 200 => after = last.id,
                    _ => break,
                }
            }
        }
        TokenCommand::Revoke { id } => {
            let info = ordo.revoke_token(Actor::Operator, id).await?;
            println!(
                "revoked token {} ({}) of user {}",
                info.id, info.name, info.user_id
            );
        }
    }
    ordo.db.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn customers(settings: &Settings, command: CustomersCommand) -> Result<ExitCode, Failure> {
    let ordo = Ordo::open_with_connections(settings, 1).await?;
    match command {
        CustomersCommand::Upsert {
            external_id,
            name,
            phone,
            clear_phone,
            openid,
            clear_openid,
        } => {
            let change = crate::customers::CustomerChange {
                display_name: name,
                phone: if clear_phone {
                    Some(None)
                } else {
                    phone.map(Some)
                },
                wechat_openid: if clear_openid {
                    Some(None)
                } else {
                    openid.map(Some)
                },
            };
            let (customer, created) = ordo
                .upsert_customer(Actor::Operator, &external_id, &change)
                .await?;
            eprintln!(
                "{} customer {}",
                if created { "created" } else { "updated" },
                customer.id
            );
            println!("{}", serde_json::to_string(&customer).unwrap_or_default());
        }
        CustomersCommand::Token {
            id,
            name,
            expires_in,
        } => {
            let (info, token) = ordo
                .issue_customer_token(Actor::Operator, id, name, expires_in)
                .await?;
            println!(
                "created token {} ({}) for customer {} ({}){}; keep it, it is not shown again:",
                info.id,
                info.name,
                info.user_id,
                info.user_name,
                info.expires_at
                    .map(|at| format!(", expires {}", format_rfc3339(at)))
                    .unwrap_or_default()
            );
            println!("{}", token.expose());
        }
        CustomersCommand::List { q, limit, json } => {
            let found = ordo
                .customers(Actor::Operator, q.as_deref(), None, limit)
                .await?;
            if !json {
                println!(
                    "{:>7}  {:<24}  {:<24}  {:<20}",
                    "id", "external id", "name", "phone"
                );
            }
            for c in &found {
                if json {
                    println!("{}", serde_json::to_string(c).unwrap_or_default());
                } else {
                    println!(
                        "{:>7}  {:<24}  {:<24}  {:<20}",
                        c.id,
                        c.external_id.as_deref().unwrap_or("-"),
                        c.display_name.chars().take(24).collect::<String>(),
                        c.phone.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        CustomersCommand::Show { id } => {
            let customer = ordo.customer(Actor::Operator, id).await?;
            println!("{}", serde_json::to_string(&customer).unwrap_or_default());
        }
        CustomersCommand::Erase { id } => {
            let erased = ordo.erase_customer(Actor::Operator, id).await?;
            println!(
                "erased customer {}: its name, phone and openid, and the addresses of {} order(s) in {} event(s)",
                erased.customer.id, erased.orders, erased.events
            );
        }
    }
    ordo.db.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn events_tail(
    settings: &Settings,
    kind: Option<String>,
    after: Option<i64>,
    follow: bool,
) -> Result<ExitCode, Failure> {
    let kind = kind
        .map(|t| crate::events::EventType::parse_field("--type", &t))
        .transpose()
        .map_err(|e| Failure {
            message: e.to_string(),
            status: 2,
        })?;
    let ordo = Ordo::open_with_connections(settings, 1).await?;
    let mut after = match after {
        Some(after) => after,
        None => ordo.last_event_position().await?.saturating_sub(20),
    };
    loop {
        let page = ordo
            .events(
                Actor::Operator,
                &crate::events::EventFilter {
                    after,
                    kind,
                    order_id: None,
                    limit: 500,
                },
            )
            .await?;
        for event in &page {
            println!("{}", serde_json::to_string(event).unwrap_or_default());
            after = event.position;
        }
        if page.len() == 500 {
            continue;
        }
        if !follow {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
            _ = crate::scheduler::signal() => break,
        }
    }
    ordo.db.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Starts the background work this process does: the scheduled jobs and the dispatcher.
fn start_background(
    ordo: &Ordo,
    settings: &Settings,
    shutdown: &crate::scheduler::Shutdown,
    scheduler: bool,
    dispatch: bool,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut jobs = Vec::new();
    if scheduler {
        jobs.push(tokio::spawn(crate::scheduler::run_jobs(
            ordo.clone(),
            sweep_request(settings),
            std::time::Duration::from_secs(settings.sweep_interval_seconds),
            shutdown.clone(),
        )));
    }
    if scheduler
        && settings.backup_interval_minutes > 0
        && ordo.db.dialect() == crate::db::Dialect::Sqlite
    {
        jobs.push(tokio::spawn(crate::backup::run_scheduled(
            ordo.db.clone(),
            crate::backup::backup_dir(settings),
            std::time::Duration::from_secs(u64::from(settings.backup_interval_minutes) * 60),
            settings.backup_keep as usize,
            shutdown.clone(),
        )));
    }
    if dispatch {
        jobs.push(tokio::spawn(crate::payments::shipping::run(
            ordo.clone(),
            shutdown.clone(),
        )));
        jobs.push(tokio::spawn(crate::events::dispatch::run(
            ordo.clone(),
            crate::events::dispatch::DispatchConfig::from_settings(settings),
            shutdown.clone(),
        )));
    }
    jobs
}

async fn serve(
    settings: Settings,
    listen: Option<String>,
    scheduler: bool,
    dispatch: bool,
) -> Result<ExitCode, Failure> {
    let ordo = Ordo::open(&settings).await?;
    let listen = listen.unwrap_or_else(|| settings.listen.clone());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| Failure {
            message: format!("cannot listen on {listen}: {e}"),
            status: 2,
        })?;
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(listen);
    tracing::info!(address, database = %crate::config::redact_url(&settings.database_url), scheduler, dispatch, "ordo serving");
    telemetry::set_intervals(
        settings.sweep_interval_seconds,
        if scheduler {
            settings.backup_interval_minutes
        } else {
            0
        },
    );
    let shutdown = crate::scheduler::Shutdown::new();
    let jobs = start_background(&ordo, &settings, &shutdown, scheduler, dispatch);
    let state = crate::http::AppState::from_settings(ordo.clone(), &settings, shutdown.clone());
    let background = state.jobs.clone();
    let on_signal = {
        let shutdown = shutdown.clone();
        async move {
            crate::scheduler::signal().await;
            tracing::info!("shutting down: finishing requests and the batch in hand");
            shutdown.trigger();
        }
    };
    let served = crate::http::serve(listener, state, on_signal).await;
    shutdown.trigger();
    for job in jobs {
        let _ = job.await;
    }
    background.wait().await;
    if let Err(err) = ordo.flush_token_uses().await {
        tracing::warn!(error = %err, "could not record the last token uses");
    }
    ordo.db.close().await;
    served.map_err(|e| Failure {
        message: format!("server failed: {e}"),
        status: 1,
    })?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn worker(settings: Settings, dispatch: bool) -> Result<ExitCode, Failure> {
    let ordo = Ordo::open(&settings).await?;
    let shutdown = crate::scheduler::Shutdown::new();
    let jobs = start_background(&ordo, &settings, &shutdown, true, dispatch);
    crate::scheduler::signal().await;
    tracing::info!("shutting down: finishing the batch and the deliveries in hand");
    shutdown.trigger();
    for job in jobs {
        let _ = job.await;
    }
    ordo.db.close().await;
    Ok(ExitCode::SUCCESS)
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
