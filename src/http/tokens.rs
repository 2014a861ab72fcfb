//! `/tokens`: API tokens (staff): issue, list, revoke. A token is shown once, when issued.

use super::error::{ApiError, Problem};
use super::extract::{Id, Json, Query, RawBody, Staff};
use super::{AppState, PageParams, next_cursor};
use crate::auth::{NewToken, TokenInfo};
use crate::domain::{UserRole, parse_span};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue_token, list_tokens))
        .routes(routes!(revoke_token))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleName {
    Customer,
    Staff,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// What the token is for (a person, or a system such as "shop-frontend").
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*[^\\s\\u0000-\\u001F\\u007F-\\u009F][^\\u0000-\\u001F\\u007F-\\u009F]*$"
    )]
    pub name: String,
    /// The new user's role.
    pub role: RoleName,
    /// How long it lives: a whole number (no leading zero, at most six digits) and a unit,
    /// `s`, `m`, `h`, `d` or `w`, such as `90d`, `12h`, `30m`, `2w`; at most 3650 days
    /// (87600h, 3650d, 521w); omitted: until revoked.
    #[schema(
        pattern = "^([1-9][0-9]{0,5}[sm]|([1-9][0-9]{0,3}|[1-7][0-9]{4}|8[0-6][0-9]{3}|87[0-5][0-9]{2}|87600)h|([1-9][0-9]{0,2}|[12][0-9]{3}|3[0-5][0-9]{2}|36[0-4][0-9]|3650)d|([1-9][0-9]?|[1-4][0-9]{2}|5[01][0-9]|52[01])w)$",
        example = "90d"
    )]
    pub expires_in: Option<String>,
}

/// A new token: `token` is shown here only; only its hash is kept.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    #[serde(flatten)]
    pub info: TokenInfo,
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPage {
    pub items: Vec<TokenInfo>,
    pub next_cursor: Option<String>,
}

/// Issue a token (staff) for a new user with `role`. The token is in the answer only.
#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = TokenRequest,
    security(("bearer" = [])),
    responses((status = 201, body = IssuedToken), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn issue_token(
    State(state): State<AppState>,
    staff: Staff,
    body: RawBody,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let request: TokenRequest = body.parse()?;
    let expires_in = request
        .expires_in
        .as_deref()
        .map(|s| parse_span(s).map_err(|e| ApiError::validation("expires_in", e)))
        .transpose()?;
    let new = NewToken {
        name: request.name,
        role: Some(match request.role {
            RoleName::Customer => UserRole::Customer,
            RoleName::Staff => UserRole::Staff,
        }),
        user_id: None,
        expires_in,
    };
    let (info, token) = state.ordo.issue_token(staff.actor(), &new).await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            info,
            token: token.expose().to_owned(),
        }),
    ))
}

/// Every token (staff): name, user, role, state, created, last used, expiry. Never the
/// token itself.
#[utoipa::path(get, path = "/tokens", tag = "tokens", params(PageParams),
    security(("bearer" = [])),
    responses((status = 200, body = TokenPage), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn list_tokens(
    State(state): State<AppState>,
    staff: Staff,
    Query(page): Query<PageParams>,
) -> Result<Json<TokenPage>, ApiError> {
    let limit = page.limit()?;
    let items = state
        .ordo
        .tokens(staff.actor(), page.cursor()?.unwrap_or(0), limit)
        .await?;
    let next_cursor = next_cursor(&items, limit, |t| t.id);
    Ok(Json(TokenPage { items, next_cursor }))
}

/// Revoke a token (staff): refused with 401 from the next request on. Revoking it again,
/// or revoking the token this request is made with, is 409.
#[utoipa::path(delete, path = "/tokens/{id}", tag = "tokens", params(("id" = i64, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = TokenInfo), (status = "4XX", body = Problem, content_type = "application/problem+json")))]
async fn revoke_token(
    State(state): State<AppState>,
    staff: Staff,
    Id(id): Id,
) -> Result<Json<TokenInfo>, ApiError> {
    if id == staff.0.token_id {
        return Err(crate::Error::Conflict(
            "this is the token you are calling with; revoke it with another staff token or `ordo token revoke`".to_owned(),
        )
        .into());
    }
    Ok(Json(state.ordo.revoke_token(staff.actor(), id).await?))
}
