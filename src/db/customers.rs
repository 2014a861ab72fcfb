//! Customers (users with the customer role) by the shop's own id, their search, and what a
//! personal-data erasure rewrites: the customer's row, the addresses of its orders and the
//! events that carried them, the payer openids of its payments.

use super::{Conn, Dialect};
use crate::domain::{Customer, Millis};
use crate::error::Result;

pub(crate) const COLUMNS: &str = "id, external_id, name AS display_name, phone, wechat_openid, \
     created_at, COALESCE(updated_at, created_at) AS updated_at, erased_at";

/// What an upsert sets: `phone` and `wechat_openid` are `Some(None)` to clear, `None` to
/// leave as they are.
pub struct CustomerFields<'a> {
    pub display_name: &'a str,
    pub phone: Option<Option<&'a str>>,
    pub wechat_openid: Option<Option<&'a str>>,
}

/// Creates the customer with this external id unless one exists; returns it if created.
/// Racing creators: one inserts, the others (on PostgreSQL, after it commits) insert
/// nothing.
pub async fn insert_by_external_id(
    conn: &mut Conn,
    external_id: &str,
    fields: &CustomerFields<'_>,
    now: Millis,
) -> Result<Option<Customer>> {
    Ok(sqlx::query_as::<_, Customer>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (name, role, external_id, phone, phone_digits, wechat_openid, created_at, updated_at)
         VALUES ($1, 'customer', $2, $3, $6, $4, $5, $5)
         ON CONFLICT (external_id) DO NOTHING RETURNING {COLUMNS}"
    )))
    .bind(fields.display_name)
    .bind(external_id)
    .bind(fields.phone.flatten())
    .bind(fields.wechat_openid.flatten())
    .bind(now)
    .bind(fields.phone.flatten().map(digits))
    .fetch_optional(&mut *conn)
    .await?)
}

/// A phone's digits alone.
fn digits(phone: &str) -> String {
    phone.chars().filter(char::is_ascii_digit).collect()
}

/// Updates the customer with this external id; `None` if there is none (or it is staff).
/// A customer whose data was erased and is given again is no longer erased (the audit log
/// keeps the erasure).
pub async fn update_by_external_id(
    conn: &mut Conn,
    external_id: &str,
    fields: &CustomerFields<'_>,
    now: Millis,
) -> Result<Option<Customer>> {
    Ok(sqlx::query_as::<_, Customer>(sqlx::AssertSqlSafe(format!(
        "UPDATE users SET name = $2,
                phone = CASE WHEN $3 THEN $4 ELSE phone END,
                phone_digits = CASE WHEN $3 THEN $8 ELSE phone_digits END,
                wechat_openid = CASE WHEN $5 THEN $6 ELSE wechat_openid END,
                updated_at = $7, erased_at = NULL
         WHERE external_id = $1 AND role = 'customer' RETURNING {COLUMNS}"
    )))
    .bind(external_id)
    .bind(fields.display_name)
    .bind(fields.phone.is_some())
    .bind(fields.phone.flatten())
    .bind(fields.wechat_openid.is_some())
    .bind(fields.wechat_openid.flatten())
    .bind(now)
    .bind(fields.phone.flatten().map(digits))
    .fetch_optional(&mut *conn)
    .await?)
}

/// The user with this external id, whatever its role.
pub async fn role_of_external_id(conn: &mut Conn, external_id: &str) -> Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT role FROM users WHERE external_id = $1")
            .bind(external_id)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// A customer (a user with the customer role).
pub async fn get(conn: &mut Conn, id: i64) -> Result<Option<Customer>> {
    Ok(sqlx::query_as::<_, Customer>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE id = $1 AND role = 'customer'"
    )))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?)
}

/// Several customers by id (a JSON array), for the pages that name them.
pub async fn by_ids(conn: &mut Conn, dialect: Dialect, ids_json: &str) -> Result<Vec<Customer>> {
    Ok(sqlx::query_as::<_, Customer>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users WHERE role = 'customer' AND {}",
        dialect.in_ids("id", 1)
    )))
    .bind(ids_json)
    .fetch_all(&mut *conn)
    .await?)
}

/// Customers newest first, before `before_id`: those whose external id or phone is `q`,
/// whose phone's digits hold `q`'s (four or more), or whose name contains `q` (any case);
/// every customer without `q`. The walk goes down the primary key and stops at a page, so
/// a common name costs little; a rare one reads the table once (100,000 customers: a few
/// tens of milliseconds, BENCHMARKS.md).
pub async fn search(
    conn: &mut Conn,
    q: Option<&str>,
    before_id: Option<i64>,
    limit: i64,
) -> Result<Vec<Customer>> {
    let before = before_id.unwrap_or(i64::MAX);
    let Some(q) = q else {
        return Ok(sqlx::query_as::<_, Customer>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE role = 'customer' AND id < $1
             ORDER BY id DESC LIMIT $2"
        )))
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?);
    };
    let digits = digits(q);
    // Only what reads as a phone number is matched against phones.
    let phone_like = digits.len() >= 4
        && q.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-' | '(' | ')'));
    let escaped = q
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    Ok(sqlx::query_as::<_, Customer>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM users
         WHERE role = 'customer' AND id < $1
           AND (external_id = $2 OR phone = $2
                OR lower(name) LIKE $3 ESCAPE '\\'
                OR ($4 AND phone_digits LIKE $5))
         ORDER BY id DESC LIMIT $6"
    )))
    .bind(before)
    .bind(q)
    .bind(format!("%{escaped}%"))
    .bind(phone_like)
    .bind(format!("%{digits}%"))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// Replaces the customer's name, phone and openid; returns whether it was a customer.
pub async fn erase(conn: &mut Conn, id: i64, name: &str, now: Millis) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE users SET name = $2, phone = NULL, phone_digits = NULL, wechat_openid = NULL, updated_at = $3,
                erased_at = $3
         WHERE id = $1 AND role = 'customer'",
    )
    .bind(id)
    .bind(name)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The customer's orders that are not finished (pending, paid, shipped, refunding):
/// (id, number, status).
pub async fn open_orders(conn: &mut Conn, user_id: i64) -> Result<Vec<(i64, String, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, number, status FROM orders
         WHERE user_id = $1 AND status IN ('pending', 'paid', 'shipped', 'refunding')
         ORDER BY id",
    )
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?)
}

/// The customer's orders with an address: (id, address as stored).
pub async fn addresses_of(conn: &mut Conn, user_id: i64) -> Result<Vec<(i64, String)>> {
    Ok(sqlx::query_as(
        "SELECT id, shipping_address FROM orders
         WHERE user_id = $1 AND shipping_address IS NOT NULL ORDER BY id",
    )
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?)
}

/// Sets orders' addresses (`id`, `address` rows, the address as JSON text).
pub async fn set_addresses(conn: &mut Conn, dialect: Dialect, rows_json: &str) -> Result<()> {
    let rows = dialect.json_rows(1, &[("id", "bigint"), ("address", "text")]);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE orders SET shipping_address = r.address FROM {rows} WHERE orders.id = r.id"
    )))
    .bind(rows_json)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The events of the customer's orders: (id, data).
pub async fn events_of(conn: &mut Conn, user_id: i64) -> Result<Vec<(i64, String)>> {
    Ok(sqlx::query_as(
        "SELECT e.id, e.data FROM events e JOIN orders o ON o.id = e.order_id
         WHERE o.user_id = $1 ORDER BY e.id",
    )
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?)
}

/// Rewrites events' data (`id`, `data` rows).
pub async fn set_event_data(conn: &mut Conn, dialect: Dialect, rows_json: &str) -> Result<()> {
    let rows = dialect.json_rows(1, &[("id", "bigint"), ("data", "text")]);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE events SET data = r.data FROM {rows} WHERE events.id = r.id"
    )))
    .bind(rows_json)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Forgets what receivers answered to the deliveries of the customer's orders' events (an
/// answer may echo the body it was sent), and the payer openids of its payments.
pub async fn forget_traces(conn: &mut Conn, user_id: i64) -> Result<()> {
    sqlx::query(
        "UPDATE webhook_attempts SET response = NULL
         WHERE response IS NOT NULL AND delivery_id IN (
             SELECT d.id FROM webhook_deliveries d JOIN orders o ON o.id = d.order_id
             WHERE o.user_id = $1)",
    )
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE payments SET payer_openid = NULL
         WHERE payer_openid IS NOT NULL AND order_id IN (SELECT id FROM orders WHERE user_id = $1)",
    )
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
