//! The record of every sweep run: who started it, how, and what it did.

use super::Conn;
use crate::domain::Millis;
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RunRow {
    pub id: i64,
    pub trigger: String,
    pub actor: String,
    pub dry_run: i64,
    pub timeout_minutes: i64,
    pub cutoff: Millis,
    pub state: String,
    pub started_at: Millis,
    pub heartbeat_at: Millis,
    pub finished_at: Option<Millis>,
    pub found: i64,
    pub cancelled: i64,
    pub would_cancel: i64,
    pub skipped: i64,
    pub errors: i64,
    pub units_released: i64,
    pub duration_ms: i64,
    pub stopped_reason: Option<String>,
    pub failures: String,
    pub queried: i64,
    pub found_paid: i64,
    pub closed: i64,
    pub deferred: i64,
}

const COLUMNS: &str = "id, trigger, actor, CAST(dry_run AS INTEGER) AS dry_run, timeout_minutes, \
     cutoff, state, started_at, heartbeat_at, finished_at, found, cancelled, would_cancel, skipped, \
     errors, units_released, duration_ms, stopped_reason, failures, queried, found_paid, closed, deferred";

pub async fn insert(
    conn: &mut Conn,
    trigger: &str,
    actor: &str,
    dry_run: bool,
    timeout_minutes: i64,
    cutoff: Millis,
    now: Millis,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO sweep_runs (trigger, actor, dry_run, timeout_minutes, cutoff, state, started_at, heartbeat_at)
         VALUES ($1, $2, $3, $4, $5, 'running', $6, $6) RETURNING id",
    )
    .bind(trigger)
    .bind(actor)
    .bind(dry_run)
    .bind(timeout_minutes)
    .bind(cutoff)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?)
}

/// What a run has done so far, or in all.
pub struct Progress<'a> {
    pub state: &'a str,
    pub found: i64,
    pub cancelled: i64,
    pub would_cancel: i64,
    pub skipped: i64,
    pub errors: i64,
    pub units_released: i64,
    pub duration_ms: i64,
    pub stopped_reason: Option<&'a str>,
    pub failures: &'a str,
    pub finished_at: Option<Millis>,
    pub queried: i64,
    pub found_paid: i64,
    pub closed: i64,
    pub deferred: i64,
}

pub async fn update(conn: &mut Conn, id: i64, p: &Progress<'_>, now: Millis) -> Result<()> {
    sqlx::query(
        "UPDATE sweep_runs SET state = $2, found = $3, cancelled = $4, would_cancel = $5, skipped = $6,
                errors = $7, units_released = $8, duration_ms = $9, stopped_reason = $10,
                failures = $11, finished_at = $12, heartbeat_at = $13, queried = $14,
                found_paid = $15, closed = $16, deferred = $17
         WHERE id = $1",
    )
    .bind(id)
    .bind(p.state)
    .bind(p.found)
    .bind(p.cancelled)
    .bind(p.would_cancel)
    .bind(p.skipped)
    .bind(p.errors)
    .bind(p.units_released)
    .bind(p.duration_ms)
    .bind(p.stopped_reason)
    .bind(p.failures)
    .bind(p.finished_at)
    .bind(now)
    .bind(p.queried)
    .bind(p.found_paid)
    .bind(p.closed)
    .bind(p.deferred)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<RunRow>> {
    Ok(sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM sweep_runs WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Runs newest first, before the cursor `before_id`.
pub async fn list(conn: &mut Conn, before_id: Option<i64>, limit: i64) -> Result<Vec<RunRow>> {
    Ok(sqlx::query_as::<_, RunRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM sweep_runs WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
    )))
    .bind(before_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// Orders the sweep cancelled per quarter-hour (unix milliseconds / 900,000) since `since`:
/// the console adds them up into the hours of its time zone.
pub async fn cancelled_per_quarter(conn: &mut Conn, since: Millis) -> Result<Vec<(i64, i64)>> {
    Ok(sqlx::query_as(
        "SELECT CAST(started_at / 900000 AS BIGINT) AS quarter, CAST(SUM(cancelled) AS BIGINT)
         FROM sweep_runs WHERE started_at >= $1 AND cancelled > 0
         GROUP BY CAST(started_at / 900000 AS BIGINT) ORDER BY quarter",
    )
    .bind(since)
    .fetch_all(&mut *conn)
    .await?)
}

/// The newest real (not dry) runs, for monitoring: when the newest finished one ended, and
/// how many orders failed in the newest one that is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LastRuns {
    pub finished_at: Option<Millis>,
    pub errors: i64,
}

/// Walks the runs newest first (the primary key backwards), so it reads a few rows
/// however long the record.
pub async fn last_real_runs(conn: &mut Conn) -> Result<LastRuns> {
    let finished_at: Option<Millis> = sqlx::query_scalar(
        "SELECT finished_at FROM sweep_runs WHERE state = 'finished' AND NOT dry_run
         ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?
    .flatten();
    let errors: Option<i64> = sqlx::query_scalar(
        "SELECT errors FROM sweep_runs WHERE state <> 'running' AND NOT dry_run
         ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(LastRuns {
        finished_at,
        errors: errors.unwrap_or(0),
    })
}
