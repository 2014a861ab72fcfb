//! Shipping information waiting to be uploaded to WeChat: one row per shipped order paid
//! through WeChat Pay JSAPI, written in the shipping transaction, claimed for one attempt
//! at a time (a lease, and on PostgreSQL `FOR UPDATE SKIP LOCKED`) and settled after it.

use super::{Conn, Dialect};
use crate::domain::Millis;
use crate::error::Result;

/// An upload as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UploadRow {
    pub id: i64,
    pub order_id: i64,
    pub payment_id: i64,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<Millis>,
    pub leased_until: Option<Millis>,
    pub last_attempt_at: Option<Millis>,
    pub last_error: Option<String>,
    pub accepted_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

const COLUMNS: &str = "id, order_id, payment_id, status, attempts, next_attempt_at, leased_until, \
     last_attempt_at, last_error, accepted_at, created_at, updated_at";

/// Records an upload due now. An order shipped again (after a refund was rejected) is
/// uploaded again.
pub async fn insert(conn: &mut Conn, order_id: i64, payment_id: i64, now: Millis) -> Result<()> {
    sqlx::query(
        "INSERT INTO wechat_shipping_uploads
           (order_id, payment_id, status, attempts, next_attempt_at, created_at, updated_at)
         VALUES ($1, $2, 'pending', 0, $3, $3, $3)
         ON CONFLICT (order_id) DO UPDATE SET payment_id = excluded.payment_id,
             status = 'pending', attempts = 0, next_attempt_at = excluded.next_attempt_at,
             leased_until = NULL, last_error = NULL, accepted_at = NULL,
             updated_at = excluded.updated_at",
    )
    .bind(order_id)
    .bind(payment_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// An order's upload, if it has one.
pub async fn of_order(conn: &mut Conn, order_id: i64) -> Result<Option<UploadRow>> {
    Ok(sqlx::query_as::<_, UploadRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM wechat_shipping_uploads WHERE order_id = $1"
    )))
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Claims up to `limit` due uploads for one attempt each, leased until `lease_until`.
pub async fn claim_due(
    conn: &mut Conn,
    dialect: Dialect,
    limit: i64,
    lease_until: Millis,
    now: Millis,
) -> Result<Vec<UploadRow>> {
    let claimed: Vec<UploadRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM wechat_shipping_uploads
         WHERE status IN ('pending', 'failed') AND next_attempt_at <= $1
           AND (leased_until IS NULL OR leased_until <= $1)
         ORDER BY next_attempt_at, id LIMIT $2{}",
        dialect.for_update_skip_locked()
    )))
    .bind(now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    if claimed.is_empty() {
        return Ok(claimed);
    }
    let ids: Vec<i64> = claimed.iter().map(|u| u.id).collect();
    super::lease(conn, dialect, "wechat_shipping_uploads", &ids, lease_until).await?;
    Ok(claimed)
}

/// What an attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub id: i64,
    /// `succeeded`, `failed` or `dead`.
    pub status: &'static str,
    pub next_attempt_at: Option<Millis>,
    pub error: Option<String>,
    pub attempted_at: Millis,
}

/// Records the attempts of a round (each releases its lease).
pub async fn settle(conn: &mut Conn, settled: &[Settled], now: Millis) -> Result<()> {
    for s in settled {
        sqlx::query(
            "UPDATE wechat_shipping_uploads SET status = $2, attempts = attempts + 1,
                    next_attempt_at = $3, last_attempt_at = $4, last_error = $5,
                    accepted_at = CASE WHEN $2 = 'succeeded' THEN $4 ELSE accepted_at END,
                    leased_until = NULL, updated_at = $6
             WHERE id = $1",
        )
        .bind(s.id)
        .bind(s.status)
        .bind(s.next_attempt_at)
        .bind(s.attempted_at)
        .bind(s.error.as_deref())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Makes an order's upload due now again (staff try again); `false` when it has none that
/// WeChat has not accepted, or one is being attempted right now.
pub async fn retry(conn: &mut Conn, order_id: i64, now: Millis) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE wechat_shipping_uploads SET status = 'pending', next_attempt_at = $2, updated_at = $2
         WHERE order_id = $1 AND status <> 'succeeded'
           AND (leased_until IS NULL OR leased_until <= $2)",
    )
    .bind(order_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Uploads that gave up, for monitoring.
pub async fn count_dead(conn: &mut Conn) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM wechat_shipping_uploads WHERE status = 'dead'")
            .fetch_one(&mut *conn)
            .await?,
    )
}
