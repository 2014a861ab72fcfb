//! Order and order-item rows, and the compare-and-set that guards every status change.

use super::{Conn, Dialect};
use crate::domain::{Millis, Order, OrderItem, OrderStatus};
use crate::error::{Error, Result};

pub(crate) const COLUMNS: &str = "id, number, user_id, status, total_cents, currency, note, \
     created_at, updated_at, paid_at, completed_at, cancelled_at, cancel_reason, carrier, tracking_number, \
     shipping_address";

/// An item's columns: the SKU and name it was ordered under.
pub(crate) const ITEM_COLUMNS: &str =
    "product_id, COALESCE(sku, '') AS sku, COALESCE(name, '') AS name, quantity, unit_price_cents";

pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<Order>> {
    Ok(sqlx::query_as::<_, Order>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM orders WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Reads the order and, on PostgreSQL, locks its row until the transaction ends. Every
/// writer locks the order before its payments and products, so none deadlock.
pub async fn lock(conn: &mut Conn, dialect: Dialect, id: i64) -> Result<Option<Order>> {
    Ok(sqlx::query_as::<_, Order>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM orders WHERE id = $1{}",
        dialect.for_update()
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// [`lock`], for an order that must exist.
pub async fn lock_existing(conn: &mut Conn, dialect: Dialect, id: i64) -> Result<Order> {
    lock(conn, dialect, id)
        .await?
        .ok_or(Error::NotFound { what: "order" })
}

pub async fn items(conn: &mut Conn, order_id: i64) -> Result<Vec<OrderItem>> {
    Ok(sqlx::query_as::<_, OrderItem>(sqlx::AssertSqlSafe(format!(
        "SELECT {ITEM_COLUMNS} FROM order_items WHERE order_id = $1 ORDER BY product_id"
    )))
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?)
}

/// The columns a status change sets besides the status itself.
#[derive(Debug, Default)]
pub struct StatusFields<'a> {
    pub paid_at: Option<Millis>,
    pub completed_at: Option<Millis>,
    pub cancelled_at: Option<Millis>,
    pub cancel_reason: Option<&'a str>,
    pub carrier: Option<&'a str>,
    pub tracking_number: Option<&'a str>,
}

/// The compare-and-set: moves the order from `from` to `to` only if it is still in `from`,
/// and takes the next number of its event sequence. Returns the updated order and that
/// number, or `None` when another writer got there first. Fields already set (paid_at,
/// completed_at) keep their first value.
pub async fn compare_and_set_status(
    conn: &mut Conn,
    id: i64,
    from: OrderStatus,
    to: OrderStatus,
    fields: &StatusFields<'_>,
    now: Millis,
) -> Result<Option<(Order, i64)>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE orders SET status = $3, updated_at = $4, event_seq = event_seq + 1,
                paid_at = COALESCE(paid_at, $5), completed_at = COALESCE(completed_at, $6),
                cancelled_at = COALESCE($7, cancelled_at), cancel_reason = COALESCE($8, cancel_reason),
                carrier = COALESCE($9, carrier), tracking_number = COALESCE($10, tracking_number)
         WHERE id = $1 AND status = $2 RETURNING {COLUMNS}, event_seq"
    )))
    .bind(id)
    .bind(from.as_str())
    .bind(to.as_str())
    .bind(now)
    .bind(fields.paid_at)
    .bind(fields.completed_at)
    .bind(fields.cancelled_at)
    .bind(fields.cancel_reason)
    .bind(fields.carrier)
    .bind(fields.tracking_number)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        use sqlx::{FromRow, Row};
        Ok((Order::from_row(&row)?, row.try_get::<i64, _>("event_seq")?))
    })
    .transpose()
}

/// Sets an order's shipping address (JSON text) and takes the next number of its event
/// sequence; the caller holds the order's lock.
pub async fn set_shipping_address(
    conn: &mut Conn,
    id: i64,
    address_json: &str,
    now: Millis,
) -> Result<(Order, i64)> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE orders SET shipping_address = $2, updated_at = $3, event_seq = event_seq + 1
         WHERE id = $1 RETURNING {COLUMNS}, event_seq"
    )))
    .bind(id)
    .bind(address_json)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    use sqlx::{FromRow, Row};
    Ok((Order::from_row(&row)?, row.try_get::<i64, _>("event_seq")?))
}

pub async fn by_number(conn: &mut Conn, number: &str) -> Result<Option<Order>> {
    Ok(sqlx::query_as::<_, Order>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM orders WHERE number = $1"
    )))
    .bind(number)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Filters for listing orders; `after_id` is the cursor (orders come newest first).
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub user_id: Option<i64>,
    pub status: Option<OrderStatus>,
    pub created_before: Option<Millis>,
    pub created_after: Option<Millis>,
    pub before_id: Option<i64>,
    pub limit: i64,
}

pub async fn list(conn: &mut Conn, filter: &OrderFilter) -> Result<Vec<Order>> {
    Ok(sqlx::query_as::<_, Order>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM orders
         WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR status = $2)
           AND ($3 IS NULL OR created_at < $3) AND ($4 IS NULL OR created_at > $4)
           AND ($5 IS NULL OR id < $5)
         ORDER BY id DESC LIMIT $6"
    )))
    .bind(filter.user_id)
    .bind(filter.status.map(|s| s.as_str()))
    .bind(filter.created_before)
    .bind(filter.created_after)
    .bind(filter.before_id)
    .bind(filter.limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// The items (with their order's id) and payments of these orders (a JSON array of ids),
/// for their events.
pub async fn items_and_payments_of(
    conn: &mut Conn,
    dialect: Dialect,
    ids_json: &str,
) -> Result<(Vec<(i64, OrderItem)>, Vec<crate::domain::Payment>)> {
    if dialect == Dialect::Sqlite {
        return items_and_payments_sqlite(conn, ids_json).await;
    }
    let ids = dialect.in_ids("order_id", 1);
    let items = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT order_id, {ITEM_COLUMNS} FROM order_items
         WHERE {ids} ORDER BY order_id, product_id"
    )))
    .bind(ids_json)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        use sqlx::{FromRow, Row};
        Ok((
            row.try_get::<i64, _>("order_id")?,
            OrderItem::from_row(row)?,
        ))
    })
    .collect::<Result<Vec<_>>>()?;
    let payments = sqlx::query_as::<_, crate::domain::Payment>(sqlx::AssertSqlSafe(format!(
        "SELECT {} FROM payments WHERE {ids} ORDER BY order_id, id",
        super::payments::COLUMNS
    )))
    .bind(ids_json)
    .fetch_all(&mut *conn)
    .await?;
    Ok((items, payments))
}

/// [`items_and_payments_of`] on SQLite: each kind of row as one JSON array, built by SQLite.
/// Row by row, every row would cross sqlx's worker thread on its own (a channel message, a
/// wake-up and a copy of each value): for the sweep's 100,000 orders that cost more than
/// the queries.
async fn items_and_payments_sqlite(
    conn: &mut Conn,
    ids_json: &str,
) -> Result<(Vec<(i64, OrderItem)>, Vec<crate::domain::Payment>)> {
    let ids = Dialect::Sqlite.in_ids("order_id", 1);
    let items: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT json_group_array(json_array(order_id, product_id, COALESCE(sku, ''), COALESCE(name, ''),
                                            quantity, unit_price_cents)
                                 ORDER BY order_id, product_id)
         FROM order_items WHERE {ids}"
    )))
    .bind(ids_json)
    .fetch_one(&mut *conn)
    .await?;
    let items = parse_rows::<(i64, i64, String, String, i64, i64)>(&items)?
        .into_iter()
        .map(
            |(order_id, product_id, sku, name, quantity, unit_price_cents)| {
                let item = OrderItem {
                    product_id,
                    sku,
                    name,
                    quantity,
                    unit_price_cents,
                };
                (order_id, item)
            },
        )
        .collect();
    let payments: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT json_group_array({} ORDER BY order_id, id) FROM payments WHERE {ids}",
        super::payments::SQLITE_JSON_OBJECT
    )))
    .bind(ids_json)
    .fetch_one(&mut *conn)
    .await?;
    let payments = parse_rows::<super::payments::PaymentJson>(&payments)?
        .into_iter()
        .map(crate::domain::Payment::try_from)
        .collect::<Result<Vec<_>>>()?;
    Ok((items, payments))
}

/// Rows read as one JSON array of arrays.
fn parse_rows<T: serde::de::DeserializeOwned>(json: &str) -> Result<Vec<T>> {
    serde_json::from_str(json).map_err(|e| sqlx::Error::Decode(Box::new(e)).into())
}

/// The orders of a set with their event numbers, on SQLite, as one JSON array (see
/// [`items_and_payments_sqlite`]), in id order.
pub async fn with_seq_sqlite(conn: &mut Conn, ids_json: &str) -> Result<Vec<(Order, i64)>> {
    // serde reads tuples of at most 16: the order's first 15 columns nested.
    type Core = (
        i64,
        String,
        i64,
        String,
        i64,
        String,
        Option<String>,
        Millis,
        Millis,
        Option<Millis>,
        Option<Millis>,
        Option<Millis>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    type Values = (Core, Option<String>, i64);
    let rows: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT json_group_array(json_array(json_array(id, number, user_id, status, total_cents,
                    currency, note, created_at, updated_at, paid_at, completed_at, cancelled_at,
                    cancel_reason, carrier, tracking_number), shipping_address, event_seq)
                ORDER BY id) FROM orders WHERE {}",
        Dialect::Sqlite.in_ids("id", 1)
    )))
    .bind(ids_json)
    .fetch_one(&mut *conn)
    .await?;
    parse_rows::<Values>(&rows)?
        .into_iter()
        .map(|(row, address, seq)| {
            let status =
                OrderStatus::try_from(row.3).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            let order = Order {
                id: row.0,
                number: row.1,
                user_id: row.2,
                status,
                total_cents: row.4,
                currency: row.5,
                note: row.6,
                created_at: row.7,
                updated_at: row.8,
                paid_at: row.9,
                completed_at: row.10,
                cancelled_at: row.11,
                cancel_reason: row.12,
                carrier: row.13,
                tracking_number: row.14,
                shipping_address: Option::try_from(super::JsonColumn::new(address))
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            };
            Ok((order, seq))
        })
        .collect()
}
