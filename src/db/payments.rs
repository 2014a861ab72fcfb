//! Payment rows and the provider's event ids (which make the webhook idempotent).

use super::{Conn, Dialect};
use crate::domain::{Millis, Payment, PaymentStatus};
use crate::error::Result;

pub(crate) const COLUMNS: &str = "id, order_id, amount_cents, method, status, expires_at, provider_ref, \
     CAST(refund_required AS INTEGER) AS refund_required, refund_ref, created_at, updated_at";

pub async fn insert(
    conn: &mut Conn,
    order_id: i64,
    amount_cents: i64,
    method: &str,
    expires_at: Millis,
    now: Millis,
) -> Result<Payment> {
    Ok(sqlx::query_as::<_, Payment>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO payments (order_id, amount_cents, method, status, expires_at, refund_required, created_at, updated_at)
         VALUES ($1, $2, $3, 'pending', $4, FALSE, $5, $5) RETURNING {COLUMNS}"
    )))
    .bind(order_id)
    .bind(amount_cents)
    .bind(method)
    .bind(expires_at)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?)
}

pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<Payment>> {
    Ok(sqlx::query_as::<_, Payment>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM payments WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Locks one payment (PostgreSQL); callers hold its order's lock first.
pub async fn lock(conn: &mut Conn, dialect: Dialect, id: i64) -> Result<Option<Payment>> {
    Ok(sqlx::query_as::<_, Payment>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM payments WHERE id = $1{}",
        dialect.for_update()
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

pub async fn for_order(conn: &mut Conn, order_id: i64) -> Result<Vec<Payment>> {
    Ok(sqlx::query_as::<_, Payment>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM payments WHERE order_id = $1 ORDER BY id"
    )))
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?)
}

pub async fn set_status(
    conn: &mut Conn,
    id: i64,
    status: PaymentStatus,
    provider_ref: Option<&str>,
    now: Millis,
) -> Result<()> {
    sqlx::query(
        "UPDATE payments SET status = $2, provider_ref = COALESCE($3, provider_ref), updated_at = $4
         WHERE id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(provider_ref)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn flag_refund_required(conn: &mut Conn, id: i64, now: Millis) -> Result<()> {
    sqlx::query("UPDATE payments SET refund_required = TRUE, updated_at = $2 WHERE id = $1")
        .bind(id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Closes the open payments of the given orders (a JSON array of ids): those past their
/// expiry become `expired`, the others `if_unexpired`. Returns how many changed.
pub async fn close_open_of_orders(
    conn: &mut Conn,
    dialect: Dialect,
    order_ids_json: &str,
    if_unexpired: PaymentStatus,
    now: Millis,
) -> Result<u64> {
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE payments SET status = CASE WHEN expires_at <= $2 THEN 'expired' ELSE $3 END, updated_at = $2
         WHERE status = 'pending' AND {}",
        dialect.in_ids("order_id", 1)
    )))
    .bind(order_ids_json)
    .bind(now)
    .bind(if_unexpired.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// Marks the succeeded payments of the given orders as `refunded` (`refund_required` off)
/// or as needing a refund.
pub async fn settle_succeeded_of_order(
    conn: &mut Conn,
    order_id: i64,
    refunded: bool,
    now: Millis,
) -> Result<()> {
    let sql = if refunded {
        "UPDATE payments SET status = 'refunded', refund_required = FALSE, updated_at = $2
         WHERE order_id = $1 AND status = 'succeeded'"
    } else {
        "UPDATE payments SET refund_required = TRUE, updated_at = $2
         WHERE order_id = $1 AND status = 'succeeded'"
    };
    sqlx::query(sql)
        .bind(order_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A late payment's refund went back to the customer: `refunded`, off the queue, with the
/// provider's reference of the refund. `None` if it is not a succeeded payment flagged for
/// refund.
pub async fn settle_refund(
    conn: &mut Conn,
    id: i64,
    provider_ref: &str,
    now: Millis,
) -> Result<Option<Payment>> {
    Ok(sqlx::query_as::<_, Payment>(sqlx::AssertSqlSafe(format!(
        "UPDATE payments SET status = 'refunded', refund_required = FALSE, refund_ref = $2,
                updated_at = $3
         WHERE id = $1 AND status = 'succeeded' AND refund_required RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(provider_ref)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Records a provider event id; `false` if it was seen before (a replay).
pub async fn record_event(
    conn: &mut Conn,
    event_id: &str,
    payment_id: i64,
    status: &str,
    now: Millis,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO payment_events (event_id, payment_id, status, received_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id)
    .bind(payment_id)
    .bind(status)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Late payments awaiting a refund, by id after `after_id`.
pub async fn refund_required(conn: &mut Conn, after_id: i64, limit: i64) -> Result<Vec<Payment>> {
    Ok(sqlx::query_as::<_, Payment>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM payments WHERE refund_required AND id > $1 ORDER BY id LIMIT $2"
    )))
    .bind(after_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

pub async fn count_refund_required(conn: &mut Conn) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM payments WHERE refund_required")
            .fetch_one(&mut *conn)
            .await?,
    )
}
