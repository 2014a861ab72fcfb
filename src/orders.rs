//! Orders: placing one (through [`crate::placement`], which combines concurrent
//! placements), and running a lifecycle transition with its effects, its history row, its
//! event and (for staff) its audit row, in one transaction.

use crate::Ordo;
use crate::audit::{self, Object};
use crate::db::orders::StatusFields;
use crate::db::{self, Conn};
use crate::domain::lifecycle::{self, Refusal};
use crate::domain::{
    Actor, HistoryEntry, Millis, MovementReason, NewOrder, Order, OrderDetails, OrderItem,
    OrderLine, OrderStatus, Payment, PaymentProvider, PaymentStatus, Product, Role,
};
use crate::error::{Error, Result};
use crate::events::{self, EventType, NewEvent};
use crate::placement::{Placed, PlacementRequest};

pub use crate::placement::PlacedOrder;
use serde_json::json;
use std::collections::BTreeMap;

pub use crate::db::orders::OrderFilter;

/// Most lines one order may hold.
pub const MAX_ITEMS: usize = 100;
/// Most units of one product in one order, whatever the configured limit.
pub const MAX_QUANTITY: i64 = 1_000_000;

/// What a transition carries besides its target.
#[derive(Debug, Clone, Default)]
pub struct TransitionInput {
    pub note: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    /// The payment that paid the order (pending → paid), for its event.
    pub payment_id: Option<i64>,
}

impl NewOrder {
    /// An order for `user_id` of `(product_id, quantity)` lines.
    pub fn from_lines(user_id: i64, lines: &[(i64, i64)], note: Option<String>) -> NewOrder {
        NewOrder {
            user_id,
            items: lines
                .iter()
                .map(|&(product_id, quantity)| OrderLine {
                    product_id,
                    quantity,
                })
                .collect(),
            note,
            shipping_address: None,
        }
    }

    /// Checks the order and folds repeated products into one line each, in product-id
    /// order (the order stock is reserved in). `max_units` caps the units of the whole
    /// order (0: only the absolute cap).
    pub fn validated_lines(&self, max_units: u32) -> Result<Vec<(i64, i64)>> {
        if self.items.is_empty() {
            return Err(Error::validation(
                "items",
                "an order needs at least one item",
            ));
        }
        if self.items.len() > MAX_ITEMS {
            return Err(Error::validation(
                "items",
                format!("at most {MAX_ITEMS} items"),
            ));
        }
        if let Some(note) = &self.note {
            crate::domain::text::check_free("note", note, 1000)?;
        }
        let mut lines: BTreeMap<i64, i64> = BTreeMap::new();
        let mut units: i64 = 0;
        for (i, item) in self.items.iter().enumerate() {
            if item.product_id <= 0 {
                return Err(Error::validation(
                    format!("items[{i}].product_id"),
                    "must be a positive product id",
                ));
            }
            if !(1..=MAX_QUANTITY).contains(&item.quantity) {
                return Err(Error::validation(
                    format!("items[{i}].quantity"),
                    format!("must be between 1 and {MAX_QUANTITY}"),
                ));
            }
            units += item.quantity;
            if max_units > 0 && units > i64::from(max_units) {
                return Err(Error::validation(
                    format!("items[{i}].quantity"),
                    format!("an order may hold at most {max_units} units in all"),
                ));
            }
            let total = lines.entry(item.product_id).or_insert(0);
            *total += item.quantity;
            if *total > MAX_QUANTITY {
                return Err(Error::validation(
                    format!("items[{i}].quantity"),
                    format!("at most {MAX_QUANTITY} units of one product"),
                ));
            }
        }
        Ok(lines.into_iter().collect())
    }
}

/// What makes two order requests the same: the customer, the merged lines, the note and
/// the address.
fn request_hash(
    new: &NewOrder,
    lines: &[(i64, i64)],
    address: Option<&crate::domain::ShippingAddress>,
) -> String {
    use sha2::{Digest, Sha256};
    let canonical = json!({
        "user_id": new.user_id,
        "items": lines,
        "note": new.note,
        "shipping_address": address,
    });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// The lifecycle role `actor` plays for `order`. Another customer's order does not exist
/// for them: `NotFound`, so ids leak nothing.
pub(crate) fn role_for(actor: Actor, order: &Order) -> Result<Role> {
    match actor {
        Actor::Customer(id) if id == order.user_id => Ok(Role::Owner),
        Actor::Customer(_) => Err(Error::NotFound { what: "order" }),
        Actor::Staff(_) | Actor::Operator => Ok(Role::Staff),
        Actor::Expiry => Ok(Role::Expiry),
        Actor::Payment => Ok(Role::Payment),
        Actor::Scheduler => Err(Error::Forbidden {
            reason: "the scheduler moves no orders".to_owned(),
        }),
    }
}

/// The order, if `actor` may see it; another customer's order is `NotFound`.
async fn visible_order(conn: &mut Conn, actor: Actor, order_id: i64) -> Result<Order> {
    let order = db::orders::get(conn, order_id)
        .await?
        .ok_or(Error::NotFound { what: "order" })?;
    role_for(actor, &order)?;
    Ok(order)
}

pub(crate) fn refusal_error(from: OrderStatus, to: OrderStatus, refusal: Refusal) -> Error {
    match refusal {
        Refusal::NotAllowed { allowed } => Error::InvalidTransition {
            from,
            to,
            allowed: allowed.to_vec(),
        },
        Refusal::NotPermitted => Error::Forbidden {
            reason: format!("you may not move this order from {from} to {to}"),
        },
    }
}

/// The audit action a staff move is recorded as.
fn audit_action(from: OrderStatus, to: OrderStatus) -> &'static str {
    match (from, to) {
        (OrderStatus::Refunding, OrderStatus::Paid) => "order.refund_reject",
        (_, OrderStatus::Paid) => "order.pay",
        (_, OrderStatus::Cancelled) => "order.cancel",
        (_, OrderStatus::Shipped) => "order.ship",
        (_, OrderStatus::Completed) => "order.complete",
        (_, OrderStatus::Refunding) => "order.refund_request",
        (_, OrderStatus::Refunded) => "order.refund_approve",
        (_, OrderStatus::Pending) => "order.create",
    }
}

/// The ids of orders as the set-based statements take them.
pub(crate) fn ids_json(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned())
}

/// `order.expired`, as the sweep's batches and the per-order path both write it.
pub(crate) fn expired_event(details: &OrderDetails, seq: i64) -> NewEvent {
    NewEvent::order(
        EventType::OrderExpired,
        details,
        seq,
        Some(OrderStatus::Pending),
        json!({"units_released": units_per_product(&details.items)}),
    )
}

/// Units per product, as `order.expired` reports what it released.
pub(crate) fn units_per_product(items: &[OrderItem]) -> serde_json::Value {
    json!(
        items
            .iter()
            .map(|i| json!({"product_id": i.product_id, "quantity": i.quantity}))
            .collect::<Vec<_>>()
    )
}

impl Ordo {
    /// Runs an already-authorized move inside the caller's transaction, with the order row
    /// locked: the compare-and-set, the move's effects (README: How it is built), one history row and the
    /// move's event. The one place a single order changes status, whoever asks.
    pub(crate) async fn apply_transition(
        &self,
        conn: &mut Conn,
        order: &Order,
        to: OrderStatus,
        actor: Actor,
        input: &TransitionInput,
        now: Millis,
    ) -> Result<Order> {
        let dialect = self.db.dialect();
        let from = order.status;
        let note = input.note.as_deref();
        let default_reason = format!("cancelled by {}", actor.label());
        let fields = StatusFields {
            paid_at: (to == OrderStatus::Paid).then_some(now),
            completed_at: (to == OrderStatus::Completed).then_some(now),
            cancelled_at: (to == OrderStatus::Cancelled).then_some(now),
            cancel_reason: (to == OrderStatus::Cancelled).then(|| note.unwrap_or(&default_reason)),
            carrier: input
                .carrier
                .as_deref()
                .filter(|_| to == OrderStatus::Shipped),
            tracking_number: input
                .tracking_number
                .as_deref()
                .filter(|_| to == OrderStatus::Shipped),
        };
        let (updated, seq) =
            db::orders::compare_and_set_status(conn, order.id, from, to, &fields, now)
                .await?
                .ok_or_else(|| {
                    Error::Conflict(format!(
                        "order {} changed while moving it to {to}; retry",
                        order.id
                    ))
                })?;
        let ids = ids_json(&[order.id]);
        let actor_label = actor.label();
        let mut returned: Vec<(Product, i64)> = Vec::new();
        match to {
            OrderStatus::Cancelled => {
                returned = db::ledger::return_stock_of_orders(
                    conn,
                    dialect,
                    &ids,
                    MovementReason::Release,
                    &actor_label,
                    fields.cancel_reason,
                    now,
                )
                .await?;
                db::payments::close_open_of_orders(
                    conn,
                    dialect,
                    &ids,
                    PaymentStatus::Cancelled,
                    now,
                )
                .await?;
                // Money already taken for a cancelled order has to go back: through its
                // provider by itself, when it has one and the shop wants that.
                db::payments::settle_succeeded_of_order(conn, order.id, false, now).await?;
                if self.policy.auto_refund_late_payments {
                    for payment in db::payments::for_order(conn, order.id).await? {
                        if payment.status == PaymentStatus::Succeeded
                            && payment.provider != PaymentProvider::Manual
                            && payment.refund_state.is_none()
                        {
                            db::payments::request_refund(
                                conn,
                                payment.id,
                                &payment.refund_number(1),
                                1,
                                now,
                            )
                            .await?;
                        }
                    }
                }
            }
            OrderStatus::Paid if from == OrderStatus::Pending => {
                // The payment that paid is already `succeeded`; any other open one is moot.
                db::payments::close_open_of_orders(
                    conn,
                    dialect,
                    &ids,
                    PaymentStatus::Cancelled,
                    now,
                )
                .await?;
            }
            OrderStatus::Shipped => {
                self.record_shipping_upload(conn, order.id, now).await?;
            }
            OrderStatus::Completed if order.completed_at.is_none() => {
                db::ledger::count_sales_of_orders(conn, dialect, &ids, 1, now).await?;
            }
            OrderStatus::Refunded => {
                returned = db::ledger::return_stock_of_orders(
                    conn,
                    dialect,
                    &ids,
                    MovementReason::Restock,
                    &actor_label,
                    note,
                    now,
                )
                .await?;
                if order.completed_at.is_some() {
                    db::ledger::count_sales_of_orders(conn, dialect, &ids, -1, now).await?;
                }
                db::payments::settle_succeeded_of_order(conn, order.id, true, now).await?;
            }
            _ => {}
        }
        db::history::append(conn, order.id, Some(from), to, &actor_label, note, now).await?;
        if self.policy.events {
            let details = OrderDetails {
                items: db::orders::items(conn, order.id).await?,
                payments: db::payments::for_order(conn, order.id).await?,
                order: updated.clone(),
            };
            let kind = EventType::of_transition(from, to, actor == Actor::Expiry);
            let first = match kind {
                EventType::OrderExpired => expired_event(&details, seq),
                _ => {
                    let extra = match kind {
                        EventType::OrderPaid => json!({
                            "payment": details.payments.iter()
                                .find(|p| Some(p.id) == input.payment_id)
                                .or_else(|| details.payments.iter().find(|p| p.status == PaymentStatus::Succeeded)),
                        }),
                        EventType::OrderCancelled => json!({
                            "reason": updated.cancel_reason,
                            "actor": actor_label,
                            "refund_required": details.payments.iter().any(|p| p.refund_required),
                        }),
                        EventType::OrderShipped | EventType::OrderCompleted => json!({
                            "carrier": updated.carrier,
                            "tracking_number": updated.tracking_number,
                        }),
                        _ => json!({"reason": note}),
                    };
                    NewEvent::order(kind, &details, seq, Some(from), extra)
                }
            };
            let mut new_events = vec![first];
            new_events.extend(
                returned
                    .iter()
                    .filter_map(|(product, units)| events::stock_events(product, *units)),
            );
            events::record(conn, dialect, true, &new_events, now).await?;
        }
        audit::record(
            conn,
            actor,
            audit_action(from, to),
            Object::Order(order.id),
            json!({"from": from, "to": to, "reason": note, "carrier": fields.carrier,
                   "tracking_number": fields.tracking_number}),
            now,
        )
        .await?;
        metrics::counter!("ordo_order_transitions_total", "from" => from.as_str(), "to" => to.as_str())
            .increment(1);
        Ok(updated)
    }

    /// The orders of a set-based change (with their event numbers) as `GET /orders/{id}`
    /// shows them, read in the change's transaction: three statements for the whole set.
    pub(crate) async fn details_of(
        &self,
        conn: &mut Conn,
        orders: Vec<(Order, i64)>,
    ) -> Result<Vec<(OrderDetails, i64)>> {
        let ids: Vec<i64> = orders.iter().map(|(o, _)| o.id).collect();
        let (items, payments) =
            db::orders::items_and_payments_of(conn, self.db.dialect(), &ids_json(&ids)).await?;
        let mut items_of: std::collections::HashMap<i64, Vec<OrderItem>> = Default::default();
        for (order_id, item) in items {
            items_of.entry(order_id).or_default().push(item);
        }
        let mut payments_of: std::collections::HashMap<i64, Vec<Payment>> = Default::default();
        for payment in payments {
            payments_of
                .entry(payment.order_id)
                .or_default()
                .push(payment);
        }
        Ok(orders
            .into_iter()
            .map(|(order, seq)| {
                let details = OrderDetails {
                    items: items_of.remove(&order.id).unwrap_or_default(),
                    payments: payments_of.remove(&order.id).unwrap_or_default(),
                    order,
                };
                (details, seq)
            })
            .collect())
    }

    /// Emits `order.payment_reminder` for orders still unpaid `payment_reminder_lead`
    /// before their unpaid deadline, each once, in batches claimed like the sweep's (so
    /// several workers never remind twice). Returns how many were reminded.
    pub async fn send_payment_reminders(
        &self,
        stop: &std::sync::atomic::AtomicBool,
    ) -> Result<u64> {
        let lead = self.policy.payment_reminder_lead_ms;
        if lead <= 0 || !self.policy.events {
            return Ok(0);
        }
        let mut sent = 0;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let now = self.clock.now();
            let timeout = self.policy.unpaid_timeout_ms;
            let mut tx = self.db.write_tx().await?;
            let due = db::reminders::claim_due(
                &mut tx,
                self.db.dialect(),
                now - timeout,
                now - timeout + lead,
                500,
                now,
            )
            .await?;
            if due.is_empty() {
                break;
            }
            let count = due.len();
            let details = self.details_of(&mut tx, due).await?;
            let reminders: Vec<NewEvent> = details
                .iter()
                .map(|(details, seq)| {
                    NewEvent::order(
                        EventType::OrderPaymentReminder,
                        details,
                        *seq,
                        Some(OrderStatus::Pending),
                        json!({"deadline": crate::domain::format_rfc3339(
                            details.order.created_at + timeout)}),
                    )
                })
                .collect();
            events::record(&mut tx, self.db.dialect(), true, &reminders, now).await?;
            self.commit(tx).await?;
            sent += count as u64;
            metrics::counter!("ordo_payment_reminders_total").increment(count as u64);
        }
        Ok(sent)
    }

    /// Places an order: reserves every item's stock (product-id order, conditional
    /// decrement, a ledger row each), creates the order, its items, its history's first row,
    /// its first payment and its event. All or nothing.
    pub async fn place_order(&self, actor: Actor, new: &NewOrder) -> Result<PlacedOrder> {
        self.place_order_once(actor, new, None)
            .await
            .map(|(placed, _)| placed)
    }

    /// Like [`Ordo::place_order`], honouring an idempotency key: the first request with a
    /// key places the order; a retry with the same key and the same order gets that order
    /// back (and `true`), with no second reservation; the same key with a different order is
    /// refused. A placement that fails leaves the key unused. Customers are held to the
    /// limits on unpaid orders and units, and so are staff placing for them.
    pub async fn place_order_once(
        &self,
        actor: Actor,
        new: &NewOrder,
        idempotency_key: Option<&str>,
    ) -> Result<(PlacedOrder, bool)> {
        match actor {
            Actor::Customer(id) if id != new.user_id => {
                return Err(Error::Forbidden {
                    reason: "customers place orders for themselves only".to_owned(),
                });
            }
            Actor::Customer(_) | Actor::Staff(_) | Actor::Operator => {}
            Actor::Expiry | Actor::Payment | Actor::Scheduler => {
                return Err(Error::Forbidden {
                    reason: "only customers and staff place orders".to_owned(),
                });
            }
        }
        let lines = new.validated_lines(self.policy.max_units_per_order)?;
        let shipping_address = match &new.shipping_address {
            Some(address) => Some(address.validated("shipping_address")?),
            None if self.policy.require_shipping_address => {
                return Err(Error::validation(
                    "shipping_address",
                    "required: this shop ships every order (require_shipping_address)",
                ));
            }
            None => None,
        };
        let key = match idempotency_key {
            None => None,
            Some(key) => {
                if key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(Error::validation(
                        "Idempotency-Key",
                        "1 to 200 visible ASCII characters",
                    ));
                }
                Some((
                    key.to_owned(),
                    request_hash(new, &lines, shipping_address.as_ref()),
                ))
            }
        };
        let request = PlacementRequest {
            actor,
            user_id: new.user_id,
            lines,
            note: new.note.clone(),
            shipping_address,
            key,
            policy: self.policy,
            clock: self.clock.clone(),
            request_id: crate::context::request_id(),
        };
        match self.placements.place(request).await? {
            Placed::New(placed) => Ok((*placed, false)),
            Placed::Replay(order_id) => {
                let order = self.order(actor, order_id).await?;
                let payment = order
                    .payments
                    .first()
                    .cloned()
                    .ok_or(Error::NotFound { what: "payment" })?;
                Ok((PlacedOrder { order, payment }, true))
            }
        }
    }

    /// Checks, before anything else is read, that `actor` may ask to move `order_id` to
    /// `to` at all: a move their role can never make is `Forbidden` (even for an order that
    /// does not exist), another customer's order is `NotFound`. Whether the order's current
    /// status allows the move is decided later, under the order's lock.
    pub async fn authorize_move(&self, actor: Actor, order_id: i64, to: OrderStatus) -> Result<()> {
        let role = match actor {
            Actor::Customer(_) => Role::Owner,
            Actor::Staff(_) | Actor::Operator => Role::Staff,
            Actor::Expiry => Role::Expiry,
            Actor::Payment => Role::Payment,
            Actor::Scheduler => {
                return Err(Error::Forbidden {
                    reason: "the scheduler moves no orders".to_owned(),
                });
            }
        };
        if !lifecycle::may_ever(role, to) {
            return Err(Error::Forbidden {
                reason: match role {
                    Role::Owner => format!("customers may not move orders to {to}; only staff may"),
                    _ => format!("you may not move orders to {to}"),
                },
            });
        }
        let mut conn = self.db.pool().acquire().await?;
        visible_order(&mut conn, actor, order_id).await?;
        Ok(())
    }

    /// The transition itself (see `Ordo::transition`, which takes the provider steps some
    /// moves need first): locked, checked against the lifecycle and the actor's role,
    /// applied with its effects, history row and event, in one transaction. A cancel is
    /// refused while a payment is open at a provider (it must be closed there first), and
    /// a refund's rejection while the refund is under way at the provider.
    pub(crate) async fn move_now(
        &self,
        actor: Actor,
        order_id: i64,
        to: OrderStatus,
        input: &TransitionInput,
    ) -> Result<Order> {
        let now = self.clock.now();
        let dialect = self.db.dialect();
        let mut tx = self.db.write_tx().await?;
        let order = db::orders::lock_existing(&mut tx, dialect, order_id).await?;
        let role = role_for(actor, &order)?;
        lifecycle::check_move(order.status, to, role)
            .map_err(|refusal| refusal_error(order.status, to, refusal))?;
        if matches!(to, OrderStatus::Cancelled | OrderStatus::Paid) {
            let payments = db::payments::for_order(&mut tx, order_id).await?;
            if to == OrderStatus::Cancelled
                && let Some(open) = payments.iter().find(|p| p.provider_open)
            {
                return Err(Error::Conflict(format!(
                    "payment {} is open at {}; it must be closed there first",
                    open.id, open.provider
                )));
            }
            if to == OrderStatus::Paid
                && let Some(refunding) = payments
                    .iter()
                    .find(|p| p.refund().is_some_and(|r| r.under_way()))
            {
                return Err(Error::Conflict(format!(
                    "the refund of payment {} is under way at {}; it cannot be rejected now",
                    refunding.id, refunding.provider
                )));
            }
        }
        let order = self
            .apply_transition(&mut tx, &order, to, actor, input, now)
            .await?;
        self.commit(tx).await?;
        if to == OrderStatus::Shipped
            && let Some(shipping) = self.providers().shipping()
        {
            shipping.wake();
        }
        Ok(order)
    }

    /// Staff correct where an order ships to, until it ships (pending or paid; after that
    /// 409): the address is replaced, the change audited (which fields changed, not their
    /// values) and told in `order.address_changed`.
    pub async fn correct_shipping_address(
        &self,
        actor: Actor,
        order_id: i64,
        address: &crate::domain::NewShippingAddress,
    ) -> Result<OrderDetails> {
        crate::auth::require_staff(actor)?;
        let address = address.validated("")?;
        let now = self.clock.now();
        let dialect = self.db.dialect();
        let mut tx = self.db.write_tx().await?;
        let order = db::orders::lock_existing(&mut tx, dialect, order_id).await?;
        if !matches!(order.status, OrderStatus::Pending | OrderStatus::Paid) {
            return Err(Error::Conflict(format!(
                "order {} is {}; its address can change only until it ships (pending or paid)",
                order.number, order.status
            )));
        }
        let changed = address.changed_fields(order.shipping_address.as_ref());
        let (updated, seq) =
            db::orders::set_shipping_address(&mut tx, order_id, &address.to_json(), now).await?;
        let details = OrderDetails {
            items: db::orders::items(&mut tx, order_id).await?,
            payments: db::payments::for_order(&mut tx, order_id).await?,
            order: updated,
        };
        let event = NewEvent::order(
            EventType::OrderAddressChanged,
            &details,
            seq,
            Some(order.status),
            json!({"changed": changed}),
        );
        events::record(&mut tx, dialect, self.policy.events, &[event], now).await?;
        audit::record(
            &mut tx,
            actor,
            "order.address_change",
            Object::Order(order_id),
            json!({"changed": changed}),
            now,
        )
        .await?;
        self.commit(tx).await?;
        Ok(details)
    }

    /// An order with items and payments, if `actor` may see it.
    pub async fn order(&self, actor: Actor, order_id: i64) -> Result<OrderDetails> {
        let mut conn = self.db.pool().acquire().await?;
        let order = visible_order(&mut conn, actor, order_id).await?;
        let items = db::orders::items(&mut conn, order_id).await?;
        let payments = db::payments::for_order(&mut conn, order_id).await?;
        Ok(OrderDetails {
            order,
            items,
            payments,
        })
    }

    /// The order with this public number (staff), for search.
    pub async fn order_by_number(&self, actor: Actor, number: &str) -> Result<Order> {
        crate::auth::require_staff(actor)?;
        let mut conn = self.db.pool().acquire().await?;
        db::orders::by_number(&mut conn, number.trim())
            .await?
            .ok_or(Error::NotFound { what: "order" })
    }

    pub async fn order_history(&self, actor: Actor, order_id: i64) -> Result<Vec<HistoryEntry>> {
        let mut conn = self.db.pool().acquire().await?;
        visible_order(&mut conn, actor, order_id).await?;
        db::history::list(&mut conn, order_id).await
    }

    /// Orders newest first; a customer sees only their own.
    pub async fn orders(&self, actor: Actor, mut filter: OrderFilter) -> Result<Vec<Order>> {
        match actor {
            Actor::Customer(id) => filter.user_id = Some(id),
            Actor::Staff(_) | Actor::Operator => {}
            Actor::Expiry | Actor::Payment | Actor::Scheduler => {
                return Err(Error::Forbidden {
                    reason: "not a user".to_owned(),
                });
            }
        }
        let mut conn = self.db.pool().acquire().await?;
        db::orders::list(&mut conn, &filter).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(items: &[(i64, i64)]) -> NewOrder {
        NewOrder::from_lines(1, items, None)
    }

    #[test]
    fn lines_are_merged_and_sorted() {
        assert_eq!(
            order(&[(5, 1), (2, 3), (5, 2)]).validated_lines(0).unwrap(),
            vec![(2, 3), (5, 3)]
        );
    }

    #[test]
    fn bad_lines_name_the_field() {
        let cases = [
            (order(&[]), "items"),
            (order(&[(1, 0)]), "items[0].quantity"),
            (order(&[(1, 1), (2, -3)]), "items[1].quantity"),
            (order(&[(0, 1)]), "items[0].product_id"),
            (order(&[(1, MAX_QUANTITY + 1)]), "items[0].quantity"),
            (order(&[(1, MAX_QUANTITY), (1, 1)]), "items[1].quantity"),
        ];
        for (new, expected) in cases {
            match new.validated_lines(0) {
                Err(Error::Validation { field, .. }) => assert_eq!(field, expected),
                other => panic!("{new:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn order_numbers_look_random() {
        let a = crate::placement::new_order_number();
        let b = crate::placement::new_order_number();
        assert_ne!(a, b);
        assert_eq!(a.len(), "ORD-XXXX-XXXX-XXXX".len());
        assert!(a.starts_with("ORD-"));
    }

    #[test]
    fn the_units_limit_names_the_item_that_crosses_it() {
        match order(&[(1, 60), (2, 30), (3, 20)]).validated_lines(100) {
            Err(Error::Validation { field, .. }) => assert_eq!(field, "items[2].quantity"),
            other => panic!("{other:?}"),
        }
        assert!(order(&[(1, 60), (2, 40)]).validated_lines(100).is_ok());
    }
}
