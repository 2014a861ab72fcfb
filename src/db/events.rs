//! The outbox: event rows, written in the transaction of the change they report, and their
//! fan-out to the subscribed endpoints' deliveries, both set-based: one statement on
//! PostgreSQL (a data-modifying CTE), on SQLite one per 500 events and one for the deliveries.

use super::{Conn, Dialect};
use crate::domain::Millis;
use crate::error::Result;

/// Events per statement on SQLite: seven bound values each, well under SQLite's limit.
const SQLITE_ROWS_PER_INSERT: usize = 500;

/// Separates the events' `data` on PostgreSQL: the ASCII record separator, which valid JSON
/// never holds (control characters in strings must be escaped, and it is no whitespace).
const DATA_SEPARATOR: &str = "\u{1e}";

/// One event row to write.
#[derive(Debug)]
pub struct EventInsert<'a> {
    pub event_id: &'a str,
    pub kind: &'a str,
    pub order_id: Option<i64>,
    pub product_id: Option<i64>,
    pub seq: Option<i64>,
    pub data: &'a serde_json::value::RawValue,
}

/// Matches an endpoint's event types (a JSON array of names, NULL for all) against `ev.type`.
pub(crate) fn endpoint_wants(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => {
            "(ep.event_types IS NULL OR position('\"' || ev.type || '\"' in ep.event_types) > 0)"
        }
        Dialect::Sqlite => {
            "(ep.event_types IS NULL OR instr(ep.event_types, '\"' || ev.type || '\"') > 0)"
        }
    }
}

/// Inserts the events and a pending delivery of each to every enabled endpoint that wants
/// its type, due at once.
///
/// On PostgreSQL the rows travel as columns, each one text parameter split by
/// `string_to_array`, on SQLite as bound values: parsing a JSON document of whole events
/// (`json_to_recordset`, `json_each`) cost more than writing them.
pub async fn insert<'a>(
    conn: &mut Conn,
    dialect: Dialect,
    events: &[EventInsert<'a>],
    now: Millis,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let wants = endpoint_wants(dialect);
    match dialect {
        Dialect::Postgres => {
            let texts = |text: fn(&EventInsert<'a>) -> &'a str| {
                events.iter().map(text).collect::<Vec<_>>().join(",")
            };
            let numbers = |number: fn(&EventInsert<'a>) -> Option<i64>| {
                events
                    .iter()
                    .map(|e| number(e).map(|n| n.to_string()).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(",")
            };
            // `data` is valid JSON (a `RawValue`), which never holds the separator.
            let data = events
                .iter()
                .map(|e| e.data.get())
                .collect::<Vec<_>>()
                .join(DATA_SEPARATOR);
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "WITH ev AS (
                   INSERT INTO events (event_id, type, order_id, product_id, seq, data, created_at)
                   SELECT r.event_id, r.type, r.order_id, r.product_id, r.seq, r.data, $8
                   FROM unnest(string_to_array($1, ','), string_to_array($2, ','),
                               string_to_array($3, ',', '')::bigint[],
                               string_to_array($4, ',', '')::bigint[],
                               string_to_array($5, ',', '')::bigint[],
                               string_to_array($6, $7))
                     AS r(event_id, type, order_id, product_id, seq, data)
                   RETURNING id, type, order_id, seq)
                 INSERT INTO webhook_deliveries
                   (endpoint_id, event_pk, order_id, seq, status, attempts, next_attempt_at, created_at, updated_at)
                 SELECT ep.id, ev.id, ev.order_id, ev.seq, 'pending', 0, $8, $8, $8
                 FROM ev JOIN webhook_endpoints ep
                   ON ep.enabled AND ep.deleted_at IS NULL AND {wants}"
            )))
            .bind(texts(|e| e.event_id))
            .bind(texts(|e| e.kind))
            .bind(numbers(|e| e.order_id))
            .bind(numbers(|e| e.product_id))
            .bind(numbers(|e| e.seq))
            .bind(data)
            .bind(DATA_SEPARATOR)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Dialect::Sqlite => {
            // Bound values, a few hundred rows a statement: no JSON document to parse, and
            // each event's data is written as it is. Anonymous placeholders: SQLite finds a
            // numbered one by walking the list of all of them. No `RETURNING`: the rows would
            // cross sqlx's worker thread one at a time. The transaction holds SQLite's only
            // write lock (`BEGIN IMMEDIATE`), so the events after the largest id seen here
            // are exactly this call's.
            let before: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events")
                .fetch_one(&mut *conn)
                .await?;
            for chunk in events.chunks(SQLITE_ROWS_PER_INSERT) {
                let values = vec!["(?, ?, ?, ?, ?, ?, ?)"; chunk.len()].join(", ");
                let mut insert = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO events (event_id, type, order_id, product_id, seq, data, created_at)
                     VALUES {values}"
                )));
                for event in chunk {
                    insert = insert
                        .bind(event.event_id)
                        .bind(event.kind)
                        .bind(event.order_id)
                        .bind(event.product_id)
                        .bind(event.seq)
                        .bind(event.data.get())
                        .bind(now);
                }
                insert.execute(&mut *conn).await?;
            }
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO webhook_deliveries
                   (endpoint_id, event_pk, order_id, seq, status, attempts, next_attempt_at, created_at, updated_at)
                 SELECT ep.id, ev.id, ev.order_id, ev.seq, 'pending', 0, $2, $2, $2
                 FROM events ev JOIN webhook_endpoints ep
                   ON ep.enabled AND ep.deleted_at IS NULL AND {wants}
                 WHERE ev.id > $1"
            )))
            .bind(before)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Takes the next number of one order's event sequence (the order is locked by the caller).
pub async fn next_seq(conn: &mut Conn, order_id: i64) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "UPDATE orders SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq",
    )
    .bind(order_id)
    .fetch_one(&mut *conn)
    .await?)
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EventRow {
    pub id: i64,
    pub event_id: String,
    #[sqlx(rename = "type")]
    pub kind: String,
    pub order_id: Option<i64>,
    pub product_id: Option<i64>,
    pub seq: Option<i64>,
    pub data: String,
    pub created_at: Millis,
}

pub(crate) const EVENT_COLUMNS: &str =
    "id, event_id, type, order_id, product_id, seq, data, created_at";

/// The event log, oldest first, after the position `after_id`.
pub async fn list(
    conn: &mut Conn,
    after_id: i64,
    kind: Option<&str>,
    order_id: Option<i64>,
    limit: i64,
) -> Result<Vec<EventRow>> {
    Ok(sqlx::query_as::<_, EventRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events
         WHERE id > $1 AND ($2 IS NULL OR type = $2) AND ($3 IS NULL OR order_id = $3)
         ORDER BY id LIMIT $4"
    )))
    .bind(after_id)
    .bind(kind)
    .bind(order_id)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?)
}

/// One order's events, in `seq` order.
pub async fn of_order(conn: &mut Conn, order_id: i64) -> Result<Vec<EventRow>> {
    Ok(sqlx::query_as::<_, EventRow>(sqlx::AssertSqlSafe(format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE order_id = $1 ORDER BY seq"
    )))
    .bind(order_id)
    .fetch_all(&mut *conn)
    .await?)
}
