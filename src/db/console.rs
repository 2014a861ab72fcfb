//! The staff console's reads: counters the triggers of migrations 0005 and 0012 keep
//! (orders per status, per quarter-hour), the order list with its filters, unpaid orders by age, an order's
//! webhook deliveries, a product's ledger with its running balance.

use super::Conn;
use super::webhooks::DeliveryRow;
use crate::domain::{Millis, Order, OrderStatus};
use crate::error::Result;
use sqlx::{FromRow, Row};

/// Orders per status, from the counters (never a count of the orders table).
pub async fn status_counts(conn: &mut Conn) -> Result<Vec<(String, i64)>> {
    Ok(sqlx::query_as(
        "SELECT status, CAST(SUM(n) AS BIGINT) FROM order_status_counts GROUP BY status",
    )
    .fetch_all(&mut *conn)
    .await?)
}

/// One quarter-hour's totals in one currency.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct QuarterTotal {
    /// Quarter-hours since 1970-01-01T00:00Z (unix milliseconds / 900,000).
    pub quarter: i64,
    pub currency: String,
    pub placed: i64,
    pub paid: i64,
    pub paid_cents: i64,
}

/// Totals per quarter-hour from quarter `from` on, from the counters: they add up to the
/// days and hours of any time zone.
pub async fn quarter_totals(conn: &mut Conn, from: i64) -> Result<Vec<QuarterTotal>> {
    Ok(sqlx::query_as(
        "SELECT quarter, currency, CAST(SUM(placed) AS BIGINT) AS placed,
                CAST(SUM(paid) AS BIGINT) AS paid, CAST(SUM(paid_cents) AS BIGINT) AS paid_cents
         FROM order_time_totals WHERE quarter >= $1 GROUP BY quarter, currency
         ORDER BY quarter, currency",
    )
    .bind(from)
    .fetch_all(&mut *conn)
    .await?)
}

/// Pending orders created in `(after, upto]`.
pub async fn count_pending_created(conn: &mut Conn, after: Millis, upto: Millis) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM orders WHERE status = 'pending' AND created_at > $1 AND created_at <= $2",
    )
    .bind(after)
    .bind(upto)
    .fetch_one(&mut *conn)
    .await?)
}

/// Pending orders per age band: `bounds` are creation times, newest first; band 0 holds
/// orders created after `bounds[0]`, band k those in `(bounds[k], bounds[k-1]]`, and the
/// last band those at or before the last bound. One pass over the pending index.
pub async fn pending_by_age(conn: &mut Conn, bounds: &[Millis; 5]) -> Result<[i64; 6]> {
    let row = sqlx::query(
        "SELECT CAST(COALESCE(SUM(CASE WHEN created_at > $1 THEN 1 ELSE 0 END), 0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN created_at <= $1 AND created_at > $2 THEN 1 ELSE 0 END), 0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN created_at <= $2 AND created_at > $3 THEN 1 ELSE 0 END), 0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN created_at <= $3 AND created_at > $4 THEN 1 ELSE 0 END), 0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN created_at <= $4 AND created_at > $5 THEN 1 ELSE 0 END), 0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN created_at <= $5 THEN 1 ELSE 0 END), 0) AS BIGINT)
         FROM orders WHERE status = 'pending'",
    )
    .bind(bounds[0])
    .bind(bounds[1])
    .bind(bounds[2])
    .bind(bounds[3])
    .bind(bounds[4])
    .fetch_one(&mut *conn)
    .await?;
    let mut out = [0; 6];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = row.try_get(i)?;
    }
    Ok(out)
}

/// Pending orders, oldest first (soonest deadline first), with their units.
pub async fn pending_oldest_first(conn: &mut Conn, limit: i64) -> Result<Vec<(Order, i64)>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {}, CAST((SELECT SUM(i.quantity) FROM order_items i WHERE i.order_id = orders.id) AS BIGINT) AS units
         FROM orders WHERE status = 'pending' ORDER BY created_at, id LIMIT $1",
        super::orders::COLUMNS
    )))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|row| Ok((Order::from_row(row)?, row.try_get::<i64, _>("units")?)))
        .collect()
}

/// Active products with no stock left.
pub async fn count_out_of_stock(conn: &mut Conn) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM products WHERE stock = 0 AND active")
            .fetch_one(&mut *conn)
            .await?,
    )
}

/// The console's order filters. Orders come newest first by (created_at, id); `before`
/// is the cursor: the (created_at, id) of the last order of the previous page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderSearch {
    pub status: Option<OrderStatus>,
    pub user_id: Option<i64>,
    pub product_id: Option<i64>,
    /// Created at or after.
    pub created_from: Option<Millis>,
    /// Created before.
    pub created_until: Option<Millis>,
    pub before: Option<(Millis, i64)>,
    pub limit: i64,
}

/// Orders matching `search`. The statement holds only the clauses of the filters given, so
/// PostgreSQL plans each combination for its own index: (created_at, id), (status,
/// created_at, id), (user_id, id). One product's orders are read from order_items
/// (product_id, order_id) newest id first, however rarely the product sells; ids rise with
/// creation, so that is newest first too, and the cursor's id alone pages them.
pub async fn search_orders(conn: &mut Conn, search: &OrderSearch) -> Result<Vec<Order>> {
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    let mut sql = match search.product_id {
        Some(_) => format!(
            "SELECT {} FROM order_items i JOIN orders o ON o.id = i.order_id WHERE i.product_id = ${}",
            super::orders::COLUMNS,
            next()
        ),
        None => format!("SELECT {} FROM orders o WHERE TRUE", super::orders::COLUMNS),
    };
    if search.status.is_some() {
        sql.push_str(&format!(" AND o.status = ${}", next()));
    }
    if search.user_id.is_some() {
        sql.push_str(&format!(" AND o.user_id = ${}", next()));
    }
    if search.created_from.is_some() {
        sql.push_str(&format!(" AND o.created_at >= ${}", next()));
    }
    if search.created_until.is_some() {
        sql.push_str(&format!(" AND o.created_at < ${}", next()));
    }
    match (search.before, search.product_id) {
        (Some(_), Some(_)) => sql.push_str(&format!(" AND i.order_id < ${}", next())),
        (Some(_), None) => {
            let (a, b) = (next(), next());
            sql.push_str(&format!(" AND (o.created_at, o.id) < (${a}, ${b})"));
        }
        (None, _) => {}
    }
    let order = if search.product_id.is_some() {
        "i.order_id DESC"
    } else {
        "o.created_at DESC, o.id DESC"
    };
    sql.push_str(&format!(" ORDER BY {order} LIMIT ${}", next()));
    let mut query = sqlx::query_as::<_, Order>(sqlx::AssertSqlSafe(sql));
    if let Some(product_id) = search.product_id {
        query = query.bind(product_id);
    }
    if let Some(status) = search.status {
        query = query.bind(status.as_str());
    }
    if let Some(user_id) = search.user_id {
        query = query.bind(user_id);
    }
    if let Some(from) = search.created_from {
        query = query.bind(from);
    }
    if let Some(until) = search.created_until {
        query = query.bind(until);
    }
    match (search.before, search.product_id) {
        (Some((_, id)), Some(_)) => query = query.bind(id),
        (Some((at, id)), None) => query = query.bind(at).bind(id),
        (None, _) => {}
    }
    Ok(query.bind(search.limit).fetch_all(&mut *conn).await?)
}

/// An order's webhook deliveries, oldest first.
pub async fn deliveries_of_order(
    conn: &mut Conn,
    order_id: i64,
    limit: i64,
) -> Result<Vec<DeliveryRow>> {
    Ok(sqlx::query_as::<_, DeliveryRow>(
        "SELECT d.id, d.endpoint_id, ev.event_id, ev.type AS event_type, d.order_id, d.status,
                d.attempts, d.next_attempt_at, d.leased_until, d.last_attempt_at, d.created_at
         FROM webhook_deliveries d JOIN events ev ON ev.id = d.event_pk
         WHERE d.order_id = $1 ORDER BY d.id LIMIT $2",
    )
    .bind(order_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// One row of a product's ledger with the stock right after it.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct LedgerRow {
    pub id: i64,
    pub order_id: Option<i64>,
    pub delta: i64,
    pub reason: String,
    pub actor: String,
    pub note: Option<String>,
    pub created_at: Millis,
    pub balance_after: i64,
}

/// A page of a product's ledger, newest first, before `before_id`, each row with the
/// running balance. One statement, so the stock and the ledger rows are of one snapshot:
/// the balance after the page's newest row is the stock less every newer movement.
pub async fn ledger_page(
    conn: &mut Conn,
    product_id: i64,
    before_id: i64,
    limit: i64,
) -> Result<Vec<LedgerRow>> {
    Ok(sqlx::query_as::<_, LedgerRow>(
        "WITH page AS (
             SELECT id, order_id, delta, reason, actor, note, created_at FROM stock_movements
             WHERE product_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3
         ), top AS (
             SELECT (SELECT stock FROM products WHERE id = $1)
                  - COALESCE((SELECT SUM(m.delta) FROM stock_movements m
                              WHERE m.product_id = $1 AND m.id > (SELECT MAX(id) FROM page)), 0)
                  AS balance
         )
         SELECT page.id, page.order_id, page.delta, page.reason, page.actor, page.note,
                page.created_at,
                CAST(top.balance - COALESCE(SUM(page.delta) OVER (ORDER BY page.id DESC
                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS BIGINT) AS balance_after
         FROM page CROSS JOIN top ORDER BY page.id DESC",
    )
    .bind(product_id)
    .bind(before_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}
