//! The audit log: every staff and operator action (products, stock, order moves, tokens,
//! sweep runs, refunds, webhook endpoints) appends who, what, which object, when and the
//! request id, in the same transaction as the action itself. [`record`] is the one place
//! that writes it; library functions call it, never the HTTP handlers or the console.

use crate::Ordo;
use crate::db::{self, Conn};
use crate::domain::{Actor, Millis, time::serde_rfc3339};
use crate::error::{Error, Result};
use serde::Serialize;

pub use crate::db::audit::AuditFilter;

/// What an action touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object<'a> {
    Product(i64),
    Order(i64),
    Customer(i64),
    Payment(i64),
    Token(i64),
    SweepRun(i64),
    WebhookEndpoint(i64),
    WebhookDelivery(i64),
    Session(&'a str),
}

impl Object<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Object::Product(_) => "product",
            Object::Order(_) => "order",
            Object::Customer(_) => "customer",
            Object::Payment(_) => "payment",
            Object::Token(_) => "token",
            Object::SweepRun(_) => "sweep_run",
            Object::WebhookEndpoint(_) => "webhook_endpoint",
            Object::WebhookDelivery(_) => "webhook_delivery",
            Object::Session(_) => "session",
        }
    }

    fn id(&self) -> String {
        match self {
            Object::Product(id)
            | Object::Order(id)
            | Object::Customer(id)
            | Object::Payment(id)
            | Object::Token(id)
            | Object::SweepRun(id)
            | Object::WebhookEndpoint(id)
            | Object::WebhookDelivery(id) => id.to_string(),
            Object::Session(id) => (*id).to_owned(),
        }
    }
}

/// Appends one audit row for `actor`'s `action` on `object`, inside the caller's
/// transaction. Only staff and operators are audited: customers' own actions are in the
/// order history, and the sweep's runs in `sweep_runs`.
pub(crate) async fn record(
    conn: &mut Conn,
    actor: Actor,
    action: &str,
    object: Object<'_>,
    detail: serde_json::Value,
    now: Millis,
) -> Result<()> {
    let request_id = crate::context::request_id();
    record_for(conn, actor, action, object, detail, request_id, now).await
}

/// [`record`], for work done away from its request's task (a combined placement), which
/// carries the request id along.
pub(crate) async fn record_for(
    conn: &mut Conn,
    actor: Actor,
    action: &str,
    object: Object<'_>,
    detail: serde_json::Value,
    request_id: Option<String>,
    now: Millis,
) -> Result<()> {
    if !actor.is_staff() {
        return Ok(());
    }
    db::audit::insert(
        conn,
        &db::audit::NewAuditRow {
            actor: &actor.label(),
            user_id: actor.user_id(),
            action,
            object_type: object.kind(),
            object_id: Some(&object.id()),
            detail: &detail.to_string(),
            request_id: request_id.as_deref(),
            now,
        },
    )
    .await
}

/// One row of the audit log as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    /// `user:ID` for staff, `cli:LOGIN` for an operator at the command line.
    pub actor: String,
    pub user_id: Option<i64>,
    /// What was done, such as `product.create`, `stock.adjust`, `order.ship`, `token.revoke`.
    pub action: String,
    pub object_type: String,
    pub object_id: Option<String>,
    /// What the action carried (the fields changed, a reason).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub request_id: Option<String>,
    #[serde(with = "serde_rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Millis,
}

impl From<db::audit::AuditRow> for AuditEntry {
    fn from(row: db::audit::AuditRow) -> Self {
        AuditEntry {
            id: row.id,
            actor: row.actor,
            user_id: row.user_id,
            action: row.action,
            object_type: row.object_type,
            object_id: row.object_id,
            detail: serde_json::from_str(&row.detail).unwrap_or(serde_json::Value::Null),
            request_id: row.request_id,
            created_at: row.created_at,
        }
    }
}

impl Ordo {
    /// The audit log, newest first (staff).
    pub async fn audit_log(&self, actor: Actor, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        if !actor.is_staff() {
            return Err(Error::Forbidden {
                reason: "only staff read the audit log".to_owned(),
            });
        }
        let mut conn = self.db.pool().acquire().await?;
        Ok(db::audit::list(&mut conn, filter)
            .await?
            .into_iter()
            .map(AuditEntry::from)
            .collect())
    }
}
