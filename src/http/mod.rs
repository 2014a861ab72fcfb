//! The HTTP API: JSON under `/api/v1`, bearer tokens, problem+json errors. Handlers only
//! translate requests and errors; the work is done by the same library calls the CLI uses.
//! Every handler is registered with its OpenAPI annotation, so `/openapi.json` is generated
//! from the router itself.

mod audit;
mod customers;
pub mod error;
mod events;
pub mod extract;
mod health;
mod orders;
mod payments;
mod products;
pub mod rate_limit;
mod sweeps;
mod tokens;
mod webhooks;

use crate::Ordo;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use error::ApiError;
use rate_limit::RateLimiter;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

pub use crate::payments::manual::sign as sign_webhook;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    pub ordo: Ordo,
    /// The payment provider's signing secret; the webhook refuses everything without it.
    pub webhook_secret: Option<Arc<[u8]>>,
    /// Orders per sweep transaction for `POST /sweeps`.
    pub sweep_batch_size: u32,
    pub limiter: Arc<RateLimiter>,
    /// Work started by requests that outlives them (sweeps started over HTTP): stopped
    /// and awaited on shutdown.
    pub jobs: crate::scheduler::Jobs,
    /// Whether the webhook endpoints may point at private addresses (development).
    pub webhook_allow_private: bool,
    /// The time zone the console shows times in (`time_zone`).
    pub time_zone: chrono_tz::Tz,
    /// The shop's own currency (`currency`), shown with its local symbol.
    pub currency: Option<String>,
}

impl AppState {
    /// A state with no payment webhook secret, no rate limit and its own jobs.
    pub fn new(ordo: Ordo) -> AppState {
        AppState {
            ordo,
            webhook_secret: None,
            sweep_batch_size: 1000,
            limiter: Arc::new(RateLimiter::off()),
            jobs: crate::scheduler::Jobs::new(crate::scheduler::Shutdown::new()),
            webhook_allow_private: false,
            time_zone: chrono_tz::Tz::UTC,
            currency: None,
        }
    }

    /// The state `ordo serve` runs with.
    pub fn from_settings(
        ordo: Ordo,
        settings: &crate::Settings,
        shutdown: crate::scheduler::Shutdown,
    ) -> AppState {
        AppState {
            ordo,
            webhook_secret: settings
                .webhook_secret
                .as_ref()
                .map(|s| Arc::from(s.as_bytes())),
            sweep_batch_size: settings.sweep_batch_size,
            limiter: Arc::new(RateLimiter::new(
                settings.rate_limit_per_second,
                settings.rate_limit_burst,
            )),
            jobs: crate::scheduler::Jobs::new(shutdown),
            webhook_allow_private: settings.webhook_allow_private,
            // Checked when the settings were loaded.
            time_zone: settings.time_zone().unwrap_or(chrono_tz::Tz::UTC),
            currency: settings.currency.clone(),
        }
    }

    /// The console's time zone and the shop's own currency.
    pub fn with_locale(mut self, time_zone: chrono_tz::Tz, currency: Option<&str>) -> AppState {
        self.time_zone = time_zone;
        self.currency = currency.map(str::to_owned);
        self
    }

    pub fn with_webhook_secret(mut self, secret: &str) -> AppState {
        self.webhook_secret = Some(Arc::from(secret.as_bytes()));
        self
    }

    pub fn with_rate_limit(mut self, per_second: u32, burst: u32) -> AppState {
        self.limiter = Arc::new(RateLimiter::new(per_second, burst));
        self
    }

    pub fn with_private_webhooks(mut self) -> AppState {
        self.webhook_allow_private = true;
        self
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "ordo", description = "Order and inventory service for online shops."),
    modifiers(&BearerAuth),
    components(schemas(
        error::Problem,
        error::ProblemCode,
        crate::domain::OrderStatus,
        crate::events::EventType,
        webhooks::DeliveryStatus,
        payments::RefundRequiredTrue
    ))
)]
struct ApiDoc;

/// Makes the generated document say what the server does: optional bodies are optional
/// (not "nullable"), and every operation lists the problems any request may get (429 when
/// rate limited, 503 while the database is unavailable, a client error).
struct TruthfulDocument;

impl Modify for TruthfulDocument {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{Schema, SchemaType, Type};
        use utoipa::openapi::{Content, RefOr, Required, ResponseBuilder};
        let problem = || {
            Content::new(Some(RefOr::<Schema>::Ref(
                utoipa::openapi::Ref::from_schema_name("Problem"),
            )))
        };
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                if let Some(RefOr::T(body)) = op.request_body.as_mut() {
                    for content in body.content.values_mut() {
                        let RefOr::T(content) = content else { continue };
                        if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema {
                            let is_null = |s: &RefOr<Schema>| {
                                matches!(s, RefOr::T(Schema::Object(o))
                                    if o.schema_type == SchemaType::Type(Type::Null))
                            };
                            let not_null: Vec<_> = one_of
                                .items
                                .iter()
                                .filter(|s| !is_null(s))
                                .cloned()
                                .collect();
                            if not_null.len() == 1 && one_of.items.len() == 2 {
                                content.schema = not_null.into_iter().next();
                                body.required = Some(Required::False);
                            }
                        }
                    }
                }
                let is_public = op.security.is_none();
                let responses = &mut op.responses.responses;
                for (status, what) in [
                    (
                        "4XX",
                        "A client error: the problem says what and, for validation, which field",
                    ),
                    (
                        "429",
                        "Rate limited: retry after the Retry-After header's seconds",
                    ),
                    ("503", "The database is unavailable; retry"),
                ] {
                    if is_public && status == "429" {
                        continue;
                    }
                    responses.entry(status.to_owned()).or_insert_with(|| {
                        RefOr::T(
                            ResponseBuilder::new()
                                .description(what)
                                .content("application/problem+json", problem())
                                .build(),
                        )
                    });
                }
            }
        }
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// What the annotations cannot say: a stock adjustment is never zero, a line holds at
/// most the configured units per order, and webhook endpoints are `https` unless this
/// server allows private targets.
fn finish_document(doc: &utoipa::openapi::OpenApi, ordo: &crate::Ordo) -> serde_json::Value {
    let policy = &ordo.policy;
    let mut doc = serde_json::to_value(doc).unwrap_or_default();
    let schemas = &mut doc["components"]["schemas"];
    schemas["StockAdjustment"]["properties"]["delta"]["not"] = serde_json::json!({"const": 0});
    if policy.max_units_per_order > 0 {
        schemas["OrderLine"]["properties"]["quantity"]["maximum"] =
            serde_json::json!(policy.max_units_per_order);
    }
    if !policy.webhook_allow_private {
        let https_only =
            crate::events::endpoints::URL_PATTERN.replacen("^https?://", "^https://", 1);
        for schema in ["EndpointRequest", "EndpointChange"] {
            schemas[schema]["properties"]["url"]["pattern"] = serde_json::json!(https_only);
        }
    }
    // A payment can be opened with the providers this shop configured, and no other.
    let configured: Vec<&str> = crate::domain::PaymentProvider::ALL
        .into_iter()
        .filter(|p| ordo.providers().is_configured(*p))
        .map(|p| p.as_str())
        .collect();
    schemas["OpenPayment"]["properties"]["provider"] = serde_json::json!({
        "type": "string",
        "enum": configured,
        "description": "Who takes the money: one of the providers this shop configured; \
            default_payment_provider when omitted. WeChat Pay and Alipay take orders in CNY \
            only, and WeChat Pay needs the payer's openid (given, or stored on the customer).",
    });
    doc
}

/// The router and the OpenAPI document generated from it.
pub fn router(state: AppState) -> (Router, serde_json::Value) {
    crate::telemetry::metrics_handle();
    let (api, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest(
            "/api/v1",
            OpenApiRouter::new()
                .merge(products::router())
                .merge(orders::router())
                .merge(customers::router())
                .merge(payments::router())
                .merge(sweeps::router())
                .merge(tokens::router())
                .merge(audit::router())
                .merge(webhooks::router())
                .merge(events::router()),
        )
        .merge(health::router())
        .split_for_parts();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    TruthfulDocument.modify(&mut doc);
    let doc = finish_document(&doc, &state.ordo);
    let spec = Arc::new(doc.clone());
    let app = api
        .route_layer(middleware::from_fn(mark_route))
        .route("/metrics", axum::routing::get(metrics))
        .merge(crate::console::router())
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let spec = spec.clone();
                async move { axum::Json(spec.as_ref().clone()) }
            }),
        )
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(request_context))
        .with_state(state);
    (app, doc)
}

/// Gives every request an id (or keeps the caller's `X-Request-Id`), makes it available to
/// problem bodies, echoes it in the response, and logs one line per request.
async fn request_context(request: Request, next: Next) -> Response {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 100 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            format!(
                "{:x}-{}",
                std::process::id(),
                SEQUENCE.fetch_add(1, Ordering::Relaxed)
            )
        });
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let started = Instant::now();
    let mut response = crate::context::REQUEST_ID
        .scope(id.clone(), next.run(request))
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    let latency_ms = elapsed * 1000.0;
    let status = response.status().as_u16();
    let route = response
        .extensions()
        .get::<MatchedRoute>()
        .map_or("unmatched", |r| r.0.as_str())
        .to_owned();
    metrics::counter!(
        "ordo_http_requests_total",
        "method" => method.to_string(),
        "route" => route.clone(),
        "status" => status.to_string()
    )
    .increment(1);
    metrics::histogram!(
        "ordo_http_request_duration_seconds",
        "method" => method.to_string(),
        "route" => route
    )
    .record(elapsed);
    tracing::info!(
        target: "ordo::http",
        %method,
        path,
        status,
        latency_ms = format_args!("{latency_ms:.2}"),
        request_id = %id,
        "request"
    );
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The route template a request matched (`/api/v1/orders/{id}`), for metric labels that
/// do not grow with ids.
#[derive(Clone)]
struct MatchedRoute(String);

async fn mark_route(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let mut response = next.run(request).await;
    if let Some(route) = route {
        response.extensions_mut().insert(MatchedRoute(route));
    }
    response
}

/// Prometheus text format: counters and histograms of this process, and gauges read from
/// the database at scrape time.
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    use axum::response::IntoResponse;
    crate::telemetry::refresh_gauges(&state.ordo).await;
    let Some(handle) = crate::telemetry::metrics_handle() else {
        return ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "metrics are not available in this process",
        )
        .into_response();
    };
    handle.run_upkeep();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

/// `limit` and `cursor` of list endpoints.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    pub cursor: Option<String>,
}

impl PageParams {
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(l) if (1..=200).contains(&l) => Ok(l),
            Some(_) => Err(ApiError::bad_request(
                "limit",
                "limit must be between 1 and 200",
            )),
        }
    }

    pub fn cursor(&self) -> Result<Option<i64>, ApiError> {
        match &self.cursor {
            None => Ok(None),
            Some(c) => c
                .parse::<i64>()
                .ok()
                .filter(|v| *v > 0)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request("cursor", "not a cursor from this API")),
        }
    }
}

/// The cursor for the page after `items`, if it was full.
pub fn next_cursor<T>(items: &[T], limit: i64, id: impl Fn(&T) -> i64) -> Option<String> {
    (items.len() as i64 == limit)
        .then(|| items.last().map(|i| id(i).to_string()))
        .flatten()
}

/// Serves until `shutdown` resolves, then finishes the requests in hand.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (app, _) = router(state);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
