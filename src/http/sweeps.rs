//! `/sweeps`: run or preview the unpaid-order sweep (staff).

use super::AppState;
use super::error::{ApiError, Problem};
use super::extract::{Caller, OptionalJson};
use crate::domain::UserRole;
use crate::error::Error;
use crate::sweep::{SweepRequest, SweepSummary};
use axum::extract::State;
use serde::Deserialize;
use std::sync::atomic::AtomicBool;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(run_sweep))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SweepParams {
    /// List what would be cancelled; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Default: the configured unpaid timeout.
    pub timeout_minutes: Option<u32>,
    /// At most this many orders.
    pub limit: Option<u64>,
}

/// Cancel (or, with dry_run, preview) orders left unpaid past the timeout (staff).
#[utoipa::path(post, path = "/sweeps", tag = "sweeps", request_body = Option<SweepParams>,
    security(("bearer" = [])),
    responses((status = 200, body = SweepSummary), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn run_sweep(
    State(state): State<AppState>,
    Caller(user): Caller,
    OptionalJson(params): OptionalJson<SweepParams>,
) -> Result<axum::Json<SweepSummary>, ApiError> {
    if user.role != UserRole::Staff {
        return Err(Error::Forbidden {
            reason: "only staff run sweeps".to_owned(),
        }
        .into());
    }
    let params = params.unwrap_or_default();
    if params.limit == Some(0) {
        return Err(ApiError::validation("limit", "limit must be at least 1"));
    }
    let request = SweepRequest {
        timeout_minutes: params
            .timeout_minutes
            .unwrap_or((state.ordo.policy.unpaid_timeout_ms / 60_000) as u32),
        dry_run: params.dry_run,
        batch_size: state.sweep_batch_size,
        limit: params.limit,
    };
    let summary = state
        .ordo
        .cancel_unpaid_orders(&request, &AtomicBool::new(false), |_, _| {})
        .await;
    Ok(axum::Json(summary))
}
