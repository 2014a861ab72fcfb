//! Outbound events: what ordo tells the world (README: Events). Every change a shop or a
//! customer cares about becomes an event written in the same transaction as the change (a
//! transactional outbox), through [`record`], the one place that writes them; the
//! dispatcher ([`dispatch`]) delivers them at least once to webhook endpoints and to the
//! message broker.

pub mod dispatch;
pub mod endpoints;
pub mod resolver;
pub mod signing;

use crate::Ordo;
use crate::db::{self, Conn, Dialect};
use crate::domain::{Millis, OrderDetails, OrderStatus, Payment, Product, format_rfc3339};
use crate::error::{Error, Result};
use rand::Rng;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Tells dispatchers that a commit wrote events (and so, perhaps, deliveries). A process
/// that runs a dispatcher wakes it in process: it takes what its own commits wrote, and
/// no word goes through the database. A process without one (a command run from cron,
/// `--no-dispatch`) sends PostgreSQL `NOTIFY ordo_deliveries` after its commit, for the
/// dispatchers listening elsewhere. Sent after the commit, not by a trigger inside it:
/// a notifying transaction holds a database-wide lock while it commits, which would make
/// concurrent placements commit one after another. Dispatchers also poll, so a word lost
/// in a crash only delays.
#[derive(Debug, Default)]
pub struct Wake {
    notify: tokio::sync::Notify,
    /// Dispatchers running in this process.
    local: AtomicUsize,
}

impl Wake {
    /// After a commit that wrote events.
    pub async fn written(&self, db: &crate::Db) {
        if self.local.load(Ordering::Acquire) > 0 {
            self.notify.notify_one();
        } else if db.dialect() == Dialect::Postgres
            && let Err(err) = sqlx::query("SELECT pg_notify('ordo_deliveries', '')")
                .execute(db.pool())
                .await
        {
            tracing::debug!(error = %err, "could not notify the dispatchers; they will poll");
        }
    }

    /// What this process's dispatcher waits on between polls.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }

    /// Wakes this process's dispatcher (a notification from elsewhere, or more work).
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Marks a dispatcher of this process running until the guard is dropped.
    pub fn dispatching(self: &std::sync::Arc<Self>) -> DispatchingGuard {
        self.local.fetch_add(1, Ordering::AcqRel);
        DispatchingGuard(self.clone())
    }
}

/// See [`Wake::dispatching`].
pub struct DispatchingGuard(std::sync::Arc<Wake>);

impl Drop for DispatchingGuard {
    fn drop(&mut self) {
        self.0.local.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The event catalogue.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub enum EventType {
    #[serde(rename = "order.created")]
    OrderCreated,
    #[serde(rename = "order.payment_reminder")]
    OrderPaymentReminder,
    #[serde(rename = "order.paid")]
    OrderPaid,
    #[serde(rename = "order.expired")]
    OrderExpired,
    #[serde(rename = "order.cancelled")]
    OrderCancelled,
    #[serde(rename = "order.shipped")]
    OrderShipped,
    #[serde(rename = "order.completed")]
    OrderCompleted,
    #[serde(rename = "order.refund_requested")]
    OrderRefundRequested,
    #[serde(rename = "order.refunded")]
    OrderRefunded,
    #[serde(rename = "order.refund_rejected")]
    OrderRefundRejected,
    #[serde(rename = "order.address_changed")]
    OrderAddressChanged,
    #[serde(rename = "payment.failed")]
    PaymentFailed,
    #[serde(rename = "payment.late_succeeded")]
    PaymentLateSucceeded,
    #[serde(rename = "product.out_of_stock")]
    ProductOutOfStock,
    #[serde(rename = "product.back_in_stock")]
    ProductBackInStock,
}

impl EventType {
    pub const ALL: [EventType; 15] = [
        EventType::OrderCreated,
        EventType::OrderPaymentReminder,
        EventType::OrderPaid,
        EventType::OrderExpired,
        EventType::OrderCancelled,
        EventType::OrderShipped,
        EventType::OrderCompleted,
        EventType::OrderRefundRequested,
        EventType::OrderRefunded,
        EventType::OrderRefundRejected,
        EventType::OrderAddressChanged,
        EventType::PaymentFailed,
        EventType::PaymentLateSucceeded,
        EventType::ProductOutOfStock,
        EventType::ProductBackInStock,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderCreated => "order.created",
            EventType::OrderPaymentReminder => "order.payment_reminder",
            EventType::OrderPaid => "order.paid",
            EventType::OrderExpired => "order.expired",
            EventType::OrderCancelled => "order.cancelled",
            EventType::OrderShipped => "order.shipped",
            EventType::OrderCompleted => "order.completed",
            EventType::OrderRefundRequested => "order.refund_requested",
            EventType::OrderRefunded => "order.refunded",
            EventType::OrderRefundRejected => "order.refund_rejected",
            EventType::OrderAddressChanged => "order.address_changed",
            EventType::PaymentFailed => "payment.failed",
            EventType::PaymentLateSucceeded => "payment.late_succeeded",
            EventType::ProductOutOfStock => "product.out_of_stock",
            EventType::ProductBackInStock => "product.back_in_stock",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Checks a name against the catalogue, naming `field` when it is not in it.
    pub fn parse_field(field: &str, s: &str) -> Result<EventType> {
        EventType::parse(s).ok_or_else(|| {
            Error::validation(
                field,
                format!(
                    "unknown event type {s:?}; known: {}",
                    EventType::ALL.map(|t| t.as_str()).join(", ")
                ),
            )
        })
    }

    /// The event a transition emits, by who made it.
    pub fn of_transition(from: OrderStatus, to: OrderStatus, by_expiry: bool) -> EventType {
        use OrderStatus::*;
        match (from, to) {
            (_, Paid) if from == Refunding => EventType::OrderRefundRejected,
            (_, Paid) => EventType::OrderPaid,
            (_, Cancelled) if by_expiry => EventType::OrderExpired,
            (_, Cancelled) => EventType::OrderCancelled,
            (_, Shipped) => EventType::OrderShipped,
            (_, Completed) => EventType::OrderCompleted,
            (_, Refunding) => EventType::OrderRefundRequested,
            (_, Refunded) => EventType::OrderRefunded,
            (_, Pending) => EventType::OrderCreated,
        }
    }
}

/// One event, ready to write.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: String,
    pub kind: &'static str,
    pub order_id: Option<i64>,
    pub product_id: Option<i64>,
    pub seq: Option<i64>,
    /// Serialized once, straight from the domain types (no JSON tree in between); written
    /// into the rows as it is.
    pub data: Box<RawValue>,
}

/// An order event's `data`: the order, its sequence number, where it came from, and the
/// type's own fields after them.
#[derive(Serialize)]
struct OrderData<'a> {
    order: &'a OrderDetails,
    seq: i64,
    previous_status: Option<OrderStatus>,
    #[serde(flatten)]
    extra: &'a serde_json::Map<String, Value>,
}

/// A product event's `data`.
#[derive(Serialize)]
struct ProductData<'a> {
    product: &'a Product,
}

/// `data` as raw JSON. The domain types always serialize; should one ever fail, the event
/// still goes out, with `null` data and the failure logged.
fn raw_data(data: &impl Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(data).unwrap_or_else(|err| {
        tracing::error!(error = %err, "could not serialize event data");
        Box::default()
    })
}

/// A fresh public event id: `evt_` and 26 base-32 characters, the first 10 the time in
/// milliseconds and the other 16 random (80 bits). Ids made later sort later, so the
/// unique index on them grows at one end instead of splitting pages all over.
pub fn new_event_id() -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut rng = rand::rng();
    let time = (0..10)
        .rev()
        .map(|i| ALPHABET[((now >> (5 * i)) & 31) as usize] as char);
    let random: Vec<char> = (0..16)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("evt_{}", time.chain(random).collect::<String>())
}

impl NewEvent {
    /// An order's event: `data.order` is the order as `GET /orders/{id}` shows it, `seq`
    /// its number in the order's sequence, `previous_status` where it came from; `extra`
    /// adds the type's own fields.
    pub fn order(
        kind: EventType,
        order: &OrderDetails,
        seq: i64,
        previous_status: Option<OrderStatus>,
        extra: Value,
    ) -> NewEvent {
        let none = serde_json::Map::new();
        let extra = match &extra {
            Value::Object(fields) => fields,
            _ => &none,
        };
        let data = raw_data(&OrderData {
            order,
            seq,
            previous_status,
            extra,
        });
        NewEvent {
            event_id: new_event_id(),
            kind: kind.as_str(),
            order_id: Some(order.order.id),
            product_id: None,
            seq: Some(seq),
            data,
        }
    }

    /// A product's event (out of stock, back in stock).
    pub fn product(kind: EventType, product: &Product) -> NewEvent {
        NewEvent {
            event_id: new_event_id(),
            kind: kind.as_str(),
            order_id: None,
            product_id: Some(product.id),
            seq: None,
            data: raw_data(&ProductData { product }),
        }
    }
}

/// The payment and its deadline, as `order.created` and friends carry them.
pub fn payment_data(payment: &Payment) -> Value {
    json!({ "payment": payment })
}

/// The out-of-stock and back-in-stock events of products whose stock just changed by
/// `delta` (negative: taken) to what `product` shows.
pub fn stock_events(product: &Product, delta: i64) -> Option<NewEvent> {
    let before = product.stock - delta;
    if product.stock == 0 && before > 0 {
        Some(NewEvent::product(EventType::ProductOutOfStock, product))
    } else if before == 0 && product.stock > 0 {
        Some(NewEvent::product(EventType::ProductBackInStock, product))
    } else {
        None
    }
}

/// Writes events in the caller's transaction: the one place events are written. Nothing
/// when `enabled` is off.
pub(crate) async fn record(
    conn: &mut Conn,
    dialect: Dialect,
    enabled: bool,
    events: &[NewEvent],
    now: Millis,
) -> Result<()> {
    if !enabled || events.is_empty() {
        return Ok(());
    }
    let rows: Vec<db::events::EventInsert<'_>> = events
        .iter()
        .map(|e| db::events::EventInsert {
            event_id: &e.event_id,
            kind: e.kind,
            order_id: e.order_id,
            product_id: e.product_id,
            seq: e.seq,
            data: &e.data,
        })
        .collect();
    db::events::insert(conn, dialect, &rows, now).await
}

/// The envelope a receiver gets: `{id, type, timestamp, data}`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Event {
    /// `evt_…`, the same on every redelivery (also the `webhook-id` header).
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// RFC 3339, when the change happened.
    pub timestamp: String,
    /// The event's data: `order` (as `GET /orders/{id}` shows it), `seq` and
    /// `previous_status` for order events, `product` for product events, and the type's
    /// own fields.
    #[schema(value_type = Object)]
    pub data: Value,
    /// Its position in the log, for `GET /events?after=`.
    pub position: i64,
}

impl Event {
    pub fn from_row(row: db::events::EventRow) -> Event {
        Event {
            id: row.event_id,
            kind: row.kind,
            timestamp: format_rfc3339(row.created_at),
            data: serde_json::from_str(&row.data).unwrap_or(Value::Null),
            position: row.id,
        }
    }

    /// The body posted to webhooks and published to the broker (without `position`).
    pub fn body(row: &db::events::EventRow) -> String {
        format!(
            "{{\"id\":{},\"type\":{},\"timestamp\":{},\"data\":{}}}",
            Value::String(row.event_id.clone()),
            Value::String(row.kind.clone()),
            Value::String(format_rfc3339(row.created_at)),
            row.data
        )
    }
}

/// Filters of the event log.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub after: i64,
    pub kind: Option<EventType>,
    pub order_id: Option<i64>,
    pub limit: i64,
}

impl Ordo {
    /// The event log, oldest first (staff), to reconcile.
    pub async fn events(
        &self,
        actor: crate::domain::Actor,
        filter: &EventFilter,
    ) -> Result<Vec<Event>> {
        crate::auth::require_staff(actor)?;
        let mut conn = self.db.pool().acquire().await?;
        Ok(db::events::list(
            &mut conn,
            filter.after,
            filter.kind.map(EventType::as_str),
            filter.order_id,
            filter.limit,
        )
        .await?
        .into_iter()
        .map(Event::from_row)
        .collect())
    }

    /// The position of the newest event (0 when there is none).
    pub async fn last_event_position(&self) -> Result<i64> {
        let mut conn = self.db.pool().acquire().await?;
        Ok(
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(id) FROM events")
                .fetch_one(&mut *conn)
                .await?
                .unwrap_or(0),
        )
    }

    /// The position of an event id in the log, to read on from it.
    pub async fn event_position(&self, event_id: &str) -> Result<i64> {
        let mut conn = self.db.pool().acquire().await?;
        sqlx::query_scalar("SELECT id FROM events WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(Error::NotFound { what: "event" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_unique_and_sort_by_time() {
        let first = new_event_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let ids: Vec<String> = (0..1000).map(|_| new_event_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), 30, "{id}");
            assert!(id.starts_with("evt_"));
            assert!(
                id[4..]
                    .bytes()
                    .all(|b| b"0123456789abcdefghjkmnpqrstvwxyz".contains(&b))
            );
            assert!(*id > first, "{id} sorts before the earlier {first}");
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
    }

    #[test]
    fn names_round_trip() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        assert!(EventType::parse("order.deleted").is_none());
    }

    #[test]
    fn every_transition_has_its_event() {
        use OrderStatus::*;
        // Every move of the lifecycle (and the sweep's cancellation), with its event.
        let table = [
            (Pending, Paid, false, EventType::OrderPaid),
            (Pending, Cancelled, false, EventType::OrderCancelled),
            (Pending, Cancelled, true, EventType::OrderExpired),
            (Paid, Shipped, false, EventType::OrderShipped),
            (Paid, Refunding, false, EventType::OrderRefundRequested),
            (Paid, Cancelled, false, EventType::OrderCancelled),
            (Shipped, Completed, false, EventType::OrderCompleted),
            (Shipped, Refunding, false, EventType::OrderRefundRequested),
            (Completed, Refunding, false, EventType::OrderRefundRequested),
            (Refunding, Refunded, false, EventType::OrderRefunded),
            (Refunding, Paid, false, EventType::OrderRefundRejected),
        ];
        for (from, to, by_expiry, event) in table {
            assert_eq!(
                EventType::of_transition(from, to, by_expiry),
                event,
                "{from} -> {to}{}",
                if by_expiry { " (expiry)" } else { "" }
            );
        }
        // The table is the lifecycle's: no move left out, none made up.
        let moves: Vec<(OrderStatus, OrderStatus)> = OrderStatus::ALL
            .into_iter()
            .flat_map(|from| from.allowed_moves().iter().map(move |to| (from, *to)))
            .collect();
        let mut listed: Vec<(OrderStatus, OrderStatus)> = table
            .iter()
            .filter(|(_, _, by_expiry, _)| !by_expiry)
            .map(|(from, to, _, _)| (*from, *to))
            .collect();
        listed.sort();
        let mut all = moves.clone();
        all.sort();
        assert_eq!(listed, all);
        assert_eq!(moves.len(), 10);
    }

    #[test]
    fn event_ids_are_random() {
        let a = new_event_id();
        assert_eq!(a.len(), 30);
        assert!(a.starts_with("evt_"));
        assert_ne!(a, new_event_id());
    }
}
