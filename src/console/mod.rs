//! The staff console: server-rendered HTML under `/console`, for staff signed in with a
//! session ([`session`]). Pages call the same library functions as the HTTP API, so the
//! lifecycle rules, stock effects, events and audit rows are the same whichever is used.
//! Every response carries a strict Content-Security-Policy (no inline script or style);
//! every unsafe request must come from the console's own origin.

mod audit;
mod charts;
mod customers;
mod dashboard;
mod expiring;
pub mod i18n;
mod orders;
mod payments;
mod products;
pub mod session;
mod sweep;
mod tokens;
mod webhooks;

use crate::error::Error;
use crate::http::AppState;
use askama::Template;
use axum::Router;
use axum::extract::{Path, Request};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use i18n::{Lang, Texts, fill};
use session::Console;

/// The policy every console response carries: scripts, styles and forms only from this
/// origin, nothing inline, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// The console's routes; `http::router` merges them beside the API.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(dashboard::page))
        .route(
            "/console/login",
            get(session::login_page).post(session::login),
        )
        .route("/console/logout", post(session::logout))
        .route("/console/lang", post(switch_language))
        .route("/console/orders", get(orders::list))
        .route("/console/orders.csv", get(orders::csv))
        .route("/console/orders/{id}", get(orders::detail))
        .route(
            "/console/orders/{id}/packing-slip",
            get(orders::packing_slip),
        )
        .route(
            "/console/orders/{id}/address",
            post(orders::correct_address),
        )
        .route(
            "/console/orders/{id}/wechat-shipping",
            post(orders::retry_upload),
        )
        .route("/console/orders/{id}/{action}", post(orders::act))
        .route("/console/packing-slips", get(orders::packing_slips))
        .route("/console/customers", get(customers::list))
        .route("/console/customers/{id}", get(customers::detail))
        .route("/console/customers/{id}/erase", post(customers::erase))
        .route("/console/payments/{id}/ask", post(orders::ask_provider))
        .route("/console/expiring", get(expiring::page))
        .route("/console/expiring/rows", get(expiring::rows))
        .route("/console/sweep", get(sweep::page))
        .route("/console/sweep/run", post(sweep::run))
        .route("/console/late-payments", get(payments::page))
        .route("/console/late-payments/{id}/settle", post(payments::settle))
        .route("/console/late-payments/{id}/refund", post(payments::refund))
        .route("/console/products", get(products::list))
        .route("/console/products/{id}", get(products::detail))
        .route("/console/products/{id}/adjust", post(products::adjust))
        .route(
            "/console/webhooks",
            get(webhooks::page).post(webhooks::create),
        )
        .route(
            "/console/webhooks/deliveries/{id}/redeliver",
            post(webhooks::redeliver),
        )
        .route("/console/tokens", get(tokens::page).post(tokens::create))
        .route("/console/tokens/{id}/revoke", post(tokens::revoke))
        .route("/console/audit", get(audit::page))
        .route("/console/static/{file}", get(asset))
        .route("/console/{*rest}", get(not_found).post(not_found))
        .layer(middleware::from_fn(guard))
}

/// Refuses unsafe requests from other origins and adds the security headers.
async fn guard(request: Request, next: Next) -> Response {
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    if !safe && !same_origin(request.headers()) {
        let lang = lang_of(request.headers());
        let mut response = error_page(lang, StatusCode::FORBIDDEN, lang.texts().err_forged);
        add_security_headers(response.headers_mut());
        return response;
    }
    let mut response = next.run(request).await;
    add_security_headers(response.headers_mut());
    response
}

fn add_security_headers(headers: &mut HeaderMap) {
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, "content-security-policy", CONTENT_SECURITY_POLICY);
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "referrer-policy", "same-origin");
    set(headers, "x-frame-options", "DENY");
    if !headers.contains_key(header::CACHE_CONTROL) {
        // Pages show customers' data and one-time secrets: never kept by a cache.
        set(headers, "cache-control", "no-store");
    }
}

/// Is this request from the console's own pages? A browser says where a request comes
/// from in `Sec-Fetch-Site` (modern browsers) and `Origin` (every cross-site form post);
/// either one naming another site refuses it. Clients that send neither (curl) are let
/// through: they carry no victim's cookie by accident.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.to_str(), Ok("same-origin" | "none"))
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let Some((_, authority)) = origin.split_once("://") else {
        // `Origin: null` (a sandboxed frame, a redirect across sites).
        return false;
    };
    let host_matches = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| h.eq_ignore_ascii_case(authority))
    };
    host_matches(header::HOST) || host_matches(header::HeaderName::from_static("x-forwarded-host"))
}

/// The language of a request: the switch's cookie, else `Accept-Language`.
pub fn lang_of(headers: &HeaderMap) -> Lang {
    if let Some(lang) = cookie(headers, LANG_COOKIE).and_then(|v| Lang::parse(&v)) {
        return lang;
    }
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map_or(Lang::En, Lang::from_accept_language)
}

const LANG_COOKIE: &str = "ordo_lang";

/// One cookie's value.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

#[derive(serde::Deserialize)]
struct LanguageForm {
    lang: String,
    back: Option<String>,
}

/// The language switch: remembered in a cookie for a year, then back where it was.
async fn switch_language(
    headers: HeaderMap,
    axum::Form(form): axum::Form<LanguageForm>,
) -> Response {
    let lang = Lang::parse(&form.lang).unwrap_or_else(|| lang_of(&headers));
    let back = form
        .back
        .filter(|b| is_console_path(b))
        .unwrap_or_else(|| "/console/".to_owned());
    let mut response = Redirect::to(&back).into_response();
    if let Some(value) =
        session::console_cookie(&headers, LANG_COOKIE, lang.code(), Some(31_536_000))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// A path of this console to send someone back to (never another site).
fn is_console_path(path: &str) -> bool {
    path.starts_with("/console")
        && !path.starts_with("//")
        && !path.contains('\\')
        && !path.chars().any(char::is_control)
}

/// The console's static files, embedded in the binary.
#[derive(rust_embed::Embed)]
#[folder = "static/console/"]
struct Assets;

async fn asset(Path(file): Path<String>) -> Response {
    let Some(found) = Assets::get(&file) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let content_type = match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("css") => "text/css; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    let etag = format!("\"{}\"", hex::encode(&found.metadata.sha256_hash()[..8]));
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (header::CACHE_CONTROL, "public, max-age=300".to_owned()),
            (header::ETAG, etag),
        ],
        found.data.into_owned(),
    )
        .into_response()
}

async fn not_found(headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    error_page(lang, StatusCode::NOT_FOUND, lang.texts().page_not_found)
}

/// A page of the console's navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Dashboard,
    Orders,
    Customers,
    Expiring,
    Sweep,
    LatePayments,
    Products,
    Webhooks,
    Tokens,
    Audit,
}

impl Nav {
    const ALL: [Nav; 10] = [
        Nav::Dashboard,
        Nav::Orders,
        Nav::Customers,
        Nav::Expiring,
        Nav::Sweep,
        Nav::LatePayments,
        Nav::Products,
        Nav::Webhooks,
        Nav::Tokens,
        Nav::Audit,
    ];

    fn href(self) -> &'static str {
        match self {
            Nav::Dashboard => "/console/",
            Nav::Orders => "/console/orders",
            Nav::Customers => "/console/customers",
            Nav::Expiring => "/console/expiring",
            Nav::Sweep => "/console/sweep",
            Nav::LatePayments => "/console/late-payments",
            Nav::Products => "/console/products",
            Nav::Webhooks => "/console/webhooks",
            Nav::Tokens => "/console/tokens",
            Nav::Audit => "/console/audit",
        }
    }

    fn label(self, t: &'static Texts) -> &'static str {
        match self {
            Nav::Dashboard => t.nav_dashboard,
            Nav::Orders => t.nav_orders,
            Nav::Customers => t.nav_customers,
            Nav::Expiring => t.nav_expiring,
            Nav::Sweep => t.nav_sweep,
            Nav::LatePayments => t.nav_late_payments,
            Nav::Products => t.nav_products,
            Nav::Webhooks => t.nav_webhooks,
            Nav::Tokens => t.nav_tokens,
            Nav::Audit => t.nav_audit,
        }
    }
}

pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// What every page around its content shows: the navigation, who is signed in, the
/// language switch, and a notice or an error.
pub struct Chrome {
    pub t: &'static Texts,
    pub lang: &'static str,
    pub other_lang: &'static str,
    pub other_lang_name: &'static str,
    pub signed_in: String,
    pub nav: Vec<NavItem>,
    /// Where the language switch comes back to.
    pub back: String,
    pub title: &'static str,
    pub notice: Option<String>,
    pub error: Option<String>,
}

impl Chrome {
    /// Shows why a form was refused, if it was; returns the status the page answers with.
    pub fn refused(&mut self, error: Option<(StatusCode, String)>) -> StatusCode {
        match error {
            Some((status, message)) => {
                self.error = Some(message);
                status
            }
            None => StatusCode::OK,
        }
    }
}

/// The key of the last item of a full page (where the next page starts); `None` when the
/// page was not full, so there is nothing after it.
pub fn next_page<T, K>(items: &[T], page: i64, key: impl Fn(&T) -> K) -> Option<K> {
    if items.len() as i64 == page {
        items.last().map(key)
    } else {
        None
    }
}

impl Console {
    pub fn chrome(&self, nav: Nav) -> Chrome {
        let t = self.t();
        Chrome {
            t,
            lang: self.lang.code(),
            other_lang: self.lang.other().code(),
            other_lang_name: self.lang.other().own_name(),
            signed_in: fill(t.signed_in_as, &[("name", &self.session.user.name)]),
            nav: Nav::ALL
                .into_iter()
                .map(|n| NavItem {
                    href: n.href(),
                    label: n.label(t),
                    current: n == nav,
                })
                .collect(),
            back: self.path.clone(),
            title: nav.label(t),
            notice: None,
            error: None,
        }
    }

    /// What an error from the library means to the person who caused it, in their
    /// language. Internal errors are logged; the page shows only the request id.
    pub fn error_text(&self, err: &Error) -> String {
        error_text(self.lang.lang, err)
    }
}

pub fn error_text(lang: Lang, err: &Error) -> String {
    let t = lang.texts();
    match err {
        Error::InvalidTransition { from, .. } => fill(
            t.err_invalid_transition,
            &[("status", status_label(t, *from))],
        ),
        Error::Forbidden { .. } | Error::Unauthorized { .. } => t.err_forbidden.to_owned(),
        Error::NotFound { .. } => t.err_not_found.to_owned(),
        Error::Conflict(_) | Error::IdempotencyKeyReused | Error::TooManyPendingOrders { .. } => {
            t.err_conflict.to_owned()
        }
        Error::Validation { field, message } => fill(
            t.err_validation,
            &[("field", field.as_str()), ("message", message.as_str())],
        ),
        Error::InsufficientStock { available, .. } => fill(
            t.err_insufficient_stock,
            &[("available", &lang.number(*available))],
        ),
        Error::Provider(message) => fill(t.err_provider, &[("message", message.as_str())]),
        other if other.is_unavailable() => t.err_unavailable.to_owned(),
        other => {
            tracing::error!(error = %other, "console request failed");
            let id = crate::context::request_id().unwrap_or_default();
            fill(t.err_internal, &[("id", &id)])
        }
    }
}

/// The status a library error answers with.
pub fn error_status(err: &Error) -> StatusCode {
    match err {
        Error::NotFound { .. } => StatusCode::NOT_FOUND,
        Error::Forbidden { .. } | Error::Unauthorized { .. } => StatusCode::FORBIDDEN,
        Error::InvalidTransition { .. }
        | Error::Conflict(_)
        | Error::InsufficientStock { .. }
        | Error::IdempotencyKeyReused
        | Error::TooManyPendingOrders { .. } => StatusCode::CONFLICT,
        Error::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        Error::Provider(_) => StatusCode::BAD_GATEWAY,
        other if other.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A failed page: the library's error, shown in the viewer's language.
pub struct PageError {
    lang: Lang,
    error: Error,
}

impl Console {
    pub fn fail(&self, error: Error) -> PageError {
        PageError {
            lang: self.lang.lang,
            error,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        error_page(
            self.lang,
            error_status(&self.error),
            &error_text(self.lang, &self.error),
        )
    }
}

pub type PageResult = Result<Response, PageError>;

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    t: &'static Texts,
    lang: &'static str,
    message: &'a str,
}

pub fn error_page(lang: Lang, status: StatusCode, message: &str) -> Response {
    let page = ErrorPage {
        t: lang.texts(),
        lang: lang.code(),
        message,
    };
    (status, render(&page)).into_response()
}

/// Renders a template; a template that fails to render is logged and answered with 500.
pub fn render<T: Template>(page: &T) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "console template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "template error").into_response()
        }
    }
}

/// Renders a page with a status other than 200 (a form sent back with its error).
pub fn render_with(status: StatusCode, page: &impl Template) -> Response {
    (status, render(page)).into_response()
}

/// The label of an order status.
pub fn provider_label(t: &'static Texts, provider: crate::domain::PaymentProvider) -> &'static str {
    use crate::domain::PaymentProvider::*;
    match provider {
        Manual => t.provider_manual,
        Wechatpay => t.provider_wechatpay,
        Alipay => t.provider_alipay,
        Stripe => t.provider_stripe,
    }
}

pub fn refund_label(t: &'static Texts, state: crate::domain::RefundState) -> &'static str {
    use crate::domain::RefundState::*;
    match state {
        Requested => t.refund_requested,
        Processing => t.refund_processing,
        Succeeded => t.refund_succeeded,
        Refused => t.refund_refused,
    }
}

pub fn status_label(t: &'static Texts, status: crate::domain::OrderStatus) -> &'static str {
    use crate::domain::OrderStatus::*;
    match status {
        Pending => t.status_pending,
        Paid => t.status_paid,
        Shipped => t.status_shipped,
        Completed => t.status_completed,
        Cancelled => t.status_cancelled,
        Refunding => t.status_refunding,
        Refunded => t.status_refunded,
    }
}

/// A form field that may be left empty.
pub fn filled(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A whole number from a form or query field, naming the field when it is not one.
pub fn whole_number(field: &str, value: &Option<String>) -> Result<Option<i64>, Error> {
    filled(value)
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| Error::validation(field, "must be a whole number"))
        })
        .transpose()
}

/// Percent-encodes a query value.
pub fn query_value(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn only_the_consoles_own_origin_may_post() {
        let host = ("host", "shop.example:8080");
        assert!(same_origin(&headers(&[host])));
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://shop.example:8080"),
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-site")
        ])));
        assert!(!same_origin(&headers(&[host, ("origin", "null")])));
        assert!(same_origin(&headers(&[host, ("sec-fetch-site", "none")])));
    }

    #[test]
    fn cookies_and_paths() {
        let h = headers(&[("cookie", "a=1; ordo_lang=zh-CN; b=2")]);
        assert_eq!(cookie(&h, "ordo_lang").as_deref(), Some("zh-CN"));
        assert_eq!(lang_of(&h), Lang::Zh);
        assert!(is_console_path("/console/orders?status=paid"));
        assert!(!is_console_path("//evil.example/console"));
        assert!(!is_console_path("https://evil.example/console"));
    }
}
