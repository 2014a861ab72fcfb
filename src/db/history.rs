//! The audit trail: one row per status change, oldest first.

use super::Conn;
use crate::domain::{HistoryEntry, Millis, OrderStatus};
use crate::error::Result;

pub async fn append(
    conn: &mut Conn,
    order_id: i64,
    from: Option<OrderStatus>,
    to: OrderStatus,
    actor: &str,
    note: Option<&str>,
    now: Millis,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO order_status_history (order_id, from_status, to_status, actor, note, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(order_id)
    .bind(from.map(|s| s.as_str()))
    .bind(to.as_str())
    .bind(actor)
    .bind(note)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn list(conn: &mut Conn, order_id: i64) -> Result<Vec<HistoryEntry>> {
    Ok(sqlx::query_as::<_, HistoryEntry>(
        "SELECT from_status, to_status, actor, note, created_at
         FROM order_status_history WHERE order_id = $1 ORDER BY id",
    )
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?)
}
