//! Customers: the search (by name, phone or the shop's id for them), one customer with its
//! latest orders, and the erasure of its personal data, through the same calls as the API.

use super::i18n::fill;
use super::orders::{OrderRow, order_row};
use super::session::Console;
use super::{Chrome, Nav, PageResult, error_status, filled, next_page, render_with};
use crate::domain::Customer;
use crate::error::Error;
use crate::reports::OrderSearch;
use askama::Template;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};

/// Customers per page, and orders on a customer's page.
const PAGE: i64 = 50;

pub struct CustomerRow {
    id: i64,
    name: String,
    phone: String,
    external_id: String,
    since: String,
    erased: bool,
}

fn customer_row(console: &Console, c: &Customer) -> CustomerRow {
    CustomerRow {
        id: c.id,
        name: c.display_name.clone(),
        phone: c.phone.clone().unwrap_or_default(),
        external_id: c.external_id.clone().unwrap_or_default(),
        since: console.lang.date(c.created_at),
        erased: c.erased_at.is_some(),
    }
}

#[derive(Template)]
#[template(path = "console/customers.html")]
struct ListPage {
    c: Chrome,
    q: String,
    rows: Vec<CustomerRow>,
    next: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct ListQuery {
    q: Option<String>,
    before: Option<String>,
}

pub async fn list(console: Console, Query(query): Query<ListQuery>) -> PageResult {
    let q = filled(&query.q).map(str::to_owned);
    let before = super::whole_number("before", &query.before);
    let (found, error, status) = match before {
        Ok(before) => match console
            .ordo
            .customers(console.actor(), q.as_deref(), before, PAGE)
            .await
        {
            Ok(found) => (found, None, StatusCode::OK),
            Err(err @ Error::Validation { .. }) => (
                Vec::new(),
                Some(console.error_text(&err)),
                error_status(&err),
            ),
            Err(err) => return Err(console.fail(err)),
        },
        Err(err) => (
            Vec::new(),
            Some(console.error_text(&err)),
            error_status(&err),
        ),
    };
    let next = next_page(&found, PAGE, |c| {
        format!(
            "/console/customers?before={}{}",
            c.id,
            q.as_deref()
                .map_or(String::new(), |q| format!("&q={}", super::query_value(q)))
        )
    });
    let mut c = console.chrome(Nav::Customers);
    c.error = error;
    let page = ListPage {
        c,
        q: q.unwrap_or_default(),
        rows: found.iter().map(|c| customer_row(&console, c)).collect(),
        next,
    };
    Ok(render_with(status, &page))
}

#[derive(Template)]
#[template(path = "console/customer.html")]
struct DetailPage {
    c: Chrome,
    id: i64,
    heading: String,
    customer: CustomerRow,
    openid: String,
    erased_at: Option<String>,
    orders: Vec<OrderRow>,
}

#[derive(serde::Deserialize)]
pub struct DetailQuery {
    erased: Option<String>,
}

pub async fn detail(
    console: Console,
    Path(id): Path<i64>,
    Query(query): Query<DetailQuery>,
) -> PageResult {
    let notice = query.erased.map(|counts| {
        let (orders, events) = counts.split_once('.').unwrap_or(("0", "0"));
        fill(
            console.t().erased_notice,
            &[("orders", orders), ("events", events)],
        )
    });
    detail_page(&console, id, notice, None).await
}

async fn detail_page(
    console: &Console,
    id: i64,
    notice: Option<String>,
    error: Option<(StatusCode, String)>,
) -> PageResult {
    let actor = console.actor();
    let customer = console
        .ordo
        .customer(actor, id)
        .await
        .map_err(|e| console.fail(e))?;
    let orders = console
        .ordo
        .search_orders(
            actor,
            &OrderSearch {
                user_id: Some(id),
                limit: PAGE,
                ..OrderSearch::default()
            },
        )
        .await
        .map_err(|e| console.fail(e))?;
    let mut c = console.chrome(Nav::Customers);
    c.notice = notice;
    let status = c.refused(error);
    let page = DetailPage {
        c,
        id,
        heading: fill(
            console.t().customer_heading,
            &[("name", &customer.display_name)],
        ),
        openid: customer.wechat_openid.clone().unwrap_or_default(),
        erased_at: customer.erased_at.map(|at| console.lang.datetime(at)),
        customer: customer_row(console, &customer),
        orders: orders
            .iter()
            .map(|o| order_row(console.lang, o, None))
            .collect(),
    };
    Ok(render_with(status, &page))
}

#[derive(serde::Deserialize)]
pub struct EraseForm {
    confirm: Option<String>,
}

/// Erases the customer's personal data (audited), from its page.
pub async fn erase(
    console: Console,
    Path(id): Path<i64>,
    axum::Form(form): axum::Form<EraseForm>,
) -> PageResult {
    let erased = if filled(&form.confirm).is_none() {
        Err(Error::validation("confirm", "required"))
    } else {
        console.ordo.erase_customer(console.actor(), id).await
    };
    match erased {
        Ok(done) => Ok(Redirect::to(&format!(
            "/console/customers/{id}?erased={}.{}",
            done.orders, done.events
        ))
        .into_response()),
        Err(err @ Error::NotFound { .. }) => Err(console.fail(err)),
        Err(err) => {
            let status = error_status(&err);
            let message = match &err {
                // Which orders are still open matters here; the library says it.
                Error::Conflict(detail) => format!("{} {detail}", console.error_text(&err)),
                _ => console.error_text(&err),
            };
            detail_page(&console, id, None, Some((status, message))).await
        }
    }
}
