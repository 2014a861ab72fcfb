//! `/products`: the catalogue, stock adjustments and the ledger.

use super::error::{ApiError, Problem};
use super::extract::{Caller, Id, Json, Query, RawBody, Staff};
use super::{AppState, PageParams, next_cursor};
use crate::domain::{NewProduct, Product, ProductPatch, StockMovement};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_product, list_products))
        .routes(routes!(get_product, update_product))
        .routes(routes!(adjust_stock))
        .routes(routes!(stock_movements))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    pub items: Vec<Product>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MovementPage {
    pub items: Vec<StockMovement>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockAdjustment {
    /// Units to add (positive) or remove (negative), not zero; never below zero stock.
    #[schema(minimum = -1_000_000_000_000_i64, maximum = 1_000_000_000_000_i64)]
    #[serde(deserialize_with = "crate::domain::whole::value")]
    pub delta: i64,
    /// Why, for the ledger (e.g. "delivery", "damaged").
    #[schema(
        max_length = 500,
        pattern = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"
    )]
    pub reason: Option<String>,
}

/// Add a product (staff).
#[utoipa::path(post, path = "/products", tag = "products", request_body = NewProduct,
    security(("bearer" = [])),
    responses((status = 201, body = Product), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn create_product(
    State(state): State<AppState>,
    staff: Staff,
    body: RawBody,
) -> Result<(StatusCode, Json<Product>), ApiError> {
    let new: NewProduct = body.parse()?;
    let product = state.ordo.create_product(staff.actor(), &new).await?;
    Ok((StatusCode::CREATED, Json(product)))
}

/// List products, in id order.
#[utoipa::path(get, path = "/products", tag = "products", params(PageParams),
    security(("bearer" = [])),
    responses((status = 200, body = ProductPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_products(
    State(state): State<AppState>,
    _caller: Caller,
    Query(page): Query<PageParams>,
) -> Result<Json<ProductPage>, ApiError> {
    let limit = page.limit()?;
    let items = state
        .ordo
        .products(page.cursor()?.unwrap_or(0), limit)
        .await?;
    let next_cursor = next_cursor(&items, limit, |p| p.id);
    Ok(Json(ProductPage { items, next_cursor }))
}

/// One product.
#[utoipa::path(get, path = "/products/{id}", tag = "products", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Product), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_product(
    State(state): State<AppState>,
    _caller: Caller,
    Id(id): Id,
) -> Result<Json<Product>, ApiError> {
    Ok(Json(state.ordo.product(id).await?))
}

/// Change a product's name, price or whether it is on sale (staff). Stock changes go
/// through stock adjustments.
#[utoipa::path(patch, path = "/products/{id}", tag = "products", params(("id" = i64, Path)),
    request_body = ProductPatch, security(("bearer" = [])),
    responses((status = 200, body = Product), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn update_product(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
    body: RawBody,
) -> Result<Json<Product>, ApiError> {
    let patch: ProductPatch = body.parse()?;
    Ok(Json(
        state.ordo.update_product(staff.actor(), id, &patch).await?,
    ))
}

/// Adjust stock through the ledger (staff); below zero is refused with insufficient_stock.
#[utoipa::path(post, path = "/products/{id}/stock-adjustments", tag = "products",
    params(("id" = i64, Path)), request_body = StockAdjustment, security(("bearer" = [])),
    responses((status = 200, body = Product), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn adjust_stock(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
    body: RawBody,
) -> Result<Json<Product>, ApiError> {
    let adjustment: StockAdjustment = body.parse()?;
    let product = state
        .ordo
        .adjust_stock(
            staff.actor(),
            id,
            adjustment.delta,
            adjustment.reason.as_deref(),
        )
        .await?;
    Ok(Json(product))
}

/// A product's stock ledger, newest first (staff).
#[utoipa::path(get, path = "/products/{id}/stock-movements", tag = "products",
    params(("id" = i64, Path), PageParams), security(("bearer" = [])),
    responses((status = 200, body = MovementPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn stock_movements(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
    Query(page): Query<PageParams>,
) -> Result<Json<MovementPage>, ApiError> {
    let limit = page.limit()?;
    let items = state
        .ordo
        .stock_movements(staff.actor(), id, page.cursor()?, limit)
        .await?;
    let next_cursor = next_cursor(&items, limit, |m| m.id);
    Ok(Json(MovementPage { items, next_cursor }))
}
