//! Asking a provider what became of a payment, and acting on the answer: paid (the order
//! becomes paid as if the notification had come), unpaid (closed at the provider, when the
//! caller is giving the payment up), closed there already. No answer, an error, or an answer
//! that does not verify decides nothing: the payment stays as it is and the reason is kept
//! on it. The sweep asks before it cancels, the reconciliation job asks about payments
//! whose notification is late, staff ask from the console, and giving a payment up (another
//! provider chosen, the order cancelled) closes it first.

use super::provider::{CloseOutcome, Operation, TxnState};
use super::{EventOutcome, Success};
use crate::Ordo;
use crate::audit::{self, Object};
use crate::auth::require_staff;
use crate::db;
use crate::domain::{Actor, OrderStatus, Payment, PaymentProvider};
use crate::error::{Error, Result};
use futures_util::StreamExt;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};

/// What asking about one payment came to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "reason")]
pub enum AskOutcome {
    /// The provider took the money: the payment succeeded (its order is paid, or, if it no
    /// longer waited, the money is flagged for refund).
    Paid,
    /// It can no longer be paid at the provider (closed now, or before).
    Closed,
    /// Open and unpaid at the provider; left open (nobody asked to close it).
    Open,
    /// Nothing could be decided (unreachable, an error, an answer that does not verify, the
    /// customer paying right now, an amount that does not match): left as it was.
    Deferred(String),
}

/// What asking came to, before it is all recorded.
enum Asked {
    Done(AskOutcome),
    /// Closed at the provider; not yet written (the caller writes many at once).
    Closed(String),
}

/// How many provider calls an ask made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Calls {
    pub queries: u64,
    pub closes: u64,
}

/// What a reconciliation run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileSummary {
    pub queried: u64,
    pub found_paid: u64,
    pub closed: u64,
    pub deferred: u64,
}

/// Most payments one reconciliation run asks about; the next run goes on.
const RECONCILE_PER_RUN: i64 = 10_000;

impl Ordo {
    /// Asks the provider about `payment` and records the answer; with `close`, an unpaid
    /// transaction is closed at the provider (and a close refused because it was paid
    /// meanwhile is confirmed by asking again).
    pub(crate) async fn ask_payment(&self, payment: &Payment, close: bool) -> (AskOutcome, Calls) {
        let (outcome, calls, unrecorded) = self.ask_payment_with(payment, close, true).await;
        debug_assert!(unrecorded.is_none());
        (outcome, calls)
    }

    /// [`Ordo::ask_payment`]; without `record_closed`, a payment found closed (or closed
    /// now) is not written as closed here: its state comes back for the caller to write
    /// with others in one statement ([`Ordo::record_closed_payments`]).
    pub(crate) async fn ask_payment_with(
        &self,
        payment: &Payment,
        close: bool,
        record_closed: bool,
    ) -> (AskOutcome, Calls, Option<String>) {
        let (outcome, calls) = self.ask(payment, close, record_closed).await;
        match outcome {
            Asked::Done(outcome) => (outcome, calls, None),
            Asked::Closed(state) => (AskOutcome::Closed, calls, Some(state)),
        }
    }

    async fn ask(&self, payment: &Payment, close: bool, record_closed: bool) -> (Asked, Calls) {
        let mut calls = Calls::default();
        let kind = payment.provider;
        calls.queries += 1;
        let state = self
            .providers
            .call(kind, Operation::Query, |p, http| p.query(http, payment))
            .await;
        let outcome = match state {
            Err(err) => Asked::Done(self.deferred(payment, err.to_string()).await),
            Ok(TxnState::Paid {
                txn_id,
                amount_minor,
                currency,
                state,
            }) => Asked::Done(
                self.found_paid(payment, &txn_id, amount_minor, &currency, &state)
                    .await,
            ),
            Ok(TxnState::Closed { state }) => self.closed(payment, &state, record_closed).await,
            Ok(TxnState::Paying { state }) => {
                self.noted(payment, &state).await;
                Asked::Done(if close {
                    AskOutcome::Deferred(format!("the customer is paying right now ({state})"))
                } else {
                    AskOutcome::Open
                })
            }
            Ok(state @ (TxnState::Unpaid { .. } | TxnState::Missing)) => {
                if close {
                    self.close_at_provider(payment, &mut calls, record_closed)
                        .await
                } else {
                    self.noted(payment, &state.label()).await;
                    Asked::Done(AskOutcome::Open)
                }
            }
        };
        (outcome, calls)
    }

    async fn close_at_provider(
        &self,
        payment: &Payment,
        calls: &mut Calls,
        record_closed: bool,
    ) -> Asked {
        let kind = payment.provider;
        calls.closes += 1;
        let closed = self
            .providers
            .call(kind, Operation::Close, |p, http| p.close(http, payment))
            .await;
        match closed {
            Ok(CloseOutcome::Closed) => self.closed(payment, "CLOSED", record_closed).await,
            Ok(CloseOutcome::AlreadyPaid) => {
                // The close's refusal is a hint; only a (verified) answer to a query is a fact.
                calls.queries += 1;
                let state = self
                    .providers
                    .call(kind, Operation::Query, |p, http| p.query(http, payment))
                    .await;
                match state {
                    Ok(TxnState::Paid {
                        txn_id,
                        amount_minor,
                        currency,
                        state,
                    }) => Asked::Done(
                        self.found_paid(payment, &txn_id, amount_minor, &currency, &state)
                            .await,
                    ),
                    Ok(TxnState::Closed { state }) => {
                        self.closed(payment, &state, record_closed).await
                    }
                    Ok(other) => Asked::Done(
                        self.deferred(
                            payment,
                            format!("{kind} refused to close it, yet says {}", other.label()),
                        )
                        .await,
                    ),
                    Err(err) => Asked::Done(self.deferred(payment, err.to_string()).await),
                }
            }
            Err(err) => Asked::Done(self.deferred(payment, err.to_string()).await),
        }
    }

    async fn found_paid(
        &self,
        payment: &Payment,
        txn_id: &str,
        amount_minor: i64,
        currency: &str,
        state: &str,
    ) -> AskOutcome {
        let success = Success {
            event_id: None,
            amount_minor,
            currency: Some(currency),
            txn_id: Some(txn_id).filter(|t| !t.is_empty()),
            state: Some(state),
            payer: None,
            note: format!(
                "payment {} found paid by reconciliation ({} {state})",
                payment.id, payment.provider
            ),
        };
        match self.record_success(payment.id, &success).await {
            Ok(
                EventOutcome::Paid
                | EventOutcome::RefundRequired
                | EventOutcome::NoChange
                | EventOutcome::Replayed,
            ) => {
                metrics::counter!("ordo_payments_found_paid_total", "provider" => payment.provider.as_str())
                    .increment(1);
                AskOutcome::Paid
            }
            Ok(EventOutcome::Failed) => AskOutcome::Deferred("recorded as failed".to_owned()),
            Err(err) => self.deferred(payment, err.to_string()).await,
        }
    }

    async fn closed(&self, payment: &Payment, state: &str, record: bool) -> Asked {
        if !record {
            return Asked::Closed(state.to_owned());
        }
        let recorded = async {
            let mut conn = self.db.pool().acquire().await?;
            db::payments::record_closed(&mut conn, payment.id, state, self.clock.now()).await
        };
        Asked::Done(match recorded.await {
            Ok(()) => AskOutcome::Closed,
            Err(err) => {
                AskOutcome::Deferred(format!("closed at the provider, not recorded: {err}"))
            }
        })
    }

    /// Records payments found or made closed at their providers, `(payment id, the
    /// provider's word)`, in one statement.
    pub(crate) async fn record_closed_payments(&self, closed: &[(i64, String)]) -> Result<()> {
        if closed.is_empty() {
            return Ok(());
        }
        let rows = serde_json::to_string(
            &closed
                .iter()
                .map(|(id, state)| serde_json::json!({"id": id, "state": state}))
                .collect::<Vec<_>>(),
        )
        .unwrap_or_else(|_| "[]".to_owned());
        let mut conn = self.db.pool().acquire().await?;
        db::payments::record_closed_many(&mut conn, self.db.dialect(), &rows, self.clock.now())
            .await
    }

    /// Keeps what the provider said; a failure to keep it costs nothing but the note.
    async fn noted(&self, payment: &Payment, state: &str) {
        let recorded = async {
            let mut conn = self.db.pool().acquire().await?;
            db::payments::record_asked(&mut conn, payment.id, Some(state), None, self.clock.now())
                .await
        };
        if let Err(err) = recorded.await {
            tracing::warn!(payment_id = payment.id, error = %err, "could not record a provider's answer");
        }
    }

    async fn deferred(&self, payment: &Payment, reason: String) -> AskOutcome {
        let recorded = async {
            let mut conn = self.db.pool().acquire().await?;
            db::payments::record_asked(&mut conn, payment.id, None, Some(&reason), self.clock.now())
                .await
        };
        if let Err(err) = recorded.await {
            tracing::warn!(payment_id = payment.id, error = %err, "could not record a provider failure");
        }
        AskOutcome::Deferred(reason)
    }

    /// Closes a payment ordo is giving up (another provider chosen, its order cancelled)
    /// at its provider. `Ok` once it cannot be paid there; a conflict if the provider says
    /// it was paid (the order is paid now); a provider error if nothing could be decided.
    pub(crate) async fn close_abandoned(&self, payment: &Payment) -> Result<()> {
        match self.ask_payment(payment, true).await.0 {
            AskOutcome::Closed | AskOutcome::Open => Ok(()),
            AskOutcome::Paid => Err(Error::Conflict(format!(
                "{} says payment {} was paid: order {} is paid",
                payment.provider, payment.id, payment.order_id
            ))),
            AskOutcome::Deferred(reason) => Err(Error::Provider(format!(
                "payment {} is open at {} and could not be closed there: {reason}; nothing was changed, try again",
                payment.id, payment.provider
            ))),
        }
    }

    /// Closes every payment of `order_id` that is open at a provider (before the order is
    /// cancelled).
    pub(crate) async fn close_payments_of(&self, order_id: i64) -> Result<()> {
        let open: Vec<Payment> = {
            let mut conn = self.db.pool().acquire().await?;
            db::payments::for_order(&mut conn, order_id)
                .await?
                .into_iter()
                .filter(|p| p.provider_open)
                .collect()
        };
        for payment in open {
            self.close_abandoned(&payment).await?;
        }
        Ok(())
    }

    /// Staff ask a payment's provider now (audited): the answer is recorded and acted on as
    /// reconciliation would.
    pub async fn ask_provider_now(&self, actor: Actor, payment_id: i64) -> Result<AskOutcome> {
        require_staff(actor)?;
        let now = self.clock.now();
        let payment = {
            let mut tx = self.db.write_tx().await?;
            let payment = db::payments::get(&mut tx, payment_id)
                .await?
                .ok_or(Error::NotFound { what: "payment" })?;
            if payment.provider == PaymentProvider::Manual {
                return Err(Error::Conflict(
                    "manual payments have no provider to ask".to_owned(),
                ));
            }
            if payment.provider_ref.is_none() {
                return Err(Error::Conflict(format!(
                    "payment {payment_id} was never opened at {}",
                    payment.provider
                )));
            }
            audit::record(
                &mut tx,
                actor,
                "payment.ask_provider",
                Object::Payment(payment_id),
                serde_json::json!({"order_id": payment.order_id, "provider": payment.provider}),
                now,
            )
            .await?;
            tx.commit().await?;
            payment
        };
        Ok(self.ask_payment(&payment, false).await.0)
    }

    /// The reconciliation job: asks about payments open at a provider that have had no
    /// word for `reconcile_after` since they were opened (or since last asked), as many at
    /// once as `provider_concurrency` allows. Payments whose order no longer waits for them
    /// are closed at the provider.
    pub async fn reconcile_open_payments(&self, stop: &AtomicBool) -> Result<ReconcileSummary> {
        let mut summary = ReconcileSummary::default();
        let now = self.clock.now();
        let before = now - self.policy.reconcile_after_ms;
        let mut after_id = 0;
        let mut asked = 0i64;
        while !stop.load(Ordering::SeqCst) && asked < RECONCILE_PER_RUN {
            let page = {
                let mut conn = self.db.pool().acquire().await?;
                db::payments::open_at_provider(&mut conn, before, before, after_id, 500).await?
            };
            let Some(last) = page.last() else { break };
            after_id = last.id;
            asked += page.len() as i64;
            let orders = {
                let mut conn = self.db.pool().acquire().await?;
                let mut statuses = std::collections::HashMap::new();
                for payment in &page {
                    if let Some(order) = db::orders::get(&mut conn, payment.order_id).await? {
                        statuses.insert(order.id, order.status);
                    }
                }
                statuses
            };
            let asks: Vec<_> = page
                .into_iter()
                .map(|payment| {
                    // A payment whose order no longer waits for it is closed at the provider.
                    let abandoned = orders.get(&payment.order_id) != Some(&OrderStatus::Pending);
                    let ordo = self.clone();
                    async move { ordo.ask_payment(&payment, abandoned).await }
                })
                .collect();
            let outcomes: Vec<(AskOutcome, Calls)> = futures_util::stream::iter(asks)
                .buffer_unordered(self.providers.concurrency())
                .collect()
                .await;
            for (outcome, calls) in outcomes {
                summary.queried += calls.queries;
                match outcome {
                    AskOutcome::Paid => summary.found_paid += 1,
                    AskOutcome::Closed => summary.closed += 1,
                    AskOutcome::Deferred(_) => summary.deferred += 1,
                    AskOutcome::Open => {}
                }
            }
        }
        metrics::counter!("ordo_reconcile_payments_queried_total").increment(summary.queried);
        Ok(summary)
    }
}
