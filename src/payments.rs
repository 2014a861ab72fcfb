//! Payments: opening one for a pending order, and applying what the provider reports
//! (at most once per provider event; a success that arrives after cancellation is kept
//! and flagged for refund).

use crate::Ordo;
use crate::audit::{self, Object};
use crate::db::{self, Conn};
use crate::domain::{
    Actor, Millis, Order, OrderDetails, OrderStatus, Payment, PaymentStatus, ProviderEvent,
    ProviderStatus,
};
use crate::error::{Error, Result};
use crate::events::{self, EventType, NewEvent};
use crate::inventory::require_staff;
use crate::orders::{TransitionInput, role_for};
use serde::Serialize;
use serde_json::json;

/// What a provider event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventOutcome {
    /// The payment succeeded and its order is now paid.
    Paid,
    /// The payment succeeded but its order was no longer pending (cancelled, or already
    /// paid by another payment): recorded, flagged refund_required.
    RefundRequired,
    /// The payment failed.
    Failed,
    /// The event changed nothing (a failure after success, a success repeated under a new
    /// event id).
    NoChange,
    /// The event id was seen before; nothing was done.
    Replayed,
}

impl Ordo {
    /// Returns the order's open, unexpired payment, or opens a new one. Only the owner,
    /// only for a pending order, and only within the unpaid timeout, so nobody holds stock
    /// forever by reopening payments.
    pub async fn open_payment(&self, actor: Actor, order_id: i64) -> Result<Payment> {
        if !matches!(actor, Actor::Customer(_)) {
            return Err(Error::Forbidden {
                reason: "only the customer who placed the order opens payments".to_owned(),
            });
        }
        let now = self.clock.now();
        let dialect = self.db.dialect();
        let mut tx = self.db.write_tx().await?;
        let order = db::orders::lock_existing(&mut tx, dialect, order_id).await?;
        role_for(actor, &order)?;
        if order.status != OrderStatus::Pending {
            return Err(Error::Conflict(format!(
                "order is {}; only pending orders take payments",
                order.status
            )));
        }
        if now >= order.created_at + self.policy.unpaid_timeout_ms {
            return Err(Error::Conflict(
                "order is past its unpaid timeout and will be cancelled".to_owned(),
            ));
        }
        let payments = db::payments::for_order(&mut tx, order_id).await?;
        if let Some(open) = payments
            .iter()
            .find(|p| p.status == PaymentStatus::Pending && p.expires_at > now)
        {
            return Ok(open.clone());
        }
        let ids = format!("[{order_id}]");
        db::payments::close_open_of_orders(&mut tx, dialect, &ids, PaymentStatus::Expired, now)
            .await?;
        let payment = db::payments::insert(
            &mut tx,
            order_id,
            order.total_cents,
            "card",
            now + self.policy.payment_ttl_ms,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(payment)
    }

    /// Applies one provider event. Replays (a known event id) change nothing; a success
    /// whose amount differs from the payment's is refused and changes nothing.
    pub async fn apply_provider_event(&self, event: &ProviderEvent) -> Result<EventOutcome> {
        if event.event_id.trim().is_empty() {
            return Err(Error::validation("event_id", "must not be empty"));
        }
        crate::domain::text::check_free("event_id", &event.event_id, 200)?;
        let now = self.clock.now();
        let dialect = self.db.dialect();
        let mut tx = self.db.write_tx().await?;
        let order_id = db::payments::get(&mut tx, event.payment_id)
            .await?
            .ok_or(Error::NotFound { what: "payment" })?
            .order_id;
        // Lock order first, then payment: the order every writer follows.
        let order = db::orders::lock_existing(&mut tx, dialect, order_id).await?;
        let payment = db::payments::lock(&mut tx, dialect, event.payment_id)
            .await?
            .ok_or(Error::NotFound { what: "payment" })?;
        let status = match event.status {
            ProviderStatus::Succeeded => "succeeded",
            ProviderStatus::Failed => "failed",
        };
        if !db::payments::record_event(&mut tx, &event.event_id, payment.id, status, now).await? {
            return Ok(EventOutcome::Replayed);
        }
        let outcome = match event.status {
            ProviderStatus::Failed => {
                if payment.status == PaymentStatus::Pending {
                    db::payments::set_status(&mut tx, payment.id, PaymentStatus::Failed, None, now)
                        .await?;
                    self.payment_event(&mut tx, EventType::PaymentFailed, &order, payment.id, now)
                        .await?;
                    EventOutcome::Failed
                } else {
                    EventOutcome::NoChange
                }
            }
            ProviderStatus::Succeeded => {
                if event.amount_cents != payment.amount_cents {
                    return Err(Error::validation(
                        "amount_cents",
                        format!(
                            "{} does not match the payment's amount {}",
                            event.amount_cents, payment.amount_cents
                        ),
                    ));
                }
                if matches!(
                    payment.status,
                    PaymentStatus::Succeeded | PaymentStatus::Refunded
                ) {
                    EventOutcome::NoChange
                } else {
                    db::payments::set_status(
                        &mut tx,
                        payment.id,
                        PaymentStatus::Succeeded,
                        Some(&event.event_id),
                        now,
                    )
                    .await?;
                    if order.status == OrderStatus::Pending {
                        let input = TransitionInput {
                            note: Some(format!("payment {} succeeded", payment.id)),
                            payment_id: Some(payment.id),
                            ..TransitionInput::default()
                        };
                        self.apply_transition(
                            &mut tx,
                            &order,
                            OrderStatus::Paid,
                            Actor::Payment,
                            &input,
                            now,
                        )
                        .await?;
                        EventOutcome::Paid
                    } else {
                        // Late or duplicate money: never dropped, flagged for staff.
                        db::payments::flag_refund_required(&mut tx, payment.id, now).await?;
                        self.payment_event(
                            &mut tx,
                            EventType::PaymentLateSucceeded,
                            &order,
                            payment.id,
                            now,
                        )
                        .await?;
                        EventOutcome::RefundRequired
                    }
                }
            }
        };
        self.commit(tx).await?;
        Ok(outcome)
    }

    /// A payment's event on its (locked) order, which keeps its status.
    async fn payment_event(
        &self,
        conn: &mut Conn,
        kind: EventType,
        order: &Order,
        payment_id: i64,
        now: Millis,
    ) -> Result<()> {
        if !self.policy.events {
            return Ok(());
        }
        let seq = db::events::next_seq(conn, order.id).await?;
        let details = OrderDetails {
            items: db::orders::items(conn, order.id).await?,
            payments: db::payments::for_order(conn, order.id).await?,
            order: order.clone(),
        };
        let payment = details.payments.iter().find(|p| p.id == payment_id);
        let extra = match kind {
            EventType::PaymentLateSucceeded => json!({"payment": payment, "refund_required": true}),
            _ => json!({"payment": payment}),
        };
        let event = NewEvent::order(kind, &details, seq, Some(order.status), extra);
        events::record(conn, self.db.dialect(), true, &[event], now).await
    }

    /// Marks a late payment's refund as done (staff): the payment becomes `refunded` and
    /// leaves the refund queue; its order keeps its status and history. A payment that
    /// needs no refund, or was settled already, is a conflict.
    pub async fn settle_refund(
        &self,
        actor: Actor,
        payment_id: i64,
        provider_ref: &str,
    ) -> Result<Payment> {
        require_staff(actor)?;
        if provider_ref.trim().is_empty() {
            return Err(Error::validation(
                "provider_ref",
                "required; must not be empty",
            ));
        }
        crate::domain::text::check_line("provider_ref", provider_ref, 200)?;
        let now = self.clock.now();
        let dialect = self.db.dialect();
        let mut tx = self.db.write_tx().await?;
        let order_id = db::payments::get(&mut tx, payment_id)
            .await?
            .ok_or(Error::NotFound { what: "payment" })?
            .order_id;
        db::orders::lock_existing(&mut tx, dialect, order_id).await?;
        let payment = db::payments::lock(&mut tx, dialect, payment_id)
            .await?
            .ok_or(Error::NotFound { what: "payment" })?;
        if payment.status == PaymentStatus::Refunded {
            return Err(Error::Conflict(format!(
                "payment {payment_id} was already refunded"
            )));
        }
        if !(payment.status == PaymentStatus::Succeeded && payment.refund_required) {
            return Err(Error::Conflict(format!(
                "payment {payment_id} needs no refund (status {}, refund_required false)",
                payment.status.as_str()
            )));
        }
        let settled = db::payments::settle_refund(&mut tx, payment_id, provider_ref, now)
            .await?
            .ok_or_else(|| Error::Conflict("the payment changed meanwhile; retry".to_owned()))?;
        audit::record(
            &mut tx,
            actor,
            "payment.refund_settled",
            Object::Payment(payment_id),
            json!({"order_id": order_id, "provider_ref": provider_ref,
                   "amount_cents": settled.amount_cents}),
            now,
        )
        .await?;
        self.commit(tx).await?;
        metrics::counter!("ordo_late_payments_settled_total").increment(1);
        Ok(settled)
    }

    /// How many succeeded payments await a refund.
    pub async fn count_payments_to_refund(&self) -> Result<i64> {
        let mut conn = self.db.pool().acquire().await?;
        db::payments::count_refund_required(&mut conn).await
    }

    /// Succeeded payments whose order did not take them (late payments), to refund.
    pub async fn payments_to_refund(
        &self,
        actor: Actor,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<Payment>> {
        require_staff(actor)?;
        let mut conn = self.db.pool().acquire().await?;
        db::payments::refund_required(&mut conn, after_id, limit).await
    }
}
