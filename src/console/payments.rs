//! Late payments: succeeded payments whose order had been cancelled, the queue of money to
//! give back. Once refunded through the provider, staff record its reference here
//! ([`crate::Ordo::settle_refund`]) and the payment leaves the queue.

use super::i18n::fill;
use super::session::Console;
use super::{Chrome, Nav, PageResult, error_status, filled, next_page, render_with};
use askama::Template;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};

const PAGE: i64 = 100;

struct Row {
    id: i64,
    order_id: i64,
    order: String,
    amount: String,
    paid: String,
    provider_ref: String,
    provider: &'static str,
    /// Manual payments are settled by hand; the others refund through their provider.
    manual: bool,
    refund: Option<String>,
    /// Whether staff may (re)send its refund to the provider now.
    refundable: bool,
    refund_button: String,
}

#[derive(Template)]
#[template(path = "console/late_payments.html")]
struct Page {
    c: Chrome,
    rows: Vec<Row>,
    next: Option<i64>,
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    after: Option<i64>,
    settled: Option<i64>,
}

pub async fn page(console: Console, Query(query): Query<ListQuery>) -> PageResult {
    let notice = query
        .settled
        .map(|id| fill(console.t().settled_notice, &[("id", &id.to_string())]));
    show(&console, query.after, notice, None).await
}

async fn show(
    console: &Console,
    after: Option<i64>,
    notice: Option<String>,
    error: Option<(StatusCode, String)>,
) -> PageResult {
    let lang = console.lang;
    let payments = console
        .ordo
        .payments_to_refund(console.actor(), after.unwrap_or(0), PAGE)
        .await
        .map_err(|e| console.fail(e))?;
    let mut rows = Vec::with_capacity(payments.len());
    for p in &payments {
        let order = console
            .ordo
            .order(console.actor(), p.order_id)
            .await
            .map_err(|e| console.fail(e))?;
        rows.push(Row {
            id: p.id,
            order_id: p.order_id,
            order: order.order.number,
            amount: lang.money(p.amount_cents, &order.order.currency),
            paid: lang.datetime(p.updated_at),
            provider_ref: p.provider_ref.clone().unwrap_or_default(),
            provider: super::provider_label(console.t(), p.provider),
            manual: p.provider == crate::domain::PaymentProvider::Manual,
            refund: p.refund().map(|state| {
                let label = super::refund_label(console.t(), state);
                match &p.refund_error {
                    Some(error) => format!("{label}: {error}"),
                    None => label.to_owned(),
                }
            }),
            refundable: p.provider != crate::domain::PaymentProvider::Manual
                && !p.refund().is_some_and(|r| r.under_way()),
            refund_button: fill(
                console.t().refund_through,
                &[("provider", super::provider_label(console.t(), p.provider))],
            ),
        });
    }
    let mut c = console.chrome(Nav::LatePayments);
    c.notice = notice;
    let status = c.refused(error);
    let next = next_page(&payments, PAGE, |p| p.id);
    Ok(render_with(status, &Page { c, rows, next }))
}

#[derive(serde::Deserialize)]
pub struct SettleForm {
    refund_reference: Option<String>,
}

/// Sends a late payment's refund to its provider (again).
pub async fn refund(console: Console, Path(id): Path<i64>) -> PageResult {
    match console.ordo.refund_late_payment(console.actor(), id).await {
        Ok(payment) => {
            let t = console.t();
            let state = payment
                .refund()
                .map(|s| super::refund_label(t, s))
                .unwrap_or_default();
            let notice = fill(
                t.refund_sent_notice,
                &[
                    ("id", &id.to_string()),
                    ("provider", super::provider_label(t, payment.provider)),
                    ("state", state),
                ],
            );
            show(&console, None, Some(notice), None).await
        }
        Err(err) => {
            let error = (error_status(&err), console.error_text(&err));
            show(&console, None, None, Some(error)).await
        }
    }
}

pub async fn settle(
    console: Console,
    Path(id): Path<i64>,
    axum::Form(form): axum::Form<SettleForm>,
) -> PageResult {
    let reference = filled(&form.refund_reference).unwrap_or("");
    match console
        .ordo
        .settle_refund(console.actor(), id, reference)
        .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/console/late-payments?settled={id}")).into_response()),
        Err(err) => {
            let error = (error_status(&err), console.error_text(&err));
            show(&console, None, None, Some(error)).await
        }
    }
}
