//! Payments: opening one for a pending order, and applying what the provider reports
//! (at most once per provider event; a success that arrives after cancellation is kept
//! and flagged for refund).

use crate::Ordo;
use crate::db;
use crate::domain::{Actor, OrderStatus, Payment, PaymentStatus, ProviderEvent, ProviderStatus};
use crate::error::{Error, Result};
use crate::inventory::require_staff;
use crate::orders::{TransitionInput, apply_transition, role_for};
use serde::Serialize;

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
        let now = self.clock.now();
        let dialect = self.db.dialect();
        let mut tx = self.db.write_tx().await?;
        let order = db::orders::lock_existing(&mut tx, dialect, order_id).await?;
        if role_for(actor, &order)? != crate::domain::Role::Owner {
            return Err(Error::Forbidden {
                reason: "only the customer who placed the order opens payments".to_owned(),
            });
        }
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
        Error::check_free_text("event_id", &event.event_id, 200)?;
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
                            ..TransitionInput::default()
                        };
                        apply_transition(
                            &mut tx,
                            dialect,
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
                        EventOutcome::RefundRequired
                    }
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
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
