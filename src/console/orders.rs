//! Orders: the list (status tabs with counts, filters, search by number, cursor paging, a
//! streamed CSV export of the current filter), one order (items, payments, one timeline of
//! history, events and webhook deliveries) and the moves staff may make from it, through
//! the same library calls as the API.

use super::i18n::{Locale, Texts, fill};
use super::session::Console;
use super::{
    Chrome, Nav, PageResult, error_status, filled, next_page, query_value, render_with,
    status_label, whole_number,
};
use crate::domain::lifecycle::{self, Role};
use crate::domain::{Millis, Order, OrderStatus, PaymentStatus, format_rfc3339};
use crate::error::Error;
use crate::orders::TransitionInput;
use crate::reports::{Happening, OrderSearch};
use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};

/// Orders per page.
const PAGE: i64 = 50;
/// Orders per database round trip of the CSV export.
const EXPORT_CHUNK: i64 = 1000;

/// The list's query: every field as typed, checked by [`Filters::search`].
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct Filters {
    status: Option<String>,
    from: Option<String>,
    until: Option<String>,
    customer: Option<String>,
    product: Option<String>,
    q: Option<String>,
    before: Option<String>,
}

fn day_start(field: &str, value: &Option<String>) -> Result<Option<Millis>, Error> {
    filled(value)
        .map(|v| {
            chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc().timestamp_millis())
                .ok_or_else(|| Error::validation(field, "must be a date, such as 2026-11-29"))
        })
        .transpose()
}

impl Filters {
    fn search(&self, limit: i64) -> Result<OrderSearch, Error> {
        let status = filled(&self.status)
            .map(|s| {
                s.parse::<OrderStatus>()
                    .map_err(|_| Error::validation("status", "unknown status"))
            })
            .transpose()?;
        let before = filled(&self.before)
            .map(|c| {
                c.split_once('.')
                    .and_then(|(at, id)| Some((at.parse().ok()?, id.parse().ok()?)))
                    .ok_or_else(|| Error::validation("before", "not a cursor of this list"))
            })
            .transpose()?;
        Ok(OrderSearch {
            status,
            user_id: whole_number("customer", &self.customer)?,
            product_id: whole_number("product", &self.product)?,
            created_from: day_start("from", &self.from)?,
            // The whole of the last day is included.
            created_until: day_start("until", &self.until)?.map(|d| d + 86_400_000),
            before,
            limit,
        })
    }

    /// The query string of these filters, without the status, cursor and search.
    fn others(&self) -> String {
        [
            ("from", &self.from),
            ("until", &self.until),
            ("customer", &self.customer),
            ("product", &self.product),
        ]
        .into_iter()
        .filter_map(|(k, v)| filled(v).map(|v| format!("&{k}={}", query_value(v))))
        .collect()
    }

    fn status_query(&self) -> String {
        filled(&self.status).map_or(String::new(), |s| format!("&status={}", query_value(s)))
    }
}

struct Tab {
    href: String,
    label: &'static str,
    count: String,
    current: bool,
}

pub struct OrderRow {
    pub id: i64,
    pub number: String,
    pub status: &'static str,
    pub status_key: &'static str,
    pub customer: i64,
    /// The customer's name, where the page knows it.
    pub customer_name: String,
    pub total: String,
    pub created: String,
    pub created_iso: String,
}

pub fn order_row(lang: Locale, order: &Order, customer_name: Option<&str>) -> OrderRow {
    OrderRow {
        id: order.id,
        number: order.number.clone(),
        status: status_label(lang.texts(), order.status),
        status_key: order.status.as_str(),
        customer: order.user_id,
        customer_name: customer_name.map_or_else(|| order.user_id.to_string(), str::to_owned),
        total: lang.money(order.total_cents, &order.currency),
        created: lang.datetime(order.created_at),
        created_iso: format_rfc3339(order.created_at),
    }
}

/// The names of the customers of `orders`, by id (one query for the page).
async fn names_of(
    console: &Console,
    orders: &[Order],
) -> Result<std::collections::HashMap<i64, String>, Error> {
    let mut ids: Vec<i64> = orders.iter().map(|o| o.user_id).collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(console
        .ordo
        .customers_by_ids(console.actor(), &ids)
        .await?
        .into_iter()
        .map(|c| (c.id, c.display_name))
        .collect())
}

#[derive(Template)]
#[template(path = "console/orders.html")]
struct ListPage {
    c: Chrome,
    tabs: Vec<Tab>,
    status: String,
    from: String,
    until: String,
    customer: String,
    product: String,
    q: String,
    rows: Vec<OrderRow>,
    next: Option<String>,
    first: Option<String>,
    csv: String,
}

pub async fn list(
    console: Console,
    axum::extract::Query(filters): axum::extract::Query<Filters>,
) -> PageResult {
    if let Some(number) = filled(&filters.q) {
        match console.ordo.order_by_number(console.actor(), number).await {
            Ok(order) => {
                return Ok(Redirect::to(&format!("/console/orders/{}", order.id)).into_response());
            }
            Err(Error::NotFound { .. }) => {
                let message = fill(console.t().order_not_found, &[("number", number)]);
                return list_page(&console, &filters, Some(message), StatusCode::NOT_FOUND).await;
            }
            Err(err) => return Err(console.fail(err)),
        }
    }
    list_page(&console, &filters, None, StatusCode::OK).await
}

async fn list_page(
    console: &Console,
    filters: &Filters,
    error: Option<String>,
    status: StatusCode,
) -> PageResult {
    let t = console.t();
    let lang = console.lang;
    let counts = console
        .ordo
        .order_status_counts(console.actor())
        .await
        .map_err(|e| console.fail(e))?;
    let (rows, next, error, status) = match filters.search(PAGE) {
        Ok(search) => {
            let orders = console
                .ordo
                .search_orders(console.actor(), &search)
                .await
                .map_err(|e| console.fail(e))?;
            let next = next_page(&orders, PAGE, |o| {
                format!(
                    "/console/orders?before={}.{}{}{}",
                    o.created_at,
                    o.id,
                    filters.status_query(),
                    filters.others()
                )
            });
            let names = names_of(console, &orders)
                .await
                .map_err(|e| console.fail(e))?;
            let rows = orders
                .iter()
                .map(|o| order_row(lang, o, names.get(&o.user_id).map(String::as_str)))
                .collect();
            (rows, next, error, status)
        }
        Err(Error::Validation { field, .. }) => (
            Vec::new(),
            None,
            Some(fill(t.bad_filter, &[("field", &field)])),
            StatusCode::BAD_REQUEST,
        ),
        Err(err) => return Err(console.fail(err)),
    };
    let current = filled(&filters.status).unwrap_or("");
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let mut tabs = vec![Tab {
        href: format!(
            "/console/orders?{}",
            filters.others().trim_start_matches('&')
        ),
        label: t.all_statuses,
        count: lang.number(total),
        current: current.is_empty(),
    }];
    tabs.extend(counts.iter().map(|(s, n)| Tab {
        href: format!("/console/orders?status={}{}", s.as_str(), filters.others()),
        label: status_label(t, *s),
        count: lang.number(*n),
        current: current == s.as_str(),
    }));
    let mut c = console.chrome(Nav::Orders);
    c.error = error;
    let page = ListPage {
        c,
        tabs,
        status: current.to_owned(),
        from: filled(&filters.from).unwrap_or("").to_owned(),
        until: filled(&filters.until).unwrap_or("").to_owned(),
        customer: filled(&filters.customer).unwrap_or("").to_owned(),
        product: filled(&filters.product).unwrap_or("").to_owned(),
        q: filled(&filters.q).unwrap_or("").to_owned(),
        rows,
        first: filled(&filters.before).map(|_| {
            format!(
                "/console/orders?{}{}",
                filters.status_query().trim_start_matches('&'),
                filters.others()
            )
        }),
        next,
        csv: format!(
            "/console/orders.csv?{}{}",
            filters.status_query().trim_start_matches('&'),
            filters.others()
        ),
    };
    Ok(render_with(status, &page))
}

/// A cell that a spreadsheet will show as text, never run as a formula.
fn csv_cell(value: &str) -> String {
    let guarded = if value.starts_with(['=', '+', '-', '@', '\t', '\r', '|', '%']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    format!("\"{}\"", guarded.replace('"', "\"\""))
}

fn csv_line(order: &Order) -> String {
    let time = |t: Option<Millis>| t.map(format_rfc3339).unwrap_or_default();
    let address = order.shipping_address.as_ref();
    let part = |f: fn(&crate::domain::ShippingAddress) -> Option<&str>| {
        csv_cell(address.and_then(f).unwrap_or(""))
    };
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\r\n",
        order.id,
        csv_cell(&order.number),
        order.status.as_str(),
        order.user_id,
        order.total_cents,
        csv_cell(&order.currency),
        format_rfc3339(order.created_at),
        time(order.paid_at),
        time(order.cancelled_at),
        csv_cell(order.cancel_reason.as_deref().unwrap_or("")),
        csv_cell(order.note.as_deref().unwrap_or("")),
        part(|a| Some(a.name.as_str())),
        part(|a| Some(a.phone.as_str())),
        part(|a| Some(a.country.as_str())),
        part(|a| a.province.as_deref()),
        part(|a| a.city.as_deref()),
        part(|a| a.district.as_deref()),
        part(|a| a.town.as_deref()),
        part(|a| Some(a.line.as_str())),
        part(|a| a.postal_code.as_deref()),
    )
}

/// The orders of the current filter as CSV, newest first, streamed a chunk at a time so
/// memory stays flat however many orders match.
pub async fn csv(
    console: Console,
    axum::extract::Query(filters): axum::extract::Query<Filters>,
) -> PageResult {
    let search = filters.search(EXPORT_CHUNK).map_err(|e| console.fail(e))?;
    // Checked now, so that a refusal is a page and not a broken download.
    let first = console
        .ordo
        .search_orders(console.actor(), &search)
        .await
        .map_err(|e| console.fail(e))?;
    let header_line = "id,number,status,customer_id,total_cents,currency,created_at,paid_at,cancelled_at,cancel_reason,note,ship_name,ship_phone,ship_country,ship_province,ship_city,ship_district,ship_town,ship_line,ship_postal_code\r\n";
    let ordo = console.ordo.clone();
    let actor = console.actor();
    let state = (Some(first), search, false);
    let chunks = futures_util::stream::unfold(state, move |(ready, mut search, done)| {
        let ordo = ordo.clone();
        async move {
            if done {
                return None;
            }
            let orders = match ready {
                Some(orders) => orders,
                None => match ordo.search_orders(actor, &search).await {
                    Ok(orders) => orders,
                    Err(err) => {
                        tracing::error!(error = %err, "CSV export stopped");
                        return Some((
                            Err(std::io::Error::other(err.to_string())),
                            (None, search, true),
                        ));
                    }
                },
            };
            let last = (orders.len() as i64) < search.limit;
            if orders.is_empty() {
                return None;
            }
            let mut chunk = String::with_capacity(orders.len() * 160);
            for order in &orders {
                chunk.push_str(&csv_line(order));
            }
            search.before = orders.last().map(|o| (o.created_at, o.id));
            Some((Ok(Bytes::from(chunk)), (None, search, last)))
        }
    });
    let body = futures_util::stream::once(async move {
        Ok::<_, std::io::Error>(Bytes::from_static(header_line.as_bytes()))
    });
    use futures_util::StreamExt;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"orders.csv\"",
            ),
        ],
        Body::from_stream(body.chain(chunks)),
    )
        .into_response())
}

struct ItemView {
    product_id: i64,
    sku: String,
    name: String,
    quantity: String,
    unit_price: String,
    total: String,
}

/// An address as a page shows it.
pub struct AddressView {
    pub recipient: String,
    pub phone: String,
    pub lines: Vec<String>,
    pub erased: bool,
}

impl AddressView {
    pub fn of(address: &crate::domain::ShippingAddress) -> AddressView {
        AddressView {
            recipient: address.name.clone(),
            phone: address.phone.clone(),
            lines: address.label_lines(),
            erased: address.erased,
        }
    }
}

/// The address form's values: the address as it is.
#[derive(Default)]
struct AddressFields {
    name: String,
    phone: String,
    country: String,
    province: String,
    city: String,
    district: String,
    town: String,
    line: String,
    postal_code: String,
}

impl AddressFields {
    fn of(address: Option<&crate::domain::ShippingAddress>) -> AddressFields {
        let Some(a) = address.filter(|a| !a.erased) else {
            return AddressFields {
                country: "CN".to_owned(),
                ..AddressFields::default()
            };
        };
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        AddressFields {
            name: a.name.clone(),
            phone: a.phone.clone(),
            country: a.country.clone(),
            province: text(&a.province),
            city: text(&a.city),
            district: text(&a.district),
            town: text(&a.town),
            line: a.line.clone(),
            postal_code: text(&a.postal_code),
        }
    }
}

/// An order's upload to WeChat as its page shows it.
struct UploadView {
    status: &'static str,
    status_key: String,
    attempts: String,
    last_error: Option<String>,
    next_attempt: Option<String>,
    accepted: Option<String>,
    retryable: bool,
}

struct PaymentView {
    id: i64,
    amount: String,
    status: &'static str,
    expires: String,
    provider: &'static str,
    provider_ref: String,
    /// What the provider last said, and whether its transaction is still open there.
    at_provider: String,
    provider_open: bool,
    provider_error: Option<String>,
    last_asked: String,
    refund: Option<String>,
    refund_required: bool,
    /// Staff may ask its provider now.
    askable: bool,
}

struct TimelineView {
    at: String,
    iso: String,
    kind: &'static str,
    code: String,
    detail: String,
    note: Option<String>,
}

/// A move staff may make, as its form shows it.
struct ActionView {
    action: &'static str,
    label: &'static str,
    /// Whether the form asks for a reason, and whether it must be given.
    reason: Option<bool>,
    shipping: bool,
}

fn payment_label(t: &'static Texts, status: PaymentStatus) -> &'static str {
    match status {
        PaymentStatus::Pending => t.payment_pending,
        PaymentStatus::Succeeded => t.payment_succeeded,
        PaymentStatus::Failed => t.payment_failed,
        PaymentStatus::Expired => t.payment_expired,
        PaymentStatus::Cancelled => t.payment_cancelled,
        PaymentStatus::Refunded => t.payment_refunded,
    }
}

pub fn delivery_label(t: &'static Texts, status: &str) -> &'static str {
    match status {
        "pending" => t.delivery_pending,
        "succeeded" => t.delivery_succeeded,
        "failed" => t.delivery_failed,
        _ => t.delivery_dead,
    }
}

/// The console's name for each move, and the move.
const ACTIONS: [(&str, OrderStatus); 6] = [
    ("ship", OrderStatus::Shipped),
    ("complete", OrderStatus::Completed),
    ("refund", OrderStatus::Refunding),
    ("refund-approve", OrderStatus::Refunded),
    ("refund-reject", OrderStatus::Paid),
    ("cancel", OrderStatus::Cancelled),
];

fn actions(t: &'static Texts, from: OrderStatus) -> Vec<ActionView> {
    ACTIONS
        .into_iter()
        .filter(|(_, to)| lifecycle::check_move(from, *to, Role::Staff).is_ok())
        .map(|(action, to)| {
            let (label, reason) = match (from, to) {
                (_, OrderStatus::Shipped) => (t.act_ship, None),
                (_, OrderStatus::Completed) => (t.act_complete, None),
                (_, OrderStatus::Refunding) => (t.act_request_refund, Some(true)),
                (_, OrderStatus::Refunded) => (t.act_approve_refund, Some(false)),
                (OrderStatus::Refunding, OrderStatus::Paid) => (t.act_reject_refund, Some(true)),
                _ => (t.act_cancel, Some(true)),
            };
            ActionView {
                action,
                label,
                reason,
                shipping: to == OrderStatus::Shipped,
            }
        })
        .collect()
}

#[derive(Template)]
#[template(path = "console/order.html")]
struct DetailPage {
    c: Chrome,
    id: i64,
    heading: String,
    status: &'static str,
    status_key: &'static str,
    customer: i64,
    total: String,
    placed: String,
    deadline: Option<String>,
    paid: Option<String>,
    cancelled: Option<String>,
    cancel_reason: Option<String>,
    note: Option<String>,
    shipping: Option<String>,
    customer_name: String,
    customer_phone: String,
    address: Option<AddressView>,
    address_form: Option<AddressFields>,
    upload: Option<UploadView>,
    items: Vec<ItemView>,
    payments: Vec<PaymentView>,
    timeline: Vec<TimelineView>,
    actions: Vec<ActionView>,
}

#[derive(serde::Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

pub async fn detail(
    console: Console,
    Path(id): Path<i64>,
    axum::extract::Query(query): axum::extract::Query<DoneQuery>,
) -> PageResult {
    detail_page(&console, id, query.done.is_some(), None, None).await
}

async fn detail_page(
    console: &Console,
    id: i64,
    moved: bool,
    error: Option<(StatusCode, String)>,
    notice: Option<String>,
) -> PageResult {
    let t = console.t();
    let lang = console.lang;
    let actor = console.actor();
    let details = console
        .ordo
        .order(actor, id)
        .await
        .map_err(|e| console.fail(e))?;
    let timeline = console
        .ordo
        .order_timeline(actor, id)
        .await
        .map_err(|e| console.fail(e))?;
    let order = &details.order;
    let customer = console
        .ordo
        .customers_by_ids(actor, &[order.user_id])
        .await
        .map_err(|e| console.fail(e))?
        .into_iter()
        .next();
    let upload = console
        .ordo
        .shipping_upload(actor, id)
        .await
        .map_err(|e| console.fail(e))?
        .map(|u| UploadView {
            status: match u.status.as_str() {
                "pending" => t.upload_pending,
                "failed" => t.upload_failed,
                "succeeded" => t.upload_succeeded,
                _ => t.upload_dead,
            },
            retryable: u.status != "succeeded",
            status_key: u.status,
            attempts: fill(t.tl_attempts, &[("n", &u.attempts.to_string())]),
            last_error: u.last_error,
            next_attempt: u.next_attempt_at.map(|at| lang.datetime(at)),
            accepted: u.accepted_at.map(|at| lang.datetime(at)),
        });
    // Each line as it was ordered: the SKU and name it was sold under.
    let items = details
        .items
        .iter()
        .map(|item| ItemView {
            product_id: item.product_id,
            sku: item.sku.clone(),
            name: item.name.clone(),
            quantity: lang.number(item.quantity),
            unit_price: lang.money(item.unit_price_cents, &order.currency),
            total: lang.money(item.unit_price_cents * item.quantity, &order.currency),
        })
        .collect();
    let payments = details
        .payments
        .iter()
        .map(|p| PaymentView {
            id: p.id,
            amount: lang.money(p.amount_cents, &order.currency),
            status: payment_label(t, p.status),
            expires: lang.datetime(p.expires_at),
            provider: super::provider_label(t, p.provider),
            provider_ref: p.provider_ref.clone().unwrap_or_default(),
            at_provider: p.provider_state.clone().unwrap_or_default(),
            provider_open: p.provider_open,
            provider_error: p.provider_error.clone(),
            last_asked: p
                .provider_checked_at
                .map(|at| lang.datetime(at))
                .unwrap_or_default(),
            refund: p.refund().map(|state| {
                let label = super::refund_label(t, state);
                match &p.refund_error {
                    Some(error) if state == crate::domain::RefundState::Refused => {
                        format!("{label}: {error}")
                    }
                    _ => label.to_owned(),
                }
            }),
            refund_required: p.refund_required,
            askable: p.provider != crate::domain::PaymentProvider::Manual
                && p.provider_ref.is_some(),
        })
        .collect();
    let timeline = timeline
        .into_iter()
        .map(|entry| {
            let (kind, code, detail, note) = match entry.what {
                Happening::Status(h) => {
                    let label = |s: Option<&str>| {
                        s.and_then(|s| s.parse::<OrderStatus>().ok())
                            .map_or("—", |s| status_label(t, s))
                    };
                    (
                        t.tl_status,
                        h.actor,
                        format!(
                            "{} → {}",
                            label(h.from_status.as_deref()),
                            label(Some(&h.to_status))
                        ),
                        h.note,
                    )
                }
                Happening::Event { kind, seq, .. } => (
                    t.tl_event,
                    kind,
                    seq.map_or(String::new(), |s| format!("#{s}")),
                    None,
                ),
                Happening::Delivery {
                    id,
                    endpoint_id,
                    event_type,
                    status,
                    attempts,
                } => (
                    t.tl_delivery,
                    event_type,
                    format!(
                        "#{id} → {endpoint_id}: {}, {}",
                        delivery_label(t, &status),
                        fill(t.tl_attempts, &[("n", &attempts.to_string())])
                    ),
                    None,
                ),
            };
            TimelineView {
                at: lang.datetime(entry.at),
                iso: format_rfc3339(entry.at),
                kind,
                code,
                detail,
                note,
            }
        })
        .collect();
    let mut c = console.chrome(Nav::Orders);
    if moved {
        c.notice = Some(fill(
            t.moved_notice,
            &[("status", status_label(t, order.status))],
        ));
    }
    if notice.is_some() {
        c.notice = notice;
    }
    let status = c.refused(error);
    let page = DetailPage {
        c,
        id: order.id,
        heading: fill(t.order_heading, &[("number", &order.number)]),
        status: status_label(t, order.status),
        status_key: order.status.as_str(),
        customer: order.user_id,
        total: lang.money(order.total_cents, &order.currency),
        placed: lang.datetime(order.created_at),
        deadline: (order.status == OrderStatus::Pending)
            .then(|| lang.datetime(order.created_at + console.ordo.policy.unpaid_timeout_ms)),
        paid: order.paid_at.map(|at| lang.datetime(at)),
        cancelled: order.cancelled_at.map(|at| lang.datetime(at)),
        cancel_reason: order.cancel_reason.clone(),
        note: order.note.clone(),
        shipping: order.carrier.as_ref().map(|carrier| {
            format!(
                "{carrier} {}",
                order.tracking_number.as_deref().unwrap_or("")
            )
        }),
        customer_name: customer
            .as_ref()
            .map_or_else(|| order.user_id.to_string(), |c| c.display_name.clone()),
        customer_phone: customer
            .as_ref()
            .and_then(|c| c.phone.clone())
            .unwrap_or_default(),
        address: order.shipping_address.as_ref().map(AddressView::of),
        address_form: matches!(order.status, OrderStatus::Pending | OrderStatus::Paid)
            .then(|| AddressFields::of(order.shipping_address.as_ref())),
        upload,
        items,
        payments,
        timeline,
        actions: actions(t, order.status),
    };
    Ok(render_with(status, &page))
}

#[derive(serde::Deserialize)]
pub struct ActionForm {
    reason: Option<String>,
    carrier: Option<String>,
    tracking_number: Option<String>,
}

/// A staff move from the order page: the same transition the API makes.
pub async fn act(
    console: Console,
    Path((id, action)): Path<(i64, String)>,
    axum::Form(form): axum::Form<ActionForm>,
) -> PageResult {
    let Some((_, to)) = ACTIONS.into_iter().find(|(name, _)| *name == action) else {
        return Err(console.fail(Error::NotFound { what: "action" }));
    };
    let reason = filled(&form.reason).map(str::to_owned);
    let must_give_reason =
        matches!(to, OrderStatus::Cancelled | OrderStatus::Refunding) || (to == OrderStatus::Paid);
    let moved = if must_give_reason && reason.is_none() {
        Err(Error::validation("reason", "required"))
    } else if to == OrderStatus::Shipped
        && (filled(&form.carrier).is_none() || filled(&form.tracking_number).is_none())
    {
        Err(Error::validation(
            if filled(&form.carrier).is_none() {
                "carrier"
            } else {
                "tracking_number"
            },
            "required",
        ))
    } else if to == OrderStatus::Cancelled {
        console.ordo.cancel_order(console.actor(), id, reason).await
    } else {
        let input = TransitionInput {
            note: reason,
            carrier: filled(&form.carrier).map(str::to_owned),
            tracking_number: filled(&form.tracking_number).map(str::to_owned),
            payment_id: None,
        };
        console
            .ordo
            .transition(console.actor(), id, to, &input)
            .await
    };
    match moved {
        Ok(_) => Ok(Redirect::to(&format!("/console/orders/{id}?done=moved")).into_response()),
        Err(err @ Error::NotFound { .. }) => Err(console.fail(err)),
        Err(err) => {
            let status = error_status(&err);
            let message = console.error_text(&err);
            detail_page(&console, id, false, Some((status, message)), None).await
        }
    }
}

/// Staff ask a payment's provider now (audited), from its order's page.
pub async fn ask_provider(console: Console, Path(payment_id): Path<i64>) -> PageResult {
    use crate::payments::AskOutcome;
    let t = console.t();
    let actor = console.actor();
    let payment = console
        .ordo
        .payment(actor, payment_id)
        .await
        .map_err(|e| console.fail(e))?;
    let provider = super::provider_label(t, payment.provider);
    let id = payment_id.to_string();
    let asked =
        console
            .ordo
            .ask_provider_now(actor, payment_id)
            .await
            .map(|outcome| match &outcome {
                AskOutcome::Paid => fill(t.asked_paid, &[("provider", provider), ("id", &id)]),
                AskOutcome::Closed => fill(t.asked_closed, &[("provider", provider), ("id", &id)]),
                AskOutcome::Open => fill(t.asked_open, &[("provider", provider), ("id", &id)]),
                AskOutcome::Deferred(reason) => fill(
                    t.asked_deferred,
                    &[("provider", provider), ("id", &id), ("reason", reason)],
                ),
            });
    action_page(&console, payment.order_id, asked).await
}

#[derive(serde::Deserialize)]
pub struct AddressForm {
    name: Option<String>,
    phone: Option<String>,
    country: Option<String>,
    province: Option<String>,
    city: Option<String>,
    district: Option<String>,
    town: Option<String>,
    line: Option<String>,
    postal_code: Option<String>,
}

/// Staff correct an order's address from its page: the same call as the API.
pub async fn correct_address(
    console: Console,
    Path(id): Path<i64>,
    axum::Form(form): axum::Form<AddressForm>,
) -> PageResult {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let address = crate::domain::NewShippingAddress {
        name: text(&form.name),
        phone: text(&form.phone),
        country: filled(&form.country).map(str::to_owned),
        province: filled(&form.province).map(str::to_owned),
        city: filled(&form.city).map(str::to_owned),
        district: filled(&form.district).map(str::to_owned),
        town: filled(&form.town).map(str::to_owned),
        line: text(&form.line),
        postal_code: filled(&form.postal_code).map(str::to_owned),
    };
    let corrected = console
        .ordo
        .correct_shipping_address(console.actor(), id, &address)
        .await
        .map(|_| console.t().address_saved.to_owned());
    action_page(&console, id, corrected).await
}

/// Staff send an order's shipping information to WeChat again (audited).
pub async fn retry_upload(console: Console, Path(id): Path<i64>) -> PageResult {
    let retried = console
        .ordo
        .retry_shipping_upload(console.actor(), id)
        .await
        .map(|_| console.t().upload_retried_notice.to_owned());
    action_page(&console, id, retried).await
}

/// The order's page after a staff action: with the action's notice, or with why it was
/// refused (its status kept); an order that does not exist is the console's not-found page.
async fn action_page(console: &Console, id: i64, outcome: Result<String, Error>) -> PageResult {
    match outcome {
        Ok(notice) => detail_page(console, id, false, None, Some(notice)).await,
        Err(err @ Error::NotFound { .. }) => Err(console.fail(err)),
        Err(err) => {
            let status = error_status(&err);
            let message = console.error_text(&err);
            detail_page(console, id, false, Some((status, message)), None).await
        }
    }
}

/// Most orders on one sheet of packing slips.
const MAX_SLIPS: i64 = 200;

struct SlipItem {
    sku: String,
    name: String,
    quantity: String,
}

struct SlipView {
    id: i64,
    number: String,
    placed: String,
    customer: String,
    address: Option<AddressView>,
    items: Vec<SlipItem>,
    units: String,
    note: Option<String>,
}

#[derive(Template)]
#[template(path = "console/packing_slips.html")]
struct SlipsPage {
    t: &'static Texts,
    lang: &'static str,
    title: String,
    heading: Option<String>,
    back: String,
    back_label: &'static str,
    slips: Vec<SlipView>,
}

/// The slips of these orders, in this order.
async fn slips(
    console: &Console,
    orders: Vec<crate::domain::OrderDetails>,
) -> Result<Vec<SlipView>, Error> {
    let plain: Vec<Order> = orders.iter().map(|d| d.order.clone()).collect();
    let names = names_of(console, &plain).await?;
    let lang = console.lang;
    Ok(orders
        .into_iter()
        .map(|d| SlipView {
            id: d.order.id,
            number: d.order.number.clone(),
            placed: lang.datetime(d.order.created_at),
            customer: names
                .get(&d.order.user_id)
                .cloned()
                .unwrap_or_else(|| d.order.user_id.to_string()),
            address: d.order.shipping_address.as_ref().map(AddressView::of),
            units: lang.number(d.items.iter().map(|i| i.quantity).sum()),
            items: d
                .items
                .iter()
                .map(|i| SlipItem {
                    sku: i.sku.clone(),
                    name: i.name.clone(),
                    quantity: lang.number(i.quantity),
                })
                .collect(),
            note: d.order.note.clone(),
        })
        .collect())
}

/// One order's packing slip, to print.
pub async fn packing_slip(console: Console, Path(id): Path<i64>) -> PageResult {
    let details = console
        .ordo
        .order(console.actor(), id)
        .await
        .map_err(|e| console.fail(e))?;
    crate::auth::require_staff(console.actor()).map_err(|e| console.fail(e))?;
    let t = console.t();
    let title = format!("{} {}", t.packing_slip, details.order.number);
    let page = SlipsPage {
        t,
        lang: console.lang.code(),
        title,
        heading: None,
        back: format!("/console/orders/{id}"),
        back_label: t.back_to_order,
        slips: slips(&console, vec![details])
            .await
            .map_err(|e| console.fail(e))?,
    };
    Ok(render_with(StatusCode::OK, &page))
}

#[derive(serde::Deserialize)]
pub struct SlipsQuery {
    ids: Option<String>,
}

/// One sheet of packing slips: the orders named (`?ids=1,2,3`), or every paid order
/// waiting to ship (up to 200, the oldest first), one slip a page.
pub async fn packing_slips(console: Console, Query(query): Query<SlipsQuery>) -> PageResult {
    let actor = console.actor();
    let ids: Vec<i64> = match filled(&query.ids) {
        Some(ids) => {
            let parsed: Result<Vec<i64>, _> =
                ids.split(',').map(|i| i.trim().parse::<i64>()).collect();
            match parsed {
                Ok(ids) if !ids.is_empty() && ids.len() as i64 <= MAX_SLIPS => ids,
                _ => {
                    return Err(console.fail(Error::validation(
                        "ids",
                        "order ids separated by commas, at most 200",
                    )));
                }
            }
        }
        None => {
            let mut paid = console
                .ordo
                .search_orders(
                    actor,
                    &crate::reports::OrderSearch {
                        status: Some(OrderStatus::Paid),
                        limit: MAX_SLIPS,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| console.fail(e))?;
            paid.reverse();
            paid.into_iter().map(|o| o.id).collect()
        }
    };
    let mut orders = Vec::with_capacity(ids.len());
    for id in ids {
        orders.push(
            console
                .ordo
                .order(actor, id)
                .await
                .map_err(|e| console.fail(e))?,
        );
    }
    let t = console.t();
    let heading = fill(t.slips_heading, &[("count", &orders.len().to_string())]);
    let page = SlipsPage {
        t,
        lang: console.lang.code(),
        title: heading.clone(),
        heading: Some(heading),
        back: "/console/orders?status=paid".to_owned(),
        back_label: t.back_to_orders,
        slips: slips(&console, orders).await.map_err(|e| console.fail(e))?,
    };
    Ok(render_with(StatusCode::OK, &page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_never_become_formulas() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("+1"), "\"'+1\"");
        assert_eq!(csv_cell("-2"), "\"'-2\"");
        assert_eq!(csv_cell("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(csv_cell("gift wrap"), "\"gift wrap\"");
    }

    #[test]
    fn filters_are_checked() {
        let filters = Filters {
            status: Some("paid".into()),
            from: Some("2026-11-01".into()),
            until: Some("2026-11-02".into()),
            before: Some("1795597200000.42".into()),
            ..Filters::default()
        };
        let search = filters.search(10).unwrap();
        assert_eq!(search.status, Some(OrderStatus::Paid));
        assert_eq!(
            search.created_until.unwrap() - search.created_from.unwrap(),
            2 * 86_400_000
        );
        assert_eq!(search.before, Some((1_795_597_200_000, 42)));
        let bad = Filters {
            customer: Some("x".into()),
            ..Filters::default()
        };
        assert!(
            matches!(bad.search(10), Err(Error::Validation { field, .. }) if field == "customer")
        );
    }
}
