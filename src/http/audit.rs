//! `/audit-log`: every staff and operator action, newest first (staff).

use super::error::{ApiError, Problem};
use super::extract::{Json, Query, Staff};
use super::{AppState, PageParams, next_cursor};
use crate::audit::{AuditEntry, AuditFilter};
use crate::domain::parse_rfc3339;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(audit_log))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this actor (`user:ID`, `cli:LOGIN`).
    #[param(max_length = 200)]
    pub actor: Option<String>,
    /// Only this action, such as `stock.adjust`.
    #[param(max_length = 100)]
    pub action: Option<String>,
    /// Only objects of this type (product, order, payment, token, sweep_run,
    /// webhook_endpoint, webhook_delivery, session).
    #[param(max_length = 100)]
    pub object_type: Option<String>,
    /// Only this object (with `object_type`).
    #[param(max_length = 200)]
    pub object_id: Option<String>,
    /// Only what this request did.
    #[param(max_length = 100)]
    pub request_id: Option<String>,
    /// From this instant (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Before this instant (RFC 3339).
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

/// The audit log (staff): who did what to which object, when, in which request.
#[utoipa::path(get, path = "/audit-log", tag = "audit", params(AuditQuery),
    security(("bearer" = [])),
    responses((status = 200, body = AuditPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn audit_log(
    State(state): State<AppState>,
    staff: Staff,
    Query(query): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    for (field, value, max) in [
        ("actor", &query.actor, 200),
        ("action", &query.action, 100),
        ("object_type", &query.object_type, 100),
        ("object_id", &query.object_id, 200),
        ("request_id", &query.request_id, 100),
    ] {
        if value.as_ref().is_some_and(|v| v.chars().count() > max) {
            return Err(ApiError::bad_request(
                field,
                format!("at most {max} characters"),
            ));
        }
    }
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
    let filter = AuditFilter {
        actor: query.actor,
        action: query.action,
        object_type: query.object_type,
        object_id: query.object_id,
        request_id: query.request_id,
        since: time("since", &query.since)?,
        until: time("until", &query.until)?,
        before_id: page.cursor()?,
        limit,
    };
    let items = state.ordo.audit_log(staff.actor(), &filter).await?;
    let next_cursor = next_cursor(&items, limit, |e| e.id);
    Ok(Json(AuditPage { items, next_cursor }))
}
