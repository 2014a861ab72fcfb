//! Console sessions: the SHA-256 of a session id, the staff user and the token it was
//! opened with. The session is read with its token, so a revoked or expired token ends it.

use super::Conn;
use crate::domain::{Millis, User, UserRole};
use crate::error::{Error, Result};
use sqlx::Row;

/// A session as stored, with its user and the state of its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub user: User,
    pub token_id: i64,
    pub created_at: Millis,
    pub last_seen_at: Millis,
    pub token_revoked_at: Option<Millis>,
    pub token_expires_at: Option<Millis>,
}

pub async fn insert(
    conn: &mut Conn,
    id_hash: &str,
    user_id: i64,
    token_id: i64,
    now: Millis,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO console_sessions (id_hash, user_id, token_id, created_at, last_seen_at)
         VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(id_hash)
    .bind(user_id)
    .bind(token_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &mut Conn, id_hash: &str) -> Result<Option<SessionRow>> {
    let row = sqlx::query(
        "SELECT s.token_id, s.created_at, s.last_seen_at, t.revoked_at, t.expires_at,
                u.id, u.name, u.role
         FROM console_sessions s
         JOIN api_tokens t ON t.id = s.token_id
         JOIN users u ON u.id = s.user_id
         WHERE s.id_hash = $1",
    )
    .bind(id_hash)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| {
        let role: String = row.try_get("role")?;
        Ok(SessionRow {
            user: User {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                role: UserRole::parse(&role)
                    .ok_or_else(|| Error::Conflict(format!("user has unknown role {role:?}")))?,
            },
            token_id: row.try_get("token_id")?,
            created_at: row.try_get("created_at")?,
            last_seen_at: row.try_get("last_seen_at")?,
            token_revoked_at: row.try_get("revoked_at")?,
            token_expires_at: row.try_get("expires_at")?,
        })
    })
    .transpose()
}

/// Records activity, at most once per `every_ms` whoever else records it.
pub async fn touch(conn: &mut Conn, id_hash: &str, now: Millis, every_ms: Millis) -> Result<()> {
    sqlx::query(
        "UPDATE console_sessions SET last_seen_at = $2 WHERE id_hash = $1 AND last_seen_at <= $3",
    )
    .bind(id_hash)
    .bind(now)
    .bind(now - every_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Ends a session; `false` if there was none.
pub async fn delete(conn: &mut Conn, id_hash: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
        .bind(id_hash)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets sessions idle since before `idle_before`; returns how many.
pub async fn delete_idle(conn: &mut Conn, idle_before: Millis) -> Result<u64> {
    let done = sqlx::query("DELETE FROM console_sessions WHERE last_seen_at < $1")
        .bind(idle_before)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}
