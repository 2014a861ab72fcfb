//! The sweep: a dry-run preview of what the unpaid-order sweep would cancel now (the first
//! orders, units per product over the whole due set), "run now" that runs only while the
//! due set is still the previewed one (otherwise the fresh preview is shown), and the last
//! runs.

use super::i18n::{Texts, fill};
use super::session::Console;
use super::{Chrome, Nav, PageResult, render_with};
use crate::domain::format_rfc3339;
use crate::sweep::{DueFingerprint, PREVIEW_ORDERS, PreviewedRun, SweepPreview, SweepTrigger};
use askama::Template;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};

struct DueRow {
    id: i64,
    number: String,
    created: String,
    created_iso: String,
    age: String,
    units: String,
}

struct UnitsRow {
    id: i64,
    product: String,
    units: String,
}

struct RunRow {
    started: String,
    trigger: &'static str,
    actor: String,
    state: &'static str,
    dry_run: bool,
    found: String,
    cancelled: String,
    units: String,
    duration: String,
    queried: String,
    found_paid: String,
    closed: String,
    deferred: String,
}

#[derive(Template)]
#[template(path = "console/sweep.html")]
struct Page {
    c: Chrome,
    intro: String,
    would_cancel: String,
    orders_heading: String,
    orders: Vec<DueRow>,
    units: Vec<UnitsRow>,
    fingerprint: DueFingerprint,
    runs: Vec<RunRow>,
}

fn trigger_label(t: &'static Texts, trigger: &str) -> &'static str {
    match trigger {
        "scheduler" => t.trigger_scheduler,
        "cli" => t.trigger_cli,
        "api" => t.trigger_api,
        _ => t.trigger_console,
    }
}

fn state_label(t: &'static Texts, state: &str) -> &'static str {
    match state {
        "running" => t.run_running,
        "finished" => t.run_finished,
        "stopped" => t.run_stopped,
        _ => t.run_interrupted,
    }
}

fn timeout_minutes(console: &Console) -> u32 {
    (console.ordo.policy.unpaid_timeout_ms / 60_000).clamp(0, i64::from(u32::MAX)) as u32
}

async fn show(
    console: &Console,
    preview: SweepPreview,
    notice: Option<String>,
    error: Option<String>,
    status: StatusCode,
) -> PageResult {
    let t = console.t();
    let lang = console.lang;
    let runs = console
        .ordo
        .sweep_runs(console.actor(), None, 10)
        .await
        .map_err(|e| console.fail(e))?;
    let mut c = console.chrome(Nav::Sweep);
    c.notice = notice;
    c.error = error;
    let page = Page {
        c,
        intro: fill(
            t.sweep_intro,
            &[
                ("minutes", &preview.timeout_minutes.to_string()),
                ("cutoff", &lang.datetime(preview.cutoff)),
            ],
        ),
        would_cancel: fill(
            t.would_cancel,
            &[
                ("count", &lang.number(preview.fingerprint.count)),
                ("units", &lang.number(preview.total_units())),
            ],
        ),
        orders_heading: fill(t.due_orders_first, &[("n", &PREVIEW_ORDERS.to_string())]),
        orders: preview
            .orders
            .iter()
            .map(|o| DueRow {
                id: o.id,
                number: o.number.clone(),
                created: lang.datetime(o.created_at),
                created_iso: format_rfc3339(o.created_at),
                age: lang.span(preview.now - o.created_at),
                units: lang.number(o.units),
            })
            .collect(),
        units: preview
            .units
            .iter()
            .map(|(id, sku, name, units)| UnitsRow {
                id: *id,
                product: format!("{sku} · {name}"),
                units: lang.number(*units),
            })
            .collect(),
        fingerprint: preview.fingerprint,
        runs: runs
            .iter()
            .map(|r| RunRow {
                started: lang.datetime(r.started_at),
                trigger: trigger_label(t, &r.trigger),
                actor: r.actor.clone(),
                state: state_label(t, &r.state),
                dry_run: r.dry_run,
                found: lang.number(r.found),
                cancelled: lang.number(r.cancelled),
                units: lang.number(r.units_released),
                duration: format!("{} ms", lang.number(r.duration_ms)),
                queried: lang.number(r.queried),
                found_paid: lang.number(r.found_paid),
                closed: lang.number(r.closed),
                deferred: lang.number(r.deferred),
            })
            .collect(),
    };
    Ok(render_with(status, &page))
}

#[derive(serde::Deserialize)]
pub struct RanQuery {
    run: Option<i64>,
}

pub async fn page(console: Console, Query(query): Query<RanQuery>) -> PageResult {
    let preview = console
        .ordo
        .preview_sweep(console.actor(), timeout_minutes(&console))
        .await
        .map_err(|e| console.fail(e))?;
    let notice = match query.run {
        Some(id) => {
            let run = console
                .ordo
                .sweep_run(console.actor(), id)
                .await
                .map_err(|e| console.fail(e))?;
            let lang = console.lang;
            Some(fill(
                console.t().sweep_ran,
                &[
                    ("cancelled", &lang.number(run.cancelled)),
                    ("units", &lang.number(run.units_released)),
                    ("skipped", &lang.number(run.skipped)),
                    ("errors", &lang.number(run.errors)),
                ],
            ))
        }
        None => None,
    };
    show(&console, preview, notice, None, StatusCode::OK).await
}

/// The previewed fingerprint, as the form carries it.
#[derive(serde::Deserialize)]
pub struct RunForm {
    count: i64,
    min_id: i64,
    max_id: i64,
    id_sum: i64,
}

pub async fn run(console: Console, axum::Form(form): axum::Form<RunForm>) -> PageResult {
    let previewed = DueFingerprint {
        count: form.count,
        min_id: form.min_id,
        max_id: form.max_id,
        id_sum: form.id_sum,
    };
    let outcome = console
        .ordo
        .run_previewed_sweep(
            console.actor(),
            SweepTrigger::Console,
            timeout_minutes(&console),
            console.state.sweep_batch_size,
            previewed,
        )
        .await
        .map_err(|e| console.fail(e))?;
    match outcome {
        PreviewedRun::Ran(ran) => {
            Ok(Redirect::to(&format!("/console/sweep?run={}", ran.0.id)).into_response())
        }
        PreviewedRun::Changed(fresh) => {
            let message = console.t().preview_changed.to_owned();
            show(&console, fresh, None, Some(message), StatusCode::CONFLICT).await
        }
    }
}
