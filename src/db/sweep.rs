//! The unpaid-order sweep's SQL: which orders are due, claiming a batch of them, and
//! cancelling a whole batch with a handful of set-based statements.
//!
//! An order is due when it is pending, was created at or before the cutoff, and has no
//! payment that could still complete it (none succeeded, none open and unexpired).
//! Parameters: `$1` cutoff, `$2` now.

use super::{Conn, Dialect};
use crate::domain::{Millis, MovementReason, Order, Payment, PaymentStatus, Product};
use crate::error::Result;

/// A payment that could still complete the order (`o`): succeeded, or open and unexpired.
macro_rules! live_payment {
    ($select:literal) => {
        concat!(
            "SELECT ",
            $select,
            " FROM payments p WHERE p.order_id = o.id
               AND (p.status = 'succeeded' OR (p.status = 'pending' AND p.expires_at > $2))"
        )
    };
}

/// Due, for statements over the whole due set: the planner may look the live payments up
/// once for all orders (a hash anti-join).
const DUE: &str = concat!(
    "o.status = 'pending' AND o.created_at <= $1 AND NOT EXISTS (",
    live_payment!("1"),
    ")"
);

/// Due, for statements that stop after a few orders (a batch, the oldest, one order): each
/// order's payments are looked up by index as the orders are read. Written as a scalar
/// subquery because PostgreSQL turns `NOT EXISTS` into an anti-join, which it plans, when
/// few payments look live, as a sequential scan of every payment, once per batch.
const DUE_EACH: &str = concat!(
    "o.status = 'pending' AND o.created_at <= $1 AND NOT COALESCE((",
    live_payment!("TRUE"),
    " LIMIT 1), FALSE)"
);

/// No payment of the order (`o`) is open at a provider: the sweep may cancel it without
/// asking. One whose payment is open there is asked about first ([`next_to_ask`]).
const NOT_OPEN_AT_PROVIDER: &str = "NOT COALESCE((SELECT TRUE FROM payments p
     WHERE p.order_id = o.id AND p.provider_open LIMIT 1), FALSE)";

/// The sweep's actor and the reason it records.
pub const ACTOR: &str = "system:expiry";
pub const REASON: &str = "payment timeout";

/// A due order as the sweep sees it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DueOrder {
    pub id: i64,
    pub number: String,
    pub created_at: Millis,
    pub units: i64,
}

/// Where a run has got to: due orders are visited in (created_at, id) order, each once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: Millis,
    pub id: i64,
}

impl Cursor {
    pub fn start() -> Cursor {
        Cursor {
            created_at: Millis::MIN,
            id: 0,
        }
    }

    pub fn after(order: &DueOrder) -> Cursor {
        Cursor {
            created_at: order.created_at,
            id: order.id,
        }
    }
}

/// How many orders are due now (for the progress bar).
pub async fn count_due(conn: &mut Conn, cutoff: Millis, now: Millis) -> Result<i64> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM orders o WHERE {DUE}"
    )))
    .bind(cutoff)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?)
}

/// When the oldest due order was created.
pub async fn oldest_due(conn: &mut Conn, cutoff: Millis, now: Millis) -> Result<Option<Millis>> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT o.created_at FROM orders o WHERE {DUE_EACH} ORDER BY o.created_at, o.id LIMIT 1"
    )))
    .bind(cutoff)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The next `limit` due orders after `cursor`, oldest first, with their units. With
/// `lock`, the rows are claimed for this transaction: on PostgreSQL rows another sweep (or
/// a payment) holds are skipped, so concurrent sweeps take disjoint batches; on SQLite the
/// transaction already holds the write lock. A claim passes over orders with a payment open
/// at a provider (those are asked about first); a listing shows every due order.
pub async fn next_due(
    conn: &mut Conn,
    dialect: Dialect,
    cutoff: Millis,
    now: Millis,
    cursor: Cursor,
    limit: i64,
    lock: bool,
) -> Result<Vec<DueOrder>> {
    let (lock_clause, claimable) = if lock {
        (
            dialect.for_update_skip_locked(),
            format!(" AND {NOT_OPEN_AT_PROVIDER}"),
        )
    } else {
        ("", String::new())
    };
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT o.id, o.number, o.created_at,
                CAST((SELECT SUM(i.quantity) FROM order_items i WHERE i.order_id = o.id) AS BIGINT) AS units
         FROM orders o
         WHERE {DUE_EACH}{claimable} AND (o.created_at, o.id) > ($3, $4)
         ORDER BY o.created_at, o.id LIMIT $5{lock_clause}"
    )))
    .bind(cutoff)
    .bind(now)
    .bind(cursor.created_at)
    .bind(cursor.id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// Is this one order due? Locks it (PostgreSQL) when it is.
pub async fn lock_if_due(
    conn: &mut Conn,
    dialect: Dialect,
    order_id: i64,
    cutoff: Millis,
    now: Millis,
) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT o.id FROM orders o WHERE o.id = $3 AND {DUE_EACH} AND {NOT_OPEN_AT_PROVIDER}{}",
        dialect.for_update()
    )))
    .bind(cutoff)
    .bind(now)
    .bind(order_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found.is_some())
}

/// The next `limit` due orders after `cursor` with a payment open at a provider, oldest
/// first, and those payments: what the sweep asks the providers about before it cancels.
/// Nothing is locked: the answers are written in short transactions of their own.
pub async fn next_to_ask(
    conn: &mut Conn,
    dialect: Dialect,
    cutoff: Millis,
    now: Millis,
    cursor: Cursor,
    limit: i64,
) -> Result<Vec<(DueOrder, Vec<Payment>)>> {
    let orders: Vec<DueOrder> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT o.id, o.number, o.created_at,
                CAST((SELECT SUM(i.quantity) FROM order_items i WHERE i.order_id = o.id) AS BIGINT) AS units
         FROM orders o
         WHERE {DUE_EACH} AND NOT {NOT_OPEN_AT_PROVIDER} AND (o.created_at, o.id) > ($3, $4)
         ORDER BY o.created_at, o.id LIMIT $5"
    )))
    .bind(cutoff)
    .bind(now)
    .bind(cursor.created_at)
    .bind(cursor.id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    // The page's ids as a set to join, not `= ANY(array)`: when the planner walks the open
    // payments' partial index (all of them, if it thinks few are open), `= ANY` compares each
    // with every id of the page, a second for a page of 1,000 among 10,000 open payments.
    let of_page = match dialect {
        Dialect::Sqlite => dialect.in_ids("order_id", 1),
        Dialect::Postgres => {
            "order_id IN (SELECT unnest(translate($1, '[]', '{}')::bigint[]))".to_owned()
        }
    };
    let payments: Vec<Payment> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM payments WHERE provider_open AND {of_page} ORDER BY id",
        super::payments::COLUMNS,
    )))
    .bind(ids_json(&orders))
    .fetch_all(&mut *conn)
    .await?;
    let mut of: std::collections::HashMap<i64, Vec<Payment>> = Default::default();
    for payment in payments {
        of.entry(payment.order_id).or_default().push(payment);
    }
    Ok(orders
        .into_iter()
        .map(|order| {
            let payments = of.remove(&order.id).unwrap_or_default();
            (order, payments)
        })
        .collect())
}

pub fn ids_json(orders: &[DueOrder]) -> String {
    let mut out = String::with_capacity(orders.len() * 8 + 2);
    out.push('[');
    for (i, o) in orders.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&o.id.to_string());
    }
    out.push(']');
    out
}

/// What cancelling a batch did: the orders as they are now with their new event numbers
/// (when asked for: events are made of them), and the products that got stock back (with
/// the units).
pub struct CancelledBatch {
    pub orders: Vec<(Order, i64)>,
    pub returned: Vec<(Product, i64)>,
}

/// Cancels a claimed batch with the effects of the transition to `cancelled`: status,
/// cancelled_at, cancel_reason, one history row each, stock released once with ledger
/// rows, open payments closed (expired ones marked `expired`). Fails if any order was not
/// in the state the claim saw (the caller rolls back). The cancelled orders are read back
/// only `with_orders`.
pub async fn cancel_batch(
    conn: &mut Conn,
    dialect: Dialect,
    batch: &[DueOrder],
    now: Millis,
    with_orders: bool,
) -> Result<CancelledBatch> {
    if dialect == Dialect::Postgres {
        return cancel_batch_postgres(conn, batch, now, with_orders).await;
    }
    let ids = ids_json(batch);
    let in_batch = |column: &str| dialect.in_ids(column, 1);
    // Counted, not returned: rows would cross sqlx's worker thread one at a time.
    let cancelled = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE orders SET status = 'cancelled', updated_at = $2, cancelled_at = $2, cancel_reason = $3,
                event_seq = event_seq + 1
         WHERE status = 'pending' AND {}",
        in_batch("id"),
    )))
    .bind(&ids)
    .bind(now)
    .bind(REASON)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    all_cancelled(batch, cancelled as usize)?;
    let orders = if with_orders {
        super::orders::with_seq_sqlite(conn, &ids).await?
    } else {
        Vec::new()
    };
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO order_status_history (order_id, from_status, to_status, actor, note, created_at)
         SELECT id, 'pending', 'cancelled', $3, $4, $2 FROM orders WHERE {}",
        in_batch("id")
    )))
    .bind(&ids)
    .bind(now)
    .bind(ACTOR)
    .bind(REASON)
    .execute(&mut *conn)
    .await?;
    let returned = super::ledger::return_stock_of_orders(
        conn,
        dialect,
        &ids,
        MovementReason::Release,
        ACTOR,
        Some(REASON),
        now,
    )
    .await?;
    super::payments::close_open_of_orders(conn, dialect, &ids, PaymentStatus::Cancelled, now)
        .await?;
    Ok(CancelledBatch { orders, returned })
}

/// What the cancelling `UPDATE` returns: the orders and their event numbers, or only ids.
fn cancelled_columns(with_orders: bool) -> String {
    if with_orders {
        format!("{}, event_seq", super::orders::COLUMNS)
    } else {
        "id".to_owned()
    }
}

/// A conflict if any order of the claimed batch was no longer pending (the caller rolls back
/// and falls back).
fn all_cancelled(batch: &[DueOrder], cancelled: usize) -> Result<()> {
    if cancelled != batch.len() {
        return Err(crate::Error::Conflict(format!(
            "{} of {} claimed orders were no longer pending",
            batch.len() - cancelled,
            batch.len()
        )));
    }
    Ok(())
}

/// The orders a batch cancel returned, with their new event numbers (`with_orders`), once
/// [`all_cancelled`] agrees.
fn cancelled_orders(
    batch: &[DueOrder],
    rows: &[sqlx::any::AnyRow],
    with_orders: bool,
) -> Result<Vec<(Order, i64)>> {
    use sqlx::{FromRow, Row};
    all_cancelled(batch, rows.len())?;
    if !with_orders {
        return Ok(Vec::new());
    }
    rows.iter()
        .map(|row| Ok((Order::from_row(row)?, row.try_get::<i64, _>("event_seq")?)))
        .collect()
}

/// [`cancel_batch`] on PostgreSQL: the same effects in four statements, reading the
/// batch's items once, with the ids as one array (an index scan per id, no JSON to parse).
/// Products are locked in id order first, as every writer locks them.
async fn cancel_batch_postgres(
    conn: &mut Conn,
    batch: &[DueOrder],
    now: Millis,
    with_orders: bool,
) -> Result<CancelledBatch> {
    let returning = cancelled_columns(with_orders);
    let ids = batch
        .iter()
        .map(|o| o.id.to_string())
        .collect::<Vec<_>>()
        .join(",");
    const BATCH: &str = "string_to_array($1, ',')::bigint[]";
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM products WHERE id IN
           (SELECT product_id FROM order_items WHERE order_id = ANY({BATCH}))
         ORDER BY id FOR NO KEY UPDATE"
    )))
    .bind(&ids)
    .execute(&mut *conn)
    .await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH cancelled AS (
           UPDATE orders SET status = 'cancelled', updated_at = $2, cancelled_at = $2,
                  cancel_reason = $3, event_seq = event_seq + 1
           WHERE id = ANY({BATCH}) AND status = 'pending'
           RETURNING {returning}),
         history AS (
           INSERT INTO order_status_history (order_id, from_status, to_status, actor, note, created_at)
           SELECT id, 'pending', 'cancelled', $4, $3, $2 FROM cancelled)
         SELECT * FROM cancelled"
    )))
    .bind(&ids)
    .bind(now)
    .bind(REASON)
    .bind(ACTOR)
    .fetch_all(&mut *conn)
    .await?;
    let orders = cancelled_orders(batch, &rows, with_orders)?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "WITH items AS (
           SELECT order_id, product_id, quantity FROM order_items WHERE order_id = ANY({BATCH})),
         ledger AS (
           INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
           SELECT product_id, order_id, quantity, 'release', $3, $4, $2 FROM items),
         back AS (SELECT product_id, SUM(quantity) AS units FROM items GROUP BY product_id)
         UPDATE products SET stock = products.stock + back.units, updated_at = $2
         FROM back WHERE products.id = back.product_id
         RETURNING {}, CAST(back.units AS BIGINT) AS units",
        super::products::QUALIFIED_COLUMNS
    )))
    .bind(&ids)
    .bind(now)
    .bind(ACTOR)
    .bind(REASON)
    .fetch_all(&mut *conn)
    .await?;
    let returned = rows
        .iter()
        .map(|row| {
            use sqlx::{FromRow, Row};
            Ok((Product::from_row(row)?, row.try_get::<i64, _>("units")?))
        })
        .collect::<Result<Vec<_>>>()?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE payments SET status = CASE WHEN expires_at <= $2 THEN 'expired' ELSE 'cancelled' END,
                updated_at = $2
         WHERE order_id = ANY({BATCH}) AND status = 'pending'"
    )))
    .bind(&ids)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(CancelledBatch { orders, returned })
}

/// The tables a batch's statements find by index. Without planner statistics (a database
/// whose orders were just written, before autovacuum first got to them) PostgreSQL guesses,
/// and guesses a sequential scan of all payments for every batch.
const SWEPT_TABLES: [&str; 3] = ["order_items", "orders", "payments"];

/// Gathers planner statistics (`ANALYZE`) for those of [`SWEPT_TABLES`] that have none and
/// hold at least `min_rows` rows; returns the tables analyzed. "None" is read from the
/// statistics themselves (`pg_stats`), not from the activity counters, which a copy of the
/// database (`CREATE DATABASE … TEMPLATE`), a restore or `pg_stat_reset()` starts afresh.
/// Nothing to do on SQLite, whose planner needs no statistics for these queries.
pub async fn analyze_if_never_analyzed(
    conn: &mut Conn,
    dialect: Dialect,
    min_rows: i64,
) -> Result<Vec<&'static str>> {
    if dialect != Dialect::Postgres {
        return Ok(Vec::new());
    }
    let have: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT CAST(tablename AS TEXT) FROM pg_stats
         WHERE schemaname = current_schema() AND tablename IN ('order_items', 'orders', 'payments')",
    )
    .fetch_all(&mut *conn)
    .await?;
    let min_rows = min_rows.max(1);
    let mut analyzed = Vec::new();
    for table in SWEPT_TABLES
        .into_iter()
        .filter(|t| !have.iter().any(|h| h == t))
    {
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM {table} LIMIT $1) AS t"
        )))
        .bind(min_rows)
        .fetch_one(&mut *conn)
        .await?;
        if rows < min_rows {
            continue;
        }
        sqlx::query(sqlx::AssertSqlSafe(format!("ANALYZE {table}")))
            .execute(&mut *conn)
            .await?;
        analyzed.push(table);
    }
    Ok(analyzed)
}

/// What identifies a due set without listing it: how many, the smallest and largest id, and
/// the sum of the ids. A preview carries it; a run goes ahead only while it still matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DueFingerprint {
    pub count: i64,
    pub min_id: i64,
    pub max_id: i64,
    pub id_sum: i64,
}

pub async fn due_fingerprint(
    conn: &mut Conn,
    cutoff: Millis,
    now: Millis,
) -> Result<DueFingerprint> {
    let (count, min_id, max_id, id_sum): (i64, i64, i64, i64) =
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*), CAST(COALESCE(MIN(o.id), 0) AS BIGINT), CAST(COALESCE(MAX(o.id), 0) AS BIGINT),
                    CAST(COALESCE(SUM(o.id), 0) AS BIGINT)
             FROM orders o WHERE {DUE}"
        )))
        .bind(cutoff)
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
    Ok(DueFingerprint {
        count,
        min_id,
        max_id,
        id_sum,
    })
}

/// Units the due orders hold, per product: (product id, sku, name, units).
pub async fn due_units_per_product(
    conn: &mut Conn,
    cutoff: Millis,
    now: Millis,
) -> Result<Vec<(i64, String, String, i64)>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT p.id, p.sku, p.name, CAST(SUM(i.quantity) AS BIGINT)
         FROM orders o JOIN order_items i ON i.order_id = o.id JOIN products p ON p.id = i.product_id
         WHERE {DUE} GROUP BY p.id, p.sku, p.name ORDER BY p.id"
    )))
    .bind(cutoff)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?)
}
