//! Payments: opening one for a pending order (at a provider: WeChat Pay, Alipay, Stripe, or
//! `manual`, ordo's own signed webhook), applying what providers report (at most once per
//! provider event; a success that arrives after cancellation is kept, flagged for refund and
//! refunded through its provider), asking providers before the sweep gives a payment up
//! ([`ask`]), and refunds through them ([`refunds`]).
//!
//! Provider calls are never made inside a database transaction: each flow decides under the
//! order's lock, commits, calls the provider through [`Providers::call`], then records the
//! answer in a short transaction of its own, re-checking what may have moved meanwhile.

pub mod alipay;
mod ask;
pub mod keys;
pub mod manual;
pub mod provider;
mod refunds;
mod setup;
pub mod shipping;
pub mod stripe;
pub mod wechatpay;

pub use ask::{AskOutcome, ReconcileSummary};
pub use provider::{Providers, Refusal};
pub use refunds::RefundSummary;
pub use setup::{ProviderStatus, check_base_url, check_public_url, load_providers, report};

use crate::Ordo;
use crate::audit::{self, Object};
use crate::auth::require_staff;
use crate::db::{self, Conn};
use crate::domain::{
    Actor, Millis, Order, OrderDetails, OrderStatus, Payment, PaymentProvider, PaymentStatus,
    ProviderEvent, ProviderStatus as ManualStatus,
};
use crate::error::{Error, Result};
use crate::events::{self, EventType, NewEvent};
use crate::orders::{TransitionInput, role_for};
use provider::{NotificationKind, OpenRequest, Operation, RefundRef};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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

/// What the order's owner asks for when opening a payment.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenPayment {
    /// Who takes the money; the shop's `default_payment_provider` when omitted.
    pub provider: Option<PaymentProvider>,
    /// The payer's WeChat openid (WeChat Pay JSAPI); the customer's stored `wechat_openid`
    /// when omitted.
    #[schema(min_length = 1, max_length = 128, pattern = "^[\\x21-\\x7E]+$")]
    pub openid: Option<String>,
}

/// An open payment, and what the customer's front end needs to pay it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OpenedPayment {
    #[serde(flatten)]
    pub payment: Payment,
    /// WeChat Pay: the `wx.requestPayment` parameters (`appId`, `timeStamp`, `nonceStr`,
    /// `package`, `signType`, `paySign`); Alipay: `{qr_code}`; Stripe: `{client_secret}`;
    /// `manual`: none.
    #[schema(value_type = Option<Object>)]
    pub client: Option<Value>,
}

/// A succeeded payment as one of the providers reported it (or as a query found it).
pub(crate) struct Success<'a> {
    /// The provider's event id; none for what reconciliation found.
    pub event_id: Option<String>,
    pub amount_minor: i64,
    /// Upper case; none for `manual` (its events carry no currency).
    pub currency: Option<&'a str>,
    pub txn_id: Option<&'a str>,
    pub state: Option<&'a str>,
    pub payer: Option<&'a str>,
    /// The history note of the move to `paid`.
    pub note: String,
}

/// What opening a payment does next, decided under the order's lock.
enum Plan {
    /// This payment is ready to pay.
    Ready(Payment),
    /// These payments are open at a provider and must be closed there first.
    Close(Vec<Payment>),
    /// This payment must be opened at its provider.
    Open(Payment, Option<String>),
}

impl Ordo {
    /// The configured providers (and the gate every provider call goes through).
    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    /// Whether `actor` may open payments for `order_id` at all (before the request is read):
    /// only its owner; another customer's order does not exist for them.
    pub async fn authorize_payment(&self, actor: Actor, order_id: i64) -> Result<()> {
        if !matches!(actor, Actor::Customer(_)) {
            return Err(Error::Forbidden {
                reason: "only the customer who placed the order opens payments".to_owned(),
            });
        }
        let mut conn = self.db.pool().acquire().await?;
        let order = db::orders::get(&mut conn, order_id)
            .await?
            .ok_or(Error::NotFound { what: "order" })?;
        role_for(actor, &order).map(|_| ())
    }

    /// Returns the order's open, unexpired payment with the asked provider, or opens a new
    /// one, at the provider when it is not `manual`. Only the owner, only for a pending
    /// order, and only within the unpaid timeout, so nobody holds stock forever by reopening
    /// payments. A payment open at another provider is closed there first. If the provider
    /// cannot be reached the order stands, the answer says why, and a retry tries again.
    pub async fn open_payment(
        &self,
        actor: Actor,
        order_id: i64,
        request: &OpenPayment,
    ) -> Result<OpenedPayment> {
        if !matches!(actor, Actor::Customer(_)) {
            return Err(Error::Forbidden {
                reason: "only the customer who placed the order opens payments".to_owned(),
            });
        }
        if let Some(openid) = &request.openid
            && (openid.is_empty()
                || openid.len() > 128
                || !openid.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(Error::validation(
                "openid",
                "1 to 128 visible ASCII characters",
            ));
        }
        let provider = request
            .provider
            .unwrap_or(self.policy.default_payment_provider);
        if !self.providers.is_configured(provider) {
            return Err(Error::validation(
                "provider",
                format!("{provider} is not configured on this shop"),
            ));
        }
        for _ in 0..3 {
            match self
                .plan_payment(actor, order_id, provider, request)
                .await?
            {
                Plan::Ready(payment) => {
                    let client = payment.provider_client.as_deref().and_then(|stored| {
                        let stored: Value = serde_json::from_str(stored).ok()?;
                        let provider = self.providers.get(payment.provider)?;
                        Some(provider.client(&stored, self.clock.now()))
                    });
                    return Ok(OpenedPayment { payment, client });
                }
                Plan::Close(open) => {
                    for payment in open {
                        self.close_abandoned(&payment).await?;
                    }
                }
                Plan::Open(payment, openid) => {
                    return self
                        .open_with_provider(actor, payment, openid.as_deref())
                        .await;
                }
            }
        }
        Err(Error::Conflict(
            "the order's payments kept changing; try again".to_owned(),
        ))
    }

    async fn plan_payment(
        &self,
        actor: Actor,
        order_id: i64,
        provider: PaymentProvider,
        request: &OpenPayment,
    ) -> Result<Plan> {
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
        if !provider.takes_currency(&order.currency) {
            return Err(Error::validation(
                "provider",
                format!(
                    "{provider} takes CNY only; this order is in {}",
                    order.currency
                ),
            ));
        }
        let openid = match (&request.openid, provider) {
            (Some(openid), _) => Some(openid.clone()),
            (None, PaymentProvider::Wechatpay) => Some(
                db::users::wechat_openid(&mut tx, order.user_id)
                    .await?
                    .ok_or_else(|| {
                        Error::validation(
                            "openid",
                            "required for wechatpay: the customer has no stored wechat_openid",
                        )
                    })?,
            ),
            (None, _) => None,
        };
        let payments = db::payments::for_order(&mut tx, order_id).await?;
        let reusable = |p: &Payment| {
            p.is_open_at(now)
                && p.provider == provider
                && (provider != PaymentProvider::Wechatpay
                    || p.provider_client.is_none()
                    || p.payer_openid == openid)
        };
        if let Some(open) = payments.iter().find(|p| reusable(p)) {
            let ready = open.provider == PaymentProvider::Manual || open.provider_client.is_some();
            tx.rollback().await?;
            return Ok(if ready {
                Plan::Ready(open.clone())
            } else {
                Plan::Open(open.clone(), openid)
            });
        }
        let at_provider: Vec<Payment> = payments
            .iter()
            .filter(|p| p.provider_open)
            .cloned()
            .collect();
        if !at_provider.is_empty() {
            tx.rollback().await?;
            return Ok(Plan::Close(at_provider));
        }
        // Whatever else is open (expired, or with another provider) gives way to the new one.
        db::payments::close_open_of_orders(
            &mut tx,
            dialect,
            &format!("[{order_id}]"),
            PaymentStatus::Cancelled,
            now,
        )
        .await?;
        let reference = (provider != PaymentProvider::Manual)
            .then(|| order.payment_reference(payments.len() + 1));
        let payment = db::payments::insert(
            &mut tx,
            order_id,
            order.total_cents,
            provider.method(),
            provider,
            reference.as_deref(),
            now + self.policy.payment_ttl_ms,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(if provider == PaymentProvider::Manual {
            Plan::Ready(payment)
        } else {
            Plan::Open(payment, openid)
        })
    }

    /// Opens `payment` at its provider (no transaction held), then records it if its order
    /// is still waiting for it.
    async fn open_with_provider(
        &self,
        actor: Actor,
        payment: Payment,
        openid: Option<&str>,
    ) -> Result<OpenedPayment> {
        let order = {
            let mut conn = self.db.pool().acquire().await?;
            db::orders::get(&mut conn, payment.order_id)
                .await?
                .ok_or(Error::NotFound { what: "order" })?
        };
        let kind = payment.provider;
        let request = OpenRequest {
            payment: &payment,
            order: &order,
            description: format!("Order {}", order.number),
            openid,
            notify_url: self.providers.notify_url(kind),
        };
        let opened = self
            .providers
            .call(kind, Operation::Open, |p, http| p.open(http, request))
            .await;
        let now = self.clock.now();
        let opened = match opened {
            Ok(opened) => opened,
            Err(err) => {
                let mut conn = self.db.pool().acquire().await?;
                db::payments::record_asked(
                    &mut conn,
                    payment.id,
                    None,
                    Some(&err.to_string()),
                    now,
                )
                .await?;
                return Err(Error::Provider(format!(
                    "{err}; the order stands: POST /api/v1/orders/{}/payments again to retry",
                    order.id
                )));
            }
        };
        let dialect = self.db.dialect();
        let mut tx = self.db.write_tx().await?;
        let order = db::orders::lock_existing(&mut tx, dialect, payment.order_id).await?;
        role_for(actor, &order)?;
        let current = db::payments::lock(&mut tx, dialect, payment.id)
            .await?
            .ok_or(Error::NotFound { what: "payment" })?;
        if order.status == OrderStatus::Pending && current.is_open_at(now) {
            let recorded = db::payments::record_opened(
                &mut tx,
                payment.id,
                &opened.provider_ref,
                &opened.client.to_string(),
                &opened.state,
                openid,
                now,
            )
            .await?;
            tx.commit().await?;
            let client = self
                .providers
                .get(kind)
                .map(|p| p.client(&opened.client, now));
            return Ok(OpenedPayment {
                payment: recorded,
                client,
            });
        }
        // The order moved (or the payment lapsed) while the provider answered: the new
        // transaction must not stay payable.
        tx.rollback().await?;
        let mut abandoned = current;
        abandoned.provider_ref = Some(opened.provider_ref);
        abandoned.provider_open = true;
        {
            let mut tx = self.db.write_tx().await?;
            db::payments::record_opened(
                &mut tx,
                abandoned.id,
                abandoned.provider_ref.as_deref().unwrap_or_default(),
                &opened.client.to_string(),
                &opened.state,
                openid,
                now,
            )
            .await?;
            tx.commit().await?;
        }
        self.close_abandoned(&abandoned).await?;
        Err(Error::Conflict(format!(
            "order {} is {} and its payment is no longer open",
            order.id, order.status
        )))
    }

    /// Takes a notification from a provider: verified first, then applied at most once.
    /// The answer is in the provider's own convention; nothing changes when it is refused.
    pub async fn take_notification(
        &self,
        kind: PaymentProvider,
        headers: &axum::http::HeaderMap,
        body: &[u8],
    ) -> provider::Acknowledgement {
        let Some(provider) = self.providers.get(kind).cloned() else {
            return provider::not_configured(kind);
        };
        let result = match provider.read_notification(headers, body, self.clock.now()) {
            Ok(notification) => self.apply_notification(kind, &notification).await,
            Err(refusal) => Err(refusal),
        };
        let outcome = match &result {
            Ok(()) => "applied",
            Err(Refusal::NotAuthentic(_)) => "not_authentic",
            Err(Refusal::Malformed(_)) => "malformed",
            Err(Refusal::Mismatch(_)) => "mismatch",
            Err(Refusal::Unavailable(_)) => "unavailable",
            Err(Refusal::NotConfigured(_)) => "not_configured",
        };
        metrics::counter!("ordo_provider_notifications_total",
            "provider" => kind.as_str(), "outcome" => outcome)
        .increment(1);
        if let Err(refusal) = &result {
            tracing::warn!(provider = %kind, %refusal, "provider notification refused");
        }
        provider.acknowledge(result.as_ref().map(|_| ()))
    }

    async fn apply_notification(
        &self,
        kind: PaymentProvider,
        notification: &provider::Notification,
    ) -> Result<(), Refusal> {
        let unavailable = |e: Error| match e {
            Error::Validation { field, message } => {
                Refusal::Mismatch(format!("{field}: {message}"))
            }
            Error::NotFound { what } => Refusal::Mismatch(format!("no such {what}")),
            other => Refusal::Unavailable(other.to_string()),
        };
        let event_id = format!("{kind}:{}", notification.event_id);
        let find = |provider_ref: String| async move {
            let mut conn = self.db.pool().acquire().await.map_err(Error::from)?;
            db::payments::by_provider_ref(&mut conn, kind, &provider_ref).await
        };
        match &notification.kind {
            NotificationKind::PaymentSucceeded {
                provider_ref,
                txn_id,
                amount_minor,
                currency,
                state,
                payer,
            } => {
                let payment = find(provider_ref.clone())
                    .await
                    .map_err(unavailable)?
                    .ok_or_else(|| {
                        Refusal::Mismatch(format!("no payment known as {provider_ref:?}"))
                    })?;
                let success = Success {
                    event_id: Some(event_id),
                    amount_minor: *amount_minor,
                    currency: Some(currency),
                    txn_id: Some(txn_id),
                    state: Some(state),
                    payer: payer.as_deref(),
                    note: format!("payment {} succeeded ({kind} {state})", payment.id),
                };
                self.record_success(payment.id, &success)
                    .await
                    .map(|_| ())
                    .map_err(unavailable)
            }
            NotificationKind::PaymentFailed {
                provider_ref,
                state,
            } => {
                let payment = find(provider_ref.clone())
                    .await
                    .map_err(unavailable)?
                    .ok_or_else(|| {
                        Refusal::Mismatch(format!("no payment known as {provider_ref:?}"))
                    })?;
                self.record_failure(payment.id, &event_id, state)
                    .await
                    .map(|_| ())
                    .map_err(unavailable)
            }
            NotificationKind::RefundSucceeded { refund, refund_id } => {
                let payment = self
                    .payment_of_refund(kind, refund)
                    .await
                    .map_err(unavailable)?;
                self.record_refund_outcome(
                    &payment,
                    &provider::RefundOutcome::Succeeded {
                        refund_id: refund_id.clone().unwrap_or_default(),
                    },
                    Some(&event_id),
                )
                .await
                .map_err(unavailable)
            }
            NotificationKind::RefundFailed { refund, reason } => {
                let payment = self
                    .payment_of_refund(kind, refund)
                    .await
                    .map_err(unavailable)?;
                self.record_refund_outcome(
                    &payment,
                    &provider::RefundOutcome::Refused {
                        reason: reason.clone(),
                        final_at_provider: true,
                    },
                    Some(&event_id),
                )
                .await
                .map_err(unavailable)
            }
            NotificationKind::Ignored { what } => {
                tracing::debug!(provider = %kind, what, "provider notification ignored");
                Ok(())
            }
        }
    }

    async fn payment_of_refund(
        &self,
        kind: PaymentProvider,
        refund: &RefundRef,
    ) -> Result<Payment> {
        let mut conn = self.db.pool().acquire().await?;
        match refund {
            RefundRef::OutRefundNo(number) => {
                db::payments::by_out_refund_no(&mut conn, kind, number).await
            }
            RefundRef::Payment(provider_ref) => {
                db::payments::by_provider_ref(&mut conn, kind, provider_ref).await
            }
        }?
        .ok_or(Error::NotFound { what: "refund" })
    }

    /// Applies one `manual` provider event. Replays (a known event id) change nothing; a
    /// success whose amount differs from the payment's is refused and changes nothing.
    pub async fn apply_provider_event(&self, event: &ProviderEvent) -> Result<EventOutcome> {
        if event.event_id.trim().is_empty() {
            return Err(Error::validation("event_id", "must not be empty"));
        }
        crate::domain::text::check_free("event_id", &event.event_id, 200)?;
        match event.status {
            ManualStatus::Failed => {
                self.record_failure(event.payment_id, &event.event_id, "failed")
                    .await
            }
            ManualStatus::Succeeded => {
                let success = Success {
                    event_id: Some(event.event_id.clone()),
                    amount_minor: event.amount_cents,
                    currency: None,
                    txn_id: None,
                    state: None,
                    payer: None,
                    note: format!("payment {} succeeded", event.payment_id),
                };
                self.record_success(event.payment_id, &success).await
            }
        }
    }

    /// A payment failed at its provider: `failed` if it was open (a provider payment stays
    /// known as open there: the customer may try again on it), with `payment.failed`.
    async fn record_failure(
        &self,
        payment_id: i64,
        event_id: &str,
        state: &str,
    ) -> Result<EventOutcome> {
        let now = self.clock.now();
        let dialect = self.db.dialect();
        let mut tx = self.db.write_tx().await?;
        // The order first, then the payment: the order every writer follows.
        let (order, payment) = db::payments::lock_with_order(&mut tx, dialect, payment_id).await?;
        if !db::payments::record_event(&mut tx, event_id, payment.id, "failed", now).await? {
            return Ok(EventOutcome::Replayed);
        }
        let outcome = if payment.status == PaymentStatus::Pending {
            db::payments::set_status(&mut tx, payment.id, PaymentStatus::Failed, None, now).await?;
            if payment.provider != PaymentProvider::Manual {
                db::payments::record_asked(&mut tx, payment.id, Some(state), None, now).await?;
            }
            self.payment_event(&mut tx, EventType::PaymentFailed, &order, payment.id, now)
                .await?;
            EventOutcome::Failed
        } else {
            EventOutcome::NoChange
        };
        self.commit(tx).await?;
        Ok(outcome)
    }

    /// The one place a payment becomes `succeeded`, whoever reports it (a provider's
    /// notification, the `manual` webhook, a query that found it paid): at most once per
    /// event id, refused with nothing changed when the amount or currency differs. A pending
    /// order becomes paid; money for an order that no longer waits for it is kept, flagged
    /// for refund, and (from a provider, with `auto_refund_late_payments`) refunded through it.
    pub(crate) async fn record_success(
        &self,
        payment_id: i64,
        success: &Success<'_>,
    ) -> Result<EventOutcome> {
        let now = self.clock.now();
        let dialect = self.db.dialect();
        let mut tx = self.db.write_tx().await?;
        // The order first, then the payment: the order every writer follows.
        let (order, payment) = db::payments::lock_with_order(&mut tx, dialect, payment_id).await?;
        if let Some(event_id) = &success.event_id
            && !db::payments::record_event(&mut tx, event_id, payment.id, "succeeded", now).await?
        {
            return Ok(EventOutcome::Replayed);
        }
        if success.amount_minor != payment.amount_cents {
            return Err(Error::validation(
                "amount_cents",
                format!(
                    "{} does not match the payment's amount {}",
                    success.amount_minor, payment.amount_cents
                ),
            ));
        }
        if let Some(currency) = success.currency
            && !currency.eq_ignore_ascii_case(&order.currency)
        {
            return Err(Error::validation(
                "currency",
                format!(
                    "{currency} does not match the order's currency {}",
                    order.currency
                ),
            ));
        }
        if matches!(
            payment.status,
            PaymentStatus::Succeeded | PaymentStatus::Refunded
        ) {
            self.commit(tx).await?;
            return Ok(EventOutcome::NoChange);
        }
        db::payments::record_succeeded(
            &mut tx,
            payment.id,
            success
                .event_id
                .as_deref()
                .filter(|_| payment.provider == PaymentProvider::Manual),
            success.txn_id,
            success.state,
            success.payer,
            now,
        )
        .await?;
        let outcome = if order.status == OrderStatus::Pending {
            let input = TransitionInput {
                note: Some(success.note.clone()),
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
            // Late or duplicate money: never dropped, flagged for staff, refunded through
            // its provider when it has one.
            db::payments::flag_refund_required(&mut tx, payment.id, now).await?;
            self.payment_event(
                &mut tx,
                EventType::PaymentLateSucceeded,
                &order,
                payment.id,
                now,
            )
            .await?;
            if payment.provider != PaymentProvider::Manual && self.policy.auto_refund_late_payments
            {
                let number = payment.refund_number(1);
                db::payments::request_refund(&mut tx, payment.id, &number, 1, now).await?;
            }
            EventOutcome::RefundRequired
        };
        self.commit(tx).await?;
        if outcome == EventOutcome::RefundRequired {
            self.refund_soon(payment.id);
        }
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
    /// needs no refund, was settled already, or whose refund is under way at its provider,
    /// is a conflict.
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
        // The order first, then the payment: the order every writer follows.
        let (_, payment) = db::payments::lock_with_order(&mut tx, dialect, payment_id).await?;
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
        if payment.refund().is_some_and(|r| r.under_way()) {
            return Err(Error::Conflict(format!(
                "payment {payment_id}'s refund is under way at {}; wait for it",
                payment.provider
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
            json!({"order_id": payment.order_id, "provider_ref": provider_ref,
                   "amount_cents": settled.amount_cents}),
            now,
        )
        .await?;
        self.commit(tx).await?;
        metrics::counter!("ordo_late_payments_settled_total").increment(1);
        Ok(settled)
    }

    /// One payment (staff).
    pub async fn payment(&self, actor: Actor, payment_id: i64) -> Result<Payment> {
        require_staff(actor)?;
        let mut conn = self.db.pool().acquire().await?;
        db::payments::get(&mut conn, payment_id)
            .await?
            .ok_or(Error::NotFound { what: "payment" })
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
