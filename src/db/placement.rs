//! The SQL of placing a batch of orders in one transaction: every statement handles the
//! whole batch (rows passed as one JSON array), so a batch of 200 orders costs the round
//! trips of one.

use super::{Conn, Dialect};
use crate::domain::{Millis, Order, Payment, Product};
use crate::error::Result;

/// Claims idempotency keys (`user_id`, `key`, `hash` rows); returns those claimed now.
/// A key used before is left alone (on PostgreSQL, a claim racing an uncommitted one waits
/// for it).
pub async fn claim_keys(
    conn: &mut Conn,
    dialect: Dialect,
    rows_json: &str,
    now: Millis,
) -> Result<Vec<(i64, String)>> {
    let rows = dialect.json_rows(
        1,
        &[("user_id", "bigint"), ("key", "text"), ("hash", "text")],
    );
    // `WHERE true`: SQLite reads `ON CONFLICT` after a bare SELECT as a join's ON.
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, order_id, created_at)
         SELECT r.user_id, r.key, r.hash, NULL, $2 FROM {rows} WHERE true
         ON CONFLICT (user_id, key) DO NOTHING RETURNING user_id, key"
    )))
    .bind(rows_json)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?)
}

/// What earlier requests left under these keys: (user_id, key, request_hash, order_id).
pub async fn seen_keys(
    conn: &mut Conn,
    dialect: Dialect,
    rows_json: &str,
) -> Result<Vec<(i64, String, String, Option<i64>)>> {
    let rows = dialect.json_rows(1, &[("user_id", "bigint"), ("key", "text")]);
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT k.user_id, k.key, k.request_hash, k.order_id
         FROM idempotency_keys k JOIN {rows} ON k.user_id = r.user_id AND k.key = r.key"
    )))
    .bind(rows_json)
    .fetch_all(&mut *conn)
    .await?)
}

/// Gives back keys claimed for requests that were refused.
pub async fn release_keys(conn: &mut Conn, dialect: Dialect, rows_json: &str) -> Result<()> {
    let rows = dialect.json_rows(1, &[("user_id", "bigint"), ("key", "text")]);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM idempotency_keys WHERE EXISTS
           (SELECT 1 FROM {rows} WHERE r.user_id = idempotency_keys.user_id AND r.key = idempotency_keys.key)"
    )))
    .bind(rows_json)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records each key's order (`user_id`, `key`, `order_id` rows).
pub async fn bind_keys(conn: &mut Conn, dialect: Dialect, rows_json: &str) -> Result<()> {
    let rows = dialect.json_rows(
        1,
        &[
            ("user_id", "bigint"),
            ("key", "text"),
            ("order_id", "bigint"),
        ],
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE idempotency_keys SET order_id = r.order_id FROM {rows}
         WHERE idempotency_keys.user_id = r.user_id AND idempotency_keys.key = r.key"
    )))
    .bind(rows_json)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Locks the customers (in id order) whose pending orders are about to be counted, so two
/// batches for one customer cannot both slip under the limit; returns those that exist.
pub async fn lock_customers(conn: &mut Conn, dialect: Dialect, ids_json: &str) -> Result<Vec<i64>> {
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM users WHERE {} ORDER BY id{}",
        dialect.in_ids("id", 1),
        dialect.for_no_key_update()
    )))
    .bind(ids_json)
    .fetch_all(&mut *conn)
    .await?)
}

/// Unpaid orders per customer. Run after [`lock_customers`], in its own statement, so that
/// it sees what committed while the lock was awaited.
pub async fn pending_per_customer(
    conn: &mut Conn,
    dialect: Dialect,
    ids_json: &str,
) -> Result<Vec<(i64, i64)>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT user_id, COUNT(*) FROM orders WHERE status = 'pending' AND {}
         GROUP BY user_id",
        dialect.in_ids("user_id", 1)
    )))
    .bind(ids_json)
    .fetch_all(&mut *conn)
    .await?)
}

/// Locks the products (in id order, so no two writers deadlock) and reads them as they are
/// once locked.
pub async fn lock_products(
    conn: &mut Conn,
    dialect: Dialect,
    ids_json: &str,
) -> Result<Vec<Product>> {
    Ok(sqlx::query_as::<_, Product>(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM products WHERE {} ORDER BY id{}",
        super::products::COLUMNS,
        dialect.in_ids("id", 1),
        dialect.for_no_key_update()
    )))
    .bind(ids_json)
    .fetch_all(&mut *conn)
    .await?)
}

/// Takes the reserved units (`product_id`, `quantity` rows, one per product); returns the
/// products as they are now.
pub async fn take_stock(
    conn: &mut Conn,
    dialect: Dialect,
    rows_json: &str,
    now: Millis,
) -> Result<Vec<Product>> {
    let rows = dialect.json_rows(1, &[("product_id", "bigint"), ("quantity", "bigint")]);
    Ok(sqlx::query_as::<_, Product>(sqlx::AssertSqlSafe(format!(
        "UPDATE products SET stock = products.stock - r.quantity, updated_at = $2 FROM {rows}
         WHERE products.id = r.product_id RETURNING {}",
        super::products::COLUMNS
    )))
    .bind(rows_json)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?)
}

/// Inserts the orders (`number`, `user_id`, `total_cents`, `currency`, `note`,
/// `shipping_address` rows, the address as JSON text), each with its first event number
/// taken.
pub async fn insert_orders(
    conn: &mut Conn,
    dialect: Dialect,
    rows_json: &str,
    now: Millis,
) -> Result<Vec<Order>> {
    let rows = dialect.json_rows(
        1,
        &[
            ("number", "text"),
            ("user_id", "bigint"),
            ("total_cents", "bigint"),
            ("currency", "text"),
            ("note", "text"),
            ("shipping_address", "text"),
        ],
    );
    Ok(sqlx::query_as::<_, Order>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO orders (number, user_id, status, total_cents, currency, note, shipping_address,
                             created_at, updated_at, event_seq)
         SELECT r.number, r.user_id, 'pending', r.total_cents, r.currency, r.note, r.shipping_address,
                $2, $2, 1 FROM {rows}
         RETURNING {}",
        super::orders::COLUMNS
    )))
    .bind(rows_json)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?)
}

/// Inserts the items (`order_id`, `product_id`, `sku`, `name`, `quantity`,
/// `unit_price_cents`, `actor` rows) and their reservation rows in the ledger.
pub async fn insert_items(
    conn: &mut Conn,
    dialect: Dialect,
    rows_json: &str,
    now: Millis,
) -> Result<()> {
    let rows = dialect.json_rows(
        1,
        &[
            ("order_id", "bigint"),
            ("product_id", "bigint"),
            ("sku", "text"),
            ("name", "text"),
            ("quantity", "bigint"),
            ("unit_price_cents", "bigint"),
            ("actor", "text"),
        ],
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO order_items (order_id, product_id, sku, name, quantity, unit_price_cents)
         SELECT r.order_id, r.product_id, r.sku, r.name, r.quantity, r.unit_price_cents FROM {rows}"
    )))
    .bind(rows_json)
    .execute(&mut *conn)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO stock_movements (product_id, order_id, delta, reason, actor, note, created_at)
         SELECT r.product_id, r.order_id, -r.quantity, 'reserve', r.actor, NULL, $2 FROM {rows}"
    )))
    .bind(rows_json)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The first history row and the first payment of each order (`order_id`, `actor`,
/// `amount_cents`, `expires_at`, `method`, `provider`, `merchant_ref`, `provider_ref`
/// rows); returns the payments.
pub async fn open_orders(
    conn: &mut Conn,
    dialect: Dialect,
    rows_json: &str,
    now: Millis,
) -> Result<Vec<Payment>> {
    let rows = dialect.json_rows(
        1,
        &[
            ("order_id", "bigint"),
            ("actor", "text"),
            ("amount_cents", "bigint"),
            ("expires_at", "bigint"),
            ("method", "text"),
            ("provider", "text"),
            ("merchant_ref", "text"),
            ("provider_ref", "text"),
        ],
    );
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO order_status_history (order_id, from_status, to_status, actor, note, created_at)
         SELECT r.order_id, NULL, 'pending', r.actor, NULL, $2 FROM {rows}"
    )))
    .bind(rows_json)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query_as::<_, Payment>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO payments (order_id, amount_cents, method, status, expires_at, refund_required,
                               provider, merchant_ref, provider_ref, created_at, updated_at)
         SELECT r.order_id, r.amount_cents, r.method, 'pending', r.expires_at, FALSE,
                r.provider, r.merchant_ref, r.provider_ref, $2, $2 FROM {rows}
         RETURNING {}",
        super::payments::COLUMNS
    )))
    .bind(rows_json)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?)
}
