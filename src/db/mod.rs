//! The database: one pool over the sqlx `Any` driver, so every query is written once for
//! SQLite and PostgreSQL. Where the two differ, the difference lives in [`Dialect`].

pub mod audit;
pub mod console;
pub mod customers;
mod dialect;
pub mod events;
pub mod history;
pub mod hosts;
pub mod ledger;
pub mod orders;
pub mod payments;
pub mod placement;
pub mod products;
pub mod reminders;
pub mod sessions;
pub mod shipping;
pub mod sweep;
pub mod sweep_runs;
pub mod users;
pub mod webhooks;

pub use dialect::{Dialect, sqlite_path};

use crate::error::{Error, Result};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Executor, Transaction};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub type Tx = Transaction<'static, Any>;
pub type Conn = sqlx::AnyConnection;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A pool of connections and the dialect they speak.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    dialect: Dialect,
    url: String,
    /// Set when ordo must follow the primary among several PostgreSQL hosts.
    primary: Option<Arc<Primary>>,
}

/// Which of several PostgreSQL hosts is the primary, kept up to date by a monitor task.
#[derive(Debug)]
struct Primary {
    target: hosts::PgTarget,
    current: AtomicUsize,
    /// Connections opened before this instant (the last switch) are dropped, not reused.
    switched: Mutex<Instant>,
    ready: AtomicBool,
    /// Wakes the monitor at once (a connection found a standby).
    check_now: tokio::sync::Notify,
}

/// How often the monitor checks the primary.
const PRIMARY_CHECK: Duration = Duration::from_millis(500);
/// How long a probe of one host may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

impl Primary {
    fn switched_ago(&self) -> Duration {
        self.switched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    fn url(&self) -> String {
        self.target.url_for(self.current.load(Ordering::SeqCst))
    }
}

/// Is host `i` a primary? One fresh connection, `pg_is_in_recovery()`.
async fn probe(target: &hosts::PgTarget, i: usize) -> hosts::Probe {
    let url = target.url_for(i);
    let asked = async {
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await?;
        let standby: i64 = sqlx::query_scalar(
            "SELECT CAST(pg_is_in_recovery() AS INTEGER) + CAST(current_setting('transaction_read_only') = 'on' AS INTEGER)",
        )
        .fetch_one(&mut conn)
        .await?;
        let _ = sqlx::Connection::close(conn).await;
        Ok::<_, sqlx::Error>(standby)
    };
    match tokio::time::timeout(PROBE_TIMEOUT, asked).await {
        Ok(Ok(0)) => hosts::Probe::Primary,
        Ok(Ok(_)) => hosts::Probe::Standby,
        Ok(Err(err)) if is_rejection(&err) => hosts::Probe::Rejected(connect_failure(&err)),
        Ok(Err(err)) => hosts::Probe::Unreachable(connect_failure(&err)),
        Err(_) => {
            hosts::Probe::Unreachable(format!("no answer within {} s", PROBE_TIMEOUT.as_secs()))
        }
    }
}

/// How long ordo waits for a PostgreSQL server to take its first connection at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection could not be made, in an operator's words.
pub fn connect_failure(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused (is PostgreSQL running and listening on that port?)".to_owned()
            }
            std::io::ErrorKind::TimedOut => "the connection timed out".to_owned(),
            _ if io.to_string().contains("lookup") || io.to_string().contains("resolve") => {
                format!("the host name does not resolve ({io})")
            }
            _ => io.to_string(),
        },
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("3D000") => format!("no such database ({})", db.message()),
            Some("28P01") | Some("28000") => format!(
                "authentication failed ({}); check the user, the password and pg_hba.conf",
                db.message()
            ),
            Some("57P03") => "the server is starting up or shutting down".to_owned(),
            Some("53300") => "the server has no connection slot left".to_owned(),
            _ => db.message().to_owned(),
        },
        sqlx::Error::Tls(e) => format!("TLS failed: {e}"),
        other => other.to_string(),
    }
}

/// The server answered and refused us for good: no such database, bad credentials.
fn is_rejection(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("3D000" | "28P01" | "28000")))
}

/// One connection to `url`, within [`CONNECT_TIMEOUT`], or an error that names the host,
/// the database, the user and why: so that a wrong URL or a stopped server is said at once
/// instead of after the pool's 30 s wait.
async fn first_connection(target: &hosts::PgTarget, url: &str) -> Result<()> {
    let attempt = <sqlx::AnyConnection as sqlx::Connection>::connect(url);
    let why = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(Ok(conn)) => {
            let _ = sqlx::Connection::close(conn).await;
            return Ok(());
        }
        Ok(Err(err)) => connect_failure(&err),
        Err(_) => format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
    };
    Err(Error::Unavailable(format!(
        "cannot connect to PostgreSQL at {}, database {:?} as user {:?}: {why}",
        target
            .hosts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        target.database(),
        target.user()
    )))
}

/// Every PostgreSQL connection: no JIT compilation. ordo's statements are short; the
/// server would compile one whose cost estimate passes `jit_above_cost` (a sweep batch over a
/// large table, say), which takes a few hundred milliseconds, far more than running it.
async fn set_up_postgres_session(conn: &mut sqlx::AnyConnection) -> sqlx::Result<()> {
    conn.execute("SET jit = off").await?;
    Ok(())
}

impl Db {
    /// Connects to `url` (`sqlite:` path, or `postgres://`), with up to `max_connections`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db> {
        install_default_drivers();
        let (dialect, url) = Dialect::from_url(url)?;
        let target = match dialect {
            Dialect::Postgres => Some(hosts::PgTarget::parse(&url)?),
            Dialect::Sqlite => None,
        };
        if let Some(target) = target {
            if target.read_write {
                return Self::connect_to_primary(url, target, max_connections).await;
            }
            first_connection(&target, &url).await?;
        }
        // No ping before every checkout: a broken connection shows on first use anyway, and
        // the ping costs a round trip per query.
        let options = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30));
        let pool = match dialect {
            Dialect::Sqlite => {
                // WAL lets readers run beside the one writer; it is a property of the
                // file, so set it once before the pool opens more connections.
                let mut first = <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
                    .await
                    .map_err(|err| {
                        Error::Unavailable(format!(
                            "cannot open the SQLite database {}: {err}",
                            dialect::sqlite_path(&url).display()
                        ))
                    })?;
                first.execute("PRAGMA journal_mode = WAL").await?;
                sqlx::Connection::close(first).await?;
                // A checkpoint (copying the WAL back into the file, with an fsync) after
                // every 10,000 pages written instead of SQLite's 1,000: pages that many
                // commits touch (indexes, the products) are copied once per checkpoint, and
                // the WAL stays under ~40 MiB. The 100,000-order sweep with events: 8.5 s
                // instead of 9.4–10.3 s.
                options
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // secure_delete: what a row no longer holds (an address
                            // corrected, a customer's data erased) is overwritten with zeros,
                            // not left in the file's free space.
                            conn.execute(
                                "PRAGMA busy_timeout = 60000; PRAGMA synchronous = NORMAL; \
                                 PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 10000; \
                                 PRAGMA secure_delete = ON",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Dialect::Postgres => {
                options
                    .after_connect(|conn, _meta| Box::pin(set_up_postgres_session(conn)))
                    .connect(&url)
                    .await?
            }
        };
        Ok(Db {
            pool,
            dialect,
            url,
            primary: None,
        })
    }

    /// Connects to whichever host is the primary (trying them in turn, for up to 30 s at
    /// start), and starts the monitor that follows it: it checks the primary twice a
    /// second and, when it went away or turned read-only, finds the new one; connections
    /// to the old one are dropped as they come back to the pool. While there is no
    /// primary, database calls fail fast (the pool waits at most 5 s) and `is_ready` says
    /// no.
    async fn connect_to_primary(
        url: String,
        target: hosts::PgTarget,
        max_connections: u32,
    ) -> Result<Db> {
        let started = Instant::now();
        let first = loop {
            let chosen = hosts::choose(&target.hosts, |i| {
                let target = target.clone();
                async move { probe(&target, i).await }
            })
            .await;
            match chosen {
                Ok(i) => break i,
                // A cluster may be between primaries at start: worth waiting for, unless
                // every host refused us for good.
                Err(no) if no.rejected || started.elapsed() > Duration::from_secs(30) => {
                    return Err(Error::Unavailable(format!(
                        "{} (database {:?} as user {:?})",
                        no.why,
                        target.database(),
                        target.user()
                    )));
                }
                Err(hosts::NoPrimary { why, .. }) => {
                    tracing::warn!(%why, "waiting for a primary");
                    tokio::time::sleep(PRIMARY_CHECK).await;
                }
            }
        };
        let primary = Arc::new(Primary {
            target,
            current: AtomicUsize::new(first),
            switched: Mutex::new(Instant::now()),
            ready: AtomicBool::new(true),
            check_now: tokio::sync::Notify::new(),
        });
        // Connections opened before the last switch go to the old primary: dropped.
        let (on_acquire, on_release) = (primary.clone(), primary.clone());
        let on_connect = primary.clone();
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(5))
            .before_acquire(move |_conn, meta| {
                let keep = meta.age < on_acquire.switched_ago();
                Box::pin(async move { Ok(keep) })
            })
            .after_release(move |_conn, meta| {
                let keep = meta.age < on_release.switched_ago();
                Box::pin(async move { Ok(keep) })
            })
            .after_connect(move |conn, _meta| {
                let primary = on_connect.clone();
                Box::pin(async move {
                    // Never hand out a connection to a server that does not take writes.
                    let standby: i64 = sqlx::query_scalar(
                        "SELECT CAST(pg_is_in_recovery() AS INTEGER) + CAST(current_setting('transaction_read_only') = 'on' AS INTEGER)",
                    )
                    .fetch_one(&mut *conn)
                    .await?;
                    if standby != 0 {
                        primary.check_now.notify_one();
                        return Err(sqlx::Error::Protocol(
                            "connected to a standby, not the primary".to_owned(),
                        ));
                    }
                    set_up_postgres_session(conn).await
                })
            })
            .connect(&primary.url())
            .await?;
        tracing::info!(host = %primary.target.hosts[first], "connected to the primary");
        tokio::spawn(follow_primary(pool.clone(), primary.clone()));
        Ok(Db {
            pool,
            dialect: Dialect::Postgres,
            url,
            primary: Some(primary),
        })
    }

    /// A SQLite file opened read-only, as it is: no WAL switch, no migration, one
    /// connection. For checking a backup before it is published.
    pub async fn open_sqlite_read_only(path: &std::path::Path) -> Result<Db> {
        install_default_drivers();
        let url = format!("sqlite://{}?mode=ro", path.display());
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect(&url)
            .await?;
        Ok(Db {
            pool,
            dialect: Dialect::Sqlite,
            url,
            primary: None,
        })
    }

    /// The migration versions this build knows, for its dialect.
    pub fn known_migrations(&self) -> Vec<i64> {
        let migrator = match self.dialect {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.iter().map(|m| m.version).collect()
    }

    /// Whether a primary is known to be reachable (always, without a host list).
    pub fn is_ready(&self) -> bool {
        self.primary
            .as_ref()
            .is_none_or(|p| p.ready.load(Ordering::SeqCst))
    }

    /// Where a PostgreSQL listener (for delivery notifications) connects, now: the current
    /// primary's; `None` on SQLite.
    pub fn listen_url(&self) -> Option<String> {
        match (&self.primary, self.dialect) {
            (Some(primary), _) => Some(primary.url()),
            (None, Dialect::Postgres) => Some(self.url.clone()),
            (None, Dialect::Sqlite) => None,
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Applies the migrations for this dialect; applying them twice is a no-op.
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.dialect {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Starts a transaction that will write. On SQLite it takes the write lock up front
    /// (`BEGIN IMMEDIATE`), so two writers queue instead of failing on lock upgrade; on
    /// PostgreSQL rows are locked as statements touch them.
    pub async fn write_tx(&self) -> Result<Tx> {
        let tx = match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        };
        Ok(tx)
    }

    /// After personal data was overwritten (an erasure): on SQLite, the write-ahead log is
    /// copied into the database file and emptied, so the pages that held the old data are
    /// gone from it too. (On PostgreSQL old row versions are the server's; `VACUUM` reclaims
    /// them, and no dump ever shows them.) A reader still using the old pages makes this a
    /// partial checkpoint; the next one finishes it.
    pub async fn forget_overwritten(&self) {
        if self.dialect == Dialect::Sqlite
            && let Err(err) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.pool)
                .await
        {
            tracing::warn!(error = %err, "could not checkpoint the write-ahead log");
        }
    }

    /// Is the database reachable?
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Errors that mean "the database cannot be reached right now", not "this request is
/// wrong": a lost or refused connection, an exhausted pool, a server shutting down or
/// starting up, a server that turned read-only under us (a demoted primary).
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08xxx connection exceptions; 25006 read-only transaction (a standby);
            // 57P01-57P03 admin or crash shutdown, cannot connect now; 40001/40P01 are not
            // here: they are retried. SQLITE_BUSY (5) and SQLITE_LOCKED (6) after the busy
            // timeout.
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "25006" | "57P01" | "57P02" | "57P03" | "5" | "6"
                )
        }),
        _ => false,
    }
}

/// The monitor: checks the current primary every [`PRIMARY_CHECK`] (or at once when a
/// connection found a standby) and, when it is gone or read-only, probes the hosts in
/// turn and points the pool at the first primary. Ends when the pool is closed.
async fn follow_primary(pool: AnyPool, primary: Arc<Primary>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(PRIMARY_CHECK) => {}
            _ = primary.check_now.notified() => {}
            _ = pool.close_event() => return,
        }
        let current = primary.current.load(Ordering::SeqCst);
        if probe(&primary.target, current).await == hosts::Probe::Primary {
            primary.ready.store(true, Ordering::SeqCst);
            continue;
        }
        let chosen = hosts::choose(&primary.target.hosts, |i| {
            let target = primary.target.clone();
            async move { probe(&target, i).await }
        })
        .await;
        match chosen {
            Ok(i) => {
                if i != current {
                    let options: sqlx::any::AnyConnectOptions =
                        match primary.target.url_for(i).parse() {
                            Ok(options) => options,
                            Err(err) => {
                                tracing::error!(error = %err, "cannot use the new primary's URL");
                                continue;
                            }
                        };
                    pool.set_connect_options(options);
                    primary.current.store(i, Ordering::SeqCst);
                    *primary.switched.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                    tracing::warn!(host = %primary.target.hosts[i], "the database primary changed; following it");
                    metrics::counter!("ordo_database_failovers_total").increment(1);
                }
                primary.ready.store(true, Ordering::SeqCst);
            }
            Err(hosts::NoPrimary { why, .. }) => {
                if primary.ready.swap(false, Ordering::SeqCst) {
                    tracing::error!(%why, "no database primary; requests answer 503 until one is back");
                }
            }
        }
    }
}

/// Maps a unique-constraint violation to a caller-facing error; anything else stays internal.
pub(crate) fn on_unique_violation(
    err: sqlx::Error,
    constraint: &str,
    then: impl FnOnce() -> Error,
) -> Error {
    if let sqlx::Error::Database(db) = &err {
        let unique = db.kind() == sqlx::error::ErrorKind::UniqueViolation;
        // PostgreSQL names the constraint; SQLite names the columns in its message.
        let names_it = db.constraint() == Some(constraint) || db.message().contains(constraint);
        if unique && (names_it || db.constraint().is_none()) {
            return then();
        }
    }
    Error::Database(err)
}

/// A boolean column read as an integer. The `Any` driver maps no SQLite type to `bool`,
/// so queries select `CAST(flag AS INTEGER)` and rows decode it through this.
#[derive(Debug, Clone, Copy)]
pub struct DbFlag(bool);

impl sqlx::Type<Any> for DbFlag {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <i64 as sqlx::Type<Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <i64 as sqlx::Type<Any>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Any> for DbFlag {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(DbFlag(<i64 as sqlx::Decode<'r, Any>>::decode(value)? != 0))
    }
}

impl From<DbFlag> for bool {
    fn from(flag: DbFlag) -> bool {
        flag.0
    }
}

/// A text column that may be NULL and holds JSON (an order's shipping address), read as
/// its text: the `Any` driver decodes no JSON type, and a NULL must not fail the row.
#[derive(Debug, Clone)]
pub struct JsonColumn(Option<String>);

impl sqlx::Type<Any> for JsonColumn {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <String as sqlx::Type<Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <String as sqlx::Type<Any>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Any> for JsonColumn {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        use sqlx::ValueRef;
        if value.is_null() {
            return Ok(JsonColumn(None));
        }
        Ok(JsonColumn(Some(<String as sqlx::Decode<'r, Any>>::decode(
            value,
        )?)))
    }
}

impl JsonColumn {
    pub fn new(text: Option<String>) -> JsonColumn {
        JsonColumn(text)
    }
}

impl TryFrom<JsonColumn> for Option<crate::domain::ShippingAddress> {
    type Error = serde_json::Error;

    fn try_from(column: JsonColumn) -> Result<Self, Self::Error> {
        column
            .0
            .filter(|text| !text.is_empty())
            .map(|text| serde_json::from_str(&text))
            .transpose()
    }
}

/// Leases claimed rows of an outbox-like `table` (webhook deliveries, WeChat shipping
/// uploads) until `until`: no other worker claims them before then.
async fn lease(
    conn: &mut Conn,
    dialect: Dialect,
    table: &'static str,
    ids: &[i64],
    until: crate::domain::Millis,
) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET leased_until = $2 WHERE {}",
        dialect.in_ids("id", 1)
    )))
    .bind(serde_json::to_string(ids).unwrap_or_default())
    .bind(until)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
