//! `/customers` (staff): the shop's backend creates or updates its customers by its own id
//! for them, mints their tokens, finds them, and erases their personal data on request.

use super::error::{ApiError, Problem};
use super::extract::{Id, Json, Query, RawBody, Staff};
use super::tokens::IssuedToken;
use super::{AppState, next_cursor};
use crate::customers::{CustomerChange, Erasure};
use crate::domain::{Customer, parse_span};
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upsert_customer))
        .routes(routes!(list_customers))
        .routes(routes!(get_customer))
        .routes(routes!(issue_customer_token))
        .routes(routes!(erase_customer))
}

/// `null` kept apart from absent: `Some(None)` clears, `None` leaves as it is.
fn nullable<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(de).map(Some)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerRequest {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$",
        example = "王小明"
    )]
    pub display_name: String,
    /// Omitted: left as it is; `null`: cleared.
    #[schema(value_type = Option<String>, pattern = "^\\+?[0-9 ()-]{5,20}$", example = "138 0013 8000")]
    #[serde(default, deserialize_with = "nullable")]
    pub phone: Option<Option<String>>,
    /// The customer's openid in the shop's mini-program: its WeChat Pay payments use it
    /// when they are opened without one. Omitted: left as it is; `null`: cleared.
    #[schema(value_type = Option<String>, pattern = "^[A-Za-z0-9_-]{1,128}$")]
    #[serde(default, deserialize_with = "nullable")]
    pub wechat_openid: Option<Option<String>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerTokenRequest {
    /// What the token is for; default `customer <external id>`.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: Option<String>,
    /// How long it lives, as for `POST /tokens` (`30d`, `12h`); omitted: until revoked.
    #[schema(
        pattern = "^([1-9][0-9]{0,5}[sm]|([1-9][0-9]{0,3}|[1-7][0-9]{4}|8[0-6][0-9]{3}|87[0-5][0-9]{2}|87600)h|([1-9][0-9]{0,2}|[12][0-9]{3}|3[0-5][0-9]{2}|36[0-4][0-9]|3650)d|([1-9][0-9]?|[1-4][0-9]{2}|5[01][0-9]|52[01])w)$",
        example = "30d"
    )]
    pub expires_in: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CustomerQuery {
    /// A name (or part of one), a phone number (or four or more of its digits), or the
    /// shop's id of the customer.
    #[param(max_length = 100, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    pub q: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[1-9][0-9]{0,17}$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerPage {
    pub items: Vec<Customer>,
    pub next_cursor: Option<String>,
}

/// The shop's id of a customer, from the path.
pub struct ExternalId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ExternalId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| {
                    ApiError::bad_request("external_id", "not a valid path segment (UTF-8)")
                })?;
        Ok(ExternalId(raw))
    }
}

/// Create or update a customer by the shop's own id for it (staff): the same customer
/// every time, however many calls race. 201 when created, 200 when updated.
#[utoipa::path(put, path = "/customers/by-external-id/{external_id}", tag = "customers",
    params(("external_id" = String, Path, min_length = 1, max_length = 128, pattern = "^[^\\s\\u0000-\\u001F\\u007F-\\u009F]+$",
        description = "The shop's own id of the customer: 1 to 128 characters, no spaces")),
    request_body = CustomerRequest, security(("bearer" = [])),
    responses((status = 200, body = Customer), (status = 201, body = Customer, description = "Created"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn upsert_customer(
    State(state): State<AppState>,
    staff: Staff,
    ExternalId(external_id): ExternalId,
    body: RawBody,
) -> Result<(StatusCode, Json<Customer>), ApiError> {
    let request: CustomerRequest = body.parse()?;
    let change = CustomerChange {
        display_name: request.display_name,
        phone: request.phone,
        wechat_openid: request.wechat_openid,
    };
    let (customer, created) = state
        .ordo
        .upsert_customer(staff.actor(), &external_id, &change)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(customer)))
}

/// Find customers (staff), newest first: by name, phone or the shop's id for them.
#[utoipa::path(get, path = "/customers", tag = "customers", params(CustomerQuery),
    security(("bearer" = [])),
    responses((status = 200, body = CustomerPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_customers(
    State(state): State<AppState>,
    staff: Staff,
    Query(query): Query<CustomerQuery>,
) -> Result<Json<CustomerPage>, ApiError> {
    let page = super::PageParams {
        limit: query.limit,
        cursor: query.cursor,
    };
    let limit = page.limit()?;
    let items = state
        .ordo
        .customers(staff.actor(), query.q.as_deref(), page.cursor()?, limit)
        .await?;
    let next_cursor = next_cursor(&items, limit, |c| c.id);
    Ok(Json(CustomerPage { items, next_cursor }))
}

/// One customer (staff).
#[utoipa::path(get, path = "/customers/{id}", tag = "customers", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = Customer), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn get_customer(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
) -> Result<Json<Customer>, ApiError> {
    Ok(Json(state.ordo.customer(staff.actor(), id).await?))
}

/// A token for a customer (staff): what the shop's backend gives the customer's front end
/// once it has signed them in. The token is in this answer only; only its hash is kept.
#[utoipa::path(post, path = "/customers/{id}/tokens", tag = "customers",
    params(("id" = i64, Path)), request_body = Option<CustomerTokenRequest>,
    security(("bearer" = [])),
    responses((status = 201, body = IssuedToken), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn issue_customer_token(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
    body: RawBody,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let request: CustomerTokenRequest = body.parse_optional()?.unwrap_or_default();
    let expires_in = request
        .expires_in
        .as_deref()
        .map(|s| parse_span(s).map_err(|e| ApiError::validation("expires_in", e)))
        .transpose()?;
    let (info, token) = state
        .ordo
        .issue_customer_token(staff.actor(), id, request.name, expires_in)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            info,
            token: token.expose().to_owned(),
        }),
    ))
}

/// Erase a customer's personal data (staff; PIPL, GDPR): its name, phone and openid, and
/// the addresses of its orders, everywhere ordo wrote them (the orders, the events). Amounts,
/// history and the stock ledger stay. 409, naming them, while an order of its is open.
#[utoipa::path(delete, path = "/customers/{id}/personal-data", tag = "customers",
    params(("id" = i64, Path)), security(("bearer" = [])),
    responses((status = 200, body = Erasure), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn erase_customer(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
) -> Result<Json<Erasure>, ApiError> {
    Ok(Json(state.ordo.erase_customer(staff.actor(), id).await?))
}
