//! `/payments`: the provider's webhook and the late payments staff must refund.

use super::error::{ApiError, Problem};
use super::extract::{Id, Json, Query, RawBody, Staff, parse_json};
use super::{AppState, PageParams, next_cursor};
use crate::domain::{Payment, ProviderEvent};
use crate::payments::EventOutcome;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The header carrying the hex HMAC-SHA256 of the raw body.
pub const SIGNATURE_HEADER: &str = "x-ordo-signature";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(webhook))
        .routes(routes!(payments_to_refund))
        .routes(routes!(settle_refund))
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

/// The hex HMAC-SHA256 of `body` under `secret`, as the provider sends it.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks the signature in constant time.
fn verify(secret: &[u8], body: &[u8], signature_hex: &str) -> bool {
    let Ok(signature) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
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
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("missing X-Ordo-Signature"))?;
    if !verify(secret, &body, signature) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        let sig = sign(b"secret", b"{}");
        assert!(verify(b"secret", b"{}", &sig));
        assert!(!verify(b"secret", b"{ }", &sig));
        assert!(!verify(b"other", b"{}", &sig));
        assert!(!verify(b"secret", b"{}", "zz"));
        assert!(!verify(b"secret", b"{}", ""));
    }
}
