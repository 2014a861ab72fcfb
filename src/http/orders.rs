//! `/orders`: placing orders, reading them, and every lifecycle move.

use super::error::{ApiError, Problem};
use super::extract::{Caller, Id, Json, Query, RawBody, Staff};
use super::{AppState, PageParams, next_cursor};
use crate::domain::{
    HistoryEntry, NewOrder, NewShippingAddress, Order, OrderDetails, OrderLine, OrderStatus,
    UserRole, parse_rfc3339,
};
use crate::orders::{OrderFilter, PlacedOrder, TransitionInput};
use crate::payments::{OpenPayment, OpenedPayment};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(place_order, list_orders))
        .routes(routes!(get_order))
        .routes(routes!(order_history))
        .routes(routes!(cancel_order))
        .routes(routes!(ship_order))
        .routes(routes!(complete_order))
        .routes(routes!(request_refund))
        .routes(routes!(approve_refund))
        .routes(routes!(reject_refund))
        .routes(routes!(open_payment))
        .routes(routes!(correct_shipping_address))
        .routes(routes!(retry_wechat_shipping))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<OrderLine>,
    #[schema(
        max_length = 1000,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"
    )]
    pub note: Option<String>,
    /// The customer the order is for: staff only, and required for staff.
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "crate::domain::whole::option")]
    pub user_id: Option<i64>,
    /// Where it ships to; kept on the order as given. Required when the shop sets
    /// `require_shipping_address`.
    pub shipping_address: Option<NewShippingAddress>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderPage {
    pub items: Vec<Order>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    #[schema(
        max_length = 1000,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"
    )]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipRequest {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub carrier: String,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub tracking_number: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// Only orders in this status.
    #[param(value_type = Option<OrderStatus>)]
    pub status: Option<String>,
    /// Only orders created before this instant (RFC 3339).
    #[param(format = DateTime)]
    pub created_before: Option<String>,
    /// Only orders created after this instant (RFC 3339).
    #[param(format = DateTime)]
    pub created_after: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    pub cursor: Option<String>,
}

/// Place an order. Stock is reserved at once; the first payment is opened. With an
/// `Idempotency-Key` header, a retry of the same request returns the same order.
#[utoipa::path(post, path = "/orders", tag = "orders", request_body = OrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 200,
        pattern = "^[!-~]{1,200}$",
        description = "Makes retries safe: 1 to 200 visible ASCII characters (no spaces). A retry with the same key and the same body returns the first answer's order (200); the same key with another body is refused (422 `idempotency_key_reused`).")),
    security(("bearer" = [])),
    responses((status = 201, body = PlacedOrder), (status = 200, body = PlacedOrder,
        description = "A retry with the same Idempotency-Key"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn place_order(
    State(state): State<AppState>,
    Caller(who): Caller,
    headers: HeaderMap,
    body: RawBody,
) -> Result<(StatusCode, Json<PlacedOrder>), ApiError> {
    let user = who.user;
    let request: OrderRequest = body.parse()?;
    let user_id = match (user.role, request.user_id) {
        (UserRole::Customer, None) => user.id,
        (UserRole::Customer, Some(id)) => id,
        (UserRole::Staff, Some(id)) => id,
        (UserRole::Staff, None) => {
            return Err(ApiError::validation(
                "user_id",
                "staff must name the customer in user_id",
            ));
        }
    };
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::validation("Idempotency-Key", "must be visible ASCII"))?,
        ),
    };
    let new = NewOrder {
        user_id,
        items: request.items,
        note: request.note,
        shipping_address: request.shipping_address,
    };
    let (placed, replayed) = state.ordo.place_order_once(user.actor(), &new, key).await?;
    let status = if replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(placed)))
}

/// List orders, newest first: a customer's own, or (staff) everyone's.
#[utoipa::path(get, path = "/orders", tag = "orders", params(OrderQuery),
    security(("bearer" = [])),
    responses((status = 200, body = OrderPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_orders(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<OrderQuery>,
) -> Result<Json<OrderPage>, ApiError> {
    let page = PageParams {
        limit: query.limit,
        cursor: query.cursor.clone(),
    };
    let limit = page.limit()?;
    let time = |field: &str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|s| parse_rfc3339(s).map_err(|e| ApiError::bad_request(field, e)))
            .transpose()
    };
    let status = query
        .status
        .as_deref()
        .map(|s| {
            s.parse::<OrderStatus>().map_err(|_| {
                ApiError::bad_request(
                    "status",
                    format!(
                        "must be one of: {}",
                        OrderStatus::ALL.map(|s| s.as_str()).join(", ")
                    ),
                )
            })
        })
        .transpose()?;
    let filter = OrderFilter {
        user_id: None,
        status,
        created_before: time("created_before", &query.created_before)?,
        created_after: time("created_after", &query.created_after)?,
        before_id: page.cursor()?,
        limit,
    };
    let items = state.ordo.orders(caller.actor(), filter).await?;
    let next_cursor = next_cursor(&items, limit, |o| o.id);
    Ok(Json(OrderPage { items, next_cursor }))
}

/// One order with its items and payments (its owner or staff).
#[utoipa::path(get, path = "/orders/{id}", tag = "orders", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = OrderDetails), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<OrderDetails>, ApiError> {
    Ok(Json(state.ordo.order(caller.actor(), id).await?))
}

/// An order's status history, oldest first.
#[utoipa::path(get, path = "/orders/{id}/history", tag = "orders", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Vec<HistoryEntry>), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn order_history(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    Ok(Json(state.ordo.order_history(caller.actor(), id).await?))
}

/// A move: who may ask is settled first (403, or 404 for a stranger's order), then the
/// body is read, then the move is made under the order's lock (409 if its status does not
/// allow it).
async fn move_order(
    state: &AppState,
    caller: &Caller,
    id: i64,
    to: OrderStatus,
    input: impl FnOnce() -> Result<TransitionInput, ApiError>,
) -> Result<Json<OrderDetails>, ApiError> {
    let actor = caller.actor();
    state.ordo.authorize_move(actor, id, to).await?;
    let input = input()?;
    state.ordo.transition(actor, id, to, &input).await?;
    Ok(Json(state.ordo.order(actor, id).await?))
}

fn reason(body: &RawBody) -> Result<TransitionInput, ApiError> {
    let body: Option<ReasonRequest> = body.parse_optional()?;
    Ok(TransitionInput {
        note: body.and_then(|b| b.reason),
        ..TransitionInput::default()
    })
}

/// Cancel an order: its owner while pending, staff while pending or paid. Stock is
/// released; a payment already taken is flagged for refund.
#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", params(("id" = i64, Path)),
    request_body = Option<ReasonRequest>, security(("bearer" = [])),
    responses((status = 200, body = OrderDetails), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn cancel_order(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    body: RawBody,
) -> Result<Json<OrderDetails>, ApiError> {
    move_order(&state, &caller, id, OrderStatus::Cancelled, || {
        reason(&body)
    })
    .await
}

/// Ship a paid order (staff).
#[utoipa::path(post, path = "/orders/{id}/ship", tag = "orders", params(("id" = i64, Path)),
    request_body = ShipRequest, security(("bearer" = [])),
    responses((status = 200, body = OrderDetails), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn ship_order(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
    body: RawBody,
) -> Result<Json<OrderDetails>, ApiError> {
    let caller = Caller(staff.0);
    move_order(&state, &caller, id, OrderStatus::Shipped, || {
        let ship: ShipRequest = body.parse()?;
        Ok(TransitionInput {
            note: Some(format!("{} {}", ship.carrier, ship.tracking_number)),
            carrier: Some(ship.carrier),
            tracking_number: Some(ship.tracking_number),
            payment_id: None,
        })
    })
    .await
}

/// Confirm receipt of a shipped order (owner or staff).
#[utoipa::path(post, path = "/orders/{id}/complete", tag = "orders", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = OrderDetails), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn complete_order(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<OrderDetails>, ApiError> {
    move_order(&state, &caller, id, OrderStatus::Completed, || {
        Ok(TransitionInput::default())
    })
    .await
}

/// Ask for a refund of a paid, shipped or completed order (owner or staff).
#[utoipa::path(post, path = "/orders/{id}/refund", tag = "orders", params(("id" = i64, Path)),
    request_body = Option<ReasonRequest>, security(("bearer" = [])),
    responses((status = 200, body = OrderDetails), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn request_refund(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    body: RawBody,
) -> Result<Json<OrderDetails>, ApiError> {
    move_order(&state, &caller, id, OrderStatus::Refunding, || {
        reason(&body)
    })
    .await
}

/// Approve a refund (staff): stock goes back, the payment is refunded.
#[utoipa::path(post, path = "/orders/{id}/refund/approve", tag = "orders",
    params(("id" = i64, Path)), request_body = Option<ReasonRequest>, security(("bearer" = [])),
    responses((status = 200, body = OrderDetails), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn approve_refund(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    body: RawBody,
) -> Result<Json<OrderDetails>, ApiError> {
    move_order(&state, &caller, id, OrderStatus::Refunded, || reason(&body)).await
}

/// Reject a refund (staff): the order goes back to paid.
#[utoipa::path(post, path = "/orders/{id}/refund/reject", tag = "orders",
    params(("id" = i64, Path)), request_body = Option<ReasonRequest>, security(("bearer" = [])),
    responses((status = 200, body = OrderDetails), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn reject_refund(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    body: RawBody,
) -> Result<Json<OrderDetails>, ApiError> {
    move_order(&state, &caller, id, OrderStatus::Paid, || reason(&body)).await
}

/// The order's open payment, or a new one if the last expired or failed (owner, pending
/// orders within their unpaid timeout), opened at the asked provider (or the shop's
/// default): the answer's `client` is what the front end needs to pay. A payment open at
/// another provider is closed there first. If the provider cannot be reached or refuses,
/// the order stands and the answer (502 `provider_error`) says why; calling again tries
/// again.
#[utoipa::path(post, path = "/orders/{id}/payments", tag = "payments",
    params(("id" = i64, Path)), request_body = Option<OpenPayment>, security(("bearer" = [])),
    responses((status = 200, body = OpenedPayment), (status = "4XX", body = Problem, content_type = "application/problem+json"),
        (status = 502, body = Problem, content_type = "application/problem+json",
            description = "The payment provider did not open the payment (unreachable, an error, an answer that does not verify): the order stands; try again")))]
async fn open_payment(
    State(state): State<AppState>,
    caller: Caller,
    Id(id): Id,
    body: RawBody,
) -> Result<Json<OpenedPayment>, ApiError> {
    state.ordo.authorize_payment(caller.actor(), id).await?;
    let request: OpenPayment = body.parse_optional()?.unwrap_or_default();
    Ok(Json(
        state
            .ordo
            .open_payment(caller.actor(), id, &request)
            .await?,
    ))
}

/// Correct where an order ships to (staff), until it ships: pending or paid orders only,
/// 409 after that. Audited; receivers get `order.address_changed`.
#[utoipa::path(put, path = "/orders/{id}/shipping-address", tag = "orders",
    params(("id" = i64, Path)), request_body = NewShippingAddress, security(("bearer" = [])),
    responses((status = 200, body = OrderDetails), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn correct_shipping_address(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
    body: RawBody,
) -> Result<Json<OrderDetails>, ApiError> {
    let address: NewShippingAddress = body.parse()?;
    Ok(Json(
        state
            .ordo
            .correct_shipping_address(staff.actor(), id, &address)
            .await?,
    ))
}

/// Upload a shipped order's shipping information to WeChat again now (staff): after
/// WeChat refused it, or ordo gave up retrying. Audited. 404 when the order has no
/// upload; 409 when WeChat already accepted it or an attempt is under way.
#[utoipa::path(post, path = "/orders/{id}/wechat-shipping/retry", tag = "orders",
    params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = crate::payments::shipping::ShippingUpload), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn retry_wechat_shipping(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
) -> Result<Json<crate::payments::shipping::ShippingUpload>, ApiError> {
    Ok(Json(
        state.ordo.retry_shipping_upload(staff.actor(), id).await?,
    ))
}
