//! Backups of a SQLite database, taken while ordo serves, and restores into an empty one.
//!
//! A backup is one read transaction (`VACUUM INTO`): a consistent copy that writers never
//! wait for. It is written under a temporary name (`NAME.partial`), checked
//! (`PRAGMA integrity_check`), synced and only then renamed, so a file with a backup's
//! name is always complete; `ordo check` then reads the copy. PostgreSQL is backed up with
//! its own tools (pg_dump, pgBackRest): [`postgres_advice`] says how.

use crate::Ordo;
use crate::check::Finding;
use crate::config::{Settings, redact_url};
use crate::db::{Db, Dialect};
use crate::scheduler::Shutdown;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Why a backup or a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Asked for something ordo will not do, and nothing was changed: PostgreSQL, a file
    /// that exists, a database that is not empty (exit status 2).
    #[error("{0}")]
    Refused(String),
    /// It was tried and failed; nothing under the backup's (or the database's) name was
    /// written (exit status 1).
    #[error("{0}")]
    Failed(String),
}

impl From<crate::Error> for BackupError {
    fn from(err: crate::Error) -> Self {
        match err {
            crate::Error::Config(why) => BackupError::Refused(why),
            other => BackupError::Failed(other.to_string()),
        }
    }
}

fn io_failed(what: &str, path: &Path, err: std::io::Error) -> BackupError {
    BackupError::Failed(format!("{what} {}: {err}", path.display()))
}

/// A backup written and checked.
#[derive(Debug, Clone)]
pub struct Backup {
    pub path: PathBuf,
    pub bytes: u64,
    pub took: Duration,
    /// Orders in the copy.
    pub orders: i64,
    /// What `ordo check` found in the copy (the database had it too).
    pub findings: Vec<Finding>,
}

impl Backup {
    /// What was written, for the operator: the file, its size, the orders in it and what
    /// the checks said.
    pub fn describe(&self) -> String {
        let mut said = format!(
            "backup written: {} ({} bytes, {} orders, {:.2} s); integrity ok; ordo check: {}",
            self.path.display(),
            self.bytes,
            self.orders,
            self.took.as_secs_f64(),
            if self.findings.is_empty() {
                "ok".to_owned()
            } else {
                format!("{} finding(s)", self.findings.len())
            }
        );
        for finding in &self.findings {
            said.push_str(&format!("\n{}: {}", finding.check, finding.detail));
        }
        said
    }
}

/// Backs up the configured database into `to`, or a stamped name of this `kind` in
/// backup_dir. On PostgreSQL it is refused with [`postgres_advice`].
pub async fn backup_configured(
    settings: &Settings,
    to: Option<PathBuf>,
    kind: &str,
) -> Result<Backup, BackupError> {
    let (dialect, url) = Dialect::from_url(&settings.database_url)?;
    if dialect == Dialect::Postgres {
        return Err(BackupError::Refused(postgres_advice(&url)));
    }
    let file = crate::db::sqlite_path(&url);
    if !file.is_file() {
        return Err(BackupError::Refused(format!(
            "there is no database at {} to back up",
            file.display()
        )));
    }
    let to = to.unwrap_or_else(|| stamped_name(&backup_dir(settings), kind));
    let db = Db::connect(&url, 1).await?;
    let taken = backup(&db, &to).await;
    db.close().await;
    taken
}

/// What `ordo backup` says on PostgreSQL: the tools to use, for this database.
pub fn postgres_advice(url: &str) -> String {
    let url = redact_url(url);
    format!(
        "ordo backup copies SQLite databases; back up PostgreSQL with its own tools:\n\
         \x20 pg_dump --format=custom --file ordo.dump '{url}'\n\
         \x20   a consistent copy taken while ordo serves; restore it into an empty database\n\
         \x20   with pg_restore --exit-on-error --no-owner --dbname NEW_DATABASE_URL ordo.dump\n\
         \x20 pgBackRest (or WAL archiving with pg_basebackup) for point-in-time recovery of a\n\
         \x20   busy shop\n\
         docs/operations.md describes both and the restore drill."
    )
}

/// Where backups go: `backup_dir`, else `backups` beside the SQLite file.
pub fn backup_dir(settings: &Settings) -> PathBuf {
    if let Some(dir) = &settings.backup_dir {
        return PathBuf::from(dir);
    }
    let file = crate::db::sqlite_path(&settings.database_url);
    match file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.join("backups"),
        _ => PathBuf::from("backups"),
    }
}

/// `DIR/ordo-KIND-20261125T093000.123Z.db`: names that sort by time.
pub fn stamped_name(dir: &Path, kind: &str) -> PathBuf {
    let now = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    dir.join(format!("ordo-{kind}-{now}.db"))
}

fn partial_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// Fsyncs a directory, so that a rename in it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_failed("cannot sync the directory", dir, e))
}

/// Copies the SQLite database `db` to `to`, consistently, while others write to it.
pub async fn backup(db: &Db, to: &Path) -> Result<Backup, BackupError> {
    backup_then(db, to, || {}).await
}

/// [`backup`], running `before_publishing` once the copy is whole and checked, just before
/// it takes its name.
async fn backup_then(
    db: &Db,
    to: &Path,
    before_publishing: impl FnOnce(),
) -> Result<Backup, BackupError> {
    if db.dialect() != Dialect::Sqlite {
        return Err(BackupError::Refused(
            "ordo backup copies SQLite databases; see docs/operations.md for PostgreSQL".into(),
        ));
    }
    let started = Instant::now();
    if to.exists() {
        return Err(BackupError::Refused(format!(
            "{} exists; give another name (or remove it first)",
            to.display()
        )));
    }
    let dir = to.parent().unwrap_or(Path::new(""));
    if !dir.as_os_str().is_empty() {
        std::fs::create_dir_all(dir)
            .map_err(|e| io_failed("cannot create the backup directory", dir, e))?;
    }
    let partial = partial_name(to);
    // A leftover of a backup that was killed: VACUUM INTO writes only into a new file.
    match std::fs::remove_file(&partial) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_failed("cannot remove", &partial, e)),
    }
    let written = write_checked_copy(db, &partial).await;
    let copy = match written {
        Ok(copy) => copy,
        Err(err) => {
            let _ = std::fs::remove_file(&partial);
            return Err(err);
        }
    };
    before_publishing();
    std::fs::rename(&partial, to).map_err(|e| io_failed("cannot rename", &partial, e))?;
    sync_dir(dir)?;
    let bytes = std::fs::metadata(to).map(|m| m.len()).unwrap_or(0);
    Ok(Backup {
        path: to.to_owned(),
        bytes,
        took: started.elapsed(),
        orders: copy.0,
        findings: copy.1,
    })
}

/// Writes the copy to `partial`, makes it one self-contained file, checks it and syncs it:
/// (orders, what `ordo check` found).
async fn write_checked_copy(db: &Db, partial: &Path) -> Result<(i64, Vec<Finding>), BackupError> {
    let target = partial
        .to_str()
        .ok_or_else(|| BackupError::Refused(format!("{} is not UTF-8", partial.display())))?;
    sqlx::query("VACUUM INTO $1")
        .bind(target)
        .execute(db.pool())
        .await
        .map_err(|e| BackupError::Failed(format!("cannot copy the database: {e}")))?;
    {
        use sqlx::Connection;
        let url = format!("sqlite://{target}?mode=rw");
        let mut conn = sqlx::AnyConnection::connect(&url)
            .await
            .map_err(|e| BackupError::Failed(format!("cannot open the copy: {e}")))?;
        // One file, no -wal beside it: what is copied elsewhere is the whole backup.
        let _: Option<String> = sqlx::query_scalar("PRAGMA journal_mode = DELETE")
            .fetch_optional(&mut conn)
            .await
            .map_err(|e| BackupError::Failed(format!("cannot prepare the copy: {e}")))?;
        let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(&mut conn)
            .await
            .map_err(|e| BackupError::Failed(format!("cannot check the copy: {e}")))?;
        let _ = conn.close().await;
        if integrity != ["ok"] {
            return Err(BackupError::Failed(format!(
                "the copy failed PRAGMA integrity_check: {}",
                integrity.join("; ")
            )));
        }
    }
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_failed("cannot sync", partial, e))?;
    let copy = Db::open_sqlite_read_only(partial).await?;
    let ordo = Ordo::new(
        copy.clone(),
        crate::Policy::default(),
        crate::Clock::system(),
    );
    let checked = async {
        let report = ordo.check().await?;
        let orders: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
            .fetch_one(copy.pool())
            .await?;
        Ok::<_, crate::Error>((orders, report.findings))
    }
    .await;
    copy.close().await;
    checked.map_err(|e| BackupError::Failed(format!("cannot run ordo check on the copy: {e}")))
}

/// A backup restored.
#[derive(Debug, Clone)]
pub struct Restored {
    pub path: PathBuf,
    pub orders: i64,
    pub findings: Vec<Finding>,
}

/// Fills the empty SQLite database at `to_url` from the backup `from`, then brings it to
/// this build's migrations and checks it. A database that holds any table is refused and
/// left as it was.
pub async fn restore(from: &Path, to_url: &str) -> Result<Restored, BackupError> {
    let (dialect, url) = Dialect::from_url(to_url)?;
    if dialect == Dialect::Postgres {
        return Err(BackupError::Refused(format!(
            "ordo restore reads SQLite backups into SQLite; restore PostgreSQL with \
             pg_restore --exit-on-error --no-owner --dbname '{}' FILE.dump into an empty \
             database (docs/operations.md)",
            redact_url(&url)
        )));
    }
    if !from.is_file() {
        return Err(BackupError::Refused(format!(
            "{} is not a file",
            from.display()
        )));
    }
    let to = crate::db::sqlite_path(&url);
    check_backup(from).await?;
    if to.exists() {
        let tables = count_tables(&to).await?;
        if tables > 0 {
            return Err(BackupError::Refused(format!(
                "{} is not empty ({tables} tables); ordo restores only into an empty database: \
                 give a new path, or move this one away first",
                to.display()
            )));
        }
    }
    let dir = to.parent().unwrap_or(Path::new(""));
    if !dir.as_os_str().is_empty() {
        std::fs::create_dir_all(dir).map_err(|e| io_failed("cannot create", dir, e))?;
    }
    let partial = partial_name(&to);
    let copied =
        std::fs::copy(from, &partial).and_then(|_| std::fs::File::open(&partial)?.sync_all());
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&partial);
        return Err(io_failed("cannot write", &partial, e));
    }
    // The empty database's journal files belong to nothing now.
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = to.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
    std::fs::rename(&partial, &to).map_err(|e| io_failed("cannot rename", &partial, e))?;
    sync_dir(dir)?;
    let db = Db::connect(&url, 2).await?;
    let checked = async {
        db.migrate().await?;
        let ordo = Ordo::new(db.clone(), crate::Policy::default(), crate::Clock::system());
        let report = ordo.check().await?;
        let orders: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
            .fetch_one(db.pool())
            .await?;
        Ok::<_, crate::Error>((orders, report.findings))
    }
    .await;
    db.close().await;
    let (orders, findings) = checked?;
    Ok(Restored {
        path: to,
        orders,
        findings,
    })
}

/// Is `from` a whole ordo database this build can take?
async fn check_backup(from: &Path) -> Result<(), BackupError> {
    let not_a_backup = |why: String| {
        BackupError::Refused(format!("{} is not an ordo backup: {why}", from.display()))
    };
    let db = Db::open_sqlite_read_only(from)
        .await
        .map_err(|e| not_a_backup(e.to_string()))?;
    let read = async {
        let integrity: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_all(db.pool())
            .await?;
        let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
            .fetch_all(db.pool())
            .await?;
        Ok::<_, sqlx::Error>((integrity, versions))
    }
    .await;
    let known = db.known_migrations();
    db.close().await;
    let (integrity, versions) = read.map_err(|e| not_a_backup(e.to_string()))?;
    if integrity != ["ok"] {
        return Err(BackupError::Failed(format!(
            "{} fails PRAGMA integrity_check: {}",
            from.display(),
            integrity.join("; ")
        )));
    }
    if let Some(newer) = versions.iter().find(|v| !known.contains(v)) {
        return Err(BackupError::Refused(format!(
            "{} was made by a newer ordo (migration {newer}); restore it with that version",
            from.display()
        )));
    }
    Ok(())
}

async fn count_tables(path: &Path) -> Result<i64, BackupError> {
    let db = Db::open_sqlite_read_only(path)
        .await
        .map_err(|e| BackupError::Refused(format!("cannot read {}: {e}", path.display())))?;
    let tables = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'")
        .fetch_one(db.pool())
        .await;
    db.close().await;
    tables.map_err(|e| BackupError::Refused(format!("cannot read {}: {e}", path.display())))
}

const SNAPSHOT: &str = "snapshot";

/// The scheduled snapshots in `dir`, oldest first (their names sort by time).
fn snapshots(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("ordo-snapshot-") && n.ends_with(".db"))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    found.sort();
    Ok(found)
}

/// Keeps the newest `keep` scheduled snapshots in `dir` and removes the rest (other files,
/// such as `ordo backup`'s or `--backup-first`'s, are never touched). Returns what it removed.
pub fn prune_snapshots(dir: &Path, keep: usize) -> std::io::Result<Vec<PathBuf>> {
    let all = snapshots(dir)?;
    let excess = all.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for old in all.into_iter().take(excess) {
        std::fs::remove_file(&old)?;
        removed.push(old);
    }
    Ok(removed)
}

/// When the newest scheduled snapshot in `dir` was written.
fn newest_snapshot(dir: &Path) -> Option<SystemTime> {
    snapshots(dir)
        .ok()?
        .last()
        .and_then(|p| std::fs::metadata(p).ok()?.modified().ok())
}

/// Takes a snapshot into `dir` every `interval` (the first one `interval` after the newest
/// one there, or at once when that is overdue), keeping the newest `keep`, until shutdown.
pub async fn run_scheduled(
    db: Db,
    dir: PathBuf,
    interval: Duration,
    keep: usize,
    shutdown: Shutdown,
) {
    tracing::info!(dir = %dir.display(), interval_s = interval.as_secs_f64(), keep, "scheduled snapshots");
    let newest = newest_snapshot(&dir);
    metrics::gauge!("ordo_backup_last_success_timestamp_seconds")
        .set(newest.map_or(0.0, unix_seconds));
    let since_last = newest.and_then(|at| at.elapsed().ok());
    let mut wait = since_last.map_or(Duration::ZERO, |ago| interval.saturating_sub(ago));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait() => break,
        }
        if shutdown.is_triggered() {
            break;
        }
        wait = interval;
        // The oldest go before the new one takes its name: never more than `keep`.
        let make_room = || {
            if let Err(err) = prune_snapshots(&dir, keep.saturating_sub(1)) {
                tracing::warn!(error = %err, dir = %dir.display(), "could not remove old snapshots");
            }
        };
        match backup_then(&db, &stamped_name(&dir, SNAPSHOT), make_room).await {
            Ok(taken) => {
                metrics::counter!("ordo_backups_total").increment(1);
                metrics::gauge!("ordo_backup_last_success_timestamp_seconds")
                    .set(unix_seconds(SystemTime::now()));
                tracing::info!(path = %taken.path.display(), bytes = taken.bytes,
                    took_ms = taken.took.as_millis() as u64, orders = taken.orders,
                    findings = taken.findings.len(), "snapshot written");
            }
            Err(err) => {
                metrics::counter!("ordo_backup_failures_total").increment(1);
                tracing::error!(error = %err, dir = %dir.display(), "snapshot failed");
            }
        }
    }
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
