//! Payment rows and the provider's event ids (which make the webhook idempotent).

use super::{Conn, Dialect};
use crate::domain::{Millis, Payment, PaymentProvider, PaymentStatus, RefundState};
use crate::error::Result;

pub(crate) const COLUMNS: &str = "id, order_id, amount_cents, method, status, expires_at, provider, \
     provider_ref, provider_txn_id, provider_state, CAST(provider_open AS INTEGER) AS provider_open, \
     provider_checked_at, provider_error, CAST(refund_required AS INTEGER) AS refund_required, \
     refund_state, refund_ref, refund_error, created_at, updated_at, merchant_ref, out_refund_no, \
     provider_client, payer_openid, refund_attempts";

/// A payment as one SQLite JSON object (see `orders::items_and_payments_of`): the columns of
/// [`COLUMNS`] under their names.
pub(crate) const SQLITE_JSON_OBJECT: &str = "json_object('id', id, 'order_id', order_id, \
     'amount_cents', amount_cents, 'method', method, 'status', status, 'expires_at', expires_at, \
     'provider', provider, 'provider_ref', provider_ref, 'provider_txn_id', provider_txn_id, \
     'provider_state', provider_state, 'provider_open', provider_open, \
     'provider_checked_at', provider_checked_at, 'provider_error', provider_error, \
     'refund_required', refund_required, 'refund_state', refund_state, 'refund_ref', refund_ref, \
     'refund_error', refund_error, 'created_at', created_at, 'updated_at', updated_at, \
     'merchant_ref', merchant_ref, 'out_refund_no', out_refund_no, \
     'provider_client', provider_client, 'payer_openid', payer_openid, \
     'refund_attempts', refund_attempts)";

/// A payment as [`SQLITE_JSON_OBJECT`] writes it.
#[derive(serde::Deserialize)]
pub(crate) struct PaymentJson {
    id: i64,
    order_id: i64,
    amount_cents: i64,
    method: String,
    status: String,
    expires_at: Millis,
    provider: String,
    provider_ref: Option<String>,
    provider_txn_id: Option<String>,
    provider_state: Option<String>,
    provider_open: i64,
    provider_checked_at: Option<Millis>,
    provider_error: Option<String>,
    refund_required: i64,
    refund_state: Option<String>,
    refund_ref: Option<String>,
    refund_error: Option<String>,
    created_at: Millis,
    updated_at: Millis,
    merchant_ref: Option<String>,
    out_refund_no: Option<String>,
    provider_client: Option<String>,
    payer_openid: Option<String>,
    refund_attempts: i64,
}

impl TryFrom<PaymentJson> for Payment {
    type Error = crate::Error;

    fn try_from(row: PaymentJson) -> Result<Payment> {
        let decode = |e: crate::domain::lifecycle::UnknownStatus| {
            crate::Error::Database(sqlx::Error::Decode(Box::new(e)))
        };
        Ok(Payment {
            id: row.id,
            order_id: row.order_id,
            amount_cents: row.amount_cents,
            method: row.method,
            status: PaymentStatus::try_from(row.status).map_err(decode)?,
            expires_at: row.expires_at,
            provider: crate::domain::PaymentProvider::try_from(row.provider).map_err(decode)?,
            provider_ref: row.provider_ref,
            provider_txn_id: row.provider_txn_id,
            provider_state: row.provider_state,
            provider_open: row.provider_open != 0,
            provider_checked_at: row.provider_checked_at,
            provider_error: row.provider_error,
            refund_required: row.refund_required != 0,
            refund_state: row.refund_state,
            refund_ref: row.refund_ref,
            refund_error: row.refund_error,
            created_at: row.created_at,
            updated_at: row.updated_at,
            merchant_ref: row.merchant_ref,
            out_refund_no: row.out_refund_no,
            provider_client: row.provider_client,
            payer_openid: row.payer_openid,
            refund_attempts: row.refund_attempts,
        })
    }
}

/// A new open payment. `merchant_ref` is the reference ordo gives a provider (none for
/// `manual`); WeChat Pay's and Alipay's payments are known by it from the start.
#[allow(clippy::too_many_arguments)]
pub async fn insert(
    conn: &mut Conn,
    order_id: i64,
    amount_cents: i64,
    method: &str,
    provider: PaymentProvider,
    merchant_ref: Option<&str>,
    expires_at: Millis,
    now: Millis,
) -> Result<Payment> {
    let provider_ref = merchant_ref.filter(|_| provider.ref_is_merchant_ref());
    Ok(sqlx::query_as::<_, Payment>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO payments (order_id, amount_cents, method, status, expires_at, refund_required,
                               provider, merchant_ref, provider_ref, created_at, updated_at)
         VALUES ($1, $2, $3, 'pending', $4, FALSE, $5, $6, $7, $8, $8) RETURNING {COLUMNS}"
    )))
    .bind(order_id)
    .bind(amount_cents)
    .bind(method)
    .bind(expires_at)
    .bind(provider.as_str())
    .bind(merchant_ref)
    .bind(provider_ref)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?)
}

/// The payment a provider knows by `provider_ref` (out_trade_no, PaymentIntent id).
pub async fn by_provider_ref(
    conn: &mut Conn,
    provider: PaymentProvider,
    provider_ref: &str,
) -> Result<Option<Payment>> {
    Ok(sqlx::query_as::<_, Payment>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM payments WHERE provider = $1 AND provider_ref = $2 ORDER BY id LIMIT 1"
    )))
    .bind(provider.as_str())
    .bind(provider_ref)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The payment whose refund carries this number.
pub async fn by_out_refund_no(
    conn: &mut Conn,
    provider: PaymentProvider,
    out_refund_no: &str,
) -> Result<Option<Payment>> {
    Ok(sqlx::query_as::<_, Payment>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM payments WHERE provider = $1 AND out_refund_no = $2"
    )))
    .bind(provider.as_str())
    .bind(out_refund_no)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The provider opened the payment: from now on the sweep asks before it gives it up.
pub async fn record_opened(
    conn: &mut Conn,
    id: i64,
    provider_ref: &str,
    client_json: &str,
    state: &str,
    payer_openid: Option<&str>,
    now: Millis,
) -> Result<Payment> {
    Ok(sqlx::query_as::<_, Payment>(sqlx::AssertSqlSafe(format!(
        "UPDATE payments SET provider_ref = $2, provider_client = $3, provider_state = $4,
                payer_openid = $5, provider_open = TRUE, provider_error = NULL,
                provider_checked_at = $6, updated_at = $6
         WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(provider_ref)
    .bind(client_json)
    .bind(state)
    .bind(payer_openid)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?)
}

/// What talking to the provider about a payment last came to: its state (when it
/// answered) or the failure (when it did not).
pub async fn record_asked(
    conn: &mut Conn,
    id: i64,
    state: Option<&str>,
    error: Option<&str>,
    now: Millis,
) -> Result<()> {
    sqlx::query(
        "UPDATE payments SET provider_state = COALESCE($2, provider_state), provider_error = $3,
                provider_checked_at = $4
         WHERE id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(error)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The provider's transaction can no longer be paid (closed, failed, never made): the
/// payment is no longer open there. It stays as it is in ordo until its order moves.
pub async fn record_closed(conn: &mut Conn, id: i64, state: &str, now: Millis) -> Result<()> {
    sqlx::query(
        "UPDATE payments SET provider_open = FALSE, provider_state = $2, provider_error = NULL,
                provider_checked_at = $3, updated_at = $3
         WHERE id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// [`record_closed`] for many payments: `id`, `state` rows (a JSON array).
pub async fn record_closed_many(
    conn: &mut Conn,
    dialect: Dialect,
    rows_json: &str,
    now: Millis,
) -> Result<()> {
    let rows = dialect.json_rows(1, &[("id", "bigint"), ("state", "text")]);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE payments SET provider_open = FALSE, provider_state = r.state, provider_error = NULL,
                provider_checked_at = $2, updated_at = $2
         FROM {rows} WHERE payments.id = r.id"
    )))
    .bind(rows_json)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The provider took the money: `succeeded`, no longer open there.
pub async fn record_succeeded(
    conn: &mut Conn,
    id: i64,
    provider_ref: Option<&str>,
    txn_id: Option<&str>,
    state: Option<&str>,
    payer_openid: Option<&str>,
    now: Millis,
) -> Result<()> {
    sqlx::query(
        "UPDATE payments SET status = 'succeeded', provider_ref = COALESCE($2, provider_ref),
                provider_txn_id = COALESCE($3, provider_txn_id),
                provider_state = COALESCE($4, provider_state),
                payer_openid = COALESCE(payer_openid, $5), provider_open = FALSE,
                provider_error = NULL, updated_at = $6
         WHERE id = $1",
    )
    .bind(id)
    .bind(provider_ref)
    .bind(txn_id)
    .bind(state)
    .bind(payer_openid)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A refund to send: `requested` under `out_refund_no`, due at `now`.
pub async fn request_refund(
    conn: &mut Conn,
    id: i64,
    out_refund_no: &str,
    attempts: i64,
    now: Millis,
) -> Result<()> {
    sqlx::query(
        "UPDATE payments SET refund_state = 'requested', out_refund_no = $2, refund_error = NULL,
                refund_attempts = $3, refund_next_at = $4, updated_at = $4
         WHERE id = $1",
    )
    .bind(id)
    .bind(out_refund_no)
    .bind(attempts)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Where a refund stands now. `next_at`: when the refund job looks at it again (none: it
/// waits for staff). `forget_number`: the provider failed the refund under its number for
/// good, so the next try takes a new one.
#[allow(clippy::too_many_arguments)]
pub async fn record_refund(
    conn: &mut Conn,
    id: i64,
    state: RefundState,
    refund_ref: Option<&str>,
    error: Option<&str>,
    next_at: Option<Millis>,
    forget_number: bool,
    now: Millis,
) -> Result<()> {
    sqlx::query(
        "UPDATE payments SET refund_state = $2, refund_ref = COALESCE($3, refund_ref),
                refund_error = $4, refund_next_at = $5,
                out_refund_no = CASE WHEN $6 = 1 THEN NULL ELSE out_refund_no END, updated_at = $7
         WHERE id = $1",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(refund_ref)
    .bind(error)
    .bind(next_at)
    .bind(i64::from(forget_number))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A late payment's refund went through the provider: `refunded`, off the queue.
pub async fn settle_late_refund(conn: &mut Conn, id: i64, now: Millis) -> Result<()> {
    sqlx::query(
        "UPDATE payments SET status = 'refunded', refund_required = FALSE, updated_at = $2
         WHERE id = $1 AND status = 'succeeded'",
    )
    .bind(id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Refunds to send or to confirm, due by `now`, by id after `after_id`.
pub async fn refunds_due(
    conn: &mut Conn,
    now: Millis,
    after_id: i64,
    limit: i64,
) -> Result<Vec<Payment>> {
    Ok(sqlx::query_as::<_, Payment>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM payments
         WHERE refund_state IN ('requested', 'processing') AND refund_next_at <= $1 AND id > $2
         ORDER BY id LIMIT $3"
    )))
    .bind(now)
    .bind(after_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// Payments open at a provider, opened at or before `opened_before` and not asked about
/// since `asked_before`: what reconciliation asks about, by id after `after_id`.
pub async fn open_at_provider(
    conn: &mut Conn,
    opened_before: Millis,
    asked_before: Millis,
    after_id: i64,
    limit: i64,
) -> Result<Vec<Payment>> {
    Ok(sqlx::query_as::<_, Payment>(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM payments
         WHERE provider_open AND created_at <= $1
           AND (provider_checked_at IS NULL OR provider_checked_at <= $2) AND id > $3
         ORDER BY id LIMIT $4"
    )))
    .bind(opened_before)
    .bind(asked_before)
    .bind(after_id)
    .bind(limit)
    .fetch_all(&mut *conn)
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

/// Locks a payment and its order, the order first (the order every writer follows).
pub async fn lock_with_order(
    conn: &mut Conn,
    dialect: Dialect,
    id: i64,
) -> Result<(crate::domain::Order, Payment)> {
    let not_found = || crate::Error::NotFound { what: "payment" };
    let order_id = get(conn, id).await?.ok_or_else(not_found)?.order_id;
    let order = super::orders::lock_existing(conn, dialect, order_id).await?;
    let payment = lock(conn, dialect, id).await?.ok_or_else(not_found)?;
    Ok((order, payment))
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
