//! The audit log: append-only rows of who did what to which object.

use super::Conn;
use crate::domain::Millis;
use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub actor: String,
    pub user_id: Option<i64>,
    pub action: String,
    pub object_type: String,
    pub object_id: Option<String>,
    pub detail: String,
    pub request_id: Option<String>,
    pub created_at: Millis,
}

pub struct NewAuditRow<'a> {
    pub actor: &'a str,
    pub user_id: Option<i64>,
    pub action: &'a str,
    pub object_type: &'a str,
    pub object_id: Option<&'a str>,
    pub detail: &'a str,
    pub request_id: Option<&'a str>,
    pub now: Millis,
}

pub async fn insert(conn: &mut Conn, row: &NewAuditRow<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (actor, user_id, action, object_type, object_id, detail, request_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(row.actor)
    .bind(row.user_id)
    .bind(row.action)
    .bind(row.object_type)
    .bind(row.object_id)
    .bind(row.detail)
    .bind(row.request_id)
    .bind(row.now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Filters of the audit log; rows come newest first, before the cursor `before_id`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub request_id: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    pub before_id: Option<i64>,
    pub limit: i64,
}

pub async fn list(conn: &mut Conn, filter: &AuditFilter) -> Result<Vec<AuditRow>> {
    Ok(sqlx::query_as::<_, AuditRow>(
        "SELECT id, actor, user_id, action, object_type, object_id, detail, request_id, created_at
         FROM audit_log
         WHERE ($1 IS NULL OR actor = $1) AND ($2 IS NULL OR action = $2)
           AND ($3 IS NULL OR object_type = $3) AND ($4 IS NULL OR object_id = $4)
           AND ($5 IS NULL OR request_id = $5)
           AND ($6 IS NULL OR created_at >= $6) AND ($7 IS NULL OR created_at < $7)
           AND ($8 IS NULL OR id < $8)
         ORDER BY id DESC LIMIT $9",
    )
    .bind(filter.actor.as_deref())
    .bind(filter.action.as_deref())
    .bind(filter.object_type.as_deref())
    .bind(filter.object_id.as_deref())
    .bind(filter.request_id.as_deref())
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.before_id)
    .bind(filter.limit)
    .fetch_all(&mut *conn)
    .await?)
}
