//! The database: one pool over the sqlx `Any` driver, so every query is written once for
//! SQLite and PostgreSQL. Where the two differ, the difference lives in [`Dialect`].

pub mod audit;
pub mod console;
mod dialect;
pub mod events;
pub mod history;
pub mod ledger;
pub mod orders;
pub mod payments;
pub mod placement;
pub mod products;
pub mod sessions;
pub mod sweep;
pub mod sweep_runs;
pub mod users;
pub mod webhooks;

pub use dialect::Dialect;

use crate::error::{Error, Result};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Executor, Transaction};
use std::time::Duration;

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
}

impl Db {
    /// Connects to `url` (`sqlite:` path, or `postgres://`), with up to `max_connections`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db> {
        install_default_drivers();
        let (dialect, url) = Dialect::from_url(url)?;
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
                let mut first = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await?;
                first.execute("PRAGMA journal_mode = WAL").await?;
                sqlx::Connection::close(first).await?;
                options
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            conn.execute(
                                "PRAGMA busy_timeout = 60000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Dialect::Postgres => options.connect(&url).await?,
        };
        Ok(Db { pool, dialect, url })
    }

    /// Where a PostgreSQL listener (for delivery notifications) connects; `None` on SQLite.
    pub fn listen_url(&self) -> Option<String> {
        (self.dialect == Dialect::Postgres).then(|| self.url.clone())
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
