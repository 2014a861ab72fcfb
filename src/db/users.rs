//! Users and their API tokens (stored as SHA-256 hashes only).

use super::Conn;
use crate::domain::{Millis, User, UserRole};
use crate::error::{Error, Result};
use sqlx::Row;

pub async fn insert(conn: &mut Conn, name: &str, role: UserRole, now: Millis) -> Result<User> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO users (name, role, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(name)
    .bind(role.as_str())
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok(User {
        id,
        name: name.to_owned(),
        role,
    })
}

pub async fn insert_token(
    conn: &mut Conn,
    user_id: i64,
    token_hash: &str,
    now: Millis,
) -> Result<()> {
    sqlx::query("INSERT INTO api_tokens (user_id, token_hash, created_at) VALUES ($1, $2, $3)")
        .bind(user_id)
        .bind(token_hash)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn by_token_hash(conn: &mut Conn, token_hash: &str) -> Result<Option<User>> {
    let row = sqlx::query(
        "SELECT u.id, u.name, u.role FROM api_tokens t JOIN users u ON u.id = t.user_id
         WHERE t.token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let role: String = row.try_get("role")?;
    Ok(Some(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        role: UserRole::parse(&role)
            .ok_or_else(|| Error::Conflict(format!("user has unknown role {role:?}")))?,
    }))
}
