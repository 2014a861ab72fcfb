//! Errors as RFC 9457 problem+json with a stable `code`. Client errors say what was wrong;
//! internal errors are logged and shown only as "internal error" with the request id.

use crate::error::Error;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

tokio::task_local! {
    /// The id of the request being served, for problem bodies and logs.
    pub static REQUEST_ID: String;
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
    /// Stable machine-readable code: unauthorized, forbidden, not_found, invalid_transition,
    /// insufficient_stock, conflict, idempotency_key_reused, validation_failed,
    /// payload_too_large, unavailable, internal.
    pub code: String,
    /// The offending field (validation_failed).
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
                request_id: None,
            }),
        }
    }

    pub fn unauthorized(detail: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
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

    pub fn status(&self) -> StatusCode {
        self.status
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
            Error::Forbidden { reason } => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", reason)
            }
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
            Error::Database(ref db) if is_unavailable(db) => {
                tracing::error!(error = %err, "database unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database is unavailable; retry later",
                )
            }
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

/// Errors that mean "the database cannot be reached right now", not "this request is wrong":
/// a lost or refused connection, an exhausted pool, a server shutting down or starting up.
fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08xxx connection exceptions; 57P01-57P03 admin or crash shutdown, cannot
            // connect now; SQLITE_BUSY (5) and SQLITE_LOCKED (6) after the busy timeout.
            code.starts_with("08")
                || matches!(code.as_ref(), "57P01" | "57P02" | "57P03" | "5" | "6")
        }),
        _ => false,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut problem = self.problem;
        problem.request_id = REQUEST_ID.try_with(|id| id.clone()).ok();
        let body = serde_json::to_vec(&*problem).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
