//! Webhooks: the endpoints (add one; its signing secret is shown once), recent deliveries
//! with a status filter, and redelivery, through the same calls as the API.

use super::i18n::fill;
use super::orders::delivery_label;
use super::session::Console;
use super::{Chrome, Nav, PageResult, error_status, filled, next_page, render_with};
use crate::events::endpoints::{DELIVERY_STATUSES, DeliveryFilter, NewEndpoint};
use askama::Template;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};

const PAGE: i64 = 50;

struct EndpointRow {
    id: i64,
    url: String,
    description: String,
    types: String,
    enabled: &'static str,
    ordered: bool,
}

struct DeliveryRow {
    id: i64,
    endpoint_id: i64,
    event_type: String,
    order_id: Option<i64>,
    status: &'static str,
    attempts: i64,
    created: String,
    next: String,
}

struct StatusOption {
    value: &'static str,
    label: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "console/webhooks.html")]
struct Page {
    c: Chrome,
    endpoints: Vec<EndpointRow>,
    deliveries: Vec<DeliveryRow>,
    statuses: Vec<StatusOption>,
    next: Option<String>,
    secret: Option<String>,
    form: CreateForm,
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    before: Option<i64>,
    redelivered: Option<i64>,
}

pub async fn page(console: Console, Query(query): Query<ListQuery>) -> PageResult {
    let notice = query
        .redelivered
        .map(|id| fill(console.t().redelivered_notice, &[("id", &id.to_string())]));
    show(&console, &query, notice, None, None, CreateForm::default()).await
}

async fn show(
    console: &Console,
    query: &ListQuery,
    notice: Option<String>,
    error: Option<(StatusCode, String)>,
    secret: Option<String>,
    form: CreateForm,
) -> PageResult {
    let t = console.t();
    let lang = console.lang;
    let actor = console.actor();
    let endpoints = console
        .ordo
        .endpoints(actor)
        .await
        .map_err(|e| console.fail(e))?;
    let status = filled(&query.status)
        .filter(|s| DELIVERY_STATUSES.contains(s))
        .map(str::to_owned);
    let deliveries = console
        .ordo
        .deliveries(
            actor,
            &DeliveryFilter {
                status: status.clone(),
                before_id: query.before,
                limit: PAGE,
                ..DeliveryFilter::default()
            },
        )
        .await
        .map_err(|e| console.fail(e))?;
    let next = next_page(&deliveries, PAGE, |d| {
        format!(
            "/console/webhooks?before={}{}",
            d.id,
            status
                .as_deref()
                .map_or(String::new(), |s| format!("&status={s}"))
        )
    });
    let mut c = console.chrome(Nav::Webhooks);
    c.notice = notice;
    let code = c.refused(error);
    let current = status.clone().unwrap_or_default();
    let page = Page {
        c,
        endpoints: endpoints
            .into_iter()
            .map(|e| EndpointRow {
                id: e.id,
                url: e.url,
                description: e.description.unwrap_or_default(),
                types: e
                    .event_types
                    .map_or_else(|| t.all_types.to_owned(), |types| types.join(", ")),
                enabled: if e.enabled { t.yes } else { t.no },
                ordered: e.ordered,
            })
            .collect(),
        deliveries: deliveries
            .into_iter()
            .map(|d| DeliveryRow {
                id: d.id,
                endpoint_id: d.endpoint_id,
                event_type: d.event_type,
                order_id: d.order_id,
                status: delivery_label(t, &d.status),
                attempts: d.attempt_count,
                created: lang.datetime(d.created_at),
                next: d
                    .next_attempt_at
                    .map_or_else(String::new, |at| lang.datetime(at)),
            })
            .collect(),
        statuses: DELIVERY_STATUSES
            .into_iter()
            .map(|value| StatusOption {
                value,
                label: delivery_label(t, value),
                selected: current == value,
            })
            .collect(),
        next,
        secret,
        form,
    };
    Ok(render_with(code, &page))
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct CreateForm {
    url: Option<String>,
    description: Option<String>,
    event_types: Option<String>,
    ordered: Option<String>,
}

pub async fn create(console: Console, axum::Form(form): axum::Form<CreateForm>) -> PageResult {
    let new = NewEndpoint {
        url: filled(&form.url).unwrap_or("").to_owned(),
        event_types: filled(&form.event_types).map(|types| {
            types
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        }),
        description: filled(&form.description).map(str::to_owned),
        ordered: form.ordered.is_some(),
    };
    let query = ListQuery {
        status: None,
        before: None,
        redelivered: None,
    };
    match console.ordo.create_endpoint(console.actor(), &new).await {
        Ok((_, secret)) => {
            show(
                &console,
                &query,
                None,
                None,
                Some(secret),
                CreateForm::default(),
            )
            .await
        }
        Err(err) => {
            let error = (error_status(&err), console.error_text(&err));
            show(&console, &query, None, Some(error), None, form).await
        }
    }
}

pub async fn redeliver(console: Console, Path(id): Path<i64>) -> PageResult {
    match console.ordo.redeliver(console.actor(), id).await {
        Ok(_) => Ok(Redirect::to(&format!("/console/webhooks?redelivered={id}")).into_response()),
        Err(err) => {
            let error = (error_status(&err), console.error_text(&err));
            let query = ListQuery {
                status: None,
                before: None,
                redelivered: None,
            };
            show(
                &console,
                &query,
                None,
                Some(error),
                None,
                CreateForm::default(),
            )
            .await
        }
    }
}
