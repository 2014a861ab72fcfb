//! Product rows: the catalogue and the `stock` column the ledger keeps in step.

use super::{Conn, on_unique_violation};
use crate::domain::{Millis, NewProduct, Product, ProductPatch};
use crate::error::{Error, Result};

// Booleans are read as integers: the `Any` driver has no SQLite boolean (see `DbFlag`).
pub(crate) const COLUMNS: &str = "id, sku, name, price_cents, currency, stock, sales_count, \
     CAST(active AS INTEGER) AS active, created_at, updated_at";

/// [`COLUMNS`] qualified by the table, for PostgreSQL statements that join.
pub(crate) const QUALIFIED_COLUMNS: &str = "products.id, products.sku, products.name, \
     products.price_cents, products.currency, products.stock, products.sales_count, \
     CAST(products.active AS INTEGER) AS active, products.created_at, products.updated_at";

pub async fn insert(conn: &mut Conn, new: &NewProduct, now: Millis) -> Result<Product> {
    sqlx::query_as::<_, Product>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO products (sku, name, price_cents, currency, stock, sales_count, active, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, 0, TRUE, $6, $6) RETURNING {COLUMNS}"
    )))
    .bind(&new.sku)
    .bind(&new.name)
    .bind(new.price_cents)
    .bind(&new.currency)
    .bind(new.stock)
    .bind(now)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| {
        on_unique_violation(e, "products_sku_unique", || {
            Error::Conflict(format!("a product with sku {:?} already exists", new.sku))
        })
    })
}

pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<Product>> {
    Ok(sqlx::query_as::<_, Product>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM products WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Products in id order after `after_id`, at most `limit`.
pub async fn list(conn: &mut Conn, after_id: i64, limit: i64) -> Result<Vec<Product>> {
    Ok(sqlx::query_as::<_, Product>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM products WHERE id > $1 ORDER BY id LIMIT $2"
    )))
    .bind(after_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

pub async fn update(
    conn: &mut Conn,
    id: i64,
    patch: &ProductPatch,
    now: Millis,
) -> Result<Option<Product>> {
    Ok(sqlx::query_as::<_, Product>(sqlx::AssertSqlSafe(format!(
        "UPDATE products SET name = COALESCE($2, name), price_cents = COALESCE($3, price_cents),
                active = COALESCE($4, active), updated_at = $5
         WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(patch.name.as_deref())
    .bind(patch.price_cents)
    .bind(patch.active)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Adds `delta` (signed) to the stock unless that would drive it below zero.
/// Returns the product after the change, or `None` when refused or missing.
pub async fn change_stock(
    conn: &mut Conn,
    id: i64,
    delta: i64,
    now: Millis,
) -> Result<Option<Product>> {
    Ok(sqlx::query_as::<_, Product>(sqlx::AssertSqlSafe(format!(
        "UPDATE products SET stock = stock + $2, updated_at = $3
         WHERE id = $1 AND stock + $2 >= 0 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(delta)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?)
}
