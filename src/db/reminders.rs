//! The payment reminder's SQL: claiming unpaid orders whose deadline is near.

use super::{Conn, Dialect};
use crate::domain::{Millis, Order};
use crate::error::Result;

/// Claims up to `limit` orders still pending and not yet reminded whose unpaid deadline
/// falls in `(now, now + lead]` (created in `(now - timeout, now - timeout + lead]`): marks
/// them reminded and takes the next number of each one's event sequence, so that several
/// workers never remind twice (PostgreSQL `FOR UPDATE SKIP LOCKED`, SQLite's write lock).
pub async fn claim_due(
    conn: &mut Conn,
    dialect: Dialect,
    created_after: Millis,
    created_until: Millis,
    limit: i64,
    now: Millis,
) -> Result<Vec<(Order, i64)>> {
    let ids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM orders
         WHERE status = 'pending' AND reminded_at IS NULL AND created_at > $1 AND created_at <= $2
         ORDER BY created_at, id LIMIT $3{}",
        dialect.for_update_skip_locked()
    )))
    .bind(created_after)
    .bind(created_until)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE orders SET reminded_at = $2, event_seq = event_seq + 1
         WHERE status = 'pending' AND {} RETURNING {}, event_seq",
        dialect.in_ids("id", 1),
        super::orders::COLUMNS
    )))
    .bind(serde_json::to_string(&ids).unwrap_or_default())
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| {
            use sqlx::{FromRow, Row};
            Ok((Order::from_row(row)?, row.try_get::<i64, _>("event_seq")?))
        })
        .collect()
}
