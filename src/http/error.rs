//! Errors as RFC 9457 problem+json with a stable `code`. Client errors say what was wrong;
//! internal errors are logged and shown only as "internal error" with the request id.

use crate::error::Error;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Every code a problem can carry.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // the schema's enum; problems carry the code as a string
pub enum ProblemCode {
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    InvalidTransition,
    InsufficientStock,
    TooManyPendingOrders,
    Conflict,
    IdempotencyKeyReused,
    ValidationFailed,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    ProviderError,
    Unavailable,
    Internal,
}

/// An RFC 9457 problem.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URN naming the kind of problem, e.g. `urn:ordo:problem:insufficient_stock`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code.
    #[schema(value_type = ProblemCode)]
    pub code: String,
    /// The offending field (validation_failed), such as `items[0].quantity`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The moves the order could make instead (invalid_transition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_id: Option<i64>,
    /// Units available (insufficient_stock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<i64>,
    /// Seconds to wait before trying again (rate_limited), as in the Retry-After header.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    problem: Box<Problem>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            problem: Box::new(Problem {
                kind: format!("urn:ordo:problem:{code}"),
                title: status.canonical_reason().unwrap_or("Error").to_owned(),
                status: status.as_u16(),
                detail: detail.into(),
                code: code.to_owned(),
                field: None,
                allowed: None,
                product_id: None,
                available: None,
                retry_after: None,
                request_id: None,
            }),
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn validation(field: &str, detail: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            detail,
        );
        e.problem.field = Some(field.to_owned());
        e
    }

    /// Malformed requests (bad JSON, bad path or query): 400.
    pub fn bad_request(field: &str, detail: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, "validation_failed", detail);
        e.problem.field = Some(field.to_owned());
        e
    }

    pub fn rate_limited(retry_after_secs: u64) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many requests; retry in {retry_after_secs} s"),
        );
        e.problem.retry_after = Some(retry_after_secs);
        e
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &str {
        &self.problem.code
    }

    pub fn detail(&self) -> &str {
        &self.problem.detail
    }

    pub fn field(&self) -> Option<&str> {
        self.problem.field.as_deref()
    }
}

impl From<Error> for ApiError {
    fn from(err: Error) -> ApiError {
        match err {
            Error::NotFound { what } => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
            Error::InvalidTransition { ref allowed, .. } => {
                let mut e =
                    ApiError::new(StatusCode::CONFLICT, "invalid_transition", err.to_string());
                e.problem.allowed = Some(allowed.iter().map(|s| s.as_str().to_owned()).collect());
                e
            }
            Error::Forbidden { reason } => ApiError::forbidden(reason),
            Error::Unauthorized { reason } => ApiError::unauthorized(reason),
            Error::TooManyPendingOrders { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "too_many_pending_orders",
                err.to_string(),
            ),
            Error::InsufficientStock {
                product_id,
                available,
                ..
            } => {
                let mut e =
                    ApiError::new(StatusCode::CONFLICT, "insufficient_stock", err.to_string());
                e.problem.product_id = Some(product_id);
                e.problem.available = Some(available);
                e
            }
            Error::Conflict(detail) => ApiError::new(StatusCode::CONFLICT, "conflict", detail),
            Error::IdempotencyKeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                err.to_string(),
            ),
            Error::Validation { field, message } => ApiError::validation(&field, message),
            Error::Provider(detail) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "provider_error", detail)
            }
            Error::Unavailable(_) => unavailable(&err),
            Error::Database(ref db) if crate::db::is_unavailable(db) => unavailable(&err),
            Error::Config(_) | Error::Database(_) | Error::Migrate(_) => {
                tracing::error!(error = %err, "internal error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

fn unavailable(err: &Error) -> ApiError {
    tracing::warn!(error = %err, "database unavailable");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the database is unavailable; retry later (a placement retried with the same Idempotency-Key is applied once)",
    )
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut problem = self.problem;
        problem.request_id = crate::context::request_id();
        let body = serde_json::to_vec(&*problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(seconds) = problem.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
