//! `/webhook-endpoints` and `/webhook-deliveries` (staff): subscribe endpoints, rotate their
//! secrets, replay a range of events, list deliveries with their attempts, redeliver.

use super::error::{ApiError, Problem};
use super::extract::{Id, Json, Query, RawBody, Staff};
use super::{AppState, next_cursor};
use crate::domain::parse_rfc3339;
use crate::events::EventType;
use crate::events::endpoints::{Delivery, DeliveryFilter, Endpoint, EndpointPatch, NewEndpoint};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, update_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(replay))
        .routes(routes!(list_deliveries))
        .routes(routes!(redeliver))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointRequest {
    /// Where events are posted. It must be `https` and its host must resolve, to public
    /// addresses only: not loopback, private or link-local (checked when the endpoint is
    /// saved and again at each delivery). A server run with `webhook_allow_private = true`
    /// (development) also takes `http` and private addresses; this document's pattern says
    /// which the server it came from takes.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "^https?://((([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\\.)*[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?)|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}))(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?(\\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$"
    )]
    pub url: String,
    /// The types it receives; omitted: every type.
    #[schema(min_items = 1)]
    pub event_types: Option<Vec<EventType>>,
    #[schema(
        max_length = 500,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"
    )]
    pub description: Option<String>,
    /// Deliver one order's events in `seq` order (each waits for the one before).
    #[serde(default)]
    pub ordered: bool,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointChange {
    /// A new address, with the same rules as when the endpoint was made.
    #[schema(
        min_length = 1,
        max_length = 2000,
        pattern = "^https?://((([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?\\.)*[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?)|((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(\\.(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}))(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?(\\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$"
    )]
    pub url: Option<String>,
    /// The types it receives; `null`: every type.
    #[serde(default, deserialize_with = "some_or_null")]
    #[schema(value_type = Option<Vec<EventType>>, min_items = 1)]
    pub event_types: Option<Option<Vec<EventType>>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "some_or_null")]
    #[schema(value_type = Option<String>, max_length = 500, pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$")]
    pub description: Option<Option<String>>,
    pub enabled: Option<bool>,
    pub ordered: Option<bool>,
}

/// A present field (even `null`) becomes `Some`; an absent one stays `None`.
fn some_or_null<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// An endpoint with its secret: answered only when it is made and when it is rotated.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: Endpoint,
    /// `whsec_…`: verify signatures with it. Shown only here.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub items: Vec<Endpoint>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// From this instant (RFC 3339), inclusive.
    #[schema(format = DateTime)]
    pub since: String,
    /// To this instant (RFC 3339), exclusive; after `since`.
    #[schema(format = DateTime)]
    pub until: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayResult {
    /// Events delivered again (at most 100,000 per replay).
    pub events: u64,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
    Dead,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Succeeded => "succeeded",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Dead => "dead",
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    #[param(minimum = 1)]
    pub endpoint_id: Option<i64>,
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<EventType>,
    #[param(minimum = 1)]
    pub order_id: Option<i64>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    pub next_cursor: Option<String>,
}

fn type_names(types: Option<Vec<EventType>>) -> Option<Vec<String>> {
    types.map(|t| t.into_iter().map(|t| t.as_str().to_owned()).collect())
}

/// Subscribe a webhook endpoint (staff). The answer carries its secret, shown only here.
#[utoipa::path(post, path = "/webhook-endpoints", tag = "webhooks", request_body = EndpointRequest,
    security(("bearer" = [])),
    responses((status = 201, body = EndpointWithSecret), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_endpoint(
    State(state): State<AppState>,
    staff: Staff,
    body: RawBody,
) -> Result<(StatusCode, Json<EndpointWithSecret>), ApiError> {
    let request: EndpointRequest = body.parse()?;
    let (endpoint, secret) = state
        .ordo
        .create_endpoint(
            staff.actor(),
            &NewEndpoint {
                url: request.url,
                event_types: type_names(request.event_types),
                description: request.description,
                ordered: request.ordered,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(EndpointWithSecret { endpoint, secret }),
    ))
}

/// The webhook endpoints (staff), and the broker's (kind `amqp`) when events are published
/// to one.
#[utoipa::path(get, path = "/webhook-endpoints", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = EndpointList), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_endpoints(
    State(state): State<AppState>,
    staff: Staff,
) -> Result<Json<EndpointList>, ApiError> {
    Ok(Json(EndpointList {
        items: state.ordo.endpoints(staff.actor()).await?,
    }))
}

/// One endpoint (staff).
#[utoipa::path(get, path = "/webhook-endpoints/{id}", tag = "webhooks", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Endpoint), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_endpoint(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
) -> Result<Json<Endpoint>, ApiError> {
    Ok(Json(state.ordo.endpoint(staff.actor(), id).await?))
}

/// Change an endpoint (staff): `url`, `event_types`, `enabled`, `description`, `ordered`.
#[utoipa::path(patch, path = "/webhook-endpoints/{id}", tag = "webhooks", params(("id" = i64, Path)),
    request_body = EndpointChange, security(("bearer" = [])),
    responses((status = 200, body = Endpoint), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn update_endpoint(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
    body: RawBody,
) -> Result<Json<Endpoint>, ApiError> {
    let change: EndpointChange = body.parse()?;
    let patch = EndpointPatch {
        url: change.url,
        event_types: change.event_types.map(type_names),
        description: change.description,
        enabled: change.enabled,
        ordered: change.ordered,
    };
    Ok(Json(
        state
            .ordo
            .update_endpoint(staff.actor(), id, &patch)
            .await?,
    ))
}

/// Delete an endpoint (staff): nothing more is delivered to it.
#[utoipa::path(delete, path = "/webhook-endpoints/{id}", tag = "webhooks", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 204, description = "Deleted"), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn delete_endpoint(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    state.ordo.delete_endpoint(staff.actor(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new secret (staff), shown only here; the old one keeps signing for 24 hours, so each
/// delivery meanwhile carries both signatures.
#[utoipa::path(post, path = "/webhook-endpoints/{id}/rotate-secret", tag = "webhooks",
    params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = EndpointWithSecret), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn rotate_secret(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
) -> Result<Json<EndpointWithSecret>, ApiError> {
    let (endpoint, secret) = state.ordo.rotate_endpoint_secret(staff.actor(), id).await?;
    Ok(Json(EndpointWithSecret { endpoint, secret }))
}

/// Deliver again every event written in `[since, until)` that the endpoint receives
/// (staff), with their original ids.
#[utoipa::path(post, path = "/webhook-endpoints/{id}/replay", tag = "webhooks",
    params(("id" = i64, Path)), request_body = ReplayRequest, security(("bearer" = [])),
    responses((status = 202, body = ReplayResult), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn replay(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
    body: RawBody,
) -> Result<(StatusCode, Json<ReplayResult>), ApiError> {
    let request: ReplayRequest = body.parse()?;
    let since = parse_rfc3339(&request.since).map_err(|e| ApiError::validation("since", e))?;
    let until = parse_rfc3339(&request.until).map_err(|e| ApiError::validation("until", e))?;
    let events = state
        .ordo
        .replay_events(staff.actor(), id, since, until)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(ReplayResult { events })))
}

/// Deliveries, newest first, each with its attempts (time, HTTP status, latency, error, the
/// first 1 KiB of the answer) (staff).
#[utoipa::path(get, path = "/webhook-deliveries", tag = "webhooks", params(DeliveryQuery),
    security(("bearer" = [])),
    responses((status = 200, body = DeliveryPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_deliveries(
    State(state): State<AppState>,
    staff: Staff,
    Query(query): Query<DeliveryQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    let page = super::PageParams {
        limit: query.limit,
        cursor: query.cursor.clone(),
    };
    let limit = page.limit()?;
    for (field, value) in [
        ("endpoint_id", query.endpoint_id),
        ("order_id", query.order_id),
    ] {
        if value.is_some_and(|id| id < 1) {
            return Err(ApiError::bad_request(field, "must be a positive id"));
        }
    }
    let filter = DeliveryFilter {
        endpoint_id: query.endpoint_id,
        status: query.status.map(|s| s.as_str().to_owned()),
        event_type: query.event_type.map(|t| t.as_str().to_owned()),
        order_id: query.order_id,
        before_id: page.cursor()?,
        limit,
    };
    let items = state.ordo.deliveries(staff.actor(), &filter).await?;
    let next_cursor = next_cursor(&items, limit, |d| d.id);
    Ok(Json(DeliveryPage { items, next_cursor }))
}

/// Try a delivery again now (staff), with the same `webhook-id`. 409 if its endpoint was
/// deleted or disabled, or an attempt is in flight.
#[utoipa::path(post, path = "/webhook-deliveries/{id}/redeliver", tag = "webhooks",
    params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 202, body = Delivery), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn redeliver(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
) -> Result<(StatusCode, Json<Delivery>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(state.ordo.redeliver(staff.actor(), id).await?),
    ))
}
