//! Orders: placing one (stock reserved item by item in product-id order, ledger rows, the
//! first payment, all in one transaction) and running a lifecycle transition with its
//! effects and its history row.

use crate::Ordo;
use crate::db::orders::{NewOrderRow, StatusFields};
use crate::db::{self, Conn, Dialect};
use crate::domain::lifecycle::{self, Refusal};
use crate::domain::{
    Actor, HistoryEntry, Millis, MovementReason, NewOrder, Order, OrderDetails, OrderItem,
    OrderLine, OrderStatus, Payment, PaymentStatus, Role,
};
use crate::error::{Error, Result};
use crate::inventory::MAX_AMOUNT;
use rand::Rng;
use std::collections::BTreeMap;

pub use crate::db::orders::OrderFilter;

/// Most lines one order may hold.
pub const MAX_ITEMS: usize = 100;
/// Most units of one product in one order.
pub const MAX_QUANTITY: i64 = 1_000_000;

/// A placed order and its first payment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct PlacedOrder {
    pub order: OrderDetails,
    pub payment: Payment,
}

/// What a transition carries besides its target.
#[derive(Debug, Clone, Default)]
pub struct TransitionInput {
    pub note: Option<String>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
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
        }
    }

    /// Checks the order and folds repeated products into one line each, in product-id
    /// order (the order stock is reserved in).
    pub fn validated_lines(&self) -> Result<Vec<(i64, i64)>> {
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
            Error::check_free_text("note", note, 1000)?;
        }
        let mut lines: BTreeMap<i64, i64> = BTreeMap::new();
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

/// A public order number: random, so it says nothing about ids or volumes.
fn new_order_number() -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut rng = rand::rng();
    let code: String = (0..12)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("ORD-{}-{}-{}", &code[0..4], &code[4..8], &code[8..12])
}

/// What makes two order requests the same: the customer, the merged lines and the note.
fn request_hash(new: &NewOrder, lines: &[(i64, i64)]) -> String {
    use sha2::{Digest, Sha256};
    let canonical = serde_json::json!({
        "user_id": new.user_id,
        "items": lines,
        "note": new.note,
    });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// The lifecycle role `actor` plays for `order`. Another customer's order does not exist
/// for them: `NotFound`, so ids leak nothing.
pub(crate) fn role_for(actor: Actor, order: &Order) -> Result<Role> {
    match actor {
        Actor::Customer(id) if id == order.user_id => Ok(Role::Owner),
        Actor::Customer(_) => Err(Error::NotFound { what: "order" }),
        Actor::Staff(_) => Ok(Role::Staff),
        Actor::Expiry => Ok(Role::Expiry),
        Actor::Payment => Ok(Role::Payment),
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

fn refusal_error(from: OrderStatus, to: OrderStatus, refusal: Refusal) -> Error {
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

/// Runs an already-authorized move inside the caller's transaction, with the order row
/// locked: the compare-and-set, the effects of SPEC section 3, and one history row.
pub(crate) async fn apply_transition(
    conn: &mut Conn,
    dialect: Dialect,
    order: &Order,
    to: OrderStatus,
    actor: Actor,
    input: &TransitionInput,
    now: Millis,
) -> Result<Order> {
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
    let updated = db::orders::compare_and_set_status(conn, order.id, from, to, &fields, now)
        .await?
        .ok_or_else(|| {
            Error::Conflict(format!(
                "order {} changed while moving it to {to}; retry",
                order.id
            ))
        })?;
    let ids = format!("[{}]", order.id);
    let actor_label = actor.label();
    match to {
        OrderStatus::Cancelled => {
            db::ledger::return_stock_of_orders(
                conn,
                dialect,
                &ids,
                MovementReason::Release,
                &actor_label,
                fields.cancel_reason,
                now,
            )
            .await?;
            db::payments::close_open_of_orders(conn, dialect, &ids, PaymentStatus::Cancelled, now)
                .await?;
            // Money already taken for a cancelled order has to go back.
            db::payments::settle_succeeded_of_order(conn, order.id, false, now).await?;
        }
        OrderStatus::Paid if from == OrderStatus::Pending => {
            // The payment that paid is already `succeeded`; any other open one is moot.
            db::payments::close_open_of_orders(conn, dialect, &ids, PaymentStatus::Cancelled, now)
                .await?;
        }
        OrderStatus::Completed if order.completed_at.is_none() => {
            db::ledger::count_sales_of_orders(conn, dialect, &ids, 1, now).await?;
        }
        OrderStatus::Refunded => {
            db::ledger::return_stock_of_orders(
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
    metrics::counter!("ordo_order_transitions_total", "from" => from.as_str(), "to" => to.as_str())
        .increment(1);
    Ok(updated)
}

impl Ordo {
    /// Places an order: reserves every item's stock (product-id order, conditional
    /// decrement, a ledger row each), creates the order, its items, its history's first row
    /// and its first payment. All or nothing.
    pub async fn place_order(&self, actor: Actor, new: &NewOrder) -> Result<PlacedOrder> {
        self.place_order_once(actor, new, None)
            .await
            .map(|(placed, _)| placed)
    }

    /// Like [`Ordo::place_order`], honouring an idempotency key: the first request with a
    /// key places the order; a retry with the same key and the same order gets that order
    /// back (and `true`), with no second reservation; the same key with a different order is
    /// refused. A placement that fails leaves the key unused.
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
            Actor::Customer(_) | Actor::Staff(_) => {}
            Actor::Expiry | Actor::Payment => {
                return Err(Error::Forbidden {
                    reason: "only customers and staff place orders".to_owned(),
                });
            }
        }
        let lines = new.validated_lines()?;
        let now = self.clock.now();
        let actor_label = actor.label();
        let mut tx = self.db.write_tx().await?;
        let caller = match actor {
            Actor::Customer(id) | Actor::Staff(id) => id,
            Actor::Expiry | Actor::Payment => 0,
        };
        if let Some(key) = idempotency_key {
            if key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Error::validation(
                    "Idempotency-Key",
                    "1 to 200 visible ASCII characters",
                ));
            }
            let hash = request_hash(new, &lines);
            if !db::orders::claim_idempotency_key(&mut tx, caller, key, &hash, now).await? {
                let (seen_hash, order_id) = db::orders::idempotency_key(&mut tx, caller, key)
                    .await?
                    .ok_or_else(|| Error::Conflict("idempotency key vanished; retry".into()))?;
                if seen_hash != hash {
                    return Err(Error::IdempotencyKeyReused);
                }
                let order_id = order_id.ok_or_else(|| {
                    Error::Conflict("the first request with this key is still running".into())
                })?;
                drop(tx);
                let order = self.order(actor, order_id).await?;
                let payment = order
                    .payments
                    .first()
                    .cloned()
                    .ok_or(Error::NotFound { what: "payment" })?;
                return Ok((PlacedOrder { order, payment }, true));
            }
        }

        let mut items = Vec::with_capacity(lines.len());
        let mut currency: Option<String> = None;
        let mut total: i64 = 0;
        for (product_id, quantity) in lines {
            let Some(taken) = db::products::take_stock(&mut tx, product_id, quantity, now).await?
            else {
                let product = db::products::get(&mut tx, product_id)
                    .await?
                    .ok_or_else(|| {
                        Error::validation("items", format!("product {product_id} does not exist"))
                    })?;
                if !product.active {
                    return Err(Error::validation(
                        "items",
                        format!("product {product_id} ({}) is not on sale", product.sku),
                    ));
                }
                return Err(Error::InsufficientStock {
                    product_id,
                    sku: product.sku,
                    requested: quantity,
                    available: product.stock,
                });
            };
            match &currency {
                None => currency = Some(taken.currency.clone()),
                Some(c) if *c != taken.currency => {
                    return Err(Error::validation(
                        "items",
                        format!(
                            "all items must share one currency ({c} and {})",
                            taken.currency
                        ),
                    ));
                }
                Some(_) => {}
            }
            total = taken
                .price_cents
                .checked_mul(quantity)
                .and_then(|line| total.checked_add(line))
                .filter(|t| *t <= MAX_AMOUNT * 1000)
                .ok_or_else(|| Error::validation("items", "order total is too large"))?;
            items.push(OrderItem {
                product_id,
                quantity,
                unit_price_cents: taken.price_cents,
            });
        }
        let currency = currency.unwrap_or_default();
        let number = new_order_number();
        let order = db::orders::insert(
            &mut tx,
            &NewOrderRow {
                number: &number,
                user_id: new.user_id,
                total_cents: total,
                currency: &currency,
                note: new.note.as_deref(),
                now,
            },
        )
        .await
        .map_err(|e| match e {
            Error::Database(sqlx::Error::Database(db))
                if db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation =>
            {
                Error::validation("user_id", format!("user {} does not exist", new.user_id))
            }
            other => other,
        })?;
        for item in &items {
            db::orders::insert_item(&mut tx, order.id, item).await?;
            db::ledger::record_reservation(
                &mut tx,
                item.product_id,
                order.id,
                item.quantity,
                &actor_label,
                now,
            )
            .await?;
        }
        db::history::append(
            &mut tx,
            order.id,
            None,
            OrderStatus::Pending,
            &actor_label,
            None,
            now,
        )
        .await?;
        let payment = db::payments::insert(
            &mut tx,
            order.id,
            total,
            "card",
            now + self.policy.payment_ttl_ms,
            now,
        )
        .await?;
        if let Some(key) = idempotency_key {
            db::orders::bind_idempotency_key(&mut tx, caller, key, order.id).await?;
        }
        tx.commit().await?;
        metrics::counter!("ordo_orders_placed_total").increment(1);
        Ok((
            PlacedOrder {
                order: OrderDetails {
                    order,
                    items,
                    payments: vec![payment.clone()],
                },
                payment,
            },
            false,
        ))
    }

    /// Moves an order to `to` on behalf of `actor`: locked, checked against the lifecycle
    /// and the actor's role, applied with its effects and history row, in one transaction.
    pub async fn transition(
        &self,
        actor: Actor,
        order_id: i64,
        to: OrderStatus,
        input: &TransitionInput,
    ) -> Result<Order> {
        if let Some(note) = &input.note {
            Error::check_free_text("reason", note, 1000)?;
        }
        for (field, value) in [
            ("carrier", &input.carrier),
            ("tracking_number", &input.tracking_number),
        ] {
            if let Some(value) = value {
                if value.trim().is_empty() {
                    return Err(Error::validation(field, "must not be empty"));
                }
                Error::check_free_text(field, value, 200)?;
            }
        }
        let now = self.clock.now();
        let dialect = self.db.dialect();
        let mut tx = self.db.write_tx().await?;
        let order = db::orders::lock_existing(&mut tx, dialect, order_id).await?;
        let role = role_for(actor, &order)?;
        lifecycle::check_move(order.status, to, role)
            .map_err(|refusal| refusal_error(order.status, to, refusal))?;
        let order = apply_transition(&mut tx, dialect, &order, to, actor, input, now).await?;
        tx.commit().await?;
        Ok(order)
    }

    pub async fn cancel_order(
        &self,
        actor: Actor,
        order_id: i64,
        reason: Option<String>,
    ) -> Result<Order> {
        let input = TransitionInput {
            note: reason,
            ..TransitionInput::default()
        };
        self.transition(actor, order_id, OrderStatus::Cancelled, &input)
            .await
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

    pub async fn order_history(&self, actor: Actor, order_id: i64) -> Result<Vec<HistoryEntry>> {
        let mut conn = self.db.pool().acquire().await?;
        visible_order(&mut conn, actor, order_id).await?;
        db::history::list(&mut conn, order_id).await
    }

    /// Orders newest first; a customer sees only their own.
    pub async fn orders(&self, actor: Actor, mut filter: OrderFilter) -> Result<Vec<Order>> {
        match actor {
            Actor::Customer(id) => filter.user_id = Some(id),
            Actor::Staff(_) => {}
            Actor::Expiry | Actor::Payment => {
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
            order(&[(5, 1), (2, 3), (5, 2)]).validated_lines().unwrap(),
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
            match new.validated_lines() {
                Err(Error::Validation { field, .. }) => assert_eq!(field, expected),
                other => panic!("{new:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn order_numbers_look_random() {
        let a = new_order_number();
        let b = new_order_number();
        assert_ne!(a, b);
        assert_eq!(a.len(), "ORD-XXXX-XXXX-XXXX".len());
        assert!(a.starts_with("ORD-"));
    }
}
