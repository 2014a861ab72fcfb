//! The library's error: each variant is one thing a caller can act on. The HTTP layer maps
//! them to status codes and stable problem codes; the CLI to exit statuses.

use crate::domain::OrderStatus;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what} not found")]
    NotFound { what: &'static str },

    #[error("cannot move order from {from} to {to}; allowed: {}", list(allowed))]
    InvalidTransition {
        from: OrderStatus,
        to: OrderStatus,
        allowed: Vec<OrderStatus>,
    },

    #[error("{reason}")]
    Forbidden { reason: String },

    /// No valid credentials: an unknown, revoked or expired token.
    #[error("{reason}")]
    Unauthorized { reason: String },

    #[error(
        "customer {user_id} already has {pending} unpaid order(s), the most allowed; pay or cancel one first"
    )]
    TooManyPendingOrders { user_id: i64, pending: i64 },

    /// The database cannot be reached now (no primary, or it went away mid-request).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),

    #[error(
        "insufficient stock for product {product_id} ({sku}): requested {requested}, available {available}"
    )]
    InsufficientStock {
        product_id: i64,
        sku: String,
        requested: i64,
        available: i64,
    },

    #[error("{0}")]
    Conflict(String),

    #[error("this Idempotency-Key was already used for a different order")]
    IdempotencyKeyReused,

    #[error("{field}: {message}")]
    Validation { field: String, message: String },

    /// A payment provider did not do what was asked (unreachable, an error, an answer that
    /// does not verify, a refusal): nothing was decided on it; the request may be retried.
    #[error("{0}")]
    Provider(String),

    #[error("configuration: {0}")]
    Config(String),

    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),

    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

fn list(allowed: &[OrderStatus]) -> String {
    if allowed.is_empty() {
        return "none (terminal status)".to_owned();
    }
    allowed
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The stable code clients see (README: HTTP API).
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotFound { .. } => "not_found",
            Error::InvalidTransition { .. } => "invalid_transition",
            Error::Forbidden { .. } => "forbidden",
            Error::Unauthorized { .. } => "unauthorized",
            Error::TooManyPendingOrders { .. } => "too_many_pending_orders",
            Error::Unavailable(_) => "unavailable",
            Error::InsufficientStock { .. } => "insufficient_stock",
            Error::Conflict(_) => "conflict",
            Error::Validation { .. } => "validation_failed",
            Error::IdempotencyKeyReused => "idempotency_key_reused",
            Error::Provider(_) => "provider_error",
            Error::Config(_) => "configuration",
            Error::Database(_) | Error::Migrate(_) => "internal",
        }
    }

    /// True when the database could not be reached (or went away): retrying later may work,
    /// and the outcome of a commit may be unknown.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Unavailable(_) => true,
            Error::Database(err) => crate::db::is_unavailable(err),
            _ => false,
        }
    }

    /// True for errors caused by the database or environment rather than by the request.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            Error::Database(_) | Error::Migrate(_) | Error::Config(_) | Error::Unavailable(_)
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
