//! `/sweeps`: run or preview the unpaid-order sweep, and the record of every run (staff).
//! A real run answers 202 at once and goes on in the background of this process; a dry run
//! answers with what it would cancel, at most `limit` orders.

use super::error::{ApiError, Problem};
use super::extract::{Id, Json, Query, RawBody, Staff};
use super::{AppState, PageParams, next_cursor};
use crate::domain::{Millis, time::serde_rfc3339};
use crate::sweep::{OrderOutcome, SweepRequest, SweepRun, SweepSummary, SweepTrigger};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Orders a dry run looks at when no `limit` is given.
const DRY_RUN_LIMIT: u64 = 1000;
/// Most orders a dry run's answer lists (its summary counts them all).
const DRY_RUN_LISTED: usize = 10_000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(run_sweep, list_runs))
        .routes(routes!(get_run))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SweepParams {
    /// List what would be cancelled; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Cancel orders unpaid for at least this many minutes. Default: the configured
    /// unpaid timeout.
    #[schema(minimum = 0, maximum = 525_600)]
    #[serde(default, deserialize_with = "crate::domain::whole::option")]
    pub timeout_minutes: Option<u32>,
    /// At most this many orders (a dry run: default 1000; it lists the first 10,000).
    #[schema(minimum = 1, maximum = 10_000_000)]
    #[serde(default, deserialize_with = "crate::domain::whole::option")]
    pub limit: Option<u64>,
}

/// An order a dry run would cancel.
#[derive(Debug, Serialize, ToSchema)]
pub struct DueOrderView {
    pub id: i64,
    pub number: String,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
    pub units: i64,
}

/// What a dry run would do: its summary, its run's id, and the orders.
#[derive(Debug, Serialize, ToSchema)]
pub struct SweepPreview {
    #[serde(flatten)]
    pub summary: SweepSummary,
    /// The run's record: `GET /sweeps/{run_id}`.
    pub run_id: i64,
    /// The orders it would cancel, oldest first (at most `limit`, and at most 10,000).
    pub orders: Vec<DueOrderView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SweepRunPage {
    pub items: Vec<SweepRun>,
    pub next_cursor: Option<String>,
}

/// Run the sweep (staff): cancels orders left unpaid past the timeout. A real run answers
/// 202 with the run's record and `Location: /api/v1/sweeps/{id}`, and goes on in the
/// background; `dry_run` answers 200 with what would be cancelled, changing nothing.
#[utoipa::path(post, path = "/sweeps", tag = "sweeps", request_body = Option<SweepParams>,
    security(("bearer" = [])),
    responses((status = 202, body = SweepRun, description = "Started; follow Location"),
        (status = 200, body = SweepPreview, description = "A dry run's preview"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn run_sweep(
    State(state): State<AppState>,
    staff: Staff,
    body: RawBody,
) -> Result<Response, ApiError> {
    let params: SweepParams = body.parse_optional()?.unwrap_or_default();
    if params.timeout_minutes.is_some_and(|m| m > 525_600) {
        return Err(ApiError::validation(
            "timeout_minutes",
            "at most 525600 (a year)",
        ));
    }
    if params.limit == Some(0) || params.limit.is_some_and(|l| l > 10_000_000) {
        return Err(ApiError::validation("limit", "between 1 and 10000000"));
    }
    let request = SweepRequest {
        timeout_minutes: params
            .timeout_minutes
            .unwrap_or((state.ordo.policy.unpaid_timeout_ms / 60_000) as u32),
        dry_run: params.dry_run,
        batch_size: state.sweep_batch_size,
        limit: if params.dry_run {
            Some(params.limit.unwrap_or(DRY_RUN_LIMIT))
        } else {
            params.limit
        },
        now: None,
    };
    let actor = staff.actor();
    if request.dry_run {
        let mut orders = Vec::new();
        let (run, summary) = state
            .ordo
            .run_sweep(
                actor,
                SweepTrigger::Api,
                &request,
                &std::sync::atomic::AtomicBool::new(false),
                |order, outcome| {
                    if *outcome == OrderOutcome::WouldCancel && orders.len() < DRY_RUN_LISTED {
                        orders.push(DueOrderView {
                            id: order.id,
                            number: order.number.clone(),
                            created_at: order.created_at,
                            units: order.units,
                        });
                    }
                },
            )
            .await?;
        return Ok(Json(SweepPreview {
            run_id: run.id,
            summary,
            orders,
        })
        .into_response());
    }
    let run = state
        .ordo
        .start_sweep_run(actor, SweepTrigger::Api, &request)
        .await?;
    let ordo = state.ordo.clone();
    let jobs = state.jobs.clone();
    let run_id = run.id;
    state.jobs.spawn(async move {
        ordo.finish_sweep_run(run_id, &request, jobs.shutdown().flag(), |_, _| {})
            .await;
    });
    let mut response = (StatusCode::ACCEPTED, Json(run)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/sweeps/{run_id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Sweep runs, newest first (staff): every run by the scheduler, the CLI, the API and the
/// console, with its trigger, who started it and its summary.
#[utoipa::path(get, path = "/sweeps", tag = "sweeps", params(PageParams),
    security(("bearer" = [])),
    responses((status = 200, body = SweepRunPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_runs(
    State(state): State<AppState>,
    staff: Staff,
    Query(page): Query<PageParams>,
) -> Result<Json<SweepRunPage>, ApiError> {
    let limit = page.limit()?;
    let items = state
        .ordo
        .sweep_runs(staff.actor(), page.cursor()?, limit)
        .await?;
    let next_cursor = next_cursor(&items, limit, |r| r.id);
    Ok(Json(SweepRunPage { items, next_cursor }))
}

/// One sweep run (staff): while it runs, what it has done so far.
#[utoipa::path(get, path = "/sweeps/{id}", tag = "sweeps", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = SweepRun), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_run(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
) -> Result<Json<SweepRun>, ApiError> {
    Ok(Json(state.ordo.sweep_run(staff.actor(), id).await?))
}
