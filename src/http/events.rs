//! `/events`: the event log, oldest first, to reconcile with what webhooks delivered (staff).

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::{Json, Query, Staff};
use crate::events::{Event, EventFilter, EventType};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_events))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Events after this one: an event id (`evt_…`) or a `position`; `next_cursor` of the
    /// previous page.
    #[param(pattern = "^(evt_[0-9a-z]{26}|[0-9]{1,18})$")]
    pub after: Option<String>,
    /// Only this type.
    #[serde(rename = "type")]
    #[param(rename = "type", value_type = Option<EventType>)]
    pub kind: Option<String>,
    /// Only this order's events.
    #[param(minimum = 1)]
    pub order_id: Option<i64>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub items: Vec<Event>,
    /// The `after` of the next page: the last event's position (also when the page was not
    /// full, to poll from).
    pub next_cursor: Option<String>,
}

/// The event log, oldest first (staff): every event ordo wrote, to reconcile.
#[utoipa::path(get, path = "/events", tag = "events", params(EventQuery),
    security(("bearer" = [])),
    responses((status = 200, body = EventPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_events(
    State(state): State<AppState>,
    staff: Staff,
    Query(query): Query<EventQuery>,
) -> Result<Json<EventPage>, ApiError> {
    if query.order_id.is_some_and(|id| id < 1) {
        return Err(ApiError::bad_request(
            "order_id",
            "must be a positive order id",
        ));
    }
    let limit = match query.limit {
        None => 50,
        Some(l) if (1..=200).contains(&l) => l,
        Some(_) => return Err(ApiError::bad_request("limit", "must be between 1 and 200")),
    };
    let after =
        match query.after.as_deref() {
            None => 0,
            Some(id) if id.starts_with("evt_") => state.ordo.event_position(id).await?,
            Some(n) => n.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                ApiError::bad_request("after", "an event id (evt_…) or a position")
            })?,
        };
    let kind = query
        .kind
        .as_deref()
        .map(|t| EventType::parse_field("type", t))
        .transpose()
        .map_err(|e| match e {
            crate::Error::Validation { field, message } => ApiError::bad_request(&field, message),
            other => other.into(),
        })?;
    let items = state
        .ordo
        .events(
            staff.actor(),
            &EventFilter {
                after,
                kind,
                order_id: query.order_id,
                limit,
            },
        )
        .await?;
    let next_cursor = items.last().map(|e| e.position.to_string()).or(query.after);
    Ok(Json(EventPage { items, next_cursor }))
}
