//! Products and stock: the catalogue with low stock (5 units or fewer) and out-of-stock
//! products marked, one product's ledger newest first with the running balance, and the
//! stock adjustment form ([`crate::Ordo::adjust_stock`], a ledger row like any other).

use super::i18n::{Texts, fill};
use super::session::Console;
use super::{
    Chrome, Nav, PageResult, error_status, filled, next_page, render, render_with, whole_number,
};
use crate::domain::{Product, format_rfc3339};
use crate::error::Error;
use askama::Template;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};

/// At or below this, stock is low.
pub const LOW_STOCK: i64 = 5;
const PAGE: i64 = 100;
const LEDGER_PAGE: i64 = 50;

struct Row {
    id: i64,
    sku: String,
    name: String,
    price: String,
    stock: String,
    sales: String,
    active: &'static str,
    /// `out`, `low` or empty.
    level: &'static str,
    level_label: &'static str,
}

fn row(console: &Console, p: &Product) -> Row {
    let t = console.t();
    let lang = console.lang;
    let (level, level_label) = if p.stock == 0 {
        ("out", t.out_of_stock)
    } else if p.stock <= LOW_STOCK {
        ("low", t.low_stock)
    } else {
        ("", "")
    };
    Row {
        id: p.id,
        sku: p.sku.clone(),
        name: p.name.clone(),
        price: lang.money(p.price_cents, &p.currency),
        stock: lang.number(p.stock),
        sales: lang.number(p.sales_count),
        active: if p.active { t.yes } else { t.no },
        level,
        level_label,
    }
}

#[derive(Template)]
#[template(path = "console/products.html")]
struct ListPage {
    c: Chrome,
    rows: Vec<Row>,
    next: Option<i64>,
}

#[derive(serde::Deserialize)]
pub struct ListQuery {
    after: Option<i64>,
}

pub async fn list(console: Console, Query(query): Query<ListQuery>) -> PageResult {
    let products = console
        .ordo
        .products(query.after.unwrap_or(0), PAGE)
        .await
        .map_err(|e| console.fail(e))?;
    let next = next_page(&products, PAGE, |p| p.id);
    Ok(render(&ListPage {
        c: console.chrome(Nav::Products),
        rows: products.iter().map(|p| row(&console, p)).collect(),
        next,
    }))
}

struct LedgerView {
    at: String,
    iso: String,
    change: String,
    reason: &'static str,
    order_id: Option<i64>,
    by: String,
    note: String,
    balance: String,
}

fn movement_label(t: &'static Texts, reason: &str) -> &'static str {
    match reason {
        "reserve" => t.move_reserve,
        "release" => t.move_release,
        "restock" => t.move_restock,
        _ => t.move_adjust,
    }
}

#[derive(Template)]
#[template(path = "console/product.html")]
struct DetailPage {
    c: Chrome,
    product: Row,
    ledger: Vec<LedgerView>,
    next: Option<i64>,
    delta: String,
    reason: String,
}

#[derive(serde::Deserialize)]
pub struct DetailQuery {
    before: Option<i64>,
    adjusted: Option<String>,
}

pub async fn detail(
    console: Console,
    Path(id): Path<i64>,
    Query(query): Query<DetailQuery>,
) -> PageResult {
    show(
        &console,
        id,
        query.before,
        query.adjusted.is_some(),
        None,
        None,
    )
    .await
}

async fn show(
    console: &Console,
    id: i64,
    before: Option<i64>,
    adjusted: bool,
    form: Option<&AdjustForm>,
    error: Option<(StatusCode, String)>,
) -> PageResult {
    let t = console.t();
    let lang = console.lang;
    let product = console
        .ordo
        .product(id)
        .await
        .map_err(|e| console.fail(e))?;
    let rows = console
        .ordo
        .product_ledger(console.actor(), id, before, LEDGER_PAGE)
        .await
        .map_err(|e| console.fail(e))?;
    let next = next_page(&rows, LEDGER_PAGE, |r| r.id);
    let mut c = console.chrome(Nav::Products);
    c.title = t.nav_products;
    if adjusted {
        c.notice = Some(fill(
            t.adjusted_notice,
            &[("stock", &lang.number(product.stock))],
        ));
    }
    let status = c.refused(error);
    let page = DetailPage {
        c,
        product: row(console, &product),
        ledger: rows
            .iter()
            .map(|r| LedgerView {
                at: lang.datetime(r.created_at),
                iso: format_rfc3339(r.created_at),
                change: if r.delta > 0 {
                    format!("+{}", lang.number(r.delta))
                } else {
                    lang.number(r.delta)
                },
                reason: movement_label(t, &r.reason),
                order_id: r.order_id,
                by: r.actor.clone(),
                note: r.note.clone().unwrap_or_default(),
                balance: lang.number(r.balance_after),
            })
            .collect(),
        next,
        delta: form.and_then(|f| f.delta.clone()).unwrap_or_default(),
        reason: form.and_then(|f| f.reason.clone()).unwrap_or_default(),
    };
    Ok(render_with(status, &page))
}

#[derive(serde::Deserialize)]
pub struct AdjustForm {
    delta: Option<String>,
    reason: Option<String>,
}

pub async fn adjust(
    console: Console,
    Path(id): Path<i64>,
    axum::Form(form): axum::Form<AdjustForm>,
) -> PageResult {
    let adjusted = match whole_number("delta", &form.delta) {
        Ok(Some(delta)) => {
            console
                .ordo
                .adjust_stock(console.actor(), id, delta, filled(&form.reason))
                .await
        }
        Ok(None) => Err(Error::validation("delta", "required")),
        Err(err) => Err(err),
    };
    match adjusted {
        Ok(_) => Ok(Redirect::to(&format!("/console/products/{id}?adjusted=1")).into_response()),
        Err(err @ Error::NotFound { .. }) => Err(console.fail(err)),
        Err(err) => {
            let error = (error_status(&err), console.error_text(&err));
            show(&console, id, None, false, Some(&form), Some(error)).await
        }
    }
}
