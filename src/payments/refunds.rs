//! Refunds through the provider. Approving a refund of a provider payment asks the provider
//! to refund it under a number of ordo's (the same number never refunds twice there); the
//! order stays `refunding` until the provider confirms (its answer, a notification, or the
//! refund job's query) and only then becomes `refunded`. A refusal is kept with its reason
//! and shown; approving again tries again. A late payment (money for an order that no
//! longer waits for it) is refunded the same way, by itself when
//! `auto_refund_late_payments` is on. The refund job sends what is requested and asks about
//! what is processing.

use super::provider::{Operation, RefundOutcome, RefundRequest};
use crate::Ordo;
use crate::audit::{self, Object};
use crate::db;
use crate::domain::lifecycle;
use crate::domain::{
    Actor, Order, OrderStatus, Payment, PaymentProvider, PaymentStatus, RefundState,
};
use crate::error::{Error, Result};
use crate::orders::{TransitionInput, role_for};
use serde::Serialize;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};

/// How long a processing refund waits before the refund job asks about it, and a refund
/// that could not be sent before it is sent again.
const REFUND_RETRY_MS: i64 = 60_000;

/// What a run of the refund job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RefundSummary {
    pub sent: u64,
    pub succeeded: u64,
    pub refused: u64,
    pub deferred: u64,
}

/// The payment an order's refund goes back through: the one that paid it.
fn paying_payment(payments: &[Payment]) -> Option<&Payment> {
    payments
        .iter()
        .find(|p| p.status == PaymentStatus::Succeeded && !p.refund_required)
}

impl Ordo {
    /// Staff approve a refund (`refunding` → `refunded`). A `manual` payment is refunded at
    /// once, as before; a provider payment is refunded through its provider, and the order
    /// stays `refunding` until the provider confirms. A refusal or an unreachable provider
    /// is an error that says why; approving again tries again.
    pub(crate) async fn approve_refund(
        &self,
        actor: Actor,
        order_id: i64,
        input: &TransitionInput,
    ) -> Result<Order> {
        let now = self.clock.now();
        let dialect = self.db.dialect();
        let mut tx = self.db.write_tx().await?;
        let order = db::orders::lock_existing(&mut tx, dialect, order_id).await?;
        let role = role_for(actor, &order)?;
        lifecycle::check_move(order.status, OrderStatus::Refunded, role).map_err(|refusal| {
            crate::orders::refusal_error(order.status, OrderStatus::Refunded, refusal)
        })?;
        let payments = db::payments::for_order(&mut tx, order_id).await?;
        let payment = match paying_payment(&payments) {
            Some(p)
                if p.provider != PaymentProvider::Manual
                    && p.refund() != Some(RefundState::Succeeded) =>
            {
                p.clone()
            }
            _ => {
                let order = self
                    .apply_transition(&mut tx, &order, OrderStatus::Refunded, actor, input, now)
                    .await?;
                self.commit(tx).await?;
                return Ok(order);
            }
        };
        if !payment.refund().is_some_and(|r| r.under_way()) {
            let (number, attempt) = payment.next_refund_number();
            db::payments::request_refund(&mut tx, payment.id, &number, attempt, now).await?;
            audit::record(
                &mut tx,
                actor,
                "order.refund_approve",
                Object::Order(order_id),
                json!({"payment_id": payment.id, "provider": payment.provider,
                       "out_refund_no": number, "reason": input.note}),
                now,
            )
            .await?;
            if let Some(note) = &input.note {
                crate::domain::text::check_free("reason", note, 1000)?;
            }
        }
        tx.commit().await?;
        self.work_on_refund(payment.id).await;
        let (order, payment) = {
            let mut conn = self.db.pool().acquire().await?;
            let order = db::orders::get(&mut conn, order_id)
                .await?
                .ok_or(Error::NotFound { what: "order" })?;
            let payment = db::payments::get(&mut conn, payment.id)
                .await?
                .ok_or(Error::NotFound { what: "payment" })?;
            (order, payment)
        };
        match (payment.refund(), payment.refund_error) {
            (Some(RefundState::Refused), error) => Err(Error::Provider(format!(
                "{} refused the refund: {}; the order stays refunding: approve again to retry",
                payment.provider,
                error.unwrap_or_default()
            ))),
            (Some(RefundState::Requested), Some(error)) => Err(Error::Provider(format!(
                "the refund could not be sent to {}: {error}; it is sent again by itself, and the order stays refunding until {} confirms it",
                payment.provider, payment.provider
            ))),
            _ => Ok(order),
        }
    }

    /// Staff ask for a late payment's refund through its provider (again, after a refusal).
    pub async fn refund_late_payment(&self, actor: Actor, payment_id: i64) -> Result<Payment> {
        crate::auth::require_staff(actor)?;
        let now = self.clock.now();
        let dialect = self.db.dialect();
        let mut tx = self.db.write_tx().await?;
        // The order first, then the payment: the order every writer follows.
        let (_, payment) = db::payments::lock_with_order(&mut tx, dialect, payment_id).await?;
        if !(payment.status == PaymentStatus::Succeeded && payment.refund_required) {
            return Err(Error::Conflict(format!(
                "payment {payment_id} is not a late payment awaiting a refund"
            )));
        }
        if payment.provider == PaymentProvider::Manual {
            return Err(Error::Conflict(
                "manual payments are refunded outside ordo: settle it with refund-settled"
                    .to_owned(),
            ));
        }
        if !payment.refund().is_some_and(|r| r.under_way()) {
            let (number, attempt) = payment.next_refund_number();
            db::payments::request_refund(&mut tx, payment.id, &number, attempt, now).await?;
        }
        audit::record(
            &mut tx,
            actor,
            "payment.refund",
            Object::Payment(payment_id),
            json!({"order_id": payment.order_id, "provider": payment.provider}),
            now,
        )
        .await?;
        tx.commit().await?;
        self.work_on_refund(payment_id).await;
        let mut conn = self.db.pool().acquire().await?;
        db::payments::get(&mut conn, payment_id)
            .await?
            .ok_or(Error::NotFound { what: "payment" })
    }

    /// Sends (or asks about) one payment's refund soon, in the background: after a late
    /// payment is recorded, its notification is answered without waiting for the refund.
    pub(crate) fn refund_soon(&self, payment_id: i64) {
        let ordo = self.clone();
        tokio::spawn(async move { ordo.work_on_refund(payment_id).await });
    }

    /// Every refund of an order's payments waiting to be sent, sent soon (after a paid
    /// order was cancelled).
    pub(crate) async fn refund_soon_of_order(&self, order_id: i64) {
        let payments = async {
            let mut conn = self.db.pool().acquire().await?;
            db::payments::for_order(&mut conn, order_id).await
        };
        match payments.await {
            Ok(payments) => {
                for payment in payments {
                    if payment.refund() == Some(RefundState::Requested) {
                        self.refund_soon(payment.id);
                    }
                }
            }
            Err(err) => {
                tracing::warn!(order_id, error = %err, "could not look for refunds to send")
            }
        }
    }

    /// One step of one refund: sends a requested one, asks about a processing one.
    async fn work_on_refund(&self, payment_id: i64) -> Option<RefundOutcome> {
        let loaded = async {
            let mut conn = self.db.pool().acquire().await?;
            let payment = db::payments::get(&mut conn, payment_id).await?;
            let order = match &payment {
                Some(p) => db::orders::get(&mut conn, p.order_id).await?,
                None => None,
            };
            Ok::<_, Error>(payment.zip(order))
        };
        let (payment, order) = match loaded.await {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err(err) => {
                tracing::warn!(payment_id, error = %err, "could not read a refund");
                return None;
            }
        };
        let (Some(state), Some(number)) = (payment.refund(), payment.out_refund_no.clone()) else {
            return None;
        };
        let kind = payment.provider;
        let request = RefundRequest {
            payment: &payment,
            currency: &order.currency,
            out_refund_no: &number,
            reason: if payment.refund_required {
                "late payment"
            } else {
                "refund approved"
            },
            notify_url: self.providers.notify_url(kind),
        };
        let answer = match state {
            RefundState::Requested => {
                self.providers
                    .call(kind, Operation::Refund, |p, http| p.refund(http, request))
                    .await
            }
            RefundState::Processing => {
                self.providers
                    .call(kind, Operation::RefundQuery, |p, http| {
                        p.query_refund(http, request)
                    })
                    .await
            }
            RefundState::Succeeded | RefundState::Refused => return None,
        };
        let outcome = match answer {
            Ok(outcome) => outcome,
            Err(err) => {
                let recorded = async {
                    let mut conn = self.db.pool().acquire().await?;
                    let now = self.clock.now();
                    db::payments::record_refund(
                        &mut conn,
                        payment.id,
                        state,
                        None,
                        Some(&err.to_string()),
                        Some(now + REFUND_RETRY_MS),
                        false,
                        now,
                    )
                    .await
                };
                if let Err(e) = recorded.await {
                    tracing::warn!(payment_id, error = %e, "could not record a refund failure");
                }
                return None;
            }
        };
        if let Err(err) = self.record_refund_outcome(&payment, &outcome, None).await {
            tracing::warn!(payment_id, error = %err, "could not record a refund's outcome");
        }
        Some(outcome)
    }

    /// The one place a refund's outcome is written, whoever learnt it (the provider's answer,
    /// its notification, the refund job's query), at most once per notification. Confirmed:
    /// an order waiting for it becomes `refunded` (stock back, payment refunded), a late
    /// payment leaves the refund queue.
    pub(crate) async fn record_refund_outcome(
        &self,
        payment: &Payment,
        outcome: &RefundOutcome,
        event_id: Option<&str>,
    ) -> Result<()> {
        let now = self.clock.now();
        let dialect = self.db.dialect();
        let mut tx = self.db.write_tx().await?;
        let (order, current) = db::payments::lock_with_order(&mut tx, dialect, payment.id).await?;
        if let Some(event_id) = event_id
            && !db::payments::record_event(&mut tx, event_id, current.id, "refund", now).await?
        {
            return Ok(());
        }
        match outcome {
            RefundOutcome::Succeeded { refund_id } => {
                if current.refund() == Some(RefundState::Succeeded) {
                    self.commit(tx).await?;
                    return Ok(());
                }
                let refund_id = Some(refund_id.as_str()).filter(|r| !r.is_empty());
                db::payments::record_refund(
                    &mut tx,
                    current.id,
                    RefundState::Succeeded,
                    refund_id,
                    None,
                    None,
                    false,
                    now,
                )
                .await?;
                if current.refund_required {
                    db::payments::settle_late_refund(&mut tx, current.id, now).await?;
                    metrics::counter!("ordo_late_payments_settled_total").increment(1);
                } else if order.status == OrderStatus::Refunding
                    && current.status == PaymentStatus::Succeeded
                {
                    let input = TransitionInput {
                        note: Some(format!("refund confirmed by {}", current.provider)),
                        ..TransitionInput::default()
                    };
                    self.apply_transition(
                        &mut tx,
                        &order,
                        OrderStatus::Refunded,
                        Actor::Payment,
                        &input,
                        now,
                    )
                    .await?;
                }
            }
            RefundOutcome::Processing { refund_id } => {
                if current.refund() == Some(RefundState::Succeeded) {
                    self.commit(tx).await?;
                    return Ok(());
                }
                db::payments::record_refund(
                    &mut tx,
                    current.id,
                    RefundState::Processing,
                    Some(refund_id.as_str()).filter(|r| !r.is_empty()),
                    None,
                    Some(now + REFUND_RETRY_MS),
                    false,
                    now,
                )
                .await?;
            }
            RefundOutcome::Refused {
                reason,
                final_at_provider,
            } => {
                if current.refund() == Some(RefundState::Succeeded) {
                    self.commit(tx).await?;
                    return Ok(());
                }
                db::payments::record_refund(
                    &mut tx,
                    current.id,
                    RefundState::Refused,
                    None,
                    Some(reason),
                    None,
                    *final_at_provider,
                    now,
                )
                .await?;
                metrics::counter!("ordo_provider_refunds_refused_total",
                    "provider" => current.provider.as_str())
                .increment(1);
            }
            RefundOutcome::NotFound => {
                db::payments::record_refund(
                    &mut tx,
                    current.id,
                    RefundState::Requested,
                    None,
                    None,
                    Some(now),
                    false,
                    now,
                )
                .await?;
            }
        }
        self.commit(tx).await
    }

    /// The refund job: sends the refunds requested and asks about those processing, due
    /// now, as many at once as `provider_concurrency` allows.
    pub async fn process_refunds(&self, stop: &AtomicBool) -> Result<RefundSummary> {
        use futures_util::StreamExt;
        let mut summary = RefundSummary::default();
        let mut after_id = 0;
        while !stop.load(Ordering::SeqCst) {
            let page = {
                let mut conn = self.db.pool().acquire().await?;
                db::payments::refunds_due(&mut conn, self.clock.now(), after_id, 200).await?
            };
            let Some(last) = page.last() else { break };
            after_id = last.id;
            let work: Vec<_> = page
                .iter()
                .map(|payment| {
                    let (ordo, id) = (self.clone(), payment.id);
                    async move { ordo.work_on_refund(id).await }
                })
                .collect();
            let outcomes: Vec<Option<RefundOutcome>> = futures_util::stream::iter(work)
                .buffer_unordered(self.providers.concurrency())
                .collect()
                .await;
            for outcome in outcomes {
                summary.sent += 1;
                match outcome {
                    Some(RefundOutcome::Succeeded { .. }) => summary.succeeded += 1,
                    Some(RefundOutcome::Refused { .. }) => summary.refused += 1,
                    Some(_) => {}
                    None => summary.deferred += 1,
                }
            }
        }
        Ok(summary)
    }
}
