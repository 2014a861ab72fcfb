//! `/payments`: the provider's webhook and the late payments staff must refund.

use super::error::{ApiError, Problem};
use super::extract::{Id, Json, Query, RawBody, Staff, parse_json};
use super::{AppState, PageParams, next_cursor};
use crate::domain::PaymentProvider;
use crate::domain::{Payment, ProviderEvent};
use crate::payments::provider::Acknowledgement;
use crate::payments::{AskOutcome, EventOutcome, manual};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(webhook))
        .routes(routes!(wechatpay_notify))
        .routes(routes!(alipay_notify))
        .routes(routes!(stripe_webhook))
        .routes(routes!(payments_to_refund))
        .routes(routes!(settle_refund))
        .routes(routes!(refund_payment))
        .routes(routes!(ask_provider))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookResult {
    pub outcome: EventOutcome,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentPage {
    pub items: Vec<Payment>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RefundQuery {
    /// Must be `true`: the succeeded payments whose order did not take them.
    #[param(value_type = RefundRequiredTrue)]
    pub refund_required: bool,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    pub cursor: Option<String>,
}

/// Only `true` is supported.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[allow(dead_code)] // the schema's enum
pub enum RefundRequiredTrue {
    #[serde(rename = "true")]
    True,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundSettled {
    /// The provider's reference of the refund.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub provider_ref: String,
}

/// The payment provider reports a result. The body is signed: `X-Ordo-Signature` is the
/// hex HMAC-SHA256 of the raw body with the webhook secret. Each event id is applied at most
/// once; a replay answers 200 with outcome `replayed`.
#[utoipa::path(post, path = "/payments/webhook", tag = "payments", request_body = ProviderEvent,
    params(("X-Ordo-Signature" = String, Header, description = "hex HMAC-SHA256 of the body")),
    responses((status = 200, body = WebhookResult), (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, description = "No webhook secret configured")))]
async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookResult>, ApiError> {
    let Some(secret) = &state.webhook_secret else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the payment webhook is off: set ORDO_WEBHOOK_SECRET",
        ));
    };
    let signature = headers
        .get(manual::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing X-Ordo-Signature"))?;
    if !manual::verify(secret, &body, signature) {
        return Err(ApiError::unauthorized("bad signature"));
    }
    let event: ProviderEvent = parse_json(&body)?;
    let outcome = state.ordo.apply_provider_event(&event).await?;
    tracing::info!(event_id = %event.event_id, payment_id = event.payment_id, ?outcome, "payment event");
    Ok(Json(WebhookResult { outcome }))
}

/// Late payments to refund: succeeded payments whose order was cancelled or already paid
/// (staff).
#[utoipa::path(get, path = "/payments", tag = "payments", params(RefundQuery),
    security(("bearer" = [])),
    responses((status = 200, body = PaymentPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn payments_to_refund(
    State(state): State<AppState>,
    staff: Staff,
    Query(query): Query<RefundQuery>,
) -> Result<Json<PaymentPage>, ApiError> {
    if !query.refund_required {
        return Err(ApiError::bad_request(
            "refund_required",
            "only refund_required=true is supported",
        ));
    }
    let page = PageParams {
        limit: query.limit,
        cursor: query.cursor,
    };
    let limit = page.limit()?;
    let items = state
        .ordo
        .payments_to_refund(staff.actor(), page.cursor()?.unwrap_or(0), limit)
        .await?;
    let next_cursor = next_cursor(&items, limit, |p| p.id);
    Ok(Json(PaymentPage { items, next_cursor }))
}

/// The refund of a late payment went out (staff): the payment becomes `refunded` and
/// leaves the queue; its order keeps its status and history. Settling twice, or a payment
/// that needs no refund, is 409.
#[utoipa::path(post, path = "/payments/{id}/refund-settled", tag = "payments",
    params(("id" = i64, Path)), request_body = RefundSettled, security(("bearer" = [])),
    responses((status = 200, body = Payment), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn settle_refund(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
    body: RawBody,
) -> Result<Json<Payment>, ApiError> {
    let settled: RefundSettled = body.parse()?;
    Ok(Json(
        state
            .ordo
            .settle_refund(staff.actor(), id, &settled.provider_ref)
            .await?,
    ))
}

/// A provider's notification, answered in its own convention.
fn acknowledgement(ack: Acknowledgement) -> Response {
    let status = StatusCode::from_u16(ack.status).unwrap_or(StatusCode::BAD_REQUEST);
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    (
        status,
        [(axum::http::header::CONTENT_TYPE, ack.content_type)],
        ack.body,
    )
        .into_response()
}

/// WeChat Pay's answer to a refused notification, which makes it send it again.
#[derive(Debug, Serialize, ToSchema)]
pub struct WechatPayFail {
    /// `FAIL`.
    pub code: String,
    pub message: String,
}

/// Stripe's answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct StripeAnswer {
    pub received: Option<bool>,
    pub error: Option<String>,
}

/// WeChat Pay v3 reports a payment or a refund (`TRANSACTION.SUCCESS`, `REFUND.SUCCESS`,
/// `REFUND.ABNORMAL`, `REFUND.CLOSED`). Checked before anything is read: `Wechatpay-Serial`
/// names the WeChat Pay public key, `Wechatpay-Timestamp` is within 5 minutes, and
/// `Wechatpay-Signature` verifies over `"{timestamp}\n{nonce}\n{body}\n"`; then the
/// resource is decrypted (AEAD_AES_256_GCM with the APIv3 key), and the merchant, app,
/// amount and currency must be the payment's. Applied at most once per notification id.
/// Answers 204, or 4xx/5xx with `{"code": "FAIL", "message": …}` so that WeChat Pay sends
/// it again.
#[utoipa::path(post, path = "/payments/wechatpay/notify", tag = "payments",
    request_body(content = Object, content_type = "application/json"),
    params(
        ("Wechatpay-Serial" = String, Header, description = "PUB_KEY_ID_… of the key that signed"),
        ("Wechatpay-Timestamp" = String, Header, description = "unix seconds"),
        ("Wechatpay-Nonce" = String, Header),
        ("Wechatpay-Signature" = String, Header, description = "base64 RSA-SHA256")),
    responses((status = 204, description = "Taken"),
        (status = "4XX", body = WechatPayFail, description = "Refused; nothing changed"),
        (status = 503, body = WechatPayFail, description = "Not now; WeChat Pay sends it again")))]
async fn wechatpay_notify(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    acknowledgement(
        state
            .ordo
            .take_notification(PaymentProvider::Wechatpay, &headers, &body)
            .await,
    )
}

/// Alipay reports a trade (`TRADE_SUCCESS`, `TRADE_FINISHED`) or a refund: a form post
/// signed RSA2 over its sorted parameters (without `sign` and `sign_type`), checked with
/// Alipay's public key before anything is read; the app id, amount and trade must be the
/// payment's. Applied at most once per trade and status. Answers the text `success`;
/// anything else (`fail`) makes Alipay send it again.
#[utoipa::path(post, path = "/payments/alipay/notify", tag = "payments",
    request_body(content = String, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = String, content_type = "text/plain", description = "`success`"),
        (status = "4XX", body = String, content_type = "text/plain", description = "`fail`: refused; nothing changed"),
        (status = 503, body = String, content_type = "text/plain", description = "`fail`: not now; Alipay sends it again")))]
async fn alipay_notify(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    acknowledgement(
        state
            .ordo
            .take_notification(PaymentProvider::Alipay, &headers, &body)
            .await,
    )
}

/// Stripe reports an event (`payment_intent.succeeded`, `payment_intent.payment_failed`,
/// `charge.refunded`, `refund.updated`, `refund.failed`). `Stripe-Signature` (`t=…,v1=…`,
/// HMAC-SHA256 of `"{t}.{body}"` with the `whsec_…` secret, within 5 minutes) is checked
/// before anything is read; amount and currency must be the payment's. Applied at most
/// once per event id.
#[utoipa::path(post, path = "/payments/stripe/webhook", tag = "payments",
    request_body(content = Object, content_type = "application/json"),
    params(("Stripe-Signature" = String, Header, description = "t=…,v1=…")),
    responses((status = 200, body = StripeAnswer, description = "Taken"),
        (status = "4XX", body = StripeAnswer, description = "Refused; nothing changed"),
        (status = 503, body = StripeAnswer, description = "Not now; Stripe sends it again")))]
async fn stripe_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    acknowledgement(
        state
            .ordo
            .take_notification(PaymentProvider::Stripe, &headers, &body)
            .await,
    )
}

/// What staff asking a provider found.
#[derive(Debug, Serialize, ToSchema)]
pub struct Asked {
    #[serde(flatten)]
    pub outcome: AskOutcome,
    pub payment: Payment,
}

/// Ask a payment's provider about it now (staff; audited). Paid: the payment succeeds
/// and its order is paid (or, if the order no longer waits, the money is flagged for
/// refund); closed or open: recorded; no answer: `deferred` with the reason, nothing changed.
#[utoipa::path(post, path = "/payments/{id}/ask-provider", tag = "payments",
    params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = Asked), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn ask_provider(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
) -> Result<Json<Asked>, ApiError> {
    let outcome = state.ordo.ask_provider_now(staff.actor(), id).await?;
    let payment = state.ordo.payment(staff.actor(), id).await?;
    Ok(Json(Asked { outcome, payment }))
}

/// Refund a late payment through its provider (staff; again after a refusal). The
/// payment's `refund_state` says where it stands; `manual` payments are settled with
/// `refund-settled` instead.
#[utoipa::path(post, path = "/payments/{id}/refund", tag = "payments",
    params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = Payment), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn refund_payment(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
) -> Result<Json<Payment>, ApiError> {
    Ok(Json(
        state.ordo.refund_late_payment(staff.actor(), id).await?,
    ))
}
