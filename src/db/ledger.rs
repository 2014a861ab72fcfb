//! The stock ledger (`stock_movements`) and the set-based stock effects of order
//! transitions. Every change to `products.stock` is written here with its ledger rows,
//! so that for every product stock = sum of its movements.

use super::{Conn, Dialect};
use crate::domain::{Millis, MovementReason, Product, StockMovement};
use crate::error::Result;

/// One ledger row not tied to an order (a staff adjustment or opening stock).
pub async fn record_adjustment(
    conn: &mut Conn,
    product_id: i64,
    delta: i64,
    actor: &str,
    note: Option<&str>,
    now: Millis,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
         VALUES ($1, NULL, $2, 'adjust', $3, $4, $5)",
    )
    .bind(product_id)
    .bind(delta)
    .bind(actor)
    .bind(note)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Locks, in id order, the products the given orders hold. Every writer that touches
/// several products takes them in this order, so two writers never deadlock.
pub async fn lock_products_of(
    conn: &mut Conn,
    dialect: Dialect,
    order_ids_json: &str,
) -> Result<()> {
    if dialect == Dialect::Postgres {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM products WHERE id IN
               (SELECT product_id FROM order_items WHERE {ids})
             ORDER BY id{lock}",
            ids = dialect.in_ids("order_id", 1),
            lock = dialect.for_no_key_update(),
        )))
        .bind(order_ids_json)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Puts the items of the given orders (a JSON array of ids) back on the shelf: one ledger
/// row per item with `reason` (`release` or `restock`), and the stock raised by the sum.
/// The unique index on (order_id, product_id, reason) makes a second return of the same
/// order fail instead of counting twice. Returns each product as it is now with the units
/// it got back.
pub async fn return_stock_of_orders(
    conn: &mut Conn,
    dialect: Dialect,
    order_ids_json: &str,
    reason: MovementReason,
    actor: &str,
    note: Option<&str>,
    now: Millis,
) -> Result<Vec<(Product, i64)>> {
    debug_assert!(matches!(
        reason,
        MovementReason::Release | MovementReason::Restock
    ));
    lock_products_of(conn, dialect, order_ids_json).await?;
    let ids = dialect.in_ids("order_id", 1);
    let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
         SELECT product_id, order_id, quantity, $2, $3, $4, $5
         FROM order_items WHERE {ids}"
    )))
    .bind(order_ids_json)
    .bind(reason.as_str())
    .bind(actor)
    .bind(note)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        return Ok(Vec::new());
    }
    let units: std::collections::HashMap<i64, i64> =
        sqlx::query_as::<_, (i64, i64)>(sqlx::AssertSqlSafe(format!(
            "SELECT product_id, CAST(SUM(quantity) AS BIGINT) FROM order_items
             WHERE {ids} GROUP BY product_id"
        )))
        .bind(order_ids_json)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    // SQLite's RETURNING sees only the updated table, so the units come from above.
    let products = sqlx::query_as::<_, Product>(sqlx::AssertSqlSafe(format!(
        "UPDATE products SET stock = products.stock + back.units, updated_at = $2
         FROM (SELECT product_id, SUM(quantity) AS units FROM order_items
               WHERE {ids} GROUP BY product_id) AS back
         WHERE products.id = back.product_id
         RETURNING {}",
        super::products::COLUMNS
    )))
    .bind(order_ids_json)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    Ok(products
        .into_iter()
        .map(|p| {
            let back = units.get(&p.id).copied().unwrap_or(0);
            (p, back)
        })
        .collect())
}

/// Adds (`sign` = 1) or removes (`sign` = -1) the orders' quantities to the products'
/// sales counts.
pub async fn count_sales_of_orders(
    conn: &mut Conn,
    dialect: Dialect,
    order_ids_json: &str,
    sign: i64,
    now: Millis,
) -> Result<()> {
    lock_products_of(conn, dialect, order_ids_json).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE products SET sales_count = products.sales_count + $2 * sold.units, updated_at = $3
         FROM (SELECT product_id, SUM(quantity) AS units FROM order_items
               WHERE {ids} GROUP BY product_id) AS sold
         WHERE products.id = sold.product_id",
        ids = dialect.in_ids("order_id", 1)
    )))
    .bind(order_ids_json)
    .bind(sign)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A product's ledger, newest first, before `before_id`.
pub async fn list_for_product(
    conn: &mut Conn,
    product_id: i64,
    before_id: i64,
    limit: i64,
) -> Result<Vec<StockMovement>> {
    Ok(sqlx::query_as::<_, StockMovement>(
        "SELECT id, product_id, order_id, delta, reason, actor, note, created_at
         FROM stock_movements WHERE product_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
    )
    .bind(product_id)
    .bind(before_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}
